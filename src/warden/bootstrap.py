"""The one place that names concrete adapters: build them from Settings, run, tear down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from warden.adapters.clock import SystemClock
from warden.adapters.db.migrate import upgrade
from warden.adapters.db.store import open_store
from warden.adapters.db.urls import redact
from warden.adapters.notify import LogNotifier
from warden.adapters.sim import SimPriceFeed, SimulatedExchange
from warden.config import ConfigError, Settings
from warden.ports import Clock, Exchange, Notifier, Store
from warden.service.config import EngineConfig
from warden.service.engine import Engine


@dataclass
class Runtime:
    """What a running warden is made of; entrypoints reach the engine through it."""

    settings: Settings
    engine: Engine
    store: Store
    exchange: Exchange
    sim: SimulatedExchange | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


async def upgrade_database(url: str) -> None:
    """Migrate the database at `url` to the newest schema."""
    await upgrade(url)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        exchange_name=settings.exchange,
        database=redact(settings.db),
        plan=settings.exit_plan(),
        order_timeout=settings.order_timeout,
        query_timeout=settings.order_timeout,
        protection_window=settings.protection_window,
        allow_stacking=settings.allow_stacking,
        reconcile_interval=settings.reconcile_interval,
        orphan_policy=settings.orphan_policy,
    )


def build_exchange(settings: Settings, clock: Clock) -> tuple[Exchange, SimulatedExchange | None]:
    if settings.exchange == "sim":
        sim = SimulatedExchange(now=clock.now, seed=settings.sim_seed, sleep=clock.sleep)
        return sim, sim
    raise ConfigError("exchange", f"{settings.exchange!r} is not available in this build")


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    price_feed: bool = True,
) -> AsyncIterator[Runtime]:
    """Build, recover, and run the engine's background tasks until the block exits."""
    clock = clock or SystemClock()
    store = await open_store(
        settings.db, exchange=settings.exchange, account=settings.account, op_timeout=settings.db_timeout
    )
    exchange, sim = build_exchange(settings, clock)
    engine = Engine(exchange, store, clock, notifier or LogNotifier(), engine_config(settings))
    runtime = Runtime(settings, engine, store, exchange, sim)
    try:
        async with asyncio.TaskGroup() as group:
            runtime.tasks.append(group.create_task(engine.consume(exchange.stream())))
            await engine.start()
            runtime.tasks.append(group.create_task(engine.maintain()))
            runtime.tasks.append(group.create_task(engine.reconcile_forever()))
            if sim is not None and price_feed:
                feed = SimPriceFeed(sim, interval=settings.sim_tick_interval, sleep=clock.sleep)
                runtime.tasks.append(group.create_task(feed.run()))
            try:
                yield runtime
            finally:
                await engine.stop()
                for task in runtime.tasks:
                    task.cancel()
    finally:
        await exchange.close()
        await store.close()
