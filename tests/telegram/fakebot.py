"""A fake Telegram Bot API server on 127.0.0.1 (aiohttp): getMe, getUpdates (long polling),
sendMessage, answerCallbackQuery, editMessageText — enough for warden's bot, with an outage switch.

Tests play the phone: `say(chat, text)` and `press(chat, message_id, data)` queue updates; what
the bot sent is in `sent`. `down = True` answers every call 502, as an unreachable Bot API would.

It refuses what the real Bot API refuses, with its words: a message text empty or longer than
4096 characters, a button's callback_data outside 1-64 bytes, a chat it does not know
(`missing_chats`), a chat that blocked the bot or removed it (`forbidden[chat] = BLOCKED`, 403),
a chat the bot may not post in (`no_rights[chat] = NO_RIGHTS`, 400),
a callback query answered twice or later than `CALLBACK_ANSWER_WITHIN` seconds after the press;
`flood = n` answers the next n sendMessage calls 429 with a retry_after, `failing_sends = n` 500.
getUpdates returns only the kinds of update `allowed_updates` asked for (the last list given
counts, as Telegram remembers it).

A crash between taking an update and confirming it (the next getUpdates, whose offset tells
Telegram what was taken) is played with `lose_confirmations = True`: no offset drops a kept
update any more (the confirmations never reached Telegram), while each call still answers from
the offset it gives, as the Bot API does. `redeliver()` makes the next getUpdates answer every
kept update whatever its offset (a Bot API that sends again what was taken). `delivered` lists
the id of every update answered, once per answer. `ids_restarted = True` plays Telegram numbering
a bot's updates anew after a week without any (lower than before): an offset above every id
given is ignored, as Telegram answered update 117314199 to offset 727334708 in
go-telegram-bot-api/telegram-bot-api#156.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token-never-logged"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "warden", "username": "warden_test_bot"}
MAX_TEXT = 4096
"""Characters in one message's text (after entities parsing), as the Bot API counts them."""
MAX_CALLBACK_DATA = 64
"""Bytes of one inline button's callback_data."""
CALLBACK_ANSWER_WITHIN = 15.0
"""Seconds after a press within which answerCallbackQuery is accepted ("query is too old")."""
BLOCKED = "Forbidden: bot was blocked by the user"
KICKED = "Forbidden: bot was kicked from the group chat"
NO_RIGHTS = "Bad Request: have no rights to send a message"
"""A group that restricted the bot (it may not send messages there)."""
NOT_ENOUGH_RIGHTS = "Bad Request: not enough rights to send text messages to the chat"
"""A group or channel whose permissions do not let the bot send text."""
NOT_ADMIN = "Bad Request: need administrator rights in the channel chat"
"""A channel that took the bot's right to post away."""
TOPIC_CLOSED = "Bad Request: TOPIC_CLOSED"
"""A forum supergroup whose General topic (where a message without message_thread_id goes) an admin
closed: every message of a bot that is not an admin is refused (as rteixeirax/
qbittorrent_telegram_notification#12 got it)."""
"""The Bot API's 403 descriptions for a private chat that blocked the bot, a group that removed it."""
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the"
    " webhook first"
)
"""The Bot API's 409 to getUpdates for a bot that has a webhook set."""
OTHER_POLLER = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
"""The Bot API's 409 to a getUpdates that another process's getUpdates on the same token ended."""


@dataclass
class Sent:
    chat_id: int
    text: str
    message_id: int
    silent: bool
    buttons: list[dict[str, Any]] = field(default_factory=list)


