"""Fills and exits: protection, fills of every order, stop moves, resizing, closing.

Rules this module keeps:
- The stop lives on the exchange, sized to the remaining position; take-profits
  carry exact quantities (TP1 is 60 % of the size, never "close position").
- A stop is moved by placing the new one first and cancelling the old one after,
  so the position is never without a resting stop; it only ever tightens.
- A refused order is final (REJECTED): it never stands in for a resting one. A
  refused trailing move whose price the market has already passed closes the
  runner at market; any other refused move keeps the resting stop, resized.
- After any size change every exit order is re-sized to what remains.
- If no stop can be placed, the position is closed (reduce-only market) and the
  reason recorded: an open position without a stop is the one thing not allowed.
- A fill is never dropped: one that closes more than its own position holds is
  attributed to the symbol's other positions, or recorded and alerted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import structlog

from warden.domain.alerts import Alert, AlertKind
from warden.domain.copying import evolve
from warden.domain.errors import InvalidFill
from warden.domain.events import Event, EventKind
from warden.domain.orders import Fill, Order, OrderStatus
from warden.domain.plan import levels_for, tighter
from warden.domain.position import ExitReason, Position, PositionStatus
from warden.domain.reconcile import guard_close, guard_stop, ours, stop_from
from warden.domain.reports import FillReport, MarkPrice, OrderReport, PositionReport
from warden.domain.tally import UNPROTECTED_BUCKETS, Tally
from warden.domain.ticks import TickIndex
from warden.domain.values import (
    ZERO,
    ClientOrderId,
    OrderRole,
    OrderSide,
    OrderType,
    ParsedClientId,
    PositionId,
    Side,
    Symbol,
    TradeId,
    client_order_id,
    parse_client_id,
    parse_client_order_id,
)
from warden.ports import (
    DuplicateOrder,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderNotFound,
    OrderRejected,
    StoreUnavailable,
)
from warden.service.commands import TradingRefused
from warden.service.context import Context
from warden.service.gateway import Found, Gateway, NotFound, Unknown

EXIT_ROLES = (OrderRole.STOP, OrderRole.TP1, OrderRole.TP2)
LATE_TRADES_KEPT = 1_000
"""Late entry fills remembered to drop a duplicate delivery (the oldest forgotten first)."""
COVER = "cover"
"""The owner prefix of a stop that covers a late entry fill (cover_late_entry): not hex, so no
position's id."""
COVER_STEADY = 60.0
"""Seconds a late entry's cover the exchange does not answer is sent again every half protection
window, before the trader is told and it is sent every 30 s (ExitManager._cover_again)."""
COVER_HORIZON = 1800.0
"""Seconds after which such a cover is no longer sent (the trader told)."""
MOVE_WAIT_STEP = 0.05
"""Seconds between looks, while a stop a move waits for is still being sent (`_move_waits`)."""
FollowUp = Callable[[PositionId], Coroutine[Any, Any, Any]]


log = structlog.get_logger("warden.engine")
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class Covers:
    """What the engine remembers of its late entry covers, the newest LATE_TRADES_KEPT of each."""

    trades: dict[str, None] = field(default_factory=dict)
    """Late entry fills (symbol:trade) covered by a stop of their own (cover_late_entry)."""
    resting: dict[ClientOrderId, Order] = field(default_factory=dict)
    """Covers the exchange answered placed, until a position of their symbol and side is
    protected (`ExitManager._pass_for_covers`)."""
    entry_trades: dict[PositionId, dict[str, Decimal]] = field(default_factory=dict)
    """The entry trades of active positions as they arrived (`ExitManager.watch_part`), applied
    or not yet: what a position holds on the exchange before memory knows it, should a part
    need a cover of its own. The newest LATE_TRADES_KEPT positions."""
    outgrown: set[PositionId] = field(default_factory=set)
    """Positions a part of whose entry stayed uncovered while a close of theirs, sized before it,
    works: that close is cut and the next sent for all they hold (`ExitManager._cut_close`)."""
    cut: dict[PositionId, dict[ClientOrderId, tuple[Order, OrderStatus, Decimal]]] = field(
        default_factory=dict
    )
    """The closes of each position cut for a part (`ExitManager._cut_close`,
    `ExitManager._cut_early_close`): each as it was sent, how it ended and what the exchange said
    it filled, which sizes the next close (`ExitManager._close_next_early`) while its fills are
    on their way. One sent early and cut before a `close` took it over is written with the close
    that took its place."""
    cutting: dict[PositionId, asyncio.Task[None]] = field(default_factory=dict)
    """An early close being cut: a `close` taking it over waits for the cut to end."""

    def covering(self, trade: str) -> None:
        _keep_newest(self.trades, trade, None)

    def rests(self, cover: Order) -> None:
        _keep_newest(self.resting, cover.client_order_id, cover)


def _keep_newest(kept: dict[K, V], key: K, value: V) -> None:
    """Remember `key`, forgetting the oldest beyond LATE_TRADES_KEPT (insertion order)."""
    kept[key] = value
    while len(kept) > LATE_TRADES_KEPT:
        del kept[next(iter(kept))]


@dataclass(frozen=True, slots=True)
class Placed:
    """The outcome of sending one order with retries."""

    report: OrderReport | None
    why: str = ""
    rejected: bool = False
    """The exchange definitely refused it (final); else it was not placed or is unknown."""
    unknown: bool = False
    """Timed out and could not be looked up: the order may rest; it stays PENDING."""
    withheld: bool = False
    """Never sent: a take-profit whose stop was not placed (`ExitManager._after_stop`)."""

    @property
    def definitely_not_placed(self) -> bool:
        """Refused, or failed in a way that places nothing (a 5xx; timed out and not found)."""
        return self.report is None and not self.unknown


def make_intent(
    ctx: Context,
    position: Position,
    role: OrderRole,
    seq: int,
    type_: OrderType,
    qty: Decimal,
    trigger: Decimal | None = None,
    *,
    reason: str | None = None,
) -> Order:
    """An order intent with its deterministic client id; it is committed before it is sent. A
    close's `reason` is why it is sent (Order.reason)."""
    side = position.side.entry_side if role is OrderRole.ENTRY else position.side.exit_side
    return Order(
        client_order_id=client_order_id(position.id, role, seq, ctx.config.installation_id),
        position_id=position.id,
        role=role,
        symbol=position.symbol,
        side=side,
        type=type_,
        qty=qty,
        trigger_price=trigger,
        reduce_only=role is not OrderRole.ENTRY,
        status=OrderStatus.PENDING,
        created_at=ctx.clock.now(),
        reason=reason,
    )


