"""The Bybit v5 face (category linear perpetuals) of the simulated exchange server.

Unmodified ccxt (`ccxt.pro.bybit`, 4.5.90) trades against it once every URL points here
(see `warden.adapters.ccxt.CcxtBybitExchange.create(base_url=...)`). Routes (facts and
pitfalls in docs/reference/bybit-v5.md):

    public   GET  /v5/market/time, /v5/market/instruments-info, /v5/market/tickers
    signed   GET  /v5/asset/coin/query-info, /v5/user/query-api, /v5/account/info,
                  /v5/account/wallet-balance, /v5/position/list, /v5/order/realtime,
                  /v5/order/history, /v5/execution/list
             POST /v5/account/set-margin-mode, /v5/position/set-leverage,
                  /v5/position/switch-mode, /v5/order/create, /v5/order/amend,
                  /v5/order/cancel, /v5/order/cancel-all
    sockets  /v5/public/linear (tickers.<SYMBOL>), /v5/private (auth; order, execution,
             position, wallet)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from warden.adapters.sim.server.bybit import rest, trading, ws
from warden.adapters.sim.server.bybit.auth import BybitError, envelope, params_error, verify
from warden.adapters.sim.server.bybit.params import Params
from warden.adapters.sim.server.bybit.venue import BybitVenue

Handler = Callable[[BybitVenue, Params], Awaitable[Any]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC, SIGNED = False, True

ROUTES: list[tuple[str, str, Handler, bool]] = [
    ("GET", "/v5/market/time", rest.server_time, PUBLIC),
    ("GET", "/v5/market/instruments-info", rest.instruments_info, PUBLIC),
    ("GET", "/v5/market/tickers", rest.tickers, PUBLIC),
    ("GET", "/v5/asset/coin/query-info", rest.coin_info, SIGNED),
    ("GET", "/v5/user/query-api", rest.query_api, SIGNED),
    ("GET", "/v5/account/info", rest.account_info, SIGNED),
    ("POST", "/v5/account/set-margin-mode", rest.set_margin_mode, SIGNED),
    ("GET", "/v5/account/wallet-balance", rest.wallet_balance, SIGNED),
    ("GET", "/v5/position/list", rest.position_list, SIGNED),
    ("POST", "/v5/position/set-leverage", rest.set_leverage, SIGNED),
    ("POST", "/v5/position/switch-mode", rest.switch_mode, SIGNED),
    ("POST", "/v5/order/create", trading.create_order, SIGNED),
    ("POST", "/v5/order/amend", trading.amend_order, SIGNED),
    ("POST", "/v5/order/cancel", trading.cancel_order, SIGNED),
    ("POST", "/v5/order/cancel-all", trading.cancel_all, SIGNED),
    ("GET", "/v5/order/realtime", trading.realtime, SIGNED),
    ("GET", "/v5/order/history", trading.history, SIGNED),
    ("GET", "/v5/execution/list", trading.executions, SIGNED),
]


def _params(request: web.Request, body: str) -> Params:
    if request.method == "GET":
        return dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
    if not body:
        return {}
    import json

    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise params_error("the body must be a JSON object") from exc
    if not isinstance(parsed, dict):
        raise params_error("the body must be a JSON object")
    return parsed


def _endpoint(venue: BybitVenue, handler: Handler, signed: bool) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        if signed:
            payload = request.rel_url.raw_query_string if request.method == "GET" else body
            verify(request.headers, payload, venue.api_key, venue.api_secret, venue.now_ms())
        result = await handler(venue, _params(request, body))
        return web.json_response(envelope(result, venue.now_ms()))

    return endpoint


def _socket(
    venue: BybitVenue, handler: Callable[[web.Request, BybitVenue], Awaitable[web.StreamResponse]]
) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        return await handler(request, venue)

    return endpoint


def install(app: web.Application, venue: BybitVenue) -> None:
    """Add the Bybit routes and websocket paths to `app`."""
    for method, path, handler, signed in ROUTES:
        app.router.add_route(method, path, _endpoint(venue, handler, signed))
    app.router.add_get("/v5/public/linear", _socket(venue, ws.public_socket))
    app.router.add_get("/v5/private", _socket(venue, ws.private_socket))


__all__ = ["ROUTES", "BybitError", "BybitVenue", "install"]
