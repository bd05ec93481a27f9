"""What a scenario is made of: steps (one action each) and the faults active during a step.

A step is an intent, resolved against the state of the run when it is played: "move SOL to
its TP1" moves the mark to the TP1 of whatever position SOL holds then (or walks the mark if
SOL is flat). The intents, their parameters and their faults all come from the seed, so a
scenario is the same every time it is generated.

Faults are scoped to their step: switched on when it starts (some at the k-th I/O call of the
step, counted over every exchange and database call), and off when its action has settled;
a burst with `seconds` ends by itself earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from warden.domain.values import Side, Symbol

BTC = Symbol("BTC/USDT:USDT")
ETH = Symbol("ETH/USDT:USDT")
SOL = Symbol("SOL/USDT:USDT")
SYMBOLS = (BTC, ETH, SOL)
USD = {BTC: (400, 900), ETH: (150, 400), SOL: (60, 200)}
"""Notional ranges per symbol: above every minimum, the take-profit slices included."""


class Act(StrEnum):
    SIGNAL = "signal"  # a signal through the engine's facade
    RACE = "race"  # two signals for one symbol at the same moment
    REPEAT = "repeat"  # a signal id that was used before, again
    PRICE = "price"  # move a mark (to a position's stop, TP1, TP2, a new peak, or a random step)
    CLOSE = "close"  # a manual close through the engine
    OUTSIDE_OPEN = "outside_open"  # someone opens (or adds to) a position by hand
    OUTSIDE_CLOSE = "outside_close"  # someone reduces or closes a position by hand
    CANCEL_STOP = "cancel_stop"  # someone cancels a resting stop by hand
    SECOND_ENGINE = "second_engine"  # a second engine starts on the account (same database)
    RESTART = "restart"  # the process dies while idle and is started again
    WAIT = "wait"  # time passes


class Target(StrEnum):
    STOP = "stop"
    TP1 = "tp1"
    TP2 = "tp2"
    TRAIL = "trail"  # a new peak past TP2: the runner's stop must move
    WALK = "walk"  # a small random move


class FaultKind(StrEnum):
    CRASH = "crash"  # the engine process dies after I/O call `at` of the step, and restarts
    DB_OUTAGE = "db_outage"  # every database call fails, from I/O call `at`, for `seconds`
    DB_SLOW = "db_slow"  # every write takes `seconds` (past the deadline: refused, rolled back)
    DB_LOCK = "db_lock"  # the next `count` writes wait out their deadline on a lock and fail
    DB_KILL = "db_kill"  # the connection dies mid-transaction after I/O call `at` (not landed)
    DB_ACK_LOST = "db_ack_lost"  # the next `count` commits land, but their answer is lost
    STREAM_DROP = "stream_drop"  # user-stream events lost at `rate`
    STREAM_DUPLICATE = "stream_duplicate"  # delivered twice at `rate`
    STREAM_REORDER = "stream_reorder"  # neighbours swapped at `rate`
    STREAM_EARLY = "stream_early"  # an order's events arrive before its REST answer
    STREAM_GAP = "stream_gap"  # `seconds` of silence (events lost), then a reconnect
    STREAM_DISCONNECT = "stream_disconnect"  # the socket drops for `seconds` (listen-key expiry)
    ACK_ONLY = "ack_only"  # market orders matching `glob` acknowledged, filled `seconds` later
    TIMEOUT_AFTER_EXECUTION = "timeout_after_execution"  # executed, but the answer times out
    SERVER_ERRORS = "server_errors"  # 5xx for orders matching `glob`, for `seconds`
    RATE_LIMIT = "rate_limit"  # 429 for orders matching `glob`, for `seconds`
    QUERY_FAILURES = "query_failures"  # every exchange query fails for `seconds`
    REJECT = "reject"  # orders matching `glob` definitively refused for the step
    EXECUTE_LATE = "execute_late"  # places matching `glob` answered unknown, executed `seconds` later
    FIRED_IN_PARTS = "fired_in_parts"  # stops and take-profits the mark fires fill in `count` parts


REFUSALS = frozenset(
    {FaultKind.SERVER_ERRORS, FaultKind.RATE_LIMIT, FaultKind.QUERY_FAILURES, FaultKind.REJECT}
)
"""Faults during which the exchange will not take what protection needs: their time is excused
from the protection window (nothing can rest while the exchange refuses it)."""

IN_PARTS = frozenset({FaultKind.ACK_ONLY, FaultKind.FIRED_IN_PARTS})
"""Faults whose `rate` and `count` are the parts an order fills in."""

DATABASE = frozenset(
    {FaultKind.DB_OUTAGE, FaultKind.DB_SLOW, FaultKind.DB_LOCK, FaultKind.DB_KILL, FaultKind.DB_ACK_LOST}
)


ROLE_NAMES = {"e": "entries", "s": "stops", "a": "TP1s", "b": "TP2s", "c": "closes", "*": "every order"}


def role_glob(roles: str) -> str:
    """The server's client-id glob for orders of these role codes ("*": every order).

    `wd-*-*-s[0-9]*` and not `*-s*`: an installation id may itself start with the letter."""
    if roles == "*":
        return "*"
    return f"wd-*-*-[{roles}][0-9]*"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    at: int = 0
    seconds: float = 0.0
    roles: str = ""
    """Which orders an order fault hits, as role codes (e entry, s stop, a TP1, b TP2, c close) or *."""
    rate: float = 0.0
    count: int = 0
    retry_after: float = 0.0
    """(RATE_LIMIT over real processes) seconds the exchange's 429 tells the client to stay away
    (Binance's Retry-After, Bybit's reset timestamp): nothing is sent meanwhile."""

    def __str__(self) -> str:
        parts = [self.kind.value]
        if self.kind in (FaultKind.CRASH, FaultKind.DB_OUTAGE, FaultKind.DB_KILL):
            parts.append(f"at I/O #{self.at}")
        if self.roles:
            parts.append("on " + " and ".join(ROLE_NAMES[r] for r in self.roles))
        if self.seconds:
            parts.append(f"{self.seconds:g}s")
        if self.rate and self.kind in IN_PARTS:
            parts.append(f"in {self.count} parts, each {self.rate:g} of what is left")
        elif self.rate:
            parts.append(f"rate {self.rate:g}")
        if self.count and self.kind not in IN_PARTS:
            parts.append(f"x{self.count}")
        if self.retry_after:
            parts.append(f"retry after {self.retry_after:g}s")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    act: Act
    symbol: Symbol = SOL
    side: Side = Side.LONG
    usd: Decimal = Decimal(0)
    signal_id: str | None = None
    target: Target = Target.WALK
    fraction: Decimal = Decimal(1)
    seconds: float = 0.0
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        coin = self.symbol.split("/")[0]
        what = {
            Act.SIGNAL: f"signal {self.side} {coin} ${self.usd} (id {self.signal_id})",
            Act.RACE: f"two signals {self.side} {coin} ${self.usd} at once",
            Act.REPEAT: f"signal {self.side} {coin} ${self.usd} again with id {self.signal_id}",
            Act.PRICE: f"{coin} mark to {self.target}",
            Act.CLOSE: f"close {coin} through warden",
            Act.OUTSIDE_OPEN: f"someone opens {self.side} {coin} ${self.usd} by hand",
            Act.OUTSIDE_CLOSE: f"someone closes {self.fraction:%} of {coin} by hand",
            Act.CANCEL_STOP: f"someone cancels the {coin} stop by hand",
            Act.SECOND_ENGINE: "a second engine starts on the account",
            Act.RESTART: "the process dies (idle) and restarts",
            Act.WAIT: f"{self.seconds:g}s pass",
        }[self.act]
        faults = f" [{'; '.join(str(f) for f in self.faults)}]" if self.faults else ""
        return f"step {self.index}: {what}{faults}"


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    run: int
    stacking: bool
    steps: tuple[Step, ...]

    @property
    def key(self) -> str:
        """What `warden chaos --replay` takes to play this scenario again."""
        return f"{self.seed}:{self.run}"
