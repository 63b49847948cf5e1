"""The PCA detector's evaluation path against a frozen copy of what it replaced (issue 19).

Standardising in one buffer (with the infinity check folded into one sum), writing the
component scores straight into their rows (``np.dot``), proving a run of changed rows by
its ends, and one sum for the mean error that also lets the sorted errors go to the KS
test as sorted must give every error, every result and every refusal bit for bit as before: the
window's errors are compared as bytes and the results whole, over sliding windows with
missing values, all-missing rows, duplicated rows (ties), infinities and every kind of
``changed`` (a run, a wrapped ring, a gathered set, out of range, empty, None).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detectors.base import DetectorResult
from monitor.detectors.pca import PCADetector
from monitor.errors import DetectorError


class FrozenPCA(PCADetector):
    """:class:`PCADetector` with its evaluation path as it was before (frozen copies of
    every method this work changed; the others, unchanged, are inherited)."""

    def _standardised_columns(self, x: np.ndarray, check: bool = False) -> np.ndarray:
        assert self._mean is not None
        zt = np.ascontiguousarray((x.T - self._mean[:, None]) / self._scale[:, None])
        zt[np.isnan(zt)] = 0.0
        return zt

    def _coefficients(self, zt: np.ndarray) -> np.ndarray:
        return np.array([self._basis[:, c] @ zt for c in range(self.components)])

    def _result(self, win: np.ndarray, errors: np.ndarray) -> DetectorResult:
        ks = self._ks.evaluate(errors)
        details = {"mean_error": float(errors.mean()), "components": float(self.components)}
        if ks.drifted:
            zt = self._standardised_columns(win)
            coef = self._coefficients(zt)
            excess = (self._residual(zt, coef) ** 2).mean(axis=1) - self._ref_residual
            details.update({f"residual:{j}": float(v) for j, v in enumerate(excess)})
        return DetectorResult(
            detector=self.name,
            statistic=ks.statistic,
            p_value=ks.p_value,
            threshold=self.alpha,
            drifted=ks.drifted,
            severity=ks.severity,
            details=details,
        )

    def _errors(self, zt: np.ndarray, coef: np.ndarray) -> np.ndarray:
        sq = np.einsum("ij,ij->j", zt, zt) - np.einsum("ij,ij->j", coef, coef)
        return np.maximum(sq, 0.0) / zt.shape[0]

    def _all_errors(self, win: np.ndarray, check: bool = False) -> np.ndarray:
        zt = self._standardised_columns(win)
        return self._errors(zt, self._coefficients(zt))

    def _window_errors(self, win: np.ndarray, changed: np.ndarray | None) -> np.ndarray:
        errors = self._row_errors
        if (
            errors is None
            or changed is None
            or len(errors) != len(win)
            or changed.ndim != 1
            or not np.issubdtype(changed.dtype, np.integer)
            or (changed.size and (changed.min() < 0 or changed.max() >= len(win)))
        ):
            self._check_finite(win)
            errors = self._all_errors(win)
        elif changed.size:
            first = int(changed[0])
            if int(changed[-1]) - first == changed.size - 1 and bool((np.diff(changed) == 1).all()):
                rows: slice | np.ndarray = slice(first, first + changed.size)
            else:
                rows = changed
            part = win[rows]
            self._check_finite(part)
            errors[rows] = self._all_errors(part)
        self._row_errors = errors
        return errors


def _same(a: DetectorResult, b: DetectorResult) -> None:
    """Equal field by field, floats bit for bit (NaN included)."""
    assert (a.detector, a.threshold, a.drifted, a.severity) == (
        b.detector,
        b.threshold,
        b.drifted,
        b.severity,
    )
    assert np.float64(a.statistic).tobytes() == np.float64(b.statistic).tobytes()
    assert np.float64(a.p_value).tobytes() == np.float64(b.p_value).tobytes()
    assert list(a.details) == list(b.details)
    for k in a.details:
        assert np.float64(a.details[k]).tobytes() == np.float64(b.details[k]).tobytes(), k


def _outcome(fn: object) -> tuple[str, object]:
    try:
        return "ok", fn()  # type: ignore[operator]
    except DetectorError as exc:
        return "error", str(exc)


CHANGES = st.sampled_from(["run", "wrap", "gather", "empty", "none", "out", "negative", "float"])


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    d=st.integers(2, 7),
    rows=st.integers(50, 400),
    correlated=st.booleans(),
    steps=st.lists(
        st.tuples(
            CHANGES,
            st.integers(0, 399),  # where
            st.integers(0, 120),  # how many
            st.floats(-3, 3),  # shift of the new rows (drift when far from 0)
            st.sampled_from(["none", "nan", "row_nan", "dup", "inf", "fortran"]),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_evaluation_matches_the_frozen_copy(
    seed: int,
    d: int,
    rows: int,
    correlated: bool,
    steps: list[tuple[str, int, int, float, str]],
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(300, d))
    if correlated:
        ref[:, 1] = 0.9 * ref[:, 0] + 0.3 * ref[:, 1]
    ref[rng.integers(0, 300, 10), rng.integers(0, d, 10)] = np.nan
    new, old = PCADetector(), FrozenPCA()
    new.fit(ref)
    old.fit(ref)
    assert new.components == old.components
    assert new._ks.sorted_reference.tobytes() == old._ks.sorted_reference.tobytes()
    assert new._ref_residual.tobytes() == old._ref_residual.tobytes()
    win = np.asfortranarray(rng.normal(size=(rows, d)))
    for kind, where, n, shift, special in steps:
        where, n = where % rows, min(n, rows - 1)
        slots = (np.arange(where, where + n) % rows).astype(np.intp)
        win[slots] = rng.normal(size=(n, d)) + shift
        if n and special == "nan":
            win[slots[rng.integers(0, n)], rng.integers(0, d)] = np.nan
        elif n and special == "row_nan":
            win[slots[0]] = np.nan
        elif n > 1 and special == "dup":
            win[slots[1:]] = win[slots[0]]  # ties among the errors
        elif n and special == "inf":
            win[slots[-1], 0] = np.inf
        changed: np.ndarray | None = {
            "run": slots if where + n <= rows else np.sort(slots),
            "wrap": slots,
            "gather": rng.permutation(slots),
            "empty": np.empty(0, dtype=np.intp),
            "none": None,
            "out": np.append(slots, rows),
            "negative": np.append(slots, -1),
            "float": slots.astype(np.float64),
        }[kind]
        window = np.ascontiguousarray(win) if special == "fortran" else win
        got = _outcome(lambda w=window, c=changed: new.evaluate_rows(w, c))
        want = _outcome(lambda w=window, c=changed: old.evaluate_rows(w, c))
        assert got[0] == want[0], (got, want)
        if got[0] == "error":
            assert got == want
            win[~np.isfinite(win)] = 0.0  # the service never keeps such a row: move on
            new._forget()
            old._forget()
            continue
        _same(got[1], want[1])  # type: ignore[arg-type]
        assert new._row_errors is not None and old._row_errors is not None
        assert new._row_errors.tobytes() == old._row_errors.tobytes()
        kept = new._row_errors, old._row_errors
        got = _outcome(lambda w=window: new.evaluate(w))  # every row, no errors kept
        want = _outcome(lambda w=window: old.evaluate(w))
        assert got[0] == want[0], (got, want)
        if got[0] == "ok":
            _same(got[1], want[1])  # type: ignore[arg-type]
        new._row_errors, old._row_errors = kept  # and on with the kept ones


def test_a_planted_difference_is_caught() -> None:
    """The comparison can fail: scores one ulp off (a single matrix product, as BLAS
    would round it) change the errors' bytes."""
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 5))
    new, old = PCADetector(), FrozenPCA()
    new.fit(ref)
    old.fit(ref)
    win = rng.normal(size=(300, 5))
    new._coefficients = lambda zt: np.nextafter(  # type: ignore[method-assign]
        PCADetector._coefficients(new, zt), np.inf
    )
    a, b = new.evaluate(win), old.evaluate(win)
    with pytest.raises(AssertionError):
        _same(a, b)


