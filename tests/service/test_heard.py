"""I8 Heard, attacked: situations that need the trader must raise an alert that says so."""

from __future__ import annotations

from decimal import Decimal

from tests.helpers import eventually
from tests.service.harness import SOL, driven, looping_engine, moments
from warden.adapters.clock import FakeClock
from warden.domain.alerts import Severity
from warden.domain.values import Side
from warden.service.commands import OpenPosition


async def test_an_exchange_unreachable_for_long_is_alerted_and_its_return_too(store_url: str) -> None:
    """Every call to the exchange fails (an outage, a revoked or expired API key): reconciliation
    fails pass after pass, so warden can neither see nor repair the account. It used to log
    `reconcile_failed` and nothing else: the trader heard nothing, however long it lasted."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        pos = await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        await driven(clock, engine.wait_idle())
        alerts = engine.notifier.alerts  # type: ignore[attr-defined]
        before = len(alerts)
        exchange.sim.faults.fail_queries = True
        exchange.sim.faults.unavailable_if = lambda _request: True
        await moments(clock, 3 * engine.config.reconcile_interval)
        raised = [a for a in alerts[before:] if a.severity is Severity.CRITICAL]
        assert [a.kind.value for a in raised] == ["exchange_unreachable"], alerts[before:]
        assert "exchange" in raised[0].message and "simulated query failure" in raised[0].message
        await moments(clock, 3 * engine.config.reconcile_interval)
        assert len([a for a in alerts if a.kind.value == "exchange_unreachable"]) == 1, "once per outage"
        exchange.sim.faults.fail_queries = False
        exchange.sim.faults.unavailable_if = None
        await moments(clock, 2 * engine.config.reconcile_interval)
        await eventually(lambda: any(a.kind.value == "exchange_recovered" for a in alerts), what="back")
        assert engine.ledger.positions[pos.id].is_active
