"""A close keeps the reason it was sent for.

The reason a position went flat was its own while it was closing (`exit_reason`): a close given
up on (answered unknown, not found) cleared it, and a close sent when a stop was refused never
set it. Either one executing later, or after a restart, ended the position "closed by manual",
as if someone had closed it by hand. `reason` is written with the close's intent and names the
exit whenever its fill lands.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("reason", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("reason")
