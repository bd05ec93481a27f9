"""`files.write_whole`: the file holds the old content or the new, whole, whatever the writes around
it do: two writers of one file at once (a kill of every account kept for an account from the API
and from Telegram at the same moment, each in its own thread)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from warden.adapters import files
from warden.adapters.spill import FileWaitingKill


def test_two_writers_of_one_file_at_once_leave_one_whole_and_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second writer runs entirely between the first's open and write of its temporary file
    (threads scheduled so): each is kept whole or replaced whole, never spliced together."""
    path = tmp_path / "kill-main.json"
    real_write = os.write
    interleaved: list[int] = []

    def write(fd: int, body: bytes) -> int:
        if not interleaved:
            interleaved.append(fd)
            other = FileWaitingKill(path)
            other.mark("from the API: a much longer reason than the other one")
            other.save()
        return real_write(fd, body)

    monkeypatch.setattr(files.os, "write", write)
    first = FileWaitingKill(path)
    first.mark("from Telegram")
    first.save()  # raised StoreUnavailable: its temporary file was the other's, renamed away
    monkeypatch.undo()
    assert FileWaitingKill(path).pending() in (
        "from Telegram",
        "from the API: a much longer reason than the other one",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kill-main.json"]


def test_a_short_write_is_completed_not_renamed_in_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.write may write less than it is given (a network file system, a disk filling up under a
    large body): the rest is written before the rename, or the write fails."""
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, body: real_write(fd, bytes(body)[:7]))
    path = tmp_path / "kill-main.json"
    kill = FileWaitingKill(path)
    kill.mark("from Telegram")
    kill.save()
    monkeypatch.undo()
    assert FileWaitingKill(path).pending() == "from Telegram"


def test_a_kept_pause_forgotten_while_it_is_written_stays_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pause for alt, kept while its engine was being created (Fleet._keep: marked, then saved
    in a thread), is taken by that engine from memory and stored in the database, which forgets
    it (ControlPanel._store), while the slow disk is still writing the file. The file must not
    outlive the forget: the next start of warden would pause alt again with the old reason, days
    after the trader resumed it."""
    path = tmp_path / "kill-alt.json"
    waiting = FileWaitingKill(path)
    waiting.mark("alt misbehaves", pause_only=True)
    real_write = os.write
    forgot: list[bool] = []

    def write(fd: int, body: bytes) -> int:
        if not forgot:  # the engine took it and forgot it meanwhile
            forgot.append(True)
            waiting.forget()
        return real_write(fd, body)

    monkeypatch.setattr(files.os, "write", write)
    waiting.save()
    monkeypatch.undo()
    assert forgot and waiting.pending() is None
    assert FileWaitingKill(path).pending() is None, path.read_text()
