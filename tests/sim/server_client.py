"""A tiny raw Binance client for the server tests: signs like ccxt, but lets a test break the rules."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from warden.adapters.sim.server import create_server_app, running_app
from warden.adapters.sim.server.auth import sign

KEY, SECRET = "sim-key", "sim-secret"


class RawClient:
    def __init__(self, session: aiohttp.ClientSession, base: str, app: web.Application) -> None:
        self.session = session
        self.base = base
        self.app = app

    def signed(self, params: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None) -> str:
        fields = {**params, "timestamp": timestamp if timestamp is not None else int(time.time() * 1000)}
        fields.setdefault("recvWindow", 10000)
        query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in fields.items()})
        return f"{query}&signature={sign(secret, query)}"

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        key: str | None = KEY,
        secret: str = SECRET,
        timestamp: int | None = None,
        signed: bool = True,
    ) -> tuple[int, Any]:
        payload = (
            self.signed(params or {}, secret=secret, timestamp=timestamp)
            if signed
            else urlencode(params or {})
        )
        headers = {"X-MBX-APIKEY": key} if key else {}
        url = f"{self.base}{path}"
        if method in ("POST", "PUT"):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = await self.session.request(method, url, data=payload, headers=headers)
        else:
            response = await self.session.request(
                method, f"{url}?{payload}" if payload else url, headers=headers
            )
        async with response:
            return response.status, await response.json(content_type=None)

    async def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base}{path}", json=body) as response:
            return response.status, await response.json(content_type=None)


@asynccontextmanager
async def raw_server(**options: Any) -> AsyncIterator[RawClient]:
    """The server on a free 127.0.0.1 port (ready when this yields) and a raw client for it."""
    options.setdefault("price_interval", None)
    options.setdefault("push_interval", 0.05)
    app = create_server_app(**options)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        yield RawClient(session, base, app)
