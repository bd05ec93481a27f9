"""The lease: one writer per account, an epoch that counts acquisitions, and what drops it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from warden.adapters.db.lease import FileLease, LeaseSession, PostgresAdvisoryLease, advisory_key, lease_for
from warden.adapters.db.store import SqlStore, open_store
from warden.ports import LeaseState, StoreUnavailable

from .builders import insert, position
from .conftest import Backend
from .pgtools import (
    Partition,
    admin,
    lock_holders,
    refusing_connections,
    terminate,
    terminate_lease_session,
    until,
)

HELD, LOST, UNREACHABLE = LeaseState.HELD, LeaseState.LOST, LeaseState.UNREACHABLE


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
    # pg_terminate_backend only signals the backend; its lock goes when it has exited.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    epoch = await second.try_acquire()
    while epoch is None and loop.time() < deadline:
        await asyncio.sleep(0.01)  # polling pace only: the condition is re-checked each turn
        epoch = await second.try_acquire()
    assert epoch == 2


# -- check and reacquire: HELD, LOST, UNREACHABLE ------------------------------------------


async def test_check_is_held_for_the_holder_and_lost_for_everyone_else(backend: Backend) -> None:
    """The holder's check answers HELD; a lease that never got it, or let it go, answers LOST."""
    first, second = backend.lease(holder="host-a:1"), backend.lease(holder="host-b:2")
    assert await second.check() is LOST
    assert await first.try_acquire() == 1
    assert await first.check() is HELD
    assert await second.try_acquire() is None
    assert await second.check() is LOST
    await first.release()
    assert await first.check() is LOST


async def test_reacquire_while_held_keeps_the_epoch(backend: Backend) -> None:
    """reacquire by the holder returns its epoch unchanged; a lease never acquired gets None."""
    first, second = backend.lease(holder="host-a:1"), backend.lease(holder="host-b:2")
    assert await second.reacquire() is None
    assert await first.try_acquire() == 1
    assert await first.reacquire() == 1
    assert await first.check() is HELD
    assert await second.try_acquire() is None


async def test_an_epoch_moved_past_ours_is_lost(backend: Backend) -> None:
    """When the stored epoch moves past the holder's, check answers LOST (definite) and reacquire None."""
    lease = backend.lease()
    assert await lease.try_acquire() == 1
    await backend.move_epoch()
    assert await lease.check() is LOST
    assert await lease.reacquire() is None
    assert not await lease.still_held()


@contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """Another connection holding SQLite's write lock: the lease's epoch cannot be written meanwhile."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_sqlite_lease_stays_held_through_database_trouble(tmp_path: Path) -> None:
    """The flock does not depend on the database: while the epoch cannot be renewed, the lease is HELD."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    store = await open_store(url, exchange="sim")
    lease = lease_for(url, "acct", op_timeout=0.2)
    try:
        assert await lease.try_acquire() == 1
        with sqlite_write_lock(tmp_path / "warden.db"):
            assert await lease.check() is HELD
            assert await lease.still_held()
            assert await lease.reacquire() == 1
        assert await lease.check() is HELD
        other = lease_for(url, "acct", holder="host-b:2")
        assert await other.try_acquire() is None
    finally:
        await lease.release()
        await store.close()


@pytest.mark.postgres
async def test_a_killed_lease_session_is_unreachable_then_reacquired_with_the_same_epoch(
    pg_url: str, backend_pg: Backend
) -> None:
    """pg_terminate_backend on the lease's session drops its lock: UNREACHABLE, then the same epoch again."""
    first, second = backend_pg.lease(holder="host-a:1"), backend_pg.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    async with admin(pg_url) as conn:
        names = await conn.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE pid = ANY($1::int[])",
            await lock_holders(conn, "acct"),
        )
        assert [r["application_name"] for r in names] == ["warden-lease:acct"]
        old = await terminate_lease_session(conn, "acct")
        assert await first.check() is UNREACHABLE
        assert not await first.still_held()
        assert await first.check() is UNREACHABLE
        assert await first.reacquire() == 1
        [new] = await lock_holders(conn, "acct")
    assert new != old
    assert await first.check() is HELD
    assert await second.try_acquire() is None
    assert second.holder() == "host-a:1"
    backend_pg.store.set_epoch("acct", 1)
    await backend_pg.store.commit(insert(position()))


