"""`warden bench open`: signal -> protected, against the floor of the bare commits it needs."""

from __future__ import annotations

import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from warden.adapters.db.engine import create_engine
from warden.bench.report import Result, median, ms, percentile
from warden.bench.rig import rig
from warden.domain.position import PositionStatus
from warden.domain.values import Side
from warden.service.commands import OpenPosition


async def bare_commits(url: str, groups: int, per_group: int) -> list[float]:
    """Time `groups` batches of `per_group` one-row INSERT+COMMITs on the same driver and pragmas."""
    engine = create_engine(url, op_timeout=5.0)
    async with engine.connect() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, v TEXT)"))
        await conn.commit()
    times = []
    async with engine.connect() as conn:
        for g in range(groups):
            start = time.perf_counter()
            for i in range(per_group):
                await conn.execute(text("INSERT INTO floor (v) VALUES (:v)"), {"v": f"{g}-{i}"})
                await conn.commit()
            times.append(time.perf_counter() - start)
    await engine.dispose()
    return times


async def bench_open(n: int = 1000, warmup: int = 50, directory: Path | None = None) -> Result:
    directory = directory or Path(tempfile.mkdtemp(prefix="warden-bench-"))
    result = Result(f"open: {n} signals -> protected (SQLite, in-process sim, zero latency)")
    times: list[float] = []
    commits: list[int] = []
    async with rig(f"sqlite:///{directory}/open.db") as r:
        await r.engine.start()
        symbols = sorted(r.engine.instruments)
        for i in range(warmup + n):
            symbol = symbols[i % len(symbols)]
            side = Side.LONG if (i % len(symbols)) % 2 == 0 else Side.SHORT
            cmd = OpenPosition(symbol, side, usd=Decimal(200), source="bench")
            before = r.store.commits
            start = time.perf_counter()
            position = await r.engine.open_position(cmd)
            elapsed = time.perf_counter() - start
            if position.status is not PositionStatus.PROTECTED:
                raise RuntimeError(f"open {i} ended {position.status}: not a valid run")
            if i >= warmup:
                times.append(elapsed)
                commits.append(r.store.commits - before)
        await r.engine.wait_idle()
    per_open = round(median([float(c) for c in commits]))
    floor = await bare_commits(f"sqlite:///{directory}/floor.db", n, per_open)
    p50, floor50 = median(times), median(floor)
    result.add("engine p50", ms(p50))
    result.add("engine p99", ms(percentile(times, 99)))
    result.add("commits per open", str(per_open))
    result.add(f"floor p50 ({per_open} bare commits)", ms(floor50))
    result.add("floor p99", ms(percentile(floor, 99)))
    result.add("engine / floor at p50", f"{p50 / floor50:.2f}x")
    goal = p50 <= 2 * floor50
    result.verdict = f"goal engine <= 2x floor at p50: {'met' if goal else 'NOT met'}"
    return result


def main() -> None:  # pragma: no cover - manual entry
    print(asyncio.run(bench_open()).render())
