"""The four incidents of ../shared/seeds/, replayed on the simulated exchange.

`warden chaos --scenario seed-00N` plays one, step by step, against warden and then the same
steps against the naive twin (naive.py), and judges both twice: by the outcome the incident
should have had (listed per incident below), and by the invariant checker.

    seed-000  the database save fails after the fill, then the container restarts
              -> still protected, tracked, the trader alerted
    seed-001  the fill event arrives before the order is registered (4 ms in the report) and
              the order's REST answer is lost; verification must go through the stream
              -> confirmed, not rolled back
    seed-002  restart between TP1 and TP2 with the exit orders on the exchange
              -> 60 % closed, the runner continues with its peak
    seed-003  a position created outside the bot while it runs (and a row written into its
              database behind its back)
              -> adopted, protected, alerted
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from warden.chaos import warp
from warden.chaos.campaign import close, prepare
from warden.chaos.checker import Violation
from warden.chaos.databases import Databases
from warden.chaos.runner import Options, Run, Trace
from warden.chaos.steps import BTC, ETH, SOL, Act, Scenario, Step
from warden.chaos.subject import WardenSubject
from warden.domain.alerts import Severity
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import OrderType, PositionId, Side, Symbol

NAMES = ("seed-000", "seed-001", "seed-002", "seed-003")


@dataclass
class Verdict:
    """One expected outcome, and whether the manager met it."""

    what: str
    met: bool
    detail: str = ""


@dataclass
class Played:
    subject: str
    verdicts: list[Verdict] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return all(v.met for v in self.verdicts) and not self.violations


Script = Callable[["Incident"], Awaitable[None]]


class Incident:
    """What a script has at hand: the run (manager, exchange, checker) and the trace."""

    def __init__(self, run: Run, played: Played, say: Trace) -> None:
        self.run = run
        self.sim = run.sim
        self.played = played
        self.say = say
        self.step = 0
        self.started = 0.0

    @property
    def warden(self) -> WardenSubject | None:
        subject = self.run.subject
        return subject if isinstance(subject, WardenSubject) else None

    def next(self, what: str) -> None:
        self.step += 1
        self.started = asyncio.get_running_loop().time()
        self.say(f"step {self.step}: {what}")

    def expect(self, what: str, met: bool, detail: str = "") -> None:
        self.played.verdicts.append(Verdict(what, met, detail))
        mark = "ok  " if met else "FAIL"
        self.say(f"    [{mark}] {what}" + (f" ({detail})" if detail else ""))

    async def open(self, symbol: Symbol, side: Side, usd: int) -> str:
        step = Step(self.step, Act.SIGNAL, symbol, side, Decimal(usd))
        outcome = await self.run.subject.open(step, None)
        self.say(f"    the manager answered: {outcome}")
        return outcome

    async def restart(self) -> None:
        await self.run.subject.crash()
        self.run.subject.restart()
        await self.run.settle()
        self.say(f"    restarted; the manager now holds {self.held()}")

    async def judged(self) -> None:
        """One reconcile interval passes; then the checker looks at everything."""
        await self.run.one_interval()
        found = await self.run.check(self.step, self.started)
        self.played.violations += found
        self.say(f"    exchange: {self.run._describe()}")
        for v in found:
            self.say(f"    VIOLATION {v.invariant}: {v.message}")

    def held(self) -> str:
        memory = self.run.subject.memory()
        return (
            ", ".join(f"{h.symbol.split('/')[0]} {h.side} {h.qty} ({h.status})" for h in memory) or "nothing"
        )

    def covered(self, symbol: Symbol) -> tuple[bool, str]:
        """Whether the exchange's position in `symbol` has resting reduce-only stops for its size."""
        position = self.sim.core.position(symbol)
        stops = sum(
            (
                o.qty
                for o in self.sim.core.open_orders(symbol)
                if o.type is OrderType.STOP_MARKET and o.reduce_only
            ),
            Decimal(0),
        )
        return position.flat or stops >= abs(position.qty), f"position {position.qty}, stops for {stops}"

    def tracked(self, symbol: Symbol) -> tuple[bool, str]:
        held = sum((h.signed for h in self.run.subject.memory() if h.symbol == symbol), Decimal(0))
        return held == self.sim.core.position(
            symbol
        ).qty, f"manager {held}, exchange {self.sim.core.position(symbol).qty}"

    def critical_alerts(self) -> list[str]:
        return [
            f"{a.alert.kind}: {a.alert.message}"
            for a in self.run.subject.notifier.alerts
            if a.alert.kind.severity is Severity.CRITICAL
        ]


# ------------------------------------------------------------------------------------ 000


