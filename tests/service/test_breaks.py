"""The protection breaks found by attacking warden (issue 7), each as a service test.

The engine runs on SQLite and PostgreSQL with the in-process simulated
exchange; protection is judged by what the exchange holds.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import BTC, FAST, SOL, Harness, looping_engine, moments
from warden.adapters.clock import FakeClock
from warden.adapters.db import rows, schema
from warden.adapters.db.store import SqlStore, open_store
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import AlertKind
from warden.domain.events import EventKind
from warden.domain.orders import Order, OrderStatus
from warden.domain.position import Position, PositionStatus
from warden.domain.reconcile import Kind
from warden.domain.reports import OrderRequest
from warden.domain.values import (
    ClientOrderId,
    OrderRole,
    OrderSide,
    OrderType,
    PositionId,
    Side,
    Symbol,
    client_order_id,
    parse_client_id,
)
from warden.ports import Transition
from warden.service.commands import (
    AlreadyExists,
    ClosePosition,
    EngineState,
    NotHolder,
    OpenPosition,
    TradingRefused,
)
from warden.service.engine import Engine

ETH = Symbol("ETH/USDT:USDT")


def stops(h: Harness, symbol: Symbol = SOL) -> list[object]:
    return [o for o in h.resting(symbol) if o.type is OrderType.STOP_MARKET]


def resting_qty(h: Harness, symbol: Symbol, order_type: OrderType) -> Decimal:
    return sum((o.qty for o in h.resting(symbol) if o.type is order_type), Decimal(0))


# ------------------------------------------------------------------ racing signals


async def test_simultaneous_signals_on_one_symbol_open_once(harness: Harness) -> None:
    """Twenty signals at once for one symbol (distinct ids, stacking off): one position, one size."""
    results = await asyncio.gather(
        *(harness.open("long", BTC, usd="200", signal_id=f"tv-{i}") for i in range(20)),
        return_exceptions=True,
    )
    opened = [r for r in results if isinstance(r, Position)]
    refused = [r for r in results if isinstance(r, AlreadyExists)]
    assert len(opened) == 1 and len(refused) == 19, results
    assert all("already has an open position" in str(r) for r in refused)
    await harness.engine.wait_idle()
    assert harness.exchange_qty(BTC) == opened[0].filled_qty


async def test_the_database_refuses_a_second_open_position_on_a_symbol(harness: Harness) -> None:
    """Even past the engine's own check, the store's unique index refuses a second exclusive position."""
    from warden.ports import SymbolBusy

    pos = await harness.open("long", SOL)
    twin = replace(
        pos, id=PositionId("twin00000001"), signal_id=None, version=1, status=PositionStatus.OPENING
    )
    with pytest.raises(SymbolBusy):
        await harness.store.commit(Transition(twin, None))


# --------------------------------------------------------------- acknowledged entries


async def test_an_entry_acknowledged_before_it_fills_is_protected(harness: Harness) -> None:
    """A market entry answered NEW with nothing filled is working: its later fill is protected."""
    harness.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    harness.sim.faults.fill_delay = 0.2  # within the saga's own wait (fill_wait 0.5 s)
    pos = await harness.open("short", SOL)
    assert pos.status is PositionStatus.PROTECTED, "the caller is answered once the stop rests"
    events = await harness.store.list_events(pos.id, 100)
    assert not [e for e in events if "deadline" in e.message], [e.message for e in events]
    now = harness.engine.ledger.positions[pos.id]
    assert now.filled_qty == -harness.exchange_qty(SOL) > 0
    assert resting_qty(harness, SOL, OrderType.STOP_MARKET) == now.remaining
    exposure = {e.symbol: e for e in harness.sim.exposure()}
    assert exposure[SOL].unprotected_seconds == 0
    assert exposure[SOL].max_unprotected_seconds < harness.engine.config.protection_window


async def test_an_entry_that_never_fills_is_cancelled_and_fails(harness: Harness) -> None:
    """Acknowledged and never filled by its deadline: cancelled; the position fails; nothing is left."""
    harness.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    harness.sim.faults.fill_delay = 3600
    await harness.stop()
    harness.config = replace(harness.config, entry_deadline=0.3)
    await harness.start()
    pos = await harness.open("long", SOL)
    await eventually(
        lambda: harness.engine.ledger.positions[pos.id].status is PositionStatus.FAILED, what="failed"
    )
    assert harness.exchange_qty(SOL) == 0 and harness.resting(SOL) == []


async def test_an_entry_whose_cancel_fails_at_its_deadline_is_not_called_failed_while_it_works(
    harness: Harness,
) -> None:
    """Unfilled at its deadline, the entry's cancel is refused (rate-limited) and a lookup shows it
    still working. It was recorded cancelled and its position failed, with no alert, while it went
    on working on the exchange (it could still fill). It stays opening and the cancel is tried
    again until the exchange takes it; only then does the position fail."""
    harness.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    harness.sim.faults.fill_delay = 3600
    await harness.stop()
    harness.config = replace(harness.config, entry_deadline=0.3)
    await harness.start()
    sent: list[str] = []
    cancels = 0

    def refuse_cancels(req: OrderRequest) -> bool:
        nonlocal cancels
        if req.type is not OrderType.MARKET:
            return False
        if req.client_order_id not in sent:  # the entry itself goes out
            sent.append(req.client_order_id)
            return False
        cancels += 1
        return True

    harness.sim.faults.rate_limit_if = refuse_cancels
    pos = await harness.open("long", SOL)
    await eventually(lambda: cancels >= 2, what="the entry's cancel tried again")
    entry = next(o for o in harness.engine.ledger.orders_of(pos.id) if o.role is OrderRole.ENTRY)
    assert [o.status for o in harness.sim.core.orders(SOL)] == [OrderStatus.OPEN]
    assert harness.engine.ledger.positions[pos.id].status is PositionStatus.OPENING
    assert entry.status is OrderStatus.OPEN
    trail = [e.message for e in await harness.store.list_events(pos.id, 100)]
    assert len([m for m in trail if "its cancel failed" in m]) == 1, trail

    harness.sim.faults.rate_limit_if = None
    await eventually(
        lambda: harness.engine.ledger.positions[pos.id].status is PositionStatus.FAILED, what="failed"
    )
    assert [o.status for o in harness.sim.core.orders(SOL)] == [OrderStatus.CANCELED]
    assert harness.exchange_qty(SOL) == 0 and harness.resting(SOL) == []


async def test_a_close_acknowledged_before_it_fills_still_closes(harness: Harness) -> None:
    """A reduce-only close answered NEW is awaited, not judged failed."""
    pos = await harness.open("long", SOL)
    harness.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    harness.sim.faults.fill_delay = 0.2
    closed = await harness.engine.close_position(ClosePosition(pos.id))
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason == "manual"
    await harness.engine.wait_idle()
    assert harness.exchange_qty(SOL) == 0 and harness.resting(SOL) == []


# ------------------------------------------------------------------------ standby


async def test_a_standby_neither_sends_nor_writes(harness: Harness) -> None:
    """An engine that is not the lease holder refuses reconcile and close, writing and sending nothing."""
    pos = await harness.open("long", SOL)
    harness.engine.set_read_only("standby: account 'default' is held by host:1")
    before = len(await harness.store.list_events(None, 1000))
    resting = harness.resting(SOL)
    with pytest.raises(NotHolder, match="held by host:1"):
        await harness.engine.reconcile()
    with pytest.raises(NotHolder):
        await harness.engine.close_position(ClosePosition(pos.id))
    assert len(await harness.store.list_events(None, 1000)) == before
    assert harness.resting(SOL) == resting


async def test_takeover_recovery_always_loads_from_the_database(harness: Harness) -> None:
    """Memory left over from before a takeover (a phantom) is dropped; the database's positions are loaded."""
    pos = await harness.open("long", SOL)
    phantom = replace(pos, id=PositionId("phantom00001"), symbol=BTC)
    harness.engine.ledger.load([phantom], [])
    harness.engine.take_over()
    await harness.engine.start()
    assert set(harness.engine.ledger.positions) == {pos.id}
    assert [o.qty for o in stops(harness)] == [pos.filled_qty]


