"""The alert outbox and the trader's controls.

`alerts` holds every alert from the transaction that raised it until it is
delivered (at least once, deduplicated by id). `controls` holds each
account's pause, kill switch and daily-loss pause, so they survive restarts.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warden.adapters.db.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("position_id", sa.String(), nullable=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_account_delivered_at_at"), "alerts", ["account", "delivered_at", "at"])
    op.create_table(
        "controls",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("killed", sa.Boolean(), nullable=False),
        sa.Column("daily_loss_until", UtcDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_controls")),
    )


def downgrade() -> None:
    op.drop_table("controls")
    op.drop_index(op.f("ix_alerts_account_delivered_at_at"), table_name="alerts")
    op.drop_table("alerts")
