"""End to end: warden's bot against a fake Bot API server on 127.0.0.1, in warden's own loop.

A message in opens a position and a message comes out; a stranger is ignored; /close all is
confirmed by a callback; an alert raised while Telegram is down arrives when it is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.helpers import eventually
from tests.telegram.conftest import CHAT, STRANGER, bot_settings
from tests.telegram.fakebot import TOKEN, FakeBotApi
from warden.adapters.telegram import TelegramChannel, close_bot, make_bot
from warden.bootstrap import Runtime, running
from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.domain.position import PositionStatus
from warden.domain.values import PositionId
from warden.entrypoints.telegram import run_bot


@pytest.fixture
async def runtime(tmp_path: Path, api: FakeBotApi) -> AsyncIterator[Runtime]:
    async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
        yield rt


def replies(api: FakeBotApi, needle: str) -> list[str]:
    return [t for t in api.texts(CHAT) if needle in t]


async def test_a_message_in_opens_a_position_and_a_message_comes_out(
    api: FakeBotApi, runtime: Runtime
) -> None:
    """`short sol` from the allowlisted chat: the position opens protected and the chat is told."""
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="the opened reply")
    [p] = await runtime.store.list_positions()
    assert p.status is PositionStatus.PROTECTED and p.origin == "telegram"
    [reply] = replies(api, "✅")
    assert reply.startswith(f"✅ {p.id} SOL/USDT:USDT short") and "resting" in reply
    await api.say(CHAT, "/positions")
    await eventually(lambda: bool(replies(api, "resting ✅")), timeout=15, what="/positions")


async def test_a_stranger_is_ignored_without_a_reply_and_logged_once(
    api: FakeBotApi, runtime: Runtime
) -> None:
    """A chat not on the allowlist gets no answer and opens nothing; it is logged once, not per message."""
    with capture_logs() as logs:
        await api.say(STRANGER, "short sol")
        await api.say(STRANGER, "/kill flatten")
        await api.say(CHAT, "/health")
        await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="the allowlisted reply")
    assert api.to(STRANGER) == []
    assert await runtime.store.list_positions(include_closed=True) == []
    assert not runtime.engine.status().controls.killed
    ignored = [e for e in logs if e["event"] == "telegram_stranger_ignored"]
    assert [e["chat_id"] for e in ignored] == [STRANGER]


async def test_close_all_is_confirmed_by_a_callback(api: FakeBotApi, runtime: Runtime) -> None:
    """/close all answers with a button; pressing it (callback query) closes every position."""
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="opened")
    await api.say(CHAT, "/close all")
    await eventually(lambda: bool(replies(api, "at market?")), timeout=15, what="the confirmation")
    [ask] = [s for s in api.to(CHAT) if "at market?" in s.text]
    assert [b["text"] for b in ask.buttons] == ["Close all 1", "Cancel"]
    assert await runtime.store.list_positions() != []
    await api.press(CHAT, ask.message_id, ask.buttons[0]["callback_data"])
    await eventually(lambda: bool(replies(api, "closed: realized PnL")), timeout=15, what="closed")
    assert await runtime.store.list_positions() == []
    assert runtime.sim is not None and runtime.sim.core.positions() == []
    assert api.answered, "the button press was answered"


async def test_an_alert_raised_during_an_outage_arrives_after_it(
    api: FakeBotApi, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    """Telegram down: trading goes on, /status warns; the alert raised meanwhile arrives once it is back.
    The token never appears in what warden logs."""
    await eventually(lambda: bool(replies(api, "engine_started")), timeout=15, what="engine_started alert")
    api.down = True
    await runtime.engine.pause("during the outage")
    await eventually(lambda: bool(runtime.engine.status().warnings), timeout=15, what="a /status warning")
    assert any("telegram" in w.lower() for w in runtime.engine.status().warnings)
    assert replies(api, "during the outage") == []
    api.down = False
    await eventually(lambda: bool(replies(api, "during the outage")), timeout=15, what="delivered after")
    [alert] = replies(api, "during the outage")
    assert alert.startswith("🟠 paused")
    await eventually(lambda: runtime.engine.deliverer.undelivered() == 0, timeout=15, what="marked")
    assert await runtime.store.pending_alerts() == []
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err


async def test_a_command_sent_while_warden_was_away_is_not_executed(
    api: FakeBotApi, runtime: Runtime
) -> None:
    """`short sol` sent ten minutes before warden read it is answered, not executed: nothing opens."""
    await api.say(CHAT, "short sol", age=600)
    await eventually(lambda: bool(replies(api, "not executed")), timeout=15, what="the refusal")
    assert replies(api, "not executed")[0].startswith("not executed: sent 10 min ago")
    assert await runtime.store.list_positions(include_closed=True) == []
    assert runtime.sim is not None and runtime.sim.core.open_orders() == []


async def test_a_command_addressed_to_another_bot_is_ignored(api: FakeBotApi, runtime: Runtime) -> None:
    """In a group (privacy mode off) warden sees commands meant for other bots: `/close@OtherBot
    all` and `/kill@OtherBot flatten` were run as warden's own. A command whose @suffix names
    another bot is ignored (no reply, nothing done); one naming warden's own username (any case,
    as getMe gives it) or none still works."""
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="opened")
    [opened] = await runtime.store.list_positions()
    with capture_logs() as logs:
        await api.say(CHAT, "/close@OtherBot all")
        await api.say(CHAT, f"/close@OtherBot {opened.id}")
        await api.say(CHAT, "/kill@OtherBot flatten")
        await api.say(CHAT, "/pause@OtherBot", age=600)  # not even the "sent while away" reply
        await eventually(
            lambda: len([e for e in logs if e["event"] == "telegram_other_bot_ignored"]) == 4,
            timeout=15,
            what="the commands for another bot ignored",
        )
    assert {e["addressee"] for e in logs if e["event"] == "telegram_other_bot_ignored"} == {"OtherBot"}
    await api.say(CHAT, "/health@Warden_Test_Bot")
    await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="/health@warden's own name")
    await api.say(CHAT, "/positions")
    await eventually(lambda: bool(replies(api, "resting ✅")), timeout=15, what="/positions")
    answers = [t for t in api.texts(CHAT) if not t.startswith(("🟢", "🟠", "🔴"))]  # not alerts
    assert len(answers) == 3, answers  # opened, ok: ready, the position: nothing else
    assert [p.id for p in await runtime.store.list_positions()] == [opened.id]
    controls = runtime.engine.status().controls
    assert not (controls.killed or controls.paused)
    assert runtime.sim is not None
    [held] = runtime.sim.core.positions()
    assert held.qty == opened.remaining


async def test_a_button_pressed_while_the_bot_was_away_still_closes_and_says_so(
    api: FakeBotApi, runtime: Runtime
) -> None:
    """The trader presses "Close all" and warden receives the press 20 s later (Telegram or warden
    was briefly away; the confirmation holds for 2 minutes). The Bot API refuses to answer a callback
    query that old ("query is too old"): the press was dropped on that refusal, before anything was
    done, so nothing was closed and the chat was told nothing. The press is served and answered."""
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="opened")
    await api.say(CHAT, "/close all")
    await eventually(lambda: bool(replies(api, "at market?")), timeout=15, what="the confirmation")
    [ask] = [s for s in api.to(CHAT) if "at market?" in s.text]
    await api.press(CHAT, ask.message_id, ask.buttons[0]["callback_data"], age=20)
    await eventually(lambda: bool(replies(api, "closed: realized PnL")), timeout=15, what="closed")
    assert await runtime.store.list_positions() == []
    assert runtime.sim is not None and runtime.sim.core.positions() == []
    assert [method for method, _ in api.refused] == ["answerCallbackQuery"]


async def test_a_reply_telegram_asks_to_send_later_is_sent_later(api: FakeBotApi, runtime: Runtime) -> None:
    """Telegram answers a reply 429 Too Many Requests with retry_after (a chat's flood limit, a long
    reply's chunks sent in a burst): the reply was dropped (logged), so the trader who sent
    `/kill flatten` or `short sol` never heard what was done. It is sent again after retry_after."""
    await eventually(lambda: bool(replies(api, "engine_started")), timeout=15, what="engine_started alert")
    await eventually(lambda: runtime.engine.deliverer.undelivered() == 0, timeout=15, what="alerts sent")
    api.flood = 1
    await api.say(CHAT, "/health")
    await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="the reply")
    assert api.refused == [("sendMessage", "Too Many Requests: retry after 1")]


async def test_an_edited_message_and_a_strangers_press_run_nothing(api: FakeBotApi, runtime: Runtime) -> None:
    """Editing `/health` into `/kill flatten` does not run the edit (it is answered "not executed",
    test_an_edited_command_is_answered_not_executed_not_met_with_silence); a stranger pressing the
    allowlisted chat's "Close all" closes nothing."""
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="opened")
    health = await api.say(CHAT, "/health")
    await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="/health")
    await api.edit(CHAT, health, "/kill flatten")
    await api.say(CHAT, "/close all")
    await eventually(lambda: bool(replies(api, "at market?")), timeout=15, what="the confirmation")
    [ask] = [s for s in api.to(CHAT) if "at market?" in s.text]
    await api.press(STRANGER, ask.message_id, ask.buttons[0]["callback_data"])
    await api.say(CHAT, "/status")
    await eventually(lambda: bool(replies(api, "state: ready")), timeout=15, what="/status")
    assert replies(api, "kill switch") == [] and replies(api, "closed") == []
    assert api.to(STRANGER) == []
    assert not runtime.engine.status().controls.killed
    assert len(await runtime.store.list_positions()) == 1
    await api.press(CHAT, ask.message_id, ask.buttons[0]["callback_data"])
    await eventually(lambda: bool(replies(api, "closed: realized PnL")), timeout=15, what="closed")


