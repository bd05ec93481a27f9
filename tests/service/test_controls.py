"""Pause, kill switch (with flatten) and risk limits, on SQLite and PostgreSQL: refused before
anything is sent, exits keep working, and the controls survive a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import BTC, FAST, SOL, Harness
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import AlertKind
from warden.domain.controls import LimitExceeded, Limits
from warden.domain.orders import OrderStatus
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType
from warden.ports import StoreUnavailable
from warden.service.commands import TradingRefused

ETH = BTC.replace("BTC", "ETH")


def harness_with(url: str, sim: SimulatedExchange, **limits: object) -> Harness:
    return Harness(url, sim, config=replace(FAST, limits=Limits(**limits)))  # type: ignore[arg-type]


@pytest.fixture
async def limited(store_url: str, sim: SimulatedExchange) -> AsyncIterator[Harness]:
    h = await harness_with(store_url, sim, max_open_positions=2, max_total_usd=Decimal(400)).start()
    yield h
    await h.stop()


def nothing_sent_for(h: Harness, symbol: str) -> bool:
    return h.sim.core.position(symbol).qty == 0 and not h.sim.core.open_orders(symbol)


async def test_pause_refuses_entries_but_exits_keep_working(harness: Harness) -> None:
    """Paused: a signal is refused naming the pause, nothing is sent; a TP1 still fills and the stop
    is resized."""
    pos = await harness.open("long", usd="100")
    await harness.engine.pause("news")
    with pytest.raises(TradingRefused, match="paused \\(news\\)"):
        await harness.open("short", symbol=BTC, usd="200")
    assert nothing_sent_for(harness, BTC)
    assert "paused (news); `resume` clears it" in harness.engine.status().reasons
    assert not harness.engine.status().accepting_signals
    assert pos.tp1_price is not None
    harness.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: harness.engine.ledger.positions[pos.id].tp1_hit, what="tp1 while paused")
    await harness.engine.wait_idle()
    [stop] = [o for o in harness.resting() if o.type is OrderType.STOP_MARKET]
    assert stop.qty == harness.engine.ledger.positions[pos.id].remaining
    await harness.engine.resume()
    assert (await harness.open("short", symbol=BTC, usd="200")).status is PositionStatus.PROTECTED


async def test_pause_and_kill_survive_a_restart(harness: Harness) -> None:
    """The controls are stored: after a crash the engine is still paused / killed, until resume."""
    await harness.engine.pause()
    await harness.restart()
    assert harness.engine.status().controls.paused
    with pytest.raises(TradingRefused, match="paused"):
        await harness.open("long")
    await harness.engine.kill()
    await harness.restart()
    status = harness.engine.status()
    assert status.controls.killed and not status.accepting_signals
    assert any("kill switch on" in r for r in status.reasons)
    await harness.engine.resume()
    await harness.restart()
    assert harness.engine.status().accepting_signals
    assert (await harness.open("long")).status is PositionStatus.PROTECTED


async def test_a_reason_with_control_characters_is_kept_and_shown_without_them(harness: Harness) -> None:
    """A pause or kill reason is shown by `warden status` in the trader's terminal, in alerts and
    in logs: an escape sequence in it (sent through the API, a webhook relay, a chat) drove that
    terminal (cleared the screen, set its title), and a newline split a log line. Control
    characters become spaces; everything else (any script, emoji) is kept."""
    await harness.engine.pause("\x1b[2Jback at 8\nπ 🚀\x07")
    assert harness.engine.status().controls.reason == "[2Jback at 8 π 🚀"
    alert = harness.notifier.alerts[-1]
    assert "\x1b" not in alert.message and "\n" not in alert.message
    await harness.engine.kill(reason="\x1b]0;pwned\x07done")
    assert harness.engine.status().controls.reason == "]0;pwned done"
    await harness.restart()
    assert harness.engine.status().controls.reason == "]0;pwned done"


async def test_a_reason_with_bidi_overrides_or_line_separators_is_shown_without_them(
    harness: Harness,
) -> None:
    """A right-to-left override (U+202E) in a reason reverses the rest of the line `warden status`
    prints, after the reason too (the terminal shows text the trader never sent), and U+2028 /
    U+2029 split a line for anything reading lines as Python does. They become spaces like the
    control characters; a zero-width joiner (an emoji sequence) is kept."""
    await harness.engine.pause("fomc\u202e 00:02 ta emuser\u2066x\u2069\u2028y\u2029z 👩\u200d💻")
    assert harness.engine.status().controls.reason == "fomc  00:02 ta emuser x  y z 👩\u200d💻"
    alert = harness.notifier.alerts[-1]
    assert "\u202e" not in alert.message and len(alert.message.splitlines()) == 1
    await harness.engine.kill(reason="\u202aa\u202bb\u202cc\u202dd\u2067e\u2068f\u200eg\u200fh\u061ci")
    assert harness.engine.status().controls.reason == "a b c d e f g h i"


async def test_kill_flatten_closes_every_position_and_cancels_every_order(harness: Harness) -> None:
    """kill(flatten): every position closed reduce-only at market, every warden order cancelled, the
    exchange flat; new entries refused; critical-ish alert raised."""
    a = await harness.open("long", symbol=SOL, usd="100")
    b = await harness.open("short", symbol=BTC, usd="200")
    report = await harness.engine.kill(flatten=True)
    await harness.engine.wait_idle()
    assert sorted(p.id for p in report.closed) == sorted([a.id, b.id])
    assert report.failed == {}
    assert all(p.status is PositionStatus.CLOSED and p.exit_reason == "kill_switch" for p in report.closed)
    assert harness.sim.core.positions() == []
    assert harness.sim.core.open_orders() == []
    for pid in (a.id, b.id):
        orders = await harness.store.orders_for(pid)
        assert not [o for o in orders if o.status in (OrderStatus.OPEN, OrderStatus.PENDING)]
    assert report.controls.killed
    with pytest.raises(TradingRefused, match="kill switch"):
        await harness.open("long", symbol=SOL)
    assert any(x.kind is AlertKind.KILL_ON for x in harness.notifier.alerts)


async def test_kill_flatten_cancels_an_entry_still_working_on_the_exchange(harness: Harness) -> None:
    """An entry the exchange acknowledged and has not filled can still fill: kill(flatten) cancels
    it on the exchange, so nothing opens after the kill (judged by the exchange), and says so."""
    harness.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
    harness.sim.faults.fill_delay = 3600
    await harness.stop()
    harness.config = replace(harness.config, entry_deadline=3600)  # only the kill cancels it
    await harness.start()
    pos = await harness.open("long", SOL)
    assert pos.status is PositionStatus.OPENING  # answered while working (past fill_wait)
    assert [o.type for o in harness.resting(SOL)] == [OrderType.MARKET]
    report = await harness.engine.kill(flatten=True)
    assert "entry cancelled" in report.failed[pos.id], report.failed
    assert harness.resting(SOL) == [] and harness.exchange_qty(SOL) == 0
    await eventually(
        lambda: harness.engine.ledger.positions[pos.id].status is PositionStatus.FAILED, what="failed"
    )
    assert harness.resting(SOL) == [] and harness.exchange_qty(SOL) == 0
    await harness.engine.wait_idle()
    # The kill's report said it (the trader chose it): not entry_failed besides.
    assert not [x for x in harness.notifier.alerts if x.kind is AlertKind.ENTRY_FAILED]


async def test_kill_flatten_before_the_start_has_loaded_the_positions_says_they_are_not_closed(
    harness: Harness,
) -> None:
    """Found attacking the kill of every account: an engine whose start has not passed yet (its
    first attempt failed: the exchange or the database did not answer) is served and takes a kill
    with flatten. It flattened its ledger, still empty, and answered "closed 0 position(s)" with
    nothing failed, while the account held the position on the exchange: the trader read the
    account as flat. Now each position the database holds is reported NOT closed, and why."""
    pos = await harness.open("long", symbol=SOL)
    await harness.stop()
    await harness.start(ready=False)  # its start has not passed (a failed first attempt)
    report = await harness.engine.kill(flatten=True)
    assert report.controls.killed
    assert report.closed == [] and list(report.failed) == [pos.id], report
    assert "not loaded its positions" in report.failed[pos.id], report.failed
    assert harness.exchange_qty(SOL) > 0  # nothing was sent: its stop still protects it

    async def unreadable() -> None:
        raise StoreUnavailable("load active positions: the database did not answer within 5s")

    real_load, harness.store.load_active = harness.store.load_active, unreadable  # type: ignore[method-assign,assignment]
    report = await harness.engine.kill(flatten=True)  # nor can the database say which are open
    [(what, why)] = report.failed.items()
    assert "every position" in what and "unknown" in why, report.failed

    harness.store.load_active = real_load  # type: ignore[method-assign]
    await harness.engine.start()  # ready: flatten closes what it now knows
    report = await harness.engine.kill(flatten=True)
    assert [p.id for p in report.closed] == [pos.id] and report.failed == {}, report
    assert harness.exchange_qty(SOL) == 0


async def test_a_kill_the_database_could_not_store_says_so_until_it_is_stored(harness: Harness) -> None:
    """A kill switch turned on while the database is down holds at once, but is not in the
    database (it is kept in the spill file: test_controls_spill). The trader is told so (the
    alert, and /status while it lasts); once stored, the warning goes."""
    harness.store.down = True
    await harness.engine.kill(reason="outage")
    [alert] = [a for a in harness.notifier.alerts if a.kind is AlertKind.KILL_ON]
    assert "not in the database yet" in alert.message, alert.message
    assert any("not in the database" in w for w in harness.engine.status().warnings), (
        harness.engine.status().warnings
    )
    with pytest.raises(TradingRefused, match="kill switch"):
        await harness.open("long", symbol=SOL)
    harness.store.down = False
    await harness.engine.maintain_once()  # the maintenance loop's pass (the harness runs no loops)
    assert not harness.engine.controls.unsaved
    assert harness.engine.status().warnings == []
    assert (await harness.store.load_controls()).killed


async def test_fat_finger_guard_refuses_an_absurd_size_and_sends_nothing(harness: Harness) -> None:
    """{"usd": "1e15"} is refused by max_position_usd (10,000 by default): nothing written or sent."""
    with pytest.raises(LimitExceeded) as info:
        await harness.open("short", usd="1e15")
    assert info.value.limit == "max_position_usd"
    assert info.value.maximum == Decimal(10_000)
    assert nothing_sent_for(harness, SOL)
    assert await harness.store.list_positions(include_closed=True) == []
    assert any(x.kind is AlertKind.LIMIT_REFUSED for x in harness.notifier.alerts)


async def test_open_positions_and_total_notional_limits(limited: Harness) -> None:
    """max_total_usd counts what is open plus the new entry; max_open_positions counts positions."""
    h = limited
    await h.open("long", symbol=SOL, usd="100")
    with pytest.raises(LimitExceeded) as info:
        await h.open("long", symbol=BTC, usd="400")
    assert info.value.limit == "max_total_usd"
    assert nothing_sent_for(h, BTC)
    await h.open("long", symbol=BTC, usd="200")
    with pytest.raises(LimitExceeded) as info:
        await h.open("long", symbol=ETH, usd="100")
    assert info.value.limit == "max_open_positions"
    assert nothing_sent_for(h, ETH)


async def test_reaching_the_daily_loss_pauses_until_the_next_day(
    store_url: str, sim: SimulatedExchange
) -> None:
    """A stopped-out loss beyond max_daily_loss_usd pauses entries until 00:00 UTC, alerts (critical),
    is stored across a restart, and resume clears it."""
    h = await harness_with(store_url, sim, max_daily_loss_usd=Decimal("0.5")).start()
    try:
        pos = await h.open("long", usd="100")
        assert pos.stop_price is not None
        h.sim.set_mark(SOL, pos.stop_price - Decimal("0.1"))
        await eventually(lambda: not h.engine.ledger.positions[pos.id].is_active, what="stopped out")
        await eventually(lambda: h.engine.status().controls.daily_loss_until is not None, what="daily pause")
        await h.engine.wait_idle()
        until = h.engine.status().controls.daily_loss_until
        assert until is not None and until.hour == 0 and until > h.engine.clock.now()
        with pytest.raises(TradingRefused, match="daily loss limit reached"):
            await h.open("long", symbol=BTC, usd="200")
        assert nothing_sent_for(h, BTC)
        assert [x.level for x in h.notifier.alerts if x.kind is AlertKind.DAILY_LOSS_REACHED] == ["critical"]
        await h.restart()
        with pytest.raises(TradingRefused, match="daily loss limit reached"):
            await h.open("long", symbol=BTC, usd="200")
        await h.engine.resume()
        assert (await h.open("long", symbol=BTC, usd="200")).status is PositionStatus.PROTECTED
    finally:
        await h.stop()
