"""The bot's commands over the real engine, without Telegram: text in, reply out, the API's words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually
from tests.telegram.conftest import CHAT, bot_settings
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import Runtime, running
from warden.domain.alerts import AlertKind
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType, Symbol
from warden.entrypoints.api import create_app
from warden.entrypoints.telegram import Commands

SOL = Symbol("SOL/USDT:USDT")
BTC = Symbol("BTC/USDT:USDT")
AUTH = {"Authorization": "Bearer test-token-0123456789"}


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with running(bot_settings(tmp_path, None), price_feed=False) as rt:
        yield rt


@pytest.fixture
def commands(runtime: Runtime) -> Commands:
    return Commands(runtime.engine, runtime.settings.default_usd, runtime.clock.now)


def d(value: Decimal | None) -> str:
    assert value is not None
    return f"{value.normalize():f}"


async def say(commands: Commands, text: str) -> str:
    return (await commands.respond(CHAT, text)).text


async def test_short_sol_opens_a_protected_position_from_telegram(
    commands: Commands, runtime: Runtime
) -> None:
    """`short sol` opens with the default USD through the engine; the reply names the resting stop."""
    reply = await say(commands, "short sol")
    [p] = await runtime.store.list_positions()
    assert p.symbol == SOL and p.side == "short" and p.origin == "telegram"
    assert p.status is PositionStatus.PROTECTED
    assert reply.startswith(f"✅ {p.id} {SOL} short") and "resting (protected)" in reply


async def test_an_entry_the_exchange_refused_is_not_answered_with_a_tick(
    commands: Commands, runtime: Runtime
) -> None:
    """The exchange refused the entry: the position is `failed` and nothing is open. The reply was
    "✅ … stop … NOT resting (failed)", a tick for a trade that did not happen; it says so, and why."""
    assert runtime.sim is not None
    runtime.sim.faults.reject_if = lambda req: req.type is OrderType.MARKET
    reply = await say(commands, "short sol")
    [p] = await runtime.store.list_positions(include_closed=True)
    assert p.status is PositionStatus.FAILED
    assert "✅" not in reply
    assert reply.startswith(f"❌ {p.id} {SOL} short: the entry was not filled") and "rejected" in reply
    assert "nothing is open" in reply


@pytest.mark.parametrize(
    ("text", "symbol", "usd", "qty"),
    [
        ("/long eth 250", "ETH/USDT:USDT", Decimal(250), None),
        ("long eth $250 usd", "ETH/USDT:USDT", Decimal(250), None),
        ("/long btc 0.01 qty", "BTC/USDT:USDT", None, Decimal("0.01")),
        ("SELL solusdt", "SOL/USDT:USDT", None, None),
    ],
)
async def test_sizes_and_spellings(
    commands: Commands, runtime: Runtime, text: str, symbol: str, usd: Decimal | None, qty: Decimal | None
) -> None:
    """Plain and slash forms; an amount is USD unless `qty` follows; symbols are spelt freely."""
    await say(commands, text)
    [p] = await runtime.store.list_positions()
    assert p.symbol == symbol
    if qty is not None:
        assert p.filled_qty == qty
    else:
        mark = p.entry_price
        assert mark is not None
        expected = usd if usd is not None else runtime.settings.default_usd
        assert abs(p.filled_qty * mark - expected) <= expected * Decimal("0.02")


async def test_refusals_read_as_the_api_says_them(commands: Commands, runtime: Runtime) -> None:
    """Bad input names the field; a pause or a limit refuses with the API's words; nothing is sent."""
    assert await say(commands, "short doge") == "symbol: unknown symbol 'doge'"
    assert await say(commands, "short sol lots") == "usd: must be a number, not 'lots'"
    assert (await say(commands, "short sol 1e11")).startswith("refused by max_position_usd: this entry is ")
    await say(commands, "/pause fomc")
    app = create_app(lambda: runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
        api = await http.post("/api/v1/signals", json={"symbol": "SOL", "side": "short"}, headers=AUTH)
    assert api.status_code == 503
    reply = await say(commands, "short sol")
    assert reply == f"refused: {api.json()['message']}"
    assert "paused (fomc)" in reply
    assert await runtime.store.list_positions(include_closed=True) == []
    assert runtime.sim is not None and runtime.sim.core.open_orders() == []


@pytest.mark.parametrize(
    ("amount", "unit"),
    [
        ("1e400", "usd"),
        ("1e309", "usd"),
        ("1e30", "qty"),
        ("NaN", "usd"),
        ("Infinity", "qty"),
        ("1e-30", "usd"),
        ("\u0661\u0660\u0660", "usd"),  # Arabic-Indic 100: it was read as 100
        ("\u0661", "qty"),  # 1 SOL
        ("\uff15\uff10", "usd"),  # full-width 50
    ],
)
async def test_absurd_amounts_are_refused_with_the_api_words(
    commands: Commands, runtime: Runtime, amount: str, unit: str
) -> None:
    """An amount the API refuses (too large, not finite, too small) is refused by the bot with the
    API's words for the same field, never an internal error; nothing is sent."""
    app = create_app(lambda: runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as http:
        api = await http.post(
            "/api/v1/signals", json={"symbol": "SOL", "side": "long", unit: amount}, headers=AUTH
        )
    assert api.status_code == 422, api.text
    reply = await say(commands, f"long sol {amount} {unit}")
    assert reply == f"{api.json()['field']}: {api.json()['message']}"
    assert await runtime.store.list_positions(include_closed=True) == []
    assert runtime.sim is not None and runtime.sim.core.open_orders() == []


async def test_positions_show_size_entry_mark_upnl_stop_and_exits(
    commands: Commands, runtime: Runtime
) -> None:
    """/positions: size, entry, mark, uPnL, the stop and whether it rests, TP1/TP2 state, trailing."""
    assert await say(commands, "/positions") == "no open positions"
    await say(commands, "long sol")
    [p] = await runtime.store.list_positions()
    text = await say(commands, "/positions")
    assert text.startswith(f"{p.id} {SOL} long {d(p.remaining)} (protected)")
    assert f"entry {d(p.entry_price)} · mark " in text and " · uPnL " in text
    assert f"stop {d(p.stop_price)} resting ✅" in text
    assert f"TP1 {d(p.tp1_price)} for {d(p.tp1_qty)} · TP2 {d(p.tp2_price)} for {d(p.tp2_qty)}" in text
    assert "trailing off" in text


async def test_status_health_events_reconcile_help(commands: Commands, runtime: Runtime) -> None:
    """/status as `warden status` shows it (controls too); /health, /events, /reconcile, /help answer."""
    status = await say(commands, "/status")
    assert status.startswith("state: ready") and "controls: none" in status
    assert await say(commands, "/health") == "ok: ready"
    await say(commands, "short sol")
    assert "position_opening" in await say(commands, "/events")
    assert (await say(commands, "/reconcile")).startswith("checked 1 positions: no discrepancies")
    assert "/close <id|symbol|all>" in await say(commands, "/help")
    assert (await say(commands, "/frobnicate")).startswith("unknown command '/frobnicate'")
    await say(commands, "/kill")
    assert "controls: killed" in await say(commands, "/status")
    assert "kill switch on" in await say(commands, "/health")


async def test_without_a_token_there_is_no_bot_and_status_says_so(runtime: Runtime) -> None:
    """No telegram_token: no bot runs, and /status details say Telegram is off."""
    assert runtime.telegram is None
    assert runtime.engine.status().details["telegram"].startswith("off: no telegram_token")


async def test_close_by_symbol_and_by_id(commands: Commands, runtime: Runtime) -> None:
    """/close sol closes SOL's position; /close <id> closes that one; a stranger target is explained."""
    await say(commands, "short sol")
    await say(commands, "long btc 200")
    [btc] = [p for p in await runtime.store.list_positions() if p.symbol == BTC]
    reply = await say(commands, "/close sol")
    assert f" {SOL} short closed: realized PnL " in reply
    assert [p.symbol for p in await runtime.store.list_positions()] == [BTC]
    reply = await say(commands, f"/close {btc.id}")
    assert reply.startswith(f"{btc.id} {BTC} long closed: realized PnL ")
    assert await runtime.store.list_positions() == []
    assert (await say(commands, "/close eth")).startswith("no open position matches 'eth'")


async def test_close_all_asks_first_and_the_button_closes(commands: Commands, runtime: Runtime) -> None:
    """/close all answers with a confirmation button; only pressing it closes everything; cancel does not."""
    await say(commands, "short sol")
    await say(commands, "long btc 200")
    ask = await commands.respond(CHAT, "/close all")
    assert ask.text == "close all 2 open position(s) at market?"
    [(label, data), (_, cancel)] = ask.buttons
    assert label == "Close all 2"
    assert len(await runtime.store.list_positions()) == 2
    assert (await commands.on_button(CHAT, cancel)).text == "cancelled: nothing was closed"
    assert (await commands.on_button(CHAT, data)).text.startswith("that confirmation has expired")
    assert len(await runtime.store.list_positions()) == 2
    ask = await commands.respond(CHAT, "/close all")
    done = await commands.on_button(CHAT, ask.buttons[0][1])
    assert done.text.count("closed: realized PnL") == 2
    assert await runtime.store.list_positions() == []
    assert runtime.sim is not None and runtime.sim.core.positions() == []


async def test_a_confirmation_expires(commands: Commands, runtime: Runtime) -> None:
    """A /close all button pressed after the confirmation window closes nothing."""
    await say(commands, "short sol")
    ask = await commands.respond(CHAT, "/close all")
    commands.now = lambda: runtime.clock.now() + timedelta(minutes=5)
    assert (await commands.on_button(CHAT, ask.buttons[0][1])).text.startswith(
        "that confirmation has expired"
    )
    assert len(await runtime.store.list_positions()) == 1


async def test_pause_resume_kill_flatten(commands: Commands, runtime: Runtime) -> None:
    """/pause and /resume; /kill flatten closes everything and reports it."""
    assert (await say(commands, "/pause")).startswith("paused: no new entries")
    assert runtime.engine.status().controls.paused
    assert await say(commands, "/resume") == "resumed: new entries accepted"
    await say(commands, "short sol")
    reply = await say(commands, "/kill flatten")
    assert reply.startswith("🛑 kill switch on: no new entries; closed 1 position(s)")
    assert runtime.engine.status().controls.killed
    assert runtime.sim is not None and runtime.sim.core.positions() == []
    assert await say(commands, "/kill everything") == "usage: /kill [flatten]"


async def test_close_all_closes_only_what_its_button_named(commands: Commands, runtime: Runtime) -> None:
    """The button of "close all 1 open position(s)?" closed every position open when it was
    pressed: one opened between the question and the press (a TradingView signal) was closed at
    market too, unasked. It closes the positions it asked about; a newer one stays open, named."""
    await say(commands, "short sol")
    ask = await commands.respond(CHAT, "/close all")
    assert ask.buttons[0][0] == "Close all 1"
    await say(commands, "long btc 200")
    [sol, btc] = sorted(await runtime.store.list_positions(), key=lambda p: p.symbol != SOL)
    done = await commands.on_button(CHAT, ask.buttons[0][1])
    assert done.text.count("closed: realized PnL") == 1 and f"{sol.id} {SOL}" in done.text
    assert f"not closed: {btc.id} {BTC} long opened after you asked" in done.text
    assert [p.id for p in await runtime.store.list_positions()] == [btc.id]
    assert runtime.sim is not None and [p.symbol for p in runtime.sim.core.positions()] == [BTC]


def test_every_command_name_is_known_to_the_bot(commands: Commands) -> None:
    """The names the bot answers an edit of (telegram.NAMES) are every command Commands runs."""
    from warden.entrypoints.telegram import NAMES, SIDES

    assert set(commands._handlers()) | set(SIDES) == NAMES


async def test_each_close_all_question_keeps_its_own_button(commands: Commands, runtime: Runtime) -> None:
    """/close all sent twice (the first answer was slow to come): the chat shows two questions.
    Pressing the first one's button answered "that confirmation has expired" — and took the second
    question's away too, so its button said the same: two presses, nothing closed, while the
    trader wanted out. Each question's button works until it expires; a press closes what that
    question counted, and a button pressed again closes nothing."""
    await say(commands, "short sol")
    first = await commands.respond(CHAT, "/close all")
    second = await commands.respond(CHAT, "/close all")
    done = await commands.on_button(CHAT, first.buttons[0][1])
    assert done.text.count("closed: realized PnL") == 1, done.text
    assert await runtime.store.list_positions() == []
    again = await commands.on_button(CHAT, second.buttons[0][1])
    assert again.text == "the 1 position(s) you confirmed are no longer open: nothing was closed"
    assert (await commands.on_button(CHAT, first.buttons[0][1])).text.startswith(
        "that confirmation has expired"
    )


async def test_an_entry_failure_told_in_the_chat_is_not_alerted_again_one_after_the_reply_is(
    tmp_path: Path,
) -> None:
    """A Telegram entry the exchange refuses is answered in the chat, which is where the alerts go:
    no entry_failed beside the reply. One acknowledged and cancelled unfilled at its deadline
    after the reply (it said the entry was being resolved) is told by entry_failed."""
    notifier = RecordingNotifier()
    settings = bot_settings(tmp_path, None, entry_deadline=0.3)
    async with running(settings, price_feed=False, notifier=notifier) as rt:
        assert rt.sim is not None
        commands = Commands(rt.engine, rt.settings.default_usd, rt.clock.now)
        rt.sim.faults.reject_if = lambda req: req.type is OrderType.MARKET
        reply = await say(commands, "short sol")
        assert reply.startswith("❌") and "rejected" in reply, reply
        await rt.engine.wait_idle()

        def failed() -> list[str]:
            return [a.message for a in notifier.alerts if a.kind is AlertKind.ENTRY_FAILED]

        assert failed() == []
        rt.sim.faults.reject_if = None
        rt.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
        rt.sim.faults.fill_delay = 3600
        reply = await say(commands, "long btc 200")
        assert "❌" not in reply, reply
        await eventually(
            lambda: len(failed()) == 1, timeout=10, what="the entry cancelled after the reply told"
        )
        assert BTC in failed()[0] and "telegram" in failed()[0] and "deadline" in failed()[0], failed()
