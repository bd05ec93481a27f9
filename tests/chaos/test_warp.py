"""The virtual-time loop in-process chaos runs on: idle waits cost nothing, real I/O is waited for."""

from __future__ import annotations

import asyncio
import time

import pytest

from warden.chaos import warp


def test_idle_waits_are_skipped_and_deadlines_still_fire() -> None:
    """An hour of sleeping takes no real time; a timeout fires at its virtual deadline."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        slept = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.Event().wait()
        return slept, loop.time()

    started = time.monotonic()
    slept, timed_out = warp.run(main())
    assert slept == 3600 and timed_out == pytest.approx(3605)
    assert time.monotonic() - started < 2


def test_real_io_in_flight_is_waited_for_and_moves_the_clock_with_it() -> None:
    """A thread's work marked as real I/O is not skipped past: its deadline means real seconds."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with warp.real_io():
            async with asyncio.timeout(5):
                await loop.run_in_executor(None, time.sleep, 0.2)
        return loop.time()

    took = warp.run(main())
    # Not skipped past (that would read ~0, or the 5 s deadline): the 0.2 s really passed. The
    # thread's sleep and the loop's clock are different clocks: 0.19996 has been seen.
    assert 0.19 <= took < 5


def test_a_loop_that_never_lets_time_pass_is_cut_off() -> None:
    """A spin that keeps the loop busy without any wait ends in Hung after the real-time limit."""

    async def tick() -> None:
        await asyncio.sleep(0)

    async def spin() -> None:
        while True:
            await tick()

    with pytest.raises(warp.Hung):
        warp.run(spin(), real_limit=0.3)


def test_the_clock_gives_engine_exchange_and_driver_one_time() -> None:
    async def main() -> tuple[float, float]:
        clock = warp.WarpClock()
        await clock.sleep(90)
        return clock.monotonic(), (clock.now() - warp.EPOCH).total_seconds()

    assert warp.run(main()) == (90, 90)
