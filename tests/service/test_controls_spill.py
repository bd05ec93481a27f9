"""A control change the database cannot store (an outage) is kept in a file on this host until it
can: a crash before the database is back no longer loses a kill switch. On SQLite and PostgreSQL."""

from __future__ import annotations

import errno
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.service.harness import SOL, Harness
from warden.adapters import files
from warden.adapters.spill import FileControlsSpill
from warden.domain.alerts import AlertKind
from warden.domain.controls import Controls, KeptControls
from warden.domain.position import PositionStatus
from warden.ports import StoreUnavailable
from warden.service.commands import EngineState, NotHolder, TradingRefused


def alerts(h: Harness, kind: AlertKind) -> list[str]:
    return [a.message for a in h.notifier.alerts if a.kind is kind]


async def test_a_kill_set_during_an_outage_survives_a_crash_before_the_database_is_back(
    harness: Harness,
) -> None:
    """The seed's nightmare in small: the trader hits kill while the database is down, warden
    crashes, and the restarted engine must still refuse entries — then store the kill."""
    harness.store.down = True
    await harness.engine.kill(reason="outage")
    [said] = alerts(harness, AlertKind.KILL_ON)
    assert f"kept in {harness.spill}" in said, said
    assert any("kept in" in w for w in harness.engine.status().warnings), harness.engine.status().warnings
    assert harness.spill.exists()

    await harness.restart()  # a crash: memory gone; the database is back for the new engine
    status = harness.engine.status()
    assert status.controls.killed and not status.accepting_signals
    with pytest.raises(TradingRefused, match="kill switch"):
        await harness.open("long", symbol=SOL)
    assert any("restored from" in m for m in alerts(harness, AlertKind.KILL_ON)), harness.notifier.alerts
    assert (await harness.store.load_controls()).killed  # stored at start
    assert not harness.spill.exists()
    assert not harness.engine.controls.unsaved and harness.engine.status().warnings == []

    await harness.engine.resume()
    await harness.restart()
    assert harness.engine.status().accepting_signals


async def test_a_resume_set_during_an_outage_survives_a_crash_too(harness: Harness) -> None:
    """The spill holds the trader's latest change, whichever it is: a stored kill, then a resume
    the database could not store, is resumed after the crash (and stored)."""
    await harness.engine.kill()
    harness.store.down = True
    await harness.engine.resume()
    await harness.restart()
    assert harness.engine.status().accepting_signals
    assert not (await harness.store.load_controls()).killed
    assert (await harness.open("long", symbol=SOL)).status is PositionStatus.PROTECTED


async def test_the_spill_is_cleared_once_the_database_stores_the_change(harness: Harness) -> None:
    harness.store.down = True
    await harness.engine.pause(reason="outage")
    assert harness.spill.exists()
    await harness.engine.maintain_once()  # still down: nothing changes, the file stays
    assert harness.spill.exists() and harness.engine.controls.unsaved
    harness.store.down = False
    await harness.engine.maintain_once()
    assert not harness.spill.exists()
    assert (await harness.store.load_controls()).paused
    await harness.engine.resume()
    await harness.restart()
    assert harness.engine.status().accepting_signals  # nothing left behind to restore


async def test_a_spill_the_database_moved_on_from_is_ignored(harness: Harness) -> None:
    """A file left from a change made over an older database state (its removal failed, or
    another engine stored a change since) must not bring an old kill back."""
    await harness.engine.kill()
    over = (await harness.store.load_controls()).changed_at
    await harness.engine.resume()  # stored: the database moved on from `over`
    stale = Controls(
        paused=True, killed=True, reason="old", changed_at=datetime.now(UTC) + timedelta(hours=1)
    )
    FileControlsSpill(harness.spill).save(KeptControls(stale, over, ""))
    await harness.restart()
    assert harness.engine.status().accepting_signals
    assert not harness.spill.exists()


async def test_a_clock_behind_the_databases_change_does_not_drop_a_kill(harness: Harness) -> None:
    """Found attacking the spill: the file won only if its change was later by the clock. The
    database's controls stamped ahead (another host's fast clock, or this clock stepped back),
    then a kill during an outage and a crash: the kill was dropped, after the trader was told a
    restart keeps it. What the file's change was made over decides, not clocks."""
    ahead = Controls(reason="set on a host whose clock runs 10 minutes fast")
    await harness.store.save_controls(replace(ahead, changed_at=datetime.now(UTC) + timedelta(minutes=10)))
    await harness.restart()  # the engine reads what the database holds
    harness.store.down = True
    await harness.engine.kill(reason="outage")
    await harness.restart()
    assert harness.engine.status().controls.killed, harness.engine.status()
    assert not harness.engine.status().accepting_signals


async def test_a_file_from_another_database_is_not_restored(harness: Harness) -> None:
    """Found attacking the spill: warden pointed at a fresh database (or testnet and live sharing
    ./data and one account name) restored the other's file, a resume over a kill included."""
    await harness.engine.kill(reason="this database")
    over = (await harness.store.load_controls()).changed_at
    theirs = Controls(reason="", changed_at=datetime.now(UTC))
    FileControlsSpill(harness.spill).save(KeptControls(theirs, over, "zz9zz9"))  # another installation
    await harness.restart()
    assert harness.engine.status().controls.killed
    assert not harness.spill.exists()


