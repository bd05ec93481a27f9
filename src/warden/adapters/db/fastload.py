"""Recovery's load of the active state on SQLite, without SQLAlchemy's per-row result machinery.

Startup loads every active position and every order of them (10,000 positions are
50,000 rows). Through SQLAlchemy each row is a `Row` and each value goes through
its type's result processor (for `Amount` a TypeDecorator wrapper around `Decimal`),
then `rows.position_from`/`order_from` look every value up by name: about a second
of the start path. Here the same SELECT statements (compiled by SQLAlchemy, so the
same filter and order) run on the read transaction's own DBAPI cursor and each
column is converted once per value:

- `Amount`: SQLite stores plain-notation text (`Amount.process_bind_param`), read
  back with `Decimal(text)`, which is what `Amount.process_result_value` does with a
  string; any other stored type goes through that method itself;
- every other column: its type's own SQLAlchemy result processor for the dialect
  (datetimes, booleans), or none (strings, integers);
- enums by value through their value map (`Side("long")` is the same member).

Identical exit plans are built once and shared (ExitPlan is frozen; equal values,
one validation). tests/store/test_fast_load.py checks the result equals the
SQLAlchemy path's, value for value. PostgreSQL keeps the SQLAlchemy path.
"""

from __future__ import annotations

import contextlib
import gc
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Column, Select
from sqlalchemy.engine import Connection, Dialect

from warden.adapters.db.rows import _PLAN_FIELDS
from warden.adapters.db.schema import orders, positions
from warden.adapters.db.types import Amount, UtcDateTime
from warden.domain.orders import Order, OrderStatus
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.values import OrderRole, OrderSide, OrderType, Side, TradeId
from warden.ports import ActiveState

Convert = Callable[[Any], Any]
ColumnConvert = Callable[[Sequence[Any]], Sequence[Any]]
E = TypeVar("E", bound=Enum)
T = TypeVar("T")

POSITION_COLUMNS = [c for c in positions.c if c.name != "account"]
"""What a position is made of: its fields and its plan's (`plan_*`)."""
ORDER_COLUMNS = [orders.c[name] for name in Order.__dataclass_fields__]
"""An order's fields, in the order `Order` takes them."""


def _member(enum: type[E]) -> ColumnConvert:
    members: dict[Any, E] = dict(enum._value2member_map_)

    def column(values: Sequence[Any]) -> list[Any]:
        try:
            return list(map(members.__getitem__, values))
        except KeyError:  # an unknown value raises as SQLAlchemy's path does (Enum(value))
            return [enum(v) for v in values]

    return column


def _per_value(convert: Convert) -> ColumnConvert:
    def column(values: Sequence[Any]) -> list[Any]:
        return list(map(convert, values))

    return column


def converter(column: Column[Any], dialect: Dialect) -> ColumnConvert | None:
    """How a column of raw DBAPI values becomes what SQLAlchemy would have returned."""
    processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
    if isinstance(column.type, Amount):
        return _amounts(processor)
    if isinstance(column.type, UtcDateTime) and dialect.name == "sqlite":
        return _moments(processor)
    return None if processor is None else _per_value(processor)


