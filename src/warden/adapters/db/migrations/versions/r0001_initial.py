"""Initial schema: positions, orders, fills, events, leases.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from warden.adapters.db.types import Amount, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _amount(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, Amount(), nullable=nullable)


def _flag(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _text(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _position_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["position_id"],
        ["positions.id"],
        name=op.f(f"fk_{table}_position_id_positions"),
        ondelete="RESTRICT",
    )


def _create_positions() -> None:
    op.create_table(
        "positions",
        _text("id"),
        _text("account"),
        _text("symbol"),
        _text("side"),
        _text("status"),
        _amount("target_qty"),
        _amount("plan_stop_pct"),
        _amount("plan_tp1_pct"),
        _amount("plan_tp1_fraction"),
        _amount("plan_tp2_pct"),
        _amount("plan_tp2_fraction"),
        _amount("plan_trail_pct"),
        _flag("plan_breakeven_after_tp1"),
        sa.Column("opened_at", UtcDateTime(), nullable=False),
        _text("signal_id", nullable=True),
        _text("origin"),
        _amount("filled_qty"),
        _amount("entry_price", nullable=True),
        _amount("closed_qty"),
        _amount("stop_price", nullable=True),
        _amount("tp1_price", nullable=True),
        _amount("tp1_qty"),
        _amount("tp2_price", nullable=True),
        _amount("tp2_qty"),
        _flag("tp1_hit"),
        _flag("tp2_hit"),
        _flag("trailing_active"),
        _amount("watermark", nullable=True),
        _amount("mae"),
        _amount("mfe"),
        _amount("last_price", nullable=True),
        _amount("realized_pnl"),
        _amount("fees"),
        _text("exit_reason", nullable=True),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("stop_seq", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint("account", "signal_id", name=op.f("uq_positions_account_signal_id")),
    )
    op.create_index(op.f("ix_positions_account_status"), "positions", ["account", "status"])


def _create_orders() -> None:
    op.create_table(
        "orders",
        _text("client_order_id"),
        _text("position_id"),
        _text("role"),
        _text("symbol"),
        _text("side"),
        _text("type"),
        _amount("qty"),
        _amount("trigger_price", nullable=True),
        _flag("reduce_only"),
        _text("status"),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        _text("exchange_order_id", nullable=True),
        _amount("filled_qty"),
        _amount("avg_price", nullable=True),
        sa.Column("updated_at", UtcDateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id", name=op.f("pk_orders")),
        _position_fk("orders"),
    )
    op.create_index(op.f("ix_orders_position_id"), "orders", ["position_id"])


def _create_fills() -> None:
    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("exchange"),
        _text("symbol"),
        _text("trade_id"),
        _text("client_order_id"),
        _text("position_id"),
        _text("role"),
        _text("side"),
        _amount("qty"),
        _amount("price"),
        _amount("fee"),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("exchange", "symbol", "trade_id", name=op.f("uq_fills_exchange_symbol_trade_id")),
        _position_fk("fills"),
    )
    op.create_index(op.f("ix_fills_position_id"), "fills", ["position_id"])


def _create_events() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("account"),
        sa.Column("at", UtcDateTime(), nullable=False),
        _text("kind"),
        _text("position_id", nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        _position_fk("events"),
    )
    op.create_index(op.f("ix_events_position_id"), "events", ["position_id"])
    op.create_index(op.f("ix_events_account_id"), "events", ["account", "id"])


def _create_leases() -> None:
    op.create_table(
        "leases",
        _text("account"),
        sa.Column("epoch", sa.Integer(), nullable=False),
        _text("holder"),
        sa.Column("acquired_at", UtcDateTime(), nullable=False),
        sa.Column("renewed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_leases")),
    )


def upgrade() -> None:
    _create_positions()
    _create_orders()
    _create_fills()
    _create_events()
    _create_leases()


def downgrade() -> None:
    for table in ("leases", "events", "fills", "orders", "positions"):
        op.drop_table(table)
