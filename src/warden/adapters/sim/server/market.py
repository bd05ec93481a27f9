"""The Binance face's market data beyond what warden itself asks, so any ccxt `binance` /
`binanceusdm` bot can start and trade with nothing but URL overrides:

- market discovery across Binance's families: USD-M is the simulator's; spot
  (`/api/v3/exchangeInfo`), coin-M (`/dapi/v1/exchangeInfo`), the wallet's coin list
  (`/sapi/v1/capital/config/getall`) and margin pairs answer empty — warden simulates none of them;
- `/fapi/v1/multiAssetsMargin` (single-asset mode);
- candles (`klines`, and the mark / index / premium-index variants) and books (`depth`,
  `ticker/bookTicker`) derived from the simulator's own marks (`history.MarkHistory`): the book
  is one tick either side of the mark, where market orders fill;
- funding history (the simulator charges none: rate 0 every 8 hours) and income (the
  account's commissions; no funding fees).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from warden.adapters.sim.server import shapes
from warden.adapters.sim.server.auth import BinanceError
from warden.adapters.sim.server.binance_venue import BinanceVenue
from warden.adapters.sim.server.history import INTERVALS_MS, Candle, open_times
from warden.adapters.sim.server.params import Params, integer
from warden.domain.values import ZERO, Symbol

FUNDING_MS = 8 * 3600 * 1000
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
LEVEL_QTY = Decimal(10)
"""Quantity shown at each book level, in lots."""


def _empty_exchange_info(venue: BinanceVenue) -> Any:
    return {
        "timezone": "UTC",
        "serverTime": venue.now_ms(),
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": [],
    }


async def spot_exchange_info(venue: BinanceVenue, params: Params) -> Any:
    return _empty_exchange_info(venue)


async def coin_m_exchange_info(venue: BinanceVenue, params: Params) -> Any:
    return _empty_exchange_info(venue)


async def nothing(venue: BinanceVenue, params: Params) -> Any:
    """A list of what warden does not simulate (coins of the wallet, margin pairs)."""
    return []


async def multi_assets_margin(venue: BinanceVenue, params: Params) -> Any:
    return {"multiAssetsMargin": False}


# ----- books --------------------------------------------------------------------------


def _top(venue: BinanceVenue, symbol: Symbol) -> tuple[Decimal, Decimal, Decimal]:
    """(bid, ask, quantity at each level): one tick either side of the mark."""
    instrument = venue.core.instruments[symbol]
    mark = venue.core.mark(symbol)
    bid = max(mark - instrument.tick_size, instrument.tick_size)
    return bid, mark + instrument.tick_size, instrument.lot_size * LEVEL_QTY


async def depth(venue: BinanceVenue, params: Params) -> Any:
    symbol = venue.symbol(params.get("symbol") or "")
    limit = integer(params, "limit") or 500
    if limit not in DEPTH_LIMITS:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    bid, ask, qty = _top(venue, symbol)
    tick = venue.core.instruments[symbol].tick_size
    levels = min(limit, 100)
    bids = [[shapes.num(bid - i * tick), shapes.num(qty)] for i in range(levels) if bid - i * tick > 0]
    asks = [[shapes.num(ask + i * tick), shapes.num(qty)] for i in range(levels)]
    at = venue.now_ms()
    return {"lastUpdateId": at, "E": at, "T": at, "bids": bids, "asks": asks}


def _book_ticker(venue: BinanceVenue, symbol: Symbol) -> Any:
    bid, ask, qty = _top(venue, symbol)
    q = shapes.num(qty)
    at = venue.now_ms()
    row = {"bidPrice": shapes.num(bid), "bidQty": q, "askPrice": shapes.num(ask), "askQty": q}
    return {"symbol": shapes.market_id(symbol), **row, "time": at, "lastUpdateId": at}


async def book_ticker(venue: BinanceVenue, params: Params) -> Any:
    raw = params.get("symbol")
    if raw:
        return _book_ticker(venue, venue.symbol(raw))
    return [_book_ticker(venue, s) for s in sorted(venue.core.instruments)]


# ----- candles ------------------------------------------------------------------------


def _window(params: Params, venue: BinanceVenue, interval_ms: int) -> list[int]:
    limit = integer(params, "limit") or 500
    if not 1 <= limit <= 1500:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    return open_times(
        interval_ms, venue.now_ms(), integer(params, "startTime"), integer(params, "endTime"), limit
    )


def _kline(candle: Candle, interval_ms: int, *, premium: bool = False) -> list[Any]:
    prices = [ZERO] * 4 if premium else [candle.open, candle.high, candle.low, candle.close]
    volume = ZERO if premium else candle.volume
    quote = ZERO if premium else candle.quote_volume
    return [
        candle.open_ms,
        *(shapes.num(p) for p in prices),
        shapes.num(volume),
        candle.open_ms + interval_ms - 1,
        shapes.num(quote),
        0 if premium else candle.trades,
        "0",
        "0",
        "0",
    ]


def _candles(venue: BinanceVenue, params: Params, symbol_key: str, *, premium: bool = False) -> Any:
    symbol = venue.symbol(params.get(symbol_key) or "")
    interval_ms = INTERVALS_MS.get(params.get("interval") or "")
    if interval_ms is None:
        raise BinanceError(-1120, "Invalid interval.")
    opens = _window(params, venue, interval_ms)
    candles = venue.history.candles(venue.core, symbol, interval_ms, opens, now_ms=venue.now_ms())
    return [_kline(c, interval_ms, premium=premium) for c in candles]


async def klines(venue: BinanceVenue, params: Params) -> Any:
    return _candles(venue, params, "symbol")


async def mark_price_klines(venue: BinanceVenue, params: Params) -> Any:
    return _candles(venue, params, "symbol")  # trades happen at the mark: the same candles


async def index_price_klines(venue: BinanceVenue, params: Params) -> Any:
    return _candles(venue, params, "pair")  # the index is the mark here


async def premium_index_klines(venue: BinanceVenue, params: Params) -> Any:
    return _candles(venue, params, "symbol", premium=True)  # mark - index = 0


# ----- funding and income -------------------------------------------------------------


async def funding_rate(venue: BinanceVenue, params: Params) -> Any:
    """Funding times (every 8 hours) in the window, each at rate 0: the simulator charges none."""
    raw = params.get("symbol")
    symbols = [venue.symbol(raw)] if raw else sorted(venue.core.instruments)
    limit = integer(params, "limit") or 100
    if not 1 <= limit <= 1000:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    times = open_times(
        FUNDING_MS, venue.now_ms(), integer(params, "startTime"), integer(params, "endTime"), limit
    )
    rows: list[dict[str, Any]] = []
    for symbol in symbols:
        mark = shapes.num(venue.core.mark(symbol))
        rows += [
            {
                "symbol": shapes.market_id(symbol),
                "fundingTime": t,
                "fundingRate": "0.00000000",
                "markPrice": mark,
            }
            for t in times
        ]
    return sorted(rows, key=lambda r: r["fundingTime"])[-limit:]


async def income(venue: BinanceVenue, params: Params) -> Any:
    """The account's income history: a COMMISSION per fill (no funding is charged here)."""
    await venue.gate()
    kind = params.get("incomeType")
    raw = params.get("symbol")
    symbols = [venue.symbol(raw)] if raw else sorted(venue.core.instruments)
    start, end = integer(params, "startTime"), integer(params, "endTime")
    limit = integer(params, "limit") or 100
    rows: list[dict[str, Any]] = []
    if kind in (None, "", "COMMISSION"):
        for symbol in symbols:
            for fill in venue.core.fills(symbol):
                at = shapes.ms(fill.at)
                if (start is None or at >= start) and (end is None or at <= end):
                    rows.append(
                        {
                            "symbol": shapes.market_id(symbol),
                            "incomeType": "COMMISSION",
                            "income": shapes.num(-fill.fee),
                            "asset": "USDT",
                            "info": "COMMISSION",
                            "time": at,
                            "tranId": shapes.trade_id_number(fill.trade_id),
                            "tradeId": str(shapes.trade_id_number(fill.trade_id)),
                        }
                    )
    rows.sort(key=lambda r: r["time"])
    return rows[:limit] if start is not None else rows[-limit:]
