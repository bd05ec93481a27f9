"""The SQLite write statements run on the DBAPI cursor, inside SQLAlchemy's transaction.

Even cached, each `Connection.execute` costs SQLAlchemy's per-statement machinery
(~60-100 us); a transition writes three or four statements. On the writer
thread these statements go straight to the sqlite3 cursor instead. Values are
converted with SQLAlchemy's own public `bind_processor` of each column's type,
so what is stored is byte-for-byte what the SQLAlchemy path stores; reads are
unchanged. The transaction (BEGIN IMMEDIATE ... COMMIT) stays SQLAlchemy's.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any] | None
_PARAM = re.compile(r":(\w+)")
MEMO_LIMIT = 4096
"""Converted values kept per statement column (cleared when full)."""


class RawStatement:
    def __init__(self, sql: str, types: Mapping[str, TypeEngine[Any]], dialect: Dialect) -> None:
        self.names = _PARAM.findall(sql)
        self.sql = _PARAM.sub("?", sql)
        processors: list[Processor] = [
            _memoised(types[name].bind_processor(dialect)) if name in types else None for name in self.names
        ]
        self._converted = [(i, proc) for i, proc in enumerate(processors) if proc is not None]
        """The places whose value its column's type converts, with the conversion."""
        self._values = _getter(self.names)

    def _row(self, values: Mapping[str, Any]) -> list[Any]:
        row = self._values(values)
        for i, proc in self._converted:
            row[i] = proc(row[i])
        return row

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        cursor = _cursor(conn)
        cursor.execute(self.sql, self._row(values))
        return cursor

    def executemany(self, conn: Connection, many: Sequence[Mapping[str, Any]]) -> None:
        _cursor(conn).executemany(self.sql, [self._row(v) for v in many])


def _memoised(processor: Processor) -> Processor:
    """The same conversion, remembered for amounts, times and NULLs: a transition's prices,
    quantities, the plan's percentages and its orders' creation times mostly repeat from one
    commit to the next, and each costs a normalise and a format. Equal values of these types
    convert alike, so the value is the key: the stored amount is canonical text (trailing zeros
    and the sign of zero dropped), the stored time the instant in UTC (two aware datetimes are
    equal when they are the same instant, whatever their zones). Only finite Decimals and aware
    datetimes are remembered; anything else (an int that compares equal, a NaN, a naive time) is
    converted, or refused, every time."""
    if processor is None:
        return None
    memo: dict[Decimal | datetime | None, Any] = {}

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is Decimal:
            if not value.is_finite():
                return processor(value)
        elif kind is datetime:
            if value.tzinfo is None:
                return processor(value)
        elif value is not None:
            return processor(value)
        try:
            return memo[value]
        except KeyError:
            pass
        converted = processor(value)
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[value] = converted
        return converted

    return convert


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """The values of `names` in a mapping, in their order, as a new list (the lookups in one C call)."""
    if not names:
        return lambda _values: []
    if len(names) == 1:
        one = operator.itemgetter(names[0])
        return lambda values: [one(values)]
    many = operator.itemgetter(*names)
    return lambda values: list(many(values))


def _cursor(conn: Connection) -> Any:
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver.cursor()


def types_of(columns: Sequence[Column[Any]], prefix: str = "") -> dict[str, TypeEngine[Any]]:
    return {f"{prefix}{c.name}": c.type for c in columns}
