"""The invariant checker: the exchange's truth against the manager's database and memory.

Run after every step, once the step's faults are over and one reconcile interval has passed
(the engine's own timer ran a pass). Judged from the exchange's own records wherever it has
them, never from the manager's bookkeeping:

    I1  every stretch the exchange measured a position without covering stops (its exposure
        stretches) lasted at most `protection_window`, plus whatever of it is excused: time the
        exchange refused what protection needs (5xx / 429 / query failure bursts), and one
        reconcile interval after an outside trade or a stop cancelled by hand (found by
        reconciliation: I4's bound). After the wait, every active position has a resting stop
        of its size, and the manager knows it.
    I2  every exchange trade of the manager's orders is recorded once (what a stale exit order
        filled for other positions is recorded as `<trade>:<position>`; a part no position
        held is an event); no client order id was placed twice or traded beyond its size.
    I4  per symbol, the exchange's position = the manager's memory = its database; the open
        orders agree (nothing of the manager's rests that it does not know of, nothing it
        believes rests is gone); nothing is left opening or closing.
    I5  memory and database agree on every exit state (TP1/TP2 hit, trailing, stop price, peak,
        remaining); a stop never loosens, a peak never recedes, a hit TP never un-hits; after an
        idle restart the recovered exit state is exactly what it was.
    I6  (the second-engine step) a standby sends and writes nothing.
    events  every divergence found (a reconciliation finding) is an event and an alert; every
        outside trade or hand-cancelled stop produced a finding; a degraded database an alert;
        no engine error that is not an exchange or database failure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from warden.adapters.sim import SimulatedExchange
from warden.chaos.subject import Held, Subject
from warden.chaos.warp import EPOCH
from warden.domain.alerts import AlertKind
from warden.domain.events import Event, EventKind
from warden.domain.values import Side, Symbol
from warden.service.reconciler import LATE_FOUND

FINDING_ALERTS: dict[str, frozenset[AlertKind]] = {
    "orphan": frozenset({AlertKind.ORPHAN_ADOPTED, AlertKind.ORPHAN_FOUND}),
    "ghost": frozenset({AlertKind.GHOST_CLOSED, AlertKind.UNKNOWN_ROW}),
    "size_mismatch": frozenset({AlertKind.SIZE_MISMATCH, AlertKind.UNKNOWN_ROW}),
    "missing_stop": frozenset({AlertKind.STOP_REPLACED}),
    "stray_order": frozenset({AlertKind.STRAY_CANCELLED}),
    "other_instance": frozenset({AlertKind.OTHER_INSTANCE}),
    "unknown_intent": frozenset({AlertKind.UNKNOWN_ROW}),
}
EVENT_SLACK = 0.001
"""Event times are stored to the microsecond; the step's start is not rounded."""
OUTSIDE_SEEN = frozenset({EventKind.RECONCILE, EventKind.PROTECTION_LOST})
FAILURES = ("ExchangeUnavailable", "ExchangeTimeout", "OrderRejected", "OrderNotFound", "StoreUnavailable")
"""An engine error alert naming one of these is the exchange or database failing, not a bug."""


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    message: str
    step: int

    def __str__(self) -> str:
        return f"step {self.step}: {self.invariant}: {self.message}"


@dataclass(frozen=True, slots=True)
class Excuse:
    """A time when the exchange's refusals (or an outside actor) excuse an uncovered position."""

    start: float
    end: float
    symbol: Symbol | None
    why: str


@dataclass(frozen=True, slots=True)
class Outside:
    """Something done on the account by hand that changed it: the manager must notice."""

    symbol: Symbol
    what: str


def seconds_of(at: datetime) -> float:
    """A sim / engine datetime as loop seconds (in-process runs start at EPOCH)."""
    return (at - EPOCH).total_seconds()


def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _overlap(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in intervals)


