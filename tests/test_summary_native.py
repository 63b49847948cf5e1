"""The numeric summaries and the numeric PSI against frozen copies of what they replaced
(issue 19).

``summarize_numeric`` takes its statistics from the compiled kernel of ``native/``
(``monitor_native.summarize_sorted``) and ``PSIDetector.evaluate_sorted_batch`` its PSI
values (``monitor_native.psi_sorted_many``) when the module is installed; both must give,
bit for bit, what the numpy and Python code gave before (kept below, as it stood on
``main``): every field of every ``NumericSummary``, every detector result. Windows with
heavy ties, wide magnitudes, signed zeros, NaN (missing values, whole columns missing), one
row, no rows and odd lengths around numpy's pairwise-summation blocks; both layouts a
window can have (a full or a partly filled ring buffer) and others (C order: the numpy
path). The same comparisons run with the kernel taken away (the numpy path).

The kernel's tests skip when the module (or a build with these functions) is missing,
unless MONITOR_REQUIRE_NATIVE=1.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor import column_sort, summary
from monitor.detectors import psi as psi_module
from monitor.detectors.base import DetectorResult, evaluate_sorted_all, grade
from monitor.detectors.ks import KSDetector
from monitor.detectors.psi import PSIDetector
from monitor.errors import DetectorError
from monitor.summary import NumericSummary, summarize_numeric

try:
    import monitor_native
except ImportError:  # pragma: no cover - depends on the install
    monitor_native = None  # type: ignore[assignment]
SUMMARIZE = getattr(monitor_native, "summarize_sorted", None)
PSI_MANY = getattr(monitor_native, "psi_sorted_many", None)
needs_kernel = pytest.mark.skipif(
    SUMMARIZE is None or PSI_MANY is None, reason="monitor_native without the summary kernels"
)


def test_the_kernels_are_installed_where_they_are_required() -> None:
    """scripts/test.sh builds native/ and sets MONITOR_REQUIRE_NATIVE=1: there a build
    without these kernels fails the run instead of skipping their tests."""
    if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
        assert SUMMARIZE is not None, "monitor_native lacks summarize_sorted (pip install ./native)"
        assert PSI_MANY is not None, "monitor_native lacks psi_sorted_many (pip install ./native)"
    assert (summary._native_summarize is not None) == (SUMMARIZE is not None)
    assert (psi_module._native_psi is not None) == (PSI_MANY is not None)


# --- frozen copies of main's code (before the kernels) ------------------------------------


def _frozen_interpolation(q: float, n: int) -> tuple[int, int, float]:
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    return lo, min(lo + 1, n - 1), pos - lo


def _frozen_summarize_full(
    ordered: np.ndarray, quantiles: tuple[float, ...]
) -> tuple[list[NumericSummary], list[np.ndarray]]:
    n, n_cols = ordered.shape
    means = ordered.mean(axis=0)
    stds = ordered.std(axis=0, mean=means[None, :]).tolist()
    means = means.tolist()
    mins = ordered[0].tolist()
    maxs = ordered[-1].tolist()
    qvals: list[list[float]] = []
    for q in quantiles:
        lo, hi, frac = _frozen_interpolation(q, n)
        qvals.append((ordered[lo] + (ordered[hi] - ordered[lo]) * frac).tolist())
    per_column = list(zip(*qvals, strict=True)) if qvals else [()] * n_cols
    summaries = [
        NumericSummary(n, 0.0, mean, std, lo, hi, dict(zip(quantiles, qs, strict=True)))
        for mean, std, lo, hi, qs in zip(means, stds, mins, maxs, per_column, strict=True)
    ]
    return summaries, [ordered[:, j] for j in range(n_cols)]


def _frozen_summarize_numeric(
    values: np.ndarray, quantiles: tuple[float, ...] = summary.QUANTILES
) -> tuple[list[NumericSummary], list[np.ndarray]]:
    n_rows, n_cols = values.shape
    ordered = np.sort(values, axis=0)
    if n_rows and n_cols and not np.isnan(ordered[-1]).any():
        return _frozen_summarize_full(ordered, quantiles)
    present = n_rows - np.isnan(ordered).sum(axis=0)
    summaries: list[NumericSummary] = []
    columns: list[np.ndarray] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(n_cols):
            n = int(present[j])
            col = ordered[:n, j]
            columns.append(col)
            if n == 0:
                nan = float("nan")
                summaries.append(
                    NumericSummary(
                        0, 1.0 if n_rows else nan, nan, nan, nan, nan, {q: nan for q in quantiles}
                    )
                )
                continue
            qs = {}
            for q in quantiles:
                lo, hi, frac = _frozen_interpolation(q, n)
                qs[q] = float(col[lo] + (col[hi] - col[lo]) * frac)
            mean = np.add.reduce(col) / n
            dev = col - mean
            np.square(dev, out=dev)
            summaries.append(
                NumericSummary(
                    count=n,
                    missing_rate=1.0 - n / n_rows,
                    mean=float(mean),
                    std=math.sqrt(np.add.reduce(dev) / n),
                    min=float(col[0]),
                    max=float(col[-1]),
                    quantiles=qs,
                )
            )
    return summaries, columns


def _frozen_psi_small(d: PSIDetector, counts: list[int], total: int | None = None) -> float:
    if total is None:
        total = sum(counts)
    if total == 0:
        raise DetectorError("psi: window must not be empty")
    eps = d.epsilon
    props = [p if p >= eps else eps for p in [c / total for c in counts]]
    norm = sum(props)
    pairs = list(zip(d._ref_props.tolist(), d._ref_log.tolist(), strict=True))
    out = 0.0
    for p, (r, r_log) in zip(props, pairs, strict=True):
        p /= norm
        out += (p - r) * (math.log(p) - r_log)
    return out


def _frozen_result_psi(d: PSIDetector, psi: float, bins: int) -> DetectorResult:
    severity = grade(psi, d.warning, d.critical)
    details = {"critical_threshold": d.critical, "bins": float(bins)}
    return DetectorResult(d.name, psi, None, d.warning, severity != "ok", severity, details)


def _frozen_psi_evaluate_sorted(d: PSIDetector, window: np.ndarray) -> DetectorResult:
    """``PSIDetector.evaluate_sorted`` (with ``_result`` for many bins) as it stood."""
    upto = window.searchsorted(d._edges, side="right").tolist()
    n = window.size
    upto.append(n)
    if len(upto) > 32:
        counts = np.diff(upto, prepend=0)
        if counts.sum() == 0:
            raise DetectorError("psi: window must not be empty")
        win_props = psi_module.binned_proportions(counts, d.epsilon)
        psi = float(np.dot(win_props - d._ref_props, np.log(win_props) - d._ref_log))
        return _frozen_result_psi(d, psi, counts.size)
    counts = [upto[0], *(b - a for a, b in itertools.pairwise(upto))]
    return _frozen_result_psi(d, _frozen_psi_small(d, counts, n), len(counts))


# --- comparison, bit for bit ---------------------------------------------------------------


def _bits(x: Any) -> Any:
    """A float as its bits (NaN and -0.0 included), with its type; anything else as is."""
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    return (type(x).__name__, x)


def _summary_bits(s: NumericSummary, picked: Any = _bits) -> tuple[Any, ...]:
    """``picked``: how the fields picked from the sorted column (min, max, quantiles) are
    compared (:func:`_unsigned_zero_bits` where the sort differs from numpy's in the order of
    ``-0.0`` and ``0.0``)."""
    return (
        _bits(s.count),
        _bits(s.missing_rate),
        _bits(s.mean),
        _bits(s.std),
        picked(s.min),
        picked(s.max),
        [(_bits(q), picked(v)) for q, v in s.quantiles.items()],
    )


def _unsigned_zero_bits(x: Any) -> Any:
    """:func:`_bits`, with ``-0.0`` as ``0.0``: numpy's sort leaves the two (equal) in either
    order, the crate's puts ``-0.0`` first (monitor/column_sort.py), so a minimum, maximum or
    quantile that falls on a zero may carry either sign. The means and deviations may not:
    they stay compared bit for bit."""
    return _bits(x + 0.0 if isinstance(x, float) else x)


def _assert_same_summaries(values: np.ndarray, quantiles: tuple[float, ...]) -> None:
    exact = column_sort.implementation() == "numpy"
    picked = _bits if exact else _unsigned_zero_bits
    with np.errstate(all="ignore"):  # overflow in the squares of huge values: both paths
        got, got_cols = summarize_numeric(values, quantiles)
        want, want_cols = _frozen_summarize_numeric(values, quantiles)
        # Where a sum overflowed, the mean and std are recomputed on scaled values since
        # (tests/test_window_summary.py): the same step after either path.
        want = [summary._finite_summary(s, c) for s, c in zip(want, want_cols, strict=True)]
    assert [_summary_bits(s, picked) for s in got] == [_summary_bits(s, picked) for s in want]
    assert len(got_cols) == len(want_cols)
    for g, w in zip(got_cols, want_cols, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        if exact:
            assert g.tobytes() == w.tobytes()
        else:  # the same values, NaN included, up to the order of the zeros
            with np.errstate(invalid="ignore"):
                assert (g + 0.0).tobytes() == (w + 0.0).tobytes()


def _result_bits(r: DetectorResult) -> tuple[Any, ...]:
    return (
        r.detector,
        _bits(r.statistic),
        r.p_value,
        r.threshold,
        r.drifted,
        r.severity,
        sorted((k, _bits(v)) for k, v in r.details.items()),
    )


# --- windows --------------------------------------------------------------------------------

STYLES = ("normal", "ties", "wide", "zeros", "lattice")


def _window(rows: int, cols: int, seed: int, style: str, missing: float, layout: str) -> np.ndarray:
    """A window of ``rows`` x ``cols`` in ``layout``: "ring" (a full ring buffer's view, as
    ``SlidingWindow.numeric`` returns it: Fortran order), "partial" (a partly filled one:
    Fortran order, columns apart), "c" (C order) or "strided" (every other row)."""
    rng = np.random.default_rng(seed)
    if style == "normal":
        x = rng.normal(rng.uniform(-5, 5), 10.0 ** rng.uniform(-3, 3), (rows, cols))
    elif style == "ties":
        x = rng.integers(-2, 3, (rows, cols)).astype(np.float64)
    elif style == "wide":
        x = rng.normal(size=(rows, cols)) * 10.0 ** rng.uniform(-300, 300, (rows, cols))
    elif style == "zeros":
        x = rng.choice([-0.0, 0.0, 5e-324, -5e-324, 1.0], (rows, cols))
    else:  # sums of a lattice: catastrophic cancellation unless the order is numpy's
        x = rng.choice([1e16, -1e16, 1.0, 3.0, 0.1], (rows, cols))
    if missing:
        x[rng.random((rows, cols)) < missing] = np.nan
        if cols:
            x[:, rng.integers(cols)] = np.nan if rng.random() < 0.3 else x[:, 0]
    if layout == "ring":
        store = np.empty((cols, rows))
        store[:] = x.T
        return store.T
    if layout == "partial":
        store = np.full((cols, rows + 7), 99.0)
        store[:, :rows] = x.T
        return store[:, :rows].T
    if layout == "strided":
        big = np.empty((2 * rows, cols), order="F")
        big[::2] = x
        return big[::2]
    return np.ascontiguousarray(x)


#: Lengths around numpy's pairwise blocks (8, 128, splits at multiples of 8).
LENGTHS = st.one_of(
    st.integers(1, 20),
    st.sampled_from([127, 128, 129, 135, 136, 255, 256, 257, 1000, 1031, 5000]),
    st.integers(1, 3000),
)
QUANTILE_SETS = st.one_of(
    st.just(summary.QUANTILES),
    st.lists(st.floats(0.0, 1.0), max_size=4).map(tuple),
)


@pytest.fixture(params=["numpy", "native"])
def sort(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each summaries test with either sort of the window's columns (monitor/column_sort.py:
    a process uses the faster on its machine)."""
    if request.param == "native" and column_sort._native_sort is None:
        if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
            pytest.fail("monitor_native lacks sort_columns (pip install ./native)")
        pytest.skip("monitor_native without sort_columns")
    monkeypatch.setattr(column_sort, "_chosen", request.param)
    return str(request.param)


