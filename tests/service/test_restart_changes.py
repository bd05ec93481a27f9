"""Restarts after something changed while warden was down: the config, the market, the account."""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tests.service.harness as harness_module
from tests.helpers import eventually
from tests.service.crash import CallBudget, CrashAfter, SimulatedCrash
from tests.service.harness import SOL, Harness
from tests.service.test_recovery import down, stops
from warden.adapters.clock import SystemClock
from warden.adapters.db.store import SqlStore, open_store
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import AlertKind
from warden.domain.controls import Limits
from warden.domain.plan import ExitPlan
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType
from warden.service.commands import AlreadyExists


def tps(h: Harness) -> list:
    return [o for o in h.resting() if o.type is OrderType.TAKE_PROFIT_MARKET]


def on_exchange(name: str) -> Callable[..., Awaitable[SqlStore]]:
    """open_store as the harness calls it, for the account's trades on exchange `name`."""

    def opened(url: str, **kw: Any) -> Awaitable[SqlStore]:
        return open_store(url, **{**kw, "exchange": name})

    return opened


async def installation_of(url: str, account: str) -> str:
    store = await open_store(url, exchange="sim", account=account)
    try:
        return store.installation_id
    finally:
        await store.close()


def restore(backup: Path, path: Path) -> None:
    """The database file replaced by a backup (the old file's journal gone with it)."""
    shutil.copy(backup, path)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def covered(h: Harness) -> bool:
    return all(e.unprotected_seconds == 0 for e in h.sim.exposure() if e.qty)


async def test_a_changed_exit_plan_leaves_open_positions_as_placed(harness: Harness) -> None:
    """Each position keeps the plan it was opened with: a new plan applies to new entries only."""
    pos = await harness.open("long", usd="300")
    before = sorted((o.type, o.qty, o.trigger_price) for o in harness.resting())
    await down(harness)
    harness.config = replace(
        harness.config,
        plan=ExitPlan(
            stop_pct=Decimal("0.05"),
            tp1_pct=Decimal("0.03"),
            tp1_fraction=Decimal("0.3"),
            tp2_pct=Decimal("0.06"),
            trail_pct=Decimal("0.02"),
            breakeven_after_tp1=True,
        ),
    )
    h = await harness.start()
    await h.engine.wait_idle()
    assert sorted((o.type, o.qty, o.trigger_price) for o in h.resting()) == before
    h.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await h.engine.wait_idle()
    p = h.engine.ledger.positions[pos.id]
    assert [s.qty for s in stops(h)] == [p.remaining] == [h.exchange_qty()]
    assert [s.trigger_price for s in stops(h)] == [pos.stop_price]  # no break-even: not its plan
    assert [t.qty for t in tps(h)] == [pos.tp2_qty]


async def test_a_lowered_risk_limit_still_protects_what_is_open(harness: Harness) -> None:
    """Limits lowered below what is open (and the stops cancelled by hand meanwhile): risk limits
    refuse entries only, never the protection of what is already open."""
    pos = await harness.open("long", usd="300")
    await down(harness)
    for o in list(harness.resting()):
        harness.sim.core.cancel(o.client_order_id, harness.sim._now())  # by hand, while down
    harness.config = replace(
        harness.config,
        limits=Limits(
            max_open_positions=0, max_position_usd=Decimal("10"), max_daily_loss_usd=Decimal("0.01")
        ),
    )
    h = await harness.start()
    await eventually(lambda: covered(h), what="covered")
    assert [s.qty for s in stops(h)] == [pos.filled_qty]


async def test_a_coarser_lot_size_while_down_keeps_the_runner_covered(harness: Harness) -> None:
    """The lot size coarsened while down: the resized stop may be refused, the old one stays."""
    pos = await harness.open("long", usd="100")
    await down(harness)
    inst = harness.sim.core.instruments[SOL]
    harness.sim.core.instruments[SOL] = replace(inst, lot_size=Decimal("0.1"), min_qty=Decimal("0.1"))
    h = await harness.start()
    await h.engine.wait_idle()
    h.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await h.engine.wait_idle()
    assert covered(h), (h.sim.exposure(), h.resting())
    h.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].tp2_hit, what="tp2")
    await h.engine.wait_idle()
    assert covered(h), (h.sim.exposure(), h.resting())


async def test_a_stop_that_fired_while_down_is_recorded_at_its_real_price(harness: Harness) -> None:
    """A gap through the stop while down: its fill (the real price) is applied, the TPs cancelled."""
    pos = await harness.open("long", usd="300")
    await down(harness)
    gap = pos.stop_price - Decimal("5")
    harness.sim.set_mark(SOL, gap)
    assert harness.exchange_qty() == 0
    fills = list(harness.sim.core._fills[SOL])
    h = await harness.start()
    await h.engine.wait_idle()
    p = await h.store.get_position(pos.id)
    assert p is not None and p.status.terminal, p
    assert str(p.exit_reason) == "stop", p.exit_reason
    fill = fills[-1]
    assert p.realized_pnl == (fill.price - p.entry_price) * pos.filled_qty - sum(f.fee for f in fills), (
        p,
        fill,
    )
    assert h.resting() == []


