"""Fixtures for many accounts in one process: settings with [accounts.*] tables on the simulator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from warden.config import Settings

TOKEN = "test-token-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WARDEN_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("WARDEN_"):
            monkeypatch.delenv(name)


def fleet_settings(tmp_path: Path, db: str, tables: str, extra: str = "") -> Settings:
    """Settings from a TOML file with `tables` ([accounts.*]) over one database."""
    path = tmp_path / "warden.toml"
    path.write_text(
        f'db = "{db}"\ndata_dir = "{tmp_path / "data"}"\napi_token = "{TOKEN}"\n{extra}\n{tables}'
    )
    return Settings.load(path)


TWO_SIM = """
[accounts.main]
exchange = "sim"
sim_seed = 1

[accounts.alt]
exchange = "sim"
sim_seed = 2
max_open_positions = 1
"""


def two(tmp_path: Path, db: str, **_: Any) -> Settings:
    return fleet_settings(tmp_path, db, TWO_SIM)


def first_open_times_out(monkeypatch: pytest.MonkeyPatch, account: str) -> list[str]:
    """The database does not answer `account`'s first open (a timeout under load, a blip); every
    later open is the real one. The list returned names the account once it has failed."""
    import warden.bootstrap
    from warden.ports import StoreUnavailable

    real_open = warden.bootstrap.open_store
    failed: list[str] = []

    async def open_store(url: str, **kwargs: Any) -> Any:
        if kwargs.get("account") == account and not failed:
            failed.append(account)
            raise StoreUnavailable(f"read installation id: {url} did not answer within 5s")
        return await real_open(url, **kwargs)

    monkeypatch.setattr(warden.bootstrap, "open_store", open_store)
    return failed
