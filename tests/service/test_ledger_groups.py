"""Group commits in the ledger: a transition that finds no commit under way is written by its
caller; those arriving meanwhile are written together next; a caller that stops waiting before
its write is committed takes the write with it (memory and database agree) and leaves the ones
behind it going."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.helpers import eventually
from tests.store.builders import position
from warden.adapters.clock import SystemClock
from warden.adapters.db.store import SqlStore
from warden.adapters.forwarding import ForwardingStore
from warden.domain.position import Position
from warden.domain.values import Symbol
from warden.ports import Transition
from warden.service.ledger import Ledger


class GatedStore(ForwardingStore):
    """The real store; a single commit waits at a gate until the test opens it."""

    def __init__(self, inner: SqlStore) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.groups: list[int] = []

    async def commit(self, transition: Transition) -> None:
        self.entered.set()
        await self.gate.wait()
        await self.inner.commit(transition)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        self.groups.append(len(transitions))
        await self.inner.commit_many(transitions)


def new(n: int) -> Position:
    return position(f"g{n}", symbol=Symbol(f"S{n}USDT"), version=0)


async def behind_a_commit(
    ledger: Ledger, gated: GatedStore, queued: int
) -> tuple[asyncio.Task[Position], list[asyncio.Task[Position]]]:
    """Position 0's commit held at the gate, and positions 1..`queued` queued behind it."""
    first = asyncio.create_task(ledger.commit(None, new(0)))
    await gated.entered.wait()
    later = [asyncio.create_task(ledger.commit(None, new(n))) for n in range(1, queued + 1)]
    await eventually(lambda: ledger.queued == queued, what=f"{queued} transitions queued behind the first")
    return first, later


async def test_transitions_arriving_during_a_commit_are_written_together_next(store: SqlStore) -> None:
    gated = GatedStore(store)
    ledger = Ledger(gated, SystemClock())
    first, later = await behind_a_commit(ledger, gated, 3)

    gated.gate.set()
    await asyncio.gather(first, *later)

    assert gated.groups == [3]
    for n in range(4):
        assert ledger.positions[new(n).id].version == 1
        stored = await store.get_position(new(n).id)
        assert stored is not None and stored.version == 1
    assert ledger.queued == 0


async def test_a_caller_cancelled_mid_commit_writes_nothing_and_the_queue_goes_on(store: SqlStore) -> None:
    gated = GatedStore(store)
    ledger = Ledger(gated, SystemClock())
    first, [second] = await behind_a_commit(ledger, gated, 1)

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gated.gate.set()
    await second

    # The cancelled write is in neither memory nor the database: the two agree.
    assert new(0).id not in ledger.positions
    assert await store.get_position(new(0).id) is None
    assert ledger.positions[new(1).id].version == 1
    assert await store.get_position(new(1).id) is not None
    # Nothing is left waiting: the next transition is written at once by its caller.
    await ledger.commit(None, new(2))
    assert await store.get_position(new(2).id) is not None


async def test_a_queued_caller_cancelled_before_its_group_is_taken_writes_nothing(store: SqlStore) -> None:
    gated = GatedStore(store)
    ledger = Ledger(gated, SystemClock())
    first, queued = await behind_a_commit(ledger, gated, 3)

    queued[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued[1]
    gated.gate.set()
    await asyncio.gather(first, queued[0], queued[2])

    assert gated.groups == [2]
    assert new(2).id not in ledger.positions
    assert await store.get_position(new(2).id) is None
    for n in (0, 1, 3):
        assert ledger.positions[new(n).id].version == 1
        assert await store.get_position(new(n).id) is not None
