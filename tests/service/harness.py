"""A warden engine on a real store and the in-process simulated exchange.

`restart()` is a crash: every bit of engine memory is dropped; the database
and the exchange are kept, and a fresh engine recovers from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from tests.service.probe import ProbedExchange
from warden.adapters.clock import FakeClock, SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.forwarding import ForwardingStore
from warden.adapters.memory import InMemoryStore
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.adapters.spill import FileControlsSpill
from warden.domain.alerts import Alert, AlertId, AlertRoutes
from warden.domain.controls import Controls
from warden.domain.events import Event
from warden.domain.position import Position
from warden.domain.values import PositionId, Side, Symbol
from warden.ports import AlertChannel, Clock, CloseClaim, FencedOut, Store, StoreUnavailable, Transition
from warden.service.commands import OpenPosition
from warden.service.config import EngineConfig
from warden.service.delivery import DeliveryConfig
from warden.service.engine import Engine

T = TypeVar("T")

SOL = Symbol("SOL/USDT:USDT")
BTC = Symbol("BTC/USDT:USDT")

FAST = EngineConfig(
    order_timeout=1.0,
    query_timeout=1.0,
    fill_wait=0.5,
    retry_backoff=0.001,
    lookup_attempts=3,
    protect_attempts=3,
    watermark_flush_interval=0.05,
)


FAST_DELIVERY = DeliveryConfig(send_timeout=1.0, backoff_first=0.01, backoff_max=0.05, poll_interval=0.05)


class SwitchableStore(ForwardingStore):
    """The real store, with a switch that makes every write fail as an outage would."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.down = False
        self.land_then_time_out = False
        """Commits and appended events land, then answer as if their deadline passed (an unknown
        outcome)."""
        self.fenced = False
        """save_controls answers as a store whose lease another engine took over would."""

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("database unavailable (test outage)")

    async def commit(self, transition: Transition) -> None:
        self._check()
        await self.inner.commit(transition)
        if self.land_then_time_out:
            raise StoreUnavailable("deadline passed (the commit landed anyway)")

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        self._check()
        await self.inner.commit_many(transitions)
        if self.land_then_time_out:
            raise StoreUnavailable("deadline passed (the commits landed anyway)")

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        self._check()
        await self.inner.append_events(events, alerts)
        if self.land_then_time_out:
            raise StoreUnavailable("deadline passed (the events landed anyway)")

    async def save_marks(self, positions: Sequence[Position]) -> None:
        self._check()
        await self.inner.save_marks(positions)

    async def mark_alerts_delivered(self, ids: Sequence[AlertId], at: datetime) -> None:
        self._check()
        await self.inner.mark_alerts_delivered(ids, at)

    async def pending_alerts(self, limit: int = 100) -> list[Alert]:
        self._check()
        return await self.inner.pending_alerts(limit)

    async def record_alert_channels(self, channels: Mapping[AlertId, Collection[str]]) -> None:
        self._check()
        await self.inner.record_alert_channels(channels)

    async def alert_channels(self, ids: Sequence[AlertId]) -> dict[AlertId, set[str]]:
        self._check()
        return await self.inner.alert_channels(ids)

    async def save_controls(self, controls: Controls) -> None:
        self._check()
        if self.fenced:
            raise FencedOut("the account's lease moved on (test fence)")
        await self.inner.save_controls(controls)

    async def ping(self) -> None:
        self._check()
        await self.inner.ping()

    async def claim_close_signal(
        self, signal_id: str, symbol: Symbol, position_ids: Sequence[PositionId], at: datetime
    ) -> CloseClaim:
        self._check()
        return await self.inner.claim_close_signal(signal_id, symbol, position_ids, at)


