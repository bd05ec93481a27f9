"""The SQL store: SQLAlchemy 2 Core tables, Alembic migrations, the lease.

Importing this package does nothing; import the modules you need:
`store.open_store`, `migrate.upgrade`, `lease.lease_for`, `urls.normalise`.
"""
