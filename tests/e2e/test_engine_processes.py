"""End to end with real processes: `warden sim serve` and `warden run` (unmodified ccxt between
them), `kill -9` of the engine, restart on the same database, and the invariants checked from
the outside (the simulator's /sim/state and /sim/requests, the exchange's own order and trade
records, warden's HTTP API).

Timing: every `warden run` against the ccxt adapter needs ~8 s to become ready, because ccxt's
rate limiter charges Binance's weight 40 for each symbol-less openOrders / openAlgoOrders call
(2 s each at 50 ms per unit) and startup makes four of them (recovery + the first reconcile).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from .processes import (
    MARKET_IDS,
    SYMBOLS,
    D,
    Engine,
    Processes,
    SimServer,
    agreement_problems,
    converge,
    double_execution_problems,
    poll,
    protection_problems,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("WARDEN_E2E_SEED", "20240611"))
ROUNDS = int(os.environ.get("WARDEN_E2E_ROUNDS", "4"))
USD = {"BTC": (400, 900), "ETH": (150, 400), "SOL": (60, 200)}  # above every min notional, TPs included
CONVERGE_WITHIN = 15.0


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    registry = Processes(tmp_path / "logs")
    try:
        yield registry
    finally:
        registry.close()


def check_all(sim: SimServer, engine: Engine) -> list[str]:
    state = sim.state()
    return protection_problems(state) + agreement_problems(state, engine.positions())


def describe(state: dict[str, Any]) -> str:
    held = [f"{p['symbol'].split('/')[0]} {p['side']} {p['qty']}" for p in state["positions"]]
    return ", ".join(held) or "flat"


def price_for(pos: dict[str, Any], target: str, coin: str) -> Decimal:
    """A mark past the position's TP1 / TP2 / stop (default plan: +1 %, +2 %, -1.5 %)."""
    move = {"tp1": D("0.013"), "tp2": D("0.025"), "stop": D("-0.02")}[target]
    sign = 1 if pos["side"] == "long" else -1
    tick = D("0.1") if coin == "BTC" else D("0.01")
    return (D(pos["entry_price"]) * (1 + sign * move)).quantize(tick, rounding=ROUND_DOWN)


# =============================================================================== 1. kill -9


