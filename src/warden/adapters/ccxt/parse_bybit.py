"""ccxt's `bybit` dicts -> the domain's typed reports. The only module that reads them.

Bybit's raw strings (`info`) are preferred to ccxt's unified floats, so quantities and prices
stay exact Decimals. A conditional order is one with a trigger price; whether it is a stop or
a take-profit follows from its side and `triggerDirection` (1: fires rising, 2: falling): a
sell that fires falling and a buy that fires rising are stops (Bybit's own `stopOrderType`
says only "Stop" for both). A conditional order keeps its `orderId` and `orderLinkId` when it
fires, so its executions name it directly.

An order *answer* (create, cancel) carries ids only; `acknowledged` builds the report of what
was sent, OPEN with nothing filled, and the truth comes later from lookups and the stream.
"""

from __future__ import annotations

from datetime import UTC, datetime

from warden.adapters.ccxt.errors import ParseError
from warden.adapters.ccxt.parse import Raw, dec, first, positive, step, when
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, OrderRequest, PositionReport
from warden.domain.values import ZERO, Instrument, OrderSide, OrderType, Side, Symbol, TradeId

_STATUS = {
    "Created": OrderStatus.OPEN,
    "New": OrderStatus.OPEN,
    "PartiallyFilled": OrderStatus.OPEN,
    "Untriggered": OrderStatus.OPEN,
    "Triggered": OrderStatus.OPEN,  # fired; its market order is on its way: not done yet
    "Active": OrderStatus.OPEN,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "PartiallyFilledCanceled": OrderStatus.CANCELED,
    "Deactivated": OrderStatus.CANCELED,  # UTA: a conditional order cancelled before it fired
    "Rejected": OrderStatus.REJECTED,
}
FILL_TYPES = frozenset({"Trade", "AdlTrade", "BustTrade"})
"""Executions that move a position (not Funding, not Settle)."""
_FORCED_TYPES = frozenset({"AdlTrade", "BustTrade"})
_FORCED_CREATE = frozenset({"CreateByLiq", "CreateByAdl_PassThrough", "CreateByTakeOver_PassThrough"})


def _info(raw: Raw) -> Raw:
    info = raw.get("info")
    return info if isinstance(info, dict) else {}


# ----- markets ------------------------------------------------------------------------


SETTLE = "USDT"
"""The settle coin of the perpetuals the adapter trades. Bybit lists USDC-settled linear perpetuals
too, but the position and open-order lists asked without a symbol are USDT-settled only (ccxt's
default `settleCoin`), and one-way mode is set for USDT: a USDC perpetual would trade unseen."""
MAX_CONDITIONAL_ORDERS = 10
"""Bybit's cap on one account's resting conditional orders per linear symbol (retCode 110009
beyond it). instruments-info does not carry it, so it is taken from Bybit's documentation."""


def instrument(market: Raw) -> Instrument | None:
    """A USDT-settled linear perpetual's precision from instruments-info's filters; None for anything else."""
    if not (market.get("swap") and market.get("linear")) or market.get("active") is False:
        return None
    if market.get("settle") != SETTLE:
        return None
    info = _info(market)
    lots = info.get("lotSizeFilter") or {}
    prices = info.get("priceFilter") or {}
    precision, limits = market.get("precision") or {}, market.get("limits") or {}
    tick = step(prices.get("tickSize")) or step(precision.get("price"))
    lot = step(lots.get("qtyStep")) or step(precision.get("amount"))
    if tick is None or lot is None:
        raise ParseError(f"{market.get('symbol')}: no tick or lot size")
    min_qty = dec(lots.get("minOrderQty")) or dec((limits.get("amount") or {}).get("min"))
    notional = dec(lots.get("minNotionalValue")) or dec((limits.get("cost") or {}).get("min"))
    return Instrument(
        symbol=Symbol(str(market["symbol"])),
        tick_size=tick,
        lot_size=lot,
        min_qty=min_qty or lot,
        min_notional=notional or ZERO,
        max_conditional=MAX_CONDITIONAL_ORDERS,
    )


# ----- orders -------------------------------------------------------------------------


def conditional_type(side: OrderSide, direction: int) -> OrderType:
    """Stop or take-profit from the side and triggerDirection (1 rising, 2 falling)."""
    falling = direction == 2
    return OrderType.STOP_MARKET if falling == (side is OrderSide.SELL) else OrderType.TAKE_PROFIT_MARKET


def _flag(value: object) -> bool:
    return value is True or str(value).lower() == "true"


