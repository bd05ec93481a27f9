"""The engine: the facade the entrypoints call, and its lifecycle.

It builds its parts once, each given what it needs at construction:

    Context (ledger, gate, clock, notifier, deliverer, config, tasks, locks)
    Deliverer    alerts from the outbox to the channels, at least once  (delivery.py)
    ControlPanel pause, kill switch, daily-loss pause, risk limits      (controls.py)
    Gateway      every exchange call: deadlines, lookups, the lease/fence check
    ExitManager  fills, protection, stop moves, resizing, closing   (exits.py)
    Recovery     startup / takeover / stream-gap resync            (recovery.py)
    Opener       the open saga                                      (opening.py)
    Reconciler   exchange vs database vs memory                     (reconciler.py)
    Router       stream events to their owners, the early buffer    (router.py)
    StreamWatch  a stream silent while positions are open           (watch.py)

Lifecycle: `start()` is recovery (load from the database, take the exchange's
truth, repair, reconcile) and only then accepts signals; `start_with_retry()`
keeps trying with backoff and says why on /status. The loops (stream, timers)
run in the engine's own task set: `stand_down()` (the lease went to another
engine) cancels every one of them, so nothing acts after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from warden.domain.alerts import AlertKind, AlertRoutes
from warden.domain.controls import Controls
from warden.domain.errors import ValidationError
from warden.domain.events import Event, EventKind
from warden.domain.orders import OrderStatus
from warden.domain.plan import tighter
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import FillReport, StreamEvent
from warden.domain.tally import Tally
from warden.domain.values import Instrument, OrderRole, PositionId, Symbol, grid_of, parse_client_id
from warden.ports import (
    AlertChannel,
    Clock,
    ControlsSpill,
    Exchange,
    ExchangeError,
    FencedOut,
    Notifier,
    Store,
    StoreError,
    StoreUnavailable,
    WaitingKill,
)
from warden.service.close_signals import CloseSignals, to_close
from warden.service.commands import (
    ClosePosition,
    EngineState,
    EngineStatus,
    KillReport,
    NotHolder,
    OpenPosition,
    PositionNotFound,
    PositionView,
    SignalClose,
    TradingRefused,
)
from warden.service.config import EngineConfig
from warden.service.context import UNCONFIRMED, Context, Gate, Tasks
from warden.service.controls import FENCED, ControlPanel
from warden.service.delivery import Deliverer, DeliveryConfig
from warden.service.exits import ExitManager
from warden.service.gateway import Gateway
from warden.service.ledger import Ledger
from warden.service.opening import Opener, random_position_id
from warden.service.reconciler import OrphanPolicy, Reconciler, ReconcileReport
from warden.service.recovery import Recovery
from warden.service.repeats import RepeatDigest
from warden.service.router import Router
from warden.service.watch import StreamWatch

log = structlog.get_logger("warden.engine")

STEADY_START = 60.0
"""Seconds of startup retries kept under half the protection window apart (then backing off)."""
UNREACHABLE_PASSES = 2
"""Reconciliation passes failed in a row on the exchange before the trader is alerted (one is noise)."""
UNKNOWN_TICK = Decimal("0.00000001")
"""The tick of a held market the exchange does not list, when none of its recorded prices is on one."""
CLOSED_RETENTION = timedelta(minutes=10)
"""A finished position stays in memory this long (for views and late echoes), then only in the database."""
SETTLE_HORIZON = 30.0
"""Seconds a late entry's pass waits for its symbol to settle (`Engine._reconcile_once_settled`):
an order sent with an unknown outcome may land for `entry_deadline` (10 s) after its send."""


class Engine:
    def __init__(
        self,
        exchange: Exchange,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        config: EngineConfig,
        new_id: Callable[[], str] = random_position_id,
        *,
        channels: Sequence[AlertChannel] = (),
        routes: AlertRoutes | None = None,
        delivery: DeliveryConfig | None = None,
        leased: bool = False,
        spill: ControlsSpill | None = None,
        waiting_kill: WaitingKill | None = None,
        start_failure_told: Callable[[], bool] | None = None,
    ) -> None:
        """`leased`: a lease watcher verifies this engine's lease (`warden run`). A database failure
        then puts the lease in doubt until the watcher has found it still ours: PostgreSQL's
        advisory lock dies with its session, so queued writes committed again are not enough
        to be `ready`. `spill`: where a control change the database cannot store is kept until it
        can (ControlPanel). `waiting_kill`: a kill of every account that found this engine not
        running, put in force before anything else (ControlPanel). `start_failure_told`: whether
        this account's start failure is told already (a fleet starting its engine again within
        one failure episode): its own engine_start_failed is then not told again."""
        gate = Gate(clock.monotonic)
        ledger = Ledger(store, clock, gate.check_may_act)
        self.deliverer = Deliverer(
            store, clock, notifier, channels, routes, delivery, owns_outbox=lambda: not gate.standing_down
        )
        self.ctx = ctx = Context(config, clock, notifier, ledger, self.deliverer, gate)
        ctx.tasks.on_error = self._task_failed
        self.exchange = exchange
        self.store = store
        self.clock = clock
        self.notifier = notifier
        self.config = config
        self.ledger = ledger
        self.instruments = ctx.instruments
        self.gateway = Gateway(exchange, ctx)
        self.exits = ExitManager(ctx, self.gateway, lambda: self.reconcile(check_rows=False))
        self.recovery = Recovery(ctx, self.gateway, self.exits, store)
        self.reconciler = Reconciler(
            ctx,
            self.gateway,
            self.exits,
            self.recovery,
            store,
            new_id,
            self.other_instance,
            OrphanPolicy(config.orphan_policy),
            lambda: self.reconcile(check_rows=False),
        )
        self.router = Router(
            ctx, self.exits, self.resync_all, self.other_instance, store, lambda: self._positions_loaded
        )
        self.controls = ControlPanel(ctx, store, config.limits, spill, waiting_kill)
        self.close_signals = CloseSignals(store, clock, ledger, self.close_position, self._refused_write)
        self._positions_loaded = False
        """This start (or takeover) has loaded the positions from the database: flatten knows them."""
        self._late_waiting: list[tuple[Position | None, FillReport]] = []
        """Late entries met while starting: startup's own pass adopts them; told once ready."""
        self.opener = Opener(
            ctx,
            self.gateway,
            self.exits,
            self.recovery,
            store,
            self.router.replay_early,
            new_id,
            self.controls,
        )
        ledger.on_degraded = self._degraded
        self.exits.on_late_entry = self._late_entry
        ledger.on_fenced = self._fenced
        self.stream_watch = StreamWatch(config, clock.monotonic())
        self._reconciling = asyncio.Lock()
        self._loops = Tasks(on_error=self._task_failed)
        self.refusals = RepeatDigest(
            clock,
            lambda message: ctx.notify(AlertKind.SIGNAL_REFUSED, message),
            self._loops.spawn,  # a background loop: not what wait_idle waits for
            config.repeat_window,
        )
        self._started_at = clock.now()
        self._store_error: str | None = None
        self._leased = leased
        self._others: set[str] = set()
        self.notes: dict[str, str] = {}
        """Shown in /status details (e.g. the Telegram bot's state), set by whoever runs beside."""
        self.warnings: dict[str, str] = {}
        """Trouble beside the engine that does not stop trading (e.g. Telegram unreachable)."""
        self._unreachable: str | None = None  # set by reconcile_forever while the exchange fails
        self.first_attempt = asyncio.Event()
        """Set once the first startup attempt has passed or failed (the API can then say which)."""
        self.ran = False
        """It got ready once (a fleet's start herald: an engine that never did ends no episode)."""
        self.start_failure_told: Callable[[], bool] = start_failure_told or (lambda: False)
        """Whether this account's start failure is told already (see `start_failure_told` above)."""

    def set_warning(self, key: str, text: str | None) -> None:
        """Show `text` among /status warnings under `key` (None: take it away)."""
        if text is None:
            self.warnings.pop(key, None)
        else:
            self.warnings[key] = text

    # ----------------------------------------------------------------- facade

    def instrument(self, symbol: str) -> Instrument | None:
        return self.instruments.get(Symbol(symbol))

    async def open_position(self, cmd: OpenPosition) -> Position:
        try:
            return await self.opener.open(cmd, self._require_trading)
        except StoreUnavailable as exc:
            self._store_error = str(exc)
            self._doubt_lease()
            raise

    async def check_open(self, cmd: OpenPosition, replacing: str | None = None) -> None:
        """Raise what `open_position(cmd)` would be refused for before anything is written or sent,
        with the positions on `replacing` (a symbol) counted as closed: a flip asks this before
        it closes them, so a refused flip closes nothing."""
        self._require_trading()
        pids = self.ledger.by_symbol.get(Symbol(replacing), ()) if replacing is not None else ()
        await self.opener.check(cmd, set(pids))

    async def close_position(self, cmd: ClosePosition) -> Position:
        self.ctx.gate.check_may_act()
        position = self.ledger.positions.get(cmd.position_id)
        if position is None:
            stored = await self.store.get_position(cmd.position_id)
            if stored is None:
                raise PositionNotFound(cmd.position_id)
            return stored
        if position.status.terminal:
            return position
        if position.status is PositionStatus.OPENING:
            raise TradingRefused("the entry order is still being resolved; try again in a moment")
        return await self.exits.close(cmd.position_id, cmd.reason)

    async def close_symbol(self, symbol: str, reason: str = "manual") -> list[Position]:
        """Close every open position on `symbol` (one, unless stacking is on); [] if none is open.
        One whose entry is still being resolved cannot be closed yet: that refusal comes before
        any of them is closed (TradingRefused says nothing was sent)."""
        self.ctx.gate.check_may_act()
        pids = to_close(self.ledger, Symbol(symbol))
        return [await self.close_position(ClosePosition(pid, reason)) for pid in pids]

    async def close_by_signal(self, symbol: str, signal_id: str, reason: str = "signal") -> SignalClose:
        """Close what was open on `symbol` when the close signal `signal_id` first arrived, and
        only that (close_signals.py): the signal resent closes nothing opened since."""
        self.ctx.gate.check_may_act()
        return await self.close_signals.close(Symbol(symbol), signal_id, reason)

    async def signal_refused(self, message: str, about: str | None = None) -> None:
        """A signal refused: the trader is told, because its answer goes to the sender
        (TradingView's server for a webhook), not to the trader, and the strategy then holds a
        position this account never opened (or not the one it holds). Refusals `about` the same
        (one kind: the exchange unreachable for entries, one field missing) repeated within
        `repeat_window` are told as one count (RepeatDigest); None: told, never counted."""
        await self.refusals.tell(message, about)

    async def move_stop(self, position_id: str, price: Decimal) -> Position:
        """Tighten an open position's stop to `price` (change_position with the stop only)."""
        return await self.change_position(position_id, stop_price=price)

    async def change_position(
        self,
        position_id: str,
        stop_price: Decimal | None = None,
        tp1_price: Decimal | None = None,
        tp2_price: Decimal | None = None,
    ) -> Position:
        """Tighten the stop and/or move TP1 and TP2 (not yet hit), each rounded to the tick.

        Every change asked for is checked before any is made — the stop only tightens and stays on
        the protective side of the mark, a take-profit stays on the profit side, TP2 beyond TP1 as
        the two will stand — so a refusal (ValidationError naming the field) changes nothing. Then
        the stop moves through the exits' place-then-cancel move (ExchangeError if it did not rest:
        the take-profits are left as they were), then the take-profits."""
        self.ctx.gate.check_may_act()
        pid = PositionId(position_id)
        pos = self.ledger.positions.get(pid)
        if pos is None and await self.store.get_position(pid) is None:
            raise PositionNotFound(position_id)
        asked = self._take_profit_asked
        stop = None if stop_price is None else self._stop_asked(position_id, pos, stop_price)
        tp1 = None if tp1_price is None else asked(position_id, pos, OrderRole.TP1, tp1_price)
        tp2 = None if tp2_price is None else asked(position_id, pos, OrderRole.TP2, tp2_price)
        assert pos is not None  # each check above refused a position not in memory
        await self._check_against_the_mark(pos, stop, tp1, tp2)
        moved = pos
        if stop is not None:
            await self.exits.stop_idle(pid)  # a move under way (another PATCH, the trail) ends first
            self._stop_asked(position_id, self.ledger.positions.get(pid), stop)  # still open, tighter
            await self.exits.move_stop(pid, stop)
            moved = self.ledger.positions[pid]
            if moved.is_active and moved.stop_price != stop:
                raise ExchangeError(f"the stop at {stop} did not rest; the stop stays at {moved.stop_price}")
        moves = [(OrderRole.TP1, tp1), (OrderRole.TP2, tp2)]
        if tp1 is not None and pos.tp2_price is not None and (tp1 - pos.tp2_price) * pos.side.sign >= 0:
            moves.reverse()  # TP1 moves past where TP2 is: TP2 goes first, so TP2 stays beyond TP1
        for role, target in moves:
            if target is not None:
                moved = await self.exits.move_take_profit(pid, role, target)
        return moved

    def _stop_asked(self, position_id: str, pos: Position | None, price: Decimal) -> Decimal:
        """The stop a change asks for, rounded; refused unless the position is open and it tightens."""
        open_ = (PositionStatus.OPEN, PositionStatus.PROTECTED)
        if pos is None or pos.status not in open_ or pos.remaining <= 0:
            state = pos.status.value if pos is not None else "closed"
            raise ValidationError(
                "position_id", f"position {position_id} is {state}: only an open stop moves"
            )
        stop = self.instruments[pos.symbol].round_price(price)
        if stop <= 0 or stop == pos.stop_price or tighter(pos.side, pos.stop_price, stop) != stop:
            raise ValidationError(
                "stop_price", f"a stop only tightens: {stop} is not tighter than {pos.stop_price}"
            )
        return stop

    def _take_profit_asked(
        self, position_id: str, pos: Position | None, role: OrderRole, price: Decimal
    ) -> Decimal:
        """The TP1 or TP2 price a change asks for, rounded; refused unless the position is open and
        that take-profit has not filled."""
        name = "tp1_price" if role is OrderRole.TP1 else "tp2_price"
        if pos is None or pos.status not in (PositionStatus.OPEN, PositionStatus.PROTECTED):
            raise ValidationError(
                name, f"position {position_id} is not open: only an open position's TP moves"
            )
        if (role is OrderRole.TP1 and pos.tp1_hit) or (role is OrderRole.TP2 and pos.tp2_hit):
            raise ValidationError(name, f"{role.value} already filled")
        return self.instruments[pos.symbol].round_price(price)

    async def _check_against_the_mark(
        self, pos: Position, stop: Decimal | None, tp1: Decimal | None, tp2: Decimal | None
    ) -> None:
        """The stop on the protective side of the mark, take-profits on the profit side, and TP2
        beyond TP1 as the two will stand after the change (ValidationError naming the field)."""
        mark = await self.gateway.mark_price(pos.symbol)
        sign = pos.side.sign
        if stop is not None and (stop - mark) * sign >= 0:
            where = "below" if sign > 0 else "above"
            raise ValidationError("stop_price", f"a {pos.side} stop must be {where} the mark price {mark}")
        for name, target in (("tp1_price", tp1), ("tp2_price", tp2)):
            if target is not None and (target <= 0 or (target - mark) * sign <= 0):
                where = "above" if sign > 0 else "below"
                raise ValidationError(name, f"a {pos.side} take-profit must be {where} the mark price {mark}")
        if (tp1 is None and tp2 is None) or pos.tp1_hit or pos.tp2_hit:
            return  # one take-profit left (or none moved): nothing to keep apart
        first = tp1 if tp1 is not None else pos.tp1_price
        second = tp2 if tp2 is not None else pos.tp2_price
        if first is not None and second is not None and (second - first) * sign <= 0:
            raise ValidationError("tp1_price" if tp2 is None else "tp2_price", "TP2 must stay beyond TP1")

    def unprotected_for(self, position_id: str) -> float | None:
        """Seconds this position has been without a resting stop, as timed by the exits (None when
        it is not being timed: protected, or never filled)."""
        started = self.exits.exposed_since(PositionId(position_id))
        return None if started is None else max(0.0, self.clock.monotonic() - started)

    def knows(self, position_id: str) -> bool:
        """The position is committed and in memory (the API answers 202 from then on)."""
        return PositionId(position_id) in self.ledger.positions

    async def pause(self, reason: str = "") -> Controls:
        """No new entries; exits and protection keep working. Stored: survives a restart."""
        self.ctx.gate.check_may_act()
        controls = await self.controls.pause(reason)
        await self._refuse_if_fenced()
        return controls

    async def resume(self) -> Controls:
        """Clear pause, kill switch and daily-loss pause."""
        self.ctx.gate.check_may_act()
        controls = await self.controls.resume()
        await self._refuse_if_fenced()
        return controls

    async def _refuse_if_fenced(self) -> None:
        """The database refused the controls change: another engine took the account over and
        trades it, and the change is not in force there. Stand down at once (as a refused write
        of a position does) and answer NotHolder, so no caller reports it as done."""
        if self.controls.fenced:
            await self.stand_down(f"lease lost: {FENCED}")
            raise NotHolder(f"not in force: {FENCED}")

    async def kill(self, flatten: bool = False, reason: str = "") -> KillReport:
        """Pause, and with `flatten` close every position reduce-only and cancel every warden order.

        A position whose entry is still being resolved is closed once it is known (its saga
        protects it first); one whose close fails keeps its stop and is reported.
        """
        self.ctx.gate.check_may_act()
        controls = await self.controls.kill(reason)
        await self._refuse_if_fenced()
        if not flatten:
            return KillReport(controls)
        if not self._positions_loaded:
            return KillReport(controls, failed=await self._not_loaded())
        closed, failed = await self._flatten()
        cancelled = await self._cancel_all_exits()
        return KillReport(self.controls.state, closed, failed, cancelled)

    async def _not_loaded(self) -> dict[PositionId, str]:
        """Flatten before this start (or takeover) has loaded the positions: the ledger is empty,
        not the account. Each position the database holds is reported not closed (nothing sent:
        the stops on the exchange keep protecting them), so the trader does not read it as flat."""
        why = (
            f"NOT closed: this engine has not loaded its positions yet ({self.ctx.gate.reason_text()});"
            " its stop on the exchange stays; run kill --flatten again once it is ready"
        )
        try:
            state = await self.store.load_active()
        except StoreError as exc:
            return {
                PositionId("every position"): f"{why} — which positions are open is unknown: the"
                f" database cannot be read ({exc})"
            }
        return {p.id: why for p in state.positions}

    async def _flatten(self) -> tuple[list[Position], dict[PositionId, str]]:
        active = [p for p in self.ledger.active_positions() if p.status is not PositionStatus.OPENING]

        async def close(pid: PositionId) -> Position | str:
            try:
                return await self.exits.close(pid, "kill_switch")
            except (ExchangeError, StoreError, TradingRefused) as exc:
                return str(exc)

        results = await asyncio.gather(*(close(p.id) for p in active))
        closed = [r for r in results if isinstance(r, Position)]
        failed = {p.id: r for p, r in zip(active, results, strict=True) if isinstance(r, str)}
        opening = [p for p in self.ledger.active_positions() if p.status is PositionStatus.OPENING]
        for p, outcome in zip(
            opening, await asyncio.gather(*(self._stop_entry(p) for p in opening)), strict=True
        ):
            failed[p.id] = outcome
        return closed, failed

    async def _stop_entry(self, position: Position) -> str:
        """A position whose entry is still being resolved: an entry the exchange acknowledged and
        has not (fully) filled could still fill after the kill, so it is cancelled there. Its saga
        (or recovery) then settles it as for any cancelled entry: what filled is protected, and an
        entry that filled nothing fails. Says what happened, for the kill's report."""
        entry = next((o for o in self.ledger.live_orders(position.id) if o.role is OrderRole.ENTRY), None)
        if entry is None or entry.status is not OrderStatus.OPEN:
            return "entry still being resolved: it is protected, then run kill --flatten again"
        try:
            report = await self.gateway.cancel(entry.symbol, entry.client_order_id, entry.type.conditional)
        except (ExchangeError, TradingRefused) as exc:
            return f"entry still working on the exchange, its cancel failed ({exc}): run kill --flatten again"
        if report.filled_qty > 0:
            return (
                f"entry cancelled with {report.filled_qty} of {entry.qty} filled: that part is protected,"
                " then run kill --flatten again to close it"
            )
        self.recovery.told_elsewhere(position.id)  # the kill's report says it: not entry_failed too
        return "entry cancelled on the exchange with nothing filled: nothing opened"

    async def _cancel_all_exits(self) -> int:
        """Every live warden exit order of a position that is no longer open."""
        done = [
            pid
            for pid, orders in self.ledger.orders_by_position.items()
            if any(o.status.live for o in orders.values())
            and not (pid in self.ledger.positions and self.ledger.positions[pid].is_active)
        ]
        before = sum(len(self.ledger.live_orders(pid)) for pid in done)
        await asyncio.gather(*(self.exits.cancel_exits(pid) for pid in done), return_exceptions=True)
        return before - sum(len(self.ledger.live_orders(pid)) for pid in done)

    async def list_positions(self, include_closed: bool = False) -> list[PositionView]:
        if include_closed:
            stored = await self.store.list_positions(include_closed=True, limit=1000)
            return [self.view(self.ledger.positions.get(p.id, p)) for p in stored]
        self.exits.index.materialize_all()
        return [
            self.view(p, fresh=True)
            for p in sorted(self.ledger.active_positions(), key=lambda p: p.opened_at)
        ]

    async def get_position(self, position_id: str) -> PositionView:
        position = self.ledger.positions.get(PositionId(position_id))
        if position is None:
            position = await self.store.get_position(PositionId(position_id))
        if position is None:
            raise PositionNotFound(position_id)
        return self.view(position)

    async def closed_pnl(self) -> Decimal:
        """Realized PnL of every closed position of the account, however many (the dashboard's curve
        lists only the most recent): the stored total less the partial closes of the active ones."""
        total = await self.store.realized_pnl_since(datetime(1970, 1, 1, tzinfo=UTC))
        return total - sum((p.realized_pnl for p in self.ledger.active_positions()), Decimal(0))

    async def failure(self, position_id: str, kind: EventKind) -> str | None:
        """The message of the position's `kind` event (why its entry failed, or its stop was
        refused), None when there is none or it cannot be read (queued while the store is away)."""
        try:
            events = await self.store.list_events(PositionId(position_id), 100)
        except StoreUnavailable:
            return None
        return next((e.message for e in events if e.kind is kind), None)

    async def list_events(self, position_id: str | None = None, limit: int = 100) -> list[Event]:
        return await self.store.list_events(PositionId(position_id) if position_id else None, limit)

    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: str | None = None
    ) -> list[tuple[int, Event]]:
        """Committed events with their ids, for the event stream (GET /stream) and its resume point,
        and the event lists of the API (each event shown with its id)."""
        pid = PositionId(position_id) if position_id else None
        return await self.store.events_since(after_id, limit, position_id=pid)

    def view(self, position: Position, *, fresh: bool = False) -> PositionView:
        """`fresh`: the caller already folded the symbol's tick range into its positions."""
        if not fresh and position.is_active and position.id in self.ledger.positions:
            self.exits.index.materialize(position.symbol)
            position = self.ledger.positions[position.id]
        stop = self.ledger.current_stop(position.id) if position.is_active else None
        upnl = None
        if position.entry_price is not None and position.last_price is not None and position.remaining > 0:
            upnl = (position.last_price - position.entry_price) * position.remaining * position.side.sign
        return PositionView(
            position=position,
            stop_resting=stop is not None and stop.status is OrderStatus.OPEN,
            stop_order_id=stop.client_order_id if stop else None,
            unrealized_pnl=upnl,
        )

    def status(self) -> EngineStatus:
        active = self.ledger.active_positions()
        unprotected = [p for p in active if p.status is PositionStatus.OPEN or self._stop_not_resting(p)]
        alarms = [*self._naked(unprotected), *self._blind()]
        return EngineStatus(
            state=self.state,
            accepting_signals=self.accepting_signals,
            reasons=self._reasons(),
            exchange=self.config.exchange_name,
            database=self.config.database,
            open_positions=len(active),
            unprotected_positions=len(unprotected),
            started_at=self._started_at,
            last_reconcile_at=self.last_reconcile_at,
            pending_writes=len(self.ledger.pending_transitions) + len(self.ledger.pending_events),
            details=self._details(),
            controls=self.controls.state,
            warnings=[
                *self.deliverer.warnings(),
                *self._stream_warning(),
                *alarms,
                *self.warnings.values(),
                *filter(None, [self.controls.warning()]),
            ],
            alarms=alarms,
        )

    def _blind(self) -> list[str]:
        """The exchange unreachable (reconcile_forever): warden can neither trade nor see nor repair
        the account. Only the writer speaks for it, as for the stream."""
        if self.ctx.gate.state is not EngineState.READY or self._unreachable is None:
            return []
        return [self._unreachable]

    def _naked(self, unprotected: list[Position]) -> list[str]:
        """Each position without a resting stop for longer than the protection window, named.

        A fill's first moments without a stop are normal (the stop is on its way); beyond the
        window the position is exposed and the trader must look, so /healthz goes red on these
        even while the engine can trade. A standby does not speak for them: the holder protects.
        Untimed and open (the fill was not seen by this process): counted from the opening, an upper
        bound; a stop lost is timed by whoever saw it go (exits, reconciler, recovery)."""
        if self.ctx.gate.state is not EngineState.READY:
            return []
        window = self.config.protection_window
        naked = []
        for position in unprotected:
            seconds = self.unprotected_for(position.id)
            if seconds is None:
                if position.status is not PositionStatus.OPEN:
                    continue  # protected, its stop being replaced (a resize): in flight, not lost
                seconds = max(0.0, (self.clock.now() - position.opened_at).total_seconds())
            if seconds > window:
                naked.append(
                    f"position {position.id} ({position.symbol} {position.side}) has no resting stop"
                    f" for {seconds:.0f}s (window {window:g}s)"
                )
        return naked

    def _stream_warning(self) -> list[str]:
        if self.ctx.gate.state is not EngineState.READY:
            return []  # a standby (or an engine not yet started) does not speak for the stream
        warning = self.stream_watch.warning(self.clock.monotonic())
        return [] if warning is None else [warning]

    def _details(self) -> dict[str, str]:
        details = {"installation_id": self.config.installation_id} if self.config.installation_id else {}
        details["alerts_undelivered"] = str(self.deliverer.undelivered())
        return {**details, **self.notes}

    def _stop_not_resting(self, position: Position) -> bool:
        if position.status is not PositionStatus.PROTECTED or position.remaining <= 0:
            return False
        stop = self.ledger.current_stop(position.id)
        return stop is None or stop.status is not OrderStatus.OPEN

    @property
    def last_reconcile_at(self) -> datetime | None:
        return self.reconciler.last_reconcile_at

    @property
    def state(self) -> EngineState:
        gate = self.ctx.gate
        if gate.state is EngineState.READY and (
            self.ledger.degraded
            or self._store_error is not None
            or gate.lease_note is not None
            or gate.unconfirmed
        ):
            return EngineState.DEGRADED
        return gate.state

    @property
    def accepting_signals(self) -> bool:
        self.controls.refresh()
        return self.state is EngineState.READY and not self.ctx.gate.refusals

    def _reasons(self) -> list[str]:
        self.controls.refresh()
        reasons = list(self.ctx.gate.refusals.values())
        if self.ledger.degraded:
            reasons.append(f"database unavailable: {self.ledger.last_store_error}")
        elif self._store_error is not None:
            reasons.append(f"database unavailable: {self._store_error}")
        if self.ctx.gate.lease_note is not None:
            reasons.append(self.ctx.gate.lease_note)
        if self.ctx.gate.unconfirmed:
            reasons.append(UNCONFIRMED)
        return reasons

    def _require_trading(self) -> None:
        if not self.accepting_signals:
            raise TradingRefused(
                f"not accepting signals ({self.state}): {'; '.join(self._reasons()) or 'ok'}"
            )

    def new_position_id(self) -> str:
        return self.opener.new_id()

    def refuse(self, key: str, reason: str | None) -> None:
        """Set (or clear, with None) a reason to refuse new positions."""
        self.ctx.gate.refuse(key, reason)

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Startup is recovery: load, take the exchange's truth, repair, then accept signals."""
        gate = self.ctx.gate
        gate.check_may_act()
        gate.state = EngineState.RECOVERING
        self.instruments.update(await self.gateway.instruments())
        await self.controls.load()
        await self.recovery.load()
        self._positions_loaded = True
        await self._check_positions_elsewhere()
        await self._check_held_markets_listed()
        await self.router.replay_known()
        await self.recovery.recover()
        await self.reconcile(check_rows=False)
        await self._check_margins()
        gate.state = EngineState.READY
        self.ran = True
        gate.refuse("recovery", None)
        for position, report in self._late_waiting:
            self.ctx.tasks.spawn(self._reconcile_late(position, report))
        self._late_waiting.clear()
        await self.ctx.notify(
            AlertKind.ENGINE_STARTED, f"ready: {len(self.ledger.active_positions())} open positions"
        )

    async def _check_positions_elsewhere(self) -> None:
        """Open positions of the account recorded on another exchange (`exchange` switched, same
        database and account) are left as they are: this exchange cannot see them, and taking
        them for flat here would close their records while they stay open there. They are still
        open, under their own stops, with no warden watching them: a critical alert every start
        and a warning on /status say so, and where they are."""
        elsewhere = self.recovery.elsewhere
        if not elsewhere:
            self.warnings.pop("elsewhere", None)
            return
        said = "; ".join(f"{exchange}: {', '.join(ids)}" for exchange, ids in sorted(elsewhere.items()))
        message = (
            f"open positions recorded on another exchange than {self.config.exchange_name} are left"
            f" alone, unwatched (their stops rest there): {said}. Run warden with that exchange to"
            " manage them, or close them there"
        )
        log.error("positions_elsewhere", exchanges=sorted(elsewhere))
        self.warnings["elsewhere"] = message
        await self.ctx.notify(AlertKind.POSITIONS_ELSEWHERE, message)

    async def _check_held_markets_listed(self) -> None:
        """A market warden holds a position on that the exchange does not list (delisted, settling,
        halted: the ccxt adapters drop a market that is not `active`) has no instrument, and every
        exit of its positions needs one: startup raised KeyError, and no position of the account
        was protected. It is managed on the grid its own recorded prices and quantities sit on
        (coarser than the exchange's, never off it: see grid_of), and the trader is told (a
        critical alert every start, a warning on /status): the exchange may refuse orders there."""
        held: dict[Symbol, list[Position]] = {}
        for p in self.ledger.active_positions():
            if p.symbol not in self.instruments:
                held.setdefault(p.symbol, []).append(p)
        if not held:
            self.warnings.pop("unlisted", None)
            return
        said = []
        for symbol, positions in sorted(held.items()):
            orders = [o for p in positions for o in self.ledger.orders_of(p.id)]
            prices = [v for p in positions for v in (p.stop_price, p.tp1_price, p.tp2_price)]
            tick = (
                grid_of([*prices, *(o.trigger_price for o in orders)])
                or grid_of(p.entry_price for p in positions)
                or UNKNOWN_TICK
            )
            qtys = [v for p in positions for v in (p.filled_qty, p.tp1_qty, p.tp2_qty)]
            lot = grid_of([*qtys, *(o.qty for o in orders)]) or grid_of(p.target_qty for p in positions)
            assert lot is not None  # a position's target is positive
            self.instruments[symbol] = Instrument(symbol, tick, lot, lot, Decimal(0), listed=False)
            ids = ", ".join(p.id for p in positions)
            said.append(f"{symbol} (positions {ids}; tick {tick}, lot {lot} taken from its orders)")
        message = (
            "the exchange does not list the market of held positions (delisted, settling or halted): "
            + "; ".join(said)
            + ". warden keeps managing them, but the exchange may refuse their orders: check it"
        )
        log.error("held_market_unlisted", symbols=sorted(held))
        self.warnings["unlisted"] = message
        await self.ctx.notify(AlertKind.MARKET_UNLISTED, message)

    async def _check_margins(self) -> None:
        """At startup: the leverage and margin mode of every symbol with a position or an override
        are compared with the plan; a mismatch is an alert (it is set before the next entry on a
        flat symbol; the exchange refuses a margin-mode change while a position is open)."""
        plan = self.config.margin
        await self._check_overrides_name_markets()
        if plan.empty:
            return
        held = {p.symbol for p in self.ledger.active_positions()}
        named = {s for s in self.instruments if plan.names(s)}
        for symbol in sorted(held | named):
            wanted = plan.for_symbol(symbol)
            if wanted.empty:
                continue
            try:
                actual = await self.gateway.symbol_config(symbol)
            except ExchangeError as exc:
                log.warning("margin_check_failed", symbol=symbol, error=str(exc))
                continue
            wrong = wanted.differs_from(actual)
            if wrong:
                then = "fix it on the exchange" if symbol in held else "it is set before the next entry"
                await self.ctx.notify(AlertKind.MARGIN_MISMATCH, f"{symbol}: {', '.join(wrong)}; {then}")

    async def _check_overrides_name_markets(self) -> None:
        """A [symbols.X] override that names no market the exchange lists (misspelt, delisted) never
        applies: an error in the log, a warning on /status and an alert, every start. Trading goes
        on: refusing to start would leave every other position unprotected."""
        unknown = self.config.margin.unmatched(self.instruments)
        if not unknown:
            self.warnings.pop("symbols", None)
            return
        names = ", ".join(unknown)
        log.error("symbol_override_unknown", symbols=unknown)
        self.warnings["symbols"] = (
            f"[symbols.*] names no market on the exchange: {names}; its leverage and margin mode apply to"
            " nothing (misspelt or delisted?)"
        )
        await self.ctx.notify(
            AlertKind.UNKNOWN_SYMBOL,
            f"the config's [symbols.*] names no market on the exchange: {names}; its leverage and margin"
            " mode apply to nothing (misspelt or delisted?)",
        )

    async def start_with_retry(self) -> None:
        """Start, retrying with backoff while the exchange or database fails; /status says why.
        For the first minute the pause stays under half the protection window (a position that
        filled just before the restart waits for this start to be protected); then it doubles
        up to `start_backoff_max` (a long outage is not hammered). While the database cannot be
        read, what the exchange holds is guarded (`_guard`) beside the attempts, not between
        them: a guard stop the exchange holds back is retried for a stop's time, and the database
        may answer meanwhile (chaos 1623738294:6790: the next attempt waited for the guard, 1.5 s,
        and its pause after, 0.5 s; stacking on, nothing else closed the position: 2.25 s)."""
        gate = self.ctx.gate
        delay = max(self.config.retry_backoff, 0.5)
        first = self.clock.monotonic()
        alerted = self.start_failure_told()
        guarding: asyncio.Task[None] | None = None
        while True:
            try:
                await self.start()
                self.first_attempt.set()
                return
            except NotHolder:
                self.first_attempt.set()
                raise
            except (ExchangeError, StoreError, OSError) as exc:
                self.first_attempt.set()
                gate.state = EngineState.STARTING
                gate.refuse("recovery", f"startup recovery failed ({exc}); retrying in {delay:.1f}s")
                log.error("start_failed", error=str(exc), retry_in=delay)
                if not alerted:
                    await self.ctx.notify(AlertKind.ENGINE_START_FAILED, f"{exc}; retrying with backoff")
                    alerted = True
                if isinstance(exc, StoreError) and (guarding is None or guarding.done()):
                    guarding = self._loops.spawn(self._guard())
                steady = self.clock.monotonic() - first < STEADY_START
                await self._pause_to_start(delay, ping=steady and isinstance(exc, StoreError))
            # The next attempt rebuilds memory from the database: what the failed one left running
            # (protect-or-close rounds of the positions it loaded) would act on memory that is
            # gone (a position that ended meanwhile is not loaded again). Recovery redoes it.
            await self.ctx.tasks.cancel_all()
            steady = self.clock.monotonic() - first < STEADY_START
            cap = self.config.protection_window / 2 if steady else self.config.start_backoff_max
            delay = min(delay * 2, max(cap, self.config.retry_backoff))

    async def _pause_to_start(self, delay: float, *, ping: bool) -> None:
        """The pause before the next start attempt. `ping`: one the database failed, in the first
        minute of attempts: it ends as soon as the database answers again (pinged every
        `retry_backoff`; one that answered the first ping is not what failed, and the pause runs
        its length): a position that filled just before the restart may be left to this start,
        with nothing closing it meanwhile when stacking is on (chaos 1623738294:6790: the
        database back 0.5 s before the next attempt). A longer outage is not pinged so often."""
        clock = self.clock
        end = clock.monotonic() + delay
        went_down = False
        while ping and (left := end - clock.monotonic()) > 0:
            await clock.sleep(min(self.config.retry_backoff, left))
            try:
                await self.store.ping()
            except (StoreError, OSError):
                went_down = True
                continue
            if went_down:
                return  # it answers again: the next attempt now
            break  # it answered at once: not what failed, so the pause runs its length
        await clock.sleep(max(0.0, end - clock.monotonic()))

    async def _guard(self) -> None:
        """Startup cannot read the database: protect what the exchange holds meanwhile."""
        try:
            placed = await self.recovery.guard()
        except ExchangeError as exc:
            log.error("guard_failed", error=str(exc))
            return
        if placed:
            message = "database unreadable at startup; guard stops placed on the exchange: " + "; ".join(
                placed
            )
            await self.ctx.notify(AlertKind.STOP_REPLACED, message)

    async def deliver_alerts(self) -> None:
        """Deliver alerts from the outbox to the channels, for as long as the engine runs; it
        keeps going on a standby and after a stand-down (the trader must hear those too)."""
        await self.deliverer.run()

    def lease_taken(self, epoch: int) -> None:
        """This engine took the account over from a holder that died."""
        self.ctx.alert(AlertKind.LEASE_TAKEN, f"this engine took the account's lease over (epoch {epoch})")

    def run_loops(self, stream: AsyncIterator[StreamEvent]) -> None:
        """The acting loops (stream, maintenance, reconcile timer, the stream's silence watch):
        cancelled together on stand-down."""
        self._loops.spawn(self.consume(stream))
        self._loops.spawn(self.maintain())
        self._loops.spawn(self.reconcile_forever())
        self._loops.spawn(self.watch_stream())

    async def reconcile(self, *, check_rows: bool = True) -> ReconcileReport:
        """One reconciliation pass now (never two at once)."""
        self.ctx.gate.check_may_act()
        async with self._reconciling:
            return await self.reconciler.run(check_rows=check_rows)

    async def reconcile_forever(self) -> None:
        """The timer: a pass every `reconcile_interval` seconds; a failed pass is retried next time.
        Passes the exchange fails `UNREACHABLE_PASSES` times in a row (an outage, a revoked key)
        leave warden blind to the account: the trader is alerted once, and again when it answers."""
        failed = 0
        while True:
            await self.clock.sleep(self.config.reconcile_interval)
            if self.ctx.gate.state is not EngineState.READY:
                continue
            try:
                await self.reconcile()
            except ExchangeError as exc:
                log.warning("reconcile_failed", error=str(exc))
                failed += 1
                if failed >= UNREACHABLE_PASSES:
                    self._unreachable = (
                        f"exchange unreachable: {failed} reconciliation passes in a row failed ({exc})"
                    )
                if failed == UNREACHABLE_PASSES:
                    await self.ctx.notify(
                        AlertKind.EXCHANGE_UNREACHABLE,
                        f"exchange unreachable: {failed} reconciliation passes in a row failed ({exc}); "
                        "warden cannot see or repair the account (stops already resting still hold). "
                        "Check the exchange, your API key and the network",
                    )
                continue
            except StoreUnavailable as exc:
                log.warning("reconcile_failed", error=str(exc))
                continue
            except NotHolder:
                return
            except Exception as exc:
                await self._survive("reconciliation", exc)
                continue
            self._unreachable = None
            if failed >= UNREACHABLE_PASSES:
                await self.ctx.notify(
                    AlertKind.EXCHANGE_RECOVERED, f"exchange answering again after {failed} failed passes"
                )
            failed = 0

    async def watch_stream(self) -> None:
        """The stream's silence, checked a few times per `stream_silence`: while positions are
        open, no event for that long is alerted once per silence, and so is the first event
        after it (watch.py). Only the writer speaks: a standby, or an engine still starting, is
        not checked. The stream is not reconnected from here: the port has no such call, and
        each adapter already reconnects a socket it sees fail."""
        watch = self.stream_watch
        while True:
            await self.clock.sleep(watch.period)
            if self.ctx.gate.state is not EngineState.READY:
                continue
            said = watch.check(self.clock.monotonic(), self.ledger.active_count())
            if said is not None:
                await self.ctx.notify(*said)

    def set_read_only(self, reason: str) -> None:
        """A standby: another engine writes for this account; send nothing, write nothing."""
        self.ctx.gate.state = EngineState.READ_ONLY
        self.ctx.gate.refuse("lease", reason)

    async def stand_down(self, reason: str) -> None:
        """The lease went to another engine: stop every loop and follow-up that acts, at once."""
        if self.ctx.gate.state is EngineState.READ_ONLY:
            return
        self.set_read_only(reason)
        log.error("standing_down", reason=reason)
        await self.ctx.notify(AlertKind.LEASE_LOST, reason)
        await self._loops.cancel_all()
        await self.ctx.tasks.cancel_all()

    def take_over(self) -> None:
        """This engine now holds the lease: it recovers from the database (start) and then trades."""
        gate = self.ctx.gate
        gate.refuse("lease", None)
        gate.refuse("recovery", "startup recovery has not passed yet")
        gate.lease_note = None
        gate.state = EngineState.STARTING
        self.ledger.clear()
        self._positions_loaded = False
        self.controls.taking_over()
        self.ctx.flights.taking_over()

    def lease_unreachable(self, why: str) -> None:
        """Our own database connection failed: we cannot tell whether we still hold the lease.
        Degraded, not standing down: protection continues, new entries are refused."""
        if self.ctx.gate.lease_note is None:
            self.ctx.gate.lease_note = (
                f"lease unverifiable (database unreachable: {why}); protecting, re-acquiring"
            )
            self.ctx.alert(AlertKind.LEASE_UNREACHABLE, self.ctx.gate.lease_note)

    def lease_confirmed(self, until: float | None) -> None:
        """The lease (one with a timeout) was confirmed: this engine may act until `until`
        (monotonic); after it, every send and write is refused until confirmed again."""
        self.ctx.gate.act_until = until

    def lease_restored(self) -> None:
        if self.ctx.gate.lease_note is not None:
            self.ctx.gate.lease_note = None
            self.ctx.alert(AlertKind.DATABASE_RECOVERED, "database reachable again; the lease is ours")

    async def other_instance(self, client_order_id: str, symbol: str) -> None:
        """An order of another warden installation: it trades this account. Stop trading, alert,
        and never touch its orders."""
        parsed = parse_client_id(client_order_id)
        installation = parsed.installation if parsed else "?"
        if installation in self._others:
            return
        self._others.add(installation)
        reason = (
            f"another warden (installation {installation!r}) trades this account: order "
            f"{client_order_id} on {symbol}; new positions refused until it stops (then restart)"
        )
        self.refuse("other_instance", reason)  # at once: no await before new positions are refused
        try:
            renamed = await self.store.account_of_installation(installation) if parsed else None
        except StoreError:
            renamed = None
        if renamed is not None:
            # Most likely this warden itself under its old `account` name: "until it stops" would
            # send the trader looking for another warden that does not exist.
            reason = (
                f"order {client_order_id} on {symbol} is of installation {installation!r}, this"
                f" database's account {renamed!r}: was `account` renamed? That account's positions"
                f" are recorded under {renamed!r} and no warden manages them (their stops rest);"
                f" run with account = {renamed!r} to manage them. New positions refused meanwhile"
            )
            self.refuse("other_instance", reason)
        event = Event(EventKind.RECONCILE, self.clock.now(), None, reason)
        await self.ctx.notify(AlertKind.OTHER_INSTANCE, reason, events=[event])

    async def consume(self, stream: AsyncIterator[StreamEvent]) -> None:
        """Route every stream event. A bug handling one event must not stop the stream (positions
        would go unwatched): it is alerted and recorded, and a resync asks the exchange. Nor must
        one in the stream itself (the adapter's): it is alerted once, the exchange's stream is
        taken again after a pause (`retry_backoff`, doubling up to `start_backoff_max` while it
        fails), and a resync reads what it lost meanwhile."""
        failing = False
        pause = self.config.retry_backoff
        while True:
            try:
                async for event in stream:
                    failing, pause = False, self.config.retry_backoff
                    self.stream_watch.heard(self.clock.monotonic())
                    try:
                        await self.router.on_event(event)
                    except NotHolder:
                        return
                    except Exception as exc:
                        await self._survive("stream event", exc)
                        self.ctx.tasks.spawn(self.resync_all())
                return
            except Exception as exc:
                if not failing:
                    await self._survive("the exchange's stream", exc)
                failing = True
            await self.clock.sleep(pause)
            pause = min(pause * 2, self.config.start_backoff_max)
            stream = self.exchange.stream()
            self.ctx.tasks.spawn(self.resync_all())

    async def on_event(self, event: StreamEvent) -> None:
        await self.router.on_event(event)

    async def _survive(self, where: str, exc: BaseException) -> None:
        log.error("background_error", where=where, error=repr(exc), exc_info=exc)
        event = Event(EventKind.RECONCILE, self.clock.now(), None, f"error in {where}: {exc!r}")
        await self.ctx.notify(AlertKind.ENGINE_ERROR, f"error in {where}: {exc!r}", events=[event])

    def _task_failed(self, error: Exception) -> None:
        if isinstance(error, NotHolder) or self.ctx.gate.standing_down:
            return
        self.ctx.alert(
            AlertKind.ENGINE_ERROR, f"follow-up task failed: {error!r}; the next reconciliation repairs it"
        )

    async def maintain(self) -> None:
        """Flush queued writes while degraded, persist moving watermarks, prune finished positions."""
        while True:
            await self.clock.sleep(self.config.watermark_flush_interval)
            try:
                await self.maintain_once()
            except NotHolder:
                return
            except Exception as exc:
                await self._survive("maintenance", exc)

    async def maintain_once(self) -> None:
        """One maintenance pass (see `maintain`)."""
        await self.flush_pending()
        await self.exits.flush_watermarks()
        self.controls.refresh()
        await self.controls.flush()
        self._prune()

    async def flush_pending(self) -> None:
        try:
            await self.close_signals.store_unsaved()
        except StoreUnavailable:
            return
        if not self.ledger.degraded:
            if self._store_error is not None:
                try:
                    await self.store.ping()
                except StoreUnavailable:
                    return
                self._store_error = None
                self._pass_after_outage()
            return
        try:
            await self.ledger.flush()
        except StoreUnavailable as exc:
            self.ledger.last_store_error = str(exc)
            return
        self._store_error = None
        self._pass_after_outage()
        event = Event(EventKind.STORE_RECOVERED, self.clock.now(), None, "queued writes committed")
        await self.ctx.notify(AlertKind.DATABASE_RECOVERED, "queued writes are committed", events=[event])

    def _pass_after_outage(self) -> None:
        """The database answers again and signals are taken again at once, but no timer pass ran
        while it could not be read (a pass reads its rows first): one runs now, not up to
        `reconcile_interval` later. A late entry's cover kept meanwhile as its only stop, on a
        symbol the trader flattened since, would rest beside a position opened there."""
        if self.ctx.gate.state is EngineState.READY:
            self.ctx.tasks.spawn(self._reconcile_after_outage())

    async def _reconcile_after_outage(self) -> None:
        try:
            await self.reconcile()
        except (ExchangeError, StoreUnavailable, NotHolder) as exc:
            log.warning("reconcile_failed", error=str(exc))  # the timer's next pass

    def _prune(self) -> None:
        cutoff = self.clock.now() - CLOSED_RETENTION
        done = [
            p.id
            for p in self.ledger.positions.values()
            if not p.is_active and (p.closed_at or p.opened_at) < cutoff and not self.ledger.live_orders(p.id)
        ]
        for pid in done:
            self.ctx.forget(pid)
            self.exits.forget(pid)

    def _doubt_lease(self) -> None:
        if self._leased and self.ctx.gate.lease_note is None:
            self.ctx.gate.lease_note = "lease unverified since the database failed; checking it"

    def _degraded(self, error: str) -> None:
        self._doubt_lease()
        self.ctx.alert(
            AlertKind.DATABASE_DEGRADED,
            f"database unavailable: positions stay protected on the exchange; writes are queued ({error})",
        )

    def _refused_write(self, exc: FencedOut) -> NotHolder:
        """A write the fence refused: another engine holds the account. Stand down, as the
        ledger does on its own writes, and refuse what asked for it (nothing was sent)."""
        self._fenced(str(exc))
        return NotHolder(f"the database refused the write: {exc}")

    def _fenced(self, error: str) -> None:
        self.ctx.tasks.spawn(self.stand_down(f"lease lost: another engine holds the account ({error})"))

    async def wait_idle(self) -> None:
        """Wait for every follow-up task (tests and benchmarks use this)."""
        await self.ctx.tasks.wait_idle()

    async def stop(self) -> None:
        await self._loops.cancel_all()
        await self.ctx.tasks.cancel_all()
        self.ctx.gate.state = EngineState.STOPPED

    def _late_entry(self, position: Position | None, report: FillReport) -> None:
        """An entry warden gave up on (its lookups found nothing) executed after all: the exchange
        holds a position no active one explains. Reconciled now (adopted as that entry's, and
        protected, whatever the orphan policy), not at the next pass; the trader is told."""
        if position is not None:
            self.reconciler.late_entries[position.symbol] = position
        if self.ctx.gate.state is EngineState.READY:
            self.ctx.tasks.spawn(self._reconcile_late(position, report))
        else:  # starting (a fill met once the positions were loaded): not beside recovery
            self._late_waiting.append((position, report))

    async def _reconcile_late(self, position: Position | None, report: FillReport) -> None:
        what = (
            f"{position.symbol} {position.side} entry of {position.id}"
            if position is not None
            else f"{report.symbol} entry {report.client_order_id}"
        )
        try:
            await self.reconcile(check_rows=False)
            repaired = "it was reconciled at once"
        except (ExchangeError, StoreUnavailable, NotHolder) as exc:
            repaired = f"reconciling it failed ({exc}): the next pass adopts and protects it"
        if position is not None and self.reconciler.late_entries.get(position.symbol) is position:
            repaired = "it is reconciled once warden's orders on its symbol have settled"
            self.ctx.tasks.spawn(self._reconcile_once_settled(position))
        await self.ctx.notify(
            AlertKind.ENTRY_UNRESOLVED,
            f"{what} was given up on ({position.status if position else 'ended'}) but the exchange "
            f"executed it later: {report.side} {report.qty} @ {report.price} is open there; {repaired}",
            position.id if position is not None else None,
        )

    async def _reconcile_once_settled(self, position: Position) -> None:
        """A late entry's pass that left its symbol alone (an order of warden's there pending, a
        position of it closing: `Reconciler.left_alone`) is run again as soon as the symbol
        settles, looked at every quarter protection window (memory only), not left to the
        timer's next pass (chaos 5154:1395: stops refused and every market order run late; the
        late entry's later parts came while the close of its first part, adopted, might still
        land, and went 24 s without a stop or a close). After `SETTLE_HORIZON` it runs anyway."""
        clock, reconciler = self.ctx.clock, self.reconciler
        horizon = clock.monotonic() + SETTLE_HORIZON
        while reconciler.late_entries.get(position.symbol) is position:
            if reconciler.left_alone(position.symbol) and clock.monotonic() < horizon:
                await clock.sleep(self.config.protection_window / 4)
                continue
            try:
                await self.reconcile(check_rows=False)
            except (ExchangeError, StoreUnavailable, NotHolder) as exc:
                log.warning("late_entry_pass_failed", position_id=position.id, error=str(exc))
                return
            if clock.monotonic() >= horizon:
                return

    async def resync_all(self) -> None:
        """After a stream gap: events may be lost, so ask the exchange, then reconcile."""
        await self.recovery.recover()
        await self.reconcile()

    # ------------------------------------------------------------ test seams

    @property
    def _tasks(self) -> Tasks:
        return self.ctx.tasks

    def unprotected_seconds(self) -> Tally:
        return self.exits.unprotected

    def qty_of(self, pid: PositionId) -> Decimal:
        return self.ledger.positions[pid].remaining

    def details(self) -> dict[str, Any]:
        return {"locks": len(self.ctx.locks), "positions_in_memory": len(self.ledger.positions)}