def test_kill_9_at_random_moments_keeps_every_position_protected_and_agreed(
    procs: Processes, tmp_path: Path
) -> None:
    """Rounds of signals, price moves and closes, each ended by `kill -9` of the engine at a
    seeded moment (mid-saga after the k-th order request, or right after a call returns);
    after every restart: I1, I4 and no order executed twice."""
    rng = random.Random(SEED)
    print(f"\nseed {SEED}, {ROUNDS} rounds (WARDEN_E2E_SEED / WARDEN_E2E_ROUNDS to change)")
    started = time.monotonic()
    sim = procs.sim(seed=SEED % 1000)
    engine = procs.engine("engine", tmp_path / "data", sim=sim)
    ready = [engine.wait_ready()]
    kills: list[str] = []

    for round_no in range(1, ROUNDS + 1):
        by_coin = {p["symbol"].split("/")[0]: p for p in engine.positions()}
        # A runner ratchets its stop on every new peak; close it so no ratchet is in flight at
        # the kill (a kill mid-move is test_kill_during_a_stop_move_leaves_no_superseded_stop).
        for coin, pos in list(by_coin.items()):
            if pos["trailing_active"]:
                assert engine.close_position(pos["id"]).status_code == 200
                del by_coin[coin]
        flat = [c for c in SYMBOLS if c not in by_coin]
        chosen = rng.sample(flat, k=rng.randint(1, len(flat))) if flat else []
        opens = [(coin, rng.choice(["long", "short"]), rng.randint(*USD[coin])) for coin in chosen]
        move = None
        protected = [c for c, p in by_coin.items() if p["status"] == "protected"]
        if protected and rng.random() < 0.6:
            coin = rng.choice(sorted(protected))
            move = (coin, rng.choice(["tp1", "tp2", "stop"]))
        close = None
        closable = [c for c in protected if move is None or c != move[0]]
        if closable and rng.random() < 0.4:
            close = rng.choice(sorted(closable))
        kill_at = rng.choice(["move", "close", "opens"] if move else ["close", "opens"])
        if kill_at == "close" and close is None:
            kill_at = "opens"
        if kill_at == "opens" and not opens:
            kill_at = "close" if close else "move"
        mode = rng.choice(["after", "during", "during"])
        # order requests of the saga to let through before the kill: a close is 1 market
        # order + 3 cancels; an open is 1 entry + stop + 2 take-profits
        step = rng.randint(0, 3) if kill_at == "close" else rng.randint(0, 4 * len(opens) - 1)
        what = f"round {round_no}: opens {opens}, move {move}, close {close}; kill at {kill_at}"

        # --- the price move (a kill here: right after the simulator moved the mark)
        if move is not None:
            coin, target = move
            price = price_for(by_coin[coin], target, coin)
            fired = sim.set_price(coin, price)["fired"]
            what += f" ({coin} {target} -> {price}, {fired} fired)"
            if kill_at == "move" or target == "tp2":
                kill_at, mode = "move", "after"
            else:
                converge(lambda: check_all(sim, engine), within=CONVERGE_WITHIN, what=f"after {move}")

        # --- the close, then the opens; the kill lands during or right after one of them
        def start_close() -> threading.Thread | None:
            if close is None:
                return None
            return background(lambda: engine.close_position(by_coin[close]["id"]))

        def start_opens() -> list[threading.Thread]:
            return [background(lambda c=c, s=s, u=u: engine.signal(c, s, u)) for c, s, u in opens]

        t0_ms = int(time.time() * 1000) - 5
        if kill_at != "move":
            threads = [t for t in [start_close()] if t is not None]
            if kill_at == "close" and mode == "during":
                kill_after_order_requests(sim, t0_ms, step, threads)
            else:
                join(threads)
                if kill_at == "opens":
                    t0_ms = int(time.time() * 1000) - 5
                    threads = start_opens()
                    if mode == "during":
                        kill_after_order_requests(sim, t0_ms, step, threads)
                    else:
                        join(threads)
            what += f" [{mode}{f' order request #{step}' if mode == 'during' else ''}]"

        engine.kill9()
        state = sim.state()
        kills.append(f"{what}\n      open at the kill: {describe(state)}")
        print(f"kill {len(kills)}: {kills[-1]}")

        engine.start()
        ready.append(engine.wait_ready())
        took = converge(lambda: check_all(sim, engine), within=CONVERGE_WITHIN, what=f"after kill {len(kills)}")
        problems = double_execution_problems(sim)
        assert not problems, problems
        print(f"      restarted in {ready[-1]:.1f}s, converged {took:.1f}s later: {describe(sim.state())}")

    events = engine.events()
    windows = [float(e["data"]["unprotected_seconds"]) for e in events if e["kind"] == "position_protected"]
    print(
        f"{len(kills)} kills in {time.monotonic() - started:.1f}s; ready after "
        f"{', '.join(f'{s:.1f}' for s in ready)}s; unprotected windows "
        f"{', '.join(f'{w:.2f}' for w in windows)}s"
    )
    assert len(kills) == ROUNDS


def background(call: Any) -> threading.Thread:
    """Run an HTTP call in a thread; a kill mid-request is expected, so transport errors are not."""

    def run() -> None:
        try:
            call()
        except httpx.TransportError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def join(threads: list[threading.Thread], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), "an API call did not return"


def kill_after_order_requests(
    sim: SimServer, since_ms: int, n: int, threads: list[threading.Thread], within: float = 30.0
) -> None:
    """Return once the simulator has seen `n` order requests (place/cancel) since `since_ms`,
    or once every call in `threads` has returned (the saga made fewer requests than drawn)."""
    if n == 0:
        return

    def seen() -> bool:
        count = sum(
            1
            for r in sim.requests()
            if r["at"] >= since_ms
            and r["path"] in ("/fapi/v1/order", "/fapi/v1/algoOrder")
            and r["method"] in ("POST", "DELETE")
        )
        return count >= n or not any(t.is_alive() for t in threads)

    poll(seen, within=within, what=f"{n} order requests", every=0.01)


