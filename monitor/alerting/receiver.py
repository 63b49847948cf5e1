"""The receiver interface and the factory that builds receivers from configuration.

A receiver turns one :class:`~monitor.alerting.notification.Notification`
into one HTTP request. It raises :class:`~monitor.errors.RetryableDeliveryError`
or :class:`~monitor.errors.PermanentDeliveryError` and nothing else; retrying,
backoff and bookkeeping belong to the dispatcher. Every receiver shares the
one ``httpx.AsyncClient`` the service owns (connection pooling, one
``transport=`` seam for tests).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from monitor.alerting.config import (
    AlertmanagerReceiverConfig,
    PagerDutyReceiverConfig,
    ReceiverConfig,
    RetrainReceiverConfig,
    SlackReceiverConfig,
    WebhookReceiverConfig,
)
from monitor.alerting.notification import Notification
from monitor.clock import Clock

if TYPE_CHECKING:
    from monitor.alerting.outbox import Outbox


class Receiver(Protocol):
    """Something that delivers a notification, or raises a DeliveryError saying whether to retry."""

    name: str

    async def send(self, notification: Notification) -> None: ...


class HttpReceiver:
    """What every HTTP receiver holds: its name, its settings, the shared client, the clock."""

    def __init__(self, name: str, config: Any, client: httpx.AsyncClient, clock: Clock) -> None:
        self.name = name
        self._config = config
        self._client = client
        self._clock = clock


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity are refused (they are not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def build_receiver(
    name: str,
    config: ReceiverConfig,
    client: httpx.AsyncClient,
    clock: Clock,
    outbox: Outbox | None = None,
) -> Receiver:
    """The receiver for one ``receivers:`` entry (``outbox``: what Alertmanager keeps alive)."""
    # Imported here so that each receiver module depends only on this one, not on its siblings.
    from monitor.alerting.alertmanager import AlertmanagerReceiver
    from monitor.alerting.pagerduty import PagerDutyReceiver
    from monitor.alerting.retrain import RetrainReceiver
    from monitor.alerting.slack import SlackReceiver
    from monitor.alerting.webhook import WebhookReceiver

    if isinstance(config, WebhookReceiverConfig):
        return WebhookReceiver(name, config, client, clock)
    if isinstance(config, SlackReceiverConfig):
        return SlackReceiver(name, config, client, clock)
    if isinstance(config, PagerDutyReceiverConfig):
        return PagerDutyReceiver(name, config, client, clock)
    if isinstance(config, RetrainReceiverConfig):
        return RetrainReceiver(name, config, client, clock)
    if isinstance(config, AlertmanagerReceiverConfig):
        return AlertmanagerReceiver(name, config, client, clock, outbox)
    raise TypeError(f"unknown receiver config {type(config).__name__}")


__all__ = ["Receiver", "build_receiver", "encode_json"]
