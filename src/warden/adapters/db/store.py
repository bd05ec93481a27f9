"""SqlStore: the Store port on SQLAlchemy 2 Core, for SQLite and PostgreSQL.

One transition is one transaction: the position row (insert, or update by
compare-and-set on `version`), its orders (upserted by client order id), its
fills (inserted, idempotent on the trade id) and its events commit together or
not at all. Once `set_epoch` is called, every write first checks in the same
transaction that the account's lease epoch has not moved on (fencing, I6).
Every call has a deadline; failures are translated in `errors.guarded`.

The database keeps one exclusive active position per symbol (the partial
unique index `schema.ONE_PER_SYMBOL`); a commit it refuses raises SymbolBusy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    Table,
    TextClause,
    bindparam,
    exists,
    select,
    text,
    true,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from warden.adapters.db import fastload, rows
from warden.adapters.db.engine import READ_ONLY, ThreadWriter, create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.installation import checked, new_installation_id
from warden.adapters.db.migrate import upgrade
from warden.adapters.db.rawsqlite import RawStatement, types_of
from warden.adapters.db.schema import (
    ONE_PER_SYMBOL,
    alerts,
    close_signals,
    controls,
    events,
    fills,
    installations,
    leases,
    orders,
    positions,
)
from warden.adapters.db.urls import redact
from warden.domain.alerts import Alert, AlertId
from warden.domain.controls import Controls
from warden.domain.events import Event
from warden.domain.orders import Fill, Order
from warden.domain.position import Position, PositionStatus
from warden.domain.values import PositionId, Symbol
from warden.ports import (
    ActiveState,
    CloseClaim,
    DuplicateSignal,
    FencedOut,
    StoreError,
    StoreUnavailable,
    SymbolBusy,
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
    sqlite_max_pages: Callable[[], int] | None = None,
    shared: SharedConnections | None = None,
    idle_in_transaction: float | None = None,
) -> SqlStore:
    """A store on `url` (see `urls.normalise`), migrated to the newest schema and answering.

    The account's installation id is made on the first open and read on every
    later one. `sqlite_max_pages` is for tests: see `SqlStore`. `shared`: PostgreSQL
    connections shared by the stores of an engine's accounts (its read pool and its one
    writing session); else the store has its own, with `idle_in_transaction` (create_engine).
    Raises StoreUnavailable if the database cannot be reached.
    """
    if migrate:
        await upgrade(url)
    store = SqlStore(
        shared.engine
        if shared is not None
        else create_engine(
            url,
            op_timeout=op_timeout,
            application_name=f"warden-store:{account}",
            idle_in_transaction=idle_in_transaction,
            create_file=False,  # made by the migration; never again, empty, if deleted
        ),
        exchange=exchange,
        account=account,
        op_timeout=op_timeout,
        where=redact(url),
        sqlite_max_pages=sqlite_max_pages,
        writer=None if shared is None else shared.writer,
    )
    try:
        await store.ping()
        await store.load_installation_id()
    except BaseException:
        await store.close()
        raise
    return store


HANDOFF = 0.25
"""Seconds a write waits for the writing session an engine's accounts share before it runs on a
session of its own from the read pool (`SqlStore._write`)."""


class WriteLine:
    """The one PostgreSQL session writes go through, and the turns on it: a store's own, or one
    shared by the stores of an engine's accounts (their writes take turns; each is still one
    transaction, fenced on its own account's epoch). A write that fails drops the session, since
    its state is then unknown; the next write opens a fresh one. A shared session taken longer
    than HANDOFF (one account's write blocked in the database) is not waited for by another
    account's write: it runs on a session of its own meanwhile."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.turn = asyncio.Lock()
        self.taken_at: float | None = None
        """When (monotonic) the write on the session now took its turn (None: none has it)."""
        self._conn: AsyncConnection | None = None

    def patience(self) -> float:
        """How long a write of another account may wait for the shared session: HANDOFF, less
        what the write on it now has had of it already (one blocked there is not waited for
        again by each of another account's writes)."""
        if self.taken_at is None or not self.turn.locked():
            return HANDOFF
        return HANDOFF - (time.monotonic() - self.taken_at)

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            self._conn = await self.engine.connect()
        return self._conn

    async def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class SharedConnections:
    """PostgreSQL connections an engine's accounts share: one read pool and one writing session
    for their stores, one session for their leases. Without it each account holds its own
    (four sessions per account an engine holds, one per account it stands by for), and a
    fleet of many accounts runs out of the server's `max_connections`."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        op_timeout: float,
        pool_size: int = 4,
        idle_in_transaction: float | None = None,
    ) -> None:
        from warden.adapters.db.lease import LeaseSession

        self.engine = create_engine(
            url,
            op_timeout=op_timeout,
            application_name=f"warden-store:{name}",
            pool_size=pool_size,
            idle_in_transaction=idle_in_transaction,
        )
        self.writer = WriteLine(self.engine)
        self.lease_session = LeaseSession(url, name=name, op_timeout=op_timeout)

    async def close(self) -> None:
        await self.writer.close()
        await self.lease_session.close()
        await self.engine.dispose()


class SqlStore:
    """The Store port on a SQLAlchemy async engine. Rows belong to one account.

    `sqlite_max_pages` (tests only; SQLite) is asked at the start of every write
    transaction for the most pages the database may grow to: a real SQLITE_FULL,
    as on a full disk, that a test can lift again without reopening the store.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        exchange: str,
        account: str,
        op_timeout: float,
        where: str,
        sqlite_max_pages: Callable[[], int] | None = None,
        writer: WriteLine | None = None,
    ) -> None:
        self._engine = engine
        self._shared = writer is not None  # the engine and the writer are an engine's, not ours
        self._line = writer or WriteLine(engine)
        self._turn = asyncio.Lock()
        """This account's writes, one at a time and in order (on a shared line, its own turn)."""
        self._exchange = exchange
        self._account = account
        self._op_timeout = op_timeout
        self._where = where
        self._postgres = engine.dialect.name == "postgresql"
        self._q = Statements(self._postgres)
        self._thread = (
            None
            if self._postgres
            else ThreadWriter(
                engine.url.render_as_string(False), op_timeout, sqlite_max_pages, create_file=False
            )
        )
        self._raw = None if self._thread is None else RawStatements(self._q, self._thread.dialect)
        self._fence: tuple[str, int] | None = None
        self._installation: str | None = None
        self._closed = False

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def installation_id(self) -> str:
        """The account's id in this database (made on its first open, then kept forever)."""
        if self._installation is None:
            raise RuntimeError("the installation id is read when the store opens: use open_store")
        return self._installation

    async def load_installation_id(self) -> str:
        """Make the account's installation id if it has none yet (the first open), and read it.

        Not fenced: it is written once, and every engine of the account reads the same row.
        """
        candidate = new_installation_id()
        made = self._insert(installations).values(
            account=self._account, installation_id=candidate, created_at=datetime.now(UTC)
        )

        def work(conn: Connection) -> str:
            conn.execute(made.on_conflict_do_nothing(index_elements=[installations.c.account]))
            found: str = conn.execute(
                select(installations.c.installation_id).where(installations.c.account == self._account)
            ).scalar_one()
            return found

        self._installation = checked(await self._write("read installation id", work))
        return self._installation

    async def account_of_installation(self, installation_id: str) -> str | None:
        query = select(installations.c.account).where(
            installations.c.installation_id == installation_id, installations.c.account != self._account
        )

        async def work(conn: AsyncConnection) -> str | None:
            found: str | None = (await conn.execute(query.limit(1))).scalar_one_or_none()
            return found

        return await self._read("find the account of an installation", work)

    def set_epoch(self, account: str, epoch: int) -> None:
        """Fence every later write on the lease of `account` still being at `epoch`."""
        self._fence = (account, epoch)

    # -- writes -------------------------------------------------------------

    async def commit(self, transition: Transition) -> None:
        position = transition.position
        try:
            await self._write(f"commit position {position.id}", lambda c: self._apply(c, transition))
        except SymbolBusy as busy:
            if busy.position_id is not None:
                raise
            # An update the index refused: on PostgreSQL its transaction is aborted,
            # so the position holding the symbol is looked up afterwards.
            holder = None
            with contextlib.suppress(StoreError):
                holder = await self._read(
                    "find the position holding a symbol",
                    lambda c: c.scalar(self._holder_of(position.symbol, position.id)),
                )
            if holder is None:
                raise
            raise SymbolBusy(position.symbol, PositionId(holder)) from busy

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        """Several transitions (of different positions) in one database transaction: each keeps
        its own compare-and-set, and if any is refused none is written (the caller retries them
        one by one to learn which)."""

        await self._write(f"commit {len(transitions)} transitions", lambda c: self._apply(c, *transitions))

    async def append_events(self, events_: Sequence[Event], alerts_: Sequence[Alert] = ()) -> None:
        def work(conn: Connection) -> None:
            self._check_fence(conn)
            self._insert_events(conn, events_)
            self._insert_alerts(conn, alerts_)

        await self._write("append events", work)

    async def mark_alerts_delivered(self, ids: Sequence[AlertId], at: datetime) -> None:
        if not ids:
            return
        query = (
            alerts.update()
            .where(alerts.c.account == self._account, alerts.c.id.in_(list(ids)))
            .values(delivered_at=at)
        )

        def work(conn: Connection) -> None:
            self._check_fence(conn)
            conn.execute(query)

        await self._write(f"mark {len(ids)} alerts delivered", work)

    async def record_alert_channels(self, channels: Mapping[AlertId, Collection[str]]) -> None:
        if not channels:
            return
        query = (
            alerts.update()
            .where(alerts.c.account == self._account, alerts.c.id == bindparam("alert_id"))
            .values(channels=bindparam("names"))
        )
        params = [{"alert_id": i, "names": json.dumps(sorted(names))} for i, names in channels.items()]

        def work(conn: Connection) -> None:
            self._check_fence(conn)
            conn.execute(query, params)

        await self._write(f"record the channels of {len(params)} alerts", work)

    async def alert_channels(self, ids: Sequence[AlertId]) -> dict[AlertId, set[str]]:
        if not ids:
            return {}
        query = select(alerts.c.id, alerts.c.channels).where(
            alerts.c.account == self._account, alerts.c.id.in_(list(ids)), alerts.c.channels.is_not(None)
        )

        def convert(row: Any) -> tuple[AlertId, set[str]]:
            return AlertId(row.id), set(json.loads(row.channels))

        found = await self._read("read the channels of alerts", lambda c: _all(c, query, convert))
        return {i: names for i, names in found if names}

    async def pending_alerts(self, limit: int = 100) -> list[Alert]:
        query = (
            select(alerts)
            .where(alerts.c.account == self._account, alerts.c.delivered_at.is_(None))
            .order_by(alerts.c.at, alerts.c.id)
            .limit(limit)
        )
        return await self._read("list pending alerts", lambda c: _all(c, query, rows.alert_from))

    async def load_controls(self) -> Controls:
        query = select(controls).where(controls.c.account == self._account)

        async def work(conn: AsyncConnection) -> Controls:
            return rows.controls_from((await conn.execute(query)).first())

        return await self._read("load controls", work)

    async def save_controls(self, controls_: Controls) -> None:
        row = rows.controls_row(controls_, self._account)
        upsert = self._insert(controls).values(**row)
        upsert = upsert.on_conflict_do_update(
            index_elements=[controls.c.account], set_={k: v for k, v in row.items() if k != "account"}
        )

        def work(conn: Connection) -> None:
            self._check_fence(conn)
            conn.execute(upsert)

        await self._write("save controls", work)

    async def claim_close_signal(
        self, signal_id: str, symbol: Symbol, position_ids: Sequence[PositionId], at: datetime
    ) -> CloseClaim:
        row = {
            "account": self._account,
            "signal_id": signal_id,
            "symbol": symbol,
            "position_ids": json.dumps(list(position_ids)),
            "at": at,
        }
        claim = self._insert(close_signals).values(**row).on_conflict_do_nothing()
        first = select(close_signals).where(
            close_signals.c.account == self._account,
            close_signals.c.signal_id == signal_id,
            close_signals.c.symbol == symbol,
        )

        def work(conn: Connection) -> CloseClaim:
            self._check_fence(conn)
            conn.execute(claim)
            stored = conn.execute(first).one()
            return CloseClaim(
                stored.signal_id,
                Symbol(stored.symbol),
                tuple(PositionId(p) for p in json.loads(stored.position_ids)),
                stored.at,
            )

        return await self._write("claim close signal", work)

    async def realized_pnl_since(self, since: datetime) -> Decimal:
        counted = (positions.c.closed_at >= since) | positions.c.status.not_in(TERMINAL)
        query = select(positions.c.realized_pnl).where(self._mine(), counted)

        async def work(conn: AsyncConnection) -> Decimal:
            return sum((r.realized_pnl for r in await conn.execute(query)), Decimal(0))

        return await self._read("sum realized pnl", work)

    async def save_marks(self, positions_: Sequence[Position]) -> None:
        if not positions_:
            return
        params = [
            {
                "w_account": self._account,
                "w_id": p.id,
                "v_last_price": p.last_price,
                "v_watermark": p.watermark,
                "v_mae": p.mae,
                "v_mfe": p.mfe,
            }
            for p in positions_
        ]

        def work(conn: Connection) -> None:
            self._check_fence(conn)
            conn.execute(self._q.save_marks, params)

        await self._write(f"save marks of {len(params)} positions", work)

    def _apply(self, conn: Connection, *transitions: Transition) -> None:
        """Write transitions in the open transaction: the fence checked once, each position's
        compare-and-set on its own, then each table's rows for all of them in one statement
        (a group commit of 1,000 closes was 5,000 round trips to PostgreSQL, now 1,005)."""
        self._check_fence(conn)
        if self._postgres and len({t.position.id for t in transitions}) == len(transitions) > 1:
            # Updates first, then creations: an update can free a symbol (a close), never claim one.
            self._update_positions(conn, [t for t in transitions if t.expected_version is not None])
            for t in transitions:
                if t.expected_version is None:
                    self._insert_position(conn, t.position)
        else:
            for t in transitions:
                if t.expected_version is None:
                    self._insert_position(conn, t.position)
                else:
                    self._update_position(conn, t.position, t.expected_version)
        self._upsert_orders(conn, [o for t in transitions for o in t.orders])
        self._insert_fills(conn, [f for t in transitions for f in t.fills])
        self._insert_events(conn, [e for t in transitions for e in t.events])
        self._insert_alerts(conn, [a for t in transitions for a in t.alerts])

    def _check_fence(self, conn: Connection) -> None:
        if self._fence is None:
            return
        account, epoch = self._fence
        if self._raw is not None:
            found = self._raw.fence.execute(conn, {"w_account": account}).fetchone()
            current = None if found is None else found[0]
        else:
            current = (conn.execute(self._q.fence, {"w_account": account})).scalar_one_or_none()
        if current != epoch:
            raise FencedOut(f"lease of account {account!r} is at epoch {current}, this engine holds {epoch}")

    def _insert_position(self, conn: Connection, position: Position) -> None:
        row = rows.position_row(position, self._account)
        if self._raw is not None:
            inserted = self._raw.insert_position.execute(conn, row).fetchone() is not None
        else:
            inserted = conn.execute(self._q.insert_position, row).first() is not None
        if inserted:
            return
        # ON CONFLICT DO NOTHING covers every unique index: find which one it was.
        if position.signal_id is not None:
            owner = conn.scalar(
                select(positions.c.id).where(
                    positions.c.account == self._account, positions.c.signal_id == position.signal_id
                )
            )
            if owner is not None:
                raise DuplicateSignal(position.signal_id, PositionId(owner))
        if conn.scalar(select(positions.c.id).where(positions.c.id == position.id)) is None:
            holder = conn.scalar(self._holder_of(position.symbol, position.id))
            if holder is not None:
                raise SymbolBusy(position.symbol, PositionId(holder))
        raise VersionConflict(f"position {position.id} already exists")

    def _update_positions(self, conn: Connection, updates: Sequence[Transition]) -> None:
        """Several positions' compare-and-sets in three round trips, not one each (PostgreSQL):
        their rows locked and their versions checked in one query, then every update sent at
        once. With the rows locked in this transaction the checked versions are the ones the
        updates meet (each update still names its expected version)."""
        if not updates:
            return
        ids = [t.position.id for t in updates]
        locked = select(positions.c.id, positions.c.version).where(self._mine(), positions.c.id.in_(ids))
        found: dict[str, int] = {pid: version for pid, version in conn.execute(locked.with_for_update())}  # noqa: C416
        params = []
        for t in updates:
            stored = found.get(t.position.id)
            if stored is not None and stored == t.expected_version:
                params.append(self._update_params(t.position, stored))
            else:
                state = "does not exist" if stored is None else f"is at version {stored}"
                raise VersionConflict(
                    f"position {t.position.id} {state}, expected version {t.expected_version}"
                )
        try:
            conn.execute(self._q.update_position, params)
        except IntegrityError as exc:
            if _refused_by_one_per_symbol(exc):
                raise SymbolBusy(updates[0].position.symbol) from exc  # the caller retries each alone
            raise

    def _update_params(self, position: Position, expected: int) -> dict[str, Any]:
        row = rows.position_row(position, self._account)
        params = {f"v_{k}": v for k, v in row.items() if k not in ("id", "account")}
        params.update(w_account=self._account, w_id=position.id, w_expected=expected)
        return params

    def _update_position(self, conn: Connection, position: Position, expected: int) -> None:
        params = self._update_params(position, expected)
        try:
            if self._raw is not None:
                updated = self._raw.update_position.execute(conn, params).rowcount
            else:
                updated = conn.execute(self._q.update_position, params).rowcount
        except (sqlite3.IntegrityError, IntegrityError) as exc:
            if _refused_by_one_per_symbol(exc):
                raise SymbolBusy(position.symbol) from exc
            raise
        if updated == 1:
            return
        found = conn.scalar(select(positions.c.version).where(self._mine(), positions.c.id == position.id))
        state = "does not exist" if found is None else f"is at version {found}"
        raise VersionConflict(f"position {position.id} {state}, expected version {expected}")

    def _upsert_orders(self, conn: Connection, orders_: Sequence[Order]) -> None:
        if orders_ and self._raw is not None:
            self._raw.upsert_orders.executemany(conn, [rows.order_row(o) for o in orders_])
        elif orders_:
            conn.execute(self._q.upsert_orders, [rows.order_row(o) for o in orders_])

    def _insert_fills(self, conn: Connection, fills_: Sequence[Fill]) -> None:
        if fills_ and self._raw is not None:
            self._raw.insert_fills.executemany(
                conn, [rows.fill_row(f, self._exchange, self._account) for f in fills_]
            )
        elif fills_:
            conn.execute(
                self._q.insert_fills, [rows.fill_row(f, self._exchange, self._account) for f in fills_]
            )

    def _insert_events(self, conn: Connection, events_: Sequence[Event]) -> None:
        if events_ and self._raw is not None:
            self._raw.insert_events.executemany(conn, [rows.event_row(e, self._account) for e in events_])
        elif events_:
            conn.execute(events.insert(), [rows.event_row(e, self._account) for e in events_])

    def _insert_alerts(self, conn: Connection, alerts_: Sequence[Alert]) -> None:
        if alerts_ and self._raw is not None:
            self._raw.insert_alerts.executemany(conn, [rows.alert_row(a, self._account) for a in alerts_])
        elif alerts_:
            conn.execute(self._q.insert_alerts, [rows.alert_row(a, self._account) for a in alerts_])

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        if self._postgres:
            from sqlalchemy.dialects import postgresql  # not imported on SQLite

            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- reads --------------------------------------------------------------

    async def load_active(self) -> ActiveState:
        if not self._postgres:
            return await self._read("load active positions", self._load_active_sqlite)
        return await self._load_active_sqlalchemy()

    async def _load_active_sqlite(self, conn: AsyncConnection) -> ActiveState:
        """The same queries as `_load_active_sqlalchemy`, converted without SQLAlchemy's rows
        (fastload.py): recovery loads every active row at start."""
        active = (*self._active(), self._here())
        found = (
            select(*fastload.POSITION_COLUMNS).where(*active).order_by(positions.c.opened_at, positions.c.id)
        )
        trades = select(fills.c.position_id, fills.c.trade_id).join(positions).where(*active)
        order_rows = (
            select(*fastload.ORDER_COLUMNS)
            .join(positions)
            .where(*active)
            .order_by(orders.c.position_id, orders.c.created_at, orders.c.client_order_id)
        )
        state = await conn.run_sync(fastload.load_active, found, trades, order_rows)
        return replace(state, elsewhere=_by_exchange(await conn.execute(self._elsewhere())))

    async def _load_active_sqlalchemy(self) -> ActiveState:
        async def work(conn: AsyncConnection) -> ActiveState:
            active = (*self._active(), self._here())
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
                elsewhere=_by_exchange(await conn.execute(self._elsewhere())),
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

    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: PositionId | None = None
    ) -> list[tuple[int, Event]]:
        """Events with their ids, oldest first: after `after_id`, or (None) the `limit` most recent;
        only `position_id`'s if given."""
        query = select(events).where(events.c.account == self._account)
        if position_id is not None:
            query = query.where(events.c.position_id == position_id)
        if after_id is None:
            query = query.order_by(events.c.id.desc()).limit(limit)
        else:
            query = query.where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        found = await self._read(
            "events since", lambda c: _all(c, query, lambda r: (r.id, rows.event_from(r)))
        )
        return found[::-1] if after_id is None else found

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

    def _active(self) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
        return self._mine(), positions.c.status.not_in(TERMINAL)

    def _here(self) -> ColumnElement[bool]:
        """The position has no fill recorded on another exchange than this store's (`exchange`
        switched with the same database and account: those positions are still open there)."""
        other = fills.alias("fills_elsewhere")
        return ~exists().where(other.c.position_id == positions.c.id, other.c.exchange != self._exchange)

    def _elsewhere(self) -> Select[tuple[str, str]]:
        """(exchange, position id) of the account's active positions traded on another exchange."""
        return (
            select(fills.c.exchange, positions.c.id)
            .distinct()
            .join(positions)
            .where(*self._active(), fills.c.exchange != self._exchange)
            .order_by(fills.c.exchange, positions.c.id)
        )

    def _holder_of(self, symbol: Symbol, other_than: PositionId) -> Select[tuple[str]]:
        """The exclusive active position on `symbol` (the row the partial unique index covers)."""
        return select(positions.c.id).where(
            self._mine(),
            positions.c.symbol == symbol,
            positions.c.exclusive,
            positions.c.status.not_in(TERMINAL),
            positions.c.id != other_than,
        )

    # -- plumbing -----------------------------------------------------------

    async def ping(self) -> None:
        await self._read("ping", lambda c: c.execute(select(1)))

    async def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            await self._thread.close()
        if not self._shared:
            await self._line.close()
            await self._engine.dispose()

    async def _read(self, what: str, work: Work[T]) -> T:
        return await self._run(what, work, write=False)

    async def _write(self, what: str, work: Callable[[Connection], T]) -> T:
        """Run synchronous `work` in one write transaction with a deadline.

        One engine writes per account, so writes are serialised on one dedicated
        connection: no pool checkout or reset per commit. On SQLite the whole
        transaction runs on one writer thread (one thread hop per commit instead of
        one per statement); on PostgreSQL it runs on the async connection. A write
        that fails or misses its deadline discards that connection, since its state
        is then unknown; the next write opens a fresh one.
        """
        if self._closed:
            raise StoreUnavailable(f"{what}: the store for {self._where} is closed")
        if not self._shared:
            async with self._line.turn:
                return await self._write_on_line(what, work)
        # The session an engine's accounts share (PostgreSQL): this account's writes keep their
        # order (its own turn), and one that does not get the shared session within HANDOFF runs
        # on a session of its own from the pool. Another account's write blocked in the database
        # (a row lock an outside session holds) keeps the shared session until its deadline, and
        # the writes queued behind it were delayed by as many deadlines: seconds to minutes of
        # another account's opens and stop moves, for one account's trouble.
        async with self._turn:
            line = self._line
            patience = line.patience()
            if patience <= 0:
                return await self._write_aside(what, work)
            try:
                async with asyncio.timeout(patience):
                    await line.turn.acquire()
            except TimeoutError:
                return await self._write_aside(what, work)
            line.taken_at = time.monotonic()
            try:
                return await self._write_on_line(what, work)
            finally:
                line.taken_at = None
                line.turn.release()

    async def _write_on_line(self, what: str, work: Callable[[Connection], T]) -> T:
        """`work` on the line's session (its turn taken)."""
        try:
            async with guarded(what, self._where, self._op_timeout):
                if self._thread is not None:
                    return await self._thread.run(work)
                conn = await self._line.connection()
                async with conn.begin():
                    return await conn.run_sync(work)
        except BaseException:
            await self._drop_writer()
            raise

    async def _write_aside(self, what: str, work: Callable[[Connection], T]) -> T:
        """`work` on a pool session of its own (the shared line is taken): given back after, or
        discarded if the write failed (its state is then unknown). Its checkout is within the
        write's deadline."""
        conn: AsyncConnection | None = None
        done = False
        try:
            async with guarded(what, self._where, self._op_timeout):
                conn = await self._engine.connect()
                async with conn.begin():
                    result = await conn.run_sync(work)
            done = True
            return result
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    if not done:
                        await conn.invalidate()
                    await conn.close()

    async def _run(self, what: str, work: Work[T], *, write: bool) -> T:
        """Run async `work` in one read transaction with a deadline."""
        if self._closed:
            raise StoreUnavailable(f"{what}: the store for {self._where} is closed")
        async with guarded(what, self._where, self._op_timeout), self._engine.connect() as conn:
            # One snapshot for all the queries of a read; SQLite starts it deferred.
            level = {"isolation_level": "REPEATABLE READ"} if self._postgres else {READ_ONLY: True}
            await conn.execution_options(**level)
            async with conn.begin():
                result = await work(conn)
        return result

    async def _drop_writer(self) -> None:
        await self._line.drop()
        if self._thread is not None:
            self._thread.reset()


