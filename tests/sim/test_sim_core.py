"""The matching core: validation, reduce-only, triggers, accounting, events, queries."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest

from warden.adapters.sim import SimCore, SimMarket, SimOrderNotFound, SimRejection, walk_step
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, OrderRequest, PositionReport
from warden.domain.values import ClientOrderId, Instrument, OrderSide, OrderType, Side, Symbol

from .builders import BTC, BUY, ETH, SELL, SOL, T0, market, order_of, stop, take_profit

D = Decimal


def rejection_code(core: SimCore, request: OrderRequest) -> int:
    with pytest.raises(SimRejection) as info:
        core.place(request, T0)
    return info.value.code


def test_market_order_fills_at_mark_with_taker_fee_and_emits_events_in_order(core: SimCore) -> None:
    """A market buy fills at the mark, pays 0.04 % in quote, and reports OPEN, fill, FILLED, position."""
    outcome = core.place(market("m1", BUY, "0.01"), T0)
    assert outcome.report.status is OrderStatus.FILLED
    assert (outcome.report.filled_qty, outcome.report.avg_price) == (D("0.01"), D("65000"))
    kinds = [type(e) for e in outcome.events]
    assert kinds == [OrderReport, FillReport, OrderReport, PositionReport]
    opened, fill, filled, position = outcome.events
    assert isinstance(opened, OrderReport)
    assert opened.status is OrderStatus.OPEN
    assert isinstance(fill, FillReport)
    assert fill.fee == D("0.26")
    assert fill.price == D("65000")
    assert filled == outcome.report
    assert position == PositionReport(BTC, Side.LONG, D("0.01"), D("65000"))


def test_unknown_symbol_is_rejected(core: SimCore) -> None:
    """An order for a symbol the exchange does not list is refused with -1121."""
    assert rejection_code(core, market("m1", BUY, "1", Symbol("DOGE/USDT:USDT"))) == -1121


@pytest.mark.parametrize("qty", ["0.0015", "0.0001", "0", "-0.01"])
def test_quantity_off_the_lot_grid_or_not_positive_is_rejected(core: SimCore, qty: str) -> None:
    """A quantity that is not a positive multiple of the lot size is refused and nothing is traded."""
    assert rejection_code(core, market("m1", BUY, qty)) in (-1111, -4003)
    assert core.positions() == []


def test_quantity_below_min_qty_is_rejected() -> None:
    """A whole number of lots below the instrument's minimum quantity is refused with -4005."""
    odd = Instrument(Symbol("X/USDT:USDT"), D("0.5"), D("0.1"), D("1"), D("1"))
    core = SimCore([SimMarket(odd, D("10"))])
    assert rejection_code(core, market("m1", BUY, "0.5", odd.symbol)) == -4005
    assert core.place(market("m2", BUY, "1.0", odd.symbol), T0).report.status is OrderStatus.FILLED


def test_trigger_off_tick_is_rejected(core: SimCore) -> None:
    """A stop whose trigger is not a multiple of the tick size is refused with -4014."""
    assert rejection_code(core, stop("s1", SELL, "0.01", "64000.05")) == -4014


def test_notional_below_minimum_is_rejected_unless_reduce_only(core: SimCore) -> None:
    """Opening orders under min_notional are refused (-4164); a reduce-only close of the same size is not."""
    assert rejection_code(core, market("m1", BUY, "0.001")) == -4164  # 65 USDT < 100
    core.place(market("m2", BUY, "0.01"), T0)
    closed = core.place(market("m3", SELL, "0.001", reduce_only=True), T0)
    assert closed.report.status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("side", "order_type", "trigger"),
    [
        (SELL, OrderType.STOP_MARKET, "65000"),
        (SELL, OrderType.STOP_MARKET, "65100"),
        (BUY, OrderType.STOP_MARKET, "65000"),
        (BUY, OrderType.STOP_MARKET, "64900"),
        (SELL, OrderType.TAKE_PROFIT_MARKET, "65000"),
        (SELL, OrderType.TAKE_PROFIT_MARKET, "64900"),
        (BUY, OrderType.TAKE_PROFIT_MARKET, "65000"),
        (BUY, OrderType.TAKE_PROFIT_MARKET, "65100"),
    ],
)
def test_order_that_would_trigger_immediately_is_rejected(
    core: SimCore, side: OrderSide, order_type: OrderType, trigger: str
) -> None:
    """A conditional order already crossed by the mark (65000) is refused with -2021."""
    request = OrderRequest(ClientOrderId("c1"), BTC, side, order_type, D("0.01"), D(trigger), False)
    assert rejection_code(core, request) == -2021


