"""One exclusive active position per symbol and account; an installation id per account.

`positions.exclusive` marks a position that must be alone on its symbol while
active; the partial unique index enforces it. Rows written before this
revision get exclusive = false, so a database that already has stacked
positions migrates, and those positions stay unconstrained. `installations`
holds the id each account's database makes on its first open.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warden.adapters.db.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen here as they were when this revision was written (schema.py names the same).
ONE_PER_SYMBOL = "uq_positions_account_symbol_exclusive"
EXCLUSIVE_ACTIVE = "exclusive AND status IN ('opening', 'open', 'protected', 'closing')"


def upgrade() -> None:
    op.add_column(
        "positions",
        sa.Column("exclusive", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index(
        ONE_PER_SYMBOL,
        "positions",
        ["account", "symbol"],
        unique=True,
        sqlite_where=sa.text(EXCLUSIVE_ACTIVE),
        postgresql_where=sa.text(EXCLUSIVE_ACTIVE),
    )
    op.create_table(
        "installations",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("installation_id", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_installations")),
    )


def downgrade() -> None:
    op.drop_table("installations")
    op.drop_index(ONE_PER_SYMBOL, table_name="positions")
    op.drop_column("positions", "exclusive")
