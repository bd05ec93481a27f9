"""The installation id kept beside the data, for a process that cannot open its database."""

from __future__ import annotations

import contextlib
from pathlib import Path

from warden.adapters.db.installation import checked
from warden.adapters.db.urls import redact
from warden.adapters.files import JsonFile
from warden.ports import StoreUnavailable


class InstallationFile(JsonFile):
    """`<data_dir>/installation-<account>.json`: the account's installation id as its database
    last said, and which database that was (its URL without the password). A process that cannot
    open its database at all (PostgreSQL down as it starts) names its guard stops by it, so the
    engine that opens the database later takes them for its own strays, not for another warden's
    orders (`bootstrap.guard_unopened`). Written whole when it changes; never used for another
    database."""

    what = "an installation record"

    def __init__(self, data_dir: Path, account: str) -> None:
        super().__init__(data_dir / f"installation-{account}.json")

    def remember(self, url: str, installation_id: str) -> None:
        """Keep `installation_id` for `url`'s database (nothing is written when it is kept
        already). Raises StoreUnavailable when the file cannot be written."""
        body = {"db": redact(url), "installation_id": installation_id}
        with contextlib.suppress(StoreUnavailable):  # unreadable: written again
            if self.read() == body:
                return
        self.write(body)

    def recall(self, url: str) -> str | None:
        """The installation id kept for `url`'s database; None when none is kept for it (never
        opened from this data directory, or another database). Raises StoreUnavailable when the
        file cannot be read or is not one warden wrote."""
        body = self.read()
        if body is None:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("installation_id"), str):
            raise StoreUnavailable(self.not_ours("no installation_id"))
        if body.get("db") != redact(url):
            return None
        try:
            return checked(body["installation_id"])
        except ValueError as exc:
            raise StoreUnavailable(self.not_ours(exc)) from None
