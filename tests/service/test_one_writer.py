"""One writer per account (I6): a second engine stands by; when the holder dies it takes over."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from tests.service.harness import SOL
from warden.adapters.clock import SystemClock
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.bootstrap import running
from warden.config import Settings
from warden.domain.alerts import AlertKind
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType, Side
from warden.service.commands import ClosePosition, EngineState, OpenPosition, TradingRefused


def settings(url: str, tmp: Path) -> Settings:
    return Settings(db=url, data_dir=tmp, exchange="sim", order_timeout=1.0, reconcile_interval=3600)


def timed(url: str, tmp: Path, **overrides: Any) -> Settings:
    """An engine named host-a with a 10 s lease timeout (the least the settings take)."""
    values: dict[str, Any] = {
        "engine_name": "host-a",
        "order_timeout": 1.0,
        "reconcile_interval": 3600,
        "lease_timeout": 10,
    }
    return Settings(db=url, data_dir=tmp, exchange="sim", **(values | overrides))


def resting_stop_qty(sim: SimulatedExchange) -> Decimal:
    return sum((o.qty for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET), Decimal(0))


async def test_standby_refuses_then_takes_over_when_the_holder_dies(store_url: str, tmp_path: Path) -> None:
    """Only the holder places orders; after it dies the standby recovers and protects within the retry."""
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = settings(store_url, tmp_path)
    async with contextlib.AsyncExitStack() as outer:
        a_stack = contextlib.AsyncExitStack()
        a = await a_stack.enter_async_context(running(cfg, exchange=sim, price_feed=False, lease_retry=0.05))
        assert a.is_holder and a.engine.accepting_signals
        pos = await a.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert pos.status is PositionStatus.PROTECTED

        b = await outer.enter_async_context(
            running(cfg, exchange=sim, price_feed=False, lease_retry=0.05, notifier=RecordingNotifier())
        )
        assert not b.is_holder and b.engine.state is EngineState.READ_ONLY
        assert any("held by" in r for r in b.engine.status().reasons)
        orders_before = len(sim.core.open_orders())
        with pytest.raises(TradingRefused):
            await b.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert len(sim.core.open_orders()) == orders_before  # the standby sent nothing

        await a_stack.aclose()  # the holder dies; its lock goes with it
        sim.new_session()
        assert resting_stop_qty(sim) == pos.filled_qty  # the exchange-side stop never left
        await eventually(lambda: b.engine.accepting_signals, timeout=10, what="standby took over")
        assert b.is_holder
        taken = b.engine.ledger.positions[pos.id]
        assert taken.status is PositionStatus.PROTECTED and taken.remaining == pos.filled_qty
        assert resting_stop_qty(sim) == pos.filled_qty
        closed = await b.engine.close_position(ClosePosition(pos.id))
        assert closed.status is PositionStatus.CLOSED


async def test_a_stale_engine_cannot_write_after_losing_the_lease(store_url: str, tmp_path: Path) -> None:
    """Fencing: once another engine has taken the lease, the old engine's writes are refused."""
    from warden.adapters.db.lease import lease_for
    from warden.adapters.db.store import open_store
    from warden.ports import FencedOut

    store = await open_store(store_url, exchange="sim")
    first = lease_for(store_url, "acct")
    epoch = await first.try_acquire()
    assert epoch is not None
    store.set_epoch("acct", epoch)
    await first.release()
    second = lease_for(store_url, "acct")
    assert await second.try_acquire() == epoch + 1
    from warden.domain.events import Event, EventKind

    with pytest.raises(FencedOut):
        await store.append_events([Event(EventKind.RECONCILE, SystemClock().now(), None, "late write")])
    await second.release()
    await store.close()


