"""The HTTP API: FastAPI routes over the engine facade, nothing more.

`create_app(runtime_provider)` builds an app without touching the engine; the
provider is asked for the running engine on each request (None while starting).

Every /api/v1 route needs a token (see auth.py); /healthz, /metrics and the OpenAPI
document are open and show no amounts. Request bodies are strict models (schemas.py)
and capped at `max_body_bytes`.

Accounts: an engine serving more than one account ([accounts.NAME] tables) needs to be told
which: `?account=NAME` on every call (a signal may carry `account` in its body instead);
without it, or with a name it does not serve, the answer is 422 naming `account` and nothing
is sent. With one account, `account` may be left out. POST /kill without an account stops
every account and says so (`scope: "all accounts"`). GET /accounts lists them.

Errors are JSON `{"error": code, "field"?: name, "message": text, "accepted"?: [...]}`:

    422 validation_error     bad input; `field` names it (`accepted` lists the fields of the body
                             when it is an unknown one); nothing was sent
    401 unauthorized         missing or wrong token
    403 forbidden            a read-only token on a mutating call, a signal from an address
                             outside webhook_allow_ips, or the dashboard's cookie on a mutating
                             call from a page warden did not serve
    404 not_found            no such position (or route), or nothing open on the symbol
    409 already_exists       the signal id (or, stacking off, the symbol) already has a position;
                             `position` is attached; or a close signal's id was acted on already
                             (`position`: the one it closed, if it found one)
    413 body_too_large       the body is larger than max_body_bytes
    503 trading_refused      the engine will not trade now; nothing was sent
    503 kill_incomplete      a kill of every account could not stop some (each account's outcome
                             is attached)
    503 pause_incomplete     a pause naming an account not running: kept for its start, not in
                             force now
    503 database_unavailable the intent could not be stored; nothing was sent
    503 not_ready            the engine is not running yet
    503 exchange_unavailable the exchange did not answer
    502 exchange_error       the exchange answered with an error
    500 internal             a bug; the engine log has the traceback
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Annotated, Any, Protocol, cast

from fastapi import Depends, FastAPI, Header, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from pydantic import AfterValidator, BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.config import Settings
from warden.domain.controls import Controls, LimitExceeded
from warden.domain.errors import ValidationError
from warden.domain.events import Event, EventKind
from warden.domain.position import ExitReason, Position, PositionStatus
from warden.domain.tally import UNPROTECTED_BUCKETS, Tally
from warden.domain.values import Instrument, PositionId, Side, account_spelled
from warden.entrypoints.auth import Access, foreign_cookie, request_access, source_allowed
from warden.entrypoints.controls_api import ControlsApi, add_limit_handler
from warden.entrypoints.metrics import CONTENT_TYPE, ApiMetrics, SignalOutcome
from warden.entrypoints.schemas import (
    NO_BODY,
    AccountOut,
    CloseSymbolIn,
    ControlsOut,
    ControlsReply,
    ErrorOut,
    EventOut,
    FieldError,
    HealthOut,
    KillAllReply,
    KillIn,
    KillNotDone,
    KillReply,
    PauseIn,
    PositionOut,
    PositionPatchIn,
    ReconcileOut,
    RefusedField,
    SignalAction,
    SignalIn,
    StatusOut,
    StrictBody,
    TokenIn,
    decode_json,
    first_error,
    no_nul,
    normalise_symbol,
    parse_body,
)
from warden.entrypoints.sse import EventFeeds, event_stream
from warden.entrypoints.web import Hardening, install_dashboard
from warden.logging import get_logger
from warden.ports import Clock, ExchangeError, ExchangeUnavailable, StoreUnavailable
from warden.service.commands import (
    AlreadyExists,
    ClosePosition,
    EngineState,
    EngineStatus,
    KillReport,
    NotHolder,
    OpenPosition,
    PositionNotFound,
    PositionView,
    SignalClose,
    TradingRefused,
)
from warden.service.reconciler import ReconcileReport

API = "/api/v1"
DEFAULT_MAX_BODY = 65536
REFUSAL_SHOWN = 300
"""The most of a refusal's reason a signal_refused alert carries (it may echo what was sent)."""
COMMIT_POLL = 0.005
"""Seconds between looks at whether an open has been committed (for ?wait=false and the deadline)."""

log = get_logger("warden.api")


class EngineApi(Protocol):
    """The part of the engine the API uses."""

    async def open_position(self, cmd: OpenPosition) -> Position: ...
    async def check_open(self, cmd: OpenPosition, replacing: str | None = None) -> None: ...
    async def close_position(self, cmd: ClosePosition) -> Position: ...
    async def close_symbol(self, symbol: str, reason: str = "manual") -> list[Position]: ...
    async def close_by_signal(self, symbol: str, signal_id: str, reason: str = "signal") -> SignalClose: ...
    async def signal_refused(self, message: str, about: str | None = None) -> None: ...
    async def change_position(
        self,
        position_id: str,
        stop_price: Decimal | None = None,
        tp1_price: Decimal | None = None,
        tp2_price: Decimal | None = None,
    ) -> Position: ...
    async def failure(self, position_id: str, kind: EventKind) -> str | None: ...
    async def list_positions(self, include_closed: bool = False) -> list[PositionView]: ...
    async def closed_pnl(self) -> Decimal: ...
    async def get_position(self, position_id: str) -> PositionView: ...
    async def list_events(self, position_id: str | None = None, limit: int = 100) -> list[Event]: ...
    def knows(self, position_id: str) -> bool: ...
    def unprotected_for(self, position_id: str) -> float | None: ...
    def unprotected_seconds(self) -> Tally: ...
    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: str | None = None
    ) -> list[tuple[int, Event]]: ...
    def status(self) -> EngineStatus: ...
    def instrument(self, symbol: str) -> Instrument | None: ...
    async def reconcile(self) -> ReconcileReport: ...


