"""The HTTP API over the real engine and the in-process simulated exchange."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import until
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Runtime, running
from warden.config import Settings
from warden.domain.values import OrderType, Symbol
from warden.entrypoints.api import create_app

from .conftest import AUTH, TOKEN, make_settings

SOL = Symbol("SOL/USDT:USDT")
SIGNAL = {"symbol": "SOL", "side": "long", "usd": "100"}


async def open_sol(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/signals", json={**SIGNAL, **extra}, headers=AUTH)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def assert_nothing_happened(runtime: Runtime) -> None:
    """No position row, no order, no fill, no exchange position."""
    assert await runtime.store.list_positions(include_closed=True) == []
    assert runtime.sim is not None
    core = runtime.sim.core
    assert core.open_orders() == []
    assert core.positions() == []
    assert all(core.fills(symbol) == [] for symbol in core.instruments)


async def test_signal_opens_a_protected_position(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A valid signal answers 201 with a PROTECTED position whose stop rests on the exchange."""
    p = await open_sol(client, signal_id="tv-1")
    assert p["status"] == "protected"
    assert p["symbol"] == SOL
    assert p["side"] == "long"
    assert p["stop_resting"] is True
    assert p["signal_id"] == "tv-1"
    assert isinstance(p["size"], str)
    assert Decimal(p["size"]) == Decimal(p["filled_qty"]) > 0
    assert Decimal(p["stop_price"]) < Decimal(p["entry_price"])
    assert runtime.sim is not None
    stops = [o for o in runtime.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
    assert [(s.qty, s.trigger_price) for s in stops] == [(Decimal(p["size"]), Decimal(p["stop_price"]))]


@pytest.mark.parametrize("symbol", ["SOL", "sol", "SOLUSDT", "SOL/USDT:USDT", "BINANCE:SOLUSDT.P"])
async def test_symbol_spellings_are_normalised(client: httpx.AsyncClient, symbol: str) -> None:
    """Bare, lower-case, exchange-id, unified and TradingView spellings all name the same market."""
    p = await open_sol(client, symbol=symbol)
    assert p["symbol"] == SOL


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"symbol": "DOGE", "side": "long", "usd": "100"}, "symbol"),
        ({"side": "long", "usd": "100"}, "symbol"),
        ({"symbol": "SOL", "side": "up", "usd": "100"}, "side"),
        ({"symbol": "SOL", "side": 5, "usd": "100"}, "side"),
        ({"symbol": "SOL", "side": "long", "usd": "-5"}, "usd"),
        ({"symbol": "SOL", "side": "long", "usd": 0}, "usd"),
        ({"symbol": "SOL", "side": "long", "usd": "1"}, "usd"),
        ({"symbol": "SOL", "side": "long", "qty": "lots"}, "qty"),
        ({"symbol": "SOL", "side": "long", "usd": "100", "qty": "1"}, "qty"),
        ({"symbol": "SOL", "side": "long", "usd": "100", "stop_price": "1000"}, "stop_price"),
        ({"symbol": "SOL", "side": "long", "usd": "100", "signal_id": ""}, "signal_id"),
        ({"symbol": "SOL", "side": "long", "usd": "100", "signal_id": "  "}, "signal_id"),
        ({"symbol": "SOL", "side": "long", "usd": "100", "signal_id": "\t\n\u00a0"}, "signal_id"),
        (["SOL", "long"], "body"),
    ],
)
async def test_bad_signal_is_422_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, body: object, field: str
) -> None:
    """Each bad input is refused with 422 naming its field, and nothing reaches the DB or the exchange."""
    response = await client.post("/api/v1/signals", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert error["field"] == field
    assert error["message"]
    await assert_nothing_happened(runtime)


async def test_bad_side_message_lists_the_choices(client: httpx.AsyncClient) -> None:
    """The side error says what is accepted and echoes what was sent."""
    response = await client.post("/api/v1/signals", json={**SIGNAL, "side": "up"}, headers=AUTH)
    assert response.json()["message"] == "must be long, short, buy or sell, not 'up'"


async def test_body_that_is_not_json(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A body that is not JSON is a 422 on `body`."""
    response = await client.post("/api/v1/signals", content=b"short sol", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["field"] == "body"
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    "body",
    [
        b'{"symbol": "SOL", "side": "long", "usd": 1e999999999999999999999}',
        b'{"symbol": "SOL", "side": "long", "usd": "100", "stop_price": -1e9999999999999999999999}',
    ],
    ids=["usd", "stop_price"],
)
async def test_a_json_number_beyond_any_decimal_is_422_on_the_body(
    client: httpx.AsyncClient, runtime: Runtime, body: bytes
) -> None:
    """A JSON number whose exponent no decimal can hold is refused like any other bad JSON (it was
    an InvalidOperation out of the parser: a 500 with a traceback); nothing is sent."""
    response = await client.post("/api/v1/signals", content=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "body"
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    ("body", "field", "headers"),
    [
        (b'{"symbol": "SOL", "side": "long", "usd": "100", "symbol": "BTC"}', "symbol", AUTH),
        (b'{"symbol": "SOL", "side": "long", "usd": "100", "usd": "5000"}', "usd", AUTH),
        # TradingView: the token in the body, a text/plain content type, no header
        (
            b'{"symbol": "SOL", "side": "sell", "side": "buy", "usd": 100, "secret": "%s"}' % TOKEN.encode(),
            "side",
            {"Content-Type": "text/plain"},
        ),
    ],
    ids=["symbol", "usd", "tradingview"],
)
async def test_a_field_given_twice_is_422_naming_it(
    client: httpx.AsyncClient, runtime: Runtime, body: bytes, field: str, headers: dict[str, str]
) -> None:
    """A key that appears twice in a body is refused naming it; the last one used to win silently
    (`{"symbol": "SOL", ..., "symbol": "BTC"}` opened BTC). Nothing is sent."""
    response = await client.post("/api/v1/signals", content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("validation_error", field)
    assert "given twice" in error["message"]
    await assert_nothing_happened(runtime)


async def test_a_field_given_twice_in_a_patch_is_422_and_the_stop_stays(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Every JSON body route shares the decoder: a stop_price given twice changes nothing."""
    p = await open_sol(client)
    body = b'{"stop_price": "148.5", "stop_price": "149.5"}'
    response = await client.patch(f"/api/v1/positions/{p['id']}", content=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "stop_price"
    assert runtime.sim is not None
    stops = [o for o in runtime.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
    assert [s.trigger_price for s in stops] == [Decimal(p["stop_price"])]


async def test_a_secret_pasted_with_a_space_around_it_is_the_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """TradingView's alert message is typed by hand: the token pasted into `"secret"` with a space
    (or a newline, as `\\n`) after it was refused 401, and a 401 alerts nobody (an unknown sender
    could flood the trader), so the signal was lost in silence. Whitespace is never part of a token."""
    for i, secret in enumerate((TOKEN + " ", " " + TOKEN, TOKEN + "\n")):
        body = {**SIGNAL, "secret": secret, "signal_id": f"pasted-{i}"}
        response = await client.post("/api/v1/signals", json=body)
        assert response.status_code == 201, response.text
        closed = await client.post(f"/api/v1/positions/{response.json()['id']}/close", headers=AUTH)
        assert closed.status_code == 200, closed.text


async def test_a_secret_given_twice_is_no_token(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Which of two `secret`s would count is ambiguous: neither does (401), nothing is sent."""
    body = (
        b'{"symbol": "SOL", "side": "long", "usd": 100, "secret": "guess", "secret": "%s"}' % TOKEN.encode()
    )
    response = await client.post("/api/v1/signals", content=body)
    assert response.status_code == 401, response.text
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        # TradingView: the token is in the body, and another field is not text
        (
            b'{"symbol": "SOL", "side": "long", "usd": 100, "signal_id": "a\\ud800", "secret": "%s"}'
            % TOKEN.encode(),
            {"Content-Type": "text/plain"},
            422,
            "signal_id",
        ),
        (b'{"symbol": "SOL", "side": "long", "usd": 100, "secret": "\\ud800"}', {}, 401, None),
        (b'{"symbol": "SOL", "side": "long", "usd": 100, "secret": "\\udc00"}', AUTH, 422, "secret"),
        (b'{"symbol": "SOL", "side": "long", "usd": 100, "\\ud800": 1, "\\ud800": 2}', AUTH, 422, "body"),
        (b'{"symbol": "SOL", "side": "long", "usd": 100, "\\ud800": 1}', AUTH, 422, "body"),
    ],
    ids=["tradingview", "secret-alone", "secret-with-header", "key-twice", "key"],
)
async def test_a_lone_surrogate_is_a_4xx_not_a_500(
    client: httpx.AsyncClient,
    runtime: Runtime,
    body: bytes,
    headers: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    """JSON may write half a character (`"\\ud800"`, a lone UTF-16 surrogate), which Python reads into a
    string no codec can encode. In `secret` it made the token check raise (a 500 with a traceback in
    the log, whatever else the body held); as a key given twice it made the error answer itself
    unwritable (a 500). It is refused naming the field, after the token check like any bad input,
    and nothing is sent."""
    transport = httpx.ASGITransport(app=create_app(lambda: runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://warden") as raw:
        response = await raw.post("/api/v1/signals", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    if status == 401:
        assert error["error"] == "unauthorized"
    else:
        assert (error["error"], error["field"]) == ("validation_error", field)
        assert "surrogate" in error["message"]
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"usd": "\u0661\u0660\u0660"}, "usd"),  # Arabic-Indic 100
        ({"usd": "\uff11\uff10\uff10"}, "usd"),  # full-width 100
        ({"usd": "1\u0660\u0660"}, "usd"),  # mixed
        ({"usd": "100", "stop_price": "\u0661\u0664\u0660"}, "stop_price"),
        ({"usd": "1e\u0663"}, "usd"),  # an exponent
        ({"usd": "100", "trail_pct": "0.\u0660\u0660\u0665"}, "trail_pct"),
    ],
)
async def test_a_number_with_non_ascii_digits_is_422_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, extra: dict[str, str], field: str
) -> None:
    """ "\u0661\u0660\u0660" was read as 100 (any Unicode digit matched, and Decimal takes them): amounts
    and prices are ASCII only. Nothing is sent."""
    response = await client.post(
        "/api/v1/signals", json={"symbol": "SOL", "side": "long", **extra}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("validation_error", field)
    assert "ASCII" in error["message"]
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize("usd", ["100\n", "100 ", " 100", "1_000", "+100", "100\t"])
async def test_a_number_with_anything_around_or_inside_it_is_422(
    client: httpx.AsyncClient, runtime: Runtime, usd: str
) -> None:
    """A number is its digits and nothing else: "100\n" (a trailing newline passed the pattern's
    `$` and Decimal strips it) is refused like " 100", naming the field. Nothing is sent."""
    response = await client.post(
        "/api/v1/signals", json={"symbol": "SOL", "side": "long", "usd": usd}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert (response.json()["error"], response.json()["field"]) == ("validation_error", "usd")
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
async def test_signal_without_the_token_is_401(
    client: httpx.AsyncClient, runtime: Runtime, headers: dict[str, str]
) -> None:
    """A missing, wrong or non-Bearer token is refused with 401 and nothing is sent."""
    response = await client.post("/api/v1/signals", json=SIGNAL, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    await assert_nothing_happened(runtime)


async def test_unauthorized_wins_over_bad_input(client: httpx.AsyncClient) -> None:
    """Without a token a caller learns nothing about validation: 401, not 422."""
    response = await client.post("/api/v1/signals", json={"side": "up"})
    assert response.status_code == 401


async def test_tradingview_secret_in_body(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """TradingView's text/plain webhook with the token as `secret` opens a position."""
    body = b'{"symbol": "SOLUSDT.P", "side": "sell", "usd": 100, "secret": "%s"}' % TOKEN.encode()
    response = await client.post("/api/v1/signals", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 201, response.text
    assert response.json()["side"] == "short"
    assert response.json()["status"] == "protected"


async def test_tradingview_wrong_secret(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A wrong `secret` in the body is a 401 and nothing is sent."""
    response = await client.post("/api/v1/signals", json={**SIGNAL, "secret": "guess"})
    assert response.status_code == 401
    await assert_nothing_happened(runtime)


async def test_duplicate_signal_id_is_409_with_the_existing_position(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Resending a signal id answers 409 naming the position it already opened; no second order."""
    first = await open_sol(client, signal_id="tv-42")
    again = await client.post("/api/v1/signals", json={**SIGNAL, "signal_id": "tv-42"}, headers=AUTH)
    assert again.status_code == 409
    body = again.json()
    assert body["error"] == "already_exists"
    assert body["position_id"] == first["id"]
    assert body["position"]["id"] == first["id"]
    assert len(await runtime.store.list_positions(include_closed=True)) == 1


async def test_close_reports_realized_pnl(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Closing answers the CLOSED position with its realized PnL, and the exchange is left flat."""
    p = await open_sol(client)
    response = await client.post(f"/api/v1/positions/{p['id']}/close", headers=AUTH)
    assert response.status_code == 200, response.text
    closed = response.json()
    assert closed["status"] == "closed"
    assert closed["size"] == "0" or Decimal(closed["size"]) == 0
    assert Decimal(closed["realized_pnl"]) == -Decimal(closed["fees"])  # the mark did not move
    assert Decimal(closed["fees"]) > 0
    assert runtime.sim is not None
    assert runtime.sim.core.positions() == []
    assert runtime.sim.core.open_orders() == []


async def test_close_needs_the_token(client: httpx.AsyncClient) -> None:
    """Closing without the token is a 401 and the position stays protected."""
    p = await open_sol(client)
    response = await client.post(f"/api/v1/positions/{p['id']}/close")
    assert response.status_code == 401
    assert (await client.get(f"/api/v1/positions/{p['id']}", headers=AUTH)).json()["status"] == "protected"


async def test_close_unknown_position_is_404(client: httpx.AsyncClient) -> None:
    """Closing an id that does not exist is a 404 naming the position id."""
    response = await client.post("/api/v1/positions/nope/close", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["field"] == "position_id"


async def test_read_positions_and_events(client: httpx.AsyncClient) -> None:
    """Open positions are listed; closed ones only with ?all=true; each has its audit trail."""
    p = await open_sol(client)
    listed = (await client.get("/api/v1/positions", headers=AUTH)).json()
    assert [x["id"] for x in listed] == [p["id"]]
    await client.post(f"/api/v1/positions/{p['id']}/close", headers=AUTH)
    assert (await client.get("/api/v1/positions", headers=AUTH)).json() == []
    everything = (await client.get("/api/v1/positions", params={"all": "true"}, headers=AUTH)).json()
    assert [(x["id"], x["status"]) for x in everything] == [(p["id"], "closed")]
    one = (await client.get(f"/api/v1/positions/{p['id']}", headers=AUTH)).json()
    assert one["exit_reason"] == "manual"
    events = await client.get(f"/api/v1/positions/{p['id']}/events", headers=AUTH)
    kinds = {e["kind"] for e in events.json()}
    assert {"position_opening", "position_protected", "position_closed"} <= kinds
    all_events = (await client.get("/api/v1/events", params={"limit": 500}, headers=AUTH)).json()
    assert any(e["position_id"] == p["id"] for e in all_events)


async def test_listed_events_carry_their_stream_ids(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """GET /events and GET /positions/{id}/events give each event its id (the one GET /stream uses
    and resumes after with ?after=), oldest first."""
    p = await open_sol(client)
    stored = await runtime.engine.events_since(None, 1000)
    listed = (await client.get("/api/v1/events", params={"limit": 1000}, headers=AUTH)).json()
    assert [e["id"] for e in listed] == [i for i, _ in stored]
    assert all(isinstance(e["id"], int) for e in listed)
    mine = (await client.get(f"/api/v1/positions/{p['id']}/events", headers=AUTH)).json()
    assert [e["id"] for e in mine] == [i for i, e in stored if e.position_id == p["id"]]
    filtered = (await client.get("/api/v1/events", params={"position_id": p["id"]}, headers=AUTH)).json()
    assert filtered == mine
    latest = (await client.get("/api/v1/events", params={"limit": 2}, headers=AUTH)).json()
    assert [e["id"] for e in latest] == [i for i, _ in stored[-2:]]


async def test_unknown_position_and_route_are_json_404(client: httpx.AsyncClient) -> None:
    """Unknown positions (and their events) and unknown routes answer JSON 404s."""
    for path in ("/api/v1/positions/nope", "/api/v1/positions/nope/events", "/api/v1/nothing"):
        response = await client.get(path, headers=AUTH)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


async def test_a_trailing_slash_is_a_json_404_naming_the_path_and_nothing_is_sent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A URL pasted with a trailing slash (https://host/api/v1/signals/ in TradingView's webhook
    field, a script's base URL joined with "/"): the answer was an empty 307 to the path without
    it. `curl -X POST` prints nothing and exits 0 on it, and a sender that does not follow
    redirects (or is sent to http:// behind a TLS proxy) never delivers the signal; nothing
    said that it was not taken. Now a JSON 404 that names the path to use."""
    for method, path, body in (
        ("POST", "/api/v1/signals/", SIGNAL),
        ("GET", "/api/v1/positions/", None),
        ("POST", "/api/v1/pause/", None),
    ):
        response = await client.request(method, path, json=body, headers=AUTH)
        assert response.status_code == 404, (path, response.status_code, response.text)
        error = response.json()
        assert error["error"] == "not_found"
        assert path.rstrip("/") in error["message"] and "trailing slash" in error["message"]
    await assert_nothing_happened(runtime)
    assert runtime.engine.status().controls.paused is False


async def test_query_validation_names_the_parameter(client: httpx.AsyncClient) -> None:
    """FastAPI's own validation errors are reshaped to name the field."""
    response = await client.get("/api/v1/events", params={"limit": 0}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["field"] == "limit"
    assert response.json()["error"] == "validation_error"


async def test_status(client: httpx.AsyncClient) -> None:
    """Status shows the engine ready and counts open and unprotected positions."""
    await open_sol(client)
    s = (await client.get("/api/v1/status", headers=AUTH)).json()
    assert s["state"] == "ready"
    assert s["accepting_signals"] is True
    assert (s["open_positions"], s["unprotected_positions"]) == (1, 0)


async def test_healthz_ready(client: httpx.AsyncClient) -> None:
    """A recovered engine is healthy."""
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["state"] == "ready"


async def test_read_only_engine_is_unhealthy_and_refuses(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A read-only engine answers 503 on /healthz with the reason, and 503 to signals with nothing sent."""
    runtime.engine.set_read_only("lease lost to another engine")
    health = await client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["state"] == "read_only"
    assert health.json()["reasons"]
    response = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert response.status_code == 503
    assert response.json()["error"] == "trading_refused"
    assert "nothing was sent" in response.json()["message"]
    await assert_nothing_happened(runtime)


async def test_not_started_is_503() -> None:
    """Before the engine is running, health and reads answer 503 rather than failing."""
    app = create_app(lambda: None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
        assert (await http.get("/healthz")).status_code == 503
        response = await http.get("/api/v1/positions")
        assert response.status_code == 503
        assert response.json()["error"] == "not_ready"
        assert "warden_engine_up 0.0" in (await http.get("/metrics")).text


async def test_metrics_expose_the_gauges(client: httpx.AsyncClient) -> None:
    """/metrics has open and unprotected positions, the engine state and signals by outcome."""
    await open_sol(client)
    await client.post("/api/v1/signals", json={**SIGNAL, "side": "up"}, headers=AUTH)
    await client.post("/api/v1/signals", json=SIGNAL)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        "warden_open_positions 1.0",
        "warden_unprotected_positions 0.0",
        'warden_engine_state{state="ready"} 1.0',
        'warden_engine_state{state="degraded"} 0.0',
        'warden_signals_total{outcome="accepted"} 1.0',
        'warden_signals_total{outcome="invalid"} 1.0',
        'warden_signals_total{outcome="unauthorized"} 1.0',
    ):
        assert line in text, line


@pytest.fixture
async def any_db_client(tmp_path: Path, store_url: str) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """The API over an engine on SQLite, then on PostgreSQL."""
    settings = Settings.load(db=store_url, exchange="sim", data_dir=tmp_path / "data", api_token=TOKEN)
    async with running(settings, price_feed=False, notifier=RecordingNotifier()) as rt:
        transport = httpx.ASGITransport(app=create_app(lambda: rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://warden") as http:
            yield rt, http


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/signals", {**SIGNAL, "signal_id": "tv\x00-1"}, "signal_id"),
        ("/api/v1/pause", {"reason": "lunch\x00"}, "reason"),
        ("/api/v1/kill", {"reason": "\x00"}, "reason"),
    ],
)
async def test_a_nul_character_is_422_naming_the_field_and_the_engine_stays_ready(
    any_db_client: tuple[Runtime, httpx.AsyncClient], path: str, body: dict[str, Any], field: str
) -> None:
    """PostgreSQL cannot store U+0000 in text: a signal_id or a pause/kill reason carrying one made
    the engine's own write fail — 503 database_unavailable and `degraded` for a signal; for a
    reason, the pause or kill took effect and its event, which no commit can write, left the
    engine `degraded`. It is refused at the door, on every database alike: 422 naming the field,
    nothing changed."""
    runtime, client = any_db_client
    response = await client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    status = (await client.get("/api/v1/status", headers=AUTH)).json()
    assert (status["state"], status["accepting_signals"]) == ("ready", True), status
    assert (status["controls"]["paused"], status["controls"]["killed"]) == (False, False)
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/positions/ab%00cd"),
        ("GET", "/api/v1/positions/ab%00cd/events"),
        ("POST", "/api/v1/positions/ab%00cd/close"),
        ("GET", "/api/v1/events?position_id=ab%00cd"),
    ],
)
async def test_a_position_id_with_a_nul_character_is_422_not_a_database_outage(
    any_db_client: tuple[Runtime, httpx.AsyncClient], method: str, path: str
) -> None:
    """A position id that no position can have (U+0000) answered 503 database_unavailable on
    PostgreSQL (the lookup itself failed); it is a 422 naming position_id."""
    _, client = any_db_client
    response = await client.request(method, path, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "position_id"


async def test_the_docs_page_runs_only_pinned_checked_code(client: httpx.AsyncClient) -> None:
    """/api/v1/docs is served from warden's own origin, where a script may call every route with the
    dashboard's cookie (its requests carry warden's own Origin). It loaded Swagger UI from a CDN at a
    floating version (swagger-ui-dist@5: whatever 5.x is published next) with no integrity check, and
    its icon from a third party. Every script and stylesheet it loads from elsewhere must name an
    exact version and carry the hash the browser checks; nothing else is fetched from elsewhere."""
    page = (await client.get("/api/v1/docs")).text
    external = re.findall(r'<(script|link)\b([^>]*(?:src|href)="https?://[^"]*"[^>]*)>', page)
    assert {tag for tag, _ in external} == {"script", "link"}, page
    for _, attributes in external:
        url = re.search(r'(?:src|href)="([^"]+)"', attributes)
        assert url is not None
        assert re.search(r"@\d+\.\d+\.\d+/", url.group(1)), url.group(1)  # an exact version
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/=]{64}"', attributes), attributes
        assert 'crossorigin="anonymous"' in attributes, attributes
    assert "fastapi.tiangolo.com" not in page
    assert "SwaggerUIBundle" in page and "/api/v1/openapi.json" in page


@pytest.mark.parametrize(
    ("fault", "status", "code", "says"),
    [
        ("reject_if", 502, "exchange_error", "rejected"),
        ("unavailable_if", 503, "exchange_unavailable", "exchange unavailable"),
    ],
)
async def test_an_entry_the_exchange_refused_is_not_a_201(
    client: httpx.AsyncClient, runtime: Runtime, fault: str, status: int, code: str, says: str
) -> None:
    """The entry order refused (or the exchange unreachable when it was sent): the position is
    recorded `failed` and nothing is open. The answer was 201 Created — "opened and protected"
    in the document — with status "failed" and no reason; TradingView's log, a script checking
    the status code and the CLI all read it as done. It is the exchange's error, naming why,
    with the failed position attached."""
    assert runtime.sim is not None
    setattr(runtime.sim.faults, fault, lambda req: req.type is OrderType.MARKET)
    response = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"] == code
    assert says in error["message"] and "nothing is open" in error["message"]
    assert error["position"]["status"] == "failed"
    assert error["position_id"] == error["position"]["id"]
    assert runtime.sim.core.positions() == [] and runtime.sim.core.open_orders() == []


async def test_a_signal_id_whose_entry_failed_says_to_send_a_new_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A signal id is used once, even when its entry failed (the same id is the same signal: a
    resend must not trade twice). Resent after the exchange refused it, the 409 read "signal 'tv-9'
    already opened position X", which opened nothing: it says the entry failed, nothing is open,
    and that a new signal_id tries again."""
    assert runtime.sim is not None
    runtime.sim.faults.reject_if = lambda req: req.type is OrderType.MARKET
    first = await client.post("/api/v1/signals", json={**SIGNAL, "signal_id": "tv-9"}, headers=AUTH)
    assert first.status_code == 502, first.text
    runtime.sim.faults.reject_if = None
    again = await client.post("/api/v1/signals", json={**SIGNAL, "signal_id": "tv-9"}, headers=AUTH)
    assert again.status_code == 409, again.text
    message = again.json()["message"]
    assert "already opened" not in message
    assert "failed" in message and "nothing is open" in message and "new signal_id" in message
    assert runtime.sim.core.positions() == []


async def test_an_entry_whose_stop_the_exchange_refused_is_not_a_201(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The entry filled, the stop was refused, and the position was closed at market
    (protection_failed): it was answered 201 — "the stop rests on the exchange". It is a 502
    naming the stop's refusal and the close, with the position attached."""
    assert runtime.sim is not None
    runtime.sim.faults.reject_if = lambda req: req.type is OrderType.STOP_MARKET
    response = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert response.status_code == 502, response.text
    error = response.json()
    assert error["error"] == "exchange_error"
    assert "stop" in error["message"] and "closed at market" in error["message"]
    assert error["position"]["exit_reason"] == "protection_failed"
    assert runtime.sim.core.positions() == []


async def test_an_entry_whose_stop_and_close_were_both_refused_says_it_is_open_and_unprotected(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The entry filled, the exchange refused the stop, then the close: the answer was 503
    exchange_unavailable "exchange unavailable: close of X failed: …" with no position — the code
    the README gives for "refused, nothing sent" — while the position sat open on the exchange with
    no stop. It is a 502 saying the position is open and NOT protected, with the position attached."""
    assert runtime.sim is not None
    runtime.sim.faults.reject_if = lambda req: req.reduce_only
    response = await client.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    assert response.status_code == 502, response.text
    error = response.json()
    assert error["error"] == "exchange_error"
    position = error["position"]
    assert position["status"] == "open" and position["stop_resting"] is False, position
    assert f"position {position['id']} is OPEN on the exchange and NOT protected" in error["message"]
    assert "close of" in error["message"]  # why: the close's refusal, as the engine said it
    assert len(runtime.sim.core.positions()) == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("reject_if", 502, "exchange_error"), ("unavailable_if", 503, "exchange_unavailable")],
)
async def test_a_close_the_exchange_refused_is_a_502_not_unavailable(
    client: httpx.AsyncClient, runtime: Runtime, fault: str, status: int, code: str
) -> None:
    """A close the exchange refused (it answered: a rejection) was answered 503
    exchange_unavailable, "exchange unavailable: …": a trader reads a connection problem and
    retries, while the exchange keeps refusing for a reason the message names. A refusal is a 502
    exchange_error; only a close that could not reach the exchange is a 503. Its stop still rests."""
    opened = await open_sol(client)
    assert runtime.sim is not None
    setattr(runtime.sim.faults, fault, lambda req: req.type is OrderType.MARKET and req.reduce_only)
    response = await client.post(f"/api/v1/positions/{opened['id']}/close", headers=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert ("rejected" in response.json()["message"]) is (status == 502)
    setattr(runtime.sim.faults, fault, None)
    held = (await client.get(f"/api/v1/positions/{opened['id']}", headers=AUTH)).json()
    assert (held["status"], held["stop_resting"]) == ("protected", True)


async def test_healthz_goes_red_while_a_position_is_naked_and_green_once_its_stop_rests(
    tmp_path: Path,
) -> None:
    """The exchange refused a position's stop and its close: the position sat open with no stop
    while /healthz answered 200 "ok" (the engine was ready), so an uptime monitor stayed green
    with money naked on the exchange. Beyond the protection window /healthz is 503 naming the
    position, /status says so too; once the exchange takes the stop again, both return to normal."""
    settings = make_settings(tmp_path, protection_window=0.2)
    async with running(settings, price_feed=False, notifier=RecordingNotifier()) as rt:
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            assert rt.sim is not None
            rt.sim.faults.reject_if = lambda req: req.reduce_only
            response = await http.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
            assert response.status_code == 502, response.text
            pid = response.json()["position"]["id"]

            async def red() -> bool:
                return (await http.get("/healthz")).status_code == 503

            await until(red, what="/healthz 503 for the naked position")
            health = (await http.get("/healthz")).json()
            assert health["state"] == "ready"
            assert any(pid in reason and "no resting stop" in reason for reason in health["reasons"])
            status = (await http.get("/api/v1/status", headers=AUTH)).json()
            assert status["unprotected_positions"] == 1
            assert any(pid in warning and "no resting stop" in warning for warning in status["warnings"])

            rt.sim.faults.reject_if = None

            async def green() -> bool:
                return (await http.get("/healthz")).status_code == 200

            await until(green, timeout=30, what="/healthz 200 once the stop rests")
            stops = [o for o in rt.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
            assert len(stops) == 1 and len(rt.sim.core.positions()) == 1
            status = (await http.get("/api/v1/status", headers=AUTH)).json()
            assert status["unprotected_positions"] == 0
            assert not any("no resting stop" in warning for warning in status["warnings"])


async def test_healthz_goes_red_while_the_exchange_is_unreachable_and_green_once_it_answers(
    tmp_path: Path,
) -> None:
    """Every call to the exchange failed (an outage, a revoked API key): reconciliation failed
    pass after pass and `exchange_unreachable` was alerted, yet /healthz answered 200 "ok" and
    /status showed no warning: warden could neither trade, see nor repair the account while its
    monitor stayed green. /healthz is 503 naming the exchange and /status warns while it lasts;
    the first pass that reads the exchange again brings both back."""
    settings = make_settings(tmp_path, reconcile_interval=0.05)
    async with running(settings, price_feed=False, notifier=RecordingNotifier()) as rt:
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            await open_sol(http)
            assert rt.sim is not None
            rt.sim.faults.fail_queries = True
            rt.sim.faults.unavailable_if = lambda _request: True

            async def red() -> bool:
                return (await http.get("/healthz")).status_code == 503

            await until(red, what="/healthz 503 while the exchange is unreachable")
            health = (await http.get("/healthz")).json()
            assert any("exchange unreachable" in reason for reason in health["reasons"]), health
            status = (await http.get("/api/v1/status", headers=AUTH)).json()
            assert any("exchange unreachable" in warning for warning in status["warnings"]), status
            assert "warden_alarms 1.0" in (await http.get("/metrics")).text

            rt.sim.faults.fail_queries = False
            rt.sim.faults.unavailable_if = None

            async def green() -> bool:
                return (await http.get("/healthz")).status_code == 200

            await until(green, what="/healthz 200 once the exchange answers")
            assert "warden_alarms 0.0" in (await http.get("/metrics")).text
            status = (await http.get("/api/v1/status", headers=AUTH)).json()
            assert not any("exchange unreachable" in warning for warning in status["warnings"])


async def test_healthz_goes_red_for_a_stop_cancelled_by_hand_the_exchange_will_not_replace(
    tmp_path: Path,
) -> None:
    """Someone cancels the resting stop on the exchange and the exchange refuses the new one (and
    the close): /healthz is 503 naming the position beyond the protection window, and 200 again
    once the exchange takes a stop. `warden_unprotected_positions` counts it meanwhile."""
    settings = make_settings(tmp_path, protection_window=0.2)
    async with running(settings, price_feed=False, notifier=RecordingNotifier()) as rt:
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            opened = await open_sol(http)
            assert rt.sim is not None
            assert (await http.get("/healthz")).status_code == 200
            rt.sim.faults.reject_if = lambda req: req.reduce_only
            (stop,) = [o for o in rt.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
            rt.sim.cancel_external(stop.client_order_id)

            async def red() -> bool:
                return (await http.get("/healthz")).status_code == 503

            await until(red, what="/healthz 503 for the stop cancelled by hand")
            health = (await http.get("/healthz")).json()
            assert any(opened["id"] in reason for reason in health["reasons"]), health
            metrics = (await http.get("/metrics")).text
            assert "warden_unprotected_positions 1.0" in metrics and "warden_alarms 1.0" in metrics

            rt.sim.faults.reject_if = None

            async def green() -> bool:
                return (await http.get("/healthz")).status_code == 200

            await until(green, timeout=30, what="/healthz 200 once a stop rests again")
            metrics = (await http.get("/metrics")).text
            assert "warden_unprotected_positions 0.0" in metrics and "warden_alarms 0.0" in metrics
            stops = [o for o in rt.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
            assert len(stops) == 1 or rt.sim.core.positions() == []
