"""End to end on Drift: `warden sim serve --venue drift` (the sidecar protocol on the shared core,
with Drift's rules) and `warden run --exchange drift --exchange-url ...` as separate processes:
kill -9 of the engine, trades made outside warden, a stop cancelled by hand, two engines. Judged
by the exchange (its /sim/state: positions, resting orders, exposure) and warden's API.

Drift differs from Binance where it matters here: every entry and close is acknowledged, then
filled by an auction; stops fire on the oracle after a keeper's delay; every order travels in a
signed transaction whose outcome may be unknown.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path

import pytest

from .processes import (
    D,
    Engine,
    Processes,
    SimServer,
    check_all,
    converge,
    poll,
    protection_problems,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("WARDEN_E2E_SEED", "20240611"))
ROUNDS = int(os.environ.get("WARDEN_E2E_ROUNDS", "3"))
CONVERGE_WITHIN = 15.0
COINS = {"SOL": (1, 3), "ETH": (0.05, 0.2), "BTC": (0.002, 0.01)}


def start(
    procs: Processes, tmp_path: Path, *, price_interval: float | None = 0, **env: str
) -> tuple[SimServer, Engine]:
    sim = procs.sim(venue="drift", price_interval=price_interval)
    engine = procs.engine("engine", tmp_path / "data", sim=sim, **env)
    engine.wait_ready()
    return sim, engine


def agreed(sim: SimServer, engine: Engine, what: str) -> float:
    return converge(lambda: check_all(sim, engine), within=CONVERGE_WITHIN, what=what)


def live_ids(data: Path) -> dict[str, int]:
    """warden's Drift id table: the u8 of every client order id still held."""
    with sqlite3.connect(data / "w.db") as db:
        rows = db.execute(
            "SELECT client_order_id, user_order_id FROM drift_user_order_ids WHERE live"
        ).fetchall()
    return dict(rows)


def id_problems(sim: SimServer, data: Path) -> list[str]:
    """Every open warden order on the exchange holds a u8 the table holds for it, each u8 once."""
    problems = []
    held = live_ids(data)
    if len(set(held.values())) != len(held):
        problems.append(f"a u8 held twice: {held}")
    for order in sim.state()["open_orders"]:
        uoid = order["user_order_id"]
        if uoid and uoid not in held.values():
            problems.append(f"open order {order['order_id']} holds u8 {uoid}, which the table has released")
    return problems


def test_kill_9_at_random_moments_keeps_drift_positions_protected_and_agreed(
    procs: Processes, tmp_path: Path
) -> None:
    """Rounds of signals (entries acknowledged, filled by auction), oracle moves through TP1 and
    stops, and closes, each ended by kill -9 of the engine at a seeded moment; after every restart:
    I1 and I4 on the exchange, and the u8 table agrees with what is open (no live id released)."""
    rng = random.Random(SEED)
    sim, engine = start(procs, tmp_path, price_interval=None)
    data = tmp_path / "data"
    for round_no in range(1, ROUNDS + 1):
        held = {p["symbol"].split("-")[0]: p for p in engine.positions()}
        flat = [c for c in COINS if c not in held]
        opened = rng.sample(flat, k=min(len(flat), rng.randint(1, 2)))
        sim.faults(
            auction_delay=round(rng.uniform(0.05, 0.5), 2), keeper_delay=round(rng.uniform(0.05, 0.4), 2)
        )
        for coin in opened:
            low, high = COINS[coin]
            qty = D(str(round(rng.uniform(low, high), 2 if coin == "SOL" else 3 if coin == "ETH" else 4)))
            response = engine.signal_qty(coin, rng.choice(["long", "short"]), str(qty))
            assert response.status_code in (201, 202), response.text
        if held and rng.random() < 0.5:
            coin, pos = rng.choice(sorted(held.items()))
            sign = 1 if pos["side"] == "long" else -1
            move = D(rng.choice(["0.013", "-0.02"]))
            sim.set_price(coin, (D(pos["entry_price"]) * (1 + sign * move)).quantize(D("0.001")))
        engine.kill9()  # right after the API answered: auctions, keepers and exits are in flight
        print(f"round {round_no}: opened {opened}, killed; exchange: {sim.state()['positions']}")
        engine.start()
        engine.wait_ready()
        took = agreed(sim, engine, f"after kill {round_no}")
        # The table and the exchange are read one after the other while exits may still move
        # (a TP1 filled during the restart resizes the stop): polled like the invariants.
        converge(lambda: id_problems(sim, data), within=CONVERGE_WITHIN, what=f"u8 ids after kill {round_no}")
        print(f"    agreed {took:.1f}s after ready")


