"""Column types that round-trip exactly on SQLite and PostgreSQL.

SQLite has no decimal type (NUMERIC goes through a float) and no time zones,
so amounts are stored there as plain-notation text and datetimes as naive UTC.
PostgreSQL gets unconstrained NUMERIC (exact at any scale: an average entry
price has 28 significant digits, more than NUMERIC(38,18) keeps) and TIMESTAMPTZ.
Both backends hand back the same canonical values: Decimals without trailing
zeros, datetimes in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

from warden.adapters.db.canonical import canonical, utc


class Amount(TypeDecorator[Decimal]):
    """A Decimal: exact text on SQLite, unconstrained NUMERIC on PostgreSQL."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> object:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
        exact = canonical(value)
        return exact if dialect.name == "postgresql" else format(exact, "f")

    def process_result_value(self, value: object, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, str):
            return Decimal(value)  # written canonical by process_bind_param: parse, nothing to strip
        return canonical(value if isinstance(value, Decimal) else Decimal(str(value)))


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime; naive values are refused, results are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = utc(value)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
