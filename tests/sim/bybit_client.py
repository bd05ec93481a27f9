"""A tiny raw Bybit v5 client for the server tests: signs like ccxt, but lets a test break the rules."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from warden.adapters.sim.server import create_server_app, running_app
from warden.adapters.sim.server.bybit.auth import sign

KEY, SECRET = "sim-key", "sim-secret"
RECV_WINDOW = "5000"


class BybitClient:
    def __init__(self, session: aiohttp.ClientSession, base: str, app: web.Application) -> None:
        self.session = session
        self.base = base
        self.app = app

    def headers(
        self, payload: str, *, key: str = KEY, secret: str = SECRET, timestamp: int | None = None
    ) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time() * 1000))
        return {
            "X-BAPI-API-KEY": key,
            "X-BAPI-TIMESTAMP": stamp,
            "X-BAPI-RECV-WINDOW": RECV_WINDOW,
            "X-BAPI-SIGN": sign(secret, f"{stamp}{key}{RECV_WINDOW}{payload}"),
            "Content-Type": "application/json",
        }

    async def get(
        self, path: str, params: dict[str, Any] | None = None, *, signed: bool = True, **auth: Any
    ) -> Any:
        query = urlencode(params or {})
        headers = self.headers(query, **auth) if signed else {}
        url = f"{self.base}{path}?{query}" if query else f"{self.base}{path}"
        async with self.session.get(url, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json(content_type=None)

    async def post(self, path: str, body: dict[str, Any], **auth: Any) -> Any:
        text = json.dumps(body)
        async with self.session.post(
            f"{self.base}{path}", data=text, headers=self.headers(text, **auth)
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json(content_type=None)

    async def ok(self, method: str, path: str, params: dict[str, Any]) -> Any:
        """The `result` of a call that must succeed (retCode 0)."""
        answer = await (self.get(path, params) if method == "GET" else self.post(path, params))
        assert answer["retCode"] == 0, answer
        return answer["result"]

    async def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base}{path}", json=body) as response:
            return response.status, await response.json(content_type=None)


@asynccontextmanager
async def bybit_server(**options: Any) -> AsyncIterator[BybitClient]:
    """The Bybit face on a free 127.0.0.1 port (ready when this yields) and a raw client for it."""
    options.setdefault("price_interval", None)
    options.setdefault("push_interval", 0.05)
    app = create_server_app(venue="bybit", **options)
    async with running_app(app) as base, aiohttp.ClientSession() as session:
        yield BybitClient(session, base, app)
