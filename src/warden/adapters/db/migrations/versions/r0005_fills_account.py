"""Fills belong to an account: a trade id is unique per (account, exchange, symbol).

Two accounts on one exchange share a database: their trades are numbered by the exchange
per account (the simulator numbers every account's trades T1, T2...; a trade between two of
one's own accounts appears in both). Before this revision the second account's fill with a
trade id the first already had was dropped as a duplicate. Rows written before it take their
position's account.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD = "uq_fills_exchange_symbol_trade_id"
NEW = "uq_fills_account_exchange_symbol_trade_id"


def upgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("account", sa.String(), nullable=True))
    op.execute(
        "UPDATE fills SET account = (SELECT account FROM positions WHERE positions.id = fills.position_id)"
    )
    with op.batch_alter_table("fills") as batch:
        batch.alter_column("account", existing_type=sa.String(), nullable=False)
        batch.drop_constraint(OLD, type_="unique")
        batch.create_unique_constraint(NEW, ["account", "exchange", "symbol", "trade_id"])


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.drop_constraint(NEW, type_="unique")
        batch.create_unique_constraint(OLD, ["exchange", "symbol", "trade_id"])
        batch.drop_column("account")
