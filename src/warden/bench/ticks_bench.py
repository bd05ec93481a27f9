"""`warden bench ticks`: mark-price ticks through the exit path, against a naive per-position loop.

10,000 open positions over 100 symbols, every one with a live stop, half of
them trailing runners: 50 of the 100 positions of every symbol. (Until issue 14
the runners were every position of the even symbols and none of the odd ones,
so a crossing met 100 runners or none; that case is still reported, apart.)
The fast path is the engine's own `ExitManager.on_mark` on ticks that cross no
trigger; the naive baseline walks every position of the symbol on every tick
(mark it, ask for a trailing target), which is what a position manager without
an index does.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from warden.adapters.clock import SystemClock
from warden.adapters.memory import InMemoryStore
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange, synthetic_markets
from warden.bench.report import Result, median, percentile, us
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import MarkPrice
from warden.domain.ticks import TickIndex
from warden.domain.values import Instrument, PositionId, Side, Symbol
from warden.service.config import EngineConfig
from warden.service.engine import Engine

PLAN = ExitPlan()


def build_positions(
    n: int, symbols: int, runner_every: int = 2
) -> tuple[dict[Symbol, Instrument], dict[Symbol, Decimal], list[Position]]:
    """`n` positions round-robin over the symbols; every `runner_every`-th of each symbol trails."""
    markets = synthetic_markets(symbols)
    instruments = {m.instrument.symbol: m.instrument for m in markets}
    prices = {m.instrument.symbol: m.start_price for m in markets}
    rng = random.Random(5)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    positions = []
    for i in range(n):
        m = markets[i % symbols]
        inst, price = m.instrument, m.start_price
        side = Side.LONG if rng.random() < 0.5 else Side.SHORT
        runner = (i // symbols) % runner_every == 0
        qty = inst.round_qty(Decimal(1000) / price) or inst.min_qty
        entry = price
        # Stops sit 5 % away. Runners peaked 1 % beyond the price and trail 1 % behind
        # that peak: ticks within +/- 0.4 % make no new peak and cross nothing.
        peak = inst.round_price(price * (1 + side.sign * Decimal("0.01")))
        if runner:
            stop = inst.round_price(peak * (1 - side.sign * Decimal("0.01")))
        else:
            stop = inst.round_price(price * (1 - side.sign * Decimal("0.05")))
        positions.append(
            Position(
                id=PositionId(f"p{i:05d}"),
                symbol=inst.symbol,
                side=side,
                status=PositionStatus.PROTECTED,
                target_qty=qty,
                plan=replace(PLAN, trail_pct=Decimal("0.01")),
                opened_at=now,
                filled_qty=qty,
                entry_price=entry,
                stop_price=stop,
                tp1_hit=runner,
                tp2_hit=runner,
                trailing_active=runner,
                watermark=peak if runner else price,
                last_price=price,
            )
        )
    return instruments, prices, positions


def quiet_ticks(
    prices: dict[Symbol, Decimal], count: int, instruments: dict[Symbol, Instrument]
) -> list[tuple[Symbol, Decimal]]:
    """Ticks that wander within +/- 0.4 % of the start price: they cross no trigger."""
    rng = random.Random(9)
    symbols = list(prices)
    out = []
    for _ in range(count):
        s = symbols[rng.randrange(len(symbols))]
        factor = Decimal(1) + Decimal(rng.randint(-40, 40)) / Decimal(10000)
        out.append((s, instruments[s].round_price(prices[s] * factor)))
    return out


class Book:
    """The ledger's shape, minus the database: positions by id and by symbol."""

    def __init__(self, positions: list[Position]) -> None:
        self.positions = {p.id: p for p in positions}
        self.by_symbol: dict[Symbol, list[PositionId]] = {}
        for p in positions:
            self.by_symbol.setdefault(p.symbol, []).append(p.id)

    def put(self, p: Position) -> None:
        self.positions[p.id] = p


