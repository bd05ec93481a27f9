"""The dashboard: login and fragments over HTTP, and the live page in headless Chromium.

The browser test drives Debian's chromium (/usr/bin/chromium, or WARDEN_CHROMIUM) through
Playwright with its executable_path: no browser is ever downloaded. Without a browser the
test is skipped with the reason shown — except under CI=true, where that is a failure
(.ci/run installs chromium when it is missing). Screenshots go to test-artifacts/ (or
WARDEN_ARTIFACTS).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.store.builders import position
from warden.bootstrap import Runtime
from warden.domain.position import PositionStatus
from warden.domain.reports import OrderReport, PositionReport
from warden.domain.values import OrderSide, OrderType, Symbol
from warden.entrypoints.web import CHART_LOGO_STYLE, HERE
from warden.ports import StoreUnavailable, Transition

from .conftest import AUTH, TOKEN
from .live import LiveWarden
from .test_api import SIGNAL, SOL, open_sol

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("WARDEN_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000
OWN_PAGE = {"Origin": "http://warden"}  # what a browser sends from the dashboard (the client's base_url)


# -- over HTTP ---------------------------------------------------------------------------------


async def test_login_page_without_a_session(client: httpx.AsyncClient) -> None:
    """/ without a session shows the token form; fragments answer 401."""
    page = await client.get("/")
    assert page.status_code == 200
    assert 'name="token"' in page.text
    assert (await client.get("/ui/positions")).status_code == 401
    assert page.headers["x-frame-options"] == "DENY"  # never in another page's frame (see below)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def policy(response: httpx.Response) -> dict[str, str]:
    """The Content-Security-Policy of `response`, directive by directive."""
    directives = (
        part.strip().split(None, 1) for part in response.headers["content-security-policy"].split(";")
    )
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives if d}


async def test_every_answer_is_hardened_and_kept_by_no_cache(client: httpx.AsyncClient) -> None:
    """The login page, the dashboard, its fragments and the API's JSON (errors too) say nosniff,
    send no Referer to another site (the token, in `/?token=...`, never leaks there; not
    no-referrer, under which the browser sends the page's own form posts with `Origin: null`),
    carry a real CSP (scripts and everything else from warden itself only: no inline script, no
    eval, no CDN; no frame, no plugin, no <base>, forms only to warden), and are not kept by any
    cache (positions, tokens): Cache-Control no-store. The vendored static files may be cached."""
    login = await client.get("/")
    signed_in = await client.get("/", params={"token": TOKEN})
    await open_sol(client)
    answers = {
        "login page": login,
        "sign-in redirect": signed_in,
        "dashboard": await client.get("/"),
        "fragment": await client.get("/ui/positions"),
        "api json": await client.get("/api/v1/positions"),
        "api error": await client.get("/api/v1/positions/nope"),
        "unauthenticated api": await client.get(
            "/api/v1/positions", headers={"Authorization": "Bearer wrong"}
        ),
        # refused before the app reads it (BodyLimit): hardened all the same
        "body too large": await client.post("/api/v1/signal", content=b"x" * (1 << 20)),
    }
    assert answers["body too large"].status_code == 413
    for what, response in answers.items():
        headers = response.headers
        assert headers.get("x-content-type-options") == "nosniff", what
        assert headers.get("referrer-policy") == "same-origin", what  # no-referrer: Origin null
        assert headers.get("x-frame-options") == "DENY", what
        assert "no-store" in headers.get("cache-control", ""), what
        csp = policy(response)
        assert csp.get("default-src") == "'self'", (what, csp)
        assert csp.get("script-src") == "'self'", (what, csp)  # no 'unsafe-inline', no 'unsafe-eval'
        assert "unsafe" not in headers["content-security-policy"], (what, csp)
        assert csp.get("connect-src") == "'self'", (what, csp)
        assert csp.get("img-src") == "'self'", (what, csp)
        assert csp.get("base-uri") == "'none'", (what, csp)
        assert csp.get("form-action") == "'self'", (what, csp)
        assert csp.get("frame-ancestors") == "'none'", (what, csp)
        assert csp.get("object-src") == "'none'", (what, csp)
        assert csp.get("style-src") == f"'self' '{CHART_LOGO_STYLE}'", (what, csp)
    for name in ("htmx-2.0.11.min.js", "dashboard.js", "dashboard.css"):
        static = await client.get(f"/static/{name}")
        assert static.headers.get("x-content-type-options") == "nosniff", name
        assert "no-store" not in static.headers.get("cache-control", ""), name  # cacheable
    page = answers["dashboard"].text
    # No inline script (a JSON data block is not one), no inline handler, no inline style: the
    # policy would refuse them. htmx must not inject its indicator <style> nor eval.
    assert "<script>" not in page
    assert not re.search(r"\s(on[a-z]+|style|hx-on[:a-z-]*)=", page), "an inline handler or style"
    assert "includeIndicatorStyles" in page and '"allowEval": false' in page


def test_the_one_inline_style_allowed_is_the_chart_librarys_logo() -> None:
    """The policy allows one inline <style> by its hash: the one lightweight-charts adds for its
    attribution logo. A new vendored version must bring its hash along (the browser would refuse
    the style, and the live browser test fail, without saying why)."""
    library = (HERE / "static" / "lightweight-charts-5.2.1.standalone.production.js").read_text()
    styles = re.findall(r'createElement\("style"\),this\.\w+\.innerText="([^"]*)"', library)
    assert len(styles) == 1, "the chart library's inline styles changed: see CHART_LOGO_STYLE"
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"sha256-{digest}" == CHART_LOGO_STYLE


async def test_token_in_the_url_sets_a_strict_httponly_cookie(client: httpx.AsyncClient) -> None:
    """/?token=... sets an HttpOnly, SameSite=Strict cookie that is not the token, and redirects to /."""
    response = await client.get("/", params={"token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    page = await client.get("/")  # the client keeps the cookie
    assert 'id="positions"' in page.text
    assert "htmx" in page.text and "lightweight-charts" in page.text
    assert "https://" not in page.text.split("<body")[0]  # nothing from a CDN


@pytest.mark.parametrize("pasted", [TOKEN + "\n", TOKEN + " ", " " + TOKEN, TOKEN + "\r\n"])
async def test_a_token_pasted_with_whitespace_around_it_signs_in(
    client: httpx.AsyncClient, pasted: str
) -> None:
    """The token copied from a terminal (`warden token`) comes with its newline, or a space, into
    /?token=...: it was answered "That is not the API token" — the right token refused, which sends
    the trader hunting for another one while the page shows nothing. The form already trimmed it."""
    response = await client.get("/", params={"token": pasted})
    assert response.status_code == 303, response.text
    assert 'id="positions"' in (await client.get("/")).text


async def test_signing_in_while_the_engine_starts_does_not_call_the_token_wrong() -> None:
    """The trader signs in while warden starts (its recovery and first reconcile can take a while):
    the right token was answered "That is not the API token" — sending them to look for another
    token, or to regenerate it, while the dashboard only had to wait. It says the engine is starting
    and to sign in again in a moment; no cookie is set (the token cannot be checked yet)."""
    from warden.entrypoints.api import create_app

    app = create_app(lambda: None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://warden") as http:
        for response in (
            await http.get("/", params={"token": TOKEN}),
            await http.post("/login", content=f"token={TOKEN}".encode()),
        ):
            assert response.status_code == 503, response.text
            assert "not the API token" not in response.text
            assert "starting" in response.text
            assert "set-cookie" not in response.headers
            assert TOKEN not in response.text


async def test_wrong_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", content=b"token=guess")
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert (await client.get("/", params={"token": "guess"})).status_code == 401


async def test_the_cookie_authorizes_the_api(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """The session cookie opens the API (reads, the stream's auth, actions) and the fragments."""
    await client.post("/login", content=f"token={TOKEN}".encode())
    p = await open_sol(client)
    fragment = await client.get("/ui/positions")
    assert fragment.status_code == 200
    assert f'data-position="{p["id"]}"' in fragment.text
    assert 'data-resting="true"' in fragment.text
    assert (await client.get("/api/v1/positions")).status_code == 200
    closed = await client.post(f"/api/v1/positions/{p['id']}/close", headers=OWN_PAGE)
    assert closed.status_code == 200
    assert "closed" in (await client.get("/ui/closed")).text
    assert "position_closed" in (await client.get("/ui/events")).text
    status = await client.get("/ui/status")
    assert 'data-state="ready"' in status.text
    assert "this engine (" in status.text  # the lease holder, named
    await client.post("/logout", headers=OWN_PAGE)  # the page's own form
    assert (await client.get("/api/v1/positions")).status_code == 401


async def test_the_status_panel_shows_the_engines_warnings(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """What /status warns of (a Telegram chat that blocked the bot, a stream gone silent) is on the
    dashboard too: a trader watching it was told nothing."""
    await client.post("/login", content=f"token={TOKEN}".encode())
    assert 'class="warnings"' not in (await client.get("/ui/status")).text
    warning = "alert channel telegram:111 refuses every alert: Forbidden: bot was blocked by the user"
    runtime.engine.warnings["test"] = warning
    status = await client.get("/ui/status")
    assert 'class="warnings"' in status.text
    assert warning in status.text


async def test_the_cookie_changes_nothing_from_another_page(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Browsers send the SameSite=Strict cookie along from any page of the same site, and a page on
    another port of the same host is the same site: with only the cookie, a call that changes
    something must come from warden's own page (its Origin names warden's host), else 403 and
    nothing changes. Reads, and callers sending the token, are unaffected."""
    await client.post("/login", content=f"token={TOKEN}".encode())
    kill = b'{"flatten": true, "reason": "="}'
    for origin in ({"Origin": "http://warden:8081"}, {"Origin": "null"}, {}):
        for body in (kill, b""):
            answer = await client.post(
                "/api/v1/kill", content=body, headers={"Content-Type": "text/plain", **origin}
            )
            assert answer.status_code == 403, (origin, answer.text)
            assert answer.json()["error"] == "forbidden"
            assert "another page" in answer.json()["message"]
    p = await open_sol(client)
    foreign = {"Origin": "http://127.0.0.1:3000"}
    assert (await client.post(f"/api/v1/positions/{p['id']}/close", headers=foreign)).status_code == 403
    patch = await client.patch(f"/api/v1/positions/{p['id']}", json={"stop_price": "1"}, headers=foreign)
    assert patch.status_code == 403
    status = await client.get("/api/v1/status", headers=foreign)  # reading is not changing
    assert status.status_code == 200
    assert status.json()["controls"]["killed"] is False
    assert status.json()["open_positions"] == 1
    with_token = await client.post("/api/v1/pause", json={"reason": "cli"}, headers={**AUTH, **foreign})
    assert with_token.status_code == 200
    from_page = await client.post("/api/v1/resume", headers=OWN_PAGE)
    assert from_page.status_code == 200
    assert from_page.json()["controls"]["paused"] is False
    await client.post("/logout", headers=OWN_PAGE)  # the page's own form
    signed_out = await client.post("/api/v1/pause", headers=foreign)
    assert signed_out.status_code == 401  # no cookie at all: the usual answer


async def test_an_account_the_engine_does_not_serve_is_named_not_starting(client: httpx.AsyncClient) -> None:
    """`/?account=` with a name this engine does not serve (a typo, an old bookmark) said "The engine
    is starting…" and reloaded every 2 s, forever. It is a 404 naming the accounts served, with a
    link to each; the fragments answer 404 too."""
    await client.post("/login", content=f"token={TOKEN}".encode())
    for name in ("mian", "<script>window.pwned=1</script>"):
        page = await client.get("/", params={"account": name})
        assert page.status_code == 404, page.text
        assert "starting" not in page.text and 'http-equiv="refresh"' not in page.text
        assert "this engine serves" in page.text and 'href="/?account=default"' in page.text
        assert "<script>window" not in page.text
        fragment = await client.get("/ui/positions", params={"account": name})
        assert fragment.status_code == 404
        assert "starting" not in fragment.text
    assert (await client.get("/", params={"account": "default"})).status_code == 200


async def test_the_realized_pnl_curve_counts_every_closed_position(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The "Realized PnL" curve is the account's: past the 1000 positions the page lists, it ended at
    the sum of those 1000 only (a long-running account's curve fell back to a window's total). Found
    by attacking the dashboard's reads; 1001 closed positions of +1 each must end at 1001."""
    start = runtime.clock.now() - timedelta(days=30)
    many = [
        replace(
            position(f"old{i:04d}", symbol=SOL),
            status=PositionStatus.CLOSED,
            opened_at=start + timedelta(minutes=i),
            closed_at=start + timedelta(minutes=i, seconds=30),
            realized_pnl=Decimal(1),
        )
        for i in range(1001)
    ]
    await runtime.store.commit_many([Transition(p, None) for p in many])
    await client.post("/login", content=f"token={TOKEN}".encode())
    closed = await client.get("/ui/closed")
    assert closed.status_code == 200
    data = closed.text.split('<script type="application/json" id="equity-data">')[1].split("</script>")[0]
    curve = json.loads(data)
    assert sum(Decimal(point["pnl"]) for point in curve) == 1001  # what dashboard.js adds up
    assert [point["t"] for point in curve] == sorted(point["t"] for point in curve)


async def test_static_files_are_vendored_with_their_licences(client: httpx.AsyncClient) -> None:
    for name in (
        "htmx-2.0.11.min.js",
        "htmx-LICENSE.txt",
        "lightweight-charts-5.2.1.standalone.production.js",
        "lightweight-charts-LICENSE.txt",
        "dashboard.js",
        "dashboard.css",
    ):
        assert (await client.get(f"/static/{name}")).status_code == 200, name


# -- in a real browser ---------------------------------------------------------------------------


def chromium_path() -> str:
    """The browser to drive, or skip (fail under CI=true) saying why there is none."""
    reason = ""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        reason = f"playwright is not installed ({exc})"
    path = os.environ.get("WARDEN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not reason and not Path(path).exists():
        reason = f"no chromium at {path} (apt-get install chromium)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true: the browser test must run")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWarden]:
    with LiveWarden(Path(tmp_path_factory.mktemp("dash"))) as warden:
        yield warden


@pytest.fixture
def browser() -> Iterator[Any]:
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  (window.__violations = window.__violations || []).push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def refused_by_policy(page: Any) -> list[str]:
    """Start collecting what the page's Content-Security-Policy refuses (its violation events, the
    console's CSP errors) and its uncaught script errors: an inline script or style, an eval, a
    CDN file the policy blocks. `page.evaluate("window.__violations")` and the list returned
    hold them; `no_violations` asserts there are none."""
    found: list[str] = []
    page.add_init_script(VIOLATIONS)
    page.on(
        "console",
        lambda msg: (
            found.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: found.append(f"script error: {exc}"))
    return found


def no_violations(page: Any, found: list[str]) -> None:
    events = page.evaluate("window.__violations || []")
    assert not found and not events, [*found, *events]


def test_dashboard_live_in_chromium(live: LiveWarden, browser: Any) -> None:
    """Log in with the token; a position opened through the API appears without a reload with its
    stop green; cancelling the stop on the simulated exchange turns it red (with the seconds
    unprotected) and warden re-placing it turns it green again. Screenshots are written."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = refused_by_policy(page)
    page.goto(f"{live.url}/?token={TOKEN}")
    assert page.url == f"{live.url}/"  # the token left the address bar
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)

    opened = httpx.post(f"{live.url}/api/v1/signals", json=SIGNAL, headers=AUTH, timeout=30)
    assert opened.status_code == 201, opened.text
    pid = opened.json()["id"]
    row = page.locator(f'#positions [data-position="{pid}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    stop = row.locator(".stop")
    expect(stop).to_have_attribute("data-resting", "true", timeout=WAIT_MS)
    expect(page.locator(f'#charts [data-chart="{pid}"] canvas').first).to_be_visible(timeout=WAIT_MS)
    shot(page, "protected")

    # Someone cancels the stop on the exchange; the re-placement is slowed so red can be seen.
    async def cancel_stop(rt: Runtime) -> None:
        assert rt.sim is not None
        rt.sim.faults.rest_latency = 3.0
        [resting] = [
            o
            for o in rt.sim.core.open_orders(Symbol(opened.json()["symbol"]))
            if o.type is OrderType.STOP_MARKET
        ]
        rt.sim.cancel_external(resting.client_order_id)

    live.call(cancel_stop)
    expect(stop).to_have_attribute("data-resting", "false", timeout=WAIT_MS)
    expect(stop).to_contain_text("NOT resting")
    expect(stop).to_contain_text("s unprotected", timeout=WAIT_MS)
    expect(stop).to_have_css(
        "color", "rgb(239, 79, 79)", timeout=WAIT_MS
    )  # red (read again if htmx swaps the row)
    shot(page, "unprotected")
    expect(stop).to_have_attribute("data-resting", "true", timeout=WAIT_MS)
    expect(stop).to_have_css("color", "rgb(47, 191, 113)", timeout=WAIT_MS)  # green

    async def fast(rt: Runtime) -> None:
        assert rt.sim is not None
        rt.sim.faults.rest_latency = 0.0

    live.call(fast)
    expect(page.locator("#events .kind-protection_lost").first).to_be_visible(timeout=WAIT_MS)
    path = shot(page, "reprotected")
    assert path.stat().st_size > 10_000

    # Close from the dashboard, confirming the dialog.
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Close").click()
    expect(row).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(f'#closed [data-closed="{pid}"]')).to_be_visible(timeout=WAIT_MS)
    shot(page, "closed")
    no_violations(page, refused)  # the strict policy refused nothing the page needs


def test_dashboard_at_phone_width(live: LiveWarden, browser: Any) -> None:
    """At 390 px the page has no horizontal overflow and shows the positions."""
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(f"{live.url}/?token={TOKEN}")
    opened = httpx.post(
        f"{live.url}/api/v1/signals", json={**SIGNAL, "symbol": "ETH"}, headers=AUTH, timeout=30
    )
    assert opened.status_code == 201, opened.text
    from playwright.sync_api import expect

    expect(page.locator(f'#positions [data-position="{opened.json()["id"]}"]')).to_be_visible(timeout=WAIT_MS)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
    shot(page, "phone")


def test_dashboard_controls_pause_resume_kill(live: LiveWarden, browser: Any) -> None:
    """Pause, resume and kill from the page, each confirmed in a dialog and sent through the API:
    the status shows the controls as they change, and the engine's /status agrees."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = refused_by_policy(page)
    page.goto(f"{live.url}/?token={TOKEN}")
    controls = page.locator("#status [data-controls]")
    expect(controls).to_have_attribute("data-controls", "none", timeout=WAIT_MS)
    asked: list[str] = []

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)

    def status() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{live.url}/api/v1/status", headers=AUTH, timeout=10).json()
        return body

    page.locator(".actions").get_by_role("button", name="pause", exact=True).click()
    expect(controls).to_have_attribute("data-controls", "paused", timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("refused", timeout=WAIT_MS)
    assert status()["controls"]["paused"] is True
    shot(page, "paused")

    page.locator(".actions").get_by_role("button", name="resume", exact=True).click()
    expect(controls).to_have_attribute("data-controls", "none", timeout=WAIT_MS)
    assert status()["controls"] == {
        "paused": False,
        "killed": False,
        "daily_loss_until": None,
        "reason": None,
    }

    page.locator(".actions").get_by_role("button", name="kill", exact=True).click()
    expect(controls).to_have_attribute("data-controls", "killed", timeout=WAIT_MS)
    assert status()["controls"]["killed"] is True
    shot(page, "killed")
    page.locator(".actions").get_by_role("button", name="resume", exact=True).click()
    expect(controls).to_have_attribute("data-controls", "none", timeout=WAIT_MS)
    assert len(asked) == 4 and all(message.endswith("?") for message in asked), asked
    no_violations(page, refused)


def test_dashboard_follows_a_position_through_tp1_trailing_and_close(live: LiveWarden, browser: Any) -> None:
    """The newcomer's walk-through, without a reload: a position opened through the API is
    protected, TP1 fills (ticked, size down), TP2 arms the trailing runner (its peak shown), the
    runner's stop closes it, and it moves to the closed table with its realized PnL and exit."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    refused = refused_by_policy(page)
    page.goto(f"{live.url}/?token={TOKEN}")
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    opened = httpx.post(
        f"{live.url}/api/v1/signals",
        json={"symbol": "BTC", "side": "long", "usd": "500"},
        headers=AUTH,
        timeout=30,
    )
    assert opened.status_code == 201, opened.text
    p = opened.json()
    symbol = Symbol(p["symbol"])
    row = page.locator(f'#positions [data-position="{p["id"]}"]')
    expect(row.locator(".stop")).to_have_attribute("data-resting", "true", timeout=WAIT_MS)

    def mark(price: str) -> None:
        async def move(rt: Runtime) -> None:
            assert rt.sim is not None
            rt.sim.set_mark(symbol, Decimal(price))

        live.call(move)

    mark(p["tp1_price"])
    expect(row.locator(".tp").first).to_contain_text("✓", timeout=WAIT_MS)
    expect(row.locator(".stop")).to_have_attribute("data-resting", "true", timeout=WAIT_MS)
    shot(page, "tp1")
    peak = Decimal(p["tp2_price"]) * Decimal("1.01")
    mark(str(peak.quantize(Decimal(p["tp2_price"]))))
    expect(row.locator(".trail.on")).to_be_visible(timeout=WAIT_MS)
    expect(row.locator(".trail.on")).to_contain_text("peak", timeout=WAIT_MS)
    shot(page, "trailing")
    mark(p["entry_price"])  # through the trailing stop: the runner is stopped out
    expect(row).to_have_count(0, timeout=WAIT_MS)
    closed = page.locator(f'#closed [data-closed="{p["id"]}"]')
    expect(closed).to_be_visible(timeout=WAIT_MS)
    expect(closed).to_contain_text("stop", timeout=WAIT_MS)
    final = httpx.get(f"{live.url}/api/v1/positions/{p['id']}", headers=AUTH, timeout=10).json()
    assert final["status"] == "closed" and Decimal(final["realized_pnl"]) > 0, final
    shown = f"{Decimal(final['realized_pnl']):.4f}".rstrip("0").rstrip(".")  # 4 places on the page
    expect(closed.locator(".num")).to_have_text(shown, timeout=WAIT_MS)
    shot(page, "trailed-out")
    no_violations(page, refused)  # the charts through every move, under the strict policy


def test_dashboard_kill_and_flatten_leaves_the_exchange_flat(tmp_path: Path, browser: Any) -> None:
    """ "kill and flatten" on the page, behind a confirmation that says it closes every position:
    dismissed, nothing happens; accepted, it posts {"flatten": true} to /api/v1/kill, the page shows
    what was closed and its realized PnL, and the simulated exchange has no position and no order left,
    each position closed by a reduce-only market order. A warden of its own: the kill switch stays on."""
    from playwright.sync_api import expect

    with LiveWarden(tmp_path) as warden:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        refused = refused_by_policy(page)
        try:
            page.goto(f"{warden.url}/?token={TOKEN}")
            expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
            expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)
            signals = [SIGNAL, {"symbol": "ETH", "side": "short", "qty": "0.05"}]
            opened = []
            for signal in signals:
                answer = httpx.post(f"{warden.url}/api/v1/signals", json=signal, headers=AUTH, timeout=30)
                assert answer.status_code == 201, answer.text
                opened.append(answer.json())
                row = page.locator(f'#positions [data-position="{answer.json()["id"]}"]')
                expect(row.locator(".stop")).to_have_attribute("data-resting", "true", timeout=WAIT_MS)

            async def exchange(
                rt: Runtime,
            ) -> tuple[list[PositionReport], list[OrderReport], list[OrderReport]]:
                assert rt.sim is not None
                return rt.sim.core.positions(), rt.sim.core.open_orders(), rt.sim.core.orders()

            positions, resting, _ = warden.call(exchange)
            assert {p.symbol for p in positions} == {Symbol(p["symbol"]) for p in opened}
            assert {o.type for o in resting} >= {OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET}

            flatten = page.locator(".actions").get_by_role("button", name="kill and flatten")
            outcome = page.locator("#kill-outcome")
            asked: list[str] = []

            def dismiss(dialog: Any) -> None:
                asked.append(dialog.message)
                dialog.dismiss()

            page.once("dialog", dismiss)
            flatten.click()
            [question] = asked
            assert "AND FLATTEN" in question and "closes EVERY open position" in question, question
            assert "2 positions shown" in question and "cancels every warden order" in question, question
            expect(outcome).to_be_hidden()  # confirm() said no: nothing was sent
            assert warden.call(exchange)[:2] == (positions, resting)
            status = httpx.get(f"{warden.url}/api/v1/status", headers=AUTH, timeout=10).json()
            assert status["controls"]["killed"] is False

            page.once("dialog", lambda dialog: dialog.accept())
            flatten.click()
            expect(outcome).to_have_attribute("data-outcome", "done", timeout=WAIT_MS)
            expect(outcome).to_contain_text("closed 2 positions")
            expect(outcome).to_contain_text("SOL")
            expect(outcome).to_contain_text("ETH")
            expect(outcome).to_contain_text("realized PnL")
            expect(outcome).not_to_contain_text("NOT closed")
            expect(page.locator("#status [data-controls]")).to_have_attribute(
                "data-controls", "killed", timeout=WAIT_MS
            )
            expect(page.locator("#positions [data-position]")).to_have_count(0, timeout=WAIT_MS)
            shot(page, "flattened")
            no_violations(page, refused)  # its fetch() to /api/v1/kill: connect-src 'self'

            # The exchange's own state, not warden's view of it: flat, nothing resting.
            after, still_open, history = warden.call(exchange)
            assert after == [], after
            assert still_open == [], still_open
            for p in opened:
                exit_side = OrderSide.SELL if p["side"] == "long" else OrderSide.BUY
                closes = [
                    o
                    for o in history
                    if o.symbol == Symbol(p["symbol"]) and o.type is OrderType.MARKET and o.side is exit_side
                ]
                assert [(o.reduce_only, o.filled_qty) for o in closes] == [(True, Decimal(p["size"]))], closes
            status = httpx.get(f"{warden.url}/api/v1/status", headers=AUTH, timeout=10).json()
            assert status["controls"]["killed"] is True
            assert status["controls"]["reason"] == "dashboard: kill and flatten"
            assert httpx.get(f"{warden.url}/api/v1/positions", headers=AUTH, timeout=10).json() == []
            for p in opened:  # each closed position is named with its realized PnL, as the API has it
                final = httpx.get(f"{warden.url}/api/v1/positions/{p['id']}", headers=AUTH, timeout=10).json()
                assert final["status"] == "closed" and final["exit_reason"] == "kill_switch", final
                expect(outcome).to_contain_text(
                    f"{final['symbol']} {p['side']} (PnL {final['realized_pnl']})"
                )
        finally:
            page.close()  # its event stream would hold the server's shutdown open


class OtherSite:
    """A page served from another port of 127.0.0.1: another local app, or a page an attacker got
    onto one. To the browser it is the same *site* as warden (SameSite ignores ports), so warden's
    SameSite=Strict cookie goes with what it sends to warden."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtherSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_page_on_another_local_port_cannot_kill_with_the_session_cookie(
    tmp_path: Path, browser: Any
) -> None:
    """Signed in to the dashboard, the trader opens a page served by another local port. That page
    auto-submits a form (text/plain, a JSON body) to warden's POST /api/v1/kill {"flatten": true}:
    the browser sends the session cookie along (same site), and warden must refuse it (403) and not
    kill — the cookie is good only for the dashboard's own page. Found by attacking the dashboard."""
    with LiveWarden(tmp_path) as warden:
        name, value = '{"flatten": true, "reason": "', '"}'  # text/plain sends name=value
        attack = (
            f'<form method="post" action="{warden.url}/api/v1/kill" enctype="text/plain">'
            f"<input type=\"hidden\" name='{name}' value='{value}'></form>"
            "<script>document.forms[0].submit()</script>"
        )
        page = browser.new_page()
        try:
            page.goto(f"{warden.url}/?token={TOKEN}")
            page.wait_for_selector("#status [data-state]", timeout=WAIT_MS)
            with OtherSite(attack) as other:
                with page.expect_response(f"{warden.url}/api/v1/kill", timeout=WAIT_MS) as answer:
                    page.goto(other.url)
                response = answer.value
                assert response.request.headers.get("content-type", "").startswith("text/plain")
                assert response.status == 403, response.text()
            status = httpx.get(f"{warden.url}/api/v1/status", headers=AUTH, timeout=10).json()
            assert status["controls"]["killed"] is False, status["controls"]
        finally:
            page.close()


def test_a_page_on_another_site_cannot_sign_the_trader_out(live: LiveWarden, browser: Any) -> None:
    """Any page the trader opens (another local port, or any website: signing out needs no cookie)
    auto-submits a form to POST /logout: warden deleted the session cookie, so the open dashboard
    turned to "signed out" and the trader, in the moment they need to close or kill, must find the
    token again — as often as that page likes. Only the dashboard's own page may sign out (403
    otherwise, the cookie kept). Found by attacking the dashboard."""
    from playwright.sync_api import expect

    attack = (
        f'<form method="post" action="{live.url}/logout"></form><script>document.forms[0].submit()</script>'
    )
    page = browser.new_page()
    try:
        page.goto(f"{live.url}/?token={TOKEN}")
        expect(page.locator("#status [data-state]")).to_have_count(1, timeout=WAIT_MS)
        with OtherSite(attack) as other:
            with page.expect_response(f"{live.url}/logout", timeout=WAIT_MS) as answer:
                page.goto(other.url)
            refused = answer.value.status
        assert any(c["name"] == "warden_session" for c in page.context.cookies()), "signed out"
        assert refused == 403
        page.goto(f"{live.url}/")
        expect(page.locator("#status [data-state]")).to_have_count(1, timeout=WAIT_MS)
        page.get_by_role("button", name="sign out").click()  # the page's own button still signs out
        expect(page.locator("input[name=token]")).to_be_visible(timeout=WAIT_MS)
        assert not any(c["name"] == "warden_session" for c in page.context.cookies())
    finally:
        page.close()


def test_a_page_on_another_port_cannot_frame_the_dashboard(tmp_path: Path, browser: Any) -> None:
    """Clickjacking: a page on another local port frames the dashboard (the browser sends the
    session cookie into the frame: same site) under a decoy, and the trader's click lands on
    "kill and flatten" — a click inside warden's own page, which the Origin check rightly allows.
    The dashboard must refuse to be framed: the frame shows no dashboard. Found by attacking it."""
    with LiveWarden(tmp_path) as warden:
        page = browser.new_page()
        try:
            page.goto(f"{warden.url}/?token={TOKEN}")
            page.wait_for_selector("#status [data-state]", timeout=WAIT_MS)
            with OtherSite(
                f'<iframe id="decoy" src="{warden.url}/" width="1200" height="900"></iframe>'
            ) as other:
                with page.expect_response(f"{warden.url}/", timeout=WAIT_MS) as answer:
                    page.goto(other.url)
                assert answer.value.status == 200  # served to the frame: the cookie went along
                assert "warden_session=" in answer.value.request.all_headers().get("cookie", "")
                page.wait_for_load_state("load")
                [frame] = page.main_frame.child_frames
                frame.wait_for_load_state("load")
                # A frame the browser refuses to render holds its error page, not the dashboard.
                assert frame.query_selector("#status") is None
                assert frame.query_selector("[data-flatten]") is None
        finally:
            page.close()


def test_the_page_says_when_its_engine_stops_and_comes_back_live(tmp_path: Path, browser: Any) -> None:
    """An account's engine stops (its database failed; the fleet starts it again within seconds):
    the event stream breaks and, meanwhile, warden answers 503 (not running) to the page's requests.
    The page must say so rather than keep showing the last state as if live ("ready", a stop
    "resting"), and once the engine is back its event stream must be live again — a browser's
    EventSource gives up for good on a 503. Found by attacking the dashboard's reads."""
    from playwright.sync_api import expect

    with LiveWarden(tmp_path) as warden:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{warden.url}/?token={TOKEN}")
            live = page.locator("#live")
            expect(live).to_have_text("live", timeout=WAIT_MS)
            expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)
            failing: list[bool] = [True]

            async def database_fails(rt: Runtime) -> None:
                real = rt.store.events_since

                async def events_since(*args: Any, **kwargs: Any) -> Any:
                    if failing[0]:
                        raise StoreUnavailable("events since: the database is gone")
                    return await real(*args, **kwargs)

                rt.store.events_since = events_since  # type: ignore[method-assign]

            def refused(response: Any) -> bool:
                return "/api/v1/stream" in response.url and response.status == 503

            with page.expect_response(refused, timeout=WAIT_MS):  # the browser reconnected: 503
                warden.down = True
                warden.call(database_fails)  # the open stream's next poll fails
            expect(live).not_to_have_text("live", timeout=WAIT_MS)
            expect(page.locator("#status")).to_contain_text("starting", timeout=WAIT_MS)
            expect(page.locator("#status [data-state]")).to_have_count(0)
            shot(page, "engine-down")

            failing[0] = False
            warden.down = False
            expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)
            expect(live).to_have_text("live", timeout=WAIT_MS)
        finally:
            page.close()


