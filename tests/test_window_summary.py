"""Windows and summary statistics against numpy/scipy on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitor.summary import summarize_categorical, summarize_numeric
from monitor.window import SlidingWindow


@pytest.mark.parametrize("capacity", [1, 7, 100])
def test_window_holds_exactly_the_last_capacity_rows_under_any_batching(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    w = SlidingWindow(n_numeric=2, n_categorical=1, capacity=capacity)
    seen_num, seen_cat = [], []
    for _ in range(60):
        n = int(rng.integers(0, 3 * capacity + 2))
        num = rng.normal(size=(n, 2))
        cat = rng.integers(0, 5, size=(n, 1)).astype(np.int32)
        w.append(num, cat, np.arange(n, dtype=float))
        seen_num.append(num)
        seen_cat.append(cat)
    all_num = np.concatenate(seen_num)
    all_cat = np.concatenate(seen_cat)
    expect = all_num[-capacity:]
    assert w.total == len(all_num)
    assert w.size == min(capacity, len(all_num))
    got = w.numeric()
    # Same multiset of rows (the ring is not in chronological order).
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, expect.tolist()))
    assert sorted(w.categorical()[:, 0].tolist()) == sorted(all_cat[-capacity:, 0].tolist())


def test_numeric_summary_matches_numpy_and_scipy() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=(5000, 4))
    x[rng.random(x.shape) < 0.07] = np.nan
    x[:, 3] = np.nan  # an all-missing column
    summaries, sorted_cols = summarize_numeric(x)
    for j in range(3):
        col = x[:, j][~np.isnan(x[:, j])]
        s = summaries[j]
        assert s.count == col.size
        assert s.missing_rate == pytest.approx(1 - col.size / 5000, abs=1e-12)
        assert s.mean == pytest.approx(np.mean(col), rel=1e-12)
        assert s.std == pytest.approx(np.std(col), rel=1e-12)
        assert s.std == pytest.approx(
            stats.tstd(col) * np.sqrt((col.size - 1) / col.size), rel=1e-9
        )
        assert (s.min, s.max) == (col.min(), col.max())
        for q, v in s.quantiles.items():
            assert v == pytest.approx(np.quantile(col, q), rel=1e-12)
        np.testing.assert_array_equal(sorted_cols[j], np.sort(col))
    empty = summaries[3]
    assert empty.count == 0 and empty.missing_rate == 1.0 and np.isnan(empty.mean)


def test_categorical_summary_counts_missing_and_unseen() -> None:
    codes = np.array([[0], [1], [1], [-1], [3], [2]], dtype=np.int32)
    (s,) = summarize_categorical(codes, vocab_sizes=[4], reference_sizes=[2])
    assert s.counts.tolist() == [1, 2, 1, 1]
    assert s.count == 5
    assert s.missing_rate == pytest.approx(1 / 6)
    assert s.unseen_rate == pytest.approx(2 / 5)  # codes 2 and 3 are beyond the reference


def test_mean_and_std_stay_finite_when_their_sums_overflow() -> None:
    """Finite feature values of 1e200 (their squares are inf) or many of 1e307 (their sum is
    inf) gave a NaN or inf ``monitor_feature_mean``/``_std`` and learned reference; both are
    finite and right (computed on the values scaled by their largest magnitude)."""
    from monitor.reference import profile_numeric

    big = np.array([-1e200, 1e200] * 50 + [1e307] * 200 + [np.nan] * 3)
    with_nan = big.reshape(-1, 1)
    full = np.array([1e307] * 300 + [-1e200] * 3).reshape(-1, 1)
    for values in (with_nan, full, np.asfortranarray(full)):
        col = values[:, 0][np.isfinite(values[:, 0])]
        want_mean = float(np.mean(col / 1e307)) * 1e307
        want_std = float(np.std(col / 1e307)) * 1e307
        (s,), _ = summarize_numeric(values)
        assert math.isfinite(s.mean) and math.isfinite(s.std)
        assert s.mean == pytest.approx(want_mean, rel=1e-9)
        assert s.std == pytest.approx(want_std, rel=1e-9)
        p = profile_numeric("x", col, len(col), 1000)
        assert p.mean == pytest.approx(want_mean, rel=1e-9)
        assert p.std == pytest.approx(want_std, rel=1e-9)
    (s,), _ = summarize_numeric(np.array([[1.0], [2.0], [np.nan]]))
    assert (s.mean, s.std) == (1.5, 0.5)  # the common case keeps its exact bits