#: The ``path`` fixture sets the same path for every example of a test: not reset is meant.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture(params=["kernel", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on the kernel (when installed) and on the numpy path."""
    if request.param == "numpy":
        monkeypatch.setattr(summary, "_native_summarize", None)
        monkeypatch.setattr(psi_module, "_native_psi", None)
    elif SUMMARIZE is None or PSI_MANY is None:
        pytest.skip("monitor_native without the summary kernels")
    return str(request.param)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    rows=LENGTHS,
    cols=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
    style=st.sampled_from(STYLES),
    missing=st.sampled_from([0.0, 0.0, 0.01, 0.5, 1.0]),
    layout=st.sampled_from(["ring", "ring", "partial", "c", "strided"]),
    quantiles=QUANTILE_SETS,
)
@example(rows=1, cols=3, seed=0, style="normal", missing=0.0, layout="ring", quantiles=(0.5,))
@example(rows=5000, cols=22, seed=1, style="normal", missing=0.0, layout="ring", quantiles=(0.5,))
def test_summaries_match_the_frozen_copy(
    path: str,
    sort: str,
    rows: int,
    cols: int,
    seed: int,
    style: str,
    missing: float,
    layout: str,
    quantiles: tuple[float, ...],
) -> None:
    _assert_same_summaries(_window(rows, cols, seed, style, missing, layout), quantiles)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    values=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
        elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    ),
    order=st.sampled_from(["F", "C"]),
)
def test_any_values_match_the_frozen_copy(
    path: str, sort: str, values: np.ndarray, order: str
) -> None:
    """Any float64, infinities included (the window refuses them, the summaries need not)."""
    _assert_same_summaries(np.asarray(values, order=order), summary.QUANTILES)


