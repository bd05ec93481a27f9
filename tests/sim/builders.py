"""Builders and test doubles for the simulated-exchange tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from warden.adapters.sim import SimCore
from warden.domain.reports import OrderReport, OrderRequest, StreamEvent
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol

BTC = Symbol("BTC/USDT:USDT")
ETH = Symbol("ETH/USDT:USDT")
SOL = Symbol("SOL/USDT:USDT")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUY, SELL = OrderSide.BUY, OrderSide.SELL


class ManualTime:
    """A `now` callable that moves only when told to."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class FakeClock(ManualTime):
    """`now` and `sleep` on one manual timeline: a sleeper wakes only when `advance` reaches its deadline.

    `advance` walks the timeline deadline by deadline, letting each woken task run (and sleep
    again) before moving on, so a loop sleeping one second runs five times in `advance(5)`.
    `sleep(0)` (or less) yields to the loop once and returns.
    """

    YIELDS = 5  # loop turns a woken task gets before the timeline moves on

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = 0

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._sleepers.append((self.at + timedelta(seconds=seconds), self._seq, future))
        try:
            await future
        finally:
            self._sleepers = [s for s in self._sleepers if s[2] is not future]

    async def run_for(self, seconds: float) -> None:
        """Move the clock `seconds` ahead, waking every sleeper whose deadline it passes, in order.

        Before each look at the sleepers the loop gets a few turns, so tasks created just now
        (or just woken) have started sleeping by the time the clock moves past them.
        """
        end = self.at + timedelta(seconds=seconds)
        while True:
            await self._settle()
            due = sorted(s for s in self._sleepers if s[0] <= end and not s[2].done())
            if not due:
                break
            self.at = max(self.at, due[0][0])
            due[0][2].set_result(None)
        self.at = end
        await self._settle()

    async def _settle(self) -> None:
        for _ in range(self.YIELDS):
            await asyncio.sleep(0)


class RecordingSleep:
    """An injected sleep that records what it was asked and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def market(
    cid: str, side: OrderSide, qty: str, symbol: Symbol = BTC, *, reduce_only: bool = False
) -> OrderRequest:
    return OrderRequest(ClientOrderId(cid), symbol, side, OrderType.MARKET, Decimal(qty), None, reduce_only)


def stop(
    cid: str, side: OrderSide, qty: str, trigger: str, symbol: Symbol = BTC, *, reduce_only: bool = True
) -> OrderRequest:
    return OrderRequest(
        ClientOrderId(cid), symbol, side, OrderType.STOP_MARKET, Decimal(qty), Decimal(trigger), reduce_only
    )


def take_profit(
    cid: str, side: OrderSide, qty: str, trigger: str, symbol: Symbol = BTC, *, reduce_only: bool = True
) -> OrderRequest:
    return OrderRequest(
        ClientOrderId(cid),
        symbol,
        side,
        OrderType.TAKE_PROFIT_MARKET,
        Decimal(qty),
        Decimal(trigger),
        reduce_only,
    )


async def take(events: AsyncIterator[StreamEvent], n: int) -> list[StreamEvent]:
    """The next `n` stream events; fails instead of hanging if they never come."""
    async with asyncio.timeout(2):
        return [await anext(events) for _ in range(n)]


def order_of(core: SimCore, client_order_id: str) -> OrderReport:
    """The core's order with this client id, which the test expects to exist."""
    order = core.order(client_order_id)
    assert order is not None, f"no order {client_order_id!r}"
    return order
