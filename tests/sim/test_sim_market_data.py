"""The Binance face's market data for any ccxt bot: candles and books from the simulator's own
marks, funding and income, and empty answers for the families warden does not simulate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from warden.adapters.sim import SimCore
from warden.adapters.sim.server.history import MarkHistory, open_times
from warden.adapters.sim.server.shapes import ms

from .builders import BTC, BUY, T0, ManualTime, market
from .server_client import RawClient, raw_server

D = Decimal
MINUTE = 60_000
START = ms(T0)  # a minute (and 8-hour) boundary


def test_candles_aggregate_the_recorded_marks_and_fill_gaps_flat() -> None:
    core = SimCore(seed=1)
    core.place(market("e1", BUY, "0.01"), T0)  # a trade in the first minute: its volume
    history = MarkHistory()
    for offset_s, price in ((0, "65000"), (10, "65100"), (20, "64900"), (70, "65050")):
        history.record(BTC, D(price), START + offset_s * 1000)
    core.set_mark(BTC, D("65050"), T0)
    minute = history.candles(
        core, BTC, MINUTE, [START - MINUTE, START, START + MINUTE], now_ms=START + 75_000
    )
    flat, first, second = ((c.open, c.high, c.low, c.close) for c in minute)
    assert flat == (D(65000),) * 4  # before the history starts: flat at the first known price
    assert first == (D(65000), D(65100), D(64900), D(64900))
    assert second == (D(65050),) * 4
    assert (minute[1].volume, minute[1].quote_volume, minute[1].trades) == (D("0.01"), D("650"), 1)
    [five] = history.candles(core, BTC, 5 * MINUTE, [START], now_ms=START + 75_000)
    assert (five.open, five.high, five.low, five.close) == (D(65000), D(65100), D(64900), D(65050))
    [later] = history.candles(core, BTC, MINUTE, [START + 10 * MINUTE], now_ms=START + 75_000)
    assert later.close == D(65050)  # no marks since: the last close carries on


def test_open_times_follow_binance_windows() -> None:
    now = START + 5 * MINUTE + 30_000
    assert open_times(MINUTE, now, None, None, 3) == [
        START + 3 * MINUTE,
        START + 4 * MINUTE,
        START + 5 * MINUTE,
    ]
    assert open_times(MINUTE, now, START + 1, None, 2) == [
        START + MINUTE,
        START + 2 * MINUTE,
    ]  # openTime >= start
    assert open_times(MINUTE, now, START, START + 2 * MINUTE, 100) == [
        START,
        START + MINUTE,
        START + 2 * MINUTE,
    ]


@pytest.fixture
async def raw() -> AsyncIterator[RawClient]:
    async with raw_server(now=ManualTime()) as client:
        yield client


async def public(raw: RawClient, path: str, **params: Any) -> Any:
    status, body = await raw.call("GET", path, params, signed=False, key=None)
    assert status == 200, body
    return body


async def test_book_and_book_ticker_are_a_tick_either_side_of_the_mark(raw: RawClient) -> None:
    book = await public(raw, "/fapi/v1/depth", symbol="BTCUSDT", limit=5)
    assert [b[0] for b in book["bids"]] == ["64999.9", "64999.8", "64999.7", "64999.6", "64999.5"]
    assert [a[0] for a in book["asks"]] == ["65000.1", "65000.2", "65000.3", "65000.4", "65000.5"]
    assert {q for _, q in book["bids"] + book["asks"]} == {"0.01"}
    top = await public(raw, "/fapi/v1/ticker/bookTicker", symbol="BTCUSDT")
    assert (top["bidPrice"], top["askPrice"]) == ("64999.9", "65000.1")
    assert len(await public(raw, "/fapi/v1/ticker/bookTicker")) == 3
    status, refused = await raw.call("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 7}, signed=False)
    assert (status, refused["code"]) == (400, -1130)


async def test_klines_and_their_mark_index_and_premium_variants(raw: RawClient) -> None:
    await raw.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "65100"})
    candles = await public(raw, "/fapi/v1/klines", symbol="BTCUSDT", interval="5m", limit=3)
    assert len(candles) == 3
    opened, high, low, close = candles[-1][1:5]
    assert (high, close) == ("65100", "65100") and D(low) <= D(opened)
    assert candles[-1][0] == START and candles[-1][6] == START + 5 * MINUTE - 1
    assert [c[0] for c in candles] == [START - 10 * MINUTE, START - 5 * MINUTE, START]
    mark = await public(raw, "/fapi/v1/markPriceKlines", symbol="BTCUSDT", interval="5m", limit=3)
    index = await public(raw, "/fapi/v1/indexPriceKlines", pair="BTCUSDT", interval="5m", limit=3)
    assert [c[1:5] for c in mark] == [c[1:5] for c in candles] == [c[1:5] for c in index]
    premium = await public(raw, "/fapi/v1/premiumIndexKlines", symbol="BTCUSDT", interval="1h", limit=2)
    assert {v for c in premium for v in c[1:5]} == {"0"}
    status, refused = await raw.call(
        "GET", "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "7m"}, signed=False
    )
    assert (status, refused["code"]) == (400, -1120)


async def test_funding_is_zero_every_eight_hours_and_income_is_the_commissions(raw: RawClient) -> None:
    rates = await public(raw, "/fapi/v1/fundingRate", symbol="BTCUSDT", limit=3)
    assert [r["fundingTime"] for r in rates] == [START - 16 * 3600_000, START - 8 * 3600_000, START]
    assert {r["fundingRate"] for r in rates} == {"0.00000000"}
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
    status, _ = await raw.call("POST", "/fapi/v1/order", order, timestamp=START)  # the server's clock
    assert status == 200
    status, income = await raw.call("GET", "/fapi/v1/income", {"symbol": "BTCUSDT"}, timestamp=START)
    assert status == 200
    assert [(i["incomeType"], i["income"], i["asset"]) for i in income] == [("COMMISSION", "-0.26", "USDT")]
    status, funding = await raw.call("GET", "/fapi/v1/income", {"incomeType": "FUNDING_FEE"}, timestamp=START)
    assert (status, funding) == (200, [])


async def test_the_families_warden_does_not_simulate_answer_empty(raw: RawClient) -> None:
    assert (await public(raw, "/api/v3/exchangeInfo"))["symbols"] == []
    assert (await public(raw, "/dapi/v1/exchangeInfo"))["symbols"] == []
    assert await raw.call("GET", "/sapi/v1/capital/config/getall", timestamp=START) == (200, [])
    assert await raw.call("GET", "/sapi/v1/margin/allPairs", signed=False) == (200, [])
    assert await raw.call("GET", "/fapi/v1/multiAssetsMargin", timestamp=START) == (
        200,
        {"multiAssetsMargin": False},
    )
