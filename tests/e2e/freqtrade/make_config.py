"""Write a freqtrade config that points ccxt's `binance` class at a local simulator.

Runs in freqtrade's own environment (its ccxt lists the URL keys): every URL of the api, test
and demo tables gets the simulator's host, path kept — nothing but URL overrides on ccxt's
side. Usage: python make_config.py SIM_URL API_PORT OUT_FILE
"""

import json
import sys
from urllib.parse import urlsplit, urlunsplit

import ccxt.pro


def rehost(urls, netloc):
    done = {}
    for key, value in urls.items():
        if isinstance(value, dict):
            done[key] = rehost(value, netloc)
        elif isinstance(value, str) and "://" in value:
            parts = urlsplit(value)
            scheme = "ws" if parts.scheme in ("ws", "wss") else "http"
            done[key] = urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))
        else:
            done[key] = value
    return done


def main():
    sim_url, api_port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    netloc = urlsplit(sim_url).netloc
    described = ccxt.pro.binance().urls
    urls = {section: rehost(described[section], netloc) for section in ("api", "test", "demo")}
    ccxt_config = {"urls": urls, "enableRateLimit": False}
    config = {
        "trading_mode": "futures",
        "margin_mode": "isolated",
        "max_open_trades": 1,
        "stake_currency": "USDT",
        "stake_amount": 200,
        "dry_run": False,
        "timeframe": "5m",
        "exchange": {
            "name": "binance",
            "key": "sim-key",
            "secret": "sim-secret",
            "ccxt_config": ccxt_config,
            "ccxt_async_config": ccxt_config,
            "pair_whitelist": ["BTC/USDT:USDT"],
            "enable_ws": False,
        },
        "entry_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1},
        "exit_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1},
        "pairlists": [{"method": "StaticPairList"}],
        "api_server": {
            "enabled": True,
            "listen_ip_address": "127.0.0.1",
            "listen_port": api_port,
            "username": "warden",
            "password": "warden",
            "jwt_secret_key": "a-local-simulator-jwt-secret-0123456789",
            "ws_token": "a-local-simulator-ws-token",
        },
        "force_entry_enable": True,
        "internals": {"process_throttle_secs": 1, "heartbeat_interval": 60},
        "bot_name": "warden-sim-e2e",
        "initial_state": "running",
    }
    with open(out, "w") as handle:
        json.dump(config, handle, indent=1)


if __name__ == "__main__":
    main()
