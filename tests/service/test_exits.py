"""Exits on the exchange: TP1 closes exactly 60 %, the stop follows the size, TP2 arms the runner."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.helpers import eventually, until
from tests.service.harness import SOL, Harness, looping_engine, moments
from warden.adapters.clock import FakeClock
from warden.domain.events import EventKind
from warden.domain.orders import OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.values import OrderRole, OrderSide, OrderType, Side
from warden.ports import ExchangeUnavailable
from warden.service.commands import OpenPosition


def stops(h: Harness) -> list:
    return [o for o in h.resting() if o.type is OrderType.STOP_MARKET]


async def test_tp1_closes_exactly_sixty_percent_and_resizes_the_stop(harness: Harness) -> None:
    """TP1 fills 60 %; the stop is replaced by one for the 40 % that remains, never leaving a gap."""
    pos = await harness.open("long", usd="100")
    size = pos.filled_qty
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1 applied")
    await harness.engine.wait_idle()
    now = harness.engine.ledger.positions[pos.id]
    assert (
        now.closed_qty
        == pos.tp1_qty
        == (size * Decimal("0.6")).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    )
    assert harness.exchange_qty() == size - pos.tp1_qty
    [stop] = stops(harness)
    assert stop.qty == now.remaining
    assert now.status is PositionStatus.PROTECTED
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.tp1_hit and stored.remaining == now.remaining


async def test_tp2_arms_the_trailing_runner_which_only_tightens(harness: Harness) -> None:
    """After TP2 the stop trails the peak by trail_pct, moves only up for a long, and is persisted."""
    pos = await harness.open("long", usd="100")
    harness.sim.set_mark(SOL, pos.tp1_price)
    harness.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    await harness.engine.wait_idle()
    peak = pos.tp2_price + Decimal("3")
    harness.sim.set_mark(SOL, peak)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].watermark == peak, what="watermark")
    await harness.engine.wait_idle()
    trail = harness.engine.instruments[SOL].round_price(peak * (1 - Decimal("0.005")))
    [stop] = stops(harness)
    assert stop.trigger_price == trail
    assert stop.qty == harness.engine.ledger.positions[pos.id].remaining
    harness.sim.set_mark(SOL, peak - Decimal("0.5"))  # a dip above the stop: the stop must not loosen
    await harness.engine.wait_idle()
    [stop] = stops(harness)
    assert stop.trigger_price == trail
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.stop_price == trail and stored.trailing_active
    kinds = [e.kind for e in await harness.store.list_events(pos.id)]
    assert kinds.count(EventKind.TP1_HIT) == 1 and kinds.count(EventKind.TP2_HIT) == 1
    assert EventKind.TRAILING_ARMED in kinds and EventKind.STOP_MOVED in kinds


async def test_runner_stop_hit_closes_with_trailing_reason(harness: Harness) -> None:
    """When the trailing stop fills the rest, the position closes as trailing_stop and nothing rests."""
    pos = await harness.open("short", usd="100")
    harness.sim.set_mark(SOL, pos.tp1_price)
    harness.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].trailing_active, what="runner armed")
    await harness.engine.wait_idle()
    harness.sim.set_mark(SOL, pos.tp2_price + Decimal("5"))
    await eventually(lambda: not harness.engine.ledger.positions[pos.id].is_active, what="closed")
    await harness.engine.wait_idle()
    closed = harness.engine.ledger.positions[pos.id]
    assert closed.exit_reason == "trailing_stop"
    assert harness.exchange_qty() == 0
    assert harness.resting() == []


async def test_stop_hit_closes_and_cancels_take_profits(harness: Harness) -> None:
    """A stop fill flattens the position; the take-profits left behind are cancelled."""
    pos = await harness.open("long", usd="100")
    harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.1"))
    await eventually(lambda: not harness.engine.ledger.positions[pos.id].is_active, what="closed")
    await harness.engine.wait_idle()
    assert harness.engine.ledger.positions[pos.id].exit_reason == "stop"
    assert harness.resting() == []
    orders = await harness.store.orders_for(pos.id)
    assert {o.status for o in orders if o.role in (OrderRole.TP1, OrderRole.TP2)} == {OrderStatus.CANCELED}


async def test_breakeven_after_tp1_moves_stop_to_entry(harness: Harness) -> None:
    """With the option on, the stop goes to the entry price after TP1."""
    from dataclasses import replace

    from warden.domain.plan import ExitPlan

    await harness.stop()
    harness.config = replace(harness.config, plan=ExitPlan(breakeven_after_tp1=True))
    await harness.start()
    pos = await harness.open("long", usd="100")
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await harness.engine.wait_idle()
    [stop] = stops(harness)
    assert stop.trigger_price == pos.entry_price.quantize(Decimal("0.01"))


async def test_moving_peak_is_persisted_within_the_flush_interval(store_url: str) -> None:
    """A new peak that moves no stop still reaches the database within one flush interval: not
    before the interval passes on the engine's (fake) clock, and by the flush that follows it."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        pos = await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert pos.tp1_price is not None and pos.entry_price is not None
        await engine.wait_idle()
        peak = pos.tp1_price - Decimal("0.2")  # a new high below TP1: nothing triggers

        async def flushed() -> bool:
            stored = await engine.store.get_position(pos.id)
            return stored is not None and stored.watermark == peak

        exchange.sim.set_mark(SOL, peak)
        await eventually(lambda: exchange.sim.queued_events == 0, what="the engine took the mark")
        await engine.wait_idle()
        assert not await flushed(), "no flush before the interval passed"
        interval = engine.config.watermark_flush_interval
        await moments(clock, interval, step=interval)
        await until(flushed, what="the peak flushed")
        stored = await engine.store.get_position(pos.id)
        assert stored is not None and stored.mfe == peak - pos.entry_price and stored.last_price == peak


