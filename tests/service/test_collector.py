"""The collector pause around recovery's load: nested and concurrent loads share one count."""

from __future__ import annotations

import gc

import pytest

from warden.service.collector import paused_while_loading


@pytest.fixture(autouse=True)
def _collector_on() -> object:
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
    before = gc.get_freeze_count()
    built: list[list[int]] = []

    def load() -> None:
        with paused_while_loading():
            built.extend([i] for i in range(1000))
            raise RuntimeError("the read failed")

    with pytest.raises(RuntimeError):
        load()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(built)


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    with paused_while_loading():
        pass
    assert not gc.isenabled()
