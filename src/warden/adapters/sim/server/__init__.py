"""A Binance USD-M compatible simulated exchange: REST and websockets on one port.

Unmodified ccxt (`ccxt.pro.binanceusdm`, 4.5.90) can trade against it once its URLs point
here (see `warden.adapters.ccxt.CcxtExchange.create(base_url=...)`). It speaks exactly the
subset of the protocol listed in section 7.1 of the Binance reference: public market data,
signed trading (market orders on `/fapi/v1/order`, STOP_MARKET / TAKE_PROFIT_MARKET only on
`/fapi/v1/algoOrder`), the account, listen keys, `/market/ws/{n}` + `/public/ws/{n}` mark
price streams and the `/private/ws?listenKey=` user-data stream. Behind it sits a `SimCore`
with the same `SimFaults` as the in-process simulator, and a `/sim/*` control surface
(see `control`).

Default credentials: API key ``sim-key``, secret ``sim-secret`` (HMAC-SHA256, as Binance).
They are test credentials of a local simulator, not secrets.
"""

from warden.adapters.sim.server.app import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    VENUE,
    create_server_app,
    running_app,
    serve,
)
from warden.adapters.sim.server.venue import SimVenue

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "VENUE",
    "SimVenue",
    "create_server_app",
    "running_app",
    "serve",
]
