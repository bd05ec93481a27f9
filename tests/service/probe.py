"""A probe between the engine and the simulated exchange, built with the engine (never patched in).

Like the simulator's own fault knobs, its switches are set by a test at run time:
`fills_hidden` hides REST fills; `hold_entries` holds entry orders at the exchange's door
until released; `cancels_vanish` makes cancels answer as if done while the orders stay;
`inject` puts an event of the test's choosing on the stream; `cancels` records every cancel
the engine asked for; `after_open_orders` runs once between reading the open orders and
answering with them (the world moves while the engine holds a snapshot); `before_lookup` runs
before each order lookup is answered (the world moves while the engine waits); `unlisted_markets`
leaves markets out of the instruments list (delisted, settling or halted: the ccxt adapters drop
a market that is not `active`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from warden.adapters.sim import SimulatedExchange
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport, OrderRequest, StreamEvent
from warden.domain.values import Instrument, Symbol


class ProbedExchange:
    def __init__(self, sim: SimulatedExchange) -> None:
        self.sim = sim
        self.cancels: list[str] = []
        self.cancels_vanish = False
        self.hold_entries = False
        self.fills_hidden = False
        """REST fills not visible yet (an exchange whose trade history lags its order status)."""
        self.entry_arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._injected: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self.after_open_orders: Callable[[], Awaitable[None]] | None = None
        self.before_lookup: Callable[[str], Awaitable[None]] | None = None
        self.unlisted: set[str] = set()
        """Client ids left out of the open-orders list (a list that lags, like Drift's chain reads)."""
        self.unlisted_markets: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def release_entries(self) -> None:
        self.hold_entries = False
        self.fills_hidden = False
        """REST fills not visible yet (an exchange whose trade history lags its order status)."""
        self._release.set()

    def inject(self, event: StreamEvent) -> None:
        self._injected.put_nowait(event)

    async def instruments(self) -> dict[Symbol, Instrument]:
        listed = await self.sim.instruments()
        return {s: i for s, i in listed.items() if s not in self.unlisted_markets}

    async def place_order(self, request: OrderRequest) -> OrderReport:
        if self.hold_entries and not request.reduce_only:
            self.entry_arrived.set()
            await self._release.wait()
        return await self.sim.place_order(request)

    async def fetch_open_orders(self) -> list[OrderReport]:
        orders = [o for o in await self.sim.fetch_open_orders() if o.client_order_id not in self.unlisted]
        hook, self.after_open_orders = self.after_open_orders, None
        if hook is not None:
            await hook()
        return orders

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        if self.before_lookup is not None:
            await self.before_lookup(client_order_id)
        return await self.sim.fetch_order(symbol, client_order_id, conditional)

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        return [] if self.fills_hidden else await self.sim.fetch_fills(symbol, since)

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        self.cancels.append(client_order_id)
        if self.cancels_vanish:  # the answer says cancelled; the order stays on the exchange
            report = await self.sim.fetch_order(symbol, client_order_id, conditional)
            return replace(report, status=OrderStatus.CANCELED)
        return await self.sim.cancel_order(symbol, client_order_id, conditional)

    async def stream(self) -> AsyncIterator[StreamEvent]:
        events = self.sim.stream()
        pending: asyncio.Task[StreamEvent] | None = None
        injected: asyncio.Task[StreamEvent] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(anext(events))  # type: ignore[arg-type]
                injected = injected or asyncio.ensure_future(self._injected.get())
                done, _ = await asyncio.wait({pending, injected}, return_when=asyncio.FIRST_COMPLETED)
                if injected in done:
                    yield injected.result()
                    injected = None
                if pending in done:
                    yield pending.result()
                    pending = None
        finally:
            for task in (pending, injected):
                if task is not None:
                    task.cancel()