@dataclass
class Harness:
    url: str | None
    sim: SimulatedExchange
    config: EngineConfig = FAST
    store: SwitchableStore = field(init=False)
    engine: Engine = field(init=False)
    notifier: RecordingNotifier = field(default_factory=RecordingNotifier)
    _consumer: asyncio.Task[Any] | None = None
    _memory: InMemoryStore | None = None
    _standby: tuple[SwitchableStore, Engine] | None = None
    crashed: bool = False
    restarted: bool = False
    """An engine ran before on this exchange: the next one's stream is a new session."""
    probe: ProbedExchange = field(init=False)
    wrap: Callable[[Any], Any] | None = None
    """Wraps the exchange and the store the engine is built with (the crash-point harness)."""
    channels: list[AlertChannel] = field(default_factory=list)
    """Remote alert channels of the next engine built (kept across restarts, like a chat)."""
    routes: AlertRoutes | None = None
    leased: bool = False
    """The next engine is built as `warden run` builds it: a lease watcher verifies its lease."""
    spill: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="warden-spill-")) / "controls.json"
    )
    """The controls' spill file (kept across restarts, like the host's disk)."""

    async def start(self, ready: bool = True) -> Harness:
        """Build the engine on the kept store and exchange (or have the standby built by
        `stand_by` take over); `ready`: run startup recovery too."""
        self.crashed = False
        if self._standby is not None:
            self.store, self.engine = self._standby
            self._standby = None
            self.engine.take_over()
        else:
            self.store = await self._open_store()
            self.engine = self._engine_on(self.store)
        if self.restarted:
            # A new process's websocket is a new connection: it carries nothing that happened
            # before it connected (what happened while no engine ran is found by recovery).
            self.sim.new_session()
        self.restarted = True
        self._consumer = asyncio.get_running_loop().create_task(self.engine.consume(self.probe.stream()))
        if ready:
            await self.engine.start()
        return self

    async def stand_by(self) -> None:
        """Build the next engine now, as a process that waits for the account's lease while this
        one runs (it neither reads the stream nor acts): the next `start` has it take over."""
        store = await self._open_store()
        self._standby = store, self._engine_on(store)
        self._standby[1].set_read_only("standby: the account is held by the harness's engine")

    async def _open_store(self) -> SwitchableStore:
        if self.url is None:
            self._memory = self._memory or InMemoryStore()
            return SwitchableStore(self._memory)
        return SwitchableStore(await open_store(self.url, exchange="sim"))

    def _engine_on(self, store: SwitchableStore) -> Engine:
        """An engine on `store` and the kept exchange (both through `wrap`, which may tell the
        harness's own store by identity: `start` sets it first)."""
        if not hasattr(self, "probe"):
            self.probe = ProbedExchange(self.sim)
        exchange: Any = self.probe
        wrapped: Any = store
        if self.wrap is not None:
            exchange, wrapped = self.wrap(exchange), self.wrap(store)
        return Engine(
            exchange,
            wrapped,
            SystemClock(),
            self.notifier,
            self.config,
            channels=self.channels,
            routes=self.routes,
            delivery=FAST_DELIVERY,
            leased=self.leased,
            spill=FileControlsSpill(self.spill),
        )

    async def stop(self) -> None:
        await self.engine.stop()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        await self.store.close()

    async def restart(self) -> Harness:
        """A crash and a restart: memory gone, DB and exchange kept."""
        await self.stop()
        return await self.start()

    async def open(
        self, side: str = "short", symbol: Symbol = SOL, usd: str | None = "100", **kw: Any
    ) -> Position:
        cmd = OpenPosition(
            symbol=symbol, side=Side.parse(side), usd=None if usd is None else Decimal(usd), **kw
        )
        return await self.engine.open_position(cmd)

    def exchange_qty(self, symbol: Symbol = SOL) -> Decimal:
        return self.sim.core.position(symbol).qty

    def resting(self, symbol: Symbol = SOL) -> list[Any]:
        return list(self.sim.core.open_orders(symbol))

    def queued_events(self) -> int:
        """Stream events published but not yet taken by the engine."""
        return self.sim._stream._queue.qsize()

    def drop_stream(self) -> None:
        """A restart: events the dead process never took are gone with its websocket."""
        if hasattr(self.sim, "new_session"):
            self.sim.new_session()
            return
        queue = self.sim._stream._queue
        while not queue.empty():
            queue.get_nowait()


@contextlib.asynccontextmanager
async def looping_engine(
    store_url: str,
    clock: FakeClock,
    sim: SimulatedExchange | None = None,
    config: EngineConfig = FAST,
) -> AsyncIterator[tuple[Engine, ProbedExchange]]:
    """An engine as `warden run` runs it (its own stream, maintenance and reconcile loops) on a
    real store, its clock moved only by the test. `sim`: kept across engines (a restart)."""
    sim = sim if sim is not None else SimulatedExchange(now=clock.now, seed=7)
    exchange = ProbedExchange(sim)
    store = await open_store(store_url, exchange="sim")
    engine = Engine(exchange, store, clock, RecordingNotifier(), config)
    await engine.start()
    engine.run_loops(exchange.stream())
    try:
        yield engine, exchange
    finally:
        engine.set_read_only("test over")
        await engine.stop()
        await store.close()


