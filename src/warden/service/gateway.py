"""The one way to the exchange: every call has a deadline, every mutation is fenced.

- Mutations (send, cancel) are refused, with nothing sent, unless this engine is
  the account's writer (`Gate.check_may_act`).
- Every call has a deadline (I7). An order call that misses it has an unknown
  outcome (ExchangeTimeout); a query that misses it simply failed
  (ExchangeUnavailable).
- A lookup by client order id answers with a typed outcome: Found, NotFound
  (the exchange says it has no such order, every time it was asked) or Unknown
  (it could not be asked). Callers never mistake Unknown for "not there".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from warden.domain.margin import SymbolConfig
from warden.domain.orders import Order
from warden.domain.reconcile import Truth
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport
from warden.domain.values import Instrument, Symbol
from warden.ports import (
    Exchange,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderNotFound,
    PlacesTogether,
)
from warden.service.context import Context

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Found:
    report: OrderReport


@dataclass(frozen=True, slots=True)
class NotFound:
    why: str = "not found on the exchange"


@dataclass(frozen=True, slots=True)
class Unknown:
    why: str = "the exchange could not be asked"


Lookup = Found | NotFound | Unknown


class Gateway:
    def __init__(self, exchange: Exchange, ctx: Context) -> None:
        self.exchange = exchange
        self.ctx = ctx
        self.calls = 0
        self.together = isinstance(exchange, PlacesTogether)
        """The venue takes an entry and its protection in one all-or-nothing request."""

    # ------------------------------------------------------------- mutations

    async def send(self, order: Order) -> OrderReport:
        """Place one order with its deterministic client id; ExchangeTimeout means UNKNOWN."""
        self.ctx.gate.check_may_act()
        return await self._deadline(
            self.exchange.place_order(_request(order)), self.ctx.config.order_timeout, order_call=True
        )

    async def send_together(self, orders: Sequence[Order]) -> list[OrderReport]:
        """Place several orders in one all-or-nothing request (a venue that is `together`: see
        PlacesTogether); ExchangeTimeout means the outcome of ALL of them is UNKNOWN."""
        self.ctx.gate.check_may_act()
        exchange = self.exchange
        if not isinstance(exchange, PlacesTogether):
            raise TypeError("this venue places one order per request")
        return await self._deadline(
            exchange.place_together([_request(o) for o in orders]),
            self.ctx.config.order_timeout,
            order_call=True,
        )

    async def cancel(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        """Cancel by client id; OrderNotFound passes through (the order is gone either way)."""
        self.ctx.gate.check_may_act()
        return await self.query(self.exchange.cancel_order(symbol, client_order_id, conditional))

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        """Set the symbol's leverage / margin mode (what `config` names)."""
        self.ctx.gate.check_may_act()
        await self.query(self.exchange.configure_symbol(symbol, config))

    # --------------------------------------------------------------- lookups

    async def lookup(self, order: Order, attempts: int | None = None) -> Lookup:
        """Resolve an unknown outcome by client order id, with backoff between tries."""
        config = self.ctx.config
        attempts = attempts or config.lookup_attempts
        not_found = 0
        for attempt in range(attempts):
            try:
                return Found(
                    await self.query(
                        self.exchange.fetch_order(order.symbol, order.client_order_id, order.type.conditional)
                    )
                )
            except OrderNotFound:
                not_found += 1
            except ExchangeError:
                pass
            if attempt + 1 < attempts:
                await self.ctx.clock.sleep(config.retry_backoff * (attempt + 1))
        return NotFound() if not_found == attempts else Unknown()

    # --------------------------------------------------------------- queries

    async def instruments(self) -> dict[Symbol, Instrument]:
        return await self.query(self.exchange.instruments())

    async def mark_price(self, symbol: Symbol) -> Decimal:
        return await self.query(self.exchange.mark_price(symbol))

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        return await self.query(self.exchange.symbol_config(symbol))

    async def open_orders(self) -> list[OrderReport]:
        return await self.query(self.exchange.fetch_open_orders())

    async def positions(self) -> list[PositionReport]:
        return await self.query(self.exchange.fetch_positions())

    async def truth(self) -> Truth:
        """What the exchange holds: its positions, then its open orders."""
        return Truth(await self.positions(), await self.open_orders())

    async def fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        return await self.query(self.exchange.fetch_fills(symbol, since))

    async def fills_of(self, order: Order, since: datetime | None) -> list[FillReport]:
        """The trades of one order since `since`, read over REST (its symbol's, filtered)."""
        return [
            f for f in await self.fills(order.symbol, since) if f.client_order_id == order.client_order_id
        ]

    async def query(self, call: Awaitable[T]) -> T:
        return await self._deadline(call, self.ctx.config.query_timeout)

    async def _deadline(self, call: Awaitable[T], seconds: float, *, order_call: bool = False) -> T:
        self.calls += 1
        try:
            async with asyncio.timeout(seconds):
                return await call
        except TimeoutError as exc:
            if order_call:
                raise ExchangeTimeout(f"no answer within {seconds}s") from exc
            raise ExchangeUnavailable(f"no answer within {seconds}s") from exc


def _request(order: Order) -> OrderRequest:
    return OrderRequest(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        qty=order.qty,
        trigger_price=order.trigger_price,
        reduce_only=order.reduce_only,
    )