@pytest.mark.postgres
async def test_with_a_lease_timeout_a_holder_cut_off_stops_acting_before_another_takes_the_account(
    pg_url: str, tmp_path: Path
) -> None:
    """A fleet on several hosts (`lease_timeout`): the holder is cut off from PostgreSQL by the
    network while it still reaches the exchange. Within half the timeout of its last renewal it
    acts on nothing (asked to close, it sends nothing: the exchange judges) and stands down; the
    standby takes the account over once the holder has been silent for the timeout, not before,
    and the stop rests on the exchange throughout. Without a timeout the partitioned session
    would keep the lock for as long as the server's TCP keepalive takes (two hours)."""
    from tests.store.pgtools import Partition

    partition = Partition(pg_url)
    through = await partition.start()
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    loop = asyncio.get_running_loop()
    cut_off = timed(through, tmp_path, db_timeout=0.5)
    direct = timed(pg_url, tmp_path, engine_name="host-b")
    try:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                running(cut_off, exchange=sim, price_feed=False, lease_retry=0.2)
            )
            pos = await a.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
            assert pos.status is PositionStatus.PROTECTED
            b = await stack.enter_async_context(
                running(direct, exchange=sim, price_feed=False, lease_retry=0.2)
            )
            assert not b.is_holder

            confirmed = a.engine.ctx.gate.act_until
            assert confirmed is not None
            partition.cut_off()
            frozen = loop.time()
            await eventually(
                lambda: a.engine.state is EngineState.READ_ONLY, timeout=15, what="A stands down"
            )
            stood_down = loop.time()
            assert not b.is_holder  # the holder is silent for less than the timeout yet
            placed = len(sim.core.open_orders())
            with pytest.raises(TradingRefused):
                await a.engine.close_position(ClosePosition(pos.id))
            assert len(sim.core.open_orders()) == placed and resting_stop_qty(sim) == pos.filled_qty

            await eventually(lambda: b.engine.accepting_signals, timeout=20, what="B took over")
            took = loop.time()
            assert took - frozen >= 5.0  # a renewal is at most lease_retry old when cut off
            assert stood_down < took
            assert b.engine.ledger.positions[pos.id].status is PositionStatus.PROTECTED
            assert resting_stop_qty(sim) == pos.filled_qty
            partition.heal()
            closed = await b.engine.close_position(ClosePosition(pos.id))
            assert closed.status is PositionStatus.CLOSED
            assert a.engine.state is EngineState.READ_ONLY and not a.is_holder
    finally:
        await partition.close()


@pytest.mark.postgres
async def test_with_a_lease_timeout_an_engine_cut_off_alone_stands_down_then_takes_its_account_back(
    pg_url: str, tmp_path: Path
) -> None:
    """The price of `lease_timeout`: a database outage longer than half of it stops management
    (the stop keeps resting on the exchange). When the database answers again, nobody having
    taken the account, the engine takes it back by itself and recovers its position."""
    from tests.store.pgtools import Partition

    partition = Partition(pg_url)
    through = await partition.start()
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = timed(through, tmp_path, db_timeout=0.5)
    try:
        async with running(cfg, exchange=sim, price_feed=False, lease_retry=0.2) as a:
            pos = await a.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
            assert pos.status is PositionStatus.PROTECTED
            partition.cut_off()
            await eventually(lambda: a.engine.state is EngineState.READ_ONLY, timeout=15, what="stand down")
            assert resting_stop_qty(sim) == pos.filled_qty
            partition.heal()
            await eventually(lambda: a.engine.accepting_signals, timeout=20, what="the account taken back")
            assert a.is_holder
            assert a.engine.ledger.positions[pos.id].status is PositionStatus.PROTECTED
            closed = await a.engine.close_position(ClosePosition(pos.id))
            assert closed.status is PositionStatus.CLOSED and resting_stop_qty(sim) == 0
    finally:
        await partition.close()


@pytest.mark.postgres
@pytest.mark.parametrize("dropped", [False, True], ids=["held", "session dropped meanwhile"])
async def test_with_a_lease_timeout_a_start_longer_than_half_of_it_keeps_the_lease(
    pg_url: str, tmp_path: Path, dropped: bool
) -> None:
    """Recovery retries while the exchange fails at start (an outage, a takeover in the middle of
    one). The lease is renewed meanwhile: the start is not cut short by the time bound, and the
    account is not given up and taken again (the epoch stays the one the start began with). Its
    session dropped meanwhile (a server restart, an operator's kill, a network blip), the lease
    is in doubt, not lost: nobody took it, so it is locked again with the same epoch."""
    from tests.store.pgtools import admin, terminate_lease_session

    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = timed(pg_url, tmp_path)
    sim.faults.fail_queries = True
    notifier = RecordingNotifier()
    async with running(cfg, exchange=sim, price_feed=False, lease_retry=0.2, notifier=notifier) as a:
        assert a.epoch == 1 and a.engine.state is EngineState.STARTING
        if dropped:
            async with admin(pg_url) as conn:
                await terminate_lease_session(conn, "default")
        first_bound = a.engine.ctx.gate.act_until
        assert first_bound is not None
        clock = a.engine.clock
        await eventually(
            lambda: clock.monotonic() > first_bound + 1, timeout=15, what="the first bound to pass"
        )
        sim.faults.fail_queries = False
        await eventually(lambda: a.engine.accepting_signals, timeout=15, what="ready")
        assert a.epoch == 1
        assert not [alert for alert in notifier.alerts if alert.kind is AlertKind.LEASE_LOST]


