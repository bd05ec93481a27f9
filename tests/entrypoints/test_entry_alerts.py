"""An entry that fails, or a signal refused before anything was sent, is told to the trader: a
signal's answer goes to its sender (TradingView's server shows it to nobody and never retries),
and the strategy then believes it holds what the account does not."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from warden.adapters.clock import SystemClock
from warden.adapters.notify import RecordingNotifier
from warden.adapters.sim import SimulatedExchange
from warden.bootstrap import running
from warden.domain.alerts import AlertKind
from warden.domain.position import PositionStatus
from warden.domain.values import OrderType, Side, Symbol
from warden.ports import ExchangeUnavailable, StoreUnavailable
from warden.service.commands import EngineState, OpenPosition

from .conftest import AUTH, TOKEN, make_settings
from .test_api import SIGNAL, open_sol
from .test_tradingview import _client, _refusals, alert

SOL = Symbol("SOL/USDT:USDT")


def _failed(notifier: RecordingNotifier) -> list[str]:
    return [a.message for a in notifier.alerts if a.kind is AlertKind.ENTRY_FAILED]


def _entry_market(req: Any) -> bool:
    return bool(req.type is OrderType.MARKET and not req.reduce_only)


async def test_a_webhook_entry_the_exchange_rejects_is_told(tmp_path: Path) -> None:
    """A TradingView entry the exchange refuses (e.g. insufficient margin): the 502 goes to
    TradingView's server, nobody else heard of it, and the strategy believes it is long while
    the account is flat. The alert entry_failed names the symbol, the side, the position, the
    source and the exchange's reason, and says the account holds nothing from it."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        rt.sim.faults.reject_if = _entry_market
        body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 502, response.text
        pid = response.json()["position_id"]
        await eventually(lambda: len(_failed(notifier)) == 1, what="the failed entry told")
        told = _failed(notifier)[0]
        assert "SOL/USDT:USDT" in told and "long" in told and pid in told, told
        assert "tradingview" in told and "simulated rejection" in told, told
        assert "holds nothing" in told, told
        assert TOKEN not in told
        assert _refusals(notifier) == []  # one message, not two
        [stored] = [a for a in notifier.alerts if a.kind is AlertKind.ENTRY_FAILED]
        assert stored.position_id == pid


async def test_a_webhook_entry_that_fails_after_its_202_is_told(tmp_path: Path) -> None:
    """A slow exchange: the answer is 202 at signal_wait (the entry is being resolved), then the
    exchange refuses the entry. Nobody waits for the outcome any more: entry_failed tells it."""
    notifier = RecordingNotifier()
    settings = make_settings(tmp_path, signal_wait=0.1)
    async with running(settings, price_feed=False, notifier=notifier) as rt, _client(rt) as http:
        assert rt.sim is not None
        rt.sim.faults.rest_latency = 0.3
        rt.sim.faults.reject_if = _entry_market
        body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 202, response.text
        pid = response.json()["id"]
        await eventually(lambda: len(_failed(notifier)) == 1, timeout=10, what="the late failure told")
        told = _failed(notifier)[0]
        assert pid in told and "tradingview" in told and "rejected" in told, told
        assert rt.engine.ledger.positions[pid].status.value == "failed"


async def test_an_entry_answered_202_then_cancelled_unfilled_at_its_deadline_is_told(tmp_path: Path) -> None:
    """wait=false: 202 at once; the exchange acknowledges the entry and never fills it, so it is
    cancelled at entry_deadline: the account holds nothing, and entry_failed says so."""
    notifier = RecordingNotifier()
    settings = make_settings(tmp_path, entry_deadline=0.3)
    async with running(settings, price_feed=False, notifier=notifier) as rt, _client(rt) as http:
        assert rt.sim is not None
        rt.sim.faults.ack_only_if = lambda req: req.type is OrderType.MARKET
        rt.sim.faults.fill_delay = 3600
        response = await http.post("/api/v1/signals?wait=false", json=SIGNAL, headers=AUTH)
        assert response.status_code == 202, response.text
        pid = response.json()["id"]
        await eventually(lambda: len(_failed(notifier)) == 1, timeout=10, what="the cancelled entry told")
        told = _failed(notifier)[0]
        assert pid in told and "deadline" in told and "holds nothing" in told, told
        assert rt.sim.core.positions() == [] and rt.sim.core.open_orders() == []


