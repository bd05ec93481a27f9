"""End to end, two accounts in one `warden run`: a Binance account and a Bybit account, each on
its own `warden sim serve` (unmodified ccxt between them), kill -9 of the engine and a restart
on the same database (SQLite and PostgreSQL); both accounts come back recovered, protected and
in agreement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .processes import (
    SIM_KEY,
    SIM_SECRET,
    Engine,
    Processes,
    SimServer,
    agreement_problems,
    converge,
    poll,
    protection_problems,
)

pytestmark = pytest.mark.slow

CONVERGE_WITHIN = 20.0


def read(engine: Engine, path: str, account: str) -> Any:
    with engine.client() as http:
        response = http.get(f"/api/v1{path}", params={"account": account})
    assert response.status_code == 200, (
        f"GET {path}?account={account}: {response.status_code} {response.text}"
    )
    return response.json()


def signal(engine: Engine, body: dict[str, Any]) -> httpx.Response:
    with engine.client() as http:
        return http.post("/api/v1/signals", json=body)


def both_agree(engine: Engine, sims: dict[str, SimServer]) -> list[str]:
    problems: list[str] = []
    for name, sim in sims.items():
        state = sim.state()
        problems += [f"{name}: {p}" for p in protection_problems(state)]
        problems += [f"{name}: {p}" for p in agreement_problems(state, read(engine, "/positions", name))]
    return problems


def test_two_accounts_in_one_process_survive_kill_9(procs: Processes, tmp_path: Path, store_url: str) -> None:
    sims = {
        "main": procs.sim(seed=3, price_interval=0),
        "alt": procs.sim(seed=4, venue="bybit", price_interval=0),
    }
    config = tmp_path / "warden.toml"
    config.write_text(
        f"""
[accounts.main]
exchange = "binanceusdm"
exchange_url = "{sims["main"].url}"
api_key_env = "MAIN_KEY"
api_secret_env = "MAIN_SECRET"

[accounts.alt]
exchange = "bybit"
exchange_url = "{sims["alt"].url}"
api_key_env = "ALT_KEY"
api_secret_env = "ALT_SECRET"
"""
    )
    keys = {"MAIN_KEY": SIM_KEY, "MAIN_SECRET": SIM_SECRET, "ALT_KEY": SIM_KEY, "ALT_SECRET": SIM_SECRET}
    engine = procs.engine(
        "accounts", tmp_path / "data", sim=None, db=store_url, WARDEN_CONFIG=str(config), **keys
    )
    engine.wait_ready(within=90)

    refused = signal(engine, {"symbol": "SOL", "side": "long", "usd": "100"})
    assert refused.status_code == 422 and refused.json()["field"] == "account", refused.text
    assert sims["main"].state()["positions"] == [] and sims["alt"].state()["positions"] == []

    main = signal(engine, {"symbol": "SOL", "side": "long", "usd": "100", "account": "main"})
    alt = signal(engine, {"symbol": "ETH", "side": "short", "usd": "200", "account": "alt"})
    assert main.status_code == 201, main.text
    assert alt.status_code == 201, alt.text
    assert [p["symbol"] for p in sims["main"].state()["positions"]] == ["SOL/USDT:USDT"]
    assert [p["symbol"] for p in sims["alt"].state()["positions"]] == ["ETH/USDT:USDT"]
    converge(lambda: both_agree(engine, sims), within=CONVERGE_WITHIN, what="before the kill")

    engine.kill9()
    engine.start()
    engine.wait_ready(within=90)

    accounts = {a["name"]: a for a in read(engine, "/accounts", "main")}
    assert {n: (a["lease_held"], a["state"]) for n, a in accounts.items()} == {
        "main": (True, "ready"),
        "alt": (True, "ready"),
    }
    converge(lambda: both_agree(engine, sims), within=CONVERGE_WITHIN, what="after the restart")
    for name, opened in (("main", main.json()), ("alt", alt.json())):
        [after] = read(engine, "/positions", name)
        assert (after["id"], after["status"], after["stop_resting"], after["size"]) == (
            opened["id"],
            "protected",
            True,
            opened["size"],
        ), name


def test_an_account_with_a_bad_key_leaves_the_other_trading(procs: Processes, tmp_path: Path) -> None:
    """alt's key is refused by its exchange: alt never trades (its signals 503, nothing sent,
    /accounts says why), main trades; the process stays up."""
    sims = {
        "main": procs.sim(seed=5, price_interval=0),
        "alt": procs.sim(seed=6, venue="bybit", price_interval=0),
    }
    config = tmp_path / "warden.toml"
    config.write_text(
        f"""
[accounts.main]
exchange = "binanceusdm"
exchange_url = "{sims["main"].url}"
api_key_env = "MAIN_KEY"
api_secret_env = "MAIN_SECRET"

[accounts.alt]
exchange = "bybit"
exchange_url = "{sims["alt"].url}"
api_key_env = "ALT_KEY"
api_secret_env = "ALT_SECRET"
"""
    )
    keys = {"MAIN_KEY": SIM_KEY, "MAIN_SECRET": SIM_SECRET, "ALT_KEY": "wrong-key", "ALT_SECRET": "wrong"}
    engine = procs.engine("accounts", tmp_path / "data", sim=None, WARDEN_CONFIG=str(config), **keys)

    def states() -> dict[str, Any] | None:
        engine.check_running()
        with engine.client(2.0) as http:
            response = http.get("/api/v1/accounts")
        if response.status_code != 200:
            return None
        shown = {a["name"]: a for a in response.json()}
        return shown if shown["main"]["accepting_signals"] and shown["alt"]["reasons"] else None

    shown = poll(states, within=90, what="main ready and alt refused")
    assert not shown["alt"]["accepting_signals"], shown["alt"]
    assert "API key is invalid" in " ".join(shown["alt"]["reasons"]), shown["alt"]
    assert engine.healthz() == 503

    alt = signal(engine, {"symbol": "ETH", "side": "short", "usd": "200", "account": "alt"})
    assert alt.status_code == 503, alt.text
    main = signal(engine, {"symbol": "SOL", "side": "long", "usd": "100", "account": "main"})
    assert main.status_code == 201, main.text
    assert sims["alt"].state()["positions"] == [] and sims["alt"].state()["open_orders"] == []
    converge(
        lambda: both_agree(engine, {"main": sims["main"]}), within=CONVERGE_WITHIN, what="main protected"
    )
    engine.check_running()
