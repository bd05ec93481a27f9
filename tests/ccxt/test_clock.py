"""The host's clock against the exchange's, in the ccxt adapters: a request refused for its timestamp
(-1021 on Binance, retCode 10002 on Bybit: refused before processing) makes the adapter measure the
difference again (ccxt's load_time_difference) and send it once more; a large difference is a
warning, logged once. The ccxt client is an unmodified offline one with the network calls stubbed."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import pytest

import ccxt
from tests.helpers import eventually
from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange
from warden.adapters.ccxt.config import bybit_config
from warden.domain.reports import OrderRequest
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol
from warden.ports import ExchangeUnavailable, OrderRejected, ReportsWarnings

from .samples import PLAIN_ORDER_FILLED, ccxt_order, offline

BTC = Symbol("BTC/USDT:USDT")
TOO_OLD = 'binanceusdm {"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}'
BYBIT_TOO_OLD = (
    'bybit {"retCode":10002,"retMsg":"invalid request, please check your server timestamp or recv_window'
    ' param","result":{},"retExtInfo":{},"time":1}'
)
ENTRY = OrderRequest(
    ClientOrderId("wd-p1-e1"), BTC, OrderSide.BUY, OrderType.MARKET, Decimal("0.001"), None, False
)


class Stubbed:
    """Records every network call of an offline ccxt client; `answers[name]` are given in turn
    (an exception is raised), the last one repeated."""

    def __init__(self, client: Any, answers: dict[str, list[Any]], difference: int = 2500) -> None:
        self.calls: list[str] = []
        self.answers = answers
        self.difference = difference
        client.load_time_difference = self.load_time_difference
        for name in answers:
            setattr(client, name, self._stub(name))

    def _stub(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            await asyncio.sleep(0)  # a real call yields: concurrent callers interleave
            queue = self.answers[name]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call

    async def load_time_difference(self, params: Any = None) -> int:
        self.calls.append("time")
        await asyncio.sleep(0)
        return self.difference


def binance(answers: dict[str, list[Any]], difference: int = 2500) -> tuple[CcxtExchange, Stubbed]:
    client = offline()
    return CcxtExchange(client), Stubbed(client, answers, difference)


async def test_an_order_refused_for_its_timestamp_is_sent_again_after_measuring_the_clock() -> None:
    exchange, stub = binance({"create_order": [ccxt.InvalidNonce(TOO_OLD), ccxt_order(PLAIN_ORDER_FILLED)]})
    shown: dict[str, str] = {}
    assert isinstance(exchange, ReportsWarnings)
    exchange.report_warnings(lambda key, text: shown.update({key: text}) if text else shown.pop(key, None))
    try:
        report = await exchange.place_order(ENTRY)
    finally:
        await exchange.close()
    assert stub.calls == ["create_order", "time", "create_order"]
    assert report.exchange_order_id == str(PLAIN_ORDER_FILLED["orderId"])
    assert exchange.clock_difference_ms == 2500
    assert list(shown) == ["clock"] and "2.5 s ahead of binance" in shown["clock"]


async def test_a_second_refusal_is_not_sent_a_third_time() -> None:
    exchange, stub = binance({"create_order": [ccxt.InvalidNonce(TOO_OLD)]})
    try:
        with pytest.raises(ExchangeUnavailable, match="-1021"):
            await exchange.place_order(ENTRY)
    finally:
        await exchange.close()
    assert stub.calls == ["create_order", "time", "create_order"]


@pytest.mark.parametrize(
    ("error", "port_error"),
    [
        (ccxt.InsufficientFunds('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'), OrderRejected),
        (ccxt.RateLimitExceeded('binanceusdm {"code":-1003,"msg":"Too many requests"}'), ExchangeUnavailable),
        (
            ccxt.InvalidOrder('binanceusdm {"code":-5028,"msg":"outside the ME recvWindow"}'),
            ExchangeUnavailable,
        ),
    ],
)
async def test_other_refusals_measure_nothing_and_are_not_sent_again(
    error: Exception, port_error: type[Exception]
) -> None:
    exchange, stub = binance({"create_order": [error]})
    try:
        with pytest.raises(port_error):
            await exchange.place_order(ENTRY)
    finally:
        await exchange.close()
    assert stub.calls == ["create_order"]
    assert exchange.clock_difference_ms is None


async def test_refusals_that_arrive_together_measure_the_clock_once() -> None:
    refused = ccxt.InvalidNonce(TOO_OLD)
    exchange, stub = binance({"fetch_positions": [refused, refused, []]})
    try:
        first, second = await asyncio.gather(exchange.fetch_positions(), exchange.fetch_positions())
    finally:
        await exchange.close()
    assert (first, second) == ([], [])
    assert stub.calls.count("time") == 1
    assert stub.calls.count("fetch_positions") == 4


async def test_bybit_measures_again_on_retcode_10002() -> None:
    client = ccxt.pro.bybit(bybit_config(**CONFIG, keepalive_ms=18_000))
    stub = Stubbed(client, {"fetch_positions": [ccxt.InvalidNonce(BYBIT_TOO_OLD), []]}, difference=-7000)
    exchange = CcxtBybitExchange(client)
    try:
        assert await exchange.fetch_positions() == []
    finally:
        await exchange.close()
    assert stub.calls == ["fetch_positions", "time", "fetch_positions"]
    assert "7.0 s behind bybit" in exchange.warnings["clock"]


CONFIG: dict[str, Any] = {
    "api_key": "k",
    "api_secret": "s",
    "enable_rate_limit": False,
    "timeout_ms": 1000,
    "options": None,
    "session": None,
}


async def test_the_first_instruments_measures_the_clock_before_anything_is_signed() -> None:
    """Before the markets load: ccxt's Bybit load_markets asks a signed endpoint first
    (/v5/asset/coin/query-info), so ccxt's own adjustForTimeDifference would measure too late."""
    exchange, stub = binance(
        {"load_markets": [offline().markets], "fetch_position_mode": [{"hedged": False}]}, difference=-12_000
    )
    try:
        await exchange.instruments()
        await exchange.instruments()
    finally:
        await exchange.close()
    assert stub.calls == ["time", "load_markets", "fetch_position_mode", "load_markets"]
    assert "12.0 s behind binance" in exchange.warnings["clock"]


