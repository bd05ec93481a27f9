"""Drift perpetuals through the driftpy sidecar (its own environment), over sidecar protocol v1."""

from warden.adapters.drift.client import SidecarClient
from warden.adapters.drift.exchange import DriftExchange, perp_symbol
from warden.adapters.drift.ids import IdRow, MemoryUserOrderIds, UserOrderIds
from warden.adapters.drift.sidecar import SidecarConfig, SidecarProcess

__all__ = [
    "DriftExchange",
    "IdRow",
    "MemoryUserOrderIds",
    "SidecarClient",
    "SidecarConfig",
    "SidecarProcess",
    "UserOrderIds",
    "perp_symbol",
]
