"""The user-data stream: the simulator's domain events as Binance websocket messages.

domain event (SimulatedExchange.stream)      Binance messages (private socket)
OrderReport OPEN, market order               ORDER_TRADE_UPDATE x=NEW
OrderReport OPEN, conditional                ALGO_UPDATE X=NEW
FillReport of a market order                 ORDER_TRADE_UPDATE x=TRADE X=FILLED (X=PARTIALLY_FILLED
                                             while the order has more to fill: z cumulative, q the order's)
FillReport of a conditional order            ALGO_UPDATE TRIGGERING, ALGO_UPDATE TRIGGERED (ai),
                                             child ORDER_TRADE_UPDATE NEW, child TRADE FILLED
OrderReport FILLED, conditional              ALGO_UPDATE X=FINISHED (ai, aq, ap)
OrderReport FILLED, market order             (nothing: the TRADE message said FILLED)
OrderReport OPEN partly filled, market order (nothing: the TRADE message said PARTIALLY_FILLED)
OrderReport CANCELED                         ORDER_TRADE_UPDATE / ALGO_UPDATE X=CANCELED
PositionReport                               ACCOUNT_UPDATE (balance + that position)
MarkPrice                                    (nothing: the market socket pushes marks every second)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from warden.adapters.sim.core import SimCore
from warden.adapters.sim.server.account import wallet_balance
from warden.adapters.sim.server.shapes import (
    Json,
    binance_type,
    child_client_id,
    child_order_id,
    fee_paid,
    market_id,
    ms,
    num,
    partly_filled,
    trade_id_number,
)
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, PositionReport, StreamEvent
from warden.domain.values import ZERO, Symbol

_PLAIN = {OrderStatus.OPEN: "NEW", OrderStatus.FILLED: "FILLED", OrderStatus.CANCELED: "CANCELED"}


def _envelope(event: str, body: Json, at: int) -> Json:
    return {"e": event, "E": at, "T": at, "o": body}


def order_trade_update(
    order: OrderReport,
    *,
    execution: str,
    status: str,
    at: int,
    fill: FillReport | None = None,
    order_id: str | None = None,
    client_id: str | None = None,
    fee: tuple[str, str] | None = None,
    cumulative: tuple[Decimal, Decimal] | None = None,
) -> Json:
    """`cumulative`: the order's filled quantity and average price through `fill` (a plain market
    order, which may fill in several trades); without it, `fill` is the whole order (a fired
    conditional order's child)."""
    filled = fill.qty if fill is not None else order.filled_qty
    avg = fill.price if fill is not None else (order.avg_price or ZERO)
    qty = fill.qty if fill is not None else order.qty
    if cumulative is not None:
        (filled, avg), qty = cumulative, order.qty
    body: Json = {
        "s": market_id(order.symbol),
        "c": client_id or order.client_order_id,
        "S": order.side.value.upper(),
        "o": "MARKET",
        "f": "GTC",
        "q": num(qty),
        "p": "0",
        "ap": num(avg),
        "sp": "0",
        "x": execution,
        "X": status,
        "i": int(order_id or order.exchange_order_id),
        "l": num(fill.qty) if fill is not None else "0",
        "z": num(filled),
        "L": num(fill.price) if fill is not None else "0",
        "T": at,
        "t": trade_id_number(fill.trade_id) if fill is not None else 0,
        "b": "0",
        "a": "0",
        "m": False,
        "R": order.reduce_only,
        "wt": "CONTRACT_PRICE",
        "ot": "MARKET",
        "ps": "BOTH",
        "cp": False,
        "rp": "0",
        "pP": False,
        "si": 0,
        "ss": 0,
        "V": "EXPIRE_MAKER",
        "pm": "NONE",
        "gtd": 0,
    }
    if fill is not None:
        body["n"], body["N"] = fee or (num(fill.fee), "USDT")
    return _envelope("ORDER_TRADE_UPDATE", body, at)


def algo_update(order: OrderReport, status: str, at: int, *, fired: bool = False) -> Json:
    body: Json = {
        "caid": order.client_order_id,
        "aid": int(order.exchange_order_id),
        "at": "CONDITIONAL",
        "o": binance_type(order.type),
        "s": market_id(order.symbol),
        "S": order.side.value.upper(),
        "ps": "BOTH",
        "f": "GTC",
        "q": num(order.qty),
        "X": status,
        "ai": child_order_id(order.exchange_order_id) if fired else "",
        "ap": num(order.avg_price or ZERO),
        "aq": num(order.filled_qty),
        "act": "MARKET" if fired else "0",
        "tp": num(order.trigger_price or ZERO),
        "p": "0",
        "V": "EXPIRE_MAKER",
        "wt": "MARK_PRICE",
        "pm": "NONE",
        "cp": False,
        "pP": False,
        "R": order.reduce_only,
        "tt": at if fired else 0,
        "gtd": 0,
    }
    return {"e": "ALGO_UPDATE", "T": at, "E": at, "o": body}


def account_update(core: SimCore, symbol: Symbol, at: int) -> Json:
    position = core.position(symbol)
    mark = core.mark(symbol)
    wallet = wallet_balance(core.position(s) for s in core.instruments)
    upnl = position.qty * (mark - position.entry_price) if position.qty else ZERO
    mode = core.margin_mode(symbol)
    wallet_of_position = abs(position.qty) * mark / core.leverage(symbol) if mode == "isolated" else ZERO
    return {
        "e": "ACCOUNT_UPDATE",
        "E": at,
        "T": at,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": num(wallet), "cw": num(wallet), "bc": "0"}],
            "P": [
                {
                    "s": market_id(symbol),
                    "pa": num(position.qty),
                    "ep": num(position.entry_price),
                    "bep": num(position.entry_price),
                    "cr": num(position.realized_pnl),
                    "up": num(upnl),
                    "mt": mode,
                    "iw": num(wallet_of_position),
                    "ps": "BOTH",
                }
            ],
        },
    }


