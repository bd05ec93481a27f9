"""The simulated exchange's matching core: pure, synchronous, deterministic given a seed.

One account, one-way positions, fills at the mark price with a taker fee. Conditional
orders (STOP_MARKET, TAKE_PROFIT_MARKET) rest in a per-symbol `TriggerBook` and fire on
the mark. Every mutating call returns the stream events it caused, in order:

    market order      OrderReport(OPEN), FillReport, OrderReport(FILLED), PositionReport
    acknowledged      OrderReport(OPEN) ... on fill_acknowledged: FillReport, OrderReport(FILLED),
      market order    PositionReport (or OrderReport(CANCELED) if reduce-only and nothing to reduce)
    conditional       OrderReport(OPEN) ... on trigger: FillReport, OrderReport(FILLED),
                      PositionReport; or OrderReport(CANCELED) if a reduce-only order
                      finds nothing to reduce (Binance "expired")
    cancel            OrderReport(CANCELED)
    set_mark          MarkPrice, then whatever the triggered orders caused

Refused orders raise `SimRejection` (nothing changes, no events), like a Binance HTTP error.

After every change the core re-evaluates, per symbol, whether the position is covered by
resting reduce-only stops, and `exposure(now)` reports how long each position has gone
uncovered (see `exposure`).

Each symbol has a leverage and a margin mode (Binance's defaults: 20x, cross). An isolated
position holds entry x size / leverage of margin and is liquidated when the mark reaches its
liquidation price (`liquidation_price`): a reduce-only market order `autoclose-N` closes it
at the mark, as Binance's liquidation engine does. The margin mode cannot change while the
symbol has a position or open orders (Binance -4048 / -4047).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from warden.adapters.sim.book import TriggerBook, direction_of
from warden.adapters.sim.exposure import ExposureLog, SimExposure, SimStretch, StopCover
from warden.adapters.sim.ledger import TAKER_FEE_RATE, SimPosition, taker_fee
from warden.adapters.sim.markets import DEFAULT_VOLATILITY, SimMarket, default_markets, walk_step
from warden.adapters.sim.persist import (
    SNAPSHOT_VERSION,
    Json,
    fill_from_json,
    fill_to_json,
    instrument_from_json,
    instrument_to_json,
    order_from_json,
    order_to_json,
    position_from_json,
    position_to_json,
    rng_from_json,
    rng_to_json,
)
from warden.adapters.sim.rules import DUPLICATE_ID, SimOrderNotFound, SimRejection, validate
from warden.domain.margin import MAX_LEVERAGE, MarginMode, SymbolConfig, liquidation_price
from warden.domain.orders import OrderStatus
from warden.domain.reports import (
    FillReport,
    MarkPrice,
    OrderReport,
    OrderRequest,
    PositionReport,
    StreamEvent,
)
from warden.domain.values import ClientOrderId, Instrument, OrderSide, OrderType, Symbol, TradeId

EXTERNAL_PREFIX = "ext-"
LIQUIDATION_PREFIX = "autoclose-"
DEFAULT_CONFIG = SymbolConfig(20, MarginMode.CROSS)
"""Binance's defaults for a symbol never configured."""
_FIRST_ORDER_ID = 1_000_001
DEFAULT_LEVERAGE = 20
CROSS, ISOLATED = "cross", "isolated"
MARGIN_MODES = (CROSS, ISOLATED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The order's state after a call, and the stream events the call caused."""

    report: OrderReport
    events: tuple[StreamEvent, ...]


class SimCore:
    """The account and its markets. Not thread-safe; not async; no I/O."""

    def __init__(
        self,
        markets: Iterable[SimMarket] | None = None,
        *,
        seed: int = 0,
        fee_rate: Decimal = TAKER_FEE_RATE,
    ) -> None:
        chosen = list(default_markets() if markets is None else markets)
        self.instruments: dict[Symbol, Instrument] = {m.symbol: m.instrument for m in chosen}
        self.fee_rate = fee_rate
        self.rng = random.Random(seed)
        self._marks: dict[Symbol, Decimal] = {m.symbol: m.start_price for m in chosen}
        self._books: dict[Symbol, TriggerBook] = {s: TriggerBook() for s in self.instruments}
        self._positions: dict[Symbol, SimPosition] = {s: SimPosition(s) for s in self.instruments}
        self._fills: dict[Symbol, list[FillReport]] = {s: [] for s in self.instruments}
        self._orders: dict[str, OrderReport] = {}  # by exchange order id, all history
        self._by_cid: dict[str, str] = {}  # client order id -> latest exchange order id
        self._open: dict[str, None] = {}  # exchange ids of open orders, in placement order
        self._close_position: set[str] = set()
        self._fills_due: dict[str, datetime] = {}  # acknowledged market orders -> when they fill
        self._next_order_id = _FIRST_ORDER_ID
        self._next_trade_id = 1
        self._next_external_id = 1
        self._next_liquidation = 1
        self._config: dict[Symbol, SymbolConfig] = dict.fromkeys(self.instruments, DEFAULT_CONFIG)
        self.fee_asset: Symbol | None = None
        """A listed market whose base asset pays the fees (Binance's BNB fee option, `BNB/USDT:USDT`):
        the Binance face reports each fee in that asset at its mark (`commissionAsset`, `N`);
        None: in USDT. The ledger keeps the fees in USDT either way."""
        self.hedge_mode = False
        """The account's position mode: one-way (False, the default) or hedge (Binance's
        dualSidePosition). The simulator trades one-way only: in hedge mode the Binance face refuses
        an order without a LONG / SHORT positionSide (-4061), as Binance does."""
        self._cover = StopCover()
        self._exposure = ExposureLog()
        self._out: list[StreamEvent] = []
        self._triggered: set[str] = set()  # conditional orders fired, waiting for trigger_delay
        self.trigger_delay: timedelta | None = None
        """None: a crossed conditional order executes at once (Binance). A delay: it leaves the
        book when the mark crosses it and executes that much later, at the mark of that moment,
        through `fill_acknowledged` (a keeper that triggers it, then an auction that fills it: Drift)."""
        self.fire_delay: timedelta | None = None
        """Set by the adapter while a fault holds (`SimFaults.fire_in_parts`): overrides
        `trigger_delay` for the orders the mark fires meanwhile."""
        self.fill_spread = Decimal(0)
        """Taker fills at the mark plus (buys) or minus (sells) this fraction, on the tick (Drift's
        auctions fill near the oracle, a little worse); 0: at the mark."""
        self.immediate_triggers = False
        """Whether a conditional order the mark has already reached is accepted (and fires at once,
        or after `trigger_delay`) instead of refused with -2021 (Binance refuses, Drift accepts)."""

    # ----- queries -------------------------------------------------------------------

    def mark(self, symbol: Symbol) -> Decimal:
        """The current mark price; SimRejection for an unknown symbol."""
        self._instrument(symbol)
        return self._marks[symbol]

    def marks(self) -> dict[Symbol, Decimal]:
        return dict(self._marks)

    def order(self, client_order_id: str) -> OrderReport | None:
        """The latest order with this client id, open or closed; None if never seen."""
        order_id = self._by_cid.get(client_order_id)
        return None if order_id is None else self._orders[order_id]

    def order_by_id(self, exchange_order_id: str) -> OrderReport | None:
        """The order with this exchange id, open or closed; None if there is none."""
        return self._orders.get(exchange_order_id)

    def orders(self, symbol: Symbol | None = None) -> list[OrderReport]:
        """Every order ever placed (latest state), in placement order."""
        return [o for o in self._orders.values() if symbol is None or o.symbol == symbol]

    def is_close_position(self, exchange_order_id: str) -> bool:
        """Whether this open order closes the whole position when it fires (Binance closePosition)."""
        return exchange_order_id in self._close_position

    def open_orders(self, symbol: Symbol | None = None) -> list[OrderReport]:
        """Open orders, plain and conditional, in placement order."""
        reports = (self._orders[i] for i in self._open)
        return [r for r in reports if symbol is None or r.symbol == symbol]

    def position(self, symbol: Symbol) -> SimPosition:
        self._instrument(symbol)
        return self._positions[symbol]

    def positions(self) -> list[PositionReport]:
        """Non-flat positions only, by symbol."""
        return [p.report() for _, p in sorted(self._positions.items()) if not p.flat]

    def fills(self, symbol: Symbol, since: datetime | None = None) -> list[FillReport]:
        """Trades in `symbol` at or after `since`, oldest first."""
        self._instrument(symbol)
        return [f for f in self._fills[symbol] if since is None or f.at >= since]

    def exposure(self, now: datetime) -> list[SimExposure]:
        """Per symbol that has (or has had) a position, by symbol: how long it has gone without a stop.

        Covered means the reduce-only STOP_MARKET orders on the closing side, resting or fired
        and still executing (a venue with `trigger_delay`), add up to at least the absolute
        position size (a closePosition stop covers any size); flat is covered.
        `unprotected_seconds` is the current uncovered stretch up to `now` (0 when covered),
        `max_unprotected_seconds` the longest one seen, the current one included.
        """
        rows: list[SimExposure] = []
        for symbol, fills in sorted(self._fills.items()):
            if not fills:
                continue  # never traded: never had a position
            position = self._positions[symbol]
            rows.append(
                SimExposure(
                    symbol=symbol,
                    side="flat" if position.flat else position.side.value,
                    qty=abs(position.qty),
                    unprotected_seconds=self._exposure.current(symbol, now),
                    max_unprotected_seconds=self._exposure.longest(symbol, now),
                )
            )
        return rows

    def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        self._instrument(symbol)
        return self._config.get(symbol, DEFAULT_CONFIG)

    def isolated_margin(self, symbol: Symbol) -> Decimal:
        """The margin an isolated position holds (0 when cross or flat)."""
        config, position = self.symbol_config(symbol), self.position(symbol)
        if config.margin_mode is not MarginMode.ISOLATED or position.flat:
            return Decimal(0)
        assert config.leverage is not None
        return abs(position.qty) * position.entry_price / config.leverage

    def liquidation_price(self, symbol: Symbol) -> Decimal | None:
        """Where an isolated position is liquidated (None when cross or flat)."""
        config, position = self.symbol_config(symbol), self.position(symbol)
        if config.margin_mode is not MarginMode.ISOLATED or position.flat:
            return None
        assert config.leverage is not None
        instrument = self.instruments[symbol]
        return instrument.round_price(liquidation_price(position.side, position.entry_price, config.leverage))

    def exposure_stretches(self) -> list[SimStretch]:
        """Every uncovered stretch seen since this core was made or restored (the newest
        `exposure.HISTORY`, oldest first; not in the snapshot), then those going on (end None)."""
        return self._exposure.history()

    def fills_due(self) -> dict[str, datetime]:
        """Acknowledged, unfilled market orders (exchange id) and when each is due to fill."""
        return dict(self._fills_due)

    def resting_count(self, symbol: Symbol) -> int:
        """How many conditional orders rest in this symbol's trigger book."""
        return len(self._books[symbol])

    def leverage(self, symbol: Symbol) -> int:
        return self.symbol_config(symbol).leverage or DEFAULT_LEVERAGE

    def margin_mode(self, symbol: Symbol) -> str:
        """ "cross" or "isolated": the position's margin comes from the whole wallet or its own."""
        mode = self.symbol_config(symbol).margin_mode
        return mode.value if mode is not None else CROSS

    # ----- account settings ----------------------------------------------------------

    def set_leverage(self, symbol: Symbol, leverage: int) -> bool:
        """Set a symbol's leverage (1..MAX_LEVERAGE); False if it already was that (nothing changed)."""
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise SimRejection(-4028, f"leverage {leverage} is not between 1 and {MAX_LEVERAGE}")
        if self.leverage(symbol) == leverage:
            return False
        self.configure(symbol, leverage, None)
        return True

    def set_margin_mode(self, symbol: Symbol, mode: str) -> bool:
        """Switch a symbol between cross and isolated margin; False if it already was in `mode`.

        Like Binance, a switch is refused while the symbol has a position (-4048) or open orders (-4047).
        """
        self._instrument(symbol)
        if mode not in MARGIN_MODES:
            raise SimRejection(-4046, f"margin mode must be one of {MARGIN_MODES}, not {mode!r}")
        if self.margin_mode(symbol) == mode:
            return False
        self.configure(symbol, None, MarginMode(mode))
        return True

    def set_hedge_mode(self, hedged: bool) -> bool:
        """Switch the account between one-way and hedge mode; False if it already was in it.

        Like Binance, a switch is refused while any symbol has a position (-4068) or open orders (-4067).
        """
        if hedged == self.hedge_mode:
            return False
        if any(not p.flat for p in self._positions.values()):
            raise SimRejection(-4068, "Position side cannot be changed if there exists position.")
        if self._open:
            raise SimRejection(-4067, "Position side cannot be changed if there exists open orders.")
        self.hedge_mode = hedged
        return True

    # ----- commands ------------------------------------------------------------------

    def place(
        self,
        request: OrderRequest,
        now: datetime,
        *,
        close_position: bool = False,
        fill_at: datetime | None = None,
    ) -> Outcome:
        """Validate, then fill a market order at the mark or rest a conditional one.

        With `fill_at` a market order is only acknowledged: it stays OPEN, unfilled, until
        `fill_acknowledged` fills it (at the mark of that moment) or `cancel` cancels it.
        `fill_at` is when it is due; the core keeps it (and the snapshot carries it) but does
        not act on it by itself: the caller owns the timer. Conditional orders take no `fill_at`.
        """
        if fill_at is not None and request.type.conditional:
            raise ValueError("only market orders can be acknowledged before they fill")
        instrument = self._instrument(request.symbol)
        self._check_unique(request.client_order_id)
        mark = self._marks[request.symbol]
        validate(
            request,
            instrument,
            mark,
            self._positions[request.symbol],
            close_position=close_position,
            immediate_ok=self.immediate_triggers,
        )
        cap = instrument.max_conditional
        if request.type.conditional and cap is not None and self.resting_count(request.symbol) >= cap:
            raise SimRejection(-4045, f"Reach max stop order limit ({cap} on {request.symbol}).")
        self._out = []
        order = self._open_order(request, now, close_position=close_position)
        if order.trigger_price is not None:
            self._rest(order, order.trigger_price)
            crossed = self._books[request.symbol].crossed(mark)
            for order_id in crossed:
                self._fire(self._orders[order_id], now)
            if order.exchange_order_id in crossed:
                order = self._orders[order.exchange_order_id]
        elif fill_at is not None:
            self._fills_due[order.exchange_order_id] = fill_at
        else:
            order = self._execute(order, now)
        self._reassess(request.symbol, now)
        return self._outcome(order)

    def cancel(self, client_order_id: str, now: datetime) -> Outcome:
        """Cancel the open order with this client id; SimOrderNotFound if none is open."""
        order = self.order(client_order_id)
        if order is None or order.status is not OrderStatus.OPEN:
            raise SimOrderNotFound(f"no open order with client id {client_order_id!r}")
        self._out = []
        self._books[order.symbol].remove(order.exchange_order_id)
        canceled = self._close(order, OrderStatus.CANCELED, now)
        self._reassess(order.symbol, now)
        return self._outcome(canceled)

    def amend(
        self,
        client_order_id: str,
        now: datetime,
        *,
        qty: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> Outcome:
        """Change the quantity and/or trigger of a resting conditional order (Bybit's amend).

        The order keeps its ids and its place among equal triggers; the new values are validated
        like a new order's (a trigger the mark has already reached is refused). SimOrderNotFound
        if no conditional order with this client id is resting.
        """
        order = self.order(client_order_id)
        if order is None or order.status is not OrderStatus.OPEN or order.trigger_price is None:
            raise SimOrderNotFound(f"no resting conditional order with client id {client_order_id!r}")
        whole = order.exchange_order_id in self._close_position
        new_qty = order.qty if qty is None or whole else qty
        new_trigger = order.trigger_price if trigger_price is None else trigger_price
        request = OrderRequest(
            ClientOrderId(order.client_order_id),
            order.symbol,
            order.side,
            order.type,
            new_qty,
            new_trigger,
            order.reduce_only,
        )
        validate(
            request,
            self.instruments[order.symbol],
            self._marks[order.symbol],
            self._positions[order.symbol],
            close_position=whole,
        )
        self._out = []
        self._books[order.symbol].remove(order.exchange_order_id)
        self._cover.remove(order, whole=whole)
        amended = self._record(replace(order, qty=new_qty, trigger_price=new_trigger, at=now))
        self._rest(amended, new_trigger)
        self._reassess(order.symbol, now)
        return self._outcome(amended)

    def fill_acknowledged(
        self,
        exchange_order_id: str,
        now: datetime,
        part: Decimal | None = None,
        rest_at: datetime | None = None,
    ) -> Outcome | None:
        """Fill an acknowledged market order at the current mark (a reduce-only one with nothing
        left to reduce expires CANCELED). None if it is no longer waiting (cancelled, or filled).
        With `part` (and `rest_at`), only that much of its unfilled size fills now (rounded down to
        the lot): the order stays OPEN, partly filled, its rest due at `rest_at`. A part that
        rounds to nothing, or to all of what it may still fill (a reduce-only one: no more than the
        position holds), fills the order whole.
        """
        if exchange_order_id not in self._fills_due:
            return None
        order = self._orders[exchange_order_id]
        self._out = []
        left = order.qty - order.filled_qty
        some = None if part is None else self._instrument(order.symbol).round_qty(min(part, left))
        can = self._executable_qty(order)
        if some is not None and rest_at is not None and can is not None and 0 < some < min(left, can):
            fill = self._trade(order, some, now)
            done = self._record(self._filled(order, fill, OrderStatus.OPEN, now))
            self._fills_due[exchange_order_id] = rest_at
            self._out.append(self._positions[order.symbol].report())
        else:
            done = self._execute(order, now)
        self._reassess(order.symbol, now)
        return self._outcome(done)

    def configure(self, symbol: Symbol, leverage: int | None, margin_mode: MarginMode | None) -> SymbolConfig:
        """Set the symbol's leverage and/or margin mode (None leaves it); SimRejection as Binance."""
        current = self.symbol_config(symbol)
        if leverage is not None and not 1 <= leverage <= MAX_LEVERAGE:
            raise SimRejection(-4028, "Leverage is not valid.")
        if margin_mode is not None and margin_mode is not current.margin_mode:
            if not self._positions[symbol].flat:
                raise SimRejection(-4048, "Margin type cannot be changed if there exists position.")
            if self.open_orders(symbol):
                raise SimRejection(-4047, "Margin type cannot be changed if there exists open orders.")
        self._config[symbol] = SymbolConfig(
            leverage if leverage is not None else current.leverage,
            margin_mode if margin_mode is not None else current.margin_mode,
        )
        return self._config[symbol]

    def set_mark(self, symbol: Symbol, price: Decimal, now: datetime) -> list[StreamEvent]:
        """Move the mark; fire every conditional order it reaches, in trigger order."""
        self._instrument(symbol)
        if not price.is_finite() or price <= 0:
            raise ValueError(f"mark price must be a positive number, not {price}")
        self._out = []
        self._move_mark(symbol, price, now)
        return self._take()

    def walk(self, now: datetime, volatility: float = DEFAULT_VOLATILITY) -> list[StreamEvent]:
        """One seeded random-walk step of every symbol's mark, firing triggers."""
        self._out = []
        for symbol, price in walk_step(self._marks, self.instruments, self.rng, volatility).items():
            self._move_mark(symbol, price, now)
        return self._take()

    def external_order(
        self,
        symbol: Symbol,
        side: OrderSide,
        qty: Decimal,
        now: datetime,
        *,
        reduce_only: bool = False,
        order_type: OrderType = OrderType.MARKET,
        trigger_price: Decimal | None = None,
        close_position: bool = False,
    ) -> Outcome:
        """An order warden did not make (a human, another bot), with client id `ext-N`."""
        cid = ClientOrderId(f"{EXTERNAL_PREFIX}{self._next_external_id}")
        request = OrderRequest(cid, symbol, side, order_type, qty, trigger_price, reduce_only)
        outcome = self.place(request, now, close_position=close_position)
        self._next_external_id += 1
        return outcome

    # ----- persistence ---------------------------------------------------------------

    def snapshot(self) -> Json:
        """Everything the core knows, JSON-safe (Decimals as strings); `restore` inverts it."""
        return {
            "version": SNAPSHOT_VERSION,
            "fee_rate": str(self.fee_rate),
            "instruments": [instrument_to_json(i) for _, i in sorted(self.instruments.items())],
            "marks": {s: str(p) for s, p in sorted(self._marks.items())},
            "positions": {s: position_to_json(p) for s, p in sorted(self._positions.items())},
            "orders": [order_to_json(o) for o in self._orders.values()],
            "by_cid": dict(self._by_cid),
            "open": list(self._open),
            "close_position": sorted(self._close_position),
            "fills_due": {i: at.isoformat() for i, at in self._fills_due.items()},
            "triggered": sorted(self._triggered),
            "fills": {s: [fill_to_json(f) for f in fs] for s, fs in sorted(self._fills.items())},
            "next_order_id": self._next_order_id,
            "next_trade_id": self._next_trade_id,
            "next_external_id": self._next_external_id,
            "next_liquidation": self._next_liquidation,
            "symbol_config": {
                s: [c.leverage, c.margin_mode.value if c.margin_mode else None]
                for s, c in sorted(self._config.items())
                if c != DEFAULT_CONFIG
            },
            "hedge_mode": self.hedge_mode,
            "fee_asset": self.fee_asset,
            "rng": rng_to_json(self.rng),
            "exposure": self._exposure.to_json(),
        }

    def restore(self, data: Json) -> None:
        """Replace the whole state with a `snapshot()`; resting stops go back in their books,
        acknowledged market orders keep their due times (`fills_due`; the caller re-times them).

        Exposure stretches come back as saved: a restart neither ends nor forgets one (the
        position sat on the exchange uncovered all along). A snapshot saved before exposure was
        tracked starts the stretch of each uncovered position at its symbol's last fill.
        """
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported simulator snapshot version {data.get('version')!r}")
        # Markets this core lists that the snapshot lacks (`sim serve --markets 10` over a state
        # saved with three) stay listed, flat, at their starting mark: otherwise --markets would
        # be ignored silently and a test bed that needs them meets the stop cap on three symbols.
        listed = {s: (i, self._marks[s]) for s, i in self.instruments.items()}
        instruments = [instrument_from_json(i) for i in data["instruments"]]
        self.instruments = {i.symbol: i for i in instruments}
        self.fee_rate = Decimal(data["fee_rate"])
        self._marks = {Symbol(s): Decimal(p) for s, p in data["marks"].items()}
        self._positions = {Symbol(s): position_from_json(Symbol(s), p) for s, p in data["positions"].items()}
        self._fills = {Symbol(s): [fill_from_json(f) for f in fs] for s, fs in data["fills"].items()}
        self._orders = {o.exchange_order_id: o for o in map(order_from_json, data["orders"])}
        self._by_cid = dict(data["by_cid"])
        self._open = dict.fromkeys(data["open"])
        self._close_position = set(data["close_position"])
        self._fills_due = {i: datetime.fromisoformat(at) for i, at in data.get("fills_due", {}).items()}
        self._triggered = set(data.get("triggered", []))
        self._next_order_id = int(data["next_order_id"])
        self._next_trade_id = int(data["next_trade_id"])
        self._next_external_id = int(data["next_external_id"])
        self._next_liquidation = int(data.get("next_liquidation", 1))
        self._config = dict.fromkeys(self.instruments, DEFAULT_CONFIG)
        for s, (lev, mode) in data.get("symbol_config", {}).items():
            self._config[Symbol(s)] = SymbolConfig(lev, MarginMode(mode) if mode else None)
        self.hedge_mode = bool(data.get("hedge_mode", False))
        self.fee_asset = Symbol(data["fee_asset"]) if data.get("fee_asset") else None
        self.rng.setstate(rng_from_json(data["rng"]))
        for s, n in data.get("leverage", {}).items():  # snapshots written before symbol_config
            self._config[Symbol(s)] = SymbolConfig(
                int(n), self._config.get(Symbol(s), DEFAULT_CONFIG).margin_mode
            )
        for s, m in data.get("margin_mode", {}).items():
            self._config[Symbol(s)] = SymbolConfig(
                self._config.get(Symbol(s), DEFAULT_CONFIG).leverage, MarginMode(m)
            )
        for instrument, mark in [m for s, m in listed.items() if s not in self.instruments]:
            self._list_flat(instrument, mark)
        self._books = {s: TriggerBook() for s in self.instruments}
        self._cover = StopCover()
        for order_id in self._open:
            order = self._orders[order_id]
            if order.trigger_price is not None and order_id not in self._triggered:
                self._rest(order, order.trigger_price)
            elif order.trigger_price is not None:  # fired, executing: covers, off the book
                self._cover.add(order, whole=order_id in self._close_position)
        saved_exposure = data.get("exposure")
        if saved_exposure is not None:
            self._exposure = ExposureLog.from_json(saved_exposure)
        else:
            self._exposure = ExposureLog()
            for symbol, fills in self._fills.items():
                if fills:
                    self._reassess(symbol, fills[-1].at)
        self._out = []

    # ----- internals -----------------------------------------------------------------

    def _list_flat(self, instrument: Instrument, mark: Decimal) -> None:
        """A market the restored snapshot did not hold: listed, flat, at `mark`."""
        s = instrument.symbol
        self.instruments[s] = instrument
        self._marks[s] = mark
        self._positions[s] = SimPosition(s)
        self._fills[s] = []
        self._config[s] = DEFAULT_CONFIG

    def _instrument(self, symbol: Symbol) -> Instrument:
        instrument = self.instruments.get(symbol)
        if instrument is None:
            raise SimRejection(-1121, f"invalid symbol {symbol!r}")
        return instrument

    def _check_unique(self, client_order_id: str) -> None:
        existing = self.order(client_order_id)
        if existing is not None and existing.status is OrderStatus.OPEN:
            raise SimRejection(DUPLICATE_ID, f"ClientOrderId is duplicated: {client_order_id!r}")

    def _open_order(self, request: OrderRequest, now: datetime, *, close_position: bool) -> OrderReport:
        order = OrderReport(
            client_order_id=request.client_order_id,
            exchange_order_id=str(self._next_order_id),
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            qty=request.qty,
            status=OrderStatus.OPEN,
            trigger_price=request.trigger_price,
            reduce_only=request.reduce_only or close_position,
            at=now,
        )
        self._next_order_id += 1
        if close_position:
            self._close_position.add(order.exchange_order_id)
        self._open[order.exchange_order_id] = None
        self._by_cid[order.client_order_id] = order.exchange_order_id
        return self._record(order)

    def _rest(self, order: OrderReport, trigger: Decimal) -> None:
        direction = direction_of(order.side, order.type)
        seq = int(order.exchange_order_id)  # increasing: equal triggers fire in placement order
        self._books[order.symbol].add(order.exchange_order_id, direction, trigger, seq)
        self._cover.add(order, whole=order.exchange_order_id in self._close_position)

    def _record(self, order: OrderReport) -> OrderReport:
        self._orders[order.exchange_order_id] = order
        self._out.append(order)
        return order

    def _close(
        self, order: OrderReport, status: OrderStatus, now: datetime, fill: FillReport | None = None
    ) -> OrderReport:
        self._open.pop(order.exchange_order_id, None)
        self._fills_due.pop(order.exchange_order_id, None)
        if order.trigger_price is not None:  # it covered until now: resting, or fired and executing
            self._triggered.discard(order.exchange_order_id)
            self._cover.remove(order, whole=order.exchange_order_id in self._close_position)
        self._close_position.discard(order.exchange_order_id)
        if fill is None:
            return self._record(replace(order, status=status, at=now))
        return self._record(self._filled(order, fill, status, now))

    @staticmethod
    def _filled(order: OrderReport, fill: FillReport, status: OrderStatus, now: datetime) -> OrderReport:
        """`order` with `fill` added to what it filled before (its average price weighted)."""
        qty = order.filled_qty + fill.qty
        before = (order.avg_price or Decimal(0)) * order.filled_qty
        return replace(
            order, status=status, filled_qty=qty, avg_price=(before + fill.price * fill.qty) / qty, at=now
        )

    def _executable_qty(self, order: OrderReport) -> Decimal | None:
        """How much of `order` can execute now; None when a reduce-only order has nothing to reduce."""
        position = self._positions[order.symbol]
        if not order.reduce_only:
            return order.qty - order.filled_qty
        if not position.reduced_by(order.side):
            return None
        if order.exchange_order_id in self._close_position:
            return abs(position.qty)
        return min(order.qty - order.filled_qty, abs(position.qty))

    def _execute(self, order: OrderReport, now: datetime) -> OrderReport:
        """Fill what can be filled at the mark, or expire (cancel) a reduce-only order."""
        qty = self._executable_qty(order)
        if qty is None:
            return self._close(order, OrderStatus.CANCELED, now)
        fill = self._trade(order, qty, now)
        closed = self._close(order, OrderStatus.FILLED, now, fill)
        self._out.append(self._positions[order.symbol].report())
        return closed

    def _trade(self, order: OrderReport, qty: Decimal, now: datetime) -> FillReport:
        price = self._fill_price(order.symbol, order.side)
        fee = taker_fee(qty, price, self.fee_rate)
        fill = FillReport(
            trade_id=TradeId(f"T{self._next_trade_id}"),
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=fee,
            at=now,
        )
        self._next_trade_id += 1
        self._fills[order.symbol].append(fill)
        position = self._positions[order.symbol]
        self._positions[order.symbol] = position.apply(order.side, qty, price, fee)
        self._out.append(fill)
        return fill

    def _fill_price(self, symbol: Symbol, side: OrderSide) -> Decimal:
        mark = self._marks[symbol]
        if not self.fill_spread:
            return mark
        tick = self.instruments[symbol].tick_size
        moved = mark * (1 + self.fill_spread if side is OrderSide.BUY else 1 - self.fill_spread)
        return max(tick, (moved / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick)

    def _fire(self, order: OrderReport, now: datetime) -> None:
        """A conditional order the mark reached: execute it now, or (with `trigger_delay`) take it
        off the book and let it execute `trigger_delay` later (`fill_acknowledged`). Meanwhile a
        fired stop still covers: it is executing against the position (Drift: triggered by a
        keeper, filled by an auction), and no client can shorten the venue's execution."""
        delay = self.trigger_delay if self.fire_delay is None else self.fire_delay
        if delay is None:
            self._execute(order, now)
            return
        self._triggered.add(order.exchange_order_id)
        self._fills_due[order.exchange_order_id] = now + delay

    def triggered(self) -> set[str]:
        """Conditional orders (exchange ids) that fired and wait for their delayed execution."""
        return set(self._triggered)

    def _move_mark(self, symbol: Symbol, price: Decimal, now: datetime) -> None:
        self._marks[symbol] = price
        self._out.append(MarkPrice(symbol, price, now))
        crossed = self._books[symbol].crossed(price)
        for order_id in crossed:
            self._fire(self._orders[order_id], now)
        liquidated = self._liquidate_if_reached(symbol, price, now)
        if crossed or liquidated:
            self._reassess(symbol, now)

    def _liquidate_if_reached(self, symbol: Symbol, price: Decimal, now: datetime) -> bool:
        """An isolated position whose liquidation price the mark reached is closed at the mark."""
        liq = self.liquidation_price(symbol)
        position = self._positions[symbol]
        if liq is None or (price > liq if position.qty > 0 else price < liq):
            return False
        side = OrderSide.SELL if position.qty > 0 else OrderSide.BUY
        cid = ClientOrderId(f"{LIQUIDATION_PREFIX}{self._next_liquidation}")
        self._next_liquidation += 1
        request = OrderRequest(cid, symbol, side, OrderType.MARKET, abs(position.qty), None, True)
        self._execute(self._open_order(request, now, close_position=False), now)
        return True

    def _reassess(self, symbol: Symbol, now: datetime) -> None:
        """Re-evaluate whether `symbol`'s position is covered, after a change at `now`."""
        covered = self._cover.covers(symbol, self._positions[symbol].qty)
        self._exposure.update(symbol, covered, now)

    def _outcome(self, report: OrderReport) -> Outcome:
        return Outcome(report, tuple(self._take()))

    def _take(self) -> list[StreamEvent]:
        events, self._out = self._out, []
        return events
