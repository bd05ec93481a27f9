"""The API's wire format: typed request and response models, and the strict parsing of bodies.

Every request body is a pydantic model with `extra="forbid"`: an unknown or misspelt
field is refused (422) naming it and listing the accepted fields. Numbers are JSON
numbers or strings, finite, positive and bounded; text is bounded. Responses are
models too, so the OpenAPI document (`/api/v1/openapi.json`) describes exactly what
is sent. Decimals travel as strings (exact, at instrument precision); datetimes as
ISO 8601 UTC.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from warden.domain.controls import Controls
from warden.domain.errors import ValidationError
from warden.domain.events import Event, EventKind
from warden.domain.position import Position, PositionStatus
from warden.domain.values import Instrument, Side, Symbol
from warden.service.commands import EngineState, EngineStatus, KillReport, PositionView
from warden.service.reconciler import ReconcileReport

QUOTES = ("USDT", "USDC")
TRADINGVIEW_PERP_SUFFIX = ".P"

MAX_NUMBER = Decimal(10) ** 12
"""The largest amount, quantity or price a request may carry (keeps every sizing step exact)."""
MIN_EXPONENT = -20
"""Numbers smaller than 1e-20 are refused: no instrument has a step that fine."""
NUMBER_TEXT = 40
"""The longest number written as a string."""
MAX_DEPTH = 16
"""The deepest nesting of JSON arrays and objects a body may have (a signal is one level)."""

# ASCII digits only: `\d` and Decimal take any Unicode digit (Arabic-Indic 100 was read as 100).
_NUMBER_RE = re.compile(r"^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_POSITIVE_RE = r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


# -- numbers ---------------------------------------------------------------------------------------


def positive_number(value: object) -> Decimal:
    """A JSON number or a numeric string: finite, > 0, <= 1e12, not finer than 1e-20."""
    number = _as_decimal(value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number <= 0:
        raise ValueError("must be greater than zero")
    if number > MAX_NUMBER:
        raise ValueError(f"must be at most {MAX_NUMBER:f}")
    if number.adjusted() < MIN_EXPONENT:
        raise ValueError(f"is too small (below 1e{MIN_EXPONENT})")
    return number


def _as_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        number = Decimal(repr(value))
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        if len(value) > NUMBER_TEXT:
            raise ValueError(f"is longer than {NUMBER_TEXT} characters")
        if not value.isascii():
            raise ValueError(f"must be written with ASCII digits (0-9), not {value!r}")
        if not _NUMBER_RE.fullmatch(value):
            raise ValueError(f"must be a number, not {value!r}")
        try:
            number = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            raise ValueError(f"must be a number, not {value!r}") from None
    else:
        raise ValueError("must be a number (a JSON number or a string)")
    return number


_NUMBER_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": float(MAX_NUMBER)},
        {"type": "string", "pattern": _POSITIVE_RE, "maxLength": NUMBER_TEXT, "minLength": 1},
    ],
    "description": "A positive decimal: a JSON number or a string (exact); at most 1e12.",
}

PositiveNumber = Annotated[Decimal, BeforeValidator(positive_number), WithJsonSchema(_NUMBER_SCHEMA)]


def _fraction(value: object) -> Decimal:
    number = positive_number(value)
    if number >= 1:
        raise ValueError("must be between 0 and 1 (0.005 = 0.5 %)")
    return number


Fraction = Annotated[
    Decimal,
    BeforeValidator(_fraction),
    WithJsonSchema({**_NUMBER_SCHEMA, "description": "A fraction between 0 and 1 (0.005 = 0.5 %)."}),
]


def _timestamp(value: object) -> datetime:
    """ISO 8601 (TradingView's {{timenow}}: 2025-01-02T03:04:05Z) or seconds since the epoch."""
    if isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time or seconds since the epoch")
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        if not math.isfinite(seconds) or not 0 < seconds < 1e11:
            raise ValueError("must be seconds since the epoch (a positive number)")
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError("is longer than 64 characters")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be an ISO 8601 time like 2025-01-02T03:04:05Z, not {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ValueError(f"is outside the years 1 to 9999 in UTC: {value!r}") from None
    raise ValueError("must be an ISO 8601 time or seconds since the epoch")


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": 64, "minLength": 1},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1e11},
            ],
            "description": "When the alert fired: ISO 8601 (TradingView's {{timenow}}) or epoch seconds.",
        }
    ),
]


