"""Controls and limits attacked: entries in flight, signals racing the kill switch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

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


W = TypeVar("W", bound=ForwardingStore)


def stores_wrapped_in(kind: Callable[[Store], W]) -> tuple[list[W], Callable[[Any], Any]]:
    """A Harness `wrap` that puts each store the harness builds in `kind`, and the list of them."""
    made: list[W] = []

    def wrap(part: Any) -> Any:
        if isinstance(part, ForwardingStore):
            made.append(kind(part))
            return made[-1]
        return part

    return made, wrap


async def test_an_entry_whose_commit_the_kill_switch_overtakes_is_never_sent(
    store_url: str, sim: SimulatedExchange
) -> None:
    """A signal passes every check and its intent is being committed (a slow database) when the
    kill switch goes on. Nothing had been sent when the kill answered, so nothing may be sent after
    it: the entry is refused (nothing sent), the exchange never sees an order on the symbol."""
    held, wrap = stores_wrapped_in(HeldOpening)

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


class HeldControlsRead(ForwardingStore):
    """The store, with the startup read of the controls held until released (answering what the
    database held when it was read): a slow database at the moment an engine starts or takes an
    account over."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def load_controls(self) -> Any:
        stored = await self.inner.load_controls()
        self.arrived.set()
        await self.release.wait()
        return stored


async def test_a_kill_while_the_engine_reads_its_controls_at_start_is_kept(
    store_url: str, sim: SimulatedExchange
) -> None:
    """A kill switch turned on while a starting engine (a start, a fleet's restart, a takeover) is
    reading its stored controls: the kill answered 'on', and is stored; the read, made before it,
    must not put the engine back to trading. It did: the start replaced the controls in force by
    what it had read, and signals were accepted under a kill the database holds."""
    held, wrap = stores_wrapped_in(HeldControlsRead)

    h = await Harness(store_url, sim, wrap=wrap).start(ready=False)
    try:
        [store] = held
        starting = asyncio.ensure_future(h.engine.start())
        await asyncio.wait_for(store.arrived.wait(), 5)
        killing = asyncio.ensure_future(h.engine.kill(reason="everything off"))
        for _ in range(20):  # turns of the loop: the kill is under way (no real time passes)
            await asyncio.sleep(0)
        assert not starting.done()
        store.release.set()
        await starting
        assert (await killing).controls.killed
        assert (await h.store.load_controls()).killed
        assert h.engine.status().controls.killed
        with pytest.raises(TradingRefused):
            await h.open("long", symbol=ETH, usd="100")
        assert h.sim.core.position(ETH).qty == 0
    finally:
        store.release.set()
        await h.stop()


async def test_a_pause_while_the_engine_reads_its_controls_at_start_keeps_the_stored_kill(
    store_url: str, sim: SimulatedExchange
) -> None:
    """The database holds a kill; the engine starts again (a fleet's restart, a takeover) and a
    pause comes while it reads its controls. The pause is made over the stored kill, not over
    what the engine held before it read them: it stored a pause alone, clearing the kill."""
    held, wrap = stores_wrapped_in(HeldControlsRead)

    first = await Harness(store_url, sim).start()
    await first.engine.kill(reason="everything off")
    await first.stop()
    h = replace(first, wrap=wrap)
    await h.start(ready=False)
    [store] = held
    try:
        starting = asyncio.ensure_future(h.engine.start())
        await asyncio.wait_for(store.arrived.wait(), 5)
        pausing = asyncio.ensure_future(h.engine.pause("news"))
        for _ in range(20):  # turns of the loop: the pause is under way (no real time passes)
            await asyncio.sleep(0)
        store.release.set()
        await starting
        await pausing
        assert h.engine.status().controls.killed
        assert (await h.store.load_controls()).killed
    finally:
        store.release.set()
        await h.stop()
