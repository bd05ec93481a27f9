"""Reconciliation: read the exchange's truth, diff it (domain/reconcile.py), act, record.

Every discrepancy becomes an event (its kind, what was found, the action taken)
and an alert. Actions go through the ordinary paths: missed fills are applied
as fills, protection is placed by the exit manager, records close through the
state machine. A failed exchange query raises: it is never read as "flat".
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from warden.domain.events import Event, EventKind
from warden.domain.orders import OrderStatus
from warden.domain.position import ExitReason, Position, PositionStatus
from warden.domain.reconcile import Discrepancy, Kind, Truth, diff
from warden.domain.reports import FillReport
from warden.domain.values import ZERO, OrderRole, PositionId, parse_client_order_id
from warden.ports import Alert, ExchangeError, OrderNotFound

if TYPE_CHECKING:
    from warden.service.engine import Engine


REPAIR_CONCURRENCY = 32
"""Symbols repaired at once; one symbol's discrepancies are repaired in order."""


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


class Reconciler:
    def __init__(self, engine: Engine, orphan_policy: OrphanPolicy = OrphanPolicy.ADOPT) -> None:
        self.e = engine
        self.orphan_policy = orphan_policy

    async def run(self) -> ReconcileReport:
        e = self.e
        started = time.perf_counter()
        truth = Truth(
            await e.query(e.exchange.fetch_positions()),
            await e.query(e.exchange.fetch_open_orders()),
        )
        active = e.ledger.active_positions()
        by_symbol: dict[str, list[Discrepancy]] = defaultdict(list)
        for found in diff(active, e.ledger.orders, truth):
            by_symbol[found.symbol].append(found)
        gate = asyncio.Semaphore(REPAIR_CONCURRENCY)

        async def repair(group: list[Discrepancy]) -> list[Finding]:
            async with gate:
                done = []
                for found in group:
                    done.append(Finding(found, await self._act(found, truth)))
                return done

        groups = await asyncio.gather(*(repair(g) for g in by_symbol.values()))
        findings = [f for group in groups for f in group]
        await self._record(findings)
        e.last_reconcile_at = e.clock.now()
        return ReconcileReport(e.clock.now(), len(active), time.perf_counter() - started, findings)

    async def _record(self, findings: list[Finding]) -> None:
        """One event per discrepancy (kind, what was found, the action), in one write, and alerts."""
        e = self.e
        events = []
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
            pid = d.position_id if d.position_id in e.ledger.positions else None
            events.append(Event(EventKind.RECONCILE, e.clock.now(), pid, message, data))
            level = "critical" if d.kind in (Kind.ORPHAN, Kind.GHOST, Kind.MISSING_STOP) else "warning"
            await e.notifier.notify(Alert(level, f"reconcile: {d.kind}", message, pid))
        if events:
            await e.ledger.record(*events)

    async def _act(self, d: Discrepancy, truth: Truth) -> str:
        try:
            if d.kind is Kind.ORPHAN:
                return await self._orphan(d, truth)
            if d.kind is Kind.GHOST:
                return await self._ghost(d)
            if d.kind is Kind.SIZE_MISMATCH:
                return await self._size(d)
            if d.kind is Kind.MISSING_STOP:
                return await self._missing_stop(d, truth)
            return await self._stray(d)
        except ExchangeError as exc:
            return f"action failed, retried next pass: {exc}"

    # ---------------------------------------------------------------- orphans

    async def _orphan(self, d: Discrepancy, truth: Truth) -> str:
        if self.orphan_policy is OrphanPolicy.ALERT:
            return "alerted only (orphan_policy=alert)"
        e = self.e
        report = next(r for r in truth.positions if r.symbol == d.symbol)
        now = e.clock.now()
        position = Position(
            id=PositionId(e.new_position_id()),
            symbol=d.symbol,
            side=report.side,
            status=PositionStatus.OPEN,
            target_qty=report.qty,
            plan=e.config.plan,
            opened_at=now,
            origin="external",
            filled_qty=report.qty,
            entry_price=report.entry_price,
            last_price=report.entry_price,
        )
        event = Event(EventKind.RECONCILE, now, position.id, f"adopted {report.side} {report.qty} {d.symbol}")
        await e.ledger.commit(None, position, events=[event])
        if self.orphan_policy is OrphanPolicy.CLOSE:
            closed = await e.exits.close(position.id, ExitReason.EXTERNAL)
            return f"adopted as {position.id} and closed ({closed.status})"
        protected = await e.exits.protect(position.id)
        return f"adopted as {position.id} and protected ({protected.status})"

    # ----------------------------------------------------------------- ghosts

    async def _ghost(self, d: Discrepancy) -> str:
        e = self.e
        assert d.position_id is not None
        fills = await self.e.catch_up_fills(d.position_id)
        position = e.ledger.positions[d.position_id]
        if not position.is_active:
            return f"closed by missed fills ({position.exit_reason})"
        reason = _reason_from(fills, position)
        await self._close_record(position, reason)
        await e.exits.cancel_exits(position.id)
        return f"record closed: {reason}"

    async def _close_record(self, position: Position, reason: str) -> None:
        e = self.e
        async with e.lock(position.id):
            current = e.ledger.positions[position.id]
            if not current.is_active:
                return
            if current.status is PositionStatus.OPENING:
                return
            flat = replace(current, closed_qty=current.filled_qty)
            closed = flat.closed(reason, e.clock.now())
            event = Event(
                EventKind.POSITION_CLOSED,
                e.clock.now(),
                current.id,
                f"closed by reconciliation: {reason}",
                {"reason": reason},
            )
            await e.ledger.commit(current, closed, events=[event])

    # ------------------------------------------------------------ mismatches

    async def _size(self, d: Discrepancy) -> str:
        e = self.e
        assert d.position_id is not None
        await self.e.catch_up_fills(d.position_id)
        held = [p for p in e.ledger.active_positions() if p.symbol == d.symbol]
        expected = sum((p.remaining * p.side.sign for p in held), ZERO)
        if expected == d.found:
            return "resolved by missed fills"
        position = e.ledger.positions[d.position_id]
        remaining = position.remaining + (d.found - expected) * position.side.sign
        if remaining <= 0:
            await self._close_record(position, ExitReason.EXTERNAL)
            await e.exits.cancel_exits(position.id)
            return "record closed: reduced outside warden (any rest is adopted next pass)"
        async with e.lock(position.id):
            current = e.ledger.positions[position.id]
            delta = remaining - current.remaining
            if delta < 0:
                new = replace(current, closed_qty=current.closed_qty - delta)
            else:
                new = replace(
                    current, filled_qty=current.filled_qty + delta, target_qty=current.target_qty + delta
                )
            event = Event(
                EventKind.RECONCILE, e.clock.now(), current.id, f"size {current.remaining} -> {remaining}"
            )
            await e.ledger.commit(current, new, events=[event])
        await e.exits.move_stop(position.id)
        return f"size set to {remaining} as on the exchange; stop resized"

    async def _missing_stop(self, d: Discrepancy, truth: Truth) -> str:
        e = self.e
        assert d.position_id is not None
        pid = d.position_id
        resting = {o.client_order_id for o in truth.open_orders}
        gone = [
            o
            for o in e.ledger.live_orders(pid)
            if o.role in (OrderRole.STOP, OrderRole.TP1, OrderRole.TP2)
            and o.status is OrderStatus.OPEN
            and o.client_order_id not in resting
        ]
        async with e.lock(pid):
            position = e.ledger.positions[pid]
            new = (
                position.transition(PositionStatus.OPEN)
                if position.status is PositionStatus.PROTECTED
                else position
            )
            if gone or new is not position:
                event = Event(
                    EventKind.PROTECTION_LOST, e.clock.now(), pid, "stop not resting on the exchange"
                )
                await e.ledger.commit(
                    position, new, orders=[o.with_status(OrderStatus.CANCELED) for o in gone], events=[event]
                )
        if e.ledger.current_stop(pid) is not None:
            await e.exits.move_stop(pid)
            return "stop resized to the position"
        after = await e.exits.protect(pid)
        return f"stop re-placed ({after.status})"

    async def _stray(self, d: Discrepancy) -> str:
        e = self.e
        assert d.client_order_id is not None
        try:
            await e.query(e.exchange.cancel_order(d.symbol, d.client_order_id, d.detail != "market"))
        except OrderNotFound:
            return "already gone"
        known = e.ledger.orders.get(d.client_order_id)  # type: ignore[call-overload]
        if known is not None and known.status.live and known.position_id in e.ledger.positions:
            async with e.lock(known.position_id):
                position = e.ledger.positions[known.position_id]
                await e.ledger.commit(position, position, orders=[known.with_status(OrderStatus.CANCELED)])
        return "cancelled"


def _reason_from(fills: list[FillReport], position: Position) -> str:
    """Why a position went flat, read from the fills after the last one warden applied."""
    later = [f for f in fills if f.trade_id not in position.applied_trades]
    if any(f.liquidation for f in later):
        return ExitReason.LIQUIDATION
    reducing = position.side.exit_side
    outside = [f for f in later if f.side is reducing and parse_client_order_id(f.client_order_id) is None]
    if outside:
        return ExitReason.MANUAL
    return ExitReason.RECONCILED_MISSING
