"""The boundary parsers on recorded-shape payloads, exactly as unmodified ccxt hands them over."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from warden.adapters.ccxt import ParseError, parse
from warden.adapters.ccxt.ids import OrderIds
from warden.domain.orders import OrderStatus
from warden.domain.reports import MarkPrice, PositionReport
from warden.domain.values import Instrument, OrderSide, OrderType, Side, Symbol

from . import samples as s

D = Decimal
BTC = Symbol("BTC/USDT:USDT")


def test_market_becomes_an_instrument_with_exact_filters() -> None:
    """tick/lot/min qty/min notional come from the raw filter strings ("0.10" -> 0.1), not ccxt
    floats; the cap on resting conditional orders from MAX_NUM_ALGO_ORDERS (not MAX_NUM_ORDERS,
    the plain orders' cap)."""
    markets = s.offline().markets
    assert parse.instrument(markets["BTC/USDT:USDT"]) == Instrument(
        BTC, D("0.1"), D("0.001"), D("0.001"), D("100"), max_conditional=10
    )


@pytest.mark.parametrize("limit", [None, "", "ten", 0, -1])
def test_a_missing_or_meaningless_algo_order_cap_is_no_cap_known(limit: object) -> None:
    """An exchangeInfo without the filter (or with a limit that is not a positive count) parses:
    no cap is known, and none is enforced before sending (the exchange's refusal still is met)."""
    market = s.offline().markets["BTC/USDT:USDT"]
    filters = [f for f in market["info"]["filters"] if f["filterType"] != "MAX_NUM_ALGO_ORDERS"]
    if limit is not None:
        filters.append({"filterType": "MAX_NUM_ALGO_ORDERS", "limit": limit})
    inst = parse.instrument({**market, "info": {**market["info"], "filters": filters}})
    assert inst is not None and inst.max_conditional is None


def test_only_linear_perpetuals_are_instruments() -> None:
    """A delivery future and an inactive market are not tradeable instruments."""
    markets = s.offline().markets
    delivery = next(m for k, m in markets.items() if k != "BTC/USDT:USDT")
    assert parse.instrument(delivery) is None
    assert parse.instrument({**markets["BTC/USDT:USDT"], "active": False}) is None


def test_plain_order_response() -> None:
    """A filled market order (newOrderRespType=RESULT) keeps its exact numbers and client id."""
    report = parse.order_report(s.ccxt_order(s.PLAIN_ORDER_FILLED))
    assert (report.client_order_id, report.exchange_order_id) == ("wd-p1-e1", "4087922044")
    assert (report.type, report.side, report.status) == (OrderType.MARKET, OrderSide.BUY, OrderStatus.FILLED)
    assert (report.qty, report.filled_qty, report.avg_price) == (D("0.2"), D("0.2"), D("65010.4"))
    assert report.trigger_price is None
    assert report.at == datetime(2025, 2, 17, 8, 43, 51, 932000, tzinfo=UTC)


def test_algo_order_keeps_stop_vs_take_profit_that_ccxt_hides() -> None:
    """ccxt's unified type says "market" for both; the report says STOP_MARKET from info.orderType."""
    ccxt_order = s.ccxt_order(s.ALGO_ORDER_NEW)
    assert ccxt_order["type"] == "market"
    report = parse.order_report(ccxt_order)
    assert (report.client_order_id, report.exchange_order_id) == ("wd-p1-s1", "2148719")
    assert (report.type, report.status, report.trigger_price) == (
        OrderType.STOP_MARKET,
        OrderStatus.OPEN,
        D("64000"),
    )
    assert report.reduce_only
    tp = parse.order_report(s.ccxt_order({**s.ALGO_ORDER_NEW, "orderType": "TAKE_PROFIT_MARKET"}))
    assert tp.type is OrderType.TAKE_PROFIT_MARKET


@pytest.mark.parametrize(
    ("algo_status", "executed", "expected"),
    [
        ("NEW", None, OrderStatus.OPEN),
        ("TRIGGERING", None, OrderStatus.OPEN),
        ("TRIGGERED", None, OrderStatus.OPEN),
        ("FINISHED", "0.200", OrderStatus.FILLED),
        ("FINISHED", "0", OrderStatus.CANCELED),
        ("FINISHED", None, OrderStatus.CANCELED),
        ("CANCELED", None, OrderStatus.CANCELED),
        ("EXPIRED", None, OrderStatus.CANCELED),
        ("REJECTED", None, OrderStatus.REJECTED),
    ],
)
def test_algo_status_map(algo_status: str, executed: str | None, expected: OrderStatus) -> None:
    """TRIGGERING/TRIGGERED are still open (the child is in flight); FINISHED is filled only if it traded."""
    raw = {**s.ALGO_ORDER_NEW, "algoStatus": algo_status}
    if executed is not None:
        raw["executedQty"] = executed
    assert parse.order_report(s.ccxt_order(raw)).status is expected


def test_fired_algo_order_is_completed_by_its_child() -> None:
    """FINISHED + actualOrderId: the child order's fill completes the algo order's report."""
    algo_raw = s.ccxt_order(s.ALGO_ORDER_FINISHED)
    assert parse.algo_child_id(algo_raw) == "88937381063"
    child = parse.order_report(s.ccxt_order(s.CHILD_ORDER_FILLED))
    done = parse.with_child(parse.order_report(algo_raw), child)
    assert (done.client_order_id, done.status) == ("wd-p1-s1", OrderStatus.FILLED)
    assert (done.filled_qty, done.avg_price) == (D("0.2"), D("63990.1"))


def test_websocket_algo_update() -> None:
    """ALGO_UPDATE: caid/aid/o/tp, and `ai` names the child order; FINISHED carries aq/ap."""
    raw = s.ccxt_ws_order(s.WS_ALGO_TRIGGERED)
    report = parse.order_report(raw)
    assert (report.client_order_id, report.exchange_order_id) == ("wd-p1-a1", "2148720")
    assert (report.type, report.status, report.trigger_price) == (
        OrderType.TAKE_PROFIT_MARKET,
        OrderStatus.OPEN,
        D("66000"),
    )
    assert parse.algo_child_id(raw) == "88937381064"
    finished = parse.order_report(s.ccxt_ws_order(s.WS_ALGO_FINISHED))
    assert (finished.status, finished.filled_qty, finished.avg_price) == (
        OrderStatus.FILLED,
        D("0.01"),
        D("66001.2"),
    )


def test_websocket_order_trade_update_and_its_trade() -> None:
    """ORDER_TRADE_UPDATE x=TRADE: the order (c, i, X) and the execution (t, l, L, n)."""
    order = parse.order_report(s.ccxt_ws_order(s.WS_TRADE))
    assert (order.client_order_id, order.exchange_order_id, order.status) == (
        "wd-p1-e1",
        "13351197194",
        OrderStatus.FILLED,
    )
    trade = s.ccxt_ws_trade(s.WS_TRADE)
    fill = parse.fill_report(trade, "wd-p1-e1", str(trade["order"]))
    assert (fill.trade_id, fill.qty, fill.price, fill.fee) == (
        "458032604",
        D("0.001"),
        D("33468.46"),
        D("0.01338738"),
    )
    assert (fill.side, fill.symbol, fill.liquidation) == (OrderSide.BUY, BTC, False)


def test_liquidation_fills_are_flagged() -> None:
    """Binance names liquidation orders autoclose-*: the fill says so."""
    message = {**s.WS_TRADE, "o": {**s.WS_TRADE["o"], "c": "autoclose-1234"}}
    trade = s.ccxt_ws_trade(message)
    assert parse.fill_report(trade, "", "1").liquidation


def test_rest_user_trade() -> None:
    """userTrades has no client id: the caller supplies the attribution."""
    trade = s.ccxt_trade(s.USER_TRADE)
    fill = parse.fill_report(trade, "wd-p1-s1", "2148719")
    assert (fill.client_order_id, fill.exchange_order_id, fill.trade_id) == ("wd-p1-s1", "2148719", "698759")
    assert (fill.side, fill.qty, fill.price, fill.fee) == (
        OrderSide.SELL,
        D("0.002"),
        D("7819.01"),
        D("-0.0781901"),
    )
    assert fill.at == datetime(2019, 9, 26, 16, 22, 58, 20000, tzinfo=UTC)


def test_positions_side_from_the_sign_and_flat_is_none() -> None:
    """positionRisk v3: long/short from positionAmt's sign; a flat entry is no position."""
    assert parse.position_report(s.ccxt_position(s.POSITION_RISK_LONG)) == PositionReport(
        BTC, Side.LONG, D("0.009"), D("67445.9")
    )
    short = parse.position_report(s.ccxt_position(s.POSITION_RISK_SHORT))
    assert short is not None
    assert (short.side, short.qty) == (Side.SHORT, D("0.004"))
    flat = {**s.POSITION_RISK_LONG, "positionAmt": "0", "entryPrice": "0", "notional": "0"}
    assert parse.position_report({"symbol": "BTC/USDT:USDT", "info": flat}) is None


def test_mark_price_update() -> None:
    """markPriceUpdate -> MarkPrice with the exact string price and the event time."""
    mark = parse.mark_price(s.ccxt_mark(s.WS_MARK))
    assert mark == MarkPrice(BTC, D("11794.15"), datetime(2019, 7, 5, 5, 43, tzinfo=UTC))


def test_unreadable_structures_raise_parse_error() -> None:
    """Missing ids or quantities are a ParseError (translated at the call), never a half report."""
    with pytest.raises(ParseError):
        parse.order_report({"id": None, "symbol": None, "info": {}})
    with pytest.raises(ParseError):
        parse.fill_report({"id": "1", "symbol": "BTC/USDT:USDT", "info": {}}, "c", "1")
    with pytest.raises(ParseError):
        parse.dec("not a number")


def test_numbers_never_pick_up_binary_float_digits() -> None:
    """ccxt floats go through repr: 0.1 stays 0.1; tick sizes are canonical."""
    assert parse.dec(0.1) == D("0.1")
    assert parse.step("0.10") == D("0.1")
    assert str(parse.step("1.00")) == "1"
    assert parse.positive("0.00") is None


def test_order_ids_map_a_child_to_its_algo_order() -> None:
    """A fired stop's child order id attributes fills to the stop; the child's own client id never wins."""
    ids = OrderIds()
    algo = parse.order_report(s.ccxt_order(s.ALGO_ORDER_FINISHED))
    ids.learn(algo, "88937381063")
    ids.learn(parse.order_report(s.ccxt_order(s.CHILD_ORDER_FILLED)))
    assert ids.attribution("88937381063") == ("wd-p1-s1", "2148719")
    assert ids.is_child("88937381063")
    assert ids.attribution("404") is None
    ids.learn_unknown("404", "someone-else")
    assert ids.attribution("404") == ("someone-else", "404")


def test_order_ids_forget_the_oldest_beyond_capacity() -> None:
    ids = OrderIds(capacity=2)
    for n in range(3):
        ids.learn_unknown(str(n), f"c{n}")
    assert [ids.attribution(str(n)) for n in range(3)] == [None, ("c1", "1"), ("c2", "2")]
