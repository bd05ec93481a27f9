"""Acknowledged-before-fill market orders: the `ack_only_if` and `fill_delay` fault knobs."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from warden.adapters.sim import SimCore, SimulatedExchange
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport, PositionReport, StreamEvent
from warden.domain.values import Side

from .builders import BTC, BUY, SELL, T0, FakeClock, market, order_of, stop, take
from .server_client import RawClient, raw_server

D = Decimal


# ----- the core -------------------------------------------------------------------------


def test_an_acknowledged_market_order_is_open_and_unfilled(core: SimCore) -> None:
    outcome = core.place(market("e", BUY, "0.01"), T0, fill_at=T0 + timedelta(seconds=2))
    report = outcome.report
    assert (report.status, report.filled_qty, report.avg_price) == (OrderStatus.OPEN, D(0), None)
    assert outcome.events == (report,)
    assert core.positions() == []
    assert core.fills(BTC) == []
    assert core.open_orders() == [report]
    assert core.fills_due() == {report.exchange_order_id: T0 + timedelta(seconds=2)}


def test_fill_acknowledged_fills_at_the_mark_of_that_moment(core: SimCore) -> None:
    placed = core.place(market("e", BUY, "0.01"), T0, fill_at=T0).report
    core.set_mark(BTC, D("65100"), T0)
    later = T0 + timedelta(seconds=3)
    outcome = core.fill_acknowledged(placed.exchange_order_id, later)
    assert outcome is not None
    assert [type(e) for e in outcome.events] == [FillReport, OrderReport, PositionReport]
    fill = outcome.events[0]
    assert isinstance(fill, FillReport)
    assert (fill.price, fill.qty, fill.at) == (D("65100"), D("0.01"), later)
    assert (outcome.report.status, outcome.report.filled_qty) == (OrderStatus.FILLED, D("0.01"))
    assert [(p.side, p.qty, p.entry_price) for p in core.positions()] == [(Side.LONG, D("0.01"), D("65100"))]
    assert core.fills_due() == {}
    assert core.open_orders() == []
    assert core.fill_acknowledged(placed.exchange_order_id, later) is None  # once only


def test_an_acknowledged_order_filled_in_parts_is_open_until_its_rest_fills(core: SimCore) -> None:
    placed = core.place(market("e", BUY, "0.05"), T0, fill_at=T0).report
    later, last = T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)
    first = core.fill_acknowledged(placed.exchange_order_id, later, D("0.0234"), last)
    assert first is not None
    assert (first.report.status, first.report.filled_qty, first.report.avg_price) == (
        OrderStatus.OPEN,
        D("0.023"),  # rounded down to the lot
        D("65000"),
    )
    assert [type(e) for e in first.events] == [FillReport, OrderReport, PositionReport]
    assert core.fills_due() == {placed.exchange_order_id: last}
    assert core.open_orders() == [first.report]
    core.set_mark(BTC, D("65270"), later)
    rest = core.fill_acknowledged(placed.exchange_order_id, last)
    assert rest is not None
    assert [f.qty for f in core.fills(BTC)] == [D("0.023"), D("0.027")]
    assert (rest.report.status, rest.report.filled_qty) == (OrderStatus.FILLED, D("0.05"))
    assert rest.report.avg_price == (D("0.023") * 65000 + D("0.027") * 65270) / D("0.05")
    assert [(p.side, p.qty) for p in core.positions()] == [(Side.LONG, D("0.05"))]
    assert core.fills_due() == {}


def test_a_part_that_rounds_to_nothing_or_to_all_of_the_order_fills_it_whole(core: SimCore) -> None:
    for cid, part in (("a", "0.0004"), ("b", "0.05")):
        placed = core.place(market(cid, BUY, "0.05"), T0, fill_at=T0).report
        outcome = core.fill_acknowledged(placed.exchange_order_id, T0, D(part), T0 + timedelta(seconds=1))
        assert outcome is not None
        assert (outcome.report.status, outcome.report.filled_qty) == (OrderStatus.FILLED, D("0.05"))


def test_an_order_cancelled_after_a_part_filled_keeps_that_part(core: SimCore) -> None:
    placed = core.place(market("e", BUY, "0.05"), T0, fill_at=T0).report
    core.fill_acknowledged(placed.exchange_order_id, T0, D("0.02"), T0 + timedelta(seconds=1))
    cancelled = core.cancel("e", T0).report
    assert (cancelled.status, cancelled.filled_qty) == (OrderStatus.CANCELED, D("0.02"))
    assert core.fill_acknowledged(placed.exchange_order_id, T0) is None
    assert [(p.side, p.qty) for p in core.positions()] == [(Side.LONG, D("0.02"))]


def test_a_cancelled_acknowledged_order_never_fills(core: SimCore) -> None:
    placed = core.place(market("e", BUY, "0.01"), T0, fill_at=T0).report
    assert core.cancel("e", T0).report.status is OrderStatus.CANCELED
    assert core.fills_due() == {}
    assert core.fill_acknowledged(placed.exchange_order_id, T0) is None
    assert core.positions() == []
    assert order_of(core, "e").status is OrderStatus.CANCELED


def test_an_acknowledged_reduce_only_order_with_nothing_left_to_reduce_expires(core: SimCore) -> None:
    core.place(market("e", BUY, "0.01"), T0)
    placed = core.place(market("x", SELL, "0.01", reduce_only=True), T0, fill_at=T0).report
    core.external_order(BTC, SELL, D("0.01"), T0)  # someone else closes the position first
    outcome = core.fill_acknowledged(placed.exchange_order_id, T0)
    assert outcome is not None
    assert outcome.report.status is OrderStatus.CANCELED
    assert core.positions() == []


def test_conditional_orders_cannot_be_acknowledged_only(core: SimCore) -> None:
    core.place(market("e", BUY, "0.01"), T0)
    with pytest.raises(ValueError, match="market"):
        core.place(stop("s", SELL, "0.01", "60000"), T0, fill_at=T0)
    assert core.order("s") is None


def test_a_pending_fill_survives_a_snapshot(core: SimCore) -> None:
    placed = core.place(market("e", BUY, "0.01"), T0, fill_at=T0 + timedelta(seconds=5)).report
    restored = SimCore(markets=[])
    restored.restore(json.loads(json.dumps(core.snapshot())))
    assert restored.fills_due() == core.fills_due()
    outcome = restored.fill_acknowledged(placed.exchange_order_id, T0)
    assert outcome is not None
    assert outcome.report.status is OrderStatus.FILLED


def test_exposure_starts_at_the_fill_not_at_the_acknowledgement(core: SimCore) -> None:
    placed = core.place(market("e", BUY, "0.01"), T0, fill_at=T0).report
    assert core.exposure(T0 + timedelta(seconds=10)) == []
    core.fill_acknowledged(placed.exchange_order_id, T0 + timedelta(seconds=10))
    (row,) = core.exposure(T0 + timedelta(seconds=12))
    assert (row.unprotected_seconds, row.max_unprotected_seconds) == (2.0, 2.0)


# ----- the in-process adapter, on a fake clock ------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> SimulatedExchange:
    return SimulatedExchange(now=clock, seed=7, sleep=clock.sleep)


def acknowledge(sim: SimulatedExchange, pattern: str | None = "*", delay: float = 2.0) -> None:
    """What a test does to the in-process sim: a predicate on the request, and a delay."""
    sim.faults.ack_only_if = (
        None if pattern is None else (lambda r: fnmatch.fnmatchcase(r.client_order_id, pattern))
    )
    sim.faults.fill_delay = delay


async def test_a_matching_market_order_is_answered_open_and_fills_after_the_delay(
    sim: SimulatedExchange, clock: FakeClock
) -> None:
    acknowledge(sim, "*-e1", 2.0)
    events = sim.stream()
    report = await sim.place_order(market("wd-p1-e1", BUY, "0.01"))
    assert (report.status, report.filled_qty) == (OrderStatus.OPEN, D(0))
    assert await take(events, 1) == [report]
    sim.set_mark(BTC, D("65100"))
    await take(events, 1)  # the mark
    await clock.run_for(1.9)
    assert (await sim.fetch_order(BTC, "wd-p1-e1", conditional=False)).status is OrderStatus.OPEN
    assert [o.client_order_id for o in await sim.fetch_open_orders()] == ["wd-p1-e1"]
    assert await sim.fetch_positions() == []
    assert await sim.fetch_fills(BTC, None) == []

    await clock.run_for(0.1)
    fill, filled, position = await take(events, 3)
    assert isinstance(fill, FillReport)
    assert (fill.client_order_id, fill.qty, fill.price, fill.at) == (
        "wd-p1-e1",
        D("0.01"),
        D("65100"),
        T0 + timedelta(seconds=2),
    )
    assert isinstance(filled, OrderReport)
    assert (filled.status, filled.filled_qty, filled.avg_price) == (OrderStatus.FILLED, D("0.01"), D("65100"))
    assert position == PositionReport(BTC, Side.LONG, D("0.01"), D("65100"))
    found = await sim.fetch_order(BTC, "wd-p1-e1", conditional=False)
    assert (found.status, found.filled_qty, found.avg_price) == (OrderStatus.FILLED, D("0.01"), D("65100"))
    assert [f.trade_id for f in await sim.fetch_fills(BTC, None)] == [fill.trade_id]
    assert [(p.side, p.qty) for p in await sim.fetch_positions()] == [(Side.LONG, D("0.01"))]
    assert await sim.fetch_open_orders() == []


async def test_a_cancel_before_the_fill_succeeds_and_it_never_fills(
    sim: SimulatedExchange, clock: FakeClock
) -> None:
    acknowledge(sim, "*", 2.0)
    events = sim.stream()
    await sim.place_order(market("e", BUY, "0.01"))
    canceled = await sim.cancel_order(BTC, "e", conditional=False)
    assert canceled.status is OrderStatus.CANCELED
    await clock.run_for(10)
    assert clock.sleepers == 0  # the delayed fill woke up and found nothing to do
    assert (await sim.fetch_order(BTC, "e", conditional=False)).status is OrderStatus.CANCELED
    assert await sim.fetch_positions() == []
    assert await sim.fetch_fills(BTC, None) == []
    got = await take(events, 2)
    assert [e.status for e in got if isinstance(e, OrderReport)] == [OrderStatus.OPEN, OrderStatus.CANCELED]
    await sim.close()
    assert [e async for e in events] == []  # and nothing after the cancel


async def test_with_partial_fill_a_part_fills_after_the_delay_and_the_rest_a_delay_later(
    sim: SimulatedExchange, clock: FakeClock
) -> None:
    acknowledge(sim, "*", 2.0)
    sim.faults.partial_fill = 0.4
    events = sim.stream()
    await sim.place_order(market("wd-p1-e1", BUY, "0.05"))
    await take(events, 1)  # acknowledged
    await clock.run_for(2.0)
    fill, part, _ = await take(events, 3)
    assert isinstance(fill, FillReport) and isinstance(part, OrderReport)
    assert fill.qty == D("0.02") and (part.status, part.filled_qty) == (OrderStatus.OPEN, D("0.02"))
    found = await sim.fetch_order(BTC, "wd-p1-e1", conditional=False)
    assert (found.status, found.filled_qty) == (OrderStatus.OPEN, D("0.02"))
    assert [(p.side, p.qty) for p in await sim.fetch_positions()] == [(Side.LONG, D("0.02"))]
    await clock.run_for(1.9)
    assert [f.qty for f in await sim.fetch_fills(BTC, None)] == [D("0.02")]
    await clock.run_for(0.1)
    rest, filled, _ = await take(events, 3)
    assert isinstance(rest, FillReport) and isinstance(filled, OrderReport)
    assert rest.qty == D("0.03") and (filled.status, filled.filled_qty) == (OrderStatus.FILLED, D("0.05"))
    assert [(p.side, p.qty) for p in await sim.fetch_positions()] == [(Side.LONG, D("0.05"))]


async def test_with_fill_parts_an_entry_fills_in_as_many_parts_each_a_delay_after_the_last(
    sim: SimulatedExchange, clock: FakeClock
) -> None:
    """fill_parts 3, partial_fill 0.5: half of 0.08 (0.04), half of the 0.04 left (0.02), then the
    rest (0.02), fill_delay apart; the order open and partly filled between them."""
    acknowledge(sim, "*", 1.0)
    sim.faults.partial_fill = 0.5
    sim.faults.fill_parts = 3
    events = sim.stream()
    await sim.place_order(market("wd-p1-e1", BUY, "0.08"))
    await take(events, 1)  # acknowledged
    seen: list[tuple[D, OrderStatus, D]] = []
    for _ in range(3):
        await clock.run_for(1.0)
        fill, report, _ = await take(events, 3)
        assert isinstance(fill, FillReport) and isinstance(report, OrderReport)
        seen.append((fill.qty, report.status, report.filled_qty))
    assert seen == [
        (D("0.04"), OrderStatus.OPEN, D("0.04")),
        (D("0.02"), OrderStatus.OPEN, D("0.06")),
        (D("0.02"), OrderStatus.FILLED, D("0.08")),
    ]
    assert [(p.side, p.qty) for p in await sim.fetch_positions()] == [(Side.LONG, D("0.08"))]
    await clock.run_for(5.0)
    assert len(await sim.fetch_fills(BTC, None)) == 3 and sim.core.fills_due() == {}


async def _next_trade(events: AsyncIterator[StreamEvent], cid: str) -> tuple[FillReport, OrderReport]:
    """The next trade of `cid` on the stream and the order report after it (all else skipped)."""
    fill: FillReport | None = None
    while True:
        [event] = await take(events, 1)
        if isinstance(event, FillReport) and event.client_order_id == cid:
            fill = event
        elif isinstance(event, OrderReport) and fill is not None:
            return fill, event


async def test_with_fire_in_parts_a_stop_the_mark_reaches_fills_in_parts_and_covers_until_its_last(
    sim: SimulatedExchange, clock: FakeClock
) -> None:
    """fire_in_parts, fill_parts 3, partial_fill 0.5: the stop the mark crosses leaves the book and
    fills half of 0.08, half of what is left, then the rest, fill_delay apart, open and partly
    filled between them; the position is covered by it all the while (the exchange executes it),
    and nothing more fires it again. Off, a stop fills whole at the crossing, as before."""
    await sim.place_order(market("wd-p1-e1", BUY, "0.08"))
    await sim.place_order(stop("wd-p1-s1", SELL, "0.08", "60000"))
    sim.faults.fire_in_parts = True
    sim.faults.partial_fill = 0.5
    sim.faults.fill_parts = 3
    sim.faults.fill_delay = 1.0
    events = sim.stream()
    sim.set_mark(BTC, D("59990"))
    seen: list[tuple[D, OrderStatus, D, D]] = []
    for _ in range(3):
        fill, report = await _next_trade(events, "wd-p1-s1")
        seen.append((fill.qty, report.status, report.filled_qty, sim.core.position(BTC).qty))
        [exposure] = sim.exposure()
        assert exposure.max_unprotected_seconds == 0, exposure
        sim.set_mark(BTC, D("59980"))  # moving past it again fires nothing more
        await clock.run_for(1.0)
    assert seen == [
        (D("0.04"), OrderStatus.OPEN, D("0.04"), D("0.04")),
        (D("0.02"), OrderStatus.OPEN, D("0.06"), D("0.02")),
        (D("0.02"), OrderStatus.FILLED, D("0.08"), D("0")),
    ]
    assert len(await sim.fetch_fills(BTC, None)) == 4 and sim.core.fills_due() == {}
    sim.faults.fire_in_parts = False
    await sim.place_order(market("wd-p1-e2", BUY, "0.08"))
    await sim.place_order(stop("wd-p1-s2", SELL, "0.08", "59000"))
    sim.set_mark(BTC, D("58990"))
    whole = await sim.fetch_order(BTC, "wd-p1-s2", conditional=True)
    assert (whole.status, whole.filled_qty) == (OrderStatus.FILLED, D("0.08"))


async def test_a_close_acknowledged_fills_in_parts_never_more_than_the_position_holds(
    sim: SimulatedExchange, clock: FakeClock
) -> None:
    """A reduce-only close fills in parts as an entry does (fill_parts 3, partial_fill 0.5 of 0.08:
    0.04, 0.02, 0.02), each part reducing the position; one whose position shrank meanwhile (a
    trade by hand) fills only what is left to reduce, never turning it round, and one whose
    position is gone expires."""
    await sim.place_order(market("wd-p1-e1", BUY, "0.1"))
    acknowledge(sim, "*-c*", 1.0)
    sim.faults.partial_fill = 0.5
    sim.faults.fill_parts = 3
    await sim.place_order(market("wd-p1-c1", SELL, "0.08", reduce_only=True))
    held: list[D] = []
    for _ in range(3):
        await clock.run_for(1.0)
        held.append(sim.core.position(BTC).qty)
    assert held == [D("0.06"), D("0.04"), D("0.02")]
    closed = await sim.fetch_order(BTC, "wd-p1-c1", conditional=False)
    assert (closed.status, closed.filled_qty) == (OrderStatus.FILLED, D("0.08"))
    # The position shrinks by hand between the parts: the rest fills only what is left.
    await sim.place_order(market("wd-p1-c2", SELL, "0.02", reduce_only=True))
    await clock.run_for(1.0)
    assert sim.core.position(BTC).qty == D("0.01")
    sim.external_order(BTC, SELL, D("0.005"))
    await clock.run_for(1.0)
    await clock.run_for(1.0)
    assert sim.core.position(BTC).qty == 0, "reduced to flat, not turned round"
    second = await sim.fetch_order(BTC, "wd-p1-c2", conditional=False)
    assert (second.status, second.filled_qty) == (OrderStatus.FILLED, D("0.015"))
    # Nothing left to reduce when its part comes due (flattened by hand): it expires, no trade.
    await sim.place_order(market("wd-p1-e2", BUY, "0.01"))
    await sim.place_order(market("wd-p1-c3", SELL, "0.02", reduce_only=True))
    sim.external_order(BTC, SELL, D("0.01"))
    await clock.run_for(3.0)
    third = await sim.fetch_order(BTC, "wd-p1-c3", conditional=False)
    assert (third.status, third.filled_qty) == (OrderStatus.CANCELED, D(0))


async def test_orders_the_knob_does_not_match_fill_at_once(sim: SimulatedExchange) -> None:
    acknowledge(sim, "*-e1", 5.0)
    assert (await sim.place_order(market("wd-p1-e2", BUY, "0.01"))).status is OrderStatus.FILLED
    await sim.place_order(stop("wd-p1-s1", SELL, "0.01", "60000"))  # conditional: untouched
    assert sim.core.fills_due() == {}
    acknowledge(sim, None, 5.0)
    assert (await sim.place_order(market("wd-p1-e1", BUY, "0.01"))).status is OrderStatus.FILLED


async def test_a_zero_delay_still_answers_before_the_fill(sim: SimulatedExchange, clock: FakeClock) -> None:
    acknowledge(sim, "*", 0.0)
    report = await sim.place_order(market("e", BUY, "0.01"))
    assert report.status is OrderStatus.OPEN
    await clock.run_for(0)
    assert (await sim.fetch_order(BTC, "e", conditional=False)).status is OrderStatus.FILLED


async def test_close_cancels_a_pending_fill(sim: SimulatedExchange, clock: FakeClock) -> None:
    acknowledge(sim, "*", 2.0)
    await sim.place_order(market("e", BUY, "0.01"))
    await sim.close()
    assert clock.sleepers == 0
    assert order_of(sim.core, "e").status is OrderStatus.OPEN


async def test_a_pending_fill_resumes_after_a_restart_at_its_due_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The state file keeps the order and its due time; the next process times the rest of the delay."""
    path = tmp_path / "sim.json"
    first = SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)
    acknowledge(first, "*", 5.0)
    await first.place_order(market("e", BUY, "0.01"))
    await first.close()  # or a crash: the placement was saved at once
    await clock.run_for(2)

    second = SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)
    assert second.faults.ack_only_if is None  # knobs are not persisted; the pending fill is
    assert (await second.fetch_order(BTC, "e", conditional=False)).status is OrderStatus.OPEN
    await clock.run_for(2.9)
    assert order_of(second.core, "e").status is OrderStatus.OPEN
    await clock.run_for(0.1)
    assert order_of(second.core, "e").status is OrderStatus.FILLED
    fill = second.core.fills(BTC)[-1]
    assert fill.at == T0 + timedelta(seconds=5)
    third = SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)
    assert order_of(third.core, "e").status is OrderStatus.FILLED  # the delayed fill was saved


