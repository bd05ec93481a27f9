"""One rig per Exchange adapter under the contract: the adapter, and the levers of the
simulated exchange behind it (marks, outside trades, faults, a dropped stream).

    sim      the in-process SimulatedExchange (the port directly)
    binance  CcxtExchange (unmodified ccxt.pro.binanceusdm) -> `warden sim serve` (Binance face)
    bybit    CcxtBybitExchange (unmodified ccxt.pro.bybit)  -> `warden sim serve --venue bybit`

Every rig runs the same SimCore, so the same orders give the same prices and fees.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from tests.e2e.flows import Events
from tests.helpers import eventually
from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange
from warden.adapters.sim import SimFaults, SimulatedExchange
from warden.adapters.sim.server import VENUE, create_server_app, running_app
from warden.adapters.sim.server.bybit import BybitVenue
from warden.domain.values import OrderSide, Symbol
from warden.ports import Exchange

VENUES = ("sim", "binance", "bybit")
PREDICATES = ("reject_if", "unavailable_if", "timeout_after_execution_if", "ack_only_if")


def _predicate(spec: object) -> Any:
    if spec is None or spec is False:
        return None
    if spec is True:
        return lambda request: True
    pattern = str(spec)
    return lambda request: fnmatch.fnmatchcase(request.client_order_id, pattern)


class Rig:
    """The adapter under test (`exchange`) and the simulator's levers, whatever the venue."""

    name = ""
    exchange: Exchange

    async def set_price(self, symbol: Symbol, price: str) -> None:
        raise NotImplementedError

    async def outside_trade(self, symbol: Symbol, side: OrderSide, qty: str) -> str:
        """A market order on the account that warden did not make; returns its client id."""
        raise NotImplementedError

    async def faults(self, **knobs: Any) -> None:
        """Set SimFaults knobs; predicates take True / None / a glob on the client order id."""
        raise NotImplementedError

    async def drop_stream(self) -> None:
        """Break the user stream once (the adapter must notice and recover with a StreamGap)."""
        raise NotImplementedError

    async def streaming(self) -> Events:
        """Consume the adapter's stream, once it is ready to deliver user events and marks."""
        return Events(self.exchange.stream())

    def fresh(self) -> Exchange:
        """A second adapter on the same account, as a restarted process would build it."""
        raise NotImplementedError

    async def close(self) -> None:
        await self.exchange.close()


class InProcessRig(Rig):
    name = "sim"

    def __init__(self) -> None:
        self.sim = SimulatedExchange(now=lambda: datetime.now(UTC), seed=7)
        self.exchange = self.sim

    async def set_price(self, symbol: Symbol, price: str) -> None:
        self.sim.set_mark(symbol, Decimal(price))

    async def outside_trade(self, symbol: Symbol, side: OrderSide, qty: str) -> str:
        return self.sim.external_order(symbol, side, Decimal(qty)).client_order_id

    async def faults(self, **knobs: Any) -> None:
        faults: SimFaults = self.sim.faults
        for name, value in knobs.items():
            setattr(faults, name, _predicate(value) if name in PREDICATES else value)

    async def drop_stream(self) -> None:
        self.sim.disconnect()
        self.sim.reconnect()

    def fresh(self) -> Exchange:
        return self.sim  # one process: the adapter holds no state of its own to lose


class ServerRig(Rig):
    """The simulator server speaking `venue`, and the ccxt adapter pointed at it."""

    def __init__(self, venue: str, app: web.Application, base: str, session: aiohttp.ClientSession) -> None:
        self.name = venue
        self.app = app
        self.base = base
        self.session = session
        self.adapters: list[CcxtExchange | CcxtBybitExchange] = []
        self.exchange = self.fresh()

    def fresh(self) -> Exchange:
        adapter: CcxtExchange | CcxtBybitExchange
        if self.name == "bybit":
            adapter = CcxtBybitExchange.create(
                api_key="sim-key", api_secret="sim-secret", base_url=self.base, enable_rate_limit=False
            )
        else:
            adapter = CcxtExchange.create(
                api_key="sim-key", api_secret="sim-secret", base_url=self.base, enable_rate_limit=False
            )
        self.adapters.append(adapter)
        return adapter

    async def control(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(f"{self.base}{path}", json=body) as response:
            payload = await response.json(content_type=None)
            assert response.status == 200, payload
            return payload

    async def set_price(self, symbol: Symbol, price: str) -> None:
        await self.control("/sim/price", {"symbol": symbol, "price": price})

    async def outside_trade(self, symbol: Symbol, side: OrderSide, qty: str) -> str:
        order = await self.control("/sim/external-order", {"symbol": symbol, "side": side.value, "qty": qty})
        return str(order["client_order_id"])

    async def faults(self, **knobs: Any) -> None:
        await self.control("/sim/faults", knobs)

    async def drop_stream(self) -> None:
        await self.control("/sim/disconnect", {})

    async def streaming(self) -> Events:
        events = Events(self.exchange.stream())
        venue = self.app[VENUE]
        if isinstance(venue, BybitVenue):
            await eventually(
                lambda: any({"order", "execution"} <= s.topics for s in venue.sessions.values()),
                what="the private subscriptions",
            )
        else:
            await eventually(lambda: bool(venue.private), what="the private socket")
        await eventually(lambda: any(s.streams for s in venue.market), what="the mark subscription")
        return events

    async def close(self) -> None:
        for adapter in self.adapters:
            await adapter.close()


@contextlib.asynccontextmanager
async def rig_for(name: str) -> AsyncIterator[Rig]:
    if name == "sim":
        rig = InProcessRig()
        try:
            yield rig
        finally:
            await rig.close()
        return
    app = create_server_app(venue=name, price_interval=None, push_interval=0.05)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        server_rig = ServerRig(name, app, base, session)
        try:
            yield server_rig
        finally:
            await server_rig.close()
