"""What only the in-memory store has: switches that make it fail, for failure tests."""

from __future__ import annotations

import pytest

from warden.adapters.memory import InMemoryLease, InMemoryStore
from warden.ports import LeaseState, StoreUnavailable

from .builders import event, insert, position


async def test_fail_writes_refuses_commits_and_events_but_not_reads() -> None:
    """With fail_writes set, commit and append_events raise StoreUnavailable and write nothing."""
    store = InMemoryStore()
    store.fail_writes = True
    with pytest.raises(StoreUnavailable):
        await store.commit(insert(position(), events=[event()]))
    with pytest.raises(StoreUnavailable):
        await store.append_events([event(pid=None)])
    assert await store.list_positions() == []
    assert await store.list_events() == []


async def test_fail_reads_refuses_every_read() -> None:
    """With fail_reads set, reads and ping raise StoreUnavailable."""
    store = InMemoryStore()
    await store.commit(insert(position()))
    store.fail_reads = True
    with pytest.raises(StoreUnavailable):
        await store.load_active()
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_writes_succeed_again_once_the_switch_is_off() -> None:
    """Clearing fail_writes makes the store writable again (an outage that ends)."""
    store = InMemoryStore()
    store.fail_writes = True
    with pytest.raises(StoreUnavailable):
        await store.commit(insert(position()))
    store.fail_writes = False
    await store.commit(insert(position()))
    assert len(await store.list_positions()) == 1


async def test_close_keeps_the_data_for_a_restart() -> None:
    """close() does not drop anything: a restarted engine on the same store sees its positions."""
    store = InMemoryStore()
    await store.commit(insert(position()))
    await store.close()
    assert len((await store.load_active()).positions) == 1


def test_an_installation_id_can_be_given_and_is_otherwise_made() -> None:
    """A given installation id is kept; without one each store makes its own; a malformed one is refused."""
    assert InMemoryStore(installation_id="abc123").installation_id == "abc123"
    assert InMemoryStore().installation_id != InMemoryStore().installation_id
    for bad in ("ABC123", "abc12", "abc1234", "abc-12", ""):
        with pytest.raises(ValueError, match="6 lowercase letters and digits"):
            InMemoryStore(installation_id=bad)


async def test_an_unreachable_lease_is_in_doubt_then_the_same_again() -> None:
    """With `unreachable` set the lease is UNREACHABLE and reacquire raises; cleared, the same epoch again."""
    store = InMemoryStore()
    lease, other = InMemoryLease(store, "acct", "host-a:1"), InMemoryLease(store, "acct", "host-b:2")
    assert await lease.try_acquire() == 1
    lease.unreachable = True
    assert await lease.check() is LeaseState.UNREACHABLE
    assert not await lease.still_held()
    with pytest.raises(StoreUnavailable):
        await lease.reacquire()
    with pytest.raises(StoreUnavailable):
        await lease.try_acquire()
    assert await other.try_acquire() is None
    lease.unreachable = False
    assert await lease.reacquire() == 1
    assert await lease.check() is LeaseState.HELD
