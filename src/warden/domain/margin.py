"""Leverage and margin mode per symbol, and the estimated liquidation price of an isolated position.

An isolated position's margin is entry x size / leverage; Binance liquidates it where
margin + unrealized PnL falls to the maintenance margin (size x mark x rate). With one
position on the symbol and the first bracket's rate (no `cum` offset):

    long   liq = entry x (1 - 1/leverage) / (1 - rate)
    short  liq = entry x (1 + 1/leverage) / (1 + rate)

A stop beyond that price can never fire before the liquidation: warden refuses it.
Cross margin is liquidated against the whole wallet, so no per-position price is estimated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from warden.domain.errors import ValidationError
from warden.domain.values import Side, Symbol

MAINTENANCE_RATE = Decimal("0.004")
"""Binance's first maintenance-margin bracket for the major USD-M perpetuals (0.4 %)."""
MAX_LEVERAGE = 125


class MarginMode(StrEnum):
    ISOLATED = "isolated"
    CROSS = "cross"


@dataclass(frozen=True, slots=True)
class SymbolConfig:
    """A symbol's leverage and margin mode; None (in a plan) leaves the exchange's setting alone."""

    leverage: int | None = None
    margin_mode: MarginMode | None = None

    def differs_from(self, actual: SymbolConfig) -> list[str]:
        """What of this (wanted) configuration `actual` does not match, as text."""
        out = []
        if self.leverage is not None and self.leverage != actual.leverage:
            out.append(f"leverage {actual.leverage}x, want {self.leverage}x")
        if self.margin_mode is not None and self.margin_mode is not actual.margin_mode:
            out.append(f"margin mode {actual.margin_mode}, want {self.margin_mode}")
        return out

    @property
    def empty(self) -> bool:
        return self.leverage is None and self.margin_mode is None


@dataclass(frozen=True, slots=True)
class MarginPlan:
    """The wanted configuration: a default and per-symbol overrides keyed by base coin or symbol."""

    default: SymbolConfig = field(default_factory=SymbolConfig)
    overrides: Mapping[str, SymbolConfig] = field(default_factory=dict)

    def for_symbol(self, symbol: Symbol) -> SymbolConfig:
        override = next(
            (self.overrides[name] for name in symbol_names(symbol) if name in self.overrides), SymbolConfig()
        )
        return SymbolConfig(
            override.leverage if override.leverage is not None else self.default.leverage,
            override.margin_mode if override.margin_mode is not None else self.default.margin_mode,
        )

    @property
    def empty(self) -> bool:
        return self.default.empty and all(o.empty for o in self.overrides.values())

    def names(self, symbol: Symbol) -> bool:
        """An override is written for `symbol` (in any of its spellings)."""
        return any(name in self.overrides for name in symbol_names(symbol))

    def unmatched(self, symbols: Iterable[Symbol]) -> list[str]:
        """The overrides that name none of `symbols` (a misspelt or delisted symbol), sorted."""
        known = {name for symbol in symbols for name in symbol_names(symbol)}
        return sorted(key for key in self.overrides if key not in known)


def symbol_names(symbol: Symbol) -> tuple[str, ...]:
    """How a [symbols.X] key may name `symbol`, first match wins: SOL/USDT:USDT, SOL, SOLUSDT."""
    text = symbol.upper()
    base, _, rest = text.partition("/")
    quote = rest.partition(":")[0]
    return (text, base, base + quote) if quote else (text,)


OVERRIDE_QUOTES = ("USDT", "USDC")
"""The quotes a `[symbols.COINQUOTE]` key may end with (SOLUSDT, SOLUSDC)."""


def _markets_named(key: str) -> set[tuple[str, str | None]]:
    """(base, quote) of the markets an override key can name (`symbol_names` read backwards); a
    None quote is any: SOL names SOL/USDT:USDT and SOL/USDC:USDC, SOLUSDT only the first."""
    text = key.upper()
    if "/" in text:
        base, _, rest = text.partition("/")
        return {(base, rest.partition(":")[0] or None)}
    named: set[tuple[str, str | None]] = {(text, None)}
    for quote in OVERRIDE_QUOTES:
        if text.endswith(quote) and len(text) > len(quote):
            named.add((text.removesuffix(quote), quote))
    return named


def same_market(a: str, b: str) -> bool:
    """Whether two [symbols.X] keys can name one market (SOL and SOLUSDT, SOL and sol): only one
    of them would apply to it, which depends on how each is spelt, not on what the trader meant."""
    return any(
        base_a == base_b and (quote_a is None or quote_b is None or quote_a == quote_b)
        for base_a, quote_a in _markets_named(a)
        for base_b, quote_b in _markets_named(b)
    )


def check_leverage(leverage: int, field_: str = "leverage") -> int:
    if not 1 <= leverage <= MAX_LEVERAGE:
        raise ValidationError(field_, f"must be between 1 and {MAX_LEVERAGE}, not {leverage}")
    return leverage


def liquidation_price(side: Side, entry: Decimal, leverage: int, rate: Decimal = MAINTENANCE_RATE) -> Decimal:
    """The estimated liquidation price of an isolated position (see the module docstring)."""
    step = Decimal(1) / Decimal(leverage)
    if side is Side.LONG:
        return entry * (1 - step) / (1 - rate)
    return entry * (1 + step) / (1 + rate)


def check_stop(side: Side, stop: Decimal, entry: Decimal, config: SymbolConfig) -> None:
    """Refuse (ValidationError naming stop_price) a stop at or beyond the isolated liquidation price."""
    if config.margin_mode is not MarginMode.ISOLATED or config.leverage is None:
        return
    liq = liquidation_price(side, entry, config.leverage)
    beyond = stop <= liq if side is Side.LONG else stop >= liq
    if beyond:
        raise ValidationError(
            "stop_price",
            f"{stop} is beyond the estimated liquidation price {liq:.6g} of a {side} at {entry} with "
            f"{config.leverage}x isolated margin: the position would be liquidated first; use a tighter "
            "stop or lower leverage",
        )
