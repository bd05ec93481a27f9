"""One-way position accounting: signed size, average entry, realized PnL and fees."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from warden.domain.reports import PositionReport
from warden.domain.values import ZERO, OrderSide, Side, Symbol

TAKER_FEE_RATE = Decimal("0.0004")
"""Binance USD-M default taker fee: 0.04 % of the notional, charged in quote."""

_PLACES = Decimal("1e-8")


def taker_fee(qty: Decimal, price: Decimal, rate: Decimal = TAKER_FEE_RATE) -> Decimal:
    """The fee of one trade in quote, to 8 decimal places."""
    return (qty * price * rate).quantize(_PLACES, rounding=ROUND_HALF_UP)


def signed(side: OrderSide, qty: Decimal) -> Decimal:
    """Buys add to the signed position, sells subtract."""
    return qty if side is OrderSide.BUY else -qty


@dataclass(frozen=True, slots=True)
class SimPosition:
    """The account's position in one symbol. `side` keeps its last value when flat."""

    symbol: Symbol
    qty: Decimal = ZERO  # signed: > 0 long, < 0 short
    entry_price: Decimal = ZERO
    side: Side = Side.LONG
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    @property
    def flat(self) -> bool:
        return self.qty == 0

    def reduced_by(self, side: OrderSide) -> bool:
        """Whether an order on `side` would shrink this (non-flat) position."""
        return not self.flat and (self.qty > 0) == (side is OrderSide.SELL)

    def apply(self, side: OrderSide, qty: Decimal, price: Decimal, fee: Decimal) -> SimPosition:
        """The position after one trade: opens, adds, reduces, closes or flips."""
        delta = signed(side, qty)
        new_qty = self.qty + delta
        fees = self.fees + fee
        if self.flat or (self.qty > 0) == (delta > 0):
            entry = (abs(self.qty) * self.entry_price + qty * price) / abs(new_qty)
            return self._moved(new_qty, entry.quantize(_PLACES), self.realized_pnl, fees)
        closed = min(qty, abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        realized = self.realized_pnl + closed * (price - self.entry_price) * direction
        if new_qty == 0:
            entry = ZERO
        elif (new_qty > 0) == (self.qty > 0):
            entry = self.entry_price
        else:
            entry = price  # flipped: the excess opened a new position at this price
        return self._moved(new_qty, entry, realized, fees)

    def _moved(self, qty: Decimal, entry: Decimal, realized: Decimal, fees: Decimal) -> SimPosition:
        side = self.side if qty == 0 else (Side.LONG if qty > 0 else Side.SHORT)
        return replace(self, qty=qty, entry_price=entry, side=side, realized_pnl=realized, fees=fees)

    def report(self) -> PositionReport:
        """The stream/query form: unsigned size; size 0 and entry 0 when flat."""
        return PositionReport(self.symbol, self.side, abs(self.qty), self.entry_price)
