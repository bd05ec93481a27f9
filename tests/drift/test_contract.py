"""The Exchange port's contract on Drift: `DriftExchange` against the simulated Drift venue (sidecar
protocol v1 on the shared matching core), each test one behaviour the engine relies on."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.e2e.flows import Events
from tests.helpers import eventually, until
from warden.adapters.drift import DriftExchange
from warden.domain.orders import OrderStatus
from warden.domain.reports import (
    FillReport,
    MarkPrice,
    OrderReport,
    OrderRequest,
    PositionReport,
    StreamGap,
)
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Side, Symbol
from warden.ports import ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

from .conftest import DriftSim

SOL = Symbol("SOL-PERP")
D = Decimal


def market(cid: str, side: OrderSide, qty: str, *, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(ClientOrderId(cid), SOL, side, OrderType.MARKET, D(qty), None, reduce_only)


def trigger(cid: str, kind: OrderType, side: OrderSide, qty: str, price: str) -> OrderRequest:
    return OrderRequest(ClientOrderId(cid), SOL, side, kind, D(qty), D(price), True)


async def pause() -> None:
    await asyncio.sleep(0.01)  # the pace of a poll that has a deadline, not a synchronisation


async def filled(drift: DriftExchange, cid: str, within: float = 5.0) -> OrderReport:
    """Look the order up until it is filled (the auction takes a moment); fail after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        report = await drift.fetch_order(SOL, cid, False)
        if report.status is OrderStatus.FILLED:
            return report
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{cid} never filled: {report}")
        await pause()


async def test_markets_are_perp_symbols_with_the_accounts_precisions(drift: DriftExchange) -> None:
    instruments = await drift.instruments()
    sol = instruments[SOL]
    assert (sol.lot_size, sol.tick_size, sol.min_qty, sol.min_notional) == (
        D("0.01"),
        D("0.001"),
        D("0.01"),
        D(0),
    )
    assert "BTC-PERP" in instruments and len(instruments) == 10
    assert await drift.mark_price(SOL) == D(150)  # the oracle: triggers fire on it


