"""Two-sample Kolmogorov-Smirnov test against a reference sorted once.

``scipy.stats.ks_2samp`` sorts both samples and concatenates them on every
call. The reference does not change between evaluations, so
:class:`KSDetector` sorts it once in :meth:`KSDetector.fit`, and the pipeline
hands windows already sorted (:meth:`KSDetector.evaluate_sorted`). scipy reads
both right-continuous ECDFs at every value of either sample; D is their
largest gap. Only two readings per *window* value can hold it (the proof is in
``native/src/ks.rs``): at a window value, and just below it, so D needs the
window's ranks in the reference, not a merge of both samples.
:func:`ks_statistic_sorted` computes those readings from the same integers
divided the same way, so D equals scipy's statistic bit for bit, in one of two
implementations with identical results (``tests/test_ks_native.py``):

* the compiled kernel of ``native/`` (``monitor_native.ks_statistic_sorted``,
  Rust, without the GIL), when it is installed, with every KS column of an
  evaluation in one call (:func:`ks_statistics_sorted`). It does not rank every
  window value: the readings are integer numerators over ``n1 n2`` and both
  ranks grow with the window index, so a stretch of the window between two
  ranked values has an exact upper bound, and a branch and bound ranks only the
  stretches that can still hold D (a few hundred of 5,000 values, drifted or
  not), then divides as before: the same bits as ranking every value
  (``monitor_native.ks_statistic_sorted_full``, kept as its reference), several
  times faster; figures in BENCHMARKS.md ("KS evaluation speed");
* numpy otherwise (:func:`ks_statistic_sorted_numpy`: two ``searchsorted``
  calls and the same arithmetic): several times slower, same D.

Both refuse an unsorted array or a NaN (:class:`~monitor.errors.DetectorError`)
instead of returning a wrong D.

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
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import special, stats

from monitor.column_sort import sort_values
from monitor.detectors.base import (
    DetectorBase,
    DetectorResult,
    as_numeric,
    grade_p_value,
    not_fitted,
    results_from_rows,
)
from monitor.detectors.scipy_private import outer_prob_inside
from monitor.errors import DetectorError

try:  # the compiled kernel (native/, Rust): optional, numpy computes the same D
    from monitor_native import ks_statistic_sorted as _native_statistic
    from monitor_native import ks_statistics_sorted as _native_statistics
except ImportError:  # pragma: no cover - depends on the install (an older build lacks it)
    _native_statistic = _native_statistics = None

#: Whether D is computed by the compiled kernel (``pip install ./native``; scripts/setup.sh does).
NATIVE_KS = _native_statistic is not None

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
    return float(special.kolmogorov(_kolmogorov_argument(n1, n2, d)))


def _kolmogorov_argument(n1: int, n2: int, d: float) -> float:
    return math.sqrt(n1 * n2 / (n1 + n2)) * d


def _clip_p(p: float) -> float:
    return min(max(p, 0.0), 1.0)


def _float_array(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _sorted_no_nan(x: np.ndarray) -> bool:
    """Ascending with no NaN (a NaN fails every ``>=``; alone, ``isnan`` sees it)."""
    return bool(np.all(x[1:] >= x[:-1])) and not np.isnan(x[0])


def ks_statistic_sorted_numpy(reference: np.ndarray, window: np.ndarray) -> float:
    """:func:`ks_statistic_sorted` in numpy: the fallback, and the kernel's reference.

    The readings of ``native/src/ks.rs``: for window value ``t`` (0-based), the gap just
    below it, ``#ref < w_t / n1 - t / n2``, and at it, ``#ref <= w_t / n1 - (t+1) / n2``.

    >>> ks_statistic_sorted_numpy(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    0.33333333333333337
    """
    reference, window = _float_array(reference), _float_array(window)
    for what, x in (("reference", reference), ("window", window)):
        if x.ndim != 1 or x.size == 0:
            raise DetectorError(f"ks: {what} must be a non-empty 1-D array")
        if not _sorted_no_nan(x):
            raise DetectorError(f"ks: {what} is not sorted ascending or holds NaN")
    n1, n2 = reference.size, window.size
    t = np.arange(n2)
    below = np.searchsorted(reference, window, side="left") / n1 - t / n2
    at = np.searchsorted(reference, window, side="right") / n1 - (t + 1) / n2
    hi = max(0.0, float(below.max()))
    lo = min(0.0, float(at.min()))
    # Combined as scipy (and the numba walk before) did: -0.0 when the samples are equal.
    ref_above = min(hi, 1.0)
    win_above = -lo
    return ref_above if ref_above > win_above else win_above


def ks_statistic_sorted(reference: np.ndarray, window: np.ndarray) -> float:
    """The two-sample KS distance D of two *sorted*, NaN-free, non-empty arrays.

    Equal, bit for bit, to ``ks_2samp(reference, window, method="asymp").statistic``
    (scipy's unrounded D). The compiled kernel when installed, numpy otherwise (see
    the module docstring); an unsorted array or a NaN raises DetectorError.

    >>> ks_statistic_sorted(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    0.33333333333333337
    >>> float(stats.ks_2samp([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], method="asymp").statistic)
    0.33333333333333337
    """
    if _native_statistic is None:
        return ks_statistic_sorted_numpy(reference, window)
    try:
        return float(_native_statistic(_float_array(reference), _float_array(window)))
    except ValueError as exc:  # the kernel's check of its input, in our error tree
        raise DetectorError(f"ks: {exc}") from exc


def ks_statistics_sorted(references: list[np.ndarray], windows: list[np.ndarray]) -> list[float]:
    """``[ks_statistic_sorted(r, w) for r, w in zip(references, windows)]``: one call of
    the compiled kernel for all pairs (an evaluation's columns), when it is installed."""
    if _native_statistics is None:
        return [ks_statistic_sorted_numpy(r, w) for r, w in zip(references, windows, strict=True)]
    try:  # as they come: the pipeline's arrays are contiguous float64 already
        return _native_statistics(references, windows)
    except (TypeError, ValueError):
        pass  # another dtype or layout, converted below; unsorted or NaN refused again
    try:
        return _native_statistics(
            [_float_array(r) for r in references], [_float_array(w) for w in windows]
        )
    except ValueError as exc:
        raise DetectorError(f"ks: {exc}") from exc


def warm_up() -> None:
    """One tiny statistic through the path in use, at start: nothing is compiled at run time
    any more, but a broken kernel fails the start, not the first evaluation (and bench
    scripts that warmed the numba walk up before timing keep working)."""
    ks_statistic_sorted(np.zeros(1), np.zeros(1))


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
        self._p_cache: dict[tuple[int, int], tuple[bool, float, float]] = {}

    def fit(self, reference: np.ndarray) -> None:
        """Keep the reference sorted, once.

        A reference profile's sample is sorted already (``FeatureProfile.sample``): it is
        then kept as a read-only view, not copied, which is a third of a numeric feature's
        memory at the default sizes (``python -m bench.evaluation --memory``).
        """
        ref = as_numeric(reference, "reference")
        if ref.size > 1 and not bool(np.all(ref[:-1] <= ref[1:])):
            ref = np.sort(ref)
        else:
            ref = np.ascontiguousarray(ref).view()  # no copy when it is contiguous already
            ref.flags.writeable = False  # the caller's array: nothing here may change it
        if ref.size == 0:
            raise DetectorError("ks: reference must not be empty")
        self._ref = ref
        self._p_cache = {}

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def statistic(self, window: np.ndarray) -> float:
        """The KS distance D between reference and window ECDFs (unrounded)."""
        if self._ref is None:
            raise not_fitted(self.name)
        win = as_numeric(window, "window")
        if win.size == 0:
            raise DetectorError("ks: window must not be empty")
        return ks_statistic_sorted(self._ref, sort_values(win))

    def _p_value(self, n1: int, n2: int, d: float) -> tuple[float, float, bool]:
        """(D as reported, p-value, exact?) for sizes n1, n2 with the configured method."""
        if self.method == "kolmogorov":
            return d, _clip_p(kolmogorov_two_sided(n1, n2, d)), False
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
        return self.result_from_statistic(d, int(np.asarray(window).size))

    def evaluate_sorted(self, window: np.ndarray) -> DetectorResult:
        """:meth:`evaluate` for a window already sorted ascending with no NaN (an unsorted
        window or a NaN raises DetectorError: both kernels check, cheaply)."""
        if self._ref is None:
            raise not_fitted(self.name)
        if window.size == 0:
            raise DetectorError("ks: window must not be empty")
        return self.result_from_statistic(ks_statistic_sorted(self._ref, window), int(window.size))

    @classmethod
    def evaluate_sorted_batch(
        cls, jobs: Sequence[tuple[KSDetector, np.ndarray]]
    ) -> list[DetectorResult]:
        """:meth:`evaluate_sorted` of every (detector, sorted window) job: the same results,
        with every D from one call of the compiled kernel and the default p-values from
        one call of ``scipy.special.kolmogorov`` (an evaluation's columns at once)."""
        refs = []
        for detector, window in jobs:
            refs.append(detector.sorted_reference)
            if window.size == 0:
                raise DetectorError("ks: window must not be empty")
        stats_ = ks_statistics_sorted(refs, [w for _, w in jobs])
        fast = [k for k, (det, _) in enumerate(jobs) if det.method == "kolmogorov"]
        p_kolmogorov: dict[int, float] = {}
        if fast:
            # The ufunc on an array computes each element as on a scalar: same p-values.
            x = [_kolmogorov_argument(refs[k].size, jobs[k][1].size, stats_[k]) for k in fast]
            p_kolmogorov = dict(zip(fast, special.kolmogorov(np.array(x)).tolist(), strict=True))
        return results_from_rows(
            [
                detector.result_row(d, int(window.size), p_kolmogorov.get(k))
                for k, ((detector, window), d) in enumerate(zip(jobs, stats_, strict=True))
            ]
        )

    @property
    def sorted_reference(self) -> np.ndarray:
        """The fitted reference, sorted (DetectorError before :meth:`fit`)."""
        if self._ref is None:
            raise not_fitted(self.name)
        return self._ref

    def result_from_statistic(
        self, d: float, n2: int, kolmogorov_p: float | None = None
    ) -> DetectorResult:
        """The result for statistic ``d`` of an ``n2``-value window (``kolmogorov_p``: the
        default p-value, when the batch has already computed it)."""
        return DetectorResult(*self.result_row(d, n2, kolmogorov_p))

    def result_row(self, d: float, n2: int, kolmogorov_p: float | None = None) -> tuple[Any, ...]:
        """:meth:`result_from_statistic`'s fields, in order (a row of
        :func:`~monitor.detectors.base.results_from_rows`)."""
        assert self._ref is not None
        if kolmogorov_p is not None and self.method == "kolmogorov":  # computed by the batch
            p, exact = _clip_p(kolmogorov_p), False
        else:
            d, p, exact = self._p_value(self._ref.size, n2, d)
        severity = grade_p_value(p, self.alpha)
        details = {"critical_threshold": self.alpha / 10.0, "exact": float(exact)}
        return (self.name, d, p, self.alpha, severity != "ok", severity, details)
