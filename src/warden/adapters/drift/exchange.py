"""`DriftExchange`: the Exchange port on Drift perpetuals, through the sidecar protocol (v1).

The sidecar (`sidecar/drift`, its own environment with driftpy) or the simulator (`warden sim
serve --venue drift`) answers the protocol; this adapter holds Drift's semantics, translated
at its boundary:

- markets by index <-> warden symbols (`SOL-PERP`); step and tick sizes come from the market
  accounts; quantities off the step and triggers off the tick are refused before sending
  (Drift would round them silently);
- warden's client order ids <-> Drift's u8 user_order_id through a table in warden's database
  (`ids.py`): allocated and written with the transaction's signature BEFORE anything is sent,
  released only once the order is final; fills and updates are attributed by Drift's order_id;
- stops and take-profits are trigger_market orders: a stop on a long is a short that fires
  `below`, a take-profit `above` (the other way round for a short); they trigger on the ORACLE
  price, so the "mark price" this adapter reports (and streams) is the oracle; "resting" means
  the trigger order is in the user account (it stays there, `triggered_*`, until filled);
- a market order is acknowledged (OPEN, nothing filled) and filled by an auction later: the
  engine treats it as working and waits for its fill;
- a transaction that is not confirmed in time is UNKNOWN (ExchangeTimeout): it is settled by its
  signature (confirmed, failed, or expired: its blockhash can no longer land), the user's
  orders and fills; a new transaction for the same client id is built only once the old one
  failed or expired; re-sending the same signed transaction is harmless and is all a retry does
  while the old one could still land;
- the `conditional` flag of the port means nothing on Drift (one order space).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from warden.adapters.drift import protocol as p
from warden.adapters.drift.client import NotSigned, SidecarClient
from warden.adapters.drift.ids import IdRow, NoFreeUserOrderId, UserOrderIds
from warden.adapters.drift.sidecar import SidecarProcess
from warden.domain.margin import MarginMode, SymbolConfig
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import Instrument, OrderSide, OrderType, Side, Symbol, TradeId
from warden.ports import (
    DuplicateOrder,
    ExchangeError,
    ExchangeTimeout,
    ExchangeUnavailable,
    OrderNotFound,
    OrderRejected,
    StoreError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTSIDE_PREFIX = "drift-"
"""Client id given to an order warden did not send (`drift-<order_id>`): Drift orders carry no string."""
ID_IN_USE = "UserOrderIdAlreadyInUse"
BASE = Decimal(p.BASE_PRECISION)
PRICE = Decimal(p.PRICE_PRECISION)
QUOTE = Decimal(p.QUOTE_PRECISION)
_STATUS = {p.OPEN: OrderStatus.OPEN, p.FILLED: OrderStatus.FILLED, p.CANCELED: OrderStatus.CANCELED}


@dataclass(frozen=True, slots=True)
class PerpMarket:
    index: int
    instrument: Instrument

    @property
    def symbol(self) -> Symbol:
        return self.instrument.symbol


def perp_symbol(raw: str) -> Symbol:
    """Drift's market name as warden's symbol: `SOL-PERP` (SOL -> SOL-PERP)."""
    text = raw.strip().upper()
    return Symbol(text if text.endswith("-PERP") else f"{text}-PERP")


def market_from_wire(row: p.Json) -> PerpMarket:
    step = Decimal(int(row["order_step_size"])) / BASE
    tick = Decimal(int(row["order_tick_size"])) / PRICE
    minimum = Decimal(int(row["min_order_size"])) / BASE
    instrument = Instrument(perp_symbol(str(row["symbol"])), tick, step, max(minimum, step), Decimal(0))
    return PerpMarket(int(row["market_index"]), instrument)


def units(value: Decimal, precision: Decimal) -> int | None:
    """`value` as Drift's integer at `precision`; None if it does not convert exactly."""
    scaled = value * precision
    return int(scaled) if scaled == scaled.to_integral_value() else None


