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
    logging.disable(logging.NOTSET)  # an earlier test (a chaos campaign) may have silenced logging
    structlog.reset_defaults()
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


def _fail_with_a_secret_in_scope() -> None:
    api_secret = "-".join(["s3cr3t", "in", "a", "local"])  # noqa: F841 - a renderer showing locals prints it
    raise RuntimeError("boom")


@pytest.mark.parametrize("as_json", [True, False])
def test_tracebacks_are_text_and_never_show_locals(capsys: pytest.CaptureFixture[str], as_json: bool) -> None:
    """An exception logged through warden's or the standard library's logger renders as a readable
    traceback (never `<traceback object ...>`), and no frame's local variables are printed."""
    configure_logging("info", json=as_json)
    for logger in (get_logger("warden.test"), logging.getLogger("uvicorn.error")):
        try:
            _fail_with_a_secret_in_scope()
        except RuntimeError:
            logger.exception("it failed")
    err = capsys.readouterr().err
    assert "<traceback object" not in err
    assert err.count("RuntimeError") >= 2 and "boom" in err
    assert "s3cr3t-in-a-local" not in err


def test_a_console_traceback_is_not_syntax_highlighted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A traceback in the console format is rendered on the event loop: highlighted by Rich, it
    lexed every file a frame is in, whole (ccxt's bybit.py: about 3 s of CPU for one logged
    authentication error, during which no stop could be placed; found when a process test's
    /healthz timed out). It is plain text now, still readable and complete."""
    import pygments.lexer

    lexed: list[object] = []
    real = pygments.lexer.RegexLexer.get_tokens_unprocessed

    def counting(self: object, *args: object, **kwargs: object) -> object:
        lexed.append(self)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pygments.lexer.RegexLexer, "get_tokens_unprocessed", counting)
    configure_logging("info", json=False)
    try:
        _fail_with_a_secret_in_scope()
    except RuntimeError:
        get_logger("warden.test").exception("it failed")
    err = capsys.readouterr().err
    assert lexed == []
    assert "Traceback" in err and "_fail_with_a_secret_in_scope" in err and "RuntimeError: boom" in err


def test_a_logger_follows_a_later_configuration() -> None:
    """A module's logger first used under warden's configuration still follows a later one
    (structlog.testing.capture_logs here): with loggers cached on first use it kept the first
    for good, and the alert-refusal tests captured nothing when the whole suite ran."""
    from structlog.testing import capture_logs

    from warden.service import delivery

    configure_logging("info")
    delivery.log.info("first used under warden's configuration")
    structlog.reset_defaults()
    with capture_logs() as logs:
        delivery.log.error("captured")
    assert [e["event"] for e in logs] == ["captured"]