@pytest.mark.postgres
async def test_a_lease_is_unreachable_while_the_database_refuses_connections(
    pg_url: str, backend_pg: Backend
) -> None:
    """With the lease's session gone and no new ones allowed: UNREACHABLE; once allowed, the same epoch."""
    lease = backend_pg.lease()
    assert await lease.try_acquire() == 1
    async with admin(pg_url) as conn:
        async with refusing_connections(pg_url):
            await terminate_lease_session(conn, "acct")
            assert await lease.check() is UNREACHABLE
            with pytest.raises(StoreUnavailable, match="not currently accepting connections"):
                await lease.reacquire()
            assert await lease.check() is UNREACHABLE
            assert await lock_holders(conn, "acct") == []
        assert await lease.reacquire() == 1
        assert len(await lock_holders(conn, "acct")) == 1
    assert await lease.check() is HELD


@pytest.mark.postgres
async def test_a_lease_taken_by_another_engine_meanwhile_is_lost(pg_url: str, backend_pg: Backend) -> None:
    """Another engine grabbing the lock while we were cut off: reacquire None, check LOST, for good."""
    first, second = backend_pg.lease(holder="host-a:1"), backend_pg.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    async with admin(pg_url) as conn:
        await terminate_lease_session(conn, "acct")
        assert await first.check() is UNREACHABLE  # nobody has it yet
        assert await second.try_acquire() == 2
        assert await first.reacquire() is None
        assert await first.check() is LOST
        assert first.holder() == "host-b:2"
        assert await second.check() is HELD
        assert len(await lock_holders(conn, "acct")) == 1


@pytest.mark.postgres
async def test_check_sees_another_engine_holding_the_lock_as_lost(pg_url: str, backend_pg: Backend) -> None:
    """After our session died and another engine locked it, check says LOST without taking anything."""
    first, second = backend_pg.lease(holder="host-a:1"), backend_pg.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    async with admin(pg_url) as conn:
        await terminate_lease_session(conn, "acct")
        assert await second.try_acquire() == 2
    assert await first.check() is LOST
    assert await first.reacquire() is None
    assert await second.check() is HELD


@pytest.mark.postgres
async def test_a_lease_taken_and_let_go_meanwhile_is_lost(pg_url: str, backend_pg: Backend) -> None:
    """Another engine took the lease and let it go while we were cut off: the epoch moved, reacquire None.

    The lock is free by then, but we must not keep it: a third engine acquires at once.
    """
    first, second = backend_pg.lease(holder="host-a:1"), backend_pg.lease(holder="host-b:2")
    assert await first.try_acquire() == 1
    async with admin(pg_url) as conn:
        await terminate_lease_session(conn, "acct")
        assert await first.check() is UNREACHABLE  # nobody has it yet
        assert await second.try_acquire() == 2
        await second.release()
        assert await first.reacquire() is None
        assert await first.check() is LOST
        assert await lock_holders(conn, "acct") == []
    assert await backend_pg.lease(holder="host-c:3").try_acquire() == 3


@pytest.mark.postgres
async def test_our_own_session_cut_off_by_the_network_is_not_another_engine(
    pg_url: str, backend_pg: Backend
) -> None:
    """A partition: our session still holds the lock server-side while we cannot reach it.

    That is not LOST: check answers UNREACHABLE, reacquire stays in doubt
    (StoreUnavailable) while the old session lingers, and once the server ends
    it, reacquire returns the same epoch. Nobody else gets the lease meanwhile.
    """
    partition = Partition(pg_url)
    through = await partition.start()
    lease = lease_for(through, "acct", holder="host-a:1", op_timeout=0.5)
    other = backend_pg.lease(holder="host-b:2")
    try:
        assert await lease.try_acquire() == 1
        async with admin(pg_url) as conn:
            [old] = await lock_holders(conn, "acct")
            partition.freeze()
            assert await lease.check() is UNREACHABLE
            assert await lock_holders(conn, "acct") == [old]
            assert await lease.check() is UNREACHABLE
            with pytest.raises(StoreUnavailable, match="previous session"):
                await lease.reacquire()
            assert await other.try_acquire() is None
            partition.heal()

            async def ended() -> bool:
                return not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", old)

            await until(ended, "the partitioned session to end")
            await until(lambda: _free(conn), "its lock to go")
            assert await lease.reacquire() == 1
        assert await lease.check() is HELD
        assert await other.try_acquire() is None
    finally:
        await lease.release()
        await partition.close()


