"""A cumulative histogram kept as counts: fixed memory however many values it takes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

UNPROTECTED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds from a fill to its resting stop: the bounds of `warden_unprotected_seconds`."""


@dataclass(slots=True)
class Tally:
    """Values observed, as Prometheus counts them: how many were at most each bound (cumulative),
    how many in all, and their sum. It keeps no value itself, so a process that protects
    positions for months holds the same few numbers (a list of every value grew without end, and
    each scrape of /metrics walked it)."""

    bounds: tuple[float, ...]
    at_most: list[int] = field(init=False)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        self.at_most = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.at_most[i] += 1

    @classmethod
    def merged(cls, bounds: tuple[float, ...], tallies: Iterable[Tally]) -> Tally:
        """One tally of several with the same bounds (each account's engine in one process)."""
        out = cls(bounds)
        for tally in tallies:
            if tally.bounds != bounds:
                raise ValueError(f"bounds differ: {tally.bounds} and {bounds}")
            out.count += tally.count
            out.total += tally.total
            out.at_most = [a + b for a, b in zip(out.at_most, tally.at_most, strict=True)]
        return out
