"""The sidecar restarts between signing a transaction and sending it: the signed bytes are gone.

The sidecar keeps what it signed in memory only; a sidecar that restarted (kill -9, supervised
restart) answers the send with 404 "did not sign that transaction". Nothing was sent and nothing
can be: the order is not placed, and warden must neither crash the call nor wait out the
blockhash (a minute on mainnet) before it signs a new transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import eventually
from warden.adapters.drift import DriftExchange
from warden.domain.orders import OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol
from warden.ports import ExchangeUnavailable, OrderNotFound

from .conftest import DriftSim
from .test_one_transaction import DriftEngine, protected, resting, uncovered

SOL = Symbol("SOL-PERP")
D = Decimal


@pytest.fixture
async def warden(drift_sim: DriftSim) -> AsyncIterator[DriftEngine]:
    engine = await DriftEngine(drift_sim).start()
    try:
        yield engine
    finally:
        await engine.stop()


def lose_next_signed(exchange: DriftExchange, sim: DriftSim, times: int = 1) -> list[str]:
    """The next `times` transactions signed are lost by a sidecar restart before their send."""
    lost: list[str] = []
    client = exchange.client
    prepare = client.prepare_place

    async def prepare_then_restart(orders: list[Any]) -> Any:
        prepared = await prepare(orders)
        if len(lost) < times:
            lost.append(str(prepared["signature"]))
            del sim.venue.txs[prepared["signature"]]  # the restarted sidecar never signed it
        return prepared

    client.prepare_place = prepare_then_restart  # type: ignore[method-assign]
    return lost


async def test_a_send_the_restarted_sidecar_never_signed_is_not_sent_and_a_new_one_goes_at_once(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    stop = OrderRequest(
        ClientOrderId("w-stop-1"), SOL, OrderSide.SELL, OrderType.STOP_MARKET, D(1), D(140), True
    )
    lost = lose_next_signed(drift, drift_sim)
    report = await drift.place_order(stop)  # signed again at once: no blockhash to wait out
    assert len(lost) == 1
    assert report.status is OrderStatus.OPEN and report.trigger_price == D(140)
    assert len(resting(drift_sim)) == 1


async def test_a_stop_cancelled_by_hand_is_placed_again_though_the_sidecar_restarted_mid_send(
    warden: DriftEngine, drift_sim: DriftSim
) -> None:
    await warden.open("long", "1")
    position = await protected(warden)
    [stop] = [o for o in resting(drift_sim) if o["trigger_condition"] == "below"]
    lose_next_signed(warden.exchange, drift_sim)
    await drift_sim.control("POST", "/sim/cancel", {"order_id": stop["order_id"]})
    await eventually(
        lambda: any(o["trigger_condition"] == "below" for o in resting(drift_sim)),
        what="the stop rests again",
        timeout=5.0,
    )
    await warden.engine.wait_idle()
    assert warden.engine.ledger.positions[position.id].status is PositionStatus.PROTECTED
    assert uncovered(drift_sim) < warden.config.protection_window


async def test_an_open_whose_signed_transaction_the_restarted_sidecar_lost_opens_protected(
    warden: DriftEngine, drift_sim: DriftSim
) -> None:
    lost = lose_next_signed(warden.exchange, drift_sim)
    await warden.open("long", "1")
    await protected(warden)
    assert len(lost) == 1
    assert uncovered(drift_sim) == 0.0


async def test_a_cancel_the_restarted_sidecar_never_sent_is_not_taken_for_an_order_that_is_gone(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    stop = OrderRequest(
        ClientOrderId("w-stop-1"), SOL, OrderSide.SELL, OrderType.STOP_MARKET, D(1), D(140), True
    )
    await drift.place_order(stop)
    client = drift.client
    prepare = client.prepare_cancel

    async def prepare_then_restart(order_ids: list[int]) -> Any:
        prepared = await prepare(order_ids)
        del drift_sim.venue.txs[prepared["signature"]]
        return prepared

    client.prepare_cancel = prepare_then_restart  # type: ignore[method-assign]
    try:
        await drift.cancel_order(SOL, "w-stop-1", True)
    except OrderNotFound as exc:
        raise AssertionError(f"the stop still rests, but the cancel said it is gone: {exc}") from exc
    except ExchangeUnavailable:
        pass
    assert len(resting(drift_sim)) == 1