def mark_price_update(symbol: Symbol, mark: Decimal, at: int) -> Json:
    return {
        "e": "markPriceUpdate",
        "E": at,
        "s": market_id(symbol),
        "p": num(mark),
        "ap": num(mark),
        "P": num(mark),
        "i": num(mark),
        "r": "0.00010000",
        "T": at - at % 28_800_000 + 28_800_000,
    }


def translate(core: SimCore, event: StreamEvent, now: datetime) -> list[Json]:
    """The Binance messages one domain event becomes (see the module table)."""
    at = ms(now)
    if isinstance(event, OrderReport):
        return _order_messages(event, at)
    if isinstance(event, FillReport):
        order = core.order_by_id(event.exchange_order_id)
        if order is None:
            return []
        asset = core.fee_asset
        fee = fee_paid(event, asset, core.mark(asset) if asset is not None else None)
        if not order.type.conditional:
            filled, avg = _through(core, order, event)
            done = order.status is OrderStatus.FILLED and filled >= order.filled_qty
            status = "FILLED" if done else "PARTIALLY_FILLED"
            return [
                order_trade_update(
                    order,
                    execution="TRADE",
                    status=status,
                    at=at,
                    fill=event,
                    fee=fee,
                    cumulative=(filled, avg),
                )
            ]
        fired = order_with_fill(order, event)
        child_id = child_order_id(order.exchange_order_id)
        child_cid = child_client_id(order.exchange_order_id)
        return [
            algo_update(fired, "TRIGGERING", at),
            algo_update(fired, "TRIGGERED", at, fired=True),
            order_trade_update(
                fired, execution="NEW", status="NEW", at=at, order_id=child_id, client_id=child_cid
            ),
            order_trade_update(
                fired,
                execution="TRADE",
                status="FILLED",
                at=at,
                fill=event,
                order_id=child_id,
                client_id=child_cid,
                fee=fee,
            ),
        ]
    if isinstance(event, PositionReport):
        return [account_update(core, event.symbol, at)]
    if isinstance(event, MarkPrice):
        return []
    return []  # StreamGap: the venue closes the private sockets instead


def _through(core: SimCore, order: OrderReport, fill: FillReport) -> tuple[Decimal, Decimal]:
    """The order's filled quantity and average price counting its trades up to `fill`."""
    if fill.qty == order.filled_qty:  # its only trade so far (every market order on a full book)
        return fill.qty, fill.price
    qty = value = ZERO
    for trade in core.fills(order.symbol):
        if trade.exchange_order_id == order.exchange_order_id:
            qty += trade.qty
            value += trade.qty * trade.price
            if trade.trade_id == fill.trade_id:
                break
    return (qty, value / qty) if qty > 0 else (fill.qty, fill.price)


def order_with_fill(order: OrderReport, fill: FillReport) -> OrderReport:
    """The order as it stands right after `fill` (the FILLED report comes as a separate event)."""
    return replace(order, filled_qty=fill.qty, avg_price=fill.price)


def _order_messages(order: OrderReport, at: int) -> list[Json]:
    if order.type.conditional:
        if order.status is OrderStatus.FILLED:
            return [algo_update(order, "FINISHED", at, fired=True)]
        status = "NEW" if order.status is OrderStatus.OPEN else order.status.value.upper()
        return [algo_update(order, status, at)]
    if order.status is OrderStatus.FILLED or partly_filled(order):
        return []
    status = _PLAIN.get(order.status, order.status.value.upper())
    return [order_trade_update(order, execution=status, status=status, at=at)]
