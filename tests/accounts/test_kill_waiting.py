"""A kill of every account that finds one account not running (its start failing, say): kept for it,
so that account never trades before its kill switch is on — when the fleet starts it again, and
after warden restarts. Before, the kill answered "NOT on" for it and the fleet then started it
trading."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import eventually
from tests.telegram.conftest import CHAT, answers, api  # noqa: F401  (the fake Bot API fixture)
from tests.telegram.fakebot import TOKEN as BOT_TOKEN
from tests.telegram.fakebot import FakeBotApi
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Fleet, running_fleet
from warden.config import Settings
from warden.domain.values import Side, Symbol
from warden.entrypoints.api import create_app
from warden.entrypoints.telegram import run_fleet_bot
from warden.ports import StoreUnavailable
from warden.service.commands import OpenPosition, TradingRefused
from warden.service.engine import Engine

from .conftest import TOKEN, TWO_SIM, fleet_settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SOL = Symbol("SOL/USDT:USDT")


class Outage:
    """`account`'s database does not answer while `down` (its engine cannot start)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, account: str) -> None:
        import warden.bootstrap

        self.down = True
        real_open = warden.bootstrap.open_store

        async def open_store(url: str, **kwargs: Any) -> Any:
            if kwargs.get("account") == account and self.down:
                raise StoreUnavailable(f"read installation id: {url} did not answer within 5s")
            return await real_open(url, **kwargs)

        monkeypatch.setattr(warden.bootstrap, "open_store", open_store)


@pytest.fixture
def alt_down(monkeypatch: pytest.MonkeyPatch) -> Outage:
    return Outage(monkeypatch, "alt")


def engine(fleet: Fleet, name: str) -> Engine:
    runtime = fleet.runtime(name)
    assert runtime is not None, fleet.failures
    return runtime.engine


async def kill_all(fleet: Fleet, **body: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(lambda: fleet))
    async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
        return await http.post("/api/v1/kill", json=body)


async def alt_started(fleet: Fleet) -> Engine:
    await eventually(lambda: fleet.runtime("alt") is not None, timeout=30, what="alt started again")
    alt = engine(fleet, "alt")
    await eventually(lambda: alt.status().state.value == "ready", timeout=30, what="alt recovered")
    return alt


def serving(settings: Settings, **options: Any) -> AbstractAsyncContextManager[Fleet]:
    """The fleet, starting a failed account again at once (0.05 s)."""
    return running_fleet(
        settings, price_feed=False, notifier=lambda _: RecordingNotifier(), restart_after=0.05, **options
    )


def with_bot(tmp_path: Path, api: FakeBotApi) -> Settings:  # noqa: F811
    """Two accounts on SQLite, with a Telegram bot on the fake Bot API."""
    extra = f'telegram_token = "{BOT_TOKEN}"\ntelegram_chat_ids = "{CHAT}"\ntelegram_api_url = "{api.url}"'
    return fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM, extra=extra)


def settings_for(tmp_path: Path, store_url: str) -> Settings:
    return fleet_settings(tmp_path, store_url, TWO_SIM)