async def test_a_long_alert_keeps_what_it_ends_with(api: FakeBotApi) -> None:
    """A close_failed alert whose exchange error carries a whole HTML error page (ccxt puts the body
    in its message): the text was cut at 4000 characters, so the chat got the page's start and lost
    what the alert ends with, whether the position is UNPROTECTED, and which position it is. The
    middle of the message is shortened instead; the message fits Telegram's 4096 characters."""
    why = "ExchangeNotAvailable: binance POST /fapi/v1/order 503 " + "<html>" + "<p>busy</p>" * 800
    message = (
        f"SOL/USDT:USDT short 1.5: close failed ({why}) and no stop rests: the position is UNPROTECTED"
        " on the exchange; warden keeps trying a stop and a close; close it by hand if this goes on"
    )
    alert = Alert(AlertId("a1"), AlertKind.CLOSE_FAILED, message, datetime.now(UTC), PositionId("p-42"))
    bot = make_bot(TOKEN, api.url)
    try:
        await TelegramChannel(bot, CHAT, "main").send(alert, silent=False)
    finally:
        await close_bot(bot)
    [sent] = api.texts(CHAT)
    assert sent.startswith("🔴 CRITICAL [main] close_failed\nSOL/USDT:USDT short 1.5: close failed (")
    assert sent.endswith(
        "the position is UNPROTECTED on the exchange; warden keeps trying a stop and a"
        " close; close it by hand if this goes on\nposition p-42"
    )
    assert len(sent) <= 4096