def _amounts(processor: Convert | None) -> ColumnConvert:
    """Amount.process_result_value: text -> Decimal(text); None stays; anything else through it."""

    def one(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is str:
            return Decimal(value)
        return value if processor is None else processor(value)

    def column(values: Sequence[Any]) -> list[Any]:
        kinds = set(map(type, values))
        if kinds <= {str}:
            return list(map(Decimal, values))  # a NOT NULL column of text: at C speed
        if kinds <= {str, type(None)}:
            return [None if v is None else Decimal(v) for v in values]
        return list(map(one, values))

    return column


def _moments(processor: Convert | None) -> ColumnConvert:
    """SQLite's stored `YYYY-MM-DD HH:MM:SS.ffffff` (SQLAlchemy's DATETIME storage format) is
    read by `datetime.fromisoformat` (SQLAlchemy's str_to_datetime), and UtcDateTime makes a
    naive one UTC. Any other shape goes through SQLAlchemy's own processors."""
    assert processor is not None
    parse = datetime.fromisoformat

    def one(value: Any) -> Any:
        if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
            return parse(value + "+00:00")  # = fromisoformat(value).replace(tzinfo=UTC), 6x faster
        return processor(value)

    def column(values: Sequence[Any]) -> list[Any]:
        return list(map(one, values))

    return column


def _columns(
    rows: list[tuple[Any, ...]], columns: Sequence[Column[Any]], dialect: Dialect, **enums: ColumnConvert
) -> list[Sequence[Any]]:
    """The rows transposed into columns, each converted as a whole."""
    if not rows:
        return [[] for _ in columns]
    out: list[Sequence[Any]] = []
    for column, values in zip(columns, zip(*rows, strict=True), strict=True):
        convert = enums.get(column.name) or converter(column, dialect)
        out.append(values if convert is None else convert(values))
    return out


def _fetch(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of `statement` as DBAPI tuples, on this connection (its transaction, its snapshot)."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    positional = compiled.positiontup or []
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), [params[name] for name in positional])
        return list(cursor.fetchall())
    finally:
        cursor.close()


def build(cls: type[T], columns: dict[str, Sequence[Any]]) -> list[T]:
    """`[cls(**row) for row in columns]`, built column by column.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`, one
    Python call per field per object (5 us an Order here, 50,000 of them). Here each
    field's slot descriptor is applied to all the objects at once, at C speed. Only for
    classes whose `__init__` does nothing else (no `__post_init__`), given every field.
    """
    names = list(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    if hasattr(cls, "__post_init__") or sorted(names) != sorted(columns):
        keys = list(columns)
        return [cls(**dict(zip(keys, row, strict=True))) for row in zip(*columns.values(), strict=True)]
    count = len(next(iter(columns.values()), ()))
    new = object.__new__
    objects = [new(cls) for _ in range(count)]
    for name in names:
        deque(map(getattr(cls, name).__set__, objects, columns[name]), maxlen=0)
    return objects


@contextlib.contextmanager
def _no_gc_passes() -> Iterator[None]:
    """The cyclic collector paused while the state is built: tens of thousands of new
    (acyclic) objects would otherwise trigger full collections that walk the whole heap
    again and again (a third of the load's time). Collection resumes as before after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_active(
    conn: Connection, found: Select[Any], trades: Select[Any], order_rows: Select[Any]
) -> ActiveState:
    """`found` selects POSITION_COLUMNS, `trades` (position id, trade id) pairs of those
    positions, `order_rows` ORDER_COLUMNS of their orders."""
    with _no_gc_passes():
        return ActiveState(_positions(conn, found, trades), _orders(conn, order_rows))


def _positions(conn: Connection, statement: Select[Any], trades: Select[Any]) -> list[Position]:
    by_position: defaultdict[str, list[TradeId]] = defaultdict(list)
    for position_id, trade_id in _fetch(conn, trades):
        by_position[position_id].append(trade_id)
    columns = dict(
        zip(
            (c.name for c in POSITION_COLUMNS),
            _columns(
                _fetch(conn, statement),
                POSITION_COLUMNS,
                conn.dialect,
                side=_member(Side),
                status=_member(PositionStatus),
            ),
            strict=True,
        )
    )
    plans: dict[tuple[Any, ...], ExitPlan] = {}

    def plan(*values: Any) -> ExitPlan:
        found = plans.get(values)
        if found is None:
            found = plans[values] = ExitPlan(**dict(zip(_PLAN_FIELDS, values, strict=True)))
        return found

    columns["plan"] = list(map(plan, *(columns.pop(f"plan_{name}") for name in _PLAN_FIELDS)))
    columns["applied_trades"] = [frozenset(by_position[pid]) for pid in columns["id"]]
    return build(Position, columns)


def _orders(conn: Connection, statement: Select[Any]) -> list[Order]:
    columns = _columns(
        _fetch(conn, statement),
        ORDER_COLUMNS,
        conn.dialect,
        role=_member(OrderRole),
        side=_member(OrderSide),
        type=_member(OrderType),
        status=_member(OrderStatus),
    )
    return build(Order, dict(zip((c.name for c in ORDER_COLUMNS), columns, strict=True)))
