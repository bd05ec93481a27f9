"""The controls over HTTP: POST /api/v1/pause, /resume, /kill, and how a risk limit answers.

    POST /api/v1/pause  {"reason"?: str}                     200 {"controls": {...}}
    POST /api/v1/resume                                       200 {"controls": {...}}
    POST /api/v1/kill   {"flatten"?: bool, "reason"?: str}    200 {"controls", "closed", "failed",
                                                                   "cancelled_orders"}

A signal a per-signal limit refuses answers 422 {"error": "limit_exceeded", "limit": "<setting>",
"message", "value", "maximum"}; nothing was sent. Kept apart from api.py so each merges alone.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import pydantic
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from warden.domain.controls import Controls, LimitExceeded
from warden.domain.errors import ValidationError
from warden.entrypoints.schemas import controls_json, first_error, position_json
from warden.service.commands import KillReport

API = "/api/v1"


class ControlsApi(Protocol):
    """The part of the engine the control routes use."""

    async def pause(self, reason: str = "") -> Controls: ...
    async def resume(self) -> Controls: ...
    async def kill(self, flatten: bool = False, reason: str = "") -> KillReport: ...


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field("", max_length=200)


class KillIn(PauseIn):
    flatten: bool = Field(False, strict=True)


def parse_body(model: type[PauseIn], data: object) -> PauseIn:
    """An optional JSON object body; the first problem is a ValidationError naming its field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError("body", "expected a JSON object")
    data = {k: v for k, v in data.items() if k != "secret"}
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise first_error(exc.errors(include_url=False)) from None


def kill_json(report: KillReport) -> dict[str, Any]:
    return {
        "controls": controls_json(report.controls),
        "closed": [position_json(p) for p in report.closed],
        "failed": dict(report.failed),
        "cancelled_orders": report.cancelled_orders,
    }


Engine = Callable[[], ControlsApi]
Body = Callable[[Request], Any]


def add_control_routes(app: FastAPI, engine: Engine, body: Body) -> None:
    """`engine()` is the running engine (or raises not_ready); `await body(request)` is the
    authorized JSON body (or raises unauthorized)."""

    @app.post(f"{API}/pause")
    async def post_pause(request: Request) -> dict[str, Any]:
        """Pause: no new entries; exits and protection keep working. Survives restarts."""
        cmd = parse_body(PauseIn, await body(request))
        return {"controls": controls_json(await engine().pause(cmd.reason))}

    @app.post(f"{API}/resume")
    async def post_resume(request: Request) -> dict[str, Any]:
        """Clear pause, kill switch and the daily-loss pause."""
        parse_body(PauseIn, await body(request))
        return {"controls": controls_json(await engine().resume())}

    @app.post(f"{API}/kill")
    async def post_kill(request: Request) -> dict[str, Any]:
        """Kill switch: pause; with flatten, close every position reduce-only and cancel every order."""
        cmd = parse_body(KillIn, await body(request))
        assert isinstance(cmd, KillIn)
        return kill_json(await engine().kill(cmd.flatten, cmd.reason))

    async def limit_exceeded(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LimitExceeded)
        body_: dict[str, Any] = {
            "error": "limit_exceeded",
            "limit": exc.limit,
            "message": f"{exc}; nothing was sent",
            "value": _dec(exc.value),
            "maximum": _dec(exc.maximum),
        }
        return JSONResponse(body_, status_code=422)

    app.add_exception_handler(LimitExceeded, limit_exceeded)


def _dec(value: Decimal) -> str:
    return f"{value:f}"
