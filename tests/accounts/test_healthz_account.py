"""`GET /healthz?account=NAME`: 200 only on the engine that holds NAME's lease (`ok` when ready
with no alarm, else `held` with the reasons), so a load balancer health-checking each account
finds its holder in a fleet (where every engine stands by for some account and plain /healthz is
503 on each of them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually, until
from warden.adapters.clock import SystemClock
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.bootstrap import Fleet, Runtime, running, running_fleet
from warden.config import Settings
from warden.entrypoints.api import create_app

from .conftest import TWO_SIM, fleet_settings


def held(fleet: Fleet) -> set[str]:
    return {name for name, runtime in fleet.runtimes.items() if runtime.is_holder}


def fleet_of(settings: Settings) -> contextlib.AbstractAsyncContextManager[Fleet]:
    return running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier(), lease_retry=0.05)


@contextlib.asynccontextmanager
async def client(served: Fleet | Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """No token: /healthz is open."""
    transport = httpx.ASGITransport(app=create_app(lambda: served))
    async with httpx.AsyncClient(transport=transport, base_url="http://warden") as http:
        yield http


async def health(http: httpx.AsyncClient, account: str) -> tuple[int, dict[str, object]]:
    response = await http.get("/healthz", params={"account": account})
    return response.status_code, response.json()


@pytest.mark.postgres
async def test_each_accounts_healthz_is_200_on_its_holder_only_and_follows_a_takeover(
    tmp_path: Path, pg_url: str
) -> None:
    """Two engines on one PostgreSQL database and one file with two accounts: A (capacity 1)
    holds one, B (capacity 2) the other. `/healthz?account=X` is 200 on X's holder and 503 on
    the other engine, naming the holder; plain /healthz stays 503 on both (each stands by for an
    account). When A stops cleanly, B takes A's account over and its /healthz?account= turns 200."""
    settings = fleet_settings(tmp_path, pg_url, TWO_SIM, extra='capacity = 1\nengine_name = "a"')
    other = settings.model_copy(update={"data_dir": tmp_path / "b", "engine_name": "b", "capacity": 2})
    async with contextlib.AsyncExitStack() as stack:
        first = contextlib.AsyncExitStack()
        a = await first.enter_async_context(fleet_of(settings))
        a_http = await first.enter_async_context(client(a))
        assert len(held(a)) == 1 and a.failures == {}
        [x] = held(a)
        [y] = set(a.names) - {x}
        b = await stack.enter_async_context(fleet_of(other))
        b_http = await stack.enter_async_context(client(b))
        await eventually(lambda: held(b) == {y}, timeout=30, what="B to take the account A has no room for")

        async def ok(http: httpx.AsyncClient, name: str) -> bool:
            return await health(http, name) == (200, {"status": "ok", "state": "ready", "reasons": []})

        await until(lambda: ok(a_http, x), timeout=30, what=f"/healthz?account={x} 200 on A")
        await until(lambda: ok(b_http, y), timeout=30, what=f"/healthz?account={y} 200 on B")
        code, body = await health(a_http, x)
        assert code == 200 and body["status"] == "ok" and body["state"] == "ready", body

        async def names(http: httpx.AsyncClient, name: str, holder: str) -> bool:
            code, body = await health(http, name)
            reasons = body["reasons"]
            assert isinstance(reasons, list)
            return code == 503 and any(f"held by {holder}" in r for r in reasons)

        await until(lambda: names(b_http, x, "a"), timeout=30, what=f"B's /healthz?account={x} to name A")
        await until(lambda: names(a_http, y, "b"), timeout=30, what=f"A's /healthz?account={y} to name B")
        code, body = await health(b_http, x)
        assert (code, body["status"], body["state"]) == (503, "unavailable", "read_only"), body
        # Plain /healthz keeps its meaning: every account this engine serves, ready.
        assert (await a_http.get("/healthz")).status_code == 503
        assert (await b_http.get("/healthz")).status_code == 503

        await first.aclose()  # A stops cleanly: its lease ends with it
        await eventually(lambda: held(b) == {x, y}, timeout=30, what=f"B to take {x} over")
        await until(
            lambda: ok(b_http, x), timeout=30, what=f"B's /healthz?account={x} 200 after the takeover"
        )
        assert (await b_http.get("/healthz")).status_code == 200


async def test_a_single_account_hot_standby_names_its_holder_and_turns_200_when_it_takes_over(
    tmp_path: Path,
) -> None:
    """One account, two engines (`warden run --account main` twice): plain /healthz stays 503 on
    the standby, and so does ?account=main, naming the holder; once the holder stops, the
    standby takes over and both turn 200."""
    main = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM).for_account("main")
    mine = main.model_copy(update={"engine_name": "a"})
    theirs = main.model_copy(update={"engine_name": "b", "data_dir": tmp_path / "b"})
    notifier = RecordingNotifier()
    async with contextlib.AsyncExitStack() as stack:
        first = contextlib.AsyncExitStack()
        holder = await first.enter_async_context(running(mine, price_feed=False, notifier=notifier))
        holder_http = await first.enter_async_context(client(holder))
        standby = await stack.enter_async_context(
            running(theirs, price_feed=False, notifier=RecordingNotifier(), lease_retry=0.05)
        )
        http = await stack.enter_async_context(client(standby))
        assert holder.is_holder and not standby.is_holder
        assert (await health(holder_http, "main"))[0] == 200
        code, body = await health(http, "main")
        reasons = body["reasons"]
        assert code == 503 and isinstance(reasons, list) and any("held by a" in r for r in reasons), body
        assert (await http.get("/healthz")).status_code == 503
        assert (await health(http, "alt"))[0] == 422  # this engine serves main only

        await first.aclose()

        async def ok() -> bool:  # 200 from the takeover on (`held` while it recovers), then ok
            return await health(http, "main") == (200, {"status": "ok", "state": "ready", "reasons": []})

        await until(ok, timeout=30, what="the standby's /healthz?account=main 200 after it takes over")
        assert (await http.get("/healthz")).status_code == 200


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM, "reconcile_interval = 0.05")
    async with fleet_of(settings) as running:
        yield running


