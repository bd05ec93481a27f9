"""InFlight: what of this engine's may still reach the exchange, on the fake clock.

The reconciler looks an unknown intent up early only when `may_land` is False, and takes one not
found then as never sent: each way an order may still land has to keep it True, and each has to
end when its time is up, or the symbol stays out of every pass (chaos 1215:194)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.store.builders import T0, order
from warden.adapters.clock import FakeClock
from warden.adapters.memory import InMemoryStore
from warden.domain.orders import Order, OrderStatus
from warden.domain.values import ClientOrderId, OrderRole, OrderType
from warden.service.config import EngineConfig
from warden.service.flights import COPIES_KEPT, InFlight
from warden.service.ledger import Ledger

CONFIG = EngineConfig()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def flights(clock: FakeClock) -> InFlight:
    clock.advance(60)  # the engine began to act a minute after T0
    return InFlight(CONFIG, clock, Ledger(InMemoryStore(), clock))


def stop_sent(clock: FakeClock, seq: int = 2) -> Order:
    """A stop intent of this engine's, created now, not yet answered."""
    return order(role=OrderRole.STOP, seq=seq, status=OrderStatus.PENDING, created_at=clock.now())


def test_an_exit_order_with_nothing_in_flight_cannot_land(clock: FakeClock, flights: InFlight) -> None:
    stop = stop_sent(clock)
    clock.advance(CONFIG.order_timeout + 1)
    assert not flights.may_land(stop)


def test_an_order_being_sent_may_land_until_its_send_ends(clock: FakeClock, flights: InFlight) -> None:
    stop = stop_sent(clock)
    with flights.placing(stop.client_order_id), flights.placing(stop.client_order_id):
        assert flights.sending(stop.client_order_id)
    assert flights.may_land(stop) is False
    with flights.placing(stop.client_order_id):
        assert flights.may_land(stop)
    assert not flights.sending(stop.client_order_id)


def test_a_copy_sent_with_an_unknown_outcome_may_land_for_entry_deadline_after_the_last_send(
    clock: FakeClock, flights: InFlight
) -> None:
    stop = stop_sent(clock)
    flights.sent_unknown(stop.client_order_id)
    clock.advance(CONFIG.entry_deadline / 2)
    flights.sent_unknown(stop.client_order_id)  # sent again: counted from this send
    clock.advance(CONFIG.entry_deadline / 2 + 1)
    assert flights.copies_may_land(stop.client_order_id) == pytest.approx(CONFIG.entry_deadline / 2 - 1)
    assert flights.may_land(stop)
    clock.advance(CONFIG.entry_deadline / 2)
    assert flights.copies_may_land(stop.client_order_id) == 0
    assert not flights.may_land(stop)


def test_a_close_not_found_may_execute_for_entry_deadline_after_it_was_made(
    clock: FakeClock, flights: InFlight
) -> None:
    close = order(
        role=OrderRole.CLOSE,
        seq=1,
        type=OrderType.MARKET,
        trigger_price=None,
        status=OrderStatus.PENDING,
        created_at=clock.now(),
    )
    clock.advance(CONFIG.entry_deadline - 1)
    assert flights.may_still_execute(close) and flights.may_land(close)
    clock.advance(2)
    assert not flights.may_land(close)


def test_a_close_on_its_way_may_land(clock: FakeClock, flights: InFlight) -> None:
    close = order(
        role=OrderRole.CLOSE, seq=1, type=OrderType.MARKET, status=OrderStatus.PENDING, created_at=clock.now()
    )
    clock.advance(CONFIG.entry_deadline + 1)
    flights.closing.add(close.client_order_id)
    assert flights.may_land(close)
    flights.closing.discard(close.client_order_id)
    assert not flights.may_land(close)


def test_an_entry_or_another_process_s_order_may_always_land(clock: FakeClock, flights: InFlight) -> None:
    entry = order(role=OrderRole.ENTRY, seq=1, status=OrderStatus.PENDING, created_at=clock.now())
    clock.advance(3600)
    assert flights.may_land(entry), "the saga's sends are not followed here"
    before = order(role=OrderRole.STOP, seq=3, status=OrderStatus.PENDING, created_at=flights.acting_since)
    older = order(
        role=OrderRole.STOP,
        seq=4,
        status=OrderStatus.PENDING,
        created_at=flights.acting_since - timedelta(seconds=1),
    )
    assert not flights.may_land(before)
    assert flights.may_land(older), "sent, perhaps, by the process before: its copies are unknown here"
    flights.taking_over()
    assert flights.may_land(before)


def test_copies_kept_are_bounded_by_dropping_those_past_their_time(
    clock: FakeClock, flights: InFlight
) -> None:
    for n in range(COPIES_KEPT):
        flights.sent_unknown(ClientOrderId(f"old-{n}"))
    clock.advance(CONFIG.entry_deadline + 1)
    flights.sent_unknown(ClientOrderId("new"))
    assert flights.copies_may_land(ClientOrderId("new")) > 0
    assert len(flights._copies_until) == 1  # the bound is what is tested
