"""The test-control surface: `/sim/*` moves prices, trades behind warden's back, injects faults.

    POST /sim/price           {"symbol", "price"}             move a mark (fires triggers)
    POST /sim/external-order  {"symbol", "side", "qty", "reduce_only"?, "type"?, "trigger_price"?,
                               "close_position"?}             a trade made outside warden (ext-N)
    POST /sim/cancel          {"client_order_id"}             cancel any open order, as a human would
    POST /sim/faults          {knob: value, ...}              set SimFaults knobs; GET shows them
    POST /sim/disconnect      {}                              drop every user-data socket
    GET  /sim/state                                           marks, positions, open orders
    GET  /sim/requests                                        every request the server has seen

Fault knobs: rest_latency, stream_latency, drop_rate, duplicate_rate, reorder_rate (numbers);
events_before_response, fail_queries (booleans); reject_if, unavailable_if,
timeout_after_execution_if: true (every order), false/null (none) or a glob on the client
order id (e.g. "*-e1").
"""

from __future__ import annotations

import fnmatch
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from warden.adapters.sim.faults import OrderPredicate
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.shapes import market_id, num
from warden.adapters.sim.server.venue import SimVenue
from warden.domain.reports import OrderReport
from warden.domain.values import OrderSide, OrderType
from warden.ports import OrderNotFound, OrderRejected

NUMBER_KNOBS = ("rest_latency", "stream_latency", "drop_rate", "duplicate_rate", "reorder_rate")
FLAG_KNOBS = ("events_before_response", "fail_queries")
PREDICATE_KNOBS = ("reject_if", "unavailable_if", "timeout_after_execution_if")


def order_json(order: OrderReport) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.exchange_order_id,
        "symbol": order.symbol,
        "market_id": market_id(order.symbol),
        "side": order.side.value,
        "type": order.type.value,
        "qty": num(order.qty),
        "status": order.status.value,
        "filled_qty": num(order.filled_qty),
        "avg_price": None if order.avg_price is None else num(order.avg_price),
        "trigger_price": None if order.trigger_price is None else num(order.trigger_price),
        "reduce_only": order.reduce_only,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BinanceError(-1102, "the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise BinanceError(-1102, "the body must be a JSON object")
    return body


def _decimal(body: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    raw = body.get(name)
    if raw is None:
        if required:
            raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent.")
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation as exc:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from exc


async def set_price(request: web.Request, venue: SimVenue) -> Any:
    body = await _body(request)
    symbol = venue.symbol(str(body.get("symbol", "")))
    price = _decimal(body, "price")
    assert price is not None
    if price <= 0:
        raise BinanceError(-1100, "price must be positive")
    before = len(venue.core.open_orders(symbol))
    venue.sim.set_mark(symbol, price)
    return {"symbol": symbol, "price": num(price), "fired": before - len(venue.core.open_orders(symbol))}


async def external_order(request: web.Request, venue: SimVenue) -> Any:
    body = await _body(request)
    symbol = venue.symbol(str(body.get("symbol", "")))
    try:
        side = OrderSide(str(body.get("side", "")).lower())
        order_type = OrderType(str(body.get("type", "market")).lower())
    except ValueError as exc:
        raise BinanceError(-1102, f"bad side or type: {exc}") from exc
    close_position = bool(body.get("close_position", False))
    qty = _decimal(body, "qty", required=not close_position) or Decimal(0)
    try:
        report = venue.sim.external_order(
            symbol,
            side,
            qty,
            bool(body.get("reduce_only", False)),
            order_type=order_type,
            trigger_price=_decimal(body, "trigger_price", required=False),
            close_position=close_position,
        )
    except OrderRejected as exc:
        raise BinanceError(-2010, str(exc)) from exc
    return order_json(report)


async def cancel(request: web.Request, venue: SimVenue) -> Any:
    body = await _body(request)
    try:
        return order_json(venue.sim.cancel_external(str(body.get("client_order_id", ""))))
    except OrderNotFound as exc:
        raise BinanceError(-2011, "Unknown order sent.") from exc


def _predicate(spec: object) -> OrderPredicate | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return lambda request: True
    if isinstance(spec, str):
        pattern = spec
        return lambda request: fnmatch.fnmatchcase(request.client_order_id, pattern)
    raise BinanceError(-1102, f"a predicate knob takes true, false, null or a glob, not {spec!r}")


async def set_faults(request: web.Request, venue: SimVenue) -> Any:
    body = await _body(request)
    faults = venue.sim.faults
    for name, value in body.items():
        if name in NUMBER_KNOBS:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise BinanceError(-1102, f"{name} takes a non-negative number")
            setattr(faults, name, float(value))
        elif name in FLAG_KNOBS:
            setattr(faults, name, bool(value))
        elif name in PREDICATE_KNOBS:
            setattr(faults, name, _predicate(value))
            venue.fault_specs[name] = value
        else:
            raise BinanceError(-1102, f"unknown fault knob {name!r}")
    return await get_faults(request, venue)


async def get_faults(request: web.Request, venue: SimVenue) -> Any:
    faults = venue.sim.faults
    shown: dict[str, Any] = {name: getattr(faults, name) for name in (*NUMBER_KNOBS, *FLAG_KNOBS)}
    for name in PREDICATE_KNOBS:
        shown[name] = venue.fault_specs.get(name) if getattr(faults, name) is not None else None
    return shown


async def disconnect(request: web.Request, venue: SimVenue) -> Any:
    return {"private": await venue.close_private()}


async def state(request: web.Request, venue: SimVenue) -> Any:
    core = venue.core
    return {
        "marks": {s: num(p) for s, p in sorted(core.marks().items())},
        "positions": [
            {
                "symbol": p.symbol,
                "side": p.side.value,
                "qty": num(p.qty),
                "entry_price": num(p.entry_price),
                "realized_pnl": num(p.realized_pnl),
                "fees": num(p.fees),
            }
            for p in (core.position(s) for s in sorted(core.instruments))
            if not p.flat
        ],
        "open_orders": [order_json(o) for o in core.open_orders()],
    }


async def requests(request: web.Request, venue: SimVenue) -> Any:
    return list(venue.requests)
