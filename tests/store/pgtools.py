"""PostgreSQL outages for tests: an admin session, polling, killed sessions, a network partition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import make_url

from warden.adapters.db.lease import advisory_key


@asynccontextmanager
async def admin(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A session of our own on the test database (`url` is a postgresql:// test URL)."""
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def refusing_connections(url: str) -> AsyncIterator[None]:
    """The test database refuses new connections inside the block (sessions already open stay)."""
    name = make_url(url).database
    maintenance = await asyncpg.connect(url.replace("postgresql://", "postgres://"), database="postgres")
    try:
        await maintenance.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            yield
        finally:
            await maintenance.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await maintenance.close()


async def until(probe: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll the async `probe` until it answers True; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def lock_holders(conn: asyncpg.Connection, account: str) -> list[int]:
    """Backend pids holding `account`'s lease (its advisory lock) in this database."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = $1",
        advisory_key(account),
    )
    return [r["pid"] for r in rows]


async def terminate(conn: asyncpg.Connection, pids: list[int]) -> None:
    """End those sessions as an operator would (`pg_terminate_backend`) and wait until they are gone."""
    assert pids
    for pid in pids:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def gone() -> bool:
        left = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids)
        return bool(left == 0)

    await until(gone, f"sessions {pids} to end")


async def terminate_lease_session(conn: asyncpg.Connection, account: str) -> int:
    """Kill the session holding `account`'s lease; return once its lock is gone. Its pid."""
    [pid] = await lock_holders(conn, account)
    await terminate(conn, [pid])

    async def free() -> bool:
        return not await lock_holders(conn, account)

    await until(free, "the advisory lock to be released")
    return pid


async def terminate_all_but_me(conn: asyncpg.Connection) -> int:
    """End every other session on the test database; the number ended."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    pids = [r["pid"] for r in rows]
    if pids:
        await terminate(conn, pids)
    return len(pids)


@dataclass
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    frozen: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Partition:
    """A TCP relay to PostgreSQL whose open connections can be cut off without either end knowing.

    `freeze()` stops carrying bytes on every connection open at that moment, and
    keeps them open: the server still sees its session alive (and its locks held),
    as in a network partition. New connections are carried normally (`cut_off()`
    freezes them too). `heal()` closes the frozen connections' server side, as TCP
    keepalive would in the end, and carries new connections again.
    """

    def __init__(self, url: str) -> None:
        target = make_url(url)
        self._host, self._port = target.host or "127.0.0.1", target.port or 5432
        self._url = target
        self._links: list[_Link] = []
        self._server: asyncio.Server | None = None
        self._cut = False

    async def start(self) -> str:
        """Start relaying; the URL that goes through the relay."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return self._url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    def freeze(self) -> None:
        for link in self._links:
            link.frozen = True

    def cut_off(self) -> None:
        """A whole host cut off: the open connections freeze, and new ones are accepted (the
        relay's kernel answers) but carry nothing either, until `heal`."""
        self._cut = True
        self.freeze()

    def heal(self) -> None:
        self._cut = False
        for link in self._links:
            if link.frozen:
                link.server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.client.close()
            link.server.close()
            for task in link.tasks:
                task.cancel()
        await asyncio.gather(*(t for link in self._links for t in link.tasks), return_exceptions=True)

    async def _accept(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(self._host, self._port)
        link = _Link(client_out, server_out, frozen=self._cut)
        self._links.append(link)
        loop = asyncio.get_running_loop()
        link.tasks = [
            loop.create_task(self._pump(link, client_in, server_out)),
            loop.create_task(self._pump(link, server_in, client_out)),
        ]

    @staticmethod
    async def _pump(link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if not link.frozen:
                    sink.write(data)
                    await sink.drain()
        if not link.frozen:  # an end closed: pass it on (a frozen link passes nothing on)
            sink.close()
