"""Virtual time for in-process runs: an event loop that skips its idle waits.

Everything in an in-process chaos run (the engine, the simulated exchange, the
scenario driver) waits on the event loop's clock: `asyncio.sleep`, `asyncio.timeout`,
the engine's retry backoffs, the reconcile timer, an acknowledged order's fill delay.
`WarpLoop` answers `time()` from a virtual clock, and when it would block with
nothing to do it jumps that clock to its next timer instead of waiting, so a run
that spans minutes of engine time takes milliseconds.

The one thing it cannot skip is real I/O it is waiting for (the database's writer
thread, a PostgreSQL socket). Callers say when such work is in flight
(`WarpLoop.busy`); while it is, the loop blocks for real and the virtual clock
moves with the real one, so a database deadline still means what it says. CPU
time never moves the clock: a run's timings depend on its steps, not on how busy
the machine is (the order of two real I/O completions is the only thing left to
chance).
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections.abc import Coroutine, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""What virtual time 0 is as a date (every in-process run starts here)."""


class Hung(BaseException):
    """The loop ran past its real-time limit: something spins without ever letting time pass."""


class _WarpSelector(selectors.BaseSelector):
    """The platform selector, asked first without blocking; then skip, or block for real if busy."""

    def __init__(self) -> None:
        self._inner = selectors.DefaultSelector()
        self.virtual = 0.0
        self.busy = 0
        self.skipped = 0.0
        self.real_deadline: float | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.real_deadline is not None and time.monotonic() > self.real_deadline:
            self.real_deadline = None  # once: the runner's cleanup must be able to cancel what spins
            raise Hung("the run exceeded its real-time limit")
        if timeout is not None and timeout <= 0:
            return self._inner.select(0)
        ready = self._inner.select(0)
        if ready:
            return ready
        if self.busy > 0 or timeout is None:
            started = time.monotonic()
            ready = self._inner.select(timeout)
            self.virtual += time.monotonic() - started
            return ready
        self.virtual += timeout
        self.skipped += timeout
        return []


class WarpLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        self._warp = _WarpSelector()
        super().__init__(self._warp)

    def time(self) -> float:
        return self._warp.virtual

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Real I/O is in flight inside this block: wait for it for real, do not skip."""
        self._warp.busy += 1
        try:
            yield
        finally:
            self._warp.busy -= 1

    def limit(self, seconds: float | None) -> None:
        """Raise Hung out of the loop once `seconds` of real time have passed (None: no limit)."""
        self._warp.real_deadline = None if seconds is None else time.monotonic() + seconds

    @property
    def skipped(self) -> float:
        """Virtual seconds skipped so far (idle waits that took no real time)."""
        return self._warp.skipped


def warp_loop() -> WarpLoop:
    """The running loop, which must be a WarpLoop."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, WarpLoop):
        raise RuntimeError("in-process chaos runs need the WarpLoop (run them through warp.run)")
    return loop


@contextlib.contextmanager
def real_io() -> Iterator[None]:
    """Mark real I/O in flight on the running loop (a no-op on an ordinary loop)."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, WarpLoop):
        with loop.busy():
            yield
    else:
        yield


class WarpClock:
    """The engine's Clock on the loop's (virtual) time: one time for engine, exchange and driver."""

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=asyncio.get_running_loop().time())

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def run(main: Coroutine[Any, Any, T], real_limit: float | None = None) -> T:
    """Run a coroutine to completion on a fresh WarpLoop; Hung if it takes more than `real_limit`
    seconds of real time (a spin that never lets virtual time pass)."""
    with asyncio.Runner(loop_factory=WarpLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, WarpLoop)
        loop.limit(real_limit)
        try:
            return runner.run(main)
        finally:
            loop.limit(None)
