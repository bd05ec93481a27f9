"""A 429 / 418 from Binance says how long to stay away (`Retry-After`, seconds): requests sent
meanwhile are refused again, and Binance bans an IP that does not back off after a 429 (418,
from 2 minutes up to 3 days), during which no stop can be placed, moved or closed. Bybit says so
its own way: retCode 10006 (HTTP 200) with `X-Bapi-Limit-Reset-Timestamp` (ms, on its clock),
and HTTP 403 when the IP is over its limit (wait at least 10 minutes). Through unmodified ccxt
against the simulator's faces."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import ccxt
from tests.contract.rigs import ServerRig, rig_for
from tests.helpers import until
from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange
from warden.domain.orders import OrderStatus
from warden.domain.values import OrderSide
from warden.ports import ExchangeUnavailable

ID = "wd-a1b2c3-0123456789ab"


async def _requests(rig: ServerRig) -> list[dict[str, Any]]:
    """What the exchange was sent (the simulator's own /sim/ surface left out)."""
    async with rig.session.get(f"{rig.base}/sim/requests") as response:
        seen: list[dict[str, Any]] = await response.json(content_type=None)
    return [r for r in seen if not r["path"].startswith("/sim/")]


async def _order_requests(rig: ServerRig, path: str = "/fapi/v1/order") -> int:
    return sum(1 for r in await _requests(rig) if r["path"] == path and r["method"] == "POST")


async def test_after_a_429_nothing_is_sent_until_its_retry_after_has_passed() -> None:
    async with rig_for("binance") as made:
        assert isinstance(made, ServerRig)
        rig, exchange = made, made.exchange
        await rig.faults(rate_limit_if=True, retry_after=2)
        with pytest.raises(ExchangeUnavailable):
            await exchange.place_order(rig.market(f"{ID}-e1", OrderSide.BUY, "0.01"))
        assert await _order_requests(rig) == 1
        await rig.faults(rate_limit_if=None)

        # Within the Retry-After: refused here, with nothing sent (the exchange would refuse it
        # too, and count it against the account on the way to a ban).
        with pytest.raises(ExchangeUnavailable, match="Retry-After"):
            await exchange.place_order(rig.market(f"{ID}-e2", OrderSide.BUY, "0.01"))
        with pytest.raises(ExchangeUnavailable, match="Retry-After"):
            await exchange.fetch_positions()
        assert await _order_requests(rig) == 1

        # Once it has passed, requests go out again.
        async def placed() -> bool:
            try:
                report = await exchange.place_order(rig.market(f"{ID}-e3", OrderSide.BUY, "0.01"))
            except ExchangeUnavailable:
                return False
            return report.status is OrderStatus.FILLED

        await until(placed, timeout=10.0, what="an order after the Retry-After")
        assert await _order_requests(rig) == 2


async def test_after_a_10006_nothing_is_sent_to_bybit_until_its_limit_resets() -> None:
    async with rig_for("bybit") as made:
        assert isinstance(made, ServerRig)
        rig, exchange = made, made.exchange
        # The exchange's clock runs 30 s ahead of the host's: its reset timestamp is on its clock.
        await rig.faults(clock_offset=30, rate_limit_if=True, retry_after=2)
        with pytest.raises(ExchangeUnavailable):
            await exchange.place_order(rig.market(f"{ID}-e1", OrderSide.BUY, "0.01"))
        assert await _order_requests(rig, "/v5/order/create") == 1
        await rig.faults(rate_limit_if=None)

        # Until X-Bapi-Limit-Reset-Timestamp: refused here, with nothing sent.
        sent = len(await _requests(rig))
        with pytest.raises(ExchangeUnavailable, match="X-Bapi-Limit-Reset-Timestamp"):
            await exchange.place_order(rig.market(f"{ID}-e2", OrderSide.BUY, "0.01"))
        with pytest.raises(ExchangeUnavailable, match="X-Bapi-Limit-Reset-Timestamp"):
            await exchange.fetch_positions()
        assert len(await _requests(rig)) == sent

        # Once the window has reset, requests go out again.
        async def placed() -> bool:
            try:
                await exchange.place_order(rig.market(f"{ID}-e3", OrderSide.BUY, "0.01"))
            except ExchangeUnavailable:
                return False
            return True

        await until(placed, timeout=10.0, what="an order after the reset")
        assert await _order_requests(rig, "/v5/order/create") == 2


async def test_after_a_403_nothing_is_sent_to_bybit_for_ten_minutes() -> None:
    """Bybit answers HTTP 403 ("access too frequent") when the IP is over its limit: terminate all
    HTTP sessions and wait at least 10 minutes. (The simulator has no IP limit: the answer is
    handed to ccxt's error handler as its fetch would.)"""
    async with rig_for("bybit") as made:
        assert isinstance(made, ServerRig)
        rig, exchange = made, made.adapters[0]
        url, body = f"{rig.base}/v5/position/list", "access too frequent"
        exchange.client.handle_errors(403, "Forbidden", url, "GET", {}, body, None, {}, None)
        with pytest.raises(ccxt.RateLimitExceeded):  # what ccxt makes of it, after its error handler
            exchange.client.handle_http_status_code(403, "Forbidden", url, "GET", body)
        assert exchange.rate_limited_until - time.monotonic() > 9 * 60
        with pytest.raises(ExchangeUnavailable, match="403"):
            await exchange.fetch_positions()
        assert await _requests(rig) == []


async def test_a_bybit_reset_timestamp_holds_back_within_bounds(caplog: pytest.LogCaptureFixture) -> None:
    """A reset already past holds nothing back; one absurdly far off holds back a minute at most,
    and says so."""
    exchange = CcxtBybitExchange.create(api_key="k", api_secret="s", base_url="http://127.0.0.1:9")
    try:
        client, url = exchange.client, "http://127.0.0.1:9/v5/order/create"

        def refused(reset_ms: int) -> None:
            headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}
            answer = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}
            with pytest.raises(ccxt.RateLimitExceeded):
                client.handle_errors(200, "OK", url, "POST", headers, json.dumps(answer), answer, {}, None)

        refused(exchange.exchange_now_ms() - 5_000)
        assert exchange.rate_limited_until == float("-inf")
        refused(exchange.exchange_now_ms() + 10**12)  # some 30 years
        left = exchange.rate_limited_until - time.monotonic()
        assert 55 < left <= 60
        assert "holding back 60 s only" in caplog.text
    finally:
        await exchange.close()


