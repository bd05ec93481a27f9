"""A warden engine on SQLite and the in-process simulated exchange, with zero latency."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.forwarding import ForwardingStore
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimCore, SimulatedExchange, synthetic_markets
from warden.domain.alerts import Alert
from warden.domain.events import Event
from warden.ports import Store, Transition
from warden.service.config import EngineConfig
from warden.service.engine import Engine


class CountingStore(ForwardingStore):
    """Counts the writes the engine makes (the floor is that many bare commits), and the time the
    event loop had one under way (`writing`, seconds: from a call to its answer, writes that overlap
    counted once)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.commits = 0
        self.writing = 0.0
        self._under_way = 0
        self._since = 0.0

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        self.commits += 1
        if self._under_way == 0:
            self._since = time.perf_counter()
        self._under_way += 1
        try:
            yield
        finally:
            self._under_way -= 1
            if self._under_way == 0:
                self.writing += time.perf_counter() - self._since

    async def commit(self, transition: Transition) -> None:
        with self._write():
            await self.inner.commit(transition)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        with self._write():  # one transaction
            await self.inner.commit_many(transitions)

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        with self._write():
            await self.inner.append_events(events, alerts)


@dataclass
class Rig:
    engine: Engine
    sim: SimulatedExchange
    store: CountingStore


@contextlib.asynccontextmanager
async def rig(
    url: str, *, symbols: int = 100, core: SimCore | None = None, **config: Any
) -> AsyncIterator[Rig]:
    clock = SystemClock()
    store = CountingStore(await open_store(url, exchange="sim"))
    sim = SimulatedExchange(core or SimCore(synthetic_markets(symbols), seed=1), now=clock.now, seed=1)
    engine = Engine(sim, store, clock, RecordingNotifier(), EngineConfig(allow_stacking=True, **config))
    consumer = asyncio.get_running_loop().create_task(engine.consume(sim.stream()))
    try:
        yield Rig(engine, sim, store)
    finally:
        await engine.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await store.inner.close()
