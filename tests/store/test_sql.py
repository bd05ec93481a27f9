"""What only the SQL store has: migrations, pragmas, deadlines, outages, exact storage."""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError

from warden.adapters.db import rows
from warden.adapters.db.engine import create_engine
from warden.adapters.db.migrate import current_revision, upgrade
from warden.adapters.db.schema import close_signals, installations, metadata, positions
from warden.adapters.db.store import SqlStore, open_store
from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.domain.position import Position, PositionStatus
from warden.domain.values import PositionId
from warden.ports import StoreUnavailable, SymbolBusy

from .builders import BTC, PLUS2, SOL, T0, D, insert, position

HEAD = "0009"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def pg_admin(url: str, sql: str) -> Any:
    """Run `sql` on the test database's server, as a separate session."""
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"), database="postgres")
    try:
        return await conn.execute(sql)
    finally:
        await conn.close()


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_migrations_applied_twice_are_a_no_op(store_url: str) -> None:
    """Upgrading an up-to-date database changes nothing and leaves it at head."""
    await upgrade(store_url)
    await upgrade(store_url)
    assert await current_revision(store_url) == HEAD


async def test_a_new_database_has_no_revision(store_url: str) -> None:
    """Before the first migration the revision is None."""
    assert await current_revision(store_url) is None


