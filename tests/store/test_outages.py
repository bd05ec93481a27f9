"""Store errors tell the truth: our own connection failing is StoreUnavailable, never FencedOut.

FencedOut means the stored epoch definitely differs from ours. A killed
session, a database refusing connections or a full disk say nothing about the
lease, and the store recovers from them by itself, on new connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from warden.adapters.db.lease import lease_for
from warden.adapters.db.store import SqlStore, open_store
from warden.domain.events import EventKind
from warden.domain.position import Position, PositionStatus
from warden.domain.values import PositionId
from warden.ports import StoreUnavailable

from .builders import D, event, insert, position, step
from .pgtools import admin, refusing_connections, terminate, terminate_all_but_me, until

ACCOUNT = "default"
P1 = PositionId("p1")
SQLITE_DEFAULT_MAX_PAGES = 1_073_741_823  # SQLite's own max_page_count before 3.45


@asynccontextmanager
async def fenced_store(
    url: str, sqlite_max_pages: Callable[[], int] | None = None, **options: Any
) -> AsyncIterator[SqlStore]:
    """A store holding the account's lease at epoch 1 and fenced on it, with p1 committed
    (`options`: open_store's, e.g. op_timeout)."""
    store = await open_store(url, exchange="sim", sqlite_max_pages=sqlite_max_pages, **options)
    lease = lease_for(url, ACCOUNT)
    try:
        assert await lease.try_acquire() == 1
        store.set_epoch(ACCOUNT, 1)
        await store.commit(insert(position(status=PositionStatus.OPEN)))
        yield store
    finally:
        await lease.release()
        await store.close()


Write = Callable[[SqlStore], Awaitable[None]]


async def _commit(store: SqlStore) -> None:
    _, write = step(position(status=PositionStatus.OPEN), status=PositionStatus.PROTECTED, events=[event()])
    await store.commit(write)


async def _append(store: SqlStore) -> None:
    await store.append_events([event(EventKind.STORE_DEGRADED, None, message="outage")])


async def _marks(store: SqlStore) -> None:
    marked = position(status=PositionStatus.OPEN, last_price=D("151.5"), watermark=D("152"), mfe=D("2"))
    await store.save_marks([marked])


WRITES: dict[str, tuple[Write, str]] = {
    "commit": (_commit, "positions"),
    "append_events": (_append, "events"),
    "save_marks": (_marks, "positions"),
}


async def _written(store: SqlStore, kind: str) -> bool:
    """Whether the write `kind` (of WRITES) has landed."""
    stored = await store.get_position(P1)
    assert stored is not None
    if kind == "commit":
        return stored.status is PositionStatus.PROTECTED and len(await store.list_events()) == 1
    if kind == "append_events":
        return len(await store.list_events()) == 1
    return stored.last_price == D("151.5")


async def _untouched(store: SqlStore) -> bool:
    stored = await store.get_position(P1)
    return stored == position(status=PositionStatus.OPEN) and await store.list_events() == []


@pytest.mark.postgres
@pytest.mark.parametrize("kind", WRITES)
async def test_killed_sessions_are_unavailable_never_fenced_out_and_the_store_reconnects(
    pg_url: str, kind: str
) -> None:
    """Every session killed: the next write is StoreUnavailable (never FencedOut) or lands; then it lands."""
    write, _ = WRITES[kind]
    async with fenced_store(pg_url) as store, admin(pg_url) as conn:
        assert await terminate_all_but_me(conn) >= 2  # the store's and the lease's
        try:
            await write(store)
        except StoreUnavailable:
            assert await _untouched(store)
            await write(store)
        assert await _written(store, kind)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", WRITES)
async def test_a_session_killed_mid_transaction_is_unavailable_and_writes_nothing(
    pg_url: str, kind: str
) -> None:
    """The session dies inside the write's transaction: StoreUnavailable, nothing written; later it lands."""
    write, table = WRITES[kind]
    async with fenced_store(pg_url) as store, admin(pg_url) as locker, admin(pg_url) as conn:
        # The locker's transaction holds the table; `conn` watches (pg_stat_activity is
        # a snapshot frozen for the length of a transaction, so not from the locker).
        blocker = locker.transaction()
        await blocker.start()
        await locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        pending = asyncio.ensure_future(write(store))

        async def waiting() -> list[int]:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                f"warden-store:{ACCOUNT}",
            )
            return [r["pid"] for r in rows]

        async def blocked() -> bool:
            return bool(await waiting())

        await until(blocked, "the write to wait on the lock, inside its transaction")
        await terminate(conn, await waiting())
        with pytest.raises(StoreUnavailable):
            await pending
        await blocker.rollback()
        assert await _untouched(store)
        await write(store)
        assert await _written(store, kind)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", WRITES)
async def test_a_database_refusing_connections_is_unavailable_never_fenced_out(
    pg_url: str, kind: str
) -> None:
    """While no session may connect every write is StoreUnavailable; once allowed the same store writes."""
    write, _ = WRITES[kind]
    async with fenced_store(pg_url) as store, admin(pg_url) as conn:
        async with refusing_connections(pg_url):
            await terminate_all_but_me(conn)
            with pytest.raises(StoreUnavailable):  # the session it had is gone
                await write(store)
            with pytest.raises(StoreUnavailable, match="not currently accepting connections"):
                await write(store)  # and no new one is allowed
        assert await _untouched(store)
        await write(store)
        assert await _written(store, kind)


# -- SQLite: a full disk ------------------------------------------------------------------


