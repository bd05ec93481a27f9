"""Operator commands: benchmarks, database migrations, the simulated exchange server."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from warden.entrypoints.client import fail, out

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Which: open, ticks, recovery, reconcile, or all (default)."),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes, for a smoke run.")] = False,
) -> None:
    """Measure what the README's performance table reports, on this machine."""
    from warden.bench.runner import NAMES, run

    chosen = list(NAMES) if not names or names == ["all"] else names
    unknown = [n for n in chosen if n not in NAMES]
    if unknown:
        fail(f"error: bench: unknown benchmark {unknown[0]!r} (choose from {', '.join(NAMES)}, all)")
    run(chosen, quick, out)


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: the configured one).")] = None,
) -> None:
    """Apply every pending schema migration (warden run also does this at start)."""
    from warden.bootstrap import upgrade_database
    from warden.entrypoints.client import load_settings

    url = db or load_settings().db
    asyncio.run(upgrade_database(url))
    out(f"database at {url.split('@')[-1]} is at the newest schema")


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.add_typer(db_app, name="db")
