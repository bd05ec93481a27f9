"""What of this engine's may still reach the exchange, and until when.

A venue may execute a request it answered "unknown" (a timeout, Binance's 503 -1007) seconds
later, and warden sends a stop again under its id after one. So an order not found is not
always an order never sent: until `entry_deadline` after its last such send a copy of it may
still land (`copies_may_land`), and a close not found may still execute (`may_still_execute`,
`close_may_land`). ExitManager records here what it sends; reconciliation, recovery and the
open saga ask before they take an order for never sent, cancel one whose freed id a copy could
land on, or open a position a late close could reduce. Built once per engine with its Context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from warden.domain.orders import Order, OrderStatus
from warden.domain.values import ClientOrderId, OrderRole, PositionId, Side, Symbol
from warden.ports import Clock
from warden.service.config import EngineConfig
from warden.service.ledger import Ledger

COPIES_KEPT = 1_000
"""Orders whose copies may still land, kept before those past their time are dropped."""


class InFlight:
    def __init__(self, config: EngineConfig, clock: Clock, ledger: Ledger) -> None:
        self.config = config
        self.clock = clock
        self.ledger = ledger
        self.acting_since: datetime = clock.now()
        """When this engine began to act for the account (built, or last took it over): an order
        created before it may have been sent by another process, whose sends it cannot know."""
        self.closing: set[ClientOrderId] = set()
        """Closes on their way to the exchange (their outcome is not unknown, only not yet known:
        ExitManager._settle_unknown leaves them alone)."""
        self.followed: set[ClientOrderId] = set()
        """Closes with an unknown outcome being looked up (`ExitManager.follow_unknown_close`)."""
        self._placing: dict[ClientOrderId, int] = {}
        """Exit orders being sent by ExitManager.place now (how many calls each), for `sending`."""
        self._closes_may_land: dict[ClientOrderId, tuple[Order, float]] = {}
        """Closes sent with an unknown outcome, by this process or the one before it (read on a
        start: `close_in_flight`), and until when (monotonic) each may still execute: no signal
        opens a position they could reduce meanwhile (`close_may_land`)."""
        self._doubled: set[PositionId] = set()
        """Positions, alone on their symbol with stacking on, whose next close may go out while an
        earlier one may still execute (ExitManager._alone): their closes count in `close_may_land`
        while they are still open, since the second landing could reduce a position opened beside
        them meanwhile."""
        self._copies_until: dict[ClientOrderId, float] = {}
        """Exit orders sent with an unknown outcome: until when (monotonic) a copy still in flight
        may reach the exchange (see copies_may_land)."""
        self._sent_once: set[ClientOrderId] = set()
        """Stops given up on after a single send with an unknown outcome (`sent_once`)."""
        self.giving_up: set[PositionId] = set()
        """Positions whose entry is being given up on (Recovery.fail_entry writing the failure): a
        fill of that entry arriving meanwhile is covered before it waits for the write
        (ExitManager.apply_fill)."""

    def taking_over(self) -> None:
        """The engine takes the account over (from a holder that died, or back): it acts from now."""
        self.acting_since = self.clock.now()

    @contextmanager
    def placing(self, client_order_id: ClientOrderId) -> Iterator[None]:
        """The order is being sent (`sending`) while the block runs."""
        self._placing[client_order_id] = self._placing.get(client_order_id, 0) + 1
        try:
            yield
        finally:
            self._placing[client_order_id] -= 1
            if not self._placing[client_order_id]:
                del self._placing[client_order_id]

    def sending(self, client_order_id: ClientOrderId) -> bool:
        """Whether this engine is sending the order now: its outcome is the sender's to record
        (a lookup may find nothing yet and would call it never sent)."""
        return client_order_id in self._placing

    def copies_may_land(self, client_order_id: ClientOrderId) -> float:
        """Seconds during which a copy of this order, sent with an unknown outcome, may still reach
        the exchange's matching engine (0: none can). A venue may execute a timed-out request
        seconds later (Binance's 503 -1007), and a stop is sent again under its id after one:
        while a copy rests, the venue refuses the others as duplicates, but once it is cancelled
        the id is free and a copy still in flight rests again (chaos 777:87, placed twice). Counted
        as for a close (`may_still_execute`): `entry_deadline` after the last such send."""
        until = self._copies_until.get(client_order_id)
        if until is None:
            return 0.0
        left = until - self.clock.monotonic()
        if left <= 0:
            del self._copies_until[client_order_id]
            return 0.0
        return left

    def may_land(self, order: Order) -> bool:
        """Whether `order` may still reach the exchange, as far as this engine can tell: being sent
        now (or a close on its way), a copy of it sent with an unknown outcome may still land
        (copies_may_land), or a close not found yet may still execute (`may_still_execute`).
        An entry (its saga's sends are not followed here) or an order created before this engine
        began to act (another process's sends it cannot know of): always. For any other order
        that is not found, False means it never will be."""
        cid = order.client_order_id
        return (
            order.role is OrderRole.ENTRY
            or order.created_at < self.acting_since
            or self.sending(cid)
            or cid in self.closing
            or self.copies_may_land(cid) > 0
            or self.may_still_execute(order)
        )

    def copies_of_the_dead(self, client_order_id: ClientOrderId, created_at: datetime) -> float:
        """Seconds during which copies of an order the process before this one may have sent can
        still land (0: none can), counted from then on as this engine's own (`copies_in_flight`).
        That process's sends cannot be known: an exit order it made (`created_at`, before this
        engine began to act) within a stop's send time (0.75 of the protection window) plus
        `entry_deadline` of now is taken to have them."""
        if created_at >= self.acting_since:
            return 0.0
        left = self._dead_horizon() - (self.clock.now() - created_at).total_seconds()
        if left <= 0:
            return 0.0
        self.copies_in_flight(client_order_id, left)
        return left

    def dead_copies_may_land(self) -> bool:
        """Whether any copy the process before this one sent can still land (it acted until this
        engine began to: `acting_since`)."""
        return (self.clock.now() - self.acting_since).total_seconds() < self._dead_horizon()

    def _dead_horizon(self) -> float:
        """A stop's send time (0.75 of the protection window) plus `entry_deadline`."""
        return self.config.protection_window * 0.75 + self.config.entry_deadline

    def sent_unknown(self, client_order_id: ClientOrderId) -> None:
        """A send of this order was answered with an unknown outcome: a copy is in flight."""
        self.copies_in_flight(client_order_id, self.config.entry_deadline)

    def sent_once(self, order: Order) -> None:
        """A stop given up on after its one send, answered with an unknown outcome, was not found
        (a move the stop it replaces covers for: ExitManager._covered_meanwhile): at most one
        copy of it can land, so one that lands can be cancelled on sight without freeing its id
        for another (`only_copy`). Not while the process before may have sent it too, under the
        same deterministic id, with copies of its own still in flight (`dead_copies_may_land`;
        chaos 5171:2184: a move sent once, the process killed, the next one making the same move
        under the same id and sending it once more: both copies landed)."""
        if order.created_at < self.acting_since or self.dead_copies_may_land():
            return
        if len(self._sent_once) >= COPIES_KEPT:
            self._sent_once = {c for c in self._sent_once if self.copies_may_land(c) > 0}
        self._sent_once.add(order.client_order_id)

    def only_copy(self, client_order_id: ClientOrderId) -> bool:
        """Whether a copy of this order that landed is the only one that can (`sent_once`)."""
        return client_order_id in self._sent_once

    def copies_in_flight(self, client_order_id: ClientOrderId, seconds: float) -> None:
        """Copies of this order may land for `seconds` more (at least: a later end is kept)."""
        now = self.clock.monotonic()
        if len(self._copies_until) >= COPIES_KEPT:
            self._copies_until = {c: t for c, t in self._copies_until.items() if t > now}
        until = max(now + seconds, self._copies_until.get(client_order_id, now))
        self._copies_until[client_order_id] = until

    def close_in_flight(self, close: Order) -> None:
        """`close` was sent with an unknown outcome (by this process, or by the one before it:
        recovery reads those of positions open or closed within `entry_deadline`): counted by
        `close_may_land` for as long as it may still execute."""
        left = self.may_execute_for(close)
        if left > 0 and not close_ended(close):
            self._closes_may_land[close.client_order_id] = (close, self.clock.monotonic() + left)

    def doubled(self, pid: PositionId) -> None:
        """`pid` may have a second close on its way while an earlier one may still execute: no
        signal opens a position beside it that a close of it could reduce, for as long as one
        may land (`close_may_land`)."""
        self._doubled.add(pid)

    def close_may_land(self, symbol: Symbol, side: Side) -> float:
        """Seconds during which a close of a `side` position on `symbol` that is no longer open,
        sent with an unknown outcome and not known to have ended, may still execute (0: none
        can). Landing, it would reduce a new `side` position there (reduce-only knows one
        position per symbol), whatever closed its own: a second close past it
        (ExitManager._alone), its stop, a restart between. A position of the other side it
        cannot reduce (the exchange refuses a reduce-only order that would grow it)."""
        if not self._closes_may_land:
            self._doubled.clear()  # none of their closes may land any more
            return 0.0
        now, left = self.clock.monotonic(), 0.0
        for cid, (close, until) in list(self._closes_may_land.items()):
            if until <= now or close_ended(self.ledger.orders.get(cid, close)):
                del self._closes_may_land[cid]
                continue
            position = self.ledger.positions.get(close.position_id)
            if (
                close.symbol != symbol
                or close.side is not side.exit_side
                or (position and position.is_active and close.position_id not in self._doubled)
            ):
                continue  # another market or side; or it lands on its own position
            left = max(left, until - now)
        return left

    def may_execute_for(self, order: Order) -> float:
        """Seconds a close not found yet may still execute (`entry_deadline` after it was sent)."""
        age = self.clock.now() - order.created_at
        return self.config.entry_deadline - age.total_seconds()

    def may_still_execute(self, order: Order) -> bool:
        """A close not found yet that is younger than `entry_deadline`: it timed out, and a venue
        may execute a timed-out order seconds later, so it is not taken for never sent (another
        close would be sent, and both could execute) until then. Any other order: not found is
        never sent (a stop or take-profit rests until it triggers: its id cannot be taken twice)."""
        return order.role is OrderRole.CLOSE and self.may_execute_for(order) > 0


def close_ended(close: Order) -> bool:
    """Whether a close is known to be unable to execute any more: filled, refused, or ended as the
    exchange reported it. Not one recorded cancelled without ever being seen there: a cancel
    answered "not found" once its position closed (ExitManager.cancel_exits) is no proof that a
    request the exchange holds will not still execute."""
    status = close.status
    return status is OrderStatus.REJECTED or (status.terminal and close.exchange_order_id is not None)
