"""Alembic, run from code: no alembic.ini, async engines, safe to run twice or concurrently.

Every start migrates, and nearly always there is nothing to do. Alembic takes ~0.1 s
to import and more to load its scripts, so a database already at the newest
revision (read from `alembic_version`, compared with the head of the revision files,
found without Alembic) is left alone without it; anything else goes through Alembic.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from warden.adapters.db.engine import create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.urls import redact
from warden.ports import StoreError, StoreSchemaError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x77617264656E  # "warden": serialises concurrent upgrades on PostgreSQL
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    """The Alembic configuration, built in code; env.py expects a connection in `attributes`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(url: str, *, revision: str = "head", op_timeout: float = 60.0) -> None:
    """Bring the database at `url` to `revision`; a database already there is left alone."""
    # Read here, not inside run_sync: CPython 3.11 builds ast objects with a recursion counter a
    # greenlet switch can leave unbalanced ("AST constructor recursion depth mismatch").
    head = script_head() if revision == "head" else None
    known = script_revisions()
    engine = create_engine(url, op_timeout=op_timeout, pooled=False)
    try:
        async with guarded("migrate", redact(url), op_timeout), engine.begin() as conn:
            await conn.run_sync(_upgrade, revision, head, known, redact(url))
    except StoreError as exc:
        if type(exc) is not StoreError:
            raise
        # the database refused a schema change (rolled back whole): retrying will not help
        hint = (
            "; the database user needs the right to create tables (GRANT CREATE ON SCHEMA public"
            " TO it, or make it the database's owner): tables another user made for it would be"
            " that user's, and warden's writes to them refused"
            if "permission denied" in str(exc)
            else ""
        )
        raise StoreSchemaError(f"{exc}{hint}; nothing was changed") from exc
    finally:
        await engine.dispose()


async def current_revision(url: str, *, op_timeout: float = 10.0) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url, op_timeout=op_timeout, pooled=False)
    try:
        async with guarded("read schema revision", redact(url), op_timeout), engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


@functools.cache
def script_head() -> str | None:
    """The newest revision of the revision files, read without Alembic (once per process): the
    one revision no other file names as its `down_revision`. None when that is not plain (a
    file it cannot read, a merge, branches): then Alembic decides."""
    scripts = _scripts()
    if scripts is None:
        return None
    revisions, downs = scripts
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


@functools.cache
def script_revisions() -> frozenset[str] | None:
    """Every revision the revision files name (read as `script_head` reads them); None when that
    is not plain: then Alembic decides."""
    scripts = _scripts()
    return None if scripts is None else frozenset(scripts[0])


def _scripts() -> tuple[set[str], set[str]] | None:
    """The revisions of the revision files and the revisions they revise; None if not plain."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                    names[target.id] = node.value.value
        revision, down = names.get("revision"), names.get("down_revision", ...)
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        if names.get("branch_labels") is not None or names.get("depends_on") is not None:
            return None
        revisions.add(revision)
        if down is not None:
            downs.add(down)
    return revisions, downs


def _at(connection: Connection) -> list[str] | None:
    """The revisions `alembic_version` holds; None before the first migration."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return [row[0] for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]


