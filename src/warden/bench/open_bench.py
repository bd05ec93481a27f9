"""`warden bench open`: signal -> protected, against the floor of the bare commits it needs."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, text

from warden.adapters.db.engine import ThreadWriter
from warden.adapters.db.urls import normalise
from warden.bench.report import Result, median, ms, percentile
from warden.bench.rig import rig
from warden.domain.position import PositionStatus
from warden.domain.values import Side
from warden.service.commands import OpenPosition


class Floor:
    """Bare one-row INSERT+COMMITs through the same kind of writer, pragmas and fsync as the store."""

    def __init__(self, url: str) -> None:
        self.writer = ThreadWriter(normalise(url), op_timeout=5.0)
        self.n = 0

    async def __aenter__(self) -> Floor:
        await self.writer.run(_create_floor)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.writer.close()

    async def commits(self, count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            self.n += 1
            await self.writer.run(functools.partial(_insert_floor, value=str(self.n)))
        return time.perf_counter() - start


def _create_floor(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, v TEXT)"))


def _insert_floor(conn: Connection, value: str) -> None:
    conn.execute(text("INSERT INTO floor (v) VALUES (:v)"), {"v": value})


async def bench_open(n: int = 1000, warmup: int = 50, directory: Path | None = None) -> Result:
    """Each open is followed by its floor (as many bare commits as it made), so both see the same load."""
    directory = directory or Path(tempfile.mkdtemp(prefix="warden-bench-"))
    result = Result(f"open: {n} signals -> protected (SQLite, in-process sim, zero latency)")
    times: list[float] = []
    floor: list[float] = []
    commits: list[int] = []
    async with rig(f"sqlite:///{directory}/open.db") as r, Floor(f"sqlite:///{directory}/floor.db") as bare:
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
            made = r.store.commits - before
            await r.engine.wait_idle()
            base = await bare.commits(made)
            if i >= warmup:
                times.append(elapsed)
                floor.append(base)
                commits.append(made)
    per_open = round(median([float(c) for c in commits]))
    p50, floor50 = median(times), median(floor)
    result.add("engine p50", ms(p50))
    result.add("engine p99", ms(percentile(times, 99)))
    result.add("commits per open", str(per_open))
    result.add(f"floor p50 ({per_open} bare commits)", ms(floor50))
    result.add("floor p99", ms(percentile(floor, 99)))
    result.add("engine / floor at p50", f"{p50 / floor50:.2f}x")
    goal = p50 <= 1.5 * floor50
    result.verdict = (
        f"goal engine <= 1.5x the floor of the commits kept, at p50: {'met' if goal else 'NOT met'}"
    )
    return result


def main() -> None:  # pragma: no cover - manual entry
    print(asyncio.run(bench_open()).render())
