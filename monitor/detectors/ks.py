"""Two-sample Kolmogorov-Smirnov test against a reference sorted once.

``scipy.stats.ks_2samp`` sorts both samples and concatenates them on every
call. The reference does not change between evaluations, so
:class:`KSDetector` sorts it, and evaluates its own empirical CDF at its own
points, once in :meth:`KSDetector.fit`; an evaluation sorts the window and runs
three ``np.searchsorted`` calls.

The statistic and the two-sided p-value reproduce ``ks_2samp(reference, window,
method="auto")`` exactly (same floating-point operations in the same order):

* D is the largest gap between the two right-continuous ECDFs evaluated at
  every observed point (ties are handled by ``side="right"``, like scipy);
* when ``max(n_ref, n_win) <= 10_000`` the p-value is exact (scipy's lattice
  path counts: ``_compute_prob_outside_square`` for equal sizes, the compiled
  ``_compute_outer_prob_inside_method`` otherwise) and D is rounded to a
  multiple of ``1 / lcm(n_ref, n_win)`` as scipy does; if the exact computation
  over- or underflows it falls back, like scipy, to
* the asymptotic p-value ``scipy.stats.kstwo.sf(D, round(n_ref n_win / (n_ref + n_win)))``.

The exact p-value costs milliseconds for windows of thousands of values and
depends only on ``(n_win, h)`` with h = D * lcm an integer, which repeats
between evaluations of a fixed-size window; a small bounded cache keeps it.

Severity: "warning" when ``p < alpha``, "critical" when ``p < alpha / 10``
(see :func:`monitor.detectors.base.grade_p_value`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = KSDetector(alpha=0.05)
>>> d.fit(rng.normal(size=1_000))
>>> r = d.evaluate(rng.normal(loc=0.5, size=500))
>>> r.drifted, r.severity, r.p_value < 1e-10
(True, 'critical', True)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from monitor.detectors.base import DetectorResult, as_numeric, grade_p_value, not_fitted
from monitor.errors import DetectorError

# The compiled routine ks_2samp itself calls for unequal sizes. It is private: if a
# scipy release moves it, unequal-size windows fall back to the asymptotic p-value
# (what scipy does when its exact computation fails) and tests comparing with
# ks_2samp in the exact regime will say so.
try:
    from scipy.stats._stats_pythran import (
        _compute_outer_prob_inside_method as _scipy_outer_prob_inside,
    )
except ImportError:  # pragma: no cover - depends on the scipy build
    _scipy_outer_prob_inside = None

#: scipy's ``MAX_AUTO_N``: ``method="auto"`` is exact when both sizes are at most this.
MAX_EXACT_N = 10_000
_P_CACHE_SIZE = 4096


def prob_outside_square(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n) for equal sample sizes; scipy's ``_compute_prob_outside_square``.

    Kept as a line-by-line port so the floating-point result is identical.
    """
    p = 0.0
    k = int(np.floor(n / h))
    while k >= 0:
        p1 = 1.0
        for j in range(h):
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


def exact_two_sided(n1: int, n2: int, d: float) -> tuple[bool, float, float]:
    """scipy's ``_attempt_exact_2kssamp`` for the two-sided alternative.

    Returns ``(success, d_rounded, p)``; ``success`` is False when the path
    counts over- or underflow, and the caller then uses the asymptotic formula.
    """
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    d = h * 1.0 / lcm
    if h == 0:
        return True, d, 1.0
    try:
        with np.errstate(invalid="raise", over="raise"):
            if n1 == n2:
                prob = prob_outside_square(n1, h)
            elif _scipy_outer_prob_inside is not None:
                prob = float(_scipy_outer_prob_inside(n1, n2, g, h))
            else:  # pragma: no cover - depends on the scipy build
                return False, d, math.nan
    except (FloatingPointError, OverflowError):
        return False, d, math.nan
    if not 0 <= prob <= 1:
        return False, d, prob
    return True, d, prob


