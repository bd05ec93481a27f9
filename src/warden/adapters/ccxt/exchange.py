"""`CcxtExchange`: the Exchange port on Binance USD-M through unmodified `ccxt.pro.binanceusdm`.

Against the simulator server (`warden sim serve`, default credentials sim-key / sim-secret):

    CcxtExchange.create(api_key="sim-key", api_secret="sim-secret", base_url="http://127.0.0.1:8765")

Against Binance itself (no base_url):

    CcxtExchange.create(api_key=..., api_secret=...)

Every ccxt call runs inside `translated(...)` (errors.py, the one translation table) and
every ccxt structure is parsed once, here at the boundary (parse.py). Conditional orders
are sent with `stopLossPrice` / `takeProfitPrice` (ccxt routes them to the algo endpoint)
and `workingType=MARK_PRICE` (stops fire on the mark, as warden and the simulator assume);
fetch and cancel pass `{'trigger': True}` for them, because ccxt does not route those.
Every method is a plain chain of awaits with no state changed before the response, so
any call can be cancelled by a deadline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt
from warden.adapters.ccxt import parse
from warden.adapters.ccxt.config import DEFAULT_TIMEOUT_MS, client_config, point_at
from warden.adapters.ccxt.errors import Call, translated
from warden.adapters.ccxt.ids import OrderIds
from warden.adapters.ccxt.stream import CcxtStream
from warden.domain.margin import SymbolConfig
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import Instrument, OrderType, Symbol
from warden.ports import ExchangeError, ExchangeTimeout, ExchangeUnavailable, OrderNotFound, OrderRejected

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000
TRADES_PAGE = 1000


USDM_MS_PER_WEIGHT = 25
"""Binance USD-M allows 2,400 request weight a minute: 25 ms per unit of ccxt's cost."""


