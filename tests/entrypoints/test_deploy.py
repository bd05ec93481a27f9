"""deploy/: the sample Grafana dashboard and Prometheus alert rules name only metrics /metrics exposes."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import httpx

from warden.bootstrap import Runtime
from warden.domain.values import OrderSide, Symbol

from .conftest import AUTH
from .test_api import SIGNAL, open_sol

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = ("_bucket", "_sum", "_count")


def names_in(text: str) -> set[str]:
    found = set()
    for raw in re.findall(r"\bwarden_[a-z_]+", text):
        name = raw
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        found.add(name)
    return found


async def test_deploy_files_use_exposed_metrics(client: httpx.AsyncClient) -> None:
    await open_sol(client)
    exposed = (await client.get("/metrics")).text
    families = set(re.findall(r"^# TYPE (warden_[a-z_]+) ", exposed, re.M))
    families |= {f"{name}_total" for name in families}  # counters are sampled as NAME_total
    dashboard = (DEPLOY / "grafana-dashboard.json").read_text()
    json.loads(dashboard)
    alerts = (DEPLOY / "prometheus-alerts.yml").read_text()
    used = names_in(dashboard) | names_in(alerts)
    assert used, "no metric named"
    assert used <= families, f"not exposed by /metrics: {sorted(used - families)}"
    for name in (
        "warden_unprotected_positions",
        "warden_unprotected_seconds",
        "warden_stream_lag_seconds",
        "warden_exchange_call_seconds",
        "warden_exchange_errors_total",
        "warden_db_write_seconds",
        "warden_alert_deliveries_total",
        "warden_reconcile_differences_total",
    ):
        assert name in used, name


async def test_unprotected_seconds_histogram_counts_protections(client: httpx.AsyncClient) -> None:
    """Each protection adds one observation of fill-to-resting-stop seconds."""
    await open_sol(client)
    text = (await client.get("/metrics")).text
    assert 'warden_unprotected_seconds_bucket{le="+Inf"} 1.0' in text
    assert "warden_unprotected_seconds_count 1.0" in text
    assert "# TYPE warden_stream_lag_seconds histogram" in text


async def test_exchange_database_and_alert_metrics(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Exchange calls by operation (and their errors), database writes and alert deliveries are counted."""
    await open_sol(client)
    assert runtime.sim is not None
    runtime.sim.faults.unavailable_if = lambda request: True
    refused = await client.post("/api/v1/signals", json={**SIGNAL, "symbol": "ETH"}, headers=AUTH)
    runtime.sim.faults.unavailable_if = None
    assert refused.status_code in (201, 502, 503), refused.text
    text = (await client.get("/metrics")).text
    assert (
        sample(text, 'warden_exchange_call_seconds_count{operation="place_order"}') >= 4
    )  # entry, stop, TPs
    assert (
        sample(text, 'warden_exchange_errors_total{error="ExchangeUnavailable",operation="place_order"}') >= 1
    )
    assert sample(text, 'warden_db_write_seconds_count{operation="commit"}') >= 3
    assert (
        sample(text, 'warden_alert_deliveries_total{channel="log",outcome="delivered"}') >= 1
    )  # engine started


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in /metrics")


async def test_reconcile_differences_by_kind(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A trade made outside warden is an orphan for reconciliation, counted by kind on /metrics."""
    assert runtime.sim is not None
    runtime.sim.external_order(Symbol("ETH/USDT:USDT"), OrderSide.BUY, Decimal("0.05"))
    report = (await client.post("/api/v1/reconcile", headers=AUTH)).json()
    assert [f["kind"] for f in report["findings"]] == ["orphan"]
    text = (await client.get("/metrics")).text
    assert sample(text, 'warden_reconcile_differences_total{kind="orphan"}') == 1


def test_alert_rules_the_issue_asks_for() -> None:
    """An unprotected position for 5 s, an engine that is not ready, and failing alert deliveries
    each have a rule (issue 10: "unprotected position > 0 for 5 s; engine not ready; alert delivery
    failing")."""
    import yaml  # type: ignore[import-untyped]  # (pyyaml comes with schemathesis)

    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    rules = {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}
    unprotected = rules["WardenUnprotectedPosition"]
    assert unprotected["expr"].strip() == "warden_unprotected_positions > 0"
    assert unprotected["for"] == "5s"
    assert "5 s" in unprotected["annotations"]["description"]
    assert 'warden_engine_state{state="ready"} == 0' in rules["WardenNotReady"]["expr"]
    assert 'outcome="failed"' in rules["WardenAlertsUndelivered"]["expr"]
