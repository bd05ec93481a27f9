"""Audit events: written in the same transaction as the state change they describe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from warden.domain.values import PositionId


class EventKind(StrEnum):
    POSITION_OPENING = "position_opening"
    ENTRY_SENT = "entry_sent"
    ENTRY_UNKNOWN = "entry_unknown"
    ENTRY_FILLED = "entry_filled"
    ENTRY_FAILED = "entry_failed"
    EXIT_ORDER_PLACED = "exit_order_placed"
    POSITION_PROTECTED = "position_protected"
    PROTECTION_LOST = "protection_lost"
    PROTECTION_FAILED = "protection_failed"
    STOP_MOVED = "stop_moved"
    TP1_HIT = "tp1_hit"
    TP2_HIT = "tp2_hit"
    TRAILING_ARMED = "trailing_armed"
    EXIT_FILL = "exit_fill"
    CLOSE_REQUESTED = "close_requested"
    POSITION_CLOSED = "position_closed"
    STORE_DEGRADED = "store_degraded"
    STORE_RECOVERED = "store_recovered"
    RECOVERY_STARTED = "recovery_started"
    RECOVERY_PASSED = "recovery_passed"
    RECONCILE = "reconcile"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    at: datetime
    position_id: PositionId | None = None
    message: str = ""
    data: Mapping[str, str] = field(default_factory=dict)
