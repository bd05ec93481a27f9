"""`CcxtExchange`: the Exchange port on Binance USD-M through unmodified `ccxt.pro.binanceusdm`.

Against the simulator server (`warden sim serve`, default credentials sim-key / sim-secret):

    CcxtExchange.create(api_key="sim-key", api_secret="sim-secret", base_url="http://127.0.0.1:8765")

Against Binance itself (no base_url):

    CcxtExchange.create(api_key=..., api_secret=...)

Every ccxt call runs inside `self.translated(...)` (errors.py: Binance's code table, then the
class table) and every ccxt structure is parsed once, here at the boundary (parse.py).
What is common to every venue lives in `CcxtAdapter` (adapter.py). Conditional orders
are sent with `stopLossPrice` / `takeProfitPrice` (ccxt routes them to the algo endpoint)
and `workingType=MARK_PRICE` (stops fire on the mark, as warden and the simulator assume);
fetch and cancel pass `{'trigger': True}` for them, because ccxt does not route those.
Every method is a plain chain of awaits with no state changed before the response, so
any call can be cancelled by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from warden.adapters.ccxt import errors, parse
from warden.adapters.ccxt.adapter import CLOCK_SLACK_MS, CcxtAdapter, Setting, is_loopback, resynced
from warden.adapters.ccxt.config import DEFAULT_TIMEOUT_MS, client_config, point_at
from warden.adapters.ccxt.errors import Call
from warden.adapters.ccxt.ids import OrderIds
from warden.domain.margin import SymbolConfig
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import Instrument, OrderType, Symbol, parse_client_order_id
from warden.ports import ExchangeError, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

log = logging.getLogger(__name__)

FEE_RATE_FRESH = 600.0
"""Seconds a fee asset's rate (BNB's mark, for fees paid in BNB) is used before it is read again."""
FEE_RATE_WAIT = 1.0
"""The longest a fill waits for its fee asset's first rate; beyond it the fee counts as 0 (warned)."""

WEEK_MS = 7 * 24 * 3600 * 1000
TRADES_PAGE = 1000


USDM_MS_PER_WEIGHT = 25
"""Binance USD-M allows 2,400 request weight a minute: 25 ms per unit of ccxt's cost."""