async def test_the_migrated_schema_matches_the_tables(store: SqlStore) -> None:
    """The initial migration creates exactly what schema.py declares (no autogenerate diff)."""

    def diff(sync: Connection) -> list[Any]:
        return compare_metadata(MigrationContext.configure(sync), metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_sqlite_is_durable_and_checks_foreign_keys(store: SqlStore) -> None:
    """SQLite runs in WAL mode with foreign keys on and a full fsync per commit."""
    async with store.engine.connect() as conn:
        pragmas = [
            (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
            for p in ("journal_mode", "foreign_keys", "synchronous")
        ]
    assert pragmas == ["wal", 1, 2]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_sqlite_stores_amounts_as_exact_text(store: SqlStore) -> None:
    """On SQLite an amount is stored as plain-notation text, never a float."""
    await store.commit(insert(position(target_qty=D("0.000000000000000001"), realized_pnl=D(302) / 3)))
    async with store.engine.connect() as conn:
        row = (
            await conn.exec_driver_sql("SELECT target_qty, typeof(realized_pnl), realized_pnl FROM positions")
        ).one()
    assert tuple(row) == ("0.000000000000000001", "text", "100.6666666666666666666666667")


async def test_an_unreachable_postgres_is_store_unavailable_without_the_password() -> None:
    """Opening a store on a closed port raises StoreUnavailable naming the server, not the password."""
    url = f"postgresql://postgres:hunter2@127.0.0.1:{closed_port()}/warden"
    with pytest.raises(StoreUnavailable) as info:
        await open_store(url, exchange="sim", op_timeout=2)
    assert "127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    """A SQLite path holding something other than a database raises StoreUnavailable."""
    (tmp_path / "warden.db").write_bytes(b"this is not a database, it is a shopping list" * 100)
    with pytest.raises(StoreUnavailable, match="not a database"):
        await open_store(f"sqlite:///{tmp_path / 'warden.db'}", exchange="sim")


async def test_a_closed_store_is_unavailable(store: SqlStore) -> None:
    """After close(), every call raises StoreUnavailable instead of reconnecting silently."""
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.commit(insert(position()))
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.load_active()


@contextmanager
def sqlite_writer_lock(path: Path) -> Iterator[None]:
    """Another process-like connection holding SQLite's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_sqlite_write_blocked_past_its_deadline_is_unavailable(tmp_path: Path) -> None:
    """A commit that cannot get the write lock in time raises StoreUnavailable; reads still work."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    store = await open_store(url, exchange="sim", op_timeout=0.3)
    try:
        with sqlite_writer_lock(tmp_path / "warden.db"):
            with pytest.raises(StoreUnavailable):
                await store.commit(insert(position()))
            assert (await store.load_active()).positions == []
        await store.commit(insert(position()))
        assert await store.get_position(PositionId("p1")) is not None
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_postgres_call_blocked_past_its_deadline_is_unavailable(pg_url: str) -> None:
    """A query stuck behind a lock raises StoreUnavailable at its deadline; the store works afterwards."""
    store = await open_store(pg_url, exchange="sim", op_timeout=0.5)
    locker = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StoreUnavailable, match=r"0\.5s|timeout|cancel"):
            await store.list_positions()
        await tx.rollback()
        await store.commit(insert(position()))
        assert await store.get_position(PositionId("p1")) is not None
    finally:
        await locker.close()
        await store.close()


@pytest.mark.postgres
async def test_postgres_refusing_connections_is_unavailable_then_recovers(pg_url: str) -> None:
    """While the database refuses connections the store raises StoreUnavailable; afterwards it reconnects."""
    store = await open_store(pg_url, exchange="sim")
    name = db_name(pg_url)
    try:
        await pg_admin(pg_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await pg_admin(
            pg_url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await store.commit(insert(position()))
        await pg_admin(pg_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await store.commit(insert(position()))
        assert await store.get_position(PositionId("p1")) is not None
    finally:
        await pg_admin(pg_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await store.close()


@pytest.mark.postgres
async def test_postgres_numeric_keeps_every_digit(pg_url: str) -> None:
    """PostgreSQL stores amounts as NUMERIC without losing digits beyond 18 decimals."""
    store = await open_store(pg_url, exchange="sim")
    try:
        pnl = Decimal("-12345678901234567890.1234567890123456789")
        await store.commit(insert(position(realized_pnl=pnl)))
        async with store.engine.connect() as conn:
            raw = (await conn.execute(text("SELECT realized_pnl::text FROM positions"))).scalar()
        assert raw == str(pnl)
    finally:
        await store.close()


async def test_raw_sqlite_writes_store_exactly_what_sqlalchemy_would(tmp_path: Path) -> None:
    """The fast SQLite write path stores byte-for-byte the rows the SQLAlchemy path stores."""
    from sqlalchemy import text as _text

    from warden.adapters.db.store import open_store as _open

    from .builders import event as _event
    from .builders import fill as _fill
    from .builders import full_position as _full
    from .builders import insert as _insert
    from .builders import order as _order

    dumps = []
    for raw in (True, False):
        store = await _open(f"sqlite:///{tmp_path}/{raw}.db", exchange="sim")
        if not raw:
            store._raw = None  # the SQLAlchemy path
        original = _full()
        t = _insert(original)
        alert = Alert(
            AlertId("a-1"), AlertKind.POSITION_PROTECTED, "protected", T0.astimezone(PLUS2), original.id
        )
        await store.commit(
            type(t)(
                t.position,
                None,
                [_order(original.id)],
                [_fill(original.id)],
                [_event(pid=original.id)],
                [alert],
            )
        )
        async with store.engine.connect() as conn:
            dump = {}
            for table in ("positions", "orders", "fills", "events", "alerts"):
                rows = (await conn.execute(_text(f"SELECT * FROM {table}"))).all()
                # updated_at is the database clock's; by name: a column a migration added
                # (orders.reason, r0009) comes after it
                dump[table] = [tuple(v for k, v in r._mapping.items() if k != "updated_at") for r in rows]
            dumps.append(dump)
        await store.close()
    fast, reference = dumps
    assert all(reference.values()), reference  # every table was written: nothing compares empty
    for table in reference:
        assert fast[table] == reference[table], table


# -- one exclusive active position per symbol, in the database ---------------------------


async def _insert_rows(
    url: str, *written: Position, account: str = "default", exclusive: bool = True
) -> None:
    """Rows written straight into the table, past the store (as another program, or old warden, would)."""
    engine = create_engine(url, op_timeout=5, pooled=False)
    try:
        async with engine.begin() as conn:
            for p in written:
                row = rows.position_row(p, account)
                if not exclusive:
                    del row["exclusive"]  # a schema without the column
                await conn.execute(positions.insert().values(**row))
    finally:
        await engine.dispose()


async def test_the_database_itself_refuses_a_second_exclusive_active_position(
    store: SqlStore, store_url: str
) -> None:
    """Past the store, a plain INSERT of a second exclusive active row on a symbol violates the index."""
    await _insert_rows(store_url, position("p1"), position("p2", exclusive=False))
    await _insert_rows(store_url, position("p3", status=PositionStatus.CLOSED))
    with pytest.raises(IntegrityError, match=r"uq_positions_account_symbol_exclusive|positions\.symbol"):
        await _insert_rows(store_url, position("p4", status=PositionStatus.CLOSING))
    await _insert_rows(store_url, position("p5", symbol=BTC, status=PositionStatus.CLOSING))
    assert {p.id for p in await store.list_positions()} == {"p1", "p2", "p5"}


async def test_accounts_have_their_own_symbols(store: SqlStore, store_url: str) -> None:
    """One exclusive position per symbol *per account*: another account may hold the same symbol."""
    other = await open_store(store_url, exchange="sim", account="other", migrate=False)
    try:
        await store.commit(insert(position("p1")))
        await other.commit(insert(position("p2")))
        with pytest.raises(SymbolBusy) as info:
            await other.commit(insert(position("p3")))
        assert info.value.position_id == "p2"
        assert [p.id for p in await other.list_positions()] == ["p2"]
    finally:
        await other.close()


async def test_a_database_with_stacked_positions_migrates_and_they_stay_unconstrained(store_url: str) -> None:
    """Positions from before 0002 become exclusive = false: stacked ones migrate and keep stacking."""
    await upgrade(store_url, revision="0001")
    before = [position("old1", status=PositionStatus.OPEN), position("old2", status=PositionStatus.PROTECTED)]
    await _insert_rows(store_url, *before, exclusive=False)
    store = await open_store(store_url, exchange="sim")
    try:
        assert await current_revision(store_url) == HEAD
        loaded = {p.id: p for p in await store.list_positions()}
        assert loaded == {p.id: replace(p, exclusive=False) for p in before}
        await store.commit(insert(position("new1")))
        with pytest.raises(SymbolBusy) as info:
            await store.commit(insert(position("new2")))
        assert info.value.position_id == "new1"
    finally:
        await store.close()


async def test_a_close_binding_from_0007_migrates_and_the_id_binds_again_on_another_symbol(
    store_url: str,
) -> None:
    """0008 keys close signals per symbol: a binding stored at 0007 is kept (the signal resent is
    still answered with it) and the same id on another symbol binds its own positions."""
    await upgrade(store_url, revision="0006")
    await upgrade(store_url, revision="0007")
    engine = create_engine(store_url, op_timeout=5, pooled=False)
    try:
        async with engine.begin() as conn:
            row = {"account": "default", "signal_id": "exit-1", "symbol": SOL}
            await conn.execute(close_signals.insert().values(**row, position_ids='["p1"]', at=T0))
    finally:
        await engine.dispose()
    store = await open_store(store_url, exchange="sim")
    try:
        assert await current_revision(store_url) == HEAD
        resent = await store.claim_close_signal("exit-1", SOL, [PositionId("p2")], T0)
        assert resent.position_ids == ("p1",)
        other = await store.claim_close_signal("exit-1", BTC, [PositionId("p3")], T0)
        assert (other.symbol, other.position_ids) == (BTC, ("p3",))
    finally:
        await store.close()


async def test_migration_0002_can_be_undone_and_redone(store_url: str) -> None:
    """Downgrading to 0001 drops the column, index and table (data kept); upgrading again restores them."""
    from alembic import command

    from warden.adapters.db.migrate import alembic_config

    def downgrade(sync: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync
        command.downgrade(config, "0001")

    store = await open_store(store_url, exchange="sim")
    await store.commit(insert(position()))
    await store.close()
    engine = create_engine(store_url, op_timeout=5, pooled=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert await current_revision(store_url) == "0001"
    store = await open_store(store_url, exchange="sim")
    try:
        assert await current_revision(store_url) == HEAD
        assert [(p.id, p.exclusive) for p in await store.list_positions()] == [("p1", False)]
        await store.commit(insert(position("p2")))
        with pytest.raises(SymbolBusy):
            await store.commit(insert(position("p3")))
    finally:
        await store.close()


# -- installation id ----------------------------------------------------------------------


@pytest.fixture
async def other_db(store_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A second, empty database of the same kind as `store_url`."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other' / 'warden.db'}"
        return
    name = f"{db_name(store_url)}_other"
    await pg_admin(store_url, f'CREATE DATABASE "{name}"')
    try:
        yield store_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await pg_admin(store_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _installation_of(url: str, account: str = "default") -> str:
    store = await open_store(url, exchange="sim", account=account)
    try:
        return store.installation_id
    finally:
        await store.close()


async def test_the_installation_id_is_made_on_first_open_and_kept(store_url: str) -> None:
    """The first open writes the account's id; later opens (migrated again or not) read the same one."""
    await upgrade(store_url)
    engine = create_engine(store_url, op_timeout=5, pooled=False)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(installations))).all() == []
        made = await _installation_of(store_url)
        assert re.fullmatch(r"[a-z0-9]{6}", made)
        async with engine.connect() as conn:
            stored = (
                await conn.execute(select(installations.c.account, installations.c.installation_id))
            ).all()
        assert [tuple(r) for r in stored] == [("default", made)]
    finally:
        await engine.dispose()
    assert await _installation_of(store_url) == made
    again = await open_store(store_url, exchange="sim", migrate=False)
    try:
        assert again.installation_id == made
    finally:
        await again.close()


async def test_different_databases_get_different_installation_ids(store_url: str, other_db: str) -> None:
    """Two databases each make their own id, and each keeps its own."""
    first, second = await _installation_of(store_url), await _installation_of(other_db)
    assert first != second
    assert (await _installation_of(store_url), await _installation_of(other_db)) == (first, second)


async def test_each_account_has_its_own_installation_id(store_url: str) -> None:
    """Accounts sharing a database get an id each, kept across opens."""
    a, b = await _installation_of(store_url, "a"), await _installation_of(store_url, "b")
    assert a != b
    assert (await _installation_of(store_url, "a"), await _installation_of(store_url, "b")) == (a, b)


async def test_engines_opening_at_once_agree_on_the_installation_id(store_url: str) -> None:
    """Two first opens racing on a fresh database end with the same id (one row per account)."""
    await upgrade(store_url)
    stores = await asyncio.gather(*(open_store(store_url, exchange="sim", migrate=False) for _ in range(2)))
    try:
        assert stores[0].installation_id == stores[1].installation_id
    finally:
        for s in stores:
            await s.close()
