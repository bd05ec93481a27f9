"""The simulated exchange server: one matching core behind a venue's protocol, REST and websockets
on one port, plus the venue-neutral `/sim/*` control surface (see `control`).

`create_server_app(venue="binance")` speaks Binance USD-M futures: unmodified ccxt
(`ccxt.pro.binanceusdm`, 4.5.90) trades against it once its URLs point here (see
`warden.adapters.ccxt.CcxtExchange.create(base_url=...)`). `venue="bybit"` speaks Bybit v5
linear perpetuals to unmodified `ccxt.pro.bybit` (see `warden.adapters.ccxt.CcxtBybitExchange`).
Behind either sits a `SimCore` with the same `SimFaults` as the in-process simulator.

Default credentials: API key ``sim-key``, secret ``sim-secret`` (HMAC-SHA256, as both venues).
They are test credentials of a local simulator, not secrets.
"""

from warden.adapters.sim.server.app import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    VENUE,
    VENUES,
    create_server_app,
    running_app,
    serve,
)
from warden.adapters.sim.server.venue import SimVenue

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "VENUE",
    "VENUES",
    "SimVenue",
    "create_server_app",
    "running_app",
    "serve",
]
