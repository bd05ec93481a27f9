"""Protocol JSON <-> driftpy: every order and cancel the sidecar sends is built here.

`order_params` turns one protocol order into driftpy's `OrderParams`; `place_orders_ix` and
`cancel_order_ix` build the instructions through the program's IDL (driftpy's own Program, the
same object `DriftClient` uses); `order_json` reads an `Order` of the user account back. The
tests decode every instruction built here with driftpy's IDL coder and compare it field by
field with the protocol order it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import driftpy
from anchorpy import Context, Idl, Program, Provider, Wallet
from driftpy.constants.config import DRIFT_PROGRAM_ID
from driftpy.types import (
    MarketType,
    OrderParams,
    OrderTriggerCondition,
    OrderType,
    PositionDirection,
)
from solana.rpc.async_api import AsyncClient
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from warden_drift_sidecar import protocol as p

_DIRECTIONS = {p.LONG: PositionDirection.Long, p.SHORT: PositionDirection.Short}
_CONDITIONS = {p.ABOVE: OrderTriggerCondition.Above, p.BELOW: OrderTriggerCondition.Below}
_TYPES = {p.MARKET: OrderType.Market, p.TRIGGER_MARKET: OrderType.TriggerMarket}


def drift_program(connection: AsyncClient | None = None, keypair: Keypair | None = None) -> Program:
    """driftpy's Program for the Drift IDL it ships (what DriftClient builds internally)."""
    idl = Idl.from_json((Path(next(iter(driftpy.__path__))) / "idl" / "drift.json").read_text())
    provider = Provider(connection or AsyncClient("http://127.0.0.1:1"), Wallet(keypair or Keypair()))
    return Program(idl, DRIFT_PROGRAM_ID, provider)


def _integer(raw: Any, name: str, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise p.ProtocolError(p.BAD_REQUEST, f"{name}: an integer (a decimal string), not {raw!r}")
    try:
        value = int(raw)
    except ValueError as exc:
        raise p.ProtocolError(p.BAD_REQUEST, f"{name}: not an integer: {raw!r}") from exc
    if not low <= value <= high:
        raise p.ProtocolError(p.BAD_REQUEST, f"{name}: {value} is outside {low}..{high}")
    return value


def order_params(order: p.Json) -> OrderParams:
    """One protocol order as driftpy's OrderParams (perp). Only market and trigger_market orders."""
    if not isinstance(order, dict):
        raise p.ProtocolError(p.BAD_REQUEST, "an order must be a JSON object")
    kind = _TYPES.get(order.get("order_type"))  # type: ignore[arg-type]
    direction = _DIRECTIONS.get(order.get("direction"))  # type: ignore[arg-type]
    if kind is None or direction is None:
        raise p.ProtocolError(p.BAD_REQUEST, f"order_type / direction not understood: {order}")
    reduce_only = order.get("reduce_only", False)
    if not isinstance(reduce_only, bool):
        raise p.ProtocolError(p.BAD_REQUEST, "reduce_only: true or false")
    params = OrderParams(
        order_type=kind(),
        base_asset_amount=_integer(order.get("base_asset_amount"), "base_asset_amount", 1, 2**64 - 1),
        market_index=_integer(order.get("market_index"), "market_index", 0, 2**16 - 1),
        direction=direction(),
        market_type=MarketType.Perp(),
        user_order_id=_integer(order.get("user_order_id", 0), "user_order_id", 0, p.MAX_USER_ORDER_ID),
        reduce_only=reduce_only,
    )
    if order.get("order_type") == p.TRIGGER_MARKET:
        condition = _CONDITIONS.get(order.get("trigger_condition"))  # type: ignore[arg-type]
        if condition is None:
            raise p.ProtocolError(p.BAD_REQUEST, "trigger_condition: above or below")
        params.trigger_price = _integer(order.get("trigger_price"), "trigger_price", 1, 2**64 - 1)
        params.trigger_condition = condition()
    elif int(order.get("trigger_price") or 0):
        raise p.ProtocolError(p.BAD_REQUEST, "a market order has no trigger_price")
    return params


def place_orders_ix(
    program: Program,
    orders: list[p.Json],
    accounts: dict[str, Pubkey],
    remaining_accounts: list[AccountMeta] | None = None,
) -> Instruction:
    """Drift's `place_orders` for every order (one transaction: all land or none)."""
    if not orders or len(orders) > 32:
        raise p.ProtocolError(p.BAD_REQUEST, "between 1 and 32 orders per transaction")
    params = [order_params(o) for o in orders]
    return program.instruction["place_orders"](
        params, ctx=Context(accounts=accounts, remaining_accounts=remaining_accounts or [])
    )


def cancel_order_ix(
    program: Program,
    order_id: int,
    accounts: dict[str, Pubkey],
    remaining_accounts: list[AccountMeta] | None = None,
) -> Instruction:
    """Drift's `cancel_order` by ORDER id (unique per user; a cancel of a missing id is a no-op),
    never by the reusable user order id."""
    checked = _integer(order_id, "order_id", 1, 2**32 - 1)
    return program.instruction["cancel_order"](
        checked, ctx=Context(accounts=accounts, remaining_accounts=remaining_accounts or [])
    )


def _variant(value: Any) -> str:
    """`OrderType.TriggerMarket()` -> "trigger_market"."""
    name = type(value).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def order_json(order: Any) -> p.Json:
    """An `Order` of the user account (driftpy's type) as the protocol writes it."""
    status = _variant(order.status)
    return {
        "order_id": int(order.order_id),
        "user_order_id": int(order.user_order_id),
        "market_index": int(order.market_index),
        "order_type": _variant(order.order_type),
        "direction": _variant(order.direction),
        "base_asset_amount": str(order.base_asset_amount),
        "base_asset_amount_filled": str(order.base_asset_amount_filled),
        "quote_asset_amount_filled": str(order.quote_asset_amount_filled),
        "trigger_price": str(order.trigger_price),
        "trigger_condition": _variant(order.trigger_condition),
        "reduce_only": bool(order.reduce_only),
        "status": {"open": p.OPEN, "filled": p.FILLED, "canceled": p.CANCELED}.get(status, status),
        "slot": int(order.slot),
    }