class HoldsTheStopIntent:
    """A store wrapper: the write of a transition staging a stop intent waits until released
    (a slow database while the stop, sent at the same time, is already on the exchange)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit(self, transition: Any) -> None:
        if any(o.role is OrderRole.STOP and o.status is OrderStatus.PENDING for o in transition.orders):
            self.held.set()
            await self.release.wait()
        await self._inner.commit(transition)

    async def commit_many(self, transitions: Any) -> None:
        for t in transitions:
            await self.commit(t)


async def test_a_stop_that_fills_before_its_intent_is_written_is_applied(harness: Harness) -> None:
    """The exit intents are written while the orders are sent, so the stop's events can arrive
    before memory knows the order: they wait for it and are applied once it is registered (here
    the stop fills while its intent's write is still held): the position closes by its stop,
    its fill applied once, with no reconciliation pass."""
    holder: list[HoldsTheStopIntent] = []

    def wrap(inner: Any) -> Any:
        if inner is harness.store:
            holder.append(HoldsTheStopIntent(inner))
            return holder[0]
        return inner

    await harness.stop()
    harness.wrap = wrap
    await harness.start()
    harness.wrap = None
    [store] = holder
    opening = asyncio.ensure_future(harness.open("long", usd="100"))
    await asyncio.wait_for(store.held.wait(), timeout=5)
    await eventually(
        lambda: any(o.type is OrderType.STOP_MARKET for o in harness.resting()), what="the stop resting"
    )
    [stop] = [o for o in harness.resting() if o.type is OrderType.STOP_MARKET]
    harness.sim.set_mark(SOL, stop.trigger_price - Decimal("0.5"))
    await eventually(lambda: harness.exchange_qty() == 0, what="the stop filled on the exchange")
    store.release.set()
    position = await opening
    await eventually(
        lambda: not harness.engine.ledger.positions[position.id].is_active, what="closed by its stop"
    )
    await harness.engine.wait_idle()
    closed = harness.engine.ledger.positions[position.id]
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason == "stop", closed
    assert closed.remaining == 0 and len(closed.applied_trades) == 2


async def test_exits_cancelled_twice_at_once_are_cancelled_once_on_the_exchange(harness: Harness) -> None:
    """A position that ends has its exits cancelled by whoever sees it end first: the fill's
    follow-up, and recovery's settle in a resync. Both called in the same turn, each took the
    take-profits for its own (the cancels' tasks had not started, so none was marked as being
    cancelled): every cancel went to the exchange twice and was recorded twice (in a mass
    resync after a stream gap, a third of the commits). The second finds them being cancelled."""
    pos = await harness.open("long", usd="100")
    assert pos.status is PositionStatus.PROTECTED
    sent: list[str] = []
    inner = harness.sim.cancel_order

    async def counted(symbol: Any, client_order_id: str, conditional: bool) -> Any:
        sent.append(client_order_id)
        return await inner(symbol, client_order_id, conditional)

    harness.sim.cancel_order = counted  # type: ignore[method-assign]
    live = [o.client_order_id for o in harness.engine.ledger.live_orders(pos.id)]
    exits = harness.engine.exits
    await asyncio.gather(exits.cancel_exits(pos.id), exits.cancel_exits(pos.id))
    assert sorted(sent) == sorted(live), sent
    assert not harness.resting()


async def test_take_profits_whose_resize_could_not_cancel_them_are_cancelled_once_their_position_ends(
    harness: Harness,
) -> None:
    """A resize of the take-profits cancels them first; the exchange refuses every cancel (a
    429 each time) while the stop closes the position. The fill's cancel of the exits left
    them to the resize's cancel (being cancelled), and the resize, finding the position ended,
    returned without taking them off the list of orders being cancelled: every later cancel of
    the position's exits (a kill's flatten, recovery's settle) skipped them for good, and the
    take-profits rested on a closed position, reduce-only orders that would reduce the next
    position on the symbol."""
    pos = await harness.open("long", usd="100")
    assert pos.status is PositionStatus.PROTECTED and pos.stop_price is not None
    ledger = harness.engine.ledger
    tps = {o.client_order_id for o in ledger.live_orders(pos.id) if o.role in (OrderRole.TP1, OrderRole.TP2)}
    assert tps
    refusing = [True]
    inner = harness.sim.cancel_order

    async def refused(symbol: Any, client_order_id: str, conditional: bool) -> Any:
        if client_order_id in tps and refusing[0]:
            if ledger.positions[pos.id].is_active:
                harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.5"))  # the stop closes it
                await eventually(lambda: not ledger.positions[pos.id].is_active, what="the stop's fill")
            raise ExchangeUnavailable("429 too many requests")
        return await inner(symbol, client_order_id, conditional)

    harness.sim.cancel_order = refused  # type: ignore[method-assign]
    harness.sim.external_order(SOL, OrderSide.SELL, pos.filled_qty / 2, reduce_only=True)
    await harness.engine.reconcile()  # the size taken from the exchange: everything resized
    await harness.engine.wait_idle()
    assert harness.exchange_qty() == 0 and not ledger.positions[pos.id].is_active
    refusing[0] = False
    await harness.engine.kill(flatten=True)
    await harness.engine.wait_idle()
    assert not [o.client_order_id for o in harness.resting() if o.client_order_id in tps]
