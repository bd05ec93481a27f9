"""UNMODIFIED ccxt 4.5.90 (through CcxtExchange) against the Binance-compatible simulator server."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

import ccxt
from tests.helpers import eventually
from warden.adapters.ccxt import CcxtExchange, all_urls
from warden.adapters.sim.core import SimCore
from warden.adapters.sim.markets import SimMarket, default_markets
from warden.adapters.sim.server import create_server_app, running_app
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, StreamGap
from warden.domain.values import Instrument, OrderSide, OrderType, Side, Symbol
from warden.ports import Exchange, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

from .conftest import Sim
from .flows import BTC, D, Events, conditional, market

BUY, SELL = OrderSide.BUY, OrderSide.SELL
STOP, TP = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET


def as_port(exchange: CcxtExchange) -> Exchange:
    """Type-checked proof that the adapter satisfies the port."""
    return exchange


async def streaming(sim: Sim, exchange: CcxtExchange) -> Events:
    """Start consuming the stream and wait (polling the server) until both sockets are up."""
    events = Events(as_port(exchange).stream())
    await eventually(lambda: bool(sim.venue.private), what="the private socket")
    await eventually(lambda: any(s.streams for s in sim.venue.market), what="the mark subscription")
    return events


def paths(sim: Sim, method: str) -> list[str]:
    return [r["path"] for r in sim.venue.requests if r["method"] == method]


async def test_load_markets_gives_the_simulators_instruments(sim: Sim, exchange: CcxtExchange) -> None:
    # The served venue caps resting conditional orders at 10 per symbol (its MAX_NUM_ALGO_ORDERS).
    capped = {s: replace(i, max_conditional=10) for s, i in sim.venue.core.instruments.items()}
    assert await exchange.instruments() == capped
    assert await exchange.mark_price(BTC) == D("65000")


async def test_market_order_with_client_id_then_position_and_fills(sim: Sim, exchange: CcxtExchange) -> None:
    report = await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
    assert (report.client_order_id, report.status, report.filled_qty, report.avg_price) == (
        "wd-p1-e1",
        OrderStatus.FILLED,
        D("0.01"),
        D("65000"),
    )
    assert await exchange.fetch_order(BTC, "wd-p1-e1", conditional=False) == report
    [position] = await exchange.fetch_positions()
    assert (position.symbol, position.side, position.qty, position.entry_price) == (
        BTC,
        Side.LONG,
        D("0.01"),
        D("65000"),
    )
    [fill] = await exchange.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
    assert (fill.client_order_id, fill.qty, fill.price, fill.fee) == (
        "wd-p1-e1",
        D("0.01"),
        D("65000"),
        D("0.26"),
    )
    sent = next(r for r in sim.venue.requests if r["path"] == "/fapi/v1/order" and r["method"] == "POST")
    assert "newClientOrderId=wd-p1-e1" in sent["query"]


async def test_stop_and_take_profit_go_through_the_algo_endpoint(sim: Sim, exchange: CcxtExchange) -> None:
    """Conditional orders POST to /fapi/v1/algoOrder; fetch/cancel need the trigger flag; lists merge both."""
    await exchange.place_order(market("wd-p1-e1", BUY, "0.02"))
    stop = await exchange.place_order(conditional("wd-p1-s1", STOP, "0.02", "64000"))
    tp = await exchange.place_order(conditional("wd-p1-a1", TP, "0.01", "66000"))
    assert (stop.type, stop.status, stop.trigger_price, stop.reduce_only) == (
        STOP,
        OrderStatus.OPEN,
        D("64000"),
        True,
    )
    assert (tp.type, tp.trigger_price) == (TP, D("66000"))
    assert paths(sim, "POST").count("/fapi/v1/algoOrder") == 2
    assert paths(sim, "POST").count("/fapi/v1/order") == 1
    algo = [r["query"] for r in sim.venue.requests if r["path"] == "/fapi/v1/algoOrder"]
    assert all("workingType=MARK_PRICE" in q and "algoType=CONDITIONAL" in q for q in algo)
    assert "clientAlgoId=wd-p1-s1" in algo[0]
    assert "type=STOP_MARKET" in algo[0]
    assert "type=TAKE_PROFIT_MARKET" in algo[1]

    assert [o.client_order_id for o in await exchange.fetch_open_orders()] == ["wd-p1-s1", "wd-p1-a1"]
    assert {"/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders"} <= set(paths(sim, "GET"))
    assert (await exchange.fetch_order(BTC, "wd-p1-s1", conditional=True)).status is OrderStatus.OPEN
    with pytest.raises(OrderNotFound):
        await exchange.fetch_order(BTC, "wd-p1-s1", conditional=False)  # not on the plain endpoint

    canceled = await exchange.cancel_order(BTC, "wd-p1-a1", conditional=True)
    assert (canceled.client_order_id, canceled.status, canceled.type) == (
        "wd-p1-a1",
        OrderStatus.CANCELED,
        TP,
    )
    assert "/fapi/v1/algoOrder" in paths(sim, "DELETE")
    assert [o.client_order_id for o in await exchange.fetch_open_orders()] == ["wd-p1-s1"]
    with pytest.raises(OrderNotFound):
        await exchange.cancel_order(BTC, "wd-p1-a1", conditional=True)


async def test_stream_delivers_fills_order_updates_and_marks(sim: Sim, exchange: CcxtExchange) -> None:
    events = await streaming(sim, exchange)
    try:
        await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
        entry = await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-p1-e1")
        assert isinstance(entry, FillReport)
        assert (entry.qty, entry.price) == (D("0.01"), D("65000"))
        await exchange.place_order(conditional("wd-p1-s1", STOP, "0.01", "64000"))
        await events.wait_for(lambda e: isinstance(e, OrderReport) and e.client_order_id == "wd-p1-s1")

        await sim.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "63900"})
        fill = await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-p1-s1")
        assert isinstance(fill, FillReport)
        assert (fill.qty, fill.price, fill.side) == (
            D("0.01"),
            D("63900"),
            SELL,
        )  # a child order, mapped back
        done = await events.wait_for(
            lambda e: (
                isinstance(e, OrderReport)
                and e.client_order_id == "wd-p1-s1"
                and e.status is OrderStatus.FILLED
            )
        )
        assert isinstance(done, OrderReport)
        assert (done.type, done.filled_qty, done.avg_price) == (STOP, D("0.01"), D("63900"))
        mark = await events.wait_for(
            lambda e: isinstance(e, MarkPrice) and e.symbol == BTC and e.price == D("63900")
        )
        assert isinstance(mark, MarkPrice)
        assert not any(
            isinstance(e, OrderReport) and e.client_order_id.startswith("algo") for e in events.seen
        )
    finally:
        await events.stop()


async def test_rest_attributes_a_fired_stops_fills_even_to_a_fresh_process(
    sim: Sim, exchange: CcxtExchange
) -> None:
    """After a restart the adapter knows nothing: fetch_order and fetch_fills still map the child order."""
    await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
    await exchange.place_order(conditional("wd-p1-s1", STOP, "0.01", "64000"))
    await sim.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "63900"})
    fresh = sim.exchange()
    try:
        fills = await fresh.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
        assert [(f.client_order_id, f.qty) for f in fills] == [
            ("wd-p1-e1", D("0.01")),
            ("wd-p1-s1", D("0.01")),
        ]
        stop = await fresh.fetch_order(BTC, "wd-p1-s1", conditional=True)
        assert (stop.status, stop.filled_qty, stop.avg_price) == (OrderStatus.FILLED, D("0.01"), D("63900"))
        assert await fresh.fetch_positions() == []
    finally:
        await fresh.close()


async def test_refusals_arrive_as_port_errors(sim: Sim, exchange: CcxtExchange) -> None:
    """-2021, -4116 and a cancel of nothing: the linear error table works on a local URL."""
    await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
    await exchange.place_order(conditional("wd-p1-s1", STOP, "0.01", "64000"))
    with pytest.raises(OrderRejected, match="OrderImmediatelyFillable"):
        await exchange.place_order(conditional("wd-p1-s2", STOP, "0.01", "66000"))
    with pytest.raises(OrderRejected, match="-4116"):
        await exchange.place_order(conditional("wd-p1-s1", STOP, "0.01", "63000"))
    with pytest.raises(OrderNotFound):
        await exchange.cancel_order(BTC, "wd-p9-s1", conditional=True)


async def test_what_ccxt_would_round_is_refused_before_sending(sim: Sim, exchange: CcxtExchange) -> None:
    """ccxt truncates 0.0105 to 0.010 and rounds 64000.05 to 64000.1 silently; the adapter refuses both."""
    await exchange.place_order(market("wd-p1-e1", BUY, "0.02"))
    sent = len(sim.venue.requests)
    with pytest.raises(OrderRejected, match="lots"):
        await exchange.place_order(market("wd-p1-e2", BUY, "0.0105"))
    with pytest.raises(OrderRejected, match="tick"):
        await exchange.place_order(conditional("wd-p1-s1", STOP, "0.01", "64000.05"))
    with pytest.raises(OrderRejected):
        await exchange.place_order(market("wd-p1-e3", BUY, "0.0001"))  # below one lot: ccxt's InvalidOrder
    assert len(sim.venue.requests) == sent  # nothing reached the exchange


async def test_a_signature_mismatch_is_rejected(sim: Sim) -> None:
    """Wrong secret: -1022 on the wire, AuthenticationError in ccxt; refused (order), unavailable (query)."""
    wrong = sim.exchange(secret="not-the-secret")
    try:
        with pytest.raises(OrderRejected, match="-1022"):
            await wrong.place_order(market("wd-p1-e1", BUY, "0.01"))
        with pytest.raises(ExchangeUnavailable, match="-1022"):
            await wrong.fetch_positions()
    finally:
        await wrong.close()
    assert sim.venue.core.orders() == []
    assert [r["note"][:5] for r in sim.venue.requests if r["status"] == 400] == ["-1022", "-1022"]


async def test_fault_knobs_become_the_right_port_errors(sim: Sim, exchange: CcxtExchange) -> None:
    """Executed-then-timeout is an unknown outcome the lookup resolves; an outage is retryable."""
    await sim.control("POST", "/sim/faults", {"timeout_after_execution_if": "*-e1"})
    with pytest.raises(ExchangeTimeout):
        await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
    assert (await exchange.fetch_order(BTC, "wd-p1-e1", conditional=False)).status is OrderStatus.FILLED
    await sim.control("POST", "/sim/faults", {"timeout_after_execution_if": None, "unavailable_if": True})
    with pytest.raises(ExchangeUnavailable):
        await exchange.place_order(market("wd-p1-e2", BUY, "0.01"))
    await sim.control("POST", "/sim/faults", {"unavailable_if": None, "fail_queries": True})
    with pytest.raises(ExchangeUnavailable):
        await exchange.fetch_open_orders()


async def test_a_dropped_user_stream_yields_a_gap_once_it_is_back(sim: Sim, exchange: CcxtExchange) -> None:
    """The server drops the private socket; ccxt reconnects; the gap comes after, then events flow again."""
    events = await streaming(sim, exchange)
    try:
        first_socket = next(iter(sim.venue.private))
        await sim.control("POST", "/sim/disconnect")
        gap = await events.wait_for(lambda e: isinstance(e, StreamGap))
        assert isinstance(gap, StreamGap)
        assert sim.venue.private and first_socket not in sim.venue.private  # reconnected before the gap
        await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
        await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-p1-e1")
        assert sum(isinstance(e, StreamGap) for e in events.seen) == 1  # one per outage, not per watcher
    finally:
        await events.stop()


async def test_an_outside_trade_appears_with_its_own_client_id(sim: Sim, exchange: CcxtExchange) -> None:
    events = await streaming(sim, exchange)
    try:
        await sim.control("POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "sell", "qty": "0.01"})
        fill = await events.wait_for(lambda e: isinstance(e, FillReport))
        assert isinstance(fill, FillReport)
        assert (fill.client_order_id, fill.side) == ("ext-1", SELL)
        [position] = await exchange.fetch_positions()
        assert (position.side, position.qty) == (Side.SHORT, D("0.01"))
    finally:
        await events.stop()


async def test_ccxt_never_tried_a_non_local_host(sim: Sim, exchange: CcxtExchange) -> None:
    """Every URL ccxt holds and every request it made (REST and websocket) went to 127.0.0.1."""
    events = await streaming(sim, exchange)
    try:
        await exchange.instruments()
        await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
        await exchange.place_order(conditional("wd-p1-s1", STOP, "0.01", "64000"))
        await exchange.fetch_open_orders()
        await exchange.fetch_fills(BTC, None)
        await exchange.client.fetch_balance()
        with pytest.raises(ccxt.ExchangeError, match="-5000"):
            # an unexpected code path (the wallet's deposit address): logged, local
            await exchange.client.sapiGetCapitalDepositAddress({"coin": "USDT"})
    finally:
        await events.stop()
    urls = exchange.client.urls
    assert {urlsplit(u).hostname for u in all_urls(urls["api"])} == {"127.0.0.1"}
    seen_hosts = {urlsplit(u).hostname for u in sim.urls_seen}
    assert seen_hosts == {"127.0.0.1"}
    kinds = {urlsplit(u).path for u in sim.urls_seen}
    assert {"/fapi/v1/exchangeInfo", "/fapi/v1/algoOrder", "/market/ws/0", "/private/ws"} <= kinds
    assert any(r.get("note") == "UNHANDLED" and r["path"].startswith("/sapi/") for r in sim.venue.requests)


async def test_a_restarted_server_keeps_the_account(tmp_path: Path) -> None:
    """With a state file the simulator itself can restart: orders are still found by client id."""
    state = tmp_path / "sim.json"
    for round_ in (1, 2):
        app = create_server_app(price_interval=None, state_file=state)
        async with running_app(app) as base:
            adapter = CcxtExchange.create(
                api_key="sim-key", api_secret="sim-secret", base_url=base, enable_rate_limit=False
            )
            try:
                if round_ == 1:
                    await adapter.place_order(market("wd-p1-e1", BUY, "0.01"))
                    await adapter.place_order(conditional("wd-p1-s1", STOP, "0.01", "64000"))
                else:
                    assert (
                        await adapter.fetch_order(BTC, "wd-p1-s1", conditional=True)
                    ).status is OrderStatus.OPEN
                    assert [p.qty for p in await adapter.fetch_positions()] == [D("0.01")]
            finally:
                await adapter.close()


async def test_close_ends_the_stream(sim: Sim) -> None:
    """close() stops the watchers and finishes the consumer's iteration (no task left behind)."""
    adapter = sim.exchange()
    events = await streaming(sim, adapter)
    await adapter.close()
    async with asyncio.timeout(5):
        await events.finished()
    await eventually(lambda: not sim.venue.private, what="the private socket to close")


