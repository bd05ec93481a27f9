"""Exits attacked under stress: moves cut by hand, restarts between a fill and its resize, gaps.

Judged by what the simulated exchange holds (its position, its resting stops, its exposure
record), never by warden's own bookkeeping.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from tests.service.test_exit_stress import ahead, runner, stops


def covered(h: Harness) -> bool:
    """The exchange's position is covered by its resting stops, in full."""
    held = abs(h.exchange_qty())
    return held > 0 and sum((o.qty for o in stops(h)), Decimal(0)) >= held  # type: ignore[attr-defined]


async def test_a_new_stop_cancelled_by_hand_during_its_move_is_replaced(harness: Harness) -> None:
    """A trailing move: the new stop rests, and someone cancels it by hand while warden is still
    cancelling the old one. Warden then cancels the old one as planned: the exchange must not be
    left without a stop — the cancelled one is re-placed at once, as any stop cancelled by hand."""
    pos = await runner(harness)
    old = {o.client_order_id for o in stops(harness)}  # type: ignore[attr-defined]
    harness.sim.faults.rest_latency = 0.2
    harness.sim.set_mark(SOL, ahead(pos, "5"))
    await eventually(lambda: len(stops(harness)) == 2, what="the new stop rests beside the old")
    [new] = [o for o in stops(harness) if o.client_order_id not in old]  # type: ignore[attr-defined]
    harness.sim.cancel_external(new.client_order_id)  # type: ignore[attr-defined]
    harness.sim.faults.rest_latency = 0
    await harness.engine.wait_idle()
    await eventually(lambda: covered(harness), timeout=3.0, what="a stop covering the position")
    [exposure] = harness.sim.exposure()
    assert exposure.max_unprotected_seconds < harness.config.protection_window


async def test_a_trailing_move_whose_outcome_stayed_unknown_leaves_no_second_stop(harness: Harness) -> None:
    """A trailing move times out after the exchange took it and its lookups fail: its outcome is
    unknown and the stop may rest. The next move goes through; once the exchange answers again
    there must be one stop of the runner's size, not the unknown one resting beside it (a second
    reduce-only stop closes whatever else the symbol holds when it fires)."""
    pos = await runner(harness)
    inst = harness.engine.instruments[SOL]
    first = ahead(pos, "3")
    lost = inst.round_price(first * (1 - pos.plan.trail_pct))
    harness.sim.faults.timeout_after_execution_if = lambda req: req.trigger_price == lost
    harness.sim.faults.fail_queries = True
    harness.sim.set_mark(SOL, first)
    await eventually(lambda: len(stops(harness)) == 2, what="the move rests, its answer lost")
    await harness.engine.wait_idle()
    harness.sim.faults.timeout_after_execution_if = None
    harness.sim.faults.fail_queries = False
    second = ahead(pos, "6")
    want = inst.round_price(second * (1 - pos.plan.trail_pct))
    harness.sim.set_mark(SOL, second)
    await eventually(lambda: want in [o.trigger_price for o in stops(harness)], what="the next move rests")  # type: ignore[attr-defined]
    await harness.engine.wait_idle()
    assert [(o.qty, o.trigger_price) for o in stops(harness)] == [(harness.exchange_qty(), want)]  # type: ignore[attr-defined]


async def test_a_tp2_level_passed_while_tp1_still_executes_leaves_tp1_to_close_its_share(
    harness: Harness,
) -> None:
    """SOL 0.04: TP1 is 0.02, TP2 rounds to nothing, so passing TP2's level arms the runner with
    nothing to close. The mark gaps past both levels on a venue whose triggered orders execute a
    moment later (Drift's keeper and auction): TP1 has fired and is executing. Arming the runner
    must not count TP1 as hit and cancel it as no longer wanted: the exchange closes TP1's 0.02
    and the runner's stop covers the 0.02 left."""
    pos = await harness.open("long", SOL, usd=None, qty=Decimal("0.04"))
    assert (pos.tp1_qty, pos.tp2_qty) == (Decimal("0.02"), Decimal(0))
    assert pos.tp2_price is not None
    harness.sim.core.trigger_delay = timedelta(seconds=0.3)
    harness.sim.set_mark(SOL, pos.tp2_price + Decimal("1"))
    await eventually(lambda: harness.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    await eventually(lambda: not harness.sim.core.fills_due(), what="the fired TP1 executed")
    await harness.engine.wait_idle()
    assert harness.exchange_qty() == Decimal("0.02"), "TP1 closed its share on the exchange"
    await eventually(
        lambda: [o.qty for o in stops(harness)] == [Decimal("0.02")],  # type: ignore[attr-defined]
        what="the runner's stop sized to what is left",
    )
    p = harness.engine.ledger.positions[pos.id]
    assert (p.tp1_hit, p.tp2_hit, p.trailing_active, p.remaining) == (True, True, True, Decimal("0.02"))


async def test_a_mark_gapping_past_tp1_and_tp2_at_once_leaves_one_trailing_stop_for_the_runner(
    harness: Harness,
) -> None:
    """One tick from the entry to far past TP2: TP1 and TP2 fill in the same batch. What remains
    (the 20 % runner) has exactly one stop, its size, trailing that tick; a mark back against the
    runner (short of the stop) never loosens it."""
    pos = await harness.open("long", SOL, usd=None, qty=Decimal("1.03"))
    assert pos.tp2_price is not None
    gap = pos.tp2_price + Decimal("6")
    harness.sim.set_mark(SOL, gap)
    inst = harness.engine.instruments[SOL]
    want = inst.round_price(gap * (1 - pos.plan.trail_pct))
    await eventually(
        lambda: [(o.qty, o.trigger_price) for o in stops(harness)] == [(harness.exchange_qty(), want)],  # type: ignore[attr-defined]
        what="one stop for the runner at the trail of the gap",
    )
    await harness.engine.wait_idle()
    p = harness.engine.ledger.positions[pos.id]
    assert (p.tp1_hit, p.tp2_hit, p.trailing_active) == (True, True, True)
    assert p.remaining == harness.exchange_qty() == Decimal("1.03") - p.tp1_qty - p.tp2_qty
    harness.sim.set_mark(SOL, want + Decimal("0.5"))
    await harness.engine.wait_idle()
    assert [o.trigger_price for o in stops(harness)] == [want]  # type: ignore[attr-defined]
