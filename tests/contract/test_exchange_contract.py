"""The Exchange port's contract: what every adapter must do, checked on every adapter.

One set of tests, run against the in-process simulator, CcxtExchange -> the Binance face,
CcxtBybitExchange -> the Bybit face and DriftExchange -> the simulated Drift venue (see rigs.py).
Where venues legitimately differ (Bybit answers an order with ids only and Drift acknowledges
every market order before its auction fills it, so a market order may come back OPEN and
unfilled; Binance fills it in the answer), the contract states what the engine may rely on: a
report that is FILLED is filled, one that is OPEN is working, and the lookup tells the truth
either way. What a venue's own rules make different (Drift's symbols, steps and fee; that it
accepts a crossed trigger or a reduce-only order with nothing to reduce and settles them later)
is a rig attribute, checked exactly on each venue.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.flows import D
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, StreamGap
from warden.domain.values import OrderSide, OrderType, Side
from warden.ports import Exchange, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

from .rigs import Rig

BUY, SELL = OrderSide.BUY, OrderSide.SELL
STOP, TP = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET
ID = "wd-a1b2c3-0123456789ab"
POLL = 0.01


async def settled(rig: Rig, cid: str, *, conditional: bool = False, timeout: float = 5.0) -> OrderReport:
    """Poll fetch_order until the order is no longer OPEN (a working order becomes its outcome)."""
    reports: list[OrderReport] = []

    async def done() -> bool:
        reports.append(await rig.exchange.fetch_order(rig.btc, cid, conditional))
        return reports[-1].status is not OrderStatus.OPEN

    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not await done():
        assert datetime.now(UTC) < deadline, f"{cid} still open: {reports[-1]}"
        await asyncio.sleep(POLL)  # a poll with a deadline, not a wait for something to happen
    return reports[-1]


async def eventually_flat(exchange: Exchange, timeout: float = 5.0) -> None:
    """Poll the positions until there are none (a fired stop filled)."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while await exchange.fetch_positions():
        assert datetime.now(UTC) < deadline, "still not flat"
        await asyncio.sleep(POLL)  # a poll with a deadline, not a wait for something to happen


# ----- markets ------------------------------------------------------------------------


async def test_instruments_carry_exact_filters(rig: Rig) -> None:
    instruments = await rig.exchange.instruments()
    assert instruments[rig.btc] == rig.btc_market
    assert instruments[rig.sol] == rig.sol_market
    assert set(instruments) == rig.listed and rig.eth in rig.listed


async def test_mark_price_follows_the_market(rig: Rig) -> None:
    assert await rig.exchange.mark_price(rig.btc) == D("65000")
    await rig.set_price(rig.btc, "64321.5")
    assert await rig.exchange.mark_price(rig.btc) == D("64321.5")


# ----- orders -------------------------------------------------------------------------


async def test_a_market_order_is_filled_or_working_and_the_lookup_tells_the_truth(rig: Rig) -> None:
    placed = await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    assert (placed.client_order_id, placed.symbol, placed.side, placed.type, placed.qty) == (
        f"{ID}-e1",
        rig.btc,
        BUY,
        OrderType.MARKET,
        D("0.01"),
    )
    assert placed.exchange_order_id
    if placed.status is OrderStatus.FILLED:
        assert (placed.filled_qty, placed.avg_price) == (D("0.01"), D("65000"))
    else:
        assert (placed.status, placed.filled_qty) == (OrderStatus.OPEN, D(0))  # working: not failed
    found = await settled(rig, f"{ID}-e1")
    assert (found.status, found.filled_qty, found.avg_price, found.exchange_order_id) == (
        OrderStatus.FILLED,
        D("0.01"),
        D("65000"),
        placed.exchange_order_id,
    )
    [position] = await rig.exchange.fetch_positions()
    assert (position.symbol, position.side, position.qty, position.entry_price) == (
        rig.btc,
        Side.LONG,
        D("0.01"),
        D("65000"),
    )
    [fill] = await rig.exchange.fetch_fills(rig.btc, datetime.now(UTC) - timedelta(minutes=1))
    assert (fill.client_order_id, fill.exchange_order_id, fill.side, fill.qty, fill.price, fill.fee) == (
        f"{ID}-e1",
        placed.exchange_order_id,
        BUY,
        D("0.01"),
        D("65000"),
        rig.fee("0.01", "65000"),
    )
    assert not fill.liquidation


