"""Run the named benchmarks and render them with the machine they ran on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from warden.bench.open_bench import bench_open
from warden.bench.recovery_bench import bench_recovery
from warden.bench.report import Result, machine
from warden.bench.ticks_bench import bench_ticks

NAMES = ("open", "ticks", "recovery", "reconcile", "e2e", "mass", "fleet", "chaos")


def _reconcile(quick: bool) -> list[Result]:
    from warden.bench.reconcile_bench import bench_reconcile

    return asyncio.run(bench_reconcile(n=2_000 if quick else 10_000))


def _e2e(quick: bool) -> list[Result]:
    from warden.bench.e2e_bench import bench_e2e

    return asyncio.run(bench_e2e(n=30 if quick else 200))


def _mass(quick: bool) -> list[Result]:
    from warden.bench.mass_bench import bench_mass

    return asyncio.run(bench_mass(n=200 if quick else 1000))


def _fleet(quick: bool) -> list[Result]:
    from warden.bench.fleet_bench import bench_fleet, bench_fleet_host_death

    kill = bench_fleet(engines=3, accounts=4, positions=3) if quick else bench_fleet()
    return [kill, bench_fleet_host_death(accounts=4 if quick else 6)]


def _chaos(quick: bool) -> list[Result]:
    from warden.bench.chaos_bench import bench_chaos

    return [bench_chaos(runs=100 if quick else 10_000, process_runs=1 if quick else 5)]


BENCHES: dict[str, Callable[[bool], list[Result]]] = {
    "open": lambda quick: [asyncio.run(bench_open(n=200 if quick else 1000))],
    "ticks": lambda quick: [bench_ticks(ticks=200_000 if quick else 1_000_000, rounds=3 if quick else 5)],
    "recovery": lambda quick: [asyncio.run(bench_recovery(n=2_000 if quick else 10_000))],
    "reconcile": _reconcile,
    "e2e": _e2e,
    "mass": _mass,
    "fleet": _fleet,
    "chaos": _chaos,
}


def run(names: list[str], quick: bool, emit: Callable[[str], None]) -> list[Result]:
    emit(f"machine: {machine()}")
    results = []
    for name in names:
        for result in BENCHES[name](quick):
            emit(result.render())
            results.append(result)
    return results