class ExitManager:
    def __init__(
        self, ctx: Context, gateway: Gateway, pass_again: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        self.ctx = ctx
        self.gw = gateway
        self.ledger = ctx.ledger
        self.flights = ctx.flights
        self.unprotected = Tally(UNPROTECTED_BUCKETS)
        """Seconds from each fill to its resting stop, as /metrics reports them."""
        self._exposed_since: dict[PositionId, float] = {}
        self._sends: set[asyncio.Future[Placed]] = set()
        """Exit orders on their way whose senders await them shielded (`_sending`)."""
        self._refused: dict[PositionId, int] = {}
        """Rounds in a row in which neither a stop nor a close of the position went through."""
        self._attributed: dict[str, None] = {}
        """Trades (symbol:trade) of stale exit orders attributed to other positions (`attribute`),
        so that one delivered again is not attributed twice (the oldest forgotten first)."""
        self._stop_at_once: set[PositionId] = set()
        """Positions whose stop is being sent at once on a failed close (`_close_failed`), with
        the close that follows it if it is not placed: that close's failure sends none again."""
        self._tps_told: set[tuple[PositionId, OrderRole]] = set()
        """Take-profits the trader was told the exchange refused (told again only after one rests)."""
        self._refusals: Counter[tuple[str, PositionId]] = Counter()
        """Stop moves ("move") and trims ("trim", `_trim_to_stop`) of a position refused in a row:
        each mark or pass tries again; the trader is told of the first, then reminded at 8, 16,
        32, ..."""
        self.recovery_started: float | None = None
        self._moving: set[PositionId] = set()
        self._rerun: set[PositionId] = set()
        self._stop_idle: dict[PositionId, asyncio.Event] = {}
        """Set when a position's stop move ends (stop_idle waits on it)."""
        self._cancelling: set[ClientOrderId] = set()
        self._closing_blind: dict[ClientOrderId, bool] = {}
        """A late entry's close at market (`guard_close`), sent or being sent: the alert saying it
        closed tells the trader, its fills are recorded and not alerted again (True once one
        came). One whose send failed is not kept: if it lands after all, its fill tells."""
        self._unsaved_marks: set[Symbol] = set()
        """Symbols whose moved marks a flush could not write (taken from the index already)."""
        self._persisted_marks: dict[PositionId, tuple[Decimal | None, Decimal, Decimal, Decimal | None]] = {}
        self._arming: dict[Symbol, tuple[Decimal, Decimal]] = {}
        self._early_stops: dict[PositionId, tuple[Order, asyncio.Task[Placed]]] = {}
        """Stops sent on the entry's filled answer, before its fills were applied (see send_stop_early)."""
        self._early_closes: dict[PositionId, tuple[Order, asyncio.Task[Placed]]] = {}
        """Closes sent the moment such a stop was refused, until a `close` takes one over (each
        carries its reason, protection_failed, which names the exit whenever it lands)."""
        self.last_mark: dict[Symbol, MarkPrice] = {}
        """The newest streamed mark of each symbol (the open saga sizes from it: no REST call)."""
        self.index = TickIndex(
            ctx.instruments,
            members=lambda symbol: self.ledger.by_symbol.get(symbol, ()),
            get=self.ledger.positions.__getitem__,
            put=self.ledger.put_marks,
        )
        self.ledger.before_change = self._before_change
        self.on_late_entry: Callable[[Position | None, FillReport], None] | None = None
        """Called with an entry fill of a position that already ended (failed: its lookups found
        nothing; or finished) or left memory: the exchange executed it after warden gave up on
        it, so it holds a position no active one explains (the engine reconciles it at once)."""
        self.pass_again = pass_again
        """Runs a reconciliation pass (the engine's `reconcile`): a cover that rests only after it
        was sent again (`_cover_again`) may rest after the pass that would cancel it ended."""
        self._late_trades: dict[str, None] = {}
        """Late entry fills handed on (a duplicate delivery is not handed on twice), the newest
        LATE_TRADES_KEPT (a duplicate comes soon after its original, not thousands of fills later)."""
        self._covers = Covers()
        self._sweeps: set[ClientOrderId] = set()
        """Orders looked for once no copy of them can land: cancelled ones whose copies were in
        flight (_sweep), market orders a cancel did not find (_settle_gone)."""
        self._waiting: set[tuple[str, ClientOrderId]] = set()
        """Orders waited for until no copy of them can land: ("cancel", id) left resting by
        cancel_exits (`_copies_wait`), ("move", id) a stop a move waits for (`_move_waits`)."""

    def forget(self, pid: PositionId) -> None:
        """A finished position leaves memory: its streak counters go with it."""
        self._refused.pop(pid, None)
        self._stop_at_once.discard(pid)
        self._refusals.pop(("move", pid), None)
        self._refusals.pop(("trim", pid), None)
        self._tps_told -= {(pid, OrderRole.TP1), (pid, OrderRole.TP2)}
        self._early_closes.pop(pid, None)  # one whose close landed while its stop was sent again
        self._covers.outgrown.discard(pid)
        self._covers.cut.pop(pid, None)

    def _before_change(self, symbol: Symbol, pid: PositionId, joining: bool) -> None:
        self.index.before_change(symbol, pid, joining)
        self._arming.pop(symbol, None)

    def _lock(self, pid: PositionId) -> asyncio.Lock:
        return self.ctx.locks.position(pid)

    # ------------------------------------------------------------ protection

    async def protect(self, pid: PositionId) -> Position:
        """Place whatever exit orders are missing; close the position if the stop cannot rest."""
        if self.gw.together and self._all_exits_live(pid):
            return await self._protect_sent_together(pid)
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            if (
                pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED)
                or pos.entry_price is None
                or pos.remaining <= 0
            ):
                leftover = self._early_stops.pop(pid, None) if pos.status.terminal else None
                if leftover is not None:
                    self.ctx.tasks.spawn(self._withdraw(pid, *leftover))
                return pos
            orders = self._missing_exits(pos)
            if not orders:
                return await self._mark_protected(pos)
            staged = self._staged(pos)
            seq = staged.stop_seq
            intents = [self._exit_intent(staged, role, seq) for role in orders]
            intents = [o for o in intents if o.qty > 0]
            # The intents are written while the orders are already on their way, not before:
            # a stop must not wait for the database. This is safe because the client ids are
            # deterministic (position, role, sequence): if the process dies before the write
            # lands, recovery (which runs before any reconciliation) stages the same sequence
            # again, the exchange refuses the duplicate id and `place` adopts the order that
            # rests. Proved by test_a_stop_sent_while_its_intent_was_never_written_is_adopted_...
            early = self._early_stops.pop(pid, None)
            if early is not None:
                # The stop already went out on the entry's answer: the same client id (same
                # sequence) is recorded as it was sent, and its answer awaited, not sent again.
                intents = [early[0] if o.client_order_id == early[0].client_order_id else o for o in intents]
            staging = asyncio.ensure_future(self.ledger.commit(pos, staged, orders=intents))
            # The stop goes out first; the take-profits once it is placed (`_after_stop`).
            stop = next((o for o in intents if o.role is OrderRole.STOP), None)
            stop_send = None if stop is None else self._sending(self._send(staged, stop, early))
            sends = [
                self._sending(self._after_stop(stop_send, o))
                if stop_send is None or o is not stop
                else stop_send
                for o in intents
            ]
            sending = asyncio.ensure_future(asyncio.gather(*sends))
            try:
                pos = await staging
            except BaseException:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
                raise
        stop_at = next((i for i, o in enumerate(intents) if o.role is OrderRole.STOP), None)
        if stop_at is not None and not sending.done():
            stopped = await asyncio.shield(sends[stop_at])
            if stopped.report is None:
                # The stop failed while take-profits are still retrying: the close that replaces
                # it goes out now, not after their retries (seconds of backoff on a 5xx); they
                # are recorded when they answer (chaos 374917399:1244).
                others = intents[:stop_at] + intents[stop_at + 1 :]
                self.ctx.tasks.spawn(self._record_later(pid, others, sends[:stop_at] + sends[stop_at + 1 :]))
                return await self._record_protection(pid, [intents[stop_at]], [stopped])
        results = await sending
        done = await self._record_protection(pid, intents, results)
        stop = self.ledger.current_stop(pid)
        if (
            early is not None
            and stop is not None
            and done.is_active
            and (stop.qty != done.remaining or stop.trigger_price != done.stop_price)
        ):
            self.ctx.tasks.spawn(self.move_stop(pid))  # the fills differed from the answer
        return done

    async def _after_stop(self, stop: asyncio.Future[Placed] | None, order: Order) -> Placed:
        """A take-profit staged with its position's stop goes out once the stop is placed, and is
        not sent if it is not: the position is then closed, and a take-profit resting meanwhile,
        reduce-only, could close what another position on the symbol holds (stacking; seen in
        chaos 565405691:3027's trace). It costs the take-profits a round trip, not the stop."""
        if stop is not None:
            placed = await asyncio.shield(stop)
            if placed.report is None:
                return Placed(None, f"not sent: the stop was not placed ({placed.why})", withheld=True)
        return await self.place(order)

    def _all_exits_live(self, pid: PositionId) -> bool:
        pos = self.ledger.positions[pid]
        return (
            pos.status in (PositionStatus.OPEN, PositionStatus.PROTECTED)
            and pos.entry_price is not None
            and pos.remaining > 0
            and not self._missing_exits(pos)
        )

    async def _protect_sent_together(self, pid: PositionId) -> Position:
        """Every exit is live on a venue that takes an entry and its exits together (the stop
        travelled with the entry): settle those whose outcome is unknown (a timed-out
        transaction: they landed with the entry or not at all), record the protection, then put
        the stop where the position wants it (resized to the fill, tightened to the plan's level
        from the fill price; never loosened) and the take-profits at their sizes."""
        for role in EXIT_ROLES:
            if not await self._settle_unknown(pid, role, leave_sending=True):
                return self.ledger.positions[pid]  # still unknown: recovery and the reconciler go on
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            if pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED) or pos.remaining <= 0:
                return pos
            missing = self._missing_exits(pos)
            done = pos if missing else await self._mark_protected(pos)
        if missing:
            return await self.protect(pid)  # one that did not land is placed the ordinary way
        stop = self.ledger.current_stop(pid)
        if done.is_active and stop is not None and not self.in_order(pid):
            await self.resize(pid)
        return self.ledger.positions[pid]

    async def record_placed(
        self, pid: PositionId, orders: Sequence[Order], reports: Sequence[OrderReport]
    ) -> None:
        """Record what the exchange answered for exit orders sent with the entry (their intents
        were committed before the send)."""
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            updates = [
                self._current(o).advance(
                    r.status, exchange_order_id=r.exchange_order_id, filled_qty=r.filled_qty
                )
                for o, r in zip(orders, reports, strict=True)
            ]
            await self.ledger.commit(pos, pos, orders=updates)

    async def settle_unknown_exits(self, pid: PositionId) -> None:
        """Look up the exits whose outcome is unknown (sent with an entry whose answer was lost)."""
        for role in EXIT_ROLES:
            await self._settle_unknown(pid, role)

    def _price_sent_together(self, new: Position) -> Position:
        """The entry's first fill prices a position whose exits travelled with it (sequence
        newer than the position's): the plan at the fill price, except that the stop is the
        tighter of the plan's level from the fill and the stop that rests (it was priced at the
        mark the entry was expected to fill at; a stop never loosens: with favourable slippage the
        resting stop stays, tighter than the plan by the slippage) and the take-profits keep the
        prices they rest at. Their sizes follow the entry's quantity."""
        sent = [
            o for o in self.ledger.orders_of(new.id) if o.role in EXIT_ROLES and _seq_of(o) > new.stop_seq
        ]
        if not sent or new.entry_price is None:
            return new
        by_role = {o.role: o for o in sent}
        stop, tp1, tp2 = (by_role.get(r) for r in EXIT_ROLES)
        inst = self.ctx.instruments[new.symbol]
        levels = levels_for(new.plan, new.side, new.entry_price, new.target_qty, inst, new.stop_price)
        priced = new.with_levels(levels)
        return evolve(
            priced,
            stop_price=tighter(new.side, priced.stop_price, stop.trigger_price)
            if stop is not None and stop.trigger_price is not None
            else priced.stop_price,
            tp1_price=new.tp1_price or (tp1.trigger_price if tp1 is not None else None) or priced.tp1_price,
            tp2_price=new.tp2_price or (tp2.trigger_price if tp2 is not None else None) or priced.tp2_price,
            stop_seq=max(_seq_of(o) for o in sent),
        )

    async def _record_later(
        self, pid: PositionId, intents: list[Order], sends: Sequence[Awaitable[Placed]]
    ) -> None:
        """Record take-profits that answered after their stop failed; those of a position that
        ended meanwhile are cancelled (nothing of ours rests that a closed position owns)."""
        results = list(await asyncio.gather(*sends))
        await self._record_protection(pid, intents, results, judge=False)
        if self.ledger.positions[pid].status.terminal:
            await self.cancel_exits(pid)

    def _sending(self, send: Coroutine[Any, Any, Placed]) -> asyncio.Future[Placed]:
        """An exit order's send that goes on if its caller is cancelled (the caller awaits it
        shielded: a stop must not die with an API request), kept until it ends."""
        task = asyncio.ensure_future(send)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return task

    async def abandon_sends(self) -> None:
        """Memory is rebuilt (a start attempt, a takeover): the sends of the memory before are
        cancelled, as a process that died would have them. Left running, each stayed marked as
        being sent, so the new recovery left its order to it and protect found the order live,
        while nothing would record what it answered (chaos 1780774841:668: the send gave up
        after 5xxs, and the position went 20 s without a stop, until the next pass). Cut off, an
        order is looked up by recovery like any intent, and a copy that lands later is adopted."""
        sends = list(self._sends)
        for task in sends:
            task.cancel()
        await asyncio.gather(*sends, return_exceptions=True)

    async def _withdraw(self, pid: PositionId, stop: Order, sending: asyncio.Task[Placed]) -> None:
        """A stop sent on the entry's answer for a position that ended before it was protected:
        recorded, then cancelled, so nothing of ours rests that the ledger does not know."""
        await sending
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            await self.ledger.commit(pos, pos, orders=[stop])
        await self.cancel_exits(pid)

    async def _send(
        self, pos: Position, order: Order, early: tuple[Order, asyncio.Task[Placed]] | None
    ) -> Placed:
        """Send a staged exit, or take the early stop's answer if it is this one. A stop is sent
        as the early one is (`_stop_or_close`): if it is not placed, its close goes out at once,
        not after the refusal and the close's intent are written (chaos 618285994:7370: a stop
        retried after a restart, two commits of 0.3 s before the close, 2.10 s uncovered)."""
        if early is not None and early[0].client_order_id == order.client_order_id:
            return await early[1]
        if order.role is OrderRole.STOP:
            return await self._stop_or_close(pos, order)
        return await self.place(order)

    def send_stop_early(self, pid: PositionId, report: OrderReport) -> None:
        """The entry answered filled (quantity and average price): its stop is sent now, while
        the fills are applied and written, so no commit sits between the fill and the stop on
        the exchange. It is the stop `protect` will stage (the plan priced at the answer's
        average, the next sequence, so the same client id); `protect` records it as sent and
        takes its answer. If the process dies first, recovery stages that id again and adopts
        the resting order (the exchange refuses the duplicate); if the applied fills differ from
        the answer, the stop is moved to them once protected."""
        if report.avg_price is not None:
            self._send_early(pid, report.filled_qty, report.avg_price)

    def _send_early(self, pid: PositionId, qty: Decimal, price: Decimal) -> None:
        pos = self.ledger.positions.get(pid)
        if (
            pos is None
            or pos.status is not PositionStatus.OPENING
            or qty <= 0
            or pid in self._early_stops
            or self.ledger.live_orders(pid, OrderRole.STOP)
        ):
            return
        staged = self._staged(evolve(pos, filled_qty=qty, entry_price=price))
        stop = self._exit_intent(staged, OrderRole.STOP, staged.stop_seq)
        self._early_stops[pid] = (stop, self.ctx.tasks.spawn(self._stop_or_close(staged, stop)))

    async def _stop_or_close(self, pos: Position, stop: Order) -> Placed:
        """Send the early stop; if it is not placed (refused outright, or given up on after its
        retries and lookups), send the close that replaces it at once: what `protect` decides
        for any stop not placed, after writing the fill, the intents and the refusal, then the
        close's intent (seconds on a slow database; chaos 283465486:7962, 1206:169). `close`
        records it as sent and takes its answer; if the process dies first, recovery adopts it
        from its trades (its id is deterministic). Not while the position is closing or ended,
        nor while another close of it is live: a second reduce-only close could close what
        another position on the symbol holds (`close` settles those first).

        A close whose outcome is unknown too (timed out and not found) beside another position on
        the symbol leaves the position with neither, and no other close may go out while it may
        still execute (`_alone`; alone, the next round's close may): the stop is sent again
        under its id until it rests (`_stop_again`), not after the refusal, the close's intent and
        its failure are written (chaos 961329088:9518: two stacked positions' 2 s commits
        alternating; covered 10 s after the 5xxs ended). A close that definitely did not go out
        goes on as before: `close` records it, and its failure sends the next stop and close.
        Beside another position, the close's intent is written as it goes out
        (`_record_early_close`), beside its send, not before it."""
        placed = await self.place(stop)
        if placed.report is None and self._may_close_early(pos.id):
            close = self._close_intent(pos, self._held_now(pos), ExitReason.PROTECTION_FAILED)
            early = (close, self.ctx.tasks.spawn(self.place(close)))
            self._early_closes[pos.id] = early
            if self._others_on(pos.symbol, pos.id):
                self.ctx.tasks.spawn(self._record_early_close(pos.id, early))
            if not placed.rejected:
                try:
                    closed = await asyncio.shield(early[1])
                except Exception:  # `close` takes it and raises it
                    return placed
                if closed.unknown and self._others_on(pos.symbol, pos.id):
                    self.ctx.tasks.spawn(self._record_early_close(pos.id, early))
                    return await self._stop_again(pos.id, stop, placed, early)
        return placed

    def _held_now(self, staged: Position) -> Decimal:
        """What a position whose stop was sent on its entry's first fill (`staged`, as that fill
        priced it) holds once that stop has failed: the parts of its entry that came during the
        stop's retries too (seen on the stream, applied or not), not only the first. Sized by
        the first alone, the close sent in the stop's place left the second part to a close of
        its own after the first's (chaos 5165:4272: stops landing 4.85 s late, the entry acknowledged
        and filled in two parts 0.3 s apart: the second part 2.4 s without a stop or a close)."""
        pos = self.ledger.positions.get(staged.id)
        return staged.remaining if pos is None else max(staged.remaining, self._held(pos))

    def _held(self, pos: Position) -> Decimal:
        """What the position holds on the exchange before memory knows it all: its applied
        remainder and the parts of its entry seen arriving (`watch_part`) and not applied yet."""
        seen = self._covers.entry_trades.get(pos.id, {})
        return pos.remaining + sum((q for t, q in seen.items() if t not in pos.applied_trades), ZERO)

    async def _stop_again(
        self, pid: PositionId, stop: Order, placed: Placed, early: tuple[Order, asyncio.Task[Placed]]
    ) -> Placed:
        """Send a stop that was not placed again, under its id, a quarter window apart, while the
        close sent in its place went unanswered and may still execute (`Flights.may_execute_for`).
        Each send is retried as any stop's is (`place`): a copy that landed meanwhile is adopted,
        the exchange refusing a second one under its id. It ends once the stop rests or the
        exchange refuses it, once the position is no longer open, or once a close of it takes
        that close over (`close` pops it); its last answer is the stop's. Resting, the position
        is protected with the close's outcome still unknown: `protect` records the close and
        follows it (`_early_close_behind`)."""
        clock = self.ctx.clock
        close = early[0]
        while (
            placed.report is None
            and not placed.rejected
            and self.flights.may_execute_for(close) > 0
            and self._early_closes.get(pid) is early
            and (pos := self.ledger.positions.get(pid)) is not None
            and pos.status in (PositionStatus.OPENING, PositionStatus.OPEN)
        ):
            await clock.sleep(self.ctx.config.protection_window / 4)
            placed = await self.place(stop)
        return placed

    async def _record_early_close(self, pid: PositionId, early: tuple[Order, asyncio.Task[Placed]]) -> None:
        """Write the intent of a close sent early as it goes out, beside its send: its answer may
        take seconds (a timeout, then lookups), the stop may be sent again meanwhile
        (`_stop_again`), and it may execute for seconds after; a process that died meanwhile must
        find it (recovery follows a pending close of a position not closing while it may still
        execute, and no signal opens a position it could reduce). Unwritten, it landed after
        the restart as a trade of an order nobody knew, and the new process had sent its own
        first close under the same id: both executed, the second off the stacked position beside
        it (I2; found by attacking 9518's fix, killed while the stop was sent again, then killed
        before the close's answer came). A kill before this write lands still loses it: writing
        first would hold the close, which is the position's protection now, behind a commit.
        Only beside another position (`_stop_or_close`): alone, a close sent again under its id
        after a restart closes nothing more, and no signal opens a position beside it while that
        one may land (`_alone`); the commit is not spent there, since it holds the position's next
        step behind it on a slow database (chaos 291220366:4862, 0.5 s over the window).
        Pending and still this position's early close, it is left to whoever takes its answer
        (`close`, `_early_close_behind`: `_settle_unknown` leaves it alone); written already by
        one of them, or the position ended, nothing is written. A write that fails is logged:
        the close is written again when its answer is taken."""
        close = early[0]
        try:
            async with self._lock(pid):
                pos = self.ledger.positions.get(pid)
                if (
                    pos is None
                    or not pos.is_active
                    or self._early_closes.get(pid) is not early
                    or close.client_order_id in self.ledger.orders
                ):
                    return
                await self.ledger.commit(
                    pos,
                    pos,
                    orders=[*self._cuts_unwritten(pid), close],
                    events=[self._early_close_event(pid, close)],
                )
        except StoreUnavailable as exc:
            log.warning("early_close_unwritten", client_order_id=close.client_order_id, error=str(exc))

    def _may_close_early(self, pid: PositionId) -> bool:
        """No close of the position is live or on its way: one being written now (`close`, a
        trader's close whose intent is not in memory yet) would go out under the same id as this
        one, and a market order's id is free again once it has filled (sent twice, reduce-only,
        the second could close what another position on the symbol holds)."""
        current = self.ledger.positions.get(pid)
        return (
            current is not None
            and current.status in (PositionStatus.OPENING, PositionStatus.OPEN)
            and self._no_close_of(pid)
        )

    def _close_intent(self, pos: Position, qty: Decimal, reason: str) -> Order:
        """The position's next close, sent for `reason`: a reduce-only market order with the next
        close sequence.
        Its size is rounded up to the lot: a size the exchange's lot no longer divides (the lot
        coarsened since the entry) is refused as it is, and reduce-only, it closes no more than is open."""
        sent = [o for o in self.ledger.orders_of(pos.id) if o.role is OrderRole.CLOSE]
        seq = 1 + len(sent)
        if pos.id in self._covers.cut:  # closes cut before they were written take their sequence
            sent += [o for o, _, _ in self._cut_of(pos.id)]
            seq = max(seq, 1 + max(p.seq for o in sent if (p := parse_client_id(o.client_order_id))))
        inst = self.ctx.instruments.get(pos.symbol)
        if inst is not None:
            qty = inst.lot_ceil(qty)
        return make_intent(self.ctx, pos, OrderRole.CLOSE, seq, OrderType.MARKET, qty, reason=reason)

    def _staged(self, pos: Position) -> Position:
        """The position priced by its plan at its entry, with the next exit sequence: what
        `protect` stages, and what `send_stop_early` must send so that both name the same stop."""
        assert pos.entry_price is not None
        inst = self.ctx.instruments[pos.symbol]
        levels = levels_for(pos.plan, pos.side, pos.entry_price, pos.filled_qty, inst, pos.stop_price)
        return evolve(pos.with_levels(levels), stop_seq=pos.stop_seq + 1)

    async def _mark_protected(self, pos: Position) -> Position:
        """Every exit rests (e.g. found so by recovery): record the protection if not yet recorded."""
        stop = self.ledger.current_stop(pos.id)
        if pos.status is not PositionStatus.OPEN or stop is None or stop.status is not OrderStatus.OPEN:
            return pos
        new = pos.transition(PositionStatus.PROTECTED)
        alert = self._protected_alert(pos)
        done = await self.ledger.commit(pos, new, events=[self._protected_event(pos)], alerts=[alert])
        await self.ctx.announce(alert)
        self._pass_for_covers(done)
        return done

    async def protection_found(self, pid: PositionId) -> Position:
        """A pass found the position's stop resting as recorded while the position is still OPEN
        (the round that would have recorded the protection ended first): recorded now, if
        nothing else is missing (`_mark_protected` checks the stop again under the lock)."""
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            if pos.status is not PositionStatus.OPEN or self._missing_exits(pos):
                return pos
            return await self._mark_protected(pos)

    def _missing_exits(self, pos: Position) -> list[OrderRole]:
        live = {o.role for o in self.ledger.live_orders(pos.id)}
        missing = [] if OrderRole.STOP in live else [OrderRole.STOP]
        if not pos.tp1_hit and OrderRole.TP1 not in live:
            missing.append(OrderRole.TP1)
        if not pos.tp2_hit and OrderRole.TP2 not in live:
            missing.append(OrderRole.TP2)
        return missing

    def _exit_intent(self, pos: Position, role: OrderRole, seq: int) -> Order:
        if role is OrderRole.STOP:
            return make_intent(self.ctx, pos, role, seq, OrderType.STOP_MARKET, pos.remaining, pos.stop_price)
        qty = self._tp_qty(pos, role)
        price = pos.tp1_price if role is OrderRole.TP1 else pos.tp2_price
        return make_intent(self.ctx, pos, role, seq, OrderType.TAKE_PROFIT_MARKET, qty, price)

    @staticmethod
    def _tp_price(pos: Position, role: OrderRole) -> Decimal | None:
        return pos.tp1_price if role is OrderRole.TP1 else pos.tp2_price

    async def move_take_profit(self, pid: PositionId, role: OrderRole, price: Decimal) -> Position:
        """Move TP1 or TP2 to `price` (the caller validated it): recorded, then the resting order is
        replaced (cancelled first: a take-profit is not protection)."""
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            field = "tp1_price" if role is OrderRole.TP1 else "tp2_price"
            old = getattr(pos, field)
            event = Event(
                EventKind.EXIT_ORDER_PLACED,
                self.ctx.clock.now(),
                pid,
                f"{role} moved {old} -> {price}",
                {"role": role.value, "from": str(old), "to": str(price)},
            )
            moved = evolve(pos, tp1_price=price) if role is OrderRole.TP1 else evolve(pos, tp2_price=price)
            await self.ledger.commit(pos, moved, events=[event])
        await self.resize_take_profits(pid)
        return self.ledger.positions[pid]

    def _tp_qty(self, pos: Position, role: OrderRole) -> Decimal:
        """A take-profit's quantity: its planned size, never more than what the other exits leave."""
        if role is OrderRole.TP1:
            return ZERO if pos.tp1_hit else min(pos.tp1_qty, pos.remaining)
        if pos.tp2_hit:
            return ZERO
        tp1 = ZERO if pos.tp1_hit else min(pos.tp1_qty, pos.remaining)
        return max(ZERO, min(pos.tp2_qty, pos.remaining - tp1))

    async def _record_protection(
        self, pid: PositionId, intents: list[Order], results: list[Placed], judge: bool = True
    ) -> Position:
        """Record what the exit orders' sends answered. With `judge`, the position is then
        protected (its stop rests) or closed (its stop failed); without, only recorded (a stop
        tried again while a close goes on, take-profits that answered after their stop failed)."""
        ctx = self.ctx
        stop_failed: str | None = None
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            now = ctx.clock.now()
            orders, events = [], []
            for intent, placed in zip(intents, results, strict=True):
                current = self.ledger.orders[intent.client_order_id]
                if placed.report is None:
                    if not placed.unknown:
                        orders.append(current.advance(OrderStatus.REJECTED))
                    if not placed.withheld:  # the stop's failure says it: one event a round
                        events.append(
                            Event(
                                EventKind.PROTECTION_FAILED,
                                now,
                                pid,
                                f"{intent.role} not placed: {placed.why}",
                            )
                        )
                    if intent.role is OrderRole.STOP:
                        stop_failed = placed.why
                    continue
                report = placed.report
                orders.append(
                    current.advance(
                        report.status,
                        exchange_order_id=report.exchange_order_id,
                        filled_qty=report.filled_qty,
                    )
                )
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
            behind = self._early_close_behind(pid) if judge and stop_failed is None else None
            if behind is not None and behind.client_order_id not in self.ledger.orders:
                orders.append(behind)
                events.append(self._early_close_event(pid, behind))
            new = pos
            alerts = []
            if judge and stop_failed is None and pos.status is PositionStatus.OPEN and pos.remaining > 0:
                new = pos.transition(PositionStatus.PROTECTED)
                events.append(self._protected_event(pos))
                alerts.append(self._protected_alert(pos))
            closing = judge and stop_failed is not None and new.is_active and new.remaining > 0
            if stop_failed is None and new.status in (PositionStatus.OPEN, PositionStatus.PROTECTED):
                alerts.extend(self._take_profits_refused(new, intents, results))
            if closing and self._tell(pid):
                message = f"closing {pos.symbol}: {stop_failed}"
                alerts.append(ctx.make_alert(AlertKind.PROTECTION_FAILED, message, pid))
            protected = new is not pos and new.status is PositionStatus.PROTECTED
            pos = await self.ledger.commit(pos, new, orders=orders, events=events, alerts=alerts)
        await ctx.announce(*alerts)
        if behind is not None:
            # Followed until it ends; one that ended already (its fill came meanwhile) has the
            # position's exits, this stop among them, taken down if it closed the position.
            ctx.tasks.spawn(self.follow_unknown_close(pid, self._current(behind)))
        if protected:
            self._pass_for_covers(pos)
        if closing and pos.is_active and pos.remaining > 0:
            return await self.close(pid, ExitReason.PROTECTION_FAILED)
        return pos

    def _early_close_behind(self, pid: PositionId) -> Order | None:
        """A close sent early with an unknown outcome whose stop then rested after all
        (`_stop_again`, the only way a stop rests with such a close behind it) is the position's
        record, not the next close's: its intent as it went out, pending while it may still
        execute, then followed (if it lands, the position closes and its exits are cancelled).
        Its id is spent: a market order's id is free again once it filled, and a second close
        under it could close what another position on the symbol holds. None otherwise (one
        placed or refused is `close`'s to record)."""
        early = self._early_closes.get(pid)
        if early is None or not early[1].done() or early[1].cancelled() or early[1].exception():
            return None
        if not early[1].result().unknown:
            return None
        del self._early_closes[pid]
        return early[0]

    def _early_close_event(self, pid: PositionId, close: Order) -> Event:
        return Event(
            EventKind.CLOSE_REQUESTED,
            self.ctx.clock.now(),
            pid,
            f"close {close.qty} sent when the stop failed",
        )

    def _take_profits_refused(
        self, pos: Position, intents: list[Order], results: list[Placed]
    ) -> list[Alert]:
        """A take-profit the exchange refused while the stop rests (Bybit's 10-conditional cap on
        a stacked symbol, a rejection): the position is protected, but it would never take that
        profit (nor arm the runner). The trader is told once; reconciliation places it again
        (`retry_take_profits`) until the exchange takes it."""
        alerts = []
        for intent, placed in zip(intents, results, strict=True):
            if intent.role not in (OrderRole.TP1, OrderRole.TP2):
                continue
            key = (pos.id, intent.role)
            if placed.report is not None:
                self._tps_told.discard(key)
            elif not placed.unknown and not placed.withheld and key not in self._tps_told:
                self._tps_told.add(key)
                message = (
                    f"{pos.symbol} {intent.role.upper()} {intent.qty} @ {intent.trigger_price} not placed "
                    f"({placed.why}); the stop rests; tried again at every reconciliation"
                )
                alerts.append(self.ctx.make_alert(AlertKind.PROTECTION_FAILED, message, pos.id))
        return alerts

    def refused_take_profits(self, pid: PositionId) -> list[OrderRole]:
        """The take-profits a protected position still wants whose newest order the exchange
        refused (none of the role rests or has filled): what `retry_take_profits` places."""
        pos = self.ledger.positions.get(pid)
        if pos is None or pos.status is not PositionStatus.PROTECTED or pos.remaining <= 0:
            return []
        orders = self.ledger.orders_of(pid)
        if not any(o.status is OrderStatus.REJECTED for o in orders):
            return []  # the common case (a pass over 10,000 positions asks each), answered cheaply
        roles = []
        for role in (OrderRole.TP1, OrderRole.TP2):
            mine = [o for o in orders if o.role is role]
            if not mine or self._tp_qty(pos, role) <= 0:
                continue
            newest = max(mine, key=_seq_of)
            if newest.status is OrderStatus.REJECTED and not any(
                o.status.live or o.status is OrderStatus.FILLED or o.filled_qty > 0 for o in mine
            ):
                roles.append(role)
        return roles

    async def retry_take_profits(self, pid: PositionId) -> None:
        """Place again the take-profits the exchange refused (see `refused_take_profits`)."""
        if pid in self._moving or not self.refused_take_profits(pid):
            return  # a stop move is under way (the next pass), or nothing to place: no lock taken
        async with self._lock(pid):
            roles = self.refused_take_profits(pid)  # again, under the lock
            if not roles:
                return
            pos = self.ledger.positions[pid]
            staged = evolve(pos, stop_seq=pos.stop_seq + 1)
            intents = [self._exit_intent(staged, role, staged.stop_seq) for role in roles]
            await self.ledger.commit(pos, staged, orders=intents)
        results = list(await asyncio.gather(*(self.place(o) for o in intents)))
        await self._record_protection(pid, intents, results, judge=False)

    def exposed_since(self, pid: PositionId) -> float | None:
        """When (monotonic) this position's time without a resting stop started, if it is running."""
        return self._exposed_since.get(pid)

    def exposed_from(self, pid: PositionId, since: float) -> None:
        """Start timing how long `pid` is without a resting stop, or move the start earlier
        (the earliest start anyone knows of is the honest one)."""
        known = self._exposed_since.get(pid)
        self._exposed_since[pid] = since if known is None else min(known, since)

    def _protected_alert(self, pos: Position) -> Alert:
        stop = self.ledger.current_stop(pos.id)
        price = stop.trigger_price if stop is not None else pos.stop_price
        message = f"{pos.symbol} {pos.side} {pos.remaining} @ {pos.entry_price}: stop {price} resting"
        return self.ctx.make_alert(AlertKind.POSITION_PROTECTED, message, pos.id)

    def _protected_event(self, pos: Position) -> Event:
        ctx = self.ctx
        started = self._exposed_since.pop(pos.id, None)
        self._refused.pop(pos.id, None)
        if started is None:
            # No start was seen by this process (e.g. the fill happened while it was down):
            # count from the position's opening, an upper bound, never an optimistic 0.
            seconds = max(0.0, (ctx.clock.now() - pos.opened_at).total_seconds())
        else:
            seconds = max(0.0, ctx.clock.monotonic() - started)
        self.unprotected.observe(seconds)
        if seconds > ctx.config.protection_window:
            message = f"stop rested {seconds:.2f}s after the fill (window {ctx.config.protection_window}s)"
            ctx.alert(AlertKind.SLOW_PROTECTION, message, pos.id)
        return Event(
            EventKind.POSITION_PROTECTED,
            ctx.clock.now(),
            pos.id,
            f"stop resting after {seconds:.3f}s",
            {"unprotected_seconds": f"{seconds:.6f}"},
        )

    async def place(self, order: Order) -> Placed:
        """Send an exit order with retries; an unknown outcome (a timeout, a 5xx) is looked up
        by client order id before any resend.

        A stop is sent differently (see `_place_stop`). A market close or a take-profit is not
        resent blind: one that filled meanwhile is no longer resting, so its id could be taken
        again; it is looked up in full first, and sent again only if not found. If the lookups
        cannot answer, the outcome stays unknown and nothing is resent (chaos 1559800714:8640:
        a close resent three times under one id traded 0.020 for its 0.009).

        While it runs the order is `InFlight.sending`: a resync leaves it to this call."""
        with self.flights.placing(order.client_order_id):
            return await self._place(order)

    async def place_guard(self, order: Order) -> Placed:
        """`place` for a guard's stop or close (no position owns it): sent, retried and looked up
        as a position's are, an exchange or gate refusal answered as not placed. A guard's stop is
        retried for a quarter of the protection window, not most of it: what it covers has been
        without a stop since before this process began, for as long as the process before it
        retried its own stop (three quarters of the window at most) and a restart took, which
        nothing here can read back (chaos 88001:1548: the process died 0.6 s after the fill while
        stops were held back, the database down at the restart; the guard's stop retried for
        1.5 s more before its close: 2.16 s uncovered). A position's own stop counts from its
        fill (`_stop_time`); a guard has only the worst case to count from."""
        config = self.ctx.config
        try:
            if order.role is OrderRole.STOP:
                with self.flights.placing(order.client_order_id):
                    return await self._place_stop(
                        order, max(config.retry_backoff, config.protection_window / 4)
                    )
            return await self.place(order)
        except (ExchangeError, TradingRefused) as exc:
            return Placed(None, str(exc))

    async def _place(self, order: Order) -> Placed:
        if order.role is OrderRole.STOP:
            return await self._place_stop(order)
        ctx = self.ctx
        last = Placed(None, "no attempt made")
        for attempt in range(ctx.config.protect_attempts):
            if attempt and self._withdrawn(order):
                return Placed(None, "not sent again: withdrawn meanwhile", unknown=True)
            try:
                return Placed(await self.gw.send(order))
            except OrderRejected as exc:
                return await self._adopt_or_refuse(order, exc, maybe_sent=False)
            except ExchangeUnavailable as exc:
                last = Placed(None, f"exchange unavailable: {exc}")
            except ExchangeTimeout:
                self.flights.sent_unknown(order.client_order_id)
                if order.role is OrderRole.CLOSE:
                    self.flights.close_in_flight(order)
                # A close that holds no second one back is looked up once, not in full: if it
                # is not found, the next close may go out (`_alone`).
                alone = order.role is OrderRole.CLOSE and self._alone(order.position_id, order.symbol)
                last = self._looked_up(await self.gw.lookup(order, attempts=1 if alone else None))
                if last.report is not None or last.unknown:
                    return last
                if order.role is OrderRole.CLOSE:
                    # Not found is not "never sent": a venue may execute a timed-out order seconds
                    # later (Binance's 503 -1007, "execution status unknown"). Sent again, both
                    # could execute, the second closing what another position on the symbol holds
                    # (chaos 404:95). Its outcome stays unknown: the next close waits for it.
                    return Placed(None, "timed out and not found yet", unknown=True)
                continue  # not found after lookups that paused already: sent again at once
            await ctx.clock.sleep(ctx.config.retry_backoff * (attempt + 1))
        return last

    async def _place_stop(self, order: Order, within: float | None = None) -> Placed:
        """A stop is retried for most of the protection window (or `within` seconds: 0, sent
        once), not a fixed number of times, and an unknown outcome is looked up once, then the
        stop is sent again under the same client id. Waiting out a lookup backoff would leave the
        position without a stop for seconds, and a resend cannot double it: every venue refuses a
        second resting order with its id (Binance -4116, Bybit 110072, Drift's user order id),
        and a stop rests until it triggers. A refusal after an unknown outcome is looked up in
        full: it is most likely the first send resting. A move the stop it replaces covers for is
        not sent again after a timeout (`_covered_meanwhile`)."""
        ctx = self.ctx
        clock = ctx.clock
        if within is None:
            within = self._stop_time(order)
        deadline = clock.monotonic() + within
        pause = ctx.config.retry_backoff / 2
        last = Placed(None, "no attempt made")
        maybe_sent = False
        attempt = 0
        while True:
            if attempt and (why := self._why_not_again(order)):
                return Placed(None, why, unknown=maybe_sent)
            attempt += 1
            try:
                return Placed(await self.gw.send(order))
            except DuplicateOrder as exc:
                # An earlier send rests under this id (the position is covered): look it up in full.
                return await self._adopt_or_refuse(order, exc, maybe_sent=True)
            except OrderRejected as exc:
                # Not as a duplicate: after an unknown outcome the first send may still rest (a
                # venue may check the id late), so it is looked up, but only for what is left of
                # the stop's time: if not found, the position is closed (a stop found resting
                # later is an order of a closed position, cancelled by reconciliation).
                looks = self._looks_within(deadline - clock.monotonic())
                return await self._adopt_or_refuse(order, exc, maybe_sent, looks)
            except ExchangeUnavailable as exc:
                last = Placed(None, f"exchange unavailable: {exc}")
            except ExchangeTimeout:
                maybe_sent = True
                last = await self._stop_timed_out(order, first=attempt == 1)
                if last.report is not None or not last.unknown:
                    return last
            left = deadline - clock.monotonic()
            if left <= 0 or attempt >= 50:
                break
            if attempt > 1:  # the first resend goes at once
                await clock.sleep(min(left, pause * (attempt - 1)))
        if maybe_sent:
            found = await self.gw.lookup(order, attempts=1)
            if isinstance(found, Found):
                return Placed(found.report)
            return Placed(None, last.why, unknown=not isinstance(found, NotFound))
        return last

    async def _stop_timed_out(self, order: Order, first: bool) -> Placed:
        """A stop's send timed out: a copy may land; looked up once. Found, it rests. Not found,
        it is sent again (an unknown outcome), unless it is a move the stop it replaces covers
        for with stacking on (`_covered_meanwhile`): then it is given up on (not unknown). Given
        up on after its `first` send, only one copy of it can land (`flights.sent_once`); after
        a later one (the position was covered meanwhile: a grow's stop sent again and again, then
        another stop rested for all of it; chaos 5171:976), the copies already in flight are
        left to the sweeps, as a stop given up on at the end of its time is."""
        self.flights.sent_unknown(order.client_order_id)
        found = await self.gw.lookup(order, attempts=1)
        if isinstance(found, Found):
            return Placed(found.report)
        if isinstance(found, NotFound) and self._covered_meanwhile(order):
            if first:
                self.flights.sent_once(order)
            return Placed(None, "timed out and not found; not sent again: the stop it replaces covers")
        return Placed(None, "timed out and not found yet", unknown=True)

    def _covered_meanwhile(self, order: Order) -> bool:
        """With stacking on, a stop that replaces one resting and covering all its position holds
        (a move: a trail, breakeven, a shrink) is not sent again after a timeout it was not found
        for: nothing is uncovered while its outcome is unknown, and every further send is a copy
        that may land seconds later. With stacking a superseded stop is cancelled the moment a
        later one rests (`_superseded_later`), and each copy then lands on the freed id, placed again
        (chaos 5163:9818: a trailing move sent seven times into timeouts, each copy landing 4.85 s
        later, swept one by one: placed six times). It is given up on, as a stop whose sends all
        went unanswered is; the next mark moves the stop again under a new id, and its one copy,
        should it land, is taken as the stop or cancelled on sight (`landed_late`). A stop that
        covers less than the position holds (a first stop, a grow) is sent again: time uncovered
        is what the window counts. Without stacking, a superseded stop rests until no copy can land,
        so a copy sent again is refused as a duplicate: sent again, as a first stop is."""
        pos = self.ledger.positions.get(order.position_id)
        if not self.ctx.config.allow_stacking or pos is None or not pos.is_active:
            return False
        return any(
            o.client_order_id != order.client_order_id
            and o.status is OrderStatus.OPEN
            and o.qty >= pos.remaining
            for o in self.ledger.live_orders(order.position_id, OrderRole.STOP)
        )

    def _why_not_again(self, order: Order) -> str | None:
        """Why a stop is not sent again after a failed send, if it is not. Its position ended
        meanwhile (chaos 1214:234): sent again, a copy could land on the id a cancel freed, and
        the order be placed twice; copies already in flight are swept once none can land
        (cancel_exits, `_sweep_copies`). Or it was withdrawn (`_withdrawn`)."""
        position = self.ledger.positions.get(order.position_id)
        if position is not None and not position.is_active:
            return f"not sent again: its position is {position.status}"
        return "not sent again: withdrawn meanwhile" if self._withdrawn(order) else None

    def _withdrawn(self, order: Order) -> bool:
        """An order being sent again after a failed send that warden has since cancelled or is
        cancelling (superseded: a take-profit resized, a stop moved): sent again, each copy would
        land on the id the cancel freed, and be placed once more (chaos 5163:13284: a take-profit
        resized as an entry's parts grew the position, its sends answered "unknown" and landing
        4.85 s later; it went on being sent after its cancel, and three copies landed one after
        another, each swept)."""
        cid = order.client_order_id
        current = self.ledger.orders.get(cid)
        return cid in self._cancelling or (
            current is not None and current.status in (OrderStatus.CANCELED, OrderStatus.REJECTED)
        )

    def _stop_time(self, order: Order) -> float:
        """How long a stop is retried: most of the protection window, counted from when its
        position was left without a resting stop (`exposed_from`: the fill, as the exchange counts
        it), not from this send. A process that died during its stop's retries left the time it
        spent uncovered: the next one's retries do not start it over (chaos 1204611195:1596, a
        restart 0.6 s after the fill retried for another 1.5 s: 2.16 s uncovered). Never less
        than one pause (a resend and a lookup) before the close that replaces it."""
        config = self.ctx.config
        within = max(config.protection_window * 0.75, config.retry_backoff)
        since = self._exposed_since.get(order.position_id)
        pos = self.ledger.positions.get(order.position_id)
        if since is None or pos is None or pos.status is PositionStatus.PROTECTED:
            return within
        return max(config.retry_backoff, within - (self.ctx.clock.monotonic() - since))

    @staticmethod
    def _looked_up(found: Found | NotFound | Unknown) -> Placed:
        if isinstance(found, Found):
            return Placed(found.report)
        if isinstance(found, NotFound):
            return Placed(None, "timed out and not found")
        return Placed(None, "timed out and could not be looked up", unknown=True)

    def _looks_within(self, seconds: float) -> int:
        """How many lookups (with the gateway's growing pause between them) fit in `seconds`."""
        config = self.ctx.config
        looks, spent = 1, 0.0
        while looks < config.lookup_attempts and spent + config.retry_backoff * looks <= seconds:
            spent += config.retry_backoff * looks
            looks += 1
        return looks

    async def _adopt_or_refuse(
        self, order: Order, exc: OrderRejected, maybe_sent: bool, looks: int | None = None
    ) -> Placed:
        """Its deterministic id may already be on the exchange: sent by a process whose write of
        the intent was lost (a restart during a database outage), or by the send before this
        one. A refusal as a duplicate is then the order resting, not a failure: adopt it.
        After an unknown outcome it is looked up `looks` times (default: in full)."""
        found = await self.gw.lookup(order, attempts=(looks if looks else None) if maybe_sent else 1)
        if isinstance(found, Found) and found.report.status in (OrderStatus.OPEN, OrderStatus.FILLED):
            return Placed(found.report)
        if maybe_sent and isinstance(found, Unknown):
            return Placed(None, f"refused after an unknown outcome, not found yet: {exc}", unknown=True)
        return Placed(None, f"rejected: {exc}", rejected=True)

    # ------------------------------------------------------------------ fills

    async def apply_fill(self, order: Order, report: FillReport, *, entry_read: bool = False) -> None:
        """Apply one execution of a known order through the position's state machine. An exit's
        fill beyond what the position holds while its entry still works waits for the entry's
        fills (`_exit_fill_before_entry`; `entry_read`: they were read)."""
        pid = order.position_id
        follow: FollowUp | None = None
        spill = ZERO
        before_entry = False
        alerts: list[Alert] = []
        await self._cover_if_given_up(order, report)
        self.watch_part(order, report, busy=self._lock(pid).locked())
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            if pos is None:
                return
            order = self.ledger.orders[order.client_order_id]
            if report.trade_id in pos.applied_trades:
                return
            fill = self._fill(order, report, report.qty, report.trade_id)
            if pos.status.terminal:
                spill = report.qty if order.role.is_exit else ZERO
                if not spill:
                    await self.late_entry(pos, report, pid)
            else:
                fill, spill, before_entry = self._within_position(pos, order, fill, entry_read)
                if fill.qty > 0:
                    try:
                        new = (
                            pos.mark(fill.price).apply_fill(fill)
                            if order.role.is_exit
                            else pos.apply_fill(fill)
                        )
                    except InvalidFill as exc:
                        await self.ledger.record(
                            Event(EventKind.RECONCILE, self.ctx.clock.now(), pid, str(exc))
                        )
                        await self.ctx.notify(AlertKind.FILL_MISMATCH, str(exc), pid)
                        return
                    if order.role is OrderRole.ENTRY and pos.entry_price is None and self.gw.together:
                        new = self._price_sent_together(new)
                    if order.role is OrderRole.ENTRY and new.entry_price is not None:
                        # The first fill of a working entry: its stop goes out before the fill
                        # is written (the write may be slow); `protect` adopts it.
                        self._send_early(pid, new.filled_qty, new.entry_price)
                    new, events, follow = self._after_fill(pos, new, order, fill)
                    alerts = self._fill_alerts(pos, new, order, fill)
                    await self.ledger.commit(
                        pos,
                        new,
                        orders=[self._filled(order, fill)],
                        fills=[fill],
                        events=events,
                        alerts=alerts,
                    )
        if before_entry:
            await self._exit_fill_before_entry(order, report)
            return
        self.ctx.seen[pid].set()
        if spill > 0:
            await self.attribute(order.position_id, order.client_order_id, report, spill)
        if follow is not None:
            self.ctx.tasks.spawn(follow(pid))
        await self.ctx.announce(*alerts)

    def _within_position(
        self, pos: Position, order: Order, fill: Fill, entry_read: bool
    ) -> tuple[Fill, Decimal, bool]:
        """An exit's fill cut to what the position holds: the fill applied, the excess that
        reduced other positions (`attribute`), and whether it waits for the entry's fills
        instead (`_exit_fill_before_entry`: nothing applied, nothing excess)."""
        if not order.role.is_exit or fill.qty <= pos.remaining:
            return fill, ZERO, False
        if not entry_read and self._entry_works(pos):
            return evolve(fill, qty=ZERO), ZERO, True
        return evolve(fill, qty=pos.remaining), fill.qty - pos.remaining, False

    def _entry_works(self, pos: Position) -> bool:
        """The position's entry has not ended in memory: fills of it may be on their way."""
        return pos.status is PositionStatus.OPENING or any(
            o.status.live for o in self.ledger.orders_of(pos.id) if o.role is OrderRole.ENTRY
        )

    async def _exit_fill_before_entry(self, order: Order, report: FillReport) -> None:
        """An exit's fill beyond what its position holds in memory while the position's entry
        still works: the entry's fills have not been applied yet (lost on the stream, read later),
        not the exit sized beyond the position. Taken as excess, it was attributed to another
        position on the symbol, and applied again to its own once the entry's fill came: recorded
        twice, and the other position's own close then recorded nowhere (chaos 5152:5278: stacking
        on, a close sent early on a refused stop filled before its entry's fill, which the stream
        lost, was read). The entry's fills are read over REST and applied first, then this fill;
        only what is still beyond the position after that reduced others (`attribute`)."""
        pid = order.position_id
        log.info("exit_fill_before_entry", position_id=pid, client_order_id=order.client_order_id)
        entries = {o.client_order_id for o in self.ledger.orders_of(pid) if o.role is OrderRole.ENTRY}
        await self.fetch_fills_for(pid, entries)
        await self.apply_fill(order, report, entry_read=True)

    def watch_part(self, order: Order, report: FillReport, *, busy: bool) -> None:
        """A fill of an active position's entry that grows it past its first part (or arrives while
        the position's earlier work is under way, `busy`) is covered by its stop only once that
        work, the fill and the grown stop's intents are written: on a slow database seconds
        after it executed (chaos 31770:269, :703, :875: 2 s commits, a second part of a working
        entry 6.5 to 8 s without a stop). Called as it arrives (before it waits its turn): should
        the position's resting stops not cover it a quarter protection window later, it is
        covered by a stop of its own (`cover_late_entry`, once per trade), cancelled as a stray
        once the position's own stop covers it (`_pass_for_covers`). Nothing is spawned for
        the first fill of an idle position (its stop goes out with it, `_send_early`) nor for
        one applied already."""
        if order.role is not OrderRole.ENTRY:
            return
        pid = order.position_id
        pos = self.ledger.positions.get(pid)
        if pos is None or not pos.is_active or report.trade_id in pos.applied_trades:
            return
        seen = self._covers.entry_trades.get(pid)
        if seen is None:
            seen = {}
            _keep_newest(self._covers.entry_trades, pid, seen)
        if report.trade_id in seen:
            return  # watched already (its stream fill, then a lookup's read, or a duplicate)
        seen[report.trade_id] = report.qty
        if busy or pos.filled_qty > 0 or len(seen) > 1:
            self.ctx.tasks.spawn(self._cover_part_unless_grown(pid, report))

    async def _cover_part_unless_grown(self, pid: PositionId, report: FillReport) -> None:
        await self.ctx.clock.sleep(self.ctx.config.protection_window / 4)
        pos = self.ledger.positions.get(pid)
        if pos is None or not pos.is_active:
            self._covers.entry_trades.pop(pid, None)
            return  # ended: a fill of it from now on is a late entry's (`late_entry`)
        held = self._held(pos)
        if self._stops_acknowledged(pid) >= held:
            return
        log.warning("entry_part_uncovered", position_id=pid, trade_id=report.trade_id, qty=str(report.qty))
        if pos.status is PositionStatus.CLOSING or pid in self._early_closes:
            # Being closed by a close sized before this part (or sent early on a refused stop, for
            # `close` to take over): it is cut, and the next goes out for all the position holds,
            # rather than closing the part only once that close's round ends (chaos 60607:3417:
            # every stop refused, closes held 1.5 s a part, a part 3 s with neither a stop nor a
            # close of its own). See `_outgrown`, `_cut_close`.
            self._covers.outgrown.add(pid)
            self.ctx.seen[pid].set()  # wakes the close's wait (`work_order`)
            if pid in self._early_closes and pid not in self._covers.cutting:
                # No `close` has taken it over yet, to cut it: that waits for the position's
                # writes, seconds on a slow database (60607:3417 with 0.4 s commits).
                self._covers.cutting[pid] = self.ctx.tasks.spawn(self._cut_early_close(pid))
        await self.cover_late_entry(report)

    def _stops_acknowledged(self, pid: PositionId) -> Decimal:
        """What the position's stops the exchange acknowledged cover: those recorded resting, and
        the stop sent early on its entry's first fill once placed (recorded with the exit intents)."""
        covered = sum(
            (o.qty for o in self.ledger.live_orders(pid, OrderRole.STOP) if o.status is OrderStatus.OPEN),
            ZERO,
        )
        early = self._early_stops.get(pid)
        if early is not None and early[0].client_order_id not in self.ledger.orders:
            stop, sending = early
            if sending.done() and not sending.cancelled() and sending.exception() is None:
                covered += stop.qty if sending.result().report is not None else ZERO
        return covered

    async def _cover_if_given_up(self, order: Order, report: FillReport) -> None:
        """A fill of an entry being given up on (`InFlight.giving_up`) waits for the lock the
        failure is written under, seconds on a slow database: it is covered first
        (`cover_late_entry`; chaos 1237:260). A write that fails leaves the failure in memory
        (pending, the ledger degraded), so the fill is a late entry's all the same; one fenced
        out leaves this engine unable to act, the cover resting for the holder to adopt."""
        if order.role is OrderRole.ENTRY and order.position_id in self.flights.giving_up:
            await self.cover_late_entry(report)

    def _fill_alerts(self, pos: Position, new: Position, order: Order, fill: Fill) -> list[Alert]:
        """The alerts a fill raises, written in its transaction: TP1, TP2 (the runner arms), flat."""
        make = self.ctx.make_alert
        alerts = []
        if new.tp1_hit and not pos.tp1_hit:
            alerts.append(
                make(AlertKind.TP_FILLED, f"{pos.symbol} TP1 closed {fill.qty} @ {fill.price}", pos.id)
            )
        if new.tp2_hit and not pos.tp2_hit:
            message = f"{pos.symbol} TP2 closed {fill.qty}; the runner trails"
            alerts.append(make(AlertKind.RUNNER_ARMED, message, pos.id))
        if pos.is_active and not new.is_active:
            kind = AlertKind.STOP_FILLED if order.role is OrderRole.STOP else AlertKind.POSITION_CLOSED
            pnl = f"{new.realized_pnl:.4f}"
            message = f"{new.symbol} {new.side} closed ({new.exit_reason}), realized {pnl}"
            alerts.append(make(kind, message, pos.id))
        return alerts

    def _fill(self, order: Order, report: FillReport, qty: Decimal, trade_id: TradeId) -> Fill:
        return Fill(
            trade_id=trade_id,
            client_order_id=order.client_order_id,
            position_id=order.position_id,
            role=order.role,
            symbol=order.symbol,
            side=report.side,
            qty=qty,
            price=report.price,
            fee=report.fee if qty == report.qty else report.fee * qty / report.qty,
            at=report.at,
        )

    async def cover_late_entry(self, report: FillReport) -> None:
        """An entry fill no active position takes is covered before anything is read or written
        (a slow database held its stop back 5 s: chaos 1203:163): a reduce-only stop of the fill's
        size at the plan's distance from its price, under an id no position owns (one per trade,
        `guard_stop`). Adopted (reconciliation, `on_late_entry`), the position gets its own stop
        and this one is cancelled as a stray. Once per trade. A send that failed without a
        refusal (unavailable, unknown outcome) is sent again (`_cover_again`); a cover refused
        (the market already past its trigger) is placed again from the mark (`_cover_from_mark`)."""
        trade = f"{report.symbol}:{report.trade_id}"
        if report.trade_id in self._late_trades or trade in self._covers.trades:
            return
        self._covers.covering(trade)
        ctx = self.ctx
        inst = ctx.instruments.get(report.symbol)
        if inst is None:
            return
        side = Side.parse(report.side)  # an entry's buy is a long
        price = inst.round_price(stop_from(report.price, side, ctx.config.plan.stop_pct))
        qty, installation = inst.round_qty(report.qty), ctx.config.installation_id
        order = guard_stop(COVER, trade, report.symbol, side, qty, price, installation, ctx.clock.now())
        try:
            await self.gw.send(order)
            self._covers.rests(order)
        except (ExchangeUnavailable, ExchangeTimeout) as exc:
            # Not refused: while the database cannot say the fill is warden's, nothing else may
            # cover it (an orphan under orphan_policy=alert is left alone), so it is sent again.
            if isinstance(exc, ExchangeTimeout):
                self.flights.sent_unknown(order.client_order_id)  # a copy may land: a stray waits for it
            log.warning("late_entry_cover_failed", trade_id=report.trade_id, error=str(exc), again=True)
            ctx.tasks.spawn(self._cover_again(order))
        except DuplicateOrder:
            log.info("late_entry_cover_rests", trade_id=report.trade_id)  # an earlier send of it
            self._covers.rests(order)
        except ExchangeError as exc:
            log.warning("late_entry_cover_failed", trade_id=report.trade_id, error=str(exc))
            ctx.tasks.spawn(self._cover_from_mark(order, side, str(exc)))
        except TradingRefused as exc:  # this engine may not act
            log.warning("late_entry_cover_failed", trade_id=report.trade_id, error=str(exc))

    async def _cover_again(self, order: Order) -> None:
        """A cover whose send failed without a refusal: sent again as a stop is (`_place_stop`:
        within a stop's send time, an unknown outcome looked up, a copy resting adopted), in a
        task of its own (the stream that brought the fill waits for no retry). Still unanswered
        (a 429 burst longer than that: chaos 1237:260), it is sent once every half protection
        window, so it rests within that of the exchange answering again: nothing else may cover
        the fill until the database lets reconciliation adopt it. Before each of those sends the
        exchange is asked whether anything still needs it (`_cover_needed`): the adoption may
        have protected or closed the position meanwhile. After a minute the trader is told and
        it goes on every 30 s; after `COVER_HORIZON` it is left, the trader told. A copy resting
        beside the adopted position's own stop is cancelled by the pass after (`_pass_again`)."""
        ctx = self.ctx
        clock = ctx.clock
        started = clock.monotonic()
        within: float | None = None  # the first round: a stop's send time
        told = False
        while True:
            if within is not None and not await self._cover_needed(order):
                log.info("late_entry_cover_not_needed", client_order_id=order.client_order_id)
                return
            try:
                placed = await self._place_stop(order, within)
            except TradingRefused as exc:  # this engine may not act any more
                log.warning("late_entry_cover_failed", client_order_id=order.client_order_id, error=str(exc))
                return
            except ExchangeError as exc:
                placed = Placed(None, str(exc))
            if placed.report is not None:
                self._covers.rests(order)
                await self._pass_again(order)
                return
            log.warning("late_entry_cover_failed", client_order_id=order.client_order_id, error=placed.why)
            if placed.rejected:
                side = Side.LONG if order.side is Side.LONG.exit_side else Side.SHORT  # what it covers
                await self._cover_from_mark(order, side, placed.why)
                return
            waited = clock.monotonic() - started
            what = (
                f"a late entry fill of {order.qty} {order.symbol}: its cover stop"
                f" {order.client_order_id} could not be placed for {waited:.0f} s ({placed.why})"
            )
            if waited >= COVER_HORIZON:
                message = (
                    f"{what}; no longer sent: {order.symbol} may be open without a stop, close it by hand"
                )
                await ctx.notify(AlertKind.PROTECTION_FAILED, message, None)
                return
            if waited >= COVER_STEADY and not told:
                told = True
                message = f"{what}; still sending it: {order.symbol} may be open without a stop, check it"
                await ctx.notify(AlertKind.PROTECTION_FAILED, message, None)
            within = 0.0
            await clock.sleep(ctx.config.protection_window / 2 if waited < COVER_STEADY else 30.0)

    async def _cover_needed(self, cover: Order) -> bool:
        """Whether the side of the symbol a cover would cover is still held on the exchange beyond
        what stops of warden's resting there cover (the position adopted and protected, or
        closed, meanwhile: not); unreadable, yes. The positions are read, not the open orders
        (Binance weighs an account's open orders 40, its positions 5, and the exchange may be
        rate-limiting already); the stops are memory's, which a pass corrects."""
        try:
            held = await self.gw.positions()
        except ExchangeError:
            return True
        exposure = sum(
            (abs(r.qty) for r in held if r.symbol == cover.symbol and r.side.exit_side is cover.side), ZERO
        )
        return exposure > self._resting_stops(cover.symbol, cover.side)

    def _resting_stops(self, symbol: Symbol, side: OrderSide) -> Decimal:
        """What the stops of warden's positions resting on `symbol` that trade `side` have left
        to close (memory's: a pass corrects it)."""
        return sum(
            (
                o.qty - o.filled_qty
                for pid in self.ledger.by_symbol.get(symbol, ())
                for o in self.ledger.live_orders(pid, OrderRole.STOP)
                if o.status is OrderStatus.OPEN and o.side is side
            ),
            ZERO,
        )

    async def _cover_from_mark(self, cover: Order, side: Side, why: str) -> None:
        """A late entry's cover refused (the market already past its trigger, at the plan's
        distance from the fill): placed again at the plan's distance from the mark, as recovery's
        guard is (`guard_stop_price`), and the trader told. Not closed at once: with the database
        up the entry's adoption may be closing it already (its own stop refused the same way), and
        a second reduce-only close would take the same size off another position on the symbol;
        with it down, nothing else covers the entry until it answers. Refused again, it is closed
        at market (`guard_close`) if that cannot be: stacking off and no position of warden's on
        the symbol (a close of an adoption racing it is refused on a flat symbol, and a signal
        there is refused while this close may still land: `InFlight.close_may_land`). Otherwise, or if the
        close fails, the entry is left uncovered and the trader told so."""
        ctx = self.ctx
        inst = ctx.instruments[cover.symbol]
        what = (
            f"a late entry fill of {cover.qty} {cover.symbol}: its cover stop at {cover.trigger_price}"
            f" was refused ({why})"
        )
        try:
            mark = await self.gw.mark_price(cover.symbol)
            price = inst.round_price(stop_from(mark, side, ctx.config.plan.stop_pct))
            again = evolve(cover, trigger_price=price)
            placed = await self._place_stop(again)
        except (ExchangeError, TradingRefused) as exc:
            placed = Placed(None, str(exc))
        if placed.report is None:
            log.warning("late_entry_cover_failed", client_order_id=cover.client_order_id, error=placed.why)
            what = f"{what}, and again from the mark ({placed.why})"
            if not (placed.rejected and self._alone(PositionId(""), cover.symbol)):
                why_not = (
                    "another position of warden's shares the symbol"
                    if placed.rejected
                    else "it may rest yet"
                    if placed.unknown
                    else "the exchange did not answer"
                )
                message = (
                    f"{what}: {cover.symbol} may be open without a stop (not closed blind: {why_not});"
                    " check it, close it by hand"
                )
                await ctx.notify(AlertKind.PROTECTION_FAILED, message, None)
                return
            close = guard_close(cover, ctx.config.installation_id, ctx.clock.now())
            self._closing_blind[close.client_order_id] = False
            try:
                closed = await self.place(close)
            except (ExchangeError, TradingRefused) as exc:
                closed = Placed(None, str(exc))
            if closed.report is not None or self._closing_blind[close.client_order_id]:
                message = f"{what}: closed at market ({close.client_order_id})"
                if closed.report is not None and closed.report.filled_qty > 0:
                    self.ctx.tasks.spawn(self._blind_close_trades(close, closed.report.filled_qty))
            else:
                del self._closing_blind[close.client_order_id]  # landing later, its fill tells
                message = (
                    f"{what}, and its close failed too ({closed.why}): {cover.symbol} may be open without"
                    " a stop; check it, close it by hand"
                )
            await ctx.notify(AlertKind.PROTECTION_FAILED, message, None)
            return
        message = f"{what}; placed again at {again.trigger_price}, the plan's distance from the mark {mark}"
        await ctx.notify(AlertKind.PROTECTION_FAILED, message, None)
        self._covers.rests(again)
        await self._pass_again(again)

    async def _blind_close_trades(self, close: Order, qty: Decimal) -> None:
        """A late entry's close at market answered filled: its trades are read over REST and
        recorded as its stream fills would have them (`attribute_orphan_fill`; a trade the stream
        delivers too is attributed once). Its fills are what records the trade, and a stream gap
        lost them (chaos 1204611195:9103: the trade recorded nowhere, I2). Read again, a pause
        apart, while the exchange's trade history does not show all of `qty` yet."""
        config = self.ctx.config
        since = close.created_at - timedelta(minutes=1)
        for attempt in range(config.lookup_attempts):
            try:
                fills = await self.gw.fills_of(close, since)
            except ExchangeError as exc:
                log.warning(
                    "blind_close_trades_unread", client_order_id=close.client_order_id, error=str(exc)
                )
                fills = []
            for report in fills:
                await self.attribute_orphan_fill(report)
            if sum((f.qty for f in fills), ZERO) >= qty:
                return
            await self.ctx.clock.sleep(config.retry_backoff * (attempt + 1))
        log.warning("blind_close_trades_missing", client_order_id=close.client_order_id, qty=str(qty))

    def _pass_for_covers(self, pos: Position) -> None:
        """`pos` was just protected: a cover resting on its symbol and side has a pass run again,
        which cancels it as a stray now that the position's own stop covers. The pass run once the
        cover rested may have read the exchange just before that stop rested, found the cover the
        only stop, and left it until the timer's next pass (chaos 515872990:4220: the own stop
        rested 5 ms after the cover, both retried through 10 s of 5xx; two reduce-only stops of
        the symbol for 30 s)."""
        beside = [
            cid
            for cid, cover in self._covers.resting.items()
            if cover.symbol == pos.symbol and cover.side is pos.side.exit_side
        ]
        if beside:
            cover = self._covers.resting[beside[0]]
            for cid in beside:
                del self._covers.resting[cid]
            self.ctx.tasks.spawn(self._pass_once_settled(cover))

    async def _pass_once_settled(self, cover: Order) -> None:
        """The pass for a cover beside a position just protected, once no pending order of
        warden's on the symbol may still land: until then a pass leaves the symbol alone (`diff`:
        busy), and the cover with it (chaos 515872990:4220: the closes of the protect-or-close
        rounds before the stop rested had unknown outcomes for 10 s more)."""
        wait = self._unsettled_for(cover.symbol)
        if wait > 0:
            await self.ctx.clock.sleep(wait)
        await self._pass_again(cover)

    def _unsettled_for(self, symbol: Symbol) -> float:
        """Seconds until no pending order of warden's positions on `symbol` may land any more: a
        copy sent with an unknown outcome, or a close not found yet that may still execute."""
        flights, wait = self.flights, 0.0
        for pid in self.ledger.by_symbol.get(symbol, ()):
            for order in self.ledger.live_orders(pid):
                if order.status is OrderStatus.PENDING:
                    wait = max(wait, flights.copies_may_land(order.client_order_id))
                    if order.role is OrderRole.CLOSE:
                        wait = max(wait, flights.may_execute_for(order))
        return wait

    async def _pass_again(self, cover: Order) -> None:
        if self.pass_again is not None:
            # The late entry's pass may have ended before it rested: a fresh one cancels it as a
            # stray if the position's own stop covers the entry by now, else leaves it resting.
            try:
                await self.pass_again()
            except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
                log.warning("cover_pass_failed", client_order_id=cover.client_order_id, error=str(exc))

    async def late_entry(self, position: Position | None, report: FillReport, pid: PositionId) -> None:
        """An entry fill no active position takes (see `on_late_entry`): covered at once
        (`cover_late_entry`), recorded as a trade no position holds is (an event carrying it, of
        the entry's position `pid`), and handed on, once per trade."""
        if report.trade_id in self._late_trades:
            return
        await self.cover_late_entry(report)
        status = position.status if position is not None else "it left memory"
        await self.record_late_trade(report, pid, f"fill {report.trade_id} after {status}")
        if self.on_late_entry is not None:
            self.on_late_entry(position, report)

    async def record_late_trade(self, report: FillReport, pid: PositionId, message: str) -> None:
        """A trade of an entry given up on, which no position's fills hold (the position adopting
        what it opened is sized from the exchange): recorded in an event carrying it, of the
        entry's position `pid`, once per trade (its stream fill, or a pass that read it over REST
        when that fill was lost)."""
        if report.trade_id in self._late_trades:
            return
        await self.ledger.record(
            Event(
                EventKind.RECONCILE,
                self.ctx.clock.now(),
                pid,
                message,
                {
                    "trade_id": report.trade_id,
                    "client_order_id": report.client_order_id,
                    "qty": str(report.qty),
                    "price": str(report.price),
                    "symbol": report.symbol,
                    "role": "entry",
                },
            )
        )
        _keep_newest(self._late_trades, report.trade_id, None)

    async def attribute_orphan_fill(self, report: FillReport) -> None:
        """A fill of an exit order of a position that already finished: it reduced something else."""
        parsed = parse_client_order_id(report.client_order_id)
        if parsed is not None:
            await self.attribute(parsed[0], ClientOrderId(report.client_order_id), report, report.qty)

    async def attribute(
        self, source: PositionId, cid: ClientOrderId, report: FillReport, qty: Decimal
    ) -> None:
        """A reducing fill larger than its own position (a stale exit order): the excess reduced
        the symbol's other positions (one-way mode nets them). Apply it to them, newest first, as
        outside reductions; whatever no position holds is recorded and alerted, never dropped."""
        ctx = self.ctx
        trade = f"{report.symbol}:{report.trade_id}"
        if trade in self._attributed or any(
            TradeId(f"{report.trade_id}:{p.id}") in p.applied_trades
            for p in self.ledger.positions.values()
            if p.symbol == report.symbol
        ):
            # Attributed already: the same trade delivered again (its stream fill, then the
            # lookup of its order), which reduced a second position by it (chaos 1861938148:9523:
            # recorded twice, and that position's stop resized below what it held for 26 s).
            return
        _keep_newest(self._attributed, trade, None)
        left = qty
        candidates = sorted(
            (
                p
                for p in self.ledger.active_positions()
                if p.symbol == report.symbol and p.id != source and p.side.exit_side is report.side
            ),
            key=lambda p: (p.opened_at, p.id),
            reverse=True,
        )
        for other in candidates:
            if left <= 0:
                break
            part = await self._reduce_by_stale_order(other.id, cid, report, left)
            if part <= 0:
                continue
            left -= part
            message = f"{part} of {other.symbol} closed by {cid} ({report.trade_id}), not its own"
            await ctx.notify(AlertKind.FILL_MISMATCH, message, other.id)
            after = self.ledger.positions[other.id]
            ctx.tasks.spawn(self.resize(other.id) if after.is_active else self.cancel_exits(other.id))
        if left > 0:
            told = cid in self._closing_blind  # a late entry's close at market: its alert tells
            if told:
                self._closing_blind[cid] = True
            message = f"{cid} filled {report.qty} ({report.trade_id}); " + (
                "the close at market of a late entry no position of warden's holds"
                if told
                else f"{left} of it fits no open position: reconciliation takes the exchange's size"
            )
            await self.ledger.record(
                Event(
                    EventKind.RECONCILE,
                    ctx.clock.now(),
                    None,
                    message,
                    {"trade_id": report.trade_id, "qty": str(left), "symbol": report.symbol},
                )
            )
            if not told:
                await ctx.notify(AlertKind.FILL_MISMATCH, message, None)

    async def _reduce_by_stale_order(
        self, pid: PositionId, cid: ClientOrderId, report: FillReport, left: Decimal
    ) -> Decimal:
        ctx = self.ctx
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            trade = TradeId(f"{report.trade_id}:{pos.id}")
            if not pos.is_active or pos.remaining <= 0 or trade in pos.applied_trades:
                return ZERO
            part = min(left, pos.remaining)
            fill = Fill(
                trade_id=trade,
                client_order_id=cid,
                position_id=pos.id,
                role=OrderRole.CLOSE,
                symbol=pos.symbol,
                side=report.side,
                qty=part,
                price=report.price,
                fee=report.fee * part / report.qty,
                at=report.at,
            )
            new = pos.apply_fill(fill)
            now = ctx.clock.now()
            events = [
                Event(
                    EventKind.EXIT_FILL,
                    now,
                    pos.id,
                    f"{part} @ {report.price} by {cid} of another position",
                    {"trade_id": trade, "qty": str(part), "price": str(report.price), "role": "close"},
                )
            ]
            if new.remaining <= 0:
                new = new.closed(ExitReason.EXTERNAL, now)
                events.append(
                    Event(EventKind.POSITION_CLOSED, now, pos.id, "closed by another position's stale order")
                )
            await self.ledger.commit(pos, new, fills=[fill], events=events)
            return part

    def _after_fill(
        self, pos: Position, new: Position, order: Order, fill: Fill
    ) -> tuple[Position, list[Event], FollowUp | None]:
        ctx = self.ctx
        now = ctx.clock.now()
        data = {
            "trade_id": fill.trade_id,
            "qty": str(fill.qty),
            "price": str(fill.price),
            "role": order.role.value,
        }
        if order.role is OrderRole.ENTRY:
            if new.status is PositionStatus.OPENING:
                new = new.transition(PositionStatus.OPEN)
            # A fill no saga of this process watched (it happened while warden was down) was
            # uncovered from the exchange's fill time, not from when this process learned of it.
            # A saga sees its fill at once: its own clock, untouched by the exchange's skew.
            ago = 0.0 if pos.id in ctx.sagas else max(0.0, (now - fill.at).total_seconds())
            self.exposed_from(pos.id, ctx.clock.monotonic() - ago)
            follow: FollowUp | None
            if pos.status is PositionStatus.OPENING:
                # No saga waits for this fill (e.g. it arrived after a restart): protect now.
                follow = None if pos.id in ctx.sagas else self.protect
            else:
                follow = self.resize  # a later partial fill of a working entry: re-size the exits
            return (
                new,
                [Event(EventKind.ENTRY_FILLED, now, pos.id, f"{fill.qty} @ {fill.price}", data)],
                follow,
            )
        events = [Event(EventKind.EXIT_FILL, now, pos.id, f"{order.role} {fill.qty} @ {fill.price}", data)]
        if new.tp1_hit and not pos.tp1_hit:
            events.append(Event(EventKind.TP1_HIT, now, pos.id, f"TP1 closed {fill.qty}"))
        if new.tp2_hit and not pos.tp2_hit:
            events.append(Event(EventKind.TP2_HIT, now, pos.id, f"TP2 closed {fill.qty}"))
            events.append(Event(EventKind.TRAILING_ARMED, now, pos.id, "runner trails from here"))
        if new.remaining <= 0:
            reason = self._exit_reason(pos, order)
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
            # A close() in progress (the position closing) cancels the exits itself once it sees
            # the position flat. A close that lands after it was given up on (the position back
            # to protected) has none: its exits are cancelled here (chaos 1204611195:8287).
            closing = order.role is OrderRole.CLOSE and pos.status is PositionStatus.CLOSING
            return new, events, None if closing else self.cancel_exits
        if order.role in (OrderRole.TP1, OrderRole.TP2) and new.status is not PositionStatus.CLOSING:
            return new, events, self.resize
        return new, events, None

    def _exit_reason(self, pos: Position, order: Order) -> str:
        """Why a position went flat: a close keeps the reason it was asked with (the position's
        while it is closing), else the one it was sent for, stored with it (a close given up on,
        or sent when a stop was refused, landing later or after a restart); a stop is a trailing
        stop only if trailing actually moved it past the entry (the original or break-even stop
        filling after TP2 is a plain stop)."""
        if order.role is OrderRole.CLOSE:
            return pos.exit_reason or order.reason or ExitReason.MANUAL
        if order.role is OrderRole.STOP:
            trailed = (
                pos.trailing_active
                and order.trigger_price is not None
                and pos.entry_price is not None
                and (order.trigger_price - pos.entry_price) * pos.side.sign > 0
            )
            return ExitReason.TRAILING_STOP if trailed else ExitReason.STOP
        return pos.exit_reason_for(order.role).value

    @staticmethod
    def _filled(order: Order, fill: Fill) -> Order:
        total = order.filled_qty + fill.qty
        avg = ((order.avg_price or Decimal(0)) * order.filled_qty + fill.price * fill.qty) / total
        status = OrderStatus.FILLED if total >= order.qty else OrderStatus.OPEN
        if order.status is OrderStatus.PENDING and status is OrderStatus.OPEN:
            status = OrderStatus.OPEN
        return order.advance(status, filled_qty=total, avg_price=avg)

    async def catch_up(self, pid: PositionId, cids: set[ClientOrderId] | None = None) -> list[FillReport]:
        """Read the symbol's fills since the position opened and apply those of its orders (all
        known orders when `cids` is None); returns every fill read. Raises if the exchange fails."""
        position = self.ledger.positions[pid]
        since = position.opened_at - timedelta(minutes=1)
        fills = await self.gw.fills(position.symbol, since)
        if cids is None:
            await self._adopt_traded(pid, fills)
        for report in fills:
            cid = ClientOrderId(report.client_order_id)
            order = self.ledger.orders.get(cid)
            if order is not None and (cids is None or cid in cids):
                await self.apply_fill(order, report)
        return fills

    def unrecorded(self, pid: PositionId, cids: Iterable[str]) -> list[tuple[ClientOrderId, ParsedClientId]]:
        """The ids among `cids` of this installation's orders for `pid` that memory does not know."""
        installation = self.ctx.config.installation_id
        out = []
        for cid in dict.fromkeys(cids):
            parsed = parse_client_id(cid)
            if (
                parsed is not None
                and parsed.position_id == pid
                and cid not in self.ledger.orders
                and ours(cid, installation)
            ):
                out.append((ClientOrderId(cid), parsed))
        return out

    async def adopt(self, pid: PositionId, orders: list[Order], seqs: list[int], what: str) -> None:
        """Record orders of ours the database never did (sent while it was locked, then the process
        died before the queued writes landed), with one event, and move the position's exit
        sequence past them so that no id the exchange has seen is staged again."""
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            names = ", ".join(sorted(o.client_order_id for o in orders))
            event = Event(
                EventKind.RECONCILE,
                self.ctx.clock.now(),
                pid,
                f"adopted {len(orders)} order(s) of ours {what} that the database had not recorded: {names}",
            )
            staged = evolve(pos, stop_seq=max([pos.stop_seq, *seqs]))
            await self.ledger.commit(pos, staged, orders=orders, events=[event])

    async def _adopt_traded(self, pid: PositionId, fills: list[FillReport]) -> None:
        """Orders of this position that traded but were never recorded: adopted from their trades,
        so that each trade is applied as what it was, not replaced by a synthetic fill."""
        found = self.unrecorded(pid, (r.client_order_id for r in fills))
        if not found:
            return
        orders = []
        for cid, parsed in found:
            reports = [r for r in fills if r.client_order_id == cid]
            orders.append(
                Order(
                    client_order_id=cid,
                    position_id=pid,
                    role=parsed.role,
                    symbol=reports[0].symbol,
                    side=reports[0].side,
                    type=ROLE_TYPES[parsed.role],
                    qty=sum((r.qty for r in reports), ZERO),
                    trigger_price=None,
                    reduce_only=parsed.role is not OrderRole.ENTRY,
                    status=OrderStatus.OPEN,
                    created_at=reports[0].at,
                    exchange_order_id=reports[0].exchange_order_id,
                    reason=ExitReason.UNRECORDED_CLOSE if parsed.role is OrderRole.CLOSE else None,
                )
            )
        await self.adopt(pid, orders, [p.seq for _, p in found if p.role in EXIT_ROLES], "that traded")

    async def fetch_fills_for(self, pid: PositionId, cids: set[ClientOrderId]) -> None:
        """Apply fills of these orders the stream missed; a failed query is retried by whoever asks again."""
        with contextlib.suppress(ExchangeError):
            await self.catch_up(pid, cids)

    def applied(self, cid: ClientOrderId) -> Decimal:
        order = self.ledger.orders.get(cid)
        return order.filled_qty if order else ZERO

    async def wait_for_fills(self, pid: PositionId, cid: ClientOrderId, qty: Decimal, seconds: float) -> None:
        """Wait up to `seconds` for `qty` of order `cid` to be applied (the stream usually brings
        it); then read REST fills for whatever is still missing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        seen = self.ctx.seen[pid]
        while self.applied(cid) < qty and loop.time() < deadline:
            seen.clear()
            if self.applied(cid) >= qty:
                break
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await seen.wait()
            except TimeoutError:
                break
        if self.applied(cid) < qty:
            await self.fetch_fills_for(pid, {cid})

    async def work_order(
        self,
        order: Order,
        report: OrderReport | None,
        seconds: float,
        until: Callable[[], bool] | None = None,
    ) -> OrderReport | None:
        """An order acknowledged but not (fully) filled is *working*: wait for its fills up to
        `seconds` (stream, lookups, REST fills), or until `until()` says to stop waiting (asked
        whenever an event of its position wakes the wait); returns the newest report, None if
        never seen."""
        ctx = self.ctx
        pid, cid = order.position_id, order.client_order_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pause = ctx.config.retry_backoff
        while True:
            if report is not None and report.status.terminal:
                if report.filled_qty > self.applied(cid):
                    await self.wait_for_fills(pid, cid, report.filled_qty, ctx.config.fill_wait)
                return report
            left = deadline - loop.time()
            if left <= 0 or (until is not None and until()):
                return report
            seen = ctx.seen[pid]
            seen.clear()
            try:
                async with asyncio.timeout(min(left, max(pause, 0.05))):
                    await seen.wait()
            except TimeoutError:
                pass
            # Looked up at least every quarter protection window: a part that fills while the
            # stream loses its events (a gap, a disconnect) is seen in time to be covered
            # (chaos 1237828254:1849: lookups spaced out to 2 s, 2.5 s uncovered).
            pause = min(pause * 2, ctx.config.protection_window / 4)
            current = self.ledger.orders.get(cid)
            if current is not None and current.status.terminal and current.filled_qty >= current.qty:
                return report
            found = await self.gw.lookup(order, attempts=1)
            if isinstance(found, Found):
                report = found.report
                if report.filled_qty > self.applied(cid):
                    # The lookup saw fills the stream has not brought: an entry's first part is
                    # covered from this answer at once (its stop sent on it, as on a fill), and
                    # the fills are read over REST now, not after another wait for the stream;
                    # applied, each later part grows the stop (chaos 1237828254:1849, :919: the
                    # first part of a working entry went uncovered until the entry ended).
                    if order.role is OrderRole.ENTRY:
                        self.send_stop_early(pid, report)
                    await self.fetch_fills_for(pid, {cid})

    async def on_order_report(self, order: Order, report: OrderReport) -> None:
        work = self._report_work(order, report)
        if work is not None:
            await work

    def report_now(self, order: Order, report: OrderReport) -> bool:
        """Act on an order's report at once if it needs only memory (most do: an order
        acknowledged, a fill the stream tells again): True when done. False: it must wait (a lock,
        a write, a send), nothing was done, and `on_order_report` decides it again when it runs."""
        work = self._report_work(order, report)
        if work is None:
            return True
        work.close()  # never started
        return False

    def _report_work(self, order: Order, report: OrderReport) -> Coroutine[Any, Any, None] | None:
        """Act on an order's report: what needs only memory is done now and None returned; what
        must wait is returned, to be awaited at once."""
        cid = order.client_order_id
        # The record as it is now, not as it was when the event was routed: a late "new" must
        # not write a stale copy (pending, nothing filled) over fills applied meanwhile.
        order = self.ledger.orders.get(cid, order)
        if report.status in (OrderStatus.CANCELED, OrderStatus.REJECTED):
            if (
                cid in self._cancelling
                or not order.status.live
                or cid in self._covers.cut.get(order.position_id, ())
            ):
                return None  # ours (a cancel, a cut), or ended already
            position = self.ledger.positions.get(order.position_id)
            if position is not None and not position.is_active:
                return self._ended_with_position(order, report)
            if order.role in EXIT_ROLES:
                return self._exit_vanished(order, report)
        elif report.status is OrderStatus.OPEN and order.status is OrderStatus.PENDING:
            self.ledger.note_order(
                order.advance(OrderStatus.OPEN, exchange_order_id=report.exchange_order_id)
            )
        elif (
            report.status is OrderStatus.OPEN
            and order.status is OrderStatus.REJECTED
            and order.role is OrderRole.STOP
            and cid not in self._cancelling
        ):
            return self.landed_late(order, report)
        elif (
            report.status is OrderStatus.OPEN and order.status is OrderStatus.CANCELED and cid in self._sweeps
        ):
            return self._cancel_landed_copy(order)
        elif report.status is OrderStatus.FILLED and report.filled_qty > order.filled_qty:
            if order.role is OrderRole.ENTRY:
                self.send_stop_early(order.position_id, report)  # before any fill is written
            self.ctx.tasks.spawn(
                self.wait_for_fills(order.position_id, cid, report.filled_qty, self.ctx.config.fill_wait)
            )
        return None

    async def landed_late(self, order: Order, report: OrderReport) -> None:
        """A stop warden gave up on (its sends' outcome unknown and its lookups found nothing, so
        it was recorded refused) that the exchange executed after all: it rests. If it is of the
        position's size, at least as tight as the stop the position wants and tighter than the
        one resting (or none rests), the move it was sent for has happened: it is the stop now
        (its price recorded, older stops cancelled as superseded), and no further move piles
        another one beside it. Anything else is a stray (`_stray`)."""
        ctx = self.ctx
        pid = order.position_id
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            current = self.ledger.orders.get(order.client_order_id)
            if pos is None or current is None or current.status is not OrderStatus.REJECTED:
                return
            # It was sent with an unknown outcome: by the process before this one, copies of it
            # may be in flight still that this one cannot know of (its own are counted already).
            self.flights.copies_of_the_dead(current.client_order_id, current.created_at)
            price = current.trigger_price
            stray = current if self._stray(pos, current) else None
            if stray is None and price is not None:  # `_stray`: it has a price
                landed = current.with_status(OrderStatus.OPEN, exchange_order_id=report.exchange_order_id)
                new = evolve(pos, stop_price=price)
                if new.status is PositionStatus.OPEN:
                    new = new.transition(PositionStatus.PROTECTED)
                    self._exposed_since.pop(pid, None)  # covered again: a later stop's time starts anew
                message = (
                    f"stop {pos.stop_price} -> {price} for {current.qty}: "
                    f"{current.client_order_id}, given up on, landed late"
                )
                data = {"from": str(pos.stop_price), "to": str(price), "qty": str(current.qty)}
                event = Event(EventKind.STOP_MOVED, ctx.clock.now(), pid, message, data)
                await self.ledger.commit(pos, new, orders=[landed], events=[event])
        if stray is None:
            await self.cancel_superseded_stops(pid)
        elif self.ctx.config.allow_stacking and self.flights.only_copy(stray.client_order_id):
            await self._cancel_landed_copy(stray)

    def _stray(self, pos: Position, landed: Order) -> bool:
        """Whether a stop given up on that landed late is not the stop the position wants now: not
        a stop of its size at least as tight as its target and tighter than the one resting (or
        none rests). A stray is left to reconciliation, not cancelled: its id would be free for a
        copy still in flight. Unless, with stacking, it is the only copy that can land (a move
        sent once: `flights.only_copy`): then it is cancelled on sight, not left resting beside
        the stop that replaced it (two stops of one position could close what another holds)."""
        price = landed.trigger_price
        if (
            landed.role is not OrderRole.STOP
            or pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED)
            or landed.qty != pos.remaining
            or price is None
            or tighter(pos.side, price, self._stop_target(pos)) != price
        ):
            return True
        resting = self.ledger.current_stop(pos.id)
        return (
            resting is not None
            and resting.status is OrderStatus.OPEN
            and resting.qty == pos.remaining
            and resting.trigger_price is not None
            and tighter(pos.side, price, resting.trigger_price) == resting.trigger_price
        )

    async def _ended_with_position(self, order: Order, report: OrderReport) -> None:
        """An order of a position that has ended, cancelled on the exchange (a reduce-only close
        that expired with nothing left to reduce, a take-profit the exchange took down): recorded
        so (chaos 1266763949:2840: closes landing late after the first one's fill flattened the
        position expired there, and memory and the database believed they rested). Nothing is
        placed for it: the position is over."""
        pid = order.position_id
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            current = self.ledger.orders.get(order.client_order_id)
            if pos is None or pos.is_active or current is None or not current.status.live:
                return
            await self.ledger.commit(pos, pos, orders=[current.advance(report.status)])

    async def _exit_vanished(self, order: Order, report: OrderReport) -> None:
        """An exit order was cancelled by someone else: re-place it (the stop at once)."""
        ctx = self.ctx
        pid = order.position_id
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            if pos is None:
                return
            current = self.ledger.orders[order.client_order_id]
            if not current.status.live or not pos.is_active:
                return
            was_stop = current.role is OrderRole.STOP and self.ledger.current_stop(pid) == current
            new = pos
            events = [
                Event(
                    EventKind.PROTECTION_LOST,
                    ctx.clock.now(),
                    pid,
                    f"{order.role} {report.status} outside warden",
                )
            ]
            if was_stop and pos.status is PositionStatus.PROTECTED and pos.remaining > 0:
                new = pos.transition(PositionStatus.OPEN)
                self._exposed_since[pid] = ctx.clock.monotonic()
            await self.ledger.commit(pos, new, orders=[current.advance(report.status)], events=events)
        if new.is_active and new.remaining > 0 and new.status is not PositionStatus.CLOSING:
            if was_stop:
                await ctx.notify(
                    AlertKind.STOP_REMOVED, "stop removed outside warden: re-placing it now", pid
                )
            ctx.tasks.spawn(self.protect(pid))

    # ------------------------------------------------------------ stop moves

    def on_mark(self, symbol: Symbol, price: Decimal) -> None:
        """A mark price: a few comparisons, unless a threshold is crossed (domain/ticks.py)."""
        decisions = self.index.on_mark(symbol, price)
        bounds = self._arming.get(symbol)
        if bounds is None:
            bounds = self._arming[symbol] = self._arming_bounds(symbol)
        if price >= bounds[0] or price <= bounds[1]:
            self._arming[symbol] = (NEVER_UP, NEVER_DOWN)
            self.ctx.tasks.spawn(self.arm_levels(symbol, price))
        if not decisions:
            return
        for decision in decisions:
            pid = decision.position_id
            if pid in self._moving:
                self._rerun.add(pid)
            else:
                self._moving.add(pid)  # reserved here; move_stop takes it over
                self.ctx.tasks.spawn(self.move_stop(pid, decision.stop_price, reserved=True))

    def _arming_bounds(self, symbol: Symbol) -> tuple[Decimal, Decimal]:
        """Prices at which a take-profit too small to place (quantity rounded to zero) counts as
        reached: TP1 then is "hit" with nothing to close, TP2 arms the runner all the same."""
        up, down = NEVER_UP, NEVER_DOWN
        for pid in self.ledger.by_symbol.get(symbol, ()):
            pos = self.ledger.positions[pid]
            for level in _unplaced_levels(pos):
                if pos.side.sign > 0:
                    up = min(up, level)
                else:
                    down = max(down, level)
        return up, down

    async def arm_levels(self, symbol: Symbol, price: Decimal) -> None:
        ctx = self.ctx
        for pid in list(self.ledger.by_symbol.get(symbol, ())):
            async with self._lock(pid):
                pos = self.ledger.positions.get(pid)
                if pos is None or pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED):
                    continue
                new, events = pos, []
                now = ctx.clock.now()
                for role, level in _unplaced_roles(pos):
                    if (price - level) * pos.side.sign < 0:
                        continue
                    if role is OrderRole.TP1:
                        new = evolve(new, tp1_hit=True)
                        events.append(
                            Event(EventKind.TP1_HIT, now, pid, f"TP1 level {level} passed (nothing to close)")
                        )
                    else:
                        # TP1 counts as hit here only if it has nothing to close: a TP1 order of
                        # its own is left to fill (it may have fired and still be executing), not
                        # cancelled by the resize as no longer wanted.
                        tp1_hit = new.tp1_hit or new.tp1_qty == 0
                        new = evolve(new, tp1_hit=tp1_hit, tp2_hit=True, trailing_active=True)
                        events.append(
                            Event(
                                EventKind.TRAILING_ARMED,
                                now,
                                pid,
                                f"TP2 level {level} passed: the runner trails",
                            )
                        )
                if new is pos:
                    continue
                new = new.mark(price)
                await self.ledger.commit(pos, new, events=events)
            if new.trailing_active and not pos.trailing_active:
                await ctx.notify(
                    AlertKind.RUNNER_ARMED, f"{pos.symbol}: TP2 level passed, the runner trails", pid
                )
            ctx.tasks.spawn(self.resize(pid))
        self._arming.pop(symbol, None)

    async def flush_watermarks(self) -> None:
        """Persist peak/trough, MAE/MFE and last price of the positions whose marks moved, in one write."""
        ledger = self.ledger
        moved = []
        symbols = self.index.materialize_all() | self._unsaved_marks
        self._unsaved_marks = set()
        for symbol in symbols:
            for pid in ledger.by_symbol.get(symbol, ()):
                pos = ledger.positions[pid]
                marks = (pos.watermark, pos.mae, pos.mfe, pos.last_price)
                if self._persisted_marks.get(pid) != marks:
                    moved.append(pos)
        if not moved:
            return
        if ledger.degraded or self.ctx.gate.standing_down:
            self._unsaved_marks = {p.symbol for p in moved}  # a later flush writes them
            return
        try:
            await ledger.store.save_marks(moved)
        except StoreUnavailable:
            self._unsaved_marks |= {p.symbol for p in moved}  # the next flush writes them
            return
        for pos in moved:
            self._persisted_marks[pos.id] = (pos.watermark, pos.mae, pos.mfe, pos.last_price)

    async def resize(self, pid: PositionId) -> None:
        """After any size change: the stop to what remains, then each take-profit to the plan."""
        await self.move_stop(pid)
        await self.resize_take_profits(pid)

    async def resize_take_profits(self, pid: PositionId) -> None:
        """Take-profits re-sized to what remains (cancel first: they are not protection, and two
        reduce-only orders must never together exceed the position)."""
        ctx = self.ctx
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            if pos is None or pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED):
                return
            wrong = [
                o
                for o in self.ledger.live_orders(pid)
                if o.role in (OrderRole.TP1, OrderRole.TP2) and not self._tp_as_planned(pos, o)
            ]
        if not wrong:
            return
        cancelled = await asyncio.gather(*(self.cancel(o) for o in wrong))
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            ended = not pos.is_active
            cancelled = self._as_now(cancelled)
            if ended:
                await self.ledger.commit(pos, pos, orders=cancelled)
            else:
                seq = pos.stop_seq + 1
                staged = evolve(pos, stop_seq=seq)
                intents = [
                    self._exit_intent(staged, o.role, seq)
                    for o in wrong
                    if o.status is not OrderStatus.FILLED
                ]
                intents = [o for o in intents if o.qty > 0]
                event = Event(
                    EventKind.EXIT_ORDER_PLACED,
                    ctx.clock.now(),
                    pid,
                    "take-profits re-sized: " + ", ".join(f"{o.role} {o.qty}" for o in intents),
                )
                await self.ledger.commit(pos, staged, orders=[*cancelled, *intents], events=[event])
        for order in cancelled:
            self._cancelling.discard(order.client_order_id)
        if ended:
            # Its stop filled meanwhile: the fill's cancel of the exits left these to this cancel
            # (being cancelled), which may have failed (every attempt refused): cancelled again,
            # now that they are off the list that every cancel of exits skips.
            await self.cancel_exits(pid)
            return
        results = await asyncio.gather(*(self.place(o) for o in intents))
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            updates = [
                self.ledger.orders[o.client_order_id].advance(
                    r.report.status, exchange_order_id=r.report.exchange_order_id
                )
                if r.report is not None
                else self.ledger.orders[o.client_order_id].advance(OrderStatus.REJECTED)
                for o, r in zip(intents, results, strict=True)
                if r.report is not None or not r.unknown
            ]
            if updates:
                await self.ledger.commit(pos, pos, orders=updates)

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
                refused = await self._move_stop(pid, target)
                target = None
                if refused or (pid not in self._rerun and not self._wants_trail(pid)):
                    break  # a refused move is not re-run at once: the next mark tries again
        finally:
            self._moving.discard(pid)
            idle = self._stop_idle.pop(pid, None)
            if idle is not None:
                idle.set()

    async def stop_idle(self, pid: PositionId) -> None:
        """Return once no stop move of the position is running. A move with a price of its own (a
        PATCH) waits here: asked for while another runs, it would be folded into that one without
        its price. Nothing is awaited after the last look, so a move_stop called right after
        returning runs itself. With stacking, it also waits while the stop is still being sent
        or copies of it may land: the move would wait for that (`_move_waits`) and leave the price
        asked for behind, refused."""
        while True:
            if pid in self._moving:
                await self._stop_idle.setdefault(pid, asyncio.Event()).wait()
            elif (wait := self._stop_unsettled(pid)) > 0:
                await self.ctx.clock.sleep(wait)
            else:
                return

    def _stop_unsettled(self, pid: PositionId) -> float:
        """Seconds to wait before the current stop of `pid` may be moved over (`_move_waits`);
        0: now (always, without stacking)."""
        if not self.ctx.config.allow_stacking:
            return 0.0  # no lookup on a move's path
        stop = self.ledger.current_stop(pid)
        return 0.0 if stop is None else self._unsettled(stop.client_order_id)

    def _unsettled(self, cid: ClientOrderId) -> float:
        """Seconds until the order is no longer being sent and no copy of it can land; 0: now."""
        return max(self.flights.copies_may_land(cid), MOVE_WAIT_STEP if self.flights.sending(cid) else 0.0)

    def _wants_trail(self, pid: PositionId) -> bool:
        pos = self.ledger.positions.get(pid)
        if pos is None or not pos.is_active or pos.status is PositionStatus.CLOSING:
            return False
        return pos.trailing_target(self.ctx.instruments[pos.symbol]) is not None

    def _stop_target(self, pos: Position, target: Decimal | None = None) -> Decimal:
        """Where the stop belongs: its price, tightened to `target`, break-even and the trail."""
        inst = self.ctx.instruments[pos.symbol]
        assert pos.stop_price is not None
        price = inst.stop_on_tick(pos.side, pos.stop_price)
        for candidate in (target, pos.breakeven_target(), pos.trailing_target(inst)):
            if candidate is not None:
                price = tighter(pos.side, price, inst.round_price(candidate))
        return price

    def in_order(self, pid: PositionId) -> bool:
        """Protected, and every exit rests as the position wants it: one stop of its size at its
        target, each take-profit of its size at its price, nothing missing. Then neither a
        resize nor protect has anything to do (recovery skips them: 10,000 positions found in
        order at startup are the common case)."""
        pos = self.ledger.positions[pid]
        if pos.status is not PositionStatus.PROTECTED or pos.remaining <= 0 or pos.stop_price is None:
            return False
        live = self.ledger.live_orders(pid)
        stops = [o for o in live if o.role is OrderRole.STOP]
        if len(stops) != 1 or stops[0].status is not OrderStatus.OPEN or self._missing_exits(pos):
            return False
        self.index.materialize(pos.symbol)
        pos = self.ledger.positions[pid]
        if stops[0].qty != pos.remaining or stops[0].trigger_price != self._stop_target(pos):
            return False
        return all(
            o.status is OrderStatus.OPEN and self._tp_as_planned(pos, o)
            for o in live
            if o.role in (OrderRole.TP1, OrderRole.TP2)
        )

    def _tp_as_planned(self, pos: Position, order: Order) -> bool:
        """A take-profit of the size and at the price the position wants now."""
        return order.qty == self._tp_qty(pos, order.role) and order.trigger_price == self._tp_price(
            pos, order.role
        )

    async def _move_stop(self, pid: PositionId, target: Decimal | None) -> bool:
        """One move; True if the exchange refused it (or its outcome is unknown)."""
        ctx = self.ctx
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            if pos is None or pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED):
                return False
            if pos.remaining <= 0:
                return False
            self.index.materialize(pos.symbol)
            pos = self.ledger.positions[pid]
            old = self.ledger.current_stop(pid)
            if old is None or pos.stop_price is None:
                # No stop at all, or the position not priced yet (a working entry's later part
                # grew it before the saga protects the whole, the first part resting on the stop
                # sent on its fill; chaos 2026:75): protect() prices it, places whatever is
                # missing and adopts that stop, then grows it to the position.
                ctx.tasks.spawn(self.protect(pid))
                return False
            price = self._stop_target(pos, target)
            if old.qty == pos.remaining and old.trigger_price == price:
                return False
            if self._move_waits(old, pos.remaining):
                return True
            seq = pos.stop_seq + 1
            staged = evolve(pos, stop_seq=seq)
            intent = make_intent(
                ctx, staged, OrderRole.STOP, seq, OrderType.STOP_MARKET, pos.remaining, price
            )
            await self.ledger.commit(pos, staged, orders=[intent])
        placed = await self.place(intent)
        if placed.report is None:
            await self._move_refused(pid, intent, old, placed)
            return True
        report = placed.report
        self._refusals.pop(("move", pid), None)
        if not self.ledger.positions[pid].is_active:
            # The position closed while the new stop was on its way (its old stop fired): the
            # new one protects nothing; take it off at once instead of leaving it to reconcile.
            gone = await self.cancel(self.ledger.orders[intent.client_order_id])
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                await self.ledger.commit(pos, pos, orders=self._as_now([gone]))
            self._cancelling.discard(gone.client_order_id)
            return False
        cancelled = await self._cancel_superseded(old)
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            done = self.ledger.orders[intent.client_order_id].advance(
                report.status, exchange_order_id=report.exchange_order_id
            )
            orders = [done] + (self._as_now([cancelled]) if cancelled is not None else [])
            new = evolve(pos, stop_price=self._moved_to(pos, price)) if pos.is_active else pos
            lost = self._stopless_after(pid, orders) and new.is_active and new.remaining > 0
            if lost:
                # The new stop was cancelled by hand while the old one was being cancelled: none
                # rests. Unprotected from now, and protect places one at once.
                if new.status is PositionStatus.PROTECTED:
                    new = new.transition(PositionStatus.OPEN)
                self.exposed_from(pid, ctx.clock.monotonic())
            elif new.status is PositionStatus.OPEN and new.remaining > 0:
                new = new.transition(PositionStatus.PROTECTED)
                self._exposed_since.pop(pid, None)  # covered again: a later stop's time starts anew
            event = Event(
                EventKind.STOP_MOVED,
                ctx.clock.now(),
                pid,
                f"stop {old.trigger_price} -> {price} for {intent.qty}",
                {"from": str(old.trigger_price), "to": str(price), "qty": str(intent.qty)},
            )
            await self.ledger.commit(pos, new, orders=orders, events=[event])
        await self._after_move(pid, cancelled, lost=lost, grew=intent.qty > old.qty and new.is_active)
        return False

    async def _after_move(self, pid: PositionId, cancelled: Order | None, *, lost: bool, grew: bool) -> None:
        if cancelled is not None:
            self._cancelling.discard(cancelled.client_order_id)
        # A stop whose move's outcome stayed unknown may rest beside the old one (or have become
        # the old one once the stream showed it resting): every stop older than this one goes,
        # not only the one it replaced.
        await self.cancel_superseded_stops(pid)
        if lost:
            message = "stop removed outside warden: re-placing it now"
            await self.ctx.notify(AlertKind.STOP_REMOVED, message, pid)
            self.ctx.tasks.spawn(self.protect(pid))
        elif grew:  # a part's own stop (`watch_part`) is a stray now
            self._pass_for_covers(self.ledger.positions[pid])

    def _moved_to(self, pos: Position, price: Decimal) -> Decimal:
        """The stop price a move whose stop rests at `price` leaves the position with. A tighter
        one taken while it was on its way (a move given up on that landed late) is not written
        over (a stop never loosens): the move goes round again to that price."""
        if pos.stop_price is None or tighter(pos.side, pos.stop_price, price) == price:
            return price
        self._rerun.add(pos.id)
        return pos.stop_price

    def _stopless_after(self, pid: PositionId, updates: Sequence[Order]) -> bool:
        """Whether no stop of the position would be live once `updates` are recorded."""
        changed = {o.client_order_id: o for o in updates}
        return not any(
            changed.get(o.client_order_id, o).status.live
            for o in self.ledger.live_orders(pid, OrderRole.STOP)
        )

    async def _move_refused(self, pid: PositionId, intent: Order, old: Order | None, placed: Placed) -> None:
        """A stop move that did not rest. A refusal is final; the old stop keeps protecting.
        If the market is already through the wanted price (a trailing stop that would trigger at
        once), the runner is closed at market now instead of giving back the move."""
        ctx = self.ctx
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            orders = (
                []
                if placed.unknown
                else [self.ledger.orders[intent.client_order_id].advance(OrderStatus.REJECTED)]
            )
            # A position that ended while its move was on the way (its old stop fired) lost no
            # protection: the refusal is recorded on the order, not as a protection failure.
            ended = not pos.is_active or pos.remaining <= 0
            events = (
                []
                if ended
                else [
                    Event(
                        EventKind.PROTECTION_FAILED, ctx.clock.now(), pid, f"stop move failed: {placed.why}"
                    )
                ]
            )
            await self.ledger.commit(pos, pos, orders=orders, events=events)
        if ended:
            self._refusals.pop(("move", pid), None)
            return
        mark = await self._mark(pos.symbol)
        through = (
            mark is not None
            and intent.trigger_price is not None
            and ((intent.trigger_price - mark) * pos.side.sign >= 0)
        )
        if placed.rejected and through:
            message = (
                f"{pos.symbol} stop {intent.trigger_price} is already through the market ({mark}): "
                f"closing the {pos.remaining} at market"
            )
            await ctx.notify(AlertKind.RUNNER_CLOSED, message, pid)
            await self.close(pid, ExitReason.TRAILING_STOP if pos.trailing_active else ExitReason.STOP)
            return
        # Every mark tries the move again (each refusal is an event).
        await self._tell_refused(
            "move", pid, lambda again: f"stop move refused{again} ({placed.why}); the old stop stays"
        )
        if old is None:
            ctx.tasks.spawn(self.protect(pid))
        elif old.qty != pos.remaining and old.trigger_price is not None and placed.rejected:
            # Keep the old price, but the size must still match what remains.
            await self._resize_only(pid, old)
        elif old.qty != pos.remaining:
            # Its outcome is unknown (sends and lookups failed): try again shortly, not at the
            # next reconciliation; the stop must fit what remains once orders go through. A
            # position grown past its stop does not wait for that: what the stop does not cover
            # is closed now (the bigger stop, should it land after all, covers what is left).
            if old.qty < pos.remaining:
                await self._trim_to_stop(pid, old, placed.why)
            ctx.tasks.spawn(self._move_again(pid))

    async def _move_again(self, pid: PositionId) -> None:
        rounds = self._refused[pid] = self._refused.get(pid, 0) + 1
        config = self.ctx.config
        await self.ctx.clock.sleep(min(config.protection_window / 2, config.retry_backoff * 2**rounds))
        await self.move_stop(pid)

    async def _resize_only(self, pid: PositionId, old: Order) -> None:
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            if pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED) or pos.remaining <= 0:
                return
            seq = pos.stop_seq + 1
            staged = evolve(pos, stop_seq=seq)
            intent = make_intent(
                self.ctx, staged, OrderRole.STOP, seq, OrderType.STOP_MARKET, pos.remaining, old.trigger_price
            )
            await self.ledger.commit(pos, staged, orders=[intent])
        placed = await self.place(intent)
        if placed.report is None:
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                orders = (
                    []
                    if placed.unknown
                    else [self.ledger.orders[intent.client_order_id].advance(OrderStatus.REJECTED)]
                )
                await self.ledger.commit(pos, pos, orders=orders)
            if placed.definitely_not_placed:
                await self._trim_to_stop(pid, old, placed.why)
            return
        cancelled = await self.cancel(old)
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            done = self.ledger.orders[intent.client_order_id].advance(
                placed.report.status, exchange_order_id=placed.report.exchange_order_id
            )
            event = Event(EventKind.STOP_MOVED, self.ctx.clock.now(), pid, f"stop resized to {intent.qty}")
            await self.ledger.commit(pos, pos, orders=[done, *self._as_now([cancelled])], events=[event])
        self._cancelling.discard(cancelled.client_order_id)

    async def _trim_to_stop(self, pid: PositionId, stop: Order, why: str) -> None:
        """The position's stop could not grow to what the position holds (an outside add, or a
        late entry's fill taken as growth, while the exchange refuses stops): what the resting
        stop does not cover is closed at market now, reduce-only, and the rest stays as it was,
        covered (DESIGN.md I1: a stop for the full size, or being closed). Not while a close of
        the position is live or on its way: that one settles what remains.

        The exchange is the judge of what is uncovered: its holding on the symbol and side is
        read first, and nothing is closed unless memory's positions there add up to it, none of
        them closing (chaos test 1090242307:2371: a pass that read the exchange just before a
        close of another position filled took the late entry for this position's growth too;
        trimmed on that, warden closed what the stop covered, and the exchange went flat)."""
        ctx = self.ctx
        if self._excess_over(pid, stop) <= 0:
            return  # nothing to trim: the exchange is not asked
        try:
            held = [r for r in await self.gw.positions() if r.symbol == stop.symbol]
        except ExchangeError:
            return  # the next pass tries again
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            excess = self._excess_over(pid, stop)
            uncovered = self._uncovered(pos, held)
            if excess <= 0 or uncovered <= 0:
                return
            current = self._current(stop)
            intent = self._close_intent(pos, min(excess, uncovered), ExitReason.PROTECTION_FAILED)
            grown = (
                f"{pos.symbol} {pos.side} {pos.remaining}: the stop could not grow past {current.qty} ({why})"
            )
            event = Event(
                EventKind.CLOSE_REQUESTED,
                ctx.clock.now(),
                pid,
                f"close {intent.qty}: {grown}; what the stop does not cover is closed",
            )
            await self._write_close(pos, pos, intent, event)
        try:
            placed = await self.place(intent)
        finally:
            self.flights.closing.discard(intent.client_order_id)
        report = placed.report
        if report is not None:
            self._refusals.pop(("trim", pid), None)
            await ctx.notify(
                AlertKind.PROTECTION_FAILED, f"{grown}: the {intent.qty} it does not cover is closed", pid
            )
            if report.status.terminal:
                await self.wait_for_fills(
                    pid, intent.client_order_id, report.filled_qty, ctx.config.fill_wait
                )
            else:
                ctx.tasks.spawn(self._follow_working(pid, intent))
            return
        if placed.definitely_not_placed:
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                refused = self._current(intent).advance(OrderStatus.REJECTED)
                await self.ledger.commit(pos, pos, orders=[refused])
        else:
            ctx.tasks.spawn(self.follow_unknown_close(pid, intent))
        # Each reconciliation pass tries again while the refusals last.
        await self._tell_refused(
            "trim",
            pid,
            lambda again: (
                f"{grown}; closing the {intent.qty} it does not cover failed{again}"
                f" ({placed.why}): {intent.qty} has no stop"
            ),
        )

    async def _tell_refused(self, kind: str, pid: PositionId, message: Callable[[str], str]) -> None:
        """One more refusal of `kind` in a row for the position (`_refusals`): the trader is told
        of the first of a streak and reminded at 8, 16, 32, ..., not at every try. `message` is
        given "" or " (N in a row)"."""
        self._refusals[kind, pid] += 1
        streak = self._refusals[kind, pid]
        if streak == 1 or _reminder(streak):
            again = "" if streak == 1 else f" ({streak} in a row)"
            await self.ctx.notify(AlertKind.PROTECTION_FAILED, message(again), pid)

    def _excess_over(self, pid: PositionId, stop: Order) -> Decimal:
        """How much the open or protected position holds beyond `stop` while it rests (0 if it
        does not, or the position is not open)."""
        pos = self.ledger.positions[pid]
        current = self.ledger.orders.get(stop.client_order_id)
        if (
            pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED)
            or current is None
            or current.status is not OrderStatus.OPEN
        ):
            return ZERO
        return pos.remaining - current.qty

    def _uncovered(self, pos: Position, held: Sequence[PositionReport]) -> Decimal:
        """What the exchange holds on `pos`'s symbol and side (`held`: its positions there) beyond
        the stops of warden's resting there; 0 unless memory's positions on the symbol add up to
        that holding, all of its side, none closing or with a close live or on its way, and no
        close of an ended one may still land."""
        mine = [self.ledger.positions[p] for p in self.ledger.by_symbol.get(pos.symbol, ())]
        qty = sum((r.qty for r in held if r.side is pos.side), ZERO)
        if (
            any(r.side is not pos.side for r in held)
            or any(p.side is not pos.side or p.status is PositionStatus.CLOSING for p in mine)
            or sum((p.remaining for p in mine), ZERO) != qty
            or not all(self._no_close_of(p.id) for p in mine)
            or self.flights.close_may_land(pos.symbol, pos.side) > 0
        ):
            return ZERO
        return qty - self._resting_stops(pos.symbol, pos.side.exit_side)

    def _no_close_of(self, pid: PositionId) -> bool:
        """No close of the position is live, on its way, or sent early (`_may_close_early`)."""
        return (
            pid not in self._early_closes
            and not self.ledger.live_orders(pid, OrderRole.CLOSE)
            and not any(
                (parsed := parse_client_id(cid)) is not None and parsed.position_id == pid
                for cid in self.flights.closing
            )
        )

    def fresh_mark(self, symbol: Symbol) -> Decimal | None:
        """The streamed mark if it is at most `mark_max_age` old, else None (ask over REST)."""
        event = self.last_mark.get(symbol)
        if event is None:
            return None
        age = (self.ctx.clock.now() - event.at).total_seconds()
        return event.price if age <= self.ctx.config.mark_max_age else None

    async def _mark(self, symbol: Symbol) -> Decimal | None:
        """The newest mark price seen on the stream, else asked of the exchange."""
        self.index.materialize(symbol)
        for pid in self.ledger.by_symbol.get(symbol, ()):
            last = self.ledger.positions[pid].last_price
            if last is not None:
                return last
        try:
            return await self.gw.mark_price(symbol)
        except ExchangeError:
            return None

    async def cancel(self, order: Order) -> Order:
        """Cancel one order; the stream's echo of it is not mistaken for an outside cancel."""
        ctx = self.ctx
        self._cancelling.add(order.client_order_id)
        for attempt in range(ctx.config.protect_attempts):
            try:
                report = await self.gw.cancel(order.symbol, order.client_order_id, order.type.conditional)
                done = self._current(order).advance(report.status, filled_qty=report.filled_qty)
            except OrderNotFound:
                done = await self._not_there(order)
            except ExchangeError:
                await ctx.clock.sleep(ctx.config.retry_backoff * (attempt + 1))
                continue
            self._sweep_copies(done)
            return done
        return self._current(order)

    async def _not_there(self, order: Order) -> Order:
        """What a cancel answered "not found" leaves of `order`. A stop or take-profit rests until
        it triggers: it is cancelled. A market order never rests, and Binance answers the cancel
        of one that filled as it does one never sent (-2011), so it is looked up: filled, its
        fills are read (the stream may have lost them; recorded cancelled, its trade would be
        recorded nowhere: chaos 1590122514:2864); not found while it may still execute (a close
        sent with an unknown outcome, a copy in flight) or unknowable, it is left as it is *after*
        the lookup, for its fill or its lookup to settle (as it was before, a copy taken before the
        lookup would be committed over an end `_settle_gone` recorded meanwhile)."""
        if order.type.conditional:
            return self._current(order).advance(OrderStatus.CANCELED)
        cid = order.client_order_id
        found = await self.gw.lookup(order, attempts=1)
        if isinstance(found, Found):
            await self._read_lost_fills(order, found.report)
            return self._current(order).advance(found.report.status, filled_qty=found.report.filled_qty)
        current = self._current(order)  # as it is now: its end may have been recorded meanwhile
        if not current.status.live:
            return current
        if (
            isinstance(found, Unknown)
            or self.flights.may_still_execute(order)
            or self.flights.copies_may_land(cid) > 0
        ):
            if cid not in self._sweeps:
                self._sweeps.add(cid)
                self.ctx.tasks.spawn(self._settle_gone(order))
            return current
        return current.advance(OrderStatus.CANCELED)

    async def _settle_gone(self, order: Order) -> None:
        """A market order left as it was by its cancel (`_not_there`) is looked up on a steady
        cadence, once it can no longer land, until the exchange says what became of it: its fills
        are read and its end recorded (not found by then: cancelled)."""
        ctx, cid, pid = self.ctx, order.client_order_id, order.position_id
        pause = max(ctx.config.retry_backoff, 0.5)
        try:
            for _look in range(READ_FILLS_LOOKS):
                landing = self.flights.may_execute_for(order) if order.role is OrderRole.CLOSE else 0.0
                await ctx.clock.sleep(max(pause, landing, self.flights.copies_may_land(cid)))
                if not self._current(order).status.live or pid not in self.ledger.positions:
                    return
                found = await self.gw.lookup(order, attempts=1)
                if isinstance(found, Unknown) or (
                    isinstance(found, Found) and not found.report.status.terminal
                ):
                    continue
                status, filled = OrderStatus.CANCELED, None
                if isinstance(found, Found):
                    await self._read_lost_fills(order, found.report)
                    status, filled = found.report.status, found.report.filled_qty
                async with self._lock(pid):  # advanced from memory as it is under the lock, not before
                    pos, current = self.ledger.positions.get(pid), self._current(order)
                    if pos is not None and current.status.live:
                        await self.ledger.commit(
                            pos, pos, orders=[current.advance(status, filled_qty=filled)]
                        )
                return
        except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
            log.warning("gone_order_lookup_failed", client_order_id=cid, error=str(exc))  # the pass's
        finally:
            self._sweeps.discard(cid)

    async def _read_lost_fills(self, order: Order, report: OrderReport) -> None:
        """Read the fills of `order` the stream lost, when a lookup found more filled than applied
        (applied to its position, or to another on the symbol once its own ended). Not once the
        position left memory: `catch_up` reads fills from the position's opening."""
        cid = order.client_order_id
        if report.filled_qty > self.applied(cid) and order.position_id in self.ledger.positions:
            await self.fetch_fills_for(order.position_id, {cid})

    def _sweep_copies(self, order: Order) -> None:
        """A cancelled order sent with an unknown outcome: a copy still in flight can land now that
        its id is free, a stray of ours (a reduce-only stop of a closed position). So can one of an
        order given up on (its lookups found nothing) once its position ended: nothing takes it as
        a stop then. Once none can land any more (InFlight.copies_may_land), its id is looked up and a copy
        resting is cancelled."""
        cid = order.client_order_id
        ended = order.status in (OrderStatus.CANCELED, OrderStatus.REJECTED)
        if ended and self.flights.copies_may_land(cid) > 0 and cid not in self._sweeps:
            self._sweeps.add(cid)
            self.ctx.tasks.spawn(self._sweep(order))

    async def _sweep(self, order: Order) -> None:
        cid = order.client_order_id
        try:
            while (wait := self.flights.copies_may_land(cid)) > 0:
                await self.ctx.clock.sleep(wait)
            found = await self.gw.lookup(order, attempts=1)
            current = self.ledger.orders.get(cid)
            if not isinstance(found, Found) or found.report.status is not OrderStatus.OPEN:
                return
            if current is not None and current.status.live:
                return  # never cancelled after all (a record replaced it): not a stray
            await self._copy_cancelled(order)
        except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
            log.warning("late_copy_sweep_failed", client_order_id=cid, error=str(exc))  # reconciliation's
        finally:
            self._sweeps.discard(cid)

    async def _cancel_landed_copy(self, order: Order) -> None:
        """A copy of a cancelled order, sent before the cancel with an unknown outcome, that the
        stream shows landing under the freed id while its sweep waits (`_sweep_copies`): cancelled
        at once, not once no copy can land any more. Until then it rested beside what replaced it
        (a stop shrunk after a take-profit: the copy of the old one covering more than the
        position holds, for 9.6 s; with stacking, both firing would close what another position
        on the symbol holds). A copy landing after this cancel is cancelled the same way; the
        sweep stays for one the stream does not show (a gap)."""
        try:
            await self._copy_cancelled(order)
        except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
            log.warning("late_copy_cancel_failed", client_order_id=order.client_order_id, error=str(exc))

    async def _copy_cancelled(self, order: Order) -> None:
        """Cancel a copy of `order` resting after it was cancelled or given up on, and say so."""
        cid = order.client_order_id
        await self.gw.cancel(order.symbol, cid, order.type.conditional)
        log.warning("late_copy_cancelled", client_order_id=cid, position_id=order.position_id)
        if order.position_id in self.ledger.positions:
            what = "given up on" if order.status is OrderStatus.REJECTED else "cancelled"
            message = f"{order.role} {cid}: a copy sent before it was {what} landed later; cancelled"
            data = {"client_order_id": cid}
            now = self.ctx.clock.now()
            await self.ledger.record(Event(EventKind.RECONCILE, now, order.position_id, message, data))

    def _current(self, order: Order) -> Order:
        return self.ledger.orders.get(order.client_order_id, order)

    def _as_now(self, cancelled: Sequence[Order]) -> list[Order]:
        """What `cancel` answered, applied to each order as memory holds it now, under its
        position's lock: a cancel's answer is built before the lock is taken, and an end or a
        fill recorded meanwhile (`_settle_gone`, a fill) is kept, not written over."""
        return [
            self._current(o).advance(o.status, exchange_order_id=o.exchange_order_id, filled_qty=o.filled_qty)
            for o in cancelled
        ]

    async def cancel_superseded_stops(self, pid: PositionId) -> None:
        """Stops older than the current one (a move cut short by a crash) are cancelled. A newer
        one whose outcome is not recorded yet (a move under way) is its mover's to settle."""
        current = self.ledger.current_stop(pid)
        if current is None:
            return
        older = [
            o
            for o in self.ledger.live_orders(pid, OrderRole.STOP)
            if _seq_of(o) < _seq_of(current) and not self._superseded_later(o)
        ]
        if not older:
            return
        cancelled = await asyncio.gather(*(self.cancel(o) for o in older))
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            event = Event(
                EventKind.STOP_MOVED, self.ctx.clock.now(), pid, f"cancelled {len(older)} superseded stop(s)"
            )
            await self.ledger.commit(pos, pos, orders=self._as_now(cancelled), events=[event])
        for order in cancelled:
            self._cancelling.discard(order.client_order_id)

    async def _cancel_superseded(self, old: Order) -> Order | None:
        """The stop a move superseded, cancelled now unless copies of it may still land
        (`_superseded_later`); judged as it stands now, not as it was when the move began: it may
        have been sent meanwhile (a working entry's first part's stop, still on its way when the
        next part grew the position; chaos 1069420252:36)."""
        old = self.ledger.orders.get(old.client_order_id, old)
        return None if self._superseded_later(old) else await self.cancel(old)

    def _superseded_later(self, order: Order) -> bool:
        """A superseded stop resting while copies of it sent with an unknown outcome may still
        land is left resting, and cancelled once none can: cancelled now, its id is free for the
        next copy to rest under (chaos 1266763949:8392: a stop given up on whose first copy was
        taken as the stop, superseded by a resize, then placed again by a later copy). While it
        rests the exchange refuses them as duplicates; it is reduce-only, and looser than the
        stop that superseded it or of a size the position no longer has: with one position per
        symbol, it can close nothing but that position. Not with stacking: there, a second stop
        of a position could close what another position on the symbol holds, so it is cancelled
        now and a copy landing later is swept (`_sweep_copies`). True: left for later."""
        cid = order.client_order_id
        if (
            self.ctx.config.allow_stacking
            or order.status not in (OrderStatus.OPEN, OrderStatus.PENDING)
            or self.flights.copies_may_land(cid) <= 0
        ):
            return False
        # PENDING too: its send answered "unknown" and still being settled, a copy of it may
        # rest already, and cancelled now the next copy would rest again (chaos 1069420252:36).
        return self._cancel_once_none_can_land(order)

    def _move_waits(self, old: Order, remaining: Decimal) -> bool:
        """With stacking, a stop is not grown or moved over one still being sent, or whose copies
        sent with an unknown outcome may still land (chaos 5150:177: a working entry's first
        part's stop, sent six times into timeouts, was superseded by the stop grown to both parts
        and cancelled at once; a copy in flight rested under the freed id, beside the grown stop,
        for 9.5 s). Superseded, it could be neither cancelled (a copy rests again) nor left
        resting beside the new one (two stops of one position: both firing would close what
        another position on the symbol holds; `_superseded_later`). Meanwhile the grown part is
        covered by a stop of its own (`watch_part`), and the move runs once no copy can land
        (True: it waits). A shrink does not wait (the old stop covers more than the position
        holds, the risk the wait avoids), nor a grow by anything but an entry's parts watched so
        (nothing else would cover it meanwhile). `old`: the position's current stop."""
        cid = old.client_order_id
        if (
            remaining < old.qty
            or (remaining > old.qty and old.position_id not in self._covers.entry_trades)
            or self._stop_unsettled(old.position_id) <= 0
        ):
            return False
        if ("move", cid) not in self._waiting:
            self._waiting.add(("move", cid))
            self.ctx.tasks.spawn(self._move_once_none_can_land(old))
        return True

    async def _move_once_none_can_land(self, old: Order) -> None:
        cid = old.client_order_id
        try:
            while (wait := self._unsettled(cid)) > 0:
                await self.ctx.clock.sleep(wait)
        finally:
            self._waiting.discard(("move", cid))
        try:
            await self.move_stop(old.position_id)
        except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
            # Left to the next mark or pass, as a waited cancel is (`_cancel_when_none_can_land`).
            log.warning("waited_move_failed", client_order_id=cid, error=str(exc))

    async def cancel_exits(self, pid: PositionId) -> None:
        """Cancel every live exit order of a position once (orders already being cancelled are left
        to that cancel). Once the position is closed, every order of it still believed live is
        settled too (an entry or a close whose last answer was lost): the cancel's answer says
        what became of it, so nothing is left believed resting that the exchange has not."""
        pos = self.ledger.positions.get(pid)
        if pos is not None and pos.status.terminal:
            for given_up in self.ledger.orders_of(pid):
                if given_up.status is OrderStatus.REJECTED:
                    self._sweep_copies(given_up)  # a copy may land after the close: not its stop
        roles = tuple(OrderRole) if pos is not None and pos.status.terminal else EXIT_ROLES
        live = [
            o
            for o in self.ledger.live_orders(pid)
            if o.role in roles and o.client_order_id not in self._cancelling and not self._copies_wait(o)
        ]
        if not live:
            return
        for order in live:  # now, not when each cancel's task starts: a second call meanwhile
            self._cancelling.add(order.client_order_id)  # (recovery's, a fill's) cancels them again
        cancelled = await asyncio.gather(*(self.cancel(o) for o in live))
        async with self._lock(pid):
            pos = self.ledger.positions.get(pid)
            if pos is not None:
                await self.ledger.commit(pos, pos, orders=self._as_now(cancelled))
        for order in cancelled:
            self._cancelling.discard(order.client_order_id)

    def _copies_wait(self, order: Order) -> bool:
        """An order of an ended position resting while copies of it sent with an unknown outcome
        may still land (this process's; or the process before it's, once one landed late:
        `landed_late`) is left resting, and cancelled once none can: cancelled now, its id would
        be free for a copy to rest again (the order placed twice, a stray reduce-only stop; chaos
        1230:96). While it rests the exchange refuses them as duplicates. So is one pending that
        may rest: its sends still under way, a copy may have landed unseen (chaos 1540091406:3491,
        a take-profit placed twice). True: left for later."""
        cid = order.client_order_id
        may_rest = order.type.conditional and order.status.live
        if not may_rest or self.flights.copies_may_land(cid) <= 0:
            return False
        pos = self.ledger.positions.get(order.position_id)
        if pos is not None and pos.is_active:
            return False  # its exits are replaced (`_superseded_later`), not withdrawn
        return self._cancel_once_none_can_land(order)

    def _cancel_once_none_can_land(self, order: Order) -> bool:
        """Leave `order` resting and cancel it once no copy of it can land (at most one task per
        order). True, for the callers that leave it."""
        if ("cancel", order.client_order_id) not in self._waiting:
            self._waiting.add(("cancel", order.client_order_id))
            self.ctx.tasks.spawn(self._cancel_when_none_can_land(order))
        return True

    async def _cancel_when_none_can_land(self, order: Order) -> None:
        """An active position's stop left resting is cancelled as superseded; an ended one's
        orders, as its exits are."""
        cid = order.client_order_id
        try:
            while (wait := self.flights.copies_may_land(cid)) > 0:
                await self.ctx.clock.sleep(wait)
        finally:
            self._waiting.discard(("cancel", cid))
        pos = self.ledger.positions.get(order.position_id)
        try:
            if pos is not None and pos.is_active:
                await self.cancel_superseded_stops(order.position_id)
            else:
                await self.cancel_exits(order.position_id)
        except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
            log.warning("left_order_cancel_failed", client_order_id=cid, error=str(exc))  # the pass's

    # ---------------------------------------------------------------- closing

    async def close(self, pid: PositionId, reason: str) -> Position:
        """Reduce-only market for what remains; cancel the exits once flat.

        An acknowledged close that has not filled yet is working: its fills are
        awaited (up to `entry_deadline`) before it is judged failed.
        """
        ctx = self.ctx
        if not await self._settle_unknown(pid, OrderRole.CLOSE):
            return await self._close_unsettled(pid)
        async with self._lock(pid):
            cutting = self._covers.cutting.get(pid)
            if cutting is not None:
                await asyncio.wait([cutting])  # its early close cut: the next is taken over
            pos = self.ledger.positions[pid]
            if pos.status.terminal or (pos.remaining <= 0 and pid not in self._early_closes):
                return pos
            intent, send = self._next_close(pos, reason)
            event = Event(EventKind.CLOSE_REQUESTED, ctx.clock.now(), pid, f"close {intent.qty}: {reason}")
            closing = evolve(pos.transition(PositionStatus.CLOSING), exit_reason=reason)
            await self._write_close(pos, closing, intent, event, self._cuts_unwritten(pid))
        stop = self.ledger.current_stop(pid)
        if stop is None or stop.status is not OrderStatus.OPEN:
            # From the moment the close is decided, not once it works: a close that meets 5xx
            # spends each on a full lookup before it is sent again (chaos 500219413:7313).
            ctx.tasks.spawn(self._cover_while_closing(pid, intent))
        try:
            placed = await send()
        finally:
            self.flights.closing.discard(intent.client_order_id)
        report, cut = await self._await_close(pid, intent, placed.report)
        pos = self.ledger.positions[pid]
        if pos.status is PositionStatus.CLOSED:
            await self.cancel_exits(pid)
            return self.ledger.positions[pid]
        if self._outgrew(pos, intent, report, cut) or (cut and pid in self._early_closes):
            return await self.close(pid, reason)  # the next close, sent already if it was cut
        if (
            report is not None
            and report.status is OrderStatus.FILLED
            and report.filled_qty > self.applied(intent.client_order_id)
        ):
            # The exchange says it filled; its fills could not be read yet (a lost stream event,
            # failing queries). Not a failed close: it stays closing while they are read again.
            ctx.tasks.spawn(self._read_fills_of(pid, intent, report.filled_qty))
            return pos
        # A close the exchange definitely did not take (refused, 5xx) is recorded so: only one
        # whose outcome is unknown holds the next close back (see _settle_unknown).
        refused = (
            [self._current(intent).advance(OrderStatus.REJECTED)] if placed.definitely_not_placed else []
        )
        if report is None and not placed.definitely_not_placed:
            ctx.tasks.spawn(self.follow_unknown_close(pid, intent))
        return await self._close_failed(
            pid, placed.why or "close order did not fill", refused, rejected=placed.rejected
        )

    async def _await_close(
        self, pid: PositionId, close: Order, report: OrderReport | None
    ) -> tuple[OrderReport | None, bool]:
        """A close answered working is awaited until it ends (`entry_deadline`), or cut once the
        position outgrows it (`_outgrown`, `_cut_close`): its newest report, and whether it was
        cut. Its fills are applied; one still working at its deadline is followed."""
        ctx = self.ctx
        cut = False
        if report is not None and not report.status.terminal:
            outgrown = functools.partial(self._outgrown, pid, close)
            report = await self.work_order(close, report, ctx.config.entry_deadline, outgrown) or report
            if not report.status.terminal and outgrown():
                ended = await self._cut_close(pid, close)
                cut, report = ended is not None, ended or report
        if report is not None:
            if report.status.terminal:
                await self.wait_for_fills(pid, close.client_order_id, report.filled_qty, ctx.config.fill_wait)
            else:
                # Still working at its deadline: not cancelled (it may be the only way out
                # while stops are refused), but followed until it ends, so that its fills are
                # applied even when the stream loses them.
                ctx.tasks.spawn(self._follow_working(pid, close))
        return report, cut

    def _outgrew(self, pos: Position, close: Order, report: OrderReport | None, cut: bool) -> bool:
        """The close ended having closed all it was sent for, or was cut (`_cut_close`), and the
        position still holds some: more of a working entry filled after the close was sized (a
        close sent early on its first part's refused stop). Not a failed close: the next one
        closes the rest, at once."""
        if report is None or not pos.is_active or pos.remaining <= 0:
            return False
        return cut or (
            report.status is OrderStatus.FILLED
            and report.filled_qty >= close.qty
            and self.applied(close.client_order_id) >= close.qty
        )

    def _outgrown(self, pid: PositionId, close: Order) -> bool:
        """A part of the position's entry stayed uncovered while a close of it worked
        (`watch_part`), and the position holds more than `close` has left to close. The mark
        stays until a close is cut (`_cut_close`): a close sized after it, outgrown by a later
        part, is cut as that part is applied."""
        pos = self.ledger.positions.get(pid)
        return (
            pos is not None
            and pid in self._covers.outgrown
            and pos.remaining > close.qty - self.applied(close.client_order_id)
        )

    async def _cut_close(self, pid: PositionId, close: Order) -> OrderReport | None:
        """Cancel a working close that cannot close all the position holds, its entry having grown
        since it was sized (`_outgrown`), so that the next goes out for all of it (`close`); its
        fills are applied and its end recorded first, so that the next is sized by them. Only a
        definite answer cuts it (cancelled, or ended as a lookup shows): one that may still be
        working is left to work, as before, since a second reduce-only close beside it could
        close what another position on the symbol holds (None is returned)."""
        self._covers.outgrown.discard(pid)
        cid = close.client_order_id
        self._cancelling.add(cid)
        try:
            report = await self._cancel_for_cut(close)
            if report is None:
                return None
            self._close_next_early(pid, close, report)
            if report.filled_qty > self.applied(cid):
                await self.wait_for_fills(pid, cid, report.filled_qty, self.ctx.config.fill_wait)
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                current = self._current(close)
                if not current.status.terminal:
                    event = Event(
                        EventKind.CLOSE_REQUESTED,
                        self.ctx.clock.now(),
                        pid,
                        f"close {cid} cut with {current.filled_qty} of {current.qty} filled: the"
                        f" position grew to {pos.filled_qty} meanwhile; the next closes all it holds",
                    )
                    await self.ledger.commit(
                        pos, pos, orders=[current.advance(report.status)], events=[event]
                    )
            log.info("close_cut", client_order_id=cid, status=str(report.status))
            return report
        finally:
            self._cancelling.discard(cid)

    async def _cancel_for_cut(self, close: Order) -> OrderReport | None:
        """Cancel a close being cut: how it ended, as the cancel's answer or a lookup says; None
        while it may still be working (a second reduce-only close beside it could close what
        another position on the symbol holds) or when this engine may not act."""
        cid = close.client_order_id
        try:
            report: OrderReport | None = await self.gw.cancel(close.symbol, cid, False)
        except TradingRefused:
            return None  # this engine may not act
        except ExchangeError as exc:
            log.warning("close_cut_failed", client_order_id=cid, error=str(exc))
            found = await self.gw.lookup(close, attempts=2)
            report = found.report if isinstance(found, Found) else None
        return report if report is not None and report.status.terminal else None

    async def _cut_early_close(self, pid: PositionId) -> None:
        """Cut the close sent early on a refused stop (`_stop_or_close`) that a later part of the
        entry outgrew before any `close` took it over (`_cover_part_unless_grown`): that takes
        the position's writes first, and on a slow database the part went seconds with neither a
        stop nor a close of its own (60607:3417 with 0.4 s commits: the second part closed 5.5 to
        6 s after it filled). Cancelled at once; once the exchange says how it ended, the next
        close goes out early for all the position holds (`_close_next_early`), and the cut one is
        written with it when a `close` takes that over. Only one the exchange acknowledged and
        still working: one refused or of unknown outcome is the `close`'s to settle; one that
        may still work after the cancel is left to work. A `close` taking the position's early
        close over waits for this to end (`Covers.cutting`)."""
        cid = None
        try:
            early = self._early_closes.get(pid)
            if early is None:
                return
            close, sending = early
            cid = close.client_order_id
            self._cancelling.add(cid)
            try:
                placed = await asyncio.shield(sending)
            except Exception:  # `close` takes it and raises it
                return
            if (
                placed.report is None
                or placed.report.status.terminal
                or self._early_closes.get(pid) is not early
            ):
                return
            report = await self._cancel_for_cut(close)
            if report is None or self._early_closes.get(pid) is not early:
                return
            self._covers.outgrown.discard(pid)
            self._close_next_early(pid, close, report)
            log.info("early_close_cut", client_order_id=cid, status=str(report.status))
        finally:
            if cid is not None:
                self._cancelling.discard(cid)
            self._covers.cutting.pop(pid, None)

    def _close_next_early(self, pid: PositionId, cut: Order, report: OrderReport) -> None:
        """The close that takes the place of `cut` (cancelled for a part that outgrew it, its end
        `report`) goes out now, before anything is written, for all the position holds: its
        applied remainder and the parts of its entry seen and not applied yet, less what the
        closes cut so far filled and memory has not applied. Sent early, as the close on a
        refused stop is: the next `close` takes it over (`_early_closes`) and writes it with the
        cut ones; beside another position it is written as it goes out (`_record_early_close`).
        Its id is the next close sequence (deterministic, as every exit's); a process that dies
        before it is written finds it from its trades. Nothing is sent when nothing is left:
        the cut closes are written for their fills to be applied."""
        self._covers.cut.setdefault(pid, {})[cut.client_order_id] = (cut, report.status, report.filled_qty)
        self._early_closes.pop(pid, None)
        pos = self.ledger.positions.get(pid)
        if pos is None or not pos.is_active:
            return
        unapplied = sum(
            (max(ZERO, filled - self.applied(o.client_order_id)) for o, _, filled in self._cut_of(pid)),
            ZERO,
        )
        left = self._held(pos) - unapplied
        if left <= 0:
            self.ctx.tasks.spawn(self._write_cuts(pid))
            return
        close = self._close_intent(pos, left, cut.reason or ExitReason.PROTECTION_FAILED)
        early = (close, self.ctx.tasks.spawn(self.place(close)))
        self._early_closes[pid] = early
        if self._others_on(pos.symbol, pid):
            self.ctx.tasks.spawn(self._record_early_close(pid, early))

    def _cut_of(self, pid: PositionId) -> list[tuple[Order, OrderStatus, Decimal]]:
        return list(self._covers.cut.get(pid, {}).values())

    def _cuts_unwritten(self, pid: PositionId) -> list[Order]:
        """The position's cut closes as they ended, for those memory does not hold so."""
        return [
            self._current(o).advance(status)
            for o, status, _ in self._cut_of(pid)
            if not self._current(o).status.terminal
        ]

    async def _write_cuts(self, pid: PositionId) -> None:
        """Write the closes cut when no close was sent after them (nothing left): their fills
        are applied once memory holds them. A write that fails is logged; the next close writes
        them."""
        try:
            async with self._lock(pid):
                pos = self.ledger.positions.get(pid)
                cuts = self._cuts_unwritten(pid)
                if pos is None or not cuts:
                    return
                await self.ledger.commit(pos, pos, orders=cuts)
        except StoreUnavailable as exc:
            log.warning("cut_closes_unwritten", position_id=pid, error=str(exc))

    async def _write_close(
        self, pos: Position, new: Position, intent: Order, event: Event, cut: Sequence[Order] = ()
    ) -> None:
        """Write a close's intent (the caller holds the position's lock), with the closes `cut`
        before it (sent early, never written). It is on its way from now (`InFlight.closing`: no
        lookup takes it for unknown), unless the write fails."""
        self.flights.closing.add(intent.client_order_id)
        try:
            await self.ledger.commit(pos, new, orders=[*cut, intent], events=[event])
        except BaseException:
            self.flights.closing.discard(intent.client_order_id)
            raise

    async def _cover_while_closing(self, pid: PositionId, close: Order) -> None:
        """A close is on its way or working (acknowledged, not filled) and no stop is known to
        rest: the stop is tried again while the close goes on, with a pause that doubles up to
        half the protection window, until one rests or the close ends. The close is not what
        protects: it may be held for as long as the exchange likes (chaos 374917399:1244: stops
        and closes met 5xx for 3 s, then the close was held 12 s; warden waited on it with no
        stop tried)."""
        ctx = self.ctx
        config = ctx.config
        for rounds in range(1, 1_000):
            pause = config.retry_backoff * 2 ** min(rounds, 8)
            await ctx.clock.sleep(min(config.protection_window / 2, pause))
            pos = self.ledger.positions[pid]
            if pos.status is not PositionStatus.CLOSING or pos.remaining <= 0:
                return
            if self._current(close).status.terminal:
                return
            if not await self._settle_unknown(pid, OrderRole.STOP):
                continue
            live = self.ledger.live_orders(pid, OrderRole.STOP)
            if any(o.status is OrderStatus.OPEN for o in live):
                return
            if live:
                continue  # a stop being sent (by protect, after a failed close)
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                if pos.status is not PositionStatus.CLOSING or pos.remaining <= 0:
                    return
                staged = evolve(pos, stop_seq=pos.stop_seq + 1)
                stop = self._exit_intent(staged, OrderRole.STOP, staged.stop_seq)
                await self.ledger.commit(pos, staged, orders=[stop])
            placed = await self.place(stop)
            await self._record_protection(pid, [stop], [placed], judge=False)
            if placed.report is not None and placed.report.status is OrderStatus.OPEN:
                if not self.ledger.positions[pid].is_active:
                    await self.cancel_exits(pid)  # the close filled while the stop was sent
                return

    async def _close_unsettled(self, pid: PositionId) -> Position:
        """No close is sent while an earlier one's outcome is unknown; protect-or-close goes round
        again after its pause (unless a stop is known to rest) and the caller is told why."""
        pos = self.ledger.positions[pid]
        if not pos.is_active or pos.remaining <= 0:
            if pos.status is PositionStatus.CLOSED:
                await self.cancel_exits(pid)
            return pos
        stop = self.ledger.current_stop(pid)
        if stop is None or stop.status is not OrderStatus.OPEN:
            self.ctx.tasks.spawn(self._protect_again(pid))
        raise ExchangeUnavailable(f"close of {pid} not sent: an earlier close's outcome is not known yet")

    def _next_close(self, pos: Position, reason: str) -> tuple[Order, Callable[[], Awaitable[Placed]]]:
        """The close a `close` records, and how its answer is had. A close already sent when the
        early stop was refused, or after a cut (`_early_closes`), is this close: recorded as it
        was sent (its id and quantity; as memory has it if it was written while its stop was
        sent again, `_record_early_close`) and its answer taken, not sent again. So is one the
        exchange holds working beside another position that nothing follows
        (`_working_close_beside`): its answer is how the exchange has it now. Otherwise the
        next close, sent for what remains."""
        early = self._early_closes.pop(pos.id, None)
        if early is not None:
            sending = early[1]
            return self._current(early[0]), lambda: sending
        working = self._working_close_beside(pos.id)
        if working is not None:
            return working, functools.partial(self._as_working, working)
        intent = self._close_intent(pos, pos.remaining, reason)
        return intent, functools.partial(self.place, intent)

    def _working_close_beside(self, pid: PositionId) -> Order | None:
        """A close of the position the exchange holds working that no `close` sent or awaits and
        nothing follows, while another position shares the symbol: one a process before this one
        sent and never wrote, adopted as it rests (recovery's `_adopt_unrecorded`). The next
        `close` takes it over. A second reduce-only close beside it could close what the other
        position holds once both execute (found attacking the early cut: the next close sent at
        once, the process killed before it was written, and the new process closed the position
        again beside it, 0.21 off the stacked position). Alone, a second closes nothing more.
        One still working at its deadline is followed (`_follow_working`) and left as before:
        the next close goes out beside it (taken over or cut, the exchange holding every close
        12 s, it was never let fill: chaos 5161:350)."""
        pos = self.ledger.positions.get(pid)
        if pos is None or not self._others_on(pos.symbol, pid):
            return None
        return next(
            (
                o
                for o in self.ledger.live_orders(pid, OrderRole.CLOSE)
                if o.status is OrderStatus.OPEN
                and o.client_order_id not in self.flights.closing
                and o.client_order_id not in self.flights.followed
            ),
            None,
        )

    async def _as_working(self, close: Order) -> Placed:
        """A working close taken over: its answer is how the exchange has it now."""
        found = await self.gw.lookup(close, attempts=2)
        if isinstance(found, Found):
            return Placed(found.report)
        return Placed(None, f"{close.client_order_id} not found working", unknown=True)

    async def _follow_working(self, pid: PositionId, close: Order) -> None:
        """`_follow_working_close`, one follower a close (`InFlight.followed`)."""
        await self._one_follower(close, functools.partial(self._follow_working_close, pid, close))

    async def _one_follower(self, close: Order, follow: Callable[[], Awaitable[None]]) -> None:
        """Run `follow` unless the close is followed already; it is followed meanwhile."""
        cid = close.client_order_id
        if cid in self.flights.followed:
            return
        self.flights.followed.add(cid)
        try:
            await follow()
        finally:
            self.flights.followed.discard(cid)

    async def _follow_working_close(self, pid: PositionId, intent: Order) -> None:
        """Look a close that was still working at its deadline up on a steady cadence until it
        ends; what it filled is applied (REST fills if the stream lost them) and its end recorded."""
        ctx = self.ctx
        cid = intent.client_order_id
        pause = max(ctx.config.retry_backoff, 0.5)
        for _look in range(READ_FILLS_LOOKS):
            await ctx.clock.sleep(pause)
            current = self._current(intent)
            if current.status.terminal or not self.ledger.positions[pid].is_active:
                return
            found = await self.gw.lookup(intent, attempts=1)
            if not isinstance(found, Found) or not found.report.status.terminal:
                continue
            report = found.report
            if report.filled_qty > self.applied(cid):
                await self.wait_for_fills(pid, cid, report.filled_qty, ctx.config.fill_wait)
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                current = self._current(intent)
                if not current.status.terminal:
                    await self.ledger.commit(pos, pos, orders=[current.advance(report.status)])
            if self.ledger.positions[pid].status is PositionStatus.CLOSED:
                await self.cancel_exits(pid)
            return

    async def follow_unknown_close(self, pid: PositionId, intent: Order) -> None:
        """A close answered "unknown" and not found may still execute (`entry_deadline`), and
        with its stop known to rest nothing else follows it: looked up on a steady cadence until
        it is found (recorded as the exchange has it, its fills read over REST if the stream lost
        them; found working, followed until it ends) or can no longer execute (then refused, as
        `_settle_unknown` decides). Otherwise a close executing unseen (a stream gap) is found
        only by a reconciliation pass once it can no longer land (chaos 618285994:p4: 14.8 s with
        the exchange flat and warden at 0.2). One follower a close (a pass may ask again)."""
        await self._one_follower(intent, functools.partial(self._follow_unknown_close, pid, intent))

    async def _follow_unknown_close(self, pid: PositionId, intent: Order) -> None:
        ctx = self.ctx
        pause = max(ctx.config.retry_backoff, 0.5)
        while True:
            left = self.flights.may_execute_for(intent)
            await ctx.clock.sleep(pause if left <= 0 else min(pause, left + HELD_MARGIN))
            pos = self.ledger.positions.get(pid)
            if self._current(intent).status is not OrderStatus.PENDING or pos is None or not pos.is_active:
                break
            with contextlib.suppress(ExchangeError):  # looked up again next time
                await self._settle_unknown(pid, OrderRole.CLOSE)
            if left <= 0:
                break
        if self._current(intent).status is OrderStatus.OPEN:
            # Found working (acknowledged, not filled): followed until it ends.
            await self._follow_working_close(pid, intent)
            return
        pos = self.ledger.positions.get(pid)
        if pos is not None and pos.status is PositionStatus.CLOSED:
            await self.cancel_exits(pid)

    async def _read_fills_of(self, pid: PositionId, order: Order, qty: Decimal) -> None:
        """Read the fills of an order the exchange says filled until `qty` of them is applied: on a
        steady cadence for about a minute, then doubling up to 30 s apart. Once the position is
        flat its exits are cancelled. Reconciliation would find it too, but only a pass later."""
        ctx = self.ctx
        cid = order.client_order_id
        pause = max(ctx.config.retry_backoff, 0.5)
        for look in range(READ_FILLS_LOOKS):
            if self.applied(cid) >= qty or not self.ledger.positions[pid].is_active:
                break
            await ctx.clock.sleep(
                pause if look < STEADY_READS else min(30.0, pause * 2 ** (look - STEADY_READS + 1))
            )
            await self.fetch_fills_for(pid, {cid})
        else:
            await ctx.notify(
                AlertKind.FILL_MISMATCH,
                f"{order.symbol}: {cid} filled {qty} on the exchange, but its fills cannot be read; "
                "reconciliation will settle the position",
                pid,
            )
        if self.ledger.positions[pid].status is PositionStatus.CLOSED:
            await self.cancel_exits(pid)

    async def _close_failed(
        self, pid: PositionId, why: str, orders: Sequence[Order] = (), *, rejected: bool = False
    ) -> Position:
        """Record a close that did not go through and protect again; raise OrderRejected when
        the exchange refused it (it answered: retrying as is will not help), ExchangeUnavailable
        when it could not be reached or did not fill it."""
        ctx = self.ctx
        async with self._lock(pid):
            pos = self.ledger.positions[pid]
            if pos.status is not PositionStatus.CLOSING:
                return pos
            stop = self.ledger.current_stop(pid)
            # Protected only by a stop known to rest: one whose outcome is unknown (its send and
            # its lookups failed) may not exist, and the next round must find out.
            known = stop is not None and stop.status is OrderStatus.OPEN
            back = PositionStatus.PROTECTED if known else PositionStatus.OPEN
            event = Event(EventKind.PROTECTION_FAILED, ctx.clock.now(), pid, f"close failed: {why}")
            rounds = self._refused.get(pid, 0)
            again = f" (round {rounds + 1} of protect-or-close; retrying)" if rounds else ""
            what = f"{pos.symbol} {pos.side} {pos.remaining}: close failed ({why})"
            if stop is not None and known:
                what += f"; its stop at {stop.trigger_price} still rests"
            else:
                what += (
                    " and no stop rests: the position is UNPROTECTED on the exchange; warden keeps"
                    " trying a stop and a close; close it by hand if this goes on"
                )
            alerts = [ctx.make_alert(AlertKind.CLOSE_FAILED, f"{what}{again}", pid)]
            if not self._tell(pid):
                alerts = []
            new = evolve(pos.transition(back), exit_reason=None)
            cover: tuple[Order, asyncio.Future[Placed]] | None = None
            if (
                back is PositionStatus.OPEN
                and not rejected
                and pos.remaining > 0
                and not self.ledger.live_orders(pid, OrderRole.STOP)
                and pid not in self._stop_at_once
            ):
                # The exchange did not answer the close (5xx, timeout), no stop rests and none is
                # on its way: the next stop goes out now, while the failure is written, not after
                # that write and the round's pause (chaos 291220366:4862: 2 s commits; the stop
                # rested 2.4 s after the 5xxs ended). A close the exchange refused (it answered:
                # nothing to reduce, say) keeps the pause. The stop's intent is written with the
                # failure; if that write fails the send is abandoned as protect's is (recovery
                # adopts it by its deterministic id). Once per round: the close that follows
                # this stop, if it is not placed, ends in the pause (_cover_after_failed_close).
                self._stop_at_once.add(pid)
                new = evolve(new, stop_seq=new.stop_seq + 1)
                stop = self._exit_intent(new, OrderRole.STOP, new.stop_seq)
                cover = (stop, self._sending(self.place(stop)))
            try:
                pos = await self.ledger.commit(
                    pos,
                    new,
                    orders=[*orders, *([cover[0]] if cover is not None else [])],
                    events=[event],
                    alerts=alerts,
                )
            except BaseException:
                if cover is not None:
                    self._stop_at_once.discard(pid)
                    cover[1].cancel()
                    await asyncio.gather(cover[1], return_exceptions=True)
                raise
        await ctx.announce(*alerts)
        if cover is not None:
            ctx.tasks.spawn(self._cover_after_failed_close(pid, *cover))
        elif back is PositionStatus.OPEN:
            ctx.tasks.spawn(self._protect_again(pid))
        raise (OrderRejected if rejected else ExchangeUnavailable)(f"close of {pid} failed: {why}")

    async def _cover_after_failed_close(
        self, pid: PositionId, stop: Order, sending: asyncio.Future[Placed]
    ) -> None:
        """The stop sent as a close failed: recorded when it answers. Resting, the position is
        protected (and any exit still missing placed). Not placed (refused, or its outcome still
        unknown after its send time), the close goes out at once, as a round's would after its
        stop (`_record_protection` judging it): a pause and a new round first would leave the
        position uncovered for both (chaos 1266763949:1157: stops executing 3.45 s late, so
        the next round's stop was unknown too, 2.70 s after the 5xxs ended, where the close
        would have been taken). That close failing too ends in the pause (`_close_failed`)."""
        try:
            placed = await sending
            await self._record_protection(pid, [stop], [placed], judge=True)
        except (ExchangeUnavailable, OrderRejected) as exc:
            log.warning("protect_or_close_round_failed", position_id=pid, error=str(exc))
            return
        finally:
            self._stop_at_once.discard(pid)
        if placed.report is not None and self.ledger.positions[pid].is_active:
            await self.protect(pid)  # a take-profit the rounds never got placed

    async def _protect_again(self, pid: PositionId) -> None:
        """Neither a stop nor a close went through: protect again after a pause that doubles while
        the refusals go on (retrying at once only hammers the exchange and the database), up to
        half the protection window: once the refusals end, the next stop goes out within it."""
        rounds = self._refused[pid] = self._refused.get(pid, 0) + 1
        config = self.ctx.config
        pause = config.retry_backoff * 2 ** min(rounds, 16)  # rounds go on for as long as refusals do
        pause = min(config.protection_window / 2, pause)
        held = self._close_held_for(pid)
        if held is not None:
            # A close held back by an earlier one that may still execute goes out the moment
            # that one cannot, not up to a pause later (chaos 1206:24: 0.7 s more uncovered).
            pause = min(pause, held + HELD_MARGIN)
        await self.ctx.clock.sleep(pause)
        try:
            if not await self._settle_unknown(pid, OrderRole.STOP):
                await self.close(pid, ExitReason.PROTECTION_FAILED)  # still no telling: close
                return
            await self.protect(pid)
        except (ExchangeUnavailable, OrderRejected) as exc:
            # This round failed and the next is already on its way (its event and alert are
            # written): one line in the log, not a traceback a second for as long as it lasts.
            log.warning("protect_or_close_round_failed", position_id=pid, round=rounds, error=str(exc))

    async def _settle_unknown(self, pid: PositionId, role: OrderRole, *, leave_sending: bool = False) -> bool:
        """Look up each order of this position in `role` whose outcome is unknown (its answer
        lost, its lookups failed; not one on its way now): one found is recorded as the exchange
        has it (fills it made are read), one not found is refused (the next takes a new id).
        False if some outcome is still unknown, or a close may still execute (found working):
        another stop would be sent under a new id, and a second close could close what another
        position on the symbol holds (reduce-only knows one position per symbol).

        `leave_sending`: orders `place` is sending now are left to it too (on a venue whose
        transactions settle later, one looked up before its send reached the venue is "never
        sent", yet lands a moment after)."""
        pending = [
            o
            for o in self.ledger.live_orders(pid, role)
            if o.status is OrderStatus.PENDING
            and o.client_order_id not in self.flights.closing
            and not (leave_sending and self.flights.sending(o.client_order_id))
            and not (
                (early := self._early_closes.get(pid)) is not None
                and early[0].client_order_id == o.client_order_id
            )
        ]
        found: dict[ClientOrderId, tuple[OrderStatus, str | None]] = {}
        settled = True
        for order in pending:
            looked = await self.gw.lookup(order, attempts=1)
            if isinstance(looked, Found):
                report = looked.report
                if report.filled_qty > self.applied(order.client_order_id):
                    await self.wait_for_fills(pid, order.client_order_id, report.filled_qty, 0.0)
                found[order.client_order_id] = (report.status, report.exchange_order_id)
                settled = settled and (role is not OrderRole.CLOSE or report.status.terminal)
            elif isinstance(looked, NotFound) and not self.flights.may_still_execute(order):
                found[order.client_order_id] = (OrderStatus.REJECTED, None)
            elif not (isinstance(looked, NotFound) and self._alone(pid, order.symbol)):
                settled = False
        if found:
            async with self._lock(pid):
                pos = self.ledger.positions[pid]
                updates = [
                    self._current(o).advance(status, exchange_order_id=eid)
                    for o in pending
                    if o.client_order_id in found and self._current(o).status is OrderStatus.PENDING
                    for status, eid in [found[o.client_order_id]]
                ]
                if updates:
                    await self.ledger.commit(pos, pos, orders=updates)
        return settled

    def _others_on(self, symbol: Symbol, pid: PositionId) -> bool:
        """Another position of this engine's is on `symbol`."""
        return any(p != pid for p in self.ledger.by_symbol.get(symbol, ()))

    def _alone(self, pid: PositionId, symbol: Symbol) -> bool:
        """No other position of this engine on `symbol`: a reduce-only close of `pid` can close
        nothing else of warden's. So the next close of `pid` may go out while an earlier one, not
        found, may still execute (chaos 1207:462: one answered 5xx held every other back for
        `entry_deadline` while every stop was refused): the first to execute closes the position,
        the other is refused on a flat symbol; signals that a late one could reduce are refused
        meanwhile (`InFlight.close_may_land`), with stacking on from the moment this says so,
        while the position is still open. With another position there, a second reduce-only
        close could reduce it once the first lands: held back."""
        if self._others_on(symbol, pid):
            return False
        if not self.ctx.config.allow_stacking:
            return True
        if not pid:
            return False  # a late entry's cover: no position of its own to hold signals for
        # Stacking on: alone now, but a signal could open a position beside it while its closes
        # may land (chaos 66809370:8470, 1540091406:7557: the held-back close cost 2.45 s and
        # 3.46 s without a stop). Such signals are refused from this moment (no await between
        # this and the send's decision), and the open saga checks again after its intent's
        # commit, before it sends (Opener._refuse_after_commit).
        self.flights.doubled(pid)
        return True

    def _close_held_for(self, pid: PositionId) -> float | None:
        """Seconds until no close of this position not found yet may still execute (see
        `InFlight.may_still_execute`): when the next close may go out. None if none holds it back."""
        left = max(
            (
                self.flights.may_execute_for(o)
                for o in self.ledger.live_orders(pid, OrderRole.CLOSE)
                if o.status is OrderStatus.PENDING
            ),
            default=0.0,
        )
        return left if left > 0 else None

    def _tell(self, pid: PositionId) -> bool:
        """Whether this protect-or-close round alerts: the first of a streak does, then rounds
        8, 16, 32, ... as reminders (each round is recorded as an event all the same)."""
        rounds = self._refused.get(pid, 0)
        return rounds == 0 or _reminder(rounds)


