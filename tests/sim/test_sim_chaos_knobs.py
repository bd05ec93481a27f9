"""The knobs the chaos campaign needs: 5xx and 429 bursts, seconds of stream silence, a listen key
that expires, and the exposure record kept as stretches (which moment left what uncovered)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from warden.adapters.sim import SimRateLimited, SimServerError, SimulatedExchange
from warden.adapters.sim.server import VENUE
from warden.domain.orders import OrderStatus
from warden.domain.reports import MarkPrice, StreamGap
from warden.ports import ExchangeTimeout, ExchangeUnavailable

from .builders import BTC, BUY, SELL, FakeClock, ManualTime, market, stop, take
from .server_client import RawClient, raw_server

BTCUSDT = "BTCUSDT"


async def test_server_error_if_refuses_with_a_timeout_and_executes_nothing(
    exchange: SimulatedExchange,
) -> None:
    """A 5xx: the caller sees an unknown outcome (ExchangeTimeout), but nothing was executed."""
    exchange.faults.server_error_if = lambda req: req.client_order_id.endswith("-e1")
    with pytest.raises(ExchangeTimeout, match="5xx") as caught:
        await exchange.place_order(market("wd-p1-e1", BUY, "0.01"))
    assert isinstance(caught.value, SimServerError)
    assert exchange.core.order("wd-p1-e1") is None
    assert exchange.core.position(BTC).qty == 0
    await exchange.place_order(market("wd-p2-e2", BUY, "0.01"))  # not matched: goes through


async def test_rate_limit_if_refuses_places_and_cancels(exchange: SimulatedExchange) -> None:
    """A 429 is ExchangeUnavailable (refused before processing); a cancel it matches leaves the order."""
    await exchange.place_order(market("m1", BUY, "0.01"))
    await exchange.place_order(stop("wd-p1-s1", SELL, "0.01", "60000"))
    exchange.faults.rate_limit_if = lambda req: req.client_order_id == "wd-p1-s1"
    with pytest.raises(ExchangeUnavailable, match="429") as caught:
        await exchange.cancel_order(BTC, "wd-p1-s1", conditional=True)
    assert isinstance(caught.value, SimRateLimited)
    assert exchange.core.order("wd-p1-s1").status is OrderStatus.OPEN  # type: ignore[union-attr]
    exchange.faults.rate_limit_if = None
    report = await exchange.cancel_order(BTC, "wd-p1-s1", conditional=True)
    assert report.status is OrderStatus.CANCELED


async def test_stream_gap_loses_events_for_its_seconds_then_reports_a_gap() -> None:
    """Silence from the next event: what happens meanwhile is lost; then a StreamGap, and the knob is 0."""
    clock = FakeClock()
    sim = SimulatedExchange(now=clock, seed=7, sleep=clock.sleep)
    events = sim.stream()
    sim.faults.stream_gap = 5.0
    sim.set_mark(BTC, Decimal(64000))  # starts the silence; lost
    await clock.run_for(4.9)
    sim.set_mark(BTC, Decimal(64100))  # still silent; lost
    assert sim.faults.stream_gap == 5.0
    await clock.run_for(0.2)
    assert sim.faults.stream_gap == 0
    sim.set_mark(BTC, Decimal(64200))
    got = await take(events, 2)
    assert isinstance(got[0], StreamGap) and "5" in got[0].reason
    assert isinstance(got[1], MarkPrice) and got[1].price == 64200
    assert sim.lost_events == 2


async def test_exposure_stretches_say_when_each_uncovered_stretch_began_and_ended(
    exchange: SimulatedExchange, now: ManualTime
) -> None:
    """Each stretch keeps its start and end; one still going on has no end yet."""
    await exchange.place_order(market("m1", BUY, "0.01"))
    now.advance(1.5)
    await exchange.place_order(stop("s1", SELL, "0.01", "60000"))
    now.advance(10)
    await exchange.cancel_order(BTC, "s1", conditional=True)
    now.advance(0.25)
    [first, going] = exchange.exposure_stretches()
    assert (first.symbol, first.seconds(now()), going.end) == (BTC, 1.5, None)
    assert going.seconds(now()) == 0.25


# ----- over the server -------------------------------------------------------------------------


async def new_order(raw: RawClient, cid: str) -> tuple[int, dict[str, object]]:
    params = {"symbol": BTCUSDT, "side": "BUY", "type": "MARKET", "quantity": "0.01", "newClientOrderId": cid}
    status, body = await raw.call("POST", "/fapi/v1/order", params)
    return status, body


async def test_server_knobs_answer_502_and_429_and_show_their_specs() -> None:
    """server_error_if -> HTTP 502 (-1001), rate_limit_if -> 429 (-1003); nothing executed either way."""
    async with raw_server() as raw:
        _, shown = await raw.control("POST", "/sim/faults", {"server_error_if": "*-e1", "stream_gap": 2})
        assert (shown["server_error_if"], shown["stream_gap"]) == ("*-e1", 2.0)
        status, body = await new_order(raw, "wd-p1-e1")
        assert (status, body["code"]) == (502, -1001)
        await raw.control("POST", "/sim/faults", {"server_error_if": None, "rate_limit_if": True})
        status, body = await new_order(raw, "wd-p1-e2")
        assert (status, body["code"]) == (429, -1003)
        assert raw.app[VENUE].core.orders() == []
        status, body = await raw.control("POST", "/sim/faults", {"rate_limit_if": 3})
        assert status == 400


async def test_an_expired_listen_key_is_announced_closed_and_refused() -> None:
    """listenKeyExpired goes out, the socket closes, the old key no longer connects; a new one does."""
    async with raw_server() as raw:
        _, key = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
        ws_base = raw.base.replace("http", "ws")
        async with raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}") as ws:
            await asyncio.sleep(0)
            _, answer = await raw.control("POST", "/sim/expire-listen-key")
            assert answer == {"expired": 1}
            message = await ws.receive_json(timeout=2)
            assert (message["e"], message["listenKey"]) == ("listenKeyExpired", key["listenKey"])
        with pytest.raises(Exception, match="400"):
            await raw.session.ws_connect(f"{ws_base}/private/ws?listenKey={key['listenKey']}")
        _, fresh = await raw.call("POST", "/fapi/v1/listenKey", signed=False)
        assert fresh["listenKey"] != key["listenKey"]


async def test_state_lists_exposure_stretches() -> None:
    async with raw_server() as raw:
        await new_order(raw, "m1")
        _, state = await raw.control("GET", "/sim/state")
        [stretch] = state["exposure_stretches"]
        assert (stretch["symbol"], stretch["end"]) == ("BTC/USDT:USDT", None)
