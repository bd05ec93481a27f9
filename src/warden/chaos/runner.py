"""The in-process runner: play one scenario against a manager, step by step, checking after each.

The exchange is the in-process `SimulatedExchange`; the manager's database is a fresh SQLite
file (or PostgreSQL database) per run; everything runs on the WarpLoop, so engine timeouts,
backoffs, fill delays and the reconcile timer cost no wall-clock time.

One step:

    1. switch the step's faults on (knobs now, or at the k-th I/O call of the step);
    2. do the step's action, and let it settle (follow-up work done, stream drained);
       a process that died meanwhile is restarted at once, as a supervisor would;
    3. switch the faults off (bursts may have ended earlier) and settle again;
    4. let one reconcile interval pass on the engine's own timer;
    5. check every invariant (checker.py).

A crash is the process dying: memory and tasks gone, the database and the exchange kept, the
websocket's undelivered events lost; a new process is built on the same store and exchange
and recovers (the way `tests/service/harness.py::restart` does it).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

from warden.adapters.sim import SimFaults, SimRejection, SimulatedExchange
from warden.chaos.checker import Checker, Outside, Violation
from warden.chaos.databases import Databases
from warden.chaos.ports import DbFaults, SimulatedCrash
from warden.chaos.steps import DATABASE, REFUSALS, SYMBOLS, Act, Fault, FaultKind, Scenario, Step, Target
from warden.chaos.subject import ACCOUNT, Held, Subject, Unexpected, WardenSubject, id_maker
from warden.chaos.warp import WarpClock
from warden.domain.orders import OrderStatus
from warden.domain.reports import OrderRequest
from warden.domain.sizing import order_qty
from warden.domain.values import OrderType, Side, Symbol, parse_client_id
from warden.ports import OrderRejected
from warden.service.config import EngineConfig

Trace = Callable[[str], None]
PENDING_DEADLINE = EngineConfig().pending_deadline
SETTLE_WITH_FAULTS = 120.0
SETTLE_AFTER_FAULTS = 900.0
"""Virtual seconds a step's follow-up work may take once its faults are over (an entry whose
outcome is unknown is looked up with a backoff that reaches 30 s)."""


@dataclass(frozen=True)
class Options:
    protection_window: float = 2.0
    reconcile_interval: float = 30.0
    db_timeout: float = 5.0
    subject: str = "warden"
    """"warden", or "naive" for the naive twin."""

    def engine_config(self, stacking: bool) -> EngineConfig:
        return EngineConfig(
            exchange_name="sim",
            database="chaos",
            protection_window=self.protection_window,
            reconcile_interval=self.reconcile_interval,
            allow_stacking=stacking,
        )


@dataclass
class StepRecord:
    step: Step
    outcome: str = ""
    calls: int = 0
    crashed: int = 0
    violations: list[Violation] = field(default_factory=list)
    started: float = 0.0


@dataclass
class RunResult:
    key: str
    subject: str
    steps: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    recoveries: int = 0
    violations: list[Violation] = field(default_factory=list)
    longest: float = 0.0
    longest_raw: float = 0.0
    virtual_seconds: float = 0.0
    real_seconds: float = 0.0
    records: list[StepRecord] = field(default_factory=list)
    where: str = "in-process"


KNOBS: dict[FaultKind, Callable[[Fault], dict[str, object]]] = {
    FaultKind.STREAM_DROP: lambda f: {"drop_rate": f.rate},
    FaultKind.STREAM_DUPLICATE: lambda f: {"duplicate_rate": f.rate},
    FaultKind.STREAM_REORDER: lambda f: {"reorder_rate": f.rate},
    FaultKind.STREAM_EARLY: lambda f: {"events_before_response": True},
    FaultKind.STREAM_GAP: lambda f: {"stream_gap": f.seconds},
    FaultKind.ACK_ONLY: lambda f: {
        "ack_only_if": predicate(f.roles),
        "fill_delay": f.seconds,
        "partial_fill": f.rate,
        "fill_parts": max(2, f.count),
    },
    FaultKind.TIMEOUT_AFTER_EXECUTION: lambda f: {"timeout_after_execution_if": predicate(f.roles)},
    FaultKind.REJECT: lambda f: {"reject_if": predicate(f.roles)},
    FaultKind.SERVER_ERRORS: lambda f: {"server_error_if": predicate(f.roles)},
    FaultKind.RATE_LIMIT: lambda f: {"rate_limit_if": predicate(f.roles)},
    FaultKind.QUERY_FAILURES: lambda f: {"fail_queries": True},
    FaultKind.EXECUTE_LATE: lambda f: {"execute_late_if": predicate(f.roles), "execute_delay": f.seconds},
    FaultKind.FIRED_IN_PARTS: lambda f: {
        "fire_in_parts": True,
        "fill_delay": f.seconds,
        "partial_fill": f.rate,
        "fill_parts": max(2, f.count),
    },
}
"""The simulator's knobs each exchange fault sets for its step."""
BURSTS: dict[FaultKind, tuple[str, object]] = {
    FaultKind.SERVER_ERRORS: ("server_error_if", None),
    FaultKind.RATE_LIMIT: ("rate_limit_if", None),
    FaultKind.QUERY_FAILURES: ("fail_queries", False),
}
"""Faults that end by themselves after `seconds`: the knob and its value once over."""