# -- requests --------------------------------------------------------------------------------------


def no_nul(value: str) -> str:
    """Text warden may store: PostgreSQL refuses U+0000 in text, so a NUL in an id or a reason
    would fail the engine's own write (taken for a database outage)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (U+0000)")
    return value


class StrictBody(BaseModel):
    """Unknown fields are refused; nothing is coerced silently; no text holds a NUL."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        return no_nul(value) if isinstance(value, str) else value


class SignalAction(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    FLIP = "flip"


SIDES = ("long", "short", "buy", "sell")
ENTRY_ONLY = ("usd", "stop_price", "tp1_price", "tp2_price", "trail_pct")
"""SignalIn fields that only an entry uses: an explicit close carrying one is refused."""


class SignalIn(StrictBody):
    """A signal: from TradingView, a script, the CLI or Telegram.

    `action` is `open` (the default), `close` (close the symbol's position) or `flip`
    (close it and open the other side). TradingView's `market_position: "flat"` also closes.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"symbol": "SOL", "side": "long", "usd": "100", "signal_id": "example-1"},
                {"symbol": "BINANCE:ETHUSDT.P", "side": "sell", "qty": "0.05"},
                {"symbol": "SOL", "action": "close"},
            ]
        },
    )

    symbol: str = Field(
        min_length=1,
        max_length=64,
        description="SOL, SOLUSDT, SOL/USDT:USDT or TradingView's {{ticker}} (BINANCE:SOLUSDT.P).",
        examples=["BINANCE:SOLUSDT.P", "BTC"],
    )
    side: Literal["long", "short", "buy", "sell"] | None = Field(
        None,
        description="long/short, or TradingView's {{strategy.order.action}} (buy/sell). "
        "Required to open; a flip without it opens the side opposite to the open position.",
    )
    action: SignalAction = Field(SignalAction.OPEN, description="open, close or flip.")
    market_position: Literal["long", "short", "flat"] | None = Field(
        None, description="TradingView's {{strategy.market_position}}: flat closes the symbol's position."
    )
    usd: PositiveNumber | None = Field(None, description="Notional in USD (or give qty).")
    qty: PositiveNumber | None = Field(
        None, description="Size in base units: TradingView's {{strategy.order.contracts}}."
    )
    signal_id: str | None = Field(
        None, min_length=1, max_length=128, description="Idempotency key: a resent id answers 409."
    )
    stop_price: PositiveNumber | None = Field(None, description="The stop price (default: from the plan).")
    tp1_price: PositiveNumber | None = Field(
        None, description="TP1's price (default: tp1_pct from the fill)."
    )
    tp2_price: PositiveNumber | None = Field(
        None, description="TP2's price (default: tp2_pct from the fill)."
    )
    trail_pct: Fraction | None = Field(
        None, description="This position's trailing distance after TP2 (default: the trail_pct setting)."
    )
    timestamp: Timestamp | None = Field(
        None, description="When the alert fired; older than max_signal_age is refused."
    )
    secret: str | None = Field(
        None, max_length=256, description="The API token, for senders that cannot set headers."
    )
    account: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The account to trade on (an [accounts.NAME] table); required when the engine "
        "serves more than one (or give ?account=).",
    )

    @field_validator("side", mode="before")
    @classmethod
    def _side_is_known(cls, value: object) -> object:
        if value is not None and value not in SIDES:
            raise ValueError(f"must be long, short, buy or sell, not {value!r}")
        return value

    @field_validator("signal_id")
    @classmethod
    def _signal_id_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():  # like an empty one: no key to deduplicate on
            raise ValueError("must not be blank (whitespace only)")
        return value

    def check_consistent(self) -> None:
        """An explicit `action` and TradingView's `market_position` (where the strategy is after
        this order) that say opposite things: refused, naming both, rather than one quietly winning.

        An explicit `"action": "close"` carrying what only an entry uses (a stop or take-profit
        price, usd, trail_pct) is refused naming it: the close is at market, now, of the whole
        position, and `"stop_price": "140"` or `"usd": "50"` on it asked for something else. A
        strategy's exit (market_position flat, no action) is not: one alert message serves all its
        orders, so its exits carry whatever the template adds for its entries."""
        if "action" in self.model_fields_set and self.action is SignalAction.CLOSE:
            for field in ENTRY_ONLY:
                if getattr(self, field) is not None:
                    raise ValidationError(
                        field,
                        "is for opening a position; a close closes what is open on the symbol at"
                        " market, now, whole (move its stop or take-profits with PATCH"
                        " /positions/{id}); nothing was sent",
                    )
        position, action = self.market_position, self.action
        if position is None or "action" not in self.model_fields_set:
            return
        side = self.parsed_side
        contradiction = (
            (position == "flat" and action is not SignalAction.CLOSE)  # flat closes; open/flip open
            or (position != "flat" and action is SignalAction.CLOSE)  # close leaves nothing open
            or (action is SignalAction.FLIP and side is not None and side.value != position)
        )
        if contradiction:
            opens = f"side {side.value!r}" if side is not None and action is not SignalAction.CLOSE else ""
            says = " and ".join(filter(None, [f"action {action.value!r}", opens]))
            raise ValidationError(
                "market_position", f"is {position!r}, which contradicts {says}; send one or make them agree"
            )

    @property
    def parsed_side(self) -> Side | None:
        return None if self.side is None else Side.parse(self.side)

    @property
    def wants_close(self) -> bool:
        return self.action is SignalAction.CLOSE or self.market_position == "flat"


class TokenIn(StrictBody):
    """No fields but the API token, for senders that cannot set headers (TradingView, scripts);
    every body of a call that changes something may carry it."""

    secret: str | None = Field(None, max_length=256, description="The API token, if not in the header.")


class CloseSymbolIn(TokenIn):
    """Close every open position on a symbol."""

    symbol: str = Field(
        min_length=1, max_length=64, description="SOL, SOLUSDT, SOL/USDT:USDT, …", examples=["SOL"]
    )


class PositionPatchIn(TokenIn):
    """Change an open position: tighten its stop (a stop never loosens) and/or move TP1 or TP2."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"stop_price": "148.5"}, {"tp1_price": "152"}]}
    )

    stop_price: PositiveNumber | None = Field(
        None,
        description="The new stop price: tighter than the current one, on the protective side of the mark.",
    )
    tp1_price: PositiveNumber | None = Field(
        None, description="TP1's new price (not yet hit): on the profit side of the mark, before TP2."
    )
    tp2_price: PositiveNumber | None = Field(
        None, description="TP2's new price (not yet hit): on the profit side of the mark, beyond TP1."
    )


