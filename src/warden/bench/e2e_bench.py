"""Signal -> stop resting, against the physical floor (`warden bench e2e`).

`warden sim serve` runs as its own process with an injected round-trip time (REST and
stream latency, via its fault knobs); the engine runs here with the real ccxt adapter and
the store on SQLite, then PostgreSQL. The floor is what no implementation can beat, measured
in the same run over the same client and store: the commit that must precede the entry (the
intent), one round trip for the entry, one for the stop (it cannot rest before the fill is
known). Each open is timed from the signal to its stop resting: the moment the exchange's
answer accepting the stop reaches the engine (the engine sends it on the entry's filled
answer). The engine's answer "protected" comes later (the take-profits' answers and the
protection's commit follow the stop) and is reported beside it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.notify import RecordingNotifier
from warden.bench.reconcile_bench import _drop_pg, _pg_url
from warden.bench.report import Result, ms, percentile
from warden.domain.events import Event, EventKind
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import (
    ClientOrderId,
    OrderSide,
    OrderType,
    PositionId,
    Side,
    Symbol,
    parse_client_id,
)
from warden.ports import Transition
from warden.service.commands import ClosePosition, OpenPosition
from warden.service.config import EngineConfig
from warden.service.engine import Engine

KEY, SECRET = "sim-key", "sim-secret"
SYMBOLS = [Symbol("BTC/USDT:USDT"), Symbol("ETH/USDT:USDT"), Symbol("SOL/USDT:USDT")]
USD = {"BTC/USDT:USDT": Decimal(300), "ETH/USDT:USDT": Decimal(100), "SOL/USDT:USDT": Decimal(60)}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SimServerProcess:
    def __init__(self, rest: float, stream: float) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rest, self.stream = rest, stream
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SimServerProcess:
        args = ["sim", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--price-interval", "0"]
        launch = "from warden.entrypoints.cli import main; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", launch, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=self.url, timeout=2) as http:
            while True:
                try:
                    if http.get("/sim/state").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("warden sim serve did not come up")
                time.sleep(0.05)  # start-up polling pace, not synchronisation of the measurement
            knobs = {"rest_latency": self.rest, "stream_latency": self.stream}
            http.post("/sim/faults", json=knobs).raise_for_status()
        return self

    def rest_calls(self) -> int:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            return sum(1 for r in http.get("/sim/requests").json() if r["path"].startswith("/fapi/"))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


async def _one_store(url: str, label: str, n: int, rest: float, stream: float) -> Result:
    from warden.adapters.ccxt import CcxtExchange

    result = Result(f"e2e: signal -> stop resting, {n} opens, ccxt -> warden sim serve, {label}")
    with SimServerProcess(rest, stream) as server:
        exchange = CcxtExchange.create(api_key=KEY, api_secret=SECRET, base_url=server.url)
        store = await open_store(url, exchange="binanceusdm", account="bench")
        config = EngineConfig(exchange_name="binanceusdm", allow_stacking=True, reconcile_interval=3600)
        engine = Engine(exchange, store, SystemClock(), RecordingNotifier(), config)
        consumer = asyncio.get_running_loop().create_task(engine.consume(exchange.stream()))
        try:
            await engine.start()
            await _wait_for_marks(engine)
            floors = await _floor(exchange, store, n)
            rested = _time_stops(exchange)
            times, answered, sent = [], [], 0
            for first in range(0, n, len(SYMBOLS)):
                # One open per symbol, then they are closed (not timed): the exchange rests at
                # most 10 stops and take-profits per symbol (Binance's MAX_NUM_ALGO_ORDERS), so
                # positions stacked round the three symbols would soon find their stops refused.
                before = server.rest_calls()
                batch = []
                for i in range(first, min(first + len(SYMBOLS), n)):
                    symbol = SYMBOLS[i % len(SYMBOLS)]
                    # One side per symbol: the other side on a one-way account would net.
                    side = Side.LONG if (i % len(SYMBOLS)) % 2 == 0 else Side.SHORT
                    t0 = time.perf_counter()
                    position = await engine.open_position(
                        OpenPosition(symbol, side, usd=USD[symbol], source="bench")
                    )
                    answered.append(time.perf_counter() - t0)
                    if position.status is not PositionStatus.PROTECTED:
                        raise RuntimeError(f"open {i} ended {position.status}")
                    times.append(min(at for pid, at in rested if pid == position.id) - t0)
                    batch.append(position.id)
                sent += server.rest_calls() - before
                await _close_all(engine, batch)
            await engine.wait_idle()
            calls = sent / n
        finally:
            await engine.stop()
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await exchange.close()
            await store.close()
    p50, p99 = percentile(times, 50), percentile(times, 99)
    f50, f99 = percentile(floors, 50), percentile(floors, 99)
    result.add("injected latency", f"REST {rest * 1000:.0f} ms, stream {stream * 1000:.0f} ms")
    result.add("signal -> stop resting p50", ms(p50))
    result.add("signal -> stop resting p99", ms(p99))
    result.add(
        "signal -> answer 'protected'",
        f"p50 {ms(percentile(answered, 50))}, p99 {ms(percentile(answered, 99))}"
        " (the take-profits and a commit follow the stop)",
    )
    result.add("floor p50 (intent commit + entry + stop)", ms(f50))
    result.add("floor p99", ms(f99))
    result.add("engine / floor at p50", f"{p50 / f50:.2f}x")
    result.add("engine / floor at p99", f"{p99 / f99:.2f}x")
    result.add("REST calls per open", f"{calls:.1f} (entry, stop, TP1, TP2; the mark comes from the stream)")
    met = p50 <= 1.2 * f50 and p99 <= 1.5 * f99
    result.verdict = f"goal <= 1.2x the floor at p50 and <= 1.5x at p99: {'met' if met else 'NOT met'}"
    return result


async def _close_all(engine: Engine, pids: list[PositionId]) -> None:
    """Close the bench's positions (their stops and take-profits cancelled), and check it."""
    for pid in pids:
        closed = await engine.close_position(ClosePosition(pid, "bench"))
        if closed.status is not PositionStatus.CLOSED:
            raise RuntimeError(f"bench position {pid} ended {closed.status}, not closed")
    await engine.wait_idle()


