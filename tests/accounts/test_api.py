"""The HTTP API of an engine serving two accounts: `account` required, per-account reads and
controls, a global kill that says it is global."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.entrypoints.document import assert_conforms
from tests.helpers import until
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Fleet, running, running_fleet
from warden.config import Settings
from warden.entrypoints.api import create_app

from .conftest import TOKEN, TWO_SIM, fleet_settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SIGNAL = {"symbol": "SOL", "side": "long", "usd": "100"}


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM)
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as running:
        yield running


@pytest.fixture
async def http(fleet: Fleet) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(lambda: fleet))
    async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as client:
        yield client


def orders_and_positions(fleet: Fleet, name: str) -> tuple[int, int]:
    runtime = fleet.runtime(name)
    assert runtime is not None and runtime.sim is not None
    return len(runtime.sim.core.open_orders()), len(runtime.sim.core.positions())


async def test_a_signal_without_account_is_refused_and_nothing_is_sent(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    response = await http.post("/api/v1/signals", json=SIGNAL)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("validation_error", "account")
    assert "this engine serves main, alt" in body["message"]
    unknown = await http.post("/api/v1/signals", json={**SIGNAL, "account": "mian"})
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "account"
    assert "unknown account 'mian'" in unknown.json()["message"]
    assert orders_and_positions(fleet, "main") == (0, 0)
    assert orders_and_positions(fleet, "alt") == (0, 0)


async def test_a_signal_lands_on_the_account_it_names(fleet: Fleet, http: httpx.AsyncClient) -> None:
    opened = await http.post("/api/v1/signals", json={**SIGNAL, "account": "alt"})
    assert opened.status_code == 201, opened.text
    assert orders_and_positions(fleet, "alt")[1] == 1
    assert orders_and_positions(fleet, "main") == (0, 0)

    by_query = await http.post("/api/v1/signals?account=main", json={**SIGNAL, "side": "short"})
    assert by_query.status_code == 201, by_query.text
    assert orders_and_positions(fleet, "main")[1] == 1

    both = await http.post("/api/v1/signals?account=main", json={**SIGNAL, "account": "alt"})
    assert both.status_code == 422 and both.json()["field"] == "account"

    alt = (await http.get("/api/v1/positions?account=alt")).json()
    main = (await http.get("/api/v1/positions", params={"account": "main"})).json()
    assert [(p["id"], p["side"]) for p in alt] == [(opened.json()["id"], "long")]
    assert [(p["id"], p["side"]) for p in main] == [(by_query.json()["id"], "short")]
    assert (await http.get(f"/api/v1/positions/{opened.json()['id']}?account=alt")).status_code == 200
    assert (await http.get(f"/api/v1/positions/{opened.json()['id']}?account=main")).status_code == 404
    events = (await http.get("/api/v1/events?account=alt")).json()
    assert events and {e["position_id"] for e in events if e["position_id"]} == {opened.json()["id"]}


async def test_the_account_is_matched_in_any_case(fleet: Fleet, http: httpx.AsyncClient) -> None:
    """`?account=Alt` or `"account": "ALT"` was refused as unknown: no two accounts differ only in
    case, so the name is matched whatever its case, under its configured spelling."""
    opened = await http.post("/api/v1/signals", json={**SIGNAL, "account": "Alt"})
    assert opened.status_code == 201, opened.text
    assert orders_and_positions(fleet, "alt")[1] == 1 and orders_and_positions(fleet, "main") == (0, 0)
    both = await http.post(
        "/api/v1/signals?account=MAIN", json={**SIGNAL, "account": "main", "side": "short"}
    )
    assert both.status_code == 201, both.text
    assert orders_and_positions(fleet, "main")[1] == 1

    paused = await http.post("/api/v1/pause?account=ALT", json={"reason": "alt only"})
    assert paused.status_code == 200, paused.text
    assert fleet.runtimes["alt"].engine.status().controls.paused
    assert not fleet.runtimes["main"].engine.status().controls.paused
    listed = (await http.get("/api/v1/positions?account=Alt")).json()
    assert [p["id"] for p in listed] == [opened.json()["id"]]

    unknown = await http.get("/api/v1/positions?account=Mian")
    assert unknown.status_code == 422, unknown.text
    assert "unknown account 'Mian'; this engine serves main, alt" in unknown.json()["message"]


@pytest.mark.parametrize(
    "path", ["/api/v1/positions", "/api/v1/status", "/api/v1/events", "/api/v1/positions/abc"]
)
async def test_reads_need_the_account(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "account"
    assert (await http.get(path, params={"account": "nope"})).status_code == 422


async def test_accounts_lists_each_with_its_lease(http: httpx.AsyncClient) -> None:
    accounts = (await http.get("/api/v1/accounts")).json()
    assert [(a["name"], a["exchange"], a["lease_held"], a["state"]) for a in accounts] == [
        ("main", "sim", True, "ready"),
        ("alt", "sim", True, "ready"),
    ]
    health = await http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    status = (await http.get("/api/v1/status?account=alt")).json()
    assert status["state"] == "ready"


async def test_pause_is_per_account_and_needs_one(fleet: Fleet, http: httpx.AsyncClient) -> None:
    refused = await http.post("/api/v1/pause", json={"reason": "x"})
    assert refused.status_code == 422 and refused.json()["field"] == "account"
    paused = await http.post("/api/v1/pause?account=main", json={"reason": "main only"})
    assert paused.status_code == 200 and paused.json()["controls"]["paused"]
    blocked = await http.post("/api/v1/signals", json={**SIGNAL, "account": "main"})
    assert blocked.status_code == 503 and "paused" in blocked.json()["message"]
    assert orders_and_positions(fleet, "main") == (0, 0)
    assert (await http.post("/api/v1/signals", json={**SIGNAL, "account": "alt"})).status_code == 201
    assert (await http.post("/api/v1/resume")).status_code == 422
    assert (await http.post("/api/v1/resume?account=main")).status_code == 200
    assert (await http.post("/api/v1/signals", json={**SIGNAL, "account": "main"})).status_code == 201


async def test_kill_without_account_stops_every_account_and_says_so(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    for name in ("main", "alt"):
        assert (await http.post("/api/v1/signals", json={**SIGNAL, "account": name})).status_code == 201
    one = await http.post("/api/v1/kill?account=alt", json={"reason": "alt"})
    assert one.status_code == 200 and one.json()["controls"]["killed"]
    assert "scope" not in one.json()
    main_status = (await http.get("/api/v1/status?account=main")).json()
    assert not main_status["controls"]["killed"]

    killed = await http.post("/api/v1/kill", json={"flatten": True, "reason": "everything"})
    assert killed.status_code == 200, killed.text
    assert_conforms((await http.get("/api/v1/openapi.json")).json(), "/api/v1/kill", killed)
    body = killed.json()
    assert body["scope"] == "all accounts"
    assert set(body["accounts"]) == {"main", "alt"}
    assert all(body["accounts"][name]["controls"]["killed"] for name in ("main", "alt"))
    assert all(len(body["accounts"][name]["closed"]) == 1 for name in ("main", "alt"))
    assert orders_and_positions(fleet, "main") == (0, 0)
    assert orders_and_positions(fleet, "alt") == (0, 0)
    for name in ("main", "alt"):
        refused = await http.post("/api/v1/signals", json={**SIGNAL, "account": name})
        assert refused.status_code == 503 and "kill switch" in refused.json()["message"]


async def test_with_one_account_table_the_account_is_optional(tmp_path: Path) -> None:
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", '[accounts.solo]\nexchange = "sim"\n')
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            assert (await http.post("/api/v1/signals", json=SIGNAL)).status_code == 201
            named = await http.post(
                "/api/v1/signals", json={**SIGNAL, "symbol": "BTC", "usd": "200", "account": "solo"}
            )
            assert named.status_code == 201, named.text
            assert len((await http.get("/api/v1/positions")).json()) == 2
            assert len((await http.get("/api/v1/positions?account=solo")).json()) == 2
            wrong = await http.get("/api/v1/positions?account=default")
            assert wrong.status_code == 422 and "unknown account 'default'" in wrong.json()["message"]
            kill = (await http.post("/api/v1/kill", json={})).json()
            assert "scope" not in kill and kill["controls"]["killed"]


async def test_an_engine_of_one_account_takes_its_name_or_none(tmp_path: Path) -> None:
    """Today's single account (no [accounts.*]): `account` optional; `default` accepted; others not."""
    settings = Settings.load(
        db=f"sqlite:///{tmp_path}/w.db", exchange="sim", data_dir=tmp_path / "data", api_token=TOKEN
    )
    async with running(settings, price_feed=False, notifier=RecordingNotifier()) as runtime:
        transport = httpx.ASGITransport(app=create_app(lambda: runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            assert (await http.post("/api/v1/signals", json=SIGNAL)).status_code == 201
            named = await http.post(
                "/api/v1/signals", json={**SIGNAL, "symbol": "BTC", "usd": "200", "account": "default"}
            )
            assert named.status_code == 201, named.text
            other = await http.post("/api/v1/signals", json={**SIGNAL, "symbol": "ETH", "account": "main"})
            assert other.status_code == 422 and other.json()["field"] == "account"
            accounts = (await http.get("/api/v1/accounts")).json()
            assert [(a["name"], a["lease_held"]) for a in accounts] == [("default", True)]


async def test_metrics_label_each_account(fleet: Fleet, http: httpx.AsyncClient) -> None:
    await fleet.runtimes["main"].engine.pause("x")
    assert (await http.post("/api/v1/signals", json={**SIGNAL, "account": "alt"})).status_code == 201
    text = (await http.get("/metrics")).text
    samples = {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if line[:1] != "#"
    }
    assert samples['warden_engine_up{account="main"}'] == "1.0"
    assert samples['warden_engine_up{account="alt"}'] == "1.0"
    assert samples['warden_open_positions{account="alt"}'] == "1.0"
    assert samples['warden_open_positions{account="main"}'] == "0.0"
    assert samples['warden_accepting_signals{account="main"}'] == "0.0"
    assert samples['warden_accepting_signals{account="alt"}'] == "1.0"
    assert samples['warden_engine_state{account="alt",state="ready"}'] == "1.0"
    # each engine's exchange-call metrics, labelled by account: alt placed orders, main did not
    placed = {
        key: float(value)
        for key, value in samples.items()
        if key.startswith("warden_exchange_call_seconds_count{") and 'operation="place_order"' in key
    }
    assert any('account="alt"' in key and value > 0 for key, value in placed.items()), placed
    assert not any('account="main"' in key and value > 0 for key, value in placed.items()), placed


async def test_metrics_of_an_engine_serving_one_table_of_several_name_it(tmp_path: Path) -> None:
    """One engine per account (`warden run --account alt` beside `--account main`, scraped by one
    Prometheus): alt's engine served one account, so its samples carried no `account` label and a
    WardenAlarm or WardenUnprotectedPosition did not say whose account it was. An engine serving
    a named [accounts.NAME] table labels its samples with it, as an engine of several does."""
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM).only("alt")
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            assert (await http.post("/api/v1/signals", json=SIGNAL)).status_code == 201
            text = (await http.get("/metrics")).text
    samples = {
        line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if line[:1] != "#"
    }
    assert samples.get('warden_engine_up{account="alt"}') == "1.0", text
    assert samples['warden_open_positions{account="alt"}'] == "1.0"
    assert samples['warden_alarms{account="alt"}'] == "0.0"
    assert "warden_engine_up 1.0" not in text
    placed = [
        key
        for key in samples
        if key.startswith("warden_exchange_call_seconds_count{") and 'operation="place_order"' in key
    ]
    assert placed and all('account="alt"' in key for key in placed), placed


async def test_the_dashboard_shows_one_account_at_a_time(fleet: Fleet, http: httpx.AsyncClient) -> None:
    """`/?account=alt`: a link to each account, and every fragment, action and the stream ask for alt."""
    opened = await http.post("/api/v1/signals", json={**SIGNAL, "account": "alt"})
    assert opened.status_code == 201
    await http.post("/login", content=f"token={TOKEN}".encode())
    page = (await http.get("/?account=alt")).text
    assert 'href="/?account=main"' in page and 'href="/?account=alt"' in page
    assert 'hx-get="/ui/positions?account=alt"' in page
    assert 'hx-post="/api/v1/kill?account=alt"' in page and "Kill account alt?" in page
    assert 'data-query="?account=alt"' in page
    first = (await http.get("/")).text
    assert 'hx-get="/ui/positions?account=main"' in first  # the first account by default

    alt = (await http.get("/ui/positions?account=alt")).text
    assert opened.json()["id"] in alt
    assert f'hx-post="/api/v1/positions/{opened.json()["id"]}/close?account=alt"' in alt
    assert opened.json()["id"] not in (await http.get("/ui/positions?account=main")).text
    signed_in = await http.get("/", params={"token": TOKEN, "account": "alt"})  # a bookmark of alt's page
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/?account=alt"  # it landed on main
    typo = await http.get("/?account=atl")  # not "the engine is starting…" forever: named, linked
    assert typo.status_code == 404
    assert 'href="/?account=main"' in typo.text and 'href="/?account=alt"' in typo.text
    assert (await http.get("/ui/status?account=atl")).status_code == 404


async def test_a_kill_of_all_that_misses_an_account_is_not_reported_as_done(tmp_path: Path) -> None:
    """alt is a standby here (another engine holds its lease): a global kill stops main and
    answers 503 kill_incomplete naming alt, never a plain 200."""
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM)
    holder = settings.for_account("alt").model_copy(
        update={"data_dir": tmp_path / "other", "engine_name": "the-other-engine"}
    )
    async with (
        running(holder, price_feed=False, notifier=RecordingNotifier()),
        running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet,
    ):
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            listed = (await http.get("/api/v1/accounts")).json()
            accounts = {a["name"]: a["lease_held"] for a in listed}
            assert accounts == {"main": True, "alt": False}
            assert {a["name"]: a["holder"] for a in listed}["alt"] == "the-other-engine"
            killed = await http.post("/api/v1/kill", json={})
            assert killed.status_code == 503, killed.text
            assert_conforms((await http.get("/api/v1/openapi.json")).json(), "/api/v1/kill", killed)
            body = killed.json()
            assert body["error"] == "kill_incomplete" and body["scope"] == "all accounts"
            assert body["accounts"]["alt"] == {"error": body["accounts"]["alt"]["error"]}
            assert body["message"].startswith("kill switch NOT on for alt: ")
            assert body["message"].endswith("(on for: main)")
            assert body["accounts"]["main"]["controls"]["killed"]
            assert fleet.runtimes["main"].engine.status().controls.killed


