"""The simulated exchange: a pure matching core and the in-process async adapter."""

from warden.adapters.sim.core import EXTERNAL_PREFIX, Outcome, SimCore
from warden.adapters.sim.exchange import SimulatedExchange
from warden.adapters.sim.exposure import SimExposure, SimStretch
from warden.adapters.sim.faults import SimFaults, SimRateLimited, SimServerError
from warden.adapters.sim.feed import SimPriceFeed
from warden.adapters.sim.ledger import TAKER_FEE_RATE, SimPosition
from warden.adapters.sim.markets import (
    SimMarket,
    default_instruments,
    default_markets,
    synthetic_instruments,
    synthetic_markets,
    walk_step,
)
from warden.adapters.sim.rules import SimError, SimOrderNotFound, SimRejection

__all__ = [
    "EXTERNAL_PREFIX",
    "TAKER_FEE_RATE",
    "Outcome",
    "SimCore",
    "SimError",
    "SimExposure",
    "SimFaults",
    "SimMarket",
    "SimOrderNotFound",
    "SimPosition",
    "SimPriceFeed",
    "SimRateLimited",
    "SimRejection",
    "SimServerError",
    "SimStretch",
    "SimulatedExchange",
    "default_instruments",
    "default_markets",
    "synthetic_instruments",
    "synthetic_markets",
    "walk_step",
]
