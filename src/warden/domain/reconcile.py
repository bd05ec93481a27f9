"""Reconciliation as a pure function: what warden holds vs what the exchange says.

    orphan         a position on the exchange that no record accounts for
    ghost          an open record while the exchange is flat in that symbol
    size_mismatch  both hold the symbol, in different sizes (or sides)
    missing_stop   a position without a resting stop of its full size
    stray_order    an exit order of warden's resting with no position behind it
    other_instance an order with a warden-shaped id of another installation: another
                   warden trades this account (its orders are never touched, and its
                   symbols are not judged: their positions are not ours to adopt)
    unknown_intent an order row in the database, for a position memory knows, that memory
                   does not (written behind warden's back). Not found by `diff`: the
                   reconciler compares the database with memory before diffing.

In one-way mode the exchange nets every position of a symbol, so sizes are
compared per symbol: the sum of warden's positions (signed) against the
exchange's one position. Symbols with work in flight (an entry being resolved,
a close in progress, an order whose outcome is not yet known) are skipped: the
next pass looks again. The function never guesses "flat" from missing data:
callers only call it with a complete snapshot.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from warden.domain.orders import Order, OrderStatus
from warden.domain.position import Position, PositionStatus
from warden.domain.reports import OrderReport, PositionReport
from warden.domain.values import (
    LEGACY_INSTALLATION,
    ZERO,
    ClientOrderId,
    OrderRole,
    OrderType,
    ParsedClientId,
    PositionId,
    Side,
    Symbol,
    client_order_id,
    parse_client_id,
)


class Kind(StrEnum):
    ORPHAN = "orphan"
    GHOST = "ghost"
    SIZE_MISMATCH = "size_mismatch"
    MISSING_STOP = "missing_stop"
    STRAY_ORDER = "stray_order"
    OTHER_INSTANCE = "other_instance"
    UNKNOWN_INTENT = "unknown_intent"


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: Kind
    symbol: Symbol
    position_id: PositionId | None = None
    client_order_id: str | None = None
    expected: Decimal = ZERO
    found: Decimal = ZERO
    detail: str = ""
    """Words for the event; code never branches on it (typed fields below carry what it needs)."""
    order_type: OrderType | None = None
    """A stray order's type (a plain order and a conditional one are cancelled differently)."""


@dataclass(frozen=True, slots=True)
class Truth:
    """The exchange's side: non-flat positions and every open order (plain and conditional)."""

    positions: Sequence[PositionReport]
    open_orders: Sequence[OrderReport]


IN_FLIGHT = (PositionStatus.OPENING, PositionStatus.CLOSING)


def unsettled(held: Iterable[Position], pending: Collection[PositionId]) -> bool:
    """Whether a pass leaves the sizes of the symbol `held` are on alone: a position of it opening
    or closing, or one of `pending` (with an order whose outcome is not known: it may land)."""
    return any(p.status in IN_FLIGHT or p.id in pending for p in held)


def signed_held(positions: Iterable[Position]) -> Decimal:
    return sum((p.remaining * p.side.sign for p in positions), ZERO)


def ours(client_order_id: str, installation: str) -> bool:
    """A warden id made by this installation (ids from before installation ids count as ours)."""
    parsed = parse_client_id(client_order_id)
    return parsed is not None and parsed.installation in (installation, LEGACY_INSTALLATION)