class PauseIn(TokenIn):
    """Pause: an optional reason, shown on /status and in the alert."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field("", max_length=200, description="Why (shown on /status and in the alert).")


class KillIn(PauseIn):
    """The kill switch: pause; with flatten, also close every position and cancel every order."""

    flatten: bool = Field(False, strict=True, description="Also close every position reduce-only.")


class ControlsReply(BaseModel):
    controls: ControlsOut


class KillReply(BaseModel):
    controls: ControlsOut
    closed: list[PositionOut] = Field(description="The positions flatten closed (as GET /positions).")
    failed: dict[str, str] = Field(description="Position id -> why it could not be closed yet.")
    cancelled_orders: int

    @classmethod
    def of(cls, report: KillReport) -> KillReply:
        return cls(
            controls=ControlsOut.of(report.controls),
            closed=[PositionOut.of(p) for p in report.closed],
            failed=dict(report.failed),
            cancelled_orders=report.cancelled_orders,
        )


class KillNotDone(BaseModel):
    """An account a kill of every account could not stop."""

    error: str = Field(description="Why its kill switch is not on.")


class KillAllReply(BaseModel):
    """POST /kill without ?account= on an engine serving several accounts: each account's outcome."""

    scope: Literal["all accounts"]
    accounts: dict[str, KillReply | KillNotDone] = Field(description="Account name -> its outcome.")


# -- responses -------------------------------------------------------------------------------------

DecimalText = Annotated[
    str,
    Field(pattern=r"^-?\d+(\.\d+)?$", description="A decimal, exact, as a string.", examples=["150.25"]),
]


