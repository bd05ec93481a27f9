"""The Telegram bot of an engine serving two accounts, against the fake Bot API server:
`@NAME` picks the account, a command without one is refused (nothing sent), a bare /kill
stops every account and says so."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from tests.telegram.conftest import CHAT, api  # noqa: F401  (the fake Bot API fixture)
from tests.telegram.fakebot import TOKEN, FakeBotApi
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Fleet, running_fleet
from warden.config import Settings
from warden.entrypoints.telegram import run_fleet_bot

from .conftest import TWO_SIM, first_open_times_out, fleet_settings


def bot_settings(tmp_path: Path, api: FakeBotApi, tables: str, more: str = "") -> Settings:  # noqa: F811
    """A file of `tables` on SQLite whose alerts and commands go through the fake Bot API
    (`more`: other top-level settings, one per line)."""
    extra = (
        f'telegram_token = "{TOKEN}"\ntelegram_chat_ids = "{CHAT}"\ntelegram_api_url = "{api.url}"\n{more}'
    )
    return fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", tables, extra=extra)


def bot_fleet(settings: Settings, **options: Any) -> contextlib.AbstractAsyncContextManager[Fleet]:
    """`settings` served by a fleet with its Telegram bot beside it (`options`: running_fleet's)."""
    return running_fleet(
        settings, price_feed=False, notifier=lambda _: RecordingNotifier(), beside=[run_fleet_bot], **options
    )


@pytest.fixture
async def fleet(tmp_path: Path, api: FakeBotApi) -> AsyncIterator[Fleet]:  # noqa: F811
    settings = bot_settings(tmp_path, api, TWO_SIM)
    async with bot_fleet(settings) as running:
        yield running


def replies(api: FakeBotApi, needle: str) -> list[str]:  # noqa: F811
    return [t for t in api.texts(CHAT) if needle in t]


def positions(fleet: Fleet, name: str) -> list[tuple[str, str]]:
    runtime = fleet.runtime(name)
    assert runtime is not None and runtime.sim is not None
    return [(p.symbol, p.side.value) for p in runtime.sim.core.positions()]


async def test_at_name_opens_on_that_account_only(api: FakeBotApi, fleet: Fleet) -> None:  # noqa: F811
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "which account?")), timeout=15, what="the refusal")
    [refusal] = replies(api, "which account?")
    assert "@main, @alt" in refusal and "nothing was sent" in refusal
    assert positions(fleet, "main") == [] and positions(fleet, "alt") == []

    await api.say(CHAT, "short sol @alt")
    await eventually(lambda: bool(replies(api, "[alt] ✅")), timeout=15, what="the open on alt")
    assert positions(fleet, "alt") == [("SOL/USDT:USDT", "short")]
    assert positions(fleet, "main") == []
    # its alert, through the one bot, names the account it is about
    await eventually(lambda: bool(replies(api, "🟢 [alt] position_protected")), timeout=15, what="alert")
    assert replies(api, "[main] position_protected") == []

    await api.say(CHAT, "long eth @mian")
    await eventually(lambda: bool(replies(api, "unknown account @mian")), timeout=15, what="unknown")
    assert positions(fleet, "main") == []

    await api.say(CHAT, "/positions")
    await eventually(lambda: bool(replies(api, "[main] no open positions")), timeout=15, what="positions")
    [listing] = replies(api, "[main] no open positions")
    assert "[alt] " in listing and "SOL/USDT:USDT" in listing


async def test_pause_per_account_and_a_bare_kill_stops_all(api: FakeBotApi, fleet: Fleet) -> None:  # noqa: F811
    await api.say(CHAT, "/pause")
    await eventually(lambda: bool(replies(api, "which account?")), timeout=15, what="the refusal")
    main, alt = fleet.runtimes["main"].engine, fleet.runtimes["alt"].engine
    assert not main.status().controls.paused and not alt.status().controls.paused

    await api.say(CHAT, "/pause @main")
    await eventually(lambda: bool(replies(api, "[main] paused")), timeout=15, what="pause main")
    assert main.status().controls.paused and not alt.status().controls.paused

    await api.say(CHAT, "/kill")
    await eventually(lambda: bool(replies(api, "kill switch on ALL accounts")), timeout=15, what="kill")
    assert main.status().controls.killed and alt.status().controls.killed
    [said] = replies(api, "kill switch on ALL accounts")
    assert "[main]" in said and "[alt]" in said


