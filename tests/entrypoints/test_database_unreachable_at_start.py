"""A process that cannot open its database at all as it starts (PostgreSQL down, chaos 1222:170).

It cannot take the lease or load anything, so before it fails it guards what the exchange holds,
under the installation id kept beside its data: a position that filled just before a kill -9 is
not left without a stop until the database answers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import warden.bootstrap
from tests.accounts.conftest import TWO_SIM, fleet_settings
from tests.helpers import eventually
from warden.adapters.clock import SystemClock
from warden.adapters.db.installation_file import InstallationFile
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.bootstrap import running, running_fleet
from warden.config import Settings
from warden.domain.alerts import AlertKind, Severity
from warden.domain.orders import OrderSide, OrderType
from warden.domain.reports import OrderReport
from warden.domain.values import OrderRole, Side, Symbol, parse_client_id
from warden.entrypoints.cli import app
from warden.ports import StoreUnavailable
from warden.service.commands import OpenPosition

from .conftest import TOKEN
from .test_config_mistakes import closed_port_url, free_port

SOL = Symbol("SOL/USDT:USDT")
runner = CliRunner()


def settings_on(tmp_path: Path, db: str) -> Settings:
    return Settings.load(db=db, exchange="sim", data_dir=tmp_path / "data", api_token=TOKEN)


def unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database does not answer: every open (and migration) fails as PostgreSQL down does."""

    async def down(url: str, **_: Any) -> Any:
        raise StoreUnavailable(f"{url}: connection refused (test)")

    monkeypatch.setattr(warden.bootstrap, "open_store", down)
    monkeypatch.setattr(warden.bootstrap, "upgrade", down)


def stops(exchange: SimulatedExchange) -> list[OrderReport]:
    return [o for o in exchange.core.open_orders() if o.type is OrderType.STOP_MARKET]


def held(exchange: SimulatedExchange) -> Decimal:
    return sum((abs(p.qty) for p in exchange.core.positions()), Decimal(0))


async def test_a_start_that_cannot_open_its_database_guards_the_exchange_under_its_installation_id(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed just as its entry filled (its stop never sent), warden starts again with the
    database down: it exited with the error and placed nothing, so the position was naked until
    the database answered (5 s in chaos 1222:170). Now the start guards it before it fails, under
    the installation id its last start kept; the start that opens the database takes the guard
    for its own stray (no `other_instance`), protects the position with its own stop and
    cancels the guard."""
    settings = settings_on(tmp_path, store_url)
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now, seed=1)
    async with running(settings, exchange=sim, price_feed=False, notifier=RecordingNotifier()) as rt:
        opened = await rt.engine.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        installation = rt.store.installation_id
    assert InstallationFile(settings.data_dir, settings.account).recall(settings.db) == installation
    for stop in stops(sim):
        sim.cancel_external(stop.client_order_id)  # as if killed before its stop went out
    assert not stops(sim) and held(sim) == opened.filled_qty

    with monkeypatch.context() as patch:
        unreachable(patch)
        told = RecordingNotifier()
        with pytest.raises(StoreUnavailable):
            async with running(settings, exchange=sim, price_feed=False, notifier=told):
                pytest.fail("started without its database")
    [guard] = stops(sim)
    parsed = parse_client_id(guard.client_order_id)
    assert parsed is not None and parsed.installation == installation and parsed.role is OrderRole.STOP
    assert guard.reduce_only and guard.qty == opened.filled_qty and guard.side is OrderSide.SELL
    [alert] = told.alerts
    assert alert.kind is AlertKind.STOP_REPLACED and "guard stops placed" in alert.message
    assert "database unreachable at startup" in alert.message and "connection refused" in alert.message

    notifier = RecordingNotifier()
    async with running(settings, exchange=sim, price_feed=False, notifier=notifier) as rt:
        assert rt.engine.status().accepting_signals
        await rt.engine.wait_idle()
        await rt.engine.reconcile()
        await eventually(
            lambda: [o.client_order_id for o in stops(sim)] != [guard.client_order_id],
            what="the position's own stop, and the guard cancelled",
        )
        [own] = stops(sim)
        assert own.qty == opened.filled_qty and "guard" not in own.client_order_id
        assert not [a for a in notifier.alerts if a.kind is AlertKind.OTHER_INSTANCE]
    await sim.close()


async def test_a_database_that_goes_down_between_the_store_and_the_lease_is_guarded_likewise(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store opened (its installation id kept), then the lease could not be taken: the
    database went down in between. Nothing is loaded and nothing may act under a lease, so the
    start fails as one that cannot open its store does, having guarded the exchange first, and
    with the database's error as itself (it came out of the task group as an ExceptionGroup,
    which `warden run` printed as `error: ExceptionGroup: ...` with a traceback)."""
    settings = settings_on(tmp_path, store_url)
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now, seed=1)
    sim.external_order(SOL, OrderSide.BUY, Decimal(1))  # a long no stop covers
    real_lease_for = warden.bootstrap.lease_for

    def lease_down(*args: Any, **kwargs: Any) -> Any:
        lease = real_lease_for(*args, **kwargs)

        async def down() -> int | None:
            raise StoreUnavailable("lease: connection refused (test)")

        lease.try_acquire = down
        return lease

    monkeypatch.setattr(warden.bootstrap, "lease_for", lease_down)
    told = RecordingNotifier()
    with pytest.raises(StoreUnavailable, match="lease: connection refused"):  # as itself, for the CLI
        async with running(settings, exchange=sim, price_feed=False, notifier=told):
            pytest.fail("started without its lease")
    installation = InstallationFile(settings.data_dir, settings.account).recall(settings.db)
    [guard] = stops(sim)
    parsed = parse_client_id(guard.client_order_id)
    assert parsed is not None and parsed.installation == installation
    assert guard.reduce_only and guard.qty == Decimal(1) and guard.side is OrderSide.SELL
    assert [a.kind for a in told.alerts] == [AlertKind.STOP_REPLACED], told.alerts
    await sim.close()