def test_empty_windows(path: str, sort: str) -> None:
    for shape in [(0, 0), (0, 3), (4, 0), (1, 0)]:
        _assert_same_summaries(np.empty(shape, order="F"), summary.QUANTILES)


@needs_kernel
def test_the_kernel_is_what_summarizes_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's window (Fortran order) goes to the kernel, once, for all columns."""
    calls = []

    def counted(ordered: np.ndarray, quantiles: tuple[float, ...], cls: type) -> Any:
        calls.append(ordered.shape)
        return SUMMARIZE(ordered, quantiles, cls)

    monkeypatch.setattr(summary, "_native_summarize", counted)
    summarize_numeric(_window(300, 5, 0, "normal", 0.1, "partial"))
    assert calls == [(300, 5)]


def test_the_kernel_builds_summaries_as_their_init_does() -> None:
    """The kernel sets these seven fields, as the frozen dataclass's ``__init__`` does: a
    field more, or a ``__post_init__``, would need it changed (this test says so first)."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(NumericSummary)]
    assert names == ["count", "missing_rate", "mean", "std", "min", "max", "quantiles"]
    assert not hasattr(NumericSummary, "__post_init__")
    if SUMMARIZE is not None:
        (s,), counts = SUMMARIZE(
            np.asfortranarray([[1.0], [3.0], [np.nan]]), (0.5,), NumericSummary
        )
        assert counts == [2]
        assert s == NumericSummary(2, 1.0 - 2 / 3, 2.0, 1.0, 1.0, 3.0, {0.5: 2.0})
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.count = 3  # type: ignore[misc]


# --- PSI ------------------------------------------------------------------------------------


def _fitted(
    seed: int, bins: int, epsilon: float, style: str, noise_alpha: float | None = None
) -> PSIDetector:
    """A fitted detector; by default without the noise floor, whose grading the frozen
    copy predates (the floor is graded alike on every path: see
    test_psi_noise_floor_is_the_same_on_every_path)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    if style == "ties":
        ref = rng.integers(0, 4, n).astype(np.float64)
    elif style == "wide":
        ref = rng.normal(size=n) * 10.0 ** rng.uniform(-30, 30, n)
    else:
        ref = rng.normal(rng.uniform(-1, 1), 1.0, n)
    d = PSIDetector(bins=bins, epsilon=epsilon, noise_alpha=noise_alpha)
    d.fit(ref)
    return d


