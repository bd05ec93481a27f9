"""Assembling the server: the route table, authentication, logging, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from warden.adapters.sim.core import SimCore
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.faults import SimFaults
from warden.adapters.sim.feed import SimPriceFeed
from warden.adapters.sim.server import control, rest, trading, ws
from warden.adapters.sim.server.auth import BinanceError, check_api_key, total_params, verify_signed
from warden.adapters.sim.server.params import Params
from warden.adapters.sim.server.venue import SimVenue
from warden.adapters.sim.stream import Sleep

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "sim-key"
DEFAULT_API_SECRET = "sim-secret"  # a documented test credential of the local simulator

VENUE = web.AppKey("venue", SimVenue)
Handler = Callable[[SimVenue, Params], Awaitable[Any]]
ControlHandler = Callable[[web.Request, SimVenue], Awaitable[Any]]


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
    ("GET", "/fapi/v2/positionRisk", rest.position_risk, Auth.SIGNED),
    ("GET", "/fapi/v1/leverageBracket", rest.leverage_bracket, Auth.SIGNED),
    ("POST", "/fapi/v1/leverage", rest.set_leverage, Auth.SIGNED),
    ("POST", "/fapi/v1/marginType", rest.set_margin_type, Auth.SIGNED),
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
    ("POST", "/fapi/v1/listenKey", rest.new_listen_key, Auth.API_KEY),
    ("PUT", "/fapi/v1/listenKey", rest.keep_listen_key, Auth.API_KEY),
    ("DELETE", "/fapi/v1/listenKey", rest.close_listen_key, Auth.API_KEY),
]

CONTROL: list[tuple[str, str, ControlHandler]] = [
    ("POST", "/sim/price", control.set_price),
    ("POST", "/sim/external-order", control.external_order),
    ("POST", "/sim/cancel", control.cancel),
    ("POST", "/sim/faults", control.set_faults),
    ("GET", "/sim/faults", control.get_faults),
    ("POST", "/sim/disconnect", control.disconnect),
    ("POST", "/sim/expire-listen-key", control.expire_listen_key),
    ("GET", "/sim/state", control.state),
    ("GET", "/sim/requests", control.requests),
]

SOCKETS: list[tuple[str, ControlHandler]] = [
    ("/market/ws/{n}", ws.market_socket),
    ("/market/ws", ws.market_socket),
    ("/public/ws/{n}", ws.market_socket),
    ("/public/ws", ws.market_socket),
    ("/private/ws", ws.private_socket),
    ("/ws/{listen_key}", ws.private_socket),
]


def _fapi(handler: Handler, auth: Auth) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        venue = request.app[VENUE]
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


def _plain(handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        result = await handler(request, request.app[VENUE])
        return result if isinstance(result, web.StreamResponse) else web.json_response(result)

    return endpoint


@web.middleware
async def _errors_and_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    venue = request.app[VENUE]
    websocket_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    body = "" if websocket_upgrade or not request.can_read_body else await request.text()
    query = total_params(request.rel_url.raw_query_string, body)  # what was sent, as sent
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    kind = "WS" if websocket else request.method
    if websocket:  # logged when it connects: the handler returns only when the socket closes
        venue.log(kind, request.path, query, 101, "CONNECT")
    try:
        response = await handler(request)
    except BinanceError as exc:
        venue.log(kind, request.path, query, exc.status, f"{exc.code} {exc.msg}")
        return exc.response()
    except web.HTTPNotFound:
        venue.log(kind, request.path, query, 404, "UNHANDLED")
        log.warning("sim server: unhandled %s %s", request.method, request.path_qs)
        return web.json_response({"code": -5000, "msg": f"Path {request.path} not found"}, status=404)
    except web.HTTPException as exc:
        venue.log(kind, request.path, query, exc.status)
        raise
    except Exception:
        log.exception("sim server: %s %s failed", request.method, request.path)
        venue.log(kind, request.path, query, 500, "internal error")
        return web.json_response(
            {"code": -1000, "msg": "An unknown error occurred while processing the request."}, status=500
        )
    if not websocket or response.status != 101:
        venue.log(kind, request.path, query, response.status)
    return response


def create_server_app(
    core: SimCore | None = None,
    *,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    price_interval: float | None = 1.0,
    push_interval: float = 1.0,
    faults: SimFaults | None = None,
    seed: int = 42,
    state_file: Path | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Sleep | None = None,
) -> web.Application:
    """The Binance USD-M compatible simulator as an aiohttp app (REST and websockets on one port).

    `price_interval`: seconds between random-walk steps of every mark; None or 0 switches the
    walk off, so marks move only through POST /sim/price (a negative interval is a ValueError).
    `push_interval`: seconds between markPriceUpdate pushes. `state_file`: load the account
    from it if present, and keep it saved. `now` / `sleep`: the simulator's clock (tests inject
    a fake one); `sleep` paces the random walk and the latency faults, not the pushes.
    """
    if price_interval is not None and not price_interval >= 0:
        raise ValueError(
            f"price_interval must be 0 (off) or a positive number of seconds, not {price_interval}"
        )
    clock = now or (lambda: datetime.now(UTC))
    pause = sleep or asyncio.sleep
    sim = SimulatedExchange(
        core if core is not None else SimCore(seed=seed),
        now=clock,
        faults=faults,
        seed=seed,
        sleep=pause,
        state_file=state_file,
    )
    venue = SimVenue(sim, api_key=api_key, api_secret=api_secret, now=clock, push_interval=push_interval)
    app = web.Application(middlewares=[_errors_and_log])
    app[VENUE] = venue
    for method, path, handler, auth in FAPI:
        app.router.add_route(method, path, _fapi(handler, auth))
    for method, path, control_handler in CONTROL:
        app.router.add_route(method, path, _plain(control_handler))
    for path, socket_handler in SOCKETS:
        app.router.add_get(path, _plain(socket_handler))

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(venue.pump()), asyncio.create_task(venue.push_marks())]
        if price_interval:  # None or 0: no random walk
            tasks.append(asyncio.create_task(SimPriceFeed(sim, interval=price_interval, sleep=pause).run()))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await venue.close_all()
        await sim.close()

    app.cleanup_ctx.append(background)
    return app


@contextlib.asynccontextmanager
async def running_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` until the block exits; yields its base URL (port 0 picks a free port)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 42,
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    state_file: Path | None = None,
    price_interval: float | None = 1.0,
) -> None:
    """Run the simulator server until cancelled (`warden sim serve`).

    `price_interval`: seconds between random-walk steps; 0 or None: marks move only through
    POST /sim/price.
    """
    app = create_server_app(
        SimCore(seed=seed),
        api_key=api_key,
        api_secret=api_secret,
        price_interval=price_interval,
        seed=seed,
        state_file=state_file,
    )
    async with running_app(app, host, port) as url:
        log.info("simulated Binance USD-M listening on %s (api key %r)", url, api_key)
        await asyncio.Event().wait()
