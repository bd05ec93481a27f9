"""The seeded scenario generator: (seed, run) -> the same Scenario every time.

Each run draws its own `random.Random(f"warden-chaos:{seed}:{run}")`, so run 4711 of a
campaign can be replayed alone. The mix (weights below) favours what the promise is about:
signals and price paths that reach stops, take-profits and trailing exits, under one or two
faults at a time, with outside actors and crashes sprinkled in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

from warden.chaos.steps import SYMBOLS, USD, Act, Fault, FaultKind, Scenario, Step, Target
from warden.domain.values import Side

T = TypeVar("T")

ACTS: dict[Act, int] = {
    Act.SIGNAL: 24,
    Act.RACE: 5,
    Act.REPEAT: 4,
    Act.PRICE: 32,
    Act.CLOSE: 6,
    Act.OUTSIDE_OPEN: 4,
    Act.OUTSIDE_CLOSE: 4,
    Act.CANCEL_STOP: 4,
    Act.SECOND_ENGINE: 2,
    Act.RESTART: 6,
    Act.WAIT: 3,
}
TARGETS: dict[Target, int] = {
    Target.STOP: 20,
    Target.TP1: 25,
    Target.TP2: 20,
    Target.TRAIL: 25,
    Target.WALK: 10,
}
FAULTS: dict[FaultKind, int] = {
    FaultKind.CRASH: 14,
    FaultKind.DB_OUTAGE: 7,
    FaultKind.DB_SLOW: 4,
    FaultKind.DB_LOCK: 4,
    FaultKind.DB_KILL: 4,
    FaultKind.DB_ACK_LOST: 4,
    FaultKind.STREAM_DROP: 7,
    FaultKind.STREAM_DUPLICATE: 4,
    FaultKind.STREAM_REORDER: 4,
    FaultKind.STREAM_EARLY: 5,
    FaultKind.STREAM_GAP: 4,
    FaultKind.STREAM_DISCONNECT: 4,
    FaultKind.ACK_ONLY: 8,
    FaultKind.TIMEOUT_AFTER_EXECUTION: 7,
    FaultKind.SERVER_ERRORS: 6,
    FaultKind.RATE_LIMIT: 5,
    FaultKind.QUERY_FAILURES: 4,
    FaultKind.REJECT: 4,
}
LATER: dict[FaultKind, float] = {FaultKind.EXECUTE_LATE: 0.08}
"""Faults added after campaigns were pinned: each step has this chance of each, drawn from the
run's second stream, on top of the faults the main stream drew for it (a restart has none)."""
PARTS = (0.3, 0.5, 0.7)
PART_COUNTS = (2, 2, 3, 5)
PARTS_CHANCE = 0.5
"""Orders filled in parts, added after campaigns were pinned: an ACK_ONLY fault (entries,
closes or both) fills what it holds in parts with this chance, drawn from the run's third stream — in one of
`PART_COUNTS` parts (`Fault.count`), each but the last one of `PARTS` of what is left (rounded
down to the lot; `Fault.rate`), `seconds` apart — as a thin book, or an exchange matching an
order against several makers over time, does. The main and second streams are drawn as before,
so a run pinned before keeps its steps."""
FIRED_CHANCE = 0.15
FIRED_GAPS = (0.0, 0.3, 1.5)
"""Stops and take-profits filled in parts, added after orders in parts: each step (in process,
not a restart, without an ACK_ONLY, whose parts it would share) has this chance of a
FIRED_IN_PARTS fault, drawn from the run's fourth stream: what the mark fires fills in one of
`PART_COUNTS` parts of `PARTS` of what is left, one of `FIRED_GAPS` apart (0: back to back, as
a stop filling against several makers at once does). The other streams are drawn as before, so a
run pinned before keeps its steps and faults."""
RETRY_AFTER = (0.0, 1.0, 2.0, 5.0)
"""What a 429 over real processes says to wait (Retry-After; 0: nothing said), from the second stream."""
PROCESS_FAULTS = frozenset(
    {
        FaultKind.CRASH,  # kill -9
        FaultKind.STREAM_GAP,
        FaultKind.STREAM_DISCONNECT,  # POST /sim/expire-listen-key
        FaultKind.ACK_ONLY,
        FaultKind.TIMEOUT_AFTER_EXECUTION,
        FaultKind.SERVER_ERRORS,
        FaultKind.RATE_LIMIT,
        FaultKind.QUERY_FAILURES,
        FaultKind.REJECT,
        FaultKind.STREAM_DROP,
        FaultKind.STREAM_DUPLICATE,
        FaultKind.EXECUTE_LATE,
    }
)
"""What a run over real processes can inject (through `/sim/faults`, `/sim/expire-listen-key`, kill -9)."""
PROCESS_ACTS = frozenset(ACTS) - {Act.SECOND_ENGINE, Act.REPEAT, Act.RACE}


