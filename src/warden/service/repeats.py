"""Repeats of one refusal told as one: a strategy firing a signal every few seconds at an exchange
that is down (or with a template missing a field) would otherwise send the trader a message per
signal, hundreds over an outage, and bury what else needs them.

The first of a kind is told at once; the same kind again within the window is counted, and told
as one message when the window ends ("N more ... the last: ..."). While they go on the window
doubles, up to a cap; a window that ends with none ends the run, and the next is told at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from warden.ports import Clock


@dataclass
class _Run:
    count: int = 0
    last: str = ""


class RepeatDigest:
    def __init__(
        self,
        clock: Clock,
        tell: Callable[[str], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        window: float = 60.0,
        longest: float = 900.0,
    ) -> None:
        """`tell(message)` tells the trader; `spawn` runs the task that ends each window (the
        engine's tasks: cancelled with it); `window` the first window in seconds (0: every one
        told), doubling up to `longest` while the repeats go on."""
        self.clock = clock
        self._tell = tell
        self._spawn = spawn
        self.window = window
        self.longest = longest
        self._runs: dict[str, _Run] = {}

    async def tell(self, message: str, about: str | None = None) -> None:
        """Tell `message`, or count it when one `about` the same (a kind of refusal) was told
        within the window. `about` None: told, never counted."""
        if about is None or self.window <= 0:
            await self._tell(message)
            return
        run = self._runs.get(about)
        if run is not None:
            run.count += 1
            run.last = message
            return
        self._runs[about] = _Run()
        await self._tell(message)
        self._spawn(self._windows(about))

    async def _windows(self, about: str) -> None:
        window = self.window
        try:
            while True:
                await self.clock.sleep(window)
                run = self._runs[about]
                if run.count == 0:
                    return
                more = f"{run.count} more signal{'s' if run.count > 1 else ''}"
                summary = (
                    f"{more} refused for the same reason in the last {_span(window)}, each answered"
                    f" to its sender only; the last: {run.last}"
                )
                run.count, run.last = 0, ""
                window = min(window * 2, self.longest)
                await self._tell(summary)
        finally:
            self._runs.pop(about, None)


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
