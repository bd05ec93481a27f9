"""The Store contract, run against InMemoryStore, SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, timedelta

import pytest

from warden.domain.events import EventKind
from warden.domain.orders import OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.values import OrderRole, OrderType, PositionId, Symbol, TradeId
from warden.ports import DuplicateSignal, FencedOut, StoreError, SymbolBusy, Transition, VersionConflict

from .builders import BTC, SOL, T0, D, event, fill, full_position, insert, order, position, step
from .conftest import Backend

P1 = PositionId("p1")
P2 = PositionId("p2")
ACTIVE = [status for status in PositionStatus if not status.terminal]


async def test_position_round_trips_every_field(backend: Backend) -> None:
    """Every Position field comes back equal: exact decimals, times in UTC."""
    original = full_position()
    await backend.store.commit(insert(original))
    loaded = await backend.store.get_position(original.id)
    assert loaded == original
    assert loaded is not None
    assert loaded.entry_price == D(302) / D(3)
    assert loaded.opened_at.utcoffset() == timedelta(0)
    assert loaded.closed_at is not None
    assert loaded.closed_at.tzinfo is not None
    assert loaded.closed_at.utcoffset() == timedelta(0)


async def test_order_round_trips_every_field(backend: Backend) -> None:
    """Every Order field comes back equal, with and without the optional ones."""
    await backend.store.commit(insert(position()))
    bare = order(trigger_price=None, status=OrderStatus.PENDING)
    full = order(
        seq=2,
        exchange_order_id="8389765",
        filled_qty=D("0.300000"),
        avg_price=D("150.123456789012345678"),
        status=OrderStatus.FILLED,
        reason="protection_failed",
    )
    _, write = step(position(), orders=[bare, full])
    await backend.store.commit(write)
    assert await backend.store.orders_for(P1) == [bare, full]


async def test_fills_round_trip_and_become_applied_trades(backend: Backend) -> None:
    """Fills come back equal, and a loaded position's applied_trades are exactly its fills' trade ids."""
    fills = [fill(trade_id="t1"), fill(trade_id="t2", at=T0 + timedelta(seconds=1))]
    await backend.store.commit(insert(position(applied_trades=frozenset({TradeId("ignored")})), fills=fills))
    assert await backend.store.fills_for(P1) == fills
    loaded = await backend.store.get_position(P1)
    assert loaded is not None
    assert loaded.applied_trades == {"t1", "t2"}


async def test_events_round_trip_every_field(backend: Backend) -> None:
    """An event's kind, time, position, message and data come back equal; time in UTC."""
    await backend.store.commit(insert(position(), events=[event(data={"a": "1", "ü": "x y"})]))
    await backend.store.append_events([event(EventKind.STORE_DEGRADED, None, message="", data={})])
    first, second = await backend.store.list_events()
    assert first == event(data={"a": "1", "ü": "x y"})
    assert second == event(EventKind.STORE_DEGRADED, None, message="", data={})
    assert first.at.tzinfo is not None
    assert first.at.utcoffset() == timedelta(0)


async def test_update_with_the_expected_version_replaces_the_row(backend: Backend) -> None:
    """A compare-and-set with the stored version writes the new state and version."""
    await backend.store.commit(insert(position()))
    moved, write = step(position(), status=PositionStatus.OPEN, filled_qty=D("0.5"), tp1_hit=True)
    await backend.store.commit(write)
    assert await backend.store.get_position(P1) == moved


async def test_stale_expected_version_is_a_version_conflict(backend: Backend) -> None:
    """A compare-and-set against a version that moved on raises VersionConflict."""
    await backend.store.commit(insert(position()))
    _, first = step(position(), status=PositionStatus.OPEN)
    _, stale = step(position(), status=PositionStatus.FAILED)
    await backend.store.commit(first)
    with pytest.raises(VersionConflict, match="version 2"):
        await backend.store.commit(stale)


async def test_update_of_a_missing_position_is_a_version_conflict(backend: Backend) -> None:
    """Updating a position that was never inserted raises VersionConflict."""
    _, write = step(position())
    with pytest.raises(VersionConflict, match="does not exist"):
        await backend.store.commit(write)


async def test_inserting_an_existing_id_is_a_version_conflict(backend: Backend) -> None:
    """Inserting a position id that already exists raises VersionConflict."""
    await backend.store.commit(insert(position()))
    with pytest.raises(VersionConflict, match="already exists"):
        await backend.store.commit(insert(position(symbol=BTC)))