async def test_a_reply_met_by_a_telegram_blip_is_sent_again(tmp_path: Path, api: FakeBotApi) -> None:
    """The Bot API answers the reply to `short sol` 500 once (its own trouble, a second later it
    answers again): the reply was dropped (only a 429 was sent again), so the position opened and
    the trader — with `position_protected` routed off, as the README's example does — heard
    nothing and would send `short sol` again. The reply is sent again after a short pause."""
    settings = bot_settings(tmp_path, api, alert_routes={"position_protected": "off"})
    async with running(settings, price_feed=False, beside=[run_bot]) as runtime:
        await eventually(lambda: bool(replies(api, "engine_started")), timeout=15, what="engine_started")
        await eventually(lambda: runtime.engine.deliverer.undelivered() == 0, timeout=15, what="alerts sent")
        api.failing_sends = 1
        await api.say(CHAT, "short sol")
        await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="the opened reply")
        [p] = await runtime.store.list_positions()
        assert replies(api, "✅")[0].startswith(f"✅ {p.id} SOL/USDT:USDT short")
        assert api.refused == [("sendMessage", "Internal Server Error")]


async def test_a_webhook_left_on_the_bot_does_not_keep_commands_away(tmp_path: Path, api: FakeBotApi) -> None:
    """A token that had a webhook set (an earlier tool, a relay tried once): the Bot API answers
    every getUpdates 409 "can't use getUpdates method while webhook is active". warden took that
    for Telegram being unreachable and retried forever: alerts kept arriving (sendMessage works
    with a webhook), so the bot looked alive, while `/kill` and every other command went to the
    webhook and got no answer. warden polls, so it removes the webhook, as python-telegram-bot's
    own polling does on start (pending updates kept), says so in the log, and serves the chat."""
    api.webhook = "https://relay.example/hook"
    with capture_logs() as logs:
        async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as runtime:
            await api.say(CHAT, "/kill")
            await eventually(
                lambda: bool(replies(api, "kill switch on")), timeout=15, what="the kill's answer"
            )
            assert runtime.engine.status().controls.killed
    assert api.webhook is None
    [removed] = [e for e in logs if e["event"] == "telegram_webhook_removed"]
    assert "webhook is active" in removed["error"]


