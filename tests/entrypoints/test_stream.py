"""GET /api/v1/stream: every committed event as a server-sent event, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from warden.bootstrap import Runtime

from .conftest import AUTH
from .test_api import SIGNAL
from .test_cli import url

__all__ = ["url"]  # the fixture: uvicorn serving the API over the running engine

WITHIN = 10.0


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse server-sent events: each message's id, event and JSON data."""
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in current:
                yield current
            current = {}
            continue
        key, _, value = line.partition(": ")
        if key == "data":
            current["data"] = json.loads(value)
        elif key in ("id", "event"):
            current[key] = value


async def collect_until(
    http: httpx.AsyncClient, headers: dict[str, str], stop: Any, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(WITHIN),
        http.stream("GET", "/api/v1/stream", headers=headers, params=params) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for message in messages(r):
            seen.append(message)
            if stop(message):
                return seen
    return seen


async def test_stream_needs_the_token(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/api/v1/stream")
        assert response.status_code == 401


async def test_events_arrive_as_committed_and_resume_after_last_event_id(url: str, runtime: Runtime) -> None:
    """A client sees a new position's events live, with ids; reconnecting with Last-Event-ID
    yields exactly the events committed after that id — none lost, none repeated."""
    async with httpx.AsyncClient(base_url=url, timeout=WITHIN) as http:
        [(newest, _)] = await runtime.engine.events_since(None, 1)
        listening = asyncio.create_task(
            collect_until(http, AUTH, lambda m: m["event"] == "position_protected", {"after": newest})
        )
        opened = await http.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
        assert opened.status_code == 201, opened.text
        pid = opened.json()["id"]
        live = await listening
        mine = [m for m in live if m["data"]["position_id"] == pid]
        assert mine[0]["event"] == "position_opening"
        assert mine[-1]["event"] == "position_protected"
        ids = [int(m["id"]) for m in live]
        assert ids == sorted(ids)
        assert all(m["data"]["id"] == int(m["id"]) for m in live)

        stored = await runtime.engine.events_since(None, 1000)
        resume_at = int(mine[0]["id"])
        expected = [(i, e.kind.value) for i, e in stored if i > resume_at]
        resumed = await collect_until(
            http,
            {**AUTH, "Last-Event-ID": str(resume_at)},
            lambda m: int(m["id"]) == expected[-1][0],
        )
        assert [(int(m["id"]), m["event"]) for m in resumed] == expected
        by_query = await collect_until(
            http, AUTH, lambda m: int(m["id"]) == expected[-1][0], params={"after": resume_at}
        )
        assert [int(m["id"]) for m in by_query] == [i for i, _ in expected]


async def test_backlog_then_live(url: str, runtime: Runtime) -> None:
    """?backlog=N starts with the N most recent events."""
    stored = await runtime.engine.events_since(None, 2)
    async with httpx.AsyncClient(base_url=url, timeout=WITHIN) as http:
        got = await collect_until(http, AUTH, lambda m: int(m["id"]) == stored[-1][0], params={"backlog": 2})
        assert [int(m["id"]) for m in got] == [i for i, _ in stored]


async def test_an_id_from_another_database_resumes_from_the_start(url: str, runtime: Runtime) -> None:
    """warden restarted on a fresh database (a new data dir, SQLite to PostgreSQL): an open dashboard
    or script reconnects with the Last-Event-ID of the old one, larger than any id here, and got
    nothing — the stream looked live and was silent until this database's ids passed it. Found by
    attacking the stream's resume. Every event of this database is new to that client: it gets them."""
    stored = await runtime.engine.events_since(None, 1000)
    beyond = stored[-1][0] + 5000
    async with httpx.AsyncClient(base_url=url, timeout=WITHIN) as http:
        for headers, params in (({**AUTH, "Last-Event-ID": str(beyond)}, None), (AUTH, {"after": beyond})):
            got = await collect_until(http, headers, lambda m: int(m["id"]) == stored[-1][0], params=params)
            assert [int(m["id"]) for m in got] == [i for i, _ in stored]


async def test_many_clients_share_one_reader_of_the_database(
    url: str, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stream client used to read the database 5 times a second for itself: with 200 open
    (dashboards, scripts) an open took 160 ms instead of 60. One reader per engine serves every
    client: a new event reaches all of them for a few reads of the database, not one each."""
    real = runtime.engine.events_since
    reads = 0

    async def counted(*args: Any, **kwargs: Any) -> list[tuple[int, Any]]:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(runtime.engine, "events_since", counted)
    clients = 40
    [(newest, _)] = await real(None, 1)
    live = [asyncio.Event() for _ in range(clients)]
    seen: list[list[int]] = [[] for _ in range(clients)]

    async def client(n: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", "/api/v1/stream", headers=AUTH, params={"after": newest - 1}) as r:
            async for m in messages(r):
                seen[n].append(int(m["id"]))
                live[n].set()
                if m["event"] == "position_protected":
                    return

    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(base_url=url, timeout=WITHIN, limits=limits) as http:
        tasks = [asyncio.create_task(client(n, http)) for n in range(clients)]
        async with asyncio.timeout(WITHIN):
            for event in live:
                await event.wait()  # every client has its first event: all are streaming
            before = reads
            opened = await http.post("/api/v1/signals", json=SIGNAL, headers=AUTH)
            assert opened.status_code == 201, opened.text
            await asyncio.gather(*tasks)
        during = reads - before
    stored = [i for i, _ in await real(newest - 1, 1000)]
    assert all(s == stored[: len(s)] and len(s) == len(stored) for s in seen), (seen[0], stored)
    assert during < clients // 2, f"{during} reads of the database for one open seen by {clients} clients"
