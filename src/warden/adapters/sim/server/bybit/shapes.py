"""Bybit v5 JSON shapes (category linear), built from the simulator's domain objects.

Only what ccxt 4.5.90's `bybit` reads, plus the neighbours a human expects. Numbers are
strings, times are millisecond strings in REST lists, ids are UUID-like strings: an order's
`orderId` is derived from the core's numeric id, an execution's `execId` from its trade id,
and both are turned back by `core_order_id` / `core_trade_id`.

Unlike Binance, a conditional order keeps its `orderId` and `orderLinkId` from
`Untriggered` through `Triggered` to `Filled`: its execution carries both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from warden.adapters.sim.book import Direction, direction_of
from warden.adapters.sim.ledger import SimPosition
from warden.adapters.sim.rules import MAX_PRICE, MAX_QTY
from warden.adapters.sim.server.account import wallet_balance
from warden.adapters.sim.server.shapes import market_id, ms, num, partly_filled
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport
from warden.domain.values import ZERO, Instrument, OrderSide, OrderType, Symbol

Json = dict[str, Any]

NO_LINK_PREFIX = "nolink-"
"""Orders sent without an orderLinkId get an internal client id with this prefix; shown as ""."""

_UUID_TAIL = re.compile(r"^[0-9a-f]{8}-0000-4000-8000-(\d{12})$")
_ORDER_HEAD, _EXEC_HEAD = "00000000", "e0000000"

_PLAIN_STATUS = {
    OrderStatus.PENDING: "Created",
    OrderStatus.OPEN: "New",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELED: "Cancelled",
    OrderStatus.REJECTED: "Rejected",
}
_CONDITIONAL_STATUS = {
    OrderStatus.PENDING: "Untriggered",
    OrderStatus.OPEN: "Untriggered",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELED: "Deactivated",  # UTA: a conditional order cancelled before (or when) it fired
    OrderStatus.REJECTED: "Rejected",
}
OPEN_STATUSES = ("New", "PartiallyFilled", "Untriggered")


def _uuid(head: str, number: int) -> str:
    return f"{head}-0000-4000-8000-{number:012d}"


def bybit_order_id(core_id: str) -> str:
    return _uuid(_ORDER_HEAD, int(core_id))


def core_order_id(order_id: str) -> str | None:
    match = _UUID_TAIL.match(order_id)
    return None if match is None or not order_id.startswith(_ORDER_HEAD) else str(int(match.group(1)))


def exec_id(trade_id: str) -> str:
    return _uuid(_EXEC_HEAD, int(trade_id.lstrip("T")))


def link_id(client_order_id: str) -> str:
    return "" if client_order_id.startswith(NO_LINK_PREFIX) else client_order_id


def bybit_side(side: OrderSide) -> str:
    return "Buy" if side is OrderSide.BUY else "Sell"


def trigger_direction(order: OrderReport) -> int:
    """1: fires when the price rises to the trigger; 2: when it falls to it; 0: not conditional."""
    if not order.type.conditional:
        return 0
    return 1 if direction_of(order.side, order.type) is Direction.RISING else 2


def order_type_for(side: OrderSide, direction: int) -> OrderType:
    """The core's type of a conditional order from its side and triggerDirection (1 rising, 2 falling):
    a sell that fires falling (or a buy that fires rising) is a stop, the others take profit."""
    falling = direction == 2
    return OrderType.STOP_MARKET if falling == (side is OrderSide.SELL) else OrderType.TAKE_PROFIT_MARKET


def status_of(order: OrderReport) -> str:
    if order.type.conditional:
        return _CONDITIONAL_STATUS[order.status]
    if partly_filled(order):
        return "PartiallyFilled"  # an entry filling in parts
    return _PLAIN_STATUS[order.status]


# ----- markets ------------------------------------------------------------------------


def instrument(instrument: Instrument) -> Json:
    symbol = instrument.symbol
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    exponent = instrument.tick_size.normalize().as_tuple().exponent
    scale = max(0, -exponent) if isinstance(exponent, int) else 0
    return {
        "symbol": market_id(symbol),
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": quote,
        "settleCoin": settle or quote,
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(scale),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {
            "minPrice": num(instrument.tick_size),
            "maxPrice": num(MAX_PRICE),
            "tickSize": num(instrument.tick_size),
        },
        "lotSizeFilter": {
            "maxOrderQty": num(MAX_QTY),
            "maxMktOrderQty": num(MAX_QTY),
            "minOrderQty": num(instrument.min_qty),
            "qtyStep": num(instrument.lot_size),
            "postOnlyMaxOrderQty": num(MAX_QTY),
            "minNotionalValue": num(instrument.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "isPreListing": False,
        "preListingInfo": None,
        "displayName": "",
    }


def ticker(symbol: Symbol, mark: Decimal, now_ms: int) -> Json:
    """A linear ticker: last, index and mark are the simulator's one mark price."""
    price = num(mark)
    return {
        "symbol": market_id(symbol),
        "lastPrice": price,
        "indexPrice": price,
        "markPrice": price,
        "prevPrice24h": price,
        "price24hPcnt": "0",
        "highPrice24h": price,
        "lowPrice24h": price,
        "prevPrice1h": price,
        "openInterest": "0",
        "openInterestValue": "0",
        "turnover24h": "0",
        "volume24h": "0",
        "fundingRate": "0.0001",
        "nextFundingTime": str(now_ms - now_ms % 28_800_000 + 28_800_000),
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "bid1Price": price,
        "bid1Size": "1",
        "ask1Price": price,
        "ask1Size": "1",
    }


