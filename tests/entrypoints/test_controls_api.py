"""POST /api/v1/pause, /resume, /kill and the limit_exceeded answer, over the real engine."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from warden.bootstrap import Runtime, running
from warden.entrypoints.api import create_app

from .conftest import AUTH, make_settings
from .test_api import SIGNAL, assert_nothing_happened, open_sol


async def test_pause_refuses_signals_with_the_reason_everywhere(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Paused: /signals answers 503 trading_refused naming it, nothing sent; /status and /healthz show it."""
    r = await client.post("/api/v1/pause", json={"reason": "fomc"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["controls"] == {
        "paused": True,
        "killed": False,
        "daily_loss_until": None,
        "reason": "fomc",
    }
    r = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert r.status_code == 503
    assert r.json()["error"] == "trading_refused" and "paused (fomc)" in r.json()["message"]
    await assert_nothing_happened(runtime)
    status = (await client.get("/api/v1/status", headers=AUTH)).json()
    assert status["controls"]["paused"] is True and status["accepting_signals"] is False
    health = (await client.get("/healthz")).json()
    assert any("paused" in reason for reason in health["reasons"])
    r = await client.post("/api/v1/resume", headers=AUTH)
    assert r.status_code == 200 and r.json()["controls"]["paused"] is False
    await open_sol(client)


async def test_kill_with_flatten_closes_everything(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """POST /kill {"flatten": true} closes every position and answers what it closed."""
    p = await open_sol(client)
    r = await client.post("/api/v1/kill", json={"flatten": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["controls"]["killed"] is True
    assert [c["id"] for c in body["closed"]] == [p["id"]] and body["failed"] == {}
    assert (await client.get("/api/v1/positions", headers=AUTH)).json() == []
    assert runtime.sim is not None and runtime.sim.core.positions() == []
    r = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert r.status_code == 503 and "kill switch on" in r.json()["message"]


async def test_control_calls_need_the_token_and_valid_bodies(client: httpx.AsyncClient) -> None:
    """No token: 401. flatten must be a boolean and unknown fields are refused, naming the field."""
    assert (await client.post("/api/v1/pause")).status_code == 401
    r = await client.post("/api/v1/kill", json={"flatten": "yes"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "flatten"
    r = await client.post("/api/v1/pause", json={"until": "monday"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "until"
    status = (await client.get("/api/v1/status", headers=AUTH)).json()
    assert status["controls"]["paused"] is False and status["controls"]["killed"] is False


async def test_a_fat_finger_signal_is_422_limit_exceeded(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """{"usd": "1e15"} answers 422 limit_exceeded naming max_position_usd; nothing is sent."""
    r = await client.post("/api/v1/signals", json={**SIGNAL, "usd": "50000"}, headers=AUTH)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "max_position_usd"
    assert Decimal(body["maximum"]) == 10_000 and Decimal(body["value"]) > 10_000
    await assert_nothing_happened(runtime)


async def test_the_kill_switch_survives_a_restart(tmp_path: Path) -> None:
    """Killed, stopped, started again on the same database: still killed; resume clears it."""
    settings = make_settings(tmp_path)
    for step in ("kill", "check", "resume"):
        async with running(settings, price_feed=False) as rt:
            app = create_app(lambda rt=rt: rt)  # type: ignore[misc]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://warden") as http:
                if step == "kill":
                    assert (await http.post("/api/v1/kill", json={}, headers=AUTH)).status_code == 200
                elif step == "check":
                    status = (await http.get("/api/v1/status", headers=AUTH)).json()
                    assert status["controls"]["killed"] is True and not status["accepting_signals"]
                    r = await http.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
                    assert r.status_code == 503 and "kill switch" in r.json()["message"]
                    assert (await http.post("/api/v1/resume", headers=AUTH)).status_code == 200
                else:
                    assert (await http.get("/api/v1/status", headers=AUTH)).json()[
                        "accepting_signals"
                    ] is True


async def test_a_kill_the_database_cannot_store_survives_a_restart_through_the_data_dir_file(
    tmp_path: Path,
) -> None:
    """`warden run`'s engine keeps a kill the database refused (its file locked by another
    process) in DATA_DIR/controls-ACCOUNT.json; stopped before the database is back and started
    again, it is still killed, and the database then has it."""
    settings = make_settings(tmp_path, db_timeout=0.5)
    spill = settings.data_dir / f"controls-{settings.account}.json"
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    try:
        async with running(settings, price_feed=False) as rt:
            app = create_app(lambda rt=rt: rt)  # type: ignore[misc]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://warden") as http:
                other.execute("BEGIN EXCLUSIVE")
                assert (await http.post("/api/v1/kill", json={}, headers=AUTH)).status_code == 200
                status = (await http.get("/api/v1/status", headers=AUTH)).json()
                assert any(str(spill) in w for w in status["warnings"]), status["warnings"]
                assert spill.exists()
        assert spill.exists()  # stopped before the database was back
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with running(settings, price_feed=False) as rt:
        app = create_app(lambda rt=rt: rt)  # type: ignore[misc]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://warden") as http:
            status = (await http.get("/api/v1/status", headers=AUTH)).json()
            assert status["controls"]["killed"] is True and not status["accepting_signals"]
            r = await http.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
            assert r.status_code == 503 and "kill switch" in r.json()["message"]
            assert not spill.exists()


@pytest.mark.parametrize(
    ("control", "body"),
    [("pause", {"reason": "fomc"}), ("kill", {}), ("kill", {"flatten": False, "reason": "stop"})],
    ids=["pause", "kill", "kill-no-flatten"],
)
@pytest.mark.parametrize(
    "exit_signal",
    [
        {"symbol": "SOL", "action": "close"},
        {"symbol": "BINANCE:SOLUSDT.P", "side": "sell", "qty": "0.66", "market_position": "flat"},
    ],
    ids=["action-close", "tradingview-flat"],
)
async def test_an_exit_signal_closes_while_entries_are_stopped(
    client: httpx.AsyncClient,
    runtime: Runtime,
    control: str,
    body: dict[str, object],
    exit_signal: dict[str, str],
) -> None:
    """Pause and the kill switch stop new entries; exits keep working. A strategy's exit (action
    close, or TradingView's market_position flat) was refused 503 trading_refused like an entry,
    so the position the strategy had left stayed open — while `warden close`, POST
    /positions/close and Telegram's /close closed it. It closes, and the control stays on."""
    p = await open_sol(client)
    assert (await client.post(f"/api/v1/{control}", json=body, headers=AUTH)).status_code == 200
    response = await client.post("/api/v1/signals", json=exit_signal, headers=AUTH)
    assert response.status_code == 200, response.text
    assert [(c["id"], c["status"]) for c in response.json()] == [(p["id"], "closed")]
    assert runtime.sim is not None and runtime.sim.core.positions() == []
    status = (await client.get("/api/v1/status", headers=AUTH)).json()
    assert status["accepting_signals"] is False
    assert status["controls"]["paused"] is True
    entry = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert (entry.status_code, entry.json()["error"]) == (503, "trading_refused")


async def test_a_standby_still_refuses_an_exit_signal(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Only the controls let an exit through: an engine that may not act (a standby) refuses a
    close signal as it refuses an entry — 503, nothing sent, the position left to the holder."""
    p = await open_sol(client)
    runtime.engine.set_read_only("lease lost to another engine")
    response = await client.post("/api/v1/signals", json={"symbol": "SOL", "action": "close"}, headers=AUTH)
    assert (response.status_code, response.json()["error"]) == (503, "trading_refused")
    assert runtime.engine.ledger.positions[p["id"]].status.value == "protected"
    assert runtime.sim is not None and len(runtime.sim.core.positions()) == 1
