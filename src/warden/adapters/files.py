"""Small files warden keeps in its data directory, written whole: to a temporary file, flushed to
disk, renamed over the old one, and the directory flushed too. After a crash the file holds the
old content or the new, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.ports import StoreUnavailable


def write_whole(path: Path, body: bytes) -> None:
    """Replace `path`'s content with `body`, durably (owner-only permissions); raises OSError.

    The temporary file is this write's own (`<name>.<random>.tmp`): two writers of one file at
    once (two threads, two processes) each rename a whole body, never one spliced from both; and
    it is removed when the write fails (a full disk keeps no half-written leftovers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")  # 0600
    tmp = Path(name)
    try:
        try:
            view = memoryview(body)
            while view:  # os.write may write less than it is given
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(f"{tmp}: nothing written")
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename or an unlink in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(path: Path) -> Path:
    """Rename an unreadable `path` out of the way (`<name>.unreadable-<UTC time>`), for the trader
    to look at; where it went. Raises OSError."""
    aside = path.with_name(f"{path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    os.replace(path, aside)
    fsync_dir(path.parent)
    return aside


class JsonFile:
    """One small JSON document in the data directory, written whole. Every failure is
    StoreUnavailable naming the file; `what` says what the file is, for those messages."""

    what = "a file"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    def write(self, body: dict[str, Any]) -> None:
        try:
            write_whole(self.path, json.dumps(body, sort_keys=True).encode())
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc

    def read(self) -> Any:
        """The parsed document; None when there is no file."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise StoreUnavailable(self.not_ours(exc)) from exc

    def not_ours(self, why: object) -> str:
        return f"{self.path} is not {self.what} warden wrote: {why}"

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise StoreUnavailable(f"cannot remove {self.path}: {exc}") from exc

    def set_aside(self) -> str:
        try:
            return str(set_aside(self.path))
        except OSError as exc:
            raise StoreUnavailable(f"cannot move {self.path} aside: {exc}") from exc
