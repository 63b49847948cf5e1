"""Label drift: the labels of the metric window against the first full window of labels.

Labels arrive late and are not in reference files, so the first
``performance.window_size`` joined labels become the label reference; from then
on every evaluation compares the labels of the metric window with it, with the
window tests for the label's type (class counts for classifiers, values for
regression). The monitor reports the results as the column ``__label__``. Pure.
"""

from __future__ import annotations

import numpy as np

from monitor.detectors.base import Detector, DetectorResult
from monitor.detectors.config import DriftConfig
from monitor.detectors.factory import STREAM_DETECTORS
from monitor.detectors.fitting import fit_column_detectors
from monitor.performance.tracker import PerformanceTracker
from monitor.signals import LABEL  # label drift is reported as this column


class LabelDrift:
    """The label reference and the window tests fitted on it, once there is one."""

    def __init__(self, drift: DriftConfig, step: int, seed: int) -> None:
        """``drift``: the model's detector settings; ``step``: its window step; ``seed``:
        the tests' seed (stable per model)."""
        self.drift = drift
        self.step = step
        self.seed = seed
        self.detectors: list[Detector] | None = None
        self.reference: np.ndarray | None = None  # kept: a checkpoint saves it

    def evaluate(self, perf: PerformanceTracker) -> list[DetectorResult] | None:
        """This evaluation's label-drift results (None while there are too few labels, and
        at the evaluation that takes the label reference)."""
        labels = perf.label_values()
        numeric = perf.task == "regression"
        if self.detectors is None:
            if labels.size < perf.config.window_size:
                return None
            reference = np.sort(labels) if numeric else np.bincount(labels.astype(np.int64))
            self.fit(perf, reference)
            return None
        if labels.size < perf.config.min_window_labels:
            return None
        window = np.sort(labels) if numeric else np.bincount(labels.astype(np.int64))
        return [d.evaluate(window) for d in self.detectors]

    def fit(self, perf: PerformanceTracker, reference: np.ndarray) -> None:
        """Fit the label-drift tests on the label reference."""
        detectors = fit_column_detectors(
            "categorical" if perf.task != "regression" else "numeric",
            reference,
            self.drift,
            window_size=perf.config.window_size,
            step=self.step,
            n_features=1,
            feature=LABEL,
            seed=self.seed,
        )
        # Stream detectors would need every label through update(); the window
        # tests are what label drift is about.
        self.detectors = [d for d in detectors if d.name not in STREAM_DETECTORS]
        self.reference = reference
