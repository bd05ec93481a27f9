"""`warden bench chaos`: how fast the chaos campaign runs, and the longest unprotected window
it saw, against the protection window with no violation."""

from __future__ import annotations

import os
import secrets
import time

from warden.bench.report import Result
from warden.chaos.campaign import Totals, parallel_campaign, quiet
from warden.chaos.checker import Violation
from warden.chaos.generate import scenario
from warden.chaos.procs import run_processes
from warden.chaos.runner import Options


def bench_chaos(
    runs: int = 10_000, process_runs: int = 5, seed: int | None = None, workers: int | None = None
) -> Result:
    """`runs` scenarios in process (spread over `workers` processes, default one per core) and
    `process_runs` over real processes, from one seed."""
    quiet()
    seed = secrets.randbelow(2**31) if seed is None else seed
    workers = workers or os.cpu_count() or 1
    options = Options()
    started = time.perf_counter()
    totals: Totals = parallel_campaign(seed, runs, workers)
    wall = time.perf_counter() - started
    for run in range(1, process_runs + 1):
        totals.add(run_processes(scenario(seed, run, processes=True)))
    window = options.protection_window
    result = Result(
        f"chaos: {runs:,} randomized scenarios in process, {process_runs} over real processes (seed {seed})"
    )
    result.add(
        "in process",
        f"{60 * totals.runs / wall:.0f} scenarios/min on {workers} worker(s) "
        f"({totals.scenarios_per_minute:.0f} per worker; {totals.steps:,} steps, "
        f"{sum(totals.faults.values()):,} faults, {totals.crashes:,} crashes and recoveries; "
        f"SQLite, in-process sim, virtual time)",
    )
    result.add(
        "over real processes",
        f"{totals.process_scenarios_per_minute:.1f} scenarios/min (sim server, warden run, ccxt, kill -9)",
    )
    result.add(
        "longest unprotected window",
        f"{totals.longest:.3f} s (run {totals.longest_at or '-'}); "
        f"{totals.longest_raw:.1f} s with outside trades and exchange refusals",
    )
    result.add("violations", f"{len(totals.violations)}")
    add_violations(result, totals.violations)
    met = totals.longest <= window and not totals.violations
    result.verdict = (
        f"goal: within the protection window ({window:g} s), 0 violations: {'met' if met else 'NOT met'}"
    )
    return result


def add_violations(result: Result, violations: list[tuple[str, Violation]], shown: int = 60) -> None:
    """A line for each of the first `shown` violations, numbered: two of one run at one step (two
    orders placed twice) are two lines, not one figure written over the other."""
    for n, (key, violation) in enumerate(violations[:shown], 1):
        result.add(f"  {n}. {key} step {violation.step}", f"{violation.invariant}: {violation.message}")
