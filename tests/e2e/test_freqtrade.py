"""An unmodified freqtrade (pinned, in its own environment) against `warden sim serve`.

freqtrade 2026.9 on ccxt's `binance` class, futures, isolated margin, stop-loss on the
exchange, with nothing but URL overrides on ccxt's side (tests/e2e/freqtrade/make_config.py):
it starts, a forced entry fills, and its stop rests on the exchange covering the position.

The environment is `make test`'s `.venv-freqtrade` (built from tests/e2e/freqtrade/requirements.txt
once, then kept); WARDEN_FREQTRADE names another freqtrade executable. Without one the test is
skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from .processes import Process, Processes, free_port, poll, protection_problems

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "freqtrade"
AUTH = ("warden", "warden")


def freqtrade_executable() -> Path | None:
    named = os.environ.get("WARDEN_FREQTRADE")
    candidate = Path(named) if named else ROOT / ".venv-freqtrade" / "bin" / "freqtrade"
    return candidate if candidate.is_file() else None


@pytest.fixture
def freqtrade() -> Path:
    found = freqtrade_executable()
    if found is None:
        why = "no freqtrade environment: `make test` builds .venv-freqtrade (or set WARDEN_FREQTRADE)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found


class Freqtrade(Process):
    """`freqtrade trade` as a child process, logged and killed like the others."""

    def __init__(self, executable: Path, args: list[str], env: dict[str, str], logs: Path, port: int) -> None:
        super().__init__("freqtrade", args, env, logs)
        self.executable = executable
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", auth=AUTH, timeout=10.0)

    def start(self) -> None:
        assert not self.alive, "freqtrade is already running"
        path = self.logs / f"{self.name}.{len(self.log_paths)}.log"
        self.log_paths.append(path)
        with path.open("wb") as log:
            self.popen = subprocess.Popen(
                [str(self.executable), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def running(self) -> bool:
        self.check_running()
        response = self.http.get("/show_config")
        return response.status_code == 200 and response.json().get("state") == "running"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


def test_freqtrade_starts_force_enters_and_its_stop_rests(
    procs: Processes, tmp_path: Path, freqtrade: Path
) -> None:
    sim = procs.sim()
    port = free_port()
    config, userdir = tmp_path / "freqtrade.json", tmp_path / "user_data"
    python = freqtrade.parent / "python"
    subprocess.run(
        [str(python), str(HERE / "make_config.py"), sim.url, str(port), str(config)], check=True, timeout=120
    )
    subprocess.run(
        [str(freqtrade), "create-userdir", "--userdir", str(userdir)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    args = [
        "trade",
        "--config", str(config),
        "--userdir", str(userdir),
        "--strategy", "SimProbe",
        "--strategy-path", str(HERE),
        "--db-url", f"sqlite:///{tmp_path / 'trades.sqlite'}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "FREQTRADE__"))}
    bot = Freqtrade(freqtrade, args, env, procs.dir, port)
    procs.all.append(bot)
    bot.start()
    poll(bot.running, within=180, what="freqtrade to start and run", every=0.5)

    trade = bot.call("POST", "/forceenter", {"pair": "BTC/USDT:USDT", "side": "long"})
    assert (trade["pair"], trade["is_open"], trade["is_short"]) == ("BTC/USDT:USDT", True, False), trade

    def stop_rests() -> dict[str, Any] | None:
        state = sim.state()
        stops = [o for o in state["open_orders"] if o["type"] == "stop_market"]
        if not state["positions"] or not stops or protection_problems(state):
            return None
        return state

    state = poll(stop_rests, within=60, what="the position and its resting stop", every=0.2)
    [position] = state["positions"]
    [stop] = [o for o in state["open_orders"] if o["type"] == "stop_market"]
    assert (position["symbol"], position["side"]) == ("BTC/USDT:USDT", "long")
    assert Decimal(position["qty"]) == Decimal(str(trade["amount"]))
    assert (stop["side"], stop["reduce_only"], Decimal(stop["qty"])) == (
        "sell",
        True,
        Decimal(position["qty"]),
    )
    assert Decimal(stop["trigger_price"]) < Decimal(position["entry_price"])
    [risk] = sim.signed("/fapi/v2/positionRisk", symbol="BTCUSDT")  # v3 has no marginType
    assert risk["marginType"] == "isolated" and Decimal(risk["isolatedWallet"]) > 0  # isolated for real
    unhandled = sorted({r["path"] for r in sim.requests() if r.get("note") == "UNHANDLED"})
    assert unhandled == [], f"freqtrade asked what the simulator does not answer: {unhandled}"
    print(f"\nfreqtrade trade {trade['trade_id']}: {position['qty']} BTC, stop at {stop['trigger_price']}")
