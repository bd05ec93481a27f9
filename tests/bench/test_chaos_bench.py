"""`warden bench chaos`'s report."""

from __future__ import annotations

from warden.bench.chaos_bench import add_violations
from warden.bench.report import Result
from warden.chaos.checker import Violation


def test_two_violations_of_one_run_at_one_step_are_both_reported() -> None:
    """The bench of seed 1540091406 counted 4 violations and listed 3: run 4781 placed two
    take-profits twice at step 16, and the second line was written over the first."""
    result = Result("chaos")
    add_violations(
        result,
        [
            ("1540091406:4781", Violation("I2", "order wd-x-a1 was placed 2 times", 16)),
            ("1540091406:4781", Violation("I2", "order wd-x-b1 was placed 2 times", 16)),
        ],
    )
    text = result.render()
    assert "wd-x-a1" in text and "wd-x-b1" in text