class RuntimeApi(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> EngineApi: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def is_holder(self) -> bool: ...
    @property
    def holder(self) -> str | None: ...
    @property
    def metrics_registry(self) -> CollectorRegistry: ...


class FleetApi(Protocol):
    """Every account the process serves (bootstrap.Fleet): a runtime per running account."""

    @property
    def settings(self) -> Settings: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def failures(self) -> Mapping[str, str]: ...
    def runtime(self, name: str) -> RuntimeApi | None: ...
    async def kill_account(self, name: str, flatten: bool, reason: str) -> KillReport | str:
        """One account's part of a kill of every account: its report, or why its kill switch is
        not on now (and whether the kill is kept for its start: bootstrap.Fleet.kill_account)."""
        ...

    async def pause_account(self, name: str, reason: str) -> Controls | str:
        """A pause naming one account: its controls, or why it is not in force now (and whether
        it is kept for its start: bootstrap.Fleet.pause_account)."""
        ...

    def kill_waiting(self, name: str) -> str | None:
        """What to say of a kill (or a pause) kept for `name` (it is not running), else None."""
        ...

    async def signal_refused(self, name: str, message: str) -> None:
        """Tell the trader of a signal for `name` refused while it is not running (bootstrap.Fleet)."""
        ...


@dataclass(frozen=True, slots=True)
class Solo:
    """One runtime seen as a fleet of one account."""

    only: RuntimeApi

    @property
    def settings(self) -> Settings:
        return self.only.settings

    @property
    def names(self) -> tuple[str, ...]:
        return (self.only.settings.account,)

    @property
    def failures(self) -> Mapping[str, str]:
        return {}

    def runtime(self, name: str) -> RuntimeApi | None:
        return self.only if name == self.only.settings.account else None

    async def kill_account(self, name: str, flatten: bool, reason: str) -> KillReport | str:
        return await cast(ControlsApi, self.only.engine).kill(flatten, reason)

    async def pause_account(self, name: str, reason: str) -> Controls | str:
        return await cast(ControlsApi, self.only.engine).pause(reason)

    def kill_waiting(self, name: str) -> str | None:
        return None

    async def signal_refused(self, name: str, message: str) -> None:
        return None  # its runtime always exists: its engine tells


RuntimeProvider = Callable[[], RuntimeApi | FleetApi | None]


def as_fleet(served: RuntimeApi | FleetApi) -> FleetApi:
    return cast(FleetApi, served) if hasattr(served, "names") else Solo(served)


def select(fleet: FleetApi, name: str | None) -> RuntimeApi:
    """The runtime of account `name`; None is the only account. 422 naming `account` for a
    missing or unknown one, 503 for one that is not running."""
    names = fleet.names
    listed = ", ".join(names)
    if name is None:
        if len(names) != 1:
            raise ValidationError(
                "account",
                f"is required: this engine serves {listed}; give ?account=NAME (a signal may carry"
                ' "account" in its body)',
            )
        name = names[0]
    name = account_spelled(name, names)  # `Alt` is alt: no two accounts differ only in case
    if name not in names:
        raise ValidationError("account", f"unknown account {name!r}; this engine serves {listed}")
    runtime = fleet.runtime(name)
    if runtime is None:
        why = fleet.failures.get(name, "it is starting")
        raise ApiError(503, "not_ready", f"account {name!r} is not running: {why}")
    return runtime


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    dumped = ErrorOut(error=code, message=message, **extra).model_dump(mode="json")
    body = {key: value for key, value in dumped.items() if value is not None}
    return JSONResponse(body, status_code=status, headers=headers)


def model_response(model: BaseModel | list[Any], status: int = 200) -> JSONResponse:
    if isinstance(model, list):
        return JSONResponse([m.model_dump(mode="json") for m in model], status_code=status)
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


_DESCRIPTIONS = {
    200: "OK",
    201: "Opened and protected: the stop rests on the exchange.",
    202: "Accepted: committed and still resolving; the position's id is in the answer.",
    401: "Missing or wrong token.",
    403: "A read-only token on a mutating call, a signal from an address not allowed, or the "
    "dashboard's session cookie on a mutating call from a page warden did not serve.",
    404: "No such position, or nothing open on the symbol.",
    409: "The signal id (or the symbol, stacking off) already has a position; it is attached. "
    "A close signal's id sent again: the position it closed (if it found one) is attached;"
    " nothing is closed now.",
    413: "The body is larger than max_body_bytes.",
    422: "Bad input: `field` names it; nothing was sent.",
    502: "The exchange answered with an error.",
    503: "Not ready, refused (nothing sent), database or exchange unavailable.",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


_REQUEST_MODELS: list[type[BaseModel]] = [
    SignalIn,
    CloseSymbolIn,
    PositionPatchIn,
    TokenIn,
    PauseIn,
    KillIn,
]


def _body(model: type[StrictBody], required: bool = True) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body itself (any content type)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="The API token (`warden token`), or the read-only api_read_token for reads. "
    "The dashboard's session cookie and a body's `secret` field are accepted too.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """A request that passed the token check, with its decoded body (None if it had none) and
    the account it named (`?account=`), if any."""

    fleet: FleetApi
    data: object
    account: str | None = None

    @property
    def runtime(self) -> RuntimeApi:
        """The named account's runtime (the only one's, if the engine serves one)."""
        return select(self.fleet, self.account)

    @property
    def global_(self) -> bool:
        """No account named while the engine serves several: the call is about all of them."""
        return self.account is None and len(self.fleet.names) > 1


class _Context:
    """What every route needs: the runtime (if started), the metrics, the token check."""

    def __init__(self, provider: RuntimeProvider) -> None:
        self._provider = provider
        self.metrics = ApiMetrics(
            self.safe_status,
            self.safe_unprotected,
            self.runtime_registry,
            self.account_statuses,
            self.account_registries,
        )
        self.inflight: set[asyncio.Task[Any]] = set()
        self.feeds = EventFeeds()

    def current(self) -> FleetApi:
        served = self._provider()
        if served is None:
            raise ApiError(503, "not_ready", "the engine is starting; try again shortly")
        return as_fleet(served)

    def fleet(self) -> FleetApi | None:
        served = self._provider()
        return None if served is None else as_fleet(served)

    def running(self) -> list[tuple[str, RuntimeApi]]:
        """Every running account's runtime, by name."""
        fleet = self.fleet()
        if fleet is None:
            return []
        pairs = [(name, fleet.runtime(name)) for name in fleet.names]
        return [(name, runtime) for name, runtime in pairs if runtime is not None]

    def pick(self, name: str | None) -> RuntimeApi | None:
        """Account `name`'s runtime if it is running (None: the first running one)."""
        if name is None:
            running = self.running()
            return running[0][1] if running else None
        fleet = self.fleet()
        if fleet is None:
            return None
        name = account_spelled(name, fleet.names)
        return fleet.runtime(name) if name in fleet.names else None

    def failure(self, name: str | None) -> str | None:
        """Why account `name` (None: the only one) is not running, when it failed or waits to start again."""
        fleet = self.fleet()
        if fleet is None or (name is None and len(fleet.names) != 1):
            return None
        account = name or fleet.names[0]
        why = fleet.failures.get(account)
        if why is None:
            return None
        kept = fleet.kill_waiting(account)
        return why if kept is None else f"{why}; {kept}"

    def names(self) -> tuple[str, ...]:
        fleet = self.fleet()
        return () if fleet is None else fleet.names

    def max_body(self) -> int:
        fleet = self.fleet()
        return DEFAULT_MAX_BODY if fleet is None else fleet.settings.max_body_bytes

    def runtime_registry(self) -> CollectorRegistry | None:
        running = self.running()
        return running[0][1].metrics_registry if len(running) == 1 else None

    def labelled(self) -> bool:
        """Metrics name their account: the engine serves several, or one [accounts.NAME] table of a
        file (`warden run --account NAME`: one engine per account, scraped together)."""
        fleet = self.fleet()
        return fleet is not None and (len(fleet.names) > 1 or bool(fleet.settings.accounts))

    def account_registries(self) -> dict[str, CollectorRegistry]:
        """Each running account's exchange, database and alert metrics (labelled by account)."""
        if not self.labelled():
            return {}
        return {name: runtime.metrics_registry for name, runtime in self.running()}

    def safe_unprotected(self) -> Tally:
        tallies = (runtime.engine.unprotected_seconds() for _, runtime in self.running())
        return Tally.merged(UNPROTECTED_BUCKETS, tallies)

    def safe_status(self) -> EngineStatus | None:
        running = self.running()
        return running[0][1].engine.status() if len(running) == 1 else None

    def account_statuses(self) -> dict[str, EngineStatus | None]:
        """Each account's status (None: not running), for the metrics labelled by account; empty
        when they are not (`labelled`)."""
        if not self.labelled():
            return {}
        return {name: s if isinstance(s, EngineStatus) else None for name, s in self.statuses().items()}

    def statuses(self) -> dict[str, EngineStatus | str]:
        """Each account's engine status, or why it is not running."""
        fleet = self.fleet()
        if fleet is None:
            return {}
        shown: dict[str, EngineStatus | str] = {}
        for name in fleet.names:
            runtime = fleet.runtime(name)
            shown[name] = (
                runtime.engine.status() if runtime is not None else fleet.failures.get(name, "not running")
            )
        return shown

    async def authorize(
        self, request: Request, level: Access, *, body: bool, account: str | None = None
    ) -> Caller:
        """The caller's token must grant `level` (401 without one, 403 if too weak)."""
        fleet = self.current()
        data: object = NO_BODY
        problem: ValidationError | None = None
        if body:
            raw = await request.body()
            if raw.strip():
                try:
                    data = decode_json(raw)
                except ValidationError as exc:
                    problem = exc
                    if isinstance(exc, RefusedField):  # refused below; a token in it still counts
                        data = exc.data
        access = request_access(request, fleet.settings, data)
        if access is Access.NONE and foreign_cookie(request, fleet.settings):
            raise ApiError(
                403,
                "forbidden",
                "the dashboard's session cookie changes nothing from another page "
                f"(Origin: {request.headers.get('origin') or 'none'}); send the token instead",
            )
        if access is Access.NONE:
            message = "missing or wrong API token (Authorization: Bearer <token>, or `secret` in the body)"
            if fleet.settings.api_token is None:
                message = "no API token is configured on the engine; set WARDEN_API_TOKEN"
            raise ApiError(401, "unauthorized", message)
        if access < level:
            raise ApiError(403, "forbidden", "this token may only read")
        check_query(request)
        if problem is not None:
            raise problem
        return Caller(fleet, data, None if account is None else account_spelled(account, fleet.names))


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def check_query(request: Request) -> None:
    """Unknown query parameters are refused like unknown body fields, and one given twice
    (`?account=main&account=alt`) like a body field given twice: whichever came last, neither."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    accepted = sorted(_query_names(dependant))
    for name in request.query_params:
        if name not in accepted:
            listed = ", ".join(accepted) or "none"
            raise FieldError(name, f"is not a query parameter warden knows; accepted: {listed}", accepted)
        if len(request.query_params.getlist(name)) > 1:
            raise ValidationError(name, "is given twice; give it once")


def _ctx(request: Request) -> _Context:
    ctx: _Context = request.app.state.ctx
    return ctx


AccountQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="The account (an [accounts.NAME] table); required when the engine serves more than one.",
    ),
]


async def _reader(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    account: AccountQuery = None,
) -> Caller:
    return await _ctx(request).authorize(request, Access.READ, body=False, account=account)


async def _writer(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    account: AccountQuery = None,
) -> Caller:
    return await _ctx(request).authorize(request, Access.FULL, body=True, account=account)


Reader = Annotated[Caller, Depends(_reader)]
Writer = Annotated[Caller, Depends(_writer)]
PositionIdPath = Annotated[str, AfterValidator(no_nul)]
"""A position id in a path: no NUL (no position has one, and PostgreSQL cannot look one up)."""


class BodyLimit:
    """Refuse bodies larger than the limit with 413 before the app reads them."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(413, "body_too_large", f"the body is larger than {limit} bytes")
        await response(scope, receive, send)


def _add_control_routes(app: FastAPI) -> None:
    """Pause, resume and the kill switch (stored: they survive restarts)."""

    def engine(caller: Caller) -> ControlsApi:
        return cast(ControlsApi, caller.runtime.engine)

    @app.post(
        f"{API}/pause",
        response_model=ControlsReply,
        summary="Pause: no new entries; exits and protection keep working",
        responses=_errors(401, 403, 413, 422, 503),
        openapi_extra=_body(PauseIn, required=False),
        tags=["controls"],
    )
    async def post_pause(caller: Writer) -> JSONResponse:
        cmd = parse_body(PauseIn, caller.data)
        if (kept := await _pause_named(caller, cmd.reason)) is not None:
            return kept
        return model_response(ControlsReply(controls=ControlsOut.of(await engine(caller).pause(cmd.reason))))

    @app.post(
        f"{API}/resume",
        response_model=ControlsReply,
        summary="Clear pause, kill switch and the daily-loss pause",
        responses=_errors(401, 403, 413, 422, 503),
        openapi_extra=_body(TokenIn, required=False),
        tags=["controls"],
    )
    async def post_resume(caller: Writer) -> JSONResponse:
        parse_body(TokenIn, caller.data)
        return model_response(ControlsReply(controls=ControlsOut.of(await engine(caller).resume())))

    @app.post(
        f"{API}/kill",
        response_model=KillReply | KillAllReply,
        summary="Kill switch: pause; with flatten, close every position and cancel every order",
        description="With several accounts and no ?account=: every account, each one's outcome "
        "(KillAllReply); if some could not be stopped, 503 kill_incomplete with `scope` and `accounts`.",
        responses=_errors(401, 403, 413, 422, 503),
        openapi_extra=_body(KillIn, required=False),
        tags=["controls"],
    )
    async def post_kill(caller: Writer) -> JSONResponse:
        cmd = parse_body(KillIn, caller.data)
        assert isinstance(cmd, KillIn)
        if caller.global_:
            every = await _kill_all(caller.fleet, cmd)
            missed = {name: one.error for name, one in every.accounts.items() if isinstance(one, KillNotDone)}
            if missed:  # the caller must not read a partial kill as done
                stopped = [name for name in every.accounts if name not in missed]
                listed = "; ".join(f"{name}: {why}" for name, why in missed.items())
                message = f"kill switch NOT on for {listed} (on for: {', '.join(stopped) or 'none'})"
                return error_response(
                    503, "kill_incomplete", message, scope=every.scope, accounts=every.accounts
                )
            return model_response(every)
        if (kept := await _kill_named(caller, cmd)) is not None:
            return kept
        return model_response(KillReply.of(await engine(caller).kill(cmd.flatten, cmd.reason)))


def _not_running_named(caller: Caller) -> str | None:
    """The account a control names (or the only one) when its engine cannot take the control:
    not running, or stopped. None: no such account, or its engine takes it (a standby refuses)."""
    fleet = caller.fleet
    name = caller.account or (fleet.names[0] if len(fleet.names) == 1 else None)
    if name is None or name not in fleet.names:
        return None
    runtime = fleet.runtime(name)
    if runtime is not None and runtime.engine.status().state is not EngineState.STOPPED:
        return None
    return name


async def _kill_named(caller: Caller, cmd: KillIn) -> JSONResponse | None:
    """A kill naming an account of a fleet whose engine cannot take it (not running: its start
    failing and about to be retried; or stopped) is kept for that account as its part of a kill
    of every account is (`FleetApi.kill_account`), so it starts with the kill switch on: refusing
    with "not running" kept nothing and the account started again trading. Answered 503
    kill_incomplete (its kill switch is not on *now*). None: the engine takes it (or a standby's
    refusal) as before."""
    fleet = caller.fleet
    if (name := _not_running_named(caller)) is None:
        return None
    outcome = await fleet.kill_account(name, cmd.flatten, cmd.reason)
    if not isinstance(outcome, str):  # it started meanwhile and took it
        return model_response(KillReply.of(outcome))
    return error_response(
        503,
        "kill_incomplete",
        f"kill switch NOT on for {name}: {outcome}",
        accounts={name: KillNotDone(error=outcome)},
    )


async def _pause_named(caller: Caller, reason: str) -> JSONResponse | None:
    """A pause naming an account of a fleet whose engine cannot take it (not running, or
    stopped) is kept for it as a kill naming it is (`_kill_named`, the same waiting place): it
    starts paused. Answered 503 pause_incomplete (not in force *now*). None: the engine takes it
    (or a standby's refusal) as before."""
    fleet = caller.fleet
    if (name := _not_running_named(caller)) is None:
        return None
    outcome = await fleet.pause_account(name, reason)
    if not isinstance(outcome, str):  # it started meanwhile and took it
        return model_response(ControlsReply(controls=ControlsOut.of(outcome)))
    return error_response(503, "pause_incomplete", f"pause NOT in force for {name}: {outcome}")


async def _kill_all(fleet: FleetApi, cmd: KillIn) -> KillAllReply:
    """The kill switch on every account at once; each account's outcome, or why it failed."""

    async def one(name: str) -> KillReply | KillNotDone:
        try:
            outcome = await fleet.kill_account(name, cmd.flatten, cmd.reason)
        except Exception as exc:  # one account's refusal does not stop the others' kill
            return KillNotDone(error=f"{type(exc).__name__}: {exc}")
        return KillNotDone(error=outcome) if isinstance(outcome, str) else KillReply.of(outcome)

    results = await asyncio.gather(*(one(name) for name in fleet.names))
    return KillAllReply(scope="all accounts", accounts=dict(zip(fleet.names, results, strict=True)))


def create_app(runtime_provider: RuntimeProvider) -> FastAPI:
    """The API over whatever runtime the provider returns; no I/O happens here."""
    app = FastAPI(
        title="warden",
        version="0.1.0",
        description=__doc__,
        docs_url=None,  # _add_docs_route: Swagger UI pinned, hash-checked
        openapi_url=f"{API}/openapi.json",
        redoc_url=None,
        redirect_slashes=False,  # an empty 307 looks like success to a sender: a JSON 404 instead
    )
    ctx = _Context(runtime_provider)
    app.state.metrics = ctx.metrics
    app.state.ctx = ctx
    _install_error_handlers(app)
    _add_signal_route(app, ctx)
    _add_position_routes(app, ctx)
    _add_read_routes(app, ctx)
    _add_stream_route(app, ctx)
    _add_ops_routes(app, ctx)
    _add_control_routes(app)
    add_limit_handler(app)
    _install_openapi(app)
    _add_docs_route(app)
    install_dashboard(app, ctx.pick, ctx.names, ctx.failure)
    app.add_middleware(BodyLimit, limit=ctx.max_body)
    app.add_middleware(Hardening)  # the last added is outermost: BodyLimit's 413 is hardened too
    return app


_OUTCOMES: list[tuple[type[Exception] | tuple[type[Exception], ...], SignalOutcome]] = [
    ((ValidationError, LimitExceeded), SignalOutcome.INVALID),
    (AlreadyExists, SignalOutcome.DUPLICATE),
    ((TradingRefused, StoreUnavailable), SignalOutcome.REFUSED),
]


def _outcome(exc: Exception) -> SignalOutcome:
    if isinstance(exc, ApiError):
        if exc.status in (401, 403):
            return SignalOutcome.UNAUTHORIZED
        return SignalOutcome.INVALID if exc.status == 422 else SignalOutcome.ERROR
    return next((outcome for kind, outcome in _OUTCOMES if isinstance(exc, kind)), SignalOutcome.ERROR)


def _add_signal_route(app: FastAPI, ctx: _Context) -> None:
    @app.post(
        f"{API}/signals",
        status_code=201,
        response_model=PositionOut,
        summary="Open (or close, or flip) a position from a signal",
        responses={
            200: {"model": list[PositionOut], "description": "Closed (action close, or flat)."},
            202: {"model": PositionOut, "description": _DESCRIPTIONS[202]},
            **_errors(401, 403, 404, 409, 413, 422, 502, 503),
        },
        openapi_extra=_body(SignalIn),
        dependencies=[Security(bearer)],
        tags=["trading"],
    )
    async def post_signal(
        request: Request,
        wait: Annotated[
            bool | None,
            Query(
                description="true: answer with the outcome, however long it takes; false: answer 202 "
                "as soon as the position is committed; unset: wait up to signal_wait seconds."
            ),
        ] = None,
        account: AccountQuery = None,
    ) -> JSONResponse:
        caller: Caller | None = None
        try:
            allowed, address = source_allowed(request, ctx.current().settings)
            if not allowed:
                raise ApiError(403, "forbidden", f"signals are not accepted from {address}")
            caller = await ctx.authorize(request, Access.FULL, body=True, account=account)
            response = await _signal(ctx, caller, request, wait)
        except Exception as exc:
            ctx.metrics.count_signal(_outcome(exc))
            if caller is not None and isinstance(exc, ValidationError):
                await _tell_refused(caller, exc)
            raise
        ctx.metrics.count_signal(SignalOutcome.ACCEPTED)
        return response


async def _tell(engine: EngineApi, message: str, about: str | None = None) -> None:
    """The alert signal_refused: a signal's answer goes to its sender (TradingView's server), not
    to the trader. The refusal is answered whatever becomes of the alert. `about`: the kind of
    refusal, repeats of which are told as one count (a strategy firing into an outage); None:
    each told (a flip's, about one position)."""
    try:
        await engine.signal_refused(message, about)
    except Exception as failed:
        log.warning("signal_refused_not_told", error=repr(failed))


def _capped(text: str, limit: int = REFUSAL_SHOWN) -> str:
    """A reason as an alert carries it: it may echo what was sent, as long as the body."""
    return text if len(text) <= limit else text[:limit] + "…"


async def _tell_refused(caller: Caller, exc: ValidationError) -> None:
    """Tell the trader of an authenticated signal refused for its input (nothing was sent): its
    sender may show nobody the 422. On the account it names, or the only one; a signal no account
    can be told of (an unknown account) is only answered. A risk limit alerts on its own."""
    data = caller.data if isinstance(caller.data, dict) else {}
    named = data.get("account")
    try:
        runtime = select(caller.fleet, named if isinstance(named, str) else caller.account)
    except (ValidationError, ApiError):
        try:
            runtime = select(caller.fleet, None)
        except (ValidationError, ApiError):
            return
    symbol = data.get("symbol")
    about = f" for {symbol[:64]!r}" if isinstance(symbol, str) else ""  # the sender's text: quoted
    why = _capped(f"{exc.field}: {exc.message}")  # a field's value echoed may be as long as the body
    message = f"signal{about} refused, nothing was sent: {why}"
    await _tell(runtime.engine, message, f"input:{exc.field}")


async def _signal(ctx: _Context, caller: Caller, request: Request, wait: bool | None) -> JSONResponse:
    signal = parse_body(SignalIn, caller.data)
    named = None if signal.account is None else account_spelled(signal.account, caller.fleet.names)
    if named is not None and caller.account is not None and named != caller.account:
        raise ValidationError(
            "account", f"the body names {signal.account!r} and the query {caller.account!r}; give one"
        )
    runtime = await _signal_runtime(caller, signal, named)
    if signal.usd is not None and signal.qty is not None:
        raise ValidationError("qty", "give usd or qty, not both")
    signal.check_consistent()
    _check_age(signal, runtime)
    engine = runtime.engine
    status = engine.status()
    # Refusal first: a standby knows no markets yet, nothing is sent. An exit needs only an engine
    # that has recovered and may act: pause, the kill switch and the daily-loss pause stop entries,
    # not exits (as `warden close`, POST /positions/close and Telegram's /close).
    may_exit = signal.wants_close and status.state in (EngineState.READY, EngineState.DEGRADED)
    if not status.accepting_signals and not may_exit:
        raise await _not_accepting(runtime, signal, status)
    symbol = normalise_symbol(signal.symbol, engine.instrument)
    side = signal.parsed_side
    if signal.wants_close:
        return await _exit_signal(engine, symbol, signal.signal_id)
    current = [v.position for v in await engine.list_positions() if v.position.symbol == symbol]
    flip = signal.action is SignalAction.FLIP
    if side is None and flip and current:
        side = Side.SHORT if current[0].side is Side.LONG else Side.LONG
    if (
        signal.market_position in ("long", "short")
        and side is not None
        and side.value == signal.market_position
        and any(p.side is not side for p in current)
    ):
        flip = True  # a strategy's reversal: it was long and is now short (or the reverse)
    _refuse_partial_exit(symbol, side, signal.market_position, current)
    if side is None:
        raise ValidationError("side", "is required to open a position (long, short, buy or sell)")
    usd = signal.usd
    if usd is None and signal.qty is None:
        usd = runtime.settings.default_usd
    source = "tradingview" if isinstance(caller.data, dict) and "secret" in caller.data else _source(request)
    cmd = OpenPosition(
        symbol,
        side,
        usd,
        signal.qty,
        signal.signal_id,
        signal.stop_price,
        source,
        position_id=secrets.token_hex(6),
        trail_pct=signal.trail_pct,
        tp1_price=signal.tp1_price,
        tp2_price=signal.tp2_price,
    )
    if not flip:
        try:
            return await _open(ctx, runtime, cmd, wait)
        except (TradingRefused, StoreUnavailable, ExchangeError) as exc:
            # Committed, it is the engine's to tell if it fails (entry_failed); not committed,
            # nothing was written or sent.
            if cmd.position_id is None or not engine.knows(cmd.position_id):
                await _tell_not_sent(runtime, cmd.symbol, cmd.side, exc)
            raise
    return await _flip(ctx, runtime, cmd, wait)


async def _signal_runtime(caller: Caller, signal: SignalIn, named: str | None) -> RuntimeApi:
    """The runtime of the account a signal is for; one not running refuses it, told."""
    try:
        return select(caller.fleet, signal.account or caller.account)
    except ApiError as exc:
        if exc.code == "not_ready":
            await _tell_not_running(caller.fleet, named or caller.account, signal, exc)
        raise


async def _tell_not_running(fleet: FleetApi, name: str | None, signal: SignalIn, exc: ApiError) -> None:
    """A signal for an account that is not running (its start failing, the fleet starting it
    again) is refused 503 and told to the trader, as one refused while its engine starts is
    (`_not_accepting`): its answer goes to the sender, and a close refused leaves what is open
    on the symbol open while the strategy is flat. By the fleet: the account has no engine."""
    if name is None and len(fleet.names) == 1:
        name = fleet.names[0]
    if name is None:
        return
    shown, why = f"{signal.symbol[:64]!r}", _capped(exc.message)
    if signal.wants_close:
        message = _exit_refused_text(shown, why, " once the account runs")
    else:
        message = _entry_refused_text(shown, signal.parsed_side, why)
    try:
        await fleet.signal_refused(name, message)
    except Exception as failed:
        log.warning("signal_refused_not_told", error=repr(failed))


async def _not_accepting(runtime: RuntimeApi, signal: SignalIn, status: EngineStatus) -> TradingRefused:
    """The refusal of a signal the engine does not take now (starting, recovering, a standby),
    told to the trader unless it is no news to them: an entry as `_tell_not_sent` decides; an exit
    while warden starts (after a restart, its start retrying) always, for the strategy is then flat
    while the position stays open on its stop. A standby's is the holder's to take."""
    refused = TradingRefused(
        f"not accepting signals ({status.state}): {'; '.join(status.reasons) or 'not ready'}"
    )
    shown = f"{signal.symbol[:64]!r}"  # the sender's text, before it is known as a market: quoted
    if not signal.wants_close:
        await _tell_not_sent(runtime, shown, signal.parsed_side, refused)
    elif status.state not in (EngineState.READ_ONLY, EngineState.STOPPED):
        await _tell_exit_refused(runtime.engine, shown, refused)
    return refused


def _trader_chose(runtime: RuntimeApi, exc: Exception) -> bool:
    """A refusal that is no news to the trader: a control they set (pause, the kill switch, the
    daily-loss pause: each its own alert and state), or a standby's (NotHolder, or an engine that
    stood down: the holder's engine is the one that trades, and lease_lost was said)."""
    if isinstance(exc, NotHolder):
        return True
    status = runtime.engine.status()
    if status.state in (EngineState.READ_ONLY, EngineState.STOPPED):
        return True
    return status.controls.refusal(runtime.clock.now()) is not None


async def _tell_not_sent(runtime: RuntimeApi, symbol: str, side: Side | None, exc: Exception) -> None:
    """An authenticated entry signal refused before anything was written or sent (503: the
    exchange could not be reached for its price, the database could not take it, the engine not
    ready or its lease unconfirmed) is told as one refused for its input is (signal_refused): its
    answer goes to the sender, and TradingView neither shows it nor sends it again. Not what the
    trader chose (_trader_chose); a risk limit alerts on its own (limit_refused)."""
    if _trader_chose(runtime, exc):
        return
    message = _entry_refused_text(symbol, side, _capped(str(exc)))
    await _tell(runtime.engine, message, f"entry:{type(exc).__name__}")


def _entry_refused_text(symbol: str, side: Side | None, why: str) -> str:
    """What signal_refused says of an entry refused before anything was sent."""
    what = f"{symbol} {side.value}" if side is not None else symbol
    return (
        f"entry signal for {what} refused, nothing was sent: {why}; the strategy may believe it"
        " holds it: send it again once warden accepts signals (warden status)"
    )


def _exit_refused_text(symbol: str, why: str, when: str = "") -> str:
    """What signal_refused says of a close signal refused: what is open stays open (`when`: when
    warden close can take it)."""
    return (
        f"close signal for {symbol} refused: {why}; what is open on {symbol} stays open (its stop"
        f" rests): close it with warden close{when}, or send the signal again"
    )


async def _flip(ctx: _Context, runtime: RuntimeApi, cmd: OpenPosition, wait: bool | None) -> JSONResponse:
    """Close the side `cmd` reverses, then open `cmd`; either half refused or failed is told to
    the trader (the answer goes to the sender), and the new side is never opened beside the old."""
    engine, symbol, side = runtime.engine, cmd.symbol, cmd.side
    try:
        await engine.check_open(cmd, replacing=symbol)  # refused: nothing closed, nothing sent
    except (TradingRefused, StoreUnavailable, ExchangeError) as exc:
        if not _trader_chose(runtime, exc):
            await _tell_flip_refused(engine, cmd, exc)
        raise
    # Only the side being reversed, as it stands now: a flip that raced another one (a reversal
    # alert fired twice) must not close the position the other just opened on the new side.
    closed: list[Position] = []
    try:
        for view in await engine.list_positions():
            if view.position.symbol == symbol and view.position.side is not side:
                closed.append(await engine.close_position(ClosePosition(view.position.id, "flip")))
    except NotHolder:
        raise
    except (TradingRefused, StoreUnavailable, ExchangeError) as exc:
        if closed:
            raise await _flip_half_done(engine, cmd, closed, exc) from None
        await _tell_flip_refused(engine, cmd, exc)
        raise
    if not closed:
        return await _open(ctx, runtime, cmd, wait)
    # Its new side failing is told once, as the flip's (_flip_half_done: it says what was closed),
    # not also as entry_failed; one that fails after the answer, unseen here, still alerts that.
    cmd = replace(cmd, caller_tells=True)

    async def late(task: asyncio.Task[Position]) -> None:
        """The open answered 202 and failed afterwards: told as if it had failed at once."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            position = task.result()
            if (
                position.status is PositionStatus.FAILED
                or position.exit_reason == ExitReason.PROTECTION_FAILED
            ):
                exc = await _not_opened(engine, position)
        if _half_done(exc):
            await _flip_half_done(engine, cmd, closed, cast(Exception, exc))

    try:
        return await _open(ctx, runtime, cmd, wait, late)
    except Exception as exc:
        if not _half_done(exc):
            raise
        raise await _flip_half_done(engine, cmd, closed, exc) from None


def _half_done(exc: BaseException | None) -> bool:
    """An open after a flip's close that failed or was refused: not a standby's refusal (the
    holder's engine is the one that trades), nor a 409 (the new side is held already: another
    flip opened it)."""
    if isinstance(exc, NotHolder) or (isinstance(exc, ApiError) and exc.status == 409):
        return False
    return isinstance(exc, (ApiError, TradingRefused, StoreUnavailable, ExchangeError))


async def _tell_flip_refused(engine: EngineApi, cmd: OpenPosition, exc: Exception) -> None:
    """A flip whose old side could not be closed (its entry still being resolved, the close
    refused or not filled, the database down): its new side is not opened — never both sides —
    and the trader is told, as for a refused exit: the answer goes to the sender, TradingView does
    not send the alert again, and the strategy then holds the new side while the account does not."""
    why = _capped(str(exc))
    sent = " (a close already sent may still fill)" if isinstance(exc, ExchangeError) else ""
    message = (
        f"flip of {cmd.symbol} to {cmd.side.value} refused: {why}; the {cmd.side.value} was not opened"
        f" and what is open on {cmd.symbol} stays open{sent}: see warden positions, close it with"
        " warden close, or send the signal again"
    )
    await _tell(engine, message)


async def _flip_half_done(
    engine: EngineApi, cmd: OpenPosition, closed: list[Position], exc: Exception
) -> ApiError:
    """A flip closed the old side, then its new side was refused or failed (the exchange refused
    or could not be reached, the database went down): the strategy holds the new side, the account
    does not. Its answer said "nothing was sent" (or "nothing is open") over a position just closed
    at market, and it goes to the sender (TradingView's server), not to the trader: the answer
    says what the flip closed, and the trader is told (signal_refused)."""
    if isinstance(exc, ApiError):
        status, code, why, extra = exc.status, exc.code, exc.message, exc.extra
    elif isinstance(exc, TradingRefused):
        status, code, why, extra = 503, "trading_refused", exc.reason, {}
    elif isinstance(exc, StoreUnavailable):
        status, code, why, extra = 503, "database_unavailable", f"database unavailable: {exc}", {}
    elif isinstance(exc, ExchangeUnavailable):
        status, code, why, extra = 503, "exchange_unavailable", f"exchange unavailable: {exc}", {}
    else:
        status, code, why, extra = 502, "exchange_error", f"exchange error: {exc}", {}
    old = ", ".join(f"{p.side.value} {p.id} ({p.status.value})" for p in closed)
    done = f"the flip closed the {old} on {cmd.symbol}, then the {cmd.side.value} was not opened: {why}"
    shown = _capped(done, REFUSAL_SHOWN * 2)
    held = [v.position.id for v in await engine.list_positions() if v.position.symbol == cmd.symbol]
    now = f"{', '.join(held)} is open on it: see warden positions" if held else "the account is flat on it"
    message = (
        f"{shown}; {now}, while the strategy holds a {cmd.side.value}: send the entry again with a new"
        " signal_id, or take the strategy flat"
    )
    await _tell(engine, message)
    return ApiError(status, code, done, **extra)


async def _exit_signal(engine: EngineApi, symbol: str, signal_id: str | None) -> JSONResponse:
    """A close signal; one refused after it was taken (the entry still being resolved, the database
    or the exchange unavailable) is told to the trader: its answer goes to the sender, and
    TradingView does not send it again, so the strategy is flat while the position stays open."""
    try:
        return await _close_signal(engine, symbol, signal_id)
    except NotHolder:
        raise  # a standby tells nobody: the holder's engine is the one that trades
    except (TradingRefused, StoreUnavailable, ExchangeError) as exc:
        await _tell_exit_refused(engine, symbol, exc)
        raise


async def _tell_exit_refused(engine: EngineApi, symbol: str, exc: Exception) -> None:
    await _tell(engine, _exit_refused_text(symbol, _capped(str(exc))), f"exit:{type(exc).__name__}")


async def _close_signal(engine: EngineApi, symbol: str, signal_id: str | None) -> JSONResponse:
    """A close signal: what is open on the symbol; with a signal id, what was open when that id
    first came (a resent one closes nothing opened since: 409)."""
    if signal_id is None:
        closed = await engine.close_symbol(symbol, "signal")
    else:
        outcome = await engine.close_by_signal(symbol, signal_id, "signal")
        if outcome.resent and not outcome.closed:
            raise _close_resent(symbol, signal_id, outcome)
        closed = outcome.positions
    if not closed:
        raise ApiError(404, "not_found", f"no open position on {symbol}", field="symbol")
    return model_response([await _render(engine, p) for p in closed])


def _close_resent(symbol: str, signal_id: str, outcome: SignalClose) -> ApiError:
    """409 for a close signal sent again: it closed (or found nothing to close) when it first
    came; what is open on the symbol now is left alone."""
    if not outcome.positions:
        done = f"found nothing open on {symbol}"
    else:
        done = f"closed {', '.join(p.id for p in outcome.positions)} on {symbol}"
    first = outcome.positions[0] if outcome.positions else None
    return ApiError(
        409,
        "already_exists",
        f"close signal {signal_id!r} was acted on already: it {done}; nothing was closed now",
        field="signal_id",
        position_id=None if first is None else first.id,
        position=None if first is None else PositionOut.of(first),
    )


def _refuse_partial_exit(
    symbol: str, side: Side | None, market_position: str | None, current: list[Position]
) -> None:
    """A `side` against the strategy's `market_position` (sell while it stays long) reduces the
    strategy's position: a partial exit, which warden does not make. It never opens a position
    against the strategy: 409 with the position held, else 422 naming market_position."""
    if market_position not in ("long", "short") or side is None or side.value == market_position:
        return
    why = (
        f"side {side.value!r} with market_position {market_position!r} reduces the strategy's"
        f" {market_position} (a partial exit)"
    )
    if current:
        held = current[0]
        raise ApiError(
            409,
            "already_exists",
            f"{symbol} already has an open position; {why}, which warden does not make; nothing was sent",
            field="symbol",
            position_id=held.id,
            position=PositionOut.of(held),
        )
    raise ValidationError(
        "market_position",
        f"is {market_position!r}: {why}; warden holds nothing on {symbol} and opens no"
        f" {side.value} against the strategy; nothing was sent",
    )


async def _open(
    ctx: _Context,
    runtime: RuntimeApi,
    cmd: OpenPosition,
    wait: bool | None,
    late: Callable[[asyncio.Task[Position]], Awaitable[None]] | None = None,
) -> JSONResponse:
    """Open in a task of its own: the answer may come before the outcome (202), the open goes on;
    `late` is then given the task once it ends (a flip tells the trader of an open that failed)."""
    engine = runtime.engine
    task = asyncio.create_task(engine.open_position(cmd))
    ctx.inflight.add(task)
    task.add_done_callback(lambda done: _finished(ctx, done))
    assert cmd.position_id is not None
    # asyncio.wait never cancels the task: a caller that hangs up does not stop the open.
    if wait is True:
        await asyncio.wait({task})
    else:
        await asyncio.wait({task}, timeout=0 if wait is False else runtime.settings.signal_wait)
        while not task.done() and not engine.knows(cmd.position_id):  # past the deadline, not committed
            await asyncio.wait({task}, timeout=COMMIT_POLL)
        if not task.done():
            if late is not None:
                _after(ctx, task, late)
            return model_response(await _render(engine, None, cmd.position_id), 202)
    try:
        position = task.result()
    except AlreadyExists as exc:
        field = "signal_id" if cmd.signal_id and exc.position.signal_id == cmd.signal_id else "symbol"
        raise ApiError(
            409,
            "already_exists",
            str(exc),
            field=field,
            position_id=exc.position.id,
            position=PositionOut.of(exc.position),
        ) from None
    except ExchangeError as exc:
        if not engine.knows(cmd.position_id):
            raise
        raise await _left_open(engine, cmd.position_id, exc) from None
    if position.status is PositionStatus.FAILED or position.exit_reason == ExitReason.PROTECTION_FAILED:
        raise await _not_opened(engine, position)
    opening = position.status is PositionStatus.OPENING
    return model_response(await _render(engine, position), 202 if opening else 201)


async def _not_opened(engine: EngineApi, position: Position) -> ApiError:
    """An entry the exchange refused (nothing is open), or one whose stop it refused (closed at
    market at once): the exchange's error naming why, with the position attached; never a 201,
    which says the stop rests."""
    failed = position.status is PositionStatus.FAILED
    kind = EventKind.ENTRY_FAILED if failed else EventKind.PROTECTION_FAILED
    why = await engine.failure(position.id, kind) or f"see GET {API}/positions/{position.id}/events"
    shown = await _render(engine, position)
    if failed:
        # the opener's words for an order the exchange could not be reached for (opening.py)
        unavailable = why.startswith("exchange unavailable")
        status, code = (503, "exchange_unavailable") if unavailable else (502, "exchange_error")
        message = f"the entry was not filled ({why}); nothing is open"
    else:
        status, code = 502, "exchange_error"
        state = "closed" if position.status is PositionStatus.CLOSED else "being closed"
        message = f"the exchange refused the stop ({why}); the position was {state} at market"
    return ApiError(status, code, message, position_id=position.id, position=shown)


async def _left_open(engine: EngineApi, position_id: str, exc: ExchangeError) -> ApiError:
    """The entry went out and the exchange then refused what followed (the stop, then the close
    protect-or-close fell back on): the position may be open on the exchange with no stop. Never
    the 503 of "refused, nothing sent": a 502 saying what is open, with the position attached."""
    shown = await _render(engine, None, position_id)
    if shown.status is PositionStatus.FAILED:
        state = "the entry was not filled; nothing is open"
    elif shown.status is PositionStatus.OPENING:
        state = f"position {position_id}: its entry is still being resolved; see `warden positions`"
    elif not shown.status.terminal and not shown.stop_resting:
        state = (
            f"position {position_id} is OPEN on the exchange and NOT protected (no stop rests); warden"
            " keeps trying a stop and a close: close it by hand if this goes on"
        )
    else:
        resting = "; its stop rests" if shown.stop_resting else ""
        state = f"position {position_id} is {shown.status.value}{resting}"
    return ApiError(502, "exchange_error", f"{state} ({exc})", position_id=position_id, position=shown)


def _after(
    ctx: _Context, task: asyncio.Task[Position], late: Callable[[asyncio.Task[Position]], Awaitable[None]]
) -> None:
    async def watch() -> None:
        await asyncio.wait({task})
        await late(task)

    watcher = asyncio.create_task(watch())
    ctx.inflight.add(watcher)
    watcher.add_done_callback(lambda done: _finished(ctx, done))


def _finished(ctx: _Context, task: asyncio.Task[Any]) -> None:
    ctx.inflight.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("signal_task_failed", error=repr(task.exception()))


def _check_age(signal: SignalIn, runtime: RuntimeApi) -> None:
    if signal.timestamp is None:
        return
    limit = runtime.settings.max_signal_age
    age = (runtime.clock.now() - signal.timestamp).total_seconds()
    if age > limit:
        raise ValidationError(
            "timestamp", f"the signal is {age:.0f} s old; signals older than {limit:g} s are refused"
        )
    if -age > limit:
        raise ValidationError("timestamp", f"is {-age:.0f} s in the future; check the sender's clock")


def _add_position_routes(app: FastAPI, ctx: _Context) -> None:
    @app.post(
        f"{API}/positions/close",
        response_model=list[PositionOut],
        summary="Close every open position on a symbol",
        responses=_errors(401, 403, 404, 413, 422, 502, 503),
        openapi_extra=_body(CloseSymbolIn),
        tags=["trading"],
    )
    async def post_close_symbol(caller: Writer) -> JSONResponse:
        body = parse_body(CloseSymbolIn, caller.data)
        engine = caller.runtime.engine
        symbol = normalise_symbol(body.symbol, engine.instrument)
        closed = await engine.close_symbol(symbol, "manual")
        if not closed:
            raise ApiError(404, "not_found", f"no open position on {symbol}", field="symbol")
        return model_response([await _render(engine, p) for p in closed])

    @app.post(
        f"{API}/positions/{{position_id}}/close",
        response_model=PositionOut,
        summary="Close a position at market",
        responses=_errors(401, 403, 404, 413, 422, 502, 503),
        openapi_extra=_body(TokenIn, required=False),
        tags=["trading"],
    )
    async def post_close(position_id: PositionIdPath, caller: Writer) -> JSONResponse:
        parse_body(TokenIn, caller.data)
        engine = caller.runtime.engine
        position = await engine.close_position(ClosePosition(PositionId(position_id)))
        return model_response(await _render(engine, position))

    @app.patch(
        f"{API}/positions/{{position_id}}",
        response_model=PositionOut,
        summary="Tighten an open position's stop, or move a take-profit",
        description="The new stop is placed before the old one is cancelled; a stop never loosens. A "
        "take-profit not yet hit moves to its new price (its order is replaced). Give at least one field; "
        "every field is checked before anything changes, so a 422 changes nothing.",
        responses=_errors(401, 403, 404, 413, 422, 502, 503),
        openapi_extra=_body(PositionPatchIn),
        tags=["trading"],
    )
    async def patch_position(position_id: PositionIdPath, caller: Writer) -> JSONResponse:
        body = parse_body(PositionPatchIn, caller.data)
        engine = caller.runtime.engine
        if body.stop_price is None and body.tp1_price is None and body.tp2_price is None:
            raise ValidationError("stop_price", "give stop_price, tp1_price or tp2_price")
        position = await engine.change_position(position_id, body.stop_price, body.tp1_price, body.tp2_price)
        return model_response(await _render(engine, position))

    @app.post(
        f"{API}/reconcile",
        response_model=ReconcileOut,
        summary="Run one reconciliation pass now",
        responses=_errors(401, 403, 413, 422, 502, 503),
        openapi_extra=_body(TokenIn, required=False),
        tags=["operations"],
    )
    async def post_reconcile(caller: Writer) -> JSONResponse:
        """Run one reconciliation pass now and return what it found and did."""
        parse_body(TokenIn, caller.data)
        return model_response(ReconcileOut.of(await caller.runtime.engine.reconcile()))


def _add_read_routes(app: FastAPI, ctx: _Context) -> None:
    reads = _errors(401, 422, 503)

    @app.get(f"{API}/positions", response_model=list[PositionOut], responses=reads, tags=["reading"])
    async def get_positions(
        caller: Reader,
        include_closed: Annotated[bool, Query(alias="all", description="Include closed positions.")] = False,
    ) -> JSONResponse:
        views = await caller.runtime.engine.list_positions(include_closed=include_closed)
        return model_response([PositionOut.of_view(v) for v in views])

    @app.get(
        f"{API}/positions/{{position_id}}",
        response_model=PositionOut,
        responses=_errors(401, 404, 422, 503),
        tags=["reading"],
    )
    async def get_position(position_id: PositionIdPath, caller: Reader) -> JSONResponse:
        return model_response(PositionOut.of_view(await caller.runtime.engine.get_position(position_id)))

    @app.get(
        f"{API}/positions/{{position_id}}/events",
        response_model=list[EventOut],
        responses=_errors(401, 404, 422, 503),
        tags=["reading"],
    )
    async def get_position_events(
        position_id: PositionIdPath,
        caller: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JSONResponse:
        engine = caller.runtime.engine
        await engine.get_position(position_id)  # 404 for an unknown id, not an empty list
        events = await engine.events_since(None, limit, position_id=position_id)
        return model_response([EventOut.of(e, i) for i, e in events])

    @app.get(
        f"{API}/accounts",
        response_model=list[AccountOut],
        summary="Every account this engine serves, and whether it holds the account's lease",
        responses=reads,
        tags=["reading"],
    )
    async def get_accounts(caller: Reader) -> JSONResponse:
        if caller.account is not None:
            select(caller.fleet, caller.account)  # 422 for an unknown name, as everywhere
        return model_response([_account_out(caller.fleet, name) for name in caller.fleet.names])

    @app.get(f"{API}/status", response_model=StatusOut, responses=_errors(401, 422, 503), tags=["reading"])
    async def get_status(caller: Reader) -> JSONResponse:
        return model_response(StatusOut.of(caller.runtime.engine.status()))

    @app.get(f"{API}/events", response_model=list[EventOut], responses=reads, tags=["reading"])
    async def get_events(
        caller: Reader,
        position_id: Annotated[str | None, Query(max_length=64), AfterValidator(no_nul)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JSONResponse:
        events = await caller.runtime.engine.events_since(None, limit, position_id=position_id)
        return model_response([EventOut.of(e, i) for i, e in events])


def _add_stream_route(app: FastAPI, ctx: _Context) -> None:
    @app.get(
        f"{API}/stream",
        response_class=StreamingResponse,
        summary="Every event as it is committed (server-sent events)",
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "`id:` the event's id, `event:` its kind, `data:` the event (EventOut).",
            },
            **_errors(401, 422, 503),
        },
        tags=["reading"],
    )
    async def get_stream(
        caller: Reader,
        last_event_id: Annotated[
            int | None, Header(ge=0, description="Resume after this event id (browsers send it).")
        ] = None,
        after: Annotated[int | None, Query(ge=0, description="Resume after this event id.")] = None,
        backlog: Annotated[
            int, Query(ge=0, le=1000, description="A new client first gets this many recent events.")
        ] = 0,
    ) -> StreamingResponse:
        runtime = caller.runtime
        resume = last_event_id if last_event_id is not None else after
        feed = ctx.feeds.of(runtime.engine, runtime.engine.events_since)
        stream = event_stream(feed, resume, backlog, runtime.clock.now, ctx.metrics.observe_stream_lag)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


def _add_ops_routes(app: FastAPI, ctx: _Context) -> None:
    @app.get(
        "/healthz",
        response_model=HealthOut,
        responses={
            503: {
                "model": HealthOut,
                "description": "Not ready to trade (with `account`: not held ready by this engine); "
                "the reasons say why.",
            },
            **_errors(422),
        },
        tags=["operations"],
    )
    async def healthz(request: Request, account: HealthAccountQuery = None) -> JSONResponse:
        """200 when ready to trade: every account this engine serves, or with `?account=NAME` that
        one account, held by this engine (a standby's 503 names the holder). No amounts."""
        check_query(request)
        if account is not None:
            return _account_health(ctx.fleet(), account)
        statuses = ctx.statuses()
        if len(statuses) > 1:
            return _fleet_health(statuses)
        status = next(iter(statuses.values()), None)
        if not isinstance(status, EngineStatus):
            reasons = [status] if isinstance(status, str) else ["engine not started"]
            return model_response(HealthOut(status="starting", reasons=reasons), 503)
        return _engine_health(status)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}},
            **_errors(422),
        },
        tags=["operations"],
    )
    async def get_metrics(request: Request) -> Response:
        check_query(request)
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


HealthAccountQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="One account (an [accounts.NAME] table): 200 only on the engine that holds its lease "
        "(`ok` when ready with no alarm, else `held` with the reasons: starting, degraded, an alarm); "
        "503 on the others (a standby's reasons name the holder). For a load balancer's health check "
        "routing each account's signals to its holder.",
    ),
]


def _engine_health(status: EngineStatus) -> JSONResponse:
    """ok when ready with no alarm; else 503 with the alarms and reasons."""
    if status.state is EngineState.READY and not status.alarms:
        return model_response(HealthOut(status="ok", state=status.state, reasons=list(status.reasons)))
    reasons = [*status.alarms, *status.reasons] or [f"engine is {status.state.value}"]
    return model_response(HealthOut(status="unavailable", state=status.state, reasons=reasons), 503)


def _account_health(fleet: FleetApi | None, name: str) -> JSONResponse:
    """`/healthz?account=NAME`: where NAME's signals go. 200 only where this engine holds NAME's
    lease: `ok` when ready with no alarm, else `held` with the alarms and reasons — an account
    starting, degraded or with an alarm (a position naked, its exchange unreachable) stays with its
    holder, for no other engine can act for it, and a close signal must reach the one that can
    (it answers and tells the trader itself). A standby's reasons name the holder (as GET
    /accounts' `holder`); an account not running says why; an unknown one is refused as every
    `?account=` is (select: 422)."""
    if fleet is None:
        return model_response(HealthOut(status="starting", reasons=["engine not started"]), 503)
    try:
        runtime = select(fleet, name)
    except ApiError as exc:  # known, not running: why
        return model_response(HealthOut(status="unavailable", reasons=[exc.message]), 503)
    status = runtime.engine.status()
    if runtime.is_holder and status.state not in (EngineState.READ_ONLY, EngineState.STOPPED):
        if status.state is EngineState.READY and not status.alarms:
            return model_response(HealthOut(status="ok", state=status.state, reasons=list(status.reasons)))
        reasons = [*status.alarms, *status.reasons] or [f"engine is {status.state.value}"]
        return model_response(HealthOut(status="held", state=status.state, reasons=reasons))
    holder = runtime.holder
    held = f"held by {holder}" if holder else "held by no engine this one has seen"
    reasons = [*status.alarms, *status.reasons]
    if not any(held in reason for reason in reasons):
        reasons.insert(0, f"standby: account {runtime.settings.account!r} is {held}")
    return model_response(HealthOut(status="unavailable", state=status.state, reasons=reasons), 503)


