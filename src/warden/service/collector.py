"""The cyclic garbage collector, kept out of the way while memory is rebuilt.

Loading 10,000 positions builds about a million long-lived objects (positions, orders,
Decimals); each generation-2 collection meanwhile walks all of them again, about a tenth of a
recovery. While the rows are loaded the collector is paused; what was built is then frozen
(moved out of the collector's generations: it lives as long as the engine holds it, and later
collections, e.g. on the tick path, no longer walk it). Reference counting frees everything as
usual; only cycles among the frozen objects wait.

Only the process's first load freezes. A freeze takes whatever lives then, cyclic garbage not
yet collected included (a stopped engine, a closed store, an exception and its frames), and keeps
it for good: freezing at every load, a process that rebuilt its memory again and again (start
attempts while the database is down, a standby's takeover, a fleet's engine taking accounts
over, each run of a chaos worker) kept all of it, and the chaos workers grew to 5.5 GB each in 23
minutes. Collecting before each freeze instead cost a full collection of the whole heap per
load: a fleet engine serving 100 accounts took 34 over in 16.6 s at p99, against 0.9-4.0 s. So a
later load only pauses the collector; what it built stays in the collector's generations, walked
by its rare full collections as any long-lived object is.

Nested and concurrent uses (several accounts recovering in one process) share one count: the
collector runs again when the last one ends. A pause lasts one store read (bounded by the
store's own timeouts), never a wait on the exchange.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


class _Pauses:
    """How many loads are under way, and whether the collector ran before the first began."""

    count = 0
    was_enabled = False


@contextlib.contextmanager
def paused_while_loading() -> Iterator[None]:
    if _Pauses.count == 0:
        _Pauses.was_enabled = gc.isenabled()
        gc.disable()
    _Pauses.count += 1
    try:
        yield
    finally:
        _Pauses.count -= 1
        if _Pauses.count == 0:
            if not gc.get_freeze_count():  # the process's first load
                gc.freeze()
            if _Pauses.was_enabled:
                gc.enable()
