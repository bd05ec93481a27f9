"""The HTTP API: FastAPI routes over the engine facade, nothing more.

`create_app(runtime_provider)` builds an app without touching the engine; the
provider is asked for the running engine on each request (None while starting).

Errors are JSON `{"error": code, "field"?: name, "message": text}`:

    422 validation_error     bad input; `field` names it; nothing was sent
    401 unauthorized         missing or wrong token (Bearer header, or `secret` in the body)
    404 not_found            no such position (or route)
    409 already_exists       the signal id already has a position; `position` is attached
    503 trading_refused      the engine will not trade now; nothing was sent
    503 database_unavailable the intent could not be stored; nothing was sent
    503 not_ready            the engine is not running yet
    503 exchange_unavailable the exchange did not answer
    502 exchange_error       the exchange answered with an error
    500 internal             a bug; the engine log has the traceback
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Protocol, cast

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from warden.config import Settings
from warden.domain.controls import LimitExceeded
from warden.domain.errors import ValidationError
from warden.domain.events import Event
from warden.domain.position import Position, PositionStatus
from warden.domain.values import Instrument, PositionId
from warden.entrypoints.controls_api import ControlsApi, add_control_routes
from warden.entrypoints.metrics import CONTENT_TYPE, ApiMetrics, SignalOutcome
from warden.entrypoints.schemas import (
    event_json,
    first_error,
    normalise_symbol,
    parse_signal,
    position_json,
    status_json,
    view_json,
)
from warden.entrypoints.token import token_matches
from warden.ports import ExchangeError, ExchangeUnavailable, StoreUnavailable
from warden.service.commands import (
    AlreadyExists,
    ClosePosition,
    EngineState,
    EngineStatus,
    OpenPosition,
    PositionNotFound,
    PositionView,
    TradingRefused,
)
from warden.service.reconciler import ReconcileReport

API = "/api/v1"


class EngineApi(Protocol):
    """The part of the engine the API uses."""

    async def open_position(self, cmd: OpenPosition) -> Position: ...
    async def close_position(self, cmd: ClosePosition) -> Position: ...
    async def list_positions(self, include_closed: bool = False) -> list[PositionView]: ...
    async def get_position(self, position_id: str) -> PositionView: ...
    async def list_events(self, position_id: str | None = None, limit: int = 100) -> list[Event]: ...
    def status(self) -> EngineStatus: ...
    def instrument(self, symbol: str) -> Instrument | None: ...
    async def reconcile(self) -> ReconcileReport: ...


class RuntimeApi(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> EngineApi: ...


RuntimeProvider = Callable[[], RuntimeApi | None]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


class _Context:
    """What every route needs: the runtime (if started), the metrics, the token check."""

    def __init__(self, provider: RuntimeProvider) -> None:
        self._provider = provider
        self.metrics = ApiMetrics(self.safe_status)

    def current(self) -> RuntimeApi:
        runtime = self._provider()
        if runtime is None:
            raise ApiError(503, "not_ready", "the engine is starting; try again shortly")
        return runtime

    def safe_status(self) -> EngineStatus | None:
        runtime = self._provider()
        return None if runtime is None else runtime.engine.status()

    async def authorized_body(self, request: Request) -> object:
        """The JSON body (None if empty) of a mutating call, once its token is checked."""
        self.current()
        raw = await request.body()
        data, error = _decode(raw) if raw.strip() else (None, None)
        self.authorize(request, data)
        if error is not None:
            raise error
        return data

    def authorize(self, request: Request, body: object = None) -> None:
        """Bearer header, or `secret` in a JSON body (TradingView cannot set headers)."""
        expected = self.current().settings.api_token
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token_matches(bearer.strip(), expected):
            return
        secret = body.get("secret") if isinstance(body, dict) else None
        if isinstance(secret, str) and token_matches(secret, expected):
            return
        message = "missing or wrong API token (Authorization: Bearer <token>, or `secret` in the body)"
        if expected is None:
            message = "no API token is configured on the engine; set WARDEN_API_TOKEN"
        raise ApiError(401, "unauthorized", message)


def create_app(runtime_provider: RuntimeProvider) -> FastAPI:
    """The API over whatever runtime the provider returns; no I/O happens here."""
    app = FastAPI(title="warden", version="0.1.0", docs_url=f"{API}/docs", openapi_url=f"{API}/openapi.json")
    ctx = _Context(runtime_provider)
    app.state.metrics = ctx.metrics
    _install_error_handlers(app)
    _add_trading_routes(app, ctx)
    _add_read_routes(app, ctx)
    _add_ops_routes(app, ctx)
    add_control_routes(app, lambda: cast(ControlsApi, ctx.current().engine), ctx.authorized_body)
    return app


_OUTCOMES: list[tuple[type[Exception] | tuple[type[Exception], ...], SignalOutcome]] = [
    ((ValidationError, LimitExceeded), SignalOutcome.INVALID),
    (AlreadyExists, SignalOutcome.DUPLICATE),
    ((TradingRefused, StoreUnavailable), SignalOutcome.REFUSED),
]


def _outcome(exc: Exception) -> SignalOutcome:
    if isinstance(exc, ApiError):
        return SignalOutcome.UNAUTHORIZED if exc.status == 401 else SignalOutcome.ERROR
    return next((outcome for kind, outcome in _OUTCOMES if isinstance(exc, kind)), SignalOutcome.ERROR)


def _add_trading_routes(app: FastAPI, ctx: _Context) -> None:
    @app.post(f"{API}/signals", status_code=201)
    async def post_signal(request: Request) -> JSONResponse:
        try:
            response = await _open(request)
        except Exception as exc:
            ctx.metrics.count_signal(_outcome(exc))
            raise
        ctx.metrics.count_signal(SignalOutcome.ACCEPTED)
        return response

    async def _open(request: Request) -> JSONResponse:
        runtime = ctx.current()
        data, decode_error = _decode(await request.body())
        ctx.authorize(request, data)
        if decode_error is not None:
            raise decode_error
        signal = parse_signal(data)
        engine = runtime.engine
        status = engine.status()
        if not status.accepting_signals:  # refusal first: a standby knows no markets yet, nothing is sent
            raise TradingRefused(
                f"not accepting signals ({status.state}): {'; '.join(status.reasons) or 'not ready'}"
            )
        symbol = normalise_symbol(signal.symbol, engine.instrument)
        usd = signal.usd
        if usd is None and signal.qty is None:
            usd = runtime.settings.default_usd
        source = "tradingview" if isinstance(data, dict) and "secret" in data else _source(request)
        cmd = OpenPosition(symbol, signal.side, usd, signal.qty, signal.signal_id, signal.stop_price, source)
        position = await engine.open_position(cmd)
        body = await _render(engine, position)
        return JSONResponse(body, status_code=202 if position.status is PositionStatus.OPENING else 201)

    @app.post(f"{API}/positions/{{position_id}}/close")
    async def post_close(position_id: str, request: Request) -> dict[str, Any]:
        engine = ctx.current().engine
        data, _ = _decode(await request.body())
        ctx.authorize(request, data)
        position = await engine.close_position(ClosePosition(PositionId(position_id)))
        return await _render(engine, position)

    @app.post(f"{API}/reconcile")
    async def post_reconcile(request: Request) -> dict[str, Any]:
        """Run one reconciliation pass now and return what it found and did."""
        data, _ = _decode(await request.body())
        ctx.authorize(request, data)
        report = await ctx.current().engine.reconcile()
        return {
            "at": report.at.isoformat(),
            "positions_checked": report.positions_checked,
            "seconds": round(report.seconds, 6),
            "findings": [
                {
                    "kind": f.discrepancy.kind.value,
                    "symbol": f.discrepancy.symbol,
                    "position_id": f.discrepancy.position_id,
                    "client_order_id": f.discrepancy.client_order_id,
                    "expected": str(f.discrepancy.expected),
                    "found": str(f.discrepancy.found),
                    "action": f.action,
                }
                for f in report.findings
            ],
        }


def _add_read_routes(app: FastAPI, ctx: _Context) -> None:
    @app.get(f"{API}/positions")
    async def get_positions(
        include_closed: Annotated[bool, Query(alias="all")] = False,
    ) -> list[dict[str, Any]]:
        views = await ctx.current().engine.list_positions(include_closed=include_closed)
        return [view_json(v) for v in views]

    @app.get(f"{API}/positions/{{position_id}}")
    async def get_position(position_id: str) -> dict[str, Any]:
        return view_json(await ctx.current().engine.get_position(position_id))

    @app.get(f"{API}/positions/{{position_id}}/events")
    async def get_position_events(
        position_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        engine = ctx.current().engine
        await engine.get_position(position_id)  # 404 for an unknown id, not an empty list
        return [event_json(e) for e in await engine.list_events(position_id, limit)]

    @app.get(f"{API}/status")
    async def get_status() -> dict[str, Any]:
        return status_json(ctx.current().engine.status())

    @app.get(f"{API}/events")
    async def get_events(
        position_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        return [event_json(e) for e in await ctx.current().engine.list_events(position_id, limit)]


def _add_ops_routes(app: FastAPI, ctx: _Context) -> None:
    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        status = ctx.safe_status()
        if status is None:
            return JSONResponse({"status": "starting", "reasons": ["engine not started"]}, status_code=503)
        body = {"status": "ok", "state": status.state.value, "reasons": list(status.reasons)}
        if status.state is EngineState.READY:
            return JSONResponse(body)
        reasons = list(status.reasons) or [f"engine is {status.state.value}"]
        return JSONResponse({**body, "status": "unavailable", "reasons": reasons}, status_code=503)

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


def _decode(raw: bytes) -> tuple[object, ValidationError | None]:
    """The JSON body (any content type: TradingView posts text/plain), or the error to raise."""
    if not raw.strip():
        return None, ValidationError("body", "expected a JSON object")
    try:
        return json.loads(raw, parse_float=Decimal), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, ValidationError("body", f"is not valid JSON: {exc}")


def _source(request: Request) -> str:
    return "cli" if request.headers.get("user-agent", "").startswith("warden-cli") else "api"


async def _render(engine: EngineApi, position: Position) -> dict[str, Any]:
    """A position just changed: show it with its live view (stop resting, uPnL) when available."""
    try:
        return view_json(await engine.get_position(position.id))
    except (PositionNotFound, StoreUnavailable):
        return position_json(position)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        return error_response(422, "validation_error", exc.message, field=exc.field)

    async def request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        err = first_error(exc.errors(), skip=("body", "query", "path", "header"))
        return error_response(422, "validation_error", err.message, field=err.field)

    async def already_exists(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AlreadyExists)
        return error_response(
            409,
            "already_exists",
            str(exc),
            field="signal_id",
            position_id=exc.position.id,
            position=position_json(exc.position),
        )

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TradingRefused)
        return error_response(503, "trading_refused", f"{exc.reason}; nothing was sent")

    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        return error_response(503, "database_unavailable", "database unavailable, nothing was sent")

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PositionNotFound)
        return error_response(404, "not_found", str(exc), field="position_id")

    async def exchange_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ExchangeUnavailable):
            return error_response(503, "exchange_unavailable", f"exchange unavailable: {exc}")
        return error_response(502, "exchange_error", f"exchange error: {exc}; check `warden positions`")

    async def internal(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", "internal error; see the engine log")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else "http_error"
        return error_response(exc.status_code, code, str(exc.detail))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ValidationError, validation)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(AlreadyExists, already_exists)
    app.add_exception_handler(TradingRefused, refused)
    app.add_exception_handler(StoreUnavailable, store_down)
    app.add_exception_handler(PositionNotFound, not_found)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ExchangeError, exchange_error)
    app.add_exception_handler(Exception, internal)
