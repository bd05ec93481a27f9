"""A stand-in for the engine's ledger around a TickIndex, for the tick-path tests.

`Book.change` does what `Ledger._apply` does with a transition: tell the index first
(`before_change`), then store the new position merged with the marks of the copy it
replaces (`with_marks_of`), and keep the symbol's membership to the active positions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from warden.domain.orders import Fill
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus
from warden.domain.ticks import TickIndex
from warden.domain.values import Instrument, OrderRole, PositionId, Side, Symbol, TradeId, client_order_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def instrument(symbol: str, tick: str = "0.01") -> Instrument:
    return Instrument(Symbol(symbol), Decimal(tick), Decimal("0.001"), Decimal("0.001"), Decimal(5))


def opening(pid: str, symbol: Symbol, side: Side, plan: ExitPlan | None = None) -> Position:
    return Position(PositionId(pid), symbol, side, PositionStatus.OPENING, Decimal(1), plan or ExitPlan(), T0)


def entry_fill(position: Position, price: Decimal, qty: Decimal = Decimal(1), n: int = 1) -> Fill:
    return Fill(
        TradeId(f"{position.id}-t{n}"),
        client_order_id(position.id, OrderRole.ENTRY, 1),
        position.id,
        OrderRole.ENTRY,
        position.symbol,
        position.side.entry_side,
        qty,
        price,
        Decimal(0),
        T0,
    )


def filled(position: Position, price: Decimal) -> Position:
    """The entry fill and OPENING -> OPEN, as the engine commits them together."""
    return position.apply_fill(entry_fill(position, price)).transition(PositionStatus.OPEN)


def as_runner(position: Position, stop: Decimal) -> Position:
    """TP2 done: the rest trails from here (only the fields the tick path reads)."""
    return replace(position, status=PositionStatus.PROTECTED, trailing_active=True, stop_price=stop)


class Book:
    def __init__(self, *instruments: Instrument) -> None:
        self.positions: dict[PositionId, Position] = {}
        self.by_symbol: dict[Symbol, set[PositionId]] = {}
        self.index = TickIndex(
            {i.symbol: i for i in instruments},
            members=lambda symbol: sorted(self.by_symbol.get(symbol, ())),
            get=self.positions.__getitem__,
            put=self.put_marks,
        )

    def put_marks(self, position: Position) -> None:
        self.positions[position.id] = position

    def change(self, new: Position) -> Position:
        """One committed transition, applied to memory the way the ledger applies it."""
        current = self.positions.get(new.id)
        self.index.before_change(new.symbol, new.id, current is None)
        current = self.positions.get(new.id)
        if current is not None and new.is_active:
            new = new.with_marks_of(current)
        self.positions[new.id] = new
        members = self.by_symbol.setdefault(new.symbol, set())
        if new.is_active:
            members.add(new.id)
        else:
            members.discard(new.id)
        return new

    def read(self, pid: PositionId) -> Position:
        """What a reader sees: the symbol's range folded in first (as Engine.view does)."""
        self.index.materialize(self.positions[pid].symbol)
        return self.positions[pid]