def ticker_delta(symbol: Symbol, mark: Decimal) -> Json:
    """What a `tickers.<symbol>` delta push carries: the fields that moved."""
    price = num(mark)
    return {
        "symbol": market_id(symbol),
        "markPrice": price,
        "indexPrice": price,
        "lastPrice": price,
        "bid1Price": price,
        "ask1Price": price,
    }


def coin_info(coin: str) -> Json:
    return {
        "name": coin,
        "coin": coin,
        "remainAmount": "1000000",
        "chains": [
            {
                "chainType": "ERC20",
                "confirmation": "12",
                "withdrawFee": "1",
                "depositMin": "0",
                "withdrawMin": "2",
                "chain": "ETH",
                "chainDeposit": "1",
                "chainWithdraw": "1",
                "minAccuracy": "8",
                "withdrawPercentageFee": "0",
            }
        ],
    }


# ----- orders and executions ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderExtras:
    """What Bybit shows of an order that the core does not keep: set at placement."""

    created_ms: int
    trigger_by: str = ""
    close_on_trigger: bool = False


def order(order: OrderReport, extras: OrderExtras | None, fee: Decimal, *, status: str | None = None) -> Json:
    """One order as /v5/order/realtime, /v5/order/history and the `order` topic show it."""
    updated = ms(order.at)
    created = extras.created_ms if extras is not None else updated
    avg = order.avg_price or ZERO
    conditional = order.type.conditional
    leaves = order.qty - order.filled_qty if order.status is OrderStatus.OPEN else ZERO
    trigger_by = (extras.trigger_by if extras is not None else "") or ("MarkPrice" if conditional else "")
    return {
        "orderId": bybit_order_id(order.exchange_order_id),
        "orderLinkId": link_id(order.client_order_id),
        "blockTradeId": "",
        "symbol": market_id(order.symbol),
        "price": "0",
        "qty": num(order.qty),
        "side": bybit_side(order.side),
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": status or status_of(order),
        "createType": "CreateByUser",
        "cancelType": "CancelByUser" if order.status is OrderStatus.CANCELED else "UNKNOWN",
        "rejectReason": "EC_NoError",
        "avgPrice": num(avg) if order.filled_qty > 0 else "0",
        "leavesQty": num(leaves),
        "leavesValue": "0",
        "cumExecQty": num(order.filled_qty),
        "cumExecValue": num(order.filled_qty * avg),
        "cumExecFee": num(fee),
        "cumFeeDetail": {"USDT": num(fee)} if fee else {},
        "timeInForce": "GTC" if conditional else "IOC",
        "orderType": "Market",
        "stopOrderType": "Stop" if conditional else "",
        "orderIv": "",
        "marketUnit": "",
        "triggerPrice": num(order.trigger_price) if order.trigger_price is not None else "",
        "takeProfit": "",
        "stopLoss": "",
        "tpslMode": "",
        "ocoTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": trigger_direction(order),
        "triggerBy": trigger_by,
        "lastPriceOnCreated": "",
        "reduceOnly": order.reduce_only,
        "closeOnTrigger": extras.close_on_trigger if extras is not None else False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "slippageToleranceType": "UNKNOWN",
        "slippageTolerance": "0",
        "createdTime": str(created),
        "updatedTime": str(updated),
        "extraFees": "",
    }


