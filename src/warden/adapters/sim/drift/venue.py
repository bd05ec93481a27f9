"""`DriftVenue`: the Drift sidecar protocol (v1) served by the shared matching core, with Drift's rules.

What makes it Drift rather than Binance (each is a rule of the Drift program or of Solana):

- user_order_id (u8, 1-255) is refused while another open order holds it (0: no id, never
  checked); a user has 32 order slots and 8 perp positions (a market with a position or an
  open order takes one);
- every market order is acknowledged first (it rests in the user account) and filled by an
  auction `auction_delay` seconds later, at the oracle plus (buys) or minus (sells) `spread`;
- trigger orders (trigger_market, above / below) fire on the ORACLE price (the core's mark):
  a keeper triggers them `keeper_delay` after the oracle crosses, then the auction fills them;
  an order whose trigger the oracle has already passed is accepted (Drift does not refuse it)
  and fires after the keeper delay; reduce-only is checked at fill time, not at placement;
- orders reach the account only in transactions: `prepare` signs one (its signature and the
  last block height at which it may land are known before anything is sent), `send` sends it,
  and a transaction whose outcome is unknown stays `pending` until it is confirmed, failed, or
  its blockhash has expired (`expired`: it can never land). Sending the same signed transaction
  twice is harmless (a signature lands at most once); all orders of a transaction land or none;
- cancelling an order id that is not open succeeds and does nothing (Drift logs "could not
  find order id").

Fault knobs (POST /sim/faults): the shared ones (rest_latency, stream_latency, drop_rate,
duplicate_rate, reorder_rate, fail_queries) and reject_if / unavailable_if /
timeout_after_execution_if / expire_if / hold_send_if (a send that hangs at the RPC: not
answered until the knob is changed so it no longer matches), each true, null or a glob on the ORDER LABEL
`<order_type>-<direction>-<condition|none>-<ro|open>-u<user_order_id>-m<market_index>`
(e.g. "trigger_market-short-below-ro-*" is a long's stop), or `cancel-o<order_id>` for a
cancel; plus keeper_delay, auction_delay (alias fill_delay), spread and blockhash_ttl. The
simulator never sees warden's client order ids: Drift orders do not carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aiohttp import web

from warden.adapters.drift import protocol as p
from warden.adapters.sim.core import EXTERNAL_PREFIX
from warden.adapters.sim.drift.markets import DriftMarket
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.rules import SimRejection, validate
from warden.adapters.sim.server.venue import SimVenue
from warden.domain.orders import OrderStatus
from warden.domain.reports import FillReport, MarkPrice, OrderReport, OrderRequest, PositionReport, StreamGap
from warden.domain.values import ClientOrderId, OrderSide, OrderType, Symbol
from warden.ports import ExchangeUnavailable

SLOT_SECONDS = 0.4
GENESIS = datetime(2024, 1, 1, tzinfo=UTC)
MARK_PREMIUM = Decimal("0.0002")
"""The simulated mark (the AMM's price) sits this fraction above the oracle: triggers use the oracle."""
USER_ID_PREFIX = "uoid-"
ANONYMOUS_PREFIX = "u0-"

Label = Callable[[str], bool]


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.extra = code, message, extra

    def response(self) -> web.Response:
        return web.json_response(
            p.error_body(self.code, self.message, **self.extra), status=p.HTTP_STATUS[self.code]
        )


def _always(label: str) -> bool:
    return True


@dataclass(slots=True)
class DriftFaults:
    """Drift's timings and the transaction-level faults (predicates on order labels)."""

    keeper_delay: float = 0.2
    auction_delay: float = 0.1
    spread: float = 0.0005
    blockhash_ttl: float = 60.0
    reject_if: Label | None = None
    unavailable_if: Label | None = None
    timeout_after_execution_if: Label | None = None
    expire_if: Label | None = None
    hold_send_if: Label | None = None
    specs: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class SimTx:
    signature: str
    kind: str  # "place" | "cancel"
    requests: list[OrderRequest]
    labels: list[str]
    order_ids: list[str]  # cancel: the order ids to cancel; place: the orders it created
    last_valid_block_height: int
    state: str = "prepared"  # prepared | dropped | confirmed | failed
    error: str | None = None
    slot: int | None = None


def user_order_id_of(client_id: str) -> int:
    """The u8 a core client id stands for (0 for outside orders, which carry none)."""
    if client_id.startswith(USER_ID_PREFIX):
        return int(client_id[len(USER_ID_PREFIX) :])
    return 0


def condition_of(order_type: OrderType, side: OrderSide) -> str:
    """Drift's trigger condition for a warden conditional order (stops fire against the position)."""
    if order_type is OrderType.MARKET:
        return p.ABOVE  # Drift's default; meaningless for a market order
    stop = order_type is OrderType.STOP_MARKET
    sell = side is OrderSide.SELL
    return p.BELOW if stop == sell else p.ABOVE


def order_type_of(wire_type: str, direction: str, condition: str) -> OrderType:
    if wire_type == p.MARKET:
        return OrderType.MARKET
    sell = direction == p.SHORT
    stop = (condition == p.BELOW) == sell
    return OrderType.STOP_MARKET if stop else OrderType.TAKE_PROFIT_MARKET


def scaled(value: Decimal, precision: int) -> str:
    return str(int((value * precision).to_integral_value(rounding=ROUND_HALF_UP)))


class DriftVenue(SimVenue):
    """The simulated Drift account behind the sidecar protocol (and the shared /sim/ surface)."""

    def __init__(
        self,
        sim: SimulatedExchange,
        markets: list[DriftMarket],
        *,
        now: Callable[[], datetime],
        faults: DriftFaults | None = None,
    ) -> None:
        super().__init__(sim, api_key="", api_secret="", now=now)
        self.markets = {m.market_index: m for m in markets}
        self.index_of = {m.symbol: m.market_index for m in markets}
        self.drift = faults or DriftFaults()
        self.txs: dict[str, SimTx] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.authority = "Sim" + secrets.token_hex(16)
        self.held = 0
        """Sends hanging at the RPC now (hold_send_if)."""
        self._knobs_changed = asyncio.Event()
        self.apply_knobs()

    # ----- knobs ----------------------------------------------------------------------

    def apply_knobs(self) -> None:
        """Put Drift's timings into the shared core and adapter (called after every change)."""
        core, knobs = self.core, self.drift
        core.immediate_triggers = True
        core.trigger_delay = timedelta(seconds=knobs.keeper_delay + knobs.auction_delay)
        core.fill_spread = Decimal(repr(knobs.spread))
        faults = self.sim.faults  # the transaction-level faults are the venue's own (labels)
        faults.reject_if = faults.unavailable_if = faults.timeout_after_execution_if = None
        faults.ack_only_if = None
        self._knobs_changed.set()  # held sends look at the knobs again
        self._knobs_changed = asyncio.Event()

    # ----- symbols and shapes ----------------------------------------------------------

    def find_symbol(self, raw: str) -> Symbol | None:
        """The shared /sim/ control routes name markets the way this venue does (None if unknown)."""
        try:
            return self.symbol(raw)
        except ProtocolError:
            return None

    def symbol(self, raw: str) -> Symbol:
        """`SOL-PERP`, `sol`, `SOL/USDT:USDT` or a market index."""
        text = raw.strip().upper()
        if text.isdigit() and int(text) in self.markets:
            return self.markets[int(text)].symbol
        base = text.partition("/")[0].removesuffix("-PERP")
        for quote in ("USDT", "USDC"):  # a Binance-style id (SOLUSDT) names the same market
            if base.endswith(quote) and base != quote:
                base = base.removesuffix(quote)
        symbol = Symbol(f"{base}-PERP")
        if symbol not in self.index_of:
            raise ProtocolError(p.NOT_FOUND, f"no perp market {raw!r}")
        return symbol

    def perp(self, index: object) -> DriftMarket:
        if not isinstance(index, int) or isinstance(index, bool) or index not in self.markets:
            raise ProtocolError(p.NOT_FOUND, f"no perp market with index {index!r}")
        return self.markets[index]

    def slot(self, at: datetime | None = None) -> int:
        return int(((at or self.now()) - GENESIS).total_seconds() / SLOT_SECONDS)

    def mark_of(self, symbol: Symbol, oracle: Decimal) -> Decimal:
        return self.core.instruments[symbol].round_price(oracle * (1 + MARK_PREMIUM))

    def order_json(self, order: OrderReport) -> p.Json:
        triggered = order.exchange_order_id in self.core.triggered()
        condition = condition_of(order.type, order.side)
        if triggered:
            condition = p.TRIGGERED_ABOVE if condition == p.ABOVE else p.TRIGGERED_BELOW
        quote = order.filled_qty * (order.avg_price or Decimal(0))
        return {
            "order_id": int(order.exchange_order_id),
            "user_order_id": user_order_id_of(order.client_order_id),
            "market_index": self.index_of[order.symbol],
            "order_type": p.MARKET if order.type is OrderType.MARKET else p.TRIGGER_MARKET,
            "direction": p.LONG if order.side is OrderSide.BUY else p.SHORT,
            "base_asset_amount": scaled(order.qty, p.BASE_PRECISION),
            "base_asset_amount_filled": scaled(order.filled_qty, p.BASE_PRECISION),
            "quote_asset_amount_filled": scaled(quote, p.QUOTE_PRECISION),
            "trigger_price": scaled(order.trigger_price or Decimal(0), p.PRICE_PRECISION),
            "trigger_condition": condition,
            "reduce_only": order.reduce_only,
            "status": {OrderStatus.OPEN: p.OPEN, OrderStatus.FILLED: p.FILLED}.get(order.status, p.CANCELED),
            "slot": self.slot(order.at),
        }

    def fill_json(self, fill: FillReport) -> p.Json:
        order = self.core.order_by_id(fill.exchange_order_id)
        return {
            "fill_id": f"{self.index_of[fill.symbol]}-{fill.trade_id.removeprefix('T')}",
            "order_id": int(fill.exchange_order_id),
            "user_order_id": user_order_id_of(order.client_order_id) if order else 0,
            "market_index": self.index_of[fill.symbol],
            "direction": p.LONG if fill.side is OrderSide.BUY else p.SHORT,
            "base_asset_amount": scaled(fill.qty, p.BASE_PRECISION),
            "quote_asset_amount": scaled(fill.qty * fill.price, p.QUOTE_PRECISION),
            "fee": scaled(fill.fee, p.QUOTE_PRECISION),
            "ts": int(fill.at.timestamp() * 1000),
            "signature": "",
            "liquidation": fill.liquidation,
        }

    def position_json(self, symbol: Symbol) -> p.Json:
        position = self.core.position(symbol)
        return {
            "market_index": self.index_of[symbol],
            "base_asset_amount": scaled(position.qty, p.BASE_PRECISION),
            "entry_price": scaled(position.entry_price, p.PRICE_PRECISION),
        }

    def price_json(self, symbol: Symbol, oracle: Decimal) -> p.Json:
        return {
            "market_index": self.index_of[symbol],
            "oracle_price": scaled(oracle, p.PRICE_PRECISION),
            "mark_price": scaled(self.mark_of(symbol, oracle), p.PRICE_PRECISION),
        }

    # ----- reads ------------------------------------------------------------------------

    def user(self) -> p.Json:
        core = self.core
        positions = [self.position_json(s) for s in sorted(core.instruments, key=self.index_of.__getitem__)]
        return {
            "authority": self.authority,
            "sub_account": 0,
            "slot": self.slot(),
            "positions": [x for x in positions if x["base_asset_amount"] != "0"],
            "orders": [self.order_json(o) for o in core.open_orders()],
        }

    def order(self, order_id: int) -> p.Json:
        found = self.core.order_by_id(str(order_id))
        if found is None:
            raise ProtocolError(p.NOT_FOUND, f"no order {order_id} in this user's history")
        return self.order_json(found)

    def fills(self, market_index: int, since_ms: int | None) -> list[p.Json]:
        symbol = self.perp(market_index).symbol
        since = None if since_ms is None else datetime.fromtimestamp(since_ms / 1000, UTC)
        return [self.fill_json(f) for f in self.core.fills(symbol, since)]

    # ----- transactions -------------------------------------------------------------------

    def _new_tx(self, kind: str, requests: list[OrderRequest], labels: list[str], ids: list[str]) -> SimTx:
        height = self.slot()
        valid = height + max(1, int(self.drift.blockhash_ttl / SLOT_SECONDS))
        tx = SimTx(secrets.token_hex(32), kind, requests, labels, ids, valid)
        self.txs[tx.signature] = tx
        return tx

    def prepare_place(self, orders: list[Any]) -> SimTx:
        """Sign a place_orders transaction (nothing is sent): parse and shape-check every order."""
        if not orders or len(orders) > p.MAX_OPEN_ORDERS:
            raise ProtocolError(p.BAD_REQUEST, "orders: between 1 and 32 orders per transaction")
        requests, labels = [], []
        for raw in orders:
            request, label = self._request(raw)
            requests.append(request)
            labels.append(label)
        return self._new_tx("place", requests, labels, [])

    def prepare_cancel(self, order_ids: list[Any]) -> SimTx:
        if not order_ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in order_ids):
            raise ProtocolError(p.BAD_REQUEST, "order_ids: a non-empty list of integers")
        return self._new_tx("cancel", [], [f"cancel-o{i}" for i in order_ids], [str(i) for i in order_ids])

    def _request(self, raw: Any) -> tuple[OrderRequest, str]:
        if not isinstance(raw, dict):
            raise ProtocolError(p.BAD_REQUEST, "an order must be an object")
        market = self.perp(raw.get("market_index"))
        wire_type, direction = raw.get("order_type"), raw.get("direction")
        if wire_type not in (p.MARKET, p.TRIGGER_MARKET):
            raise ProtocolError(p.BAD_REQUEST, f"order_type: market or trigger_market, not {wire_type!r}")
        if direction not in (p.LONG, p.SHORT):
            raise ProtocolError(p.BAD_REQUEST, f"direction: long or short, not {direction!r}")
        uoid = raw.get("user_order_id", 0)
        if not isinstance(uoid, int) or isinstance(uoid, bool) or not 0 <= uoid <= p.MAX_USER_ORDER_ID:
            raise ProtocolError(p.BAD_REQUEST, f"user_order_id: an integer 0-255, not {uoid!r}")
        reduce_only = raw.get("reduce_only", False)
        if not isinstance(reduce_only, bool):
            raise ProtocolError(p.BAD_REQUEST, "reduce_only: true or false")
        base = _integer(raw, "base_asset_amount")
        condition = raw.get("trigger_condition", p.ABOVE)
        trigger: Decimal | None = None
        if wire_type == p.TRIGGER_MARKET:
            if condition not in (p.ABOVE, p.BELOW):
                raise ProtocolError(p.REJECTED, "InvalidTriggerOrderCondition: must be above or below")
            trigger_units = _integer(raw, "trigger_price")
            if trigger_units <= 0:
                raise ProtocolError(p.REJECTED, "InvalidOrderTrigger: trigger_price == 0")
            tick = market.market.instrument.tick_size
            trigger = (Decimal(trigger_units) / p.PRICE_PRECISION / tick).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            ) * tick  # Drift standardizes the trigger to the tick
        elif _integer(raw, "trigger_price", required=False) > 0:
            raise ProtocolError(p.REJECTED, "InvalidOrderTrigger: market should not have trigger price")
        order_type = order_type_of(wire_type, direction, condition)
        side = OrderSide.BUY if direction == p.LONG else OrderSide.SELL
        cid = f"{USER_ID_PREFIX}{uoid}" if uoid else f"{ANONYMOUS_PREFIX}{secrets.token_hex(6)}"
        qty = Decimal(base) / p.BASE_PRECISION
        request = OrderRequest(ClientOrderId(cid), market.symbol, side, order_type, qty, trigger, reduce_only)
        label = (
            f"{wire_type}-{direction}-{condition if trigger is not None else 'none'}-"
            f"{'ro' if reduce_only else 'open'}-u{uoid}-m{market.market_index}"
        )
        return request, label

    def _matches(self, predicate: Label | None, tx: SimTx) -> bool:
        return predicate is not None and any(predicate(label) for label in tx.labels)

    def status(self, tx: SimTx) -> p.Json:
        state = tx.state
        if state in ("prepared", "dropped"):
            state = p.EXPIRED if self.slot() > tx.last_valid_block_height else p.PENDING
        shown: p.Json = {"signature": tx.signature, "status": state, "slot": tx.slot}
        if tx.error is not None:
            shown["error"] = tx.error
        if tx.state == "confirmed":
            found = (self.core.order_by_id(i) for i in tx.order_ids)
            shown["orders"] = [self.order_json(o) for o in found if o is not None]
        return shown

    async def gate(self, *, query: bool = True) -> None:
        """Latency and outage faults of one call (the shared knobs), as the sidecar protocol says them."""
        try:
            await self.sim.gate(query=query)
        except ExchangeUnavailable as exc:
            raise ProtocolError(p.UNAVAILABLE, "simulated RPC outage") from exc

    async def send(self, signature: str) -> p.Json:
        """Send a prepared transaction (again): confirmed, failed, or pending (outcome unknown)."""
        tx = self.txs.get(signature)
        if tx is None:
            raise ProtocolError(p.NOT_FOUND, f"no prepared transaction {signature}")
        await self.gate(query=False)
        while self._matches(self.drift.hold_send_if, tx):
            self.held += 1
            try:
                await self._knobs_changed.wait()
            finally:
                self.held -= 1
        if tx.state != "prepared" or self.slot() > tx.last_valid_block_height:
            return self.status(tx)  # landed, failed, dropped or expired: sending again changes nothing
        knobs = self.drift
        if self._matches(knobs.unavailable_if, tx):
            raise ProtocolError(p.UNAVAILABLE, "simulated RPC outage: the transaction was not sent")
        if self._matches(knobs.expire_if, tx):
            tx.state = "dropped"  # never lands: pending until its blockhash expires
            return self.status(tx)
        if self._matches(knobs.reject_if, tx):
            tx.state, tx.error = "failed", "simulated program error"
            tx.slot = self.slot()
            return self.status(tx)
        try:
            self._execute(tx)
        except SimRejection as exc:
            tx.state, tx.error, tx.slot = "failed", exc.message, self.slot()
            return self.status(tx)
        tx.state, tx.slot = "confirmed", self.slot()
        if self._matches(knobs.timeout_after_execution_if, tx):
            return {"signature": tx.signature, "status": p.PENDING, "slot": None}
        return self.status(tx)

    def tx_status(self, signature: str, last_valid_block_height: int | None) -> p.Json:
        tx = self.txs.get(signature)
        if tx is None:  # never seen here (e.g. signed by a sidecar that died): it never landed
            if last_valid_block_height is None:
                raise ProtocolError(p.NOT_FOUND, f"unknown transaction {signature}")
            state = p.EXPIRED if self.slot() > last_valid_block_height else p.PENDING
            return {"signature": signature, "status": state, "slot": None}
        return self.status(tx)

    def _execute(self, tx: SimTx) -> None:
        """Apply a transaction atomically: every order is checked before any is placed."""
        if tx.kind == "cancel":
            for order_id in tx.order_ids:
                order = self.core.order_by_id(order_id)
                if order is not None and order.status is OrderStatus.OPEN:
                    self.sim.cancel_external(order.client_order_id)
            return
        self._check_drift_rules(tx.requests)
        core = self.core
        for request in tx.requests:
            symbol = request.symbol
            validate(
                request,
                core.instruments[symbol],
                core.mark(symbol),
                core.position(symbol),
                close_position=False,
                immediate_ok=True,
            )
        created = []
        for request in tx.requests:
            created.append(self._place(request).exchange_order_id)
        tx.order_ids = created

    def _place(self, request: OrderRequest) -> OrderReport:
        outcome = self.core.place(
            request,
            self.now(),
            fill_at=self.now() + timedelta(seconds=self.drift.auction_delay)
            if request.type is OrderType.MARKET
            else None,
        )
        self.sim.publish(outcome)
        return outcome.report

    def _check_drift_rules(self, requests: list[OrderRequest]) -> None:
        core = self.core
        open_orders = core.open_orders()
        held = {user_order_id_of(o.client_order_id) for o in open_orders} - {0}
        for request in requests:
            uoid = user_order_id_of(request.client_order_id)
            if uoid and uoid in held:
                raise SimRejection(6000, f"UserOrderIdAlreadyInUse: user_order_id is already in use {uoid}")
            held.add(uoid)
            if request.qty <= 0 or request.qty % core.instruments[request.symbol].lot_size:
                raise SimRejection(6001, f"InvalidOrderNotStepSizeMultiple: {request.qty}")
        if len(open_orders) + len(requests) > p.MAX_OPEN_ORDERS:
            raise SimRejection(6002, "MaxNumberOfOrders")
        in_use = {o.symbol for o in open_orders} | {s for s in core.instruments if not core.position(s).flat}
        wanted = in_use | {r.symbol for r in requests}
        if len(wanted) > p.MAX_PERP_POSITIONS:
            raise SimRejection(6003, "MaxNumberOfPositions")

    # ----- the event websocket ------------------------------------------------------------

    async def close_private(self) -> int:
        """Drop every event socket (clients see a disconnect; events meanwhile are lost)."""
        sockets = list(self.sockets)
        self.sockets.clear()
        for ws in sockets:
            await ws.close()
        return len(sockets) + await super().close_private()

    async def broadcast(self, messages: list[p.Json]) -> None:
        for ws in list(self.sockets):
            for message in messages:
                if ws.closed:
                    break
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(message)

    def messages(self, event: object) -> list[p.Json]:
        if isinstance(event, OrderReport):
            return [p.body(type="order", order=self.order_json(event))]
        if isinstance(event, FillReport):
            return [p.body(type="fill", fill=self.fill_json(event))]
        if isinstance(event, PositionReport):
            return [p.body(type="position", position=self.position_json(event.symbol))]
        if isinstance(event, MarkPrice):
            return [
                p.body(type="price", slot=self.slot(event.at), **self.price_json(event.symbol, event.price))
            ]
        return []

    async def pump(self) -> None:
        while not self.sim.closed:
            async for event in self.sim.stream():
                if isinstance(event, StreamGap):
                    await self.close_private()
                    continue
                await self.broadcast(self.messages(event))

    async def push_marks(self) -> None:  # prices go out as they move (see `messages`)
        return


def _integer(raw: dict[str, Any], name: str, *, required: bool = True) -> int:
    value = raw.get(name)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError(p.BAD_REQUEST, f"{name}: an integer as a decimal string, not {value!r}")
    try:
        number = int(value)
    except ValueError as exc:
        raise ProtocolError(p.BAD_REQUEST, f"{name}: an integer as a decimal string, not {value!r}") from exc
    if number < 0 or number >= 2**64:
        raise ProtocolError(p.BAD_REQUEST, f"{name}: out of range ({value})")
    return number


def glob(spec: object) -> Label | None:
    """A label predicate from its JSON form: true, false/null, or a glob."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return _always
    if isinstance(spec, str):
        pattern = spec
        return lambda label: fnmatch.fnmatchcase(label, pattern)
    raise ProtocolError(p.BAD_REQUEST, f"a predicate knob takes true, false, null or a glob, not {spec!r}")


__all__ = ["EXTERNAL_PREFIX", "DriftFaults", "DriftVenue", "ProtocolError", "SimTx", "glob"]