def diff(
    positions: Sequence[Position],
    orders: Mapping[ClientOrderId, Order],
    truth: Truth,
    installation: str = LEGACY_INSTALLATION,
) -> list[Discrepancy]:
    """Every difference between warden's active positions/orders and the exchange's truth."""
    # Each id is parsed once: a pass over 10,000 positions reads 30,000 open orders.
    mine = (installation, LEGACY_INSTALLATION)
    parsed = [(o, parse_client_id(o.client_order_id)) for o in truth.open_orders]
    others = [o for o, p in parsed if p is not None and p.installation not in mine]
    foreign = {o.symbol for o in others}
    kept = [
        (o, p) for o, p in parsed if o.symbol not in foreign or (p is not None and p.installation in mine)
    ]
    by_symbol: dict[Symbol, list[Position]] = defaultdict(list)
    for p in positions:
        if p.is_active:
            by_symbol[p.symbol].append(p)
    pending = {o.position_id for o in orders.values() if o.status is OrderStatus.PENDING}
    busy = {s for s, ps in by_symbol.items() if unsettled(ps, pending)}
    busy |= foreign
    exchange = {r.symbol: r.qty * r.side.sign for r in truth.positions if r.qty != 0}
    out: list[Discrepancy] = []
    for symbol in sorted(set(by_symbol) | set(exchange)):
        if symbol not in busy:
            out.extend(_sizes(symbol, by_symbol.get(symbol, []), exchange.get(symbol, ZERO)))
    ghosts_or_orphans = {d.symbol for d in out if d.kind in (Kind.GHOST, Kind.ORPHAN, Kind.SIZE_MISMATCH)}
    resting = _resting_stops(kept)
    for symbol, held in sorted(by_symbol.items()):
        if symbol in busy or symbol in ghosts_or_orphans:
            continue
        out.extend(_missing_stops(held, resting))
    active = {p.id for ps in by_symbol.values() for p in ps}
    out.extend(_strays(kept, active, orders, busy))
    out.extend(
        Discrepancy(
            Kind.OTHER_INSTANCE,
            o.symbol,
            client_order_id=o.client_order_id,
            found=o.qty,
            detail="an order of another warden installation",
        )
        for o in others
    )
    return out


def _sizes(symbol: Symbol, held: list[Position], found: Decimal) -> list[Discrepancy]:
    expected = signed_held(held)
    if expected == found:
        return []
    if not held:
        return [
            Discrepancy(Kind.ORPHAN, symbol, expected=ZERO, found=found, detail="no record of this position")
        ]
    if found == ZERO:
        return [
            Discrepancy(
                Kind.GHOST, symbol, p.id, expected=p.remaining * p.side.sign, found=ZERO, detail="flat"
            )
            for p in held
        ]
    newest = max(held, key=lambda p: (p.opened_at, p.id))
    return [Discrepancy(Kind.SIZE_MISMATCH, symbol, newest.id, expected=expected, found=found)]


def _resting_stops(
    open_orders: Sequence[tuple[OrderReport, ParsedClientId | None]],
) -> dict[PositionId, list[OrderReport]]:
    stops: dict[PositionId, list[OrderReport]] = defaultdict(list)
    for o, parsed in open_orders:
        if parsed is not None and parsed.role is OrderRole.STOP and o.type is OrderType.STOP_MARKET:
            stops[parsed.position_id].append(o)
    return stops


def _missing_stops(
    held: list[Position], resting: Mapping[PositionId, list[OrderReport]]
) -> list[Discrepancy]:
    out = []
    for p in held:
        if p.remaining <= 0:
            continue
        sizes = [o.qty - o.filled_qty for o in resting.get(p.id, [])]
        if p.remaining not in sizes:
            found = max(sizes, default=ZERO)
            out.append(Discrepancy(Kind.MISSING_STOP, p.symbol, p.id, expected=p.remaining, found=found))
    return out


def _strays(
    open_orders: Sequence[tuple[OrderReport, ParsedClientId | None]],
    active: set[PositionId],
    orders: Mapping[ClientOrderId, Order],
    busy: set[Symbol],
) -> list[Discrepancy]:
    """Warden's exit orders that rest for no position, that warden no longer counts as live,
    or stops superseded by a newer stop of the same position (a move cut short by a crash)."""
    newest_stop: dict[PositionId, int] = {}
    for _, parsed in open_orders:
        if parsed is not None and parsed.role is OrderRole.STOP:
            newest_stop[parsed.position_id] = max(newest_stop.get(parsed.position_id, 0), parsed.seq)
    out = []
    for o, parsed in open_orders:
        if parsed is None or parsed.role is OrderRole.ENTRY or o.symbol in busy:
            continue
        known = orders.get(ClientOrderId(o.client_order_id))
        superseded = parsed.role is OrderRole.STOP and parsed.seq < newest_stop.get(
            parsed.position_id, parsed.seq
        )
        if parsed.position_id in active and known is not None and known.status.live and not superseded:
            continue
        out.append(
            Discrepancy(
                Kind.STRAY_ORDER,
                o.symbol,
                parsed.position_id,
                o.client_order_id,
                found=o.qty,
                detail=str(o.type),
                order_type=o.type,
            )
        )
    return out


