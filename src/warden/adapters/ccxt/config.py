"""Building the ccxt client: options, and pointing every URL at a local server.

With a `base_url`, *every* URL under `urls['api']` (spot, sapi, dapi, papi, the websocket
map and the ws-api included) and under `urls['test']` / `urls['demo']` gets the local
host, keeping its path: an unexpected code path then lands, logged, on the simulator
instead of the internet. The keys are mutated one by one (replacing `urls['api']`
wholesale would drop ccxt.pro's `ws` map). The websocket base becomes
`ws://host:port/ws`, from which ccxt derives `/market/ws/<n>`, `/public/ws/<n>` and
`/private/ws?listenKey=`.

ccxt picks Binance's *linear* error table only for URLs that start with
`https://fapi.binance.com/` (pitfall 2); against a local URL -2021, -4116, -4120, ...
would all be a bare ExchangeError. So for a local base URL the linear codes are merged
into the exact table, giving the same exceptions as production.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TIMEOUT_MS = 10_000

BASE_OPTIONS: dict[str, Any] = {
    "fetchCurrencies": False,  # pitfall 1: otherwise load_markets calls /sapi/v1/capital/config/getall
    "warnOnFetchOpenOrdersWithoutSymbol": False,
    "fetchOpenOrders": {"warnWithoutSymbol": False},
    "defaultType": "swap",
    "defaultSubType": "linear",
}


def client_config(
    *,
    api_key: str,
    api_secret: str,
    enable_rate_limit: bool,
    timeout_ms: int,
    options: dict[str, Any] | None,
    session: Any | None,
) -> dict[str, Any]:
    """The constructor dict for `ccxt.pro.binanceusdm`."""
    merged = dict(BASE_OPTIONS)
    merged.update(options or {})
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": api_secret,
        "enableRateLimit": enable_rate_limit,
        "timeout": timeout_ms,
        "options": merged,
    }
    if session is not None:
        config["session"] = session  # ccxt uses it for REST and websockets, and does not close it
    config["ssl_context"] = shared_ssl_context()
    return config


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The one TLS context every ccxt client of this process verifies with: the context ccxt
    would make for each client itself (certifi's CA file), made once. Loading the CA file costs
    ~30 ms of CPU, which ccxt spends on each client's first request: an engine taking 34
    accounts over spent a quarter of its takeover there."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _rehost(url: str, netloc: str, secure: bool) -> str:
    parts = urlsplit(url)
    websocket = parts.scheme in ("ws", "wss")
    scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def rewrite_urls(urls: dict[str, Any], netloc: str, *, secure: bool = False) -> int:
    """Give every URL string in `urls` (recursively) the host `netloc`; returns how many."""
    count = 0
    for key, value in urls.items():
        if isinstance(value, dict):
            count += rewrite_urls(value, netloc, secure=secure)
        elif isinstance(value, str) and "://" in value:
            urls[key] = _rehost(value, netloc, secure)
            count += 1
    return count


def point_at(client: Any, base_url: str) -> None:
    """Send every request of `client` to `base_url` (http://host:port) and use linear error codes."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must look like http://host:port, not {base_url!r}")
    netloc, secure = parts.netloc, parts.scheme == "https"
    for section in ("api", "test", "demo"):
        table = client.urls.get(section)
        if isinstance(table, dict):
            rewrite_urls(table, netloc, secure=secure)
    client.urls["api"]["ws"]["linear"] = f"{'wss' if secure else 'ws'}://{netloc}/ws"
    client.exceptions["exact"].update(client.exceptions["linear"]["exact"])


BYBIT_OPTIONS: dict[str, Any] = {
    "defaultType": "swap",
    "defaultSubType": "linear",
    "defaultSettle": "USDT",
    "fetchMarkets": {"types": ["linear"]},  # not spot, inverse and six option chains
    # a unified trading account: without these ccxt asks /v5/user/query-api and /v5/account/info
    # before its first private call (and needs a key allowed to read them)
    "enableUnifiedAccount": True,
    "enableUnifiedMargin": False,
}

BYBIT_URL_SECTIONS = ("api", "test", "demotrading")


def bybit_config(
    *,
    api_key: str,
    api_secret: str,
    enable_rate_limit: bool,
    timeout_ms: int,
    options: dict[str, Any] | None,
    session: Any | None,
    keepalive_ms: int,
) -> dict[str, Any]:
    """The constructor dict for `ccxt.pro.bybit`; `keepalive_ms`: ping interval of its sockets
    (ccxt declares a socket dead after two intervals without a pong)."""
    merged = dict(BYBIT_OPTIONS)
    merged.update(options or {})
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": api_secret,
        "enableRateLimit": enable_rate_limit,
        "timeout": timeout_ms,
        "options": merged,
        "streaming": {"keepAlive": keepalive_ms},
    }
    if session is not None:
        config["session"] = session
    config["ssl_context"] = shared_ssl_context()
    return config


def point_bybit_at(client: Any, base_url: str) -> None:
    """Send every request of a ccxt bybit `client` to `base_url` (http://host:port).

    Bybit's URLs are templates (`https://api.{hostname}`, `wss://stream.{hostname}/v5/private`)
    plus a few literal hosts (`wss://stream.bybit.com/v5/trade`): every one of them, in the
    api, test (testnet) and demotrading tables, gets the local host with its path kept, and
    `hostname` itself becomes the local host so no template can resolve elsewhere.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must look like http://host:port, not {base_url!r}")
    netloc, secure = parts.netloc, parts.scheme == "https"
    for section in BYBIT_URL_SECTIONS:
        table = client.urls.get(section)
        if isinstance(table, dict):
            rewrite_urls(table, netloc, secure=secure)
    client.hostname = netloc


def all_urls(urls: dict[str, Any]) -> list[str]:
    """Every URL string in `urls`, recursively (for checks that nothing points elsewhere)."""
    found: list[str] = []
    for value in urls.values():
        if isinstance(value, dict):
            found.extend(all_urls(value))
        elif isinstance(value, str) and "://" in value:
            found.append(value)
    return found
