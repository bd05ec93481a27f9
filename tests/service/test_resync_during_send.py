"""A resync (recovery's, or a stream gap's) that meets an order whose send is still under way in
this engine leaves it to its sender: it is not looked up and declared never sent.

Found on Drift (tests/drift/test_one_transaction.py, crash at call 4, ~1 run in 30): recovery
moved a stop to the fill's level while it resynced the same position; the new stop's intent was
written, its send not yet begun on the venue, so the lookup answered "never sent" and the stop
was recorded REJECTED. It landed a moment later and rested, but memory held no live stop (the
old one was cancelled by the move) until the reconciler noticed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.helpers import eventually
from tests.service.harness import Harness
from warden.domain.orders import OrderStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import OrderRole


async def test_a_resync_leaves_a_stop_whose_send_is_under_way_to_its_sender(harness: Harness) -> None:
    h = harness
    pos = await h.open("long", usd="100")
    old = h.engine.ledger.current_stop(pos.id)
    assert old is not None and old.status is OrderStatus.OPEN

    sending, release = asyncio.Event(), asyncio.Event()
    place = h.sim.place_order

    async def held(request: OrderRequest, *args: Any, **kwargs: Any) -> Any:
        if request.client_order_id.endswith("-s2"):
            sending.set()
            await release.wait()  # the moved stop's send is under way, not yet on the venue
        return await place(request, *args, **kwargs)

    h.sim.place_order = held  # type: ignore[method-assign]
    target = (old.trigger_price or Decimal(0)) + Decimal("0.5") * pos.side.sign
    moving = asyncio.ensure_future(h.engine.exits.move_stop(pos.id, target))
    await asyncio.wait_for(sending.wait(), timeout=5)

    await h.engine.recovery.resync(pos.id)  # meets the moved stop's intent, still being sent
    release.set()
    await moving

    stop = h.engine.ledger.current_stop(pos.id)
    assert stop is not None and stop.client_order_id.endswith("-s2"), h.engine.ledger.orders_of(pos.id)
    assert stop.status is OrderStatus.OPEN and stop.trigger_price == target
    resting = [o for o in h.sim.core.open_orders() if o.client_order_id.endswith("-s2")]
    assert len(resting) == 1
    await eventually(
        lambda: not any(o.client_order_id == old.client_order_id for o in h.sim.core.open_orders())
    )
    stops = [o for o in h.engine.ledger.orders_of(pos.id) if o.role is OrderRole.STOP]
    assert [o.status for o in stops] == [OrderStatus.CANCELED, OrderStatus.OPEN]
