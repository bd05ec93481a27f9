"""The one place that names concrete adapters: build them from Settings, run, tear down.

Startup order: open the store (migrating it), choose the exchange, build the
engine, then take the account's lease. The holder recovers and trades; an
engine that finds the lease held starts read-only (standby), says who holds
it, and polls; when the holder dies its lock is dropped by the OS or the
database, the standby takes it with a new fencing epoch, recovers and trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from warden.adapters.clock import SystemClock
from warden.adapters.db import urls
from warden.adapters.db.installation_file import InstallationFile
from warden.adapters.db.lease import default_holder, lease_for
from warden.adapters.db.migrate import upgrade
from warden.adapters.db.store import SharedConnections, SqlStore, open_store
from warden.adapters.db.urls import redact
from warden.adapters.measured import MeasuredNotifier, MeasuredStore, Telemetry, measured_exchange
from warden.adapters.notify import LogNotifier
from warden.adapters.sim import SimPriceFeed, SimulatedExchange
from warden.adapters.spill import FileControlsSpill, FileWaitingKill
from warden.config import ConfigError, Settings, same_exchange_account
from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.domain.controls import Controls, printable
from warden.logging import hide_secret
from warden.ports import (
    AlertChannel,
    Clock,
    Exchange,
    ExchangeError,
    Lease,
    LeaseState,
    Notifier,
    ReportsWarnings,
    Store,
    StoreError,
    StoreUnavailable,
    UpdateRecord,
    WaitingKill,
)
from warden.service.commands import EngineState, KillReport, NotHolder
from warden.service.config import EngineConfig
from warden.service.delivery import Deliverer
from warden.service.engine import Engine

log = structlog.get_logger("warden.bootstrap")

LEASE_RETRY = 2.0
"""Seconds between a standby's attempts to take the lease (and the holder's checks that it still has it)."""
LOOKS_EVERY = 5
"""A standby at capacity looks at who holds the account (its reason, `account_unheld`) every
this many lease retries (10 s by default)."""

NO_TELEGRAM = "off: no telegram_token set (WARDEN_TELEGRAM_TOKEN); alerts go to the log"


@dataclass
class Slots:
    """How many accounts this engine may hold at once (`capacity`; None: no limit), shared by the
    runtimes of every account it serves: an account's lease is tried only with a slot taken, and
    the slot is given back when the lease is not got, is lost, or is let go."""

    capacity: int | None = None
    held: set[str] = field(default_factory=set)

    def take(self, account: str) -> bool:
        if account in self.held:
            return True
        if self.capacity is not None and len(self.held) >= self.capacity:
            return False
        self.held.add(account)
        return True

    def give_back(self, account: str) -> None:
        self.held.discard(account)

    def full(self, account: str) -> bool:
        """No room for `account`: the capacity is taken by others."""
        return account not in self.held and self.capacity is not None and len(self.held) >= self.capacity

    def full_reason(self) -> str:
        return f"standby: this engine holds its capacity of {self.capacity} accounts"


@dataclass
class Runtime:
    """What a running warden is made of; entrypoints reach the engine through it."""

    settings: Settings
    engine: Engine
    store: Store
    exchange: Exchange
    lease: Lease
    clock: Clock
    sim: SimulatedExchange | None = None
    price_feed: bool = True
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    group: asyncio.TaskGroup | None = None
    epoch: int | None = None
    lease_retry: float = LEASE_RETRY
    watch: asyncio.Task[Any] | None = None
    feed: asyncio.Task[Any] | None = None
    telemetry: Telemetry = field(default_factory=Telemetry)
    slots: Slots = field(default_factory=Slots)
    looked_at: float | None = None
    """When (monotonic) a standby at capacity last looked the account's holder up."""
    asked_at: float | None = None
    """When (monotonic) the lease call that last got or confirmed the lease was sent."""

    def confirmed(self) -> None:
        """The lease call sent at `asked_at` found the lease ours: with `lease_timeout` set, the
        engine may act until half of it has passed since then (the other half is the margin
        before another engine may take the account: PostgresAdvisoryLease)."""
        timeout = self.settings.lease_timeout
        if timeout is not None and self.asked_at is not None:
            self.engine.lease_confirmed(self.asked_at + timeout / 2)

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """Exchange call, database write and alert delivery metrics (the API's /metrics adds them)."""
        return self.telemetry.registry

    telegram: Any = None
    """The python-telegram-bot `Bot` when a token is set (the Telegram entrypoint polls with it)."""
    telegram_record: UpdateRecord | None = None
    """Where that bot records the updates it took (when this runtime made the bot)."""
    channels: list[AlertChannel] = field(default_factory=list)
    waiting_kill: WaitingKill | None = None
    """A kill of every account kept for this account while its engine could not take it."""

    @property
    def is_holder(self) -> bool:
        return self.epoch is not None

    @property
    def holder(self) -> str | None:
        """The engine holding the account's lease (this one's name while it does), as last seen."""
        return self.lease.holder()


async def upgrade_database(url: str) -> None:
    """Migrate the database at `url` to the newest schema."""
    await upgrade(url)


async def serve_sim(
    host: str,
    port: int,
    seed: int,
    state_file: str | None,
    *,
    price_interval: float = 1.0,
    venue: str = "binance",
    accounts: int = 1,
    clock_offset: float = 0.0,
    markets: int = 3,
) -> None:
    """The simulated exchange server (`warden sim serve`), speaking `venue`'s protocol: Binance
    USD-M, Bybit v5, or the Drift sidecar protocol. `accounts` > 1 (Binance, Bybit): that many
    independent simulated accounts in this one process, on `port`, `port + 1`, ... (seeds
    `seed`, `seed + 1`, ...).

    `price_interval`: seconds between random-walk steps of the marks; 0 switches the walk off
    (marks then move only through POST /sim/price). `venue`: "binance" (USD-M, the default) or
    "bybit" (v5 linear). `clock_offset`: seconds the server's clock runs ahead of this host's
    (negative: behind); Binance and Bybit only. `markets`: how many markets it lists (BTC, ETH,
    SOL, then synthetic S000, S001, ...); Binance and Bybit only.
    """
    from pathlib import Path

    from warden.adapters.sim.server import serve

    if venue == "drift":
        from warden.adapters.sim.drift import serve_drift

        if clock_offset or markets != 3:
            raise ValueError("--clock-offset and --markets apply to the binance and bybit venues, not drift")
        await serve_drift(
            host=host,
            port=port,
            seed=seed,
            state_file=Path(state_file) if state_file else None,
            price_interval=price_interval,
        )
        return

    if accounts > 1:
        # One account failing (its port taken) stops them all: gather alone raised the error but
        # left the others serving, orphaned.
        servers = [
            asyncio.create_task(
                serve(
                    host=host,
                    port=port + i,
                    seed=seed + i,
                    price_interval=price_interval,
                    venue=venue,
                    clock_offset=clock_offset,
                    markets=markets,
                )
            )
            for i in range(accounts)
        ]
        try:
            await asyncio.gather(*servers)
        finally:
            for server in servers:
                server.cancel()
            await asyncio.gather(*servers, return_exceptions=True)
        return
    await serve(
        host=host,
        port=port,
        seed=seed,
        state_file=Path(state_file) if state_file else None,
        price_interval=price_interval,
        venue=venue,
        clock_offset=clock_offset,
        markets=markets,
    )