@pytest.mark.postgres
async def test_with_a_lease_timeout_a_lapsed_bound_is_a_stand_down_and_a_fresh_take_over(
    pg_url: str, tmp_path: Path
) -> None:
    """The time bound lapsed (renewals slower than half the timeout) and the next check finds
    the lease still ours. Meanwhile the gate refused what the engine tried (NotHolder), and an
    acting loop ends on that refusal as on a stand-down: resuming as if nothing happened could
    leave one ended (the maintenance that flushes queued writes, the reconciliation timer). So a
    lapse is a stand-down; the engine takes the account again with a fresh recovery, which
    also applies the stop's fill whose handling the gate refused."""
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = timed(pg_url, tmp_path)
    notifier = RecordingNotifier()
    async with running(cfg, exchange=sim, price_feed=False, lease_retry=0.2, notifier=notifier) as a:
        pos = await a.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert pos.status is PositionStatus.PROTECTED and pos.stop_price is not None
        a.engine.lease_confirmed(a.engine.clock.monotonic())  # lapsed, as after a slow renewal
        sim.set_mark(SOL, pos.stop_price * Decimal("0.99"))  # the stop fills on the exchange
        await eventually(lambda: resting_stop_qty(sim) == 0, what="the stop to fill")

        def stood_down() -> bool:
            return any(x.kind is AlertKind.LEASE_LOST and "expired" in x.message for x in notifier.alerts)

        await eventually(stood_down, timeout=10, what="the stand-down")
        await eventually(lambda: a.engine.accepting_signals, timeout=20, what="the account taken again")
        assert a.is_holder and a.epoch == 1  # nobody else took it: the same epoch
        held = a.engine.ledger.positions.get(pos.id)
        assert held is None or held.status is PositionStatus.CLOSED  # recovery loads the active only
        assert (await a.store.get_position(pos.id)).status is PositionStatus.CLOSED  # type: ignore[union-attr]


@pytest.mark.postgres
async def test_with_a_lease_timeout_a_start_ending_during_a_renewal_keeps_the_lease_session(
    pg_url: str, tmp_path: Path
) -> None:
    """The lease is renewed while the start runs; when the start ends that renewer is stopped. A
    renewal under way at that moment is finished, not cancelled: a lease call cancelled halfway
    drops the lease's session (its state unknown), and with it the lock of every account on it
    (a fleet engine's are all on one): each in doubt, alerted, locked again."""
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = timed(pg_url, tmp_path)
    sim.faults.fail_queries = True
    notifier = RecordingNotifier()
    async with running(cfg, exchange=sim, price_feed=False, lease_retry=0.2, notifier=notifier) as a:
        from warden.adapters.db.lease import PostgresAdvisoryLease

        assert isinstance(a.lease, PostgresAdvisoryLease)
        table = a.lease._table
        real_touch = table.touch
        renewing = asyncio.Event()
        finished: list[bool] = []

        async def slow_touch(conn: Any, epoch: int) -> bool:
            renewing.set()
            try:
                await asyncio.sleep(1.5)  # a slow round trip (two in a row stay within the bound)
                return await real_touch(conn, epoch)
            finally:
                finished.append(True)

        table.touch = slow_touch  # type: ignore[method-assign]
        session = a.lease._session
        generation = session.generation
        await asyncio.wait_for(renewing.wait(), 5)
        sim.faults.fail_queries = False  # the start passes while the renewal is under way
        await eventually(lambda: a.engine.accepting_signals, timeout=15, what="ready")
        # the renewal under way when the start ended, then the watcher's first (both slow)
        await eventually(lambda: len(finished) >= 2, timeout=15, what="two renewals to end")
        assert session.generation == generation and session.alive == generation
        assert not [alert for alert in notifier.alerts if alert.kind is AlertKind.LEASE_UNREACHABLE]
        assert a.epoch == 1


