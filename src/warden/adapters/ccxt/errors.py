"""The one table that turns ccxt exceptions into the port's errors.

ccxt's tree (4.5.90), and where each branch lands. `order` = place or cancel (the call
may have changed something), `query` = every read:

    ccxt.BaseError
    ├── ExchangeError
    │   ├── InvalidOrder
    │   │   ├── OrderNotFound ................ OrderNotFound            (both kinds)
    │   │   ├── OrderImmediatelyFillable ..... OrderRejected  (-2021)
    │   │   ├── DuplicateOrderId ............. DuplicateOrder (order) / OrderRejected (query)
    │   │   └── (other: -4120 use algo, -2022, -4164, ...) OrderRejected
    │   ├── InsufficientFunds ................ OrderRejected  (-2019)
    │   ├── BadRequest / BadSymbol ........... OrderRejected  (-1102, -1111, -1121, -4003, ...)
    │   ├── ArgumentsRequired / NotSupported . OrderRejected  (refused before sending)
    │   ├── AuthenticationError, OperationRejected ... OrderRejected (order) / ExchangeUnavailable (query)
    │   ├── ExchangeClosedByUser ............. ExchangeUnavailable
    │   └── ExchangeError itself (unmapped code, aiohttp ClientError) ... ExchangeTimeout (order) /
    │                                                                   ExchangeUnavailable (query)
    └── OperationFailed
        ├── NetworkError
        │   ├── DDoSProtection (418, 429), RateLimitExceeded (-1003) .... ExchangeUnavailable
        │   ├── InvalidNonce (-1021 timestamp outside recvWindow) ....... ExchangeUnavailable
        │   ├── RequestTimeout (-1007, 408, 504, client timeout) ....... ExchangeTimeout (order) /
        │   ├── ExchangeNotAvailable (5xx, connection errors) ......... ExchangeTimeout (order) /
        │   └── NetworkError itself .................................... ExchangeTimeout (order) /
        │                                                                ExchangeUnavailable (query)
        └── BadResponse / OperationFailed (-1000, -1001) ............. ExchangeTimeout (order) /
                                                                       ExchangeUnavailable (query)

Before that class table, each venue has its own table of exchange error codes (`BINANCE`,
`BYBIT`, side by side below): the code is read from the error ccxt raised (its message
carries the exchange's JSON body) and, when the venue's table knows it, decides alone. That
keeps the verdict for the codes warden depends on independent of how ccxt maps them (for
Binance, ccxt's choice depends on the URL: pitfall 2 of the reference). The `*_NOT_MODIFIED`
sets list the answers that mean "already so" (Bybit 110043 leverage, 110025 position mode,
110026 margin mode; Binance -4046 / -4059 "no need to change"): not errors at all for a
caller that only wanted the setting to hold.

A response the parser cannot read (ParseError, or a KeyError / TypeError while reading
it) counts like ccxt's BadResponse.

On an order call, anything that does not prove the request was refused is an
ExchangeTimeout: the outcome is unknown and the engine looks the order up by client id.
That includes ExchangeNotAvailable: Binance answers 503 "Unknown error, please check your
request or try again later" when the order reached the matching engine but the gateway
gave up waiting ("execution status UNKNOWN" in Binance's docs), and ccxt reports a
dropped connection the same way. Only 418/429, -1021 and -5028 (the matching engine's own
recvWindow, a backlog inside Binance) are refused before processing: retryable, never a final
refusal (a stop taken for refused closes its position at market).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from enum import Enum

import ccxt
from warden.ports import (
    DuplicateOrder,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderNotFound,
    OrderRejected,
)


class ParseError(ValueError):
    """A ccxt structure lacks something the domain needs."""


UNREADABLE = (ParseError, KeyError, TypeError)


class Call(Enum):
    """What kind of call failed: it decides what an ambiguous failure means."""

    ORDER = "order"  # place_order, cancel_order: may have changed the account
    QUERY = "query"  # everything else: changed nothing


# (ccxt class, error on an ORDER call, error on a QUERY call), most specific first.
TABLE: tuple[tuple[type[Exception], type[ExchangeError], type[ExchangeError]], ...] = (
    (ccxt.OrderNotFound, OrderNotFound, OrderNotFound),
    (ccxt.DuplicateOrderId, DuplicateOrder, OrderRejected),
    (ccxt.InvalidOrder, OrderRejected, OrderRejected),
    (ccxt.InsufficientFunds, OrderRejected, OrderRejected),
    (ccxt.BadRequest, OrderRejected, OrderRejected),  # includes BadSymbol
    (ccxt.ArgumentsRequired, OrderRejected, OrderRejected),
    (ccxt.NotSupported, OrderRejected, OrderRejected),
    (ccxt.AuthenticationError, OrderRejected, ExchangeUnavailable),
    (ccxt.OperationRejected, OrderRejected, ExchangeUnavailable),
    (ccxt.ExchangeClosedByUser, ExchangeUnavailable, ExchangeUnavailable),
    (ccxt.DDoSProtection, ExchangeUnavailable, ExchangeUnavailable),  # 418, 429
    (ccxt.RateLimitExceeded, ExchangeUnavailable, ExchangeUnavailable),  # -1003 (a sibling, not a child)
    (ccxt.InvalidNonce, ExchangeUnavailable, ExchangeUnavailable),
    (ccxt.RequestTimeout, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.ExchangeNotAvailable, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.NetworkError, ExchangeTimeout, ExchangeUnavailable),
    (ccxt.OperationFailed, ExchangeTimeout, ExchangeUnavailable),  # BadResponse, -1000, -1001
    (ccxt.ExchangeError, ExchangeTimeout, ExchangeUnavailable),
)


Verdict = tuple[type[ExchangeError], type[ExchangeError]]
"""(the port error on an ORDER call, on a QUERY call)."""
REJECTED: Verdict = (OrderRejected, OrderRejected)
DUPLICATE: Verdict = (DuplicateOrder, OrderRejected)
NOT_FOUND: Verdict = (OrderNotFound, OrderNotFound)
RETRYABLE: Verdict = (ExchangeUnavailable, ExchangeUnavailable)
UNKNOWN: Verdict = (ExchangeTimeout, ExchangeUnavailable)
REFUSED_KEY: Verdict = (OrderRejected, ExchangeUnavailable)

CodeTable = Mapping[int, Verdict]

BINANCE: CodeTable = {
    -2013: NOT_FOUND,  # Order does not exist
    -2011: NOT_FOUND,  # Unknown order sent (cancel)
    -2021: REJECTED,  # Order would immediately trigger
    -2022: REJECTED,  # ReduceOnly Order is rejected
    -4116: DUPLICATE,  # ClientOrderId is duplicated (among open orders)
    -4120: REJECTED,  # conditional type on /fapi/v1/order: use the algo endpoint
    -2019: REJECTED,  # Margin is insufficient
    -4164: REJECTED,  # notional below the minimum
    -4045: REJECTED,  # Reach max stop order limit
    -1111: REJECTED,  # precision over the maximum
    -1102: REJECTED,  # mandatory parameter missing or malformed
    -1121: REJECTED,  # Invalid symbol
    -1021: RETRYABLE,  # timestamp outside recvWindow: refused before processing
    -5028: RETRYABLE,  # outside the matching engine's recvWindow: not processed (ccxt: InvalidOrder)
    -1003: RETRYABLE,  # too many requests
    -1022: REFUSED_KEY,  # signature not valid
    -2015: REFUSED_KEY,  # invalid API key, IP or permissions
    -1007: UNKNOWN,  # timeout waiting for the backend: execution status unknown
    -1001: UNKNOWN,  # internal error; unable to process your request
    -1000: UNKNOWN,  # unknown error
}

BYBIT: CodeTable = {
    110001: NOT_FOUND,  # order not exists or too late to cancel
    110072: DUPLICATE,  # OrderLinkedID is duplicate (an orderLinkId is single-use)
    110092: REJECTED,  # expect Rising, but trigger_price <= current: already crossed
    110093: REJECTED,  # expect Falling, but trigger_price >= current: already crossed
    110009: REJECTED,  # the number of stop (conditional) orders exceeds the maximum (10 per symbol)
    110004: REJECTED,  # insufficient wallet balance
    110006: REJECTED,  # cannot afford the estimated position margin
    110007: REJECTED,  # available balance not enough for the new order
    110012: REJECTED,  # insufficient available balance
    110044: REJECTED,  # insufficient available margin
    110045: REJECTED,  # insufficient wallet balance
    110017: REJECTED,  # reduce-only rule not satisfied
    110094: REJECTED,  # order value below the minimum notional
    10001: REJECTED,  # parameter error
    10003: REFUSED_KEY,  # invalid API key
    10004: REFUSED_KEY,  # invalid signature
    10005: REFUSED_KEY,  # permission denied for this key
    10010: REFUSED_KEY,  # request IP not whitelisted
    10002: RETRYABLE,  # timestamp / recv_window: refused before processing
    10006: RETRYABLE,  # too many visits (rate limit)
    10018: RETRYABLE,  # IP rate limit
    10016: UNKNOWN,  # server error / request timeout: the outcome is unknown
}

BINANCE_CLOCK = frozenset({-1021})
"""Binance's refusal of a request stamped outside [server - recvWindow, server + 1 s]."""
BYBIT_CLOCK = frozenset({10002})
"""Bybit's refusal of a request stamped outside [server - recv_window, server + 1 s)."""
BINANCE_NOT_MODIFIED = frozenset({-4046, -4059})
"""Binance's "no need to change" answers: margin type, position side (dual) mode."""
BINANCE_BUSY = frozenset({-4047, -4048})
"""Binance refuses a margin-type change while the symbol has open orders / a position."""
BYBIT_NOT_MODIFIED = frozenset({110043, 110025, 110026, 34036, 30084})
"""Bybit's "not modified" answers: leverage, position mode, margin mode (and their v3 forms)."""
BYBIT_BUSY = frozenset({110073})
"""Bybit refuses to switch a unified account's (account-wide) margin mode while any symbol has a
position or open orders ("Set margin mode failed")."""

