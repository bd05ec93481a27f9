"""Exits under stress (issue 8): rejected moves, stale stops, tiny take-profits, outside trades.

Judged by what the simulated exchange holds: its position, its resting orders
and its record of how long a position went without a covering stop.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import FAST, SOL, Harness, driven, engine_on, looping_engine, moments
from warden.adapters.clock import FakeClock
from warden.adapters.db.store import open_store
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import AlertKind
from warden.domain.events import EventKind
from warden.domain.orders import OrderStatus
from warden.domain.position import Position
from warden.domain.reconcile import Kind
from warden.domain.reports import OrderRequest
from warden.domain.values import OrderRole, OrderType, Side
from warden.ports import ExchangeError
from warden.service.commands import ClosePosition, OpenPosition


def stops(h: Harness) -> list[object]:
    return [o for o in h.resting() if o.type is OrderType.STOP_MARKET]


def stop_qty(h: Harness) -> Decimal:
    return sum((o.qty for o in h.resting() if o.type is OrderType.STOP_MARKET), Decimal(0))


def tp_qty(h: Harness) -> Decimal:
    return sum((o.qty for o in h.resting() if o.type is OrderType.TAKE_PROFIT_MARKET), Decimal(0))


async def runner(h: Harness, side: str = "long", qty: str = "1") -> Position:
    """A position past TP1 and TP2: the runner trails."""
    pos = await h.open(side, SOL, usd=None, qty=Decimal(qty))
    h.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
    await eventually(lambda: h.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    h.sim.set_mark(SOL, pos.tp2_price)  # type: ignore[arg-type]
    await eventually(lambda: h.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    await h.engine.wait_idle()
    return h.engine.ledger.positions[pos.id]


def ahead(pos: Position, by: str) -> Decimal:
    """A price `by` beyond TP2 in the position's favour."""
    assert pos.tp2_price is not None
    return pos.tp2_price + Decimal(by) * pos.side.sign


async def test_a_trailing_move_rejected_as_already_through_closes_the_runner(harness: Harness) -> None:
    """The new trailing stop is refused because the market already passed it (-2021): the runner is
    closed at market at once, alerted, instead of giving the move back down to the old stop."""
    for side in ("long", "short"):
        pos = await runner(harness, side)
        peak = ahead(pos, "10")
        harness.sim.faults.rest_latency = 0.3
        harness.sim.set_mark(SOL, peak)
        await eventually(
            lambda p=pos: any(
                o.role is OrderRole.STOP and o.status is OrderStatus.PENDING
                for o in harness.engine.ledger.orders_of(p.id)
            ),
            what="move in flight",
        )
        harness.sim.set_mark(SOL, peak - Decimal("2") * pos.side.sign)  # through the wanted stop
        await eventually(lambda p=pos: not harness.engine.ledger.positions[p.id].is_active, what="closed")
        harness.sim.faults.rest_latency = 0
        await harness.engine.wait_idle()
        closed = harness.engine.ledger.positions[pos.id]
        assert closed.exit_reason == "trailing_stop"
        assert harness.exchange_qty() == 0 and harness.resting() == []
        assert any(a.kind is AlertKind.RUNNER_CLOSED for a in harness.notifier.alerts)
        assert not [o for o in harness.engine.ledger.orders_of(pos.id) if o.status is OrderStatus.PENDING]


async def test_a_refused_move_keeps_the_old_stop_and_later_moves_still_work(harness: Harness) -> None:
    """A move refused for another reason is final (REJECTED): the old stop keeps protecting, the
    position says so, and the next move goes through — the runner is never frozen."""
    pos = await runner(harness)
    first = ahead(pos, "5")
    refused = harness.engine.instruments[SOL].round_price(first * (1 - Decimal("0.005")))
    harness.sim.faults.reject_if = lambda req: req.trigger_price == refused
    harness.sim.set_mark(SOL, first)
    await eventually(
        lambda: any(
            o.role is OrderRole.STOP and o.status is OrderStatus.REJECTED
            for o in harness.engine.ledger.orders_of(pos.id)
        ),
        what="refused move recorded",
    )
    await harness.engine.wait_idle()
    view = await harness.engine.get_position(pos.id)
    assert view.stop_resting and stop_qty(harness) == view.position.remaining
    harness.sim.faults.reject_if = None
    second = ahead(pos, "8")
    harness.sim.set_mark(SOL, second)
    want = harness.engine.instruments[SOL].round_price(second * (1 - Decimal("0.005")))
    await eventually(lambda: [s.trigger_price for s in stops(harness)] == [want], what="next move rests")  # type: ignore[attr-defined]
    report = await harness.engine.reconcile()
    assert report.findings == []


