"""Performance-tracking settings per model (STUB: the performance work replaces this)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PerformanceConfig(BaseModel):
    """Task type, label join store bounds, metric windows."""

    model_config = ConfigDict(extra="forbid")
