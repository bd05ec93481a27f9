"""The Telegram bot: trade and watch warden from a phone, in warden's own event loop.

It long-polls getUpdates with python-telegram-bot's `Bot` (no `run_polling`: the
loop is warden's) and answers every command through the same engine facade
calls as the HTTP API, so a refusal reads the same everywhere (seed 000, fix 3).

    short sol | long eth 250 | /long btc 0.01 qty     open (usd by default; `qty` for base units)
    /positions  /status  /health  /events [id]        watch
    /close <id|symbol|all>                            close (all asks for confirmation)
    /pause [reason]  /resume  /kill [flatten]  /reconcile  /help

With more than one account ([accounts.NAME]) a command names its account with `@NAME`
anywhere after the command (`short sol @main`, `/pause @alt`); trading and control commands
without one are refused (nothing sent), `/kill` without one stops every account and says so,
and /status, /positions, /health and /events without one show every account.

Only allowlisted chats (`telegram_chat_ids`) are served; any other chat is
ignored without a reply and logged once. With `telegram_user_ids`, only those users are
served in them (an allowlisted group shares alerts without making every member a trader).
A command older than `STALE` (sent while warden was down) is not executed, but for a /kill
(without its flatten) or /pause: a late stop is the safe side. Telegram being
unreachable never blocks trading: polling backs off and /status shows a warning; alerts wait
in the outbox.

Every update runs at most once, even across a crash: Telegram hears that an update was taken
only with the next getUpdates, so before any update of a batch runs the bot records the highest
id it took (`UpdateRecord`, a file per bot in the data directory, written whole), starts from
that record (its offset, and skipping an id not above it), and runs nothing it could not record
(telling the chat that sent it so, at once: a /kill met with silence reads as done).
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from telegram.error import Conflict, NetworkError, RetryAfter, TelegramError

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from warden.domain.controls import Controls, LimitExceeded
from warden.domain.errors import ValidationError
from warden.domain.events import Event, EventKind
from warden.domain.position import Position, PositionStatus
from warden.domain.values import Instrument, PositionId, Side, Symbol, account_spelled
from warden.entrypoints.schemas import normalise_symbol, positive_number
from warden.ports import (
    ExchangeError,
    ExchangeUnavailable,
    StoreUnavailable,
    TakenUpdate,
    UpdateRecord,
)
from warden.service.commands import (
    AlreadyExists,
    ClosePosition,
    EngineState,
    EngineStatus,
    KillReport,
    OpenPosition,
    PositionNotFound,
    PositionView,
    TradingRefused,
)
from warden.service.reconciler import ReconcileReport

if TYPE_CHECKING:
    from warden.bootstrap import Fleet, Runtime

log = structlog.get_logger("warden.telegram")

LONG_POLL = 25
STALE = timedelta(minutes=2)
"""A command sent longer ago than this (while warden was down) is not executed."""
IDS_RESTART_AFTER = timedelta(days=1)
"""Telegram numbers a bot's updates upward, but after a week without any it picks the next id at
random (Bot API, Update.update_id), lower than the last one too. An update whose id is not above
the recorded one is skipped as taken already while the record is younger than this; an older
record means the ids started again (a replay of what was taken that long ago would be refused
as older than STALE anyway)."""
CONFIRM_FOR = timedelta(minutes=2)
SIDES = ("long", "short", "buy", "sell")
MAX_TEXT = 4000
BACKOFF_MAX = 30.0
REPLY_TRIES = 4
"""Tries of one reply message Telegram answers 429 (flood control, each after its retry_after), 5xx
or not at all (a network blip, each after REPLY_PAUSE, doubling)."""
REPLY_PAUSE = 0.5
"""Seconds before a reply met by a 5xx or a network error is sent again (doubling: 0.5, 1, 2)."""
WEBHOOK = "webhook is active"
"""In the Bot API's 409 to getUpdates for a bot that has a webhook set (another 409, "terminated by
other getUpdates request", is a second process polling the same token)."""
OTHER_POLLER = "terminated by other getupdates request"
"""In the Bot API's 409 to a getUpdates that another program's poll on the same token ended."""
OTHER_POLLER_QUIET = timedelta(minutes=10)
"""The other poller is taken as gone this long after its last 409 (told again if it comes back)."""
RETRY_AFTER_MAX = 60.0
"""The longest retry_after a reply waits for; a longer one drops it (logged)."""

HELP = """warden — commands
short sol · long eth 250 · /long btc 0.01 qty — open (USD by default)
/positions — size, entry, mark, uPnL, stop (resting?), TP1/TP2, trailing
/status — engine state and why it would refuse
/close <id|symbol|all> — close at market (all asks first)
/pause [reason] · /resume · /kill [flatten]
/reconcile · /events [id] · /health · /help"""


class BotEngine(Protocol):
    """The engine facade the bot uses: the same calls as the HTTP API."""

    notes: dict[str, str]
    warnings: dict[str, str]

    async def open_position(self, cmd: OpenPosition) -> Position: ...
    async def close_position(self, cmd: ClosePosition) -> Position: ...
    async def list_positions(self, include_closed: bool = False) -> list[PositionView]: ...
    async def list_events(self, position_id: str | None = None, limit: int = 100) -> list[Event]: ...
    async def failure(self, position_id: str, kind: EventKind) -> str | None: ...
    def status(self) -> EngineStatus: ...
    def instrument(self, symbol: str) -> Instrument | None: ...
    async def reconcile(self) -> ReconcileReport: ...
    async def pause(self, reason: str = "") -> Controls: ...
    async def resume(self) -> Controls: ...
    async def kill(self, flatten: bool = False, reason: str = "") -> KillReport: ...


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    buttons: list[tuple[str, str]] = field(default_factory=list)
    """(label, callback data) inline buttons."""
    done: bool = True
    """False when the command was refused or failed (a bare /kill says which accounts it missed)."""