@settings(max_examples=120, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    specs=st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),  # seed
            st.integers(2, 40),  # bins (more than 32 bins: the numpy formula)
            st.sampled_from([1e-4, 1e-4, 0.3, 1e-12, 0.05]),  # epsilon
            st.sampled_from(["normal", "ties", "wide"]),  # reference
            st.sampled_from(["normal", "ties", "shifted", "wide"]),  # window
            st.integers(1, 3000),  # window size
        ),
        min_size=1,
        max_size=8,
    )
)
def test_psi_batch_matches_the_frozen_copy(
    path: str, specs: list[tuple[int, int, float, str, str, int]]
) -> None:
    """Every job of a batch (KS jobs mixed in: evaluate_sorted_all splits by class) equals
    the frozen evaluate_sorted, bit for bit."""
    jobs: list[tuple[Any, np.ndarray]] = []
    want: list[DetectorResult | None] = []
    for seed, bins, epsilon, ref_style, win_style, size in specs:
        d = _fitted(seed, bins, epsilon, ref_style)
        rng = np.random.default_rng(seed + 1)
        if win_style == "ties":
            w = rng.integers(-1, 5, size).astype(np.float64)
        elif win_style == "shifted":
            w = rng.normal(3.0, 0.1, size)
        elif win_style == "wide":
            w = rng.normal(size=size) * 10.0 ** rng.uniform(-30, 30, size)
        else:
            w = rng.normal(size=size)
        w = np.sort(w)
        jobs.append((d, w))
        want.append(_frozen_psi_evaluate_sorted(d, w))
        ks = KSDetector()
        ks.fit(d._edges if d._edges.size else np.zeros(1))
        jobs.append((ks, w))
        want.append(None)
    got = evaluate_sorted_all(jobs)
    for (d, w), g, wnt in zip(jobs, got, want, strict=True):
        if wnt is None:
            assert g == d.evaluate_sorted(w)
        else:
            assert _result_bits(g) == _result_bits(wnt)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    seed=st.integers(0, 2**32 - 1),
    bins=st.integers(2, 40),
    style=st.sampled_from(["normal", "ties"]),
    size=st.integers(1, 3000),
    shift=st.sampled_from([0.0, 0.3, 3.0]),
)
def test_psi_noise_floor_is_the_same_on_every_path(
    path: str, seed: int, bins: int, style: str, size: int, shift: float
) -> None:
    """With the noise floor on (the default), the batch (kernel or numpy), the sorted and
    the unsorted evaluation grade alike, bit for bit, at every window size."""
    d = _fitted(seed, bins, 1e-4, style, noise_alpha=1e-5)
    w = np.sort(np.random.default_rng(seed + 1).normal(shift, 1.0, size))
    (batch,) = PSIDetector.evaluate_sorted_batch([(d, w)])
    assert _result_bits(batch) == _result_bits(d.evaluate_sorted(w))
    assert _result_bits(batch) == _result_bits(d.evaluate(w[::-1].copy()))
    floor = d.noise_floor(size)
    assert batch.threshold == max(d.warning, floor)
    assert ("noise_floor" in batch.details) == (floor > d.warning)


