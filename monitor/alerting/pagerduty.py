"""PagerDuty Events API v2.

``dedup_key`` is the alert fingerprint: every fire/update/repeat of an
incident lands on the same PagerDuty incident (a repeated trigger only adds a
log entry), and the resolve closes it. PagerDuty answers 202 on success, 400
on an invalid event (permanent), 429 when throttled and 5xx on trouble
(both retried).
"""

from __future__ import annotations

from typing import Any

from monitor.alerting.config import PagerDutyReceiverConfig
from monitor.alerting.http import raise_for_status, send_request
from monitor.alerting.notification import Notification, iso
from monitor.alerting.receiver import HttpReceiver, encode_json

_SEVERITY = {"critical": "critical", "warning": "warning"}


def pagerduty_event(notification: Notification, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body: a trigger, or a resolve with the same ``dedup_key``."""
    n = notification
    if n.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": n.fingerprint}
    payload = n.to_payload()
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.fingerprint,
        "payload": {
            "summary": n.summary()[:1024],
            "source": f"kafka-model-monitor/{n.model}",
            "severity": _SEVERITY.get(n.severity, "info"),
            "timestamp": iso(n.evaluated_at),
            "component": n.model,
            "group": n.model_version or "",
            "class": ",".join(sorted({s.kind for s in n.signals})),
            "custom_details": {
                "model_version": n.model_version,
                "action": n.action,
                "incident_started_at": payload["started_at"],
                "window": payload["window"],
                "signals": payload["signals"],
                "cleared_signals": payload["cleared_signals"],
                "idempotency_key": n.idempotency_key,
            },
        },
    }
    if n.links:
        event["links"] = [{"href": url, "text": label} for label, url in n.links.items()]
    return event


class PagerDutyReceiver(HttpReceiver):
    """Triggers and resolves PagerDuty incidents keyed by the alert fingerprint."""

    _config: PagerDutyReceiverConfig

    async def _send(self, notification: Notification) -> None:
        key = self._config.routing_key.get_secret_value()
        response = await send_request(
            self._client,
            "POST",
            self._config.url.get_secret_value(),
            content=encode_json(pagerduty_event(notification, key)),
            headers={"Content-Type": "application/json"},
            timeout=self._config.timeout_seconds,
            what=f"pagerduty {self.name}",
        )
        raise_for_status(response, self._clock.time(), what=f"pagerduty {self.name}")


__all__ = ["PagerDutyReceiver", "pagerduty_event"]
