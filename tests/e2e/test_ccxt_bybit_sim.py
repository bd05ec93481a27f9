"""UNMODIFIED ccxt 4.5.90 (`ccxt.pro.bybit`, via CcxtBybitExchange) against the simulator's Bybit face."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

import ccxt
from tests.helpers import eventually
from warden.adapters.ccxt import CcxtBybitExchange, all_urls
from warden.adapters.sim.core import SimCore
from warden.adapters.sim.markets import SimMarket, default_markets
from warden.adapters.sim.server import create_server_app, running_app
from warden.adapters.sim.server.bybit import ws as bybit_ws
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, StreamGap
from warden.domain.values import Instrument, OrderSide, OrderType, Side, Symbol
from warden.ports import Exchange, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

from .conftest import BybitSim
from .flows import BTC, D, Events, conditional, market

BUY, SELL = OrderSide.BUY, OrderSide.SELL
STOP, TP = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET
CID = "wd-a1b2c3-0123456789ab"  # warden's ids: installation, position, then the role and seq


def as_port(exchange: CcxtBybitExchange) -> Exchange:
    """Type-checked proof that the adapter satisfies the port."""
    return exchange


async def streaming(sim: BybitSim, exchange: CcxtBybitExchange) -> Events:
    """Consume the stream and wait (polling the server) until the private topics and tickers are up."""
    events = Events(as_port(exchange).stream())
    await eventually(
        lambda: any({"order", "execution"} <= s.topics for s in sim.bybit.sessions.values()),
        what="the private subscriptions",
    )
    await eventually(lambda: any(s.streams for s in sim.bybit.market), what="the ticker subscription")
    return events


def sent(sim: BybitSim, path: str) -> list[dict[str, object]]:
    """The JSON bodies POSTed to `path`."""
    return [json.loads(r["query"]) for r in sim.venue.requests if r["path"] == path and r["method"] == "POST"]


async def test_markets_and_the_one_way_mode_at_start(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    # Bybit's documented cap on resting conditional orders per symbol, which its server enforces.
    capped = {s: replace(i, max_conditional=10) for s, i in bybit_sim.venue.core.instruments.items()}
    assert await bybit_exchange.instruments() == capped
    assert await bybit_exchange.mark_price(BTC) == D("65000")
    [mode] = sent(bybit_sim, "/v5/position/switch-mode")
    assert (mode["mode"], mode["category"]) == (0, "linear")
    notes = [r.get("note", "") for r in bybit_sim.venue.requests if r["path"] == "/v5/position/switch-mode"]
    assert notes == ["110025 Position mode is not modified"]  # already one-way: not an error
    await bybit_exchange.instruments()
    assert len(sent(bybit_sim, "/v5/position/switch-mode")) == 1  # once per adapter


async def test_every_market_listed_is_one_whose_positions_and_orders_are_seen() -> None:
    """Bybit also lists USDC-settled linear perpetuals (BTC/USDC:USDC, ...), but the position and
    open-order lists ccxt asks for without a symbol are USDT-settled only (settleCoin=USDT), and
    one-way mode is set for USDT only. A market warden may trade must be one whose positions and
    stops it can see: a USDC perpetual traded on a signal was invisible to reconciliation (a
    position taken for a ghost, its stop for missing)."""
    usdc = SimMarket(Instrument(Symbol("ETH/USDC:USDC"), D("0.01"), D("0.001"), D("0.001"), D(5)), D(3000))
    app = create_server_app(
        SimCore([*default_markets(), usdc]), venue="bybit", price_interval=None, push_interval=0.05
    )
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        sim = BybitSim(app, base, session)
        adapter = sim.bybit_exchange()
        try:
            listed = await adapter.instruments()
            for symbol, instrument in sorted(listed.items()):
                order = {"symbol": symbol, "side": "buy", "qty": str(instrument.min_qty * 10)}
                await sim.control("POST", "/sim/external-order", order)
                await sim.control(
                    "POST",
                    "/sim/external-order",
                    {
                        **order,
                        "side": "sell",
                        "reduce_only": True,
                        "type": "stop_market",
                        "trigger_price": str(instrument.round_price(sim.venue.core.mark(symbol) / 2)),
                    },
                )
            assert {p.symbol for p in await adapter.fetch_positions()} == set(listed)
            assert {o.symbol for o in await adapter.fetch_open_orders()} == set(listed)
        finally:
            await adapter.close()


async def test_configured_leverage_and_margin_mode_are_applied(bybit_sim: BybitSim) -> None:
    adapter = bybit_sim.bybit_exchange(leverage=20, margin_mode="isolated")
    try:
        await adapter.instruments()
    finally:
        await adapter.close()
    core = bybit_sim.venue.core
    assert {core.margin_mode(s) for s in core.instruments} == {"isolated"}
    leverage = [
        r.get("note", "") for r in bybit_sim.venue.requests if r["path"] == "/v5/position/set-leverage"
    ]
    assert leverage == ["110043 Set leverage not modified"] * 3  # 20 is the default: fine


async def test_a_margin_mode_the_exchange_refuses_at_start_does_not_stop_the_start(
    bybit_sim: BybitSim,
) -> None:
    """A unified account's margin mode is account-wide, and Bybit refuses to switch it while a symbol
    has a position or open orders (110073). At start (`instruments()`, the engine's first call)
    that refusal must not fail the start (it would be retried forever, and nothing recovered or
    protected): the mode is left as it is (the engine's margin check alerts margin_mismatch) and
    the leverage is still set."""
    await bybit_sim.control(
        "POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "buy", "qty": "0.01"}
    )
    adapter = bybit_sim.bybit_exchange(leverage=5, margin_mode="isolated")
    try:
        assert BTC in await adapter.instruments()
    finally:
        await adapter.close()
    core = bybit_sim.venue.core
    notes = [
        r.get("note", "") for r in bybit_sim.venue.requests if r["path"] == "/v5/account/set-margin-mode"
    ]
    assert [n.split()[0] for n in notes] == ["110073"]  # refused, as on Bybit: it was asked
    assert {core.margin_mode(s) for s in core.instruments} == {"cross"}  # left as it is
    assert {core.leverage(s) for s in core.instruments} == {5}


async def test_a_market_orders_ids_only_answer_is_confirmed_by_one_lookup(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    """The create answer carries ids only; one lookup right after it finds the market order filled."""
    report = await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
    assert (report.client_order_id, report.status, report.filled_qty, report.avg_price, report.qty) == (
        f"{CID}-e1",
        OrderStatus.FILLED,
        D("0.01"),
        D("65000"),
        D("0.01"),
    )
    [body] = sent(bybit_sim, "/v5/order/create")
    assert (body["orderLinkId"], body["positionIdx"], body["orderType"], body["qty"]) == (
        f"{CID}-e1",
        0,
        "Market",
        "0.01",
    )
    after = [r for r in bybit_sim.venue.requests if r["path"] != "/v5/order/create"][-1]
    assert after["path"] == "/v5/order/realtime" and f"orderLinkId={CID}-e1" in after["query"]
    [position] = await bybit_exchange.fetch_positions()
    assert (position.symbol, position.side, position.qty, position.entry_price) == (
        BTC,
        Side.LONG,
        D("0.01"),
        D("65000"),
    )
    [fill] = await bybit_exchange.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
    assert (fill.client_order_id, fill.qty, fill.price, fill.fee, fill.exchange_order_id) == (
        f"{CID}-e1",
        D("0.01"),
        D("65000"),
        D("0.26"),
        report.exchange_order_id,
    )


async def test_a_market_order_not_filled_yet_is_working_and_the_lookup_tells_the_rest(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    """Acknowledged, not filled (ack_only_if): the answer stands, OPEN and unfilled; later lookups
    and the execution list show the fill."""
    await bybit_sim.control("POST", "/sim/faults", {"ack_only_if": "*-e1", "fill_delay": 0.3})
    report = await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
    assert (report.status, report.filled_qty, report.avg_price) == (OrderStatus.OPEN, D(0), None)
    await eventually(lambda: bool(bybit_sim.venue.core.fills(BTC)), what="the delayed fill")
    found = await bybit_exchange.fetch_order(BTC, f"{CID}-e1", conditional=False)
    assert (found.status, found.filled_qty, found.exchange_order_id) == (
        OrderStatus.FILLED,
        D("0.01"),
        report.exchange_order_id,
    )
    [fill] = await bybit_exchange.fetch_fills(BTC, None)
    assert (fill.client_order_id, fill.qty) == (f"{CID}-e1", D("0.01"))


async def test_stops_and_take_profits_are_conditional_market_orders_on_the_mark(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.02"))
    stop = await bybit_exchange.place_order(conditional(f"{CID}-s1", STOP, "0.02", "64000"))
    tp = await bybit_exchange.place_order(conditional(f"{CID}-a1", TP, "0.01", "66000"))
    assert (tp.type, tp.trigger_price, tp.qty) == (TP, D("66000"), D("0.01"))
    assert (stop.type, stop.status, stop.trigger_price, stop.reduce_only) == (
        STOP,
        OrderStatus.OPEN,
        D("64000"),
        True,
    )
    _, stop_body, tp_body = sent(bybit_sim, "/v5/order/create")
    assert (stop_body["triggerPrice"], stop_body["triggerDirection"], stop_body["triggerBy"]) == (
        "64000",
        2,
        "MarkPrice",
    )
    assert (stop_body["reduceOnly"], stop_body["closeOnTrigger"], stop_body["qty"]) == (True, True, "0.02")
    assert (tp_body["triggerDirection"], tp_body["reduceOnly"], tp_body["qty"]) == (1, True, "0.01")
    assert "closeOnTrigger" not in tp_body
    assert not any(r["path"] == "/v5/position/trading-stop" for r in bybit_sim.venue.requests)

    reports = await bybit_exchange.fetch_open_orders()
    assert sorted((o.client_order_id, o.type) for o in reports) == [(f"{CID}-a1", TP), (f"{CID}-s1", STOP)]
    assert (await bybit_exchange.fetch_order(BTC, f"{CID}-s1", conditional=True)).status is OrderStatus.OPEN
    with pytest.raises(OrderNotFound):
        await bybit_exchange.fetch_order(BTC, f"{CID}-s1", conditional=False)  # the filter keeps kinds apart
    lookups = [r["query"] for r in bybit_sim.venue.requests if r["path"] == "/v5/order/realtime"]
    assert any("orderFilter=StopOrder" in q for q in lookups) and any(
        "orderFilter=Order" in q for q in lookups
    )

    canceled = await bybit_exchange.cancel_order(BTC, f"{CID}-a1", conditional=True)
    assert (canceled.client_order_id, canceled.status, canceled.type) == (
        f"{CID}-a1",
        OrderStatus.CANCELED,
        TP,
    )
    assert [o.client_order_id for o in await bybit_exchange.fetch_open_orders()] == [f"{CID}-s1"]
    with pytest.raises(OrderNotFound):
        await bybit_exchange.cancel_order(BTC, f"{CID}-a1", conditional=True)


async def test_a_fired_stop_fills_under_its_own_link_id_on_the_stream_and_over_rest(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    events = await streaming(bybit_sim, bybit_exchange)
    try:
        await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
        entry = await events.wait_for(
            lambda e: isinstance(e, FillReport) and e.client_order_id == f"{CID}-e1"
        )
        assert isinstance(entry, FillReport)
        assert (entry.qty, entry.price) == (D("0.01"), D("65000"))
        await bybit_exchange.place_order(conditional(f"{CID}-s1", STOP, "0.01", "64000"))
        await events.wait_for(lambda e: isinstance(e, OrderReport) and e.client_order_id == f"{CID}-s1")
        await bybit_sim.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "63900"})
        fill = await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == f"{CID}-s1")
        assert isinstance(fill, FillReport)
        assert (fill.qty, fill.price, fill.side) == (D("0.01"), D("63900"), SELL)
        done = await events.wait_for(
            lambda e: (
                isinstance(e, OrderReport)
                and e.client_order_id == f"{CID}-s1"
                and e.status is OrderStatus.FILLED
            )
        )
        assert isinstance(done, OrderReport)
        assert (done.type, done.filled_qty, done.avg_price) == (STOP, D("0.01"), D("63900"))
        mark = await events.wait_for(
            lambda e: isinstance(e, MarkPrice) and e.symbol == BTC and e.price == D("63900")
        )
        assert isinstance(mark, MarkPrice)
    finally:
        await events.stop()
    fresh = bybit_sim.bybit_exchange()  # a restarted process knows nothing, and needs nothing
    try:
        fills = await fresh.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
        assert [(f.client_order_id, f.qty) for f in fills] == [
            (f"{CID}-e1", D("0.01")),
            (f"{CID}-s1", D("0.01")),
        ]
        stop = await fresh.fetch_order(BTC, f"{CID}-s1", conditional=True)
        assert (stop.status, stop.filled_qty, stop.avg_price) == (OrderStatus.FILLED, D("0.01"), D("63900"))
        assert await fresh.fetch_positions() == []
    finally:
        await fresh.close()


async def test_refusals_arrive_as_port_errors(bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange) -> None:
    """110093 (trigger crossed), 110072 (orderLinkId used), 110009 (the cap), 110001 (nothing to cancel)."""
    await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.1"))
    await bybit_exchange.place_order(conditional(f"{CID}-s1", STOP, "0.01", "64000"))
    with pytest.raises(OrderRejected, match="110093"):
        await bybit_exchange.place_order(conditional(f"{CID}-s2", STOP, "0.01", "66000"))
    with pytest.raises(OrderRejected, match="110072"):
        await bybit_exchange.place_order(conditional(f"{CID}-s1", STOP, "0.01", "63000"))
    with pytest.raises(OrderRejected, match="110072"):  # single-use, even after the entry filled
        await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
    for n in range(3, 12):
        await bybit_exchange.place_order(conditional(f"{CID}-s{n}", STOP, "0.001", str(60000 + n)))
    with pytest.raises(OrderRejected, match="110009"):
        await bybit_exchange.place_order(conditional(f"{CID}-s99", STOP, "0.001", "59000"))
    with pytest.raises(OrderNotFound):
        await bybit_exchange.cancel_order(BTC, "wd-a1b2c3-999999999999-s1", conditional=True)


async def test_what_ccxt_would_round_is_refused_before_sending(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    await bybit_exchange.instruments()
    before = len(bybit_sim.venue.requests)
    with pytest.raises(OrderRejected, match="lots"):
        await bybit_exchange.place_order(market(f"{CID}-e2", BUY, "0.0105"))
    with pytest.raises(OrderRejected, match="tick"):
        await bybit_exchange.place_order(conditional(f"{CID}-s1", STOP, "0.01", "64000.05"))
    assert len(bybit_sim.venue.requests) == before


async def test_a_signature_mismatch_is_rejected(bybit_sim: BybitSim) -> None:
    """Wrong secret: 10004. ccxt's load_markets is signed on Bybit (it asks /v5/asset/coin/query-info
    first, with keys), so startup fails as a retryable query and no order is ever sent."""
    wrong = bybit_sim.bybit_exchange(secret="not-the-secret")
    try:
        with pytest.raises(ExchangeUnavailable, match="10004"):
            await wrong.instruments()
        with pytest.raises(ExchangeUnavailable, match="10004"):
            await wrong.fetch_positions()
        with pytest.raises(ExchangeUnavailable, match="10004"):
            await wrong.place_order(market(f"{CID}-e1", BUY, "0.01"))
    finally:
        await wrong.close()
    assert bybit_sim.venue.core.orders() == []
    assert not any(r["path"] == "/v5/order/create" for r in bybit_sim.venue.requests)


async def test_fault_knobs_become_the_right_port_errors(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    await bybit_sim.control("POST", "/sim/faults", {"timeout_after_execution_if": "*-e1"})
    with pytest.raises(ExchangeTimeout):
        await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
    assert (
        await bybit_exchange.fetch_order(BTC, f"{CID}-e1", conditional=False)
    ).status is OrderStatus.FILLED
    await bybit_sim.control(
        "POST", "/sim/faults", {"timeout_after_execution_if": None, "unavailable_if": True}
    )
    with pytest.raises(ExchangeUnavailable):
        await bybit_exchange.place_order(market(f"{CID}-e2", BUY, "0.01"))
    await bybit_sim.control("POST", "/sim/faults", {"unavailable_if": None, "fail_queries": True})
    with pytest.raises(ExchangeUnavailable):
        await bybit_exchange.fetch_open_orders()


async def test_a_dropped_private_stream_yields_a_gap_once_it_is_back(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    events = await streaming(bybit_sim, bybit_exchange)
    try:
        first = next(iter(bybit_sim.venue.private))
        await bybit_sim.control("POST", "/sim/disconnect")
        gap = await events.wait_for(lambda e: isinstance(e, StreamGap))
        assert isinstance(gap, StreamGap)
        assert bybit_sim.venue.private and first not in bybit_sim.venue.private
        await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
        await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == f"{CID}-e1")
        assert sum(isinstance(e, StreamGap) for e in events.seen) == 1
    finally:
        await events.stop()


async def drop_slowly_resubscribed_then_fill(
    sim: BybitSim, exchange: CcxtBybitExchange, events: Events
) -> None:
    """Drop the private socket with Bybit slow (0.3 s) to act on subscriptions: the server must hold
    both private topics when the StreamGap arrives, and a fill after it arrives on the stream."""
    await sim.control("POST", "/sim/faults", {"subscribe_delay": 0.3})
    await sim.control("POST", "/sim/disconnect")
    subscribed_at_gap: list[bool] = []

    def gap_seen(event: object) -> bool:
        if isinstance(event, StreamGap):
            sessions = sim.bybit.sessions.values()
            subscribed_at_gap.append(any({"order", "execution"} <= s.topics for s in sessions))
            return True
        return False

    await events.wait_for(gap_seen)
    assert subscribed_at_gap == [True]
    await exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
    await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == f"{CID}-e1")


async def test_the_gap_waits_for_the_venue_to_confirm_the_new_subscriptions(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    """A reconnected Bybit socket gets no events until its subscriptions take effect. A gap
    announced on the socket's connection alone would let the engine reconcile over REST before
    them: a fill in between would be seen by neither. The gap comes once Bybit acknowledged both
    private subscriptions, so the server holds them when it arrives."""
    events = await streaming(bybit_sim, bybit_exchange)
    try:
        await drop_slowly_resubscribed_then_fill(bybit_sim, bybit_exchange, events)
    finally:
        await events.stop()


@pytest.mark.parametrize("echoed", [None, ""], ids=["omitted", "empty"])
async def test_an_acknowledgement_without_its_req_id_confirms_one_subscription_not_every_one(
    bybit_sim: BybitSim,
    bybit_exchange: CcxtBybitExchange,
    monkeypatch: pytest.MonkeyPatch,
    echoed: str | None,
) -> None:
    """Bybit echoes a subscribe's req_id. Should an answer come without it (or with it empty),
    it still answers one subscription, the socket's oldest unanswered (a socket's commands are
    answered in order). Omitted, it was taken for every subscription the socket sent: with
    `execution` still pending, the gap came before that topic took effect, the very window the
    wait for the confirmations closes. Empty, it was taken for an id no subscription has: the gap
    waited for `reconnect_wait` (30 s)."""
    answer = bybit_ws._private_answer

    def without_req_id(venue: Any, session: Any, command: dict[str, Any]) -> dict[str, Any]:
        reply = answer(venue, session, command)
        if command.get("op") == "subscribe":
            reply.pop("req_id", None)
            if echoed is not None:
                reply["req_id"] = echoed
        return reply

    events = await streaming(bybit_sim, bybit_exchange)
    try:
        monkeypatch.setattr(bybit_ws, "_private_answer", without_req_id)
        await drop_slowly_resubscribed_then_fill(bybit_sim, bybit_exchange, events)
    finally:
        await events.stop()


async def test_a_silent_private_stream_is_detected_reconnected_and_reported(bybit_sim: BybitSim) -> None:
    """The server keeps the socket open but answers nothing: ccxt's keep-alive (two missed pongs)
    declares it dead, the stream reconnects and yields a StreamGap, and fills flow again."""
    adapter = bybit_sim.bybit_exchange(keepalive_ms=200)
    events = await streaming(bybit_sim, adapter)
    try:
        first = next(iter(bybit_sim.venue.private))
        await bybit_sim.control("POST", "/sim/faults", {"stream_silent": True})
        await adapter.place_order(market(f"{CID}-e1", BUY, "0.01"))  # its execution is lost
        await eventually(lambda: first not in bybit_sim.venue.private, timeout=10, what="ccxt to drop it")
        await bybit_sim.control("POST", "/sim/faults", {"stream_silent": False})
        gap = await events.wait_for(lambda e: isinstance(e, StreamGap), timeout=10)
        assert isinstance(gap, StreamGap) and "timed out" in gap.reason
        assert not any(isinstance(e, FillReport) and e.client_order_id == f"{CID}-e1" for e in events.seen)
        await adapter.place_order(market(f"{CID}-e2", BUY, "0.01"))  # the gap: subscribed again
        await events.wait_for(lambda e: isinstance(e, FillReport) and e.client_order_id == f"{CID}-e2")
        # what the gap asks the engine to do: the lost fill is there over REST
        fills = await adapter.fetch_fills(BTC, datetime.now(UTC) - timedelta(minutes=1))
        assert [f.client_order_id for f in fills] == [f"{CID}-e1", f"{CID}-e2"]
    finally:
        await events.stop()
        await adapter.close()


async def test_an_outside_trade_appears_with_its_own_link_id(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    events = await streaming(bybit_sim, bybit_exchange)
    try:
        await bybit_sim.control(
            "POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "sell", "qty": "0.01"}
        )
        fill = await events.wait_for(lambda e: isinstance(e, FillReport))
        assert isinstance(fill, FillReport)
        assert (fill.client_order_id, fill.side) == ("ext-1", SELL)
        [position] = await bybit_exchange.fetch_positions()
        assert (position.side, position.qty) == (Side.SHORT, D("0.01"))
    finally:
        await events.stop()


async def test_bybit_ccxt_never_tried_a_non_local_host(
    bybit_sim: BybitSim, bybit_exchange: CcxtBybitExchange
) -> None:
    """Every URL ccxt holds (api, testnet, demo trading, websockets) and every request it made: 127.0.0.1."""
    events = await streaming(bybit_sim, bybit_exchange)
    try:
        await bybit_exchange.instruments()
        await bybit_exchange.place_order(market(f"{CID}-e1", BUY, "0.01"))
        await bybit_exchange.place_order(conditional(f"{CID}-s1", STOP, "0.01", "64000"))
        await bybit_exchange.fetch_open_orders()
        await bybit_exchange.fetch_fills(BTC, None)
        await bybit_exchange.client.fetch_balance()
        with pytest.raises(ccxt.BaseError):
            await bybit_exchange.client.privateGetV5AssetDepositQueryAddress(
                {"coin": "USDT"}
            )  # unexpected: local
    finally:
        await events.stop()
    urls = bybit_exchange.client.urls
    everything = all_urls(urls["api"]) + all_urls(urls["test"]) + all_urls(urls["demotrading"])
    assert len(everything) > 15
    assert {urlsplit(u).hostname for u in everything} == {"127.0.0.1"}
    assert bybit_exchange.client.hostname == urlsplit(bybit_sim.base).netloc
    assert {urlsplit(u).hostname for u in bybit_sim.urls_seen} == {"127.0.0.1"}
    paths = {urlsplit(u).path for u in bybit_sim.urls_seen}
    assert {"/v5/market/instruments-info", "/v5/order/create", "/v5/public/linear", "/v5/private"} <= paths
    assert any(
        r.get("note") == "UNHANDLED" and r["path"].startswith("/v5/asset/") for r in bybit_sim.venue.requests
    )


def test_without_a_base_url_the_real_exchange_or_its_testnet() -> None:
    real = CcxtBybitExchange.create(api_key="k", api_secret="s")
    testnet = CcxtBybitExchange.create(api_key="k", api_secret="s", testnet=True)
    assert real.client.implode_hostname(real.client.urls["api"]["private"]) == "https://api.bybit.com"
    assert (
        testnet.client.implode_hostname(testnet.client.urls["api"]["private"])
        == "https://api-testnet.bybit.com"
    )
    assert real.client.enableRateLimit is True
    assert real.client.options["enableUnifiedAccount"] is True
    assert real.client.options["fetchMarkets"]["types"] == ["linear"]