async def test_an_overdue_fill_happens_at_once_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "sim.json"
    first = SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)
    acknowledge(first, "*", 1.0)
    await first.place_order(market("e", BUY, "0.01"))
    await first.close()
    await clock.run_for(60)  # down for a minute
    second = SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)
    second.set_mark(BTC, D("64000"))
    await clock.run_for(0)
    found = await second.fetch_order(BTC, "e", conditional=False)
    assert (found.status, found.avg_price) == (OrderStatus.FILLED, D("64000"))


async def test_a_restored_adapter_built_outside_a_loop_resumes_on_its_first_call(tmp_path: Path) -> None:
    """Constructed with no running loop, the adapter times the pending fill on its first async call."""
    clock = FakeClock()
    path = tmp_path / "sim.json"
    first = SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)
    acknowledge(first, "*", 1.0)
    await first.place_order(market("e", BUY, "0.01"))
    await first.close()

    def build() -> SimulatedExchange:
        return SimulatedExchange(now=clock, sleep=clock.sleep, state_file=path)

    second = await asyncio.to_thread(build)  # no event loop in that thread
    assert clock.sleepers == 0
    await second.fetch_positions()
    await clock.run_for(0)
    assert clock.sleepers == 1
    await clock.run_for(1)
    seen: list[StreamEvent] = await take(second.stream(), 3)
    assert [type(e) for e in seen] == [FillReport, OrderReport, PositionReport]