def _is_loopback(base_url: str | None) -> bool:
    if base_url is None:
        return False
    host = urlsplit(base_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class CcxtExchange:
    """One Binance USD-M account. `symbols`: the markets whose mark prices the stream carries
    (None: all of them, through the single `!markPrice@arr@1s` stream)."""

    def __init__(
        self,
        client: Any,
        *,
        symbols: Sequence[Symbol] | None = None,
        resolve_timeout: float = 5.0,
        reconnect_wait: float = 30.0,
    ) -> None:
        self.client = client
        self.symbols = list(symbols) if symbols else None
        self.ids = OrderIds()
        self.resolve_timeout = resolve_timeout
        self.reconnect_wait = reconnect_wait
        self._streams: list[CcxtStream] = []

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
    ) -> CcxtExchange:
        """Build the ccxt client. `base_url` (http://host:port) points every URL at a local server.

        `session`: an aiohttp ClientSession for REST and websockets (e.g. with a TraceConfig
        that records every request); the caller closes it. `options` are merged into ccxt's.
        """
        import ccxt.pro

        if enable_rate_limit is None:
            # ccxt's limiter queues every call, orders included, behind heavy queries (a
            # 40-weight openOrders waits ~1 s). Against a local simulator there is no limit
            # to respect, so it is off; against Binance it is on, paced at USD-M's real
            # 2,400 weight per minute (25 ms per unit) rather than ccxt's 1,200.
            enable_rate_limit = not _is_loopback(base_url)
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
        return cls(client, symbols=symbols)

    # ----- the Exchange port ----------------------------------------------------------

    async def instruments(self) -> dict[Symbol, Instrument]:
        with translated(Call.QUERY):
            markets = await self.client.load_markets()
            found = [parse.instrument(m) for m in markets.values()]
        return {i.symbol: i for i in found if i is not None}

    async def mark_price(self, symbol: Symbol) -> Decimal:
        with translated(Call.QUERY):
            ticker = parse.mark_price(await self.client.fetch_mark_price(symbol))
        if ticker is None:
            raise ExchangeUnavailable(f"no mark price for {symbol}")
        return ticker.price

    async def place_order(self, request: OrderRequest) -> OrderReport:
        """Send with warden's client id; refuse (before sending) what ccxt would silently round."""
        await self._check_precision(request)
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        if request.type.conditional:
            key = "stopLossPrice" if request.type is OrderType.STOP_MARKET else "takeProfitPrice"
            params[key] = str(request.trigger_price)
            params["workingType"] = "MARK_PRICE"
        with translated(Call.ORDER):
            raw = await self.client.create_order(
                request.symbol, "market", request.side.value, str(request.qty), None, params
            )
            report = parse.order_report(raw)
        self.ids.learn(report)
        return report

    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if conditional:
            params["trigger"] = True
        with translated(Call.ORDER):
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

    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if conditional:
            params["trigger"] = True
        with translated(Call.QUERY):
            raw = await self.client.fetch_order(None, symbol, params)
            report = parse.order_report(raw)
        if conditional:
            return await self._completed(symbol, raw, report)
        self.ids.learn(report)
        return report

    async def fetch_open_orders(self) -> list[OrderReport]:
        """Every open order: `/openOrders` and, separately, `/openAlgoOrders`."""
        with translated(Call.QUERY):
            plain = await self.client.fetch_open_orders()
            algo = await self.client.fetch_open_orders(None, None, None, {"trigger": True})
            reports = [parse.order_report(o) for o in plain + algo]
        for report in reports:
            self.ids.learn(report)
        return reports

    async def fetch_positions(self) -> list[PositionReport]:
        with translated(Call.QUERY):
            found = [parse.position_report(p) for p in await self.client.fetch_positions()]
        return [p for p in found if p is not None]

    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        """Trades in `symbol` since `since`, attributed to client ids (fired stops to the stop's id)."""
        trades = await self._trades(symbol, since)
        await self.resolve(symbol, {str(t["order"]) for t in trades})
        fills = []
        with translated(Call.QUERY):
            for trade in trades:
                order_id = str(trade["order"])
                owner = self.ids.attribution(order_id)
                client_id, exchange_id = owner or (parse.raw_client_id(trade) or "", order_id)
                fills.append(parse.fill_report(trade, client_id, exchange_id))
        return fills

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        """GET /fapi/v1/symbolConfig for one symbol (ccxt's fetch_leverages reads it)."""
        with translated(Call.QUERY):
            await self.client.load_markets()
            market_id = self.client.market(symbol)["id"]
            found = await self.client.fetch_leverages([symbol], {"symbol": market_id})
            return parse.symbol_config(found[symbol])

    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        """POST /fapi/v1/leverage and /fapi/v1/marginType. Binance answers -4046 when the margin
        mode is already the wanted one: that is success, not a refusal. A refusal (-4048: a position
        is open) is OrderRejected; no answer is ExchangeTimeout (read symbol_config again)."""
        with translated(Call.ORDER):
            if config.leverage is not None:
                await self.client.set_leverage(config.leverage, symbol)
            if config.margin_mode is not None:
                with contextlib.suppress(ccxt.MarginModeAlreadySet):
                    await self.client.set_margin_mode(config.margin_mode.value, symbol)

    def stream(self) -> AsyncIterator[StreamEvent]:
        """Fills, order updates and mark prices; a StreamGap once a dropped socket is back."""
        stream = CcxtStream(self, now=_now)
        self._streams.append(stream)
        return stream.events()

    async def close(self) -> None:
        for stream in self._streams:
            await stream.stop()
        self._streams.clear()
        await self.client.close()

    # ----- helpers --------------------------------------------------------------------

    async def _check_precision(self, request: OrderRequest) -> None:
        """ccxt truncates quantities and rounds prices to the market's precision without a word;
        an order warden did not size exactly is refused here instead of sent as something else."""
        if request.type.conditional and request.trigger_price is None:
            raise OrderRejected(f"{request.client_order_id}: a conditional order needs a trigger price")
        with translated(Call.QUERY):
            await self.client.load_markets()
        with translated(Call.ORDER):
            amount = self.client.amount_to_precision(request.symbol, str(request.qty))
            price = (
                self.client.price_to_precision(request.symbol, str(request.trigger_price))
                if request.trigger_price is not None
                else None
            )
        cid = request.client_order_id
        if Decimal(str(amount)) != request.qty:
            raise OrderRejected(f"{cid}: qty {request.qty} is not a whole number of lots")
        if price is not None and Decimal(str(price)) != request.trigger_price:
            raise OrderRejected(f"{cid}: trigger {request.trigger_price} is not on the tick")

    async def resolve(self, symbol: Symbol, order_ids: set[str]) -> None:
        """Learn which client ids `order_ids` belong to: fired algo orders first, then plain orders."""
        unknown = {o for o in order_ids if self.ids.attribution(o) is None}
        if not unknown:
            return
        with translated(Call.QUERY):
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
            with translated(Call.QUERY):
                child = parse.order_report(await self.client.fetch_order(child_id, symbol))
        except OrderNotFound:
            return report  # not in the matching engine (yet): the algo order's own fields stand
        return parse.with_child(report, child)

    async def _trades(self, symbol: Symbol, since: datetime | None) -> list[parse.Raw]:
        """userTrades from `since`, through Binance's 7-day windows and 1000-trade pages."""
        if since is None:
            with translated(Call.QUERY):
                result: list[parse.Raw] = await self.client.fetch_my_trades(symbol, None, TRADES_PAGE)
            return result
        start, now = int(since.timestamp() * 1000), int(_now().timestamp() * 1000)
        seen: dict[str, parse.Raw] = {}
        while True:
            with translated(Call.QUERY):
                page: list[parse.Raw] = await self.client.fetch_my_trades(symbol, start, TRADES_PAGE)
            for trade in page:
                seen[str(trade["id"])] = trade
            if len(page) >= TRADES_PAGE:
                last = int(page[-1]["timestamp"])
                start = last if last > start else start + 1
            elif now - start >= WEEK_MS:  # ccxt asked for [start, start + 7 days] only
                start += WEEK_MS
            else:
                break
        return sorted(seen.values(), key=lambda t: (int(t["timestamp"]), str(t["id"])))


def _now() -> datetime:
    return datetime.now(UTC)
