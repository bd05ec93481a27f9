"""The tick path: per-symbol trigger thresholds and lazily derived watermarks.

A mark-price tick must cost a few comparisons, whatever the number of
positions. Per symbol we keep the last price, the high and low since the
positions were last brought up to date, and two thresholds: `up`, the lowest
price at which some long runner's trailing stop would move, and `down`, the
highest price at which some short runner's would. A tick between them only
updates last/high/low. Watermarks, MAE and MFE of the symbol's positions are
derived from high/low when somebody looks (`materialize`): at a crossing, on a
read, before a transition, and on the periodic flush.

A position's watermark, MAE and MFE are its own: they start at its entry fill
(`Position.apply_fill`) and move only with marks observed after it. So the
range is folded in and restarted *empty* whenever a position joins the symbol
or gets its first price; restarting it at the last price would hand that
(older) mark to the position.

Thresholds are conservative (a crossing is re-checked exactly with
`Position.trailing_target`), so the fast path never misses a decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from warden.domain.position import Position
from warden.domain.values import Instrument, PositionId, Side, Symbol

NEVER_UP = Decimal("Infinity")
NEVER_DOWN = Decimal("-Infinity")


@dataclass(slots=True)
class Watch:
    last: Decimal | None = None
    high: Decimal = NEVER_DOWN
    low: Decimal = NEVER_UP
    up: Decimal = NEVER_UP
    down: Decimal = NEVER_DOWN
    stale: bool = True


@dataclass(frozen=True, slots=True)
class TrailDecision:
    position_id: PositionId
    stop_price: Decimal


def runner_threshold(position: Position, instrument: Instrument) -> Decimal | None:
    """The price beyond which this runner's stop would move by at least one tick."""
    if not position.trailing_active or position.stop_price is None or position.remaining <= 0:
        return None
    half_tick = instrument.tick_size / 2
    trail = position.plan.trail_pct
    if position.side is Side.LONG:
        return (position.stop_price + half_tick) / (1 - trail)
    return (position.stop_price - half_tick) / (1 + trail)


def with_range(position: Position, high: Decimal, low: Decimal, last: Decimal | None) -> Position:
    """Fold a symbol's high/low since the last reset into one position (marks only; idempotent)."""
    entry = position.entry_price
    if last is None or high < low or entry is None or position.remaining <= 0:
        return position if last is None else replace(position, last_price=last)
    if position.side is Side.LONG:
        best, worst = high, low
        wm = best if position.watermark is None or best > position.watermark else position.watermark
        mfe, mae = best - entry, entry - worst
    else:
        best, worst = low, high
        wm = best if position.watermark is None or best < position.watermark else position.watermark
        mfe, mae = entry - best, worst - entry
    return replace(
        position,
        last_price=last,
        watermark=wm,
        mfe=max(position.mfe, mfe),
        mae=max(position.mae, mae),
    )


def peak_with(position: Position, high: Decimal, low: Decimal) -> Decimal | None:
    """The watermark `with_range` would give `position` (the range folded in), without building it."""
    wm = position.watermark
    if high < low or position.entry_price is None or position.remaining <= 0:
        return wm
    if position.side is Side.LONG:
        return high if wm is None or high > wm else wm
    return low if wm is None or low < wm else wm


def trail_target_at(position: Position, watermark: Decimal | None, instrument: Instrument) -> Decimal | None:
    """`Position.trailing_target` for the given watermark (same rounding, same one-tick rule)."""
    if not position.trailing_active or watermark is None:
        return None
    target = instrument.round_price(watermark * (1 - position.side.sign * position.plan.trail_pct))
    current = position.stop_price
    if current is not None and (target - current) * position.side.sign < instrument.tick_size:
        return None
    return target


class TickIndex:
    """Owns no positions: reads them through `get` and `members`, writes back through `put`."""

    def __init__(
        self,
        instruments: dict[Symbol, Instrument],
        members: Callable[[Symbol], Iterable[PositionId]],
        get: Callable[[PositionId], Position],
        put: Callable[[Position], None],
    ) -> None:
        self._instruments = instruments
        self._members = members
        self._get = get
        self._put = put
        self._watch: dict[Symbol, Watch] = {}
        self.changed: set[Symbol] = set()

    def on_mark(self, symbol: Symbol, price: Decimal) -> list[TrailDecision] | None:
        """The fast path; returns decisions only when a runner threshold is crossed."""
        w = self._watch.get(symbol)
        if w is None:
            w = self._watch[symbol] = Watch()
        w.last = price
        if price > w.high:
            w.high = price
            self.changed.add(symbol)
        if price < w.low:
            w.low = price
            self.changed.add(symbol)
        if w.stale or price >= w.up or price <= w.down:
            return self._crossed(symbol, w)
        return None

    def _crossed(self, symbol: Symbol, w: Watch) -> list[TrailDecision]:
        """Only runners can need a decision: fold the range into them, ask, re-arm."""
        instrument = self._instruments[symbol]
        decisions = []
        up, down = NEVER_UP, NEVER_DOWN
        for pid in self._members(symbol):
            position = self._get(pid)
            if not position.trailing_active:
                continue
            # Decide from the peak the range gives, without building the folded position: the
            # range stays and is folded in when someone looks (materialize), as for quiet ticks.
            target = trail_target_at(position, peak_with(position, w.high, w.low), instrument)
            if target is not None:
                self._put(with_range(position, w.high, w.low, w.last))  # its move reads the peak
                decisions.append(TrailDecision(pid, target))
            up, down = _widen(up, down, position, instrument)
        w.up, w.down, w.stale = up, down, False
        return decisions

    def materialize(self, symbol: Symbol) -> None:
        """Fold the range into every position of `symbol`, then start a new, empty range."""
        w = self._watch.get(symbol)
        if w is None:
            return
        for pid in self._members(symbol):
            self._put(with_range(self._get(pid), w.high, w.low, w.last))
        w.high, w.low = NEVER_DOWN, NEVER_UP
        w.stale = True

    def before_change(self, symbol: Symbol, position_id: PositionId, joining: bool) -> None:
        """A transition is about to replace a position.

        Its own marks are brought up to date. A position joining the symbol, or one
        without an entry price yet (this transition may carry its entry fill), must not
        inherit the range from before: then the whole symbol is folded and the range
        restarts empty. Thresholds are recomputed on the next tick.
        """
        w = self._watch.get(symbol)
        if w is None:
            return
        if joining:
            self.materialize(symbol)
            return
        current = self._get(position_id)
        if current.entry_price is None:
            self.materialize(symbol)
            return
        self._put(with_range(current, w.high, w.low, w.last))
        w.stale = True

    def materialize_all(self) -> set[Symbol]:
        """Fold every changed symbol's range in; returns those symbols."""
        changed, self.changed = self.changed, set()
        for symbol in changed:
            self.materialize(symbol)
        return changed


def _widen(up: Decimal, down: Decimal, position: Position, instrument: Instrument) -> tuple[Decimal, Decimal]:
    threshold = runner_threshold(position, instrument)
    if threshold is None:
        return up, down
    if position.side is Side.LONG:
        return min(up, threshold), down
    return up, max(down, threshold)
