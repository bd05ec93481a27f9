"""Two accounts in one engine process, on the in-process simulator and both stores.

Each account has its own engine, lease, exchange and controls: a signal to one lands only on
its exchange, pause and kill stay with their account, and one account that cannot start
leaves the other trading."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from warden.adapters.clock import SystemClock
from warden.adapters.db.store import open_store
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimFaults, SimulatedExchange
from warden.bootstrap import Fleet, _same_exchange_account, running, running_fleet
from warden.config import Settings
from warden.domain.position import PositionStatus
from warden.domain.reports import PositionReport, StreamEvent
from warden.domain.values import Side, Symbol
from warden.service.commands import EngineState, OpenPosition, TradingRefused
from warden.service.engine import Engine

from .conftest import TWO_SIM, first_open_times_out, fleet_settings

SOL = Symbol("SOL/USDT:USDT")


def sim(fleet: Fleet, name: str) -> SimulatedExchange:
    runtime = fleet.runtime(name)
    assert runtime is not None and runtime.sim is not None, fleet.failures
    return runtime.sim


def engine(fleet: Fleet, name: str) -> Engine:
    runtime = fleet.runtime(name)
    assert runtime is not None, fleet.failures
    return runtime.engine


async def test_a_signal_lands_only_on_its_accounts_exchange(tmp_path: Path, store_url: str) -> None:
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        assert fleet.names == ("main", "alt") and fleet.failures == {}
        assert all(fleet.runtimes[name].is_holder for name in fleet.names)
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
        assert [(p.symbol, p.side) for p in sim(fleet, "main").core.positions()] == [(SOL, Side.LONG)]
        assert sim(fleet, "alt").core.positions() == []
        assert sim(fleet, "alt").core.open_orders() == []
        assert await engine(fleet, "alt").list_positions() == []

        # The other account trades the same symbol the other way: its own position, its own stop,
        # and its own fills (the simulators number their trades alike: T1, T2...).
        short = await engine(fleet, "alt").open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
        assert short.status is PositionStatus.PROTECTED
        assert [(p.symbol, p.side) for p in sim(fleet, "alt").core.positions()] == [(SOL, Side.SHORT)]
        assert [(p.symbol, p.side) for p in sim(fleet, "main").core.positions()] == [(SOL, Side.LONG)]
        assert [v.position.id for v in await engine(fleet, "main").list_positions()] == [opened.id]
        assert [v.position.id for v in await engine(fleet, "alt").list_positions()] == [short.id]
    for name, position in (("main", opened), ("alt", short)):
        store = await open_store(store_url, exchange="sim", account=name)
        try:
            fills = await store.fills_for(position.id)
        finally:
            await store.close()
        assert position.filled_qty > 0
        assert sum(f.qty for f in fills) == position.filled_qty, name


async def test_pause_and_kill_stay_with_their_account(tmp_path: Path, store_url: str) -> None:
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        main, alt = engine(fleet, "main"), engine(fleet, "alt")
        await alt.open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
        await main.pause("main only")
        with pytest.raises(TradingRefused, match="paused"):
            await main.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert sim(fleet, "main").core.positions() == []
        assert alt.status().accepting_signals

        report = await alt.kill(flatten=True, reason="alt only")
        assert report.controls.killed and len(report.closed) == 1
        assert sim(fleet, "alt").core.positions() == []
        assert not main.status().controls.killed
        await main.resume()
        opened = await main.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
        with pytest.raises(TradingRefused, match="kill switch"):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))


async def test_limits_are_per_account(tmp_path: Path, store_url: str) -> None:
    """alt allows one open position; main, without the table's limit, takes two."""
    from warden.domain.controls import LimitExceeded

    settings = fleet_settings(tmp_path, store_url, TWO_SIM, extra="allow_stacking = true")
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        main, alt = engine(fleet, "main"), engine(fleet, "alt")
        for _ in range(2):
            await main.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        with pytest.raises(LimitExceeded):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert len(await main.list_positions()) == 2


