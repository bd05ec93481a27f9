"""Migrations at start: the revision files are read outside SQLAlchemy's greenlet.

CPython 3.11 builds `ast` objects with a recursion counter that a greenlet switch can leave
unbalanced ("SystemError: AST constructor recursion depth mismatch"): it failed a store test
once in a loaded run. `upgrade` reads the head revision before it enters the connection's
greenlet, and reads it once per process.
"""

from __future__ import annotations

import ast
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import greenlet
import pytest
from sqlalchemy.engine import make_url

from tests.store.pgtools import admin
from warden.adapters.db import migrate
from warden.adapters.db.lease import advisory_key
from warden.adapters.db.store import open_store
from warden.ports import StoreSchemaError


async def test_the_revision_files_are_parsed_outside_the_greenlet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = ast.parse
    where: list[bool] = []

    def watched(*args: Any, **kwargs: Any) -> ast.Module:
        where.append(greenlet.getcurrent().parent is None)  # the main greenlet has no parent
        return parse(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", watched)
    migrate.script_head.cache_clear()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    await migrate.upgrade(url)  # a new database: Alembic creates the schema
    await migrate.upgrade(url)  # at head: decided from the files alone
    assert where, "the head was never read from the files"
    assert all(where), "a revision file was parsed inside SQLAlchemy's greenlet"
    assert await migrate.current_revision(url) == migrate.script_head()


# -- a database a newer warden migrated (a rollback after an upgrade) ----------------------------


async def test_a_database_a_newer_warden_migrated_is_refused_naming_both_revisions(store_url: str) -> None:
    """A trader upgrades, then rolls back: the database is at a revision this warden's files do not
    know. Alembic's "Can't locate revision identified by ..." (a CommandError) came out raw: a
    traceback from `warden run` and from `warden db upgrade`. It is a StoreSchemaError naming the
    database's revision and this warden's newest, and the database is left as it was."""
    from sqlalchemy import text

    from warden.adapters.db.engine import create_engine

    await migrate.upgrade(store_url)
    engine = create_engine(store_url, op_timeout=10, pooled=False)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        await engine.dispose()
    with pytest.raises(StoreSchemaError) as refused:
        await migrate.upgrade(store_url)
    message = str(refused.value)
    assert "0099" in message and str(migrate.script_head()) in message and "newer" in message
    assert await migrate.current_revision(store_url) == "0099"


# -- a PostgreSQL user that may not write every table ---------------------------------------------


@contextlib.asynccontextmanager
async def warden_user(pg_url: str, *revoked: str, before: str = "") -> AsyncIterator[str]:
    """The database migrated by its owner and a login role for warden granted SELECT, INSERT and
    UPDATE on every table and USAGE on every sequence, less `revoked` (each `ON <object>`), after
    running `before` as the owner; its URL. The role is dropped after."""
    await migrate.upgrade(pg_url)
    role = f"warden_user_{secrets.token_hex(4)}"
    async with admin(pg_url) as conn:
        if before:
            await conn.execute(before)
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        await conn.execute(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"')
        await conn.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        for what in revoked:
            await conn.execute(f'REVOKE ALL {what} FROM "{role}"')
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        async with admin(pg_url) as conn:
            await conn.execute(f'DROP OWNED BY "{role}"')
            await conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
async def test_another_applications_sequence_in_the_schema_does_not_refuse_the_start(pg_url: str) -> None:
    """The database shared with another application whose sequence warden's user may not use:
    warden never touches it, so the start is not refused for it (only warden's own tables and
    their sequences are checked)."""
    other = "CREATE SEQUENCE IF NOT EXISTS other_app_invoice_seq"
    try:
        async with warden_user(pg_url, "ON SEQUENCE other_app_invoice_seq", before=other) as url:
            store = await open_store(url, exchange="sim")
            await store.close()
    finally:
        async with admin(pg_url) as conn:
            await conn.execute("DROP SEQUENCE IF EXISTS other_app_invoice_seq")


@pytest.mark.postgres
async def test_a_user_who_may_not_use_a_warden_tables_sequence_is_refused_at_start(pg_url: str) -> None:
    """The rights on the tables but not USAGE on events' id sequence: every event write would be
    refused at run time; the start is refused naming the sequence."""
    async with warden_user(pg_url, "ON SEQUENCE events_id_seq") as url:
        with pytest.raises(StoreSchemaError) as refused:
            await open_store(url, exchange="sim")
        assert "USAGE on sequence events_id_seq" in str(refused.value), refused.value


@pytest.mark.postgres
async def test_a_postgresql_user_missing_rights_on_a_table_is_refused_at_start_naming_it(pg_url: str) -> None:
    """The database migrated by its owner, warden run as a user granted rights on the tables but one
    (here close_signals: made by a later revision, after the grants). warden started and traded,
    and the database refused it only at run time ("permission denied for table close_signals",
    on the first close signal naming a signal_id). The start is refused, naming the table and the
    rights."""
    async with warden_user(pg_url, "ON close_signals") as url:
        with pytest.raises(StoreSchemaError) as refused:
            await open_store(url, exchange="sim")  # it migrates first: refused there
        assert "close_signals" in str(refused.value) and "GRANT" in str(refused.value)
        assert "installations" not in str(refused.value)


@pytest.mark.postgres
async def test_a_migration_is_refused_while_an_engine_of_the_older_schema_holds_an_account(
    pg_url: str,
) -> None:
    """A rolling upgrade of a fleet: a newer warden starts while an older one still holds an
    account on the same PostgreSQL database. Migrating would change the schema under the running
    engine (r0005 made fills.account NOT NULL and dropped the constraint its fill inserts name), so
    its writes would be refused mid-trade. The migration is refused, naming the account and its
    holder, nothing changed; once that engine has stopped (its lock gone), it goes ahead."""
    await migrate.upgrade(pg_url, revision="0007")
    async with admin(pg_url) as older:  # the older engine's lease session
        await older.execute(
            "INSERT INTO leases (account, epoch, holder, acquired_at, renewed_at)"
            " VALUES ('main', 3, 'host-a:123', now(), now())"
        )
        await older.execute("SELECT pg_advisory_lock($1)", advisory_key("main"))
        with pytest.raises(StoreSchemaError) as refused:
            await migrate.upgrade(pg_url)
        why = str(refused.value)
        assert "main" in why and "host-a:123" in why and "nothing was changed" in why, why
        async with admin(pg_url) as conn:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == "0007"
    await migrate.upgrade(pg_url)  # the older engine stopped: its session, and its lock, gone
    async with admin(pg_url) as conn:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == migrate.script_head()
