"""Telegram through python-telegram-bot's Bot: the client, and alerts to each allowlisted chat.

`make_bot` points PTB at `{api_url}/bot{token}/{method}` (the public Bot API by
default; tests and self-hosted Bot API servers give their own URL). Long polling
gets its own HTTP client with a read deadline longer than the poll.

Every Telegram error is translated here, once, for alert delivery:

    403 Forbidden (bot blocked by the user, kicked   ChannelRefused: the chat refuses every
    from the group), 400 chat not found, the group   alert; they are kept for it and it is
    became a supergroup (a new chat id), 400 no      tried again slowly
    right to send messages in the chat, 400
    TOPIC_CLOSED (a forum's General topic closed)
    any other BadRequest (message too long)          DeliveryRejected: this alert, not retried
    429 Too Many Requests                            DeliveryError, not retried before its
                                                     retry_after
    anything else (network, 5xx, 401)                DeliveryError: retried with backoff

The token is part of every URL; error texts that could carry it are replaced.

`FileUpdateRecord` keeps the highest update id the bot took in `<data_dir>/telegram-<bot id>.json`
(the bot id is the token's public numeric prefix, never the token), written whole before any
update it took runs: a command is executed at most once, even across a crash.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from telegram import Bot
from warden.adapters.files import JsonFile
from warden.domain.alerts import Alert, Severity
from warden.ports import ChannelRefused, DeliveryError, DeliveryRejected, StoreUnavailable, TakenUpdate

CHAT_GONE = ("chat not found",)
"""BadRequest descriptions that say the chat does not exist for the bot (PTB capitalizes them)."""
NO_RIGHTS = (
    "have no rights to send a message",  # a group that restricted the bot
    "not enough rights to send text messages to the chat",  # a group's or channel's permissions
    "need administrator rights in the channel chat",  # a channel that took the right to post away
)
"""BadRequest descriptions that say the bot may not post in the chat, whatever the message: they
refuse the chat (until its rights are given back), not the alert."""
TOPIC_CLOSED = ("topic_closed",)
"""A forum group whose General topic (where a message without a topic goes) is closed: every
message of a bot that is not an admin is refused until it is reopened: the chat, not the alert."""

LONG_POLL = 25
"""Seconds one getUpdates call waits for an update."""

MAX_TEXT = 4000
"""Telegram refuses messages over 4096 characters."""

BADGES = {Severity.CRITICAL: "🔴 CRITICAL", Severity.WARNING: "🟠", Severity.INFO: "🟢"}


def make_bot(token: str, api_url: str, *, timeout: float = 10.0, long_poll: int = LONG_POLL) -> Bot:
    """A PTB Bot on `api_url`; nothing is sent until it is used."""
    return Bot(
        token,
        base_url=f"{api_url.rstrip('/')}/bot",
        base_file_url=f"{api_url.rstrip('/')}/file/bot",
        request=HTTPXRequest(
            connection_pool_size=8, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout
        ),
        get_updates_request=HTTPXRequest(
            connection_pool_size=1, read_timeout=long_poll + timeout, connect_timeout=timeout
        ),
    )


CUT = " … "
"""Where a message too long for one Telegram message was shortened."""


LATE = timedelta(minutes=1)
"""An alert delivered this long after it was raised says when it was raised."""


def alert_text(alert: Alert, account: str | None = None, now: datetime | None = None) -> str:
    """An alert as a plain-text Telegram message (no markup: nothing to escape); `account`
    names whose it is when one bot speaks for several accounts.

    Telegram shows when a message arrived: an alert delivered `LATE` or later (Telegram was down,
    warden restarted) says when it was raised (`now` is the time it is sent), or an old
    "UNPROTECTED" reads as happening now. A message too long for Telegram (an exchange's error
    page inside it) loses its middle, not its end: what an alert ends with (whether the position
    is still protected) and the position it is about are kept."""
    where = f" [{account}]" if account else ""
    head = f"{BADGES[alert.severity]}{where} {alert.kind.value}"
    if now is not None and now - alert.at >= LATE:
        head += f" · raised {alert.at.astimezone(UTC):%H:%M:%S} UTC, {_ago(now - alert.at)} ago"
    tail = f"\nposition {alert.position_id}" if alert.position_id else ""
    message = alert.message
    room = MAX_TEXT - len(head) - 1 - len(tail)
    if len(message) > room:
        keep = room - len(CUT)
        message = message[: keep - keep // 2] + CUT + message[len(message) - keep // 2 :]
    return f"{head}\n{message}{tail}"[:MAX_TEXT]


def _ago(delay: timedelta) -> str:
    minutes = int(delay.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"


def retry_after(exc: RetryAfter) -> float:
    """Seconds Telegram asked to wait (PTB gives an int or a timedelta, and warns of the change)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def safe_error(exc: BaseException, token: str) -> str:
    """An exception as text without the token (PTB and httpx may put the URL in it)."""
    text = f"{type(exc).__name__}: {exc}"
    return text.replace(token, "<token>") if token else text