def test_duplicate_client_id_is_rejected_only_while_the_first_is_open(core: SimCore) -> None:
    """A client id in use by an open order is refused (-4116); once that order is closed it may be reused."""
    core.place(stop("dup", SELL, "0.01", "60000"), T0)
    assert rejection_code(core, market("dup", BUY, "0.01")) == -4116
    core.cancel("dup", T0)
    assert core.place(market("dup", BUY, "0.01"), T0).report.status is OrderStatus.FILLED
    again = core.place(market("dup", BUY, "0.01"), T0)  # Binance accepts a filled id again
    assert core.position(BTC).qty == D("0.02")
    assert core.order("dup") == again.report


@pytest.mark.parametrize("entry_side", [None, BUY])
def test_reduce_only_market_that_cannot_reduce_is_rejected(
    core: SimCore, entry_side: OrderSide | None
) -> None:
    """A reduce-only market order on a flat position, or in the position's direction, is refused (-2022)."""
    if entry_side is not None:
        core.place(market("e", entry_side, "0.01"), T0)
    assert rejection_code(core, market("r", BUY, "0.01", reduce_only=True)) == -2022


def test_reduce_only_market_larger_than_position_fills_only_the_position(core: SimCore) -> None:
    """A reduce-only market order for more than is open closes the position and no more."""
    core.place(market("e", SELL, "0.02"), T0)
    report = core.place(market("r", BUY, "0.05", reduce_only=True), T0).report
    assert (report.status, report.qty, report.filled_qty) == (OrderStatus.FILLED, D("0.05"), D("0.02"))
    assert core.position(BTC).flat
    assert core.positions() == []


def test_sell_stop_fires_when_mark_falls_to_trigger(core: SimCore) -> None:
    """A sell stop rests above nothing, then fills at the mark once the mark reaches or passes its trigger."""
    core.place(market("e", BUY, "0.01"), T0)
    core.place(stop("s", SELL, "0.01", "64000"), T0)
    assert core.set_mark(BTC, D("64000.1"), T0) == [MarkPrice(BTC, D("64000.1"), T0)]
    events = core.set_mark(BTC, D("63990"), T0)
    assert [type(e) for e in events] == [MarkPrice, FillReport, OrderReport, PositionReport]
    fill = events[1]
    assert isinstance(fill, FillReport)
    assert (fill.side, fill.price, fill.qty) == (SELL, D("63990"), D("0.01"))
    assert events[3] == PositionReport(BTC, Side.LONG, D("0"), D("0"))
    assert core.position(BTC).realized_pnl == D("-10.10")
    assert core.open_orders() == []


def test_buy_stop_fires_when_mark_rises_to_trigger(core: SimCore) -> None:
    """A buy stop protecting a short fires when the mark rises to exactly its trigger."""
    core.place(market("e", SELL, "0.01"), T0)
    core.place(stop("s", BUY, "0.01", "66000"), T0)
    core.set_mark(BTC, D("64000"), T0)
    assert order_of(core, "s").status is OrderStatus.OPEN
    core.set_mark(BTC, D("66000"), T0)
    assert core.position(BTC).flat


def test_take_profits_fire_in_the_profitable_direction_only(core: SimCore) -> None:
    """A sell TP fires on a rising mark and a buy TP on a falling one, never the other way."""
    core.place(market("l", BUY, "0.01"), T0)
    core.place(market("s", SELL, "0.1", ETH), T0)
    core.place(take_profit("ltp", SELL, "0.01", "66000"), T0)
    core.place(take_profit("stp", BUY, "0.1", "2900", ETH), T0)
    core.set_mark(BTC, D("60000"), T0)
    core.set_mark(ETH, D("3100"), T0)
    assert len(core.open_orders()) == 2
    core.set_mark(BTC, D("66500"), T0)
    core.set_mark(ETH, D("2900"), T0)
    assert core.open_orders() == []
    assert core.position(BTC).realized_pnl == D("15")
    assert core.position(ETH).realized_pnl == D("10")


def test_several_triggers_in_one_tick_fire_in_price_order_and_reduce_only_caps_apply(core: SimCore) -> None:
    """TP1 then TP2 fire lowest first on a rise; an oversized reduce-only stop later closes only the rest."""
    core.place(market("e", BUY, "0.03"), T0)
    core.place(stop("s", SELL, "0.03", "64000"), T0)
    core.place(take_profit("tp2", SELL, "0.01", "67000"), T0)
    core.place(take_profit("tp1", SELL, "0.01", "66000"), T0)
    events = core.set_mark(BTC, D("67500"), T0)
    filled = [e.client_order_id for e in events if isinstance(e, FillReport)]
    assert filled == ["tp1", "tp2"]
    assert core.position(BTC).qty == D("0.01")
    core.set_mark(BTC, D("63000"), T0)
    assert order_of(core, "s").filled_qty == D("0.01")
    assert core.position(BTC).flat


