"""A close signal's id is bound per symbol.

TradingView's alert message (the README's) makes a signal_id of the order's name and the time:
one strategy run on two symbols exits both on the same bar with the same id. Keyed by
(account, signal_id), the second symbol's exit was taken for the first one resent: a 409, and
its position stayed open. A resent signal names the same symbol; the same id on another symbol
is another signal.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PK = "pk_close_signals"


def upgrade() -> None:
    with op.batch_alter_table("close_signals") as batch:
        batch.drop_constraint(PK, type_="primary")
        batch.create_primary_key(PK, ["account", "signal_id", "symbol"])


def downgrade() -> None:
    # Keep the earliest binding of each id: the one a resent close was answered with before.
    op.execute(
        "DELETE FROM close_signals WHERE EXISTS (SELECT 1 FROM close_signals AS o"
        " WHERE o.account = close_signals.account AND o.signal_id = close_signals.signal_id"
        " AND (o.at < close_signals.at OR (o.at = close_signals.at AND o.symbol < close_signals.symbol)))"
    )
    with op.batch_alter_table("close_signals") as batch:
        batch.drop_constraint(PK, type_="primary")
        batch.create_primary_key(PK, ["account", "signal_id"])