def _refused_by_one_per_symbol(exc: Exception) -> bool:
    """Whether a unique violation is the one-exclusive-position-per-symbol index's.

    PostgreSQL names the index; SQLite names its columns, and (account, symbol)
    is unique nowhere else.
    """
    message = str(getattr(exc, "orig", None) or exc)
    return ONE_PER_SYMBOL in message or "positions.account, positions.symbol" in message


def _group(pairs: Iterable[Any]) -> defaultdict[str, list[str]]:
    grouped: defaultdict[str, list[str]] = defaultdict(list)
    for position_id, trade_id in pairs:
        grouped[position_id].append(trade_id)
    return grouped


def _by_exchange(pairs: Iterable[Any]) -> dict[str, list[PositionId]]:
    return {exchange: [PositionId(p) for p in ids] for exchange, ids in _group(pairs).items()}


async def _all(conn: AsyncConnection, query: Select[Any], convert: Callable[[Any], T]) -> list[T]:
    return [convert(r) for r in await conn.execute(query)]


class Statements:
    """The write statements, built once as typed SQL so every commit hits the compiled cache.

    SQLAlchemy's dialect `insert().on_conflict_*()` constructs carry no cache key,
    so they were compiled afresh on every commit. The ON CONFLICT syntax used here
    is the same on SQLite (3.35+) and PostgreSQL; bind types still apply (exact
    Decimals, UTC datetimes).
    """

    def __init__(self, postgres: bool) -> None:
        del postgres  # one SQL text serves both dialects
        self.insert_position = _typed(
            f"{_insert_sql(positions)} ON CONFLICT DO NOTHING RETURNING id", positions, positions.c
        )
        settable = [c for c in positions.c if c.name not in ("id", "account")]
        sets = ", ".join(f"{c.name} = :v_{c.name}" for c in settable)
        self.update_position = text(
            f"UPDATE positions SET {sets} WHERE account = :w_account AND id = :w_id AND version = :w_expected"
        ).bindparams(*[bindparam(f"v_{c.name}", type_=c.type) for c in settable])
        written = [c for c in orders.c if c.name != "updated_at"]
        updates = ", ".join(f"{c.name} = excluded.{c.name}" for c in written if c.name != "client_order_id")
        self.upsert_orders = _typed(
            f"{_insert_sql(orders, written)} ON CONFLICT (client_order_id) DO UPDATE SET {updates},"
            " updated_at = CURRENT_TIMESTAMP",
            orders,
            written,
        )
        self.insert_fills = _typed(
            f"{_insert_sql(fills)} ON CONFLICT (account, exchange, symbol, trade_id) DO NOTHING",
            fills,
            fills.c,
        )
        self.insert_alerts = _typed(f"{_insert_sql(alerts)} ON CONFLICT (id) DO NOTHING", alerts, alerts.c)
        marks = [positions.c[name] for name in ("last_price", "watermark", "mae", "mfe")]
        self.save_marks = text(
            "UPDATE positions SET "
            + ", ".join(f"{c.name} = :v_{c.name}" for c in marks)
            + " WHERE account = :w_account AND id = :w_id"
        ).bindparams(*[bindparam(f"v_{c.name}", type_=c.type) for c in marks])
        self.fence = (
            select(leases.c.epoch)
            .where(leases.c.account == bindparam("w_account"))
            .with_for_update(read=True)
        )


