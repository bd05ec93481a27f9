"""`warden sim serve --price-interval`: the random walk's pace, and 0 to switch it off."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

import warden.adapters.sim.server as sim_server
import warden.adapters.sim.server.app as server_app
from warden import bootstrap
from warden.adapters.sim.server import VENUE, create_server_app
from warden.bench.fleet_bench import consecutive_free_ports
from warden.entrypoints.cli import app as cli_app

from .builders import BTC, ETH, SOL, FakeClock
from .server_client import raw_server

START = {BTC: Decimal(65000), ETH: Decimal(3000), SOL: Decimal(150)}


async def test_interval_zero_leaves_the_marks_alone_as_time_passes() -> None:
    """No random walk with 0: a minute of (fake) time later every mark is where it started."""
    clock = FakeClock()
    async with raw_server(price_interval=0, now=clock, sleep=clock.sleep) as raw:
        await clock.run_for(60)
        assert raw.app[VENUE].core.marks() == START
        assert clock.sleepers == 0  # nothing is even waiting to step the walk
        _, state = await raw.control("GET", "/sim/state")
        assert state["marks"] == {s: str(p) for s, p in START.items()}


async def test_interval_zero_still_moves_marks_through_the_control_surface() -> None:
    clock = FakeClock()
    async with raw_server(price_interval=0, now=clock, sleep=clock.sleep) as raw:
        status, _ = await raw.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "64000"})
        await clock.run_for(60)
        assert status == 200
        assert raw.app[VENUE].core.mark(BTC) == 64000


async def test_a_positive_interval_walks_once_per_interval() -> None:
    """The control case: with 1 s, 5 s of fake time are 5 walk steps (15 mark moves, 3 symbols)."""
    clock = FakeClock()
    async with raw_server(price_interval=1.0, now=clock, sleep=clock.sleep) as raw:
        moves: list[object] = []
        sim = raw.app[VENUE].sim
        original = sim.step_prices

        def counted(volatility: float = 0.0005) -> None:
            moves.append(volatility)
            original(volatility)

        sim.step_prices = counted  # type: ignore[method-assign]
        await clock.run_for(5)
        assert len(moves) == 5
        assert raw.app[VENUE].core.marks() != START


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="price_interval"):
        create_server_app(price_interval=-1)


# ----- the option travels from the command line to the app ------------------------------


def test_the_cli_passes_price_interval_to_serve_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    async def fake_serve_sim(*args: Any, **kwargs: Any) -> None:
        seen.append({"args": args, **kwargs})

    monkeypatch.setattr(bootstrap, "serve_sim", fake_serve_sim)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["sim", "serve", "--port", "0", "--price-interval", "0"])
    assert result.exit_code == 0, result.output
    assert seen[-1]["price_interval"] == 0.0
    result = runner.invoke(cli_app, ["sim", "serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert seen[-1]["price_interval"] == 1.0  # the default keeps a one-second walk
    result = runner.invoke(cli_app, ["sim", "serve", "--price-interval", "-1"])
    assert result.exit_code == 2
    assert "--price-interval" in result.output


class _Built(Exception):
    """Raised by the patched create_server_app: the test has what it wanted, stop serving."""


async def test_serve_sim_passes_price_interval_to_the_server_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """bootstrap.serve_sim -> server.serve -> create_server_app, the interval unchanged (0 stays 0)."""
    seen: list[dict[str, Any]] = []

    def fake_create(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise _Built

    monkeypatch.setattr(server_app, "create_server_app", fake_create)
    assert sim_server.serve is server_app.serve
    with pytest.raises(_Built):
        await bootstrap.serve_sim("127.0.0.1", 0, 42, None, price_interval=0)
    with pytest.raises(_Built):
        await bootstrap.serve_sim("127.0.0.1", 0, 42, None, price_interval=2.5)
    with pytest.raises(_Built):
        await bootstrap.serve_sim("127.0.0.1", 0, 42, None)
    assert [s["price_interval"] for s in seen] == [0, 2.5, 1.0]


# ----- --venue: binance (the default) or bybit -------------------------------------------


def test_the_cli_passes_the_venue_to_serve_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    async def fake_serve_sim(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    monkeypatch.setattr(bootstrap, "serve_sim", fake_serve_sim)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["sim", "serve", "--port", "0", "--venue", "bybit"])
    assert result.exit_code == 0, result.output
    assert "Bybit v5 linear" in result.output
    assert seen[-1]["venue"] == "bybit"
    result = runner.invoke(cli_app, ["sim", "serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert seen[-1]["venue"] == "binance"  # the default stays Binance
    result = runner.invoke(cli_app, ["sim", "serve", "--venue", "kraken"])
    assert result.exit_code == 2
    assert "--venue" in result.output


async def test_serve_sim_passes_the_venue_to_the_server_app(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def fake_create(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise _Built

    monkeypatch.setattr(server_app, "create_server_app", fake_create)
    with pytest.raises(_Built):
        await bootstrap.serve_sim("127.0.0.1", 0, 42, None, venue="bybit")
    with pytest.raises(_Built):
        await bootstrap.serve_sim("127.0.0.1", 0, 42, None)
    assert [s["venue"] for s in seen] == ["bybit", "binance"]


def test_an_unknown_venue_is_refused() -> None:
    with pytest.raises(ValueError, match="venue"):
        create_server_app(venue="kraken")


def test_several_accounts_take_no_state_file_and_no_drift() -> None:
    """`--accounts N` serves N accounts in one process: a state file (whose account?) and the Drift
    venue are refused before anything listens."""
    runner = CliRunner()
    for extra in (["--state-file", "/tmp/x.json"], ["--venue", "drift"]):
        result = runner.invoke(cli_app, ["sim", "serve", "--accounts", "2", *extra])
        assert result.exit_code == 2, result.output
        assert "--accounts > 1" in result.output
    assert runner.invoke(cli_app, ["sim", "serve", "--accounts", "0"]).exit_code == 2


async def test_several_accounts_are_independent_simulators_on_consecutive_ports() -> None:
    """Each port is its own account: an order on one leaves the others flat."""
    import asyncio

    import httpx

    base = consecutive_free_ports(2)
    serving = asyncio.create_task(
        bootstrap.serve_sim("127.0.0.1", base, 1, None, price_interval=0, accounts=2)
    )
    try:
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                try:
                    answers = [
                        await http.get(f"http://127.0.0.1:{port}/sim/state") for port in (base, base + 1)
                    ]
                except httpx.TransportError:
                    return False
                return all(answer.status_code == 200 for answer in answers)

            deadline = asyncio.get_running_loop().time() + 10
            while not await up():
                if serving.done():  # a port taken since it was probed: say so, not "never answered"
                    serving.result()
                assert asyncio.get_running_loop().time() < deadline, "the two accounts never answered"
                await asyncio.sleep(0.01)  # the pace of a poll with a deadline, not a synchronisation
            order = {"symbol": "SOLUSDT", "side": "buy", "qty": "1"}
            assert (
                await http.post(f"http://127.0.0.1:{base}/sim/external-order", json=order)
            ).status_code == 200
            first = (await http.get(f"http://127.0.0.1:{base}/sim/state")).json()
            second = (await http.get(f"http://127.0.0.1:{base + 1}/sim/state")).json()
            assert len(first["positions"]) == 1 and second["positions"] == []
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


async def test_several_accounts_one_of_whose_ports_is_taken_fail_at_once_and_leave_none_serving() -> None:
    """`--accounts 2` with the second port taken: serve_sim raises the bind error, and the first
    account, already listening, is stopped with it (it was left serving, orphaned, and the
    error surfaced only when everything else had ended)."""
    import asyncio
    import socket

    import httpx

    base = consecutive_free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        with pytest.raises(OSError, match="address already in use"):
            await asyncio.wait_for(
                bootstrap.serve_sim("127.0.0.1", base, 1, None, price_interval=0, accounts=2), timeout=10
            )
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"http://127.0.0.1:{base}/sim/state")


def test_sim_serve_on_a_taken_port_says_so_in_one_line() -> None:
    """A port already in use is an error line naming the addresses and exit code 1, not a
    traceback; no message says "error:" twice."""
    import socket

    base = consecutive_free_ports(2)
    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        result = runner.invoke(cli_app, ["sim", "serve", "--port", str(base), "--accounts", "2"])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on http://127.0.0.1:{base} to {base + 1}" in result.output
    assert "address already in use" in result.output
    # Not the bind error's traceback (a logging handler an earlier CLI test left on a closed
    # stream may print logging's own "--- Logging error ---" here, which is not this command's).
    assert "OSError" not in result.output and "site.start()" not in result.output
    for wrong in (["sim", "serve", "--accounts", "2", "--venue", "drift"], ["bench", "nosuch"]):
        result = runner.invoke(cli_app, wrong)
        assert result.exit_code != 0 and "error: error:" not in result.output, result.output
