"""One writer per account (I6): a second engine stands by; when the holder dies it takes over."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import eventually
from tests.service.harness import SOL
from warden.adapters.clock import SystemClock
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.bootstrap import running
from warden.config import Settings
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType, Side
from warden.service.commands import ClosePosition, EngineState, OpenPosition, TradingRefused


def settings(url: str, tmp: Path) -> Settings:
    return Settings(db=url, data_dir=tmp, exchange="sim", order_timeout=1.0, reconcile_interval=3600)


def resting_stop_qty(sim: SimulatedExchange) -> Decimal:
    return sum((o.qty for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET), Decimal(0))


async def test_standby_refuses_then_takes_over_when_the_holder_dies(store_url: str, tmp_path: Path) -> None:
    """Only the holder places orders; after it dies the standby recovers and protects within the retry."""
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = settings(store_url, tmp_path)
    async with contextlib.AsyncExitStack() as outer:
        a_stack = contextlib.AsyncExitStack()
        a = await a_stack.enter_async_context(running(cfg, exchange=sim, price_feed=False, lease_retry=0.05))
        assert a.is_holder and a.engine.accepting_signals
        pos = await a.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert pos.status is PositionStatus.PROTECTED

        b = await outer.enter_async_context(
            running(cfg, exchange=sim, price_feed=False, lease_retry=0.05, notifier=RecordingNotifier())
        )
        assert not b.is_holder and b.engine.state is EngineState.READ_ONLY
        assert any("held by" in r for r in b.engine.status().reasons)
        orders_before = len(sim.core.open_orders())
        with pytest.raises(TradingRefused):
            await b.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert len(sim.core.open_orders()) == orders_before  # the standby sent nothing

        await a_stack.aclose()  # the holder dies; its lock goes with it
        sim.new_session()
        assert resting_stop_qty(sim) == pos.filled_qty  # the exchange-side stop never left
        await eventually(lambda: b.engine.accepting_signals, timeout=10, what="standby took over")
        assert b.is_holder
        taken = b.engine.ledger.positions[pos.id]
        assert taken.status is PositionStatus.PROTECTED and taken.remaining == pos.filled_qty
        assert resting_stop_qty(sim) == pos.filled_qty
        closed = await b.engine.close_position(ClosePosition(pos.id))
        assert closed.status is PositionStatus.CLOSED


async def test_a_stale_engine_cannot_write_after_losing_the_lease(store_url: str, tmp_path: Path) -> None:
    """Fencing: once another engine has taken the lease, the old engine's writes are refused."""
    from warden.adapters.db.lease import lease_for
    from warden.adapters.db.store import open_store
    from warden.ports import FencedOut

    store = await open_store(store_url, exchange="sim")
    first = lease_for(store_url, "acct")
    epoch = await first.try_acquire()
    assert epoch is not None
    store.set_epoch("acct", epoch)
    await first.release()
    second = lease_for(store_url, "acct")
    assert await second.try_acquire() == epoch + 1
    from warden.domain.events import Event, EventKind

    with pytest.raises(FencedOut):
        await store.append_events([Event(EventKind.RECONCILE, SystemClock().now(), None, "late write")])
    await second.release()
    await store.close()