def _written(columns: Iterable[Column[Any]]) -> list[Column[Any]]:
    """The columns an INSERT names: all but a surrogate autoincrement key."""
    return [
        c
        for c in columns
        if not (
            c.primary_key
            and c.autoincrement is True
            and c.name == "id"
            and c.table.name in ("fills", "events")
        )
    ]


def _insert_sql(table: Table, columns: Iterable[Column[Any]] | None = None) -> str:
    cols = _written(columns if columns is not None else table.c)
    names, params = ", ".join(c.name for c in cols), ", ".join(":" + c.name for c in cols)
    return f"INSERT INTO {table.name} ({names}) VALUES ({params})"


def _typed(sql: str, table: Table, columns: Iterable[Column[Any]]) -> TextClause:
    del table
    return text(sql).bindparams(*[bindparam(c.name, type_=c.type) for c in _written(columns)])


class RawStatements:
    """The same write statements on the sqlite3 cursor (see rawsqlite.py); SQLite writer thread only."""

    def __init__(self, q: Statements, dialect: Dialect) -> None:
        settable = [c for c in positions.c if c.name not in ("id", "account")]
        self.insert_position = RawStatement(q.insert_position.text, types_of(list(positions.c)), dialect)
        self.update_position = RawStatement(q.update_position.text, types_of(settable, "v_"), dialect)
        self.upsert_orders = RawStatement(q.upsert_orders.text, types_of(list(orders.c)), dialect)
        self.insert_fills = RawStatement(q.insert_fills.text, types_of(list(fills.c)), dialect)
        self.insert_events = RawStatement(_insert_sql(events), types_of(list(events.c)), dialect)
        self.insert_alerts = RawStatement(q.insert_alerts.text, types_of(list(alerts.c)), dialect)
        # Statement.fence without its FOR SHARE, which SQLite has no use for (its writer holds the
        # database's one write lock from BEGIN IMMEDIATE on).
        self.fence = RawStatement(
            f"SELECT {leases.c.epoch.name} FROM {leases.name} WHERE {leases.c.account.name} = :w_account",
            {},
            dialect,
        )
