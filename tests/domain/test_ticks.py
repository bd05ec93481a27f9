"""The tick index keeps each position's own peak: it starts at the fill, not at the symbol's range."""

from __future__ import annotations

from dataclasses import MISSING, fields, replace
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.domain.ticks_rig import T0, Book, as_runner, entry_fill, filled, instrument, opening
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.ticks import TrailDecision, with_marks
from warden.domain.values import PositionId, Side

D = Decimal
SOL = instrument("SOL/USDT:USDT")

# When the position joins the symbol (its OPENING record is committed) relative to the
# marks the engine observes before its entry fills: before both, between them, after both.
JOIN_POINTS = [0, 1, 2]


def open_around_marks(
    book: Book, side: Side, marks: list[Decimal], join_after: int, fill_price: Decimal
) -> PositionStatus:
    """Marks observed before the fill, the OPENING record committed after `join_after` of them."""
    position = opening("p1", SOL.symbol, side)
    for i, mark in enumerate(marks):
        if i == join_after:
            book.change(position)
        book.index.on_mark(SOL.symbol, mark)
    if join_after == len(marks):
        book.change(position)
    return book.change(filled(book.positions[position.id], fill_price)).status


@pytest.mark.parametrize("join_after", JOIN_POINTS)
def test_a_long_peak_starts_at_its_fill_not_at_earlier_marks(join_after: int) -> None:
    """SOL at 160, then 150, a long filled at 150.20: peak 150.20, MFE 0, MAE 0; a later 151 moves it."""
    book = Book(SOL)
    status = open_around_marks(book, Side.LONG, [D(160), D(150)], join_after, D("150.20"))
    assert status is PositionStatus.OPEN
    p = book.read(next(iter(book.positions)))
    assert (p.watermark, p.mfe, p.mae) == (D("150.20"), 0, 0)

    book.index.on_mark(SOL.symbol, D("150.10"))  # below the fill: MAE, the peak stays
    p = book.read(p.id)
    assert (p.watermark, p.mfe, p.mae) == (D("150.20"), 0, D("0.10"))

    book.index.on_mark(SOL.symbol, D(151))
    p = book.read(p.id)
    assert (p.watermark, p.mfe, p.mae, p.last_price) == (D(151), D("0.80"), D("0.10"), D(151))


@pytest.mark.parametrize("join_after", JOIN_POINTS)
def test_a_short_trough_starts_at_its_fill_not_at_earlier_marks(join_after: int) -> None:
    """SOL at 140, then 150, a short filled at 149.80: trough 149.80, MFE 0; a later 149 moves it."""
    book = Book(SOL)
    open_around_marks(book, Side.SHORT, [D(140), D(150)], join_after, D("149.80"))
    p = book.read(next(iter(book.positions)))
    assert (p.watermark, p.mfe, p.mae) == (D("149.80"), 0, 0)

    book.index.on_mark(SOL.symbol, D("149.90"))
    p = book.read(p.id)
    assert (p.watermark, p.mfe, p.mae) == (D("149.80"), 0, D("0.10"))

    book.index.on_mark(SOL.symbol, D(149))
    p = book.read(p.id)
    assert (p.watermark, p.mfe, p.mae) == (D(149), D("0.80"), D("0.10"))


@pytest.mark.parametrize("join_after", JOIN_POINTS)
def test_the_trailing_target_follows_the_positions_own_peak(join_after: int) -> None:
    """A runner's first decision trails its own peak (150.30), not the 160 seen before its fill."""
    book = Book(SOL)
    open_around_marks(book, Side.LONG, [D(160), D(150)], join_after, D("150.20"))
    pid = next(iter(book.positions))
    book.change(as_runner(book.positions[pid], stop=D(145)))
    decisions = book.index.on_mark(SOL.symbol, D("150.30"))
    assert decisions == [TrailDecision(pid, SOL.round_price(D("150.30") * (1 - D("0.005"))))]
    assert book.positions[pid].watermark == D("150.30")


