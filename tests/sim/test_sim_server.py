"""The Binance-compatible server on the wire: authentication, error codes, endpoints, websockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from warden.adapters.sim.server import VENUE

from .server_client import RawClient, raw_server

BTCUSDT = "BTCUSDT"


@pytest.fixture
async def raw() -> AsyncIterator[RawClient]:
    async with raw_server() as client:
        yield client


async def entry(raw: RawClient, cid: str = "wd-p1-e1", qty: str = "0.01", side: str = "BUY") -> Any:
    status, body = await raw.call(
        "POST",
        "/fapi/v1/order",
        {"symbol": BTCUSDT, "side": side, "type": "MARKET", "quantity": qty, "newClientOrderId": cid},
    )
    assert status == 200, body
    return body


async def stop(
    raw: RawClient, cid: str, trigger: str, *, kind: str = "STOP_MARKET", qty: str = "0.01"
) -> tuple[int, Any]:
    params = {
        "algoType": "CONDITIONAL",
        "symbol": BTCUSDT,
        "side": "SELL",
        "type": kind,
        "quantity": qty,
        "triggerPrice": trigger,
        "reduceOnly": True,
        "clientAlgoId": cid,
    }
    return await raw.call("POST", "/fapi/v1/algoOrder", params)


# ----- authentication -----------------------------------------------------------------


async def test_exchange_info_has_what_ccxt_requires(raw: RawClient) -> None:
    status, body = await raw.call("GET", "/fapi/v1/exchangeInfo", signed=False, key=None)
    assert status == 200
    btc = next(s for s in body["symbols"] if s["symbol"] == BTCUSDT)
    assert (btc["contractType"], btc["marginAsset"], btc["status"]) == ("PERPETUAL", "USDT", "TRADING")
    assert {"STOP_MARKET", "TAKE_PROFIT_MARKET", "MARKET"} <= set(btc["orderTypes"])
    assert {f["filterType"] for f in btc["filters"]} >= {"PRICE_FILTER", "LOT_SIZE", "MIN_NOTIONAL"}


async def test_a_correctly_signed_request_is_served(raw: RawClient) -> None:
    status, body = await raw.call("GET", "/fapi/v3/account")
    assert status == 200
    assert body["assets"][0]["asset"] == "USDT"
    assert body["assets"][0]["updateTime"] > 0  # ccxt skips assets with updateTime 0


async def test_a_signature_mismatch_is_refused_with_1022(raw: RawClient) -> None:
    status, body = await raw.call("GET", "/fapi/v3/account", secret="not-the-secret")
    assert (status, body["code"]) == (400, -1022)
    assert raw.app[VENUE].requests[-1]["note"].startswith("-1022")


async def test_the_signature_covers_the_raw_body_of_a_post(raw: RawClient) -> None:
    """Tampering with one byte of a signed body after signing breaks the signature."""
    payload = raw.signed({"symbol": BTCUSDT, "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    tampered = payload.replace("quantity=0.01", "quantity=0.02")
    headers = {"X-MBX-APIKEY": "sim-key", "Content-Type": "application/x-www-form-urlencoded"}
    async with raw.session.post(f"{raw.base}/fapi/v1/order", data=tampered, headers=headers) as response:
        assert (response.status, (await response.json())["code"]) == (400, -1022)
    assert raw.app[VENUE].core.orders() == []


@pytest.mark.parametrize(("key", "status", "code"), [(None, 401, -2014), ("someone-else", 401, -2015)])
async def test_the_api_key_header_is_required(
    raw: RawClient, key: str | None, status: int, code: int
) -> None:
    got_status, body = await raw.call("GET", "/fapi/v3/account", key=key)
    assert (got_status, body["code"]) == (status, code)


@pytest.mark.parametrize("offset_ms", [-20_000, 5_000])
async def test_timestamps_outside_the_recv_window_are_refused(raw: RawClient, offset_ms: int) -> None:
    """Older than recvWindow (10 s) or more than 1 s in the future: -1021."""
    status, body = await raw.call("GET", "/fapi/v3/account", timestamp=int(time.time() * 1000) + offset_ms)
    assert (status, body["code"]) == (400, -1021)


async def test_missing_signature_is_a_missing_parameter(raw: RawClient) -> None:
    status, body = await raw.call("GET", "/fapi/v3/account", signed=False)
    assert (status, body["code"]) == (400, -1102)


# ----- orders -------------------------------------------------------------------------


async def test_conditional_types_on_the_plain_endpoint_get_4120(raw: RawClient) -> None:
    """Since 2025-12-09 STOP_MARKET / TAKE_PROFIT_MARKET exist only on /fapi/v1/algoOrder."""
    await entry(raw)
    for kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
        params = {"symbol": BTCUSDT, "side": "SELL", "type": kind, "quantity": "0.01", "stopPrice": "60000"}
        status, body = await raw.call("POST", "/fapi/v1/order", params)
        assert (status, body["code"]) == (400, -4120)


async def test_market_order_and_lookups_by_client_id(raw: RawClient) -> None:
    body = await entry(raw)
    assert (body["status"], body["executedQty"], body["avgPrice"], body["clientOrderId"]) == (
        "FILLED",
        "0.01",
        "65000",
        "wd-p1-e1",
    )
    status, found = await raw.call(
        "GET", "/fapi/v1/order", {"symbol": BTCUSDT, "origClientOrderId": "wd-p1-e1"}
    )
    assert (status, found["orderId"]) == (200, body["orderId"])
    status, missing = await raw.call(
        "GET", "/fapi/v1/order", {"symbol": BTCUSDT, "origClientOrderId": "nope"}
    )
    assert (status, missing["code"]) == (400, -2013)


async def test_algo_orders_live_only_on_the_algo_endpoint(raw: RawClient) -> None:
    await entry(raw)
    status, body = await stop(raw, "wd-p1-s1", "64000")
    assert (status, body["algoStatus"], body["orderType"]) == (200, "NEW", "STOP_MARKET")
    status, plain = await raw.call(
        "GET", "/fapi/v1/order", {"symbol": BTCUSDT, "origClientOrderId": "wd-p1-s1"}
    )
    assert (status, plain["code"]) == (400, -2013)
    status, algo = await raw.call(
        "GET", "/fapi/v1/algoOrder", {"symbol": BTCUSDT, "clientAlgoId": "wd-p1-s1"}
    )
    assert (status, algo["algoId"]) == (200, body["algoId"])
    assert (await raw.call("GET", "/fapi/v1/openOrders"))[1] == []
    assert [o["clientAlgoId"] for o in (await raw.call("GET", "/fapi/v1/openAlgoOrders"))[1]] == ["wd-p1-s1"]
    status, cancel = await raw.call(
        "DELETE", "/fapi/v1/algoOrder", {"symbol": BTCUSDT, "clientAlgoId": "wd-p1-s1"}
    )
    assert (status, cancel) == (
        200,
        {"algoId": body["algoId"], "clientAlgoId": "wd-p1-s1", "code": "200", "msg": "success"},
    )
    status, again = await raw.call(
        "DELETE", "/fapi/v1/algoOrder", {"symbol": BTCUSDT, "clientAlgoId": "wd-p1-s1"}
    )
    assert (status, again["code"]) == (400, -2011)


@pytest.mark.parametrize(
    ("cid", "trigger", "code"),
    [("wd-p1-s2", "66000", -2021), ("wd-p1-s1", "63000", -4116), ("bad id!", "63000", -4015)],
)
async def test_algo_refusals_carry_binance_codes(raw: RawClient, cid: str, trigger: str, code: int) -> None:
    """Would trigger at once (-2021), client id already open (-4116), malformed client id (-4015)."""
    await entry(raw)
    assert (await stop(raw, "wd-p1-s1", "64000"))[0] == 200
    status, body = await stop(raw, cid, trigger)
    assert (status, body["code"]) == (400, code)


async def test_at_most_ten_algo_orders_rest_per_symbol(raw: RawClient) -> None:
    """USD-M's MAX_NUM_ALGO_ORDERS filter (limit 10 per symbol), refused with -4045 like Bybit's
    110009 cap: a simulator that rests an eleventh stop hides what stacked positions meet."""
    _, info = await raw.call("GET", "/fapi/v1/exchangeInfo", signed=False)
    [btc] = [s for s in info["symbols"] if s["symbol"] == BTCUSDT]
    assert {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10} in btc["filters"]
    await entry(raw, qty="0.1")
    for n in range(10):
        assert (await stop(raw, f"wd-p1-s{n}", str(60000 + n)))[0] == 200
    status, body = await stop(raw, "wd-p1-s10", "59000")
    assert (status, body["code"]) == (400, -4045)
    await raw.call("DELETE", "/fapi/v1/algoOrder", {"symbol": BTCUSDT, "clientAlgoId": "wd-p1-s0"})
    assert (await stop(raw, "wd-p1-s10", "59000"))[0] == 200  # room again


async def test_unknown_symbol_is_1121(raw: RawClient) -> None:
    status, body = await raw.call("GET", "/fapi/v1/openOrders", {"symbol": "DOGEUSDT"})
    assert (status, body["code"]) == (400, -1121)


async def test_a_fired_stop_trades_under_a_child_order(raw: RawClient) -> None:
    """userTrades name the child (actualOrderId); the algo order says FINISHED and points at it."""
    await entry(raw)
    _, algo = await stop(raw, "wd-p1-s1", "64000")
    status, moved = await raw.control("POST", "/sim/price", {"symbol": BTCUSDT, "price": "63900"})
    assert (status, moved["fired"]) == (200, 1)
    _, done = await raw.call("GET", "/fapi/v1/algoOrder", {"symbol": BTCUSDT, "algoId": algo["algoId"]})
    assert (done["algoStatus"], done["executedQty"], done["avgPrice"]) == ("FINISHED", "0.01", "63900")
    child_id = int(done["actualOrderId"])
    _, trades = await raw.call("GET", "/fapi/v1/userTrades", {"symbol": BTCUSDT})
    assert [t["orderId"] for t in trades][-1] == child_id
    _, child = await raw.call("GET", "/fapi/v1/order", {"symbol": BTCUSDT, "orderId": child_id})
    assert (child["status"], child["executedQty"]) == ("FILLED", "0.01")
    assert child["clientOrderId"] != "wd-p1-s1"
    _, history = await raw.call("GET", "/fapi/v1/allOrders", {"symbol": BTCUSDT})
    assert child_id in [o["orderId"] for o in history]
    _, positions = await raw.call("GET", "/fapi/v3/positionRisk")
    assert positions == []


# ----- faults -------------------------------------------------------------------------


async def test_fault_knobs_map_to_binance_failures(raw: RawClient) -> None:
    """unavailable -> 429, executed-then-timeout -> 503 -1007 (and the order exists), fail_queries -> 503."""
    await raw.control("POST", "/sim/faults", {"unavailable_if": "*-e1"})
    status, body = await raw.call(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": BTCUSDT,
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.01",
            "newClientOrderId": "wd-p1-e1",
        },
    )
    assert status == 429
    await raw.control("POST", "/sim/faults", {"unavailable_if": None, "timeout_after_execution_if": True})
    status, body = await raw.call(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": BTCUSDT,
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.01",
            "newClientOrderId": "wd-p1-e2",
        },
    )
    assert (status, body["code"]) == (503, -1007)
    assert raw.app[VENUE].core.order("wd-p1-e2") is not None
    status, shown = await raw.control(
        "POST", "/sim/faults", {"timeout_after_execution_if": False, "fail_queries": True}
    )
    assert (shown["fail_queries"], shown["timeout_after_execution_if"]) == (True, None)
    status, body = await raw.call(
        "GET", "/fapi/v1/order", {"symbol": BTCUSDT, "origClientOrderId": "wd-p1-e2"}
    )
    assert status == 503


async def test_unknown_fault_knobs_are_refused(raw: RawClient) -> None:
    status, body = await raw.control("POST", "/sim/faults", {"chaos_monkey": 1})
    assert status == 400
    assert "chaos_monkey" in body["msg"]


# ----- control ------------------------------------------------------------------------


async def test_external_orders_and_cancels_from_the_control_surface(raw: RawClient) -> None:
    status, order = await raw.control(
        "POST", "/sim/external-order", {"symbol": BTCUSDT, "side": "buy", "qty": "0.02"}
    )
    assert (status, order["client_order_id"], order["status"]) == (200, "ext-1", "filled")
    status, resting = await raw.control(
        "POST",
        "/sim/external-order",
        {
            "symbol": "BTC/USDT:USDT",
            "side": "sell",
            "qty": "0.02",
            "type": "stop_market",
            "trigger_price": "60000",
            "reduce_only": True,
        },
    )
    assert (status, resting["status"]) == (200, "open")
    _, state = await raw.control("GET", "/sim/state")
    assert [(p["symbol"], p["qty"]) for p in state["positions"]] == [("BTC/USDT:USDT", "0.02")]
    assert [o["client_order_id"] for o in state["open_orders"]] == ["ext-2"]
    status, canceled = await raw.control("POST", "/sim/cancel", {"client_order_id": "ext-2"})
    assert (status, canceled["status"]) == (200, "canceled")
    status, body = await raw.control("POST", "/sim/cancel", {"client_order_id": "ext-2"})
    assert (status, body["code"]) == (400, -2011)


async def test_unknown_paths_are_logged_as_unhandled(raw: RawClient) -> None:
    status, _ = await raw.call("GET", "/sapi/v1/capital/deposit/address", {"coin": "USDT"})
    assert status == 404
    assert raw.app[VENUE].requests[-1]["note"] == "UNHANDLED"


# ----- listen keys and websockets ------------------------------------------------------


async def test_listen_key_lifecycle(raw: RawClient) -> None:
    status, body = await raw.call("POST", "/fapi/v1/listenKey", signed=False, key=None)
    assert (status, body["code"]) == (401, -2014)
    _, first = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
    _, second = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
    assert first == second  # the active key is handed back
    status, _ = await raw.call("PUT", "/fapi/v1/listenKey", signed=False)
    assert status == 200
    await raw.call("DELETE", "/fapi/v1/listenKey", signed=False)
    status, body = await raw.call(
        "PUT", "/fapi/v1/listenKey", {"listenKey": first["listenKey"]}, signed=False
    )
    assert (status, body["code"]) == (400, -1125)


async def test_market_socket_acks_subscriptions_and_pushes_marks(raw: RawClient) -> None:
    ws_base = raw.base.replace("http", "ws")
    async with raw.session.ws_connect(f"{ws_base}/market/ws/0") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@markPrice@1s"], "id": 1})
        assert await ws.receive_json(timeout=2) == {"result": None, "id": 1}
        push = await ws.receive_json(timeout=2)
        assert (push["e"], push["s"], push["p"]) == ("markPriceUpdate", BTCUSDT, "65000")
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        while (reply := await ws.receive_json(timeout=2)).get("id") != 2:
            pass
        assert reply["result"] == ["btcusdt@markPrice@1s"]


async def test_private_socket_pushes_the_binance_event_sequence(raw: RawClient) -> None:
    """A market order, then a fired stop: ORDER_TRADE_UPDATE, ALGO_UPDATE ... FINISHED, ACCOUNT_UPDATE."""
    _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
    ws_base = raw.base.replace("http", "ws")
    async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
        await entry(raw)
        await stop(raw, "wd-p1-s1", "64000")
        await raw.control("POST", "/sim/price", {"symbol": BTCUSDT, "price": "63900"})
        seen: list[tuple[str, str]] = []
        while len(seen) < 10:
            message = await ws.receive_json(timeout=2)
            detail = message["o"].get("x", message["o"].get("X")) if "o" in message else message["a"]["m"]
            seen.append((message["e"], detail))
    assert seen == [
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "TRADE"),
        ("ACCOUNT_UPDATE", "ORDER"),
        ("ALGO_UPDATE", "NEW"),
        ("ALGO_UPDATE", "TRIGGERING"),
        ("ALGO_UPDATE", "TRIGGERED"),
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "TRADE"),
        ("ALGO_UPDATE", "FINISHED"),
        ("ACCOUNT_UPDATE", "ORDER"),
    ]


async def test_private_socket_needs_a_live_listen_key(raw: RawClient) -> None:
    ws_base = raw.base.replace("http", "ws")
    with pytest.raises(Exception, match="400"):
        await raw.session.ws_connect(f"{ws_base}/private/ws?listenKey=forged")


async def test_disconnect_drops_private_sockets(raw: RawClient) -> None:
    _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
    ws_base = raw.base.replace("http", "ws")
    async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
        await asyncio.sleep(0)
        _, dropped = await raw.control("POST", "/sim/disconnect")
        assert dropped == {"private": 1}
        message = await ws.receive(timeout=2)
        assert message.type.name in ("CLOSE", "CLOSING", "CLOSED")


async def test_the_pump_survives_a_new_session_of_the_simulator(raw: RawClient) -> None:
    """new_session() ends one iteration of the simulator's stream; the server keeps pushing."""
    _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
    ws_base = raw.base.replace("http", "ws")
    async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
        raw.app[VENUE].sim.new_session()
        await entry(raw)
        message = await ws.receive_json(timeout=2)
        assert (message["e"], message["o"]["c"]) == ("ORDER_TRADE_UPDATE", "wd-p1-e1")


