"""The ports an engine under chaos is built with: wrapped at construction, switched by the runner.

    IoCounter       counts every exchange and database call of one process's life; fires the
                    step's triggers at the k-th call (a crash, a database outage, a killed
                    connection). A crash raises SimulatedCrash (a BaseException: it goes through
                    every `except Exception`) after the call ran, and every later call too.
    ChaosExchange   the exchange, counted.
    ChaosStore      the store, counted, with the database's condition (`DbFaults`, kept across
                    restarts like a real database's) and real I/O marked for the WarpLoop.
    TimedNotifier   every alert with the (virtual) time it was raised.

Nothing here patches a live object: the runner flips switches, like the simulator's knobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from warden.adapters.db.store import SqlStore
from warden.chaos.warp import real_io
from warden.domain.alerts import Alert, AlertId
from warden.domain.controls import Controls
from warden.domain.events import Event
from warden.domain.margin import SymbolConfig
from warden.domain.orders import Order
from warden.domain.position import Position
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import Instrument, PositionId, Symbol
from warden.ports import ActiveState, CloseClaim, Exchange, StoreUnavailable, Transition

T = TypeVar("T")


class SimulatedCrash(BaseException):
    """The engine's process died here."""


class IoCounter:
    """One process's I/O calls, and what happens at the k-th of them."""

    def __init__(self) -> None:
        self.calls = 0
        self.dead = False
        self.names: list[str] = []
        self._triggers: list[tuple[int, Callable[[], None]]] = []

    def at(self, k: int, action: Callable[[], None]) -> None:
        """Run `action` once the k-th call from now has completed (k=0: now)."""
        if k <= 0:
            action()
            return
        self._triggers.append((self.calls + k, action))

    def crash_at(self, k: int) -> None:
        self.at(k, self.die)

    def die(self) -> None:
        self.dead = True

    def disarm(self) -> None:
        self._triggers.clear()

    def before(self) -> None:
        if self.dead:
            raise SimulatedCrash

    def after(self, name: str) -> None:
        self.calls += 1
        self.names.append(name)
        due = [t for t in self._triggers if t[0] <= self.calls]
        self._triggers = [t for t in self._triggers if t[0] > self.calls]
        for _, action in due:
            action()
        if self.dead:
            raise SimulatedCrash


class ChaosExchange:
    """The exchange port, every call counted by the process's IoCounter."""

    def __init__(self, inner: Exchange, io: IoCounter) -> None:
        self.inner = inner
        self.io = io
        self.mutations = 0
        """Orders placed or cancelled through this process (a standby must make none)."""

    async def _call(self, name: str, call: Callable[[], Awaitable[T]]) -> T:
        self.io.before()
        try:
            return await call()
        finally:
            self.io.after(name)

    async def instruments(self) -> dict[Symbol, Instrument]:
        return await self._call("instruments", self.inner.instruments)

    async def mark_price(self, symbol: Symbol) -> Decimal:
        return await self._call("mark_price", lambda: self.inner.mark_price(symbol))

    async def place_order(self, request: OrderRequest) -> OrderReport:
        self.mutations += 1
        return await self._call("place_order", lambda: self.inner.place_order(request))

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        self.mutations += 1
        return await self._call(
            "cancel_order", lambda: self.inner.cancel_order(symbol, client_order_id, conditional)
        )

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        return await self._call(
            "fetch_order", lambda: self.inner.fetch_order(symbol, client_order_id, conditional)
        )

    async def fetch_open_orders(self) -> list[OrderReport]:
        return await self._call("fetch_open_orders", self.inner.fetch_open_orders)

    async def fetch_positions(self) -> list[PositionReport]:
        return await self._call("fetch_positions", self.inner.fetch_positions)

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        return await self._call("fetch_fills", lambda: self.inner.fetch_fills(symbol, since))

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        return await self._call("symbol_config", lambda: self.inner.symbol_config(symbol))

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        await self._call("configure_symbol", lambda: self.inner.configure_symbol(symbol, config))

    def stream(self) -> AsyncIterator[StreamEvent]:
        return self.inner.stream()

    async def close(self) -> None:
        """The exchange outlives every process of the run: closing a process leaves it running."""


@dataclass
class DbFaults:
    """The database's condition, which outlives any one engine process."""

    timeout: float
    up: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while the database answers (`down` is its inverse)."""
    slow: float = 0.0
    locked: int = 0
    kill: int = 0
    ack_lost: int = 0
    killer: Callable[[], Awaitable[None]] | None = None
    """PostgreSQL: terminate the store's backends for real (pg_terminate_backend)."""
    kills: int = field(default=0)

    def __post_init__(self) -> None:
        self.up.set()

    @property
    def down(self) -> bool:
        return not self.up.is_set()

    @down.setter
    def down(self, down: bool) -> None:
        if down:
            self.up.clear()
        else:
            self.up.set()

    def clear(self) -> None:
        self.down, self.slow, self.locked, self.kill, self.ack_lost = False, 0.0, 0, 0, 0


