"""Engines configured for money: SQLite durable and serialised, PostgreSQL with deadlines."""

from __future__ import annotations

import asyncio
import os
import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from warden.adapters.db import urls

T = TypeVar("T")

READ_ONLY = "warden_read_only"
"""Execution option: a SQLite transaction that only reads may start deferred."""


def create_engine(
    url: str,
    *,
    op_timeout: float,
    pooled: bool = True,
    application_name: str | None = None,
    pool_size: int | None = None,
    idle_in_transaction: float | None = None,
    create_file: bool = True,
) -> AsyncEngine:
    """An async engine for a user URL (see `urls.normalise`); connects lazily.

    On SQLite, `create_file=False` opens only a database file that exists (the migration makes
    it): a file deleted under a running engine is not made again, empty, by its next connection.

    On PostgreSQL, `application_name` names its sessions in `pg_stat_activity`; `pool_size`
    caps the sessions a pool keeps (and as many again while busy); `idle_in_transaction`
    (seconds) has the server end a session that leaves a transaction idle that long (its
    locks go with it: an engine whose host died mid-write holds none for long).
    """
    parsed = urls.parse(url)
    options: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if pooled and pool_size is not None:
        options |= {"pool_size": pool_size, "max_overflow": pool_size}
    if urls.is_sqlite(parsed):
        engine = create_async_engine(parsed, connect_args={"timeout": op_timeout}, **options)
        _configure_sqlite(engine, op_timeout, create_file=create_file)
        return engine
    connect_args: dict[str, Any] = {"timeout": op_timeout, "command_timeout": op_timeout}
    server: dict[str, str] = {}
    if application_name is not None:
        server["application_name"] = application_name
    if idle_in_transaction is not None:
        server["idle_in_transaction_session_timeout"] = str(max(1, round(idle_in_transaction * 1000)))
    if server:
        connect_args["server_settings"] = server
    return create_async_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **options)


def _configure_sqlite(
    engine: AsyncEngine | Engine,
    op_timeout: float,
    max_pages: Callable[[], int] | None = None,
    *,
    create_file: bool = True,
) -> None:
    """WAL, foreign keys, fsync on every commit, and writers that queue instead of failing.

    The driver's own transaction handling is switched off so that a writing
    transaction starts with BEGIN IMMEDIATE: it takes the write lock up front
    (waiting up to busy_timeout) instead of failing with "database is locked"
    when it upgrades from a read halfway through.

    `max_pages` (tests only) is asked at the start of every writing transaction
    for SQLite's `max_page_count`: a database that may not grow past it fails
    its writes with SQLITE_FULL, exactly as on a full disk.
    """

    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    if not create_file:

        @event.listens_for(sync, "do_connect")
        def _existing_only(
            _dialect: object, _record: object, cargs: list[Any], cparams: dict[str, Any]
        ) -> None:
            # SQLite's URI filename with mode=rw: the file is opened, never made
            cargs[0] = f"file:{urllib.parse.quote(str(cargs[0]), safe='/')}?mode=rw"
            cparams["uri"] = True

    @event.listens_for(sync, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "synchronous=FULL",
            f"busy_timeout={int(op_timeout * 1000)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(sync, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
        if max_pages is not None and not read_only:
            connection.exec_driver_sql(f"PRAGMA max_page_count = {int(max_pages())}")


class Abandoned(Exception):
    """A write whose caller stopped waiting; rolled back on the writer thread."""


class FileReplaced(OSError):
    """The SQLite file the writer opened, or its -wal, is no longer the one its path names (deleted,
    or another file moved over it): what it commits would land in a file nobody will read again
    (the database), or be lost by a crash (the -wal, whose commits reach the database only at a
    checkpoint)."""


Identity = tuple[int, int] | None
"""A file as (device, inode); None when the path names none."""


def _identity(path: str) -> Identity:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _replaced(path: str, opened: tuple[Identity, Identity]) -> str | None:
    """What of the database at `path` and its -wal is no longer the file the writer opened (one
    not there yet when it opened is not compared)."""
    database, wal = opened
    if database is not None and _identity(path) != database:
        return f"the database file {path}"
    if wal is not None and _identity(f"{path}-wal") != wal:
        return f"the write-ahead log {path}-wal"
    return None


class ThreadWriter:
    """SQLite writes, each transaction run whole on one dedicated thread.

    aiosqlite hops to its thread once per statement; a commit of four statements
    paid six hops. Here a transaction is one hop: the statements run at C speed
    on the writer thread, and only the fsync at COMMIT is left to wait for.
    """

    def __init__(
        self,
        async_url: str,
        op_timeout: float,
        max_pages: Callable[[], int] | None = None,
        *,
        create_file: bool = True,
    ) -> None:
        sync_url = async_url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1)
        self._path = str(make_url(sync_url).database)
        self._files: tuple[Identity, Identity] = (None, None)
        self._replaced: str | None = None
        self._engine = create_sync_engine(
            sync_url,
            connect_args={"timeout": op_timeout, "check_same_thread": False},
            poolclass=NullPool,
        )
        _configure_sqlite(self._engine, op_timeout, max_pages, create_file=create_file)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warden-sqlite-writer")
        self._conn: Connection | None = None
        self._closed = False
        self.dialect = self._engine.dialect

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` as one transaction on the writer thread. If the caller stops waiting (its
        deadline passed) before the thread got to commit, the transaction is rolled back instead:
        a write reported as failed does not land later behind the caller's back."""
        abandoned = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._transaction, work, abandoned
        )
        try:
            return await future
        except asyncio.CancelledError:
            abandoned.set()
            raise

    def _transaction(self, work: Callable[[Connection], T], abandoned: threading.Event) -> T:
        if abandoned.is_set():
            raise Abandoned("the caller's deadline passed before the write started")
        if self._replaced is not None:
            # Not opened again: SQLite would make an empty database (or -wal) at the path, and the
            # next start would run on it. Refused until warden is restarted.
            raise FileReplaced(self._replaced)
        if self._conn is None:
            self._conn = self._engine.connect()
            self._files = (_identity(self._path), _identity(f"{self._path}-wal"))
        with self._conn.begin():
            result = work(self._conn)
            if abandoned.is_set():
                raise Abandoned("the caller's deadline passed before the commit")  # rolls back
            gone = _replaced(self._path, self._files)
            if gone is not None:  # rolls back
                self._replaced = (
                    f"{gone} was deleted or replaced while warden had it open; nothing more is"
                    " written. Stop warden cleanly (not kill -9: closing saves what it wrote to the"
                    " database file, when that is still there), restore the database if it is gone,"
                    " and start warden again"
                )
                raise FileReplaced(self._replaced)
            if None in self._files:  # a file made since the connection opened: compared from now on
                database, wal = self._files
                self._files = (
                    database or _identity(self._path),
                    wal or _identity(f"{self._path}-wal"),
                )
            return result

    def reset(self) -> None:
        """Drop the connection (on the writer thread, after whatever is running there)."""
        if not self._closed:
            self._executor.submit(self._close_conn)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_conn)
        self._executor.shutdown(wait=True)
        self._engine.dispose()
