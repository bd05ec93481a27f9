"""The merged user stream: orders + my trades + mark prices, one queue, for any ccxt venue.

A venue's user-data stream has no replay, and ccxt does not pretend otherwise: when a socket
fails (closed by the server, or silent past ccxt's ping-pong keep-alive), the pending watch_*
call raises and the next call reconnects. Each watcher here simply calls again (with backoff
while it keeps failing); the first failure of a channel (`private` or `market`) schedules one
StreamGap, delivered once ccxt has that channel's socket connected again and the venue has
confirmed its subscriptions (or after `reconnect_wait`, whichever comes first), so the engine
reconciles over REST *after* the stream is back and misses nothing between: a fill the REST
reads miss happens after the subscriptions took effect, and arrives on the stream.

What to watch and how a batch becomes events is the adapter's (`StreamSource`): Binance
attributes a fired conditional order's fills through ALGO_UPDATE's child ids; Bybit's
executions carry the order's own orderLinkId.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import ccxt
from warden.adapters.ccxt.errors import UNREADABLE
from warden.domain.reports import StreamEvent, StreamGap

log = logging.getLogger(__name__)

PRIVATE, MARKET = "private", "market"
BACKOFF_START, BACKOFF_MAX = 0.1, 5.0
POLL = 0.02


class StreamSource(Protocol):
    """What an adapter tells the stream: its client, what to watch, and how batches become events."""

    client: Any
    reconnect_wait: float

    @property
    def channels(self) -> Mapping[str, str]:
        """Channel (`private`, `market`) -> a fragment of the websocket URL of that channel."""
        ...

    def renew_private_auth(self) -> None:
        """The private socket failed: the next watch authenticates afresh (a new listen key)."""
        ...

    async def ensure_clock(self) -> None:
        """Measure the host's clock against the exchange's unless it was already: the first watch
        may load the markets, which on Bybit signs a request."""
        ...

    async def login_private(self) -> None:
        """Before a private watch: log the private socket in on the exchange's clock, when ccxt's
        own login would sign with the host's (no-op where ccxt's login is fine)."""
        ...

    def subscribed(self, channel: str) -> bool:
        """Whether the venue confirmed every watch on the channel's current socket (its events
        reach the stream from now on). True where a connected socket needs no subscription."""
        ...

    async def watch_marks(self) -> Any: ...

    async def order_events(self, batch: Any) -> list[StreamEvent]: ...

    async def trade_events(self, batch: Any) -> list[StreamEvent]: ...

    async def mark_events(self, batch: Any) -> list[StreamEvent]: ...


class CcxtStream:
    """One consumer's view of the account's websockets. `events()` runs until `stop()` or close."""

    def __init__(self, exchange: StreamSource, *, now: Callable[[], datetime]) -> None:
        self._exchange = exchange
        self._client = exchange.client
        self._now = now
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovering: set[str] = set()

    async def events(self) -> AsyncIterator[StreamEvent]:
        source = self._exchange
        self._spawn(self._watch(PRIVATE, "orders", self._client.watch_orders, source.order_events))
        self._spawn(self._watch(PRIVATE, "trades", self._client.watch_my_trades, source.trade_events))
        self._spawn(self._watch(MARKET, "marks", source.watch_marks, source.mark_events))
        try:
            while True:
                event = await self._queue.get()
                if event is None:
                    return
                yield event
        finally:
            await self._cancel_tasks()

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
                await self._exchange.ensure_clock()
                if channel == PRIVATE:
                    await self._exchange.login_private()
                batch = await call()
            except ccxt.ExchangeClosedByUser:
                return
            except Exception as exc:  # any socket or protocol failure: events may be lost
                failures += 1
                log.warning("ccxt %s stream failed (%s): %r", name, channel, exc)
                if channel == PRIVATE:
                    self._exchange.renew_private_auth()
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
        """One StreamGap per outage of `channel`, once its socket is back and subscribed."""
        if channel in self._recovering:
            return
        self._recovering.add(channel)
        self._spawn(self._announce(channel, reason))

    async def _announce(self, channel: str, reason: str) -> None:
        await asyncio.sleep(POLL)  # let ccxt drop the failed client first
        for _ in range(int(self._exchange.reconnect_wait / POLL)):
            if self._connected(channel) and self._exchange.subscribed(channel):
                break
            await asyncio.sleep(POLL)  # ccxt exposes no "reconnected" event: poll its client table
        self._recovering.discard(channel)
        self._queue.put_nowait(StreamGap(reason, self._now()))

    def _connected(self, channel: str) -> bool:
        """Whether ccxt holds an open socket for this channel (its URL contains the channel's fragment)."""
        fragment = self._exchange.channels[channel]
        clients = getattr(self._client, "clients", None) or {}
        for url, client in list(clients.items()):
            if fragment not in str(url):
                continue
            with contextlib.suppress(Exception):
                if _is_open(client):
                    return True
        return False


def _is_open(client: Any) -> bool:
    """A ccxt ws Client whose `connected` future resolved and whose socket is not closed."""
    connected = getattr(client, "connected", None)
    if connected is None or not connected.done() or connected.cancelled():
        return False
    return connected.exception() is None and not client.closed()
