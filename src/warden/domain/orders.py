"""Orders as warden records them: an intent first, then what the exchange said."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from warden.domain.values import (
    ZERO,
    ClientOrderId,
    OrderRole,
    OrderSide,
    OrderType,
    PositionId,
    Symbol,
    TradeId,
)


class OrderStatus(StrEnum):
    """PENDING: the intent is durable, the exchange may or may not have it.

    OPEN: resting on the exchange. The rest are terminal.
    """

    PENDING = "pending"
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)

    @property
    def live(self) -> bool:
        """Possibly resting on the exchange (an exit that still protects)."""
        return self in (OrderStatus.PENDING, OrderStatus.OPEN)


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: ClientOrderId
    position_id: PositionId
    role: OrderRole
    symbol: Symbol
    side: OrderSide
    type: OrderType
    qty: Decimal
    trigger_price: Decimal | None
    reduce_only: bool
    status: OrderStatus
    created_at: datetime
    exchange_order_id: str | None = None
    filled_qty: Decimal = ZERO
    avg_price: Decimal | None = None

    def with_status(
        self,
        status: OrderStatus,
        *,
        exchange_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        avg_price: Decimal | None = None,
    ) -> Order:
        return replace(
            self,
            status=status,
            exchange_order_id=exchange_order_id or self.exchange_order_id,
            filled_qty=self.filled_qty if filled_qty is None else filled_qty,
            avg_price=self.avg_price if avg_price is None else avg_price,
        )


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution, unique on (exchange, trade_id)."""

    trade_id: TradeId
    client_order_id: ClientOrderId
    position_id: PositionId
    role: OrderRole
    symbol: Symbol
    side: OrderSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    at: datetime
