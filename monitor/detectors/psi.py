"""Population Stability Index: a binned distance between reference and window.

PSI = sum_i (w_i - r_i) * ln(w_i / r_i) over bins, where r and w are the
reference and window proportions. It is the industry's habit (credit scoring)
and reads the same for numeric and categorical columns, which is why it is a
default for both. Conventional grades: < 0.1 stable, 0.1-0.25 warning,
>= 0.25 critical.

Everything that depends only on the reference (bin edges, reference
proportions) is computed once in :meth:`PSIDetector.fit`; an evaluation is one
``np.searchsorted`` + ``np.bincount`` over the window.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = PSIDetector(bins=10)
>>> d.fit(rng.normal(size=10_000))
>>> r = d.evaluate(rng.normal(size=5_000))
>>> r.drifted, r.severity
(False, 'ok')
>>> r = d.evaluate(rng.normal(loc=1.0, size=5_000))
>>> r.drifted, r.severity
(True, 'critical')
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.detectors.base import (
    ColumnKind,
    DetectorResult,
    check_kind,
    grade,
    not_fitted,
)
from monitor.detectors.binning import reference_bins, window_bins
from monitor.errors import DetectorError


def binned_proportions(counts: np.ndarray, epsilon: float) -> np.ndarray:
    """Counts to proportions, with empty bins lifted to ``epsilon`` then renormalised.

    PSI and KL divergence are infinite when a bin is empty on one side; a small
    floor keeps the statistic finite and comparable across evaluations.
    """
    total = counts.sum()
    props = counts / total if total > 0 else np.full(counts.shape, 1.0 / counts.size)
    props = np.maximum(props, epsilon)
    return props / props.sum()


class PSIDetector:
    """Population Stability Index over reference-quantile bins or category codes.

    ``bins`` is the number of quantile bins for numeric columns (fewer remain if
    the reference has ties). For categorical columns each reference category is
    a bin and every code at or beyond ``len(reference)`` is pooled into one
    extra "unseen" bin, so a new category shows up as drift rather than being
    ignored. ``warning`` and ``critical`` grade the statistic; ``epsilon``
    floors empty bins.
    """

    name: ClassVar[str] = "psi"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def __init__(
        self,
        bins: int = 10,
        warning: float = 0.1,
        critical: float = 0.25,
        epsilon: float = 1e-4,
        kind: ColumnKind = "numeric",
    ) -> None:
        check_kind(kind, self.supports, self.name)
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
            raise DetectorError(f"psi: bins must be an integer >= 2, got {bins!r}")
        if not 0 < warning <= critical:
            raise DetectorError(
                f"psi: thresholds must satisfy 0 < warning <= critical, "
                f"got warning={warning!r}, critical={critical!r}"
            )
        if not 0 < epsilon < 1:
            raise DetectorError(f"psi: epsilon must be in (0, 1), got {epsilon!r}")
        self.bins = bins
        self.warning = warning
        self.critical = critical
        self.epsilon = epsilon
        self.kind = kind
        self._edges: np.ndarray | None = None
        self._ref_props: np.ndarray | None = None
        self._ref_log: np.ndarray | None = None

    def fit(self, reference: np.ndarray) -> None:
        """Compute bin edges (numeric) and smoothed reference proportions once."""
        self._edges, counts = reference_bins(self.kind, reference, self.bins, self.name)
        self._ref_props = binned_proportions(counts, self.epsilon)
        self._ref_log = np.log(self._ref_props)

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def window_counts(self, window: np.ndarray) -> np.ndarray:
        """The window's counts in the reference's bins (last bin = unseen for categorical)."""
        if self._ref_props is None:
            raise not_fitted(self.name)
        return window_bins(self._edges, self._ref_props.size, window)

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """PSI of the window against the reference; graded by ``warning``/``critical``."""
        counts = self.window_counts(window)
        assert self._ref_props is not None and self._ref_log is not None
        if counts.sum() == 0:
            raise DetectorError("psi: window must not be empty")
        win_props = binned_proportions(counts, self.epsilon)
        psi = float(np.sum((win_props - self._ref_props) * (np.log(win_props) - self._ref_log)))
        severity = grade(psi, self.warning, self.critical)
        return DetectorResult(
            detector=self.name,
            statistic=psi,
            p_value=None,
            threshold=self.warning,
            drifted=severity != "ok",
            severity=severity,
            details={"critical_threshold": self.critical, "bins": float(counts.size)},
        )
