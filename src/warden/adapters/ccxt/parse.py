"""ccxt's dicts -> the domain's typed reports. The only module that reads ccxt structures.

Binance's raw strings (`info`) are preferred to ccxt's unified floats wherever they exist,
so quantities and prices stay exact Decimals. One parser serves REST and websocket
shapes: REST names (`origQty`, `algoStatus`, ...) are tried first, then the websocket
letters (`q`, `X`, ...). Conditional orders are recognised by their algo fields; the
unified `type` is useless for them (ccxt turns STOP_MARKET and TAKE_PROFIT_MARKET into
"market"), so the type comes from `info.orderType` / `info.o`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from warden.adapters.ccxt.errors import ParseError
from warden.domain.margin import MarginMode, SymbolConfig
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, PositionReport
from warden.domain.values import ZERO, Instrument, OrderSide, OrderType, Side, Symbol, TradeId

Raw = dict[str, Any]
"""A dict as ccxt returns it: untyped, and kept inside this module."""

_PLAIN_STATUS = {
    "NEW": OrderStatus.OPEN,
    "PARTIALLY_FILLED": OrderStatus.OPEN,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.CANCELED,
    "EXPIRED_IN_MATCH": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
}
_ALGO_STATUS = {
    "NEW": OrderStatus.OPEN,
    "TRIGGERING": OrderStatus.OPEN,  # fired; the child order is on its way: not done yet
    "TRIGGERED": OrderStatus.OPEN,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
}
_ALGO_KEYS = ("algoId", "aid", "clientAlgoId", "caid", "algoStatus")
_LIQUIDATION_PREFIXES = ("autoclose-", "adl_autoclose")


def first(raw: Raw, *keys: str) -> Any:
    """The first of `keys` with a value that is not None or ''."""
    for key in keys:
        value = raw.get(key)
        if value is not None and value != "":
            return value
    return None


def dec(value: Any) -> Decimal | None:
    """A number from a string, int or float (through its repr, never binary float digits)."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(value) if isinstance(value, str | int) else Decimal(repr(float(value)))
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ParseError(f"not a number: {value!r}") from exc
    return number if number.is_finite() else None


def step(value: Any) -> Decimal | None:
    """A tick or lot size in canonical form: "0.10" -> 0.1, "1.0" -> 1."""
    number = dec(value)
    if number is None:
        return None
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def positive(value: Any) -> Decimal | None:
    """Binance writes "0" for absent prices: None unless > 0."""
    number = dec(value)
    return number if number is not None and number > 0 else None


def when(ms: Any) -> datetime | None:
    return None if ms is None or ms == "" else datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _info(raw: Raw) -> Raw:
    info = raw.get("info")
    return info if isinstance(info, dict) else {}


# ----- markets ------------------------------------------------------------------------


def instrument(market: Raw) -> Instrument | None:
    """A linear perpetual's precision from its exchangeInfo filters; None for anything else."""
    if not (market.get("swap") and market.get("linear")) or market.get("active") is False:
        return None
    filters = {f.get("filterType"): f for f in _info(market).get("filters", []) if isinstance(f, dict)}
    precision, limits = market.get("precision") or {}, market.get("limits") or {}
    tick = step(filters.get("PRICE_FILTER", {}).get("tickSize")) or step(precision.get("price"))
    lot = step(filters.get("LOT_SIZE", {}).get("stepSize")) or step(precision.get("amount"))
    if tick is None or lot is None:
        raise ParseError(f"{market.get('symbol')}: no tick or lot size")
    amount_limits, cost_limits = limits.get("amount") or {}, limits.get("cost") or {}
    min_qty = dec(filters.get("LOT_SIZE", {}).get("minQty")) or dec(amount_limits.get("min"))
    notional = dec(filters.get("MIN_NOTIONAL", {}).get("notional")) or dec(cost_limits.get("min"))
    return Instrument(
        symbol=Symbol(str(market["symbol"])),
        tick_size=tick,
        lot_size=lot,
        min_qty=min_qty or lot,
        min_notional=notional or ZERO,
        max_conditional=_cap(filters.get("MAX_NUM_ALGO_ORDERS", {}).get("limit")),
    )


