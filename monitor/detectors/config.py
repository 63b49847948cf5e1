"""Drift-detection settings per model (STUB: the detector work replaces this)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DriftConfig(BaseModel):
    """Which detectors run, their thresholds, correction and persistence."""

    model_config = ConfigDict(extra="forbid")
