"""The real-exchange adapters through unmodified ccxt: Binance USD-M (`CcxtExchange`, `ccxt.pro.binanceusdm`)
and Bybit v5 linear perpetuals (`CcxtBybitExchange`, `ccxt.pro.bybit`)."""

from warden.adapters.ccxt.bybit import CcxtBybitExchange
from warden.adapters.ccxt.config import all_urls, point_at, point_bybit_at
from warden.adapters.ccxt.errors import Call, ParseError, translate, translated
from warden.adapters.ccxt.exchange import CcxtExchange

__all__ = [
    "Call",
    "CcxtBybitExchange",
    "CcxtExchange",
    "ParseError",
    "all_urls",
    "point_at",
    "point_bybit_at",
    "translate",
    "translated",
]
