"""A position's peak (trough for a short), MAE and MFE are its own: they start at its fill.

The engine may observe marks while a position's entry order is in flight: the
position is already recorded (OPENING) and watched on its symbol, but it has no
price yet. Those marks happened before the fill and must not become its peak.
Here the entry order is held on the simulated exchange until the engine has
taken the marks, which makes that interleaving certain instead of likely.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

from tests.helpers import eventually
from tests.service.harness import SOL, Harness
from warden.domain.position import Position, PositionStatus

D = Decimal


async def open_while_marks_arrive(harness: Harness, side: str, marks: list[Decimal]) -> Position:
    """Open a position; `marks` reach the engine after its OPENING record, before its fill."""
    await harness.stop()
    harness.config = replace(harness.config, order_timeout=30.0)
    await harness.start()
    harness.probe.hold_entries = True
    opening = asyncio.get_running_loop().create_task(harness.open(side, usd="100"))
    await asyncio.wait_for(harness.probe.entry_arrived.wait(), timeout=10)
    [pending] = harness.engine.ledger.active_positions()
    assert pending.status is PositionStatus.OPENING and pending.entry_price is None
    for mark in marks:
        harness.sim.set_mark(SOL, mark)
    await eventually(lambda: harness.queued_events() == 0, what="the engine took the marks")
    harness.probe.release_entries()
    pos = await opening
    await harness.engine.wait_idle()
    return pos


async def seen(harness: Harness, pos: Position) -> Position:
    """The position as a reader gets it (the symbol's marks folded in)."""
    return (await harness.engine.get_position(pos.id)).position


async def mark(harness: Harness, price: Decimal) -> None:
    harness.sim.set_mark(SOL, price)
    await eventually(lambda: harness.queued_events() == 0, what=f"the engine took mark {price}")
    await harness.engine.wait_idle()


async def test_a_long_peak_starts_at_its_fill(harness: Harness) -> None:
    """SOL marks 160 then 150, a long filled at 150: peak 150 and MFE 0 once protected; 151 moves it."""
    pos = await open_while_marks_arrive(harness, "long", [D(160), D(150)])
    assert pos.status is PositionStatus.PROTECTED
    assert pos.entry_price == D(150)
    assert (pos.watermark, pos.mfe, pos.mae) == (pos.entry_price, 0, 0)
    now = await seen(harness, pos)
    assert (now.watermark, now.mfe, now.mae) == (pos.entry_price, 0, 0)

    await mark(harness, D(151))
    now = await seen(harness, pos)
    assert (now.watermark, now.mfe, now.mae) == (D(151), D(151) - pos.entry_price, 0)
    assert harness.engine.ledger.positions[pos.id].watermark == D(151)


async def test_a_short_trough_starts_at_its_fill(harness: Harness) -> None:
    """SOL marks 140 then 150, a short filled at 150: trough 150 and MFE 0 once protected; 149 moves it."""
    pos = await open_while_marks_arrive(harness, "short", [D(140), D(150)])
    assert pos.status is PositionStatus.PROTECTED
    assert pos.entry_price == D(150)
    assert (pos.watermark, pos.mfe, pos.mae) == (pos.entry_price, 0, 0)
    now = await seen(harness, pos)
    assert (now.watermark, now.mfe, now.mae) == (pos.entry_price, 0, 0)

    await mark(harness, D(149))
    now = await seen(harness, pos)
    assert (now.watermark, now.mfe, now.mae) == (D(149), pos.entry_price - D(149), 0)


async def test_a_peak_whose_write_failed_is_written_by_the_next_flush(harness: Harness) -> None:
    """Chaos 2049494027:3613: the flush that would have written a new peak met a locked
    database; the symbols whose marks moved had already been taken from the tick index, so no
    later flush wrote it until the next tick on that symbol (memory 67338, database 66959.4, I5).
    What a failed flush did not write, the next one does, new ticks or not."""
    pos = await harness.open("long", usd="100")
    harness.store.down = True
    await mark(harness, D(151))
    await harness.engine.exits.flush_watermarks()  # refused: the database is down
    harness.store.down = False
    await harness.engine.exits.flush_watermarks()  # no tick since
    stored = await harness.store.get_position(pos.id)
    assert stored is not None and stored.watermark == D(151), stored
