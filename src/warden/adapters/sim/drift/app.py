"""The Drift sidecar protocol (v1) on one port: HTTP, the event websocket, and the /sim/ surface.

`warden sim serve --venue drift` runs this; `warden run --exchange drift --exchange-url URL`
talks to it exactly as it talks to the real sidecar (`sidecar/drift`). See
`docs/reference/drift-sidecar-protocol.md` for the protocol and `venue.py` for Drift's rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from warden.adapters.drift import protocol as p
from warden.adapters.sim.core import SimCore
from warden.adapters.sim.drift.markets import drift_markets
from warden.adapters.sim.drift.venue import DriftFaults, DriftVenue, ProtocolError, glob
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.faults import SimFaults
from warden.adapters.sim.feed import SimPriceFeed
from warden.adapters.sim.server import control
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.shapes import num
from warden.adapters.sim.stream import Sleep
from warden.ports import ExchangeUnavailable

log = logging.getLogger(__name__)

DRIFT_VENUE = web.AppKey("drift_venue", DriftVenue)
DRIFT_KNOBS = ("keeper_delay", "auction_delay", "spread", "blockhash_ttl")
LABEL_KNOBS = ("reject_if", "unavailable_if", "timeout_after_execution_if", "expire_if", "hold_send_if")
SHARED_KNOBS = (
    "rest_latency",
    "stream_latency",
    "drop_rate",
    "duplicate_rate",
    "reorder_rate",
    "fail_queries",
)

Handler = Callable[[web.Request, DriftVenue], Awaitable[Any]]


def _venue(request: web.Request) -> DriftVenue:
    return request.app[DRIFT_VENUE]


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.text() or "{}")
    except ValueError as exc:
        raise ProtocolError(p.BAD_REQUEST, f"the body must be a JSON object: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(p.BAD_REQUEST, "the body must be a JSON object")
    return data


async def _query(venue: DriftVenue) -> None:
    await venue.gate(query=True)


# ----- the protocol ---------------------------------------------------------------------------


async def info(request: web.Request, venue: DriftVenue) -> Any:
    return p.body(
        protocol="warden-drift-sidecar",
        env="sim",
        authority=venue.authority,
        sub_account=0,
        slot=venue.slot(),
    )


async def markets(request: web.Request, venue: DriftVenue) -> Any:
    await _query(venue)
    rows = []
    for index, market in sorted(venue.markets.items()):
        instrument = market.market.instrument
        rows.append(
            {
                "market_index": index,
                "symbol": market.symbol,
                "base_precision": str(p.BASE_PRECISION),
                "price_precision": str(p.PRICE_PRECISION),
                "order_step_size": str(int(instrument.lot_size * p.BASE_PRECISION)),
                "order_tick_size": str(int(instrument.tick_size * p.PRICE_PRECISION)),
                "min_order_size": str(int(instrument.min_qty * p.BASE_PRECISION)),
                "status": "active",
            }
        )
    return p.body(markets=rows)


async def prices(request: web.Request, venue: DriftVenue) -> Any:
    await _query(venue)
    marks = venue.core.marks()
    rows = [venue.price_json(s, marks[s]) for s in sorted(marks, key=venue.index_of.__getitem__)]
    return p.body(slot=venue.slot(), prices=rows)


async def user(request: web.Request, venue: DriftVenue) -> Any:
    await _query(venue)
    return p.body(**venue.user())


async def order(request: web.Request, venue: DriftVenue) -> Any:
    await _query(venue)
    return p.body(order=venue.order(_int(request.match_info["order_id"], "order_id")))


async def fills(request: web.Request, venue: DriftVenue) -> Any:
    await _query(venue)
    since = request.query.get("since")
    index = _int(request.query.get("market_index", ""), "market_index")
    return p.body(fills=venue.fills(index, None if since is None else _int(since, "since")))


async def prepare_place(request: web.Request, venue: DriftVenue) -> Any:
    data = await _json(request)
    orders = data.get("orders")
    if not isinstance(orders, list):
        raise ProtocolError(p.BAD_REQUEST, "orders: a list")
    tx = venue.prepare_place(orders)
    return p.body(signature=tx.signature, last_valid_block_height=tx.last_valid_block_height)


async def prepare_cancel(request: web.Request, venue: DriftVenue) -> Any:
    data = await _json(request)
    ids = data.get("order_ids")
    if not isinstance(ids, list):
        raise ProtocolError(p.BAD_REQUEST, "order_ids: a list")
    tx = venue.prepare_cancel(ids)
    return p.body(signature=tx.signature, last_valid_block_height=tx.last_valid_block_height)


async def send(request: web.Request, venue: DriftVenue) -> Any:
    try:
        return p.body(**await venue.send(request.match_info["signature"]))
    except BinanceError as exc:  # the latency / outage gate
        raise ProtocolError(p.UNAVAILABLE, "simulated RPC outage: the transaction was not sent") from exc


async def tx_status(request: web.Request, venue: DriftVenue) -> Any:
    await _query(venue)
    raw = request.query.get("last_valid_block_height")
    height = None if raw is None else _int(raw, "last_valid_block_height")
    return p.body(**venue.tx_status(request.match_info["signature"], height))


async def events(request: web.Request, venue: DriftVenue) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=10.0)
    await ws.prepare(request)
    await ws.send_json(p.body(type="hello", slot=venue.slot()))
    venue.sockets.add(ws)
    try:
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break
    finally:
        venue.sockets.discard(ws)
    return ws


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise ProtocolError(p.BAD_REQUEST, f"{name}: an integer, not {raw!r}") from exc


# ----- the /sim/ control surface (shared handlers where the shapes are the same) ---------------


async def sim_state(request: web.Request, venue: DriftVenue) -> Any:
    state: dict[str, Any] = await control.state(request, venue)
    by_id = {o.exchange_order_id: o for o in venue.core.open_orders()}
    for row in state["open_orders"]:
        wire = venue.order_json(by_id[row["exchange_order_id"]])
        row.update(
            user_order_id=wire["user_order_id"],
            order_id=wire["order_id"],
            market_index=wire["market_index"],
            trigger_condition=wire["trigger_condition"],
        )
    state["oracle"] = state["marks"]
    state["mark"] = {s: num(venue.mark_of(s, m)) for s, m in venue.core.marks().items()}
    state["txs"] = {
        state_name: sum(1 for t in venue.txs.values() if t.state == state_name)
        for state_name in ("prepared", "dropped", "confirmed", "failed")
    }
    return state


async def sim_cancel(request: web.Request, venue: DriftVenue) -> Any:
    """Cancel an open order as a human would: by `order_id`, `user_order_id` or core `client_order_id`."""
    data = await _json(request)
    core = venue.core
    found = None
    if "order_id" in data:
        found = core.order_by_id(str(data["order_id"]))
    elif "user_order_id" in data:
        found = next(
            (o for o in core.open_orders() if venue.order_json(o)["user_order_id"] == data["user_order_id"]),
            None,
        )
    elif "client_order_id" in data:
        found = core.order(str(data["client_order_id"]))
    if found is None or found.status.terminal:
        raise ProtocolError(p.NOT_FOUND, f"no open order matches {data}")
    return venue.order_json(venue.sim.cancel_external(found.client_order_id))


async def sim_set_faults(request: web.Request, venue: DriftVenue) -> Any:
    """Set knobs, all or none: the shared ones, Drift's timings, and the label predicates."""
    data = await _json(request)
    if "fill_delay" in data:
        data["auction_delay"] = data.pop("fill_delay")
    shared: dict[str, object] = {}
    drift: dict[str, object] = {}
    for name, value in data.items():
        if name in SHARED_KNOBS:
            shared[name] = control._knob(name, value)
        elif name in DRIFT_KNOBS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 3600:
                raise ProtocolError(
                    p.BAD_REQUEST, f"{name}: a number of seconds (or a fraction), not {value!r}"
                )
            drift[name] = float(value)
        elif name in LABEL_KNOBS:
            drift[name] = glob(value)
        else:
            raise ProtocolError(p.BAD_REQUEST, f"unknown fault knob {name!r}")
    for name, value in shared.items():
        setattr(venue.sim.faults, name, value)
    for name, value in drift.items():
        setattr(venue.drift, name, value)
        if name in LABEL_KNOBS:
            venue.drift.specs[name] = data[name]
    venue.apply_knobs()
    return await sim_get_faults(request, venue)


