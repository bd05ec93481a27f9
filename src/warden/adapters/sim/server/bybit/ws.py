"""Bybit v5 websockets: `/v5/public/linear` (tickers) and `/v5/private` (auth, then topics).

Both answer `{"op": "ping"}` (public: `ret_msg` "pong"; private: `op` "pong"), acknowledge
`subscribe` / `unsubscribe` with `{"success", "ret_msg", "conn_id", "req_id", "op"}`, and refuse
what they do not know with `success: false`. A private socket must `auth` first; it then
receives only the topics it subscribed to (order, execution, position, wallet). Under the
stream_silent fault a private socket answers nothing, pings included; under subscribe_delay it
acts on a subscription (and acknowledges it) that many seconds late.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSMsgType, web

from warden.adapters.sim.server.bybit.auth import ws_auth_ok
from warden.adapters.sim.server.bybit.venue import PRIVATE_TOPICS, BybitVenue, PrivateSession
from warden.adapters.sim.server.venue import MarketSocket

Json = dict[str, Any]


def _command(text: str) -> Json | None:
    try:
        command = json.loads(text)
    except ValueError:
        return None
    return command if isinstance(command, dict) else None


def _reply(venue: BybitVenue, command: Json, *, success: bool = True, ret_msg: str = "") -> Json:
    reply: Json = {"success": success, "ret_msg": ret_msg, "conn_id": venue.conn_id, "op": command.get("op")}
    if command.get("req_id") is not None:
        reply["req_id"] = str(command["req_id"])
    return reply


def _topics(command: Json) -> list[str]:
    args = command.get("args")
    return [str(a) for a in args] if isinstance(args, list) else []


async def public_socket(request: web.Request, venue: BybitVenue) -> web.StreamResponse:
    """`tickers.<SYMBOL>`: a snapshot right after the subscription, then a delta every push."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    socket = MarketSocket(ws)
    venue.market.append(socket)
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            command = _command(message.data)
            if command is None:
                await ws.send_json(
                    {"success": False, "ret_msg": "error:invalid json", "conn_id": venue.conn_id}
                )
                continue
            op = command.get("op")
            if op == "ping":
                await ws.send_json(_reply(venue, command, ret_msg="pong"))
            elif op == "subscribe":
                topics = _topics(command)
                unknown = [t for t in topics if venue.ticker_symbol(t) is None]
                if unknown:
                    await ws.send_json(
                        _reply(
                            venue,
                            command,
                            success=False,
                            ret_msg=f"error:handler not found,topic:{unknown[0]}",
                        )
                    )
                    continue
                fresh = [t for t in topics if t not in socket.streams]
                socket.streams.update(topics)
                await ws.send_json(_reply(venue, command))
                for topic in fresh:
                    snapshot = venue.ticker_message(topic, snapshot=True)
                    if snapshot is not None:
                        await ws.send_json(snapshot)
            elif op == "unsubscribe":
                socket.streams.difference_update(_topics(command))
                await ws.send_json(_reply(venue, command))
            else:
                await ws.send_json(_reply(venue, command, success=False, ret_msg=f"error:invalid op {op!r}"))
    finally:
        if socket in venue.market:
            venue.market.remove(socket)
    return ws


async def private_socket(request: web.Request, venue: BybitVenue) -> web.StreamResponse:
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    session = PrivateSession()
    venue.private.add(ws)
    venue.sessions[ws] = session
    try:
        async for message in ws:
            if venue.silent:
                continue  # the stream_silent fault: nothing is answered, not even pings
            if message.type is WSMsgType.PING:
                await ws.pong(message.data)
                continue
            if message.type is not WSMsgType.TEXT:
                continue
            command = _command(message.data)
            if command is None:
                await ws.send_json(
                    {"success": False, "ret_msg": "error:invalid json", "conn_id": venue.conn_id}
                )
                continue
            if command.get("op") == "subscribe":
                await venue.sim.subscribing()
            await ws.send_json(_private_answer(venue, session, command))
    finally:
        venue.private.discard(ws)
        venue.sessions.pop(ws, None)
    return ws


def _private_answer(venue: BybitVenue, session: PrivateSession, command: Json) -> Json:
    op = command.get("op")
    if op == "ping":
        answer: Json = {"op": "pong", "args": [str(venue.now_ms())], "conn_id": venue.conn_id}
        if command.get("req_id") is not None:
            answer["req_id"] = str(command["req_id"])
        return answer
    if op == "auth":
        refusal = ws_auth_ok(command.get("args"), venue.api_key, venue.api_secret, venue.now_ms())
        session.authed = refusal is None
        return _reply(venue, command, success=refusal is None, ret_msg=refusal or "")
    if op in ("subscribe", "unsubscribe"):
        if not session.authed:
            return _reply(venue, command, success=False, ret_msg="Request not authorized")
        topics = _topics(command)
        unknown = [t for t in topics if t not in PRIVATE_TOPICS]
        if unknown:
            return _reply(
                venue, command, success=False, ret_msg=f"error:handler not found,topic:{unknown[0]}"
            )
        if op == "subscribe":
            session.topics.update(topics)
        else:
            session.topics.difference_update(topics)
        return _reply(venue, command)
    return _reply(venue, command, success=False, ret_msg=f"error:invalid op {op!r}")
