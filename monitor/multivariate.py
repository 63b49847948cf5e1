"""Model-level multivariate drift: the numeric features of a model, together.

:class:`MultivariateMonitor` fits a :class:`~monitor.detectors.pca.PCADetector` on
the reference's joint rows (``ReferenceProfile.joint``: the numeric features as they
came together; the per-column samples are sorted and cannot serve) and evaluates it
on the window's numeric matrix at every evaluation. Its result is reported under the
subject ``__multivariate__``, goes through the drift tracker like a feature's
(persistence, hysteresis, and the p-value correction: it is a KS test, corrected in
the KS family, see :mod:`monitor.drift`) and becomes a signal of kind
``multivariate`` naming the features that contribute most to the error.

A profile without joint rows (built before they existed) learns the joint reference
from the first full window instead, as label drift learns its reference; that
window is not evaluated. Pure: no I/O.
"""

from __future__ import annotations

import numpy as np

from monitor.config import MultivariateConfig
from monitor.detectors.base import DetectorResult
from monitor.detectors.pca import PCADetector
from monitor.errors import DetectorError
from monitor.reference import ReferenceProfile, shown
from monitor.signals import MULTIVARIATE, PREDICTION
from monitor.window import SlidingWindow, WindowMark

MIN_ROWS = 50  # fewer window rows than this: no verdict
TOP_FEATURES = 3  # features named in a multivariate signal


class MultivariateMonitor:
    """PCA reconstruction drift over a model's numeric features; see the module."""

    def __init__(
        self,
        config: MultivariateConfig,
        profile: ReferenceProfile,
        numeric_columns: list[str],
        seed: int = 0,
    ) -> None:
        self.config = config
        self.features = [c for c in numeric_columns if c != PREDICTION]
        index = [numeric_columns.index(c) for c in self.features]
        # A run of adjacent columns (the features before the prediction, as columnised) is
        # a slice: a view of the window, not a copy of it at every evaluation.
        contiguous = bool(index) and index == list(range(index[0], index[0] + len(index)))
        self._index: list[int] | slice = (
            slice(index[0], index[0] + len(index)) if contiguous else index
        )
        self._seed = seed
        self.detector: PCADetector | None = None
        # The window as it stood at the detector's last evaluate_rows (see evaluate).
        self._mark: WindowMark | None = None
        self.active = config.enabled and len(self.features) >= 2
        if not self.active or profile.joint is None:
            return
        if not set(self.features) <= set(profile.joint_columns):
            return
        cols = [profile.joint_columns.index(f) for f in self.features]
        self._fit(profile.joint[:, cols])

    def _fit(self, rows: np.ndarray) -> None:
        detector = PCADetector(self.config.variance, self.config.alpha, self._seed)
        try:
            detector.fit(rows)
        except DetectorError:  # too few complete rows: stay without a multivariate verdict
            return
        self.detector = detector

    def evaluate(
        self, num: np.ndarray, window: SlidingWindow | None = None
    ) -> dict[str, list[DetectorResult]]:
        """``{"__multivariate__": [result]}`` for the window's numeric matrix, or ``{}``.

        With ``window``, ``num`` must be that window's :meth:`~SlidingWindow.numeric`
        as it is (not a subset): the detector then projects only the rows written since
        this monitor's last evaluation of it (``written_since``), keeping one error per row
        in between instead of a copy of the rows. Without (a time window's subset), every
        row is projected and nothing is kept.
        """
        if not self.active or len(num) < MIN_ROWS:
            return {}
        x = num[:, self._index]
        if self.detector is None:
            self._fit(x)
            return {}
        if window is None or len(num) != window.size:
            self._mark = None
            return {MULTIVARIATE: [self.detector.evaluate(x)]}
        changed = window.written_since(self._mark)
        result = self.detector.evaluate_rows(x, changed)
        self._mark = window.mark()  # only once the detector's errors are of this window
        return {MULTIVARIATE: [result]}

    def contributions(self, result: DetectorResult) -> list[tuple[str, float]]:
        """The (at most :data:`TOP_FEATURES`) features whose mean squared residual grew,
        most first, with that growth; the names as they are (callers escape them).
        Empty when the test did not drift (the residuals are computed only then)."""
        excess = []
        for k, v in result.details.items():
            if not k.startswith("residual:"):
                continue
            j = int(k.split(":", 1)[1])
            if 0 <= j < len(self.features):  # a restored result of other columns: skip
                excess.append((self.features[j], v))
        excess.sort(key=lambda fv: -fv[1])
        return [(f, v) for f, v in excess[:TOP_FEATURES] if v > 0]

    def top_features(self, result: DetectorResult) -> str:
        """The features whose mean squared residual grew most, as ``"a (+1.2), b (+0.4)"``."""
        top = [(shown(f, 80, quote=False), v) for f, v in self.contributions(result)]
        return ", ".join(f"{f} ({v:+.3g})" for f, v in top)