def _fleet_health(statuses: Mapping[str, EngineStatus | str]) -> JSONResponse:
    """ok when every account is ready with no alarm; else each account's trouble, named."""
    reasons: list[str] = []
    for name, status in statuses.items():
        if isinstance(status, str):
            reasons.append(f"{name}: not running: {status}")
        elif status.state is not EngineState.READY or status.alarms:
            why = "; ".join([*status.alarms, *status.reasons]) or f"engine is {status.state.value}"
            reasons.append(f"{name}: {why}")
    if not reasons:
        return model_response(HealthOut(status="ok", reasons=[]))
    return model_response(HealthOut(status="unavailable", reasons=reasons), 503)


def _account_out(fleet: FleetApi, name: str) -> AccountOut:
    runtime = fleet.runtime(name)
    if runtime is None:
        why = fleet.failures.get(name, "starting")
        table = fleet.settings.accounts.get(name)
        return AccountOut(
            name=name,
            exchange=(table.exchange if table is not None else None) or fleet.settings.exchange,
            lease_held=False,
            holder=None,
            state=None,
            accepting_signals=False,
            reasons=[f"not running: {why}", *([kept] if (kept := fleet.kill_waiting(name)) else [])],
            open_positions=None,
        )
    status = runtime.engine.status()
    return AccountOut(
        name=name,
        exchange=status.exchange,
        lease_held=runtime.is_holder,
        holder=runtime.holder,
        state=status.state,
        accepting_signals=status.accepting_signals,
        reasons=list(status.reasons),
        alarms=list(status.alarms),
        open_positions=status.open_positions,
    )


