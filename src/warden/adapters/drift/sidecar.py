"""Starting and supervising the Drift sidecar (when `--exchange-url` does not name one).

warden runs `<drift_sidecar_python> -m warden_drift_sidecar --host 127.0.0.1 --port N` (the
interpreter of `.drift-venv`, built by `make drift`), hands it the keypair PATH, the RPC URL and
the sub-account through its environment (never its command line, which `ps` shows; never a
log line), waits until it answers `GET /v1/info` with protocol v1, and restarts it if it dies.
The sidecar holds no state that matters across a restart: every transaction's signature and
last valid block height are in warden's database before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from warden.adapters.drift import protocol as p
from warden.ports import ExchangeUnavailable

log = logging.getLogger(__name__)

READY_WITHIN = 60.0
RESTART_BACKOFF = (0.5, 10.0)


@dataclass(frozen=True)
class SidecarConfig:
    python: Path
    keypair_path: str
    rpc_url: str
    sub_account: int

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        return env | {
            "DRIFT_KEYPAIR_PATH": self.keypair_path,
            "DRIFT_RPC_URL": self.rpc_url,
            "DRIFT_SUB_ACCOUNT": str(self.sub_account),
            "PYTHONUNBUFFERED": "1",
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SidecarProcess:
    """One supervised sidecar on a free loopback port; `url` is where it answers."""

    def __init__(self, config: SidecarConfig, *, port: int | None = None) -> None:
        if not config.python.exists():
            raise ExchangeUnavailable(
                f"the Drift sidecar's environment is missing ({config.python}): run `make drift` first"
            )
        self.config = config
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    async def _spawn(self) -> None:
        args = ["-m", "warden_drift_sidecar", "--host", "127.0.0.1", "--port", str(self.port)]
        self._process = await asyncio.create_subprocess_exec(
            str(self.config.python),
            *args,
            env=self.config.environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
        log.info("drift sidecar started (pid %s, %s)", self._process.pid, self.url)

    async def start(self) -> str:
        await self._spawn()
        await self.wait_ready()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        return self.url

    async def wait_ready(self, within: float = READY_WITHIN) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                if self._process is not None and self._process.returncode is not None:
                    raise ExchangeUnavailable(f"the Drift sidecar exited with {self._process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                    async with session.get(self.url + "/v1/info") as response:
                        data = await response.json()
                        if response.status == 200 and data.get(p.VERSION_KEY) == p.VERSION:
                            return
                if time.monotonic() > deadline:
                    raise ExchangeUnavailable(f"the Drift sidecar did not answer within {within}s")
                await asyncio.sleep(0.1)  # a poll with a deadline, not a synchronisation sleep

    async def _supervise(self) -> None:
        backoff = RESTART_BACKOFF[0]
        while not self._closing:
            assert self._process is not None
            code = await self._process.wait()
            if self.closing:
                return
            log.error("drift sidecar exited with %s; restarting in %.1fs", code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(RESTART_BACKOFF[1], backoff * 2)
            with contextlib.suppress(ExchangeUnavailable, OSError):
                await self._spawn()
                await self.wait_ready()
                backoff = RESTART_BACKOFF[0]

    @property
    def closing(self) -> bool:
        return self._closing

    async def stop(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
