"""Exposure measured by the exchange: how long a position goes without a covering reduce-only stop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from warden.adapters.sim import SimCore, SimExposure, SimulatedExchange
from warden.domain.reports import OrderRequest
from warden.domain.values import OrderType

from .builders import BTC, BUY, ETH, SELL, SOL, T0, ManualTime, market, stop, take_profit
from .server_client import RawClient, raw_server

D = Decimal


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(core: SimCore, seconds: float, symbol: str = BTC) -> SimExposure:
    rows = [r for r in core.exposure(at(seconds)) if r.symbol == symbol]
    assert len(rows) == 1, core.exposure(at(seconds))
    return rows[0]


def times(core: SimCore, seconds: float, symbol: str = BTC) -> tuple[float, float]:
    """(unprotected_seconds, max_unprotected_seconds) of `symbol` at T0 + seconds."""
    r = row(core, seconds, symbol)
    return r.unprotected_seconds, r.max_unprotected_seconds


def test_a_position_without_a_stop_is_unprotected_for_longer_and_longer(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    assert times(core, 0) == (0.0, 0.0)
    assert times(core, 5) == (5.0, 5.0)
    assert times(core, 12.5) == (12.5, 12.5)
    assert row(core, 12.5) == SimExposure(BTC, "long", D("0.02"), 12.5, 12.5)


def test_a_full_size_stop_ends_the_stretch_and_the_max_keeps_it(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s", SELL, "0.02", "60000"), at(10))
    assert times(core, 10) == (0.0, 10.0)
    assert times(core, 100) == (0.0, 10.0)


def test_a_stop_smaller_than_the_position_does_not_cover_it_but_two_that_add_up_do(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s1", SELL, "0.01", "60000"), at(3))
    assert times(core, 8) == (8.0, 8.0)
    core.place(stop("s2", SELL, "0.01", "59000"), at(8))
    assert times(core, 20) == (0.0, 8.0)


def test_cancelling_the_stop_starts_a_new_stretch_and_the_max_keeps_the_longest(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s", SELL, "0.02", "60000"), at(10))
    core.cancel("s", at(40))
    assert times(core, 45) == (5.0, 10.0)  # the current stretch is shorter than the first
    assert times(core, 60) == (20.0, 20.0)  # the max includes the current stretch once it is longer
    core.place(stop("s2", SELL, "0.02", "60000"), at(62))
    assert times(core, 70) == (0.0, 22.0)


@pytest.mark.parametrize(
    "protection",
    [
        take_profit("tp", SELL, "0.02", "70000"),  # not a stop
        stop("s", BUY, "0.02", "70000"),  # the opening side
        stop("s", SELL, "0.02", "60000", reduce_only=False),  # not reduce-only
    ],
)
def test_orders_that_do_not_close_the_position_as_a_stop_do_not_cover_it(
    core: SimCore, protection: OrderRequest
) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(protection, at(1))
    assert times(core, 9) == (9.0, 9.0)


def test_a_short_position_is_covered_by_a_buy_stop(core: SimCore) -> None:
    core.place(market("e", SELL, "0.1", ETH), at(0))
    core.place(stop("s", BUY, "0.1", "3300", ETH), at(4))
    assert row(core, 10, ETH) == SimExposure(ETH, "short", D("0.1"), 0.0, 4.0)


def test_a_close_position_stop_covers_any_size(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.external_order(
        BTC,
        SELL,
        D(0),
        at(2),
        order_type=OrderType.STOP_MARKET,
        trigger_price=D("60000"),
        close_position=True,
    )
    core.external_order(BTC, BUY, D("0.05"), at(3))  # the position grows; closePosition still covers it
    assert times(core, 10) == (0.0, 2.0)


def test_an_outside_trade_that_grows_the_position_uncovers_it(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s", SELL, "0.02", "60000"), at(1))
    core.external_order(BTC, BUY, D("0.01"), at(10))
    assert times(core, 15) == (5.0, 5.0)
    core.external_order(BTC, SELL, D("0.01"), at(16), reduce_only=True)  # back to the stop's size
    assert times(core, 30) == (0.0, 6.0)


def test_a_triggered_stop_leaves_a_flat_covered_row(core: SimCore) -> None:
    """The stop fires, the position is flat: the row stays (it has had a position), at 0."""
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s1", SELL, "0.01", "64000"), at(1))
    core.place(stop("s2", SELL, "0.01", "63000"), at(2))
    core.set_mark(BTC, D("63900"), at(5))  # s1 fires: 0.01 left, covered by s2
    assert times(core, 6) == (0.0, 2.0)
    core.set_mark(BTC, D("62900"), at(7))  # s2 fires: flat
    assert row(core, 50) == SimExposure(BTC, "flat", D(0), 0.0, 2.0)


def test_a_take_profit_that_fires_and_flattens_an_uncovered_position_ends_the_stretch(core: SimCore) -> None:
    """Coverage is re-evaluated when a trigger fires, not only when someone places or cancels."""
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(take_profit("tp", SELL, "0.02", "66000"), at(1))
    core.set_mark(BTC, D("66000"), at(5))
    assert row(core, 20) == SimExposure(BTC, "flat", D(0), 0.0, 5.0)


def test_a_triggered_order_that_grows_the_position_uncovers_it(core: SimCore) -> None:
    """A resting buy stop (an add on breakout, not reduce-only) fires: the long outgrows its stop."""
    core.place(market("e", BUY, "0.01"), at(0))
    core.place(stop("s", SELL, "0.01", "60000"), at(0))
    core.place(stop("add", BUY, "0.01", "66000", reduce_only=False), at(0))
    assert times(core, 2) == (0.0, 0.0)
    core.set_mark(BTC, D("66000"), at(4))
    assert row(core, 9) == SimExposure(BTC, "long", D("0.02"), 5.0, 5.0)


def test_a_reduce_only_close_making_the_position_flat_ends_the_stretch(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(market("x", SELL, "0.02", reduce_only=True), at(7))
    assert row(core, 20) == SimExposure(BTC, "flat", D(0), 0.0, 7.0)


def test_a_stop_left_behind_by_a_closed_position_covers_the_next_one(core: SimCore) -> None:
    """Coverage is about what rests now: a stop outliving its position protects the next one."""
    core.place(market("e", SELL, "0.01"), at(0))
    core.place(stop("s", BUY, "0.01", "70000"), at(0))
    core.place(market("x", BUY, "0.01", reduce_only=True), at(1))
    core.place(market("e2", SELL, "0.01"), at(5))
    assert times(core, 9) == (0.0, 0.0)


def test_symbols_never_traded_have_no_row(core: SimCore) -> None:
    assert core.exposure(at(0)) == []
    core.place(market("e", SELL, "1", SOL), at(0))
    assert [r.symbol for r in core.exposure(at(1))] == [SOL]


def test_the_stretch_survives_a_snapshot_and_restore(core: SimCore) -> None:
    """A restart neither ends nor forgets a stretch: the position sat there uncovered all along."""
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s", SELL, "0.02", "60000"), at(10))
    core.cancel("s", at(20))
    restored = SimCore(markets=[])
    restored.restore(json.loads(json.dumps(core.snapshot())))
    assert restored.exposure(at(25)) == core.exposure(at(25))
    assert times(restored, 25) == (5.0, 10.0)
    restored.place(stop("s2", SELL, "0.02", "60000"), at(26))  # the restored stop cover is live too
    assert times(restored, 30) == (0.0, 10.0)


def test_an_older_snapshot_without_exposure_starts_the_stretch_at_the_last_fill(core: SimCore) -> None:
    core.place(market("e", BUY, "0.02"), at(3))
    core.place(market("e2", SELL, "0.1", ETH), at(4))
    core.place(stop("s", BUY, "0.1", "3300", ETH), at(5))
    snapshot = core.snapshot()
    del snapshot["exposure"]
    restored = SimCore(markets=[])
    restored.restore(snapshot)
    assert times(restored, 10) == (7.0, 7.0)
    assert times(restored, 10, ETH) == (0.0, 0.0)
    restored.cancel("s", at(11))  # the stop cover was rebuilt from the restored book
    assert times(restored, 12, ETH) == (1.0, 1.0)


# ----- the in-process adapter -----------------------------------------------------------------


async def test_the_adapter_reports_exposure_on_its_own_clock(
    exchange: SimulatedExchange, now: ManualTime
) -> None:
    await exchange.place_order(market("e", BUY, "0.02"))
    now.advance(3)
    assert exchange.exposure() == [SimExposure(BTC, "long", D("0.02"), 3.0, 3.0)]
    await exchange.place_order(stop("s", SELL, "0.02", "60000"))
    now.advance(10)
    assert exchange.exposure() == [SimExposure(BTC, "long", D("0.02"), 0.0, 3.0)]
    exchange.cancel_external("s")
    now.advance(4)
    assert exchange.exposure() == [SimExposure(BTC, "long", D("0.02"), 4.0, 4.0)]


async def test_the_adapter_keeps_the_stretch_in_its_state_file(tmp_path: Path, now: ManualTime) -> None:
    path = tmp_path / "sim.json"
    first = SimulatedExchange(now=now, state_file=path)
    await first.place_order(market("e", BUY, "0.02"))
    now.advance(6)
    second = SimulatedExchange(now=now, state_file=path)
    assert second.exposure() == [SimExposure(BTC, "long", D("0.02"), 6.0, 6.0)]


# ----- the server -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualTime:
    return ManualTime()


@pytest.fixture
async def raw(clock: ManualTime) -> AsyncIterator[RawClient]:
    async with raw_server(now=clock) as client:
        yield client


async def test_sim_state_reports_exposure_and_outside_trades_reassess_it(
    raw: RawClient, clock: ManualTime
) -> None:
    _, state = await raw.control("GET", "/sim/state")
    assert state["exposure"] == []
    status, _ = await raw.control(
        "POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "sell", "qty": "0.02"}
    )
    assert status == 200
    clock.advance(2.5)
    _, state = await raw.control("GET", "/sim/state")
    assert state["exposure"] == [
        {
            "symbol": "BTC/USDT:USDT",
            "side": "short",
            "qty": "0.02",
            "unprotected_seconds": 2.5,
            "max_unprotected_seconds": 2.5,
        }
    ]
    stop_body = {
        "symbol": "BTCUSDT",
        "side": "buy",
        "qty": "0.02",
        "type": "stop_market",
        "trigger_price": "70000",
        "reduce_only": True,
    }
    await raw.control("POST", "/sim/external-order", stop_body)
    clock.advance(10)
    _, state = await raw.control("GET", "/sim/state")
    assert [
        (e["side"], e["unprotected_seconds"], e["max_unprotected_seconds"]) for e in state["exposure"]
    ] == [("short", 0.0, 2.5)]
    await raw.control("POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "sell", "qty": "0.01"})
    clock.advance(1)
    _, state = await raw.control("GET", "/sim/state")
    assert [
        (e["qty"], e["unprotected_seconds"], e["max_unprotected_seconds"]) for e in state["exposure"]
    ] == [("0.03", 1.0, 2.5)]
    await raw.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "70000"})  # the stop fires
    clock.advance(30)
    _, state = await raw.control("GET", "/sim/state")
    assert [(e["side"], e["qty"], e["unprotected_seconds"]) for e in state["exposure"]] == [
        ("short", "0.01", 31.0)
    ]


def test_a_fired_stop_that_the_venue_executes_later_covers_until_it_fills(core: SimCore) -> None:
    """On a venue where a fired stop executes later (Drift: a keeper triggers it, an auction fills
    it), the stop is executing against the position: it covers until it fills. What its trigger
    fired no longer covering meant the venue's own execution time counted as unprotected (chaos
    151667319:p6: 3.2 s under a 3 s auction, which no client could shorten)."""
    core.trigger_delay = timedelta(seconds=3.2)
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s", SELL, "0.02", "64000"), at(1))
    core.set_mark(BTC, D("63900"), at(5))  # fired: leaves the trigger book, executes at 8.2
    assert times(core, 7) == (0.0, 1.0)
    [due] = core.fills_due().values()
    assert due == at(8.2)
    [order_id] = core.triggered()
    core.fill_acknowledged(order_id, at(8.2))
    assert row(core, 20) == SimExposure(BTC, "flat", D(0), 0.0, 1.0)


def test_a_fired_stop_that_finds_nothing_to_reduce_stops_covering(core: SimCore) -> None:
    """The fired stop is cancelled at execution (the position was closed meanwhile and opened
    again): from then on it covers nothing."""
    core.trigger_delay = timedelta(seconds=2)
    core.place(market("e", BUY, "0.02"), at(0))
    core.place(stop("s", SELL, "0.02", "64000"), at(0))
    core.set_mark(BTC, D("63900"), at(1))
    core.place(market("x", SELL, "0.02", reduce_only=True), at(2))  # flat
    core.place(market("e2", SELL, "0.01"), at(2.5))  # a short now: the sell stop cannot cover it
    [order_id] = core.triggered()
    core.fill_acknowledged(order_id, at(3))  # the reduce-only sell has nothing to reduce: cancelled
    assert times(core, 10) == (7.5, 7.5)