class Commands:
    """Text in, Reply out: every command, over the engine facade. No Telegram here (tested alone)."""

    def __init__(self, engine: BotEngine, default_usd: Decimal, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.default_usd = default_usd
        self.now = now
        self._confirm: dict[int, dict[str, tuple[datetime, frozenset[PositionId]]]] = {}
        """Per chat, its pending /close all questions by their button's nonce: until when, and the
        positions each asked about (a press closes those, never one opened since). Each question
        keeps its own button: /close all sent twice shows two, and either may be pressed."""

    async def respond(self, chat_id: int, text: str) -> Reply:
        words = text.strip().split()
        if not words:
            return Reply(HELP)
        name = words[0].lstrip("/").split("@")[0].lower()
        args = words[1:]
        handler = self._handlers().get(name)
        try:
            if name in SIDES:
                return await self.open_command([name, *args])
            if handler is None:
                return Reply(f"unknown command {words[0]!r}; /help lists them")
            return await handler(chat_id, args)
        except Exception as exc:
            return Reply(refusal_text(exc), done=False)

    def _handlers(self) -> dict[str, Callable[[int, list[str]], Awaitable[Reply]]]:
        return {
            "positions": self._positions,
            "status": self._status,
            "health": self._health,
            "close": self._close,
            "pause": self._pause,
            "resume": self._resume,
            "kill": self._kill,
            "reconcile": self._reconcile,
            "events": self._events,
            "help": self._help,
            "start": self._help,
        }

    # -------------------------------------------------------------- trading

    async def open_command(self, words: list[str]) -> Reply:
        """`short sol`, `long eth 250`, `long btc 0.01 qty`: the API's signal path, source telegram."""
        side = Side.parse(words[0])
        if len(words) < 2:
            raise ValidationError("symbol", "is required: e.g. `short sol` or `long eth 250`")
        if len(words) > 4:
            raise ValidationError("body", f"too many words: {' '.join(words)!r}")
        usd, qty = self._size(words[2:])
        status = self.engine.status()
        if not status.accepting_signals:  # as the API: refusal first, nothing is sent
            raise TradingRefused(
                f"not accepting signals ({status.state}): {'; '.join(status.reasons) or 'not ready'}"
            )
        symbol = normalise_symbol(words[1], self.engine.instrument)
        # The reply below says a failed entry in the chat the alerts go to (telegram_chat_ids):
        # not told twice. One that fails after the reply (cancelled unfilled at its deadline)
        # alerts entry_failed.
        cmd = OpenPosition(symbol, side, usd, qty, None, None, "telegram", caller_tells=True)
        position = await self.engine.open_position(cmd)
        if position.status is PositionStatus.FAILED:
            why = await self.engine.failure(position.id, EventKind.ENTRY_FAILED)
            return Reply(failed_text(position, why))
        view = await self._view(position)
        return Reply(opened_text(position, view))

    def _size(self, words: list[str]) -> tuple[Decimal | None, Decimal | None]:
        if not words:
            return self.default_usd, None
        raw = words[0].lstrip("$")
        unit = (words[1] if len(words) > 1 else "usd").lower()
        if unit not in ("usd", "qty", "$", "usdt"):
            raise ValidationError("unit", f"must be usd or qty, not {unit!r}")
        field_ = "qty" if unit == "qty" else "usd"
        try:  # the API's own bounds and words for the same field (finite, > 0, <= 1e12, ...)
            amount = positive_number(raw)
        except ValueError as exc:
            raise ValidationError(field_, str(exc)) from None
        return (None, amount) if field_ == "qty" else (amount, None)

    async def _view(self, position: Position) -> PositionView | None:
        for view in await self.engine.list_positions():
            if view.position.id == position.id:
                return view
        return None

    async def _close(self, chat_id: int, args: list[str]) -> Reply:
        if len(args) != 1:
            return Reply("usage: /close <id|symbol|all>")
        target = args[0]
        if target.lower() == "all":
            views = await self.engine.list_positions()
            if not views:
                return Reply("no open positions")
            nonce = secrets.token_hex(4)
            asked = frozenset(v.position.id for v in views)
            now = self.now()
            pending = {n: q for n, q in self._confirm.get(chat_id, {}).items() if q[0] >= now}
            pending[nonce] = (now + CONFIRM_FOR, asked)
            self._confirm[chat_id] = pending
            return Reply(
                f"close all {len(views)} open position(s) at market?",
                [(f"Close all {len(views)}", f"closeall:{nonce}"), ("Cancel", f"cancel:{nonce}")],
            )
        views = await self.engine.list_positions()
        ids = [v.position.id for v in views if v.position.id == target]
        if not ids:
            symbol = _symbol_or_none(target, self.engine.instrument)
            ids = [v.position.id for v in views if symbol is not None and v.position.symbol == symbol]
        if not ids:
            if any(c.isdigit() for c in target) and len(target) >= 8:
                ids = [PositionId(target)]  # a closed or unknown id: the engine says which
            else:
                return Reply(f"no open position matches {target!r}; /positions lists them")
        return Reply("\n".join([await self._close_one(pid) for pid in ids]))

    async def _close_one(self, pid: PositionId) -> str:
        try:
            return closed_text(await self.engine.close_position(ClosePosition(pid, "telegram")))
        except Exception as exc:
            return f"{pid}: {refusal_text(exc)}"

    async def on_button(self, chat_id: int, data: str) -> Reply:
        action, _, nonce = data.partition(":")
        pending = self._confirm.get(chat_id, {}).pop(nonce, None)  # one press per question
        if pending is None or self.now() > pending[0]:
            return Reply("that confirmation has expired; send /close all again")
        if action != "closeall":
            return Reply("cancelled: nothing was closed")
        asked = pending[1]
        views = await self.engine.list_positions()
        # What the trader confirmed: the positions the question counted. One opened since (a
        # signal between the question and the press) is not closed unasked; it is named.
        newer = [v.position for v in views if v.position.id not in asked]
        lines = list(
            await asyncio.gather(*(self._close_one(v.position.id) for v in views if v.position.id in asked))
        )
        if not lines:
            lines = [f"the {len(asked)} position(s) you confirmed are no longer open: nothing was closed"]
        lines += [
            f"not closed: {p.id} {p.symbol} {p.side} opened after you asked; send /close all again to"
            " close it too"
            for p in newer
        ]
        return Reply("\n".join(lines))

    # ------------------------------------------------------------- controls

    async def _pause(self, chat_id: int, args: list[str]) -> Reply:
        controls = await self.engine.pause(" ".join(args) or "from Telegram")
        return Reply(f"paused: no new entries; exits and protection keep working ({controls_text(controls)})")

    async def _resume(self, chat_id: int, args: list[str]) -> Reply:
        await self.engine.resume()
        return Reply("resumed: new entries accepted")

    async def _kill(self, chat_id: int, args: list[str]) -> Reply:
        flatten = bool(args) and args[0].lower() == "flatten"
        if args and not flatten:
            return Reply("usage: /kill [flatten]", done=False)
        report = await self.engine.kill(flatten, "from Telegram")
        return Reply(kill_text(report, flatten))

    async def _reconcile(self, chat_id: int, args: list[str]) -> Reply:
        report = await self.engine.reconcile()
        lines = [
            f"checked {report.positions_checked} positions: "
            f"{len(report.findings) or 'no'} discrepanc{'y' if len(report.findings) == 1 else 'ies'}"
        ]
        lines += [
            f"{f.discrepancy.kind} {f.discrepancy.symbol}: expected {f.discrepancy.expected}, "
            f"found {f.discrepancy.found}; {f.action}"
            for f in report.findings
        ]
        return Reply("\n".join(lines))

    # --------------------------------------------------------------- watching

    async def _positions(self, chat_id: int, args: list[str]) -> Reply:
        views = await self.engine.list_positions()
        if not views:
            return Reply("no open positions")
        return Reply("\n\n".join(position_text(v) for v in views))

    async def _status(self, chat_id: int, args: list[str]) -> Reply:
        return Reply(status_text(self.engine.status()))

    async def _health(self, chat_id: int, args: list[str]) -> Reply:
        """What /healthz says: ok only when ready with no alarm (a position naked beyond the
        protection window, the exchange unreachable), each alarm named first."""
        s = self.engine.status()
        if s.state is EngineState.READY and not s.alarms:
            extra = f" ({'; '.join(s.reasons)})" if s.reasons else ""
            return Reply(f"ok: ready{extra}")
        return Reply(f"unavailable: {'; '.join([*s.alarms, *s.reasons]) or s.state.value}")

    async def _events(self, chat_id: int, args: list[str]) -> Reply:
        events = await self.engine.list_events(args[0] if args else None, limit=15)
        if not events:
            return Reply("no events")
        return Reply("\n".join(f"{e.at:%H:%M:%S} {e.kind.value}: {e.message}" for e in events))

    async def _help(self, chat_id: int, args: list[str]) -> Reply:
        return Reply(HELP)


# ------------------------------------------------------------------ rendering


def refusal_text(exc: BaseException) -> str:
    """The same words the API uses for the same refusal."""
    if isinstance(exc, LimitExceeded):
        return f"refused by {exc.limit}: {exc.message}; nothing was sent"
    if isinstance(exc, ValidationError):
        return f"{exc.field}: {exc.message}"
    if isinstance(exc, AlreadyExists):
        return f"{exc} (position {exc.position.id})"
    if isinstance(exc, TradingRefused):
        return f"refused: {exc.reason}; nothing was sent"
    if isinstance(exc, StoreUnavailable):
        return "database unavailable, nothing was sent"
    if isinstance(exc, PositionNotFound):
        return str(exc)
    if isinstance(exc, ExchangeUnavailable):
        return f"exchange unavailable: {exc}"
    if isinstance(exc, ExchangeError):
        return f"exchange error: {exc}; check /positions"
    log.error("telegram_command_failed", error=repr(exc), exc_info=exc)
    return "internal error; see the engine log"


def _dec(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def opened_text(p: Position, view: PositionView | None) -> str:
    if p.status is PositionStatus.OPENING:
        return f"{p.id} {p.symbol} {p.side}: the entry is still being resolved; see /positions"
    if p.status is PositionStatus.CLOSED:
        return f"{p.id} {p.symbol} {p.side} closed at once: {p.exit_reason}"
    resting = view.stop_resting if view is not None else p.status is PositionStatus.PROTECTED
    return (
        f"✅ {p.id} {p.symbol} {p.side} {_dec(p.remaining)} @ {_dec(p.entry_price)}, "
        f"stop {_dec(p.stop_price)} {'resting' if resting else 'NOT resting'} ({p.status})"
    )


def failed_text(p: Position, why: str | None) -> str:
    """An entry the exchange did not fill: no tick, nothing open, and why (the API's 502 / 503)."""
    reason = why if why is not None else f"see /events {p.id}"
    return f"❌ {p.id} {p.symbol} {p.side}: the entry was not filled ({reason}); nothing is open"


def closed_text(p: Position) -> str:
    return f"{p.id} {p.symbol} {p.side} {p.status}: realized PnL {_dec(p.realized_pnl)}"


def position_text(view: PositionView) -> str:
    p = view.position
    stop = "resting ✅" if view.stop_resting else "NOT resting ⚠️"
    tp1 = "hit" if p.tp1_hit else f"{_dec(p.tp1_price)} for {_dec(p.tp1_qty)}"
    tp2 = "hit" if p.tp2_hit else f"{_dec(p.tp2_price)} for {_dec(p.tp2_qty)}"
    trailing = f"on (peak {_dec(p.watermark)})" if p.trailing_active else "off"
    return "\n".join(
        [
            f"{p.id} {p.symbol} {p.side} {_dec(p.remaining)} ({p.status})",
            f"entry {_dec(p.entry_price)} · mark {_dec(p.last_price)} · uPnL {_dec(view.unrealized_pnl)}",
            f"stop {_dec(p.stop_price)} {stop}",
            f"TP1 {tp1} · TP2 {tp2} · trailing {trailing}",
        ]
    )


def controls_text(c: Controls) -> str:
    on = ["killed"] if c.killed else (["paused"] if c.paused else [])
    if c.daily_loss_until is not None:
        on.append(f"daily loss pause until {c.daily_loss_until:%Y-%m-%d %H:%M} UTC")
    text = ", ".join(on) or "none"
    return f"{text}: {c.reason}" if on and c.reason else text


def status_text(s: EngineStatus) -> str:
    lines = [
        f"state: {s.state.value}{'' if s.accepting_signals else ' (not accepting signals)'}",
        f"open positions: {s.open_positions} (unprotected: {s.unprotected_positions})",
        f"controls: {controls_text(s.controls)}",
        f"exchange: {s.exchange} · database: {s.database}",
    ]
    if s.last_reconcile_at is not None:
        lines.append(f"last reconcile: {s.last_reconcile_at:%H:%M:%S} UTC")
    lines += [f"why not: {r}" for r in s.reasons]
    lines += [f"warning: {w}" for w in s.warnings]
    return "\n".join(lines)


def kill_text(report: KillReport, flatten: bool) -> str:
    line = "🛑 kill switch on: no new entries"
    if flatten:
        pnl = sum((p.realized_pnl for p in report.closed), Decimal(0))
        line += f"; closed {len(report.closed)} position(s), realized PnL {_dec(pnl)}"
        if report.cancelled_orders:
            line += f", cancelled {report.cancelled_orders} order(s)"
        if report.failed:
            line += "; NOT closed: " + "; ".join(f"{pid}: {why}" for pid, why in report.failed.items())
    return line


def _symbol_or_none(raw: str, lookup: Callable[[str], Instrument | None]) -> Symbol | None:
    try:
        return normalise_symbol(raw, lookup)
    except ValidationError:
        return None


# ------------------------------------------------------------ many accounts

READS = ("positions", "status", "health", "events")
"""Commands that, without @NAME, show every account."""


class Responder(Protocol):
    async def respond(self, chat_id: int, text: str) -> Reply: ...
    async def on_button(self, chat_id: int, data: str) -> Reply: ...


Accounts = Mapping[str, "Commands | str"]
"""Each account's Commands, or why it is not running."""
PauseAccount = Callable[[str, str], Awaitable["Controls | str"]]
"""(account, reason) -> a pause naming that account: its controls, or why it is not in force now,
kept for its start or not (Fleet.pause_account)."""
KillAccount = Callable[[str, bool, str], Awaitable["KillReport | str"]]
"""(account, flatten, reason) -> one account's part of a kill of every account: its report, or
why its kill switch is not on now, the kill kept for its start or not (Fleet.kill_account)."""


class FleetCommands:
    """Commands for several accounts: `@NAME` picks one; each reply says whose it is."""

    def __init__(
        self,
        accounts: Accounts,
        kill_account: KillAccount | None = None,
        pause_account: PauseAccount | None = None,
    ) -> None:
        """`accounts`: each account's Commands, or why it is not running. `kill_account`: the
        fleet's part of a kill of every account for one account (it keeps the kill for one that
        is not running, so it starts killed); `pause_account` keeps a pause the same way."""
        self.accounts = accounts
        self.kill_account = kill_account
        self.pause_account = pause_account

    def _listed(self) -> str:
        return ", ".join(f"@{name}" for name in self.accounts)

    async def respond(self, chat_id: int, text: str) -> Reply:
        words = text.strip().split()
        if len(self.accounts) == 1 and not any(w.startswith("@") for w in words[1:]):
            return await self._one(next(iter(self.accounts)), chat_id, text)
        if not words:
            return Reply(HELP + f"\naccounts: {self._listed()}; add @NAME to a command")
        # `@Alt` is alt: no two accounts' names differ only in case; answered as configured
        named = [w[:1] + account_spelled(w[1:], self.accounts) for w in words[1:] if w.startswith("@")]
        rest = " ".join([words[0], *(w for w in words[1:] if not w.startswith("@"))])
        name = words[0].lstrip("/").split("@")[0].lower()
        if len(named) > 1:
            return Reply(f"name one account, not {' '.join(named)}")
        if named and name == "kill" and named[0][1:] in self.accounts and self.kill_account is not None:
            return await self._kill_named(named[0][1:], chat_id, rest)
        if named and name == "pause" and isinstance(self.accounts.get(named[0][1:]), str):
            return await self._pause_kept(named[0][1:], rest)
        if named:
            return await self._one(named[0][1:], chat_id, rest)
        if len(self.accounts) == 1:
            return await self._one(next(iter(self.accounts)), chat_id, rest)
        if name in ("help", "start"):
            return Reply(HELP + f"\naccounts: {self._listed()}; add @NAME to a command, e.g. short sol @main")
        if name == "kill":
            args = rest.split()[1:]
            flatten = bool(args) and args[0].lower() == "flatten"
            if args and not flatten:  # nothing done, nothing kept (a typo is not a kill)
                return Reply("usage: /kill [flatten]; nothing was done", done=False)
            # At once: one account's slow flatten (its exchange not answering) holds no other back.
            replies = await asyncio.gather(
                *(self._kill(account, chat_id, rest, flatten) for account in self.accounts)
            )
            missed = [account for account, r in zip(self.accounts, replies, strict=True) if not r.done]
            header = "kill switch on ALL accounts:"
            if missed:  # a partial kill is never read as done
                stopped = [account for account in self.accounts if account not in missed]
                header = (
                    f"kill switch NOT on for {', '.join(missed)} (on for: {', '.join(stopped) or 'none'}):"
                )
            return Reply("\n".join([header, *(r.text for r in replies)]), done=not missed)
        if name in READS:
            replies = [await self._one(account, chat_id, rest) for account in self.accounts]
            return Reply("\n\n".join(r.text for r in replies))
        return Reply(
            f"which account? add one of {self._listed()}, e.g. `{rest} @{next(iter(self.accounts))}`;"
            " nothing was sent"
        )

    async def _kill_named(self, name: str, chat_id: int, text: str) -> Reply:
        """`/kill @NAME`: that account's part of a kill of every account, so an account not
        running now (its start failing, the fleet about to start it again) has the kill kept and
        starts with its kill switch on. Naming the account is never weaker than naming none."""
        args = text.split()[1:]
        flatten = bool(args) and args[0].lower() == "flatten"
        if args and not flatten:  # nothing done, nothing kept (a typo is not a kill)
            return Reply("usage: /kill [flatten]; nothing was done", done=False)
        reply = await self._kill(name, chat_id, text, flatten)
        if reply.done:  # one account: its replies as they always were, without its name
            return reply if len(self.accounts) > 1 else Reply(reply.text.removeprefix(f"[{name}] "))
        return Reply(f"kill switch NOT on for {name}:\n{reply.text}", done=False)

    async def _pause_kept(self, name: str, text: str) -> Reply:
        """`/pause @NAME` for an account not running now: kept for its start (as `/kill @NAME`
        is), so it starts paused; the answer says it is NOT in force yet."""
        if self.pause_account is None:
            return Reply(f"[{name}] not running: {self.accounts[name]}", done=False)
        try:
            outcome = await self.pause_account(name, " ".join(text.split()[1:]) or "from Telegram")
        except Exception as exc:
            return Reply(f"[{name}] {refusal_text(exc)}", done=False)
        if isinstance(outcome, str):
            return Reply(f"pause NOT in force for {name}:\n[{name}] {outcome}", done=False)
        return Reply(
            f"[{name}] paused: no new entries; exits and protection keep working ({controls_text(outcome)})"
        )

    async def _kill(self, name: str, chat_id: int, text: str, flatten: bool) -> Reply:
        """One account's part of a kill of every account, decided as the API's is."""
        if self.kill_account is None or name not in self.accounts:
            return await self._one(name, chat_id, text)
        try:
            outcome = await self.kill_account(name, flatten, "from Telegram")
        except Exception as exc:  # one account's refusal does not stop the others' kill
            return Reply(f"[{name}] {refusal_text(exc)}", done=False)
        if isinstance(outcome, str):
            return Reply(f"[{name}] {outcome}", done=False)
        return Reply(f"[{name}] {kill_text(outcome, flatten)}")

    async def _one(self, name: str, chat_id: int, text: str) -> Reply:
        commands = self.accounts.get(name)
        if commands is None:
            return Reply(f"unknown account @{name}; accounts: {self._listed()}; nothing was sent", done=False)
        if isinstance(commands, str):
            return Reply(f"[{name}] not running: {commands}", done=False)
        reply = await commands.respond(chat_id, text)
        if len(self.accounts) == 1:  # one account: `@NAME` accepted, replies as they always were
            return reply
        buttons = [(label, f"{name}|{data}") for label, data in reply.buttons]
        return Reply(f"[{name}] {reply.text}", buttons, reply.done)

    async def on_button(self, chat_id: int, data: str) -> Reply:
        if len(self.accounts) == 1:
            only = next(iter(self.accounts.values()))
            if isinstance(only, Commands):
                return await only.on_button(chat_id, data)
        name, _, inner = data.partition("|")
        commands = self.accounts.get(name)
        if not isinstance(commands, Commands):
            return Reply("that confirmation has expired; send the command again")
        reply = await commands.on_button(chat_id, inner)
        return Reply(f"[{name}] {reply.text}")


# ----------------------------------------------------------------- the bot


class LiveFleetCommands:
    """FleetCommands over the accounts as they are when each command or press arrives: a fleet
    starts an account again after a failure (a new engine), or one whose first start failed."""

    def __init__(
        self,
        accounts: Callable[[], Accounts],
        kill_account: KillAccount | None = None,
        pause_account: PauseAccount | None = None,
    ) -> None:
        self.accounts = accounts
        self.kill_account = kill_account
        self.pause_account = pause_account

    def _now(self) -> FleetCommands:
        return FleetCommands(self.accounts(), self.kill_account, self.pause_account)

    async def respond(self, chat_id: int, text: str) -> Reply:
        return await self._now().respond(chat_id, text)

    async def on_button(self, chat_id: int, data: str) -> Reply:
        return await self._now().on_button(chat_id, data)


class TelegramBot:
    """Polls getUpdates and answers allowlisted chats; runs beside the engine, never in its way."""

    def __init__(
        self,
        bot: Bot,
        engine: BotEngine | None,
        chat_ids: set[int],
        default_usd: Decimal,
        now: Callable[[], datetime],
        *,
        long_poll: int = LONG_POLL,
        commands: Responder | None = None,
        engines: Callable[[], Sequence[BotEngine]] | None = None,
        record: UpdateRecord,
        user_ids: set[int] | None = None,
    ) -> None:
        """`commands`/`engines`: for several accounts, their FleetCommands and what gives every
        running account's engine as they are now (each shows the bot's notes and warnings; the
        bot stands by only when every one does, or none runs). `record`: where the bot records
        the highest update id it took (one per bot, whatever the accounts). `user_ids`: the
        users whose messages and presses are served (None: every member of an allowlisted chat)."""
        self.bot = bot
        self.record = record
        self._taken: TakenUpdate | None = None
        self._unrecorded = 0
        """Batches in a row whose record could not be written."""
        self._told_up_to = -1
        """The highest update id whose chat was told it could not run (its record not written)."""
        self._unsure: tuple[datetime, str] | None = None
        """Without a record to start from (none yet, or unreadable): a message sent before this
        time is not executed, as an earlier warden may have run it; and why."""
        self._engines = engines
        self._engine = engine
        self.chat_ids = chat_ids
        self.user_ids = user_ids
        self.strange_users: set[int | None] = set()
        """Users of an allowlisted chat not in `user_ids` whose updates were ignored (logged once)."""
        if commands is None:
            assert engine is not None, "one engine, or the commands of several"
            commands = Commands(engine, default_usd, now)
        self.commands: Responder = commands
        self.now = now
        self.long_poll = long_poll
        self.strangers: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._offset: int | None = None
        self.username: str | None = None
        """The bot's own @username (getMe): a `/cmd@name` naming another bot is not for warden."""
        self._other_at: datetime | None = None
        """When a getUpdates was last ended by another program's poll on this token."""

    @property
    def engines(self) -> list[BotEngine]:
        if self._engines is not None:
            return list(self._engines())
        return [] if self._engine is None else [self._engine]

    async def run(self) -> None:
        """Poll forever; a Telegram outage backs off (doubling to 30 s) and is a /status warning.

        Each batch runs only once the highest id in it is recorded; a record that cannot be
        written runs nothing (a /status warning) and the same batch is fetched again later."""
        failures = 0
        removed = 0  # webhooks removed since the last getUpdates that answered
        loaded = False
        self._note(f"starting: {len(self.chat_ids)} allowlisted chat(s)")
        while True:
            try:
                if all(e.status().state is EngineState.READ_ONLY for e in self.engines):  # or none runs
                    loaded = False  # the lease holder polled meanwhile: read its record again
                    await asyncio.sleep(1.0)  # a standby leaves the chat to the lease holder
                    continue
                if not loaded:
                    await self._start_from_record()
                    loaded = True
                if self.username is None:
                    await self.bot.initialize()  # getMe: the bot's own username (retried like a poll)
                    self.username = self.bot.username
                updates = await self.bot.get_updates(
                    offset=self._offset,
                    timeout=self.long_poll,
                    allowed_updates=["message", "edited_message", "callback_query"],
                )
            except Exception as exc:  # never let the bot take the engine's task group down
                webhook = isinstance(exc, Conflict) and WEBHOOK in exc.message.lower()
                if webhook and await self._remove_webhook(exc):
                    removed += 1
                    if removed == 1:  # polled again at once; a webhook set again at once backs off
                        continue
                failures += 1
                self._poll_failed(exc, failures)
                await asyncio.sleep(min(BACKOFF_MAX, 0.5 * 2 ** min(failures, 8)))
                continue
            self._polled(failures)
            failures = removed = 0
            if not await self._take(updates):  # not recorded: nothing ran; the same batch comes again
                await asyncio.sleep(min(BACKOFF_MAX, 0.5 * 2 ** min(self._unrecorded, 8)))

    def _poll_failed(self, exc: Exception, failures: int) -> None:
        if isinstance(exc, Conflict) and OTHER_POLLER in exc.message.lower():
            self._other_poller(exc)  # Telegram answers: not an outage
        else:
            self._unreachable(exc, failures)

    def _polled(self, failures: int) -> None:
        """A getUpdates answered: Telegram is reachable; another poller seen long enough ago is gone."""
        if failures or any("telegram" in e.warnings for e in self.engines):
            log.info("telegram_reachable", after_failures=failures)
        for engine in self.engines:
            engine.warnings.pop("telegram", None)
        if self._other_at is not None and self.now() - self._other_at > OTHER_POLLER_QUIET:
            log.info("telegram_other_poller_gone", last_seen=str(self._other_at))
            self._other_at = None
            for engine in self.engines:
                engine.warnings.pop("telegram_other_poller", None)
        self._note(f"on: polling, {len(self.chat_ids)} allowlisted chat(s)")

    def _other_poller(self, conflict: Conflict) -> None:
        """Another program polls this token (a second warden, another bot's code on a reused
        token): Telegram hands each update to one of them, so commands may never reach warden —
        a /kill among them — and a poll that answers in between proves nothing. Told to every
        allowlisted chat and logged as an error once per conflict, named on /status until it has
        been quiet for OTHER_POLLER_QUIET."""
        now, last = self.now(), self._other_at
        self._other_at = now
        why = _safe(conflict, self.bot.token)
        text = (
            f"another program polls this bot's token ({why}): Telegram hands each message to one of"
            " them, so commands sent to the bot may reach it instead of warden and never run here;"
            " give warden a bot token of its own"
        )
        for engine in self.engines:
            engine.warnings["telegram_other_poller"] = f"Telegram: {text}"
        if last is not None and now - last <= OTHER_POLLER_QUIET:
            return
        log.error("telegram_other_poller", error=why)
        for chat_id in self.chat_ids:
            task = asyncio.get_running_loop().create_task(self._tell(chat_id, f"⚠️ {text}"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _remove_webhook(self, conflict: Exception) -> bool:
        """A webhook set on the bot (by another tool, earlier) makes the Bot API refuse every
        getUpdates: every command would go to it, unanswered, while alerts still arrive and the bot
        looks alive. warden is this token's poller, so it removes the webhook, as python-telegram-
        bot's own polling does on start; the updates waiting are kept. Whether it was removed."""
        try:
            await self.bot.delete_webhook(drop_pending_updates=False)
        except TelegramError as exc:
            log.warning("telegram_webhook_not_removed", error=_safe(exc, self.bot.token))
            return False
        log.warning("telegram_webhook_removed", error=_safe(conflict, self.bot.token))
        return True

    async def _take(self, updates: Sequence[Update]) -> bool:
        """Record the highest id of the updates not taken already, then run them; False when the
        record cannot be written: nothing runs, and the offset stays (Telegram gives them again)."""
        fresh = self._not_taken(updates) if updates else []
        if fresh:
            taken = TakenUpdate(max(u.update_id for u in fresh), self.now())
            try:  # before any of them runs; in a thread: an fsync never stalls the engine's loop
                await asyncio.to_thread(self.record.save, taken)
            except StoreUnavailable as exc:
                self._unrecorded += 1
                self._not_recorded(exc, len(fresh))
                self._tell_not_run(fresh, exc)
                return False
            if self._unrecorded:
                log.info("telegram_record_written", after_failures=self._unrecorded, record=self.record.where)
            self._unrecorded = 0
            self._taken = taken
            for engine in self.engines:
                engine.warnings.pop("telegram_record", None)
        if updates:
            self._offset = max(u.update_id for u in updates) + 1
        for update in fresh:
            task = asyncio.get_running_loop().create_task(self.handle(update))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _start_from_record(self) -> None:
        """Where the last bot over this data directory stopped: its offset is the next getUpdates's
        (Telegram drops what it took). Without one, a message sent before now is not executed."""
        try:
            self._taken = await asyncio.to_thread(self.record.load)
        except StoreUnavailable as exc:
            self._taken = None
            try:
                where = f"moved aside to {await asyncio.to_thread(self.record.set_aside)}"
            except StoreUnavailable as aside:
                where = f"and cannot be moved aside: {aside}"
            why = f"its record of the commands it took was unreadable ({exc}; {where})"
            log.error("telegram_record_unreadable", error=str(exc), set_aside=where)
            for engine in self.engines:
                engine.warnings["telegram_record"] = (
                    f"Telegram: {why}; commands sent before this start were not executed"
                )
            self._unsure = (self.now(), why)
        else:
            if self._taken is None:
                self._unsure = (self.now(), f"no record of the commands this bot took ({self.record.where})")
        self._offset = None if self._taken is None else self._taken.update_id + 1
        log.info(
            "telegram_record_read",
            record=self.record.where,
            last_taken=None if self._taken is None else self._taken.update_id,
        )

    def _not_taken(self, updates: Sequence[Update]) -> list[Update]:
        """The updates not taken already: an id above the recorded one, or any id once the record
        is older than IDS_RESTART_AFTER (Telegram's ids started again). The rest are skipped."""
        taken = self._taken
        if taken is None or self.now() - taken.at > IDS_RESTART_AFTER:
            if taken is not None and any(u.update_id <= taken.update_id for u in updates):
                log.warning(
                    "telegram_update_ids_restarted", last_taken=taken.update_id, taken_at=str(taken.at)
                )
            return list(updates)
        fresh = [u for u in updates if u.update_id > taken.update_id]
        if len(fresh) < len(updates):
            skipped = [u.update_id for u in updates if u.update_id <= taken.update_id]
            log.warning(
                "telegram_update_taken_already_skipped", update_ids=skipped, last_taken=taken.update_id
            )
        return fresh

    def _not_recorded(self, exc: StoreUnavailable, count: int) -> None:
        for engine in self.engines:
            engine.warnings["telegram_record"] = (
                f"Telegram commands are not executed: cannot record which were taken ({exc}); retrying"
            )
        failures = self._unrecorded
        if failures in (1, 10) or failures % 100 == 0:
            log.error("telegram_record_not_written", error=str(exc), updates=count, failures=failures)

    def _tell_not_run(self, fresh: Sequence[Update], exc: StoreUnavailable) -> None:
        """Each allowlisted chat that sent one of `fresh` hears at once that it did not run (once
        per update, however often the batch comes again): a /kill met with silence reads as done."""
        for update in fresh:
            chat = update.effective_chat
            if update.update_id <= self._told_up_to or chat is None or chat.id not in self.chat_ids:
                continue
            if not self._user_served(update):
                continue
            text = (
                f"not executed: warden cannot record which Telegram commands it took ({exc}); it"
                f" retries, and runs this once it can if that is within {int(STALE.total_seconds() // 60)}"
                " min, else send it again. Meanwhile the HTTP API works (`warden kill`, `warden pause`)"
            )
            task = asyncio.get_running_loop().create_task(self._tell(chat.id, text))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._told_up_to = max([self._told_up_to, *(u.update_id for u in fresh)])

    async def _tell(self, chat_id: int, text: str) -> None:
        try:
            await self.send(chat_id, Reply(text))
        except Exception as exc:  # Telegram refused or unreachable: the /status warning stands
            log.warning("telegram_reply_failed", chat_id=chat_id, error=_safe(exc, self.bot.token))

    def _note(self, text: str) -> None:
        for engine in self.engines:
            engine.notes["telegram"] = text

    def _unreachable(self, exc: Exception, failures: int) -> None:
        why = _safe(exc, self.bot.token)
        for engine in self.engines:
            engine.warnings["telegram"] = (
                f"Telegram unreachable ({why}); commands are not received, alerts are kept and sent later"
            )
        if failures in (1, 10) or failures % 100 == 0:
            log.warning("telegram_unreachable", error=why, failures=failures)

    async def handle(self, update: Update) -> None:
        """One update: served if its chat is allowlisted, else ignored (logged once per chat)."""
        chat = update.effective_chat
        if chat is None:
            return
        if chat.id not in self.chat_ids:
            if chat.id not in self.strangers:
                self.strangers.add(chat.id)
                log.warning("telegram_stranger_ignored", chat_id=chat.id)
            return
        if not self._user_served(update):
            user = update.effective_user
            user_id = None if user is None else user.id
            if user_id not in self.strange_users:
                self.strange_users.add(user_id)
                log.warning("telegram_user_ignored", chat_id=chat.id, user_id=user_id)
            return
        try:
            if update.callback_query is not None:
                await self._button(chat.id, update.callback_query)
            elif update.message is not None and update.message.text:
                await self._message(chat.id, update.message)
            elif update.edited_message is not None and update.edited_message.text:
                await self._edited(chat.id, update.edited_message)
        except TelegramError as exc:
            log.warning("telegram_reply_failed", chat_id=chat.id, error=_safe(exc, self.bot.token))
        except Exception as exc:
            log.error("telegram_update_failed", chat_id=chat.id, error=_safe(exc, self.bot.token))

    def _user_served(self, update: Update) -> bool:
        """Whether the user who sent `update` may command warden: with `user_ids`, only they — an
        allowlisted group (to share alerts) does not make every member a trader of the account."""
        if self.user_ids is None:
            return True
        user = update.effective_user
        return user is not None and user.id in self.user_ids

    def _for_another_bot(self, chat_id: int, text: str) -> bool:
        """A group with privacy mode off shows warden every bot's commands: not ours, not answered."""
        addressee = addressed_to(text)
        if addressee is None or (self.username is not None and addressee.lower() == self.username.lower()):
            return False
        log.info("telegram_other_bot_ignored", chat_id=chat_id, addressee=addressee)
        return True

    async def _message(self, chat_id: int, message: Message) -> None:
        if self._for_another_bot(chat_id, message.text or ""):
            return
        age = self.now() - message.date
        late: str | None = None
        if age > STALE:
            late = f"sent {int(age.total_seconds() // 60)} min ago while warden was away"
        elif self._unsure is not None and message.date < self._unsure[0].replace(microsecond=0):
            late = f"sent before warden started, and it has {self._unsure[1]}"
        if late is None:
            await self.send(chat_id, await self.commands.respond(chat_id, message.text or ""))
            return
        safe = late_part(message.text or "")
        if safe is None:
            await self.send(chat_id, Reply(f"not executed: {late}; send it again"))
            return
        log.info("telegram_late_stop_applied", chat_id=chat_id, late=late)
        reply = await self.commands.respond(chat_id, safe)
        note = (
            f"(applied although {late}: stopping entries late is the safe side" if reply.done else f"({late}"
        )
        if safe.split() != (message.text or "").split():
            note += "; its flatten was NOT done: send /kill flatten again to close the positions"
        await self.send(chat_id, Reply(f"{reply.text}\n{note})", reply.buttons, reply.done))

    async def _edited(self, chat_id: int, message: Message) -> None:
        """An edited command is not run (an old message edited could run it long after, or twice)
        but is answered at once: a `/kil` edited into `/kill` met with silence reads as done. An
        edit that is no command (a group's chatter) or is another bot's gets no answer."""
        text = message.text or ""
        if not is_command(text) or self._for_another_bot(chat_id, text):
            return
        await self.send(
            chat_id, Reply("not executed: an edited message is not run; send it as a new message", done=False)
        )

    async def _button(self, chat_id: int, query: CallbackQuery) -> None:
        try:  # stops the button's spinner; the Bot API refuses it for a press received late
            await query.answer()
        except TelegramError as exc:  # the press is served all the same
            log.info("telegram_button_not_answered", chat_id=chat_id, error=_safe(exc, self.bot.token))
        reply = await self.commands.on_button(chat_id, query.data or "")
        await self.send(chat_id, reply)

    async def send(self, chat_id: int, reply: Reply) -> None:
        markup = None
        if reply.buttons:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(label, callback_data=data) for label, data in reply.buttons]]
            )
        for start in range(0, max(len(reply.text), 1), MAX_TEXT):
            await self._send_one(chat_id, reply.text[start : start + MAX_TEXT], markup)
            markup = None

    async def _send_one(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> None:
        """One message; a 429 (flood control) is sent again after the retry_after Telegram gives,
        and a 5xx or a network error after a short pause: the command it answers has run, and a
        trader who hears nothing of an open sends it again. (A reply whose answer was lost may
        arrive twice; a reply runs nothing.) A 4xx is not sent again: it would be refused again."""
        for attempt in range(1, REPLY_TRIES + 1):
            try:
                await self.bot.send_message(chat_id, text, reply_markup=markup)
                return
            except RetryAfter as exc:
                wait = _retry_after(exc)
                if attempt == REPLY_TRIES or wait > RETRY_AFTER_MAX:
                    raise
            except NetworkError as exc:  # PTB's 5xx, timeouts and connection errors
                if attempt == REPLY_TRIES:
                    raise
                wait = REPLY_PAUSE * 2 ** (attempt - 1)
                log.info(
                    "telegram_reply_retried", chat_id=chat_id, error=_safe(exc, self.bot.token), wait=wait
                )
            await asyncio.sleep(wait)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


NAMES = frozenset(
    {*SIDES, "positions", "status", "health", "close", "pause", "resume", "kill", "reconcile", "events"}
    | {"help", "start"}
)
"""Every command's name (Commands._handlers and the sides)."""


def is_command(text: str) -> bool:
    """Whether `text` reads as a command: `/anything`, or a command's name first (`short sol`)."""
    words = text.split()
    return bool(words) and (words[0].startswith("/") or words[0].split("@")[0].lower() in NAMES)


LATE_SAFE = ("kill", "pause")
"""Commands run however late they arrive (sent while warden was away): they only stop entries,
and a stop that waits for the trader to send it again lets warden take signals meanwhile."""


def late_part(text: str) -> str | None:
    """What of a command that arrived late may still run: a /kill without its flatten (a close
    at a later price, of positions perhaps opened since, is not the safe side), a /pause; None
    for every other command (it runs nothing)."""
    words = text.split()
    name = words[0].lstrip("/").split("@")[0].lower() if words else ""
    if name not in LATE_SAFE:
        return None
    return " ".join(w for w in words if name != "kill" or w.lower() != "flatten")


def addressed_to(text: str) -> str | None:
    """The bot a command is addressed to: `/close@OtherBot all` -> "OtherBot"; None without one
    (`/close all`, `short sol @main`: an account is a word of its own)."""
    words = text.split(maxsplit=1)
    if not words:
        return None
    command, at, name = words[0].partition("@")
    return name if at and command.lstrip("/") else None


def _retry_after(exc: RetryAfter) -> float:
    """Seconds Telegram asked to wait (PTB gives an int or a timedelta, and warns of the change).
    The alert channel (adapters.telegram.retry_after) reads it the same way; entrypoints do not
    import adapters, and five lines are not worth a module both could."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _safe(exc: BaseException, token: str) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.replace(token, "<token>") if token else text


async def run_bot(runtime: Runtime) -> None:
    """Beside the engine (bootstrap.running(beside=...)): poll until cancelled."""
    if runtime.telegram is None:
        return
    assert runtime.telegram_record is not None, "a runtime that made the bot made its record"
    settings = runtime.settings
    if not settings.chat_ids:
        log.warning("telegram_no_chats", hint="set WARDEN_TELEGRAM_CHAT_IDS; every chat is ignored")
    commands = Commands(runtime.engine, settings.default_usd, runtime.clock.now)
    bot = TelegramBot(
        runtime.telegram,
        runtime.engine,
        set(settings.chat_ids),
        settings.default_usd,
        runtime.clock.now,
        commands=FleetCommands({settings.account: commands}),  # `@default` accepted, like ?account=
        record=runtime.telegram_record,
        user_ids=set(settings.user_ids) or None,
    )
    try:
        await bot.run()
    finally:
        await bot.stop()


async def run_fleet_bot(fleet: Fleet) -> None:
    """Beside every account's engine (bootstrap.running_fleet(beside=...)): one bot, `@NAME` routes.

    Each command finds its account's runtime as it is then: the fleet starts an account again
    after a failure (a new engine), or starts one whose first start failed."""
    if fleet.telegram is None:
        return
    assert fleet.telegram_record is not None, "the fleet that made the bot made its record"
    settings = fleet.settings
    if not settings.chat_ids:
        log.warning("telegram_no_chats", hint="set WARDEN_TELEGRAM_CHAT_IDS; every chat is ignored")
    made: dict[str, tuple[Runtime, Commands]] = {}  # kept while the runtime lives (a /close all's button)

    def accounts() -> dict[str, Commands | str]:
        now: dict[str, Commands | str] = {}
        for name in fleet.names:
            runtime = fleet.runtime(name)
            if runtime is None:
                made.pop(name, None)
                why, kept = fleet.failures.get(name, "not running"), fleet.kill_waiting(name)
                now[name] = why if kept is None else f"{why}; {kept}"
                continue
            if name not in made or made[name][0] is not runtime:
                made[name] = (
                    runtime,
                    Commands(runtime.engine, runtime.settings.default_usd, runtime.clock.now),
                )
            now[name] = made[name][1]
        return now

    bot = TelegramBot(
        fleet.telegram,
        None,
        set(settings.chat_ids),
        settings.default_usd,
        fleet.clock.now,
        commands=LiveFleetCommands(accounts, fleet.kill_account, fleet.pause_account),
        engines=lambda: [runtime.engine for runtime in fleet.runtimes.values()],
        record=fleet.telegram_record,
        user_ids=set(settings.user_ids) or None,
    )
    try:
        await bot.run()
    finally:
        await bot.stop()
