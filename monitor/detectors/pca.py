"""Multivariate drift: PCA reconstruction error (after NannyML's data reconstruction drift).

Per-feature tests compare marginals, so they cannot see a change in how features
move *together*: two features whose correlation flips sign keep their marginals
exactly. A principal-component model of the reference can: it keeps the directions
the reference data occupies, and events that no longer lie along them are
reconstructed badly.

:class:`PCADetector` standardises the reference columns, keeps the fewest principal
components explaining ``variance`` (90%) of their variance (at most all but one, so
there is a residual), and measures each event's reconstruction error: the mean
squared residual over the columns of its standardised values. The window's errors
are compared with the reference's by a two-sample KS test (:class:`KSDetector`, at
``alpha``, 1e-5 like the per-feature KS: see :mod:`monitor.detectors.config` for
why that keeps a million stationary events quiet). The reference errors come from
a seeded half of the reference rows that the components were *not* fitted on, so
they are out-of-sample like the window's (in-sample errors are biased low and
would make every window look worse).

Data shapes: 2-D ``float64`` matrices, rows = events, columns = the numeric
features in a fixed order; NaN (missing) is imputed with the reference mean (a
standardised 0), so a missing value adds no error of its own. When the test drifts,
``details`` carries each column's excess mean squared residual over the reference's,
``residual:<column index>``: the columns that contribute most to the error, which
the alert names.

>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=4000)
>>> ref = np.column_stack([x, 0.9 * x + 0.44 * rng.normal(size=4000)])
>>> d = PCADetector()
>>> d.fit(ref)
>>> y = rng.normal(size=1000)
>>> flipped = np.column_stack([y, -0.9 * y + 0.44 * rng.normal(size=1000)])
>>> d.evaluate(flipped).severity
'critical'
>>> d.evaluate(ref[:1000]).severity
'ok'
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from monitor.detectors.base import DetectorBase, DetectorResult, not_fitted
from monitor.detectors.ks import KSDetector
from monitor.errors import DetectorError

MIN_REFERENCE_ROWS = 50


class PCADetector(DetectorBase):
    """PCA reconstruction error of the window against the reference's; see the module."""

    name: ClassVar[str] = "pca"
    supports: ClassVar[frozenset[str]] = frozenset({"multivariate"})

    def __init__(self, variance: float = 0.9, alpha: float = 1e-5, seed: int = 0) -> None:
        if not 0 < variance < 1:
            raise DetectorError(f"pca: variance must be in (0, 1), got {variance!r}")
        if not 0 < alpha < 1:
            raise DetectorError(f"pca: alpha must be in (0, 1), got {alpha!r}")
        if not isinstance(seed, int) or seed < 0:
            raise DetectorError(f"pca: seed must be an integer >= 0, got {seed!r}")
        self.variance = variance
        self.alpha = alpha
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        self._mean: np.ndarray | None = None
        self._scale = np.empty(0)
        self._basis = np.empty((0, 0))
        self._ref_residual = np.empty(0)
        self._ks = KSDetector(alpha=self.alpha)
        self.components = 0
        self._forget()

    def _forget(self) -> None:
        # The errors of the rows of the last window given to evaluate_rows (see there).
        self._row_errors: np.ndarray | None = None

    def _check(self, values: np.ndarray, what: str, finite: bool = True) -> np.ndarray:
        """``values`` as a float64 matrix of at least 2 columns; with ``finite``, also
        without infinite values (else :meth:`_check_finite` is the caller's to call)."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise DetectorError(f"pca: {what} must be a 2-D matrix of at least 2 columns")
        if finite:
            self._check_finite(arr, what)
        return arr

    @staticmethod
    def _check_finite(arr: np.ndarray, what: str = "window") -> None:
        if np.isinf(arr).any():
            raise DetectorError(f"pca: {what} holds infinite values")

    def fit(self, reference: np.ndarray) -> None:
        ref = self._check(reference, "reference")
        if self._mean is not None and ref.shape[1] != self._mean.size:
            self._reset()
        self._forget()  # errors of the old components
        rows = ref[~np.isnan(ref).all(axis=1)]
        if len(rows) < MIN_REFERENCE_ROWS:
            raise DetectorError(
                f"pca: the reference needs at least {MIN_REFERENCE_ROWS} rows, got {len(rows)}"
            )
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(rows, axis=0)
            scale = np.nanstd(rows, axis=0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        # A constant column carries no correlation: scale 1 leaves it at 0 after centring.
        scale = np.where(np.isnan(scale) | (scale <= 0), 1.0, scale)
        self._mean, self._scale = mean, scale
        order = np.random.default_rng(self.seed).permutation(len(rows))
        half = len(rows) // 2
        fit_rows, held_out = rows[order[:half]], rows[order[half:]]
        z = self._standardised_columns(fit_rows).T
        z = z - z.mean(axis=0)
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        explained = np.cumsum(singular**2) / max(float((singular**2).sum()), 1e-300)
        k = int(np.searchsorted(explained, self.variance) + 1)
        self.components = min(k, ref.shape[1] - 1)
        self._basis = vt[: self.components].T  # columns x components
        zt = self._standardised_columns(held_out)
        coef = self._coefficients(zt)
        self._ref_residual = (self._residual(zt, coef) ** 2).mean(axis=1)
        self._ks.fit(np.sort(self._errors(zt, coef)))

    def _standardised_columns(self, x: np.ndarray, check: bool = False) -> np.ndarray:
        """``x`` standardised, one row per column (the window's own memory layout); with
        ``check``, raise :class:`DetectorError` if ``x`` holds an infinite value.

        In one C-ordered buffer, subtracted and divided in place: the same two roundings
        per value as ``(x.T - mean) / scale``, without the temporaries. One sum over the
        buffer decides the usual case: it is finite only if every value is (a NaN or an
        infinity propagates, and an infinite ``x`` stays infinite standardised, the
        scale being finite and positive), and then there is no infinity to report and no
        NaN to impute; anything else takes the full check and the NaN mask.
        """
        assert self._mean is not None
        xt = x.T
        zt = np.empty(xt.shape)
        np.subtract(xt, self._mean[:, None], out=zt)
        np.divide(zt, self._scale[:, None], out=zt)
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf: a NaN, as wanted
            total = np.add.reduce(zt, axis=None)
        if not math.isfinite(total):
            if check:
                self._check_finite(x)
            zt[np.isnan(zt)] = 0.0
        return zt

    def _coefficients(self, zt: np.ndarray) -> np.ndarray:
        """Component scores, one matrix-vector product per component.

        A single matrix product would be one BLAS call, but a multi-threaded BLAS on a
        busy machine made it 5 to 10 times slower than these single-threaded ones.
        """
        # Each product written straight into its row (``out``), by ``np.dot``: the same
        # BLAS call (gemv) as ``self._basis[:, c] @ zt``, so the same bits, for less of
        # the ufunc machinery around it, and without a list and a stacking copy.
        coef = np.empty((self.components, zt.shape[1]))
        basis, dot = self._basis, np.dot
        for c in range(self.components):
            dot(basis[:, c], zt, out=coef[c])
        return coef

    def _errors(self, zt: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Per event: mean squared residual, ``(|z|^2 - |scores|^2) / d`` (orthonormal basis)."""
        sq = np.einsum("ij,ij->j", zt, zt) - np.einsum("ij,ij->j", coef, coef)
        np.maximum(sq, 0.0, out=sq)  # in place: the same operations, no temporaries
        np.divide(sq, zt.shape[0], out=sq)
        return sq

    def _residual(self, zt: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Per column and event: the standardised value less its reconstruction."""
        return np.array([zt[j] - self._basis[j] @ coef for j in range(zt.shape[0])])

    def _all_errors(self, win: np.ndarray, check: bool = False) -> np.ndarray:
        """Each row's error; with ``check``, :class:`DetectorError` first if ``win`` holds
        an infinite value (see :meth:`_standardised_columns`)."""
        zt = self._standardised_columns(win, check)
        return self._errors(zt, self._coefficients(zt))

    def _window_errors(self, win: np.ndarray, changed: np.ndarray | None) -> np.ndarray:
        """Each row's error, computed only for the ``changed`` rows when the errors of the
        last window's rows are known (see :meth:`evaluate_rows`).

        An event's error is a function of its row alone, and a sliding window keeps most
        rows from one evaluation to the next at the same place (the ring): a window of
        5,000 sliding by 1,000 projects 1,000 rows, not 5,000. The reused errors were
        computed in another batch of rows: BLAS may round them differently in the last
        bit (below 1e-15 relative), as it already did by a row's place in the window.
        Anything not known for sure (no errors kept, no ``changed``, another number of
        rows, an index out of range) projects every row.
        """
        errors = self._row_errors
        rows: slice | np.ndarray | None = None
        if (
            errors is not None
            and changed is not None
            and len(errors) == len(win)
            and changed.ndim == 1
            and np.issubdtype(changed.dtype, np.integer)
        ):
            rows = _run_of(changed, len(win))
        if rows is None:
            errors = self._all_errors(win, check=True)
        elif changed is not None and changed.size:
            assert errors is not None
            # The other rows were checked when their errors were computed (they are the
            # same bits, see evaluate_rows): only these can hold an infinite value.
            errors[rows] = self._all_errors(win[rows], check=True)
        self._row_errors = errors
        return errors

    def update(self, values: np.ndarray) -> None:
        """A window test: the window is given whole to :meth:`evaluate`."""

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """The test of ``window``, every row projected (and no row's error kept)."""
        win = self._checked_window(window)
        self._forget()
        return self._result(win, self._all_errors(win))

    def evaluate_rows(self, window: np.ndarray, changed: np.ndarray | None) -> DetectorResult:
        """:meth:`evaluate`, projecting only the rows that changed since the last call.

        ``changed`` holds the indices of the rows of ``window`` that may differ from the
        window of the previous call of this method (every other row must be bit for bit
        the same, at the same index), or None when that is not known: for a window that
        slides in place, like :class:`~monitor.window.SlidingWindow`'s ring (its
        ``written_since``). The detector keeps one float64 error per row in between (not
        the rows); :meth:`fit` and :meth:`evaluate` forget them, so the next call
        projects every row.
        """
        win = self._checked_window(window, finite=False)  # _window_errors checks the rows
        return self._result(win, self._window_errors(win, changed))

    def _checked_window(self, window: np.ndarray, finite: bool = True) -> np.ndarray:
        if self._mean is None:
            raise not_fitted(self.name)
        win = self._check(window, "window", finite)
        if win.shape[1] != self._mean.size:
            raise DetectorError(
                f"pca: window has {win.shape[1]} columns, the reference {self._mean.size}"
            )
        if len(win) == 0:
            raise DetectorError("pca: empty window")
        return win

    def _result(self, win: np.ndarray, errors: np.ndarray) -> DetectorResult:
        # One sum serves the mean (``errors.mean()`` is this sum over the count, the same
        # division) and proves every error finite, as the KS test's check would: then the
        # sorted copy goes to it as such. Otherwise the KS test checks (and refuses).
        total = np.add.reduce(errors)
        if math.isfinite(total):
            ks = self._ks.evaluate_sorted(np.sort(errors))  # ``errors`` left as it is
        else:
            ks = self._ks.evaluate(errors)
        mean = float(total / errors.size)
        details = {"mean_error": mean, "components": float(self.components)}
        if ks.drifted:  # which columns: only worth the cost when there is something to name
            zt = self._standardised_columns(win)
            coef = self._coefficients(zt)
            excess = (self._residual(zt, coef) ** 2).mean(axis=1) - self._ref_residual
            details.update({f"residual:{j}": float(v) for j, v in enumerate(excess)})
        # In field order (detector, statistic, p_value, threshold, drifted, severity, details).
        return DetectorResult(
            self.name, ks.statistic, ks.p_value, self.alpha, ks.drifted, ks.severity, details
        )


def _run_of(changed: np.ndarray, n: int) -> slice | np.ndarray | None:
    """The rows ``changed`` (1-D integers) names in a window of ``n`` rows: a slice when they
    are a run of consecutive slots (the ring between two wraps: a view, not a gathered copy;
    the same rows in the same order, so the same projection), else the indices themselves;
    None when one is out of range. A run is proved by its ends and its steps, which then
    also bound it, so only a gathered set pays for the range check."""
    if not changed.size:
        return changed
    first, last = int(changed[0]), int(changed[-1])
    if last - first == changed.size - 1 and bool((np.diff(changed) == 1).all()):
        return slice(first, last + 1) if first >= 0 and last < n else None
    if changed.min() < 0 or changed.max() >= n:
        return None
    return changed


__all__ = ["PCADetector"]
