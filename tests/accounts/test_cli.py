"""The `warden` CLI against an engine serving two accounts, over real HTTP: `--account` on
every command, status showing each account's lease, and a kill without one that stops all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner, Result

from tests.entrypoints.test_cli import free_socket
from tests.helpers import eventually
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Fleet, running_fleet
from warden.entrypoints.api import create_app
from warden.entrypoints.cli import QuietServer, app

from .conftest import TOKEN, TWO_SIM, fleet_settings

runner = CliRunner()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM, extra='engine_name = "alpha"')
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as running:
        yield running


@contextlib.asynccontextmanager
async def served(fleet: Fleet) -> AsyncIterator[str]:
    """The fleet's API on a free port, its URL."""
    sock = free_socket()
    config = uvicorn.Config(create_app(lambda: fleet), log_config=None, access_log=False, lifespan="off")
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def url(fleet: Fleet) -> AsyncIterator[str]:
    async with served(fleet) as served_url:
        yield served_url


async def cli(url: str, *args: str) -> Result:
    env = {"WARDEN_URL": url, "WARDEN_API_TOKEN": TOKEN}
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args), env=env))


def sim_positions(fleet: Fleet, name: str) -> int:
    runtime = fleet.runtime(name)
    assert runtime is not None and runtime.sim is not None
    return len(runtime.sim.core.positions())


async def test_open_without_account_is_refused_naming_the_accounts(fleet: Fleet, url: str) -> None:
    refused = await cli(url, "open", "sol", "long")
    assert refused.exit_code == 1
    assert "error: account: is required: this engine serves main, alt" in refused.stderr
    assert sim_positions(fleet, "main") == sim_positions(fleet, "alt") == 0
    unknown = await cli(url, "positions", "--account", "nope")
    assert unknown.exit_code == 1 and "unknown account 'nope'" in unknown.stderr


async def test_every_command_takes_account(fleet: Fleet, url: str) -> None:
    opened = await cli(url, "open", "sol", "long", "--account", "alt")
    assert opened.exit_code == 0, opened.output
    assert "resting (protected)" in opened.stdout
    position_id = opened.stdout.split()[0]
    assert (sim_positions(fleet, "main"), sim_positions(fleet, "alt")) == (0, 1)

    listed = await cli(url, "positions", "--account", "alt")
    assert listed.exit_code == 0 and position_id in listed.stdout
    other = await cli(url, "positions", "--account", "main")
    assert other.exit_code == 0 and "no open positions" in other.stdout
    events = await cli(url, "events", "--account", "alt")
    assert events.exit_code == 0 and position_id in events.stdout
    assert (await cli(url, "reconcile", "--account", "alt")).exit_code == 0

    paused = await cli(url, "pause", "--account", "main", "--reason", "main only")
    assert paused.exit_code == 0, paused.output
    assert fleet.runtimes["main"].engine.status().controls.paused
    assert not fleet.runtimes["alt"].engine.status().controls.paused
    assert (await cli(url, "resume", "--account", "main")).exit_code == 0
    assert not fleet.runtimes["main"].engine.status().controls.paused

    closed = await cli(url, "close", position_id, "--account", "alt")
    assert closed.exit_code == 0, closed.output
    assert "closed: realized PnL" in closed.stdout
    assert sim_positions(fleet, "alt") == 0


async def test_status_shows_each_account_and_its_lease(url: str) -> None:
    shown = await cli(url, "status")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:6] == ["ACCOUNT", "EXCHANGE", "HOLDER", "STATE", "SIGNALS", "OPEN"]
    assert [line.split()[:7] for line in lines[1:3]] == [
        ["main", "sim", "alpha", "(this", "engine)", "ready", "yes"],
        ["alt", "sim", "alpha", "(this", "engine)", "ready", "yes"],
    ]
    one = await cli(url, "status", "--account", "alt")
    assert one.exit_code == 0, one.output
    assert "alt (lease held by this engine, alpha)" in one.stdout


async def test_account_is_matched_in_any_case(fleet: Fleet, url: str) -> None:
    """`--account Alt` was refused as unknown: no two accounts differ only in case, so the name is
    matched whatever its case, and shown under its configured spelling."""
    paused = await cli(url, "pause", "--account", "Alt", "--reason", "alt only")
    assert paused.exit_code == 0, paused.output
    assert fleet.runtimes["alt"].engine.status().controls.paused
    assert not fleet.runtimes["main"].engine.status().controls.paused
    one = await cli(url, "status", "--account", "ALT")
    assert one.exit_code == 0, one.output
    assert "alt (lease held by this engine, alpha)" in one.stdout
    unknown = await cli(url, "positions", "--account", "Nope")
    assert unknown.exit_code == 1 and "unknown account 'Nope'; this engine serves main, alt" in unknown.stderr


