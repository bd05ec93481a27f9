"""The controls over HTTP: POST /api/v1/pause, /resume, /kill, and how a risk limit answers.

    POST /api/v1/pause  {"reason"?: str}                     200 {"controls": {...}}
    POST /api/v1/resume                                       200 {"controls": {...}}
    POST /api/v1/kill   {"flatten"?: bool, "reason"?: str}    200 {"controls", "closed", "failed",
                                                                   "cancelled_orders"}

A signal a per-signal limit refuses answers 422 {"error": "limit_exceeded", "limit": "<setting>",
"message", "value", "maximum"}; nothing was sent. The routes are in api.py (`_add_control_routes`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from warden.domain.controls import Controls, LimitExceeded
from warden.entrypoints.schemas import ErrorOut
from warden.service.commands import KillReport

API = "/api/v1"


class ControlsApi(Protocol):
    """The part of the engine the control routes use."""

    async def pause(self, reason: str = "") -> Controls: ...
    async def resume(self) -> Controls: ...
    async def kill(self, flatten: bool = False, reason: str = "") -> KillReport: ...


def add_limit_handler(app: FastAPI) -> None:
    """A risk limit's refusal answers 422 limit_exceeded (before the generic validation handler)."""

    async def limit_exceeded(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LimitExceeded)
        body = ErrorOut(
            error="limit_exceeded",
            message=f"{exc}; nothing was sent",
            limit=exc.limit,
            value=_dec(exc.value),
            maximum=_dec(exc.maximum),
        )
        return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=422)

    app.add_exception_handler(LimitExceeded, limit_exceeded)


def _dec(value: Decimal) -> str:
    return f"{value:f}"
