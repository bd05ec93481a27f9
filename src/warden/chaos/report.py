"""The campaign report: text for people (its last line is `violations: N`), JSON for machines."""

from __future__ import annotations

from typing import Any

from warden.chaos.campaign import Totals

SHOWN = 25
"""Violations listed in the text report (all of them are in the JSON)."""


def replay_command(key: str, flags: str = "") -> str:
    return f"warden chaos --replay {key}{flags}"


def as_json(totals: Totals, window: float) -> dict[str, Any]:
    return {
        "seed": totals.seed,
        "subject": totals.subject,
        "database": totals.database,
        "runs": totals.runs,
        "process_runs": totals.process_runs,
        "steps": totals.steps,
        "faults": dict(sorted(totals.faults.items())),
        "crashes": totals.crashes,
        "recoveries": totals.recoveries,
        "protection_window_seconds": window,
        "longest_unprotected_seconds": round(totals.longest, 6),
        "longest_unprotected_run": totals.longest_at,
        "longest_raw_unprotected_seconds": round(totals.longest_raw, 6),
        "scenarios_per_minute": round(totals.scenarios_per_minute, 1),
        "process_scenarios_per_minute": round(totals.process_scenarios_per_minute, 2),
        "virtual_seconds": round(totals.virtual_seconds, 1),
        "stopped_early": totals.stopped_early,
        "violations": len(totals.violations),
        "violation_details": [
            {
                "run": key,
                "step": v.step,
                "invariant": v.invariant,
                "message": v.message,
                "replay": replay_command(key, totals.replay_flags),
            }
            for key, v in totals.violations
        ],
    }


def as_text(totals: Totals, window: float) -> str:
    lines = [
        f"warden chaos: seed {totals.seed}, against {totals.subject} on {totals.database}"
        + (" (stopped at the time limit)" if totals.stopped_early else ""),
        f"runs          {totals.runs} in process ({totals.scenarios_per_minute:.0f} scenarios/min, "
        f"{totals.virtual_seconds / 3600:.1f} h of engine time)",
    ]
    if totals.process_runs:
        lines.append(
            f"              {totals.process_runs} over real processes "
            f"({totals.process_scenarios_per_minute:.1f} scenarios/min)"
        )
    faults = ", ".join(f"{k} {n}" for k, n in totals.faults.most_common()) or "none"
    lines += [
        f"steps         {totals.steps}",
        f"faults        {sum(totals.faults.values())}: {faults}",
        f"crashes       {totals.crashes} (each followed by a recovery: {totals.recoveries})",
        f"longest unprotected window  {totals.longest:.3f} s"
        + (f" (run {totals.longest_at})" if totals.longest_at else "")
        + f", protection window {window:g} s: {'met' if totals.longest <= window else 'NOT met'}",
        f"              {totals.longest_raw:.3f} s as the exchange measured it, including the time an outside"
        " trade waits for reconciliation and exchange refusal bursts",
    ]
    for key, v in totals.violations[:SHOWN]:
        lines.append(f"VIOLATION run {key} step {v.step}: {v.invariant}: {v.message}")
        lines.append(f"          replay: {replay_command(key, totals.replay_flags)}")
    if len(totals.violations) > SHOWN:
        lines.append(f"... and {len(totals.violations) - SHOWN} more (--json lists them all)")
    lines.append(f"violations: {len(totals.violations)}")
    return "\n".join(lines)
