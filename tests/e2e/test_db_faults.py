"""Database faults over real processes: losing our own database is *degraded*, not "lease lost".

`warden sim serve` + `warden run --exchange binanceusdm` (unmodified ccxt between them). The
database fails under a live engine — PostgreSQL: its backends terminated mid-open, then
connections refused for a few seconds; SQLite: its disk full, then freed — and the test
judges by the exchange (its record of how long a position went without a covering stop)
and by warden's API: the stop rests, nothing is lost, and the engine returns to `ready` by
itself, without a restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import PG_HOST, PG_PORT, PG_USER

from .processes import Processes, SimServer, agreement_problems, converge, poll, protection_problems

pytestmark = pytest.mark.slow

WINDOW = 2.0  # the default protection_window


def pg(database: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database, timeout=5)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


def entry_working(sim: SimServer) -> bool:
    """The engine's entry order rests on the exchange acknowledged, not yet filled."""
    return any(
        o["client_order_id"].startswith("wd-") and o["type"] == "market" for o in sim.state()["open_orders"]
    )


def exposure(sim: SimServer, coin: str) -> dict[str, Any]:
    symbol = f"{coin}/USDT:USDT"
    rows = [e for e in sim.state()["exposure"] if e["symbol"] == symbol]
    return rows[0] if rows else {}


def test_postgres_killed_mid_open_then_refusing_keeps_protecting_and_recovers(
    procs: Processes, tmp_path: Path, pg_url: str
) -> None:
    """A signal is sent; while its entry is still working the engine's PostgreSQL backends are
    terminated and the database refuses connections for 3 s. The entry fills, the stop rests on
    the exchange within the protection window, the caller is told the truth, and once the
    database is back the engine re-takes its lease and returns to `ready` with every write kept."""
    database = pg_url.rsplit("/", 1)[1]
    sim = procs.sim()
    sim.set_price("SOL", Decimal("150"))
    engine = procs.engine("pg", tmp_path / "data", sim=sim, db=pg_url)
    engine.wait_ready()
    sim.faults(ack_only_if=True, fill_delay=0.7)

    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(engine.signal, "SOL", "long", 150)
        poll(lambda: entry_working(sim), within=10, what="the entry acknowledged and working")
        pg(
            "postgres",
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'",
        )
        try:
            poll(lambda: exposure(sim, "SOL").get("side") == "long", within=10, what="the fill")
            poll(
                lambda: exposure(sim, "SOL").get("unprotected_seconds") == 0,
                within=10,
                what="the stop to rest",
            )
            degraded = poll(
                lambda: engine.status()["state"] == "degraded" and engine.status(), within=10, what="degraded"
            )
            assert degraded
        finally:
            pg("postgres", f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        answer = sending.result(timeout=30)
    # It was sent: the caller gets the position as it stands (the README's promise), never a
    # refusal and never "nothing was sent".
    assert answer.status_code in (201, 202), answer.text
    assert "nothing was sent" not in answer.text, answer.text
    sim.faults(ack_only_if=None, fill_delay=0)
    assert exposure(sim, "SOL")["max_unprotected_seconds"] < WINDOW, exposure(sim, "SOL")

    converge(
        lambda: [] if engine.status()["state"] == "ready" else [f"state {engine.status()}"],
        within=30,
        what="back to ready by itself",
    )
    status = engine.status()
    assert status["pending_writes"] == 0 and status["accepting_signals"], status
    converge(
        lambda: protection_problems(sim.state()) + agreement_problems(sim.state(), engine.positions()),
        within=15,
        what="exchange, database and memory agree",
    )
    [position] = engine.positions()
    assert position["status"] == "protected" and position["stop_resting"], position
    kinds = {e["kind"] for e in engine.events(position["id"])}
    assert {"entry_filled", "position_protected"} <= kinds, kinds


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of our own (root only; CI runs as root): a disk that can really fill up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=False)
    if done.returncode != 0:
        reason = "cannot mount a tmpfs here (not root?)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler to delete."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    assert shutil.disk_usage(disk).free < 4096
    return filler


def test_sqlite_disk_full_then_freed_keeps_protecting_and_recovers(
    procs: Processes, tmp_path: Path, small_disk: Path
) -> None:
    """SQLite's disk fills up under a protected position; TP1 fills and the stop must be re-sized
    while nothing can be written. The exchange still gets the re-sized stop; once the disk is
    freed the queued writes are committed and the engine is `ready` again, with no restart."""
    sim = procs.sim()
    sim.set_price("SOL", Decimal("150"))
    engine = procs.engine("sqlite", tmp_path / "data", sim=sim, db=f"sqlite:///{small_disk / 'w.db'}")
    engine.wait_ready()
    opened = engine.signal("SOL", "long", 150)
    assert opened.status_code == 201, opened.text
    position = opened.json()
    filler = fill(small_disk)
    try:
        sim.set_price("SOL", Decimal(position["tp1_price"]))
        converge(lambda: protection_problems(sim.state()), within=15, what="the stop re-sized after TP1")
        poll(lambda: engine.status()["state"] == "degraded", within=15, what="degraded")
    finally:
        filler.unlink()
    converge(
        lambda: [] if engine.status()["state"] == "ready" else [f"state {engine.status()['state']}"],
        within=30,
        what="back to ready by itself",
    )
    assert engine.status()["pending_writes"] == 0
    converge(
        lambda: protection_problems(sim.state()) + agreement_problems(sim.state(), engine.positions()),
        within=15,
        what="agreement after the disk is freed",
    )
    [now] = engine.positions()
    assert now["tp1_hit"] is True and now["stop_resting"], now
    assert exposure(sim, "SOL")["max_unprotected_seconds"] < WINDOW
