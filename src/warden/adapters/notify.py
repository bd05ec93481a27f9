"""Notifiers: alerts go to the log (always) and to whatever else is configured."""

from __future__ import annotations

import structlog

from warden.domain.alerts import Alert

log = structlog.get_logger("warden.alert")


class LogNotifier:
    async def notify(self, alert: Alert) -> None:
        method = (
            log.error if alert.level == "critical" else log.warning if alert.level == "warning" else log.info
        )
        method(alert.title, message=alert.message, position_id=alert.position_id)


class RecordingNotifier:
    """Keeps every alert; used by tests and the demo to show what a user would be told."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)