async def _free(conn: asyncpg.Connection) -> bool:
    return not await lock_holders(conn, "acct")


@pytest.mark.postgres
async def test_one_session_holds_the_leases_of_many_accounts_and_lets_each_go_alone(
    pg_url: str, backend_pg: Backend
) -> None:
    """An engine's accounts share one lease session (one connection, not one per account): each
    lease is its own, another engine is refused every one, and letting one go frees only it."""
    session = LeaseSession(pg_url, name="engine-a")
    mine = [lease_for(pg_url, name, holder="engine-a", session=session) for name in ("one", "two", "three")]
    other = [backend_pg.lease(name, holder="engine-b") for name in ("one", "two", "three")]
    try:
        assert [await lease.try_acquire() for lease in mine] == [1, 1, 1]
        assert [await lease.try_acquire() for lease in other] == [None, None, None]
        async with admin(pg_url) as conn:
            pids = {name: await lock_holders(conn, name) for name in ("one", "two", "three")}
            assert len({pid for held in pids.values() for pid in held}) == 1, pids
            await mine[1].release()
            assert await lock_holders(conn, "two") == []
            assert await lock_holders(conn, "one") == pids["one"]
        assert await other[1].try_acquire() == 2
        assert [await lease.check() for lease in mine] == [HELD, LOST, HELD]
        assert await mine[1].try_acquire() is None and mine[1].holder() == "engine-b"
    finally:
        for lease in mine:
            await lease.release()
        await session.close()


@pytest.mark.postgres
async def test_a_killed_shared_session_puts_every_lease_on_it_in_doubt_then_each_keeps_its_epoch(
    pg_url: str, backend_pg: Backend
) -> None:
    """The shared session dies (pg_terminate_backend): every lease on it is UNREACHABLE, none is
    lost. Another engine takes one of them meanwhile: that one is lost; the others reacquire
    their own epochs, all on one new session."""
    session = LeaseSession(pg_url, name="engine-a")
    mine = [lease_for(pg_url, name, holder="engine-a", session=session) for name in ("one", "two", "three")]
    try:
        assert [await lease.try_acquire() for lease in mine] == [1, 1, 1]
        async with admin(pg_url) as conn:
            [old] = await lock_holders(conn, "one")
            await terminate(conn, [old])
            assert [await lease.check() for lease in mine] == [UNREACHABLE] * 3
            assert await backend_pg.lease("two", holder="engine-b").try_acquire() == 2
            assert [await lease.reacquire() for lease in mine] == [1, None, 1]
            [new] = await lock_holders(conn, "one")
            assert new != old and await lock_holders(conn, "three") == [new]
            assert await lock_holders(conn, "two") != [new]
        assert [await lease.check() for lease in mine] == [HELD, LOST, HELD]
        assert mine[1].holder() == "engine-b"
    finally:
        for lease in mine:
            await lease.release()
        await session.close()


@pytest.mark.postgres
async def test_a_lease_in_doubt_names_its_own_engine_not_one_that_held_it_before(
    pg_url: str, backend_pg: Backend
) -> None:
    """An engine that stood by while host-b held the account, then took it over, has its session
    killed: the lease is in doubt (nobody else took it), and its holder is this engine, as
    /accounts and the dashboard show it (lease_held: true). It named host-b, which had let go."""
    first, second = backend_pg.lease(holder="host-a:1"), backend_pg.lease(holder="host-b:2")
    assert await second.try_acquire() == 1
    assert await first.try_acquire() is None
    assert first.holder() == "host-b:2"
    await second.release()
    assert await first.try_acquire() == 2
    assert first.holder() == "host-a:1"
    async with admin(pg_url) as conn:
        await terminate_lease_session(conn, "acct")
    assert await first.check() is UNREACHABLE
    assert first.holder() == "host-a:1"
    assert await first.reacquire() == 2
    assert first.holder() == "host-a:1"
    await first.release()


# -- a lease with a timeout (a fleet on several hosts) ------------------------------------------

TIMEOUT = 1.0
"""Seconds; the settings take 10 at least, the lease itself any."""


