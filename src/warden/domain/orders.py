"""Orders as warden records them: an intent first, then what the exchange said."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from warden.domain.copying import evolve
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
        return self in _TERMINAL  # a module-level set: enum attribute lookups are slow on 3.11

    @property
    def live(self) -> bool:
        """Possibly resting on the exchange (an exit that still protects)."""
        return self in _LIVE


_O = OrderStatus
_TERMINAL = frozenset({_O.FILLED, _O.CANCELED, _O.REJECTED})
_LIVE = frozenset({_O.PENDING, _O.OPEN})
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # An intent may be answered by anything: acknowledged, filled at once, refused,
    # or (a lookup after a timeout) found cancelled.
    _O.PENDING: frozenset({_O.OPEN, _O.FILLED, _O.CANCELED, _O.REJECTED}),
    # A resting order fills or is cancelled. A fill can arrive after a cancel was
    # acknowledged (the exchange matched first): FILLED wins over CANCELED below.
    _O.OPEN: frozenset({_O.FILLED, _O.CANCELED}),
    _O.CANCELED: frozenset({_O.FILLED}),
    # Terminal: later reports about the order (echoes, stale lookups) change nothing.
    _O.FILLED: frozenset(),
    _O.REJECTED: frozenset(),
}
"""Rows are "from", the set is every allowed "to"; a report that names any other status is stale."""


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
    reason: str | None = None
    """A close's: why it was sent (an ExitReason, or the reason a close was asked with), which
    names the exit whenever its fill lands: after the close was given up on, or a restart."""

    def advance(
        self,
        status: OrderStatus,
        *,
        exchange_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        avg_price: Decimal | None = None,
    ) -> Order:
        """Apply what the exchange says, by ORDER_TRANSITIONS: a stale status is ignored, but
        fill progress and the exchange's id are always kept (they only grow)."""
        allowed = status is self.status or status in ORDER_TRANSITIONS[self.status]
        filled = self.filled_qty if filled_qty is None else max(self.filled_qty, filled_qty)
        return self.with_status(
            status if allowed else self.status,
            exchange_order_id=exchange_order_id,
            filled_qty=filled,
            avg_price=avg_price,
        )

    def with_status(
        self,
        status: OrderStatus,
        *,
        exchange_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        avg_price: Decimal | None = None,
    ) -> Order:
        return evolve(
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
