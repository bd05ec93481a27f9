"""Shared fixtures: a fresh PostgreSQL database, store URLs for every backend, an open SqlStore.

PostgreSQL tests need a server on 127.0.0.1:5432 (user postgres, trust auth;
WARDEN_TEST_PG_HOST / _PORT / _USER override).
Without one they are skipped with the reason shown, except under CI=true,
where an unreachable server fails the run instead of hiding the tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from warden.adapters.db.store import SqlStore, open_store

PG_HOST = os.environ.get("WARDEN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("WARDEN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("WARDEN_TEST_PG_USER", "postgres")


def _pg_admin(sql: str) -> None:
    """Run one statement on the maintenance database (in a thread: callable inside a running loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(autouse=True)
def _address_holds_cleared() -> Iterator[None]:
    """A hold on an exchange address is the process's (adapters.ccxt.adapter.ADDRESS_HOLDS): one
    a test made (a 403 holds ten minutes) must not hold back a later test's server that was given
    the same port."""
    yield
    adapter = sys.modules.get("warden.adapters.ccxt.adapter")
    if adapter is not None:
        adapter.ADDRESS_HOLDS.clear()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A `postgresql://` URL to a new, empty database, dropped after the test."""
    name = f"warden_t_{secrets.token_hex(6)}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL on {PG_HOST}:{PG_PORT} is unreachable: {exc!r}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'data' / 'warden.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A user-style database URL, once for SQLite (a temp file) and once for PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """A migrated SqlStore on `store_url` for exchange "sim", closed after the test."""
    opened = await open_store(store_url, exchange="sim")
    yield opened
    await opened.close()
