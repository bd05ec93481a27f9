"""The dashboard at `/`: server-rendered (Jinja2) fragments kept live by htmx and the event stream.

- Login once with the API token (the form, or `/?token=...`): the answer sets an HttpOnly,
  SameSite=Strict session cookie (an HMAC of the token, see auth.py) and redirects to `/`.
  The read token logs in too, read-only (no action buttons).
- The page loads `/ui/*` fragments; `static/dashboard.js` listens on `/api/v1/stream` and
  asks htmx to refresh them on every event (and every 2 s, for marks), and draws the charts
  with TradingView's lightweight-charts.
- Actions (close, pause/resume/kill when the engine has them) post to the same API routes
  as the CLI, with a confirmation. "kill and flatten" is `dashboard.js` posting
  `{"flatten": true}` to /api/v1/kill (a JSON boolean, which an htmx form post cannot send);
  its confirmation says it closes every position, and its answer stays on the page.

With several accounts the page shows one at a time (`/?account=NAME`, the first by default),
with a link to each; every fragment, action and the event stream carry `?account=NAME`.

No page may be framed (X-Frame-Options: DENY, CSP frame-ancestors 'none'), every answer says
nosniff and sends no Referer to another site, the pages run only warden's own scripts (a strict
Content-Security-Policy: no inline script, no eval) and nothing but the static files may be
cached (Cache-Control: no-store): see Hardening.

JavaScript is vendored in `static/` (htmx 2.0.11, lightweight-charts 5.2.1, from npm, with
their licences): no build step, nothing fetched from a CDN at run time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from markupsafe import escape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from warden.domain.events import EventKind
from warden.domain.values import account_spelled
from warden.entrypoints.auth import (
    SESSION_COOKIE,
    Access,
    cookie_access,
    from_own_page,
    session_value,
    token_access,
)
from warden.entrypoints.schemas import EventOut, PositionOut, StatusOut

if TYPE_CHECKING:
    from jinja2 import Environment

    from warden.entrypoints.api import RuntimeApi

HERE = Path(__file__).parent
ACTIONS = ("pause", "resume", "kill")
TIMELINE = 60
CLOSED = 50


def _signed(value: str | None) -> str:
    """CSS class for a signed decimal: up, down or flat."""
    try:
        number = Decimal(value) if value is not None else Decimal(0)
    except InvalidOperation:
        return "flat"
    return "up" if number > 0 else "down" if number < 0 else "flat"


def _short(value: str | None, places: int = 4) -> str:
    """A decimal string for display: at most `places` decimals, trailing zeros dropped."""
    if value is None:
        return "-"
    try:
        number = Decimal(value)
    except InvalidOperation:
        return value
    text = f"{number:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@functools.cache
def _templates() -> Environment:
    """Jinja, loaded on the first page served rather than at start (signals need none of it)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["signed"] = _signed
    env.filters["short"] = _short
    return env


CHART_LOGO_STYLE = "sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY="
"""The one inline <style> the page may have: the one lightweight-charts 5.2.1 adds for its
TradingView attribution logo (its licence asks for the attribution), always the same text. A new
version of the library may change it: test_dashboard checks this hash against the vendored file."""

