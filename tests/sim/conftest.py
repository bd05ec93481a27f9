"""Fixtures for the simulated-exchange tests."""

from __future__ import annotations

import pytest

from warden.adapters.sim import SimCore, SimulatedExchange

from .builders import ManualTime, RecordingSleep


@pytest.fixture
def now() -> ManualTime:
    return ManualTime()


@pytest.fixture
def core() -> SimCore:
    return SimCore(seed=7)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def exchange(now: ManualTime, sleep: RecordingSleep) -> SimulatedExchange:
    return SimulatedExchange(now=now, seed=7, sleep=sleep)
