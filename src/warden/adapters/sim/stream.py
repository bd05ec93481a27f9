"""The user stream of the simulated exchange: one asyncio queue, one consumer, seeded faults."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from warden.adapters.sim.faults import SimFaults
from warden.domain.reports import StreamEvent, StreamGap

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Item:
    seq: int
    due: float  # time.monotonic() at which the event may be delivered
    event: StreamEvent


class SimStream:
    """Events in (`publish`), events out (`events`), with drops, duplicates, reordering,
    latency and disconnects decided by `faults` and a seeded RNG.

    While disconnected, published events are lost (Binance has no replay); `reconnect`
    delivers a `StreamGap` so the consumer knows to reconcile. `new_session` is what a
    process restart looks like: the old socket died with the process, so whatever it had
    not delivered is gone, and the next consumer starts on a fresh connection.
    """

    def __init__(
        self, faults: SimFaults, rng: random.Random, now: Callable[[], datetime], sleep: Sleep
    ) -> None:
        self._faults = faults
        self._rng = rng
        self._now = now
        self._sleep = sleep
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._connected = True
        self._closed = False
        self._published = 0  # seq of the last event put on the queue
        self._taken = 0  # seq of the last event the consumer took
        self._waiters: list[tuple[int, asyncio.Event]] = []
        self._gap: asyncio.Task[None] | None = None  # a `stream_gap` silence in progress
        self.lost = 0  # events lost to drops and disconnects

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued(self) -> int:
        """Events published but not yet taken by the consumer."""
        return self._queue.qsize()

    def publish(self, events: Sequence[StreamEvent]) -> int | None:
        """Enqueue `events` (after faults).

        Returns the seq the consumer must reach to have seen them, or None if none was enqueued.
        """
        self._start_gap()
        if not self._connected:
            self.lost += len(events)
            return None
        batch = self._with_faults(events)
        for event in batch:
            self._put(event)
        return self._published if batch else None

    def disconnect(self) -> None:
        """Drop the connection: events published from now on are lost."""
        self._connected = False

    def reconnect(self, reason: str = "reconnected") -> None:
        """Restore the connection and tell the consumer, with a StreamGap, that it missed events."""
        if self._connected:
            return
        self._connected = True
        self._put(StreamGap(reason, self._now()))

    def close(self) -> None:
        """End the consumer's iteration after the events already queued."""
        self._closed = True
        if self._gap is not None:
            self._gap.cancel()
        self._queue.put_nowait(None)

    def _start_gap(self) -> None:
        """The `stream_gap` knob: go silent now for that many seconds, then reconnect."""
        seconds = self._faults.stream_gap
        if seconds <= 0 or self._gap is not None or not self._connected:
            return
        self._connected = False
        self._gap = asyncio.get_running_loop().create_task(self._end_gap(seconds))

    async def _end_gap(self, seconds: float) -> None:
        await self._sleep(seconds)
        self._gap = None
        self._faults.stream_gap = 0.0
        self.reconnect(f"silent for {seconds:g}s")

    def new_session(self) -> int:
        """A process restart: discard every event not yet taken, start a fresh connection.

        A consumer still iterating the old session ends (it is told, like `close`). The
        next `events()` reads the new session, which is connected and starts empty: no
        StreamGap (a restarting process reconciles anyway). Returns how many events
        were discarded; they count as lost.
        """
        old = self._queue
        discarded = 0
        while not old.empty():
            if old.get_nowait() is not None:
                discarded += 1
        old.put_nowait(None)
        self._queue = asyncio.Queue()
        if self._closed:
            self._queue.put_nowait(None)  # a closed stream stays closed
        self._connected = True
        self.lost += discarded
        self._mark_taken(self._published)  # nobody waits for events that no longer exist
        return discarded

    async def wait_taken(self, seq: int, within: float) -> bool:
        """Wait until the consumer has taken event `seq` off the stream; False on timeout."""
        if self._taken >= seq:
            return True
        taken = asyncio.Event()
        self._waiters.append((seq, taken))
        try:
            async with asyncio.timeout(within):
                await taken.wait()
        except TimeoutError:
            return False
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not taken]
        return True

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The consumer's side: yields events until `close` (or until a `new_session`)."""
        queue = self._queue  # bound to the session current when iteration starts
        while True:
            item = await queue.get()
            if item is None:
                return
            delay = item.due - time.monotonic()
            if delay > 0:
                await self._sleep(delay)
            if queue is not self._queue:  # the session ended while this event was in flight
                self.lost += 1
                return
            self._mark_taken(item.seq)
            yield item.event

    def _put(self, event: StreamEvent) -> None:
        self._published += 1
        due = time.monotonic() + self._faults.stream_latency
        self._queue.put_nowait(_Item(self._published, due, event))

    def _mark_taken(self, seq: int) -> None:
        self._taken = max(self._taken, seq)
        for wanted, taken in self._waiters:
            if wanted <= seq:
                taken.set()

    def _with_faults(self, events: Sequence[StreamEvent]) -> list[StreamEvent]:
        faults = self._faults
        batch: list[StreamEvent] = []
        for event in events:
            if faults.drop_rate > 0 and self._rng.random() < faults.drop_rate:
                self.lost += 1
                continue
            batch.append(event)
            if faults.duplicate_rate > 0 and self._rng.random() < faults.duplicate_rate:
                batch.append(event)
        if faults.reorder_rate > 0:
            for i in range(len(batch) - 1):
                if self._rng.random() < faults.reorder_rate:
                    batch[i], batch[i + 1] = batch[i + 1], batch[i]
        return batch
