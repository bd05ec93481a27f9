"""A property over random price paths and sizes, judged by the exchange at every step:

- the resting exit orders of the symbol never exceed its position (stop and take-profits each);
- the resting stops cover the position exactly;
- the stop never loosens.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from warden.adapters.clock import SystemClock
from warden.adapters.sim import SimulatedExchange
from warden.domain.values import OrderSide, OrderType


async def settle(h: Harness) -> None:
    for _ in range(3):
        await eventually(lambda: h.queued_events() == 0, what="stream drained")
        await h.engine.wait_idle()


def check(h: Harness, tightest: dict[OrderSide, Decimal]) -> None:
    (report,) = [p for p in h.sim.core.positions() if p.symbol == SOL] or [None]
    resting = h.resting(SOL)
    if report is None or report.qty == 0:
        return
    size = report.qty
    exit_side = report.side.exit_side
    stops = [o for o in resting if o.type is OrderType.STOP_MARKET and o.side is exit_side]
    tps = [o for o in resting if o.type is OrderType.TAKE_PROFIT_MARKET and o.side is exit_side]
    assert sum(o.qty for o in stops) == size, f"stops {[o.qty for o in stops]} for a position of {size}"
    assert sum((o.qty for o in tps), Decimal(0)) <= size, f"take-profits {[o.qty for o in tps]} > {size}"
    assert all(o.reduce_only for o in stops + tps)
    sign = report.side.sign
    for stop in stops:
        assert stop.trigger_price is not None
        best = tightest.get(exit_side)
        if best is not None:
            assert (stop.trigger_price - best) * sign >= 0, f"stop loosened: {best} -> {stop.trigger_price}"
        tightest[exit_side] = (
            stop.trigger_price
            if best is None
            else max(best, stop.trigger_price)
            if sign > 0
            else min(best, stop.trigger_price)
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(["long", "short"]),
    qty=st.sampled_from(["0.04", "0.1", "0.33", "1", "2.57"]),
    moves=st.lists(st.integers(min_value=-25, max_value=25), min_size=3, max_size=25),
)
def test_exits_never_exceed_and_stops_never_loosen_on_any_price_path(
    side: str, qty: str, moves: list[int]
) -> None:
    """On a random path (steps of up to ±2.5 %), at every step the exchange holds exactly one
    position-sized stop, take-profits within the position, and a stop that only tightens."""

    async def run() -> None:
        sim = SimulatedExchange(now=SystemClock().now, seed=5)
        sim.set_mark(SOL, Decimal("150"))
        h = await Harness(None, sim).start()
        try:
            await h.open(side, SOL, usd=None, qty=Decimal(qty))
            await settle(h)
            tightest: dict[OrderSide, Decimal] = {}
            check(h, tightest)
            price = Decimal("150")
            for move in moves:
                price = (price * (1 + Decimal(move) / 1000)).quantize(Decimal("0.01"))
                sim.set_mark(SOL, price)
                await settle(h)
                check(h, tightest)
                if not h.engine.ledger.active_positions():
                    break
            held = sum((p.remaining * p.side.sign for p in h.engine.ledger.active_positions()), Decimal(0))
            assert held == h.exchange_qty(SOL)
        finally:
            await h.stop()

    asyncio.run(run())
