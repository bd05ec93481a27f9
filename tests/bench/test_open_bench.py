"""`warden bench open` runs end to end and reports where each side's CPU goes, and the venue's."""

from __future__ import annotations

import re
from pathlib import Path

from warden.bench.open_bench import bench_open


async def test_the_open_bench_reports_time_commits_and_cpu_of_both_sides_and_the_venue(
    tmp_path: Path,
) -> None:
    result = await bench_open(n=5, warmup=2, directory=tmp_path)

    assert result.figures["commits per open"] == "4"
    figure = re.compile(r"event loop (\d+\.\d+) ms, SQLite writer (\d+\.\d+) ms")
    for side in ("engine", "floor"):
        found = figure.fullmatch(result.figures[f"CPU per open, {side}"])
        assert found is not None, result.figures
        loop, writer = (float(v) for v in found.groups())
        assert loop > 0 and writer > 0  # each thread did the side's work, and was found
    # Entry, stop, TP1 and TP2 replayed on the second venue (each answered as the engine's were).
    venue = re.match(
        r"event loop \d+\.\d+ ms \(a mark price and the same (\d+) orders",
        result.figures["CPU per open, venue alone"],
    )
    assert venue is not None, result.figures
    assert venue.group(1) == "4"
    # The engine's time split in two, each against the floor: its writes under way, and the loop's
    # work between them; each part is positive and no more than the whole (p50s of the same opens).
    part = re.compile(r"(\d+\.\d+) ms \((\d+\.\d+)x the floor\)")
    engine = float(result.figures["engine p50"].removesuffix(" ms"))
    for name in ("of which writes under way", "of which the loop between writes"):
        found = part.fullmatch(result.figures[name])
        assert found is not None, result.figures
        assert 0 < float(found.group(1)) < engine, result.figures
    assert result.verdict.endswith((": met", ": NOT met"))
