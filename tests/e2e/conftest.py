"""End to end: the simulator server on a free 127.0.0.1 port and UNMODIFIED ccxt behind CcxtExchange.

Everything runs on the test's event loop: `running_app` returns once the socket is bound
(readiness without sleeping). ccxt's aiohttp session carries a TraceConfig, so every
request and websocket connect ccxt makes is recorded with its full URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange
from warden.adapters.sim.server import VENUE, SimVenue, create_server_app, running_app
from warden.adapters.sim.server.bybit import BybitVenue

from .processes import Processes


@dataclass
class Sim:
    """The running server: its app, base URL, and a plain (untraced) client for /sim/* control."""

    app: web.Application
    base: str
    session: aiohttp.ClientSession
    urls_seen: list[str] = field(default_factory=list)  # every URL ccxt asked aiohttp for

    @property
    def venue(self) -> SimVenue:
        return self.app[VENUE]

    async def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, f"{self.base}{path}", json=body) as response:
            payload = await response.json(content_type=None)
            assert response.status == 200, payload
            return payload

    def exchange(
        self, *, secret: str = "sim-secret", traced: aiohttp.ClientSession | None = None
    ) -> CcxtExchange:
        return CcxtExchange.create(
            api_key="sim-key",
            api_secret=secret,
            base_url=self.base,
            enable_rate_limit=False,
            timeout_ms=5000,
            session=traced,
        )


def tracing_session(seen: list[str]) -> aiohttp.ClientSession:
    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return aiohttp.ClientSession(trace_configs=[trace])


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    app = create_server_app(price_interval=None, push_interval=0.05)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        yield Sim(app, base, session)


@pytest.fixture
async def exchange(sim: Sim) -> AsyncIterator[CcxtExchange]:
    """The adapter, its REST and websocket traffic traced into `sim.urls_seen`."""
    traced = tracing_session(sim.urls_seen)
    adapter = sim.exchange(traced=traced)
    try:
        yield adapter
    finally:
        await adapter.close()
        await traced.close()


@dataclass
class BybitSim(Sim):
    """The server speaking Bybit v5, and CcxtBybitExchange adapters for it."""

    @property
    def bybit(self) -> BybitVenue:
        venue = self.app[VENUE]
        assert isinstance(venue, BybitVenue)
        return venue

    def bybit_exchange(
        self,
        *,
        secret: str = "sim-secret",
        traced: aiohttp.ClientSession | None = None,
        keepalive_ms: int = 18_000,
        **options: Any,
    ) -> CcxtBybitExchange:
        return CcxtBybitExchange.create(
            api_key="sim-key",
            api_secret=secret,
            base_url=self.base,
            enable_rate_limit=False,
            timeout_ms=5000,
            session=traced,
            keepalive_ms=keepalive_ms,
            **options,
        )


@pytest.fixture
async def bybit_sim() -> AsyncIterator[BybitSim]:
    app = create_server_app(venue="bybit", price_interval=None, push_interval=0.05)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        yield BybitSim(app, base, session)


@pytest.fixture
async def bybit_exchange(bybit_sim: BybitSim) -> AsyncIterator[CcxtBybitExchange]:
    """The Bybit adapter, its REST and websocket traffic traced into `bybit_sim.urls_seen`."""
    traced = tracing_session(bybit_sim.urls_seen)
    adapter = bybit_sim.bybit_exchange(traced=traced)
    try:
        yield adapter
    finally:
        await adapter.close()
        await traced.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Every process a test starts; SIGKILLed in teardown, their logs printed (shown on failure)."""
    registry = Processes(tmp_path / "logs")
    try:
        yield registry
    finally:
        registry.close()
