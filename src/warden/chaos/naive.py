"""The naive twin: a position manager built the way the seed incidents' bots were.

It runs the same steps on the same simulated exchange as warden, to show each incident
happening there (and the checker finding it). Deliberately:

- the exchange first, the database after, and a failed save silently ignored: success is
  reported anyway (seed 000);
- positions live in memory; a restart reloads only what the database got, without any exit
  state (seeds 000, 002);
- a timeout is a failure and the entry is forgotten, though it may have filled; an order the
  exchange acknowledged but has not filled yet counts as failed too (seed 001's rollback);
- events of an order it has not registered yet are dropped, and orders are registered only
  after the REST answer (seed 001: "pending positions ignored updates");
- exits are placed by a monitoring loop once a second, once: the stop for the entry size, and
  TP1 as a close-position order, so it closes 100 % instead of 60 % (seed 002); nothing is
  resized, nothing re-placed;
- no reconciliation and no lease: what someone does on the account is never seen (seed 003).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from warden.adapters.sim import SimulatedExchange
from warden.chaos.ports import ChaosExchange, DbFaults, IoCounter, SimulatedCrash, TimedNotifier
from warden.chaos.steps import Step
from warden.chaos.subject import Held
from warden.domain.events import Event
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderRequest, StreamEvent
from warden.domain.sizing import order_qty
from warden.domain.values import ClientOrderId, OrderType, Side, Symbol
from warden.ports import ExchangeError, ExchangeTimeout

MONITOR_INTERVAL = 1.0
PREFIX = "nv-"


@dataclass
class NaivePosition:
    id: str
    symbol: Symbol
    side: Side
    qty: Decimal
    entry: Decimal
    exits_placed: bool = False
    orders: dict[str, str] = field(default_factory=dict)  # role -> client order id
    stop_qty: Decimal = Decimal(0)


class NaiveSubject:
    name = "naive"

    def __init__(self, sim: SimulatedExchange, url: str, db: DbFaults, new_id: Callable[[], str]) -> None:
        del url  # its "database" is a table in memory that outlives its processes
        self.new_id = new_id
        self.sim = sim
        self.db = db
        self.notifier = TimedNotifier()
        self.io = IoCounter()
        self.rows: dict[str, tuple[Symbol, Side, Decimal, Decimal]] = {}
        self.positions: dict[str, NaivePosition] = {}
        self.orders: dict[str, str] = {}  # client order id -> position id, once registered
        self._tasks: list[asyncio.Task[None]] = []
        self.exchange = ChaosExchange(sim, self.io)

    # ----------------------------------------------------------------- lifecycle

    async def boot(self) -> None:
        self.exchange = ChaosExchange(self.sim, self.io)
        self.positions = {
            pid: NaivePosition(pid, symbol, side, qty, entry)
            for pid, (symbol, side, qty, entry) in self.rows.items()
        }
        self.orders = {}
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume()), loop.create_task(self._monitor())]

    async def crash(self) -> None:
        self.io.die()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.sim.new_session()
        self.positions, self.orders = {}, {}
        self.io = IoCounter()  # the next process's

    def restart(self) -> None:
        self._tasks = [asyncio.ensure_future(self.boot())]

    def busy(self) -> bool:
        return False

    async def shutdown(self) -> None:
        await self.crash()

    # ------------------------------------------------------------------- actions

    async def open(self, step: Step, signal_id: str | None) -> str:
        del signal_id  # no idempotency
        ex = self.exchange
        inst = self.sim.core.instruments[step.symbol]
        try:
            mark = await ex.mark_price(step.symbol)
            qty = order_qty(inst, mark, step.usd, None)
            pid = self.new_id()
            cid = f"{PREFIX}{pid}-e"
            request = OrderRequest(
                ClientOrderId(cid), step.symbol, step.side.entry_side, OrderType.MARKET, qty
            )
            report = await ex.place_order(request)
        except ExchangeTimeout:
            return "refused: timed out, so it failed (rolled back)"
        except ExchangeError as exc:
            return f"refused: {exc}"
        if report.status is not OrderStatus.FILLED:
            return f"refused: entry {report.status}, so it failed (rolled back)"
        position = NaivePosition(pid, step.symbol, step.side, report.filled_qty, report.avg_price or mark)
        self.positions[pid] = position  # memory first
        self.orders[cid] = pid
        await self._save(position)  # then the database, failures ignored
        return f"{pid} open {position.qty} (success)"

    async def close(self, symbol: Symbol) -> str:
        held = [p for p in self.positions.values() if p.symbol == symbol]
        if not held:
            return "nothing to close"
        position = held[0]
        cid = f"{PREFIX}{position.id}-c"
        request = OrderRequest(
            ClientOrderId(cid), symbol, position.side.exit_side, OrderType.MARKET, position.qty, None, True
        )
        try:
            await self.exchange.place_order(request)
        except ExchangeError as exc:
            return f"refused: {exc}"
        for order in position.orders.values():
            with contextlib.suppress(ExchangeError):
                await self.exchange.cancel_order(symbol, order, True)
        self._forget(position)
        return f"{position.id} closed"

    async def second_engine(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ internals

    async def _save(self, position: NaivePosition) -> None:
        self.io.before()
        try:
            f = self.db
            if f.down or f.locked or f.kill or f.slow > f.timeout:
                f.locked, f.kill = max(0, f.locked - 1), max(0, f.kill - 1)
                return  # silently ignored
            self.rows[position.id] = (position.symbol, position.side, position.qty, position.entry)
        finally:
            self.io.after("save")

    def _forget(self, position: NaivePosition) -> None:
        self.positions.pop(position.id, None)
        if not (self.db.down or self.db.locked):
            self.rows.pop(position.id, None)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            for position in list(self.positions.values()):
                if position.exits_placed:
                    continue
                position.exits_placed = True
                await self._place_exits(position)

    async def _place_exits(self, p: NaivePosition) -> None:
        inst = self.sim.core.instruments[p.symbol]
        sign = p.side.sign
        plan = (
            ("stop", OrderType.STOP_MARKET, p.entry * (1 - sign * Decimal("0.015")), p.qty, False),
            ("tp1", OrderType.TAKE_PROFIT_MARKET, p.entry * (1 + sign * Decimal("0.01")), Decimal(0), True),
            (
                "tp2",
                OrderType.TAKE_PROFIT_MARKET,
                p.entry * (1 + sign * Decimal("0.02")),
                inst.round_qty(p.qty * Decimal("0.2")),
                False,
            ),
        )
        for role, kind, price, qty, whole in plan:
            cid = f"{PREFIX}{p.id}-{role}"
            request = OrderRequest(
                ClientOrderId(cid), p.symbol, p.side.exit_side, kind, qty, inst.round_price(price), not whole
            )
            self.io.before()
            try:
                await self.sim.place_order(request, close_position=whole)
            except ExchangeError:
                continue  # ignored
            finally:
                self.io.after("place_order")
            p.orders[role] = cid
            self.orders[cid] = p.id
            if role == "stop":
                p.stop_qty = qty

    async def _consume(self) -> None:
        try:
            async for event in self.sim.stream():
                self._on(event)
        except SimulatedCrash:
            return

    def _on(self, event: StreamEvent) -> None:
        if not isinstance(event, FillReport):
            return
        pid = self.orders.get(event.client_order_id)
        position = self.positions.get(pid or "")
        if position is None or event.client_order_id.endswith("-e"):
            return  # unknown (not registered yet) or the entry, already counted from the answer
        position.qty -= event.qty
        if position.qty <= 0:
            self._forget(position)

    # --------------------------------------------------------------------- views

    def owns(self, client_order_id: str) -> bool:
        return client_order_id.startswith(PREFIX)

    def memory(self) -> list[Held]:
        return [
            Held(
                p.id,
                p.symbol,
                p.side,
                p.qty,
                "open",
                (),
                p.orders.get("stop"),
                p.stop_qty if "stop" in p.orders else None,
            )
            for p in self.positions.values()
        ]

    async def stored(self) -> list[Held]:
        return [Held(pid, s, side, q, "open") for pid, (s, side, q, _) in self.rows.items()]

    async def ended(self, position_id: str) -> tuple[object, ...] | None:
        return None

    async def recorded(self) -> dict[str, Decimal]:
        return {}

    async def events(self) -> list[Event]:
        return []

    async def symbols(self) -> dict[str, Symbol]:
        return {}

    def live_orders(self) -> dict[str, bool]:
        return {cid: True for p in self.positions.values() for cid in p.orders.values()}
