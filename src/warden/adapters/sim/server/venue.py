"""`SimVenue`: what every face of the simulated exchange server shares.

One `SimulatedExchange` (the matching core, its faults and its optional state file),
the credentials, a log of every request, the connected websockets, and the two
background jobs: a pump that turns the simulator's user stream into the venue's
private messages, and a pusher that sends mark prices to subscribed market sockets.
What the messages look like, and how a refusal is rendered, is each face's business
(`BinanceVenue`, `BybitVenue`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from warden.adapters.sim.core import SimCore
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.server.history import MarkHistory
from warden.adapters.sim.server.shapes import Json, market_id, ms
from warden.domain.reports import MarkPrice, StreamEvent, StreamGap
from warden.domain.values import Symbol

REQUEST_LOG_SIZE = 10_000
"""The request log keeps the most recent requests only (a long-running `warden sim serve`)."""


class ServerClock:
    """The server's clock: `base` (the host's, or a test's fake) plus `offset` seconds.

    `offset` models a host whose clock is off from the exchange's: negative, the exchange is
    behind the host (the host runs ahead); positive, the host runs behind. One object is
    shared by the matching core and the venue's face, so everything the server says (the time
    endpoint, the timestamp window of signed requests, order and fill times) is on this clock.
    It may be changed while the server runs (`POST /sim/faults {"clock_offset": s}`): the
    clock steps, and an exposure stretch open at that moment absorbs the step."""

    def __init__(self, base: Callable[[], datetime], offset: float = 0.0) -> None:
        self.base = base
        self.offset = offset

    def __call__(self) -> datetime:
        return self.base() + timedelta(seconds=self.offset)


@dataclass
class MarketSocket:
    """A public (market data) socket and the streams or topics it subscribed to."""

    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)


class SimVenue:
    """Everything a request handler may touch. Single event loop; no locks needed."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        sim: SimulatedExchange,
        *,
        api_key: str,
        api_secret: str,
        now: Callable[[], datetime],
        push_interval: float = 1.0,
    ) -> None:
        self.sim = sim
        self.api_key = api_key
        self.api_secret = api_secret
        self.clock = now if isinstance(now, ServerClock) else ServerClock(now)
        self.now: Callable[[], datetime] = self.clock
        self.push_interval = push_interval
        self.private: set[web.WebSocketResponse] = set()
        self.market: list[MarketSocket] = []
        self.requests: deque[Json] = deque(maxlen=REQUEST_LOG_SIZE)
        self.fault_specs: dict[str, object] = {}
        self.history = MarkHistory()
        self._by_id = {market_id(s): s for s in sim.core.instruments}

    @property
    def core(self) -> SimCore:
        return self.sim.core

    def now_ms(self) -> int:
        return ms(self.now())

    def log(self, method: str, path: str, query: str, status: int, note: str = "") -> None:
        """One request: `query` is the query string and the body together, as sent."""
        entry: Json = {"at": self.now_ms(), "method": method, "path": path, "query": query, "status": status}
        if note:
            entry["note"] = note
        self.requests.append(entry)

    def find_symbol(self, raw: str) -> Symbol | None:
        """A venue id (`BTCUSDT`, both venues spell it alike) or a unified symbol; None if unknown."""
        if raw in self.core.instruments:
            return Symbol(raw)
        return self._by_id.get(raw.upper())

    @property
    def silent(self) -> bool:
        """The stream_silent fault: private sockets stay open, but send nothing and answer no ping."""
        return self.sim.faults.stream_silent

    # ----- what each face supplies --------------------------------------------------------

    def not_found(self, path: str) -> web.Response:
        """The answer to a path this face does not serve."""
        raise NotImplementedError

    def internal_error(self) -> web.Response:
        """The answer when a handler failed unexpectedly."""
        raise NotImplementedError

    async def deliver(self, event: StreamEvent) -> None:
        """Send one user-stream event to the private sockets, in the venue's format."""
        raise NotImplementedError

    def mark_messages(self, socket: MarketSocket) -> list[Any]:
        """What one market socket is sent on each push (its subscribed mark / ticker streams)."""
        raise NotImplementedError

    # ----- websockets ---------------------------------------------------------------------

    async def expire_listen_key(self) -> int:
        """A venue without listen keys: its user-data sockets just drop (BinanceVenue overrides)."""
        return await self.close_private()

    async def close_private(self) -> int:
        """Drop every user-data socket (clients see a disconnect; events meanwhile are lost)."""
        sockets = list(self.private)
        self.private.clear()
        for ws in sockets:
            await ws.close()
        return len(sockets)

    async def pump(self) -> None:
        """Until the simulator closes: its user stream, in the venue's format, to the private sockets.

        A `new_session()` of the simulator ends one iteration of its stream; the pump starts the next.
        A StreamGap (the simulated user stream dropped) closes every private socket.
        """
        while not self.sim.closed:
            async for event in self.sim.stream():
                if isinstance(event, StreamGap):
                    await self.close_private()
                    continue
                if isinstance(event, MarkPrice):
                    self.history.record(event.symbol, event.price, ms(event.at))
                if self.silent:
                    continue  # a quiet socket: the event is lost, as on a dead connection
                await self.deliver(event)

    async def push_marks(self) -> None:
        """Every `push_interval` seconds, each market socket gets its subscribed streams."""
        while True:
            await asyncio.sleep(self.push_interval)
            at = self.now_ms()
            for symbol, price in self.core.marks().items():
                self.history.record(symbol, price, at)
            for socket in list(self.market):
                if socket.ws.closed:
                    continue
                for message in self.mark_messages(socket):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await socket.ws.send_json(message)

    async def close_all(self) -> None:
        await self.close_private()
        for socket in list(self.market):
            await socket.ws.close()
        self.market.clear()
