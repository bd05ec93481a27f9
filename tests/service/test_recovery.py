"""Restart is recovery: what happened while warden was down is applied once, then trading resumes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from warden.domain.events import EventKind
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType, Side
from warden.ports import ExchangeUnavailable
from warden.service.commands import EngineState, OpenPosition, TradingRefused


def stops(h: Harness) -> list:
    return [o for o in h.resting() if o.type is OrderType.STOP_MARKET]


async def down(h: Harness) -> None:
    """Stop warden cleanly; the exchange keeps running."""
    await h.engine.wait_idle()
    await h.stop()
    h.drop_stream()


async def test_seed_002_restart_between_tp1_and_tp2_keeps_the_runner(harness: Harness) -> None:
    """Seed 002: restarted between TP1 and TP2, the runner resumes with the right peak and exact sizes."""
    pos = await harness.open("long", usd="100")
    size = pos.filled_qty
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await harness.engine.wait_idle()
    await harness.engine.exits.flush_watermarks()
    before = harness.engine.ledger.positions[pos.id]
    h = await harness.restart()
    after = h.engine.ledger.positions[pos.id]
    for name in (
        "tp1_hit",
        "tp2_hit",
        "trailing_active",
        "watermark",
        "remaining",
        "stop_price",
        "mae",
        "mfe",
    ):
        assert getattr(after, name) == getattr(before, name), name
    assert h.exchange_qty() == size - pos.tp1_qty  # TP1 closed exactly 60 %, not 100 %
    assert [s.qty for s in stops(h)] == [after.remaining]  # one stop, the right size: no conflicting orders
    tps = [o for o in h.resting() if o.type is OrderType.TAKE_PROFIT_MARKET]
    assert [o.qty for o in tps] == [pos.tp2_qty]
    h.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].trailing_active, what="runner")
    peak = pos.tp2_price + Decimal("2")
    h.sim.set_mark(SOL, peak)
    await eventually(lambda: h.engine.ledger.positions[pos.id].watermark == peak, what="peak")
    await h.engine.wait_idle()
    [stop] = stops(h)
    assert stop.trigger_price == h.engine.instruments[SOL].round_price(peak * Decimal("0.995"))
    assert stop.qty == size - pos.tp1_qty - pos.tp2_qty


async def test_exit_fills_while_down_are_applied_once_on_restart(harness: Harness) -> None:
    """TP1 and TP2 fill while warden is down: recovery applies both once and resizes the stop."""
    pos = await harness.open("short", usd="100")
    await down(harness)
    harness.sim.set_mark(SOL, pos.tp1_price)
    harness.sim.set_mark(SOL, pos.tp2_price)
    h = await harness.start()
    p = h.engine.ledger.positions[pos.id]
    assert p.tp1_hit and p.tp2_hit and p.trailing_active
    assert p.closed_qty == pos.tp1_qty + pos.tp2_qty
    assert len(p.applied_trades) == 3
    await h.engine.wait_idle()
    assert [s.qty for s in stops(h)] == [p.remaining]
    await h.restart()  # a second restart applies nothing twice
    assert h.engine.ledger.positions[pos.id].closed_qty == pos.tp1_qty + pos.tp2_qty


async def test_stop_hit_while_down_closes_the_record_on_restart(harness: Harness) -> None:
    """A stop that filled while warden was down closes the position with reason "stop"."""
    pos = await harness.open("long", usd="100")
    await down(harness)
    harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.5"))
    h = await harness.start()
    await h.engine.wait_idle()
    stored = await h.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED and stored.exit_reason == "stop"
    assert h.resting() == []


async def test_stop_missing_at_restart_is_placed_before_signals_are_accepted(harness: Harness) -> None:
    """A stop removed while warden was down is re-placed by recovery, and only then is trading allowed."""
    pos = await harness.open("long", usd="100")
    await down(harness)
    [stop] = stops(harness)
    harness.sim.cancel_external(stop.client_order_id)
    h = await harness.start()
    assert h.engine.accepting_signals
    [again] = stops(h)
    assert again.qty == pos.filled_qty
    kinds = [e.kind for e in await h.store.list_events(pos.id)]
    assert EventKind.PROTECTION_LOST in kinds


async def test_trading_is_refused_until_recovery_passes(harness: Harness) -> None:
    """Before startup recovery has passed, a signal is refused and nothing is sent."""
    await harness.stop()
    harness.sim.faults.fail_queries = True
    with pytest.raises(ExchangeUnavailable):  # recovery cannot read the exchange: it must not pass
        await harness.start()
    assert harness.engine.state is EngineState.RECOVERING
    with pytest.raises(TradingRefused):
        await harness.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
    assert harness.sim.core.open_orders() == []
    harness.sim.faults.fail_queries = False
    await harness.engine.start()
    assert harness.engine.accepting_signals
    harness._consumer.cancel()
