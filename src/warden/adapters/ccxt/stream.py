"""The merged user stream: watch_orders + watch_my_trades + watch_mark_prices, one queue.

Binance's user-data stream has no replay, and ccxt does not pretend otherwise: when a
socket fails, the pending watch_* call raises and the next call reconnects. Each watcher
here simply calls again (with backoff while it keeps failing); the first failure of a
channel (`private` or `market`) schedules one StreamGap, delivered once ccxt has that
channel's socket connected again (or after `reconnect_wait`, whichever comes first), so
the engine reconciles over REST *after* the stream is back and misses nothing between.

Fills are attributed to client ids through `OrderIds`: a fired conditional order trades
under a new order id, learned from ALGO_UPDATE's `ai` (handled before the fills of the
same batch) or, failing that, over REST (`CcxtExchange.resolve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import ccxt
from warden.adapters.ccxt import parse
from warden.adapters.ccxt.errors import UNREADABLE
from warden.domain.reports import StreamEvent, StreamGap
from warden.domain.values import Symbol, parse_client_order_id
from warden.ports import ExchangeError

if TYPE_CHECKING:
    from warden.adapters.ccxt.exchange import CcxtExchange

log = logging.getLogger(__name__)

PRIVATE, MARKET = "private", "market"
BACKOFF_START, BACKOFF_MAX = 0.1, 5.0
POLL = 0.02


class CcxtStream:
    """One consumer's view of the account's websockets. `events()` runs until `stop()` or close."""

    def __init__(self, exchange: CcxtExchange, *, now: Callable[[], datetime]) -> None:
        self._exchange = exchange
        self._client = exchange.client
        self._now = now
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovering: set[str] = set()

    async def events(self) -> AsyncIterator[StreamEvent]:
        self._spawn(self._watch(PRIVATE, "orders", self._client.watch_orders, self._orders))
        self._spawn(self._watch(PRIVATE, "trades", self._client.watch_my_trades, self._trades))
        self._spawn(self._watch(MARKET, "marks", self._watch_marks, self._marks))
        try:
            while True:
                event = await self._queue.get()
                if event is None:
                    return
                yield event
        finally:
            await self._cancel_tasks()

    async def _watch_marks(self) -> Any:
        return await self._client.watch_mark_prices(self._exchange.symbols)

    async def stop(self) -> None:
        await self._cancel_tasks()
        self._queue.put_nowait(None)

    # ----- watchers -------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(
        self,
        channel: str,
        name: str,
        call: Callable[[], Awaitable[Any]],
        handle: Callable[[Any], Awaitable[list[StreamEvent]]],
    ) -> None:
        failures = 0
        while True:
            try:
                batch = await call()
            except ccxt.ExchangeClosedByUser:
                return
            except Exception as exc:  # any socket or protocol failure: events may be lost
                failures += 1
                log.warning("ccxt %s stream failed (%s): %r", name, channel, exc)
                self._gap(channel, f"{name} stream: {type(exc).__name__}: {exc}")
                await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_START * 2 ** (failures - 1)))
                continue
            failures = 0
            try:
                events = await handle(batch)
            except UNREADABLE as exc:
                log.error("unreadable %s event: %r", name, exc)
                self._gap(channel, f"unreadable {name} event: {exc}")
                continue
            for event in events:
                self._queue.put_nowait(event)

    # ----- gaps -----------------------------------------------------------------------

    def _gap(self, channel: str, reason: str) -> None:
        """One StreamGap per outage of `channel`, once its socket is connected again."""
        if channel in self._recovering:
            return
        self._recovering.add(channel)
        self._spawn(self._announce(channel, reason))

    async def _announce(self, channel: str, reason: str) -> None:
        await asyncio.sleep(POLL)  # let ccxt drop the failed client first
        for _ in range(int(self._exchange.reconnect_wait / POLL)):
            if self._connected(channel):
                break
            await asyncio.sleep(POLL)  # ccxt exposes no "reconnected" event: poll its client table
        self._recovering.discard(channel)
        self._queue.put_nowait(StreamGap(reason, self._now()))

    def _connected(self, channel: str) -> bool:
        """Whether ccxt holds an open socket for this channel (URL `/private/...` or `/market/...`)."""
        clients = getattr(self._client, "clients", None) or {}
        for url, client in list(clients.items()):
            if f"/{channel}/" not in str(url):
                continue
            with contextlib.suppress(Exception):
                if _is_open(client):
                    return True
        return False

    # ----- batches -> events ----------------------------------------------------------

    async def _orders(self, batch: list[parse.Raw]) -> list[StreamEvent]:
        ids = self._exchange.ids
        for raw in batch:  # algo updates first: they explain the child orders of the same batch
            if parse.is_algo(raw):
                ids.learn(parse.order_report(raw), parse.algo_child_id(raw))
        events: list[StreamEvent] = []
        for raw in batch:
            report = parse.order_report(raw)
            if not parse.is_algo(raw):
                if ids.is_child(report.exchange_order_id):
                    continue  # the algo order's own updates speak for it
                ids.learn(report)
            events.append(report)
        return events

    async def _trades(self, batch: list[parse.Raw]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for raw in batch:
            order_id = str(raw["order"])
            client_id, exchange_id = await self._attribute(Symbol(str(raw["symbol"])), order_id, raw)
            events.append(parse.fill_report(raw, client_id, exchange_id))
        return events

    async def _attribute(self, symbol: Symbol, order_id: str, raw: parse.Raw) -> tuple[str, str]:
        ids = self._exchange.ids
        printed = parse.raw_client_id(raw) or ""
        known = ids.attribution(order_id)
        if known is None and parse_client_order_id(printed) is None:
            # not a known order and not warden's id: perhaps a fired stop's child order
            with contextlib.suppress(ExchangeError, TimeoutError):
                async with asyncio.timeout(self._exchange.resolve_timeout):
                    await self._exchange.resolve(symbol, {order_id})
            known = ids.attribution(order_id)
            if known is None:
                ids.learn_unknown(order_id, printed)
        return known or (printed, order_id)

    async def _marks(self, batch: dict[str, parse.Raw]) -> list[StreamEvent]:
        marks = (parse.mark_price(ticker) for ticker in batch.values())
        return [m for m in marks if m is not None]


def _is_open(client: Any) -> bool:
    """A ccxt ws Client whose `connected` future resolved and whose socket is not closed."""
    connected = getattr(client, "connected", None)
    if connected is None or not connected.done() or connected.cancelled():
        return False
    return connected.exception() is None and not client.closed()
