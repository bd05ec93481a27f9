"""A command runs at most once, even when warden dies between executing it and telling Telegram
it was taken (the offset of the next getUpdates): the bot records the highest update id it took,
durably, before it runs any update of a batch, and starts from that record.

The fake Bot API plays the crash with `lose_confirmations`: no offset drops an update, so a new
bot that does not say where it stopped is given the same update again. Stacking is on in these
tests, so nothing but the bot stands between a command given twice and a second position (with
stacking off the database refuses a second `long sol` only while the first is still open).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.helpers import eventually
from tests.telegram.conftest import CHAT, answers, bot_settings
from tests.telegram.fakebot import TOKEN, FakeBotApi
from warden.adapters.telegram import FileUpdateRecord
from warden.bootstrap import Runtime, running
from warden.domain.values import Side
from warden.entrypoints.telegram import run_bot
from warden.ports import StoreUnavailable, TakenUpdate


def replies(api: FakeBotApi, needle: str) -> list[str]:
    return [t for t in api.texts(CHAT) if needle in t]


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


# ------------------------------------------------------------------------- attacks


def record_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / f"telegram-{TOKEN.split(':')[0]}.json"


def warnings_of(runtime: Runtime) -> str:
    return " | ".join(runtime.engine.status().warnings)


async def test_a_torn_record_is_set_aside_said_and_what_was_sent_before_the_start_is_not_run(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """An unreadable record (torn, foreign): warden starts, logs it (an error; /status shows it until
    a new record is written), moves it aside, and does not run blindly what waited in Telegram from
    before the start (it may have run it already): it answers "send it again", naming why. A
    command sent after the start runs."""
    record = record_file(tmp_path)
    record.parent.mkdir(parents=True)
    record.write_text("{torn")
    api.lose_confirmations = True
    await api.say(CHAT, "long sol", age=5)  # within STALE: only the missing record stops it
    with capture_logs() as logs:
        async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
            await eventually(lambda: bool(replies(api, "not executed")), timeout=15, what="the refusal")
            [refusal] = replies(api, "not executed")
            assert refusal.startswith("not executed: sent before warden started") and "unreadable" in refusal
            assert await rt.store.list_positions(include_closed=True) == []
            await api.say(CHAT, "long sol")
            await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="the command sent after")
            assert "unreadable" not in warnings_of(rt)  # a new record is written: /status is clear again
    assert any(e["event"] == "telegram_record_unreadable" and e["log_level"] == "error" for e in logs)
    [aside] = record.parent.glob(f"{record.name}.unreadable-*")
    assert aside.read_text() == "{torn"
    assert json.loads(record.read_text())["update_id"] == api.last_update_id


async def test_without_a_record_a_command_sent_before_the_first_start_is_not_run(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """No record for this bot (its first start here, another token, a warden from before records):
    a command waiting from before the start could have run already; it is answered, not run."""
    await api.say(CHAT, "long sol", age=5)
    async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
        await eventually(lambda: bool(replies(api, "not executed")), timeout=15, what="the refusal")
        assert "no record of the commands this bot took" in replies(api, "not executed")[0]
        assert await rt.store.list_positions(include_closed=True) == []


async def test_nothing_runs_while_the_record_cannot_be_written_and_it_runs_once_it_can(
    tmp_path: Path, api: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record cannot be written (disk full, read-only): the batch does not run, /status and
    the chat say why, and it is tried again; once the record is written the command runs, once."""
    attempts: list[int] = []
    broken = True
    save = FileUpdateRecord.save

    def failing_save(self: FileUpdateRecord, taken: TakenUpdate) -> None:
        attempts.append(taken.update_id)
        if broken:
            raise StoreUnavailable(f"cannot write {self.path}: [Errno 28] No space left on device")
        save(self, taken)

    monkeypatch.setattr(FileUpdateRecord, "save", failing_save)
    async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
        await api.say(CHAT, "long sol")
        await eventually(lambda: len(attempts) >= 2, timeout=15, what="the record tried again")
        assert "Telegram commands are not executed: cannot record" in warnings_of(rt)
        assert await rt.store.list_positions(include_closed=True) == []
        await eventually(lambda: bool(answers(api)), timeout=15, what="the trader told")
        assert [a.split(":")[0] for a in answers(api)] == ["not executed"]  # told, nothing else
        broken = False
        await eventually(lambda: bool(replies(api, "✅")), timeout=15, what="the command, once recorded")
        assert len(await rt.store.list_positions()) == 1
        assert "cannot record" not in warnings_of(rt)
    assert set(attempts) == {api.last_update_id}