@pytest.mark.parametrize(("agent", "source"), [("warden-cli/1", "cli"), ("curl/8", "api")])
async def test_a_cli_or_api_entry_the_exchange_rejects_is_told(
    tmp_path: Path, agent: str, source: str
) -> None:
    """Not only webhooks: an entry from the CLI or the API that fails alerts too (a script or a
    terminal may not be watched; the alert is where the trader looks)."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None
        rt.sim.faults.unavailable_if = _entry_market
        headers = {**AUTH, "User-Agent": agent}
        response = await http.post("/api/v1/signals", json=SIGNAL, headers=headers)
        assert response.status_code == 503, response.text
        await eventually(lambda: len(_failed(notifier)) == 1, what="the failed entry told")
        told = _failed(notifier)[0]
        assert f"from {source}" in told and "exchange unavailable" in told, told
        assert _refusals(notifier) == []  # committed, then failed: entry_failed only


def _told(notifier: RecordingNotifier) -> list[str]:
    kinds = (AlertKind.ENTRY_FAILED, AlertKind.SIGNAL_REFUSED)
    return [a.message for a in notifier.alerts if a.kind in kinds]


@pytest.mark.parametrize("signal_wait", [5.0, 0.1], ids=["answered", "after-202"])
async def test_a_flip_whose_new_side_is_refused_is_told_once(tmp_path: Path, signal_wait: float) -> None:
    """A reversal whose short the exchange refuses (at once, or after the answer was a 202): the
    flip's own alert (signal_refused, saying what it closed) is the one message; the failed
    entry does not alert a second time."""
    notifier = RecordingNotifier()
    settings = make_settings(tmp_path, signal_wait=signal_wait)
    async with running(settings, price_feed=False, notifier=notifier) as rt, _client(rt) as http:
        assert rt.sim is not None
        long = await open_sol(http)
        rt.sim.faults.reject_if = _entry_market
        if signal_wait < 1:
            rt.sim.faults.rest_latency = 0.3
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code in (202, 502), response.text
        await eventually(lambda: len(_told(notifier)) >= 1, timeout=10, what="the half-done flip told")
        await rt.engine.wait_idle()
        [told] = _told(notifier)
        assert long["id"] in told and "flat" in told, told


async def test_a_flip_whose_new_side_is_cancelled_unfilled_after_its_202_is_told_once(tmp_path: Path) -> None:
    """A reversal: the long is closed, the short's entry is acknowledged and never fills, the
    answer is 202, and the entry is cancelled at its deadline. The flip had nothing to tell when
    it answered; the account is flat and the strategy short: entry_failed tells it, once."""
    notifier = RecordingNotifier()
    settings = make_settings(tmp_path, entry_deadline=0.3, signal_wait=0.1)
    async with running(settings, price_feed=False, notifier=notifier) as rt, _client(rt) as http:
        assert rt.sim is not None
        await open_sol(http)
        rt.sim.faults.ack_only_if = _entry_market
        rt.sim.faults.fill_delay = 3600
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 202, response.text
        pid = response.json()["id"]
        await eventually(lambda: len(_told(notifier)) >= 1, timeout=10, what="the cancelled short told")
        await rt.engine.wait_idle()
        [told] = _told(notifier)
        assert pid in told and "short" in told and "holds nothing" in told, told
        assert rt.sim.core.positions() == []


async def test_a_webhook_entry_refused_for_the_exchange_unreachable_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange cannot be reached for the mark price: the entry is refused with 503 before
    anything is written or sent. The answer goes to TradingView's server only: signal_refused
    tells the trader, saying nothing was sent."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        assert rt.sim is not None

        async def unreachable(symbol: Any) -> Any:
            raise ExchangeUnavailable("simulated outage asking the mark")

        monkeypatch.setattr(rt.engine.exits, "fresh_mark", lambda symbol: None)
        monkeypatch.setattr(rt.engine.gateway, "mark_price", unreachable)
        body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 503, response.text
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the refused entry told")
        told = _refusals(notifier)[0]
        assert "SOL/USDT:USDT" in told and "nothing was sent" in told, told
        assert "simulated outage" in told and TOKEN not in told, told
        assert _failed(notifier) == []
        assert await rt.store.list_positions(include_closed=True) == []


async def test_a_webhook_entry_refused_for_the_database_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database cannot take the entry's intent: 503 database_unavailable, nothing sent; the
    trader is told (signal_refused)."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("the database is gone")

        monkeypatch.setattr(rt.store, "commit", down)
        body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable"
        await eventually(lambda: len(_refusals(notifier)) == 1, what="the refused entry told")
        told = _refusals(notifier)[0]
        assert "database" in told and "nothing was sent" in told, told
        assert rt.sim is not None and rt.sim.core.open_orders() == []


@pytest.mark.parametrize("control", ["pause", "kill"])
async def test_a_webhook_entry_refused_by_a_control_the_trader_set_is_not_told(
    tmp_path: Path, control: str
) -> None:
    """Paused (or the kill switch on): the entry is refused with 503, as the trader chose. That
    is its own alert and state (paused, kill_on), not a signal_refused for every signal."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        if control == "pause":
            await rt.engine.pause("by hand")
        else:
            await rt.engine.kill(flatten=False, reason="by hand")
        body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 503, response.text
        ok = {**SIGNAL, "secret": TOKEN, "timestamp": (rt.clock.now() - timedelta(seconds=1)).isoformat()}
        assert (await http.post("/api/v1/signals", json=ok)).status_code == 503
        await rt.engine.wait_idle()
        assert _refusals(notifier) == [] and _failed(notifier) == []


