"""`BybitVenue`: the Bybit v5 face's state on top of the shared `SimVenue`.

The simulator's refusals and faults as Bybit retCodes, what Bybit shows of an order that
the core does not keep (created time, triggerBy, closeOnTrigger), the private sessions
(authenticated, with their topics) and the messages of the `order`, `execution`,
`position` and `wallet` topics and of the public `tickers.<symbol>` topic.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from warden.adapters.sim.book import Direction, direction_of
from warden.adapters.sim.faults import SimServerError
from warden.adapters.sim.rules import SimRejection
from warden.adapters.sim.server.bybit import shapes
from warden.adapters.sim.server.bybit.auth import BybitError, Json
from warden.adapters.sim.server.shapes import num
from warden.adapters.sim.server.venue import MarketSocket, SimVenue
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import ZERO, ClientOrderId, Symbol
from warden.ports import ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

MAX_CONDITIONAL_ORDERS = 10
"""Bybit's cap on resting conditional orders per symbol (retCode 110009 beyond it)."""

PRIVATE_TOPICS = ("order", "execution", "position", "wallet")

TOO_MANY_VISITS = "Too many visits. Exceeded the API Rate Limit."
RATE_LIMIT = 20
"""The `X-Bapi-Limit` a 10006 reports: Bybit's per-second limit of /v5/order/create and /cancel
for linear on a unified account."""
REQUEST_TIMEOUT = "Request timeout, please try again later"
SYSTEM_ERROR = "System error. Please try again later."
NOT_EXISTS = "order not exists or too late to cancel"


@dataclass
class PrivateSession:
    """One `/v5/private` socket: whether it authenticated, and the topics it subscribed to."""

    authed: bool = False
    topics: set[str] = field(default_factory=set)


def _rejection(cause: SimRejection, request: OrderRequest, mark: Decimal) -> BybitError:
    """A core refusal (Binance-coded) as the retCode Bybit answers in that situation."""
    code = cause.code
    if code == -2021 and request.trigger_price is not None:
        trigger = num(request.trigger_price)
        if direction_of(request.side, request.type) is Direction.RISING:
            return BybitError(
                110092, f"expect Rising, but trigger_price[{trigger}] <= current[{num(mark)}]??LastPrice"
            )
        return BybitError(
            110093, f"expect Falling, but trigger_price[{trigger}] >= current[{num(mark)}]??LastPrice"
        )
    if code == -2022:
        return BybitError(110017, "Reduce-only rule not satisfied")
    if code == -4164:
        return BybitError(110094, f"Order does not meet minimum order value: {cause.message}")
    if code == -4116:
        return BybitError(110072, "OrderLinkedID is duplicate")
    if code == -1121:
        return BybitError(10001, "params error: symbol invalid")
    if code == -4005 and "maximum" in cause.message:
        return BybitError(10001, "The number of contracts exceeds maximum limit allowed: too large")
    if code == -4005:
        return BybitError(10001, "The number of contracts below min limit allowed")
    return BybitError(10001, f"params error: {cause.message}")