async def test_a_full_sqlite_disk_is_unavailable_never_fenced_out_and_passes(tmp_path: Path) -> None:
    """SQLITE_FULL (the database may not grow) fails commits, events and marks with StoreUnavailable.

    Nothing is written; once there is room again the same store writes, without reopening.
    """
    pages = [SQLITE_DEFAULT_MAX_PAGES]
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    async with fenced_store(url, sqlite_max_pages=lambda: pages[0]) as store:
        stacked = [position(f"s{i}", exclusive=False) for i in range(60)]
        for p in stacked:
            await store.commit(insert(p))
        big = "x" * 200_000
        grow = _growing_marks(stacked)
        pages[0] = 1  # clamped by SQLite to the current size: no page more
        with pytest.raises(StoreUnavailable, match="full"):
            await store.commit(insert(position("p2", exclusive=False), events=[event(pid="p2", message=big)]))
        with pytest.raises(StoreUnavailable, match="full"):
            await store.append_events([event(pid=None, message=big)])
        with pytest.raises(StoreUnavailable, match="full"):
            await store.save_marks(grow)
        assert await store.get_position(PositionId("p2")) is None
        assert await store.list_events() == []
        assert [p.last_price for p in await store.list_positions(limit=100) if p.id != "p1"] == [None] * 60
        pages[0] = SQLITE_DEFAULT_MAX_PAGES
        await store.commit(insert(position("p2", exclusive=False), events=[event(pid="p2", message=big)]))
        await store.append_events([event(pid=None, message=big)])
        await store.save_marks(grow)
        assert await store.get_position(PositionId("p2")) is not None
        assert len(await store.list_events()) == 2
        loaded = {p.id: p.last_price for p in await store.list_positions(limit=100)}
        assert all(loaded[p.id] == p.last_price for p in grow)


def _growing_marks(stacked: list[Position]) -> list[Position]:
    """Marks with long exact decimals: the rows grow past the pages they fill."""
    long = D("123.4567890123456789012345678901234567890123456789012345678901234567890123456789")
    return [replace(p, last_price=long, watermark=long, mae=long, mfe=long) for p in stacked]


# -- SQLite: the database file deleted or replaced under a running engine ------------------------


@pytest.mark.parametrize("kind", list(WRITES))
async def test_a_sqlite_file_deleted_while_running_fails_writes_never_lands_them_in_the_deleted_file(
    tmp_path: Path, kind: str
) -> None:
    """The database file (and its -wal and -shm) deleted while the engine runs: a cleanup script,
    a trader freeing space. The writer's open connection went on committing into the deleted file
    and every write was reported written: gone for good at the next start, which found an empty
    database. A write fails as StoreUnavailable (never FencedOut) naming what happened."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    async with fenced_store(url) as store:
        await store.append_events([event(EventKind.STORE_DEGRADED, None, message="before")])
        for name in ("warden.db", "warden.db-wal", "warden.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        write, _ = WRITES[kind]
        with pytest.raises(StoreUnavailable, match="deleted or replaced"):
            await write(store)
        with pytest.raises(StoreUnavailable):  # and the next write too: no database there any more
            await write(store)


async def test_a_sqlite_wal_file_deleted_while_running_fails_writes_as_unavailable(tmp_path: Path) -> None:
    """The -wal file deleted while the engine runs (by hand, by a cleanup of "temporary" files):
    commits went on into the deleted file and were reported written; a kill -9 or power cut then
    lost every commit since the last checkpoint, those from before the deletion too. A write
    fails as StoreUnavailable, saying to stop warden cleanly (closing checkpoints what it wrote)."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    async with fenced_store(url) as store:
        await store.commit(insert(position("p2", exclusive=False)))
        for name in ("warden.db-wal", "warden.db-shm"):
            (tmp_path / name).unlink()
        with pytest.raises(StoreUnavailable, match="deleted or replaced"):
            await store.commit(insert(position("p3", exclusive=False)))


async def test_a_sqlite_file_found_deleted_stays_refused_and_no_empty_database_is_made_in_its_place(
    tmp_path: Path,
) -> None:
    """Once the writer found its database file deleted, a later write opened the path anew: SQLite
    made an empty database there, which the next start migrated and ran on, with none of the
    positions. Every write is refused until warden is restarted, and nothing is made at the path."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    async with fenced_store(url) as store:
        for name in ("warden.db", "warden.db-wal", "warden.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="deleted or replaced"):
                await _commit(store)
        assert not (tmp_path / "warden.db").exists()


async def test_a_deleted_sqlite_database_is_not_made_again_by_the_lease_or_the_reads(tmp_path: Path) -> None:
    """Only a migration makes the database file. The lease's check (every couple of seconds) and
    the store's reads opened new connections on the path of a deleted database, and SQLite made
    an empty one there: the next start migrated it and ran with none of the positions, as if
    warden had never traded. They fail instead, and nothing is made at the path."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    store = await open_store(url, exchange="sim")
    lease = lease_for(url, ACCOUNT)
    try:
        assert await lease.try_acquire() == 1
        for name in ("warden.db", "warden.db-wal", "warden.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        await lease.check()
        assert not (tmp_path / "warden.db").exists()
        await store.engine.dispose()  # its pooled read connections: the next read opens a new one
        with pytest.raises(StoreUnavailable):
            await store.get_position(P1)
        assert not (tmp_path / "warden.db").exists()
    finally:
        await lease.release()
        await store.close()
