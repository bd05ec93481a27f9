"""A warden engine on SQLite and the in-process simulated exchange, with zero latency."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimCore, SimulatedExchange, synthetic_markets
from warden.domain.events import Event
from warden.domain.position import Position
from warden.domain.values import PositionId
from warden.ports import ActiveState, Store, Transition
from warden.service.config import EngineConfig
from warden.service.engine import Engine


class CountingStore:
    """Counts the commits the engine makes (the floor is that many bare commits)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.commits = 0

    async def commit(self, transition: Transition) -> None:
        self.commits += 1
        await self.inner.commit(transition)

    async def append_events(self, events: Sequence[Event]) -> None:
        self.commits += 1
        await self.inner.append_events(events)

    async def save_marks(self, positions: Sequence[Position]) -> None:
        await self.inner.save_marks(positions)

    def set_epoch(self, account: str, epoch: int) -> None:
        self.inner.set_epoch(account, epoch)

    async def load_active(self) -> ActiveState:
        return await self.inner.load_active()

    async def get_position(self, position_id: PositionId) -> Position | None:
        return await self.inner.get_position(position_id)

    async def find_by_signal(self, signal_id: str) -> Position | None:
        return await self.inner.find_by_signal(signal_id)

    async def list_positions(self, *, include_closed: bool = False, limit: int = 100) -> list[Position]:
        return await self.inner.list_positions(include_closed=include_closed, limit=limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


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
