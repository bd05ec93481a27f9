"""InMemoryStore: the Store port in a dict, with the SQL store's semantics.

Compare-and-set on `version`, DuplicateSignal, one exclusive active position
per symbol (SymbolBusy), fills idempotent on (symbol, trade id), events in
append order, optional fencing, an installation id, and `applied_trades`
derived from the stored fills, exactly as `SqlStore` does.
Switches for failure tests: `fail_writes` and `fail_reads` make the store
raise StoreUnavailable; `InMemoryLease.unreachable` puts its lease in doubt.
`InMemoryLease` is the lease for it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Mapping, Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from warden.adapters.db.canonical import stored
from warden.adapters.db.installation import checked, new_installation_id
from warden.domain.alerts import Alert, AlertId
from warden.domain.controls import Controls
from warden.domain.events import Event
from warden.domain.orders import Fill, Order
from warden.domain.position import Position
from warden.domain.values import ClientOrderId, PositionId, Symbol, TradeId
from warden.ports import (
    ActiveState,
    CloseClaim,
    DuplicateSignal,
    FencedOut,
    LeaseState,
    StoreError,
    StoreUnavailable,
    SymbolBusy,
    Transition,
    VersionConflict,
)


@dataclass(frozen=True, slots=True)
class _LeaseRow:
    epoch: int
    holder: str
    held: bool


class InMemoryStore:
    """A Store for unit tests: fast, synchronous underneath, same contract as SqlStore."""

    def __init__(self, installation_id: str | None = None) -> None:
        self.fail_writes = False
        self.fail_reads = False
        self.leases: dict[str, _LeaseRow] = {}
        self._installation = new_installation_id() if installation_id is None else checked(installation_id)
        self._positions: dict[PositionId, Position] = {}
        self._holders: dict[Symbol, PositionId] = {}  # the exclusive active position of each symbol
        self._orders: dict[ClientOrderId, Order] = {}
        self._fills: dict[tuple[Symbol, TradeId], Fill] = {}
        self._events: list[Event] = []
        self._alerts: dict[AlertId, tuple[Alert, datetime | None]] = {}
        self._alert_channels: dict[AlertId, set[str]] = {}
        self._controls = Controls()
        self._close_claims: dict[tuple[str, Symbol], CloseClaim] = {}
        self._fence: tuple[str, int] | None = None

    @property
    def installation_id(self) -> str:
        """Made at construction (or given to it); the same for the life of the object."""
        return self._installation

    async def save_marks(self, positions: Sequence[Position]) -> None:
        self._writable()
        for p in positions:
            stored = self._positions.get(p.id)
            if stored is not None:
                self._positions[p.id] = replace(
                    stored, last_price=p.last_price, watermark=p.watermark, mae=p.mae, mfe=p.mfe
                )

    def set_epoch(self, account: str, epoch: int) -> None:
        """Fence every later write on the lease of `account` still being at `epoch`."""
        self._fence = (account, epoch)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        """All of them or none (the state is restored if one is refused)."""
        saved = (
            dict(self._positions),
            dict(self._holders),
            dict(self._orders),
            dict(self._fills),
            list(self._events),
        )
        try:
            for transition in transitions:
                await self.commit(transition)
        except BaseException:
            self._positions, self._holders, self._orders, self._fills, self._events = saved
            raise

    async def commit(self, transition: Transition) -> None:
        self._writable()
        self._check_position(transition)
        known = self._positions.keys() | {transition.position.id}
        _check_refs(transition.orders, transition.fills, transition.events, known)
        position = stored(replace(transition.position, applied_trades=frozenset()))
        orders = [stored(o) for o in transition.orders]
        fills = [stored(f) for f in transition.fills]
        events = [stored(e) for e in transition.events]
        self._hold(self._positions.get(position.id), position)
        self._positions[position.id] = position
        self._orders.update((o.client_order_id, o) for o in orders)
        for fill in fills:
            self._fills.setdefault((fill.symbol, fill.trade_id), fill)
        self._append(events)
        self._outbox(transition.alerts)

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        self._writable()
        _check_refs((), (), events, self._positions.keys())
        self._append([stored(e) for e in events])
        self._outbox(alerts)

    async def pending_alerts(self, limit: int = 100) -> list[Alert]:
        self._readable()
        waiting = [a for a, delivered in self._alerts.values() if delivered is None]
        return sorted(waiting, key=lambda a: (a.at, a.id))[:limit]

    async def mark_alerts_delivered(self, ids: Sequence[AlertId], at: datetime) -> None:
        self._writable()
        for alert_id in ids:
            if alert_id in self._alerts:
                self._alerts[alert_id] = (self._alerts[alert_id][0], at)

    async def record_alert_channels(self, channels: Mapping[AlertId, Collection[str]]) -> None:
        self._writable()
        for alert_id, names in channels.items():
            if alert_id in self._alerts:
                self._alert_channels[alert_id] = set(names)

    async def alert_channels(self, ids: Sequence[AlertId]) -> dict[AlertId, set[str]]:
        self._readable()
        return {i: set(self._alert_channels[i]) for i in ids if self._alert_channels.get(i)}

    async def load_controls(self) -> Controls:
        self._readable()
        return self._controls

    async def save_controls(self, controls: Controls) -> None:
        self._writable()
        self._controls = controls

    async def claim_close_signal(
        self, signal_id: str, symbol: Symbol, position_ids: Sequence[PositionId], at: datetime
    ) -> CloseClaim:
        self._writable()
        return self._close_claims.setdefault(
            (signal_id, symbol), stored(CloseClaim(signal_id, symbol, tuple(position_ids), at))
        )

    async def realized_pnl_since(self, since: datetime) -> Decimal:
        self._readable()
        counted = (
            p.realized_pnl
            for p in self._positions.values()
            if p.is_active or (p.closed_at is not None and p.closed_at >= since)
        )
        return sum(counted, Decimal(0))

    def _outbox(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            self._alerts.setdefault(alert.id, (alert, None))

    async def load_active(self) -> ActiveState:
        self._readable()
        active = sorted(
            (p for p in self._positions.values() if p.is_active), key=lambda p: (p.opened_at, p.id)
        )
        ids = {p.id for p in active}
        found = sorted(
            (o for o in self._orders.values() if o.position_id in ids),
            key=lambda o: (o.position_id, o.created_at, o.client_order_id),
        )
        return ActiveState(positions=[self._hydrate(p) for p in active], orders=found)

    async def account_of_installation(self, installation_id: str) -> str | None:
        """One account per store: no other account's installation is known here."""
        self._readable()
        return None

    async def get_position(self, position_id: PositionId) -> Position | None:
        self._readable()
        position = self._positions.get(position_id)
        return None if position is None else self._hydrate(position)

    async def find_by_signal(self, signal_id: str) -> Position | None:
        self._readable()
        owner = self._signal_owner(signal_id)
        return None if owner is None else self._hydrate(self._positions[owner])

    async def list_positions(self, *, include_closed: bool = False, limit: int = 100) -> list[Position]:
        self._readable()
        chosen = [p for p in self._positions.values() if include_closed or p.is_active]
        chosen.sort(key=lambda p: (p.opened_at, p.id), reverse=True)
        return [self._hydrate(p) for p in chosen[:limit]]

    async def orders_for(self, position_id: PositionId) -> list[Order]:
        self._readable()
        found = [o for o in self._orders.values() if o.position_id == position_id]
        return sorted(found, key=lambda o: (o.created_at, o.client_order_id))

    async def fills_for(self, position_id: PositionId) -> list[Fill]:
        self._readable()
        return sorted((f for f in self._fills.values() if f.position_id == position_id), key=lambda f: f.at)

    async def list_events(self, position_id: PositionId | None = None, limit: int = 100) -> list[Event]:
        """The `limit` most recent events (of one position, or all), oldest first."""
        self._readable()
        chosen = [e for e in self._events if position_id is None or e.position_id == position_id]
        return chosen[-limit:] if limit > 0 else []

    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: PositionId | None = None
    ) -> list[tuple[int, Event]]:
        """Events with their ids (1, 2, … in append order), oldest first."""
        self._readable()
        numbered = list(enumerate(self._events, start=1))
        if position_id is not None:
            numbered = [(i, e) for i, e in numbered if e.position_id == position_id]
        if after_id is None:
            return numbered[-limit:] if limit > 0 else []
        return [pair for pair in numbered if pair[0] > after_id][:limit]

    async def ping(self) -> None:
        self._readable()

    async def close(self) -> None:
        """Nothing to release: the data outlives close, like a database, so a test can restart on it."""

    def _check_position(self, t: Transition) -> None:
        position = t.position
        stored = self._positions.get(position.id)
        if t.expected_version is None:
            signal = position.signal_id
            owner = None if signal is None else self._signal_owner(signal)
            if signal is not None and owner is not None:
                raise DuplicateSignal(signal, owner)
            if stored is not None:
                raise VersionConflict(f"position {position.id} already exists")
        elif stored is None or stored.version != t.expected_version:
            state = "does not exist" if stored is None else f"is at version {stored.version}"
            raise VersionConflict(f"position {position.id} {state}, expected version {t.expected_version}")
        holder = self._holders.get(position.symbol)
        if _holds_symbol(position) and holder is not None and holder != position.id:
            raise SymbolBusy(position.symbol, holder)

    def _hold(self, before: Position | None, after: Position) -> None:
        """Keep `_holders` in step as the partial unique index would be."""
        if before is not None and self._holders.get(before.symbol) == before.id:
            del self._holders[before.symbol]
        if _holds_symbol(after):
            self._holders[after.symbol] = after.id

    def _signal_owner(self, signal_id: str) -> PositionId | None:
        return next((p.id for p in self._positions.values() if p.signal_id == signal_id), None)

    def _hydrate(self, position: Position) -> Position:
        trades = frozenset(f.trade_id for f in self._fills.values() if f.position_id == position.id)
        return replace(position, applied_trades=trades)

    def _append(self, events: Sequence[Event]) -> None:
        self._events.extend(replace(e, data=dict(e.data)) for e in events)

    def _writable(self) -> None:
        if self.fail_writes:
            raise StoreUnavailable("in-memory store refuses writes (fail_writes is set)")
        if self._fence is not None:
            account, epoch = self._fence
            row = self.leases.get(account)
            current = None if row is None else row.epoch
            if current != epoch:
                raise FencedOut(
                    f"lease of account {account!r} is at epoch {current}, this engine holds {epoch}"
                )

    def _readable(self) -> None:
        if self.fail_reads:
            raise StoreUnavailable("in-memory store refuses reads (fail_reads is set)")