def engine_config(settings: Settings, installation_id: str = "") -> EngineConfig:
    return EngineConfig(
        exchange_name=settings.exchange,
        account=settings.account,
        database=redact(settings.db),
        plan=settings.exit_plan(),
        order_timeout=settings.order_timeout,
        query_timeout=settings.order_timeout,
        protection_window=settings.protection_window,
        allow_stacking=settings.allow_stacking,
        reconcile_interval=settings.reconcile_interval,
        stream_silence=settings.stream_silence,
        entry_deadline=settings.entry_deadline,
        orphan_policy=settings.orphan_policy,
        installation_id=installation_id,
        limits=settings.limits(),
        margin=settings.margin_plan(),
    )


def build_bot(settings: Settings) -> Any:
    """The Telegram bot (None without a token); one per process, shared by every account."""
    if settings.telegram_token is None:
        return None
    from warden.adapters.telegram import make_bot  # only with a token: ~0.2 s to import

    token = settings.telegram_token.get_secret_value()
    hide_secret(token)
    return make_bot(token, settings.telegram_api_url)


def build_update_record(settings: Settings) -> UpdateRecord | None:
    """Where the bot records the highest update id it took: `<data_dir>/telegram-<bot id>.json`,
    one per bot (every account it serves shares it); None without a token."""
    if settings.telegram_token is None:
        return None
    from warden.adapters.telegram import FileUpdateRecord, record_path

    return FileUpdateRecord(record_path(settings.data_dir, settings.telegram_token.get_secret_value()))


def build_channels(
    settings: Settings, clock: Clock, bot: Any = None, *, label: bool = False
) -> tuple[list[AlertChannel], Any]:
    """The remote alert channels the settings ask for, and the Telegram bot (None without a token).

    `bot`: a bot already made (by the fleet, for every account); else one is made here.
    `label`: each Telegram alert names its account (one bot speaking for several). `clock`: the
    engine's, by which a Telegram alert delivered late says when it was raised."""
    channels: list[AlertChannel] = []
    if bot is None:
        bot = build_bot(settings)
    if bot is not None:
        from warden.adapters.telegram import TelegramChannel  # only with a token: ~0.2 s to import

        account = settings.account if label else None
        channels.extend(TelegramChannel(bot, chat, account, clock.now) for chat in settings.chat_ids)
    if settings.alert_webhook_url:
        from warden.adapters.webhook import WebhookChannel  # httpx: only when a webhook is set

        channels.append(WebhookChannel(settings.alert_webhook_url, settings.account))
    return channels, bot


def build_exchange(settings: Settings, clock: Clock) -> tuple[Exchange, SimulatedExchange | None]:
    if settings.exchange == "sim":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        state = settings.data_dir / f"sim-{settings.account}.json"
        sim = SimulatedExchange(now=clock.now, seed=settings.sim_seed, sleep=clock.sleep, state_file=state)
        return sim, sim
    if settings.exchange in ("binanceusdm", "bybit"):
        from warden.adapters.ccxt import CcxtBybitExchange, CcxtExchange

        if settings.api_key is None or settings.api_secret is None:
            raise ConfigError("api_key", f"{settings.exchange} needs WARDEN_API_KEY and WARDEN_API_SECRET")
        venue = CcxtBybitExchange if settings.exchange == "bybit" else CcxtExchange
        exchange = venue.create(
            api_key=settings.api_key.get_secret_value(),
            api_secret=settings.api_secret.get_secret_value(),
            base_url=settings.exchange_url,
            testnet=settings.testnet,
            leverage=settings.leverage,
            margin_mode=settings.margin_mode,
        )
        return exchange, None
    if settings.exchange == "drift":
        return build_drift(settings), None
    raise ConfigError("exchange", f"{settings.exchange!r} is not available in this build")


