"""What the runner drives and the checker judges: a position manager on the in-process exchange.

`Subject` is what a scenario needs of a manager (open, close, die and come back, settle) and
what the checker needs to see (its memory, its database, its fills, events and alerts).
`WardenSubject` is the real engine, built the way `bootstrap` builds it (store, lease with a
fencing epoch, the engine's own loops), with its ports wrapped at construction. The naive
twin (naive.py) is the other Subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select

from warden.adapters.db.lease import lease_for
from warden.adapters.db.schema import fills
from warden.adapters.db.store import SqlStore, open_store
from warden.adapters.memory import InMemoryStore
from warden.adapters.sim import SimulatedExchange
from warden.chaos.ports import ChaosExchange, ChaosStore, DbFaults, IoCounter, SimulatedCrash, TimedNotifier
from warden.chaos.steps import Step
from warden.chaos.warp import WarpClock, real_io
from warden.domain.errors import ValidationError
from warden.domain.events import Event
from warden.domain.orders import OrderStatus
from warden.domain.position import Position
from warden.domain.values import PositionId, Side, Symbol, parse_client_id
from warden.ports import ExchangeError, Lease, StoreError
from warden.service.commands import (
    AlreadyExists,
    ClosePosition,
    EngineState,
    NotHolder,
    OpenPosition,
    PositionNotFound,
    TradingRefused,
)
from warden.service.config import EngineConfig
from warden.service.engine import Engine

ACCOUNT = "chaos"
INSTALLATION = "chaos1"
"""The installation id of every run's database: a replay names its orders as the run did."""
SUPERVISOR_RESTART = 1.0
"""Seconds between a supervisor's starts of a process that exits because it cannot open its
database (PostgreSQL down): each start guards the exchange first (bootstrap.guard_unopened)."""


def id_maker(key: str) -> Callable[[], str]:
    """Position ids drawn from the run's key, like `secrets.token_hex(6)` but repeatable."""
    rng = random.Random(f"ids:{key}")
    return lambda: f"{rng.getrandbits(48):012x}"


EXPECTED = (TradingRefused, AlreadyExists, PositionNotFound, StoreError, ExchangeError, ValidationError)
"""What a manager may answer a caller under faults; anything else escaping the facade is a bug."""


class Unexpected(Exception):
    """The manager's facade raised something no caller should ever see."""


@dataclass(frozen=True, slots=True)
class Held:
    """One active position as a manager (memory or database) sees it."""

    id: str
    symbol: Symbol
    side: Side
    qty: Decimal
    status: str
    exit: tuple[object, ...] = ()
    """Exit state compared between memory and database (I5)."""
    stop: str | None = None
    stop_qty: Decimal | None = None
    stop_price: Decimal | None = None
    watermark: Decimal | None = None

    @property
    def signed(self) -> Decimal:
        return self.qty * self.side.sign


def exit_state(p: Position) -> tuple[object, ...]:
    return (
        p.status.value,
        p.remaining,
        p.tp1_hit,
        p.tp2_hit,
        p.trailing_active,
        p.stop_price,
        p.watermark,
        p.exit_reason,
    )


class Subject(Protocol):
    name: str
    io: IoCounter
    db: DbFaults
    notifier: TimedNotifier

    def owns(self, client_order_id: str) -> bool: ...

    async def boot(self) -> None: ...

    async def crash(self) -> None: ...

    def restart(self) -> None: ...

    def busy(self) -> bool: ...

    async def open(self, step: Step, signal_id: str | None) -> str: ...

    async def close(self, symbol: Symbol) -> str: ...

    def memory(self) -> list[Held]: ...

    async def stored(self) -> list[Held]: ...

    async def ended(self, position_id: str) -> tuple[object, ...] | None:
        """The exit state stored for a position that is no longer active, or None."""
        ...

    async def recorded(self) -> dict[str, Decimal]: ...

    async def events(self) -> list[Event]: ...

    async def symbols(self) -> dict[str, Symbol]:
        """Every position the manager ever recorded, to its symbol."""
        ...

    def live_orders(self) -> dict[str, bool]:
        """The manager's orders it believes may be live, each with whether it believes it rests."""
        ...

    async def second_engine(self) -> list[str]: ...

    async def shutdown(self) -> None: ...


