"""`warden bench open`: signal -> protected, against the floor of the bare commits it needs."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, text

from warden.adapters.clock import SystemClock
from warden.adapters.db.engine import ThreadWriter
from warden.adapters.db.urls import normalise
from warden.adapters.sim import SimCore, SimulatedExchange, synthetic_markets
from warden.bench.report import Result, median, ms, percentile
from warden.bench.rig import rig
from warden.domain.orders import Order, OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import OrderRole, Side, Symbol
from warden.service.commands import OpenPosition

SYMBOLS = 100
"""Markets on the simulated venue: opens go round them, so each symbol holds about n/100 positions."""


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

    async def thread_id(self) -> int:
        """The writer thread's id (its CPU clock is read around each run of commits)."""
        return await self.writer.run(lambda _conn: threading.get_ident())

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


class VenueAlone:
    """A second simulated venue (the same markets) that is sent, straight, what the engine sent for
    an open: a mark price and the same orders. Its stream is drained as the engine's is. The event
    loop's CPU for that is the venue's own share of an open, which no implementation can avoid."""

    def __init__(self, symbols: int) -> None:
        clock = SystemClock()
        self.sim = SimulatedExchange(SimCore(synthetic_markets(symbols), seed=1), now=clock.now, seed=1)
        self._drain: asyncio.Task[None] | None = None
        self._taken = asyncio.Event()
        """Set by the consumer when it has taken every event published."""

    async def __aenter__(self) -> VenueAlone:
        self._drain = asyncio.get_running_loop().create_task(self._consume())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
        await self.sim.close()

    async def _consume(self) -> None:
        async for _ in self.sim.stream():
            if not self.sim.queued_events:
                self._taken.set()

    async def replay(self, symbol: Symbol, orders: list[Order]) -> tuple[float, int]:
        """Event-loop CPU seconds for the mark price, the orders and the stream taking their events;
        and how many orders the venue answered as it answered the engine (filled, or resting)."""
        start, answered = time.thread_time(), 0
        await self.sim.mark_price(symbol)
        for o in orders:
            request = OrderRequest(
                o.client_order_id, o.symbol, o.side, o.type, o.qty, o.trigger_price, o.reduce_only
            )
            report = await self.sim.place_order(request)
            expected = OrderStatus.FILLED if o.role is OrderRole.ENTRY else OrderStatus.OPEN
            if report.status is not expected:
                raise RuntimeError(f"{o.role} replayed {report.status}, not {expected}: not a valid run")
            answered += 1
        if self.sim.queued_events:
            self._taken.clear()
            await self._taken.wait()
        return time.thread_time() - start, answered


class ThreadCpu:
    """CPU seconds used by one thread, read from another (Linux: the thread's CPU-time clock)."""

    def __init__(self, ident: int) -> None:
        self.clock = time.pthread_getcpuclockid(ident)

    def __call__(self) -> float:
        return time.clock_gettime(self.clock)


def _store_writer(floor_thread: int) -> ThreadCpu:
    """The store's SQLite writer thread: the writer thread that is not the floor's."""
    [ident] = [
        t.ident
        for t in threading.enumerate()
        if t.name.startswith("warden-sqlite-writer") and t.ident not in (None, floor_thread)
    ]
    return ThreadCpu(ident)