async def seed_000(i: Incident) -> None:
    """`short sol` opened on the exchange; the save to the database failed silently; the API said
    success; the container restarted 14 minutes later: no TP/SL, -$5.40 closed by hand."""
    db = i.run.db

    def database_dies_with_the_entry(request: OrderRequest) -> bool:
        if _entry(request):
            db.down = True  # the entry goes out; from now on every save fails
        return False

    i.next(
        "a signal: short SOL $100; the database fails as the entry goes out (the save after the fill fails)"
    )
    i.sim.faults.reject_if = database_dies_with_the_entry
    await i.open(SOL, Side.SHORT, 100)
    i.sim.faults.reject_if = None
    i.next("the container restarts (memory gone); the database answers again")
    db.down = False
    await i.restart()
    await i.judged()
    ok, detail = i.covered(SOL)
    held = not i.sim.core.position(SOL).flat
    i.expect("still protected: a stop of the position's size rests on the exchange", ok and held, detail)
    ok, detail = i.tracked(SOL)
    i.expect(
        "tracked: the manager holds what the exchange holds", ok and not i.sim.core.position(SOL).flat, detail
    )
    alerts = i.critical_alerts()
    i.expect("the trader alerted (critical)", bool(alerts), alerts[0] if alerts else "no alert at all")


# ------------------------------------------------------------------------------------ 001


async def seed_001(i: Incident) -> None:
    """The fill update arrived 4 ms before the bot registered the order; pending positions ignored
    updates; the verification path failed; a valid position was rolled back."""
    i.next("a signal: long BTC $600; the fill event arrives before the REST answer, and the answer is lost")
    i.sim.faults.events_before_response = True
    i.sim.faults.timeout_after_execution_if = _entry
    outcome = await i.open(BTC, Side.LONG, 600)
    i.sim.faults.events_before_response = False
    i.sim.faults.timeout_after_execution_if = None
    await i.judged()
    entries = [f for f in i.sim.core.fills(BTC) if not f.client_order_id.startswith("ext-")]
    exchange_qty = i.sim.core.position(BTC).qty
    i.expect("confirmed, not rolled back", not outcome.startswith("refused") and exchange_qty > 0, outcome)
    ok, detail = i.tracked(BTC)
    i.expect("the manager holds the position the exchange holds", ok and exchange_qty > 0, detail)
    i.expect("the entry was sent once", len(entries) == 1, f"{len(entries)} entry fills")
    ok, detail = i.covered(BTC)
    i.expect("protected", ok, detail)


def _entry(request: OrderRequest) -> bool:
    """An entry of either manager: a market order that may open."""
    return request.type is OrderType.MARKET and not request.reduce_only


# ------------------------------------------------------------------------------------ 002


async def seed_002(i: Incident) -> None:
    """Restart between TP1 and TP2 lost the runner state; the exchange TP1 closed 100 % instead
    of 60 %."""
    i.next("a signal: long SOL $150; a few seconds pass")
    await i.open(SOL, Side.LONG, 150)
    await asyncio.sleep(3)
    await i.run.settle()
    size = i.sim.core.position(SOL).qty
    entry = i.sim.core.position(SOL).entry_price
    inst = i.sim.core.instruments[SOL]
    i.next("the mark passes TP1 (+1 %), then makes a new peak below TP2")
    i.sim.set_mark(SOL, inst.round_price(entry * Decimal("1.012")))
    await i.run.settle()
    peak = inst.round_price(entry * Decimal("1.017"))
    i.sim.set_mark(SOL, peak)
    await i.run.settle()
    await asyncio.sleep(2)  # the peak is persisted at least once a second while it moves
    after_tp1 = i.sim.core.position(SOL).qty
    tp1 = inst.round_qty(size * Decimal("0.6"))
    i.say(f"    exchange: {after_tp1} of {size} left")
    i.expect("TP1 closed exactly 60 %", after_tp1 == size - tp1, f"{size} -> {after_tp1}, TP1 is {tp1}")
    i.next("the process restarts between TP1 and TP2 (the exit orders rest on the exchange)")
    before = _position(i)
    await i.restart()
    after = _position(i)
    if before is not None:
        kept = after is not None and (after.tp1_hit, after.watermark, after.remaining) == (
            before.tp1_hit,
            before.watermark,
            before.remaining,
        )
        shown = None if after is None else (after.tp1_hit, after.watermark, after.remaining)
        i.expect(
            "TP1 hit, the peak and the remaining size survive the restart",
            kept,
            f"before {(before.tp1_hit, before.watermark, before.remaining)}, after {shown}",
        )
    i.next("the mark passes TP2 (+2 %) and climbs on: the runner trails its peak")
    i.sim.set_mark(SOL, inst.round_price(entry * Decimal("1.022")))
    await i.run.settle()
    top = inst.round_price(entry * Decimal("1.03"))
    i.sim.set_mark(SOL, top)
    await i.run.settle()
    await i.judged()
    stops = [o for o in i.sim.core.open_orders(SOL) if o.type is OrderType.STOP_MARKET]
    runner = size - tp1 - inst.round_qty(size * Decimal("0.2"))
    trail = inst.round_price(top * Decimal("0.995"))
    i.expect(
        "the runner continues: its stop trails the peak for the runner's size",
        [(o.qty, o.trigger_price) for o in stops] == [(runner, trail)],
        f"stops {[(o.qty, o.trigger_price) for o in stops]}, wanted {[(runner, trail)]}",
    )
    ok, detail = i.covered(SOL)
    i.expect("protected throughout", ok and not i.played.violations, detail)


