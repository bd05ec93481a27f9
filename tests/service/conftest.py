"""Service tests run the real engine on every store backend and the in-process sim."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.service.harness import Harness
from warden.adapters.clock import SystemClock
from warden.adapters.sim import SimulatedExchange


@pytest.fixture
def sim() -> SimulatedExchange:
    return SimulatedExchange(now=SystemClock().now, seed=7)


@pytest.fixture
async def harness(store_url: str, sim: SimulatedExchange) -> AsyncIterator[Harness]:
    h = await Harness(store_url, sim).start()
    yield h
    await h.stop()
