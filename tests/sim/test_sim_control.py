"""The `/sim/*` control surface refuses bad input with a 4xx and a message, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from warden.adapters.sim.server import VENUE

from .builders import BTC
from .server_client import RawClient, raw_server

BTCUSDT = "BTCUSDT"


@pytest.fixture
async def raw() -> AsyncIterator[RawClient]:
    async with raw_server() as client:
        yield client


async def send_text(raw: RawClient, path: str, text: str) -> tuple[int, Any]:
    """POST a raw body (maybe not JSON at all)."""
    headers = {"Content-Type": "application/json"}
    async with raw.session.post(f"{raw.base}{path}", data=text, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def refused(status: int, body: Any) -> bool:
    """A 400/422 with Binance's error shape and a readable message."""
    return status in (400, 422) and isinstance(body.get("code"), int) and bool(body.get("msg"))


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": BTCUSDT, "price": "NaN"},
        {"symbol": BTCUSDT, "price": "nan"},
        {"symbol": BTCUSDT, "price": "sNaN"},
        {"symbol": BTCUSDT, "price": "Infinity"},
        {"symbol": BTCUSDT, "price": "-Infinity"},
        {"symbol": BTCUSDT, "price": "-1"},
        {"symbol": BTCUSDT, "price": "0"},
        {"symbol": BTCUSDT, "price": "abc"},
        {"symbol": BTCUSDT, "price": True},
        {"symbol": BTCUSDT, "price": [65000]},
        {"symbol": BTCUSDT, "price": {"value": 65000}},
        {"symbol": BTCUSDT, "price": "1e999999"},
        {"symbol": BTCUSDT},
        {"price": "65000"},
        {"symbol": "DOGEUSDT", "price": "65000"},
        {"symbol": 42, "price": "65000"},
    ],
)
async def test_bad_prices_and_symbols_are_refused_and_the_mark_is_unchanged(
    raw: RawClient, body: dict[str, Any]
) -> None:
    status, answer = await raw.control("POST", "/sim/price", body)
    assert refused(status, answer), (status, answer)
    assert raw.app[VENUE].core.mark(BTC) == 65000


@pytest.mark.parametrize(
    "text", ['{"symbol": "BTCUSDT", "price": NaN}', '{"symbol": "BTCUSDT", "price": 1e400}']
)
async def test_json_nan_and_infinity_literals_are_refused(raw: RawClient, text: str) -> None:
    """Python's JSON reader accepts NaN / Infinity literals (and 1e400 becomes inf): still a 400."""
    status, answer = await send_text(raw, "/sim/price", text)
    assert refused(status, answer), (status, answer)
    assert raw.app[VENUE].core.mark(BTC) == 65000


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/sim/price", "{not json"),
        ("/sim/price", ""),
        ("/sim/price", "[1, 2]"),
        ("/sim/external-order", "{not json"),
        ("/sim/cancel", "null"),
        ("/sim/faults", '"rest_latency"'),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_refused(raw: RawClient, path: str, text: str) -> None:
    status, answer = await send_text(raw, path, text)
    assert refused(status, answer), (status, answer)


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": BTCUSDT, "side": "buy", "qty": "NaN"},
        {"symbol": BTCUSDT, "side": "buy", "qty": "Infinity"},
        {"symbol": BTCUSDT, "side": "buy", "qty": "-0.01"},
        {"symbol": BTCUSDT, "side": "buy", "qty": "lots"},
        {"symbol": BTCUSDT, "side": "buy", "qty": "1e30"},
        {"symbol": BTCUSDT, "side": "buy", "qty": False},
        {"symbol": BTCUSDT, "side": "buy"},
        {"symbol": BTCUSDT, "side": "up", "qty": "0.01"},
        {"symbol": BTCUSDT, "side": 1, "qty": "0.01"},
        {"symbol": BTCUSDT, "side": "buy", "qty": "0.01", "type": "limit"},
        {"symbol": BTCUSDT, "side": "buy", "qty": "0.01", "reduce_only": "false"},
        {"symbol": BTCUSDT, "side": "sell", "qty": "0.01", "type": "stop_market", "trigger_price": "NaN"},
        {"symbol": BTCUSDT, "side": "sell", "qty": "0.01", "type": "stop_market", "trigger_price": "1e40"},
        {
            "symbol": BTCUSDT,
            "side": "sell",
            "type": "stop_market",
            "trigger_price": "60000",
            "close_position": 1,
        },
        {"side": "buy", "qty": "0.01"},
        {"symbol": "DOGEUSDT", "side": "buy", "qty": "0.01"},
    ],
)
async def test_bad_external_orders_are_refused_and_nothing_trades(
    raw: RawClient, body: dict[str, Any]
) -> None:
    status, answer = await raw.control("POST", "/sim/external-order", body)
    assert refused(status, answer), (status, answer)
    assert raw.app[VENUE].core.orders() == []


