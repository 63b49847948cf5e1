"""Two-sample Kolmogorov-Smirnov test against a reference sorted once.

``scipy.stats.ks_2samp`` sorts both samples and concatenates them on every
call. The reference does not change between evaluations, so
:class:`KSDetector` buckets it once in :meth:`KSDetector.fit`: its sorted
unique values and its counts at them (:class:`monitor.detectors.ranks.RankBuckets`).
A window is then counted into those rank buckets, which the pipeline does once
per value as it enters the window (:meth:`KSDetector.evaluate_counts`), and D is
one pass over the prefix sums of the counts: no sort of the window, no merge.
D equals scipy's statistic bit for bit, ties included (the argument is in
:mod:`monitor.detectors.ranks`; ``tests/test_ranks.py`` and
``tests/test_fast_paths.py`` check thousands of random cases).

The p-value is where the time goes, so ``method`` chooses it:

* ``"auto"``: equal to ``ks_2samp(reference, window, method="auto")``. When
  ``max(n_ref, n_win) <= 10_000`` that is scipy's *exact* p-value (lattice path
  counts: ``_compute_prob_outside_square`` for equal sizes, the compiled
  ``_compute_outer_prob_inside_method`` otherwise, a private scipy name kept in
  :mod:`monitor.detectors.scipy_private`), with D rounded to a
  multiple of ``1 / lcm(n_ref, n_win)`` as scipy does; if it over- or
  underflows it falls back, like scipy, to the asymptotic value below. Costs 10
  to 90 ms per call for a 10,000-value reference and a 5,000-value window
  (more for larger D), so a small bounded cache keyed on ``(n_win, D * lcm)``
  keeps it.
* ``"asymp"``: equal to ``ks_2samp(..., method="asymp")``:
  ``scipy.stats.kstwo.sf(D, round(n_ref n_win / (n_ref + n_win)))``. Despite
  the name, ``kstwo`` is the finite-n one-sample distribution and costs 0.5 to
  7 ms at these sizes; cached the same way.
* ``"kolmogorov"`` (the default): Kolmogorov's limiting distribution,
  ``scipy.special.kolmogorov(sqrt(n_eff) * D)`` with ``n_eff = n_ref n_win /
  (n_ref + n_win)`` (unrounded D), the textbook large-sample two-sample
  p-value. About 20 microseconds. For a 10,000-value reference and a 5,000-value
  window it is 0 % to +3 % *above* the exact p-value for p from 0.9 down to
  1e-10 (see ``tests/test_detectors.py::test_ks_kolmogorov_p_value_error``),
  i.e. slightly conservative; a relative error of a few percent moves a
  decision only for p within a few percent of the threshold, which is noise
  compared with the choice of the threshold itself. That is why the service
  uses it: an exact p-value per feature every 1000 events would cost more CPU
  than everything else in an evaluation together.

Severity: "warning" when ``p < alpha``, "critical" when ``p < alpha / 10``
(see :func:`monitor.detectors.base.grade_p_value`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = KSDetector(alpha=0.05)
>>> d
KSDetector(alpha=0.05, method='kolmogorov')
>>> d.fit(rng.normal(size=1_000))
>>> print(d.evaluate(rng.normal(loc=0.5, size=500)))
ks: drift (critical), statistic 0.272, p=7.6e-22, threshold 0.05
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import special, stats

from monitor.detectors.base import (
    DetectorBase,
    DetectorResult,
    as_numeric,
    grade_p_value,
    not_fitted,
)
from monitor.detectors.ranks import RankBuckets
from monitor.detectors.scipy_private import outer_prob_inside
from monitor.errors import DetectorError

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
            elif outer_prob_inside is not None:  # scipy's private count: see scipy_private
                prob = float(outer_prob_inside(n1, n2, g, h))
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


def kolmogorov_two_sided(n1: int, n2: int, d: float) -> float:
    """Kolmogorov's limiting two-sided p-value ``K(sqrt(n1 n2 / (n1 + n2)) * d)``; microseconds.

    >>> round(kolmogorov_two_sided(10_000, 5_000, 0.04), 8)
    4.662e-05
    """
    return float(special.kolmogorov(math.sqrt(n1 * n2 / (n1 + n2)) * d))


def ks_statistic_sorted(reference: np.ndarray, window: np.ndarray) -> float:
    """The two-sample KS distance D of two *sorted*, finite, non-empty float64 arrays.

    Equal, bit for bit, to ``ks_2samp(reference, window, method="asymp").statistic``
    (scipy's unrounded D, which reads ``i / n1 - j / n2`` at every value of
    either sample): the window is counted into the reference's rank buckets and
    D read from their prefix sums (:mod:`monitor.detectors.ranks`), the same
    integers divided the same way. A detector does this against a reference
    bucketed once at fit; this function buckets the reference on every call.

    >>> ks_statistic_sorted(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    0.33333333333333337
    >>> float(stats.ks_2samp([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], method="asymp").statistic)
    0.33333333333333337
    """
    rb = RankBuckets(reference)
    return rb.ks(rb.counts(rb.buckets(window)))


KSMethod = Literal["kolmogorov", "asymp", "auto"]
KS_METHODS: tuple[str, ...] = ("kolmogorov", "asymp", "auto")


class KSDetector(DetectorBase):
    """Two-sample KS test of the window against the reference (numeric columns).

    ``alpha`` is the significance level: drift when ``p < alpha`` (warning),
    critical when ``p < alpha / 10``. ``method`` picks the p-value (see the
    module docstring): ``"kolmogorov"`` (limiting distribution, fast, the
    default), ``"asymp"`` or ``"auto"`` (equal to ``ks_2samp`` with that method).
    With windows of thousands of values KS detects very small shifts; a small
    ``alpha`` and the correction in :class:`monitor.drift.DriftTracker` keep
    that from paging on noise.
    """

    name: ClassVar[str] = "ks"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, alpha: float = 0.05, method: KSMethod = "kolmogorov") -> None:
        if not (isinstance(alpha, int | float) and 0 < alpha < 1):
            raise DetectorError(f"ks: alpha must be in (0, 1), got {alpha!r}")
        if method not in KS_METHODS:
            raise DetectorError(f"ks: method must be one of {list(KS_METHODS)}, got {method!r}")
        self.alpha = alpha
        self.method = method
        self._ref: np.ndarray | None = None
        self._ranks: RankBuckets | None = None
        self._p_cache: dict[tuple[int, int], tuple[bool, float, float]] = {}

    def fit(self, reference: np.ndarray) -> None:
        """Bucket the reference by rank (sorted unique values, counts at them), once."""
        ref = np.sort(as_numeric(reference, "reference"))
        if ref.size == 0:
            raise DetectorError("ks: reference must not be empty")
        self._ref = ref
        self._ranks = RankBuckets(ref)
        self._p_cache = {}

    @property
    def rank_buckets(self) -> RankBuckets | None:
        """The reference's rank buckets, which :meth:`evaluate_counts` reads counts over."""
        return self._ranks

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def statistic(self, window: np.ndarray) -> float:
        """The KS distance D between reference and window ECDFs (unrounded)."""
        if self._ref is None:
            raise not_fitted(self.name)
        win = as_numeric(window, "window")
        if win.size == 0:
            raise DetectorError("ks: window must not be empty")
        assert self._ranks is not None
        return self._ranks.ks(self._ranks.counts(self._ranks.buckets(win)))

    def _p_value(self, n1: int, n2: int, d: float) -> tuple[float, float, bool]:
        """(D as reported, p-value, exact?) for sizes n1, n2 with the configured method."""
        if self.method == "kolmogorov":
            return d, min(max(kolmogorov_two_sided(n1, n2, d), 0.0), 1.0), False
        g = math.gcd(n1, n2)
        key = (n2, int(np.round(d * ((n1 // g) * n2))))
        hit = self._p_cache.get(key)
        if hit is None:
            if self.method == "auto" and max(n1, n2) <= MAX_EXACT_N:
                hit = exact_two_sided(n1, n2, d)
            else:
                hit = (False, d, math.nan)
            if not hit[0]:
                hit = (False, hit[1], asymptotic_two_sided(n1, n2, hit[1]))
            if len(self._p_cache) >= _P_CACHE_SIZE:
                self._p_cache.clear()
            self._p_cache[key] = hit
        exact, d_out, prob = hit
        return d_out, float(np.clip(prob, 0, 1)), exact

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """KS statistic and two-sided p-value (``method``; see the module docstring)."""
        d = self.statistic(window)
        return self._result(d, int(np.asarray(window).size))

    def evaluate_sorted(self, window: np.ndarray) -> DetectorResult:
        """:meth:`evaluate` for a window already sorted ascending and finite (no checks)."""
        if self._ref is None:
            raise not_fitted(self.name)
        if window.size == 0:
            raise DetectorError("ks: window must not be empty")
        assert self._ranks is not None
        return self._result(
            self._ranks.ks(self._ranks.counts(self._ranks.buckets(window))), int(window.size)
        )

    def evaluate_counts(self, counts: np.ndarray) -> DetectorResult:
        """:meth:`evaluate` for a window given as counts over :attr:`rank_buckets` (no checks).

        ``counts`` has ``rank_buckets.n_buckets`` entries, optionally one more
        (missing values, ignored); the window must hold at least one value.
        """
        if self._ranks is None:
            raise not_fitted(self.name)
        n = int(counts[: self._ranks.n_buckets].sum())
        if n == 0:
            raise DetectorError("ks: window must not be empty")
        return self._result(self._ranks.ks(counts), n)

    def _result(self, d: float, n2: int) -> DetectorResult:
        assert self._ref is not None
        d, p, exact = self._p_value(self._ref.size, n2, d)
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
