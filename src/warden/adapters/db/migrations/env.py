"""Alembic environment: runs on the connection `warden.adapters.db.migrate` passes in."""

from __future__ import annotations

from alembic import context

from warden.adapters.db.schema import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run warden migrations with `warden db upgrade` (warden.adapters.db.migrate)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
