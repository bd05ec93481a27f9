"""The lease: one writer per account (I6), with a fencing epoch.

Holding the lease is a lock the operating system or the database drops when
its holder dies: an `flock` on a file beside the SQLite database, or a
PostgreSQL session advisory lock on a connection kept for the life of the
lease. Each acquisition increments `leases.epoch` for the account and returns
it; the store, given that epoch (`SqlStore.set_epoch`), refuses to write once
the epoch has moved on, so a stale engine's late write cannot land.

Losing our own connection to the database is not losing the lease. `check`
answers HELD, LOST (another engine holds the lock, or the epoch moved past
ours: definite) or UNREACHABLE (our connection failed: we cannot tell), and
after UNREACHABLE `reacquire` takes the lock again and keeps the same epoch if
nobody took it meanwhile. Since every acquisition bumps the epoch, an epoch
that is still ours proves nobody else held the lease in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from warden.adapters.db import urls
from warden.adapters.db.engine import create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.schema import leases
from warden.ports import Lease, LeaseState, StoreError, StoreUnavailable

Now = Callable[[], datetime]
RELEASED_AT = datetime(2000, 1, 1, tzinfo=UTC)
ROW_WAIT = 1.0
"""Seconds a renewal (PostgreSQL) waits for its lease row locked by another session (`lock_timeout`)
in one try: the lease session is an engine's, shared by its accounts, and one account's row locked
(an operator's open transaction) must not hold it up, nor drop it with every account's lock. Tried
again, the session let go in between, until db_timeout (`check`)."""
LOCK_NOT_AVAILABLE = "55P03"
"""What `renewed_at` reads after a release on a lease with a timeout: long expired."""


@dataclass(frozen=True)
class Renewal:
    epoch: int
    holder: str
    age: float
    """Seconds since the holder last renewed, on the database's clock."""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def advisory_key(account: str) -> int:
    """A stable signed 64-bit advisory-lock key for an account name."""
    digest = hashlib.blake2b(f"warden-lease:{account}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lease_for(
    url: str,
    account: str,
    *,
    holder: str | None = None,
    op_timeout: float = 5.0,
    now: Now | None = None,
    session: LeaseSession | None = None,
    timeout: float | None = None,
) -> FileLease | PostgresAdvisoryLease:
    """The lease that fits the database at `url`; on PostgreSQL, on `session` if given (one
    shared by an engine's accounts), else on a session of its own, with `timeout` if given
    (PostgresAdvisoryLease). SQLite's lease is a file lock on one machine: it takes no timeout."""
    if urls.is_sqlite(urls.parse(url)):
        if timeout is not None:
            raise ValueError("a lease timeout needs PostgreSQL (SQLite's lease is a lock file on one host)")
        return FileLease(url, account, holder=holder, op_timeout=op_timeout, now=now)
    return PostgresAdvisoryLease(
        url, account, holder=holder, op_timeout=op_timeout, now=now, session=session, timeout=timeout
    )


class _EpochTable:
    """The `leases` rows: bump the epoch on acquisition, touch `renewed_at` while held.

    `db_clock`: `renewed_at` is the database server's time, not this host's, so engines on
    different hosts compare ages on one clock (a lease with a timeout)."""

    def __init__(
        self,
        url: str,
        account: str,
        holder: str | None,
        op_timeout: float,
        now: Now | None,
        db_clock: bool = False,
    ):
        self.engine: AsyncEngine = create_engine(
            url,
            op_timeout=op_timeout,
            pooled=False,
            application_name=f"warden-lease:{account}",
            create_file=False,  # made by the migration; never again, empty, if deleted
        )
        self.account = account
        self.me = holder or default_holder()
        self.op_timeout = op_timeout
        self.where = urls.redact(url)
        self.now = now or (lambda: datetime.now(UTC))
        self.db_clock = db_clock

    def _stamp(self) -> Any:
        return func.clock_timestamp() if self.db_clock else self.now()

    async def bump(self, conn: AsyncConnection) -> int:
        now = self._stamp()
        values = _insert_for(conn.dialect.name)(leases).values(
            account=self.account, epoch=1, holder=self.me, acquired_at=now, renewed_at=now
        )
        stmt = values.on_conflict_do_update(
            index_elements=[leases.c.account],
            set_={"epoch": leases.c.epoch + 1, "holder": self.me, "acquired_at": now, "renewed_at": now},
        ).returning(leases.c.epoch)
        return int((await conn.execute(stmt)).scalar_one())

    async def touch(self, conn: AsyncConnection, epoch: int) -> bool:
        stmt = (
            update(leases)
            .where(leases.c.account == self.account, leases.c.epoch == epoch)
            .values(renewed_at=self._stamp())
        )
        return (await conn.execute(stmt)).rowcount == 1

    async def renew(self, conn: AsyncConnection, epoch: int, wait: float) -> bool | None:
        """`touch` on PostgreSQL, waiting at most `wait` seconds for the row: None if another
        session holds a lock on it meanwhile (rolled back; the session is fine)."""
        # (at least 1 ms: 0 would be no limit at all)
        await conn.execute(text(f"SET LOCAL lock_timeout = '{max(1, int(wait * 1000))}ms'"))
        try:
            return await self.touch(conn, epoch)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
        await conn.rollback()
        return None

    async def expire(self, conn: AsyncConnection, epoch: int) -> None:
        """Let go on purpose: the row reads as renewed long ago, so a taker need not wait out
        the timeout (only while `epoch` is still the row's: never another holder's)."""
        stmt = (
            update(leases)
            .where(leases.c.account == self.account, leases.c.epoch == epoch)
            .values(renewed_at=RELEASED_AT)
        )
        await conn.execute(stmt)

    async def last_renewal(self, conn: AsyncConnection) -> Renewal | None:
        """The row's epoch and holder, and the seconds since it last renewed (the database's clock)."""
        age = func.extract("epoch", func.clock_timestamp() - leases.c.renewed_at)
        row = (
            await conn.execute(
                select(leases.c.epoch, leases.c.holder, age).where(leases.c.account == self.account)
            )
        ).one_or_none()
        return None if row is None else Renewal(int(row[0]), str(row[1]), float(row[2]))

    async def holder_row(self, conn: AsyncConnection) -> str | None:
        return await conn.scalar(select(leases.c.holder).where(leases.c.account == self.account))

    def guarded(self, what: str) -> AbstractAsyncContextManager[None]:
        return guarded(f"lease {self.account!r}: {what}", self.where, self.op_timeout)


class FileLease:
    """SQLite: an exclusive `flock` on `<db>.<account>.lock`; the file names the holder."""

    def __init__(
        self,
        url: str,
        account: str,
        *,
        holder: str | None = None,
        op_timeout: float = 5.0,
        now: Now | None = None,
    ) -> None:
        self._table = _EpochTable(url, account, holder, op_timeout, now)
        db = urls.sqlite_path(urls.parse(url))
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", account)
        self.path = db.with_name(f"{db.name}.{slug}.lock")
        self._fd: int | None = None
        self._epoch: int | None = None

    async def try_acquire(self) -> int | None:
        if await self.still_held():
            return self._epoch
        await self.release()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            _write_holder(fd, self._table.me)
            self._epoch = await self._bump()
        except BaseException:
            await self.release()
            raise
        return self._epoch

    def holder(self) -> str | None:
        if self._fd is not None:
            return self._table.me
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    async def look(self) -> str | None:
        """The name in the lock file while its flock is held; None when nobody holds it (a
        shared lock taken and dropped at once: a taker that tries in that instant tries again
        on its next round)."""
        if self._fd is not None:
            return self._table.me
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder()
        finally:
            os.close(fd)  # and with it the shared lock, if this probe got it
        return None

    async def release(self) -> None:
        fd, self._fd, self._epoch = self._fd, None, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        await self._table.engine.dispose()

    async def still_held(self) -> bool:
        return await self.check() is LeaseState.HELD

    async def check(self) -> LeaseState:
        """The flock is the lock: database trouble leaves it HELD; only a moved epoch makes it LOST.

        Nobody else can bump the epoch without the flock, so an epoch that cannot
        be read is still ours. A lock file deleted (or replaced) under us is LOST:
        another engine may lock the new file.
        """
        if self._fd is None or self._epoch is None or not _same_file(self._fd, self.path):
            return LeaseState.LOST
        try:
            async with self._table.guarded("renew"), self._table.engine.begin() as conn:
                held = await self._table.touch(conn, self._epoch)
        except StoreError:
            return LeaseState.HELD
        return LeaseState.HELD if held else LeaseState.LOST

    async def reacquire(self) -> int | None:
        """Never in doubt (the flock does not depend on the database): the epoch while HELD, else None."""
        return self._epoch if await self.check() is LeaseState.HELD else None

    async def _bump(self) -> int:
        async with self._table.guarded("acquire"), self._table.engine.begin() as conn:
            return await self._table.bump(conn)


class LeaseSession:
    """The PostgreSQL session that holds advisory locks: one lease's own, or one shared by every
    account an engine serves. A session holds any number of advisory locks, so a fleet's engine
    spends one connection on its leases, not one per account.

    Its users take turns (`using`). A failure drops the session, and with it every lock it held:
    each lease on it is then in doubt (the session's `generation` moved past the one its lock
    lived in) until it locks again on the next session.
    """

    def __init__(self, url: str, *, name: str, op_timeout: float = 5.0) -> None:
        self.engine: AsyncEngine = create_engine(
            url, op_timeout=op_timeout, pooled=False, application_name=f"warden-lease:{name}"
        )
        self.where = urls.redact(url)
        self.op_timeout = op_timeout
        self.generation = 0  # sessions opened so far: a lock lives only in the one that took it
        self._conn: AsyncConnection | None = None
        self._turn = asyncio.Lock()

    @property
    def alive(self) -> int | None:
        """The open session's generation; None while none is open."""
        return self.generation if self._conn is not None else None

    @contextlib.asynccontextmanager
    async def using(self, what: str) -> AsyncIterator[tuple[AsyncConnection, int]]:
        """The session (opened if need be) and its generation, for one turn. Any failure in the
        turn drops the session: its state is unknown, so its locks are let go with it."""
        async with self._turn:
            try:
                async with guarded(what, self.where, self.op_timeout):
                    if self._conn is None:
                        self._conn = await self.engine.connect()
                        self.generation += 1
                    yield self._conn, self.generation
            except BaseException:
                await self._drop()
                raise

    async def close(self) -> None:
        """End the session: every lock it holds goes with it."""
        async with self._turn:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(StoreError):
                async with guarded("release", self.where, self.op_timeout):
                    await conn.close()  # a close that fails means the session is gone already

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()


P = ParamSpec("P")
R = TypeVar("R")
L = TypeVar("L")


def _whole(
    call: Callable[Concatenate[L, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[L, P], Coroutine[Any, Any, R]]:
    """A lease call its caller's cancellation cannot cut in half: cancelled halfway, a turn on
    the session drops it (`LeaseSession.using`), and with it the lock of every account on it
    (an account stopping would put every other account of the engine in doubt). The call is
    finished first (each statement bounded by op_timeout); the cancellation then goes on."""

    @functools.wraps(call)
    async def finished(lease: L, /, *args: P.args, **kwargs: P.kwargs) -> R:
        running = asyncio.ensure_future(call(lease, *args, **kwargs))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            if not running.done():
                await asyncio.wait([running])
            if not running.cancelled():
                running.exception()  # its outcome is not wanted: the caller was cancelled
            raise

    return finished


class PostgresAdvisoryLease:
    """PostgreSQL: `pg_try_advisory_lock` on a session kept open; ending it releases the lease.

    The session is the lease's own, or one shared by the leases of every account of an engine
    (`session`). If it fails the lease is in doubt, not lost: the lock ended with the session
    (or will, once the server notices), but nobody else may have taken it. `check` answers
    UNREACHABLE until it can see that someone did, and `reacquire` locks again on a new session,
    keeping the epoch if it is still ours. The backend pid of the session that held the lock is
    remembered, so a session of our own that the server has not ended yet is not taken for
    another engine's.

    With a `timeout` (seconds; a fleet on several hosts) the lease is also bounded in time, on
    the database's clock. A holder that dies with its host, or stalls, keeps its session open
    for as long as the server's TCP keepalive takes to notice (two hours by default), and one
    cut off from the database goes on protecting (degraded). So: a taker ends the session of a
    holder that has not renewed for longer than `timeout` (`pg_terminate_backend`, same role or
    pg_signal_backend), and does not take a lock freed less than `timeout` after its holder's
    last renewal (that holder may be alive, cut off, still acting). The holder, for its part,
    acts only until half the timeout after its last confirmed renewal (bootstrap), so the two
    never act at once. A release marks the row expired: a clean hand-over waits for nothing.
    """

    def __init__(
        self,
        url: str,
        account: str,
        *,
        holder: str | None = None,
        op_timeout: float = 5.0,
        now: Now | None = None,
        session: LeaseSession | None = None,
        timeout: float | None = None,
    ) -> None:
        self._table = _EpochTable(url, account, holder, op_timeout, now, db_clock=timeout is not None)
        self.timeout = timeout
        self.free_in: float | None = None
        """After a try refused because the last holder may still act: seconds until it may not."""
        self._held: int | None = None
        """The last epoch this lease (this process) held: a row still at it was ours, not another's."""
        self.key = advisory_key(account)
        self._own = session is None
        self._session = session or LeaseSession(url, name=account, op_timeout=op_timeout)
        self._generation: int | None = None  # the session generation our lock lives in
        self._epoch: int | None = None  # kept while in doubt (no lock), for reacquire
        self._pid: int | None = None  # backend pid of the session that took the lock
        self._other: str | None = None

    def _locked(self) -> bool:
        return self._generation is not None and self._session.alive == self._generation

    @_whole
    async def try_acquire(self) -> int | None:
        if await self.still_held():
            return self._epoch
        await self.release()
        async with self._session.using("acquire") as (conn, generation):
            epoch = await self._lock_and_bump(conn)
        if epoch is not None:
            self._generation, self._epoch = generation, epoch
        return epoch

    def holder(self) -> str | None:
        """This engine while it holds the lease or has it in doubt (nobody else seen taking it);
        else the holder last seen."""
        return self._table.me if self._epoch is not None else self._other

    async def look(self) -> str | None:
        if self._locked():
            return self._table.me
        async with self._table.guarded("look"), self._table.engine.connect() as conn:
            holder = await self._table.holder_row(conn)
            held = bool(await self._lock_holders(conn))
            if not held and self.timeout is not None:
                last = await self._table.last_renewal(conn)
                held = last is not None and last.age <= self.timeout  # it may still act
        self._other = holder if held else None
        return self._other

    @_whole
    async def release(self) -> None:
        """Let the lock go: the lease's own session ends; on a shared one the lock is unlocked.
        With a timeout the row is also marked expired (its epoch still ours), so a taker need not
        wait: on a shared session after the unlock, since a taker that found the lock held and
        the row expired would end the session, and every other account's lock on it with it."""
        generation, epoch = self._generation, self._epoch
        self._generation, self._epoch, self._pid = None, None, None
        if generation is None or self._session.alive != generation:
            if self._own:
                await self._session.close()
            return  # it went with its session
        with contextlib.suppress(StoreError):
            async with self._session.using("release") as (conn, now):
                if now == generation:
                    if not self._own:
                        await conn.execute(_UNLOCK, {"key": self.key})
                        await conn.commit()
                    if self.timeout is not None and epoch is not None:
                        await self._table.expire(conn, epoch)
                        await conn.commit()
        if self._own:
            await self._session.close()

    async def still_held(self) -> bool:
        return await self.check() is LeaseState.HELD

    @_whole
    async def check(self) -> LeaseState:
        if self._epoch is None:
            return LeaseState.LOST
        if self._locked():
            held: bool | None = None
            busy = False
            # The row locked by another session is waited for up to db_timeout, as any write is,
            # a bounded try at a time with the shared session let go in between (its other
            # accounts renew meanwhile): this account's own write holds the row's share lock (its
            # fence) until it commits, and one slowed by the disk must not put its lease in doubt.
            loop = asyncio.get_running_loop()
            wait = min(ROW_WAIT, self._table.op_timeout / 2)
            until = loop.time() + self._table.op_timeout - wait
            while True:
                try:
                    async with self._session.using("renew") as (conn, generation):
                        if generation == self._generation:
                            held = await self._table.renew(conn, self._epoch, wait)
                            busy = held is None
                            if not busy:
                                await conn.commit()
                except StoreError:
                    held, busy = None, False  # the session was dropped, and our lock with it: in doubt
                if not busy or loop.time() >= until or not self._locked():
                    break
            if busy:
                # The row is locked by another session (not this account's engine: the session
                # is the engine's): the renewal could not be written, so in doubt, though the lock
                # is still held on a live session; the session and every other lock on it stay.
                return LeaseState.UNREACHABLE
            if held is True:
                return LeaseState.HELD
            if held is False:
                await self.release()  # the epoch moved past ours: for good
                return LeaseState.LOST
        return await self._look()

    @_whole
    async def reacquire(self) -> int | None:
        if self._locked():
            if await self.check() is LeaseState.HELD:
                return self._epoch
            if self._locked():  # still locked, yet in doubt: its row is locked by another session
                raise StoreUnavailable(
                    f"lease {self._table.account!r} on {self._table.where}: its row is locked by another"
                    f" session (not renewed within {self._table.op_timeout:g}s)"
                )
        epoch = self._epoch
        if epoch is None:
            return None
        async with self._session.using("reacquire") as (conn, generation):
            outcome = await self._relock(conn, epoch)
        if isinstance(outcome, str):
            raise StoreUnavailable(
                f"lease {self._table.account!r} on {self._table.where}: the lock was {outcome}"
            )
        if not outcome:
            self._epoch = self._pid = self._generation = None
            return None
        self._generation = generation
        return epoch

    async def _lock_and_bump(self, conn: AsyncConnection) -> int | None:
        self.free_in = None
        got, pid = (await conn.execute(_TRY_LOCK, {"key": self.key})).one()
        if not got:
            self._other = await self._table.holder_row(conn)
            if self.timeout is not None:
                await self._end_if_expired(conn, pid)
            await conn.rollback()
            return None
        await conn.commit()
        if self.timeout is not None and not await self._last_holder_done(conn):
            await conn.execute(_UNLOCK, {"key": self.key})
            await conn.commit()
            return None
        epoch = await self._table.bump(conn)
        await conn.commit()
        self._pid, self._held = pid, epoch
        return epoch

    async def _end_if_expired(self, conn: AsyncConnection, own_pid: int) -> None:
        """The lock is held: if its holder has not renewed for longer than the timeout, end the
        sessions holding it that have been silent as long (the lock goes with them; the next
        try takes it). Such a holder acts on nothing any more: it stopped at half the timeout.
        A session that spoke since is alive: another taker between its lock and its epoch bump
        (the row still the silent holder's), whose session (shared by a fleet engine's
        accounts) must not be ended."""
        assert self.timeout is not None
        last = await self._table.last_renewal(conn)
        if last is None or last.age <= self.timeout:
            return
        silent = await conn.execute(_SILENT_HOLDERS, {"key": self.key, "silent": self.timeout})
        for pid in sorted(set(silent.scalars()) - {own_pid}):
            await conn.execute(_TERMINATE, {"pid": pid})
        await conn.commit()

    async def _last_holder_done(self, conn: AsyncConnection) -> bool:
        """The lock is ours: whether the last holder, if not this process, renewed longer than
        the timeout ago (or let go on purpose). One whose lock ended sooner (its session dropped
        by a fault, not by its death) may be cut off from the database and still acting: not
        yet. Known by its epoch, not its name: two engines (or a restart) may share a name."""
        assert self.timeout is not None
        last = await self._table.last_renewal(conn)
        if last is None or last.epoch == self._held or last.age > self.timeout:
            return True
        self._other = last.holder
        self.free_in = self.timeout - last.age
        return False

    async def _relock(self, conn: AsyncConnection, epoch: int) -> bool | str:
        """The lock on the (new) session: True if got and the epoch is still ours; False if lost
        (not held by us afterwards); a reason while in doubt."""
        got, pid = (await conn.execute(_TRY_LOCK, {"key": self.key})).one()
        if not got:
            holders = await self._lock_holders(conn)
            self._other = await self._table.holder_row(conn)
            checking = await self._taker_checking(conn, epoch)
            await conn.rollback()
            if holders and self._pid not in holders and checking:
                return f"held by another engine's try (pid {sorted(holders)}), our epoch not taken"
            if holders and self._pid not in holders:
                return False
            if holders:
                return f"still held by our previous session (pid {self._pid}), not ended by the server yet"
            return "released while we looked"
        await conn.commit()
        ours = await self._table.touch(conn, epoch)
        await conn.commit()
        if not ours:
            self._other = await self._table.holder_row(conn)
            await conn.execute(_UNLOCK, {"key": self.key})  # not ours to keep: a third may take it
            await conn.commit()
            return False
        self._pid = pid
        return True

    async def _look(self) -> LeaseState:
        """Our session is gone: from a fresh one, without locking, see whether another engine has it."""
        try:
            async with self._table.guarded("check"), self._table.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(leases.c.epoch, leases.c.holder).where(leases.c.account == self._table.account)
                    )
                ).one_or_none()
                holders = await self._lock_holders(conn)
                checking = self._epoch is not None and await self._taker_checking(conn, self._epoch)
        except StoreError:
            return LeaseState.UNREACHABLE
        if row is not None and row.epoch == self._epoch and (not holders - {self._pid} or checking):
            return LeaseState.UNREACHABLE  # nobody took it meanwhile: reacquire
        self._other = None if row is None else row.holder
        self._epoch = self._pid = self._generation = None
        return LeaseState.LOST

    async def _taker_checking(self, conn: AsyncConnection, epoch: int) -> bool:
        """With a timeout: whether the row still has our `epoch`, renewed within the timeout. Then
        another session holding the lock is a taker checking (`_last_holder_done`), which lets it
        go again: nobody may bump an epoch renewed that recently, so the lease is not lost."""
        if self.timeout is None:
            return False
        last = await self._table.last_renewal(conn)
        return last is not None and last.epoch == epoch and last.age <= self.timeout

    async def _lock_holders(self, conn: AsyncConnection) -> set[int]:
        """Backend pids holding the account's advisory lock in this database."""
        return set((await conn.execute(_HOLDERS, {"key": self.key})).scalars())


_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key), pg_backend_pid()")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_TERMINATE = text("SELECT pg_terminate_backend(:pid)")
_HELD_BY = (
    "locktype = 'advisory' AND granted AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((classid::bigint << 32) | objid::bigint) = :key"
)
_HOLDERS = text(f"SELECT pid FROM pg_locks WHERE {_HELD_BY}")
_SILENT_HOLDERS = text(
    f"SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {_HELD_BY}"
    " AND a.state_change < clock_timestamp() - make_interval(secs => :silent)"
)


def _write_holder(fd: int, holder: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode(), 0)
    os.fsync(fd)


def _same_file(fd: int, path: Path) -> bool:
    """The lock is only worth anything while the path still names the file we locked."""
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


__all__ = [
    "FileLease",
    "Lease",
    "LeaseSession",
    "PostgresAdvisoryLease",
    "advisory_key",
    "default_holder",
    "lease_for",
]


def _insert_for(dialect: str) -> Callable[..., Any]:
    """The dialect's INSERT (it knows ON CONFLICT); PostgreSQL's is imported only when used."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    return sqlite.insert