def _source(request: Request) -> str:
    return "cli" if request.headers.get("user-agent", "").startswith("warden-cli") else "api"


async def _render(
    engine: EngineApi, position: Position | None, position_id: str | None = None
) -> PositionOut:
    """A position just changed: show it with its live view (stop resting, uPnL) when available."""
    pid = position.id if position is not None else position_id
    assert pid is not None
    try:
        return PositionOut.of_view(await engine.get_position(pid))
    except (PositionNotFound, StoreUnavailable):
        if position is None:
            raise
        return PositionOut.of(position)


def _install_openapi(app: FastAPI) -> None:
    """FastAPI's document, plus the request bodies the routes read themselves (strict, any content type)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in _REQUEST_MODELS:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
"""Swagger UI for /api/v1/docs: one exact version, each file checked against its hash (sha384 of the
npm package's file) by the browser. The page runs in warden's origin, where a script may do anything
the dashboard's cookie may, so no floating version (FastAPI's default is `@5`, unchecked)."""
SWAGGER_JS_SHA384 = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"
SWAGGER_CSS_SHA384 = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"
DOCS_PAGE = f"""<!doctype html>
<html>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css"
  integrity="{SWAGGER_CSS_SHA384}" crossorigin="anonymous">
<title>warden - API</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js"
  integrity="{SWAGGER_JS_SHA384}" crossorigin="anonymous"></script>
