"""User database URLs: the driver is chosen by warden, passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.adapters.db.store import open_store
from warden.adapters.db.urls import normalise, redact


def test_sqlite_gets_the_async_driver_and_its_directory(tmp_path: Path) -> None:
    """sqlite:///path becomes sqlite+aiosqlite:///path and the parent directory is created."""
    db = tmp_path / "deep" / "er" / "warden.db"
    assert normalise(f"sqlite:///{db}") == f"sqlite+aiosqlite:///{db}"
    assert db.parent.is_dir()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@db.example:5433/warden",
        "postgres://u@db.example:5433/warden",
        "postgresql+psycopg2://u@db.example:5433/warden",
    ],
)
def test_postgres_urls_get_asyncpg(url: str) -> None:
    """postgresql://, postgres:// and any other driver become postgresql+asyncpg://."""
    assert normalise(url) == "postgresql+asyncpg://u@db.example:5433/warden"


def test_normalise_keeps_the_password_for_connecting() -> None:
    """The normalised URL still carries the password (it is for the driver, not for display)."""
    assert normalise("postgres://u:s3cr%40t@h/db") == "postgresql+asyncpg://u:s3cr%40t@h/db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("sqlite:///data/warden.db", "sqlite:///data/warden.db"),
        ("not a url://u:s3cret@h", "not a url://u:***@h"),
    ],
)
def test_redact_hides_passwords(url: str, shown: str) -> None:
    """redact replaces a password with *** and leaves the rest readable, even for broken URLs."""
    assert redact(url) == shown


@pytest.mark.parametrize("url", ["mysql://u@h/db", "mongodb://h/db", "./data/warden.db", "sqlite://"])
def test_unsupported_urls_are_refused_with_a_hint(url: str) -> None:
    """Other databases, bare paths and in-memory SQLite are a ValueError that shows a usable URL."""
    with pytest.raises(ValueError, match=r"sqlite:///path/to/warden\.db"):
        normalise(url)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_sslmode_is_given_to_the_driver_as_ssl(mode: str) -> None:
    """`?sslmode=require`, as every managed PostgreSQL writes its connection string: asyncpg takes
    no `sslmode` (SQLAlchemy handed it over as one, and warden failed with `TypeError: connect() got
    an unexpected keyword argument 'sslmode'`); it takes the same modes as `ssl`."""
    url = f"postgresql://u:pw@db.example:5432/warden?sslmode={mode}"
    assert normalise(url) == f"postgresql+asyncpg://u:pw@db.example:5432/warden?ssl={mode}"


@pytest.mark.postgres
async def test_a_store_opens_on_a_url_with_sslmode(pg_url: str) -> None:
    """The engine's database on a URL with sslmode (this server takes no TLS: disable and prefer)."""
    for mode in ("disable", "prefer"):
        store = await open_store(f"{pg_url}?sslmode={mode}", exchange="sim")
        try:
            assert await store.list_positions() == []
        finally:
            await store.close()
