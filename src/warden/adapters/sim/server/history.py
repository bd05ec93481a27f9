"""The simulator's own price walk, kept as one-minute mark candles, for klines on any venue.

Every mark the venue sees (the user stream's MarkPrice events, each push tick, each klines
request) lands in its symbol's minute bucket: open, high, low, close. Candles of any interval
are built from those buckets; a stretch before the first recorded minute (the server just
started) or without any mark (the walk is off) is flat at the nearest known price, so a bot
asking for 500 candles gets 500 well-formed candles. Volume is what the account traded.
In memory only: a restarted server starts a new history at its restored marks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from decimal import Decimal

from warden.adapters.sim.core import SimCore
from warden.adapters.sim.server.shapes import ms
from warden.domain.values import ZERO, Symbol

MINUTE_MS = 60_000
KEEP_MINUTES = 60 * 24 * 30
"""At most 30 days of minute buckets per symbol are kept (the oldest are forgotten)."""

INTERVALS_MS = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
    "3d": 3 * 1440 * MINUTE_MS,
    "1w": 7 * 1440 * MINUTE_MS,
}


@dataclass(slots=True)
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    trades: int = 0


class MarkHistory:
    """Minute buckets of marks per symbol; `candles` aggregates them to any interval."""

    def __init__(self) -> None:
        self._minutes: dict[Symbol, list[int]] = {}  # sorted bucket start times
        self._buckets: dict[Symbol, dict[int, Candle]] = {}

    def record(self, symbol: Symbol, price: Decimal, at_ms: int) -> None:
        start = at_ms - at_ms % MINUTE_MS
        buckets = self._buckets.setdefault(symbol, {})
        minutes = self._minutes.setdefault(symbol, [])
        bucket = buckets.get(start)
        if bucket is None:
            buckets[start] = Candle(start, price, price, price, price)
            bisect.insort(minutes, start)
            if len(minutes) > KEEP_MINUTES:
                del buckets[minutes.pop(0)]
            return
        bucket.high = max(bucket.high, price)
        bucket.low = min(bucket.low, price)
        bucket.close = price

    def candles(
        self, core: SimCore, symbol: Symbol, interval_ms: int, opens: list[int], *, now_ms: int
    ) -> list[Candle]:
        """One candle per open time in `opens` (ascending), the current mark recorded first."""
        self.record(symbol, core.mark(symbol), now_ms)
        minutes = self._minutes.get(symbol, [])
        buckets = self._buckets.get(symbol, {})
        fills = [(ms(f.at), f) for f in core.fills(symbol)]
        out: list[Candle] = []
        for start in opens:
            end = start + interval_ms
            lo, hi = bisect.bisect_left(minutes, start), bisect.bisect_left(minutes, end)
            inside = [buckets[m] for m in minutes[lo:hi]]
            if inside:
                candle = Candle(
                    start,
                    inside[0].open,
                    max(c.high for c in inside),
                    min(c.low for c in inside),
                    inside[-1].close,
                )
            else:
                price = self._nearest(minutes, buckets, start, core.mark(symbol))
                candle = Candle(start, price, price, price, price)
            traded = [f for at, f in fills if start <= at < end]
            candle.volume = sum((f.qty for f in traded), ZERO)
            candle.quote_volume = sum((f.qty * f.price for f in traded), ZERO)
            candle.trades = len(traded)
            out.append(candle)
        return out

    @staticmethod
    def _nearest(minutes: list[int], buckets: dict[int, Candle], start: int, fallback: Decimal) -> Decimal:
        """The close of the last bucket before `start`, else the open of the first after it."""
        before = bisect.bisect_left(minutes, start)
        if before > 0:
            return buckets[minutes[before - 1]].close
        if minutes:
            return buckets[minutes[0]].open
        return fallback


def open_times(interval_ms: int, now_ms: int, start: int | None, end: int | None, limit: int) -> list[int]:
    """Binance's kline window: from `start` forward (at most `limit`, not past `end` or now), or
    the `limit` candles ending at `end` (default: the current one)."""
    last = min(end, now_ms) if end is not None else now_ms
    last_open = last - last % interval_ms
    if start is None:
        first = last_open - (limit - 1) * interval_ms
        return list(range(first, last_open + 1, interval_ms))
    first = start - start % interval_ms + (interval_ms if start % interval_ms else 0)
    return list(range(first, last_open + 1, interval_ms))[:limit]
