"""The engine's memory, kept in step with the database one transition at a time.

Every change to a position goes through `Ledger.commit`: the transition is
written (position, orders, fills and events in one DB transaction, with
compare-and-set on the version) and only then applied to memory. If the
database fails after the position is live on the exchange, the transition is
applied to memory anyway, queued, and retried in order: the engine is
degraded, alerts say so, and nothing is reported as durable that is not.

Alerts travel with the writes that cause them: a transition's alerts go to
the outbox in its transaction; `record` writes events and alerts together;
while degraded they are queued with everything else (the deliverer has them
in memory meanwhile, so the trader still hears them).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import structlog

from warden.domain.alerts import Alert
from warden.domain.copying import evolve
from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.position import Position
from warden.domain.values import ClientOrderId, OrderRole, PositionId, Symbol, parse_client_order_id
from warden.ports import (
    Clock,
    DuplicateSignal,
    FencedOut,
    Store,
    StoreUnavailable,
    SymbolBusy,
    Transition,
    VersionConflict,
)
from warden.service.commands import NotHolder

log = structlog.get_logger("warden.ledger")
FORGOTTEN_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Queued:
    """Events and alerts with no transition, queued in their place among the queued transitions."""

    events: tuple[Event, ...]
    alerts: tuple[Alert, ...]
    sent: bool = False
    """A write of them was sent and failed: it may have landed all the same (its answer lost)."""


class Ledger:
    def __init__(self, store: Store, clock: Clock, check_may_act: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.clock = clock
        self.check_may_act = check_may_act
        """Raises (nothing written) when this engine is not the account's writer."""
        self.forgotten: dict[PositionId, None] = {}
        """Finished positions dropped from memory (bounded, oldest first): their late echoes are ignored."""
        self.positions: dict[PositionId, Position] = {}
        self.orders: dict[ClientOrderId, Order] = {}
        self.orders_by_position: dict[PositionId, dict[ClientOrderId, Order]] = defaultdict(dict)
        self.by_symbol: dict[Symbol, set[PositionId]] = defaultdict(set)
        self.pending: deque[Transition | Queued] = deque()
        """Writes the database has not taken, in the order they happened: transitions and, between
        them, events and alerts recorded meanwhile (written later in that same order)."""
        self.last_store_error: str | None = None
        self.on_degraded: Callable[[str], None] | None = None
        self.before_change: Callable[[Symbol, PositionId, bool], None] | None = None
        self._batch: list[tuple[Transition, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        """The task writing the queued groups, once a caller's own commit ends with others
        waiting (held here: the loop keeps only a weak reference to a task)."""
        self._in_flight = False
        """A commit is under way (a caller's own, or the flusher's): later ones join the next group."""
        self.group_limit = 500
        """At most this many transitions in one group commit."""
        self.group_commits = 0
        self.on_applied: Callable[[Position | None, Position], None] | None = None
        """Called with (before, after) for every transition applied to memory."""
        self.on_fenced: Callable[[str], None] | None = None
        """Called when the database refuses a write because another engine took the lease."""
        self.on_new_order: Callable[[ClientOrderId], None] | None = None
        """Called with the client id of every order memory learns of (its early events wait for it)."""
        self.changes: dict[Symbol, int] = defaultdict(int)
        """Per symbol, how often memory changed or began to (a commit under way counts): a reader
        holding an older snapshot of the exchange (reconciliation) knows what moved since."""
        self.writing: dict[Symbol, int] = defaultdict(int)
        """Per symbol, commits under way: memory does not hold them yet (a slow database can
        keep an order that already rests out of memory for seconds)."""
        self._landed = asyncio.Condition()

    def mark(self) -> dict[Symbol, int]:
        """Where every symbol's change count stands now (see `moved_since`)."""
        return dict(self.changes)

    def moved_since(self, mark: dict[Symbol, int]) -> set[Symbol]:
        """Symbols whose memory changed, or began a change, since `mark` was taken, and those
        with a commit still under way (memory is behind what was sent)."""
        return {s for s, n in self.changes.items() if mark.get(s, 0) != n or self.writing[s]}

    @property
    def queued(self) -> int:
        """Transitions waiting for the commit under way to end (the next group commit takes them)."""
        return len(self._batch)

    @property
    def degraded(self) -> bool:
        return bool(self.pending)

    @property
    def pending_transitions(self) -> list[Transition]:
        return [t for t in self.pending if isinstance(t, Transition)]

    @property
    def pending_events(self) -> list[Event]:
        """Queued events with no transition."""
        return [e for q in self.pending if isinstance(q, Queued) for e in q.events]

    @property
    def pending_alerts(self) -> list[Alert]:
        """Queued alerts with no transition."""
        return [a for q in self.pending if isinstance(q, Queued) for a in q.alerts]

    def _queue(self, events: Iterable[Event], alerts: Iterable[Alert] = (), *, sent: bool = False) -> None:
        """Queue events and alerts after every write queued so far (joined to a batch just before
        that was never sent). `sent`: their write failed, and may have landed."""
        more = Queued(tuple(events), tuple(alerts), sent)
        last = self.pending[-1] if self.pending else None
        if isinstance(last, Queued) and not last.sent and not sent:
            self.pending[-1] = Queued(last.events + more.events, last.alerts + more.alerts)
        else:
            self.pending.append(more)

    def load(self, positions: Iterable[Position], orders: Iterable[Order]) -> None:
        for position in positions:
            self._remember_position(position)
        for order in orders:
            self._remember_order(order)

    async def commit(
        self,
        old: Position | None,
        new: Position,
        *,
        orders: Sequence[Order] = (),
        fills: Sequence[Fill] = (),
        events: Sequence[Event] = (),
        alerts: Sequence[Alert] = (),
        must_be_durable: bool = False,
    ) -> Position:
        """Write one transition, then apply it to memory; see the module docstring."""
        self.check_may_act()
        self.changes[new.symbol] += 1
        self.writing[new.symbol] += 1
        try:
            return await self._commit(old, new, orders, fills, events, alerts, must_be_durable)
        finally:
            self.writing[new.symbol] -= 1
            async with self._landed:
                self._landed.notify_all()

    async def writes_landed(self, symbols: Iterable[Symbol]) -> None:
        """Wait until no commit is under way for any of `symbols`."""
        wanted = set(symbols)
        async with self._landed:
            await self._landed.wait_for(lambda: not any(self.writing[s] for s in wanted))

    async def _commit(
        self,
        old: Position | None,
        new: Position,
        orders: Sequence[Order],
        fills: Sequence[Fill],
        events: Sequence[Event],
        alerts: Sequence[Alert],
        must_be_durable: bool,
    ) -> Position:
        expected = None if old is None else old.version
        new = evolve(new, version=(0 if old is None else old.version) + 1)
        transition = Transition(new, expected, tuple(orders), tuple(fills), tuple(events), tuple(alerts))
        if self.pending:
            if must_be_durable:
                raise StoreUnavailable(self.last_store_error or "earlier writes are still pending")
            self.pending.append(transition)
        else:
            try:
                await self._grouped(transition)
            except StoreUnavailable as exc:
                if must_be_durable:
                    raise
                self.pending.append(transition)
                self._degrade(str(exc), new.id)
            except FencedOut as exc:
                self._fenced(exc)
        self._apply(transition)
        return new

    async def _grouped(self, transition: Transition) -> None:
        """Commit through the group: transitions that arrive while a commit is in flight are
        written together in the next one (one transaction, one fsync, each with its own
        compare-and-set). A transition that finds no commit under way is committed at once by
        its caller (no task, no hand-off); those arriving meanwhile wait for the flusher, which
        takes over when it ends. A caller that stops waiting before its write is taken into a
        transaction takes the write with it: memory (which it would have updated) and the
        database stay in agreement."""
        if self._in_flight:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (transition, future)
            self._batch.append(entry)
            try:
                await future
            except asyncio.CancelledError:
                if entry in self._batch:  # not taken into a group yet: nothing of it is written
                    self._batch.remove(entry)
                raise
            return
        self._in_flight = True
        try:
            await self.store.commit(transition)
        finally:
            if self._batch:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_batches())
            else:
                self._in_flight = False

    async def _flush_batches(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch[: self.group_limit], self._batch[self.group_limit :]
                if len(batch) == 1:
                    await self._settle_one(*batch[0])
                    continue
                try:
                    await self.store.commit_many([t for t, _ in batch])
                except (VersionConflict, DuplicateSignal, SymbolBusy):
                    for transition, future in batch:  # find which: each on its own
                        await self._settle_one(transition, future)
                    continue
                except BaseException as exc:  # every caller gets it; the flusher itself never dies
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
                self.group_commits += 1
        finally:
            self._in_flight = False

    async def _settle_one(self, transition: Transition, future: asyncio.Future[None]) -> None:
        try:
            await self.store.commit(transition)
        except BaseException as exc:  # the caller gets it; the flusher itself never dies
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)

    async def record(self, *events: Event, alerts: Sequence[Alert] = ()) -> None:
        """Events and alerts with no position transition (engine state); queued if the DB is down."""
        self.check_may_act()
        if not events and not alerts:
            return
        if self.degraded:
            self._queue(events, alerts)
            return
        try:
            await self.store.append_events(events, alerts)
        except StoreUnavailable as exc:
            self._queue(events, alerts, sent=True)
            self._degrade(str(exc), None)
        except FencedOut as exc:
            self._fenced(exc)

    async def flush(self) -> bool:
        """Retry queued writes in order; True when nothing is left.

        A write that "failed" by missing its deadline may have committed after all;
        its retry then loses the compare-and-set. If the stored version already
        includes it, it is done, not a conflict.
        """
        while self.pending:
            transition = self.pending[0]
            if isinstance(transition, Queued):
                if not (transition.sent and await self._landed_unanswered(transition)):
                    self.pending[0] = evolve(transition, sent=True)
                    await self.store.append_events(transition.events, transition.alerts)
                self.pending.popleft()
                continue
            try:
                await self.store.commit(transition)
            except FencedOut as exc:
                self._fenced(exc)
            except SymbolBusy as exc:
                # Memory already holds it; the database will not take a second open position on
                # the symbol. Keep the queue moving and say so: reconciliation settles the symbol.
                log.error("queued_write_refused", position_id=transition.position.id, error=str(exc))
                refused = Event(
                    EventKind.RECONCILE,
                    self.clock.now(),
                    None,
                    f"a queued write for {transition.position.id} was refused: {exc}",
                )
                self.pending.popleft()
                self.pending.appendleft(Queued((refused,), ()))
                continue
            except (VersionConflict, DuplicateSignal):
                stored = await self.store.get_position(transition.position.id)
                if stored is None or stored.version < transition.position.version:
                    raise
            self.pending.popleft()
        self.last_store_error = None
        return True

    async def _landed_unanswered(self, queued: Queued) -> bool:
        """Whether an earlier write of these events landed though it answered with an error.
        Nothing else writes events while writes are queued, so if it landed they are the newest
        (alerts are written once by their id whatever happens)."""
        if not queued.events:
            return False
        return await self.store.list_events(limit=len(queued.events)) == list(queued.events)

    def note_order(self, order: Order) -> None:
        """What the exchange acknowledged, in memory only; the next transition persists it."""
        self._remember_order(order)

    def forget(self, position_id: PositionId) -> None:
        """Drop a finished position and its orders from memory."""
        position = self.positions.get(position_id)
        if position is None or position.is_active:
            return
        del self.positions[position_id]
        for cid in self.orders_by_position.pop(position_id, {}):
            self.orders.pop(cid, None)
        self.by_symbol[position.symbol].discard(position_id)
        self.forgotten[position_id] = None
        while len(self.forgotten) > FORGOTTEN_LIMIT:
            del self.forgotten[next(iter(self.forgotten))]

    def clear(self) -> None:
        """Forget everything (a takeover reloads from the database)."""
        self.positions.clear()
        self.orders.clear()
        self.orders_by_position.clear()
        self.by_symbol.clear()
        self.pending.clear()

    def put_marks(self, position: Position) -> None:
        """Tick-derived fields only (last price, watermark, MAE/MFE): memory, no version change."""
        self.positions[position.id] = position

    def orders_of(self, position_id: PositionId) -> list[Order]:
        return list(self.orders_by_position.get(position_id, {}).values())

    def live_orders(self, position_id: PositionId, role: OrderRole | None = None) -> list[Order]:
        return [
            o
            for o in self.orders_by_position.get(position_id, {}).values()
            if o.status.live and (role is None or o.role is role)
        ]

    def current_stop(self, position_id: PositionId) -> Order | None:
        """The newest resting stop; else the newest one whose outcome is not known yet.

        Several may exist while a stop is being moved. A refused one is never live,
        and an intent not known to rest never hides one that does.
        """
        stops = self.live_orders(position_id, OrderRole.STOP)
        resting = [o for o in stops if o.status is OrderStatus.OPEN]
        return max(resting or stops, key=_seq, default=None)

    def active_count(self) -> int:
        return sum(map(len, self.by_symbol.values()))

    def active_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.is_active]

    def _fenced(self, exc: FencedOut) -> NoReturn:
        if self.on_fenced is not None:
            self.on_fenced(str(exc))
        raise NotHolder(f"the database refused the write: {exc}") from exc

    def _degrade(self, error: str, position_id: PositionId | None) -> None:
        """Entering degraded mode is itself an event (queued with the rest) and an alert."""
        self.last_store_error = error
        log.error("store_degraded", position_id=position_id, error=error)
        self._queue(
            [
                Event(
                    EventKind.STORE_DEGRADED, self.clock.now(), position_id, f"database write failed: {error}"
                )
            ]
        )
        if self.on_degraded is not None:
            self.on_degraded(error)

    def _apply(self, transition: Transition) -> None:
        position = transition.position
        current = before = self.positions.get(position.id)
        if self.before_change is not None:
            self.before_change(position.symbol, position.id, current is None)
            current = self.positions.get(position.id)
        if current is not None and position.is_active:
            position = position.with_marks_of(current)
        self._remember_position(position)
        new_ids = [o.client_order_id for o in transition.orders if o.client_order_id not in self.orders]
        for order in transition.orders:
            self._remember_order(order)
        if self.on_applied is not None:
            self.on_applied(before, position)
        if self.on_new_order is not None:
            for cid in new_ids:
                self.on_new_order(cid)

    def _remember_position(self, position: Position) -> None:
        self.changes[position.symbol] += 1
        self.positions[position.id] = position
        if position.is_active:
            self.by_symbol[position.symbol].add(position.id)
        else:
            self.by_symbol[position.symbol].discard(position.id)

    def _remember_order(self, order: Order) -> None:
        self.orders[order.client_order_id] = order
        self.orders_by_position[order.position_id][order.client_order_id] = order


def _seq(order: Order) -> int:
    parsed = parse_client_order_id(order.client_order_id)
    return parsed[2] if parsed else -1
