"""A close signal is acted on once: its id is bound to what it closes.

A close signal that carries a `signal_id` closes what was open on its symbol when that id first
arrived, and only that. The binding is stored (`Store.claim_close_signal`, per account, id and
symbol), so the signal resent later — a relay that retries, an alert delivered twice, before or
after a restart — closes nothing opened on the symbol since. A refusal before the binding (an
entry still being resolved) binds nothing: the signal resent acts afresh. With the database
unreachable the binding is kept in memory and the close goes ahead (an exit is not held up by an
outage); it is stored once the database answers again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from warden.domain.position import Position, PositionStatus
from warden.domain.values import PositionId, Symbol
from warden.ports import Clock, CloseClaim, FencedOut, Store, StoreUnavailable
from warden.service.commands import ClosePosition, NotHolder, SignalClose, TradingRefused
from warden.service.ledger import Ledger

log = structlog.get_logger("warden.close_signals")

KEPT = 10_000
"""Bindings kept in memory (the most recent; also the database's stand-in in an outage)."""


def to_close(ledger: Ledger, symbol: Symbol) -> list[PositionId]:
    """What a close of `symbol` closes: every position open on it (one, unless stacking is on).
    One whose entry is still being resolved cannot be closed yet: that refusal comes before any
    is closed (TradingRefused says nothing was sent)."""
    pids = sorted(ledger.by_symbol.get(symbol, ()))
    opening = [pid for pid in pids if ledger.positions[pid].status is PositionStatus.OPENING]
    if opening:
        raise TradingRefused(
            f"the entry order of {', '.join(opening)} on {symbol} is still being resolved; nothing"
            " on the symbol was closed; try again in a moment"
        )
    return pids


class CloseSignals:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ledger: Ledger,
        close: Callable[[ClosePosition], Awaitable[Position]],
        refused: Callable[[FencedOut], NotHolder],
    ) -> None:
        self.store = store
        self.clock = clock
        self.ledger = ledger
        self._close = close
        self._refused = refused
        """What a write the fence refused becomes (the engine stands down)."""
        self._bound: dict[tuple[str, Symbol], CloseClaim] = {}
        self._unsaved: dict[tuple[str, Symbol], CloseClaim] = {}
        """Bindings made while the database was unreachable: stored when it answers again."""

    async def close(self, symbol: Symbol, signal_id: str, reason: str) -> SignalClose:
        """Close what `signal_id` is bound to on `symbol` (binding it now to what is open, the
        first time it comes); see the module docstring."""
        claim = self._bound.get((signal_id, symbol))
        if claim is None:
            pids = to_close(self.ledger, symbol)
            asked = CloseClaim(signal_id, symbol, tuple(pids), self.clock.now())
            claim = await self._claim(asked)
            self._bound[signal_id, symbol] = claim
            while len(self._bound) > KEPT:
                del self._bound[next(iter(self._bound))]
            resent = claim.position_ids != asked.position_ids
        else:
            resent = True
        closed, positions = False, []
        for pid in claim.position_ids:
            before = self.ledger.positions.get(pid)
            closed = closed or (before is not None and before.is_active)
            positions.append(await self._close(ClosePosition(pid, reason)))
        return SignalClose(positions, resent, closed)

    async def store_unsaved(self) -> None:
        """Store the bindings made during an outage (StoreUnavailable: still down, kept)."""
        for key, asked in list(self._unsaved.items()):
            try:
                stored = await self.store.claim_close_signal(*key, asked.position_ids, asked.at)
            except FencedOut as exc:
                raise self._refused(exc) from exc
            del self._unsaved[key]
            if key in self._bound:
                self._bound[key] = stored

    async def _claim(self, asked: CloseClaim) -> CloseClaim:
        """The stored binding of `asked`'s signal id on its symbol (the first one made). With the
        database unreachable, `asked` itself, kept to be stored once it answers again: a restart
        must find it, or the signal resent then binds (and closes) what was opened since."""
        try:
            return await self.store.claim_close_signal(
                asked.signal_id, asked.symbol, asked.position_ids, asked.at
            )
        except StoreUnavailable as exc:
            log.warning("close_signal_kept_in_memory", signal_id=asked.signal_id, error=str(exc))
            self._unsaved[asked.signal_id, asked.symbol] = asked
            return asked
        except FencedOut as exc:
            raise self._refused(exc) from exc
