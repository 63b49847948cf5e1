"""Alerting: rules, grouping, dedup, silences, receivers, durable delivery."""

from monitor.alerting.signals import EvaluationContext, Signal

__all__ = ["EvaluationContext", "Signal"]
