"""A live warden for tests that drive it from outside the event loop (schemathesis, a browser).

`LiveWarden` runs `warden.bootstrap.running` (the real engine, SQLite, the in-process
simulated exchange) and uvicorn serving `create_app` on a free 127.0.0.1 port, in a
thread with its own event loop. Tests reach it over HTTP, and reach into it (move the
simulated mark, cancel a stop on the simulated exchange) with `call`, which runs a
coroutine in that loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from warden.bootstrap import Runtime, running
from warden.entrypoints.api import create_app
from warden.entrypoints.cli import GRACEFUL_SHUTDOWN, QuietServer

from .conftest import make_settings

START_TIMEOUT = 60.0
T = TypeVar("T")


class LiveWarden:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.settings = make_settings(tmp_path, **settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        host, port = self.sock.getsockname()
        self.url = f"http://{host}:{port}"
        self.runtime: Runtime | None = None
        self.down = False
        """True: the API is told no engine is running (an account between a failure and its restart)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: QuietServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-warden", daemon=True)

    def __enter__(self) -> LiveWarden:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise AssertionError("the live warden did not start")
        if self._error is not None:
            raise AssertionError(f"the live warden failed to start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(setattr, self._server, "should_exit", True)
        self._thread.join(START_TIMEOUT)
        self.sock.close()

    def call(self, make: Callable[[Runtime], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run `make(runtime)` in the warden's loop and return its result."""
        assert self.loop is not None and self.runtime is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(self.runtime), self.loop)
        return future.result(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with running(self.settings, price_feed=False) as runtime:
            self.runtime = runtime
            self.loop = asyncio.get_running_loop()
            config = uvicorn.Config(
                create_app(lambda: None if self.down else runtime),
                log_config=None,
                access_log=False,
                lifespan="off",
                # as `warden run` serves: leaving, open event streams are cut after this long
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
            )
            self._server = QuietServer(config)
            serving = asyncio.create_task(self._server.serve(sockets=[self.sock]))
            async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
                deadline = self.loop.time() + START_TIMEOUT
                while self.loop.time() < deadline:
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.02)
            self._ready.set()
            await serving
