"""Exits: protection, fills of exit orders, stop moves, closing.

Rules this module keeps:
- The stop lives on the exchange, sized to the remaining position; take-profits
  carry exact quantities (TP1 is 60 % of the size, never "close position").
- A stop is moved by placing the new one first and cancelling the old one after,
  so the position is never without a resting stop; it only ever tightens.
- If no stop can be placed, the position is closed (reduce-only market) and the
  reason recorded: an open position without a stop is the one thing not allowed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from warden.domain.errors import InvalidFill
from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.plan import levels_for, tighter
from warden.domain.position import ExitReason, Position, PositionStatus
from warden.domain.reports import FillReport, OrderReport
from warden.domain.ticks import TickIndex
from warden.domain.values import ClientOrderId, OrderRole, OrderType, PositionId, Symbol
from warden.ports import (
    Alert,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderNotFound,
    OrderRejected,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from warden.service.engine import Engine

EXIT_ROLES = (OrderRole.STOP, OrderRole.TP1, OrderRole.TP2)
FollowUp = Callable[[PositionId], Coroutine[Any, Any, None]]


class ExitManager:
    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.exit_seen: dict[PositionId, asyncio.Event] = defaultdict(asyncio.Event)
        self.unprotected_seconds: list[float] = []
        self._exposed_since: dict[PositionId, float] = {}
        self.recovery_started: float | None = None
        self._moving: set[PositionId] = set()
        self._rerun: set[PositionId] = set()
        self._cancelling: set[ClientOrderId] = set()
        self._close_reasons: dict[PositionId, str] = {}
        self._persisted_marks: dict[PositionId, tuple[Decimal | None, Decimal, Decimal, Decimal | None]] = {}
        ledger = engine.ledger
        self.index = TickIndex(
            engine.instruments,
            members=lambda symbol: ledger.by_symbol.get(symbol, ()),
            get=ledger.positions.__getitem__,
            put=ledger.put_marks,
        )
        ledger.before_change = self.index.before_change

    # ------------------------------------------------------------ protection

    async def protect(self, pid: PositionId) -> Position:
        """Place whatever exit orders are missing; close the position if the stop cannot rest."""
        e = self.e
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            if pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED) or pos.entry_price is None:
                return pos
            if pos.remaining <= 0:
                return pos
            orders = self._missing_exits(pos)
            if not orders:
                return await self._mark_protected(pos)
            seq = pos.stop_seq + 1
            levels = levels_for(
                pos.plan, pos.side, pos.entry_price, pos.filled_qty, e.instruments[pos.symbol], pos.stop_price
            )
            staged = replace(pos.with_levels(levels), stop_seq=seq)
            intents = [self._exit_intent(staged, role, seq) for role in orders]
            intents = [o for o in intents if o.qty > 0]
            pos = await e.ledger.commit(pos, staged, orders=intents)
        results = await asyncio.gather(*(self._place(o) for o in intents))
        return await self._record_protection(pid, intents, results)

    async def _mark_protected(self, pos: Position) -> Position:
        """Every exit rests (e.g. found so by recovery): record the protection if not yet recorded."""
        stop = self.e.ledger.current_stop(pos.id)
        if pos.status is not PositionStatus.OPEN or stop is None or stop.status is not OrderStatus.OPEN:
            return pos
        new = pos.transition(PositionStatus.PROTECTED)
        return await self.e.ledger.commit(pos, new, events=[self._protected_event(pos.id)])

    def _missing_exits(self, pos: Position) -> list[OrderRole]:
        live = {o.role for o in self.e.ledger.live_orders(pos.id)}
        missing = [] if OrderRole.STOP in live else [OrderRole.STOP]
        if not pos.tp1_hit and OrderRole.TP1 not in live:
            missing.append(OrderRole.TP1)
        if not pos.tp2_hit and OrderRole.TP2 not in live:
            missing.append(OrderRole.TP2)
        return missing

    def _exit_intent(self, pos: Position, role: OrderRole, seq: int) -> Order:
        if role is OrderRole.STOP:
            return self.e.intent(pos, role, seq, OrderType.STOP_MARKET, pos.remaining, pos.stop_price)
        price, qty = (pos.tp1_price, pos.tp1_qty) if role is OrderRole.TP1 else (pos.tp2_price, pos.tp2_qty)
        return self.e.intent(pos, role, seq, OrderType.TAKE_PROFIT_MARKET, min(qty, pos.remaining), price)

    async def _record_protection(
        self, pid: PositionId, intents: list[Order], results: list[tuple[OrderReport | None, str]]
    ) -> Position:
        e = self.e
        stop_failed: str | None = None
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            now = e.clock.now()
            orders, events = [], []
            for intent, (report, why) in zip(intents, results, strict=True):
                current = e.ledger.orders[intent.client_order_id]
                if report is None:
                    orders.append(current.with_status(OrderStatus.REJECTED))
                    events.append(
                        Event(EventKind.PROTECTION_FAILED, now, pid, f"{intent.role} not placed: {why}")
                    )
                    if intent.role is OrderRole.STOP:
                        stop_failed = why
                    continue
                status = current.status if current.status.terminal else report.status
                orders.append(current.with_status(status, exchange_order_id=report.exchange_order_id))
                events.append(
                    Event(
                        EventKind.EXIT_ORDER_PLACED,
                        now,
                        pid,
                        f"{intent.role} {intent.qty} @ {intent.trigger_price}",
                        {
                            "role": intent.role.value,
                            "qty": str(intent.qty),
                            "price": str(intent.trigger_price),
                        },
                    )
                )
            new = pos
            if stop_failed is None and pos.status is PositionStatus.OPEN and pos.remaining > 0:
                new = pos.transition(PositionStatus.PROTECTED)
                events.append(self._protected_event(pid))
            pos = await e.ledger.commit(pos, new, orders=orders, events=events)
        if stop_failed is not None and pos.is_active and pos.remaining > 0:
            await e.notifier.notify(
                Alert("critical", "stop could not be placed", f"closing {pos.symbol}: {stop_failed}", pid)
            )
            return await self.close(pid, ExitReason.PROTECTION_FAILED)
        return pos

    def exposed_from(self, pid: PositionId, since: float) -> None:
        """Start (or keep) timing how long `pid` is without a resting stop."""
        self._exposed_since.setdefault(pid, since)

    def _protected_event(self, pid: PositionId) -> Event:
        started = self._exposed_since.pop(pid, None)
        seconds = 0.0 if started is None else max(0.0, self.e.clock.monotonic() - started)
        self.unprotected_seconds.append(seconds)
        if seconds > self.e.config.protection_window:
            message = f"stop rested {seconds:.2f}s after the fill (window {self.e.config.protection_window}s)"
            self.e.spawn(self.e.notifier.notify(Alert("warning", "slow protection", message, pid)))
        return Event(
            EventKind.POSITION_PROTECTED,
            self.e.clock.now(),
            pid,
            f"stop resting after {seconds:.3f}s",
            {"unprotected_seconds": f"{seconds:.6f}"},
        )

    async def _place(self, order: Order) -> tuple[OrderReport | None, str]:
        """Send with retries; a timeout is looked up by client order id before any resend."""
        e = self.e
        why = "no attempt made"
        for attempt in range(e.config.protect_attempts):
            try:
                return await e.send(order), ""
            except OrderRejected as exc:
                return None, f"rejected: {exc}"
            except ExchangeUnavailable as exc:
                why = f"exchange unavailable: {exc}"
            except ExchangeTimeout:
                found = await e.lookup(order)
                if isinstance(found, OrderReport):
                    return found, ""
                why = "timed out and not found"
            await e.clock.sleep(e.config.retry_backoff * (attempt + 1))
        return None, why

    # ------------------------------------------------------------------ fills

    async def apply_fill(self, order: Order, report: FillReport) -> None:
        e = self.e
        pid = order.position_id
        follow: FollowUp | None = None
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            order = e.ledger.orders[order.client_order_id]
            if report.trade_id in pos.applied_trades:
                return
            fill = Fill(
                trade_id=report.trade_id,
                client_order_id=order.client_order_id,
                position_id=pid,
                role=order.role,
                symbol=order.symbol,
                side=report.side,
                qty=report.qty,
                price=report.price,
                fee=report.fee,
                at=report.at,
            )
            if pos.status.terminal:
                await e.ledger.record(
                    Event(EventKind.RECONCILE, e.clock.now(), pid, f"fill {fill.trade_id} after {pos.status}")
                )
                return
            try:
                new = pos.apply_fill(fill)
            except InvalidFill as exc:
                await e.ledger.record(Event(EventKind.RECONCILE, e.clock.now(), pid, str(exc)))
                await e.notifier.notify(Alert("warning", "fill does not fit", str(exc), pid))
                return
            new, events, follow = self._after_fill(pos, new, order, fill)
            await e.ledger.commit(pos, new, orders=[self._filled(order, fill)], fills=[fill], events=events)
        self.exit_seen[pid].set()
        if follow is not None:
            e.spawn(follow(pid))
        if not new.is_active:
            msg = f"{new.symbol} {new.side} closed ({new.exit_reason}), realized {new.realized_pnl:.4f}"
            await e.notifier.notify(Alert("info", "position closed", msg, pid))

    def _after_fill(
        self, pos: Position, new: Position, order: Order, fill: Fill
    ) -> tuple[Position, list[Event], FollowUp | None]:
        now = self.e.clock.now()
        data = {
            "trade_id": fill.trade_id,
            "qty": str(fill.qty),
            "price": str(fill.price),
            "role": order.role.value,
        }
        if order.role is OrderRole.ENTRY:
            if new.status is PositionStatus.OPENING:
                new = new.transition(PositionStatus.OPEN)
            self._exposed_since.setdefault(pos.id, self.e.clock.monotonic())
            return new, [Event(EventKind.ENTRY_FILLED, now, pos.id, f"{fill.qty} @ {fill.price}", data)], None
        events = [Event(EventKind.EXIT_FILL, now, pos.id, f"{order.role} {fill.qty} @ {fill.price}", data)]
        if new.tp1_hit and not pos.tp1_hit:
            events.append(Event(EventKind.TP1_HIT, now, pos.id, f"TP1 closed {fill.qty}"))
        if new.tp2_hit and not pos.tp2_hit:
            events.append(Event(EventKind.TP2_HIT, now, pos.id, f"TP2 closed {fill.qty}"))
            events.append(Event(EventKind.TRAILING_ARMED, now, pos.id, "runner trails from here"))
        if new.remaining <= 0:
            reason = self._close_reasons.pop(pos.id, None) or new.exit_reason_for(order.role).value
            new = new.closed(reason, now)
            events.append(
                Event(
                    EventKind.POSITION_CLOSED,
                    now,
                    pos.id,
                    f"closed by {reason}, realized {new.realized_pnl}",
                    {"reason": reason, "realized_pnl": str(new.realized_pnl)},
                )
            )
            return new, events, self.cancel_exits
        if order.role in (OrderRole.TP1, OrderRole.TP2) and new.status is not PositionStatus.CLOSING:
            return new, events, self.move_stop
        return new, events, None

    @staticmethod
    def _filled(order: Order, fill: Fill) -> Order:
        total = order.filled_qty + fill.qty
        avg = ((order.avg_price or Decimal(0)) * order.filled_qty + fill.price * fill.qty) / total
        status = OrderStatus.FILLED if total >= order.qty else OrderStatus.OPEN
        if order.status.terminal:
            status = order.status
        return order.with_status(status, filled_qty=total, avg_price=avg)

    async def on_order_report(self, order: Order, report: OrderReport) -> None:
        e = self.e
        cid = order.client_order_id
        if report.status in (OrderStatus.CANCELED, OrderStatus.REJECTED):
            if cid in self._cancelling or not order.status.live or order.role not in EXIT_ROLES:
                return
            await self._exit_vanished(order, report)
        elif report.status is OrderStatus.OPEN and order.status is OrderStatus.PENDING:
            e.ledger.note_order(
                order.with_status(OrderStatus.OPEN, exchange_order_id=report.exchange_order_id)
            )
        elif (
            report.status is OrderStatus.FILLED
            and report.filled_qty > order.filled_qty
            and order.role.is_exit
        ):
            e.spawn(e.wait_for_fills(order.position_id, cid, report.filled_qty, entry=False))

    async def _exit_vanished(self, order: Order, report: OrderReport) -> None:
        """An exit order was cancelled by someone else: re-place it (the stop at once)."""
        e = self.e
        pid = order.position_id
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            current = e.ledger.orders[order.client_order_id]
            if not current.status.live:
                return
            was_stop = current.role is OrderRole.STOP and e.ledger.current_stop(pid) == current
            new = pos
            events = [
                Event(
                    EventKind.PROTECTION_LOST,
                    e.clock.now(),
                    pid,
                    f"{order.role} {report.status} outside warden",
                )
            ]
            if was_stop and pos.status is PositionStatus.PROTECTED and pos.remaining > 0:
                new = pos.transition(PositionStatus.OPEN)
                self._exposed_since[pid] = e.clock.monotonic()
            await e.ledger.commit(pos, new, orders=[current.with_status(report.status)], events=events)
        if new.is_active and new.remaining > 0:
            if was_stop:
                await e.notifier.notify(
                    Alert("warning", "stop removed outside warden", "re-placing it now", pid)
                )
            e.spawn(self.protect(pid))

    # ------------------------------------------------------------ stop moves

    def on_mark(self, symbol: Symbol, price: Decimal) -> None:
        """A mark price: a few comparisons, unless a runner's threshold is crossed (domain/ticks.py)."""
        decisions = self.index.on_mark(symbol, price)
        if not decisions:
            return
        for decision in decisions:
            pid = decision.position_id
            if pid in self._moving:
                self._rerun.add(pid)
            else:
                self._moving.add(pid)  # reserved here; move_stop takes it over
                self.e.spawn(self.move_stop(pid, decision.stop_price, reserved=True))

    async def flush_watermarks(self) -> None:
        """Persist peak/trough, MAE/MFE and last price of the positions whose marks moved, in one write."""
        ledger = self.e.ledger
        moved = []
        for symbol in self.index.materialize_all():
            for pid in ledger.by_symbol.get(symbol, ()):
                pos = ledger.positions[pid]
                marks = (pos.watermark, pos.mae, pos.mfe, pos.last_price)
                if self._persisted_marks.get(pid) != marks:
                    moved.append(pos)
        if not moved or ledger.degraded:
            return
        try:
            await ledger.store.save_marks(moved)
        except StoreUnavailable:
            return  # the next flush writes them; transitions carry them too
        for pos in moved:
            self._persisted_marks[pos.id] = (pos.watermark, pos.mae, pos.mfe, pos.last_price)

    async def move_stop(
        self, pid: PositionId, target: Decimal | None = None, *, reserved: bool = False
    ) -> None:
        """Resize / tighten the stop: the new one rests before the old one is cancelled.

        Single-flight per position: a request that arrives while a move is in
        flight is not dropped; the running move goes round again with the
        newest state (size, break-even, trailing watermark).
        """
        if pid in self._moving and not reserved:
            self._rerun.add(pid)
            return
        self._moving.add(pid)
        try:
            for _ in range(100):
                self._rerun.discard(pid)
                await self._move_stop(pid, target)
                target = None
                if pid not in self._rerun and not self._wants_trail(pid):
                    break
        finally:
            self._moving.discard(pid)

    def _wants_trail(self, pid: PositionId) -> bool:
        pos = self.e.ledger.positions.get(pid)
        if pos is None or not pos.is_active or pos.status is PositionStatus.CLOSING:
            return False
        return pos.trailing_target(self.e.instruments[pos.symbol]) is not None

    async def _move_stop(self, pid: PositionId, target: Decimal | None) -> None:
        e = self.e
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            if pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED) or pos.remaining <= 0:
                return
            inst = e.instruments[pos.symbol]
            price = pos.stop_price
            assert price is not None
            for candidate in (target, pos.breakeven_target(), pos.trailing_target(inst)):
                if candidate is not None:
                    price = tighter(pos.side, price, inst.round_price(candidate))
            old = e.ledger.current_stop(pid)
            if old is not None and old.qty == pos.remaining and old.trigger_price == price:
                return
            seq = pos.stop_seq + 1
            staged = replace(pos, stop_seq=seq)
            intent = e.intent(staged, OrderRole.STOP, seq, OrderType.STOP_MARKET, pos.remaining, price)
            await e.ledger.commit(pos, staged, orders=[intent])
        report, why = await self._place(intent)
        if report is None:
            await e.ledger.record(
                Event(EventKind.PROTECTION_FAILED, e.clock.now(), pid, f"stop move failed: {why}")
            )
            if old is None:
                e.spawn(self.protect(pid))
            return
        cancelled = await self._cancel(old) if old is not None else None
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            placed = e.ledger.orders[intent.client_order_id]
            placed = placed.with_status(
                placed.status if placed.status.terminal else report.status,
                exchange_order_id=report.exchange_order_id,
            )
            orders = [placed] + ([cancelled] if cancelled is not None else [])
            new = replace(pos, stop_price=price)
            if new.status is PositionStatus.OPEN and new.remaining > 0:
                new = new.transition(PositionStatus.PROTECTED)
            event = Event(
                EventKind.STOP_MOVED,
                e.clock.now(),
                pid,
                f"stop {old.trigger_price if old else None} -> {price} for {intent.qty}",
                {"from": str(old.trigger_price if old else None), "to": str(price), "qty": str(intent.qty)},
            )
            await e.ledger.commit(pos, new, orders=orders, events=[event])
        if cancelled is not None:
            self._cancelling.discard(cancelled.client_order_id)

    async def _cancel(self, order: Order) -> Order:
        """Cancel one order; the stream's echo of it is not mistaken for an outside cancel."""
        e = self.e
        self._cancelling.add(order.client_order_id)
        for attempt in range(e.config.protect_attempts):
            try:
                report = await e.query(
                    e.exchange.cancel_order(order.symbol, order.client_order_id, order.type.conditional)
                )
                current = e.ledger.orders[order.client_order_id]
                return current if current.status.terminal else current.with_status(report.status)
            except OrderNotFound:
                current = e.ledger.orders[order.client_order_id]
                return current if current.status.terminal else current.with_status(OrderStatus.CANCELED)
            except ExchangeError:
                await e.clock.sleep(e.config.retry_backoff * (attempt + 1))
        return e.ledger.orders[order.client_order_id]

    async def cancel_superseded_stops(self, pid: PositionId) -> None:
        """Stops older than the newest live one (a move cut short by a crash) are cancelled."""
        e = self.e
        current = e.ledger.current_stop(pid)
        older = [o for o in e.ledger.live_orders(pid, OrderRole.STOP) if current is not None and o != current]
        if not older:
            return
        cancelled = await asyncio.gather(*(self._cancel(o) for o in older))
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            event = Event(
                EventKind.STOP_MOVED, e.clock.now(), pid, f"cancelled {len(older)} superseded stop(s)"
            )
            await e.ledger.commit(pos, pos, orders=cancelled, events=[event])
        for order in cancelled:
            self._cancelling.discard(order.client_order_id)

    async def cancel_exits(self, pid: PositionId) -> None:
        e = self.e
        live = [o for o in e.ledger.live_orders(pid) if o.role in EXIT_ROLES]
        if not live:
            return
        cancelled = await asyncio.gather(*(self._cancel(o) for o in live))
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            await e.ledger.commit(pos, pos, orders=cancelled)
        for order in cancelled:
            self._cancelling.discard(order.client_order_id)

    # ---------------------------------------------------------------- closing

    async def close(self, pid: PositionId, reason: str) -> Position:
        """Reduce-only market for what remains; cancel the exits once flat."""
        e = self.e
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            if pos.status.terminal or pos.remaining <= 0:
                return pos
            seq = 1 + sum(1 for o in e.ledger.orders_of(pid) if o.role is OrderRole.CLOSE)
            intent = e.intent(pos, OrderRole.CLOSE, seq, OrderType.MARKET, pos.remaining)
            self._close_reasons[pid] = reason
            event = Event(EventKind.CLOSE_REQUESTED, e.clock.now(), pid, f"close {pos.remaining}: {reason}")
            await e.ledger.commit(
                pos, pos.transition(PositionStatus.CLOSING), orders=[intent], events=[event]
            )
        report, why = await self._place(intent)
        if report is not None and report.filled_qty > 0:
            await e.wait_for_fills(pid, intent.client_order_id, report.filled_qty, entry=False)
        pos = e.ledger.positions[pid]
        if pos.status is PositionStatus.CLOSED:
            await self.cancel_exits(pid)
            return e.ledger.positions[pid]
        return await self._close_failed(pid, why or "close order did not fill")

    async def _close_failed(self, pid: PositionId, why: str) -> Position:
        e = self.e
        async with e.lock(pid):
            pos = e.ledger.positions[pid]
            if pos.status is not PositionStatus.CLOSING:
                return pos
            self._close_reasons.pop(pid, None)
            back = PositionStatus.PROTECTED if e.ledger.current_stop(pid) else PositionStatus.OPEN
            event = Event(EventKind.PROTECTION_FAILED, e.clock.now(), pid, f"close failed: {why}")
            pos = await e.ledger.commit(pos, pos.transition(back), events=[event])
        await e.notifier.notify(Alert("critical", "close failed", f"{pos.symbol}: {why}", pid))
        if back is PositionStatus.OPEN:
            e.spawn(self.protect(pid))
        raise ExchangeUnavailable(f"close of {pid} failed: {why}")
