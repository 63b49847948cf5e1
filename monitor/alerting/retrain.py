"""Retraining trigger: one HTTP call into the user's training pipeline.

Every request carries ``Idempotency-Key`` (the notification's key), and the
body names model, version, reason, evidence and the time range of the
drifted data. Three body shapes:

* ``generic``: ``{"model", "model_version", "reason", "idempotency_key",
  "data_range": {"start", "end", "events"}, "evidence": [...], "requested_at"}``;
* ``airflow`` (``POST /api/v1/dags/{dag_id}/dagRuns``):
  ``{"dag_run_id": <key>, "conf": <generic>}``. Airflow refuses a duplicate
  ``dag_run_id`` with 409, which therefore means "already triggered": success;
* ``github_dispatch`` (``POST /repos/{owner}/{repo}/dispatches``):
  ``{"event_type": "model-retrain", "client_payload": <generic>}`` (GitHub
  allows at most 10 top-level keys in ``client_payload``; we send 7).
"""

from __future__ import annotations

from typing import Any

from monitor.alerting.config import RetrainReceiverConfig
from monitor.alerting.http import raise_for_status, send_request
from monitor.alerting.notification import Notification, iso
from monitor.alerting.receiver import HttpReceiver, encode_json


def retrain_conf(notification: Notification) -> dict[str, Any]:
    """The generic retraining request."""
    n = notification
    return {
        "model": n.model,
        "model_version": n.model_version,
        "reason": n.reason or n.summary(),
        "idempotency_key": n.idempotency_key,
        "data_range": {
            "start": iso(n.window_start),
            "end": iso(n.window_end),
            "events": n.window_events,
        },
        "evidence": [s.to_payload() for s in n.signals],
        "requested_at": iso(n.evaluated_at),
    }


def retrain_body(notification: Notification, template: str) -> dict[str, Any]:
    """The body for one of the configured shapes."""
    conf = retrain_conf(notification)
    if template == "airflow":
        return {"dag_run_id": notification.idempotency_key, "conf": conf}
    if template == "github_dispatch":
        return {"event_type": "model-retrain", "client_payload": conf}
    return conf


class RetrainReceiver(HttpReceiver):
    """Calls the training pipeline's trigger endpoint."""

    _config: RetrainReceiverConfig

    async def _send(self, notification: Notification) -> None:
        headers = {"Content-Type": "application/json"}
        headers.update((k, v.get_secret_value()) for k, v in self._config.headers.items())
        secret = self._config.secret.get_secret_value() if self._config.secret else ""
        if secret and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {secret}"
        if self._config.body_template == "github_dispatch":
            headers.setdefault("Accept", "application/vnd.github+json")
        headers["Idempotency-Key"] = notification.idempotency_key
        response = await send_request(
            self._client,
            self._config.method,
            self._config.url.get_secret_value(),
            content=encode_json(retrain_body(notification, self._config.body_template)),
            headers=headers,
            timeout=self._config.timeout_seconds,
            what=f"retrain {self.name}",
        )
        if self._config.body_template == "airflow" and response.status_code == 409:
            return  # this dag_run_id exists: an earlier attempt got through
        raise_for_status(response, self._clock.time(), what=f"retrain {self.name}")


__all__ = ["RetrainReceiver", "retrain_body", "retrain_conf"]
