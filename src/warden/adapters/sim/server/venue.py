"""`SimVenue`: the state behind the Binance-compatible server.

One `SimulatedExchange` (the matching core, its faults and its optional state file),
the listen keys, the connected websockets, and a log of every request. A pump task
turns the simulator's user stream into Binance user-data messages for every private
socket; a pusher task sends `markPriceUpdate` to subscribed market sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from warden.adapters.sim.core import SimCore
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.faults import SimServerError
from warden.adapters.sim.rules import SimRejection
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.events import mark_price_update, translate
from warden.adapters.sim.server.shapes import Json, market_id, ms
from warden.domain.reports import OrderReport, OrderRequest, StreamGap
from warden.domain.values import Symbol
from warden.ports import ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

_MESSAGES = {
    -1111: "Precision is over the maximum defined for this asset.",
    -1121: "Invalid symbol.",
    -2021: "Order would immediately trigger.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4014: "Price not increased by tick size.",
    -4116: "ClientOrderId is duplicated.",
    -4136: "Target strategy invalid for orderType MARKET,closePosition true",
}
REQUEST_LOG_SIZE = 10_000
"""The request log keeps the most recent requests only (a long-running `warden sim serve`)."""

UNKNOWN_STATUS = (
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
)
SERVICE_UNAVAILABLE = "Service Unavailable."
TOO_MANY_REQUESTS = "Too many requests; current limit of IP is 2400 requests per minute."
INTERNAL_ERROR = "Internal error; unable to process your request. Please try again."


@dataclass
class MarketSocket:
    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)


class SimVenue:
    """Everything a request handler may touch. Single event loop; no locks needed."""

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
        self.now = now
        self.push_interval = push_interval
        self.listen_keys: set[str] = set()
        self.private: set[web.WebSocketResponse] = set()
        self.market: list[MarketSocket] = []
        self.requests: deque[Json] = deque(maxlen=REQUEST_LOG_SIZE)
        self.fault_specs: dict[str, object] = {}
        self._by_id = {market_id(s): s for s in sim.core.instruments}

    @property
    def core(self) -> SimCore:
        return self.sim.core

    def now_ms(self) -> int:
        return ms(self.now())

    def log(self, method: str, path: str, query: str, status: int, note: str = "") -> None:
        """One request: `query` is the query string and the form body together, as sent."""
        entry: Json = {"at": self.now_ms(), "method": method, "path": path, "query": query, "status": status}
        if note:
            entry["note"] = note
        self.requests.append(entry)

    # ----- symbols --------------------------------------------------------------------

    def symbol(self, raw: str) -> Symbol:
        """A Binance id (`BTCUSDT`) or a unified symbol (`BTC/USDT:USDT`); -1121 otherwise."""
        if raw in self.core.instruments:
            return Symbol(raw)
        symbol = self._by_id.get(raw.upper())
        if symbol is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return symbol

    # ----- trading through the simulator's faults ---------------------------------------

    async def place(self, request: OrderRequest, *, close_position: bool = False) -> OrderReport:
        try:
            return await self.sim.place_order(request, close_position=close_position)
        except OrderRejected as exc:
            cause = exc.__cause__
            if isinstance(cause, SimRejection):
                raise BinanceError(cause.code, _MESSAGES.get(cause.code, cause.message)) from exc
            raise BinanceError(-2010, f"Order rejected: {exc}") from exc
        except SimServerError as exc:
            raise BinanceError(-1001, INTERNAL_ERROR, 502) from exc
        except ExchangeUnavailable as exc:
            raise BinanceError(-1003, TOO_MANY_REQUESTS, 429) from exc
        except ExchangeTimeout as exc:
            raise BinanceError(-1007, UNKNOWN_STATUS, 503) from exc

    async def cancel(self, order: OrderReport) -> OrderReport:
        try:
            return await self.sim.cancel_order(order.symbol, order.client_order_id, order.type.conditional)
        except OrderNotFound as exc:
            raise BinanceError(-2011, "Unknown order sent.") from exc
        except SimServerError as exc:
            raise BinanceError(-1001, INTERNAL_ERROR, 502) from exc
        except ExchangeUnavailable as exc:
            raise BinanceError(-1003, TOO_MANY_REQUESTS, 429) from exc

    async def gate(self, *, query: bool = True) -> None:
        """Latency and outage faults for a call that reads the core directly."""
        try:
            await self.sim.gate(query=query)
        except ExchangeUnavailable as exc:
            raise BinanceError(-1001, SERVICE_UNAVAILABLE, 503) from exc

    # ----- listen keys ----------------------------------------------------------------

    def new_listen_key(self) -> str:
        """Binance hands back the active key while there is one."""
        if not self.listen_keys:
            self.listen_keys.add(secrets.token_hex(32))
        return next(iter(self.listen_keys))

    def check_listen_key(self, key: str) -> None:
        if key not in self.listen_keys:
            raise BinanceError(-1125, "This listenKey does not exist.")

    async def expire_listen_key(self) -> int:
        """The listen key expires (as when nobody kept it alive): `listenKeyExpired` goes to every
        user-data socket, they close, and the old key is refused until a new one is made.
        Returns how many sockets were told."""
        at = self.now_ms()
        expired = [{"e": "listenKeyExpired", "E": at, "listenKey": key} for key in sorted(self.listen_keys)]
        self.listen_keys.clear()
        await self.send_private(expired)
        return await self.close_private()

    # ----- websockets -----------------------------------------------------------------

    async def send_private(self, messages: list[Json]) -> None:
        for ws in list(self.private):
            for message in messages:
                if ws.closed:
                    break
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(message)

    async def close_private(self) -> int:
        """Drop every user-data socket (clients see a disconnect; events meanwhile are lost)."""
        sockets = list(self.private)
        self.private.clear()
        for ws in sockets:
            await ws.close()
        return len(sockets)

    async def pump(self) -> None:
        """Until the simulator closes: its user stream, as Binance messages, to every private socket.

        A `new_session()` of the simulator ends one iteration of its stream; the pump starts the next.
        """
        while not self.sim.closed:
            async for event in self.sim.stream():
                if isinstance(event, StreamGap):
                    await self.close_private()
                    continue
                await self.send_private(translate(self.core, event, self.now()))

    def mark_messages(self, streams: set[str]) -> list[Any]:
        at = self.now_ms()
        marks = self.core.marks()
        out: list[Any] = []
        for stream in sorted(streams):
            name = stream.lower()
            if name.startswith("!markprice@arr"):
                out.append([mark_price_update(s, p, at) for s, p in sorted(marks.items())])
                continue
            symbol_id, _, kind = name.partition("@")
            symbol = self._by_id.get(symbol_id.upper())
            if symbol is not None and kind.startswith("markprice"):
                out.append(mark_price_update(symbol, marks[symbol], at))
        return out

    async def push_marks(self) -> None:
        """Every `push_interval` seconds, a markPriceUpdate per subscribed stream (Binance's @1s)."""
        while True:
            await asyncio.sleep(self.push_interval)
            for socket in list(self.market):
                if socket.ws.closed:
                    continue
                for message in self.mark_messages(socket.streams):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await socket.ws.send_json(message)

    async def close_all(self) -> None:
        await self.close_private()
        for socket in list(self.market):
            await socket.ws.close()
        self.market.clear()
