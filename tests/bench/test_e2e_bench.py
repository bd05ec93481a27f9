"""`warden bench e2e` runs end to end against `warden sim serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

from warden.bench.e2e_bench import bench_e2e


async def test_the_e2e_bench_runs_beyond_the_exchanges_cap_on_resting_stops() -> None:
    """15 opens round three symbols: five on each, more stops and take-profits than the exchange
    rests on one symbol (10, Binance's MAX_NUM_ALGO_ORDERS). The bench stacked them all and died
    on the refused stop (it had not run since the simulator learned the cap); each round's
    positions are now closed before the next. Both stores report a figure, a floor and a verdict."""
    results = await bench_e2e(n=15)

    assert [r.name.rsplit(", ", 1)[-1] for r in results] == ["SQLite", "PostgreSQL"]
    for result in results:
        assert result.figures["signal -> stop resting p50"].endswith(" ms"), result.figures
        assert result.figures["floor p50 (intent commit + entry + stop)"].endswith(" ms")
        calls = float(result.figures["REST calls per open"].split()[0])
        assert 3 <= calls <= 4, result.figures  # entry, stop and the take-profits: the closes not counted
        assert result.verdict.endswith((": met", ": NOT met"))