async def test_close_all_on_one_account_is_confirmed_by_its_button(
    api: FakeBotApi,  # noqa: F811
    fleet: Fleet,
) -> None:
    for name in ("main", "alt"):
        await api.say(CHAT, f"long sol @{name}")
        await eventually(lambda n=name: bool(replies(api, f"[{n}] ✅")), timeout=15, what=f"open {name}")
    await api.say(CHAT, "/close all @alt")
    await eventually(lambda: bool(replies(api, "at market?")), timeout=15, what="the confirmation")
    [ask] = [s for s in api.to(CHAT) if "at market?" in s.text]
    assert ask.text.startswith("[alt] ")
    await api.press(CHAT, ask.message_id, ask.buttons[0]["callback_data"])
    await eventually(lambda: bool(replies(api, "closed: realized PnL")), timeout=15, what="closed")
    assert positions(fleet, "alt") == []
    assert positions(fleet, "main") == [("SOL/USDT:USDT", "long")]


async def test_with_one_account_at_name_is_optional(tmp_path: Path, api: FakeBotApi) -> None:  # noqa: F811
    """Today's single account: replies as before, `@default` accepted, another name refused."""
    from tests.telegram.conftest import bot_settings
    from warden.bootstrap import running
    from warden.entrypoints.telegram import run_bot

    async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as runtime:
        await api.say(CHAT, "short sol @default")
        await eventually(
            lambda: bool([t for t in api.texts(CHAT) if t.startswith("✅")]), timeout=15, what="open"
        )
        assert runtime.sim is not None and len(runtime.sim.core.positions()) == 1
        await api.say(CHAT, "long eth @main")
        await eventually(lambda: bool(replies(api, "unknown account @main")), timeout=15, what="refusal")
        assert len(runtime.sim.core.positions()) == 1


