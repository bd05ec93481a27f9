"""The controls' second durable place: one small JSON file per account beside the API token
(`<data_dir>/controls-<account>.json`), written only while the database cannot store a change.

Written whole (`files.write_whole`): after a crash the file holds the old change or the new one,
never half of one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from warden.adapters.files import fsync_dir, set_aside, write_whole
from warden.domain.controls import Controls, KeptControls
from warden.ports import StoreUnavailable

VERSION = 1


class FileControlsSpill:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    def save(self, kept: KeptControls) -> None:
        body = json.dumps(_to_json(kept), sort_keys=True).encode()
        try:
            write_whole(self.path, body)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc

    def load(self) -> KeptControls | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        try:
            return _from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreUnavailable(f"{self.path} is not a controls file warden wrote: {exc}") from exc

    def clear(self) -> None:
        _remove(self.path)

    def set_aside(self) -> str:
        try:
            return str(set_aside(self.path))
        except OSError as exc:
            raise StoreUnavailable(f"cannot move {self.path} aside: {exc}") from exc


def _to_json(kept: KeptControls) -> dict[str, Any]:
    c = kept.controls
    return {
        "version": VERSION,
        "paused": c.paused,
        "killed": c.killed,
        "daily_loss_until": _time(c.daily_loss_until),
        "reason": c.reason,
        "changed_at": _time(c.changed_at),
        "over": _time(kept.over),
        "over_known": kept.over_known,
        "installation_id": kept.installation_id,
    }


def _from_json(d: Any) -> KeptControls:
    if not isinstance(d, dict) or d.get("version") != VERSION:
        raise ValueError("unknown format")
    paused, killed, reason, installation = d["paused"], d["killed"], d["reason"], d["installation_id"]
    if not all(isinstance(v, bool) for v in (paused, killed)) or not all(
        isinstance(v, str) for v in (reason, installation)
    ):
        raise TypeError("paused and killed must be true/false, reason and installation_id text")
    changed_at = _parse(d["changed_at"])
    if changed_at is None:
        raise ValueError("changed_at is missing")
    over_known = d.get("over_known", True)  # absent: written before it was kept
    if not isinstance(over_known, bool):
        raise TypeError("over_known must be true/false")
    controls = Controls(paused, killed, _parse(d["daily_loss_until"]), reason, changed_at)
    return KeptControls(controls, _parse(d["over"]), installation, over_known)


def _time(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _parse(raw: Any) -> datetime | None:
    if raw is None:
        return None
    t = datetime.fromisoformat(raw)
    if t.tzinfo is None:
        raise ValueError("times must carry their UTC offset")
    return t


class FileWaitingKill:
    """`<data_dir>/kill-<account>.json`: a kill of every account made while this account's engine
    was not running, until that engine has stored it. Read once, when made (warden's start); a
    file that cannot be read stands for a kill (what it held is unknown: the safe side)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reason = self._read()

    @property
    def where(self) -> str:
        return str(self.path)

    def pending(self) -> str | None:
        return self._reason

    def mark(self, reason: str) -> None:
        self._reason = reason

    def save(self) -> None:
        if self._reason is None:
            return
        body = json.dumps({"version": VERSION, "reason": self._reason}, sort_keys=True).encode()
        try:
            write_whole(self.path, body)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc

    def forget(self) -> None:
        self._reason = None
        _remove(self.path)

    def _read(self) -> str | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"a kill of every account may be waiting: {self.path} cannot be read ({exc})"
        try:
            body = json.loads(raw)
            reason = body["reason"] if isinstance(body, dict) and body.get("version") == VERSION else None
            if not isinstance(reason, str):
                raise ValueError("not a kill warden wrote")
        except (ValueError, KeyError) as exc:
            return f"a kill of every account may be waiting: {self.path} is unreadable ({exc})"
        return reason


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StoreUnavailable(f"cannot remove {path}: {exc}") from exc
