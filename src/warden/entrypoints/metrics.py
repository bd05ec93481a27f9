"""Prometheus metrics: engine gauges read at scrape time, counters and histograms kept by the API.

Each app has its own registry, so several apps (tests, one per account) never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from warden.domain.tally import UNPROTECTED_BUCKETS, Tally
from warden.service.commands import EngineState, EngineStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SignalOutcome(StrEnum):
    ACCEPTED = "accepted"  # a position was opened (whatever its final status)
    INVALID = "invalid"  # 422: bad input, nothing sent
    DUPLICATE = "duplicate"  # 409: the signal id already has a position
    REFUSED = "refused"  # 503: the engine would not trade, nothing sent
    UNAUTHORIZED = "unauthorized"  # 401
    ERROR = "error"  # anything else


ALARMS_DOC = (
    "Trouble to act on while the engine is ready (a position without a resting stop beyond the"
    " protection window, the exchange unreachable): /healthz is 503 while above 0."
)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EngineCollector(Collector):
    """Reads `EngineStatus` on every scrape; nothing is cached between scrapes."""

    def __init__(
        self,
        status: Callable[[], EngineStatus | None],
        unprotected: Callable[[], Tally],
        accounts: Callable[[], dict[str, EngineStatus | None]] = dict,
    ) -> None:
        self._status = status
        self._unprotected = unprotected
        self._accounts = accounts

    def collect(self) -> Iterator[Metric]:
        accounts = self._accounts()
        if accounts:
            yield from self._per_account(accounts)
            return
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
        yield _gauge("warden_alarms", ALARMS_DOC, len(status.alarms))
        yield _histogram(
            "warden_unprotected_seconds",
            "Seconds from a fill to its resting stop, per protection (this process).",
            self._unprotected(),
        )

    def _per_account(self, accounts: dict[str, EngineStatus | None]) -> Iterator[Metric]:
        """Named accounts (several, or one [accounts.NAME] table): every engine gauge once per
        account, labelled `account`."""
        up = GaugeMetricFamily(
            "warden_engine_up", "1 when the engine is running and answering.", labels=["account"]
        )
        state = GaugeMetricFamily(
            "warden_engine_state", "1 for the engine's current state.", labels=["account", "state"]
        )
        gauges = {
            "accepting_signals": ("warden_accepting_signals", "1 when new signals would be traded."),
            "open_positions": ("warden_open_positions", "Positions open on the exchange."),
            "unprotected_positions": (
                "warden_unprotected_positions",
                "Open positions without a resting stop for their full size.",
            ),
            "pending_writes": ("warden_pending_writes", "State changes waiting for the database."),
            "alarms": ("warden_alarms", ALARMS_DOC),
        }
        families = {
            key: GaugeMetricFamily(name, doc, labels=["account"]) for key, (name, doc) in gauges.items()
        }
        for account, status in accounts.items():
            up.add_metric([account], 0 if status is None else 1)
            if status is None:
                continue
            for candidate in EngineState:
                state.add_metric([account, candidate.value], 1 if candidate is status.state else 0)
            for key, family in families.items():
                value = getattr(status, key)
                family.add_metric([account], float(len(value) if isinstance(value, list) else value))
        yield up
        yield state
        yield from families.values()
        yield _histogram(
            "warden_unprotected_seconds",
            "Seconds from a fill to its resting stop, per protection (this process).",
            self._unprotected(),
        )


def _histogram(name: str, doc: str, tally: Tally) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    buckets = [(f"{bound:g}", float(n)) for bound, n in zip(tally.bounds, tally.at_most, strict=True)]
    buckets.append(("+Inf", float(tally.count)))
    family.add_metric([], buckets, sum_value=tally.total)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


class RuntimeCollector(Collector):
    """The running warden's own metrics (exchange calls, database writes, alerts), read at scrape.

    With several accounts each engine has its own registry: their families are merged, every
    sample labelled with its `account`."""

    def __init__(
        self,
        registry: Callable[[], CollectorRegistry | None],
        registries: Callable[[], dict[str, CollectorRegistry]] = dict,
    ) -> None:
        self._registry = registry
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        many = self._registries()  # empty unless the samples are labelled by account
        if many:
            yield from _labelled(many)
            return
        registry = self._registry()
        if registry is not None:
            yield from registry.collect()


def _labelled(registries: dict[str, CollectorRegistry]) -> Iterator[Metric]:
    merged: dict[str, Metric] = {}
    for account, registry in registries.items():
        for family in registry.collect():
            into = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            into.samples.extend(
                sample._replace(labels={"account": account, **sample.labels}) for sample in family.samples
            )
    yield from merged.values()


class ApiMetrics:
    def __init__(
        self,
        status: Callable[[], EngineStatus | None],
        unprotected: Callable[[], Tally] = lambda: Tally(UNPROTECTED_BUCKETS),
        runtime_registry: Callable[[], CollectorRegistry | None] = lambda: None,
        accounts: Callable[[], dict[str, EngineStatus | None]] = dict,
        registries: Callable[[], dict[str, CollectorRegistry]] = dict,
    ) -> None:
        """`accounts`, `registries`: each account's status (None: not running) and metrics
        registry when the samples are labelled by account (empty: they are not)."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(status, unprotected, accounts))
        self.registry.register(RuntimeCollector(runtime_registry, registries))
        self.stream_lag = Histogram(
            "warden_stream_lag_seconds",
            "Seconds from an event's commit time to its delivery on the event stream.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
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

    def observe_stream_lag(self, seconds: float) -> None:
        self.stream_lag.observe(max(0.0, seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)