async def test_an_unknown_account_is_refused_naming_account(fleet: Fleet) -> None:
    """Refused as every other `?account=` naming an account the engine does not serve: 422."""
    async with client(fleet) as http:
        code, body = await health(http, "mian")
        assert (code, body["error"], body["field"]) == (422, "validation_error", "account"), body
        assert "unknown account 'mian'" in str(body["message"]), body
        twice = await http.get("/healthz?account=main&account=alt")
        assert twice.status_code == 422 and twice.json()["field"] == "account", twice.text
        assert (await http.get("/healthz?other=1")).status_code == 422


async def test_an_account_whose_exchange_is_unreachable_stays_routed_to_its_holder(fleet: Fleet) -> None:
    """An alarm on the account (its exchange unreachable) does not take its holder out of a
    balancer: no other engine can act for it, and a close signal must still reach the one that
    can (it answers, and tells the trader, itself). 200 with status `held` and the alarm among
    the reasons; plain /healthz is 503 naming it, as before; `ok` again once it clears."""
    alt = fleet.runtime("alt")
    assert alt is not None and alt.sim is not None
    async with client(fleet) as http:
        assert await health(http, "alt") == (200, {"status": "ok", "state": "ready", "reasons": []})
        alt.sim.faults.fail_queries = True
        alt.sim.faults.unavailable_if = lambda _request: True

        async def alarmed() -> bool:
            return (await health(http, "alt"))[1]["status"] == "held"

        await until(alarmed, timeout=30, what="/healthz?account=alt to show the exchange unreachable")
        code, body = await health(http, "alt")
        reasons = body["reasons"]
        assert code == 200 and isinstance(reasons, list), body
        assert any("exchange unreachable" in r for r in reasons), body
        assert body["state"] == "ready", body
        plain = await http.get("/healthz")
        assert plain.status_code == 503 and "exchange unreachable" in plain.text, plain.text
        assert (await health(http, "main"))[0] == 200
        alt.sim.faults.fail_queries = False
        alt.sim.faults.unavailable_if = None

        async def clear() -> bool:
            return (await health(http, "alt"))[1]["status"] == "ok"

        await until(clear, timeout=30, what="/healthz?account=alt ok once its exchange answers")


async def test_an_account_not_running_is_503_with_its_failure(tmp_path: Path) -> None:
    tables = TWO_SIM.replace(
        '[accounts.alt]\nexchange = "sim"',
        '[accounts.alt]\nexchange = "bybit"\n'
        'api_key_env = "NO_SUCH_KEY_Y"\napi_secret_env = "NO_SUCH_SECRET_Y"',
    )
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", tables)
    why = "accounts.alt.api_key_env: the environment variable NO_SUCH_KEY_Y is not set"
    async with fleet_of(settings) as fleet, client(fleet) as http:
        code, body = await health(http, "alt")
        assert code == 503 and body["status"] == "unavailable", body
        reasons = body["reasons"]
        assert isinstance(reasons, list) and any(why in r for r in reasons), body
        assert (await health(http, "main"))[0] == 200


def test_the_account_parameter_of_healthz_is_documented() -> None:
    document = create_app(lambda: None).openapi()
    params = document["paths"]["/healthz"]["get"]["parameters"]
    [account] = [p for p in params if p["name"] == "account"]
    assert account["in"] == "query" and not account.get("required", False)
    assert "holds its lease" in account["description"]
    assert "422" in document["paths"]["/healthz"]["get"]["responses"]


async def test_a_holder_still_starting_is_where_the_accounts_signals_go(tmp_path: Path) -> None:
    """The holder's start retrying (the exchange not answering after a restart): no other engine
    can act for the account, and the holder answers a signal itself (503 not ready, a close told
    to the trader), so its check is 200 `held`, state starting, the reason shown; a balancer with
    no server up would answer 503 to TradingView and tell nobody."""
    main = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM).for_account("main")
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now, seed=1)
    sim.faults.fail_queries = True
    try:
        async with (
            running(main, clock=clock, exchange=sim, price_feed=False, notifier=RecordingNotifier()) as rt,
            client(rt) as http,
        ):
            code, body = await health(http, "main")
            assert (code, body["status"], body["state"]) == (200, "held", "starting"), body
            assert (await http.get("/healthz")).status_code == 503
            sim.faults.fail_queries = False

            async def ready() -> bool:
                return (await health(http, "main"))[1]["status"] == "ok"

            await until(ready, timeout=30, what="ok once its start passes")
    finally:
        await sim.close()
