"""The websocket endpoints: market streams (SUBSCRIBE + markPriceUpdate) and the user-data stream."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSMsgType, web

from warden.adapters.sim.server.binance_venue import BinanceVenue
from warden.adapters.sim.server.venue import MarketSocket


async def market_socket(request: web.Request, venue: BinanceVenue) -> web.StreamResponse:
    """`/market/ws/{n}` and `/public/ws/{n}`: JSON SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    socket = MarketSocket(ws)
    venue.market.append(socket)
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            reply = _command(socket, message.data)
            if reply is not None:
                await ws.send_json(reply)
    finally:
        if socket in venue.market:
            venue.market.remove(socket)
    return ws


def _command(socket: MarketSocket, text: str) -> dict[str, Any] | None:
    try:
        command = json.loads(text)
    except ValueError:
        return {"error": {"code": 3, "msg": "Invalid JSON"}}
    if not isinstance(command, dict):
        return {"error": {"code": 3, "msg": "Invalid JSON"}}
    method, params, request_id = command.get("method"), command.get("params") or [], command.get("id")
    streams = {str(p) for p in params} if isinstance(params, list) else set()
    if method == "SUBSCRIBE":
        socket.streams |= streams
        return {"result": None, "id": request_id}
    if method == "UNSUBSCRIBE":
        socket.streams -= streams
        return {"result": None, "id": request_id}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": sorted(socket.streams), "id": request_id}
    return {"error": {"code": 1, "msg": f"Invalid method {method!r}"}, "id": request_id}


async def private_socket(request: web.Request, venue: BinanceVenue) -> web.StreamResponse:
    """`/private/ws?listenKey=...` (the legacy `/ws/{listenKey}` was retired on 2026-04-23): the
    server only pushes."""
    key = request.query.get("listenKey", "")
    if key not in venue.listen_keys:
        return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    venue.private.add(ws)
    try:
        async for message in ws:
            # Binance ignores client frames on the user-data stream; it answers ping frames,
            # unless the stream_silent fault keeps the socket quiet
            if message.type is WSMsgType.PING and not venue.silent:
                await ws.pong(message.data)
    finally:
        venue.private.discard(ws)
    return ws
