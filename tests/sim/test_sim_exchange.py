"""The in-process adapter: the Exchange port's contract and every fault knob."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from warden.adapters.sim import SimulatedExchange
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, PositionReport, StreamEvent, StreamGap
from warden.domain.values import OrderSide, OrderType
from warden.ports import Exchange, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

from .builders import BTC, BUY, SELL, T0, ManualTime, RecordingSleep, market, stop, take, take_profit

D = Decimal


def as_port(exchange: SimulatedExchange) -> Exchange:
    """Type-checked proof that the adapter satisfies the port."""
    return exchange


async def test_market_order_returns_filled_report_and_streams_its_events(exchange: SimulatedExchange) -> None:
    """place_order returns the FILLED state; the stream then carries OPEN, fill, FILLED and position."""
    events = as_port(exchange).stream()
    report = await exchange.place_order(market("m1", BUY, "0.01"))
    assert (report.status, report.filled_qty, report.avg_price) == (OrderStatus.FILLED, D("0.01"), D("65000"))
    got = await take(events, 4)
    assert [type(e) for e in got] == [OrderReport, FillReport, OrderReport, PositionReport]
    assert got[2] == report


async def test_core_rejection_becomes_order_rejected_with_the_reason(exchange: SimulatedExchange) -> None:
    """A stop the mark has already crossed raises OrderRejected naming Binance's -2021."""
    with pytest.raises(OrderRejected, match="-2021"):
        await exchange.place_order(stop("s", SELL, "0.01", "65000"))
    assert exchange.core.order("s") is None


async def test_fetch_order_by_client_id_respects_symbol_and_conditional_flag(
    exchange: SimulatedExchange,
) -> None:
    """An order is found by client id only under its own symbol and endpoint; others raise OrderNotFound."""
    await exchange.place_order(stop("s", SELL, "0.01", "60000"))
    found = await exchange.fetch_order(BTC, "s", conditional=True)
    assert found.status is OrderStatus.OPEN
    for symbol, cid, conditional in [(BTC, "s", False), (BTC, "nope", True), (found.symbol, "x", False)]:
        with pytest.raises(OrderNotFound):
            await exchange.fetch_order(symbol, cid, conditional)


async def test_cancel_order_cancels_once_then_reports_not_found(exchange: SimulatedExchange) -> None:
    """Canceling an open stop returns CANCELED and removes it; a second cancel raises OrderNotFound."""
    await exchange.place_order(stop("s", SELL, "0.01", "60000"))
    report = await exchange.cancel_order(BTC, "s", conditional=True)
    assert report.status is OrderStatus.CANCELED
    assert await exchange.fetch_open_orders() == []
    with pytest.raises(OrderNotFound):
        await exchange.cancel_order(BTC, "s", conditional=True)


async def test_queries_list_open_orders_positions_and_fills(exchange: SimulatedExchange) -> None:
    """Open orders include conditional ones, positions omit flat symbols, fills filter by time."""
    await exchange.place_order(market("e", BUY, "0.02"))
    await exchange.place_order(stop("s", SELL, "0.02", "60000"))
    await exchange.place_order(take_profit("tp", SELL, "0.01", "70000"))
    assert [o.client_order_id for o in await exchange.fetch_open_orders()] == ["s", "tp"]
    positions = await exchange.fetch_positions()
    assert [(p.symbol, p.qty) for p in positions] == [(BTC, D("0.02"))]
    assert [f.client_order_id for f in await exchange.fetch_fills(BTC, T0)] == ["e"]
    assert await exchange.instruments() == exchange.core.instruments
    assert await exchange.mark_price(BTC) == D("65000")


async def test_set_mark_fires_a_stop_and_streams_the_fill(exchange: SimulatedExchange) -> None:
    """Moving the mark through a stop closes the position and streams MarkPrice, fill, FILLED, position."""
    await exchange.place_order(market("e", BUY, "0.01"))
    await exchange.place_order(stop("s", SELL, "0.01", "64000"))
    events = exchange.stream()
    await take(events, 5)
    exchange.set_mark(BTC, D("63000"))
    got = await take(events, 4)
    assert [type(e) for e in got] == [MarkPrice, FillReport, OrderReport, PositionReport]
    assert await exchange.fetch_positions() == []


