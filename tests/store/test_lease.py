"""The lease: one writer per account, an epoch that counts acquisitions, and what drops it."""

from __future__ import annotations

import asyncpg
import pytest

from warden.adapters.db.lease import FileLease, PostgresAdvisoryLease, advisory_key, lease_for
from warden.adapters.db.store import SqlStore

from .conftest import Backend


async def test_a_second_acquirer_is_refused_and_told_the_holder(backend: Backend) -> None:
    """While one engine holds the lease another gets None and can name the holder."""
    first, second = backend.lease(holder="host-a:1"), backend.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    assert await second.try_acquire() is None
    assert second.holder() == "host-a:1"
    assert first.holder() == "host-a:1"
    assert await first.still_held()
    assert not await second.still_held()


async def test_release_lets_another_acquire_with_the_next_epoch(backend: Backend) -> None:
    """After release the lease is free, and the next holder's epoch is one more."""
    first, second = backend.lease(holder="host-a:1"), backend.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    await first.release()
    assert not await first.still_held()
    assert await second.try_acquire() == 2
    assert second.holder() == "host-b:2"
    assert await first.try_acquire() is None
    assert first.holder() == "host-b:2"


async def test_acquiring_again_while_holding_keeps_the_epoch(backend: Backend) -> None:
    """try_acquire by the holder is idempotent: same epoch, no increment."""
    lease = backend.lease()
    assert await lease.try_acquire() == 1
    assert await lease.try_acquire() == 1


async def test_accounts_have_independent_leases(backend: Backend) -> None:
    """Holding one account's lease does not block another account's."""
    assert await backend.lease("acct-1", "host-a:1").try_acquire() == 1
    assert await backend.lease("acct-2", "host-b:2").try_acquire() == 1


async def test_the_loser_stays_out_until_release(backend: Backend) -> None:
    """Repeated attempts by a second engine keep failing and do not move the epoch."""
    first, second = backend.lease(holder="host-a:1"), backend.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    for _ in range(3):
        assert await second.try_acquire() is None
    assert await first.still_held()


def test_lease_for_picks_the_lock_that_fits_the_database() -> None:
    """SQLite gets a lock file beside the database, PostgreSQL an advisory lock."""
    assert isinstance(lease_for("sqlite:////tmp/warden-x/w.db", "main"), FileLease)
    assert isinstance(lease_for("postgresql://u@h/db", "main"), PostgresAdvisoryLease)


def test_advisory_keys_are_stable_and_distinct() -> None:
    """An account always maps to the same signed 64-bit key; different accounts differ."""
    assert advisory_key("main") == advisory_key("main")
    assert advisory_key("main") != advisory_key("main2")
    assert -(2**63) <= advisory_key("main") < 2**63


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_the_lock_file_names_the_holder(store: SqlStore, store_url: str) -> None:
    """The SQLite lock file sits beside the database and holds `host:pid` of the holder."""
    lease = lease_for(store_url, "main", holder="box:42")
    assert isinstance(lease, FileLease)
    try:
        assert await lease.try_acquire() == 1
        assert lease.path.name == "warden.db.main.lock"
        assert lease.path.read_text() == "box:42"
    finally:
        await lease.release()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_deleted_lock_file_is_no_longer_held(store: SqlStore, store_url: str) -> None:
    """If the lock file is removed the holder notices (a new file could be locked by someone else)."""
    lease = lease_for(store_url, "main")
    assert isinstance(lease, FileLease)
    try:
        assert await lease.try_acquire() == 1
        lease.path.unlink()
        assert not await lease.still_held()
    finally:
        await lease.release()


@pytest.mark.postgres
async def test_a_dropped_postgres_connection_releases_the_lease(pg_url: str, backend_pg: Backend) -> None:
    """Killing the holder's session frees the advisory lock: another engine takes it, the old one knows."""
    first, second = backend_pg.lease(holder="host-a:1"), backend_pg.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    assert await second.try_acquire() is None
    admin = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
    try:
        key = advisory_key("acct")
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = $1",
            key,
        )
    finally:
        await admin.close()
    assert killed == 1
    assert not await first.still_held()
    assert await second.try_acquire() == 2