async def test_a_duplicate_signal_names_the_existing_position(backend: Backend) -> None:
    """A second position for a signal id raises DuplicateSignal carrying the first position's id."""
    await backend.store.commit(insert(position("p1", signal_id="sig-1")))
    with pytest.raises(DuplicateSignal) as info:
        await backend.store.commit(insert(position("p2", signal_id="sig-1")))
    assert (info.value.signal_id, info.value.position_id) == ("sig-1", "p1")
    assert await backend.store.get_position(PositionId("p2")) is None


async def test_positions_without_signal_do_not_collide(backend: Backend) -> None:
    """Many positions may have no signal id."""
    for pid in ("a", "b", "c"):
        await backend.store.commit(insert(position(pid, exclusive=False)))  # stacked on one symbol
    assert len(await backend.store.list_positions()) == 3


async def test_a_version_that_does_not_step_by_one_is_refused(backend: Backend) -> None:
    """A transition whose new version is not expected + 1 is a programming error (ValueError)."""
    with pytest.raises(ValueError, match="must be 1"):
        await backend.store.commit(Transition(position(version=3), None))


async def test_fills_are_idempotent_on_the_trade_id(backend: Backend) -> None:
    """The same trade twice is stored once; the same trade id on another symbol is another trade."""
    await backend.store.commit(insert(position(), fills=[fill(trade_id="t1")]))
    again = fill(trade_id="t1", qty=D("9"))
    other_symbol = fill(trade_id="t1", symbol=BTC)
    _, write = step(position(), fills=[again, other_symbol])
    await backend.store.commit(write)
    assert await backend.store.fills_for(P1) == [fill(trade_id="t1"), other_symbol]


async def test_a_failed_transition_writes_nothing(backend: Backend) -> None:
    """A version conflict leaves the orders, fills and events of its transition unwritten."""
    await backend.store.commit(insert(position()))
    stale = Transition(position(version=7), 6, orders=[order()], fills=[fill()], events=[event()])
    with pytest.raises(VersionConflict):
        await backend.store.commit(stale)
    assert await backend.store.orders_for(P1) == []
    assert await backend.store.fills_for(P1) == []
    assert await backend.store.list_events() == []


async def test_a_duplicate_signal_writes_nothing(backend: Backend) -> None:
    """A refused insert leaves its orders and events unwritten."""
    await backend.store.commit(insert(position("p1", signal_id="s")))
    p2 = position("p2", signal_id="s")
    with pytest.raises(DuplicateSignal):
        await backend.store.commit(insert(p2, orders=[order("p2")], events=[event(pid="p2")]))
    assert await backend.store.orders_for(PositionId("p2")) == []
    assert await backend.store.list_events() == []


async def test_a_write_naming_an_unknown_position_is_refused_whole(backend: Backend) -> None:
    """An order for a position that does not exist fails the transition with a StoreError."""
    with pytest.raises(StoreError):
        await backend.store.commit(insert(position(), orders=[order("ghost")], events=[event()]))
    assert await backend.store.get_position(P1) is None
    assert await backend.store.list_events() == []


async def test_orders_are_upserted_by_client_order_id(backend: Backend) -> None:
    """Writing an order again with the same client order id replaces it."""
    await backend.store.commit(insert(position(), orders=[order(status=OrderStatus.PENDING)]))
    done = order(status=OrderStatus.CANCELED, exchange_order_id="x1")
    _, write = step(position(), orders=[done])
    await backend.store.commit(write)
    assert await backend.store.orders_for(P1) == [done]


async def test_load_active_returns_open_positions_with_orders_and_trades(backend: Backend) -> None:
    """load_active has every non-terminal position (with applied_trades) and all their orders, no others."""
    store = backend.store
    for pid, status in (
        ("a", PositionStatus.OPEN),
        ("b", PositionStatus.CLOSED),
        ("c", PositionStatus.FAILED),
    ):
        at = T0 + timedelta(minutes=ord(pid) - ord("a"))
        await store.commit(insert(position(pid, status=status, opened_at=at), orders=[order(pid)]))
    live = position("d", status=PositionStatus.CLOSING, opened_at=T0 + timedelta(hours=1), exclusive=False)
    orders = [
        order("d", OrderRole.ENTRY, 0, status=OrderStatus.FILLED),
        order("d"),
        order("d", OrderRole.CLOSE, 2, type=OrderType.MARKET, trigger_price=None, reason="signal"),
    ]
    await store.commit(insert(live, orders=orders, fills=[fill("d", "t9")]))
    state = await store.load_active()
    assert [p.id for p in state.positions] == ["a", "d"]
    assert state.positions[1] == replace(live, applied_trades=frozenset({TradeId("t9")}))
    assert state.orders == [order("a"), *orders]


