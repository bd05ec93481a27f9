"""What every ccxt-backed `Exchange` adapter shares, whatever the venue.

The venue adapters (`CcxtExchange` for Binance USD-M, `CcxtBybitExchange` for Bybit v5
linear) subclass `CcxtAdapter`: it holds the ccxt client, runs every ccxt call inside the
venue's error translation (`translated(call, self.codes)`), refuses before sending what ccxt
would silently round, builds the merged stream (`CcxtStream`), and closes everything.
Every method is a plain chain of awaits with no state changed before the response, so any
call can be cancelled by a deadline.

The host's clock against the exchange's: Binance USD-M refuses a signed request whose timestamp
is more than 1 s in its future or older than recvWindow (-1021), Bybit v5 the same (retCode
10002), before processing it. ccxt's `load_time_difference` reads the venue's time endpoint and
keeps host minus exchange time in `options['timeDifference']`, which its `nonce()` subtracts from
every request's timestamp. The first `instruments()` (the engine's first call) and the stream's
sockets measure it, once (`ensure_clock`), before loading the markets: ccxt's own
`adjustForTimeDifference` measures inside fetch_markets, too late for Bybit, whose load_markets
first asks the signed `/v5/asset/coin/query-info`. A port method refused for its timestamp
(`clock_refusals`) measures again and runs once more (`@resynced`): nothing was processed, so
that is safe. No request is added to an order. A difference above `CLOCK_WARN_MS` is logged
(once, and again when it moves by more than that) and reported as a warning
(`report_warnings`: /status).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

import ccxt
from warden.adapters.ccxt.errors import Call, CodeTable, error_code, translated
from warden.adapters.ccxt.parse import Raw, symbol_config
from warden.adapters.ccxt.stream import CcxtStream
from warden.domain.margin import SymbolConfig
from warden.domain.reports import OrderRequest, StreamEvent
from warden.domain.values import Instrument, Symbol
from warden.ports import ExchangeError, OrderRejected

log = logging.getLogger(__name__)

MARGIN_MODES = ("cross", "isolated")

Setting = tuple[str, Callable[[], Awaitable[Any]]]
"""(what it sets, the ccxt call that sets it)."""

CLOCK_WARN_MS = 1000
"""A host clock further than this from the exchange's is reported (log and /status). Both venues
refuse a request stamped more than 1 s in their future: past this, warden trades only because it
corrects every timestamp, and a clock that keeps drifting costs a refused request each time it
moves out of the window again."""
CLOCK_SLACK_MS = 60_000
"""How far past "now" on the exchange's clock a query for fills reaches. The measured difference
overstates the host's lead by the time its answer took, so the host's now converted lies that far
behind the exchange's present, and a fill of that moment would fall after the query's end. (Bybit's
own end, given a start only, is the start plus 7 days: the future is asked for anyway.)"""

WarningReport = Callable[[str, str | None], None]
"""(key, text) when a warning appears or changes; (key, None) when it clears."""

A = TypeVar("A", bound="CcxtAdapter")
P = ParamSpec("P")
R = TypeVar("R")


def resynced(
    method: Callable[Concatenate[A, P], Awaitable[R]],
) -> Callable[Concatenate[A, P], Coroutine[Any, Any, R]]:
    """A port method refused for its timestamp (the venue's `clock_refusals`: refused before
    processing, nothing changed) measures the clock difference again and runs once more."""

    @functools.wraps(method)
    async def call(self: A, /, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()
        try:
            return await method(self, *args, **kwargs)
        except ExchangeError as exc:
            if not self.refused_for_clock(exc):
                raise
            log.warning(
                "%s: %s refused for its timestamp, measuring the clock again: %s",
                self.venue,
                method.__name__,
                exc,
            )
            await self.measure_clock(unless_after=started)
        return await method(self, *args, **kwargs)

    return call


def is_loopback(base_url: str | None) -> bool:
    if base_url is None:
        return False
    host = urlsplit(base_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def now() -> datetime:
    return datetime.now(UTC)


def header(headers: Mapping[Any, Any], name: str) -> str:
    """A response header's value, whatever the case of its name ("" when absent)."""
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if str(k).lower() == wanted), "")


class AddressHolds:
    """Holds on an exchange's address (scheme, host and port) that every client of this process
    shares: a limit or a ban on this machine's IP (Binance's request-weight 429 and its 418,
    Bybit's 403 and retCode 10018) stops every account sending from here, not only the one told;
    one of them sending on would earn the ban for all."""

    def __init__(self) -> None:
        self._until: dict[str, tuple[float, str]] = {}

    def hold(self, address: str, seconds: float, why: str) -> None:
        until = time.monotonic() + seconds
        if seconds > 0 and until > self._until.get(address, (float("-inf"), ""))[0]:
            self._until[address] = (until, why)

    def until(self, address: str) -> tuple[float, str]:
        """(time.monotonic() before which nothing is sent to `address`, what said so)."""
        return self._until.get(address, (float("-inf"), ""))

    def clear(self) -> None:
        self._until.clear()


