"""Operator commands: benchmarks, database migrations, the simulated exchange server."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from warden.entrypoints.client import err, fail, out


class Venue(StrEnum):
    BINANCE = "binance"
    BYBIT = "bybit"
    DRIFT = "drift"


db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
sim_app = typer.Typer(help="The simulated exchange.", no_args_is_help=True)


@sim_app.command("serve")
def sim_serve(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it on loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for REST and WebSocket.")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the price walk.")] = 42,
    state_file: Annotated[
        str | None, typer.Option("--state-file", help="Keep the simulated account across restarts.")
    ] = None,
    price_interval: Annotated[
        float,
        typer.Option(
            "--price-interval",
            min=0,
            help="Seconds between random-walk steps of the marks; 0 turns the walk off "
            "(marks then move only through POST /sim/price).",
        ),
    ] = 1.0,
    venue: Annotated[
        Venue,
        typer.Option(
            "--venue",
            help="The protocol it speaks: binance (USD-M futures), bybit (v5 linear) or drift (the sidecar).",
        ),
    ] = Venue.BINANCE,
    accounts: Annotated[
        int,
        typer.Option(
            "--accounts",
            min=1,
            help="Serve this many independent accounts, one per port from --port up (a fleet's test bed).",
        ),
    ] = 1,
    markets: Annotated[
        int,
        typer.Option(
            "--markets",
            min=3,
            help="How many markets to list: BTC, ETH and SOL, then interchangeable S000, S001, ... "
            "(each at 100 USDT) up to this many; binance and bybit. More symbols for a test bed that "
            "holds many positions (an exchange rests at most 10 stops and take-profits per symbol).",
        ),
    ] = 3,
    clock_offset: Annotated[
        float,
        typer.Option(
            "--clock-offset",
            help="Seconds the simulated exchange's clock runs ahead of this host's (negative: behind), "
            "as a drifted host sees a real exchange; binance and bybit. POST /sim/faults "
            '{"clock_offset": s} changes it while it runs.',
        ),
    ] = 0.0,
) -> None:
    """Serve a simulated exchange that speaks Binance USD-M or Bybit v5 (key sim-key, secret sim-secret),
    or with --venue drift the Drift sidecar protocol.

    Point warden at it with: warden run --exchange binanceusdm (or bybit, or drift) --exchange-url
    http://HOST:PORT (WARDEN_API_KEY=sim-key WARDEN_API_SECRET=sim-secret). Control surface under /sim/.
    """
    from warden.bootstrap import serve_sim

    if accounts > 1 and (state_file is not None or venue is Venue.DRIFT):
        fail("sim serve: --accounts > 1 takes no --state-file and serves binance or bybit", code=2)
    if clock_offset and venue is Venue.DRIFT:
        fail("sim serve: --clock-offset applies to binance and bybit, not drift", code=2)
    if markets != 3 and venue is Venue.DRIFT:
        fail("sim serve: --markets applies to binance and bybit, not drift", code=2)
    names = {
        Venue.BINANCE: "Binance USD-M",
        Venue.BYBIT: "Bybit v5 linear",
        Venue.DRIFT: "Drift (sidecar protocol)",
    }
    where = f"http://{host}:{port}" + (
        f" to {port + accounts - 1} ({accounts} accounts)" if accounts > 1 else ""
    )
    out.print(f"simulated {names[venue]} on {where} (key sim-key, secret sim-secret); Ctrl-C stops")
    try:
        asyncio.run(
            serve_sim(
                host,
                port,
                seed,
                state_file,
                price_interval=price_interval,
                venue=venue.value,
                accounts=accounts,
                clock_offset=clock_offset,
                markets=markets,
            )
        )
    except KeyboardInterrupt:
        out.print("stopped")
    except OSError as exc:  # a port taken, a host this machine does not have
        fail(f"sim serve: cannot listen on {where}: {exc.strerror or exc}", code=1)


def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Which: open, ticks, recovery, reconcile, e2e, mass, fleet, chaos, or all (default)."
        ),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes, for a smoke run.")] = False,
) -> None:
    """Measure what the README's performance table reports, on this machine."""
    from warden.bench.runner import NAMES, run

    chosen = list(NAMES) if not names or names == ["all"] else names
    unknown = [n for n in chosen if n not in NAMES]
    if unknown:
        fail(f"bench: unknown benchmark {unknown[0]!r} (choose from {', '.join(NAMES)}, all)")
    run(chosen, quick, lambda line: out.print(line, markup=False, highlight=False))


def chaos(
    runs: Annotated[int, typer.Option("--runs", help="Randomized scenarios to run.")] = 100,
    seed: Annotated[
        int | None, typer.Option("--seed", help="The campaign's seed (default: a random one, printed).")
    ] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", help="Stop after this long (whichever ends first).")
    ] = None,
    venue: Annotated[
        str,
        typer.Option(
            "--venue",
            help="sim: in process, with a slice over real processes; binance, bybit, drift: every run "
            "over real processes (warden sim serve --venue X + warden run; ccxt for binance and bybit, "
            "the sidecar protocol for drift), with the faults that face can inject.",
        ),
    ] = "sim",
    db: Annotated[
        str | None,
        typer.Option("--db", help="postgresql://... to run every database on that server (needs CREATEDB)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON report on stdout.")] = False,
    replay: Annotated[
        str | None,
        typer.Option(
            "--replay",
            help="SEED:RUN: play one run again with a step-by-step trace (with --venue bybit or "
            "drift: that venue's run).",
        ),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", help="seed-000 | seed-001 | seed-002 | seed-003: replay an incident."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option("--processes", help="How many of the runs go over real processes (default: 1 in 50)."),
    ] = None,
    naive: Annotated[
        bool, typer.Option("--naive", help="Run against the naive twin instead (the checker must object).")
    ] = False,
) -> None:
    """Randomized scenarios under every fault at once, the promise checked after every step.

    The report's last line is `violations: N`; the exit code is 1 when N > 0.
    """
    from warden.chaos.command import ChaosUsage, campaign_command, replay_command, scenario_command

    def emit(line: str) -> None:
        out.print(line, markup=False, highlight=False)

    try:
        if scenario is not None:
            code = scenario_command(scenario, db=db, out=emit)
        elif replay is not None:
            code = replay_command(replay, db=db, naive=naive, out=emit, venue=venue)
        else:
            code = campaign_command(
                runs=runs,
                seed=seed,
                minutes=minutes,
                venue=venue,
                db=db,
                as_machine=as_json,
                processes=processes,
                naive=naive,
                out=emit,
                err=err,
            )
    except ChaosUsage as exc:
        fail(str(exc), code=2)
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: the configured one).")
    ] = None,
) -> None:
    """Apply every pending schema migration (warden run also does this at start)."""
    from warden.bootstrap import upgrade_database
    from warden.config import database_url_flaw
    from warden.entrypoints.client import CliError, load_settings
    from warden.ports import StoreSchemaError, StoreUnavailable

    try:
        url = db or load_settings().db
        why = database_url_flaw(url)  # --db is checked as the setting is
        if why is not None:
            fail(f"db: {why}", code=2)
        asyncio.run(upgrade_database(url))
    except CliError as exc:
        fail(exc.message, exc.code)
    except (
        StoreUnavailable,
        StoreSchemaError,
        ValueError,
    ) as exc:  # the message shows the URL without its password
        fail(f"db: {exc}")
    out.print(f"database at {url.split('@')[-1]} is at the newest schema", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.command()(chaos)
    app.add_typer(db_app, name="db")
    app.add_typer(sim_app, name="sim")