class ErrorOut(BaseModel):
    """Every error answer: a code, the field at fault (if one is), a message; 409 carries the position."""

    error: str = Field(description="validation_error, unauthorized, forbidden, not_found, …")
    message: str
    field: str | None = Field(None, description="The field at fault.")
    accepted: list[str] | None = Field(None, description="For an unknown field: the fields accepted.")
    position_id: str | None = None
    position: PositionOut | None = None
    limit: str | None = Field(
        None, description="limit_exceeded: the setting that refused the signal (max_position_usd, …)."
    )
    value: DecimalText | None = Field(None, description="limit_exceeded: what the signal would reach.")
    maximum: DecimalText | None = Field(None, description="limit_exceeded: the setting's value.")
    scope: Literal["all accounts"] | None = Field(
        None, description="kill_incomplete: a kill of every account, some of which it could not stop."
    )
    accounts: dict[str, KillReply | KillNotDone] | None = Field(
        None, description="kill_incomplete: each account's outcome."
    )


class PositionOut(BaseModel):
    id: str
    symbol: str
    side: Side
    status: PositionStatus
    size: DecimalText | None = Field(description="What remains open.")
    filled_qty: DecimalText | None
    entry_price: DecimalText | None
    stop_price: DecimalText | None
    stop_resting: bool = Field(description="The stop rests on the exchange for the full size.")
    tp1_price: DecimalText | None
    tp1_qty: DecimalText | None
    tp2_price: DecimalText | None
    tp2_qty: DecimalText | None
    tp1_hit: bool
    tp2_hit: bool
    trailing_active: bool
    trail_pct: DecimalText | None
    watermark: DecimalText | None = Field(description="The peak (long) or trough (short) since the fill.")
    mae: DecimalText | None
    mfe: DecimalText | None
    last_price: DecimalText | None
    unrealized_pnl: DecimalText | None
    realized_pnl: DecimalText | None
    fees: DecimalText | None
    exit_reason: str | None
    signal_id: str | None
    origin: str
    opened_at: datetime
    closed_at: datetime | None
    version: int

    @classmethod
    def of(
        cls, position: Position, stop_resting: bool | None = None, unrealized_pnl: Decimal | None = None
    ) -> PositionOut:
        p = position
        if stop_resting is None:
            stop_resting = p.status is PositionStatus.PROTECTED
        return cls(
            id=p.id,
            symbol=p.symbol,
            side=p.side,
            status=p.status,
            size=dec(p.remaining),
            filled_qty=dec(p.filled_qty),
            entry_price=dec(p.entry_price),
            stop_price=dec(p.stop_price),
            stop_resting=stop_resting,
            tp1_price=dec(p.tp1_price),
            tp1_qty=dec(p.tp1_qty),
            tp2_price=dec(p.tp2_price),
            tp2_qty=dec(p.tp2_qty),
            tp1_hit=p.tp1_hit,
            tp2_hit=p.tp2_hit,
            trailing_active=p.trailing_active,
            trail_pct=dec(p.plan.trail_pct),
            watermark=dec(p.watermark),
            mae=dec(p.mae),
            mfe=dec(p.mfe),
            last_price=dec(p.last_price),
            unrealized_pnl=dec(unrealized_pnl),
            realized_pnl=dec(p.realized_pnl),
            fees=dec(p.fees),
            exit_reason=p.exit_reason,
            signal_id=p.signal_id,
            origin=p.origin,
            opened_at=p.opened_at,
            closed_at=p.closed_at,
            version=p.version,
        )

    @classmethod
    def of_view(cls, view: PositionView) -> PositionOut:
        return cls.of(view.position, view.stop_resting, view.unrealized_pnl)


class EventOut(BaseModel):
    id: int | None = Field(
        None, description="The event's place in the stream (GET /stream resumes after it)."
    )
    kind: EventKind
    at: datetime
    position_id: str | None
    message: str
    data: dict[str, str]

    @classmethod
    def of(cls, event: Event, event_id: int | None = None) -> EventOut:
        return cls(
            id=event_id,
            kind=event.kind,
            at=event.at,
            position_id=event.position_id,
            message=event.message,
            data=dict(event.data),
        )


class ControlsOut(BaseModel):
    """Pause, kill switch and the daily-loss pause (`daily_loss_until`, UTC) of the account."""

    paused: bool
    killed: bool
    daily_loss_until: datetime | None
    reason: str | None

    @classmethod
    def of(cls, controls: Controls) -> ControlsOut:
        return cls(
            paused=controls.paused,
            killed=controls.killed,
            daily_loss_until=controls.daily_loss_until,
            reason=controls.reason or None,
        )


