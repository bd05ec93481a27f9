"""`warden bench reconcile`: one pass over 10,000 positions with 1 % discrepancies of every kind.

The state is 10,000 protected positions (10 per symbol over 1,000 symbols).
Then, outside warden: 10 symbols flattened (100 ghosts), 100 symbols half
closed (100 size mismatches), 100 stops cancelled (missing stops), 100 exit
orders left resting for positions warden does not have (strays), and 100
positions opened on symbols warden does not trade (orphans). One pass finds
and repairs them all; its time is reported split into reading the exchange +
diffing, and acting (orders placed and cancelled, transitions committed).
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path

from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimCore, SimulatedExchange, synthetic_markets
from warden.bench.recovery_bench import seed
from warden.bench.report import Result
from warden.domain.reconcile import Kind, Truth, diff
from warden.domain.reports import OrderRequest
from warden.domain.values import Instrument, OrderRole, OrderType, PositionId, Symbol, client_order_id
from warden.service.config import EngineConfig
from warden.service.engine import Engine

PER_SYMBOL = 10


async def _pg_url() -> str | None:
    """A fresh PostgreSQL database on 127.0.0.1:5432, or None if there is no server."""
    import secrets

    import asyncpg

    name = f"warden_bench_{secrets.token_hex(4)}"
    unreachable = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
    try:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=5432, user="postgres", database="postgres", timeout=3
        )
    except unreachable:
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except unreachable:  # a server that will not give us a database is as good as none
        return None
    finally:
        await conn.close()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def _drop_pg(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def disturb(
    core: SimCore,
    instruments: dict[Symbol, Instrument],
    symbols: list[Symbol],
    orphans: list[Symbol],
    per_kind: int,
) -> None:
    """Make `per_kind` discrepancies of each kind, as trades outside warden would."""
    now = SystemClock().now()
    for symbol in symbols[: per_kind // PER_SYMBOL]:  # ghosts: whole symbols flattened
        pos = core.position(symbol)
        core.external_order(symbol, pos.side.exit_side, abs(pos.qty), now, reduce_only=True)
    for symbol in symbols[per_kind // PER_SYMBOL : per_kind // PER_SYMBOL + per_kind]:  # size mismatches
        pos = core.position(symbol)
        core.external_order(symbol, pos.side.exit_side, instruments[symbol].lot_size, now, reduce_only=True)
    stops = [o for o in core.open_orders() if o.type is OrderType.STOP_MARKET]
    untouched = set(symbols[per_kind // PER_SYMBOL + per_kind :])
    cancelled = 0
    for order in stops:  # missing stops
        if order.symbol in untouched and cancelled < per_kind:
            core.cancel(order.client_order_id, now)
            untouched.discard(order.symbol)
            cancelled += 1
    for i, symbol in enumerate(symbols[-per_kind:]):  # strays: our ids, no such position
        pos = core.position(symbol)
        trigger = core.mark(symbol) * (Decimal("0.5") if pos.qty > 0 else Decimal("1.5"))
        inst = instruments[symbol]
        cid = client_order_id(PositionId(f"gone{i:04d}"), OrderRole.STOP, 1)
        core.place(
            OrderRequest(
                cid,
                symbol,
                pos.side.exit_side,
                OrderType.STOP_MARKET,
                inst.min_qty,
                inst.round_price(trigger),
                True,
            ),
            now,
        )
    for symbol in orphans[:per_kind]:  # orphans
        inst = instruments[symbol]
        qty = inst.round_qty(Decimal(200) / core.mark(symbol))
        core.external_order(symbol, core.position(symbol).side.entry_side, qty, now)


async def one_pass(url: str, label: str, n: int) -> list[str]:
    symbols_n = n // PER_SYMBOL
    per_kind = n // 100
    markets = synthetic_markets(symbols_n + per_kind)
    core = SimCore(markets, seed=4)
    store = await open_store(url, exchange="sim")
    await seed(store, core, n, symbols_n)
    symbols = sorted({m.instrument.symbol for m in markets[:symbols_n]})
    orphans = [m.instrument.symbol for m in markets[symbols_n:]]
    sim = SimulatedExchange(core, now=SystemClock().now)
    engine = Engine(sim, store, SystemClock(), RecordingNotifier(), EngineConfig(allow_stacking=True))
    engine.instruments.update(await sim.instruments())
    await engine.recovery.load()
    await engine.recovery.recover()
    disturb(core, {m.instrument.symbol: m.instrument for m in markets}, symbols, orphans, per_kind)
    t0 = time.perf_counter()
    truth = Truth(await sim.fetch_positions(), await sim.fetch_open_orders())
    found = diff(engine.ledger.active_positions(), engine.ledger.orders, truth)
    read_and_diff = time.perf_counter() - t0
    t1 = time.perf_counter()
    report = await engine.reconcile()
    full = time.perf_counter() - t1
    kinds = {k: sum(1 for f in report.findings if f.discrepancy.kind is k) for k in Kind}
    again = await engine.reconcile()
    await engine.stop()
    await store.close()
    summary = ", ".join(f"{k}={v}" for k, v in kinds.items())
    return [
        f"{label} engine time (read + diff)|{read_and_diff * 1000:.0f} ms, {len(found)} discrepancies found",
        f"{label} pass incl. every repair|{full:.3f} s wall ({summary})",
        f"{label} second pass|{len(again.findings)} discrepancies left",
    ]


async def bench_reconcile(n: int = 10_000) -> list[Result]:
    result = Result(f"reconcile: one pass over {n:,} positions, 1 % discrepancies of each of the 5 kinds")
    directory = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    targets = [("SQLite", f"sqlite:///{directory}/reconcile.db")]
    pg = await _pg_url()
    if pg is not None:
        targets.append(("PostgreSQL", pg))
    else:
        result.add("PostgreSQL", "no server on 127.0.0.1:5432")
    try:
        for label, url in targets:
            for line in await one_pass(url, label, n):
                key, _, value = line.partition("|")
                result.add(key, value)
    finally:
        if pg is not None:
            await _drop_pg(pg)
    engine_ms = [float(v.split()[0]) for k, v in result.figures.items() if "engine time" in k]
    met = pg is not None and bool(engine_ms) and max(engine_ms) < 1000
    why = "" if pg is not None else " (PostgreSQL unavailable)"
    result.verdict = (
        f"goal under 1 s of engine time (read + diff) on each store: {'met' if met else 'NOT met'}{why}"
    )
    return [result]
