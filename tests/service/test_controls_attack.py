"""Controls and limits attacked: entries in flight, signals racing the kill switch."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest

from tests.service.harness import BTC, FAST, Harness
from warden.adapters.sim import SimulatedExchange
from warden.domain.controls import LimitExceeded, Limits
from warden.domain.values import Symbol

ETH = Symbol("ETH/USDT:USDT")


async def test_an_entry_still_in_flight_counts_toward_max_total_usd(
    store_url: str, sim: SimulatedExchange
) -> None:
    """Two signals for different symbols, 300 USD each, under max_total_usd = 400: the first is
    committed and its entry is on its way to the exchange (not yet answered) when the second
    arrives. The first's notional must count: the second is refused, nothing is sent for it."""
    h = await Harness(store_url, sim, config=replace(FAST, limits=Limits(max_total_usd=Decimal(400)))).start()
    try:
        h.probe.hold_entries = True
        first = asyncio.ensure_future(h.open("long", symbol=BTC, usd="300"))
        await asyncio.wait_for(h.probe.entry_arrived.wait(), 5)
        with pytest.raises(LimitExceeded) as info:
            await h.open("long", symbol=ETH, usd="300")
        assert info.value.limit == "max_total_usd"
        h.probe.release_entries()
        await first
        await h.engine.wait_idle()
        assert h.sim.core.position(ETH).qty == 0
        assert not h.sim.core.open_orders(ETH)
    finally:
        h.probe.release_entries()
        await h.stop()
