"""What the chaos campaign (issue 13) found in the ccxt adapter, as a test against the simulator server."""

from __future__ import annotations

from warden.adapters.ccxt import CcxtExchange
from warden.domain.reports import FillReport, StreamGap
from warden.domain.values import OrderSide

from .conftest import Sim
from .flows import market
from .test_ccxt_sim import streaming


async def test_after_the_listen_key_expires_the_user_stream_comes_back(
    sim: Sim, exchange: CcxtExchange
) -> None:
    """`POST /sim/expire-listen-key` (Binance pushes listenKeyExpired and closes the socket): ccxt
    reconnected with the expired key over and over (HTTP 400 each time) and never asked for a new
    one until its 20-minute keep-alive failed, so warden heard nothing of its orders' fills for up
    to 20 minutes (it fell back to a resync after every failed reconnect). A new key must be
    taken and the user stream must carry fills again: after a private socket fails, the adapter
    marks ccxt's cached key stale."""
    events = await streaming(sim, exchange)
    try:
        await sim.control("POST", "/sim/expire-listen-key")
        # The gap is announced once the private socket is connected again (the engine then
        # resyncs over REST what happened meanwhile); from then on fills come on the stream.
        await events.wait_for(lambda e: isinstance(e, StreamGap), timeout=15)
        await exchange.place_order(market("wd-p1-e1", OrderSide.BUY, "0.01"))
        await events.wait_for(
            lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-p1-e1", timeout=15
        )
    finally:
        await events.stop()