class StatusOut(BaseModel):
    state: EngineState
    accepting_signals: bool
    reasons: list[str]
    exchange: str
    database: str
    open_positions: int
    unprotected_positions: int
    started_at: datetime
    last_reconcile_at: datetime | None
    pending_writes: int
    details: dict[str, str]
    controls: ControlsOut
    warnings: list[str]

    @classmethod
    def of(cls, status: EngineStatus) -> StatusOut:
        return cls(
            state=status.state,
            accepting_signals=status.accepting_signals,
            reasons=list(status.reasons),
            exchange=status.exchange,
            database=status.database,
            open_positions=status.open_positions,
            unprotected_positions=status.unprotected_positions,
            started_at=status.started_at,
            last_reconcile_at=status.last_reconcile_at,
            pending_writes=status.pending_writes,
            details=dict(status.details),
            controls=ControlsOut.of(status.controls),
            warnings=list(status.warnings),
        )


class FindingOut(BaseModel):
    kind: str
    symbol: str
    position_id: str | None
    client_order_id: str | None
    expected: DecimalText
    found: DecimalText
    action: str


class ReconcileOut(BaseModel):
    at: datetime
    positions_checked: int
    seconds: float
    findings: list[FindingOut]

    @classmethod
    def of(cls, report: ReconcileReport) -> ReconcileOut:
        return cls(
            at=report.at,
            positions_checked=report.positions_checked,
            seconds=round(report.seconds, 6),
            findings=[
                FindingOut(
                    kind=f.discrepancy.kind.value,
                    symbol=f.discrepancy.symbol,
                    position_id=f.discrepancy.position_id,
                    client_order_id=f.discrepancy.client_order_id,
                    expected=f"{f.discrepancy.expected:f}",
                    found=f"{f.discrepancy.found:f}",
                    action=f.action,
                )
                for f in report.findings
            ],
        )


class AccountOut(BaseModel):
    """One account the engine serves: whether this engine holds its lease, and its state."""

    name: str
    exchange: str
    lease_held: bool = Field(description="This engine holds the account's lease (it trades it).")
    holder: str | None = Field(
        description="The engine that holds the account's lease (its engine_name; host:pid by default), as"
        " this engine last saw it; null: no engine seen holding it."
    )
    state: EngineState | None = Field(description="The account's engine state; null: not running.")
    accepting_signals: bool
    reasons: list[str] = Field(description="Why it would refuse a signal now (or why it is not running).")
    alarms: list[str] = Field(
        default_factory=list,
        description="Trouble to act on even while it is ready (a position naked beyond the protection"
        " window, its exchange unreachable): what turns /healthz 503 under its name.",
    )
    open_positions: int | None


class HealthOut(BaseModel):
    """No amounts: /healthz is open to anyone who can reach the port."""

    status: Literal["ok", "held", "unavailable", "starting"] = Field(
        description="ok: ready; held (only with `?account=`, answered 200): this engine holds the"
        " account but it is not ready or has an alarm, the reasons say which; unavailable, starting: 503."
    )
    state: EngineState | None = None
    reasons: list[str]


# -- parsing ---------------------------------------------------------------------------------------


class RefusedField(ValidationError):
    """A body that parsed, with a field refused before validation. `data` is the body without the
    refused keys: enough to find a token in it so that the caller learns which field is at fault,
    never something to act on."""

    def __init__(self, field: str, message: str, data: object) -> None:
        super().__init__(field, message)
        self.data = data


class DuplicateField(RefusedField):
    """A key given twice in one JSON object (JSON parsers differ on which one counts: warden takes
    neither)."""

    def __init__(self, field: str, data: object) -> None:
        super().__init__(field, "is given twice; give it once", data)


class LoneSurrogate(RefusedField):
    """Text holding half a character: JSON's `"\\ud800"` (a lone UTF-16 surrogate) reads into a
    string no codec can encode, so nothing warden does with it (compare a token, store it, answer
    with it) can work. `field` is its key, or `body` when the key itself is the broken text."""

    def __init__(self, field: str, data: object) -> None:
        super().__init__(
            field, 'holds a lone UTF-16 surrogate (half a character, like "\\ud800"); send text', data
        )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False  # an object's own keys and values were checked when it was read


