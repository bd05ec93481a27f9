"""Opt-in smoke test against a venue's real test environment (`make testnet-smoke`; never in CI).

Runs only with WARDEN_TESTNET_SMOKE=1 (the make target sets it) and testnet keys:

    WARDEN_TESTNET_EXCHANGE=bybit|binanceusdm WARDEN_API_KEY=... WARDEN_API_SECRET=... make testnet-smoke

Read-only by default: markets, a mark price, positions, open orders, one mark on the stream.
WARDEN_TESTNET_TRADE=1 also opens the smallest long in BTC, waits for its fill, rests a stop
under it, sees it resting from the exchange's side (lookup and open orders), cancels it, closes
the position and waits until the exchange reports BTC flat (test money, but real orders).
The keys are read from the environment and never printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from decimal import ROUND_UP, Decimal
from typing import cast

import pytest

from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange
from warden.domain.orders import OrderStatus
from warden.domain.reports import MarkPrice, OrderReport, OrderRequest, StreamEvent
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol

pytestmark = [
    pytest.mark.testnet,
    pytest.mark.skipif(os.environ.get("WARDEN_TESTNET_SMOKE") != "1", reason="opt-in: make testnet-smoke"),
]

BTC = Symbol("BTC/USDT:USDT")
Adapter = CcxtExchange | CcxtBybitExchange


@pytest.fixture
async def exchange() -> AsyncIterator[Adapter]:
    key, secret = os.environ.get("WARDEN_API_KEY"), os.environ.get("WARDEN_API_SECRET")
    if not key or not secret:
        pytest.skip("WARDEN_API_KEY and WARDEN_API_SECRET (testnet keys) are not set")
    venue = os.environ.get("WARDEN_TESTNET_EXCHANGE", "bybit")
    adapter: Adapter
    if venue == "bybit":
        adapter = CcxtBybitExchange.create(api_key=key, api_secret=secret, testnet=True, symbols=[BTC])
    elif venue == "binanceusdm":
        adapter = CcxtExchange.create(api_key=key, api_secret=secret, testnet=True, symbols=[BTC])
    else:
        pytest.fail(f"WARDEN_TESTNET_EXCHANGE must be bybit or binanceusdm, not {venue!r}")
    try:
        yield adapter
    finally:
        await adapter.close()


async def test_reads_and_the_stream(exchange: Adapter) -> None:
    instruments = await exchange.instruments()
    assert BTC in instruments
    assert await exchange.mark_price(BTC) > 0
    await exchange.fetch_positions()
    await exchange.fetch_open_orders()
    stream = cast(AsyncGenerator[StreamEvent, None], exchange.stream())  # the adapters' are generators
    try:
        async with asyncio.timeout(30):
            async for event in stream:
                if isinstance(event, MarkPrice) and event.symbol == BTC:
                    break
    finally:
        await stream.aclose()


@pytest.mark.skipif(
    os.environ.get("WARDEN_TESTNET_TRADE") != "1", reason="set WARDEN_TESTNET_TRADE=1 to trade"
)
async def test_a_small_position_with_its_stop(exchange: Adapter) -> None:
    adapter = exchange
    instrument = (await adapter.instruments())[BTC]
    mark = await adapter.mark_price(BTC)
    qty = max(instrument.min_qty, (instrument.min_notional / mark).quantize(instrument.lot_size, ROUND_UP))
    tag = f"wd-smoke0-{secrets.token_hex(6)}"
    entry = await adapter.place_order(
        OrderRequest(ClientOrderId(f"{tag}-e1"), BTC, OrderSide.BUY, OrderType.MARKET, qty)
    )
    trigger = instrument.round_price(mark * Decimal("0.97"))
    try:
        filled = await settled(adapter, f"{tag}-e1", conditional=False)  # Bybit answers ids only
        assert (filled.status, filled.filled_qty) == (OrderStatus.FILLED, qty), filled
        stop = await adapter.place_order(
            OrderRequest(
                ClientOrderId(f"{tag}-s1"), BTC, OrderSide.SELL, OrderType.STOP_MARKET, qty, trigger, True
            )
        )
        assert stop.status is OrderStatus.OPEN
        found = await adapter.fetch_order(BTC, f"{tag}-s1", conditional=True)
        assert (found.status, found.trigger_price) == (OrderStatus.OPEN, trigger)
        assert f"{tag}-s1" in {o.client_order_id for o in await adapter.fetch_open_orders()}
        canceled = await adapter.cancel_order(BTC, f"{tag}-s1", conditional=True)
        assert canceled.status is OrderStatus.CANCELED
    finally:
        if entry.status is not OrderStatus.REJECTED:
            await adapter.place_order(
                OrderRequest(
                    ClientOrderId(f"{tag}-c1"), BTC, OrderSide.SELL, OrderType.MARKET, qty, None, True
                )
            )
    closed = await settled(adapter, f"{tag}-c1", conditional=False)
    assert closed.status is OrderStatus.FILLED, closed
    async with asyncio.timeout(30):
        while True:
            if all(p.symbol != BTC for p in await adapter.fetch_positions()):
                break  # flat
            await asyncio.sleep(0.5)  # a poll of the real exchange, bounded by the timeout


async def settled(adapter: Adapter, client_order_id: str, *, conditional: bool) -> OrderReport:
    """Look the order up until it is no longer OPEN (a Bybit answer carries ids only); 30 s at most."""
    async with asyncio.timeout(30):
        while True:
            report = await adapter.fetch_order(BTC, client_order_id, conditional)
            if report.status is not OrderStatus.OPEN:
                return report
            await asyncio.sleep(0.5)  # a poll of the real exchange, bounded by the timeout