class ChaosStore:
    """The store port on a real SqlStore: counted, faulted by `DbFaults`, its real I/O marked."""

    def __init__(self, inner: SqlStore, io: IoCounter, faults: DbFaults) -> None:
        self.inner = inner
        self.io = io
        self.faults = faults
        self.writes = 0

    @property
    def installation_id(self) -> str:
        return self.inner.installation_id

    def set_epoch(self, account: str, epoch: int) -> None:
        self.inner.set_epoch(account, epoch)

    async def account_of_installation(self, installation_id: str) -> str | None:
        return await self._run(
            "account_of_installation", lambda: self.inner.account_of_installation(installation_id)
        )

    async def _run(self, name: str, call: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        self.io.before()
        try:
            if write:
                self.writes += 1
            return await self._faulted(name, call, write)
        finally:
            self.io.after(name)

    async def _faulted(self, name: str, call: Callable[[], Awaitable[T]], write: bool) -> T:
        f = self.faults
        if f.down:
            raise StoreUnavailable("database unavailable (chaos: outage)")
        if write and f.slow > 0:
            await asyncio.sleep(min(f.slow, f.timeout))
            if f.slow > f.timeout:
                raise StoreUnavailable(f"no answer within {f.timeout}s (chaos: slow commit, rolled back)")
        if write and f.locked > 0:
            f.locked -= 1
            await asyncio.sleep(f.timeout)
            raise StoreUnavailable("database is locked (chaos: lock timeout)")
        if write and f.kill > 0:
            f.kill -= 1
            f.kills += 1
            if f.killer is None:
                raise StoreUnavailable("connection killed mid-transaction (chaos; not committed)")
            with real_io():
                task = asyncio.ensure_future(call())
                try:
                    await f.killer()
                finally:
                    result = await task  # landed or not: the real database decides
                return result
        with real_io():
            result = await call()
        if write and name == "commit" and f.ack_lost > 0:
            f.ack_lost -= 1
            raise StoreUnavailable("connection lost before the answer (chaos: the commit landed)")
        return result

    async def commit(self, transition: Transition) -> None:
        await self._run("commit", lambda: self.inner.commit(transition), write=True)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        await self._run("commit", lambda: self.inner.commit_many(transitions), write=True)

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        await self._run("append_events", lambda: self.inner.append_events(events, alerts), write=True)

    async def pending_alerts(self, limit: int = 100) -> list[Alert]:
        return await self._run("pending_alerts", lambda: self.inner.pending_alerts(limit))

    async def mark_alerts_delivered(self, ids: Sequence[AlertId], at: datetime) -> None:
        await self._run(
            "mark_alerts_delivered", lambda: self.inner.mark_alerts_delivered(ids, at), write=True
        )

    async def record_alert_channels(self, channels: Mapping[AlertId, Collection[str]]) -> None:
        await self._run(
            "record_alert_channels", lambda: self.inner.record_alert_channels(channels), write=True
        )

    async def alert_channels(self, ids: Sequence[AlertId]) -> dict[AlertId, set[str]]:
        return await self._run("alert_channels", lambda: self.inner.alert_channels(ids))

    async def load_controls(self) -> Controls:
        return await self._run("load_controls", self.inner.load_controls)

    async def save_controls(self, controls: Controls) -> None:
        await self._run("save_controls", lambda: self.inner.save_controls(controls), write=True)

    async def realized_pnl_since(self, since: datetime) -> Decimal:
        return await self._run("realized_pnl_since", lambda: self.inner.realized_pnl_since(since))

    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: PositionId | None = None
    ) -> list[tuple[int, Event]]:
        return await self._run(
            "events_since", lambda: self.inner.events_since(after_id, limit, position_id=position_id)
        )

    async def save_marks(self, positions: Sequence[Position]) -> None:
        await self._run("save_marks", lambda: self.inner.save_marks(positions), write=True)

    async def load_active(self) -> ActiveState:
        return await self._run("load_active", self.inner.load_active)

    async def get_position(self, position_id: PositionId) -> Position | None:
        return await self._run("get_position", lambda: self.inner.get_position(position_id))

    async def find_by_signal(self, signal_id: str) -> Position | None:
        return await self._run("find_by_signal", lambda: self.inner.find_by_signal(signal_id))

    async def claim_close_signal(
        self, signal_id: str, symbol: Symbol, position_ids: Sequence[PositionId], at: datetime
    ) -> CloseClaim:
        return await self._run(
            "claim_close_signal",
            lambda: self.inner.claim_close_signal(signal_id, symbol, position_ids, at),
            write=True,
        )

    async def list_positions(self, *, include_closed: bool = False, limit: int = 100) -> list[Position]:
        return await self._run(
            "list_positions", lambda: self.inner.list_positions(include_closed=include_closed, limit=limit)
        )

    async def orders_for(self, position_id: PositionId) -> list[Order]:
        return await self._run("orders_for", lambda: self.inner.orders_for(position_id))

    async def list_events(self, position_id: PositionId | None = None, limit: int = 100) -> list[Event]:
        return await self._run("list_events", lambda: self.inner.list_events(position_id, limit))

    async def ping(self) -> None:
        await self._run("ping", self.inner.ping)

    async def close(self) -> None:
        with real_io():
            await self.inner.close()


@dataclass(frozen=True, slots=True)
class TimedAlert:
    at: float
    alert: Alert


class TimedNotifier:
    """Keeps every alert with the loop time it was raised at; `down` makes delivery fail."""

    def __init__(self) -> None:
        self.alerts: list[TimedAlert] = []
        self.down = False

    async def notify(self, alert: Alert) -> None:
        if self.down:
            raise ConnectionError("notifier unavailable (chaos)")
        self.alerts.append(TimedAlert(asyncio.get_running_loop().time(), alert))

    def since(self, t: float) -> list[Alert]:
        return [a.alert for a in self.alerts if a.at >= t]