def naive_tick(book: Book, instruments: dict[Symbol, Instrument], symbol: Symbol, price: Decimal) -> int:
    decisions = 0
    inst = instruments[symbol]
    for pid in book.by_symbol[symbol]:
        p = book.positions[pid].mark(price)
        book.positions[pid] = p
        if p.trailing_active and p.trailing_target(inst) is not None:
            decisions += 1
    return decisions


def simple_bot_book(positions: list[Position]) -> dict[Symbol, list[dict[str, float | bool | str]]]:
    """How a simple bot keeps its positions: per symbol a list of dicts of floats."""
    book: dict[Symbol, list[dict[str, float | bool | str]]] = {}
    for p in positions:
        book.setdefault(p.symbol, []).append(
            {
                "side": p.side.value,
                "peak": float(p.watermark or p.entry_price or 0),
                "stop": float(p.stop_price or 0),
                "trail": float(p.plan.trail_pct),
                "trailing": p.trailing_active,
            }
        )
    return book


def simple_bot_tick(
    book: dict[Symbol, list[dict[str, float | bool | str]]], symbol: Symbol, price: float
) -> int:
    """The loop a simple bot runs on every tick: every position of the symbol, floats, no index."""
    decisions = 0
    for p in book[symbol]:
        long = p["side"] == "long"
        peak = float(p["peak"])
        if (long and price > peak) or (not long and price < peak):
            p["peak"] = peak = price
        if p["trailing"]:
            target = peak * (1 - float(p["trail"])) if long else peak * (1 + float(p["trail"]))
            if (long and target > float(p["stop"])) or (not long and target < float(p["stop"])):
                decisions += 1
    return decisions


async def engine_rate(
    positions: list[Position], instruments: dict[Symbol, Instrument], stream: list[tuple[Symbol, Decimal]]
) -> float:
    """Ticks/s through `Engine.on_event(MarkPrice)`: stream dispatch + ExitManager + index."""
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now)  # never called on quiet ticks
    engine = Engine(sim, InMemoryStore(), clock, RecordingNotifier(), EngineConfig())
    engine.instruments.update(instruments)
    engine.ledger.load(positions, [])
    at = clock.now()
    events = [MarkPrice(symbol, price, at) for symbol, price in stream]
    for symbol in instruments:
        engine.exits.index.materialize(symbol)
        await engine.on_event(
            MarkPrice(
                symbol,
                engine.ledger.positions[next(iter(engine.ledger.by_symbol[symbol]))].last_price or Decimal(1),
                at,
            )
        )
    on_event = engine.on_event
    start = time.perf_counter()
    for event in events:
        await on_event(event)
    elapsed = time.perf_counter() - start
    if engine._tasks:
        raise RuntimeError("a quiet tick started a stop move: the benchmark is invalid")
    return len(events) / elapsed


