"""Generic JSON webhook, signed per the Standard Webhooks specification.

Headers (https://www.standardwebhooks.com/, "Signature scheme"):

* ``webhook-id``: the notification's idempotency key; identical on every retry,
  so a receiver deduplicates by it;
* ``webhook-timestamp``: unix seconds at send time (re-signed on each attempt);
* ``webhook-signature``: ``v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>``,
  where ``key`` is the base64-decoded part after ``whsec_`` when the secret
  has that prefix, else the secret's UTF-8 bytes.

With ``cloudevents: true`` the body is a CloudEvents 1.0 structured-mode
event (``Content-Type: application/cloudevents+json``) whose ``data`` is the
alert payload and whose ``id`` is the idempotency key.

Verifying on the receiving side (Python, stdlib only)::

    import base64, hashlib, hmac, time

    def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
        key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") \\
            else secret.encode()
        msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
        if abs(time.time() - int(ts)) > tolerance:
            return False  # replayed or badly skewed
        signed = f"{msg_id}.{ts}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return any(hmac.compare_digest(expected, sig.partition(",")[2])
                   for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote

from monitor.alerting.config import WebhookReceiverConfig
from monitor.alerting.http import raise_for_status, send_request
from monitor.alerting.notification import Notification, iso
from monitor.alerting.receiver import HttpReceiver, encode_json

#: CloudEvents ``source`` prefix; the model name is appended.
CLOUDEVENTS_SOURCE = "/kafka-model-monitor/models/"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64, or raw text)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def cloudevent(notification: Notification) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode envelope around the alert payload.

    ``source`` must be a URI-reference: the model's name (from the wire, for a tracked
    unknown model) is percent-encoded into one path segment, as in dashboard links. Put in
    as it came, a space, a newline or a stray ``%`` made the event invalid, which a receiver
    that validates CloudEvents may refuse for good (a 4xx: the page lost). ``subject`` and
    ``data.model`` keep the name as it is.
    """
    return {
        "specversion": "1.0",
        "id": notification.idempotency_key,
        "source": CLOUDEVENTS_SOURCE + quote(notification.model, safe=""),
        "type": f"io.github.kafka-model-monitor.alert.{notification.action}",
        "subject": notification.model,
        "time": iso(notification.evaluated_at),
        "datacontenttype": "application/json",
        "data": notification.to_payload(),
    }


class WebhookReceiver(HttpReceiver):
    """POSTs the alert JSON (optionally as a CloudEvent), signed when a secret is configured."""

    _config: WebhookReceiverConfig

    async def _send(self, notification: Notification) -> None:
        if self._config.cloudevents:
            body = encode_json(cloudevent(notification))
            content_type = "application/cloudevents+json"
        else:
            body = encode_json(notification.to_payload())
            content_type = "application/json"
        headers = {k: v.get_secret_value() for k, v in self._config.headers.items()}
        headers["Content-Type"] = content_type
        msg_id = notification.idempotency_key
        timestamp = int(self._clock.time())
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        secret = self._config.signing_secret
        if secret is not None and secret.get_secret_value():
            headers["webhook-signature"] = sign(secret.get_secret_value(), msg_id, timestamp, body)
        response = await send_request(
            self._client,
            "POST",
            self._config.url.get_secret_value(),
            content=body,
            headers=headers,
            timeout=self._config.timeout_seconds,
            what=f"webhook {self.name}",
        )
        raise_for_status(response, self._clock.time(), what=f"webhook {self.name}")


__all__ = ["WebhookReceiver", "cloudevent", "sign", "signing_key"]
