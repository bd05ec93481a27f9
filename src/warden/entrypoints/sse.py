"""The event stream (GET /api/v1/stream): every committed event as a server-sent event.

Each message carries the event's id (`id:`), its kind (`event:`) and the event as JSON
(`data:`). A client that reconnects sends the last id it saw as `Last-Event-ID` (browsers
do it by themselves) or `?after=`, and gets exactly the events committed after it (an id
larger than any in the database is another database's: that client gets every event). A new
client gets the `backlog` most recent events, then everything from then on.

The stream reads the database (the committed record): what it shows is durable, and a client
of a standby engine sees what the holder commits. One reader per engine (`EventFeed`) reads
it every `poll` seconds while any client is connected and keeps the newest events for all of
them; a client further behind than that reads the database itself until it has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime

from warden.domain.events import Event
from warden.entrypoints.schemas import EventOut

POLL = 0.2
"""Seconds between looks for new events."""
KEEPALIVE = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""
BATCH = 500
KEEP = 2000
"""Events the shared reader keeps for its clients."""

EventsSince = Callable[[int | None, int], Awaitable[list[tuple[int, Event]]]]
Rendered = tuple[int, Event, str]
"""An event, its id, and its message as sent (rendered once, for every client)."""


def message(event_id: int, event: Event) -> str:
    data = EventOut.of(event, event_id).model_dump_json()
    return f"id: {event_id}\nevent: {event.kind.value}\ndata: {data}\n\n"


class EventFeed:
    """The one reader of an engine's committed events that every stream client shares.

    It runs while a client is connected. Every event after `floor` up to `newest` is kept
    (the newest `keep` of them), so a client whose last id is at least `floor` is served from
    memory; a database error is kept in `error` for the clients (their streams end, and they
    reconnect) until a read succeeds again."""

    def __init__(
        self,
        events_since: EventsSince,
        on_idle: Callable[[], None] = lambda: None,
        poll: float = POLL,
        keep: int = KEEP,
    ) -> None:
        self.events_since = events_since
        self.poll = poll
        self.newest: int | None = None
        self.floor: int | None = None
        self.error: Exception | None = None
        self._kept: deque[Rendered] = deque(maxlen=keep)
        self._changed = asyncio.Event()
        self._clients = 0
        self._task: asyncio.Task[None] | None = None
        self._on_idle = on_idle

    @contextlib.contextmanager
    def client(self) -> Iterator[EventFeed]:
        """One client connected for the block's length; the reader stops with the last."""
        self._clients += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="warden-event-feed")
        try:
            yield self
        finally:
            self._clients -= 1
            if self._clients == 0 and self._task is not None:
                self._task.cancel()
                self._task = None
                self._on_idle()

    def kept_after(self, after: int) -> list[Rendered] | None:
        """The events after `after`, or None if they are not all kept (read the database)."""
        if self.floor is None or after < self.floor:
            return None
        newer: list[Rendered] = []
        for item in reversed(self._kept):
            if item[0] <= after:
                break
            newer.append(item)
        newer.reverse()
        return newer

    async def wait(self, after: int, seconds: float) -> None:
        """Until there is an event after `after`, the reader fails, or `seconds` pass."""
        if self.error is not None or (self.newest is not None and self.newest > after):
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await changed.wait()

    async def _run(self) -> None:
        while True:
            try:
                full = await self._read()
            except Exception as exc:  # the database; each client's stream ends with it
                self.error = exc
                self._wake()
                full = False
            if not full:
                await asyncio.sleep(self.poll)

    async def _read(self) -> bool:
        """One look; whether it filled a batch (then look again at once)."""
        if self.newest is None:
            recent = await self.events_since(None, 1)
            self.newest = self.floor = recent[-1][0] if recent else 0
        batch = await self.events_since(self.newest, BATCH)
        self.error = None
        for event_id, event in batch:
            if len(self._kept) == self._kept.maxlen:
                self.floor = self._kept[0][0]
            self._kept.append((event_id, event, message(event_id, event)))
        if batch:
            self.newest = batch[-1][0]
            self._wake()
        return len(batch) == BATCH

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class EventFeeds:
    """One feed per engine, while it has clients."""

    def __init__(self) -> None:
        self._feeds: dict[int, EventFeed] = {}

    def of(self, engine: object, events_since: EventsSince) -> EventFeed:
        key = id(engine)  # the feed holds `events_since`, bound to the engine: the id stays its own
        feed = self._feeds.get(key)
        if feed is None:

            def forget() -> None:
                self._feeds.pop(key, None)

            feed = self._feeds[key] = EventFeed(events_since, on_idle=forget)
        return feed


async def event_stream(
    feed: EventFeed,
    after: int | None,
    backlog: int,
    now: Callable[[], datetime],
    on_sent: Callable[[float], None] = lambda lag: None,
) -> AsyncIterator[str]:
    """Messages from after `after` (or the `backlog` newest), forever; `on_sent` gets each one's lag."""
    events_since = feed.events_since
    yield f"retry: {int(feed.poll * 5 * 1000)}\n\n"
    if after is not None:
        newest = await events_since(None, 1)
        if not newest or after > newest[-1][0]:
            after = 0  # an id of another database (warden moved to a fresh one): all of this one is new
    if after is None:
        recent = await events_since(None, max(backlog, 1))
        after = recent[-1][0] if recent else 0
        for event_id, event in recent[-backlog:] if backlog else []:
            yield message(event_id, event)
    loop = asyncio.get_running_loop()
    with feed.client():
        quiet_since = loop.time()
        while True:
            if feed.error is not None:
                raise feed.error
            batch = feed.kept_after(after)
            if batch is None:  # further behind than the feed keeps: from the database itself
                batch = [(i, e, message(i, e)) for i, e in await events_since(after, BATCH)]
            for event_id, event, text in batch:
                on_sent((now() - event.at).total_seconds())
                yield text
                after = event_id
            if batch:
                quiet_since = loop.time()
                continue
            quiet = loop.time() - quiet_since
            if quiet >= KEEPALIVE:
                quiet_since = loop.time()
                yield ": keep-alive\n\n"
                continue
            await feed.wait(after, KEEPALIVE - quiet)
