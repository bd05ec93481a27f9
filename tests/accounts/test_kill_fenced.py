"""A kill of every account that reaches an engine whose lease was just taken (its lease session
killed — a PostgreSQL restart, an operator's pg_terminate_backend — and another engine took the
account before this one's watcher noticed) is not in force where the account is traded: the
database refuses it. The kill must not be reported as on for that account."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import eventually
from tests.store.pgtools import admin, terminate_lease_session
from warden.adapters.db.lease import lease_for
from warden.adapters.notify import RecordingNotifier
from warden.bootstrap import running_fleet
from warden.service.commands import EngineState, KillReport

from .conftest import TWO_SIM, fleet_settings


@pytest.mark.postgres
async def test_a_kill_the_database_refuses_for_a_lease_taken_meanwhile_is_not_reported_on(
    tmp_path: Path, pg_url: str
) -> None:
    settings = fleet_settings(tmp_path, pg_url, TWO_SIM)
    async with running_fleet(
        settings, price_feed=False, notifier=lambda _: RecordingNotifier(), lease_retry=600
    ) as fleet:
        main = fleet.runtimes["main"]
        await eventually(lambda: main.engine.status().accepting_signals, timeout=30, what="main ready")
        other = lease_for(pg_url, "main", holder="engine-b")
        async with admin(pg_url) as conn:
            await terminate_lease_session(conn, "main")  # the shared session: alt's lock goes too
        assert await other.try_acquire() is not None  # engine-b takes main over
        try:
            outcome = await fleet.kill_account("main", False, "incident")
            assert not isinstance(outcome, KillReport), outcome  # HEAD: reported as on
            assert "another engine" in outcome, outcome
            await eventually(
                lambda: main.engine.status().state is EngineState.READ_ONLY,
                timeout=30,
                what="the fenced-out engine to stand down",
            )
        finally:
            await other.release()
