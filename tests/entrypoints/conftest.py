"""Fixtures for the entrypoint tests: a real engine on the simulated exchange, and clients of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Runtime, running
from warden.config import Settings
from warden.entrypoints.api import create_app

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WARDEN_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("WARDEN_"):
            monkeypatch.delenv(name)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load(
        db=f"sqlite:///{tmp_path}/w.db",
        exchange="sim",
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        **overrides,
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A recovered, running engine on a fresh SQLite file; prices move only when a test moves them.

    Its alerts are recorded, not logged: the CLI tests run the engine in their own process, and
    its log lines would otherwise land in the output the tests read."""
    async with running(make_settings(tmp_path), price_feed=False, notifier=RecordingNotifier()) as rt:
        yield rt


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the API over the running engine, in process."""
    app = create_app(lambda: runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://warden") as http:
        yield http


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """signal_wait 0.1 s, and an exchange that takes 0.3 s to answer each call."""
    async with running(make_settings(tmp_path, signal_wait=0.1), price_feed=False) as rt:
        assert rt.sim is not None
        rt.sim.faults.rest_latency = 0.3
        app = create_app(lambda: rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
            yield rt, http