# ----- the server: POST /sim/faults, Binance answers, the user stream ---------------------
#
# The server keeps its real `now` (signed requests must fall inside recvWindow); the fake
# clock is its `sleep`, which times the delayed fill.

BTCUSDT = "BTCUSDT"


async def new_order(raw: RawClient, cid: str, qty: str = "0.01") -> tuple[int, Any]:
    params = {"symbol": BTCUSDT, "side": "BUY", "type": "MARKET", "quantity": qty, "newClientOrderId": cid}
    return await raw.call("POST", "/fapi/v1/order", params)


async def lookup(raw: RawClient, cid: str) -> Any:
    status, body = await raw.call("GET", "/fapi/v1/order", {"symbol": BTCUSDT, "origClientOrderId": cid})
    assert status == 200, body
    return body


async def test_the_server_answers_new_then_fills_after_the_delay_on_the_user_stream(clock: FakeClock) -> None:
    async with raw_server(sleep=clock.sleep) as raw:
        status, shown = await raw.control("POST", "/sim/faults", {"ack_only_if": "*-e1", "fill_delay": 1.5})
        assert (status, shown["ack_only_if"], shown["fill_delay"]) == (200, "*-e1", 1.5)
        _, shown = await raw.control("GET", "/sim/faults")
        assert (shown["ack_only_if"], shown["fill_delay"]) == ("*-e1", 1.5)
        _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
        ws_base = raw.base.replace("http", "ws")
        async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
            status, body = await new_order(raw, "wd-p1-e1")
            assert status == 200, body
            assert (body["status"], body["executedQty"], body["cumQuote"], body["clientOrderId"]) == (
                "NEW",
                "0",
                "0",
                "wd-p1-e1",
            )
            ack = await ws.receive_json(timeout=2)
            assert (ack["e"], ack["o"]["x"], ack["o"]["X"], ack["o"]["c"]) == (
                "ORDER_TRADE_UPDATE",
                "NEW",
                "NEW",
                "wd-p1-e1",
            )
            pending = await lookup(raw, "wd-p1-e1")
            assert (pending["status"], pending["executedQty"]) == ("NEW", "0")
            _, open_orders = await raw.call("GET", "/fapi/v1/openOrders", {"symbol": BTCUSDT})
            assert [o["clientOrderId"] for o in open_orders] == ["wd-p1-e1"]
            assert (await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT}))[1] == []
            _, positions = await raw.call("GET", "/fapi/v3/positionRisk")
            # flat: v3 lists the symbol only because it has an open order
            assert [(p["symbol"], p["positionAmt"]) for p in positions] == [(BTCUSDT, "0")]

            await raw.control("POST", "/sim/price", {"symbol": BTCUSDT, "price": "65100"})
            await clock.run_for(1.5)
            trade = await ws.receive_json(timeout=2)
            assert (trade["e"], trade["o"]["x"], trade["o"]["X"]) == ("ORDER_TRADE_UPDATE", "TRADE", "FILLED")
            assert (trade["o"]["i"], trade["o"]["L"], trade["o"]["z"]) == (body["orderId"], "65100", "0.01")
            account = await ws.receive_json(timeout=2)
            assert (account["e"], account["a"]["P"][0]["pa"]) == ("ACCOUNT_UPDATE", "0.01")

        filled = await lookup(raw, "wd-p1-e1")
        assert (filled["status"], filled["executedQty"], filled["avgPrice"]) == ("FILLED", "0.01", "65100")
        _, trades = await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT})
        assert [(t["orderId"], t["price"], t["qty"]) for t in trades] == [(body["orderId"], "65100", "0.01")]
        _, positions = await raw.call("GET", "/fapi/v3/positionRisk")
        assert [(p["symbol"], p["positionAmt"]) for p in positions] == [(BTCUSDT, "0.01")]
        assert (await raw.call("GET", "/fapi/v1/openOrders", {"symbol": BTCUSDT}))[1] == []
        status, other = await new_order(raw, "wd-p1-e2")  # the glob does not match: filled at once
        assert (status, other["status"]) == (200, "FILLED")


