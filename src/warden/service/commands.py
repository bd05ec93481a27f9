"""What the entrypoints ask of the engine, and what it answers.

Errors the engine raises to its callers (besides domain ValidationError):

    EngineError
    ├── TradingRefused      nothing was sent: not ready, read-only, degraded, kill switch
    │   └── NotHolder       another engine holds the account's lease: this one acts on nothing
    ├── PositionNotFound    no position with that id
    └── AlreadyExists       the signal id already has a position (HTTP 409)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from warden.domain.controls import Controls
from warden.domain.position import Position, PositionStatus
from warden.domain.values import PositionId, Side, Symbol


class EngineError(Exception):
    """Base of the errors the engine reports to its callers."""


class TradingRefused(EngineError):
    """Nothing was sent to the exchange; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotHolder(TradingRefused):
    """This engine does not hold the account's lease (standby, or it was taken): it acts on nothing."""


class PositionNotFound(EngineError):
    def __init__(self, position_id: str) -> None:
        super().__init__(f"no position {position_id!r}")
        self.position_id = position_id


class AlreadyExists(EngineError):
    """A resent signal: the existing position is attached."""

    def __init__(self, position: Position, message: str | None = None) -> None:
        if message is None and position.status is PositionStatus.FAILED:
            message = (
                f"signal {position.signal_id!r} was used by position {position.id}, whose entry the"
                " exchange did not fill (failed): nothing is open; a signal id is acted on once, so"
                " send a new signal_id to try again"
            )
        super().__init__(message or f"signal {position.signal_id!r} already opened position {position.id}")
        self.position = position


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """Open a position. Exactly one of `usd` (notional) or `qty` (base units)."""

    symbol: Symbol
    side: Side
    usd: Decimal | None = None
    qty: Decimal | None = None
    signal_id: str | None = None
    stop_price: Decimal | None = None
    source: str = "api"
    position_id: str | None = None
    """The id the new position gets (the API names it before the open finishes); None: a random one."""
    trail_pct: Decimal | None = None
    """This position's trailing distance (its exit plan's trail_pct); None: the configured one."""
    tp1_price: Decimal | None = None
    """This position's TP1 price; None: from the plan (tp1_pct from the fill)."""
    tp2_price: Decimal | None = None
    """This position's TP2 price; None: from the plan (tp2_pct from the fill)."""
    caller_tells: bool = False
    """The caller shows the trader the failure `open_position` answers with (a Telegram command
    replies in the chat the alerts go to; a flip's failing half is its own signal_refused): an
    entry that fails before the answer is not told again (entry_failed). One that fails after
    it (a working entry cancelled at its deadline, settled by recovery) is told all the same."""


@dataclass(frozen=True, slots=True)
class ClosePosition:
    position_id: PositionId
    reason: str = "manual"


@dataclass(frozen=True, slots=True)
class SignalClose:
    """What a close signal with a signal id did: `positions` are the ones its id is bound to (what
    was open on the symbol when it first arrived), as they stand now; `resent` says an earlier
    delivery of the signal (the same id on the same symbol) bound them; `closed` says this delivery
    sent a close (a resent signal finds its positions closed already, unless the first delivery
    was cut short)."""

    positions: list[Position]
    resent: bool
    closed: bool


class EngineState(StrEnum):
    STARTING = "starting"
    RECOVERING = "recovering"
    READY = "ready"
    DEGRADED = "degraded"
    READ_ONLY = "read_only"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position as the user sees it: state plus whether its stop is resting."""

    position: Position
    stop_resting: bool
    stop_order_id: str | None
    unrealized_pnl: Decimal | None


@dataclass(frozen=True, slots=True)
class EngineStatus:
    state: EngineState
    accepting_signals: bool
    reasons: list[str]
    exchange: str
    database: str
    open_positions: int
    unprotected_positions: int
    started_at: datetime
    last_reconcile_at: datetime | None = None
    pending_writes: int = 0
    details: dict[str, str] = field(default_factory=dict)
    controls: Controls = field(default_factory=Controls)
    warnings: list[str] = field(default_factory=list)
    """Trouble that does not stop trading (an alert channel down, alerts waiting)."""
    alarms: list[str] = field(default_factory=list)
    """Trouble the trader must act on even while the engine is ready (also among the warnings):
    a position without a resting stop beyond the protection window, each named; the exchange
    unreachable. /healthz is 503 while there is one."""


@dataclass(frozen=True, slots=True)
class KillReport:
    """What the kill switch did: the controls now, and (with flatten) each position's outcome."""

    controls: Controls
    closed: list[Position] = field(default_factory=list)
    failed: dict[PositionId, str] = field(default_factory=dict)
    """Positions whose close failed (they stay protected; kill --flatten again retries)."""
    cancelled_orders: int = 0