def build_drift(settings: Settings) -> Exchange:
    """The Drift adapter: against `exchange_url` (a sidecar or the simulator), or against a sidecar
    warden starts and supervises itself (started in `running`). Its user-order-id table lives in
    warden's database (already migrated by `open_store`)."""
    from warden.adapters.db.drift_ids import SqlUserOrderIds
    from warden.adapters.drift import DriftExchange, SidecarClient, SidecarConfig, SidecarProcess
    from warden.ports import ExchangeUnavailable

    ids = SqlUserOrderIds(settings.db, settings.account, op_timeout=settings.db_timeout)
    if settings.exchange_url is not None:
        return DriftExchange(SidecarClient(settings.exchange_url), ids)
    if settings.drift_keypair_path is None or settings.drift_rpc_url is None:
        raise ConfigError(
            "drift_keypair_path",
            "drift needs WARDEN_DRIFT_KEYPAIR_PATH and WARDEN_DRIFT_RPC_URL (or --exchange-url of a sidecar)",
        )
    keypair = settings.drift_keypair_path.get_secret_value()
    if not Path(keypair).is_file():  # refused here, before a sidecar is started; the path is never shown
        raise ConfigError("drift_keypair_path", "no keypair file at the configured path")
    config = SidecarConfig(
        python=settings.drift_sidecar_python,
        keypair_path=keypair,
        rpc_url=settings.drift_rpc_url.get_secret_value(),
        sub_account=settings.drift_sub_account,
    )
    try:
        process = SidecarProcess(config)
    except ExchangeUnavailable as exc:
        raise ConfigError("drift_sidecar_python", str(exc)) from None
    return DriftExchange(SidecarClient(process.url), ids, sidecar=process)


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    price_feed: bool = True,
    exchange: Exchange | None = None,
    lease_retry: float = LEASE_RETRY,
    beside: Sequence[Callable[[Runtime], Coroutine[Any, Any, None]]] = (),
    bot: Any = None,
    label_alerts: bool = False,
    migrate: bool = True,
    slots: Slots | None = None,
    shared: SharedConnections | None = None,
    waiting_kill: WaitingKill | None = None,
    start_told: Callable[[], bool] | None = None,
) -> AsyncIterator[Runtime]:
    """Build, take the lease (or stand by), recover, and run until the block exits.

    `beside`: entrypoints that run next to the engine in its task group (the Telegram bot);
    they are started once the runtime exists, whether this engine holds the lease or stands by.
    Alert delivery runs from the start too, on a standby as well. `bot`: the Telegram bot when
    several accounts share one (its owner closes it); else one is made from the settings.
    `label_alerts`: Telegram alerts name the account ([accounts.NAME] tables, one chat). `migrate`:
    False when the database was migrated already (by the fleet, once for every account).
    `slots`: the engine's capacity, shared by the accounts of a fleet (the lease is tried only
    with room for it). `shared`: PostgreSQL sessions shared by the accounts of a fleet.
    `waiting_kill`: a kill of every account kept for this one (the fleet's); else its file.
    `start_told`: whether the account's start failure is told already (the fleet's herald): its
    engine, started again within the episode, does not tell it again.
    """
    clock = clock or SystemClock()
    waiting_kill = waiting_kill or waiting_kill_of(settings.data_dir, settings.account)
    store = await _open_or_guard(
        settings,
        clock,
        exchange,
        migrate=migrate,
        shared=shared,
        notifier=notifier,
        bot=bot,
        label=label_alerts,
    )
    owns_exchange = exchange is None  # an exchange handed in is closed by whoever made it
    try:
        exchange, sim = await _exchange_for(settings, clock, exchange)
    except BaseException:
        await store.close()  # one account that cannot start leaves nothing open behind it
        raise
    telemetry = Telemetry()
    channel = "log"  # the notifier is the log channel (Telegram and webhooks are alert channels)
    shared_bot = bot is not None
    channels, bot = build_channels(settings, clock, bot, label=label_alerts)
    engine = Engine(
        measured_exchange(exchange, telemetry),
        MeasuredStore(store, telemetry),
        clock,
        MeasuredNotifier(notifier or LogNotifier(), channel, telemetry),
        engine_config(settings, store.installation_id),
        channels=channels,
        routes=settings.routes(),
        leased=True,
        spill=FileControlsSpill(settings.data_dir / f"controls-{settings.account}.json"),
        waiting_kill=waiting_kill,
        start_failure_told=start_told,
    )
    _what_beside_shows(engine, exchange, bot)
    lease = lease_for(
        settings.db,
        settings.account,
        holder=settings.engine_name,
        op_timeout=settings.db_timeout,
        session=None if shared is None else shared.lease_session,
        timeout=settings.lease_timeout,
    )
    runtime = Runtime(
        settings,
        engine,
        store,
        exchange,
        lease,
        clock,
        sim,
        price_feed,
        lease_retry=lease_retry,
        telemetry=telemetry,
        slots=slots or Slots(),
        telegram_record=build_update_record(settings) if bot is not None and not shared_bot else None,
        waiting_kill=waiting_kill,
    )
    runtime.telegram, runtime.channels = bot, channels
    try:
        # Before the task group: a database that fails here is raised as itself, not wrapped in
        # an ExceptionGroup (the CLI names `db`, the fleet the error).
        epoch = await _first_lease(runtime, notifier, label_alerts)
        async with asyncio.TaskGroup() as group:
            runtime.group = group
            # The engine's acting loops run outside the group (`run_loops`): stopped however the
            # block ends, a start that raised before the first attempt was told included.
            try:
                if epoch is None:
                    await _stand_by_because(runtime)
                    log.warning("standby", account=settings.account, holder=lease.holder())
                    runtime.tasks.append(group.create_task(_standby(runtime)))
                else:
                    await _activate(runtime, epoch)
                runtime.tasks.append(group.create_task(engine.deliver_alerts()))
                runtime.tasks.extend(group.create_task(run(runtime)) for run in beside)
                if epoch is not None:
                    await engine.first_attempt.wait()
                yield runtime
            finally:
                await engine.stop()
                for task in [*runtime.tasks, runtime.watch, runtime.feed]:
                    if task is not None:
                        task.cancel()
                await asyncio.gather(
                    *[t for t in (runtime.watch, runtime.feed) if t is not None], return_exceptions=True
                )
    finally:
        with contextlib.suppress(Exception):
            await lease.release()
        runtime.slots.give_back(settings.account)
        if owns_exchange:
            await exchange.close()
        await _close_channels(channels, None if shared_bot else bot)
        await store.close()


async def _open_or_guard(
    settings: Settings,
    clock: Clock,
    exchange: Exchange | None,
    *,
    migrate: bool,
    shared: SharedConnections | None,
    notifier: Notifier | None,
    bot: Any,
    label: bool,
) -> SqlStore:
    """The account's store, its installation id kept beside the data (for a start that cannot
    open it); one that cannot be opened raises StoreUnavailable once the exchange is guarded."""
    try:
        store = await open_store(
            settings.db,
            exchange=settings.exchange,
            account=settings.account,
            op_timeout=settings.db_timeout,
            migrate=migrate,
            shared=shared,
            idle_in_transaction=_idle_limit(settings),
        )
    except StoreUnavailable as exc:
        await guard_unopened(settings, clock, exchange, str(exc), notifier=notifier, bot=bot, label=label)
        raise
    try:
        InstallationFile(settings.data_dir, settings.account).remember(settings.db, store.installation_id)
    except StoreUnavailable as exc:  # a start that cannot open the database then cannot guard
        log.warning("installation_not_kept", error=str(exc))
    return store