class CcxtExchange(CcxtAdapter):
    """One Binance USD-M account. `symbols`: the markets whose mark prices the stream carries
    (None: all of them, through the single `!markPrice@arr@1s` stream)."""

    venue = "binance"
    codes = errors.BINANCE
    not_modified = errors.BINANCE_NOT_MODIFIED
    busy_refusals = errors.BINANCE_BUSY
    clock_refusals = errors.BINANCE_CLOCK
    channels = {"private": "/private/", "market": "/market/"}

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.ids = OrderIds()
        self._fee_rates: dict[Symbol, tuple[Decimal, float]] = {}
        """A fee asset's mark against the settle currency (BNB/USDT:USDT), and when it was read."""
        self._fee_reads: dict[Symbol, asyncio.Task[Decimal]] = {}

    @classmethod
    def create(
        cls,
        *,
        api_key: str,
        api_secret: str,
        base_url: str | None = None,
        enable_rate_limit: bool | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        options: dict[str, Any] | None = None,
        symbols: Sequence[Symbol] | None = None,
        session: Any | None = None,
        testnet: bool = False,
        leverage: int | None = None,
        margin_mode: str | None = None,
    ) -> CcxtExchange:
        """Build the ccxt client. `base_url` (http://host:port) points every URL at a local server.

        `session`: an aiohttp ClientSession for REST and websockets (e.g. with a TraceConfig
        that records every request); the caller closes it. `options` are merged into ccxt's.
        `testnet`: Binance's demo trading environment (demo-fapi.binance.com; the old futures
        testnet is retired and ccxt refuses it), unless `base_url` points elsewhere.
        """
        import ccxt.pro

        if enable_rate_limit is None:
            # ccxt's limiter queues every call, orders included, behind heavy queries (a
            # 40-weight openOrders waits ~1 s). Against a local simulator there is no limit
            # to respect, so it is off; against Binance it is on, paced at USD-M's real
            # 2,400 weight per minute (25 ms per unit) rather than ccxt's 1,200.
            enable_rate_limit = not is_loopback(base_url)
        config = client_config(
            api_key=api_key,
            api_secret=api_secret,
            enable_rate_limit=enable_rate_limit,
            timeout_ms=timeout_ms,
            options=options,
            session=session,
        )
        client = ccxt.pro.binanceusdm(config)
        client.rateLimit = USDM_MS_PER_WEIGHT
        if base_url is not None:
            point_at(client, base_url)
        elif testnet:
            client.enable_demo_trading(True)
        return cls(client, symbols=symbols, leverage=leverage, margin_mode=margin_mode)

    # ----- the Exchange port ----------------------------------------------------------

    def parse_instrument(self, market: parse.Raw) -> Instrument | None:
        return parse.instrument(market)

    def account_settings(self, symbols: Sequence[Symbol]) -> list[Setting]:
        """One-way position mode checked (not set), then the configured margin type and leverage,
        per symbol (`/fapi/v1/marginType`, `/leverage`)."""
        client, settings = self.client, list[Setting]([("one-way position mode", self._require_one_way)])
        mode, leverage = self.margin_mode, self.leverage
        if mode is not None:
            settings += [(f"{s} {mode} margin", partial(client.set_margin_mode, mode, s)) for s in symbols]
        if leverage is not None:
            settings += [
                (f"{s} leverage {leverage}", partial(client.set_leverage, leverage, s)) for s in symbols
            ]
        return settings

    async def _require_one_way(self) -> None:
        """Refuse to start on an account in hedge mode (GET /fapi/v1/positionSide/dual): Binance
        refuses every order warden sends there (positionSide BOTH: -4061), entries and stops alike.
        It is not switched here: the mode is the whole account's (the trader's other trading
        included), and Binance refuses the switch while any position or order is open."""
        mode = await self.client.fetch_position_mode()
        if mode.get("hedged"):
            raise OrderRejected(
                "the account is in hedge mode (dualSidePosition): Binance refuses every one-way"
                " order warden sends (-4061); switch the account to one-way position mode"
            )

    @resynced
    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        """GET /fapi/v1/symbolConfig for one symbol (ccxt's fetch_leverages reads it)."""
        with self.translated(Call.QUERY):
            await self.client.load_markets()
            market_id = self.client.market(symbol)["id"]
            found = await self.client.fetch_leverages([symbol], {"symbol": market_id})
            return parse.symbol_config(found[symbol])

    async def mark_price(self, symbol: Symbol) -> Decimal:
        with self.translated(Call.QUERY):
            ticker = parse.mark_price(await self.client.fetch_mark_price(symbol))
        if ticker is None:
            raise ExchangeUnavailable(f"no mark price for {symbol}")
        return ticker.price

    @resynced
    async def place_order(self, request: OrderRequest) -> OrderReport:
        """Send with warden's client id; refuse (before sending) what ccxt would silently round."""
        await self.check_precision(request)
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        if request.type.conditional:
            key = "stopLossPrice" if request.type is OrderType.STOP_MARKET else "takeProfitPrice"
            params[key] = str(request.trigger_price)
            params["workingType"] = "MARK_PRICE"
        with self.translated(Call.ORDER):
            raw = await self.client.create_order(
                request.symbol, "market", request.side.value, str(request.qty), None, params
            )
            report = parse.order_report(raw)
        self.ids.learn(report)
        return report

    @resynced
    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if conditional:
            params["trigger"] = True
        with self.translated(Call.ORDER):
            raw = await self.client.cancel_order(None, symbol, params)
            if not conditional:
                report = parse.order_report(raw)
                self.ids.learn(report)
                return report
        # an algo cancel answers {algoId, clientAlgoId, code, msg}: read the order back
        try:
            return await self.fetch_order(symbol, client_order_id, conditional=True)
        except ExchangeError as exc:
            raise ExchangeTimeout(
                f"{client_order_id} canceled, but its state could not be read: {exc}"
            ) from exc

    @resynced
    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if conditional:
            params["trigger"] = True
        with self.translated(Call.QUERY):
            raw = await self.client.fetch_order(None, symbol, params)
            report = parse.order_report(raw)
        if conditional:
            return await self._completed(symbol, raw, report)
        self.ids.learn(report)
        return report

    @resynced
    async def fetch_open_orders(self) -> list[OrderReport]:
        """Every open order: `/openOrders` and, separately, `/openAlgoOrders`."""
        with self.translated(Call.QUERY):
            plain = await self.client.fetch_open_orders()
            algo = await self.client.fetch_open_orders(None, None, None, {"trigger": True})
            reports = [parse.order_report(o) for o in plain + algo]
        for report in reports:
            self.ids.learn(report)
        return reports

    @resynced
    async def fetch_positions(self) -> list[PositionReport]:
        with self.translated(Call.QUERY):
            found = [parse.position_report(p) for p in await self.client.fetch_positions()]
        return [p for p in found if p is not None]

    @resynced
    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        """Trades in `symbol` since `since`, attributed to client ids (fired stops to the stop's id)."""
        trades = await self._trades(symbol, since)
        await self.resolve(symbol, {str(t["order"]) for t in trades})
        fills = []
        with self.translated(Call.QUERY):
            for trade in trades:
                order_id = str(trade["order"])
                owner = self.ids.attribution(order_id)
                client_id, exchange_id = owner or (parse.raw_client_id(trade) or "", order_id)
                fills.append(parse.fill_report(trade, client_id, exchange_id))
        return [await self._fee_in_settle(f, t) for f, t in zip(fills, trades, strict=True)]

    async def _fee_in_settle(self, fill: FillReport, trade: parse.Raw) -> FillReport:
        """A fee paid in another asset than the market's settle currency (BNB, when the account pays
        its fees in BNB) valued at that asset's mark against it (`BNB/USDT:USDT`): a fill's fee is
        in the settle currency, and the realized PnL net of fees (the daily-loss pause) sums it.
        Without such a market or its mark, the fee counts as 0 and a warning says so."""
        asset = parse.fee_asset(trade)
        settle = self.client.markets.get(fill.symbol, {}).get("settle") if self.client.markets else None
        if asset is None or settle is None or asset == settle or fill.fee == 0:
            return fill
        pair = Symbol(f"{asset}/{settle}:{settle}")
        try:
            if pair not in self.client.markets:
                raise ExchangeUnavailable(f"no {pair} market")
            rate = await self._fee_rate(pair)
        except (ExchangeError, TimeoutError) as exc:
            self._warn(
                "fee_asset",
                f"a fee of {fill.fee} {asset} ({fill.trade_id}) could not be valued in {settle}"
                f" ({exc}): it counts as 0 in the realized PnL",
            )
            return replace(fill, fee=Decimal(0))
        self._warn("fee_asset", None)
        return replace(fill, fee=fill.fee * rate)

    async def _fee_rate(self, pair: Symbol) -> Decimal:
        """The fee asset's rate, read once and then used for `FEE_RATE_FRESH` seconds (read again in
        the background after that): a fee is small, but a stream fill that waited on a REST read
        each time would hold up the fills behind it (a stop's, a take-profit's) by a round trip,
        or by a whole query deadline while REST is slow. Only the first read is waited for, and
        for at most `FEE_RATE_WAIT` seconds (TimeoutError: the fee then counts as 0, warned)."""
        now = asyncio.get_running_loop().time()
        cached = self._fee_rates.get(pair)
        if cached is not None:
            if now - cached[1] > FEE_RATE_FRESH:
                self._read_fee_rate(pair)
            return cached[0]
        async with asyncio.timeout(FEE_RATE_WAIT):
            return await asyncio.shield(self._read_fee_rate(pair))

    def _read_fee_rate(self, pair: Symbol) -> asyncio.Task[Decimal]:
        """The read of `pair`'s mark under way, or a new one (one at a time per asset)."""
        task = self._fee_reads.get(pair)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._fee_rate_now(pair))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failures are warned
            self._fee_reads[pair] = task
        return task

    async def _fee_rate_now(self, pair: Symbol) -> Decimal:
        rate = await self.mark_price(pair)
        self._fee_rates[pair] = (rate, asyncio.get_running_loop().time())
        return rate

    async def close(self) -> None:
        for task in self._fee_reads.values():
            task.cancel()
        await asyncio.gather(*self._fee_reads.values(), return_exceptions=True)
        self._fee_reads.clear()
        await super().close()

    # ----- the stream's batches -> events ----------------------------------------------

    def renew_private_auth(self) -> None:
        """Binance closes the user stream with `listenKeyExpired` when its key lapses, and ccxt
        reconnects with the cached key (refused, HTTP 400) until its own 20-minute keep-alive
        fails. After any failure of the private socket the cached key is marked stale, so the
        next watch asks for a key (POST listenKey answers the live key if it still is one, so
        this costs one REST call and loses nothing)."""
        for options in self.client.options.values():
            if isinstance(options, dict) and "lastAuthenticatedTime" in options:
                options["lastAuthenticatedTime"] = 0

    async def watch_marks(self) -> Any:
        return await self.client.watch_mark_prices(self.symbols)

    async def order_events(self, batch: list[parse.Raw]) -> list[StreamEvent]:
        ids = self.ids
        for raw in batch:  # algo updates first: they explain the child orders of the same batch
            if parse.is_algo(raw):
                ids.learn(parse.order_report(raw), parse.algo_child_id(raw))
        events: list[StreamEvent] = []
        for raw in batch:
            report = parse.order_report(raw)
            if not parse.is_algo(raw):
                if ids.is_child(report.exchange_order_id):
                    continue  # the algo order's own updates speak for it
                ids.learn(report)
            events.append(report)
        return events

    async def trade_events(self, batch: list[parse.Raw]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for raw in batch:
            order_id = str(raw["order"])
            client_id, exchange_id = await self._attribute(Symbol(str(raw["symbol"])), order_id, raw)
            events.append(await self._fee_in_settle(parse.fill_report(raw, client_id, exchange_id), raw))
        return events

    async def mark_events(self, batch: dict[str, parse.Raw]) -> list[StreamEvent]:
        marks = (parse.mark_price(ticker) for ticker in batch.values())
        return [m for m in marks if m is not None]

    async def _attribute(self, symbol: Symbol, order_id: str, raw: parse.Raw) -> tuple[str, str]:
        ids = self.ids
        printed = parse.raw_client_id(raw) or ""
        known = ids.attribution(order_id)
        if known is None and parse_client_order_id(printed) is None:
            # not a known order and not warden's id: perhaps a fired stop's child order
            with contextlib.suppress(ExchangeError, TimeoutError):
                async with asyncio.timeout(self.resolve_timeout):
                    await self.resolve(symbol, {order_id})
            known = ids.attribution(order_id)
            if known is None:
                ids.learn_unknown(order_id, printed)
        return known or (printed, order_id)

    # ----- helpers --------------------------------------------------------------------

    async def resolve(self, symbol: Symbol, order_ids: set[str]) -> None:
        """Learn which client ids `order_ids` belong to: fired algo orders first, then plain orders."""
        unknown = {o for o in order_ids if self.ids.attribution(o) is None}
        if not unknown:
            return
        with self.translated(Call.QUERY):
            for raw in await self.client.fetch_orders(symbol, None, None, {"trigger": True}):
                self.ids.learn(parse.order_report(raw), parse.algo_child_id(raw))
            unknown = {o for o in unknown if self.ids.attribution(o) is None}
            if not unknown:
                return
            for raw in await self.client.fetch_orders(symbol):
                self.ids.learn(parse.order_report(raw))

    async def _completed(self, symbol: Symbol, raw: parse.Raw, report: OrderReport) -> OrderReport:
        """A conditional order that fired is as filled as the child order it became."""
        child_id = parse.algo_child_id(raw)
        self.ids.learn(report, child_id)
        if child_id is None:
            return report
        try:
            with self.translated(Call.QUERY):
                child = parse.order_report(await self.client.fetch_order(child_id, symbol))
        except OrderNotFound:
            return report  # not in the matching engine (yet): the algo order's own fields stand
        return parse.with_child(report, child)

    async def _trades(self, symbol: Symbol, since: datetime | None) -> list[parse.Raw]:
        """userTrades from `since`, through Binance's 7-day windows and 1000-trade pages."""
        if since is None:
            with self.translated(Call.QUERY):
                result: list[parse.Raw] = await self.client.fetch_my_trades(symbol, None, TRADES_PAGE)
            return result
        start, until = self.exchange_ms(since), self.exchange_now_ms() + CLOCK_SLACK_MS
        seen: dict[str, parse.Raw] = {}
        while True:
            with self.translated(Call.QUERY):
                page: list[parse.Raw] = await self.client.fetch_my_trades(symbol, start, TRADES_PAGE)
            for trade in page:
                seen[str(trade["id"])] = trade
            if len(page) >= TRADES_PAGE:
                last = int(page[-1]["timestamp"])
                start = last if last > start else start + 1
            elif until - start >= WEEK_MS:  # ccxt asked for [start, start + 7 days] only
                start += WEEK_MS
            else:
                break
        return sorted(seen.values(), key=lambda t: (int(t["timestamp"]), str(t["id"])))