async def test_a_large_difference_is_a_warning_logged_once_until_it_moves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = CcxtExchange(offline())
    reported: list[tuple[str, str | None]] = []
    exchange.report_warnings(lambda key, text: reported.append((key, text)))
    caplog.set_level(logging.WARNING, logger="warden.adapters.ccxt.adapter")
    try:
        exchange.judge_clock(900)  # within 1 s: nothing to say
        assert (reported, caplog.records) == ([], [])
        exchange.judge_clock(1500)
        exchange.judge_clock(1600)  # the same drift measured again: not logged again
        exchange.judge_clock(1600)
        assert len(caplog.records) == 1 and "1.5 s ahead of binance" in caplog.records[0].getMessage()
        # /status shows the latest measurement (a dict entry, replaced: no spam there either)
        assert [(key, "1.5 s" in (text or ""), "1.6 s" in (text or "")) for key, text in reported] == [
            ("clock", True, False),
            ("clock", False, True),
        ]
        exchange.judge_clock(-1700)  # moved by more than 1 s: logged again
        assert len(caplog.records) == 2 and "1.7 s behind binance" in caplog.records[1].getMessage()
        exchange.judge_clock(-300)  # back in sync: the warning goes
        assert reported[-1] == ("clock", None) and "clock" not in exchange.warnings
        assert "back within 300 ms" in caplog.records[-1].getMessage()
    finally:
        await exchange.close()


async def test_a_warning_standing_before_the_engine_listens_is_reported_at_once() -> None:
    exchange = CcxtExchange(offline())
    try:
        exchange.judge_clock(-4000)
        reported: dict[str, str | None] = {}
        exchange.report_warnings(lambda key, text: reported.update({key: text}))
        assert reported == {"clock": exchange.warnings["clock"]}
    finally:
        await exchange.close()


async def test_a_slow_measurement_does_not_hold_up_what_is_measured_already() -> None:
    """The stream asks `ensure_clock` before every watch. Once the clock was measured, a
    measurement again (a refusal during a burst, the time endpoint slow because the venue is)
    must not make the stream wait for it: fills and order updates would stop for as long as the
    time endpoint takes (up to the request timeout)."""
    exchange = CcxtExchange(offline())
    release = asyncio.Event()
    measured: list[str] = []

    async def slow_time(params: Any = None) -> int:
        measured.append("time")
        if len(measured) > 1:
            await release.wait()  # the venue's time endpoint hangs
        return 2500

    exchange.client.load_time_difference = slow_time
    try:
        await exchange.ensure_clock()  # at start
        again = asyncio.ensure_future(exchange.measure_clock())  # a refusal: measure again
        await eventually(lambda: len(measured) == 2, what="the second measurement under way")
        async with asyncio.timeout(2.0):
            await exchange.ensure_clock()  # the stream's next watch
        assert not again.done()
        release.set()
        await again
    finally:
        release.set()
        await exchange.close()
