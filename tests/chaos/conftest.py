"""A campaign silences logging for the whole process (it reports faults itself): undo it after each test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """Leave logging as the test found it."""
    yield
    logging.disable(logging.NOTSET)
    structlog.reset_defaults()
