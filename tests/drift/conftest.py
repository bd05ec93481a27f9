"""The Drift adapter against `warden sim serve --venue drift`'s app on a free 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from warden.adapters.db.drift_ids import SqlUserOrderIds
from warden.adapters.db.migrate import upgrade
from warden.adapters.drift import DriftExchange, SidecarClient
from warden.adapters.sim.drift import DRIFT_VENUE, DriftFaults, DriftVenue, create_drift_app
from warden.adapters.sim.server import running_app


@dataclass
class DriftSim:
    app: web.Application
    url: str
    session: aiohttp.ClientSession
    db: str

    @property
    def venue(self) -> DriftVenue:
        return self.app[DRIFT_VENUE]

    async def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, f"{self.url}{path}", json=body) as response:
            payload = await response.json(content_type=None)
            assert response.status == 200, payload
            return payload

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.venue.requests if r["path"].startswith(path)]

    def exchange(self) -> DriftExchange:
        return DriftExchange(SidecarClient(self.url, timeout=5.0), SqlUserOrderIds(self.db, "default"))


@pytest.fixture
async def drift_sim(tmp_path: Path) -> AsyncIterator[DriftSim]:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    await upgrade(db)
    faults = DriftFaults(keeper_delay=0.05, auction_delay=0.05, spread=0.0005, blockhash_ttl=60)
    app = create_drift_app(price_interval=None, drift_faults=faults)
    async with running_app(app) as url, aiohttp.ClientSession() as session:
        yield DriftSim(app, url, session, db)


@pytest.fixture
async def drift(drift_sim: DriftSim) -> AsyncIterator[DriftExchange]:
    adapter = drift_sim.exchange()
    try:
        yield adapter
    finally:
        await adapter.close()