async def test_a_market_order_is_acknowledged_then_filled_by_auction_at_a_spread(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    report = await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    assert (report.status, report.filled_qty, report.client_order_id) == (
        OrderStatus.OPEN,
        D(0),
        "wd-aaaaaa-p1-e1",
    )
    done = await filled(drift, "wd-aaaaaa-p1-e1")
    assert done.avg_price == D("150.075")  # oracle 150 + 0.05 % (the auction's spread), on the tick
    [fill] = await drift.fetch_fills(SOL, None)
    assert (fill.client_order_id, fill.qty, fill.price, fill.side) == (
        "wd-aaaaaa-p1-e1",
        D(1),
        D("150.075"),
        OrderSide.BUY,
    )
    assert fill.fee == D("0.052526")
    assert await drift.fetch_positions() == [PositionReport(SOL, Side.LONG, D(1), D("150.075"))]


async def test_stops_and_take_profits_rest_as_trigger_orders_on_the_oracle(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await filled(drift, "wd-aaaaaa-p1-e1")
    stop = await drift.place_order(
        trigger("wd-aaaaaa-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "148.5")
    )
    tp = await drift.place_order(
        trigger("wd-aaaaaa-p1-a1", OrderType.TAKE_PROFIT_MARKET, OrderSide.SELL, "0.6", "151.5")
    )
    assert (stop.type, stop.trigger_price, stop.reduce_only) == (OrderType.STOP_MARKET, D("148.5"), True)
    assert tp.type is OrderType.TAKE_PROFIT_MARKET
    conditions = {
        o["user_order_id"]: o["trigger_condition"]
        for o in (await drift_sim.control("GET", "/sim/state"))["open_orders"]
    }
    assert sorted(conditions.values()) == ["above", "below"]
    opened = {o.client_order_id for o in await drift.fetch_open_orders()}
    assert opened == {"wd-aaaaaa-p1-s1", "wd-aaaaaa-p1-a1"}
    events = Events(drift.stream())
    try:
        await eventually(lambda: bool(drift_sim.venue.sockets), what="the event socket")
        await drift_sim.control("POST", "/sim/price", {"symbol": "SOL", "price": "148"})
        fill = await events.wait_for(lambda e: isinstance(e, FillReport))
        assert isinstance(fill, FillReport) and fill.client_order_id == "wd-aaaaaa-p1-s1"
        assert fill.price == D("147.926")  # the oracle at the keeper's fill, minus the spread
    finally:
        await events.stop()


async def test_user_order_ids_are_held_until_final_and_never_given_to_a_second_live_order(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await filled(drift, "wd-aaaaaa-p1-e1")
    await drift.place_order(trigger("wd-aaaaaa-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "140"))
    rows = {r.client_order_id: r for r in await drift.ids.live()}
    assert set(rows) == {"wd-aaaaaa-p1-s1"}, "the filled entry's id was released, the stop's is held"
    assert rows["wd-aaaaaa-p1-s1"].tx_signature and rows["wd-aaaaaa-p1-s1"].order_id
    await drift.place_order(trigger("wd-aaaaaa-p1-s2", OrderType.STOP_MARKET, OrderSide.SELL, "1", "141"))
    live = {r.client_order_id: r.user_order_id for r in await drift.ids.live()}
    assert len(set(live.values())) == 2, live
    await drift.cancel_order(SOL, "wd-aaaaaa-p1-s1", True)
    assert {r.client_order_id for r in await drift.ids.live()} == {"wd-aaaaaa-p1-s2"}


async def test_what_drift_would_round_is_refused_before_anything_is_signed(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    with pytest.raises(OrderRejected, match="steps"):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1.005"))
    with pytest.raises(OrderRejected, match="tick"):
        await drift.place_order(
            trigger("wd-aaaaaa-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "140.0005")
        )
    assert drift_sim.requests("/v1/tx") == []


async def test_a_transaction_answered_late_is_unknown_then_found_and_never_sent_twice(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift_sim.control("POST", "/sim/faults", {"timeout_after_execution_if": "market-*"})
    with pytest.raises(ExchangeTimeout):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await drift_sim.control("POST", "/sim/faults", {"timeout_after_execution_if": None})
    found = await drift.fetch_order(SOL, "wd-aaaaaa-p1-e1", False)
    assert found.client_order_id == "wd-aaaaaa-p1-e1"
    again = await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    assert again.exchange_order_id == found.exchange_order_id
    assert len(drift_sim.requests("/v1/tx/place")) == 1, "a second transaction was built"
    assert (await filled(drift, "wd-aaaaaa-p1-e1")).filled_qty == 1


async def test_a_transaction_that_never_lands_is_pending_until_its_blockhash_expires(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift_sim.control("POST", "/sim/faults", {"expire_if": "market-*", "blockhash_ttl": 0.8})
    with pytest.raises(ExchangeTimeout):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    with pytest.raises(ExchangeUnavailable, match="may land"):
        await drift.fetch_order(SOL, "wd-aaaaaa-p1-e1", False)
    with pytest.raises(ExchangeTimeout, match="may still land"):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    assert len(drift_sim.requests("/v1/tx/place")) == 1, "a new transaction while the old could land"
    expired = False
    for _ in range(500):  # a deadline of about 5 s
        try:
            await drift.fetch_order(SOL, "wd-aaaaaa-p1-e1", False)
        except OrderNotFound:
            expired = True
            break
        except ExchangeUnavailable:
            await pause()
    assert expired, "the dropped transaction never expired"
    assert await drift.ids.live() == []
    await drift_sim.control("POST", "/sim/faults", {"expire_if": None})
    report = await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    assert report.status is OrderStatus.OPEN and len(drift_sim.requests("/v1/tx/place")) == 2


async def test_a_resend_hanging_at_the_rpc_holds_up_no_other_order(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    """An entry whose transaction's outcome is unknown is sent again (the same signed bytes) and
    that send hangs at the RPC. Meanwhile a stop for another position must go out at once: one
    order's slow resend may not hold every other Drift order past the protection window."""
    await drift_sim.control("POST", "/sim/faults", {"expire_if": "market-*"})
    with pytest.raises(ExchangeTimeout):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await drift_sim.control("POST", "/sim/faults", {"hold_send_if": "market-*"})
    resend = asyncio.create_task(drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1")))
    await eventually(lambda: drift_sim.venue.held == 1, what="the resend hanging at the RPC")
    stop = trigger("wd-bbbbbb-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "140")
    report = await asyncio.wait_for(drift.place_order(stop), 2.0)  # the protection window
    assert report.status is OrderStatus.OPEN
    assert not resend.done()
    with pytest.raises(ExchangeTimeout):  # a second call for the hanging id is not sent twice
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await drift_sim.control("POST", "/sim/faults", {"hold_send_if": None})
    with pytest.raises(ExchangeTimeout, match="may still land"):
        await resend
    assert len(drift_sim.requests("/v1/tx/place")) == 2, "one transaction for the entry, one for the stop"


async def test_refusals_and_outages_are_the_ports_errors(drift: DriftExchange, drift_sim: DriftSim) -> None:
    await drift_sim.control("POST", "/sim/faults", {"reject_if": "market-*"})
    with pytest.raises(OrderRejected):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    assert await drift.ids.live() == []
    await drift_sim.control("POST", "/sim/faults", {"reject_if": None, "unavailable_if": True})
    with pytest.raises(ExchangeUnavailable):
        await drift.place_order(market("wd-aaaaaa-p1-e2", OrderSide.BUY, "1"))
    await drift_sim.control("POST", "/sim/faults", {"unavailable_if": None})
    report = await drift.place_order(
        market("wd-aaaaaa-p1-e2", OrderSide.BUY, "1")
    )  # the same signed tx again
    assert report.status is OrderStatus.OPEN
    assert len(drift_sim.requests("/v1/tx/place")) == 2
    await drift_sim.control("POST", "/sim/faults", {"fail_queries": True})
    with pytest.raises(ExchangeUnavailable):
        await drift.fetch_positions()


async def test_drifts_account_limits_refuse_the_33rd_order_and_the_9th_market(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    for n in range(32):
        await drift.place_order(
            trigger(f"wd-aaaaaa-p1-s{n}", OrderType.STOP_MARKET, OrderSide.SELL, "0.01", "100")
        )
    with pytest.raises(OrderRejected, match="MaxNumberOfOrders"):
        await drift.place_order(
            trigger("wd-aaaaaa-p1-s99", OrderType.STOP_MARKET, OrderSide.SELL, "0.01", "100")
        )
    assert len({r.user_order_id for r in await drift.ids.live()}) == 32


async def test_nine_markets_are_one_too_many(drift: DriftExchange, drift_sim: DriftSim) -> None:
    instruments = await drift.instruments()
    symbols = sorted(instruments, key=lambda s: s != SOL)[:9]
    for n, symbol in enumerate(symbols[:8]):
        inst = instruments[symbol]
        request = OrderRequest(
            ClientOrderId(f"wd-aaaaaa-q{n}-s1"),
            symbol,
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            inst.min_qty,
            inst.tick_size,
            True,
        )
        await drift.place_order(request)
    inst = instruments[symbols[8]]
    ninth = OrderRequest(
        ClientOrderId("wd-aaaaaa-q9-s1"),
        symbols[8],
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        inst.min_qty,
        inst.tick_size,
        True,
    )
    with pytest.raises(OrderRejected, match="MaxNumberOfPositions"):
        await drift.place_order(ninth)


async def test_an_outside_order_is_not_warden_s_and_its_user_order_id_is_avoided(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift_sim.control("POST", "/sim/external-order", {"symbol": "SOL", "side": "buy", "qty": "2"})
    [outside] = await drift.fetch_fills(SOL, None)
    assert outside.client_order_id.startswith("drift-")
    assert await drift.fetch_positions() == [PositionReport(SOL, Side.LONG, D(2), outside.price)]


async def test_a_cancel_of_an_order_that_filled_reports_it_filled(drift: DriftExchange) -> None:
    await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await filled(drift, "wd-aaaaaa-p1-e1")
    report = await drift.cancel_order(SOL, "wd-aaaaaa-p1-e1", False)
    assert report.status is OrderStatus.FILLED
    with pytest.raises(OrderNotFound):
        await drift.cancel_order(SOL, "wd-never-sent-e1", False)


async def test_a_fresh_process_attributes_fills_through_the_table(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await filled(drift, "wd-aaaaaa-p1-e1")
    fresh = drift_sim.exchange()
    try:
        [fill] = await fresh.fetch_fills(SOL, None)
        assert fill.client_order_id == "wd-aaaaaa-p1-e1"
    finally:
        await fresh.close()


async def test_a_dropped_event_stream_yields_a_gap_once_it_is_back(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    events = Events(drift.stream())
    try:
        await eventually(lambda: bool(drift_sim.venue.sockets), what="the event socket")
        await drift_sim.control("POST", "/sim/disconnect", {})
        await events.wait_for(lambda e: isinstance(e, StreamGap), timeout=10)
    finally:
        await events.stop()


async def test_an_order_being_sent_keeps_its_user_order_id_while_others_look_it_up(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    """Between allocating a u8 and recording its signed transaction, a lookup of the same order
    (the engine's reconciler sweeping open orders, or a work-order lookup) must not take the row
    for "never sent" and release it: the order lands holding a u8 the table had given up, and the
    next allocation hands that u8 to a second live order (the kill -9 e2e's flake)."""
    await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await filled(drift, "wd-aaaaaa-p1-e1")
    signing = asyncio.Event()
    go_on = asyncio.Event()
    prepare = drift.client.prepare_place

    async def held_prepare(orders: list[dict[str, object]]) -> dict[str, object]:
        signing.set()
        await go_on.wait()
        return await prepare(orders)

    drift.client.prepare_place = held_prepare  # type: ignore[method-assign]
    stop = asyncio.create_task(
        drift.place_order(trigger("wd-aaaaaa-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "140"))
    )
    await signing.wait()
    with pytest.raises(ExchangeUnavailable, match="being sent"):
        await drift.fetch_order(SOL, "wd-aaaaaa-p1-s1", True)
    await drift.fetch_open_orders()  # the sweep settles rows with no order id yet
    go_on.set()
    placed = await stop
    assert placed.status is OrderStatus.OPEN
    live = {r.client_order_id: r.user_order_id for r in await drift.ids.live()}
    [resting] = (await drift_sim.control("GET", "/sim/state"))["open_orders"]
    assert live == {"wd-aaaaaa-p1-s1": resting["user_order_id"]}, "the resting stop's u8 was released"


async def outside_trigger_with(drift_sim: DriftSim, user_order_id: int) -> int:
    """The trader's own bot places a trigger order carrying `user_order_id` (Drift lets any
    client pick its u8): a place_orders transaction of its own, straight to the venue."""
    order = {
        "market_index": 0,
        "order_type": "trigger_market",
        "direction": "long",
        "base_asset_amount": "3000000000",
        "trigger_price": "200000000",
        "trigger_condition": "above",
        "reduce_only": False,
        "user_order_id": user_order_id,
    }
    prepared = await drift_sim.control("POST", "/v1/tx/place", {"orders": [order]})
    sent = await drift_sim.control("POST", f"/v1/tx/{prepared['signature']}/send")
    assert sent["status"] == "confirmed", sent
    [placed] = sent["orders"]
    return int(placed["order_id"])


async def test_an_outside_order_holding_the_user_order_id_of_a_transaction_not_landed_is_not_warden_s(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    """warden's stop went out in a transaction that has not landed (confirmation hangs: seed 000);
    meanwhile the trader's own bot places an order with the same u8, which Drift takes (no open
    order holds it). That order is not warden's stop: taking it for one would show the position
    protected while it is not, and a cancel of the stop would cancel the trader's order."""
    await drift_sim.control(
        "POST", "/sim/faults", {"expire_if": "trigger_market-short-below-*", "blockhash_ttl": 0.8}
    )
    with pytest.raises(ExchangeTimeout):
        await drift.place_order(trigger("wd-aaaaaa-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "140"))
    [row] = await drift.ids.live()
    theirs = await outside_trigger_with(drift_sim, row.user_order_id)

    with pytest.raises(ExchangeUnavailable, match="not known yet"):  # while warden's could still land
        await drift.fetch_open_orders()
    with pytest.raises(ExchangeUnavailable, match="may land"):
        await drift.fetch_order(SOL, "wd-aaaaaa-p1-s1", True)
    with pytest.raises(ExchangeUnavailable):
        await drift.cancel_order(SOL, "wd-aaaaaa-p1-s1", True)

    async def reported() -> list[OrderReport] | None:
        try:
            return await drift.fetch_open_orders()
        except ExchangeUnavailable:
            return None

    reports: list[OrderReport] | None = None
    for _ in range(500):  # a deadline of about 5 s: the dropped transaction expires
        reports = await reported()
        if reports is not None:
            break
        await pause()
    assert reports is not None, "the dropped transaction never settled"
    [report] = reports
    assert report.client_order_id == f"drift-{theirs}", "the trader's order was taken for warden's stop"
    with pytest.raises(OrderNotFound):
        await drift.fetch_order(SOL, "wd-aaaaaa-p1-s1", True)
    [resting] = (await drift_sim.control("GET", "/sim/state"))["open_orders"]
    assert resting["order_id"] == theirs, "warden cancelled the trader's order"


async def test_a_market_listed_after_warden_loaded_the_markets_breaks_neither_reads_nor_the_stream(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    """Drift lists perp markets while warden runs; the trader trades a new one by hand. Its
    position, orders and fills are in the user account and on the event socket: reading them
    must not fail every reconciliation (`market index 9 is unknown`), and the stream must not
    drop and reconnect on each of their events (events meanwhile lost)."""
    venue = drift_sim.venue
    sui = venue.markets.pop(9)  # not listed yet when warden loads the markets
    assert SOL in await drift.instruments()
    venue.markets[9] = sui  # listed now
    events = Events(drift.stream())
    try:
        await eventually(lambda: bool(venue.sockets), what="the event socket")
        await drift_sim.control("POST", "/sim/price", {"symbol": "SUI", "price": "3.1"})
        await events.wait_for(lambda e: isinstance(e, MarkPrice) and e.symbol == "SUI-PERP", timeout=10)
        await drift_sim.control("POST", "/sim/external-order", {"symbol": "SUI", "side": "buy", "qty": "10"})
        positions = await drift.fetch_positions()
        assert [(p.symbol, p.side, p.qty) for p in positions] == [(Symbol("SUI-PERP"), Side.LONG, D(10))]
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
        await events.wait_for(
            lambda e: isinstance(e, FillReport) and e.client_order_id == "wd-aaaaaa-p1-e1", timeout=10
        )
        assert [e for e in events.seen if isinstance(e, StreamGap)] == [], "the stream dropped"
    finally:
        await events.stop()


@pytest.mark.parametrize(
    "garbage",
    [
        {"v": 1, "type": "order", "order": {"order_id": 7}},  # fields missing
        {"v": 1, "type": "fill", "fill": None},
        ["not", "an", "object"],
    ],
)
async def test_an_unreadable_event_is_a_gap_and_the_stream_goes_on(
    drift: DriftExchange, drift_sim: DriftSim, garbage: object
) -> None:
    """A sidecar that answers garbage on its event socket (a bug, another build) loses that event:
    the stream says so (a gap: the engine reconciles) and goes on. It must not end: the engine's
    stream loop would end with it, leaving trailing stops frozen until a restart."""
    venue = drift_sim.venue
    events = Events(drift.stream())
    try:
        await eventually(lambda: len(venue.sockets) == 1, what="the event socket")
        [ws] = venue.sockets
        await ws.send_json(garbage)
        await events.wait_for(lambda e: isinstance(e, StreamGap), timeout=10)
        await drift_sim.control("POST", "/sim/price", {"symbol": "SOL", "price": "151"})
        await events.wait_for(lambda e: isinstance(e, MarkPrice) and e.price == D(151), timeout=10)
    finally:
        await events.stop()


async def test_user_order_ids_of_the_trader_s_orders_that_ended_are_free_again(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    """The trader's own bot, over a long run, has used every one of the 255 user order ids (at
    most 32 open at a time, each cancelled later). warden avoids the ids of the trader's orders
    that are open, not of every order it ever saw: with all of them ended, warden's stop still
    gets an id (it was refused: 'no user order id free', and protect-or-close's close too)."""
    for first in range(1, 256, 32):
        ids = range(first, min(first + 32, 256))
        placed = [await outside_trigger_with(drift_sim, u8) for u8 in ids]
        await drift.fetch_open_orders()  # warden sees them: theirs, their ids avoided meanwhile
        prepared = await drift_sim.control("POST", "/v1/tx/cancel", {"order_ids": placed})
        sent = await drift_sim.control("POST", f"/v1/tx/{prepared['signature']}/send")
        assert sent["status"] == "confirmed", sent
    assert await drift.fetch_open_orders() == []
    await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    await filled(drift, "wd-aaaaaa-p1-e1")
    stop = await drift.place_order(
        trigger("wd-aaaaaa-p1-s1", OrderType.STOP_MARKET, OrderSide.SELL, "1", "100")
    )
    assert stop.status is OrderStatus.OPEN


async def test_a_lookup_that_read_an_expired_transaction_does_not_release_the_order_sent_again(
    drift: DriftExchange, drift_sim: DriftSim
) -> None:
    """Found attacking 3db1e5d: a lookup (the reconciler's sweep, a work-order lookup) reads the
    row of a transaction that expired and asks its status; meanwhile the same client id is sent
    again (settled as expired, a new u8, a new transaction that lands). The lookup's answer
    'expired' is about the OLD transaction: it must not release the row of the new one, or the
    resting order holds a u8 the table gave up (and a retry after an unknown outcome would send
    a second order)."""
    await drift_sim.control("POST", "/sim/faults", {"expire_if": "market-*", "blockhash_ttl": 0.3})
    with pytest.raises(ExchangeTimeout):
        await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    [old] = await drift.ids.live()
    assert old.tx_signature is not None

    async def expired() -> bool:
        status = await drift.client.tx_status(old.tx_signature, old.last_valid_block_height)
        return status.get("status") == "expired"

    await until(expired, what="the first transaction expired")
    await drift_sim.control("POST", "/sim/faults", {"expire_if": None})
    answered, go_on = asyncio.Event(), asyncio.Event()
    tx_status = drift.client.tx_status

    async def slow_answer(signature: str, height: int | None) -> dict[str, object]:
        status = await tx_status(signature, height)
        if not answered.is_set():  # the lookup's: its answer arrives late
            answered.set()
            await go_on.wait()
        return status

    drift.client.tx_status = slow_answer  # type: ignore[method-assign]
    lookup = asyncio.create_task(drift.fetch_order(SOL, "wd-aaaaaa-p1-e1", False))
    await answered.wait()
    placed = await drift.place_order(market("wd-aaaaaa-p1-e1", OrderSide.BUY, "1"))
    assert placed.status is OrderStatus.OPEN
    go_on.set()
    with pytest.raises(ExchangeUnavailable):
        await lookup
    [row] = await drift.ids.live()
    assert row.client_order_id == "wd-aaaaaa-p1-e1" and row.tx_signature != old.tx_signature
