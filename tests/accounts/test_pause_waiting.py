"""A pause naming an account that is not running on this engine (its start failing, the fleet
about to start it again; or its engine stopped) is kept for it the way a kill is (Fleet.kills, the
same file): the account starts paused, through a restart of warden too. Before, the API and the
CLI answered 503 not_ready "account 'alt' is not running", Telegram "[alt] not running", and
nothing was kept: the account the trader had just paused started trading."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.accounts.test_cli import cli
from tests.entrypoints.test_cli import free_socket
from tests.helpers import eventually
from tests.telegram.conftest import CHAT, answers, api  # noqa: F401  (the fake Bot API fixture)
from tests.telegram.fakebot import FakeBotApi
from warden.bootstrap import Fleet
from warden.domain.values import Side
from warden.entrypoints.api import create_app
from warden.entrypoints.cli import QuietServer
from warden.entrypoints.telegram import run_fleet_bot
from warden.service.commands import OpenPosition, TradingRefused

from .conftest import TOKEN
from .test_kill_waiting import SOL, Outage, alt_started, engine, serving, settings_for, with_bot

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def alt_down(monkeypatch: pytest.MonkeyPatch) -> Outage:
    return Outage(monkeypatch, "alt")


async def pause_one(fleet: Fleet, account: str, **body: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(lambda: fleet))
    async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
        return await http.post(f"/api/v1/pause?account={account}", json=body)


async def test_an_api_pause_naming_an_account_not_running_is_kept_and_it_starts_paused(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        assert fleet.runtime("alt") is None
        paused = await pause_one(fleet, "alt", reason="alt misbehaves")
        assert paused.status_code == 503, paused.text  # not in force *now*: never read as done
        body = paused.json()
        assert body["error"] == "pause_incomplete", body
        assert body["message"].startswith("pause NOT in force for alt: not running"), body
        assert f"kept in {settings.data_dir / 'kill-alt.json'}: it starts paused" in body["message"], body
        assert "pause" in (fleet.kill_waiting("alt") or ""), fleet.kill_waiting("alt")
        assert not engine(fleet, "main").controls.state.paused  # only the account named

        alt_down.down = False
        alt = await alt_started(fleet)
        assert not alt.status().accepting_signals
        with pytest.raises(TradingRefused, match="paused"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        state = alt.controls.state
        assert state.paused and not state.killed and state.reason == "alt misbehaves", state
        await eventually(
            lambda: not (settings.data_dir / "kill-alt.json").exists(),
            what="the kept pause cleared once stored",
        )
        stored = await alt.store.load_controls()
        assert stored.paused and not stored.killed  # the database has it now


async def test_a_kept_pause_survives_a_restart_of_warden_and_resume_ends_it(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        assert (await pause_one(fleet, "alt")).status_code == 503
    alt_down.down = False  # warden restarts; now alt's database answers
    async with serving(settings) as fleet:
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="paused"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert not alt.controls.state.killed
        await alt.resume()
        opened = await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status.value == "protected"
        assert not (settings.data_dir / "kill-alt.json").exists()


async def test_a_kept_pause_never_weakens_a_kept_kill(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    """A pause after a kill, both kept for alt: it still starts with its kill switch on."""
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            assert (await http.post("/api/v1/kill?account=alt", json={})).status_code == 503
        paused = await pause_one(fleet, "alt")
        assert paused.status_code == 503
        assert "kill" in paused.json()["message"], paused.text  # what stays kept says it
        alt_down.down = False
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="kill"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert alt.controls.state.killed


async def test_a_telegram_pause_naming_an_account_not_running_is_kept(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    alt_down: Outage,
) -> None:
    settings = with_bot(tmp_path, api)
    async with serving(settings, beside=[run_fleet_bot]) as fleet:
        await eventually(lambda: engine(fleet, "main").status().accepting_signals, what="main ready")
        await api.say(CHAT, "/pause @alt")
        said = lambda: [t for t in answers(api) if "alt" in t]  # noqa: E731
        await eventually(lambda: bool(said()), timeout=15, what="the pause's answer")
        [answer] = said()
        assert answer.startswith("pause NOT in force for alt"), answer
        assert "it starts paused" in answer, answer
        assert fleet.kill_waiting("alt") is not None
        assert not engine(fleet, "main").controls.state.paused  # only the account named
        alt_down.down = False
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="paused"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert alt.controls.state.reason == "from Telegram"


async def test_the_cli_pause_naming_an_account_not_running_says_it_is_kept_and_fails(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        sock = free_socket()
        config = uvicorn.Config(create_app(lambda: fleet), log_config=None, access_log=False, lifespan="off")
        server = QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        host, port = sock.getsockname()
        try:
            result = await cli(f"http://{host}:{port}", "pause", "--account", "alt")
        finally:
            server.should_exit = True
            await task
            sock.close()
        assert fleet.kill_waiting("alt") is not None
    assert result.exit_code == 1, result.output
    assert "pause NOT in force for alt: not running" in result.stderr, result.stderr
    assert "it starts paused" in result.stderr, result.stderr


async def test_an_api_pause_naming_an_account_whose_engine_stopped_is_kept(
    tmp_path: Path, store_url: str
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        await eventually(lambda: engine(fleet, "alt").status().accepting_signals, what="alt ready")
        await engine(fleet, "alt").stop()
        paused = await pause_one(fleet, "alt")
        assert paused.status_code == 503, paused.text
        assert "it starts paused" in paused.json()["message"], paused.text
        assert fleet.kill_waiting("alt") is not None
        assert not engine(fleet, "main").controls.state.paused


async def test_an_api_pause_naming_a_running_account_is_unchanged(tmp_path: Path, store_url: str) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        await eventually(lambda: engine(fleet, "alt").status().accepting_signals, what="alt ready")
        paused = await pause_one(fleet, "alt", reason="quiet")
        assert paused.status_code == 200, paused.text
        assert paused.json()["controls"]["paused"] is True
        assert fleet.kill_waiting("alt") is None
