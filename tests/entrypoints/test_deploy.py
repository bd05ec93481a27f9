"""deploy/: the sample Grafana dashboard and Prometheus alert rules name only metrics /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from .test_api import open_sol

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
    for name in ("warden_unprotected_positions", "warden_unprotected_seconds", "warden_stream_lag_seconds"):
        assert name in used, name


async def test_unprotected_seconds_histogram_counts_protections(client: httpx.AsyncClient) -> None:
    """Each protection adds one observation of fill-to-resting-stop seconds."""
    await open_sol(client)
    text = (await client.get("/metrics")).text
    assert 'warden_unprotected_seconds_bucket{le="+Inf"} 1.0' in text
    assert "warden_unprotected_seconds_count 1.0" in text
    assert "# TYPE warden_stream_lag_seconds histogram" in text
