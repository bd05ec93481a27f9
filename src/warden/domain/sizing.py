"""Turning a signal's size (USD notional or base quantity) into an exchange quantity."""

from __future__ import annotations

from decimal import Decimal

from warden.domain.errors import ValidationError
from warden.domain.values import ZERO, Instrument


def order_qty(instrument: Instrument, mark: Decimal, usd: Decimal | None, qty: Decimal | None) -> Decimal:
    """The quantity to send, rounded down to the lot; refuse what the exchange would refuse."""
    if (usd is None) == (qty is None):
        raise ValidationError("usd", "give exactly one of usd or qty")
    field = "usd" if usd is not None else "qty"
    raw = usd / mark if usd is not None else qty
    assert raw is not None
    if raw <= ZERO or (usd is not None and usd <= ZERO):
        raise ValidationError(field, "must be greater than zero")
    rounded = instrument.round_qty(raw)
    if rounded < instrument.min_qty:
        least = max(instrument.min_qty * mark, instrument.min_notional)
        raise ValidationError(
            field,
            f"{raw:.8g} {instrument.symbol.split('/')[0]} is below the minimum quantity {instrument.min_qty}"
            f" of {instrument.symbol} (about {least:.2f} USD at {mark})",
        )
    notional = rounded * mark
    if notional < instrument.min_notional:
        raise ValidationError(
            field,
            f"notional {notional:.2f} is below the minimum {instrument.min_notional} of {instrument.symbol}",
        )
    return rounded
