"""The trader's controls and risk limits: pure rules, checked before anything is sent.

Controls (stored per account, so they survive restarts):

    paused            no new entries; exits and protection keep working
    killed            paused, and (with flatten) every position was closed reduce-only
    daily_loss_until  entries paused until this time: the day's realized loss reached its limit

`resume` clears all three. Limits (from the config; None = no limit):

    max_open_positions   active positions, the new one included
    max_position_usd     notional of one entry (a fat-finger guard, 10,000 by default)
    max_total_usd        open notional of all active positions, the new one included
    max_daily_loss_usd   realized PnL (net of fees) since 00:00 UTC; reaching it pauses entries
                         until the next UTC day
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from warden.domain.errors import DomainError

DEFAULT_MAX_POSITION_USD = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class Controls:
    paused: bool = False
    killed: bool = False
    daily_loss_until: datetime | None = None
    reason: str = ""
    changed_at: datetime | None = None

    def daily_loss_active(self, now: datetime) -> bool:
        return self.daily_loss_until is not None and now < self.daily_loss_until

    def refusal(self, now: datetime) -> str | None:
        """Why new entries are refused now, or None."""
        if self.killed:
            return f"kill switch on{_why(self.reason)}; `resume` clears it"
        if self.paused:
            return f"paused{_why(self.reason)}; `resume` clears it"
        if self.daily_loss_active(now):
            assert self.daily_loss_until is not None
            return (
                f"daily loss limit reached{_why(self.reason)}; entries paused until "
                f"{self.daily_loss_until.isoformat()} (or `resume`)"
            )
        return None


_UNSHOWN = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional marks, embeddings, overrides and isolates: a U+202E in a reason reverses the
rest of the line a terminal shows (the reason's own text and warden's after it)."""


def printable(reason: str) -> str:
    """A trader's reason as warden keeps and shows it: each control character (an escape sequence
    that would drive the terminal `warden status` prints to, a newline that splits a log line),
    line or paragraph separator (U+2028, U+2029: a line break to Python's splitlines) and
    bidirectional formatting character (it makes the terminal show text that was not sent)
    becomes a space. Every other character (any script, emoji and their joiners) is kept."""
    return "".join(
        " " if c in _UNSHOWN or unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in reason
    ).strip()


def _why(reason: str) -> str:
    return f" ({reason})" if reason else ""


@dataclass(frozen=True, slots=True)
class KeptControls:
    """A control change kept beside the database while it could not store it (the spill), with
    what it was made over: the database's own change then (`over`: its changed_at; None when it
    held none) in the database `installation_id`. It may stand in for the database's controls
    only while the database still holds exactly that: otherwise the database moved on (a later
    change stored here or by another engine) or is another database altogether. No clocks are
    compared: a clock that steps back, or another host's, cannot drop a kill."""

    controls: Controls
    over: datetime | None
    installation_id: str
    over_known: bool = True
    """False: made before the engine had read the database's controls (a kill while its start
    could not read them): what it was made over is unknown, so it stands only on the safe side —
    a kill, or a pause over controls that are not a kill."""

    def stands_over(self, stored: Controls, installation_id: str) -> bool:
        if self.installation_id != installation_id:
            return False
        if not self.over_known:
            return self.controls.killed or (self.controls.paused and not stored.killed)
        return self.over == stored.changed_at


@dataclass(frozen=True, slots=True)
class Limits:
    max_open_positions: int | None = None
    max_position_usd: Decimal | None = DEFAULT_MAX_POSITION_USD
    max_total_usd: Decimal | None = None
    max_daily_loss_usd: Decimal | None = None


class LimitExceeded(DomainError):
    """An entry a risk limit refuses; nothing was sent. `limit` names the setting."""

    def __init__(self, limit: str, message: str, value: Decimal, maximum: Decimal) -> None:
        super().__init__(f"{limit}: {message}")
        self.limit = limit
        self.message = message
        self.value = value
        self.maximum = maximum


@dataclass(frozen=True, slots=True)
class Exposure:
    """What is open now: active positions and their notional (size x last price). `open_usd` is
    None when nothing asks for it (no `max_total_usd`): it is a sum over every open position."""

    open_positions: int
    open_usd: Decimal | None


def check_entry(limits: Limits, exposure: Exposure, notional: Decimal) -> None:
    """Raise LimitExceeded for the first per-signal limit the new entry would break."""
    if limits.max_position_usd is not None and notional > limits.max_position_usd:
        raise LimitExceeded(
            "max_position_usd",
            f"this entry is {notional:.2f} USD, above the limit of {limits.max_position_usd} USD",
            notional,
            limits.max_position_usd,
        )
    if limits.max_open_positions is not None and exposure.open_positions + 1 > limits.max_open_positions:
        count = Decimal(exposure.open_positions + 1)
        raise LimitExceeded(
            "max_open_positions",
            f"this would be open position {count}, above the limit of {limits.max_open_positions}",
            count,
            Decimal(limits.max_open_positions),
        )
    if limits.max_total_usd is None:
        return
    if exposure.open_usd is None:
        raise ValueError("max_total_usd is set but the open notional was not summed")
    total = exposure.open_usd + notional
    if total > limits.max_total_usd:
        raise LimitExceeded(
            "max_total_usd",
            f"open notional would be {total:.2f} USD, above the limit of {limits.max_total_usd} USD",
            total,
            limits.max_total_usd,
        )


def daily_loss_reached(limits: Limits, realized_today: Decimal) -> bool:
    return limits.max_daily_loss_usd is not None and -realized_today >= limits.max_daily_loss_usd


def day_start(now: datetime) -> datetime:
    """00:00 UTC of `now`'s UTC day."""
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


def next_day(now: datetime) -> datetime:
    """00:00 UTC of the next UTC day."""
    return day_start(now) + timedelta(days=1)
