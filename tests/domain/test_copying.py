"""`evolve` is `dataclasses.replace`, field for field, for every record it copies by its slots."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

import pytest

from tests.store.builders import full_position, order, position
from warden.domain.copying import evolve
from warden.domain.errors import ValidationError
from warden.domain.orders import Order, OrderStatus
from warden.domain.plan import ExitPlan
from warden.domain.position import Position, PositionStatus


class Changed:
    """A value no field holds: each field set to it shows it was written, and to that field."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Changed) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


@pytest.mark.parametrize("record", [position(), full_position(), order(), order(exchange_order_id="x9")])
def test_each_field_changed_alone_is_what_replace_makes(record: Any) -> None:
    for f in fields(record):
        value = Changed(f.name)
        copied, replaced = evolve(record, **{f.name: value}), replace(record, **{f.name: value})
        assert copied == replaced
        assert getattr(copied, f.name) == value
        assert copied is not record and getattr(record, f.name) != value


def test_several_fields_at_once_and_none_at_all() -> None:
    p = full_position()
    assert evolve(p, status=PositionStatus.CLOSING, version=9, exit_reason="stop") == replace(
        p, status=PositionStatus.CLOSING, version=9, exit_reason="stop"
    )
    same = evolve(p)
    assert same == p and same is not p
    assert all(getattr(same, f.name) is getattr(p, f.name) for f in fields(Position))


def test_an_unknown_field_is_refused_as_replace_refuses_it() -> None:
    with pytest.raises(TypeError, match="statuss"):
        evolve(order(), statuss=OrderStatus.OPEN)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        replace(order(), statuss=OrderStatus.OPEN)  # type: ignore[call-arg]


def test_the_copy_is_still_frozen() -> None:
    copied = evolve(order(), status=OrderStatus.OPEN)
    assert isinstance(copied, Order)
    with pytest.raises(AttributeError):
        copied.status = OrderStatus.FILLED  # type: ignore[misc]


def test_a_class_that_checks_its_fields_is_still_checked() -> None:
    """ExitPlan validates in `__post_init__`: `evolve` goes through `replace` for it."""
    with pytest.raises(ValidationError, match="stop_pct"):
        evolve(ExitPlan(), stop_pct=Decimal(2))
    assert evolve(ExitPlan(), stop_pct=Decimal("0.02")) == replace(ExitPlan(), stop_pct=Decimal("0.02"))


def test_records_without_slots_or_with_one_field_go_through_replace() -> None:
    @dataclass(frozen=True)
    class Plain:
        a: int
        b: int = 0

    @dataclass(frozen=True, slots=True)
    class One:
        a: int

    assert evolve(Plain(1), b=2) == Plain(1, 2)
    assert evolve(One(1), a=2) == One(2)
    with pytest.raises(TypeError):
        evolve(One(1), b=2)  # type: ignore[call-arg]