async def test_list_positions_is_newest_first_and_hides_closed_unless_asked(backend: Backend) -> None:
    """list_positions orders by opening time, newest first, honours limit and include_closed."""
    for minute, status in enumerate((PositionStatus.OPEN, PositionStatus.CLOSED, PositionStatus.PROTECTED)):
        p = position(f"p{minute}", status=status, opened_at=T0 + timedelta(minutes=minute), exclusive=False)
        await backend.store.commit(insert(p))
    active = await backend.store.list_positions()
    everything = await backend.store.list_positions(include_closed=True)
    newest = await backend.store.list_positions(include_closed=True, limit=1)
    assert [p.id for p in active] == ["p2", "p0"]
    assert [p.id for p in everything] == ["p2", "p1", "p0"]
    assert [p.id for p in newest] == ["p2"]


async def test_find_by_signal_returns_the_position_or_none(backend: Backend) -> None:
    """find_by_signal returns the position opened for a signal id, None for an unknown one."""
    await backend.store.commit(insert(position(signal_id="tv-1"), fills=[fill()]))
    found = await backend.store.find_by_signal("tv-1")
    assert found is not None
    assert found.id == "p1"
    assert found.applied_trades == {"t1"}
    assert await backend.store.find_by_signal("tv-2") is None


async def test_get_position_of_an_unknown_id_is_none(backend: Backend) -> None:
    """get_position returns None for an id never written."""
    assert await backend.store.get_position(PositionId("nope")) is None


async def test_events_list_oldest_first_keeping_the_most_recent(backend: Backend) -> None:
    """list_events returns the `limit` most recent events in the order they were written."""
    await backend.store.commit(insert(position()))
    await backend.store.commit(insert(position("p2", exclusive=False)))
    kinds = list(EventKind)[:6]
    for i, kind in enumerate(kinds):
        pid = "p1" if i % 2 == 0 else "p2"
        await backend.store.append_events([event(kind, pid, at=T0 - timedelta(seconds=i))])
    assert [e.kind for e in await backend.store.list_events()] == kinds
    assert [e.kind for e in await backend.store.list_events(limit=2)] == kinds[-2:]
    assert [e.kind for e in await backend.store.list_events(P1)] == kinds[0::2]
    assert [e.kind for e in await backend.store.list_events(P1, limit=1)] == [kinds[4]]


async def test_events_since_carry_increasing_ids_to_resume_from(backend: Backend) -> None:
    """events_since: with None the most recent with their ids; with an id, exactly the later ones."""
    await backend.store.commit(insert(position()))
    kinds = list(EventKind)[:5]
    for kind in kinds:
        await backend.store.append_events([event(kind, "p1")])
    everything = await backend.store.events_since(None, limit=100)
    ids = [i for i, _ in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e.kind for _, e in everything] == [e.kind for e in await backend.store.list_events()]
    newest = await backend.store.events_since(None, limit=2)
    assert newest == everything[-2:]
    assert await backend.store.events_since(ids[1]) == everything[2:]
    assert await backend.store.events_since(ids[1], limit=1) == everything[2:3]
    assert await backend.store.events_since(ids[-1]) == []


async def test_events_since_of_one_position_keep_their_ids(backend: Backend) -> None:
    """events_since(position_id=...): that position's events only, with the ids the stream gives them."""
    await backend.store.commit(insert(position()))
    await backend.store.commit(insert(position("p2", exclusive=False)))
    kinds = list(EventKind)[:6]
    for i, kind in enumerate(kinds):
        await backend.store.append_events([event(kind, "p1" if i % 2 == 0 else "p2")])
    everything = await backend.store.events_since(None, limit=100)
    mine = [(i, e) for i, e in everything if e.position_id == P1]
    assert await backend.store.events_since(None, limit=100, position_id=P1) == mine
    assert await backend.store.events_since(None, limit=1, position_id=P1) == mine[-1:]
    assert await backend.store.events_since(mine[0][0], position_id=P1) == mine[1:]


