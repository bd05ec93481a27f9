"""A fleet over real processes: engines (`warden run`, one TOML with every account, PostgreSQL
leases, a capacity each) share accounts traded on `warden sim serve` through ccxt; the engine
holding the most is killed with kill -9 and the others take its accounts over. Judged by the
exchanges (every position stays covered) and the survivors' APIs (one holder per account, every
position still tracked). The same run `warden bench fleet` measures at scale."""

from __future__ import annotations

import pytest

from warden.bench.fleet_bench import PROTECTION_WINDOW, TAKEOVER_GOAL, fleet_run

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