async def test_margin_type_is_a_real_per_symbol_mode(raw: RawClient) -> None:
    """ISOLATED switches (and says so in positionRisk), a second ISOLATED is -4046, and no switch
    while a position is open (-4048)."""
    status, _ = await raw.call("POST", "/fapi/v1/marginType", {"symbol": BTCUSDT, "marginType": "ISOLATED"})
    assert status == 200
    status, body = await raw.call(
        "POST", "/fapi/v1/marginType", {"symbol": BTCUSDT, "marginType": "ISOLATED"}
    )
    assert (status, body["code"]) == (400, -4046)
    status, _ = await raw.call("POST", "/fapi/v1/leverage", {"symbol": BTCUSDT, "leverage": 10})
    assert status == 200
    await entry(raw)
    status, body = await raw.call("POST", "/fapi/v1/marginType", {"symbol": BTCUSDT, "marginType": "CROSSED"})
    assert (status, body["code"]) == (400, -4048)
    status, [risk] = await raw.call("GET", "/fapi/v3/positionRisk", {"symbol": BTCUSDT})
    assert status == 200
    assert (risk["isolatedWallet"], risk["isolatedMargin"]) == ("65", "65")  # how v3 says isolated
    status, [risk_v2] = await raw.call("GET", "/fapi/v2/positionRisk", {"symbol": BTCUSDT})
    assert (risk_v2["marginType"], risk_v2["leverage"]) == ("isolated", "10")