@pytest.mark.postgres
async def test_with_a_timeout_a_partitioned_holder_is_ended_and_its_lease_taken_once_silent_that_long(
    pg_url: str, backend_pg: Backend
) -> None:
    """A host that died (or is cut off) keeps its session open server-side, and with it the lock,
    until the server's TCP keepalive notices: two hours by default. With a timeout, a taker ends
    that session once the holder has not renewed for the timeout, and takes the lease."""
    partition = Partition(pg_url)
    through = await partition.start()
    holder = lease_for(through, "acct", holder="host-a:1", op_timeout=0.5, timeout=TIMEOUT)
    taker = lease_for(pg_url, "acct", holder="host-b:2", timeout=TIMEOUT)
    try:
        asked = asyncio.get_running_loop().time()
        assert await holder.try_acquire() == 1
        async with admin(pg_url) as conn:
            [old] = await lock_holders(conn, "acct")
            partition.freeze()
            assert await taker.try_acquire() is None  # renewed just now: not yet
            assert taker.holder() == "host-a:1"

            async def taken() -> bool:
                return await taker.try_acquire() == 2

            await until(taken, "the silent holder's lease to be taken", timeout=10)
            assert asyncio.get_running_loop().time() - asked >= TIMEOUT  # never sooner
            assert await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", old) == 0
            assert await lock_holders(conn, "acct") != [old]
        partition.heal()
        assert await holder.check() is LOST
        assert await holder.reacquire() is None
        assert await taker.check() is HELD
    finally:
        await holder.release()
        await taker.release()
        await partition.close()


@pytest.mark.postgres
async def test_with_a_timeout_a_lock_freed_by_a_fault_is_not_taken_until_its_holder_is_silent_that_long(
    pg_url: str, backend_pg: Backend
) -> None:
    """The holder's session dropped by a fault (its process alive, perhaps cut off and still
    protecting): the lock is free at once, but its holder may act until half the timeout after
    its last renewal. A taker waits out the whole timeout, then takes it; the holder, back, has lost it."""
    holder = lease_for(pg_url, "acct", holder="host-a:1", timeout=TIMEOUT)
    taker = lease_for(pg_url, "acct", holder="host-b:2", timeout=TIMEOUT)
    try:
        asked = asyncio.get_running_loop().time()
        assert await holder.try_acquire() == 1
        async with admin(pg_url) as conn:
            await terminate_lease_session(conn, "acct")
            assert await taker.try_acquire() is None
            assert taker.holder() == "host-a:1"
            assert isinstance(taker, PostgresAdvisoryLease)
            assert taker.free_in is not None and 0 < taker.free_in <= TIMEOUT
            assert await lock_holders(conn, "acct") == []  # it let the lock go again

            async def taken() -> bool:
                return await taker.try_acquire() == 2

            await until(taken, "the lease to be taken after the timeout", timeout=10)
            assert asyncio.get_running_loop().time() - asked >= TIMEOUT
        assert await holder.check() is LOST
    finally:
        await holder.release()
        await taker.release()


@pytest.mark.postgres
async def test_with_a_timeout_a_released_lease_is_taken_at_once(pg_url: str, backend_pg: Backend) -> None:
    """Let go on purpose (a clean stop, a hand-over): nothing to wait for."""
    holder = lease_for(pg_url, "acct", holder="host-a:1", timeout=60)
    taker = lease_for(pg_url, "acct", holder="host-b:2", timeout=60)
    try:
        assert await holder.try_acquire() == 1
        assert await taker.try_acquire() is None
        await holder.release()
        assert await taker.try_acquire() == 2
        assert await holder.try_acquire() is None
    finally:
        await holder.release()
        await taker.release()


@pytest.mark.postgres
async def test_with_a_timeout_an_engine_takes_its_own_lease_back_at_once_but_not_one_by_its_name(
    pg_url: str, backend_pg: Backend
) -> None:
    """The engine whose session was dropped takes its lease back at once: the row still names
    its epoch, so nobody else was acting. Another engine under the same name (a misconfigured
    fleet sharing one `engine_name`, or a restart) is another process: it waits the timeout out,
    since the first may be alive, cut off, and still acting."""
    first = lease_for(pg_url, "acct", holder="engine-1", timeout=TIMEOUT)
    same_name = lease_for(pg_url, "acct", holder="engine-1", timeout=TIMEOUT)
    try:
        asked = asyncio.get_running_loop().time()
        assert await first.try_acquire() == 1
        async with admin(pg_url) as conn:
            await terminate_lease_session(conn, "acct")
        assert await same_name.try_acquire() is None
        assert await first.try_acquire() == 2  # its own: at once
        async with admin(pg_url) as conn:
            await terminate_lease_session(conn, "acct")

        async def taken() -> bool:
            return await same_name.try_acquire() == 3

        await until(taken, "the other process under the name to take it after the timeout", timeout=10)
        assert asyncio.get_running_loop().time() - asked >= TIMEOUT
    finally:
        await first.release()
        await same_name.release()