async def test_an_account_whose_exchange_fails_at_startup_leaves_the_other_trading(
    tmp_path: Path, store_url: str
) -> None:
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    clock = SystemClock()
    down = SimulatedExchange(now=clock.now, faults=SimFaults(fail_queries=True), seed=2)
    async with running_fleet(
        settings,
        clock=clock,
        price_feed=False,
        notifier=lambda _: RecordingNotifier(),
        exchanges={"alt": down},
    ) as fleet:
        alt = engine(fleet, "alt")
        assert alt.status().state is EngineState.STARTING
        assert not alt.status().accepting_signals
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
        with pytest.raises(TradingRefused):
            await alt.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert down.core.positions() == []

        down.faults.fail_queries = False  # the exchange comes back: alt recovers on its own
        await eventually(lambda: alt.status().accepting_signals, timeout=30, what="alt to recover")
        short = await alt.open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
        assert short.status is PositionStatus.PROTECTED
    await down.close()


async def test_an_account_that_cannot_be_built_leaves_the_other_trading(
    tmp_path: Path, store_url: str
) -> None:
    """alt names a key variable that is not set: it is reported, main trades."""
    tables = TWO_SIM.replace(
        '[accounts.alt]\nexchange = "sim"',
        '[accounts.alt]\nexchange = "binanceusdm"\n'
        'api_key_env = "NO_SUCH_KEY_X"\napi_secret_env = "NO_SUCH_SECRET_X"',
    )
    settings = fleet_settings(tmp_path, store_url, tables)
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        assert fleet.runtime("alt") is None
        assert fleet.failures == {
            "alt": "accounts.alt.api_key_env: the environment variable NO_SUCH_KEY_X is not set"
        }
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED


async def test_an_account_held_by_another_engine_stands_by_and_the_other_trades(
    tmp_path: Path, store_url: str
) -> None:
    """alt's lease is held elsewhere (another engine on the same database): this fleet stands by
    for alt — it sends nothing for it — and trades main; when the holder goes, alt is taken over."""
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    holder_settings = settings.for_account("alt").model_copy(update={"data_dir": tmp_path / "other"})
    async with running(holder_settings, price_feed=False, notifier=RecordingNotifier()) as holder:
        assert holder.is_holder
        async with running_fleet(
            settings, price_feed=False, notifier=lambda _: RecordingNotifier(), lease_retry=0.05
        ) as fleet:
            alt_runtime = fleet.runtime("alt")
            assert alt_runtime is not None and not alt_runtime.is_holder
            assert alt_runtime.engine.status().state is EngineState.READ_ONLY
            assert fleet.runtimes["main"].is_holder
            opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
            assert opened.status is PositionStatus.PROTECTED
            with pytest.raises(TradingRefused, match="standby"):
                await engine(fleet, "alt").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
            assert sim(fleet, "alt").core.positions() == []

            await holder.engine.stop()
            await holder.lease.release()
            await eventually(lambda: alt_runtime.is_holder, timeout=30, what="alt to be taken over")
            await eventually(
                lambda: alt_runtime.engine.status().accepting_signals, timeout=30, what="alt ready"
            )
            short = await engine(fleet, "alt").open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
            assert short.status is PositionStatus.PROTECTED
            assert engine(fleet, "main").status().accepting_signals


async def test_two_tables_on_one_exchange_account_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tables with the same key on the same venue and endpoint would be two writers on one
    exchange account: the later one is refused (named), the first and the others run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens: that account keeps starting
    monkeypatch.setenv("K1", "same-key")
    monkeypatch.setenv("S1", "secret")
    monkeypatch.setenv("S2", "other-secret")
    tables = f"""
[accounts.one]
exchange = "binanceusdm"
exchange_url = "{url}"
api_key_env = "K1"
api_secret_env = "S1"

[accounts.two]
exchange = "binanceusdm"
exchange_url = "{url}"
api_key_env = "K1"
api_secret_env = "S2"

[accounts.sim]
exchange = "sim"
"""
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", tables, extra="order_timeout = 1")
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        assert set(fleet.runtimes) == {"one", "sim"}
        assert fleet.failures == {
            "two": "accounts.two: trades the same exchange account as 'one' (same exchange, endpoint"
            " and key); one writer per exchange account"
        }
        opened = await engine(fleet, "sim").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED


