"""The alert outbox and the controls row, on InMemoryStore, SQLite and PostgreSQL alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.domain.controls import Controls
from warden.domain.position import PositionStatus
from warden.domain.values import PositionId
from warden.ports import FencedOut, Transition, VersionConflict

from .builders import T0, event, insert, position, step
from .conftest import Backend


def alert(
    aid: str = "a1", kind: AlertKind = AlertKind.STOP_FILLED, seconds: int = 0, pid: str | None = None
) -> Alert:
    at = T0 + timedelta(seconds=seconds)
    return Alert(AlertId(aid), kind, f"message of {aid}", at, None if pid is None else PositionId(pid))


async def test_alerts_of_a_transition_are_in_the_outbox_with_it(backend: Backend) -> None:
    """A transition's alerts commit with it, come back undelivered, oldest first, every field equal."""
    a1 = alert("a1", seconds=2, pid="p1")
    a0 = alert("a0", AlertKind.PROTECTION_FAILED, seconds=1)
    await backend.store.commit(insert(position(), alerts=[a1, a0]))
    assert await backend.store.pending_alerts() == [a0, a1]


async def test_a_refused_transition_writes_none_of_its_alerts(backend: Backend) -> None:
    """A transition the store refuses (compare-and-set lost) leaves no alert behind: one transaction."""
    p = position()
    await backend.store.commit(insert(p))
    stale = Transition(replace(p, version=6), 5, events=[event()], alerts=[alert("lost")])
    with pytest.raises(VersionConflict):
        await backend.store.commit(stale)
    assert await backend.store.pending_alerts() == []
    _, fresh = step(p, alerts=[alert("kept")])
    await backend.store.commit(fresh)
    assert [a.id for a in await backend.store.pending_alerts()] == ["kept"]


async def test_events_and_alerts_append_together_and_dedup_by_id(backend: Backend) -> None:
    """append_events writes events and alerts in one call; an alert written twice is stored once."""
    await backend.store.commit(insert(position()))
    await backend.store.append_events([event(pid=None)], [alert("a1")])
    await backend.store.append_events([], [alert("a1"), alert("a2", seconds=1)])
    assert [a.id for a in await backend.store.pending_alerts()] == ["a1", "a2"]
    assert [e.position_id for e in await backend.store.list_events()] == [None]


async def test_delivered_alerts_leave_the_pending_list(backend: Backend) -> None:
    """Marked alerts are no longer pending; unknown ids are ignored; the limit keeps the oldest."""
    await backend.store.append_events([], [alert(f"a{i}", seconds=i) for i in range(5)])
    await backend.store.mark_alerts_delivered([AlertId("a0"), AlertId("a3"), AlertId("nope")], T0)
    assert [a.id for a in await backend.store.pending_alerts()] == ["a1", "a2", "a4"]
    assert [a.id for a in await backend.store.pending_alerts(limit=2)] == ["a1", "a2"]


async def test_the_channels_an_undelivered_alert_reached_are_kept_with_it(backend: Backend) -> None:
    """What each channel has of an alert not yet delivered everywhere (one chat refusing) outlives
    a restart: each write replaces the alert's set; unknown ids are ignored, ids with none are
    left out."""
    await backend.store.append_events([], [alert("a1"), alert("a2", seconds=1), alert("a3", seconds=2)])
    await backend.store.record_alert_channels({AlertId("a1"): {"telegram:222"}, AlertId("nope"): {"webhook"}})
    await backend.store.record_alert_channels(
        {AlertId("a1"): {"telegram:222", "webhook"}, AlertId("a2"): {"webhook"}}
    )
    got = await backend.store.alert_channels([AlertId("a1"), AlertId("a2"), AlertId("a3"), AlertId("nope")])
    assert got == {AlertId("a1"): {"telegram:222", "webhook"}, AlertId("a2"): {"webhook"}}
    assert await backend.store.alert_channels([]) == {}
    assert [a.id for a in await backend.store.pending_alerts()] == ["a1", "a2", "a3"], "still undelivered"


async def test_outbox_writes_are_fenced(backend: Backend) -> None:
    """A stale engine can neither add alerts nor mark them: the fencing epoch covers the outbox."""
    await backend.store.append_events([], [alert("a1")])
    lease = backend.lease()
    epoch = await lease.try_acquire()
    assert epoch is not None
    backend.store.set_epoch("acct", epoch)
    await backend.move_epoch()
    with pytest.raises(FencedOut):
        await backend.store.append_events([], [alert("a2")])
    with pytest.raises(FencedOut):
        await backend.store.mark_alerts_delivered([AlertId("a1")], T0)
    with pytest.raises(FencedOut):
        await backend.store.save_controls(Controls(paused=True))
    with pytest.raises(FencedOut):
        await backend.store.record_alert_channels({AlertId("a1"): {"webhook"}})


async def test_controls_round_trip_and_default_to_off(backend: Backend) -> None:
    """No row means no control is on; a saved row comes back equal and is replaced by the next save."""
    assert await backend.store.load_controls() == Controls()
    on = Controls(paused=True, killed=True, daily_loss_until=T0, reason="by test", changed_at=T0)
    await backend.store.save_controls(on)
    assert await backend.store.load_controls() == on
    off = Controls(changed_at=T0 + timedelta(seconds=1))
    await backend.store.save_controls(off)
    assert await backend.store.load_controls() == off


async def test_realized_pnl_counts_positions_closed_since_and_active_ones(backend: Backend) -> None:
    """Closed at or after `since` and active positions count; closed before it do not."""
    since = T0 + timedelta(hours=1)
    rows = [
        position("old", status=PositionStatus.CLOSED, realized_pnl=Decimal(-50), closed_at=T0),
        position(
            "today",
            symbol="BTC/USDT:USDT",
            status=PositionStatus.CLOSED,
            realized_pnl=Decimal("-7.5"),
            closed_at=since,
        ),
        position("open", symbol="ETH/USDT:USDT", status=PositionStatus.PROTECTED, realized_pnl=Decimal(2)),
    ]
    for p in rows:
        await backend.store.commit(insert(p))
    assert await backend.store.realized_pnl_since(since) == Decimal("-5.5")