async def guard_unopened(
    settings: Settings,
    clock: Clock,
    exchange: Exchange | None,
    why: str,
    *,
    notifier: Notifier | None = None,
    bot: Any = None,
    label: bool = False,
) -> list[str]:
    """The database cannot be opened at all (PostgreSQL down as the process starts): no lease can
    be taken and nothing loaded, and a position that filled just before a crash would wait, naked,
    until the database answers. Protect what the exchange holds, as a start that cannot read its
    database does (`Recovery.guard`): every position no resting reduce-only stop covers gets a
    guard stop, named by the installation id kept in the data directory (`InstallationFile`),
    which the engine that opens the database later cancels as its own stray once the real stop
    rests. The caller fails as before (the process exits; a fleet starts the account again).

    Sent without the lease, on purpose, and only where none covers a position twice half the
    protection window apart: an engine that holds the account meanwhile (this host alone cut off
    from the database) covers its fills within that, so a guard goes beside its stops only when
    it fails to protect, and it cancels the guard as a stray. With no id kept for this database
    nothing is sent (an id not the database's would be another warden's order to the engine that
    opens it: it would stop trading); the trader is told what no stop covers. What was placed or
    found is told from memory (there is no outbox), and returned."""
    try:
        installation = InstallationFile(settings.data_dir, settings.account).recall(settings.db)
        unknown = "no installation id is kept for this database in the data directory"
    except StoreUnavailable as exc:
        installation, unknown = None, str(exc)
    owns_exchange = exchange is None
    try:
        venue, _ = await _exchange_for(settings, clock, exchange)
    except Exception as exc:  # the database's error is the one the caller reports
        log.error("guard_failed", error=f"{type(exc).__name__}: {exc}")
        return []
    try:
        config = engine_config(settings, installation or "")
        guard = Engine(venue, _no_database(), clock, LogNotifier(), config)
        found = await guard.recovery.guard_unleased(send=installation is not None)
    except Exception as exc:  # the database's error stays the one the caller reports
        log.error(
            "guard_failed", error=f"{type(exc).__name__}: {exc}", exc_info=not isinstance(exc, ExchangeError)
        )
        return []
    finally:
        if owns_exchange:
            await venue.close()
    if found:
        if installation is None:  # nothing placed: the trader must act
            kind, then = (
                AlertKind.PROTECTION_FAILED,
                f"{unknown}, so no guard stop was placed; no stop covers",
            )
        else:
            kind, then = AlertKind.STOP_REPLACED, "guard stops placed on the exchange"
        message = f"database unreachable at startup ({why}); {then}: " + "; ".join(found)
        await _tell_from_memory(settings, clock, notifier or LogNotifier(), bot, label, kind, message)
    return found


GUARD_ALERT_WAIT = 5.0
"""Seconds a start that cannot open its database spends delivering what its guard did."""
MEMORY_LOG_WAIT = 5.0
"""Seconds an alert delivered from memory may take to be logged."""


def _memory_deliverer(
    settings: Settings, clock: Clock, notifier: Notifier, bot: Any, label: bool
) -> tuple[Deliverer, list[AlertChannel], Any]:
    """A deliverer of alerts held in memory only (no outbox: no database to keep one, or an
    account's own that its engine does not own yet), with the channels the settings ask for and
    the bot made for them (None when `bot` was given)."""
    channels, made = build_channels(settings, clock, bot, label=label)
    deliverer = Deliverer(
        _no_database(), clock, notifier, channels, settings.routes(), owns_outbox=lambda: False
    )
    return deliverer, channels, None if bot is not None else made


async def _offer_from_memory(deliverer: Deliverer, clock: Clock, kind: AlertKind, message: str) -> Alert:
    """A new alert, held in memory only: logged now, then sent by `deliverer`."""
    alert = Alert(AlertId(secrets.token_hex(8)), kind, message, clock.now())
    deliverer.offer(alert, stored=False)
    await deliverer.log_now(alert, MEMORY_LOG_WAIT)
    return alert


async def _tell_from_memory(
    settings: Settings,
    clock: Clock,
    notifier: Notifier,
    bot: Any,
    label: bool,
    kind: AlertKind,
    message: str,
) -> None:
    """Tell the trader with no outbox (no database): logged at once (`notifier`), then sent to
    every channel, tried for up to GUARD_ALERT_WAIT seconds."""
    deliverer, channels, made = _memory_deliverer(settings, clock, notifier, bot, label)
    await _offer_from_memory(deliverer, clock, kind, message)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GUARD_ALERT_WAIT):
                while await deliverer.deliver_pending():
                    await clock.sleep(0.2)
    finally:
        await _close_channels(channels, made)


def _no_database() -> Store:
    """A store nothing reads or writes (an alert delivered from memory, a guard with no database);
    imported only then, not at start."""
    from warden.adapters.memory import InMemoryStore

    return InMemoryStore()


def waiting_kill_of(data_dir: Path, account: str) -> WaitingKill:
    """`<data_dir>/kill-<account>.json`: a kill of every account kept for this one (read now)."""
    return FileWaitingKill(data_dir / f"kill-{account}.json")


def _what_beside_shows(engine: Engine, exchange: Exchange, bot: Any) -> None:
    """What /status shows from beside the engine: the Telegram bot's absence, and the exchange
    adapter's warnings (e.g. the host's clock far off the exchange's)."""
    if isinstance(exchange, ReportsWarnings):
        exchange.report_warnings(engine.set_warning)
    if bot is None:
        engine.notes["telegram"] = NO_TELEGRAM


async def _exchange_for(
    settings: Settings, clock: Clock, given: Exchange | None
) -> tuple[Exchange, SimulatedExchange | None]:
    """The exchange handed in, or the one the settings name (a Drift sidecar started)."""
    if given is not None:
        return given, given if isinstance(given, SimulatedExchange) else None
    exchange, sim = build_exchange(settings, clock)
    await _start_sidecar(exchange)
    return exchange, sim


async def _start_sidecar(exchange: Exchange) -> None:
    """A Drift adapter that supervises its own sidecar starts it before anything is asked of it."""
    from warden.adapters.drift import DriftExchange

    if isinstance(exchange, DriftExchange):
        await exchange.start()


async def _close_channels(channels: list[AlertChannel], bot: Any) -> None:
    if channels:
        from warden.adapters.webhook import WebhookChannel

        for channel in channels:
            if isinstance(channel, WebhookChannel):
                await channel.close()
    if bot is not None:
        from warden.adapters.telegram import close_bot

        with contextlib.suppress(Exception):
            await close_bot(bot)


async def _activate(runtime: Runtime, epoch: int) -> None:
    """This engine holds the lease: fence the store, consume, recover (retrying), then run the timers.

    Startup recovery retries with backoff (an exchange outage during start or a
    takeover must not end the process exactly when failover is needed); until it
    passes, /status says `starting` with the reason and signals get 503.
    """
    group, engine = runtime.group, runtime.engine
    assert group is not None
    runtime.epoch = epoch
    runtime.store.set_epoch(runtime.settings.account, epoch)
    runtime.confirmed()
    engine.take_over()
    engine.run_loops(runtime.exchange.stream())
    runtime.tasks.append(group.create_task(_start(runtime, epoch)))


