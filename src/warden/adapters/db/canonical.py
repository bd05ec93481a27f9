"""The canonical form of stored values, shared by the SQL and in-memory stores (no SQLAlchemy here).

Whatever goes in, a store hands back Decimals without trailing fractional zeros
and timezone-aware datetimes in UTC; naive datetimes are refused.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation, Rounded
from typing import Any, TypeVar

T = TypeVar("T")
_ZERO = Decimal(0)
_ONE = Decimal(1)
# Wide enough for any amount; rounding would raise instead of silently changing a value.
_EXACT = Context(prec=1000, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact, Rounded])


def canonical(value: Decimal) -> Decimal:
    """The same number without trailing fractional zeros (100 stays 100, not 1E+2); exact."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    if not value:
        return _ZERO
    reduced = value.normalize(_EXACT)
    if reduced.adjusted() >= 0 and reduced == reduced.to_integral_value():
        return reduced.quantize(_ONE, context=_EXACT)
    return reduced


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is a ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: warden stores timezone-aware times only")
    return value.astimezone(UTC)


def stored(value: T) -> T:
    """A frozen dataclass as a store would hand it back: every Decimal and datetime canonical."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):  # type: ignore[arg-type]
        current = getattr(value, field.name)
        if isinstance(current, Decimal):
            changes[field.name] = canonical(current)
        elif isinstance(current, datetime):
            changes[field.name] = utc(current)
        elif dataclasses.is_dataclass(current) and not isinstance(current, type):
            changes[field.name] = stored(current)
    return dataclasses.replace(value, **changes)  # type: ignore[type-var]