async def test_leverage_and_margin_mode_through_unmodified_ccxt(sim: Sim, exchange: CcxtExchange) -> None:
    """configure_symbol sets leverage and isolated margin (POST /leverage, /marginType); symbol_config
    reads them back (GET /symbolConfig); setting the same mode again is not an error; a position's
    positionRisk shows its isolated margin and liquidation price."""
    from warden.domain.margin import MarginMode, SymbolConfig

    assert await exchange.symbol_config(BTC) == SymbolConfig(20, MarginMode.CROSS)
    await exchange.configure_symbol(BTC, SymbolConfig(5, MarginMode.ISOLATED))
    assert await exchange.symbol_config(BTC) == SymbolConfig(5, MarginMode.ISOLATED)
    await exchange.configure_symbol(BTC, SymbolConfig(5, MarginMode.ISOLATED))  # -4046 is success
    assert sim.venue.core.symbol_config(BTC) == SymbolConfig(5, MarginMode.ISOLATED)
    await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
    with pytest.raises(OrderRejected, match="4048"):
        await exchange.configure_symbol(BTC, SymbolConfig(None, MarginMode.CROSS))
    raw = await exchange.client.fetch_positions_risk([BTC])
    assert raw[0]["marginMode"] == "isolated"
    assert D(str(raw[0]["liquidationPrice"])) == sim.venue.core.liquidation_price(BTC)


