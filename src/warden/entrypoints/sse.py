"""The event stream (GET /api/v1/stream): every committed event as a server-sent event.

Each message carries the event's id (`id:`), its kind (`event:`) and the event as JSON
(`data:`). A client that reconnects sends the last id it saw as `Last-Event-ID` (browsers
do it by themselves) or `?after=`, and gets exactly the events committed after it (an id
larger than any in the database is another database's: that client gets every event). A new
client gets the `backlog` most recent events, then everything from then on.

The stream reads the database (the committed record) every `poll` seconds: what it shows
is durable, and a client of a standby engine sees what the holder commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from warden.domain.events import Event
from warden.entrypoints.schemas import EventOut

POLL = 0.2
"""Seconds between looks for new events."""
KEEPALIVE = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""
BATCH = 500

EventsSince = Callable[[int | None, int], Awaitable[list[tuple[int, Event]]]]


def message(event_id: int, event: Event) -> str:
    data = EventOut.of(event, event_id).model_dump_json()
    return f"id: {event_id}\nevent: {event.kind.value}\ndata: {data}\n\n"


async def event_stream(
    events_since: EventsSince,
    after: int | None,
    backlog: int,
    now: Callable[[], datetime],
    on_sent: Callable[[float], None] = lambda lag: None,
    poll: float = POLL,
) -> AsyncIterator[str]:
    """Messages from after `after` (or the `backlog` newest), forever; `on_sent` gets each one's lag."""
    yield f"retry: {int(poll * 5 * 1000)}\n\n"
    if after is not None:
        newest = await events_since(None, 1)
        if not newest or after > newest[-1][0]:
            after = 0  # an id of another database (warden moved to a fresh one): all of this one is new
    if after is None:
        recent = await events_since(None, max(backlog, 1))
        after = recent[-1][0] if recent else 0
        for event_id, event in recent[-backlog:] if backlog else []:
            yield message(event_id, event)
    quiet = 0.0
    while True:
        batch = await events_since(after, BATCH)
        for event_id, event in batch:
            on_sent((now() - event.at).total_seconds())
            yield message(event_id, event)
            after = event_id
        if batch:
            quiet = 0.0
            if len(batch) == BATCH:
                continue
        elif quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll)
        quiet += poll
