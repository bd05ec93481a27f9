"""Opening a position: the saga (DESIGN.md "Opening a position").

1. validate; refuse (nothing sent) unless recovery passed, the DB is writable and
   no control (pause, kill switch, daily-loss pause) or risk limit says no —
   the limits are checked again under one lock with the commit, so concurrent
   entries count each other;
2. per symbol, serialized from the duplicate check to the commit: one
   transaction writes the position OPENING + the entry intent with a
   deterministic client order id + an event (if this commit fails, the caller
   gets StoreUnavailable and nothing was sent; the database's unique index
   refuses a second open position on the symbol unless stacking is on);
3. the order is known in memory *before* it is sent, so a fill that races the
   REST answer is applied, not dropped;
4. send with a deadline; a timeout is an unknown outcome, resolved by looking
   the order up by its client order id — never a blind resend or rollback;
5. an acknowledged order is *working*: its fills are awaited (stream, lookup,
   REST fills); what filled is protected; unfilled at the deadline it is
   cancelled and the cancel's answer decides;
6. protect: stop + exact-quantity take-profits on the exchange (exits.py).

After the commit the caller is never told "nothing was sent": it gets the
position as it stands (OPENING while the outcome is being resolved). An entry
that ends with nothing filled is FAILED and told to the trader (entry_failed,
Recovery.fail_entry) whoever sent it, unless its caller tells the failure it is
answered with (OpenPosition.caller_tells) or a control the trader set refused it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from decimal import Decimal

import structlog

from warden.domain.errors import ValidationError
from warden.domain.events import Event, EventKind
from warden.domain.margin import SymbolConfig, check_stop
from warden.domain.orders import Order, OrderStatus
from warden.domain.plan import ExitPlan, levels_for
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import OrderReport
from warden.domain.sizing import order_qty
from warden.domain.values import Instrument, OrderRole, OrderType, PositionId, Side, Symbol
from warden.ports import (
    DuplicateSignal,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderRejected,
    Store,
    StoreUnavailable,
    SymbolBusy,
)
from warden.service.commands import AlreadyExists, OpenPosition, TradingRefused
from warden.service.context import Context
from warden.service.controls import ControlPanel
from warden.service.exits import ExitManager, make_intent
from warden.service.gateway import Found, Gateway, Lookup, NotFound
from warden.service.recovery import Recovery

log = structlog.get_logger("warden.engine")


def random_position_id() -> str:
    return secrets.token_hex(6)


class Opener:
    def __init__(
        self,
        ctx: Context,
        gateway: Gateway,
        exits: ExitManager,
        recovery: Recovery,
        store: Store,
        replay_early: Callable[[str], Awaitable[None]],
        new_id: Callable[[], str] = random_position_id,
        controls: ControlPanel | None = None,
    ) -> None:
        self.ctx = ctx
        self.gw = gateway
        self.exits = exits
        self.recovery = recovery
        self.store = store
        self.replay_early = replay_early
        self.new_id = new_id
        self.controls = controls or ControlPanel(ctx, store, ctx.config.limits)
        self._configured: set[Symbol] = set()
        """Symbols whose leverage and margin mode this engine has set (or found right)."""

    async def open(self, cmd: OpenPosition, check_trading: Callable[[], None]) -> Position:
        """Run the open saga; see the module docstring."""
        ctx = self.ctx
        check_trading()
        inst, mark, qty, stop, tp1, tp2 = await self._priced(cmd)
        plan = ctx.config.plan if cmd.trail_pct is None else replace(ctx.config.plan, trail_pct=cmd.trail_pct)
        margin = ctx.config.margin.for_symbol(inst.symbol)
        await self._refuse_duplicates(cmd, inst)
        await self.controls.check_entry(qty * mark)
        async with ctx.locks.symbol(inst.symbol):
            await self._configure(inst.symbol, margin)
        async with ctx.locks.symbol(inst.symbol), self.controls.entry_lock:
            check_trading()
            await self._refuse_duplicates(cmd, inst)
            await self.controls.check_entry(qty * mark)
            pid = PositionId(cmd.position_id or self.new_id())
            now = ctx.clock.now()
            position = Position(
                id=pid,
                symbol=inst.symbol,
                side=cmd.side,
                status=PositionStatus.OPENING,
                target_qty=qty,
                plan=plan,
                opened_at=now,
                signal_id=cmd.signal_id,
                origin=cmd.source,
                stop_price=stop,
                tp1_price=tp1,
                tp2_price=tp2,
                exclusive=not ctx.config.allow_stacking,
            )
            entry = make_intent(ctx, position, OrderRole.ENTRY, 1, OrderType.MARKET, qty)
            protection = self._exits_with_entry(position, inst, mark) if self.gw.together else []
            opening = Event(
                EventKind.POSITION_OPENING,
                now,
                pid,
                f"{cmd.side} {qty} {inst.symbol} from {cmd.source}",
                {"qty": str(qty), "mark": str(mark), "source": cmd.source},
            )
            try:
                await ctx.ledger.commit(
                    None, position, orders=[entry, *protection], events=[opening], must_be_durable=True
                )
            except DuplicateSignal as exc:
                raise AlreadyExists(await self._existing(exc.signal_id)) from exc
            except SymbolBusy as exc:
                raise AlreadyExists(
                    await self._holder(inst.symbol, exc), f"{inst.symbol} already has an open position"
                ) from exc
            self.controls.admitted(pid, qty * mark)
        ctx.saga_begin(pid)
        try:
            for order in (entry, *protection):
                await self.replay_early(order.client_order_id)
            await self._refuse_after_commit(pid, entry)
            return await self._send_and_settle(pid, entry, protection, tell=not cmd.caller_tells)
        finally:
            ctx.saga_end(pid)

    async def check(self, cmd: OpenPosition, replacing: Collection[PositionId] = ()) -> None:
        """Raise what `open` would refuse `cmd` for before writing or sending anything (its
        validation, a resent signal id, the risk limits), counting the positions `replacing`
        as gone: a flip asks before it closes the position it replaces."""
        _, mark, qty, *_ = await self._priced(cmd)
        if cmd.signal_id and (existing := await self.store.find_by_signal(cmd.signal_id)) is not None:
            raise AlreadyExists(existing)
        await self.controls.check_entry(qty * mark, replacing)

    async def _priced(
        self, cmd: OpenPosition
    ) -> tuple[Instrument, Decimal, Decimal, Decimal | None, Decimal | None, Decimal | None]:
        """The instrument, the mark, the quantity, and the signal's own stop and take-profits,
        validated against the mark (ValidationError naming the field otherwise)."""
        inst = self._instrument(cmd.symbol)
        mark = self.exits.fresh_mark(inst.symbol)
        if mark is None:
            try:
                mark = await self.gw.mark_price(inst.symbol)
            except ExchangeError as exc:
                raise TradingRefused(f"exchange unavailable, nothing was sent: {exc}") from exc
        qty = order_qty(inst, mark, cmd.usd, cmd.qty)
        stop = self._validate_stop(cmd, inst, mark)
        tp1, tp2 = self._validate_take_profits(cmd, inst, mark)
        margin = self.ctx.config.margin.for_symbol(inst.symbol)
        check_stop(cmd.side, stop or self._plan_stop(cmd.side, mark), mark, margin)
        return inst, mark, qty, stop, tp1, tp2

    async def _refuse_after_commit(self, pid: PositionId, entry: Order) -> None:
        """What went on while the intent was being committed refuses the entry; nothing was sent
        yet, so nothing is. A control (the kill switch, a pause; the kill may have answered); or
        a close that may still land and reduce it: a position alone on the symbol began sending a
        second close while its first may still execute (ExitManager._alone), after this signal's
        checks."""
        refusal = self.controls.state.refusal(self.ctx.clock.now())
        if refusal is None:
            refusal = self._close_landing(entry.symbol, self.ctx.ledger.positions[pid].side)
        if refusal is not None:
            # A control's own alert (paused, kill_on, daily_loss_reached) says it; the caller
            # is answered the refusal.
            await self.recovery.fail_entry(pid, entry, f"not sent: {refusal}", tell=False)
            raise TradingRefused(f"nothing was sent: {refusal}")

    def _close_landing(self, symbol: Symbol, side: Side) -> str | None:
        """Why a new `side` position on `symbol` must not be opened now: a close sent with an
        unknown outcome may still execute and would reduce it (`InFlight.close_may_land`)."""
        landing = self.ctx.flights.close_may_land(symbol, side)
        if landing <= 0:
            return None
        return (
            f"a close of a {symbol} {side} position, sent with an unknown outcome, may still execute"
            f" for {landing:.1f} s and would reduce a new {side}; send the signal again after that"
        )

    def _exits_with_entry(self, position: Position, inst: Instrument, mark: Decimal) -> list[Order]:
        """The stop and take-profits that travel with the entry on a venue that takes them together
        (Gateway.together): priced by the plan at the mark the entry is expected to fill at, the
        stop for the entry's whole quantity, all at exit sequence 1. The position itself is not
        priced yet (stop_seq 0): the entry's first fill prices it (ExitManager.apply_fill), and the
        stop then moves to the plan's level from the fill price only if that is tighter."""
        levels = levels_for(
            position.plan, position.side, mark, position.target_qty, inst, position.stop_price
        )
        priced = position.with_levels(levels)
        qty = position.target_qty
        intents = [
            make_intent(self.ctx, position, OrderRole.STOP, 1, OrderType.STOP_MARKET, qty, priced.stop_price)
        ]
        for role, tp_qty, price in (
            (OrderRole.TP1, priced.tp1_qty, priced.tp1_price),
            (OrderRole.TP2, priced.tp2_qty, priced.tp2_price),
        ):
            if tp_qty > 0:
                intents.append(
                    make_intent(self.ctx, position, role, 1, OrderType.TAKE_PROFIT_MARKET, tp_qty, price)
                )
        return intents

    async def _send(self, pid: PositionId, entry: Order, protection: list[Order]) -> OrderReport:
        """Send the entry; with its exits in the same all-or-nothing request when there are any
        (their answers are recorded before the entry's is acted on)."""
        if not protection:
            return await self.gw.send(entry)
        reports = await self.gw.send_together([entry, *protection])
        await self.exits.record_placed(pid, protection, reports[1:])
        return reports[0]

    async def _look_up(self, entry: Order, protection: list[Order]) -> Lookup:
        """An entry of unknown outcome, by its client id; exits sent with it landed with it or not
        at all: found, they are looked up too (never sent again)."""
        found = await self.gw.lookup(entry)
        if protection and isinstance(found, Found):
            await self.exits.settle_unknown_exits(entry.position_id)
        return found

    async def _send_and_settle(
        self, pid: PositionId, entry: Order, protection: list[Order], *, tell: bool = True
    ) -> Position:
        """Send the entry and act on the answer; an entry failed here is answered to the caller
        (`tell` False: the caller tells the trader; see OpenPosition.caller_tells)."""
        ctx, exits = self.ctx, self.exits
        report: OrderReport | None = None
        try:
            report = await self._send(pid, entry, protection)
        except OrderRejected as exc:
            return await self.recovery.fail_entry(pid, entry, f"rejected: {exc}", tell=tell)
        except ExchangeUnavailable as exc:
            return await self.recovery.fail_entry(pid, entry, f"exchange unavailable: {exc}", tell=tell)
        except TradingRefused as exc:
            # The lease was lost between the commit and the send: nothing was sent.
            raise TradingRefused(f"nothing was sent: {exc}") from exc
        except ExchangeTimeout:
            await ctx.ledger.record(
                Event(EventKind.ENTRY_UNKNOWN, ctx.clock.now(), pid, "entry timed out; looking it up")
            )
            found = await self._look_up(entry, protection)
            if isinstance(found, NotFound):
                failed = await self.recovery.fail_entry(pid, entry, found.why, tell=tell)
                ctx.tasks.spawn(self.recovery.watch_given_up(pid, entry))
                return failed
            if not isinstance(found, Found):
                ctx.tasks.spawn(self.recovery.resolve_entry(pid))
                return ctx.ledger.positions[pid]
            report = found.report
        if report.status.terminal and report.filled_qty <= 0:
            return await self.recovery.fail_entry(pid, entry, f"entry {report.status}", tell=tell)
        if report.status is OrderStatus.FILLED:
            exits.send_stop_early(pid, report)  # its fills are applied and written meanwhile
        if report.status.terminal:
            await exits.wait_for_fills(pid, entry.client_order_id, report.filled_qty, ctx.config.fill_wait)
        else:
            # Acknowledged, not (fully) filled: working. Wait here up to fill_wait for the
            # caller's sake; the rest of the deadline runs in the background.
            report = await exits.work_order(entry, report, ctx.config.fill_wait)
            if not self._entry_done(entry, report):
                ctx.saga_begin(pid)  # held by the background part until it ends
                ctx.tasks.spawn(self._finish_working(pid, entry))
                return ctx.ledger.positions[pid]
        position = ctx.ledger.positions[pid]
        if position.status is PositionStatus.OPENING:
            # Filled on the exchange, but no fill reached us yet from any source:
            # keep resolving (lookup + REST fills) until it is applied and protected.
            ctx.tasks.spawn(self.recovery.resolve_entry(pid))
            return position
        return await exits.protect(pid)

    async def _finish_working(self, pid: PositionId, entry: Order) -> None:
        ctx = self.ctx
        try:
            report = await self.exits.work_order(entry, None, ctx.config.entry_deadline)
            position = ctx.ledger.positions[pid]
            if self._entry_done(entry, report) and position.status is not PositionStatus.OPENING:
                try:
                    await self.exits.protect(pid)
                except (ExchangeUnavailable, OrderRejected) as exc:
                    # Its stop not placed and its close not filled: the next round of protect-or-
                    # close is on its way, its event and alert written. A warning, not a
                    # background task's traceback (the caller was answered long ago).
                    log.warning("protect_or_close_round_failed", position_id=pid, error=str(exc))
                return
            position = await self.recovery.cancel_working_entry(pid, ctx.ledger.orders[entry.client_order_id])
            if position.status is PositionStatus.OPENING:
                # The cancel did not take (the entry may still be working): recovery keeps
                # looking and cancelling until the exchange settles it, and alerts if it cannot.
                ctx.tasks.spawn(self.recovery.resolve_entry(pid))
        finally:
            ctx.saga_end(pid)

    def _entry_done(self, entry: Order, report: OrderReport | None) -> bool:
        """The entry stopped working: the exchange says so, or its fills were all applied."""
        current = self.ctx.ledger.orders.get(entry.client_order_id, entry)
        return (report is not None and report.status.terminal) or (
            current.status.terminal and current.filled_qty >= current.qty
        )

    def _plan_stop(self, side: Side, mark: Decimal) -> Decimal:
        """Where the plan's stop would sit for an entry at `mark` (before the fill is known)."""
        return mark * (1 - side.sign * self.ctx.config.plan.stop_pct)

    async def _configure(self, symbol: Symbol, wanted: SymbolConfig) -> None:
        """Before the first entry on a symbol: set its leverage and margin mode if they differ."""
        if wanted.empty or symbol in self._configured:
            return
        try:
            actual = await self.gw.symbol_config(symbol)
            if wanted.differs_from(actual):
                await self.gw.configure_symbol(symbol, wanted)
        except ExchangeError as exc:
            raise TradingRefused(
                f"could not set {symbol} to {_describe(wanted)} ({exc}); nothing was sent"
            ) from exc
        self._configured.add(symbol)

    def _instrument(self, symbol: str) -> Instrument:
        inst = self.ctx.instruments.get(Symbol(symbol))
        if inst is None:
            known = ", ".join(sorted(self.ctx.instruments)) or "none loaded"
            raise ValidationError("symbol", f"unknown symbol {symbol!r} (known: {known})")
        if not inst.listed:
            raise ValidationError(
                "symbol",
                f"{inst.symbol} is not listed by the exchange (delisted, settling or halted): warden"
                " only manages the positions it held there; nothing was sent",
            )
        return inst

    async def _refuse_duplicates(self, cmd: OpenPosition, inst: Instrument) -> None:
        if cmd.signal_id:
            existing = await self.store.find_by_signal(cmd.signal_id)
            if existing is not None:
                raise AlreadyExists(existing)
        landing = self._close_landing(inst.symbol, cmd.side)
        if landing is not None:
            raise TradingRefused(f"nothing was sent: {landing}")
        for pid in self.ctx.ledger.by_symbol.get(inst.symbol, ()):
            held = self.ctx.ledger.positions[pid]
            if not self.ctx.config.allow_stacking:
                raise AlreadyExists(held, f"{inst.symbol} already has an open position")
            if held.side is not cmd.side:  # a one-way account nets the other side against it
                raise AlreadyExists(
                    held, f"{inst.symbol} holds a {held.side} position; a {cmd.side} would net against it"
                )
        self._refuse_beyond_cap(inst)

    def _refuse_beyond_cap(self, inst: Instrument) -> None:
        """A stacked entry whose exits would not fit under the exchange's cap on resting
        conditional orders per symbol (`Instrument.max_conditional`) is refused, nothing sent.
        Sent, its stop or take-profits would be refused once it had filled: a position without
        its take-profits, or closed at once for want of a stop. Counted: what each of warden's
        positions there holds or will hold (its stop and the take-profits it has not hit, or
        more while a stop is being moved), the new position's stop and take-profits, and one
        kept free, since a stop moves by resting the new one before cancelling the old. The
        account's other conditional orders on the symbol (placed by hand) are not known here:
        they are met as refusals, which alert and are retried."""
        cap = inst.max_conditional
        positions = self.ctx.ledger.by_symbol.get(inst.symbol, ())
        if cap is None or not positions:
            return
        held = sum(self._conditional_held(pid) for pid in positions)
        needed = _exits_of(self.ctx.config.plan, tp1_hit=False, tp2_hit=False)
        if held + needed + 1 > cap:
            raise TradingRefused(
                f"nothing was sent: {inst.symbol} has room for {cap} resting stops and take-profits"
                f" on this account; its {len(positions)} open positions hold or will hold {held}, a"
                f" new one needs {needed} and one is kept free to move a stop. Close one first"
            )

    def _conditional_held(self, pid: PositionId) -> int:
        pos = self.ctx.ledger.positions[pid]
        live = sum(1 for o in self.ctx.ledger.live_orders(pid) if o.type.conditional)
        return max(live, _exits_of(pos.plan, tp1_hit=pos.tp1_hit, tp2_hit=pos.tp2_hit))

    async def _existing(self, signal_id: str) -> Position:
        existing = await self.store.find_by_signal(signal_id)
        if existing is None:  # pragma: no cover - the unique index just said it exists
            raise StoreUnavailable(f"signal {signal_id} reported duplicate but not found")
        return existing

    async def _holder(self, symbol: Symbol, exc: SymbolBusy) -> Position:
        pid = exc.position_id
        if pid is not None:
            held = self.ctx.ledger.positions.get(pid) or await self.store.get_position(pid)
            if held is not None:
                return held
        for position in await self.store.list_positions(limit=1000):
            if position.symbol == symbol and position.is_active:
                return position
        raise StoreUnavailable(f"{symbol} reported busy but no open position was found")

    def _validate_take_profits(
        self, cmd: OpenPosition, inst: Instrument, mark: Decimal
    ) -> tuple[Decimal | None, Decimal | None]:
        """A signal's own take-profit prices: on the profit side of the mark, TP2 beyond TP1."""
        out: list[Decimal | None] = []
        for name, raw in (("tp1_price", cmd.tp1_price), ("tp2_price", cmd.tp2_price)):
            if raw is None:
                out.append(None)
                continue
            price = inst.round_price(raw)
            if price <= 0 or (price - mark) * cmd.side.sign <= 0:
                side = "above" if cmd.side is Side.LONG else "below"
                raise ValidationError(name, f"a {cmd.side} take-profit must be {side} the mark price {mark}")
            out.append(price)
        tp1, tp2 = out
        if tp1 is not None and tp2 is not None and (tp2 - tp1) * cmd.side.sign <= 0:
            raise ValidationError("tp2_price", f"must be beyond tp1_price {tp1}")
        return tp1, tp2

    def _validate_stop(self, cmd: OpenPosition, inst: Instrument, mark: Decimal) -> Decimal | None:
        if cmd.stop_price is None:
            return None
        stop = inst.round_price(cmd.stop_price)
        if stop <= 0 or stop < inst.tick_size:
            raise ValidationError("stop_price", f"{cmd.stop_price} rounds to {stop}, below the price step")
        if (cmd.side is Side.LONG and stop >= mark) or (cmd.side is Side.SHORT and stop <= mark):
            side = "below" if cmd.side is Side.LONG else "above"
            raise ValidationError("stop_price", f"a {cmd.side} stop must be {side} the mark price {mark}")
        return stop


def _describe(config: SymbolConfig) -> str:
    parts = [f"{config.leverage}x" if config.leverage else "", str(config.margin_mode or "")]
    return " ".join(p for p in parts if p)


def _exits_of(plan: ExitPlan, *, tp1_hit: bool, tp2_hit: bool) -> int:
    """The conditional orders a position under `plan` rests: its stop, and each take-profit
    that closes a share and has not been hit."""
    return 1 + (not tp1_hit and plan.tp1_fraction > 0) + (not tp2_hit and plan.tp2_fraction > 0)
