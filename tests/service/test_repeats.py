"""Refused signals of one kind told as one count (RepeatDigest), on the fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import eventually
from warden.adapters.clock import FakeClock
from warden.service.repeats import RepeatDigest


class Told:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def tell(self, message: str) -> None:
        self.messages.append(message)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def advance(clock: FakeClock, seconds: float) -> None:
    """Move the fake clock (once every task spawned has begun its sleep) and let every sleeper
    it wakes run its turn."""
    for _ in range(5):
        await asyncio.sleep(0)
    clock.advance(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_first_is_told_at_once_and_the_repeats_as_one_count() -> None:
    clock, told = FakeClock(), Told()
    digest = RepeatDigest(clock, told.tell, told.spawn, window=60)
    for i in range(5):
        await digest.tell(f"entry {i} refused: exchange unavailable", "entry:ExchangeUnavailable")
    assert told.messages == ["entry 0 refused: exchange unavailable"]
    await advance(clock, 59)
    assert len(told.messages) == 1
    await advance(clock, 1)
    await eventually(lambda: len(told.messages) == 2, what="the count told at the window's end")
    assert told.messages[1].startswith("4 more signals refused for the same reason in the last 1 min")
    assert told.messages[1].endswith("the last: entry 4 refused: exchange unavailable")


async def test_the_window_doubles_while_they_go_on_and_a_quiet_one_ends_the_run() -> None:
    clock, told = FakeClock(), Told()
    digest = RepeatDigest(clock, told.tell, told.spawn, window=60, longest=150)
    about = "entry:TradingRefused"
    await digest.tell("first", about)
    await digest.tell("second", about)
    await advance(clock, 60)
    await eventually(lambda: len(told.messages) == 2, what="the first count")
    await digest.tell("third", about)
    await advance(clock, 60)
    assert len(told.messages) == 2  # the window is 120 s now
    await advance(clock, 60)
    await eventually(lambda: len(told.messages) == 3, what="the second count")
    assert told.messages[2].startswith("1 more signal refused for the same reason in the last 2 min")
    await advance(clock, 150)  # capped at 150 s; none came: the run ends
    await eventually(lambda: not told.tasks, what="the run to end")
    assert len(told.messages) == 3
    await digest.tell("fourth, after the quiet", about)
    assert told.messages[-1] == "fourth, after the quiet"  # told at once again


async def test_other_kinds_and_untagged_refusals_are_told_at_once() -> None:
    clock, told = FakeClock(), Told()
    digest = RepeatDigest(clock, told.tell, told.spawn, window=60)
    await digest.tell("entry refused", "entry:ExchangeUnavailable")
    await digest.tell("close refused", "exit:ExchangeUnavailable")
    await digest.tell("symbol missing", "input:symbol")
    await digest.tell("flip half done", None)
    await digest.tell("flip half done again", None)
    assert told.messages == [
        "entry refused",
        "close refused",
        "symbol missing",
        "flip half done",
        "flip half done again",
    ]


async def test_a_zero_window_tells_each() -> None:
    clock, told = FakeClock(), Told()
    digest = RepeatDigest(clock, told.tell, told.spawn, window=0)
    for i in range(3):
        await digest.tell(f"refused {i}", "entry:ExchangeUnavailable")
    assert told.messages == ["refused 0", "refused 1", "refused 2"]
    for task in told.tasks:
        task.cancel()
