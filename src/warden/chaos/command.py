"""What `warden chaos` does, behind its typer command (entrypoints/ops.py parses the flags)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from warden.chaos import incidents
from warden.chaos.campaign import Totals, close, prepare, quiet, run_one
from warden.chaos.databases import Databases
from warden.chaos.generate import scenario
from warden.chaos.report import as_json, as_text
from warden.chaos.runner import Options, RunResult
from warden.chaos.steps import Scenario

Emit = Callable[[str], None]
VENUES = ("sim", "binance", "bybit", "drift")
FACED = ("binance", "bybit", "drift")
"""Venues every run of which goes over real processes, on that face of `warden sim serve`."""


class ChaosUsage(ValueError):
    """A flag the command cannot run with; the message names it."""


def default_processes(runs: int) -> int:
    """The slice of a campaign played over real processes: one in fifty runs (none below ten)."""
    return 0 if runs < 10 else max(1, runs // 50)


def parse_key(key: str) -> tuple[int, int, bool]:
    """`SEED:RUN` (in process) or `SEED:pRUN` (over processes)."""
    seed, _, run = key.partition(":")
    processes = run.startswith("p")
    try:
        return int(seed), int(run[1:] if processes else run), processes
    except ValueError as exc:
        raise ChaosUsage(
            f"replay: {key!r} is not SEED:RUN (e.g. 1234:17, or 1234:p2 for a process run)"
        ) from exc


def campaign_command(
    *,
    runs: int,
    seed: int | None,
    minutes: float | None,
    venue: str,
    db: str | None,
    as_machine: bool,
    processes: int | None,
    naive: bool,
    out: Emit,
    err: Console,
) -> int:
    """Run the campaign and print its report; the exit code is 1 if anything was violated."""
    if venue not in VENUES:
        raise ChaosUsage(f"venue: must be one of {', '.join(VENUES)}, not {venue!r}")
    if runs < 1:
        raise ChaosUsage("runs: must be at least 1")
    quiet()
    seed = secrets.randbelow(2**31) if seed is None else seed
    over_processes = runs if venue in FACED else default_processes(runs) if processes is None else processes
    over_processes = min(over_processes, runs)
    in_process = runs - over_processes
    options = Options(subject="naive" if naive else "warden")
    err.print(
        f"warden chaos: seed {seed}; {in_process} runs in process, {over_processes} over real processes",
        highlight=False,
    )
    databases = Databases(db)
    totals = Totals(seed, database=databases.kind, subject=options.subject)
    totals.replay_flags = (
        (f" --venue {venue}" if venue in FACED and venue != "binance" else "")
        + (f" --db {db}" if db else "")
        + (" --naive" if naive else "")
    )
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    prepare(databases)
    try:
        with _progress(err) as progress:
            task = progress.add_task("runs", total=runs, note="violations: 0")

            def done(result: RunResult) -> None:
                totals.add(result)
                progress.update(task, advance=1, note=f"violations: {len(totals.violations)}")

            for run in range(1, in_process + 1):
                if deadline is not None and time.monotonic() > deadline:
                    totals.stopped_early = True
                    break
                done(run_one(scenario(seed, run), databases, options))
            if over_processes and not totals.stopped_early:
                from warden.chaos.procs import run_processes

                face = venue if venue in FACED else "binance"
                for run in range(1, over_processes + 1):
                    if deadline is not None and time.monotonic() > deadline:
                        totals.stopped_early = True
                        break
                    done(run_processes(_plan(seed, run, face), naive=naive, venue=face))
    finally:
        close(databases)
    window = options.protection_window
    if as_machine:
        out(json.dumps(as_json(totals, window), indent=2))
    else:
        out(as_text(totals, window))
    return 1 if totals.violations else 0


def _plan(seed: int, run: int, venue: str) -> Scenario:
    """A process run's scenario: only the faults `venue`'s face of the simulator can inject."""
    from warden.chaos.faces import FACE_FAULTS, IN_PARTS

    return scenario(seed, run, processes=True, faults=FACE_FAULTS[venue], in_parts=IN_PARTS[venue])


def replay_command(key: str, *, db: str | None, naive: bool, out: Emit, venue: str = "sim") -> int:
    """Play one run again, deterministically, with a step-by-step trace. On bybit and drift every
    run is a process run on that face (`SEED:RUN` and `SEED:pRUN` name the same run)."""
    if venue not in VENUES:
        raise ChaosUsage(f"venue: must be one of {', '.join(VENUES)}, not {venue!r}")
    seed, run, processes = parse_key(key)
    quiet()
    if processes or venue in ("bybit", "drift"):
        from warden.chaos.procs import run_processes

        face = venue if venue in FACED else "binance"
        result = run_processes(_plan(seed, run, face), naive=naive, trace=out, venue=face)
    else:
        databases = Databases(db)
        prepare(databases)
        try:
            options = Options(subject="naive" if naive else "warden")
            result = run_one(scenario(seed, run), databases, options, trace=out)
        finally:
            close(databases)
    out(
        f"run {key}: {result.steps} steps, {sum(result.faults.values())} faults, {result.crashes} crashes; "
        f"longest unprotected {result.longest:.3f} s"
    )
    out(f"violations: {len(result.violations)}")
    return 1 if result.violations else 0


def scenario_command(name: str, *, db: str | None, out: Emit) -> int:
    """Replay one incident of ../shared/seeds/ against warden, then the naive twin."""
    if name not in incidents.NAMES:
        raise ChaosUsage(f"scenario: must be one of {', '.join(incidents.NAMES)}, not {name!r}")
    quiet()
    mine, naive = incidents.replay(name, out, db)
    shown = sum(not v.met for v in naive.verdicts) + len(naive.violations)
    out(
        f"{name}: warden {'met' if mine.met else 'did NOT meet'} the outcome the incident should have had; "
        f"the naive twin {'met it too' if naive.met else f'did not ({shown} failures)'}"
    )
    out(f"violations: {len(mine.violations) + sum(not v.met for v in mine.verdicts)}")
    return 0 if mine.met else 1


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]chaos"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