def test_psi_batch_errors_and_odd_windows(path: str) -> None:
    """An empty window raises as before; a window that is not a contiguous float64 array
    (the kernel refuses it) still gets the Python answer; an unfitted detector raises."""
    d = _fitted(3, 10, 1e-4, "normal")
    with pytest.raises(DetectorError, match="must not be empty"):
        PSIDetector.evaluate_sorted_batch([(d, np.empty(0))])
    w = np.sort(np.random.default_rng(4).normal(size=401))
    for odd in (w[::2], w.astype(np.float32)):
        got = PSIDetector.evaluate_sorted_batch([(d, odd), (d, w)])
        want = [_frozen_psi_evaluate_sorted(d, odd), _frozen_psi_evaluate_sorted(d, w)]
        assert [_result_bits(r) for r in got] == [_result_bits(r) for r in want]
    with pytest.raises(DetectorError, match="call fit"):
        PSIDetector.evaluate_sorted_batch([(PSIDetector(), w)])


def _neumaier_sum(xs: list[float]) -> float:
    """CPython 3.12's ``sum`` of floats (``builtin_sum_impl``), for the kernel's other mode."""
    f_result = 0 + xs[0]
    c = 0.0
    for x in xs[1:]:
        t = f_result + x
        if abs(f_result) >= abs(x):
            c += (f_result - t) + x
        else:
            c += (x - t) + f_result
        f_result = t
    if c and math.isfinite(c):
        f_result += c
    return f_result


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bins=st.integers(2, 31), size=st.integers(1, 2000))
def test_psi_kernel_sums_as_either_python_does(seed: int, bins: int, size: int) -> None:
    """Both of the kernel's ways to add the proportions: as this Python's ``sum`` (the
    service's path, above) and as the other CPython's (3.11: left to right; 3.12 on:
    compensated), against a port of that ``sum``."""
    d = _fitted(seed, bins, 1e-4, "normal")
    w = np.sort(np.random.default_rng(seed).normal(0.3, 1.2, size))
    upto = [*w.searchsorted(d._edges, side="right").tolist(), size]
    counts = [upto[0], *(b - a for a, b in itertools.pairwise(upto))]
    props = [p if p >= d.epsilon else d.epsilon for p in [c / size for c in counts]]
    for compensated, add in ((False, _left_sum), (True, _neumaier_sum)):
        norm = add(props)
        want = 0.0
        for p, r, r_log in zip(props, d._ref_props.tolist(), d._ref_log.tolist(), strict=True):
            p /= norm
            want += (p - r) * (math.log(p) - r_log)
        (got,) = PSI_MANY([w], [d.native_plan], compensated)
        assert struct.pack("<d", got) == struct.pack("<d", want)