_CODE = re.compile(r'"(?:code|retCode|ret_code)"\s*:\s*"?(-?\d+)')


def error_code(exc: BaseException) -> int | None:
    """The exchange's error code in a ccxt exception's message (ccxt puts the JSON body there)."""
    match = _CODE.search(str(exc))
    return None if match is None else int(match.group(1))


def translate(exc: BaseException, call: Call, codes: CodeTable | None = None) -> ExchangeError | None:
    """The port error for a ccxt exception; None if `exc` is not ccxt's (let it propagate).

    `codes`: the venue's code table, consulted first."""
    if codes is not None and isinstance(exc, ccxt.BaseError):
        code = error_code(exc)
        verdict = None if code is None else codes.get(code)
        if verdict is not None:
            target = verdict[0] if call is Call.ORDER else verdict[1]
            return target(f"{type(exc).__name__}: {exc}")
    for ccxt_class, on_order, on_query in TABLE:
        if isinstance(exc, ccxt_class):
            target = on_order if call is Call.ORDER else on_query
            return target(f"{type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def translated(call: Call, codes: CodeTable | None = None) -> Iterator[None]:
    """Run a block of ccxt calls; ccxt exceptions leave it as port errors (cause kept)."""
    try:
        yield
    except ccxt.BaseError as exc:
        error = translate(exc, call, codes)
        if error is None:
            raise
        raise error from exc
    except UNREADABLE as exc:
        target = ExchangeTimeout if call is Call.ORDER else ExchangeUnavailable
        raise target(f"unreadable response: {type(exc).__name__}: {exc}") from exc
