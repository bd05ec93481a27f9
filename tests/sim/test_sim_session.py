"""`new_session`: a warden restart as the exchange sees it (the old websocket died with the process)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from warden.adapters.sim import SimulatedExchange
from warden.domain.orders import OrderStatus
from warden.domain.reports import MarkPrice, StreamEvent, StreamGap

from .builders import BTC, BUY, T0, market, take

D = Decimal


async def test_new_session_discards_untaken_events_and_starts_fresh(exchange: SimulatedExchange) -> None:
    """Queued events are gone and counted as lost; the next consumer sees only new events, no gap."""
    await exchange.place_order(market("m", BUY, "0.01"))
    assert exchange.new_session() == 4
    assert exchange.lost_events == 4
    exchange.set_mark(BTC, D("65001"))
    assert await take(exchange.stream(), 1) == [MarkPrice(BTC, D("65001"), T0)]


async def test_new_session_keeps_the_account(exchange: SimulatedExchange) -> None:
    """Orders, positions and fills survive: only the stream is reset."""
    await exchange.place_order(market("m", BUY, "0.01"))
    exchange.new_session()
    assert (await exchange.fetch_order(BTC, "m", conditional=False)).status is OrderStatus.FILLED
    assert [p.qty for p in await exchange.fetch_positions()] == [D("0.01")]
    assert len(await exchange.fetch_fills(BTC, None)) == 1


async def test_new_session_ends_a_consumer_still_reading_the_old_stream(exchange: SimulatedExchange) -> None:
    """An old consumer finishes instead of stealing the new session's events."""
    old_seen: list[StreamEvent] = []
    took_one = asyncio.Event()

    async def old_consumer() -> None:
        async for event in exchange.stream():
            old_seen.append(event)
            took_one.set()

    task = asyncio.get_running_loop().create_task(old_consumer())
    exchange.set_mark(BTC, D("65001"))
    async with asyncio.timeout(2):
        await took_one.wait()
    exchange.new_session()
    async with asyncio.timeout(2):
        await task
    exchange.set_mark(BTC, D("65002"))
    assert old_seen == [MarkPrice(BTC, D("65001"), T0)]
    assert await take(exchange.stream(), 1) == [MarkPrice(BTC, D("65002"), T0)]


async def test_new_session_reconnects_a_dropped_stream_without_a_gap(exchange: SimulatedExchange) -> None:
    """A restart while disconnected comes back connected, and the fresh stream carries no StreamGap."""
    exchange.disconnect()
    exchange.set_mark(BTC, D("65001"))
    exchange.new_session()
    exchange.set_mark(BTC, D("65002"))
    got = await take(exchange.stream(), 1)
    assert got == [MarkPrice(BTC, D("65002"), T0)]
    assert not any(isinstance(e, StreamGap) for e in got)


async def test_new_session_releases_a_place_order_waiting_for_its_events(exchange: SimulatedExchange) -> None:
    """Under events_before_response, a restart means nobody will take the events: the wait ends."""
    exchange.faults.events_before_response = True
    placing = asyncio.get_running_loop().create_task(exchange.place_order(market("m", BUY, "0.01")))
    await asyncio.sleep(0)
    exchange.new_session()
    async with asyncio.timeout(0.5):
        report = await placing
    assert report.status is OrderStatus.FILLED


async def test_a_closed_stream_stays_closed_across_a_new_session(exchange: SimulatedExchange) -> None:
    """close, then new_session: iterating the stream still ends at once."""
    await exchange.close()
    exchange.new_session()
    async with asyncio.timeout(1):
        assert [e async for e in exchange.stream()] == []
