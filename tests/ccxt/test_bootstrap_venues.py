"""`warden run --exchange binanceusdm|bybit`: the adapter bootstrap builds from the settings."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange, all_urls
from warden.adapters.clock import SystemClock
from warden.bootstrap import build_exchange
from warden.config import ConfigError, Settings

LOCAL = "http://127.0.0.1:8765"


async def test_bybit_with_an_exchange_url_points_everything_there() -> None:
    settings = Settings.load(
        exchange="bybit", exchange_url=LOCAL, api_key="k", api_secret="s", leverage=7, margin_mode="isolated"
    )
    exchange, sim = build_exchange(settings, SystemClock())
    try:
        assert sim is None
        assert isinstance(exchange, CcxtBybitExchange)
        assert (exchange.leverage, exchange.margin_mode) == (7, "isolated")
        urls = exchange.client.urls
        every = all_urls(urls["api"]) + all_urls(urls["test"]) + all_urls(urls["demotrading"])
        assert {urlsplit(u).netloc for u in every} == {"127.0.0.1:8765"}
        assert exchange.client.enableRateLimit is False  # a local simulator: nothing to pace
    finally:
        await exchange.close()


async def test_testnet_selects_each_venues_test_environment() -> None:
    bybit, _ = build_exchange(
        Settings.load(exchange="bybit", testnet=True, api_key="k", api_secret="s"), SystemClock()
    )
    binance, _ = build_exchange(
        Settings.load(exchange="binanceusdm", testnet=True, api_key="k", api_secret="s"), SystemClock()
    )
    try:
        assert isinstance(bybit, CcxtBybitExchange) and isinstance(binance, CcxtExchange)
        assert (
            bybit.client.implode_hostname(bybit.client.urls["api"]["private"])
            == "https://api-testnet.bybit.com"
        )
        assert binance.client.urls["api"]["fapiPrivate"] == "https://demo-fapi.binance.com/fapi/v1"
        assert bybit.client.enableRateLimit is True
    finally:
        await bybit.close()
        await binance.close()


def test_keys_are_required_and_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="bybit needs WARDEN_API_KEY"):
        build_exchange(Settings.load(exchange="bybit"), SystemClock())
    for bad, field in (({"margin_mode": "portfolio"}, "margin_mode"), ({"leverage": 0}, "leverage")):
        with pytest.raises(ConfigError) as info:
            Settings.load(**bad)
        assert info.value.field == field
