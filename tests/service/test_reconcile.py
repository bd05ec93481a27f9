"""Seed 003: trades made outside warden are found, recorded, and repaired within one pass."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import BTC, FAST, SOL, Harness
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import AlertKind
from warden.domain.events import EventKind
from warden.domain.orders import Order, OrderStatus
from warden.domain.position import Position, PositionStatus
from warden.domain.reconcile import Kind, Truth
from warden.domain.reports import OrderReport, OrderRequest
from warden.domain.values import ClientOrderId, OrderSide, OrderType


def stops(h: Harness, symbol=SOL) -> list:
    return [o for o in h.resting(symbol) if o.type is OrderType.STOP_MARKET]


async def reconcile_events(h: Harness) -> list:
    return [
        e
        for e in await h.store.list_events(limit=500)
        if e.kind is EventKind.RECONCILE and e.data.get("kind")
    ]


async def test_orphan_is_adopted_and_protected(harness: Harness) -> None:
    """A position opened by hand is adopted with origin external, given a stop, and alerted."""
    harness.sim.external_order(BTC, OrderSide.SELL, Decimal("0.01"))
    report = await harness.engine.reconcile()
    assert [f.discrepancy.kind for f in report.findings] == [Kind.ORPHAN]
    [adopted] = [p for p in harness.engine.ledger.active_positions() if p.symbol == BTC]
    assert adopted.origin == "external" and adopted.status is PositionStatus.PROTECTED
    [stop] = stops(harness, BTC)
    assert stop.qty == Decimal("0.01") and stop.side is OrderSide.BUY and stop.reduce_only
    assert any(a.kind is AlertKind.ORPHAN_ADOPTED for a in harness.notifier.alerts)
    [event] = await reconcile_events(harness)
    assert (
        event.data["kind"] == "orphan"
        and "adopted" in event.data["action"]
        and event.data["found"] == "-0.01"
    )
    assert (await harness.engine.reconcile()).findings == []


async def test_position_closed_by_hand_is_a_ghost_closed_as_manual(harness: Harness) -> None:
    """A position flattened outside warden is closed in the DB with reason manual; its exits are cancelled."""
    pos = await harness.open("long", usd="100")
    harness.sim.disconnect()  # warden does not see it happen
    harness.sim.external_order(SOL, OrderSide.SELL, pos.filled_qty, reduce_only=True)
    harness.sim.reconnect()
    await harness.engine.wait_idle()
    report = await harness.engine.reconcile()
    kinds = [f.discrepancy.kind for f in report.findings]
    assert Kind.GHOST in kinds or not harness.engine.ledger.positions[pos.id].is_active
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED and stored.exit_reason == "manual"
    assert harness.resting() == []


async def test_stop_fill_missed_by_the_stream_is_read_from_fills(harness: Harness) -> None:
    """A ghost whose stop filled while the stream was down closes with reason stop, its fill applied once."""
    pos = await harness.open("short", usd="100")
    harness.sim.disconnect()
    harness.sim.set_mark(SOL, pos.stop_price + Decimal("0.5"))
    harness.sim.reconnect()
    await harness.engine.wait_idle()
    await harness.engine.reconcile()
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED and stored.exit_reason == "stop"
    assert len(stored.applied_trades) == 2


async def test_stop_cancelled_by_hand_is_replaced(harness: Harness) -> None:
    """Warden's stop cancelled outside warden is put back at once, from the stream's cancel event."""
    pos = await harness.open("long", usd="100")
    [stop] = stops(harness)
    harness.sim.cancel_external(stop.client_order_id)
    await eventually(
        lambda: len(stops(harness)) == 1 and stops(harness)[0].client_order_id != stop.client_order_id,
        what="stop re-placed",
    )
    await harness.engine.wait_idle()
    assert stops(harness)[0].qty == pos.filled_qty
    assert harness.engine.ledger.positions[pos.id].status is PositionStatus.PROTECTED


async def test_stop_cancelled_while_stream_down_is_found_by_reconcile(harness: Harness) -> None:
    """With the cancel event lost, the next pass finds missing_stop and re-places it."""
    pos = await harness.open("short", usd="100")
    [stop] = stops(harness)
    harness.sim.disconnect()
    harness.sim.cancel_external(stop.client_order_id)
    report = await harness.engine.reconcile()
    assert [f.discrepancy.kind for f in report.findings] == [Kind.MISSING_STOP]
    [again] = stops(harness)
    assert again.qty == pos.filled_qty and again.client_order_id != stop.client_order_id
    harness.sim.reconnect()


async def test_partial_close_by_hand_resizes_position_and_stop(harness: Harness) -> None:
    """Half closed by hand: the record takes the exchange's size and the stop is resized to it."""
    pos = await harness.open("long", usd="100")
    harness.sim.disconnect()
    half = (pos.filled_qty / 2).quantize(Decimal("0.01"))
    harness.sim.external_order(SOL, OrderSide.SELL, half, reduce_only=True)
    report = await harness.engine.reconcile()
    assert [f.discrepancy.kind for f in report.findings] == [Kind.SIZE_MISMATCH]
    now = harness.engine.ledger.positions[pos.id]
    assert now.remaining == pos.filled_qty - half
    assert [s.qty for s in stops(harness)] == [now.remaining]
    harness.sim.reconnect()