@pytest.mark.parametrize(
    ("one", "two", "refused"),
    [
        # testnet is ignored once exchange_url is set: the same endpoint, the same account
        (
            'exchange_url = "http://127.0.0.1:9"',
            'exchange_url = "http://127.0.0.1:9"\ntestnet = true',
            ["two"],
        ),
        ("", "testnet = false", ["two"]),  # the live endpoint, written or not
        ("", "testnet = true", []),  # live and test environments: two accounts
        # two URLs may be two venues (simulators holding accounts under one key): not compared
        ('exchange_url = "http://127.0.0.1:9"', 'exchange_url = "http://127.0.0.1:10"', []),
    ],
)
def test_one_key_on_one_endpoint_is_one_exchange_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one: str, two: str, refused: list[str]
) -> None:
    """The same key on the same venue and endpoint is one exchange account, whichever way the
    endpoint is written: the later table is refused. It let a table with `testnet = true` beside
    one with the same `exchange_url` (where testnet is ignored) through as a second writer."""
    monkeypatch.setenv("K1", "same-key")
    monkeypatch.setenv("S1", "secret")
    tables = f"""
[accounts.one]
exchange = "binanceusdm"
api_key_env = "K1"
api_secret_env = "S1"
{one}

[accounts.two]
exchange = "binanceusdm"
api_key_env = "K1"
api_secret_env = "S1"
{two}
"""
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", tables)
    per_account = {name: settings.for_account(name) for name in ("one", "two")}
    assert list(_same_exchange_account(per_account)) == refused


@pytest.mark.parametrize(
    ("one", "two", "refused"),
    [
        # With exchange_url the sidecar at that URL trades its own wallet and sub-account: the
        # tables' drift_sub_account (and keypair) are not used, so they do not tell two tables apart.
        (
            'exchange_url = "http://127.0.0.1:8766"\ndrift_sub_account = 1',
            'exchange_url = "http://127.0.0.1:8766"\ndrift_sub_account = 2',
            ["two"],
        ),
        (
            'exchange_url = "http://127.0.0.1:8766"\ndrift_keypair_path = "/keys/a.json"',
            'exchange_url = "http://127.0.0.1:8766"\ndrift_keypair_path = "/keys/b.json"',
            ["two"],
        ),
        ('exchange_url = "http://127.0.0.1:8766"', 'exchange_url = "http://127.0.0.1:8767"', []),
        # warden starts each sidecar: one wallet file, written two ways, is one wallet
        ('drift_keypair_path = "/keys/w.json"', 'drift_keypair_path = "/keys/./w.json"', ["two"]),
        (
            'drift_keypair_path = "/keys/w.json"',
            'drift_keypair_path = "/keys/w.json"\ndrift_sub_account = 1',
            [],
        ),
    ],
)
def test_one_drift_sidecar_or_wallet_sub_account_is_one_exchange_account(
    tmp_path: Path, one: str, two: str, refused: list[str]
) -> None:
    """Two Drift tables on one sidecar URL trade the sidecar's one sub-account, whatever their
    drift_sub_account says (it is used only for a sidecar warden starts): they were let through
    as two accounts when their drift_sub_account differed, two writers sharing one sub-account's
    255 user order ids. The later is refused, as is a wallet path written two ways."""
    tables = f"""
[accounts.one]
exchange = "drift"
{one}

[accounts.two]
exchange = "drift"
{two}
"""
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", tables)
    per_account = {name: settings.for_account(name) for name in ("one", "two")}
    assert list(_same_exchange_account(per_account)) == refused


THREE_SIM = (
    TWO_SIM
    + """
[accounts.third]
exchange = "sim"
sim_seed = 3
"""
)


def held(fleet: Fleet) -> set[str]:
    return {name for name, runtime in fleet.runtimes.items() if runtime.is_holder}


def capped_fleet(settings: Settings) -> contextlib.AbstractAsyncContextManager[Fleet]:
    return running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier(), lease_retry=0.05)


