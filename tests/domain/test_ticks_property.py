"""Property: the tick index never misses a trailing decision, and its watermarks are the true ones.

A naive reference folds every mark into every position directly: a position's
watermark is the best price seen since its fill (the fill price included), MAE and
MFE the worst and best excursions from its entry, and the stop it wants is
`Position.trailing_target` of that. The index is driven through the same calls the
engine makes (`on_mark` for every tick; `before_change` and the merge of the
ledger on every transition; `materialize` on reads, `materialize_all` on the
periodic flush), and compared with the reference:

- at every tick, each runner whose reference target is not None is either decided
  at that tick or has a decision not yet applied with the same or a tighter target
  (the stop only changes when the test applies a decision, as the engine would);
- every decision the index returns is exactly the reference's target for that
  runner (thresholds are conservative, but the decision itself is re-checked);
- whatever the index has brought up to date (a read, a transition, a crossing, the
  flush) has the reference's watermark, MAE and MFE.

Random marks almost never land where a stop starts to move, so one rule marks just
short of, at, and just past that price for some runner (found from the reference).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from tests.domain.ticks_rig import Book, as_runner, filled, instrument, opening
from warden.domain.plan import ExitPlan, tighter
from warden.domain.position import Position, PositionStatus
from warden.domain.values import ZERO, Instrument, PositionId, Side, Symbol

TICKS = ["0.001", "0.01", "0.05", "0.1", "0.25", "1"]
# Realistic distances, and a few (0.2, 0.5, 0.6) for which the price where a stop starts
# to move is a short decimal, so that marks can land exactly on it.
TRAILS = [
    Decimal(t) for t in ("0.0005", "0.001", "0.003", "0.005", "0.0125", "0.04", "0.1", "0.2", "0.5", "0.6")
]

# Prices around 100 with three decimals: on and off every tick grid.
prices = st.integers(80_000, 120_000).map(lambda n: Decimal(n) / 1000)
# A stop this many tenths of a percent from the entry on the loss side (negative: past it).
stop_offsets = st.integers(-50, 200)
pick = st.integers(0, 1_000)


@dataclass
class Reference:
    """What folding every mark into the position directly gives.

    `best`/`worst` start at the fill price; an adopted position (found on the exchange,
    priced, fill time unknown) starts with none and takes the marks seen from then on.
    One entry fill per position: MAE and MFE are excursions from that one price.
    """

    side: Side
    entry: Decimal
    best: Decimal | None
    worst: Decimal | None

    def observe(self, mark: Decimal) -> None:
        s = self.side.sign
        if self.best is None or (mark - self.best) * s > 0:
            self.best = mark
        if self.worst is None or (mark - self.worst) * s < 0:
            self.worst = mark

    @property
    def marks(self) -> tuple[Decimal | None, Decimal, Decimal]:
        """(watermark, MAE, MFE)."""
        s = self.side.sign
        mae = ZERO if self.worst is None else max(ZERO, (self.entry - self.worst) * s)
        mfe = ZERO if self.best is None else max(ZERO, (self.best - self.entry) * s)
        return self.best, mae, mfe


def nth(items: list[Position], k: int) -> Position:
    return items[k % len(items)]


class TickIndexAgainstReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.instruments: list[Instrument] = []
        self.book = Book()
        self.ref: dict[PositionId, Reference] = {}
        self.pending: dict[PositionId, Decimal] = {}  # decided, not yet applied
        self.last: dict[Symbol, Decimal] = {}
        self.created = 0

    # ------------------------------------------------------------------ helpers

    def pick_symbol(self, k: int) -> Symbol:
        return self.instruments[k % len(self.instruments)].symbol

    def instrument_of(self, p: Position) -> Instrument:
        return next(i for i in self.instruments if i.symbol == p.symbol)

    def active(self, symbol: Symbol | None = None) -> list[Position]:
        return [
            p for p in self.book.positions.values() if p.is_active and (symbol is None or p.symbol == symbol)
        ]

    def opening(self) -> list[Position]:
        return [p for p in self.active() if p.status is PositionStatus.OPENING]

    def filled(self) -> list[Position]:
        return [p for p in self.active() if p.entry_price is not None and not p.trailing_active]

    def runners(self, symbol: Symbol | None = None) -> list[Position]:
        return [p for p in self.active(symbol) if p.trailing_active]

    def target(self, p: Position) -> Decimal | None:
        """The reference's decision: the position's own stop and plan, the reference's watermark."""
        return replace(p, watermark=self.ref[p.id].best).trailing_target(self.instrument_of(p))

    def stop(self, p: Position, offset: int, on_grid: bool) -> Decimal:
        assert p.entry_price is not None
        raw = p.entry_price * (1 - p.side.sign * Decimal(offset) / 1000)
        return self.instrument_of(p).round_price(raw) if on_grid else raw

    def assert_up_to_date(self, p: Position) -> None:
        if p.id in self.ref and p.is_active:
            assert (p.watermark, p.mae, p.mfe) == self.ref[p.id].marks, p.id

    def change(self, new: Position) -> None:
        """A committed transition; the position it leaves behind is up to date."""
        self.assert_up_to_date(self.book.change(new))

    # -------------------------------------------------------------------- rules

    @initialize(ticks=st.lists(st.sampled_from(TICKS), min_size=1, max_size=3))
    def symbols(self, ticks: list[str]) -> None:
        self.instruments = [instrument(f"S{i}/USDT:USDT", t) for i, t in enumerate(ticks)]
        self.book = Book(*self.instruments)

    @rule(k=pick, side=st.sampled_from(list(Side)), trail=st.sampled_from(TRAILS))
    def open(self, k: int, side: Side, trail: Decimal) -> None:
        """A position joins its symbol: OPENING, no price yet."""
        self.created += 1
        pid = f"p{self.created:03d}"
        self.change(opening(pid, self.pick_symbol(k), side, ExitPlan(trail_pct=trail)))

    @rule(k=pick, side=st.sampled_from(list(Side)), trail=st.sampled_from(TRAILS), at=prices)
    def adopt(self, k: int, side: Side, trail: Decimal, at: Decimal) -> None:
        """A position found on the exchange joins its symbol already priced (reconciliation)."""
        self.created += 1
        p = replace(
            opening(f"p{self.created:03d}", self.pick_symbol(k), side, ExitPlan(trail_pct=trail)),
            status=PositionStatus.OPEN,
            filled_qty=Decimal(1),
            entry_price=at,
            last_price=at,
        )
        self.ref[p.id] = Reference(side, at, None, None)
        self.change(p)

    @precondition(lambda self: self.opening())
    @rule(k=pick, at=prices)
    def fill(self, k: int, at: Decimal) -> None:
        """Its entry fills (at any price: a fill is not a mark)."""
        self._fill(nth(self.opening(), k), at)

    def _fill(self, p: Position, at: Decimal) -> Position:
        self.ref[p.id] = Reference(p.side, at, at, at)
        self.change(filled(p, at))
        return self.book.positions[p.id]

    @rule(
        k=pick,
        side=st.sampled_from(list(Side)),
        trail=st.sampled_from(TRAILS),
        at=prices,
        offset=stop_offsets,
        on_grid=st.booleans(),
    )
    def open_runner(
        self, k: int, side: Side, trail: Decimal, at: Decimal, offset: int, on_grid: bool
    ) -> None:
        """The whole way to a runner in one step: join, fill, TP2 (three transitions)."""
        self.open(k, side, trail)
        p = self._fill(self.book.positions[PositionId(f"p{self.created:03d}")], at)
        self.change(as_runner(p, self.stop(p, offset, on_grid)))

    @precondition(lambda self: self.filled())
    @rule(k=pick, offset=stop_offsets, on_grid=st.booleans())
    def arm(self, k: int, offset: int, on_grid: bool) -> None:
        """TP2 done: the rest becomes a trailing runner with a stop."""
        p = nth(self.filled(), k)
        self.change(as_runner(p, self.stop(p, offset, on_grid)))

    @rule(k=pick, marks=st.lists(prices, min_size=1, max_size=6))
    def ticks(self, k: int, marks: list[Decimal]) -> None:
        for at in marks:
            self.mark(self.pick_symbol(k), at)

    def mark(self, symbol: Symbol, at: Decimal) -> None:
        """One tick, checked against the reference."""
        decisions = self.book.index.on_mark(symbol, at)
        self.last[symbol] = at
        for p in self.active(symbol):
            if p.id in self.ref:
                self.ref[p.id].observe(at)
        runners = self.runners(symbol)
        runner_ids = {p.id for p in runners}
        decided = {d.position_id: d.stop_price for d in decisions or []}
        assert len(decided) == len(decisions or []), decisions
        for pid, stop in decided.items():
            p = self.book.positions[pid]
            assert pid in runner_ids and self.target(p) == stop, (pid, stop, self.target(p))
            self.pending[pid] = stop
        for p in runners:
            if p.id in decided:  # a runner decided for carries the peak its move reads; the others
                self.assert_up_to_date(p)  # are folded when read, flushed or changed (rules below)
            wanted = self.target(p)
            if wanted is None or p.id in decided:
                continue
            earlier = self.pending.get(p.id)
            assert earlier is not None and (earlier - wanted) * p.side.sign >= ZERO, (
                f"{p.id}: the reference moves the stop {p.stop_price} to {wanted} at {at}; "
                f"the index decided nothing (earlier decision: {earlier})"
            )

    @precondition(lambda self: self.runners())
    @rule(k=pick)
    def edge(self, k: int) -> None:
        """Marks just short of, at, and just past the price where a runner's stop starts to move.

        The first one also re-arms the thresholds (the first tick after a transition
        re-checks every runner anyway), so the next two go through the fast path.
        """
        p = nth(self.runners(), k)
        edge, step = self.edge_of(p)
        for past in (-1, 0, 1):
            self.mark(p.symbol, edge + past * step * p.side.sign)

    def edge_of(self, p: Position) -> tuple[Decimal, Decimal]:
        """The price closest to the stop at which the reference moves `p`'s stop, on a grid
        10,000 times finer than the tick (found by bisection on `trailing_target` alone),
        and that grid's step."""
        inst = self.instrument_of(p)
        step = inst.tick_size / 10_000

        def moves(n: int) -> bool:
            return replace(p, watermark=n * step).trailing_target(inst) is not None

        assert p.stop_price is not None
        still, moved = int(p.stop_price / step), int(p.stop_price * 4 / step)  # long: moved is above
        if p.side is Side.SHORT:
            still, moved = int(p.stop_price / step) + 1, 0
        assert not moves(still) and moves(moved)
        while abs(moved - still) > 1:
            mid = (still + moved) // 2
            still, moved = (still, mid) if moves(mid) else (mid, moved)
        return moved * step, step

    @precondition(lambda self: any(self.book.positions[pid].is_active for pid in self.pending))
    @rule(k=pick)
    def apply(self, k: int) -> None:
        """The engine moves a stop as decided (only ever tighter)."""
        live = sorted(pid for pid in self.pending if self.book.positions[pid].is_active)
        pid = live[k % len(live)]
        p = self.book.positions[pid]
        self.change(replace(p, stop_price=tighter(p.side, p.stop_price, self.pending.pop(pid))))

    @precondition(lambda self: self.runners())
    @rule(k=pick, offset=stop_offsets)
    def set_stop(self, k: int, offset: int) -> None:
        """Something else sets the stop (a resize, break-even): earlier decisions are void."""
        p = nth(self.runners(), k)
        self.pending.pop(p.id, None)
        self.change(replace(p, stop_price=self.stop(p, offset, True)))

    @precondition(lambda self: self.runners())
    @rule(k=pick, part=st.sampled_from([Decimal("0.1"), Decimal("0.5"), Decimal("0.9")]))
    def reduce(self, k: int, part: Decimal) -> None:
        """A partial exit fill: less remains and the runner trails on (its threshold is re-derived)."""
        p = nth(self.runners(), k)
        self.change(replace(p, closed_qty=p.closed_qty + p.remaining * part))

    @precondition(lambda self: self.runners())
    @rule(k=pick, trail=st.sampled_from(TRAILS))
    def retrail(self, k: int, trail: Decimal) -> None:
        """The runner's plan changes its trailing distance: earlier decisions are void."""
        p = nth(self.runners(), k)
        self.pending.pop(p.id, None)
        self.change(replace(p, plan=replace(p.plan, trail_pct=trail)))

    @precondition(lambda self: self.active())
    @rule(k=pick)
    def touch(self, k: int) -> None:
        """A transition that changes nothing the tick path reads (an order acknowledged...)."""
        self.change(nth(self.active(), k))

    @precondition(lambda self: self.active())
    @rule(k=pick)
    def close(self, k: int) -> None:
        p = nth(self.active(), k)
        self.pending.pop(p.id, None)
        self.book.change(replace(p, status=PositionStatus.CLOSED, closed_qty=p.filled_qty))

    @rule(k=pick)
    def read(self, k: int) -> None:
        """A read folds the symbol's range into all its positions."""
        symbol = self.pick_symbol(k)
        self.book.index.materialize(symbol)
        for p in self.active(symbol):
            self.assert_up_to_date(p)
            if symbol in self.last:
                assert p.last_price == self.last[symbol], p.id

    @rule()
    def flush(self) -> None:
        """The periodic flush brings every position up to date."""
        self.book.index.materialize_all()
        for p in self.active():
            self.assert_up_to_date(p)


TickIndexAgainstReference.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestTheTickIndexNeverMissesADecision = TickIndexAgainstReference.TestCase