def test_an_outside_trade_and_an_outside_flip_are_taken_in_and_protected(
    procs: Processes, tmp_path: Path
) -> None:
    sim, engine = start(procs, tmp_path)
    opened = engine.signal_qty("SOL", "long", "1")
    assert opened.status_code == 201, opened.text
    agreed(sim, engine, "after the open")
    sim.control("/sim/external-order", {"symbol": "SOL-PERP", "side": "buy", "qty": "0.5"})
    engine.reconcile()
    agreed(sim, engine, "after an outside addition")
    [pos] = engine.positions()
    assert D(pos["size"]) == D("1.5")
    sim.control("/sim/external-order", {"symbol": "SOL-PERP", "side": "sell", "qty": "3"})
    engine.reconcile()
    agreed(sim, engine, "after an outside flip")
    [held] = sim.state()["positions"]
    assert held["side"] == "short" and abs(D(held["qty"])) == D("1.5")


def test_a_stop_cancelled_by_hand_is_placed_again(procs: Processes, tmp_path: Path) -> None:
    sim, engine = start(procs, tmp_path)
    opened = engine.signal_qty("SOL", "short", "2")
    assert opened.status_code == 201, opened.text
    agreed(sim, engine, "after the open")
    [stop] = [o for o in sim.state()["open_orders"] if o["type"] == "stop_market"]
    sim.control("/sim/cancel", {"order_id": stop["order_id"]})
    took = agreed(sim, engine, "after the stop was cancelled by hand")
    [again] = [o for o in sim.state()["open_orders"] if o["type"] == "stop_market"]
    assert again["order_id"] != stop["order_id"] and again["trigger_price"] == stop["trigger_price"]
    print(f"\nstop re-placed {took:.2f}s after the hand cancel was seen")
    exposure = {e["symbol"]: e for e in sim.state()["exposure"]}["SOL-PERP"]
    assert exposure["max_unprotected_seconds"] < 5, exposure


def test_two_engines_one_writer_and_the_standby_takes_over_on_drift(procs: Processes, tmp_path: Path) -> None:
    sim = procs.sim(venue="drift", price_interval=0)
    data = tmp_path / "data"
    holder = procs.engine("holder", data, sim=sim)
    holder.wait_ready()
    standby = procs.engine("standby", data, sim=sim)
    poll(lambda: standby.healthz() == 503 and standby.alive, within=30, what="the standby up")
    seen = len(sim.requests())
    refused = standby.signal("SOL", "long", 100)
    assert refused.status_code == 503, refused.text
    assert [r for r in sim.requests()[seen:] if r["path"].startswith("/v1/tx/")] == [], "the standby sent"
    opened = holder.signal_qty("SOL", "long", "1")
    assert opened.status_code == 201, opened.text
    position = opened.json()
    # an acknowledged entry may be answered 201 before its stop rests (reported to the engine owner)
    poll(lambda: holder.position(position["id"])["stop_resting"], within=5, what="the stop resting")
    agreed(sim, holder, "before the kill")
    holder.kill9()

    def covered_until_ready() -> bool:
        problems = protection_problems(sim.state())
        assert problems == [], f"unprotected during the takeover: {problems}"
        return standby.healthz() == 200

    poll(covered_until_ready, within=20, what="the standby to take over", every=0.1)
    [now] = standby.positions()
    assert (now["id"], now["status"], now["stop_resting"]) == (position["id"], "protected", True)
    closed = standby.close_position(position["id"])
    assert closed.status_code == 200, closed.text
    poll(lambda: sim.state()["positions"] == [] and sim.state()["open_orders"] == [], within=10, what="flat")
    assert live_ids(data) == {}, "ids still held after everything is final"


def test_the_entry_travels_with_its_stop_in_one_transaction_and_a_kill_9_leaves_no_moment_uncovered(
    procs: Processes, tmp_path: Path
) -> None:
    """Drift takes the entry, its stop and its take-profits in one `place_orders` transaction: the
    venue never sees the position without a resting stop, not even when the engine is killed -9
    right after the signal is answered (auctions and the stop's move to the fill's level in flight)."""
    sim, engine = start(procs, tmp_path)
    sim.faults(auction_delay=0.3)
    opened = engine.signal_qty("SOL", "long", "2")
    assert opened.status_code in (201, 202), opened.text
    engine.kill9()
    engine.start()
    engine.wait_ready()
    agreed(sim, engine, "after the kill")
    places = [json.loads(r["query"])["orders"] for r in sim.requests() if r["path"] == "/v1/tx/place"]
    entries = [orders for orders in places if orders[0]["order_type"] == "market"]
    assert len(entries) == 1, places  # sent once, never again after the restart
    assert [(o["order_type"], o["reduce_only"], o.get("trigger_condition")) for o in entries[0]] == [
        ("market", False, None),
        ("trigger_market", True, "below"),
        ("trigger_market", True, "above"),
        ("trigger_market", True, "above"),
    ]
    exposure = {e["symbol"]: e for e in sim.state()["exposure"]}["SOL-PERP"]
    assert exposure["max_unprotected_seconds"] == 0, exposure
    assert sim.state()["exposure_stretches"] == [], sim.state()["exposure_stretches"]