async def moments(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Let `seconds` of engine time pass in steps, each followed by turns of the loop."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        for _ in range(50):
            await asyncio.sleep(0)


async def driven(clock: FakeClock, work: Awaitable[T]) -> T:
    """Await `work` while the engine's clock moves only for whoever waits on it: while anything
    sleeps on the clock it advances (at most 0.05 s a step, never past the next wake-up);
    while the work waits on real I/O (a database), engine time stands still."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.sleep(0.001)  # real time: a database thread's answer may land meanwhile
        wake = clock.next_wake()
        if wake is not None and not task.done():
            clock.advance(min(0.05, max(wake - clock.monotonic(), 0.001)))
    return task.result()


class LateExecution:
    """An exchange that runs an order it answered "unknown" (`execute_late_if`) when the test
    says: the simulator's sleep for `DELAY` waits for `release`, every other sleep is a plain one."""

    DELAY = 4321.0

    def __init__(self) -> None:
        self.released = asyncio.Event()

    def exchange(self, seed: int = 7) -> SimulatedExchange:
        return SimulatedExchange(now=SystemClock().now, seed=seed, sleep=self.sleep)

    def release(self) -> None:
        self.released.set()

    def hold_entries(self, sim: SimulatedExchange) -> None:
        """Every entry sent to `sim` is answered "unknown" and executes only once released."""
        sim.faults.execute_late_if = lambda req: req.client_order_id.endswith("-e1")
        sim.faults.execute_delay = self.DELAY

    async def sleep(self, seconds: float) -> None:
        if seconds == self.DELAY:
            await self.released.wait()
        else:
            await asyncio.sleep(seconds)


class LateOneByOne:
    """An exchange that runs the orders it answered "unknown" (`execute_late_if`) one at a time,
    in the order they were sent, as the test releases them (`release(n)`): a copy sent again
    under its id can then reach the matching engine after the test let something happen in
    between (a cancel of the first copy). `executed` counts the copies the matching engine took
    (landed, or refused as a duplicate)."""

    DELAY = 4322.0

    def __init__(self) -> None:
        self._held: list[asyncio.Event] = []
        self._released = 0
        self.executed = 0

    def exchange(self, seed: int = 7) -> SimulatedExchange:
        return SimulatedExchange(now=SystemClock().now, seed=seed, sleep=self.sleep)

    @property
    def held(self) -> int:
        """Copies sent and not released yet."""
        return len(self._held) - self._released

    def release(self, n: int = 1) -> None:
        for event in self._held[self._released : self._released + n]:
            event.set()
        self._released = min(len(self._held), self._released + n)

    async def sleep(self, seconds: float) -> None:
        if seconds != self.DELAY:
            await asyncio.sleep(seconds)
            return
        event = asyncio.Event()
        self._held.append(event)
        if len(self._held) <= self._released:
            event.set()
        await event.wait()
        self.executed += 1  # the simulator executes it now, before it next yields


def covered(sim: SimulatedExchange, qty: Decimal) -> Callable[[], bool]:
    """For eventually(): the simulator's one exposure is `qty`, covered by a stop now."""

    def now() -> bool:
        [exposure] = sim.exposure()
        return exposure.qty == abs(qty) and exposure.unprotected_seconds == 0

    return now


async def turns(n: int = 300) -> None:
    """Let the loop run `n` turns without the engine's (fake) clock moving."""
    for _ in range(n):
        await asyncio.sleep(0)


async def advance_until(clock: FakeClock, done: Callable[[], bool], seconds: float) -> None:
    """Move the engine's clock in 0.1 s steps until `done`, `seconds` at most (the caller asserts)."""
    for _ in range(round(seconds * 10)):
        if done():
            return
        clock.advance(0.1)
        await turns(5)


@contextlib.asynccontextmanager
async def engine_on(
    clock: Clock, sim: SimulatedExchange, config: EngineConfig, store: Store | None = None
) -> AsyncIterator[Engine]:
    """An engine on `sim` whose clock moves only when the test says so (a FakeClock, or the chaos
    campaign's virtual loop time), started; stopped after (read-only first: that refuses every
    further order and write, ending any spin)."""
    engine = Engine(sim, store or InMemoryStore(), clock, RecordingNotifier(), config)
    consumer = asyncio.get_running_loop().create_task(engine.consume(sim.stream()))
    await engine.start()
    try:
        yield engine
    finally:
        engine.set_read_only("test over")
        await engine.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def stopped(engine: Engine, consumer: asyncio.Task[None], *pending: asyncio.Future[Any]) -> None:
    """Stop an engine (read-only first: that refuses every further order and
    write, ending any spin), its stream's consumer, and what the test left `pending`."""
    engine.set_read_only("test over")
    await engine.stop()
    consumer.cancel()
    await asyncio.gather(consumer, *pending, return_exceptions=True)
