"""The one table that turns ccxt exceptions into the port's errors.

ccxt's tree (4.5.90), and where each branch lands. `order` = place or cancel (the call
may have changed something), `query` = every read:

    ccxt.BaseError
    ├── ExchangeError
    │   ├── InvalidOrder
    │   │   ├── OrderNotFound ................ OrderNotFound            (both kinds)
    │   │   ├── OrderImmediatelyFillable ..... OrderRejected  (-2021)
    │   │   └── (other: -4116 duplicate id, -4120 use algo, -2022, -4164, ...) OrderRejected
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

A response the parser cannot read (ParseError, or a KeyError / TypeError while reading
it) counts like ccxt's BadResponse.

On an order call, anything that does not prove the request was refused is an
ExchangeTimeout: the outcome is unknown and the engine looks the order up by client id.
That includes ExchangeNotAvailable: Binance answers 503 "Unknown error, please check your
request or try again later" when the order reached the matching engine but the gateway
gave up waiting ("execution status UNKNOWN" in Binance's docs), and ccxt reports a
dropped connection the same way. Only 418/429 and -1021 are refused before processing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import Enum

import ccxt
from warden.ports import ExchangeError, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected


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


def translate(exc: BaseException, call: Call) -> ExchangeError | None:
    """The port error for a ccxt exception; None if `exc` is not ccxt's (let it propagate)."""
    for ccxt_class, on_order, on_query in TABLE:
        if isinstance(exc, ccxt_class):
            target = on_order if call is Call.ORDER else on_query
            return target(f"{type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def translated(call: Call) -> Iterator[None]:
    """Run a block of ccxt calls; ccxt exceptions leave it as port errors (cause kept)."""
    try:
        yield
    except ccxt.BaseError as exc:
        error = translate(exc, call)
        if error is None:
            raise
        raise error from exc
    except UNREADABLE as exc:
        target = ExchangeTimeout if call is Call.ORDER else ExchangeUnavailable
        raise target(f"unreadable response: {type(exc).__name__}: {exc}") from exc