async def test_engines_share_accounts_up_to_their_capacity_and_take_over_when_one_goes(
    tmp_path: Path, store_url: str
) -> None:
    """A fleet of two engines over three accounts, capacity 2 each. A takes two and stands by for
    the third, saying why; B takes the third. When A goes, B takes over one of A's (it has room
    for one more) and stands by for the last, saying it is at capacity. No account is ever held
    by both, and either engine names each account's holder."""
    settings = fleet_settings(tmp_path, store_url, THREE_SIM, extra='capacity = 2\nengine_name = "a"')
    other = settings.model_copy(update={"data_dir": tmp_path / "b", "engine_name": "b"})
    async with contextlib.AsyncExitStack() as stack:
        first = contextlib.AsyncExitStack()
        a = await first.enter_async_context(capped_fleet(settings))
        assert len(held(a)) == 2 and a.failures == {}
        [left] = set(a.names) - held(a)
        status = a.runtimes[left].engine.status()
        assert status.state is EngineState.READ_ONLY
        assert any("capacity of 2" in reason for reason in status.reasons), status.reasons

        b = await stack.enter_async_context(capped_fleet(other))
        await eventually(lambda: held(b) == {left}, timeout=30, what="B to take the free account")
        assert held(a) & held(b) == set()
        await eventually(
            lambda: any("held by b" in r for r in a.runtimes[left].engine.status().reasons),
            timeout=30,
            what="A to name B as the free account's holder",
        )
        assert {a.runtimes[name].lease.holder() for name in held(a)} == {"a"}

        a_held = held(a)
        await first.aclose()  # engine A goes: its leases end with it
        await eventually(lambda: len(held(b)) == 2, timeout=30, what="B to take over one of A's accounts")
        assert left in held(b) and held(b) - {left} <= a_held
        [waiting] = set(b.names) - held(b)
        await eventually(
            lambda: any("held by no engine" in r for r in b.runtimes[waiting].engine.status().reasons),
            timeout=30,
            what="B to say that nothing protects the account it has no room for",
        )
        assert any("capacity of 2" in reason for reason in b.runtimes[waiting].engine.status().reasons)


