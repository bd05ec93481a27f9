"""Leverage and margin mode in the simulator: Binance's defaults and refusals, isolated margin, the
liquidation price, and liquidation when the mark reaches it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from warden.adapters.sim import SimCore, SimRejection
from warden.domain.margin import MarginMode, SymbolConfig, liquidation_price
from warden.domain.reports import FillReport
from warden.domain.values import Side

from .builders import BTC, BUY, SELL, T0, market, stop

ISOLATED, CROSS = MarginMode.ISOLATED, MarginMode.CROSS


def test_symbols_start_at_20x_cross_and_can_be_configured(core: SimCore) -> None:
    """Binance's defaults; leverage and mode change independently; bad leverage is -4028."""
    assert core.symbol_config(BTC) == SymbolConfig(20, CROSS)
    assert core.configure(BTC, 5, None) == SymbolConfig(5, CROSS)
    assert core.configure(BTC, None, ISOLATED) == SymbolConfig(5, ISOLATED)
    with pytest.raises(SimRejection) as info:
        core.configure(BTC, 126, None)
    assert info.value.code == -4028


def test_the_margin_mode_cannot_change_with_a_position_or_open_orders(core: SimCore) -> None:
    """-4048 with a position, -4047 with open orders; leverage may still change."""
    core.place(market("e1", BUY, "0.01"), T0)
    with pytest.raises(SimRejection) as info:
        core.configure(BTC, None, ISOLATED)
    assert info.value.code == -4048
    assert core.configure(BTC, 10, None).leverage == 10
    core.place(market("x1", SELL, "0.01", reduce_only=True), T0)
    core.place(stop("s1", SELL, "0.01", "60000", reduce_only=False), T0)
    with pytest.raises(SimRejection) as info:
        core.configure(BTC, None, ISOLATED)
    assert info.value.code == -4047


def test_an_isolated_position_holds_margin_and_is_liquidated_at_its_price(core: SimCore) -> None:
    """10x isolated long at 65,000: margin 65 for 0.01, liquidation near 58,735; the mark reaching it
    closes the position with an `autoclose-` order at the mark."""
    core.configure(BTC, 10, ISOLATED)
    core.place(market("e1", BUY, "0.01"), T0)
    assert core.isolated_margin(BTC) == Decimal(65)
    liq = core.liquidation_price(BTC)
    expected = liquidation_price(Side.LONG, Decimal(65000), 10)
    assert liq is not None and abs(liq - expected) <= core.instruments[BTC].tick_size
    assert Decimal(58000) < liq < Decimal(59000)
    events = core.set_mark(BTC, liq + 10, T0)
    assert not core.position(BTC).flat and not [e for e in events if isinstance(e, FillReport)]
    events = core.set_mark(BTC, liq - 1, T0)
    [fill] = [e for e in events if isinstance(e, FillReport)]
    assert fill.client_order_id == "autoclose-1" and fill.side is SELL and fill.qty == Decimal("0.01")
    assert core.position(BTC).flat


def test_a_cross_position_has_no_liquidation_price_here(core: SimCore) -> None:
    """Cross margin is liquidated against the whole wallet: no per-position price, no liquidation."""
    core.place(market("e1", BUY, "0.01"), T0)
    assert core.liquidation_price(BTC) is None and core.isolated_margin(BTC) == 0
    core.set_mark(BTC, Decimal(30000), T0)
    assert not core.position(BTC).flat


def test_the_configuration_survives_a_snapshot(core: SimCore) -> None:
    """A restored simulator keeps each symbol's leverage and mode, and numbers liquidations on."""
    core.configure(BTC, 3, ISOLATED)
    again = SimCore(seed=1)
    again.restore(core.snapshot())
    assert again.symbol_config(BTC) == SymbolConfig(3, ISOLATED)


def test_the_short_liquidation_formula() -> None:
    """A short's liquidation is above its entry: entry x (1 + 1/leverage) / (1 + rate)."""
    liq = liquidation_price(Side.SHORT, Decimal(100), 10, Decimal("0.004"))
    assert liq == Decimal(110) / Decimal("1.004")