class InMemoryLease:
    """The lease for InMemoryStore: one holder per account; the epoch counts acquisitions.

    Switch for failure tests: with `unreachable` set, `check` answers UNREACHABLE
    and `reacquire` raises StoreUnavailable, as when the database cannot be reached;
    the lease row stays as it was (nobody else can take it meanwhile).
    """

    def __init__(self, store: InMemoryStore, account: str, holder: str | None = None) -> None:
        self._store = store
        self._account = account
        self._me = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._epoch: int | None = None
        self.unreachable = False

    async def try_acquire(self) -> int | None:
        if self.unreachable:
            raise StoreUnavailable("in-memory lease is unreachable (unreachable is set)")
        if await self.still_held():
            return self._epoch
        row = self._store.leases.get(self._account)
        if row is not None and row.held:
            return None
        self._epoch = (row.epoch if row else 0) + 1
        self._store.leases[self._account] = _LeaseRow(self._epoch, self._me, held=True)
        return self._epoch

    def holder(self) -> str | None:
        row = self._store.leases.get(self._account)
        return None if row is None else row.holder

    async def look(self) -> str | None:
        if self.unreachable:
            raise StoreUnavailable("in-memory lease is unreachable (unreachable is set)")
        row = self._store.leases.get(self._account)
        return row.holder if row is not None and row.held else None

    async def release(self) -> None:
        if self._mine():
            self._store.leases[self._account] = replace(self._store.leases[self._account], held=False)
        self._epoch = None

    async def still_held(self) -> bool:
        return await self.check() is LeaseState.HELD

    async def check(self) -> LeaseState:
        if self._epoch is None:
            return LeaseState.LOST
        if self.unreachable:
            return LeaseState.UNREACHABLE
        return LeaseState.HELD if self._mine() else LeaseState.LOST

    async def reacquire(self) -> int | None:
        if self._epoch is not None and self.unreachable:
            raise StoreUnavailable("in-memory lease is unreachable (unreachable is set)")
        return self._epoch if self._mine() else None

    def _mine(self) -> bool:
        row = self._store.leases.get(self._account)
        return row is not None and row.held and row.epoch == self._epoch


def _holds_symbol(position: Position) -> bool:
    return position.exclusive and position.is_active


def _check_refs(
    orders: Sequence[Order], fills: Sequence[Fill], events: Sequence[Event], known: Set[PositionId]
) -> None:
    """Foreign keys: what a transition writes must name a position that exists."""
    named = [o.position_id for o in orders] + [f.position_id for f in fills]
    named += [e.position_id for e in events if e.position_id is not None]
    missing = sorted({pid for pid in named if pid not in known})
    if missing:
        raise StoreError(f"unknown position(s) {', '.join(missing)}")
