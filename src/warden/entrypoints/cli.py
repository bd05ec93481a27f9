"""The `warden` command.

`warden run` starts the engine and the HTTP API in one event loop; the other
commands are HTTP clients of a running engine (see `client.py`).

More commands hang off `app`: add one with `@app.command()`, or a group with
`app.add_typer(sub_app, name="sim")` (`warden sim serve`, `warden db upgrade`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from warden.config import ConfigError, Settings, describe, read_token_flaw
from warden.domain.errors import ValidationError as DomainValidationError
from warden.entrypoints import client, ops
from warden.entrypoints.client import err, fail, out
from warden.entrypoints.token import ApiToken, TokenError, ensure_token, find_token
from warden.logging import configure_logging, get_logger
from warden.ports import StoreSchemaError, StoreUnavailable

app = typer.Typer(
    name="warden",
    help="Crash-safe position manager for crypto futures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
client.register(app)
ops.register(app)

log = get_logger("warden.cli")

GRACEFUL_SHUTDOWN = 10
"""Seconds Ctrl-C waits for in-flight requests before the engine shuts down anyway."""


def _opt(name: str, *flags: str) -> Any:
    """A `run` flag whose help is the setting's description (so `--help` matches the README)."""
    return typer.Option(*(flags or (f"--{name.replace('_', '-')}",)), help=describe(name), show_default=False)


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="WARDEN_CONFIG", help="TOML settings file."),
]


@app.command()
def run(
    *,
    config: ConfigOption = None,
    host: Annotated[str | None, _opt("host")] = None,
    port: Annotated[int | None, _opt("port")] = None,
    db: Annotated[str | None, _opt("db")] = None,
    data_dir: Annotated[Path | None, _opt("data_dir")] = None,
    exchange: Annotated[str | None, _opt("exchange")] = None,
    exchange_url: Annotated[str | None, _opt("exchange_url")] = None,
    testnet: Annotated[bool | None, _opt("testnet", "--testnet/--no-testnet")] = None,
    leverage: Annotated[int | None, _opt("leverage")] = None,
    margin_mode: Annotated[str | None, _opt("margin_mode")] = None,
    account: Annotated[str | None, _opt("account")] = None,
    capacity: Annotated[int | None, _opt("capacity")] = None,
    engine_name: Annotated[str | None, _opt("engine_name")] = None,
    stop_pct: Annotated[str | None, _opt("stop_pct")] = None,
    tp1_pct: Annotated[str | None, _opt("tp1_pct")] = None,
    tp1_fraction: Annotated[str | None, _opt("tp1_fraction")] = None,
    tp2_pct: Annotated[str | None, _opt("tp2_pct")] = None,
    tp2_fraction: Annotated[str | None, _opt("tp2_fraction")] = None,
    trail_pct: Annotated[str | None, _opt("trail_pct")] = None,
    breakeven_after_tp1: Annotated[
        bool | None, _opt("breakeven_after_tp1", "--breakeven-after-tp1/--no-breakeven-after-tp1")
    ] = None,
    default_usd: Annotated[str | None, _opt("default_usd")] = None,
    allow_stacking: Annotated[
        bool | None, _opt("allow_stacking", "--allow-stacking/--no-allow-stacking")
    ] = None,
    orphan_policy: Annotated[str | None, _opt("orphan_policy")] = None,
    log_level: Annotated[str | None, _opt("log_level")] = None,
    log_json: Annotated[bool | None, _opt("log_json", "--log-json/--no-log-json")] = None,
) -> None:
    """Run the engine and the HTTP API (default: simulated exchange, SQLite under ./data).

    Flags beat WARDEN_* environment variables, which beat the --config file, which beats the defaults.
    """
    flags = {k: v for k, v in locals().items() if k != "config"}
    try:
        settings = Settings.load(config, **flags)
        if settings.accounts and "account" in settings.model_fields_set:
            # --account, WARDEN_ACCOUNT or `account` in the file: this engine serves that one table
            settings = settings.only(settings.account)
        settings.check_flags(flags)  # a flag one of its tables overrides is refused, not ignored
    except ConfigError as exc:
        fail(f"{exc.field}: {exc.message}", code=2)
    configure_logging(settings.log_level, settings.log_json)
    try:
        token = ensure_token(settings)
        read_token_flaw(token.value, settings.api_read_token)  # the token file's, when api_token is unset
    except DomainValidationError as exc:
        fail(f"{exc.field}: {exc.message}", code=2)
    except (TokenError, OSError) as exc:
        fail(f"api_token: {exc}")
    settings = settings.model_copy(update={"api_token": token.value})
    sock = _bind(settings)
    try:
        asyncio.run(serve(settings, token, sock))
    except KeyboardInterrupt:  # Ctrl-C before the API was up: asyncio cancelled the startup
        err.print("warden: interrupted during startup", markup=False)
        raise typer.Exit(130) from None
    except ConfigError as exc:  # a setting found wrong only once the engine is built (no key for a venue)
        fail(f"{exc.field}: {exc.message}", code=2)
    except NoAccountStarted as exc:  # each account's reason is printed already
        fail(str(exc))
    except (StoreUnavailable, StoreSchemaError) as exc:  # `db` does not answer, or its schema is newer
        # (shown without its password)
        log.error("warden_failed", error=str(exc))
        fail(f"db: {exc}")
    except Exception as exc:
        log.exception("warden_failed")
        fail(f"{type(exc).__name__}: {exc}")
    finally:
        sock.close()


