"""The ports the core owns. Adapters implement them; the service depends only on these.

Exchange errors (raised by every Exchange adapter, translated at its boundary):

    ExchangeError
    ├── ExchangeUnavailable   nothing happened; safe to retry (network down, 5xx, 429)
    ├── ExchangeTimeout       the deadline passed: the outcome is UNKNOWN
    ├── OrderRejected         the exchange definitely refused it (nothing happened)
    └── OrderNotFound         a lookup or cancel named an order the exchange does not have

Store errors:

    StoreError
    ├── StoreUnavailable      the DB could not be reached or refused the write
    ├── VersionConflict       compare-and-set lost: someone else moved the position
    ├── DuplicateSignal       a signal id that already has a position
    ├── SymbolBusy            the symbol already has an exclusive active position
    └── FencedOut             the lease epoch moved on: this engine may not write

Alert delivery errors (raised by an AlertChannel):

    DeliveryError             not delivered now; retried with backoff (channel down, 5xx, timeout),
    │                         not before its `retry_after` when the channel gave one (429)
    ├── DeliveryRejected      the channel refused this alert for good (4xx): not retried
    └── ChannelRefused        the channel refuses every alert until someone acts (the bot blocked,
                              the chat gone): its alerts are kept and it is retried slowly
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from warden.domain.alerts import Alert, AlertId
from warden.domain.controls import Controls, KeptControls
from warden.domain.events import Event
from warden.domain.margin import SymbolConfig
from warden.domain.orders import Fill, Order
from warden.domain.position import Position
from warden.domain.reports import (
    FillReport,
    OrderReport,
    OrderRequest,
    PositionReport,
    StreamEvent,
)
from warden.domain.values import Instrument, PositionId, Symbol


class ExchangeError(Exception):
    """Base of every error an Exchange adapter raises."""


class ExchangeUnavailable(ExchangeError):
    """The call did not happen; retrying is safe."""


class ExchangeTimeout(ExchangeError):
    """The call may or may not have happened: look it up, never assume."""


class OrderRejected(ExchangeError):
    """The exchange refused the order; nothing was done."""


class DuplicateOrder(OrderRejected):
    """Refused because an order with its client id exists (Binance -4116, Bybit 110072): most
    likely an earlier send of the same order, resting. Nothing new was done."""


class OrderNotFound(ExchangeError):
    """No such order on the exchange."""


class Exchange(Protocol):
    """One account on one exchange. Every call may raise an ExchangeError."""

    async def instruments(self) -> dict[Symbol, Instrument]: ...

    async def mark_price(self, symbol: Symbol) -> Decimal: ...

    async def place_order(self, request: OrderRequest) -> OrderReport: ...

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport: ...

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport: ...

    async def fetch_open_orders(self) -> list[OrderReport]:
        """Every open order, plain and conditional."""
        ...

    async def fetch_positions(self) -> list[PositionReport]: ...

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]: ...

    def stream(self) -> AsyncIterator[StreamEvent]:
        """User events and mark prices; yields StreamGap after a reconnect."""
        ...

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        """The symbol's leverage and margin mode on the account (both set)."""
        ...

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        """Set what `config` names (None fields are left alone). OrderRejected if the exchange
        refuses it (e.g. the margin mode of a symbol with an open position)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PlacesTogether(Protocol):
    """A venue capability: several orders in ONE all-or-nothing request (Drift: one `place_orders`
    transaction). Only a venue that accepts reduce-only trigger orders before the position they
    reduce exists offers it, so an entry can travel with its stop and take-profits and the position
    is never without a stop. CEX adapters (Binance, Bybit, the in-process simulator) do not: their
    entry goes first and its protection once the fill is seen.

    `place_together` answers one report per request, in order, when the request landed (all of
    them did); OrderRejected / ExchangeUnavailable: none of them was placed; ExchangeTimeout: the
    outcome of ALL of them is unknown, settled by looking each up by its client id (they landed
    together or not at all), never by sending them again blind.
    """

    async def place_together(self, requests: Sequence[OrderRequest]) -> list[OrderReport]: ...


@runtime_checkable
class ReportsWarnings(Protocol):
    """An adapter capability: trouble the trader should see that does not stop trading (the ccxt
    adapters: the host's clock far off the exchange's). The composition root passes the engine's
    warning setter; /status shows what stands."""

    def report_warnings(self, report: Callable[[str, str | None], None]) -> None:
        """From now on call `report(key, text)` when a warning appears or changes and
        `report(key, None)` when it clears; what stands already is reported at once."""
        ...


class StoreError(Exception):
    """Base of every error a Store raises."""


class StoreUnavailable(StoreError):
    """The database is unreachable or refused the write."""


class StoreSchemaError(StoreError):
    """The database's schema is not one this warden can run on or bring to its own: a newer warden
    migrated it (a rollback after an upgrade), or the database refused a migration (a user without
    the right to create tables). Found before anything is read or sent; retrying will not help."""


class VersionConflict(StoreError):
    """Compare-and-set failed: the stored version is not the expected one."""


class DuplicateSignal(StoreError):
    """A position already exists for this signal id."""

    def __init__(self, signal_id: str, position_id: PositionId | None = None) -> None:
        super().__init__(f"signal {signal_id!r} already has a position")
        self.signal_id = signal_id
        self.position_id = position_id


class SymbolBusy(StoreError):
    """An exclusive active position already holds this symbol: one per symbol per account.

    Raised by a commit that would make a second exclusive position active on a
    symbol (`Position.exclusive`; active: opening, open, protected, closing).
    Nothing of that transition is written. `position_id` names the one already
    there when the store could tell.
    """

    def __init__(self, symbol: Symbol, position_id: PositionId | None = None) -> None:
        held = "" if position_id is None else f" ({position_id})"
        super().__init__(f"{symbol} already has an exclusive active position{held}")
        self.symbol = symbol
        self.position_id = position_id


class FencedOut(StoreError):
    """The lease moved to another engine; this engine's writes are refused."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One state transition: committed atomically, or not at all.

    `position.version` must be `expected_version + 1` (or 1 for an insert, when
    `expected_version` is None). Orders are upserted by client order id; fills
    are inserted idempotently (a fill already stored is a no-op); events are appended;
    alerts go to the outbox (idempotent on their id), undelivered.
    """

    position: Position
    expected_version: int | None
    orders: Sequence[Order] = ()
    fills: Sequence[Fill] = ()
    events: Sequence[Event] = ()
    alerts: Sequence[Alert] = ()

    def __post_init__(self) -> None:
        """The version moves by exactly one (to 1 for a new position): a caller bug otherwise."""
        wanted = 1 if self.expected_version is None else self.expected_version + 1
        if self.position.version != wanted:
            raise ValueError(
                f"position {self.position.id}: version {self.position.version} "
                f"after expected version {self.expected_version}; it must be {wanted}"
            )


@dataclass(frozen=True, slots=True)
class CloseClaim:
    """A close signal's id bound to the positions it closes: what was open on `symbol` when the
    signal first arrived (possibly none). A resent close acts on these, never on what is open
    by then (a newer position on the symbol is not the one the signal meant)."""

    signal_id: str
    symbol: Symbol
    position_ids: tuple[PositionId, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class ActiveState:
    """Everything recovery needs: the non-terminal positions and their orders."""

    positions: list[Position]
    orders: list[Order]
    elsewhere: dict[str, list[PositionId]] = field(default_factory=dict)
    """Non-terminal positions of the account traded on another exchange (by the exchange their
    fills were recorded on), left out of `positions`: this exchange cannot see them, so looking
    for them here would find them flat and close their records while they stay open there."""


class Store(Protocol):
    """Persistence. `list_events` returns the `limit` most recent events, oldest first."""

    @property
    def installation_id(self) -> str:
        """This database's id for the account: 6 lowercase letters and digits, made once, kept forever."""
        ...

    def set_epoch(self, account: str, epoch: int) -> None:
        """Fence every later write on the account's lease still being at `epoch` (else FencedOut)."""
        ...

    async def account_of_installation(self, installation_id: str) -> str | None:
        """The other account of this database whose installation id this is (None: no account
        here, or this account's own): orders of another installation on the exchange account may
        be this database's own, under an account name since changed."""
        ...

    async def commit(self, transition: Transition) -> None: ...

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        """Several transitions in one database transaction (a group commit): all or none."""
        ...

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        """Events and outbox alerts not tied to a position transition, in one transaction."""
        ...

    async def pending_alerts(self, limit: int = 100) -> list[Alert]:
        """The account's undelivered outbox alerts, oldest first."""
        ...

    async def mark_alerts_delivered(self, ids: Sequence[AlertId], at: datetime) -> None:
        """Mark outbox alerts delivered (ids not in the outbox are ignored). Fenced like every write."""
        ...

    async def record_alert_channels(self, channels: Mapping[AlertId, Collection[str]]) -> None:
        """Keep, with each undelivered outbox alert, the channels that have it (replacing what was
        kept; ids not in the outbox are ignored): a restart does not send it to them again while
        another channel still lacks it. Fenced like every write."""
        ...

    async def alert_channels(self, ids: Sequence[AlertId]) -> dict[AlertId, set[str]]:
        """The channels kept for each of `ids` (left out: an alert with none, or not in the outbox)."""
        ...

    async def load_controls(self) -> Controls:
        """The account's stored controls (pause, kill switch, daily-loss pause); defaults if none."""
        ...

    async def save_controls(self, controls: Controls) -> None:
        """Store the account's controls (fenced)."""
        ...

    async def realized_pnl_since(self, since: datetime) -> Decimal:
        """Realized PnL net of fees of the account's positions closed at or after `since`, plus
        that of its active positions (their partial closes)."""
        ...

    async def save_marks(self, positions: Sequence[Position]) -> None:
        """Persist tick-driven fields (last price, watermark, MAE, MFE) of many positions at once.

        Not a state transition: no version change, no event. These fields only
        grow (the engine merges them), so writing the newest values is safe.
        """
        ...

    async def load_active(self) -> ActiveState: ...

    async def get_position(self, position_id: PositionId) -> Position | None: ...

    async def find_by_signal(self, signal_id: str) -> Position | None: ...

    async def claim_close_signal(
        self, signal_id: str, symbol: Symbol, position_ids: Sequence[PositionId], at: datetime
    ) -> CloseClaim:
        """Bind a close signal's id to the positions it closes, once per symbol (fenced): the
        first claim is stored and returned; a later one for the same id and symbol returns the
        first, whatever it asks. The same id on another symbol is a claim of its own (one
        strategy's alerts on two symbols carry the same id when they fire together)."""
        ...

    async def list_positions(self, *, include_closed: bool = False, limit: int = 100) -> list[Position]: ...

    async def orders_for(self, position_id: PositionId) -> list[Order]: ...

    async def list_events(self, position_id: PositionId | None = None, limit: int = 100) -> list[Event]: ...

    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: PositionId | None = None
    ) -> list[tuple[int, Event]]:
        """Events with their ids (increasing in commit order), oldest first: those after `after_id`,
        or — with None — the `limit` most recent; only `position_id`'s if given. The event
        stream's resume point is the id."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class ControlsSpill(Protocol):
    """A second durable place for the account's controls, beside the database: a change the
    database could not store (an outage) is kept here until it is, so a crash meanwhile does not
    lose a kill switch. Raises StoreUnavailable when it cannot write or read."""

    @property
    def where(self) -> str:
        """Where it is kept (a path), for the trader's messages."""
        ...

    def save(self, kept: KeptControls) -> None:
        """Keep `kept` durably (replacing what was kept)."""
        ...

    def load(self) -> KeptControls | None:
        """What is kept, or None when nothing is."""
        ...

    def clear(self) -> None:
        """Forget what is kept (it is stored in the database now, or stale)."""
        ...

    def set_aside(self) -> str:
        """Move what is kept (unreadable) out of the way, for the trader to look at; where to."""
        ...