async def test_an_account_not_running_at_a_kill_of_all_starts_killed(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        assert fleet.runtime("alt") is None
        killed = await kill_all(fleet, reason="exchange trouble")
        assert killed.status_code == 503, killed.text  # alt's kill switch is not on *now*
        alt_said = killed.json()["accounts"]["alt"]["error"]
        assert "not running" in alt_said and "it starts with the kill switch on" in alt_said, alt_said
        assert str(settings.data_dir / "kill-alt.json") in alt_said
        assert killed.json()["accounts"]["main"]["controls"]["killed"] is True
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            listed = {a["name"]: a for a in (await http.get("/api/v1/accounts")).json()}
            await http.post("/login", content=f"token={TOKEN}".encode())
            page = (await http.get("/?account=alt")).text
        assert "kill of every account is kept" in page  # the dashboard's page of alt
        said = " ".join(listed["alt"]["reasons"])  # what `warden status` and the dashboard show
        assert "not running" in said and "kill of every account is kept" in said, said

        alt_down.down = False
        alt = await alt_started(fleet)
        assert not alt.status().accepting_signals
        with pytest.raises(TradingRefused, match="kill"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert alt.controls.state.killed and alt.controls.state.reason == "exchange trouble"
        await eventually(
            lambda: not (settings.data_dir / "kill-alt.json").exists(),
            what="the kept kill cleared once stored",
        )
        assert (await alt.store.load_controls()).killed  # stored: the database has it now


async def test_a_kept_kill_survives_a_restart_of_warden_before_the_account_starts(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        killed = await kill_all(fleet)
        assert "kept in" in killed.json()["accounts"]["alt"]["error"]
    alt_down.down = False  # warden restarts; now alt's database answers
    async with serving(settings) as fleet:
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="kill"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        main = engine(fleet, "main")
        assert main.controls.state.killed  # stored by main's own engine at the kill


async def test_resuming_the_account_ends_the_kept_kill(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        await kill_all(fleet)
        alt_down.down = False
        alt = await alt_started(fleet)
        assert alt.controls.state.killed
        await alt.resume()
        opened = await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status.value == "protected"
        assert not (settings.data_dir / "kill-alt.json").exists()
    async with serving(settings) as fleet:  # nothing kept brings the kill back
        alt = await alt_started(fleet)
        assert not alt.controls.state.killed


async def test_an_unreadable_kept_kill_is_a_kill(tmp_path: Path, store_url: str) -> None:
    """What the file held is unknown: the safe side is the kill switch on, said so."""
    settings = settings_for(tmp_path, store_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "kill-alt.json").write_text('{"version": 1, "reas')
    async with serving(settings) as fleet:
        alt = await alt_started(fleet)
        assert alt.controls.state.killed
        reason = alt.controls.state.reason or ""
        # (not a word the test's own path holds: "unreadable" is in its name)
        assert reason.startswith("a kill of every account may be waiting"), reason
        assert "is not a kept kill warden wrote" in reason, reason
        assert not engine(fleet, "main").controls.state.killed


async def test_a_bare_telegram_kill_keeps_the_kill_for_an_account_not_running(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    alt_down: Outage,
) -> None:
    """/kill without @NAME from Telegram: the same as the API's kill of every account."""
    settings = with_bot(tmp_path, api)
    async with serving(settings, beside=[run_fleet_bot]) as fleet:
        await eventually(lambda: engine(fleet, "main").status().accepting_signals, what="main ready")
        await api.say(CHAT, "/kill")
        said = lambda: [t for t in answers(api) if "kill switch" in t]  # noqa: E731
        await eventually(lambda: bool(said()), timeout=15, what="the kill's answer")
        [answer] = said()
        assert answer.startswith("kill switch NOT on for alt"), answer
        assert "[alt] not running" in answer and "it starts with the kill switch on" in answer, answer
        await api.say(CHAT, "/status @alt")
        status = lambda: [t for t in api.texts(CHAT) if t.startswith("[alt] not running")]  # noqa: E731
        await eventually(lambda: bool(status()), timeout=15, what="alt's status")
        assert "a kill of every account is kept for it" in status()[0], status()
        alt_down.down = False
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="kill"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))


async def test_a_bare_telegram_kill_keeps_the_kill_for_an_account_whose_engine_stopped(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
) -> None:
    """An account whose engine has stopped (its runtime torn down, the fleet about to start it
    again): the API's kill of every account keeps the kill for it; Telegram's bare /kill answered
    "refused: engine is stopped" and kept nothing, so the account started again trading."""
    settings = with_bot(tmp_path, api)
    async with serving(settings, beside=[run_fleet_bot]) as fleet:
        await eventually(lambda: engine(fleet, "alt").status().accepting_signals, what="alt ready")
        await engine(fleet, "alt").stop()
        await api.say(CHAT, "/kill flatten")
        said = lambda: [t for t in answers(api) if "kill switch" in t]  # noqa: E731
        await eventually(lambda: bool(said()), timeout=15, what="the kill's answer")
        [answer] = said()
        assert answer.startswith("kill switch NOT on for alt"), answer
        [alt_line] = [line for line in answer.splitlines() if line.startswith("[alt]")]
        assert "it starts with the kill switch on" in alt_line, answer
        assert "its positions were NOT closed" in alt_line, answer
        assert fleet.kill_waiting("alt") is not None
        assert engine(fleet, "main").controls.state.killed


async def test_the_api_keeps_the_kill_for_an_account_whose_engine_stopped(
    tmp_path: Path, store_url: str
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        await eventually(lambda: engine(fleet, "alt").status().accepting_signals, what="alt ready")
        await engine(fleet, "alt").stop()
        killed = await kill_all(fleet, flatten=True)
        assert killed.status_code == 503, killed.text
        alt_said = killed.json()["accounts"]["alt"]["error"]
        assert "it starts with the kill switch on" in alt_said and "NOT closed" in alt_said, alt_said
        assert fleet.kill_waiting("alt") is not None


async def test_a_mistyped_bare_telegram_kill_keeps_nothing(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    alt_down: Outage,
) -> None:
    """/kill flaten (a typo): main answered its usage, while alt, not running, had a kill kept."""
    settings = with_bot(tmp_path, api)
    async with serving(settings, beside=[run_fleet_bot]) as fleet:
        await eventually(lambda: engine(fleet, "main").status().accepting_signals, what="main ready")
        await api.say(CHAT, "/kill flaten")
        said = lambda: [t for t in api.texts(CHAT) if "usage" in t]  # noqa: E731
        await eventually(lambda: bool(said()), timeout=15, what="the usage")
        assert fleet.kill_waiting("alt") is None, said()
        assert not engine(fleet, "main").controls.state.killed


async def test_a_telegram_kill_naming_an_account_not_running_keeps_the_kill_for_it(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    alt_down: Outage,
) -> None:
    """`/kill @alt` while alt's engine is not running (its database not answering, the fleet
    starting it again): the bot answered "[alt] not running: … (starting again in 1 s)" and kept
    nothing, so the account the trader had just asked to stop started again trading, while a bare
    /kill at the same moment kept the kill for it. Naming the account is no weaker than naming
    none: the kill is kept, the answer says its kill switch is NOT on yet and that it starts with
    it on."""
    settings = with_bot(tmp_path, api)
    async with serving(settings, beside=[run_fleet_bot]) as fleet:
        await eventually(lambda: engine(fleet, "main").status().accepting_signals, what="main ready")
        await api.say(CHAT, "/kill @alt")
        said = lambda: [t for t in answers(api) if "[alt]" in t]  # noqa: E731
        await eventually(lambda: bool(said()), timeout=15, what="the kill's answer")
        [answer] = said()
        assert answer.startswith("kill switch NOT on for alt"), answer
        assert "it starts with the kill switch on" in answer, answer
        assert fleet.kill_waiting("alt") is not None
        assert not engine(fleet, "main").controls.state.killed  # only the account named
        alt_down.down = False
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="kill"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))


async def kill_one(fleet: Fleet, account: str, **body: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(lambda: fleet))
    async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
        return await http.post(f"/api/v1/kill?account={account}", json=body)


async def test_an_api_kill_naming_an_account_not_running_keeps_the_kill_for_it(
    tmp_path: Path, store_url: str, alt_down: Outage
) -> None:
    """POST /kill?account=alt while alt's engine is not running (the fleet starting it again):
    the API answered 503 not_ready "account 'alt' is not running" and kept nothing, so alt started
    again trading, while a kill of every account at the same moment kept the kill for it. Now the
    same as Telegram's `/kill @alt`: kept, and answered 503 kill_incomplete saying its kill switch
    is NOT on yet and that it starts with it on."""
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        assert fleet.runtime("alt") is None
        killed = await kill_one(fleet, "alt", reason="alt misbehaves", flatten=True)
        assert killed.status_code == 503, killed.text  # not on *now*: never read as done
        body = killed.json()
        assert body["error"] == "kill_incomplete", body
        assert body["message"].startswith("kill switch NOT on for alt: not running"), body
        assert "it starts with the kill switch on" in body["message"], body
        assert "its positions were NOT closed" in body["message"], body
        assert "not running" in body["accounts"]["alt"]["error"], body
        assert fleet.kill_waiting("alt") is not None
        assert not engine(fleet, "main").controls.state.killed  # only the account named
        alt_down.down = False
        alt = await alt_started(fleet)
        with pytest.raises(TradingRefused, match="kill"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert alt.controls.state.reason == "alt misbehaves"


async def test_an_api_kill_naming_an_account_whose_engine_stopped_keeps_the_kill(
    tmp_path: Path, store_url: str
) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        await eventually(lambda: engine(fleet, "alt").status().accepting_signals, what="alt ready")
        await engine(fleet, "alt").stop()
        killed = await kill_one(fleet, "alt")
        assert killed.status_code == 503, killed.text
        assert "it starts with the kill switch on" in killed.json()["message"], killed.text
        assert fleet.kill_waiting("alt") is not None
        assert not engine(fleet, "main").controls.state.killed


async def test_an_api_kill_naming_a_running_account_is_unchanged(tmp_path: Path, store_url: str) -> None:
    settings = settings_for(tmp_path, store_url)
    async with serving(settings) as fleet:
        await eventually(lambda: engine(fleet, "alt").status().accepting_signals, what="alt ready")
        killed = await kill_one(fleet, "alt")
        assert killed.status_code == 200 and killed.json()["controls"]["killed"], killed.text
        assert fleet.kill_waiting("alt") is None
        assert not engine(fleet, "main").controls.state.killed
