"""The Drift sidecar protocol, version 1: what warden and the sidecar (or the simulator) say.

JSON over HTTP, plus one websocket for events; the full description is
`docs/reference/drift-sidecar-protocol.md`. Everything here is shared by both ends that live in
warden's environment: the adapter (`warden.adapters.drift`) and the simulated venue
(`warden.adapters.sim.drift`). The sidecar itself (`sidecar/drift`, its own environment) keeps
its own copy of these names; its tests check that copy against this one's JSON.

Amounts are Drift's own integers, written as decimal strings (u64 does not fit a JSON double):
base amounts at BASE_PRECISION (1e9), prices at PRICE_PRECISION (1e6), quote at 1e6.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

VERSION: Final = 1
VERSION_KEY: Final = "v"

BASE_PRECISION: Final = 10**9
PRICE_PRECISION: Final = 10**6
QUOTE_PRECISION: Final = 10**6

MAX_USER_ORDER_ID: Final = 255
"""user_order_id is a u8; 0 means "none" and is never checked for uniqueness by Drift."""
MAX_OPEN_ORDERS: Final = 32
MAX_PERP_POSITIONS: Final = 8

# ----- enums on the wire ------------------------------------------------------------------

MARKET = "market"
TRIGGER_MARKET = "trigger_market"
ORDER_TYPES = (MARKET, TRIGGER_MARKET, "limit", "trigger_limit", "oracle")

LONG, SHORT = "long", "short"
ABOVE, BELOW = "above", "below"
TRIGGERED_ABOVE, TRIGGERED_BELOW = "triggered_above", "triggered_below"
TRIGGER_CONDITIONS = (ABOVE, BELOW, TRIGGERED_ABOVE, TRIGGERED_BELOW)

OPEN, FILLED, CANCELED = "open", "filled", "canceled"

# transaction states (GET /v1/tx/{signature}, POST /v1/tx/{signature}/send)
CONFIRMED, FAILED, PENDING, EXPIRED = "confirmed", "failed", "pending", "expired"

# ----- errors ---------------------------------------------------------------------------------

BAD_REQUEST = "bad_request"  # 400: malformed; nothing was done
REJECTED = "rejected"  # 422: Drift (or the simulator) refused it; nothing was done
NOT_FOUND = "not_found"  # 404: no such order / transaction / market
UNAVAILABLE = "unavailable"  # 503: the RPC could not be reached; nothing was sent
VERSION_MISMATCH = "version"  # 409: the client asked for a protocol version the server does not speak

HTTP_STATUS: Final = {
    BAD_REQUEST: 400,
    NOT_FOUND: 404,
    VERSION_MISMATCH: 409,
    REJECTED: 422,
    UNAVAILABLE: 503,
}

VERSION_HEADER: Final = "X-Drift-Sidecar-Version"
"""Every request carries the protocol version it speaks; a server that does not speak it answers 409."""

Json = dict[str, Any]


def body(**fields: Any) -> Json:
    """A response body: the version first, then the fields."""
    return {VERSION_KEY: VERSION, **fields}


def error_body(code: str, message: str, **extra: Any) -> Json:
    return body(error={"code": code, "message": message, **extra})


TAKER_FEE_RATE: Final = Decimal("0.00035")
"""Drift's tier-1 perp taker fee (3.5 bps), used by the simulator."""
