"""The sort of a window's columns (monitor/column_sort.py, native/src/sort.rs).

The crate's sort must give what ``np.sort(values, axis=0)`` gives: the same values in each
column, ascending, NaN last, up to the order of ``-0.0`` and ``0.0`` (equal; numpy leaves them
in either order, the crate puts ``-0.0`` first). Checked on any float64 (infinities,
subnormals, NaN of any bits), on ties, on values crowded in a range narrow enough to defeat
the radix passes (the insertion pass's budget, then the comparison sort), and at the lengths
where the sort changes method. The choice between the two is checked as well: told, or timed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor import column_sort

NATIVE = column_sort._native_sort
needs_native = pytest.mark.skipif(
    NATIVE is None and os.environ.get("MONITOR_REQUIRE_NATIVE") != "1",
    reason="monitor_native without sort_columns",
)


def _native(values: np.ndarray) -> np.ndarray:
    assert NATIVE is not None, "monitor_native lacks sort_columns (pip install ./native)"
    out = np.full(values.shape, 7.0, order="F")
    NATIVE(values, out)
    return out


def _assert_sorted_like_numpy(got: np.ndarray, values: np.ndarray) -> None:
    want = np.sort(values, axis=0)
    assert got.shape == want.shape
    # The same values in the same places (NaN where numpy has NaN), -0.0 and 0.0 alike.
    np.testing.assert_array_equal(got, want)
    for j in range(values.shape[1]):
        col, src = got[:, j], values[:, j]
        # A permutation of the column, bit for bit (NaN payloads and zero signs kept).
        assert sorted(col.view(np.uint64).tolist()) == sorted(src.view(np.uint64).tolist())
        present = col[~np.isnan(col)]
        signs = np.signbit(present[present == 0.0])
        assert (np.diff(signs.astype(np.int8)) <= 0).all(), "-0.0 sorts before 0.0"


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    values=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=600),
        elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    )
)
def test_any_values_sort_as_numpy_sorts_them(values: np.ndarray) -> None:
    values = np.asfortranarray(values)
    _assert_sorted_like_numpy(_native(values), values)


@needs_native
@pytest.mark.parametrize("rows", [1, 2, 255, 256, 257, 1000, 5000])
@pytest.mark.parametrize("style", ["normal", "ties", "crowded", "descending", "missing", "zeros"])
def test_shapes_the_sort_treats_differently(rows: int, style: str) -> None:
    rng = np.random.default_rng(rows)
    if style == "normal":
        x = rng.normal(3.0, 100.0, (rows, 3))
    elif style == "ties":
        x = rng.integers(-2, 3, (rows, 3)).astype(np.float64)
    elif style == "crowded":  # one top 33 bits, the rest random: past the insertion budget
        bits = np.uint64(0x408F_4000_0000_0000) | rng.integers(0, 1 << 24, (rows, 3)).astype(
            np.uint64
        )
        x = bits.view(np.float64)
    elif style == "descending":
        x = np.repeat(np.linspace(1e6, -1e6, rows)[:, None], 3, axis=1)
    elif style == "missing":
        x = rng.normal(size=(rows, 3))
        x[rng.random((rows, 3)) < 0.3] = np.nan
        x[:, 2] = np.nan
    else:
        x = rng.choice([-0.0, 0.0, 5e-324, -5e-324], (rows, 3))
    values = np.asfortranarray(x)
    _assert_sorted_like_numpy(_native(values), values)


@needs_native
def test_the_kernel_refuses_what_it_cannot_sort_in_place() -> None:
    f = np.asfortranarray(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ValueError, match="Fortran-contiguous"):
        NATIVE(np.ascontiguousarray(f), np.empty((10, 3), order="F"))  # type: ignore[misc]
    with pytest.raises(ValueError, match="Fortran-contiguous"):
        NATIVE(f, np.empty((10, 3), order="C"))  # type: ignore[misc]
    with pytest.raises(ValueError, match="same shape"):
        NATIVE(f, np.empty((10, 2), order="F"))  # type: ignore[misc]
    with pytest.raises(ValueError, match="overlap"):
        NATIVE(f, f)  # type: ignore[misc]
    frozen = np.empty((10, 3), order="F")
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        NATIVE(f, frozen)  # type: ignore[misc]
    with pytest.raises(TypeError, match="float64"):
        NATIVE(f.astype(np.float32), np.empty((10, 3), np.float32, order="F"))  # type: ignore[misc]
    before = f.copy()
    NATIVE(f, np.empty((10, 3), order="F"))  # type: ignore[misc]
    assert f.tobytes() == before.tobytes(), "the input is left as it was"


@pytest.mark.parametrize("chosen", ["numpy", "native"])
def test_sort_columns_by_either_gives_numpys_columns(
    chosen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chosen == "native" and NATIVE is None:
        pytest.skip("monitor_native without sort_columns")
    monkeypatch.setattr(column_sort, "_chosen", chosen)
    rng = np.random.default_rng(1)
    ring = np.empty((4, 500))
    ring[:] = rng.normal(size=(4, 500))
    ring[1, ::3] = np.nan
    window = ring.T  # a full window as SlidingWindow.numeric() returns it: Fortran order
    got = column_sort.sort_columns(window)
    np.testing.assert_array_equal(got, np.sort(window, axis=0))
    assert got.flags.f_contiguous
    # Another layout stays numpy's (the summaries sum a C-ordered matrix in its own order).
    c = np.ascontiguousarray(window)
    got_c = column_sort.sort_columns(c)
    assert got_c.flags.c_contiguous and got_c.tobytes() == np.sort(c, axis=0).tobytes()
    # A 1-D array (the KS and Wasserstein windows of one column).
    col = rng.normal(size=777)
    np.testing.assert_array_equal(column_sort.sort_values(col), np.sort(col))
    assert column_sort.sort_values(np.empty(0)).shape == (0,)
    assert column_sort.sort_columns(np.empty((0, 3), order="F")).shape == (0, 3)


def test_the_choice_is_told_or_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert column_sort._choose("0") == "numpy"
    if NATIVE is None:
        assert column_sort._choose("1") == "numpy" and column_sort._choose("") == "numpy"
        return
    assert column_sort._choose("1") == "native"
    assert column_sort._choose("") in ("native", "numpy")
    # Timed: the faster wins. The kernel made slow here must lose, and win when numpy is.
    import time

    def slow_native(values: np.ndarray, out: np.ndarray) -> None:
        time.sleep(0.002)
        NATIVE(values, out)

    monkeypatch.setattr(column_sort, "_native_sort", slow_native)
    assert column_sort._choose("") == "numpy"
    monkeypatch.setattr(column_sort, "_native_sort", NATIVE)
    real_sort = np.sort

    def slow_numpy(a: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        time.sleep(0.002)
        return real_sort(a, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(column_sort.np, "sort", slow_numpy)
    assert column_sort._choose("") == "native"
    # Decided once per process, then kept.
    monkeypatch.setattr(column_sort, "_chosen", None)
    monkeypatch.setenv("MONITOR_NATIVE_SORT", "0")
    assert column_sort.implementation() == "numpy"
    assert column_sort.describe() == "numpy (MONITOR_NATIVE_SORT=0)"  # the start log's words
    monkeypatch.setenv("MONITOR_NATIVE_SORT", "1")
    assert column_sort.implementation() == "numpy"
    monkeypatch.setattr(column_sort, "_chosen", None)
    assert column_sort.describe() == "compiled (monitor_native) (MONITOR_NATIVE_SORT=1)"