async def test_the_server_fills_an_entry_in_parts_as_binance_says_it(clock: FakeClock) -> None:
    """partial_fill: the first part's TRADE says PARTIALLY_FILLED with z cumulative and q the
    order's; lookups and open orders show it partly filled; the rest's TRADE says FILLED."""
    async with raw_server(sleep=clock.sleep) as raw:
        knobs = {"ack_only_if": "*-e1", "fill_delay": 1, "partial_fill": 0.4}
        status, shown = await raw.control("POST", "/sim/faults", knobs)
        assert (status, shown["partial_fill"]) == (200, 0.4)
        _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
        ws_base = raw.base.replace("http", "ws")
        async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
            _, body = await new_order(raw, "wd-p1-e1")
            assert body["status"] == "NEW"
            assert (await ws.receive_json(timeout=2))["o"]["X"] == "NEW"
            await clock.run_for(1)
            first = (await ws.receive_json(timeout=2))["o"]
            assert (first["x"], first["X"], first["q"], first["l"], first["z"]) == (
                "TRADE",
                "PARTIALLY_FILLED",
                "0.01",
                "0.004",
                "0.004",
            )
            assert (await ws.receive_json(timeout=2))["e"] == "ACCOUNT_UPDATE"  # no NEW after the part
            part = await lookup(raw, "wd-p1-e1")
            assert (part["status"], part["executedQty"], part["origQty"]) == (
                "PARTIALLY_FILLED",
                "0.004",
                "0.01",
            )
            _, open_orders = await raw.call("GET", "/fapi/v1/openOrders", {"symbol": BTCUSDT})
            assert [(o["clientOrderId"], o["status"]) for o in open_orders] == [
                ("wd-p1-e1", "PARTIALLY_FILLED")
            ]
            await raw.control("POST", "/sim/price", {"symbol": BTCUSDT, "price": "65100"})
            await clock.run_for(1)
            rest = (await ws.receive_json(timeout=2))["o"]
            assert (rest["X"], rest["l"], rest["z"], rest["L"], rest["ap"]) == (
                "FILLED",
                "0.006",
                "0.01",
                "65100",
                "65060",
            )
            assert first["t"] != rest["t"]
        filled = await lookup(raw, "wd-p1-e1")
        assert (filled["status"], filled["executedQty"]) == ("FILLED", "0.01")
        _, trades = await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT})
        assert [(t["price"], t["qty"]) for t in trades] == [("65000", "0.004"), ("65100", "0.006")]


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.4"])
async def test_a_partial_fill_outside_0_to_1_is_refused(clock: FakeClock, value: Any) -> None:
    async with raw_server(sleep=clock.sleep) as raw:
        status, answer = await raw.control("POST", "/sim/faults", {"partial_fill": value})
        assert (status, answer["code"]) == (400, -1102)
        assert "partial_fill" in answer["msg"]


