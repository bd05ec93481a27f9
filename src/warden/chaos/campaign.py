"""A campaign: N scenarios from one seed, each on its own loop, database and exchange.

Runs are independent: each gets a fresh WarpLoop (so a run that spins forever is cut off by
its real-time limit, recorded, and the campaign goes on), a fresh database copied from the
campaign's template, and a fresh simulated exchange.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from warden.chaos import warp
from warden.chaos.checker import Violation
from warden.chaos.databases import Databases
from warden.chaos.generate import scenario
from warden.chaos.runner import Options, Run, RunResult, Trace
from warden.chaos.steps import Scenario
from warden.chaos.subject import ACCOUNT, INSTALLATION

REAL_LIMIT = 20.0
"""Real seconds one in-process run may take before it counts as hung (a spin that never lets time pass)."""


def quiet() -> None:
    """The engine logs every fault it survives; a campaign reports them itself."""
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


@dataclass
class Totals:
    """What a campaign adds up to (report.py renders it)."""

    seed: int
    runs: int = 0
    process_runs: int = 0
    steps: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    recoveries: int = 0
    violations: list[tuple[str, Violation]] = field(default_factory=list)
    longest: float = 0.0
    longest_at: str = ""
    longest_raw: float = 0.0
    seconds: float = 0.0
    process_seconds: float = 0.0
    virtual_seconds: float = 0.0
    database: str = "sqlite"
    subject: str = "warden"
    stopped_early: bool = False
    replay_flags: str = ""
    """What `--replay` needs besides the key to play a run the same way (`--db`, `--naive`)."""

    def add(self, result: RunResult) -> None:
        if result.where == "processes":
            self.process_runs += 1
            self.process_seconds += result.real_seconds
        else:
            self.runs += 1
            self.seconds += result.real_seconds
        self.steps += result.steps
        self.faults.update(result.faults)
        self.crashes += result.crashes
        self.recoveries += result.recoveries
        self.violations += [(result.key, v) for v in result.violations]
        self.virtual_seconds += result.virtual_seconds
        if result.longest > self.longest:
            self.longest, self.longest_at = result.longest, result.key
        self.longest_raw = max(self.longest_raw, result.longest_raw)

    def merge(self, other: Totals) -> None:
        """Add another part of the same campaign (another worker's runs)."""
        self.runs += other.runs
        self.process_runs += other.process_runs
        self.steps += other.steps
        self.faults.update(other.faults)
        self.crashes += other.crashes
        self.recoveries += other.recoveries
        self.violations += other.violations
        self.seconds += other.seconds
        self.process_seconds += other.process_seconds
        self.virtual_seconds += other.virtual_seconds
        if other.longest > self.longest:
            self.longest, self.longest_at = other.longest, other.longest_at
        self.longest_raw = max(self.longest_raw, other.longest_raw)
        self.stopped_early = self.stopped_early or other.stopped_early

    @property
    def scenarios_per_minute(self) -> float:
        return 60 * self.runs / self.seconds if self.seconds else 0.0

    @property
    def process_scenarios_per_minute(self) -> float:
        return 60 * self.process_runs / self.process_seconds if self.process_seconds else 0.0


def _part(seed: int, first: int, runs: int) -> Totals:
    quiet()
    return campaign(seed, runs, first=first)


def parallel_campaign(seed: int, runs: int, workers: int, chunk: int = 100) -> Totals:
    """Runs 1..`runs` of `seed` in process, spread over `workers` processes in chunks (each
    run is the same run whichever process plays it: a scenario is a function of seed and run)."""
    totals = Totals(seed)
    if workers <= 1:
        totals.merge(campaign(seed, runs))
        return totals
    starts = range(1, runs + 1, chunk)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        parts = [pool.submit(_part, seed, first, min(chunk, runs + 1 - first)) for first in starts]
        for part in parts:
            totals.merge(part.result())
    totals.violations.sort(key=lambda kv: int(kv[0].split(":")[1].lstrip("p")))
    return totals


def prepare(databases: Databases) -> None:
    warp.run(databases.prepare(ACCOUNT, INSTALLATION))


def close(databases: Databases) -> None:
    warp.run(databases.close())


def run_one(
    plan: Scenario,
    databases: Databases,
    options: Options,
    trace: Trace | None = None,
    real_limit: float | None = REAL_LIMIT,
) -> RunResult:
    """Play one scenario on a fresh WarpLoop; a run cut off by `real_limit` is a violation."""
    run = Run(plan, databases, options, trace)
    started = time.perf_counter()
    try:
        return warp.run(run.play(), real_limit)
    except warp.Hung:
        result = run.result
        step = result.records[-1].step.index if result.records else 0
        result.violations.append(
            Violation(
                "hang",
                f"the run spun for {real_limit:g}s of real time without letting virtual time pass "
                f"(a loop without backoff); cut off",
                step,
            )
        )
        result.real_seconds = time.perf_counter() - started
        if trace is not None:
            trace(f"    VIOLATION hang: {result.violations[-1].message}")
        return result


def campaign(
    seed: int,
    runs: int,
    *,
    minutes: float | None = None,
    db: str | None = None,
    options: Options | None = None,
    first: int = 1,
    on_run: Callable[[RunResult], None] | None = None,
) -> Totals:
    """Play runs `first`..`first + runs - 1` of `seed` in process (until `minutes`, if given)."""
    options = options or Options()
    databases = Databases(db)
    totals = Totals(seed, database=databases.kind, subject=options.subject)
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    prepare(databases)
    try:
        for run in range(first, first + runs):
            if deadline is not None and time.monotonic() > deadline:
                totals.stopped_early = True
                break
            result = run_one(scenario(seed, run), databases, options)
            totals.add(result)
            if on_run is not None:
                on_run(result)
    finally:
        close(databases)
    return totals