def isolated_at_5x(sim: Sim) -> CcxtExchange:
    """The Binance adapter configured for isolated margin at 5x, on the simulator."""
    return CcxtExchange.create(
        api_key="sim-key",
        api_secret="sim-secret",
        base_url=sim.base,
        enable_rate_limit=False,
        margin_mode="isolated",
        leverage=5,
    )


async def test_configured_margin_type_and_leverage_are_applied_for_real(sim: Sim) -> None:
    """isolated means isolated: the simulator switches the symbol (it no longer answers "no need to
    change" to everything but CROSSED), positionRisk shows it, and a second start is a no-op."""
    from warden.domain.margin import MarginMode, SymbolConfig

    for _ in range(2):
        adapter = isolated_at_5x(sim)
        try:
            await adapter.instruments()
            if _ == 1:
                await adapter.place_order(market("wd-p1-e1", BUY, "0.01"))
                [raw] = await adapter.client.fetch_positions()
                # positionRisk v3 carries no leverage (ccxt: None); symbolConfig does
                assert (raw["marginMode"], raw["leverage"]) == ("isolated", None)
                assert await adapter.symbol_config(BTC) == SymbolConfig(5, MarginMode.ISOLATED)
        finally:
            await adapter.close()
    core = sim.venue.core
    assert {core.margin_mode(s) for s in core.instruments} == {"isolated"}
    assert {core.leverage(s) for s in core.instruments} == {5}
    notes = [r.get("note", "") for r in sim.venue.requests if r["path"] == "/fapi/v1/marginType"]
    assert notes == [""] * 3 + ["-4046 No need to change margin type."] * 3


