"""Measuring decorators of the ports: exchange calls, database writes and alert deliveries.

bootstrap wraps the exchange, the store and the notifier it builds in these; the API's
/metrics reads `Telemetry.registry` at scrape time. Nothing here changes what is called or
what it returns: each call is timed and its failure counted, then passed on unchanged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from warden.adapters.forwarding import ForwardingStore
from warden.domain.alerts import Alert
from warden.domain.events import Event, EventKind
from warden.domain.margin import SymbolConfig
from warden.domain.position import Position
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import Instrument, Symbol
from warden.ports import Exchange, Notifier, PlacesTogether, Store, Transition

T = TypeVar("T")
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """The metrics of one running warden (its own registry, so several never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.exchange_seconds = Histogram(
            "warden_exchange_call_seconds",
            "Exchange REST calls by operation, in seconds (failed ones included).",
            ["operation"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self.exchange_errors = Counter(
            "warden_exchange_errors",
            "Exchange calls that raised, by operation and error.",
            ["operation", "error"],
            registry=self.registry,
        )
        self.db_seconds = Histogram(
            "warden_db_write_seconds",
            "Database writes by operation (commit: one state transition), in seconds.",
            ["operation"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self.db_errors = Counter(
            "warden_db_errors",
            "Database writes that raised, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.reconcile_differences = Counter(
            "warden_reconcile_differences",
            "Differences reconciliation found (and recorded), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "warden_alert_deliveries",
            "Alerts handed to a notifier, by channel and outcome.",
            ["channel", "outcome"],
            registry=self.registry,
        )


async def _timed(
    seconds: Histogram, errors: Callable[[BaseException], None], operation: str, call: Awaitable[T]
) -> T:
    started = time.perf_counter()
    try:
        return await call
    except Exception as exc:
        errors(exc)
        raise
    finally:
        seconds.labels(operation=operation).observe(time.perf_counter() - started)


class MeasuredExchange:
    """An Exchange whose every REST call is timed and whose failures are counted."""

    def __init__(self, inner: Exchange, telemetry: Telemetry) -> None:
        self.inner = inner
        self.telemetry = telemetry

    def _call(self, operation: str, call: Awaitable[T]) -> Awaitable[T]:
        t = self.telemetry

        def failed(exc: BaseException) -> None:
            t.exchange_errors.labels(operation=operation, error=type(exc).__name__).inc()

        return _timed(t.exchange_seconds, failed, operation, call)

    async def instruments(self) -> dict[Symbol, Instrument]:
        return await self._call("instruments", self.inner.instruments())

    async def mark_price(self, symbol: Symbol) -> Decimal:
        return await self._call("mark_price", self.inner.mark_price(symbol))

    async def place_order(self, request: OrderRequest) -> OrderReport:
        return await self._call("place_order", self.inner.place_order(request))

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        return await self._call("cancel_order", self.inner.cancel_order(symbol, client_order_id, conditional))

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        return await self._call("fetch_order", self.inner.fetch_order(symbol, client_order_id, conditional))

    async def fetch_open_orders(self) -> list[OrderReport]:
        return await self._call("fetch_open_orders", self.inner.fetch_open_orders())

    async def fetch_positions(self) -> list[PositionReport]:
        return await self._call("fetch_positions", self.inner.fetch_positions())

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        return await self._call("fetch_fills", self.inner.fetch_fills(symbol, since))

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        return await self._call("symbol_config", self.inner.symbol_config(symbol))

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        await self._call("configure_symbol", self.inner.configure_symbol(symbol, config))

    def stream(self) -> AsyncIterator[StreamEvent]:
        return self.inner.stream()

    async def close(self) -> None:
        await self.inner.close()


class MeasuredTogetherExchange(MeasuredExchange):
    """The same, for an exchange that places several orders in one request (PlacesTogether):
    the capability is passed through, measured like every other call."""

    def __init__(self, inner: PlacesTogether, telemetry: Telemetry) -> None:
        super().__init__(inner, telemetry)  # type: ignore[arg-type]
        self.together = inner

    async def place_together(self, requests: Sequence[OrderRequest]) -> list[OrderReport]:
        return await self._call("place_together", self.together.place_together(requests))


def measured_exchange(inner: Exchange, telemetry: Telemetry) -> MeasuredExchange:
    """The measuring decorator of `inner`, with its capabilities and no more."""
    if isinstance(inner, PlacesTogether):
        return MeasuredTogetherExchange(inner, telemetry)
    return MeasuredExchange(inner, telemetry)


class MeasuredStore(ForwardingStore):
    """A Store whose writes are timed and whose write failures are counted."""

    def __init__(self, inner: Store, telemetry: Telemetry) -> None:
        super().__init__(inner)
        self.telemetry = telemetry

    def _write(self, operation: str, call: Awaitable[None]) -> Awaitable[None]:
        t = self.telemetry

        def failed(_: BaseException) -> None:
            t.db_errors.labels(operation=operation).inc()

        return _timed(t.db_seconds, failed, operation, call)

    async def commit(self, transition: Transition) -> None:
        await self._write("commit", self.inner.commit(transition))
        self._count(transition.events)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        await self._write("commit", self.inner.commit_many(transitions))
        for transition in transitions:
            self._count(transition.events)

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        await self._write("append_events", self.inner.append_events(events, alerts))
        self._count(events)

    def _count(self, events: Sequence[Event]) -> None:
        """Reconciliation records one event per difference (data: kind, action): count them once stored."""
        for event in events:
            if event.kind is EventKind.RECONCILE and "kind" in event.data and "action" in event.data:
                self.telemetry.reconcile_differences.labels(kind=event.data["kind"]).inc()

    async def save_marks(self, positions: Sequence[Position]) -> None:
        await self._write("save_marks", self.inner.save_marks(positions))


class MeasuredNotifier:
    """A Notifier whose deliveries are counted by channel and outcome."""

    def __init__(self, inner: Notifier, channel: str, telemetry: Telemetry) -> None:
        self.inner = inner
        self.channel = channel
        self.telemetry = telemetry

    async def notify(self, alert: Alert) -> None:
        try:
            await self.inner.notify(alert)
        except Exception:
            self.telemetry.alerts.labels(channel=self.channel, outcome="failed").inc()
            raise
        self.telemetry.alerts.labels(channel=self.channel, outcome="delivered").inc()
