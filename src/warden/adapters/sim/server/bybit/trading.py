"""Bybit v5 orders and executions (category linear, one-way mode).

Market orders and conditional market orders (`triggerPrice` + `triggerDirection`, 1 rising
or 2 falling) only; at most `MAX_CONDITIONAL_ORDERS` conditional orders rest per symbol; an
`orderLinkId` may be used once, ever (110072 for a second order with it, whatever became of
the first). An order answer carries ids only: what happened comes from realtime / history /
execution list or the private stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from warden.adapters.sim.server.bybit import shapes
from warden.adapters.sim.server.bybit.auth import BybitError, params_error
from warden.adapters.sim.server.bybit.params import (
    Params,
    boolean,
    category,
    decimal,
    integer,
    order_link_id,
    require,
    side,
    text,
)
from warden.adapters.sim.server.bybit.rest import page
from warden.adapters.sim.server.bybit.venue import MAX_CONDITIONAL_ORDERS, NOT_EXISTS, BybitVenue
from warden.adapters.sim.server.shapes import ms
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport, OrderRequest
from warden.domain.values import ClientOrderId, OrderType, Symbol

WEEK_MS = 7 * 24 * 3600 * 1000
RECENT_CLOSED = 500
"""/v5/order/realtime finds a closed order by id only among the account's 500 most recent ones."""
TRIGGER_BY = ("LastPrice", "MarkPrice", "IndexPrice")


def _linear(params: Params) -> None:
    if category(params) != "linear":
        raise params_error("the simulator trades category linear only")


def _ids(order: OrderReport) -> dict[str, str]:
    return {
        "orderId": shapes.bybit_order_id(order.exchange_order_id),
        "orderLinkId": shapes.link_id(order.client_order_id),
    }


def _find(venue: BybitVenue, params: Params) -> OrderReport | None:
    """The order named by `orderId` or `orderLinkId` (one is required), any status; None if none."""
    order_id, link = text(params, "orderId"), text(params, "orderLinkId")
    if order_id is None and link is None:
        raise params_error("orderId or orderLinkId is required")
    if order_id is not None:
        core_id = shapes.core_order_id(order_id)
        found = None if core_id is None else venue.core.order_by_id(core_id)
        if found is not None and link is not None and shapes.link_id(found.client_order_id) != link:
            return None
        return found
    assert link is not None
    return venue.core.order(link)


def _open_to_change(venue: BybitVenue, params: Params) -> OrderReport:
    symbol = venue.symbol(text(params, "symbol"))
    order = _find(venue, params)
    if (
        order is None
        or order.symbol != symbol
        or order.status is not OrderStatus.OPEN
        or venue.core.order(order.client_order_id) != order
    ):
        raise BybitError(110001, NOT_EXISTS)
    return order


# ----- create, amend, cancel -----------------------------------------------------------


async def create_order(venue: BybitVenue, params: Params) -> Any:
    _linear(params)
    symbol = venue.symbol(text(params, "symbol"))
    order_side = side(params)
    if require(params, "orderType") != "Market":
        raise params_error("the simulator takes orderType Market only")
    if integer(params, "positionIdx") not in (None, 0):
        raise BybitError(10001, "position idx not match position mode")
    if text(params, "stopLoss") is not None or text(params, "takeProfit") is not None:
        raise params_error("attached stopLoss / takeProfit are not supported by the simulator")
    qty = decimal(params, "qty")
    assert qty is not None
    link = order_link_id(params)
    if link is not None and venue.core.order(link) is not None:
        raise BybitError(110072, "OrderLinkedID is duplicate")
    reduce_only, close_on_trigger = boolean(params, "reduceOnly"), boolean(params, "closeOnTrigger")
    trigger = decimal(params, "triggerPrice", required=False)
    kind, trigger_by = OrderType.MARKET, ""
    if trigger is not None:
        direction = integer(params, "triggerDirection")
        if direction not in (1, 2):
            raise params_error("TriggerDirection invalid: 1 (rise) or 2 (fall) is required")
        kind = shapes.order_type_for(order_side, direction)
        trigger_by = text(params, "triggerBy") or "LastPrice"
        if trigger_by not in TRIGGER_BY:
            raise params_error(f"triggerBy invalid: {trigger_by!r}")
        if venue.core.resting_count(symbol) >= MAX_CONDITIONAL_ORDERS:
            raise BybitError(110009, "The number of stop orders exceeds maximum limit allowed")
    cid = link or venue.fresh_client_id()
    request = OrderRequest(
        ClientOrderId(cid), symbol, order_side, kind, qty, trigger, reduce_only or close_on_trigger
    )
    extras = shapes.OrderExtras(venue.now_ms(), trigger_by, close_on_trigger)
    return _ids(await venue.place(request, extras))


async def amend_order(venue: BybitVenue, params: Params) -> Any:
    _linear(params)
    order = _open_to_change(venue, params)
    if not order.type.conditional:
        raise BybitError(110001, NOT_EXISTS)
    qty = decimal(params, "qty", required=False)
    trigger = decimal(params, "triggerPrice", required=False)
    if qty is None and trigger is None:
        raise params_error("nothing to amend: qty or triggerPrice is required")
    return _ids(await venue.amend(order, qty, trigger))


async def cancel_order(venue: BybitVenue, params: Params) -> Any:
    """By orderId or orderLinkId, plain or conditional alike (`orderFilter` is for spot only)."""
    _linear(params)
    order = _open_to_change(venue, params)
    return _ids(await venue.cancel(order))


def _matches_filter(order: OrderReport, order_filter: str | None) -> bool:
    if order_filter is None:
        return True
    if order_filter == "Order":
        return not order.type.conditional
    if order_filter == "StopOrder":
        return order.type.conditional
    return False  # tpslOrder, OcoOrder, ...: the simulator has none


