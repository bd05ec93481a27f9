"""Small helpers: percentiles, machine description, printing."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()}"


@dataclass
class Result:
    name: str
    figures: dict[str, str] = field(default_factory=dict)
    verdict: str = ""

    def add(self, key: str, value: str) -> None:
        self.figures[key] = value

    def render(self) -> str:
        width = max((len(k) for k in self.figures), default=0)
        lines = [f"== {self.name} =="]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.figures.items()]
        if self.verdict:
            lines.append(f"  -> {self.verdict}")
        return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"
