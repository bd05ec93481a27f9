"""The controls' spill file: what it keeps reads back the same, a torn or foreign file is refused
(StoreUnavailable, never defaults), and a write leaves no temporary file behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from warden.adapters.spill import FileControlsSpill
from warden.domain.controls import Controls
from warden.ports import StoreUnavailable

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_what_is_kept_reads_back_the_same_and_clear_forgets_it(tmp_path: Path) -> None:
    spill = FileControlsSpill(tmp_path / "sub" / "controls-main.json")
    assert spill.load() is None
    kept = Controls(
        paused=True, killed=True, daily_loss_until=NOW + timedelta(hours=3), reason="é x", changed_at=NOW
    )
    spill.save(kept)
    assert spill.load() == kept
    later = Controls(changed_at=NOW + timedelta(seconds=1))
    spill.save(later)
    assert spill.load() == later
    assert sorted(p.name for p in spill.path.parent.iterdir()) == ["controls-main.json"]
    assert spill.path.stat().st_mode & 0o777 == 0o600
    spill.clear()
    assert spill.load() is None
    spill.clear()  # nothing to clear: no error


@pytest.mark.parametrize(
    "body",
    [
        "{torn",
        "[]",
        json.dumps(
            {"version": 2, "paused": True, "killed": True, "reason": "", "changed_at": NOW.isoformat()}
        ),
        json.dumps(
            {
                "version": 1,
                "paused": "no",
                "killed": False,
                "reason": "",
                "changed_at": NOW.isoformat(),
                "daily_loss_until": None,
            }
        ),
        json.dumps(
            {
                "version": 1,
                "paused": False,
                "killed": False,
                "reason": "",
                "changed_at": None,
                "daily_loss_until": None,
            }
        ),
        json.dumps(
            {
                "version": 1,
                "paused": False,
                "killed": False,
                "reason": "",
                "changed_at": "2026-12-01T12:00:00",
                "daily_loss_until": None,
            }
        ),
        json.dumps({"version": 1, "killed": False}),
    ],
    ids=[
        "torn",
        "not-an-object",
        "other-version",
        "paused-not-bool",
        "no-time",
        "naive-time",
        "missing-field",
    ],
)
def test_a_file_warden_did_not_write_is_refused_not_read_as_defaults(tmp_path: Path, body: str) -> None:
    path = tmp_path / "controls.json"
    path.write_text(body)
    with pytest.raises(StoreUnavailable, match="not a controls file"):
        FileControlsSpill(path).load()


def test_a_write_that_cannot_land_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match="cannot write"):
        FileControlsSpill(blocker / "controls.json").save(Controls(changed_at=NOW))