async def test_the_server_fills_an_entry_in_three_parts_as_binance_says_it(clock: FakeClock) -> None:
    """fill_parts 3, partial_fill 0.5 on 0.01 BTC (lot 0.001): 0.005, then half the rest rounded
    down (0.002), then 0.003; two PARTIALLY_FILLED TRADEs (z cumulative) and one FILLED."""
    async with raw_server(sleep=clock.sleep) as raw:
        knobs = {"ack_only_if": "*-e1", "fill_delay": 1, "partial_fill": 0.5, "fill_parts": 3}
        await raw.control("POST", "/sim/faults", knobs)
        _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
        ws_base = raw.base.replace("http", "ws")
        async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
            await new_order(raw, "wd-p1-e1")
            assert (await ws.receive_json(timeout=2))["o"]["X"] == "NEW"
            trades = []
            for _ in range(3):
                await clock.run_for(1)
                trade = (await ws.receive_json(timeout=2))["o"]
                assert (await ws.receive_json(timeout=2))["e"] == "ACCOUNT_UPDATE"
                trades.append((trade["X"], trade["l"], trade["z"]))
                if trade["X"] != "FILLED":
                    found = await lookup(raw, "wd-p1-e1")
                    assert (found["status"], found["executedQty"]) == ("PARTIALLY_FILLED", trade["z"])
        assert trades == [
            ("PARTIALLY_FILLED", "0.005", "0.005"),
            ("PARTIALLY_FILLED", "0.002", "0.007"),
            ("FILLED", "0.003", "0.01"),
        ]
        _, fills = await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT})
        assert [t["qty"] for t in fills] == ["0.005", "0.002", "0.003"]