DASHBOARD_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' '{CHART_LOGO_STYLE}'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""What the dashboard's pages (and every other answer) may load and run: warden's own files only.
No inline script, handler or style attribute, no eval (htmx's `allowEval` is off, and its indicator
<style> is not injected: the htmx-config meta in dashboard.html), nothing from a CDN, no plugin, no
<base>, forms posted to warden only. A script injected through some text shown on the page (an
exchange's error message, a symbol) would not run. No `data:` image: nothing uses one (the
charts draw on canvas; their logo is inline SVG)."""

HARDENING = (
    # No page of warden may be framed: a page on another port of the same host is the same site,
    # so the browser sends the session cookie into its frame, and a decoy over the frame turns the
    # trader's click into one on "kill and flatten" (a click inside warden's own page).
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # The token may be in the address (`/?token=...`, redirected at once): never in a Referer to
    # another site. Not no-referrer: a browser then sends `Origin: null` with the page's own form
    # posts (sign out), which the Origin check (auth.from_own_page) must refuse.
    (b"referrer-policy", b"same-origin"),
)

DOCS_POLICY = b"frame-ancestors 'none'"
"""/api/v1/docs (Swagger UI from its CDN, pinned by hash, started by an inline script): framing
refused only."""

CACHEABLE = ("/static/",)
"""The vendored files: the same for everyone, nothing secret. Every other answer (positions, the
session, the token's pages) is no-store: no shared cache (a proxy) nor the browser's keeps it."""


class Hardening:
    """Every answer: not to be framed (X-Frame-Options, CSP frame-ancestors), nosniff, no Referer
    off the site, the dashboard's Content-Security-Policy (DASHBOARD_POLICY; /api/v1/docs its
    own), and Cache-Control no-store but for the vendored static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        policy = DOCS_POLICY if path.rstrip("/").endswith("/api/v1/docs") else DASHBOARD_POLICY.encode()
        cacheable = path.startswith(CACHEABLE)

        async def hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if cacheable or name.lower() not in (b"cache-control", b"pragma", b"expires")
                ]
                headers += [*HARDENING, (b"content-security-policy", policy)]
                if not cacheable:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, hardened)


def render(name: str, **context: Any) -> str:
    return _templates().get_template(name).render(**context)


