"""The one place where database exceptions become Store errors.

    asyncio / OS / driver / SQLAlchemy exception
    ├── TimeoutError, OSError, OperationalError,
    │   InterfaceError, invalidated connection,
    │   asyncpg errors (SQLAlchemy does not wrap
    │   those raised while connecting), any other
    │   DBAPIError (corrupt file, aborted txn)   ->  StoreUnavailable
    ├── IntegrityError, DataError,
    │   ProgrammingError, NotSupportedError     ->  StoreError (the request is wrong:
    │                                               retrying it will not help)
    └── a value no column can take (naive
        datetime, float for a Decimal)          ->  its ValueError / TypeError, unwrapped

Every database call in this package runs inside `guarded`, which also puts a
deadline on it. Store errors raised inside pass through unchanged.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
    StatementError,
)

from warden.ports import StoreError, StoreUnavailable


@asynccontextmanager
async def guarded(what: str, where: str, seconds: float) -> AsyncIterator[None]:
    """Run the body with a deadline; translate whatever the database raises."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except StoreError:
        raise
    except Exception as exc:
        error = translate(exc, what, where, seconds)
        if error is exc:
            raise
        if error is getattr(exc, "orig", None):
            raise error from None  # the caller's bad value, with its own traceback
        raise error from exc


_REFUSED = (IntegrityError, DataError, ProgrammingError, NotSupportedError)
_UNAVAILABLE = (OSError, DBAPIError, DisconnectionError)


def _asyncpg_unavailable(exc: Exception) -> bool:
    """asyncpg's own errors (SQLAlchemy does not wrap them all). Only a process that loaded
    asyncpg (it has a PostgreSQL store) can see one, so it is not imported for SQLite."""
    asyncpg = sys.modules.get("asyncpg")
    return asyncpg is not None and isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)


def translate(exc: Exception, what: str, where: str, seconds: float) -> Exception:
    """The Store error for `exc`; anything that is not a database error is returned as is."""
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"{what}: {where} did not answer within {seconds:g}s")
    if isinstance(exc, sqlite3.IntegrityError):  # raised raw by the SQLite write path (rawsqlite.py)
        return StoreError(f"{what}: {where} refused it: {_first_line(exc)}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"{what}: {where} is unavailable: {_first_line(exc)}")
    if isinstance(exc, _REFUSED):
        return StoreError(f"{what}: {where} refused it: {_first_line(exc)}")
    if isinstance(exc, _UNAVAILABLE) or _asyncpg_unavailable(exc):
        return StoreUnavailable(f"{what}: {where} is unavailable: {_first_line(exc)}")
    if isinstance(exc, StatementError) and isinstance(exc.orig, ValueError | TypeError):
        return exc.orig
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.strip().splitlines()[0]
