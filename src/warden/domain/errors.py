"""Domain errors.

DomainError
├── ValidationError      bad input; names the field, nothing was done
├── InvalidTransition    an impossible (status, status) pair
└── InvalidFill          a fill that would close more than is open
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises."""


class ValidationError(DomainError):
    """Input that cannot become a command; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTransition(DomainError):
    """A position was asked to move between two statuses the table forbids."""


class InvalidFill(DomainError):
    """A fill that cannot apply to the position (wrong side, over-close)."""