def install_dashboard(
    app: FastAPI,
    provider: Callable[[str | None], RuntimeApi | None],
    accounts: Callable[[], tuple[str, ...]] = tuple,
    failure: Callable[[str | None], str | None] = lambda name: None,
) -> None:
    """Mount `/`, `/login`, `/logout`, the `/ui/*` fragments and `/static` (the app wraps every
    answer in Hardening, outermost).

    `provider(name)`: the runtime of account `name` (None: the first); `accounts()`: every
    account's name, when the engine serves several; `failure(name)`: why that account is not
    running (it failed to start, or waits to start again), None while it is just starting."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def runtime(name: str | None = None) -> RuntimeApi | None:
        return provider(name)

    def access_of(request: Request) -> Access:
        rt = runtime()
        if rt is None:
            return Access.NONE
        return cookie_access(request.cookies.get(SESSION_COOKIE), rt.settings)

    def login_page(message: str = "", status: int = 200) -> HTMLResponse:
        return HTMLResponse(render("login.html", message=message), status_code=status)

    def signed_in(token: str, account: str | None = None) -> Response:
        rt = runtime()
        if rt is None:  # the tokens are the engine's: not to be called wrong before it can check them
            return login_page("The engine is starting: sign in again in a moment.", 503)
        access = token_access(token, rt.settings)
        if access is Access.NONE:
            return login_page("That is not the API token (`warden token` prints it).", 401)
        secret = rt.settings.api_token if access is Access.FULL else rt.settings.api_read_token
        assert secret is not None
        # The token is dropped from the address bar, the account kept.
        response = RedirectResponse("/" + _query(account), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(secret, access),
            httponly=True,
            samesite="strict",
            secure=False,
            path="/",
            max_age=30 * 24 * 3600,
        )
        return response

    @app.get("/", include_in_schema=False, response_model=None)
    async def dashboard(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            return signed_in(token, request.query_params.get("account"))
        names = accounts()
        account = request.query_params.get("account") or (names[0] if len(names) > 1 else None)
        account = None if account is None else account_spelled(account, names)
        if account is not None and names and account not in names:
            if access_of(request) is Access.NONE:
                return login_page()
            return HTMLResponse(render("unknown.html", account=account, accounts=names), status_code=404)
        rt = runtime(account)
        if rt is None:  # why, when known: as open as /healthz, which says it too
            page = render("starting.html", account=account, why=failure(account), accounts=names)
            return HTMLResponse(page, status_code=503)
        access = access_of(request)
        if access is Access.NONE:
            return login_page()
        actions = [a for a in ACTIONS if _has_route(app, f"/api/v1/{a}")] if access is Access.FULL else []
        return HTMLResponse(
            render(
                "dashboard.html",
                can_act=access is Access.FULL,
                actions=actions,
                kinds=json.dumps([k.value for k in EventKind]),
                account=account if len(names) > 1 else None,
                accounts=names if len(names) > 1 else (),
                q=_query(account if len(names) > 1 else None),
            )
        )

    @app.post("/login", include_in_schema=False, response_model=None)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        return signed_in((form.get("token") or [""])[0].strip())

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        # Signing out needs no cookie, so any page (any website) could post here and sign the
        # trader out — as often as it likes, just when they need to close or kill. Only the
        # dashboard's own page may (its form's Origin names warden's host).
        if not from_own_page(request):
            return HTMLResponse('<p class="down">sign out from the dashboard\'s own page</p>', 403)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    _install_fragments(app, runtime, access_of, accounts, failure)


def _query(account: str | None) -> str:
    """`?account=NAME` for every URL the page calls (empty with one account)."""
    return f"?account={quote(account)}" if account else ""


def _install_fragments(
    app: FastAPI,
    runtime: Callable[[str | None], RuntimeApi | None],
    access_of: Callable[[Request], Access],
    accounts: Callable[[], tuple[str, ...]],
    failure: Callable[[str | None], str | None],
) -> None:
    def fragment(request: Request) -> tuple[RuntimeApi, Access] | Response:
        name = request.query_params.get("account")
        name = None if name is None else account_spelled(name, accounts())
        starting = HTMLResponse('<p class="muted">the engine is starting…</p>', status_code=503)
        if runtime(None) is None:
            return starting
        access = access_of(request)
        if access is Access.NONE:
            return HTMLResponse('<p class="down">signed out: <a href="/">sign in</a></p>', status_code=401)
        if name and name not in accounts():
            return HTMLResponse('<p class="down">no such account: <a href="/">the dashboard</a></p>', 404)
        rt = runtime(name)
        if rt is not None:
            return rt, access
        why = failure(name)
        if why is None:
            return starting
        down = f'<p class="down">account {escape(name or "")} is not running: {escape(why)}</p>'
        return HTMLResponse(down, status_code=503)

    @app.get("/ui/status", include_in_schema=False, response_model=None)
    async def ui_status(request: Request) -> Response:
        got = fragment(request)
        if isinstance(got, Response):
            return got
        rt, _ = got
        status = StatusOut.of(rt.engine.status())
        holder = (
            f"this engine ({rt.holder})"
            if rt.is_holder
            else f"standby: {rt.holder or 'no engine'} holds it"
            + "".join(f"; {r}" for r in status.reasons if "capacity" in r)
        )
        return HTMLResponse(render("status.html", s=status, holder=holder))

    @app.get("/ui/positions", include_in_schema=False, response_model=None)
    async def ui_positions(request: Request) -> Response:
        got = fragment(request)
        if isinstance(got, Response):
            return got
        rt, access = got
        views = await rt.engine.list_positions()
        rows = [(PositionOut.of_view(v), rt.engine.unprotected_for(v.position.id)) for v in views]
        q = _query(request.query_params.get("account"))
        return HTMLResponse(render("positions.html", rows=rows, can_act=access is Access.FULL, q=q))

    @app.get("/ui/closed", include_in_schema=False, response_model=None)
    async def ui_closed(request: Request) -> Response:
        got = fragment(request)
        if isinstance(got, Response):
            return got
        rt, _ = got
        views = await rt.engine.list_positions(include_closed=True)
        closed = [PositionOut.of_view(v) for v in views if v.position.status.terminal]
        closed.sort(key=lambda p: p.closed_at or p.opened_at, reverse=True)
        # The views are the most recent positions only: the curve starts from what closed before.
        shown = sum((v.position.realized_pnl for v in views if v.position.closed_at), Decimal(0))
        earlier = await rt.engine.closed_pnl() - shown
        return HTMLResponse(render("closed.html", rows=closed[:CLOSED], all_rows=closed, earlier=earlier))

    @app.get("/ui/events", include_in_schema=False, response_model=None)
    async def ui_events(request: Request) -> Response:
        got = fragment(request)
        if isinstance(got, Response):
            return got
        rt, _ = got
        events = await rt.engine.events_since(None, TIMELINE)
        rows = [EventOut.of(e, i) for i, e in reversed(events)]
        return HTMLResponse(render("events.html", rows=rows))


def _has_route(app: FastAPI, path: str) -> bool:
    return any(getattr(route, "path", None) == path for route in app.routes)