def asymptotic_two_sided(n1: int, n2: int, d: float) -> float:
    """Smirnov's asymptotic two-sided p-value, as ``ks_2samp(method="asymp")`` computes it."""
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(stats.kstwo.sf(d, np.round(en)))


class KSDetector:
    """Two-sample KS test of the window against the reference (numeric columns).

    ``alpha`` is the significance level: drift when ``p < alpha`` (warning),
    critical when ``p < alpha / 10``. With windows of thousands of values KS
    detects very small shifts; persistence and correction in
    :class:`monitor.drift.DriftTracker` keep that from paging on noise.
    """

    name: ClassVar[str] = "ks"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, alpha: float = 0.05) -> None:
        if not (isinstance(alpha, int | float) and 0 < alpha < 1):
            raise DetectorError(f"ks: alpha must be in (0, 1), got {alpha!r}")
        self.alpha = alpha
        self._ref: np.ndarray | None = None
        self._ref_cdf_at_ref: np.ndarray | None = None
        self._p_cache: dict[tuple[int, int], tuple[bool, float, float]] = {}

    def fit(self, reference: np.ndarray) -> None:
        """Sort the reference and evaluate its ECDF at its own points, once."""
        ref = np.sort(as_numeric(reference, "reference"))
        if ref.size == 0:
            raise DetectorError("ks: reference must not be empty")
        self._ref = ref
        self._ref_cdf_at_ref = np.searchsorted(ref, ref, side="right") / ref.size
        self._p_cache = {}

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def statistic(self, window: np.ndarray) -> float:
        """The KS distance D between reference and window ECDFs (unrounded)."""
        if self._ref is None or self._ref_cdf_at_ref is None:
            raise not_fitted(self.name)
        win = np.sort(as_numeric(window, "window"))
        if win.size == 0:
            raise DetectorError("ks: window must not be empty")
        ref, n1, n2 = self._ref, self._ref.size, win.size
        # scipy: cdf1 - cdf2 at every point of concatenate([ref, win]); max of both signs.
        diff_at_ref = self._ref_cdf_at_ref - np.searchsorted(win, ref, side="right") / n2
        diff_at_win = (
            np.searchsorted(ref, win, side="right") / n1
            - np.searchsorted(win, win, side="right") / n2
        )
        max_s = max(diff_at_ref.max(), diff_at_win.max())
        min_s = min(max(-min(diff_at_ref.min(), diff_at_win.min()), 0.0), 1.0)
        return float(min_s if min_s > max_s else max_s)

    def _p_value(self, n1: int, n2: int, d: float) -> tuple[float, float, bool]:
        """(D as scipy reports it, p-value, exact?) for sizes n1, n2."""
        if max(n1, n2) <= MAX_EXACT_N:
            g = math.gcd(n1, n2)
            key = (n2, int(np.round(d * ((n1 // g) * n2))))
            hit = self._p_cache.get(key)
            if hit is None:
                hit = exact_two_sided(n1, n2, d)
                if len(self._p_cache) >= _P_CACHE_SIZE:
                    self._p_cache.clear()
                self._p_cache[key] = hit
            success, d, prob = hit
            if success:
                return d, float(np.clip(prob, 0, 1)), True
        return d, float(np.clip(asymptotic_two_sided(n1, n2, d), 0, 1)), False

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """KS statistic and two-sided p-value, equal to ``scipy.stats.ks_2samp``."""
        d = self.statistic(window)
        assert self._ref is not None
        n1, n2 = self._ref.size, int(np.asarray(window).size)
        d, p, exact = self._p_value(n1, n2, d)
        severity = grade_p_value(p, self.alpha)
        return DetectorResult(
            detector=self.name,
            statistic=d,
            p_value=p,
            threshold=self.alpha,
            drifted=severity != "ok",
            severity=severity,
            details={"critical_threshold": self.alpha / 10.0, "exact": float(exact)},
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the p-value cache: it is derived and rebuilds itself."""
        state = dict(self.__dict__)
        state["_p_cache"] = {}
        return state
