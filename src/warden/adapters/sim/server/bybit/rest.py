"""Bybit v5 market data, account and position endpoints (category linear; other categories
are answered with empty lists: the simulator trades nothing else)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from warden.adapters.sim.core import CROSS, ISOLATED
from warden.adapters.sim.rules import SimRejection
from warden.adapters.sim.server.bybit import shapes
from warden.adapters.sim.server.bybit.auth import BybitError, params_error
from warden.adapters.sim.server.bybit.params import Params, category, decimal, integer, limit, text
from warden.adapters.sim.server.bybit.venue import BybitVenue
from warden.adapters.sim.server.shapes import market_id
from warden.domain.values import Symbol

T = TypeVar("T")

MARGIN_MODES = {"REGULAR_MARGIN": CROSS, "ISOLATED_MARGIN": ISOLATED}
COINS = ("USDT", "BTC", "ETH", "SOL")


def page(rows: Sequence[T], params: Params, *, default: int, maximum: int) -> tuple[list[T], str]:
    """One page of `rows` and the cursor of the next ("" when this is the last): the offset."""
    size = limit(params, default, maximum)
    raw = text(params, "cursor")
    try:
        start = int(raw) if raw is not None else 0
    except ValueError as exc:
        raise params_error("cursor invalid") from exc
    chunk = list(rows[start : start + size])
    more = start + size < len(rows)
    return chunk, str(start + size) if more else ""


def _linear_symbols(venue: BybitVenue, params: Params) -> list[Symbol]:
    raw = text(params, "symbol")
    return [venue.symbol(raw)] if raw is not None else sorted(venue.core.instruments)


# ----- public -------------------------------------------------------------------------


async def server_time(venue: BybitVenue, params: Params) -> Any:
    now = venue.now_ms()
    return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}


async def instruments_info(venue: BybitVenue, params: Params) -> Any:
    kind = category(params)
    listed = kind == "linear" and text(params, "status") in (None, "Trading")
    rows = (
        [shapes.instrument(venue.core.instruments[s]) for s in _linear_symbols(venue, params)]
        if listed
        else []
    )
    chunk, cursor = page(rows, params, default=500, maximum=1000)
    return {"category": kind, "list": chunk, "nextPageCursor": cursor}


async def tickers(venue: BybitVenue, params: Params) -> Any:
    kind = category(params)
    marks, at = venue.core.marks(), venue.now_ms()
    rows = (
        [shapes.ticker(s, marks[s], at) for s in _linear_symbols(venue, params)] if kind == "linear" else []
    )
    return {"category": kind, "list": rows}


# ----- account (signed) ---------------------------------------------------------------


async def coin_info(venue: BybitVenue, params: Params) -> Any:
    wanted = text(params, "coin")
    return {"rows": [shapes.coin_info(c) for c in COINS if wanted is None or c == wanted]}


async def query_api(venue: BybitVenue, params: Params) -> Any:
    """The key's own description; `uta: 1` tells ccxt the account is a unified trading account."""
    return {
        "id": "1",
        "note": "warden simulated exchange",
        "apiKey": venue.api_key,
        "readOnly": 0,
        "secret": "",
        "permissions": {"ContractTrade": ["Order", "Position"], "Wallet": ["AccountTransfer"]},
        "ips": ["*"],
        "type": 1,
        "deadlineDay": -1,
        "expiredAt": "",
        "createdAt": "",
        "unified": 0,
        "uta": 1,
        "userID": 1,
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
    }


def _account_margin_mode(venue: BybitVenue) -> str:
    modes = {venue.core.margin_mode(s) for s in venue.core.instruments}
    return "ISOLATED_MARGIN" if modes == {ISOLATED} else "REGULAR_MARGIN"