async def sim_get_faults(request: web.Request, venue: DriftVenue) -> Any:
    faults = venue.sim.faults
    shown: dict[str, Any] = {name: getattr(faults, name) for name in SHARED_KNOBS}
    shown.update({name: getattr(venue.drift, name) for name in DRIFT_KNOBS})
    for name in LABEL_KNOBS:
        shown[name] = venue.drift.specs.get(name) if getattr(venue.drift, name) is not None else None
    return shown


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/v1/info", info),
    ("GET", "/v1/markets", markets),
    ("GET", "/v1/prices", prices),
    ("GET", "/v1/user", user),
    ("GET", "/v1/orders/{order_id}", order),
    ("GET", "/v1/fills", fills),
    ("POST", "/v1/tx/place", prepare_place),
    ("POST", "/v1/tx/cancel", prepare_cancel),
    ("POST", "/v1/tx/{signature}/send", send),
    ("GET", "/v1/tx/{signature}", tx_status),
    ("GET", "/v1/events", events),
    ("POST", "/sim/price", control.set_price),
    ("POST", "/sim/external-order", control.external_order),
    ("POST", "/sim/cancel", sim_cancel),
    ("POST", "/sim/faults", sim_set_faults),
    ("GET", "/sim/faults", sim_get_faults),
    ("POST", "/sim/disconnect", control.disconnect),
    ("GET", "/sim/state", sim_state),
    ("GET", "/sim/requests", control.requests),
]


