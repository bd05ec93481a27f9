"""The API token file: created once with mode 0600, reused after, never looser than the owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from warden.config import Settings
from warden.entrypoints import token as token_module
from warden.entrypoints.token import TokenError, TokenSource, ensure_token, find_token, token_matches


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings.load(data_dir=tmp_path / "data", **kw)


def test_first_start_creates_a_private_token_file(tmp_path: Path) -> None:
    """With no token configured, one is generated into <data_dir>/api-token with mode 0600."""
    s = settings(tmp_path)
    token = ensure_token(s)
    assert token.source is TokenSource.CREATED
    assert token.path == tmp_path / "data" / "api-token"
    assert stat.S_IMODE(token.path.stat().st_mode) == 0o600
    assert len(token.value.get_secret_value()) >= 32
    assert token.value.get_secret_value() not in token.describe()


def test_later_starts_reuse_the_file(tmp_path: Path) -> None:
    """The second start reads the same token back, and the CLI finds it too."""
    s = settings(tmp_path)
    first = ensure_token(s)
    second = ensure_token(s)
    assert second.source is TokenSource.FILE
    assert second.value == first.value
    assert find_token(s) == first.value


def test_configured_token_wins_and_writes_nothing(tmp_path: Path) -> None:
    """WARDEN_API_TOKEN (or the TOML file) is used as is; no file is created."""
    s = settings(tmp_path, api_token="configured-token")
    token = ensure_token(s)
    assert token.source is TokenSource.SETTINGS
    assert token.value.get_secret_value() == "configured-token"
    assert not s.token_file.exists()


def test_readable_token_file_is_refused(tmp_path: Path) -> None:
    """A token file other users can read is an error, not a silently shared secret."""
    s = settings(tmp_path)
    ensure_token(s).path.chmod(0o644)  # type: ignore[union-attr]
    with pytest.raises(TokenError, match="chmod 600"):
        find_token(s)


def test_no_token_anywhere(tmp_path: Path) -> None:
    """Before the first start, a client finds no token."""
    assert find_token(settings(tmp_path)) is None


def test_token_matches() -> None:
    """Only the exact token matches; nothing matches when no token is configured."""
    assert token_matches("abc", SecretStr("abc"))
    assert not token_matches("abd", SecretStr("abc"))
    assert not token_matches(None, SecretStr("abc"))
    assert not token_matches("abc", None)
    assert token_matches(" abc\n", SecretStr("abc"))  # copied with its newline: no token holds whitespace
    assert not token_matches("a bc", SecretStr("abc"))


def test_a_token_with_half_a_character_matches_nothing() -> None:
    """A lone surrogate (JSON's "\\ud800" read into a string) cannot be encoded: it made the
    comparison raise (a 500 on any call with such a `secret`); it is simply not the token."""
    assert not token_matches("\ud800", SecretStr("abc"))
    assert not token_matches("abc\udfff", SecretStr("abc"))


def test_a_start_that_dies_while_writing_the_token_leaves_no_empty_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dying between creating the token file and writing the token into it left an
    empty file: every later start (and the CLI) refused it ("is empty; delete it") until the
    trader deleted it by hand, and a CLI reading it meanwhile was refused too. The token is
    written whole before the file appears under its name."""
    s = settings(tmp_path)
    real_open = os.open

    def dies_after_creating(path: Any, flags: int, mode: int = 0o777) -> int:
        os.close(real_open(path, flags, mode))  # the file is made; the process dies before writing
        raise OSError("killed mid-write")

    with monkeypatch.context() as m:
        m.setattr(token_module.os, "open", dies_after_creating)
        with pytest.raises(OSError, match="killed mid-write"):
            ensure_token(s)
    assert find_token(s) is None  # nothing half-written under the token file's name
    created = ensure_token(s)
    assert created.source is TokenSource.CREATED
    assert find_token(s) == created.value


def test_a_filesystem_without_hard_links_still_gets_a_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the data directory's filesystem refuses hard links, the token file is created by
    name as before: a start still gets a private token file it reuses."""

    def refused(*_args: Any) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(token_module.os, "link", refused)
    s = settings(tmp_path)
    created = ensure_token(s)
    assert created.source is TokenSource.CREATED
    assert stat.S_IMODE((tmp_path / "data" / "api-token").stat().st_mode) == 0o600
    assert ensure_token(s).value == created.value
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["api-token"]


def test_a_full_disk_leaves_no_token_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (the disk is full) fails the start with the disk's error and leaves no
    token file, empty or not, under the token file's name (it used to be taken for a filesystem
    without hard links, whose way of creating the file left it empty)."""

    def full(*_args: Any) -> int:
        raise OSError(28, "No space left on device")

    s = settings(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(token_module.os, "write", full)
        with pytest.raises(OSError, match="No space left"):
            ensure_token(s)
    assert find_token(s) is None
    assert ensure_token(s).source is TokenSource.CREATED


def test_a_broken_symlink_at_the_token_path_is_named_not_called_a_race(tmp_path: Path) -> None:
    """A token path that is a symbolic link to nothing (a moved volume, a deleted secret) failed
    every start with "vanished while it was being created; start again", which no restart cures.
    It is named as what it is, with where it points, and nothing is created in its place."""
    s = settings(tmp_path)
    s.token_file.parent.mkdir(parents=True)
    target = tmp_path / "secrets" / "token"
    s.token_file.symlink_to(target)
    for attempt in (ensure_token, find_token):
        with pytest.raises(TokenError, match=f"symbolic link to {target}, which does not exist"):
            attempt(s)
    assert not target.exists()
    assert s.token_file.is_symlink()


def test_a_start_that_died_before_linking_its_staged_token_leaves_nothing_after_the_next(
    tmp_path: Path,
) -> None:
    """A start killed between writing its staged token (`.api-token.<pid>.<hex>`, a secret
    nobody uses) and giving it the token file's name left that file in the data directory for
    good. The next start removes a dead process's staged files (a live one's are its own
    business; other files are not touched)."""
    s = settings(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    dead = _a_dead_pid()
    left = data / f".api-token.{dead}.0badf00d"
    left.write_text("never-used\n")
    live = data / f".api-token.{os.getpid()}.1234abcd"
    live.write_text("being-written\n")
    other = data / ".api-token.notes"
    other.write_text("not ours\n")
    created = ensure_token(s)
    assert created.source is TokenSource.CREATED
    assert sorted(p.name for p in data.iterdir()) == sorted(["api-token", live.name, other.name])


def _a_dead_pid() -> int:
    """A process id that no process holds now: a child that has exited and been reaped."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