async def test_stray_exit_order_is_cancelled(harness: Harness) -> None:
    """An exit order of warden's resting for a closed position is cancelled."""
    pos = await harness.open("long", usd="100")
    harness.sim.faults.unavailable_if = lambda req: req.type is not OrderType.MARKET  # no new exits
    from warden.service.commands import ClosePosition

    harness.sim.disconnect()
    harness.probe.cancels_vanish = True  # cancels answered "done" while the orders stay
    await harness.engine.close_position(ClosePosition(pos.id))
    harness.probe.cancels_vanish = False
    harness.sim.reconnect()
    assert len(harness.resting()) == 3  # stop + 2 TPs left behind
    report = await harness.engine.reconcile()
    assert {f.discrepancy.kind for f in report.findings} == {Kind.STRAY_ORDER}
    assert harness.resting() == []


async def test_a_snapshot_older_than_memory_is_read_again_not_repaired(harness: Harness) -> None:
    """TP1 fills and the stop is resized while a pass holds an older read of the exchange: the pass
    reads again instead of "repairing" memory back to the old size with synthetic fills (and its
    stop with it). Found on Drift by kill -9: two stops of 0.042 rested for a 0.042 position."""
    pos = await harness.open("long", usd="100")
    [old] = stops(harness)

    async def tp1_fills_and_the_stop_moves() -> None:
        harness.sim.set_mark(SOL, pos.tp1_price)
        await eventually(
            lambda: (
                [s.client_order_id for s in stops(harness)] != [old.client_order_id]
                and len(stops(harness)) == 1
            ),
            what="stop resized after TP1",
        )
        await harness.engine.wait_idle()

    harness.probe.after_open_orders = tp1_fills_and_the_stop_moves
    first = await harness.engine.reconcile()
    assert first.findings == []  # nothing differed: warden's own fills moved the world
    await harness.engine.wait_idle()
    assert not [t for t in harness.engine.ledger.positions[pos.id].applied_trades if t.startswith("sync-")]
    remaining = harness.engine.ledger.positions[pos.id].remaining
    assert remaining == pos.filled_qty - pos.tp1_qty
    assert [s.qty for s in stops(harness)] == [remaining]
    assert (await harness.engine.reconcile()).findings == []


async def test_a_stop_missing_from_a_lagging_list_is_looked_up_not_doubled(harness: Harness) -> None:
    """Drift's open orders are read from chain state and may lag the answers: a stop that rests
    but is not listed yet is looked up by its own id before it is taken for gone. Found by the
    Drift kill -9 test: a second stop of the same size was placed beside the first."""
    pos = await harness.open("long", usd="100")
    [stop] = stops(harness)
    harness.probe.unlisted.add(stop.client_order_id)
    report = await harness.engine.reconcile()
    await harness.engine.wait_idle()
    assert report.findings == []
    assert [s.client_order_id for s in stops(harness)] == [stop.client_order_id]
    current = harness.engine.ledger.current_stop(pos.id)
    assert current is not None and current.client_order_id == stop.client_order_id
    harness.probe.unlisted.clear()


