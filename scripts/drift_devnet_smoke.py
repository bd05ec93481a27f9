"""Opt-in devnet smoke test (`make drift-devnet`; never run in CI): the real sidecar on Solana devnet.

Needs DRIFT_RPC_URL (a devnet RPC) and DRIFT_KEYPAIR_PATH (a funded devnet keypair whose Drift
user account exists and holds devnet USDC collateral). Opens the smallest SOL-PERP long with its
reduce-only stop in one transaction (as warden does), waits for the fill, sees the stop resting in
the user account, closes, and checks the
account is flat with no order left. Uses a throwaway SQLite database under a temp directory.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from warden.adapters.db.drift_ids import SqlUserOrderIds
from warden.adapters.db.migrate import upgrade
from warden.adapters.drift import DriftExchange, SidecarClient, SidecarConfig, SidecarProcess
from warden.domain.orders import OrderStatus
from warden.domain.reports import OrderRequest
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol

SOL = Symbol("SOL-PERP")


async def until(what: str, check, within: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"FAILED: {what} within {within}s")
        await asyncio.sleep(1.0)


async def main() -> None:
    for name in ("DRIFT_RPC_URL", "DRIFT_KEYPAIR_PATH"):
        if not os.environ.get(name):
            raise SystemExit(f"{name} is not set (see README, Drift)")
    os.environ.setdefault("DRIFT_ENV", "devnet")
    db = f"sqlite:///{Path(tempfile.mkdtemp()) / 'smoke.db'}"
    await upgrade(db)
    process = SidecarProcess(
        SidecarConfig(
            Path(".drift-venv/bin/python"), os.environ["DRIFT_KEYPAIR_PATH"], os.environ["DRIFT_RPC_URL"], 0
        )
    )
    drift = DriftExchange(
        SidecarClient(process.url, timeout=30), SqlUserOrderIds(db, "smoke"), sidecar=process
    )
    await drift.start()
    try:
        sol = (await drift.instruments())[SOL]
        oracle = await drift.mark_price(SOL)
        print(f"SOL-PERP oracle {oracle}, step {sol.lot_size}, tick {sol.tick_size}")
        if await drift.fetch_positions():
            raise SystemExit("FAILED: the account already has a position; use a clean devnet account")
        qty = sol.min_qty
        run = f"{int(time.time()) % 10**12:012x}"
        stop_price = sol.round_price(oracle * Decimal("0.9"))
        # As warden opens on Drift: the entry and its reduce-only stop in ONE place_orders
        # transaction (the stop precedes the position it reduces; Drift is expected to accept it).
        entry, stop = await drift.place_together(
            [
                OrderRequest(ClientOrderId(f"wd-smoke1-{run}-e1"), SOL, OrderSide.BUY, OrderType.MARKET, qty),
                OrderRequest(
                    ClientOrderId(f"wd-smoke1-{run}-s1"),
                    SOL,
                    OrderSide.SELL,
                    OrderType.STOP_MARKET,
                    qty,
                    stop_price,
                    True,
                ),
            ]
        )
        print(
            f"entry and stop in one transaction: orders {entry.exchange_order_id}, {stop.exchange_order_id}"
        )
        await until("the entry filled", lambda: _filled(drift, f"wd-smoke1-{run}-e1"))
        resting = {o.client_order_id: o for o in await drift.fetch_open_orders()}
        if stop.client_order_id not in resting or resting[stop.client_order_id].trigger_price != stop_price:
            raise SystemExit(f"FAILED: the stop is not resting in the user account: {resting}")
        print(f"stop resting: order {stop.exchange_order_id} below {stop_price}")
        await drift.place_order(
            OrderRequest(
                ClientOrderId(f"wd-smoke1-{run}-c1"), SOL, OrderSide.SELL, OrderType.MARKET, qty, None, True
            )
        )
        await until("the close filled", lambda: _filled(drift, f"wd-smoke1-{run}-c1"))
        await drift.cancel_order(SOL, stop.client_order_id, True)
        await until("flat with no order", lambda: _flat(drift))
        print("PASSED: opened, stop resting, closed, flat")
    finally:
        await drift.close()


async def _filled(drift: DriftExchange, cid: str) -> bool:
    return (await drift.fetch_order(SOL, cid, False)).status is OrderStatus.FILLED


async def _flat(drift: DriftExchange) -> bool:
    return not await drift.fetch_positions() and not await drift.fetch_open_orders()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