def bench_ticks(
    positions: int = 10_000, symbols: int = 100, ticks: int = 1_000_000, rounds: int = 5
) -> Result:
    instruments, prices, built = build_positions(positions, symbols)
    book = Book(built)
    index = TickIndex(instruments, lambda s: book.by_symbol.get(s, ()), book.positions.__getitem__, book.put)
    stream = quiet_ticks(prices, ticks, instruments)
    naive_stream = stream[: max(1, ticks // 100)]
    for s in instruments:  # prime: thresholds computed once, as the engine does on first tick
        index.materialize(s)
        index.on_mark(s, prices[s])
    fast_rates, naive_rates, engine_rates, simple_rates = [], [], [], []
    simple = simple_bot_book(built)
    float_stream = [(symbol, float(price)) for symbol, price in stream]
    on_mark = index.on_mark
    for _ in range(rounds):
        engine_rates.append(asyncio.run(engine_rate(built, instruments, stream)))
        start = time.perf_counter()
        for symbol, price in stream:
            if on_mark(symbol, price):
                raise RuntimeError("a quiet tick crossed a trigger: the benchmark is invalid")
        fast_rates.append(len(stream) / (time.perf_counter() - start))
        start = time.perf_counter()
        for symbol, price in naive_stream:
            if naive_tick(book, instruments, symbol, price):
                raise RuntimeError("a quiet tick crossed a trigger in the naive loop")
        naive_rates.append(len(naive_stream) / (time.perf_counter() - start))
        start = time.perf_counter()
        for symbol, fprice in float_stream[: max(1, ticks // 10)]:
            simple_bot_tick(simple, symbol, fprice)
        simple_rates.append(max(1, ticks // 10) / (time.perf_counter() - start))
    latencies, cpu = crossing_latencies(index, book, instruments, prices)
    crowded, _ = crowded_latencies(positions, symbols)
    fast, naive, full = median(fast_rates), median(naive_rates), median(engine_rates)
    result = Result(
        f"ticks: {positions:,} positions / {symbols} symbols, half trailing, {ticks:,} quiet ticks x {rounds}"
    )
    result.add("engine.on_event(MarkPrice), quiet", f"{full:,.0f} ticks/s (median of {rounds})")
    result.add("index alone (TickIndex.on_mark)", f"{fast:,.0f} ticks/s (median of {rounds})")
    result.add("naive per-position loop", f"{naive:,.0f} ticks/s (median of {rounds})")
    result.add(
        "simple bot loop (floats, list of dicts)", f"{median(simple_rates):,.0f} ticks/s (median of {rounds})"
    )
    result.add("ratio engine / naive", f"{full / naive:,.0f}x")
    result.add("ratio engine / simple bot loop", f"{full / median(simple_rates):,.1f}x")
    result.add("tick -> exit decision p50", us(median(latencies)))
    result.add("tick -> exit decision p99", us(percentile(latencies, 99)))
    result.add(
        "  same, CPU time of the thread (no preemption)",
        f"p50 {us(median(cpu))}, p99 {us(percentile(cpu, 99))}",
    )
    result.add(
        "  same, 100 runners on the symbol (not the goal)",
        f"p50 {us(median(crowded))}, p99 {us(percentile(crowded, 99))}",
    )
    p99 = percentile(latencies, 99)
    quiet_ok, decision_ok = full >= 1_000_000, p99 < 0.001
    result.verdict = (
        f"goals >= 1,000,000 ticks/s on the quiet path (engine) and tick -> decision p99 < 1 ms "
        f"(50 runners): {'met' if quiet_ok and decision_ok else 'NOT met'}"
    )
    return result


def crowded_latencies(positions: int, symbols: int) -> tuple[list[float], list[float]]:
    """The crossing ticks again with every position trailing: twice the runners per symbol."""
    instruments, prices, built = build_positions(positions, symbols, runner_every=1)
    book = Book(built)
    index = TickIndex(instruments, lambda s: book.by_symbol.get(s, ()), book.positions.__getitem__, book.put)
    for s in instruments:
        index.materialize(s)
        index.on_mark(s, prices[s])
    return crossing_latencies(index, book, instruments, prices)


def crossing_latencies(
    index: TickIndex, book: Book, instruments: dict[Symbol, Instrument], prices: dict[Symbol, Decimal]
) -> tuple[list[float], list[float]]:
    """Ticks that make runners' stops move: time from the tick to the list of decisions.

    Wall-clock time (the goal), and the thread's CPU time for the same calls: on a shared
    machine the difference is time the process spent preempted.
    """
    wall, cpu = [], []
    for step in range(1, 11):
        for symbol, base in prices.items():
            up = instruments[symbol].round_price(base * (1 + Decimal(step) / 100 + Decimal("0.01")))
            start, start_cpu = time.perf_counter(), time.thread_time()
            decisions = index.on_mark(symbol, up)
            cpu.append(time.thread_time() - start_cpu)
            wall.append(time.perf_counter() - start)
            for d in decisions or ():  # apply: the stop moved, as the engine would record it
                book.put(replace(book.positions[d.position_id], stop_price=d.stop_price))
            index.materialize(symbol)
    return wall, cpu
