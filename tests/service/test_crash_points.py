"""Every flow, cut after each of its I/O calls, recovers to a protected, consistent state (I1-I5)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from tests.service.crash import SimulatedCrash, check_invariants, run_with_crash
from tests.service.harness import FAST, SOL, Harness
from warden.adapters.clock import SystemClock
from warden.adapters.sim import SimulatedExchange
from warden.domain.position import Position
from warden.service.commands import ClosePosition

Step = Callable[[Harness], Awaitable[Any]]


def only(h: Harness) -> Position:
    [p] = list(h.engine.ledger.positions.values())
    return p


async def final(h: Harness) -> Position | None:
    """The flow's position, from memory or (once terminal, hence not reloaded) from the DB."""
    if h.engine.ledger.positions:
        return only(h)
    stored = await h.store.list_positions(include_closed=True)
    return stored[0] if stored else None


async def settle(h: Harness) -> None:
    """Let the stream and every follow-up task finish."""
    for _ in range(3):
        await eventually(lambda: not h.sim.core.fills_due() or h.crashed, what="acknowledged orders filled")
        await eventually(lambda: h.queued_events() == 0 or h.crashed, what="stream drained")
        await h.engine.wait_idle()
        if h.crashed:
            raise SimulatedCrash


async def open_long(h: Harness) -> None:
    await h.open("long", usd="100")


async def open_acknowledged(h: Harness) -> None:
    """An entry the exchange acknowledges unfilled and fills a moment later (Binance NEW, Bybit ids)."""
    h.sim.faults.ack_only_if = lambda req: req.type.value == "market"
    h.sim.faults.fill_delay = 0.05
    await h.open("long", usd="100")


async def close_acknowledged(h: Harness) -> None:
    h.sim.faults.ack_only_if = lambda req: req.type.value == "market"
    h.sim.faults.fill_delay = 0.05
    await h.engine.close_position(ClosePosition(only(h).id))
    await settle(h)


async def hit_tp1(h: Harness) -> None:
    h.sim.set_mark(SOL, only(h).tp1_price)
    await settle(h)


async def hit_tp2(h: Harness) -> None:
    h.sim.set_mark(SOL, only(h).tp2_price)
    await settle(h)


async def ratchet(h: Harness) -> None:
    h.sim.set_mark(SOL, only(h).tp2_price + Decimal("2"))
    await settle(h)


async def close(h: Harness) -> None:
    await h.engine.close_position(ClosePosition(only(h).id))
    await settle(h)


@dataclass(frozen=True)
class Flow:
    setup: tuple[Step, ...]
    step: Step
    final_mark: Callable[[Position], Decimal] | None = None


FLOWS = {
    "open": Flow((), open_long),
    "tp1": Flow((open_long,), hit_tp1, lambda p: p.tp1_price),
    "tp2_runner": Flow((open_long, hit_tp1), hit_tp2, lambda p: p.tp2_price),
    "trailing_ratchet": Flow((open_long, hit_tp1, hit_tp2), ratchet, lambda p: p.tp2_price + Decimal("2")),
    "close": Flow((open_long,), close),
    "open_acknowledged": Flow((), open_acknowledged),
    "close_acknowledged": Flow((open_long,), close_acknowledged),
}
EXIT_STATE = ("status", "remaining", "tp1_hit", "tp2_hit", "trailing_active", "exit_reason", "closed_qty")


async def fresh(tmp: Path, name: str) -> Harness:
    sim = SimulatedExchange(now=SystemClock().now, seed=11)
    return await Harness(f"sqlite:///{tmp}/{name}.db", sim).start()


async def run_flow(tmp: Path, flow: Flow, crash_at: int | None, name: str) -> tuple[Harness, int]:
    h = await fresh(tmp, name)
    for step in flow.setup:
        await step(h)
        await settle(h)
    budget = await run_with_crash(h, flow.step, crash_at)
    if budget.dead:
        h.drop_stream()
        h = await h.restart()
        if flow.final_mark is not None and h.engine.ledger.positions:  # show the market where it was
            h.sim.set_mark(SOL, flow.final_mark(only(h)))
        await settle(h)
    return h, len(budget.calls)


def exit_state(p: Position) -> dict[str, Any]:
    return {name: getattr(p, name) for name in EXIT_STATE}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLOWS))
async def test_every_crash_point_recovers(name: str, tmp_path: Path) -> None:
    """Cut after the k-th exchange/DB call for every k: recovery restores I1-I5 and the same exit state."""
    flow = FLOWS[name]
    reference, calls = await run_flow(tmp_path, flow, None, "reference")
    ref = await final(reference)
    assert ref is not None
    expected = exit_state(ref)
    await check_invariants(reference)
    await reference.stop()
    assert calls > 0
    for k in range(1, calls + 1):
        h, _ = await run_flow(tmp_path, flow, k, f"k{k}")
        try:
            await check_invariants(h)
            got = await final(h)
            if got is None:
                assert name.startswith("open"), f"k={k}: the position vanished"
                assert h.exchange_qty() == 0 and h.resting() == [], f"k={k}: exchange acted without an intent"
                continue
            if name.startswith("open") and got.status.value == "failed":
                assert h.exchange_qty() == 0, f"k={k}: failed entry but exchange holds a position"
            else:
                assert exit_state(got) == expected, f"k={k}/{calls}: {exit_state(got)} != {expected}"
        finally:
            await h.stop()
    print(f"{name}: {calls} crash points, all recovered")