ADDRESS_HOLDS = AddressHolds()
"""This process's: one machine, one address at each exchange."""


def address_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class CcxtAdapter:
    """One account on one venue through an unmodified ccxt.pro client.

    `symbols`: the markets whose mark prices the stream carries (None: all of them).
    `leverage` / `margin_mode` ("cross" or "isolated"): set on the account at the first
    `instruments()` (the engine's start), with the venue's own settings (`account_settings`);
    None leaves the account as it is.
    """

    venue: ClassVar[str] = ""
    codes: ClassVar[CodeTable] = {}
    not_modified: ClassVar[frozenset[int]] = frozenset()
    busy_refusals: ClassVar[frozenset[int]] = frozenset()
    """Codes refusing a setting while the symbol has a position or open orders: at start the
    symbol is left as it is (the engine's margin check alerts margin_mismatch)."""
    channels: ClassVar[Mapping[str, str]] = {}
    clock_refusals: ClassVar[frozenset[int]] = frozenset()
    """Codes refusing a signed request for its timestamp (outside the venue's window)."""

    def __init__(
        self,
        client: Any,
        *,
        symbols: Sequence[Symbol] | None = None,
        resolve_timeout: float = 5.0,
        reconnect_wait: float = 30.0,
        leverage: int | None = None,
        margin_mode: str | None = None,
        address_holds: AddressHolds = ADDRESS_HOLDS,
    ) -> None:
        if margin_mode is not None and margin_mode not in MARGIN_MODES:
            raise ValueError(f"margin_mode must be one of {MARGIN_MODES}, not {margin_mode!r}")
        self.client = client
        self.symbols = list(symbols) if symbols else None
        self.resolve_timeout = resolve_timeout
        self.reconnect_wait = reconnect_wait
        self.leverage = leverage
        self.margin_mode = margin_mode
        self.prepared = False
        self._streams: list[CcxtStream] = []
        self.clock_difference_ms: int | None = None
        """The host's clock minus the exchange's, as last measured (None: not yet)."""
        self.warnings: dict[str, str] = {}
        self._report: WarningReport | None = None
        self._clock_lock = asyncio.Lock()
        self._clock_measured_at = float("-inf")  # time.monotonic() of the last measurement
        self._clock_logged: int | None = None  # the difference last logged as off
        self.rate_limited_until = float("-inf")
        """time.monotonic() before which no request is sent: what the exchange said when it refused
        for too many requests (`told_to_wait`)."""
        self.rate_limited_by = ""
        """What set `rate_limited_until` (the header or answer), for the refusals meanwhile."""
        self.address_holds = address_holds
        self._hold_back_when_told(client)

    # ----- the exchange's rate limits ------------------------------------------------------

    def _hold_back_when_told(self, client: Any) -> None:
        """An exchange refusing for too many requests says how long to stay away (`told_to_wait`:
        Binance's `Retry-After` on a 429 / 418, Bybit's reset timestamp on a retCode 10006 and its
        403 for the IP). Requests sent meanwhile are refused too, and both ban an IP that does not
        back off (Binance: 418, 2 minutes to 3 days; nothing can be placed, moved or closed
        meanwhile). ccxt reads none of it: its error handler (which sees every answer, with its
        headers) is wrapped to note it, and its `fetch` to refuse every REST request until then
        without sending it (DDoSProtection: ExchangeUnavailable, nothing happened)."""
        handle_errors, fetch = getattr(client, "handle_errors", None), getattr(client, "fetch", None)
        if handle_errors is None or fetch is None:
            return

        def noted(
            code: Any,
            reason: Any,
            url: Any,
            method: Any,
            headers: Any,
            body: Any = None,
            response: Any = None,
            *rest: Any,
        ) -> Any:
            told = self.told_to_wait(code, headers if isinstance(headers, Mapping) else {}, response)
            if told is not None:
                self.hold_back(*told)
                if self.limits_address(code, response):
                    self.address_holds.hold(address_of(str(url)), *told)
            return handle_errors(code, reason, url, method, headers, body, response, *rest)

        async def held(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            until, said = max(
                (self.rate_limited_until, self.rate_limited_by), self.address_holds.until(address_of(url))
            )
            left = until - time.monotonic()
            if left > 0:
                raise ccxt.DDoSProtection(
                    f"{self.venue} {method} {url} not sent: {left:.1f}s left of the exchange's {said}"
                )
            return await fetch(url, method, headers, body)

        client.handle_errors = noted
        client.fetch = held

    def told_to_wait(
        self, status: Any, headers: Mapping[Any, Any], response: Any
    ) -> tuple[float, str] | None:
        """How long an answer (HTTP status, headers, parsed body) says to stay away: (seconds, what
        said so), or None when it does not. Here a 429 / 418's `Retry-After` (whole seconds, as
        Binance sends it); a venue reading its own signals overrides."""
        if status not in (418, 429):
            return None
        value = header(headers, "Retry-After")
        if not value.strip().isdigit():
            return None
        return float(int(value)), "Retry-After"

    def limits_address(self, status: Any, response: Any) -> bool:
        """Whether a refusal for too many requests limits this machine's address rather than the
        account (`told_to_wait` said how long): Binance counts request weight per IP (a 429 with
        -1003) and bans the IP (418); too many orders (-1015) is the account's."""
        code = response.get("code") if isinstance(response, Mapping) else None
        return status == 418 or (status == 429 and str(code) != "-1015")

    def hold_back(self, seconds: float, why: str) -> None:
        """Send nothing for `seconds` (none when not above 0); a hold already longer stands."""
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        if until > self.rate_limited_until:
            self.rate_limited_until = until
            self.rate_limited_by = why
            log.warning("%s: rate limited, nothing is sent for %.1f s (%s)", self.venue, seconds, why)

    # ----- the host's clock against the exchange's -----------------------------------------

    def report_warnings(self, report: WarningReport) -> None:
        """From now on, warnings (the clock) go to `report`; what stands now is reported at once."""
        self._report = report
        for key, text in self.warnings.items():
            report(key, text)

    def refused_for_clock(self, exc: BaseException) -> bool:
        """Whether `exc` (a port error, its causes included) is the venue's timestamp refusal."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, ccxt.BaseError) and error_code(seen) in self.clock_refusals:
                return True
            seen = seen.__cause__
        return False

    async def ensure_clock(self) -> None:
        """Measure the clock difference unless it was measured already (the first signed request of
        the engine's start and of the stream's sockets wait for it; many callers measure once).
        Once measured it returns at once, without the lock: the stream asks before every watch,
        and must not wait on a measurement again (after a refusal) while the time endpoint is slow."""
        if self._clock_measured_at > float("-inf"):
            return
        await self.measure_clock(unless_after=float("-inf"))

    async def measure_clock(self, *, unless_after: float | None = None) -> None:
        """Measure host minus exchange time (one request to the venue's time endpoint) unless it was
        measured after `unless_after` (time.monotonic()): refusals arriving together measure once.
        ccxt subtracts it from the timestamp of every later request."""
        async with self._clock_lock:
            if unless_after is not None and self._clock_measured_at > unless_after:
                return
            with self.translated(Call.QUERY):
                difference = await self.client.load_time_difference()
            self._clock_measured_at = time.monotonic()
            self.judge_clock(difference)

    def exchange_ms(self, at: datetime) -> int:
        """`at`, an instant on the host's clock (the engine's), in epoch ms on the exchange's clock:
        less the measured difference. A request bounded by a time (an execution list's start and
        end) must ask in the exchange's time: on a host behind, "now" leaves out the last seconds;
        on a host ahead, "since the position opened" starts after its entry's fill."""
        return int(at.timestamp() * 1000) - (self.clock_difference_ms or 0)

    def exchange_now_ms(self) -> int:
        """The exchange's present in epoch ms (the host's now on the exchange's clock)."""
        return self.exchange_ms(now())

    def judge_clock(self, difference: Any) -> None:
        """Take a measured difference (ms, host minus exchange): log and warn when it is large."""
        if isinstance(difference, bool) or not isinstance(difference, int | float):
            return
        ms = int(difference)
        self.clock_difference_ms = ms
        if abs(ms) <= CLOCK_WARN_MS:
            if self._clock_logged is not None:
                log.warning(
                    "%s: the host's clock is back within %d ms of the exchange's", self.venue, abs(ms)
                )
            self._clock_logged = None
            self._warn("clock", None)
            return
        way = "ahead of" if ms > 0 else "behind"
        text = (
            f"the host's clock is {abs(ms) / 1000:.1f} s {way} {self.venue}'s: warden corrects the"
            " timestamp of its signed requests (measured at start and again after every refusal for"
            " the timestamp), but fix the host's time sync (NTP)"
        )
        if self._clock_logged is None or abs(ms - self._clock_logged) > CLOCK_WARN_MS:
            log.warning("%s: %s", self.venue, text)
            self._clock_logged = ms
        self._warn("clock", text)

    def _warn(self, key: str, text: str | None) -> None:
        if self.warnings.get(key) == text:
            return
        if text is None:
            self.warnings.pop(key, None)
        else:
            self.warnings[key] = text
        if self._report is not None:
            self._report(key, text)

    @resynced
    async def instruments(self) -> dict[Symbol, Instrument]:
        """The linear perpetuals; the first call measures the clock difference before anything is
        signed, and applies the account settings."""
        await self.ensure_clock()
        with self.translated(Call.QUERY):
            markets = await self.client.load_markets()
            found = [self.parse_instrument(m) for m in markets.values()]
        instruments = {i.symbol: i for i in found if i is not None}
        if not self.prepared:
            for what, call in self.account_settings(sorted(instruments)):
                await self._setting(what, call)
            self.prepared = True
        return instruments

    def parse_instrument(self, market: Raw) -> Instrument | None:
        raise NotImplementedError

    def account_settings(self, symbols: Sequence[Symbol]) -> list[Setting]:
        """What must hold on the account before trading, in order (none by default)."""
        return []

    async def _setting(self, what: str, call: Callable[[], Awaitable[Any]]) -> None:
        """A setting that must hold: done, or already so (a "not modified" answer), or a port error.
        A refusal because the symbol is busy (a position or open orders) does not fail the start:
        the symbol stays as it is and the engine's margin check alerts margin_mismatch."""
        try:
            with self.translated(Call.QUERY):
                try:
                    await call()
                except ccxt.BaseError as exc:
                    code = error_code(exc)
                    if code in self.busy_refusals:
                        log.warning(
                            "%s: %s refused while the symbol is busy, left as it is: %s",
                            self.venue,
                            what,
                            exc,
                        )
                        return
                    if code not in self.not_modified:
                        raise
                    log.debug("%s: %s already set", self.venue, what)
        except ExchangeError as exc:
            raise type(exc)(f"could not set {what}: {exc}") from exc

    @resynced
    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        """The symbol's leverage and margin mode as the exchange has them (ccxt's fetch_leverage)."""
        with self.translated(Call.QUERY):
            await self.client.load_markets()
            return symbol_config(await self.client.fetch_leverage(symbol))

    @resynced
    async def configure_symbol(self, symbol: Symbol, config: SymbolConfig) -> None:
        """Set leverage and margin mode; "already so" answers (a venue's not-modified codes, ccxt's
        MarginModeAlreadySet) are success. A refusal (e.g. a position is open) is OrderRejected."""
        with self.translated(Call.ORDER):
            for setting in (config.leverage, config.margin_mode):
                if setting is None:
                    continue
                try:
                    if isinstance(setting, int):
                        await self.client.set_leverage(setting, symbol)
                    else:
                        await self.client.set_margin_mode(setting.value, symbol)
                except ccxt.MarginModeAlreadySet:
                    pass
                except ccxt.BaseError as exc:
                    if error_code(exc) not in self.not_modified:
                        raise

    def translated(self, call: Call) -> contextlib.AbstractContextManager[None]:
        """ccxt exceptions inside the block leave it as port errors, by this venue's code table first."""
        return translated(call, self.codes)

    def stream(self) -> AsyncIterator[StreamEvent]:
        """Fills, order updates and mark prices; a StreamGap once a dropped socket is back."""
        stream = CcxtStream(self, now=now)
        self._streams.append(stream)
        return stream.events()

    # what the stream asks of each venue (see stream.StreamSource)

    def renew_private_auth(self) -> None:
        """The private socket failed: make the next watch authenticate afresh (no-op by default)."""

    async def login_private(self) -> None:
        """Before a private watch: ccxt logs in by itself (no-op by default)."""

    def subscribed(self, channel: str) -> bool:
        """A connected socket is enough by default (Binance's user-data stream is the listen
        key's URL: nothing to subscribe)."""
        return True

    async def watch_marks(self) -> Any:
        raise NotImplementedError

    async def order_events(self, batch: Any) -> list[StreamEvent]:
        raise NotImplementedError

    async def trade_events(self, batch: Any) -> list[StreamEvent]:
        raise NotImplementedError

    async def mark_events(self, batch: Any) -> list[StreamEvent]:
        raise NotImplementedError

    async def close(self) -> None:
        for stream in self._streams:
            await stream.stop()
        self._streams.clear()
        await self.client.close()

    async def check_precision(self, request: OrderRequest) -> None:
        """ccxt truncates quantities and rounds prices to the market's precision without a word;
        an order warden did not size exactly is refused here instead of sent as something else."""
        if request.type.conditional and request.trigger_price is None:
            raise OrderRejected(f"{request.client_order_id}: a conditional order needs a trigger price")
        with self.translated(Call.QUERY):
            await self.client.load_markets()
        with self.translated(Call.ORDER):
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