class BybitVenue(SimVenue):
    """The Bybit v5 compatible face (category linear, one-way mode, a unified trading account)."""

    name = "bybit"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: dict[web.WebSocketResponse, PrivateSession] = {}
        self.extras: dict[str, shapes.OrderExtras] = {}  # core order id -> what only Bybit shows
        self.conn_id = uuid.uuid4().hex[:20]
        self._seq = itertools.count(1)
        self._no_link = itertools.count(1)

    def symbol(self, raw: str | None) -> Symbol:
        symbol = None if raw is None else self.find_symbol(raw)
        if symbol is None:
            raise BybitError(10001, "params error: symbol invalid")
        return symbol

    def seq(self) -> int:
        return next(self._seq)

    def not_found(self, path: str) -> web.Response:
        return web.json_response({"retCode": 10017, "retMsg": "route not found", "result": {}}, status=404)

    def internal_error(self) -> web.Response:
        body = {
            "retCode": 10016,
            "retMsg": SYSTEM_ERROR,
            "result": {},
            "retExtInfo": {},
            "time": self.now_ms(),
        }
        return web.json_response(body)

    # ----- orders through the simulator's faults ----------------------------------------

    def fresh_client_id(self) -> str:
        """The core's client id for an order sent without an orderLinkId (shown as "")."""
        return f"{shapes.NO_LINK_PREFIX}{self.now_ms()}-{next(self._no_link)}"

    async def place(self, request: OrderRequest, extras: shapes.OrderExtras) -> OrderReport:
        mark = self.core.mark(request.symbol)
        try:
            report = await self.sim.place_order(request)
        except OrderRejected as exc:
            cause = exc.__cause__
            if isinstance(cause, SimRejection):
                raise _rejection(cause, request, mark) from exc
            raise BybitError(
                10001, f"params error: simulated rejection of {request.client_order_id}"
            ) from exc
        except ExchangeUnavailable as exc:
            raise self.too_many_visits() from exc
        except ExchangeTimeout as exc:
            raise BybitError(10016, REQUEST_TIMEOUT) from exc
        finally:
            placed = self.core.order(request.client_order_id)
            if placed is not None and placed.exchange_order_id not in self.extras:
                self.extras[placed.exchange_order_id] = extras  # also when it timed out after placing
        return report

    async def cancel(self, order: OrderReport) -> OrderReport:
        try:
            return await self.sim.cancel_order(order.symbol, order.client_order_id, order.type.conditional)
        except OrderNotFound as exc:
            raise BybitError(110001, NOT_EXISTS) from exc
        except SimServerError as exc:  # server_error_if: nothing cancelled, the client cannot tell
            raise BybitError(10016, SYSTEM_ERROR) from exc
        except ExchangeUnavailable as exc:
            raise self.too_many_visits() from exc

    async def amend(self, order: OrderReport, qty: Decimal | None, trigger: Decimal | None) -> OrderReport:
        try:
            return await self.sim.amend_order(order.client_order_id, qty=qty, trigger_price=trigger)
        except OrderNotFound as exc:
            raise BybitError(110001, NOT_EXISTS) from exc
        except OrderRejected as exc:
            cause = exc.__cause__
            if isinstance(cause, SimRejection):
                request = OrderRequest(
                    ClientOrderId(order.client_order_id),
                    order.symbol,
                    order.side,
                    order.type,
                    qty or order.qty,
                    trigger or order.trigger_price,
                    order.reduce_only,
                )
                raise _rejection(cause, request, self.core.mark(order.symbol)) from exc
            raise BybitError(10001, f"params error: {exc}") from exc
        except ExchangeUnavailable as exc:
            raise self.too_many_visits() from exc

    def too_many_visits(self) -> BybitError:
        """retCode 10006 as Bybit sends it: HTTP 200, none left of the window (`X-Bapi-Limit-Status`
        0), and the window resetting `retry_after` seconds from now on the server's clock
        (`X-Bapi-Limit-Reset-Timestamp`, ms; with retry_after 0, now: nothing to wait)."""
        reset = self.now_ms() + round(self.sim.faults.retry_after * 1000)
        headers = {
            "X-Bapi-Limit": str(RATE_LIMIT),
            "X-Bapi-Limit-Status": "0",
            "X-Bapi-Limit-Reset-Timestamp": str(reset),
        }
        return BybitError(10006, TOO_MANY_VISITS, headers=headers)

    async def gate(self) -> None:
        """Latency and outage faults for a call that reads the core directly."""
        try:
            await self.sim.gate(query=True)
        except ExchangeUnavailable as exc:
            raise BybitError(10016, SYSTEM_ERROR) from exc

    def order_fee(self, order: OrderReport) -> Decimal:
        if order.filled_qty == 0:
            return ZERO
        fills = self.core.fills(order.symbol)
        return sum((f.fee for f in fills if f.exchange_order_id == order.exchange_order_id), ZERO)

    def order_json(self, order: OrderReport, *, status: str | None = None) -> Json:
        extras = self.extras.get(order.exchange_order_id)
        return shapes.order(order, extras, self.order_fee(order), status=status)

    def position_json(self, symbol: Symbol) -> Json:
        core = self.core
        return shapes.position(
            core.position(symbol),
            core.mark(symbol),
            core.leverage(symbol),
            core.margin_mode(symbol),
            self.now_ms(),
            self.seq(),
        )

    def wallet_json(self) -> Json:
        core = self.core
        rows = [(core.position(s), core.mark(s), core.leverage(s)) for s in sorted(core.instruments)]
        return shapes.wallet(rows)

    # ----- the private stream -----------------------------------------------------------

    def _topic_message(self, topic: str, data: list[Json]) -> Json:
        return {"id": uuid.uuid4().hex, "topic": topic, "creationTime": self.now_ms(), "data": data}

    def messages(self, event: StreamEvent) -> list[tuple[str, Json]]:
        """(topic, message) pairs one domain event becomes.

        OrderReport -> `order`; FillReport -> `order` (Triggered, for a conditional order firing)
        then `execution`; PositionReport -> `position` and `wallet`; marks -> nothing here.
        """
        linear = {"category": "linear"}
        if isinstance(event, OrderReport):
            return [("order", self._topic_message("order", [{**self.order_json(event), **linear}]))]
        if isinstance(event, FillReport):
            out: list[tuple[str, Json]] = []
            order = self.core.order_by_id(event.exchange_order_id)
            if order is not None and order.type.conditional:
                triggered = self.order_json(order, status="Triggered")
                out.append(("order", self._topic_message("order", [{**triggered, **linear}])))
            row = shapes.execution(event, order, self.core.fee_rate, self.seq())
            out.append(("execution", self._topic_message("execution", [{**row, **linear}])))
            return out
        if isinstance(event, PositionReport):
            return [
                (
                    "position",
                    self._topic_message("position", [{**self.position_json(event.symbol), **linear}]),
                ),
                ("wallet", self._topic_message("wallet", [self.wallet_json()])),
            ]
        return []

    async def deliver(self, event: StreamEvent) -> None:
        pairs = self.messages(event)
        for ws, session in list(self.sessions.items()):
            if not session.authed or ws.closed:
                continue
            for topic, message in pairs:
                if topic in session.topics:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_json(message)

    async def close_private(self) -> int:
        self.sessions.clear()
        return await super().close_private()

    # ----- the public stream ------------------------------------------------------------

    def ticker_symbol(self, topic: str) -> Symbol | None:
        name, _, market = topic.partition(".")
        return self.find_symbol(market) if name == "tickers" and market else None

    def ticker_message(self, topic: str, *, snapshot: bool) -> Json | None:
        symbol = self.ticker_symbol(topic)
        if symbol is None:
            return None
        mark, at = self.core.mark(symbol), self.now_ms()
        data = shapes.ticker(symbol, mark, at) if snapshot else shapes.ticker_delta(symbol, mark)
        kind = "snapshot" if snapshot else "delta"
        return {"topic": topic, "type": kind, "data": data, "cs": self.seq(), "ts": at}

    def mark_messages(self, socket: MarketSocket) -> list[Any]:
        out = []
        for topic in sorted(socket.streams):
            message = self.ticker_message(topic, snapshot=False)
            if message is not None:
                out.append(message)
        return out
