"""The `warden` CLI against a live API over real HTTP (uvicorn on a free 127.0.0.1 port)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from tests.helpers import eventually
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Runtime, running
from warden.entrypoints import client
from warden.entrypoints.api import create_app
from warden.entrypoints.cli import QuietServer, app

from .conftest import TOKEN, make_settings

runner = CliRunner()


def free_socket() -> socket.socket:
    """A listening socket on a free port: connections queue until the server accepts them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@pytest.fixture
async def url(runtime: Runtime) -> AsyncIterator[str]:
    """The base URL of a uvicorn server serving the API over the running engine."""
    async with serving(runtime) as base:
        yield base


@contextlib.asynccontextmanager
async def serving(runtime: Runtime) -> AsyncIterator[str]:
    """Serve the API over `runtime` on a free port; the base URL."""
    sock = free_socket()
    config = uvicorn.Config(create_app(lambda: runtime), log_config=None, access_log=False, lifespan="off")
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    host, port = sock.getsockname()
    yield f"http://{host}:{port}"
    server.should_exit = True
    await task
    sock.close()


async def cli(url: str, *args: str, token: str | None = TOKEN) -> Result:
    """Run one CLI command in a thread, so this loop keeps serving its HTTP requests."""
    env = {"WARDEN_URL": url, "WARDEN_API_TOKEN": token}
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args), env=env))


async def test_open_positions_close_round_trip(url: str) -> None:
    """open prints the protected position, positions lists it with a resting stop, close prints the PnL."""
    opened = await cli(url, "open", "sol", "long", "--usd", "100", "--signal-id", "cli-1")
    assert opened.exit_code == 0, opened.output
    assert "SOL/USDT:USDT long 0.66 @ 150" in opened.stdout
    assert "resting (protected)" in opened.stdout
    position_id = opened.stdout.split()[0]

    listed = await cli(url, "positions")
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == [
        "ID",
        "SYMBOL",
        "SIDE",
        "SIZE",
        "ENTRY",
        "STOP",
        "RESTING",
        "LAST",
        "uPnL",
        "STATUS",
    ]
    assert row.split()[:7] == [position_id, "SOL/USDT:USDT", "long", "0.66", "150", "147.75", "yes"]

    closed = await cli(url, "close", position_id)
    assert closed.exit_code == 0, closed.output
    assert f"{position_id} SOL/USDT:USDT long closed: realized PnL -" in closed.stdout

    assert "no open positions" in (await cli(url, "positions")).stdout
    everything = await cli(url, "positions", "--all")
    assert "closed (manual)" in everything.stdout


async def test_bad_side_is_one_line_naming_the_field(url: str, runtime: Runtime) -> None:
    """A bad side prints exactly one error line naming the field, exits non-zero, and sends nothing."""
    result = await cli(url, "open", "SOL", "up", "--usd", "100")
    assert result.exit_code == 1
    assert result.stderr == "error: side: must be long, short, buy or sell, not 'up'\n"
    assert result.stdout == ""
    assert runtime.sim is not None
    assert runtime.sim.core.open_orders() == []


async def test_unknown_symbol_and_both_sizes(url: str) -> None:
    """Server-side validation errors come back as `error: <field>: <message>`."""
    unknown = await cli(url, "open", "DOGE", "long", "--usd", "100")
    assert unknown.stderr == "error: symbol: unknown symbol 'DOGE'\n"
    both = await cli(url, "open", "SOL", "long", "--usd", "100", "--qty", "1")
    assert both.stderr == "error: qty: give usd or qty, not both\n"
    assert both.exit_code == 1


async def test_duplicate_signal_names_the_existing_position(url: str) -> None:
    """Resending a signal id fails with one line that names the position already opened."""
    first = await cli(url, "open", "SOL", "short", "--qty", "1", "--signal-id", "dup")
    position_id = first.stdout.split()[0]
    again = await cli(url, "open", "SOL", "short", "--qty", "1", "--signal-id", "dup")
    assert again.exit_code == 1
    assert again.stderr.startswith("error: signal_id: ")
    assert again.stderr.endswith(f"(position {position_id})\n")


async def test_wrong_token_is_refused(url: str) -> None:
    """A wrong token is reported in one line and nothing opens."""
    result = await cli(url, "open", "SOL", "long", "--usd", "100", token="nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: missing or wrong API token")
    assert "no open positions" in (await cli(url, "positions")).stdout