class WardenSubject:
    name = "warden"

    def __init__(
        self, sim: SimulatedExchange, url: str, config: EngineConfig, db: DbFaults, new_id: Callable[[], str]
    ) -> None:
        self.new_id = new_id
        self.sim = sim
        self.url = url
        self.config = config
        self.db = db
        self.clock = WarpClock()
        self.notifier = TimedNotifier()
        self.io = IoCounter()
        self.installation = ""
        self.engine: Engine | None = None
        self.store: ChaosStore | None = None
        self.lease: Lease | None = None
        self._booting: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self.boots = 0

    # ----------------------------------------------------------------- lifecycle

    async def boot(self) -> None:
        """A new process: open the store, take the lease, build the engine, recover (retrying)."""
        if not self.url.startswith("sqlite"):
            # PostgreSQL: the process cannot open its store or take its advisory lock. It guards
            # what the exchange holds under the installation id kept beside its data
            # (bootstrap.guard_unopened) and exits, and the supervisor starts it again, until the
            # server answers. On SQLite the file opens and the lock is a file lock: the engine
            # starts, cannot read its database, and guards what the exchange holds until it can
            # (Engine.start_with_retry).
            while self.db.down:
                await self._guard_unopened()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SUPERVISOR_RESTART):
                        await self.db.up.wait()
        io = self.io
        with real_io():
            inner = await open_store(
                self.url, exchange="sim", account=ACCOUNT, op_timeout=self.db.timeout, migrate=False
            )
            lease = lease_for(self.url, ACCOUNT, op_timeout=self.db.timeout)
            epoch = await lease.try_acquire()
        if epoch is None:
            raise Unexpected(f"a restarted engine could not take the lease (held by {lease.holder()})")
        self.installation = inner.installation_id
        store = ChaosStore(inner, io, self.db)
        store.set_epoch(ACCOUNT, epoch)
        config = replace(self.config, installation_id=inner.installation_id)
        engine = Engine(ChaosExchange(self.sim, io), store, self.clock, self.notifier, config, self.new_id)
        self.store, self.lease, self.engine = store, lease, engine
        engine.take_over()
        engine.run_loops(self.sim.stream())
        self._starting = asyncio.ensure_future(self._start(engine))
        self.boots += 1

    async def _guard_unopened(self, exchange: ChaosExchange | None = None) -> None:
        """One start that cannot open the database: the exchange guarded, nothing else done."""
        config = replace(self.config, installation_id=self.installation)
        exchange = exchange or ChaosExchange(self.sim, self.io)
        guard = Engine(exchange, InMemoryStore(), self.clock, TimedNotifier(), config)
        with contextlib.suppress(ExchangeError):
            await guard.recovery.guard_unleased(send=bool(self.installation))

    async def _start(self, engine: Engine) -> None:
        try:
            await engine.start_with_retry()
        except (SimulatedCrash, NotHolder):
            return

    async def crash(self) -> None:
        """The process dies: nothing of it acts again; database and exchange are kept."""
        self.io.die()
        for task in (self._booting, self._starting):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.engine is not None:
            await self.engine.stop()
        self.sim.new_session()  # its websocket died with it
        with real_io():
            if self.store is not None:
                await self.store.close()
            if self.lease is not None:
                await self.lease.release()  # the OS drops the flock / the server the advisory lock
        self.engine = self.store = self.lease = None
        self.io = IoCounter()  # the next process's

    def restart(self) -> None:
        """Start a new process in the background (it may have to wait for the database)."""
        self._booting = asyncio.ensure_future(self.boot())

    def busy(self) -> bool:
        if self._booting is not None and not self._booting.done():
            return True
        if self._starting is not None and not self._starting.done():
            return True
        return self.engine is not None and len(self.engine.ctx.tasks) > 0

    @property
    def state(self) -> EngineState | None:
        return None if self.engine is None else self.engine.state

    async def shutdown(self) -> None:
        await self.crash()

    # ------------------------------------------------------------------- actions

    def _engine(self) -> Engine:
        if self.engine is None or self.io.dead:
            raise SimulatedCrash
        return self.engine

    async def open(self, step: Step, signal_id: str | None) -> str:
        cmd = OpenPosition(step.symbol, step.side, usd=step.usd, signal_id=signal_id, source="chaos")
        try:
            position = await self._engine().open_position(cmd)
        except AlreadyExists as exc:
            return f"409 {exc}"
        except EXPECTED as exc:
            return f"refused: {type(exc).__name__}: {exc}"
        except (SimulatedCrash, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise Unexpected(f"open raised {type(exc).__name__}: {exc}") from exc
        return f"{position.id} {position.status} {position.filled_qty}"

    async def close(self, symbol: Symbol) -> str:
        engine = self._engine()
        held = [p for p in engine.ledger.active_positions() if p.symbol == symbol]
        if not held:
            return "nothing to close"
        try:
            closed = await engine.close_position(ClosePosition(held[0].id))
        except EXPECTED as exc:
            return f"refused: {type(exc).__name__}: {exc}"
        except (SimulatedCrash, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise Unexpected(f"close raised {type(exc).__name__}: {exc}") from exc
        return f"{closed.id} {closed.status} {closed.exit_reason}"

    async def second_engine(self) -> list[str]:
        """I6: a second engine on the same database stands by: it sends nothing and writes nothing.
        Started while the database is down, it cannot open it: it guards what the exchange shows
        uncovered half the protection window apart (bootstrap.guard_unopened), which is nothing
        while the first engine protects its positions."""
        if self.db.down:
            exchange = ChaosExchange(self.sim, IoCounter())
            await self._guard_unopened(exchange)
            if exchange.mutations:
                return [f"I6: a second process with the database down sent {exchange.mutations} guard stops"]
            return []
        io = IoCounter()
        with real_io():
            inner = await open_store(
                self.url, exchange="sim", account=ACCOUNT, op_timeout=self.db.timeout, migrate=False
            )
            lease = lease_for(self.url, ACCOUNT, op_timeout=self.db.timeout)
            epoch = await lease.try_acquire()
        problems = []
        store = ChaosStore(inner, io, DbFaults(self.db.timeout))
        exchange = ChaosExchange(self.sim, io)
        try:
            if epoch is not None:
                problems.append(
                    f"I6: a second engine took the lease (epoch {epoch}) while the first holds it"
                )
                return problems
            config = replace(self.config, installation_id=inner.installation_id)
            second = Engine(exchange, store, self.clock, TimedNotifier(), config)
            second.set_read_only(f"standby: account {ACCOUNT!r} is held by {lease.holder()}")
            symbol = (
                self.sim.core.positions()[0].symbol if self.sim.core.positions() else Symbol("SOL/USDT:USDT")
            )
            attempts = [
                second.open_position(OpenPosition(symbol, Side.LONG, usd=Decimal(150), source="second")),
                second.reconcile(),
            ]
            primary = self.engine.ledger.active_positions() if self.engine is not None else []
            if primary:
                attempts.append(second.close_position(ClosePosition(primary[0].id)))
            for attempt in attempts:
                try:
                    await attempt
                    problems.append("I6: the standby engine accepted a call")
                except TradingRefused:
                    pass
            if exchange.mutations or store.writes:
                sent, wrote = exchange.mutations, store.writes
                problems.append(f"I6: the standby placed or cancelled {sent} orders and wrote {wrote} times")
            await second.stop()
        finally:
            with real_io():
                await lease.release()
                await inner.close()
        return problems

    # --------------------------------------------------------------------- views

    def owns(self, client_order_id: str) -> bool:
        parsed = parse_client_id(client_order_id)
        return parsed is not None and parsed.installation == self.installation

    def memory(self) -> list[Held]:
        if self.engine is None:
            return []
        ledger = self.engine.ledger
        self.engine.exits.index.materialize_all()
        out = []
        for p in ledger.active_positions():
            stop = ledger.current_stop(p.id)
            resting = stop if stop is not None and stop.status is OrderStatus.OPEN else None
            out.append(
                Held(
                    p.id,
                    p.symbol,
                    p.side,
                    p.remaining,
                    p.status.value,
                    exit_state(p),
                    None if resting is None else resting.client_order_id,
                    None if resting is None else resting.qty,
                    p.stop_price,
                    p.watermark,
                )
            )
        return out

    async def _inner(self) -> SqlStore:
        if self.store is not None:
            return self.store.inner
        with real_io():
            return await open_store(self.url, exchange="sim", account=ACCOUNT, migrate=False)

    async def stored(self) -> list[Held]:
        inner = await self._inner()
        with real_io():
            state = await inner.load_active()
            if inner is not (self.store.inner if self.store else None):
                await inner.close()
        stops = {
            o.position_id: o
            for o in sorted(state.orders, key=lambda o: o.created_at)
            if o.role.value == "stop" and o.status is OrderStatus.OPEN
        }
        return [
            Held(
                p.id,
                p.symbol,
                p.side,
                p.remaining,
                p.status.value,
                exit_state(p),
                stops[p.id].client_order_id if p.id in stops else None,
                stops[p.id].qty if p.id in stops else None,
                p.stop_price,
                p.watermark,
            )
            for p in state.positions
        ]

    async def ended(self, position_id: str) -> tuple[object, ...] | None:
        p = await self.position(position_id)
        return None if p is None or p.is_active else exit_state(p)

    async def recorded(self) -> dict[str, Decimal]:
        inner = await self._inner()
        out: dict[str, Decimal] = {}
        with real_io():
            async with inner.engine.connect() as conn:
                for trade_id, qty in (await conn.execute(select(fills.c.trade_id, fills.c.qty))).all():
                    out[trade_id] = out.get(trade_id, Decimal(0)) + qty
        return out

    async def events(self) -> list[Event]:
        inner = await self._inner()
        with real_io():
            return await inner.list_events(None, limit=1_000_000)

    async def symbols(self) -> dict[str, Symbol]:
        inner = await self._inner()
        with real_io():
            every = await inner.list_positions(include_closed=True, limit=1_000_000)
        return {p.id: p.symbol for p in every}

    def live_orders(self) -> dict[str, bool]:
        if self.engine is None:
            return {}
        return {
            cid: order.status is OrderStatus.OPEN
            for cid, order in self.engine.ledger.orders.items()
            if order.status.live
        }

    async def position(self, pid: str) -> Position | None:
        inner = await self._inner()
        with real_io():
            return await inner.get_position(PositionId(pid))

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.state in (EngineState.READY, EngineState.DEGRADED)
