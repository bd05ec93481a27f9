"""JSON forms of the simulator's state, and the atomic state file.

Decimals are strings, datetimes ISO-8601, enums their values: a snapshot survives
`json.dumps` / `json.loads` unchanged and restores to an equal core.
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from warden.adapters.sim.ledger import SimPosition
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport
from warden.domain.values import Instrument, OrderSide, OrderType, Side, Symbol, TradeId

Json = dict[str, Any]

SNAPSHOT_VERSION = 1


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _untime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def instrument_to_json(i: Instrument) -> Json:
    return {
        "symbol": i.symbol,
        "tick_size": str(i.tick_size),
        "lot_size": str(i.lot_size),
        "min_qty": str(i.min_qty),
        "min_notional": str(i.min_notional),
    }


def instrument_from_json(d: Json) -> Instrument:
    return Instrument(
        symbol=Symbol(d["symbol"]),
        tick_size=Decimal(d["tick_size"]),
        lot_size=Decimal(d["lot_size"]),
        min_qty=Decimal(d["min_qty"]),
        min_notional=Decimal(d["min_notional"]),
    )


def order_to_json(o: OrderReport) -> Json:
    return {
        "client_order_id": o.client_order_id,
        "exchange_order_id": o.exchange_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "type": o.type.value,
        "qty": str(o.qty),
        "status": o.status.value,
        "filled_qty": str(o.filled_qty),
        "avg_price": _dec(o.avg_price),
        "trigger_price": _dec(o.trigger_price),
        "reduce_only": o.reduce_only,
        "at": _time(o.at),
    }


def order_from_json(d: Json) -> OrderReport:
    return OrderReport(
        client_order_id=d["client_order_id"],
        exchange_order_id=d["exchange_order_id"],
        symbol=Symbol(d["symbol"]),
        side=OrderSide(d["side"]),
        type=OrderType(d["type"]),
        qty=Decimal(d["qty"]),
        status=OrderStatus(d["status"]),
        filled_qty=Decimal(d["filled_qty"]),
        avg_price=_undec(d["avg_price"]),
        trigger_price=_undec(d["trigger_price"]),
        reduce_only=bool(d["reduce_only"]),
        at=_untime(d["at"]),
    )


def fill_to_json(f: FillReport) -> Json:
    return {
        "trade_id": f.trade_id,
        "client_order_id": f.client_order_id,
        "exchange_order_id": f.exchange_order_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "qty": str(f.qty),
        "price": str(f.price),
        "fee": str(f.fee),
        "at": f.at.isoformat(),
        "liquidation": f.liquidation,
    }


def fill_from_json(d: Json) -> FillReport:
    return FillReport(
        trade_id=TradeId(d["trade_id"]),
        client_order_id=d["client_order_id"],
        exchange_order_id=d["exchange_order_id"],
        symbol=Symbol(d["symbol"]),
        side=OrderSide(d["side"]),
        qty=Decimal(d["qty"]),
        price=Decimal(d["price"]),
        fee=Decimal(d["fee"]),
        at=datetime.fromisoformat(d["at"]),
        liquidation=bool(d["liquidation"]),
    )


def position_to_json(p: SimPosition) -> Json:
    return {
        "qty": str(p.qty),
        "entry_price": str(p.entry_price),
        "side": p.side.value,
        "realized_pnl": str(p.realized_pnl),
        "fees": str(p.fees),
    }


def position_from_json(symbol: Symbol, d: Json) -> SimPosition:
    return SimPosition(
        symbol=symbol,
        qty=Decimal(d["qty"]),
        entry_price=Decimal(d["entry_price"]),
        side=Side(d["side"]),
        realized_pnl=Decimal(d["realized_pnl"]),
        fees=Decimal(d["fees"]),
    )


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(state: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss_next = state
    return (version, tuple(internal), gauss_next)


def write_state(path: Path, snapshot: Json) -> None:
    """Write `snapshot` atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(snapshot, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_state(path: Path) -> Json | None:
    """The snapshot in `path`, or None if there is no such file."""
    try:
        with path.open(encoding="utf-8") as handle:
            data: Json = json.load(handle)
    except FileNotFoundError:
        return None
    return data
