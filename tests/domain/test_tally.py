"""The tally behind `warden_unprotected_seconds`: Prometheus's counts, in fixed memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.domain.tally import UNPROTECTED_BUCKETS, Tally

seconds = st.floats(min_value=0, max_value=120, allow_nan=False)


@given(st.lists(seconds, max_size=200))
def test_a_tally_counts_what_a_list_of_every_value_would(values: list[float]) -> None:
    tally = Tally(UNPROTECTED_BUCKETS)
    for value in values:
        tally.observe(value)
    assert tally.at_most == [sum(1 for v in values if v <= bound) for bound in UNPROTECTED_BUCKETS]
    assert tally.count == len(values)
    assert tally.total == pytest.approx(sum(values))


def test_a_tally_holds_the_same_numbers_however_many_values_it_took() -> None:
    """A process protecting positions for months: a list of every value grew without end."""
    tally = Tally(UNPROTECTED_BUCKETS)
    for i in range(70_000):  # 0.0, 0.1, ... 69.9, a hundred times
        tally.observe((i % 700) / 10)
    assert len(tally.at_most) == len(UNPROTECTED_BUCKETS)
    assert list(Tally.__slots__) == ["bounds", "at_most", "count", "total"]
    assert tally.count == 70_000 and tally.at_most[-1] == 100 * 601  # 0.0 .. 60.0


@given(st.lists(seconds, max_size=50), st.lists(seconds, max_size=50))
def test_merged_tallies_count_both(first: list[float], second: list[float]) -> None:
    a, b = Tally(UNPROTECTED_BUCKETS), Tally(UNPROTECTED_BUCKETS)
    for value in first:
        a.observe(value)
    for value in second:
        b.observe(value)
    both = Tally(UNPROTECTED_BUCKETS)
    for value in first + second:
        both.observe(value)
    merged = Tally.merged(UNPROTECTED_BUCKETS, [a, b])
    assert (merged.at_most, merged.count) == (both.at_most, both.count)
    assert merged.total == pytest.approx(both.total)


def test_tallies_of_other_bounds_are_not_merged() -> None:
    with pytest.raises(ValueError, match="bounds differ"):
        Tally.merged(UNPROTECTED_BUCKETS, [Tally((1.0,))])
