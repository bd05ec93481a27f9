"""Pointing unmodified ccxt at a local server: every URL, the websocket base, the error table."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import ccxt.pro

from warden.adapters.ccxt import CcxtExchange, all_urls
from warden.adapters.ccxt.config import bybit_config, client_config, rewrite_urls


def test_every_url_key_points_at_the_local_host() -> None:
    """spot, sapi, dapi, papi, ws-api and the test/demo tables too: nothing can reach the internet."""
    exchange = CcxtExchange.create(api_key="k", api_secret="s", base_url="http://127.0.0.1:8765")
    urls = exchange.client.urls
    everything = all_urls(urls["api"]) + all_urls(urls["test"]) + all_urls(urls["demo"])
    assert len(everything) > 30
    assert {urlsplit(u).netloc for u in everything} == {"127.0.0.1:8765"}
    assert urls["api"]["sapi"] == "http://127.0.0.1:8765/sapi/v1"
    assert urls["api"]["fapiPrivateV3"] == "http://127.0.0.1:8765/fapi/v3"
    assert urls["api"]["ws"]["linear"] == "ws://127.0.0.1:8765/ws"
    assert urls["api"]["ws"]["ws-api"]["linear"] == "ws://127.0.0.1:8765/ws-fapi/v1"


def test_local_url_gets_the_linear_error_codes() -> None:
    """Pitfall 2: against a local URL -2021/-4116/-4120 would be bare ExchangeErrors without the merge."""
    exchange = CcxtExchange.create(api_key="k", api_secret="s", base_url="http://127.0.0.1:8765")
    exact = exchange.client.exceptions["exact"]
    assert exact["-2021"].__name__ == "OrderImmediatelyFillable"
    assert exact["-4116"].__name__ == "InvalidOrder"
    assert exact["-4120"].__name__ == "InvalidOrder"
    assert exact["-2019"].__name__ == "InsufficientFunds"


def test_without_a_base_url_the_real_exchange_is_untouched() -> None:
    """Production: Binance's own URLs, fetchCurrencies off (pitfall 1), rate limiting on."""
    exchange = CcxtExchange.create(api_key="k", api_secret="s")
    client = exchange.client
    assert client.urls["api"]["fapiPrivate"] == "https://fapi.binance.com/fapi/v1"
    assert client.urls["api"]["ws"]["linear"] == "wss://fstream.binance.com/ws"
    assert client.options["fetchCurrencies"] is False
    assert client.enableRateLimit is True
    assert "-2021" not in client.exceptions["exact"]


def test_an_https_base_url_keeps_tls() -> None:
    urls = {"a": "https://fapi.binance.com/fapi/v1", "ws": {"linear": "wss://fstream.binance.com/ws"}}
    assert rewrite_urls(urls, "sim.internal:443", secure=True) == 2
    assert urls == {"a": "https://sim.internal:443/fapi/v1", "ws": {"linear": "wss://sim.internal:443/ws"}}


def test_every_client_verifies_tls_with_one_context_made_once() -> None:
    """Each ccxt client would load the CA file into a context of its own on its first request
    (~30 ms of CPU each: a quarter of an engine's takeover of 34 accounts); they share one,
    made as ccxt makes it (certifi's CA file, verifying)."""
    common: dict[str, Any] = {
        "api_key": "k",
        "api_secret": "s",
        "enable_rate_limit": False,
        "timeout_ms": 1,
        "options": None,
        "session": None,
    }
    configs = [client_config(**common), bybit_config(**common, keepalive_ms=1)]
    clients = [ccxt.pro.binanceusdm(configs[0]), ccxt.pro.binanceusdm(configs[0]), ccxt.pro.bybit(configs[1])]
    contexts = {id(c.ssl_context) for c in clients}
    assert len(contexts) == 1
    context = clients[0].ssl_context
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED
    assert context.get_ca_certs(), "no CA certificates loaded"
