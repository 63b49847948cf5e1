"""Population Stability Index: a binned distance between reference and window.

PSI = sum_i (w_i - r_i) * ln(w_i / r_i) over bins, where r and w are the
reference and window proportions. It is the industry's habit (credit scoring)
and reads the same for numeric and categorical columns, which is why it is a
default for both. Conventional grades: < 0.1 stable, 0.1-0.25 warning,
>= 0.25 critical.

Everything that depends only on the reference (bin edges, reference
proportions) is computed once in :meth:`PSIDetector.fit`; an evaluation is one
``np.searchsorted`` + ``np.bincount`` over the window. The pipeline hands the numeric
columns sorted, all at once (:meth:`PSIDetector.evaluate_sorted_batch`): with the
compiled kernel of ``native/`` installed (``monitor_native.psi_sorted_many``), every
column's PSI is one call, the same bits as the Python arithmetic it replaces
(``native/src/summary.rs``; ``tests/test_summary_native.py``).

**Noise floor.** A PSI counts as drift only above the PSI that a window of its size and
the reference, drawn from one distribution, exceed with probability about ``noise_alpha``
(:mod:`monitor.detectors.noise_floor`): 0.012 at the default window, below the thresholds,
so nothing changes there; 1.7 at 120 values, where a stationary window reached 0.1 in a
quarter of evaluations, so PSI leaves small windows to KS and chi-square, which know
their sample size.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = PSIDetector(bins=10)
>>> d
PSIDetector(bins=10, warning=0.1, critical=0.25, epsilon=0.0001, kind='numeric', noise_alpha=1e-05)
>>> d.fit(rng.normal(size=10_000))
>>> print(d.evaluate(rng.normal(size=5_000)))
psi: no drift, statistic 0.001599, threshold 0.1
>>> print(d.evaluate(rng.normal(loc=1.0, size=5_000)))
psi: drift (critical), statistic 0.9243, threshold 0.1
>>> print(d.evaluate(rng.normal(size=120)))  # at 120 values, PSI's noise reaches 1.7
psi: no drift, statistic 0.06305, threshold 1.71491
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np

from monitor.detectors.base import (
    ColumnKind,
    DetectorBase,
    DetectorResult,
    check_kind,
    grade,
    not_fitted,
    results_from_rows,
)
from monitor.detectors.binning import reference_bins, window_bins
from monitor.detectors.noise_floor import Floors, psi_noise_floor
from monitor.errors import DetectorError


def binned_proportions(counts: np.ndarray, epsilon: float) -> np.ndarray:
    """Counts to proportions, with empty bins lifted to ``epsilon`` then renormalised.

    PSI and KL divergence are infinite when a bin is empty on one side; a small
    floor keeps the statistic finite and comparable across evaluations.
    """
    total = counts.sum()
    props = counts / total if total > 0 else np.full(counts.shape, 1.0 / counts.size)
    np.maximum(props, epsilon, out=props)
    props /= props.sum()
    return props


try:  # the compiled kernel (native/, Rust): optional, Python computes the same PSI
    from monitor_native import psi_sorted_many as _native_psi
except ImportError:  # pragma: no cover - depends on the install (an older build lacks it)
    _native_psi = None

#: Up to this many bins, PSI is summed with Python floats (see PSIDetector._psi_small).
_SMALL = 32

#: Whether this Python's ``sum`` of floats is compensated (Neumaier, CPython 3.12 on): the
#: kernel adds the window's proportions as :meth:`PSIDetector._psi_small`'s ``sum`` does.
_COMPENSATED_SUM = sys.version_info >= (3, 12)


class PSIDetector(DetectorBase):
    """Population Stability Index over reference-quantile bins or category codes.

    ``bins`` is the number of quantile bins for numeric columns (fewer remain if
    the reference has ties). For categorical columns each reference category is
    a bin and every code at or beyond ``len(reference)`` is pooled into one
    extra "unseen" bin, so a new category shows up as drift rather than being
    ignored. ``warning`` and ``critical`` grade the statistic; ``epsilon``
    floors empty bins. ``noise_alpha`` sets the noise floor (module docstring):
    both thresholds are raised to it where it is higher (the result's threshold
    and ``details["critical_threshold"]`` are the raised ones, and
    ``details["noise_floor"]`` says so); None turns it off.
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
        noise_alpha: float | None = 1e-5,
    ) -> None:
        check_kind(kind, self.supports, self.name)
        if noise_alpha is not None and not 0 < noise_alpha < 1:
            raise DetectorError(f"psi: noise_alpha must be in (0, 1) or None, got {noise_alpha!r}")
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
        self.noise_alpha = noise_alpha
        self._floors: Floors | None = None  # noise floors by window size, once fitted
        self._edges: np.ndarray | None = None
        self._ref_props: np.ndarray | None = None
        self._ref_log: np.ndarray | None = None
        self._small_ref: list[tuple[float, float]] = []  # (r, ln r) per bin; on first use
        #: What the compiled kernel needs of the fitted detector: ``[epsilon, *edges, *r,
        #: *ln r]`` (numeric, at most ``_SMALL`` bins; else None).
        self.native_plan: np.ndarray | None = None

    def fit(self, reference: np.ndarray) -> None:
        """Compute bin edges (numeric) and smoothed reference proportions once."""
        self._edges, counts = reference_bins(self.kind, reference, self.bins, self.name)
        self._floors = Floors(
            partial(psi_noise_floor, counts=counts, epsilon=self.epsilon, alpha=self.noise_alpha)
        )
        self._ref_props = binned_proportions(counts, self.epsilon)
        self._ref_log = np.log(self._ref_props)
        self._small_ref = []
        self.native_plan = None
        if self._edges is not None and self._ref_props.size <= _SMALL:
            self.native_plan = np.concatenate(
                ([self.epsilon], self._edges, self._ref_props, self._ref_log)
            )

    def update(self, values: np.ndarray) -> None:
        """Window test: the window passed to :meth:`evaluate` is all it needs."""

    def window_counts(self, window: np.ndarray) -> np.ndarray:
        """The window's counts in the reference's bins (last bin = unseen for categorical)."""
        if self._ref_props is None:
            raise not_fitted(self.name)
        return window_bins(self._edges, self._ref_props.size, window)

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """PSI of the window against the reference; graded by ``warning``/``critical``."""
        return self._result(self.window_counts(window))

    def _psi_small(self, counts: list[int], total: int | None = None) -> float:
        """PSI of a few bins with Python floats: numpy's per-call cost exceeds the arithmetic
        below a few dozen bins (same formula as :func:`binned_proportions`). ``total``:
        ``sum(counts)`` when the caller knows it."""
        if total is None:
            total = sum(counts)
        if total == 0:
            raise DetectorError("psi: window must not be empty")
        eps = self.epsilon
        # max(c / total, eps) without the call: the same value (the larger; equal ones are
        # the same float).
        props = [p if p >= eps else eps for p in [c / total for c in counts]]
        norm = sum(props)
        small_ref = self._small_ref
        if not small_ref:
            assert self._ref_props is not None and self._ref_log is not None
            pairs = zip(self._ref_props.tolist(), self._ref_log.tolist(), strict=True)
            small_ref = self._small_ref = list(pairs)
        log = math.log
        out = 0.0
        for p, (r, r_log) in zip(props, small_ref, strict=True):
            p /= norm
            out += (p - r) * (log(p) - r_log)
        return out

    def evaluate_sorted(self, window: np.ndarray) -> DetectorResult:
        """:meth:`evaluate` for a numeric window already sorted ascending and finite.

        A sorted window is counted into the bins by locating the bin edges in it
        (a dozen binary searches) instead of locating every value among the edges.
        """
        if self._edges is None or self._ref_props is None:
            return self.evaluate(window)
        # Bins are right-closed, (e_{i-1}, e_i]: values <= e_i are in bins 0..i.
        upto = window.searchsorted(self._edges, side="right").tolist()
        n = window.size
        upto.append(n)
        if len(upto) > _SMALL:
            return self._result(np.diff(upto, prepend=0))
        counts = [upto[0], *(b - a for a, b in itertools.pairwise(upto))]
        # The counts add up to the window's size: every value is in one bin.
        return self._result_psi(self._psi_small(counts, n), len(counts), n)

    @classmethod
    def evaluate_sorted_batch(
        cls, jobs: Sequence[tuple[PSIDetector, np.ndarray]]
    ) -> list[DetectorResult]:
        """:meth:`evaluate_sorted` of every (detector, sorted window) job: the same results,
        the PSI of every numeric job with at most ``_SMALL`` bins from one call of the
        compiled kernel when it is installed (an evaluation's numeric columns at once)."""
        if _native_psi is None:
            return [detector.evaluate_sorted(window) for detector, window in jobs]
        plans = [detector.native_plan for detector, _ in jobs]
        ks = [k for k, plan in enumerate(plans) if plan is not None and jobs[k][1].size]
        try:
            psis = _native_psi([jobs[k][1] for k in ks], [plans[k] for k in ks], _COMPENSATED_SUM)
        except (TypeError, ValueError):  # not a contiguous float64 window: the Python path
            return [detector.evaluate_sorted(window) for detector, window in jobs]
        rows = [
            jobs[k][0].result_row(psi, None, jobs[k][1].size)
            for k, psi in zip(ks, psis, strict=True)
        ]
        if len(ks) == len(jobs):  # the usual batch: every job on the kernel
            return results_from_rows(rows)
        out: list[DetectorResult | None] = [None] * len(jobs)
        for k, result in zip(ks, results_from_rows(rows), strict=True):
            out[k] = result
        for k, result in enumerate(out):
            if result is None:
                out[k] = jobs[k][0].evaluate_sorted(jobs[k][1])
        return out  # type: ignore[return-value]  # every slot is filled above

    def _result(self, counts: np.ndarray) -> DetectorResult:
        assert self._ref_props is not None and self._ref_log is not None
        n = int(counts.sum())
        if counts.size <= _SMALL:
            psi = self._psi_small(counts.tolist(), n)
        else:
            if n == 0:
                raise DetectorError("psi: window must not be empty")
            win_props = binned_proportions(counts, self.epsilon)
            psi = float(np.dot(win_props - self._ref_props, np.log(win_props) - self._ref_log))
        return self._result_psi(psi, counts.size, n)

    def _result_psi(self, psi: float, bins: int, n: int) -> DetectorResult:
        # In field order: binding keywords costs a fifth of constructing a frozen dataclass.
        return DetectorResult(*self.result_row(psi, bins, n))

    def noise_floor(self, n: int) -> float:
        """The noise floor for a window of ``n`` values (0.0 when turned off): see
        :func:`psi_noise_floor`; kept per ``n``, as it depends on nothing else."""
        if self.noise_alpha is None or n <= 0:
            return 0.0
        if self._floors is None:
            raise not_fitted(self.name)
        return self._floors(n)

    def result_row(self, psi: float, bins: int | None, n: int) -> tuple[Any, ...]:
        """The result's fields in order, for statistic ``psi`` of a window of ``n`` values
        (``bins``: the reference's when None): a row of
        :func:`~monitor.detectors.base.results_from_rows`."""
        if bins is None:
            assert self._ref_props is not None
            bins = self._ref_props.size
        warning, critical = self.warning, self.critical
        floor = self.noise_floor(n)
        details = {"critical_threshold": critical, "bins": float(bins)}
        if floor > warning:  # a small window: its noise reaches the thresholds
            warning, critical = floor, max(critical, floor)
            details["critical_threshold"] = critical
            details["noise_floor"] = floor
        severity = grade(psi, warning, critical)
        return (self.name, psi, None, warning, severity != "ok", severity, details)
