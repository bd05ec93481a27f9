"""The checker can find violations: proved against the naive twin and against a position left bare."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pytest

from warden.adapters.sim import SimulatedExchange
from warden.chaos import warp
from warden.chaos.campaign import campaign
from warden.chaos.checker import Checker
from warden.chaos.generate import scenario
from warden.chaos.naive import NaiveSubject
from warden.chaos.ports import DbFaults
from warden.chaos.runner import (
    Options,
    Run,
    _ended_by_its_stop,
    _excused_for,
    _survived,
    cover_hold,
    held_for,
)
from warden.chaos.steps import SOL, Fault, FaultKind
from warden.chaos.subject import Held, id_maker
from warden.domain.reports import OrderRequest
from warden.domain.values import OrderSide, OrderType, Side, Symbol


def test_the_same_seed_and_run_always_make_the_same_scenario() -> None:
    """Scenarios depend on (seed, run) only; other runs of the seed do not change them."""
    assert scenario(42, 7) == scenario(42, 7)
    assert scenario(42, 7) != scenario(42, 8)
    assert scenario(42, 7, processes=True) == scenario(42, 7, processes=True)
    kinds = Counter(f.kind for run in range(1, 200) for s in scenario(5, run).steps for f in s.faults)
    assert len(kinds) >= 15, f"every fault kind is drawn in a campaign: {sorted(kinds)}"


def test_a_position_left_without_a_stop_is_a_violation_unless_excused() -> None:
    """Judged by the exchange: 5 s with no stop is I1; the same 5 s inside an excuse is not."""

    async def main() -> tuple[list[str], list[str]]:
        clock = warp.WarpClock()
        sim = SimulatedExchange(now=clock.now, seed=1, sleep=asyncio.sleep)
        subject = NaiveSubject(sim, "", DbFaults(5.0), id_maker("t"))
        checker = Checker(sim, subject, window=2.0, interval=30.0)
        sim.external_order(SOL, OrderSide.BUY, Decimal("0.5"))
        await asyncio.sleep(5)
        sim.external_order(SOL, OrderSide.SELL, Decimal("0.5"), reduce_only=True)
        found = [v.invariant for v in await checker.check(1, 0.0, asyncio.get_running_loop().time(), [])]
        excused = Checker(sim, subject, window=2.0, interval=30.0)
        excused.excuse(0.0, 10.0, SOL, "an outside trade")
        spared = [v.invariant for v in await excused.check(1, 0.0, asyncio.get_running_loop().time(), [])]
        return found, spared

    found, spared = warp.run(main())
    assert "I1" in found
    assert "I1" not in spared


def test_the_checker_finds_what_the_naive_twin_gets_wrong() -> None:
    """The same scenarios against the naive manager: lost protection, lost fills, disagreement."""
    totals = campaign(2024, 8, options=Options(subject="naive"))
    kinds = Counter(v.invariant for _, v in totals.violations)
    assert kinds["I1"] > 0 and kinds["I4"] > 0 and kinds["I2"] > 0, kinds


def test_across_a_restart_the_exit_state_is_kept_and_the_stop_may_only_tighten() -> None:
    """Chaos 2049494027:5067: a trailing move refused before a crash was made by recovery (the
    refusals had ended): the stop tightened across the restart, which is the plan, not a lost
    state. Everything else must come through unchanged, and the stop must never loosen."""

    def held(side: Side, stop: str, peak: str = "100", tp1: bool = True) -> Held:
        exit_state = ("protected", Decimal("1"), tp1, True, True, Decimal(stop), Decimal(peak), None)
        return Held("p1", Symbol("SOL/USDT:USDT"), side, Decimal("1"), "protected", exit_state)

    assert _survived(held(Side.SHORT, "105"), held(Side.SHORT, "105").exit)
    assert _survived(held(Side.SHORT, "105"), held(Side.SHORT, "104").exit)  # tighter for a short
    assert not _survived(held(Side.SHORT, "105"), held(Side.SHORT, "106").exit)
    assert _survived(held(Side.LONG, "95"), held(Side.LONG, "96").exit)  # tighter for a long
    assert not _survived(held(Side.LONG, "95"), held(Side.LONG, "94").exit)
    assert not _survived(held(Side.LONG, "95"), held(Side.LONG, "96", peak="99").exit)
    assert not _survived(held(Side.LONG, "95"), held(Side.LONG, "95", tp1=False).exit)


def test_a_position_gone_after_a_restart_kept_its_state_only_if_its_stop_ended_it() -> None:
    """Chaos 41418:971: a runner's trailing move met 429s before the crash; recovery made the due
    move (from the restored peak), the exchange refused it as through the market, and the runner
    was closed at market in its place. Gone from memory, its stored row shows the state it was
    restored with and acted on: closed by its stop, TP1, TP2, trailing and the peak as before, the
    stop where it was or tighter. Anything else gone across a restart is a lost state."""

    def before(side: Side, stop: str) -> Held:
        exit_state = ("protected", Decimal("0.021"), True, True, True, Decimal(stop), Decimal("3084.4"), None)
        return Held("p1", Symbol("ETH/USDT:USDT"), side, Decimal("0.021"), "protected", exit_state)

    def ended(
        stop: str, reason: str = "trailing_stop", peak: str = "3084.4", trailing: bool = True, left: str = "0"
    ) -> tuple[object, ...]:
        return ("closed", Decimal(left), True, True, trailing, Decimal(stop), Decimal(peak), reason)

    long = before(Side.LONG, "3050.67")
    assert _ended_by_its_stop(long, ended("3050.67"))  # 41418:971: the move refused, closed at market
    assert _ended_by_its_stop(long, ended("3050.67", reason="stop"))
    assert _ended_by_its_stop(long, ended("3060.00"))  # the move made, then it fired
    assert not _ended_by_its_stop(long, ended("3040.00"))  # loosened
    assert not _ended_by_its_stop(long, ended("3050.67", reason="manual"))
    assert not _ended_by_its_stop(long, ended("3050.67", reason="external"))
    assert not _ended_by_its_stop(long, ended("3050.67", peak="3100"))  # not the restored peak
    assert not _ended_by_its_stop(long, ended("3050.67", trailing=False))
    assert not _ended_by_its_stop(long, ended("3050.67", left="0.021"))
    assert not _ended_by_its_stop(before(Side.SHORT, "3050.67"), ended("3060.00"))  # looser for a short
    failed = ("failed", *ended("3050.67")[1:])
    assert not _ended_by_its_stop(long, failed)


def test_a_stop_held_while_every_close_is_held_too_is_excused_for_the_shorter_hold() -> None:
    """Chaos 1238:170: the exchange held every stop 2.45 s (answered "unknown", executed later)
    and acknowledged every close, filling it only 12 s later. The stop sent on the fill rested
    2.45 s after it: nothing sent could cover sooner, so that time is the exchange's. Each stop
    held is excused from its send for the shorter of the two holds; stops held alone (closes go
    through at once) excuse nothing."""
    stops = Fault(FaultKind.EXECUTE_LATE, seconds=2.45, roles="s")
    closes_acked = Fault(FaultKind.ACK_ONLY, seconds=12.0, roles="c")
    assert cover_hold(stops, (stops, closes_acked)) == 2.45
    briefly = Fault(FaultKind.ACK_ONLY, seconds=1.5, roles="c")
    assert cover_hold(stops, (stops, briefly)) == 1.5, "a close filled sooner covers sooner"
    assert cover_hold(stops, (stops,)) == 0.0, "a close goes through at once"
    entries_acked = Fault(FaultKind.ACK_ONLY, seconds=12.0, roles="e")
    assert cover_hold(stops, (stops, entries_acked)) == 0.0, "closes are not held"
    both = Fault(FaultKind.EXECUTE_LATE, seconds=4.85, roles="sc")
    assert cover_hold(both, (both,)) == 4.85
    entries = Fault(FaultKind.EXECUTE_LATE, seconds=4.85, roles="e")
    assert cover_hold(entries, (entries, closes_acked)) == 0.0


def test_a_close_held_in_parts_is_held_until_its_last_part() -> None:
    """Chaos 60607:1723, :597, :3417, :3629: an order acknowledged under an ACK_ONLY that fills in
    parts fills its last part a hold after the one before, so the exchange holds it for the hold
    times its parts: counted as one hold, a close sent on the fill was taken to end long before
    it could (12 s excused of the 36 s a close held in three parts takes, every stop refused).
    Where the fault holds entries as well, the last part of the entry fills a whole hold after it
    was sent, and only then can its close be sent: twice that. Without parts, nothing changes."""
    closes = Fault(FaultKind.ACK_ONLY, seconds=12.0, roles="c", rate=0.5, count=3)
    assert held_for(closes) == 36.0
    assert _excused_for(closes) == 36.0, "entries go through at once"
    every = Fault(FaultKind.ACK_ONLY, seconds=1.5, roles="*", rate=0.3, count=3)
    assert _excused_for(every) == 9.0
    whole = Fault(FaultKind.ACK_ONLY, seconds=12.0, roles="c")
    assert held_for(whole) == 12.0
    assert held_for(Fault(FaultKind.ACK_ONLY, seconds=1.5, roles="c", rate=0.5, count=0)) == 3.0, (
        "two at least"
    )
    stops = Fault(FaultKind.EXECUTE_LATE, seconds=2.45, roles="s")
    in_parts = Fault(FaultKind.ACK_ONLY, seconds=0.3, roles="*", rate=0.5, count=3)
    assert cover_hold(stops, (stops, in_parts)) == pytest.approx(0.9), "the close's parts, not its first"
    burst = Fault(FaultKind.SERVER_ERRORS, seconds=5.0, roles="s")
    assert _excused_for(burst) == 5.0


async def test_beside_acked_closes_only_the_first_stop_held_on_a_symbol_is_excused() -> None:
    """Chaos 1206:48: stops held 3.45 s, closes acknowledged and filled 1.5 s later. The stop
    sent on the fill is excused 1.5 s (a close sent then would have covered by then); the same
    stop sent again during its retries is not excused again from each send, or the manager's
    own 1.5 s before its close went out would be excused too. Where every way to cover is held
    alike, each send is excused (it covers once it lands)."""
    excuses: list[tuple[float, float, str | None]] = []

    class Recording:
        def excuse(self, start: float, end: float, symbol: str | None, why: str) -> None:
            excuses.append((start, end, symbol))

    run = SimpleNamespace(checker=Recording())
    stop = OrderRequest(
        "wd-chaos1-f495f922d7e9-s1", SOL, OrderSide.BUY, OrderType.STOP_MARKET, Decimal(1), Decimal(2), True
    )
    stops = Fault(FaultKind.EXECUTE_LATE, seconds=3.45, roles="s")
    acked = Fault(FaultKind.ACK_ONLY, seconds=1.5, roles="c")
    matches = Run._excusing(run, stops, cover_hold(stops, (stops, acked)), each=False)  # type: ignore[arg-type]
    assert matches(stop) and matches(stop) and matches(stop), "every stop is held"
    assert [(round(end - start, 2), symbol) for start, end, symbol in excuses] == [(1.5, SOL)]
    excuses.clear()
    both = Fault(FaultKind.EXECUTE_LATE, seconds=3.45, roles="sc")
    matches = Run._excusing(run, both, cover_hold(both, (both,)), each=True)  # type: ignore[arg-type]
    assert matches(stop) and matches(stop)
    assert len(excuses) == 2