# ---------------------------------------------------------------- other installation


async def test_another_wardens_orders_stop_trading_and_are_never_cancelled(harness: Harness) -> None:
    """An order with another installation's warden id: alerted, trading stops, the order is left alone."""
    own = await harness.open("long", SOL)
    assert parse_client_id(harness.engine.ledger.current_stop(own.id).client_order_id) is not None  # type: ignore[union-attr]
    other = OrderRequest(
        ClientOrderId("wd-zz9zz9-0123456789ab-s1"),
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        Decimal("0.01"),
        trigger_price=Decimal("60000"),
        reduce_only=True,
    )
    await harness.sim.place_order(other)
    report = await harness.engine.reconcile()
    assert Kind.OTHER_INSTANCE in {f.discrepancy.kind for f in report.findings}
    assert any(o.client_order_id == other.client_order_id for o in harness.resting(BTC))
    assert any(a.kind is AlertKind.OTHER_INSTANCE and a.level == "critical" for a in harness.notifier.alerts)
    assert not harness.engine.accepting_signals
    assert any("another warden" in r for r in harness.engine.status().reasons)
    with pytest.raises(TradingRefused):
        await harness.open("short", ETH)


# ------------------------------------------------------------------- outside trades


async def test_an_outside_flip_is_repaired_in_one_pass(harness: Harness) -> None:
    """Long 0.05 ETH adopted, then an outside sell of 0.1: one pass closes the long, cancels its
    sell-side exits and adopts and protects the short."""
    harness.sim.external_order(ETH, OrderSide.BUY, Decimal("0.05"))
    await harness.engine.reconcile()
    (long,) = harness.engine.ledger.active_positions()
    assert long.side is Side.LONG
    harness.sim.external_order(ETH, OrderSide.SELL, Decimal("0.1"))
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    active = harness.engine.ledger.active_positions()
    assert [(p.side, p.remaining) for p in active] == [(Side.SHORT, Decimal("0.05"))]
    assert harness.engine.ledger.positions[long.id].status is PositionStatus.CLOSED
    assert {o.side for o in harness.resting(ETH)} == {OrderSide.BUY}
    assert resting_qty(harness, ETH, OrderType.STOP_MARKET) == Decimal("0.05")
    assert (await harness.engine.reconcile()).findings == []


