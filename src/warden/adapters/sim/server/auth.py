"""Binance request authentication and errors: API key, HMAC-SHA256 signature, recvWindow.

Errors leave the server as `{"code": <negative int>, "msg": <text>}` with Binance's
HTTP status; ccxt maps them by code (and, for a few, by the exact message text, so the
messages below are Binance's own wording).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from urllib.parse import parse_qsl

from aiohttp import web

from warden.adapters.sim.server.errors import VenueError

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000
FUTURE_TOLERANCE_MS = 1000


class BinanceError(VenueError):
    """A refusal rendered as Binance's error body (also the /sim/* control surface's, on every venue)."""

    def __init__(self, code: int, msg: str, status: int = 400, *, retry_after: int = 0) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after = retry_after
        """Seconds for the `Retry-After` header (Binance's 429 and 418 carry one); 0: none."""

    @property
    def note(self) -> str:
        return f"{self.code} {self.msg}"

    def response(self) -> web.Response:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after > 0 else None
        return web.json_response({"code": self.code, "msg": self.msg}, status=self.status, headers=headers)


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def invalid_signature() -> BinanceError:
    return BinanceError(-1022, "Signature for this request is not valid.")


def check_api_key(request: web.Request, api_key: str) -> None:
    """The X-MBX-APIKEY header must carry the configured key."""
    sent = request.headers.get("X-MBX-APIKEY")
    if not sent:
        raise BinanceError(-2014, "API-key format invalid.", 401)
    if not hmac.compare_digest(sent, api_key):
        raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


def total_params(raw_query: str, raw_body: str) -> str:
    """Binance's totalParams: the query string, then the body, as sent (never re-encoded)."""
    if raw_query and raw_body:
        return f"{raw_query}&{raw_body}"
    return raw_query or raw_body


def split_signature(payload: str) -> tuple[str, str | None]:
    """(everything that was signed, the signature): the `signature` parameter cut out verbatim."""
    parts = payload.split("&") if payload else []
    signed = [p for p in parts if not p.startswith("signature=")]
    signatures = [p.partition("=")[2] for p in parts if p.startswith("signature=")]
    return "&".join(signed), (signatures[-1] if signatures else None)


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def verify_signed(payload: str, secret: str, now_ms: Callable[[], int]) -> dict[str, str]:
    """Check the HMAC over the raw payload and the timestamp window; return the parameters."""
    signed, signature = split_signature(payload)
    if not signature:
        raise mandatory("signature")
    if not hmac.compare_digest(sign(secret, signed).lower(), signature.lower()):
        raise invalid_signature()
    params = dict(parse_qsl(signed, keep_blank_values=True))
    check_timestamp(params, now_ms())
    return params


def check_timestamp(params: dict[str, str], server_ms: int) -> None:
    """Reject a request from the future (>1 s ahead) or older than its recvWindow (-1021)."""
    raw = params.get("timestamp")
    if not raw:
        raise mandatory("timestamp")
    try:
        timestamp = int(raw)
        window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW))
    except ValueError as exc:
        raise BinanceError(-1100, "Illegal characters found in parameter 'timestamp'.") from exc
    if window <= 0 or window > MAX_RECV_WINDOW:
        raise BinanceError(-1131, "recvWindow must be less than 60000")
    if timestamp > server_ms + FUTURE_TOLERANCE_MS or server_ms - timestamp > window:
        raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