@dataclass
class Checker:
    sim: SimulatedExchange
    subject: Subject
    window: float
    interval: float
    excuses: list[Excuse] = field(default_factory=list)
    longest: float = 0.0
    """The longest uncovered stretch with its excused time taken out (the figure I1 is about)."""
    longest_raw: float = 0.0
    """The longest uncovered stretch as the exchange measured it, excuses and all."""
    _judged: set[tuple[Symbol, datetime]] = field(default_factory=set)
    _reported: set[str] = field(default_factory=set)
    _stops: dict[str, Decimal] = field(default_factory=dict)
    _peaks: dict[str, Decimal] = field(default_factory=dict)
    _hits: dict[str, tuple[bool, bool, bool]] = field(default_factory=dict)
    _alerts_seen: int = 0

    def excuse(self, start: float, end: float, symbol: Symbol | None, why: str) -> None:
        self.excuses.append(Excuse(start, end, symbol, why))

    async def check(
        self, step: int, started: float, now: float, outside: list[Outside], *, final: bool = False
    ) -> list[Violation]:
        """After a step (`final`: at the end of the run, once even a stale intent must be resolved:
        an entry intent whose send is unknown is looked up after `pending_deadline`)."""
        out: list[Violation] = []
        out += self._protection(step, now)
        memory = self.subject.memory()
        stored = await self.subject.stored()
        out += self._books(step, memory)
        out += self._agreement(step, memory, stored, final)
        out += self._exit_state(step, memory, stored)
        out += await self._fills(step)
        out += await self._heard(step, started, outside)
        return [v for v in out if self._once(f"{v.invariant} {v.message}")]  # a lasting problem counts once

    def _once(self, key: str) -> bool:
        if key in self._reported:
            return False
        self._reported.add(key)
        return True

    # ------------------------------------------------------------------------- I1

    def _protection(self, step: int, now: float) -> list[Violation]:
        out = []
        for stretch in self.sim.exposure_stretches():
            if (stretch.symbol, stretch.start) in self._judged:
                continue
            start = seconds_of(stretch.start)
            end = now if stretch.end is None else seconds_of(stretch.end)
            excused = _overlap(
                start,
                end,
                _merged(
                    [(e.start, e.end) for e in self.excuses if e.symbol is None or e.symbol == stretch.symbol]
                ),
            )
            raw = end - start
            unexcused = max(0.0, raw - excused)
            self.longest_raw = max(self.longest_raw, raw)
            self.longest = max(self.longest, unexcused)
            if unexcused > self.window:
                self._judged.add((stretch.symbol, stretch.start))
                ongoing = " and still is" if stretch.end is None else ""
                why = f" ({excused:.2f}s of it excused)" if excused else ""
                out.append(
                    Violation(
                        "I1",
                        f"{stretch.symbol} had no covering stop for {raw:.2f}s{ongoing}{why}: "
                        f"{unexcused:.2f}s > protection window {self.window}s, as the exchange measured it",
                        step,
                    )
                )
            elif stretch.end is not None:
                self._judged.add((stretch.symbol, stretch.start))
        return out

    def _books(self, step: int, memory: list[Held]) -> list[Violation]:
        """The manager's own view of protection, checked against the exchange's open orders."""
        out = []
        resting = {o.client_order_id: o for o in self.sim.core.open_orders()}
        for held in memory:
            if held.qty <= 0:
                continue
            if held.stop is None:
                out.append(
                    Violation(
                        "I1", f"{held.id} {held.symbol} {held.qty}: no resting stop ({held.status})", step
                    )
                )
                continue
            order = resting.get(held.stop)
            if order is None:
                out.append(
                    Violation("I4", f"{held.id}: its stop {held.stop} does not rest on the exchange", step)
                )
            elif order.qty != held.qty or held.stop_qty != held.qty:
                out.append(
                    Violation(
                        "I1", f"{held.id}: stop {held.stop} for {order.qty}, position is {held.qty}", step
                    )
                )
        return out

    # ------------------------------------------------------------------------- I4

    def _agreement(self, step: int, memory: list[Held], stored: list[Held], final: bool) -> list[Violation]:
        out = []
        exchange: dict[Symbol, Decimal] = defaultdict(Decimal)
        for p in self.sim.core.positions():
            exchange[p.symbol] += p.qty * p.side.sign
        mem: dict[Symbol, Decimal] = defaultdict(Decimal)
        db: dict[Symbol, Decimal] = defaultdict(Decimal)
        for h in memory:
            mem[h.symbol] += h.signed
        for h in stored:
            db[h.symbol] += h.signed
        for symbol in sorted(set(exchange) | set(mem) | set(db)):
            if not exchange[symbol] == mem[symbol] == db[symbol]:
                out.append(
                    Violation(
                        "I4",
                        f"{symbol}: exchange {exchange[symbol]}, memory {mem[symbol]}, database {db[symbol]}",
                        step,
                    )
                )
        for h in memory:
            if h.status in ("opening", "closing") and (h.qty > 0 or final):
                out.append(
                    Violation("I4", f"{h.id} {h.symbol} still {h.status} after a reconcile interval", step)
                )
        mine = {
            o.client_order_id for o in self.sim.core.open_orders() if self.subject.owns(o.client_order_id)
        }
        live = self.subject.live_orders()
        for cid in sorted(mine - live.keys()):
            out.append(Violation("I4", f"{cid} rests on the exchange, unknown to the manager as live", step))
        for cid, resting in sorted(live.items()):
            if resting and cid not in mine:
                out.append(
                    Violation("I4", f"the manager believes {cid} rests; the exchange has no such order", step)
                )
        return out

    # ------------------------------------------------------------------------- I5

    def _exit_state(self, step: int, memory: list[Held], stored: list[Held]) -> list[Violation]:
        out = []
        by_id = {h.id: h for h in stored}
        for h in memory:
            row = by_id.get(h.id)
            if row is None:
                out.append(
                    Violation("I4", f"{h.id} {h.symbol} is active in memory, not in the database", step)
                )
            elif row.exit != h.exit:
                out.append(Violation("I5", f"{h.id}: memory {h.exit} != database {row.exit}", step))
            out += self._monotonic(step, h)
        for pid in sorted(by_id.keys() - {h.id for h in memory}):
            out.append(Violation("I4", f"{pid} is active in the database, not in memory", step))
        return out

    def _monotonic(self, step: int, h: Held) -> list[Violation]:
        out = []
        sign = 1 if h.side is Side.LONG else -1

        def better(new: Decimal, old: Decimal) -> bool:
            return (new - old) * sign >= 0

        if h.stop_price is not None:
            old = self._stops.get(h.id)
            if (
                old is not None
                and not better(h.stop_price, old)
                and self._once(f"loosen {h.id} {h.stop_price}")
            ):
                out.append(Violation("I5", f"{h.id}: the stop loosened from {old} to {h.stop_price}", step))
            self._stops[h.id] = h.stop_price if old is None or better(h.stop_price, old) else old
        if h.watermark is not None:
            old = self._peaks.get(h.id)
            if old is not None and not better(h.watermark, old) and self._once(f"peak {h.id} {h.watermark}"):
                out.append(Violation("I5", f"{h.id}: the peak receded from {old} to {h.watermark}", step))
            self._peaks[h.id] = h.watermark if old is None or better(h.watermark, old) else old
        if len(h.exit) >= 5:
            hits = (bool(h.exit[2]), bool(h.exit[3]), bool(h.exit[4]))
            old_hits = self._hits.get(h.id)
            if old_hits is not None and any(a and not b for a, b in zip(old_hits, hits, strict=True)):
                out.append(Violation("I5", f"{h.id}: exit flags went back from {old_hits} to {hits}", step))
            self._hits[h.id] = hits
        return out

    # ------------------------------------------------------------------------- I2

    async def _fills(self, step: int) -> list[Violation]:
        out = []
        core = self.sim.core
        recorded = await self.subject.recorded()
        leftovers = {e.data.get("trade_id") for e in await self.subject.events() if e.data.get("trade_id")}
        attributed: dict[str, Decimal] = defaultdict(Decimal)
        for trade_id, qty in recorded.items():
            attributed[trade_id.partition(":")[0]] += qty
        executed: dict[str, Decimal] = defaultdict(Decimal)
        for symbol in core.instruments:
            for fill in core.fills(symbol):
                if not self.subject.owns(fill.client_order_id):
                    continue
                executed[fill.client_order_id] += fill.qty
                got = attributed.get(fill.trade_id, Decimal(0))
                if got > fill.qty and self._once(f"double {fill.trade_id}"):
                    out.append(
                        Violation(
                            "I2",
                            f"trade {fill.trade_id} ({fill.client_order_id}) recorded {got} of {fill.qty}",
                            step,
                        )
                    )
                elif (
                    got < fill.qty and fill.trade_id not in leftovers and self._once(f"lost {fill.trade_id}")
                ):
                    out.append(
                        Violation(
                            "I2",
                            f"trade {fill.trade_id} of {fill.client_order_id} ({fill.qty}) recorded {got}",
                            step,
                        )
                    )
        placed: dict[str, int] = defaultdict(int)
        size: dict[str, Decimal] = {}
        for order in core.orders():
            if self.subject.owns(order.client_order_id):
                placed[order.client_order_id] += 1
                size[order.client_order_id] = order.qty
        for cid, n in placed.items():
            if n > 1 and self._once(f"twice {cid}"):
                out.append(Violation("I2", f"order {cid} was placed {n} times (a duplicate order)", step))
        for cid, qty in executed.items():
            if qty > size.get(cid, qty) and self._once(f"over {cid}"):
                out.append(Violation("I2", f"order {cid} traded {qty}, more than its {size[cid]}", step))
        return out

    # --------------------------------------------------------------------- events

    async def _heard(self, step: int, started: float, outside: list[Outside]) -> list[Violation]:
        out = []
        events = [e for e in await self.subject.events() if seconds_of(e.at) >= started - EVENT_SLACK]
        alerts = self.subject.notifier.since(started - EVENT_SLACK)
        kinds = {a.kind for a in alerts}
        for event in events:
            finding = event.data.get("kind") or ""
            expected = FINDING_ALERTS.get(finding, frozenset())
            if finding == "orphan" and LATE_FOUND in event.message:
                # An entry given up on, found executed by its client id: no stream fill told the
                # trader, so the finding's alert is entry_unresolved (Reconciler._record).
                expected = frozenset({AlertKind.ENTRY_UNRESOLVED})
            unalerted = finding in FINDING_ALERTS and not kinds & expected
            if event.kind is EventKind.RECONCILE and unalerted:
                out.append(Violation("events", f"finding without an alert: {event.message}", step))
            degraded = event.kind is EventKind.STORE_DEGRADED and AlertKind.DATABASE_DEGRADED not in kinds
            if degraded and self._once(f"degraded {step}"):
                out.append(Violation("events", f"database degraded without an alert: {event.message}", step))
        symbols = await self.subject.symbols()
        for act in outside:
            if not _noticed(act.symbol, events, symbols):
                out.append(Violation("events", f"{act.what} on {act.symbol}: no event records it", step))
            elif not any(_about(act.symbol, a.message, a.position_id, symbols) for a in alerts):
                out.append(Violation("events", f"{act.what} on {act.symbol}: nobody was alerted", step))
        for timed in self.subject.notifier.alerts[self._alerts_seen :]:
            alert = timed.alert
            if alert.kind is AlertKind.ENGINE_ERROR and not any(name in alert.message for name in FAILURES):
                out.append(Violation("error", f"the engine hit an error: {alert.message}", step))
        self._alerts_seen = len(self.subject.notifier.alerts)
        return out


def _about(symbol: Symbol, message: str, position_id: str | None, symbols: dict[str, Symbol]) -> bool:
    return symbol in message or (position_id is not None and symbols.get(position_id) == symbol)


def _noticed(symbol: Symbol, events: list[Event], symbols: dict[str, Symbol]) -> bool:
    return any(
        e.kind in OUTSIDE_SEEN
        and (e.data.get("symbol") == symbol or _about(symbol, e.message, e.position_id, symbols))
        for e in events
    )
