"""Wasserstein-1 (earth mover's) distance, in units of the reference's standard deviation.

For large samples a KS p-value flags shifts too small to matter; a distance
with a scale answers "how far did it move?" instead. Normalising by the
reference standard deviation (population std, ``ddof=0``, as Evidently does)
makes one threshold (0.1 = a tenth of a std) usable across features.

W1 = integral |F_ref(x) - F_win(x)| dx over the merged sorted values, computed
from the reference sorted once at :meth:`WassersteinDetector.fit`; equal to
``scipy.stats.wasserstein_distance(reference, window) / reference.std()``.
A constant reference (std 0) is normalised by 1 instead (the raw distance).

>>> import numpy as np
>>> rng = np.random.default_rng(2)
>>> d = WassersteinDetector(threshold=0.1)
>>> d
WassersteinDetector(threshold=0.1, critical=None)
>>> d.fit(rng.normal(size=10_000))
>>> print(d.evaluate(rng.normal(size=5_000)))
wasserstein: no drift, statistic 0.0154, threshold 0.1
>>> print(d.evaluate(rng.normal(loc=0.5, size=5_000)))  # in reference standard deviations
wasserstein: drift (critical), statistic 0.4694, threshold 0.1
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import DetectorBase, DetectorResult, as_numeric, grade, not_fitted
from monitor.errors import DetectorError


class WassersteinDetector(DetectorBase):
    """Normalised Wasserstein-1 distance; warning at ``threshold``, critical at ``critical``.

    ``critical`` defaults (None) to twice ``threshold``.
    """

    name: ClassVar[str] = "wasserstein"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, threshold: float = 0.1, critical: float | None = None) -> None:
        if not (isinstance(threshold, int | float) and threshold > 0):
            raise DetectorError(f"wasserstein: threshold must be > 0, got {threshold!r}")
        if critical is not None and not critical >= threshold:
            raise DetectorError(f"wasserstein: critical must be >= threshold, got {critical!r}")
        self.threshold = threshold
        self.critical = critical
        self._ref: np.ndarray | None = None
        self._scale = 1.0

    @property
    def critical_threshold(self) -> float:
        """The effective critical level (``critical`` or ``2 * threshold``)."""
        return self.critical if self.critical is not None else 2.0 * self.threshold

    def fit(self, reference: np.ndarray) -> None:
        """Sort the reference and take its standard deviation, once."""
        ref = as_numeric(reference, "reference")
        if ref.size == 0:
            raise DetectorError("wasserstein: reference must not be empty")
        self._ref = np.sort(ref)
        std = float(np.std(ref))
        self._scale = std if std > 0 else 1.0

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def distance(self, window: np.ndarray) -> float:
        """Raw (unnormalised) W1 distance between reference and window."""
        if self._ref is None:
            raise not_fitted(self.name)
        win = np.sort(as_numeric(window, "window"))
        if win.size == 0:
            raise DetectorError("wasserstein: window must not be empty")
        ref = self._ref
        # Merging two sorted runs: the stable sort (timsort) is linear on them.
        merged = np.sort(np.concatenate([ref, win]), kind="stable")
        deltas = np.diff(merged)
        points = merged[:-1]
        cdf_ref = np.searchsorted(ref, points, side="right") / ref.size
        cdf_win = np.searchsorted(win, points, side="right") / win.size
        return float(np.sum(np.abs(cdf_ref - cdf_win) * deltas))

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """W1 distance divided by the reference standard deviation."""
        statistic = self.distance(window) / self._scale
        severity = grade(statistic, self.threshold, self.critical_threshold)
        return DetectorResult(
            detector=self.name,
            statistic=statistic,
            p_value=None,
            threshold=self.threshold,
            drifted=severity != "ok",
            severity=severity,
            details={"critical_threshold": self.critical_threshold, "scale": self._scale},
        )