def _left_sum(xs: list[float]) -> float:
    out = 0 + xs[0]
    for x in xs[1:]:
        out += x
    return out


def test_evaluate_sorted_all_is_evaluate_sorted_job_by_job(path: str) -> None:
    """Batched classes (KS, PSI), classes with no ``evaluate_sorted`` (Wasserstein, ADWIN,
    Page-Hinkley) and a detector class seen first in the middle: every result in order."""
    from monitor.detectors.base import evaluate_sorted
    from monitor.detectors.streaming import ADWINDetector, PageHinkleyDetector
    from monitor.detectors.wasserstein import WassersteinDetector

    def jobs() -> list[tuple[Any, np.ndarray]]:
        """The same jobs each time, with fresh detectors (a stream detector's evaluate
        resets its latched flag)."""
        rng = np.random.default_rng(5)
        ref = rng.normal(size=800)
        classes = (KSDetector, PSIDetector, WassersteinDetector, ADWINDetector)
        detectors: list[Any] = []
        for cls in (*classes, PageHinkleyDetector):
            d = cls()
            d.fit(ref)
            d.update(rng.normal(0.5, 1.0, 300))
            detectors.append(d)
        return [
            (detectors[k % len(detectors)], np.sort(rng.normal(0.2 * k, 1.0, 50 + 37 * k)))
            for k in (3, 0, 1, 4, 2, 1, 0, 3, 2, 4)
        ]

    got = evaluate_sorted_all(jobs())
    want = [evaluate_sorted(d, w) for d, w in jobs()]
    assert [_result_bits(r) for r in got] == [_result_bits(r) for r in want]


def test_ks_batch_converts_what_the_kernel_refuses() -> None:
    """The pipeline's arrays go to the kernel as they are; a strided or float32 window, a
    list, are converted as before (the same D), an unsorted one is still an error."""
    from monitor.detectors.ks import ks_statistic_sorted_numpy, ks_statistics_sorted

    rng = np.random.default_rng(6)
    ref = np.sort(rng.normal(size=500))
    win = np.sort(rng.normal(0.1, 1.0, 601))
    want = [ks_statistic_sorted_numpy(ref, w) for w in (win[::2], win.astype(np.float32))]
    got = ks_statistics_sorted([ref, list(ref)], [win[::2], win.astype(np.float32)])
    assert [struct.pack("<d", d) for d in got] == [struct.pack("<d", d) for d in want]
    with pytest.raises(DetectorError, match="not sorted"):
        ks_statistics_sorted([ref], [win[::-1].copy()])


def test_results_from_rows_equal_the_dataclass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled builder and the dataclass give equal, frozen results; a field more or
    a ``__post_init__`` in DetectorResult would need the builder changed (said here)."""
    import dataclasses

    from monitor.detectors import base

    assert base.RESULT_FIELDS == (
        "detector", "statistic", "p_value", "threshold", "drifted", "severity", "details"
    )  # fmt: skip
    assert not hasattr(DetectorResult, "__post_init__")
    rows = [
        ("ks", 0.25, 1e-9, 0.05, True, "critical", {"exact": 0.0}),
        ("psi", -0.0, None, 0.1, False, "ok", {}),
    ]
    want = [DetectorResult(*row) for row in rows]
    got = base.results_from_rows(rows)
    assert got == want and [type(r) for r in got] == [DetectorResult] * 2
    assert [_result_bits(r) for r in got] == [_result_bits(r) for r in want]
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[0].statistic = 1.0  # type: ignore[misc]
    monkeypatch.setattr(base, "_new_frozen", None)
    assert base.results_from_rows(rows) == want
