"""The event stream's shared reader (EventFeed): clients served from what it keeps, a client
further behind from the database, in order, none lost or repeated; it stops with its last client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.helpers import eventually
from warden.adapters.memory import InMemoryStore
from warden.domain.events import Event, EventKind
from warden.entrypoints.sse import EventFeed, EventFeeds, event_stream
from warden.ports import StoreUnavailable


def now() -> datetime:
    return datetime.now(UTC)


async def append(store: InMemoryStore, n: int) -> None:
    for i in range(n):
        await store.append_events([Event(EventKind.RECONCILE, now(), None, f"event {i}")])


async def ids_until(stream: AsyncIterator[str], last: int) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(10):
        async for chunk in stream:
            if chunk.startswith("id: "):
                got.append(int(chunk.split("\n", 1)[0][4:]))
                if got[-1] >= last:
                    return got
    return got


async def drain(stream: AsyncIterator[str]) -> None:
    async for _ in stream:
        pass


async def test_a_client_behind_what_the_feed_keeps_reads_the_database_until_it_catches_up() -> None:
    store = InMemoryStore()
    await append(store, 5)
    feed = EventFeed(store.events_since, poll=0.01, keep=3)
    ahead = event_stream(feed, 5, 0, now)
    first = asyncio.create_task(ids_until(ahead, 25))
    await eventually(lambda: feed.newest == 5, what="the feed reading")
    await append(store, 20)
    await eventually(lambda: feed.newest == 25, what="the feed caught up")
    assert feed.floor is not None and feed.floor > 10  # only the newest 3 kept
    behind = event_stream(feed, 2, 0, now)  # reconnects with an old id
    assert await ids_until(behind, 25) == list(range(3, 26))
    assert await first == list(range(6, 26))
    await ahead.aclose()
    await behind.aclose()


async def test_the_feed_stops_with_its_last_client_and_is_forgotten() -> None:
    store = InMemoryStore()
    await append(store, 1)
    feeds = EventFeeds()
    engine = object()
    feed = feeds.of(engine, store.events_since)
    assert feeds.of(engine, store.events_since) is feed
    streams = [event_stream(feed, 0, 0, now) for _ in range(2)]
    for s in streams:
        assert await ids_until(s, 1) == [1]
    task = feed._task
    assert task is not None and not task.done()
    await streams[0].aclose()
    assert feed._task is task  # one client left
    await streams[1].aclose()
    await eventually(task.done, what="the reader stopped")
    assert feeds.of(engine, store.events_since) is not feed


async def test_a_database_failure_ends_every_clients_stream() -> None:
    """As before the feed: the client sees its stream end (and reconnects), never a silent stall."""
    store = InMemoryStore()
    await append(store, 1)
    feed = EventFeed(store.events_since, poll=0.01)
    stream = event_stream(feed, 0, 0, now)
    assert await ids_until(stream, 1) == [1]
    store.fail_reads = True
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(drain(stream), 10)