# ======================================================================= 2. two engines


def test_two_engines_one_writer_and_the_standby_takes_over_after_kill_9(
    procs: Processes, tmp_path: Path
) -> None:
    sim = procs.sim()
    data = tmp_path / "data"
    holder = procs.engine("holder", data, sim=sim)
    holder.wait_ready()
    standby = procs.engine("standby", data, sim=sim)

    status = poll(lambda: standby_status(standby), within=30, what="the standby's status")
    assert status["state"] == "read_only" and not status["accepting_signals"], status
    reason = " ".join(status["reasons"])
    assert f":{holder.pid}" in reason and "held by" in reason, reason
    assert standby.healthz() == 503
    assert holder.status()["accepting_signals"] is True

    before = sim.state()
    n_requests = len(sim.requests())
    refused = standby.signal("SOL", "long", 100)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "trading_refused"
    after = [r for r in sim.requests()[n_requests:] if r["path"].startswith("/fapi/v1/")]
    assert not [r for r in after if r["method"] in ("POST", "DELETE") and "order" in r["path"].lower()]
    assert sim.state()["open_orders"] == before["open_orders"]

    opened = holder.signal("SOL", "long", 100)
    assert opened.status_code == 201, opened.text
    position = opened.json()
    assert position["status"] == "protected" and position["stop_resting"], position
    assert not protection_problems(sim.state())

    holder.kill9()
    killed_at = time.monotonic()
    samples = 0

    def covered_until_ready() -> bool:
        nonlocal samples
        problems = protection_problems(sim.state())
        samples += 1
        assert not problems, f"unprotected while the standby took over: {problems}"
        standby.check_running()
        return standby.healthz() == 200

    poll(covered_until_ready, within=20, what="the standby to take over", every=0.1)
    takeover = time.monotonic() - killed_at
    print(f"\nstandby ready {takeover:.1f}s after kill -9 of the holder; stop checked {samples} times")

    status = standby.status()
    assert status["state"] == "ready" and status["accepting_signals"], status
    [seen] = standby.positions()
    assert (seen["id"], seen["status"], seen["stop_resting"], seen["size"]) == (
        position["id"],
        "protected",
        True,
        position["size"],
    )
    closed = standby.close_position(position["id"])
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    final = sim.state()
    assert final["positions"] == [] and final["open_orders"] == [], final
    assert not double_execution_problems(sim)
    assert takeover < 15, f"takeover took {takeover:.1f}s"


def standby_status(engine: Engine) -> dict[str, Any] | None:
    engine.check_running()
    try:
        return engine.status()
    except AssertionError:  # 503 not_ready while it is still starting
        return None


# ============================================================ 3. the embedded default


def test_embedded_sim_position_survives_kill_9_with_its_stop(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "data"
    engine = procs.engine("embedded", data, sim=None)
    engine.wait_ready()
    opened = engine.signal("SOL", "long", 100)
    assert opened.status_code == 201, opened.text
    position = opened.json()
    assert position["status"] == "protected" and position["stop_resting"], position
    placed_before = [e for e in engine.events(position["id"]) if e["kind"] == "exit_order_placed"]

    engine.kill9()
    assert (data / "sim-default.json").exists()
    engine.start()
    engine.wait_ready()

    [after] = engine.positions()
    assert (after["id"], after["status"], after["stop_resting"], after["size"], after["stop_price"]) == (
        position["id"],
        "protected",
        True,
        position["size"],
        position["stop_price"],
    )
    events = engine.events(position["id"])
    kinds = [e["kind"] for e in events]
    assert "protection_lost" not in kinds, kinds
    placed_after = [e for e in events if e["kind"] == "exit_order_placed"]
    assert len(placed_after) == len(placed_before), "the stop was re-placed: the sim had lost it"
    assert engine.status()["unprotected_positions"] == 0
