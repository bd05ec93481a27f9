"""Installation ids: 6 random lowercase letters and digits, made once per database and account.

Shared by the SQL and in-memory stores (no SQLAlchemy here).
"""

from __future__ import annotations

import re
import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
LENGTH = 6
_VALID = re.compile(f"[{ALPHABET}]{{{LENGTH}}}")


def new_installation_id() -> str:
    """A fresh random id (36**6, about 2.2 billion, possible values)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def checked(installation_id: str) -> str:
    """`installation_id` if it has the form of one; ValueError otherwise."""
    if not _VALID.fullmatch(installation_id):
        raise ValueError(
            f"an installation id is {LENGTH} lowercase letters and digits, not {installation_id!r}"
        )
    return installation_id
