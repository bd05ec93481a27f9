"""`warden bench mass`: a crash through many levels — every stop fires at once.

1,000 protected positions (10 per symbol over 100 symbols, long and short) on the in-process
simulated exchange. Every symbol's mark jumps through every stop in the same instant, so all
1,000 stops fill together. Two ways the engine learns of it:

- streamed: the fills arrive on the user stream;
- gap: the stream is down while it happens (a gap hides every event); on reconnect the engine
  resyncs over REST (lookups, fills) and reconciles.

Measured: from the crash (or the reconnect) to every fill recorded and every position closed
in the database, with its events. Concurrent transitions are group-committed (one transaction
per batch, each position's compare-and-set kept).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimCore, SimulatedExchange, synthetic_markets
from warden.bench.reconcile_bench import _drop_pg, _pg_url
from warden.bench.recovery_bench import seed
from warden.bench.report import Result
from warden.service.config import EngineConfig
from warden.service.engine import Engine

SYMBOLS = 100
GOALS = {"SQLite": 1.0, "PostgreSQL": 2.0}


async def _one(url: str, label: str, n: int, gap: bool) -> tuple[float, int, int]:
    markets = synthetic_markets(SYMBOLS)
    core = SimCore(markets, seed=9)
    store = await open_store(url, exchange="sim")
    await seed(store, core, n, SYMBOLS)
    sim = SimulatedExchange(core, now=SystemClock().now)
    engine = Engine(sim, store, SystemClock(), RecordingNotifier(), EngineConfig(allow_stacking=True))
    consumer = asyncio.get_running_loop().create_task(engine.consume(sim.stream()))
    try:
        await engine.start()
        commits_before = engine.ledger.group_commits
        if gap:
            sim.disconnect()
        t0 = time.perf_counter()
        for i, market in enumerate(sorted(markets, key=lambda m: m.instrument.symbol)):
            # A crash through every level: each symbol holds one side (the seed alternates by
            # symbol), longs' marks fall and shorts' rise 10 % in one tick, through every stop.
            symbol, price = market.instrument.symbol, market.start_price
            sim.set_mark(symbol, price * (Decimal("0.9") if i % 2 == 0 else Decimal("1.1")))
        if gap:
            t0 = time.perf_counter()
            sim.reconnect()
        # The count the ledger keeps per symbol (100 sets), not a scan of the 1,000 positions: the
        # scan, every millisecond on the engine's own event loop, took a quarter of its time.
        while engine.ledger.active_count() or engine.ledger.degraded:
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"{label}: {engine.ledger.active_count()} positions still open")
            await asyncio.sleep(0.001)  # polling pace of the measurement
        elapsed = time.perf_counter() - t0
        await engine.wait_idle()
        stored = await store.list_positions(limit=10)
        if stored:
            raise RuntimeError(f"{label}: the database still has open positions")
        return elapsed, n, engine.ledger.group_commits - commits_before
    finally:
        await engine.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await store.close()


async def bench_mass(n: int = 1000) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        urls: list[tuple[str, str | None]] = [("SQLite", None), ("PostgreSQL", None)]
        for label, _ in urls:
            result = Result(f"mass: {n:,} stops fire at once ({SYMBOLS} symbols), {label} + in-process sim")
            for gap in (False, True):
                if label == "SQLite":
                    url: str | None = f"sqlite:///{Path(tmp) / f'mass-{gap}.db'}"
                else:
                    url = await _pg_url()
                if url is None:
                    result.verdict = "NOT met (PostgreSQL unavailable)"
                    break
                try:
                    elapsed, closed, groups = await _one(url, label, n, gap)
                finally:
                    if label == "PostgreSQL":
                        await _drop_pg(url)
                how = "stream gap, resync over REST" if gap else "fills streamed"
                result.add(f"{how}: all closed and recorded", f"{elapsed:.3f} s ({closed:,} positions)")
                result.add(f"{how}: group commits", f"{groups:,}")
                result.figures.setdefault("_worst", "0")
                worst = max(float(result.figures["_worst"]), elapsed)
                result.figures["_worst"] = f"{worst}"
            worst = float(result.figures.pop("_worst", "inf"))
            if not result.verdict:
                goal = GOALS[label]
                result.verdict = f"goal within {goal:g} s: {'met' if worst <= goal else 'NOT met'}"
            results.append(result)
    return results