async def test_take_profits_are_resized_after_an_outside_partial_reduce(harness: Harness) -> None:
    """An outside reduce: stop and take-profits are re-sized; together the TPs never exceed the position."""
    pos = await harness.open("long", ETH, usd="300")
    harness.sim.external_order(ETH, OrderSide.SELL, Decimal("0.04"), reduce_only=True)
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    now = harness.engine.ledger.positions[pos.id]
    assert now.remaining == pos.filled_qty - Decimal("0.04")
    assert resting_qty(harness, ETH, OrderType.STOP_MARKET) == now.remaining
    assert resting_qty(harness, ETH, OrderType.TAKE_PROFIT_MARKET) <= now.remaining
    assert (await harness.engine.reconcile()).findings == []


@pytest.mark.parametrize("side", ["long", "short"])
async def test_outside_trades_are_applied_with_their_prices(harness: Harness, side: str) -> None:
    """Issue 8.5: an outside trade adding to the position (a buy on a long, a sell on a short)
    is applied at its own price: entry price and size follow the exchange."""
    pos = await harness.open(side, SOL, usd="15")
    harness.sim.set_mark(SOL, pos.entry_price + 2 * pos.side.sign)  # type: ignore[operator]
    # TP1 fills there; its handling (the stop re-sized) is not what this is about: let it end.
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="TP1 applied")
    await harness.engine.wait_idle()
    harness.sim.external_order(SOL, pos.side.entry_side, Decimal("1"))
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    now = harness.engine.ledger.positions[pos.id]
    (exchange,) = await harness.sim.fetch_positions()
    assert exchange.side is pos.side and now.remaining == exchange.qty
    assert now.entry_price is not None
    assert now.entry_price.quantize(Decimal("1e-8")) == exchange.entry_price
    assert resting_qty(harness, SOL, OrderType.STOP_MARKET) == now.remaining