GROUP, TRADER, MEMBER = -100777, 4242, 5151
"""An allowlisted group (where the alerts go), the trader, and another member of it."""


async def test_in_a_group_only_the_listed_users_command(tmp_path: Path, api: FakeBotApi) -> None:
    """A trader who shares alerts with a group must allowlist the group, and every member of it
    could then trade the account: another member's `/kill flatten` closed the trader's position,
    and pressing the trader's own "Close all" button closed everything. With `telegram_user_ids`
    only those users are served: another member's command or press runs nothing and gets no
    answer (logged once); the trader's, in the same group, run."""
    settings = bot_settings(tmp_path, api, telegram_chat_ids=str(GROUP), telegram_user_ids=str(TRADER))
    with capture_logs() as logs:
        async with running(settings, price_feed=False, beside=[run_bot]) as runtime:
            group = lambda needle: [t for t in api.texts(GROUP) if needle in t]  # noqa: E731
            await api.say(GROUP, "short sol", user_id=TRADER)
            await eventually(lambda: bool(group("✅")), timeout=15, what="the trader's open")
            await api.say(GROUP, "/kill flatten", user_id=MEMBER)
            await api.say(GROUP, "long eth", user_id=MEMBER)
            await api.say(GROUP, "/close all", user_id=TRADER)
            await eventually(lambda: bool(group("at market?")), timeout=15, what="the confirmation")
            [ask] = [s for s in api.to(GROUP) if "at market?" in s.text]
            await api.press(GROUP, ask.message_id, ask.buttons[0]["callback_data"], user_id=MEMBER)
            await api.say(GROUP, "/health", user_id=TRADER)
            await eventually(lambda: bool(group("ok: ready")), timeout=15, what="the trader's /health")
            assert group("kill switch") == [] and group("closed") == []
            assert not runtime.engine.status().controls.killed
            [p] = await runtime.store.list_positions()
            assert p.symbol == "SOL/USDT:USDT"
            await api.press(GROUP, ask.message_id, ask.buttons[0]["callback_data"], user_id=TRADER)
            await eventually(lambda: bool(group("closed: realized PnL")), timeout=15, what="closed")
    ignored = [e for e in logs if e["event"] == "telegram_user_ignored"]
    assert [(e["chat_id"], e["user_id"]) for e in ignored] == [(GROUP, MEMBER)]


async def test_another_program_polling_the_token_is_told_to_the_chat_and_stays_on_status(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """The bot's token is polled by another program too (freqtrade's Telegram bot on a reused
    token, a second warden started by hand): Telegram hands each update to one of them, so some of
    the trader's commands — a /kill among them — go to the other and are never run by warden. The
    Bot API says so with a 409 "terminated by other getUpdates request", which warden took for an
    outage: a warning logged, and a /status warning cleared by the next poll that answered. The
    chat is told at once (once), the log has an error, and /status keeps naming the conflict
    while it goes on, a poll that answers in between or not."""
    api.other_poller = True
    with capture_logs() as logs:
        async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as runtime:
            told = lambda: replies(api, "another program polls this bot")  # noqa: E731
            await eventually(lambda: bool(told()), timeout=15, what="the chat told")
            await api.say(CHAT, "/health")
            await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="a poll that answered")
            [warning] = [w for w in runtime.engine.status().warnings if "another program" in w]
            assert "commands sent to the bot may reach it instead of warden" in warning
            assert len(told()) == 1
    assert [e["log_level"] for e in logs if e["event"] == "telegram_other_poller"] == ["error"]


