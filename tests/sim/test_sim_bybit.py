"""The Bybit v5 face on the wire: signing, the retCode envelope, orders, the conditional cap,
orderLinkId uniqueness, queries with cursors, account settings, both websockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.helpers import eventually
from warden.adapters.sim.server import VENUE
from warden.adapters.sim.server.bybit.auth import sign
from warden.adapters.sim.server.bybit.venue import BybitVenue

from .builders import FakeClock
from .bybit_client import KEY, SECRET, BybitClient, bybit_server

LINEAR = {"category": "linear"}


@pytest.fixture
async def bybit() -> AsyncIterator[BybitClient]:
    async with bybit_server() as client:
        yield client


def venue(client: BybitClient) -> BybitVenue:
    face = client.app[VENUE]
    assert isinstance(face, BybitVenue)
    return face


async def market(client: BybitClient, link: str, side: str = "Buy", qty: str = "0.01", **extra: Any) -> Any:
    body = {
        **LINEAR,
        "symbol": "BTCUSDT",
        "side": side,
        "orderType": "Market",
        "qty": qty,
        "orderLinkId": link,
    }
    return await client.post("/v5/order/create", {**body, **extra})


async def conditional(
    client: BybitClient, link: str, trigger: str, *, side: str = "Sell", direction: int = 2, qty: str = "0.01"
) -> Any:
    body = {
        **LINEAR,
        "symbol": "BTCUSDT",
        "side": side,
        "orderType": "Market",
        "qty": qty,
        "orderLinkId": link,
        "triggerPrice": trigger,
        "triggerDirection": direction,
        "triggerBy": "MarkPrice",
        "reduceOnly": True,
        "closeOnTrigger": True,
    }
    return await client.post("/v5/order/create", body)


async def one_order(client: BybitClient, link: str, **extra: Any) -> Any:
    result = await client.ok(
        "GET", "/v5/order/realtime", {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": link, **extra}
    )
    [order] = result["list"]
    return order


# ----- authentication and the envelope ------------------------------------------------


async def test_public_answers_come_in_the_envelope(bybit: BybitClient) -> None:
    answer = await bybit.get("/v5/market/instruments-info", LINEAR, signed=False)
    assert (answer["retCode"], answer["retMsg"]) == (0, "OK")
    assert {"result", "retExtInfo", "time"} <= set(answer)
    btc = next(i for i in answer["result"]["list"] if i["symbol"] == "BTCUSDT")
    assert (btc["contractType"], btc["status"], btc["settleCoin"]) == ("LinearPerpetual", "Trading", "USDT")
    assert (btc["priceFilter"]["tickSize"], btc["lotSizeFilter"]["qtyStep"]) == ("0.1", "0.001")
    prelaunch = await bybit.get(
        "/v5/market/instruments-info", {**LINEAR, "status": "PreLaunch"}, signed=False
    )
    assert prelaunch["result"]["list"] == []
    for other in ("spot", "inverse", "option"):  # warden simulates none of these: empty, not an error
        answer = await bybit.get("/v5/market/instruments-info", {"category": other}, signed=False)
        assert (answer["retCode"], answer["result"]["list"]) == (0, [])


async def test_a_bad_signature_key_or_timestamp_is_refused(bybit: BybitClient) -> None:
    path, params = "/v5/position/list", {**LINEAR, "settleCoin": "USDT"}
    assert (await bybit.get(path, params, secret="wrong"))["retCode"] == 10004
    assert (await bybit.get(path, params, key="other-key"))["retCode"] == 10003
    stale = int(time.time() * 1000) - 60_000
    assert (await bybit.get(path, params, timestamp=stale))["retCode"] == 10002
    future = int(time.time() * 1000) + 5_000
    assert (await bybit.get(path, params, timestamp=future))["retCode"] == 10002
    refused = await bybit.post("/v5/order/create", {**LINEAR, "symbol": "BTCUSDT"}, secret="wrong")
    assert refused["retCode"] == 10004
    assert venue(bybit).core.orders() == []
    # refusals are HTTP 200 with the retCode, and the request log says which
    notes = [r.get("note", "") for r in venue(bybit).requests]
    assert [n.split()[0] for n in notes if n] == ["10004", "10003", "10002", "10002", "10004"]


# ----- orders -------------------------------------------------------------------------


async def test_an_order_answer_carries_ids_only_and_the_lookup_tells_the_rest(bybit: BybitClient) -> None:
    answer = await market(bybit, "wd-a1b2c3-0123456789ab-e1")
    assert answer["retCode"] == 0
    assert set(answer["result"]) == {"orderId", "orderLinkId"}
    assert answer["result"]["orderLinkId"] == "wd-a1b2c3-0123456789ab-e1"
    order = await one_order(bybit, "wd-a1b2c3-0123456789ab-e1")  # closed, found by its link id
    assert (order["orderStatus"], order["cumExecQty"], order["avgPrice"], order["orderId"]) == (
        "Filled",
        "0.01",
        "65000",
        answer["result"]["orderId"],
    )
    assert (order["stopOrderType"], order["triggerDirection"], order["positionIdx"]) == ("", 0, 0)


async def test_a_conditional_order_rests_untriggered_then_fills_under_its_own_ids(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1")
    placed = (await conditional(bybit, "wd-p-s1", "64000"))["result"]
    stop = await one_order(bybit, "wd-p-s1", orderFilter="StopOrder")
    assert (stop["orderStatus"], stop["triggerPrice"], stop["triggerDirection"], stop["triggerBy"]) == (
        "Untriggered",
        "64000",
        2,
        "MarkPrice",
    )
    assert (stop["reduceOnly"], stop["closeOnTrigger"], stop["stopOrderType"]) == (True, True, "Stop")
    # the conditional filter separates the two kinds; no filter shows both
    plain = await bybit.ok(
        "GET", "/v5/order/realtime", {**LINEAR, "settleCoin": "USDT", "orderFilter": "Order"}
    )
    assert plain["list"] == []
    everything = await bybit.ok("GET", "/v5/order/realtime", {**LINEAR, "settleCoin": "USDT"})
    assert [o["orderLinkId"] for o in everything["list"]] == ["wd-p-s1"]

    assert (await bybit.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "63900"}))[0] == 200
    fired = await one_order(bybit, "wd-p-s1")
    assert (fired["orderStatus"], fired["cumExecQty"], fired["orderId"]) == (
        "Filled",
        "0.01",
        placed["orderId"],
    )
    executions = await bybit.ok("GET", "/v5/execution/list", {**LINEAR, "symbol": "BTCUSDT"})
    newest = executions["list"][0]  # newest first
    assert (newest["orderLinkId"], newest["orderId"], newest["execQty"], newest["execPrice"]) == (
        "wd-p-s1",
        placed["orderId"],
        "0.01",
        "63900",
    )
    assert (newest["execType"], newest["createType"]) == ("Trade", "CreateByStopOrder")


async def test_an_order_link_id_is_single_use(bybit: BybitClient) -> None:
    """Bybit refuses a second order with an orderLinkId even after the first one is done (110072)."""
    assert (await market(bybit, "wd-p-e1"))["retCode"] == 0
    assert (await market(bybit, "wd-p-e1"))["retCode"] == 110072
    assert (await conditional(bybit, "wd-p-e1", "60000"))["retCode"] == 110072
    assert (await market(bybit, "x" * 37))["retCode"] == 10001  # longer than 36
    assert (await market(bybit, "has.a.dot"))["retCode"] == 10001  # only [A-Za-z0-9_-]
    assert len(venue(bybit).core.orders()) == 1


async def test_at_most_ten_conditional_orders_rest_per_symbol(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1", qty="0.1")
    for n in range(10):
        assert (await conditional(bybit, f"wd-p-s{n}", str(60000 + n)))["retCode"] == 0
    refused = await conditional(bybit, "wd-p-s10", "59000")
    assert refused["retCode"] == 110009
    eth = {**LINEAR, "symbol": "ETHUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01"}
    assert (await bybit.post("/v5/order/create", {**eth, "orderLinkId": "wd-q-e1"}))["retCode"] == 0
    other = {**eth, "side": "Sell", "orderLinkId": "wd-q-s1", "triggerPrice": "2900", "triggerDirection": 2}
    assert (await bybit.post("/v5/order/create", {**other, "reduceOnly": True}))["retCode"] == 0  # per symbol
    await bybit.post("/v5/order/cancel", {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": "wd-p-s0"})
    assert (await conditional(bybit, "wd-p-s10", "59000"))["retCode"] == 0  # room again


async def test_a_trigger_already_crossed_is_refused_by_direction(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1")
    falling = await conditional(bybit, "wd-p-s1", "65100")  # a sell stop above the mark
    assert falling["retCode"] == 110093 and "expect Falling" in falling["retMsg"]
    rising = await conditional(bybit, "wd-p-s2", "64900", side="Buy", direction=1)
    assert rising["retCode"] == 110092 and "expect Rising" in rising["retMsg"]


async def test_refusals_speak_bybit(bybit: BybitClient) -> None:
    """Reduce-only with nothing to reduce, no such order, hedge-mode index, a limit order, a bad symbol."""
    assert (await market(bybit, "wd-p-c1", side="Sell", reduceOnly=True))["retCode"] == 110017
    cancel = {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": "wd-none-s1"}
    assert (await bybit.post("/v5/order/cancel", cancel))["retCode"] == 110001
    assert (await market(bybit, "wd-p-e1", positionIdx=1))["retCode"] == 10001
    assert (await market(bybit, "wd-p-e2", orderType="Limit", price="60000"))["retCode"] == 10001
    assert (await market(bybit, "wd-p-e3", symbol="DOGEUSDT"))["retCode"] == 10001
    assert (await market(bybit, "wd-p-e4", qty="0.0105"))["retCode"] == 10001
    assert (await market(bybit, "wd-p-e5", qty="0.001"))["retCode"] == 110094  # 65 USDT < 100
    assert venue(bybit).core.orders() == []


async def test_cancel_and_amend_a_resting_stop(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1", qty="0.02")
    await conditional(bybit, "wd-p-s1", "64000", qty="0.02")
    amend = {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": "wd-p-s1", "triggerPrice": "64500", "qty": "0.01"}
    assert (await bybit.post("/v5/order/amend", amend))["retCode"] == 0
    moved = await one_order(bybit, "wd-p-s1")
    assert (moved["triggerPrice"], moved["qty"], moved["orderStatus"]) == ("64500", "0.01", "Untriggered")
    crossed = {**amend, "triggerPrice": "65500"}
    assert (await bybit.post("/v5/order/amend", crossed))["retCode"] == 110093
    # the amended trigger is the live one: 64600 does not fire it, 64500 does
    await bybit.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "64600"})
    assert (await one_order(bybit, "wd-p-s1"))["orderStatus"] == "Untriggered"
    canceled = await bybit.post("/v5/order/cancel", {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": "wd-p-s1"})
    assert canceled["retCode"] == 0
    assert (await one_order(bybit, "wd-p-s1"))["orderStatus"] == "Deactivated"  # cancelled untriggered
    again = await bybit.post("/v5/order/cancel", {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": "wd-p-s1"})
    assert again["retCode"] == 110001


async def test_cancel_all_takes_an_order_filter(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1", qty="0.02")
    await conditional(bybit, "wd-p-s1", "64000")
    await conditional(bybit, "wd-p-s2", "63000")
    body = {**LINEAR, "symbol": "BTCUSDT", "orderFilter": "Order"}
    assert (await bybit.ok("POST", "/v5/order/cancel-all", body))["list"] == []
    done = await bybit.ok("POST", "/v5/order/cancel-all", {**body, "orderFilter": "StopOrder"})
    assert sorted(o["orderLinkId"] for o in done["list"]) == ["wd-p-s1", "wd-p-s2"]


async def test_lists_page_with_a_cursor_newest_first(bybit: BybitClient) -> None:
    for n in range(5):
        await market(bybit, f"wd-p-e{n}")
    seen: list[str] = []
    cursor = ""
    while True:
        params = {**LINEAR, "symbol": "BTCUSDT", "limit": 2, **({"cursor": cursor} if cursor else {})}
        result = await bybit.ok("GET", "/v5/order/history", params)
        seen += [o["orderLinkId"] for o in result["list"]]
        cursor = result["nextPageCursor"]
        if not cursor:
            break
    assert seen == [f"wd-p-e{n}" for n in reversed(range(5))]
    executions = await bybit.ok("GET", "/v5/execution/list", {**LINEAR, "symbol": "BTCUSDT", "limit": 3})
    assert len(executions["list"]) == 3 and executions["nextPageCursor"]
    week = 7 * 24 * 3600 * 1000
    too_long = {**LINEAR, "symbol": "BTCUSDT", "startTime": 0, "endTime": week + 1}
    assert (await bybit.get("/v5/execution/list", too_long))["retCode"] == 10001


async def test_positions_and_the_wallet(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1", side="Sell", qty="0.02")
    listed = await bybit.ok("GET", "/v5/position/list", {**LINEAR, "settleCoin": "USDT"})
    [short] = listed["list"]
    assert (short["symbol"], short["side"], short["size"], short["avgPrice"], short["positionIdx"]) == (
        "BTCUSDT",
        "Sell",
        "0.02",
        "65000",
        0,
    )
    flat = await bybit.ok("GET", "/v5/position/list", {**LINEAR, "symbol": "ETHUSDT"})
    assert [(p["side"], p["size"]) for p in flat["list"]] == [("", "0")]  # asked by symbol: shown flat
    assert (await bybit.get("/v5/position/list", LINEAR))["retCode"] == 10001  # symbol or settleCoin
    wallet = await bybit.ok("GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"})
    [account] = wallet["list"]
    assert account["accountType"] == "UNIFIED"
    assert account["coin"][0]["coin"] == "USDT"
    assert account["coin"][0]["walletBalance"] == "9999.48"  # 10,000 minus the 0.04 % taker fee


async def test_account_settings_and_their_not_modified_answers(bybit: BybitClient) -> None:
    mode = {**LINEAR, "coin": "USDT", "mode": 0}
    assert (await bybit.post("/v5/position/switch-mode", mode))["retCode"] == 110025  # already one-way
    assert (await bybit.post("/v5/position/switch-mode", {**mode, "mode": 3}))["retCode"] == 110029
    leverage = {**LINEAR, "symbol": "BTCUSDT", "buyLeverage": "20", "sellLeverage": "20"}
    assert (await bybit.post("/v5/position/set-leverage", leverage))["retCode"] == 110043  # the default
    assert (
        await bybit.post("/v5/position/set-leverage", {**leverage, "buyLeverage": "5", "sellLeverage": "5"})
    )["retCode"] == 0
    assert venue(bybit).core.leverage(venue(bybit).symbol("BTCUSDT")) == 5
    assert (await bybit.ok("GET", "/v5/account/info", {}))["marginMode"] == "REGULAR_MARGIN"
    assert (await bybit.ok("POST", "/v5/account/set-margin-mode", {"setMarginMode": "ISOLATED_MARGIN"})) == {
        "reasons": []
    }
    assert (await bybit.ok("GET", "/v5/account/info", {}))["marginMode"] == "ISOLATED_MARGIN"
    await market(bybit, "wd-p-e1")
    refused = await bybit.post("/v5/account/set-margin-mode", {"setMarginMode": "REGULAR_MARGIN"})
    assert refused["retCode"] == 110073  # not with a position open
    [position] = (await bybit.ok("GET", "/v5/position/list", {**LINEAR, "symbol": "BTCUSDT"}))["list"]
    assert (position["tradeMode"], position["leverage"], position["positionIM"]) == (1, "5", "130")


async def test_faults_become_retcodes(bybit: BybitClient) -> None:
    await bybit.control("POST", "/sim/faults", {"unavailable_if": True})
    assert (await market(bybit, "wd-p-e1"))["retCode"] == 10006
    await bybit.control("POST", "/sim/faults", {"unavailable_if": None, "timeout_after_execution_if": "*-e2"})
    timed_out = await market(bybit, "wd-p-e2")
    assert timed_out["retCode"] == 10016 and "Request timeout" in timed_out["retMsg"]
    assert (await one_order(bybit, "wd-p-e2"))["orderStatus"] == "Filled"  # it went through
    await bybit.control("POST", "/sim/faults", {"timeout_after_execution_if": None, "fail_queries": True})
    assert (await bybit.get("/v5/order/realtime", {**LINEAR, "settleCoin": "USDT"}))["retCode"] == 10016
    await bybit.control(
        "POST", "/sim/faults", {"fail_queries": False, "ack_only_if": "*-e3", "fill_delay": 30}
    )
    assert (await market(bybit, "wd-p-e3"))["retCode"] == 0
    waiting = await one_order(bybit, "wd-p-e3")
    assert (waiting["orderStatus"], waiting["cumExecQty"]) == ("New", "0")  # acknowledged, not filled


async def test_an_entry_filled_in_parts_is_partially_filled_then_filled() -> None:
    """partial_fill: between its parts the order reads PartiallyFilled with cumExecQty the first
    part's (Bybit's own status for it), each part its own execution; then Filled."""
    clock = FakeClock()
    async with bybit_server(sleep=clock.sleep) as bybit:
        knobs = {"ack_only_if": "*-e1", "fill_delay": 1, "partial_fill": 0.4}
        assert (await bybit.control("POST", "/sim/faults", knobs))[0] == 200
        assert (await market(bybit, "wd-p-e1"))["retCode"] == 0
        assert (await one_order(bybit, "wd-p-e1"))["orderStatus"] == "New"
        await clock.run_for(1)
        part = await one_order(bybit, "wd-p-e1")
        assert (part["orderStatus"], part["cumExecQty"], part["leavesQty"]) == (
            "PartiallyFilled",
            "0.004",
            "0.006",
        )
        await clock.run_for(1)
        done = await one_order(bybit, "wd-p-e1")
        assert (done["orderStatus"], done["cumExecQty"]) == ("Filled", "0.01")
        executions = await bybit.ok("GET", "/v5/execution/list", {**LINEAR, "symbol": "BTCUSDT"})
        assert sorted(e["execQty"] for e in executions["list"]) == ["0.004", "0.006"]


async def test_a_cancel_met_by_a_server_error_is_answered_10016(
    bybit: BybitClient, caplog: pytest.LogCaptureFixture
) -> None:
    """server_error_if on a cancel: Bybit's 10016 (its outcome unknown to the client), nothing
    cancelled, and no failure inside the server."""
    await market(bybit, "wd-p-e1")
    assert (await conditional(bybit, "wd-p-s1", "60000"))["retCode"] == 0
    await bybit.control("POST", "/sim/faults", {"server_error_if": "*-s1"})
    cancel = {**LINEAR, "symbol": "BTCUSDT", "orderLinkId": "wd-p-s1"}
    refused = await bybit.post("/v5/order/cancel", cancel)
    assert (refused["retCode"], refused["retMsg"]) == (10016, "System error. Please try again later.")
    _, logged = await bybit.control("GET", "/sim/requests")
    [entry] = [r for r in logged if r["path"] == "/v5/order/cancel"]
    assert (entry["status"], entry["note"]) == (200, "10016 System error. Please try again later.")
    assert "failed" not in caplog.text
    assert (await one_order(bybit, "wd-p-s1"))["orderStatus"] == "Untriggered"  # still there


async def test_the_control_surface_is_the_same_on_every_venue(bybit: BybitClient) -> None:
    await market(bybit, "wd-p-e1")
    status, state = await bybit.control("GET", "/sim/state")
    assert status == 200
    assert {"marks", "positions", "open_orders", "exposure"} <= set(state)
    [row] = state["exposure"]
    assert (row["symbol"], row["side"], row["qty"]) == ("BTC/USDT:USDT", "long", "0.01")
    status, refused = await bybit.control("POST", "/sim/price", {"symbol": "NOPE", "price": "1"})
    assert (status, refused["code"]) == (400, -1121)
    status, external = await bybit.control(
        "POST", "/sim/external-order", {"symbol": "BTCUSDT", "side": "sell", "qty": "0.01"}
    )
    assert (status, external["client_order_id"]) == (200, "ext-1")
    status, faults = await bybit.control("GET", "/sim/faults")
    assert status == 200 and faults["stream_silent"] is False
    status, logged = await bybit.control("GET", "/sim/requests")
    assert status == 200 and any(r["path"] == "/v5/order/create" for r in logged)


# ----- websockets ---------------------------------------------------------------------


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def until(ws: aiohttp.ClientWebSocketResponse, match: Any, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            message = await receive(ws, timeout)
            if match(message):
                return message


async def test_public_tickers_snapshot_then_deltas_and_pong(bybit: BybitClient) -> None:
    async with bybit.session.ws_connect(f"{bybit.base}/v5/public/linear") as ws:
        await ws.send_json({"op": "subscribe", "req_id": "1", "args": ["tickers.BTCUSDT"]})
        ack = await receive(ws)
        assert (ack["success"], ack["op"], ack["req_id"]) == (True, "subscribe", "1")
        snapshot = await receive(ws)
        assert (snapshot["topic"], snapshot["type"], snapshot["data"]["markPrice"]) == (
            "tickers.BTCUSDT",
            "snapshot",
            "65000",
        )
        assert "openInterestValue" in snapshot["data"]  # ccxt tells a contract ticker from spot by it
        await bybit.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "64000"})
        delta = await until(ws, lambda m: m.get("type") == "delta" and m["data"]["markPrice"] == "64000")
        assert delta["topic"] == "tickers.BTCUSDT"
        await ws.send_json({"op": "ping", "req_id": "2"})
        pong = await until(ws, lambda m: m.get("op") == "ping")
        assert (pong["ret_msg"], pong["req_id"]) == ("pong", "2")
        await ws.send_json({"op": "subscribe", "req_id": "3", "args": ["orderbook.50.BTCUSDT"]})
        refused = await until(ws, lambda m: m.get("req_id") == "3")
        assert refused["success"] is False


def auth_args(secret: str = SECRET, expires: int | None = None) -> list[str]:
    stamp = str(expires if expires is not None else int(time.time() * 1000) + 10_000)
    return [KEY, stamp, sign(secret, f"GET/realtime{stamp}")]


async def test_private_socket_auth_then_only_the_subscribed_topics(bybit: BybitClient) -> None:
    async with bybit.session.ws_connect(f"{bybit.base}/v5/private") as ws:
        await ws.send_json({"op": "subscribe", "req_id": "1", "args": ["order"]})
        assert (await receive(ws))["ret_msg"] == "Request not authorized"
        await ws.send_json({"op": "auth", "args": auth_args(secret="wrong")})
        assert (await receive(ws))["success"] is False
        await ws.send_json({"op": "auth", "args": auth_args(expires=1)})
        assert (await receive(ws))["success"] is False  # expired
        await ws.send_json({"op": "auth", "args": auth_args()})
        assert (await receive(ws))["success"] is True
        await ws.send_json({"op": "subscribe", "req_id": "2", "args": ["execution", "position"]})
        assert (await receive(ws))["success"] is True
        await ws.send_json({"op": "ping", "req_id": "3"})
        assert (await receive(ws))["op"] == "pong"

        await market(bybit, "wd-p-e1")
        execution = await receive(ws)
        assert execution["topic"] == "execution"
        row = execution["data"][0]
        assert (row["orderLinkId"], row["execQty"], row["category"]) == ("wd-p-e1", "0.01", "linear")
        position = await receive(ws)
        assert (position["topic"], position["data"][0]["size"]) == ("position", "0.01")
        # no `order` and no `wallet` message: not subscribed
        await ws.send_json({"op": "ping", "req_id": "4"})
        assert (await receive(ws))["op"] == "pong"


async def test_a_conditional_order_fires_triggered_execution_filled(bybit: BybitClient) -> None:
    async with bybit.session.ws_connect(f"{bybit.base}/v5/private") as ws:
        await ws.send_json({"op": "auth", "args": auth_args()})
        await receive(ws)
        await ws.send_json({"op": "subscribe", "args": ["order", "execution"]})
        await receive(ws)
        await market(bybit, "wd-p-e1")
        await conditional(bybit, "wd-p-s1", "64000")
        await until(ws, lambda m: m["topic"] == "order" and m["data"][0]["orderStatus"] == "Untriggered")
        await bybit.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "63900"})
        seen = []
        while len(seen) < 3:
            message = await receive(ws)
            row = message["data"][0]
            if row["orderLinkId"] == "wd-p-s1":
                seen.append((message["topic"], row.get("orderStatus") or row["execQty"]))
        assert seen == [("order", "Triggered"), ("execution", "0.01"), ("order", "Filled")]


async def test_a_silent_stream_answers_nothing_until_the_fault_is_lifted(bybit: BybitClient) -> None:
    async with bybit.session.ws_connect(f"{bybit.base}/v5/private") as ws:
        await ws.send_json({"op": "auth", "args": auth_args()})
        await receive(ws)
        await ws.send_json({"op": "subscribe", "args": ["execution"]})
        await receive(ws)
        await bybit.control("POST", "/sim/faults", {"stream_silent": True})
        await ws.send_json({"op": "ping", "req_id": "1"})  # never answered
        await market(bybit, "wd-p-e1")  # its execution is lost
        await eventually(lambda: len(venue(bybit).core.fills(venue(bybit).symbol("BTCUSDT"))) == 1)
        assert not ws.closed
        await bybit.control("POST", "/sim/faults", {"stream_silent": False})
        await ws.send_json({"op": "ping", "req_id": "2"})
        first = await receive(ws)  # not pong 1, not the lost execution: the socket said nothing meanwhile
        assert (first["op"], first["req_id"]) == ("pong", "2")


async def test_disconnect_drops_the_private_sockets(bybit: BybitClient) -> None:
    async with bybit.session.ws_connect(f"{bybit.base}/v5/private") as ws:
        await eventually(lambda: bool(venue(bybit).private), what="the private socket")
        status, answer = await bybit.control("POST", "/sim/disconnect", {})
        assert (status, answer) == (200, {"private": 1})
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
