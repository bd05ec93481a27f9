"""An undelivered alert keeps the channels that have it.

An alert is marked delivered only once every channel has it; while one channel refuses (a
Telegram chat that blocked the bot) or is down, the others have it but the outbox could not say
so, and a restart sent it to every channel again. `channels` (a JSON list of channel names) is
written while the alert is not yet delivered everywhere and read when it is taken from the outbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("channels", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("channels")
