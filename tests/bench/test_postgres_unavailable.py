"""A benchmark that cannot reach PostgreSQL says `NOT met (PostgreSQL unavailable)` for it, never met.

The measured runs are replaced by stand-ins that would pass every goal (what is checked is how
the verdict is put together when the PostgreSQL side cannot run), and PostgreSQL is unreachable
in the two ways `_pg_url` knows: no server answering, or a server that refuses a database.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from warden.bench import e2e_bench, mass_bench, reconcile_bench
from warden.bench.report import Result

UNAVAILABLE = "NOT met (PostgreSQL unavailable)"


class Refusing:
    """A server that answers but will not create the benchmark's database."""

    async def execute(self, sql: str) -> None:
        raise asyncpg.InsufficientPrivilegeError(f"permission denied: {sql}")

    async def close(self) -> None:
        return None


@pytest.fixture(params=["no server", "no database"])
def no_postgres(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect(**_: Any) -> Refusing:
        if request.param == "no server":
            raise ConnectionRefusedError(111, "Connection refused")
        return Refusing()

    monkeypatch.setattr(asyncpg, "connect", connect)


async def test_pg_url_is_none(no_postgres: None) -> None:
    assert await reconcile_bench._pg_url() is None


async def test_reconcile(no_postgres: None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def one_pass(url: str, label: str, n: int) -> list[str]:
        return [f"{label} engine time (read + diff)|1 ms, 0 discrepancies found"]

    monkeypatch.setattr(reconcile_bench, "one_pass", one_pass)
    [result] = await reconcile_bench.bench_reconcile(n=100)
    assert result.verdict.endswith(f": {UNAVAILABLE}"), result.verdict
    assert result.figures["PostgreSQL"] == "no server on 127.0.0.1:5432"


async def test_e2e(no_postgres: None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def one_store(url: str, label: str, n: int, rest: float, stream: float) -> Result:
        done = Result(f"e2e: {label}")
        done.verdict = "goal: met"
        return done

    monkeypatch.setattr(e2e_bench, "_one_store", one_store)
    results = await e2e_bench.bench_e2e(n=2)
    assert [r.verdict for r in results] == ["goal: met", UNAVAILABLE]
    assert "PostgreSQL" in results[1].name


async def test_mass(no_postgres: None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def one(url: str, label: str, n: int, gap: bool) -> tuple[float, int, int]:
        return 0.001, n, 1

    monkeypatch.setattr(mass_bench, "_one", one)
    sqlite, postgres = await mass_bench.bench_mass(n=10)
    assert sqlite.verdict.endswith(": met")
    assert postgres.verdict == UNAVAILABLE


@pytest.mark.parametrize("bench", ["bench_fleet", "bench_fleet_host_death"])
def test_fleet(no_postgres: None, bench: str) -> None:
    from warden.bench import fleet_bench

    result = getattr(fleet_bench, bench)()
    assert result.verdict.endswith(f": {UNAVAILABLE}"), result.verdict
