"""The venue faces of the process runs (chaos/faces.py): what each can inject, and how Drift's
order faults name warden's orders without client ids."""

from __future__ import annotations

import fnmatch

import httpx
import pytest

from warden.chaos.faces import FACE_FAULTS, SKIPPED, DriftFace
from warden.chaos.generate import PROCESS_FAULTS, scenario
from warden.chaos.steps import Fault, FaultKind

# Labels as the Drift face of the simulator writes them (adapters/sim/drift/venue.py):
# <order_type>-<direction>-<condition|none>-<ro|open>-u<user_order_id>-m<market_index>
LONG = {  # a long's orders: bought in, sold out
    "e": "market-long-none-open-u1-m0",
    "s": "trigger_market-short-below-ro-u2-m0",
    "a": "trigger_market-short-above-ro-u3-m0",
    "c": "market-short-none-ro-u4-m0",
}
SHORT = {
    "e": "market-short-none-open-u5-m1",
    "s": "trigger_market-long-above-ro-u6-m1",
    "a": "trigger_market-long-below-ro-u7-m1",
    "c": "market-long-none-ro-u8-m1",
}


def hits(roles: str, side: str, labels: dict[str, str]) -> set[str]:
    face = DriftFace(httpx.Client(), "http://127.0.0.1:9")
    glob = face.knobs(Fault(FaultKind.REJECT, roles=roles), side)["reject_if"]
    return {role for role, label in labels.items() if glob is True or fnmatch.fnmatchcase(label, glob)}


@pytest.mark.parametrize(("side", "labels"), [("long", LONG), ("short", SHORT)])
def test_drift_globs_hit_the_roles_they_name_on_the_side_they_were_set_for(
    side: str, labels: dict[str, str]
) -> None:
    assert hits("e", side, labels) == {"e"}
    assert hits("c", side, labels) == {"c"}
    assert hits("s", side, labels) == {"s"}
    assert hits("a", side, labels) == hits("b", side, labels) == hits("ab", side, labels) == {"a"}
    assert hits("sc", side, labels) == {"s", "a", "c"}  # Drift labels cannot single out stops + closes
    assert hits("*", side, labels) == {"e", "s", "a", "c"}
    other = SHORT if side == "long" else LONG
    assert hits("s", side, other) == set() and hits("a", side, other) == set()


def test_a_face_never_draws_a_fault_it_cannot_inject_and_binance_draws_as_before() -> None:
    for venue, skipped in SKIPPED.items():
        assert FACE_FAULTS[venue] == PROCESS_FAULTS - set(skipped)
    assert set(SKIPPED["drift"]) == {FaultKind.STREAM_GAP, FaultKind.RATE_LIMIT, FaultKind.EXECUTE_LATE}
    drawn = {
        f.kind
        for run in range(1, 200)
        for step in scenario(3, run, processes=True, faults=FACE_FAULTS["drift"]).steps
        for f in step.faults
    }
    assert drawn and not drawn & set(SKIPPED["drift"])
    for run in range(1, 30):
        assert scenario(3, run, processes=True) == scenario(
            3, run, processes=True, faults=FACE_FAULTS["binance"]
        )
