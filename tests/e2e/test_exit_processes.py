"""Exits under stress over real processes (issue 8): `warden sim serve --price-interval 0` (marks
move only when the test says) + `warden run --exchange binanceusdm` through unmodified ccxt.

Judged by the exchange: its positions, its resting orders and its `exposure` record (how long a
position went without covering stops), and its own trades for PnL.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import ROUND_HALF_UP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from .processes import (
    D,
    Engine,
    Processes,
    SimServer,
    agreement_problems,
    converge,
    poll,
    protection_problems,
    short,
)

pytestmark = pytest.mark.slow
WINDOW = 2.0
SOL = "SOL/USDT:USDT"


def start(procs: Processes, tmp_path: Path, **env: str) -> tuple[SimServer, Engine]:
    sim = procs.sim(price_interval=0)
    sim.set_price("SOL", D("150"))
    engine = procs.engine("engine", tmp_path / "data", sim=sim, **env)
    engine.wait_ready()
    return sim, engine


def agreed(sim: SimServer, engine: Engine) -> None:
    converge(
        lambda: protection_problems(sim.state()) + agreement_problems(sim.state(), engine.positions()),
        within=15,
        what="exchange, database and memory agree",
    )


def stops(sim: SimServer) -> list[dict[str, Any]]:
    return [o for o in sim.state()["open_orders"] if o["type"] == "stop_market"]


def max_exposure(sim: SimServer) -> float:
    return max((float(e["max_unprotected_seconds"]) for e in sim.state()["exposure"]), default=0.0)


def runner(sim: SimServer, engine: Engine, side: str) -> dict[str, Any]:
    opened = engine.signal_qty("SOL", side, "1")
    assert opened.status_code == 201, opened.text
    pos = opened.json()
    sim.set_price("SOL", D(pos["tp1_price"]))
    poll(lambda: engine.position(pos["id"])["tp1_hit"], within=10, what="TP1")
    sim.set_price("SOL", D(pos["tp2_price"]))
    poll(lambda: engine.position(pos["id"])["trailing_active"], within=10, what="the runner armed")
    agreed(sim, engine)
    return engine.position(pos["id"])


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_trailing_move_rejected_as_through_the_market_closes_the_runner(
    procs: Processes, tmp_path: Path, side: str
) -> None:
    """SOL 1 at 150 through TP1 and TP2; with REST slowed, the mark goes to a new peak and back
    while the new trailing stop is in flight: the exchange refuses it (-2021, it would trigger at
    once), and warden closes the runner at market instead of freezing it on the old stop."""
    sim, engine = start(procs, tmp_path)
    pos = runner(sim, engine, side)
    sign = 1 if side == "long" else -1
    peak = D(pos["tp2_price"]) * (1 + sign * D("0.045"))
    peak = peak.quantize(D("0.01"))
    sim.faults(rest_latency=1.0)
    since = len(sim.requests())
    sim.set_price("SOL", peak)
    # The engine has seen the peak (and so decided the move) once its watermark shows it; the
    # order then sits in the exchange's 1 s latency while the market falls back through it.
    poll(
        lambda: D(engine.position(pos["id"])["watermark"]) == peak,
        within=10,
        what="the peak seen",
        every=0.01,
    )
    sim.set_price("SOL", (peak * (1 - sign * D("0.02"))).quantize(D("0.01")))
    poll(lambda: sim.state()["positions"] == [], within=20, what="the runner closed at market")
    sim.faults(rest_latency=0)
    closed = poll(
        lambda: (p := engine.position(pos["id"]))["status"] == "closed" and p, within=10, what="closed"
    )
    assert closed["exit_reason"] == "trailing_stop", closed
    rejected = [r for r in sim.requests()[since:] if r["path"] == "/fapi/v1/algoOrder" and r["status"] != 200]
    assert rejected, "the move was not refused: the test did not reach its case"
    poll(lambda: sim.state()["open_orders"] == [], within=5, what="the runner's exit orders cancelled")
    assert max_exposure(sim) < WINDOW


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_stale_stop_filling_another_positions_size_is_attributed(
    procs: Processes, tmp_path: Path, side: str
) -> None:
    """Stacking on: A's full-size stop cannot be re-sized after TP1 (the exchange refuses A's new
    stops); B opens; the stale stop fills 1.0 where A holds 0.4. A closes, the rest reduces B in
    warden's records too, B's stop is re-sized, and warden agrees with the exchange."""
    sim, engine = start(procs, tmp_path, WARDEN_ALLOW_STACKING="true")
    sign = 1 if side == "long" else -1
    a = engine.signal_qty("SOL", side, "1").json()
    sim.faults(reject_if=f"*{a['id']}-s*")
    sim.set_price("SOL", D(a["tp1_price"]))
    poll(lambda: engine.position(a["id"])["tp1_hit"], within=10, what="A's TP1")
    poll(lambda: any(D(o["qty"]) == 1 for o in stops(sim)), within=5, what="A's stale stop")
    sim.set_price("SOL", D("150"))
    b = engine.signal_qty("SOL", side, "1")
    assert b.status_code == 201, b.text
    sim.faults(reject_if=None)
    sim.set_price("SOL", D(a["stop_price"]) - sign * D("0.05"))
    poll(lambda: engine.position(a["id"])["status"] == "closed", within=10, what="A closed")
    agreed(sim, engine)
    held = sum((D(p["size"]) for p in engine.positions()), D(0))
    exchange = sum((D(p["qty"]) for p in sim.state()["positions"]), D(0))
    assert abs(held) == abs(exchange)
    b_events = engine.events(b.json()["id"])
    assert any(":" in e["data"].get("trade_id", "") for e in b_events), "the stale fill's excess is on B"


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_runner_whose_tp2_rounds_to_zero_trails(procs: Processes, tmp_path: Path, side: str) -> None:
    """SOL 0.04: TP2 rounds to nothing; passing its level arms the runner, which then trails."""
    sim, engine = start(procs, tmp_path)
    pos = engine.signal_qty("SOL", side, "0.04").json()
    assert D(pos["tp2_qty"]) == 0
    sign = 1 if side == "long" else -1
    sim.set_price("SOL", D(pos["tp1_price"]))
    poll(lambda: engine.position(pos["id"])["tp1_hit"], within=10, what="TP1")
    sim.set_price("SOL", D(pos["tp2_price"]) + sign * D("0.5"))
    poll(lambda: engine.position(pos["id"])["trailing_active"], within=10, what="the runner armed")
    peak = D(pos["tp2_price"]) + sign * D("3")
    sim.set_price("SOL", peak)
    want = (peak * (1 - sign * D("0.005"))).quantize(D("0.01"), rounding=ROUND_HALF_UP)
    poll(lambda: [D(o["trigger_price"]) for o in stops(sim)] == [want], within=10, what="the trailing stop")
    agreed(sim, engine)


@pytest.mark.parametrize("side", ["long", "short"])
def test_outside_trades_during_exits_keep_sizes_and_pnl(procs: Processes, tmp_path: Path, side: str) -> None:
    """After TP1 (0.4 left) a manual reduce-only trade of 0.3, then a manual addition of 1 (a sell
    and a buy for a long, the other way round for a short): every exit is re-sized, the entry
    price is the exchange's, and realized PnL matches the exchange's trades."""
    sim, engine = start(procs, tmp_path)
    sign = 1 if side == "long" else -1
    enter, leave = ("buy", "sell") if side == "long" else ("sell", "buy")
    pos = engine.signal_qty("SOL", side, "1").json()
    sim.set_price("SOL", D(pos["tp1_price"]))
    poll(lambda: engine.position(pos["id"])["tp1_hit"], within=10, what="TP1")
    agreed(sim, engine)
    sim.control(
        "/sim/external-order", {"symbol": "SOLUSDT", "side": leave, "qty": "0.3", "reduce_only": True}
    )
    engine.reconcile()
    agreed(sim, engine)
    now = engine.position(pos["id"])
    assert D(now["size"]) == D("0.1")
    tps = [D(o["qty"]) for o in sim.state()["open_orders"] if o["type"] == "take_profit_market"]
    assert sum(tps, D(0)) <= D("0.1"), tps
    sim.set_price("SOL", D("150") + sign * D("1"))
    sim.control("/sim/external-order", {"symbol": "SOLUSDT", "side": enter, "qty": "1"})
    engine.reconcile()
    agreed(sim, engine)
    now = engine.position(pos["id"])
    [held] = sim.state()["positions"]
    assert D(now["size"]) == abs(D(held["qty"]))
    assert D(now["entry_price"]).quantize(D("0.0001")) == D(held["entry_price"]).quantize(D("0.0001"))
    trades = sorted(sim.signed("/fapi/v1/userTrades", symbol="SOLUSDT", limit=1000), key=lambda t: t["id"])
    held_qty, cost, realized = D(0), D(0), D(0)
    for t in trades:  # average cost, as the exchange books a position
        qty, price = D(t["qty"]), D(t["price"])
        if t["side"] == enter.upper():
            cost, held_qty = cost + qty * price, held_qty + qty
        else:
            average = cost / held_qty
            realized += (price - average) * qty * sign
            cost, held_qty = cost - average * qty, held_qty - qty
        realized -= D(t["commission"])
    assert D(now["realized_pnl"]).quantize(D("0.000001")) == realized.quantize(D("0.000001"))


@pytest.mark.parametrize("side", ["long", "short"])
def test_after_kill_9_during_a_breakeven_move_the_stop_price_is_the_exchanges(
    procs: Processes, tmp_path: Path, side: str
) -> None:
    """Break-even after TP1: kill -9 once the break-even stop is accepted, before warden records it.
    After the restart warden's stop price is the one resting on the exchange (the entry)."""
    sim, engine = start(procs, tmp_path, WARDEN_BREAKEVEN_AFTER_TP1="true")
    pos = engine.signal_qty("SOL", side, "1").json()
    entry = D(pos["entry_price"]).quantize(D("0.01"))
    sim.faults(rest_latency=0.4)
    since = len(sim.requests())
    sim.set_price("SOL", D(pos["tp1_price"]))

    def breakeven_accepted() -> bool:
        return any(
            r["path"] == "/fapi/v1/algoOrder"
            and r["method"] == "POST"
            and r["status"] == 200
            and D(dict(parse_qsl(r["query"])).get("triggerPrice", "0")) == entry
            for r in sim.requests()[since:]
        )

    poll(breakeven_accepted, within=15, what="the break-even stop accepted", every=0.005)
    engine.kill9()
    sim.faults(rest_latency=0)
    engine.start()
    engine.wait_ready()
    agreed(sim, engine)
    now = engine.position(pos["id"])
    assert D(now["stop_price"]) == entry, now
    assert [D(o["trigger_price"]) for o in stops(sim)] == [entry]
    assert [short(o["client_order_id"]) for o in stops(sim)] != []


