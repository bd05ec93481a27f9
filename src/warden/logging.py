"""Logging: structlog for warden's own events, the standard library routed through it.

Console text for people, one JSON object per line for machines (`log_json`).
Secrets never reach a handler: `SecretStr` values and any key that looks like
a credential are replaced before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "**********"
QUIET_LIBRARIES = ("alembic", "sqlalchemy", "aiosqlite", "asyncio", "httpx", "httpcore", "telegram")
"""Chatty at INFO; shown only when warden logs at DEBUG."""
SECRET_KEYS = frozenset(
    {"api_key", "api_secret", "api_token", "token", "secret", "password", "authorization"}
)


_HIDDEN: set[str] = set()
"""Secret values that must never appear in a rendered line (a bot token is part of every URL)."""


def hide_secret(value: str) -> None:
    """Replace `value` wherever it appears in a rendered log line from now on."""
    if len(value) >= 8:
        _HIDDEN.add(value)


def scrub_hidden(_logger: WrappedLogger, _method: str, rendered: Any) -> Any:
    """The last step: a hidden secret inside any rendered text (a URL in an error) is replaced."""
    if isinstance(rendered, str):
        for secret in _HIDDEN:
            rendered = rendered.replace(secret, REDACTED)
    return rendered


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace credentials in an event (top level and one mapping deep)."""
    return _redact(event_dict)


def _redact(values: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(values.items()):
        if isinstance(value, SecretStr) or (key.lower() in SECRET_KEYS and value is not None):
            values[key] = REDACTED
        elif isinstance(value, Mapping):
            values[key] = _redact(dict(value))
    return values


def configure_logging(level: str = "info", json: bool = False) -> None:
    """Set up structlog and the standard library (uvicorn, sqlalchemy) to render alike."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    # Tracebacks never show local variables: a frame's locals may hold credentials. They are
    # plain text: rendered on the event loop, Rich's highlighting lexes each frame's whole file
    # (seconds of CPU for one through ccxt's largest modules, while no stop can be placed).
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.format_exc_info if json else _noop,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger first used under one configuration would keep it for good (a test
        # capturing logs after another configured them saw nothing; so would a reconfiguration).
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Standard-library records (uvicorn, asyncio) carry exc_info too: as text in JSON.
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
            scrub_hidden,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(
            numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )


def _noop(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    return event_dict


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