class TelegramChannel:
    """Alerts to one chat. One channel per chat: a chat that got an alert is not sent it again."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        account: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`now`: the engine's clock, to tell an alert delivered late (alert_text)."""
        self._bot = bot
        self._chat_id = chat_id
        self._account = account
        self._now = now

    @property
    def name(self) -> str:
        return f"telegram:{self._chat_id}"

    async def send(self, alert: Alert, *, silent: bool) -> None:
        try:
            await self._bot.send_message(
                self._chat_id, alert_text(alert, self._account, self._now()), disable_notification=silent
            )
        except Forbidden as exc:  # the bot blocked, kicked from the group, the user deactivated
            raise ChannelRefused(
                f"{self._said(exc)} (unblock the bot or send it /start in that chat, or add it back"
                " to the group)"
            ) from None
        except ChatMigrated as exc:
            raise ChannelRefused(
                f"the group became a supergroup with chat id {exc.new_chat_id}: put that id in"
                " telegram_chat_ids"
            ) from None
        except BadRequest as exc:
            if exc.message.lower() in CHAT_GONE:
                raise ChannelRefused(
                    f"{self._said(exc)} (a wrong chat id in telegram_chat_ids, or a group the bot is not in)"
                ) from None
            if exc.message.lower() in NO_RIGHTS:
                raise ChannelRefused(
                    f"{self._said(exc)} (give the bot the right to send messages in that chat)"
                ) from None
            if exc.message.lower() in TOPIC_CLOSED:
                raise ChannelRefused(
                    f"{self._said(exc)} (the group's General topic is closed: reopen it, or make the"
                    " bot an admin)"
                ) from None
            raise DeliveryRejected(safe_error(exc, self._bot.token)) from None
        except RetryAfter as exc:
            raise DeliveryError(self._said(exc), retry_after=retry_after(exc)) from None
        except TelegramError as exc:
            raise DeliveryError(safe_error(exc, self._bot.token)) from None

    def _said(self, exc: TelegramError) -> str:
        """What the Bot API said, without the token."""
        token = self._bot.token
        return exc.message.replace(token, "<token>") if token else exc.message


async def close_bot(bot: Bot) -> None:
    """Close both HTTP clients, whether or not the bot was ever initialized (PTB's shutdown skips
    a bot that was not)."""
    await bot.shutdown()
    for request in bot._request:
        await request.shutdown()


# ------------------------------------------------------------- the update record

RECORD_VERSION = 1


def bot_id(token: str) -> str:
    """The bot's numeric id, the public part of its token before the colon (`123456:ABC…` ->
    "123456"); a token without one (Telegram would refuse it) gets a hash: never the token."""
    head, colon, _ = token.partition(":")
    if colon and head.isascii() and head.isdigit():
        return head
    return "sha256-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def record_path(data_dir: Path, token: str) -> Path:
    """One record per bot: every account one bot serves shares it; another token, another file."""
    return data_dir / f"telegram-{bot_id(token)}.json"


class FileUpdateRecord(JsonFile):
    """The highest update id the bot took, in one small JSON file written whole."""

    what = "an update record"

    def save(self, taken: TakenUpdate) -> None:
        self.write({"version": RECORD_VERSION, "update_id": taken.update_id, "at": taken.at.isoformat()})

    def load(self) -> TakenUpdate | None:
        d = self.read()
        if d is None:
            return None
        try:
            if not isinstance(d, dict) or d.get("version") != RECORD_VERSION:
                raise ValueError("unknown format")
            update_id, at = d["update_id"], datetime.fromisoformat(d["at"])
            if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
                raise ValueError(f"update_id {update_id!r} is not an update id")
            if at.tzinfo is None:
                raise ValueError("at must carry its UTC offset")
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreUnavailable(self.not_ours(exc)) from exc
        return TakenUpdate(update_id, at)