async def bench_open(n: int = 1000, warmup: int = 50, directory: Path | None = None) -> Result:
    """Each open is followed by its floor (as many bare commits as it made), so both see the same load.

    Besides wall time, the CPU each side spends is read per open: the event loop's thread (the
    saga, the simulated venue, memory, events) and the SQLite writer thread (the transactions),
    so a reader sees where the engine's time beyond its commits goes."""
    directory = directory or Path(tempfile.mkdtemp(prefix="warden-bench-"))
    result = Result(f"open: {n} signals -> protected (SQLite, in-process sim, zero latency)")
    times: list[float] = []
    floor: list[float] = []
    commits: list[int] = []
    cpu: dict[str, list[float]] = {
        "loop": [],
        "writer": [],
        "floor loop": [],
        "floor writer": [],
        "venue": [],
    }
    replayed: list[int] = []
    writing: list[float] = []
    async with (
        rig(f"sqlite:///{directory}/open.db", symbols=SYMBOLS) as r,
        Floor(f"sqlite:///{directory}/floor.db") as bare,
        VenueAlone(SYMBOLS) as venue,
    ):
        await r.engine.start()
        floor_thread = await bare.thread_id()
        floor_writer, store_writer = ThreadCpu(floor_thread), _store_writer(floor_thread)
        symbols = sorted(r.engine.instruments)
        for i in range(warmup + n):
            symbol = symbols[i % len(symbols)]
            side = Side.LONG if (i % len(symbols)) % 2 == 0 else Side.SHORT
            cmd = OpenPosition(symbol, side, usd=Decimal(200), source="bench")
            before, written = r.store.commits, r.store.writing
            writer0 = store_writer()
            loop0 = time.thread_time()
            start = time.perf_counter()
            position = await r.engine.open_position(cmd)
            elapsed = time.perf_counter() - start
            loop1 = time.thread_time()
            if position.status is not PositionStatus.PROTECTED:
                raise RuntimeError(f"open {i} ended {position.status}: not a valid run")
            made, waited = r.store.commits - before, r.store.writing - written
            await r.engine.wait_idle()
            floor0, floor_loop0 = floor_writer(), time.thread_time()
            base = await bare.commits(made)
            floor1, floor_loop1 = floor_writer(), time.thread_time()
            sent = sorted(  # the entry first: the exits are reduce-only
                r.engine.ledger.orders_by_position[position.id].values(),
                key=lambda o: o.role is not OrderRole.ENTRY,
            )
            venue_cpu, answered = await venue.replay(symbol, sent)
            if i >= warmup:
                times.append(elapsed)
                floor.append(base)
                commits.append(made)
                writing.append(waited)
                cpu["loop"].append(loop1 - loop0)
                cpu["writer"].append(store_writer() - writer0)
                cpu["floor loop"].append(floor_loop1 - floor_loop0)
                cpu["floor writer"].append(floor1 - floor0)
                cpu["venue"].append(venue_cpu)
                replayed.append(answered)
    return _report(result, times, floor, commits, cpu, round(median([float(k) for k in replayed])), writing)


def _report(
    result: Result,
    times: list[float],
    floor: list[float],
    commits: list[int],
    cpu: dict[str, list[float]],
    orders: int,
    writing: list[float],
) -> Result:
    per_open = round(median([float(c) for c in commits]))
    p50, floor50 = median(times), median(floor)
    result.add("engine p50", ms(p50))
    result.add("engine p99", ms(percentile(times, 99)))
    result.add("commits per open", str(per_open))
    result.add(f"floor p50 ({per_open} bare commits)", ms(floor50))
    result.add("floor p99", ms(percentile(floor, 99)))
    result.add("engine / floor at p50", f"{p50 / floor50:.2f}x")
    # Where the engine's time goes against the floor: waiting for its writes, and the loop's own
    # work on the path between them (the signal checked and priced, the orders sent, the stream's
    # events routed, the next write built). Medians of each, so they need not add up to the p50.
    waited = median(writing)
    between = median([t - w for t, w in zip(times, writing, strict=True)])
    result.add("of which writes under way", f"{ms(waited)} ({waited / floor50:.2f}x the floor)")
    result.add("of which the loop between writes", f"{ms(between)} ({between / floor50:.2f}x the floor)")
    for side, prefix in (("engine", ""), ("floor", "floor ")):
        result.add(
            f"CPU per open, {side}",
            f"event loop {ms(median(cpu[prefix + 'loop']))}, "
            f"SQLite writer {ms(median(cpu[prefix + 'writer']))}",
        )
    result.add(
        "CPU per open, venue alone",
        f"event loop {ms(median(cpu['venue']))}"
        f" (a mark price and the same {orders} orders, straight to a second sim)",
    )
    goal = p50 <= 1.5 * floor50
    result.verdict = (
        f"goal engine <= 1.5x the floor of the commits kept, at p50: {'met' if goal else 'NOT met'}"
    )
    return result


def main() -> None:  # pragma: no cover - manual entry
    print(asyncio.run(bench_open()).render())