async def test_a_flip_refused_for_the_exchange_unreachable_before_its_close_is_told_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reversal whose short cannot be priced (the exchange unreachable for the mark): refused
    before the long is closed (nothing sent, the long keeps its stop), and told once."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        long = await open_sol(http)

        async def unreachable(symbol: Any) -> Any:
            raise ExchangeUnavailable("simulated outage asking the mark")

        monkeypatch.setattr(rt.engine.exits, "fresh_mark", lambda symbol: None)
        monkeypatch.setattr(rt.engine.gateway, "mark_price", unreachable)
        body = alert("BINANCE:SOLUSDT.P", "sell", "0.66", rt.clock.now(), market_position="short")
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 503, response.text
        await eventually(lambda: len(_told(notifier)) >= 1, what="the refused flip told")
        await rt.engine.wait_idle()
        [told] = _told(notifier)
        assert "short was not opened" in told and "stays open" in told, told
        assert rt.engine.ledger.positions[long["id"]].status.value == "protected"


async def test_a_webhook_entry_refused_by_a_standby_is_not_told(tmp_path: Path) -> None:
    """A standby (another engine holds the account) refuses with 503 and tells nobody: the
    holder's engine is the one that trades, and losing the lease is its own alert."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        rt.engine.set_read_only("lease lost to another engine")
        body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
        response = await http.post("/api/v1/signals", content=body)
        assert response.status_code == 503, response.text
        await rt.engine.wait_idle()
        assert _refusals(notifier) == [] and _failed(notifier) == []


async def test_a_close_signal_refused_while_warden_starts_is_told(tmp_path: Path) -> None:
    """A strategy's exit that arrives while warden is still starting (its start retrying against
    an exchange that does not answer, after a restart): 503, nothing was sent, the position held
    stays open on its resting stop, and TradingView does not send the exit again. The strategy is
    flat while the account is not: the trader is told (signal_refused), as for an exit refused by
    a running engine."""
    settings = make_settings(tmp_path)
    clock = SystemClock()
    sim = SimulatedExchange(now=clock.now, seed=1)
    try:
        async with running(settings, clock=clock, exchange=sim, price_feed=False) as first:
            opened = await first.engine.open_position(OpenPosition(SOL, Side.LONG, Decimal(100)))
            assert opened.status is PositionStatus.PROTECTED
        sim.faults.fail_queries = True  # the exchange down as warden starts again
        notifier = RecordingNotifier()
        async with (
            running(settings, clock=clock, exchange=sim, price_feed=False, notifier=notifier) as rt,
            _client(rt) as http,
        ):
            assert rt.engine.status().state is EngineState.STARTING
            flat = alert("BINANCE:SOLUSDT.P", "sell", "0.5", clock.now(), market_position="flat")
            response = await http.post("/api/v1/signals", content=flat)
            assert response.status_code == 503, response.text
            await eventually(lambda: len(_refusals(notifier)) == 1, what="the refused exit told")
            told = _refusals(notifier)[0]
            assert "close signal" in told and "SOLUSDT" in told and "stays open" in told, told
            sim.faults.fail_queries = False
    finally:
        await sim.close()


async def test_a_close_signal_refused_by_a_standby_is_not_told(tmp_path: Path) -> None:
    """A standby's 503 to an exit tells nobody: the engine holding the account takes it."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):
        await open_sol(http)
        rt.engine.set_read_only("lease lost to another engine")
        flat = alert("BINANCE:SOLUSDT.P", "sell", "0.5", rt.clock.now(), market_position="flat")
        response = await http.post("/api/v1/signals", content=flat)
        assert response.status_code == 503, response.text
        await rt.engine.wait_idle()
        assert _refusals(notifier) == []


async def test_a_storm_of_entries_refused_for_one_reason_is_told_once_then_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy firing an entry every few seconds while the exchange cannot be reached for its
    price: each answered 503 to TradingView, and the trader told once at once (the rest counted
    into one message when the window ends), not once per signal."""
    notifier = RecordingNotifier()
    async with (
        running(make_settings(tmp_path), price_feed=False, notifier=notifier) as rt,
        _client(rt) as http,
    ):

        async def unreachable(symbol: Any) -> Any:
            raise ExchangeUnavailable("simulated outage asking the mark")

        monkeypatch.setattr(rt.engine.exits, "fresh_mark", lambda symbol: None)
        monkeypatch.setattr(rt.engine.gateway, "mark_price", unreachable)
        for _ in range(6):
            body = alert("BINANCE:SOLUSDT.P", "buy", "0.5", rt.clock.now())
            assert (await http.post("/api/v1/signals", content=body)).status_code == 503
        await rt.engine.wait_idle()
        await eventually(lambda: len(_refusals(notifier)) >= 1, what="the first refusal told")
        assert len(_refusals(notifier)) == 1, _refusals(notifier)
