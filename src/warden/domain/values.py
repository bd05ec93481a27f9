"""Values and ids: sides, order kinds, instruments at exchange precision."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import NewType

from warden.domain.errors import ValidationError

PositionId = NewType("PositionId", str)
ClientOrderId = NewType("ClientOrderId", str)
TradeId = NewType("TradeId", str)
Symbol = NewType("Symbol", str)

ZERO = Decimal(0)


class Side(StrEnum):
    """The direction of a position."""

    LONG = "long"
    SHORT = "short"

    # The properties below read module-level tables: on Python 3.11 `Side.LONG` inside a
    # method is a slow enum attribute lookup, and these run per position per tick/recovery.
    @property
    def sign(self) -> int:
        return _SIGN[self]

    @property
    def entry_side(self) -> OrderSide:
        return _ENTRY_SIDE[self]

    @property
    def exit_side(self) -> OrderSide:
        return _EXIT_SIDE[self]

    @classmethod
    def parse(cls, raw: str) -> Side:
        """Accept long/short/buy/sell in any case; anything else is a ValidationError."""
        value = raw.strip().lower()
        if value in ("long", "buy"):
            return cls.LONG
        if value in ("short", "sell"):
            return cls.SHORT
        raise ValidationError("side", f"must be long, short, buy or sell, not {raw!r}")


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


_ENTRY_SIDE = {Side.LONG: OrderSide.BUY, Side.SHORT: OrderSide.SELL}
_EXIT_SIDE = {Side.LONG: OrderSide.SELL, Side.SHORT: OrderSide.BUY}
_SIGN = {Side.LONG: 1, Side.SHORT: -1}


class OrderType(StrEnum):
    MARKET = "market"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT_MARKET = "take_profit_market"

    @property
    def conditional(self) -> bool:
        """Conditional orders live on Binance's algo endpoint; callers must remember it."""
        return self is not _MARKET


_MARKET = OrderType.MARKET


class OrderRole(StrEnum):
    """What an order is for, from warden's point of view."""

    ENTRY = "entry"
    STOP = "stop"
    TP1 = "tp1"
    TP2 = "tp2"
    CLOSE = "close"

    @property
    def code(self) -> str:
        return _ROLE_CODES[self]

    @property
    def is_exit(self) -> bool:
        return self is not _ENTRY


_ENTRY = OrderRole.ENTRY
_ROLE_CODES = {
    OrderRole.ENTRY: "e",
    OrderRole.STOP: "s",
    OrderRole.TP1: "a",
    OrderRole.TP2: "b",
    OrderRole.CLOSE: "c",
}
ROLE_BY_CODE = {code: role for role, code in _ROLE_CODES.items()}

CLIENT_ID_PREFIX = "wd-"
LEGACY_INSTALLATION = ""
"""Ids made before installation ids existed (`wd-<position>-<role><seq>`) parse with this."""


@dataclass(frozen=True, slots=True)
class ParsedClientId:
    installation: str
    position_id: PositionId
    role: OrderRole
    seq: int


def client_order_id(
    position_id: PositionId, role: OrderRole, seq: int, installation: str = LEGACY_INSTALLATION
) -> ClientOrderId:
    """Deterministic id: the same (installation, position, role, seq) always names the same order.

    `wd-<installation>-<position>-<role><seq>`: the installation id tells this warden's
    orders from another warden's on the same account. Fits Binance's 36 characters of
    [.A-Z:/a-z0-9_-] and Bybit's orderLinkId (36 of [A-Za-z0-9_-]).
    """
    if installation:
        return ClientOrderId(f"{CLIENT_ID_PREFIX}{installation}-{position_id}-{role.code}{seq}")
    return ClientOrderId(f"{CLIENT_ID_PREFIX}{position_id}-{role.code}{seq}")


