"""Alembic, run from code: no alembic.ini, async engines, safe to run twice or concurrently."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from warden.adapters.db.engine import create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.urls import redact

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x77617264656E  # "warden": serialises concurrent upgrades on PostgreSQL


def alembic_config() -> Config:
    """The Alembic configuration, built in code; env.py expects a connection in `attributes`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(url: str, *, revision: str = "head", op_timeout: float = 60.0) -> None:
    """Bring the database at `url` to `revision`; a database already there is left alone."""
    engine = create_engine(url, op_timeout=op_timeout, pooled=False)
    try:
        async with guarded("migrate", redact(url), op_timeout), engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


async def current_revision(url: str, *, op_timeout: float = 10.0) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_engine(url, op_timeout=op_timeout, pooled=False)
    try:
        async with guarded("read schema revision", redact(url), op_timeout), engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
