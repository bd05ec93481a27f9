"""Binance USD-M JSON shapes, built from the simulator's domain objects.

Only the fields ccxt 4.5.90 reads (reference section 3 and 4), plus the obvious
neighbours so a human reading a response is not surprised. Numbers are strings, ids
integers, times milliseconds, like Binance.

Conditional orders live in the algo service: their `algoId` is the core's order id.
When one fires, Binance places a *new* order in the matching engine (`actualOrderId`,
the `ai` of ALGO_UPDATE); here that child's id is `CHILD_ID_OFFSET + algoId` and its
client id is `algo<algoId>` (deliberately not the clientAlgoId: a client must map child
orders back through `actualOrderId`, never through the child's own client id).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from warden.adapters.sim.rules import MAX_PRICE, MAX_QTY
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport
from warden.domain.values import ZERO, Instrument, OrderType, Symbol

Json = dict[str, Any]

MAX_NUM_ALGO_ORDERS = 10
"""USD-M's cap on open algo (conditional) orders per symbol (MAX_NUM_ALGO_ORDERS; -4045 beyond)."""

CHILD_ID_OFFSET = 10**12
"""Child (triggered) order ids are `CHILD_ID_OFFSET + algoId`: disjoint from every core id."""

START_BALANCE = Decimal(10_000)
"""The simulated account's starting USDT wallet balance."""

ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]
_BINANCE_TYPE = {
    OrderType.MARKET: "MARKET",
    OrderType.STOP_MARKET: "STOP_MARKET",
    OrderType.TAKE_PROFIT_MARKET: "TAKE_PROFIT_MARKET",
}
_PLAIN_STATUS = {
    OrderStatus.PENDING: "NEW",
    OrderStatus.OPEN: "NEW",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
}
_ALGO_STATUS = {
    OrderStatus.PENDING: "NEW",
    OrderStatus.OPEN: "NEW",
    OrderStatus.FILLED: "FINISHED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
}


def num(value: Decimal) -> str:
    """A Decimal as Binance writes it: plain digits, no exponent."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def places(step: Decimal) -> int:
    """Decimal places of a tick or lot size: 0.001 -> 3, 1 -> 0."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def ms(at: datetime | None) -> int:
    return 0 if at is None else int(at.timestamp() * 1000)


def market_id(symbol: Symbol) -> str:
    """`BTC/USDT:USDT` -> `BTCUSDT`."""
    base, _, rest = symbol.partition("/")
    return base + rest.partition(":")[0]


def binance_type(order_type: OrderType) -> str:
    return _BINANCE_TYPE[order_type]


def child_order_id(algo_id: str) -> str:
    return str(CHILD_ID_OFFSET + int(algo_id))


def child_client_id(algo_id: str) -> str:
    return f"algo{algo_id}"


def algo_id_of_child(order_id: int) -> str | None:
    return str(order_id - CHILD_ID_OFFSET) if order_id > CHILD_ID_OFFSET else None


# ----- markets ------------------------------------------------------------------------


def symbol_info(instrument: Instrument) -> Json:
    symbol = instrument.symbol
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    return {
        "symbol": market_id(symbol),
        "pair": market_id(symbol),
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": settle or quote,
        "pricePrecision": places(instrument.tick_size),
        "quantityPrecision": places(instrument.lot_size),
        "underlyingType": "COIN",
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "tickSize": num(instrument.tick_size),
                "minPrice": num(instrument.tick_size),
                "maxPrice": num(MAX_PRICE),
            },
            {
                "filterType": "LOT_SIZE",
                "stepSize": num(instrument.lot_size),
                "minQty": num(instrument.min_qty),
                "maxQty": num(MAX_QTY),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "stepSize": num(instrument.lot_size),
                "minQty": num(instrument.min_qty),
                "maxQty": num(MAX_QTY),
            },
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": MAX_NUM_ALGO_ORDERS},
            {"filterType": "MIN_NOTIONAL", "notional": num(instrument.min_notional)},
        ],
        "orderTypes": ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def exchange_info(instruments: Iterable[Instrument], server_ms: int) -> Json:
    return {
        "timezone": "UTC",
        "serverTime": server_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(i) for i in instruments],
    }


def premium_index(symbol: Symbol, mark: Decimal, now_ms: int) -> Json:
    return {
        "symbol": market_id(symbol),
        "markPrice": num(mark),
        "indexPrice": num(mark),
        "estimatedSettlePrice": num(mark),
        "lastFundingRate": "0.00010000",
        "interestRate": "0.00010000",
        "nextFundingTime": now_ms - now_ms % 28_800_000 + 28_800_000,
        "time": now_ms,
    }


def ticker_24hr(symbol: Symbol, mark: Decimal, now_ms: int) -> Json:
    return {
        "symbol": market_id(symbol),
        "priceChange": "0",
        "priceChangePercent": "0",
        "weightedAvgPrice": num(mark),
        "lastPrice": num(mark),
        "lastQty": "0",
        "openPrice": num(mark),
        "highPrice": num(mark),
        "lowPrice": num(mark),
        "volume": "0",
        "quoteVolume": "0",
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "count": 0,
    }


