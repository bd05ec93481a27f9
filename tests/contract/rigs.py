"""One rig per Exchange adapter under the contract: the adapter, and the levers of the
simulated exchange behind it (marks, outside trades, faults, a dropped stream).

    sim      the in-process SimulatedExchange (the port directly)
    binance  CcxtExchange (unmodified ccxt.pro.binanceusdm) -> `warden sim serve` (Binance face)
    bybit    CcxtBybitExchange (unmodified ccxt.pro.bybit)  -> `warden sim serve --venue bybit`
    drift    DriftExchange (sidecar protocol v1, its u8 table in SQLite) -> `warden sim serve --venue drift`

Every rig runs the same SimCore, so the same orders give the same prices; what a venue does
differently by its own rules (Drift's symbols, steps, fee, and what it accepts) is stated by
the rig's attributes, never by loosening a check for the others.
"""

from __future__ import annotations

import contextlib
import fnmatch
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.e2e.flows import Events
from tests.helpers import eventually
from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange
from warden.adapters.db.drift_ids import SqlUserOrderIds
from warden.adapters.db.migrate import upgrade
from warden.adapters.drift import DriftExchange, SidecarClient
from warden.adapters.sim import SimFaults, SimulatedExchange
from warden.adapters.sim.drift import DRIFT_VENUE, DriftFaults, create_drift_app
from warden.adapters.sim.server import VENUE, create_server_app, running_app
from warden.adapters.sim.server.bybit import BybitVenue
from warden.domain.reports import OrderRequest
from warden.domain.values import ClientOrderId, Instrument, OrderSide, OrderType, Symbol
from warden.ports import Exchange, ExchangeError, ExchangeUnavailable, OrderNotFound

VENUES = ("sim", "binance", "bybit", "drift")
D = Decimal
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
    # The venue's markets, as the adapter names them, and what it lists.
    btc, eth, sol = Symbol("BTC/USDT:USDT"), Symbol("ETH/USDT:USDT"), Symbol("SOL/USDT:USDT")
    listed: frozenset[Symbol] = frozenset({btc, eth, sol})
    btc_market = Instrument(btc, D("0.1"), D("0.001"), D("0.001"), D("100"))
    sol_market = Instrument(sol, D("0.01"), D("0.01"), D("0.01"), D("5"))
    off_step_qty = "0.0105"  # of BTC: not a whole number of lots
    taker_fee_rate = D("0.0004")
    # What the venue refuses at placement (Drift accepts both and settles them later by its rules).
    refuses_crossed_triggers = True
    refuses_reduce_only_without_position = True
    # Whether lookups keep plain and conditional orders apart (Binance's algo service, Bybit's
    # orderFilter); Drift has one order space.
    kinds_apart = True
    # A cancel of an order already final: OrderNotFound (CEX), or its final state (Drift, whose
    # program takes a cancel of an order id that is not open and does nothing).
    second_cancel_not_found = True
    # What a lookup of an order whose send met an outage says: not found (the venue took nothing),
    # or on Drift "not settled" (its signed transaction is held and could still be sent until its
    # blockhash expires: the adapter never calls it gone before then).
    lookup_after_outage: type[ExchangeError] = OrderNotFound

    def market(self, cid: str, side: OrderSide, qty: str, *, reduce_only: bool = False) -> OrderRequest:
        return OrderRequest(ClientOrderId(cid), self.btc, side, OrderType.MARKET, D(qty), None, reduce_only)

    def conditional(
        self, cid: str, kind: OrderType, qty: str, trigger: str, side: OrderSide = OrderSide.SELL
    ) -> OrderRequest:
        return OrderRequest(ClientOrderId(cid), self.btc, side, kind, D(qty), D(trigger), True)

    def fee(self, qty: str, price: str) -> Decimal:
        return D(qty) * D(price) * self.taker_fee_rate

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


