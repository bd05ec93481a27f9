"""Engines configured for money: SQLite durable and serialised, PostgreSQL with deadlines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from warden.adapters.db import urls

READ_ONLY = "warden_read_only"
"""Execution option: a SQLite transaction that only reads may start deferred."""


def create_engine(url: str, *, op_timeout: float, pooled: bool = True) -> AsyncEngine:
    """An async engine for a user URL (see `urls.normalise`); connects lazily."""
    parsed = urls.parse(url)
    options: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if urls.is_sqlite(parsed):
        engine = create_async_engine(parsed, connect_args={"timeout": op_timeout}, **options)
        _configure_sqlite(engine, op_timeout)
        return engine
    return create_async_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={"timeout": op_timeout, "command_timeout": op_timeout},
        **options,
    )


def _configure_sqlite(engine: AsyncEngine, op_timeout: float) -> None:
    """WAL, foreign keys, fsync on every commit, and writers that queue instead of failing.

    The driver's own transaction handling is switched off so that a writing
    transaction starts with BEGIN IMMEDIATE: it takes the write lock up front
    (waiting up to busy_timeout) instead of failing with "database is locked"
    when it upgrades from a read halfway through.
    """

    @event.listens_for(engine.sync_engine, "connect")
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

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