class FakeBotApi:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.down = False
        self.updates: list[dict[str, Any]] = []
        self.sent: list[Sent] = []
        self.answered: list[str] = []
        self.calls: list[str] = []
        self.missing_chats: set[int] = set()
        """Chats sendMessage answers 400 "chat not found" for."""
        self.forbidden: dict[int, str] = {}
        """Chats sendMessage answers 403 for, with the description (BLOCKED, KICKED)."""
        self.no_rights: dict[int, str] = {}
        """Chats sendMessage answers 400 for with the description (NO_RIGHTS, NOT_ENOUGH_RIGHTS,
        NOT_ADMIN): the bot is in the chat but may not post there (muted, rights taken away)."""
        self.flood = 0
        """The next `flood` sendMessage calls answer 429 Too Many Requests."""
        self.retry_after = 1
        self.webhook: str | None = None
        """The webhook URL set on the bot (setWebhook by another tool, earlier): while one is set
        getUpdates answers 409 WEBHOOK_ACTIVE, as the Bot API does; deleteWebhook removes it."""
        self.other_poller = False
        """Another program polls the same token (a second warden, freqtrade's bot on a reused
        token): every other getUpdates of warden's is displaced by its poll and answered 409
        OTHER_POLLER, as the Bot API answers the poll a newer one terminates."""
        self._polls = 0
        self.failing_sends = 0
        """The next `failing_sends` sendMessage calls answer 500 Internal Server Error (a blip of
        the Bot API's own, as it answers now and then), sending nothing."""
        self.refused: list[tuple[str, str]] = []
        """(method, description) of every call refused with a 4xx."""
        self.lose_confirmations = False
        """getUpdates's offset no longer drops the updates below it (the bot died before confirming)."""
        self.ids_restarted = False
        """An offset above every update id given is ignored (the ids started again, lower)."""
        self._redeliver = False
        self.delivered: list[int] = []
        """The update id of every update getUpdates answered to a bot still listening, once per answer."""
        self.last_update_id = 0
        """The id of the update the phone sent last (`say`, `press`, `edit`)."""
        self._allowed: list[str] | None = None
        self._queries: dict[str, float] = {}
        """Unanswered callback query id -> when it was pressed (time.time())."""
        self._ids = itertools.count(1)
        self._messages = itertools.count(1000)
        self._new = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.url = ""

    async def start(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self._closing = True
        async with self._new:
            self._new.notify_all()  # end every long poll now, not at its timeout
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the phone ----------------------------------------------------------------------------

    async def say(self, chat_id: int, text: str, user_id: int | None = None, age: float = 0) -> int:
        """`age`: seconds ago the phone sent it (Telegram keeps updates while the bot is away).
        Returns the message's id."""
        message = {
            "message_id": next(self._messages),
            "date": int(time.time() - age),
            "chat": _chat(chat_id),
            "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "trader"},
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        await self._push({"message": message})
        return int(message["message_id"])

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """The phone edits a message it sent: Telegram sends an `edited_message` update."""
        edited = {
            "message_id": message_id,
            "date": int(time.time()),
            "edit_date": int(time.time()),
            "chat": _chat(chat_id),
            "from": {"id": chat_id, "is_bot": False, "first_name": "trader"},
            "text": text,
        }
        await self._push({"edited_message": edited})

    async def press(
        self, chat_id: int, message_id: int, data: str, age: float = 0, user_id: int | None = None
    ) -> None:
        """`age`: seconds ago the button was pressed (the update waited while the bot was away);
        `user_id`: who pressed it (in a group: any member), by default the chat's own id."""
        query_id = f"cb{next(self._ids)}"
        self._queries[query_id] = time.time() - age
        query = {
            "id": query_id,
            "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "trader"},
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": _chat(chat_id),
                "text": "confirm?",
            },
        }
        await self._push({"callback_query": query})

    def redeliver(self) -> None:
        """The next getUpdates answer holds every kept update, whatever the offset asked for (with
        `lose_confirmations`, those already confirmed too)."""
        self._redeliver = True

    def to(self, chat_id: int) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == chat_id]

    def texts(self, chat_id: int) -> list[str]:
        return [s.text for s in self.to(chat_id)]

    async def _push(self, update: dict[str, Any]) -> None:
        async with self._new:
            self.last_update_id = next(self._ids)
            self.updates.append({"update_id": self.last_update_id, **update})
            self._new.notify_all()

    # -- the Bot API ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        if self.down:
            return web.json_response(
                {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
            )
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params = await _params(request)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found")
        try:
            result = await (handler(params, request) if method == "getUpdates" else handler(params))
        except Refused as refused:
            self.refused.append((method, refused.description))
            body: dict[str, Any] = {
                "ok": False,
                "error_code": refused.code,
                "description": refused.description,
            }
            if refused.retry_after is not None:
                body["parameters"] = {"retry_after": refused.retry_after}
            return web.json_response(body, status=refused.code)
        return web.json_response({"ok": True, "result": result})

    async def _api_getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _api_getUpdates(self, params: dict[str, Any], request: web.Request) -> Any:
        if self.webhook is not None:
            raise Refused(409, WEBHOOK_ACTIVE)
        self._polls += 1
        if self.other_poller and self._polls % 2:
            raise Refused(409, OTHER_POLLER)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            allowed = json.loads(allowed)
        if allowed is not None:
            self._allowed = list(allowed) or None  # an empty list: every kind again
        offset = int(params.get("offset") or 0)
        if self.ids_restarted and offset > self.last_update_id + 1:
            offset = 0
        timeout = float(params.get("timeout") or 0)
        deadline = asyncio.get_running_loop().time() + timeout

        def answered() -> list[dict[str, Any]]:
            return [u for u in self.updates if self._redeliver or u["update_id"] >= offset]

        async with self._new:
            if not self.lose_confirmations:  # the offset confirms every update below it
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not answered() and not self._closing:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._new.wait(), left)
                except TimeoutError:
                    break
            answer = [u for u in answered() if self._allowed is None or _kind(u) in self._allowed]
            if request.transport is None or request.transport.is_closing():
                return []  # the bot that asked is gone (stopped mid-poll): nothing reaches it
            self._redeliver = False
            self.delivered.extend(u["update_id"] for u in answer)
            return answer

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:
        if self.failing_sends > 0:
            self.failing_sends -= 1
            raise Refused(500, "Internal Server Error")
        if self.flood > 0:
            self.flood -= 1
            raise Refused(
                429, f"Too Many Requests: retry after {self.retry_after}", retry_after=self.retry_after
            )
        chat_id = int(params["chat_id"])
        if chat_id in self.forbidden:
            raise Refused(403, self.forbidden[chat_id])
        if chat_id in self.missing_chats:
            raise Refused(400, "Bad Request: chat not found")
        if chat_id in self.no_rights:
            raise Refused(400, self.no_rights[chat_id])
        text = str(params.get("text") or "")
        if not text.strip():
            raise Refused(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise Refused(400, "Bad Request: message is too long")
        markup = params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        buttons = [b for row in (markup or {}).get("inline_keyboard", []) for b in row]
        for button in buttons:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise Refused(400, "Bad Request: BUTTON_DATA_INVALID")
        silent = str(params.get("disable_notification", "")).lower() in ("true", "1")
        sent = Sent(chat_id, text, next(self._messages), silent, buttons)
        self.sent.append(sent)
        return {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            "text": sent.text,
        }

    async def _api_editMessageText(self, params: dict[str, Any]) -> Any:
        return await self._api_sendMessage(params)

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id"))
        pressed = self._queries.pop(query_id, None)
        if pressed is None or time.time() - pressed > CALLBACK_ANSWER_WITHIN:
            raise Refused(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        self.answered.append(query_id)
        return True


class Refused(Exception):
    """A call the Bot API refuses: its error_code, description and parameters."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def _chat(chat_id: int) -> dict[str, Any]:
    """A chat as the Bot API gives it: a group's id is negative, a private chat's is its user's."""
    if chat_id < 0:
        return {"id": chat_id, "type": "supergroup", "title": "desk"}
    return {"id": chat_id, "type": "private"}


def _kind(update: dict[str, Any]) -> str:
    return next(k for k in update if k != "update_id")


def _error(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return params