<script>
SwaggerUIBundle({{url: "{API}/openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]}});
</script>
</body>
</html>
"""


def _add_docs_route(app: FastAPI) -> None:
    @app.get(f"{API}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the path as documented: of the most specific matching paths (the fewest
    parameters, so /positions/close is not also /positions/{position_id})."""
    scope = {**request.scope, "method": "GET"}
    matching = [
        route
        for route in request.app.routes
        if getattr(route, "methods", None) and route.matches(scope)[0] is not Match.NONE
    ]
    if not matching:
        return []
    fewest = min(getattr(route, "path", "").count("{") for route in matching)
    methods: set[str] = set()
    for route in matching:
        if getattr(route, "path", "").count("{") == fewest:
            methods |= set(getattr(route, "methods", ()))
    return sorted(methods - {"HEAD"})


def _without_trailing_slash(request: Request) -> str | None:
    """The path without its trailing slash, when a route serves that path (/api/v1/signals/):
    what the caller meant. Such a path is not redirected (an empty 307 reads as success to curl,
    and a sender that does not follow it never delivers its signal), so the 404 says it."""
    path = request.url.path
    if len(path) < 2 or not path.endswith("/"):
        return None
    meant = path.rstrip("/") or "/"
    scope = {**request.scope, "path": meant}
    routes = request.app.routes
    return meant if any(route.matches(scope)[0] is not Match.NONE for route in routes) else None


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        accepted = exc.accepted if isinstance(exc, FieldError) else None
        return error_response(422, "validation_error", exc.message, field=exc.field, accepted=accepted)

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
            position=PositionOut.of(exc.position),
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
        log.error("api_internal_error", error=repr(exc), exc_info=exc)
        return error_response(500, "internal", "internal error; see the engine log")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = exc.headers
        message = str(exc.detail)
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers = {"Allow": ", ".join(_allowed_methods(request))}
        elif exc.status_code == 404 and (meant := _without_trailing_slash(request)) is not None:
            message = (
                f"no route {request.url.path}: use {meant} (without the trailing slash); nothing was done"
            )
        return error_response(exc.status_code, code, message, headers=headers)

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
