"""The exit plan: where the stop and take-profits go, and how much each closes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from warden.domain.errors import ValidationError
from warden.domain.values import ZERO, Instrument, Side

ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """Distances are fractions of the entry price (0.015 = 1.5 %).

    Fractions of size are fractions of the filled entry size: TP1 closes
    `tp1_fraction`, TP2 a further `tp2_fraction`, and the rest is the runner,
    which trails the peak (or trough) by `trail_pct` once TP2 is hit.
    """

    stop_pct: Decimal = Decimal("0.015")
    tp1_pct: Decimal = Decimal("0.01")
    tp1_fraction: Decimal = Decimal("0.6")
    tp2_pct: Decimal = Decimal("0.02")
    tp2_fraction: Decimal = Decimal("0.2")
    trail_pct: Decimal = Decimal("0.005")
    breakeven_after_tp1: bool = False

    def __post_init__(self) -> None:
        for name in ("stop_pct", "tp1_pct", "tp2_pct", "trail_pct"):
            value = getattr(self, name)
            if not ZERO < value < ONE:
                raise ValidationError(name, f"must be between 0 and 1, got {value}")
        for name in ("tp1_fraction", "tp2_fraction"):
            value = getattr(self, name)
            if not ZERO <= value <= ONE:
                raise ValidationError(name, f"must be between 0 and 1, got {value}")
        if self.tp1_fraction + self.tp2_fraction > ONE:
            raise ValidationError("tp2_fraction", "tp1_fraction + tp2_fraction exceeds 1")
        if self.tp2_pct <= self.tp1_pct:
            raise ValidationError("tp2_pct", "must be further than tp1_pct")


@dataclass(frozen=True, slots=True)
class ExitLevels:
    """Concrete prices and quantities for one filled position."""

    stop_price: Decimal
    tp1_price: Decimal
    tp1_qty: Decimal
    tp2_price: Decimal
    tp2_qty: Decimal


def levels_for(
    plan: ExitPlan,
    side: Side,
    entry: Decimal,
    size: Decimal,
    instrument: Instrument,
    stop_price: Decimal | None = None,
) -> ExitLevels:
    """Price the plan at an entry; quantities are rounded down to the lot size.

    A take-profit whose quantity rounds to less than the exchange minimum is
    given quantity zero (not placed); its share stays with the runner.
    """
    s = side.sign
    stop = stop_price if stop_price is not None else entry * (ONE - s * plan.stop_pct)
    tp1_qty = instrument.round_qty(size * plan.tp1_fraction)
    tp2_qty = instrument.round_qty(size * plan.tp2_fraction)
    if tp1_qty < instrument.min_qty:
        tp1_qty = ZERO
    if tp2_qty < instrument.min_qty or tp1_qty + tp2_qty > size:
        tp2_qty = ZERO
    return ExitLevels(
        stop_price=instrument.round_price(stop),
        tp1_price=instrument.round_price(entry * (ONE + s * plan.tp1_pct)),
        tp1_qty=tp1_qty,
        tp2_price=instrument.round_price(entry * (ONE + s * plan.tp2_pct)),
        tp2_qty=tp2_qty,
    )


def tighter(side: Side, current: Decimal | None, proposed: Decimal) -> Decimal:
    """The more protective of two stop prices: a stop never loosens."""
    if current is None:
        return proposed
    return max(current, proposed) if side is Side.LONG else min(current, proposed)
