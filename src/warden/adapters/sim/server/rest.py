"""Public market data, the account, and listen keys (reference section 7.1)."""

from __future__ import annotations

from typing import Any

from warden.adapters.sim.rules import SimRejection
from warden.adapters.sim.server import account as account_shapes
from warden.adapters.sim.server import shapes
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.params import Params, boolean, integer, require
from warden.adapters.sim.server.venue import SimVenue
from warden.domain.margin import MarginMode, SymbolConfig
from warden.domain.values import Symbol


def _symbols(venue: SimVenue, params: Params) -> list[Symbol]:
    raw = params.get("symbol")
    return [venue.symbol(raw)] if raw else sorted(venue.core.instruments)


# ----- public -------------------------------------------------------------------------


async def exchange_info(venue: SimVenue, params: Params) -> Any:
    instruments = [venue.core.instruments[s] for s in sorted(venue.core.instruments)]
    return shapes.exchange_info(instruments, venue.now_ms())


async def server_time(venue: SimVenue, params: Params) -> Any:
    return {"serverTime": venue.now_ms()}


async def ping(venue: SimVenue, params: Params) -> Any:
    return {}


async def premium_index(venue: SimVenue, params: Params) -> Any:
    marks, at = venue.core.marks(), venue.now_ms()
    rows = [shapes.premium_index(s, marks[s], at) for s in _symbols(venue, params)]
    return rows[0] if params.get("symbol") else rows


async def ticker_24hr(venue: SimVenue, params: Params) -> Any:
    marks, at = venue.core.marks(), venue.now_ms()
    rows = [shapes.ticker_24hr(s, marks[s], at) for s in _symbols(venue, params)]
    return rows[0] if params.get("symbol") else rows


# ----- account (signed) ---------------------------------------------------------------


async def account(venue: SimVenue, params: Params) -> Any:
    await venue.gate()
    core = venue.core
    positions = [(core.position(s), core.mark(s)) for s in sorted(core.instruments)]
    return account_shapes.account(positions, venue.now_ms())


async def position_risk(venue: SimVenue, params: Params) -> Any:
    """v3: symbols with a position or an open order (flat ones carry entryPrice 0; ccxt drops them)."""
    await venue.gate()
    core, at = venue.core, venue.now_ms()
    busy = {o.symbol for o in core.open_orders()}
    return [
        account_shapes.position_risk(
            core.position(s),
            core.mark(s),
            at,
            leverage=core.symbol_config(s).leverage or 20,
            isolated=core.isolated_margin(s),
            liquidation=core.liquidation_price(s),
        )
        for s in _symbols(venue, params)
        if not core.position(s).flat or s in busy
    ]


async def leverage_bracket(venue: SimVenue, params: Params) -> Any:
    rows = shapes.leverage_brackets(_symbols(venue, params))
    return rows[0] if params.get("symbol") else rows


async def set_leverage(venue: SimVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    leverage = integer(params, "leverage")
    if leverage is None:
        raise BinanceError(-4028, "Leverage is not valid.")
    config = _configure(venue, symbol, leverage, None)
    return {"leverage": config.leverage, "maxNotionalValue": "1000000", "symbol": shapes.market_id(symbol)}


async def set_margin_type(venue: SimVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    raw = require(params, "marginType").upper()
    if raw not in ("ISOLATED", "CROSSED"):
        raise BinanceError(-4042, "Margin type is not valid.")
    mode = MarginMode.ISOLATED if raw == "ISOLATED" else MarginMode.CROSS
    if venue.core.symbol_config(symbol).margin_mode is mode:
        raise BinanceError(-4046, "No need to change margin type.")
    _configure(venue, symbol, None, mode)
    return {"code": 200, "msg": "success"}


async def symbol_config(venue: SimVenue, params: Params) -> Any:
    """GET /fapi/v1/symbolConfig: leverage and margin type of one symbol, or of all."""
    await venue.gate()
    rows = []
    for symbol in _symbols(venue, params):
        config = venue.core.symbol_config(symbol)
        rows.append(
            {
                "symbol": shapes.market_id(symbol),
                "marginType": "ISOLATED" if config.margin_mode is MarginMode.ISOLATED else "CROSSED",
                "isAutoAddMargin": "false",
                "leverage": config.leverage,
                "maxNotionalValue": "1000000",
            }
        )
    return rows


def _configure(
    venue: SimVenue, symbol: Symbol, leverage: int | None, mode: MarginMode | None
) -> SymbolConfig:
    try:
        config = venue.core.configure(symbol, leverage, mode)
    except SimRejection as exc:
        raise BinanceError(exc.code, exc.message) from exc
    venue.sim.save()
    return config


async def get_position_mode(venue: SimVenue, params: Params) -> Any:
    return {"dualSidePosition": False}


async def set_position_mode(venue: SimVenue, params: Params) -> Any:
    if boolean(params, "dualSidePosition"):
        raise BinanceError(-4059, "No need to change position side.")
    return {"code": 200, "msg": "success"}


# ----- listen keys (API key only, no signature) ---------------------------------------


async def new_listen_key(venue: SimVenue, params: Params) -> Any:
    return {"listenKey": venue.new_listen_key()}


async def keep_listen_key(venue: SimVenue, params: Params) -> Any:
    key = params.get("listenKey") or (next(iter(venue.listen_keys)) if venue.listen_keys else "")
    venue.check_listen_key(key)
    return {"listenKey": key}


async def close_listen_key(venue: SimVenue, params: Params) -> Any:
    venue.listen_keys.clear()
    await venue.close_private()
    return {}