class CoveredMeanwhile(SystemClock):
    """Time in which the engine holding the account (this host alone cut off from the database)
    covers its fill: its stop rests by the time the first pause ends."""

    def __init__(self, cover: Any) -> None:
        self.cover = cover

    async def sleep(self, seconds: float) -> None:
        if self.cover is not None:
            self.cover, cover = None, self.cover
            cover()
        await super().sleep(seconds)


async def test_a_position_another_engine_covers_within_half_the_window_gets_no_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent without the lease, a guard goes only where the exchange shows a position uncovered
    twice, half the protection window apart: an engine holding the account covers a fill in
    that time, and a guard beside its stop would be a second writer's order (I6) resting until
    that engine cancelled it as a stray."""
    settings = settings_on(tmp_path, closed_port_url())
    settings.data_dir.mkdir(parents=True)
    InstallationFile(settings.data_dir, settings.account).remember(settings.db, "abc123")
    sim = SimulatedExchange(now=SystemClock().now, seed=1)
    sim.external_order(SOL, OrderSide.BUY, Decimal(1))  # its fill, the holder's stop not out yet
    price = sim.core.mark(SOL) * Decimal("0.9")

    def holder_stop() -> None:
        sim.external_order(
            SOL, OrderSide.SELL, Decimal(1), True, order_type=OrderType.STOP_MARKET, trigger_price=price
        )

    unreachable(monkeypatch)
    told = RecordingNotifier()
    with pytest.raises(StoreUnavailable):
        async with running(settings, clock=CoveredMeanwhile(holder_stop), exchange=sim, notifier=told):
            pytest.fail("started without its database")
    assert [o.client_order_id for o in stops(sim)] == ["ext-2"]  # the holder's alone
    assert not told.alerts
    await sim.close()


async def test_with_no_installation_id_kept_for_the_database_nothing_is_sent_and_the_trader_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory that never opened this database (a first start, another database, a
    record not warden's) has no id to name a guard by: one of another installation would stop the
    engine that opens the database later (`other_instance`). Nothing is sent; the trader is told,
    as a protection failure, what no stop covers."""
    settings = settings_on(tmp_path, closed_port_url())
    (settings.data_dir).mkdir(parents=True)
    InstallationFile(settings.data_dir, settings.account).remember(
        "postgresql://warden@elsewhere:5432/warden", "abc123"
    )
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now, seed=1)
    sim.external_order(SOL, OrderSide.SELL, Decimal(1))  # a short no stop covers
    unreachable(monkeypatch)
    told = RecordingNotifier()
    with pytest.raises(StoreUnavailable):
        async with running(settings, exchange=sim, price_feed=False, notifier=told):
            pytest.fail("started without its database")
    assert not sim.core.open_orders()
    [alert] = told.alerts
    assert alert.kind is AlertKind.PROTECTION_FAILED and alert.kind.severity is Severity.CRITICAL
    assert "no installation id is kept for this database" in alert.message
    assert "SOL/USDT:USDT short 1" in alert.message and "no stop covers it" in alert.message
    await sim.close()