async def test_a_database_restored_from_an_older_backup(harness: Harness, tmp_path: Path) -> None:
    """The SQLite file replaced by a copy from before the stop fired and a new position opened:
    the forgotten position is adopted and protected for its full size, nothing else rests."""
    if harness.url is None or not harness.url.startswith("sqlite"):
        pytest.skip("a file backup is SQLite's")
    path = harness.url.removeprefix("sqlite:///")
    first = await harness.open("long", usd="300")
    await down(harness)
    shutil.copy(path, tmp_path / "backup.db")
    h = await harness.start()
    h.sim.set_mark(SOL, first.stop_price - Decimal("1"))
    await eventually(
        lambda: h.exchange_qty() == 0 and not h.engine.ledger.positions[first.id].is_active,
        what="first closed",
    )
    await h.open("long", usd="300")
    await down(h)
    restore(tmp_path / "backup.db", Path(path))
    h = await harness.start()
    await eventually(lambda: covered(h), what="covered")
    await h.engine.wait_idle()
    active = h.engine.ledger.active_positions()
    assert [p.remaining for p in active] == [h.exchange_qty()], active
    assert [s.qty for s in stops(h)] == [h.exchange_qty()], h.resting()
    assert covered(h)


async def test_an_account_renamed_in_the_config_keeps_its_positions_protected(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`account` renamed: the new name is a new installation, so the old name's orders are another
    warden's. They are left resting (the position stays covered by its stop) and trading stops.
    The trader was told another warden trades the account "until it stops (then restart)": one
    that does not exist (it is this one, under its old name), while the old name's positions go
    unmanaged. The reason now names the database's account those orders are of."""
    if harness.url is None:
        pytest.skip("a real database")
    await harness.stop()  # ids as `warden run` makes them: the database's installation of each name
    harness.config = replace(harness.config, installation_id=await installation_of(harness.url, "default"))
    await harness.start()
    pos = await harness.open("long", usd="300")
    await down(harness)
    monkeypatch.setattr(harness_module, "open_store", functools.partial(open_store, account="renamed"))
    harness.config = replace(harness.config, installation_id=await installation_of(harness.url, "renamed"))
    before = sorted(o.client_order_id for o in harness.resting())
    h = await harness.start()
    await h.engine.wait_idle()
    said_all = [*h.engine.status().reasons]
    said_all += [
        a.message
        for a in h.notifier.alerts
        if a.kind is AlertKind.OTHER_INSTANCE and not a.message.startswith("other_instance")
    ]  # the reconciler's finding, beside it, only points to this one
    assert len(said_all) >= 2, said_all
    for said in said_all:  # not "another warden ... until it stops": it is this one's
        assert "account 'default'" in said and "renamed" in said, said
        assert "another warden" not in said, said
    assert sorted(o.client_order_id for o in h.resting()) == before
    h.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: h.exchange_qty() == pos.filled_qty - pos.tp1_qty, what="tp1 on the exchange")
    assert covered(h), before
    assert all(s.qty >= h.exchange_qty() for s in stops(h)), h.resting()


