"""The receivers by type: the one place that knows every receiver class.

Each receiver module depends only on :mod:`monitor.alerting.receiver` (the
interface), never on its siblings or on this registry; the engine builds its
receivers here.
"""

from __future__ import annotations

import httpx

from monitor.alerting.config import (
    PagerDutyReceiverConfig,
    ReceiverConfig,
    RetrainReceiverConfig,
    SlackReceiverConfig,
    WebhookReceiverConfig,
)
from monitor.alerting.pagerduty import PagerDutyReceiver
from monitor.alerting.receiver import Receiver
from monitor.alerting.retrain import RetrainReceiver
from monitor.alerting.slack import SlackReceiver
from monitor.alerting.webhook import WebhookReceiver
from monitor.clock import Clock


def build_receiver(
    name: str, config: ReceiverConfig, client: httpx.AsyncClient, clock: Clock
) -> Receiver:
    """The receiver for one ``receivers:`` entry."""
    if isinstance(config, WebhookReceiverConfig):
        return WebhookReceiver(name, config, client, clock)
    if isinstance(config, SlackReceiverConfig):
        return SlackReceiver(name, config, client, clock)
    if isinstance(config, PagerDutyReceiverConfig):
        return PagerDutyReceiver(name, config, client, clock)
    if isinstance(config, RetrainReceiverConfig):
        return RetrainReceiver(name, config, client, clock)
    raise TypeError(f"unknown receiver config {type(config).__name__}")


__all__ = ["build_receiver"]