async def test_an_orphan_left_alone_is_said_once_not_every_pass(
    store_url: str, sim: SimulatedExchange
) -> None:
    """orphan_policy=alert: a position opened by hand is left alone and the trader told. Told
    every pass (every 30 s), they would learn to ignore warden's alerts: it is said once, again
    when its size changes, and again if it comes back after it was closed. Each pass still
    reports it (`warden reconcile` shows it)."""
    h = await Harness(store_url, sim, config=replace(FAST, orphan_policy="alert")).start()
    try:

        def told() -> list[str]:
            return [a.message for a in h.notifier.alerts if a.kind is AlertKind.ORPHAN_FOUND]

        h.sim.external_order(BTC, OrderSide.SELL, Decimal("0.01"))
        for _ in range(3):
            report = await h.engine.reconcile()
            assert [f.discrepancy.kind for f in report.findings] == [Kind.ORPHAN]
        assert len(told()) == 1, told()
        assert len(await reconcile_events(h)) == 1
        assert h.engine.ledger.active_positions() == [] and stops(h, BTC) == []

        h.sim.external_order(BTC, OrderSide.SELL, Decimal("0.01"))  # it grew: said again
        await h.engine.reconcile()
        await h.engine.reconcile()
        assert len(told()) == 2 and "-0.02" in told()[1], told()

        h.sim.external_order(BTC, OrderSide.BUY, Decimal("0.02"))  # closed by hand
        assert (await h.engine.reconcile()).findings == []
        h.sim.external_order(BTC, OrderSide.SELL, Decimal("0.01"))  # and back
        await h.engine.reconcile()
        assert len(told()) == 3, told()
        assert len(await reconcile_events(h)) == 3
    finally:
        await h.stop()


async def resized_after_tp1(harness: Harness, pos: Position) -> Order:
    """TP1 fills (the stop is resized under the next id, s2) and a pass runs: the position's own
    stop then, checked to be the one stop resting, of the position's size, at its price."""
    assert pos.tp1_price is not None
    harness.sim.set_mark(SOL, pos.tp1_price - Decimal("0.01"))
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="TP1 filled")
    await harness.engine.wait_idle()
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    remaining = harness.engine.ledger.positions[pos.id].remaining
    own = harness.engine.ledger.current_stop(pos.id)
    assert own is not None
    resting = {o.client_order_id: o for o in stops(harness, SOL)}
    assert list(resting) == [own.client_order_id], resting
    assert resting[own.client_order_id].qty == own.qty == remaining
    assert resting[own.client_order_id].trigger_price == own.trigger_price
    return own


async def test_a_stop_found_under_its_id_on_other_terms_is_taken_as_the_exchange_has_it_and_resized(
    harness: Harness,
) -> None:
    """Chaos 1210:295 (PostgreSQL): a stop's resize was sent under its id with unknown outcomes,
    its intent's commit rolled back (a slow database), and the process died; the copy landed
    after the restart, and the new process, staging that id for its own stop (another size
    and price), found it resting by that id and took it as its own: memory said 0.16 at
    146.99, the exchange held 0.32 at 151.79. A pass found the stop's size wrong and resized it
    from memory's figures: nothing to do, the position left with a stop twice its size. A stop
    resting on other terms than memory's is taken as the exchange has it, then resized."""
    pos = await harness.open("short", usd="100")
    assert pos.status is PositionStatus.PROTECTED and pos.stop_price is not None
    stop = harness.engine.ledger.current_stop(pos.id)
    assert stop is not None
    # What a dead process sent under the id the next stop takes: other terms, resting.
    taken = stop.client_order_id.replace("-s1", "-s2")
    looser = pos.stop_price + Decimal("2")
    await harness.sim.place_order(
        OrderRequest(taken, SOL, stop.side, OrderType.STOP_MARKET, pos.filled_qty, looser, True)
    )
    own = await resized_after_tp1(harness, pos)
    assert own.trigger_price == harness.engine.ledger.positions[pos.id].stop_price, "at the plan's stop"