async def serve(settings: Settings, token: ApiToken, sock: socket.socket) -> None:
    """Start the engine, then the API on `sock`, in this event loop; stop both on a signal."""
    # Imported here so the client commands never load the database and exchange adapters.
    from warden.bootstrap import running

    nothing_started = False
    async with contextlib.AsyncExitStack() as stack:
        served: Any
        if settings.accounts:
            from warden.bootstrap import running_fleet

            names = ", ".join(
                f"{n} ({settings.accounts[n].exchange or settings.exchange})" for n in settings.accounts
            )
            out.print(f"warden: starting accounts {names}", markup=False)
            beside_fleet = []
            if settings.telegram_token is not None:
                from warden.entrypoints.telegram import run_fleet_bot

                beside_fleet.append(run_fleet_bot)
            served = await stack.enter_async_context(running_fleet(settings, beside=beside_fleet))
            for name, why in served.failures.items():
                err.print(f"warden: account {name} is not running: {why}", markup=False)
            for name in sorted(served.starting):
                err.print(f"warden: account {name} is still starting; it joins when it can", markup=False)
            if not served.runtimes and not served.retrying and not served.starting:
                # said once the fleet has stopped: raised in here, it came out of the fleet's
                # task group as an ExceptionGroup, with a traceback
                nothing_started = True
        else:
            out.print(
                f"warden: starting ({settings.exchange} exchange, account {settings.account})", markup=False
            )
            beside = []
            if settings.telegram_token is not None:  # python-telegram-bot takes ~0.2 s to import
                from warden.entrypoints.telegram import run_bot

                beside.append(run_bot)
            served = await stack.enter_async_context(running(settings, beside=beside))
        if not nothing_started:
            await _serve_api(settings, token, sock, served)
    if nothing_started:
        raise NoAccountStarted("no account could start (each is named above)")
    out.print("warden: stopped cleanly", markup=False)


class NoAccountStarted(Exception):
    """Every [accounts.*] table of this engine failed to start, for reasons already printed."""


async def _serve_api(settings: Settings, token: ApiToken, sock: socket.socket, served: Any) -> None:
    """The HTTP API over what `serve` started, on `sock`, until a signal stops it."""
    from warden.entrypoints.api import API, create_app

    api = create_app(lambda: served)
    config = uvicorn.Config(
        api,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    server = QuietServer(config)
    out.print(f"warden: API on {settings.api_url}{API} (health: {settings.api_url}/healthz)", markup=False)
    out.print(f"warden: {token.describe()}", markup=False)
    out.print("warden: Ctrl-C stops", markup=False)
    log.info("api_listening", url=settings.api_url)
    await server.serve(sockets=[sock])


def _bind(settings: Settings) -> socket.socket:
    """Bind the API port before anything starts, so a busy port fails fast and names the field."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port: {settings.host}:{settings.port} is already in use (another warden?)")
        fail(f"host: cannot listen on {settings.host}:{settings.port}: {exc.strerror}")
    sock.listen(128)
    sock.setblocking(False)
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn's server, but a signal only asks it to stop: it is not re-raised afterwards.

    Plain uvicorn re-raises the captured SIGINT when `serve()` returns, which
    would cancel warden's own shutdown halfway through.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@app.command()
def token(*, config: ConfigOption = None) -> None:
    """Print the API token (creating <data_dir>/api-token if there is none yet)."""
    try:
        settings = Settings.load(config)
        existing = find_token(settings)
        value = existing if existing is not None else ensure_token(settings).value
    except ConfigError as exc:
        fail(f"{exc.field}: {exc.message}", code=2)
    except (TokenError, OSError) as exc:
        fail(f"api_token: {exc}")
    if existing is None:
        err.print(f"created {settings.token_file}", markup=False)
    out.print(value.get_secret_value(), markup=False)


def main() -> None:
    app()