async def test_an_event_for_an_unknown_position_is_refused(backend: Backend) -> None:
    """append_events with a position id that does not exist raises a StoreError and writes nothing."""
    with pytest.raises(StoreError):
        await backend.store.append_events([event(EventKind.RECONCILE, None), event(pid="ghost")])
    assert await backend.store.list_events() == []


async def test_a_fenced_store_writes_while_its_epoch_is_current(backend: Backend) -> None:
    """With the lease epoch set and unchanged, commits and events go through."""
    epoch = await backend.lease("acct", "host-a:1").try_acquire()
    assert epoch is not None
    backend.store.set_epoch("acct", epoch)
    await backend.store.commit(insert(position()))
    await backend.store.append_events([event()])
    assert len(await backend.store.list_events()) == 1


async def test_a_fenced_store_is_refused_once_the_lease_moves_on(backend: Backend) -> None:
    """After another engine takes the lease, the old engine's commits and events raise FencedOut."""
    first = backend.lease("acct", "host-a:1")
    old_epoch = await first.try_acquire()
    assert old_epoch is not None
    backend.store.set_epoch("acct", old_epoch)
    await backend.store.commit(insert(position()))
    await first.release()
    new_epoch = await backend.lease("acct", "host-b:2").try_acquire()
    assert new_epoch == old_epoch + 1
    _, late = step(position(), status=PositionStatus.OPEN, events=[event()])
    with pytest.raises(FencedOut, match=f"epoch {new_epoch}"):
        await backend.store.commit(late)
    with pytest.raises(FencedOut):
        await backend.store.append_events([event()])
    stored = await backend.store.get_position(P1)
    assert stored is not None
    assert stored.version == 1
    assert await backend.store.list_events() == []


async def test_a_fence_on_an_account_without_a_lease_refuses_writes(backend: Backend) -> None:
    """An epoch for an account whose lease was never taken cannot match: FencedOut."""
    backend.store.set_epoch("nobody", 1)
    with pytest.raises(FencedOut):
        await backend.store.commit(insert(position()))


async def test_concurrent_commits_of_different_positions_all_land(backend: Backend) -> None:
    """Many transitions committed at once from one store all succeed (writers queue, they do not fail)."""
    await asyncio.gather(
        *(
            backend.store.commit(insert(position(f"c{i}", exclusive=False), events=[event(pid=f"c{i}")]))
            for i in range(20)
        )
    )
    assert len(await backend.store.list_positions(limit=100)) == 20
    assert len(await backend.store.list_events(limit=100)) == 20


async def test_a_second_engine_sees_what_the_first_committed(backend: Backend) -> None:
    """A store opened later on the same database loads what was committed (durable before success)."""
    await backend.store.commit(insert(full_position(), orders=[order("full")]))
    other = await backend.reopen()
    try:
        state = await other.load_active()
    finally:
        if other is not backend.store:
            await other.close()
    assert state.positions == [full_position()]
    assert state.orders == [order("full")]


def test_utc_is_the_zone_of_the_sample_epoch() -> None:
    """The builders' reference time is UTC (a guard for the tz assertions above)."""
    assert T0.tzinfo is UTC


async def test_a_naive_datetime_is_refused(backend: Backend) -> None:
    """A datetime without a time zone is a ValueError, and nothing is written."""
    with pytest.raises(ValueError, match="naive"):
        await backend.store.commit(insert(position(opened_at=T0.replace(tzinfo=None))))
    assert await backend.store.get_position(P1) is None


async def test_decimals_come_back_without_trailing_zeros(backend: Backend) -> None:
    """Amounts are canonical on every backend: 1.500 -> 1.5, 100 stays 100, 0E-8 -> 0."""
    await backend.store.commit(insert(position(target_qty=D("1.500"), stop_price=D("100"), mae=D("0E-8"))))
    loaded = await backend.store.get_position(P1)
    assert loaded is not None
    assert (str(loaded.target_qty), str(loaded.stop_price), str(loaded.mae)) == ("1.5", "100", "0")


