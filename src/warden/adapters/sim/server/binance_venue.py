"""`BinanceVenue`: the Binance USD-M face's state on top of the shared `SimVenue`.

Listen keys, Binance's error bodies for the simulator's refusals and faults, the
user-data messages (ORDER_TRADE_UPDATE, ALGO_UPDATE, ACCOUNT_UPDATE) and the
`markPriceUpdate` pushes.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from typing import Any

from aiohttp import web

from warden.adapters.sim.faults import SimServerError
from warden.adapters.sim.rules import SimRejection
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.events import mark_price_update, translate
from warden.adapters.sim.server.shapes import Json
from warden.adapters.sim.server.venue import MarketSocket, SimVenue
from warden.domain.reports import OrderReport, OrderRequest, StreamEvent
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

UNKNOWN_STATUS = (
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
)
INTERNAL_ERROR = "Internal error; unable to process your request. Please try again."
SERVICE_UNAVAILABLE = "Service Unavailable."
TOO_MANY_REQUESTS = "Too many requests; current limit of IP is 2400 requests per minute."


class BinanceVenue(SimVenue):
    """The Binance USD-M compatible face."""

    name = "binance"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listen_keys: set[str] = set()

    def symbol(self, raw: str) -> Symbol:
        """A Binance id (`BTCUSDT`) or a unified symbol (`BTC/USDT:USDT`); -1121 otherwise."""
        symbol = self.find_symbol(raw)
        if symbol is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return symbol

    def not_found(self, path: str) -> web.Response:
        return web.json_response({"code": -5000, "msg": f"Path {path} not found"}, status=404)

    def internal_error(self) -> web.Response:
        return web.json_response(
            {"code": -1000, "msg": "An unknown error occurred while processing the request."}, status=500
        )

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
            raise self._too_many_requests() from exc
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
            raise self._too_many_requests() from exc

    def _too_many_requests(self) -> BinanceError:
        """HTTP 429 (-1003) with the `Retry-After` of the `retry_after` knob, when set."""
        return BinanceError(-1003, TOO_MANY_REQUESTS, 429, retry_after=math.ceil(self.sim.faults.retry_after))

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

    async def expire_listen_key(self) -> int:
        """The listen key expires (as when nobody kept it alive): `listenKeyExpired` goes to every
        user-data socket, they close, and the old key is refused until a new one is made.
        Returns how many sockets were told."""
        at = self.now_ms()
        expired = [{"e": "listenKeyExpired", "E": at, "listenKey": key} for key in sorted(self.listen_keys)]
        self.listen_keys.clear()
        for ws in list(self.private):
            for message in expired:
                if ws.closed:
                    break
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(message)
        return await self.close_private()

    def check_listen_key(self, key: str) -> None:
        if key not in self.listen_keys:
            raise BinanceError(-1125, "This listenKey does not exist.")

    # ----- websockets -----------------------------------------------------------------

    async def send_private(self, messages: list[Json]) -> None:
        for ws in list(self.private):
            for message in messages:
                if ws.closed:
                    break
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(message)

    async def deliver(self, event: StreamEvent) -> None:
        await self.send_private(translate(self.core, event, self.now()))

    def mark_messages(self, socket: MarketSocket) -> list[Any]:
        return self.mark_updates(socket.streams)

    def mark_updates(self, streams: set[str]) -> list[Any]:
        at = self.now_ms()
        marks = self.core.marks()
        out: list[Any] = []
        for stream in sorted(streams):
            name = stream.lower()
            if name.startswith("!markprice@arr"):
                out.append([mark_price_update(s, p, at) for s, p in sorted(marks.items())])
                continue
            symbol_id, _, kind = name.partition("@")
            symbol = self.find_symbol(symbol_id.upper())
            if symbol is not None and kind.startswith("markprice"):
                out.append(mark_price_update(symbol, marks[symbol], at))
        return out