async def test_a_kill_sent_while_warden_was_away_is_applied_without_its_flatten(
    api: FakeBotApi, runtime: Runtime
) -> None:
    """The trader sends /kill flatten while warden is down (a crash, a restart, a deploy); warden
    comes back ten minutes later and answered "not executed: sent 10 min ago … send it again" — and
    went on taking signals meanwhile, the one thing the trader had asked it to stop. Stopping
    entries late is the safe side, so a late /kill (or /pause) is applied and said to be late;
    its flatten is not (a close at a price ten minutes on, of positions perhaps opened since): the
    reply says to send /kill flatten again. A late trading command still runs nothing."""
    await api.say(CHAT, "short sol")
    await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="opened")
    await api.say(CHAT, "/kill flatten", age=600)
    killed = lambda: [t for t in replies(api, "kill switch on") if t.startswith("🛑")]  # not the alert  # noqa: E731
    await eventually(lambda: bool(killed()), timeout=15, what="the kill's answer")
    [said] = killed()
    assert "sent 10 min ago" in said and "/kill flatten again" in said, said
    assert runtime.engine.status().controls.killed
    assert len(await runtime.store.list_positions()) == 1  # not flattened
    await api.say(CHAT, "/resume")
    await eventually(lambda: bool(replies(api, "resumed")), timeout=15, what="resumed")
    await api.say(CHAT, "/pause fomc", age=300)
    await eventually(lambda: bool(replies(api, "paused: no new entries")), timeout=15, what="the pause")
    assert runtime.engine.status().controls.paused
    await api.say(CHAT, "/resume", age=300)
    await eventually(lambda: bool(replies(api, "not executed")), timeout=15, what="the late resume")
    assert runtime.engine.status().controls.paused  # a late resume is not the safe side
    await api.say(CHAT, "/kill now", age=300)  # a late typo is refused as one on time, not "applied"
    await eventually(lambda: bool(replies(api, "usage")), timeout=15, what="the late typo's answer")
    assert replies(api, "usage") == ["usage: /kill [flatten]\n(sent 5 min ago while warden was away)"]
    assert not runtime.engine.status().controls.killed


async def test_an_edited_command_is_answered_not_executed_not_met_with_silence(
    api: FakeBotApi, runtime: Runtime
) -> None:
    """The trader types `/kil`, is told it is unknown, and edits it into `/kill`: the edit was not
    even received (only new messages were asked for), so it met silence — which reads as done, and
    the kill switch was off. An edited command is still not run (it may be an old message edited),
    but is answered at once: send it as a new message. An edited message that is no command (a
    group's chatter) gets no answer."""
    typo = await api.say(CHAT, "/kil")
    await eventually(lambda: bool(replies(api, "unknown command")), timeout=15, what="the typo's answer")
    chatter = await api.say(CHAT, "see you at the close")
    await api.edit(CHAT, chatter, "see you tomorrow")
    await api.edit(CHAT, typo, "/kill")
    await eventually(lambda: bool(replies(api, "edited")), timeout=15, what="the edit's answer")
    [said] = replies(api, "edited")
    assert said.startswith("not executed: an edited message is not run"), said
    assert "send it as a new message" in said
    assert not runtime.engine.status().controls.killed
    await api.say(CHAT, "/health")
    await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="/health")
    assert len(replies(api, "edited")) == 1  # the chatter's edit: no answer


async def test_an_alert_delivered_late_says_when_it_was_raised(api: FakeBotApi) -> None:
    """An alert raised two hours before Telegram took it (Telegram down, warden restarted, a chat
    that had blocked the bot): the message carried no time, and Telegram shows when it arrived, so
    "close_failed … UNPROTECTED" read as happening now, two hours after warden had closed the
    position. A late alert says when it was raised and how long ago; one on time is unchanged."""
    now = datetime.now(UTC)
    late = Alert(
        AlertId("a1"), AlertKind.CLOSE_FAILED, "SOL: UNPROTECTED", now - timedelta(hours=2, minutes=5)
    )
    on_time = Alert(AlertId("a2"), AlertKind.STOP_FILLED, "SOL: stop filled", now)
    bot = make_bot(TOKEN, api.url)
    try:
        for alert in (late, on_time):
            await TelegramChannel(bot, CHAT).send(alert, silent=False)
    finally:
        await close_bot(bot)
    first, second = api.texts(CHAT)
    head = first.splitlines()[0]
    assert head == f"🔴 CRITICAL close_failed · raised {late.at:%H:%M:%S} UTC, 2 h 5 min ago", head
    assert first.splitlines()[1] == "SOL: UNPROTECTED"
    assert second == "🟢 stop_filled\nSOL: stop filled"
