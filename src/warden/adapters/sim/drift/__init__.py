"""The simulated Drift venue: the sidecar protocol on the shared matching core, with Drift's rules."""

from warden.adapters.sim.drift.app import DRIFT_VENUE, create_drift_app, serve_drift
from warden.adapters.sim.drift.venue import DriftFaults, DriftVenue

__all__ = ["DRIFT_VENUE", "DriftFaults", "DriftVenue", "create_drift_app", "serve_drift"]
