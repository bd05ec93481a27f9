"""The Telegram tests: a fake Bot API server on 127.0.0.1 and a warden running beside it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.telegram.fakebot import TOKEN, FakeBotApi
from warden.adapters.telegram import BADGES
from warden.config import Settings

CHAT = 4242
STRANGER = 666


def answers(bot: FakeBotApi) -> list[str]:
    """What the bot said to commands in CHAT: not the alerts (each starts with its badge), which
    can name the same accounts and words (alt's failure to start, main's `kill_on`)."""
    return [t for t in bot.texts(CHAT) if not t.startswith(tuple(BADGES.values()))]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WARDEN_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("WARDEN_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    server = await FakeBotApi().start()
    yield server
    await server.stop()


def bot_settings(tmp_path: Path, api: FakeBotApi | None, **overrides: Any) -> Settings:
    telegram: dict[str, Any] = {}
    if api is not None:
        telegram = {"telegram_token": TOKEN, "telegram_chat_ids": str(CHAT), "telegram_api_url": api.url}
    return Settings.load(
        db=f"sqlite:///{tmp_path}/w.db",
        exchange="sim",
        data_dir=tmp_path / "data",
        api_token="test-token-0123456789",
        **{**telegram, **overrides},
    )
