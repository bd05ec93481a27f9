"""The tables, in SQLAlchemy 2 Core. Every piece of state has its own typed column.

A position's `applied_trades` is not stored: it is the set of trade ids in
`fills` for that position, so a fill and its effect can never disagree.
Rows are scoped by `account` (one engine per account may share a database).
An account has at most one active `exclusive` position per symbol: the
partial unique index `ONE_PER_SYMBOL` says so in the database itself.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)

from warden.adapters.db.types import Amount, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


ONE_PER_SYMBOL = "uq_positions_account_symbol_exclusive"
"""The partial unique index: one exclusive active position per (account, symbol)."""
EXCLUSIVE_ACTIVE = "exclusive AND status IN ('opening', 'open', 'protected', 'closing')"
"""Its predicate, the same SQL on SQLite and PostgreSQL (the active statuses of PositionStatus)."""


def _position_fk() -> ForeignKey:
    return ForeignKey("positions.id", ondelete="RESTRICT")


positions = Table(
    "positions",
    metadata,
    Column("id", String, primary_key=True),
    Column("account", String, nullable=False),
    Column("symbol", String, nullable=False),
    Column("side", String, nullable=False),
    Column("status", String, nullable=False),
    Column("target_qty", Amount, nullable=False),
    Column("plan_stop_pct", Amount, nullable=False),
    Column("plan_tp1_pct", Amount, nullable=False),
    Column("plan_tp1_fraction", Amount, nullable=False),
    Column("plan_tp2_pct", Amount, nullable=False),
    Column("plan_tp2_fraction", Amount, nullable=False),
    Column("plan_trail_pct", Amount, nullable=False),
    Column("plan_breakeven_after_tp1", Boolean, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("signal_id", String, nullable=True),
    Column("origin", String, nullable=False),
    Column("filled_qty", Amount, nullable=False),
    Column("entry_price", Amount, nullable=True),
    Column("closed_qty", Amount, nullable=False),
    Column("stop_price", Amount, nullable=True),
    Column("tp1_price", Amount, nullable=True),
    Column("tp1_qty", Amount, nullable=False),
    Column("tp2_price", Amount, nullable=True),
    Column("tp2_qty", Amount, nullable=False),
    Column("tp1_hit", Boolean, nullable=False),
    Column("tp2_hit", Boolean, nullable=False),
    Column("trailing_active", Boolean, nullable=False),
    Column("watermark", Amount, nullable=True),
    Column("mae", Amount, nullable=False),
    Column("mfe", Amount, nullable=False),
    Column("last_price", Amount, nullable=True),
    Column("realized_pnl", Amount, nullable=False),
    Column("fees", Amount, nullable=False),
    Column("exit_reason", String, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("stop_seq", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    # Added by migration 0002, hence last; rows from before it are not exclusive.
    Column("exclusive", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("account", "signal_id"),
    Index(None, "account", "status"),
    Index(
        ONE_PER_SYMBOL,
        "account",
        "symbol",
        unique=True,
        sqlite_where=text(EXCLUSIVE_ACTIVE),
        postgresql_where=text(EXCLUSIVE_ACTIVE),
    ),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String, primary_key=True),
    Column("position_id", String, _position_fk(), nullable=False, index=True),
    Column("role", String, nullable=False),
    Column("symbol", String, nullable=False),
    Column("side", String, nullable=False),
    Column("type", String, nullable=False),
    Column("qty", Amount, nullable=False),
    Column("trigger_price", Amount, nullable=True),
    Column("reduce_only", Boolean, nullable=False),
    Column("status", String, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("exchange_order_id", String, nullable=True),
    Column("filled_qty", Amount, nullable=False),
    Column("avg_price", Amount, nullable=True),
    Column("reason", String, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False, server_default=func.now()),
)

# Binance numbers trades per symbol, so the symbol is part of a trade's identity; accounts sharing
# a database each have their own trades (a simulator numbers every account's alike).
fills = Table(
    "fills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exchange", String, nullable=False),
    Column("symbol", String, nullable=False),
    Column("trade_id", String, nullable=False),
    Column("client_order_id", String, nullable=False),
    Column("position_id", String, _position_fk(), nullable=False, index=True),
    Column("role", String, nullable=False),
    Column("side", String, nullable=False),
    Column("qty", Amount, nullable=False),
    Column("price", Amount, nullable=False),
    Column("fee", Amount, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("account", String, nullable=False),
    UniqueConstraint("account", "exchange", "symbol", "trade_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String, nullable=False),
    Column("position_id", String, _position_fk(), nullable=True, index=True),
    Column("message", Text, nullable=False),
    Column("data", Text, nullable=False),
    Index(None, "account", "id"),
)

leases = Table(
    "leases",
    metadata,
    Column("account", String, primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("holder", String, nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("renewed_at", UtcDateTime, nullable=False),
)

# One row per account: the id this database gave the account on its first open.
installations = Table(
    "installations",
    metadata,
    Column("account", String, primary_key=True),
    Column("installation_id", String, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Drift's user_order_id (a u8) for each of warden's client order ids sent to Drift (migration
# 0004). A row is allocated (`live`) before its order is sent and released only when the order
# is final, so no live id is ever handed to a second order, even across a crash; the partial
# unique index says so in the database. `order_id` (Drift's own, unique per user) attributes
# fills and updates once known; the transaction's signature and last valid block height let an
# unknown outcome be settled after a restart.
DRIFT_LIVE_ID = "uq_drift_user_order_ids_account_user_order_id_live"
drift_user_order_ids = Table(
    "drift_user_order_ids",
    metadata,
    Column("account", String, primary_key=True),
    Column("client_order_id", String, primary_key=True),
    Column("user_order_id", Integer, nullable=False),
    Column("live", Boolean, nullable=False),
    Column("order_id", Integer, nullable=True),
    Column("tx_signature", String, nullable=True),
    Column("last_valid_block_height", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("released_at", UtcDateTime, nullable=True),
    Index(None, "account", "order_id"),
    Index(
        DRIFT_LIVE_ID,
        "account",
        "user_order_id",
        unique=True,
        sqlite_where=text("live"),
        postgresql_where=text("live"),
    ),
)

# The alert outbox (migration 0003): written in the transaction of the event that causes an
# alert, delivered at least once, marked delivered. `position_id` is not a foreign key: an
# alert may name a position whose row is still queued (degraded mode).
alerts = Table(
    "alerts",
    metadata,
    Column("id", String, primary_key=True),
    Column("account", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("severity", String, nullable=False),
    Column("message", Text, nullable=False),
    Column("position_id", String, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    # the channels that have an alert not yet delivered everywhere (JSON list; revision 0006)
    Column("channels", Text, nullable=True),
    Index(None, "account", "delivered_at", "at"),
)

# A close signal's id and the positions it closed (migration 0007): a resent close acts on these
# only, never on a position opened on the symbol since. `position_ids` is a JSON list. Per symbol
# (0008): one strategy's alerts on two symbols can carry the same id.
close_signals = Table(
    "close_signals",
    metadata,
    Column("account", String, primary_key=True),
    Column("signal_id", String, primary_key=True),
    Column("symbol", String, primary_key=True),
    Column("position_ids", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# One row per account: the trader's controls (pause, kill switch, daily-loss pause).
controls = Table(
    "controls",
    metadata,
    Column("account", String, primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("killed", Boolean, nullable=False),
    Column("daily_loss_until", UtcDateTime, nullable=True),
    Column("reason", Text, nullable=False),
    Column("changed_at", UtcDateTime, nullable=True),
)