@pytest.mark.parametrize("value", [1, 0, 21, 2.5, "3", True])
async def test_fill_parts_other_than_a_whole_number_from_2_to_20_is_refused(
    clock: FakeClock, value: Any
) -> None:
    async with raw_server(sleep=clock.sleep) as raw:
        status, answer = await raw.control("POST", "/sim/faults", {"fill_parts": value, "fill_delay": 1})
        assert (status, answer["code"]) == (400, -1102)
        assert "fill_parts" in answer["msg"]
        _, shown = await raw.control("GET", "/sim/faults")
        assert (shown["fill_parts"], shown["fill_delay"]) == (2, 0.0)  # nothing of the body was set
        status, shown = await raw.control("POST", "/sim/faults", {"fill_parts": 4})
        assert (status, shown["fill_parts"]) == (200, 4)


async def test_the_server_cancels_a_pending_order_for_good(clock: FakeClock) -> None:
    async with raw_server(sleep=clock.sleep) as raw:
        await raw.control("POST", "/sim/faults", {"ack_only_if": True, "fill_delay": 2})
        _, body = await new_order(raw, "wd-p1-e1")
        assert body["status"] == "NEW"
        status, canceled = await raw.call(
            "DELETE", "/fapi/v1/order", {"symbol": BTCUSDT, "origClientOrderId": "wd-p1-e1"}
        )
        assert (status, canceled["status"], canceled["executedQty"]) == (200, "CANCELED", "0")
        await clock.run_for(10)
        assert (await lookup(raw, "wd-p1-e1"))["status"] == "CANCELED"
        assert (await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT}))[1] == []
        assert (await raw.call("GET", "/fapi/v3/positionRisk"))[1] == []
        _, shown = await raw.control("POST", "/sim/faults", {"ack_only_if": None})
        assert shown["ack_only_if"] is None