async def test_a_switched_exchange_leaves_the_other_exchanges_positions_open(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`exchange` switched with the same database and account: the positions recorded on the old
    exchange are still open there, under their stops. They were looked for on the new one, not
    found, and closed in the database as `reconciled_missing` with a made-up exit (the trader's
    records say flat; switched back, each is an orphan adopted with a fresh plan, its runner
    state gone). They are now left as they are, and the trader is told."""
    if harness.url is None:
        pytest.skip("the exchange a fill was recorded on is a database column")
    pos = await harness.open("long", usd="300")
    await harness.engine.wait_idle()
    await harness.stop()
    old = harness.sim
    monkeypatch.setattr(harness_module, "open_store", on_exchange("bybit"))
    harness.sim = SimulatedExchange(now=SystemClock().now, seed=8)  # another venue's account
    del harness.probe
    harness.restarted = False
    h = await harness.start()
    await h.engine.reconcile()  # the timer's pass, which also reads the database's rows
    await h.engine.wait_idle()
    recorded = await h.store.get_position(pos.id)
    assert recorded is not None and recorded.status is PositionStatus.PROTECTED, recorded
    assert pos.id not in h.engine.ledger.positions
    assert old.core.position(SOL).qty == pos.filled_qty  # still open there, under its stop
    [alert] = [a for a in h.notifier.alerts if a.kind is AlertKind.POSITIONS_ELSEWHERE]
    assert pos.id in alert.message and "sim" in alert.message, alert.message
    assert any("sim" in w for w in h.engine.status().warnings)
    with pytest.raises(AlreadyExists):  # its symbol is still held (there): nothing sent
        await h.open("long", usd="300")
    assert h.exchange_qty() == 0 and h.resting() == []
    monkeypatch.setattr(harness_module, "open_store", on_exchange("sim"))
    await h.stop()
    harness.sim, harness.restarted = old, True
    del harness.probe
    h = await harness.start()  # switched back: the position is warden's again, as it was
    await h.engine.wait_idle()
    back = h.engine.ledger.positions[pos.id]
    assert back.status is PositionStatus.PROTECTED and back.origin == pos.origin
    assert [s.qty for s in stops(h)] == [pos.filled_qty]


async def test_a_coarser_tick_size_while_down_still_resizes_and_trails_the_stop(harness: Harness) -> None:
    """The exchange coarsened the tick size while warden was down (Binance announces such
    changes): the resting stop's price, placed on the old tick, is no longer one the exchange
    takes. Its resize after TP1 sent that price again and was refused ('the old stop stays'):
    the stop kept the full entry size at the loss level, and the runner never trailed. The stop
    is now placed on the new tick, rounded the protective way (never looser)."""
    pos = await harness.open("long", usd="300")
    await down(harness)
    inst = harness.sim.core.instruments[SOL]
    harness.sim.core.instruments[SOL] = replace(inst, tick_size=Decimal("0.1"))
    assert pos.stop_price is not None and pos.stop_price % Decimal("0.1") != 0  # off the new tick
    h = await harness.start()
    await h.engine.wait_idle()
    h.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await h.engine.wait_idle()
    [stop] = stops(h)
    assert stop.qty == h.exchange_qty()
    assert stop.trigger_price == pos.stop_price + Decimal("0.05")  # 147.75 -> 147.8, not 147.7
    h.sim.set_mark(SOL, pos.tp2_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].trailing_active, what="runner")
    peak = pos.tp2_price + Decimal("3.33")
    h.sim.set_mark(SOL, peak)
    await eventually(lambda: h.engine.ledger.positions[pos.id].watermark == peak, what="peak")
    await h.engine.wait_idle()
    [stop] = stops(h)
    assert stop.qty == h.exchange_qty()
    assert stop.trigger_price == h.engine.instruments[SOL].round_price(peak * Decimal("0.995"))
    assert not [a for a in h.notifier.alerts if a.kind is AlertKind.PROTECTION_FAILED]


async def test_a_size_the_new_lot_does_not_divide_is_still_closed_when_it_cannot_be_protected(
    harness: Harness,
) -> None:
    """The lot coarsened while down (0.01 -> 0.1) and the stop cancelled by hand meanwhile: the
    position's 0.66 is no longer a size the exchange takes. Its stop is refused, and so was the
    protect-or-close fallback's close of exactly 0.66: the start failed (OrderRejected), warden
    started over and over, and the position stayed open with no stop. The close is now rounded up
    to the lot (reduce-only: it closes what is open, no more)."""
    pos = await harness.open("long", usd="100")
    assert pos.filled_qty % Decimal("0.1") != 0
    await down(harness)
    inst = harness.sim.core.instruments[SOL]
    harness.sim.core.instruments[SOL] = replace(inst, lot_size=Decimal("0.1"), min_qty=Decimal("0.1"))
    [stop] = stops(harness)
    harness.sim.core.cancel(stop.client_order_id, harness.sim._now())  # by hand, while down
    h = await harness.start()
    await h.engine.wait_idle()
    assert h.exchange_qty() == 0 and h.resting() == []
    closed = await h.store.get_position(pos.id)
    assert closed is not None and closed.status is PositionStatus.CLOSED and closed.remaining == 0
    assert [a for a in h.notifier.alerts if a.kind is AlertKind.PROTECTION_FAILED]


async def test_killed_during_the_recovery_of_what_happened_while_down(tmp_path: Path) -> None:
    """TP1 filled and the stop was cancelled by hand while down; warden dies after each I/O call
    of the recovery in turn, then starts cleanly: every time the runner is exactly one stop of
    its size, TP1 applied once, the exchange's position covered."""
    crash_at = 1
    while True:
        sim = SimulatedExchange(now=SystemClock().now, seed=11)
        h = await Harness(f"sqlite:///{tmp_path}/{crash_at}.db", sim).start()
        pos = await h.open("long", usd="300")
        await down(h)
        [stop] = stops(h)
        sim.core.cancel(stop.client_order_id, sim._now())
        sim.set_mark(SOL, pos.tp1_price)
        budget = CallBudget(crash_at)
        budget.harness, budget.armed = h, True
        h.wrap = lambda port, budget=budget: CrashAfter(port, budget)
        with contextlib.suppress(SimulatedCrash):
            await h.start()
        with contextlib.suppress(BaseException):  # a dead process: its own shutdown fails too
            await h.stop()
        h.wrap = None
        h.drop_stream()
        await h.start()
        await h.engine.wait_idle()
        p = h.engine.ledger.positions[pos.id]
        assert p.tp1_hit and p.remaining == h.exchange_qty() == pos.filled_qty - pos.tp1_qty, crash_at
        assert [s.qty for s in stops(h)] == [p.remaining], (crash_at, h.resting())
        assert covered(h), crash_at
        await h.stop()
        if not budget.dead:
            break  # the recovery ran to its end without reaching the crash point: all were tried
        crash_at += 1
    assert crash_at > 5
