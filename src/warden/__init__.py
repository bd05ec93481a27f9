"""warden: a crash-safe position manager for automated crypto-futures trading."""

__version__ = "0.1.0"