def trigger_condition(order_type: OrderType, side: OrderSide) -> str:
    """A stop fires against the position (a sell stop below, a buy stop above); a TP the other way."""
    stop = order_type is OrderType.STOP_MARKET
    return p.BELOW if stop == (side is OrderSide.SELL) else p.ABOVE


def order_type_of(row: p.Json) -> OrderType:
    if row["order_type"] == p.MARKET:
        return OrderType.MARKET
    condition = str(row["trigger_condition"]).removeprefix("triggered_")
    sell = row["direction"] == p.SHORT
    return OrderType.STOP_MARKET if (condition == p.BELOW) == sell else OrderType.TAKE_PROFIT_MARKET


class DriftExchange:
    """One Drift user (authority + sub-account) behind one sidecar."""

    def __init__(
        self,
        client: SidecarClient,
        ids: UserOrderIds,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_close: Callable[[], Any] | None = None,
        sidecar: SidecarProcess | None = None,
    ) -> None:
        self.client = client
        self.ids = ids
        self._now = now
        self._markets: dict[Symbol, PerpMarket] = {}
        self._by_index: dict[int, PerpMarket] = {}
        self._owners: dict[int, str] = {}  # order_id -> client id (ours only)
        self._allocating = asyncio.Lock()
        self._outside_ids: set[int] = set()  # user order ids seen on orders that are not ours
        # Client ids whose u8 is allocated and whose transaction is being signed in this process:
        # a lookup meanwhile finds no signature, which here means "not yet", not "never sent".
        self._signing: set[str] = set()
        self._on_close = on_close
        self.sidecar = sidecar
        self._streams: list[Any] = []

    async def start(self) -> None:
        """Start the supervised sidecar, if this adapter owns one (no-op otherwise)."""
        if self.sidecar is not None:
            await self.sidecar.start()

    # ----- markets ------------------------------------------------------------------------

    async def _load(self, refresh: bool = False) -> None:
        if self._markets and not refresh:
            return
        data = await self.client.get("/v1/markets")
        try:
            found = [market_from_wire(row) for row in data["markets"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ExchangeUnavailable(f"unreadable markets: {exc}") from exc
        self._markets = {m.symbol: m for m in found}
        self._by_index = {m.index: m for m in found}

    async def market(self, symbol: Symbol) -> PerpMarket:
        await self._load()
        found = self._markets.get(symbol)
        if found is None:
            raise OrderRejected(f"{symbol} is not a Drift perp market")
        return found

    async def symbol_at(self, index: int) -> Symbol:
        """warden's symbol of market `index`, reading the markets again if it is not known: Drift
        lists markets while warden runs, and the trader may trade one by hand."""
        if index not in self._by_index:
            await self._load(refresh=True)
        return self.symbol_of(index)

    def symbol_of(self, index: int) -> Symbol:
        found = self._by_index.get(index)
        if found is None:
            raise ExchangeUnavailable(f"market index {index} is unknown (markets changed?)")
        return found.symbol

    # ----- the Exchange port ----------------------------------------------------------------

    async def instruments(self) -> dict[Symbol, Instrument]:
        await self._load(refresh=True)
        return {s: m.instrument for s, m in self._markets.items()}

    async def mark_price(self, symbol: Symbol) -> Decimal:
        """The ORACLE price: Drift's trigger orders fire on it."""
        market = await self.market(symbol)
        data = await self.client.get("/v1/prices")
        for row in data.get("prices", []):
            if row.get("market_index") == market.index:
                return Decimal(int(row["oracle_price"])) / PRICE
        raise ExchangeUnavailable(f"no oracle price for {symbol}")

    async def place_order(self, request: OrderRequest) -> OrderReport:
        market = await self.market(request.symbol)
        wire = self._wire(request, market)
        cid = request.client_order_id
        lost: NotSigned | None = None
        for _attempt in range(2):
            lost = None
            # The lock covers the id table only, never a call to the RPC: settling an earlier
            # transaction (a resend that may hang) holds this client id (`_signing`), not every
            # other order's.
            async with self._allocating:
                if cid in self._signing:
                    raise ExchangeTimeout(
                        f"{cid} is being sent by another call; its outcome is not known yet"
                    )
                row = await self._store(self.ids.get(cid))
                self._signing.add(cid)
            try:
                if row is not None and row.live and row.tx_signature is not None:
                    earlier = await self._earlier(row, request)
                    if earlier is not None:
                        return earlier
                async with self._allocating:
                    try:
                        row = await self._store(self.ids.allocate(cid, set(self._outside_ids), self._now()))
                    except NoFreeUserOrderId as exc:
                        raise OrderRejected(f"{cid}: {exc}") from exc
                prepared = await self.client.prepare_place([{**wire, "user_order_id": row.user_order_id}])
                signature, height = str(prepared["signature"]), int(prepared["last_valid_block_height"])
                await self._store(self.ids.record_tx(cid, signature, height))
            finally:
                self._signing.discard(cid)
            try:
                result = await self.client.send(signature)
            except NotSigned as exc:  # the sidecar restarted since it signed: never sent, cannot be
                await self._release(cid)
                lost = exc
                continue
            try:
                return await self._placed(row, request, result, height)
            except OrderRejected as exc:
                if ID_IN_USE not in str(exc):
                    raise
                self._outside_ids.add(row.user_order_id)  # someone else's order holds it: pick another
        if lost is not None:  # nothing was sent: the caller tries again
            raise lost
        raise OrderRejected(f"{cid}: no user order id free of other orders")

    async def place_together(self, requests: Sequence[OrderRequest]) -> list[OrderReport]:
        """Several orders in ONE `place_orders` transaction: all land or none (the PlacesTogether
        capability; the open saga sends an entry with its stop and take-profits this way, which
        Drift accepts: a reduce-only trigger order is validated without looking at the position).

        Every client id gets its u8 and the one signature and height written BEFORE the send, as
        for one order. It is sent once: client ids that were sent before are not sent again here
        (ExchangeTimeout: look each up; their transaction settles them all)."""
        if not requests:
            return []
        markets = [await self.market(r.symbol) for r in requests]
        wires = [self._wire(r, m) for r, m in zip(requests, markets, strict=True)]
        cids = [r.client_order_id for r in requests]
        if len(set(cids)) != len(cids):
            raise OrderRejected(f"one transaction names a client id twice: {cids}")
        lost: NotSigned | None = None
        for _attempt in range(2):
            lost = None
            rows = await self._allocate_together(cids)
            try:
                prepared = await self.client.prepare_place(
                    [
                        {**wire, "user_order_id": row.user_order_id}
                        for wire, row in zip(wires, rows, strict=True)
                    ]
                )
                signature, height = str(prepared["signature"]), int(prepared["last_valid_block_height"])
                for cid in cids:
                    await self._store(self.ids.record_tx(cid, signature, height))
            finally:
                self._signing.difference_update(cids)
            try:
                result = await self.client.send(signature)
            except NotSigned as exc:  # the sidecar restarted since it signed: never sent, cannot be
                for cid in cids:
                    await self._release(cid)
                lost = exc
                continue
            state = result.get("status")
            if state in (p.FAILED, p.EXPIRED):  # none of them landed, and none can
                for cid in cids:
                    await self._release(cid)
                error = str(result.get("error", ""))
                if ID_IN_USE not in error:
                    raise OrderRejected(f"{cids}: transaction {state}: {error}")
                await self.fetch_open_orders()  # learn which u8s other orders hold; then again
                continue
            return [
                await self._placed(row, request, result, height)
                for row, request in zip(rows, requests, strict=True)
            ]
        if lost is not None:  # nothing was sent: the caller tries again
            raise lost
        raise OrderRejected(f"{cids}: no user order ids free of other orders")

    async def _allocate_together(self, cids: Sequence[str]) -> list[IdRow]:
        """A u8 for each client id of one transaction (all or none), marked as being signed."""
        async with self._allocating:
            for cid in cids:
                row = await self._store(self.ids.get(cid))
                if (row is not None and row.live) or cid in self._signing:
                    raise ExchangeTimeout(
                        f"{cid} was sent before; its outcome is settled by looking it up, not by a resend"
                    )
            rows: list[IdRow] = []
            try:
                for cid in cids:
                    rows.append(
                        await self._store(self.ids.allocate(cid, set(self._outside_ids), self._now()))
                    )
            except NoFreeUserOrderId as exc:
                for row in rows:
                    await self._release(row.client_order_id)
                raise OrderRejected(f"{cids[len(rows)]}: {exc}") from exc
            self._signing.update(cids)
            return rows

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        del conditional  # one order space on Drift
        order_id = await self._order_id(client_order_id)
        prepared = await self.client.prepare_cancel([order_id])
        result = await self.client.send(str(prepared["signature"]))
        status = result.get("status")
        if status == p.PENDING:
            raise ExchangeTimeout(f"cancel of {client_order_id} (order {order_id}) not confirmed yet")
        if status != p.CONFIRMED:
            raise ExchangeUnavailable(f"cancel of {client_order_id} {status}: {result.get('error')}")
        return await self._lookup(client_order_id, order_id)

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        del conditional  # one order space on Drift
        report = await self._lookup(client_order_id, await self._order_id(client_order_id))
        if report.symbol != symbol:
            raise OrderNotFound(f"{client_order_id} is an order in {report.symbol}, not in {symbol}")
        return report

    async def fetch_open_orders(self) -> list[OrderReport]:
        user = await self.client.get("/v1/user")
        await self._load()
        # The ids to avoid are those of the trader's orders open now (reading them below adds
        # each back), not of every order ever seen: over a long run the trader's own bot uses
        # all 255, and warden would have none left for a stop. An id taken after this read is
        # refused by Drift at the send (ID_IN_USE), avoided from then on, and another picked.
        self._outside_ids.clear()
        reports = [await self._report(row) for row in user.get("orders", [])]
        open_ids = {int(r.exchange_order_id) for r in reports}
        await self._sweep(open_ids)
        return reports

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        """Drift has no per-market leverage or margin-mode switch: a user's perp positions share
        cross margin (leverage is only the size against the collateral)."""
        return SymbolConfig(leverage=None, margin_mode=MarginMode.CROSS)

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        if config.leverage is not None or config.margin_mode not in (None, MarginMode.CROSS):
            raise OrderRejected(
                f"{symbol}: Drift has no per-market leverage or isolated margin; unset leverage and "
                "margin_mode for the drift exchange"
            )

    async def fetch_positions(self) -> list[PositionReport]:
        user = await self.client.get("/v1/user")
        await self._load()
        found = []
        for row in user.get("positions", []):
            base = int(row["base_asset_amount"])
            if base == 0:
                continue
            side = Side.LONG if base > 0 else Side.SHORT
            entry = Decimal(int(row["entry_price"])) / PRICE
            found.append(
                PositionReport(await self.symbol_at(int(row["market_index"])), side, abs(base) / BASE, entry)
            )
        return found

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        market = await self.market(symbol)
        query = f"/v1/fills?market_index={market.index}"
        if since is not None:
            query += f"&since={int(since.timestamp() * 1000)}"
        data = await self.client.get(query)
        return [await self.fill(row) for row in data.get("fills", [])]

    def stream(self) -> AsyncIterator[StreamEvent]:
        from warden.adapters.drift.stream import DriftStream

        stream = DriftStream(self)
        self._streams.append(stream)
        return stream.events()

    async def close(self) -> None:
        for stream in self._streams:
            await stream.stop()
        self._streams.clear()
        await self.client.close()
        await self.ids.close()
        if self.sidecar is not None:
            await self.sidecar.stop()
        if self._on_close is not None:
            result = self._on_close()
            if asyncio.iscoroutine(result):
                await result

    # ----- translation ---------------------------------------------------------------------

    def _wire(self, request: OrderRequest, market: PerpMarket) -> p.Json:
        cid = request.client_order_id
        base = units(request.qty, BASE)
        if base is None or base <= 0 or request.qty % market.instrument.lot_size:
            raise OrderRejected(
                f"{cid}: qty {request.qty} is not a whole number of {market.instrument.lot_size} steps"
            )
        wire: p.Json = {
            "market_index": market.index,
            "order_type": p.MARKET,
            "direction": p.LONG if request.side is OrderSide.BUY else p.SHORT,
            "base_asset_amount": str(base),
            "reduce_only": request.reduce_only,
        }
        if request.type.conditional:
            trigger = request.trigger_price
            if trigger is None or trigger <= 0:
                raise OrderRejected(f"{cid}: a trigger order needs a positive trigger price")
            price = units(trigger, PRICE)
            if price is None or trigger % market.instrument.tick_size:
                raise OrderRejected(
                    f"{cid}: trigger {trigger} is not on the tick {market.instrument.tick_size}"
                )
            wire |= {
                "order_type": p.TRIGGER_MARKET,
                "trigger_price": str(price),
                "trigger_condition": trigger_condition(request.type, request.side),
            }
        return wire

    async def _report(self, row: p.Json, client_order_id: str | None = None) -> OrderReport:
        order_id = int(row["order_id"])
        cid = client_order_id or await self.owner(order_id, int(row.get("user_order_id", 0)))
        filled = Decimal(int(row["base_asset_amount_filled"])) / BASE
        quote = Decimal(int(row["quote_asset_amount_filled"])) / QUOTE
        trigger = int(row.get("trigger_price") or 0)
        status = _STATUS.get(str(row["status"]))
        if status is None:
            raise ExchangeUnavailable(f"order {order_id}: unknown status {row['status']!r}")
        return OrderReport(
            client_order_id=cid,
            exchange_order_id=str(order_id),
            symbol=await self.symbol_at(int(row["market_index"])),
            side=OrderSide.BUY if row["direction"] == p.LONG else OrderSide.SELL,
            type=order_type_of(row),
            qty=Decimal(int(row["base_asset_amount"])) / BASE,
            status=status,
            filled_qty=filled,
            avg_price=(quote / filled).quantize(Decimal("1e-9")).normalize() if filled else None,
            trigger_price=Decimal(trigger) / PRICE if trigger else None,
            reduce_only=bool(row["reduce_only"]),
        )

    async def fill(self, row: p.Json) -> FillReport:
        order_id = int(row["order_id"])
        cid = await self.owner(order_id, int(row.get("user_order_id", 0)))
        base = Decimal(int(row["base_asset_amount"])) / BASE
        quote = Decimal(int(row["quote_asset_amount"])) / QUOTE
        await self._load()
        return FillReport(
            trade_id=TradeId(f"F{row['fill_id']}"),
            client_order_id=cid,
            exchange_order_id=str(order_id),
            symbol=await self.symbol_at(int(row["market_index"])),
            side=OrderSide.BUY if row["direction"] == p.LONG else OrderSide.SELL,
            qty=base,
            price=(quote / base).quantize(Decimal("1e-9")).normalize(),
            fee=Decimal(int(row["fee"])) / QUOTE,
            at=datetime.fromtimestamp(int(row["ts"]) / 1000, UTC),
            liquidation=bool(row.get("liquidation", False)),
        )

    # ----- ids -------------------------------------------------------------------------------

    async def owner(self, order_id: int, user_order_id: int) -> str:
        """The client id of Drift order `order_id`: warden's (by order id, or by a live user order
        id whose transaction is confirmed and has not named its order yet), else `drift-<id>`."""
        known = self._owners.get(order_id)
        if known is not None:
            return known
        row = await self._store(self.ids.by_order_id(order_id))
        if row is None and user_order_id:
            row = await self._claim(order_id, user_order_id)
        if row is None:
            if user_order_id:
                self._outside_ids.add(user_order_id)
            return f"{OUTSIDE_PREFIX}{order_id}"
        self._owners[order_id] = row.client_order_id
        return row.client_order_id

    async def _claim(self, order_id: int, user_order_id: int) -> IdRow | None:
        """A live row holding this u8 whose order id is not known yet, if this order is what its
        transaction placed. An open order holding the u8 does not prove that: while our
        transaction has not landed, Drift gives the u8 to any other order (the trader's own bot),
        so the transaction's own record decides. ExchangeUnavailable while it is still unsettled
        (whose order this is cannot be told yet: ask again later)."""
        for row in await self._store(self.ids.live()):
            if row.user_order_id == user_order_id and row.order_id is None and row.tx_signature:
                status = await self.client.tx_status(row.tx_signature, row.last_valid_block_height)
                landed = await self._landed(row, status)
                if landed == order_id:
                    return IdRow(row.client_order_id, row.user_order_id, True, order_id, row.tx_signature)
                state = status.get("status")
                # Confirmed naming no order at all: the RPC has not served the transaction's logs
                # yet (a place transaction places at least one order), so whose order it is is
                # not known yet either.
                unread = state == p.CONFIRMED and not status.get("orders")
                if landed is None and (unread or state not in (p.FAILED, p.EXPIRED, p.CONFIRMED)):
                    raise ExchangeUnavailable(
                        f"order {order_id} holds u8 {user_order_id} of {row.client_order_id}, whose "
                        f"transaction {row.tx_signature[:16]}... is not settled: whose order it is is "
                        "not known yet"
                    )
        return None

    async def _order_id(self, client_order_id: str) -> int:
        """Drift's order id for our client id, settling its transaction if need be.

        OrderNotFound: it never reached the account (never sent, or its transaction failed or
        expired). ExchangeUnavailable: its transaction may still land (ask again later).
        """
        row = await self._store(self.ids.get(client_order_id))
        if row is None:
            raise OrderNotFound(f"{client_order_id} was never sent to Drift by this database")
        if row.order_id is not None:
            return row.order_id
        if row.tx_signature is None:
            if not await self._release_unchanged(row):
                raise ExchangeUnavailable(
                    f"{client_order_id} is being sent; its transaction is not signed yet"
                )
            raise OrderNotFound(f"{client_order_id} was never sent (no transaction signed)")
        status = await self.client.tx_status(row.tx_signature, row.last_valid_block_height)
        found = await self._landed(row, status)
        if found is not None:
            return found
        state = status.get("status")
        if state in (p.FAILED, p.EXPIRED):
            if not await self._release_unchanged(row):
                raise ExchangeUnavailable(f"{client_order_id} is being sent again; ask again")
            raise OrderNotFound(f"{client_order_id}: its transaction {state} without placing it")
        raise ExchangeUnavailable(
            f"{client_order_id}: transaction {row.tx_signature[:16]}... not settled; it may land until "
            f"block height {row.last_valid_block_height}"
        )

    async def _landed(self, row: IdRow, status: p.Json) -> int | None:
        if status.get("status") != p.CONFIRMED:
            return None
        for order in status.get("orders") or []:
            if int(order.get("user_order_id", -1)) == row.user_order_id:
                order_id = int(order["order_id"])
                await self._store(self.ids.record_order(row.client_order_id, order_id))
                self._owners[order_id] = row.client_order_id
                return order_id
        return None

    async def _lookup(self, client_order_id: str, order_id: int) -> OrderReport:
        data = await self.client.get(f"/v1/orders/{order_id}")
        await self._load()
        report = await self._report(data["order"], client_order_id)
        if report.status.terminal:
            await self._release(client_order_id)
        return report

    async def _placed(self, row: IdRow, request: OrderRequest, result: p.Json, height: int) -> OrderReport:
        cid = request.client_order_id
        state = result.get("status")
        if state == p.CONFIRMED:
            order_id = await self._landed(row, result)
            if order_id is None:
                raise ExchangeTimeout(f"{cid}: transaction confirmed without naming its order")
            orders = {int(o["order_id"]): o for o in result.get("orders") or []}
            await self._load()
            return await self._report(orders[order_id], cid)
        if state in (p.FAILED, p.EXPIRED):
            await self._release(cid)
            raise OrderRejected(f"{cid}: transaction {state}: {result.get('error', '')}")
        raise ExchangeTimeout(f"{cid}: transaction not confirmed; it may land until block height {height}")

    async def _earlier(self, row: IdRow, request: OrderRequest) -> OrderReport | None:
        """This client id was sent before: the earlier order if it landed; None if it did not and
        cannot (then a new transaction is safe); ExchangeTimeout while it still could."""
        assert row.tx_signature is not None
        cid = request.client_order_id
        status = await self.client.tx_status(row.tx_signature, row.last_valid_block_height)
        if status.get("status") == p.PENDING:
            with contextlib.suppress(NotSigned):  # the same signed bytes again: harmless
                status = await self.client.send(row.tx_signature)
        if status.get("status") == p.CONFIRMED:
            order_id = await self._landed(row, status)
            if order_id is not None:
                earlier = await self._lookup(cid, order_id)
                if not _same_order(earlier, request):  # the id of another order: as a CEX refuses it
                    raise DuplicateOrder(
                        f"{cid} is Drift order {order_id} already ({earlier.type.value} {earlier.side.value} "
                        f"{earlier.qty} trigger {earlier.trigger_price}); nothing new was sent"
                    )
                return earlier  # the same order sent again: the one that landed
        if status.get("status") in (p.FAILED, p.EXPIRED):
            await self._release(cid)
            return None
        raise ExchangeTimeout(
            f"{cid}: an earlier transaction may still land (until block height {row.last_valid_block_height})"
        )

    async def _sweep(self, open_ids: set[int]) -> None:
        """Release the ids of our orders that are final, and settle transactions left unknown."""
        for row in await self._store(self.ids.live()):
            if row.order_id is not None and row.order_id not in open_ids:
                with contextlib.suppress(ExchangeError):
                    await self._lookup(row.client_order_id, row.order_id)
            elif row.order_id is None:
                with contextlib.suppress(ExchangeError):
                    await self._order_id(row.client_order_id)

    async def _release_unchanged(self, row: IdRow) -> bool:
        """Release `row`'s client id if the table still holds that very row and no call is sending
        it: a lookup that read the row before the client id was sent again must not free the u8
        of the new transaction (its answer is about the old one). False: left alone."""
        cid = row.client_order_id
        async with self._allocating:  # the id table only: no RPC call under it
            if cid in self._signing or await self._store(self.ids.get(cid)) != row:
                return False
            await self._release(cid)
            return True

    async def _release(self, client_order_id: str) -> None:
        with contextlib.suppress(ExchangeUnavailable):  # it stays held: safe, and swept later
            await self._store(self.ids.release(client_order_id, self._now()))

    async def _store(self, call: Awaitable[T]) -> T:
        """A call on the id table; a database failure is "nothing sent" (ExchangeUnavailable)."""
        try:
            return await call
        except StoreError as exc:
            raise ExchangeUnavailable(f"the Drift id table is unavailable: {exc}") from exc


def _same_order(report: OrderReport, request: OrderRequest) -> bool:
    """Whether a landed order is the one `request` asks for (a resend after an unknown outcome)."""
    return (
        report.symbol,
        report.side,
        report.type,
        report.qty,
        report.trigger_price,
        report.reduce_only,
    ) == (
        request.symbol,
        request.side,
        request.type,
        request.qty,
        request.trigger_price,
        request.reduce_only,
    )
