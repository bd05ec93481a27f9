"""The position: a lifecycle table and pure functions that return new state.

The lifecycle (rows are "from", the set is every allowed "to"):

    OPENING    -> OPEN       the entry fill is confirmed (stream, REST answer or lookup)
               -> FAILED     the entry was rejected, or a lookup proved it never existed
    OPEN       -> PROTECTED  a stop rests on the exchange for the full remaining size
               -> CLOSING    the stop could not be placed, or a close was asked for
               -> CLOSED     an exit fill flattened it before protection was recorded
    PROTECTED  -> OPEN       the stop disappeared (cancelled by hand): unprotected again
               -> CLOSING    a close was asked for
               -> CLOSED     a stop, a take-profit or the trailing runner flattened it
    CLOSING    -> CLOSED     flat is verified
               -> PROTECTED  the close failed; the stop is still resting
               -> OPEN       the close failed and no stop rests
    CLOSED, FAILED           terminal

The real world does odd things: a stop can fill while its replacement is
being placed, a fill can arrive after a cancel was acknowledged. Fills are
therefore applied in any status but the terminal ones, and a fill whose trade
id was seen before is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from warden.domain.copying import evolve
from warden.domain.errors import InvalidFill, InvalidTransition
from warden.domain.orders import Fill
from warden.domain.plan import ExitLevels, ExitPlan, tighter
from warden.domain.values import ZERO, Instrument, OrderRole, PositionId, Side, Symbol, TradeId


class PositionStatus(StrEnum):
    OPENING = "opening"
    OPEN = "open"
    PROTECTED = "protected"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL  # a module-level set: enum attribute lookups are slow on 3.11


_S = PositionStatus
_TERMINAL = frozenset({_S.CLOSED, _S.FAILED})
TRANSITIONS: dict[PositionStatus, frozenset[PositionStatus]] = {
    _S.OPENING: frozenset({_S.OPEN, _S.FAILED}),
    _S.OPEN: frozenset({_S.PROTECTED, _S.CLOSING, _S.CLOSED}),
    _S.PROTECTED: frozenset({_S.OPEN, _S.CLOSING, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.CLOSED, _S.PROTECTED, _S.OPEN}),
    _S.CLOSED: frozenset(),
    _S.FAILED: frozenset(),
}


class ExitReason(StrEnum):
    STOP = "stop"
    TRAILING_STOP = "trailing_stop"
    TP1 = "tp1"
    TP2 = "tp2"
    MANUAL = "manual"
    PROTECTION_FAILED = "protection_failed"
    LIQUIDATION = "liquidation"
    EXTERNAL = "external"
    RECONCILED_MISSING = "reconciled_missing"
    UNRECORDED_CLOSE = "unrecorded_close"
    """A close of warden's found from its trades after a restart, never recorded: the process that
    sent it died before writing it, and the reason it was sent for with it. Not "manual": nobody
    closed the position by hand."""


@dataclass(frozen=True, slots=True)
class Position:
    id: PositionId
    symbol: Symbol
    side: Side
    status: PositionStatus
    target_qty: Decimal
    plan: ExitPlan
    opened_at: datetime
    signal_id: str | None = None
    origin: str = "signal"
    exclusive: bool = True
    filled_qty: Decimal = ZERO
    entry_price: Decimal | None = None
    closed_qty: Decimal = ZERO
    stop_price: Decimal | None = None
    tp1_price: Decimal | None = None
    tp1_qty: Decimal = ZERO
    tp2_price: Decimal | None = None
    tp2_qty: Decimal = ZERO
    tp1_hit: bool = False
    tp2_hit: bool = False
    trailing_active: bool = False
    watermark: Decimal | None = None
    mae: Decimal = ZERO
    mfe: Decimal = ZERO
    last_price: Decimal | None = None
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    exit_reason: str | None = None
    closed_at: datetime | None = None
    stop_seq: int = 0
    version: int = 0
    applied_trades: frozenset[TradeId] = field(default_factory=frozenset)

    @property
    def remaining(self) -> Decimal:
        return self.filled_qty - self.closed_qty

    @property
    def is_active(self) -> bool:
        return not self.status.terminal

    def transition(self, to: PositionStatus) -> Position:
        """Move to `to`, or raise InvalidTransition if the table forbids it."""
        if to is self.status:
            return self
        if to not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"{self.id}: {self.status} -> {to} is not allowed")
        return evolve(self, status=to)

    def with_levels(self, levels: ExitLevels) -> Position:
        """The plan's levels for this fill; take-profit prices already chosen (by the signal, or
        moved since) are kept — only their quantities follow the plan."""
        return evolve(
            self,
            stop_price=tighter(self.side, self.stop_price, levels.stop_price),
            tp1_price=self.tp1_price if self.tp1_price is not None else levels.tp1_price,
            tp1_qty=levels.tp1_qty,
            tp2_price=self.tp2_price if self.tp2_price is not None else levels.tp2_price,
            tp2_qty=levels.tp2_qty,
        )

    def apply_fill(self, fill: Fill) -> Position:
        """Apply one execution; the same trade id twice is a no-op.

        The first entry fill starts the watermark at its price: the peak (trough) is the
        position's own, moved afterwards only by marks observed after the fill.
        """
        if fill.trade_id in self.applied_trades:
            return self
        if fill.qty <= ZERO:
            raise InvalidFill(f"{fill.trade_id}: quantity {fill.qty} is not positive")
        seen = self.applied_trades | {fill.trade_id}
        if fill.role is OrderRole.ENTRY:
            if fill.side is not self.side.entry_side:
                raise InvalidFill(f"{fill.trade_id}: {fill.side} cannot open a {self.side}")
            # Average cost of what is open (as exchanges count it): an addition after a
            # partial close is weighted against the remaining size, not everything ever filled.
            held = self.remaining
            cost = (self.entry_price or ZERO) * held + fill.price * fill.qty
            return evolve(
                self,
                filled_qty=self.filled_qty + fill.qty,
                entry_price=cost / (held + fill.qty),
                watermark=fill.price if self.watermark is None else self.watermark,
                fees=self.fees + fill.fee,
                realized_pnl=self.realized_pnl - fill.fee,
                applied_trades=seen,
            )
        if fill.side is not self.side.exit_side:
            raise InvalidFill(f"{fill.trade_id}: {fill.side} cannot reduce a {self.side}")
        if fill.qty > self.remaining:
            raise InvalidFill(f"{fill.trade_id}: closes {fill.qty}, only {self.remaining} open")
        entry = self.entry_price or fill.price
        pnl = (fill.price - entry) * fill.qty * self.side.sign - fill.fee
        return evolve(
            self,
            closed_qty=self.closed_qty + fill.qty,
            realized_pnl=self.realized_pnl + pnl,
            fees=self.fees + fill.fee,
            tp1_hit=self.tp1_hit or fill.role is OrderRole.TP1,
            tp2_hit=self.tp2_hit or fill.role is OrderRole.TP2,
            trailing_active=self.trailing_active or fill.role is OrderRole.TP2,
            applied_trades=seen,
        )

    def exit_reason_for(self, role: OrderRole) -> ExitReason:
        if role is OrderRole.STOP:
            return ExitReason.TRAILING_STOP if self.trailing_active else ExitReason.STOP
        if role is OrderRole.TP1:
            return ExitReason.TP1
        if role is OrderRole.TP2:
            return ExitReason.TP2
        return ExitReason.MANUAL

    def closed(self, reason: str, at: datetime) -> Position:
        return evolve(self.transition(PositionStatus.CLOSED), exit_reason=reason, closed_at=at)

    def mark(self, price: Decimal) -> Position:
        """Record a mark price: last price, the watermark, MAE and MFE."""
        entry = self.entry_price
        if entry is None or self.remaining <= ZERO:
            return evolve(self, last_price=price)
        s = self.side.sign
        move = (price - entry) * s
        wm = self.watermark
        if wm is None or (price - wm) * s > 0:
            wm = price
        return evolve(
            self,
            last_price=price,
            watermark=wm,
            mfe=max(self.mfe, move),
            mae=max(self.mae, -move),
        )

    def with_marks_of(self, other: Position) -> Position:
        """Keep the furthest watermark and excursions of two copies of one position.

        Ticks update these fields in memory between transitions; they only ever
        grow, so merging (not overwriting) means a transition computed from an
        older copy cannot erase a newer peak.
        """
        wm = self.watermark
        if other.watermark is not None and (wm is None or (other.watermark - wm) * self.side.sign > 0):
            wm = other.watermark
        mae, mfe = max(self.mae, other.mae), max(self.mfe, other.mfe)
        last = other.last_price if other.last_price is not None else self.last_price
        if wm is self.watermark and mae is self.mae and mfe is self.mfe and last is self.last_price:
            return self  # nothing newer in `other` (max keeps its first argument on a tie)
        return evolve(self, watermark=wm, mae=mae, mfe=mfe, last_price=last)

    def trailing_target(self, instrument: Instrument) -> Decimal | None:
        """The stop the runner wants now, if it is at least one tick tighter."""
        if not self.trailing_active or self.watermark is None:
            return None
        raw = self.watermark * (1 - self.side.sign * self.plan.trail_pct)
        target = instrument.round_price(raw)
        current = self.stop_price
        if current is not None and (target - current) * self.side.sign < instrument.tick_size:
            return None
        return target

    def breakeven_target(self) -> Decimal | None:
        """After TP1, with the option on: the entry price, if that tightens the stop."""
        if not (self.plan.breakeven_after_tp1 and self.tp1_hit) or self.entry_price is None:
            return None
        target = tighter(self.side, self.stop_price, self.entry_price)
        return None if target == self.stop_price else target