def test_reduce_only_stop_with_nothing_to_reduce_expires_as_canceled(core: SimCore) -> None:
    """When a gap fires two stops, the second finds the position flat and is canceled without a fill."""
    core.place(market("e", BUY, "0.02"), T0)
    core.place(stop("s2", SELL, "0.02", "63000"), T0)
    core.place(stop("s1", SELL, "0.02", "64000"), T0)
    events = core.set_mark(BTC, D("62000"), T0)
    statuses = [(e.client_order_id, e.status) for e in events if isinstance(e, OrderReport)]
    assert statuses == [("s1", OrderStatus.FILLED), ("s2", OrderStatus.CANCELED)]
    assert len(core.fills(BTC)) == 2  # the entry and s1


def test_close_position_order_closes_whatever_is_open_at_trigger(core: SimCore) -> None:
    """An outside actor's closePosition stop closes the full size open when it fires, whatever it was."""
    core.place(market("e", BUY, "0.01"), T0)
    outside = core.external_order(
        BTC, SELL, D("0"), T0, order_type=OrderType.STOP_MARKET, trigger_price=D("64000"), close_position=True
    )
    assert outside.report.client_order_id == "ext-1"
    assert outside.report.reduce_only
    core.place(market("more", BUY, "0.04"), T0)
    core.set_mark(BTC, D("63900"), T0)
    assert core.position(BTC).flat
    assert core.fills(BTC)[-1].qty == D("0.05")


def test_external_market_orders_get_sequential_ext_ids(core: SimCore) -> None:
    """Outside trades are tagged ext-1, ext-2, ... and move the account's position."""
    first = core.external_order(SOL, BUY, D("1"), T0)
    second = core.external_order(SOL, SELL, D("0.5"), T0, reduce_only=True)
    assert (first.report.client_order_id, second.report.client_order_id) == ("ext-1", "ext-2")
    assert core.positions() == [PositionReport(SOL, Side.LONG, D("0.50"), D("150"))]


def test_realized_pnl_and_fees_over_a_round_trip(core: SimCore) -> None:
    """Buying 0.01 at 65000 and selling at 66000 realizes 10 USDT and pays 0.26 + 0.264 in fees."""
    core.place(market("b", BUY, "0.01"), T0)
    core.set_mark(BTC, D("66000"), T0)
    core.place(market("s", SELL, "0.01", reduce_only=True), T0)
    position = core.position(BTC)
    assert (position.realized_pnl, position.fees) == (D("10"), D("0.524"))


def test_adding_to_a_position_averages_the_entry(core: SimCore) -> None:
    """Adding 0.03 at 66000 to 0.01 at 65000 gives an entry of 65750."""
    core.place(market("a", BUY, "0.01"), T0)
    core.set_mark(BTC, D("66000"), T0)
    core.place(market("b", BUY, "0.03"), T0)
    assert core.position(BTC).entry_price == D("65750")


def test_selling_more_than_the_long_flips_to_a_short_at_the_fill_price(core: SimCore) -> None:
    """A non-reduce-only sell of 0.03 against a 0.01 long realizes the 0.01 and opens a 0.02 short."""
    core.place(market("a", BUY, "0.01"), T0)
    core.set_mark(BTC, D("66000"), T0)
    core.place(market("b", SELL, "0.03"), T0)
    assert core.positions() == [PositionReport(BTC, Side.SHORT, D("0.02"), D("66000"))]
    assert core.position(BTC).realized_pnl == D("10")


def test_canceled_stop_never_fires_and_cancel_of_closed_order_fails(core: SimCore) -> None:
    """A canceled stop leaves the book; canceling it again, or an unknown id, raises SimOrderNotFound."""
    core.place(market("e", BUY, "0.01"), T0)
    canceled = core.cancel(core.place(stop("s", SELL, "0.01", "64000"), T0).report.client_order_id, T0)
    assert canceled.report.status is OrderStatus.CANCELED
    assert canceled.events == (canceled.report,)
    core.set_mark(BTC, D("60000"), T0)
    assert core.position(BTC).qty == D("0.01")
    for cid in ("s", "nope"):
        with pytest.raises(SimOrderNotFound):
            core.cancel(cid, T0)


def test_queries_cover_history_open_orders_and_fills_since(core: SimCore) -> None:
    """order() keeps closed orders, open_orders() lists resting ones, fills() filters by time."""
    assert core.order("m1") is None
    core.place(market("m1", BUY, "0.01"), T0)
    later = T0 + timedelta(seconds=5)
    core.place(market("m2", BUY, "0.01"), later)
    core.place(take_profit("tp", SELL, "0.01", "70000"), later)
    assert order_of(core, "m1").status is OrderStatus.FILLED
    assert [o.client_order_id for o in core.open_orders()] == ["tp"]
    assert [f.client_order_id for f in core.fills(BTC, later)] == ["m2"]
    assert len(core.fills(BTC)) == 2
    assert core.fills(ETH) == []