async def test_a_kill_sent_while_the_record_cannot_be_written_is_answered_not_met_with_silence(
    tmp_path: Path, api: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full: nothing runs, but the trader who sends /kill (or /status, which cannot run
    either) hears so in the chat at once, once per command however often the batch is retried,
    and where to stop trading meanwhile; silence would leave them believing warden was killed."""
    attempts: list[int] = []

    def failing_save(self: FileUpdateRecord, taken: TakenUpdate) -> None:
        attempts.append(taken.update_id)
        raise StoreUnavailable(f"cannot write {self.path}: [Errno 28] No space left on device")

    monkeypatch.setattr(FileUpdateRecord, "save", failing_save)
    async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
        await api.say(CHAT, "/kill")
        await eventually(lambda: bool(answers(api)), timeout=15, what="the trader told")
        await eventually(lambda: len(attempts) >= 3, timeout=15, what="the record tried again")
        [told] = answers(api)
        assert told.startswith("not executed")
        assert "No space left on device" in told
        assert "warden kill" in told
        assert not rt.engine.controls.state.killed
        await api.say(CHAT, "/status")
        await eventually(lambda: len(answers(api)) == 2, timeout=15, what="the second command told")
        await eventually(lambda: attempts.count(api.last_update_id) >= 2, timeout=15, what="retried")
        assert len(answers(api)) == 2


async def test_without_a_record_a_kill_sent_before_the_first_start_is_applied(
    tmp_path: Path, api: FakeBotApi
) -> None:
    """A /kill waiting from before a start without a record may have run already; running it
    again only stops entries again, the safe side, so it is applied (said so), not refused."""
    await api.say(CHAT, "/kill flatten", age=5)
    async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
        killed = lambda: [a for a in answers(api) if "kill switch on" in a]  # noqa: E731
        await eventually(lambda: bool(killed()), timeout=15, what="the kill")
        [said] = killed()
        assert "applied although sent before warden started" in said, said
        assert "/kill flatten again" in said
        assert rt.engine.status().controls.killed


@pytest.mark.parametrize(("recorded_ago", "runs"), [(timedelta(days=8), True), (timedelta(minutes=1), False)])
async def test_update_ids_that_started_again_lower_run_once_the_record_is_old(
    tmp_path: Path, api: FakeBotApi, recorded_ago: timedelta, runs: bool
) -> None:
    """Telegram numbers a bot's updates anew (at random, lower too) after a week without any: a
    record from eight days ago does not make the bot deaf to the new, lower ids; one from a minute
    ago still skips them (they can only be a replay)."""
    record = record_file(tmp_path)
    FileUpdateRecord(record).save(TakenUpdate(10_000, datetime.now(UTC) - recorded_ago))
    api.ids_restarted = True
    with capture_logs() as logs:
        async with running(bot_settings(tmp_path, api), price_feed=False, beside=[run_bot]) as rt:
            await api.say(CHAT, "/health")
            if runs:
                await eventually(lambda: bool(replies(api, "ok: ready")), timeout=15, what="the new id run")
                assert json.loads(record.read_text())["update_id"] == api.last_update_id
            else:
                await eventually(lambda: api.last_update_id in api.delivered, timeout=15, what="given")
                await eventually(
                    lambda: any(e["event"] == "telegram_update_taken_already_skipped" for e in logs),
                    timeout=15,
                    what="skipped",
                )
                assert answers(api) == []
            assert rt.engine.status().state.value == "ready"
