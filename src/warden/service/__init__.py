"""Async use cases: the open/close saga, exits, recovery, reconciliation, the runner."""