async def test_an_account_whose_database_does_not_answer_at_start_is_started_again(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that does not answer one account's first open (a timeout under load, a blip)
    must not leave that account unserved by this engine for good: it is named, with the retry,
    and started again; the other account trades throughout."""
    failed = first_open_times_out(monkeypatch, "alt")
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    async with running_fleet(
        settings, price_feed=False, notifier=lambda _: RecordingNotifier(), restart_after=0.05
    ) as fleet:
        assert failed == ["alt"]
        if fleet.runtime("alt") is None:  # not started again yet: named, with the retry
            assert "alt" in fleet.retrying and "starting again" in fleet.failures["alt"], fleet.failures
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
        await eventually(lambda: fleet.runtime("alt") is not None, timeout=30, what="alt started again")
        await eventually(
            lambda: engine(fleet, "alt").status().accepting_signals, timeout=30, what="alt ready"
        )
        assert "alt" not in fleet.failures
        short = await engine(fleet, "alt").open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
        assert short.status is PositionStatus.PROTECTED


class FirstRecoveryBreaks(SimulatedExchange):
    """An adapter with a bug: its first positions query raises what no adapter should (a KeyError)."""

    broke = False

    async def fetch_positions(self) -> list[PositionReport]:
        if not self.broke:
            self.broke = True
            raise KeyError("positionAmt")
        return await super().fetch_positions()


async def test_an_account_whose_first_start_raises_a_bug_leaves_no_loop_of_that_engine_running(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alt's adapter raises an unexpected exception at its first start: alt is started again with
    a new engine, main trades throughout, and nothing of alt's first engine goes on acting (its
    stream, reconcile, maintenance and silence loops end with it: it is stopped)."""
    made: list[Engine] = []
    run_loops = Engine.run_loops

    def recorded(self: Engine, stream: Any) -> None:
        if self.config.account == "alt":
            made.append(self)
        run_loops(self, stream)

    monkeypatch.setattr(Engine, "run_loops", recorded)
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    clock = SystemClock()
    broken = FirstRecoveryBreaks(now=clock.now, seed=2)
    async with running_fleet(
        settings,
        clock=clock,
        price_feed=False,
        notifier=lambda _: RecordingNotifier(),
        exchanges={"alt": broken},
        restart_after=0.05,
    ) as fleet:
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
        await eventually(
            lambda: fleet.runtime("alt") is not None and engine(fleet, "alt").status().accepting_signals,
            timeout=30,
            what="alt started again and ready",
        )
        first, current = made[0], engine(fleet, "alt")
        assert broken.broke and first is not current
        assert first.status().state is EngineState.STOPPED
        assert len(first._loops) == 0
        short = await current.open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
        assert short.status is PositionStatus.PROTECTED
    await broken.close()


class StreamBreaksOnce(SimulatedExchange):
    """An adapter with a bug in its stream: the first event it takes raises (a KeyError)."""

    broke = False

    def stream(self) -> AsyncIterator[StreamEvent]:
        events = super().stream()

        async def breaking() -> AsyncIterator[StreamEvent]:
            async for event in events:
                if not self.broke:
                    self.broke = True
                    raise KeyError("e")
                yield event

        return breaking()


async def test_an_account_whose_stream_raises_takes_it_again_and_sees_its_stops_fire(
    tmp_path: Path, store_url: str
) -> None:
    """alt's stream raises (a bug in its adapter): alt takes the exchange's stream again, so a
    stop that fires afterwards is seen at once, not only by the next reconciliation (an hour
    away here); main trades throughout."""
    settings = fleet_settings(tmp_path, store_url, TWO_SIM, extra="reconcile_interval = 3600")
    clock = SystemClock()
    broken = StreamBreaksOnce(now=clock.now, seed=2)
    async with running_fleet(
        settings,
        clock=clock,
        price_feed=False,
        notifier=lambda _: RecordingNotifier(),
        exchanges={"alt": broken},
    ) as fleet:
        alt = engine(fleet, "alt")
        short = await alt.open_position(OpenPosition(SOL, Side.SHORT, Decimal(100)))
        assert short.status is PositionStatus.PROTECTED and broken.broke
        await alt.wait_idle()
        assert short.stop_price is not None
        broken.set_mark(SOL, short.stop_price + Decimal("0.1"))
        await eventually(
            lambda: alt.ledger.positions[short.id].status is PositionStatus.CLOSED,
            timeout=10,
            what="alt to see its stop fire on its stream",
        )
        assert alt.ledger.positions[short.id].exit_reason == "stop"
        assert broken.core.positions() == []
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
    await broken.close()


class StartHangs(SimulatedExchange):
    """An exchange whose first positions query hangs until `answer` is set (a venue, or a Drift
    sidecar, that takes its time at start)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.answer = asyncio.Event()

    async def fetch_positions(self) -> list[PositionReport]:
        await self.answer.wait()
        return await super().fetch_positions()


async def test_an_account_slow_to_start_does_not_hold_back_the_others(tmp_path: Path, store_url: str) -> None:
    """alt's first start hangs on its exchange. The fleet was handed over (API, Telegram) only
    once every account's first start had ended: main, protecting its positions, took no signal
    from outside for as long (up to a minute behind a Drift sidecar). It is handed over after
    `first_start_wait`, alt shown as starting; alt joins when its exchange answers."""
    settings = fleet_settings(tmp_path, store_url, TWO_SIM)
    clock = SystemClock()
    slow = StartHangs(now=clock.now, seed=2)
    async with (
        asyncio.timeout(30),
        running_fleet(
            settings,
            clock=clock,
            price_feed=False,
            notifier=lambda _: RecordingNotifier(),
            exchanges={"alt": slow},
            first_start_wait=0.2,
        ) as fleet,
    ):
        assert "alt" in fleet.starting and fleet.runtime("alt") is None
        await eventually(
            lambda: fleet.runtime("main") is not None and engine(fleet, "main").status().accepting_signals,
            timeout=20,
            what="main started while alt's start hangs",
        )
        assert fleet.starting == {"alt"}
        opened = await engine(fleet, "main").open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
        assert opened.status is PositionStatus.PROTECTED
        slow.answer.set()
        await eventually(
            lambda: fleet.runtime("alt") is not None and engine(fleet, "alt").status().accepting_signals,
            timeout=20,
            what="alt started once its exchange answered",
        )
        assert fleet.starting == set()
    await slow.close()