async def test_a_limit_on_this_address_holds_back_every_client_of_the_process_on_it() -> None:
    """Binance counts request weight per IP: its 429 (-1003) limits the address, not the account
    told, and another account of this process sending on earns the ban (418) for all of them.
    Every client of the process on that address holds back until the Retry-After has passed."""
    async with rig_for("binance") as made:
        assert isinstance(made, ServerRig)
        rig, told, other = made, made.exchange, made.fresh()
        await rig.faults(rate_limit_if=True, retry_after=2)
        with pytest.raises(ExchangeUnavailable):
            await told.place_order(rig.market(f"{ID}-e1", OrderSide.BUY, "0.01"))
        await rig.faults(rate_limit_if=None)
        sent = len(await _requests(rig))
        with pytest.raises(ExchangeUnavailable, match="Retry-After"):
            await other.fetch_positions()
        assert len(await _requests(rig)) == sent

        async def through() -> bool:
            try:
                await other.fetch_positions()
            except ExchangeUnavailable:
                return False
            return True

        await until(through, timeout=10.0, what="the other client's request after the Retry-After")


async def test_what_limits_the_address_and_what_only_the_account() -> None:
    """Binance: request weight (429 -1003) and its ban (418) are per IP; too many orders (429
    -1015) is the account's. Bybit: its 403 and retCode 10018 are the IP's; 10006 the account's."""
    binance = CcxtExchange.create(api_key="k", api_secret="s", base_url="http://127.0.0.1:9")
    bybit = CcxtBybitExchange.create(api_key="k", api_secret="s", base_url="http://127.0.0.1:9")
    try:
        assert binance.limits_address(429, {"code": -1003, "msg": "Too many requests"})
        assert binance.limits_address(418, {"code": -1003, "msg": "IP banned until 1"})
        assert not binance.limits_address(429, {"code": -1015, "msg": "Too many new orders"})
        assert bybit.limits_address(403, None)
        assert bybit.limits_address(200, {"retCode": 10018, "retMsg": "Exceeded the IP Rate Limit"})
        assert not bybit.limits_address(200, {"retCode": 10006, "retMsg": "Too many visits!"})
    finally:
        await binance.close()
        await bybit.close()
