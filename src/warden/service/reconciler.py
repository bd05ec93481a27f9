"""Reconciliation: read the exchange's truth, diff it (domain/reconcile.py), act, record.

One pass brings the exchange, the database and memory into agreement: it diffs
and repairs in rounds until nothing differs (a flip needs two: the record of the
old side closes, then the new side is adopted) or `reconcile_rounds` is spent.

Every discrepancy becomes an event (its kind, what was found, the action taken)
and an alert. Actions go through the ordinary paths as fills — read back from
the exchange where it has them (an outside trade's price and fee), synthetic
where it does not — so PnL, fees and de-duplication stay right. A failed
exchange query raises: it is never read as "flat".

Before diffing, each pass also compares the database's open rows with memory:
a row written behind warden's back is an event and an alert, then checked
against the exchange like any other (adopted or closed through the state
machine). So is an order row (an intent) of a position memory knows: taken into
memory and looked up on the exchange (resting: the position's, as a restart
would take it; not found: refused for good). Order intents still PENDING past
their deadline are resolved by lookup so they never block the symbol's checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

import structlog

from warden.domain.alerts import Alert, AlertKind
from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.plan import tighter
from warden.domain.position import ExitReason, Position, PositionStatus
from warden.domain.reconcile import Discrepancy, Kind, Truth, diff, guarding, ours, uncovered, unsettled
from warden.domain.reports import FillReport
from warden.domain.values import (
    ZERO,
    ClientOrderId,
    OrderRole,
    OrderType,
    PositionId,
    Side,
    Symbol,
    TradeId,
    parse_client_id,
)
from warden.ports import ExchangeError, OrderNotFound, Store, StoreUnavailable
from warden.service.commands import TradingRefused
from warden.service.context import Context
from warden.service.exits import COVER, EXIT_ROLES, ExitManager
from warden.service.gateway import Found, Gateway, Unknown
from warden.service.recovery import Recovery

log = structlog.get_logger("warden.reconciler")

REPAIR_CONCURRENCY = 32
"""Symbols repaired at once; one symbol's discrepancies are repaired in order."""
WRITE_WAIT = 10.0
"""Seconds a round waits for the writes under way on a symbol it deferred (then defers again)."""
GIVEN_UP_WINDOW = 100
"""The account's most recent positions an orphan's symbol is looked for in (a failed entry that
executed late, found by REST only): a failed position older than that is not looked for."""
GIVEN_UP_LOOKUPS = 10
"""The most failed entries one orphan looks up (`_given_up_entries`): a burst of failed signals
on a symbol costs a pass at most this many lookups."""
LATE_FOUND = "found executed on the exchange by its client id"

ALERTS = {
    Kind.ORPHAN: AlertKind.ORPHAN_ADOPTED,
    Kind.GHOST: AlertKind.GHOST_CLOSED,
    Kind.SIZE_MISMATCH: AlertKind.SIZE_MISMATCH,
    Kind.MISSING_STOP: AlertKind.STOP_REPLACED,
    Kind.STRAY_ORDER: AlertKind.STRAY_CANCELLED,
    Kind.OTHER_INSTANCE: AlertKind.OTHER_INSTANCE,
    Kind.UNKNOWN_INTENT: AlertKind.UNKNOWN_ROW,
}


class OrphanPolicy(StrEnum):
    ADOPT = "adopt"
    CLOSE = "close"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class Finding:
    discrepancy: Discrepancy
    action: str


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    at: datetime
    positions_checked: int
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    rounds: int = 1


