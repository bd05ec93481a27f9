"""The bot's update record file: one per bot, named by the bot's public id and never by its token;
what is kept reads back the same; a torn or foreign file is refused (StoreUnavailable), never
read as "nothing taken"; a write leaves no temporary file behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from warden.adapters.telegram import FileUpdateRecord, record_path
from warden.bootstrap import build_update_record
from warden.config import Settings
from warden.ports import StoreUnavailable, TakenUpdate

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_one_file_per_bot_named_by_its_id_never_its_token(tmp_path: Path) -> None:
    first = record_path(tmp_path, "123456:AAE-secret-part")
    assert first == tmp_path / "telegram-123456.json"
    assert record_path(tmp_path, "123456:another-secret") == first  # a token revoked and renewed: same bot
    assert record_path(tmp_path, "654321:AAE-secret-part") != first  # another bot: another record
    odd = record_path(tmp_path, "no-colon-secret")
    assert "secret" not in odd.name and odd.name.startswith("telegram-sha256-")
    assert record_path(tmp_path, "../../x:y").parent == tmp_path


def test_the_fleet_and_one_account_use_the_same_record_for_one_bot(tmp_path: Path) -> None:
    """The offset is the bot's, not an account's: `[accounts.*]` do not change where it is kept."""
    settings = Settings.load(data_dir=tmp_path, telegram_token="123456:AAE-secret-part")
    record = build_update_record(settings)
    assert isinstance(record, FileUpdateRecord) and record.path == tmp_path / "telegram-123456.json"
    assert build_update_record(Settings.load(data_dir=tmp_path)) is None


def test_what_is_kept_reads_back_the_same(tmp_path: Path) -> None:
    record = FileUpdateRecord(tmp_path / "sub" / "telegram-1.json")
    assert record.load() is None
    record.save(TakenUpdate(41, NOW))
    record.save(TakenUpdate(7, NOW))  # the ids started again, lower: the record follows them
    assert record.load() == TakenUpdate(7, NOW)
    assert sorted(p.name for p in record.path.parent.iterdir()) == ["telegram-1.json"]
    assert record.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "body",
    [
        "{torn",
        "[]",
        '{"version": 2, "update_id": 1, "at": "2026-12-01T12:00:00+00:00"}',
        '{"version": 1, "update_id": "1", "at": "2026-12-01T12:00:00+00:00"}',
        '{"version": 1, "update_id": true, "at": "2026-12-01T12:00:00+00:00"}',
        '{"version": 1, "update_id": -1, "at": "2026-12-01T12:00:00+00:00"}',
        '{"version": 1, "update_id": 1, "at": "2026-12-01T12:00:00"}',
        '{"version": 1, "at": "2026-12-01T12:00:00+00:00"}',
    ],
)
def test_a_torn_or_foreign_file_is_refused_and_can_be_set_aside(tmp_path: Path, body: str) -> None:
    record = FileUpdateRecord(tmp_path / "telegram-1.json")
    record.path.write_text(body)
    with pytest.raises(StoreUnavailable, match=r"telegram-1\.json"):
        record.load()
    aside = Path(record.set_aside())
    assert aside.read_text() == body and record.load() is None


def test_a_record_that_cannot_be_written_says_where(tmp_path: Path) -> None:
    (tmp_path / "telegram-1.json").mkdir()  # a directory where the file should be
    with pytest.raises(StoreUnavailable, match=r"cannot write .*telegram-1\.json"):
        FileUpdateRecord(tmp_path / "telegram-1.json").save(TakenUpdate(1, NOW))