class WaitingKill(Protocol):
    """A kill of every account (or one naming this account) that found this account's engine not
    running (or starting): kept, in memory at once and then on disk, until the account's engine has
    it stored, so the account never trades before its kill switch is on, through a restart of
    warden too. A pause naming the account is kept the same way (`pause_only`). One per account."""

    @property
    def where(self) -> str:
        """Where it is kept (a path), for the trader's messages."""
        ...

    def pending(self) -> str | None:
        """The kill's reason while one waits (memory only: no I/O), else None."""
        ...

    @property
    def pause_only(self) -> bool:
        """What waits is a pause (no new entries), not a kill (memory only: no I/O)."""
        ...

    def mark(self, reason: str, *, pause_only: bool = False) -> None:
        """A kill (`pause_only`: a pause naming the account) waits from now on (memory only:
        whoever asks `pending` next sees it). A pause never turns a waiting kill into a pause."""
        ...

    def save(self) -> None:
        """Keep the waiting kill on disk (blocking I/O; raises StoreUnavailable)."""
        ...

    def forget(self) -> None:
        """No kill waits any more (it is stored, or the trader resumed): memory, then disk
        (blocking I/O; raises StoreUnavailable, and the memory is clear all the same)."""
        ...


@dataclass(frozen=True, slots=True)
class TakenUpdate:
    """The highest Telegram update id a bot took (getUpdates), and when it recorded it."""

    update_id: int
    at: datetime


