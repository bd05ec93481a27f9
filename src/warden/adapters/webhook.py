"""WebhookChannel: one JSON POST per alert, for Discord/Slack/ntfy-style relays.

Body: {"id", "kind", "severity", "message", "position_id", "account", "at"}.
A relay may see an alert twice (at-least-once delivery): `id` deduplicates.
2xx is delivered; 408, 429 and 5xx (and no answer) are retried with backoff;
any other 4xx is the relay refusing this alert for good.
"""

from __future__ import annotations

import httpx

from warden.domain.alerts import Alert
from warden.ports import DeliveryError, DeliveryRejected

RETRIED = frozenset({408, 425, 429})


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
        raise DeliveryRejected(f"webhook refused the alert: HTTP {status}")

    async def close(self) -> None:
        await self._http.aclose()
