"""The real-exchange adapter: Binance USD-M through unmodified ccxt (`ccxt.pro.binanceusdm`)."""

from warden.adapters.ccxt.config import all_urls, point_at
from warden.adapters.ccxt.errors import Call, ParseError, translate, translated
from warden.adapters.ccxt.exchange import CcxtExchange

__all__ = ["Call", "CcxtExchange", "ParseError", "all_urls", "point_at", "translate", "translated"]