def _route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        result = await handler(request, _venue(request))
        return result if isinstance(result, web.StreamResponse) else web.json_response(result)

    return endpoint


@web.middleware
async def _errors_and_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    venue = _venue(request)
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    body = "" if websocket or not request.can_read_body else await request.text()
    sent = "&".join(x for x in (request.rel_url.raw_query_string, body) if x)
    kind = "WS" if websocket else request.method
    version = request.headers.get(p.VERSION_HEADER)
    if version is not None and version != str(p.VERSION):
        venue.log(kind, request.path, sent, 409, "version")
        return ProtocolError(p.VERSION_MISMATCH, f"this server speaks version {p.VERSION}").response()
    if websocket:
        venue.log(kind, request.path, sent, 101, "CONNECT")
    try:
        response = await handler(request)
    except ProtocolError as exc:
        venue.log(kind, request.path, sent, p.HTTP_STATUS[exc.code], exc.message)
        return exc.response()
    except BinanceError as exc:  # a shared /sim/ handler refused its input
        venue.log(kind, request.path, sent, exc.status, f"{exc.code} {exc.msg}")
        return exc.response()
    except ExchangeUnavailable as exc:
        venue.log(kind, request.path, sent, 503, str(exc))
        return ProtocolError(p.UNAVAILABLE, str(exc)).response()
    except web.HTTPException as exc:
        venue.log(kind, request.path, sent, exc.status)
        if exc.status == 404:
            return ProtocolError(p.NOT_FOUND, f"no route {request.method} {request.path}").response()
        raise
    except Exception:
        log.exception("drift sim: %s %s failed", request.method, request.path)
        venue.log(kind, request.path, sent, 500, "internal error")
        return web.json_response(p.error_body("internal", "internal error"), status=500)
    if not websocket:
        venue.log(kind, request.path, sent, response.status)
    return response


def create_drift_app(
    core: SimCore | None = None,
    *,
    price_interval: float | None = 1.0,
    faults: SimFaults | None = None,
    drift_faults: DriftFaults | None = None,
    seed: int = 42,
    state_file: Path | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Sleep | None = None,
) -> web.Application:
    """The simulated Drift venue as an aiohttp app (see `create_server_app` for the shared knobs)."""
    if price_interval is not None and not price_interval >= 0:
        raise ValueError(
            f"price_interval must be 0 (off) or a positive number of seconds, not {price_interval}"
        )
    clock = now or (lambda: datetime.now(UTC))
    pause = sleep or asyncio.sleep
    chosen = drift_markets()
    sim = SimulatedExchange(
        core
        if core is not None
        else SimCore([m.market for m in chosen], seed=seed, fee_rate=p.TAKER_FEE_RATE),
        now=clock,
        faults=faults,
        seed=seed,
        sleep=pause,
        state_file=state_file,
    )
    venue = DriftVenue(sim, chosen, now=clock, faults=drift_faults)
    app = web.Application(middlewares=[_errors_and_log])
    app[DRIFT_VENUE] = venue
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _route(handler))

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(venue.pump())]
        if price_interval:
            tasks.append(asyncio.create_task(SimPriceFeed(sim, interval=price_interval, sleep=pause).run()))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await venue.close_private()
        await sim.close()

    app.cleanup_ctx.append(background)
    return app


async def serve_drift(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 42,
    state_file: Path | None = None,
    price_interval: float | None = 1.0,
) -> None:
    """Run the simulated Drift venue until cancelled (`warden sim serve --venue drift`)."""
    from warden.adapters.sim.server import running_app

    app = create_drift_app(seed=seed, state_file=state_file, price_interval=price_interval)
    async with running_app(app, host, port) as url:
        log.info("simulated Drift (sidecar protocol v%s) listening on %s", p.VERSION, url)
        await asyncio.Event().wait()
