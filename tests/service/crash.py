"""Crash-point harness: cut a flow after its k-th I/O call, restart from DB + exchange, check I1-I5."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from tests.service.harness import Harness
from warden.domain.values import OrderSide, parse_client_order_id


class SimulatedCrash(BaseException):
    """The process died: raised through every `except Exception` on purpose."""


class CrashAfter:
    """Wraps a port; the k-th async call runs, then the process "dies" (every later call too)."""

    def __init__(self, inner: Any, budget: CallBudget) -> None:
        self._inner = inner
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in ("stream", "close") or not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._budget.before()
            result = await attr(*args, **kwargs)
            self._budget.after(name)
            return result

        return call


class CallBudget:
    def __init__(self, crash_at: int | None) -> None:
        self.armed = False
        self.crash_at = crash_at
        self.calls: list[str] = []
        self.dead = False
        self.harness: Any = None

    def before(self) -> None:
        if self.dead:
            raise SimulatedCrash

    def after(self, name: str) -> None:
        if not self.armed:
            return
        self.calls.append(name)
        if self.crash_at is not None and len(self.calls) >= self.crash_at:
            self.dead = True
            if self.harness is not None:
                self.harness.crashed = True
            raise SimulatedCrash


Flow = Callable[[Harness], Awaitable[Any]]


async def run_with_crash(h: Harness, flow: Flow, crash_at: int | None) -> CallBudget:
    """Run `flow` with every exchange and DB call counted; crash after call number `crash_at`.

    The engine is rebuilt with both ports wrapped (faults are injected at construction); the
    count starts once its startup recovery has passed."""
    budget = CallBudget(crash_at)
    h.crashed = False
    budget.harness = h
    await h.stop()
    h.wrap = lambda inner: CrashAfter(inner, budget)
    await h.start()
    h.wrap = None
    budget.armed = True
    engine = h.engine
    try:
        await flow(h)
        await engine.wait_idle()
    except SimulatedCrash:
        pass
    if budget.dead:
        await engine.wait_idle()  # let the dying tasks unwind: every later call raises too
    return budget


async def check_invariants(h: Harness) -> None:
    """I1, I2 and no duplicate orders, read from the exchange and the recovered engine."""
    core = h.sim.core
    ledger = h.engine.ledger
    for report in core.positions():
        mine = [p for p in ledger.active_positions() if p.symbol == report.symbol]
        held = sum((p.remaining * p.side.sign for p in mine), Decimal(0))
        signed_qty = report.qty * report.side.sign
        assert held == signed_qty, f"{report.symbol}: exchange {signed_qty}, warden {held}"
        exit_side = OrderSide.SELL if signed_qty > 0 else OrderSide.BUY
        stops = [
            o
            for o in core.open_orders(report.symbol)
            if o.type.value == "stop_market" and o.side is exit_side and o.reduce_only
        ]
        covered = sum((o.qty for o in stops), Decimal(0))
        assert covered >= abs(signed_qty), f"{report.symbol}: stop covers {covered} of {abs(signed_qty)}"
        for p in mine:
            stop = ledger.current_stop(p.id)
            assert stop is not None and stop.qty == p.remaining, f"{p.id}: stop {stop} for {p.remaining}"
    for p in ledger.active_positions():
        assert p.remaining > 0 or p.status.value == "opening", f"{p.id} active with nothing open"
    trade_ids: dict[str, int] = {}
    for symbol in h.engine.instruments:
        for fill in core.fills(symbol):
            if parse_client_order_id(fill.client_order_id) is None:
                continue
            trade_ids[fill.trade_id] = trade_ids.get(fill.trade_id, 0) + 1
            owner = parse_client_order_id(fill.client_order_id)
            assert owner is not None
            position = ledger.positions.get(owner[0]) or await h.store.get_position(owner[0])
            assert position is not None, f"fill {fill.trade_id} of unknown position {owner[0]}"
            assert fill.trade_id in position.applied_trades, f"fill {fill.trade_id} not applied"
    executed: dict[str, Decimal] = {}
    for symbol in h.engine.instruments:
        for fill in core.fills(symbol):
            executed[fill.client_order_id] = executed.get(fill.client_order_id, Decimal(0)) + fill.qty
    for cid, qty in executed.items():
        order = ledger.orders.get(cid)  # type: ignore[call-overload]
        if order is not None:
            assert qty <= order.qty, f"{cid} executed {qty} of {order.qty}: sent twice"
