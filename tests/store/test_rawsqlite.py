"""The SQLite fast write path converts values exactly as the column types do, remembered or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.dialects import sqlite

from warden.adapters.db import rawsqlite
from warden.adapters.db.rawsqlite import RawStatement
from warden.adapters.db.types import Amount, UtcDateTime

DIALECT = sqlite.dialect()


def statement() -> RawStatement:
    return RawStatement("INSERT INTO t (qty) VALUES (:qty)", {"qty": Amount()}, DIALECT)


def converted(raw: RawStatement, value: object) -> object:
    [out] = raw._row({"qty": value})
    return out


def test_equal_amounts_are_stored_as_the_same_canonical_text_however_written() -> None:
    raw = statement()
    assert converted(raw, Decimal("1.50")) == "1.5"
    assert converted(raw, Decimal("1.5")) == "1.5"
    assert converted(raw, Decimal("1.500")) == "1.5"  # remembered: the same text
    assert converted(raw, Decimal("-0")) == "0"
    assert converted(raw, Decimal("1E+2")) == "100"
    assert converted(raw, Decimal("100")) == "100"


def test_what_the_column_refuses_is_refused_every_time_even_if_an_equal_amount_was_seen() -> None:
    raw = statement()
    assert converted(raw, Decimal(1)) == "1"
    with pytest.raises(TypeError):
        converted(raw, 1)  # an int equal to a remembered Decimal is still not an amount
    with pytest.raises(TypeError):
        converted(raw, 1.0)
    for bad in (Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity")):
        with pytest.raises(ValueError, match="not a finite decimal"):
            converted(raw, bad)


def test_conversions_stay_exact_while_the_memory_is_cleared_when_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rawsqlite, "MEMO_LIMIT", 3)
    raw = statement()
    values = [Decimal(n) / 8 for n in range(10)]
    assert [converted(raw, v) for v in values] == [format(v.normalize(), "f") for v in values]
    assert [converted(raw, v) for v in values] == [format(v.normalize(), "f") for v in values]


def test_a_time_is_stored_as_its_utc_instant_whatever_its_zone_and_naive_times_are_refused() -> None:
    raw = RawStatement("INSERT INTO t (at) VALUES (:at)", {"at": UtcDateTime()}, DIALECT)
    utc = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    plus2 = utc.astimezone(timezone(timedelta(hours=2)))
    [first] = raw._row({"at": utc})
    [again] = raw._row({"at": plus2})  # the same instant, remembered
    assert first == again == utc.replace(tzinfo=None)  # naive UTC, as the column type hands it on
    for _ in range(2):
        with pytest.raises(ValueError, match="naive datetime"):
            raw._row({"at": utc.replace(tzinfo=None)})


def test_a_row_keeps_the_statements_order_converting_only_the_typed_columns_and_nulls_stay_null() -> None:
    raw = RawStatement(
        "UPDATE t SET qty = :qty, note = :note, at = :at WHERE id = :id AND qty2 = :qty",
        {"qty": Amount(), "at": UtcDateTime()},
        DIALECT,
    )
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    values = {"id": "p1", "qty": Decimal("2.50"), "note": None, "at": at, "unused": object()}
    assert raw.sql == "UPDATE t SET qty = ?, note = ?, at = ? WHERE id = ? AND qty2 = ?"
    assert raw._row(values) == ["2.5", None, at.replace(tzinfo=None), "p1", "2.5"]
    for _ in range(2):  # a NULL amount and time, converted and then remembered, are NULL
        assert raw._row({**values, "qty": None, "at": None}) == [None, None, None, "p1", None]
    with pytest.raises(KeyError):
        raw._row({"qty": Decimal(1), "at": at, "id": "p1"})  # a missing value is an error, not NULL