class DiesWritingTheIntent:
    """A store wrapper: the write of a transition that stages an intent of `role` (the stop by
    default) never lands, and the process dies with it, after the order itself went out (the
    stop's intents are written while it is sent, as is a close sent at once when that stop was
    refused)."""

    def __init__(self, inner: Any, h: Harness, sent: list[str], role: str = "stop") -> None:
        self._inner = inner
        self._h = h
        self._sent = sent
        self._role = role

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit(self, transition: Any) -> None:
        from warden.domain.orders import OrderStatus

        if any(o.role.value == self._role and o.status is OrderStatus.PENDING for o in transition.orders):
            await eventually(lambda: bool(self._sent), what=f"the {self._role} sent")
            self._h.crashed = True
            raise SimulatedCrash
        await self._inner.commit(transition)

    async def commit_many(self, transitions: Any) -> None:
        for t in transitions:
            await self.commit(t)


async def test_a_stop_sent_while_its_intent_was_never_written_is_adopted_after_the_crash(
    harness: Harness,
) -> None:
    """The exit intents are written while the orders are on their way. If the process dies
    with the stop resting and its intent unwritten, the restarted engine stages the same
    client id again; the exchange refuses the duplicate and warden adopts the resting stop:
    exactly one stop, the position protected, nothing closed."""
    sent: list[str] = []
    original = harness.sim.faults.reject_if

    def record(request: Any) -> bool:
        if request.type.value == "stop_market":
            sent.append(request.client_order_id)
        return False

    harness.sim.faults.reject_if = record
    await harness.stop()
    harness.wrap = lambda inner: (
        DiesWritingTheIntent(inner, harness, sent) if inner is harness.store else inner
    )
    await harness.start()
    harness.wrap = None
    with contextlib.suppress(SimulatedCrash):
        await harness.open("long", usd="100")
    assert harness.crashed and len(sent) == 1
    harness.sim.faults.reject_if = original
    held = harness.exchange_qty()
    [stop] = [o for o in harness.resting() if o.type.value == "stop_market"]
    harness.drop_stream()
    await harness.engine.wait_idle()
    h = await harness.restart()
    await h.engine.wait_idle()
    await check_invariants(h)
    [p] = h.engine.ledger.active_positions()
    assert h.exchange_qty() == held and p.remaining == held
    assert [o.client_order_id for o in h.resting() if o.type.value == "stop_market"] == [
        stop.client_order_id
    ], "the resting stop was adopted, not replaced"
    assert p.status.value == "protected"


@pytest.mark.parametrize("stops_after", ["refused", "taken"])
async def test_a_close_that_executed_while_its_intent_was_never_written_is_not_sent_again(
    store_url: str, stops_after: str
) -> None:
    """`warden chaos --replay 565405691:3027`, stacking on: a second long on the symbol filled, its
    stop was refused, and the close sent at once filled; the process died writing the close's
    intent. The restarted engine knew no close of the position, so it staged the same client id
    again (c1): the exchange took it (a filled order's id is free again) and it closed the first
    long's size, traded twice. A stop sent instead (`taken`) would rest for a position already
    flat, reduce-only, to close the first long's size when it triggers. Recovery reads the trades
    of a position it must protect or close first: the close is adopted from its trade, and the
    position is closed by it."""
    sim = SimulatedExchange(now=SystemClock().now, seed=11)
    harness = await Harness(store_url, sim, config=replace(FAST, allow_stacking=True)).start()
    try:
        first = await harness.open("long", usd="100")
        held_first = harness.exchange_qty()
        assert first.status.value == "protected" and held_first > 0
        sent: list[str] = []

        def refuse_stops(request: Any) -> bool:
            if request.type.value == "market" and request.reduce_only:
                sent.append(request.client_order_id)
            return bool(request.type.value == "stop_market")

        harness.sim.faults.reject_if = refuse_stops
        await harness.stop()
        harness.wrap = lambda inner: (
            DiesWritingTheIntent(inner, harness, sent, "close") if inner is harness.store else inner
        )
        await harness.start()
        harness.wrap = None
        with contextlib.suppress(SimulatedCrash):
            await harness.open("long", usd="100")
        assert harness.crashed and len(sent) == 1, sent
        assert harness.exchange_qty() == held_first, "the second long closed by its close"
        if stops_after == "taken":
            harness.sim.faults.reject_if = None
        harness.drop_stream()
        await harness.engine.wait_idle()
        h = await harness.restart()
        await settle(h)
        close = sent[0]
        traded = sum(f.qty for f in h.sim.core.fills(SOL) if f.client_order_id == close)
        second = [p for p in h.engine.ledger.positions.values() if p.id != first.id]
        stored = await h.store.list_positions(include_closed=True)
        [closed] = [p for p in stored if p.id != first.id]
        assert traded == closed.filled_qty, f"{close} traded {traded} for {closed.filled_qty}: sent twice"
        assert h.exchange_qty() == held_first, "the first long's size is untouched"
        assert closed.status.value == "closed" and not [p for p in second if p.is_active], closed
        # warden's own close, not one made by hand: the reason it was sent for died with the
        # process, and the record says so rather than "manual"
        assert closed.exit_reason == "unrecorded_close", closed.exit_reason
        stops = [o.client_order_id for o in h.sim.core.orders() if closed.id in o.client_order_id]
        assert not [c for c in stops if "-s" in c], f"a stop placed for a position already flat: {stops}"
        await h.engine.wait_idle()
        assert not [o for o in h.resting() if closed.id in o.client_order_id], "its exits rest on"
        h.sim.faults.reject_if = None
        await h.engine.reconcile()
        await check_invariants(h)
    finally:
        await harness.stop()
