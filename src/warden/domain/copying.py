"""`evolve`: `dataclasses.replace` for the domain's records, about three times cheaper.

An open makes some twenty copies of a position or an order, one field or a few changed each
(a status, a version, a fill). `replace` gathers every field into a keyword dict and calls the
frozen class's `__init__`, which sets each one through `object.__setattr__`: 5-6 µs for a
position's 32 fields. `evolve` copies the slots straight across and sets the changed ones:
about 2 µs. It applies only where skipping `__init__` skips nothing: a slotted dataclass
with every field in `__init__` and no `__post_init__`; any other class goes to `replace`.

For the type checker `evolve` is `replace`, so each call's field names and value types are
checked as they were; at run time an unknown field name raises TypeError, as `replace`'s does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

__all__ = ["evolve"]

Copier = Callable[[Any, Mapping[str, Any]], Any]

_COPIERS: dict[type, Copier] = {}


def _slot_copier(cls: type) -> Copier:
    if (
        not is_dataclass(cls)
        or not hasattr(cls, "__slots__")
        or hasattr(cls, "__post_init__")
        or any(not f.init for f in fields(cls))
    ):
        return lambda obj, changes: replace(obj, **changes)
    names = tuple(f.name for f in fields(cls))
    if len(names) < 2:  # attrgetter of one name gives the value, not a tuple of it
        return lambda obj, changes: replace(obj, **changes)
    get_all = attrgetter(*names)
    put_all = tuple(getattr(cls, name).__set__ for name in names)
    put = {name: getattr(cls, name).__set__ for name in names}
    new = object.__new__

    def copy(obj: Any, changes: Mapping[str, Any]) -> Any:
        made = new(cls)
        for set_slot, value in zip(put_all, get_all(obj), strict=True):
            set_slot(made, value)
        for name, value in changes.items():
            try:
                set_slot = put[name]
            except KeyError:
                raise TypeError(f"{cls.__name__} has no field {name!r}") from None
            set_slot(made, value)
        return made

    return copy


def _evolve(obj: Any, /, **changes: Any) -> Any:
    cls = type(obj)
    copy = _COPIERS.get(cls)
    if copy is None:
        copy = _COPIERS[cls] = _slot_copier(cls)
    return copy(obj, changes)


if TYPE_CHECKING:
    from dataclasses import replace as evolve
else:
    evolve = _evolve
