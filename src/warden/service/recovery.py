"""Startup is recovery: the same path runs after a crash, a restart and a stream gap.

For every non-terminal position: ask the exchange about each order that might
still be live (one bulk query for open orders, a lookup by client order id for
the rest), apply the fills that happened meanwhile through the ordinary fill
path, then make sure the position is protected. A failed exchange query
is never read as "flat": recovery fails and trading stays refused.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from warden.domain.events import Event, EventKind
from warden.domain.orders import Order, OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.reports import OrderReport
from warden.domain.values import ClientOrderId, OrderRole, PositionId
from warden.ports import ExchangeUnavailable

if TYPE_CHECKING:
    from warden.service.engine import Engine

RECOVERY_CONCURRENCY = 16
"""Positions resolved at once during recovery (each waits on its own exchange lookups)."""


async def recover(engine: Engine) -> None:
    now = engine.clock.now()
    if not engine.ledger.positions:
        state = await engine.store.load_active()
        engine.ledger.load(state.positions, state.orders)
        for cid in [c for c in engine.early_ids() if c in engine.ledger.orders]:
            await engine.replay_early(cid)
    active = engine.ledger.active_positions()
    await engine.ledger.record(
        Event(
            EventKind.RECOVERY_STARTED,
            now,
            None,
            f"{len(active)} active positions",
            {"active": str(len(active))},
        )
    )
    open_orders = {r.client_order_id: r for r in await engine.query(engine.exchange.fetch_open_orders())}
    engine.exits.recovery_started = engine.clock.monotonic()
    gate = asyncio.Semaphore(RECOVERY_CONCURRENCY)

    async def one(pid: PositionId) -> None:
        async with gate:
            await resync(engine, pid, open_orders)

    await asyncio.gather(*(one(p.id) for p in active))
    await engine.ledger.record(Event(EventKind.RECOVERY_PASSED, engine.clock.now(), None, "recovery passed"))


async def resync(engine: Engine, pid: PositionId, open_orders: dict[str, OrderReport] | None = None) -> None:
    """Bring one position in line with the exchange, through the ordinary paths."""
    if open_orders is None:
        open_orders = {r.client_order_id: r for r in await engine.query(engine.exchange.fetch_open_orders())}
    live = [o for o in engine.ledger.orders_of(pid) if o.status.live]
    updates: list[Order] = []
    need_fills: set[ClientOrderId] = set()
    for order in live:
        report = open_orders.get(order.client_order_id)
        if report is None:
            # An intent the exchange does not list as open: it filled or was cancelled
            # meanwhile, or never arrived. Its send is long past, so two tries suffice.
            found = await engine.lookup(order, attempts=2)
            if isinstance(found, OrderReport):
                report = found
            elif isinstance(found, str):
                updates.append(
                    order.with_status(
                        OrderStatus.REJECTED if order.status is OrderStatus.PENDING else OrderStatus.CANCELED
                    )
                )
                continue
            else:
                raise ExchangeUnavailable(f"cannot learn the state of {order.client_order_id}")
        if report.filled_qty > order.filled_qty:
            need_fills.add(order.client_order_id)
        if report.status is not order.status:
            updates.append(order.with_status(report.status, exchange_order_id=report.exchange_order_id))
    if need_fills:
        await engine.fetch_fills_for(pid, need_fills)
    if updates:
        await _record_orders(engine, pid, updates)
    await _settle(engine, pid)


async def _record_orders(engine: Engine, pid: PositionId, updates: list[Order]) -> None:
    async with engine.lock(pid):
        pos = engine.ledger.positions[pid]
        merged = []
        for update in updates:
            current = engine.ledger.orders[update.client_order_id]
            if current.status.terminal:
                continue
            merged.append(
                update.with_status(update.status, filled_qty=max(current.filled_qty, update.filled_qty))
            )
        if merged:
            await engine.ledger.commit(pos, pos, orders=merged)


async def _settle(engine: Engine, pid: PositionId) -> None:
    pos = engine.ledger.positions[pid]
    if pos.status is PositionStatus.OPENING:
        entry = next((o for o in engine.ledger.orders_of(pid) if o.role is OrderRole.ENTRY), None)
        if entry is not None and entry.status.terminal and pos.filled_qty <= 0:
            await engine.fail_entry(pid, entry, f"entry {entry.status} (found by recovery)")
        return
    if pos.status is PositionStatus.CLOSING:
        if not engine.ledger.live_orders(pid, OrderRole.CLOSE) and pos.remaining > 0:
            await engine.exits.close(pid, "manual")
        return
    if pos.status.terminal:
        await engine.exits.cancel_exits(pid)
        return
    if pos.remaining <= 0:
        return
    await engine.exits.cancel_superseded_stops(pid)
    stop = engine.ledger.current_stop(pid)
    if stop is None:  # unprotected: timed from the start of recovery (it may have been longer)
        engine.exits.exposed_from(pid, engine.exits.recovery_started or engine.clock.monotonic())
    if stop is None and pos.status is PositionStatus.PROTECTED:
        async with engine.lock(pid):
            pos = engine.ledger.positions[pid]
            event = Event(
                EventKind.PROTECTION_LOST, engine.clock.now(), pid, "no resting stop found by recovery"
            )
            await engine.ledger.commit(pos, pos.transition(PositionStatus.OPEN), events=[event])
    if stop is not None and stop.qty != pos.remaining:
        await engine.exits.move_stop(pid)
    await engine.exits.protect(pid)