def test_order_and_trade_ids_are_unique(core: SimCore) -> None:
    """Every order gets a distinct exchange id and every trade a distinct T-number."""
    for i in range(5):
        core.place(market(f"b{i}", BUY, "0.01"), T0)
        core.place(stop(f"s{i}", SELL, "0.01", "60000"), T0)
    core.set_mark(BTC, D("59000"), T0)
    ids = [order_of(core, f"{k}{i}").exchange_order_id for k in "bs" for i in range(5)]
    trades = [f.trade_id for f in core.fills(BTC)]
    assert len(set(ids)) == 10
    assert trades == [f"T{n}" for n in range(1, 11)]


def test_random_walk_is_deterministic_per_seed_and_stays_on_tick() -> None:
    """The same seed gives the same price path; another seed gives another; every mark is on tick."""

    def path(seed: int) -> list[dict[Symbol, Decimal]]:
        core = SimCore(seed=seed)
        marks = []
        for _ in range(50):
            core.walk(T0)
            marks.append(core.marks())
        return marks

    first = path(1)
    assert first == path(1)
    assert first != path(2)
    for marks in first:
        for symbol, price in marks.items():
            tick = SimCore().instruments[symbol].tick_size
            assert price > 0
            assert price % tick == 0


def test_walk_step_is_a_pure_function_of_the_rng_state(core: SimCore) -> None:
    """walk_step with two RNGs in the same state returns the same marks and changes nothing else."""
    marks = core.marks()
    a = walk_step(marks, core.instruments, random.Random(3))
    b = walk_step(marks, core.instruments, random.Random(3))
    assert a == b
    assert marks == core.marks()


# ----- amend, leverage, margin mode -----------------------------------------------------


def test_amend_moves_a_resting_stop_and_its_cover(core: SimCore) -> None:
    """The amended trigger is the live one (the old heap entry is dead), the order keeps its ids,
    and the exposure cover follows the new quantity."""
    core.place(market("e1", BUY, "0.02"), T0)
    placed = core.place(stop("s1", SELL, "0.02", "64000"), T0).report
    outcome = core.amend("s1", T0, qty=D("0.01"), trigger_price=D("63000"))
    amended = outcome.report
    assert (amended.exchange_order_id, amended.qty, amended.trigger_price, amended.status) == (
        placed.exchange_order_id,
        D("0.01"),
        D("63000"),
        OrderStatus.OPEN,
    )
    assert outcome.events == (amended,)
    assert core.exposure(T0 + timedelta(seconds=5))[0].unprotected_seconds == 5.0  # 0.01 covers half
    core.set_mark(BTC, D("63900"), T0)  # past the old trigger (64000): nothing fires
    assert core.order("s1") == amended
    events = core.set_mark(BTC, D("63000"), T0)
    assert any(isinstance(e, FillReport) and e.client_order_id == "s1" for e in events)
    with pytest.raises(SimOrderNotFound):
        core.amend("s1", T0, trigger_price=D("63000"))  # it fired: nothing rests


def test_amend_validates_like_a_new_order(core: SimCore) -> None:
    core.place(market("e1", BUY, "0.02"), T0)
    core.place(stop("s1", SELL, "0.02", "64000"), T0)
    with pytest.raises(SimRejection) as crossed:
        core.amend("s1", T0, trigger_price=D("65100"))
    assert crossed.value.code == -2021
    with pytest.raises(SimRejection):
        core.amend("s1", T0, qty=D("0.0105"))
    assert core.order("s1").trigger_price == D("64000")  # type: ignore[union-attr]
    with pytest.raises(SimOrderNotFound):
        core.amend("e1", T0, qty=D("0.01"))  # a market order does not rest


def test_leverage_and_margin_mode_are_per_symbol_settings(core: SimCore) -> None:
    assert (core.leverage(BTC), core.margin_mode(BTC)) == (20, "cross")
    assert core.set_leverage(BTC, 5) is True
    assert core.set_leverage(BTC, 5) is False  # not modified
    with pytest.raises(SimRejection):
        core.set_leverage(BTC, 0)
    assert core.set_margin_mode(BTC, "isolated") is True
    assert core.set_margin_mode(BTC, "isolated") is False
    core.place(market("e1", BUY, "0.01"), T0)
    with pytest.raises(SimRejection) as busy:
        core.set_margin_mode(BTC, "cross")
    assert busy.value.code == -4048  # not with a position open
    assert core.set_margin_mode(ETH, "isolated") is True  # other symbols are their own
    restored = SimCore(seed=1)
    restored.restore(core.snapshot())
    assert (restored.leverage(BTC), restored.margin_mode(BTC), restored.margin_mode(SOL)) == (
        5,
        "isolated",
        "cross",
    )
