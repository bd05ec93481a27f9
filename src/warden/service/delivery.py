"""Alert delivery: the outbox is the source of truth, the channels are told at least once (I8).

    raise  ──► outbox row (same transaction as its event; queued while the DB is down)
           ──► the log (the engine's Notifier), at once
           ──► Deliverer.offer: remembered in memory and the loop woken
    loop   ──► undelivered alerts = memory + the outbox (alerts from before a restart)
           ──► each channel, oldest first — but a critical alert waits behind no backlog:
               `summarise_at` or more non-critical alerts ahead of it go as one summary (how
               many, of which kinds; they stay in the outbox), then it; what came after it
               follows in order — sent once per (alert, channel); a failure backs
               that channel off (doubling, capped; never sooner than a retry_after it gave)
               and the rest of its queue waits; a channel that refuses every alert (a chat
               that blocked the bot) is said once, loudly, and tried again every
               `refused_retry` seconds, its alerts kept
           ──► not every channel has it yet (one down or refusing): which have it is kept in
               the outbox with it, so a restart sends it only to those that lack it
           ──► every channel has it: marked delivered in the outbox

Routing is applied here: `off` sends nothing to the channels (the log still has
it), `silent` sends without sound; a critical kind is never off. Deliveries are
deduplicated by alert id: an alert read again from the outbox (not yet marked,
or queued while degraded and written later) is not sent again to a channel
that already has it. A crash between sending and marking sends it again after
the restart: at least once, never lost.

Only the account's writer reads and marks the outbox (`owns_outbox`); a standby
delivers what it raised itself, from memory.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from warden.domain.alerts import Alert, AlertId, AlertKind, AlertRoutes, Route, Severity
from warden.ports import (
    AlertChannel,
    ChannelRefused,
    Clock,
    DeliveryError,
    DeliveryRejected,
    Notifier,
    Store,
    StoreError,
)

log = structlog.get_logger("warden.alerts")

REMEMBERED = 20_000
"""Alert ids whose deliveries are remembered (oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    send_timeout: float = 10.0
    backoff_first: float = 1.0
    backoff_max: float = 60.0
    refused_retry: float = 300.0
    """Seconds between tries of a channel that refuses every alert (a Telegram chat that blocked
    the bot): unblocking it resumes delivery within this long."""
    poll_interval: float = 5.0
    """Seconds between reads of the outbox when nothing wakes the loop."""
    batch: int = 100
    summarise_at: int = 10
    """A critical alert with this many non-critical alerts (or more) ahead of it for a channel (a
    backlog: the channel was down, refused, or is slow) has them sent as one summary instead of
    one by one, so that it arrives next, not minutes later at the channel's pace."""


@dataclass
class ChannelState:
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None
    delivered: int = 0
    refused: int = 0
    """Alerts refused for good since the last one it took (a wrong chat id refuses every one)."""
    last_refusal: str | None = None
    refusing: str | None = None
    """Why the channel refuses every alert (ChannelRefused), until it takes one again."""


@dataclass
class _Known:
    alert: Alert
    channels: set[str] = field(default_factory=set)
    """Channels that have it."""
    stored: bool = True
    """Whether it may be in the outbox (False: raised while not the writer; memory only)."""
    kept: frozenset[str] = frozenset()
    """The channels the outbox keeps with it (so that a restart does not send it to them again)."""
    in_outbox: bool = False
    """Read from the outbox: its row is written (an alert queued while the database was down is
    offered before it is), so the channels kept with it are kept on a row."""


class Deliverer:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        channels: Sequence[AlertChannel] = (),
        routes: AlertRoutes | None = None,
        config: DeliveryConfig | None = None,
        owns_outbox: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.notifier = notifier
        self.channels = list(channels)
        self.routes = routes or AlertRoutes({})
        self.config = config or DeliveryConfig()
        self.owns_outbox = owns_outbox
        self.state: dict[str, ChannelState] = {c.name: ChannelState() for c in self.channels}
        self._known: OrderedDict[AlertId, _Known] = OrderedDict()
        self._done: OrderedDict[AlertId, None] = OrderedDict()
        """Delivered to every channel (and marked, or about to be)."""
        self._logged: OrderedDict[AlertId, None] = OrderedDict()
        self._remark: list[AlertId] = []
        self._wake = asyncio.Event()
        self._pass = asyncio.Lock()

    # ----------------------------------------------------------------- raising

    async def log_now(self, alert: Alert, deadline: float) -> None:
        """The log gets every alert at once; it never blocks (`deadline` seconds) or fails the caller."""
        _remember(self._logged, alert.id)
        try:
            async with asyncio.timeout(deadline):
                await self.notifier.notify(alert)
        except Exception as exc:
            log.error("alert_not_logged", kind=alert.kind.value, error=repr(exc))

    def offer(self, alert: Alert, *, stored: bool = True) -> None:
        """A new alert (written to the outbox, queued, or — `stored=False` — memory only)."""
        if alert.id in self._done or alert.id in self._known:
            return
        self._known[alert.id] = _Known(alert, stored=stored)
        self._wake.set()

    def withdraw(self, alert_id: AlertId) -> bool:
        """An alert held in memory only (`stored=False`) that events overtook before every channel
        had it: not sent where it is still missing. True if some channel lacked it (its news then
        has to be told otherwise); one in flight may still arrive."""
        known = self._known.get(alert_id)
        if known is None or alert_id in self._done or known.in_outbox:
            return False
        missing = any(channel.name not in known.channels for channel in self.channels)
        self._finish(alert_id)
        return missing

    # ---------------------------------------------------------------- delivery

    async def run(self) -> None:
        """Deliver forever: on every offer, every `poll_interval`, and when a backoff ends."""
        while True:
            self._wake.clear()  # before the pass: an offer made during it wakes the next one
            try:
                await self.deliver_pending()
            except Exception as exc:  # a bug here must not end delivery
                log.error("alert_delivery_failed", error=repr(exc), exc_info=exc)
            try:
                async with asyncio.timeout(self._next_wait()):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _next_wait(self) -> float:
        """Until the next outbox read, or sooner when a backed-off channel has alerts waiting."""
        now = self.clock.monotonic()
        wait = self.config.poll_interval
        for channel in self.channels:
            retry_at = self.state[channel.name].retry_at
            if retry_at > now and any(channel.name not in k.channels for k in self._known.values()):
                wait = min(wait, retry_at - now)
        return max(wait, 0.01)

    async def deliver_pending(self) -> int:
        """One pass: read the outbox, send what each channel lacks, mark what all have.
        Returns how many alerts are still undelivered."""
        async with self._pass:
            await self._load()
            # each channel on its own: one that hangs until its deadline (Telegram blackholed)
            # must not hold back the others
            outcomes = await asyncio.gather(
                *(self._send_all(channel) for channel in self.channels), return_exceptions=True
            )
            await self._mark()
            for outcome in outcomes:  # a bug in one channel's pass: the others' work is marked first
                if isinstance(outcome, BaseException):
                    raise outcome
            return sum(1 for k in self._known.values() if k.alert.id not in self._done)

    async def _load(self) -> None:
        if not self.owns_outbox():
            return
        # Alerts already held here but not yet delivered everywhere (a channel down for long)
        # stay undelivered in the outbox and come first: the read reaches past them, or a
        # backlog stuck on one channel would hide every newer alert from the others (after a
        # restart). Twice their number, so that a backlog is taken in after a few passes.
        limit = self.config.batch + 2 * len(self._known)
        try:
            stored = await self.store.pending_alerts(limit)
        except StoreError as exc:
            log.warning("outbox_unreadable", error=str(exc))
            return
        new: list[_Known] = []
        for alert in stored:
            if alert.id in self._done:
                # delivered already (e.g. from memory while it was queued): only the mark is missing
                self._remark.append(alert.id)
                continue
            if alert.id in self._known:
                self._known[alert.id].in_outbox = True
            else:
                self._known[alert.id] = known = _Known(alert, in_outbox=True)
                new.append(known)
                if alert.id not in self._logged:  # raised before a restart: the log hears it again
                    await self.log_now(alert, self.config.send_timeout)
        if new:  # the channels that had them before a restart (one refusing held them back)
            try:
                had = await self.store.alert_channels([k.alert.id for k in new])
            except StoreError as exc:  # sent to them again: at least once
                log.warning("outbox_channels_unreadable", error=str(exc), alerts=len(new))
                had = {}
            for known in new:
                names = had.get(known.alert.id, set())
                known.channels |= names
                known.kept = frozenset(names)
        # oldest first, whatever order they arrived in
        self._known = OrderedDict(sorted(self._known.items(), key=lambda kv: (kv[1].alert.at, kv[0])))

    async def _send_all(self, channel: AlertChannel) -> None:
        state = self.state[channel.name]
        if state.retry_at > self.clock.monotonic():
            return
        # The next step is chosen again after every send: a critical alert raised while a backlog
        # goes out one by one is not held back by the rest of it.
        while (step := self._next_step(channel.name)) is not None:
            alert, covered, silent = step
            try:
                async with asyncio.timeout(self.config.send_timeout):
                    await channel.send(alert, silent=silent)
            except ChannelRefused as exc:
                self._refusing(channel.name, state, str(exc))
                return
            except DeliveryRejected as exc:
                log.error("alert_rejected", channel=channel.name, alert_id=alert.id, error=str(exc))
                for known in covered:
                    known.channels.add(channel.name)
                state.refused += len(covered)
                state.last_refusal = f"{alert.kind}: {exc}"
                continue
            except DeliveryError as exc:
                self._failed(channel.name, state, str(exc) or type(exc).__name__, exc.retry_after)
                return
            except TimeoutError:
                self._failed(channel.name, state, "timed out")
                return
            for known in covered:
                known.channels.add(channel.name)
            state.delivered += 1
            if state.failures or state.refusing:
                log.info(
                    "alert_channel_recovered",
                    channel=channel.name,
                    after_failures=state.failures,
                    was_refusing=state.refusing is not None,
                )
            state.failures, state.retry_at, state.last_error = 0, 0.0, None
            state.refused, state.last_refusal, state.refusing = 0, None, None

    def _next_step(self, name: str) -> tuple[Alert, list[_Known], bool] | None:
        """What channel `name` is sent next: (the alert, the alerts it delivers, silent), or None.

        The oldest alert it lacks; but when `summarise_at` or more non-critical alerts wait ahead
        of a critical one, a summary of them (they stay in the outbox; the channel counts them
        as delivered), so that the critical one goes next. Order is kept otherwise: an alert
        raised after a critical one (the stop resting again after 'UNPROTECTED') never arrives
        before it, and none older than it arrives after it."""
        ahead: list[tuple[_Known, Route]] = []
        critical: tuple[_Known, Route] | None = None
        for known in self._known.values():
            if name in known.channels or known.alert.id in self._done:
                continue
            route = self.routes.route(known.alert.kind)
            if route is Route.OFF:
                known.channels.add(name)
                continue
            if known.alert.severity is Severity.CRITICAL:
                critical = (known, route)
                break
            ahead.append((known, route))
        if critical is not None and len(ahead) >= max(self.config.summarise_at, 1):
            covered = [known for known, _ in ahead]
            silent = all(route is Route.SILENT for _, route in ahead)
            return self._summary(covered), covered, silent
        first = ahead[0] if ahead else critical
        if first is None:
            return None
        known, route = first
        return known.alert, [known], route is Route.SILENT

    def _summary(self, covered: list[_Known]) -> Alert:
        """One message for a backlog ahead of a critical alert: how many, of which kinds, when, and
        where to read them (nothing is lost: they stay in the database)."""
        kinds = Counter(known.alert.kind.value for known in covered)
        listed = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        first, last = covered[0].alert, covered[-1].alert
        message = (
            f"{len(covered)} older alerts ({listed}), raised {_when(first.at)} to {_when(last.at)}, are"
            " not sent one by one, so that the critical alert after this message is not held back"
            " behind them. They are kept in warden's database and log: their causes are in"
            " `warden events` and on the dashboard."
        )
        return Alert(
            AlertId(f"summary-{first.id}-{last.id}"), AlertKind.ALERTS_SUMMARISED, message, self.clock.now()
        )

    def _refusing(self, name: str, state: ChannelState, error: str) -> None:
        """The channel refuses every alert: said once (an error), its alerts kept, tried slowly."""
        state.retry_at = self.clock.monotonic() + self.config.refused_retry
        state.failures, state.last_error = 0, None  # it answers: not an outage
        if state.refusing is None:
            log.error(
                "alert_channel_refusing",
                channel=name,
                error=error,
                kept=self._waiting_for(name),
                retry_in=self.config.refused_retry,
            )
        state.refusing = error

    def _waiting_for(self, name: str) -> int:
        """Alerts held for `name` (the channel lacks them)."""
        return sum(1 for k in self._known.values() if name not in k.channels and k.alert.id not in self._done)

    def _failed(self, name: str, state: ChannelState, error: str, retry_after: float | None = None) -> None:
        state.failures += 1
        delay = min(self.config.backoff_max, self.config.backoff_first * 2 ** (state.failures - 1))
        if retry_after is not None:  # the channel said when to come back (Telegram's flood control)
            delay = max(delay, retry_after)
        state.retry_at = self.clock.monotonic() + delay
        if state.last_error != error or state.failures in (1, 10, 100):
            log.warning(
                "alert_channel_down", channel=name, error=error, retry_in=delay, failures=state.failures
            )
        state.last_error = error

    async def _mark(self) -> None:
        names = {c.name for c in self.channels}
        await self._keep_channels(names)
        complete = [k for k in self._known.values() if names <= k.channels]
        to_mark = [k.alert.id for k in complete if k.stored] + self._remark
        self._remark = []
        if not complete and not to_mark:
            return
        if to_mark and self.owns_outbox():
            try:
                await self.store.mark_alerts_delivered(to_mark, self.clock.now())
            except StoreError as exc:
                log.warning("outbox_not_marked", error=str(exc), alerts=len(to_mark))
                for k in complete:
                    if not k.stored:
                        self._finish(k.alert.id)
                return
        for k in complete:
            self._finish(k.alert.id)

    async def _keep_channels(self, names: set[str]) -> None:
        """Keep in the outbox which channels have each alert not yet delivered everywhere (one
        refuses or is down), so that a restart sends it only to those that lack it. A failure is
        logged and tried again next pass; until then a restart sends them again (at least once)."""
        if not self.owns_outbox():
            return
        changed = {
            k.alert.id: k.channels
            for k in self._known.values()
            if k.in_outbox and k.channels != k.kept and not names <= k.channels
        }
        if not changed:
            return
        try:
            await self.store.record_alert_channels(changed)
        except StoreError as exc:
            log.warning("outbox_channels_not_kept", error=str(exc), alerts=len(changed))
            return
        for alert_id, channels in changed.items():
            self._known[alert_id].kept = frozenset(channels)

    def _finish(self, alert_id: AlertId) -> None:
        self._known.pop(alert_id, None)
        _remember(self._done, alert_id)

    # ------------------------------------------------------------------ status

    def warnings(self) -> list[str]:
        """One line per channel that is failing now (a channel outage is a warning, not a failure),
        and per channel whose latest answers refused alerts for good (those are lost to it)."""
        down = [
            f"alert channel {name} unreachable ({s.failures} failures: {s.last_error}); alerts are kept"
            " and delivered when it is back"
            for name, s in self.state.items()
            if s.failures
        ]
        refused = [
            f"alert channel {name} refused {s.refused} alerts for good (last: {s.last_refusal}); they"
            " are not sent again: check its configuration"
            for name, s in self.state.items()
            if s.refused
        ]
        refusing = [
            f"alert channel {name} refuses every alert: {s.refusing}; {self._waiting_for(name)} alerts"
            f" kept for it, tried again every {_duration(self.config.refused_retry)}"
            for name, s in self.state.items()
            if s.refusing is not None
        ]
        return refusing + down + refused

    def undelivered(self) -> int:
        return sum(1 for k in self._known.values() if k.alert.id not in self._done)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _remember(seen: OrderedDict[AlertId, None], alert_id: AlertId) -> None:
    seen[alert_id] = None
    seen.move_to_end(alert_id)
    while len(seen) > REMEMBERED:
        seen.popitem(last=False)