@pytest.mark.postgres
async def test_with_a_lease_timeout_a_renewal_held_up_past_half_of_it_ends_in_a_fresh_take_over(
    pg_url: str, tmp_path: Path
) -> None:
    """A renewal held up past half the timeout, then confirmed: its row lock waits behind a slow
    write's fence (a disk stall, a checkpoint). For that moment the engine acted on nothing (the
    bound doing its job); then it stands down and takes the account again with a fresh recovery,
    and manages its positions as before: reconciliation puts back a stop removed by hand."""
    from tests.store.pgtools import admin

    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = timed(pg_url, tmp_path, db_timeout=8.0, reconcile_interval=0.3)
    notifier = RecordingNotifier()
    async with running(cfg, exchange=sim, price_feed=False, lease_retry=0.2, notifier=notifier) as a:
        pos = await a.engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        assert pos.status is PositionStatus.PROTECTED
        gate = a.engine.ctx.gate
        async with admin(pg_url) as conn, conn.transaction():
            # A write's fence (FOR SHARE on the lease row) that takes long: the renewal waits.
            await conn.execute("SELECT epoch FROM leases WHERE account = 'default' FOR SHARE")
            await eventually(lambda: gate.unconfirmed, timeout=10, what="the bound to lapse")
            with pytest.raises(TradingRefused, match="not been confirmed in time"):
                await a.engine.close_position(ClosePosition(pos.id))
        await eventually(
            lambda: any(x.kind is AlertKind.LEASE_LOST for x in notifier.alerts),
            timeout=10,
            what="stand-down",
        )
        await eventually(lambda: a.engine.accepting_signals, timeout=20, what="the account taken again")
        assert a.is_holder and a.epoch == 1
        [stop] = [o for o in sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
        sim.core.cancel(stop.client_order_id, SystemClock().now())  # gone by hand, no event seen
        await eventually(
            lambda: resting_stop_qty(sim) == pos.filled_qty, timeout=10, what="reconciliation puts it back"
        )


@pytest.mark.postgres
async def test_with_a_lease_timeout_a_lapsed_account_whose_slot_another_took_lets_its_lock_go(
    pg_url: str, tmp_path: Path
) -> None:
    """A fleet engine at capacity 1 (its accounts' leases on one shared session): the bound of
    the account it holds lapses, it stands down and gives the slot back, and another account of
    the engine takes that slot before this account's standby tries again. The account's lock
    must not stay on the shared session: that session is live (the other account renews on it),
    so no other engine could ever end it, and the account would be left with nothing acting."""
    from warden.adapters.db.lease import PostgresAdvisoryLease
    from warden.adapters.db.store import SharedConnections
    from warden.bootstrap import Slots

    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    shared = SharedConnections(pg_url, name="host-a", op_timeout=5.0, idle_in_transaction=5.0)
    slots = Slots(capacity=1)
    other = PostgresAdvisoryLease(pg_url, "other", holder="host-a", session=shared.lease_session, timeout=10)
    notifier = RecordingNotifier()
    renewing: asyncio.Task[None] | None = None

    async def renew_other() -> None:
        while True:  # the other account's watcher: its renewals keep the shared session live
            await other.check()
            await asyncio.sleep(0.2)

    try:
        async with running(
            timed(pg_url, tmp_path),
            exchange=sim,
            price_feed=False,
            lease_retry=0.5,
            slots=slots,
            shared=shared,
        ) as a:
            assert a.is_holder
            async with running(
                timed(pg_url, tmp_path, engine_name="host-b"),
                exchange=sim,
                price_feed=False,
                lease_retry=0.2,
                notifier=notifier,
            ) as b:
                assert not b.is_holder
                a.engine.lease_confirmed(a.engine.clock.monotonic())  # lapsed
                await eventually(lambda: "default" not in slots.held, timeout=10, what="the slot given back")
                assert slots.take("other")  # the engine's other account takes the freed slot
                assert await other.try_acquire() is not None
                renewing = asyncio.create_task(renew_other())
                await eventually(lambda: b.engine.accepting_signals, timeout=30, what="host-b takes it over")
                assert b.is_holder and a.engine.state is EngineState.READ_ONLY
    finally:
        if renewing is not None:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
        await other.release()
        await shared.close()


@pytest.mark.postgres
async def test_with_a_lease_timeout_a_bound_lapsed_during_the_start_is_told_as_expired_not_lost(
    pg_url: str, tmp_path: Path
) -> None:
    """The start retries (the exchange failing) and the time bound lapses meanwhile: the start's
    next attempt is refused (NotHolder) and the engine stands down. Nobody else holds the
    account: the trader is told the lease expired, not that it was lost to an engine named
    "None"; and the engine takes the account again once the exchange answers."""
    sim = SimulatedExchange(now=SystemClock().now, seed=3)
    cfg = timed(pg_url, tmp_path)
    sim.faults.fail_queries = True
    notifier = RecordingNotifier()
    async with running(cfg, exchange=sim, price_feed=False, lease_retry=0.2, notifier=notifier) as a:
        assert a.engine.state is EngineState.STARTING
        a.engine.lease_confirmed(a.engine.clock.monotonic())  # lapsed, as after a slow renewal

        def lost() -> list[str]:
            return [x.message for x in notifier.alerts if x.kind is AlertKind.LEASE_LOST]

        await eventually(lambda: bool(lost()), timeout=15, what="the stand-down")
        sim.faults.fail_queries = False
        await eventually(lambda: a.engine.accepting_signals, timeout=20, what="the account taken again")
        [message] = lost()
        assert "held by None" not in message and "expired" in message, message
