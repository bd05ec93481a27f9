"""The test-control surface: `/sim/*` moves prices, trades behind warden's back, injects faults.

    POST /sim/price           {"symbol", "price"}             move a mark (fires triggers)
    POST /sim/external-order  {"symbol", "side", "qty", "reduce_only"?, "type"?, "trigger_price"?,
                               "close_position"?}             a trade made outside warden (ext-N)
    POST /sim/cancel          {"client_order_id"}             cancel any open order, as a human would
    POST /sim/faults          {knob: value, ...}              set SimFaults knobs; GET shows them
    POST /sim/disconnect      {}                              drop every user-data socket
    POST /sim/expire-listen-key {}                            the listen key expires: listenKeyExpired is
                                                              pushed, the user-data sockets close, and
                                                              the old key is refused from now on
    GET  /sim/state                                           marks, positions, open orders, exposure
    GET  /sim/requests                                        every request the server has seen

`exposure` in GET /sim/state: per symbol that has (or has had) a position, {"symbol", "side"
(long/short/flat), "qty" (unsigned), "unprotected_seconds" (the current stretch without a
covering stop, 0 when covered or flat), "max_unprotected_seconds" (the longest, current
included)}, on the simulator's clock; see `warden.adapters.sim.exposure`.

`exposure_stretches` in GET /sim/state: every uncovered stretch the simulator has seen since it
started (the newest 10,000; not kept in --state-file), oldest first: {"symbol", "start", "end"
(ISO times; end null while it goes on), "seconds"}.

Fault knobs: rest_latency, stream_latency, drop_rate, duplicate_rate, reorder_rate, fill_delay,
partial_fill, execute_delay, stream_gap, subscribe_delay, retry_after (numbers); fill_parts (a whole
number, 2 to 20); events_before_response,
fail_queries (booleans); reject_if, unavailable_if, timeout_after_execution_if, execute_late_if,
ack_only_if, server_error_if, rate_limit_if: true (every order), false/null (none) or a glob on
the client order id (e.g. "*-e1"). server_error_if answers a matching place or cancel with
HTTP 502 (-1001, nothing executed; a client cannot tell, so it must look the order up),
rate_limit_if with HTTP 429 (-1003), carrying `Retry-After: <retry_after>` (seconds, rounded
up) when retry_after is above 0, as Binance's 429 does (Binance face). The Bybit face answers
both as Bybit does, HTTP 200: server_error_if with retCode 10016, rate_limit_if with retCode
10006, with `X-Bapi-Limit-Status: 0`, `X-Bapi-Limit` and `X-Bapi-Limit-Reset-Timestamp` (ms on
the server's clock: now plus retry_after). stream_gap: seconds of silence on the user-data stream
from its next event (those events are lost), then every user-data socket is closed (the client
reconnects); it reads back 0 once over. A MARKET order matching ack_only_if is answered NEW with
executedQty "0" and fills fill_delay seconds later at the mark of that moment (a background task;
ORDER_TRADE_UPDATE TRADE and ACCOUNT_UPDATE on the user stream); until then it is NEW in lookups
and open orders, and a cancel cancels it for good. With partial_fill (0 to 1) an acknowledged
order fills that part first, rounded down to the lot, and the rest fill_delay later — with
fill_parts N, in N parts, each but the last that part of what is left; a reduce-only one no more
than the position holds when each part comes due: TRADE
X=PARTIALLY_FILLED then X=FILLED (z cumulative; Bybit: order PartiallyFilled then
Filled, an execution each), PARTIALLY_FILLED (PartiallyFilled) in lookups and open orders
between. A place matching execute_late_if is answered
HTTP 503 -1007 ("execution status unknown"; Bybit: its timeout answer) with nothing done: lookups
do not find it until, execute_delay seconds later, it reaches the matching engine and executes as
sent (a market order fills at the mark of that moment, with its stream events), as a real
exchange may land such an order seconds later; should its client id be taken meanwhile, it is
refused and nothing happens. subscribe_delay (Bybit only): seconds a private socket takes to act
on a `subscribe` (its topics and its acknowledgement come only then). clock_offset (a number,
negative allowed): seconds the server's clock runs ahead of the host's (negative: behind); the
time endpoint, the timestamp window of signed requests (-1021 / retCode 10002) and every time the
server reports follow it (see `ServerClock`). Knobs live in memory only: a restarted server starts
with none set, but a fill still pending in the --state-file resumes.

The surface is the same on every venue (`warden sim serve --venue binance|bybit`), errors included:
bad input is refused with HTTP 400 and a `{"code", "msg"}` body (Binance's codes), never a 500,
and changes nothing: a body that is not a JSON object (or uses NaN / Infinity literals), a
missing or unknown symbol, a number that is not finite (NaN, Infinity, 1e400) or not a number
at all, a non-positive price or one above the exchange's maxPrice, a quoted "false" where a
boolean belongs. POST /sim/faults checks every knob in the body before setting any.
"""

