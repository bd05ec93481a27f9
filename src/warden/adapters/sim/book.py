"""Resting conditional orders of one symbol, indexed by trigger price.

A tick that crosses nothing costs O(1) (a look at the top of two heaps); adding an
order costs O(log n); a crossed order is popped in O(log n). Cancels are lazy: the
entry stays in its heap until it reaches the top or the heap is compacted.
"""

from __future__ import annotations

import heapq
from decimal import Decimal
from enum import StrEnum

from warden.domain.values import OrderSide, OrderType

_COMPACT_SLACK = 64


class Direction(StrEnum):
    """Which way the mark must move to fire an order."""

    FALLING = "falling"  # fires when mark <= trigger: sell STOP_MARKET, buy TAKE_PROFIT_MARKET
    RISING = "rising"  # fires when mark >= trigger: buy STOP_MARKET, sell TAKE_PROFIT_MARKET


def direction_of(side: OrderSide, order_type: OrderType) -> Direction:
    """The direction that fires a conditional order of this side and type."""
    is_stop = order_type is OrderType.STOP_MARKET
    is_sell = side is OrderSide.SELL
    return Direction.FALLING if is_stop == is_sell else Direction.RISING


def fires(direction: Direction, trigger: Decimal, mark: Decimal) -> bool:
    """Whether `mark` has reached `trigger` for an order of this direction."""
    return mark <= trigger if direction is Direction.FALLING else mark >= trigger


# Heap entries are (key, seq, order id). FALLING stores -trigger so the highest trigger
# (the first one a falling mark reaches) is on top; RISING stores the trigger itself.
_Entry = tuple[Decimal, int, str]


class TriggerBook:
    """Two heaps with lazy deletion; `crossed` pops every order the mark has reached."""

    __slots__ = ("_heaps", "_live")

    def __init__(self) -> None:
        self._heaps: dict[Direction, list[_Entry]] = {Direction.FALLING: [], Direction.RISING: []}
        self._live: dict[str, tuple[Direction, int, Decimal]] = {}  # order id -> its one live entry

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._live

    def add(self, order_id: str, direction: Direction, trigger: Decimal, seq: int) -> None:
        """Rest an order; `seq` breaks ties between equal triggers (earlier fires first)."""
        if order_id in self._live:
            raise ValueError(f"order {order_id} is already in the book")
        key = -trigger if direction is Direction.FALLING else trigger
        heapq.heappush(self._heaps[direction], (key, seq, order_id))
        self._live[order_id] = (direction, seq, key)

    def remove(self, order_id: str) -> bool:
        """Forget an order; False if it was not resting."""
        entry = self._live.pop(order_id, None)
        if entry is None:
            return False
        self._maybe_compact(entry[0])
        return True

    def crossed(self, mark: Decimal) -> list[str]:
        """Pop the orders `mark` fires, falling ones first (highest trigger first), then rising."""
        return self._pop(Direction.FALLING, mark) + self._pop(Direction.RISING, mark)

    def _pop(self, direction: Direction, mark: Decimal) -> list[str]:
        heap = self._heaps[direction]
        fired: list[str] = []
        while heap:
            key, seq, order_id = heap[0]
            if self._live.get(order_id) != (direction, seq, key):  # cancelled, or moved (amended)
                heapq.heappop(heap)
                continue
            trigger = -key if direction is Direction.FALLING else key
            if not fires(direction, trigger, mark):
                break
            heapq.heappop(heap)
            del self._live[order_id]
            fired.append(order_id)
        return fired

    def _maybe_compact(self, direction: Direction) -> None:
        heap = self._heaps[direction]
        if len(heap) <= 2 * len(self._live) + _COMPACT_SLACK:  # amortised O(1) per remove
            return
        live = [entry for entry in heap if self._live.get(entry[2]) == (direction, entry[1], entry[0])]
        heapq.heapify(live)
        self._heaps[direction] = live
