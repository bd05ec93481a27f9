"""Logging: console or JSON, and credentials never reach the output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from warden.logging import REDACTED, configure_logging, get_logger


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures logging from scratch and leaves the process as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_json_lines_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON output is one object per line; token, secret and SecretStr values are redacted."""
    configure_logging("info", json=True)
    get_logger("warden.test").info(
        "signal", token="tok-1", secret="sec-2", key=SecretStr("key-3"), extra={"api_secret": "s-4"}, qty="1"
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["event"] == "signal"
    assert event["qty"] == "1"
    assert (event["token"], event["secret"], event["key"]) == (REDACTED, REDACTED, REDACTED)
    assert event["extra"]["api_secret"] == REDACTED
    for leaked in ("tok-1", "sec-2", "key-3", "s-4"):
        assert leaked not in line


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    """Below the configured level nothing is written; standard-library loggers render the same way."""
    configure_logging("warning", json=True)
    log = get_logger("warden.test")
    log.info("hidden")
    log.warning("shown")
    logging.getLogger("uvicorn.error").warning("from uvicorn")
    lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    assert [x["event"] for x in lines] == ["shown", "from uvicorn"]
    assert lines[1]["level"] == "warning"