async def test_a_stop_found_under_its_id_tighter_than_the_plan_is_not_loosened_by_its_resize(
    harness: Harness,
) -> None:
    """As above (chaos 1210:295), but the dead process's copy rests tighter than the plan's stop
    (its move tightened it: a trail, a break-even, a watermark the database never got). Taken as
    the exchange has it, it was then resized at the plan's price: the stop on the exchange moved
    away from the market, which a stop never does. The resize keeps the tighter price."""
    pos = await harness.open("short", usd="100")
    assert pos.status is PositionStatus.PROTECTED and pos.stop_price is not None
    stop = harness.engine.ledger.current_stop(pos.id)
    assert stop is not None and pos.entry_price is not None and pos.tp1_price is not None
    taken = stop.client_order_id.replace("-s1", "-s2")
    tighter = (pos.entry_price + (pos.stop_price - pos.entry_price) / 2).quantize(Decimal("0.01"))
    await harness.sim.place_order(
        OrderRequest(taken, SOL, stop.side, OrderType.STOP_MARKET, pos.filled_qty, tighter, True)
    )
    own = await resized_after_tp1(harness, pos)
    assert own.trigger_price is not None and own.trigger_price <= tighter, "never loosened"
    assert harness.engine.ledger.positions[pos.id].stop_price == own.trigger_price


async def test_a_stray_under_an_id_the_position_has_not_reached_is_never_placed_again(
    harness: Harness,
) -> None:
    """`warden chaos --replay 291220366:2651`: a process moved a stop under the next id (s2), its
    write lost with it (the database locked, then a crash), the send's outcome unknown; it
    landed. The new process's pass cancelled it as a stray and, the position's stop missing,
    staged the same id for the stop it placed: the id named two orders on the exchange (Binance
    keeps client ids unique among open orders only), and the lookup of the new one found the
    cancelled one. The position's sequence moves past an id of its own it never recorded, so
    no id of it is ever placed twice."""
    pos = await harness.open("short", usd="100")
    assert pos.status is PositionStatus.PROTECTED and pos.stop_price is not None
    stop = harness.engine.ledger.current_stop(pos.id)
    assert stop is not None
    # The dead process's move: its own stop cancelled and the move under s2, resting (their
    # stream events long gone: this process learns of them from the pass).
    harness.sim.faults.drop_rate = 1.0
    taken = stop.client_order_id.replace("-s1", "-s2")
    await harness.sim.place_order(
        OrderRequest(taken, SOL, stop.side, OrderType.STOP_MARKET, pos.filled_qty, pos.stop_price, True)
    )
    await harness.sim.cancel_order(SOL, stop.client_order_id, True)
    await harness.engine.reconcile()
    harness.sim.faults.drop_rate = 0.0

    def protected() -> bool:
        current = harness.engine.ledger.current_stop(pos.id)
        stops = [o for o in harness.resting() if o.type is OrderType.STOP_MARKET]
        return (
            current is not None
            and current.status is OrderStatus.OPEN
            and [o.client_order_id for o in stops] == [current.client_order_id]
        )

    await eventually(protected, what="one stop rests, the position's own")
    placed = [o for o in harness.sim.core.orders() if o.client_order_id == taken]
    assert len(placed) == 1, f"{taken} placed {len(placed)} times"
    [resting] = [o for o in harness.resting() if o.type is OrderType.STOP_MARKET]
    current = harness.engine.ledger.current_stop(pos.id)
    assert current is not None and current.client_order_id == resting.client_order_id
    assert current.status is OrderStatus.OPEN


@pytest.mark.parametrize("left", ["pending", "recorded resting"])
async def test_a_stop_intent_left_pending_while_it_rests_is_taken_as_resting_by_the_next_pass(
    harness: Harness, left: str
) -> None:
    """Chaos 1212:39 (PostgreSQL): a start attempt failed and the next was begun while a stop
    of the first was still being sent (its send outlives the round that awaited it); it rested,
    but the round that would record its answer was gone, and the new attempt had left it to its
    sender. The intent stayed PENDING, the position OPEN with its stop resting, until
    `pending_deadline` (30 s) made it stale: an idle restart before then found it protected, so
    the exit state changed across a restart (I5). A pass takes an intent as resting when the
    exchange lists it and no send of it is under way (older than `order_timeout`), as a
    restart would. On the replay the stop's stream event had recorded it resting meanwhile, the
    position still OPEN: a pass that finds an OPEN position's stop resting as recorded, of its
    size, records the protection."""
    pos = await harness.open("long", usd="100")
    assert pos.status is PositionStatus.PROTECTED
    ledger = harness.engine.ledger
    stop = ledger.current_stop(pos.id)
    assert stop is not None
    # What the failed attempt left: the stop's intent written, its answer never recorded.
    sent = stop.created_at - timedelta(seconds=harness.engine.config.order_timeout + 1)
    pending = replace(stop, status=OrderStatus.PENDING, exchange_order_id=None, created_at=sent)
    current = ledger.positions[pos.id]
    orders = [pending] if left == "pending" else []
    await ledger.commit(current, current.transition(PositionStatus.OPEN), orders=orders)
    await harness.engine.reconcile()
    assert ledger.orders[stop.client_order_id].status is OrderStatus.OPEN
    assert ledger.positions[pos.id].status is PositionStatus.PROTECTED
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.PROTECTED


