"""Seed 002 on Drift: a restart between TP1 and the runner's arm, while the venue's trigger orders
have fired and wait for their auction (Drift fills a triggered order a moment later). Judged by
what the simulated venue holds: the position's size, and the size and price of every resting
order, after each restart."""

from __future__ import annotations

from decimal import Decimal

from tests.helpers import eventually

from .conftest import DriftSim
from .test_one_transaction import SOL, DriftEngine, protected, resting, uncovered

D = Decimal


def venue_qty(sim: DriftSim) -> Decimal:
    return sim.venue.core.position(SOL).qty


def orders(sim: DriftSim) -> list[tuple[str, Decimal, Decimal]]:
    """(condition, base, trigger) of every resting order, as the venue holds them."""
    return sorted(
        (
            str(o["trigger_condition"]),
            D(int(o["base_asset_amount"])) / 10**9,
            D(int(o["trigger_price"])) / 10**6,
        )
        for o in resting(sim)
    )


def fired(sim: DriftSim) -> bool:
    return bool(sim.venue.core.triggered())


async def test_a_restart_while_tp1_then_tp2_wait_for_their_auction_keeps_the_runner_and_every_size(
    drift_sim: DriftSim,
) -> None:
    h = await DriftEngine(drift_sim).start()
    try:
        await h.open("long", "1")
        position = await protected(h)
        entry = position.entry_price
        assert entry is not None
        await drift_sim.control("POST", "/sim/faults", {"keeper_delay": 0.05, "auction_delay": 1.0})

        await drift_sim.control(
            "POST", "/sim/price", {"symbol": "SOL", "price": str((entry * D("1.012")).quantize(D("0.001")))}
        )
        await eventually(lambda: fired(drift_sim), what="TP1 fired, its auction pending")
        h = await h.restart()  # memory gone while TP1 waits for its fill
        await eventually(lambda: venue_qty(drift_sim) == D("0.4"), timeout=10, what="TP1 filled")

        def after_tp1() -> bool:
            position = h.only()
            stops = [o for o in orders(drift_sim) if o[0] == "below"]
            tps = [o for o in orders(drift_sim) if o[0] == "above"]
            return (
                position.tp1_hit
                and position.remaining == D("0.4")
                and [s[1] for s in stops] == [D("0.4")]
                and [t[1] for t in tps] == [D("0.2")]
            )

        await eventually(
            after_tp1, timeout=10, what=f"TP1's 60 %, then stop 0.4 and TP2 0.2: {orders(drift_sim)}"
        )

        await drift_sim.control(
            "POST", "/sim/price", {"symbol": "SOL", "price": str((entry * D("1.022")).quantize(D("0.001")))}
        )
        await eventually(lambda: fired(drift_sim), what="TP2 fired, its auction pending")
        h = await h.restart()  # memory gone between TP2's trigger and the runner's arm
        await eventually(lambda: venue_qty(drift_sim) == D("0.2"), timeout=10, what="TP2 filled")

        def armed() -> bool:
            position = h.only()
            return (
                position.tp2_hit
                and position.trailing_active
                and position.remaining == D("0.2")
                and [o[:2] for o in orders(drift_sim)] == [("below", D("0.2"))]
            )

        await eventually(armed, timeout=10, what=f"the runner 0.2 armed: {orders(drift_sim)}")

        high = (entry * D("1.04")).quantize(D("0.001"))
        await drift_sim.control("POST", "/sim/price", {"symbol": "SOL", "price": str(high)})
        trail = high * (1 - D("0.005"))

        def trailed() -> bool:
            now = orders(drift_sim)  # two for a moment: the new stop rests before the old goes
            return len(now) == 1 and now[0][:2] == ("below", D("0.2")) and abs(now[0][2] - trail) < D("0.01")

        await eventually(trailed, timeout=10, what=f"the runner's stop trails {high}: {orders(drift_sim)}")
        assert venue_qty(drift_sim) == D("0.2")
        assert uncovered(drift_sim) == 0.0
    finally:
        await h.stop()
