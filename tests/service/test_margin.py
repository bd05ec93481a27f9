"""Leverage and margin mode: set on the exchange before the first entry on a symbol, checked at
startup (a mismatch alerts), and a stop beyond the estimated liquidation price refused."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from tests.service.harness import FAST, SOL, Harness
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import AlertKind, Severity
from warden.domain.errors import ValidationError
from warden.domain.margin import MarginMode, MarginPlan, SymbolConfig
from warden.domain.position import PositionStatus
from warden.domain.values import OrderSide
from warden.service.commands import TradingRefused

ISOLATED_5X = SymbolConfig(5, MarginMode.ISOLATED)


def planned(url: str, sim: SimulatedExchange, plan: MarginPlan) -> Harness:
    return Harness(url, sim, config=replace(FAST, margin=plan))


async def test_the_first_entry_sets_leverage_and_isolated_margin_first(
    store_url: str, sim: SimulatedExchange
) -> None:
    """Before SOL's first entry the exchange is set to the plan (5x isolated); BTC keeps its default."""
    h = await planned(store_url, sim, MarginPlan(overrides={"SOL": ISOLATED_5X})).start()
    try:
        assert sim.core.symbol_config(SOL) == SymbolConfig(20, MarginMode.CROSS)
        pos = await h.open("long", usd="100")
        assert pos.status is PositionStatus.PROTECTED
        assert sim.core.symbol_config(SOL) == ISOLATED_5X
        assert sim.core.isolated_margin(SOL) > 0 and sim.core.liquidation_price(SOL) is not None
    finally:
        await h.stop()


async def test_a_stop_beyond_the_liquidation_price_is_refused(store_url: str, sim: SimulatedExchange) -> None:
    """At 20x isolated a long's liquidation is about 4.6 % below entry: a stop 10 % below is refused
    naming stop_price; so is the plan's own 1.5 % stop at 100x. Nothing is sent."""
    plan = MarginPlan(SymbolConfig(20, MarginMode.ISOLATED), {"BTC": SymbolConfig(100, MarginMode.ISOLATED)})
    h = await planned(store_url, sim, plan).start()
    try:
        mark = sim.core.mark(SOL)
        with pytest.raises(ValidationError) as info:
            await h.open("long", usd="100", stop_price=mark * Decimal("0.9"))
        assert info.value.field == "stop_price" and "liquidation price" in info.value.message
        btc = SOL.replace("SOL", "BTC")
        with pytest.raises(ValidationError) as info:
            await h.open("long", symbol=btc, usd="200")
        assert info.value.field == "stop_price"
        assert sim.core.open_orders() == [] and sim.core.positions() == []
        assert await h.store.list_positions(include_closed=True) == []
        ok = await h.open("long", usd="100", stop_price=mark * Decimal("0.97"))
        assert ok.status is PositionStatus.PROTECTED
    finally:
        await h.stop()


async def test_a_mismatch_at_startup_is_an_alert(store_url: str, sim: SimulatedExchange) -> None:
    """SOL is 10x cross on the exchange, the plan says 5x isolated: startup alerts margin_mismatch."""
    sim.core.configure(SOL, 10, MarginMode.CROSS)
    h = await planned(store_url, sim, MarginPlan(overrides={"SOL": ISOLATED_5X})).start()
    try:
        [alert] = [a for a in h.notifier.alerts if a.kind is AlertKind.MARGIN_MISMATCH]
        assert (
            "leverage 10x, want 5x" in alert.message and "margin mode cross, want isolated" in alert.message
        )
    finally:
        await h.stop()


async def test_an_exchange_that_refuses_the_margin_mode_refuses_the_entry(
    store_url: str, sim: SimulatedExchange
) -> None:
    """SOL has a position opened by hand, so the exchange refuses isolated margin: the signal is
    refused (503), nothing is sent."""
    h = await planned(store_url, sim, MarginPlan(overrides={"SOL": ISOLATED_5X})).start()
    try:
        sim.external_order(SOL, OrderSide.BUY, Decimal("0.5"))
        with pytest.raises(TradingRefused, match="could not set SOL/USDT:USDT to 5x isolated"):
            await h.open("short", usd="100")
        assert sim.core.position(SOL).qty == Decimal("0.5")
    finally:
        await h.stop()


@pytest.mark.parametrize("spelling", ["SOL", "SOLUSDT", "SOL/USDT:USDT"])
async def test_an_override_written_in_any_symbol_spelling_applies(
    store_url: str, sim: SimulatedExchange, spelling: str
) -> None:
    """[symbols.SOLUSDT] is one of the spellings a symbol may be written in: it applies to SOL like
    [symbols.SOL] (it was silently ignored) and is not reported as unknown."""
    h = await planned(store_url, sim, MarginPlan(overrides={spelling: ISOLATED_5X})).start()
    try:
        await h.open("long", usd="100")
        assert sim.core.symbol_config(SOL) == ISOLATED_5X
        assert [a for a in h.notifier.alerts if a.kind is AlertKind.UNKNOWN_SYMBOL] == []
        assert h.engine.status().warnings == []
    finally:
        await h.stop()


async def test_an_override_naming_no_market_is_logged_alerted_and_shown_and_trading_goes_on(
    store_url: str, sim: SimulatedExchange
) -> None:
    """[symbols.SOLL] (misspelt) named no market and was silently ignored once the markets were
    loaded. At startup it is an error in the log, an `unknown_symbol` alert and a warning on
    /status; the engine still starts (a delisted symbol must not stop protecting the rest), and
    [symbols.BTC] beside it still applies."""
    btc = SOL.replace("SOL", "BTC")
    plan = MarginPlan(overrides={"SOLL": ISOLATED_5X, "BTC": ISOLATED_5X, "DOGE/USDT:USDT": ISOLATED_5X})
    with capture_logs() as logs:
        h = await planned(store_url, sim, plan).start()
    try:
        [alert] = [a for a in h.notifier.alerts if a.kind is AlertKind.UNKNOWN_SYMBOL]
        assert alert.kind.severity is Severity.WARNING
        assert "SOLL" in alert.message and "DOGE/USDT:USDT" in alert.message and "BTC" not in alert.message
        [warning] = h.engine.status().warnings
        assert "SOLL" in warning and "DOGE/USDT:USDT" in warning
        [logged] = [e for e in logs if e["event"] == "symbol_override_unknown"]
        assert logged["log_level"] == "error" and logged["symbols"] == ["DOGE/USDT:USDT", "SOLL"]
        assert h.engine.status().accepting_signals
        pos = await h.open("long", symbol=btc, usd="200")
        assert pos.status is PositionStatus.PROTECTED
        assert sim.core.symbol_config(btc) == ISOLATED_5X
    finally:
        await h.stop()
