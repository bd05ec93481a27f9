"""The exchange contract runs once per adapter: in-process sim, ccxt -> Binance face, ccxt -> Bybit face."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .rigs import VENUES, Rig, rig_for


@pytest.fixture(params=VENUES)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    async with rig_for(request.param) as made:
        yield made
