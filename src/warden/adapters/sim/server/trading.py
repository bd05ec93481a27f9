"""Orders: `/fapi/v1/order` for market orders, `/fapi/v1/algoOrder` for conditional ones.

Like Binance since 2025-12-09, STOP_MARKET / TAKE_PROFIT_MARKET sent to the plain order
endpoint are refused with -4120; the algo endpoint knows only conditional orders (at most
`MAX_NUM_ALGO_ORDERS` open per symbol, -4045 beyond), and a lookup on the wrong endpoint
finds nothing (-2013 / -2011).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from warden.adapters.sim.server import shapes
from warden.adapters.sim.server.auth import BinanceError, mandatory
from warden.adapters.sim.server.binance_venue import BinanceVenue
from warden.adapters.sim.server.params import (
    Params,
    boolean,
    client_id,
    decimal,
    integer,
    limit,
    require,
    side,
)
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport, OrderRequest
from warden.domain.values import ClientOrderId, OrderType, Symbol
from warden.ports import ExchangeUnavailable

ALGO_TYPES = {"STOP_MARKET": OrderType.STOP_MARKET, "TAKE_PROFIT_MARKET": OrderType.TAKE_PROFIT_MARKET}
CONDITIONAL_NAMES = {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
BOTH_EMPTY = "Param '{}' or '{}' must be sent, but both were empty/null!"
USE_ALGO = "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
NOT_FOUND = "Order does not exist."
UNKNOWN_ORDER = "Unknown order sent."
SIDE_MISMATCH = "Order's position side does not match user's setting."


def _position_side(venue: BinanceVenue, params: Params) -> None:
    """-4061 for an order whose positionSide does not fit the account's position mode: in one-way
    mode it must be BOTH (or absent); in hedge mode Binance wants LONG or SHORT, which the
    simulator (one-way only) does not trade, so it refuses every order then."""
    if venue.core.hedge_mode or str(params.get("positionSide") or "BOTH").upper() != "BOTH":
        raise BinanceError(-4061, SIDE_MISMATCH)


def _not_found() -> BinanceError:
    return BinanceError(-2013, NOT_FOUND)


def _in_window(order: OrderReport, params: Params) -> bool:
    at = shapes.ms(order.at)
    start, end = integer(params, "startTime"), integer(params, "endTime")
    return (start is None or at >= start) and (end is None or at <= end)


# ----- plain orders -------------------------------------------------------------------


def _plain(venue: BinanceVenue, order_id: int | None, cid: str | None) -> OrderReport:
    """A matching-engine order by id or client id: market orders and fired conditionals' children."""
    core = venue.core
    if order_id is not None:
        algo_id = shapes.algo_id_of_child(order_id)
        if algo_id is not None:
            algo = core.order_by_id(algo_id)
            if algo is None or algo.status is not OrderStatus.FILLED:
                raise _not_found()
            return shapes.child_order(algo)
        found = core.order_by_id(str(order_id))
    else:
        assert cid is not None
        if cid.startswith("algo") and cid[4:].isdigit():
            return _plain(venue, shapes.CHILD_ID_OFFSET + int(cid[4:]), None)
        found = core.order(cid)
    if found is None or found.type.conditional:
        raise _not_found()
    return found


def _lookup_plain(venue: BinanceVenue, params: Params) -> OrderReport:
    symbol = venue.symbol(require(params, "symbol"))
    order_id, cid = integer(params, "orderId"), params.get("origClientOrderId")
    if order_id is None and not cid:
        raise BinanceError(-1102, BOTH_EMPTY.format("origClientOrderId", "orderId"))
    order = _plain(venue, order_id, cid)
    if order.symbol != symbol:
        raise _not_found()
    return order