def test_an_infinite_changed_row_is_refused_and_nothing_kept() -> None:
    rng = np.random.default_rng(2)
    d = PCADetector()
    d.fit(rng.normal(size=(400, 4)))
    win = rng.normal(size=(200, 4))
    d.evaluate_rows(win, None)
    kept = d._row_errors
    assert kept is not None
    before = kept.copy()
    win[10, 2] = -np.inf
    with pytest.raises(DetectorError, match="infinite"):
        d.evaluate_rows(win, np.arange(5, 15))
    assert d._row_errors is kept and kept.tobytes() == before.tobytes()


def test_a_drifting_window_names_the_same_columns() -> None:
    """The drifted path (the residuals per column) on a window whose correlation flipped,
    sliding: bit for bit as the frozen copy, and drifting (so the path is taken)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=4000)
    ref = np.column_stack([x, 0.9 * x + 0.44 * rng.normal(size=4000), rng.normal(size=4000)])
    new, old = PCADetector(), FrozenPCA()
    new.fit(ref)
    old.fit(ref)
    win = np.asfortranarray(ref[:1000].copy())
    for step in range(4):
        rows = np.arange(step * 250, step * 250 + 250, dtype=np.intp)
        y = rng.normal(size=250)
        win[rows] = np.column_stack([y, -0.9 * y + 0.44 * rng.normal(size=250), y * 0.0])
        win[rows[0], 1] = np.nan
        got, want = new.evaluate_rows(win, rows), old.evaluate_rows(win, rows)
        _same(got, want)
    assert got.drifted and any(k.startswith("residual:") for k in got.details)