async def test_an_account_started_again_is_served_by_the_bot(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An account whose first start failed (its database did not answer) and that the fleet
    started again is commanded through the bot like any other: the bot looks the account's
    runtime up for each command, not once when it started (it answered "[alt] not running"
    for good, and a /kill @alt stopped nothing)."""
    failed = first_open_times_out(monkeypatch, "alt")
    settings = bot_settings(tmp_path, api, TWO_SIM)
    async with bot_fleet(
        settings,
        restart_after=0.05,
    ) as fleet:
        assert failed == ["alt"]
        await eventually(lambda: fleet.runtime("alt") is not None, timeout=30, what="alt started again")
        alt = fleet.runtimes["alt"].engine
        await eventually(lambda: alt.status().accepting_signals, timeout=30, what="alt ready")
        await api.say(CHAT, "/kill @alt")
        answered = lambda: [t for t in api.texts(CHAT) if t.startswith("[alt] ")]  # noqa: E731
        await eventually(lambda: bool(answered()), timeout=15, what="the kill's answer")
        assert answered()[0].startswith("[alt] 🛑 kill switch on"), answered()
        assert alt.status().controls.killed


async def test_an_engine_serving_one_table_of_several_names_it_in_its_alerts(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
) -> None:
    """One engine per account (`warden run --account alt` beside `--account main`, the file's two
    tables, their alerts in one chat): alt's engine served one account, so its Telegram alerts
    did not say whose they were ("🟢 position_protected" from main's engine or alt's?). An engine
    serving a named [accounts.NAME] table names it in its alerts, as a fleet of several does."""
    settings = bot_settings(tmp_path, api, TWO_SIM).only("alt")
    async with bot_fleet(settings) as fleet:
        alt = fleet.runtime("alt")
        assert alt is not None and fleet.names == ("alt",)
        await api.say(CHAT, "short sol")
        await eventually(lambda: bool(replies(api, "position_protected")), timeout=15, what="the alert")
        assert replies(api, "🟢 [alt] position_protected"), api.texts(CHAT)
        assert positions(fleet, "alt") == [("SOL/USDT:USDT", "short")]


async def test_health_names_the_account_whose_exchange_is_unreachable(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
) -> None:
    """alt's exchange stops answering (an outage, its key revoked) while main trades: /healthz
    turned 503 naming alt, yet Telegram's /health (every account) answered "[alt] ok: ready": it
    looked at the state alone, not at the alarms /healthz turns red on. alt's line says what is
    wrong, main's stays ok, and alt's is ok again once its exchange answers."""
    settings = bot_settings(tmp_path, api, TWO_SIM, "reconcile_interval = 0.05")
    async with bot_fleet(settings) as fleet:
        alt = fleet.runtime("alt")
        assert alt is not None and alt.sim is not None
        alt.sim.faults.fail_queries = True
        alt.sim.faults.unavailable_if = lambda _request: True
        await eventually(lambda: bool(alt.engine.status().alarms), what="alt's exchange seen unreachable")
        await api.say(CHAT, "/health")
        answers = lambda: [t for t in api.texts(CHAT) if t.startswith("[main] ")]  # noqa: E731
        await eventually(lambda: bool(answers()), timeout=15, what="the health of each")
        [answer] = answers()
        lines = {line.split()[0]: line for line in answer.split("\n\n")}
        assert lines["[main]"] == "[main] ok: ready", answer
        assert lines["[alt]"].startswith("[alt] unavailable: exchange unreachable"), answer

        alt.sim.faults.fail_queries = False
        alt.sim.faults.unavailable_if = None
        await eventually(lambda: not alt.engine.status().alarms, what="alt's exchange answering again")
        await api.say(CHAT, "/health @alt")
        await eventually(lambda: bool(replies(api, "[alt] ok: ready")), timeout=15, what="alt ok again")


async def test_an_account_that_cannot_start_is_told_once_then_its_recovery(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alt's database does not answer its first starts (its store is what fails: no engine, no
    outbox of its own yet) while main trades: the fleet retried it every few seconds and told
    nobody but the log, /healthz and /status, so the trader believed both accounts protected.
    Its failure reaches the chat, named, once for the whole episode (not once per retry), and its
    engine says so when it runs again."""
    import warden.bootstrap
    from warden.ports import StoreUnavailable

    real_open = warden.bootstrap.open_store
    tries: list[str] = []

    async def open_store(url: str, **kwargs: Any) -> Any:
        if kwargs.get("account") == "alt" and len(tries) < 4:
            tries.append("alt")
            raise StoreUnavailable(f"read installation id: {url} did not answer within 5s")
        return await real_open(url, **kwargs)

    monkeypatch.setattr(warden.bootstrap, "open_store", open_store)
    settings = bot_settings(tmp_path, api, TWO_SIM)
    async with bot_fleet(
        settings,
        restart_after=0.05,
        first_start_wait=0.5,
    ) as fleet:
        await eventually(lambda: bool(replies(api, "[alt] engine_start_failed")), timeout=15, what="told")
        [told] = replies(api, "[alt] engine_start_failed")
        assert "did not answer within 5s" in told and "starting again" in told, told
        await eventually(lambda: fleet.runtime("alt") is not None, timeout=30, what="alt started again")
        assert len(tries) == 4
        await eventually(lambda: bool(replies(api, "[alt] engine_started")), timeout=15, what="recovery")
        # once for the episode, not once per retry; main's own start said nothing of the kind
        assert len(replies(api, "[alt] engine_start_failed")) == 1, api.texts(CHAT)
        assert replies(api, "[main] engine_start_failed") == []


async def test_at_name_is_matched_in_any_case(api: FakeBotApi, fleet: Fleet) -> None:  # noqa: F811
    """`/kill @Alt` typed in a hurry was refused ("unknown account @Alt, nothing was sent"): no two
    accounts differ only in case, so the name is matched whatever its case, answered under its
    configured spelling; a name that is no account's is still refused with the list."""
    main, alt = fleet.runtimes["main"].engine, fleet.runtimes["alt"].engine
    await api.say(CHAT, "/kill @Alt")
    await eventually(lambda: bool(replies(api, "[alt] 🛑 kill switch on")), timeout=15, what="alt's kill")
    assert alt.status().controls.killed and not main.status().controls.killed
    assert replies(api, "unknown account") == []

    await api.say(CHAT, "/pause @MAIN")
    await eventually(lambda: bool(replies(api, "[main] paused")), timeout=15, what="pause main")
    assert main.status().controls.paused

    await api.say(CHAT, "short sol @ALT")  # refused by alt's kill switch, not as an unknown name
    await api.say(CHAT, "long eth @Mian")
    await eventually(lambda: bool(replies(api, "unknown account @Mian")), timeout=15, what="unknown")
    [unknown] = replies(api, "unknown account @Mian")
    assert "@main, @alt" in unknown and "nothing was sent" in unknown
    assert replies(api, "unknown account @ALT") == []


async def test_an_account_whose_settings_are_refused_is_told(tmp_path: Path, api: FakeBotApi) -> None:  # noqa: F811
    """alt's key variable is not set where warden runs (a new host, a typo in the unit file): the
    fleet refused its table at start and ran main alone, saying so on stderr only. The trader's
    chat is told, once, that alt is not running and will not be until its settings are fixed."""
    tables = TWO_SIM.replace(
        "sim_seed = 2\n",
        'exchange = "bybit"\napi_key_env = "ALT_KEY_UNSET"\napi_secret_env = "ALT_SECRET_UNSET"\n',
    ).replace('[accounts.alt]\nexchange = "sim"\n', "[accounts.alt]\n")
    settings = bot_settings(tmp_path, api, tables)
    async with bot_fleet(settings) as fleet:
        assert fleet.runtime("alt") is None and "ALT_KEY_UNSET" in fleet.failures["alt"]
        await eventually(lambda: bool(replies(api, "[alt] engine_start_failed")), timeout=15, what="told")
        [told] = replies(api, "[alt] engine_start_failed")
        assert "ALT_KEY_UNSET" in told and "until its settings are fixed" in told, told
        assert fleet.runtime("main") is not None


async def test_a_start_failure_told_late_never_comes_last_once_the_account_runs(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host's network drops: alt's database does not answer its first starts and Telegram is
    unreachable. alt starts once the database is back; Telegram comes back after. Its failure,
    retried by the fleet's herald since the outage began (backed off longer), reached the chat
    after alt's own engine_started: the chat's last word on alt was "account alt is not running
    ... warden keeps starting it again" while it ran. Whatever the chat shows last on alt says
    it runs."""
    import warden.bootstrap
    from warden.ports import StoreUnavailable

    real_open = warden.bootstrap.open_store
    tries: list[str] = []

    async def open_store(url: str, **kwargs: Any) -> Any:
        if kwargs.get("account") == "alt" and len(tries) < 2:
            tries.append("alt")
            raise StoreUnavailable(f"read installation id: {url} did not answer within 5s")
        return await real_open(url, **kwargs)

    heralds: list[Any] = []
    real_init = warden.bootstrap._StartHerald.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        heralds.append(self)

    monkeypatch.setattr(warden.bootstrap, "open_store", open_store)
    monkeypatch.setattr(warden.bootstrap._StartHerald, "__init__", init)
    api.down = True
    settings = bot_settings(tmp_path, api, TWO_SIM)
    async with bot_fleet(
        settings,
        restart_after=0.05,
        first_start_wait=0.5,
    ) as fleet:
        await eventually(lambda: fleet.runtime("alt") is not None, timeout=30, what="alt started again")
        alt = fleet.runtimes["alt"].engine
        await eventually(lambda: alt.status().state.value == "ready", timeout=30, what="alt ready")
        [herald] = [h for h in heralds if h.name == "alt"]

        def failures(deliverer: Any) -> int:
            return max((s.failures for s in deliverer.state.values()), default=0)

        # the herald has tried Telegram since the outage began; alt's engine only since it ran
        await eventually(
            lambda: herald.deliverer is not None and failures(herald.deliverer) >= 3,
            timeout=30,
            what="the herald backed off",
        )
        await eventually(lambda: failures(alt.deliverer) >= 1, timeout=30, what="alt's engine tried")
        api.down = False
        await eventually(
            lambda: bool(replies(api, "[alt] engine_started")), timeout=30, what="alt's engine_started"
        )
        await eventually(lambda: herald.deliverer.undelivered() == 0, timeout=60, what="the herald done")
        about_alt = [t for t in api.texts(CHAT) if "[alt]" in t]
        assert "engine_start_failed" not in about_alt[-1], about_alt
        # the outage is not lost: the chat hears alt could not start, and that it is over
        assert [t for t in about_alt if "could not start from" in t and "running again" in t], about_alt


async def test_a_close_signal_for_an_account_not_running_is_told(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alt's database does not answer (its engine cannot start; the fleet retries) when
    TradingView's exit for alt arrives: 503 not_ready to TradingView's server, which shows it
    nobody and never sends it again, and nothing to the trader, whose strategy is now flat while
    alt's position stays open on its stop. Told as a close refused while warden starts is
    (signal_refused), by the fleet (alt's engine does not exist)."""
    import httpx

    from tests.accounts.conftest import TOKEN as API_TOKEN
    from tests.accounts.test_kill_waiting import Outage
    from warden.entrypoints.api import create_app

    Outage(monkeypatch, "alt")
    settings = bot_settings(tmp_path, api, TWO_SIM)
    async with running_fleet(
        settings,
        price_feed=False,
        notifier=lambda _: RecordingNotifier(),
        restart_after=0.05,
        first_start_wait=0.5,
    ) as fleet:
        assert fleet.runtime("alt") is None
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://warden", headers={"Authorization": f"Bearer {API_TOKEN}"}
        ) as http:
            closed = await http.post(
                "/api/v1/signals?account=Alt", json={"symbol": "SOLUSDT", "action": "close"}
            )
        assert closed.status_code == 503, closed.text
        await eventually(lambda: bool(replies(api, "[alt] signal_refused")), timeout=15, what="told")
        [told] = replies(api, "[alt] signal_refused")
        assert "SOLUSDT" in told and "not running" in told and "stays open" in told, told


async def test_an_account_whose_engine_never_gets_ready_is_told_once_per_episode(
    tmp_path: Path,
    api: FakeBotApi,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alt's engine is created, its start fails (the exchange), then ends with an error, and the
    fleet starts it again, over and over: alt never runs. Told once for the episode, not once
    per cycle (a message every few seconds to 30 s, for as long as it lasts)."""
    from warden.ports import ExchangeUnavailable
    from warden.service.engine import Engine

    real_start = Engine.start
    starts: list[str] = []

    async def start(self: Engine) -> None:
        if self.ctx.config.account != "alt":
            return await real_start(self)
        starts.append("alt")
        if not getattr(self, "_tried", False):
            self._tried = True  # type: ignore[attr-defined]
            raise ExchangeUnavailable("exchange down")
        raise RuntimeError("a bug in recovery")

    monkeypatch.setattr(Engine, "start", start)
    settings = bot_settings(tmp_path, api, TWO_SIM)
    async with bot_fleet(
        settings,
        restart_after=0.05,
        first_start_wait=0.5,
    ) as fleet:
        await eventually(lambda: len(starts) >= 10, timeout=60, what="alt started five times")
        assert fleet.runtime("main") is not None
        await eventually(lambda: bool(replies(api, "[alt] engine_start_failed")), timeout=15, what="told")
        told = replies(api, "[alt] engine_start_failed")
        assert len(told) <= 2, told
