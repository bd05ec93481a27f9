"""`CcxtBybitExchange`: the Exchange port on Bybit v5 linear perpetuals through unmodified `ccxt.pro.bybit`.

Against the simulator server (`warden sim serve --venue bybit`, credentials sim-key / sim-secret):

    CcxtBybitExchange.create(api_key="sim-key", api_secret="sim-secret", base_url="http://127.0.0.1:8765")

Against Bybit itself (no base_url), or its testnet (`testnet=True`).

- Entries are market orders with warden's client id as `orderLinkId` (36 of [A-Za-z0-9_-];
  warden's ids fit, and Bybit accepts each one once, ever). Stops are conditional market
  orders (`stopLossPrice`: ccxt sends triggerPrice + triggerDirection + reduceOnly) with
  `closeOnTrigger`, take-profits the same with `takeProfitPrice`; both trigger on the mark
  (`triggerBy=MarkPrice`) and carry exact quantities. Never the position-level
  trading-stop endpoint: it has no client id.
- An order answer carries ids only. A market order's answer is followed by one bounded lookup
  (it is usually filled by then: the report is definite and the stop can go out at once);
  otherwise, and for every other answer, the report is OPEN with nothing filled and the truth
  comes from the `execution` stream, from lookups, or from `/v5/execution/list`.
- Orders are looked up by orderLinkId through `/v5/order/realtime` (open, and recently closed
  ones) then `/v5/order/history`, with `orderFilter` StopOrder for conditional orders and
  Order for the rest (ccxt's own `fetch_order` refuses without `acknowledged`).
- At the first `instruments()` (engine start): one-way position mode (`switch-mode`, mode 0),
  then the configured margin mode and leverage; "not modified" answers are fine.
- The stream: `order` and `execution` after `op: auth` on `/v5/private`, `tickers.<symbol>`
  on `/v5/public/linear`; ccxt pings every `keepalive_ms` and declares a socket dead after
  two intervals without a pong, and `CcxtStream` reconnects and reports a StreamGap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from warden.adapters.ccxt import errors, parse_bybit
from warden.adapters.ccxt.adapter import (
    CLOCK_SLACK_MS,
    CcxtAdapter,
    Setting,
    header,
    is_loopback,
    now,
    resynced,
)
from warden.adapters.ccxt.config import DEFAULT_TIMEOUT_MS, bybit_config, point_bybit_at
from warden.adapters.ccxt.errors import Call
from warden.adapters.ccxt.ids import OrderIds
from warden.adapters.ccxt.parse import Raw
from warden.domain.reports import FillReport, OrderReport, OrderRequest, PositionReport, StreamEvent
from warden.domain.values import Instrument, OrderType, Symbol
from warden.ports import ExchangeError, ExchangeTimeout, ExchangeUnavailable, OrderNotFound

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000
DEFAULT_KEEPALIVE_MS = 18_000
"""Bybit drops a socket that has not pinged for 20 s; ccxt's own default for it is 18 s."""
CONFIRM_TIMEOUT = 1.0
"""Seconds the lookup after a market order's answer may take before the answer stands as is."""
MAX_PAGES = 100
"""A bound on cursor pages per query (50 orders, 200 positions, 100 executions a page)."""
PRIVATE_WATCHES = ("orders", "myTrades")
"""ccxt's subscription keys (message hashes) of the stream's two private watches."""
LOGIN_VALID_MS = 10_000
"""How far ahead of the exchange's now a private-socket login's `expires` is (as ccxt signs it)."""
RATE_LIMITED = frozenset({"10006", "10018"})
"""retCodes refusing for too many requests (HTTP 200): the account's API rate limit ("Too many
visits"), the IP's rate limit."""
RESET_HEADER = "X-Bapi-Limit-Reset-Timestamp"
"""Sent with every answer: when the endpoint's window resets (ms, Bybit's clock) once the limit
was exceeded, otherwise just the current time."""
MAX_RESET_WAIT = 60.0
"""Seconds at most that a reset timestamp holds requests back. Bybit's windows are a second (a
minute for a few endpoints): one further off is a clock or a value gone wrong, and warden would
otherwise place, move or close no stop for as long (logged when cut)."""
NO_RESET_WAIT = 1.0
"""Seconds held back after a rate-limit refusal without a readable reset timestamp: one window."""
IP_LIMIT_WAIT = 600.0
"""Seconds held back after an HTTP 403: Bybit's answer to an IP over its limit ("access too
frequent"), after which it says to stop all HTTP sessions and wait at least 10 minutes."""