@pytest.mark.postgres
async def test_with_a_timeout_a_lock_freed_by_a_fault_still_names_its_holder_until_the_timeout(
    pg_url: str, backend_pg: Backend
) -> None:
    """A standby at capacity looks the holder up: a lock freed by a fault, its holder renewed
    within the timeout, is still that holder's (it may be acting), not "held by no engine"."""
    holder = lease_for(pg_url, "acct", holder="host-a:1", timeout=60)
    looker = lease_for(pg_url, "acct", holder="host-b:2", timeout=60)
    try:
        assert await holder.try_acquire() == 1
        async with admin(pg_url) as conn:
            await terminate_lease_session(conn, "acct")
        assert await looker.look() == "host-a:1"
        await holder.release()  # in doubt, its session gone: nothing to mark
        assert await looker.look() == "host-a:1"
    finally:
        await holder.release()
        await looker.release()


@pytest.mark.postgres
async def test_with_a_timeout_releasing_one_of_many_leases_on_a_shared_session_leaves_the_others(
    pg_url: str, backend_pg: Backend
) -> None:
    """A fleet engine's leases share one session. Releasing one hands it over at once (the row
    marked expired) and a taker trying at any moment never ends that session, which holds the
    engine's other accounts' locks."""
    session = LeaseSession(pg_url, name="engine-a")
    a1 = lease_for(pg_url, "a1", holder="engine-a", timeout=60, session=session)
    a2 = lease_for(pg_url, "a2", holder="engine-a", timeout=60, session=session)
    taker = lease_for(pg_url, "a1", holder="engine-b", timeout=60)
    try:
        assert await a1.try_acquire() == 1 and await a2.try_acquire() == 1
        generation = session.generation
        assert isinstance(a1, PostgresAdvisoryLease)
        real_expire, tried = a1._table.expire, []

        async def expire_then_a_taker_tries(conn: Any, epoch: int) -> None:
            await real_expire(conn, epoch)
            await conn.commit()
            tried.append(await taker.try_acquire())  # between the release's two steps

        a1._table.expire = expire_then_a_taker_tries  # type: ignore[method-assign]
        await a1.release()
        assert tried == [2]
        assert session.alive == generation
        assert await a2.check() is HELD
    finally:
        await taker.release()
        await a2.release()
        await session.close()


def test_a_lease_timeout_on_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        lease_for(f"sqlite:///{tmp_path}/w.db", "acct", timeout=30)


@pytest.mark.postgres
async def test_with_a_timeout_a_holder_frozen_mid_write_does_not_block_the_takeover(
    pg_url: str, backend_pg: Backend
) -> None:
    """Every write of an engine first takes a share lock on its lease row (the fence). A holder
    whose host froze inside a write keeps that lock as long as its session lives, and the taker's
    epoch bump waits on it: the takeover would hang for hours. The engine's sessions have the
    server end a transaction left idle for half the lease timeout (create_engine), so it goes."""
    from sqlalchemy import select

    from warden.adapters.db.engine import create_engine
    from warden.adapters.db.schema import leases

    partition = Partition(pg_url)
    through = await partition.start()
    holder = lease_for(through, "acct", holder="host-a:1", op_timeout=0.5, timeout=TIMEOUT)
    taker = lease_for(pg_url, "acct", holder="host-b:2", op_timeout=0.5, timeout=TIMEOUT)
    writes = create_engine(through, op_timeout=0.5, idle_in_transaction=TIMEOUT / 2)
    try:
        assert await holder.try_acquire() == 1
        conn = await writes.connect()
        fence = select(leases.c.epoch).where(leases.c.account == "acct").with_for_update(read=True)
        assert (await conn.execute(fence)).scalar_one() == 1  # mid-write: the fence's lock held
        partition.freeze()

        async def taken() -> bool:
            with contextlib.suppress(StoreUnavailable):
                return await taker.try_acquire() == 2
            return False

        await until(taken, "the lease to be taken from a holder frozen mid-write", timeout=10)
        await conn.invalidate()
    finally:
        await holder.release()
        await taker.release()
        await writes.dispose()
        await partition.close()


