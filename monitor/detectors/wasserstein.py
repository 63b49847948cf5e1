"""Wasserstein-1 (earth mover's) distance, in units of the reference's standard deviation.

For large samples a KS p-value flags shifts too small to matter; a distance
with a scale answers "how far did it move?" instead. Normalising by the
reference standard deviation (population std, ``ddof=0``, as Evidently does)
makes one threshold (0.1 = a tenth of a std) usable across features.

W1 = integral |F_ref(x) - F_win(x)| dx over the merged sorted values, computed
from the reference sorted once at :meth:`WassersteinDetector.fit`; equal to
``scipy.stats.wasserstein_distance(reference, window) / reference.std()``.
A constant reference (std 0) is normalised by 1 instead (the raw distance).

A small window is far from its reference by chance alone (120 stationary values were above
0.1 in 58 % of evaluations): the thresholds rise to the noise floor of
:mod:`monitor.detectors.noise_floor` where it is higher (``noise_alpha``; None turns it
off). At the default window (5,000 values against 10,000) the floor is 0.097 for normal
and lognormal data, below the threshold (only smaller windows are affected), and 0.105 for
Student's t(3), whose heavy tails spread the distance more.

>>> import numpy as np
>>> rng = np.random.default_rng(2)
>>> d = WassersteinDetector(threshold=0.1)
>>> d
WassersteinDetector(threshold=0.1, critical=None, noise_alpha=0.0001)
>>> d.fit(rng.normal(size=10_000))
>>> print(d.evaluate(rng.normal(size=5_000)))
wasserstein: no drift, statistic 0.0154, threshold 0.1
>>> print(d.evaluate(rng.normal(loc=0.5, size=5_000)))  # in reference standard deviations
wasserstein: drift (critical), statistic 0.4694, threshold 0.1
>>> small = [d.evaluate(rng.normal(size=120)) for _ in range(200)]  # stationary, 120 values
>>> sum(r.statistic > 0.1 for r in small), sum(r.drifted for r in small)  # above 0.1; drifted
(117, 0)
>>> print(d.evaluate(rng.normal(loc=1.0, size=120)))  # the threshold is the floor there
wasserstein: drift (critical), statistic 1.011, threshold 0.511837
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import numpy as np

from monitor.column_sort import sort_values
from monitor.detectors.base import DetectorBase, DetectorResult, as_numeric, grade, not_fitted
from monitor.detectors.noise_floor import Floors, wasserstein_noise_floor, wasserstein_spread
from monitor.errors import DetectorError


class WassersteinDetector(DetectorBase):
    """Normalised Wasserstein-1 distance; warning at ``threshold``, critical at ``critical``.

    ``critical`` defaults (None) to twice ``threshold``. ``noise_alpha``: both are raised
    to the noise floor where it is higher (the result's threshold and
    ``details["critical_threshold"]`` are the raised ones, ``details["noise_floor"]`` says
    so); None: the thresholds alone. 1e-4 rather than PSI's 1e-5 because the floor is a
    bound (module docstring of :mod:`monitor.detectors.noise_floor`): at 1e-5 it would sit
    above the threshold at the default window.
    """

    name: ClassVar[str] = "wasserstein"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(
        self,
        threshold: float = 0.1,
        critical: float | None = None,
        noise_alpha: float | None = 1e-4,
    ) -> None:
        if not (isinstance(threshold, int | float) and threshold > 0):
            raise DetectorError(f"wasserstein: threshold must be > 0, got {threshold!r}")
        if critical is not None and not critical >= threshold:
            raise DetectorError(f"wasserstein: critical must be >= threshold, got {critical!r}")
        if noise_alpha is not None and not 0 < noise_alpha < 1:
            raise DetectorError(
                f"wasserstein: noise_alpha must be in (0, 1) or None, got {noise_alpha!r}"
            )
        self.threshold = threshold
        self.critical = critical
        self.noise_alpha = noise_alpha
        self._ref: np.ndarray | None = None
        self._scale = 1.0
        self._floors: Floors | None = None

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
        if self.noise_alpha is not None:
            self._floors = Floors(
                partial(
                    wasserstein_noise_floor,
                    m=ref.size,
                    spread=wasserstein_spread(self._ref, self._scale),
                    alpha=self.noise_alpha,
                )
            )

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def distance(self, window: np.ndarray) -> float:
        """Raw (unnormalised) W1 distance between reference and window."""
        if self._ref is None:
            raise not_fitted(self.name)
        win = sort_values(as_numeric(window, "window"))
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

    def noise_floor(self, n: int) -> float:
        """The noise floor for a window of ``n`` values (0.0 when turned off)."""
        if self.noise_alpha is None or n <= 0:
            return 0.0
        if self._floors is None:
            raise not_fitted(self.name)
        return self._floors(n)

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """W1 distance divided by the reference standard deviation."""
        statistic = self.distance(window) / self._scale
        warning, critical = self.threshold, self.critical_threshold
        details = {"critical_threshold": critical, "scale": self._scale}
        floor = self.noise_floor(np.size(window))
        if floor > warning:  # a small window: its noise reaches the thresholds
            warning, critical = floor, max(critical, floor)
            details["critical_threshold"] = critical
            details["noise_floor"] = floor
        severity = grade(statistic, warning, critical)
        return DetectorResult(
            detector=self.name,
            statistic=statistic,
            p_value=None,
            threshold=warning,
            drifted=severity != "ok",
            severity=severity,
            details=details,
        )