class CcxtBybitExchange(CcxtAdapter):
    """One Bybit unified trading account, USDT-settled linear perpetuals, one-way mode."""

    venue = "bybit"
    codes = errors.BYBIT
    channels = {"private": "/v5/private", "market": "/v5/public/"}

    not_modified = errors.BYBIT_NOT_MODIFIED
    busy_refusals = errors.BYBIT_BUSY
    clock_refusals = errors.BYBIT_CLOCK

    def __init__(self, client: Any, *, confirm_timeout: float = CONFIRM_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.ids = OrderIds()
        self.confirm_timeout = confirm_timeout
        self._acknowledged: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        """Per ccxt socket, the req_ids of its subscriptions Bybit acknowledged (see `subscribed`);
        they go with the socket."""
        self._ccxt_subscription_status = client.handle_subscription_status
        client.handle_subscription_status = self._subscription_status

    @classmethod
    def create(
        cls,
        *,
        api_key: str,
        api_secret: str,
        base_url: str | None = None,
        testnet: bool = False,
        enable_rate_limit: bool | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        options: dict[str, Any] | None = None,
        symbols: Sequence[Symbol] | None = None,
        session: Any | None = None,
        keepalive_ms: int = DEFAULT_KEEPALIVE_MS,
        leverage: int | None = None,
        margin_mode: str | None = None,
    ) -> CcxtBybitExchange:
        """Build the ccxt client. `base_url` (http://host:port) points every URL at a local server;
        otherwise `testnet` selects api-testnet.bybit.com. `session`: an aiohttp ClientSession for
        REST and websockets (the caller closes it). `leverage` / `margin_mode` ("cross" or
        "isolated"): applied at the first `instruments()`; None leaves the account as it is."""
        import ccxt.pro

        if enable_rate_limit is None:
            enable_rate_limit = not is_loopback(base_url)  # nothing to pace against a local simulator
        config = bybit_config(
            api_key=api_key,
            api_secret=api_secret,
            enable_rate_limit=enable_rate_limit,
            timeout_ms=timeout_ms,
            options=options,
            session=session,
            keepalive_ms=keepalive_ms,
        )
        client = ccxt.pro.bybit(config)
        if base_url is not None:
            point_bybit_at(client, base_url)
        elif testnet:
            client.set_sandbox_mode(True)
        return cls(client, symbols=symbols, leverage=leverage, margin_mode=margin_mode)

    # ----- Bybit's rate limits ------------------------------------------------------------

    def told_to_wait(
        self, status: Any, headers: Mapping[Any, Any], response: Any
    ) -> tuple[float, str] | None:
        """Bybit refuses an account over its rate limit with HTTP 200 and retCode 10006 (10018 for
        the IP), and says in `X-Bapi-Limit-Reset-Timestamp` (ms, its clock) when the window resets;
        an IP over its limit gets HTTP 403, to wait at least 10 minutes. A successful answer's
        `X-Bapi-Limit-Status` of 0 holds nothing back: its reset timestamp is then only the current
        time (Bybit's documentation), so it does not say until when, and the next request finds out."""
        if status == 403:
            return IP_LIMIT_WAIT, "IP limit (HTTP 403)"
        code = response.get("retCode") if isinstance(response, Mapping) else None
        if str(code) not in RATE_LIMITED:
            return super().told_to_wait(status, headers, response)
        reset = header(headers, RESET_HEADER).strip()
        if not reset.isdigit():
            return NO_RESET_WAIT, f"retCode {code} (no {RESET_HEADER})"
        seconds = (int(reset) - self.exchange_now_ms()) / 1000
        if seconds > MAX_RESET_WAIT:
            log.warning(
                "bybit: %s %s is %.0f s away, beyond any of Bybit's windows: holding back %.0f s only",
                RESET_HEADER,
                reset,
                seconds,
                MAX_RESET_WAIT,
            )
            seconds = MAX_RESET_WAIT
        return seconds, RESET_HEADER

    def limits_address(self, status: Any, response: Any) -> bool:
        """Bybit's 403 and retCode 10018 limit the IP; 10006 the account (its UID)."""
        code = response.get("retCode") if isinstance(response, Mapping) else None
        return status == 403 or str(code) == "10018"

    # ----- the Exchange port ----------------------------------------------------------

    def parse_instrument(self, market: Raw) -> Instrument | None:
        return parse_bybit.instrument(market)

    def account_settings(self, symbols: Sequence[Symbol]) -> list[Setting]:
        """One-way position mode (switch-mode 0, USDT), then the margin mode (account-wide on a
        unified account) and the leverage of every symbol, when configured."""
        client = self.client
        settings: list[Setting] = [
            ("one-way position mode", partial(client.set_position_mode, False, None, {"coin": "USDT"}))
        ]
        if self.margin_mode is not None:
            mode = self.margin_mode
            settings.append((f"{mode} margin", partial(client.set_margin_mode, mode)))
        leverage = self.leverage
        if leverage is not None:
            settings += [
                (f"{s} leverage {leverage}", partial(client.set_leverage, leverage, s)) for s in symbols
            ]
        return settings

    async def mark_price(self, symbol: Symbol) -> Decimal:
        with self.translated(Call.QUERY):
            ticker = parse_bybit.mark_price(await self.client.fetch_ticker(symbol))
        if ticker is None:
            raise ExchangeUnavailable(f"no mark price for {symbol}")
        return ticker.price

    @resynced
    async def place_order(self, request: OrderRequest) -> OrderReport:
        """Send with warden's client id as orderLinkId; the answer is ids only: OPEN, unfilled."""
        await self.check_precision(request)
        params: dict[str, Any] = {"clientOrderId": request.client_order_id, "positionIdx": 0}
        if request.reduce_only:
            params["reduceOnly"] = True
        if request.type.conditional:
            stop = request.type is OrderType.STOP_MARKET
            params["stopLossPrice" if stop else "takeProfitPrice"] = str(request.trigger_price)
            params["triggerBy"] = "MarkPrice"
            params["reduceOnly"] = True
            if stop:
                params["closeOnTrigger"] = True
        with self.translated(Call.ORDER):
            answer = await self.client.create_order(
                request.symbol, "market", request.side.value, str(request.qty), None, params
            )
            report = parse_bybit.acknowledged(request, parse_bybit.order_id(answer), now())
        self.ids.learn(report)
        if request.type is OrderType.MARKET:
            return await self._confirmed(request, report)
        return report

    async def _confirmed(self, request: OrderRequest, acknowledged: OrderReport) -> OrderReport:
        """One bounded lookup right after a market order's ids-only answer: a market order is
        usually filled by then, and a definite report lets the stop go out at once. Anything
        else (still New, not visible yet, the lookup failing or slow) leaves the answer as it
        is, OPEN and unfilled: working, for the engine to resolve."""
        try:
            async with asyncio.timeout(self.confirm_timeout):
                found = await self.fetch_order(request.symbol, request.client_order_id, conditional=False)
        except (ExchangeError, TimeoutError) as exc:
            log.debug("bybit: %s not confirmed after its answer: %r", request.client_order_id, exc)
            return acknowledged
        return found if found.exchange_order_id == acknowledged.exchange_order_id else acknowledged

    @resynced
    async def cancel_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        """Cancel by orderLinkId (either kind: Bybit's linear cancel takes no filter), then read it back."""
        with self.translated(Call.ORDER):
            await self.client.cancel_order(None, symbol, {"orderLinkId": client_order_id})
        try:
            return await self.fetch_order(symbol, client_order_id, conditional)
        except ExchangeError as exc:
            raise ExchangeTimeout(
                f"{client_order_id} canceled, but its state could not be read: {exc}"
            ) from exc

    @resynced
    async def fetch_order(self, symbol: Symbol, client_order_id: str, conditional: bool) -> OrderReport:
        """realtime (open, and the recently closed) then history; the filter keeps the kinds apart."""
        params: dict[str, Any] = {"orderLinkId": client_order_id}
        params.update({"trigger": True} if conditional else {"orderFilter": "Order"})
        with self.translated(Call.QUERY):
            found = await self.client.fetch_open_orders(symbol, None, None, params)
            if not found:
                found = await self.client.fetch_canceled_and_closed_orders(symbol, None, None, params)
            mine = [o for o in found if parse_bybit.order_report(o).client_order_id == client_order_id]
            if not mine:
                kind = "conditional order" if conditional else "order"
                raise OrderNotFound(f"no {kind} with orderLinkId {client_order_id!r} in {symbol}")
            report = parse_bybit.order_report(mine[0])
        self.ids.learn(report)
        return report

    @resynced
    async def fetch_open_orders(self) -> list[OrderReport]:
        """Every open order: plain (orderFilter Order) and conditional (StopOrder), all pages."""
        raws: list[Raw] = []
        for params in ({"orderFilter": "Order"}, {"trigger": True}):
            raws += await self._pages(lambda p: self.client.fetch_open_orders(None, None, 50, p), params, 50)
        with self.translated(Call.QUERY):
            reports = [parse_bybit.order_report(o) for o in raws]
        for report in reports:
            self.ids.learn(report)
        return reports

    @resynced
    async def fetch_positions(self) -> list[PositionReport]:
        raws = await self._pages(lambda p: self.client.fetch_positions(None, p), {"limit": 200}, 200)
        with self.translated(Call.QUERY):
            found = [parse_bybit.position_report(p) for p in raws]
        return [p for p in found if p is not None]

    @resynced
    async def fetch_fills(self, symbol: Symbol, since: datetime | None) -> list[FillReport]:
        """Executions in `symbol` since `since` (Trade, AdlTrade, BustTrade), through Bybit's
        7-day windows and cursor pages; each names its order by orderLinkId."""
        with self.translated(Call.QUERY):
            await self.client.load_markets()
            market = self.client.market(symbol)
        until = self.exchange_now_ms() + CLOCK_SLACK_MS  # the exchange's clock (see CLOCK_SLACK_MS)
        start = until - WEEK_MS if since is None else self.exchange_ms(since)
        if start > until:
            return []  # nothing has happened after now
        seen: dict[str, FillReport] = {}
        while True:
            end = min(start + WEEK_MS, until)
            for trade in await self._executions(market, start, end):
                if parse_bybit.is_fill(trade):
                    with self.translated(Call.QUERY):
                        known = self.ids.attribution(str(trade.get("order")))
                        fill = parse_bybit.fill_report(trade, known[0] if known else None)
                    seen[fill.trade_id] = fill
            if end >= until:
                break
            start = end + 1
        return sorted(seen.values(), key=lambda f: (f.at, f.trade_id))

    # ----- the stream's batches -> events ----------------------------------------------

    async def login_private(self) -> None:
        """Log the private socket in with `expires` on the exchange's clock. ccxt's own login
        (`authenticate`) signs `expires` = host time + 10 s without the measured difference, so a
        host more than 10 s behind Bybit sends an already expired login, refused every time: no
        fills or order updates by the stream. ccxt's `authenticate` takes the login's fields as
        `params`: the same request, signed here with `nonce()` (host time less the difference);
        once the socket is logged in, ccxt's watches reuse it."""
        client = self.client
        urls = {
            await client.get_url_by_market_type(None, True, method, {})
            for method in ("watchOrders", "watchMyTrades")
        }
        for url in sorted(urls):
            if client.safe_value(client.client(url).subscriptions, "authenticated") is not None:
                continue  # logged in, or a login under way (ccxt awaits it)
            expires = str(int(client.nonce()) + LOGIN_VALID_MS)
            signature = client.hmac(
                client.encode("GET/realtime" + expires), client.encode(client.secret), hashlib.sha256, "hex"
            )
            await client.authenticate(url, {"args": [client.apiKey, expires, signature]})

    def subscribed(self, channel: str) -> bool:
        """Whether Bybit acknowledged the `order` and `execution` subscriptions of the current
        private socket. A reconnected socket receives nothing until then, and the StreamGap (after
        which the engine reconciles over REST) must not come before it. The market channel needs
        no confirmation: a mark missed meanwhile is replaced by the next."""
        if channel != "private":
            return True
        fragment = self.channels["private"]
        sockets = [c for url, c in list(self.client.clients.items()) if fragment in str(url)]
        if not sockets:
            return False
        for socket in sockets:
            acknowledged = self._acknowledged.get(socket, set())
            for message_hash in PRIVATE_WATCHES:
                subscription = socket.subscriptions.get(message_hash)
                if subscription is None:
                    return False  # the watch has not subscribed on this socket yet
                if isinstance(subscription, dict) and str(subscription.get("id")) not in acknowledged:
                    return False  # sent, not acknowledged
        return True

    def _subscription_status(self, socket: Any, message: Any) -> Any:
        """ccxt's handler of a `subscribe` answer (it keeps nothing), noting the acknowledgement.
        A refused subscription does not get here: ccxt rejects the watch with the error."""
        if isinstance(message, dict) and message.get("op") == "subscribe" and message.get("success"):
            acknowledged = self._acknowledged.setdefault(socket, set())
            req_id = message.get("req_id")
            if req_id is not None and str(req_id) != "":
                acknowledged.add(str(req_id))
            else:  # without its req_id, it answers the oldest unanswered (answers come in order)
                subscriptions = list(socket.subscriptions.values())
                sent = [str(s["id"]) for s in subscriptions if isinstance(s, dict) and "id" in s]
                oldest = next((i for i in sent if i not in acknowledged), None)
                if oldest is not None:
                    acknowledged.add(oldest)
        return self._ccxt_subscription_status(socket, message)

    async def watch_marks(self) -> Any:
        """`tickers.<symbol>` for the configured symbols, else every loaded linear perpetual."""
        symbols = self.symbols
        if symbols is None:
            markets = await self.client.load_markets()
            symbols = sorted(s for s, m in markets.items() if m.get("swap") and m.get("linear"))
        return await self.client.watch_tickers(symbols)

    async def order_events(self, batch: list[Raw]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for raw in batch:
            report = parse_bybit.order_report(raw)
            self.ids.learn(report)
            events.append(report)
        return events

    async def trade_events(self, batch: list[Raw]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for raw in batch:
            if parse_bybit.is_fill(raw):
                known = self.ids.attribution(str(raw.get("order")))
                events.append(parse_bybit.fill_report(raw, known[0] if known else None))
        return events

    async def mark_events(self, batch: dict[str, Raw]) -> list[StreamEvent]:
        marks = (parse_bybit.mark_price(ticker) for ticker in batch.values())
        return [m for m in marks if m is not None]

    # ----- helpers --------------------------------------------------------------------

    async def _pages(
        self, call: Callable[[dict[str, Any]], Awaitable[list[Raw]]], params: dict[str, Any], size: int
    ) -> list[Raw]:
        """Every page of a cursor-paged list (ccxt leaves the cursor in the first item's info)."""
        rows: list[Raw] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            with self.translated(Call.QUERY):
                page = await call({**params, **({"cursor": cursor} if cursor else {})})
            rows += page
            cursor = _cursor(page)
            if not cursor or len(page) < size:
                return rows
        raise ExchangeUnavailable(f"more than {MAX_PAGES} pages: {params}")

    async def _executions(self, market: Raw, start: int, end: int) -> list[Raw]:
        """One window of /v5/execution/list, every page, every execType (ccxt's fetch_my_trades
        asks for execType=Trade only and would hide liquidations and ADL)."""
        rows: list[Raw] = []
        cursor = ""
        for _ in range(MAX_PAGES):
            request: dict[str, Any] = {
                "category": "linear",
                "symbol": market["id"],
                "startTime": start,
                "endTime": end,
                "limit": 100,
            }
            if cursor:
                request["cursor"] = cursor
            with self.translated(Call.QUERY):
                response = await self.client.privateGetV5ExecutionList(request)
                result = response.get("result") or {}
                page = result.get("list") or []
                rows += self.client.parse_trades(page, market)
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor or len(page) < 100:
                return rows
        raise ExchangeUnavailable(f"more than {MAX_PAGES} pages of executions in {market['symbol']}")


def _cursor(page: list[Raw]) -> str:
    """The next page's cursor: ccxt puts it in the info of the raw list's first item, and then
    sorts the parsed items by time, so it may be on any of them."""
    for item in page:
        info = item.get("info")
        if isinstance(info, dict) and info.get("nextPageCursor"):
            return str(info["nextPageCursor"])
    return ""