class UpdateRecord(Protocol):
    """Where the Telegram bot keeps, durably, the highest update id it took, written before any
    update it took runs: an update is executed at most once even when warden dies before the next
    getUpdates tells Telegram it was taken. One per bot (not per account). Raises StoreUnavailable
    when it cannot write or read."""

    @property
    def where(self) -> str:
        """Where it is kept (a path), for the trader's messages."""
        ...

    def load(self) -> TakenUpdate | None:
        """What is kept, or None when nothing is (this bot never took an update here)."""
        ...

    def save(self, taken: TakenUpdate) -> None:
        """Keep `taken` durably (replacing what was kept)."""
        ...

    def set_aside(self) -> str:
        """Move what is kept (unreadable) out of the way, for the trader to look at; where to."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Notifier(Protocol):
    """The engine's own, local alert sink (the log): told of every alert at once, never retried."""

    async def notify(self, alert: Alert) -> None: ...


class DeliveryError(Exception):
    """The alert was not delivered now; the channel is retried with backoff, and not before
    `retry_after` seconds when the channel said when to come back (Telegram's 429)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryRejected(DeliveryError):
    """The channel refused this alert for good; it is not retried on this channel."""


class ChannelRefused(DeliveryError):
    """The channel refuses every alert, not this one, until someone acts (a Telegram chat that
    blocked the bot, removed it, or does not exist; a webhook URL that redirects or is gone): its
    alerts are kept, the trader is told, and it is tried again slowly, so that unblocking the bot
    resumes delivery."""


class AlertChannel(Protocol):
    """A remote channel alerts are delivered to at least once (Telegram chat, webhook).

    `name` is stable across restarts (deliveries are tracked per channel); `send`
    raises DeliveryError (or DeliveryRejected) when the alert did not arrive.
    """

    @property
    def name(self) -> str: ...

    async def send(self, alert: Alert, *, silent: bool) -> None: ...


class LeaseState(StrEnum):
    """What a lease holder knows of its lease (`Lease.check`)."""

    HELD = "held"
    """The lock is ours and the stored epoch is still ours."""
    LOST = "lost"
    """Definitely not ours: another engine holds the lock, or the stored epoch moved past ours."""
    UNREACHABLE = "unreachable"
    """Our own connection failed: we cannot tell. `reacquire` settles it."""


class Lease(Protocol):
    """One writer per account (I6): a lock the OS or the database drops when its holder dies."""

    async def try_acquire(self) -> int | None:
        """The new fencing epoch if this engine now holds the lease; None if another does."""
        ...

    def holder(self) -> str | None:
        """Who holds it (the engine's name, `host:pid` by default), as last seen."""
        ...

    async def look(self) -> str | None:
        """Who holds it now, seen without trying to take it (None: nobody); `holder()` then
        answers the same. Raises StoreUnavailable when the database cannot be asked."""
        ...

    async def release(self) -> None: ...

    async def still_held(self) -> bool:
        """True while the lock is ours and the epoch has not moved; False if in doubt."""
        ...

    async def check(self) -> LeaseState:
        """HELD, LOST (definite; also when never acquired or released) or UNREACHABLE (in doubt)."""
        ...

    async def reacquire(self) -> int | None:
        """After UNREACHABLE: take the lock again and return the SAME epoch if nobody took it meanwhile.

        None if another engine holds the lock or the epoch moved on (stand down;
        `check` then answers LOST). Raises StoreUnavailable while the database
        still cannot be reached (still in doubt: try again). While HELD it
        returns the epoch unchanged.
        """
        ...
