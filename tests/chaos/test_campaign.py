"""The bounded chaos campaign (issue 13), and `warden chaos` as a command.

The campaign here is the one CI runs: a fixed seed, in process, about half a minute on two
cores. WARDEN_CHAOS_SEED and WARDEN_CHAOS_RUNS change it; the long campaign for releases is
`warden chaos --runs 10000` (see the README).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Iterator
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from warden.chaos import generate
from warden.chaos.campaign import campaign, close, parallel_campaign, prepare, run_one
from warden.chaos.databases import Databases
from warden.chaos.generate import scenario
from warden.chaos.incidents import NAMES, replay
from warden.chaos.procs import run_processes
from warden.chaos.report import as_text
from warden.chaos.runner import Options
from warden.chaos.steps import FaultKind, Scenario
from warden.entrypoints.cli import app

SEED = int(os.environ.get("WARDEN_CHAOS_SEED", "2026"))
RUNS = int(os.environ.get("WARDEN_CHAOS_RUNS", "120"))
cli = CliRunner()


@pytest.mark.timeout(600)  # ~110 s on two idle cores; a hang guard, not a speed test
def test_a_bounded_campaign_keeps_the_promise() -> None:
    """Randomized scenarios under every kind of fault, every invariant checked after every step:
    no violation (a failure lists each one with the command that replays it)."""
    totals = campaign(SEED, RUNS)
    print(as_text(totals, Options().protection_window))
    assert totals.runs == RUNS and totals.steps > 5 * RUNS
    assert totals.crashes > 0 and len(totals.faults) >= 15, "the campaign really did break things"
    assert not totals.violations, "\n" + as_text(totals, Options().protection_window)


def test_a_replay_is_the_same_run_step_for_step() -> None:
    """`--replay SEED:RUN` plays the run again: the same steps, outcomes and exchange states."""
    databases = Databases()
    prepare(databases)
    try:
        traces: list[list[str]] = [[], []]
        for trace in traces:
            run_one(scenario(SEED, 3), databases, Options(), trace=trace.append)
    finally:
        close(databases)
    assert traces[0] == traces[1]
    assert sum(line.startswith("step ") for line in traces[0]) == len(scenario(SEED, 3).steps)


def test_a_fault_added_to_the_menu_later_leaves_every_run_drawn_before_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The later faults (EXECUTE_LATE) come from a stream of their own: without them every run
    draws the steps and faults it drew before they existed (the runs pinned below stay the runs
    that failed), and with them it is the same every time."""
    drawn = [scenario(SEED, run) for run in range(1, 80)]
    assert drawn == [scenario(SEED, run) for run in range(1, 80)]
    late = [f for s in drawn for step in s.steps for f in step.faults if f.kind is FaultKind.EXECUTE_LATE]
    assert late and {f.roles for f in late} >= {"e", "s", "c", "ab"}
    monkeypatch.setattr(generate, "LATER", {})
    before = [scenario(SEED, run) for run in range(1, 80)]
    assert [_without(s, FaultKind.EXECUTE_LATE) for s in drawn] == before