async def test_a_quoted_false_is_not_a_true_reduce_only(raw: RawClient) -> None:
    """`"reduce_only": "false"` used to be read as bool("false") == True; it is refused instead."""
    status, answer = await raw.control(
        "POST",
        "/sim/external-order",
        {"symbol": BTCUSDT, "side": "buy", "qty": "0.01", "reduce_only": "false"},
    )
    assert status == 400
    assert "reduce_only" in answer["msg"]


@pytest.mark.parametrize("body", [{"client_order_id": 17}, {"client_order_id": None}, {}])
async def test_bad_cancels_are_refused(raw: RawClient, body: dict[str, Any]) -> None:
    status, answer = await raw.control("POST", "/sim/cancel", body)
    assert refused(status, answer), (status, answer)


@pytest.mark.parametrize(
    "body",
    [
        {"rest_latency": "1"},
        {"rest_latency": -1},
        {"rest_latency": True},
        {"drop_rate": 1.5},
        {"fail_queries": "false"},
        {"fail_queries": 1},
        {"reject_if": 3},
    ],
)
async def test_bad_fault_values_are_refused(raw: RawClient, body: dict[str, Any]) -> None:
    status, answer = await raw.control("POST", "/sim/faults", body)
    assert refused(status, answer), (status, answer)
    _, shown = await raw.control("GET", "/sim/faults")
    assert (shown["rest_latency"], shown["drop_rate"], shown["fail_queries"], shown["reject_if"]) == (
        0.0,
        0.0,
        False,
        None,
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_fault_numbers_are_refused(raw: RawClient, literal: str) -> None:
    """A NaN latency would compare false everywhere; an infinite one would hang every call."""
    status, answer = await send_text(raw, "/sim/faults", f'{{"rest_latency": {literal}}}')
    assert refused(status, answer), (status, answer)
    assert raw.app[VENUE].sim.faults.rest_latency == 0.0


async def test_a_refused_fault_request_changes_no_knob(raw: RawClient) -> None:
    """Knobs are checked before any is set: one bad knob leaves the good ones in the same body unset."""
    status, _ = await raw.control("POST", "/sim/faults", {"rest_latency": 0.5, "fail_queries": "yes"})
    assert status == 400
    faults = raw.app[VENUE].sim.faults
    assert (faults.rest_latency, faults.fail_queries) == (0.0, False)


async def test_absurd_numbers_on_the_binance_order_routes_are_refused_not_crashed(raw: RawClient) -> None:
    """A quantity or trigger too large for the core's decimal context is a Binance error, not a 500."""
    base = {"symbol": BTCUSDT, "side": "BUY", "type": "MARKET", "newClientOrderId": "wd-p1-e1"}
    status, answer = await raw.call("POST", "/fapi/v1/order", {**base, "quantity": "1e30"})
    assert (status, answer["code"]) == (400, -4005)
    status, answer = await raw.call(
        "POST",
        "/fapi/v1/algoOrder",
        {
            "algoType": "CONDITIONAL",
            "symbol": BTCUSDT,
            "side": "SELL",
            "type": "STOP_MARKET",
            "quantity": "0.01",
            "triggerPrice": "1e40",
            "clientAlgoId": "wd-p1-s1",
        },
    )
    assert (status, answer["code"]) == (400, -4016)
    assert raw.app[VENUE].core.orders() == []
