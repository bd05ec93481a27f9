"""Exposure measured by the exchange: how long each symbol's position has gone without a covering stop.

A position is *covered* when the reduce-only STOP_MARKET orders resting on its closing side
(sells for a long, buys for a short) add up to at least its absolute size; a resting
closePosition stop on that side covers any size. A flat symbol is covered. Take-profits,
stops on the opening side and stops that are not reduce-only cover nothing.

The core re-evaluates coverage after every change (an order placed, cancelled, triggered or
filled, a position changed by anyone) on its own clock, and `ExposureLog` keeps, per symbol,
when the current uncovered stretch began and the longest finished one, and (in memory only,
the newest `HISTORY` of them) every finished stretch with its start and end, so a checker can
tell which moment caused which stretch. Both are pure and synchronous, like the core.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from warden.domain.reports import OrderReport
from warden.domain.values import ZERO, OrderSide, OrderType, Symbol

ExposureSide = Literal["long", "short", "flat"]

HISTORY = 10_000
"""Finished stretches kept in memory (all symbols, newest last); older ones are forgotten."""


@dataclass(frozen=True, slots=True)
class SimExposure:
    """One symbol's exposure as the exchange measures it.

    side / qty: the position now (qty unsigned, 0 when flat). unprotected_seconds: how long
    the current uncovered stretch has lasted (0 when covered or flat). max_unprotected_seconds:
    the longest stretch seen for this symbol, the current one included.
    """

    symbol: Symbol
    side: ExposureSide
    qty: Decimal
    unprotected_seconds: float
    max_unprotected_seconds: float


@dataclass(frozen=True, slots=True)
class SimStretch:
    """One uncovered stretch of a symbol, on the exchange's clock; `end` None: it goes on."""

    symbol: Symbol
    start: datetime
    end: datetime | None

    def seconds(self, now: datetime) -> float:
        return _seconds(self.start, self.end or now)


def closing_side(signed_qty: Decimal) -> OrderSide:
    """The order side that reduces a position of this signed size (non-zero)."""
    return OrderSide.SELL if signed_qty > 0 else OrderSide.BUY


class StopCover:
    """Per symbol and order side, what the resting reduce-only STOP_MARKET orders cover.

    Kept incrementally (O(1) per order rested or taken off the book), so the core can
    re-evaluate coverage after every change without scanning its books.
    """

    __slots__ = ("_qty", "_whole")

    def __init__(self) -> None:
        self._qty: dict[tuple[Symbol, OrderSide], Decimal] = {}
        self._whole: dict[tuple[Symbol, OrderSide], int] = {}  # closePosition stops

    @staticmethod
    def counts(order: OrderReport) -> bool:
        """Whether a resting order of this kind can cover a position."""
        return order.type is OrderType.STOP_MARKET and order.reduce_only

    def add(self, order: OrderReport, *, whole: bool) -> None:
        """A stop started resting; `whole`: it closes the whole position (closePosition)."""
        if not self.counts(order):
            return
        key = (order.symbol, order.side)
        if whole:
            self._whole[key] = self._whole.get(key, 0) + 1
        else:
            self._qty[key] = self._qty.get(key, ZERO) + order.qty

    def remove(self, order: OrderReport, *, whole: bool) -> None:
        """A stop stopped resting (cancelled, triggered): the inverse of `add`."""
        if not self.counts(order):
            return
        key = (order.symbol, order.side)
        if whole:
            self._whole[key] -= 1
        else:
            self._qty[key] -= order.qty

    def covers(self, symbol: Symbol, signed_qty: Decimal) -> bool:
        """Whether a position of this signed size is covered (a flat one always is)."""
        if signed_qty == 0:
            return True
        key = (symbol, closing_side(signed_qty))
        return self._whole.get(key, 0) > 0 or self._qty.get(key, ZERO) >= abs(signed_qty)


@dataclass(slots=True)
class _Stretch:
    since: datetime | None = None  # start of the current uncovered stretch; None while covered
    longest: float = 0.0  # seconds of the longest finished stretch


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class ExposureLog:
    """Per symbol: when the current uncovered stretch began, and the longest finished one."""

    __slots__ = ("_finished", "_stretches")

    def __init__(self) -> None:
        self._stretches: dict[Symbol, _Stretch] = {}
        self._finished: deque[SimStretch] = deque(maxlen=HISTORY)

    def update(self, symbol: Symbol, covered: bool, now: datetime) -> None:
        """Record the coverage after a change at `now`: start a stretch, or end the current one."""
        stretch = self._stretches.get(symbol)
        if stretch is None:
            if covered:
                return
            stretch = self._stretches[symbol] = _Stretch()
        if not covered:
            if stretch.since is None:
                stretch.since = now
        elif stretch.since is not None:
            stretch.longest = max(stretch.longest, _seconds(stretch.since, now))
            self._finished.append(SimStretch(symbol, stretch.since, now))
            stretch.since = None

    def current(self, symbol: Symbol, now: datetime) -> float:
        """Seconds of the current uncovered stretch at `now`; 0 while covered."""
        stretch = self._stretches.get(symbol)
        if stretch is None or stretch.since is None:
            return 0.0
        return _seconds(stretch.since, now)

    def longest(self, symbol: Symbol, now: datetime) -> float:
        """The longest stretch so far, the current one (up to `now`) included."""
        stretch = self._stretches.get(symbol)
        return 0.0 if stretch is None else max(stretch.longest, self.current(symbol, now))

    def history(self) -> list[SimStretch]:
        """The finished stretches kept (oldest first), then the ones still going on (end None)."""
        going = [SimStretch(s, t.since, None) for s, t in sorted(self._stretches.items()) if t.since]
        return [*self._finished, *going]

    def to_json(self) -> dict[str, Any]:
        return {
            s: {"since": None if t.since is None else t.since.isoformat(), "longest": t.longest}
            for s, t in sorted(self._stretches.items())
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExposureLog:
        log = cls()
        for symbol, stretch in data.items():
            since = stretch["since"]
            log._stretches[Symbol(symbol)] = _Stretch(
                None if since is None else datetime.fromisoformat(since), float(stretch["longest"])
            )
        return log