def _time_stops(exchange: Any) -> list[tuple[str, float]]:
    """(position id, when) of every stop the exchange accepted, taken as its answer arrives."""
    rested: list[tuple[str, float]] = []
    place = exchange.place_order

    async def timed(request: OrderRequest) -> Any:
        report = await place(request)
        parsed = parse_client_id(request.client_order_id)
        if request.type is OrderType.STOP_MARKET and parsed is not None:
            rested.append((parsed.position_id, time.perf_counter()))
        return report

    exchange.place_order = timed
    return rested


async def _wait_for_marks(engine: Engine) -> None:
    deadline = time.monotonic() + 10
    while any(engine.exits.fresh_mark(s) is None for s in SYMBOLS):
        if time.monotonic() > deadline:
            raise RuntimeError("no streamed marks")
        await asyncio.sleep(0.01)  # polling pace while the streams connect


async def _floor(exchange: Any, store: Any, n: int) -> list[float]:
    """The irreducible path, measured n times: one commit, the entry, the stop, in sequence."""
    floors = []
    now = datetime.now(UTC)
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        pid = PositionId(f"floor{i:07d}")
        mark = Decimal(str(await exchange.mark_price(symbol)))
        qty = (USD[symbol] / mark).quantize(
            Decimal("0.001") if "BTC" in symbol or "ETH" in symbol else Decimal("0.1")
        )
        position = Position(
            pid,
            symbol,
            Side.LONG,
            PositionStatus.OPENING,
            qty,
            EngineConfig().plan,
            now,
            origin="floor",
            exclusive=False,
            version=1,
        )
        event = Event(EventKind.POSITION_OPENING, now, pid, "floor")
        t0 = time.perf_counter()
        await store.commit(Transition(position, None, events=[event]))
        entry = OrderRequest(ClientOrderId(f"fl-{pid}-e"), symbol, OrderSide.BUY, OrderType.MARKET, qty)
        await exchange.place_order(entry)
        stop_price = (mark * Decimal("0.98")).quantize(Decimal("0.1") if "BTC" in symbol else Decimal("0.01"))
        stop = OrderRequest(
            ClientOrderId(f"fl-{pid}-s"), symbol, OrderSide.SELL, OrderType.STOP_MARKET, qty, stop_price, True
        )
        await exchange.place_order(stop)
        floors.append(time.perf_counter() - t0)
        await store.commit(Transition(replace(position, status=PositionStatus.FAILED, version=2), 1))
        # Gone again before the next (not timed): its stop counts against the symbol's 10.
        await exchange.cancel_order(symbol, stop.client_order_id, True)
        close = OrderRequest(
            ClientOrderId(f"fl-{pid}-c"), symbol, OrderSide.SELL, OrderType.MARKET, qty, reduce_only=True
        )
        await exchange.place_order(close)
    return floors


async def bench_e2e(n: int, rest: float = 0.020, stream: float = 0.005) -> list[Result]:
    results = []
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        results.append(await _one_store(f"sqlite:///{Path(tmp) / 'e2e.db'}", "SQLite", n, rest, stream))
    pg = await _pg_url()
    if pg is None:
        missing = Result(f"e2e: signal -> stop resting, {n} opens, PostgreSQL")
        missing.verdict = "NOT met (PostgreSQL unavailable)"
        results.append(missing)
        return results
    try:
        results.append(await _one_store(pg, "PostgreSQL", n, rest, stream))
    finally:
        await _drop_pg(pg)
    return results
