"""A host whose clock is off from Bybit's, through UNMODIFIED ccxt against the simulator's Bybit face
running on an offset clock (`create_server_app(clock_offset=)`), in process: what the adapter asks
for by time must be asked on the exchange's clock, not the host's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.helpers import eventually
from warden.adapters.sim.server import create_server_app, running_app
from warden.domain.reports import FillReport
from warden.domain.values import OrderSide

from .conftest import BybitSim
from .flows import BTC, Events, market

CID = "wd-a1b2c3-0123456789ab"


@pytest.fixture
async def behind() -> AsyncIterator[BybitSim]:
    """Bybit's clock 7 s ahead of this host's: the host is 7 s behind (within what ccxt corrects)."""
    app = create_server_app(venue="bybit", price_interval=None, push_interval=0.05, clock_offset=7.0)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        yield BybitSim(app, base, session)


async def test_a_fill_just_made_is_read_back_on_a_host_behind_the_exchange(behind: BybitSim) -> None:
    """/v5/execution/list is asked up to `endTime`: taken from the host's clock, a host 7 s behind
    asked for nothing newer than 7 s ago by Bybit's clock, so the fill just made was missing from
    the catch-up read (a close's fills, a position's adoption) for those seconds."""
    adapter = behind.bybit_exchange()
    try:
        await adapter.instruments()
        report = await adapter.place_order(market(CID, OrderSide.BUY, "0.01"))
        assert report.client_order_id == CID
        fills = await adapter.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
        assert [(f.client_order_id, f.qty) for f in fills] == [(CID, report.qty)]
    finally:
        await adapter.close()


async def test_the_private_stream_logs_in_on_a_host_more_than_10_s_behind() -> None:
    """ccxt's Bybit socket login signs `expires` = host time + 10 s, uncorrected: on a host 12 s
    behind, Bybit finds it already expired and refuses the login, for ever, so fills and order
    updates came only from REST. The adapter logs in with `expires` on the exchange's clock."""
    app = create_server_app(venue="bybit", price_interval=None, push_interval=0.05, clock_offset=12.0)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        sim = BybitSim(app, base, session)
        adapter = sim.bybit_exchange()
        events = None
        try:
            await adapter.instruments()  # measures the clock: the host is 12 s behind
            events = Events(adapter.stream())
            await eventually(
                lambda: any({"order", "execution"} <= s.topics for s in sim.bybit.sessions.values()),
                what="the private subscriptions",
            )
            await adapter.place_order(market(CID, OrderSide.BUY, "0.01"))
            fill = await events.wait_for(lambda e: isinstance(e, FillReport))
            assert isinstance(fill, FillReport) and fill.client_order_id == CID
        finally:
            if events is not None:
                await events.stop()
            await adapter.close()


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_fills_since_a_host_time_are_read_on_a_host_ahead_of_the_exchange(venue: str) -> None:
    """The engine asks for fills since a time on its own clock (a position's opening, less a
    minute: the reconciler's catch-up). On a host 90 s ahead, that instant is 90 s later by the
    exchange's clock than the fills it means, so the entry's fill was not read at all."""
    app = create_server_app(venue=venue, price_interval=None, push_interval=0.05, clock_offset=-90.0)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        sim = BybitSim(app, base, session)
        adapter = sim.bybit_exchange() if venue == "bybit" else sim.exchange()
        try:
            opened_at = datetime.now(UTC)  # the engine's clock, 90 s ahead of the exchange's
            await adapter.instruments()
            report = await adapter.place_order(market(CID, OrderSide.BUY, "0.01"))
            fills = await adapter.fetch_fills(BTC, opened_at - timedelta(minutes=1))
            assert [(f.client_order_id, f.qty) for f in fills] == [(CID, report.qty)]
        finally:
            await adapter.close()


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_the_latest_fills_are_read_though_the_measured_difference_lags_by_the_answers_travel(
    venue: str,
) -> None:
    """ccxt measures host minus exchange time as the host's clock when the time endpoint's answer
    arrived less the time it states: it overstates the host's lead by the answer's travel (a few
    ms here, tens to hundreds over the internet, more on a loaded host). "Now" on the exchange's
    clock then lies that far behind the exchange's present, and a fill of that last moment fell
    after the query's end. The travel is made 0.5 s here by adding it to what was measured."""
    app = create_server_app(venue=venue, price_interval=None, push_interval=0.05, clock_offset=-90.0)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        sim = BybitSim(app, base, session)
        adapter = sim.bybit_exchange() if venue == "bybit" else sim.exchange()
        try:
            opened_at = datetime.now(UTC)
            await adapter.instruments()
            assert adapter.clock_difference_ms is not None
            adapter.clock_difference_ms += 500
            report = await adapter.place_order(market(CID, OrderSide.BUY, "0.01"))
            fills = await adapter.fetch_fills(BTC, opened_at - timedelta(minutes=1))
            assert [(f.client_order_id, f.qty) for f in fills] == [(CID, report.qty)]
        finally:
            await adapter.close()
