"""The reconciliation diff: nothing to do on agreement, and its actions converge."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from warden.domain.orders import Order, OrderStatus
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.reconcile import Kind, Truth, diff, guard_stop_price, uncovered
from warden.domain.reports import OrderReport, PositionReport
from warden.domain.values import (
    ZERO,
    OrderRole,
    OrderType,
    PositionId,
    Side,
    Symbol,
    client_order_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SYMBOLS = [Symbol(f"S{i}/USDT:USDT") for i in range(5)]


def position(pid: str, symbol: Symbol, side: Side, size: Decimal) -> Position:
    return Position(
        id=PositionId(pid),
        symbol=symbol,
        side=side,
        status=PositionStatus.PROTECTED,
        target_qty=size,
        plan=ExitPlan(),
        opened_at=T0,
        filled_qty=size,
        entry_price=Decimal(100),
        stop_price=Decimal(90),
    )


def stop_for(p: Position, seq: int = 1, qty: Decimal | None = None) -> OrderReport:
    return OrderReport(
        client_order_id=client_order_id(p.id, OrderRole.STOP, seq),
        exchange_order_id=f"x{p.id}{seq}",
        symbol=p.symbol,
        side=p.side.exit_side,
        type=OrderType.STOP_MARKET,
        qty=qty or p.remaining,
        status=OrderStatus.OPEN,
        trigger_price=Decimal(90),
        reduce_only=True,
    )


def as_order(r: OrderReport, pid: PositionId) -> Order:
    return Order(
        client_order_id=r.client_order_id,
        position_id=pid,
        role=OrderRole.STOP,
        symbol=r.symbol,  # type: ignore[arg-type]
        side=r.side,
        type=r.type,
        qty=r.qty,
        trigger_price=r.trigger_price,
        reduce_only=True,
        status=OrderStatus.OPEN,
        created_at=T0,
    )


def consistent(positions: list[Position]) -> tuple[dict[str, Order], Truth]:
    """The exchange exactly as warden believes it to be."""
    net: dict[Symbol, Decimal] = {}
    for p in positions:
        net[p.symbol] = net.get(p.symbol, ZERO) + p.remaining * p.side.sign
    reports = [
        PositionReport(s, Side.LONG if q > 0 else Side.SHORT, abs(q), Decimal(100))
        for s, q in net.items()
        if q
    ]
    stops = [stop_for(p) for p in positions]
    return {
        o.client_order_id: as_order(o, PositionId(o.client_order_id.split("-")[1])) for o in stops
    }, Truth(reports, stops)


books = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.integers(1, 50)),
    max_size=8,
).map(
    # one side per symbol, as one-way mode nets them
    lambda rows: [
        position(f"p{i}", s, Side.LONG if SYMBOLS.index(s) % 2 == 0 else Side.SHORT, Decimal(q))
        for i, (s, q) in enumerate(rows)
    ]
)


@given(books)
def test_agreement_has_no_discrepancy(positions: list[Position]) -> None:
    """diff(s, s) == []: a consistent book and exchange need nothing done."""
    orders, truth = consistent(positions)
    assert diff(positions, orders, truth) == []


def apply(
    positions: list[Position], truth: Truth, found: list
) -> tuple[list[Position], dict[str, Order], Truth]:
    """A model of the reconciler's actions: adopt, close, resize, re-place, cancel."""
    held = {p.id: p for p in positions}
    ex_positions = list(truth.positions)
    for d in found:
        if d.kind is Kind.ORPHAN:
            side = Side.LONG if d.found > 0 else Side.SHORT
            held[PositionId(f"adopt{d.symbol[:2]}")] = position(
                f"adopt{d.symbol[:2]}", d.symbol, side, abs(d.found)
            )
        elif d.kind is Kind.GHOST:
            held.pop(d.position_id, None)
        elif d.kind is Kind.SIZE_MISMATCH:
            for pid in [p.id for p in held.values() if p.symbol == d.symbol]:
                held.pop(pid)
            side = Side.LONG if d.found > 0 else Side.SHORT
            held[PositionId(f"resz{d.symbol[:2]}")] = position(
                f"resz{d.symbol[:2]}", d.symbol, side, abs(d.found)
            )
    new_positions = list(held.values())
    orders, new_truth = consistent(new_positions)  # missing stops placed, strays cancelled
    return new_positions, orders, Truth(ex_positions, new_truth.open_orders)


@settings(max_examples=200)
@given(books, books, st.data())
def test_applying_the_actions_converges(
    ours: list[Position], theirs: list[Position], data: st.DataObject
) -> None:
    """Whatever the disagreement, one round of actions leaves nothing to reconcile."""
    theirs = [replace(p, id=PositionId(f"t{p.id}")) for p in theirs]
    _, truth_positions = consistent(theirs)
    orders, our_truth = consistent(ours)
    keep = data.draw(
        st.lists(st.booleans(), min_size=len(our_truth.open_orders), max_size=len(our_truth.open_orders))
    )
    stray = (
        [stop_for(position("gone", SYMBOLS[0], Side.LONG, Decimal(1)))] if data.draw(st.booleans()) else []
    )
    resting = [o for o, k in zip(our_truth.open_orders, keep, strict=True) if k] + stray
    truth = Truth(truth_positions.positions, resting)
    found = diff(ours, orders, truth)
    after, orders2, truth2 = apply(ours, truth, found)
    assert diff(after, orders2, truth2) == []


