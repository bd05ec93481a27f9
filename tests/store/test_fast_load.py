"""SQLite's load_active (fastload.py) hands back exactly what the SQLAlchemy path does."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tests.store.builders import BTC, T0, D, fill, full_position, insert, order, position
from warden.adapters.db import fastload
from warden.adapters.db.store import open_store
from warden.domain.orders import Order, OrderStatus
from warden.domain.plan import ExitPlan
from warden.domain.position import PositionStatus
from warden.domain.values import OrderRole, OrderType, Side


async def test_the_fast_load_equals_the_sqlalchemy_load_value_for_value(tmp_path: Path) -> None:
    """Awkward decimals, nulls and non-nulls in every nullable column, two plans, fills, terminal
    positions and another account's rows (both left out), orders of every kind and status."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = await open_store(url, exchange="sim")
    other = await open_store(url, exchange="sim", account="other", migrate=False)
    try:
        await store.commit(insert(full_position("full"), orders=[order("full", avg_price=D("1.5"))]))
        tight = ExitPlan(trail_pct=D("0.001"))
        for i, status in enumerate(
            (PositionStatus.OPENING, PositionStatus.OPEN, PositionStatus.CLOSED, PositionStatus.PROTECTED)
        ):
            pid = f"p{i}"
            p = position(
                pid,
                status=status,
                opened_at=T0 + timedelta(minutes=i),
                plan=tight if i % 2 else ExitPlan(),
                side=Side.LONG if i % 2 else Side.SHORT,
                entry_price=None if i == 0 else D("150.25"),
                watermark=None if i == 0 else D("151"),
                stop_price=None if i == 0 else D("149.1000"),
                exclusive=False,
            )
            orders = [
                order(pid, OrderRole.ENTRY, 1, type=OrderType.MARKET, trigger_price=None),
                order(pid, OrderRole.STOP, 1, status=OrderStatus.CANCELED, exchange_order_id="x1"),
                order(pid, OrderRole.STOP, 2, status=OrderStatus.PENDING),
                order(pid, OrderRole.TP1, 1, filled_qty=D("0.25"), avg_price=D("152.0000001")),
            ]
            await store.commit(insert(p, orders=orders, fills=[fill(pid, f"t{i}"), fill(pid, f"u{i}")]))
        await other.commit(insert(position("theirs", symbol=BTC), orders=[order("theirs")]))

        fast = await store.load_active()
        slow = await store._load_active_sqlalchemy()

        assert fast == slow
        assert [p.id for p in fast.positions] == ["p0", "full", "p1", "p3"]  # by opening time (UTC)
        assert len(fast.orders) == 13
        assert fast.positions[0].applied_trades == {"t0", "u0"}
        for a, b in zip(fast.positions + fast.orders, slow.positions + slow.orders, strict=True):
            for name in type(a).__dataclass_fields__:
                x, y = getattr(a, name), getattr(b, name)
                assert (type(x), repr(x)) == (type(y), repr(y)), name  # same types and same digits
        assert fast.positions[2].plan is fast.positions[3].plan is not fast.positions[0].plan
    finally:
        await other.close()
        await store.close()


async def test_an_empty_account_loads_nothing(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}", exchange="sim")
    try:
        state = await store.load_active()
        assert (state.positions, state.orders) == ([], [])
    finally:
        await store.close()


def test_build_is_the_constructor_and_leaves_the_collector_as_it_was() -> None:
    made = order("p1")
    columns = {name: [getattr(made, name)] for name in Order.__dataclass_fields__}
    assert fastload.build(Order, columns) == [made]
    with pytest.raises(TypeError):  # a missing field goes through the constructor, which says so
        fastload.build(Order, {k: v for k, v in columns.items() if k != "qty"})
    gc.disable()
    try:
        with fastload._no_gc_passes():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with fastload._no_gc_passes():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_unknown_enum_value_is_refused_as_the_enum_refuses_it() -> None:
    with pytest.raises(ValueError, match="'sideways'"):
        fastload._member(Side)(["long", "sideways"])
    assert fastload._member(Side)(["long", "short"]) == [Side.LONG, Side.SHORT]
    assert replace(position(), side=Side.LONG).side is Side.LONG
