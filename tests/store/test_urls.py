"""User database URLs: the driver is chosen by warden, passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

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
