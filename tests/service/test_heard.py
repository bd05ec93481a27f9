"""I8 Heard, attacked: situations that need the trader must raise an alert that says so."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from tests.helpers import eventually
from tests.service.harness import SOL, Harness, driven, looping_engine, moments
from tests.service.test_alerts import FakeChannel
from warden.adapters.clock import FakeClock
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import Alert, AlertKind, Severity
from warden.domain.values import OrderType, Side
from warden.ports import ExchangeError
from warden.service.commands import OpenPosition, TradingRefused
from warden.service.engine import Engine


async def passing(
    clock: FakeClock, condition: Callable[[], bool], what: str, each: Callable[[], None] | None = None
) -> None:
    """Move engine time in half-second steps until `condition` holds (each step followed by real
    turns of the loop: a database answer may land), failing after 10 s of real time. `each`:
    done at every step (a mark published, as a live market's stream does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        clock.advance(0.5)
        if each is not None:
            each()
        await asyncio.sleep(0.001)


async def test_an_exchange_unreachable_for_long_is_alerted_and_its_return_too(store_url: str) -> None:
    """Every call to the exchange fails (an outage, a revoked or expired API key): reconciliation
    fails pass after pass, so warden can neither see nor repair the account. It used to log
    `reconcile_failed` and nothing else: the trader heard nothing, however long it lasted. The
    marks keep streaming (a revoked key leaves the public stream alive): no stream_silent here."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        sim = exchange.sim

        def streaming() -> None:
            sim.set_mark(SOL, sim.core.mark(SOL))

        pos = await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        await driven(clock, engine.wait_idle())
        alerts = engine.notifier.alerts  # type: ignore[attr-defined]
        before = len(alerts)
        exchange.sim.faults.fail_queries = True
        exchange.sim.faults.unavailable_if = lambda _request: True
        calls = engine.gateway.calls
        await passing(clock, lambda: engine.gateway.calls >= calls + 4, "four failed passes", streaming)
        raised = [a for a in alerts[before:] if a.severity is Severity.CRITICAL]
        assert [a.kind.value for a in raised] == ["exchange_unreachable"], alerts[before:]
        assert "exchange" in raised[0].message and "simulated query failure" in raised[0].message
        calls = engine.gateway.calls
        await passing(clock, lambda: engine.gateway.calls >= calls + 4, "four more failed passes", streaming)
        assert len([a for a in alerts if a.kind.value == "exchange_unreachable"]) == 1, "once per outage"
        exchange.sim.faults.fail_queries = False
        exchange.sim.faults.unavailable_if = None
        await passing(
            clock, lambda: any(a.kind.value == "exchange_recovered" for a in alerts), "back", streaming
        )
        assert engine.ledger.positions[pos.id].is_active


async def test_a_close_refused_after_a_refused_stop_says_the_position_is_unprotected(
    harness: Harness,
) -> None:
    """The exchange refuses the stop, then the protect-or-close market close too: the position is
    on the exchange with no stop. The close_failed alert the trader gets must say so (and name the
    symbol, side and size): the README says close_failed means "the position stays protected",
    and its message used to be only the symbol and the exchange's refusal."""
    h = harness
    h.sim.faults.reject_if = lambda request: request.reduce_only  # every stop, TP and close
    with contextlib.suppress(ExchangeError):
        await h.open("long", usd="100")
    alerts = h.notifier.alerts
    await eventually(lambda: any(a.kind is AlertKind.CLOSE_FAILED for a in alerts), what="close_failed")
    assert h.exchange_qty() > 0
    assert not [o for o in h.resting() if o.type is OrderType.STOP_MARKET], "the exchange holds no stop"
    [failed] = [a for a in alerts if a.kind is AlertKind.CLOSE_FAILED]
    assert failed.severity is Severity.CRITICAL
    text = failed.message.lower()
    assert "unprotected" in text and "no stop" in text, failed.message
    assert SOL in failed.message and "long" in text and str(h.exchange_qty()) in failed.message
    h.sim.faults.reject_if = None
    await eventually(
        lambda: any(o.type is OrderType.STOP_MARKET for o in h.resting()), what="a stop once refusals end"
    )


async def test_a_channel_down_for_long_does_not_hide_alerts_from_the_others_after_a_restart(
    store_url: str, sim: SimulatedExchange
) -> None:
    """The webhook relay is down for a long time while Telegram works: over a hundred alerts wait
    in the outbox for the webhook alone. A stop is refused (protection_failed, critical) and
    warden dies before Telegram was told. After the restart the deliverer read only the oldest
    100 undelivered rows, all of them already Telegram's and still stuck on the webhook, so the
    critical alert never reached Telegram: one channel down held back the other."""
    telegram, webhook = FakeChannel(name="telegram"), FakeChannel(name="webhook", down=True)
    h = await Harness(store_url, sim, channels=[telegram, webhook]).start()
    try:
        for _ in range(60):
            await h.engine.pause("test")
            await h.engine.resume()
        await h.engine.deliverer.deliver_pending()
        assert len(telegram.sent) > 100 and not webhook.sent
        sim.faults.reject_if = lambda request: request.type is OrderType.STOP_MARKET
        with contextlib.suppress(ExchangeError):
            await h.open("long", usd="100")
        sim.faults.reject_if = None
        await h.engine.wait_idle()
        assert AlertKind.PROTECTION_FAILED not in telegram.kinds()
        await h.restart()
        for _ in range(5):
            await h.engine.deliverer.deliver_pending()
        assert AlertKind.PROTECTION_FAILED in telegram.kinds()
    finally:
        await h.stop()


async def test_a_channel_that_refuses_every_alert_is_shown_on_status(
    store_url: str, sim: SimulatedExchange
) -> None:
    """A Telegram chat that refuses every message (a wrong chat id: 400 chat not found) drops
    each alert for good, critical ones too. /status used to say nothing: a channel that refuses
    is not "failing", so no warning, and the trader, hearing nothing, believed all was well."""
    chat = FakeChannel(name="telegram:42", reject=set(AlertKind))
    h = await Harness(store_url, sim, channels=[chat]).start()
    try:
        sim.faults.reject_if = lambda request: request.type is OrderType.STOP_MARKET
        with contextlib.suppress(ExchangeError):
            await h.open("long", usd="100")
        sim.faults.reject_if = None
        await h.engine.wait_idle()
        await h.engine.deliverer.deliver_pending()
        assert not chat.sent and chat.attempts > 0
        warnings = h.engine.status().warnings
        assert any("telegram:42" in w and "refused" in w for w in warnings), warnings
    finally:
        await h.stop()


async def test_an_unresolved_entry_alert_names_its_symbol_and_side(store_url: str) -> None:
    """An entry whose outcome stays unknown (it executed, the answer was lost, and no lookup can
    answer) may be a position on the exchange with no stop. The alert told the trader to "check
    the exchange" but named only warden's position id: not which symbol or side to look at."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        exchange.sim.set_mark(SOL, Decimal("150"))
        await eventually(lambda: engine.exits.fresh_mark(SOL) is not None, what="a streamed mark")
        exchange.sim.faults.timeout_after_execution_if = lambda request: not request.reduce_only
        exchange.sim.faults.fail_queries = True
        exchange.sim.disconnect()  # and the stream loses its fill
        with contextlib.suppress(ExchangeError, TradingRefused):
            await driven(clock, engine.open_position(OpenPosition(SOL, Side.SHORT, usd=Decimal(100))))
        alerts = engine.notifier.alerts  # type: ignore[attr-defined]
        await passing(clock, lambda: any(a.kind is AlertKind.ENTRY_UNRESOLVED for a in alerts), "unresolved")
        [first, *_] = [a for a in alerts if a.kind is AlertKind.ENTRY_UNRESOLVED]
        assert SOL in first.message and "short" in first.message, first.message


def _of(alerts: list[Alert], kind: AlertKind) -> list[Alert]:
    return [a for a in alerts if a.kind is kind]


def _silence_warnings(engine: Engine) -> list[str]:
    return [w for w in engine.status().warnings if "stream" in w and "silent" in w]


async def _mark_heard(engine: Engine, sim: SimulatedExchange) -> None:
    """Publish the current mark again and wait until the engine took it off the stream."""
    price = sim.core.mark(SOL)
    before = engine.exits.last_mark.get(SOL)
    sim.set_mark(SOL, price)
    await eventually(lambda: engine.exits.last_mark.get(SOL) is not before, what="the mark heard")


async def test_a_stream_silent_for_long_is_alerted_once_shown_on_status_and_its_return_too(
    store_url: str,
) -> None:
    """The user/market stream goes silent while a position is open (a listenKey expired, a
    half-open socket behind a NAT, Drift's websocket stalled): trailing stops stop moving and
    fills are seen only by reconciliation. A StreamGap comes only once it reconnects, so the
    trader heard nothing for as long as it lasted. Now: once per silence a critical alert and a
    /status warning after `stream_silence` seconds, and an info alert when events flow again."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        limit = engine.config.stream_silence
        assert limit == 60, "the default"
        await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        await driven(clock, engine.wait_idle())
        alerts: list[Alert] = engine.notifier.alerts  # type: ignore[attr-defined]
        await _mark_heard(engine, exchange.sim)
        last_heard = clock.now()
        exchange.sim.disconnect()
        await moments(clock, limit - 5)
        assert not _of(alerts, AlertKind.STREAM_SILENT) and not _silence_warnings(engine)
        await passing(clock, lambda: bool(_of(alerts, AlertKind.STREAM_SILENT)), "stream_silent")
        [silent] = _of(alerts, AlertKind.STREAM_SILENT)
        assert timedelta(seconds=limit) <= silent.at - last_heard <= timedelta(seconds=limit + 2)
        assert silent.severity is Severity.CRITICAL
        text = silent.message
        assert "sim" in text and "60s" in text, text
        assert "trailing" in text and "reconciliation every 30s" in text and "resting" in text, text
        [warning] = _silence_warnings(engine)
        assert "reconciliation every 30s" in warning, warning
        await moments(clock, 3 * limit)
        assert len(_of(alerts, AlertKind.STREAM_SILENT)) == 1, "once per silence, not once per check"
        assert not _of(alerts, AlertKind.STREAM_RECOVERED)
        exchange.sim.reconnect()
        await passing(clock, lambda: bool(_of(alerts, AlertKind.STREAM_RECOVERED)), "stream_recovered")
        [recovered] = _of(alerts, AlertKind.STREAM_RECOVERED)
        assert recovered.severity is Severity.INFO and "sim" in recovered.message, recovered.message
        assert not _silence_warnings(engine)
        exchange.sim.disconnect()  # a second silence is a second alert
        await passing(clock, lambda: len(_of(alerts, AlertKind.STREAM_SILENT)) == 2, "a second silence")


async def test_a_silent_stream_with_no_position_open_is_not_alerted(store_url: str) -> None:
    """With no position open nothing depends on the stream (a quiet venue may send nothing for
    minutes): no alert, however long. Once a position opens, its silence counts from the open."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        limit = engine.config.stream_silence
        alerts: list[Alert] = engine.notifier.alerts  # type: ignore[attr-defined]
        exchange.sim.disconnect()
        await moments(clock, 3 * limit)
        assert not _of(alerts, AlertKind.STREAM_SILENT) and not _silence_warnings(engine)
        opening = clock.now()
        await driven(clock, engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100))))
        await passing(clock, lambda: bool(_of(alerts, AlertKind.STREAM_SILENT)), "stream_silent")
        [silent] = _of(alerts, AlertKind.STREAM_SILENT)
        assert silent.at - opening >= timedelta(seconds=limit), "counted from the open, not the disconnect"


async def test_a_standby_does_not_alert_a_silent_stream(store_url: str) -> None:
    """A standby (not the account's writer) neither acts nor speaks for the account: a silent
    stream is the writer's to report."""
    clock = FakeClock()
    async with looping_engine(store_url, clock) as (engine, exchange):
        limit = engine.config.stream_silence
        await engine.open_position(OpenPosition(SOL, Side.LONG, usd=Decimal(100)))
        await driven(clock, engine.wait_idle())
        alerts: list[Alert] = engine.notifier.alerts  # type: ignore[attr-defined]
        engine.set_read_only("standby: the account is held by another engine (test)")
        exchange.sim.disconnect()
        await moments(clock, 3 * limit)
        assert not _of(alerts, AlertKind.STREAM_SILENT) and not _silence_warnings(engine)