V3_POSITION_RISK_KEYS = {
    # the real v3 payload of the reference (section 3.3): no leverage, no marginType
    "symbol",
    "positionSide",
    "positionAmt",
    "entryPrice",
    "breakEvenPrice",
    "markPrice",
    "unRealizedProfit",
    "liquidationPrice",
    "isolatedMargin",
    "notional",
    "marginAsset",
    "isolatedWallet",
    "initialMargin",
    "maintMargin",
    "positionInitialMargin",
    "openOrderInitialMargin",
    "adl",
    "bidNotional",
    "askNotional",
    "updateTime",
}


async def test_position_risk_v3_has_the_real_v3_fields_and_v2_keeps_leverage(raw: RawClient) -> None:
    """v3 has no `leverage` / `marginType` (ccxt infers the margin mode from isolatedMargin and
    reports leverage None); a simulator that sends them makes ccxt report a leverage Binance never
    gives. v2 still carries both."""
    await raw.call("POST", "/fapi/v1/marginType", {"symbol": BTCUSDT, "marginType": "ISOLATED"})
    await entry(raw)
    _, [v3] = await raw.call("GET", "/fapi/v3/positionRisk", {"symbol": BTCUSDT})
    assert set(v3) == V3_POSITION_RISK_KEYS
    _, [v2] = await raw.call("GET", "/fapi/v2/positionRisk", {"symbol": BTCUSDT})
    assert (v2["leverage"], v2["marginType"]) == ("20", "isolated")


async def test_the_retired_legacy_user_stream_path_is_not_served(raw: RawClient) -> None:
    """Binance retired the legacy websocket URLs on 2026-04-23 (reference 1.2): the user stream is
    `/private/ws?listenKey=`, and `/ws/<listenKey>` is no longer a way in, even with a live key."""
    _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
    ws_base = raw.base.replace("http", "ws")
    with pytest.raises(Exception, match="404"):
        await raw.session.ws_connect(f"{ws_base}/ws/{key['listenKey']}")
    assert raw.app[VENUE].requests[-1]["note"] == "UNHANDLED"
