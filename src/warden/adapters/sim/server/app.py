"""Assembling the server: the venue's face, the /sim/* control surface, logging, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from warden.adapters.sim.core import SimCore
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.faults import SimFaults
from warden.adapters.sim.feed import SimPriceFeed
from warden.adapters.sim.markets import default_markets, synthetic_markets
from warden.adapters.sim.server import control
from warden.adapters.sim.server.auth import total_params
from warden.adapters.sim.server.errors import VenueError
from warden.adapters.sim.server.venue import ServerClock, SimVenue
from warden.adapters.sim.stream import Sleep

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "sim-key"
DEFAULT_API_SECRET = "sim-secret"  # a documented test credential of the local simulator

VENUES = ("binance", "bybit")
"""The protocols the server can speak (`warden sim serve --venue`); binance is the default."""

VENUE = web.AppKey("venue", SimVenue)
ControlHandler = Callable[[web.Request, SimVenue], Awaitable[Any]]

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
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    body = "" if websocket or not request.can_read_body else await request.text()
    query = total_params(request.rel_url.raw_query_string, body)  # what was sent, as sent
    kind = "WS" if websocket else request.method
    if websocket:  # logged when it connects: the handler returns only when the socket closes
        venue.log(kind, request.path, query, 101, "CONNECT")
    try:
        response = await handler(request)
    except VenueError as exc:
        venue.log(kind, request.path, query, exc.status, exc.note)
        return exc.response()
    except web.HTTPNotFound:
        venue.log(kind, request.path, query, 404, "UNHANDLED")
        log.warning("sim server: unhandled %s %s", request.method, request.path_qs)
        return venue.not_found(request.path)
    except web.HTTPException as exc:
        venue.log(kind, request.path, query, exc.status)
        raise
    except Exception:
        log.exception("sim server: %s %s failed", request.method, request.path)
        venue.log(kind, request.path, query, 500, "internal error")
        return venue.internal_error()
    if not websocket or response.status != 101:
        venue.log(kind, request.path, query, response.status)
    return response


def _make_venue(
    name: str,
    sim: SimulatedExchange,
    *,
    api_key: str,
    api_secret: str,
    now: Callable[[], datetime],
    push: float,
) -> tuple[SimVenue, Callable[[web.Application], None]]:
    if name == "binance":
        from warden.adapters.sim.server import binance
        from warden.adapters.sim.server.binance_venue import BinanceVenue

        binance_venue = BinanceVenue(sim, api_key=api_key, api_secret=api_secret, now=now, push_interval=push)
        return binance_venue, lambda app: binance.install(app, binance_venue)
    if name == "bybit":
        from warden.adapters.sim.server import bybit

        bybit_venue = bybit.BybitVenue(
            sim, api_key=api_key, api_secret=api_secret, now=now, push_interval=push
        )
        return bybit_venue, lambda app: bybit.install(app, bybit_venue)
    raise ValueError(f"venue must be one of {', '.join(VENUES)}, not {name!r}")


def create_server_app(
    core: SimCore | None = None,
    *,
    venue: str = "binance",
    api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET,
    price_interval: float | None = 1.0,
    push_interval: float = 1.0,
    faults: SimFaults | None = None,
    seed: int = 42,
    state_file: Path | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Sleep | None = None,
    clock_offset: float = 0.0,
) -> web.Application:
    """The simulated exchange as an aiohttp app (REST and websockets on one port).

    `venue`: which protocol it speaks, "binance" (USD-M futures, the default) or "bybit" (v5
    linear perpetuals); the matching core and the /sim/* control surface are the same.
    `price_interval`: seconds between random-walk steps of every mark; None or 0 switches the
    walk off, so marks move only through POST /sim/price (a negative interval is a ValueError).
    `push_interval`: seconds between mark price pushes. `state_file`: load the account
    from it if present, and keep it saved. `now` / `sleep`: the simulator's clock (tests inject
    a fake one); `sleep` paces the random walk and the latency faults, not the pushes.
    `clock_offset`: seconds the server's clock is ahead of `now` (negative: behind), as an
    exchange's clock is off from a drifted host's; changeable later through the `clock_offset`
    knob of POST /sim/faults (see `ServerClock`).
    """
    if venue not in VENUES:
        raise ValueError(f"venue must be one of {', '.join(VENUES)}, not {venue!r}")
    if price_interval is not None and not price_interval >= 0:
        raise ValueError(
            f"price_interval must be 0 (off) or a positive number of seconds, not {price_interval}"
        )
    if not math.isfinite(clock_offset):
        raise ValueError(f"clock_offset must be a finite number of seconds, not {clock_offset}")
    clock = ServerClock(now or (lambda: datetime.now(UTC)), clock_offset)
    pause = sleep or asyncio.sleep
    sim = SimulatedExchange(
        core if core is not None else SimCore(seed=seed),
        now=clock,
        faults=faults,
        seed=seed,
        sleep=pause,
        state_file=state_file,
    )
    face, install = _make_venue(
        venue, sim, api_key=api_key, api_secret=api_secret, now=clock, push=push_interval
    )
    app = web.Application(middlewares=[_errors_and_log])
    app[VENUE] = face
    install(app)
    for method, path, control_handler in CONTROL:
        app.router.add_route(method, path, _plain(control_handler))

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(face.pump()), asyncio.create_task(face.push_marks())]
        if price_interval:  # None or 0: no random walk
            tasks.append(asyncio.create_task(SimPriceFeed(sim, interval=price_interval, sleep=pause).run()))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await face.close_all()
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
    venue: str = "binance",
    clock_offset: float = 0.0,
    markets: int = 3,
) -> None:
    """Run the simulator server until cancelled (`warden sim serve`).

    `price_interval`: seconds between random-walk steps; 0 or None: marks move only through
    POST /sim/price. `venue`: "binance" (default) or "bybit". `clock_offset`: seconds the
    server's clock runs ahead of this host's (negative: behind). `markets`: BTC, ETH and SOL,
    then synthetic S000, S001, ... up to this many.
    """
    if markets < 3:
        raise ValueError(f"markets must be at least 3 (BTC, ETH and SOL), not {markets}")
    listed = default_markets() + synthetic_markets(markets - 3)
    app = create_server_app(
        SimCore(listed, seed=seed),
        venue=venue,
        api_key=api_key,
        api_secret=api_secret,
        price_interval=price_interval,
        seed=seed,
        state_file=state_file,
        clock_offset=clock_offset,
    )
    names = {"binance": "Binance USD-M", "bybit": "Bybit v5 linear"}
    async with running_app(app, host, port) as url:
        log.info("simulated %s listening on %s (api key %r)", names[venue], url, api_key)
        await asyncio.Event().wait()
