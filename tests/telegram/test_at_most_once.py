"""A command runs at most once, even when warden dies between executing it and telling Telegram
it was taken (the offset of the next getUpdates): the bot records the highest update id it took,
durably, before it runs any update of a batch, and starts from that record.

The fake Bot API plays the crash with `lose_confirmations`: no offset drops an update, so a new
bot that does not say where it stopped is given the same update again. Stacking is on in these
tests, so nothing but the bot stands between a command given twice and a second position (with
stacking off the database refuses a second `long sol` only while the first is still open).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from tests.helpers import eventually
from tests.telegram.conftest import CHAT, bot_settings
from tests.telegram.fakebot import FakeBotApi
from warden.adapters.telegram import BADGES
from warden.bootstrap import Runtime, running
from warden.domain.values import Side
from warden.entrypoints.telegram import run_bot


def replies(api: FakeBotApi, needle: str) -> list[str]:
    return [t for t in api.texts(CHAT) if needle in t]


def answers(api: FakeBotApi) -> list[str]:
    """What the bot said to commands (not the alerts, which start with their badge)."""
    return [t for t in api.texts(CHAT) if not t.startswith(tuple(BADGES.values()))]


async def settled(api: FakeBotApi, update_id: int, answers_before: int, logs: list[dict[str, Any]]) -> None:
    """When `update_id` was handed to the bot again, wait for what the bot did with it: ran it
    again (an answer: on a bot without the record, a second ✅) or skipped it (logged)."""

    def skipped() -> bool:
        return any(
            e["event"] == "telegram_update_taken_already_skipped" and update_id in e["update_ids"]
            for e in logs
        )

    if api.delivered.count(update_id) > 1:
        await eventually(
            lambda: skipped() or len(answers(api)) > answers_before,
            timeout=15,
            what="the replay run or skipped",
        )


async def one_long_sol(runtime: Runtime) -> None:
    positions = await runtime.store.list_positions(include_closed=True)
    assert [(str(p.symbol), p.side) for p in positions] == [("SOL/USDT:USDT", Side.LONG)], positions
    assert runtime.sim is not None
    [held] = runtime.sim.core.positions()
    assert held.qty == positions[0].remaining, (held, positions[0])


async def test_a_command_taken_before_a_crash_is_not_run_again_by_the_next_warden(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """`long sol` is executed; warden stops before Telegram hears it was taken; the next warden over
    the same data directory is not given it again (it says where it stopped) and opens nothing."""
    api.lose_confirmations = True
    settings = bot_settings(tmp_path, api, allow_stacking=True)
    async with running(settings, price_feed=False, beside=[run_bot]):
        await api.say(CHAT, "long sol")
        long_sol = api.last_update_id
        await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="the opened reply")
    assert api.delivered == [long_sol]
    api.down = True  # until the next warden is ready: an update it is given runs, not refused
    with capture_logs() as logs:
        async with running(settings, price_feed=False, beside=[run_bot]) as second:
            api.down = False
            await api.say(CHAT, "/health")
            await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="the later command")
            await settled(api, long_sol, 2, logs)
            await one_long_sol(second)
    assert len(replies(api, "✅")) == 1
    assert api.delivered.count(long_sol) == 1  # still in Telegram's queue, but not asked for again


async def test_an_update_given_again_is_not_run_again(tmp_path: Path, api: FakeBotApi) -> None:
    """A Bot API that hands an update taken already to the same bot again (whatever the offset):
    the bot skips every update whose id is not above the one it recorded."""
    api.lose_confirmations = True
    settings = bot_settings(tmp_path, api, allow_stacking=True)
    with capture_logs() as logs:
        async with running(settings, price_feed=False, beside=[run_bot]) as rt:
            await api.say(CHAT, "long sol")
            long_sol = api.last_update_id
            await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="the opened reply")
            api.redeliver()
            await api.say(CHAT, "/health")
            await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="the later command")
            assert api.delivered.count(long_sol) == 2  # handed over again: the bot had to skip it
            await settled(api, long_sol, 2, logs)
            await one_long_sol(rt)
    assert len(replies(api, "✅")) == 1
