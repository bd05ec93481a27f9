"""On PostgreSQL an engine's accounts share its sessions, their writes taking turns on one. A
write of one account that blocks in the database (an outside session holding a row lock on one of
its rows: an operator's open transaction, a migration, a long report) must not hold up another
account's writes: "an account's failure never stops another's"."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import eventually, until
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import running_fleet
from warden.domain.values import Side, Symbol
from warden.service.commands import OpenPosition
from warden.service.engine import Engine

from .conftest import TWO_SIM, fleet_settings

DB_TIMEOUT = 3.0


@pytest.mark.postgres
async def test_one_accounts_blocked_writes_do_not_hold_up_anothers(tmp_path: Path, pg_url: str) -> None:
    settings = fleet_settings(tmp_path, pg_url, TWO_SIM, extra=f"db_timeout = {DB_TIMEOUT}")
    async with running_fleet(
        settings, price_feed=False, notifier=lambda _: RecordingNotifier(), lease_retry=600
    ) as fleet:
        main, alt = fleet.runtimes["main"].engine, fleet.runtimes["alt"].engine
        await eventually(lambda: main.status().accepting_signals, timeout=30, what="main ready")
        await eventually(lambda: alt.status().accepting_signals, timeout=30, what="alt ready")
        outside = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
        watcher = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
        locked = outside.transaction()
        await locked.start()
        stuck: list[asyncio.Task[object]] = []
        try:
            # every write of alt's checks its fence, a share lock on alt's lease row: held here
            await outside.execute("SELECT epoch FROM leases WHERE account = 'alt' FOR UPDATE")
            stuck = [asyncio.create_task(alt.pause(f"stuck {i}")) for i in range(3)]

            async def alt_waits_on_the_lock() -> bool:
                return bool(await watcher.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))

            await until(alt_waits_on_the_lock, timeout=10, what="alt's write waiting on the row lock")
            began = time.monotonic()
            opened = await main.open_position(OpenPosition(Symbol("SOL/USDT:USDT"), Side.LONG, Decimal(100)))
            await main.pause("main's own")  # a control write
            took = time.monotonic() - began
            assert opened.symbol == "SOL/USDT:USDT"
            # HEAD: queued behind alt's three blocked writes, each given the whole db_timeout
            assert took < DB_TIMEOUT, f"main's writes waited {took:.1f} s behind alt's blocked ones"
        finally:
            await locked.rollback()
            await outside.close()
            await watcher.close()
            await asyncio.gather(*stuck, return_exceptions=True)


@pytest.mark.postgres
async def test_one_accounts_blocked_lease_renewal_leaves_anothers_lease_alone(
    tmp_path: Path, pg_url: str
) -> None:
    """The leases of an engine's accounts share one session too. alt's lease row locked by an
    outside session: alt's renewal (an UPDATE of that row) blocks until its deadline. main's
    lease must stay confirmed and main keep taking entries: it is not alt's row."""
    settings = fleet_settings(tmp_path, pg_url, TWO_SIM, extra=f"db_timeout = {DB_TIMEOUT}")
    async with running_fleet(
        settings, price_feed=False, notifier=lambda _: RecordingNotifier(), lease_retry=0.2
    ) as fleet:
        main, alt = fleet.runtimes["main"].engine, fleet.runtimes["alt"].engine
        await eventually(lambda: main.status().accepting_signals, timeout=30, what="main ready")
        await eventually(lambda: alt.status().accepting_signals, timeout=30, what="alt ready")
        outside = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
        locked = outside.transaction()
        await locked.start()
        released = False
        try:
            await outside.execute("SELECT epoch FROM leases WHERE account = 'alt' FOR UPDATE")
            await eventually(
                lambda: alt.ctx.gate.lease_note is not None,
                timeout=3 * DB_TIMEOUT,
                what="alt's renewal failing",
            )
            notes = []
            loop = asyncio.get_running_loop()
            until_at = loop.time() + 2 * DB_TIMEOUT

            def watched() -> bool:
                if main.ctx.gate.lease_note is not None:
                    notes.append(main.ctx.gate.lease_note)
                return loop.time() > until_at

            await eventually(watched, timeout=3 * DB_TIMEOUT, what="two deadlines watched")
            assert notes == [], notes[0]
            assert main.status().accepting_signals
            await locked.rollback()
            released = True
            await eventually(
                lambda: alt.ctx.gate.lease_note is None, timeout=10, what="alt's lease renewed again"
            )
            # alt's own writes meanwhile (its lease_unreachable alert) timed out and were queued
            await eventually(lambda: alt.status().accepting_signals, timeout=30, what="alt writing again")
            assert fleet.runtimes["alt"].is_holder
        finally:
            if not released:
                await locked.rollback()
            await outside.close()


@pytest.mark.postgres
async def test_an_accounts_own_slow_write_does_not_put_its_lease_in_doubt(
    tmp_path: Path, pg_url: str
) -> None:
    """A write of alt's own that takes over a second (a slow disk: its commit stalls) holds the
    share lock its fence takes on alt's lease row until it commits. alt's renewal, an UPDATE of
    that row, waits for it as it waits for any write of the database: it is alt's own engine,
    not an outside session. Its lease must stay confirmed (no lease_unreachable, no entry
    refused for it, no database_recovered after), as it did before the renewal had a lock_timeout."""
    settings = fleet_settings(tmp_path, pg_url, TWO_SIM, extra=f"db_timeout = {DB_TIMEOUT}")
    notifiers: dict[str, RecordingNotifier] = {}

    def notifier(name: str) -> RecordingNotifier:
        return notifiers.setdefault(name, RecordingNotifier())

    async with running_fleet(settings, price_feed=False, notifier=notifier, lease_retry=0.2) as fleet:
        alt = fleet.runtimes["alt"].engine
        await eventually(lambda: alt.status().accepting_signals, timeout=30, what="alt ready")
        admin = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
        try:
            # alt's controls write (an upsert: both triggers fire) takes 1.6 s in the database (the
            # slow disk), its fence's share
            # lock on alt's lease row held throughout
            await admin.execute(
                "CREATE OR REPLACE FUNCTION slow_disk() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM pg_sleep(0.8); RETURN NEW; END $$"
            )
            await admin.execute(
                "CREATE TRIGGER slow_disk BEFORE INSERT OR UPDATE ON controls"
                " FOR EACH ROW EXECUTE FUNCTION slow_disk()"
            )
            notes: list[str] = []
            writes = asyncio.create_task(_slow_writes(alt, 3))

            def watched() -> bool:
                if alt.ctx.gate.lease_note is not None:
                    notes.append(alt.ctx.gate.lease_note)
                return writes.done()

            await eventually(watched, timeout=30, what="alt's slow writes")
            await writes
            assert notes == [], notes[0]
            kinds = [a.kind.value for a in notifiers["alt"].alerts]
            assert "lease_unreachable" not in kinds, kinds
        finally:
            await admin.execute("DROP TRIGGER IF EXISTS slow_disk ON controls")
            await admin.close()


async def _slow_writes(engine: Engine, n: int) -> None:
    for i in range(n):
        await engine.pause(f"slow {i}")