async def test_a_stop_rests_then_fires_on_the_mark_and_its_fill_is_its_own(rig: Rig) -> None:
    await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.02"))
    await settled(rig, f"{ID}-e1")  # filled at 65000 (Drift's auction fills it a moment later)
    stop = await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.02", "64000"))
    assert (stop.type, stop.status, stop.trigger_price, stop.qty, stop.reduce_only, stop.filled_qty) == (
        STOP,
        OrderStatus.OPEN,
        D("64000"),
        D("0.02"),
        True,
        D(0),
    )
    [resting] = [o for o in await rig.exchange.fetch_open_orders() if o.client_order_id == f"{ID}-s1"]
    assert (resting.type, resting.trigger_price, resting.side) == (STOP, D("64000"), SELL)
    await rig.set_price(rig.btc, "64100")
    assert (await rig.exchange.fetch_order(rig.btc, f"{ID}-s1", True)).status is OrderStatus.OPEN
    await rig.set_price(rig.btc, "63900")
    fired = await settled(rig, f"{ID}-s1", conditional=True)
    assert (fired.status, fired.type, fired.filled_qty, fired.avg_price) == (
        OrderStatus.FILLED,
        STOP,
        D("0.02"),
        D("63900"),
    )
    assert await rig.exchange.fetch_positions() == []  # flat positions are not reported
    fills = await rig.exchange.fetch_fills(rig.btc, None)
    assert [(f.client_order_id, f.side, f.qty, f.price) for f in fills] == [
        (f"{ID}-e1", BUY, D("0.02"), D("65000")),
        (f"{ID}-s1", SELL, D("0.02"), D("63900")),
    ]
    assert await rig.exchange.fetch_open_orders() == []


async def test_take_profits_carry_exact_quantities(rig: Rig) -> None:
    await rig.exchange.place_order(rig.market(f"{ID}-e1", SELL, "0.05"))  # a short
    await settled(rig, f"{ID}-e1")
    tp1 = await rig.exchange.place_order(rig.conditional(f"{ID}-a1", TP, "0.03", "64000", side=BUY))
    assert (tp1.type, tp1.qty, tp1.side) == (TP, D("0.03"), BUY)
    await rig.set_price(rig.btc, "63950")
    assert (await settled(rig, f"{ID}-a1", conditional=True)).filled_qty == D("0.03")  # 60 %, not 100 %
    [position] = await rig.exchange.fetch_positions()
    assert (position.side, position.qty) == (Side.SHORT, D("0.02"))


async def test_cancel_then_cancel_again(rig: Rig) -> None:
    await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    await settled(rig, f"{ID}-e1")
    await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.01", "64000"))
    canceled = await rig.exchange.cancel_order(rig.btc, f"{ID}-s1", True)
    assert (canceled.client_order_id, canceled.status, canceled.type, canceled.filled_qty) == (
        f"{ID}-s1",
        OrderStatus.CANCELED,
        STOP,
        D(0),
    )
    assert (await rig.exchange.fetch_order(rig.btc, f"{ID}-s1", True)).status is OrderStatus.CANCELED
    assert await rig.exchange.fetch_open_orders() == []
    if rig.second_cancel_not_found:
        with pytest.raises(OrderNotFound):
            await rig.exchange.cancel_order(rig.btc, f"{ID}-s1", True)
    else:
        again = await rig.exchange.cancel_order(rig.btc, f"{ID}-s1", True)
        assert (again.status, again.filled_qty) == (OrderStatus.CANCELED, D(0))
    await rig.set_price(rig.btc, "63000")  # a cancelled stop never fires
    assert (await rig.exchange.fetch_positions())[0].qty == D("0.01")


async def test_lookups_know_what_they_do_not_have(rig: Rig) -> None:
    await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    await settled(rig, f"{ID}-e1")
    await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.01", "64000"))
    with pytest.raises(OrderNotFound):
        await rig.exchange.fetch_order(rig.btc, "wd-a1b2c3-ffffffffffff-e1", False)
    if rig.kinds_apart:
        with pytest.raises(OrderNotFound):
            await rig.exchange.fetch_order(rig.btc, f"{ID}-s1", False)  # conditional orders need the flag
    with pytest.raises(OrderNotFound):
        await rig.exchange.fetch_order(rig.eth, f"{ID}-e1", False)  # another symbol
    with pytest.raises(OrderNotFound):
        await rig.exchange.cancel_order(rig.btc, "wd-a1b2c3-ffffffffffff-s1", True)


async def test_refusals_are_order_rejected_and_change_nothing(rig: Rig) -> None:
    await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    await settled(rig, f"{ID}-e1")
    await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.01", "64000"))
    if rig.refuses_crossed_triggers:
        with pytest.raises(OrderRejected):  # the mark is already past the trigger
            await rig.exchange.place_order(rig.conditional(f"{ID}-s2", STOP, "0.01", "65100"))
    with pytest.raises(OrderRejected):  # the client id of a resting order
        await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.01", "63000"))
    if rig.refuses_reduce_only_without_position:
        with pytest.raises(OrderRejected):  # reduce-only with nothing to reduce
            await rig.exchange.place_order(rig.market(f"{ID}-c1", BUY, "0.01", reduce_only=True))
    with pytest.raises(OrderRejected):  # not a whole number of lots
        await rig.exchange.place_order(rig.market(f"{ID}-e2", BUY, rig.off_step_qty))
    assert [o.client_order_id for o in await rig.exchange.fetch_open_orders()] == [f"{ID}-s1"]
    assert [p.qty for p in await rig.exchange.fetch_positions()] == [D("0.01")]