def decode_json(raw: bytes) -> object:
    """A request body as JSON (any content type: TradingView posts text/plain).

    Floats are read as exact decimals; NaN and Infinity are read as such so the field
    that carries them is named when they are refused; nesting deeper than MAX_DEPTH is
    refused before parsing; a key given twice in an object is refused (DuplicateField), and so
    is text holding a lone surrogate (LoneSurrogate).
    """
    if not raw.strip():
        raise ValidationError("body", "expected a JSON object")
    if not _depth_ok(raw, MAX_DEPTH):
        raise ValidationError("body", f"is nested deeper than {MAX_DEPTH} levels")
    repeated: list[str] = []
    broken: list[str] = []

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        twice: set[str] = set()
        dropped: set[str] = set()
        for key, value in pairs:
            if _has_surrogate(key) or _has_surrogate(value):
                broken.append("body" if _has_surrogate(key) else key)
                dropped.add(key)
                continue
            if key in obj:
                twice.add(key)
                repeated.append(key)
            obj[key] = value
        for key in twice | dropped:
            obj.pop(key, None)
        return obj

    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=float, object_pairs_hook=unique)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from None
    except InvalidOperation:  # a number whose exponent no Decimal can hold (1e999999999999999999999)
        raise ValidationError("body", "holds a number too large or too small to read") from None
    if broken:
        raise LoneSurrogate(broken[0], data)
    if repeated:
        raise DuplicateField(repeated[0], data)
    return data


def _depth_ok(raw: bytes, limit: int) -> bool:
    """True when arrays and objects nest at most `limit` deep (strings are skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return True
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return True


M = TypeVar("M", bound="StrictBody")


NO_BODY: Any = type("NoBody", (), {"__repr__": lambda self: "NO_BODY"})()
"""What a request without a body decodes to (JSON `null` is a body, and not an object)."""


def parse_body(model: type[M], data: object) -> M:
    """Validate a decoded body; the first problem is raised as a ValidationError naming its field."""
    if data is NO_BODY and not any(f.is_required() for f in model.model_fields.values()):
        data = {}  # no body at all: every field has its default
    if not isinstance(data, dict):
        raise ValidationError("body", "expected a JSON object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise first_error(exc.errors(include_url=False), accepted=list(model.model_fields)) from None


class FieldError(ValidationError):
    """A validation error that can also list the fields a body accepts."""

    def __init__(self, field: str, message: str, accepted: list[str] | None = None) -> None:
        super().__init__(field, message)
        self.accepted = accepted


def first_error(errors: Any, skip: tuple[str, ...] = (), accepted: list[str] | None = None) -> FieldError:
    """Pydantic's error list as one error that names the field (unknown fields first)."""
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = [str(part) for part in first["loc"] if str(part) not in skip]
    field = ".".join(loc) or "body"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        if not accepted:
            return FieldError(
                field, "is not a field warden knows; this body takes none (send {} or nothing)", []
            )
        return FieldError(field, f"is not a field warden knows; accepted: {', '.join(accepted)}", accepted)
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "json_invalid":
        field, message = "body", f"is not valid JSON: {first['ctx']['error']}"
    elif first["type"] == "literal_error" and "input" in first:
        message = f"{message}, not {first['input']!r}"
    return FieldError(field, message)


def normalise_symbol(raw: str, lookup: Callable[[Symbol], Instrument | None]) -> Symbol:
    """Accept SOL, sol, SOLUSDT, SOL/USDT:USDT, BINANCE:SOLUSDT.P (and on Drift SOL, SOL-PERP); return
    the engine's symbol."""
    text = raw.strip().upper().removesuffix(TRADINGVIEW_PERP_SUFFIX)
    if "/" not in text and ":" in text:  # TradingView's EXCHANGE:TICKER
        text = text.rpartition(":")[2]
    if "/" in text:
        base, _, rest = text.partition("/")
        quote = rest.partition(":")[0] or "USDT"
    else:
        quote = next((q for q in QUOTES if text.endswith(q) and len(text) > len(q)), "USDT")
        base = text.removesuffix(quote) if text.endswith(quote) and text != quote else text
    for candidate in (f"{base}/{quote}:{quote}", text, raw.strip(), f"{base.removesuffix('-PERP')}-PERP"):
        instrument = lookup(Symbol(candidate))
        if instrument is not None:
            return instrument.symbol
    raise ValidationError("symbol", f"unknown symbol {raw!r}")


def dec(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


ErrorOut.model_rebuild()
KillReply.model_rebuild()