async def test_an_account_that_could_not_start_is_listed_with_why(tmp_path: Path) -> None:
    tables = TWO_SIM.replace(
        '[accounts.alt]\nexchange = "sim"',
        '[accounts.alt]\nexchange = "bybit"\n'
        'api_key_env = "NO_SUCH_KEY_Y"\napi_secret_env = "NO_SUCH_SECRET_Y"',
    )
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", tables)
    why = "accounts.alt.api_key_env: the environment variable NO_SUCH_KEY_Y is not set"
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden", headers=AUTH) as http:
            accounts = {a["name"]: a for a in (await http.get("/api/v1/accounts")).json()}
            alt = accounts["alt"]
            assert (alt["exchange"], alt["lease_held"], alt["state"], alt["accepting_signals"]) == (
                "bybit",
                False,
                None,
                False,
            )
            assert alt["reasons"] == [f"not running: {why}"]
            assert accounts["main"]["state"] == "ready"
            refused = await http.post("/api/v1/signals", json={**SIGNAL, "account": "alt"})
            assert refused.status_code == 503 and "account 'alt' is not running" in refused.json()["message"]
            health = await http.get("/healthz")
            assert health.status_code == 503
            assert health.json()["reasons"] == [f"alt: not running: {why}"]
            assert (await http.post("/api/v1/signals", json={**SIGNAL, "account": "main"})).status_code == 201
            # The dashboard said "The engine is starting…" for alt, forever: it says why it is not running.
            await http.post("/login", content=f"token={TOKEN}".encode())
            page = await http.get("/?account=alt")
            assert page.status_code == 503
            assert "starting" not in page.text and "alt is not running" in page.text, page.text
            assert html.escape(why) in page.text
            assert 'href="/?account=main"' in page.text
            status = await http.get("/ui/status?account=alt")
            assert status.status_code == 503 and html.escape(why) in status.text, status.text