async def test_a_change_refused_because_another_engine_took_the_account_says_so(harness: Harness) -> None:
    """Found attacking the spill: a kill this engine could not store because the account's lease
    moved on answered 'the database is unavailable', while the holder went on trading."""
    harness.store.fenced = True
    with pytest.raises(NotHolder, match="not in force: another engine holds this account"):
        await harness.engine.kill()  # not reported as done: the holder trades on
    assert harness.engine.status().state is EngineState.READ_ONLY  # and this one stands down at once
    [said] = alerts(harness, AlertKind.KILL_ON)
    assert "another engine holds this account" in said and "unavailable" not in said, said
    assert any("another engine holds" in w for w in harness.engine.status().warnings)
    assert not harness.spill.exists()


async def test_an_unreadable_spill_pauses_entries_and_says_why(harness: Harness) -> None:
    """What the trader set while the database was down is unknown: entries stay paused until they
    look and resume."""
    harness.spill.write_text("{not json")
    await harness.restart()
    status = harness.engine.status()
    assert not status.accepting_signals and status.controls.paused
    [said] = alerts(harness, AlertKind.PAUSED)
    [aside] = harness.spill.parent.glob("controls.json.unreadable-*")
    assert "could not be read" in said and f"kept as {aside}" in said, said
    assert aside.read_text() == "{not json" and not harness.spill.exists()  # kept for the trader
    assert (await harness.store.load_controls()).paused
    await harness.engine.resume()
    await harness.restart()
    assert harness.engine.status().accepting_signals


async def test_when_the_spill_cannot_be_written_the_trader_is_told_a_restart_loses_it(
    harness: Harness, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    harness.spill = blocker / "controls.json"  # its directory is a file: every write fails
    await harness.restart()
    harness.store.down = True
    await harness.engine.kill()
    [said] = alerts(harness, AlertKind.KILL_ON)
    assert "NOT stored" in said and "restart before the database is back loses it" in said, said
    assert any("loses them" in w for w in harness.engine.status().warnings)


def full_disk(*args: object, **kwargs: object) -> tuple[int, str]:
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_change_the_spill_cannot_keep_does_not_let_an_older_spilled_one_come_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found attacking the spill: a resume kept in the file, then a kill the file could not take
    (a full disk) — the trader is told a restart loses the kill, so it must go back to what the
    database holds (the stored kill), not to the older resume still in the file."""
    await harness.engine.kill(reason="stored")
    harness.store.down = True
    await harness.engine.resume()
    assert harness.spill.exists()
    monkeypatch.setattr(files.tempfile, "mkstemp", full_disk)  # every later write fails
    await harness.engine.kill(reason="not kept")
    [_, said] = alerts(harness, AlertKind.KILL_ON)
    assert "NOT stored" in said, said
    await harness.restart()
    assert harness.engine.status().controls.killed
    assert not harness.engine.status().accepting_signals
    assert not any("restored from" in a.message for a in harness.notifier.alerts), harness.notifier.alerts


async def test_a_kill_while_the_start_cannot_read_the_database_survives_the_start(harness: Harness) -> None:
    """Found attacking the kill of every account: an engine whose start fails because its database
    does not answer is registered (its first attempt is over) and takes a kill — in force at once,
    kept in the spill, the trader told so. Its start then read the database's controls over it
    and dropped the spilled kill as stale (made over no known state, while the database held one),
    and the account went on to trade as soon as the database was back."""
    await harness.engine.pause(reason="a week ago")
    await harness.engine.resume()  # the database holds a controls row, as every used account does
    await harness.stop()
    await harness.start(ready=False)
    real_load = harness.store.load_controls

    async def load_controls() -> Controls:
        harness.store._check()
        return await real_load()

    harness.store.load_controls = load_controls  # type: ignore[method-assign]
    harness.store.down = True
    with pytest.raises(StoreUnavailable):
        await harness.engine.start()  # the first attempt fails; the runtime is served meanwhile
    await harness.engine.kill(reason="outage at start")
    assert harness.engine.status().controls.killed and harness.spill.exists()

    harness.store.down = False
    await harness.engine.start()  # the database is back: the retried start succeeds
    status = harness.engine.status()
    assert status.controls.killed and not status.accepting_signals, status
    with pytest.raises(TradingRefused, match="kill switch"):
        await harness.open("long", symbol=SOL)
    assert (await harness.store.load_controls()).killed  # stored at the start
    assert not harness.spill.exists()


async def test_a_kill_while_the_start_cannot_read_the_database_survives_a_crash(harness: Harness) -> None:
    """The same kill, then warden dies before the database is back: the next start restores it."""
    await harness.engine.pause(reason="a week ago")
    await harness.engine.resume()
    await harness.stop()
    await harness.start(ready=False)
    harness.store.down = True
    await harness.engine.kill(reason="outage at start")
    assert harness.spill.exists()
    await harness.stop()
    await harness.start()  # the database is back for the new engine
    status = harness.engine.status()
    assert status.controls.killed and not status.accepting_signals, status
    assert (await harness.store.load_controls()).killed
