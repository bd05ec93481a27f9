"""The simulated markets: instruments with a starting mark, and the seeded random walk."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from warden.domain.values import Instrument, Symbol

DEFAULT_VOLATILITY = 0.0005
"""Standard deviation of one random-walk step, as a fraction of the price."""


@dataclass(frozen=True, slots=True)
class SimMarket:
    """An instrument the simulator trades, and the mark it starts at."""

    instrument: Instrument
    start_price: Decimal

    @property
    def symbol(self) -> Symbol:
        return self.instrument.symbol


def _market(row: tuple[str, str, str, str, str, str]) -> SimMarket:
    """(symbol, tick, lot, min_qty, min_notional, start price) as strings."""
    symbol, tick, lot, min_qty, min_notional, start = row
    instrument = Instrument(
        symbol=Symbol(symbol),
        tick_size=Decimal(tick),
        lot_size=Decimal(lot),
        min_qty=Decimal(min_qty),
        min_notional=Decimal(min_notional),
    )
    return SimMarket(instrument, Decimal(start))


def default_markets() -> list[SimMarket]:
    """BTC, ETH and SOL perpetuals with Binance-like filters."""
    rows = [
        ("BTC/USDT:USDT", "0.1", "0.001", "0.001", "100", "65000"),
        ("ETH/USDT:USDT", "0.01", "0.001", "0.001", "20", "3000"),
        ("SOL/USDT:USDT", "0.01", "0.01", "0.01", "5", "150"),
    ]
    return [_market(row) for row in rows]


def synthetic_markets(n: int) -> list[SimMarket]:
    """`n` interchangeable symbols (`S000/USDT:USDT`, ...) for benchmarks, all starting at 100."""
    return [_market((f"S{i:03d}/USDT:USDT", "0.01", "0.001", "0.001", "5", "100")) for i in range(n)]


def default_instruments() -> list[Instrument]:
    """The instruments of `default_markets()`."""
    return [m.instrument for m in default_markets()]


def synthetic_instruments(n: int) -> list[Instrument]:
    """The instruments of `synthetic_markets(n)`."""
    return [m.instrument for m in synthetic_markets(n)]


def walk_step(
    marks: Mapping[Symbol, Decimal],
    instruments: Mapping[Symbol, Instrument],
    rng: random.Random,
    volatility: float = DEFAULT_VOLATILITY,
) -> dict[Symbol, Decimal]:
    """The next mark of every symbol: a gaussian step rounded to the tick, never below one tick.

    Symbols are visited in sorted order, so the same `rng` state always gives the same path.
    """
    result: dict[Symbol, Decimal] = {}
    for symbol in sorted(marks):
        tick = instruments[symbol].tick_size
        change = Decimal(repr(rng.gauss(0.0, volatility)))
        price = instruments[symbol].round_price(marks[symbol] * (1 + change))
        result[symbol] = max(price, tick)
    return result
