"""Small files warden keeps in its data directory, written whole: to a temporary file, flushed to
disk, renamed over the old one, and the directory flushed too. After a crash the file holds the
old content or the new, never half of either."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


def write_whole(path: Path, body: bytes) -> None:
    """Replace `path`'s content with `body`, durably (owner-only permissions); raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
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
