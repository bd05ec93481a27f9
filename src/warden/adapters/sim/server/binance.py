"""The Binance USD-M face: its route table, request authentication and websocket paths.

Unmodified ccxt (`ccxt.pro.binanceusdm`, 4.5.90) can trade against it once its URLs point
here (see `warden.adapters.ccxt.CcxtExchange.create(base_url=...)`). It speaks the subset
of the protocol listed in section 7.1 of the Binance reference: public market data, signed
trading (market orders on `/fapi/v1/order`, STOP_MARKET / TAKE_PROFIT_MARKET only on
`/fapi/v1/algoOrder`), the account, listen keys, `/market/ws/{n}` + `/public/ws/{n}` mark
price streams and the `/private/ws?listenKey=` user-data stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from warden.adapters.sim.server import market, rest, trading, ws
from warden.adapters.sim.server.auth import check_api_key, total_params, verify_signed
from warden.adapters.sim.server.binance_venue import BinanceVenue
from warden.adapters.sim.server.params import Params

Handler = Callable[[BinanceVenue, Params], Awaitable[Any]]
SocketHandler = Callable[[web.Request, BinanceVenue], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Auth(Enum):
    PUBLIC = "public"
    API_KEY = "api-key"  # listenKey: the key header, no signature
    SIGNED = "signed"


FAPI: list[tuple[str, str, Handler, Auth]] = [
    ("GET", "/fapi/v1/exchangeInfo", rest.exchange_info, Auth.PUBLIC),
    ("GET", "/fapi/v1/time", rest.server_time, Auth.PUBLIC),
    ("GET", "/fapi/v1/ping", rest.ping, Auth.PUBLIC),
    ("GET", "/fapi/v1/premiumIndex", rest.premium_index, Auth.PUBLIC),
    ("GET", "/fapi/v1/ticker/24hr", rest.ticker_24hr, Auth.PUBLIC),
    ("GET", "/fapi/v3/account", rest.account, Auth.SIGNED),
    ("GET", "/fapi/v2/account", rest.account, Auth.SIGNED),
    ("GET", "/fapi/v3/positionRisk", rest.position_risk, Auth.SIGNED),
    ("GET", "/fapi/v2/positionRisk", rest.position_risk_v2, Auth.SIGNED),
    ("GET", "/fapi/v1/leverageBracket", rest.leverage_bracket, Auth.SIGNED),
    ("POST", "/fapi/v1/leverage", rest.set_leverage, Auth.SIGNED),
    ("POST", "/fapi/v1/marginType", rest.set_margin_type, Auth.SIGNED),
    ("GET", "/fapi/v1/symbolConfig", rest.symbol_config, Auth.SIGNED),
    ("GET", "/fapi/v1/positionSide/dual", rest.get_position_mode, Auth.SIGNED),
    ("POST", "/fapi/v1/positionSide/dual", rest.set_position_mode, Auth.SIGNED),
    ("POST", "/fapi/v1/order", trading.new_order, Auth.SIGNED),
    ("GET", "/fapi/v1/order", trading.query_order, Auth.SIGNED),
    ("DELETE", "/fapi/v1/order", trading.cancel_order, Auth.SIGNED),
    ("GET", "/fapi/v1/openOrders", trading.open_orders, Auth.SIGNED),
    ("GET", "/fapi/v1/allOrders", trading.all_orders, Auth.SIGNED),
    ("DELETE", "/fapi/v1/allOpenOrders", trading.cancel_all_orders, Auth.SIGNED),
    ("POST", "/fapi/v1/algoOrder", trading.new_algo_order, Auth.SIGNED),
    ("GET", "/fapi/v1/algoOrder", trading.query_algo_order, Auth.SIGNED),
    ("DELETE", "/fapi/v1/algoOrder", trading.cancel_algo_order, Auth.SIGNED),
    ("GET", "/fapi/v1/openAlgoOrders", trading.open_algo_orders, Auth.SIGNED),
    ("GET", "/fapi/v1/allAlgoOrders", trading.all_algo_orders, Auth.SIGNED),
    ("DELETE", "/fapi/v1/algoOpenOrders", trading.cancel_all_algo_orders, Auth.SIGNED),
    ("GET", "/fapi/v1/userTrades", trading.user_trades, Auth.SIGNED),
    # market data and discovery for any ccxt binance / binanceusdm bot (market.py)
    ("GET", "/fapi/v1/depth", market.depth, Auth.PUBLIC),
    ("GET", "/fapi/v1/ticker/bookTicker", market.book_ticker, Auth.PUBLIC),
    ("GET", "/fapi/v1/klines", market.klines, Auth.PUBLIC),
    ("GET", "/fapi/v1/continuousKlines", market.klines, Auth.PUBLIC),
    ("GET", "/fapi/v1/markPriceKlines", market.mark_price_klines, Auth.PUBLIC),
    ("GET", "/fapi/v1/indexPriceKlines", market.index_price_klines, Auth.PUBLIC),
    ("GET", "/fapi/v1/premiumIndexKlines", market.premium_index_klines, Auth.PUBLIC),
    ("GET", "/fapi/v1/fundingRate", market.funding_rate, Auth.PUBLIC),
    ("GET", "/fapi/v1/income", market.income, Auth.SIGNED),
    ("GET", "/fapi/v1/multiAssetsMargin", market.multi_assets_margin, Auth.SIGNED),
    ("GET", "/api/v3/exchangeInfo", market.spot_exchange_info, Auth.PUBLIC),
    ("GET", "/dapi/v1/exchangeInfo", market.coin_m_exchange_info, Auth.PUBLIC),
    ("GET", "/sapi/v1/capital/config/getall", market.nothing, Auth.SIGNED),
    ("GET", "/sapi/v1/margin/allPairs", market.nothing, Auth.API_KEY),
    ("GET", "/sapi/v1/margin/isolated/allPairs", market.nothing, Auth.SIGNED),
    ("POST", "/fapi/v1/listenKey", rest.new_listen_key, Auth.API_KEY),
    ("PUT", "/fapi/v1/listenKey", rest.keep_listen_key, Auth.API_KEY),
    ("DELETE", "/fapi/v1/listenKey", rest.close_listen_key, Auth.API_KEY),
]

SOCKETS: list[tuple[str, SocketHandler]] = [
    ("/market/ws/{n}", ws.market_socket),
    ("/market/ws", ws.market_socket),
    ("/public/ws/{n}", ws.market_socket),
    ("/public/ws", ws.market_socket),
    ("/private/ws", ws.private_socket),
]


def _endpoint(venue: BinanceVenue, handler: Handler, auth: Auth) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        payload = total_params(request.rel_url.raw_query_string, await request.text())
        if auth is Auth.PUBLIC:
            params = dict(parse_qsl(payload, keep_blank_values=True))
        else:
            check_api_key(request, venue.api_key)
            if auth is Auth.API_KEY:
                params = dict(parse_qsl(payload, keep_blank_values=True))
            else:
                params = verify_signed(payload, venue.api_secret, venue.now_ms)
        return web.json_response(await handler(venue, params))

    return endpoint


def _socket(venue: BinanceVenue, handler: SocketHandler) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        return await handler(request, venue)

    return endpoint


def install(app: web.Application, venue: BinanceVenue) -> None:
    """Add the Binance routes and websocket paths to `app`."""
    for method, path, handler, auth in FAPI:
        app.router.add_route(method, path, _endpoint(venue, handler, auth))
    for path, socket_handler in SOCKETS:
        app.router.add_get(path, _socket(venue, socket_handler))