def _pick(rng: random.Random, weights: dict[T, int]) -> T:
    keys: Sequence[T] = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


DRAWS: dict[FaultKind, Callable[[random.Random], dict[str, Any]]] = {
    FaultKind.CRASH: lambda r: {"at": r.randint(1, 14)},
    FaultKind.DB_OUTAGE: lambda r: {"at": r.randint(0, 8), "seconds": r.choice([1.0, 5.0, 30.0])},
    FaultKind.DB_KILL: lambda r: {"at": r.randint(0, 8)},
    FaultKind.DB_SLOW: lambda r: {"seconds": r.choice([0.3, 2.0, 7.0])},
    FaultKind.DB_LOCK: lambda r: {"count": r.randint(1, 3)},
    FaultKind.DB_ACK_LOST: lambda r: {"count": r.randint(1, 3)},
    FaultKind.STREAM_DROP: lambda r: {"rate": r.choice([0.3, 1.0])},
    FaultKind.STREAM_DUPLICATE: lambda r: {"rate": r.choice([0.5, 1.0])},
    FaultKind.STREAM_REORDER: lambda r: {"rate": r.choice([0.5, 1.0])},
    FaultKind.STREAM_GAP: lambda r: {"seconds": r.choice([1.0, 5.0, 20.0])},
    FaultKind.STREAM_DISCONNECT: lambda r: {"seconds": r.choice([1.0, 5.0, 20.0])},
    FaultKind.ACK_ONLY: lambda r: {
        "roles": r.choice(["e", "e", "c", "*"]),
        "seconds": r.choice([0.0, 0.3, 1.5, 12.0]),
    },
    FaultKind.TIMEOUT_AFTER_EXECUTION: lambda r: {"roles": r.choice(["e", "s", "c", "*"])},
    FaultKind.SERVER_ERRORS: lambda r: {
        "roles": r.choice(["e", "s", "sc", "*"]),
        "seconds": r.choice([0.5, 3.0, 10.0]),
    },
    FaultKind.RATE_LIMIT: lambda r: {
        "roles": r.choice(["e", "s", "sc", "*"]),
        "seconds": r.choice([0.5, 3.0, 10.0]),
    },
    FaultKind.QUERY_FAILURES: lambda r: {"seconds": r.choice([1.0, 5.0, 15.0])},
    FaultKind.REJECT: lambda r: {"roles": r.choice(["s", "a", "b", "ab"])},
    FaultKind.EXECUTE_LATE: lambda r: {
        "roles": r.choice(["e", "e", "s", "c", "ab", "sc", "*"]),
        # lookups give up 2 s after the answer (5 tries, 0.2 s growing backoff), so the longer
        # delays land after it; each is off the 0.1 s grid of the engine's lookups and resends,
        # so a landing never ties with a lookup and a replay lands on the same side of it
        "seconds": r.choice([0.45, 0.85, 1.65, 2.45, 3.45, 4.85]),
    },
}
"""How each fault's parameters are drawn (a fault not listed has none)."""


def _fault(rng: random.Random, kind: FaultKind) -> Fault:
    draw = DRAWS.get(kind)
    return Fault(kind, **draw(rng)) if draw is not None else Fault(kind)


def _faults(rng: random.Random, processes: bool, only: frozenset[FaultKind]) -> tuple[Fault, ...]:
    roll = rng.random()
    n = 0 if roll < 0.45 else 1 if roll < 0.85 else 2
    allowed = {k: w for k, w in FAULTS.items() if not processes or k in only}
    kinds: list[FaultKind] = []
    while len(kinds) < n:
        kind = _pick(rng, allowed)
        if kind not in kinds:
            kinds.append(kind)
    return tuple(_fault(rng, k) for k in kinds)


def _later(
    rng: random.Random, faults: tuple[Fault, ...], processes: bool, only: frozenset[FaultKind]
) -> tuple[Fault, ...]:
    """The step's faults with the later ones (`LATER`, from the second stream `rng`) added; over
    real processes a 429 burst says how long to stay away."""
    added = [
        _fault(rng, kind)
        for kind, chance in LATER.items()
        if rng.random() < chance and (not processes or kind in only)
    ]
    if processes:
        faults = tuple(
            replace(f, retry_after=rng.choice(RETRY_AFTER)) if f.kind is FaultKind.RATE_LIMIT else f
            for f in faults
        )
    return faults + tuple(f for f in added if all(f.kind is not g.kind for g in faults))