async def test_save_marks_persists_tick_fields_without_a_version_change(backend: Backend) -> None:
    """Marks are written in bulk, keep the version, and come back exactly."""
    await backend.store.commit(insert(position()))
    stored = await backend.store.get_position(P1)
    assert stored is not None
    moved = replace(stored, last_price=D("101.5"), watermark=D("103.25"), mae=D("0.5"), mfe=D("3.25"))
    await backend.store.save_marks([moved])
    again = await backend.store.get_position(P1)
    assert again is not None and again.version == stored.version
    assert (again.last_price, again.watermark, again.mae, again.mfe) == (
        D("101.5"),
        D("103.25"),
        D("0.5"),
        D("3.25"),
    )


async def test_a_second_exclusive_active_position_on_a_symbol_is_symbol_busy(backend: Backend) -> None:
    """One exclusive active position per symbol: a second is SymbolBusy naming the first, and not written."""
    await backend.store.commit(insert(position("p1", status=PositionStatus.PROTECTED)))
    p2 = position("p2", signal_id="sig-2")
    with pytest.raises(SymbolBusy) as info:
        await backend.store.commit(
            insert(p2, orders=[order("p2")], fills=[fill("p2", "t2")], events=[event(pid="p2")])
        )
    assert (info.value.symbol, info.value.position_id) == (SOL, "p1")
    assert await backend.store.get_position(P2) is None
    assert await backend.store.find_by_signal("sig-2") is None
    assert await backend.store.orders_for(P2) == []
    assert await backend.store.fills_for(P2) == []
    assert await backend.store.list_events() == []
    assert [p.id for p in await backend.store.list_positions()] == ["p1"]


async def test_every_active_status_holds_the_symbol(backend: Backend) -> None:
    """Opening, open, protected and closing positions all keep the symbol busy."""
    for i, status in enumerate(ACTIVE):
        symbol = Symbol(f"S{i}USDT")
        await backend.store.commit(insert(position(f"h{i}", symbol=symbol, status=status)))
        with pytest.raises(SymbolBusy) as info:
            await backend.store.commit(insert(position(f"n{i}", symbol=symbol)))
        assert (info.value.symbol, info.value.position_id) == (symbol, f"h{i}"), status
    assert len(await backend.store.list_positions()) == len(ACTIVE)


async def test_a_closed_or_failed_position_frees_the_symbol(backend: Backend) -> None:
    """Once the holder is closed (or failed) another exclusive position may open on the symbol."""
    held = position("p1", status=PositionStatus.OPEN)
    await backend.store.commit(insert(held))
    _, close = step(held, status=PositionStatus.CLOSED)
    await backend.store.commit(close)
    await backend.store.commit(insert(position("p2")))
    _, fail = step(position("p2"), status=PositionStatus.FAILED)
    await backend.store.commit(fail)
    await backend.store.commit(insert(position("p3", status=PositionStatus.OPEN)))
    assert [p.id for p in await backend.store.list_positions()] == ["p3"]
    assert len(await backend.store.list_positions(include_closed=True)) == 3


async def test_a_terminal_position_never_holds_the_symbol(backend: Backend) -> None:
    """A position recorded closed beside an exclusive active one is not refused, nor does it block."""
    await backend.store.commit(insert(position("p1")))
    await backend.store.commit(insert(position("p2", status=PositionStatus.CLOSED)))
    await backend.store.commit(insert(position("p3", symbol=BTC, status=PositionStatus.FAILED)))
    await backend.store.commit(insert(position("p4", symbol=BTC)))
    assert [p.id for p in await backend.store.list_positions()] == ["p4", "p1"]


async def test_positions_that_are_not_exclusive_are_not_constrained(backend: Backend) -> None:
    """exclusive=False positions stack beside each other and the exclusive one; other symbols are free."""
    await backend.store.commit(insert(position("p1")))
    await backend.store.commit(insert(position("p2", exclusive=False)))
    await backend.store.commit(insert(position("p3", exclusive=False)))
    await backend.store.commit(insert(position("b1", symbol=BTC, exclusive=False)))
    await backend.store.commit(insert(position("b2", symbol=BTC)))
    assert len(await backend.store.list_positions()) == 5
    with pytest.raises(SymbolBusy) as info:
        await backend.store.commit(insert(position("b3", symbol=BTC)))
    assert (info.value.symbol, info.value.position_id) == (BTC, "b2")


