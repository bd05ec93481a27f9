"""Restart is recovery: what happened while warden was down is applied once, then trading resumes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import eventually
from tests.service.harness import BTC, SOL, Harness
from tests.service.test_chaos_findings import the_database_down_at_start
from warden.domain.alerts import AlertKind
from warden.domain.errors import ValidationError
from warden.domain.events import EventKind
from warden.domain.orders import OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.reports import OrderReport, OrderRequest
from warden.domain.values import OrderRole, OrderSide, OrderType, Side, client_order_id, parse_client_id
from warden.ports import ExchangeUnavailable
from warden.service.commands import ClosePosition, EngineState, OpenPosition, TradingRefused


def stops(h: Harness) -> list:
    return [o for o in h.resting() if o.type is OrderType.STOP_MARKET]


async def down(h: Harness) -> None:
    """Stop warden cleanly; the exchange keeps running."""
    await h.engine.wait_idle()
    await h.stop()
    h.drop_stream()


async def test_seed_002_restart_between_tp1_and_tp2_keeps_the_runner(harness: Harness) -> None:
    """Seed 002: restarted between TP1 and TP2, the runner resumes with the right peak and exact sizes."""
    pos = await harness.open("long", usd="100")
    size = pos.filled_qty
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await harness.engine.wait_idle()
    await harness.engine.exits.flush_watermarks()
    before = harness.engine.ledger.positions[pos.id]
    h = await harness.restart()
    after = h.engine.ledger.positions[pos.id]
    for name in (
        "tp1_hit",
        "tp2_hit",
        "trailing_active",
        "watermark",
        "remaining",
        "stop_price",
        "mae",
        "mfe",
    ):
        assert getattr(after, name) == getattr(before, name), name
    assert h.exchange_qty() == size - pos.tp1_qty  # TP1 closed exactly 60 %, not 100 %
    assert [s.qty for s in stops(h)] == [after.remaining]  # one stop, the right size: no conflicting orders
    tps = [o for o in h.resting() if o.type is OrderType.TAKE_PROFIT_MARKET]
    assert [o.qty for o in tps] == [pos.tp2_qty]
    h.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].trailing_active, what="runner")
    peak = pos.tp2_price + Decimal("2")
    h.sim.set_mark(SOL, peak)
    await eventually(lambda: h.engine.ledger.positions[pos.id].watermark == peak, what="peak")
    await h.engine.wait_idle()
    [stop] = stops(h)
    assert stop.trigger_price == h.engine.instruments[SOL].round_price(peak * Decimal("0.995"))
    assert stop.qty == size - pos.tp1_qty - pos.tp2_qty


async def test_exit_fills_while_down_are_applied_once_on_restart(harness: Harness) -> None:
    """TP1 and TP2 fill while warden is down: recovery applies both once and resizes the stop."""
    pos = await harness.open("short", usd="100")
    await down(harness)
    harness.sim.set_mark(SOL, pos.tp1_price)
    harness.sim.set_mark(SOL, pos.tp2_price)
    h = await harness.start()
    p = h.engine.ledger.positions[pos.id]
    assert p.tp1_hit and p.tp2_hit and p.trailing_active
    assert p.closed_qty == pos.tp1_qty + pos.tp2_qty
    assert len(p.applied_trades) == 3
    await h.engine.wait_idle()
    assert [s.qty for s in stops(h)] == [p.remaining]
    await h.restart()  # a second restart applies nothing twice
    assert h.engine.ledger.positions[pos.id].closed_qty == pos.tp1_qty + pos.tp2_qty


async def test_stop_hit_while_down_closes_the_record_on_restart(harness: Harness) -> None:
    """A stop that filled while warden was down closes the position with reason "stop"."""
    pos = await harness.open("long", usd="100")
    await down(harness)
    harness.sim.set_mark(SOL, pos.stop_price - Decimal("0.5"))
    h = await harness.start()
    await h.engine.wait_idle()
    stored = await h.store.get_position(pos.id)
    assert stored is not None and stored.status is PositionStatus.CLOSED and stored.exit_reason == "stop"
    assert h.resting() == []


async def test_stop_missing_at_restart_is_placed_before_signals_are_accepted(harness: Harness) -> None:
    """A stop removed while warden was down is re-placed by recovery, and only then is trading allowed."""
    pos = await harness.open("long", usd="100")
    await down(harness)
    [stop] = stops(harness)
    harness.sim.cancel_external(stop.client_order_id)
    h = await harness.start()
    assert h.engine.accepting_signals
    [again] = stops(h)
    assert again.qty == pos.filled_qty
    kinds = [e.kind for e in await h.store.list_events(pos.id)]
    assert EventKind.PROTECTION_LOST in kinds


async def test_trading_is_refused_until_recovery_passes(harness: Harness) -> None:
    """Before startup recovery has passed, a signal is refused and nothing is sent."""
    await harness.stop()
    harness.sim.faults.fail_queries = True
    with pytest.raises(ExchangeUnavailable):  # recovery cannot read the exchange: it must not pass
        await harness.start()
    assert harness.engine.state is EngineState.RECOVERING
    with pytest.raises(TradingRefused):
        await harness.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
    assert harness.sim.core.open_orders() == []
    harness.sim.faults.fail_queries = False
    await harness.engine.start()
    assert harness.engine.accepting_signals
    harness._consumer.cancel()


async def test_stops_of_ours_the_database_never_recorded_are_adopted_and_their_ids_never_reused(
    harness: Harness,
) -> None:
    """Chaos 2049494027:1577: a trailing move placed stops s2 and s3 while the database was
    locked, and the process died before the queued writes landed. On restart the database knew
    only s1: recovery staged s2 again, reconciliation cancelled s2 and s3 as strays and then sent
    s3 a second time (one client id, two orders). Orders of ours the exchange holds but the
    database lost are adopted at startup, and no id the exchange has seen is sent again."""
    pos = await harness.open("long", usd="100")
    installation = harness.engine.config.installation_id
    s1 = client_order_id(pos.id, OrderRole.STOP, 1, installation)
    s2 = client_order_id(pos.id, OrderRole.STOP, 2, installation)
    trail = pos.stop_price + Decimal("1")  # type: ignore[operator]
    await harness.stop()  # the process dies; what it sent last never reached the database
    await harness.sim.place_order(
        OrderRequest(
            s2, SOL, pos.side.exit_side, OrderType.STOP_MARKET, pos.filled_qty, trail, reduce_only=True
        )
    )
    await harness.sim.cancel_order(SOL, s1, True)
    sent: list[str] = []
    place = harness.sim.place_order

    async def recorded(request: OrderRequest, **kw: Any) -> OrderReport:
        sent.append(request.client_order_id)
        return await place(request, **kw)

    harness.sim.place_order = recorded  # type: ignore[method-assign]
    await harness.start()
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    stops = [o for o in harness.resting() if o.type is OrderType.STOP_MARKET]
    assert [(o.client_order_id, o.qty, o.trigger_price) for o in stops] == [(s2, pos.filled_qty, trail)], (
        stops
    )
    assert not {s1, s2} & set(sent), sent
    now = harness.engine.ledger.positions[pos.id]
    assert now.status is PositionStatus.PROTECTED and now.stop_price == trail and now.stop_seq >= 2


async def test_a_fill_of_an_order_of_ours_the_database_never_recorded_is_recorded(harness: Harness) -> None:
    """Chaos 2049494027:3415: a close was sent and filled while the database was locked; the
    process died before the queued writes (the close's intent and its fill) landed. After the
    restart the exchange was flat: reconciliation closed the record with a synthetic fill and
    skipped the real trade, a warden id it did not know (trade recorded 0 times, I2). A trade
    of an order of ours for this position is recorded as what it was, its order adopted."""
    pos = await harness.open("long", usd="100")
    installation = harness.engine.config.installation_id
    c1 = client_order_id(pos.id, OrderRole.CLOSE, 1, installation)
    await harness.stop()  # the process dies; the close it sent never reached the database
    for order in harness.resting():
        await harness.sim.cancel_order(SOL, order.client_order_id, order.type.conditional)
    await harness.sim.place_order(
        OrderRequest(c1, SOL, pos.side.exit_side, OrderType.MARKET, pos.filled_qty, reduce_only=True)
    )
    [trade] = [f for f in await harness.sim.fetch_fills(SOL, None) if f.client_order_id == c1]
    await harness.start()
    await harness.engine.reconcile()
    await harness.engine.wait_idle()
    now = harness.engine.ledger.positions[pos.id]
    assert now.status is PositionStatus.CLOSED and trade.trade_id in now.applied_trades, now
    recorded = await harness.store.inner.fills_for(pos.id)  # type: ignore[attr-defined]
    fills = [f for f in recorded if f.trade_id == trade.trade_id]
    assert [(f.qty, f.price) for f in fills] == [(trade.qty, trade.price)]


async def test_a_newer_stop_still_being_recorded_is_not_cancelled_as_superseded(harness: Harness) -> None:
    """Chaos 2049494027:8199: after a restart a stop move sent s3 while its answer's write was
    slow (memory: s2 resting, s3 pending); recovery's sweep of superseded stops took every stop
    but the current one for superseded and cancelled s3 as soon as it rested: 8 s without a
    stop. Only stops older than the current one are superseded; a newer one is its mover's."""
    pos = await harness.open("long", usd="100")
    ledger = harness.engine.ledger
    current = ledger.current_stop(pos.id)
    assert current is not None and current.trigger_price is not None
    parsed = parse_client_id(current.client_order_id)
    assert parsed is not None
    newer = replace(
        current,
        client_order_id=client_order_id(pos.id, OrderRole.STOP, parsed.seq + 1, parsed.installation),
        status=OrderStatus.PENDING,
        exchange_order_id=None,
        trigger_price=current.trigger_price + 1,
    )
    await harness.sim.place_order(
        OrderRequest(
            newer.client_order_id,
            SOL,
            newer.side,
            newer.type,
            newer.qty,
            newer.trigger_price,
            reduce_only=True,
        )
    )
    await ledger.commit(ledger.positions[pos.id], ledger.positions[pos.id], orders=[newer])
    await harness.engine.exits.cancel_superseded_stops(pos.id)
    resting = {o.client_order_id for o in harness.resting()}
    assert newer.client_order_id in resting, resting


async def test_a_held_market_the_exchange_no_longer_lists_does_not_stop_the_start(harness: Harness) -> None:
    """Found attacking start-up after the exchange's markets changed: a market with a position
    that the exchange no longer lists as trading (delisted, settling, halted: ccxt's `active` is
    false and the adapters drop it) made startup recovery raise KeyError. The start failed with
    no alert (not an exchange or database error, so not retried either: `warden run` died), and
    no position of the account was protected, not even those on markets still trading. The
    start passes, every position gets its stop (the held market's on the grid its own orders
    were on), and the trader is told which market warden holds that the exchange does not list."""
    sol = await harness.open("long", usd="100")
    btc = await harness.open("long", symbol=BTC, usd="200")
    await down(harness)
    for order in stops(harness) + [o for o in harness.resting(BTC) if o.type is OrderType.STOP_MARKET]:
        harness.sim.cancel_external(order.client_order_id)
    harness.probe.unlisted_markets.add(SOL)
    h = await harness.start()
    assert h.engine.accepting_signals
    await h.engine.wait_idle()
    for symbol, pos in ((SOL, sol), (BTC, btc)):
        [stop] = [o for o in h.resting(symbol) if o.type is OrderType.STOP_MARKET]
        assert (stop.qty, stop.trigger_price) == (pos.filled_qty, pos.stop_price), symbol
    [alert] = [a for a in h.notifier.alerts if a.kind is AlertKind.MARKET_UNLISTED]
    assert SOL in alert.message and alert.position_id is None
    assert any(SOL in w for w in h.engine.status().warnings)
    h.sim.set_mark(SOL, sol.tp1_price)  # still managed: TP1 fills and the stop is resized
    await eventually(lambda: h.engine.ledger.positions[sol.id].tp1_hit, what="tp1")
    await h.engine.wait_idle()
    assert [s.qty for s in stops(h)] == [h.engine.ledger.positions[sol.id].remaining]
    # A new entry there is refused before anything is sent: the exchange lists no such market to
    # trade (its grid here is a guess that serves the held position's exits only).
    closed = await h.engine.close_position(ClosePosition(sol.id))
    assert not closed.is_active
    with pytest.raises(ValidationError, match="not listed"):
        await h.open("long", SOL)
    assert h.resting(SOL) == [] and h.exchange_qty(SOL) == 0


async def test_an_entry_committed_and_never_sent_before_a_crash_is_told_failed_on_restart(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies between the entry's commit and its send: nobody heard an outcome (the
    caller's connection died with it). Recovery finds the entry never reached the exchange and
    records it failed; entry_failed tells the trader the account holds nothing from it."""
    from tests.service.crash import SimulatedCrash

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise SimulatedCrash

    monkeypatch.setattr(harness.engine.opener, "_send", dies)
    with pytest.raises(SimulatedCrash):
        await harness.open("long", SOL, source="tradingview")
    [opening] = harness.engine.ledger.active_positions()
    await harness.restart()
    await harness.engine.wait_idle()
    told = [a for a in harness.notifier.alerts if a.kind is AlertKind.ENTRY_FAILED]
    assert [a.position_id for a in told] == [opening.id], told
    assert "found by recovery" in told[0].message and "tradingview" in told[0].message
    assert "holds nothing" in told[0].message
    assert harness.exchange_qty(SOL) == 0


def stopped(harness: Harness) -> Decimal:
    """How much the stops resting on the exchange cover."""
    return sum((o.qty for o in harness.resting() if o.type is OrderType.STOP_MARKET), Decimal(0))


@contextlib.asynccontextmanager
async def starting_with_the_database_down(harness: Harness) -> AsyncIterator[None]:
    """Its position's stops cancelled by hand while warden is down, warden starts (retrying)
    with its database unreadable; on leaving, the database answers and startup passes."""
    await harness.stop()
    for order in harness.resting():
        harness.sim.cancel_external(order.client_order_id)  # the position is uncovered
    async with the_database_down_at_start(harness):
        yield


async def test_exposure_added_on_a_guarded_symbol_while_the_database_is_down_at_startup_is_guarded_too(
    harness: Harness,
) -> None:
    """Startup cannot read the database, so what the exchange holds uncovered gets a guard stop
    (one id per symbol). While startup is retried, the position on that symbol grows (a late
    entry fill, a trade by hand): the next attempt's guard for the part not covered went out
    under the same id, which the exchange refused as a duplicate of the guard resting, so the
    addition stayed without a stop for as long as the database was down. Each guard of a
    symbol takes the next id (how many of this installation's guards rest there already)."""
    pos = await harness.open("long", usd="100")
    assert pos.status is PositionStatus.PROTECTED
    window = harness.engine.config.protection_window
    async with starting_with_the_database_down(harness):
        await eventually(
            lambda: stopped(harness) == harness.exchange_qty(), timeout=window, what="the guard stop"
        )
        harness.sim.external_order(SOL, OrderSide.BUY, pos.filled_qty)  # the position grows
        held = harness.exchange_qty()
        assert held == 2 * pos.filled_qty
        await eventually(lambda: stopped(harness) == held, timeout=window, what="the addition guarded too")
    await harness.engine.wait_idle()
    await harness.engine.reconcile()
    guards = [o for o in harness.resting() if "guard" in o.client_order_id]
    assert not guards, "the guard stops are cancelled once the position's own stop covers it"
    assert stopped(harness) == harness.exchange_qty()


async def test_a_guard_cancelled_beside_another_on_its_symbol_is_replaced_while_the_database_is_down(
    harness: Harness,
) -> None:
    """Guards keyed by how many rest on the symbol: with two resting (the position grew while
    startup could not read the database) and the first cancelled by hand, one rests, so the next
    guard took the second's id again, which the exchange refused as a duplicate of the one
    resting: the part the first had covered stayed without a stop for as long as the database
    was down. The next guard takes the first id that rests nowhere."""
    pos = await harness.open("long", usd="100")
    assert pos.status is PositionStatus.PROTECTED
    window = harness.engine.config.protection_window
    async with starting_with_the_database_down(harness):
        await eventually(
            lambda: stopped(harness) == harness.exchange_qty(), timeout=window, what="the guard stop"
        )
        first = [o.client_order_id for o in harness.resting() if "guard" in o.client_order_id]
        assert len(first) == 1
        harness.sim.external_order(SOL, OrderSide.BUY, pos.filled_qty)  # the position grows
        held = harness.exchange_qty()
        await eventually(lambda: stopped(harness) == held, timeout=window, what="the addition guarded")
        harness.sim.cancel_external(first[0])  # the first guard cancelled by hand
        assert stopped(harness) < held
        await eventually(
            lambda: stopped(harness) == held, timeout=window, what="the part uncovered guarded again"
        )
    await harness.engine.wait_idle()
    await harness.engine.reconcile()
    assert not [o for o in harness.resting() if "guard" in o.client_order_id]
    assert stopped(harness) == harness.exchange_qty()
