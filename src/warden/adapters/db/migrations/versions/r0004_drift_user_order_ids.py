"""Drift user order ids: warden's client order id -> the u8 it was sent to Drift with.

A row is live from before its order is sent until the order is final; the partial unique
index keeps a live u8 from being handed out twice on one account.

Revision ID: 0004
Revises: 0002
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from warden.adapters.db.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIVE_INDEX = "uq_drift_user_order_ids_account_user_order_id_live"  # frozen as schema.py names it


def upgrade() -> None:
    op.create_table(
        "drift_user_order_ids",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("client_order_id", sa.String(), nullable=False),
        sa.Column("user_order_id", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("tx_signature", sa.String(), nullable=True),
        sa.Column("last_valid_block_height", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("released_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account", "client_order_id", name=op.f("pk_drift_user_order_ids")),
    )
    op.create_index(
        op.f("ix_drift_user_order_ids_account_order_id"),
        "drift_user_order_ids",
        ["account", "order_id"],
    )
    op.create_index(
        LIVE_INDEX,
        "drift_user_order_ids",
        ["account", "user_order_id"],
        unique=True,
        sqlite_where=sa.text("live"),
        postgresql_where=sa.text("live"),
    )


def downgrade() -> None:
    op.drop_index(LIVE_INDEX, table_name="drift_user_order_ids")
    op.drop_index(op.f("ix_drift_user_order_ids_account_order_id"), table_name="drift_user_order_ids")
    op.drop_table("drift_user_order_ids")