async def test_fills_since_a_time(rig: Rig) -> None:
    await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    await settled(rig, f"{ID}-e1")
    assert await rig.exchange.fetch_fills(rig.btc, datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(await rig.exchange.fetch_fills(rig.btc, datetime.now(UTC) - timedelta(days=3))) == 1
    assert await rig.exchange.fetch_fills(rig.eth, None) == []


async def test_a_fresh_adapter_finds_everything_by_client_id(rig: Rig) -> None:
    """A restarted process knows nothing; lookups and fills still name warden's orders."""
    await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    await settled(rig, f"{ID}-e1")
    await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.01", "64000"))
    await rig.set_price(rig.btc, "63900")
    fresh = rig.fresh()
    await eventually_flat(fresh)  # the stop has fired (after Drift's keeper and auction)
    fills = await fresh.fetch_fills(rig.btc, datetime.now(UTC) - timedelta(minutes=1))
    assert [(f.client_order_id, f.qty) for f in fills] == [(f"{ID}-e1", D("0.01")), (f"{ID}-s1", D("0.01"))]
    stop = await fresh.fetch_order(rig.btc, f"{ID}-s1", True)
    assert (stop.status, stop.filled_qty, stop.avg_price) == (OrderStatus.FILLED, D("0.01"), D("63900"))


# ----- faults -------------------------------------------------------------------------


async def test_a_timeout_after_execution_is_unknown_and_the_lookup_resolves_it(rig: Rig) -> None:
    await rig.faults(timeout_after_execution_if="*-e1")
    with pytest.raises(ExchangeTimeout):
        await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    assert (await settled(rig, f"{ID}-e1")).status is OrderStatus.FILLED


async def test_an_outage_is_retryable_and_nothing_happened(rig: Rig) -> None:
    await rig.faults(unavailable_if=True)
    with pytest.raises(ExchangeUnavailable):
        await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    await rig.faults(unavailable_if=None, fail_queries=True)
    with pytest.raises(ExchangeUnavailable):
        await rig.exchange.fetch_open_orders()
    with pytest.raises(ExchangeUnavailable):
        await rig.exchange.fetch_positions()
    await rig.faults(fail_queries=False)
    with pytest.raises(rig.lookup_after_outage):
        await rig.exchange.fetch_order(rig.btc, f"{ID}-e1", False)


async def test_an_acknowledged_order_is_working_until_it_fills(rig: Rig) -> None:
    await rig.faults(ack_only_if="*-e1", fill_delay=0.2)
    placed = await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
    assert (placed.status, placed.filled_qty) == (OrderStatus.OPEN, D(0))
    found = await settled(rig, f"{ID}-e1")
    assert (found.status, found.filled_qty) == (OrderStatus.FILLED, D("0.01"))


# ----- the stream ---------------------------------------------------------------------


async def test_the_stream_carries_fills_order_updates_and_marks(rig: Rig) -> None:
    events = await rig.streaming()
    try:
        await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
        fill = await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == f"{ID}-e1")
        assert isinstance(fill, FillReport)
        assert (fill.qty, fill.price, fill.side) == (D("0.01"), D("65000"), BUY)
        await events.wait_for(
            lambda e: (
                isinstance(e, OrderReport)
                and e.client_order_id == f"{ID}-e1"
                and e.status is OrderStatus.FILLED
            )
        )
        await rig.exchange.place_order(rig.conditional(f"{ID}-s1", STOP, "0.01", "64000"))
        await rig.set_price(rig.btc, "63900")
        stop_fill = await events.wait_for(
            lambda e: isinstance(e, FillReport) and e.client_order_id == f"{ID}-s1"
        )
        assert isinstance(stop_fill, FillReport)
        assert (stop_fill.qty, stop_fill.price, stop_fill.side) == (D("0.01"), D("63900"), SELL)
        done = await events.wait_for(
            lambda e: (
                isinstance(e, OrderReport)
                and e.client_order_id == f"{ID}-s1"
                and e.status is OrderStatus.FILLED
            )
        )
        assert isinstance(done, OrderReport)
        assert (done.type, done.filled_qty, done.avg_price) == (STOP, D("0.01"), D("63900"))
        await events.wait_for(
            lambda e: isinstance(e, MarkPrice) and e.symbol == rig.btc and e.price == D("63900")
        )
    finally:
        await events.stop()


async def test_an_outside_trade_arrives_under_its_own_client_id(rig: Rig) -> None:
    events = await rig.streaming()
    try:
        cid = await rig.outside_trade(rig.btc, SELL, "0.01")
        fill = await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == cid)
        assert isinstance(fill, FillReport)
        assert not fill.client_order_id.startswith("wd-")
        [position] = await rig.exchange.fetch_positions()
        assert (position.side, position.qty) == (Side.SHORT, D("0.01"))
    finally:
        await events.stop()


async def test_a_broken_stream_says_so_then_carries_on(rig: Rig) -> None:
    events = await rig.streaming()
    try:
        await rig.drop_stream()
        await events.wait_for(lambda e: isinstance(e, StreamGap))
        await rig.exchange.place_order(rig.market(f"{ID}-e1", BUY, "0.01"))
        await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == f"{ID}-e1")
        assert sum(isinstance(e, StreamGap) for e in events.seen) == 1
    finally:
        await events.stop()
