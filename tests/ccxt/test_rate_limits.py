"""A 429 / 418 from Binance says how long to stay away (`Retry-After`, seconds): requests sent
meanwhile are refused again, and Binance bans an IP that does not back off after a 429 (418,
from 2 minutes up to 3 days), during which no stop can be placed, moved or closed. Through
unmodified ccxt against the simulator's Binance face."""

from __future__ import annotations

import pytest

from tests.contract.rigs import ServerRig, rig_for
from tests.helpers import until
from warden.domain.orders import OrderStatus
from warden.domain.values import OrderSide
from warden.ports import ExchangeUnavailable

ID = "wd-a1b2c3-0123456789ab"


async def _order_requests(rig: ServerRig) -> int:
    async with rig.session.get(f"{rig.base}/sim/requests") as response:
        seen = await response.json(content_type=None)
    return sum(1 for r in seen if r["path"] == "/fapi/v1/order" and r["method"] == "POST")


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