@lru_cache(maxsize=1 << 16)
def parse_client_id(cid: str) -> ParsedClientId | None:
    """The inverse of client_order_id; None for ids warden did not make.

    Memoised (the answer is an immutable value of the string alone): the ledger orders
    a position's stops by their sequence and reconciliation sorts every order it sees,
    so recovery asks this 20 times per position.
    """
    if not cid.startswith(CLIENT_ID_PREFIX):
        return None
    parts = cid[len(CLIENT_ID_PREFIX) :].split("-")
    if len(parts) == 3:
        installation, pid, tail = parts
    elif len(parts) == 2:
        installation, (pid, tail) = LEGACY_INSTALLATION, parts
    else:
        return None
    if not pid or len(tail) < 2 or tail[0] not in ROLE_BY_CODE or not tail[1:].isdigit():
        return None
    return ParsedClientId(installation, PositionId(pid), ROLE_BY_CODE[tail[0]], int(tail[1:]))


def parse_client_order_id(cid: str) -> tuple[PositionId, OrderRole, int] | None:
    """(position, role, seq) of a warden id of any installation; None for ids warden did not make."""
    parsed = parse_client_id(cid)
    return None if parsed is None else (parsed.position_id, parsed.role, parsed.seq)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A perpetual contract and the precision the exchange enforces."""

    symbol: Symbol
    tick_size: Decimal
    lot_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    listed: bool = True
    """False: a market warden holds positions on that the exchange no longer lists; its grid is
    taken from those positions' own orders, for their exits only (no new entries)."""
    max_conditional: int | None = None
    """How many conditional orders (stops, take-profits) the exchange lets one account rest on
    this symbol at once (Binance's MAX_NUM_ALGO_ORDERS filter, Bybit's 10); None: no cap known.
    A stacked entry whose exits would not fit is refused before anything is sent."""

    def round_price(self, price: Decimal) -> Decimal:
        ticks = (price / self.tick_size).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return (ticks * self.tick_size).quantize(self.tick_size)

    def stop_on_tick(self, side: Side, price: Decimal) -> Decimal:
        """A stop price of a `side` position on the tick grid, rounded the protective way (up
        for a long's stop, down for a short's): a price placed on a finer tick the exchange has
        since coarsened is refused as it is, and must not loosen to fit. Unchanged when on it."""
        rounding = ROUND_CEILING if side is Side.LONG else ROUND_FLOOR
        ticks = (price / self.tick_size).quantize(Decimal(1), rounding=rounding)
        return (ticks * self.tick_size).quantize(self.tick_size)

    def lot_ceil(self, qty: Decimal) -> Decimal:
        """A quantity rounded up to the lot (for reduce-only orders, which never exceed what is
        open); unchanged when the lot divides it."""
        lots = (qty / self.lot_size).quantize(Decimal(1), rounding=ROUND_CEILING)
        return max(qty, (lots * self.lot_size).quantize(self.lot_size))

    def round_qty(self, qty: Decimal) -> Decimal:
        """Round a quantity down to the lot size (never more than asked)."""
        lots = (qty / self.lot_size).quantize(Decimal(1), rounding=ROUND_DOWN)
        return (lots * self.lot_size).quantize(self.lot_size)


def grid_of(values: Iterable[Decimal | None]) -> Decimal | None:
    """The coarsest step every one of `values` sits on: their greatest common divisor (a multiple
    of the exchange's own step when they came from it), or with a single distinct value its last
    decimal place (the value itself would make a grid of one point). None without a positive value."""
    seen = {v for v in values if v is not None and v.is_finite() and v > 0}
    if not seen:
        return None
    exponent = min(int(v.normalize().as_tuple().exponent) for v in seen)
    if len(seen) == 1:
        return Decimal(1).scaleb(exponent)
    step = 0
    for v in seen:
        step = math.gcd(step, int(v.scaleb(-exponent)))
    return Decimal(step).scaleb(exponent)


def account_spelled(name: str, names: Iterable[str]) -> str:
    """`name` as the configuration spells it: no two accounts' names differ only in case (the
    config refuses them), so a name matched without case (`Alt` for `alt`) is unambiguously that
    account's. A name that is no account's is returned as given, to be refused as unknown."""
    known = tuple(names)
    if name in known:
        return name
    folded = name.casefold()
    return next((k for k in known if k.casefold() == folded), name)
