"""A transaction the RPC reports confirmed before it can read the transaction's logs.

The sidecar names the orders a confirmed transaction placed from its logs (`getTransaction`); an
RPC may answer the signature's status before it serves the transaction, and the sidecar then
says `confirmed` with no orders. Until the orders are named, whose order holds one of our u8s
cannot be told: it must not be called an outside order (reconciliation would cancel our own
stop as a stray, and its fills would be booked as the trader's).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from warden.adapters.drift import DriftExchange
from warden.domain.reports import OrderRequest
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol
from warden.ports import ExchangeTimeout, ExchangeUnavailable

from .conftest import DriftSim

SOL = Symbol("SOL-PERP")
D = Decimal


async def test_an_order_of_ours_whose_confirmed_transaction_names_no_orders_yet_is_not_called_outside(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift_sim.control("POST", "/sim/faults", {"timeout_after_execution_if": "trigger_market-*"})
    stop = OrderRequest(
        ClientOrderId("w-stop-1"), SOL, OrderSide.SELL, OrderType.STOP_MARKET, D(1), D(140), True
    )
    with pytest.raises(ExchangeTimeout):
        await drift.place_order(stop)
    [resting] = drift_sim.venue.user()["orders"]
    venue = drift_sim.venue
    status = venue.status

    def not_indexed_yet(tx: Any) -> Any:
        shown = status(tx)
        if shown.get("status") == "confirmed":
            shown["orders"] = []
        return shown

    venue.status = not_indexed_yet  # type: ignore[method-assign]
    try:
        owner = await drift.owner(int(resting["order_id"]), int(resting["user_order_id"]))
    except ExchangeUnavailable:
        owner = None  # not known yet: asked again later
    assert owner != f"drift-{resting['order_id']}", "our own stop was called an outside order"
    venue.status = status  # type: ignore[method-assign]
    assert await drift.owner(int(resting["order_id"]), int(resting["user_order_id"])) == "w-stop-1"