async def test_a_ccxt_binance_bot_runs_with_nothing_but_url_overrides(sim: Sim) -> None:
    """What a freqtrade-like bot on ccxt's `binance` class (futures, default options, keys) asks
    at start and while trading: every family's markets, currencies, tickers, candles (and the
    mark / index / premium ones), books, funding, income, leverage tiers, multi-assets mode,
    isolated margin for real, a market entry and a stop on the exchange. Nothing is unhandled."""
    import ccxt.pro

    from warden.adapters.ccxt.config import rewrite_urls

    bot = ccxt.pro.binance(
        {
            "apiKey": "sim-key",
            "secret": "sim-secret",
            "options": {"defaultType": "future"},
            "enableRateLimit": False,
        }
    )
    for section in ("api", "test", "demo"):
        rewrite_urls(bot.urls[section], urlsplit(sim.base).netloc)
    pair = "BTC/USDT:USDT"
    try:
        markets = await bot.load_markets()
        assert set(markets) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"}
        assert len(await bot.fetch_tickers()) == 3
        candles = await bot.fetch_ohlcv(pair, "5m", None, 50)
        assert len(candles) == 50 and candles[-1][4] == 65000
        assert len(await bot.fetch_ohlcv(pair, "1h", None, 10, {"price": "mark"})) == 10
        assert len(await bot.fetch_ohlcv(pair, "1h", None, 10, {"price": "index"})) == 10
        assert (await bot.fetch_ohlcv(pair, "1h", None, 10, {"price": "premiumIndex"}))[-1][4] == 0
        book = await bot.fetch_order_book(pair, 5)
        assert book["bids"][0][0] < 65000 < book["asks"][0][0]
        assert (await bot.fetch_bids_asks([pair]))[pair]["ask"] == book["asks"][0][0]
        assert await bot.fetch_funding_rate_history(pair, None, 3)
        assert (await bot.fetch_funding_rate(pair))["markPrice"] == 65000
        assert pair in await bot.fetch_leverage_tiers([pair])
        assert (await bot.fapiPrivateGetMultiAssetsMargin())["multiAssetsMargin"] is False
        await bot.set_margin_mode("isolated", pair)
        await bot.set_leverage(5, pair)
        await bot.create_order(pair, "market", "buy", 0.01)
        await bot.create_order(
            pair, "stop_market", "sell", 0.01, None, {"stopPrice": 60000, "reduceOnly": True}
        )
        [stop] = await bot.fetch_open_orders(pair, None, None, {"trigger": True})
        assert (stop["triggerPrice"], stop["reduceOnly"]) == (60000, True)
        [position] = await bot.fetch_positions([pair])
        assert (position["marginMode"], position["contracts"], position["side"]) == ("isolated", 0.01, "long")
        assert [f["amount"] for f in await bot.fetch_my_trades(pair)] == [0.01]
        assert (await bot.fetch_balance())["USDT"]["total"] == 9999.74
        assert await bot.fetch_funding_history(pair) == []  # the simulator charges no funding
    finally:
        await bot.close()
    unhandled = [r["path"] for r in sim.venue.requests if r.get("note") == "UNHANDLED"]
    assert unhandled == []
    assert {"/sapi/v1/capital/config/getall", "/api/v3/exchangeInfo", "/dapi/v1/exchangeInfo"} <= {
        r["path"] for r in sim.venue.requests
    }


