"""A Store that forwards every call to another: the base for decorators (counting, switching)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from warden.domain.alerts import Alert, AlertId
from warden.domain.controls import Controls
from warden.domain.events import Event
from warden.domain.orders import Order
from warden.domain.position import Position
from warden.domain.values import PositionId, Symbol
from warden.ports import ActiveState, CloseClaim, Store, Transition


class ForwardingStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner

    @property
    def installation_id(self) -> str:
        return self.inner.installation_id

    def set_epoch(self, account: str, epoch: int) -> None:
        self.inner.set_epoch(account, epoch)

    async def account_of_installation(self, installation_id: str) -> str | None:
        return await self.inner.account_of_installation(installation_id)

    async def commit(self, transition: Transition) -> None:
        await self.inner.commit(transition)

    async def commit_many(self, transitions: Sequence[Transition]) -> None:
        await self.inner.commit_many(transitions)

    async def append_events(self, events: Sequence[Event], alerts: Sequence[Alert] = ()) -> None:
        await self.inner.append_events(events, alerts)

    async def pending_alerts(self, limit: int = 100) -> list[Alert]:
        return await self.inner.pending_alerts(limit)

    async def mark_alerts_delivered(self, ids: Sequence[AlertId], at: datetime) -> None:
        await self.inner.mark_alerts_delivered(ids, at)

    async def record_alert_channels(self, channels: Mapping[AlertId, Collection[str]]) -> None:
        await self.inner.record_alert_channels(channels)

    async def alert_channels(self, ids: Sequence[AlertId]) -> dict[AlertId, set[str]]:
        return await self.inner.alert_channels(ids)

    async def load_controls(self) -> Controls:
        return await self.inner.load_controls()

    async def save_controls(self, controls: Controls) -> None:
        await self.inner.save_controls(controls)

    async def realized_pnl_since(self, since: datetime) -> Decimal:
        return await self.inner.realized_pnl_since(since)

    async def save_marks(self, positions: Sequence[Position]) -> None:
        await self.inner.save_marks(positions)

    async def load_active(self) -> ActiveState:
        return await self.inner.load_active()

    async def get_position(self, position_id: PositionId) -> Position | None:
        return await self.inner.get_position(position_id)

    async def find_by_signal(self, signal_id: str) -> Position | None:
        return await self.inner.find_by_signal(signal_id)

    async def claim_close_signal(
        self, signal_id: str, symbol: Symbol, position_ids: Sequence[PositionId], at: datetime
    ) -> CloseClaim:
        return await self.inner.claim_close_signal(signal_id, symbol, position_ids, at)

    async def list_positions(self, *, include_closed: bool = False, limit: int = 100) -> list[Position]:
        return await self.inner.list_positions(include_closed=include_closed, limit=limit)

    async def orders_for(self, position_id: PositionId) -> list[Order]:
        return await self.inner.orders_for(position_id)

    async def list_events(self, position_id: PositionId | None = None, limit: int = 100) -> list[Event]:
        return await self.inner.list_events(position_id, limit)

    async def events_since(
        self, after_id: int | None, limit: int = 100, *, position_id: PositionId | None = None
    ) -> list[tuple[int, Event]]:
        return await self.inner.events_since(after_id, limit, position_id=position_id)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()
