"""The sidecar's copy of the protocol's names equals warden's (`warden.adapters.drift.protocol`),
read from the repository: this environment cannot import warden itself."""

from __future__ import annotations

from pathlib import Path

from warden_drift_sidecar import protocol as mine

WARDEN = Path(__file__).resolve().parents[3] / "src" / "warden" / "adapters" / "drift" / "protocol.py"
NAMES = [
    "VERSION",
    "VERSION_KEY",
    "VERSION_HEADER",
    "BASE_PRECISION",
    "PRICE_PRECISION",
    "QUOTE_PRECISION",
    "MAX_USER_ORDER_ID",
    "MARKET",
    "TRIGGER_MARKET",
    "LONG",
    "SHORT",
    "ABOVE",
    "BELOW",
    "TRIGGERED_ABOVE",
    "TRIGGERED_BELOW",
    "OPEN",
    "FILLED",
    "CANCELED",
    "CONFIRMED",
    "FAILED",
    "PENDING",
    "EXPIRED",
    "BAD_REQUEST",
    "REJECTED",
    "NOT_FOUND",
    "UNAVAILABLE",
    "VERSION_MISMATCH",
    "HTTP_STATUS",
]


def test_the_names_match_wardens() -> None:
    theirs: dict[str, object] = {}
    exec(compile(WARDEN.read_text(), str(WARDEN), "exec"), theirs)  # stdlib only
    assert {n: getattr(mine, n) for n in NAMES} == {n: theirs[n] for n in NAMES}