async def test_a_row_written_behind_wardens_back_is_found(harness: Harness) -> None:
    """A position row inserted into the database by something else: event, alert, and checked
    against the exchange (flat there: closed through the state machine)."""
    pos = await harness.open("long", SOL)
    ghost = replace(pos, id=PositionId("ghostrow0001"), symbol=BTC, signal_id=None, version=1)
    await harness.store.commit(Transition(ghost, None))
    report = await harness.engine.reconcile()
    assert any(a.kind is AlertKind.UNKNOWN_ROW for a in harness.notifier.alerts)
    assert any(f.discrepancy.position_id == ghost.id for f in report.findings)
    stored = await harness.store.get_position(ghost.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED


# --------------------------------------------------------------------- start and smaller


async def test_a_start_that_fails_is_retried_until_it_passes(harness: Harness) -> None:
    """An exchange outage during start is retried with backoff; /status says why meanwhile."""
    await harness.stop()
    harness.sim.faults.fail_queries = True
    harness.config = replace(harness.config, retry_backoff=0.01)
    await harness.start(ready=False)
    task = asyncio.get_running_loop().create_task(harness.engine.start_with_retry())
    await eventually(lambda: any("retrying" in r for r in harness.engine.status().reasons), what="reason")
    assert harness.engine.state is EngineState.STARTING and not harness.engine.accepting_signals
    harness.sim.faults.fail_queries = False
    await asyncio.wait_for(task, 10)
    assert harness.engine.accepting_signals


async def test_a_close_reason_survives_a_restart(harness: Harness) -> None:
    """A close in flight when warden dies keeps the reason it was asked with (not "manual")."""
    pos = await harness.open("long", SOL)
    harness.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    harness.sim.faults.fill_delay = 0.3
    closing = asyncio.get_running_loop().create_task(
        harness.engine.close_position(ClosePosition(pos.id, reason="protection_failed"))
    )
    await eventually(
        lambda: harness.engine.ledger.positions[pos.id].status is PositionStatus.CLOSING, what="closing"
    )
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    await harness.restart()
    await eventually(
        lambda: harness.engine.ledger.positions[pos.id].status is PositionStatus.CLOSED, what="closed"
    )
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.exit_reason == "protection_failed"


async def test_each_exit_order_is_cancelled_once_per_close(harness: Harness) -> None:
    """Closing cancels each exit order exactly once (a second DELETE wastes request weight)."""
    pos = await harness.open("long", SOL)
    exits = {o.client_order_id for o in harness.engine.ledger.live_orders(pos.id)}
    before = len(harness.probe.cancels)
    await harness.engine.close_position(ClosePosition(pos.id))
    await harness.engine.wait_idle()
    assert sorted(harness.probe.cancels[before:]) == sorted(exits)


async def test_seed_000_a_restart_that_lost_the_queued_writes_keeps_the_resting_stop(
    harness: Harness,
) -> None:
    """`warden chaos --scenario seed-000`: the database fails as the entry goes out; warden
    protects anyway (stop and take-profits rest, their writes queued) and answers; the process
    restarts before the database is back for it, so the queued writes die with it. Recovery
    then re-placed the stop under the client id of the one still resting (its intent was never
    committed, so the id was not taken): the exchange refused the duplicate (-4116) and warden
    closed the protected position at market as protection_failed, leaving its take-profits as
    strays. The position must stay open, protected by exactly one stop of its size."""

    def database_dies_with_the_entry(request: OrderRequest) -> bool:
        if request.type is OrderType.MARKET and not request.reduce_only:
            harness.store.down = True
        return False

    harness.sim.faults.reject_if = database_dies_with_the_entry
    pos = await harness.open("short", usd="100")
    harness.sim.faults.reject_if = None
    assert pos.status is PositionStatus.PROTECTED
    await harness.engine.wait_idle()
    h = await harness.restart()  # a new process; its store answers again
    await h.engine.wait_idle()
    stops = [o for o in h.resting() if o.type is OrderType.STOP_MARKET]
    assert h.exchange_qty() == -pos.filled_qty, "the position was closed"
    assert [o.qty for o in stops] == [pos.filled_qty]
    assert h.engine.ledger.positions[pos.id].status is PositionStatus.PROTECTED


# ------------------------------------------------------------------ audit additions


async def test_a_stop_cancelled_by_hand_while_the_database_is_down_is_replaced(harness: Harness) -> None:
    """Issue 7.1: losing our own database is degraded, not standing down. A stop cancelled by
    hand meanwhile is put back on the exchange at once (its writes queued); when the database
    answers again the queued writes land and the engine is ready, with no restart."""
    pos = await harness.open("long", SOL)
    [stop] = stops(harness)
    harness.store.down = True
    harness.sim.cancel_external(stop.client_order_id)  # type: ignore[attr-defined]
    await eventually(
        lambda: (
            [(o.client_order_id != stop.client_order_id, o.qty) for o in stops(harness)]  # type: ignore[attr-defined]
            == [(True, pos.filled_qty)]
        ),
        what="the stop re-placed while the database is down",
    )
    await harness.engine.wait_idle()
    assert harness.engine.state is EngineState.DEGRADED
    assert not harness.engine.status().accepting_signals
    harness.store.down = False
    await harness.engine.flush_pending()
    assert harness.engine.state is EngineState.READY and harness.engine.status().pending_writes == 0
    [again] = stops(harness)
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.PROTECTED
    assert harness.engine.ledger.current_stop(pos.id).client_order_id == again.client_order_id  # type: ignore[union-attr]
    assert (await harness.engine.reconcile()).findings == []


async def test_a_signal_refused_for_the_database_shows_degraded_on_status(harness: Harness) -> None:
    """Issue 7.10: /status must not say `ready` while every signal gets database_unavailable."""
    from warden.ports import StoreUnavailable

    harness.store.down = True
    with pytest.raises(StoreUnavailable):
        await harness.open("long", SOL)
    assert harness.exchange_qty(SOL) == 0 and harness.resting(SOL) == []
    status = harness.engine.status()
    assert status.state is EngineState.DEGRADED and not status.accepting_signals
    assert any("database unavailable" in r for r in status.reasons), status.reasons
    harness.store.down = False
    await harness.engine.flush_pending()
    assert harness.engine.state is EngineState.READY and harness.engine.status().accepting_signals


async def test_a_row_written_behind_wardens_back_for_a_held_position_is_adopted(harness: Harness) -> None:
    """Issue 7.8 (seed 003): a row inserted by something else for a position the exchange holds:
    event and alert, then adopted under that row (not a second record) and protected."""
    template = await harness.open("long", BTC, usd="200")
    await harness.engine.close_position(ClosePosition(template.id))
    await harness.engine.wait_idle()
    harness.sim.external_order(BTC, OrderSide.BUY, template.filled_qty)
    row = replace(template, id=PositionId("behindback01"), signal_id=None, version=1)
    await harness.store.commit(Transition(row, None))
    report = await harness.engine.reconcile()
    await harness.engine.wait_idle()
    assert any(a.kind is AlertKind.UNKNOWN_ROW for a in harness.notifier.alerts)
    assert any(f.discrepancy.position_id == row.id for f in report.findings)
    [held] = [p for p in harness.engine.ledger.active_positions() if p.symbol == BTC]
    assert held.id == row.id and held.status is PositionStatus.PROTECTED
    assert [o.qty for o in stops(harness, BTC)] == [row.remaining]  # type: ignore[attr-defined]
    stored = await harness.store.get_position(row.id)
    assert stored is not None and stored.status is PositionStatus.PROTECTED
    events = await harness.store.list_events(row.id, 100)
    assert events, "the row's discovery is an event"
    assert (await harness.engine.reconcile()).findings == []


async def write_behind_back(h: Harness, *orders: Order) -> None:
    """Order rows inserted into the database directly, by something other than warden (the
    position's row is not touched: its version stays where warden's memory has it)."""
    inner = h.store.inner
    assert isinstance(inner, SqlStore)
    async with inner.engine.begin() as conn:
        await conn.execute(schema.orders.insert(), [rows.order_row(o) for o in orders])


@pytest.mark.parametrize("resting", [False, True], ids=["never-sent", "resting"])
async def test_a_pending_intent_written_behind_wardens_back_for_a_known_position_is_found(
    harness: Harness, resting: bool
) -> None:
    """Issue 7.8: a PENDING stop intent inserted into the database for a position memory already
    knows. A reconcile pass compares the database's intents with memory too: the unknown intent
    is an event and an alert, and it is checked against the exchange (never sent: refused,
    final; resting: warden's, as a restart would take it). Either way exactly one stop of the
    position's size rests and the exchange, the database and memory agree."""
    pos = await harness.open("long", SOL, usd=None, qty=Decimal("1"))
    assert pos.stop_price is not None
    [mine] = stops(harness)
    cid = client_order_id(pos.id, OrderRole.STOP, 9, harness.engine.config.installation_id)
    intent = Order(
        client_order_id=cid,
        position_id=pos.id,
        role=OrderRole.STOP,
        symbol=SOL,
        side=pos.side.exit_side,
        type=OrderType.STOP_MARKET,
        qty=pos.filled_qty,
        trigger_price=pos.stop_price + Decimal("0.5"),
        reduce_only=True,
        status=OrderStatus.PENDING,
        created_at=harness.engine.clock.now(),
    )
    if resting:
        harness.sim.disconnect()  # its echo is lost: only the database and the exchange know it
        await harness.sim.place_order(
            OrderRequest(cid, SOL, intent.side, intent.type, intent.qty, intent.trigger_price, True)
        )
    await write_behind_back(harness, intent)
    assert cid not in harness.engine.ledger.orders
    report = await harness.engine.reconcile()
    await harness.engine.wait_idle()
    assert any(f.discrepancy.client_order_id == cid for f in report.findings), report.findings
    assert any(a.kind is AlertKind.UNKNOWN_ROW and cid in a.message for a in harness.notifier.alerts)
    events = await harness.store.list_events(pos.id, 100)
    assert any(cid in e.message for e in events), [e.message for e in events]
    known = harness.engine.ledger.orders[cid]
    assert known.status is (OrderStatus.OPEN if resting else OrderStatus.REJECTED), known
    stored = {o.client_order_id: o for o in await harness.store.orders_for(pos.id)}
    assert stored[cid].status is known.status
    [stop] = stops(harness)
    assert stop.qty == pos.filled_qty  # type: ignore[attr-defined]
    if not resting:
        assert stop.client_order_id == mine.client_order_id  # type: ignore[attr-defined]
    assert harness.engine.ledger.current_stop(pos.id).client_order_id == stop.client_order_id  # type: ignore[union-attr]
    assert stored[stop.client_order_id].status is OrderStatus.OPEN  # type: ignore[attr-defined]
    harness.sim.reconnect()
    alerts = len(harness.notifier.alerts)
    assert (await harness.engine.reconcile()).findings == []
    assert len(harness.notifier.alerts) == alerts, "found once, not at every pass"


async def test_stacked_positions_with_a_size_mismatch_are_repaired_in_one_pass(harness: Harness) -> None:
    """Issue 7.6: stacking on, two longs of 1; an outside sell of 1.5 leaves 0.5. One pass brings
    every record, stop and take-profit into agreement with the exchange (not one record a pass)."""
    await harness.stop()
    harness.config = replace(harness.config, allow_stacking=True)
    await harness.start()
    await harness.open("long", SOL, usd=None, qty=Decimal("1"))
    await harness.open("long", SOL, usd=None, qty=Decimal("1"))
    harness.sim.disconnect()
    harness.sim.external_order(SOL, OrderSide.SELL, Decimal("1.5"), reduce_only=True)
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    held = [p for p in harness.engine.ledger.active_positions() if p.symbol == SOL]
    assert sum((p.remaining for p in held), Decimal(0)) == harness.exchange_qty(SOL) == Decimal("0.5")
    for p in held:
        mine = [o for o in harness.resting(SOL) if p.id in o.client_order_id]
        assert sum(o.qty for o in mine if o.type is OrderType.STOP_MARKET) == p.remaining
        assert sum((o.qty for o in mine if o.type is OrderType.TAKE_PROFIT_MARKET), Decimal(0)) <= p.remaining
    harness.sim.reconnect()
    assert (await harness.engine.reconcile()).findings == []


async def test_an_engine_whose_lease_was_taken_stops_every_loop_that_acts(store_url: str) -> None:
    """Issue 7.4: after a stand-down nothing acts: a stop cancelled by hand is not re-placed by the
    stream loop, no reconcile pass runs on the timer, nothing is written; and the gateway itself
    refuses a cancel (cancels once skipped the check `send` had)."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        pos = await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        await engine.wait_idle()
        [stop] = [o for o in exchange.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
        passes = engine.last_reconcile_at
        await engine.stand_down("lease lost: another engine holds the account (test)")
        events = len(await engine.store.list_events(None, 1000))
        exchange.sim.cancel_external(stop.client_order_id)
        await moments(clock, 3 * engine.config.reconcile_interval)
        assert not [o for o in exchange.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
        assert engine.last_reconcile_at == passes, "a reconcile pass ran after the stand-down"
        assert len(await engine.store.list_events(None, 1000)) == events
        with pytest.raises(NotHolder):
            await engine.gateway.cancel(SOL, engine.ledger.live_orders(pos.id)[0].client_order_id, True)


async def test_finished_positions_their_locks_and_events_leave_memory(store_url: str) -> None:
    """Issue 7.10: closed positions, their locks and their wait events are pruned from memory
    (after a while), and the position is still served from the database."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, _):
        pos = await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        await engine.close_position(ClosePosition(pos.id))
        await engine.wait_idle()
        assert pos.id in engine.ledger.positions
        await moments(clock, 11 * 60, step=5)
        assert engine.details() == {"locks": 0, "positions_in_memory": 0}
        assert pos.id not in engine.ctx.seen
        assert not engine.ledger.orders_of(pos.id)
        view = await engine.get_position(pos.id)
        assert view.position.status is PositionStatus.CLOSED


async def test_an_exposure_no_start_was_seen_for_is_not_reported_shorter_than_it_was(store_url: str) -> None:
    """Issue 7.10: `unprotected_seconds` must never be optimistic when this process did not see
    the exposure begin. An entry acknowledged unfilled; the process dies; the entry fills 1 s
    later with no stop; warden starts again 9 s after that. Its protected event must count from
    the fill (as the exchange measured it), not from when the new process learned of it."""
    clock = FakeClock()
    sim = SimulatedExchange(now=clock.now, seed=7, sleep=clock.sleep)
    sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    sim.faults.fill_delay = 1.0
    store = await open_store(store_url, exchange="sim")
    first = Engine(sim, store, clock, RecordingNotifier(), FAST)
    await first.start()
    opening = asyncio.get_running_loop().create_task(
        first.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
    )
    await eventually(
        lambda: any(o.type is OrderType.MARKET for o in sim.core.open_orders(SOL)), what="entry working"
    )
    first.set_read_only("crashed")  # the process dies: nothing more is sent or written
    opening.cancel()
    await asyncio.gather(opening, return_exceptions=True)
    await first.stop()
    await store.close()
    sim.faults.ack_only_if = None
    await moments(clock, 10)
    assert sim.core.position(SOL).qty > 0, "the entry filled while warden was down"
    store = await open_store(store_url, exchange="sim")
    second = Engine(sim, store, clock, RecordingNotifier(), FAST)
    try:
        await second.start()
        await second.wait_idle()
        [pos] = second.ledger.active_positions()
        assert pos.status is PositionStatus.PROTECTED
        [protected] = [
            e for e in await store.list_events(pos.id, 100) if e.kind is EventKind.POSITION_PROTECTED
        ]
        [exposure] = sim.exposure()
        reported = float(protected.data["unprotected_seconds"])
        assert reported >= exposure.max_unprotected_seconds >= 8, (reported, exposure)
    finally:
        second.set_read_only("test over")
        await second.stop()
        await store.close()
