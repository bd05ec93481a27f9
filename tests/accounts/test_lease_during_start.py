"""An engine that loses its lease while its startup recovery is still retrying (the exchange down
when it took the account over, and its lease session killed meanwhile: a PostgreSQL restart, an
operator's pg_terminate_backend) must stand by for the account afterwards, like any engine whose
lease was taken: when the other holder goes, it takes the account back."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import eventually
from tests.store.pgtools import admin, terminate_lease_session
from warden.adapters.clock import SystemClock
from warden.adapters.db.lease import lease_for
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.bootstrap import running
from warden.domain.position import PositionStatus
from warden.domain.values import Side, Symbol
from warden.service.commands import EngineState, OpenPosition

from .conftest import fleet_settings

SOL = Symbol("SOL/USDT:USDT")
ONE = """
[accounts.main]
exchange = "sim"
sim_seed = 1
"""


@pytest.mark.postgres
async def test_a_lease_lost_during_a_retried_start_is_stood_by_for_and_taken_back(
    tmp_path: Path, pg_url: str
) -> None:
    settings = fleet_settings(tmp_path, pg_url, ONE).for_account("main")
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now, seed=1)
    try:
        async with running(settings, clock=clock, exchange=sim, price_feed=False) as first:
            opened = await first.engine.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
            assert opened.status is PositionStatus.PROTECTED
            stop = first.engine.ledger.current_stop(opened.id)
            assert stop is not None
        sim.core.cancel(stop.client_order_id, clock.now())  # cancelled by hand while nobody runs
        sim.faults.fail_queries = True  # and the exchange is down when the next engine starts

        async with running(
            settings,
            clock=clock,
            exchange=sim,
            price_feed=False,
            notifier=RecordingNotifier(),
            lease_retry=0.05,
        ) as runtime:
            engine = runtime.engine
            assert runtime.is_holder and runtime.epoch == 2
            assert engine.status().state is EngineState.STARTING
            other = lease_for(pg_url, "main", holder="engine-b")
            async with admin(pg_url) as conn:
                await terminate_lease_session(conn, "main")  # its lock goes with the session
            assert await other.try_acquire() == 3  # another engine takes the account over
            sim.faults.fail_queries = False
            await eventually(
                lambda: engine.status().state is EngineState.READ_ONLY,
                timeout=30,
                what="the fenced-out engine to stand down",
            )
            await eventually(lambda: not runtime.is_holder, timeout=30, what="the engine to stand by")
            await eventually(lambda: runtime.holder == "engine-b", timeout=30, what="the holder named")

            await other.release()  # the other engine goes: this one must take the account back
            await eventually(lambda: runtime.is_holder, timeout=30, what="the account to be taken back")
            await eventually(
                lambda: engine.status().accepting_signals, timeout=30, what="the account to be traded again"
            )
            [position] = engine.ledger.active_positions()
            assert position.id == opened.id
    finally:
        await sim.close()
