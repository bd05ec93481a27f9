"""Startup is recovery: the same path runs after a crash, a restart, a takeover and a stream gap.

For every non-terminal position: ask the exchange about each order that might
still be live (one bulk query for open orders, a lookup by client order id for
the rest), apply the fills that happened meanwhile through the ordinary fill
path, take the resting stop's price from the exchange, then make sure the
position is protected. A failed exchange query is never read as "flat":
recovery fails and trading stays refused.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

import structlog

from warden.domain.alerts import Alert, AlertKind
from warden.domain.events import Event, EventKind
from warden.domain.orders import Order, OrderStatus
from warden.domain.plan import tighter
from warden.domain.position import ExitReason, Position, PositionStatus
from warden.domain.reconcile import guard_close, guard_stop, guard_stop_price, uncovered
from warden.domain.reports import OrderReport, PositionReport
from warden.domain.values import (
    ClientOrderId,
    OrderRole,
    PositionId,
    parse_client_id,
)
from warden.ports import ExchangeError, ExchangeUnavailable, Store, StoreUnavailable
from warden.service.collector import paused_while_loading
from warden.service.commands import EngineState, TradingRefused
from warden.service.context import Context
from warden.service.exits import ExitManager
from warden.service.gateway import Found, Gateway, NotFound

log = structlog.get_logger("warden.engine")

STEADY_LOOKS = 60
"""Looks at an unresolved entry on a steady cadence (about a minute) before slowing down."""
SLOW_LOOKS = 60
"""Looks after that, doubling up to 30 s apart (about half an hour)."""
RECOVERY_CONCURRENCY = 64
"""Positions resolved at once during recovery (each waits on its own exchange lookups)."""
WORKING_WATCH = 60.0
"""Seconds an entry given up on and found working is watched for its fill (watch_given_up)."""
CLOSED_READ = 100
"""The most recently opened positions read on a start for closes the process before may have left
in flight (`Recovery._closes_in_flight`)."""


class Recovery:
    def __init__(self, ctx: Context, gateway: Gateway, exits: ExitManager, store: Store) -> None:
        self.ctx = ctx
        self.gw = gateway
        self.exits = exits
        self.store = store
        self.elsewhere: dict[str, list[PositionId]] = {}
        """The account's open positions on another exchange, as the last load found them (left alone)."""
        self._told: set[PositionId] = set()
        """Entries whose failure the trader was told otherwise (a kill with flatten cancelled them
        and its report says so): not entry_failed as well."""
        self._cancel_failed: set[PositionId] = set()
        """Entries whose cancel at their deadline failed and that are said so in the trail (once
        each: the cancel is tried again for as long as recovery looks)."""

    async def load(self) -> list[Position]:
        """Memory is rebuilt from the database (start, takeover): never trusted across a gap in the lease."""
        await self.exits.abandon_sends()
        with paused_while_loading():
            state = await self.store.load_active()
            self.elsewhere = state.elsewhere
            self.ctx.ledger.clear()
            self.ctx.ledger.load(state.positions, state.orders)
        await self._closes_in_flight(state.orders)
        return state.positions

    async def _closes_in_flight(self, orders: list[Order]) -> None:
        """Closes the process before sent with an unknown outcome that may still execute (within
        `entry_deadline` of their send, not known to have ended) are counted as this process's own are
        (`InFlight.close_in_flight`): a signal taken at once on a start would open a position
        one of them could reduce. Those of open positions are loaded; those of positions closed
        since they were sent (a second close went out past them) are read from the most recently
        opened positions."""
        ctx = self.ctx
        for order in orders:
            if order.role is OrderRole.CLOSE:
                self.ctx.flights.close_in_flight(order)
        now, horizon = ctx.clock.now(), ctx.config.entry_deadline
        for position in await self.store.list_positions(include_closed=True, limit=CLOSED_READ):
            ended = position.closed_at
            if position.is_active or ended is None or (now - ended).total_seconds() >= horizon:
                continue
            for order in await self.store.orders_for(position.id):
                if order.role is OrderRole.CLOSE:
                    self.ctx.flights.close_in_flight(order)

    async def guard(self, *, send: bool = True, settle: float = 0.0, leased: bool = True) -> list[str]:
        """The database cannot be read, so nothing is known of warden's positions but what the
        exchange holds: every position there that no resting reduce-only stop covers gets one
        now, at the plan's distance (from the entry, or from the mark if the market is past it),
        under an id of this installation that no position owns. When the database is back,
        recovery protects the real positions and the reconciler cancels the guard's stops as
        strays (after the real stop rests: missing stops are repaired before strays). Returns
        what was placed, for the alert; raises ExchangeError if the exchange cannot be read.
        `send=False`: nothing is sent (no installation id to name a guard by); what is uncovered
        is returned, each marked so. `settle`: a guard sent without the lease (the database
        cannot be opened) goes only where the exchange shows the position uncovered twice,
        `settle` seconds apart: an engine that holds the account meanwhile covers a fill within
        that (its protection window), so one is sent beside its stop only when it fails to.
        `leased`: this engine holds the account, so its guard stop is sent as any stop is and,
        if it is not placed, what it covers is closed (`_close_unguarded`); without the lease it
        is sent once and never closed."""
        ctx = self.ctx
        truth = await self.gw.truth()
        bare = uncovered(truth)
        if settle > 0 and bare:
            await ctx.clock.sleep(settle)
            truth = await self.gw.truth()
            bare = uncovered(truth)
        if not send:
            return [f"{r.symbol} {r.side} {missing} (no stop covers it)" for r, missing in bare]
        if not ctx.instruments:
            ctx.instruments.update(await self.gw.instruments())
        placed = []
        resting = {o.client_order_id for o in truth.open_orders}
        for report, missing in bare:
            inst = ctx.instruments.get(report.symbol)
            if inst is None:
                continue
            try:
                mark = await self.gw.mark_price(report.symbol)
                order = self._guard_order(
                    report,
                    resting,
                    inst.round_qty(missing),
                    inst.round_price(guard_stop_price(report, mark, ctx.config.plan.stop_pct)),
                )
                if not leased:  # sent once, never closed: another engine may hold the account
                    await self.gw.send(order)
            except ExchangeError as exc:
                placed.append(f"{report.symbol}: guard stop failed ({exc})")
                continue
            if leased and (sent := await self.exits.place_guard(order)).report is None:
                await self._close_unguarded(order, sent.why)
                continue
            placed.append(f"{report.symbol} {report.side} {missing}")
        return placed

    async def _close_unguarded(self, stop: Order, why: str) -> None:
        """A guard stop this engine (holding the lease) could not place within a stop's time
        (chaos 1204611195:1617: every stop rested 2.45 s late, and nothing closed the position):
        what it covers is closed at market (`guard_close`), as a position's own stop not placed
        is, when stacking is off (warden's one position on the symbol: nothing of another's is
        closed). With stacking on, or if the close fails, the symbol may be uncovered. Either way
        the trader is told at once (PROTECTION_FAILED), not in the guard's summary."""
        ctx = self.ctx
        what = (
            f"database unreadable at startup; the guard stop of {stop.symbol} {stop.qty}"
            f" was not placed ({why})"
        )
        if ctx.gate.state is EngineState.READY:
            # The database answered while the guard was being retried (it runs beside the start's
            # attempts): startup recovered the positions, and protects or closes each as its own.
            # A close here would take a protected position's size off.
            log.warning("guard_not_placed_after_start", symbol=stop.symbol, why=why)
            return
        if ctx.config.allow_stacking:
            message = f"{what}: not closed blind (stacking is on); check it, close it by hand"
        else:
            close = guard_close(stop, ctx.config.installation_id, ctx.clock.now())
            closed = await self.exits.place_guard(close)
            if closed.report is None:
                message = f"{what}, and its close failed too ({closed.why}): check it, close it by hand"
            else:
                message = f"{what}: closed at market ({close.client_order_id})"
        log.warning("guard_not_placed", symbol=stop.symbol, message=message)
        await ctx.notify(AlertKind.PROTECTION_FAILED, message)

    async def guard_unleased(self, *, send: bool) -> list[str]:
        """`guard` by a process that holds no lease (its database cannot be opened): only where
        the exchange shows a position uncovered twice, half the protection window apart."""
        return await self.guard(send=send, settle=self.ctx.config.protection_window / 2, leased=False)

    def _guard_order(self, report: PositionReport, resting: set[str], qty: Decimal, price: Decimal) -> Order:
        """The symbol's next guard stop: the first of its keys (the symbol, then symbol#1, #2, ...)
        whose id rests nowhere, so a part left uncovered beside one resting (the position grew
        while the database stayed down) gets an id of its own, not the resting one's (refused as
        a duplicate), and the same exchange state names the same id (a send whose answer was lost
        is refused, not doubled). Not keyed by how many rest: with the first of two cancelled by
        hand, that named the second, resting, and what the first covered stayed uncovered."""
        installation, now = self.ctx.config.installation_id, self.ctx.clock.now()
        for n in itertools.count():
            key = report.symbol if n == 0 else f"{report.symbol}#{n}"
            order = guard_stop("guard", key, report.symbol, report.side, qty, price, installation, now)
            if order.client_order_id not in resting:
                return order
        raise AssertionError("unreachable")

    async def recover(self) -> None:
        ctx = self.ctx
        active = ctx.ledger.active_positions()
        # Written while the exchange is asked, not before: a slow database must not hold back
        # the stop of a position that filled just before the restart.
        started = asyncio.ensure_future(
            ctx.ledger.record(
                Event(
                    EventKind.RECOVERY_STARTED,
                    ctx.clock.now(),
                    None,
                    f"{len(active)} active positions",
                    {"active": str(len(active))},
                )
            )
        )
        try:
            open_orders = {r.client_order_id: r for r in await self.gw.open_orders()}
        except BaseException:
            started.cancel()
            await asyncio.gather(started, return_exceptions=True)
            raise
        self.exits.recovery_started = ctx.clock.monotonic()
        gate = asyncio.Semaphore(RECOVERY_CONCURRENCY)
        # Each position is handed its own open orders, grouped once: handing every position all
        # of them made recovery quadratic (10,000 positions, 30,000 orders: three minutes).
        by_position: defaultdict[PositionId, dict[str, OrderReport]] = defaultdict(dict)
        known = ctx.ledger.orders
        for cid, report in open_orders.items():
            order = known.get(ClientOrderId(cid))
            if order is not None:
                by_position[order.position_id][cid] = report
            elif (parsed := parse_client_id(cid)) is not None:  # ours, never recorded: adopted
                by_position[parsed.position_id][cid] = report

        async def one(pid: PositionId) -> None:
            async with gate:
                if ctx.ledger.positions[pid].status is not PositionStatus.PROTECTED:
                    await self._traded_unrecorded(pid)
                await self.resync(pid, by_position.get(pid, {}))

        # Positions the exchange shows exactly as memory has them are left alone here, without a
        # task each (10,000 found in order are the common case after a restart).
        unsettled = [p.id for p in active if not self._as_recorded(p.id, by_position.get(p.id, {}))]
        try:
            await asyncio.gather(*(one(pid) for pid in unsettled))
        except BaseException:
            await asyncio.gather(started, return_exceptions=True)
            raise
        await started
        await ctx.ledger.record(Event(EventKind.RECOVERY_PASSED, ctx.clock.now(), None, "recovery passed"))

    async def _traded_unrecorded(self, pid: PositionId) -> None:
        """Before recovery protects or closes a position that was not protected, its trades are
        read, and an order of its own that traded unrecorded is adopted and applied
        (`ExitManager.catch_up`): a close sent at once when the stop sent on the entry's answer
        was refused goes out while its intent is written, and a process that died in that write
        left a filled close no one knew. The next close would be staged under its id, which the
        exchange takes again once filled (chaos 565405691:3027: with stacking on it closed the
        other position's size, the close traded twice); a stop would rest for a position already
        flat. Unreadable: recovery goes on (protection first), and the pass after reads them."""
        try:
            await self.exits.catch_up(pid)
        except ExchangeError as exc:
            log.warning("recovery_trades_unread", position_id=pid, error=str(exc))

    async def resync(self, pid: PositionId, open_orders: dict[str, OrderReport] | None = None) -> None:
        """Bring one position in line with the exchange, through the ordinary paths.
        `open_orders`: the exchange's open orders (at least this position's); None: asked."""
        ctx = self.ctx
        if open_orders is None:
            open_orders = {r.client_order_id: r for r in await self.gw.open_orders()}
        await self._adopt_unrecorded(pid, open_orders)
        # An order this engine is sending now is its sender's to record: looked up before it
        # reaches the venue, it would be taken for never sent (and refused for good).
        live = [
            o
            for o in ctx.ledger.orders_of(pid)
            if o.status.live and not self.ctx.flights.sending(o.client_order_id)
        ]
        updates: list[Order] = []
        need_fills: set[ClientOrderId] = set()
        # An intent the exchange does not list as open filled or was cancelled meanwhile, or
        # never arrived; its send is long past, so two tries suffice. Each is looked up at once,
        # beside the others: one after another, the stop (or the close replacing it) waited for
        # every take-profit's tries, and a take-profit never sent, because its stop was not
        # placed (`ExitManager._after_stop`), is two tries of not found (0.4 s more uncovered in
        # test_a_start_whose_guard_stop_was_not_placed_tries_its_database_again_at_once).
        unlisted = [o for o in live if o.client_order_id not in open_orders]
        looked = dict(
            zip(
                (o.client_order_id for o in unlisted),
                await asyncio.gather(*(self.gw.lookup(o, attempts=2) for o in unlisted)),
                strict=True,
            )
        )
        for order in live:
            report = open_orders.get(order.client_order_id)
            if report is None:
                found = looked[order.client_order_id]
                if isinstance(found, Found):
                    report = found.report
                elif isinstance(found, NotFound):
                    if self._may_still_trim(pid, order):
                        continue
                    gone = (
                        OrderStatus.REJECTED if order.status is OrderStatus.PENDING else OrderStatus.CANCELED
                    )
                    updates.append(order.advance(gone))
                    continue
                else:
                    raise ExchangeUnavailable(f"cannot learn the state of {order.client_order_id}")
            if report.filled_qty > order.filled_qty:
                need_fills.add(order.client_order_id)
            if report.status is not order.status:
                updates.append(order.advance(report.status, exchange_order_id=report.exchange_order_id))
        if need_fills:
            await self.exits.fetch_fills_for(pid, need_fills)
        if updates:
            await self._record_orders(pid, updates)
        await self._take_stop_price(pid, open_orders)
        await self._settle(pid)

    def _may_still_trim(self, pid: PositionId, order: Order) -> bool:
        """A close of a position that is not closing (one that trims what its stop could not
        grow to cover, `ExitManager._trim_to_stop`, or one given up on), sent with an unknown
        outcome and not found, that may still execute: left pending and followed until it is
        found or can no longer execute. Refused now, the next trim would go out beside it and
        both could execute, closing what the stop covers (a close of all that remains is another
        matter: a second one closes nothing more)."""
        ctx = self.ctx
        if not (
            order.role is OrderRole.CLOSE
            and order.status is OrderStatus.PENDING
            and ctx.ledger.positions[pid].status is not PositionStatus.CLOSING
            and ctx.flights.may_still_execute(order)
        ):
            return False
        ctx.tasks.spawn(self.exits.follow_unknown_close(pid, order))
        return True

    def _as_recorded(self, pid: PositionId, open_orders: dict[str, OrderReport]) -> bool:
        """`resync` would find nothing to do: every open order of the position's on the exchange
        is one memory records, each live order rests there as recorded (status, nothing new
        filled), the stop at the price memory has, and the exits are in order (ExitManager.in_order)."""
        ledger = self.ctx.ledger
        pos = ledger.positions[pid]
        if pos.status is not PositionStatus.PROTECTED or any(c not in ledger.orders for c in open_orders):
            return False
        live = ledger.live_orders(pid)
        if len(live) != len(open_orders):
            return False
        for order in live:
            report = open_orders.get(order.client_order_id)
            if report is None or report.status is not order.status or report.filled_qty > order.filled_qty:
                return False
            if order.role is OrderRole.STOP and report.trigger_price != pos.stop_price:
                return False
        return self.exits.in_order(pid)

    async def _adopt_unrecorded(self, pid: PositionId, open_orders: dict[str, OrderReport]) -> None:
        """Orders of this position resting on the exchange that the database never recorded:
        adopted as they rest (see ExitManager.adopt), so the newest stop is the one kept."""
        found = self.exits.unrecorded(pid, open_orders)
        if not found:
            return
        now = self.ctx.clock.now()
        orders = [
            Order(
                client_order_id=cid,
                position_id=pid,
                role=parsed.role,
                symbol=report.symbol,
                side=report.side,
                type=report.type,
                qty=report.qty,
                trigger_price=report.trigger_price,
                reduce_only=report.reduce_only,
                status=report.status,
                created_at=report.at or now,
                exchange_order_id=report.exchange_order_id,
                filled_qty=report.filled_qty,
            )
            for cid, parsed in found
            for report in [open_orders[cid]]
        ]
        seqs = [p.seq for _, p in found if p.role in (OrderRole.STOP, OrderRole.TP1, OrderRole.TP2)]
        await self.exits.adopt(pid, orders, seqs, "resting")

    async def _record_orders(self, pid: PositionId, updates: list[Order]) -> None:
        ledger = self.ctx.ledger
        async with self.ctx.locks.position(pid):
            pos = ledger.positions[pid]
            # What the fills applied meanwhile recorded already (a stop found filled is FILLED by
            # its fill) is not written again: a transaction that changes nothing, one per position
            # in a mass resync, was a third of its commits.
            merged = [
                m
                for u in updates
                if (
                    m := ledger.orders[u.client_order_id].advance(
                        u.status, exchange_order_id=u.exchange_order_id
                    )
                )
                != ledger.orders[u.client_order_id]
            ]
            if merged:
                await ledger.commit(pos, pos, orders=merged)

    async def _take_stop_price(self, pid: PositionId, open_orders: dict[str, OrderReport]) -> None:
        """The exchange holds the truth about the resting stop: warden's stop price follows it
        when it is tighter (e.g. a break-even move that rested just before a crash). Not when it
        is looser: warden never moves a stop away from the market, so one resting looser under
        the position's id is another process's copy taken as it rests (chaos 1210:295, the
        pass's _stop_as_it_rests, its resize cut short): the plan stays and the stop is moved
        back to it."""
        ledger = self.ctx.ledger
        stop = ledger.current_stop(pid)
        report = open_orders.get(stop.client_order_id) if stop is not None else None
        if report is None or report.trigger_price is None:
            return
        async with self.ctx.locks.position(pid):
            pos = ledger.positions[pid]
            if not pos.is_active or pos.stop_price == report.trigger_price:
                return
            if (
                pos.stop_price is not None
                and tighter(pos.side, pos.stop_price, report.trigger_price) == pos.stop_price
            ):
                return  # looser than the plan: moved back to it (resync's settle)
            event = Event(
                EventKind.STOP_MOVED,
                self.ctx.clock.now(),
                pid,
                f"stop price {pos.stop_price} -> {report.trigger_price} as resting on the exchange",
                {"from": str(pos.stop_price), "to": str(report.trigger_price), "qty": str(report.qty)},
            )
            await ledger.commit(pos, replace(pos, stop_price=report.trigger_price), events=[event])

    def _uncovered_since(self, pos: Position) -> float:
        """When a position recovery finds with no stop was left uncovered, on the engine's
        monotonic clock: one still OPEN (never protected, or its loss known and a stop being
        sent) since its newest stop was made — on its entry's fill, or once its loss was seen —
        or, with none made, since its entry's intent; no later than the start of this recovery.
        The process before may have spent most of the protection window retrying that stop, and
        a start retried while the exchange could not be read more (chaos 1623738294:2291: timed
        from this recovery, the stop was retried 1.1 s more, 3.06 s uncovered)."""
        ctx, exits = self.ctx, self.exits
        now = ctx.clock.monotonic()
        started = exits.recovery_started if exits.recovery_started is not None else now
        if pos.status is not PositionStatus.OPEN:
            return started
        stops = [o for o in ctx.ledger.orders_of(pos.id) if o.role is OrderRole.STOP]
        made = max(stops, key=lambda o: o.created_at).created_at if stops else pos.opened_at
        return min(started, now - max(0.0, (ctx.clock.now() - made).total_seconds()))

    async def _settle(self, pid: PositionId) -> None:
        ctx, exits = self.ctx, self.exits
        pos = ctx.ledger.positions[pid]
        if pos.status is PositionStatus.OPENING:
            entry = next((o for o in ctx.ledger.orders_of(pid) if o.role is OrderRole.ENTRY), None)
            if entry is not None and entry.status.terminal and pos.filled_qty <= 0:
                await self.fail_entry(pid, entry, f"entry {entry.status} (found by recovery)")
            return
        if pos.status is PositionStatus.CLOSING:
            if not ctx.ledger.live_orders(pid, OrderRole.CLOSE) and pos.remaining > 0:
                await exits.close(pid, pos.exit_reason or ExitReason.MANUAL)
            return
        if pos.status.terminal:
            await exits.cancel_exits(pid)
            return
        if pos.remaining <= 0 or exits.in_order(pid):
            return
        await exits.cancel_superseded_stops(pid)
        stop = ctx.ledger.current_stop(pid)
        if stop is None:  # unprotected: timed from the start of recovery, or from before it
            exits.exposed_from(pid, self._uncovered_since(pos))
        if stop is None and pos.status is PositionStatus.PROTECTED:
            async with ctx.locks.position(pid):
                pos = ctx.ledger.positions[pid]
                event = Event(
                    EventKind.PROTECTION_LOST, ctx.clock.now(), pid, "no resting stop found by recovery"
                )
                await ctx.ledger.commit(pos, pos.transition(PositionStatus.OPEN), events=[event])
            await ctx.notify(
                AlertKind.STOP_REPLACED,
                f"{pos.symbol}: its stop was gone (found by recovery); re-placing it",
                pid,
            )
        if stop is not None:
            await exits.resize(pid)
        await exits.protect(pid)

    def told_elsewhere(self, pid: PositionId) -> None:
        """The trader is told of this entry's end otherwise (the kill's report): fail_entry does
        not alert it."""
        self._told.add(pid)

    async def fail_entry(self, pid: PositionId, entry: Order, reason: str, *, tell: bool = True) -> Position:
        """The entry ended with nothing filled: the position is FAILED, and the trader is told
        (entry_failed, written with the transition): whoever sent it may not hear the outcome (a
        webhook's answer goes to TradingView's server, which shows it to nobody; a 202 was the
        answer; a script or terminal nobody watches), and the strategy then believes it holds
        what the account does not. `tell` False: the caller tells the trader itself (an entry
        refused by a control the trader set, a failure a Telegram command or a flip is answered
        with: OpenPosition.caller_tells); nor one a kill cancelled (told_elsewhere)."""
        ctx = self.ctx
        alerts: list[Alert] = []
        async with ctx.locks.position(pid):
            position = ctx.ledger.positions[pid]
            if position.status is not PositionStatus.OPENING or position.filled_qty > 0:
                return position
            failed = position.transition(PositionStatus.FAILED)
            event = Event(EventKind.ENTRY_FAILED, ctx.clock.now(), pid, reason)
            order = ctx.ledger.orders[entry.client_order_id].advance(OrderStatus.REJECTED)
            if order.status is not OrderStatus.REJECTED:
                order = ctx.ledger.orders[entry.client_order_id]
            if tell and pid not in self._told:
                alerts.append(ctx.make_alert(AlertKind.ENTRY_FAILED, _entry_failed(position, reason), pid))
            # The write may take seconds (a slow database): a fill of the entry landing meanwhile
            # waits for this lock, so it is covered first (chaos 1237:260).
            ctx.flights.giving_up.add(pid)
            try:
                done = await ctx.ledger.commit(
                    position, failed, orders=[order], events=[event], alerts=alerts
                )
            finally:
                ctx.flights.giving_up.discard(pid)
        self._told.discard(pid)
        await ctx.announce(*alerts)
        if self.gw.together and ctx.ledger.live_orders(pid):
            # Its stop and take-profits travelled with it (one transaction): reduce-only, so
            # harmless, but nothing of a failed position may stay. Cancelled (one that never
            # landed is found so); a crash before this leaves them to the reconciler (strays).
            await self.exits.cancel_exits(pid)
            return ctx.ledger.positions.get(pid, done)
        return done

    async def watch_given_up(self, pid: PositionId, entry: Order) -> None:
        """An entry given up on after an unknown outcome (its lookups found nothing) may still
        execute for `entry_deadline` after it was sent: a venue runs a timed-out request seconds
        later. Its fill on the stream is covered and reconciled at once (ExitManager.late_entry),
        but a stream that lost it left it to the next reconcile pass (chaos 291220366:110: 27 s
        without a stop). So it is looked up again, every half protection window, until it can
        no longer execute (one look more after that), or, found working, until it ends (a minute
        at most); found executed, a pass runs at once, which adopts it as that entry's and
        protects it (and records its trades, read over REST). Found executed while still
        working (filling in parts), it is watched on, every quarter window, each new part
        covered and adopted the same way, until it ends."""
        ctx = self.ctx
        steady = ctx.config.protection_window / 2
        working_since: float | None = None
        covered = Decimal(0)
        while True:
            position = ctx.ledger.positions.get(pid)
            if position is None or position.status is not PositionStatus.FAILED:
                return
            try:
                found = await self.gw.lookup(entry, attempts=1)
            except ExchangeError:
                found = None
            if isinstance(found, Found) and found.report.filled_qty > covered:
                log.warning("given_up_entry_executed", position_id=pid, qty=str(found.report.filled_qty))
                await self._cover_found(entry, position)
                if self.exits.pass_again is not None:
                    try:
                        await self.exits.pass_again()
                    except (ExchangeError, StoreUnavailable, TradingRefused) as exc:
                        log.warning("given_up_entry_pass_failed", position_id=pid, error=str(exc))
                if found.report.status.terminal:
                    return
                # Still working: it fills in parts (a thin book), and a stream that lost the
                # first part's fill may lose the next (chaos 2106947948:221: the watch ended at
                # the first of five parts, and the second grew the position past its stop for
                # 2 s, until a pass). Watched on, each part covered as the first was.
                covered = found.report.filled_qty
            if isinstance(found, Found):
                if found.report.status.terminal:
                    return  # ended unfilled (cancelled, expired)
                # Working (acknowledged, not filled): it may fill at any moment, past the
                # deadline too, and its fill on the stream may be lost (chaos 1266763949:3222:
                # it filled 12 s later, 13.1 s without a stop). Watched until it ends, for a
                # minute at most on this cadence; after that the passes (every
                # `reconcile_interval`) are what finds it.
                working_since = working_since if working_since is not None else ctx.clock.monotonic()
                if ctx.clock.monotonic() - working_since > WORKING_WATCH:
                    return
            elif ctx.flights.may_execute_for(entry) < -steady:
                return  # it can no longer execute
            # A part filled already: the next is covered within a quarter window of filling, as a
            # working order's are (work_order).
            await ctx.clock.sleep(steady / 2 if covered else steady)

    async def _cover_found(self, entry: Order, position: Position) -> None:
        """The trades of an entry given up on, found executed, covered as their stream fills would
        have been (`cover_late_entry`), before the pass's adoption writes anything (a slow
        database held that stop back 2 s: chaos 1223:147 with the watch), then recorded as they
        would have been (`record_late_trade`): the pass reads the trades of the entries an orphan
        is, but one adopted already (another stacked entry's fill came on the stream) leaves no
        orphan, and this one's trade would be recorded nowhere. Unreadable: the pass alone
        protects it."""
        try:
            fills = await self.gw.fills_of(entry, position.opened_at)
        except ExchangeError as exc:
            log.warning("given_up_entry_fills_unread", client_order_id=entry.client_order_id, error=str(exc))
            return
        for fill in fills:
            await self.exits.cover_late_entry(fill)
        try:
            for fill in fills:
                message = f"fill {fill.trade_id} after {position.status} (found by its watch)"
                await self.exits.record_late_trade(fill, position.id, message)
        except TradingRefused as exc:  # this engine may not write any more: the holder's pass reads it
            log.warning(
                "given_up_entry_trades_unrecorded", client_order_id=entry.client_order_id, error=str(exc)
            )

    async def resolve_entry(self, pid: PositionId) -> None:
        """An entry whose outcome is not known yet (timed out, answered filled with fills not
        readable yet, or working): keep looking until it is, then make sure it is protected.

        The position may be on the exchange without a stop all the while, so for the first
        minute it is looked at on a short, steady cadence (at most half the protection window
        apart), never a doubling backoff: the stop goes out within the window of the exchange
        answering again, however long it did not. After that the trader is alerted and the
        looking goes on, more slowly, for about half an hour. An entry resolved meanwhile by
        another path (its fill on the stream) is protected here: the saga handed it over."""
        ctx = self.ctx
        steady = ctx.config.protection_window / 2
        for attempt in range(STEADY_LOOKS + SLOW_LOOKS):
            if attempt < STEADY_LOOKS:
                delay = min(steady, ctx.config.retry_backoff * (attempt + 1))
            else:
                delay = min(30.0, steady * 2 ** (attempt - STEADY_LOOKS + 1))
            if attempt == STEADY_LOOKS:
                await ctx.notify(
                    AlertKind.ENTRY_UNRESOLVED,
                    f"{_entry_of(ctx.ledger.positions.get(pid), pid)}: outcome still unknown after a"
                    " minute (it may be open with no stop); still looking; check the exchange",
                    pid,
                )
            await ctx.clock.sleep(delay)
            position = ctx.ledger.positions.get(pid)
            if position is None or not position.is_active:
                return
            if position.status is not PositionStatus.OPENING:
                await self.exits.protect(pid)
                return
            try:
                await self.resync(pid)
            except ExchangeError:
                continue
            position = ctx.ledger.positions[pid]
            if position.status is not PositionStatus.OPENING:
                if position.is_active:
                    await self.exits.protect(pid)
                return
            entry = next((o for o in ctx.ledger.orders_of(pid) if o.role is OrderRole.ENTRY), None)
            if entry is not None and entry.status is OrderStatus.OPEN and attempt >= 3:
                await self.cancel_working_entry(pid, entry)
        await ctx.notify(
            AlertKind.ENTRY_UNRESOLVED,
            f"{_entry_of(ctx.ledger.positions.get(pid), pid)}: outcome still unknown (it may be open"
            " with no stop); check the exchange",
            pid,
        )

    async def cancel_working_entry(self, pid: PositionId, entry: Order) -> Position:
        """An entry acknowledged but unfilled at its deadline: cancel it and act on the cancel's
        answer (what filled meanwhile is protected; nothing filled means the entry failed).

        If the cancel fails, the entry is settled only by what a lookup shows ended (cancelled,
        filled, expired). Still working, or not found, it is left as it is (the position stays
        opening) for the caller to try again: it could still fill, so it is neither recorded
        cancelled nor its position failed while it works."""
        ctx, exits = self.ctx, self.exits
        report: OrderReport | None = None
        try:
            report = await self.gw.cancel(entry.symbol, entry.client_order_id, entry.type.conditional)
        except ExchangeError as exc:
            found = await self.gw.lookup(entry, attempts=2)
            if isinstance(found, Found) and found.report.status.terminal:
                report = found.report
            elif pid not in self._cancel_failed:
                self._cancel_failed.add(pid)
                await ctx.ledger.record(
                    Event(
                        EventKind.ENTRY_UNKNOWN,
                        ctx.clock.now(),
                        pid,
                        f"entry unfilled at its deadline and its cancel failed ({exc}); it may still"
                        " be working: trying again",
                    )
                )
        if report is None:
            return ctx.ledger.positions[pid]
        self._cancel_failed.discard(pid)
        if report.filled_qty > exits.applied(entry.client_order_id):
            await exits.wait_for_fills(pid, entry.client_order_id, report.filled_qty, ctx.config.fill_wait)
        async with ctx.locks.position(pid):
            pos = ctx.ledger.positions[pid]
            current = ctx.ledger.orders[entry.client_order_id]
            status = report.status if report.status.terminal else OrderStatus.CANCELED
            done = current.advance(status, exchange_order_id=report.exchange_order_id)
            new = pos
            if pos.filled_qty > 0 and pos.target_qty != pos.filled_qty:
                new = replace(pos, target_qty=pos.filled_qty)
            event = Event(
                EventKind.ENTRY_FILLED if pos.filled_qty > 0 else EventKind.ENTRY_FAILED,
                ctx.clock.now(),
                pid,
                f"entry cancelled at its deadline with {pos.filled_qty} of {pos.target_qty} filled",
            )
            pos = await ctx.ledger.commit(pos, new, orders=[done], events=[event])
        if pos.status is PositionStatus.OPENING and pos.filled_qty <= 0:
            return await self.fail_entry(pid, entry, "entry cancelled unfilled at its deadline")
        return await exits.protect(pid)


REASON_SHOWN = 300
"""The most of the exchange's reason an entry_failed alert carries."""


def _entry_failed(position: Position, reason: str) -> str:
    """What entry_failed says: which entry (symbol, side, position, who sent it), why, and that
    nothing of it is held."""
    why = reason if len(reason) <= REASON_SHOWN else reason[:REASON_SHOWN] + "…"
    side = position.side.value
    return (
        f"{position.symbol} {side} entry {position.id} (from {position.origin or 'unknown'}) failed,"
        f" nothing filled: {why}; the account holds nothing from it, while whoever sent it may believe"
        f" it is {side}: send it again with a new signal_id if it still stands"
    )


def _entry_of(position: Position | None, pid: PositionId) -> str:
    """An entry as the trader looks for it on the exchange: symbol, side, size (and warden's id)."""
    if position is None:
        return f"entry of {pid}"
    return f"{position.symbol} {position.side} entry of {position.target_qty} ({pid})"
