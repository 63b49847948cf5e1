"""The receivers by type: the one place that knows every receiver class.

Each receiver module depends only on :mod:`monitor.alerting.receiver` (the
interface), never on its siblings or on this registry; the engine builds its
receivers here.
"""

from __future__ import annotations

import httpx

from monitor.alerting.alertmanager import AlertmanagerReceiver
from monitor.alerting.config import (
    AlertmanagerReceiverConfig,
    PagerDutyReceiverConfig,
    ReceiverConfig,
    RetrainReceiverConfig,
    SlackReceiverConfig,
    WebhookReceiverConfig,
)
from monitor.alerting.outbox import Outbox
from monitor.alerting.pagerduty import PagerDutyReceiver
from monitor.alerting.receiver import Receiver
from monitor.alerting.retrain import RetrainReceiver
from monitor.alerting.slack import SlackReceiver
from monitor.alerting.webhook import WebhookReceiver
from monitor.clock import Clock


def build_receiver(
    name: str,
    config: ReceiverConfig,
    client: httpx.AsyncClient,
    clock: Clock,
    outbox: Outbox | None = None,
) -> Receiver:
    """The receiver for one ``receivers:`` entry (``outbox``: what Alertmanager keeps alive)."""
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


__all__ = ["build_receiver"]
