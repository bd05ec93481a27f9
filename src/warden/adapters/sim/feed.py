"""`SimPriceFeed`: moves every simulated mark on a timer, so stops and TPs fire by themselves."""

from __future__ import annotations

import asyncio

from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.markets import DEFAULT_VOLATILITY
from warden.adapters.sim.stream import Sleep


class SimPriceFeed:
    """Every `interval` seconds (via the injected `sleep`), one seeded random-walk step.

    Run it as a task owned by a TaskGroup; cancel the task to stop it.
    """

    def __init__(
        self,
        exchange: SimulatedExchange,
        *,
        interval: float = 1.0,
        volatility: float = DEFAULT_VOLATILITY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._exchange = exchange
        self._interval = interval
        self._volatility = volatility
        self._sleep = sleep
        self.steps = 0

    def step(self) -> None:
        """Move every mark once (MarkPrice events, triggers)."""
        self._exchange.step_prices(self._volatility)
        self.steps += 1

    async def run(self, steps: int | None = None) -> None:
        """Step forever, or `steps` times."""
        while steps is None or self.steps < steps:
            await self._sleep(self._interval)
            self.step()
