"""I8 Heard: alerts go to the outbox with their cause and reach every channel at least once,
across channel outages, database outages and restarts; routing decides how loud."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from warden.adapters.clock import FakeClock
from warden.adapters.memory import InMemoryStore
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.domain.alerts import Alert, AlertId, AlertKind, Route, parse_routes
from warden.domain.errors import ValidationError
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType
from warden.ports import DeliveryError, DeliveryRejected
from warden.service.delivery import Deliverer, DeliveryConfig


@dataclass
class FakeChannel:
    """A remote channel that records what arrived; `down` makes every send fail as an outage."""

    name: str = "fake"
    down: bool = False
    reject: set[AlertKind] = field(default_factory=set)
    sent: list[tuple[Alert, bool]] = field(default_factory=list)
    attempts: int = 0

    async def send(self, alert: Alert, *, silent: bool) -> None:
        self.attempts += 1
        if self.down:
            raise DeliveryError("connection refused (test outage)")
        if alert.kind in self.reject:
            raise DeliveryRejected("400 bad request")
        self.sent.append((alert, silent))

    def kinds(self) -> list[AlertKind]:
        return [a.kind for a, _ in self.sent]


@pytest.fixture
async def chan_harness(store_url: str, sim: SimulatedExchange) -> AsyncIterator[Harness]:
    h = await Harness(store_url, sim, channels=[FakeChannel()]).start()
    yield h
    await h.stop()


def channel(h: Harness) -> FakeChannel:
    chan = h.channels[0]
    assert isinstance(chan, FakeChannel)
    return chan


async def stop_out(h: Harness) -> None:
    """Open a long and let its stop fill."""
    pos = await h.open("long", usd="100")
    assert pos.stop_price is not None
    h.sim.set_mark(SOL, pos.stop_price - Decimal("0.1"))
    await eventually(lambda: not h.engine.ledger.positions[pos.id].is_active, what="stopped out")
    await h.engine.wait_idle()


async def test_a_stop_fill_alert_is_in_the_outbox_with_the_close(chan_harness: Harness) -> None:
    """The stop_filled alert commits with the transition that closes the position: both are stored."""
    h = chan_harness
    await stop_out(h)
    [closed] = await h.store.list_positions(include_closed=True)
    assert closed.status is PositionStatus.CLOSED
    pending = await h.store.pending_alerts()
    stop_alerts = [a for a in pending if a.kind is AlertKind.STOP_FILLED]
    assert [a.position_id for a in stop_alerts] == [closed.id]
    assert any(a.kind is AlertKind.STOP_FILLED for a in h.notifier.alerts), "the log hears it at once"


async def test_delivered_once_to_each_channel_and_marked(chan_harness: Harness) -> None:
    """A pass sends every pending alert to the channel once and marks it; a second pass sends nothing."""
    h = chan_harness
    await stop_out(h)
    assert await h.engine.deliverer.deliver_pending() == 0
    chan = channel(h)
    assert AlertKind.STOP_FILLED in chan.kinds()
    assert AlertKind.POSITION_PROTECTED in chan.kinds()
    sent = len(chan.sent)
    assert len({a.id for a, _ in chan.sent}) == sent
    assert await h.store.pending_alerts() == []
    await h.engine.deliverer.deliver_pending()
    assert len(chan.sent) == sent


async def test_an_alert_raised_during_an_outage_arrives_when_the_channel_is_back(
    chan_harness: Harness,
) -> None:
    """While the channel is down the alert stays pending (trading goes on); back up, it arrives once."""
    h = chan_harness
    chan = channel(h)
    chan.down = True
    await stop_out(h)  # trading is not blocked by the outage
    await h.engine.deliverer.deliver_pending()
    assert chan.sent == []
    assert any(a.kind is AlertKind.STOP_FILLED for a in await h.store.pending_alerts())
    assert any("unreachable" in w for w in h.engine.status().warnings)
    chan.down = False
    loop = asyncio.get_running_loop().create_task(h.engine.deliver_alerts())
    try:
        await eventually(lambda: AlertKind.STOP_FILLED in chan.kinds(), what="delivered after the outage")
        await eventually(lambda: h.engine.deliverer.undelivered() == 0, what="all delivered")
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert chan.kinds().count(AlertKind.STOP_FILLED) == 1
    assert await h.store.pending_alerts() == []
    assert h.engine.status().warnings == []


async def test_an_alert_raised_before_a_crash_arrives_after_the_restart(chan_harness: Harness) -> None:
    """Raised while the channel was down, then the engine dies: the restarted engine delivers it."""
    h = chan_harness
    chan = channel(h)
    chan.down = True
    await stop_out(h)
    await h.engine.deliverer.deliver_pending()
    [raised] = [a for a in await h.store.pending_alerts() if a.kind is AlertKind.STOP_FILLED]
    await h.restart()  # memory gone; the outbox is in the database
    chan.down = False
    await h.engine.deliverer.deliver_pending()
    assert [a.id for a, _ in chan.sent].count(raised.id) == 1
    assert await h.store.pending_alerts() == []


async def test_an_alert_raised_while_the_database_is_down_is_delivered_and_stored_later(
    chan_harness: Harness,
) -> None:
    """DB down: the critical database_degraded alert reaches the channel from memory at once; when the
    database is back the queued alerts are written, marked, and not sent a second time."""
    h = chan_harness
    chan = channel(h)
    pos = await h.open("long", usd="100")
    h.store.down = True
    assert pos.stop_price is not None
    h.sim.set_mark(SOL, pos.stop_price - Decimal("0.1"))
    await eventually(lambda: not h.engine.ledger.positions[pos.id].is_active, what="stopped out")
    await h.engine.wait_idle()
    await h.engine.deliverer.deliver_pending()
    assert AlertKind.DATABASE_DEGRADED in chan.kinds()
    assert AlertKind.STOP_FILLED in chan.kinds()
    h.store.down = False
    await h.engine.flush_pending()
    await h.engine.wait_idle()
    await h.engine.deliverer.deliver_pending()
    await h.engine.deliverer.deliver_pending()
    stored = await h.store.list_positions(include_closed=True)
    assert [p.status for p in stored] == [PositionStatus.CLOSED]
    assert await h.store.pending_alerts() == []
    ids = [a.id for a, _ in chan.sent]
    assert len(ids) == len(set(ids)), "no alert is sent twice"
    assert AlertKind.DATABASE_RECOVERED in chan.kinds()


async def test_routes_silence_and_turn_off_but_the_log_hears_everything(
    store_url: str, sim: SimulatedExchange
) -> None:
    """`silent` sends without sound, `off` sends nothing to the channel; the log gets both."""
    chan = FakeChannel()
    routes = parse_routes({"stop_filled": "off", "engine_started": "silent"})
    h = await Harness(store_url, sim, channels=[chan], routes=routes).start()
    try:
        await stop_out(h)
        await h.engine.deliverer.deliver_pending()
        assert AlertKind.STOP_FILLED not in chan.kinds()
        assert [silent for a, silent in chan.sent if a.kind is AlertKind.ENGINE_STARTED] == [True]
        assert {AlertKind.STOP_FILLED, AlertKind.ENGINE_STARTED} <= {a.kind for a in h.notifier.alerts}
        assert await h.store.pending_alerts() == []
    finally:
        await h.stop()


async def test_a_rejected_alert_does_not_block_the_channel(chan_harness: Harness) -> None:
    """An alert the channel refuses for good is given up on that channel; later ones still arrive."""
    h = chan_harness
    chan = channel(h)
    chan.reject = {AlertKind.TP_FILLED}
    pos = await h.open("long", usd="100")
    assert pos.tp1_price is not None and pos.stop_price is not None
    h.sim.set_mark(SOL, pos.tp1_price)
    await eventually(lambda: h.engine.ledger.positions[pos.id].tp1_hit, what="tp1")
    await h.engine.wait_idle()
    h.sim.set_mark(SOL, pos.stop_price - Decimal("0.1"))
    await eventually(lambda: not h.engine.ledger.positions[pos.id].is_active, what="closed")
    await h.engine.wait_idle()
    await h.engine.deliverer.deliver_pending()
    assert AlertKind.TP_FILLED not in chan.kinds()
    assert AlertKind.STOP_FILLED in chan.kinds()
    assert await h.store.pending_alerts() == []


def test_critical_kinds_cannot_be_routed_off() -> None:
    """Turning a critical kind off is refused naming it; unknown kinds and routes are refused too."""
    with pytest.raises(ValidationError) as info:
        parse_routes({"protection_failed": "off"})
    assert info.value.field == "alert_routes.protection_failed"
    with pytest.raises(ValidationError):
        parse_routes({"no_such_kind": "on"})
    with pytest.raises(ValidationError):
        parse_routes({"tp_filled": "loud"})
    assert parse_routes({"protection_failed": "silent"}).route(AlertKind.PROTECTION_FAILED) is Route.SILENT
    assert parse_routes({"tp_filled": "off"}).route(AlertKind.TP_FILLED) is Route.OFF


async def test_a_stop_that_cannot_rest_alerts_with_the_failed_protection(chan_harness: Harness) -> None:
    """protection_failed is written with the transition that records the failed stop, and arrives."""
    h = chan_harness
    h.sim.faults.reject_if = lambda req: req.type is OrderType.STOP_MARKET
    pos = await h.open("long", usd="100")
    h.sim.faults.reject_if = None
    assert pos.status is PositionStatus.CLOSED
    await h.engine.deliverer.deliver_pending()
    assert [a.severity.value for a, _ in channel(h).sent if a.kind is AlertKind.PROTECTION_FAILED] == [
        "critical"
    ]


@dataclass
class HungChannel:
    """A channel whose sends never answer (packets dropped): each one waits for its deadline."""

    name: str = "hung"
    attempts: int = 0

    async def send(self, alert: Alert, *, silent: bool) -> None:
        self.attempts += 1
        await asyncio.Event().wait()


async def test_a_hung_channel_does_not_hold_back_the_others() -> None:
    """Telegram blackholed (its sends hang until their deadline) does not delay the webhook: each
    channel is sent to on its own, and the hung one is retried after its deadline and backoff."""
    hung, fast = HungChannel(), FakeChannel(name="webhook")
    clock = FakeClock()
    deliverer = Deliverer(
        InMemoryStore(),
        clock,
        RecordingNotifier(),
        channels=[hung, fast],
        config=DeliveryConfig(send_timeout=3600.0, poll_interval=3600.0),
    )
    alert = Alert(AlertId("a-1"), AlertKind.PROTECTION_FAILED, "stop refused", clock.now())
    deliverer.offer(alert, stored=False)
    passing = asyncio.get_running_loop().create_task(deliverer.deliver_pending())
    try:
        await eventually(lambda: fast.kinds() == [AlertKind.PROTECTION_FAILED], what="the webhook's copy")
        assert hung.attempts == 1 and not passing.done()
    finally:
        passing.cancel()
        await asyncio.gather(passing, return_exceptions=True)


def backlog_deliverer(chan: FakeChannel, clock: FakeClock) -> Deliverer:
    return Deliverer(
        InMemoryStore(),
        clock,
        RecordingNotifier(),
        channels=[chan],
        config=DeliveryConfig(poll_interval=3600.0),
    )


def raise_alert(deliverer: Deliverer, clock: FakeClock, n: int, kind: AlertKind, message: str = "") -> Alert:
    clock.advance(1.0)
    alert = Alert(AlertId(f"a-{n}"), kind, message or kind.value, clock.now())
    deliverer.offer(alert, stored=False)
    return alert


async def test_a_critical_alert_does_not_wait_behind_a_backlog() -> None:
    """Telegram down for long (or a chat that blocked the bot, a relay refusing): 40 warnings wait,
    then a position loses its stop and, later, is protected again. Delivery was oldest first at
    the channel's pace, so 'UNPROTECTED' came 41st, minutes late. The warnings ahead of it now go
    as one summary (how many, of what kinds, where to read them), then the critical, then what
    came after it, in order: the trader never reads 'protected' before 'unprotected'."""
    chan, clock = FakeChannel(down=True), FakeClock()
    deliverer = backlog_deliverer(chan, clock)
    for n in range(30):
        raise_alert(deliverer, clock, n, AlertKind.SIGNAL_REFUSED)
    for n in range(30, 40):
        raise_alert(deliverer, clock, n, AlertKind.LIMIT_REFUSED)
    failed = raise_alert(deliverer, clock, 40, AlertKind.PROTECTION_FAILED, "stop refused: UNPROTECTED")
    protected = raise_alert(deliverer, clock, 41, AlertKind.POSITION_PROTECTED, "stop rests again")
    await deliverer.deliver_pending()
    assert chan.sent == [] and deliverer.undelivered() == 42

    chan.down = False
    clock.advance(3600.0)
    assert await deliverer.deliver_pending() == 0  # every alert delivered (the 40 by the summary)
    ids = [a.id for a, _ in chan.sent]
    assert ids.index(failed.id) <= 1, [a.kind for a, _ in chan.sent]  # at most the summary before it
    assert ids.index(failed.id) < ids.index(protected.id)  # the clearing alert after it
    [summary] = [a for a, _ in chan.sent if a.id not in {failed.id, protected.id}]
    assert "40 older alerts" in summary.message, summary.message
    assert "30 signal_refused" in summary.message and "10 limit_refused" in summary.message, summary.message
    assert "warden events" in summary.message, summary.message


async def test_a_critical_raised_while_a_backlog_is_being_sent_goes_next() -> None:
    """A backlog with no critical alert in it is sent one by one (oldest first); a critical raised
    meanwhile does not wait for the rest of it."""
    clock = FakeClock()
    critical: list[Alert] = []

    @dataclass
    class Raising(FakeChannel):
        async def send(self, alert: Alert, *, silent: bool) -> None:
            await super().send(alert, silent=silent)
            if len(self.sent) == 3 and not critical:
                critical.append(raise_alert(deliverer, clock, 99, AlertKind.CLOSE_FAILED, "UNPROTECTED"))

    chan = Raising(down=True)
    deliverer = backlog_deliverer(chan, clock)
    for n in range(40):
        raise_alert(deliverer, clock, n, AlertKind.SIGNAL_REFUSED)
    await deliverer.deliver_pending()
    chan.down = False
    clock.advance(3600.0)
    while await deliverer.deliver_pending():
        pass
    ids = [a.id for a, _ in chan.sent]
    assert critical and ids.index(critical[0].id) <= 4, [a.kind for a, _ in chan.sent]
    assert deliverer.undelivered() == 0
