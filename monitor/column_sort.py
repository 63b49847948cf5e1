"""The sort of a window's numeric columns, by whichever of numpy and the crate is faster here.

Why: every evaluation sorts each numeric column of its window once; the summaries' quantiles,
KS and PSI all read the sorted columns (:func:`monitor.summary.summarize_numeric`). How long
that takes depends on the CPU more than anything else in an evaluation: numpy's float64 sort is
vectorised with AVX-512 where that pays off (about 4 ns per value on the Intel machines of
``BENCHMARKS.md``) but took 22 ns per value on an AMD EPYC of the same benchmarks, where the
sort alone was then more than half of an evaluation (2.5 ms of 4.7 for 21 columns of 5,000).
The crate's sort (``monitor_native.sort_columns``, ``native/src/sort.rs``: radix passes on
the top bits, then an insertion pass) does not depend on vector instructions: about 6 ns per
value there. Neither wins everywhere, so the first sort of a process times both on a
window-shaped sample, alternating, and the process keeps the faster.

Both give the same columns: each ascending with its NaN last, values equal as numbers. The
one difference is the relative order of ``-0.0`` and ``0.0``, which compare equal: numpy
leaves them in either order, the crate puts ``-0.0`` first, so a quantile or a minimum that
falls on a zero may be either zero (``/metrics`` may show ``-0``). No drift statistic,
p-value or verdict tells them apart.

``MONITOR_NATIVE_SORT`` overrides the choice: ``1`` for the crate, ``0`` for numpy
(benchmarks and tests); anything else, or unset, times both.
"""

from __future__ import annotations

import os
import time

import numpy as np

try:  # the compiled sort (native/, Rust): optional, numpy sorts the same columns
    from monitor_native import sort_columns as _native_sort
except ImportError:  # pragma: no cover - depends on the install (an older build lacks it)
    _native_sort = None

#: The timing sample: the shape of a window's column (5,000 values), four columns of it.
_SAMPLE_SHAPE = (5_000, 4)
_ROUNDS = 5

_chosen: str | None = None


def sort_columns(values: np.ndarray) -> np.ndarray:
    """``np.sort(values, axis=0)`` of a 2-D float64 matrix (rows = events), NaN last.

    The crate sorts a Fortran-ordered matrix (a full window: its columns are contiguous) into
    a new one of that order, as numpy does. Any other layout goes to numpy, which keeps it:
    the summaries sum a column of a C-ordered matrix in another order than a contiguous one
    (``monitor.summary``), and a copy into Fortran order would change their last bits.
    """
    if (
        values.ndim == 2
        and values.dtype == np.float64
        and values.size
        and values.flags.f_contiguous
        and implementation() == "native"
    ):
        out = np.empty(values.shape, order="F")
        _native_sort(values, out)  # type: ignore[misc]
        return out
    return np.sort(values, axis=0)


def sort_values(values: np.ndarray) -> np.ndarray:
    """``np.sort(values)`` of a 1-D float64 array, by the same choice."""
    if values.ndim == 1 and values.dtype == np.float64 and values.size:
        return sort_columns(values.reshape(-1, 1)).reshape(-1)
    return np.sort(values)


def implementation() -> str:
    """``"native"`` or ``"numpy"``: which sort this process uses (decided at the first call)."""
    global _chosen
    if _chosen is None:
        _chosen = _choose(os.environ.get("MONITOR_NATIVE_SORT", ""))
    return _chosen


def describe() -> str:
    """Which sort this process uses and why, for the service's start log."""
    name = "compiled (monitor_native)" if implementation() == "native" else "numpy"
    if _native_sort is None:
        return f"{name} (monitor_native not installed)"
    override = os.environ.get("MONITOR_NATIVE_SORT", "")
    if override in ("0", "1"):
        return f"{name} (MONITOR_NATIVE_SORT={override})"
    return f"{name} (the faster of the two on this machine, timed)"


def _choose(override: str) -> str:
    """The faster of the two on this machine, unless told (``override``: "1" or "0")."""
    if _native_sort is None or override == "0":
        return "numpy"
    if override == "1":
        return "native"
    sample = np.asfortranarray(np.random.default_rng(0).standard_normal(_SAMPLE_SHAPE))
    out = np.empty(_SAMPLE_SHAPE, order="F")
    native, numpy_ = [], []
    for _ in range(_ROUNDS):  # alternating, best of each: the machine may be busy
        t0 = time.perf_counter()
        _native_sort(sample, out)
        t1 = time.perf_counter()
        np.sort(sample, axis=0)
        t2 = time.perf_counter()
        native.append(t1 - t0)
        numpy_.append(t2 - t1)
    return "native" if min(native) < min(numpy_) else "numpy"