def test_an_installation_record_is_kept_per_database_and_refused_when_not_warden_s(tmp_path: Path) -> None:
    """Kept per database (its URL without the password) and per account; a record not warden's
    is said so, not taken for an id."""
    record = InstallationFile(tmp_path, "main")
    assert record.recall("postgresql://warden:pw@db/warden") is None  # nothing kept yet
    record.remember("postgresql://warden:pw@db/warden", "abc123")
    assert "pw" not in record.path.read_text()
    assert record.recall("postgresql://warden:other@db/warden") == "abc123"  # the password changed
    assert record.recall("postgresql://warden@db2/warden") is None  # another database
    assert InstallationFile(tmp_path, "alt").recall("postgresql://warden:pw@db/warden") is None
    record.path.write_text(json.dumps({"db": "postgresql://warden:***@db/warden", "installation_id": "../x"}))
    with pytest.raises(StoreUnavailable, match="not an installation record warden wrote"):
        record.recall("postgresql://warden:pw@db/warden")
    record.path.write_text("{not json")
    with pytest.raises(StoreUnavailable, match="not an installation record warden wrote"):
        record.recall("postgresql://warden:pw@db/warden")
    record.remember("postgresql://warden:pw@db/warden", "abc123")  # written over what is not ours
    assert record.recall("postgresql://warden:pw@db/warden") == "abc123"


def test_warden_run_with_its_database_down_guards_the_embedded_exchange_then_exits(tmp_path: Path) -> None:
    """The user's path: `warden run` on a PostgreSQL that does not answer. It fails as before
    (`error: db: ...`, exit 1, for a supervisor to start it again), but the position the
    exchange holds without a stop (here the embedded simulator's, kept in its state file) has
    a guard stop under the kept installation id by then."""
    data = tmp_path / "data"
    db = closed_port_url()
    state = data / "sim-default.json"
    sim = SimulatedExchange(now=SystemClock().now, seed=1, state_file=state)
    sim.external_order(SOL, OrderSide.BUY, Decimal(2))
    sim.save()
    InstallationFile(data, "default").remember(db, "abc123")
    args = ["run", "--port", free_port(), "--data-dir", str(data), "--db", db, "--exchange", "sim"]
    result = runner.invoke(app, args, env={"WARDEN_API_TOKEN": TOKEN})
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: db: "), result.stderr
    assert "hunter2" not in result.stderr
    after = SimulatedExchange(now=SystemClock().now, seed=1, state_file=state)
    [guard] = stops(after)
    parsed = parse_client_id(guard.client_order_id)
    assert parsed is not None and parsed.installation == "abc123"
    assert guard.reduce_only and guard.qty == Decimal(2) and guard.side is OrderSide.SELL


async def test_a_fleet_whose_database_is_down_at_start_guards_every_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet migrates its database once, before any account: with it down, the start failed
    there, before any account could guard. Each account's exchange is guarded under its own
    kept id."""
    settings = fleet_settings(tmp_path, closed_port_url(), TWO_SIM)
    clock = SystemClock()
    exchanges = {name: SimulatedExchange(now=clock.now, seed=n) for n, name in enumerate(("main", "alt"))}
    settings.data_dir.mkdir(parents=True)
    for name, exchange in exchanges.items():
        InstallationFile(settings.data_dir, name).remember(settings.db, f"{name[:3]}123")
        exchange.external_order(SOL, OrderSide.BUY, Decimal(1))
    unreachable(monkeypatch)
    with pytest.raises(StoreUnavailable):
        async with running_fleet(settings, price_feed=False, exchanges=exchanges):
            pytest.fail("started without its database")
    for name, exchange in exchanges.items():
        [guard] = stops(exchange)
        parsed = parse_client_id(guard.client_order_id)
        assert parsed is not None and parsed.installation == f"{name[:3]}123", name
        await exchange.close()