@pytest.mark.postgres
async def test_with_a_timeout_a_taker_never_ends_a_live_session_holding_the_lock(
    pg_url: str, backend_pg: Backend
) -> None:
    """The row names a holder silent for longer than the timeout, but the lock is held by a
    session that is alive: another taker between its lock and its epoch bump. A second taker
    must not end it (on a fleet engine it carries every account's lock): it waits its turn."""
    holder = lease_for(pg_url, "acct", holder="host-a:1", timeout=TIMEOUT)
    second = lease_for(pg_url, "acct", holder="host-c:3", timeout=TIMEOUT)
    try:
        assert await holder.try_acquire() == 1
        async with admin(pg_url) as conn, admin(pg_url) as first_taker:
            await terminate_lease_session(conn, "acct")

            async def silent() -> bool:
                age = await conn.fetchval(
                    "SELECT extract(epoch FROM clock_timestamp() - renewed_at) FROM leases"
                    " WHERE account = 'acct'"
                )
                return bool(age > TIMEOUT)

            await until(silent, "the holder to be silent for the timeout")
            assert await first_taker.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key("acct"))
            pid = await first_taker.fetchval("SELECT pg_backend_pid()")
            assert await second.try_acquire() is None
            assert await lock_holders(conn, "acct") == [pid]  # not ended
    finally:
        await holder.release()
        await second.release()


@pytest.mark.postgres
async def test_with_a_timeout_a_taker_checking_a_lock_freed_by_a_fault_does_not_make_the_holder_lose_it(
    pg_url: str, backend_pg: Backend
) -> None:
    """The holder's session dropped by a fault; a standby's try locks the freed lock for the
    instant it takes to see the holder renewed within the timeout, then lets it go. A holder
    that looks (or locks again) in that instant has not lost its lease: the epoch is still its
    own, and no taker may bump it before the timeout. It is in doubt, then locks it again."""
    holder = lease_for(pg_url, "acct", holder="host-a:1", timeout=60)
    try:
        assert await holder.try_acquire() == 1
        async with admin(pg_url) as conn:
            await terminate_lease_session(conn, "acct")
            await conn.execute("SELECT pg_advisory_lock($1)", advisory_key("acct"))  # a taker checking
            assert await holder.check() is UNREACHABLE
            with pytest.raises(StoreUnavailable):
                await holder.reacquire()
            await conn.execute("SELECT pg_advisory_unlock($1)", advisory_key("acct"))  # not done: let go
        assert await holder.reacquire() == 1
        assert await holder.check() is HELD
    finally:
        await holder.release()


@pytest.mark.postgres
async def test_a_lease_call_cancelled_halfway_on_a_shared_session_leaves_the_other_accounts_locks(
    pg_url: str, backend_pg: Backend
) -> None:
    """An account's tasks are cancelled (it stops, or its task group ends on an error) while its
    lease check waits on the shared session. Cancelled halfway, the call dropped the session,
    and every other account's lock on it went too: in doubt, degraded, open to a standby. The
    call is finished first (bounded by op_timeout), then the cancellation goes on."""
    session = LeaseSession(pg_url, name="engine-a")
    mine = [lease_for(pg_url, name, holder="engine-a", session=session) for name in ("one", "two")]
    try:
        assert [await lease.try_acquire() for lease in mine] == [1, 1]
        async with admin(pg_url) as conn, admin(pg_url) as blocker:
            [pid] = await lock_holders(conn, "two")
            holding_row = blocker.transaction()
            await holding_row.start()
            await blocker.execute("SELECT 1 FROM leases WHERE account = 'one' FOR UPDATE")
            checking = asyncio.create_task(mine[0].check())

            async def waiting() -> bool:
                state = await conn.fetchval(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
                )
                return bool(state == "Lock")

            await until(waiting, "the check to wait on the row")
            checking.cancel()
            await holding_row.rollback()
            with pytest.raises(asyncio.CancelledError):
                await checking
            assert await lock_holders(conn, "one") == [pid]
            assert await lock_holders(conn, "two") == [pid]
        assert [await lease.check() for lease in mine] == [HELD, HELD]
    finally:
        for lease in mine:
            await lease.release()
        await session.close()