async def test_outside_actor_trades_and_cancels_our_stop(exchange: SimulatedExchange) -> None:
    """external_order adds to the position under an ext- id; cancel_external removes warden's stop."""
    await exchange.place_order(market("e", BUY, "0.01"))
    await exchange.place_order(stop("s", SELL, "0.01", "64000"))
    outside = exchange.external_order(BTC, BUY, D("0.01"))
    assert outside.client_order_id == "ext-1"
    assert exchange.cancel_external("s").status is OrderStatus.CANCELED
    assert (await exchange.fetch_positions())[0].qty == D("0.02")
    assert await exchange.fetch_open_orders() == []
    with pytest.raises(OrderRejected):
        exchange.external_order(BTC, SELL, D("0.01"), reduce_only=True, order_type=OrderType.STOP_MARKET)


async def test_reject_if_refuses_without_executing(exchange: SimulatedExchange) -> None:
    """With reject_if matching, place_order raises OrderRejected and the exchange never saw the order."""
    exchange.faults.reject_if = lambda request: request.side is OrderSide.BUY
    with pytest.raises(OrderRejected):
        await exchange.place_order(market("m1", BUY, "0.01"))
    assert exchange.core.order("m1") is None
    assert (await exchange.place_order(market("m2", SELL, "0.01"))).status is OrderStatus.FILLED


async def test_unavailable_if_raises_without_executing(exchange: SimulatedExchange) -> None:
    """With unavailable_if matching, place_order raises ExchangeUnavailable and nothing is traded."""
    exchange.faults.unavailable_if = lambda request: True
    with pytest.raises(ExchangeUnavailable):
        await exchange.place_order(market("m1", BUY, "0.01"))
    assert exchange.core.order("m1") is None
    assert exchange.core.positions() == []


async def test_timeout_after_execution_leaves_a_filled_order_to_find(exchange: SimulatedExchange) -> None:
    """The seed-001 case: the call times out but the order filled, and fetch_order by client id shows it."""
    exchange.faults.timeout_after_execution_if = lambda request: request.client_order_id == "m1"
    events = exchange.stream()
    with pytest.raises(ExchangeTimeout):
        await exchange.place_order(market("m1", BUY, "0.01"))
    found = await exchange.fetch_order(BTC, "m1", conditional=False)
    assert (found.status, found.filled_qty) == (OrderStatus.FILLED, D("0.01"))
    assert len(await exchange.fetch_positions()) == 1
    assert any(isinstance(e, FillReport) for e in await take(events, 4))


@pytest.mark.parametrize(
    "query",
    [
        lambda ex: ex.fetch_order(BTC, "e", False),
        lambda ex: ex.fetch_open_orders(),
        lambda ex: ex.fetch_positions(),
        lambda ex: ex.fetch_fills(BTC, None),
    ],
)
async def test_fail_queries_makes_every_fetch_unavailable(
    exchange: SimulatedExchange, query: Callable[[SimulatedExchange], Awaitable[object]]
) -> None:
    """With fail_queries, fetches raise ExchangeUnavailable (never an empty answer); orders still work."""
    await exchange.place_order(market("e", BUY, "0.01"))
    exchange.faults.fail_queries = True
    with pytest.raises(ExchangeUnavailable):
        await query(exchange)
    assert (await exchange.place_order(market("f", BUY, "0.01"))).status is OrderStatus.FILLED


async def test_rest_latency_awaits_the_injected_sleep(
    exchange: SimulatedExchange, sleep: RecordingSleep
) -> None:
    """Each REST call sleeps rest_latency through the injected sleep, and not at all when it is zero."""
    await exchange.fetch_positions()
    assert sleep.calls == []
    exchange.faults.rest_latency = 0.25
    await exchange.fetch_positions()
    await exchange.place_order(market("m", BUY, "0.01"))
    assert sleep.calls == [0.25, 0.25]


async def test_stream_latency_delays_each_event(exchange: SimulatedExchange, sleep: RecordingSleep) -> None:
    """With stream_latency, the consumer waits (through the injected sleep) until each event is due."""
    exchange.faults.stream_latency = 5.0
    exchange.set_mark(BTC, D("65001"))
    await take(exchange.stream(), 1)
    assert len(sleep.calls) == 1
    assert 4.0 < sleep.calls[0] <= 5.0


async def test_drop_rate_loses_events(exchange: SimulatedExchange) -> None:
    """With drop_rate 1 every event is lost; once it is back to 0 events flow again."""
    events = exchange.stream()
    exchange.faults.drop_rate = 1.0
    await exchange.place_order(market("m", BUY, "0.01"))
    exchange.faults.drop_rate = 0.0
    exchange.set_mark(BTC, D("65001"))
    assert await take(events, 1) == [MarkPrice(BTC, D("65001"), T0)]
    assert exchange.lost_events == 4