def test_each_kind_is_found() -> None:
    """Orphan, ghost, size mismatch, missing stop, stray order and another installation's order
    are each reported."""
    a = position("a", SYMBOLS[0], Side.LONG, Decimal(5))  # ghost: exchange flat
    b = position("b", SYMBOLS[1], Side.SHORT, Decimal(3))  # size mismatch: exchange -2
    c = position("c", SYMBOLS[2], Side.LONG, Decimal(4))  # missing stop
    gone = position("z", SYMBOLS[2], Side.LONG, Decimal(1))
    other = position("o", SYMBOLS[4], Side.LONG, Decimal(1))
    foreign = replace(stop_for(other), client_order_id=client_order_id(other.id, OrderRole.STOP, 1, "other1"))
    truth = Truth(
        [
            PositionReport(SYMBOLS[1], Side.SHORT, Decimal(2), Decimal(100)),
            PositionReport(SYMBOLS[2], Side.LONG, Decimal(4), Decimal(100)),
            PositionReport(SYMBOLS[3], Side.LONG, Decimal(7), Decimal(100)),  # orphan
        ],
        [stop_for(gone), foreign],  # stray: its position is not active; foreign: another warden's
    )
    kinds = {d.kind: d for d in diff([a, b, c], {}, truth, "mine01")}
    # Every kind but unknown_intent, which the reconciler finds by comparing the database with
    # memory (tests/service/test_breaks.py), never by diffing the exchange.
    assert set(kinds) == set(Kind) - {Kind.UNKNOWN_INTENT}
    assert kinds[Kind.OTHER_INSTANCE].client_order_id == foreign.client_order_id
    assert kinds[Kind.ORPHAN].found == Decimal(7)
    assert kinds[Kind.SIZE_MISMATCH].expected == Decimal(-3) and kinds[Kind.SIZE_MISMATCH].found == Decimal(
        -2
    )
    assert kinds[Kind.MISSING_STOP].position_id == "c"


def test_symbols_with_work_in_flight_are_skipped() -> None:
    """An entry still being resolved is not mistaken for a ghost or an orphan."""
    p = replace(
        position("a", SYMBOLS[0], Side.LONG, Decimal(5)), status=PositionStatus.OPENING, filled_qty=ZERO
    )
    truth = Truth([PositionReport(SYMBOLS[0], Side.LONG, Decimal(5), Decimal(100))], [])
    assert diff([p], {}, truth) == []


def test_a_superseded_stop_is_stray() -> None:
    """Two of a position's stops rest (a move cut short): the older one is reported as stray."""
    p = position("a", SYMBOLS[0], Side.LONG, Decimal(5))
    old, new = stop_for(p, seq=1), stop_for(p, seq=2)
    orders = {o.client_order_id: as_order(o, p.id) for o in (old, new)}
    truth = Truth([PositionReport(SYMBOLS[0], Side.LONG, Decimal(5), Decimal(100))], [old, new])
    found = diff([p], orders, truth)  # type: ignore[arg-type]
    assert [(d.kind, d.client_order_id) for d in found] == [(Kind.STRAY_ORDER, old.client_order_id)]


def test_the_guard_covers_what_no_stop_covers_and_only_that() -> None:
    """`uncovered`: per exchange position, the size no resting reduce-only stop of the exit side
    covers (a buy stop does not cover a long; a non-reduce-only one covers nothing)."""
    long_ = position("a" * 12, SYMBOLS[0], Side.LONG, Decimal(3))
    short = position("b" * 12, SYMBOLS[1], Side.SHORT, Decimal(2))
    part = stop_for(long_, qty=Decimal(1))
    wrong_side = replace(stop_for(short), side=stop_for(long_).side)
    truth = Truth(
        [
            PositionReport(SYMBOLS[0], Side.LONG, Decimal(3), Decimal(100)),
            PositionReport(SYMBOLS[1], Side.SHORT, Decimal(2), Decimal(100)),
            PositionReport(SYMBOLS[2], Side.SHORT, Decimal(1), Decimal(100)),
        ],
        [part, wrong_side, replace(stop_for(short), symbol=SYMBOLS[2], reduce_only=False)],
    )
    assert [(r.symbol, q) for r, q in uncovered(truth)] == [
        (SYMBOLS[0], Decimal(2)),
        (SYMBOLS[1], Decimal(2)),
        (SYMBOLS[2], Decimal(1)),
    ]


def test_the_guard_stop_is_never_through_the_market() -> None:
    """At the plan's distance from the entry, or from the mark once the market is past it."""
    long_ = PositionReport(SYMBOLS[0], Side.LONG, Decimal(1), Decimal(100))
    short = PositionReport(SYMBOLS[0], Side.SHORT, Decimal(1), Decimal(100))
    pct = Decimal("0.02")
    assert guard_stop_price(long_, Decimal(101), pct) == Decimal(98)
    assert guard_stop_price(long_, Decimal(97), pct) == Decimal(97) * Decimal("0.98")
    assert guard_stop_price(short, Decimal(99), pct) == Decimal(102)
    assert guard_stop_price(short, Decimal(103), pct) == Decimal(103) * Decimal("1.02")
