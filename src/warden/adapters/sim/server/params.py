"""Reading Binance request parameters (all strings on the wire) into values."""

from __future__ import annotations

import re
import secrets
import string
from decimal import Decimal, InvalidOperation

from warden.adapters.sim.server.auth import BinanceError, mandatory
from warden.domain.values import OrderSide

Params = dict[str, str]

_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_ALPHABET = string.ascii_letters + string.digits


def illegal(name: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is ''.")


def require(params: Params, name: str) -> str:
    value = params.get(name)
    if not value:
        raise mandatory(name)
    return value


def decimal(params: Params, name: str) -> Decimal:
    raw = require(params, name)
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise illegal(name) from exc
    if not value.is_finite():
        raise illegal(name)
    return value


def integer(params: Params, name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise illegal(name) from exc


def boolean(params: Params, name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise BinanceError(-1102, f"Parameter '{name}' was not valid: {raw!r}.")
    return raw == "true"


def side(params: Params) -> OrderSide:
    raw = require(params, "side").upper()
    if raw not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.")
    return OrderSide(raw.lower())


def client_id(params: Params, *names: str) -> str:
    """The client's id under the first of `names` that is set, checked; or a fresh Binance-like one."""
    for name in names:
        value = params.get(name)
        if value:
            if not _CLIENT_ID.match(value):
                raise BinanceError(-4015, "Client order id is not valid.")
            return value
    return "".join(secrets.choice(_ALPHABET) for _ in range(22))


def limit(params: Params, default: int = 500, maximum: int = 1000) -> int:
    value = integer(params, "limit")
    return default if value is None else max(1, min(value, maximum))
