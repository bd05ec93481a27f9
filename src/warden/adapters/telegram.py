"""Telegram through python-telegram-bot's Bot: the client, and alerts to each allowlisted chat.

`make_bot` points PTB at `{api_url}/bot{token}/{method}` (the public Bot API by
default; tests and self-hosted Bot API servers give their own URL). Long polling
gets its own HTTP client with a read deadline longer than the poll.

Every Telegram error is translated here, once, for alert delivery:

    BadRequest (chat not found, message too long)   DeliveryRejected: not retried
    anything else (network, 5xx, 429, 401, 403)     DeliveryError: retried with backoff

The token is part of every URL; error texts that could carry it are replaced.
"""

from __future__ import annotations

from telegram.error import BadRequest, TelegramError
from telegram.request import HTTPXRequest

from telegram import Bot
from warden.domain.alerts import Alert, Severity
from warden.ports import DeliveryError, DeliveryRejected

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


def alert_text(alert: Alert, account: str | None = None) -> str:
    """An alert as a plain-text Telegram message (no markup: nothing to escape); `account`
    names whose it is when one bot speaks for several accounts.

    A message too long for Telegram (an exchange's error page inside it) loses its middle, not
    its end: what an alert ends with (whether the position is still protected) and the
    position it is about are kept."""
    where = f" [{account}]" if account else ""
    head = f"{BADGES[alert.severity]}{where} {alert.kind.value}"
    tail = f"\nposition {alert.position_id}" if alert.position_id else ""
    message = alert.message
    room = MAX_TEXT - len(head) - 1 - len(tail)
    if len(message) > room:
        keep = room - len(CUT)
        message = message[: keep - keep // 2] + CUT + message[len(message) - keep // 2 :]
    return f"{head}\n{message}{tail}"[:MAX_TEXT]


def safe_error(exc: BaseException, token: str) -> str:
    """An exception as text without the token (PTB and httpx may put the URL in it)."""
    text = f"{type(exc).__name__}: {exc}"
    return text.replace(token, "<token>") if token else text


class TelegramChannel:
    """Alerts to one chat. One channel per chat: a chat that got an alert is not sent it again."""

    def __init__(self, bot: Bot, chat_id: int, account: str | None = None) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._account = account

    @property
    def name(self) -> str:
        return f"telegram:{self._chat_id}"

    async def send(self, alert: Alert, *, silent: bool) -> None:
        try:
            await self._bot.send_message(
                self._chat_id, alert_text(alert, self._account), disable_notification=silent
            )
        except BadRequest as exc:
            raise DeliveryRejected(safe_error(exc, self._bot.token)) from None
        except TelegramError as exc:
            raise DeliveryError(safe_error(exc, self._bot.token)) from None


async def close_bot(bot: Bot) -> None:
    """Close both HTTP clients, whether or not the bot was ever initialized (PTB's shutdown skips
    a bot that was not)."""
    await bot.shutdown()
    for request in bot._request:
        await request.shutdown()
