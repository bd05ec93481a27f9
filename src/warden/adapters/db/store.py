"""SqlStore: the Store port on SQLAlchemy 2 Core, for SQLite and PostgreSQL.

One transition is one transaction: the position row (insert, or update by
compare-and-set on `version`), its orders (upserted by client order id), its
fills (inserted, idempotent on the trade id) and its events commit together or
not at all. Once `set_epoch` is called, every write first checks in the same
transaction that the account's lease epoch has not moved on (fencing, I6).
Every call has a deadline; failures are translated in `errors.guarded`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from warden.adapters.db import rows
from warden.adapters.db.engine import READ_ONLY, create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.migrate import upgrade
from warden.adapters.db.schema import events, fills, leases, orders, positions
from warden.adapters.db.urls import redact
from warden.domain.events import Event
from warden.domain.orders import Fill, Order
from warden.domain.position import Position, PositionStatus
from warden.domain.values import PositionId
from warden.ports import (
    ActiveState,
    DuplicateSignal,
    FencedOut,
    StoreUnavailable,
    Transition,
    VersionConflict,
)

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[T]]
TERMINAL = tuple(status.value for status in PositionStatus if status.terminal)


async def open_store(
    url: str,
    *,
    exchange: str,
    account: str = "default",
    op_timeout: float = 5.0,
    migrate: bool = True,
) -> SqlStore:
    """A store on `url` (see `urls.normalise`), migrated to the newest schema and answering.

    Raises StoreUnavailable if the database cannot be reached.
    """
    if migrate:
        await upgrade(url)
    store = SqlStore(
        create_engine(url, op_timeout=op_timeout),
        exchange=exchange,
        account=account,
        op_timeout=op_timeout,
        where=redact(url),
    )
    try:
        await store.ping()
    except BaseException:
        await store.close()
        raise
    return store


class SqlStore:
    """The Store port on a SQLAlchemy async engine. Rows belong to one account."""

    def __init__(
        self, engine: AsyncEngine, *, exchange: str, account: str, op_timeout: float, where: str
    ) -> None:
        self._engine = engine
        self._exchange = exchange
        self._account = account
        self._op_timeout = op_timeout
        self._where = where
        self._postgres = engine.dialect.name == "postgresql"
        self._fence: tuple[str, int] | None = None
        self._closed = False

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def set_epoch(self, account: str, epoch: int) -> None:
        """Fence every later write on the lease of `account` still being at `epoch`."""
        self._fence = (account, epoch)

    # -- writes -------------------------------------------------------------

    async def commit(self, transition: Transition) -> None:
        check_versions(transition)
        await self._write(f"commit position {transition.position.id}", lambda c: self._apply(c, transition))

    async def append_events(self, events_: Sequence[Event]) -> None:
        async def work(conn: AsyncConnection) -> None:
            await self._check_fence(conn)
            await self._insert_events(conn, events_)

        await self._write("append events", work)

    async def _apply(self, conn: AsyncConnection, t: Transition) -> None:
        await self._check_fence(conn)
        if t.expected_version is None:
            await self._insert_position(conn, t.position)
        else:
            await self._update_position(conn, t.position, t.expected_version)
        await self._upsert_orders(conn, t.orders)
        await self._insert_fills(conn, t.fills)
        await self._insert_events(conn, t.events)

    async def _check_fence(self, conn: AsyncConnection) -> None:
        if self._fence is None:
            return
        account, epoch = self._fence
        query = select(leases.c.epoch).where(leases.c.account == account).with_for_update(read=True)
        current = (await conn.execute(query)).scalar_one_or_none()
        if current != epoch:
            raise FencedOut(f"lease of account {account!r} is at epoch {current}, this engine holds {epoch}")

    async def _insert_position(self, conn: AsyncConnection, position: Position) -> None:
        row = rows.position_row(position, self._account)
        stmt = self._insert(positions).values(row).on_conflict_do_nothing().returning(positions.c.id)
        if (await conn.execute(stmt)).first() is not None:
            return
        if position.signal_id is not None:
            owner = await conn.scalar(
                select(positions.c.id).where(
                    positions.c.account == self._account, positions.c.signal_id == position.signal_id
                )
            )
            if owner is not None:
                raise DuplicateSignal(position.signal_id, PositionId(owner))
        raise VersionConflict(f"position {position.id} already exists")

    async def _update_position(self, conn: AsyncConnection, position: Position, expected: int) -> None:
        row = rows.position_row(position, self._account)
        stmt = (
            update(positions)
            .where(self._mine(), positions.c.id == position.id, positions.c.version == expected)
            .values({k: v for k, v in row.items() if k not in ("id", "account")})
        )
        if (await conn.execute(stmt)).rowcount == 1:
            return
        found = await conn.scalar(
            select(positions.c.version).where(self._mine(), positions.c.id == position.id)
        )
        state = "does not exist" if found is None else f"is at version {found}"
        raise VersionConflict(f"position {position.id} {state}, expected version {expected}")

    async def _upsert_orders(self, conn: AsyncConnection, orders_: Sequence[Order]) -> None:
        if not orders_:
            return
        stmt = self._insert(orders).values([rows.order_row(o) for o in orders_])
        changed = {c.name: stmt.excluded[c.name] for c in orders.c if c.name != "client_order_id"}
        changed["updated_at"] = func.now()
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=[orders.c.client_order_id], set_=changed)
        )

    async def _insert_fills(self, conn: AsyncConnection, fills_: Sequence[Fill]) -> None:
        if not fills_:
            return
        stmt = self._insert(fills).values([rows.fill_row(f, self._exchange) for f in fills_])
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["exchange", "symbol", "trade_id"]))

    async def _insert_events(self, conn: AsyncConnection, events_: Sequence[Event]) -> None:
        if events_:
            await conn.execute(events.insert(), [rows.event_row(e, self._account) for e in events_])

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

    # -- reads --------------------------------------------------------------

    async def load_active(self) -> ActiveState:
        async def work(conn: AsyncConnection) -> ActiveState:
            active = (self._mine(), positions.c.status.not_in(TERMINAL))
            found = await conn.execute(
                select(positions).where(*active).order_by(positions.c.opened_at, positions.c.id)
            )
            trades = await conn.execute(
                select(fills.c.position_id, fills.c.trade_id).join(positions).where(*active)
            )
            order_rows = await conn.execute(
                select(orders)
                .join(positions)
                .where(*active)
                .order_by(orders.c.position_id, orders.c.created_at, orders.c.client_order_id)
            )
            by_position = _group(trades)
            return ActiveState(
                positions=[rows.position_from(r, by_position[r.id]) for r in found],
                orders=[rows.order_from(r) for r in order_rows],
            )

        return await self._read("load active positions", work)

    async def get_position(self, position_id: PositionId) -> Position | None:
        found = await self._positions("get position", positions.c.id == position_id, limit=1)
        return found[0] if found else None

    async def find_by_signal(self, signal_id: str) -> Position | None:
        found = await self._positions("find position by signal", positions.c.signal_id == signal_id, limit=1)
        return found[0] if found else None

    async def list_positions(self, *, include_closed: bool = False, limit: int = 100) -> list[Position]:
        where = true() if include_closed else positions.c.status.not_in(TERMINAL)
        return await self._positions("list positions", where, limit=limit)

    async def orders_for(self, position_id: PositionId) -> list[Order]:
        query = (
            select(orders)
            .join(positions)
            .where(self._mine(), orders.c.position_id == position_id)
            .order_by(orders.c.created_at, orders.c.client_order_id)
        )
        return await self._read("list orders", lambda c: _all(c, query, rows.order_from))

    async def fills_for(self, position_id: PositionId) -> list[Fill]:
        query = (
            select(fills)
            .join(positions)
            .where(self._mine(), fills.c.position_id == position_id)
            .order_by(fills.c.at, fills.c.id)
        )
        return await self._read("list fills", lambda c: _all(c, query, rows.fill_from))

    async def list_events(self, position_id: PositionId | None = None, limit: int = 100) -> list[Event]:
        """The `limit` most recent events (of one position, or all), oldest first."""
        query = select(events).where(events.c.account == self._account)
        if position_id is not None:
            query = query.where(events.c.position_id == position_id)
        query = query.order_by(events.c.id.desc()).limit(limit)
        newest_first = await self._read("list events", lambda c: _all(c, query, rows.event_from))
        return newest_first[::-1]

    async def _positions(self, what: str, where: ColumnElement[bool], *, limit: int) -> list[Position]:
        query = (
            select(positions)
            .where(self._mine(), where)
            .order_by(positions.c.opened_at.desc(), positions.c.id.desc())
            .limit(limit)
        )

        async def work(conn: AsyncConnection) -> list[Position]:
            found = (await conn.execute(query)).all()
            ids = [r.id for r in found]
            trades = await conn.execute(
                select(fills.c.position_id, fills.c.trade_id).where(fills.c.position_id.in_(ids))
            )
            by_position = _group(trades)
            return [rows.position_from(r, by_position[r.id]) for r in found]

        return await self._read(what, work)

    def _mine(self) -> ColumnElement[bool]:
        return positions.c.account == self._account

    # -- plumbing -----------------------------------------------------------

    async def ping(self) -> None:
        await self._read("ping", lambda c: c.execute(select(1)))

    async def close(self) -> None:
        self._closed = True
        await self._engine.dispose()

    async def _read(self, what: str, work: Work[T]) -> T:
        return await self._run(what, work, write=False)

    async def _write(self, what: str, work: Work[T]) -> T:
        return await self._run(what, work, write=True)

    async def _run(self, what: str, work: Work[T], *, write: bool) -> T:
        """Run `work` in one transaction with a deadline; the only place the DB is called."""
        if self._closed:
            raise StoreUnavailable(f"{what}: the store for {self._where} is closed")
        async with guarded(what, self._where, self._op_timeout), self._engine.connect() as conn:
            if not write:
                # One snapshot for all the queries of a read; SQLite starts it deferred.
                level = {"isolation_level": "REPEATABLE READ"} if self._postgres else {READ_ONLY: True}
                await conn.execution_options(**level)
            async with conn.begin():
                result = await work(conn)
        return result


def check_versions(transition: Transition) -> None:
    """A transition must move the version by exactly one (to 1 for a new position)."""
    expected = transition.expected_version
    wanted = 1 if expected is None else expected + 1
    if transition.position.version != wanted:
        raise ValueError(
            f"position {transition.position.id}: version {transition.position.version} "
            f"after expected version {expected}; it must be {wanted}"
        )


def _group(pairs: Iterable[Any]) -> defaultdict[str, list[str]]:
    grouped: defaultdict[str, list[str]] = defaultdict(list)
    for position_id, trade_id in pairs:
        grouped[position_id].append(trade_id)
    return grouped


async def _all(conn: AsyncConnection, query: Select[Any], convert: Callable[[Any], T]) -> list[T]:
    return [convert(r) for r in await conn.execute(query)]
