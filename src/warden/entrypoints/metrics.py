"""Prometheus metrics: engine gauges read at scrape time, signal counters kept by the API.

Each app has its own registry, so several apps (tests, one per account) never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warden.service.commands import EngineState, EngineStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SignalOutcome(StrEnum):
    ACCEPTED = "accepted"  # a position was opened (whatever its final status)
    INVALID = "invalid"  # 422: bad input, nothing sent
    DUPLICATE = "duplicate"  # 409: the signal id already has a position
    REFUSED = "refused"  # 503: the engine would not trade, nothing sent
    UNAUTHORIZED = "unauthorized"  # 401
    ERROR = "error"  # anything else


class EngineCollector(Collector):
    """Reads `EngineStatus` on every scrape; nothing is cached between scrapes."""

    def __init__(self, status: Callable[[], EngineStatus | None]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        up = GaugeMetricFamily("warden_engine_up", "1 when the engine is running and answering.")
        up.add_metric([], 0 if status is None else 1)
        yield up
        if status is None:
            return
        state = GaugeMetricFamily(
            "warden_engine_state", "1 for the engine's current state.", labels=["state"]
        )
        for candidate in EngineState:
            state.add_metric([candidate.value], 1 if candidate is status.state else 0)
        yield state
        yield _gauge(
            "warden_accepting_signals", "1 when new signals would be traded.", int(status.accepting_signals)
        )
        yield _gauge("warden_open_positions", "Positions open on the exchange.", status.open_positions)
        yield _gauge(
            "warden_unprotected_positions",
            "Open positions without a resting stop for their full size.",
            status.unprotected_positions,
        )
        yield _gauge(
            "warden_pending_writes", "State changes waiting for the database.", status.pending_writes
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


class ApiMetrics:
    def __init__(self, status: Callable[[], EngineStatus | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(status))
        self.signals = Counter(
            "warden_signals",
            "Signals received, by outcome.",
            labelnames=["outcome"],
            registry=self.registry,
        )
        for outcome in SignalOutcome:
            self.signals.labels(outcome=outcome.value)

    def count_signal(self, outcome: SignalOutcome) -> None:
        self.signals.labels(outcome=outcome.value).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
