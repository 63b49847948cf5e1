"""Build, calibrate and fit the detectors of one column: what the pipeline calls per feature.

Above both :mod:`~monitor.detectors.factory` (which detectors, with which
thresholds) and :mod:`~monitor.detectors.calibration` (thresholds learned from
the reference), which itself builds detectors through the factory.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from monitor.detectors.base import Detector
from monitor.detectors.calibration import calibrate_thresholds
from monitor.detectors.config import DriftConfig
from monitor.detectors.factory import build_detectors


def fit_column_detectors(
    kind: Literal["numeric", "categorical"],
    reference: np.ndarray,
    config: DriftConfig,
    *,
    window_size: int,
    step: int,
    n_features: int,
    feature: str | None = None,
    seed: int = 0,
) -> list[Detector]:
    """Build and fit the detectors of one column: what the pipeline calls per feature.

    ``reference`` is the column's reference (sorted numeric sample, or category
    counts). With ``threshold: auto`` the warning thresholds are calibrated on
    the reference for this window size and step first (deterministic by seed).
    """
    n_reference = int(reference.size) if kind == "numeric" else int(reference.sum())
    thresholds = None
    if config.threshold == "auto":
        thresholds = calibrate_thresholds(
            reference, kind, window_size, step, config, seed, n_features=n_features
        )
    detectors = build_detectors(
        kind, config, max(1, n_reference), feature=feature, thresholds=thresholds, seed=seed
    )
    for d in detectors:
        d.fit(reference)
    return detectors


__all__ = ["fit_column_detectors"]