def test_orders_filled_in_parts_leave_every_run_drawn_before_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Orders filled in parts (an ACK_ONLY fault's `rate` and `count`) come from a third stream:
    without them every run has the steps and faults it had before (only those differ), with them
    it is the same every time; not on a venue whose face cannot (`in_parts=False`, Drift's)."""
    drawn = [scenario(SEED, run) for run in range(1, 120)]
    assert drawn == [scenario(SEED, run) for run in range(1, 120)]
    acks = [f for s in drawn for step in s.steps for f in step.faults if f.kind is FaultKind.ACK_ONLY]
    in_parts = [f for f in acks if f.rate]
    assert in_parts and len(in_parts) < len(acks), (len(in_parts), len(acks))
    assert {f.rate for f in in_parts} <= set(generate.PARTS)
    assert {f.roles for f in in_parts} == {"e", "c", "*"}, "entries, closes, every market order"
    assert {f.count for f in in_parts} == set(generate.PART_COUNTS)
    whole = [scenario(SEED, run, in_parts=False) for run in range(1, 120)]
    monkeypatch.setattr(generate, "PARTS_CHANCE", 0.0)
    before = [scenario(SEED, run) for run in range(1, 120)]
    assert [_whole(s) for s in drawn] == before == whole


def test_stops_and_take_profits_filled_in_parts_leave_every_run_drawn_before_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the mark fires filled in parts (FIRED_IN_PARTS) comes from a fourth stream: without it
    every run has the steps and faults it had before, with it it is the same every time; never
    beside an ACK_ONLY (whose parts it would share), never over real processes."""
    drawn = [scenario(SEED, run) for run in range(1, 120)]
    assert drawn == [scenario(SEED, run) for run in range(1, 120)]
    steps = [step for s in drawn for step in s.steps]
    fired = [f for step in steps for f in step.faults if f.kind is FaultKind.FIRED_IN_PARTS]
    assert len(fired) > 20, len(fired)
    assert {f.rate for f in fired} == set(generate.PARTS)
    assert {f.count for f in fired} == set(generate.PART_COUNTS)
    assert {f.seconds for f in fired} == set(generate.FIRED_GAPS)
    assert not [
        s for s in steps if {FaultKind.ACK_ONLY, FaultKind.FIRED_IN_PARTS} <= {f.kind for f in s.faults}
    ]
    before = [scenario(SEED, run, fired_in_parts=False) for run in range(1, 120)]
    assert [_without(s, FaultKind.FIRED_IN_PARTS) for s in drawn] == before
    monkeypatch.setattr(generate, "FIRED_CHANCE", 0.0)
    assert [scenario(SEED, run) for run in range(1, 120)] == before
    processes = [scenario(SEED, run, processes=True) for run in range(1, 60)]
    assert not [
        f for s in processes for step in s.steps for f in step.faults if f.kind is FaultKind.FIRED_IN_PARTS
    ]


def _whole(plan: Scenario) -> Scenario:
    steps = tuple(
        replace(
            s,
            faults=tuple(
                replace(f, rate=0.0, count=0) if f.kind is FaultKind.ACK_ONLY else f for f in s.faults
            ),
        )
        for s in plan.steps
    )
    return replace(plan, steps=steps)


def _without(plan: Scenario, kind: FaultKind) -> Scenario:
    steps = tuple(replace(s, faults=tuple(f for f in s.faults if f.kind is not kind)) for s in plan.steps)
    return replace(plan, steps=steps)


LONG_FINDINGS = (
    *((2049494027, run) for run in (372, 926, 1364, 1577, 1887, 1888, 1934, 2058, 2079, 2549)),
    *((2049494027, run) for run in (3415, 3613, 3769, 4483, 4616, 7643, 8199, 5321, 5341, 5067)),
    (1380957164, 7931),
    *((283465486, run) for run in (4452, 6301, 7962)),
    *((374917399, run) for run in (1244, 1787)),
    (1559800714, 8640),
    (500219413, 7313),
    (1207, 462),
    (1208, 347),
    (1210, 295),
    (1212, 39),
    (1214, 234),
    (1215, 194),
    (1223, 147),
    (1230, 96),
    (1237, 260),
    (1238, 170),
    (1206, 48),
    (1218, 18),
    (291220366, 110),
    *((291220366, run) for run in (2651, 4862)),
    *((1266763949, run) for run in (1157, 1287, 2840, 3222, 8278, 8392)),
    (1252, 67),
    *((1861938148, run) for run in (1719, 9523)),
    *((1204611195, run) for run in (1596, 1617, 8287, 9059, 9103)),
    (1780774841, 8922),
    (1590122514, 2864),
    (1540091406, 7557),
    (66809370, 8470),
    *((1623738294, run) for run in (2291, 6790, 9410)),
    (565405691, 3027),
    (515872990, 4220),
    (618285994, 7370),
    (1090242307, 2371),
)
"""(seed, run) of each violation a 10,000-run campaign (`warden bench chaos`) found, pinned; and
of 600-run campaigns since (1207:462: a second close held back by a 5xx'd first while stops were
refused; 1208:347: closes held by the exchange while stops were refused, the exchange's time;
1210:295, found on PostgreSQL: a dead process's stop landing under the id the new one staged;
1212:39, also on PostgreSQL: a stop recorded resting by its event, its position left OPEN;
1214:234: a stop sent again after its position ended, placed twice; 1215:194: a stop given up on
that landed late, unknown as live while an intent given up on kept its symbol out of every pass;
1223:147: an entry given up on, found executed over REST with its stream fill lost: its trade
recorded nowhere; 1230:96: a stop the process before sent copies of, cancelled by the new
one's close while they could land, placed twice; 1237:260, found on PostgreSQL: a late entry
fill waiting for its failure's slow write, then its cover left after 1.5 s of 429s; 1238:170, on
PostgreSQL, the checker's: stops held 2.45 s while every close was held 12 s, not excused;
1206:48 and 1218:18, the trade-off: stops held 3.45 s, closes 1.5 s, 3.0 s uncovered of which the
exchange's 1.5 s is excused, the manager's 1.5 s within the window; 291220366:110, of a
10,000-run bench: an entry given up on executed with every stream event lost, left to the next
pass, 27 s; 291220366:2651: a dead process's stop move landing under the id the new one staged;
291220366:4862: a failed close's slow write and pause before the next stop, 2.4 s after 5xxs;
1266763949:1157, of the next bench, which the first fix of 4862 broke: the stop sent at once on a
failed close came back unknown, and a pause and a new round followed instead of the close;
1266763949:1287, :3222 and :8278: an entry given up on found working, no longer watched, filling
with the stream losing it; 1266763949:2840: closes landing late that expired after the first
one's fill, believed resting; 1266763949:8392: a stop taken from late copies, superseded and
cancelled while more copies could land, placed twice; 1252:67: an entry given up on found
executed during a database outage, adopted as nobody's, its trade recorded nowhere;
1861938148:1719 and :9523, of the bench after, both with stacking: a close that traded unrecorded
(writes queued in an outage, then a crash) found only when the size mismatch caught up that
position, not the one it named; a second close's trade, spilling to another position, attributed
again when delivered again, 26 s with a stop smaller than the position; 1204611195:1596, :1617,
:8287, :9059 and :9103, of the bench after that: a restart during the first stop's retries
starting them over, 2.16 s; a start that could not read its database whose guard stop, held by
the exchange, was followed by no close, 2.45 s and 3.45 s; a close landing after it was given up
on that left the position's stop resting on the flat symbol; a late entry's blind close whose
fill a stream gap lost, its trade recorded nowhere; 1780774841:8922, of the bench after: an entry
given up on while the database refused writes, read back as opening, its late fill adopted as
nobody's; 1590122514:2864, of the bench after, which the 8287 fix exposed: a close that traded
unseen, recorded cancelled when the exchange answered its cancel "not found", its trade recorded
nowhere; 1540091406:7557 and 66809370:8470, with stacking: a close answered 5xx holding the next
back for `entry_deadline` with no other position on the symbol, 3.46 s and 2.45 s; 1623738294:9410,
with stacking: two entries given up on that both executed, the orphan of both adopted as the
newest's alone, the other's trade recorded nowhere; :2291, a restart that found the position open
with no stop timing its stop from its own start, not the fill, 3.06 s; :6790, with stacking, a
start whose next attempt waited for its guard's retries and a pause after, the database back
meanwhile, 2.25 s; 565405691:3027, with stacking: a close sent at once on a refused stop whose
intent's write a crash cut, staged again under its id by the next process and taken by the
exchange, closing another position's size; 515872990:4220, of the bench after: a late entry's
cover resting 5 ms before the adopted position's own stop, both retried through 10 s of 5xx, left
beside it until the timer's pass 34 s later: the pass after the cover rested read the exchange
before the own stop rested, and the closes of the rounds before kept the symbol busy 10 s more;
618285994:7370, of the bench after: a stop retried after a restart and given up on, replaced by
a close only after two 0.3 s commits, 2.10 s; 1090242307:2371, of the bench after, with stacking:
an entry given up on that executed beside a position of its side, taken for that position
growing (a synthetic fill) rather than adopted, its stop unable to grow while stops were refused,
0.125 of 0.195 uncovered for 12.84 s)."""


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    made = Databases()
    prepare(made)
    yield made
    close(made)


@pytest.mark.parametrize(("seed", "run"), LONG_FINDINGS)
def test_each_run_the_long_campaign_failed_now_keeps_the_promise(
    databases: Databases, seed: int, run: int
) -> None:
    """Each of these runs broke a promise in a 10,000-run campaign (the service test for each
    names it); replayed, it holds. `warden chaos --replay SEED:RUN` shows it step by step. Each is
    played as it failed: drawn without entries filled in parts, which came later (the campaigns
    since draw them, and 19 of these runs would)."""
    trace: list[str] = []
    result = run_one(
        scenario(seed, run, in_parts=False, fired_in_parts=False), databases, Options(), trace=trace.append
    )
    assert not result.violations, "\n".join(trace)


PARTS_FINDINGS = (
    (1237828254, 919),
    (1237828254, 1849),
    (1069420252, 36),
    (2106947948, 221),
    *((31770, run) for run in (269, 703, 875)),
    (5150, 177),
    *((60607, run) for run in (597, 1723, 3417, 3629)),
    (77077, 4030),
    (88001, 1548),
    (5152, 5278),
    (5153, 12357),
    (5154, 1395),
)
"""(seed, run) of violations found since the campaign fills orders in parts, replayed as found
(with parts): a working entry's parts filling while the stream lost its events (a disconnect, a
gap) were covered only once the entry ended, 2.5 s without a stop; the lookups now act on the
fills they see. 1069420252:36: an entry's second part grew the position while its first part's
stop was still being sent (answered "unknown", sent again): the resize moved the stop and cancelled
that one, recorded as still pending, at once, and a copy in flight rested on the freed id (placed
twice, I2). 2106947948:221: an entry given up on, found filling in five parts, was watched to
its first part only. 31770:269, :703, :875: a working entry's second part on a 2 s-a-commit
database waited for the writes before its stop grew, 6.5 to 8 s. 5150:177 (stacking on): an
entry's first part's stop, sent six times into timeouts, was superseded by the stop grown to both
parts and cancelled at once; a copy in flight rested under the freed id for 9.5 s (placed twice,
I2); with stacking a stop now grows only once no copy of the old one can land, the part covered
by its own stop meanwhile. 60607:597, :1723, :3417, :3629 and 77077:4030 (stacking on): the
checker's, not the engine's: with every stop refused or held, it counted a close acknowledged
and filled in parts as held for one part's delay, not until its last part, and an entry held the
same way as filled at once; each was a position that could not be flat sooner (`held_for`).
88001:1548: the process died 0.6 s after a fill while stops were held back, the database down at
the restart; the guard's stop was retried for 1.5 s more before its close (2.16 s uncovered), and
is now retried for a quarter window (`ExitManager.place_guard`). 5152:5278 (stacking on, found
on PostgreSQL, replays on SQLite): two positions opened at once, their stops refused; one's close,
sent early, filled before its entry's fill (lost on the stream) was read, was taken as a stale
exit's excess and attributed to the other, then applied to its own as well (I2: a trade recorded
twice, the other's own close recorded nowhere); an exit's fill now waits for the entry's fills
(`ExitManager._exit_fill_before_entry`). 5153:12357 (stacking on, found on PostgreSQL, replays
on SQLite): a second SOL short given up on, executed 2.45 s late as the process was killed
mid-write (its stream fill lost with it); after the restart the pass set the first short's size
to the exchange's with a synthetic fill, the late trade recorded nowhere; the entries given up on
beside positions of their side are now looked up as an orphan's are, each adopted as its own
(`Reconciler._given_up_beside`). 5154:1395 (stacking on, found on PostgreSQL, replays on
SQLite): stops refused and every market order run late; a late entry filling in parts beside a
protected position, its first part adopted and its close "unknown"; the later parts' passes left
the symbol alone while that close might land, and nothing ran one once it had: 24 s without a
stop or a close, until the timer's pass; such a late entry now keeps its place and a pass runs
as soon as the symbol settles (`Engine._reconcile_once_settled`). (2026:43 and 2026:75, the
bounded campaign's own, are replayed by it.)"""


@pytest.mark.parametrize(("seed", "run"), PARTS_FINDINGS)
def test_each_run_that_failed_with_orders_filled_in_parts_now_keeps_the_promise(
    databases: Databases, seed: int, run: int
) -> None:
    """`warden chaos --replay SEED:RUN`."""
    trace: list[str] = []
    result = run_one(scenario(seed, run, fired_in_parts=False), databases, Options(), trace=trace.append)
    assert not result.violations, "\n".join(trace)


DRAWN_FINDINGS = (
    (5161, 350),
    (5163, 13284),
    (5163, 9818),
    (5165, 4272),
    (41418, 971),
    (5171, 976),
    (5171, 2184),
    (5181, 7380),
)
"""(seed, run) of violations found by campaigns that draw what the mark fires in parts, replayed
as drawn. 5161:350 (stacking on) broke a version of the cut of early closes that never landed:
two ETH longs whose stops landed 4.85 s late, every close held 12 s by the exchange. That version
took a close still working at its deadline beside another position over (then: cut it), rather
than sending the next beside it; held again, no close ever filled, the stops piled up, were
resized and superseded, and the symbol went 3.35 s without one. Such a close is followed and
the next goes out beside it, as before; only one nothing follows (a process before sent it and
never wrote it) is taken over. 5163:13284 (stacking on; replays on b080eb4): a take-profit whose
sends were answered "unknown" (each landing 4.85 s later) was resized as the entry's parts grew
the position and cancelled, and went on being sent after the cancel: three copies landed one after
another on the freed id, each swept (placed three times, I2). An order withdrawn meanwhile is not
sent again (`ExitManager._withdrawn`). 5163:9818 (stacking on; replays on b080eb4): a trailing
move's stop sent seven times into timeouts while the old stop rested, each copy landing 4.85 s
later; a later move rested first, so with stacking the first move's stop was cancelled as
superseded when its first copy landed, and each later copy landed on the freed id and was swept:
placed six times. With stacking, a move the old stop covers for is no longer sent again after a
timeout it was not found for: it is given up on, and its one copy taken as the stop or cancelled
on sight (`ExitManager._covered_meanwhile`, `landed_late`; test_chaos_findings). 5171:976 and
5171:2184 (stacking on) broke the first version of that fix, which took any covered move given up
on for the only copy that could land and cancelled each landing on sight, placing one id two or
three times: at 976 a grow's stop sent four times into timeouts, covered by another stop before
its last send; at 2184 a move sent once by a process killed meanwhile and once more, under the
same id, by the next (`flights.sent_once` takes neither). 5165:4272 (stacking on,
found on PostgreSQL, replays on SQLite and on b080eb4): an entry acknowledged and filled in two
parts 0.3 s apart, stops landing 4.85 s late; the close sent in place of the first part's stop
was sized by that part alone, and the second waited for a close of its own after it: 2.70 s
without a stop or a close. That close
is now sized by every part seen (`ExitManager._held_now`). 41418:971 (replays on b080eb4) broke the
checker's I5, not the promise: an ETH runner's trail moved while its stop moves met 429s, the
process died idle, and recovery made the due move from the restored peak, was refused as through
the market and closed the runner at market, as the process before would have. The checker took a
position gone after a restart for a lost state; it now reads the stored row of one that ended and
passes it only if its stop ended it with the state it had before (`runner._ended_by_its_stop`,
test_checker). 5181:7380 (stacking on) broke a fix of 5172:12279 (below) that was tried and
taken back: for `entry_deadline` after a start, no close of a position the process before held
went out beside another position, its stop sent again instead. A new position's stop landing
3.45 s late after a restart then had neither a stop nor a close for 3.45 s (I1), where the close
goes out at once; it keeps any such hold honest."""


def _replays_as_drawn_without_violations(databases: Databases, seed: int, run: int) -> None:
    trace: list[str] = []
    result = run_one(scenario(seed, run), databases, Options(), trace=trace.append)
    if result.violations:
        # The trace is the report: without pytest's traceback, whose formatting parses the source
        # of each frame and meets CPython 3.11's "AST constructor recursion depth mismatch" now
        # and then (an INTERNALERROR that ends the whole run), most often for the open ones.
        pytest.fail("\n".join(trace), pytrace=False)


@pytest.mark.parametrize(("seed", "run"), DRAWN_FINDINGS)
def test_each_run_found_with_fired_orders_in_parts_now_keeps_the_promise(
    databases: Databases, seed: int, run: int
) -> None:
    """`warden chaos --replay SEED:RUN`."""
    _replays_as_drawn_without_violations(databases, seed, run)


OPEN_FINDINGS = ((5172, 12279), (5181, 17277), (5182, 6678), (5182, 11374))
"""(seed, run) of violations found and not fixed yet, replayed as drawn: each must still fail
(strict), so that a fix is noticed and the run moves to the list it belongs to. 5172:12279
(stacking on; replays on fb505c9): two SOL longs of 1.08 stacked, every order executing 4.85 s
after its send timed out; the first's stop cancelled by hand, its replacement's sends unanswered,
the close sent in its place (`_stop_or_close`, sent before it is written) went out as the process
was killed. The next process, not knowing of it, made the same close under the same id and sent
it again; both copies landed, one after the other (a market order does not rest, so the second
is not refused as a duplicate): 2.16 sold, the other position's 1.08 closed with it (I2). Left
open: the new process cannot see a close the one before sent and never wrote; holding its own
close back while one may land (`flights.dead_copies_may_land`) leaves the position without a stop
or a close for that long: tried, and 5181:7380 broke it (above; test_chaos_findings keeps 12279's
service form as a strict xfail). 5181:17277 (stacking on; replays on 8f68faa): two SOL longs
opened at once while stops and closes met 429s for 10 s and every database operation took 2 s;
each protect-or-close round wrote its refusal, its close's intent and its close's failure one
commit after another, each waiting for the batch before it, so the stops that went out once the
429s ended left 6 s and 12 s after (I1: 14 s beyond the window, 8 s of the 22 excused).
5182:6678 (stacking on; found on PostgreSQL, replays on SQLite and on 8f68faa): four ETH longs
stacked, TP1 taken on each, then a short opened by hand a little larger than what they held
left the account 0.003 short; memory and the database held nothing there (I4), and the short
went 27.9 s beyond the window without a stop (I1, 32 s of the 59.9 excused). 5182:11374
(stacking on; found on PostgreSQL, replays on SQLite and on 8f68faa): every order executing
3.45 s after its send timed out, a SOL take-profit (TP2, b5) was sent twice, 2 s apart; its first
copy landed and was cancelled at once as the take-profit was replaced (b8) while the second was
still in flight, and the second landed 1.5 s later on the freed id: placed twice (I2), the family
of 5163:13284, through a replacement that cancels without waiting for its copies."""


@pytest.mark.xfail(strict=True, reason="open, see OPEN_FINDINGS")
@pytest.mark.parametrize(("seed", "run"), OPEN_FINDINGS)
def test_each_run_found_and_not_fixed_yet_keeps_the_promise(
    databases: Databases, seed: int, run: int
) -> None:
    """`warden chaos --replay SEED:RUN`."""
    _replays_as_drawn_without_violations(databases, seed, run)


POSTGRES_FINDINGS = ((1222, 170),)
"""(seed, run) of violations found on PostgreSQL that only PostgreSQL shows, pinned and replayed
there (1222:170: killed as its entry filled, the process started again with PostgreSQL down
could not open its store and guarded nothing until it answered)."""


@pytest.mark.postgres
@pytest.mark.parametrize(("seed", "run"), POSTGRES_FINDINGS)
def test_each_run_that_failed_on_postgresql_now_keeps_the_promise_there(
    pg_url: str, seed: int, run: int
) -> None:
    """`warden chaos --db postgresql://... --replay SEED:RUN`."""
    databases = Databases(pg_url)
    prepare(databases)
    try:
        trace: list[str] = []
        result = run_one(
            scenario(seed, run, in_parts=False, fired_in_parts=False),
            databases,
            Options(),
            trace=trace.append,
        )
    finally:
        close(databases)
    assert not result.violations, "\n".join(trace)


@pytest.mark.parametrize("name", NAMES)
def test_each_incident_is_met_by_warden_and_happens_to_the_naive_twin(name: str) -> None:
    """`--scenario seed-00N`: warden meets the outcome the incident should have had; the naive
    twin, played the same steps, does not (the checker or the expected outcome says so)."""
    lines: list[str] = []
    mine, naive = replay(name, lines.append)
    failed = [f"{v.what}: {v.detail}" for v in mine.verdicts if not v.met] + [str(v) for v in mine.violations]
    assert mine.met, "\n".join([*failed, "", *lines])
    assert not naive.met, "\n".join(lines)


def test_the_command_ends_with_the_violation_count_and_exits_1_when_there_are_any() -> None:
    """Text: the last line is `violations: N`; --json carries "violations"; exit 1 when N > 0."""
    result = cli.invoke(app, ["chaos", "--runs", "3", "--seed", "5", "--naive"])
    assert result.exit_code == 1, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("violations: ") and int(last.split()[1]) > 0
    result = cli.invoke(app, ["chaos", "--runs", "2", "--seed", "5", "--naive", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["violations"] == len(report["violation_details"]) > 0
    assert report["violation_details"][0]["replay"].startswith("warden chaos --replay 5:")


def test_an_unknown_venue_is_refused_by_name() -> None:
    result = cli.invoke(app, ["chaos", "--venue", "okx"])
    assert result.exit_code == 2 and "okx" in result.output


PROCESS_FINDINGS = ((618285994, 4),)
"""(seed, run) of violations campaigns found over real processes (`SEED:pRUN`), pinned
(618285994:p4: a close answered "unknown" executing in a stream gap, not looked up again until a
pass could: the exchange flat, warden's records at 0.2 for 14.8 s)."""


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "run"), PROCESS_FINDINGS)
def test_each_run_that_failed_over_real_processes_now_keeps_the_promise(seed: int, run: int) -> None:
    """`warden chaos --replay SEED:pRUN`: warden sim serve and warden run, ccxt between them."""
    trace: list[str] = []
    result = run_processes(scenario(seed, run, processes=True, in_parts=False), trace=trace.append)
    assert not result.violations, "\n".join(trace)


@pytest.mark.slow
def test_a_slice_over_real_processes_keeps_the_promise() -> None:
    """warden sim serve + warden run (ccxt between them), faults through /sim/faults, kill -9."""
    results = [run_processes(scenario(SEED, run, processes=True)) for run in (1, 2)]
    assert sum(r.steps for r in results) >= 8
    assert not [v for r in results for v in r.violations], [str(v) for r in results for v in r.violations]


@pytest.mark.slow
@pytest.mark.parametrize("venue", ["bybit", "drift"])
def test_a_bounded_process_campaign_on_each_face_keeps_the_promise(venue: str) -> None:
    """`warden chaos --venue bybit|drift`: every run over real processes on that face of `warden
    sim serve` (ccxt's bybit, or the Drift sidecar protocol), with the faults the face can inject."""
    result = cli.invoke(app, ["chaos", "--venue", venue, "--runs", "3", "--seed", str(SEED), "--json"])
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, "".join(traceback.format_exception(*result.exc_info or (None, None, None)))
    report = json.loads(result.stdout)
    details = [
        f"{v['replay']}: step {v['step']} {v['invariant']} {v['message']}"
        for v in report["violation_details"]
    ]
    assert report["process_runs"] == 3 and report["runs"] == 0, report
    assert report["steps"] >= 12 and sum(report["faults"].values()) > 0, report
    assert report["violations"] == 0, "\n".join(details)
    assert result.exit_code == 0, result.output


def test_a_campaign_spread_over_processes_plays_the_same_runs() -> None:
    """`warden bench chaos` spreads its runs over one process per core: each run is the same
    run whichever process plays it, so the totals are those of one process playing them all."""
    alone = campaign(SEED, 4)
    spread = parallel_campaign(SEED, 4, workers=2, chunk=2)
    assert (spread.runs, spread.steps, spread.crashes, spread.faults) == (
        alone.runs,
        alone.steps,
        alone.crashes,
        alone.faults,
    )
    assert [key for key, _ in spread.violations] == [key for key, _ in alone.violations]
