"""A host whose clock is off from the exchange's, end to end: `warden sim serve --clock-offset` (the
simulator's clock runs ahead of or behind this host's, and it refuses signed requests outside the
venue's window as the venue does: -1021 on Binance, retCode 10002 on Bybit) and `warden run`
through unmodified ccxt. warden must open the position and rest its stop on the exchange, say on
/status that the clock is off, and never send a signed request that the offset alone dooms once
it has measured it.

Offsets: the host 2 s ahead (Binance and Bybit refuse a timestamp more than 1 s in their future),
and the host behind by more than ccxt's recvWindow (10 s on Binance, 5 s on Bybit) so every request
would arrive too old; on Bybit also more than the 10 s that ccxt's own socket login adds to the
host's time for `expires` (the adapter logs in on the exchange's clock instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .processes import (
    Engine,
    Processes,
    SimServer,
    check_all,
    converge,
    poll,
)

pytestmark = pytest.mark.slow

CONVERGE_WITHIN = 15.0
CLOCK_REFUSALS = ("-1021", "10002")  # the request log's note starts with the venue's code
TIME_PATHS = {"binance": "/fapi/v1/time", "bybit": "/v5/market/time"}


def clock_refusals(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r.get("note", "").split(" ")[0] in CLOCK_REFUSALS]


def clock_warnings(engine: Engine) -> list[str]:
    return [w for w in engine.status()["warnings"] if "clock" in w]


def open_and_protect(sim: SimServer, engine: Engine) -> None:
    """A SOL long opens on the exchange, and its stop rests there for the whole size."""
    opened = engine.signal_qty("SOL", "long", "1")
    assert opened.status_code == 201, opened.text

    def problems() -> list[str]:
        held = [p["symbol"] for p in sim.state()["positions"]]
        return check_all(sim, engine) + (
            [] if held == ["SOL/USDT:USDT"] else [f"held on the exchange: {held}"]
        )

    converge(problems, within=CONVERGE_WITHIN, what="the position open and protected")
    assert engine.position(opened.json()["id"])["status"] == "protected"
    stops = [o for o in sim.state()["open_orders"] if o["type"] == "stop_market"]
    assert len(stops) == 1 and stops[0]["reduce_only"], stops


@pytest.mark.parametrize(
    ("venue", "offset"),
    [("binance", -2.0), ("binance", 12.0), ("bybit", -2.0), ("bybit", 12.0)],
    ids=["binance-host-2s-ahead", "binance-host-12s-behind", "bybit-host-2s-ahead", "bybit-host-12s-behind"],
)
def test_a_host_whose_clock_is_off_opens_and_rests_its_stop(
    procs: Processes, tmp_path: Path, venue: str, offset: float
) -> None:
    sim = procs.sim(venue=venue, price_interval=0, clock_offset=offset)
    engine = procs.engine("engine", tmp_path / "data", sim=sim)
    engine.wait_ready(within=30.0)
    open_and_protect(sim, engine)
    requests = sim.requests()
    # measured before the first signed request: not one was refused for its timestamp
    assert clock_refusals(requests) == []
    assert any(r["path"] == TIME_PATHS[venue] for r in requests)
    [warning] = clock_warnings(engine)
    way = "ahead of" if offset < 0 else "behind"
    assert f"{abs(offset):.1f} s {way}" in warning, warning


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_a_clock_that_steps_while_running_is_measured_again_at_the_first_refusal(
    procs: Processes, tmp_path: Path, venue: str
) -> None:
    """In sync at start; then the host's clock jumps 3 s ahead of the exchange's. The first signed
    request refused for its timestamp makes warden measure again and send it once more, so the
    next open is protected as usual and /status says the clock is off."""
    sim = procs.sim(venue=venue, price_interval=0)
    engine = procs.engine("engine", tmp_path / "data", sim=sim)
    engine.wait_ready(within=30.0)
    assert clock_warnings(engine) == []
    sim.faults(clock_offset=-3.0)
    open_and_protect(sim, engine)
    [warning] = poll(lambda: clock_warnings(engine), within=CONVERGE_WITHIN, what="the clock warning")
    assert "3.0 s ahead of" in warning, warning
    refused = clock_refusals(sim.requests())
    assert refused, "the step was never seen: the test did not test the resync"
    # each call refused once at most: after a refusal the clock is measured again before any retry
    assert len(refused) <= 4, refused