from __future__ import annotations

import fnmatch
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from aiohttp import web

from warden.adapters.sim.faults import OrderPredicate
from warden.adapters.sim.rules import MAX_PRICE
from warden.adapters.sim.server.auth import BinanceError, mandatory
from warden.adapters.sim.server.shapes import market_id, num
from warden.adapters.sim.server.venue import SimVenue
from warden.domain.reports import OrderReport
from warden.domain.values import OrderSide, OrderType, Symbol
from warden.ports import OrderNotFound, OrderRejected

NUMBER_KNOBS = (
    "rest_latency",
    "stream_latency",
    "drop_rate",
    "duplicate_rate",
    "reorder_rate",
    "fill_delay",
    "partial_fill",
    "execute_delay",
    "stream_gap",
    "subscribe_delay",
    "retry_after",
)
RATE_KNOBS = ("drop_rate", "duplicate_rate", "reorder_rate", "partial_fill")  # chances, parts: at most 1
INT_KNOBS = {"fill_parts": (2, 20)}  # whole numbers, and their bounds
FLAG_KNOBS = ("events_before_response", "fail_queries", "stream_silent")
PREDICATE_KNOBS = (
    "reject_if",
    "unavailable_if",
    "timeout_after_execution_if",
    "execute_late_if",
    "ack_only_if",
    "server_error_if",
    "rate_limit_if",
)


def order_json(order: OrderReport) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.exchange_order_id,
        "symbol": order.symbol,
        "market_id": market_id(order.symbol),
        "side": order.side.value,
        "type": order.type.value,
        "qty": num(order.qty),
        "status": order.status.value,
        "filled_qty": num(order.filled_qty),
        "avg_price": None if order.avg_price is None else num(order.avg_price),
        "trigger_price": None if order.trigger_price is None else num(order.trigger_price),
        "reduce_only": order.reduce_only,
    }


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body; -1102 for anything else (bad JSON, NaN/Infinity literals, a list)."""
    try:
        text = await request.text()
        body = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BinanceError(-1102, f"the body must be a JSON object: {exc}") from exc
    if not isinstance(body, dict):
        raise BinanceError(-1102, "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    """A string field; -1102 if it is missing (without a default), empty or not a string."""
    raw = body.get(name, default)
    if raw is None or raw == "":
        raise mandatory(name)
    if not isinstance(raw, str):
        raise BinanceError(-1102, f"'{name}' must be a string, not {raw!r}")
    return raw


def _flag(body: dict[str, Any], name: str) -> bool:
    """A JSON boolean (absent: false). A quoted "false" or a 1 is refused, never guessed at."""
    raw = body.get(name, False)
    if not isinstance(raw, bool):
        raise BinanceError(-1102, f"'{name}' must be true or false, not {raw!r}")
    return raw


def _symbol(venue: SimVenue, body: dict[str, Any]) -> Symbol:
    symbol = venue.find_symbol(_text(body, "symbol"))
    if symbol is None:
        raise BinanceError(-1121, "Invalid symbol.")
    return symbol


def _decimal(body: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    """A finite decimal from a JSON number or a decimal string; -1100 for NaN, infinities and non-numbers."""
    raw = body.get(name)
    if raw is None:
        if required:
            raise mandatory(name)
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise BinanceError(-1100, f"'{name}' must be a number or a decimal string, not {raw!r}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}': {raw!r}.") from exc
    if not value.is_finite():
        raise BinanceError(-1100, f"'{name}' must be a finite number, not {raw!r}")
    return value


async def set_price(request: web.Request, venue: SimVenue) -> Any:
    """Move a mark: the price must be a finite number in (0, MAX_PRICE]; a known symbol is required."""
    body = await _body(request)
    symbol = _symbol(venue, body)
    price = _decimal(body, "price")
    assert price is not None
    if price <= 0:
        raise BinanceError(-1100, f"price must be positive, not {num(price)}")
    if price > MAX_PRICE:
        raise BinanceError(-1100, f"price must be at most {num(MAX_PRICE)}, not {num(price)}")
    before = len(venue.core.open_orders(symbol))
    venue.sim.set_mark(symbol, price)
    return {"symbol": symbol, "price": num(price), "fired": before - len(venue.core.open_orders(symbol))}


async def external_order(request: web.Request, venue: SimVenue) -> Any:
    body = await _body(request)
    symbol = _symbol(venue, body)
    try:
        side = OrderSide(_text(body, "side").lower())
        order_type = OrderType(_text(body, "type", "market").lower())
    except ValueError as exc:
        raise BinanceError(-1102, f"bad side or type: {exc}") from exc
    close_position = _flag(body, "close_position")
    reduce_only = _flag(body, "reduce_only")
    qty = _decimal(body, "qty", required=not close_position) or Decimal(0)
    trigger_price = _decimal(body, "trigger_price", required=False)
    try:
        report = venue.sim.external_order(
            symbol,
            side,
            qty,
            reduce_only,
            order_type=order_type,
            trigger_price=trigger_price,
            close_position=close_position,
        )
    except OrderRejected as exc:
        raise BinanceError(-2010, str(exc)) from exc
    return order_json(report)


async def cancel(request: web.Request, venue: SimVenue) -> Any:
    body = await _body(request)
    try:
        return order_json(venue.sim.cancel_external(_text(body, "client_order_id")))
    except OrderNotFound as exc:
        raise BinanceError(-2011, "Unknown order sent.") from exc


def _predicate(spec: object) -> OrderPredicate | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return lambda request: True
    if isinstance(spec, str):
        pattern = spec
        return lambda request: fnmatch.fnmatchcase(request.client_order_id, pattern)
    raise BinanceError(-1102, f"a predicate knob takes true, false, null or a glob, not {spec!r}")


CLOCK_KNOB = "clock_offset"
"""Not a SimFaults field: the server's clock (`venue.clock.offset`), set through the same surface."""


