"""The Bybit boundary parsers on recorded payloads, exactly as unmodified ccxt hands them over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from warden.adapters.ccxt import ParseError, parse_bybit
from warden.domain.orders import OrderStatus
from warden.domain.reports import OrderRequest, PositionReport
from warden.domain.values import ClientOrderId, Instrument, OrderSide, OrderType, Side, Symbol

from . import bybit_samples as s

D = Decimal
BTC, LTC = Symbol("BTC/USDT:USDT"), Symbol("LTC/USDT:USDT")


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    offline = await s.offline()
    try:
        yield offline
    finally:
        await offline.close()


async def test_linear_perpetuals_become_instruments_from_the_raw_filters(client: Any) -> None:
    """ "0.50" is a tick of 0.5 exactly; a dated future is not an instrument warden trades."""
    markets = client.markets
    cap = 10  # Bybit's documented cap on resting conditional orders per symbol
    assert parse_bybit.instrument(markets[BTC]) == Instrument(
        BTC, D("0.5"), D("0.001"), D("0.001"), D(0), max_conditional=cap
    )
    assert parse_bybit.instrument(markets[LTC]) == Instrument(
        LTC, D("0.01"), D("0.1"), D("0.1"), D("5"), max_conditional=cap
    )
    [delivery] = [m for m in markets.values() if m["future"]]
    assert parse_bybit.instrument(delivery) is None


async def test_a_usdc_settled_perpetual_is_not_an_instrument(client: Any) -> None:
    """Positions and open orders are listed per settle coin (USDT): a USDC perpetual would be unseen."""
    usdc = client.markets["BTC/USDC:USDC"]
    assert (usdc["swap"], usdc["linear"], usdc["id"]) == (True, True, "BTCPERP")
    assert parse_bybit.instrument(usdc) is None


async def test_an_order_answer_is_ids_only_and_the_report_says_working(client: Any) -> None:
    parsed = client.parse_order(s.ORDER_ANSWER, client.market(BTC))
    assert (parsed["status"], parsed["filled"]) == (None, None)  # ccxt knows nothing more either
    request = OrderRequest(
        ClientOrderId("wd-a1b2c3-0123456789ab-e1"), BTC, OrderSide.BUY, OrderType.MARKET, D("0.001")
    )
    at = datetime(2025, 1, 1, tzinfo=UTC)
    report = parse_bybit.acknowledged(request, parse_bybit.order_id(parsed), at)
    assert (report.exchange_order_id, report.status, report.filled_qty, report.qty) == (
        "1992319485461489920",
        OrderStatus.OPEN,
        D(0),
        D("0.001"),
    )
    with pytest.raises(ParseError):
        parse_bybit.order_id({"info": {}})


async def test_a_filled_reduce_only_market_order(client: Any) -> None:
    report = parse_bybit.order_report(client.parse_order(s.CLOSED_REDUCE_ONLY_SELL))
    assert (report.exchange_order_id, report.client_order_id, report.symbol) == (
        "f5f2d355-9a11-4af3-9b83-aa1d6ab6ddfe",
        "",  # placed without an orderLinkId: an outside order to warden
        BTC,
    )
    assert (report.type, report.side, report.status, report.reduce_only) == (
        OrderType.MARKET,
        OrderSide.SELL,
        OrderStatus.FILLED,
        True,
    )
    assert (report.qty, report.filled_qty, report.avg_price, report.trigger_price) == (
        D("0.001"),
        D("0.001"),
        D("122529.9"),
        None,
    )
    assert report.at == datetime.fromtimestamp(1757837618.909, tz=UTC)


async def test_an_open_order_with_an_empty_average_price(client: Any) -> None:
    report = parse_bybit.order_report(client.parse_order(s.OPEN_LIMIT_BUY))
    assert (report.status, report.filled_qty, report.avg_price, report.side) == (
        OrderStatus.OPEN,
        D(0),
        None,
        OrderSide.BUY,
    )


@pytest.mark.parametrize(
    ("side", "direction", "expected"),
    [
        ("Sell", 2, OrderType.STOP_MARKET),  # a long's stop: fires falling
        ("Buy", 1, OrderType.STOP_MARKET),  # a short's stop: fires rising
        ("Sell", 1, OrderType.TAKE_PROFIT_MARKET),  # a long's take-profit
        ("Buy", 2, OrderType.TAKE_PROFIT_MARKET),  # a short's take-profit
        ("Sell", "2", OrderType.STOP_MARKET),  # recorded answers write numbers as strings too
    ],
)
async def test_stop_or_take_profit_follows_side_and_trigger_direction(
    client: Any, side: str, direction: object, expected: OrderType
) -> None:
    raw = {**s.CONDITIONAL_UNTRIGGERED, "side": side, "triggerDirection": direction}
    report = parse_bybit.order_report(client.parse_order(raw))
    assert (report.type, report.status, report.trigger_price, report.reduce_only) == (
        expected,
        OrderStatus.OPEN,
        D("120000"),
        True,
    )
    assert report.client_order_id == "wd-a1b2c3-0123456789ab-s1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Untriggered", OrderStatus.OPEN),
        ("Triggered", OrderStatus.OPEN),  # fired, its market order on the way: not done
        ("New", OrderStatus.OPEN),
        ("PartiallyFilled", OrderStatus.OPEN),
        ("Filled", OrderStatus.FILLED),
        ("Cancelled", OrderStatus.CANCELED),
        ("Deactivated", OrderStatus.CANCELED),  # cancelled before it fired
        ("PartiallyFilledCanceled", OrderStatus.CANCELED),
        ("Rejected", OrderStatus.REJECTED),
    ],
)
async def test_order_status_map(client: Any, status: str, expected: OrderStatus) -> None:
    report = parse_bybit.order_report(
        client.parse_order({**s.CONDITIONAL_UNTRIGGERED, "orderStatus": status})
    )
    assert report.status is expected


async def test_an_unknown_status_is_unreadable_not_guessed(client: Any) -> None:
    with pytest.raises(ParseError):
        parse_bybit.order_report(client.parse_order({**s.CLOSED_REDUCE_ONLY_SELL, "orderStatus": "Exploded"}))


async def test_positions_long_and_flat(client: Any) -> None:
    [long] = client.parse_positions([s.POSITION_LONG])
    assert parse_bybit.position_report(long) == PositionReport(LTC, Side.LONG, D("1.2"), D("64.59947917"))
    short = client.parse_position({**s.POSITION_LONG, "side": "Sell"})
    assert parse_bybit.position_report(short) == PositionReport(LTC, Side.SHORT, D("1.2"), D("64.59947917"))
    assert parse_bybit.position_report(client.parse_position(s.POSITION_FLAT)) is None


async def test_a_trade_execution_from_the_stream(client: Any) -> None:
    trade = client.parse_trade(s.EXECUTION_TRADE_WS)
    assert parse_bybit.is_fill(trade)
    fill = parse_bybit.fill_report(trade, "wd-a1b2c3-0123456789ab-e1")  # no orderLinkId: the known one
    assert (fill.trade_id, fill.exchange_order_id, fill.client_order_id, fill.symbol, fill.side) == (
        "135dbae5-cbed-5275-9290-3956bb2ed907",
        "aee7453a-a100-465f-857a-3db780e9329a",
        "wd-a1b2c3-0123456789ab-e1",
        BTC,
        OrderSide.BUY,
    )
    assert (fill.qty, fill.price, fill.fee, fill.liquidation) == (
        D("0.001"),
        D("123498"),
        D("0.0679239"),
        False,
    )
    assert fill.at == datetime.fromtimestamp(1757837580.469, tz=UTC)
    own = parse_bybit.fill_report(
        client.parse_trade({**s.EXECUTION_TRADE_WS, "orderLinkId": "wd-x-e1"}), "other"
    )
    assert own.client_order_id == "wd-x-e1"  # the execution's own orderLinkId wins


async def test_a_funding_payment_is_not_a_fill(client: Any) -> None:
    """The recorded execution list carries Funding rows with a quantity: they must not move a position."""
    funding = client.parse_trade(s.EXECUTION_FUNDING)
    assert funding["amount"] == 1.2  # ccxt reads it as a trade
    assert not parse_bybit.is_fill(funding)


@pytest.mark.parametrize(
    ("exec_type", "create_type"), [("BustTrade", "CreateByLiq"), ("AdlTrade", "CreateByAdl_PassThrough")]
)
async def test_forced_executions_are_fills_marked_as_liquidation(
    client: Any, exec_type: str, create_type: str
) -> None:
    trade = client.parse_trade({**s.EXECUTION_TRADE_WS, "execType": exec_type, "createType": create_type})
    assert parse_bybit.is_fill(trade)
    assert parse_bybit.fill_report(trade).liquidation


async def test_the_mark_price_of_a_ticker_and_of_a_delta_merged_into_it(client: Any) -> None:
    ticker = client.parse_ticker(s.TICKER_SNAPSHOT)
    mark = parse_bybit.mark_price(ticker)
    assert mark is not None
    assert (mark.symbol, mark.price) == (BTC, D("63958.60"))
    merged = client.parse_ticker({**s.TICKER_SNAPSHOT, **s.TICKER_DELTA})  # what ccxt does with a delta
    again = parse_bybit.mark_price(merged)
    assert again is not None and again.price == D("63958.60")  # the delta moved the index, not the mark
    assert parse_bybit.mark_price({"symbol": None, "info": {}}) is None
