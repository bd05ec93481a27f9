"""What warden tells the trader: alert kinds and how loud each one is.

Every alert the engine raises has one of these kinds. Critical kinds are the
ones a trader must hear at once (a position that may be unprotected, a
database or lease problem, another warden on the account); they can never be
routed off.

Routing (per kind, from the user's config): `on` (sent), `silent` (sent
without sound), `off` (only the log gets it). A critical kind is never off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NewType

from warden.domain.errors import ValidationError
from warden.domain.values import PositionId

AlertId = NewType("AlertId", str)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertKind(StrEnum):
    POSITION_PROTECTED = "position_protected"
    PROTECTION_FAILED = "protection_failed"
    SLOW_PROTECTION = "slow_protection"
    ENTRY_UNRESOLVED = "entry_unresolved"
    ENTRY_FAILED = "entry_failed"
    CLOSE_FAILED = "close_failed"
    STOP_FILLED = "stop_filled"
    TP_FILLED = "tp_filled"
    RUNNER_ARMED = "runner_armed"
    RUNNER_CLOSED = "runner_closed"
    POSITION_CLOSED = "position_closed"
    FILL_MISMATCH = "fill_mismatch"
    ORPHAN_ADOPTED = "orphan_adopted"
    ORPHAN_FOUND = "orphan_found"
    GHOST_CLOSED = "ghost_closed"
    SIZE_MISMATCH = "size_mismatch"
    STOP_REPLACED = "stop_replaced"
    STOP_REMOVED = "stop_removed"
    STRAY_CANCELLED = "stray_cancelled"
    UNKNOWN_ROW = "unknown_row"
    OTHER_INSTANCE = "other_instance"
    DATABASE_DEGRADED = "database_degraded"
    DATABASE_RECOVERED = "database_recovered"
    LEASE_LOST = "lease_lost"
    LEASE_UNREACHABLE = "lease_unreachable"
    LEASE_TAKEN = "lease_taken"
    EXCHANGE_UNREACHABLE = "exchange_unreachable"
    EXCHANGE_RECOVERED = "exchange_recovered"
    STREAM_SILENT = "stream_silent"
    STREAM_RECOVERED = "stream_recovered"
    ENGINE_STARTED = "engine_started"
    ENGINE_START_FAILED = "engine_start_failed"
    ENGINE_ERROR = "engine_error"
    KILL_ON = "kill_on"
    KILL_OFF = "kill_off"
    PAUSED = "paused"
    LIMIT_REFUSED = "limit_refused"
    SIGNAL_REFUSED = "signal_refused"
    DAILY_LOSS_REACHED = "daily_loss_reached"
    RESUMED = "resumed"
    MARGIN_MISMATCH = "margin_mismatch"
    UNKNOWN_SYMBOL = "unknown_symbol"
    MARKET_UNLISTED = "market_unlisted"
    POSITIONS_ELSEWHERE = "positions_elsewhere"
    ALERTS_SUMMARISED = "alerts_summarised"

    @property
    def severity(self) -> Severity:
        return SEVERITY.get(self, Severity.INFO)


_K = AlertKind
SEVERITY: dict[AlertKind, Severity] = {
    _K.PROTECTION_FAILED: Severity.CRITICAL,
    _K.ENTRY_UNRESOLVED: Severity.CRITICAL,
    _K.CLOSE_FAILED: Severity.CRITICAL,
    _K.RUNNER_CLOSED: Severity.WARNING,
    _K.ORPHAN_FOUND: Severity.CRITICAL,
    _K.ORPHAN_ADOPTED: Severity.CRITICAL,
    _K.GHOST_CLOSED: Severity.CRITICAL,
    _K.OTHER_INSTANCE: Severity.CRITICAL,
    _K.DATABASE_DEGRADED: Severity.CRITICAL,
    _K.LEASE_LOST: Severity.CRITICAL,
    _K.LEASE_UNREACHABLE: Severity.CRITICAL,
    _K.EXCHANGE_UNREACHABLE: Severity.CRITICAL,
    _K.STREAM_SILENT: Severity.CRITICAL,
    _K.ENGINE_ERROR: Severity.CRITICAL,
    _K.ENGINE_START_FAILED: Severity.CRITICAL,
    _K.DAILY_LOSS_REACHED: Severity.CRITICAL,
    _K.STOP_REPLACED: Severity.CRITICAL,
    _K.UNKNOWN_ROW: Severity.CRITICAL,
    _K.MARKET_UNLISTED: Severity.CRITICAL,
    _K.POSITIONS_ELSEWHERE: Severity.CRITICAL,
    _K.SLOW_PROTECTION: Severity.WARNING,
    _K.FILL_MISMATCH: Severity.WARNING,
    _K.SIZE_MISMATCH: Severity.WARNING,
    _K.STRAY_CANCELLED: Severity.WARNING,
    _K.STOP_REMOVED: Severity.WARNING,
    _K.LIMIT_REFUSED: Severity.WARNING,
    _K.SIGNAL_REFUSED: Severity.WARNING,
    _K.ENTRY_FAILED: Severity.WARNING,
    _K.KILL_ON: Severity.WARNING,
    _K.PAUSED: Severity.WARNING,
    _K.MARGIN_MISMATCH: Severity.WARNING,
    _K.UNKNOWN_SYMBOL: Severity.WARNING,
    _K.ALERTS_SUMMARISED: Severity.WARNING,
}


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing the trader is told. `id` is unique: deliveries are deduplicated by it."""

    id: AlertId
    kind: AlertKind
    message: str
    at: datetime
    position_id: PositionId | None = None

    @property
    def severity(self) -> Severity:
        return self.kind.severity

    @property
    def level(self) -> str:
        return self.kind.severity.value

    @property
    def title(self) -> str:
        return self.kind.value


class Route(StrEnum):
    ON = "on"
    SILENT = "silent"
    """Sent without sound (Telegram's disable_notification)."""
    OFF = "off"
    """Not sent to any channel; the log still gets it."""


@dataclass(frozen=True, slots=True)
class AlertRoutes:
    """How each kind is sent; kinds not named are `on`. Built with `parse_routes`."""

    routes: Mapping[AlertKind, Route]

    def route(self, kind: AlertKind) -> Route:
        chosen = self.routes.get(kind, Route.ON)
        if chosen is Route.OFF and kind.severity is Severity.CRITICAL:
            return Route.ON  # never reached through parse_routes; a guard, not a rule
        return chosen


def parse_routes(raw: Mapping[str, str], field: str = "alert_routes") -> AlertRoutes:
    """`{"tp_filled": "silent", ...}` to routes; an unknown kind or route, or a critical kind
    turned off, raises ValidationError naming `alert_routes.<kind>`."""
    routes: dict[AlertKind, Route] = {}
    for name, value in raw.items():
        where = f"{field}.{name}"
        try:
            kind = AlertKind(str(name).strip().lower())
        except ValueError:
            raise ValidationError(where, f"unknown alert kind {name!r}") from None
        try:
            route = Route(str(value).strip().lower())
        except ValueError:
            raise ValidationError(where, f"must be on, silent or off, not {value!r}") from None
        if route is Route.OFF and kind.severity is Severity.CRITICAL:
            raise ValidationError(where, f"{kind} is critical and cannot be turned off (use silent)")
        routes[kind] = route
    return AlertRoutes(routes)