HOSTILE = [
    '<img src=x onerror="window.pwned=1">',
    "\"><script>window.pwned=2</script>' onmouseover='window.pwned=3' x='",
    "</script><script>window.pwned=4</script>",
    '<div hx-get="/ui/status" hx-trigger="load" hx-on::after-request="window.pwned=5">x</div>',
]


def test_hostile_text_is_shown_as_text(tmp_path: Path, browser: Any) -> None:
    """A pause reason typed by the trader (or sent by a script with the token) reaches the status
    panel and its reasons list, swapped in by htmx: markup,
    attribute breakers, a closing </script> and htmx attributes in it are shown as text, and none
    of it runs (an injected script would set window.pwned)."""
    from playwright.sync_api import expect

    with LiveWarden(tmp_path) as warden:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{warden.url}/?token={TOKEN}")
            expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
            for text in HOSTILE:
                reason = {"reason": text}
                paused = httpx.post(f"{warden.url}/api/v1/pause", json=reason, headers=AUTH, timeout=10)
                assert paused.status_code == 200, paused.text
                expect(page.locator("#status [data-controls]")).to_contain_text(text, timeout=WAIT_MS)
                expect(page.locator("#status .reasons")).to_contain_text(text)
                page.locator("#status").hover()
            assert page.evaluate("typeof window.pwned") == "undefined"
            assert page.locator("#status img, #status script, #status div[hx-trigger]").count() == 0
        finally:
            page.close()


