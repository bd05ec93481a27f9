"""Alert, Telegram and risk-limit settings: TOML tables, env JSON and lists, and refusals naming them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from warden.config import ConfigError, Settings
from warden.domain.alerts import AlertKind, Route


def test_alert_routes_from_a_toml_table_and_from_env_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[alert_routes] in the file and WARDEN_ALERT_ROUTES as JSON both set per-kind routes."""
    config = tmp_path / "warden.toml"
    config.write_text('[alert_routes]\ntp_filled = "silent"\nposition_closed = "off"\n')
    routes = Settings.load(config).routes()
    assert routes.route(AlertKind.TP_FILLED) is Route.SILENT
    assert routes.route(AlertKind.POSITION_CLOSED) is Route.OFF
    assert routes.route(AlertKind.STOP_FILLED) is Route.ON
    monkeypatch.setenv("WARDEN_ALERT_ROUTES", '{"runner_armed": "silent"}')
    assert Settings.load().routes().route(AlertKind.RUNNER_ARMED) is Route.SILENT


def test_a_critical_kind_turned_off_is_refused_naming_it() -> None:
    """Critical kinds cannot be off: the error names alert_routes and the kind."""
    with pytest.raises(ConfigError) as info:
        Settings.load(alert_routes={"protection_failed": "off"})
    assert info.value.field == "alert_routes"
    assert "protection_failed" in info.value.message and "critical" in info.value.message


def test_chat_ids_from_env_comma_separated_or_toml_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WARDEN_TELEGRAM_CHAT_IDS is comma-separated; the file may give a list; garbage is refused."""
    monkeypatch.setenv("WARDEN_TELEGRAM_CHAT_IDS", "111, -100222")
    assert Settings.load().chat_ids == (111, -100222)
    monkeypatch.delenv("WARDEN_TELEGRAM_CHAT_IDS")
    config = tmp_path / "warden.toml"
    config.write_text("telegram_chat_ids = [5, 6]\n")
    assert Settings.load(config).chat_ids == (5, 6)
    with pytest.raises(ConfigError) as info:
        Settings.load(telegram_chat_ids="me")
    assert info.value.field == "telegram_chat_ids"


def test_user_ids_are_positive_numbers_and_unset_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WARDEN_TELEGRAM_USER_IDS is comma-separated (the file may give a list); a group's negative
    id, a name or a bot token is refused, the token not shown; unset, no user is singled out."""
    assert Settings.load().user_ids == ()
    monkeypatch.setenv("WARDEN_TELEGRAM_USER_IDS", "111, 222")
    assert Settings.load().user_ids == (111, 222)
    monkeypatch.delenv("WARDEN_TELEGRAM_USER_IDS")
    config = tmp_path / "warden.toml"
    config.write_text("telegram_user_ids = [5]\n")
    assert Settings.load(config).user_ids == (5,)
    for wrong in ("-100222", "me", "123456:AAH-SECRETbotTOKEN"):
        with pytest.raises(ConfigError) as info:
            Settings.load(telegram_user_ids=wrong)
        assert info.value.field == "telegram_user_ids"
        assert "SECRET" not in info.value.message


def test_limits_default_to_the_fat_finger_guard_only() -> None:
    """max_position_usd is 10,000 by default; the other limits are unset."""
    limits = Settings.load().limits()
    assert limits.max_position_usd == Decimal(10_000)
    assert (limits.max_open_positions, limits.max_total_usd, limits.max_daily_loss_usd) == (None, None, None)


def test_the_telegram_token_is_secret() -> None:
    """The bot token never shows in repr or the redacted settings."""
    s = Settings.load(telegram_token="123:very-secret-token")
    assert "very-secret-token" not in repr(s)
    assert "very-secret-token" not in str(s.redacted())


def test_leverage_and_margin_per_symbol_from_toml_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """leverage / margin_mode apply to every symbol; [symbols.SOL] overrides them for SOL; bad values
    are refused naming the setting."""
    from warden.domain.margin import MarginMode, SymbolConfig
    from warden.domain.values import Symbol

    config = tmp_path / "warden.toml"
    config.write_text('leverage = 5\nmargin_mode = "isolated"\n[symbols.SOL]\nleverage = 3\n')
    plan = Settings.load(config).margin_plan()
    assert plan.for_symbol(Symbol("SOL/USDT:USDT")) == SymbolConfig(3, MarginMode.ISOLATED)
    assert plan.for_symbol(Symbol("BTC/USDT:USDT")) == SymbolConfig(5, MarginMode.ISOLATED)
    assert Settings.load().margin_plan().empty
    monkeypatch.setenv("WARDEN_SYMBOLS", '{"btc": {"margin_mode": "cross"}}')
    assert Settings.load().margin_plan().for_symbol(Symbol("BTC/USDT:USDT")).margin_mode is MarginMode.CROSS
    with pytest.raises(ConfigError) as info:
        Settings.load(leverage=500)
    assert info.value.field == "leverage"
    monkeypatch.setenv("WARDEN_SYMBOLS", '{"SOL": {"margin_mode": "hedged"}}')
    with pytest.raises(ConfigError) as info:
        Settings.load()
    assert info.value.field.startswith("symbols")
