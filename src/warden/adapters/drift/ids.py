"""Drift's user_order_id (u8) for each of warden's client order ids: the table and its contract.

Drift orders carry no client string, only a `user_order_id` of 1-255 that the program refuses
while another OPEN order holds it (and frees when that order is filled or cancelled). warden's
client ids are strings, so the adapter keeps a table, in warden's own database, from each
client id to the u8 it was sent with:

- an id is allocated (live) and written BEFORE its order is sent, with the transaction's
  signature and last valid block height, so after a crash the outcome can be settled;
- an id is released only when its order is known to be final (filled, cancelled, or its
  transaction failed or expired without landing), so a crash never hands a live id to a
  second order;
- once known, Drift's own `order_id` (a u32 unique per user, never reused) is recorded:
  fills and updates are attributed by it, never by the reusable u8.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from warden.adapters.drift.protocol import MAX_USER_ORDER_ID


@dataclass(frozen=True, slots=True)
class IdRow:
    client_order_id: str
    user_order_id: int
    live: bool
    order_id: int | None = None
    tx_signature: str | None = None
    last_valid_block_height: int | None = None


class NoFreeUserOrderId(Exception):
    """All 255 user order ids are held by live orders of this account."""


class UserOrderIds(Protocol):
    """The table, per account. Every method may raise the Store errors (StoreUnavailable, ...)."""

    async def get(self, client_order_id: str) -> IdRow | None: ...

    async def by_order_id(self, order_id: int) -> IdRow | None: ...

    async def live(self) -> list[IdRow]: ...

    async def allocate(self, client_order_id: str, avoid: set[int], now: datetime) -> IdRow:
        """The client id's live row: its existing one, or a new one with the smallest u8 that no
        live row holds and that is not in `avoid` (ids open on the exchange under other names)."""
        ...

    async def record_tx(self, client_order_id: str, signature: str, last_valid_block_height: int) -> None: ...

    async def record_order(self, client_order_id: str, order_id: int) -> None: ...

    async def release(self, client_order_id: str, now: datetime) -> None: ...

    async def close(self) -> None: ...


def free_id(held: set[int]) -> int:
    for candidate in range(1, MAX_USER_ORDER_ID + 1):
        if candidate not in held:
            return candidate
    raise NoFreeUserOrderId(f"all {MAX_USER_ORDER_ID} user order ids are held by live orders")


class MemoryUserOrderIds:
    """The same contract in memory (tests; a process that needs no durability)."""

    def __init__(self) -> None:
        self.rows: dict[str, IdRow] = {}

    async def get(self, client_order_id: str) -> IdRow | None:
        return self.rows.get(client_order_id)

    async def by_order_id(self, order_id: int) -> IdRow | None:
        return next((r for r in self.rows.values() if r.order_id == order_id), None)

    async def live(self) -> list[IdRow]:
        return [r for r in self.rows.values() if r.live]

    async def allocate(self, client_order_id: str, avoid: set[int], now: datetime) -> IdRow:
        row = self.rows.get(client_order_id)
        if row is not None and row.live:
            return row
        held = {r.user_order_id for r in self.rows.values() if r.live} | avoid
        new = IdRow(client_order_id, free_id(held), True)
        self.rows[client_order_id] = new
        return new

    async def record_tx(self, client_order_id: str, signature: str, last_valid_block_height: int) -> None:
        row = self.rows[client_order_id]
        self.rows[client_order_id] = replace(
            row, tx_signature=signature, last_valid_block_height=last_valid_block_height
        )

    async def record_order(self, client_order_id: str, order_id: int) -> None:
        self.rows[client_order_id] = replace(self.rows[client_order_id], order_id=order_id)

    async def release(self, client_order_id: str, now: datetime) -> None:
        row = self.rows.get(client_order_id)
        if row is not None:
            self.rows[client_order_id] = replace(row, live=False)

    async def close(self) -> None:
        return