async def _start(runtime: Runtime, epoch: int) -> None:
    engine = runtime.engine
    group = runtime.group
    assert group is not None
    renewing = group.create_task(_confirm_while_starting(runtime)) if runtime.settings.lease_timeout else None
    try:
        await engine.start_with_retry()
    except NotHolder:
        if renewing is not None:  # nothing confirms the lease while it is given up
            renewing.cancel()
            await asyncio.wait([renewing])
        # The database refused a write of this start (the fencing epoch moved: another engine took
        # the account while the start was retrying) or the engine stopped. A lost lease is handled
        # as the watcher handles it: this engine stands by for the account, so it takes it back
        # when the other holder goes, and gives back its capacity meanwhile.
        # Or, with lease_timeout, the gate refused it: the bound lapsed (told as expired, not as
        # lost to another engine, unless the check finds one holding it).
        if engine.status().state is not EngineState.STOPPED:
            state = None
            with contextlib.suppress(StoreError):
                state = await runtime.lease.check()  # learns who holds it now
            with contextlib.suppress(StoreError):
                await runtime.lease.release()
            lapsed = state is not LeaseState.LOST and runtime.engine.ctx.gate.unconfirmed
            await _lease_lost(runtime, _lapsed(runtime) if lapsed else None)
        return
    finally:
        if renewing is not None:
            renewing.cancel()
    runtime.watch = group.create_task(_watch_lease(runtime))
    if runtime.sim is not None and runtime.price_feed:
        feed = SimPriceFeed(
            runtime.sim, interval=runtime.settings.sim_tick_interval, sleep=runtime.clock.sleep
        )
        runtime.feed = group.create_task(feed.run())
    log.info("lease_held", account=runtime.settings.account, epoch=epoch)


async def _confirm_while_starting(runtime: Runtime) -> None:
    """With `lease_timeout`: renew the lease while the start runs (recovery retrying through an
    exchange outage can take minutes), so its time bound does not lapse before the watcher takes
    over (`_renew`; what it cannot confirm is left to the start, whose writes are fenced and
    sends refused once the bound lapses, and then to the watcher). Cancelled when the start
    ends; the lease finishes a call under way first (a call cut in half would drop its session).
    """
    while True:
        await runtime.clock.sleep(runtime.lease_retry)
        with contextlib.suppress(StoreError):
            await _renew(runtime)


async def _renew(runtime: Runtime) -> LeaseState | None:
    """One renewal of the lease this engine holds: check it, and lock one in doubt (its session
    dropped, nobody seen taking it) again with its epoch. HELD confirms it (`Runtime.confirmed`)
    unless its time bound lapsed before the answer came: then None, and the engine stands down
    (see `_watch_lease`). UNREACHABLE: still in doubt. LOST: another engine has it."""
    clock, lease, engine = runtime.clock, runtime.lease, runtime.engine
    account = runtime.settings.account
    asked = clock.monotonic()
    state = await lease.check()
    if state is LeaseState.UNREACHABLE:
        engine.lease_unreachable("the lease's database connection failed")
        asked = clock.monotonic()
        try:
            epoch = await lease.reacquire()
        except StoreUnavailable as exc:
            log.warning("lease_unreachable", account=account, error=str(exc))
            return None if runtime.engine.ctx.gate.unconfirmed else LeaseState.UNREACHABLE
        if epoch is None:
            return LeaseState.LOST
        if epoch != runtime.epoch:
            runtime.epoch = epoch
            runtime.store.set_epoch(account, epoch)
        log.info("lease_reacquired", account=account, epoch=epoch)
        state = LeaseState.HELD
    if state is LeaseState.LOST:
        return state
    if runtime.engine.ctx.gate.unconfirmed:
        return None
    runtime.asked_at = asked
    runtime.confirmed()
    engine.lease_restored()
    return state


async def _first_lease(runtime: Runtime, notifier: Notifier | None, label: bool) -> int | None:
    """`_try_lease` as the process starts; a database gone down since its store opened leaves
    nothing loaded and no lease, so the exchange is guarded first (`guard_unopened`)."""
    try:
        return await _try_lease(runtime)
    except StoreUnavailable as exc:
        await guard_unopened(
            runtime.settings,
            runtime.clock,
            runtime.exchange,
            str(exc),
            notifier=notifier,
            bot=runtime.telegram,
            label=label,
        )
        raise


async def _try_lease(runtime: Runtime) -> int | None:
    """The lease's epoch if this engine has room for the account and got it; else None.

    Without room, a lock still kept from an expiry stand-down (`_lease_lost`: kept so this
    engine may take the account back at once) is let go: on a fleet engine's shared session,
    live with its other accounts' renewals, no other engine could ever end it."""
    account = runtime.settings.account
    if not runtime.slots.take(account):
        with contextlib.suppress(StoreError):
            await runtime.lease.release()
        return None
    epoch = None
    try:
        asked = runtime.clock.monotonic()
        epoch = await runtime.lease.try_acquire()
        runtime.asked_at = asked
    finally:
        if epoch is None:
            runtime.slots.give_back(account)
    return epoch


async def _stand_by_because(runtime: Runtime) -> None:
    """Say why this engine stands by for the account: another engine holds it, or this one is
    at its capacity (then who holds it is looked up; nobody means nothing protects it)."""
    account, slots = runtime.settings.account, runtime.slots
    if not slots.full(account):
        runtime.engine.set_read_only(f"standby: account {account!r} is held by {runtime.lease.holder()}")
        return
    now = runtime.clock.monotonic()
    holder = runtime.lease.holder()
    if runtime.looked_at is None or now - runtime.looked_at >= LOOKS_EVERY * runtime.lease_retry:
        # Looked up on a slower cadence than the lease is tried: an engine at capacity stands by
        # for many accounts, and each look is a query (on PostgreSQL, a connection of its own).
        runtime.looked_at = now
        with contextlib.suppress(StoreUnavailable):
            holder = await runtime.lease.look()
        if holder is None:
            log.error("account_unheld", account=account, capacity=slots.capacity)
    held = f"held by {holder}" if holder else "held by no engine: nothing protects it until one has room"
    runtime.engine.set_read_only(f"{slots.full_reason()}; account {account!r} is {held}")


async def _standby(runtime: Runtime) -> None:
    while True:
        await runtime.clock.sleep(runtime.lease_retry)
        try:
            epoch = await _try_lease(runtime)
        except StoreUnavailable as exc:
            log.warning("standby_lease_check_failed", error=str(exc))
            continue
        if epoch is None:
            await _stand_by_because(runtime)
        if epoch is not None:
            log.warning("lease_taken_over", account=runtime.settings.account, epoch=epoch)
            await _activate(runtime, epoch)
            runtime.engine.lease_taken(epoch)
            return


async def _watch_lease(runtime: Runtime) -> None:
    """Check the lease every `lease_retry` seconds (`_renew`).

    - HELD: carry on (and clear a "lease unverifiable" note).
    - UNREACHABLE: our own database connection failed. Degraded, not lost: keep
      protecting on the exchange, queue writes, and re-acquire the lease (the same
      epoch, if nobody took it meanwhile) as soon as the database answers.
    - LOST (another engine holds it, or the epoch moved): stand down at once — every
      acting loop stops — and wait as a standby; a later takeover reloads from the database.

    With `lease_timeout` set (a fleet on several hosts) the lease is bounded in time: each
    confirmation lets the engine act for half the timeout, and the gate refuses every send and
    write after that. A bound that lapsed is stood down from like a lost lease, whatever the
    check then says: another engine may take the account over once the timeout has passed, and
    the refusals meanwhile (NotHolder) ended whatever acting loop met one, as a stand-down ends
    them; a lease found still ours is taken again by the standby, with a fresh recovery.
    """
    while True:
        await runtime.clock.sleep(runtime.lease_retry)
        state = await _renew(runtime)
        if state is None:
            await _lease_lost(runtime, _lapsed(runtime))
            return
        if state is LeaseState.LOST:
            await _lease_lost(runtime)
            return