@pytest.mark.parametrize("body", [{"fill_delay": -1}, {"fill_delay": "2"}, {"ack_only_if": 5}])
async def test_bad_ack_knob_values_are_refused(clock: FakeClock, body: dict[str, Any]) -> None:
    async with raw_server(sleep=clock.sleep) as raw:
        status, answer = await raw.control("POST", "/sim/faults", body)
        assert (status, answer["code"]) == (400, -1102)
        assert "unknown" not in answer["msg"]  # a known knob, refused for its value


async def test_a_pending_fill_survives_a_server_restart_on_its_state_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The order and its due time are in --state-file; the restarted server (no knobs set) fills it."""
    path = tmp_path / "sim-server.json"
    async with raw_server(sleep=clock.sleep, state_file=path) as raw:
        await raw.control("POST", "/sim/faults", {"ack_only_if": "*", "fill_delay": 3})
        _, body = await new_order(raw, "wd-p1-e1")
        assert body["status"] == "NEW"
    async with raw_server(sleep=clock.sleep, state_file=path) as raw:
        _, shown = await raw.control("GET", "/sim/faults")
        assert (shown["ack_only_if"], shown["fill_delay"]) == (None, 0.0)
        assert (await lookup(raw, "wd-p1-e1"))["status"] == "NEW"
        await clock.run_for(3)
        filled = await lookup(raw, "wd-p1-e1")
        assert (filled["status"], filled["executedQty"]) == ("FILLED", "0.01")


async def test_the_rest_of_an_entry_filled_in_parts_survives_a_server_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A part filled, the rest pending in --state-file: the restarted server (no knobs set) shows
    the order partly filled, then fills what is left of it (not the whole order again) when its
    delay ends, at the mark of then, and the order's trades add up to its quantity."""
    path = tmp_path / "sim-server.json"
    async with raw_server(sleep=clock.sleep, state_file=path) as raw:
        knobs = {"ack_only_if": "*-e1", "fill_delay": 2, "partial_fill": 0.4}
        await raw.control("POST", "/sim/faults", knobs)
        _, body = await new_order(raw, "wd-p1-e1")
        assert body["status"] == "NEW"
        await clock.run_for(2)
        part = await lookup(raw, "wd-p1-e1")
        assert (part["status"], part["executedQty"]) == ("PARTIALLY_FILLED", "0.004")
    async with raw_server(sleep=clock.sleep, state_file=path) as raw:
        _, shown = await raw.control("GET", "/sim/faults")
        assert (shown["ack_only_if"], shown["partial_fill"]) == (None, 0.0)
        part = await lookup(raw, "wd-p1-e1")
        assert (part["status"], part["executedQty"], part["origQty"]) == ("PARTIALLY_FILLED", "0.004", "0.01")
        await raw.control("POST", "/sim/price", {"symbol": BTCUSDT, "price": "65100"})
        await clock.run_for(2)
        filled = await lookup(raw, "wd-p1-e1")
        assert (filled["status"], filled["executedQty"], filled["avgPrice"]) == ("FILLED", "0.01", "65060")
        _, trades = await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT})
        assert [(t["price"], t["qty"]) for t in trades] == [("65000", "0.004"), ("65100", "0.006")]
        _, risk = await raw.call("GET", "/fapi/v2/positionRisk", {"symbol": BTCUSDT})
        assert [p["positionAmt"] for p in risk] == ["0.01"]