@pytest.mark.parametrize("busy", ["position", "open order"])
async def test_a_margin_mode_the_exchange_refuses_at_start_does_not_stop_the_start(
    sim: Sim, busy: str
) -> None:
    """Binance refuses a margin-type change while the symbol has a position (-4048) or open orders
    (-4047). At start (`instruments()`, the engine's first call) that refusal must not fail the
    start: it was ExchangeUnavailable, so the engine retried its start forever and never recovered
    or protected anything. The symbol is left as it is (the engine's margin check alerts
    margin_mismatch), every other symbol and the leverage are still set."""
    if busy == "position":
        await sim.control("POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "buy", "qty": "0.01"})
    else:
        await sim.control(
            "POST",
            "/sim/external-order",
            {
                "symbol": "BTCUSDT",
                "side": "sell",
                "qty": "0.01",
                "type": "stop_market",
                "trigger_price": "60000",
            },
        )
    adapter = isolated_at_5x(sim)
    try:
        assert BTC in await adapter.instruments()
    finally:
        await adapter.close()
    core = sim.venue.core
    assert core.margin_mode(BTC) == "cross"  # refused: left as it is
    assert {core.margin_mode(s) for s in core.instruments if s != BTC} == {"isolated"}
    assert {core.leverage(s) for s in core.instruments} == {5}


async def test_an_account_in_hedge_mode_is_refused_at_start_before_any_order(sim: Sim) -> None:
    """warden trades one-way positions (positionSide BOTH, as ccxt sends by default). On an account
    in hedge mode (dualSidePosition true) Binance refuses every such order (-4061 "Order's position
    side does not match user's setting", ccxt's own table): warden started as if ready and the
    trader learned of it from the first entry refused, a signal lost, and again on every signal.
    The start now reads the position mode (GET /fapi/v1/positionSide/dual) and fails, saying so,
    before anything is sent."""
    adapter = sim.exchange()
    try:
        await adapter.client.set_position_mode(True)  # the trader's own switch, through ccxt
        assert sim.venue.core.hedge_mode
        with pytest.raises(OrderRejected, match="-4061"):
            await adapter.place_order(market("wd-p1-e1", BUY, "0.01"))  # what the real venue does
        with pytest.raises(OrderRejected, match="hedge mode"):
            await adapter.instruments()
        assert "/fapi/v1/positionSide/dual" in paths(sim, "GET")
        await adapter.client.set_position_mode(False)
        assert BTC in await adapter.instruments()  # one-way again: the start goes on
    finally:
        await adapter.close()


async def test_fees_paid_in_bnb_count_at_their_usdt_value() -> None:
    """An account that pays its fees in BNB (Binance's fee discount) gets each fee in BNB:
    `commission` 0.00043333 with `commissionAsset` BNB (userTrades; `n` / `N` on the stream).
    warden took the number for USDT, so a 0.26 USDT fee counted as 0.00043 and the realized PnL
    net of fees, which the daily-loss pause reads, left the fees out. Fees in another asset are
    now valued at that asset's mark against the settle currency (BNB/USDT:USDT)."""
    bnb = SimMarket(Instrument(Symbol("BNB/USDT:USDT"), D("0.01"), D("0.01"), D("0.01"), D(5)), D(600))
    core = SimCore([*default_markets(), bnb])
    core.fee_asset = Symbol("BNB/USDT:USDT")
    app = create_server_app(core, price_interval=None, push_interval=0.05)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        sim = Sim(app, base, session)
        adapter = sim.exchange()
        events = await streaming(sim, adapter)
        try:
            await adapter.place_order(market("wd-p1-e1", BUY, "0.01"))  # 0.26 USDT of fees
            streamed = await events.wait_for(
                lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-p1-e1"
            )
            [queried] = await adapter.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
            await adapter.place_order(market("wd-p1-e2", BUY, "0.01"))
            again = await events.wait_for(
                lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-p1-e2"
            )
        finally:
            await adapter.close()
        assert "/fapi/v1/userTrades" in paths(sim, "GET")
        # the rate is read once, not once per fill: a stream fill does not wait on a REST read
        assert paths(sim, "GET").count("/fapi/v1/premiumIndex") == 1, paths(sim, "GET")
    assert isinstance(streamed, FillReport) and isinstance(again, FillReport)
    for fill in (streamed, queried, again):
        assert abs(fill.fee - D("0.26")) < D("0.0001"), fill.fee
