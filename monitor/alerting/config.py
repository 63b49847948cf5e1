"""Alerting settings (STUB: the alerting work replaces this)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlertingConfig(BaseModel):
    """Rules, receivers, routes, silences and the retrain policy."""

    model_config = ConfigDict(extra="forbid")
