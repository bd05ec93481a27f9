"""Watching the stream for silence: a dead stream sends nothing, so nothing else notices.

A venue's user/market stream can die without a word: a Binance listenKey that expired, a
websocket half-open behind a NAT, Drift's websocket stalling. The adapter reports a StreamGap
only once it has reconnected; until then the engine simply hears nothing. While a position is
open that matters: marks come from the stream (trailing stops stop moving) and fills are seen
only by the reconciliation timer.

So: no stream event of any kind for `stream_silence` seconds while a position is open is one
critical alert per silence and a /status warning while it lasts; the first event after it is an
info alert. Silence counts from the last event or from when a position began to depend on the
stream, whichever is later: with no position open a quiet stream is normal.

Plain state and decisions, no I/O: the engine stamps every event (`heard`) and asks `check`
on a timer, then tells the trader what it returns.
"""

from __future__ import annotations

from warden.domain.alerts import AlertKind
from warden.service.config import EngineConfig

CHECKS_PER_LIMIT = 4
"""The silence is checked this often within `stream_silence` (at most once a second)."""


class StreamWatch:
    def __init__(self, config: EngineConfig, now: float) -> None:
        self.config = config
        self.limit = config.stream_silence
        self.period = min(1.0, self.limit / CHECKS_PER_LIMIT)
        self.last_heard = now
        self._depended_since: float | None = None
        self._silent_since: float | None = None
        """The last moment heard of a silence already alerted (None: none is)."""

    def heard(self, now: float) -> None:
        """A stream event arrived (any kind: a mark, an order update, a fill, a gap)."""
        self.last_heard = now

    def check(self, now: float, open_positions: int) -> tuple[AlertKind, str] | None:
        """What to tell the trader now, if anything: a silence past the limit while positions
        are open (once), or the first event after such a silence."""
        if self._silent_since is not None:
            if self.last_heard <= self._silent_since:
                return None
            lasted = self.last_heard - self._silent_since
            self._silent_since = None
            return AlertKind.STREAM_RECOVERED, (
                f"{self._where()}: stream events arriving again after {lasted:.0f}s of silence; "
                "trailing stops follow the marks again"
            )
        if not open_positions:
            self._depended_since = None
            return None
        if self._depended_since is None:
            self._depended_since = now
        quiet_from = max(self.last_heard, self._depended_since)
        if now - quiet_from < self.limit:
            return None
        self._silent_since = quiet_from
        return AlertKind.STREAM_SILENT, (
            f"{self._where()}: stream silent for {now - quiet_from:.0f}s (stream_silence {self.limit:g}s): "
            f"no mark, order or fill event while {open_positions} position(s) are open. "
            f"{self._meaning()}; warden keeps protecting with the stops already resting on the "
            "exchange. Check the exchange's status and the network (an expired listen key, a "
            "half-open websocket)"
        )

    def warning(self, now: float) -> str | None:
        """The /status warning while an alerted silence lasts."""
        if self._silent_since is None or self.last_heard > self._silent_since:
            return None
        return (
            f"{self._where()}: stream silent for {now - self._silent_since:.0f}s: {self._meaning()}; "
            "the stops already resting still protect"
        )

    def _where(self) -> str:
        name = self.config.exchange_name
        return f"account {self.config.account} on {name}" if self.config.account else name

    def _meaning(self) -> str:
        return (
            "trailing stops are frozen (marks come from the stream) and fills are seen only by "
            f"reconciliation every {self.config.reconcile_interval:g}s"
        )