def order_report(order: Raw) -> OrderReport:
    """A full order (realtime, history, the `order` topic)."""
    info = _info(order)
    oid = first(info, "orderId") or order.get("id")
    raw_status = first(info, "orderStatus")
    if oid is None or order.get("symbol") is None or raw_status is None:
        raise ParseError(f"order without an id, symbol or status: {order.get('id')}")
    side_raw = first(info, "side") or order.get("side")
    if side_raw is None:
        raise ParseError(f"order {oid} has no side")
    side = OrderSide(str(side_raw).lower())
    trigger = positive(first(info, "triggerPrice"))
    kind = OrderType.MARKET
    if trigger is not None:
        kind = conditional_type(side, int(first(info, "triggerDirection") or 0))
    status = _STATUS.get(str(raw_status))
    if status is None:
        raise ParseError(f"order {oid}: unknown orderStatus {raw_status!r}")
    qty = dec(first(info, "qty")) or dec(order.get("amount")) or ZERO
    return OrderReport(
        client_order_id=str(first(info, "orderLinkId") or ""),
        exchange_order_id=str(oid),
        symbol=Symbol(str(order["symbol"])),
        side=side,
        type=kind,
        qty=qty,
        status=status,
        filled_qty=dec(first(info, "cumExecQty")) or ZERO,
        avg_price=positive(first(info, "avgPrice")),
        trigger_price=trigger,
        reduce_only=_flag(info.get("reduceOnly")) or _flag(info.get("closeOnTrigger")),
        at=when(first(info, "updatedTime", "createdTime")),
    )


def order_id(answer: Raw) -> str:
    """The orderId of a create / cancel answer (`{orderId, orderLinkId}` and nothing else)."""
    oid = first(_info(answer), "orderId") or answer.get("id")
    if oid is None:
        raise ParseError("an order answer without an orderId")
    return str(oid)


def acknowledged(request: OrderRequest, exchange_order_id: str, at: datetime) -> OrderReport:
    """What a create answer proves: the order exists, as sent; OPEN, nothing filled (yet)."""
    return OrderReport(
        client_order_id=request.client_order_id,
        exchange_order_id=exchange_order_id,
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        qty=request.qty,
        status=OrderStatus.OPEN,
        trigger_price=request.trigger_price,
        reduce_only=request.reduce_only or request.type.conditional,
        at=at,
    )


# ----- executions, positions, marks ---------------------------------------------------


def is_fill(trade: Raw) -> bool:
    """Whether an execution moved the position (Trade, AdlTrade, BustTrade); Funding does not."""
    return str(first(_info(trade), "execType") or "Trade") in FILL_TYPES


def fill_report(trade: Raw, known_client_id: str | None = None) -> FillReport:
    """One execution (execution list or the `execution` topic). Its orderLinkId names the order,
    a fired conditional one included; `known_client_id` is used when the execution has none."""
    info = _info(trade)
    qty = dec(first(info, "execQty")) or dec(trade.get("amount"))
    price = dec(first(info, "execPrice")) or dec(trade.get("price"))
    fee = dec(first(info, "execFee")) or dec((trade.get("fee") or {}).get("cost")) or ZERO
    at = when(first(info, "execTime") or trade.get("timestamp"))
    trade_id = first(info, "execId") or trade.get("id")
    order = first(info, "orderId") or trade.get("order")
    if (
        qty is None
        or price is None
        or at is None
        or trade_id is None
        or order is None
        or trade.get("symbol") is None
    ):
        raise ParseError(f"execution without qty, price, time, id, order or symbol: {trade_id}")
    side = first(info, "side") or trade.get("side")
    forced = str(first(info, "execType")) in _FORCED_TYPES or str(first(info, "createType")) in _FORCED_CREATE
    return FillReport(
        trade_id=TradeId(str(trade_id)),
        client_order_id=str(first(info, "orderLinkId") or known_client_id or ""),
        exchange_order_id=str(order),
        symbol=Symbol(str(trade["symbol"])),
        side=OrderSide(str(side).lower()),
        qty=qty,
        price=price,
        fee=fee,
        at=at,
        liquidation=forced,
    )


def position_report(position: Raw) -> PositionReport | None:
    """One-way mode: side Buy is long, Sell short; size 0 (side "") is flat: None."""
    info = _info(position)
    size = dec(first(info, "size")) or dec(position.get("contracts")) or ZERO
    if size == 0:
        return None
    raw_side = first(info, "side")
    if raw_side not in ("Buy", "Sell"):
        raise ParseError(f"{position.get('symbol')}: a position of size {size} with side {raw_side!r}")
    entry = dec(first(info, "avgPrice", "entryPrice")) or dec(position.get("entryPrice")) or ZERO
    side = Side.LONG if raw_side == "Buy" else Side.SHORT
    return PositionReport(Symbol(str(position["symbol"])), side, abs(size), entry)


def mark_price(ticker: Raw) -> MarkPrice | None:
    """The mark price of a ticker (fetch_ticker, watch_tickers); None if it carries none."""
    price = positive(first(_info(ticker), "markPrice")) or positive(ticker.get("markPrice"))
    if price is None or ticker.get("symbol") is None:
        return None
    at = when(ticker.get("timestamp")) or datetime.now(UTC)
    return MarkPrice(Symbol(str(ticker["symbol"])), price, at)