def _upgrade(
    connection: Connection, revision: str, head: str | None, known: frozenset[str] | None, where: str
) -> None:
    """`head`: the newest revision of the files when upgrading to "head" (None: Alembic decides).
    `known`: every revision of the files (None: Alembic decides)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    at = _at(connection)
    if head is not None and at == [head]:
        _check_rights(connection, where)
        return  # already there: exactly what Alembic would conclude, without loading it
    unknown = sorted(set(at or ()) - known) if known is not None else []
    if unknown:
        # a rollback after an upgrade: Alembic said only "Can't locate revision identified by ..."
        newest = head or "?"
        raise StoreSchemaError(
            f"the database at {where} has schema revision {', '.join(unknown)}, newer than this warden"
            f" knows (its newest is {newest}): a newer warden migrated it, and this one cannot run on"
            " that schema. Run the newer warden again, or restore the database from before the"
            " upgrade; nothing was read or changed"
        )
    if at:
        _refuse_under_running_engines(connection, where)
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    if revision == "head":
        _check_rights(connection, where)


_LOCKED_KEYS = text(
    "SELECT DISTINCT (classid::bigint << 32) | objid::bigint FROM pg_locks"
    " WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid <> pg_backend_pid()"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _refuse_under_running_engines(connection: Connection, where: str) -> None:
    """On PostgreSQL, a schema that is to change while another engine holds an account on it (its
    lease's advisory lock held by a live session): a rolling upgrade of a fleet, a newer warden
    starting beside older ones. The change would land under the running engines, written for the
    schema they know, and their writes (a fill, mid-trade) could be refused. Refused, naming the
    accounts and their holders: stop those engines first (a clean stop), then start this one."""
    if connection.dialect.name != "postgresql":
        return
    from warden.adapters.db.lease import advisory_key

    leases = connection.execute(text("SELECT account, holder FROM leases")).all()
    locked = set(connection.execute(_LOCKED_KEYS).scalars())
    running = [
        f"{account} (held by {holder})" for account, holder in leases if advisory_key(account) in locked
    ]
    if running:
        raise StoreSchemaError(
            f"the database at {where} needs a schema migration, and engines of the schema it has now"
            f" still hold accounts on it: {', '.join(sorted(running))}. Migrating under them could have"
            " their writes refused mid-trade: stop every warden on this database (a clean stop; their"
            " stops keep resting on the exchange), then start this one; nothing was changed"
        )


_RIGHTS = ("SELECT", "INSERT", "UPDATE")  # warden deletes no row
_MISSING_RIGHTS = text(
    "SELECT t.name FROM unnest(CAST(:tables AS text[])) AS t(name)"
    " WHERE to_regclass(t.name) IS NOT NULL AND NOT ("
    + " AND ".join(f"has_table_privilege(to_regclass(t.name), '{right}')" for right in _RIGHTS)
    + ") ORDER BY t.name"
)
_MISSING_SEQUENCES = text(
    # warden's tables' own sequences (serial or identity columns: pg_depend), not every sequence of
    # the schema: another application's in a shared database is none of warden's business
    "SELECT DISTINCT s.relname FROM pg_class s"
    " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid"
    " AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
    " WHERE d.refobjid IN (SELECT to_regclass(t.name) FROM unnest(CAST(:tables AS text[])) AS t(name))"
    # CASE: the planner may test the privilege before the kind, and a table is no sequence
    " AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege(s.oid, 'USAGE') ELSE false END"
    " ORDER BY s.relname"
)


def _check_rights(connection: Connection, where: str) -> None:
    """On PostgreSQL, the user may read and write every table of the schema (and use its
    sequences): a table made by another user (its owner migrating) is refused to it only when a
    write first needs it, at run time, perhaps long after the start."""
    if connection.dialect.name != "postgresql":
        return
    from warden.adapters.db.schema import metadata

    tables = sorted(metadata.tables)
    missing = list(connection.execute(_MISSING_RIGHTS, {"tables": tables}).scalars())
    sequences = list(connection.execute(_MISSING_SEQUENCES, {"tables": tables}).scalars())
    if not missing and not sequences:
        return
    what = []
    if missing:
        what.append(f"one of {', '.join(_RIGHTS)} on table {', '.join(missing)}")
    if sequences:
        what.append(f"USAGE on sequence {', '.join(sequences)}")
    raise StoreSchemaError(
        f"the database user of {where} lacks {'; and '.join(what)}: warden would be refused at run"
        f" time. GRANT {', '.join(_RIGHTS)} ON ALL TABLES IN SCHEMA public TO it (and USAGE ON ALL"
        " SEQUENCES), or make it the database's owner"
    )
