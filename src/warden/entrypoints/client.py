"""The CLI's client side: commands that talk HTTP to a running `warden run`.

Each prints a rich table or one line; any error is one line on stderr naming
the field (`error: side: must be long, short, buy or sell, not 'up'`) and a
non-zero exit.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import typer
from rich.console import Console
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from warden.config import ConfigError, Settings
from warden.entrypoints.token import TOKEN_ENV, TokenError, find_token

if TYPE_CHECKING:
    import httpx

API = "/api/v1"
TIMEOUT = 15.0
USER_AGENT = "warden-cli/0.1"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="WARDEN_URL", help="URL of the running engine (default: from host and port settings)."
    ),
]


JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]

AccountOption = Annotated[
    str | None,
    typer.Option(
        "--account",
        # `\[`: typer renders help as rich markup, which took [accounts.NAME] for a tag and dropped it
        help="The account (\\[accounts.NAME]); required when the engine serves more than one.",
    ),
]


def print_json(body: object) -> None:
    """Machine-readable output: the API's JSON, as it came."""
    out.print(json.dumps(body, indent=2), markup=False, highlight=False, soft_wrap=True)


class CliError(Exception):
    """One line for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1, body: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.body = body
        """The API's error JSON, when it answered one (a partial kill's accounts)."""


class NotFound(CliError):
    """The API answered 404 for a position id."""


class TimedOut(CliError):
    """No answer within TIMEOUT: what was asked may have been done, or still be going on."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """The settings a client command needs (the engine's URL, the token, the database).

    A WARDEN_* variable that names no setting is a warning here, not an error: without the
    engine's --config file this command cannot know the variables its [accounts.*] tables name
    for their keys (`warden run`, which has the file, refuses it)."""
    try:
        settings = Settings.load(check_env=False)
    except ConfigError as exc:
        raise CliError(f"{exc.field}: {exc.message}") from None
    for variable, message in settings.unknown_variables(os.environ):
        err.print(f"warning: {variable}: {message} (`warden run` refuses it)", markup=False)
    return settings


class Client:
    """A thin HTTP client; turns every failure into a CliError with one line of text.

    It sends the API token whenever one is found (every /api/v1 call needs it);
    `need_token` makes a missing token an error before anything is sent."""

    def __init__(self, url: str | None, need_token: bool = False, account: str | None = None) -> None:
        self.account = account
        settings: Settings | None = None
        if url is None:
            settings = load_settings()
            url = settings.api_url
        # `warden run` prints the API's URL with /api/v1: taken as the engine's URL, not doubled
        self.url = url.rstrip("/").removesuffix(API)
        headers = {"User-Agent": USER_AGENT}
        settings = settings or load_settings()
        try:
            token = find_token(settings)
        except TokenError as exc:
            raise CliError(str(exc)) from None
        if token is None and need_token:
            raise CliError(f"no API token: set {TOKEN_ENV}, or run `warden token` where `warden run` runs")
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        import httpx  # here, not at the top: `warden run` loads this module and never calls out

        try:
            self._http: httpx.Client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)
        except httpx.InvalidURL as exc:  # not an HTTPError: it escaped as a traceback
            raise CliError(
                f"url: {self.url!r} is not a URL warden can call ({exc}); e.g. http://127.0.0.1:8080"
            ) from None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the account given (`--account`) goes with every call as `?account=`."""
        import httpx

        if self.account is not None:
            kwargs["params"] = {**kwargs.get("params", {}), "account": self.account}
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CliError(f"cannot reach warden at {self.url}: is `warden run` running?") from None
        except httpx.TimeoutException:
            said = f"warden at {self.url} did not answer within {TIMEOUT:g} s"
            if method != "GET":  # the engine goes on with a change the client stopped waiting for
                said += (
                    "; it may have done it or still be doing it: check `warden status` and `warden positions`"
                )
            raise TimedOut(said) from None
        except httpx.HTTPError as exc:
            raise CliError(f"talking to {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            if body is None or "json" not in response.headers.get("content-type", ""):
                # another web app on that address (a page on every path): its 200 is no answer of
                # warden's; read as one it said "no open positions", "resumed"
                kind = response.headers.get("content-type", "").partition(";")[0] or "no content type"
                raise CliError(
                    f"{self.url} answered HTTP {response.status_code} with {kind}, not warden's JSON:"
                    " is it warden's API (--url, WARDEN_URL)?"
                )
            return body
        if response.status_code == 404 and isinstance(body, Mapping) and body.get("field") == "position_id":
            raise NotFound(error_line(response.status_code, body))
        raise CliError(error_line(response.status_code, body), body=body)


def error_line(status: int, body: object) -> str:
    """`field: message` from the API's error JSON, else the HTTP status."""
    if isinstance(body, Mapping) and "message" in body:
        message = str(body["message"])
        if body.get("error") == "already_exists" and body.get("position_id"):
            message = f"{message} (position {body['position_id']})"
        field = body.get("field")
        return f"{field}: {message}" if field else message
    return f"HTTP {status}"


def id_segment(position_id: str) -> str | None:
    """A position id as one URL path segment (escaped: "?" or "#" stay in the id); None for text
    with a "/", which no route can take as an id (SOL/USDT:USDT is a symbol)."""
    return None if "/" in position_id else quote(position_id, safe="")


def run_client(action: Any) -> None:
    """Run one client action, printing any CliError as one line."""
    try:
        action()
    except CliError as exc:
        fail(exc.message, exc.code)


# -- rendering -----------------------------------------------------------------------------------


def _v(value: object) -> str:
    return "-" if value is None else str(value)


def _show(value: object) -> object:
    return str(value).lower() if isinstance(value, bool) else value


def _when(iso: str | None) -> str | None:
    """An ISO timestamp to the second, for tables: 2025-01-02 03:04:05."""
    return None if iso is None else iso.replace("T", " ")[:19]


def table(
    headers: list[str],
    rows: list[list[object]],
    right: frozenset[str] = frozenset(),
    show_header: bool = True,
) -> Table:
    """A plain table whose columns are never truncated (ids must stay copyable); only the last wraps."""
    cells = [[Text(_v(cell)) for cell in row] for row in rows]
    result = Table(box=None, header_style="bold", pad_edge=False, show_header=show_header)
    for i, title in enumerate(headers):
        last = i == len(headers) - 1
        widest = max([len(title), *(c[i].cell_len for c in cells)])
        result.add_column(
            title,
            justify="right" if title in right else "left",
            no_wrap=not last,
            min_width=None if last else widest,
        )
    for row in cells:
        result.add_row(*row)
    return result


def show(renderable: Table) -> None:
    """Print a table at its natural width: a narrow or piped terminal wraps lines, never cuts ids."""
    natural = Measurement.get(out, out.options.update_width(1000), renderable).maximum
    console = out if natural <= out.width else Console(highlight=False, width=natural)
    console.print(renderable)


def positions_table(positions: list[dict[str, Any]]) -> Table:
    headers = ["ID", "SYMBOL", "SIDE", "SIZE", "ENTRY", "STOP", "RESTING", "LAST", "uPnL", "STATUS"]
    rows: list[list[object]] = []
    for p in positions:
        resting = "yes" if p["stop_resting"] else ("NO" if p["status"] in ("open", "protected") else "-")
        status = p["status"] if not p.get("exit_reason") else f"{p['status']} ({p['exit_reason']})"
        rows.append(
            [
                p["id"],
                p["symbol"],
                p["side"],
                p["size"],
                p["entry_price"],
                p["stop_price"],
                resting,
                p["last_price"],
                p["unrealized_pnl"],
                status,
            ]
        )
    return table(headers, rows, right=frozenset({"SIZE", "ENTRY", "STOP", "LAST", "uPnL"}))


def opened_line(p: Mapping[str, Any]) -> str:
    if p["status"] == "opening":
        return (
            f"{p['id']} {p['symbol']} {p['side']}: the entry is still being resolved; see `warden positions`"
        )
    if p["status"] == "closed":
        return f"{p['id']} {p['symbol']} {p['side']} closed at once: {p['exit_reason']}"
    stop = f"stop {_v(p['stop_price'])} {'resting' if p['stop_resting'] else 'NOT resting'}"
    head = f"{p['id']} {p['symbol']} {p['side']} {_v(p['size'])} @ {_v(p['entry_price'])}"
    return f"{head}, {stop} ({p['status']})"


def closed_line(p: Mapping[str, Any]) -> str:
    return f"{p['id']} {p['symbol']} {p['side']} {p['status']}: realized PnL {_v(p['realized_pnl'])}"


# -- commands ------------------------------------------------------------------------------------


def status(*, url: UrlOption = None, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Show the engine's state and why it would refuse signals; with several accounts, each
    account and whether this engine holds its lease (--account: that account's state)."""

    def action() -> None:
        with Client(url, account=account) as client:
            accounts: list[dict[str, Any]] = client.call("GET", f"{API}/accounts")
            if account is None and len(accounts) > 1:
                if as_json:
                    print_json(accounts)
                else:
                    show(accounts_table(accounts))
                return
            s = client.call("GET", f"{API}/status")
        if as_json:
            print_json(s)
            return
        mine = [a for a in accounts if account is None or a["name"].casefold() == account.casefold()]
        keys = ["state", "accepting_signals", "exchange", "database", "open_positions"]
        keys += ["unprotected_positions", "last_reconcile_at", "pending_writes"]
        rows: list[list[object]] = [[key, _show(s[key])] for key in keys]
        rows.append(["controls", controls_line(s.get("controls") or {})])
        rows += [["reason", reason] for reason in s["reasons"]]
        rows += [["warning", warning] for warning in s.get("warnings", [])]
        rows += [[key, value] for key, value in s.get("details", {}).items() if key == "telegram"]
        rows += [["account", f"{a['name']} ({lease_text(a)})"] for a in mine]
        show(table(["", ""], rows, show_header=False))

    run_client(action)


def lease_text(a: Mapping[str, Any]) -> str:
    if a["state"] is None:
        return "not running"
    if a["lease_held"]:
        return f"lease held by this engine, {a.get('holder')}"
    holder = a.get("holder")
    return (
        f"standby: engine {holder} holds the lease" if holder else "standby: no engine seen holding the lease"
    )


def accounts_table(accounts: list[dict[str, Any]]) -> Table:
    rows = [
        [
            a["name"],
            a["exchange"],
            f"{a.get('holder') or '-'}{' (this engine)' if a['lease_held'] else ''}",
            a["state"] or "not running",
            "yes" if a["accepting_signals"] else "no",
            _show(a["open_positions"]),
            "; ".join([*a.get("alarms", []), *a["reasons"]]),
        ]
        for a in accounts
    ]
    return table(["ACCOUNT", "EXCHANGE", "HOLDER", "STATE", "SIGNALS", "OPEN", "WHY"], rows)


def positions(
    *,
    url: UrlOption = None,
    account: AccountOption = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include closed positions.")] = False,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw live until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between redraws with --watch.")
    ] = 1.0,
    redraws: Annotated[int, typer.Option("--redraws", hidden=True, help="Stop after N redraws (tests).")] = 0,
) -> None:
    """List positions: size, entry, stop (and whether it rests on the exchange), uPnL."""

    def fetch(client: Client) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = client.call("GET", f"{API}/positions", params={"all": str(all_).lower()})
        return rows

    def render(rows: list[dict[str, Any]]) -> Table | Text:
        if not rows:
            return Text("no positions" if all_ else "no open positions")
        return positions_table(rows)

    def action() -> None:
        with Client(url, account=account) as client:
            if not watch:
                rows = fetch(client)
                if as_json:
                    print_json(rows)
                elif not rows:
                    out.print("no positions" if all_ else "no open positions")
                else:
                    show(positions_table(rows))
                return
            drawn = 0
            with Live(render(fetch(client)), console=out, auto_refresh=False, transient=False) as live:
                try:
                    while True:
                        drawn += 1
                        if redraws and drawn >= redraws:
                            return
                        time.sleep(interval)
                        live.update(render(fetch(client)), refresh=True)
                except KeyboardInterrupt:
                    return

    run_client(action)


def open_(
    *,
    symbol: Annotated[str, typer.Argument(metavar="SYMBOL", help="SOL, SOLUSDT or SOL/USDT:USDT.")],
    side: Annotated[str, typer.Argument(metavar="SIDE", help="long or short (buy / sell accepted).")],
    usd: Annotated[str | None, typer.Option("--usd", help="Notional in USD.")] = None,
    qty: Annotated[str | None, typer.Option("--qty", help="Size in base units.")] = None,
    signal_id: Annotated[str | None, typer.Option("--signal-id", help="Idempotency key.")] = None,
    stop: Annotated[str | None, typer.Option("--stop", help="Stop price (default: from the plan).")] = None,
    url: UrlOption = None,
    account: AccountOption = None,
) -> None:
    """Open a position and print it once its stop rests on the exchange."""
    # Always a signal id: if this command times out while the engine goes on opening, the same
    # command with this id cannot open a second position (an id is acted on once).
    signal_id = signal_id if signal_id is not None else f"cli-{secrets.token_hex(6)}"
    body: dict[str, str] = {"symbol": symbol, "side": side.strip().lower()}
    for key, value in (("usd", usd), ("qty", qty), ("signal_id", signal_id), ("stop_price", stop)):
        if value is not None:
            body[key] = value

    def action() -> None:
        with Client(url, need_token=True, account=account) as client:
            try:
                p = client.call("POST", f"{API}/signals", json=body, params={"wait": "true"})
            except TimedOut as exc:
                said = exc.message.split(";")[0]
                raise TimedOut(
                    f"{said}; the open may still go through: see `warden positions`; to try again"
                    f" without opening twice, run it with --signal-id {signal_id}"
                ) from None
        out.print(opened_line(p), markup=False)
        if p["status"] in ("opening", "open") or (p["status"] == "protected" and not p["stop_resting"]):
            # not what was asked (a position whose stop rests): a script reading `$?` must not
            # take an entry still being resolved for a protected position
            raise CliError(f"open: position {p['id']} is NOT protected yet; see `warden positions`")

    run_client(action)


def close(
    *,
    target: Annotated[
        str, typer.Argument(metavar="ID|SYMBOL", help="A position id, or a symbol to close all of it.")
    ],
    url: UrlOption = None,
    account: AccountOption = None,
) -> None:
    """Close a position (by id, or every position on a symbol) at market and print the realized PnL."""

    def action() -> None:
        segment = id_segment(target)
        with Client(url, need_token=True, account=account) as client:
            try:
                if segment is None:
                    raise NotFound(target)
                closed = [client.call("POST", f"{API}/positions/{segment}/close")]
            except NotFound:
                try:
                    closed = client.call("POST", f"{API}/positions/close", json={"symbol": target})
                except CliError as exc:
                    if exc.message.startswith("symbol: unknown symbol"):
                        raise CliError(f"no position {target!r}, and no symbol of that name") from None
                    raise
        for p in closed:
            out.print(closed_line(p), markup=False)

    run_client(action)


def events(
    *,
    position_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="Only this position.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 50,
    url: UrlOption = None,
    account: AccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the audit trail (all positions, or one)."""

    def action() -> None:
        path = f"{API}/events"
        if position_id:
            segment = id_segment(position_id)
            if segment is None:
                raise CliError(f"position_id: {position_id!r} is not a position id")
            path = f"{API}/positions/{segment}/events"
        with Client(url, account=account) as client:
            rows = client.call("GET", path, params={"limit": limit})
        if as_json:
            print_json(rows)
            return
        if not rows:
            out.print("no events")
            return
        shown = [[_when(e["at"]), e["position_id"], e["kind"], e["message"]] for e in rows]
        show(table(["AT", "POSITION", "KIND", "MESSAGE"], shown))

    run_client(action)


def reconcile(*, url: UrlOption = None, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Compare the exchange with warden's records now, repair, and print what was found."""

    def action() -> None:
        with Client(url, need_token=True, account=account) as client:
            report = client.call("POST", f"{API}/reconcile")
        if as_json:
            print_json(report)
            return
        found = report["findings"]
        out.print(
            f"checked {report['positions_checked']} positions in {report['seconds'] * 1000:.1f} ms: "
            f"{len(found) or 'no'} discrepanc{'y' if len(found) == 1 else 'ies'}",
            markup=False,
        )
        if found:
            rows = [
                [f["kind"], f["symbol"], f["position_id"] or "-", f["expected"], f["found"], f["action"]]
                for f in found
            ]
            show(table(["KIND", "SYMBOL", "POSITION", "EXPECTED", "FOUND", "ACTION"], rows))

    run_client(action)


def controls_line(c: Mapping[str, Any]) -> str:
    """`paused`, `killed`, `daily loss pause until ...`, or `none`, with the reason."""
    on = [name for name in ("killed", "paused") if c.get(name)]
    if c.get("killed"):
        on = ["killed (kill switch)"]
    if c.get("daily_loss_until"):
        on.append(f"daily loss pause until {_when(c['daily_loss_until'])}")
    text = ", ".join(on) or "none (trading allowed)"
    return f"{text}: {c['reason']}" if on and c.get("reason") else text


def pause(
    *,
    reason: Annotated[str | None, typer.Option("--reason", help="Shown on /status and in the alert.")] = None,
    url: UrlOption = None,
    account: AccountOption = None,
) -> None:
    """Pause: no new entries; exits and protection keep working. Survives restarts."""

    def action() -> None:
        with Client(url, need_token=True, account=account) as client:
            body = client.call("POST", f"{API}/pause", json={"reason": reason or ""})
        out.print(
            f"paused: no new entries; exits and protection keep working ({controls_line(body['controls'])})",
            markup=False,  # the reason is the trader's text: `[/fomc]` is not a rich tag
        )

    run_client(action)


def resume(*, url: UrlOption = None, account: AccountOption = None) -> None:
    """Resume: clear pause, kill switch and the daily-loss pause."""

    def action() -> None:
        with Client(url, need_token=True, account=account) as client:
            client.call("POST", f"{API}/resume", json={})
        out.print("resumed: new entries accepted")

    run_client(action)


def kill(
    *,
    flatten: Annotated[
        bool, typer.Option("--flatten", help="Also close every position reduce-only and cancel every order.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Shown on /status and in the alert.")] = None,
    url: UrlOption = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="The account to stop; without it, an engine serving several accounts stops ALL of them.",
        ),
    ] = None,
) -> None:
    """Kill switch: no new entries; with --flatten close every position and cancel every order."""

    def action() -> None:
        with Client(url, need_token=True, account=account) as client:
            try:
                body = client.call("POST", f"{API}/kill", json={"flatten": flatten, "reason": reason or ""})
            except CliError as exc:
                # 503 kill_incomplete: each account's outcome still shows (what main's flatten
                # closed, and did NOT close; where alt's kill is kept), then the error and exit 1
                if isinstance(exc.body, Mapping) and exc.body.get("scope") == "all accounts":
                    every_account(exc.body, done=False)
                raise
        if body.get("scope") == "all accounts":
            every_account(body, done=True)
            left = {
                f"{name}: {pid}"
                for name, one in (body.get("accounts") or {}).items()
                for pid in one.get("failed") or {}
            }
        else:
            out.print(kill_line(body), markup=False)
            left = set(body.get("failed") or {})
        if left:
            # the kill switch is on, but the flatten asked for is not done: a script reading `$?`
            # must not take the account for flat
            raise CliError(
                f"flatten: {len(left)} position(s) NOT closed ({', '.join(sorted(left))}):"
                " run kill --flatten again"
            )

    run_client(action)


def every_account(body: Mapping[str, Any], done: bool) -> None:
    """A kill of every account: one line per account, its outcome or why it was not stopped."""
    accounts: Mapping[str, Any] = body.get("accounts") or {}
    out.print(f"kill switch {'on' if done else 'NOT on'} ALL {len(accounts)} accounts:", markup=False)
    for name, one in accounts.items():
        line = f"NOT stopped: {one['error']}" if "error" in one else kill_line(one)
        out.print(f"  {name}: {line}", markup=False)


def kill_line(body: Mapping[str, Any]) -> str:
    line = "kill switch on: no new entries"
    closed, failed = body.get("closed", []), body.get("failed", {})
    if closed or failed:
        pnl = sum(Decimal(p["realized_pnl"] or 0) for p in closed)
        line += f"; closed {len(closed)} position(s), realized PnL {pnl}"
        if body.get("cancelled_orders"):
            line += f", cancelled {body['cancelled_orders']} order(s)"
        if failed:
            line += "; NOT closed: " + "; ".join(f"{pid}: {why}" for pid, why in failed.items())
    return line


def register(app: typer.Typer) -> None:
    app.command()(pause)
    app.command()(resume)
    app.command()(kill)
    app.command()(reconcile)
    app.command()(status)
    app.command()(positions)
    app.command("open")(open_)
    app.command()(close)
    app.command()(events)
