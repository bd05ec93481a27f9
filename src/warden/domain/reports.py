"""Typed reports: what an exchange adapter says, after translation at its boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from warden.domain.orders import OrderStatus
from warden.domain.values import ZERO, ClientOrderId, OrderSide, OrderType, Side, Symbol, TradeId


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What to send. `client_order_id` is chosen (and persisted) by warden before sending."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: OrderSide
    type: OrderType
    qty: Decimal
    trigger_price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class OrderReport:
    client_order_id: str
    exchange_order_id: str
    symbol: Symbol
    side: OrderSide
    type: OrderType
    qty: Decimal
    status: OrderStatus
    filled_qty: Decimal = ZERO
    avg_price: Decimal | None = None
    trigger_price: Decimal | None = None
    reduce_only: bool = False
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FillReport:
    trade_id: TradeId
    client_order_id: str
    exchange_order_id: str
    symbol: Symbol
    side: OrderSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    at: datetime
    liquidation: bool = False


@dataclass(frozen=True, slots=True)
class PositionReport:
    """One-way mode: at most one per symbol; flat positions are not reported."""

    symbol: Symbol
    side: Side
    qty: Decimal
    entry_price: Decimal


@dataclass(frozen=True, slots=True)
class MarkPrice:
    symbol: Symbol
    price: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class StreamGap:
    """The user stream dropped or reconnected: events may have been lost; reconcile."""

    reason: str
    at: datetime


StreamEvent = OrderReport | FillReport | PositionReport | MarkPrice | StreamGap
