"""Summary statistics of a window, per column, computed with numpy on whole matrices.

Numeric columns: count of present values, missing rate, mean, standard deviation
(population, ddof=0, matching ``numpy.std``), min, max and quantiles (linear
interpolation, matching ``numpy.quantile``'s default). Categorical columns:
counts per category code, missing rate and the share of present values whose
category the reference never saw.

The numeric statistics of a sorted window come from the compiled kernel of ``native/``
(``monitor_native.summarize_sorted``, all columns in one call) when it is installed: the
same bits as the numpy code here, which it replaces for a Fortran-ordered float64 window
(the service's): numpy sums such a column pairwise, and the kernel repeats that order
(``native/src/summary.rs``; ``tests/test_summary_native.py`` holds the two together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.column_sort import sort_columns

try:  # the compiled kernel (native/, Rust): optional, numpy computes the same statistics
    from monitor_native import summarize_sorted as _native_summarize
except ImportError:  # pragma: no cover - depends on the install (an older build lacks it)
    _native_summarize = None

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


@dataclass(frozen=True, slots=True)
class NumericSummary:
    """Statistics of one numeric column. Fields are NaN when the column has no values."""

    count: int
    missing_rate: float
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[float, float]


@dataclass(frozen=True, slots=True)
class CategoricalSummary:
    """Statistics of one categorical column. ``counts[i]`` counts category code ``i``."""

    count: int
    missing_rate: float
    counts: np.ndarray
    unseen_rate: float


def summarize_numeric(
    values: np.ndarray, quantiles: tuple[float, ...] = QUANTILES
) -> tuple[list[NumericSummary], list[np.ndarray]]:
    """Summaries of every column of ``values`` (rows = events, NaN = missing).

    Also returns each column's present values, sorted: the window tests reuse
    them instead of sorting again.
    """
    summaries, columns = _summarize_numeric(values, quantiles)
    if any(not (math.isfinite(s.mean) and math.isfinite(s.std)) for s in summaries):
        summaries = [_finite_summary(s, col) for s, col in zip(summaries, columns, strict=True)]
    return summaries, columns


def finite_moments(col: np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation of finite values, computed on values scaled
    by their largest magnitude: both are finite whenever the values are, where the plain
    sums overflow (200 values of 1e307 sum to inf; a square of 1e200 is inf) and gave a
    NaN or inf mean and std on ``/metrics`` and in learned references."""
    scale = float(np.max(np.abs(col)))
    if scale == 0.0 or not math.isfinite(scale):
        return float(np.mean(col)), float(np.std(col))
    scaled = col / scale
    mean = float(np.mean(scaled))
    return mean * scale, float(np.std(scaled, mean=mean)) * scale


def _finite_summary(s: NumericSummary, col: np.ndarray) -> NumericSummary:
    """``s`` with its mean and std recomputed by :func:`finite_moments` when a sum
    overflowed (only then: the common path keeps its exact bits)."""
    if s.count == 0 or (math.isfinite(s.mean) and math.isfinite(s.std)):
        return s
    if not (math.isfinite(s.min) and math.isfinite(s.max)):  # an infinity: inf/NaN is right
        return s
    mean, std = finite_moments(col)
    return NumericSummary(s.count, s.missing_rate, mean, std, s.min, s.max, s.quantiles)


def _summarize_numeric(
    values: np.ndarray, quantiles: tuple[float, ...]
) -> tuple[list[NumericSummary], list[np.ndarray]]:
    n_rows, n_cols = values.shape
    ordered = sort_columns(values)  # NaN sorts last; by numpy or the crate (column_sort.py)
    if (
        _native_summarize is not None
        and n_rows
        and ordered.flags.f_contiguous  # numpy sums its columns pairwise: so does the kernel
        and ordered.dtype == np.float64
        and all(0.0 <= q <= 1.0 for q in quantiles)
    ):
        return _summarize_native(ordered, quantiles)
    if n_rows and n_cols and not np.isnan(ordered[-1]).any():  # no NaN in any column
        return _summarize_full(ordered, quantiles)
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
                lo, hi, frac = _interpolation(q, n)
                qs[q] = float(col[lo] + (col[hi] - col[lo]) * frac)
            # col.mean() and col.std() without their Python wrappers (twice the arithmetic
            # here, per column and evaluation, once a value is missing), the same bits:
            # the same sum divided by the same count, then the squared deviations from it
            # summed and divided the same way (std's own steps), and an IEEE square root.
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


