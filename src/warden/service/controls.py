"""The trader's controls (pause, kill switch, daily-loss pause) and the risk limits.

The controls are stored per account (they survive restarts) and held in
memory; while the database is down a change still takes effect at once, is kept
in a second durable place (the spill: a file on this host) so that a crash
before the database is back does not lose it, and is stored when it is back. At
start the spill stands in for the database's controls only if the database still
holds what the spilled change was made over (domain.controls.KeptControls): no
clocks are compared. Every refusal they cause is one gate reason
(`controls`), so /status, /healthz and every entrypoint say the same words.

Limits are checked by the opener before anything is written or sent
(`check_entry`); the realized PnL of the UTC day is kept from every applied
transition, and reaching `max_daily_loss_usd` pauses entries until the next
UTC day and alerts once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import structlog

from warden.domain.alerts import AlertKind
from warden.domain.controls import (
    Controls,
    Exposure,
    KeptControls,
    LimitExceeded,
    Limits,
    check_entry,
    daily_loss_reached,
    day_start,
    next_day,
    printable,
)
from warden.domain.position import Position
from warden.domain.values import PositionId
from warden.ports import ControlsSpill, FencedOut, Store, StoreError, StoreUnavailable, WaitingKill
from warden.service.commands import EngineState
from warden.service.context import Context

log = structlog.get_logger("warden.controls")

FENCED = (
    "another engine holds this account now (this one is standing down); its controls apply, so set them there"
)

GATE_KEY = "controls"


class ControlPanel:
    def __init__(
        self,
        ctx: Context,
        store: Store,
        limits: Limits,
        spill: ControlsSpill | None = None,
        waiting_kill: WaitingKill | None = None,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.limits = limits
        self.spill = spill
        self.waiting_kill = waiting_kill
        """A kill of every account that found this engine not running: in force at the next
        `refresh` (every signal's way in asks for one), no longer waiting once stored."""
        self.state = Controls()
        self.unsaved = False
        self.spilled: Controls | None = None
        """What the spill holds, when this engine wrote it and the database has not stored it yet."""
        self._unreadable = False
        """The spill could not be read at start: removed once the pause that stands for it is stored."""
        self._db_at: datetime | None = None
        """changed_at of the controls the database holds, as far as this engine knows: what a
        spilled change is made over."""
        self._db_known = False
        """`_db_at` was read by this start (or takeover): False before its `load` has read the
        database's controls."""
        self._premade: list[Callable[[Controls], Controls]] = []
        """Changes made before this start's `load` read the controls (a kill while the start could
        not read its database): the trader's latest word, made again over them while not stored."""
        self.fenced = False
        """A change was refused because another engine holds the account now."""
        self._loading = asyncio.Lock()
        """Held by `load` from its read of the stored controls until they are in force: a change
        made meanwhile (a kill during a start or a takeover) waits, then is made over them."""
        self._storing = asyncio.Lock()
        """One store (database, else spill, then clearing the spill) at a time: their order is the
        order of the changes."""
        self.entry_lock = asyncio.Lock()
        """Held from the limit check to the position's first commit: concurrent entries see each other."""
        self.day = day_start(ctx.clock.now())
        self.realized_today = Decimal(0)
        self._admitted: dict[PositionId, Decimal] = {}
        """The notional each entry was admitted at, counted until its position has a price of its
        own (an entry on its way to the exchange has none yet, and would count as nothing)."""
        ctx.ledger.on_applied = self._applied

    # ------------------------------------------------------------- lifecycle

    async def load(self) -> None:
        """Read the stored controls and the day's realized PnL (startup, takeover)."""
        async with self._loading:
            stored = await self.store.load_controls()
            premade = self._premade if self.unsaved and not self.fenced else []
            self._db_at, self._db_known, self._premade, self.fenced = stored.changed_at, True, [], False
            if premade:
                # Made by this engine since its start began, while it could not read the database:
                # later than anything the database holds. Made over it, in force, and stored below
                # (`flush`), which clears the spill keeping them.
                changed_at = self.state.changed_at
                state = stored
                for change in premade:
                    state = change(state)
                self.state = replace(state, changed_at=changed_at)
            else:
                self.state, self.unsaved, self.spilled, self._unreadable = stored, False, None, False
                await self._recover_spilled(stored)
        self.day = day_start(self.ctx.clock.now())
        self.realized_today = await self.store.realized_pnl_since(self.day)
        self.refresh()
        await self.flush()
        if self._loss_reached() and not self.state.daily_loss_active(self.ctx.clock.now()):
            self.ctx.tasks.spawn(self._daily_loss_reached())

    def taking_over(self) -> None:
        """This engine now holds the account: what the database's controls are is unknown until
        its start reads them (another engine may have changed them)."""
        self._db_known = False

    def refresh(self) -> None:
        """Apply the controls to the gate; a daily-loss pause ends at the next UTC day."""
        now = self.ctx.clock.now()
        if self.state.daily_loss_until is not None and now >= self.state.daily_loss_until:
            self.state = replace(self.state, daily_loss_until=None, changed_at=now)
            self.unsaved = True
            self.ctx.alert(AlertKind.RESUMED, "a new UTC day: the daily-loss pause is over")
        if day_start(now) != self.day:
            self.day, self.realized_today = day_start(now), Decimal(0)
        self._take_waiting_kill(now)
        self.ctx.gate.refuse(GATE_KEY, self.state.refusal(now))

    def _take_waiting_kill(self, now: datetime) -> None:
        """A kill of every account made while this engine was not running (or could not act yet)
        is put in force here, before any signal is let in, and stored (`_store` then ends its
        wait). Not while another engine holds the account (its controls apply)."""
        reason = self.waiting_kill.pending() if self.waiting_kill is not None else None
        gate = self.ctx.gate
        if reason is None or self.state.killed or self.fenced:
            return
        assert self.waiting_kill is not None
        pause_only = self.waiting_kill.pause_only
        if pause_only and self.state.paused:  # paused already: nothing to add
            return
        if gate.standing_down or gate.state is EngineState.STARTING:  # its start (load) takes it
            return
        if pause_only:
            self.state = replace(self.state, paused=True, reason=reason, changed_at=now)
            self.unsaved = True
            self.ctx.alert(
                AlertKind.PAUSED,
                f"paused{_by(reason)}: no new entries; a pause naming this account found it not"
                " running, and was kept for it",
            )
        else:
            self.state = replace(self.state, paused=True, killed=True, reason=reason, changed_at=now)
            self.unsaved = True
            self.ctx.alert(
                AlertKind.KILL_ON,
                f"kill switch on{_by(reason)}: a kill of every account found this one not running, and"
                " was kept for it",
            )
        self.ctx.tasks.spawn(self.flush())

    async def flush(self) -> None:
        """Store a change made while the database was down."""
        if self.unsaved:
            await self._store()

    async def _recover_spilled(self, stored: Controls) -> None:
        """A change the database never stored, kept in the spill by an engine that then stopped
        (a crash during an outage): in force again, and the trader told so. An unreadable spill
        pauses entries: what the trader set is unknown."""
        if self.spill is None:
            return
        try:
            kept = await asyncio.to_thread(self.spill.load)
        except StoreUnavailable as exc:
            await self._unreadable_spill(stored, exc)
            return
        if kept is None:
            return
        if not kept.stands_over(stored, self.ctx.config.installation_id):
            # The database moved on since (a later change, stored here or by another engine), or
            # it is another database: what it holds now is the trader's latest word.
            log.warning("controls_spill_stale", kept=str(kept.controls), stored=str(stored))
            await self._clear_spill()
            return
        self.state = kept.controls
        self.unsaved, self.spilled = True, self.state
        refusal = self.state.refusal(self.ctx.clock.now())
        kind = AlertKind.KILL_ON if self.state.killed else AlertKind.PAUSED if refusal else AlertKind.RESUMED
        self.ctx.alert(
            kind,
            f"{refusal or 'resumed: new entries accepted'} — restored from {self.spill.where}: set while"
            " the database was down, and not stored there before warden stopped",
        )

    async def _unreadable_spill(self, stored: Controls, error: StoreUnavailable) -> None:
        """What the trader set while the database was down is unknown: entries pause, and the
        file is moved aside for them to read (or, if it cannot be, removed once the pause is stored)."""
        assert self.spill is not None
        try:
            kept_as = await asyncio.to_thread(self.spill.set_aside)
        except StoreUnavailable:
            kept_as = None
        self._unreadable = kept_as is None
        where = f"; it is kept as {kept_as}" if kept_as else ""
        self.state = replace(
            stored,
            paused=True,
            reason=f"the controls file could not be read ({error}){where}; check it, then resume",
            changed_at=self.ctx.clock.now(),
        )
        self.unsaved = True
        self.ctx.alert(AlertKind.PAUSED, f"paused: {self.state.reason}")

    # -------------------------------------------------------------- commands

    async def pause(self, reason: str = "") -> Controls:
        reason = printable(reason)
        await self._change(lambda now: replace(now, paused=True, reason=reason))
        await self.ctx.notify(
            AlertKind.PAUSED, f"paused: no new entries{_by(reason)}; exits keep working{self._not_stored()}"
        )
        return self.state

    async def kill(self, reason: str = "") -> Controls:
        reason = printable(reason)
        await self._change(lambda now: replace(now, paused=True, killed=True, reason=reason))
        await self.ctx.notify(
            AlertKind.KILL_ON, f"kill switch on{_by(reason)}: no new entries{self._not_stored()}"
        )
        return self.state

    async def resume(self) -> Controls:
        if self.waiting_kill is not None and self.waiting_kill.pending() is not None:
            await self._forget_waiting_kill()  # the trader's latest word: it is over
        was = await self._change(lambda _: Controls())
        kind = AlertKind.KILL_OFF if was.killed else AlertKind.RESUMED
        await self.ctx.notify(kind, f"resumed: new entries accepted{self._not_stored()}")
        return self.state

    def warning(self) -> str | None:
        """The /status warning while a change is in force but not stored (the database is down)."""
        if not self.unsaved:
            return None
        what = self.state.refusal(self.ctx.clock.now()) or "resumed: trading allowed"
        if self.fenced:
            return f"controls set here not stored ({what}): {FENCED}"
        if self._kept():
            assert self.spill is not None
            return (
                f"controls in force but not in the database ({what}): it is unavailable; kept in"
                f" {self.spill.where} until it is back, so a restart on this host keeps them"
            )
        return (
            f"controls in force but not stored ({what}): the database is unavailable; a restart"
            " before it is back loses them (set them again then)"
        )

    def _not_stored(self) -> str:
        if not self.unsaved:
            return ""
        if self.fenced:
            return f" — NOT stored: {FENCED}"
        if self._kept():
            assert self.spill is not None
            return (
                f" — not in the database yet (it is unavailable): kept in {self.spill.where}, so a"
                " restart on this host keeps it; stored when the database is back"
            )
        return (
            " — NOT stored yet: the database is unavailable; it holds now, but a restart before the"
            " database is back loses it (set it again then)"
        )

    def _kept(self) -> bool:
        """The change in force is the one the spill holds."""
        return self.spilled is not None and self.spilled == self.state

    async def _change(self, change: Callable[[Controls], Controls]) -> Controls:
        """Put `change` of the controls in force, and store it; the controls it changed."""
        async with self._loading:  # over the stored controls, when a start is reading them
            was = self.state
            self.state = replace(change(was), changed_at=self.ctx.clock.now())
            if not self._db_known:
                self._premade.append(change)
            self.refresh()
            self.unsaved = True
        await self._store()
        return was

    async def _store(self) -> None:
        async with self._storing:
            state = self.state
            try:
                await self.store.save_controls(state)
            except FencedOut:
                self.fenced = True  # not this engine's account any more: its holder's controls rule
                return
            except StoreError as exc:
                log.error("controls_not_stored", error=str(exc))  # in force now; stored when the DB is back
                await self._spill(state)
                return
            self._db_at = state.changed_at
            if state == self.state:
                self.unsaved = False
            if self.spilled is not None or self._unreadable:
                await self._clear_spill()
            waiting = self.waiting_kill
            taken = state.killed or (state.paused and waiting is not None and waiting.pause_only)
            if waiting is not None and waiting.pending() is not None and taken:
                await self._forget_waiting_kill()  # the database has it now

    async def _forget_waiting_kill(self) -> None:
        assert self.waiting_kill is not None
        try:
            await asyncio.to_thread(self.waiting_kill.forget)
        except StoreError as exc:  # gone from memory; a restart reads the file again (the safe side)
            log.error("waiting_kill_not_cleared", error=str(exc))

    async def _spill(self, state: Controls) -> None:
        """Keep `state` in the spill (once per change: the maintenance pass retries the database)."""
        if self.spill is None or self.spilled == state:
            return
        try:
            over = self._db_at if self._db_known else None
            kept = KeptControls(state, over, self.ctx.config.installation_id, self._db_known)
            await asyncio.to_thread(self.spill.save, kept)
        except StoreUnavailable as exc:
            log.error("controls_not_spilled", error=str(exc))
            if self.spilled is not None:  # an older change: a restart must not bring it back
                await self._clear_spill()
            return
        self.spilled = state

    async def _clear_spill(self) -> None:
        assert self.spill is not None
        try:
            await asyncio.to_thread(self.spill.clear)
        except StoreUnavailable as exc:  # harmless: the next start finds it older than the database
            log.warning("controls_spill_not_cleared", error=str(exc))
            return
        self.spilled, self._unreadable = None, False

    # ---------------------------------------------------------------- limits

    def exposure(self, without: Collection[PositionId] = ()) -> Exposure:
        """Counted from the ledger's index; the notional is summed over the open positions only
        when `max_total_usd` asks for it (every signal pays for it: 1,000 positions, ~1 ms).
        `without`: positions counted as gone (a flip's, about to be closed)."""
        ledger = self.ctx.ledger
        gone = sum(1 for pid in without if pid in ledger.positions and ledger.positions[pid].is_active)
        if self.limits.max_total_usd is None:
            return Exposure(open_positions=ledger.active_count() - gone, open_usd=None)
        active = [p for p in ledger.active_positions() if p.id not in without]
        for pid in [pid for pid in self._admitted if _priced_or_gone(ledger.positions.get(pid))]:
            del self._admitted[pid]
        usd = sum((_notional(p, self._admitted.get(p.id)) for p in active), Decimal(0))
        return Exposure(open_positions=len(active), open_usd=usd)

    def admitted(self, position_id: PositionId, notional: Decimal) -> None:
        """An entry passed the limits at `notional` USD and was committed (under `entry_lock`)."""
        if self.limits.max_total_usd is not None:
            self._admitted[position_id] = notional

    async def check_entry(self, notional: Decimal, without: Collection[PositionId] = ()) -> None:
        """Raise LimitExceeded (and alert) if a new entry of `notional` USD breaks a limit
        (`without`: positions counted as gone)."""
        try:
            check_entry(self.limits, self.exposure(without), notional)
        except LimitExceeded as exc:
            await self.ctx.notify(AlertKind.LIMIT_REFUSED, f"entry refused, nothing sent: {exc}")
            raise

    def _applied(self, old: Position | None, new: Position) -> None:
        """Every transition applied to memory: count its realized PnL toward the UTC day."""
        delta = new.realized_pnl - (old.realized_pnl if old is not None else Decimal(0))
        if delta == 0:
            return
        now = self.ctx.clock.now()
        if day_start(now) != self.day:
            self.day, self.realized_today = day_start(now), Decimal(0)
        self.realized_today += delta
        if self._loss_reached() and not self.state.daily_loss_active(now):
            self.ctx.tasks.spawn(self._daily_loss_reached())

    def _loss_reached(self) -> bool:
        return daily_loss_reached(self.limits, self.realized_today)

    async def _daily_loss_reached(self) -> None:
        now = self.ctx.clock.now()
        if self.state.daily_loss_active(now):
            return
        limit = self.limits.max_daily_loss_usd
        reason = f"realized {self.realized_today:.2f} USD today, limit max_daily_loss_usd {limit}"
        await self._change(lambda controls: replace(controls, daily_loss_until=next_day(now), reason=reason))
        await self.ctx.notify(
            AlertKind.DAILY_LOSS_REACHED,
            f"daily loss limit reached ({reason}): entries paused until {next_day(now).isoformat()}",
        )


def _by(reason: str) -> str:
    return f" ({reason})" if reason else ""


def _notional(position: Position, admitted: Decimal | None = None) -> Decimal:
    price = position.last_price or position.entry_price
    if price is None:
        return admitted or Decimal(0)
    size = position.remaining if position.filled_qty > 0 else position.target_qty
    return size * price


def _priced_or_gone(position: Position | None) -> bool:
    return position is None or not position.is_active or bool(position.last_price or position.entry_price)