def _cap(limit: Any) -> int | None:
    """A positive whole count from a filter's limit; None when absent or not one (no cap known)."""
    try:
        cap = int(str(limit))
    except ValueError:
        return None
    return cap if cap > 0 else None


# ----- orders -------------------------------------------------------------------------


def is_algo(order: Raw) -> bool:
    """Whether this order lives on the algo endpoint (a conditional order)."""
    info = _info(order)
    return any(key in info for key in _ALGO_KEYS)


def order_type(raw: Any) -> OrderType:
    """Binance's type name -> the domain's (STOP/TRAILING -> STOP_MARKET, TAKE_PROFIT* -> TP)."""
    name = str(raw or "MARKET").upper()
    if name.startswith("TAKE_PROFIT"):
        return OrderType.TAKE_PROFIT_MARKET
    if "STOP" in name:
        return OrderType.STOP_MARKET
    return OrderType.MARKET


def _side(order: Raw, info: Raw) -> OrderSide:
    raw = first(order, "side") or first(info, "side", "S")
    if raw is None:
        raise ParseError(f"order {order.get('id')} has no side")
    return OrderSide(str(raw).lower())


def algo_child_id(order: Raw) -> str | None:
    """The matching-engine order a fired conditional order became (`actualOrderId` / `ai`)."""
    child = first(_info(order), "actualOrderId", "ai")
    return None if child in (None, "0", 0) else str(child)


def order_report(order: Raw) -> OrderReport:
    """A plain or algo order, from REST (create/fetch/cancel) or from watch_orders."""
    info = _info(order)
    algo = is_algo(order)
    if algo:
        cid = first(info, "clientAlgoId", "caid") or order.get("clientOrderId")
        oid = first(info, "algoId", "aid") or order.get("id")
        kind = order_type(first(info, "orderType", "o", "type"))
        raw_status = str(first(info, "algoStatus", "X") or "")
        qty = dec(first(info, "quantity", "q", "origQty"))
        filled = dec(first(info, "executedQty", "aq", "actualQty")) or ZERO
        avg = positive(first(info, "avgPrice", "ap", "actualPrice"))
        trigger = positive(first(info, "triggerPrice", "tp", "stopPrice"))
        if raw_status == "FINISHED":
            status = OrderStatus.FILLED if filled > 0 else OrderStatus.CANCELED
        else:
            status = _ALGO_STATUS.get(raw_status, OrderStatus.OPEN)
    else:
        cid = first(info, "clientOrderId", "c") or order.get("clientOrderId")
        oid = first(info, "orderId", "i") or order.get("id")
        kind = order_type(first(info, "origType", "ot", "type", "o"))
        status = _PLAIN_STATUS.get(str(first(info, "status", "X") or ""), OrderStatus.OPEN)
        qty = dec(first(info, "origQty", "q"))
        filled = dec(first(info, "executedQty", "z")) or ZERO
        avg = positive(first(info, "avgPrice", "ap"))
        trigger = positive(first(info, "stopPrice", "sp"))
    if cid is None or oid is None or order.get("symbol") is None:
        raise ParseError(f"order without an id, client id or symbol: {order.get('id')}")
    close_position = str(first(info, "closePosition", "cp")).lower() == "true"
    reduce_only = str(first(info, "reduceOnly", "R")).lower() == "true" or close_position
    updated = first(info, "updateTime", "T", "time", "createTime") or first(
        order, "lastUpdateTimestamp", "timestamp"
    )
    return OrderReport(
        client_order_id=str(cid),
        exchange_order_id=str(oid),
        symbol=Symbol(str(order["symbol"])),
        side=_side(order, info),
        type=kind,
        qty=qty if qty is not None else (dec(order.get("amount")) or ZERO),
        status=status,
        filled_qty=filled,
        avg_price=avg,
        trigger_price=trigger,
        reduce_only=reduce_only,
        at=when(updated),
    )