def _scope(venue: BybitVenue, params: Params, *, required: bool) -> set[Symbol]:
    """The symbols `symbol` / `baseCoin` / `settleCoin` select (one of them is required when `required`)."""
    raw, base, settle = text(params, "symbol"), text(params, "baseCoin"), text(params, "settleCoin")
    if raw is not None:
        return {venue.symbol(raw)}
    if required and base is None and settle is None:
        raise BybitError(
            10001, "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
        )
    chosen = set()
    for symbol in venue.core.instruments:
        symbol_base, _, rest = symbol.partition("/")
        if base is not None and base != symbol_base:
            continue
        if settle is not None and settle != rest.partition(":")[2]:
            continue
        chosen.add(symbol)
    return chosen


async def cancel_all(venue: BybitVenue, params: Params) -> Any:
    _linear(params)
    scope = _scope(venue, params, required=True)
    order_filter = text(params, "orderFilter")
    done = []
    for order in venue.core.open_orders():
        if order.symbol in scope and _matches_filter(order, order_filter):
            done.append(_ids(await venue.cancel(order)))
    return {"list": done, "success": "1"}


# ----- queries ------------------------------------------------------------------------


def _created(venue: BybitVenue, order: OrderReport) -> int:
    extras = venue.extras.get(order.exchange_order_id)
    return extras.created_ms if extras is not None else ms(order.at)


def _newest_first(venue: BybitVenue, orders: Iterable[OrderReport]) -> list[OrderReport]:
    return sorted(orders, key=lambda o: (_created(venue, o), int(o.exchange_order_id)), reverse=True)


def _by_id(venue: BybitVenue, params: Params, order: OrderReport) -> bool:
    order_id, link = text(params, "orderId"), text(params, "orderLinkId")
    if order_id is not None and shapes.bybit_order_id(order.exchange_order_id) != order_id:
        return False
    return link is None or shapes.link_id(order.client_order_id) == link


async def realtime(venue: BybitVenue, params: Params) -> Any:
    """Open orders (New, Untriggered); named by orderId / orderLinkId also one of the 500 latest closed."""
    kind = category(params)
    named = text(params, "orderId") is not None or text(params, "orderLinkId") is not None
    scope = _scope(venue, params, required=not named)
    await venue.gate()
    rows: list[OrderReport] = []
    if kind == "linear":
        core = venue.core
        candidates = list(core.open_orders())
        if named:
            closed = [o for o in core.orders() if o.status is not OrderStatus.OPEN]
            candidates += closed[-RECENT_CLOSED:]
        order_filter = text(params, "orderFilter")
        rows = [
            o
            for o in candidates
            if o.symbol in scope and _matches_filter(o, order_filter) and _by_id(venue, params, o)
        ]
    chunk, cursor = page(_newest_first(venue, rows), params, default=20, maximum=50)
    return {"category": kind, "list": [venue.order_json(o) for o in chunk], "nextPageCursor": cursor}


def _window(venue: BybitVenue, params: Params) -> tuple[int, int]:
    """[start, end] in ms: at most 7 days; the last 7 days when neither end is given."""
    start, end = integer(params, "startTime"), integer(params, "endTime")
    if start is None and end is None:
        end = venue.now_ms()
        start = end - WEEK_MS
    elif start is None:
        assert end is not None
        start = end - WEEK_MS
    elif end is None:
        end = start + WEEK_MS
    if end < start or end - start > WEEK_MS:
        raise params_error("The time range between startTime and endTime cannot exceed 7 days")
    return start, end


async def history(venue: BybitVenue, params: Params) -> Any:
    """Closed orders (Filled, Cancelled, Deactivated, Rejected), newest first."""
    kind = category(params)
    scope = _scope(venue, params, required=False)
    start, end = _window(venue, params)
    await venue.gate()
    rows: list[OrderReport] = []
    if kind == "linear":
        order_filter, status = text(params, "orderFilter"), text(params, "orderStatus")
        rows = [
            o
            for o in venue.core.orders()
            if o.status is not OrderStatus.OPEN
            and o.symbol in scope
            and _matches_filter(o, order_filter)
            and _by_id(venue, params, o)
            and (status is None or shapes.status_of(o) == status)
            and start <= _created(venue, o) <= end
        ]
    chunk, cursor = page(_newest_first(venue, rows), params, default=20, maximum=50)
    return {"category": kind, "list": [venue.order_json(o) for o in chunk], "nextPageCursor": cursor}


async def executions(venue: BybitVenue, params: Params) -> Any:
    """Fills, newest first, within a window of at most 7 days (execType Trade: the only kind here)."""
    kind = category(params)
    scope = _scope(venue, params, required=False)
    start, end = _window(venue, params)
    await venue.gate()
    rows: list[tuple[FillReport, OrderReport | None]] = []
    exec_type = text(params, "execType")
    if kind == "linear" and exec_type in (None, "Trade"):
        core = venue.core
        for symbol in sorted(scope):
            for fill in core.fills(symbol):
                at = ms(fill.at)
                order = core.order_by_id(fill.exchange_order_id)
                if start <= at <= end and (order is None or _by_id(venue, params, order)):
                    rows.append((fill, order))
    rows.sort(key=lambda r: (ms(r[0].at), int(r[0].trade_id.lstrip("T"))), reverse=True)
    chunk, cursor = page(rows, params, default=50, maximum=100)
    fee_rate = venue.core.fee_rate
    listed = [shapes.execution(f, o, fee_rate, int(f.trade_id.lstrip("T"))) for f, o in chunk]
    return {"category": kind, "list": listed, "nextPageCursor": cursor}