def _position(i: Incident) -> Position | None:
    warden = i.warden
    if warden is None or warden.engine is None:
        return None
    active = warden.engine.ledger.active_positions()
    if active:
        warden.engine.exits.index.materialize_all()
        return warden.engine.ledger.positions[active[0].id]
    return None


# ------------------------------------------------------------------------------------ 003


async def seed_003(i: Incident) -> None:
    """A position existed in the database and on the exchange that the running bot never saw
    (another instance, or a hand on the account): price updates skipped, no stop management."""
    i.next("while the manager runs, someone opens ETH long 0.05 on the account by hand")
    i.sim.external_order(ETH, Side.LONG.entry_side, Decimal("0.05"))
    i.run.by_hand(ETH, "an outside long of 0.05")
    warden = i.warden
    if warden is not None and warden.store is not None:
        i.say("    ... and a position row for SOL is written into warden's database behind its back")
        await _row_behind_the_back(warden, i)
    await i.judged()
    ok, detail = i.tracked(ETH)
    i.expect("adopted: the manager holds the outside position", ok, detail)
    ok, detail = i.covered(ETH)
    i.expect("protected: a stop rests for it", ok, detail)
    alerts = i.critical_alerts()
    i.expect("alerted", any("orphan" in a for a in alerts), "; ".join(alerts) or "no alert")
    if warden is not None:
        i.expect(
            "the row nobody wrote through warden was found and alerted",
            any("unknown_row" in a for a in alerts),
            "; ".join(a for a in alerts if "row" in a) or "not found",
        )


async def _row_behind_the_back(warden: WardenSubject, i: Incident) -> None:
    """Another process writes a position into warden's database (seed 003's position 1318)."""
    assert warden.store is not None
    now = warden.clock.now()
    ghost = Position(
        id=PositionId("rsr000001318"),
        symbol=SOL,
        side=Side.LONG,
        status=PositionStatus.PROTECTED,
        target_qty=Decimal("0.5"),
        plan=warden.config.plan,
        opened_at=now - timedelta(seconds=1),
        filled_qty=Decimal("0.5"),
        entry_price=i.sim.core.mark(SOL),
        origin="another-process",
        version=1,
    )
    from warden.ports import Transition

    with warp.real_io():
        await warden.store.inner.commit(Transition(ghost, None))


SCRIPTS: dict[str, Script] = {
    "seed-000": seed_000,
    "seed-001": seed_001,
    "seed-002": seed_002,
    "seed-003": seed_003,
}


def play(name: str, subject: str, databases: Databases, trace: Trace) -> Played:
    """One incident against one manager ("warden" or "naive")."""
    script = SCRIPTS[name]
    played = Played(subject)
    plan = Scenario(seed=int(name[-3:]), run=0, stacking=False, steps=())
    run = Run(plan, databases, Options(subject=subject), trace)

    async def main() -> None:
        await run.begin()
        try:
            await script(Incident(run, played, trace))
        finally:
            await run.end()

    warp.run(main(), real_limit=120)
    return played


def replay(name: str, trace: Trace, db: str | None = None) -> tuple[Played, Played]:
    """The incident against warden, then against the naive twin."""
    databases = Databases(db)
    prepare(databases)
    try:
        trace(f"== {name} against warden ==")
        mine = play(name, "warden", databases, trace)
        trace(f"== {name}: warden {'met every expected outcome' if mine.met else 'did NOT meet them'} ==")
        trace("")
        trace(f"== {name}, the same steps against the naive twin (warden/chaos/naive.py) ==")
        naive = play(name, "naive", databases, trace)
        trace(
            f"== {name}: the naive twin "
            + (
                "met them (the incident did not happen)"
                if naive.met
                else "did not: the incident happens there"
            )
            + " =="
        )
    finally:
        close(databases)
    return mine, naive
