"""The API's wire format: parsing a signal, rendering positions, events and status as JSON.

Decimals travel as strings (exact, at instrument precision); datetimes as ISO 8601 UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from warden.domain.controls import Controls
from warden.domain.errors import ValidationError
from warden.domain.events import Event
from warden.domain.position import Position, PositionStatus
from warden.domain.values import Instrument, Side, Symbol
from warden.service.commands import EngineStatus, PositionView

QUOTES = ("USDT", "USDC")
TRADINGVIEW_PERP_SUFFIX = ".P"


class SignalIn(BaseModel):
    """A signal as JSON: from TradingView, a script, or the CLI."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    symbol: str = Field(min_length=1, max_length=64)
    side: Side
    usd: Decimal | None = Field(None, gt=0, allow_inf_nan=False)
    qty: Decimal | None = Field(None, gt=0, allow_inf_nan=False)
    signal_id: str | None = Field(None, min_length=1, max_length=128)
    stop_price: Decimal | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator("side", mode="before")
    @classmethod
    def _parse_side(cls, value: object) -> Side:
        if not isinstance(value, str):
            raise ValueError(f"must be long, short, buy or sell, not {value!r}")
        try:
            return Side.parse(value)
        except ValidationError as exc:
            raise ValueError(exc.message) from None


def parse_signal(data: object) -> SignalIn:
    """Validate a decoded JSON body; the first problem is raised as a ValidationError naming its field."""
    if not isinstance(data, dict):
        raise ValidationError("body", "expected a JSON object")
    try:
        signal = SignalIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise first_error(exc.errors(include_url=False)) from None
    if signal.usd is not None and signal.qty is not None:
        raise ValidationError("qty", "give usd or qty, not both")
    return signal


def first_error(errors: Any, skip: tuple[str, ...] = ()) -> ValidationError:
    """Pydantic's error list as one ValidationError that names the field."""
    first = errors[0]
    loc = [str(part) for part in first["loc"] if str(part) not in skip]
    field = ".".join(loc) or "body"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "json_invalid":
        field, message = "body", f"is not valid JSON: {first['ctx']['error']}"
    return ValidationError(field, message)


def normalise_symbol(raw: str, lookup: Callable[[Symbol], Instrument | None]) -> Symbol:
    """Accept SOL, sol, SOLUSDT, SOL/USDT:USDT, BINANCE:SOLUSDT.P; return the engine's symbol."""
    text = raw.strip().upper().removesuffix(TRADINGVIEW_PERP_SUFFIX)
    if "/" not in text and ":" in text:  # TradingView's EXCHANGE:TICKER
        text = text.rpartition(":")[2]
    if "/" in text:
        base, _, rest = text.partition("/")
        quote = rest.partition(":")[0] or "USDT"
    else:
        quote = next((q for q in QUOTES if text.endswith(q) and len(text) > len(q)), "USDT")
        base = text.removesuffix(quote) if text.endswith(quote) and text != quote else text
    for candidate in (f"{base}/{quote}:{quote}", text, raw.strip()):
        instrument = lookup(Symbol(candidate))
        if instrument is not None:
            return instrument.symbol
    raise ValidationError("symbol", f"unknown symbol {raw!r}")


def dec(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def position_json(
    position: Position, stop_resting: bool | None = None, unrealized_pnl: Decimal | None = None
) -> dict[str, Any]:
    p = position
    if stop_resting is None:
        stop_resting = p.status is PositionStatus.PROTECTED
    return {
        "id": p.id,
        "symbol": p.symbol,
        "side": p.side.value,
        "status": p.status.value,
        "size": dec(p.remaining),
        "filled_qty": dec(p.filled_qty),
        "entry_price": dec(p.entry_price),
        "stop_price": dec(p.stop_price),
        "stop_resting": stop_resting,
        "tp1_price": dec(p.tp1_price),
        "tp1_qty": dec(p.tp1_qty),
        "tp2_price": dec(p.tp2_price),
        "tp2_qty": dec(p.tp2_qty),
        "tp1_hit": p.tp1_hit,
        "tp2_hit": p.tp2_hit,
        "trailing_active": p.trailing_active,
        "watermark": dec(p.watermark),
        "mae": dec(p.mae),
        "mfe": dec(p.mfe),
        "last_price": dec(p.last_price),
        "unrealized_pnl": dec(unrealized_pnl),
        "realized_pnl": dec(p.realized_pnl),
        "fees": dec(p.fees),
        "exit_reason": p.exit_reason,
        "signal_id": p.signal_id,
        "origin": p.origin,
        "opened_at": ts(p.opened_at),
        "closed_at": ts(p.closed_at),
        "version": p.version,
    }


def view_json(view: PositionView) -> dict[str, Any]:
    return position_json(view.position, view.stop_resting, view.unrealized_pnl)


def event_json(event: Event) -> dict[str, Any]:
    return {
        "kind": event.kind.value,
        "at": ts(event.at),
        "position_id": event.position_id,
        "message": event.message,
        "data": dict(event.data),
    }


def status_json(status: EngineStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "accepting_signals": status.accepting_signals,
        "reasons": list(status.reasons),
        "exchange": status.exchange,
        "database": status.database,
        "open_positions": status.open_positions,
        "unprotected_positions": status.unprotected_positions,
        "started_at": ts(status.started_at),
        "last_reconcile_at": ts(status.last_reconcile_at),
        "pending_writes": status.pending_writes,
        "details": dict(status.details),
        "controls": controls_json(status.controls),
        "warnings": list(status.warnings),
    }


def controls_json(controls: Controls) -> dict[str, Any]:
    return {
        "paused": controls.paused,
        "killed": controls.killed,
        "daily_loss_until": ts(controls.daily_loss_until),
        "reason": controls.reason or None,
    }
