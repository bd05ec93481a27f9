"""The protocol's names, as `warden.adapters.drift.protocol` defines them (this environment cannot
import warden: driftpy and ccxt do not install together). tests/test_protocol.py compares them."""

from __future__ import annotations

from typing import Any

VERSION = 1
VERSION_KEY = "v"
VERSION_HEADER = "X-Drift-Sidecar-Version"
BASE_PRECISION = 10**9
PRICE_PRECISION = 10**6
QUOTE_PRECISION = 10**6
MAX_USER_ORDER_ID = 255

MARKET, TRIGGER_MARKET = "market", "trigger_market"
LONG, SHORT = "long", "short"
ABOVE, BELOW = "above", "below"
TRIGGERED_ABOVE, TRIGGERED_BELOW = "triggered_above", "triggered_below"
OPEN, FILLED, CANCELED = "open", "filled", "canceled"
CONFIRMED, FAILED, PENDING, EXPIRED = "confirmed", "failed", "pending", "expired"
BAD_REQUEST, REJECTED, NOT_FOUND, UNAVAILABLE, VERSION_MISMATCH = (
    "bad_request",
    "rejected",
    "not_found",
    "unavailable",
    "version",
)
HTTP_STATUS = {BAD_REQUEST: 400, NOT_FOUND: 404, VERSION_MISMATCH: 409, REJECTED: 422, UNAVAILABLE: 503}

Json = dict[str, Any]


def body(**fields: Any) -> Json:
    return {VERSION_KEY: VERSION, **fields}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message

    def body(self) -> Json:
        return body(error={"code": self.code, "message": self.message})