async def test_an_update_that_would_make_a_second_exclusive_is_symbol_busy(backend: Backend) -> None:
    """Turning a stacked position exclusive while another holds the symbol is refused whole."""
    await backend.store.commit(insert(position("p1", status=PositionStatus.OPEN)))
    stacked = position("p2", exclusive=False)
    await backend.store.commit(insert(stacked))
    _, claim = step(
        stacked, exclusive=True, status=PositionStatus.OPEN, orders=[order("p2")], events=[event()]
    )
    with pytest.raises(SymbolBusy) as info:
        await backend.store.commit(claim)
    assert (info.value.symbol, info.value.position_id) == (SOL, "p1")
    assert await backend.store.get_position(P2) == stacked
    assert await backend.store.orders_for(P2) == []
    assert await backend.store.list_events() == []


async def test_the_holder_moves_on_without_tripping_over_itself(backend: Backend) -> None:
    """The exclusive position's own updates through every active status are not SymbolBusy."""
    current = position("p1")
    await backend.store.commit(insert(current))
    for status in (
        PositionStatus.OPEN,
        PositionStatus.PROTECTED,
        PositionStatus.CLOSING,
        PositionStatus.CLOSED,
    ):
        current, write = step(current, status=status)
        await backend.store.commit(write)
    assert await backend.store.get_position(P1) == current


async def test_engines_racing_for_a_symbol_get_one_position(backend: Backend) -> None:
    """Two stores committing exclusive positions on one symbol at once: one lands, the other is SymbolBusy."""
    other = await backend.reopen()
    try:
        results = await asyncio.gather(
            backend.store.commit(insert(position("p1"))),
            other.commit(insert(position("p2"))),
            return_exceptions=True,
        )
    finally:
        if other is not backend.store:
            await other.close()
    assert results.count(None) == 1, results
    winner = "p1" if results[0] is None else "p2"
    [busy] = [r for r in results if r is not None]
    assert isinstance(busy, SymbolBusy)
    assert busy.position_id == winner
    assert [p.id for p in await backend.store.list_positions()] == [winner]


async def test_the_installation_id_is_six_lowercase_letters_or_digits_and_stays(backend: Backend) -> None:
    """The store has an installation id of the documented form, the same on every read and after reopening."""
    first = backend.store.installation_id
    assert re.fullmatch(r"[a-z0-9]{6}", first)
    assert backend.store.installation_id == first
    other = await backend.reopen()
    try:
        assert other.installation_id == first
    finally:
        if other is not backend.store:
            await other.close()


async def test_commit_many_writes_every_transition_in_one_go(backend: Backend) -> None:
    """A group commit writes several positions' transitions, each with its own compare-and-set."""
    await backend.store.commit_many([insert(position("g1", symbol=SOL)), insert(position("g2", symbol=BTC))])
    moved, write = step(position("g1", symbol=SOL), status=PositionStatus.OPEN)
    moved2, write2 = step(position("g2", symbol=BTC), status=PositionStatus.OPEN)
    await backend.store.commit_many([write, write2])
    assert await backend.store.get_position(PositionId("g1")) == moved
    assert await backend.store.get_position(PositionId("g2")) == moved2


async def test_commit_many_is_all_or_none(backend: Backend) -> None:
    """If one transition of a group loses its compare-and-set, nothing of the group is written."""
    await backend.store.commit(insert(position("g1", symbol=SOL)))
    _, stale = step(replace(position("g1", symbol=SOL), version=5), status=PositionStatus.OPEN)
    with pytest.raises(VersionConflict):
        await backend.store.commit_many([insert(position("g2", symbol=BTC)), stale])
    assert await backend.store.get_position(PositionId("g2")) is None
    assert (await backend.store.get_position(PositionId("g1"))).status is PositionStatus.OPENING  # type: ignore[union-attr]