def _interpolation(q: float, n: int) -> tuple[int, int, float]:
    """Where quantile ``q`` of ``n`` sorted values lies: ``numpy.quantile``'s default
    (linear) rule, as (index below, index above, weight of the one above)."""
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    return lo, min(lo + 1, n - 1), pos - lo


def _summarize_full(
    ordered: np.ndarray, quantiles: tuple[float, ...]
) -> tuple[list[NumericSummary], list[np.ndarray]]:
    """:func:`summarize_numeric` when no value is missing: every statistic of every
    column in one numpy call each (the common case, once per evaluation)."""
    n, n_cols = ordered.shape
    means = ordered.mean(axis=0)
    # The mean ``std`` would compute first is this one (the same sum along the same axis,
    # divided by the same count): handed over, it is not summed again (same bits).
    stds = ordered.std(axis=0, mean=means[None, :]).tolist()
    means = means.tolist()
    mins = ordered[0].tolist()
    maxs = ordered[-1].tolist()
    qvals: list[list[float]] = []
    for q in quantiles:
        lo, hi, frac = _interpolation(q, n)
        qvals.append((ordered[lo] + (ordered[hi] - ordered[lo]) * frac).tolist())
    # In field order (count, missing_rate, mean, std, min, max, quantiles), column by column:
    # binding keywords costs a fifth of constructing a frozen dataclass.
    per_column = list(zip(*qvals, strict=True)) if qvals else [()] * n_cols
    summaries = [
        NumericSummary(n, 0.0, mean, std, lo, hi, dict(zip(quantiles, qs, strict=True)))
        for mean, std, lo, hi, qs in zip(means, stds, mins, maxs, per_column, strict=True)
    ]
    return summaries, [ordered[:, j] for j in range(n_cols)]


def _summarize_native(
    ordered: np.ndarray, quantiles: tuple[float, ...]
) -> tuple[list[NumericSummary], list[np.ndarray]]:
    """:func:`summarize_numeric` of a non-empty sorted Fortran-ordered float64 window by the
    compiled kernel: every statistic of every column in one call, and the summaries built
    there (a frozen dataclass's ``__init__`` costs more than its statistics), the same
    bits as the numpy paths (:func:`_summarize_full` and the loop over missing values)."""
    n_rows = ordered.shape[0]
    summaries, counts = _native_summarize(ordered, tuple(quantiles), NumericSummary)
    columns = [ordered[:, j] if n == n_rows else ordered[:n, j] for j, n in enumerate(counts)]
    return summaries, columns


def summarize_categorical(
    codes: np.ndarray, vocab_sizes: list[int], reference_sizes: list[int]
) -> list[CategoricalSummary]:
    """Summaries of every column of category ``codes`` (-1 = missing).

    ``vocab_sizes[j]`` is how many categories column ``j`` knows now;
    ``reference_sizes[j]`` how many of them (the first ones) the reference had.
    """
    n_rows = codes.shape[0]
    out: list[CategoricalSummary] = []
    for j in range(codes.shape[1]):
        # One pass per column, no filtered copy: code c counted at c + 1, missing at 0.
        full = np.bincount(np.maximum(codes[:, j], -1) + 1, minlength=vocab_sizes[j] + 1)
        counts = full[1:].astype(np.int64)
        n = n_rows - int(full[0])
        unseen = int(counts[reference_sizes[j] :].sum())
        out.append(
            CategoricalSummary(
                count=n,
                missing_rate=(1.0 - n / n_rows) if n_rows else float("nan"),
                counts=counts,
                unseen_rate=(unseen / n) if n else 0.0,
            )
        )
    return out
