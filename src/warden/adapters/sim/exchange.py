"""`SimulatedExchange`: the in-process adapter behind the `Exchange` port.

It wraps a `SimCore` (the matching engine) with what makes a real exchange hard:
latency, a user stream that drops, duplicates, reorders and disconnects, refusals,
outages, and timeouts after the order went through. Core errors are translated here,
in one place:

    SimRejection      -> OrderRejected
    SimOrderNotFound  -> OrderNotFound

Conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET) live on Binance's algo endpoint:
`fetch_order` / `cancel_order` with the wrong `conditional` flag do not find them.

With a `state_file`, the account survives a restart of the process: the core's snapshot
is loaded at construction and rewritten atomically after every mutation (a plain mark
move that fires nothing is written at most once per second, and on `close`).

A market order acknowledged under the `ack_only_if` fault fills `fill_delay` seconds later
in a background task (the injected `sleep` times it). Its due time is part of the snapshot,
so a restarted adapter resumes it: it fills at its due time, or at once (at the mark of that
moment) if the due time passed while the process was down. `close` cancels the task; the
order stays open in the state file until the next start. The fault knobs themselves are
not persisted, nor is a request held back by `execute_late_if` (it is lost with the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from warden.adapters.sim.core import Outcome, SimCore
from warden.adapters.sim.exposure import SimExposure, SimStretch
from warden.adapters.sim.faults import SimFaults, SimRateLimited, SimServerError
from warden.adapters.sim.markets import DEFAULT_VOLATILITY
from warden.adapters.sim.persist import read_state, write_state
from warden.adapters.sim.rules import DUPLICATE_ID, SimOrderNotFound, SimRejection
from warden.adapters.sim.stream import SimStream, Sleep
from warden.domain.margin import SymbolConfig
from warden.domain.reports import (
    FillReport,
    MarkPrice,
    OrderReport,
    OrderRequest,
    PositionReport,
    StreamEvent,
)
from warden.domain.values import ClientOrderId, Instrument, OrderSide, OrderType, Symbol
from warden.ports import DuplicateOrder, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

RESPONSE_WAIT = 1.0
"""Default bound on how long place_order waits for the consumer under `events_before_response`."""

MARK_SAVE_INTERVAL = 1.0
"""Seconds between state-file writes caused only by mark moves that fired nothing."""


class SimulatedExchange:
    """One simulated account. `now` gives timezone-aware UTC datetimes; `sleep` is awaited for latency."""

    def __init__(
        self,
        core: SimCore | None = None,
        *,
        now: Callable[[], datetime],
        faults: SimFaults | None = None,
        seed: int = 0,
        sleep: Sleep = asyncio.sleep,
        response_wait: float = RESPONSE_WAIT,
        state_file: Path | None = None,
    ) -> None:
        self.core = core if core is not None else SimCore(seed=seed)
        self.faults = faults if faults is not None else SimFaults()
        self._now = now
        self._sleep = sleep
        self._response_wait = response_wait
        self._stream = SimStream(self.faults, random.Random(f"stream-{seed}"), now, sleep)
        self._closed = False
        self.state_file = state_file
        self._saved_at = float("-inf")
        self._dirty = False
        self._fill_tasks: set[asyncio.Task[None]] = set()
        self._timed: set[str] = set()  # exchange ids whose delayed fill has a task
        self._parts: dict[str, int] = {}  # exchange ids of orders filling in parts: parts filled
        self._fills_to_resume = False
        if state_file is not None:
            snapshot = read_state(state_file)
            if snapshot is not None:
                self.core.restore(snapshot)
                self._fills_to_resume = bool(self.core.fills_due())
                self._resume_fills()

    # ----- the Exchange port -----------------------------------------------------------

    async def instruments(self) -> dict[Symbol, Instrument]:
        await self._rest()
        return dict(self.core.instruments)

    async def mark_price(self, symbol: Symbol) -> Decimal:
        await self._rest()
        try:
            return self.core.mark(symbol)
        except SimRejection as exc:
            raise OrderRejected(str(exc)) from exc

    async def place_order(self, request: OrderRequest, *, close_position: bool = False) -> OrderReport:
        """Execute the order; a market order comes back FILLED, a conditional one OPEN.

        Under `faults.ack_only_if` a matching market order comes back OPEN and unfilled, and
        fills `faults.fill_delay` seconds later (see SimFaults). `close_position` (conditional
        orders only) closes whatever is open when it fires, like Binance's closePosition=true;
        the port never uses it, the server does.
        """
        await self._rest()
        faults = self.faults
        self._refuse_burst(request, "placing")
        if faults.unavailable_if is not None and faults.unavailable_if(request):
            raise ExchangeUnavailable(f"simulated outage placing {request.client_order_id}")
        if faults.reject_if is not None and faults.reject_if(request):
            raise OrderRejected(f"simulated rejection of {request.client_order_id}")
        if faults.execute_late_if is not None and faults.execute_late_if(request):
            self._execute_later(request, close_position, max(0.0, faults.execute_delay))
            raise ExchangeTimeout(f"simulated unknown outcome of {request.client_order_id} (executed later)")
        report, seq = self._execute(request, close_position)
        if faults.events_before_response and seq is not None:
            await self._stream.wait_taken(seq, self._response_wait)
        if faults.timeout_after_execution_if is not None and faults.timeout_after_execution_if(request):
            raise ExchangeTimeout(f"simulated timeout after executing {request.client_order_id}")
        return report

    def _execute(self, request: OrderRequest, close_position: bool) -> tuple[OrderReport, int | None]:
        """The matching engine takes the order: placed (filled, resting or acknowledged under
        `ack_only_if`), saved, its events published. Returns the order and the stream sequence
        the consumer must reach to have seen its events (None: none were enqueued)."""
        faults = self.faults
        now = self._now()
        delay: float | None = None
        if (
            request.type is OrderType.MARKET
            and faults.ack_only_if is not None
            and faults.ack_only_if(request)
        ):
            delay = max(0.0, faults.fill_delay)
        fill_at = None if delay is None else now + timedelta(seconds=delay)
        try:
            outcome = self.core.place(request, now, close_position=close_position, fill_at=fill_at)
        except SimRejection as exc:
            if exc.code == DUPLICATE_ID:
                raise DuplicateOrder(str(exc)) from exc
            raise OrderRejected(str(exc)) from exc
        self.save()
        if delay is not None:
            self._fill_later(outcome.report.exchange_order_id, delay)
        self._time_due_fills()
        return outcome.report, self._stream.publish(outcome.events)

    def _execute_later(self, request: OrderRequest, close_position: bool, delay: float) -> None:
        """`execute_late_if`: the request reaches the matching engine `delay` seconds from now."""
        task = asyncio.get_running_loop().create_task(self._execute_after(request, close_position, delay))
        self._fill_tasks.add(task)
        task.add_done_callback(self._fill_tasks.discard)

    async def _execute_after(self, request: OrderRequest, close_position: bool, delay: float) -> None:
        await self._sleep(delay)
        if self._closed:
            return
        with contextlib.suppress(DuplicateOrder, OrderRejected):  # refused: nothing happens
            self._execute(request, close_position)

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        await self._rest()
        order = self._find(symbol, client_order_id, conditional)
        self._refuse_burst(_as_request(order), "cancelling")
        return self._cancel(client_order_id)

    async def amend_order(
        self, client_order_id: str, *, qty: Decimal | None = None, trigger_price: Decimal | None = None
    ) -> OrderReport:
        """Change a resting conditional order's quantity and/or trigger (the Bybit face's amend;
        not part of the port). OrderNotFound if none rests; OrderRejected for invalid values."""
        await self._rest()
        try:
            outcome = self.core.amend(client_order_id, self._now(), qty=qty, trigger_price=trigger_price)
        except SimOrderNotFound as exc:
            raise OrderNotFound(f"-2013: {exc}") from exc
        except SimRejection as exc:
            raise OrderRejected(str(exc)) from exc
        self.save()
        self._stream.publish(outcome.events)
        return outcome.report

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        await self._query()
        return self._find(symbol, client_order_id, conditional)

    async def fetch_open_orders(self) -> list[OrderReport]:
        """Every open order, plain and conditional."""
        await self._query()
        return self.core.open_orders()

    async def fetch_positions(self) -> list[PositionReport]:
        """Non-flat positions only."""
        await self._query()
        return self.core.positions()

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        await self._query()
        try:
            return self.core.fills(symbol, since)
        except SimRejection as exc:
            raise OrderRejected(str(exc)) from exc

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        await self._query()
        try:
            return self.core.symbol_config(symbol)
        except SimRejection as exc:
            raise OrderRejected(str(exc)) from exc

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        await self._rest()
        try:
            self.core.configure(symbol, config.leverage, config.margin_mode)
        except SimRejection as exc:
            raise OrderRejected(str(exc)) from exc
        self.save()

    def stream(self) -> AsyncIterator[StreamEvent]:
        """User events and mark prices (single consumer); yields StreamGap after a reconnect."""
        self._resume_fills()
        return self._stream.events()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Refuse further calls, end the stream, and write any unsaved state."""
        if not self._closed:
            self._closed = True
            self._stream.close()
            tasks = list(self._fill_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._dirty:
                self.save()

    # ----- control surface (tests, the price feed, the /sim/ endpoints) -----------------

    def set_mark(self, symbol: Symbol, price: Decimal) -> None:
        """Move a mark price, firing any triggers it reaches."""
        self._fire_timing()
        self._moved(self.core.set_mark(symbol, price, self._now()))

    def step_prices(self, volatility: float = DEFAULT_VOLATILITY) -> None:
        """One seeded random-walk step of every mark."""
        self._fire_timing()
        self._moved(self.core.walk(self._now(), volatility))

    def _fire_timing(self) -> None:
        """Orders the mark fires execute in parts while `fire_in_parts` holds (its next turn on)."""
        self.core.fire_delay = timedelta(0) if self.faults.fire_in_parts else None

    def exposure(self) -> list[SimExposure]:
        """Per symbol that has (or has had) a position: how long it has gone without a covering stop.

        Measured by the exchange on its own clock (`now`), whatever warden believes; see
        `SimCore.exposure`. Not subject to the fault knobs (it is not an exchange API call).
        """
        return self.core.exposure(self._now())

    def exposure_stretches(self) -> list[SimStretch]:
        """Every uncovered stretch this adapter's core has seen (oldest first; see `SimCore`)."""
        return self.core.exposure_stretches()

    def save(self) -> None:
        """Write the core's snapshot to the state file now (no-op without one)."""
        if self.state_file is None:
            return
        write_state(self.state_file, self.core.snapshot())
        self._saved_at = time.monotonic()
        self._dirty = False

    def external_order(
        self,
        symbol: Symbol,
        side: OrderSide,
        qty: Decimal,
        reduce_only: bool = False,
        *,
        order_type: OrderType = OrderType.MARKET,
        trigger_price: Decimal | None = None,
        close_position: bool = False,
    ) -> OrderReport:
        """A trade on the account that warden did not make (client id `ext-N`)."""
        try:
            outcome = self.core.external_order(
                symbol,
                side,
                qty,
                self._now(),
                reduce_only=reduce_only,
                order_type=order_type,
                trigger_price=trigger_price,
                close_position=close_position,
            )
        except SimRejection as exc:
            raise OrderRejected(str(exc)) from exc
        self.save()
        self._stream.publish(outcome.events)
        return outcome.report

    def publish(self, outcome: Outcome) -> None:
        """A core call made by a protocol face itself: save, time its delayed fills, stream its events."""
        self.save()
        self._time_due_fills()
        self._stream.publish(outcome.events)

    def cancel_external(self, client_order_id: str) -> OrderReport:
        """Cancel any open order by client id, as someone else on the account would."""
        return self._cancel(client_order_id)

    def new_session(self) -> int:
        """What a warden restart looks like to the exchange: the old websocket died.

        Every event queued but not yet taken by the consumer is discarded (and counted in
        `lost_events`), a consumer still iterating the old stream ends, and the next
        `stream()` starts fresh on a connected session with no StreamGap. The account
        itself (orders, positions, fills, marks) is untouched. Returns the discarded count.
        """
        return self._stream.new_session()

    def disconnect(self) -> None:
        """Drop the user stream: events from now until `reconnect` are lost."""
        self._stream.disconnect()

    def reconnect(self) -> None:
        """Restore the user stream; the consumer receives a StreamGap."""
        self._stream.reconnect()

    @property
    def queued_events(self) -> int:
        """Stream events published but not yet taken by the consumer."""
        return self._stream.queued

    @property
    def lost_events(self) -> int:
        """How many stream events were dropped or lost while disconnected."""
        return self._stream.lost

    async def gate(self, *, query: bool) -> None:
        """The latency and outage faults of one REST call, for callers that read the core directly."""
        await (self._query() if query else self._rest())

    async def subscribing(self) -> None:
        """The subscribe_delay fault, for a server face about to act on a subscription."""
        if self.faults.subscribe_delay > 0:
            await self._sleep(self.faults.subscribe_delay)

    # ----- internals -------------------------------------------------------------------

    async def _rest(self) -> None:
        if self._closed:
            raise ExchangeUnavailable("the simulated exchange adapter is closed")
        self._resume_fills()
        if self.faults.rest_latency > 0:
            await self._sleep(self.faults.rest_latency)

    async def _query(self) -> None:
        await self._rest()
        if self.faults.fail_queries:
            raise ExchangeUnavailable("simulated query failure")

    def _refuse_burst(self, request: OrderRequest, doing: str) -> None:
        """The 5xx / 429 knobs: refuse before anything changes."""
        faults = self.faults
        if faults.rate_limit_if is not None and faults.rate_limit_if(request):
            raise SimRateLimited(f"simulated 429 {doing} {request.client_order_id}")
        if faults.server_error_if is not None and faults.server_error_if(request):
            raise SimServerError(f"simulated 5xx {doing} {request.client_order_id} (not executed)")

    def _find(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        order = self.core.order(client_order_id)
        if order is None or order.symbol != symbol or order.type.conditional != conditional:
            kind = "conditional order" if conditional else "order"
            raise OrderNotFound(f"-2013: no {kind} {client_order_id!r} in {symbol}")
        return order

    def _cancel(self, client_order_id: str) -> OrderReport:
        try:
            outcome = self.core.cancel(client_order_id, self._now())
        except SimOrderNotFound as exc:
            raise OrderNotFound(f"-2011: {exc}") from exc
        self.save()
        self._stream.publish(outcome.events)
        return outcome.report

    def _fill_later(self, exchange_order_id: str, delay: float) -> None:
        """Fill an acknowledged market order `delay` seconds from now, in a background task."""
        task = asyncio.get_running_loop().create_task(self._fill_after(exchange_order_id, delay))
        self._timed.add(exchange_order_id)
        self._fill_tasks.add(task)
        task.add_done_callback(self._fill_tasks.discard)

    def _time_due_fills(self) -> None:
        """Time every delayed execution the core has and no task waits for yet (e.g. conditional
        orders a mark move fired under `SimCore.trigger_delay`)."""
        due = self.core.fills_due()
        if not due or self._fills_to_resume:
            return
        now = self._now()
        for order_id, at in due.items():
            if order_id not in self._timed:
                self._fill_later(order_id, max(0.0, (at - now).total_seconds()))

    async def _fill_after(self, exchange_order_id: str, delay: float) -> None:
        try:
            await self._sleep(delay)
        finally:
            self._timed.discard(exchange_order_id)
        if self._closed:
            return
        now, faults = self._now(), self.faults
        order = self.core.order_by_id(exchange_order_id)
        part = rest_at = None
        filled = self._parts.pop(exchange_order_id, 0 if order is None or not order.filled_qty else 1)
        if faults.partial_fill > 0 and order is not None and filled < faults.fill_parts - 1:
            part = (order.qty - order.filled_qty) * Decimal(str(faults.partial_fill))
            rest_at = now + timedelta(seconds=max(0.0, faults.fill_delay))
        outcome = self.core.fill_acknowledged(exchange_order_id, now, part, rest_at)
        if outcome is None:  # cancelled meanwhile
            return
        if part is not None and exchange_order_id in self.core.fills_due():
            self._parts[exchange_order_id] = filled + 1  # a part filled, the rest still due
        self.save()
        self._stream.publish(outcome.events)
        self._time_due_fills()  # the rest of one partly filled

    def _resume_fills(self) -> None:
        """After a restart: time the fills the state file says are due (once a loop is running)."""
        if not self._fills_to_resume:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # constructed outside a loop: the first call from inside one resumes them
        self._fills_to_resume = False
        now = self._now()
        for order_id, due in self.core.fills_due().items():
            self._fill_later(order_id, max(0.0, (due - now).total_seconds()))

    def _moved(self, events: Sequence[StreamEvent]) -> None:
        """Publish a mark move; save now if it fired something, else at most once a second."""
        fired = any(not isinstance(e, MarkPrice) for e in events)
        if fired or time.monotonic() - self._saved_at >= MARK_SAVE_INTERVAL:
            self.save()
        else:
            self._dirty = True
        self._stream.publish(events)
        self._time_due_fills()


def _as_request(order: OrderReport) -> OrderRequest:
    """An order as the request that made it (what the fault predicates look at)."""
    return OrderRequest(
        ClientOrderId(order.client_order_id),
        order.symbol,
        order.side,
        order.type,
        order.qty,
        order.trigger_price,
        order.reduce_only,
    )
