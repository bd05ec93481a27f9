"""The lease: one writer per account (I6), with a fencing epoch.

Holding the lease is a lock the operating system or the database drops when
its holder dies: an `flock` on a file beside the SQLite database, or a
PostgreSQL session advisory lock on a connection kept for the life of the
lease. Each acquisition increments `leases.epoch` for the account and returns
it; the store, given that epoch (`SqlStore.set_epoch`), refuses to write once
the epoch has moved on, so a stale engine's late write cannot land.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from warden.adapters.db import urls
from warden.adapters.db.engine import create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.schema import leases
from warden.ports import Lease, StoreError

Now = Callable[[], datetime]


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
) -> FileLease | PostgresAdvisoryLease:
    """The lease that fits the database at `url`."""
    cls = FileLease if urls.is_sqlite(urls.parse(url)) else PostgresAdvisoryLease
    return cls(url, account, holder=holder, op_timeout=op_timeout, now=now)


class _EpochTable:
    """The `leases` rows: bump the epoch on acquisition, touch `renewed_at` while held."""

    def __init__(self, url: str, account: str, holder: str | None, op_timeout: float, now: Now | None):
        self.engine: AsyncEngine = create_engine(url, op_timeout=op_timeout, pooled=False)
        self.account = account
        self.me = holder or default_holder()
        self.op_timeout = op_timeout
        self.where = urls.redact(url)
        self.now = now or (lambda: datetime.now(UTC))

    async def bump(self, conn: AsyncConnection) -> int:
        now = self.now()
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        values = insert(leases).values(
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
            .values(renewed_at=self.now())
        )
        return (await conn.execute(stmt)).rowcount == 1

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

    async def release(self) -> None:
        fd, self._fd, self._epoch = self._fd, None, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        await self._table.engine.dispose()

    async def still_held(self) -> bool:
        if self._fd is None or self._epoch is None or not _same_file(self._fd, self.path):
            return False
        try:
            async with self._table.guarded("renew"), self._table.engine.begin() as conn:
                held = await self._table.touch(conn, self._epoch)
        except StoreError:
            return False
        return held

    async def _bump(self) -> int:
        async with self._table.guarded("acquire"), self._table.engine.begin() as conn:
            return await self._table.bump(conn)


class PostgresAdvisoryLease:
    """PostgreSQL: `pg_try_advisory_lock` on a dedicated connection; dropping it releases the lease."""

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
        self.key = advisory_key(account)
        self._conn: AsyncConnection | None = None
        self._epoch: int | None = None
        self._other: str | None = None

    async def try_acquire(self) -> int | None:
        if await self.still_held():
            return self._epoch
        await self.release()
        async with self._table.guarded("acquire"):
            conn = await self._table.engine.connect()
            try:
                epoch = await self._lock_and_bump(conn)
            except BaseException:
                await conn.close()
                raise
        if epoch is None:
            await conn.close()
            return None
        self._conn, self._epoch = conn, epoch
        return epoch

    def holder(self) -> str | None:
        return self._table.me if self._conn is not None else self._other

    async def release(self) -> None:
        """Close the lease's connection: the session ends, and its advisory lock with it."""
        conn, self._conn, self._epoch = self._conn, None, None
        if conn is None:
            return
        # A close that fails means the session is already gone, and its lock with it.
        with contextlib.suppress(StoreError):
            async with self._table.guarded("release"):
                await conn.close()

    async def still_held(self) -> bool:
        conn, epoch = self._conn, self._epoch
        if conn is None or epoch is None:
            return False
        try:
            async with self._table.guarded("renew"):
                held = await self._table.touch(conn, epoch)
                await conn.commit()
        except StoreError:
            held = False
        if not held:
            await self.release()  # in doubt: give it up for good, re-acquire to get a new epoch
        return held

    async def _lock_and_bump(self, conn: AsyncConnection) -> int | None:
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})
        if not got:
            self._other = await self._table.holder_row(conn)
            await conn.rollback()
            return None
        await conn.commit()
        epoch = await self._table.bump(conn)
        await conn.commit()
        return epoch


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


__all__ = ["FileLease", "Lease", "PostgresAdvisoryLease", "advisory_key", "default_holder", "lease_for"]