async def test_a_stop_partly_filled_is_not_taken_for_one_on_other_terms(harness: Harness) -> None:
    """A pass that reads a stop partly filled before its fill reaches memory finds the stop's
    size wrong (what rests unfilled is not the position's remaining). Taking 'the exchange's
    terms' as what is left unfilled wrote that as the order's size beside the fill recorded
    next: the order then counted filled before the exchange's was (a stop still resting that
    memory calls filled, and a second one placed beside it). The order's size is its size:
    a partial fill is the fill's to record, not a change of terms."""
    pos = await harness.open("long", usd="100")
    stop = harness.engine.ledger.current_stop(pos.id)
    assert stop is not None and stop.exchange_order_id is not None
    part = (stop.qty * Decimal("0.4")).quantize(Decimal("0.01"))
    report = OrderReport(
        stop.client_order_id,
        stop.exchange_order_id,
        SOL,
        stop.side,
        OrderType.STOP_MARKET,
        stop.qty,
        OrderStatus.OPEN,
        filled_qty=part,
        trigger_price=stop.trigger_price,
        reduce_only=True,
    )
    truth = Truth(await harness.engine.gateway.positions(), [report])
    await harness.engine.reconciler._stop_as_it_rests(pos.id, stop, truth)
    after = harness.engine.ledger.orders[stop.client_order_id]
    assert after.qty == stop.qty and after.trigger_price == stop.trigger_price
    assert not [e for e in await harness.store.list_events(limit=500) if "taken as the exchange" in e.message]


async def test_a_stop_taken_as_it_rests_looser_does_not_loosen_the_plan_across_a_crash(
    harness: Harness,
) -> None:
    """As in chaos 1210:295, the pass takes the stop resting under its id, looser than the plan,
    as the exchange has it, and the process dies before the resize that follows. Recovery took
    the resting stop's price as the position's stop price: the plan loosened across the
    restart (the stop resized at the looser price, not the plan's), which the pass without the
    crash does not do. Recovery takes a resting stop's price only when tighter (a move that
    rested just before a crash); a looser one is moved back to the plan."""
    pos = await harness.open("short", usd="100")
    assert pos.status is PositionStatus.PROTECTED and pos.stop_price is not None
    plan = pos.stop_price
    stop = harness.engine.ledger.current_stop(pos.id)
    assert stop is not None and pos.tp1_price is not None
    taken = stop.client_order_id.replace("-s1", "-s2")
    await harness.sim.place_order(
        OrderRequest(taken, SOL, stop.side, OrderType.STOP_MARKET, pos.filled_qty, plan + Decimal("2"), True)
    )
    harness.sim.set_mark(SOL, pos.tp1_price - Decimal("0.01"))  # TP1: the stop is resized (s2)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="TP1 filled")
    await harness.engine.wait_idle()

    async def dies(_: object) -> None:  # the process dies once the terms are taken
        raise asyncio.CancelledError

    harness.engine.exits.resize = dies  # type: ignore[assignment,method-assign]
    with contextlib.suppress(asyncio.CancelledError):
        await harness.engine.reconcile()
    assert harness.engine.ledger.orders[ClientOrderId(taken)].trigger_price == plan + Decimal("2")
    await harness.restart()
    await harness.engine.wait_idle()
    after = harness.engine.ledger.positions[pos.id]
    assert after.stop_price == plan, "the plan's stop, not the looser one found resting"
    own = harness.engine.ledger.current_stop(pos.id)
    assert own is not None and own.trigger_price == plan and own.qty == after.remaining
    assert [(o.qty, o.trigger_price) for o in stops(harness, SOL)] == [(after.remaining, plan)]
