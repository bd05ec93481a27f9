"""Database URLs as users write them, and as warden uses them.

Users name the database (`sqlite:///data/warden.db`, `postgresql://u@host/db`);
the async driver is warden's business, so any driver they name is replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from warden.ports import StoreUnavailable

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"
_BACKENDS = {"sqlite": SQLITE_DRIVER, "postgresql": POSTGRES_DRIVER, "postgres": POSTGRES_DRIVER}
_HINT = "use sqlite:///path/to/warden.db or postgresql://user@host:5432/dbname"
_PASSWORD = re.compile(r"(://[^:/@]*):.*@")


def parse(url: str) -> URL:
    """The normalised URL object; raises ValueError for anything warden cannot use, and
    StoreUnavailable when a SQLite file's directory cannot be made."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {redact(url)!r}; {_HINT}") from exc
    backend = parsed.drivername.partition("+")[0]
    driver = _BACKENDS.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database scheme {parsed.drivername!r}; {_HINT}")
    parsed = parsed.set(drivername=driver)
    if driver == POSTGRES_DRIVER and "sslmode" in parsed.query:
        # libpq's name, in every managed PostgreSQL's connection string; asyncpg takes no `sslmode`
        # keyword (a TypeError once connecting) but the same modes as `ssl`
        mode = parsed.query["sslmode"]
        if not isinstance(mode, str) or "ssl" in parsed.query:
            raise ValueError(
                "sslmode is given more than once in the URL (ssl is its other name): give it once"
            )
        parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
    if driver == SQLITE_DRIVER:
        path = sqlite_path(parsed).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a directory warden may not write: not a bug
            raise StoreUnavailable(
                f"the directory {path.parent} of the SQLite database cannot be made:"
                f" {exc.strerror or type(exc).__name__}"
                + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path.parent) else "")
            ) from exc
        parsed = parsed.set(database=str(path))
    return parsed


def normalise(url: str) -> str:
    """The URL with warden's async driver; creates the parent directory of a SQLite file."""
    return parse(url).render_as_string(hide_password=False)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to log and display. A password holding a
    bare '@' ends, for the URL, at its first '@' and its tail is read as part of the host: the
    host shown is what follows the last '@', so none of the password is."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return _PASSWORD.sub(r"\1:***@", url)
    if parsed.host is not None and "@" in parsed.host:
        parsed = parsed.set(password="***", host=parsed.host.rpartition("@")[2])
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path:
    """The database file of a normalised SQLite URL."""
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise ValueError(f"SQLite needs a file path, not {url.database!r}; {_HINT}")
    return Path(url.database)


def is_sqlite(url: URL) -> bool:
    return url.drivername == SQLITE_DRIVER
