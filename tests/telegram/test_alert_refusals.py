"""A Telegram chat that refuses every alert (the trader blocked the bot, a group removed it, the chat
id names no chat) against the fake Bot API: the other chats and sinks are not held up behind it,
the trader is told loudly and once (an error log line, a /status warning naming the chat), its
alerts are kept and it is tried again slowly, so unblocking the bot resumes delivery. A 429's
retry_after is honoured by the alert backoff.

Time is a FakeClock: delivery passes are run by hand, nothing sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from telegram import Bot
from tests.helpers import eventually
from tests.telegram.conftest import CHAT, bot_settings
from tests.telegram.fakebot import (
    BLOCKED,
    KICKED,
    NO_RIGHTS,
    NOT_ADMIN,
    NOT_ENOUGH_RIGHTS,
    TOKEN,
    TOPIC_CLOSED,
    FakeBotApi,
)
from warden.adapters.clock import FakeClock
from warden.adapters.memory import InMemoryStore
from warden.adapters.notify import RecordingNotifier
from warden.adapters.telegram import TelegramChannel, close_bot, make_bot
from warden.bootstrap import running
from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.entrypoints.telegram import run_bot
from warden.ports import Store
from warden.service.delivery import Deliverer, DeliveryConfig

REFUSING, FINE = 111, 222
SLOW = DeliveryConfig().refused_retry
"""Seconds between tries of a chat that refuses every alert."""


@dataclass
class Webhook:
    """Another sink beside Telegram, recording what it got."""

    name: str = "webhook"
    got: list[str] = field(default_factory=list)

    async def send(self, alert: Alert, *, silent: bool) -> None:
        self.got.append(alert.message)


@pytest.fixture
async def bot(api: FakeBotApi) -> AsyncIterator[Bot]:
    made = make_bot(TOKEN, api.url)
    yield made
    await close_bot(made)


def deliverer(bot: Bot, clock: FakeClock, *others: Any, store: Store | None = None) -> Deliverer:
    channels = [TelegramChannel(bot, REFUSING), TelegramChannel(bot, FINE), *others]
    return Deliverer(
        store or InMemoryStore(),
        clock,
        RecordingNotifier(),
        channels,
        config=DeliveryConfig(poll_interval=3600),
    )


def restart(before: Deliverer, bot: Bot, clock: FakeClock, *others: Any) -> Deliverer:
    """A new process's Deliverer over `before`'s outbox: nothing in memory."""
    return deliverer(bot, clock, *others, store=before.store)


async def raise_alert(d: Deliverer, clock: FakeClock, n: int) -> None:
    """Alert n, in the outbox as the engine writes it."""
    alert = Alert(AlertId(f"a{n}"), AlertKind.PAUSED, f"alert {n}", clock.now())
    await d.store.append_events([], [alert])


def messages(api: FakeBotApi, chat: int) -> list[str]:
    return [t.splitlines()[1] for t in api.texts(chat)]


def tries(api: FakeBotApi, description: str) -> int:
    return sum(1 for method, why in api.refused if method == "sendMessage" and why == description)


@pytest.mark.parametrize("description", [BLOCKED, KICKED])
async def test_a_chat_that_blocked_the_bot_holds_up_nothing_is_said_once_and_resumes_when_unblocked(
    api: FakeBotApi, bot: Bot, description: str
) -> None:
    clock, webhook = FakeClock(), Webhook()
    d = deliverer(bot, clock, webhook)
    api.forbidden[REFUSING] = description
    with capture_logs() as logs:
        for n in range(1, 5):  # four alerts a minute apart while the chat refuses
            await raise_alert(d, clock, n)
            await d.deliver_pending()
            assert messages(api, FINE) == [f"alert {i}" for i in range(1, n + 1)], "held up behind it"
            assert webhook.got == [f"alert {i}" for i in range(1, n + 1)]
            clock.advance(60)
    assert messages(api, REFUSING) == []
    assert tries(api, description) == 1, "tried again before the slow retry"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1, logs
    assert errors[0]["channel"] == f"telegram:{REFUSING}"
    assert description in errors[0]["error"]
    [warning] = d.warnings()
    assert f"telegram:{REFUSING}" in warning and description in warning
    assert "4 alerts kept" in warning
    assert len(await d.store.pending_alerts()) == 4, "kept in the outbox until the chat has them"

    del api.forbidden[REFUSING]  # the trader unblocks the bot
    clock.advance(SLOW - 4 * 60 - 1)
    await d.deliver_pending()
    assert messages(api, REFUSING) == [], "tried again before the slow retry"
    clock.advance(1)
    with capture_logs() as logs:
        await d.deliver_pending()
    assert messages(api, REFUSING) == ["alert 1", "alert 2", "alert 3", "alert 4"]
    assert d.warnings() == []
    assert await d.store.pending_alerts() == []
    assert [e["event"] for e in logs if e["log_level"] == "info"] == ["alert_channel_recovered"]


async def test_a_chat_not_found_keeps_its_alerts_and_is_retried_slowly(api: FakeBotApi, bot: Bot) -> None:
    """400 "chat not found" (a wrong id, a group the bot is not in) refuses every alert, not one:
    it used to drop each alert for that chat; they are kept and the chat tried again slowly."""
    clock, webhook = FakeClock(), Webhook()
    d = deliverer(bot, clock, webhook)
    api.missing_chats.add(REFUSING)
    await raise_alert(d, clock, 1)
    await d.deliver_pending()
    assert (messages(api, FINE), webhook.got) == (["alert 1"], ["alert 1"])
    [warning] = d.warnings()
    assert f"telegram:{REFUSING}" in warning and "Chat not found" in warning
    assert [a.id for a in await d.store.pending_alerts()] == ["a1"]
    api.missing_chats.clear()  # the bot is added to the group
    clock.advance(SLOW)
    await d.deliver_pending()
    assert messages(api, REFUSING) == ["alert 1"]
    assert await d.store.pending_alerts() == []


@pytest.mark.parametrize("description", [NO_RIGHTS, NOT_ENOUGH_RIGHTS, NOT_ADMIN, TOPIC_CLOSED])
async def test_a_chat_the_bot_may_not_post_in_keeps_its_alerts_until_its_rights_are_back(
    api: FakeBotApi, bot: Bot, description: str
) -> None:
    """A group that muted the bot, or a channel that took its right to post away, answers 400 to
    every message, whatever the message: it refuses the chat, not the alert. Each alert used to be
    dropped for that chat for good (DeliveryRejected), so giving the bot its rights back brought
    none of the stops and fills it missed; they are kept and the chat tried again slowly."""
    clock, webhook = FakeClock(), Webhook()
    d = deliverer(bot, clock, webhook)
    api.no_rights[REFUSING] = description
    with capture_logs() as logs:
        for n in (1, 2):
            await raise_alert(d, clock, n)
            await d.deliver_pending()
            clock.advance(60)
    assert (messages(api, FINE), webhook.got) == (["alert 1", "alert 2"], ["alert 1", "alert 2"])
    assert tries(api, description) == 1, "tried again before the slow retry"
    [error] = [e for e in logs if e["log_level"] == "error"]
    assert error["event"] == "alert_channel_refusing" and error["channel"] == f"telegram:{REFUSING}"
    [warning] = d.warnings()
    assert f"telegram:{REFUSING}" in warning and "2 alerts kept" in warning
    assert [a.id for a in await d.store.pending_alerts()] == ["a1", "a2"]
    del api.no_rights[REFUSING]  # an admin gives the bot its rights back
    clock.advance(SLOW)
    await d.deliver_pending()
    assert messages(api, REFUSING) == ["alert 1", "alert 2"]
    assert d.warnings() == []
    assert await d.store.pending_alerts() == []


async def test_a_restart_does_not_send_again_what_the_other_chats_had_while_one_refused(
    api: FakeBotApi, bot: Bot
) -> None:
    """While one chat refuses, its alerts stay undelivered in the outbox (kept for it); the other
    chat and the webhook have them. A restart read them from the outbox as new and sent every one
    to every channel again: a chat left blocked (or a stale id in telegram_chat_ids) made each
    restart repeat, to the trader's working chat, every alert since (old stop and fill alerts
    read as news). What each channel has is kept with the alert: a restart sends them only to the
    chat that lacks them."""
    clock, webhook = FakeClock(), Webhook()
    first = deliverer(bot, clock, webhook)
    api.forbidden[REFUSING] = BLOCKED
    for n in (1, 2, 3):
        await raise_alert(first, clock, n)
        await first.deliver_pending()
    assert messages(api, FINE) == webhook.got == ["alert 1", "alert 2", "alert 3"]

    restarted = restart(first, bot, clock, webhook)  # the same outbox, a new process: nothing in memory
    await restarted.deliver_pending()
    assert messages(api, FINE) == ["alert 1", "alert 2", "alert 3"], "sent again after the restart"
    assert webhook.got == ["alert 1", "alert 2", "alert 3"], "sent again after the restart"
    [warning] = restarted.warnings()
    assert f"telegram:{REFUSING}" in warning and "3 alerts kept" in warning
    del api.forbidden[REFUSING]
    clock.advance(SLOW)
    await restarted.deliver_pending()
    assert messages(api, REFUSING) == ["alert 1", "alert 2", "alert 3"]
    assert messages(api, FINE) == ["alert 1", "alert 2", "alert 3"]
    assert await restarted.store.pending_alerts() == []


async def test_a_429_retry_after_is_honoured(api: FakeBotApi, bot: Bot) -> None:
    """Telegram's flood control says when to come back: not sooner (the backoff's first second)."""
    clock = FakeClock()
    d = Deliverer(InMemoryStore(), clock, RecordingNotifier(), [TelegramChannel(bot, FINE)])
    api.flood, api.retry_after = 1, 30
    await raise_alert(d, clock, 1)
    await d.deliver_pending()
    for _ in range(29):
        clock.advance(1)
        await d.deliver_pending()
    assert messages(api, FINE) == []
    assert api.calls.count("sendMessage") == 1, "sent again before retry_after"
    clock.advance(1)
    await d.deliver_pending()
    assert messages(api, FINE) == ["alert 1"]


async def test_status_names_the_chat_that_blocked_the_bot(api: FakeBotApi, tmp_path: Path) -> None:
    """A running warden with two chats, one of which blocked the bot: the other gets its alerts and
    its /status says which chat refuses and why."""
    api.forbidden[REFUSING] = BLOCKED
    settings = bot_settings(tmp_path, api, telegram_chat_ids=f"{CHAT},{REFUSING}")
    async with running(settings, price_feed=False, beside=[run_bot]) as rt:
        await eventually(
            lambda: any("engine_started" in t for t in api.texts(CHAT)), timeout=15, what="engine_started"
        )
        await eventually(lambda: bool(rt.engine.status().warnings), timeout=15, what="a warning")
        await api.say(CHAT, "/status")
        await eventually(
            lambda: any(f"telegram:{REFUSING}" in t for t in api.texts(CHAT)), timeout=15, what="/status"
        )
    [status] = [t for t in api.texts(CHAT) if f"telegram:{REFUSING}" in t]
    [line] = [x for x in status.splitlines() if f"telegram:{REFUSING}" in x]
    assert line.startswith("warning: ") and BLOCKED in line
    assert api.texts(REFUSING) == []


async def test_an_alert_queued_while_the_database_was_down_keeps_its_channels_once_written(
    api: FakeBotApi, bot: Bot
) -> None:
    """Found attacking the kept channels: an alert raised while the database is down is queued
    (the ledger writes it once the database is back) and offered from memory at once. A delivery
    pass between the database's return and the queued write recorded its channels on no row (an
    update of nothing succeeds) and took them as kept; once the row was written they were never
    recorded, so a restart sent it again to the chat and the webhook that had it."""
    clock, webhook = FakeClock(), Webhook()
    first = deliverer(bot, clock, webhook)
    api.forbidden[REFUSING] = BLOCKED
    alert = Alert(AlertId("q1"), AlertKind.STOP_REPLACED, "queued alert", clock.now())
    first.offer(alert)  # queued: not in the outbox yet
    await first.deliver_pending()
    assert messages(api, FINE) == webhook.got == ["queued alert"]
    await first.store.append_events([], [alert])  # the queued write lands
    await first.deliver_pending()

    restarted = restart(first, bot, clock, webhook)
    await restarted.deliver_pending()
    assert messages(api, FINE) == ["queued alert"], "sent again after the restart"
    assert webhook.got == ["queued alert"], "sent again after the restart"
    assert restarted.undelivered() == 1  # still kept for the chat that refuses


async def test_a_critical_alert_after_a_blocked_chat_s_backlog_is_not_sent_last(
    api: FakeBotApi, bot: Bot
) -> None:
    """A chat that had blocked the bot for hours holds 30 alerts; a position then loses its stop.
    Unblocked, the chat got the 30 first, oldest first at Telegram's pace, and 'UNPROTECTED' 31st.
    Now one summary of the 30 (how many, which kind, where to read them), then the critical one;
    the chat that never refused still gets each alert, and the outbox keeps none undelivered."""
    clock = FakeClock()
    d = deliverer(bot, clock)
    api.forbidden[REFUSING] = BLOCKED
    for n in range(1, 31):
        await raise_alert(d, clock, n)
        clock.advance(60)
    await d.deliver_pending()
    critical = Alert(AlertId("crit"), AlertKind.PROTECTION_FAILED, "stop refused: UNPROTECTED", clock.now())
    await d.store.append_events([], [critical])
    await d.deliver_pending()
    assert messages(api, FINE)[-1] == "stop refused: UNPROTECTED"
    assert len(messages(api, FINE)) == 31

    del api.forbidden[REFUSING]  # the trader unblocks the bot
    clock.advance(SLOW)
    await d.deliver_pending()
    texts = api.texts(REFUSING)
    assert len(texts) == 2, texts
    summary, unprotected = texts
    assert "alerts_summarised" in summary.splitlines()[0], summary
    assert "30 older alerts (30 paused)" in summary and "warden events" in summary, summary
    assert unprotected.startswith("🔴 CRITICAL protection_failed"), unprotected
    assert await d.store.pending_alerts() == []
