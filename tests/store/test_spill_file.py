"""The controls' spill file: what it keeps reads back the same, a torn or foreign file is refused
(StoreUnavailable, never defaults), and a write leaves no temporary file behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from warden.adapters.spill import FileControlsSpill
from warden.domain.controls import Controls, KeptControls
from warden.ports import StoreUnavailable

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_what_is_kept_reads_back_the_same_and_clear_forgets_it(tmp_path: Path) -> None:
    spill = FileControlsSpill(tmp_path / "sub" / "controls-main.json")
    assert spill.load() is None
    controls = Controls(
        paused=True, killed=True, daily_loss_until=NOW + timedelta(hours=3), reason="é x", changed_at=NOW
    )
    kept = KeptControls(controls, None, "abc123")
    spill.save(kept)
    assert spill.load() == kept
    later = KeptControls(Controls(changed_at=NOW + timedelta(seconds=1)), NOW, "abc123")
    spill.save(later)
    assert spill.load() == later
    assert sorted(p.name for p in spill.path.parent.iterdir()) == ["controls-main.json"]
    assert spill.path.stat().st_mode & 0o777 == 0o600
    spill.clear()
    assert spill.load() is None
    spill.clear()  # nothing to clear: no error


def test_set_aside_moves_the_file_out_of_the_way_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "controls.json"
    path.write_text("{torn")
    aside = Path(FileControlsSpill(path).set_aside())
    assert not path.exists() and aside.parent == tmp_path and aside.read_text() == "{torn"
    assert aside.name.startswith("controls.json.unreadable-")


GOOD = {
    "version": 1,
    "paused": False,
    "killed": True,
    "reason": "",
    "changed_at": NOW.isoformat(),
    "daily_loss_until": None,
    "over": None,
    "installation_id": "abc123",
}


def test_the_good_file_the_refusals_below_start_from_reads(tmp_path: Path) -> None:
    path = tmp_path / "controls.json"
    path.write_text(json.dumps(GOOD))
    loaded = FileControlsSpill(path).load()
    assert loaded is not None and loaded.controls.killed and loaded.installation_id == "abc123"


def _but(**changes: object) -> str:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v != "<drop>"})


@pytest.mark.parametrize(
    "body",
    [
        "{torn",
        "[]",
        _but(version=2),
        _but(paused="no"),
        _but(installation_id=7),
        _but(changed_at=None),
        _but(changed_at="2026-12-01T12:00:00"),
        _but(over="yesterday"),
        _but(installation_id="<drop>"),
        _but(reason="<drop>"),
    ],
    ids=[
        "torn",
        "not-an-object",
        "other-version",
        "paused-not-bool",
        "installation-not-text",
        "no-time",
        "naive-time",
        "over-not-a-time",
        "no-installation",
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
        FileControlsSpill(blocker / "controls.json").save(KeptControls(Controls(changed_at=NOW), None, ""))