def with_child(algo: OrderReport, child: OrderReport) -> OrderReport:
    """A fired conditional order, completed by what its child order did in the matching engine."""
    if child.status is OrderStatus.OPEN:
        status = OrderStatus.OPEN
    elif child.filled_qty > 0:
        status = OrderStatus.FILLED
    else:
        status = OrderStatus.CANCELED if child.status is not OrderStatus.REJECTED else OrderStatus.REJECTED
    return replace(algo, status=status, filled_qty=child.filled_qty, avg_price=child.avg_price)


def raw_client_id(order_or_trade: Raw) -> str | None:
    """The client id the matching engine printed on an order or execution (`clientOrderId` / `c`)."""
    value = first(_info(order_or_trade), "clientOrderId", "c")
    return None if value is None else str(value)


# ----- trades, positions, marks -------------------------------------------------------


def fill_report(trade: Raw, client_order_id: str, exchange_order_id: str) -> FillReport:
    """One execution (fetch_my_trades or watch_my_trades), attributed to a resolved client id."""
    info = _info(trade)
    qty = dec(first(info, "qty", "l")) or dec(trade.get("amount"))
    price = dec(first(info, "price", "L")) or dec(trade.get("price"))
    fee = dec(first(info, "commission", "n")) or dec((trade.get("fee") or {}).get("cost")) or ZERO
    at = when(first(trade, "timestamp") or first(info, "time", "T"))
    trade_id = first(trade, "id") or first(info, "id", "t")
    if qty is None or price is None or at is None or trade_id is None or trade.get("symbol") is None:
        raise ParseError(f"trade without qty, price, time, id or symbol: {trade_id}")
    side = first(trade, "side") or first(info, "side", "S")
    raw_cid = raw_client_id(trade) or ""
    return FillReport(
        trade_id=TradeId(str(trade_id)),
        client_order_id=client_order_id,
        exchange_order_id=exchange_order_id,
        symbol=Symbol(str(trade["symbol"])),
        side=OrderSide(str(side).lower()),
        qty=qty,
        price=price,
        fee=fee,
        at=at,
        liquidation=raw_cid.startswith(_LIQUIDATION_PREFIXES),
    )


def fee_asset(trade: Raw) -> str | None:
    """The asset a trade's fee was paid in (`commissionAsset` / `N`; ccxt's fee currency):
    the settle currency, or another one (BNB when the account pays its fees in BNB)."""
    found = first(_info(trade), "commissionAsset", "N") or (trade.get("fee") or {}).get("currency")
    return None if found is None else str(found)


def position_report(position: Raw) -> PositionReport | None:
    """One-way mode: the sign of positionAmt is the side; flat positions are None."""
    info = _info(position)
    amount = dec(first(info, "positionAmt", "pa"))
    if amount is None:
        contracts = dec(position.get("contracts")) or ZERO
        amount = contracts if position.get("side") != "short" else -contracts
    if amount == 0:
        return None
    entry = dec(first(info, "entryPrice", "ep")) or dec(position.get("entryPrice")) or ZERO
    side = Side.LONG if amount > 0 else Side.SHORT
    return PositionReport(Symbol(str(position["symbol"])), side, abs(amount), entry)


def mark_price(ticker: Raw) -> MarkPrice | None:
    """A mark price from watch_mark_prices / fetch_mark_price; None if it carries none."""
    info = _info(ticker)
    price = positive(first(info, "p", "markPrice")) or positive(ticker.get("markPrice"))
    if price is None or ticker.get("symbol") is None:
        return None
    at = when(first(ticker, "timestamp") or first(info, "E", "time")) or datetime.now(UTC)
    return MarkPrice(Symbol(str(ticker["symbol"])), price, at)


def symbol_config(raw: Raw) -> SymbolConfig:
    """ccxt's Leverage structure (from /fapi/v1/symbolConfig) as the domain's SymbolConfig."""
    leverage = raw.get("longLeverage") or raw.get("shortLeverage")
    mode = raw.get("marginMode")
    if leverage is None or mode not in ("isolated", "cross"):
        raise ParseError(f"leverage or margin mode missing in {raw!r}")
    return SymbolConfig(int(leverage), MarginMode(mode))