def _lapsed(runtime: Runtime) -> str:
    return f"not confirmed within lease_timeout {runtime.settings.lease_timeout or 0:g} s / 2"


async def _lease_lost(runtime: Runtime, expired: str | None = None) -> None:
    """Another engine holds the account (or, `expired`, may take it: the lease went unconfirmed
    too long): stop acting, give the capacity back, and stand by (taking it back if nobody did)."""
    lease = runtime.lease
    account = runtime.settings.account
    log.error("lease_lost", account=account, holder=lease.holder(), expired=expired)
    runtime.epoch = None
    runtime.slots.give_back(account)
    await runtime.engine.stand_down(
        f"lease expired: account {account!r} unconfirmed ({expired}); another engine may take it"
        if expired
        else f"lease lost: account {account!r} is held by {lease.holder()}"
    )
    if runtime.feed is not None:
        runtime.feed.cancel()
    if runtime.group is not None:
        runtime.tasks.append(runtime.group.create_task(_standby(runtime)))


# ------------------------------------------------------------------ many accounts in one process


T = TypeVar("T")


@dataclass(frozen=True)
class _NotInForce:
    """Why a control naming an account is not in force on its engine (Fleet._in_force)."""

    why: str
    standby: bool = False
    """Refused by a standby: the engine holding the account decides; nothing is kept here."""


@dataclass
class Fleet:
    """Every account this process serves, each with its own engine, lease, exchange and stream.

    `runtimes` holds the accounts that are running (holder or standby); `failures` says why an
    account is not (it could not be built, or its engine ended): one account's failure never
    stops another's. With no [accounts.*] table the fleet is the one `default` account.
    """

    settings: Settings
    names: tuple[str, ...]
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    telegram: Any = None
    telegram_record: UpdateRecord | None = None
    """Where the one bot records the updates it took (one record for every account)."""
    clock: Clock = field(default_factory=SystemClock)
    slots: Slots = field(default_factory=Slots)
    retrying: set[str] = field(default_factory=set)
    """Accounts whose engine failed and will be started again (their `failures` say why)."""
    kills: dict[str, WaitingKill] = field(default_factory=dict)
    """Each account's waiting kill (`kill_account`), handed to its engine at every start."""
    heralds: dict[str, _StartHerald] = field(default_factory=dict)
    """Each account's start herald (_AccountServer): tells what concerns it while it is not running."""
    first_starts: dict[str, asyncio.Event] = field(default_factory=dict)
    """Set for each account once its first start ended (running, or failed)."""

    @property
    def starting(self) -> set[str]:
        """Accounts whose first start has not ended yet (the fleet was handed over without them)."""
        return {name for name, ended in self.first_starts.items() if not ended.is_set()}

    @property
    def multi_account(self) -> bool:
        return len(self.names) > 1

    async def kill_account(self, name: str, flatten: bool, reason: str) -> KillReport | str:
        """One account's part of a kill of every account (the API's and Telegram's): its report,
        or why its kill switch is not on now. An account whose engine cannot take the kill (not
        running, or stopped) has it kept: in force at once in this process (memory first), then
        on disk for a restart, and its engine puts it in force before it lets any signal in. Not
        for a standby: the engine holding the account decides. Other refusals are raised."""
        done = await self._in_force(name, lambda engine: engine.kill(flatten, reason))
        if not isinstance(done, _NotInForce):
            return done
        if done.standby:
            return done.why
        kept = await self._keep(name, printable(reason) or "a kill of every account", pause_only=False)
        return f"{done.why}; {kept}{'; its positions were NOT closed' if flatten else ''}"

    async def pause_account(self, name: str, reason: str) -> Controls | str:
        """A pause naming account `name` (the API's, the CLI's and Telegram's): its controls, or
        why it is not in force now. Kept as a kill is (`kill_account`: the same waiting place),
        for an account whose engine cannot take it (not running, or stopped), so it starts paused.
        Not for a standby: the engine holding the account decides. Other refusals are raised."""
        done = await self._in_force(name, lambda engine: engine.pause(reason))
        if not isinstance(done, _NotInForce):
            return done
        if done.standby:
            return done.why
        kept = await self._keep(name, printable(reason) or "a pause naming this account", pause_only=True)
        return f"{done.why}; {kept}"

    async def _in_force(self, name: str, act: Callable[[Engine], Awaitable[T]]) -> T | _NotInForce:
        """`act` on account `name`'s engine: what it did, or why it could not (not running; or
        its engine stopped, or a standby's refusal: `standby` when nothing is to be kept)."""
        runtime = self.runtimes.get(name)
        if runtime is None:
            return _NotInForce(f"not running: {self.failures.get(name, 'it is starting')}")
        try:
            return await act(runtime.engine)
        except NotHolder as exc:
            standby = runtime.engine.status().state is EngineState.READ_ONLY
            return _NotInForce(f"{type(exc).__name__}: {exc}", standby=standby)

    async def _keep(self, name: str, reason: str, *, pause_only: bool) -> str:
        """Keep a kill (or a pause) for account `name` until its engine takes it; what to say of it."""
        waiting = self.kills[name]
        waiting.mark(reason, pause_only=pause_only)
        starts = "it starts paused" if waiting.pause_only else "it starts with the kill switch on"
        try:
            await asyncio.to_thread(waiting.save)
        except StoreUnavailable as exc:
            return f"kept in memory only ({exc}): {starts} unless warden restarts first"
        return f"kept in {waiting.where}: {starts}"

    async def signal_refused(self, name: str, message: str) -> None:
        """A signal for account `name` refused while it is not running (its engine, and so its
        outbox, does not exist): told by its start herald, from memory, as its failure is."""
        herald = self.heralds.get(name)
        if herald is not None:
            await herald.signal_refused(message)

    def kill_waiting(self, name: str) -> str | None:
        """What to say of a kill (or a pause) kept for `name` while it waits for the account's engine."""
        kill = self.kills.get(name)
        reason = None if kill is None else kill.pending()
        if reason is None:
            return None
        if kill is not None and kill.pause_only:
            return f"a pause is kept for it ({reason}): it starts paused"
        return f"a kill of every account is kept for it ({reason}): it starts with the kill switch on"

    def runtime(self, name: str) -> Runtime | None:
        return self.runtimes.get(name)