class ServedRig(Rig):
    """A simulator served over HTTP on `base`: its /sim/ control surface, and the adapters made
    against it (closed with the rig)."""

    base: str
    session: aiohttp.ClientSession
    adapters: list[Any]

    async def control(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(f"{self.base}{path}", json=body) as response:
            payload = await response.json(content_type=None)
            assert response.status == 200, payload
            return payload

    async def set_price(self, symbol: Symbol, price: str) -> None:
        await self.control("/sim/price", {"symbol": symbol, "price": price})

    async def drop_stream(self) -> None:
        await self.control("/sim/disconnect", {})

    async def close(self) -> None:
        for adapter in self.adapters:
            await adapter.close()


class ServerRig(ServedRig):
    """The simulator server speaking `venue`, and the ccxt adapter pointed at it."""

    def __init__(self, venue: str, app: web.Application, base: str, session: aiohttp.ClientSession) -> None:
        self.name = venue
        self.app = app
        self.base = base
        self.session = session
        # Both venues cap one account's resting conditional orders per symbol at 10, and say so
        # (Binance in its MAX_NUM_ALGO_ORDERS filter; Bybit in its documentation).
        self.btc_market = replace(Rig.btc_market, max_conditional=10)
        self.sol_market = replace(Rig.sol_market, max_conditional=10)
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

    async def outside_trade(self, symbol: Symbol, side: OrderSide, qty: str) -> str:
        order = await self.control("/sim/external-order", {"symbol": symbol, "side": side.value, "qty": qty})
        return str(order["client_order_id"])

    async def faults(self, **knobs: Any) -> None:
        await self.control("/sim/faults", knobs)

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


DRIFT_LABELS = {"*-e1": "market-*-open-*"}
"""The Drift simulator never sees client ids (Drift orders carry a u8): its fault predicates are
globs on order labels (`<type>-<direction>-<condition>-<ro|open>-u<u8>-m<market>`). The contract's
one client-id glob, an entry, is the non-reduce-only market order."""


class DriftRig(ServedRig):
    """DriftExchange -> the simulated Drift venue (no spread, short keeper and auction delays)."""

    name = "drift"
    btc, eth, sol = Symbol("BTC-PERP"), Symbol("ETH-PERP"), Symbol("SOL-PERP")
    btc_market = Instrument(btc, D("0.1"), D("0.0001"), D("0.0001"), D(0))
    sol_market = Instrument(sol, D("0.001"), D("0.01"), D("0.01"), D(0))
    off_step_qty = "0.01005"
    taker_fee_rate = D("0.00035")
    refuses_crossed_triggers = False
    refuses_reduce_only_without_position = False
    kinds_apart = False
    second_cancel_not_found = False
    lookup_after_outage = ExchangeUnavailable

    def __init__(self, app: web.Application, base: str, session: aiohttp.ClientSession, db: str) -> None:
        self.app = app
        self.base = base
        self.session = session
        self.db = db
        self.listed = frozenset(m.symbol for m in app[DRIFT_VENUE].markets.values())
        self.adapters: list[DriftExchange] = []
        self.exchange = self.fresh()

    def fresh(self) -> Exchange:
        adapter = DriftExchange(SidecarClient(self.base, timeout=5.0), SqlUserOrderIds(self.db, "default"))
        self.adapters.append(adapter)
        return adapter

    async def outside_trade(self, symbol: Symbol, side: OrderSide, qty: str) -> str:
        order = await self.control("/sim/external-order", {"symbol": symbol, "side": side.value, "qty": qty})
        return (
            f"drift-{order['exchange_order_id']}"  # an order warden did not make: named by Drift's order id
        )

    async def faults(self, **knobs: Any) -> None:
        drift: dict[str, Any] = {}
        for name, value in knobs.items():
            if name == "ack_only_if":
                continue  # every Drift market order is acknowledged, then filled by an auction
            if name == "fill_delay":
                drift["auction_delay"] = value
            elif name in PREDICATES and isinstance(value, str):
                drift[name] = DRIFT_LABELS[value]
            else:
                drift[name] = value
        await self.control("/sim/faults", drift)

    async def streaming(self) -> Events:
        events = Events(self.exchange.stream())
        venue = self.app[DRIFT_VENUE]
        await eventually(lambda: bool(venue.sockets), what="the event socket")
        return events


@contextlib.asynccontextmanager
async def rig_for(name: str) -> AsyncIterator[Rig]:
    if name == "drift":
        faults = DriftFaults(keeper_delay=0.05, auction_delay=0.05, spread=0, blockhash_ttl=60)
        app = create_drift_app(price_interval=None, drift_faults=faults)
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{Path(tmp) / 'w.db'}"
            await upgrade(db)
            async with running_app(app) as base, aiohttp.ClientSession() as session:
                drift_rig = DriftRig(app, base, session, db)
                try:
                    yield drift_rig
                finally:
                    await drift_rig.close()
        return
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
