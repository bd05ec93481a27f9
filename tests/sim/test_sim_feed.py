"""The price feed: seeded random-walk ticks on an injected timer, through the adapter."""

from __future__ import annotations

from decimal import Decimal

from warden.adapters.sim import SimCore, SimPriceFeed, SimulatedExchange
from warden.domain.reports import FillReport, MarkPrice, StreamEvent

from .builders import BTC, BUY, SELL, ManualTime, RecordingSleep, market, stop


async def _marks_after(seed: int, steps: int) -> list[StreamEvent]:
    exchange = SimulatedExchange(now=ManualTime(), seed=seed)
    await SimPriceFeed(exchange, sleep=RecordingSleep()).run(steps)
    await exchange.close()
    return [e async for e in exchange.stream()]


async def test_feed_steps_every_symbol_once_per_interval(now: ManualTime, sleep: RecordingSleep) -> None:
    """run(3) sleeps the interval three times and emits one MarkPrice per symbol per step."""
    exchange = SimulatedExchange(now=now, seed=1)
    feed = SimPriceFeed(exchange, interval=1.0, sleep=sleep)
    await feed.run(steps=3)
    await exchange.close()
    events = [e async for e in exchange.stream()]
    assert sleep.calls == [1.0, 1.0, 1.0]
    assert feed.steps == 3
    assert len(events) == 9
    assert all(isinstance(e, MarkPrice) for e in events)


async def test_feed_price_path_is_deterministic_per_seed() -> None:
    """Two exchanges with the same seed see the same marks; another seed sees different ones."""
    first = await _marks_after(3, 20)
    assert first == await _marks_after(3, 20)
    assert first != await _marks_after(4, 20)


async def test_feed_ticks_fire_resting_stops(now: ManualTime, sleep: RecordingSleep) -> None:
    """A stop one tick under the mark is hit by the random walk within a few hundred steps."""
    core = SimCore(seed=2)
    exchange = SimulatedExchange(core, now=now)
    await exchange.place_order(market("e", BUY, "0.01"))
    await exchange.place_order(stop("s", SELL, "0.01", "64999.9"))
    feed = SimPriceFeed(exchange, sleep=sleep)
    for _ in range(500):
        feed.step()
        if core.positions() == []:
            break
    assert core.positions() == []
    assert any(isinstance(f, FillReport) and f.client_order_id == "s" for f in core.fills(BTC))
    assert core.fills(BTC)[-1].price <= Decimal("64999.9")
