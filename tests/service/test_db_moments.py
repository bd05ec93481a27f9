"""The database failing at chosen moments of a position's life (targeted, not random)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from warden.domain.events import EventKind
from warden.domain.position import Position, PositionStatus
from warden.domain.values import OrderType
from warden.service.commands import EngineState, NotHolder


def stops(h: Harness) -> list[object]:
    return [o for o in h.resting(SOL) if o.type is OrderType.STOP_MARKET]


async def test_tp1_with_the_database_down_then_a_restart_keeps_the_runner_protected(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    await _reach(harness, pos, "tp1")
    assert harness.engine.state is EngineState.DEGRADED
    h = await harness.restart()
    await h.engine.wait_idle()
    left = h.exchange_qty()
    assert 0 < left < pos.filled_qty
    assert [o.qty for o in stops(h)] == [left]  # type: ignore[attr-defined]
    mem = h.engine.ledger.positions[pos.id]
    assert mem.remaining == left and mem.tp1_hit
    stored = await h.store.get_position(pos.id)
    assert stored is not None and stored.remaining == left and stored.tp1_hit
    assert (await h.engine.reconcile()).findings == []


async def test_tp2_with_the_database_down_then_a_restart_keeps_the_runner(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    await _reach(harness, pos, "tp1")
    harness.store.down = True
    await _reach(harness, pos, "tp2")
    h = await harness.restart()
    await h.engine.wait_idle()
    left = h.exchange_qty()
    assert [o.qty for o in stops(h)] == [left]  # type: ignore[attr-defined]
    mem = h.engine.ledger.positions[pos.id]
    assert mem.remaining == left and mem.tp2_hit and mem.trailing_active
    assert (await h.engine.reconcile()).findings == []


async def test_a_stop_fired_with_the_database_down_then_a_restart(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.5"))
    await eventually(
        lambda: harness.engine.ledger.positions[pos.id].status is PositionStatus.CLOSED, what="closed"
    )
    await harness.engine.wait_idle()
    h = await harness.restart()
    await h.engine.wait_idle()
    assert h.exchange_qty() == 0
    assert h.resting() == []
    stored = await h.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED
    assert stored.exit_reason == "stop", stored.exit_reason


async def test_events_of_an_outage_are_written_in_the_order_they_happened(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    await _reach(harness, pos, "tp1")
    await _reach(harness, pos, "tp2")
    harness.store.down = False
    await harness.engine.flush_pending()
    kinds = [e.kind for e in await harness.store.list_events(limit=500)]
    assert kinds.index(EventKind.STORE_DEGRADED) < kinds.index(EventKind.TP2_HIT), kinds
    ats = [e.at for e in await harness.store.list_events(limit=500)]
    assert ats == sorted(ats)


async def test_kill_flatten_with_the_database_down_closes_and_is_stored_later(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    report = await harness.engine.kill(flatten=True, reason="test")
    await harness.engine.wait_idle()
    assert [p.id for p in report.closed] == [pos.id], report
    assert harness.exchange_qty() == 0 and harness.resting() == []
    harness.store.down = False
    await harness.engine.flush_pending()
    await harness.engine.controls.flush()
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED
    assert (await harness.store.load_controls()).killed
    h = await harness.restart()
    assert h.engine.controls.state.killed
    assert (await h.engine.reconcile()).findings == []


async def test_kill_flatten_whose_commits_land_then_time_out(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.land_then_time_out = True
    await harness.engine.kill(flatten=True, reason="test")
    await harness.engine.wait_idle()
    assert harness.exchange_qty() == 0 and harness.resting() == []
    harness.store.land_then_time_out = False
    await harness.engine.flush_pending()
    assert harness.engine.state is EngineState.READY
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED
    assert stored.version == harness.engine.ledger.positions[pos.id].version
    kinds = [e.kind for e in await harness.store.list_events(pos.id, limit=500)]
    assert kinds.count(EventKind.POSITION_CLOSED) == 1, kinds


async def test_an_outside_reduce_applied_with_the_database_down_then_a_restart(harness: Harness) -> None:
    from warden.domain.values import OrderSide

    pos = await harness.open("long", usd="100")
    harness.store.down = True
    harness.sim.external_order(SOL, OrderSide.SELL, pos.filled_qty / 2, reduce_only=True)
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    left = harness.exchange_qty()
    assert harness.engine.ledger.positions[pos.id].remaining == left
    assert [o.qty for o in stops(harness)] == [left]  # type: ignore[attr-defined]
    h = await harness.restart()
    await h.engine.wait_idle()
    assert h.engine.ledger.positions[pos.id].remaining == left
    assert [o.qty for o in stops(h)] == [left]  # type: ignore[attr-defined]
    tps = sum((o.qty for o in h.resting() if o.type is not OrderType.STOP_MARKET), Decimal(0))
    assert tps <= left
    assert (await h.engine.reconcile()).findings == []


async def test_a_refused_stop_replaced_by_a_close_with_the_database_down(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    [stop] = stops(harness)
    harness.store.down = True
    harness.sim.faults.reject_if = lambda req: req.type is OrderType.STOP_MARKET
    harness.sim.cancel_external(stop.client_order_id)  # type: ignore[attr-defined]
    await eventually(lambda: harness.exchange_qty() == 0, what="closed at market")
    await eventually(lambda: harness.resting() == [], what="exits cancelled")
    await harness.engine.wait_idle()
    harness.sim.faults.reject_if = None
    assert harness.engine.ledger.positions[pos.id].status is PositionStatus.CLOSED
    h = await harness.restart()
    await h.engine.wait_idle()
    stored = await h.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED
    assert h.exchange_qty() == 0 and h.resting() == []
    assert (await h.engine.reconcile()).findings == []


async def test_queued_writes_refused_by_a_takeover_stand_the_engine_down(
    harness: Harness, store_url: str
) -> None:
    from warden.adapters.db.lease import lease_for

    first = lease_for(store_url, "default")
    epoch = await first.try_acquire()
    assert epoch is not None
    harness.store.inner.set_epoch("default", epoch)  # type: ignore[attr-defined]
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    await _reach(harness, pos, "tp1")
    await first.release()
    second = lease_for(store_url, "default")
    assert await second.try_acquire() == epoch + 1  # another engine took the account meanwhile
    try:
        stored_before = await harness.store.get_position(pos.id)
        harness.store.down = False
        with pytest.raises(NotHolder):
            await harness.engine.flush_pending()
        await eventually(lambda: harness.engine.state is EngineState.READ_ONLY, what="stood down")
        await harness.engine.wait_idle()
        sent = len(harness.sim.core.open_orders(SOL))
        [stop] = stops(harness)
        harness.sim.cancel_external(stop.client_order_id)  # type: ignore[attr-defined]
        harness.sim.set_mark(SOL, pos.tp2_price)
        await harness.engine.wait_idle()
        assert len(harness.sim.core.open_orders(SOL)) <= sent - 1, "the fenced engine acted"
        assert await harness.store.get_position(pos.id) == stored_before
    finally:
        await second.release()


async def test_queued_events_whose_write_landed_unanswered_are_written_once(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    await _reach(harness, pos, "tp1")
    harness.store.down = False
    harness.store.land_then_time_out = True  # the database is back, its answers are lost
    for _ in range(3):
        await harness.engine.flush_pending()
    harness.store.land_then_time_out = False
    await harness.engine.flush_pending()
    assert harness.engine.state is EngineState.READY
    kinds = [e.kind for e in await harness.store.list_events(limit=500)]
    assert kinds.count(EventKind.TP1_HIT) == 1, kinds
    assert kinds.count(EventKind.STORE_DEGRADED) == 1, kinds
    assert kinds.count(EventKind.STORE_RECOVERED) == 1, kinds


async def test_a_trailing_move_with_the_database_down_then_a_restart_never_loosens_the_stop(
    harness: Harness,
) -> None:
    pos = await harness.open("long", usd="100")
    assert pos.tp1_price is not None and pos.tp2_price is not None
    harness.sim.set_mark(SOL, pos.tp1_price)
    await _reach(harness, pos, "tp2")
    harness.store.down = True
    peak = pos.tp2_price + Decimal("3")
    harness.sim.set_mark(SOL, peak)
    trail = harness.engine.instruments[SOL].round_price(peak * (1 - Decimal("0.005")))
    await eventually(
        lambda: [o.trigger_price for o in stops(harness)] == [trail],  # type: ignore[attr-defined]
        what="the trailing stop moved",
    )
    await harness.engine.wait_idle()
    h = await harness.restart()
    await h.engine.wait_idle()
    left = h.exchange_qty()
    [stop] = stops(h)
    assert stop.qty == left  # type: ignore[attr-defined]
    assert stop.trigger_price >= trail, "the stop was loosened by the restart"  # type: ignore[attr-defined]
    mem = h.engine.ledger.positions[pos.id]
    assert mem.trailing_active and mem.stop_price >= trail
    assert (await h.engine.reconcile()).findings == []


async def test_a_restart_while_the_database_is_down_guards_then_recovers_to_one_stop(
    harness: Harness,
) -> None:
    import asyncio

    pos = await harness.open("long", usd="100")
    harness.store.down = True
    harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1 applied")
    await harness.engine.wait_idle()
    await harness.stop()  # kill -9 with the TP1 writes queued
    [stop] = stops(harness)
    harness.sim.cancel_external(stop.client_order_id)  # type: ignore[attr-defined]
    h = await harness.start(ready=False)
    h.store.down = True
    starting = asyncio.ensure_future(h.engine.start_with_retry())
    left = h.exchange_qty()
    await eventually(lambda: [o.qty for o in stops(h)] == [left], what="a guard stop")  # type: ignore[attr-defined]
    h.store.down = False
    await asyncio.wait_for(starting, 10)
    await h.engine.wait_idle()
    await h.engine.reconcile()
    await h.engine.wait_idle()
    [real] = stops(h)
    assert real.qty == left  # type: ignore[attr-defined]
    assert h.engine.ledger.current_stop(pos.id).client_order_id == real.client_order_id  # type: ignore[union-attr,attr-defined]
    mem = h.engine.ledger.positions[pos.id]
    assert mem.remaining == left and mem.tp1_hit
    tps = sum((o.qty for o in h.resting() if o.type is not OrderType.STOP_MARKET), Decimal(0))
    assert tps <= left
    [exposure] = h.sim.core.exposure(h.sim._now())
    assert exposure.unprotected_seconds == 0
    assert (await h.engine.reconcile()).findings == []


def _same(a: object, b: object) -> list[str]:
    fields = (
        "status",
        "remaining",
        "tp1_hit",
        "tp2_hit",
        "trailing_active",
        "stop_price",
        "version",
        "exit_reason",
    )
    return [f for f in fields if getattr(a, f) != getattr(b, f)]


async def _reach(harness: Harness, pos: Position, moment: str) -> None:
    """Make `moment` happen to `pos` (the fault is already on)."""
    from warden.domain.values import OrderSide

    assert pos.tp1_price is not None and pos.tp2_price is not None and pos.stop_price is not None
    mem = harness.engine.ledger.positions
    if moment == "tp1":
        harness.sim.set_mark(SOL, pos.tp1_price)
        await eventually(lambda: mem[pos.id].tp1_hit, what="tp1")
    elif moment == "tp2":
        harness.sim.set_mark(SOL, pos.tp2_price)
        await eventually(lambda: mem[pos.id].trailing_active, what="armed")
    elif moment == "trail":
        before = mem[pos.id].stop_price
        harness.sim.set_mark(SOL, pos.tp2_price + Decimal("3"))
        await eventually(lambda: mem[pos.id].stop_price != before, what="moved")
    elif moment == "stop_fired":
        harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.5"))
        await eventually(lambda: mem[pos.id].status is PositionStatus.CLOSED, what="closed")
    else:
        harness.sim.external_order(SOL, OrderSide.SELL, pos.filled_qty / 2, reduce_only=True)
        await harness.engine.reconcile()
    await harness.engine.wait_idle()


@pytest.mark.parametrize("fault", ["answer_lost", "down", "down_then_restart"])
@pytest.mark.parametrize("moment", ["tp1", "tp2", "trail", "stop_fired", "outside_reduce"])
async def test_a_fault_at_a_moment_leaves_exchange_db_and_memory_in_agreement(
    harness: Harness, moment: str, fault: str
) -> None:
    pos = await harness.open("long", usd="100")
    if moment in ("tp2", "trail"):
        await _reach(harness, pos, "tp1")
    if moment == "trail":
        await _reach(harness, pos, "tp2")
    if fault == "answer_lost":
        harness.store.land_then_time_out = True
    else:
        harness.store.down = True
    await _reach(harness, pos, moment)
    harness.store.land_then_time_out = harness.store.down = False
    if fault == "down_then_restart":
        harness = await harness.restart()
        await harness.engine.wait_idle()
    else:
        await harness.engine.flush_pending()
    assert harness.engine.state is EngineState.READY
    mem = harness.engine.ledger.positions[pos.id]
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and _same(stored, mem) == [], (stored, mem)
    left = harness.exchange_qty()
    assert mem.remaining == left
    if left:
        assert [o.qty for o in stops(harness)] == [left]  # type: ignore[attr-defined]
    else:
        assert harness.resting() == []
    events = await harness.store.list_events(pos.id, limit=500)
    # An event written twice is the same event twice, its time included: two events may say the
    # same thing at different times ("stop resting after 0.015s" at the open and again after the
    # restart's repair).
    seen = [(e.at, e.kind, e.message) for e in events]
    assert len(seen) == len(set(seen)), "\n".join(f"{e.at} {e.kind} {e.message}" for e in events)
    assert (await harness.engine.reconcile()).findings == []


async def test_a_close_signal_with_the_database_down_closes_and_is_still_acted_on_once(
    harness: Harness,
) -> None:
    """With the database down a close signal still closes (an exit is not held up by an outage);
    its binding is kept in memory, so the signal resent closes nothing more."""
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    first = await harness.engine.close_by_signal(SOL, "exit-1")
    assert (first.resent, first.closed, [p.id for p in first.positions]) == (False, True, [pos.id])
    await eventually(lambda: harness.exchange_qty() == 0)
    again = await harness.engine.close_by_signal(SOL, "exit-1")
    assert (again.resent, again.closed, [p.id for p in again.positions]) == (True, False, [pos.id])


async def test_a_close_signal_bound_in_an_outage_still_binds_after_the_database_is_back_and_a_restart(
    harness: Harness,
) -> None:
    """A close signal acted on while the database was down, then the database back, a new entry
    and a restart: the signal resent (a relay retrying) closes nothing, the new entry stays open.
    The binding kept in memory is stored once the database answers again (it was lost with the
    process, and the resent signal closed the new position)."""
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    first = await harness.engine.close_by_signal(SOL, "exit-1")
    assert [p.id for p in first.positions] == [pos.id]
    await eventually(lambda: harness.exchange_qty() == 0)
    await harness.engine.wait_idle()
    harness.store.down = False
    await harness.engine.flush_pending()
    h = await harness.restart()
    newer = await h.open("long", usd="100")
    again = await h.engine.close_by_signal(SOL, "exit-1")
    assert (again.resent, again.closed, [p.id for p in again.positions]) == (True, False, [pos.id])
    assert h.engine.ledger.positions[newer.id].is_active
    assert h.exchange_qty() == newer.filled_qty


async def test_a_close_signal_to_an_engine_whose_lease_was_taken_closes_nothing_and_stands_it_down(
    harness: Harness, store_url: str
) -> None:
    """The database refuses a stale engine's close binding (fenced): the engine stands down as on
    any fenced write and says it is not the holder (NotHolder, 503 nothing sent); the close signal
    closes nothing. (FencedOut came out raw: a 500 internal error, and the engine carried on.)"""
    from warden.adapters.db.lease import lease_for

    first = lease_for(store_url, "default")
    epoch = await first.try_acquire()
    assert epoch is not None
    harness.store.inner.set_epoch("default", epoch)  # type: ignore[attr-defined]
    pos = await harness.open("long", usd="100")
    await first.release()
    second = lease_for(store_url, "default")
    assert await second.try_acquire() == epoch + 1  # another engine took the account meanwhile
    try:
        with pytest.raises(NotHolder):
            await harness.engine.close_by_signal(SOL, "exit-1")
        await eventually(lambda: harness.engine.state is EngineState.READ_ONLY, what="stood down")
        assert harness.exchange_qty() == pos.filled_qty
    finally:
        await second.release()
