"""TradingView alerts: its fields, stale signals, answering within its 3 s, source addresses,
closing and flipping from a signal."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import eventually
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Runtime, running
from warden.config import ConfigError
from warden.domain.alerts import AlertKind
from warden.domain.values import OrderSide, OrderType, Side, Symbol
from warden.entrypoints.api import create_app
from warden.ports import StoreUnavailable
from warden.service.commands import OpenPosition

from .conftest import AUTH, TOKEN, make_settings
from .test_api import SIGNAL, assert_nothing_happened, open_sol

SOL = Symbol("SOL/USDT:USDT")

# The README's alert message, as TradingView fills it in.
ALERT = """{
  "symbol": "{{ticker}}",
  "side": "{{strategy.order.action}}",
  "qty": "{{strategy.order.contracts}}",
  "signal_id": "{{ticker}}-{{strategy.order.id}}-{{timenow}}",
  "timestamp": "{{timenow}}",
  "market_position": "{{strategy.market_position}}",
  "secret": "<token>"
}"""


def alert(ticker: str, action: str, contracts: str, at: datetime, market_position: str = "long") -> bytes:
    now = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    filled = (
        ALERT.replace("{{ticker}}", ticker)
        .replace("{{strategy.order.action}}", action)
        .replace("{{strategy.order.contracts}}", contracts)
        .replace("{{strategy.order.id}}", "Long Entry")
        .replace("{{timenow}}", now)
        .replace("{{strategy.market_position}}", market_position)
        .replace("<token>", TOKEN)
    )
    return filled.encode()


def readme_alert() -> str:
    """The alert message block in the README (it must be the one tested here)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return text.split("<!-- tradingview-alert -->")[1].split("```json\n")[1].split("```")[0]


def test_readme_alert_is_the_tested_one() -> None:
    assert json.loads(readme_alert()) == json.loads(ALERT)