def _reminder(count: int) -> bool:
    """Whether a streak of refusals `count` long is reminded of: at 8, 16, 32, ..."""
    return count >= 8 and count & (count - 1) == 0


NEVER_UP = Decimal("Infinity")
NEVER_DOWN = Decimal("-Infinity")


def _seq_of(order: Order) -> int:
    parsed = parse_client_id(order.client_order_id)
    return parsed.seq if parsed is not None else 0


ROLE_TYPES = {
    OrderRole.ENTRY: OrderType.MARKET,
    OrderRole.CLOSE: OrderType.MARKET,
    OrderRole.STOP: OrderType.STOP_MARKET,
    OrderRole.TP1: OrderType.TAKE_PROFIT_MARKET,
    OrderRole.TP2: OrderType.TAKE_PROFIT_MARKET,
}
"""The order type warden sends for each role (an order adopted from its trades alone)."""
HELD_MARGIN = 0.01
"""Seconds past a held close's `entry_deadline` at which the next round looks again (so that its
age is past the deadline, not equal to it within a float's error)."""
READ_FILLS_LOOKS = 120
"""Reads of a filled order's fills before it is left to reconciliation (see `_read_fills_of`)."""
STEADY_READS = 60
"""Of those, the first ones 0.5 s apart; then the pause doubles up to 30 s."""


def _unplaced_roles(pos: Position) -> list[tuple[OrderRole, Decimal]]:
    """Take-profit levels with nothing to place (quantity rounded to zero) not yet reached."""
    out: list[tuple[OrderRole, Decimal]] = []
    if pos.entry_price is None or pos.remaining <= 0:
        return out
    if not pos.tp1_hit and pos.tp1_qty == 0 and pos.tp1_price is not None:
        out.append((OrderRole.TP1, pos.tp1_price))
    if not pos.tp2_hit and not pos.trailing_active and pos.tp2_qty == 0 and pos.tp2_price is not None:
        out.append((OrderRole.TP2, pos.tp2_price))
    return out


def _unplaced_levels(pos: Position) -> list[Decimal]:
    return [level for _, level in _unplaced_roles(pos)]