def execution(fill: FillReport, order: OrderReport | None, fee_rate: Decimal, seq: int) -> Json:
    """One fill as /v5/execution/list and the `execution` topic show it."""
    conditional = order is not None and order.type.conditional
    return {
        "symbol": market_id(fill.symbol),
        "orderId": bybit_order_id(fill.exchange_order_id),
        "orderLinkId": link_id(fill.client_order_id),
        "side": bybit_side(fill.side),
        "orderPrice": "0",
        "orderQty": num(order.qty) if order is not None else num(fill.qty),
        "leavesQty": "0",
        "createType": "CreateByStopOrder" if conditional else "CreateByUser",
        "orderType": "Market",
        "stopOrderType": "Stop" if conditional else "UNKNOWN",
        "execFee": num(fill.fee),
        "execId": exec_id(fill.trade_id),
        "execPrice": num(fill.price),
        "execQty": num(fill.qty),
        "execType": "Trade",
        "execValue": num(fill.qty * fill.price),
        "execTime": str(ms(fill.at)),
        "feeCurrency": "USDT",
        "isMaker": False,
        "feeRate": num(fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": num(fill.price),
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": "0",
        "seq": seq,
        "extraFees": "",
    }


# ----- positions and the wallet -------------------------------------------------------


def position(pos: SimPosition, mark: Decimal, leverage: int, margin_mode: str, now_ms: int, seq: int) -> Json:
    """One-way mode (positionIdx 0). A flat position has side "" and size "0"."""
    qty = pos.qty
    value = abs(qty) * mark
    upnl = qty * (mark - pos.entry_price) if qty else ZERO
    side = "" if qty == 0 else ("Buy" if qty > 0 else "Sell")
    margin = value / leverage if qty else ZERO
    return {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": market_id(pos.symbol),
        "side": side,
        "size": num(abs(qty)),
        "avgPrice": num(pos.entry_price) if qty else "0",
        "positionValue": num(value),
        "tradeMode": 1 if margin_mode == "isolated" else 0,
        "autoAddMargin": 0,
        "positionStatus": "Normal",
        "leverage": str(leverage),
        "markPrice": num(mark),
        "liqPrice": "",
        "bustPrice": "",
        "positionIM": num(margin),
        "positionMM": num(value * Decimal("0.005")),
        "positionBalance": num(margin) if margin_mode == "isolated" else "0",
        "takeProfit": "",
        "stopLoss": "",
        "trailingStop": "0",
        "sessionAvgPrice": "",
        "unrealisedPnl": num(upnl),
        "curRealisedPnl": num(pos.realized_pnl - pos.fees),
        "cumRealisedPnl": num(pos.realized_pnl - pos.fees),
        "adlRankIndicator": 2 if qty else 0,
        "createdTime": str(now_ms),
        "updatedTime": str(now_ms),
        "seq": seq,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
    }


def wallet(positions: Iterable[tuple[SimPosition, Decimal, int]]) -> Json:
    """The UNIFIED account: one USDT coin row. `positions`: (position, mark, leverage)."""
    rows = list(positions)
    balance = wallet_balance(p for p, _, _ in rows)
    upnl = sum((p.qty * (m - p.entry_price) for p, m, _ in rows if p.qty), ZERO)
    used = sum((abs(p.qty) * m / lev for p, m, lev in rows if p.qty), ZERO)
    equity = balance + upnl
    available = equity - used
    coin = {
        "coin": "USDT",
        "equity": num(equity),
        "usdValue": num(equity),
        "walletBalance": num(balance),
        "availableToWithdraw": num(max(available, ZERO)),
        "availableToBorrow": "",
        "borrowAmount": "0",
        "accruedInterest": "0",
        "totalOrderIM": "0",
        "totalPositionIM": num(used),
        "totalPositionMM": "0",
        "unrealisedPnl": num(upnl),
        "cumRealisedPnl": num(balance - wallet_balance([])),
        "bonus": "0",
        "collateralSwitch": True,
        "marginCollateral": True,
        "locked": "0",
        "spotHedgingQty": "0",
    }
    return {
        "accountType": "UNIFIED",
        "totalEquity": num(equity),
        "totalWalletBalance": num(balance),
        "totalMarginBalance": num(equity),
        "totalAvailableBalance": num(available),
        "totalPerpUPL": num(upnl),
        "totalInitialMargin": num(used),
        "totalMaintenanceMargin": "0",
        "accountIMRate": "0",
        "accountMMRate": "0",
        "accountLTV": "0",
        "coin": [coin],
    }