async def test_tradingview_alert_opens(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """The README's alert, filled in by TradingView (text/plain, exchange-prefixed .P ticker, buy/sell,
    contracts as a string, {{timenow}}), opens a protected position."""
    body = alert("BINANCE:SOLUSDT.P", "sell", "0.5", runtime.clock.now(), market_position="short")
    response = await client.post("/api/v1/signals", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 201, response.text
    p = response.json()
    assert (p["symbol"], p["side"], Decimal(p["size"]), p["status"]) == (
        SOL,
        "short",
        Decimal("0.5"),
        "protected",
    )
    assert p["origin"] == "tradingview"


async def test_stale_signal_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A signal older than max_signal_age (60 s) is a 422 naming timestamp; nothing is sent."""
    old = runtime.clock.now() - timedelta(seconds=61)
    response = await client.post("/api/v1/signals", content=alert("SOLUSDT.P", "buy", "1", old))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "timestamp"
    assert "s old; signals older than 60 s are refused" in response.json()["message"]
    future = runtime.clock.now() + timedelta(minutes=5)
    ahead = await client.post("/api/v1/signals", content=alert("SOLUSDT.P", "buy", "1", future))
    assert ahead.json()["field"] == "timestamp"
    bad = await client.post("/api/v1/signals", json={**SIGNAL, "timestamp": "yesterday"}, headers=AUTH)
    assert bad.json()["field"] == "timestamp"
    await assert_nothing_happened(runtime)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_timestamp_outside_the_calendar_in_utc_is_422(
    client: httpx.AsyncClient, runtime: Runtime, stamp: str
) -> None:
    """An ISO time whose offset puts it before year 1 or after 9999 in UTC is a 422 naming
    timestamp (converting it raised OverflowError: a 500); nothing is sent."""
    response = await client.post("/api/v1/signals", json={**SIGNAL, "timestamp": stamp}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "timestamp"
    await assert_nothing_happened(runtime)


async def test_a_refused_tradingview_signal_is_told_to_the_trader(tmp_path: Path) -> None:
    """The answer to a webhook goes to TradingView's server, not to the trader: an alert refused (queued past
    max_signal_age, a template with a misspelt field, a placeholder left unfilled) left the
    strategy in a position warden never opened, and the trader was told nothing (a risk limit's
    refusal alerted; bad input did not). An authenticated signal refused for its input is now the
    alert signal_refused, naming the field; one without the token tells nobody anything."""
    notifier = RecordingNotifier()
    async with running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt:
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            old = rt.clock.now() - timedelta(seconds=61)
            stale = await http.post("/api/v1/signals", content=alert("BINANCE:SOLUSDT.P", "buy", "1", old))
            assert stale.status_code == 422 and stale.json()["field"] == "timestamp"
            unfilled = {**SIGNAL, "side": "{{strategy.order.action}}", "secret": TOKEN}
            assert (await http.post("/api/v1/signals", json=unfilled)).status_code == 422
            anonymous = await http.post("/api/v1/signals", json={**SIGNAL, "sdie": "long"})
            assert anonymous.status_code == 401

            def told() -> list[str]:
                return [a.message for a in notifier.alerts if a.kind is AlertKind.SIGNAL_REFUSED]

            await eventually(lambda: len(told()) == 2, what="both refusals told")
            assert "timestamp" in told()[0] and "nothing was sent" in told()[0]
            assert "side" in told()[1] and "{{strategy.order.action}}" in told()[1]
            assert all(TOKEN not in message for message in told())
            assert rt.sim is not None and rt.sim.core.open_orders() == []


async def test_a_close_signal_refused_is_told_to_the_trader(tmp_path: Path) -> None:
    """A strategy's exit refused after it was taken (the entry still being resolved: 503) was
    answered to TradingView's server only, which does not send it again: the strategy went flat
    while the position stayed open, and the trader was told nothing. Now the alert
    signal_refused says so, naming the symbol and that what is open on it stays open."""
    notifier = RecordingNotifier()
    async with running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt:
        assert rt.sim is not None
        rt.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
        rt.sim.faults.fill_delay = 3600  # the entry works on, unfilled: its outcome is not known yet
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            opened = await http.post("/api/v1/signals?wait=false", json=SIGNAL, headers=AUTH)
            assert opened.status_code == 202, opened.text
            flat = {"symbol": "SOL", "action": "close", "secret": TOKEN}
            refused = await http.post("/api/v1/signals", json=flat)
            assert refused.status_code == 503, refused.text

            def told() -> list[str]:
                return [a.message for a in notifier.alerts if a.kind is AlertKind.SIGNAL_REFUSED]

            await eventually(lambda: len(told()) == 1, what="the refused close told")
            assert "close" in told()[0] and "SOL/USDT:USDT" in told()[0], told()
            assert "stays open" in told()[0] and "still being resolved" in told()[0], told()
            assert TOKEN not in told()[0]
            [position] = [p for p in rt.engine.ledger.positions.values() if p.is_active]
            assert position.id == opened.json()["id"]


async def test_epoch_seconds_timestamp(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A timestamp may be seconds since the epoch."""
    now = runtime.clock.now().timestamp()
    response = await client.post("/api/v1/signals", json={**SIGNAL, "timestamp": now}, headers=AUTH)
    assert response.status_code == 201, response.text


async def test_slow_exchange_answers_202_at_the_deadline(slow: tuple[Runtime, httpx.AsyncClient]) -> None:
    """Past signal_wait the answer is 202 with the position's id, and the position goes on to be
    protected without anyone waiting for it."""
    runtime, http = slow
    loop_time = asyncio.get_running_loop().time
    started = loop_time()
    response = await http.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
    elapsed = loop_time() - started
    assert response.status_code == 202, response.text
    assert elapsed < 3.0  # TradingView's limit; the open itself takes >= 0.9 s (mark, send, stop)
    pid = response.json()["id"]
    assert response.json()["status"] == "opening"

    def protected() -> bool:
        position = runtime.engine.ledger.positions.get(pid)
        return position is not None and position.status.value == "protected"

    await eventually(protected, timeout=10, what="the position to be protected after the 202")
    assert runtime.sim is not None
    stops = [o for o in runtime.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
    assert len(stops) == 1


async def test_wait_true_answers_with_the_outcome(slow: tuple[Runtime, httpx.AsyncClient]) -> None:
    """?wait=true (the CLI's and Telegram's) waits past signal_wait for the protected position."""
    _, http = slow
    response = await http.post("/api/v1/signals", params={"wait": "true"}, json=SIGNAL, headers=AUTH)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "protected"
    assert response.json()["stop_resting"] is True


async def test_wait_false_answers_right_after_the_commit(slow: tuple[Runtime, httpx.AsyncClient]) -> None:
    """?wait=false answers 202 once the position is committed, before the entry is even sent back."""
    runtime, http = slow
    response = await http.post("/api/v1/signals", params={"wait": "false"}, json=SIGNAL, headers=AUTH)
    assert response.status_code == 202, response.text
    stored = await runtime.store.get_position(response.json()["id"])
    assert stored is not None  # committed before the answer


async def test_wait_false_still_refuses_bad_input(slow: tuple[Runtime, httpx.AsyncClient]) -> None:
    """Refusals found before the commit are still answered as such, not as 202."""
    runtime, http = slow
    response = await http.post(
        "/api/v1/signals", params={"wait": "false"}, json={**SIGNAL, "usd": "1"}, headers=AUTH
    )
    assert response.status_code == 422
    await assert_nothing_happened(runtime)


def allowlisted(tmp_path: Path, peer: str, **settings: Any) -> Any:
    class Rig:
        async def __aenter__(self) -> httpx.AsyncClient:
            self._running = running(make_settings(tmp_path, **settings), price_feed=False)
            rt = await self._running.__aenter__()
            transport = httpx.ASGITransport(app=create_app(lambda: rt), client=(peer, 40000))
            self._http = httpx.AsyncClient(transport=transport, base_url="http://w")
            return self._http

        async def __aexit__(self, *exc: Any) -> None:
            await self._http.aclose()
            await self._running.__aexit__(None, None, None)

    return Rig()


@pytest.mark.parametrize(
    ("peer", "forwarded", "allowed"),
    [
        ("52.89.214.238", None, True),  # TradingView, direct
        ("8.8.8.8", None, False),
        ("127.0.0.1", "52.89.214.238", True),  # through the trusted proxy
        ("127.0.0.1", "8.8.8.8", False),
        ("127.0.0.1", "52.89.214.238, 8.8.8.8", False),  # a spoofed first hop does not help
        ("127.0.0.1", "8.8.8.8, 52.89.214.238", True),  # the proxy appended the real caller
        ("127.0.0.1", None, False),  # the proxy itself is not a webhook sender
        ("8.8.8.8", "52.89.214.238", False),  # an untrusted peer's header is ignored
        ("127.0.0.1", "not-an-address", False),
        # warden on host = "::" (dual stack): an IPv4 peer is seen as ::ffff:a.b.c.d
        ("::ffff:52.89.214.238", None, True),
        ("::ffff:127.0.0.1", "52.89.214.238", True),
        ("::ffff:127.0.0.1", "8.8.8.8", False),
        ("::ffff:8.8.8.8", None, False),
        ("127.0.0.1", "::ffff:52.89.214.238", True),
    ],
)
async def test_webhook_allowlist(tmp_path: Path, peer: str, forwarded: str | None, allowed: bool) -> None:
    """webhook_allow_ips admits only the listed senders; X-Forwarded-For counts only from trusted_proxies.
    An IPv4 address written IPv6-mapped (how a dual-stack listener, host = "::", sees IPv4 peers) is
    that IPv4 address: it was refused, listed or not (found by attacking webhook_allow_ips)."""
    rig = allowlisted(
        tmp_path, peer, webhook_allow_ips="52.89.214.238,34.212.75.30", trusted_proxies="127.0.0.1"
    )
    async with rig as http:
        headers = {**AUTH, **({"X-Forwarded-For": forwarded} if forwarded else {})}
        response = await http.post("/api/v1/signals", json=SIGNAL, headers=headers)
        assert response.status_code == (201 if allowed else 403), response.text
        if not allowed:
            assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize("trusted", ["0.0.0.0/0", "::/0", "52.0.0.0/8"])
async def test_a_trusted_proxy_range_holding_the_allowed_senders_is_refused(
    tmp_path: Path, trusted: str
) -> None:
    """`trusted_proxies = ["0.0.0.0/0"]` (`--forwarded-allow-ips='*'`, as proxy guides write it):
    every caller was believed as a proxy, so anyone could write TradingView's address into
    X-Forwarded-For and webhook_allow_ips let the signal in (a 201 from 8.8.8.8). A trusted range
    that holds an allowed public sender, or the whole address space, is refused naming
    trusted_proxies; only the proxies in front of warden belong there."""
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, webhook_allow_ips="52.89.214.238,34.212.75.30", trusted_proxies=trusted)
    assert caught.value.field == "trusted_proxies" and trusted in caught.value.message
    make_settings(tmp_path, trusted_proxies=trusted)  # no allowlist: the header decides nothing
    make_settings(tmp_path, webhook_allow_ips="10.0.0.0/8", trusted_proxies="10.0.0.0/8")  # inside


async def test_close_signal_closes_the_symbol(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """{"action": "close"} closes the symbol's position; the exchange is left flat."""
    opened = await open_sol(client)
    response = await client.post(
        "/api/v1/signals", json={"symbol": "SOLUSDT.P", "action": "close"}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert [(p["id"], p["status"]) for p in response.json()] == [(opened["id"], "closed")]
    assert runtime.sim is not None
    assert runtime.sim.core.positions() == []
    again = await client.post("/api/v1/signals", json={"symbol": "SOL", "action": "close"}, headers=AUTH)
    assert again.status_code == 404
    assert again.json()["field"] == "symbol"


async def test_flat_market_position_closes(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """TradingView's market_position "flat" (a strategy's exit) closes the symbol's position."""
    await open_sol(client)
    body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", runtime.clock.now(), market_position="flat")
    response = await client.post("/api/v1/signals", content=body)
    assert response.status_code == 200, response.text
    assert response.json()[0]["status"] == "closed"


@pytest.mark.parametrize("side", ["short", None])
async def test_flip(client: httpx.AsyncClient, runtime: Runtime, side: str | None) -> None:
    """ "flip" closes the open long and opens a protected short (the side defaults to the other one)."""
    long = await open_sol(client)
    body: dict[str, Any] = {"symbol": "SOL", "action": "flip", "usd": "100"}
    if side:
        body["side"] = side
    response = await client.post("/api/v1/signals", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    short = response.json()
    assert (short["side"], short["status"]) == ("short", "protected")
    old = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert old["status"] == "closed"
    assert runtime.sim is not None
    [held] = runtime.sim.core.positions()
    assert held.qty == Decimal(short["size"])


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"side": "short", "usd": "1"}, "usd"),
        ({"side": "short", "usd": "100", "stop_price": "100"}, "stop_price"),
        ({"usd": "100", "tp1_price": "200"}, "tp1_price"),
        ({"side": "short", "usd": "20000"}, None),  # max_position_usd
    ],
)
async def test_a_flip_whose_open_is_refused_closes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, extra: dict[str, str], field: str | None
) -> None:
    """A flip whose new side would be refused (too small, a stop or take-profit on the wrong side,
    over a limit) is refused before anything is closed: the long stays open and protected and
    no order goes out (the long used to be closed first, then the open refused: 422 "nothing was
    sent" over a position closed at market)."""
    long = await open_sol(client)
    assert runtime.sim is not None
    before = [(o.client_order_id, o.status) for o in runtime.sim.core.orders()]
    response = await client.post(
        "/api/v1/signals", json={"symbol": "SOL", "action": "flip", **extra}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json().get("field") == field
    still = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert still["status"] == "protected"
    assert [(o.client_order_id, o.status) for o in runtime.sim.core.orders()] == before
    [held] = runtime.sim.core.positions()
    assert (held.side, held.qty) == (Side.LONG, Decimal(long["size"]))


@pytest.mark.parametrize(
    "extra",
    [
        {"action": "flip", "market_position": "flat", "usd": "100"},
        {"action": "flip", "market_position": "flat", "side": "short", "usd": "100"},
        {"action": "close", "market_position": "long"},
        {"action": "close", "market_position": "short"},
        {"action": "open", "market_position": "flat", "side": "short", "usd": "100"},
        {"action": "flip", "market_position": "long", "side": "short", "usd": "100"},
        {"action": "flip", "market_position": "long", "side": "sell", "usd": "100"},
    ],
    ids=["flip-flat", "flip-flat-side", "close-long", "close-short", "open-flat", "flip-long", "flip-sell"],
)
async def test_a_signal_that_contradicts_itself_is_422_and_nothing_is_sent(
    client: httpx.AsyncClient, runtime: Runtime, extra: dict[str, str]
) -> None:
    """`"action": "flip"` with `"market_position": "flat"` quietly just closed; an explicit action
    and a market_position that say opposite things are refused naming both (the field is
    market_position), and the long stays open and protected with nothing sent."""
    long = await open_sol(client)
    assert runtime.sim is not None
    before = [(o.client_order_id, o.status) for o in runtime.sim.core.orders()]
    response = await client.post("/api/v1/signals", json={"symbol": "SOL", **extra}, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("validation_error", "market_position")
    assert "action" in error["message"]
    still = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert still["status"] == "protected"
    assert [(o.client_order_id, o.status) for o in runtime.sim.core.orders()] == before
    [held] = runtime.sim.core.positions()
    assert (held.side, held.qty) == (Side.LONG, Decimal(long["size"]))


@pytest.mark.parametrize(
    ("field", "value"),
    [("stop_price", "140"), ("tp1_price", "160"), ("tp2_price", "170"), ("usd", "50"), ("trail_pct", "0.01")],
)
async def test_a_close_carrying_an_opening_level_is_422_and_closes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, field: str, value: str
) -> None:
    """`{"action": "close", "stop_price": "140"}` (close when it falls to 140?), `"usd": "50"`
    (close 50 USD of it?): an explicit close took no notice of the field and closed the whole
    position at market at once, answering 200 — something other than what was asked. These
    fields only describe an entry: a close naming one is refused naming it, and nothing is sent;
    the position stays open and protected."""
    long = await open_sol(client)
    assert runtime.sim is not None
    before = [(o.client_order_id, o.status) for o in runtime.sim.core.orders()]
    body = {"symbol": "SOL", "action": "close", field: value}
    response = await client.post("/api/v1/signals", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("validation_error", field)
    assert "nothing was sent" in error["message"]
    still = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert still["status"] == "protected"
    assert [(o.client_order_id, o.status) for o in runtime.sim.core.orders()] == before
    [held] = runtime.sim.core.positions()
    assert (held.side, held.qty) == (Side.LONG, Decimal(long["size"]))


async def test_a_strategys_exit_from_a_template_with_levels_still_closes(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """One alert message serves all of a strategy's orders, so its exit (market_position flat,
    no action) carries whatever the template adds for entries: it closes all the same."""
    await open_sol(client)
    body = {"symbol": "SOL", "side": "sell", "qty": "0.66", "market_position": "flat", "stop_price": "140"}
    response = await client.post("/api/v1/signals", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()[0]["status"] == "closed"
    assert runtime.sim is not None and runtime.sim.core.positions() == []


async def test_a_flip_sent_again_with_its_signal_id_leaves_the_new_position_open(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A flip alert delivered twice (same signal_id): the first closes the long and opens the
    short; the second is a 409 naming signal_id and closes nothing (it closed the short it had
    just opened, then refused the open: the trader was left flat)."""
    await open_sol(client)
    flip = {"symbol": "SOL", "action": "flip", "usd": "100", "signal_id": "rev-1"}
    first = await client.post("/api/v1/signals", json=flip, headers=AUTH)
    assert first.status_code == 201, first.text
    again = await client.post("/api/v1/signals", json=flip, headers=AUTH)
    assert again.status_code == 409, again.text
    assert (again.json()["field"], again.json()["position_id"]) == ("signal_id", first.json()["id"])
    short = (await client.get(f"/api/v1/positions/{first.json()['id']}", headers=AUTH)).json()
    assert (short["side"], short["status"]) == ("short", "protected")
    assert runtime.sim is not None
    [held] = runtime.sim.core.positions()
    assert (held.side, held.qty) == (Side.SHORT, Decimal(short["size"]))


async def test_a_close_sent_again_with_its_signal_id_leaves_the_newer_position_open(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A close alert delivered twice (same signal_id) with an entry between: the first closes the
    long; the second is a 409 naming signal_id and the position the first closed, and the long
    opened since stays open and protected (it used to be closed by the resent signal)."""
    first_long = await open_sol(client)
    close = {"symbol": "SOL", "action": "close", "signal_id": "exit-1"}
    first = await client.post("/api/v1/signals", json=close, headers=AUTH)
    assert first.status_code == 200, first.text
    assert [(p["id"], p["status"]) for p in first.json()] == [(first_long["id"], "closed")]
    newer = await open_sol(client)
    again = await client.post("/api/v1/signals", json=close, headers=AUTH)
    assert again.status_code == 409, again.text
    assert (again.json()["field"], again.json()["position_id"]) == ("signal_id", first_long["id"])
    held = (await client.get(f"/api/v1/positions/{newer['id']}", headers=AUTH)).json()
    assert held["status"] == "protected"
    assert runtime.sim is not None
    [on_exchange] = runtime.sim.core.positions()
    assert on_exchange.qty == Decimal(newer["size"])
    other = await client.post(
        "/api/v1/signals", json={"symbol": "SOL", "action": "close", "signal_id": "exit-2"}, headers=AUTH
    )
    assert [(p["id"], p["status"]) for p in other.json()] == [(newer["id"], "closed")]


async def test_a_close_signal_that_found_nothing_open_closes_nothing_when_resent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A close signal that arrived while flat (404) and is resent after an entry closes nothing:
    it meant what was open when it came (409 naming signal_id); the entry stays protected."""
    close = {"symbol": "SOL", "action": "close", "signal_id": "exit-early"}
    first = await client.post("/api/v1/signals", json=close, headers=AUTH)
    assert first.status_code == 404, first.text
    opened = await open_sol(client)
    again = await client.post("/api/v1/signals", json=close, headers=AUTH)
    assert again.status_code == 409, again.text
    assert again.json()["field"] == "signal_id"
    assert "found nothing open" in again.json()["message"]
    held = (await client.get(f"/api/v1/positions/{opened['id']}", headers=AUTH)).json()
    assert held["status"] == "protected"


async def test_a_close_signal_is_bound_across_a_restart(tmp_path: Path) -> None:
    """The binding is in the database: after a restart the resent close still leaves the newer
    position open."""
    settings = make_settings(tmp_path)
    close = {"symbol": "SOL", "action": "close", "signal_id": "exit-r"}
    async with (
        running(settings, price_feed=False, notifier=RecordingNotifier()) as first_run,
        _client(first_run) as http,
    ):
        await open_sol(http)
        assert (await http.post("/api/v1/signals", json=close, headers=AUTH)).status_code == 200
    async with (
        running(settings, price_feed=False, notifier=RecordingNotifier()) as second_run,
        _client(second_run) as http,
    ):
        newer = await open_sol(http)
        again = await http.post("/api/v1/signals", json=close, headers=AUTH)
        assert again.status_code == 409, again.text
        held = (await http.get(f"/api/v1/positions/{newer['id']}", headers=AUTH)).json()
        assert held["status"] == "protected"


async def test_one_strategy_exiting_two_symbols_at_once_closes_both(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """One strategy run on SOL and on BTC exits both on the same bar with alerts whose signal_id
    has no ticker (the README's template had none; a relay's may not): both carry the same id.
    Each closes its own symbol's position (BTC's exit was a 409 naming SOL's position, and the
    BTC position stayed open with nothing left to close it); each resent is a 409."""
    sol = await open_sol(client)
    btc = await open_sol(client, symbol="BTC", usd="200", signal_id="btc-entry")
    for symbol, opened in (("SOLUSDT.P", sol), ("BTCUSDT.P", btc)):
        close = {"symbol": symbol, "market_position": "flat", "signal_id": "Long Exit-2026-12-02T10:00:00Z"}
        response = await client.post("/api/v1/signals", json=close, headers=AUTH)
        assert response.status_code == 200, response.text
        assert [(p["id"], p["status"]) for p in response.json()] == [(opened["id"], "closed")]
        again = await client.post("/api/v1/signals", json=close, headers=AUTH)
        assert (again.status_code, again.json()["position_id"]) == (409, opened["id"]), again.text
    assert runtime.sim is not None
    assert runtime.sim.core.positions() == []


async def test_one_strategy_entering_two_symbols_on_one_bar_opens_both(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The README's alert on one strategy run on SOL and on BTC: both enter on the same bar. The
    template's signal_id was "{{strategy.order.id}}-{{timenow}}", the same for both, so BTC's
    entry was a 409 (the signal id "already opened" SOL's position) and never traded. The
    template's id now starts with the ticker: each opens its own, and each resent is a 409."""
    at = runtime.clock.now()
    opened = {}
    for ticker in ("BINANCE:SOLUSDT.P", "BINANCE:BTCUSDT.P"):
        body = alert(ticker, "buy", "0.5" if "SOL" in ticker else "0.01", at)
        response = await client.post("/api/v1/signals", content=body)
        assert response.status_code == 201, response.text
        opened[ticker] = response.json()["id"]
        again = await client.post("/api/v1/signals", content=body)
        assert (again.status_code, again.json()["position_id"]) == (409, opened[ticker]), again.text
    assert len(runtime.sim.core.positions()) == 2  # type: ignore[union-attr]


def _client(rt: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(lambda: rt)), base_url="http://w")


async def test_close_by_symbol_route(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """POST /positions/close {"symbol"} closes by symbol; an unknown symbol is a 422, none open a 404."""
    opened = await open_sol(client)
    response = await client.post("/api/v1/positions/close", json={"symbol": "sol"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert [p["id"] for p in response.json()] == [opened["id"]]
    unknown = await client.post("/api/v1/positions/close", json={"symbol": "DOGE"}, headers=AUTH)
    assert (unknown.status_code, unknown.json()["field"]) == (422, "symbol")
    none = await client.post("/api/v1/positions/close", json={"symbol": "SOL"}, headers=AUTH)
    assert (none.status_code, none.json()["field"]) == (404, "symbol")
    await eventually(lambda: runtime.sim is not None and runtime.sim.core.open_orders() == [])


async def test_strategy_reversal_flips(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A strategy that reverses (sell, market_position short) while warden holds its long flips it."""
    long = await open_sol(client)
    body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", runtime.clock.now(), market_position="short")
    response = await client.post("/api/v1/signals", content=body)
    assert response.status_code == 201, response.text
    assert (response.json()["side"], response.json()["status"]) == ("short", "protected")
    old = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert (old["status"], old["exit_reason"]) == ("closed", "flip")


async def test_partial_exit_of_a_strategy_does_not_flip(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """sell while the strategy stays long (a partial exit) is no reversal: 409, nothing closed."""
    long = await open_sol(client)
    body = alert("BINANCE:SOLUSDT.P", "sell", "0.3", runtime.clock.now(), market_position="long")
    response = await client.post("/api/v1/signals", content=body)
    assert response.status_code == 409, response.text
    still = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert still["status"] == "protected"


async def test_a_reversal_fired_twice_at_once_does_not_close_the_position_it_opened(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reversal alerts (sell, market_position short) race while warden holds the long: both
    see the long and decide to flip. The first closes the long and opens the short; the second
    then closed whatever the symbol held — the short just opened, closed at market as "flip" —
    and opened another. A flip closes only the side it reverses: the second finds the short it
    wants already there and answers 409 naming the symbol; the first short stays open."""
    long = await open_sol(client)
    engine = runtime.engine
    check_open = engine.check_open
    second_checking, first_done = asyncio.Event(), asyncio.Event()

    async def check_in_turn(cmd: Any, replacing: str | None = None) -> None:
        if cmd.signal_id == "rev-b":  # its price read is slow: the first flip finishes meanwhile
            second_checking.set()
            await first_done.wait()
        else:  # both have seen the long before either closes it
            await second_checking.wait()
        await check_open(cmd, replacing)

    monkeypatch.setattr(engine, "check_open", check_in_turn)
    reversal = {"symbol": "SOL", "side": "sell", "market_position": "short", "usd": "100"}

    async def first() -> httpx.Response:
        try:
            return await client.post("/api/v1/signals", json={**reversal, "signal_id": "rev-a"}, headers=AUTH)
        finally:
            first_done.set()

    a, b = await asyncio.gather(
        first(), client.post("/api/v1/signals", json={**reversal, "signal_id": "rev-b"}, headers=AUTH)
    )
    assert a.status_code == 201, a.text
    assert b.status_code == 409, b.text
    assert b.json()["field"] == "symbol"
    short = (await client.get(f"/api/v1/positions/{a.json()['id']}", headers=AUTH)).json()
    assert (short["side"], short["status"]) == ("short", "protected")
    old = (await client.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
    assert (old["status"], old["exit_reason"]) == ("closed", "flip")
    open_now = (await client.get("/api/v1/positions", headers=AUTH)).json()
    assert [p["id"] for p in open_now] == [a.json()["id"]]
    assert runtime.sim is not None
    [held] = runtime.sim.core.positions()
    assert (held.side, held.qty) == (Side.SHORT, Decimal(short["size"]))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/positions/close", {"symbol": "SOL"}),
        ("/api/v1/signals", {"symbol": "SOL", "action": "close"}),
    ],
    ids=["close-route", "close-signal"],
)
async def test_a_symbol_close_refused_for_an_opening_entry_closes_nothing(
    tmp_path: Path, path: str, body: dict[str, str]
) -> None:
    """Stacking on, SOL holds a protected long and a second long whose entry the exchange has
    acknowledged but not filled. Closing the symbol closed the first, then met the second (its
    entry still being resolved) and answered 503 "...; nothing was sent" — over a position it had
    just closed at market. The refusal now comes before anything is closed, so it is true: both
    stay as they were."""
    async with running(
        make_settings(tmp_path, allow_stacking=True), price_feed=False, notifier=RecordingNotifier()
    ) as runtime:
        engine, sim = runtime.engine, runtime.sim
        assert sim is not None
        first = await engine.open_position(OpenPosition(SOL, Side.LONG, Decimal(100), position_id="a" * 12))
        assert first.status.value == "protected"
        sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET and not req.reduce_only
        sim.faults.fill_delay = 3600.0  # acknowledged, not filled: the entry is being resolved
        second = asyncio.create_task(
            engine.open_position(OpenPosition(SOL, Side.LONG, Decimal(100), position_id="b" * 12))
        )
        await eventually(lambda: engine.knows("b" * 12), what="the second entry committed")
        before = [(o.client_order_id, o.status) for o in sim.core.orders()]
        app = create_app(lambda: runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            response = await http.post(path, json=body, headers=AUTH)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "trading_refused"
        assert engine.ledger.positions[first.id].status.value == "protected"
        assert [(o.client_order_id, o.status) for o in sim.core.orders()] == before
        second.cancel()


@pytest.mark.parametrize(
    ("action", "market_position"), [("sell", "long"), ("buy", "short")], ids=["long", "short"]
)
async def test_a_partial_exit_of_a_strategy_opens_nothing_when_warden_is_flat(
    client: httpx.AsyncClient, runtime: Runtime, action: str, market_position: str
) -> None:
    """A strategy that reduces its long sends side sell with market_position long (a partial exit).
    Holding the long, warden answers 409 and closes nothing; holding nothing (its stop already took
    the long out), it opened a SHORT — a position against the strategy, which is still long. It is
    a 422 naming market_position, and nothing is sent."""
    body = alert("BINANCE:SOLUSDT.P", action, "0.3", runtime.clock.now(), market_position=market_position)
    response = await client.post("/api/v1/signals", content=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"]) == ("validation_error", "market_position")
    await assert_nothing_happened(runtime)


def _refusals(notifier: RecordingNotifier) -> list[str]:
    return [a.message for a in notifier.alerts if a.kind is AlertKind.SIGNAL_REFUSED]


async def test_a_reversal_whose_new_side_the_exchange_refuses_says_the_old_one_was_closed(
    tmp_path: Path,
) -> None:
    """A reversal (sell, market_position short) while warden holds the long: the long is closed,
    then the exchange refuses the short's entry. The answer (to TradingView's server) said only
    "the entry was not filled; nothing is open", and the trader was told nothing: the strategy
    holds a short, the account is flat, and no alert said the long had been closed. The answer
    now says the flip closed the long, and the alert signal_refused tells the trader the symbol is
    flat while the strategy reversed."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        long = await open_sol(http)
        rt.sim.faults.reject_if = lambda req: req.type is OrderType.MARKET and not req.reduce_only
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 502, response.text
        message = response.json()["message"]
        assert long["id"] in message and "closed" in message, message
        old = (await http.get(f"/api/v1/positions/{long['id']}", headers=AUTH)).json()
        assert (old["status"], old["exit_reason"]) == ("closed", "flip")
        assert rt.sim.core.positions() == []
        await eventually(lambda: rt.sim is not None and rt.sim.core.open_orders() == [], what="no order left")
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the half-done flip told")
        told = _refusals(notifier)[0]
        assert "SOL/USDT:USDT" in told and long["id"] in told and "flat" in told, told
        assert TOKEN not in told


async def test_a_reversal_whose_open_meets_the_database_down_does_not_say_nothing_was_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reversal whose close went through, then the database failed before the short's entry
    was written: the answer was 503 "database unavailable, nothing was sent" — over a long just
    closed at market — and nobody was told. It now says the long was closed and nothing else was
    sent, and the trader gets signal_refused."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        long = await open_sol(http)
        engine = rt.engine
        close_position = engine.close_position

        async def close_then_the_database_fails(cmd: Any) -> Any:
            closed = await close_position(cmd)

            async def down(*args: Any, **kwargs: Any) -> Any:
                raise StoreUnavailable("the database is gone")

            monkeypatch.setattr(rt.store, "commit", down)
            monkeypatch.setattr(rt.store, "find_by_signal", down)
            return closed

        monkeypatch.setattr(engine, "close_position", close_then_the_database_fails)
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 503, response.text
        message = response.json()["message"]
        assert long["id"] in message and "closed" in message, message
        assert rt.sim.core.positions() == []
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the half-done flip told")
        told = _refusals(notifier)[0]
        assert "SOL/USDT:USDT" in told and long["id"] in told and "flat" in told, told


async def test_a_slow_reversal_delivered_twice_reverses_once(tmp_path: Path) -> None:
    """A reversal alert delivered twice while the first is still closing the long on a slow
    exchange (0.3 s a call): one short is opened, the other delivery is a 409, and the exchange
    holds exactly that short, with one stop."""
    notifier = RecordingNotifier()
    settings = make_settings(tmp_path, signal_wait=0.1)
    async with running(settings, price_feed=False, notifier=notifier) as rt, _client(rt) as http:
        assert rt.sim is not None
        long = await open_sol(http)
        rt.sim.faults.rest_latency = 0.3
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        first = asyncio.create_task(http.post("/api/v1/signals", content=body))
        await eventually(
            lambda: rt.engine.ledger.positions[long["id"]].status.value == "closing", what="the close sent"
        )
        again = await http.post("/api/v1/signals", content=body)
        a = await first
        assert sorted([a.status_code, again.status_code])[0] in (201, 202), (a.text, again.text)
        assert 409 in (a.status_code, again.status_code), (a.text, again.text)

        def one_short() -> bool:
            assert rt.sim is not None
            held = rt.sim.core.positions()
            stops = [o for o in rt.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
            return len(held) == 1 and held[0].side is Side.SHORT and len(stops) == 1

        await eventually(one_short, timeout=10, what="exactly one short, with one stop")
        active = [p for p in rt.engine.ledger.positions.values() if p.is_active]
        assert [p.side for p in active] == [Side.SHORT]


async def test_a_reversal_before_the_entry_it_reverses_was_answered_is_told(tmp_path: Path) -> None:
    """A reversal (sell, market_position short) arriving while the long's entry is still being
    resolved (acknowledged, not filled): the long cannot be closed yet, so nothing is sent and the
    short is not opened (503). The strategy is short; TradingView does not send the alert again,
    and the trader was told nothing (an exit refused so is told). The alert signal_refused now
    says the reversal was not made and what is open stays open."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        rt.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
        rt.sim.faults.fill_delay = 3600  # the entry works on, unfilled: its outcome is not known yet
        opened = await http.post("/api/v1/signals?wait=false", json=SIGNAL, headers=AUTH)
        assert opened.status_code == 202, opened.text
        before = [(o.client_order_id, o.status) for o in rt.sim.core.orders()]
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        refused = await http.post("/api/v1/signals", content=body)
        assert refused.status_code == 503, refused.text
        assert [(o.client_order_id, o.status) for o in rt.sim.core.orders()] == before
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the refused reversal told")
        told = _refusals(notifier)[0]
        assert "SOL/USDT:USDT" in told and "short" in told and "stays open" in told, told
        assert TOKEN not in told
        [position] = [p for p in rt.engine.ledger.positions.values() if p.is_active]
        assert (position.id, position.side) == (opened.json()["id"], Side.LONG)


async def test_a_reversal_whose_close_the_exchange_refuses_opens_nothing_and_is_told(tmp_path: Path) -> None:
    """A reversal whose close of the long the exchange refuses: the short is not opened (never
    both sides, never a short beside the long), the long keeps its stop, the answer is the
    exchange's error, and the trader is told the reversal was not made (signal_refused) beside
    close_failed."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        long = await open_sol(http)
        rt.sim.faults.reject_if = lambda req: req.type is OrderType.MARKET and req.reduce_only
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 502, response.text
        [held] = rt.sim.core.positions()
        assert (held.side, held.qty) == (Side.LONG, Decimal(long["size"]))
        stops = [o for o in rt.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
        assert [(s.side, s.qty) for s in stops] == [(OrderSide.SELL, held.qty)]
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the refused reversal told")
        told = _refusals(notifier)[0]
        assert "short was not opened" in told and "stays open" in told, told
        active = [p for p in rt.engine.ledger.positions.values() if p.is_active]
        assert [p.id for p in active] == [long["id"]]


async def test_a_failing_reversal_on_one_symbol_leaves_the_other_symbols_entry_alone(tmp_path: Path) -> None:
    """A reversal on SOL whose short the exchange refuses, at once with an entry on BTC: BTC's
    entry is protected (201), SOL's answer and alert name SOL only, and the one alert says
    nothing of BTC."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        await open_sol(http)
        rt.sim.faults.reject_if = lambda req: (
            req.symbol == SOL and req.type is OrderType.MARKET and not req.reduce_only
        )
        at = rt.clock.now()
        sol = alert("BINANCE:SOLUSDT.P", "sell", "0.66", at, market_position="short")
        btc = alert("BINANCE:BTCUSDT.P", "buy", "0.01", at, market_position="long")
        a, b = await asyncio.gather(
            http.post("/api/v1/signals", content=sol), http.post("/api/v1/signals", content=btc)
        )
        assert a.status_code == 502, a.text
        assert (b.status_code, b.json()["status"]) == (201, "protected"), b.text
        [held] = rt.sim.core.positions()
        assert held.symbol != SOL and held.side is Side.LONG
        await eventually(lambda: len(_refusals(notifier)) == 1, what="SOL's half-done flip told")
        assert "BTC" not in _refusals(notifier)[0]


async def test_a_reversal_answered_202_whose_short_then_fails_is_told(tmp_path: Path) -> None:
    """A reversal on a slow exchange: the long is closed, the short's entry is past signal_wait,
    so the answer is 202 (it is resolving), then the exchange refuses the entry. The account is
    flat, the strategy short: the trader must be told."""
    notifier = RecordingNotifier()
    settings = make_settings(tmp_path, signal_wait=0.1)
    async with running(settings, price_feed=False, notifier=notifier) as rt, _client(rt) as http:
        assert rt.sim is not None
        long = await open_sol(http)
        rt.sim.faults.rest_latency = 0.3
        rt.sim.faults.reject_if = lambda req: req.type is OrderType.MARKET and not req.reduce_only
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 202, response.text
        pid = response.json()["id"]
        await eventually(
            lambda: rt.engine.ledger.positions[pid].status.value == "failed", timeout=10, what="entry failed"
        )
        assert rt.sim.core.positions() == []
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the half-done flip told")
        told = _refusals(notifier)[0]
        assert long["id"] in told and "flat" in told, told