@pytest.mark.parametrize("side", ["long", "short"])
async def test_a_stale_stop_that_closes_another_position_is_attributed(harness: Harness, side: str) -> None:
    """Stacking on: A's old full-size stop stays (its resize refused); B opens; the stale stop fills
    the whole size. A closes with what it had; the rest reduced B and is recorded on B (I2), B's
    stop is re-sized to what B has left, and warden agrees with the exchange. Long and short."""
    await harness.stop()
    harness.config = replace(harness.config, allow_stacking=True)
    await harness.start()
    a = await harness.open(side, SOL, usd=None, qty=Decimal("1"))
    assert a.stop_price is not None
    harness.sim.faults.reject_if = lambda req: (
        a.id in req.client_order_id and req.type is OrderType.STOP_MARKET
    )
    harness.sim.set_mark(SOL, a.tp1_price)  # type: ignore[arg-type]
    await eventually(lambda: harness.engine.ledger.positions[a.id].tp1_hit, what="tp1")
    await harness.engine.wait_idle()
    assert harness.engine.ledger.positions[a.id].remaining == Decimal("0.4")
    assert stop_qty(harness) == Decimal("1"), "A's stop stays at its old size"
    harness.sim.set_mark(SOL, a.entry_price)  # type: ignore[arg-type]
    b = await harness.open(side, SOL, usd=None, qty=Decimal("1"))
    harness.sim.faults.reject_if = None
    harness.sim.set_mark(SOL, a.stop_price - Decimal("0.05") * a.side.sign)
    await eventually(lambda: not harness.engine.ledger.positions[a.id].is_active, what="A closed")

    def held() -> list[Position]:
        return [p for p in harness.engine.ledger.active_positions() if p.symbol == SOL]

    await eventually(
        lambda: sum((p.remaining * p.side.sign for p in held()), Decimal(0)) == harness.exchange_qty(),
        what="agreement",
    )
    await harness.engine.wait_idle()
    assert any(a.kind is AlertKind.FILL_MISMATCH for a in harness.notifier.alerts)
    fills_b = [e for e in await harness.store.list_events(b.id, 100) if e.data.get("trade_id", "").count(":")]
    assert fills_b, "the stale stop's excess is recorded on B"
    if held():
        assert stop_qty(harness) == held()[0].remaining
    assert (await harness.engine.reconcile()).findings == []


async def _arms_and_trails(harness: Harness, pos: Position) -> None:
    """Past the TP2 level the runner arms; a new peak moves its stop to 0.5 % behind it."""
    harness.sim.set_mark(SOL, ahead(pos, "0.5"))
    await eventually(lambda: harness.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    peak = ahead(pos, "3")
    harness.sim.set_mark(SOL, peak)
    want = harness.engine.instruments[SOL].round_price(peak * (1 - pos.side.sign * Decimal("0.005")))
    await eventually(lambda: [s.trigger_price for s in stops(harness)] == [want], what="trailing")


async def test_a_runner_whose_tp2_rounds_to_zero_still_trails(harness: Harness) -> None:
    """SOL 0.04: TP1 0.02, TP2 rounds to nothing. Passing the TP2 level arms the runner all the same."""
    for side in ("long", "short"):
        pos = await harness.open(side, SOL, usd=None, qty=Decimal("0.04"))
        assert pos.tp2_qty == 0
        harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
        await eventually(lambda p=pos: harness.engine.ledger.positions[p.id].tp1_hit, what="tp1")
        await _arms_and_trails(harness, pos)
        await harness.engine.close_position(ClosePosition(pos.id))
        await harness.engine.wait_idle()
        harness.sim.set_mark(SOL, pos.entry_price)  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["long", "short"])
