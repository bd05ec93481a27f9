"""Real processes: an alert raised before a kill -9 reaches the chat after the restart (I8), a
command executed before a kill -9 is not executed again after it, and the bot token never appears
in warden's logs."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import Processes
from tests.helpers import eventually
from tests.telegram.conftest import CHAT
from tests.telegram.fakebot import TOKEN, FakeBotApi

pytestmark = pytest.mark.slow


async def test_an_alert_raised_before_a_kill_9_arrives_after_the_restart(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """Telegram is down; POST /pause raises an alert (committed before the 200); the engine is killed
    with SIGKILL; Telegram comes back; the restarted engine delivers the alert, and is still paused."""
    procs = Processes(tmp_path / "procs")
    env = {
        "WARDEN_TELEGRAM_TOKEN": TOKEN,
        "WARDEN_TELEGRAM_CHAT_IDS": str(CHAT),
        "WARDEN_TELEGRAM_API_URL": api.url,
        "WARDEN_LOG_LEVEL": "debug",  # even the chattiest logs must not show the token
    }
    data = tmp_path / "data"
    try:
        api.down = True
        first = await asyncio.to_thread(procs.engine, "warden", data, sim=None, **env)
        await asyncio.to_thread(first.wait_ready)
        async with httpx.AsyncClient(base_url=first.url, headers=first.headers, timeout=30) as http:
            r = await http.post("/api/v1/pause", json={"reason": "before the crash"})
        assert r.status_code == 200, r.text
        await eventually(lambda: "sendMessage" in api.calls, timeout=30, what="a delivery attempt")
        assert not any("before the crash" in t for t in api.texts(CHAT))
        await asyncio.to_thread(first.kill9)
        api.down = False
        second = await asyncio.to_thread(procs.engine, "warden-restarted", data, sim=None, **env)
        await eventually(
            lambda: any("before the crash" in t for t in api.texts(CHAT)), timeout=60, what="delivered"
        )
        async with httpx.AsyncClient(base_url=second.url, headers=second.headers, timeout=30) as http:
            status = (await http.get("/api/v1/status")).json()
        assert status["controls"]["paused"] is True
        assert next(t for t in api.texts(CHAT) if "before the crash" in t).startswith("🟠 paused")
    finally:
        await asyncio.to_thread(procs.close)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "procs").glob("*.log"))
    assert "lease_held" in logs  # the logs were written
    assert "/bot**********/sendMessage" in logs  # httpx logs the URL at debug: the token is hidden
    assert TOKEN not in logs


async def test_a_command_executed_before_a_kill_9_is_not_executed_again_after_the_restart(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """`long sol` from the chat opens a position; the engine is killed with SIGKILL while Telegram
    never hears the update was taken (`lose_confirmations`: it would hand it to the next poll that
    asks without an offset); the restarted engine runs a later command but not `long sol` again:
    the exchange holds one position. Stacking is on, so only the bot's record stands in the way."""
    procs = Processes(tmp_path / "procs")
    env = {
        "WARDEN_TELEGRAM_TOKEN": TOKEN,
        "WARDEN_TELEGRAM_CHAT_IDS": str(CHAT),
        "WARDEN_TELEGRAM_API_URL": api.url,
        "WARDEN_ALLOW_STACKING": "true",
    }
    data = tmp_path / "data"
    api.lose_confirmations = True
    try:
        sim = await asyncio.to_thread(procs.sim)
        first = await asyncio.to_thread(procs.engine, "warden", data, sim=sim, **env)
        await asyncio.to_thread(first.wait_ready)
        await api.say(CHAT, "long sol")
        long_sol = api.last_update_id
        await eventually(lambda: any(t.startswith("✅") for t in api.texts(CHAT)), timeout=60, what="opened")
        [opened] = sim.state()["positions"]
        await asyncio.to_thread(first.kill9)
        api.down = True  # until the restarted engine is ready: an update it is given runs, not refused
        second = await asyncio.to_thread(procs.engine, "warden-restarted", data, sim=sim, **env)
        await asyncio.to_thread(second.wait_ready)
        api.down = False
        await api.say(CHAT, "/health")
        await eventually(lambda: "ok: ready" in api.texts(CHAT), timeout=60, what="the later command")
        if api.delivered.count(long_sol) > 1:  # given again: wait for its answer, to show what it did
            await eventually(
                lambda: sum(t.startswith(("✅", "refused")) for t in api.texts(CHAT)) > 1,
                timeout=60,
                what="replay",
            )
        assert sim.state()["positions"] == [opened]
        [position] = await asyncio.to_thread(second.positions)
        assert position["symbol"] == "SOL/USDT:USDT" and Decimal(position["size"]) == Decimal(opened["qty"])
        assert sum(t.startswith("✅") for t in api.texts(CHAT)) == 1
        assert api.delivered.count(long_sol) == 1
    finally:
        await asyncio.to_thread(procs.close)