async def test_duplicate_rate_delivers_events_twice(exchange: SimulatedExchange) -> None:
    """With duplicate_rate 1 each event arrives twice in a row."""
    exchange.faults.duplicate_rate = 1.0
    exchange.set_mark(BTC, D("65001"))
    exchange.set_mark(BTC, D("65002"))
    got = await take(exchange.stream(), 4)
    assert got == [MarkPrice(BTC, D(p), T0) for p in ("65001", "65001", "65002", "65002")]


async def test_reorder_rate_swaps_events_within_a_batch(exchange: SimulatedExchange) -> None:
    """With reorder_rate 1 adjacent events are swapped: the OPEN report arrives after the fill."""
    exchange.faults.reorder_rate = 1.0
    report = await exchange.place_order(market("m", BUY, "0.01"))
    got = await take(exchange.stream(), 4)
    assert [type(e) for e in got] == [FillReport, OrderReport, PositionReport, OrderReport]
    assert got[0:1] != [report]
    last = got[3]
    assert isinstance(last, OrderReport)
    assert last.status is OrderStatus.OPEN


async def _delivered(seed: int) -> list[StreamEvent]:
    exchange = SimulatedExchange(now=ManualTime(), seed=seed)
    exchange.faults.drop_rate = 0.5
    for i in range(40):
        exchange.set_mark(BTC, D(65000 + i))
    await exchange.close()
    return [e async for e in exchange.stream()]


async def test_stream_faults_are_deterministic_per_seed() -> None:
    """The same seed drops the same events; another seed drops others."""
    first = await _delivered(5)
    assert 5 < len(first) < 35
    assert first == await _delivered(5)
    assert first != await _delivered(6)


async def _place_while_consuming(exchange: SimulatedExchange) -> tuple[OrderReport, list[StreamEvent]]:
    seen: list[StreamEvent] = []

    async def consume() -> None:
        async for event in exchange.stream():
            seen.append(event)

    async with asyncio.TaskGroup() as group:
        consumer = group.create_task(consume())
        report = await exchange.place_order(market("m", BUY, "0.01"))
        snapshot = list(seen)
        consumer.cancel()
    return report, snapshot


async def test_events_before_response_delivers_the_fill_before_place_order_returns(
    exchange: SimulatedExchange,
) -> None:
    """With events_before_response, the consumer has taken every event of the order before the response."""
    exchange.faults.events_before_response = True
    report, seen_at_response = await _place_while_consuming(exchange)
    assert [type(e) for e in seen_at_response] == [OrderReport, FillReport, OrderReport, PositionReport]
    assert seen_at_response[2] == report


async def test_without_the_fault_the_response_comes_before_the_events(exchange: SimulatedExchange) -> None:
    """By default place_order returns before the consumer has seen anything of the order."""
    _, seen_at_response = await _place_while_consuming(exchange)
    assert seen_at_response == []


async def test_events_before_response_does_not_hang_without_a_consumer(now: ManualTime) -> None:
    """With nobody reading the stream, the wait is bounded and place_order still returns."""
    exchange = SimulatedExchange(now=now, response_wait=0.01)
    exchange.faults.events_before_response = True
    report = await exchange.place_order(market("m", BUY, "0.01"))
    assert report.status is OrderStatus.FILLED


async def test_disconnect_loses_events_and_reconnect_yields_a_gap(exchange: SimulatedExchange) -> None:
    """Events while disconnected are lost (REST still sees the order); the stream resumes with a StreamGap."""
    events = exchange.stream()
    exchange.disconnect()
    await exchange.place_order(market("m", BUY, "0.01"))
    exchange.reconnect()
    exchange.set_mark(BTC, D("65001"))
    gap, mark = await take(events, 2)
    assert isinstance(gap, StreamGap)
    assert mark == MarkPrice(BTC, D("65001"), T0)
    assert exchange.lost_events == 4
    assert (await exchange.fetch_order(BTC, "m", conditional=False)).status is OrderStatus.FILLED


async def test_close_ends_the_stream_and_refuses_calls(exchange: SimulatedExchange) -> None:
    """After close the stream finishes once drained and every REST call raises ExchangeUnavailable."""
    exchange.set_mark(BTC, D("65001"))
    await exchange.close()
    assert [e async for e in exchange.stream()] == [MarkPrice(BTC, D("65001"), T0)]
    with pytest.raises(ExchangeUnavailable):
        await exchange.place_order(market("m", BUY, "0.01"))
