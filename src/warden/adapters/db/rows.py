"""Domain values to table rows and back. Pure functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Row

from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.domain.controls import Controls
from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.values import (
    ClientOrderId,
    OrderRole,
    OrderSide,
    OrderType,
    PositionId,
    Side,
    Symbol,
    TradeId,
)

_PLAN_FIELDS = (
    "stop_pct",
    "tp1_pct",
    "tp1_fraction",
    "tp2_pct",
    "tp2_fraction",
    "trail_pct",
    "breakeven_after_tp1",
)
_POSITION_FIELDS = tuple(
    name for name in Position.__dataclass_fields__ if name not in ("plan", "applied_trades")
)


def position_row(position: Position, account: str) -> dict[str, Any]:
    row = {name: getattr(position, name) for name in _POSITION_FIELDS}
    row.update({f"plan_{name}": getattr(position.plan, name) for name in _PLAN_FIELDS})
    row["account"] = account
    return row


def position_from(row: Row[Any], trades: Iterable[str] = ()) -> Position:
    m = row._mapping
    fields = {name: m[name] for name in _POSITION_FIELDS}
    fields.update(
        id=PositionId(m["id"]),
        symbol=Symbol(m["symbol"]),
        side=Side(m["side"]),
        status=PositionStatus(m["status"]),
    )
    plan = ExitPlan(**{name: m[f"plan_{name}"] for name in _PLAN_FIELDS})
    return Position(plan=plan, applied_trades=frozenset(TradeId(t) for t in trades), **fields)


def order_row(order: Order) -> dict[str, Any]:
    return {name: getattr(order, name) for name in Order.__dataclass_fields__}


def order_from(row: Row[Any]) -> Order:
    m = row._mapping
    return Order(
        client_order_id=ClientOrderId(m["client_order_id"]),
        position_id=PositionId(m["position_id"]),
        role=OrderRole(m["role"]),
        symbol=Symbol(m["symbol"]),
        side=OrderSide(m["side"]),
        type=OrderType(m["type"]),
        qty=m["qty"],
        trigger_price=m["trigger_price"],
        reduce_only=m["reduce_only"],
        status=OrderStatus(m["status"]),
        created_at=m["created_at"],
        exchange_order_id=m["exchange_order_id"],
        filled_qty=m["filled_qty"],
        avg_price=m["avg_price"],
        reason=m["reason"],
    )


def fill_row(fill: Fill, exchange: str, account: str) -> dict[str, Any]:
    row = {name: getattr(fill, name) for name in Fill.__dataclass_fields__}
    row["exchange"] = exchange
    row["account"] = account
    return row


def fill_from(row: Row[Any]) -> Fill:
    m = row._mapping
    return Fill(
        trade_id=TradeId(m["trade_id"]),
        client_order_id=ClientOrderId(m["client_order_id"]),
        position_id=PositionId(m["position_id"]),
        role=OrderRole(m["role"]),
        symbol=Symbol(m["symbol"]),
        side=OrderSide(m["side"]),
        qty=m["qty"],
        price=m["price"],
        fee=m["fee"],
        at=m["at"],
    )


def event_row(event: Event, account: str) -> dict[str, Any]:
    return {
        "account": account,
        "at": event.at,
        "kind": event.kind.value,
        "position_id": event.position_id,
        "message": event.message,
        "data": encode_data(event.data),
    }


def event_from(row: Row[Any]) -> Event:
    m = row._mapping
    pid = m["position_id"]
    return Event(
        kind=EventKind(m["kind"]),
        at=m["at"],
        position_id=None if pid is None else PositionId(pid),
        message=m["message"],
        data=json.loads(m["data"]),
    )


def encode_data(data: Mapping[str, str]) -> str:
    """Event data as JSON text; only a str -> str mapping is accepted."""
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"event data must map str to str, got {key!r}: {value!r}")
    return json.dumps(dict(data), sort_keys=True, separators=(",", ":"))


def alert_row(alert: Alert, account: str) -> dict[str, Any]:
    return {
        "id": alert.id,
        "account": account,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "message": alert.message,
        "position_id": alert.position_id,
        "at": alert.at,
        "delivered_at": None,
        "channels": None,
    }


def alert_from(row: Row[Any]) -> Alert:
    m = row._mapping
    pid = m["position_id"]
    return Alert(
        id=AlertId(m["id"]),
        kind=AlertKind(m["kind"]),
        message=m["message"],
        at=m["at"],
        position_id=None if pid is None else PositionId(pid),
    )


def controls_row(controls: Controls, account: str) -> dict[str, Any]:
    return {
        "account": account,
        "paused": controls.paused,
        "killed": controls.killed,
        "daily_loss_until": controls.daily_loss_until,
        "reason": controls.reason,
        "changed_at": controls.changed_at,
    }


def controls_from(row: Row[Any] | None) -> Controls:
    if row is None:
        return Controls()
    m = row._mapping
    return Controls(
        paused=m["paused"],
        killed=m["killed"],
        daily_loss_until=m["daily_loss_until"],
        reason=m["reason"],
        changed_at=m["changed_at"],
    )
