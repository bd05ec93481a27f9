"""`warden bench recovery`: process start -> accepting signals, with 10,000 open positions.

The state is what 10,000 completed open sagas leave behind: on the simulated
exchange the entries filled and a stop plus two take-profits resting per
position; in SQLite each position PROTECTED with its orders, fill and events.
Then a fresh engine (new store connection, empty memory) starts and recovers.
Python's own start-up (imports) is measured in a subprocess and reported too.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimCore, SimulatedExchange, synthetic_markets
from warden.bench.report import Result, median
from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.plan import ExitPlan, levels_for
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import (
    ClientOrderId,
    OrderRole,
    OrderSide,
    OrderType,
    PositionId,
    Side,
    Symbol,
    client_order_id,
)
from warden.ports import Store, Transition
from warden.service.config import EngineConfig
from warden.service.engine import Engine

PLAN = ExitPlan()


async def seed(store: Store, core: SimCore, n: int, symbols: int) -> None:
    """Leave behind what `n` finished open sagas would: exchange orders and DB rows."""
    now = datetime.now(UTC)
    instruments = {m.instrument.symbol: m for m in synthetic_markets(symbols)}
    names = sorted(instruments)
    for i in range(n):
        market = instruments[names[i % symbols]]
        inst, price = market.instrument, market.start_price
        side = Side.LONG if (i % symbols) % 2 == 0 else Side.SHORT
        qty = inst.round_qty(Decimal(200) / price)
        pid = PositionId(f"b{i:07d}")
        entry_cid = client_order_id(pid, OrderRole.ENTRY, 1)
        report = core.place(
            OrderRequest(entry_cid, inst.symbol, side.entry_side, OrderType.MARKET, qty), now
        ).report
        trade = core.fills(inst.symbol)[-1]
        levels = levels_for(PLAN, side, price, qty, inst)
        position = Position(
            id=pid,
            symbol=inst.symbol,
            side=side,
            status=PositionStatus.PROTECTED,
            target_qty=qty,
            plan=PLAN,
            opened_at=now,
            origin="bench",
            exclusive=False,
            filled_qty=qty,
            entry_price=price,
            stop_seq=1,
            last_price=price,
            watermark=price,
            version=1,
        ).with_levels(levels)
        orders = [
            _order(
                pid,
                OrderRole.ENTRY,
                entry_cid,
                inst.symbol,
                side.entry_side,
                OrderType.MARKET,
                qty,
                None,
                now,
                report.exchange_order_id,
                OrderStatus.FILLED,
            )
        ]
        for role, type_, q, trigger in (
            (OrderRole.STOP, OrderType.STOP_MARKET, qty, levels.stop_price),
            (OrderRole.TP1, OrderType.TAKE_PROFIT_MARKET, levels.tp1_qty, levels.tp1_price),
            (OrderRole.TP2, OrderType.TAKE_PROFIT_MARKET, levels.tp2_qty, levels.tp2_price),
        ):
            if q <= 0:
                continue
            cid = client_order_id(pid, role, 1)
            placed = core.place(
                OrderRequest(cid, inst.symbol, side.exit_side, type_, q, trigger, True), now
            ).report
            orders.append(
                _order(
                    pid,
                    role,
                    cid,
                    inst.symbol,
                    side.exit_side,
                    type_,
                    q,
                    trigger,
                    now,
                    placed.exchange_order_id,
                    OrderStatus.OPEN,
                )
            )
        fill = Fill(
            trade.trade_id,
            entry_cid,
            pid,
            OrderRole.ENTRY,
            inst.symbol,
            trade.side,
            trade.qty,
            trade.price,
            trade.fee,
            trade.at,
        )
        event = Event(EventKind.POSITION_PROTECTED, now, pid, "seeded")
        await store.commit(Transition(position, None, orders, [fill], [event]))


def _order(
    pid: PositionId,
    role: OrderRole,
    cid: str,
    symbol: Symbol,
    side: OrderSide,
    type_: OrderType,
    qty: Decimal,
    trigger: Decimal | None,
    now: datetime,
    exchange_id: str,
    status: OrderStatus,
) -> Order:
    filled = qty if status is OrderStatus.FILLED else Decimal(0)
    reduce_only = role is not OrderRole.ENTRY
    return Order(
        ClientOrderId(cid),
        pid,
        role,
        symbol,
        side,
        type_,
        qty,
        trigger,
        reduce_only,
        status,
        now,
        exchange_id,
        filled,
        None,
    )


def import_seconds() -> float:
    """Python start-up plus importing everything `warden run` imports before it serves (the
    command line, the engine's adapters, the API; on the default venue, without Telegram), in a
    fresh process."""
    start = time.perf_counter()
    modules = "warden.entrypoints.cli, warden.bootstrap, warden.entrypoints.api"
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
    return time.perf_counter() - start


async def recover_once(url: str, sim: SimulatedExchange) -> tuple[float, int]:
    start = time.perf_counter()
    clock = SystemClock()
    store = await open_store(url, exchange="sim")
    engine = Engine(sim, store, clock, RecordingNotifier(), EngineConfig(allow_stacking=True))
    await engine.start()
    elapsed = time.perf_counter() - start
    if not engine.accepting_signals:
        raise RuntimeError("recovery did not pass")
    count = len(engine.ledger.active_positions())
    await engine.stop()
    await store.close()
    return elapsed, count


async def bench_recovery(
    n: int = 10_000, symbols: int = 100, rounds: int = 3, directory: Path | None = None
) -> Result:
    directory = directory or Path(tempfile.mkdtemp(prefix="warden-bench-"))
    url = f"sqlite:///{directory}/recovery.db"
    core = SimCore(synthetic_markets(symbols), seed=3)
    store = await open_store(url, exchange="sim")
    t0 = time.perf_counter()
    await seed(store, core, n, symbols)
    seeding = time.perf_counter() - t0
    await store.close()
    sim = SimulatedExchange(core, now=SystemClock().now)
    times = []
    for _ in range(rounds):
        elapsed, count = await recover_once(url, sim)
        if count != n:
            raise RuntimeError(f"recovered {count} of {n} positions")
        times.append(elapsed)
    imports = median([import_seconds() for _ in range(3)])
    result = Result(f"recovery: {n:,} open positions ({3 * n:,} resting exit orders), SQLite + sim")
    result.add("store open + load + reconcile-with-exchange", f"{median(times):.3f} s (median of {rounds})")
    result.add("python start-up + imports", f"{imports:.3f} s")
    total = median(times) + imports
    result.add("process start -> accepting signals", f"{total:.3f} s")
    result.add("(setup: seeding the state)", f"{seeding:.1f} s")
    result.verdict = f"goal under 2 s: {'met' if total < 2 else 'NOT met'}"
    return result
