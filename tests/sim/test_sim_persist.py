"""Simulator state persistence: the embedded sim's account survives a warden restart."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from warden.adapters.sim import SimCore, SimulatedExchange, default_markets, synthetic_markets
from warden.adapters.sim.persist import read_state
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport
from warden.domain.values import OrderType, Symbol

from .builders import BTC, BUY, ETH, SELL, SOL, T0, ManualTime, market, order_of, stop, take_profit

D = Decimal


def busy_core() -> SimCore:
    """A core with history: fills, a resting stop and TP, a cancel, an outside trade, a walk."""
    core = SimCore(seed=11)
    core.place(market("e1", BUY, "0.02"), T0)
    core.place(stop("s1", SELL, "0.02", "60000"), T0)
    core.place(take_profit("t1", SELL, "0.01", "70000"), T0)
    core.place(market("e2", SELL, "0.1", ETH), T0)
    core.place(stop("s2", BUY, "0.1", "3300", ETH), T0)
    core.cancel("s2", T0)
    core.external_order(BTC, BUY, D("0.01"), T0)
    for _ in range(5):
        core.walk(T0)
    return core


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def roundtrip(core: SimCore) -> SimCore:
    restored = SimCore(markets=[], seed=0)
    restored.restore(json.loads(json.dumps(core.snapshot())))
    return restored


def test_snapshot_is_json_safe_and_round_trips_equal() -> None:
    """snapshot -> JSON text -> restore -> snapshot gives the same dict; Decimals travel as strings."""
    core = busy_core()
    snapshot = core.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert isinstance(snapshot["marks"][BTC], str)
    assert roundtrip(core).snapshot() == snapshot


def test_restored_core_behaves_like_the_original() -> None:
    """Same queries, and the same future: the RNG, counters and trigger books came back too."""
    core = busy_core()
    restored = roundtrip(core)
    assert restored.positions() == core.positions()
    assert restored.open_orders() == core.open_orders()
    assert restored.fills(BTC) == core.fills(BTC)
    assert restored.resting_count(BTC) == core.resting_count(BTC) == 2
    for _ in range(20):
        assert restored.walk(T0) == core.walk(T0)
    assert restored.set_mark(BTC, D("59000"), T0) == core.set_mark(BTC, D("59000"), T0)
    nxt = market("e3", BUY, "0.01")
    assert restored.place(nxt, T0) == core.place(nxt, T0)
    assert restored.external_order(BTC, BUY, D("0.01"), T0) == core.external_order(BTC, BUY, D("0.01"), T0)


def test_a_state_saved_with_fewer_markets_keeps_listing_the_markets_asked_for() -> None:
    """`warden sim serve --markets 5 --state-file F` with F saved by a three-market server: the
    saved account comes back and S000, S001 are still listed and tradable (the restore used to
    replace the markets with the saved ones, and --markets was silently ignored)."""
    saved = SimCore(seed=3)
    saved.place(market("e1", BUY, "0.02"), T0)
    core = SimCore(default_markets() + synthetic_markets(2), seed=0)
    core.restore(json.loads(json.dumps(saved.snapshot())))
    s001 = Symbol("S001/USDT:USDT")
    assert set(core.instruments) == {BTC, ETH, SOL, Symbol("S000/USDT:USDT"), s001}
    assert core.positions() == saved.positions()
    assert core.mark(s001) == D(100)
    assert core.place(market("e2", BUY, "1", s001), T0).report.status is OrderStatus.FILLED
    core.walk(T0)


def test_restore_refuses_an_unknown_version() -> None:
    """A snapshot from another format version raises instead of half-loading."""
    snapshot = busy_core().snapshot()
    snapshot["version"] = 99
    with pytest.raises(ValueError, match="version"):
        SimCore().restore(snapshot)


async def test_restarted_exchange_finds_old_orders_and_fires_resting_stops(tmp_path: Path) -> None:
    """A new SimulatedExchange on the same state file answers for pre-restart orders and keeps stops live."""
    path = tmp_path / "sim.json"
    now = ManualTime()
    first = SimulatedExchange(now=now, seed=3, state_file=path)
    await first.place_order(market("e", BUY, "0.02"))
    await first.place_order(stop("s", SELL, "0.02", "64000"))
    await first.place_order(take_profit("t", SELL, "0.01", "66000"))
    await first.cancel_order(BTC, "t", conditional=True)
    # the process dies here: no close(), nothing flushed beyond what mutations wrote

    second = SimulatedExchange(now=now, seed=3, state_file=path)
    assert (await second.fetch_order(BTC, "e", conditional=False)).status is OrderStatus.FILLED
    assert (await second.fetch_order(BTC, "s", conditional=True)).status is OrderStatus.OPEN
    assert (await second.fetch_order(BTC, "t", conditional=True)).status is OrderStatus.CANCELED
    assert [p.qty for p in await second.fetch_positions()] == [D("0.02")]
    events = second.stream()
    second.set_mark(BTC, D("63900"))
    got = [await anext(events) for _ in range(4)]
    fill = got[1]
    assert isinstance(fill, FillReport)
    assert (fill.client_order_id, fill.qty, fill.price) == ("s", D("0.02"), D("63900"))
    assert await second.fetch_positions() == []
    third = SimulatedExchange(now=now, seed=3, state_file=path)  # the trigger itself was saved at once
    assert order_of(third.core, "s").status is OrderStatus.FILLED


async def test_plain_mark_moves_are_throttled_and_flushed_on_close(tmp_path: Path) -> None:
    """A mark move that fires nothing is not written twice within a second; close writes it."""
    path = tmp_path / "sim.json"
    exchange = SimulatedExchange(now=ManualTime(), state_file=path)
    exchange.set_mark(BTC, D("65001"))  # first write: nothing saved yet
    exchange.set_mark(BTC, D("65002"))  # within the second: only marked dirty
    state = read_state(path)
    assert state is not None
    assert state["marks"][BTC] == "65001"
    await exchange.close()
    state = read_state(path)
    assert state is not None
    assert state["marks"][BTC] == "65002"
    assert names(tmp_path) == ["sim.json"]  # no temp file left behind


async def test_external_orders_are_saved(tmp_path: Path) -> None:
    """An outside trade and an outside cancel both reach the file at once."""
    path = tmp_path / "sim.json"
    exchange = SimulatedExchange(now=ManualTime(), state_file=path)
    exchange.external_order(BTC, BUY, D("0.01"))
    exchange.external_order(BTC, SELL, D("0.01"), order_type=OrderType.STOP_MARKET, trigger_price=D("60000"))
    exchange.cancel_external("ext-2")
    restored = SimulatedExchange(now=ManualTime(), state_file=path)
    assert order_of(restored.core, "ext-1").status is OrderStatus.FILLED
    assert order_of(restored.core, "ext-2").status is OrderStatus.CANCELED
    assert restored.core.external_order(BTC, BUY, D("0.01"), T0).report.client_order_id == "ext-3"


def test_without_a_state_file_nothing_is_written(tmp_path: Path) -> None:
    """The default in-memory sim touches no file."""
    exchange = SimulatedExchange(now=ManualTime())
    exchange.set_mark(BTC, D("65001"))
    exchange.save()
    assert names(tmp_path) == []


def test_the_position_mode_and_the_fee_asset_survive_a_restart() -> None:
    """Account settings of the Binance face: hedge mode (positionSide/dual) and the asset that pays
    the fees; a restarted server keeps them, as the exchange would."""
    core = SimCore(default_markets())
    assert core.set_hedge_mode(True) and not core.set_hedge_mode(True)
    core.fee_asset = ETH
    restored = SimCore(default_markets())
    restored.restore(json.loads(json.dumps(core.snapshot())))
    assert (restored.hedge_mode, restored.fee_asset) == (True, ETH)
