"""The HTTP side of the sidecar protocol, and its one error table.

    what the sidecar answered                 place/cancel: prepare   send              query
    422 rejected (Drift refused it)            OrderRejected           OrderRejected     OrderRejected
    404 not_found                              OrderNotFound           NotSigned         OrderNotFound
    400 bad_request (warden sent nonsense)     OrderRejected           OrderRejected     ExchangeUnavailable
    503 unavailable (nothing was sent)         ExchangeUnavailable     ExchangeUnavailable ExchangeUnavailable
    409 version (speaks another protocol)      ExchangeUnavailable     ExchangeUnavailable ExchangeUnavailable
    anything else: a 5xx, no answer, a timeout, a body it cannot read
                                               ExchangeUnavailable     (unknown: the     ExchangeUnavailable
                                               (prepare sends nothing)  caller settles it
                                                                        by the signature)

A 404 to a send is NotSigned (an ExchangeUnavailable): the sidecar restarted after it signed the
transaction and holds its bytes no more, so nothing was sent and it can never be sent; the
adapter signs a new one at once (waiting out a blockhash that nobody can land would leave a
stop unplaced for a minute).

`send` never raises on an unknown outcome: it answers PENDING, and the adapter settles the
transaction by its signature (`tx_status`), never by sending a new one while the old could land.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from warden.adapters.drift import protocol as p
from warden.ports import ExchangeError, ExchangeUnavailable, OrderNotFound, OrderRejected


class SidecarError(ExchangeUnavailable):
    """The sidecar could not be asked, or answered something unreadable: the outcome is open."""


class NotSigned(ExchangeUnavailable):
    """The sidecar holds no signed transaction of that signature (it restarted since it signed
    it: what it signs lives in its memory only): this send sent nothing, and the bytes are gone."""


class SidecarUnavailable(ExchangeUnavailable):
    """The sidecar answered that it could not act (503: its RPC is down; 409: another protocol
    version): nothing was sent."""


def _error(status: int, data: Any, *, order_call: bool) -> ExchangeError:
    err = data.get("error") if isinstance(data, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    message = f"{code or status}: {err.get('message') if isinstance(err, dict) else data}"
    if code == p.REJECTED:
        return OrderRejected(message)
    if code == p.NOT_FOUND:
        return OrderNotFound(message)
    if code == p.BAD_REQUEST and order_call:
        return OrderRejected(message)
    if code in (p.UNAVAILABLE, p.VERSION_MISMATCH):
        return SidecarUnavailable(message)
    return SidecarError(message)


class SidecarClient:
    """One session to one sidecar (or simulator) base URL; `timeout` bounds each call."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={p.VERSION_HEADER: str(p.VERSION)})
        return self._session

    def ws_url(self, path: str) -> str:
        return "ws" + self.base_url.removeprefix("http") + path

    async def call(
        self, method: str, path: str, body: p.Json | None = None, *, order_call: bool = False
    ) -> p.Json:
        """One request; the port's errors per the module table (transport failures: SidecarError)."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.request(method, self.base_url + path, json=body) as response:
                    text = await response.text()
                    status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SidecarError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SidecarError(f"{method} {path}: unreadable answer ({status}): {text[:200]!r}") from exc
        if status >= 400:
            raise _error(status, data, order_call=order_call)
        if not isinstance(data, dict) or data.get(p.VERSION_KEY) != p.VERSION:
            raise SidecarError(f"{method} {path}: not a protocol v{p.VERSION} answer: {text[:200]!r}")
        return data

    async def get(self, path: str) -> p.Json:
        return await self.call("GET", path)

    async def prepare_place(self, orders: list[p.Json]) -> p.Json:
        return await self.call("POST", "/v1/tx/place", {"orders": orders}, order_call=True)

    async def prepare_cancel(self, order_ids: list[int]) -> p.Json:
        return await self.call("POST", "/v1/tx/cancel", {"order_ids": order_ids}, order_call=True)

    async def send(self, signature: str) -> p.Json:
        """CONFIRMED / FAILED / PENDING / EXPIRED; PENDING also when the answer was lost.
        NotSigned: the sidecar restarted since it signed it (404), so nothing was sent now."""
        try:
            return await self.call("POST", f"/v1/tx/{signature}/send", order_call=True)
        except OrderNotFound as exc:  # not "no such order": no such signed transaction here
            raise NotSigned(f"transaction {signature[:16]}... is not held by the sidecar: {exc}") from exc
        except SidecarError as exc:  # no (readable) answer: it may have been sent
            return {p.VERSION_KEY: p.VERSION, "signature": signature, "status": p.PENDING, "lost": str(exc)}

    async def tx_status(self, signature: str, last_valid_block_height: int | None) -> p.Json:
        query = (
            "" if last_valid_block_height is None else f"?last_valid_block_height={last_valid_block_height}"
        )
        return await self.get(f"/v1/tx/{signature}{query}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
