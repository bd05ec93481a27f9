"""Order builders and stream helpers for the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

from warden.domain.reports import OrderRequest, StreamEvent
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol

BTC = Symbol("BTC/USDT:USDT")
D = Decimal


def market(cid: str, side: OrderSide, qty: str, *, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(ClientOrderId(cid), BTC, side, OrderType.MARKET, D(qty), None, reduce_only)


def conditional(
    cid: str, kind: OrderType, qty: str, trigger: str, side: OrderSide = OrderSide.SELL
) -> OrderRequest:
    return OrderRequest(ClientOrderId(cid), BTC, side, kind, D(qty), D(trigger), True)


class Events:
    """A background consumer of `stream()`: tests wait for the event they need (never sleep)."""

    def __init__(self, stream: AsyncIterator[StreamEvent]) -> None:
        self.seen: list[StreamEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[StreamEvent]) -> None:
        async for event in stream:
            self.seen.append(event)
            self._changed.set()

    async def wait_for(self, match: Callable[[StreamEvent], bool], timeout: float = 5.0) -> StreamEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.seen:
                    if match(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def finished(self) -> None:
        """Wait until the stream ends by itself."""
        await self._task

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
