"""A lock another session holds past the deadline, and a SQLite file locked by another process."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from warden.adapters.db.store import SqlStore
from warden.ports import StoreUnavailable

from .pgtools import admin
from .test_outages import WRITES, _untouched, _written, fenced_store

DEADLINE = 0.5


def fenced(url: str) -> AbstractAsyncContextManager[SqlStore]:
    return fenced_store(url, op_timeout=DEADLINE)


async def _bounded(coro: object) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(coro, 10 * DEADLINE)  # type: ignore[arg-type]
    return loop.time() - start


@pytest.mark.postgres
@pytest.mark.parametrize("kind", WRITES)
async def test_a_lock_held_past_the_deadline_is_unavailable_in_time_and_writes_nothing(
    pg_url: str, kind: str
) -> None:
    write, table = WRITES[kind]
    async with fenced(pg_url) as store, admin(pg_url) as locker:
        blocker = locker.transaction()
        await blocker.start()
        await locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        assert await _bounded(write(store)) < 4 * DEADLINE
        assert await _bounded(write(store)) < 4 * DEADLINE  # the next one too: nothing hangs
        await blocker.rollback()
        assert await _untouched(store)
        await write(store)
        assert await _written(store, kind)


@pytest.mark.parametrize("kind", WRITES)
async def test_a_sqlite_file_locked_by_another_process_is_unavailable_in_time(
    tmp_path: Path, kind: str
) -> None:
    write, _ = WRITES[kind]
    path = tmp_path / "warden.db"
    async with fenced(f"sqlite:///{path}") as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            assert await _bounded(write(store)) < 4 * DEADLINE
            assert await _bounded(write(store)) < 4 * DEADLINE
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await _untouched(store)
        await write(store)
        assert await _written(store, kind)
