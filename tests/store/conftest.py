"""The contract fixture: the same store tests against InMemoryStore, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from sqlalchemy import update

from warden.adapters.db.lease import Lease, lease_for
from warden.adapters.db.schema import leases
from warden.adapters.db.store import SqlStore, open_store
from warden.adapters.memory import InMemoryLease, InMemoryStore


@dataclass
class Backend:
    """A store under test, and a way to make leases on the same database."""

    name: str
    store: InMemoryStore | SqlStore
    url: str | None = None
    leases: list[Lease] = field(default_factory=list)

    def lease(self, account: str = "acct", holder: str = "host-a:1") -> Lease:
        made: Lease
        if isinstance(self.store, InMemoryStore):
            made = InMemoryLease(self.store, account, holder)
        else:
            assert self.url is not None
            made = lease_for(self.url, account, holder=holder)
        self.leases.append(made)
        return made

    async def move_epoch(self, account: str = "acct") -> None:
        """The stored epoch moves past the holder's, as if another engine had acquired (a stale holder)."""
        if isinstance(self.store, InMemoryStore):
            row = self.store.leases[account]
            self.store.leases[account] = replace(row, epoch=row.epoch + 1)
            return
        async with self.store.engine.begin() as conn:
            await conn.execute(
                update(leases).where(leases.c.account == account).values(epoch=leases.c.epoch + 1)
            )

    async def reopen(self) -> InMemoryStore | SqlStore:
        """Another engine's store on the same data (for the in-memory store: the same object)."""
        if isinstance(self.store, InMemoryStore):
            return self.store
        assert self.url is not None
        return await open_store(self.url, exchange="sim", migrate=False)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None for the in-memory store, else a database URL."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warden.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def backend(backend_url: str | None) -> AsyncIterator[Backend]:
    """Each Store implementation in turn, empty, closed (with its leases released) after the test."""
    if backend_url is None:
        made = Backend("memory", InMemoryStore())
    else:
        made = Backend(
            backend_url.partition(":")[0], await open_store(backend_url, exchange="sim"), backend_url
        )
    yield made
    for lease in made.leases:
        await lease.release()
    await made.store.close()


@pytest.fixture
async def backend_pg(pg_url: str) -> AsyncIterator[Backend]:
    """The PostgreSQL backend alone, for tests of what only it does."""
    made = Backend("postgresql", await open_store(pg_url, exchange="sim"), pg_url)
    yield made
    for lease in made.leases:
        await lease.release()
    await made.store.close()