async def new_order(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    kind = require(params, "type").upper()
    if kind in CONDITIONAL_NAMES:
        raise BinanceError(-4120, USE_ALGO)
    if kind != "MARKET":
        raise BinanceError(-1116, "Invalid orderType.")
    _position_side(venue, params)
    cid = client_id(params, "newClientOrderId")
    request = OrderRequest(
        ClientOrderId(cid),
        symbol,
        side(params),
        OrderType.MARKET,
        decimal(params, "quantity"),
        None,
        boolean(params, "reduceOnly"),
    )
    return shapes.plain_order(await venue.place(request))


async def query_order(venue: BinanceVenue, params: Params) -> Any:
    await venue.gate()
    return shapes.plain_order(_lookup_plain(venue, params))


async def cancel_order(venue: BinanceVenue, params: Params) -> Any:
    try:
        order = _lookup_plain(venue, params)
    except BinanceError as exc:
        raise BinanceError(-2011, UNKNOWN_ORDER) from exc
    if order.status is not OrderStatus.OPEN or venue.core.order(order.client_order_id) != order:
        raise BinanceError(-2011, UNKNOWN_ORDER)
    return shapes.plain_order(await venue.cancel(order))


def _symbol_filter(venue: BinanceVenue, params: Params) -> Symbol | None:
    raw = params.get("symbol")
    return venue.symbol(raw) if raw else None


async def open_orders(venue: BinanceVenue, params: Params) -> Any:
    symbol = _symbol_filter(venue, params)
    await venue.gate()
    orders = venue.core.open_orders(symbol)
    return [shapes.plain_order(o) for o in orders if not o.type.conditional]


async def all_orders(venue: BinanceVenue, params: Params) -> Any:
    symbol = _symbol_filter(venue, params)
    await venue.gate()
    rows: list[OrderReport] = []
    for order in venue.core.orders(symbol):
        if not order.type.conditional:
            rows.append(order)
        elif order.status is OrderStatus.FILLED:
            rows.append(shapes.child_order(order))
    rows = [o for o in rows if _in_window(o, params)]
    return [shapes.plain_order(o) for o in rows[-limit(params) :]]


async def cancel_all_orders(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    for order in venue.core.open_orders(symbol):
        if not order.type.conditional:
            await venue.cancel(order)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


# ----- algo (conditional) orders ------------------------------------------------------


def _algo(venue: BinanceVenue, params: Params) -> OrderReport:
    algo_id, cid = integer(params, "algoId"), params.get("clientAlgoId")
    if algo_id is None and not cid:
        raise BinanceError(-1102, BOTH_EMPTY.format("clientAlgoId", "algoId"))
    order = venue.core.order_by_id(str(algo_id)) if algo_id is not None else venue.core.order(cid or "")
    raw_symbol = params.get("symbol")
    if order is None or not order.type.conditional:
        raise _not_found()
    if raw_symbol and order.symbol != venue.symbol(raw_symbol):
        raise _not_found()
    return order


def _algo_json(venue: BinanceVenue, order: OrderReport) -> Any:
    return shapes.algo_order(order, close_position=venue.core.is_close_position(order.exchange_order_id))


async def new_algo_order(venue: BinanceVenue, params: Params) -> Any:
    if require(params, "algoType").upper() != "CONDITIONAL":
        raise BinanceError(-1116, "Invalid algoType.")
    symbol = venue.symbol(require(params, "symbol"))
    kind = require(params, "type").upper()
    order_type = ALGO_TYPES.get(kind)
    if order_type is None:
        raise BinanceError(-1116, "Invalid orderType.")
    close_position = boolean(params, "closePosition")
    if close_position and "reduceOnly" in params:
        raise BinanceError(-1106, "Parameter 'reduceOnly' sent when not required.")
    if close_position and params.get("quantity"):
        raise BinanceError(-1106, "Parameter 'quantity' sent when not required.")
    if "triggerPrice" not in params:
        raise mandatory("triggerPrice")
    _position_side(venue, params)
    if venue.core.resting_count(symbol) >= shapes.MAX_NUM_ALGO_ORDERS:
        raise BinanceError(-4045, "Reach max stop order limit.")
    request = OrderRequest(
        ClientOrderId(client_id(params, "clientAlgoId")),
        symbol,
        side(params),
        order_type,
        Decimal(0) if close_position else decimal(params, "quantity"),
        decimal(params, "triggerPrice"),
        boolean(params, "reduceOnly"),
    )
    return _algo_json(venue, await venue.place(request, close_position=close_position))


async def query_algo_order(venue: BinanceVenue, params: Params) -> Any:
    await venue.gate()
    return _algo_json(venue, _algo(venue, params))


async def cancel_algo_order(venue: BinanceVenue, params: Params) -> Any:
    try:
        order = _algo(venue, params)
    except BinanceError as exc:
        raise BinanceError(-2011, UNKNOWN_ORDER) from exc
    if order.status is not OrderStatus.OPEN or venue.core.order(order.client_order_id) != order:
        raise BinanceError(-2011, UNKNOWN_ORDER)
    await venue.cancel(order)
    algo_id, cid = int(order.exchange_order_id), order.client_order_id
    return {"algoId": algo_id, "clientAlgoId": cid, "code": "200", "msg": "success"}


async def open_algo_orders(venue: BinanceVenue, params: Params) -> Any:
    symbol = _symbol_filter(venue, params)
    await venue.gate()
    return [_algo_json(venue, o) for o in venue.core.open_orders(symbol) if o.type.conditional]


async def all_algo_orders(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    await venue.gate()
    rows = [o for o in venue.core.orders(symbol) if o.type.conditional and _in_window(o, params)]
    return [_algo_json(venue, o) for o in rows[-limit(params) :]]


async def cancel_all_algo_orders(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    for order in venue.core.open_orders(symbol):
        if order.type.conditional:
            await venue.cancel(order)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


# ----- trades -------------------------------------------------------------------------


async def user_trades(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    start, end, from_id = integer(params, "startTime"), integer(params, "endTime"), integer(params, "fromId")
    only_order = integer(params, "orderId")
    try:
        fills = await venue.sim.fetch_fills(symbol, None)
    except ExchangeUnavailable as exc:
        raise BinanceError(-1001, "Service Unavailable.", 503) from exc
    rows = []
    for fill in fills:
        order = venue.core.order_by_id(fill.exchange_order_id)
        order_id = fill.exchange_order_id
        if order is not None and order.type.conditional:
            order_id = shapes.child_order_id(order_id)
        row = shapes.user_trade(fill, order_id, _fee(venue, fill))
        if start is not None and row["time"] < start:
            continue
        if end is not None and row["time"] > end:
            continue
        if from_id is not None and row["id"] < from_id:
            continue
        if only_order is not None and row["orderId"] != only_order:
            continue
        rows.append(row)
    return rows[: limit(params)] if from_id is not None or start is not None else rows[-limit(params) :]


def _fee(venue: BinanceVenue, fill: FillReport) -> tuple[str, str]:
    asset = venue.core.fee_asset
    return shapes.fee_paid(fill, asset, venue.core.mark(asset) if asset is not None else None)
