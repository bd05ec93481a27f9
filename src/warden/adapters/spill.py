"""The controls' second durable place: one small JSON file per account beside the API token
(`<data_dir>/controls-<account>.json`), written only while the database cannot store a change.

Written whole (`files.write_whole`): after a crash the file holds the old change or the new one,
never half of one.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from warden.adapters.files import JsonFile
from warden.domain.controls import Controls, KeptControls
from warden.ports import StoreUnavailable

VERSION = 1


class FileControlsSpill(JsonFile):
    what = "a controls file"

    def save(self, kept: KeptControls) -> None:
        self.write(_to_json(kept))

    def load(self) -> KeptControls | None:
        body = self.read()
        if body is None:
            return None
        try:
            return _from_json(body)
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreUnavailable(self.not_ours(exc)) from exc

    def clear(self) -> None:
        self.remove()


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


class FileWaitingKill(JsonFile):
    """`<data_dir>/kill-<account>.json`: a kill of every account (or a kill or a pause naming this
    account) made while this account's engine was not running, until that engine has stored it.
    Read once, when made (warden's start); a file that cannot be read stands for a kill (what it
    held is unknown: the safe side), as does one without `"pause": true`."""

    what = "a kept kill"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._pause_only = False
        self._forgets = 0
        self._reason = self._load()

    def pending(self) -> str | None:
        return self._reason

    @property
    def pause_only(self) -> bool:
        return self._reason is not None and self._pause_only

    def mark(self, reason: str, *, pause_only: bool = False) -> None:
        if pause_only and self._reason is not None and not self._pause_only:
            return  # a kill waits: a pause adds nothing to it
        self._reason, self._pause_only = reason, pause_only

    def save(self) -> None:
        """Write what is kept. Run in a thread (Fleet._keep) while the account's engine may take
        it from memory and `forget` it: a forget made while the file was being written is done
        again after, or the file would outlive it (the next start of warden taking it again)."""
        while True:
            reason, pause_only, forgets = self._reason, self._pause_only, self._forgets
            if reason is None:
                return
            body: dict[str, Any] = {"version": VERSION, "reason": reason}
            if pause_only:
                body["pause"] = True
            self.write(body)
            if self._forgets == forgets:
                return
            if self._reason is None:  # forgotten meanwhile: its remove may have come first
                self.remove()
                return
            # forgotten and kept again meanwhile: what is kept now is written

    def forget(self) -> None:
        self._reason, self._pause_only = None, False
        self._forgets += 1
        self.remove()

    def _load(self) -> str | None:
        unknown = "a kill of every account may be waiting"
        try:
            body = self.read()
        except StoreUnavailable as exc:
            return f"{unknown}: {exc}"
        if body is None:
            return None
        reason = body.get("reason") if isinstance(body, dict) and body.get("version") == VERSION else None
        if not isinstance(reason, str):
            return f"{unknown}: {self.not_ours('no reason in it')}"
        self._pause_only = isinstance(body, dict) and body.get("pause") is True
        return reason