async def test_status_and_events(url: str) -> None:
    """status shows the engine ready; events shows a position's trail."""
    status = await cli(url, "status")
    assert status.exit_code == 0, status.output
    assert status.stdout.split()[:2] == ["state", "ready"]
    opened = await cli(url, "open", "ETH", "long", "--usd", "100")
    position_id = opened.stdout.split()[0]
    events = await cli(url, "events", position_id)
    assert events.exit_code == 0, events.output
    assert "position_opening" in events.stdout
    assert "position_protected" in events.stdout
    assert "recovery_passed" in (await cli(url, "events")).stdout
    missing = await cli(url, "events", "nope")
    assert missing.stderr == "error: position_id: no position 'nope'\n"


def test_connection_refused_says_to_start_warden() -> None:
    """With no engine listening, the CLI says to start `warden run`."""
    sock = free_socket()
    host, port = sock.getsockname()
    sock.close()
    result = runner.invoke(app, ["positions", "--url", f"http://{host}:{port}"])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach warden at http://{host}:{port}: is `warden run` running?\n"


@pytest.mark.parametrize("given", ["http://[::1", "http://127.0.0.1:808O", "http://[zz]:8080"])
def test_a_url_that_is_not_one_is_one_line_naming_url(given: str) -> None:
    """A mistyped --url (or WARDEN_URL): an unclosed IPv6 bracket, a letter O for a zero in the
    port. httpx refuses it when the client is made, and the CLI printed its traceback."""
    env = {"WARDEN_API_TOKEN": TOKEN}
    for args in (["positions", "--url", given], ["close", "abc", "--url", given]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: url: ") and result.stderr.count("\n") == 1, result.stderr
    result = runner.invoke(app, ["status"], env={**env, "WARDEN_URL": given})
    assert result.exit_code == 1 and result.stderr.startswith("error: url: "), result.stderr


@pytest.fixture
async def other_app() -> AsyncIterator[str]:
    """Another web app on 127.0.0.1 (a single-page app's server: 200 and its page on every path),
    where a trader's --url or WARDEN_URL may point by mistake (both like port 8080)."""
    from aiohttp import web

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Some app</title>", content_type="text/html")

    made = web.Application()
    made.router.add_route("*", "/{tail:.*}", page)
    runner_ = web.AppRunner(made, access_log=None)
    await runner_.setup()
    site = web.TCPSite(runner_, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner_.cleanup()


@pytest.mark.parametrize(
    "args",
    [["positions"], ["resume"], ["kill"], ["pause"], ["open", "SOL", "long"], ["status"], ["close", "abc"]],
    ids=lambda args: args[0],
)
async def test_a_url_that_is_not_wardens_api_is_one_line_not_an_answer(
    other_app: str, args: list[str]
) -> None:
    """--url pointing at another web app that answers 200 with its page on every path: `warden
    positions` printed "no open positions" and `warden resume` "resumed: new entries accepted",
    exit 0, though warden was never asked; `warden kill` and `warden open` printed a traceback.
    An answer that is not warden's JSON is now one line, exit 1."""
    result = await cli(other_app, *args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "not warden's" in result.stderr


async def test_the_api_url_warden_run_prints_is_taken_as_the_url(url: str) -> None:
    """`warden run` prints "API on http://127.0.0.1:8080/api/v1": given as --url or WARDEN_URL,
    every command asked for /api/v1/api/v1/... and printed only "error: Not Found"."""
    opened = await cli(f"{url}/api/v1", "open", "SOL", "long", "--usd", "100")
    assert opened.exit_code == 0, opened.output
    listed = await cli(f"{url}/api/v1/", "positions")
    assert listed.exit_code == 0, listed.output
    assert opened.stdout.split()[0] in listed.stdout


def test_open_without_any_token(tmp_path: Path) -> None:
    """Without WARDEN_API_TOKEN or a token file, open stops before sending anything."""
    env = {"WARDEN_DATA_DIR": str(tmp_path), "WARDEN_URL": "http://127.0.0.1:9"}
    result = runner.invoke(app, ["open", "SOL", "long"], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no API token: set WARDEN_API_TOKEN")


def test_token_command_creates_then_reuses(tmp_path: Path) -> None:
    """`warden token` creates the token file once and prints the same token after."""
    env = {"WARDEN_DATA_DIR": str(tmp_path)}
    first = runner.invoke(app, ["token"], env=env)
    assert first.exit_code == 0, first.output
    assert first.stderr == f"created {tmp_path / 'api-token'}\n"
    token = first.stdout.strip()
    assert token == (tmp_path / "api-token").read_text().strip()
    second = runner.invoke(app, ["token"], env=env)
    assert (second.stdout.strip(), second.stderr) == (token, "")


def test_token_command_prints_the_configured_token(tmp_path: Path) -> None:
    """With WARDEN_API_TOKEN set, `warden token` prints it and writes no file."""
    result = runner.invoke(app, ["token"], env={"WARDEN_DATA_DIR": str(tmp_path), "WARDEN_API_TOKEN": "abc"})
    assert result.stdout == "abc\n"
    assert not (tmp_path / "api-token").exists()


def test_run_with_a_bad_flag_names_it() -> None:
    """`warden run` with an invalid setting exits with one line naming the setting."""
    result = runner.invoke(app, ["run", "--port", "0"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: port: ")


def test_run_on_a_busy_port(tmp_path: Path) -> None:
    """`warden run` on a port already taken fails at once, naming the port, before starting the engine."""
    busy = free_socket()
    host, port = busy.getsockname()
    args = ["run", "--host", host, "--port", str(port), "--data-dir", str(tmp_path), "--db"]
    result = runner.invoke(app, [*args, f"sqlite:///{tmp_path}/w.db"])
    busy.close()
    assert result.exit_code == 1
    assert result.stderr == f"error: port: {host}:{port} is already in use (another warden?)\n"
    assert not (tmp_path / "w.db").exists()


def test_run_help_documents_the_settings() -> None:
    """`warden run --help` shows the flags with the settings' descriptions."""
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--db", "--exchange", "--exchange-url", "--config", "--stop-pct"):
        assert flag in result.stdout
    assert "Stop-loss distance from entry" in result.stdout
    assert "WARDEN_PORT" in result.stdout


@pytest.mark.parametrize("command", ["open", "close", "positions", "status", "events", "reconcile", "pause"])
def test_account_help_names_the_table(command: str) -> None:
    """`--account`'s help shows `[accounts.NAME]` (rich markup took it for a tag and printed `()`)."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "The account ([accounts.NAME]); required" in result.stdout


async def test_close_by_symbol(url: str) -> None:
    """`warden close SOL` closes the symbol's position; an unknown id or symbol is one line."""
    opened = await cli(url, "open", "SOL", "long", "--usd", "100")
    position_id = opened.stdout.split()[0]
    closed = await cli(url, "close", "sol")
    assert closed.exit_code == 0, closed.output
    assert closed.stdout.startswith(f"{position_id} SOL/USDT:USDT long closed: realized PnL ")
    again = await cli(url, "close", "SOL")
    assert again.stderr == "error: symbol: no open position on SOL/USDT:USDT\n"
    nothing = await cli(url, "close", "nope")
    assert nothing.stderr == "error: no position 'nope', and no symbol of that name\n"


@pytest.mark.parametrize("spelling", ["SOL/USDT:USDT", "BINANCE:SOLUSDT.P"])
async def test_close_by_a_symbol_spelt_with_slash_or_colon(url: str, spelling: str) -> None:
    """`warden close SOL/USDT:USDT` (a spelling the README gives) answered "error: Not Found":
    the target was pasted into the URL path, where its "/" made another path. It closes the
    symbol's position like `warden close SOL`."""
    opened = await cli(url, "open", "SOL", "long", "--usd", "100")
    position_id = opened.stdout.split()[0]
    closed = await cli(url, "close", spelling)
    assert closed.exit_code == 0, closed.output
    assert closed.stdout.startswith(f"{position_id} SOL/USDT:USDT long closed: realized PnL ")


@pytest.mark.parametrize("target", ["x?limit=5", "../status"])
async def test_an_id_is_never_read_as_part_of_the_url(url: str, target: str) -> None:
    """`warden events 'x?limit=5'` was refused for a query parameter the user never wrote, and
    `warden events ../status` reached another route: the id is one path segment, always."""
    result = await cli(url, "events", target)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: position_id: "), result.stderr


async def test_json_output(url: str) -> None:
    """--json prints the API's JSON on every read command."""
    opened = await cli(url, "open", "BTC", "short", "--qty", "0.01")
    position_id = opened.stdout.split()[0]
    listed = json.loads((await cli(url, "positions", "--json")).stdout)
    assert [p["id"] for p in listed] == [position_id]
    assert listed[0]["stop_resting"] is True
    status = json.loads((await cli(url, "status", "--json")).stdout)
    assert status["open_positions"] == 1
    events = json.loads((await cli(url, "events", position_id, "--json")).stdout)
    assert "position_protected" in {e["kind"] for e in events}
    assert json.loads((await cli(url, "events", "--json", "-n", "1")).stdout)[0]["kind"]
    report = json.loads((await cli(url, "reconcile", "--json")).stdout)
    assert report["findings"] == []


async def test_positions_watch_redraws(url: str) -> None:
    """positions --watch draws the table and redraws it (here twice, then stops)."""
    opened = await cli(url, "open", "ETH", "long", "--usd", "100")
    position_id = opened.stdout.split()[0]
    watched = await cli(url, "positions", "--watch", "--interval", "0.05", "--redraws", "2")
    assert watched.exit_code == 0, watched.output
    assert position_id in watched.stdout
    assert "RESTING" in watched.stdout


def last_line(result: Result) -> str:
    """What the command printed last (the engine in this process may log to stdout before it)."""
    return result.stdout.splitlines()[-1]


async def test_pause_resume_kill_from_the_cli(url: str, runtime: Runtime) -> None:
    """pause, kill --flatten and resume print one line each; a refused open names the reason."""
    opened = await cli(url, "open", "sol", "long", "--usd", "100")
    assert opened.exit_code == 0, opened.output
    paused = await cli(url, "pause", "--reason", "lunch")
    assert paused.exit_code == 0, paused.output
    assert last_line(paused).startswith("paused: no new entries; exits and protection keep working")
    refused = await cli(url, "open", "btc", "long", "--usd", "200")
    assert refused.exit_code == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "paused (lunch)" in errors[0]
    status = await cli(url, "status")
    assert "controls" in status.stdout and "paused: lunch" in status.stdout
    killed = await cli(url, "kill", "--flatten")
    assert killed.exit_code == 0, killed.output
    assert last_line(killed).startswith("kill switch on: no new entries; closed 1 position(s)")
    assert runtime.sim is not None and runtime.sim.core.positions() == []
    resumed = await cli(url, "resume")
    assert last_line(resumed) == "resumed: new entries accepted"
    assert runtime.engine.status().accepting_signals


async def test_a_limit_refusal_is_one_line_naming_the_limit(url: str, runtime: Runtime) -> None:
    """A fat-finger size is refused by the engine with one line naming max_position_usd."""
    result = await cli(url, "open", "SOL", "short", "--usd", "50000")
    assert result.exit_code == 1
    # the engine runs in this process, so its own log lines may share stderr: judge the CLI's lines
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: max_position_usd: this entry is ")
    assert runtime.sim is not None and runtime.sim.core.open_orders() == []


def test_run_with_a_misspelt_warden_variable_names_it_and_starts_nothing(tmp_path: Path) -> None:
    """WARDEN_MAX_POSITONS=3 (a typo of a risk limit) stops `warden run` as a misspelt key in the
    file does: exit 2, one line naming the variable and the closest settings, nothing started
    (the port is left alone: a busy one would have been the error otherwise, and no database)."""
    busy = free_socket()
    host, port = busy.getsockname()
    args = ["run", "--host", host, "--port", str(port), "--data-dir", str(tmp_path), "--db"]
    try:
        result = runner.invoke(app, [*args, f"sqlite:///{tmp_path}/w.db"], env={"WARDEN_MAX_POSITONS": "3"})
    finally:
        busy.close()
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: WARDEN_MAX_POSITONS: is not a setting warden knows")
    assert "WARDEN_MAX_OPEN_POSITIONS" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "w.db").exists()


def test_a_client_command_warns_of_a_misspelt_warden_variable() -> None:
    """`warden status` reads the settings too (the URL, the token) but not the engine's --config
    file, so it cannot tell a typo from a variable an [accounts.*] table names for a key: it warns,
    naming the variable and the closest setting, and goes on."""
    sock = free_socket()
    host, port = sock.getsockname()
    sock.close()
    env = {"WARDEN_URL": f"http://{host}:{port}", "WARDEN_DAILY_LOSS_LIMT": "500"}
    result = runner.invoke(app, ["status"], env=env)
    assert result.exit_code == 1
    warning, error = result.stderr.splitlines()
    assert warning.startswith("warning: WARDEN_DAILY_LOSS_LIMT: is not a setting warden knows")
    assert "WARDEN_MAX_DAILY_LOSS_USD" in warning
    assert error.startswith("error: cannot reach warden")


async def test_a_flatten_that_left_a_position_open_exits_non_zero(url: str, runtime: Runtime) -> None:
    """`warden kill --flatten` whose close the exchange refused printed "NOT closed: …" and exited
    0: a script reading `$?` took the account for flat while the position was still open. The kill
    switch is on (said on stdout), the position left open is named on stderr, and the exit is 1."""
    opened = await cli(url, "open", "sol", "long", "--usd", "100")
    assert opened.exit_code == 0, opened.output
    position_id = opened.stdout.split()[0]
    assert runtime.sim is not None
    runtime.sim.faults.reject_if = lambda request: request.reduce_only and request.trigger_price is None
    killed = await cli(url, "kill", "--flatten")
    assert killed.exit_code == 1, killed.output
    assert last_line(killed).startswith("kill switch on: no new entries; closed 0 position(s)")
    assert f"NOT closed: {position_id}" in last_line(killed)
    errors = [line for line in killed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: flatten: 1 position(s) NOT closed ({position_id}): run kill --flatten again"]
    assert runtime.engine.status().controls.killed
    assert len(runtime.sim.core.positions()) == 1


async def test_a_pause_reason_with_brackets_is_printed_as_written(url: str, runtime: Runtime) -> None:
    """The pause line was printed as rich markup: a reason `[/fomc] cpi` paused trading, then the
    CLI died with a MarkupError traceback and exit 1 (a script read "not paused"), and `[b]x[/b]`
    lost its brackets. The reason is text: shown as written, exit 0."""
    paused = await cli(url, "pause", "--reason", "[/fomc] cpi [b]x[/b]")
    assert paused.exit_code == 0, paused.output
    assert last_line(paused) == (
        "paused: no new entries; exits and protection keep working (paused: [/fomc] cpi [b]x[/b])"
    )
    assert runtime.engine.status().controls.paused


async def test_an_open_that_timed_out_says_so_and_how_to_retry_without_opening_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI gave up after its timeout while the engine went on opening: it said only "did not
    answer within 15 s", and the trader who ran it again (stacking on) opened a second position. It
    says the open may still go through and names the signal id it sent, and the same command with
    that --signal-id opens nothing twice."""
    settings = make_settings(tmp_path, allow_stacking=True)
    async with running(settings, price_feed=False, notifier=RecordingNotifier()) as runtime:
        assert runtime.sim is not None
        async with serving(runtime) as base:
            runtime.sim.faults.rest_latency = 0.3
            monkeypatch.setattr(client, "TIMEOUT", 0.2)
            first = await cli(base, "open", "SOL", "long", "--usd", "100")
            assert first.exit_code == 1, first.output
            [error] = [line for line in first.stderr.splitlines() if line.startswith("error:")]
            assert "did not answer within 0.2 s" in error and "the open may still go through" in error
            signal_id = error.split("--signal-id ")[1].split()[0].rstrip(":;,")
            engine = runtime.engine
            await eventually(
                lambda: [p.status.value for p in engine.ledger.active_positions()] == ["protected"],
                timeout=10,
                what="the open that went on to be protected",
            )
            runtime.sim.faults.rest_latency = 0
            monkeypatch.setattr(client, "TIMEOUT", 15.0)
            again = await cli(base, "open", "SOL", "long", "--usd", "100", "--signal-id", signal_id)
            assert again.exit_code == 1, again.output
            assert "error: signal_id: " in again.stderr, again.stderr
            assert len(runtime.sim.core.positions()) == 1
            assert engine.status().open_positions == 1


async def test_an_open_whose_entry_is_still_working_does_not_exit_0(url: str, runtime: Runtime) -> None:
    """The exchange acknowledged the entry and had not filled it when the engine answered (202,
    `opening`): the CLI printed "the entry is still being resolved" and exited 0, so a script took
    it for a protected position — while the entry might yet be cancelled with nothing filled. It
    still prints the line (the id), and exits 1 saying the position is not protected yet."""
    assert runtime.sim is not None
    runtime.sim.faults.ack_only_if = lambda request: True
    runtime.sim.faults.fill_delay = 60
    opened = await cli(url, "open", "btc", "long", "--usd", "200")
    assert opened.exit_code == 1, opened.output
    assert "the entry is still being resolved" in last_line(opened)
    position_id = last_line(opened).split()[0]
    errors = [line for line in opened.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: open: position {position_id} is NOT protected yet; see `warden positions`"]
