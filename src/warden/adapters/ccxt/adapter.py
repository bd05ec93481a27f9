"""What every ccxt-backed `Exchange` adapter shares, whatever the venue.

The venue adapters (`CcxtExchange` for Binance USD-M, `CcxtBybitExchange` for Bybit v5
linear) subclass `CcxtAdapter`: it holds the ccxt client, runs every ccxt call inside the
venue's error translation (`translated(call, self.codes)`), refuses before sending what ccxt
would silently round, builds the merged stream (`CcxtStream`), and closes everything.
Every method is a plain chain of awaits with no state changed before the response, so any
call can be cancelled by a deadline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
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


def is_loopback(base_url: str | None) -> bool:
    if base_url is None:
        return False
    host = urlsplit(base_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def now() -> datetime:
    return datetime.now(UTC)


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

    def __init__(
        self,
        client: Any,
        *,
        symbols: Sequence[Symbol] | None = None,
        resolve_timeout: float = 5.0,
        reconnect_wait: float = 30.0,
        leverage: int | None = None,
        margin_mode: str | None = None,
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

    async def instruments(self) -> dict[Symbol, Instrument]:
        """The linear perpetuals; the first call also applies the account settings."""
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

    async def symbol_config(self, symbol: Symbol) -> SymbolConfig:
        """The symbol's leverage and margin mode as the exchange has them (ccxt's fetch_leverage)."""
        with self.translated(Call.QUERY):
            await self.client.load_markets()
            return symbol_config(await self.client.fetch_leverage(symbol))

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
