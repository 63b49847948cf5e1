"""Routing: which receivers get a notification (pure).

Routes are evaluated in order like Alertmanager's child routes: the first
matching route delivers and stops, unless it says ``continue``. When nothing
matches (or no routes are configured) every non-retrain receiver gets it,
so a minimal configuration never silently drops an alert.

A notification routes by the *incident* severity (the highest severity ever
notified in the incident), and a resolve by every severity the incident was
notified at (:func:`monitor.alerting.engine.route_all`), so it reaches each
receiver a firing of the incident went to: a warning fire to chat, then a
critical update to the pager only, closes in chat as well.
"""

from __future__ import annotations

from monitor.alerting.config import AlertingConfig
from monitor.alerting.rules import glob_match, severity_rank


def route(config: AlertingConfig, model: str, severity: str) -> list[str]:
    """Receiver names for a notification about ``model`` at incident ``severity``, deduplicated.

    >>> from monitor.alerting.config import AlertingConfig
    >>> cfg = AlertingConfig.model_validate({
    ...     "receivers": {"pd": {"type": "pagerduty", "routing_key": "k"},
    ...                   "chat": {"type": "slack", "webhook_url": "https://x"}},
    ...     "routes": [{"match": {"severity": "critical"}, "receivers": ["pd"], "continue": True},
    ...                {"receivers": ["chat"]}]})
    >>> route(cfg, "m", "critical"), route(cfg, "m", "warning")
    (['pd', 'chat'], ['chat'])
    """
    chosen: list[str] = []
    matched = False
    for r in config.routes:
        if not glob_match(r.match.model, model):
            continue
        if r.match.severity is not None and severity_rank(severity) < severity_rank(
            r.match.severity
        ):
            continue
        matched = True
        chosen.extend(n for n in r.receivers if n not in chosen)
        if not r.continue_:
            break
    if not matched:
        chosen = config.alert_receivers()
    return chosen


__all__ = ["route"]