async def test_status_names_the_account_whose_exchange_is_unreachable(tmp_path: Path) -> None:
    """alt's exchange stops answering (an outage, its API key revoked) while main trades: /healthz
    turned 503 naming alt, but `warden status` showed both accounts `ready`, signals `yes`, with
    nothing in WHY (and GET /accounts no trouble): the trader's own view said all was well with
    alt. alt's row names the alarm, main's stays clean, and both clear once alt's exchange answers."""
    settings = fleet_settings(
        tmp_path,
        f"sqlite:///{tmp_path}/w.db",
        TWO_SIM,
        extra='engine_name = "alpha"\nreconcile_interval = 0.05',
    )
    async with (
        running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet,
        served(fleet) as url,
    ):
        alt = fleet.runtime("alt")
        assert alt is not None and alt.sim is not None
        alt.sim.faults.fail_queries = True
        alt.sim.faults.unavailable_if = lambda _request: True
        await eventually(lambda: bool(alt.engine.status().alarms), what="alt's exchange seen unreachable")

        shown = await cli(url, "status")
        assert shown.exit_code == 0, shown.output
        rows = {line.split()[0]: line for line in shown.stdout.splitlines()[1:] if line.split()}
        assert "exchange unreachable" in rows["alt"], shown.stdout
        assert "exchange unreachable" not in rows["main"], shown.stdout
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            accounts = {a["name"]: a for a in (await http.get("/api/v1/accounts")).json()}
            assert any("exchange unreachable" in alarm for alarm in accounts["alt"]["alarms"]), accounts
            assert accounts["main"]["alarms"] == []

            alt.sim.faults.fail_queries = False
            alt.sim.faults.unavailable_if = None
            await eventually(lambda: not alt.engine.status().alarms, what="alt's exchange answering again")
            assert [a["alarms"] for a in (await http.get("/api/v1/accounts")).json()] == [[], []]


async def test_kill_without_account_stops_all_and_says_so(fleet: Fleet, url: str) -> None:
    one = await cli(url, "kill", "--account", "main")
    assert one.exit_code == 0 and one.stdout.startswith("kill switch on: no new entries")
    assert not fleet.runtimes["alt"].engine.status().controls.killed
    every = await cli(url, "kill", "--reason", "all")
    assert every.exit_code == 0, every.output
    assert every.stdout.splitlines()[0] == "kill switch on ALL 2 accounts:"
    assert "main: kill switch on" in every.stdout and "alt: kill switch on" in every.stdout
    assert all(fleet.runtimes[name].engine.status().controls.killed for name in ("main", "alt"))


async def test_a_partial_kill_of_all_shows_each_account_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warden kill --flatten` with one account not running: the API answers 503 kill_incomplete
    with each account's outcome. The CLI printed only the error line: main's flatten (what it
    closed, what it could NOT close) was not shown. Each account's outcome is printed, the kept
    kill named, and the exit is non-zero."""
    from decimal import Decimal

    from tests.accounts.test_kill_waiting import Outage, serving
    from warden.domain.values import Side, Symbol
    from warden.service.commands import OpenPosition

    Outage(monkeypatch, "alt")
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM)
    async with serving(settings) as fleet:
        main = fleet.runtime("main")
        assert main is not None and fleet.runtime("alt") is None
        await main.engine.open_position(OpenPosition(Symbol("SOL/USDT:USDT"), Side.LONG, Decimal(100)))
        sock = free_socket()
        config = uvicorn.Config(create_app(lambda: fleet), log_config=None, access_log=False, lifespan="off")
        server = QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        host, port = sock.getsockname()
        try:
            killed = await cli(f"http://{host}:{port}", "kill", "--flatten", "--reason", "all")
        finally:
            server.should_exit = True
            await task
            sock.close()
    assert killed.exit_code == 1, killed.output  # the kill is not on everywhere: a failure
    assert "kill switch NOT on for alt" in killed.stderr, killed.stderr
    lines = killed.stdout.splitlines()
    [main_line] = [line for line in lines if line.strip().startswith("main:")]
    assert "main: kill switch on: no new entries; closed 1 position(s)" in main_line, killed.stdout
    [alt_line] = [line for line in lines if line.strip().startswith("alt:")]
    assert "alt: NOT stopped: not running" in alt_line, killed.stdout
    assert "it starts with the kill switch on" in alt_line and "its positions were NOT closed" in alt_line


async def test_kill_naming_an_account_not_running_keeps_the_kill_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warden kill --account alt` while alt is not running: it printed "account 'alt' is not
    running" and kept nothing (alt then started trading). The kill is kept, the CLI says its kill
    switch is NOT on yet and that it starts with it on, and exits non-zero."""
    from tests.accounts.test_kill_waiting import Outage, serving

    Outage(monkeypatch, "alt")
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM)
    async with serving(settings) as fleet:
        assert fleet.runtime("alt") is None
        sock = free_socket()
        config = uvicorn.Config(create_app(lambda: fleet), log_config=None, access_log=False, lifespan="off")
        server = QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        host, port = sock.getsockname()
        try:
            killed = await cli(f"http://{host}:{port}", "kill", "--account", "alt")
        finally:
            server.should_exit = True
            await task
            sock.close()
        assert fleet.kill_waiting("alt") is not None
    assert killed.exit_code == 1, killed.output
    assert "kill switch NOT on for alt: not running" in killed.stderr, killed.stderr
    assert "it starts with the kill switch on" in killed.stderr, killed.stderr
