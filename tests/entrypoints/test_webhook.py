"""The webhook channel: one JSON POST per alert, retried through an outage, never blocking trading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import eventually
from warden.adapters.clock import FakeClock
from warden.adapters.memory import InMemoryStore
from warden.adapters.notify import RecordingNotifier
from warden.adapters.webhook import WebhookChannel
from warden.bootstrap import running
from warden.domain.alerts import Alert, AlertId, AlertKind
from warden.service.delivery import Deliverer, DeliveryConfig

from .conftest import make_settings


class Relay:
    """A Discord/ntfy-style relay on 127.0.0.1 that records every POST; `status` sets its answer
    (a 3xx sends the caller to /moved)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if 300 <= self.status < 400:
            return web.Response(status=self.status, headers={"Location": "/moved"})
        if self.status != 200:
            return web.Response(status=self.status)
        self.received.append(await request.json())
        return web.Response(status=204)


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    made = Relay()
    app = web.Application()
    app.router.add_post("/hook", made.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    made.url = f"http://127.0.0.1:{port}/hook"
    yield made
    await runner.cleanup()


async def test_every_alert_is_posted_as_json_with_its_id(tmp_path: Path, relay: Relay) -> None:
    """engine_started reaches the relay with the documented body; the relay sees each id once."""
    settings = make_settings(tmp_path, alert_webhook_url=relay.url, account="acct-1")
    async with running(settings, price_feed=False):
        await eventually(lambda: any(b["kind"] == "engine_started" for b in relay.received), what="posted")
    [body] = [b for b in relay.received if b["kind"] == "engine_started"]
    assert set(body) == {"id", "kind", "severity", "message", "position_id", "account", "at"}
    assert body["severity"] == "info" and body["account"] == "acct-1" and body["position_id"] is None
    ids = [b["id"] for b in relay.received]
    assert len(ids) == len(set(ids))


async def test_a_relay_outage_is_a_warning_and_the_alert_arrives_after_it(
    tmp_path: Path, relay: Relay
) -> None:
    """503 from the relay: trading goes on, /status warns; when it answers again the alert arrives."""
    relay.status = 503
    settings = make_settings(tmp_path, alert_webhook_url=relay.url)
    async with running(settings, price_feed=False) as rt:
        await eventually(lambda: bool(rt.engine.status().warnings), what="a warning on /status")
        assert rt.engine.status().accepting_signals
        assert "webhook" in rt.engine.status().warnings[0]
        relay.status = 200
        await eventually(lambda: any(b["kind"] == "engine_started" for b in relay.received), what="posted")
        await eventually(lambda: not rt.engine.status().warnings, what="warning cleared")
        await eventually(lambda: rt.engine.deliverer.undelivered() == 0, what="marked delivered")
        assert await rt.store.pending_alerts() == []


@pytest.mark.parametrize(
    "status",
    [
        308,  # the relay moved (or http:// answered with a redirect to https://)
        301,
        404,  # Discord's deleted webhook ("Unknown Webhook"), Slack's channel_not_found
        410,  # Slack's channel_is_archived
        401,  # a revoked token in the URL
        403,  # Slack's action_prohibited, ntfy's topic without access
    ],
)
async def test_a_relay_that_refuses_every_alert_keeps_them_until_it_takes_them(
    relay: Relay, status: int
) -> None:
    """A redirect, or a relay saying the URL is gone or not allowed, refuses every alert, not
    one: each alert was dropped for the webhook for good ("refused … for good"), so while the URL
    was wrong every alert was lost to it, the critical ones too (with Telegram blocked, the only
    channel). They are kept, the webhook is named on /status and tried again slowly, and once the
    relay takes alerts again they arrive, oldest first (as for a Telegram chat that blocked the bot)."""
    clock, webhook = FakeClock(), WebhookChannel(relay.url, "main")
    d = Deliverer(
        InMemoryStore(), clock, RecordingNotifier(), [webhook], config=DeliveryConfig(poll_interval=3600)
    )
    try:
        relay.status = status
        for n in (1, 2):
            alert = Alert(AlertId(f"a{n}"), AlertKind.CLOSE_FAILED, f"alert {n}", clock.now())
            await d.store.append_events([], [alert])
        assert await d.deliver_pending() == 2
        [warning] = d.warnings()
        assert "refuses every alert" in warning and f"HTTP {status}" in warning, warning
        assert "/moved" not in warning  # a webhook's path is its secret: never shown
        relay.status = 200
        clock.advance(DeliveryConfig().refused_retry)
        assert await d.deliver_pending() == 0
        assert [b["message"] for b in relay.received] == ["alert 1", "alert 2"]
        assert d.warnings() == []
    finally:
        await webhook.close()