@pytest.mark.parametrize("side", ["long", "short"])
def test_the_peak_starts_at_the_fill_not_at_marks_before_the_entry(
    procs: Processes, tmp_path: Path, side: str
) -> None:
    """Issue 8.3 over real processes: SOL marks 160 (140 for a short), then 150 and a position
    opened at once. Its watermark is its fill price and its MFE 0 in the reply and afterwards; the
    first move trails from there, never from the mark seen before the entry."""
    sim, engine = start(procs, tmp_path)
    sign = 1 if side == "long" else -1
    sim.set_price("SOL", D("150") + sign * D("10"))
    sim.set_price("SOL", D("150"))
    opened = engine.signal_qty("SOL", side, "1")
    assert opened.status_code == 201, opened.text
    pos = opened.json()
    entry = D(pos["entry_price"])
    assert (D(pos["watermark"]), D(pos["mfe"])) == (entry, 0), pos
    agreed(sim, engine)
    now = engine.position(pos["id"])
    assert (D(now["watermark"]), D(now["mfe"])) == (entry, 0), now
    assert [D(o["trigger_price"]) for o in stops(sim)] == [D(pos["stop_price"])]
    step = entry + sign * D("1")
    sim.set_price("SOL", step)
    poll(lambda: D(engine.position(pos["id"])["watermark"]) == step, within=10, what="the next mark")
    assert D(engine.position(pos["id"])["mfe"]) == D("1")