class Reconciler:
    def __init__(
        self,
        ctx: Context,
        gateway: Gateway,
        exits: ExitManager,
        recovery: Recovery,
        store: Store,
        new_id: Callable[[], str],
        on_other_instance: Callable[[str, str], Awaitable[None]],
        orphan_policy: OrphanPolicy = OrphanPolicy.ADOPT,
        pass_again: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.gw = gateway
        self.exits = exits
        self.recovery = recovery
        self.store = store
        self.new_id = new_id
        self.on_other_instance = on_other_instance
        self.orphan_policy = orphan_policy
        self.last_reconcile_at: datetime | None = None
        self._told_orphans: dict[Symbol, str] = {}
        """Orphans left alone (orphan_policy=alert) the trader was told of: symbol -> what was found."""
        self.pass_again = pass_again
        """Runs a whole pass, one at a time with the timer's (the engine's `reconcile`)."""
        self._strays_later: dict[ClientOrderId, asyncio.Task[None]] = {}
        """Strays left resting while copies of them may still land, each cancelled by its task."""
        self.late_entries: dict[Symbol, Position] = {}
        """Entries of warden's that executed after it gave up on them (their positions failed),
        by symbol: an orphan on their side is that entry's position, adopted with its plan and
        levels whatever the orphan policy (it is warden's own, not one it has no record of).
        Kept for the next pass that runs to its end."""

    async def run(self, *, check_rows: bool = True) -> ReconcileReport:
        ctx = self.ctx
        started = time.perf_counter()
        findings: list[Finding] = []
        late = dict(self.late_entries)
        if check_rows:
            findings.extend(await self._unknown_rows())
        await self._resolve_stale_intents()
        rounds = 0
        checked = 0
        for rounds in range(1, ctx.config.reconcile_rounds + 1):
            mark = ctx.ledger.mark()
            truth = await self.gw.truth()
            active = ctx.ledger.active_positions()
            checked = max(checked, len(active))
            found = diff(active, ctx.ledger.orders, truth, ctx.config.installation_id)
            # A symbol whose memory moved while the exchange was read (a fill on the stream, a
            # stop being moved) is compared with a snapshot older than the memory: its
            # differences are not believed this round; the next round reads the exchange again.
            moved = ctx.ledger.moved_since(mark)
            actionable = [
                d
                for d in found
                if d.symbol not in moved
                and (d.kind is not Kind.OTHER_INSTANCE or rounds == 1)
                and d.client_order_id not in self._strays_later  # its cancel is under way
            ]
            deferred = any(d.symbol in moved for d in found)
            if not actionable:
                if deferred:
                    await self._writes_landed({d.symbol for d in found if d.symbol in moved})
                    continue
                break
            done = await self._repair(actionable, truth, mark)
            findings.extend(done)  # and round again: what moved is checked against a fresh read
            if all(d.kind in (Kind.OTHER_INSTANCE,) for d in actionable):
                break
            if self.orphan_policy is OrphanPolicy.ALERT and all(
                d.kind in (Kind.ORPHAN, Kind.OTHER_INSTANCE) for d in actionable
            ):
                break
        await self._resting_intents(truth)
        await self._record(self._untold(findings, truth))
        for symbol, position in late.items():
            # One on a symbol the pass left alone keeps its place for the pass that runs once
            # the symbol settles (`Engine._reconcile_once_settled`; chaos 5154:1395).
            if self.late_entries.get(symbol) is position and not self.left_alone(symbol):
                del self.late_entries[symbol]
        for position in ctx.ledger.active_positions():
            try:
                await self.exits.retry_take_profits(position.id)
            except ExchangeError:
                continue  # placed again at the next pass
        self.last_reconcile_at = ctx.clock.now()
        return ReconcileReport(ctx.clock.now(), checked, time.perf_counter() - started, findings, rounds)

    def left_alone(self, symbol: Symbol) -> bool:
        """Whether a pass leaves `symbol`'s sizes alone now, as `diff` does (`unsettled`)."""
        ledger = self.ctx.ledger
        held = [p for p in map(ledger.positions.get, ledger.by_symbol.get(symbol, ())) if p and p.is_active]
        pending = {
            p.id for p in held if any(o.status is OrderStatus.PENDING for o in ledger.live_orders(p.id))
        }
        return unsettled(held, pending)

    async def _writes_landed(self, symbols: set[Symbol]) -> None:
        """Before the next round reads the exchange again: the writes under way for `symbols`
        have landed (bounded: a write stuck longer is simply deferred again)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WRITE_WAIT):
                await self.ctx.ledger.writes_landed(symbols)

    async def _repair(self, found: list[Discrepancy], truth: Truth, mark: dict[Symbol, int]) -> list[Finding]:
        """Each symbol's discrepancies in order, symbols at once. A symbol whose memory moved by
        another hand since `mark` (not by these repairs) is left for the next round's fresh read."""
        ledger = self.ctx.ledger
        by_symbol: dict[Symbol, list[Discrepancy]] = defaultdict(list)
        for d in found:
            by_symbol[d.symbol].append(d)
        gate = asyncio.Semaphore(REPAIR_CONCURRENCY)

        async def repair(symbol: Symbol, group: list[Discrepancy]) -> list[Finding]:
            async with gate:
                done = []
                expected = mark.get(symbol, 0)
                for d in group:
                    if ledger.changes[symbol] != expected or ledger.writing[symbol]:
                        break
                    action = await self._act(d, truth)
                    if action is not None:
                        done.append(Finding(d, action))
                    expected = ledger.changes[symbol]
                return done

        groups = await asyncio.gather(*(repair(s, g) for s, g in by_symbol.items()))
        return [f for group in groups for f in group]

    def _untold(self, findings: list[Finding], truth: Truth) -> list[Finding]:
        """The findings to record and alert: an orphan left alone is said once, not every pass
        (a trader alerted every 30 s learns to ignore alerts); again when what was found changes,
        or when it comes back after its position was gone. The report keeps them all."""
        if self.orphan_policy is not OrphanPolicy.ALERT:
            return findings
        held = {r.symbol for r in truth.positions}
        self._told_orphans = {s: found for s, found in self._told_orphans.items() if s in held}
        out = []
        for f in findings:
            d = f.discrepancy
            if d.kind is Kind.ORPHAN:
                if self._told_orphans.get(d.symbol) == str(d.found):
                    continue
                self._told_orphans[d.symbol] = str(d.found)
            out.append(f)
        return out

    async def _record(self, findings: list[Finding]) -> None:
        """One event per discrepancy (kind, what was found, the action) and its alert, in one write."""
        ctx = self.ctx
        events = []
        alerts: list[Alert] = []
        for finding in findings:
            d, action = finding.discrepancy, finding.action
            message = f"{d.kind} {d.symbol}: expected {d.expected}, found {d.found}; {action}"
            data = {
                "kind": d.kind.value,
                "symbol": d.symbol,
                "expected": str(d.expected),
                "found": str(d.found),
                "action": action,
                "client_order_id": d.client_order_id or "",
            }
            pid = d.position_id if d.position_id in ctx.ledger.positions else None
            events.append(Event(EventKind.RECONCILE, ctx.clock.now(), pid, message, data))
            kind = ALERTS.get(d.kind, AlertKind.UNKNOWN_ROW)
            if d.kind is Kind.ORPHAN and action.startswith("alerted only"):
                kind = AlertKind.ORPHAN_FOUND
            elif d.kind is Kind.ORPHAN and LATE_FOUND in action:  # no stream fill told the trader
                kind = AlertKind.ENTRY_UNRESOLVED
            alerts.append(ctx.make_alert(kind, message, pid))
        if events:
            await ctx.ledger.record(*events, alerts=alerts)
            await ctx.announce(*alerts)

    async def _act(self, d: Discrepancy, truth: Truth) -> str | None:
        """Repair one discrepancy; the action taken, or None if a closer look found none."""
        try:
            if d.kind is Kind.ORPHAN:
                return await self._orphan(d, truth)
            if d.kind is Kind.GHOST:
                return await self._ghost(d)
            if d.kind is Kind.SIZE_MISMATCH:
                return await self._size(d, truth)
            if d.kind is Kind.MISSING_STOP:
                return await self._missing_stop(d, truth)
            if d.kind is Kind.OTHER_INSTANCE:
                await self.on_other_instance(d.client_order_id or "", d.symbol)
                return "left alone: another installation's order (other_instance says whose); trading stopped"
            return await self._stray(d, truth)
        except ExchangeError as exc:
            return f"action failed, retried next pass: {exc}"

    # -------------------------------------------------------- database rows

    async def _unknown_rows(self) -> list[Finding]:
        """Open rows in the database that memory does not know (written behind warden's back).

        A symbol with a commit under way, or begun while the database was read, is left for the
        next pass: its rows may be warden's own, written but not yet applied to memory."""
        ctx = self.ctx
        mark = ctx.ledger.mark()
        state = await self.store.load_active()
        moved = ctx.ledger.moved_since(mark)
        known = ctx.ledger.positions
        unknown = [
            p
            for p in state.positions
            if p.id not in known and p.id not in ctx.ledger.forgotten and p.symbol not in moved
        ]
        ids = {p.id for p in unknown}
        intents = await self._unknown_intents(
            [o for o in state.orders if o.position_id not in ids and o.symbol not in moved]
        )
        if not unknown:
            return intents
        ctx.ledger.load(unknown, [o for o in state.orders if o.position_id in ids])
        findings = intents
        for p in unknown:
            d = Discrepancy(
                Kind.GHOST if p.status is PositionStatus.OPENING else Kind.SIZE_MISMATCH,
                p.symbol,
                p.id,
                expected=ZERO,
                found=p.remaining * p.side.sign,
                detail="row in the database unknown to this engine",
            )
            findings.append(Finding(d, "loaded from the database: checked against the exchange in this pass"))
            await ctx.notify(
                AlertKind.UNKNOWN_ROW,
                f"{p.symbol} {p.side} {p.remaining}: a position row this engine did not write",
                p.id,
            )
        return findings

    async def _unknown_intents(self, rows: list[Order]) -> list[Finding]:
        """Live order rows (intents) of active positions memory knows, that memory does not know:
        each is taken into memory (the position's exit sequence moved past it, so its id is never
        staged again) and checked against the exchange through the position's resync."""
        ctx = self.ctx
        by_position: dict[PositionId, list[Order]] = defaultdict(list)
        for o in rows:
            position = ctx.ledger.positions.get(o.position_id)
            mine = position is not None and position.is_active
            if mine and o.status.live and o.client_order_id not in ctx.ledger.orders:
                by_position[o.position_id].append(o)
        findings = []
        for pid, orders in by_position.items():
            names = ", ".join(o.client_order_id for o in orders)
            async with ctx.locks.position(pid):
                position = ctx.ledger.positions[pid]
                seqs = [p.seq for o in orders if (p := parse_client_id(o.client_order_id)) is not None]
                event = Event(
                    EventKind.RECONCILE,
                    ctx.clock.now(),
                    pid,
                    f"order row(s) in the database this engine did not write: {names}",
                )
                staged = replace(position, stop_seq=max([position.stop_seq, *seqs]))
                await ctx.ledger.commit(position, staged, orders=orders, events=[event])
            checked = ""
            try:
                await self.recovery.resync(pid)
            except ExchangeError as exc:
                checked = f"; not checked yet ({exc}): looked up again later"
            for o in orders:
                now = ctx.ledger.orders[o.client_order_id].status
                outcome = {
                    OrderStatus.OPEN: "rests on the exchange: kept as the position's",
                    OrderStatus.REJECTED: "not on the exchange: refused for good",
                    OrderStatus.PENDING: "outcome still unknown",
                }.get(now, f"{now} on the exchange: recorded so")
                d = Discrepancy(
                    Kind.UNKNOWN_INTENT,
                    o.symbol,
                    pid,
                    client_order_id=o.client_order_id,
                    expected=ZERO,
                    found=o.qty,
                    detail="an order row in the database unknown to this engine",
                    order_type=o.type,
                )
                findings.append(
                    Finding(d, f"{o.role} {o.client_order_id} loaded from the database; {outcome}{checked}")
                )
        return findings

    async def _resolve_stale_intents(self) -> None:
        """Intents still PENDING are looked up (through `Recovery.resync`) once older than
        `pending_deadline`, or sooner, once nothing can still make them land: an exit order of an
        open or protected position (one opening or closing keeps its symbol busy all the same,
        and its own path sends the next close: a resync's would be a second), with no saga, no
        send of it under way and no copy of it sent with an unknown outcome that can still reach
        the exchange (InFlight.may_land). Until then the reconciler leaves their symbol alone
        (`diff`: busy), so an intent given up on would otherwise keep it out of every pass for
        `pending_deadline` (chaos 1215:194: a later stop, given up on yet landing late, rested
        unknown as live meanwhile, beside the stop it superseded)."""
        ctx = self.ctx
        now = ctx.clock.now()
        cutoff = now - timedelta(seconds=ctx.config.pending_deadline)
        sent = now - timedelta(seconds=ctx.config.order_timeout)
        stale = {
            o.position_id
            for o in ctx.ledger.orders.values()
            if o.status is OrderStatus.PENDING
            and (p := ctx.ledger.positions.get(o.position_id)) is not None
            and (
                o.created_at < cutoff
                or (
                    o.created_at < sent
                    and p.status in (PositionStatus.OPEN, PositionStatus.PROTECTED)
                    and o.position_id not in ctx.sagas
                    and not self.ctx.flights.may_land(o)
                )
            )
        }
        for pid in stale:
            await self.recovery.resync(pid)

    async def _resting_intents(self, truth: Truth) -> None:
        """Order intents still PENDING that the exchange lists as resting, with no send of them
        under way and older than a send can take (`order_timeout`): the round that sent one
        ended before it recorded the answer (chaos 1212:39: a start attempt given up on while
        its stop was still being sent; the next attempt left the order to that sender). Their
        positions are brought in line now, as a restart would (`Recovery.resync`: recorded as
        resting, the protection recorded), not once `pending_deadline` makes them stale."""
        ctx = self.ctx
        resting = {o.client_order_id: o for o in truth.open_orders}
        cutoff = ctx.clock.now() - timedelta(seconds=ctx.config.order_timeout)
        pids = {
            o.position_id
            for cid in resting
            if (o := ctx.ledger.orders.get(ClientOrderId(cid))) is not None
            and o.status is OrderStatus.PENDING
            and o.created_at < cutoff
            and not self.ctx.flights.sending(o.client_order_id)
            and o.position_id not in ctx.sagas
            and (p := ctx.ledger.positions.get(o.position_id)) is not None
            and p.is_active
        }
        for pid in pids:
            await self.recovery.resync(pid, resting)
        # And one whose stop's event recorded it resting meanwhile (the replay of 1212:39): an
        # OPEN position whose stop rests as recorded, of its size, is protected: recorded so.
        for position in ctx.ledger.active_positions():
            stop = ctx.ledger.current_stop(position.id)
            report = resting.get(stop.client_order_id) if stop is not None else None
            if (
                position.status is PositionStatus.OPEN
                and position.id not in ctx.sagas
                and stop is not None
                and stop.status is OrderStatus.OPEN
                and report is not None
                and report.qty - report.filled_qty == position.remaining
            ):
                await self.exits.protection_found(position.id)
        # And an ended position's order believed resting that the exchange does not list (its
        # cancel or expiry lost on the stream: the late closes of 1266763949:2840): looked up
        # and recorded as found. Nothing else would: the diff compares active positions only.
        ended = [
            p.id
            for p in list(ctx.ledger.positions.values())
            if not p.is_active
            and any(
                o.status is OrderStatus.OPEN
                and o.client_order_id not in resting
                and not ctx.flights.sending(o.client_order_id)
                for o in ctx.ledger.live_orders(p.id)
            )
        ]
        for pid in ended:
            await self.recovery.resync(pid, resting)

    # ---------------------------------------------------------------- orphans

    async def _orphan(self, d: Discrepancy, truth: Truth) -> str:
        report = next(r for r in truth.positions if r.symbol == d.symbol)
        late = self.late_entries.pop(d.symbol, None)
        if late is not None and late.side is not report.side:
            late = None
        given_up = await self._given_up_entries(d.symbol, report.side, report.qty) if late is None else []
        if given_up:
            late = given_up[0][0]
        if self.orphan_policy is OrphanPolicy.ALERT and late is None:
            return "alerted only (orphan_policy=alert)"
        ctx = self.ctx
        now = ctx.clock.now()
        position = self._adoption(d.symbol, report.side, report.qty, report.entry_price, late)
        what = f"adopted {report.side} {report.qty} {d.symbol}"
        if late is not None:
            what += f": the entry of {late.id}, executed after warden gave up on it"
        await ctx.ledger.commit(None, position, events=[Event(EventKind.RECONCILE, now, position.id, what)])
        self.exits.exposed_from(position.id, ctx.clock.monotonic())
        if late is not None:
            try:
                protected = await self.exits.protect(position.id)
            except (ExchangeError, StoreUnavailable, TradingRefused):
                await self._late_trades_of(given_up)  # read however protect ends (chaos 291220366:110)
                raise
            await self._late_trades_of(given_up)
            how = f", {LATE_FOUND}" if given_up else ""
            return (
                f"adopted as {position.id} (the late entry of {late.id}{how}) and protected"
                f" ({protected.status})"
            )
        if self.orphan_policy is OrphanPolicy.CLOSE:
            closed = await self.exits.close(position.id, ExitReason.EXTERNAL)
            return f"adopted as {position.id} and closed ({closed.status})"
        protected = await self.exits.protect(position.id)
        return f"adopted as {position.id} and protected ({protected.status})"

    def _adoption(
        self, symbol: Symbol, side: Side, qty: Decimal, price: Decimal, late: Position | None
    ) -> Position:
        """A position found on the exchange, as warden takes it: an outside one with the default
        plan, or the entry of `late` (given up on, executed later) with its signal's plan,
        prices and origin."""
        ctx = self.ctx
        return Position(
            id=PositionId(self.new_id()),
            symbol=symbol,
            side=side,
            status=PositionStatus.OPEN,
            target_qty=qty,
            plan=ctx.config.plan if late is None else late.plan,
            opened_at=ctx.clock.now(),
            origin="external" if late is None else late.origin,
            stop_price=None if late is None else late.stop_price,
            tp1_price=None if late is None else late.tp1_price,
            tp2_price=None if late is None else late.tp2_price,
            filled_qty=qty,
            entry_price=price,
            last_price=price,
            watermark=price,
            exclusive=not ctx.config.allow_stacking,
        )

    def _late_beside(self, symbol: Symbol, delta: Decimal) -> Position | None:
        """With stacking, an entry given up on that executed beside a position of its side shows
        as that position grown, not as an orphan: the late entry whose fill the stream brought
        (`late_entries`), if the exchange holds more on its side than memory explains and every
        position of warden's there is of that side."""
        late = self.late_entries.get(symbol)
        return late if late is not None and self._grown_side(symbol, delta) is late.side else None

    def _grown_side(self, symbol: Symbol, delta: Decimal) -> Side | None:
        """With stacking, the side the exchange holds more of than memory explains (`delta`), if
        every position of warden's on the symbol is of that side: one of the other side a late
        entry netted against (one-way mode) is that position reduced, as the synthetic fill
        records it."""
        if not self.ctx.config.allow_stacking or delta == 0:
            return None
        side = Side.LONG if delta > 0 else Side.SHORT
        held = [p for p in self.ctx.ledger.active_positions() if p.symbol == symbol]
        return side if all(p.side is side for p in held) else None

    async def _given_up_beside(self, symbol: Symbol, found: Decimal, read: list[FillReport]) -> str | None:
        """With stacking, entries given up on that executed beside positions of their side, whose
        fills no stream brought (`late_entries` empty: the process died as the fill came, chaos
        5153:12357, or the stream lost it): found as an orphan's are (`_given_up_entries`: the
        failed ones newer than the symbol's newest position that did not fail, so an entry
        adopted once, whose position is newer than it, is not looked up again), each adopted as
        its own position while the exchange still holds more than memory explains, and every
        one's trades recorded, however the adoptions end. Before, the pass set the newest
        position's size to the exchange's with a synthetic fill: the late trade recorded nowhere
        (I2), and that position holding what its signal never asked for. None when nothing was
        adopted."""
        beyond = self._delta(symbol, found)
        side = self._grown_side(symbol, beyond)
        if side is None:
            return None
        given_up = await self._given_up_entries(symbol, side, abs(beyond))
        action = None
        try:
            for failed, entry in given_up:
                delta = self._delta(symbol, found)
                if delta * side.sign > 0:
                    action = await self._adopt_late_beside(failed, delta, read, entry)
        except (ExchangeError, StoreUnavailable, TradingRefused):
            await self._late_trades_of(given_up)
            raise
        await self._late_trades_of(given_up)
        return action

    async def _adopt_late_beside(
        self, late: Position, delta: Decimal, read: list[FillReport], entry: Order | None = None
    ) -> str:
        """The late entry of `late`, beside a position of its side, adopted as its own position
        (what the exchange holds beyond memory, up to the entry's size; priced from its trades)
        and protected, as an orphan that is a late entry is (`_orphan`): taken for the other
        position growing, its stop could not grow while the exchange refused stops, and the
        part the old stop did not cover stayed uncovered (chaos 1090242307:2371, 12.84 s).
        `read`: the symbol's fills the pass read already; the entry's are asked for only if they
        are not among them (it was sent before what they cover). `entry`: the late position's
        entry, when memory may not hold it (read from the database, `_given_up_beside`)."""
        ctx = self.ctx
        if self.late_entries.get(late.symbol) is late:
            del self.late_entries[late.symbol]
        qty = abs(delta) if late.target_qty <= 0 else min(abs(delta), late.target_qty)
        if entry is None:
            entry = next((o for o in ctx.ledger.orders_of(late.id) if o.role is OrderRole.ENTRY), None)
        trades: list[FillReport] = []
        if entry is not None:
            trades = [f for f in read if f.client_order_id == entry.client_order_id]
            if not trades:
                with contextlib.suppress(ExchangeError):
                    trades = await self.gw.fills_of(entry, late.opened_at)
        traded = sum((f.qty for f in trades), ZERO)
        price = (
            sum((f.qty * f.price for f in trades), ZERO) / traded if traded > 0 else await self._price(late)
        )
        position = self._adoption(late.symbol, late.side, qty, price, late)
        what = f"adopted {late.side} {qty} {late.symbol}: the entry of {late.id}, executed late"
        now = ctx.clock.now()
        await ctx.ledger.commit(None, position, events=[Event(EventKind.RECONCILE, now, position.id, what)])
        self.exits.exposed_from(position.id, ctx.clock.monotonic())
        protected = await self.exits.protect(position.id)
        return f"adopted as {position.id} (the late entry of {late.id}) and protected ({protected.status})"

    async def _late_trades_of(self, given_up: list[tuple[Position, Order]]) -> None:
        for position, entry in given_up:
            await self._late_trades(position, entry)

    async def _late_trades(self, position: Position, entry: Order) -> None:
        """The trades of an entry given up on that a pass found executed (its stream fill lost),
        read over REST and recorded as its stream fills would have been (chaos 1223:147: the
        stream down while it executed, the trade was recorded nowhere). Unreadable now: the
        adoption stands, and the trades stay unrecorded (logged)."""
        try:
            fills = await self.gw.fills_of(entry, position.opened_at)
        except ExchangeError as exc:
            log.warning("late_trades_unread", client_order_id=entry.client_order_id, error=str(exc))
            return
        for fill in fills:
            message = f"fill {fill.trade_id} after {position.status} (found by reconciliation)"
            await self.exits.record_late_trade(fill, position.id, message)

    async def _given_up_entries(
        self, symbol: Symbol, side: Side, qty: Decimal
    ) -> list[tuple[Position, Order]]:
        """The failed positions whose entries an orphan of `qty` on `side` is (or what the exchange
        holds beyond the positions of that side, `_given_up_beside`), when no stream fill said so (it was
        lost: the entry executed while warden was down, or in a stream gap): the account's recent
        positions on the symbol that failed on the orphan's side, newest first, back to the
        symbol's newest one that did not fail, whose entries the exchange finds by client id
        with something filled. More than one when signals stacked on the symbol were all given
        up on and executed (chaos 1623738294:9410: two, adopted as the newest's alone, the
        other's trade recorded nowhere). One database read per orphan, and one lookup per such
        failed position; empty when none is so. The database down, memory answers: it keeps
        finished positions a while (chaos 1252:67: the watch found the entry executed during an
        outage, and the pass adopted it as nobody's, its trade recorded nowhere)."""
        try:
            recent = await self.store.list_positions(include_closed=True, limit=GIVEN_UP_WINDOW)
            # Memory is ahead of the database for a position it holds: the entry's failure may be
            # a write still queued (chaos 1780774841:8922: the database, down for writes, still
            # read the position as opening, and the orphan was adopted as nobody's).
            failed = _failed_run(
                [self.ctx.ledger.positions.get(p.id, p) for p in recent if p.symbol == symbol], side
            )
            candidates = [
                (p, next((o for o in await self.store.orders_for(p.id) if o.role is OrderRole.ENTRY), None))
                for p in failed
            ]
        except StoreUnavailable as exc:
            log.warning("given_up_entry_unread", symbol=symbol, error=str(exc))
            candidates = self._given_up_remembered(symbol, side)
        executed = []
        explained = ZERO
        for position, entry in candidates[:GIVEN_UP_LOOKUPS]:
            if entry is None:
                continue
            found = await self.gw.lookup(entry, attempts=1)
            if isinstance(found, Found) and found.report.filled_qty > 0:
                executed.append((position, entry))
                explained += found.report.filled_qty
                if explained >= qty:
                    break  # the orphan is accounted for: older failures are not looked up
        return executed

    def _given_up_remembered(self, symbol: Symbol, side: Side) -> list[tuple[Position, Order | None]]:
        """`_given_up_entries`' reading from memory: the positions on the symbol memory holds
        that failed on the orphan's side, newest first, back to its newest that did not, each
        with its entry."""
        ctx = self.ctx
        held = sorted(
            (p for p in ctx.ledger.positions.values() if p.symbol == symbol),
            key=lambda p: (p.opened_at, p.id),
            reverse=True,
        )
        return [
            (p, next((o for o in ctx.ledger.orders_of(p.id) if o.role is OrderRole.ENTRY), None))
            for p in _failed_run(held, side)
        ]

    # ----------------------------------------------------------------- ghosts

    async def _ghost(self, d: Discrepancy) -> str:
        ctx = self.ctx
        assert d.position_id is not None
        fills = await self.exits.catch_up(d.position_id)
        await self._guards_traded(ctx.ledger.positions[d.position_id], fills)
        position = ctx.ledger.positions[d.position_id]
        if not position.is_active:
            return f"closed by missed fills ({position.exit_reason})"
        if position.status is PositionStatus.OPENING:
            return "entry still being resolved"
        reason = _reason_from(fills, position)
        await self._apply_outside(position.id, fills, reduce_only=True)
        position = ctx.ledger.positions[d.position_id]
        if position.is_active and position.remaining > 0:
            await self._synthetic(
                position.id, -position.remaining * position.side.sign, await self._price(position)
            )
        await self._close_record(position.id, reason)
        await self.exits.cancel_exits(position.id)
        return f"record closed: {reason}"

    async def _close_record(self, pid: PositionId, reason: str) -> None:
        ctx = self.ctx
        async with ctx.locks.position(pid):
            current = ctx.ledger.positions[pid]
            if not current.is_active or current.status is PositionStatus.OPENING or current.remaining > 0:
                return
            closed = current.closed(reason, ctx.clock.now())
            event = Event(
                EventKind.POSITION_CLOSED,
                ctx.clock.now(),
                current.id,
                f"closed by reconciliation: {reason}",
                {"reason": reason, "realized_pnl": str(closed.realized_pnl)},
            )
            await ctx.ledger.commit(current, closed, events=[event])

    # ------------------------------------------------------------ mismatches

    async def _size(self, d: Discrepancy, truth: Truth) -> str:
        """Missed fills of ours first, then the outside trades read back with their prices and fees,
        then (if the exchange still differs) a synthetic fill for the rest; every exit re-sized."""
        ctx = self.ctx
        assert d.position_id is not None
        fills = await self.exits.catch_up(d.position_id)
        # With stacking, the missed fill may be another position's on the symbol: an order of
        # its that traded and was never recorded (the process died with the writes queued during
        # a database outage: chaos 1861938148:1719, its close's trade recorded nowhere and the
        # difference taken from the wrong position). Each is caught up before the rest is judged.
        for other in [p for p in ctx.ledger.active_positions() if p.symbol == d.symbol]:
            if other.id != d.position_id and self._delta(d.symbol, d.found) != 0:
                await self.exits.catch_up(other.id)
        if self._delta(d.symbol, d.found) != 0:
            await self._guards_traded(ctx.ledger.positions[d.position_id], fills)
        if self._delta(d.symbol, d.found) == 0:
            await self._resize_symbol(d.symbol)
            return "resolved by missed fills"
        await self._apply_outside(d.position_id, fills, reduce_only=False)
        delta = self._delta(d.symbol, d.found)
        action = "outside trades applied"
        late = self._late_beside(d.symbol, delta)
        if late is not None:
            action = await self._adopt_late_beside(late, delta, fills)
        else:
            action = await self._given_up_beside(d.symbol, d.found, fills) or action
        delta = self._delta(d.symbol, d.found)
        if delta != 0:
            position = ctx.ledger.positions[d.position_id]
            if position.is_active:
                report = next((r for r in truth.positions if r.symbol == d.symbol), None)
                price = report.entry_price if report is not None and delta * position.side.sign > 0 else None
                await self._synthetic(position.id, delta, price or await self._price(position))
                action = f"size set to the exchange's ({delta:+} synthetic)"
        for p in [p for p in ctx.ledger.positions.values() if p.symbol == d.symbol]:
            if p.is_active and p.remaining <= 0 and p.status is not PositionStatus.OPENING:
                await self._close_record(p.id, ExitReason.EXTERNAL)
                await self.exits.cancel_exits(p.id)
        await self._resize_symbol(d.symbol)
        return f"{action}; exits re-sized"

    async def _guards_traded(self, position: Position, fills: list[FillReport]) -> None:
        """Trades among `fills` (the symbol's, read over REST) of this installation's guard and
        cover orders, which no position owns, made since `position` opened: attributed to the
        positions they reduced as their stream fills would have been (`attribute_orphan_fill`,
        once per trade). A stream that lost the fill of a guard's close at market (a start that
        could not read its database) left the position found flat, closed by a synthetic fill,
        and the guard's trade recorded nowhere (I2)."""
        installation = self.ctx.config.installation_id
        for report in sorted(fills, key=lambda f: f.at):
            parsed = parse_client_id(report.client_order_id)
            if (
                parsed is not None
                and guarding(parsed.position_id)
                and ours(report.client_order_id, installation)
                and report.at >= position.opened_at
            ):
                await self.exits.attribute_orphan_fill(report)

    def _delta(self, symbol: Symbol, found: Decimal) -> Decimal:
        held = [p for p in self.ctx.ledger.active_positions() if p.symbol == symbol]
        return found - sum((p.remaining * p.side.sign for p in held), ZERO)

    async def _resize_symbol(self, symbol: Symbol) -> None:
        for p in list(self.ctx.ledger.active_positions()):
            if p.symbol == symbol:
                await self.exits.resize(p.id)

    async def _apply_outside(self, pid: PositionId, fills: list[FillReport], *, reduce_only: bool) -> None:
        """Trades on this symbol not made by warden (no warden id), since the position opened and
        not yet applied to any position: applied to `pid` as what they were (an increase at its
        price, a reduction with its PnL and fee). A reduction larger than the position closes it;
        the rest is left for the exchange's size to decide (the next round adopts it)."""
        ctx = self.ctx
        position = ctx.ledger.positions[pid]
        applied: set[str] | None = None
        for report in sorted(fills, key=lambda f: f.at):
            if parse_client_id(report.client_order_id) is not None and ours(
                report.client_order_id, ctx.config.installation_id
            ):
                continue
            if applied is None:  # only for a trade not ours: every position is scanned
                applied = set().union(
                    *(p.applied_trades for p in ctx.ledger.positions.values() if p.symbol == position.symbol)
                )
            if report.trade_id in applied or report.at < position.opened_at:
                continue
            async with ctx.locks.position(pid):
                pos = ctx.ledger.positions[pid]
                if not pos.is_active or report.trade_id in pos.applied_trades:
                    continue
                reduces = report.side is pos.side.exit_side
                if not reduces and reduce_only:
                    continue
                qty = min(report.qty, pos.remaining) if reduces else report.qty
                if qty <= 0:
                    continue
                fill = Fill(
                    trade_id=report.trade_id,
                    client_order_id=ClientOrderId(report.client_order_id or f"outside-{report.trade_id}"),
                    position_id=pid,
                    role=OrderRole.CLOSE if reduces else OrderRole.ENTRY,
                    symbol=pos.symbol,
                    side=report.side,
                    qty=qty,
                    price=report.price,
                    fee=report.fee * qty / report.qty,
                    at=report.at,
                )
                new = pos.apply_fill(fill)
                if not reduces:
                    new = replace(new, target_qty=new.target_qty + qty)
                event = Event(
                    EventKind.EXIT_FILL if reduces else EventKind.ENTRY_FILLED,
                    ctx.clock.now(),
                    pid,
                    f"outside trade {report.side} {qty} @ {report.price} applied",
                    {
                        "trade_id": report.trade_id,
                        "qty": str(qty),
                        "price": str(report.price),
                        "role": "outside",
                    },
                )
                await ctx.ledger.commit(pos, new, fills=[fill], events=[event])

    async def _synthetic(self, pid: PositionId, delta: Decimal, price: Decimal) -> None:
        """What no fill explains: a synthetic fill (recorded as such) that makes the size right."""
        ctx = self.ctx
        async with ctx.locks.position(pid):
            pos = ctx.ledger.positions[pid]
            if not pos.is_active:
                return
            increases = delta * pos.side.sign > 0
            qty = abs(delta) if increases else min(abs(delta), pos.remaining)
            if qty <= 0:
                return
            trade = TradeId(f"sync-{pid}-{pos.version}")
            fill = Fill(
                trade_id=trade,
                client_order_id=ClientOrderId(f"sync-{pid}"),
                position_id=pid,
                role=OrderRole.ENTRY if increases else OrderRole.CLOSE,
                symbol=pos.symbol,
                side=pos.side.entry_side if increases else pos.side.exit_side,
                qty=qty,
                price=price,
                fee=ZERO,
                at=ctx.clock.now(),
            )
            new = pos.apply_fill(fill)
            if increases:
                new = replace(new, target_qty=new.target_qty + qty)
            event = Event(
                EventKind.RECONCILE,
                ctx.clock.now(),
                pid,
                f"size {pos.remaining} -> {new.remaining} as on the exchange (synthetic fill @ {price})",
                {"trade_id": trade, "qty": str(qty), "price": str(price)},
            )
            await ctx.ledger.commit(pos, new, fills=[fill], events=[event])

    async def _price(self, position: Position) -> Decimal:
        try:
            return await self.gw.mark_price(position.symbol)
        except ExchangeError:
            return position.last_price or position.entry_price or ZERO

    async def _missing_stop(self, d: Discrepancy, truth: Truth) -> str | None:
        ctx = self.ctx
        assert d.position_id is not None
        pid = d.position_id
        resting = {o.client_order_id for o in truth.open_orders}
        missing = [
            o
            for o in ctx.ledger.live_orders(pid)
            if o.role in (OrderRole.STOP, OrderRole.TP1, OrderRole.TP2)
            and o.status is OrderStatus.OPEN
            and o.client_order_id not in resting
        ]
        # A venue's list of open orders may lag its answers (Drift's is read from chain state):
        # an order is taken for gone only when a lookup by its own id agrees, never because a
        # list left it out; one that rests is left alone (doubling a stop is a defect too).
        gone = []
        for order in missing:
            found = await self.gw.lookup(order, attempts=1)
            if isinstance(found, Found) and found.report.status is OrderStatus.OPEN:
                continue
            if isinstance(found, Unknown):
                return "the exchange's open orders could not be confirmed; checked next pass"
            gone.append(order)
        stop = ctx.ledger.current_stop(pid)
        if missing and not gone and stop is not None and stop.qty == ctx.ledger.positions[pid].remaining:
            return None  # the list lagged: the stop of the position's size rests
        if stop is not None:
            await self._stop_as_it_rests(pid, stop, truth)
        async with ctx.locks.position(pid):
            position = ctx.ledger.positions[pid]
            new = (
                position.transition(PositionStatus.OPEN)
                if position.status is PositionStatus.PROTECTED
                else position
            )
            if gone or new is not position:
                event = Event(
                    EventKind.PROTECTION_LOST, ctx.clock.now(), pid, "stop not resting on the exchange"
                )
                await ctx.ledger.commit(
                    position, new, orders=[o.advance(OrderStatus.CANCELED) for o in gone], events=[event]
                )
                self.exits.exposed_from(pid, ctx.clock.monotonic())
        if ctx.ledger.current_stop(pid) is not None:
            await self.exits.resize(pid)
            stop, position = ctx.ledger.current_stop(pid), ctx.ledger.positions[pid]
            if stop is None or stop.qty >= position.remaining or not position.is_active:
                return "stop resized to the position"
            return f"the stop could not be resized: it covers {stop.qty} of {position.remaining}"
        after = await self.exits.protect(pid)
        return f"stop re-placed ({after.status})"

    async def _stop_as_it_rests(self, pid: PositionId, stop: Order, truth: Truth) -> None:
        """The position's stop rests under its id on other terms than memory's (chaos 1210:295:
        a dead process's send of that id, its intent's commit rolled back, landed after the
        restart, and the new process's own send of the id on other terms found it resting and
        took it as its own): taken as the exchange has it, so that the resize that follows
        starts from what rests, not from what memory meant (it was a no-op: a stop twice the
        position's size stayed). Resting tighter than the position's stop price (the dead
        process's move tightened it), that price is the position's too: the resize at the plan's
        price would move the stop on the exchange away from the market, and a stop never loosens."""
        report = next((o for o in truth.open_orders if o.client_order_id == stop.client_order_id), None)
        if report is None:
            return
        qty = report.qty  # its size: what filled of it is its fills' to record, not other terms
        if qty == stop.qty and report.trigger_price == stop.trigger_price:
            return
        ctx = self.ctx
        async with ctx.locks.position(pid):
            position = ctx.ledger.positions[pid]
            current = ctx.ledger.orders.get(stop.client_order_id)
            if current is None or current.status is not OrderStatus.OPEN:
                return
            message = (
                f"stop {stop.client_order_id} rests for {qty} at {report.trigger_price}, not {stop.qty} at"
                f" {stop.trigger_price} as recorded: taken as the exchange has it"
            )
            event = Event(EventKind.RECONCILE, ctx.clock.now(), pid, message)
            taken = replace(current, qty=qty, trigger_price=report.trigger_price)
            new = position
            price = report.trigger_price
            if price is not None and position.stop_price is not None:
                kept = tighter(position.side, position.stop_price, price)
                if kept != position.stop_price:
                    new = replace(position, stop_price=kept)
                    message = (
                        f"{message}; the position's stop price {position.stop_price} -> {kept} (tighter)"
                    )
                    event = replace(event, message=message)
            await ctx.ledger.commit(position, new, orders=[taken], events=[event])
        log.warning("stop_terms_differ", position_id=pid, client_order_id=stop.client_order_id)

    async def _stray(self, d: Discrepancy, truth: Truth) -> str | None:
        assert d.client_order_id is not None
        cid = ClientOrderId(d.client_order_id)
        if (
            d.position_id is not None
            and d.position_id.startswith(COVER)
            and _covers_alone(cid, d.symbol, truth)
        ):
            # A late entry's cover is its only stop until a position's own covers it: with the
            # database unreadable the entry cannot be told from an outside trade, and an orphan
            # left alone (orphan_policy=alert) would be left naked. Not a stray yet.
            return None
        known = self.ctx.ledger.orders.get(cid)
        if known is None:
            await self._sequence_past(cid)
        report = next((o for o in truth.open_orders if o.client_order_id == cid), None)
        if known is not None and known.status is OrderStatus.REJECTED and report is not None:
            # A stop given up on that landed late, its stream event lost: taken as the stop on
            # the terms the event would have met (ExitManager.landed_late), or a stray still.
            await self.exits.landed_late(known, report)
            if self.ctx.ledger.orders[cid].status is OrderStatus.OPEN:
                return "taken as the position's stop: given up on, it landed late (its event was lost)"
        await self._copies_of_the_dead(cid, known, d)
        wait = self.ctx.flights.copies_may_land(cid)
        if wait > 0:
            # Cancelled now, the id would be free for a copy still in flight: it would rest again
            # (the order placed twice; chaos 777:87). Resting, it makes the venue refuse them.
            if cid not in self._strays_later:
                self._strays_later[cid] = self.ctx.tasks.spawn(self._cancel_stray_later(d))
            return (
                f"left resting {wait:.1f} s more, then cancelled: copies of it sent with an unknown"
                " outcome may still reach the exchange, which refuses them while it rests"
            )
        done = await self._cancel_stray(d)
        parsed = parse_client_id(cid)
        if parsed is not None and parsed.position_id.startswith(COVER):
            done += ": it covered a late entry fill until a position's own stop could (cover_late_entry)"
        return done

    async def _sequence_past(self, cid: ClientOrderId) -> None:
        """A stray under an exit id of an active position of this installation whose sequence the
        position has not reached: a process sent it and its write was lost (the database locked,
        then a crash: chaos 291220366:2651). The position's sequence is moved past it, in the
        database too, before anything is staged: the next exit takes a new id. Staged again, the
        id would name two orders once this one is cancelled (Binance keeps client ids unique among
        open orders only), and a lookup of the new one would find the cancelled one."""
        parsed = parse_client_id(cid)
        if (
            parsed is None
            or parsed.role not in EXIT_ROLES
            or parsed.installation != self.ctx.config.installation_id
        ):
            return
        ledger = self.ctx.ledger
        position = ledger.positions.get(parsed.position_id)
        if position is None or not position.is_active or parsed.seq <= position.stop_seq:
            return
        async with self.ctx.locks.position(position.id):
            position = ledger.positions[position.id]
            if not position.is_active or parsed.seq <= position.stop_seq:
                return
            what = f"{cid} found on the exchange, never recorded: the exits' sequence moves past it"
            event = Event(EventKind.RECONCILE, self.ctx.clock.now(), position.id, what)
            await ledger.commit(position, replace(position, stop_seq=parsed.seq), events=[event])

    async def _copies_of_the_dead(self, cid: ClientOrderId, known: Order | None, d: Discrepancy) -> None:
        """Soon after a start or a takeover, a stray may be an order the process before this one
        sent with an unknown outcome, copies of it still in flight, which this process cannot know
        of. One created before this engine began to act (InFlight.acting_since), within a
        stop's send time plus `entry_deadline` of now, is taken to have them until then
        (InFlight.copies_in_flight). Its row is read for when it was created if memory does not
        hold it (its position closed); unreadable, it is not."""
        flights = self.ctx.flights
        if not flights.dead_copies_may_land():
            return  # none of the process before can land any more: no row read
        created = known.created_at if known is not None else None
        if created is None and d.position_id is not None:
            with contextlib.suppress(StoreUnavailable):
                rows = await self.store.orders_for(PositionId(d.position_id))
                created = next((o.created_at for o in rows if o.client_order_id == cid), None)
        if created is not None:
            flights.copies_of_the_dead(cid, created)

    async def _cancel_stray_later(self, d: Discrepancy) -> None:
        """Once no copy of a stray left resting can land any more (see `_stray`), a fresh pass: it
        cancels the order if it is a stray still. By then it may not be: a stop given up on that
        landed late may have been taken as the position's stop meanwhile (its stream event came
        late: ExitManager.landed_late), and a superseded one may be the only stop left; only a
        fresh read of the exchange can say. (Without `pass_again`, the timer's next pass.)"""
        assert d.client_order_id is not None
        cid = ClientOrderId(d.client_order_id)
        try:
            while (wait := self.ctx.flights.copies_may_land(cid)) > 0:
                await self.ctx.clock.sleep(wait)
        finally:
            self._strays_later.pop(cid, None)
        if self.pass_again is None:
            return
        try:
            await self.pass_again()
        except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
            log.warning("stray_pass_failed", client_order_id=cid, error=str(exc))  # the timer's pass

    async def _cancel_stray(self, d: Discrepancy) -> str:
        ctx = self.ctx
        assert d.client_order_id is not None
        try:
            await self.gw.cancel(d.symbol, d.client_order_id, d.order_type is not OrderType.MARKET)
        except OrderNotFound:
            return "already gone"
        known = ctx.ledger.orders.get(ClientOrderId(d.client_order_id))
        if known is not None and known.status.live and known.position_id in ctx.ledger.positions:
            async with ctx.locks.position(known.position_id):
                position = ctx.ledger.positions[known.position_id]
                await ctx.ledger.commit(position, position, orders=[known.advance(OrderStatus.CANCELED)])
        return "cancelled"


def _failed_run(newest_first: list[Position], side: Side) -> list[Position]:
    """The positions of `newest_first` (one symbol's) that failed on `side`, back to the newest
    that did not fail: an entry's late execution is looked for only among those (a position that
    opened, or one that failed on the other side, ends the run)."""
    run = []
    for position in newest_first:
        if position.status is not PositionStatus.FAILED or position.side is not side:
            break
        run.append(position)
    return run


def _reason_from(fills: list[FillReport], position: Position) -> str:
    """Why a position went flat, read from the fills after the last one warden applied."""
    later = [f for f in fills if f.trade_id not in position.applied_trades and f.at >= position.opened_at]
    if any(f.liquidation for f in later):
        return ExitReason.LIQUIDATION
    reducing = position.side.exit_side
    outside = [f for f in later if f.side is reducing and parse_client_id(f.client_order_id) is None]
    if outside:
        return ExitReason.MANUAL
    return ExitReason.RECONCILED_MISSING


def _covers_alone(cid: ClientOrderId, symbol: Symbol, truth: Truth) -> bool:
    """Whether, without this order, the exchange's position on `symbol` would lack a covering stop
    that this order gives: one it closes (a sell stop covers nothing of a short)."""
    mine = next((o for o in truth.open_orders if o.client_order_id == cid), None)
    others = Truth(truth.positions, [o for o in truth.open_orders if o.client_order_id != cid])
    return mine is not None and any(
        report.symbol == symbol and report.side.exit_side is mine.side for report, _ in uncovered(others)
    )
