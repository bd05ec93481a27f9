"""The sidecar's event websocket as the port's stream: orders, fills, positions, oracle prices.

The socket carries no replay: when it drops, events are lost, so once it is connected again
(the server's `hello`) one StreamGap tells the engine to reconcile over HTTP. An event it cannot
read is lost the same way: the socket is dropped and connected again (never the stream ended). Reconnects back
off while the sidecar stays away. An order event that says the order is final releases its
user order id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import aiohttp

from warden.adapters.drift import protocol as p
from warden.domain.reports import MarkPrice, PositionReport, StreamEvent, StreamGap
from warden.domain.values import Side
from warden.ports import ExchangeError

if TYPE_CHECKING:
    from warden.adapters.drift.exchange import DriftExchange

log = logging.getLogger(__name__)

BACKOFF_START, BACKOFF_MAX = 0.1, 5.0


def _now() -> datetime:
    return datetime.now(UTC)


class DriftStream:
    def __init__(self, exchange: DriftExchange) -> None:
        self.exchange = exchange
        self._stopped = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def stop(self) -> None:
        self._stopped.set()
        if self._ws is not None:
            await self._ws.close()

    async def events(self) -> AsyncIterator[StreamEvent]:
        client = self.exchange.client
        failures = 0
        connected_before = False
        while not self._stopped.is_set():
            try:
                async with client.session.ws_connect(client.ws_url("/v1/events"), heartbeat=15.0) as ws:
                    self._ws = ws
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        data = message.json()
                        if data.get("type") == "hello":
                            failures = 0
                            if connected_before:
                                yield StreamGap("drift event stream reconnected", _now())
                            connected_before = True
                            continue
                        for event in await self._translate(data):
                            yield event
            except (aiohttp.ClientError, OSError, ValueError, ExchangeError) as exc:
                log.warning("drift event stream failed: %r", exc)
            except (KeyError, TypeError, AttributeError) as exc:  # an event it cannot read: lost
                log.warning("drift event stream sent an unreadable event: %r", exc)
            finally:
                self._ws = None
            if self._stopped.is_set():
                return
            failures += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(BACKOFF_MAX, BACKOFF_START * 2 ** (failures - 1))):
                    await self._stopped.wait()

    async def _translate(self, data: p.Json) -> list[StreamEvent]:
        exchange = self.exchange
        kind = data.get("type")
        await exchange._load()
        if kind == "order":
            report = await exchange._report(data["order"])
            if report.status.terminal and not report.client_order_id.startswith("drift-"):
                await exchange._release(report.client_order_id)
            return [report]
        if kind == "fill":
            return [await exchange.fill(data["fill"])]
        if kind == "position":
            row = data["position"]
            base = int(row["base_asset_amount"])
            side = Side.LONG if base >= 0 else Side.SHORT
            symbol = await exchange.symbol_at(int(row["market_index"]))
            entry = Decimal(int(row["entry_price"])) / p.PRICE_PRECISION
            return [PositionReport(symbol, side, abs(Decimal(base)) / p.BASE_PRECISION, entry)]
        if kind == "price":
            symbol = await exchange.symbol_at(int(data["market_index"]))
            return [MarkPrice(symbol, Decimal(int(data["oracle_price"])) / p.PRICE_PRECISION, _now())]
        return []
