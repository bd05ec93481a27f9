"""A close signal is acted on once.

A close sent with a `signal_id` and sent again (a webhook relay that retries, an alert delivered
twice) closed whatever was open on the symbol by then: a position opened since was closed by a
signal that never meant it. `close_signals` binds each close signal's id to the positions it
closed, so a resent one acts on those alone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warden.adapters.db.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "close_signals",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("signal_id", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("position_ids", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", "signal_id", name=op.f("pk_close_signals")),
    )


def downgrade() -> None:
    op.drop_table("close_signals")
