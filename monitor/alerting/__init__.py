"""Alerting: rules, grouping, dedup, silences, receivers, durable delivery.

Public surface: :class:`AlertService` (the facade the pipeline calls),
:class:`AlertingConfig`, :class:`Notification`, :class:`Signal`,
:class:`EvaluationContext` and :func:`register_routes` (silence HTTP API).
The pure core is :mod:`~monitor.alerting.policy` (plus ``rules``, ``routing``,
``silences``, ``retrain_policy``, ``backoff``); ``outbox``, ``dispatcher``
and the receivers (``webhook``, ``slack``, ``pagerduty``, ``retrain`` over
``http``) are the I/O edges.
"""

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.alerting.http_api import register_routes
from monitor.alerting.notification import Notification, SignalEvidence
from monitor.alerting.signals import EvaluationContext, Signal
from monitor.alerting.silences import Silence

__all__ = [
    "AlertService",
    "AlertingConfig",
    "EvaluationContext",
    "Notification",
    "Signal",
    "SignalEvidence",
    "Silence",
    "register_routes",
]