async def test_commit_many_writes_each_transitions_orders_fills_and_events(backend: Backend) -> None:
    """A group commit writes every part of every transition (each table in one statement for the
    whole group), creations before the orders that name them; a fenced-out group writes none."""
    g1, g2 = position("g1", symbol=SOL), position("g2", symbol=BTC)
    o1, o2 = order("g1"), order("g2", symbol=BTC)
    f1, f2 = fill("g1", trade_id="t1"), fill("g2", trade_id="t2", symbol=BTC)
    e1, e2 = event(pid="g1"), event(pid="g2", message="second")
    await backend.store.commit_many(
        [insert(g1, orders=[o1], fills=[f1], events=[e1]), insert(g2, orders=[o2], fills=[f2], events=[e2])]
    )
    assert await backend.store.orders_for(PositionId("g1")) == [o1]
    assert await backend.store.orders_for(PositionId("g2")) == [o2]
    assert await backend.store.fills_for(PositionId("g1")) == [f1]
    assert await backend.store.fills_for(PositionId("g2")) == [f2]
    assert await backend.store.list_events() == [e1, e2]
    await _fenced_out(backend)
    _, late1 = step(g1, status=PositionStatus.OPEN, events=[event(pid="g1", message="late")])
    _, late2 = step(g2, status=PositionStatus.OPEN, orders=[order("g2", seq=2, symbol=BTC)])
    with pytest.raises(FencedOut):
        await backend.store.commit_many([late1, late2])
    assert await backend.store.orders_for(PositionId("g2")) == [o2]
    assert await backend.store.list_events() == [e1, e2]


async def test_a_group_of_updates_keeps_each_compare_and_set(backend: Backend) -> None:
    """Updates of several positions in one group: each lands at its new version, and one stale
    among them refuses the whole group (PostgreSQL checks them in one locked query)."""
    start = [position(f"u{i}", symbol=symbol) for i, symbol in enumerate((SOL, BTC, Symbol("ETH/USDT:USDT")))]
    await backend.store.commit_many([insert(p) for p in start])
    moved = [step(p, status=PositionStatus.OPEN) for p in start]
    await backend.store.commit_many([t for _, t in moved])
    for new, _ in moved:
        assert await backend.store.get_position(new.id) == new
    again = [step(new, status=PositionStatus.PROTECTED) for new, _ in moved]
    _, stale = step(start[1], status=PositionStatus.CLOSING)  # from version 1, stored at 2
    with pytest.raises(VersionConflict, match="u1"):
        await backend.store.commit_many([again[0][1], stale, again[2][1]])
    for new, _ in moved:
        assert await backend.store.get_position(new.id) == new
    _, closing = step(moved[0][0], status=PositionStatus.CLOSED, closed_at=T0)
    await backend.store.commit_many([closing, insert(position("u3", symbol=SOL))])
    assert (await backend.store.get_position(PositionId("u3"))) == position("u3", symbol=SOL)


async def test_a_close_signal_is_bound_once_to_the_positions_it_closes(backend: Backend) -> None:
    """The first claim of a close signal's id on a symbol is stored and answered; a later one (the
    signal resent) gets the first, whatever it asks: a resent close names the positions the first
    closed, never those open now. Another id, or the same id on another symbol (one strategy's
    alerts on two symbols), is its own claim; an empty claim is kept as empty."""
    first = await backend.store.claim_close_signal("exit-1", SOL, [P1, P2], T0)
    assert (first.signal_id, first.symbol, first.position_ids) == ("exit-1", SOL, (P1, P2))
    again = await backend.store.claim_close_signal(
        "exit-1", SOL, [PositionId("p9")], T0 + timedelta(seconds=5)
    )
    assert (again.symbol, again.position_ids, again.at) == (SOL, (P1, P2), T0)
    elsewhere = await backend.store.claim_close_signal("exit-1", BTC, [PositionId("p9")], T0)
    assert (elsewhere.symbol, elsewhere.position_ids) == (BTC, (PositionId("p9"),))
    assert (await backend.store.claim_close_signal("exit-1", BTC, [], T0)).position_ids == ("p9",)
    other = await backend.store.claim_close_signal("exit-2", SOL, [], T0)
    assert (other.symbol, other.position_ids) == (SOL, ())
    assert (await backend.store.claim_close_signal("exit-2", SOL, [P1], T0)).position_ids == ()


async def test_a_fenced_store_refuses_a_close_claim_once_the_lease_moves_on(backend: Backend) -> None:
    """A close claim is a write like any other: a stale engine's is refused by the fence."""
    await _fenced_out(backend)
    with pytest.raises(FencedOut):
        await backend.store.claim_close_signal("exit-1", SOL, [P1], T0)


async def _fenced_out(backend: Backend) -> None:
    """The store fenced on an epoch of account "acct" that another engine's lease has moved past."""
    first = backend.lease("acct", "host-a:1")
    epoch = await first.try_acquire()
    assert epoch is not None
    backend.store.set_epoch("acct", epoch)
    await first.release()
    assert await backend.lease("acct", "host-b:2").try_acquire() == epoch + 1
