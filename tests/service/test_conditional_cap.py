"""Stacked positions against the exchange's cap on resting conditional orders per symbol.

Binance USD-M rests at most 10 stops and take-profits per symbol and account (its
MAX_NUM_ALGO_ORDERS filter), Bybit 10 too. With stacking on, each position rests three
(stop, TP1, TP2). The in-process simulator enforces the cap its instrument carries, as the
venues do; the exchange is the judge of what rests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import FAST, SOL, Harness
from warden.adapters.clock import SystemClock
from warden.adapters.sim import SimCore, SimulatedExchange
from warden.adapters.sim.markets import default_markets
from warden.domain.position import Position, PositionStatus
from warden.domain.values import OrderType
from warden.service.commands import ClosePosition, TradingRefused

CAP = 10


@pytest.fixture
async def capped(store_url: str) -> AsyncIterator[Harness]:
    markets = [replace(m, instrument=replace(m.instrument, max_conditional=CAP)) for m in default_markets()]
    sim = SimulatedExchange(SimCore(markets, seed=7), now=SystemClock().now, seed=7)
    h = await Harness(store_url, sim, config=replace(FAST, allow_stacking=True)).start()
    yield h
    await h.stop()


def one_long(h: Harness) -> Awaitable[Position]:
    """A signal: SOL long, quantity 1."""
    return h.open("long", SOL, usd=None, qty=Decimal("1"))


def conditional(h: Harness) -> int:
    return sum(1 for o in h.resting(SOL) if o.type.conditional)


async def test_a_stacked_entry_whose_exits_would_not_fit_under_the_cap_is_refused_with_nothing_sent(
    capped: Harness,
) -> None:
    """Three stacked longs rest nine of the ten. A fourth was sent: its stop took the tenth slot
    and its take-profits were refused (a position that never takes its profit); a fifth was
    closed at once, its stop refused. Now the fourth is refused before anything is sent: the
    exchange sees no order, nothing is recorded, the three are untouched."""
    h = capped
    for _ in range(3):
        pos = await one_long(h)
        assert pos.status is PositionStatus.PROTECTED
    await h.engine.wait_idle()
    assert conditional(h) == 9
    placed = len(h.sim.core.orders())

    with pytest.raises(TradingRefused, match="nothing was sent: SOL/USDT:USDT has room for 10"):
        await one_long(h)

    await h.engine.wait_idle()
    assert len(h.sim.core.orders()) == placed  # not one order reached the exchange
    assert h.exchange_qty(SOL) == Decimal("3")
    assert conditional(h) == 9
    stored = await h.store.list_positions(include_closed=True)
    assert len(stored) == 3
    assert all(p.status is PositionStatus.PROTECTED for p in stored)


async def test_room_freed_by_a_closed_position_admits_the_next_stacked_entry_with_every_exit(
    capped: Harness,
) -> None:
    """The cap counts what rests now: once one of the three closes, its exits are cancelled and
    the next entry opens with its stop and both take-profits resting."""
    h = capped
    first, *_ = [await one_long(h) for _ in range(3)]
    with pytest.raises(TradingRefused):
        await one_long(h)
    await h.engine.close_position(ClosePosition(first.id))
    await h.engine.wait_idle()
    assert conditional(h) == 6

    pos = await one_long(h)

    assert pos.status is PositionStatus.PROTECTED
    mine = [o for o in h.resting(SOL) if pos.id in o.client_order_id]
    assert sorted(o.type for o in mine) == [
        OrderType.STOP_MARKET,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TAKE_PROFIT_MARKET,
    ]
    assert conditional(h) == 9


async def test_positions_past_their_first_take_profit_hold_one_slot_fewer(capped: Harness) -> None:
    """TP1 filled leaves a position its stop and TP2: three stacked past TP1 rest six, and a
    fourth (three more, one kept free) fits, with every exit resting."""
    h = capped
    held = [await one_long(h) for _ in range(3)]
    with pytest.raises(TradingRefused):
        await one_long(h)
    assert len({p.tp1_price for p in held}) == 1  # opened at one mark
    h.sim.set_mark(SOL, held[0].tp1_price)
    await eventually(
        lambda: all(h.engine.ledger.positions[p.id].tp1_hit for p in held), what="the three TP1s applied"
    )
    await h.engine.wait_idle()
    await eventually(lambda: conditional(h) == 6, what="each stop resized, the old ones cancelled")

    pos = await one_long(h)

    assert pos.status is PositionStatus.PROTECTED
    assert conditional(h) == 9


async def test_two_stacked_signals_racing_for_the_last_room_open_one(capped: Harness) -> None:
    """Two positions rest six; two signals at once: the room is counted again under the symbol's
    lock, where the first one's intent (three exits to come, none resting yet) is already held,
    so one opens with every exit and the other is refused with nothing sent."""
    h = capped
    for _ in range(2):
        await one_long(h)

    results = await asyncio.gather(
        one_long(h),
        one_long(h),
        return_exceptions=True,
    )

    opened = [r for r in results if isinstance(r, Position)]
    refused = [r for r in results if isinstance(r, TradingRefused)]
    assert len(opened) == len(refused) == 1, results
    assert opened[0].status is PositionStatus.PROTECTED
    await h.engine.wait_idle()
    assert h.exchange_qty(SOL) == Decimal("3")
    assert conditional(h) == 9