def leverage_brackets(symbols: Iterable[Symbol]) -> list[Json]:
    bracket = {
        "bracket": 1,
        "initialLeverage": 125,
        "notionalCap": 50000,
        "notionalFloor": 0,
        "maintMarginRatio": 0.004,
        "cum": 0,
    }
    return [{"symbol": market_id(s), "brackets": [dict(bracket)]} for s in symbols]


# ----- orders and trades --------------------------------------------------------------


def partly_filled(order: OrderReport) -> bool:
    """A plain order still working with part of it filled (an entry filling in parts)."""
    return order.status is OrderStatus.OPEN and 0 < order.filled_qty < order.qty


def plain_order(order: OrderReport) -> Json:
    """A matching-engine order (`/fapi/v1/order`)."""
    avg = order.avg_price or ZERO
    at = ms(order.at)
    return {
        "orderId": int(order.exchange_order_id),
        "symbol": market_id(order.symbol),
        "status": "PARTIALLY_FILLED" if partly_filled(order) else _PLAIN_STATUS[order.status],
        "clientOrderId": order.client_order_id,
        "price": "0",
        "avgPrice": num(avg),
        "origQty": num(order.qty),
        "executedQty": num(order.filled_qty),
        "cumQty": num(order.filled_qty),
        "cumQuote": num(order.filled_qty * avg),
        "timeInForce": "GTC",
        "type": "MARKET",
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side.value.upper(),
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": "MARKET",
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "time": at,
        "updateTime": at,
    }


def child_order(algo: OrderReport) -> OrderReport:
    """The matching-engine order a filled conditional order became."""
    return OrderReport(
        client_order_id=child_client_id(algo.exchange_order_id),
        exchange_order_id=child_order_id(algo.exchange_order_id),
        symbol=algo.symbol,
        side=algo.side,
        type=OrderType.MARKET,
        qty=algo.filled_qty,
        status=algo.status,
        filled_qty=algo.filled_qty,
        avg_price=algo.avg_price,
        reduce_only=algo.reduce_only,
        at=algo.at,
    )


def algo_order(order: OrderReport, *, close_position: bool = False) -> Json:
    """An algo-service conditional order (`/fapi/v1/algoOrder`)."""
    fired = order.status is OrderStatus.FILLED
    at = ms(order.at)
    return {
        "algoId": int(order.exchange_order_id),
        "clientAlgoId": order.client_order_id,
        "algoType": "CONDITIONAL",
        "orderType": binance_type(order.type),
        "symbol": market_id(order.symbol),
        "side": order.side.value.upper(),
        "positionSide": "BOTH",
        "timeInForce": "GTC",
        "quantity": num(order.qty),
        "algoStatus": _ALGO_STATUS[order.status],
        "actualOrderId": child_order_id(order.exchange_order_id) if fired else "",
        "actualPrice": num(order.avg_price or ZERO),
        "executedQty": num(order.filled_qty),
        "avgPrice": num(order.avg_price or ZERO),
        "triggerPrice": num(order.trigger_price or ZERO),
        "price": "0",
        "icebergQuantity": None,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": "MARK_PRICE",
        "priceMatch": "NONE",
        "closePosition": close_position,
        "priceProtect": False,
        "reduceOnly": order.reduce_only,
        "createTime": at,
        "updateTime": at,
        "triggerTime": at if fired else 0,
        "goodTillDate": 0,
    }


def trade_id_number(trade_id: str) -> int:
    """The core's `T17` is Binance's trade id 17."""
    return int(trade_id.lstrip("T"))


def fee_paid(fill: FillReport, fee_asset: Symbol | None, mark: Decimal | None) -> tuple[str, str]:
    """(commission, commissionAsset) of a fill: USDT, or `fee_asset`'s base asset at its `mark`
    (8 decimals, as Binance prints BNB) when the account pays its fees in it."""
    if fee_asset is None or mark is None:
        return num(fill.fee), "USDT"
    return num((fill.fee / mark).quantize(Decimal("1E-8"))), str(fee_asset).split("/")[0]


def user_trade(fill: FillReport, order_id: str, fee: tuple[str, str] | None = None) -> Json:
    commission, asset = fee or (num(fill.fee), "USDT")
    return {
        "symbol": market_id(fill.symbol),
        "id": trade_id_number(fill.trade_id),
        "orderId": int(order_id),
        "side": fill.side.value.upper(),
        "price": num(fill.price),
        "qty": num(fill.qty),
        "realizedPnl": "0",
        "marginAsset": "USDT",
        "quoteQty": num(fill.qty * fill.price),
        "commission": commission,
        "commissionAsset": asset,
        "time": ms(fill.at),
        "positionSide": "BOTH",
        "buyer": fill.side.value == "buy",
        "maker": False,
    }