async def test_an_outside_reduce_after_tp1_resizes_every_exit_and_keeps_pnl(
    harness: Harness, side: str
) -> None:
    """After TP1 (0.4 left) a manual reduce of 0.3: stop 0.1, TP2 at most 0.1, and the manual
    trade's price and fee are in realized PnL. Long and short."""
    pos = await harness.open(side, SOL, usd=None, qty=Decimal("1"))
    harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await harness.engine.wait_idle()
    harness.sim.external_order(SOL, pos.side.exit_side, Decimal("0.3"), reduce_only=True)
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    now = harness.engine.ledger.positions[pos.id]
    assert now.remaining == Decimal("0.1")
    assert harness.exchange_qty() == Decimal("0.1") * pos.side.sign
    assert stop_qty(harness) == Decimal("0.1") and tp_qty(harness) <= Decimal("0.1")
    fills = await harness.sim.fetch_fills(SOL, None)
    assert now.entry_price is not None
    exits = [f for f in fills if f.side is pos.side.exit_side]
    assert len(exits) == 2, "TP1 and the manual trade"
    expected = sum(((f.price - now.entry_price) * f.qty * pos.side.sign for f in exits), Decimal(0)) - sum(
        (f.fee for f in fills), Decimal(0)
    )
    assert now.realized_pnl == expected
    assert (await harness.engine.reconcile()).findings == []


@pytest.mark.parametrize("side", ["long", "short"])
async def test_after_a_crash_mid_breakeven_the_stop_price_is_the_exchanges(
    harness: Harness, side: str
) -> None:
    """The break-even stop rested but warden died before recording it: after restart warden's stop
    price is the one resting on the exchange, not the old one. Long and short."""
    await harness.stop()
    harness.config = replace(harness.config, plan=replace(harness.config.plan, breakeven_after_tp1=True))
    await harness.start()
    pos = await harness.open(side, SOL, usd=None, qty=Decimal("1"))
    assert pos.entry_price is not None
    entry = harness.engine.instruments[SOL].round_price(pos.entry_price)
    harness.sim.faults.timeout_after_execution_if = lambda req: req.trigger_price == entry
    harness.sim.faults.fail_queries = True
    harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
    await eventually(
        lambda: any(o.trigger_price == entry for o in stops(harness)),
        what="break-even stop rests",  # type: ignore[attr-defined]
    )
    harness.sim.faults.timeout_after_execution_if = None
    harness.sim.faults.fail_queries = False
    await harness.restart()
    now = harness.engine.ledger.positions[pos.id]
    assert now.stop_price == entry
    assert [s.trigger_price for s in stops(harness)] == [entry]  # type: ignore[attr-defined]
    assert (await harness.engine.reconcile()).findings == []


async def test_tp2_then_the_original_stop_while_down_is_a_plain_stop(harness: Harness) -> None:
    """After TP1 (the stop re-sized), TP2 and then that stop fill while warden is down: on restart
    the position is closed as `stop` (nothing trailed), and its MFE counts the TP2 fill's price."""
    pos = await harness.open("long", SOL, usd=None, qty=Decimal("1"))
    assert pos.tp2_price is not None and pos.entry_price is not None and pos.stop_price is not None
    harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await eventually(lambda: stop_qty(harness) == Decimal("0.4"), what="the stop re-sized")
    await harness.engine.wait_idle()
    await harness.stop()
    harness.sim.set_mark(SOL, pos.tp2_price)
    harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.05"))
    assert harness.exchange_qty() == 0
    harness.drop_stream()
    await harness.start()
    await harness.engine.wait_idle()
    closed = await harness.store.get_position(pos.id)
    assert closed is not None and closed.status.value == "closed"
    assert closed.exit_reason == "stop", closed.exit_reason
    assert closed.mfe >= pos.tp2_price - pos.entry_price


async def test_a_refused_trailing_move_is_not_retried_in_a_spin(harness: Harness) -> None:
    """Chaos 2049494027:5067: with every stop refused, one mark made the trailing move go round
    100 times at once, each round a refused order under a new id (the move re-runs while the
    runner still wants to trail). A refused move ends that move; the next mark may try again."""
    pos = await runner(harness)
    tried: list[str] = []

    def refuse(request: object) -> bool:
        if getattr(request, "type", None) is OrderType.STOP_MARKET:
            tried.append(getattr(request, "client_order_id", ""))
            return True
        return False

    harness.sim.faults.reject_if = refuse
    harness.sim.set_mark(SOL, ahead(pos, "5"))
    await eventually(lambda: bool(tried), what="the move tried")
    await eventually(lambda: harness.queued_events() == 0, what="the engine took the mark")
    await harness.engine.wait_idle()
    assert len(tried) <= 2, tried
    view = await harness.engine.get_position(pos.id)
    assert view.stop_resting and stop_qty(harness) == view.position.remaining


