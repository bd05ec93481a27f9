"""Stream events to the code that owns them.

- Mark prices go to the tick path.
- Fills and order updates go by client order id to the position's order. An
  event of ours whose order is not known yet (a race with registration, or one
  that arrives before recovery loaded the state) is buffered and replayed,
  never dropped. An event of a position that already finished and left memory
  is a late echo: its fills are still attributed (a stale exit order of a closed
  position reduces whatever the symbol holds now; an entry that executed after warden
  gave up on it is reconciled at once, see ExitManager.on_late_entry). Once the positions
  are loaded, an entry fill of a position memory does not hold is looked up in the
  database: one that ended there (failed before a restart, or forgotten since) is such a
  late entry too; one the database does not know either is buffered. A fill of a guard or
  cover stop (no position owns it) is attributed to what the symbol holds, as a stale exit
  order's is.
- An order with a warden-shaped id of another installation means another warden
  trades this account: trading stops, it is alerted, and its orders are never
  touched.
- A stream gap means events may be lost: resync and reconcile.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from warden.domain.alerts import AlertKind
from warden.domain.events import Event, EventKind
from warden.domain.orders import Order
from warden.domain.position import Position
from warden.domain.reconcile import guarding
from warden.domain.reports import FillReport, MarkPrice, OrderReport, StreamEvent, StreamGap
from warden.domain.values import ClientOrderId, OrderRole, PositionId, parse_client_id
from warden.ports import Store, StoreUnavailable
from warden.service.context import Context
from warden.service.exits import ExitManager

log = structlog.get_logger("warden.router")


class Router:
    def __init__(
        self,
        ctx: Context,
        exits: ExitManager,
        on_gap: Callable[[], Coroutine[Any, Any, None]],
        on_other_instance: Callable[[str, str], Awaitable[None]],
        store: Store,
        loaded: Callable[[], bool],
    ) -> None:
        self.ctx = ctx
        self.exits = exits
        self.on_gap = on_gap
        self.on_other_instance = on_other_instance
        self.store = store
        self.loaded = loaded
        """Whether this start (or takeover) has loaded the positions: memory then holds every
        active one, so an entry of ours it does not know is one that ended (or the database's)."""
        self._early: dict[str, list[FillReport | OrderReport]] = defaultdict(list)
        self._chains: dict[PositionId, asyncio.Task[Any]] = {}
        self._early_count = 0
        ctx.ledger.on_new_order = self._registered

    def _registered(self, cid: ClientOrderId) -> None:
        """An order memory did not know is registered: what arrived for it early is applied now
        (an exit order's events may arrive before its intent is written: they are sent together).
        Its reports that need only memory (an exit acknowledged before its intent was written,
        the usual case) are applied at once; from the first that waits, in a task, in order."""
        early = self._early.get(cid)
        order = self.ctx.ledger.orders.get(cid)
        if not early or order is None:
            return
        try:
            while early and isinstance(early[0], OrderReport) and self._reported_now(order, early[0]):
                early.pop(0)
                self._early_count -= 1
        except Exception as exc:  # within a commit's landing: reported as a failed task's, not raised
            early.pop(0)
            self._early_count -= 1
            self.ctx.tasks.failed(exc)
        if early:
            self.ctx.tasks.spawn(self.replay_early(cid))
        else:
            del self._early[cid]

    async def on_event(self, event: StreamEvent) -> None:
        if isinstance(event, MarkPrice):
            self.exits.last_mark[event.symbol] = event
            self.exits.on_mark(event.symbol, event.price)
        elif isinstance(event, FillReport | OrderReport):
            order = self.ctx.ledger.orders.get(ClientOrderId(event.client_order_id))
            if order is None:
                await self._unknown(event)
            elif isinstance(event, FillReport):
                chain = self._chains.get(order.position_id)
                self.exits.watch_part(order, event, busy=chain is not None and not chain.done())
                self._in_order(order.position_id, self.exits.apply_fill(order, event))
            elif not self._reported_now(order, event):
                self._in_order(order.position_id, self.exits.on_order_report(order, event))
        elif isinstance(event, StreamGap):
            await self.ctx.ledger.record(
                Event(EventKind.RECONCILE, self.ctx.clock.now(), None, f"stream gap: {event.reason}")
            )
            self.ctx.tasks.spawn(self.on_gap())

    def _reported_now(self, order: Order, report: OrderReport) -> bool:
        """Apply a known order's report at once when nothing of its position is still being
        handled (its order kept) and it needs only memory (`ExitManager.report_now`): no task
        for the acknowledgements and repeated fills that are most of an open's events. False:
        nothing was done; it is to be handled in the position's order, as every event was before."""
        before = self._chains.get(order.position_id)
        if before is not None and not before.done():
            return False
        return self.exits.report_now(order, report)

    def _in_order(self, pid: PositionId, work: Coroutine[Any, Any, None]) -> None:
        """Handle a position's events concurrently with other positions' (a mass event commits
        in groups instead of one by one) but in arrival order for the same position."""
        before = self._chains.get(pid)

        async def run() -> None:
            if before is not None and not before.done():
                await asyncio.wait([before])
            await work

        task = self.ctx.tasks.spawn(run())
        # Cancelled (stand-down, stop) before its turn, the work never started: close it.
        task.add_done_callback(lambda _: work.close())
        self._chains[pid] = task
        task.add_done_callback(
            lambda done: self._chains.pop(pid, None) if self._chains.get(pid) is done else None
        )

    async def _unknown(self, event: FillReport | OrderReport) -> None:
        parsed = parse_client_id(event.client_order_id)
        if parsed is None:
            return  # not warden's: reconciliation deals with outside trades
        if parsed.installation != self.ctx.config.installation_id:
            await self.on_other_instance(event.client_order_id, event.symbol)
            return
        forgotten = parsed.position_id in self.ctx.ledger.forgotten
        if guarding(parsed.position_id) and self.loaded():
            # A guard or cover stop (no position owns it) that traded reduced what the symbol
            # holds: attributed, never buffered for an order no one registers.
            if isinstance(event, FillReport):
                await self.exits.attribute_orphan_fill(event)
            return
        if isinstance(event, FillReport) and parsed.role is OrderRole.ENTRY and (forgotten or self.loaded()):
            if parsed.position_id not in self.ctx.ledger.positions:
                await self.exits.cover_late_entry(event)  # before the database is read
            ended = await self._ended(parsed.position_id)
            if ended is not None or forgotten:
                await self.exits.late_entry(ended, event, parsed.position_id)
                return
        elif forgotten:
            if isinstance(event, FillReport) and parsed.role.is_exit:
                await self.exits.attribute_orphan_fill(event)
            return
        self.buffer(event)

    async def _ended(self, pid: PositionId) -> Position | None:
        """The position as the database has it, if it ended there (failed, closed): its entry's
        fill is a late entry. None: unknown, still active (a row being loaded) or unreadable."""
        try:
            position = await self.store.get_position(pid)
        except StoreUnavailable as exc:
            log.warning("late_entry_unread", position_id=pid, error=str(exc))
            return None
        return position if position is not None and not position.is_active else None

    def buffer(self, event: FillReport | OrderReport) -> None:
        """Ours but not yet known: keep it for when the order is registered."""
        if self._early_count >= self.ctx.config.early_buffer_limit:
            log.error("early_buffer_full", client_order_id=event.client_order_id)
            self.ctx.alert(
                AlertKind.ENGINE_ERROR, f"early event buffer full; dropped {event.client_order_id}"
            )
            return
        self._early[event.client_order_id].append(event)
        self._early_count += 1

    def early_ids(self) -> list[str]:
        return list(self._early)

    async def replay_early(self, cid: str) -> None:
        for event in self._early.pop(cid, []):
            self._early_count -= 1
            await self.on_event(event)

    async def replay_known(self) -> None:
        """After recovery loaded the state: replay what was buffered for orders now known, and
        for entries of positions memory does not hold (an ended one's is a late entry; the
        others are buffered again)."""
        for cid in self.early_ids():
            parsed = parse_client_id(cid)
            if cid in self.ctx.ledger.orders or (
                parsed is not None and (parsed.role is OrderRole.ENTRY or guarding(parsed.position_id))
            ):
                await self.replay_early(cid)
