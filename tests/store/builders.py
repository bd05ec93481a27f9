"""Sample positions, orders, fills and events, and transitions built from them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.values import (
    OrderRole,
    OrderSide,
    OrderType,
    PositionId,
    Side,
    Symbol,
    TradeId,
    client_order_id,
)
from warden.ports import Transition

D = Decimal
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
SOL = Symbol("SOLUSDT")
BTC = Symbol("BTCUSDT")


def position(pid: str = "p1", **changes: Any) -> Position:
    """A new (version 1) OPENING short on SOL."""
    base = Position(
        id=PositionId(pid),
        symbol=SOL,
        side=Side.SHORT,
        status=PositionStatus.OPENING,
        target_qty=D("0.5"),
        plan=ExitPlan(),
        opened_at=T0,
        version=1,
    )
    return replace(base, **changes)


def full_position(pid: str = "full") -> Position:
    """Every field set away from its default, with awkward decimals and a non-UTC time zone."""
    return Position(
        id=PositionId(pid),
        symbol=BTC,
        side=Side.LONG,
        status=PositionStatus.PROTECTED,
        target_qty=D("0.123456789012345678"),
        plan=ExitPlan(
            stop_pct=D("0.0125"),
            tp1_pct=D("0.0075"),
            tp1_fraction=D("0.55"),
            tp2_pct=D("0.03"),
            tp2_fraction=D("0.25"),
            trail_pct=D("0.004"),
            breakeven_after_tp1=True,
        ),
        opened_at=datetime(2025, 3, 1, 14, 0, 0, 654321, tzinfo=PLUS2),
        signal_id="tv-42",
        origin="telegram",
        exclusive=False,
        filled_qty=D("3"),
        entry_price=D(302) / D(3),  # 28 significant digits: 100.6666666666666666666666667
        closed_qty=D("1.8"),
        stop_price=D("99.90"),
        tp1_price=D("101.40"),
        tp1_qty=D("1.8"),
        tp2_price=D("103.69"),
        tp2_qty=D("0.6"),
        tp1_hit=True,
        tp2_hit=True,
        trailing_active=True,
        watermark=D("104.123456789012345678901234"),
        mae=D("0.000000000000000001"),
        mfe=D("3.4567"),
        last_price=D("104.1"),
        realized_pnl=D("-12345678901234567890.123456789"),
        fees=D("0.0421"),
        exit_reason="tp2",
        closed_at=datetime(2025, 3, 2, 1, 2, 3, 4, tzinfo=PLUS2),
        stop_seq=7,
        version=1,
    )


def order(pid: str = "p1", role: OrderRole = OrderRole.STOP, seq: int = 1, **changes: Any) -> Order:
    base = Order(
        client_order_id=client_order_id(PositionId(pid), role, seq),
        position_id=PositionId(pid),
        role=role,
        symbol=SOL,
        side=OrderSide.BUY,
        type=OrderType.STOP_MARKET,
        qty=D("0.5"),
        trigger_price=D("151.25"),
        reduce_only=True,
        status=OrderStatus.OPEN,
        created_at=T0 + timedelta(seconds=seq),
    )
    return replace(base, **changes)


def fill(pid: str = "p1", trade_id: str = "t1", **changes: Any) -> Fill:
    base = Fill(
        trade_id=TradeId(trade_id),
        client_order_id=client_order_id(PositionId(pid), OrderRole.ENTRY, 0),
        position_id=PositionId(pid),
        role=OrderRole.ENTRY,
        symbol=SOL,
        side=OrderSide.SELL,
        qty=D("0.25"),
        price=D("150.0001"),
        fee=D("0.015000040"),
        at=T0 + timedelta(milliseconds=5),
    )
    return replace(base, **changes)


def event(kind: EventKind = EventKind.POSITION_OPENING, pid: str | None = "p1", **changes: Any) -> Event:
    base = Event(
        kind=kind,
        at=T0,
        position_id=None if pid is None else PositionId(pid),
        message=f"{kind} happened",
        data={"reason": "test", "qty": "0.5"},
    )
    return replace(base, **changes)


def insert(p: Position, **parts: Any) -> Transition:
    """The transition that creates `p` (which must be at version 1)."""
    return Transition(p, None, **parts)


def step(old: Position, **changes: Any) -> tuple[Position, Transition]:
    """`old` moved on by one version with `changes`, and the transition that writes it."""
    parts = {k: changes.pop(k) for k in ("orders", "fills", "events", "alerts") if k in changes}
    new = replace(old, version=old.version + 1, **changes)
    return new, Transition(new, old.version, **parts)
