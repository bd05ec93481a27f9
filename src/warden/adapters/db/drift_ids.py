"""The Drift user-order-id table on SQLite or PostgreSQL (see `warden.adapters.drift.ids`).

Its own small engine on the same database URL as the store (bootstrap builds it after the
store has migrated the schema); every call has a deadline and raises the Store errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Row

from warden.adapters.db.engine import create_engine
from warden.adapters.db.errors import guarded
from warden.adapters.db.schema import drift_user_order_ids as table
from warden.adapters.db.urls import redact
from warden.adapters.drift.ids import IdRow, free_id
from warden.ports import StoreError

T = TypeVar("T")
P = ParamSpec("P")

ALLOCATE_TRIES = 3


def _whole(
    operation: Callable[Concatenate[SqlUserOrderIds, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SqlUserOrderIds, P], Coroutine[Any, Any, T]]:
    """The operation runs to its end (its own deadline bounds it) even if its caller is cancelled
    (an engine stopping): cut short inside a statement, its aiosqlite connection is closed with
    the statement still open, and SQLite keeps such a connection alive (a "zombie") with its
    locks until the statement is collected: a write transaction's WAL write lock then stalls
    every later writer on the file, the next start's migration included (found as a Drift
    restart test that hung one run in eight). `close` waits for those running."""

    async def whole(self: SqlUserOrderIds, /, *args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.get_running_loop().create_task(operation(self, *args, **kwargs))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    return whole


def _row(row: Row[Any]) -> IdRow:
    return IdRow(
        client_order_id=row.client_order_id,
        user_order_id=row.user_order_id,
        live=bool(row.live),
        order_id=row.order_id,
        tx_signature=row.tx_signature,
        last_valid_block_height=row.last_valid_block_height,
    )


class SqlUserOrderIds:
    def __init__(self, url: str, account: str, *, op_timeout: float = 5.0) -> None:
        self.account = account
        self.engine = create_engine(url, op_timeout=op_timeout)
        self.where = redact(url)
        self.op_timeout = op_timeout
        self._running: set[asyncio.Task[Any]] = set()

    def _mine(self) -> Any:
        return table.c.account == self.account

    @_whole
    async def get(self, client_order_id: str) -> IdRow | None:
        async with guarded("drift id lookup", self.where, self.op_timeout), self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(table).where(and_(self._mine(), table.c.client_order_id == client_order_id))
                )
            ).first()
        return None if found is None else _row(found)

    @_whole
    async def by_order_id(self, order_id: int) -> IdRow | None:
        async with guarded("drift id lookup", self.where, self.op_timeout), self.engine.connect() as conn:
            found = (
                await conn.execute(select(table).where(and_(self._mine(), table.c.order_id == order_id)))
            ).first()
        return None if found is None else _row(found)

    @_whole
    async def live(self) -> list[IdRow]:
        async with guarded("drift live ids", self.where, self.op_timeout), self.engine.connect() as conn:
            rows = (await conn.execute(select(table).where(and_(self._mine(), table.c.live)))).all()
        return [_row(r) for r in rows]

    async def allocate(self, client_order_id: str, avoid: set[int], now: datetime) -> IdRow:
        last: StoreError | None = None
        for _ in range(ALLOCATE_TRIES):
            try:
                return await self._allocate(client_order_id, avoid, now)
            except StoreError as exc:  # a concurrent allocation took the same id: choose again
                last = exc
        assert last is not None
        raise last

    @_whole
    async def _allocate(self, client_order_id: str, avoid: set[int], now: datetime) -> IdRow:
        async with guarded("drift id allocation", self.where, self.op_timeout), self.engine.begin() as conn:
            existing = (
                await conn.execute(
                    select(table).where(and_(self._mine(), table.c.client_order_id == client_order_id))
                )
            ).first()
            if existing is not None and existing.live:
                return _row(existing)
            held = set(
                (
                    await conn.execute(select(table.c.user_order_id).where(and_(self._mine(), table.c.live)))
                ).scalars()
            )
            chosen = free_id(held | avoid)
            values = {
                "user_order_id": chosen,
                "live": True,
                "order_id": None,
                "tx_signature": None,
                "last_valid_block_height": None,
                "created_at": now,
                "released_at": None,
            }
            if existing is None:
                await conn.execute(
                    insert(table).values(account=self.account, client_order_id=client_order_id, **values)
                )
            else:
                await conn.execute(
                    update(table)
                    .where(and_(self._mine(), table.c.client_order_id == client_order_id))
                    .values(**values)
                )
        return IdRow(client_order_id, chosen, True)

    @_whole
    async def _update(self, what: str, client_order_id: str, /, **values: Any) -> None:
        async with guarded(what, self.where, self.op_timeout), self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(and_(self._mine(), table.c.client_order_id == client_order_id))
                .values(**values)
            )

    async def record_tx(self, client_order_id: str, signature: str, last_valid_block_height: int) -> None:
        await self._update(
            "drift id tx",
            client_order_id,
            tx_signature=signature,
            last_valid_block_height=last_valid_block_height,
        )

    async def record_order(self, client_order_id: str, order_id: int) -> None:
        await self._update("drift id order", client_order_id, order_id=order_id)

    async def release(self, client_order_id: str, now: datetime) -> None:
        await self._update("drift id release", client_order_id, live=False, released_at=now)

    async def close(self) -> None:
        await asyncio.gather(*self._running, return_exceptions=True)  # each ends by its deadline
        await self.engine.dispose()