async def test_a_tp1_that_rounds_to_zero_is_marked_hit_at_its_level_and_the_runner_still_trails(
    harness: Harness,
) -> None:
    """Issue 8.4: with TP1 10 % of SOL 0.04 (0.004 -> 0) and TP2 20 % (0.008 -> 0) no take-profit
    can be placed; passing TP1's level marks it hit (nothing closes), passing TP2's arms the
    runner, and the trailing stop follows the peak for the whole size. Long and short."""
    await harness.stop()
    harness.config = replace(harness.config, plan=replace(harness.config.plan, tp1_fraction=Decimal("0.1")))
    await harness.start()
    for side in ("long", "short"):
        pos = await harness.open(side, SOL, usd=None, qty=Decimal("0.04"))
        assert (pos.tp1_qty, pos.tp2_qty) == (0, 0)
        assert tp_qty(harness) == 0
        harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
        await eventually(lambda p=pos: harness.engine.ledger.positions[p.id].tp1_hit, what="tp1 marked hit")
        assert harness.exchange_qty() * pos.side.sign == Decimal("0.04")
        await _arms_and_trails(harness, pos)
        assert stop_qty(harness) == Decimal("0.04")
        await harness.engine.close_position(ClosePosition(pos.id))
        await harness.engine.wait_idle()
        harness.sim.set_mark(SOL, pos.entry_price)  # type: ignore[arg-type]


async def test_a_tp2_left_behind_by_a_closed_position_is_cancelled_with_the_close(harness: Harness) -> None:
    """Issue 8 (low): after TP1, the re-sized stop fills; the position is closed and its TP2 does
    not stay resting on the exchange (it stayed 1-7 s): gone by the time the close is recorded."""
    for side in ("long", "short"):
        pos = await harness.open(side, SOL, usd=None, qty=Decimal("1"))
        assert pos.stop_price is not None and pos.entry_price is not None
        harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
        await eventually(lambda p=pos: harness.engine.ledger.positions[p.id].tp1_hit, what="tp1")
        await eventually(lambda: stop_qty(harness) == Decimal("0.4"), what="the stop re-sized")
        await harness.engine.wait_idle()
        assert tp_qty(harness) == Decimal("0.2")
        harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.05") * pos.side.sign)
        await eventually(lambda p=pos: not harness.engine.ledger.positions[p.id].is_active, what="closed")
        stored = await harness.store.get_position(pos.id)
        assert stored is not None and stored.status.value == "closed"
        await eventually(
            lambda: harness.resting() == [], timeout=1.0, what="the TP2 cancelled with the close"
        )
        await harness.engine.wait_idle()
        kinds = [e.kind for e in await harness.store.list_events(pos.id, 100)]
        closed_at = kinds.index(EventKind.POSITION_CLOSED)
        assert EventKind.STOP_MOVED not in kinds[closed_at:], kinds
        assert EventKind.PROTECTION_LOST not in kinds, kinds
        harness.sim.set_mark(SOL, pos.entry_price)


@pytest.mark.parametrize("latency", [0.0, 0.02])
@pytest.mark.parametrize("entry", ["answered filled", "acknowledged, filled later"])
async def test_the_take_profits_of_a_position_whose_stop_is_refused_never_reach_the_exchange(
    harness: Harness, entry: str, latency: float
) -> None:
    """Stacking on, a second long on SOL: the exchange refuses its stop, so it is closed at once.
    Its take-profits went out beside the stop and rested, reduce-only, until the close was
    recorded and they were cancelled (seen in chaos 565405691:3027's trace): a TP1 triggered
    meanwhile would have closed 60 % of the first long's size. Take-profits go out only once the
    position's stop rests; when it does not, they are not sent. Entry answered filled (the stop
    goes out on the answer) and acknowledged then filled on the stream (the stop goes out with
    the take-profits' intents). With REST latency the stop's refusal is recorded before the
    take-profits' (`_record_later`), and those, never sent, must not be told as refused while the
    stop rests: the trader would read that the position is protected."""
    h = harness
    await h.stop()
    h.config = replace(h.config, allow_stacking=True)
    await h.start()
    first = await h.open("long", SOL, usd=None, qty=Decimal("1"))
    assert first.status.value == "protected"
    h.sim.faults.reject_if = lambda request: request.type is OrderType.STOP_MARKET
    h.sim.faults.rest_latency = latency
    if entry != "answered filled":
        h.sim.faults.ack_only_if = lambda request: not request.reduce_only
        h.sim.faults.fill_delay = 0.05
    second = await h.open("long", SOL, usd=None, qty=Decimal("1"))
    await eventually(lambda: not h.engine.ledger.positions[second.id].is_active, what="the second closed")
    await h.engine.wait_idle()
    tps = [
        o.client_order_id
        for o in h.engine.ledger.orders_of(second.id)
        if o.role in (OrderRole.TP1, OrderRole.TP2)
    ]
    assert tps, "the take-profits' intents were staged"
    reached = [cid for cid in tps if h.sim.core.order(cid) is not None]
    assert reached == [], f"take-profits of a position being closed reached the exchange: {reached}"
    assert h.exchange_qty() == Decimal("1"), "the first long's size is whole"
    mine = [o for o in h.resting() if first.id in o.client_order_id]
    assert sum(o.qty for o in mine if o.type is OrderType.STOP_MARKET) == Decimal("1")
    assert not [o for o in h.resting() if second.id in o.client_order_id]
    told = [a.message for a in h.notifier.alerts if "TP1" in a.message or "TP2" in a.message]
    assert told == [], "a take-profit never sent is not told as refused while the stop rests"