def uncovered(truth: Truth) -> list[tuple[PositionReport, Decimal]]:
    """Positions on the exchange and how much of each no resting reduce-only stop covers, read
    from the exchange alone (what the guard protects while the database cannot be read)."""
    out = []
    for report in truth.positions:
        if report.qty == 0:
            continue
        exit_side = report.side.exit_side
        covered = sum(
            (
                o.qty - o.filled_qty
                for o in truth.open_orders
                if o.symbol == report.symbol
                and o.type is OrderType.STOP_MARKET
                and o.reduce_only
                and o.side is exit_side
            ),
            ZERO,
        )
        missing = abs(report.qty) - covered
        if missing > 0:
            out.append((report, missing))
    return out


def stop_from(price: Decimal, side: Side, stop_pct: Decimal) -> Decimal:
    """The plan's stop of a `side` position, `stop_pct` from `price` (unrounded)."""
    return price * (1 - side.sign * stop_pct)


def guard_stop_price(report: PositionReport, mark: Decimal, stop_pct: Decimal) -> Decimal:
    """Where the guard puts a stop: the plan's distance from the entry, or from the mark if the
    market is already past that (a stop that would trigger at once is refused by the exchange)."""
    planned = stop_from(report.entry_price, report.side, stop_pct)
    return planned if (mark - planned) * report.side.sign > 0 else stop_from(mark, report.side, stop_pct)


GUARD_KINDS = ("guard", "cover")
"""The owners of guard_stop's stops: recovery's guard (the database unreadable at startup) and a
late entry fill's cover."""


def guarding(position_id: str) -> bool:
    """Whether an order's owner is a guard_stop's (no position): its fills reduce whatever the
    symbol holds, and are attributed so (they are warden's trades, recorded like any other)."""
    return position_id.startswith(GUARD_KINDS)


def guard_stop(
    kind: str,
    key: str,
    symbol: Symbol,
    side: Side,
    qty: Decimal,
    price: Decimal,
    installation: str,
    now: datetime,
) -> Order:
    """A reduce-only stop of this installation under an id no position owns: `kind` (five
    letters, not all hex, so no position's id) and a digest of `key` (what it guards: one stop
    per key). It covers exposure warden cannot yet attribute; once a position's own stop covers
    it, reconciliation cancels it as a stray."""
    assert kind in GUARD_KINDS, kind
    pid = PositionId(f"{kind}{hashlib.sha1(key.encode()).hexdigest()[:7]}")
    return Order(
        client_order_id=client_order_id(pid, OrderRole.STOP, 1, installation),
        position_id=pid,
        role=OrderRole.STOP,
        symbol=symbol,
        side=side.exit_side,
        type=OrderType.STOP_MARKET,
        qty=qty,
        trigger_price=price,
        reduce_only=True,
        status=OrderStatus.PENDING,
        created_at=now,
    )


def guard_close(stop: Order, installation: str, now: datetime) -> Order:
    """The reduce-only market close of what a guard_stop covers, under the stop's owner (one per
    stop): sent when the exchange will not take the stop. Its fill is attributed as the stop's
    would be (`guarding`)."""
    assert guarding(stop.position_id), stop.position_id
    return Order(
        client_order_id=client_order_id(stop.position_id, OrderRole.CLOSE, 1, installation),
        position_id=stop.position_id,
        role=OrderRole.CLOSE,
        symbol=stop.symbol,
        side=stop.side,
        type=OrderType.MARKET,
        qty=stop.qty,
        trigger_price=None,
        reduce_only=True,
        status=OrderStatus.PENDING,
        created_at=now,
    )