def predicate(roles: str) -> Callable[[OrderRequest], bool]:
    """An order-fault predicate: the orders of these role codes ("*": all)."""

    def matches(request: OrderRequest) -> bool:
        if roles == "*":
            return True
        parsed = parse_client_id(request.client_order_id)
        return parsed is not None and parsed.role.code in roles

    return matches


def target_price(sim: SimulatedExchange, step: Step) -> Decimal:
    """Where the step moves the mark: past the exchange position's stop, TP1, TP2, to a new peak
    (default plan: -1.5 %, +1 %, +2 %, trailing 0.5 %), or a small step when flat."""
    core = sim.core
    symbol = step.symbol
    inst = core.instruments[symbol]
    mark = core.mark(symbol)
    position = core.position(symbol)
    if position.flat or step.target is Target.WALK:
        sign = 1 if step.side is Side.LONG else -1
        return inst.round_price(mark * (1 + sign * Decimal("0.003")))
    sign = 1 if position.qty > 0 else -1
    entry = position.entry_price
    moves = {Target.STOP: "-0.02", Target.TP1: "0.012", Target.TP2: "0.022"}
    if step.target in moves:
        return inst.round_price(entry * (1 + sign * Decimal(moves[step.target])))
    beyond_tp2 = (mark - entry * (1 + sign * Decimal("0.02"))) * sign > 0
    base = mark if beyond_tp2 else entry * (1 + sign * Decimal("0.024"))
    return inst.round_price(base * (1 + sign * Decimal("0.006")))


