import asyncio
from decimal import Decimal
from tests.service.test_chaos_findings import _started_on, SlowCommits, driven, _given_up, _advance_until, _stopped
from tests.service.harness import SOL
from warden.domain.values import OrderType, Side
from warden.domain.position import PositionStatus
from warden.service.commands import OpenPosition
from warden.service.config import EngineConfig
async def test_x() -> None:
    config = EngineConfig(allow_stacking=True)
    clock, sim, engine, consumer = await _started_on(SlowCommits, 0.0, config)
    first = await driven(clock, engine.open_position(OpenPosition(SOL, Side.SHORT, usd=Decimal(100))))
    second = asyncio.ensure_future(_given_up(clock, sim, engine, Side.SHORT))
    try:
        await second
        sim.faults.reject_if = lambda request: request.type is OrderType.STOP_MARKET
        await _advance_until(clock, lambda: False, 10)
        for p in engine.ledger.positions.values():
            print("POS", p.id, p.status, p.remaining)
            for e in reversed(await engine.store.list_events(p.id)): print("   ", e.at.time(), e.kind, e.message[:170])
    finally:
        sim.faults.reject_if = None
        await _stopped(engine, consumer, second)
