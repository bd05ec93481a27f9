"""The trigger book: direction rules and heap bookkeeping checked against a naive scan."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.adapters.sim import SimCore, synthetic_markets
from warden.adapters.sim.book import Direction, TriggerBook, direction_of, fires
from warden.domain.orders import OrderStatus
from warden.domain.reports import OrderReport, OrderRequest
from warden.domain.values import ClientOrderId, OrderSide, OrderType

from .builders import BUY, SELL, T0, order_of


@pytest.mark.parametrize(
    ("side", "order_type", "direction"),
    [
        (SELL, OrderType.STOP_MARKET, Direction.FALLING),
        (BUY, OrderType.STOP_MARKET, Direction.RISING),
        (SELL, OrderType.TAKE_PROFIT_MARKET, Direction.RISING),
        (BUY, OrderType.TAKE_PROFIT_MARKET, Direction.FALLING),
    ],
)
def test_direction_of_each_conditional_order(
    side: OrderSide, order_type: OrderType, direction: Direction
) -> None:
    """Sell stops and buy TPs fire on a falling mark; buy stops and sell TPs on a rising one."""
    assert direction_of(side, order_type) is direction


@dataclass(frozen=True, slots=True)
class Add:
    direction: Direction
    trigger: int


@dataclass(frozen=True, slots=True)
class Remove:
    index: int


@dataclass(frozen=True, slots=True)
class Cross:
    mark: int


prices = st.integers(min_value=1, max_value=40)
operations = st.one_of(
    st.builds(Add, st.sampled_from(list(Direction)), prices),
    st.builds(Remove, st.integers(min_value=0, max_value=500)),
    st.builds(Cross, prices),
)


def naive_crossed(resting: dict[str, tuple[Direction, Decimal, int]], mark: Decimal) -> list[str]:
    """Scan everything: falling orders highest trigger first, then rising lowest first, ties by seq."""
    falling = [(-t, s, k) for k, (d, t, s) in resting.items() if d is Direction.FALLING and fires(d, t, mark)]
    rising = [(t, s, k) for k, (d, t, s) in resting.items() if d is Direction.RISING and fires(d, t, mark)]
    return [k for *_, k in sorted(falling)] + [k for *_, k in sorted(rising)]


@settings(max_examples=300)
@given(st.lists(operations, max_size=400))
def test_book_matches_naive_scan(ops: list[Add | Remove | Cross]) -> None:
    """Under any mix of adds, cancels and ticks, the book fires exactly what a full scan would, in order."""
    book = TriggerBook()
    model: dict[str, tuple[Direction, Decimal, int]] = {}
    for seq, op in enumerate(ops):
        if isinstance(op, Add):
            key = f"o{seq}"
            book.add(key, op.direction, Decimal(op.trigger), seq)
            model[key] = (op.direction, Decimal(op.trigger), seq)
        elif isinstance(op, Remove):
            keys = sorted(model)
            key = keys[op.index % len(keys)] if keys else "missing"
            assert book.remove(key) == (model.pop(key, None) is not None)
        else:
            expected = naive_crossed(model, Decimal(op.mark))
            assert book.crossed(Decimal(op.mark)) == expected
            for key in expected:
                del model[key]
        assert len(book) == len(model)


def test_book_stays_correct_after_many_lazy_cancels_and_compaction() -> None:
    """After 400 of 500 orders are canceled (forcing compaction), a tick fires exactly the survivors."""
    book = TriggerBook()
    for i in range(500):
        book.add(f"o{i}", Direction.FALLING, Decimal(i), i)
    for i in range(400):
        assert book.remove(f"o{i}")
    assert not book.remove("o0")
    assert book.crossed(Decimal(450)) == [f"o{i}" for i in range(499, 449, -1)]
    assert len(book) == 50


def test_a_re_added_id_is_not_confused_with_its_stale_entry() -> None:
    """An id canceled and then rested again at another trigger fires only at the new trigger."""
    book = TriggerBook()
    book.add("x", Direction.RISING, Decimal(10), 1)
    book.remove("x")
    book.add("x", Direction.RISING, Decimal(20), 2)
    assert book.crossed(Decimal(15)) == []
    assert book.crossed(Decimal(20)) == ["x"]


def _random_conditional(rng: random.Random, core: SimCore, n: int, symbol_index: int) -> OrderRequest:
    symbol = sorted(core.instruments)[symbol_index]
    mark = core.mark(symbol)
    side = rng.choice([BUY, SELL])
    order_type = rng.choice([OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET])
    offset = Decimal(rng.randint(1, 300)) / 100
    above = direction_of(side, order_type) is Direction.RISING
    trigger = mark + offset if above else mark - offset
    return OrderRequest(ClientOrderId(f"c{n}"), symbol, side, order_type, Decimal("0.1"), trigger, True)


def _naive_fired(open_before: list[OrderReport], marks: dict[str, Decimal]) -> set[str]:
    return {
        o.client_order_id
        for o in open_before
        if o.trigger_price is not None
        and fires(direction_of(o.side, o.type), o.trigger_price, marks[o.symbol])
    }


def test_many_resting_orders_across_100_symbols_fire_exactly_as_a_naive_scan() -> None:
    """With 3,000 stops and TPs on 100 symbols, each random-walk tick closes exactly what it crosses."""
    rng = random.Random(11)
    core = SimCore(synthetic_markets(100), seed=11)
    for n in range(3000):
        core.place(_random_conditional(rng, core, n, n % 100), T0)
    total_fired = 0
    for _ in range(100):
        open_before = core.open_orders()
        core.walk(T0, volatility=0.01)
        expected = _naive_fired(open_before, {str(s): p for s, p in core.marks().items()})
        still_open = {o.client_order_id for o in core.open_orders()}
        assert {o.client_order_id for o in open_before} - still_open == expected
        # reduce-only with no position: every fired order expires (CANCELED)
        assert all(order_of(core, c).status is OrderStatus.CANCELED for c in expected)
        total_fired += len(expected)
    assert total_fired > 100  # the walk really crossed triggers
    assert sum(core.resting_count(s) for s in core.instruments) == len(core.open_orders())
