"""The database failing at chosen moments of a position's life (targeted, not random)."""

from __future__ import annotations

from decimal import Decimal

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from warden.domain.events import EventKind
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType
from warden.service.commands import EngineState


def stops(h: Harness) -> list[object]:
    return [o for o in h.resting(SOL) if o.type is OrderType.STOP_MARKET]


async def test_tp1_with_the_database_down_then_a_restart_keeps_the_runner_protected(harness: Harness) -> None:
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1 applied")
    await harness.engine.wait_idle()
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
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1 applied")
    await harness.engine.wait_idle()
    harness.store.down = True
    harness.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    await harness.engine.wait_idle()
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
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1 applied")
    await harness.engine.wait_idle()
    harness.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    await harness.engine.wait_idle()
    harness.store.down = False
    await harness.engine.flush_pending()
    kinds = [e.kind for e in await harness.store.list_events(limit=500)]
    assert kinds.index(EventKind.STORE_DEGRADED) < kinds.index(EventKind.TP2_HIT), kinds
    ats = [e.at for e in await harness.store.list_events(limit=500)]
    assert ats == sorted(ats)
