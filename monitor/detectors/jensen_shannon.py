"""Jensen-Shannon distance between binned reference and window distributions.

JS distance (base 2) is the square root of the symmetric, bounded (0 to 1)
Jensen-Shannon divergence. Unlike PSI it needs no smoothing (an empty bin on
one side contributes a finite amount) and it is bounded, which makes one
threshold meaningful across columns: Evidently uses 0.1 for both numeric and
many-category columns. Numeric columns use the reference-quantile bins of
:func:`monitor.detectors.binning.quantile_edges`; categorical count vectors use
their codes plus one pooled "unseen" bucket. Equal to
``scipy.spatial.distance.jensenshannon(p, q, base=2)`` on the same proportions.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> d = JensenShannonDetector(threshold=0.1)
>>> d
JensenShannonDetector(threshold=0.1, bins=10, critical=None, kind='numeric', noise_alpha=1e-05)
>>> d.fit(rng.normal(size=10_000))
>>> print(d.evaluate(rng.normal(size=5_000)))
jensen_shannon: no drift, statistic 0.01595, threshold 0.1
>>> print(d.evaluate(rng.normal(loc=1.0, size=5_000)))
jensen_shannon: drift (critical), statistic 0.3982, threshold 0.1
>>> print(d.evaluate(rng.normal(size=120)))  # chance alone reaches 0.1 at 120 values
jensen_shannon: no drift, statistic 0.1064, threshold 0.399914

As PSI, a distance counts as drift only above its noise floor (``noise_alpha``,
:mod:`monitor.detectors.noise_floor`): at 120 values, 70 % of stationary windows were
at 0.1 or more; and a feature of 200 categories sits near 0.1 at the default window.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import numpy as np

from monitor.detectors.base import (
    ColumnKind,
    DetectorBase,
    DetectorResult,
    check_kind,
    grade,
    not_fitted,
)
from monitor.detectors.binning import reference_bins, window_bins
from monitor.detectors.noise_floor import Floors, js_noise_floor
from monitor.errors import DetectorError


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Base-2 Jensen-Shannon distance of two probability vectors (0 log 0 = 0).

    >>> js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    """
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * (kl_p + kl_q), 0.0)))


class JensenShannonDetector(DetectorBase):
    """Jensen-Shannon distance; warning at ``threshold``, critical at ``critical``.

    ``critical`` defaults (None) to twice ``threshold``, capped at 1. ``bins``
    is the number of reference-quantile bins for numeric columns. ``noise_alpha`` sets
    the noise floor: both thresholds are raised to it where it is higher (the result's
    threshold and ``details["critical_threshold"]`` are the raised ones, and
    ``details["noise_floor"]`` says so); None turns it off.
    """

    name: ClassVar[str] = "jensen_shannon"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def __init__(
        self,
        threshold: float = 0.1,
        bins: int = 10,
        critical: float | None = None,
        kind: ColumnKind = "numeric",
        noise_alpha: float | None = 1e-5,
    ) -> None:
        check_kind(kind, self.supports, self.name)
        if noise_alpha is not None and not 0 < noise_alpha < 1:
            raise DetectorError(
                f"jensen_shannon: noise_alpha must be in (0, 1) or None, got {noise_alpha!r}"
            )
        if not 0 < threshold <= 1:
            raise DetectorError(f"jensen_shannon: threshold must be in (0, 1], got {threshold!r}")
        if critical is not None and not threshold <= critical <= 1:
            raise DetectorError(
                f"jensen_shannon: critical must be in [threshold, 1], got {critical!r}"
            )
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
            raise DetectorError(f"jensen_shannon: bins must be an integer >= 2, got {bins!r}")
        self.threshold = threshold
        self.bins = bins
        self.critical = critical
        self.kind = kind
        self.noise_alpha = noise_alpha
        self._edges: np.ndarray | None = None
        self._ref_props: np.ndarray | None = None
        self._floors: Floors | None = None  # noise floors by window size, once fitted

    @property
    def critical_threshold(self) -> float:
        """The effective critical level (``critical`` or ``min(2 * threshold, 1)``)."""
        return self.critical if self.critical is not None else min(2.0 * self.threshold, 1.0)

    def fit(self, reference: np.ndarray) -> None:
        """Bin edges (numeric) and reference proportions, once."""
        self._edges, counts = reference_bins(self.kind, reference, self.bins, self.name)
        self._ref_props = counts / counts.sum()
        self._floors = Floors(partial(js_noise_floor, counts=counts, alpha=self.noise_alpha))

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """JS distance between the window's and the reference's binned proportions."""
        if self._ref_props is None:
            raise not_fitted(self.name)
        counts = window_bins(self._edges, self._ref_props.size, window)
        if counts.sum() == 0:
            raise DetectorError("jensen_shannon: window must not be empty")
        n = int(counts.sum())
        distance = js_distance(self._ref_props, counts / n)
        warning, critical = self.threshold, self.critical_threshold
        details = {"critical_threshold": critical}
        floor = self.noise_floor(n)
        if floor > warning:  # a small window: its noise reaches the thresholds
            warning, critical = floor, max(critical, floor)
            details = {"critical_threshold": critical, "noise_floor": floor}
        severity = grade(distance, warning, critical)
        return DetectorResult(
            detector=self.name,
            statistic=distance,
            p_value=None,
            threshold=warning,
            drifted=severity != "ok",
            severity=severity,
            details=details,
        )

    def noise_floor(self, n: int) -> float:
        """The noise floor for a window of ``n`` values (0.0 when turned off): see
        :func:`~monitor.detectors.noise_floor.js_noise_floor`; kept per ``n``."""
        if self.noise_alpha is None or n <= 0:
            return 0.0
        if self._floors is None:
            raise not_fitted(self.name)
        return self._floors(n)
