"""Alerting metrics, registered on the injected registry (never the global one).

Labels are bounded: ``receiver`` comes from the configuration, ``outcome``
from a fixed set, ``model`` from the monitored models, ``severity`` is
warning/critical.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: ``delivered`` accepted; ``retried`` a retryable failure, will try again; ``failed`` a
#: permanent (4xx) rejection; ``dead`` gave up at deadline/max attempts, or a row this build
#: cannot read (a newer release's, after a rollback); ``silenced`` muted
#: by a silence; ``suppressed`` withheld by policy (retrain min interval).
OUTCOMES = ("delivered", "retried", "failed", "dead", "silenced", "suppressed", "superseded")

#: Why a notification was not sent on its own (``monitor_alert_notifications_suppressed_total``):
#: see :data:`monitor.alerting.outbox.SUPPRESSED_REASONS` (the same, kept here so the metrics
#: import no database module).
SUPPRESSED_REASONS = ("page_cap", "folded_incident")

#: Why a delivery attempt failed (``monitor_notification_failures_total{reason}``): see
#: :class:`~monitor.errors.DeliveryError`. Anything else is counted as ``error``.
FAILURE_REASONS = (
    "timeout",
    "connect",
    "transport",
    "invalid_url",
    "http_429",
    "http_4xx",
    "http_5xx",
    "receiver_error",
    "error",
)


class AlertMetrics:
    """The alerting instruments."""

    def __init__(self, registry: CollectorRegistry, receivers: Iterable[str]) -> None:
        self.notifications = Counter(
            "monitor_notifications",
            "Notification delivery outcomes per receiver.",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "monitor_notification_delivery_seconds",
            "Time from enqueue to accepted delivery, retries included.",
            ["receiver"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "monitor_outbox_depth",
            "Undelivered notifications waiting in the outbox.",
            ["receiver"],
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "monitor_outbox_oldest_undelivered_age_seconds",
            "Age of the oldest undelivered notification (0 when none).",
            registry=registry,
        )
        self.failures = Counter(
            "monitor_notification_failures",
            "Failed delivery attempts per receiver and reason (retried or not).",
            ["receiver", "reason"],
            registry=registry,
        )
        self.outbox_errors = Counter(
            "monitor_outbox_errors",
            "Dispatcher passes that could not read or update the outbox database.",
            registry=registry,
        )
        self.suppressed = Counter(
            "monitor_alert_notifications_suppressed",
            "Notifications not sent on their own per receiver and reason: 'page_cap' a new "
            "incident past the receiver's page cap (folded into its next summary), "
            "'folded_incident' a later notification of such an incident.",
            ["receiver", "reason"],
            registry=registry,
        )
        self.alerts_firing = Gauge(
            "monitor_alerts_firing",
            "Firing alert signals per model and severity.",
            ["model", "severity"],
            registry=registry,
        )
        for r in receivers:  # series exist at 0 from the start, so rate() works at once
            for outcome in OUTCOMES:
                self.notifications.labels(receiver=r, outcome=outcome)
            self.delivery_seconds.labels(receiver=r)
            self.outbox_depth.labels(receiver=r).set(0)
            for reason in FAILURE_REASONS:
                self.failures.labels(receiver=r, reason=reason)
            for reason in SUPPRESSED_REASONS:
                self.suppressed.labels(receiver=r, reason=reason)

    def count(self, receiver: str, outcome: str, n: int = 1) -> None:
        self.notifications.labels(receiver=receiver, outcome=outcome).inc(n)

    def suppress(self, receiver: str, reason: str) -> None:
        """Count one notification the page cap folded (``reason`` one of SUPPRESSED_REASONS)."""
        self.suppressed.labels(receiver=receiver, reason=reason).inc()

    def failure(self, receiver: str, reason: str) -> None:
        """Count one failed attempt; an unknown reason is counted as ``error`` (bounded)."""
        label = reason if reason in FAILURE_REASONS else "error"
        self.failures.labels(receiver=receiver, reason=label).inc()


__all__ = ["FAILURE_REASONS", "OUTCOMES", "SUPPRESSED_REASONS", "AlertMetrics"]
