"""A fresh database for every run, made fast.

SQLite (the default): a migrated template file in a temporary directory (on /dev/shm when the
machine has it, so fsync costs nothing), copied per run. PostgreSQL (`--db postgresql://...`):
a template database migrated once, and `CREATE DATABASE ... TEMPLATE` per run, dropped after;
the user needs CREATEDB. Fills are unique per (exchange, symbol, trade id) across accounts, and
every run's simulator counts trades from T1, so runs never share a database.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from warden.adapters.db.engine import create_engine
from warden.adapters.db.migrate import upgrade
from warden.adapters.db.schema import installations
from warden.chaos.warp import EPOCH, real_io

SHM = Path("/dev/shm")


def _scratch() -> Path:
    """A temporary directory for the run databases, in memory when the machine has /dev/shm."""
    return Path(tempfile.mkdtemp(prefix="warden-chaos-", dir=SHM if SHM.is_dir() else None))


class Databases:
    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self.postgres = url is not None and url.startswith(("postgresql", "postgres"))
        if url is not None and not self.postgres:
            raise ValueError(f"--db takes a postgresql:// URL (SQLite is the default), not {url!r}")
        self._dir: Path | None = None
        self._template = ""
        self._token = secrets.token_hex(4)
        self._made: list[str] = []

    @property
    def kind(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    async def prepare(self, account: str, installation_id: str) -> None:
        """Make and migrate the template once, with a fixed installation id for `account` (so a
        replay names its orders exactly as the run it replays did)."""
        with real_io():
            if self.postgres:
                self._template = f"warden_chaos_tpl_{self._token}"
                await self._admin(f'CREATE DATABASE "{self._template}"')
                url = self._url_for(self._template)
            else:
                self._dir = _scratch()
                self._template = str(self._dir / "template.db")
                url = f"sqlite:///{self._template}"
            await upgrade(url)
            engine = create_engine(url, op_timeout=10.0, pooled=False)
            try:
                async with engine.begin() as conn:
                    await conn.execute(
                        installations.insert().values(
                            account=account, installation_id=installation_id, created_at=EPOCH
                        )
                    )
            finally:
                await engine.dispose()

    async def new(self, name: str) -> str:
        """A URL to a new database for one run."""
        with real_io():
            if self.postgres:
                db = f"warden_chaos_{self._token}_{name}"
                await self._admin(f'CREATE DATABASE "{db}" TEMPLATE "{self._template}"')
                self._made.append(db)
                return self._url_for(db)
            assert self._dir is not None
            path = self._dir / f"{name}.db"
            shutil.copyfile(self._template, path)
            return f"sqlite:///{path}"

    async def drop(self, url: str) -> None:
        with real_io():
            if self.postgres:
                db = make_url(url).database or ""
                await self._admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                if db in self._made:
                    self._made.remove(db)
                return
            path = Path(make_url(url).database or "")
            for leftover in path.parent.glob(f"{path.name}*"):
                leftover.unlink(missing_ok=True)

    async def close(self) -> None:
        with real_io():
            if self.postgres:
                for db in [*self._made, self._template]:
                    if db:
                        await self._admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                self._made.clear()
            elif self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    def _url_for(self, database: str) -> str:
        assert self.url is not None
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    async def _admin(self, sql: str) -> None:
        assert self.url is not None
        url = make_url(self.url)
        conn = await asyncpg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database="postgres",
            timeout=10,
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def terminate(self, url: str, application_name: str) -> None:
        """PostgreSQL: kill the backends of one application on one database (pg_terminate_backend)."""
        db = make_url(url).database
        with real_io():
            await self._admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                f"datname = '{db}' AND application_name = '{application_name}' AND pid <> pg_backend_pid()"
            )
