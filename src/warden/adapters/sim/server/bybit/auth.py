"""Bybit v5 request authentication, the response envelope, and refusals.

Signed requests carry `X-BAPI-API-KEY`, `X-BAPI-TIMESTAMP`, `X-BAPI-RECV-WINDOW` and
`X-BAPI-SIGN` = hex HMAC-SHA256(secret, timestamp + apiKey + recvWindow + payload), where the
payload is the raw query string of a GET and the raw JSON body of a POST (ccxt 4.5.90
`bybit.sign`). The timestamp must satisfy server - recvWindow <= timestamp < server + 1000.

Every answer, refusals included, is HTTP 200 with the envelope
`{"retCode", "retMsg", "result", "retExtInfo", "time"}`; ccxt maps `retCode` (its exact table)
and `retMsg` (its broad table) to exceptions.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from warden.adapters.sim.server.errors import VenueError

DEFAULT_RECV_WINDOW = 5000
FUTURE_TOLERANCE_MS = 1000

Json = dict[str, Any]


class BybitError(VenueError):
    """A refusal in Bybit's envelope: HTTP 200 (the default) and a non-zero retCode."""

    def __init__(
        self, code: int, msg: str, status: int = 200, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = dict(headers or {})
        """Response headers (a 10006 carries Bybit's X-Bapi-Limit-* headers)."""

    @property
    def note(self) -> str:
        return f"{self.code} {self.msg}"

    def response(self) -> web.Response:
        body = {"retCode": self.code, "retMsg": self.msg, "result": {}, "retExtInfo": {}, "time": _wall_ms()}
        return web.json_response(body, status=self.status, headers=self.headers or None)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def envelope(result: Any, now_ms: int) -> Json:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms}


def params_error(what: str) -> BybitError:
    return BybitError(10001, f"params error: {what}")


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def verify(headers: Any, payload: str, api_key: str, api_secret: str, server_ms: int) -> None:
    """Check the X-BAPI-* headers of a signed request against `payload` (raw query or raw body)."""
    key = headers.get("X-BAPI-API-KEY", "")
    if not key or not hmac.compare_digest(key, api_key):
        raise BybitError(10003, "API key is invalid.")
    raw_timestamp = headers.get("X-BAPI-TIMESTAMP", "")
    raw_window = headers.get("X-BAPI-RECV-WINDOW") or str(DEFAULT_RECV_WINDOW)
    try:
        timestamp, window = int(raw_timestamp), int(raw_window)
    except ValueError as exc:
        raise BybitError(
            10002, "invalid request, please check your server timestamp or recv_window param"
        ) from exc
    signature = headers.get("X-BAPI-SIGN", "")
    origin = f"{raw_timestamp}{key}{raw_window}{payload}"
    if not signature or not hmac.compare_digest(sign(api_secret, origin), signature.lower()):
        raise BybitError(10004, "error sign! origin_string[<redacted>]")
    if not server_ms - window <= timestamp < server_ms + FUTURE_TOLERANCE_MS:
        raise BybitError(
            10002,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{timestamp}],server_timestamp[{server_ms}],recv_window[{window}]",
        )


def ws_auth_ok(args: Any, api_key: str, api_secret: str, server_ms: int) -> str | None:
    """Check a private socket's `{"op": "auth", "args": [key, expires, signature]}`; None if good,
    else the `ret_msg` to refuse it with. The signature is hex HMAC-SHA256 of "GET/realtime" + expires."""
    if not isinstance(args, list) or len(args) != 3:
        return "Params Error"
    key, expires, signature = (str(a) for a in args)
    if not hmac.compare_digest(key, api_key):
        return "error:Invalid apikey"
    try:
        expires_ms = int(expires)
    except ValueError:
        return "Params Error"
    if expires_ms <= server_ms:
        return "error:expire time has passed"
    if not hmac.compare_digest(sign(api_secret, f"GET/realtime{expires}"), signature.lower()):
        return "error:signature verification failed"
    return None
