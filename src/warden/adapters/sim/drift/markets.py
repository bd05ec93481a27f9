"""The simulated Drift perp markets: index, symbol (`SOL-PERP`), precisions and a starting oracle price.

Step and tick sizes are Drift-like (read from the market accounts on the real venue). Drift
has no minimum notional: its smallest order is `min_order_size` (here one step).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from warden.adapters.sim.markets import SimMarket
from warden.domain.values import Instrument, Symbol


@dataclass(frozen=True, slots=True)
class DriftMarket:
    market_index: int
    market: SimMarket

    @property
    def symbol(self) -> Symbol:
        return self.market.symbol


_ROWS = [
    # index, symbol, tick, step (= min size), start
    (0, "SOL-PERP", "0.001", "0.01", "150"),
    (1, "BTC-PERP", "0.1", "0.0001", "65000"),
    (2, "ETH-PERP", "0.01", "0.001", "3000"),
    (3, "APT-PERP", "0.0001", "0.1", "9"),
    (4, "1MBONK-PERP", "0.000001", "1", "25"),
    (5, "POL-PERP", "0.0001", "1", "0.5"),
    (6, "ARB-PERP", "0.0001", "0.1", "0.8"),
    (7, "DOGE-PERP", "0.00001", "1", "0.15"),
    (8, "BNB-PERP", "0.01", "0.01", "600"),
    (9, "SUI-PERP", "0.0001", "0.1", "3"),
]


def drift_markets() -> list[DriftMarket]:
    """Ten perp markets (more than the 8 positions a Drift user may hold at once)."""
    out = []
    for index, symbol, tick, step, start in _ROWS:
        instrument = Instrument(Symbol(symbol), Decimal(tick), Decimal(step), Decimal(step), Decimal(0))
        out.append(DriftMarket(index, SimMarket(instrument, Decimal(start))))
    return out
