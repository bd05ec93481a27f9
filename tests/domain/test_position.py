"""Position properties: sizes stay sane under any fill sequence, stops only tighten, the table holds."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.domain.errors import InvalidFill, InvalidTransition, ValidationError
from warden.domain.orders import Fill
from warden.domain.plan import ExitPlan, levels_for, tighter
from warden.domain.position import TRANSITIONS, Position, PositionStatus
from warden.domain.sizing import order_qty
from warden.domain.values import (
    Instrument,
    OrderRole,
    PositionId,
    Side,
    Symbol,
    TradeId,
    client_order_id,
    parse_client_order_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOL = Instrument(Symbol("SOL/USDT:USDT"), Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal(5))


def fresh(side: Side = Side.LONG) -> Position:
    return Position(PositionId("p1"), SOL.symbol, side, PositionStatus.OPENING, Decimal(10), ExitPlan(), T0)


def fill(n: int, role: OrderRole, side: Side, qty: Decimal, price: Decimal = Decimal(100)) -> Fill:
    order_side = side.entry_side if role is OrderRole.ENTRY else side.exit_side
    return Fill(
        TradeId(f"t{n}"),
        client_order_id(PositionId("p1"), role, 1),
        PositionId("p1"),
        role,
        SOL.symbol,
        order_side,
        qty,
        price,
        Decimal("0.01"),
        T0,
    )


qtys = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(20), places=2)
steps = st.lists(st.tuples(st.sampled_from(list(OrderRole)), qtys, st.integers(0, 30)), max_size=30)


@given(st.sampled_from(list(Side)), steps)
def test_size_never_negative_and_closes_never_exceed_opens(side: Side, sequence: list) -> None:
    """Whatever fills arrive, in any order and repeated, remaining >= 0 and closed <= filled."""
    p = fresh(side)
    for role, qty, n in sequence:
        with contextlib.suppress(InvalidFill):
            p = p.apply_fill(fill(n, role, side, qty))
        assert p.remaining >= 0
        assert p.closed_qty <= p.filled_qty


@given(st.sampled_from(list(Side)), qtys)
def test_duplicate_fill_is_a_noop(side: Side, qty: Decimal) -> None:
    """The same trade id applied twice changes nothing the second time."""
    once = fresh(side).apply_fill(fill(1, OrderRole.ENTRY, side, qty))
    assert once.apply_fill(fill(1, OrderRole.ENTRY, side, qty)) == once


def test_over_close_is_refused() -> None:
    """A fill that would close more than is open is rejected, not clamped silently."""
    p = fresh().apply_fill(fill(1, OrderRole.ENTRY, Side.LONG, Decimal(1)))
    with pytest.raises(InvalidFill):
        p.apply_fill(fill(2, OrderRole.STOP, Side.LONG, Decimal(2)))


@given(st.sampled_from(list(Side)), st.lists(st.decimals(min_value=1, max_value=1000, places=2), min_size=1))
def test_stop_never_loosens(side: Side, proposals: list[Decimal]) -> None:
    """Folding any sequence of proposed stops through `tighter` only moves toward the price."""
    stop = None
    for proposed in proposals:
        new = tighter(side, stop, proposed)
        if stop is not None:
            assert (new - stop) * side.sign >= 0
        stop = new


@given(st.sampled_from(list(Side)), st.lists(st.decimals(min_value=50, max_value=150, places=2), min_size=1))
def test_trailing_target_only_tightens(side: Side, marks: list[Decimal]) -> None:
    """A runner's trailing target, applied as it comes, never loosens the stop."""
    p = fresh(side).apply_fill(fill(1, OrderRole.ENTRY, side, Decimal(10)))
    p = p.transition(PositionStatus.OPEN).with_levels(
        levels_for(ExitPlan(), side, Decimal(100), Decimal(10), SOL)
    )
    p = Position(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "trailing_active": True})
    for mark in marks:
        p = p.mark(mark)
        target = p.trailing_target(SOL)
        if target is not None:
            assert (target - p.stop_price) * side.sign > 0  # type: ignore[operator]
            p = p.with_levels(levels_for(ExitPlan(), side, Decimal(100), Decimal(10), SOL, target))


def test_transition_table_refuses_impossible_pairs() -> None:
    """Every pair outside the table raises; every pair inside is allowed."""
    for src in PositionStatus:
        for dst in PositionStatus:
            p = Position(PositionId("p"), SOL.symbol, Side.LONG, src, Decimal(1), ExitPlan(), T0)
            if dst is src or dst in TRANSITIONS[src]:
                assert p.transition(dst).status is dst
            else:
                with pytest.raises(InvalidTransition):
                    p.transition(dst)


def test_tp1_quantity_is_exactly_sixty_percent_rounded_down() -> None:
    """TP1 closes 60 % of the filled size at lot precision, never the whole position."""
    levels = levels_for(ExitPlan(), Side.SHORT, Decimal(150), Decimal("0.66"), SOL)
    assert levels.tp1_qty == Decimal("0.39") and levels.tp2_qty == Decimal("0.13")
    assert levels.stop_price == Decimal("152.25") and levels.tp1_price == Decimal("148.50")


@given(
    st.text(alphabet="abcdef0123456789", min_size=1, max_size=12),
    st.sampled_from(list(OrderRole)),
    st.integers(0, 999),
)
def test_client_order_ids_round_trip_and_fit_binance(pid: str, role: OrderRole, seq: int) -> None:
    """Client order ids are deterministic, parse back, and fit 36 chars of Binance's charset."""
    cid = client_order_id(PositionId(pid), role, seq)
    assert len(cid) <= 36 and all(c.isalnum() or c in ".:/_-" for c in cid)
    assert parse_client_order_id(cid) == (pid, role, seq)


@pytest.mark.parametrize(
    ("usd", "qty", "field"),
    [
        (None, None, "usd"),
        (Decimal(1), Decimal(1), "usd"),
        (Decimal(0), None, "usd"),
        (None, Decimal(-1), "qty"),
        (Decimal("0.5"), None, "usd"),
    ],
)
def test_sizing_refuses_bad_sizes_naming_the_field(
    usd: Decimal | None, qty: Decimal | None, field: str
) -> None:
    """Sizes that are missing, doubled, non-positive or under the exchange minimum name their field."""
    with pytest.raises(ValidationError) as info:
        order_qty(SOL, Decimal(150), usd, qty)
    assert info.value.field == field


def test_side_parsing() -> None:
    """long/short/buy/sell are accepted in any case; anything else names the side field."""
    assert Side.parse("BUY") is Side.LONG and Side.parse(" short ") is Side.SHORT
    with pytest.raises(ValidationError) as info:
        Side.parse("up")
    assert info.value.field == "side"