def _knob(name: str, value: object) -> object:
    """The SimFaults value of one knob from its JSON value; -1102 for an unknown knob or a bad value."""
    if name == CLOCK_KNOB:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise BinanceError(-1102, f"{name} takes a finite number of seconds, not {value!r}")
        return float(value)
    if name in NUMBER_KNOBS:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise BinanceError(-1102, f"{name} takes a finite non-negative number, not {value!r}")
        if value < 0 or (name in RATE_KNOBS and value > 1):
            bounds = "between 0 and 1" if name in RATE_KNOBS else "non-negative"
            raise BinanceError(-1102, f"{name} must be {bounds}, not {value!r}")
        return float(value)
    if name in INT_KNOBS:
        low, high = INT_KNOBS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BinanceError(-1102, f"{name} takes a whole number from {low} to {high}, not {value!r}")
        return value
    if name in FLAG_KNOBS:
        if not isinstance(value, bool):
            raise BinanceError(-1102, f"{name} takes true or false, not {value!r}")
        return value
    if name in PREDICATE_KNOBS:
        return _predicate(value)
    raise BinanceError(-1102, f"unknown fault knob {name!r}")


async def set_faults(request: web.Request, venue: SimVenue) -> Any:
    """Set the knobs in the body, all or none: every value is checked before any is set."""
    body = await _body(request)
    values = {name: _knob(name, value) for name, value in body.items()}
    faults = venue.sim.faults
    for name, value in values.items():
        if name == CLOCK_KNOB:
            assert isinstance(value, float)
            venue.clock.offset = value
            continue
        setattr(faults, name, value)
        if name in PREDICATE_KNOBS:
            venue.fault_specs[name] = body[name]
    return await get_faults(request, venue)


async def get_faults(request: web.Request, venue: SimVenue) -> Any:
    faults = venue.sim.faults
    shown: dict[str, Any] = {name: getattr(faults, name) for name in (*NUMBER_KNOBS, *INT_KNOBS, *FLAG_KNOBS)}
    for name in PREDICATE_KNOBS:
        shown[name] = venue.fault_specs.get(name) if getattr(faults, name) is not None else None
    shown[CLOCK_KNOB] = venue.clock.offset
    return shown


async def disconnect(request: web.Request, venue: SimVenue) -> Any:
    return {"private": await venue.close_private()}


async def expire_listen_key(request: web.Request, venue: SimVenue) -> Any:
    return {"expired": await venue.expire_listen_key()}


async def state(request: web.Request, venue: SimVenue) -> Any:
    core = venue.core
    return {
        "marks": {s: num(p) for s, p in sorted(core.marks().items())},
        "positions": [
            {
                "symbol": p.symbol,
                "side": p.side.value,
                "qty": num(p.qty),
                "entry_price": num(p.entry_price),
                "realized_pnl": num(p.realized_pnl),
                "fees": num(p.fees),
            }
            for p in (core.position(s) for s in sorted(core.instruments))
            if not p.flat
        ],
        "open_orders": [order_json(o) for o in core.open_orders()],
        "exposure": [
            {
                "symbol": e.symbol,
                "side": e.side,
                "qty": num(e.qty),
                "unprotected_seconds": e.unprotected_seconds,
                "max_unprotected_seconds": e.max_unprotected_seconds,
            }
            for e in venue.sim.exposure()
        ],
        "exposure_stretches": [
            {
                "symbol": t.symbol,
                "start": t.start.isoformat(),
                "end": None if t.end is None else t.end.isoformat(),
                "seconds": t.seconds(venue.now()),
            }
            for t in venue.sim.exposure_stretches()
        ],
    }


async def requests(request: web.Request, venue: SimVenue) -> Any:
    return list(venue.requests)