def test_the_entry_fill_starts_the_watermark_at_the_fill_price() -> None:
    """Position.apply_fill: the first entry fill sets the peak; a second one keeps it."""
    p = filled(opening("p1", SOL.symbol, Side.SHORT), D("149.80"))
    assert (p.watermark, p.mfe, p.mae) == (D("149.80"), 0, 0)
    more = p.apply_fill(entry_fill(p, D(151), n=2))
    assert more.watermark == D("149.80") and more.entry_price == D("150.40")


def test_a_position_already_on_the_symbol_keeps_its_range_when_another_fills() -> None:
    """Another position's fill restarts the range only after folding it into those already there."""
    book = Book(SOL)
    old = book.change(filled(opening("a", SOL.symbol, Side.LONG), D(150)))
    book.index.on_mark(SOL.symbol, D(155))
    book.index.on_mark(SOL.symbol, D(148))
    new = opening("b", SOL.symbol, Side.LONG)
    book.change(new)
    book.change(filled(book.positions[new.id], D("148.50")))
    a, b = book.read(old.id), book.read(new.id)
    assert (a.watermark, a.mfe, a.mae) == (D(155), D(5), D(2))
    assert (b.watermark, b.mfe, b.mae) == (D("148.50"), 0, 0)


def runner_on_a_quiet_symbol(side: Side, trail: str, stop: Decimal, fill_at: Decimal) -> Book:
    """One runner; a first tick re-checks it and arms the thresholds, so the next ticks are fast-path."""
    book = Book(SOL)
    p = book.change(opening("r", SOL.symbol, side, ExitPlan(trail_pct=D(trail))))
    book.change(as_runner(book.change(filled(p, fill_at)), stop))
    assert book.index.on_mark(SOL.symbol, fill_at) == []
    return book


def test_a_long_mark_exactly_where_the_stop_starts_to_move_decides() -> None:
    """trail 20 %, stop 80: 100.00625 x 0.8 = 80.005 rounds half up to 80.01, one tick tighter."""
    book = runner_on_a_quiet_symbol(Side.LONG, "0.2", D(80), D(100))
    assert book.index.on_mark(SOL.symbol, D("100.00624")) is None
    assert book.index.on_mark(SOL.symbol, D("100.00625")) == [TrailDecision(PositionId("r"), D("80.01"))]


def test_a_short_mark_just_inside_where_the_stop_starts_to_move_decides() -> None:
    """trail 60 %, stop 100: 62.496875 x 1.6 = 99.995 rounds half up to 100.00 (no move); below, it moves."""
    book = runner_on_a_quiet_symbol(Side.SHORT, "0.6", D(100), D(63))
    assert not book.index.on_mark(SOL.symbol, D("62.496875"))
    assert book.index.on_mark(SOL.symbol, D("62.496874")) == [TrailDecision(PositionId("r"), D("99.99"))]


def test_with_marks_is_replace_of_the_four_mark_fields() -> None:
    """The crossing's cheap copy carries every other field over (none of them left at its
    default here), and Position has no __post_init__ that the copy would skip."""
    assert not hasattr(Position, "__post_init__")
    p = replace(
        filled(opening("p1", SOL.symbol, Side.SHORT), D("149.80")),
        signal_id="s1",
        origin="api",
        exclusive=False,
        closed_qty=D("0.25"),
        stop_price=D(155),
        tp1_price=D(140),
        tp1_qty=D("0.3"),
        tp2_price=D(130),
        tp2_qty=D("0.2"),
        tp1_hit=True,
        tp2_hit=True,
        trailing_active=True,
        realized_pnl=D(3),
        fees=D("0.1"),
        exit_reason="x",
        closed_at=T0 + timedelta(hours=1),
        stop_seq=4,
        version=7,
    )
    marks = {"last_price", "watermark", "mae", "mfe"}
    defaulted = [f for f in fields(Position) if f.name not in marks and f.init and f.default is not MISSING]
    assert [f.name for f in defaulted if getattr(p, f.name) == f.default] == []
    assert p.applied_trades
    copy = with_marks(p, D(150), D(149), D(1), D(2))
    assert copy == replace(p, last_price=D(150), watermark=D(149), mae=D(1), mfe=D(2))
    assert p.last_price is None