def _step_faults(
    rng: random.Random,
    later: random.Random,
    parts: random.Random | None,
    fired: random.Random | None,
    processes: bool,
    only: frozenset[FaultKind],
) -> tuple[Fault, ...]:
    """A step's faults: the main stream's, the later ones from the second, orders in parts from
    the third (None: not on this venue), fired orders in parts from the fourth (None: not drawn;
    in process only)."""
    faults = _later(later, _faults(rng, processes, only), processes, only)
    faults = faults if parts is None else _in_parts(parts, faults)
    return faults if fired is None or processes else _fired(fired, faults)


def _fired(rng: random.Random, faults: tuple[Fault, ...]) -> tuple[Fault, ...]:
    """The step's faults, with what the mark fires filled in parts (`FIRED_CHANCE`, from the
    fourth stream `rng`; its draws are made whether or not it is added, so each step's are its
    own)."""
    chance, rate, count, gap = (
        rng.random(),
        rng.choice(PARTS),
        rng.choice(PART_COUNTS),
        rng.choice(FIRED_GAPS),
    )
    if chance >= FIRED_CHANCE or any(f.kind is FaultKind.ACK_ONLY for f in faults):
        return faults
    return (*faults, Fault(FaultKind.FIRED_IN_PARTS, seconds=gap, rate=rate, count=count))


def _in_parts(rng: random.Random, faults: tuple[Fault, ...]) -> tuple[Fault, ...]:
    """The step's faults, an ACK_ONLY filling what it holds in parts (`PARTS_CHANCE`, from the
    third stream `rng`)."""
    return tuple(
        replace(f, rate=rng.choice(PARTS), count=rng.choice(PART_COUNTS))
        if f.kind is FaultKind.ACK_ONLY and rng.random() < PARTS_CHANCE
        else f
        for f in faults
    )


def scenario(
    seed: int,
    run: int,
    *,
    processes: bool = False,
    steps: tuple[int, int] | None = None,
    faults: frozenset[FaultKind] = PROCESS_FAULTS,
    in_parts: bool = True,
    fired_in_parts: bool = True,
) -> Scenario:
    """The run-th scenario of the campaign with this seed (`processes`: only what real processes
    can do, and fewer steps: they run in real time; `faults`: what the venue's face of the
    simulator can inject, see `faces.FACE_FAULTS`; `in_parts`: whether it fills orders in parts,
    `faces.IN_PARTS`; `fired_in_parts`: whether what the mark fires may fill in parts, in
    process only — False replays a run pinned before they were drawn as it was)."""
    steps = steps or ((4, 8) if processes else (6, 16))
    rng = random.Random(f"warden-chaos:{seed}:{'p' if processes else ''}{run}")
    later = random.Random(f"warden-chaos-later:{seed}:{'p' if processes else ''}{run}")
    parts = random.Random(f"warden-chaos-parts:{seed}:{'p' if processes else ''}{run}")
    fired = random.Random(f"warden-chaos-fired:{seed}:{'p' if processes else ''}{run}")
    stacking = not processes and rng.random() < 0.1
    acts = {a: w for a, w in ACTS.items() if not processes or a in PROCESS_ACTS}
    signal_ids: list[str] = []
    out: list[Step] = []
    for index in range(1, rng.randint(*steps) + 1):
        act = _pick(rng, acts) if index > 1 else Act.SIGNAL
        if act is Act.REPEAT and not signal_ids:
            act = Act.SIGNAL
        symbol = rng.choice(SYMBOLS)
        side = rng.choice([Side.LONG, Side.SHORT])
        usd = Decimal(rng.randint(*USD[symbol]))
        signal_id: str | None = None
        if act is Act.SIGNAL and rng.random() < 0.8:
            signal_id = f"s{run}-{index}"
            signal_ids.append(signal_id)
        elif act is Act.REPEAT:
            signal_id = rng.choice(signal_ids)
        out.append(
            Step(
                index=index,
                act=act,
                symbol=symbol,
                side=side,
                usd=usd,
                signal_id=signal_id,
                target=_pick(rng, TARGETS),
                fraction=rng.choice([Decimal("0.3"), Decimal("0.5"), Decimal(1)]),
                seconds=rng.choice([5.0, 45.0]),
                faults=_step_faults(
                    rng,
                    later,
                    parts if in_parts else None,
                    fired if fired_in_parts else None,
                    processes,
                    faults,
                )
                if act is not Act.RESTART
                else (),
            )
        )
    return Scenario(seed, run, stacking, tuple(out))
