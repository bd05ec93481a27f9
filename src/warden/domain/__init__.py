"""The pure, synchronous core: values, the position state machine, exit rules.

Nothing in this package does I/O or imports anything outside the standard library.
"""