async def test_a_stop_that_fires_during_the_tp1_resize_is_a_plain_close(harness: Harness) -> None:
    """Issue 8 (low): the stop fires while the TP1 resize is in flight. The position closes as a
    stop; no `protection_lost: stop canceled outside warden`, no `stop_moved` after the close, and
    nothing is left on the exchange."""
    for side in ("long", "short"):
        pos = await harness.open(side, SOL, usd=None, qty=Decimal("1"))
        assert pos.stop_price is not None and pos.entry_price is not None
        harness.sim.faults.rest_latency = 0.3
        harness.sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
        await eventually(lambda p=pos: harness.engine.ledger.positions[p.id].tp1_hit, what="tp1")
        harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.05") * pos.side.sign)  # the old stop fires
        await eventually(lambda p=pos: not harness.engine.ledger.positions[p.id].is_active, what="closed")
        harness.sim.faults.rest_latency = 0
        await harness.engine.wait_idle()
        assert harness.exchange_qty() == 0
        await eventually(lambda: harness.resting() == [], what="nothing left resting")
        events = await harness.store.list_events(pos.id, 100)
        kinds = [e.kind for e in events]
        assert EventKind.PROTECTION_LOST not in kinds, [e.message for e in events]
        closed_at = kinds.index(EventKind.POSITION_CLOSED)
        after = {EventKind.STOP_MOVED, EventKind.PROTECTION_FAILED} & set(kinds[closed_at:])
        assert not after, [e.message for e in events]  # the move ended with the position: no news
        assert harness.engine.ledger.positions[pos.id].exit_reason == "stop"
        harness.sim.set_mark(SOL, pos.entry_price)


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("aged", ["past pending_deadline", "past its copies"])
async def test_a_stale_pending_stop_intent_is_resolved_in_one_pass_and_no_longer_blocks_the_symbol(
    store_url: str, side: str, aged: str
) -> None:
    """Issue 8.1: a stop move whose send was answered 5xx (nothing executed) while every lookup
    failed leaves its intent PENDING: its outcome is unknown. While a copy of it may still land
    it counts as in flight; once older than `pending_deadline`, or once no copy can land any more
    (`entry_deadline` after its last send), one reconcile pass looks it up (not found: refused,
    final) and, in that same pass, judges the symbol again: an outside reduce and a stop cancelled
    by hand, both made while the stream was down, are repaired. The fake clock drives it.

    Chaos 1215:194: with only `pending_deadline`, a move given up on that way kept its symbol
    out of every pass for 30 s after its copies could land. Meanwhile a later move's stop, given
    up on (not found) yet landing late, rested unknown to warden as live (I4), and the stop it
    superseded rested beside it."""
    clock = FakeClock()
    sim = SimulatedExchange(now=clock.now, seed=7)
    store = await open_store(store_url, exchange="sim")
    try:
        async with engine_on(clock, sim, FAST, store) as engine:
            pos = await engine.open_position(OpenPosition(SOL, Side.parse(side), qty=Decimal("1")))
            await engine.wait_idle()
            assert pos.stop_price is not None
            [old] = [o for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
            sim.faults.server_error_if = lambda req: req.type is OrderType.STOP_MARKET
            sim.faults.fail_queries = True
            with pytest.raises(ExchangeError):
                await driven(clock, engine.move_stop(pos.id, pos.stop_price + Decimal("0.5") * pos.side.sign))
            sim.faults.server_error_if = None
            sim.faults.fail_queries = False
            [intent] = [o for o in engine.ledger.orders_of(pos.id) if o.status is OrderStatus.PENDING]
            assert intent.role is OrderRole.STOP

            sim.disconnect()  # what follows reaches warden only through reconciliation
            sim.external_order(SOL, pos.side.exit_side, Decimal("0.4"), reduce_only=True)
            sim.cancel_external(old.client_order_id)
            young = await driven(clock, engine.reconcile())
            assert young.findings == [], "a young intent is in flight: the symbol waits"

            wait = (
                engine.config.pending_deadline
                if aged == "past pending_deadline"
                else engine.config.entry_deadline
            )
            assert engine.config.entry_deadline < engine.config.pending_deadline
            clock.advance(wait + 1)
            report = await driven(clock, engine.reconcile())
            await engine.wait_idle()
            assert engine.ledger.orders[intent.client_order_id].status is OrderStatus.REJECTED
            assert {f.discrepancy.kind for f in report.findings} & {Kind.SIZE_MISMATCH, Kind.MISSING_STOP}
            now = engine.ledger.positions[pos.id]
            held = sim.core.position(SOL).qty
            assert now.remaining * now.side.sign == held == Decimal("0.6") * pos.side.sign
            resting = [o for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
            assert [o.qty for o in resting] == [Decimal("0.6")]
            assert engine.ledger.current_stop(pos.id).client_order_id == resting[0].client_order_id  # type: ignore[union-attr]
            sim.reconnect()
            assert (await driven(clock, engine.reconcile())).findings == []
            await driven(clock, engine.wait_idle())
    finally:
        await store.close()


@pytest.mark.parametrize("side", ["long", "short"])
async def test_after_a_restart_a_refused_trailing_move_is_not_tried_again_in_a_loop(
    store_url: str, side: str
) -> None:
    """Issue 8.1: "after a restart the same move is retried and rejected again". The exchange
    refuses every new stop; a trailing move is refused (not through the market: the old stop
    stays). After a restart, with the refusals still on and no new mark, the move may be tried
    once by recovery, but not again and again as engine time passes (reconcile passes, the
    maintenance loop); the old stop keeps covering the runner throughout."""
    clock = FakeClock()
    sim = SimulatedExchange(now=clock.now, seed=7)
    tried: list[str] = []

    def refuse(request: OrderRequest) -> bool:
        if request.type is OrderType.STOP_MARKET:
            tried.append(request.client_order_id)
            return True
        return False

    async with looping_engine(store_url, clock, sim) as (engine, _):
        pos = await engine.open_position(OpenPosition(SOL, Side.parse(side), qty=Decimal("1")))
        sim.set_mark(SOL, pos.tp1_price)  # type: ignore[arg-type]
        await eventually(lambda: engine.ledger.positions[pos.id].tp1_hit, what="tp1")
        sim.set_mark(SOL, pos.tp2_price)  # type: ignore[arg-type]
        await eventually(lambda: engine.ledger.positions[pos.id].trailing_active, what="runner armed")
        await driven(clock, engine.wait_idle())
        sim.faults.reject_if = refuse
        sim.set_mark(SOL, ahead(pos, "5"))
        await eventually(lambda: bool(tried), what="the move tried")
        await driven(clock, engine.wait_idle())
        await moments(clock, 2)  # the watermark is flushed
        runner = engine.ledger.positions[pos.id]
        [old] = [o for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
        assert old.qty == runner.remaining and old.trigger_price != ahead(pos, "5")
    refused_before = len(tried)
    sim.new_session()
    async with looping_engine(store_url, clock, sim) as (engine, _):
        await moments(clock, 4 * engine.config.reconcile_interval)
        await driven(clock, engine.wait_idle())
        again = tried[refused_before:]
        assert len(again) <= 1, again
        assert [o.client_order_id for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET] == [
            old.client_order_id
        ]
        view = await engine.get_position(pos.id)
        assert view.stop_resting and view.position.remaining == old.qty
        [exposure] = sim.exposure()
        assert exposure.unprotected_seconds == 0