async def test_an_account_given_twice_in_the_query_is_refused_and_nothing_is_done(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    """`?account=main&account=alt` (a URL built by appending to one that named an account) is
    refused as a JSON field given twice is, whichever came last: the signal went to alt and the
    pause paused alt."""
    opened = await http.post("/api/v1/signals?account=main&account=alt", json=SIGNAL)
    assert opened.status_code == 422, opened.text
    assert opened.json()["field"] == "account" and "given twice" in opened.json()["message"]
    paused = await http.post("/api/v1/pause?account=alt&account=main")
    assert paused.status_code == 422 and paused.json()["field"] == "account", paused.text
    assert orders_and_positions(fleet, "main") == (0, 0)
    assert orders_and_positions(fleet, "alt") == (0, 0)
    for name in ("main", "alt"):
        runtime = fleet.runtime(name)
        assert runtime is not None and not runtime.engine.status().controls.paused


async def test_healthz_names_the_account_whose_position_is_naked_and_clears_once_protected(
    tmp_path: Path,
) -> None:
    """Several accounts: a position of `alt` left without a stop (stop and close refused) turns
    the fleet's /healthz 503 with the reason under `alt` (main is fine), and 200 once it rests."""
    settings = fleet_settings(tmp_path, f"sqlite:///{tmp_path}/w.db", TWO_SIM, "protection_window = 0.2")
    async with running_fleet(settings, price_feed=False, notifier=lambda _: RecordingNotifier()) as fleet:
        transport = httpx.ASGITransport(app=create_app(lambda: fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://w", headers=AUTH) as http:
            alt = fleet.runtime("alt")
            assert alt is not None and alt.sim is not None
            alt.sim.faults.reject_if = lambda req: req.reduce_only
            opened = await http.post("/api/v1/signals", json={**SIGNAL, "account": "alt"})
            assert opened.status_code == 502, opened.text
            pid = opened.json()["position"]["id"]

            async def red() -> bool:
                return (await http.get("/healthz")).status_code == 503

            await until(red, what="the fleet's /healthz 503")
            reasons = (await http.get("/healthz")).json()["reasons"]
            assert len(reasons) == 1 and reasons[0].startswith("alt: ") and pid in reasons[0], reasons
            metrics = (await http.get("/metrics")).text
            assert 'warden_alarms{account="alt"} 1.0' in metrics
            assert 'warden_alarms{account="main"} 0.0' in metrics
            alt.sim.faults.reject_if = None

            async def green() -> bool:
                return (await http.get("/healthz")).status_code == 200

            await until(green, timeout=30, what="the fleet's /healthz 200 once the stop rests")
