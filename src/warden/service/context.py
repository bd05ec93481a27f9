"""What every part of the engine is given at construction: no hub to reach back into.

Context
├── config, clock, instruments
├── ledger      memory <-> database, one transition at a time (the write gateway)
├── gate        may this engine act? (lease, recovery, refusals) and why not
├── alerts      tell the trader: outbox first (with the event), then the log and the
│               deliverer (delivery.py); never blocking or failing the caller
├── tasks       follow-up work, owned and cancelled together
├── locks       one per position, one per symbol (opens are serialized per symbol)
├── seen        wakes whoever waits for a fill of a position
└── flights     what may still reach the exchange (sends under way, copies, late closes)
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.domain.events import Event
from warden.domain.values import Instrument, PositionId, Symbol
from warden.ports import Clock, Notifier
from warden.service.commands import EngineState, NotHolder
from warden.service.config import EngineConfig
from warden.service.delivery import Deliverer
from warden.service.flights import InFlight
from warden.service.ledger import Ledger

log = structlog.get_logger("warden.engine")


UNCONFIRMED = (
    "the lease has not been confirmed in time (database unreachable): another engine may take the"
    " account over, so this one acts on nothing until it is confirmed again"
)


class Gate:
    """The engine's state and every reason it refuses new positions.

    Acting (sending to the exchange, writing to the database) is refused only when
    this engine is not the account's writer (a standby, or one whose lease another
    engine took) or has stopped. A database it cannot reach is *degraded*, not a
    reason to stop protecting: the writes are queued (ledger) and orders still go out.
    """

    def __init__(self, monotonic: Callable[[], float] | None = None) -> None:
        self.state = EngineState.STARTING
        self.refusals: dict[str, str] = {"recovery": "startup recovery has not passed yet"}
        self.lease_note: str | None = None
        self.monotonic = monotonic or time.monotonic
        self.act_until: float | None = None
        """On a lease with a timeout (a fleet's): the monotonic time after which this engine may
        no longer act unless the lease is confirmed again (`Engine.lease_confirmed`). None: no
        time bound (the lease is lost only when another engine is seen holding it)."""

    def refuse(self, key: str, reason: str | None) -> None:
        if reason is None:
            self.refusals.pop(key, None)
        else:
            self.refusals[key] = reason

    @property
    def standing_down(self) -> bool:
        return self.state in (EngineState.READ_ONLY, EngineState.STOPPED)

    def check_may_act(self) -> None:
        """Raise NotHolder (nothing is sent or written) unless this engine may act: it holds the
        lease and, on a lease with a timeout, confirmed it recently enough."""
        if self.standing_down:
            raise NotHolder(f"engine is {self.state}: {self.reason_text()}")
        if self.unconfirmed:
            raise NotHolder(UNCONFIRMED)

    @property
    def unconfirmed(self) -> bool:
        """The lease has a timeout and was not confirmed in time: act on nothing (UNCONFIRMED)."""
        return self.act_until is not None and self.monotonic() >= self.act_until

    def reason_text(self) -> str:
        return "; ".join(self.refusals.values()) or "ok"


class Tasks:
    """Follow-up work spawned by the engine: tracked, awaited in tests, cancelled on stand-down."""

    def __init__(self, on_error: Any = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.failed(error)

    def failed(self, error: BaseException) -> None:
        """Follow-up work that raised: logged and reported, whether it ran in a task or at once."""
        log.error("background_task_failed", error=repr(error), exc_info=error)
        if isinstance(error, Exception) and self.on_error is not None:
            self.on_error(error)

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Locks:
    """Per-position and per-symbol locks; a lock nobody holds or waits for is dropped."""

    def __init__(self) -> None:
        self._positions: dict[PositionId, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._symbols: dict[Symbol, asyncio.Lock] = defaultdict(asyncio.Lock)

    def position(self, pid: PositionId) -> asyncio.Lock:
        return self._positions[pid]

    def symbol(self, symbol: Symbol) -> asyncio.Lock:
        return self._symbols[symbol]

    def forget(self, pid: PositionId) -> None:
        lock = self._positions.get(pid)
        if lock is not None and not lock.locked():
            del self._positions[pid]

    def __len__(self) -> int:
        return len(self._positions)


@dataclass
class Context:
    config: EngineConfig
    clock: Clock
    notifier: Notifier
    ledger: Ledger
    deliverer: Deliverer
    gate: Gate = field(default_factory=Gate)
    instruments: dict[Symbol, Instrument] = field(default_factory=dict)
    tasks: Tasks = field(default_factory=Tasks)
    locks: Locks = field(default_factory=Locks)
    seen: dict[PositionId, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))
    sagas: Counter[PositionId] = field(default_factory=Counter)
    """Positions whose open saga (or its background part) is running: it protects them itself."""
    flights: InFlight = field(init=False)
    """What of this engine's exit orders may still reach the exchange, and until when."""

    def __post_init__(self) -> None:
        self.flights = InFlight(self.config, self.clock, self.ledger)

    def alert(self, kind: AlertKind, message: str, position_id: PositionId | None = None) -> None:
        """Tell the trader from code that cannot wait (callbacks)."""
        self.tasks.spawn(self.notify(kind, message, position_id))

    def make_alert(self, kind: AlertKind, message: str, position_id: PositionId | None = None) -> Alert:
        """An alert to write with a transition (`ledger.commit(alerts=...)`), then `announce`."""
        return Alert(AlertId(secrets.token_hex(8)), kind, message, self.clock.now(), position_id)

    async def notify(
        self,
        kind: AlertKind,
        message: str,
        position_id: PositionId | None = None,
        *,
        events: Sequence[Event] = (),
    ) -> None:
        """Tell the trader: the alert (with `events`, its cause) is written to the outbox in one
        transaction — or queued while the database is down — then logged and handed to the
        deliverer. Never blocks on a channel, never fails the caller."""
        alert = self.make_alert(kind, message, position_id)
        stored = True
        try:
            await self.ledger.record(*events, alerts=[alert])
        except Exception as exc:  # a standby, a lost lease: delivered from memory all the same
            stored = False
            log.warning("alert_not_stored", kind=kind.value, error=repr(exc))
        await self.announce(alert, stored=stored)

    async def announce(self, *alerts: Alert, stored: bool = True) -> None:
        """Alerts already written (with their transition): the log now, the channels soon."""
        for alert in alerts:
            self.deliverer.offer(alert, stored=stored)
            await self.deliverer.log_now(alert, self.config.alert_timeout)

    def saga_begin(self, pid: PositionId) -> None:
        self.sagas[pid] += 1

    def saga_end(self, pid: PositionId) -> None:
        self.sagas[pid] -= 1
        if self.sagas[pid] <= 0:
            del self.sagas[pid]

    def forget(self, pid: PositionId) -> None:
        """A finished position leaves memory (its rows stay in the database)."""
        self.locks.forget(pid)
        self.seen.pop(pid, None)
        self.ledger.forget(pid)