@contextlib.asynccontextmanager
async def ccxt_acknowledging(clock: FakeClock, **knobs: Any) -> AsyncIterator[Any]:
    """warden's ccxt adapter on a server with `knobs` set, whose entry "wd-p1-e1" (0.01 BTC) it
    has sent and seen acknowledged, OPEN and unfilled."""
    from warden.adapters.ccxt import CcxtExchange

    async with raw_server(sleep=clock.sleep) as raw:
        await raw.control("POST", "/sim/faults", {"ack_only_if": "*-e1", **knobs})
        exchange = CcxtExchange.create(
            api_key="sim-key",
            api_secret="sim-secret",
            base_url=raw.base,
            enable_rate_limit=False,
            timeout_ms=5000,
        )
        try:
            await exchange.instruments()
            report = await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
            assert (report.status, report.filled_qty) == (OrderStatus.OPEN, D(0))
            yield exchange
        finally:
            await exchange.close()


async def test_unmodified_ccxt_reads_the_acknowledgement_as_open_then_finds_it_filled(
    clock: FakeClock,
) -> None:
    """warden's ccxt adapter sees an OPEN, unfilled entry; after the delay a lookup says FILLED."""
    async with ccxt_acknowledging(clock, fill_delay=1) as exchange:
        assert (await exchange.fetch_order(BTC, "wd-p1-e1", conditional=False)).status is OrderStatus.OPEN
        await clock.run_for(1)
        found = await exchange.fetch_order(BTC, "wd-p1-e1", conditional=False)
        assert (found.status, found.filled_qty, found.avg_price) == (
            OrderStatus.FILLED,
            D("0.01"),
            D("65000"),
        )


async def test_unmodified_ccxt_reads_an_entry_filled_in_parts_as_open_then_filled(clock: FakeClock) -> None:
    """warden's ccxt adapter reads a PARTIALLY_FILLED entry as OPEN with its part filled, then FILLED."""
    async with ccxt_acknowledging(clock, fill_delay=1, partial_fill=0.4) as exchange:
        await clock.run_for(1)
        part = await exchange.fetch_order(BTC, "wd-p1-e1", conditional=False)
        assert (part.status, part.qty, part.filled_qty) == (OrderStatus.OPEN, D("0.01"), D("0.004"))
        await clock.run_for(1)
        found = await exchange.fetch_order(BTC, "wd-p1-e1", conditional=False)
        assert (found.status, found.filled_qty) == (OrderStatus.FILLED, D("0.01"))