async def account_info(venue: BybitVenue, params: Params) -> Any:
    return {
        "marginMode": _account_margin_mode(venue),
        "updatedTime": str(venue.now_ms()),
        "unifiedMarginStatus": 5,
        "dcpStatus": "OFF",
        "timeWindow": 10,
        "smpGroup": 0,
        "isMasterTrader": False,
        "spotHedgingStatus": "OFF",
    }


async def set_margin_mode(venue: BybitVenue, params: Params) -> Any:
    """A unified account's margin mode is account-wide: every symbol switches, or none does."""
    raw = text(params, "setMarginMode")
    mode = MARGIN_MODES.get(raw or "")
    if mode is None:
        raise params_error(f"setMarginMode must be REGULAR_MARGIN or ISOLATED_MARGIN, not {raw!r}")
    core = venue.core
    busy = [
        market_id(s)
        for s in sorted(core.instruments)
        if core.margin_mode(s) != mode and (not core.position(s).flat or core.open_orders(s))
    ]
    if busy:
        raise BybitError(110073, f"Set margin mode failed: positions or open orders in {', '.join(busy)}")
    for symbol in core.instruments:
        core.set_margin_mode(symbol, mode)
    venue.sim.save()
    return {"reasons": []}


async def wallet_balance(venue: BybitVenue, params: Params) -> Any:
    account = text(params, "accountType") or "UNIFIED"
    await venue.gate()
    return {"list": [venue.wallet_json()] if account == "UNIFIED" else []}


# ----- positions ----------------------------------------------------------------------


async def position_list(venue: BybitVenue, params: Params) -> Any:
    """With `symbol`: that symbol's position, flat or not; with `settleCoin`: the non-flat ones."""
    kind = category(params)
    raw_symbol = text(params, "symbol")
    if raw_symbol is None and text(params, "settleCoin") is None and text(params, "baseCoin") is None:
        raise BybitError(
            10001, "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
        )
    await venue.gate()
    rows: list[Any] = []
    if kind == "linear":
        core = venue.core
        settle, base = text(params, "settleCoin"), text(params, "baseCoin")
        for symbol in _linear_symbols(venue, params):
            symbol_base, _, rest = symbol.partition("/")
            if settle is not None and settle != rest.partition(":")[2]:
                continue
            if base is not None and base != symbol_base:
                continue
            if raw_symbol is None and core.position(symbol).flat:
                continue
            rows.append(venue.position_json(symbol))
    chunk, cursor = page(rows, params, default=20, maximum=200)
    return {"category": kind, "list": chunk, "nextPageCursor": cursor}


async def set_leverage(venue: BybitVenue, params: Params) -> Any:
    if category(params) != "linear":
        raise params_error("category only support linear")
    symbol = venue.symbol(text(params, "symbol"))
    buy, sell = decimal(params, "buyLeverage"), decimal(params, "sellLeverage")
    if buy != sell:
        raise BybitError(10001, "params error: buy leverage must equal sell leverage in one-way mode")
    assert buy is not None
    if buy != buy.to_integral_value():
        raise BybitError(10001, "params error: the simulator takes whole-number leverage")
    try:
        changed = venue.core.set_leverage(symbol, int(buy))
    except SimRejection as exc:
        raise BybitError(10001, f"params error: leverage invalid ({exc.message})") from exc
    if not changed:
        raise BybitError(110043, "Set leverage not modified")
    venue.sim.save()
    return {}


async def switch_mode(venue: BybitVenue, params: Params) -> Any:
    """The simulator trades in one-way mode only: mode 0 is "not modified", 3 (hedge) is refused."""
    category(params)
    if text(params, "symbol") is None and text(params, "coin") is None:
        raise params_error("symbol or coin is required")
    mode = integer(params, "mode")
    if mode == 0:
        raise BybitError(110025, "Position mode is not modified")
    if mode == 3:
        raise BybitError(
            110029, "Hedge mode is not available for this symbol (the simulator is one-way only)"
        )
    raise params_error("mode must be 0 (one-way) or 3 (hedge)")
