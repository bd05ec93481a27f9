"""The API token: from the settings (`WARDEN_API_TOKEN`, the TOML file) or `<data_dir>/api-token`.

`warden run` creates the file (mode 0600) on first start when no token is
configured and reuses it afterwards; the CLI reads it from the same place.
The token itself is never logged or printed, except by `warden token`.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from warden.config import Settings

TOKEN_ENV = "WARDEN_API_TOKEN"


class TokenSource(StrEnum):
    SETTINGS = "settings"  # WARDEN_API_TOKEN, the TOML file or a flag
    FILE = "file"  # <data_dir>/api-token, written by an earlier start
    CREATED = "created"  # <data_dir>/api-token, written just now


@dataclass(frozen=True, slots=True)
class ApiToken:
    value: SecretStr
    source: TokenSource
    path: Path | None

    def describe(self) -> str:
        """How a user gets the token, without the token."""
        if self.source is TokenSource.SETTINGS:
            return f"API token: from {TOKEN_ENV} / the config file"
        verb = "created in" if self.source is TokenSource.CREATED else "stored in"
        path = self.path.absolute() if self.path else None
        return f"API token: {verb} {path} (print it with `warden token`)"


class TokenError(Exception):
    """The token file exists but cannot be used."""


def ensure_token(settings: Settings) -> ApiToken:
    """The configured token, else the one in the token file, creating the file if needed."""
    if settings.api_token is not None:
        return ApiToken(settings.api_token, TokenSource.SETTINGS, None)
    path = settings.token_file
    _sweep_staged(path)
    existing = read_token_file(path)
    if existing is not None:
        return ApiToken(existing, TokenSource.FILE, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    if not _publish(path, value):  # another process won the race: use its token
        raced = read_token_file(path)
        if raced is None:
            raise TokenError(f"{path} vanished while it was being created; start again") from None
        return ApiToken(raced, TokenSource.FILE, path)
    return ApiToken(SecretStr(value), TokenSource.CREATED, path)


def _publish(path: Path, value: str) -> bool:
    """Write the token whole (mode 0600, synced) under a name of its own, then give it the token
    file's name unless that exists (False: another process made it first). A process that dies
    on the way leaves no token file, never an empty one that every later start would refuse."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, (value + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(staged, path)  # atomic, and refuses an existing name
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: create the name itself, then write
            return _create(path, value)
    finally:
        staged.unlink(missing_ok=True)
    return True


def _sweep_staged(path: Path) -> None:
    """Remove the staged tokens (`_publish`'s `.<name>.<pid>.<hex>`) of processes that died
    before removing theirs: never-used secrets, or second links to the token file."""
    try:
        staged = list(path.parent.glob(f".{path.name}.*.*"))
    except OSError:
        return
    for candidate in staged:
        pid, _, suffix = candidate.name[len(path.name) + 2 :].partition(".")
        if not (pid.isdigit() and len(suffix) == 8 and not _alive(int(pid))):
            continue
        with contextlib.suppress(OSError):  # not ours to remove (another owner, read-only): leave it
            candidate.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _create(path: Path, value: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return True


def find_token(settings: Settings) -> SecretStr | None:
    """The token a client should send: the configured one, else the file's; None if neither."""
    if settings.api_token is not None:
        return settings.api_token
    return read_token_file(settings.token_file)


def read_token_file(path: Path) -> SecretStr | None:
    """The token in `path`, None if the file does not exist; group/world-readable files are refused."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():  # a link to nothing: creating "it" would never succeed
            raise TokenError(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist;"
                " restore its target or delete the link to have a new token generated"
            ) from None
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"{path} is readable by other users; run `chmod 600 {path}`")
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise TokenError(f"{path} is empty; delete it to have a new token generated")
    return SecretStr(value)


def token_matches(given: str | None, expected: SecretStr | None) -> bool:
    """Constant-time comparison; no configured token means nothing matches.

    Whitespace around what is given is dropped: no token holds any, and a token copied from a
    terminal comes with its newline (into `/?token=`, TradingView's `"secret"`), where refusing the
    right token loses a signal in silence (a 401 alerts nobody) or sends the trader hunting."""
    if given is None or expected is None:
        return False
    try:
        offered = given.strip().encode()
    except UnicodeEncodeError:  # half a character (a lone surrogate): no token holds one
        return False
    return hmac.compare_digest(offered, expected.get_secret_value().encode())
