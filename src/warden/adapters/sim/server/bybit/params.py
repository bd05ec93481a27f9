"""Reading Bybit request parameters: query strings (all text) and JSON bodies (typed values)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from warden.adapters.sim.server.bybit.auth import BybitError, params_error
from warden.domain.values import OrderSide

Params = dict[str, Any]

ORDER_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
"""Bybit's orderLinkId: at most 36 characters of letters, digits, underscore and hyphen."""


def text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def require(params: Params, name: str) -> str:
    value = text(params, name)
    if value is None:
        raise params_error(f"{name} is required")
    return value


def decimal(params: Params, name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise params_error(f"{name} is required")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise params_error(f"{name} invalid")
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise params_error(f"{name} invalid") from exc
    if not value.is_finite():
        raise params_error(f"{name} invalid")
    return value


def integer(params: Params, name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise params_error(f"{name} invalid")
    try:
        return int(str(raw))
    except ValueError as exc:
        raise params_error(f"{name} invalid") from exc


def boolean(params: Params, name: str) -> bool:
    """A JSON true/false (ccxt sends booleans), or the strings "true"/"false"."""
    raw = params.get(name, False)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise params_error(f"{name} invalid")


def side(params: Params) -> OrderSide:
    raw = require(params, "side")
    if raw not in ("Buy", "Sell"):
        raise params_error("side invalid")
    return OrderSide.BUY if raw == "Buy" else OrderSide.SELL


def order_link_id(params: Params) -> str | None:
    raw = text(params, "orderLinkId")
    if raw is not None and not ORDER_LINK_ID.match(raw):
        raise params_error("orderLinkId invalid")
    return raw


def limit(params: Params, default: int, maximum: int) -> int:
    value = integer(params, "limit")
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise params_error(f"limit must be between 1 and {maximum}")
    return value


def category(params: Params) -> str:
    """The `category`; every v5 trading endpoint requires it."""
    raw = require(params, "category")
    if raw not in ("linear", "inverse", "spot", "option"):
        raise BybitError(10001, f"params error: category invalid: {raw!r}")
    return raw
