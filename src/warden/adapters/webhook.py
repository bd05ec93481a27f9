"""WebhookChannel: one JSON POST per alert, for Discord/Slack/ntfy-style relays.

Body: {"id", "kind", "severity", "message", "position_id", "account", "at"}.
A relay may see an alert twice (at-least-once delivery): `id` deduplicates.
2xx is delivered; 408, 429 and 5xx (and no answer) are retried with backoff;
a redirect (3xx: the URL moved, http:// sent to https://) and 401, 403, 404, 410 (a revoked
token, a deleted webhook, an archived channel) refuse every alert, not this one: ChannelRefused,
its alerts kept until the URL is right; any other 4xx is the relay refusing this alert for good.
"""

from __future__ import annotations

import httpx

from warden.domain.alerts import Alert
from warden.ports import ChannelRefused, DeliveryError, DeliveryRejected

RETRIED = frozenset({408, 425, 429})
EVERY_ALERT = frozenset({401, 403, 404, 410})
"""Answers about the URL, not the alert: Discord's deleted webhook (404 Unknown Webhook), Slack's
channel_not_found (404), channel_is_archived (410) and action_prohibited (403), a revoked token."""


def alert_body(alert: Alert, account: str) -> dict[str, str | None]:
    return {
        "id": alert.id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "message": alert.message,
        "position_id": alert.position_id,
        "account": account,
        "at": alert.at.isoformat(),
    }


def _where(response: httpx.Response) -> str:
    """Where a redirect points, without its path: a webhook's path carries its secret token."""
    try:
        target = response.url.join(response.headers.get("location", ""))
    except (httpx.InvalidURL, ValueError):
        return "another URL"
    return f"{target.scheme}://{target.host}/…" if target.host else "another URL"


class WebhookChannel:
    def __init__(self, url: str, account: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._account = account
        self._http = httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "warden-alerts/0.1"})

    @property
    def name(self) -> str:
        return "webhook"

    async def send(self, alert: Alert, *, silent: bool) -> None:
        del silent  # a webhook has no sound to turn off
        try:
            response = await self._http.post(self._url, json=alert_body(alert, self._account))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status >= 500 or status in RETRIED:
            raise DeliveryError(f"webhook answered HTTP {status}")
        if 300 <= status < 400:  # not followed: a POST redirected may arrive as a GET, without its body
            raise ChannelRefused(
                f"HTTP {status}: alert_webhook_url redirects to {_where(response)}; put the URL it"
                " redirects to there"
            )
        if status in EVERY_ALERT:
            raise ChannelRefused(f"HTTP {status}: check alert_webhook_url (a deleted or mistyped webhook)")
        raise DeliveryRejected(f"webhook refused the alert: HTTP {status}")

    async def close(self) -> None:
        await self._http.aclose()