def test_the_page_says_when_warden_stops_answering(tmp_path: Path, browser: Any) -> None:
    """warden itself stops (it crashed, the machine rebooted, it is being restarted): nothing answers
    the page any more — no 503, the connection is refused. htmx swaps nothing on a request that got
    no answer, so the page kept showing the last state as if live: the engine "ready", the stop
    "resting". It must say that warden does not answer and that no stop is known to rest. Found by
    attacking the dashboard (the page left open across a restart)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        with LiveWarden(tmp_path) as warden:
            page.goto(f"{warden.url}/?token={TOKEN}")
            expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
            opened = httpx.post(f"{warden.url}/api/v1/signals", json=SIGNAL, headers=AUTH, timeout=30)
            assert opened.status_code == 201, opened.text
            stop = page.locator(f'#positions [data-position="{opened.json()["id"]}"] .stop')
            expect(stop).to_have_attribute("data-resting", "true", timeout=WAIT_MS)
            expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)
        # warden is gone: its port refuses connections.
        expect(page.locator("#live")).not_to_have_text("live", timeout=WAIT_MS)
        expect(page.locator("#status")).to_contain_text("warden does not answer", timeout=WAIT_MS)
        expect(page.locator("#status [data-state]")).to_have_count(0)
        expect(stop).not_to_have_attribute("data-resting", "true", timeout=WAIT_MS)
        expect(stop).not_to_contain_text("resting ")
        expect(page.locator("#positions .stop.ok")).to_have_count(0)
        shot(page, "warden-gone")
    finally:
        page.close()


def test_the_page_says_when_warden_hangs(tmp_path: Path, browser: Any) -> None:
    """warden hangs rather than stops (its event loop blocked: a call that never returns): its port
    still takes connections, so nothing fails — each request of the page just waits, htmx sets no
    time limit, and the page kept showing the engine "ready" and the stop "resting" as if live.
    A request unanswered for long counts as no answer. Found by attacking the dashboard."""

    from playwright.sync_api import expect

    with LiveWarden(tmp_path) as warden:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{warden.url}/?token={TOKEN}")
            opened = httpx.post(f"{warden.url}/api/v1/signals", json=SIGNAL, headers=AUTH, timeout=30)
            assert opened.status_code == 201, opened.text
            stop = page.locator(f'#positions [data-position="{opened.json()["id"]}"] .stop')
            expect(stop).to_have_attribute("data-resting", "true", timeout=WAIT_MS)
            expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)
            released = threading.Event()

            async def hang(rt: Runtime) -> None:
                released.wait(60)  # blocks warden's loop: nothing it serves answers meanwhile

            assert warden.loop is not None and warden.runtime is not None
            asyncio.run_coroutine_threadsafe(hang(warden.runtime), warden.loop)
            try:
                expect(page.locator("#status")).to_contain_text("warden does not answer", timeout=20_000)
                expect(page.locator("#status [data-state]")).to_have_count(0)
                expect(stop).to_have_attribute("data-resting", "unknown")
                # its event stream stays connected, silent: the pill must not say "live" meanwhile
                expect(page.locator("#live")).not_to_have_text("live")
            finally:
                released.set()
            expect(page.locator("#status [data-state]")).to_have_text("ready", timeout=WAIT_MS)
            expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
            expect(stop).to_have_attribute("data-resting", "true", timeout=WAIT_MS)
        finally:
            page.close()