BesideFleet = Callable[[Fleet], Coroutine[Any, Any, None]]

RESTART_AFTER = 1.0
"""Seconds before an account whose engine failed is started again (doubling, up to RESTART_MAX)."""
RESTART_MAX = 30.0
FIRST_START_WAIT = 10.0
"""Seconds the fleet waits for every account's first start before it is handed over (the API,
Telegram): an account slower than that (its exchange, or a Drift sidecar, taking its time) is
shown as starting and joins when it can; the others take signals meanwhile."""


async def _stopped_within(stop: asyncio.Event, clock: Clock, seconds: float) -> bool:
    """Wait `seconds` on the clock, or less if `stop` is set meanwhile; whether it was."""
    waiting = asyncio.ensure_future(stop.wait())
    pausing = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiting, pausing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        pausing.cancel()
    return stop.is_set()


_same_exchange_account = same_exchange_account  # moved to warden.config: `only` needs it too


def _shared_connections(settings: Settings) -> SharedConnections | None:
    """On PostgreSQL, the sessions every account of this engine shares (SQLite needs none)."""
    if urls.is_sqlite(urls.parse(settings.db)):
        return None
    name = settings.engine_name or default_holder()
    return SharedConnections(
        settings.db, name=name, op_timeout=settings.db_timeout, idle_in_transaction=_idle_limit(settings)
    )


def _idle_limit(settings: Settings) -> float | None:
    """With `lease_timeout`, a write left idle in its transaction for half of it is ended by the
    server: the fence's share lock on the lease row would otherwise stop another engine from
    taking the account over from a holder whose host died (or froze) mid-write. The taker waits
    the whole timeout since the holder's last renewal, which the holder sends every 2 s."""
    return None if settings.lease_timeout is None else settings.lease_timeout / 2


class _StartHerald:
    """Tells the trader's chats (and webhooks) that a fleet account cannot start, before its
    engine, and so its outbox and its own alerts, exist: its store failed to open, its exchange
    or Drift sidecar to be built or started, or its engine ended with an error and the fleet is
    starting it again. Once per failure episode (not once per retry), named like the account's
    own alerts; the episode ends when the account runs again, which its engine then says
    (engine_started when ready; a standby is said here).

    Delivered from memory, at least once while this process lives, never from the database: the
    account's own store (its outbox, fenced by the lease it does not hold) may be what failed,
    and another account's outbox would make that account's engine the owner of the alert. With
    the database itself down every account fails alike, and each is told all the same. A
    process that dies before the alert is delivered tells it again when it fails again."""

    def __init__(self, name: str, settings: Settings, fleet: Fleet, options: dict[str, Any]) -> None:
        self.name = name
        self.settings = settings
        self.fleet = fleet
        self.label = bool(options.get("label_alerts"))
        self.told = False
        self.runtime: Runtime | None = None
        """The account's runtime since the fleet last started it (a holder: its episode ends
        once its engine gets ready, which it says itself)."""
        self.failure: Alert | None = None
        """The episode's engine_start_failed, while it may still be undelivered somewhere."""
        self.deliverer: Deliverer | None = None
        self.channels: list[AlertChannel] = []
        self.task: asyncio.Task[None] | None = None

    async def _offer(self, kind: AlertKind, message: str) -> Alert:
        clock = self.fleet.clock
        if self.deliverer is None:
            self.deliverer, self.channels, _ = _memory_deliverer(
                self.settings, clock, LogNotifier(), self.fleet.telegram, self.label
            )
            self.task = asyncio.create_task(self.deliverer.run(), name=f"start-alerts:{self.name}")
        return await _offer_from_memory(self.deliverer, clock, kind, message)

    async def failed(self, why: str, *, retrying: bool) -> None:
        ran = self.runtime is not None and self.runtime.engine.ran
        self.runtime = None
        if self.told and not ran:
            return  # started again and failed again before it ever got ready: the same episode
        self.told = True
        then = (
            "warden keeps starting it again and says when it runs"
            if retrying
            else "it is not started again until its settings are fixed"
        )
        self.failure = await self._offer(
            AlertKind.ENGINE_START_FAILED,
            f"account {self.name} is not running: {why}; {then}. Nothing watches its positions"
            " meanwhile (their stops on the exchange stay); the other accounts trade on",
        )

    async def signal_refused(self, message: str) -> None:
        await self._offer(AlertKind.SIGNAL_REFUSED, message)

    async def running(self, runtime: Runtime) -> None:
        """The account runs again (a standby), or its engine exists (a holder: the episode ends
        when it gets ready, and says engine_started; its engine_start_failed while its recovery
        retries is not said again within an episode told already)."""
        self.runtime = runtime
        if not self.told:
            return
        # Its failure not yet delivered everywhere (the channels unreachable meanwhile: the host's
        # network down with its database) would arrive after the engine's engine_started, its
        # retries backed off longer: the last word in the chat "not running" while it runs. It is
        # withdrawn where it is missing, and told as what it now is: over.
        failure, self.failure = self.failure, None
        late = failure is not None and self.deliverer is not None and self.deliverer.withdraw(failure.id)
        was = (
            f"; it could not start from {failure.at:%H:%M:%S} UTC, not told then" if late and failure else ""
        )
        # A holder's episode ends once its engine gets ready (`failed` asks); a standby's now. One
        # whose failure was never told is told again if it fails again.
        self.told = runtime.is_holder and not late
        if not runtime.is_holder:
            why = "; ".join(runtime.engine.status().reasons) or "standby"
            await self._offer(AlertKind.ENGINE_STARTED, f"account {self.name} is running again: {why}{was}")
        elif late:
            await self._offer(
                AlertKind.ENGINE_STARTED,
                f"account {self.name} is running again (its engine says when ready){was}",
            )

    async def until(self, stop: asyncio.Event) -> None:
        """Keep delivering (the account will not run again) until the fleet stops."""
        await stop.wait()

    async def close(self) -> None:
        if self.deliverer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.deliverer.deliver_pending()  # a last try, the fleet stopping
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await _close_channels(self.channels, None)


