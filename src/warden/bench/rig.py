"""A warden engine on SQLite and the in-process simulated exchange, with zero latency."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
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
    """Counts the writes the engine makes (the floor is that many bare commits)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.commits = 0

    async def commit(self, transition: Transition) -> None:
        self.commits += 1
        await self.inner.commit(transition)

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        self.commits += 1
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
