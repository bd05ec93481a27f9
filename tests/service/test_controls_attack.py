"""Controls and limits attacked: entries in flight, signals racing the kill switch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tests.service.harness import BTC, FAST, Harness
from warden.adapters.forwarding import ForwardingStore
from warden.adapters.sim import SimulatedExchange
from warden.domain.controls import LimitExceeded, Limits
from warden.domain.position import PositionStatus
from warden.domain.values import Symbol
from warden.ports import Store, Transition
from warden.service.commands import TradingRefused

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


class HeldOpening(ForwardingStore):
    """The store, with the commit of a new position (the open saga's intent) held until released:
    a slow database at the moment a signal is committed."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.armed = False
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def _hold(self, transitions: Sequence[Transition]) -> None:
        if self.armed and any(t.expected_version is None for t in transitions):
            self.armed = False
            self.arrived.set()
            await self.release.wait()

    async def commit(self, transition: Transition) -> None:
        await self._hold([transition])
        await self.inner.commit(transition)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        await self._hold(transitions)
        await self.inner.commit_many(transitions)


async def test_an_entry_whose_commit_the_kill_switch_overtakes_is_never_sent(
    store_url: str, sim: SimulatedExchange
) -> None:
    """A signal passes every check and its intent is being committed (a slow database) when the
    kill switch goes on. Nothing had been sent when the kill answered, so nothing may be sent after
    it: the entry is refused (nothing sent), the exchange never sees an order on the symbol."""
    held: list[HeldOpening] = []

    def wrap(part: Any) -> Any:
        if isinstance(part, ForwardingStore):
            held.append(HeldOpening(part))
            return held[-1]
        return part

    h = Harness(store_url, sim, wrap=wrap)
    await h.start()
    try:
        gate = held[-1]
        gate.armed = True
        signal = asyncio.ensure_future(h.open("long", symbol=BTC, usd="200"))
        await asyncio.wait_for(gate.arrived.wait(), 5)
        report = await h.engine.kill(reason="halt")
        assert report.controls.killed
        gate.release.set()
        with pytest.raises(TradingRefused, match="kill switch on"):
            await signal
        await h.engine.wait_idle()
        assert h.sim.core.orders(BTC) == []
        [position] = await h.store.list_positions(include_closed=True)
        assert position.status is PositionStatus.FAILED
    finally:
        gate.release.set()
        await h.stop()
