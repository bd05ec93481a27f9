"""The engine: the facade the entrypoints call, and the event router behind it.

Opening a position (the saga, DESIGN.md "Opening a position"):

1. validate; refuse (nothing sent) unless recovery passed and the DB is writable;
2. one transaction: position OPENING + entry intent with a deterministic client
   order id + event (if this commit fails, the caller gets StoreUnavailable and
   nothing was sent);
3. the order is known in memory *before* it is sent, so a fill that races the
   REST answer is applied, not dropped; events for ids not yet known are
   buffered and replayed;
4. send with a deadline; a timeout is an unknown outcome, resolved by looking
   the order up by its client order id — never a blind resend or rollback;
5. the fill is taken from whichever source answers first (stream or REST);
6. protect: stop + exact-quantity take-profits on the exchange (service/exits.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import structlog

from warden.domain.errors import ValidationError
from warden.domain.events import Event, EventKind
from warden.domain.orders import Order, OrderStatus
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import (
    FillReport,
    MarkPrice,
    OrderReport,
    OrderRequest,
    PositionReport,
    StreamEvent,
    StreamGap,
)
from warden.domain.sizing import order_qty
from warden.domain.values import (
    ClientOrderId,
    Instrument,
    OrderRole,
    OrderType,
    PositionId,
    Side,
    Symbol,
    client_order_id,
    parse_client_order_id,
)
from warden.ports import (
    Alert,
    Clock,
    DuplicateSignal,
    Exchange,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    Notifier,
    OrderNotFound,
    OrderRejected,
    Store,
    StoreUnavailable,
)
from warden.service.commands import (
    AlreadyExists,
    ClosePosition,
    EngineState,
    EngineStatus,
    OpenPosition,
    PositionNotFound,
    PositionView,
    TradingRefused,
)
from warden.service.config import EngineConfig
from warden.service.exits import ExitManager
from warden.service.ledger import Ledger
from warden.service.reconciler import OrphanPolicy, Reconciler, ReconcileReport

log = structlog.get_logger("warden.engine")
T = TypeVar("T")
UNKNOWN = object()


def random_position_id() -> str:
    return secrets.token_hex(6)


class Engine:
    def __init__(
        self,
        exchange: Exchange,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        config: EngineConfig,
        new_id: Callable[[], str] = random_position_id,
    ) -> None:
        self.exchange = exchange
        self.store = store
        self.clock = clock
        self.notifier = notifier
        self.config = config
        self.ledger = Ledger(store, clock)
        self.instruments: dict[Symbol, Instrument] = {}
        self.exits = ExitManager(self)
        self.ledger.on_degraded = self._alert_degraded
        self.reconciler = Reconciler(self, OrphanPolicy(config.orphan_policy))
        self._reconciling = asyncio.Lock()
        self._new_id = new_id
        self._state = EngineState.STARTING
        self._refusals: dict[str, str] = {"recovery": "startup recovery has not passed yet"}
        self._early: dict[str, list[StreamEvent]] = defaultdict(list)
        self._early_count = 0
        self._locks: dict[PositionId, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._entry_seen: dict[PositionId, asyncio.Event] = defaultdict(asyncio.Event)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_at = clock.now()
        self.last_reconcile_at: datetime | None = None

    # ----------------------------------------------------------------- facade

    def instrument(self, symbol: str) -> Instrument | None:
        return self.instruments.get(Symbol(symbol))

    async def open_position(self, cmd: OpenPosition) -> Position:
        """Run the open saga; see the module docstring."""
        self._require_trading()
        inst = self._instrument(cmd.symbol)
        await self._refuse_duplicates(cmd, inst)
        try:
            mark = await self.query(self.exchange.mark_price(inst.symbol))
        except ExchangeError as exc:
            raise TradingRefused(f"exchange unavailable, nothing was sent: {exc}") from exc
        qty = order_qty(inst, mark, cmd.usd, cmd.qty)
        stop = self._validate_stop(cmd, inst, mark)
        pid = PositionId(self._new_id())
        now = self.clock.now()
        position = Position(
            id=pid,
            symbol=inst.symbol,
            side=cmd.side,
            status=PositionStatus.OPENING,
            target_qty=qty,
            plan=self.config.plan,
            opened_at=now,
            signal_id=cmd.signal_id,
            origin=cmd.source,
            stop_price=stop,
        )
        entry = self.intent(position, OrderRole.ENTRY, 1, OrderType.MARKET, qty)
        opening = Event(
            EventKind.POSITION_OPENING,
            now,
            pid,
            f"{cmd.side} {qty} {inst.symbol} from {cmd.source}",
            {"qty": str(qty), "mark": str(mark), "source": cmd.source},
        )
        try:
            await self.ledger.commit(None, position, orders=[entry], events=[opening], must_be_durable=True)
        except DuplicateSignal as exc:
            raise AlreadyExists(await self._existing(exc.signal_id)) from exc
        await self.replay_early(entry.client_order_id)
        report = await self._send_entry(entry)
        if report is UNKNOWN:
            self.spawn(self.resolve_later(pid))
            return self.ledger.positions[pid]
        if not isinstance(report, OrderReport) or report.filled_qty <= 0:
            reason = report if isinstance(report, str) else f"entry {getattr(report, 'status', '?')}"
            return await self.fail_entry(pid, entry, reason)
        await self.wait_for_fills(pid, entry.client_order_id, report.filled_qty, entry=True)
        if self.ledger.positions[pid].status is PositionStatus.OPENING:
            # Filled on the exchange, but no fill reached us yet from any source:
            # keep resolving (lookup + REST fills) until it is applied and protected.
            self.spawn(self.resolve_later(pid))
            return self.ledger.positions[pid]
        return await self.exits.protect(pid)

    async def close_position(self, cmd: ClosePosition) -> Position:
        if self._state in (EngineState.READ_ONLY, EngineState.STOPPED):
            raise TradingRefused(f"engine is {self._state}: {self._reason_text()}")
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

    async def list_events(self, position_id: str | None = None, limit: int = 100) -> list[Event]:
        return await self.store.list_events(PositionId(position_id) if position_id else None, limit)

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
        unprotected = [p for p in active if p.status is PositionStatus.OPEN]
        return EngineStatus(
            state=self.state,
            accepting_signals=self.accepting_signals,
            reasons=list(self._refusals.values()),
            exchange=self.config.exchange_name,
            database=self.config.database,
            open_positions=len(active),
            unprotected_positions=len(unprotected),
            started_at=self._started_at,
            last_reconcile_at=self.last_reconcile_at,
            pending_writes=len(self.ledger.pending) + len(self.ledger.pending_events),
        )

    @property
    def state(self) -> EngineState:
        if self._state is EngineState.READY and self.ledger.degraded:
            return EngineState.DEGRADED
        return self._state

    @property
    def accepting_signals(self) -> bool:
        return self.state is EngineState.READY and not self._refusals

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Startup is recovery: load, take the exchange's truth, repair, then accept signals."""
        from warden.service.recovery import recover

        self._state = EngineState.RECOVERING
        self.instruments.update(await self.query(self.exchange.instruments()))
        await recover(self)
        await self.reconcile()
        self._state = EngineState.READY
        self._refusals.pop("recovery", None)

    async def reconcile(self) -> ReconcileReport:
        """One reconciliation pass now (never two at once)."""
        async with self._reconciling:
            return await self.reconciler.run()

    async def reconcile_forever(self) -> None:
        """The timer: a pass every `reconcile_interval` seconds; a failed pass is retried next time."""
        while True:
            await self.clock.sleep(self.config.reconcile_interval)
            try:
                await self.reconcile()
            except ExchangeError as exc:
                log.warning("reconcile_failed", error=str(exc))
            except Exception as exc:
                await self._survive("reconciliation", exc)

    def new_position_id(self) -> str:
        return self._new_id()

    def refuse(self, key: str, reason: str | None) -> None:
        """Set (or clear, with None) a reason to refuse new positions."""
        if reason is None:
            self._refusals.pop(key, None)
        else:
            self._refusals[key] = reason

    def set_read_only(self, reason: str) -> None:
        """Another engine writes for this account: send nothing, write nothing."""
        self._state = EngineState.READ_ONLY
        self._refusals["lease"] = reason

    def take_over(self) -> None:
        """This engine now holds the lease: it may recover (start) and then trade."""
        self._refusals.pop("lease", None)
        self._refusals["recovery"] = "startup recovery has not passed yet"
        self._state = EngineState.STARTING

    async def consume(self, stream: Any) -> None:
        """Route every stream event; owned by the runner's TaskGroup.

        A bug handling one event must not stop the stream (positions would go
        unwatched): it is alerted and recorded, and a resync asks the exchange.
        """
        async for event in stream:
            try:
                await self.on_event(event)
            except Exception as exc:
                await self._survive("stream event", exc)
                self.spawn(self.resync_all())

    async def _survive(self, where: str, exc: BaseException) -> None:
        log.exception("background_error", where=where, error=repr(exc))
        await self.notifier.notify(Alert("critical", f"error in {where}", repr(exc)))
        try:
            await self.ledger.record(
                Event(EventKind.RECONCILE, self.clock.now(), None, f"error in {where}: {exc!r}")
            )
        except Exception:
            log.exception("could_not_record_error")

    async def maintain(self) -> None:
        """Flush queued writes while degraded, and persist moving watermarks."""
        while True:
            await self.clock.sleep(self.config.watermark_flush_interval)
            try:
                await self.flush_pending()
                await self.exits.flush_watermarks()
            except Exception as exc:
                await self._survive("maintenance", exc)

    async def flush_pending(self) -> None:
        if not self.ledger.degraded:
            return
        try:
            await self.ledger.flush()
        except StoreUnavailable as exc:
            self.ledger.last_store_error = str(exc)
            return
        await self.ledger.record(
            Event(EventKind.STORE_RECOVERED, self.clock.now(), None, "queued writes committed")
        )
        await self.notifier.notify(Alert("info", "database recovered", "queued writes are committed"))

    def _alert_degraded(self, error: str) -> None:
        alert = Alert(
            "critical",
            "database unavailable: engine degraded",
            f"positions stay protected on the exchange; writes are queued and retried ({error})",
        )
        self.spawn(self.notifier.notify(alert))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("background_task_failed", error=repr(error))
        if isinstance(error, Exception) and self._state is not EngineState.STOPPED:
            alert = Alert(
                "critical", "follow-up task failed", f"{error!r}; the next reconciliation repairs it"
            )
            asyncio.get_running_loop().create_task(self.notifier.notify(alert))

    async def wait_idle(self) -> None:
        """Wait for every follow-up task (tests and benchmarks use this)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._state = EngineState.STOPPED

    # ---------------------------------------------------------------- routing

    async def on_event(self, event: StreamEvent) -> None:
        if isinstance(event, MarkPrice):
            self.exits.on_mark(event.symbol, event.price)
        elif isinstance(event, FillReport | OrderReport):
            order = self.ledger.orders.get(ClientOrderId(event.client_order_id))
            if order is None:
                self._buffer_early(event)
            elif isinstance(event, FillReport):
                await self.apply_fill(order, event)
            else:
                await self.exits.on_order_report(order, event)
        elif isinstance(event, StreamGap):
            await self.ledger.record(
                Event(EventKind.RECONCILE, self.clock.now(), None, f"stream gap: {event.reason}")
            )
            self.spawn(self.resync_all())
        elif isinstance(event, PositionReport):
            pass  # informational: reconciliation reads positions over REST

    def _buffer_early(self, event: FillReport | OrderReport) -> None:
        """Ours but not yet known (a race with registration, or before recovery): keep it."""
        if parse_client_order_id(event.client_order_id) is None:
            return  # not warden's: reconciliation deals with outside trades
        if self._early_count >= self.config.early_buffer_limit:
            log.error("early_buffer_full", client_order_id=event.client_order_id)
            return
        self._early[event.client_order_id].append(event)
        self._early_count += 1

    def early_ids(self) -> list[str]:
        return list(self._early)

    async def replay_early(self, cid: str) -> None:
        for event in self._early.pop(cid, []):
            self._early_count -= 1
            await self.on_event(event)

    async def apply_fill(self, order: Order, report: FillReport) -> None:
        """Apply one execution through the state machine (exits.py decides the follow-ups)."""
        await self.exits.apply_fill(order, report)
        if order.role is OrderRole.ENTRY:
            self._entry_seen[order.position_id].set()

    # ----------------------------------------------------------- saga pieces

    def _require_trading(self) -> None:
        if not self.accepting_signals:
            raise TradingRefused(f"not accepting signals ({self.state}): {self._reason_text()}")

    def _reason_text(self) -> str:
        reasons = list(self._refusals.values())
        if self.ledger.degraded:
            reasons.append(f"database unavailable: {self.ledger.last_store_error}")
        return "; ".join(reasons) or "ok"

    def _instrument(self, symbol: str) -> Instrument:
        inst = self.instruments.get(Symbol(symbol))
        if inst is None:
            known = ", ".join(sorted(self.instruments)) or "none loaded"
            raise ValidationError("symbol", f"unknown symbol {symbol!r} (known: {known})")
        return inst

    async def _refuse_duplicates(self, cmd: OpenPosition, inst: Instrument) -> None:
        if cmd.signal_id:
            existing = await self.store.find_by_signal(cmd.signal_id)
            if existing is not None:
                raise AlreadyExists(existing)
        if not self.config.allow_stacking:
            for pid in self.ledger.by_symbol.get(inst.symbol, ()):
                raise AlreadyExists(self.ledger.positions[pid], f"{inst.symbol} already has an open position")

    async def _existing(self, signal_id: str) -> Position:
        existing = await self.store.find_by_signal(signal_id)
        if existing is None:  # pragma: no cover - the unique index just said it exists
            raise StoreUnavailable(f"signal {signal_id} reported duplicate but not found")
        return existing

    def _validate_stop(self, cmd: OpenPosition, inst: Instrument, mark: Decimal) -> Decimal | None:
        if cmd.stop_price is None:
            return None
        stop = inst.round_price(cmd.stop_price)
        if (cmd.side is Side.LONG and stop >= mark) or (cmd.side is Side.SHORT and stop <= mark):
            side = "below" if cmd.side is Side.LONG else "above"
            raise ValidationError("stop_price", f"a {cmd.side} stop must be {side} the mark price {mark}")
        return stop

    def intent(
        self,
        position: Position,
        role: OrderRole,
        seq: int,
        type_: OrderType,
        qty: Decimal,
        trigger: Decimal | None = None,
    ) -> Order:
        side = position.side.entry_side if role is OrderRole.ENTRY else position.side.exit_side
        return Order(
            client_order_id=client_order_id(position.id, role, seq),
            position_id=position.id,
            role=role,
            symbol=position.symbol,
            side=side,
            type=type_,
            qty=qty,
            trigger_price=trigger,
            reduce_only=role is not OrderRole.ENTRY,
            status=OrderStatus.PENDING,
            created_at=self.clock.now(),
        )

    async def _send_entry(self, entry: Order) -> OrderReport | str | object:
        try:
            return await self.send(entry)
        except OrderRejected as exc:
            return f"rejected: {exc}"
        except ExchangeUnavailable as exc:
            return f"exchange unavailable: {exc}"
        except ExchangeTimeout:
            await self.ledger.record(
                Event(
                    EventKind.ENTRY_UNKNOWN,
                    self.clock.now(),
                    entry.position_id,
                    "entry timed out; looking it up",
                )
            )
            return await self.lookup(entry)

    async def send(self, order: Order) -> OrderReport:
        if self._state in (EngineState.READ_ONLY, EngineState.STOPPED):
            raise TradingRefused(f"engine is {self._state}: {self._reason_text()}")
        request = OrderRequest(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            qty=order.qty,
            trigger_price=order.trigger_price,
            reduce_only=order.reduce_only,
        )
        return await self.deadline(
            self.exchange.place_order(request), self.config.order_timeout, order_call=True
        )

    async def lookup(self, order: Order, attempts: int | None = None) -> OrderReport | str | object:
        """Resolve an unknown outcome by client order id: a report, "not found", or UNKNOWN."""
        attempts = attempts or self.config.lookup_attempts
        not_found = 0
        for attempt in range(attempts):
            try:
                return await self.query(
                    self.exchange.fetch_order(order.symbol, order.client_order_id, order.type.conditional)
                )
            except OrderNotFound:
                not_found += 1
            except ExchangeError:
                pass
            if attempt + 1 < attempts:
                await self.clock.sleep(self.config.retry_backoff * (attempt + 1))
        return "not found on the exchange" if not_found == attempts else UNKNOWN

    async def wait_for_fills(self, pid: PositionId, cid: ClientOrderId, qty: Decimal, *, entry: bool) -> None:
        """Wait for `qty` of order `cid` to be applied: stream first, then REST fills."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.fill_wait
        while self._applied(cid) < qty and loop.time() < deadline:
            seen = self._entry_seen[pid] if entry else self.exits.exit_seen[pid]
            seen.clear()
            if self._applied(cid) >= qty:
                break
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await seen.wait()
            except TimeoutError:
                break
        if self._applied(cid) < qty:
            await self.fetch_fills_for(pid, {cid})

    def _applied(self, cid: ClientOrderId) -> Decimal:
        order = self.ledger.orders.get(cid)
        return order.filled_qty if order else Decimal(0)

    async def fetch_fills_for(self, pid: PositionId, cids: set[ClientOrderId]) -> None:
        """Apply fills of these orders the stream missed; a failed query is retried by whoever asks again."""
        try:
            await self.catch_up_fills(pid, cids)
        except ExchangeError as exc:
            log.warning("fetch_fills_failed", position_id=pid, error=str(exc))

    async def catch_up_fills(
        self, pid: PositionId, cids: set[ClientOrderId] | None = None
    ) -> list[FillReport]:
        """Read the symbol's fills since the position opened and apply those of its orders (all
        known orders when `cids` is None); returns every fill read. Raises if the exchange fails."""
        position = self.ledger.positions[pid]
        since = position.opened_at - timedelta(minutes=1)
        fills = await self.query(self.exchange.fetch_fills(position.symbol, since))
        for fill in fills:
            cid = ClientOrderId(fill.client_order_id)
            if (cids is None and cid in self.ledger.orders) or (cids is not None and cid in cids):
                await self.on_event(fill)
        return fills

    async def fail_entry(self, pid: PositionId, entry: Order, reason: str) -> Position:
        async with self.lock(pid):
            position = self.ledger.positions[pid]
            if position.status is not PositionStatus.OPENING or position.filled_qty > 0:
                return position
            failed = position.transition(PositionStatus.FAILED)
            event = Event(EventKind.ENTRY_FAILED, self.clock.now(), pid, reason)
            order = self.ledger.orders[entry.client_order_id].with_status(OrderStatus.REJECTED)
            return await self.ledger.commit(position, failed, orders=[order], events=[event])

    async def resolve_later(self, pid: PositionId) -> None:
        """An entry whose outcome stayed unknown: keep looking until it is known."""
        from warden.service.recovery import resync

        for attempt in range(60):
            await self.clock.sleep(min(30.0, self.config.retry_backoff * 2**attempt))
            try:
                await resync(self, pid)
            except ExchangeError as exc:
                log.warning("resolve_retry", position_id=pid, error=str(exc))
                continue
            if self.ledger.positions[pid].status is not PositionStatus.OPENING:
                return
        await self.notifier.notify(
            Alert("critical", "entry unresolved", f"{pid}: outcome still unknown; check the exchange", pid)
        )

    async def resync_all(self) -> None:
        """After a stream gap: events may be lost, so ask the exchange, then reconcile."""
        from warden.service.recovery import recover

        await recover(self)
        await self.reconcile()

    # ---------------------------------------------------------------- helpers

    def lock(self, pid: PositionId) -> asyncio.Lock:
        return self._locks[pid]

    async def deadline(self, call: Awaitable[T], seconds: float, *, order_call: bool = False) -> T:
        """Every exchange call has a deadline (I7); an order call that misses it is UNKNOWN."""
        try:
            async with asyncio.timeout(seconds):
                return await call
        except TimeoutError as exc:
            if order_call:
                raise ExchangeTimeout(f"no answer within {seconds}s") from exc
            raise ExchangeUnavailable(f"no answer within {seconds}s") from exc

    async def query(self, call: Awaitable[T]) -> T:
        return await self.deadline(call, self.config.query_timeout)