@dataclass
class _AccountServer:
    """Runs one account's engine in the fleet until the fleet stops, starting it again after a
    failure (not after wrong settings), with the failure named in `fleet.failures` meanwhile."""

    fleet: Fleet
    stop: asyncio.Event
    options: dict[str, Any]  # `running`'s keyword arguments shared by every account
    notifier: Callable[[str], Notifier] | None
    exchanges: dict[str, Exchange]
    restart_after: float

    async def serve(self, name: str, account_settings: Settings, started: asyncio.Event) -> None:
        # Every log line of this account's engine names it (this task's context, and its children's).
        structlog.contextvars.bind_contextvars(account=name)
        herald = self.fleet.heralds[name] = _StartHerald(name, account_settings, self.fleet, self.options)
        try:
            pause = self.restart_after
            while not await self.run_once(name, account_settings, started):
                self.fleet.failures[name] += f" (starting again in {pause:g} s)"
                self.fleet.retrying.add(name)
                await herald.failed(self.fleet.failures[name], retrying=True)
                if await _stopped_within(self.stop, self.fleet.clock, pause):
                    return
                pause = min(pause * 2, RESTART_MAX)
            if name in self.fleet.failures and not self.stop.is_set():
                await herald.failed(self.fleet.failures[name], retrying=False)  # wrong settings: for good
                await herald.until(self.stop)
        finally:
            await herald.close()

    async def refused(self, name: str, account_settings: Settings) -> None:
        """A table refused before it could be started (its key variable unset, a second writer
        on one exchange account): told to the trader, once, until the fleet stops."""
        herald = self.fleet.heralds[name] = _StartHerald(name, account_settings, self.fleet, self.options)
        try:
            await herald.failed(self.fleet.failures[name], retrying=False)
            await herald.until(self.stop)
        finally:
            await herald.close()

    async def run_once(self, name: str, account_settings: Settings, started: asyncio.Event) -> bool:
        """Serve the account until the fleet stops (True), or until it fails (False: again)."""
        fleet = self.fleet
        try:
            async with running(
                account_settings,
                notifier=self.notifier(name) if self.notifier is not None else None,
                exchange=self.exchanges.get(name),
                waiting_kill=fleet.kills[name],
                start_told=lambda: self.fleet.heralds[name].told,
                **self.options,
            ) as runtime:
                fleet.failures.pop(name, None)
                fleet.retrying.discard(name)
                fleet.runtimes[name] = runtime
                await self.fleet.heralds[name].running(runtime)
                started.set()
                await self.stop.wait()
        except ConfigError as exc:  # wrong settings stay wrong: not started again
            fleet.failures[name] = f"{exc.field}: {exc.message}"
            log.error("account_failed", account=name, error=fleet.failures[name])
            return True
        except Exception as exc:  # this account only: the others keep trading
            fleet.failures[name] = f"{type(exc).__name__}: {exc}"
            log.error("account_failed", account=name, error=fleet.failures[name], exc_info=exc)
            return self.stop.is_set()
        finally:
            fleet.runtimes.pop(name, None)
            started.set()
        return True


@contextlib.asynccontextmanager
async def running_fleet(
    settings: Settings,
    *,
    clock: Clock | None = None,
    notifier: Callable[[str], Notifier] | None = None,
    price_feed: bool = True,
    exchanges: dict[str, Exchange] | None = None,
    lease_retry: float = LEASE_RETRY,
    beside: Sequence[BesideFleet] = (),
    restart_after: float = RESTART_AFTER,
    first_start_wait: float = FIRST_START_WAIT,
) -> AsyncIterator[Fleet]:
    """Run one engine per account (`running` each, in a task of its own), until the block exits.

    An account whose settings, exchange or database cannot be built is recorded in
    `failures` and the others run on. `notifier(name)`: the notifier of one account's engine;
    `exchanges`: exchanges handed in by name (tests); `beside`: entrypoints over the whole fleet
    (the Telegram bot, one for every account). An account whose engine fails to start or ends
    with an error (its database timing out, say) is started again after `restart_after` seconds,
    doubling to RESTART_MAX, and named in `failures` meanwhile; one whose settings are wrong is
    not (nothing would change). The fleet is handed over once every account's first start has
    ended, or after `first_start_wait` seconds with the slower ones `starting`.
    """
    clock = clock or SystemClock()
    fleet = Fleet(settings, settings.account_names(), clock=clock, slots=Slots(settings.capacity))
    per_account: dict[str, Settings] = {}
    refused: dict[str, Settings] = {}  # tables refused at start, told to the trader below
    for name in fleet.names:
        fleet.kills[name] = waiting_kill_of(settings.data_dir, name)
        try:
            per_account[name] = settings.for_account(name)
        except ConfigError as exc:
            fleet.failures[name] = f"{exc.field}: {exc.message}"
            log.error("account_failed", account=name, error=fleet.failures[name])
            refused[name] = settings.model_copy(update={"account": name, "accounts": {}})
    for name, why in _same_exchange_account(per_account).items():
        refused[name] = per_account.pop(name)
        fleet.failures[name] = why
        log.error("account_failed", account=name, error=why)
    # Once, before any account opens it: concurrent migrations of one SQLite file collide.
    try:
        await upgrade(settings.db)
    except StoreUnavailable as exc:  # every account is guarded, as one of them alone would be
        given = exchanges or {}
        label = bool(settings.accounts)
        await asyncio.gather(
            *(guard_unopened(s, clock, given.get(n), str(exc), label=label) for n, s in per_account.items())
        )
        raise
    fleet.telegram = build_bot(settings)
    fleet.telegram_record = build_update_record(settings) if fleet.telegram is not None else None
    shared = _shared_connections(settings)
    server = _AccountServer(
        fleet,
        asyncio.Event(),
        {
            "clock": clock,
            "price_feed": price_feed,
            "lease_retry": lease_retry,
            "bot": fleet.telegram,
            # Named by its table even when this engine serves one of the file's tables (`warden
            # run --account NAME`, one engine per account): their alerts may share one chat.
            "label_alerts": bool(settings.accounts),
            "migrate": False,
            "slots": fleet.slots,
            "shared": shared,
        },
        notifier,
        exchanges or {},
        restart_after,
    )
    try:
        async with asyncio.TaskGroup() as group:
            started = fleet.first_starts = {name: asyncio.Event() for name in per_account}
            for name, account_settings in per_account.items():
                group.create_task(server.serve(name, account_settings, started[name]), name=f"account:{name}")
            for name, account_settings in refused.items():
                group.create_task(server.refused(name, account_settings), name=f"account:{name}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(first_start_wait):
                    await asyncio.gather(*(event.wait() for event in started.values()))
            for name in fleet.starting:
                log.warning("account_starting", account=name, waited=first_start_wait)
            tasks = [group.create_task(run(fleet)) for run in beside]
            try:
                yield fleet
            finally:
                for task in tasks:
                    task.cancel()
                server.stop.set()
    finally:
        if shared is not None:
            await shared.close()
        if fleet.telegram is not None:
            from warden.adapters.telegram import close_bot

            with contextlib.suppress(Exception):
                await close_bot(fleet.telegram)
