"""A fleet over real processes: engines (`warden run`, one TOML with every account, PostgreSQL
leases, a capacity each) share accounts traded on `warden sim serve` through ccxt; the engine
holding the most is killed with kill -9 and the others take its accounts over. Judged by the
exchanges (every position stays covered) and the survivors' APIs (one holder per account, every
position still tracked). The same run `warden bench fleet` measures at scale."""

from __future__ import annotations

import pytest

from warden.bench.fleet_bench import FREEZE_LEASE_TIMEOUT, PROTECTION_WINDOW, TAKEOVER_GOAL, fleet_run

pytestmark = pytest.mark.slow


def test_a_killed_engines_accounts_are_taken_over_by_the_fleet_with_every_stop_resting(pg_url: str) -> None:
    lines: list[str] = []
    # 15 positions an account: five on a symbol would be fifteen stops and take-profits, more than
    # the exchange rests on one (10); they go round the simulator's ten markets (`--markets`).
    run = fleet_run(engines=3, accounts=4, positions=15, db=pg_url, say=lines.append)
    assert run.problems == [], "\n".join([*run.problems, *lines])
    assert run.capacity == 2 and len(run.victim_held) == 2, lines
    assert sorted(run.takeover) == sorted(run.victim_held), lines
    assert max(run.takeover.values()) <= TAKEOVER_GOAL, run.takeover
    assert run.double_held == []
    assert run.uncovered_samples == []
    assert run.longest_uncovered <= PROTECTION_WINDOW
    assert run.tracked_after == dict.fromkeys(run.tracked_after, 15) and len(run.tracked_after) == 4


def test_a_frozen_engines_accounts_are_taken_over_after_the_lease_timeout_and_it_wakes_to_stand_down(
    pg_url: str,
) -> None:
    """A host that dies keeps its sessions open server-side (the kernel, not the process, answers
    TCP); SIGSTOP does the same to an engine. With `lease_timeout` the others take its accounts
    over once it has been silent that long, a survivor moves a stop of each, and the engine,
    woken with stale memory, stands down having sent the exchanges nothing."""
    lines: list[str] = []
    run = fleet_run(engines=2, accounts=2, positions=3, db=pg_url, say=lines.append, freeze=True)
    assert run.problems == [], "\n".join([*run.problems, *lines])
    assert run.victim_held and sorted(run.takeover) == sorted(run.victim_held), lines
    assert min(run.takeover.values()) >= FREEZE_LEASE_TIMEOUT / 2, run.takeover  # never at once
    assert max(run.takeover.values()) <= FREEZE_LEASE_TIMEOUT + TAKEOVER_GOAL, run.takeover
    assert run.double_held == []
    assert run.uncovered_samples == []
    assert run.longest_uncovered <= PROTECTION_WINDOW
    assert run.stood_down_after_wake is not None, lines
    assert run.sent_after_wake == [], lines
    assert run.tracked_after == dict.fromkeys(run.tracked_after, 3) and len(run.tracked_after) == 2
