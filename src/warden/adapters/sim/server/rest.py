"""Public market data, the account, and listen keys (reference section 7.1)."""

from __future__ import annotations

from typing import Any

from warden.adapters.sim.core import CROSS, ISOLATED
from warden.adapters.sim.rules import SimRejection
from warden.adapters.sim.server import account as account_shapes
from warden.adapters.sim.server import shapes
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.binance_venue import BinanceVenue
from warden.adapters.sim.server.params import Params, boolean, integer, require
from warden.domain.margin import MAX_LEVERAGE, MarginMode
from warden.domain.values import Symbol


def _symbols(venue: BinanceVenue, params: Params) -> list[Symbol]:
    raw = params.get("symbol")
    return [venue.symbol(raw)] if raw else sorted(venue.core.instruments)


# ----- public -------------------------------------------------------------------------


async def exchange_info(venue: BinanceVenue, params: Params) -> Any:
    instruments = [venue.core.instruments[s] for s in sorted(venue.core.instruments)]
    return shapes.exchange_info(instruments, venue.now_ms())


async def server_time(venue: BinanceVenue, params: Params) -> Any:
    return {"serverTime": venue.now_ms()}


async def ping(venue: BinanceVenue, params: Params) -> Any:
    return {}


async def premium_index(venue: BinanceVenue, params: Params) -> Any:
    marks, at = venue.core.marks(), venue.now_ms()
    rows = [shapes.premium_index(s, marks[s], at) for s in _symbols(venue, params)]
    return rows[0] if params.get("symbol") else rows


async def ticker_24hr(venue: BinanceVenue, params: Params) -> Any:
    marks, at = venue.core.marks(), venue.now_ms()
    rows = [shapes.ticker_24hr(s, marks[s], at) for s in _symbols(venue, params)]
    return rows[0] if params.get("symbol") else rows


# ----- account (signed) ---------------------------------------------------------------


async def account(venue: BinanceVenue, params: Params) -> Any:
    await venue.gate()
    core = venue.core
    positions = [
        (core.position(s), core.mark(s), core.leverage(s), core.margin_mode(s))
        for s in sorted(core.instruments)
    ]
    return account_shapes.account(positions, venue.now_ms())


async def position_risk(venue: BinanceVenue, params: Params, version: int = 3) -> Any:
    """v3: symbols with a position or an open order (flat ones carry entryPrice 0; ccxt drops them)."""
    await venue.gate()
    core, at = venue.core, venue.now_ms()
    busy = {o.symbol for o in core.open_orders()}
    return [
        account_shapes.position_risk(
            core.position(s),
            core.mark(s),
            at,
            leverage=core.leverage(s),
            margin_mode=core.margin_mode(s),
            liquidation=core.liquidation_price(s),
            version=version,
        )
        for s in _symbols(venue, params)
        if not core.position(s).flat or s in busy
    ]


async def position_risk_v2(venue: BinanceVenue, params: Params) -> Any:
    """v2: the same rows with `leverage` and `marginType` (v3 has neither)."""
    return await position_risk(venue, params, version=2)


async def leverage_bracket(venue: BinanceVenue, params: Params) -> Any:
    rows = shapes.leverage_brackets(_symbols(venue, params))
    return rows[0] if params.get("symbol") else rows


async def set_leverage(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(require(params, "symbol"))
    leverage = integer(params, "leverage")
    if leverage is None or not 1 <= leverage <= MAX_LEVERAGE:
        raise BinanceError(-4028, "Leverage is not valid.")
    if venue.core.set_leverage(symbol, leverage):
        venue.sim.save()
    return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": shapes.market_id(symbol)}


MARGIN_TYPES = {"CROSSED": CROSS, "CROSS": CROSS, "ISOLATED": ISOLATED}


async def set_margin_type(venue: BinanceVenue, params: Params) -> Any:
    """CROSSED or ISOLATED, per symbol, for real: -4046 only when it already is that mode, and
    -4048 / -4047 while the symbol has a position / open orders (as Binance)."""
    symbol = venue.symbol(require(params, "symbol"))
    mode = MARGIN_TYPES.get(require(params, "marginType").upper())
    if mode is None:
        raise BinanceError(-1102, "Parameter 'marginType' was not valid: CROSSED or ISOLATED.")
    try:
        changed = venue.core.set_margin_mode(symbol, mode)
    except SimRejection as exc:
        raise BinanceError(exc.code, exc.message) from exc
    if not changed:
        raise BinanceError(-4046, "No need to change margin type.")
    venue.sim.save()
    return {"code": 200, "msg": "success"}


async def symbol_config(venue: BinanceVenue, params: Params) -> Any:
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


async def get_position_mode(venue: BinanceVenue, params: Params) -> Any:
    return {"dualSidePosition": venue.core.hedge_mode}


async def set_position_mode(venue: BinanceVenue, params: Params) -> Any:
    """dualSidePosition true (hedge mode) or false (one-way), for the whole account, for real:
    -4059 when it already is that mode, -4068 / -4067 while a position / open orders exist."""
    try:
        changed = venue.core.set_hedge_mode(boolean(params, "dualSidePosition"))
    except SimRejection as exc:
        raise BinanceError(exc.code, exc.message) from exc
    if not changed:
        raise BinanceError(-4059, "No need to change position side.")
    venue.sim.save()
    return {"code": 200, "msg": "success"}


# ----- listen keys (API key only, no signature) ---------------------------------------


async def new_listen_key(venue: BinanceVenue, params: Params) -> Any:
    return {"listenKey": venue.new_listen_key()}


async def keep_listen_key(venue: BinanceVenue, params: Params) -> Any:
    key = params.get("listenKey") or (next(iter(venue.listen_keys)) if venue.listen_keys else "")
    venue.check_listen_key(key)
    return {"listenKey": key}


async def close_listen_key(venue: BinanceVenue, params: Params) -> Any:
    venue.listen_keys.clear()
    await venue.close_private()
    return {}
