"""The collector pause around recovery's load: nested and concurrent loads share one count."""

from __future__ import annotations

import gc
import weakref

import pytest

from warden.service.collector import paused_while_loading


@pytest.fixture(autouse=True)
def _collector_on() -> object:
    gc.unfreeze()  # as in a new process: no load has frozen anything yet
    gc.enable()
    yield
    gc.enable()


def test_the_collector_runs_again_only_when_the_last_load_ends() -> None:
    outer = paused_while_loading()
    inner = paused_while_loading()
    outer.__enter__()
    assert not gc.isenabled()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the first load ends while the second goes on
    assert not gc.isenabled()
    inner.__exit__(None, None, None)
    assert gc.isenabled()


def test_what_a_load_built_is_frozen_and_a_failed_load_resumes_the_collector() -> None:
    built: list[list[int]] = []

    def load() -> None:
        with paused_while_loading():
            built.extend([i] for i in range(1000))
            raise RuntimeError("the read failed")

    with pytest.raises(RuntimeError):
        load()
    assert gc.isenabled()
    # Frozen: in the permanent generation, which the collector's generations (get_objects) exclude.
    assert gc.get_freeze_count() >= len(built)
    walked = {id(o) for o in gc.get_objects()}
    assert not [b for b in built if id(b) in walked], "what the load built is still walked"


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    with paused_while_loading():
        pass
    assert not gc.isenabled()


class _Node:
    me: object


def test_cyclic_garbage_left_when_memory_is_rebuilt_again_is_collected_not_frozen_for_good() -> None:
    """Every load froze whatever lived then, cyclic garbage not yet collected included (a stopped
    engine, a closed store, an exception with its frames): frozen, it is never collected. A
    process that rebuilds its memory again and again (start attempts while the database is down,
    a standby's takeover, an engine of a fleet taking accounts over, each chaos run in a worker)
    kept all of it: the chaos workers grew to 5.5 GB each in 23 minutes. Only the process's
    first load freezes (collecting before every freeze cost a fleet's takeovers a full collection
    each: 16.6 s at p99)."""
    gc.disable()  # no collection of its own between the steps: only the loads decide
    with paused_while_loading():
        pass  # a first load (the process's start)
    node = _Node()
    node.me = node  # a cycle: reference counting alone never frees it
    gone = weakref.ref(node)
    del node
    with paused_while_loading():
        pass  # memory rebuilt: a start attempt, a takeover
    gc.collect()
    assert gone() is None, "cyclic garbage frozen by a load was never collected"