class Run:
    """One scenario against one manager, on its own database and exchange."""

    def __init__(
        self, scenario: Scenario, databases: Databases, options: Options, trace: Trace | None = None
    ) -> None:
        self.scenario = scenario
        self.databases = databases
        self.options = options
        self.trace = trace
        self.result = RunResult(scenario.key, options.subject)
        self.clock = WarpClock()
        self.sim = SimulatedExchange(now=self.clock.now, seed=scenario.run, sleep=asyncio.sleep)
        self.db = DbFaults(options.db_timeout)
        self.subject: Subject
        self.checker: Checker
        self._timers: list[asyncio.TimerHandle] = []
        self._outsiders: list[Outside] = []
        self._disconnected = False
        self._opened: set[str] = set()
        self._record: StepRecord | None = None
        self._real_started = time.perf_counter()
        self.url = ""

    def say(self, line: str) -> None:
        if self.trace is not None:
            self.trace(line)

    async def play(self) -> RunResult:
        await self.begin()
        try:
            for step in self.scenario.steps:
                await self._step(step)
            await self._final()
        finally:
            await self.end()
        return self.result

    async def begin(self) -> None:
        """A database, the manager on it, started and settled."""
        self._real_started = time.perf_counter()
        self.url = await self.databases.new(f"r{self.scenario.run}-{self.options.subject}")
        self.subject = self._subject(self.url)
        self.checker = Checker(
            self.sim, self.subject, self.options.protection_window, self.options.reconcile_interval
        )
        self.say(
            f"run {self.scenario.key} against {self.subject.name} ({self.databases.kind}, "
            f"stacking {'on' if self.scenario.stacking else 'off'}, {len(self.scenario.steps)} steps)"
        )
        await self.subject.boot()
        await self._settle(None, SETTLE_AFTER_FAULTS)

    async def end(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.subject.shutdown()
            await self.sim.close()
        finally:
            await self.databases.drop(self.url)
            self.result.virtual_seconds = loop.time()
            self.result.real_seconds = time.perf_counter() - self._real_started
            self.result.longest = self.checker.longest
            self.result.longest_raw = self.checker.longest_raw

    async def settle(self, within: float = SETTLE_AFTER_FAULTS) -> bool:
        """Until the manager is idle and the stream drained (a dead process is restarted)."""
        return await self._settle(None, within)

    async def one_interval(self) -> None:
        """One reconcile interval (and the protection window) passes on the engine's own timer."""
        await asyncio.sleep(self.options.reconcile_interval + self.options.protection_window)
        await self._settle(None, SETTLE_AFTER_FAULTS)

    async def check(self, step: int, started: float) -> list[Violation]:
        """The checker, on what happened since `started` (outside actions recorded by `by_hand`)."""
        found = await self.checker.check(step, started, asyncio.get_running_loop().time(), self._outsiders)
        self._outsiders = []
        self.result.violations += found
        return found

    def _subject(self, url: str) -> Subject:
        if self.options.subject == "naive":
            from warden.chaos.naive import NaiveSubject

            return NaiveSubject(self.sim, url, self.db, id_maker(self.scenario.key))
        if self.databases.postgres:

            async def kill() -> None:
                await self.databases.terminate(url, f"warden-store:{ACCOUNT}")

            self.db.killer = kill
        config = self.options.engine_config(self.scenario.stacking)
        return WardenSubject(self.sim, url, config, self.db, id_maker(self.scenario.key))

    # -------------------------------------------------------------------------- a step

    async def _step(self, step: Step) -> None:
        loop = asyncio.get_running_loop()
        record = self._record = StepRecord(step, started=loop.time())
        self.result.records.append(record)
        self.result.steps += 1
        self._outsiders = []
        self.say(step.describe())
        calls_before = self.subject.io.calls
        self._apply(step.faults, loop.time())
        action = asyncio.ensure_future(self._act(step))
        await self._settle(action, SETTLE_WITH_FAULTS)
        self._clear()
        if not await self._settle(action, SETTLE_AFTER_FAULTS):
            record.violations.append(
                Violation("I4", f"still busy {SETTLE_AFTER_FAULTS:g}s after the faults ended", step.index)
            )
        if action.done() and not action.cancelled():
            error = action.exception()
            if isinstance(error, Unexpected):
                record.violations.append(Violation("error", str(error), step.index))
            elif isinstance(error, SimulatedCrash):
                record.outcome = "the engine died under the call"
            elif error is not None:
                raise error
            else:
                record.outcome = action.result()
        record.calls = max(0, self.subject.io.calls - calls_before)
        await asyncio.sleep(self.options.reconcile_interval + self.options.protection_window)
        await self._settle(None, SETTLE_AFTER_FAULTS)
        record.violations += await self.checker.check(
            step.index, record.started, loop.time(), self._outsiders
        )
        self.result.violations += record.violations
        if record.outcome:
            self.say(f"    -> {record.outcome}")
        if record.crashed:
            self.say(f"    -> the engine died {record.crashed}x and recovered")
        self.say(f"    exchange: {self._describe()}")
        for v in record.violations:
            self.say(f"    VIOLATION {v.invariant}: {v.message}")

    async def _final(self) -> None:
        """The end of the run: past every deadline of a stale intent, everything must have settled."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(PENDING_DEADLINE + 2 * self.options.reconcile_interval)
        await self._settle(None, SETTLE_AFTER_FAULTS)
        index = len(self.scenario.steps) + 1
        found = await self.checker.check(index, loop.time(), loop.time(), [], final=True)
        self.result.violations += found
        for v in found:
            self.say(f"end: VIOLATION {v.invariant}: {v.message}")

    def _describe(self) -> str:
        held = [f"{p.symbol.split('/')[0]} {p.side} {p.qty}" for p in self.sim.core.positions()]
        stops = sum(1 for o in self.sim.core.open_orders() if o.type is OrderType.STOP_MARKET)
        return (
            f"{', '.join(held) or 'flat'}; {len(self.sim.core.open_orders())} resting orders ({stops} stops)"
        )

    async def _settle(self, action: asyncio.Future[Any] | None, within: float) -> bool:
        """Until the action is done, the manager idle, the stream drained; restart a dead process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self.subject.io.dead:
                await self._crashed(action)
            for _ in range(3):
                await asyncio.sleep(0)
            idle = (
                (action is None or action.done())
                and not self.subject.busy()
                and self.sim.queued_events == 0
                and not self.sim.core.fills_due()
                and not self.subject.io.dead
            )
            if idle:
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)

    async def _crashed(self, action: asyncio.Future[Any] | None) -> None:
        if action is not None and not action.done():
            action.cancel()
            await asyncio.gather(action, return_exceptions=True)
        self.result.crashes += 1
        self.result.recoveries += 1
        if self._record is not None:
            self._record.crashed += 1
        await self.subject.crash()
        self.subject.restart()

    # -------------------------------------------------------------------------- faults

    def _apply(self, faults: tuple[Fault, ...], now: float) -> None:
        knobs = self.sim.faults
        for fault in faults:
            self.result.faults[fault.kind.value] += 1
            kind = fault.kind
            if kind is FaultKind.CRASH or kind in DATABASE:
                self._apply_to_process(fault)
            elif kind is FaultKind.STREAM_DISCONNECT:
                self.sim.disconnect()
                self._disconnected = True
                self._later(fault.seconds, self.sim.reconnect)
            else:
                for name, value in KNOBS[kind](fault).items():
                    setattr(knobs, name, value)
            if kind is FaultKind.EXECUTE_LATE and (hold := cover_hold(fault, faults)) > 0:
                knobs.execute_late_if = self._excusing(fault, hold, each=_each_send_held(fault, faults))
            if kind in BURSTS:
                self._later(fault.seconds, functools.partial(setattr, knobs, *BURSTS[kind]))
            if excused(fault, faults):
                self.checker.excuse(now, now + _excused_for(fault), None, str(fault))

    def _excusing(self, fault: Fault, hold: float, *, each: bool) -> Callable[[OrderRequest], bool]:
        """The EXECUTE_LATE predicate of a fault that holds back what covers (`cover_hold`),
        excusing a stop or close it holds back, on its symbol, for `hold` seconds from its send:
        nothing sent can cover a position sooner. `each`: every one held (each lands when its
        hold ends, or every way to cover is refused or held alike); otherwise only the first on
        its symbol — a close acknowledged sooner could cover, and a stop sent again later, still
        held, does not push that back (chaos 1206:48 would be excused whole)."""
        held = predicate(fault.roles)
        first: set[Symbol] = set()

        def matches(request: OrderRequest) -> bool:
            if not held(request):
                return False
            parsed = parse_client_id(request.client_order_id)
            if parsed is not None and parsed.role.code in "sc" and (each or request.symbol not in first):
                first.add(request.symbol)
                now = asyncio.get_running_loop().time()
                why = f"{fault}: {request.client_order_id} held back by the exchange"
                self.checker.excuse(now, now + hold, request.symbol, why)
            return True

        return matches

    def _apply_to_process(self, fault: Fault) -> None:
        """Faults of the engine's process and its database, armed at the step's k-th I/O call."""
        db, io = self.db, self.subject.io
        if fault.kind is FaultKind.CRASH:
            io.crash_at(fault.at)
        elif fault.kind is FaultKind.DB_OUTAGE:
            io.at(fault.at, functools.partial(self._outage, fault.seconds))
        elif fault.kind is FaultKind.DB_SLOW:
            db.slow = fault.seconds
        elif fault.kind is FaultKind.DB_LOCK:
            db.locked = fault.count
        elif fault.kind is FaultKind.DB_KILL:
            io.at(fault.at, lambda: setattr(db, "kill", db.kill + 1))
        elif fault.kind is FaultKind.DB_ACK_LOST:
            db.ack_lost = fault.count

    def _outage(self, seconds: float) -> None:
        """The database goes down now and comes back after `seconds` (or when the step ends)."""
        self.db.down = True
        self._later(seconds, lambda: setattr(self.db, "down", False))

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(seconds, action))

    def _clear(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        knobs = self.sim.faults
        for f in fields(SimFaults):
            setattr(knobs, f.name, f.default)  # a stream_gap silence under way ends by itself
        if self._disconnected:
            self.sim.reconnect()
            self._disconnected = False
        self.db.clear()
        self.subject.io.disarm()

    # ------------------------------------------------------------------------- actions

    def _where(self, step: Step) -> Step:
        """An action on a position goes to the drawn symbol, or (if it is flat) the next one held."""
        if step.act not in (Act.PRICE, Act.CLOSE, Act.OUTSIDE_CLOSE, Act.CANCEL_STOP):
            return step
        held = {p.symbol for p in self.sim.core.positions()}
        if step.symbol in held or not held:
            return step
        order = list(SYMBOLS)
        start = order.index(step.symbol)
        for symbol in order[start + 1 :] + order[:start]:
            if symbol in held:
                return replace(step, symbol=symbol)
        return step

    async def _act(self, step: Step) -> str:
        sim = self.sim
        step = self._where(step)
        if step.act in (Act.SIGNAL, Act.REPEAT):
            return await self._open(step)
        if step.act is Act.RACE:
            both = await asyncio.gather(self._open(step), self._open(step))
            return " | ".join(both)
        if step.act is Act.PRICE:
            price = target_price(sim, step)
            sim.set_mark(step.symbol, price)
            return f"{step.symbol.split('/')[0]} at {price}"
        if step.act is Act.CLOSE:
            return await self.subject.close(step.symbol)
        if step.act is Act.OUTSIDE_OPEN:
            return self._outside_open(step)
        if step.act is Act.OUTSIDE_CLOSE:
            return self._outside_close(step)
        if step.act is Act.CANCEL_STOP:
            return self._cancel_stop(step)
        if step.act is Act.SECOND_ENGINE:
            problems = await self.subject.second_engine()
            if self._record is not None:
                self._record.violations += [Violation("I6", p, step.index) for p in problems]
            return "the second engine stood by" if not problems else "; ".join(problems)
        if step.act is Act.RESTART:
            return await self._restart(step)
        await asyncio.sleep(step.seconds)
        return f"{step.seconds:g}s passed"

    async def _open(self, step: Step) -> str:
        signal_id = step.signal_id
        outcome = await self.subject.open(step, signal_id)
        opened = not outcome.startswith(("409", "refused"))
        if signal_id is not None and opened:
            if signal_id in self._opened and self._record is not None:
                self._record.violations.append(
                    Violation("I3", f"signal id {signal_id} opened a second position: {outcome}", step.index)
                )
            self._opened.add(signal_id)
        return outcome

    def by_hand(self, symbol: Symbol, what: str) -> None:
        """Something done on the account by hand: excused for a reconcile interval, must be noticed."""
        now = asyncio.get_running_loop().time()
        window = self.options.reconcile_interval + self.options.protection_window
        self.checker.excuse(now, now + window, symbol, what)
        self._outsiders.append(Outside(symbol, what))

    def _outside_open(self, step: Step) -> str:
        core = self.sim.core
        inst = core.instruments[step.symbol]
        qty = order_qty(inst, core.mark(step.symbol), step.usd, None)
        try:
            report = self.sim.external_order(step.symbol, step.side.entry_side, qty)
        except OrderRejected as exc:
            return f"refused by the exchange: {exc}"
        self.by_hand(step.symbol, f"an outside {step.side} of {qty}")
        return f"{report.client_order_id} {step.side} {qty} filled"

    def _outside_close(self, step: Step) -> str:
        position = self.sim.core.position(step.symbol)
        if position.flat:
            return "nothing to close"
        inst = self.sim.core.instruments[step.symbol]
        qty = abs(position.qty)
        if step.fraction < 1:
            qty = max(inst.min_qty, (qty * step.fraction).quantize(inst.lot_size, rounding=ROUND_DOWN))
        side = position.side.exit_side
        try:
            report = self.sim.external_order(step.symbol, side, qty, reduce_only=True)
        except (OrderRejected, SimRejection) as exc:
            return f"refused by the exchange: {exc}"
        self.by_hand(step.symbol, f"an outside reduce of {qty}")
        return f"{report.client_order_id} {side} {qty} {report.status}"

    def _cancel_stop(self, step: Step) -> str:
        stops = [
            o
            for o in self.sim.core.open_orders(step.symbol)
            if o.type is OrderType.STOP_MARKET and o.status is OrderStatus.OPEN
        ]
        if not stops:
            return "no stop rests"
        cancelled = self.sim.cancel_external(stops[0].client_order_id)
        self.by_hand(step.symbol, f"a hand-cancelled stop {cancelled.client_order_id}")
        return f"cancelled {cancelled.client_order_id}"

    async def _restart(self, step: Step) -> str:
        # an entry still being resolved may be resolved by the restart's recovery: not compared
        before = {h.id: h for h in self.subject.memory() if h.status != "opening"}
        await self.subject.crash()
        self.result.crashes += 1
        self.result.recoveries += 1
        self.subject.restart()
        await self._settle(None, SETTLE_AFTER_FAULTS)
        after = {h.id: h for h in self.subject.memory()}
        for pid, held in before.items():
            if pid in after:
                kept = _survived(held, after[pid].exit)
            else:
                ended = await self.subject.ended(pid)
                kept = ended is not None and _ended_by_its_stop(held, ended)
            if not kept and self._record is not None:
                now = after[pid].exit if pid in after else None
                self._record.violations.append(
                    Violation("I5", f"{pid} before the restart {held.exit}, after {now}", step.index)
                )
        return f"restarted; {len(after)} positions recovered"


STOP_AT = 5
"""Where the stop price sits in a Held's exit state (subject.exit_state)."""


def _survived(before: Held, after: tuple[object, ...]) -> bool:
    """A position's exit state came through a restart: the same in everything but its stop,
    which may have tightened (a move the exchange refused before the crash, or one that was
    due, is made by recovery) but never loosened."""
    if len(before.exit) <= STOP_AT or len(after) <= STOP_AT:
        return before.exit == after
    rest_same = before.exit[:STOP_AT] + before.exit[STOP_AT + 1 :] == after[:STOP_AT] + after[STOP_AT + 1 :]
    return rest_same and _not_loosened(before, after[STOP_AT])


def _not_loosened(before: Held, stop: object) -> bool:
    """The stop price is where it was before the restart, or tighter."""
    old = before.exit[STOP_AT]
    if old == stop or not isinstance(old, Decimal) or not isinstance(stop, Decimal):
        return old == stop
    return (stop - old) * before.side.sign > 0


PEAK_AT, REASON_AT = STOP_AT + 1, STOP_AT + 2
"""Where the peak and the exit reason sit in it."""
STOP_REASONS = ("stop", "trailing_stop")
"""The exit reasons a stop records (or the close taking a stop's place)."""


def _ended_by_its_stop(before: Held, ended: tuple[object, ...]) -> bool:
    """A position gone from memory after a restart kept its exit state if it was restored and then
    acted on: the stop it was due (restored from its peak) fired, or was already through the market
    and the runner was closed in its place (chaos 41418:971: a trailing move refused before the
    crash, made by recovery and refused as through the mark). The stored row shows it: closed by
    its stop with nothing left, TP1, TP2, trailing and the peak exactly as before the restart, and
    the stop where it was or tightened. A position that lost its state is not closed by its stop
    (a reset peak or trail would not be through the market) or stores a different state."""
    if len(before.exit) <= REASON_AT or len(ended) != len(before.exit):
        return False
    by_its_stop = ended[0] == "closed" and ended[1] == 0 and ended[REASON_AT] in STOP_REASONS
    carried = ended[2:STOP_AT] == before.exit[2:STOP_AT] and ended[PEAK_AT] == before.exit[PEAK_AT]
    return by_its_stop and carried and _not_loosened(before, ended[STOP_AT])


def excused(fault: Fault, faults: tuple[Fault, ...]) -> bool:
    """Whether this fault's time is excused from the protection window: the exchange refuses
    what protection needs (a refusal burst that hits stops or closes), or holds the closes
    unfilled while it refuses every stop."""
    if fault.kind in REFUSALS and fault.kind is not FaultKind.REJECT:
        return _hits_protection(fault)
    return fault.kind is FaultKind.ACK_ONLY and _holds_the_last_resort(fault, faults)


def held_for(fault: Fault) -> float:
    """Seconds the exchange holds what the fault hits. An order acknowledged under an ACK_ONLY
    that fills in parts fills its last part `seconds` after the one before: its whole hold is
    `seconds` times its parts, not `seconds` (chaos 60607:1723: closes held 12 s in three parts
    while every stop was refused; excused 12 s, the close sent on the fill could not end before
    36 s)."""
    if fault.kind is FaultKind.ACK_ONLY and fault.rate > 0:
        return fault.seconds * max(2, fault.count)
    return fault.seconds


def _excused_for(fault: Fault) -> float:
    """Seconds from the step's start an excused fault excuses (`excused`). A refusal burst, its
    length. Closes held unfilled while every stop is refused (`_holds_the_last_resort`), their
    hold (`held_for`); twice that when the fault holds entries too: the entry's last part fills a
    hold after it was sent, and the close of that part, the only way to cover it, ends a hold
    after that (chaos 60607:3417: entries and closes held 1.5 s in three parts, stops refused;
    no position of the step could be flat before 9 s)."""
    if fault.kind is FaultKind.ACK_ONLY and (fault.roles == "*" or "e" in fault.roles):
        return 2 * held_for(fault)
    return held_for(fault)


def _holds_the_last_resort(fault: Fault, faults: tuple[Fault, ...]) -> bool:
    """Closes held unfilled while every stop is refused: with neither, nothing can protect (the
    close that replaces a refused stop is acknowledged and filled only after the delay, or, held
    back by the exchange (EXECUTE_LATE), lands only after it: chaos 1208:347, excused per close
    from its send, as `holds_every_cover`'s are)."""
    holds_closes = fault.roles == "*" or "c" in fault.roles
    refuses_stops = any(f.kind is FaultKind.REJECT and ("s" in f.roles or f.roles == "*") for f in faults)
    return holds_closes and refuses_stops


def cover_hold(fault: Fault, faults: tuple[Fault, ...]) -> float:
    """Seconds from its send that each stop or close an EXECUTE_LATE fault holds back is excused
    (0: none): the exchange holds every way to cover, so nothing sent could cover sooner. Its
    whole hold when it holds stops and closes alike (`holds_every_cover`), or closes while every
    stop is refused (`_holds_the_last_resort`). When it holds stops alone while another fault
    holds every close acknowledged and unfilled (ACK_ONLY), the shorter of the two holds, from
    the first stop held on a symbol only: that stop, sent on the fill, lands after its hold, and
    a close sent then fills only after its own (chaos 1238:170: stops held 2.45 s, closes 12 s;
    the stop sent on the fill rested 2.45 s after it). What the manager takes beyond that (1206:48:
    stops held 3.45 s, closes 1.5 s, the close sent after 1.5 s of the stop's retries) counts."""
    if fault.kind is not FaultKind.EXECUTE_LATE:
        return 0.0
    if _each_send_held(fault, faults):
        return fault.seconds
    if fault.roles == "*" or "s" in fault.roles:
        acked = [
            held_for(f) for f in faults if f.kind is FaultKind.ACK_ONLY and (f.roles == "*" or "c" in f.roles)
        ]
        if acked:
            return min(fault.seconds, max(acked))
    return 0.0


def _each_send_held(fault: Fault, faults: tuple[Fault, ...]) -> bool:
    """Whether every stop or close an EXECUTE_LATE fault holds back is excused from its own send
    (`Run._excusing`): it holds every way to cover alike (`holds_every_cover`), or closes while
    every stop is refused (`_holds_the_last_resort`)."""
    return holds_every_cover(fault) or _holds_the_last_resort(fault, faults)


def holds_every_cover(fault: Fault) -> bool:
    """An EXECUTE_LATE fault on stops and closes alike: every stop and every close (the fallback
    when a stop cannot be placed) is answered "unknown" and lands only `seconds` after it was sent,
    so nothing can cover a position sooner than that; like closes held while stops are refused
    (`_holds_the_last_resort`), that time is the exchange's, not the manager's. On stops alone
    it excuses nothing: a close still goes through at once."""
    return fault.kind is FaultKind.EXECUTE_LATE and (fault.roles == "*" or {"s", "c"} <= set(fault.roles))


def _hits_protection(fault: Fault) -> bool:
    """A refusal burst that can keep a stop (or the close that replaces one) from resting."""
    return fault.kind is FaultKind.QUERY_FAILURES or any(r in fault.roles for r in "sc*")