def alerts_of(tmp_path: Path, position_id: str, kind: str) -> list[str]:
    """The alerts of `kind` written to the engine's outbox for the position (its SQLite file)."""
    with closing(sqlite3.connect(tmp_path / "data" / "w.db")) as db:
        rows = db.execute(
            "SELECT message FROM alerts WHERE position_id = ? AND kind = ? ORDER BY at",
            (position_id, kind),
        ).fetchall()
    return [message for (message,) in rows]


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_a_trailing_move_refused_on_every_mark_alerts_once_and_the_runner_trails_after(
    procs: Processes, tmp_path: Path, venue: str
) -> None:
    """The runner's stop moves are refused for a while (a reason other than "through the market":
    Bybit's 10-conditional cap, Binance's stop-order limit): every mark tries the move again and
    each refusal is an event, but the trader gets one critical alert for the streak (then
    reminders at 8, 16, 32, ...), not one a second; the old stop protects meanwhile, and once
    the refusals end the runner trails again."""
    sim = procs.sim(price_interval=0, venue=venue)
    sim.set_price("SOL", D("150"))
    engine = procs.engine("engine", tmp_path / "data", sim=sim)
    engine.wait_ready()
    pos = runner(sim, engine, "long")
    [resting] = stops(sim)
    sim.faults(reject_if="*-s*")
    peak = D(pos["tp2_price"]) + D("2")
    sim.set_price("SOL", peak)

    def refusals() -> int:
        return sum(
            1
            for e in engine.events(pos["id"])
            if e["kind"] == "protection_failed" and "stop move failed" in e["message"]
        )

    poll(lambda: refusals() >= 5, within=20, what="five refused moves")
    assert stops(sim) == [resting], "the old stop keeps protecting"
    told = alerts_of(tmp_path, pos["id"], "protection_failed")
    assert len(told) == 1, told
    sim.faults(reject_if=None)
    later = peak + D("2")
    sim.set_price("SOL", later)
    want = (later * (1 - D("0.005"))).quantize(D("0.01"), rounding=ROUND_HALF_UP)
    poll(lambda: [D(o["trigger_price"]) for o in stops(sim)] == [want], within=15, what="the runner trails")
    agreed(sim, engine)
    assert max_exposure(sim) < WINDOW


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_a_take_profit_the_exchange_refused_is_placed_again_once_it_takes_it(
    procs: Processes, tmp_path: Path, venue: str
) -> None:
    """TP1 is refused when the position opens (Bybit's 10-conditional cap on a stacked symbol, a
    rejection): the stop rests, so the position is protected, but without TP1 it would never take
    its profit nor arm the runner. The trader is told, and reconciliation places it again once
    the exchange takes it; it then fills at its level as planned."""
    sim = procs.sim(price_interval=0, venue=venue)
    sim.set_price("SOL", D("150"))
    engine = procs.engine("engine", tmp_path / "data", sim=sim)
    engine.wait_ready()
    sim.faults(reject_if="wd-*-*-a[0-9]*")  # TP1's client ids only
    opened = engine.signal_qty("SOL", "long", "1")
    assert opened.status_code == 201, opened.text
    pos = opened.json()
    told = alerts_of(tmp_path, pos["id"], "protection_failed")
    assert len(told) == 1 and "TP1" in told[0], told
    engine.reconcile()  # still refused: nothing else changes, and the trader is not told again
    assert len(alerts_of(tmp_path, pos["id"], "protection_failed")) == 1
    sim.faults(reject_if=None)
    engine.reconcile()
    tps = [o for o in sim.state()["open_orders"] if o["type"] == "take_profit_market"]
    assert sorted(D(o["qty"]) for o in tps) == [D("0.2"), D("0.6")], tps
    sim.set_price("SOL", D(pos["tp1_price"]))
    poll(lambda: engine.position(pos["id"])["tp1_hit"], within=10, what="TP1")
    agreed(sim, engine)
    assert D(engine.position(pos["id"])["size"]) == D("0.4")


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_a_stacked_signal_whose_exits_would_not_fit_under_the_venues_cap_is_refused_with_nothing_sent(
    procs: Processes, tmp_path: Path, venue: str
) -> None:
    """Stacking on: three SOL longs rest nine of the ten conditional orders the venue allows per
    symbol (Binance's MAX_NUM_ALGO_ORDERS filter, read from exchangeInfo; Bybit's documented 10).
    A fourth would have filled, then had its take-profits refused (-4045 / 110009); warden
    refuses it before sending: 503 trading_refused naming the cap, not one order request more
    on the venue, the three positions and their exits as they were."""
    sim = procs.sim(price_interval=0, venue=venue)
    sim.set_price("SOL", D("150"))
    engine = procs.engine("engine", tmp_path / "data", sim=sim, WARDEN_ALLOW_STACKING="true")
    engine.wait_ready()
    for _ in range(3):
        opened = engine.signal_qty("SOL", "long", "1")
        assert opened.status_code == 201, opened.text
        assert opened.json()["status"] == "protected", opened.json()
    agreed(sim, engine)
    orders_sent = sum(1 for r in sim.requests() if sim.is_order_request(r))

    refused = engine.signal_qty("SOL", "long", "1")

    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["error"] == "trading_refused", body
    assert "nothing was sent: SOL/USDT:USDT has room for 10" in body["message"], body
    assert sum(1 for r in sim.requests() if sim.is_order_request(r)) == orders_sent
    state = sim.state()
    assert sum(1 for o in state["open_orders"] if o["type"] != "market") == 9, state["open_orders"]
    assert len(engine.positions()) == 3
    agreed(sim, engine)
