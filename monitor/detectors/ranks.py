"""Window tests from reference ranks: KS and PSI without sorting the window.

Against a fixed reference, a numeric value is mapped once, when it enters the
window, to its *rank bucket* among the reference's sorted unique values
``u_0 < ... < u_{k-1}``: bucket ``2j`` is the open interval ``(u_{j-1}, u_j)``
(``u_{-1} = -inf``), bucket ``2j + 1`` is the value ``u_j`` itself, bucket
``2k`` is ``(u_{k-1}, +inf)``; ``2k + 1`` more buckets, one more for missing
values (NaN), which no test reads. A window is then a vector of bucket counts
(one ``bincount``), and nothing sorts it.

**KS.** With ``A_j`` = window values ``<= u_j`` and ``B_j`` = window values
``< u_j`` (prefix sums of the counts), ``R_j`` = reference values ``<= u_j``, the
two-sample KS distance is exactly::

    D = max_j max(|A_j / n - R_j / m|, |B_j / n - R_{j-1} / m|),  R_{-1} = 0

plus the last open bucket (``n / n - m / m = 0``). Why: both ECDFs are
right-continuous steps. At ``u_j`` they are ``R_j / m`` and ``A_j / n``.
Between ``u_{j-1}`` and ``u_j`` the reference stays at ``R_{j-1}`` while the
window climbs from ``A_{j-1}`` to ``B_j``, so ``F_win - F_ref`` is largest at
``B_j`` and ``F_ref - F_win`` at ``u_{j-1}``, already counted. Each term is the
same integers divided the same way as :func:`monitor.detectors.ks.ks_statistic_sorted`
(scipy's walk) divides them, and a float division and subtraction are
monotone, so D is equal bit for bit, ties included (``tests/test_ranks.py``).

**PSI.** Numeric PSI bins are right-closed at reference quantiles, which are
reference values (``inverted_cdf``): ``(e_{i-1}, e_i]`` with ``e_i = u_t`` holds
``A_t - A_{t'}`` window values. So the bin counts are differences of the same
prefix sums, read at a dozen positions.

The compiled crate (``monitor_native``) has the same two kernels (the bucket
mapping and the one pass over the counts); without it these numpy functions
give the same results, more slowly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # pragma: no cover - depends on whether the crate is installed
    import monitor_native as _native

    _NATIVE_KERNELS = hasattr(_native, "order_statistics")  # an older build lacks them
except ImportError:  # pragma: no cover - depends on the install
    _native = None
    _NATIVE_KERNELS = False


class RankBuckets:
    """A reference's sorted unique values and its counts at them, computed once at fit.

    >>> rb = RankBuckets(np.array([3.0, 1.0, 1.0, 2.0]))
    >>> rb.unique.tolist(), rb.ref_le.tolist(), rb.n_buckets
    ([1.0, 2.0, 3.0], [2, 3, 4], 7)
    >>> rb.buckets(np.array([0.5, 1.0, 1.5, 3.0, 9.0, np.nan])).tolist()
    [0, 1, 2, 5, 6, 7]
    """

    __slots__ = (
        "_guide",
        "_guide_lo",
        "_guide_scale",
        "m",
        "n_buckets",
        "ref_le",
        "ref_le_frac",
        "ref_lt_frac",
        "unique",
    )

    def __init__(self, reference: np.ndarray) -> None:
        ref = np.sort(np.asarray(reference, dtype=np.float64))
        self.unique, counts = np.unique(ref, return_counts=True)
        self.m = int(ref.size)
        self.ref_le = np.cumsum(counts)  # R_j
        self.n_buckets = 2 * self.unique.size + 1
        # R_j / m and R_{j-1} / m, divided once here as the walk divides them per value.
        self.ref_le_frac = self.ref_le / self.m
        self.ref_lt_frac = np.concatenate(([0.0], self.ref_le_frac[:-1]))
        # The kernel's guide: where each of G equal slots of the value range starts among
        # the unique values (G ~ k / 4), so a search starts within a few cache lines.
        k = self.unique.size
        lo, hi = (float(self.unique[0]), float(self.unique[-1])) if k else (0.0, 0.0)
        slots = min(4096, k // 4)
        width = hi - lo
        if slots >= 2 and np.isfinite(width) and width > 0:
            scale = slots / width
            edges = lo + np.arange(slots + 1) / scale
            self._guide = np.searchsorted(self.unique, edges).astype(np.int64)
            self._guide_lo, self._guide_scale = lo, scale
        else:
            self._guide, self._guide_lo, self._guide_scale = np.zeros(0, np.int64), 0.0, 0.0

    def same_as(self, other: RankBuckets) -> bool:
        """True when both were fitted on references with the same values and counts."""
        return self is other or (
            self.m == other.m
            and np.array_equal(self.unique, other.unique)
            and np.array_equal(self.ref_le, other.ref_le)
        )

    def buckets(self, values: np.ndarray) -> np.ndarray:
        """Each value's bucket (``n_buckets`` for NaN), as int64; any shape."""
        values = np.asarray(values, dtype=np.float64)
        if _NATIVE_KERNELS:
            out = np.empty(values.shape, dtype=np.int64)
            flat = np.ascontiguousarray(values).reshape(-1)
            _native.rank_buckets(
                self.unique, flat, out.reshape(-1), self._guide, self._guide_lo, self._guide_scale
            )
            return out
        return buckets_numpy(self.unique, values)

    def counts(self, buckets: np.ndarray) -> np.ndarray:
        """Bucket counts of a window given its buckets (last entry: missing values)."""
        return np.bincount(buckets, minlength=self.n_buckets + 1)

    def ks(self, counts: np.ndarray) -> float:
        """The KS distance D of the window with these bucket ``counts`` (see the module)."""
        if _NATIVE_KERNELS:
            return float(
                _native.ks_from_counts(
                    np.ascontiguousarray(counts, dtype=np.int64), self.ref_le, self.m
                )
            )
        return ks_from_counts(counts, self)

    def prefix_at(self, counts: np.ndarray, positions: list[int]) -> list[int]:
        """How many values lie in buckets ``0..p`` for each ascending position ``p``."""
        if _NATIVE_KERNELS:
            return list(_native.prefix_at(np.ascontiguousarray(counts, np.int64), positions))
        if not positions:
            return []
        return np.cumsum(counts[: positions[-1] + 1])[positions].tolist()

    def order_statistics(
        self, counts: np.ndarray, buckets: np.ndarray, values: np.ndarray, ranks: list[int]
    ) -> list[float]:
        """The window's values at ascending 0-based ``ranks`` (what a sort would put there).

        ``counts`` are the bucket counts of the window whose ``values`` have the
        ``buckets``. A rank in a reference value's bucket is that value; one in an
        open interval is found among the few window values in it.
        """
        if _NATIVE_KERNELS:
            return list(
                _native.order_statistics(
                    np.ascontiguousarray(counts, np.int64),
                    np.ascontiguousarray(buckets, np.int32),
                    np.ascontiguousarray(values, np.float64),
                    self.unique,
                    ranks,
                )
            )
        cum = np.cumsum(counts[: self.n_buckets])
        at = np.searchsorted(cum, ranks, side="right")
        below = np.where(at > 0, cum[np.maximum(at - 1, 0)], 0)
        located = zip(at.tolist(), below.tolist(), strict=True)
        inside: dict[int, np.ndarray] = {}
        out: list[float] = []
        for r, (b, below) in zip(ranks, located, strict=True):
            if b % 2:
                out.append(float(self.unique[b // 2]))
                continue
            if b not in inside:
                inside[b] = np.sort(values[buckets == b])
            out.append(float(inside[b][r - below]))
        return out


def buckets_numpy(unique: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:meth:`RankBuckets.buckets` in numpy: the fallback and the reference of the kernel."""
    k = unique.size
    idx = np.searchsorted(unique, values, side="left")
    hit = idx < k
    equal = np.zeros(values.shape, dtype=bool)
    equal[hit] = unique[idx[hit]] == values[hit]
    out = 2 * idx + equal
    out[np.isnan(values)] = 2 * k + 1
    return out.astype(np.int64, copy=False)


def ks_from_counts(counts: np.ndarray, rb: RankBuckets) -> float:
    """:meth:`RankBuckets.ks` in numpy: one pass over the prefix sums of the counts."""
    present = np.asarray(counts[: rb.n_buckets])
    cum = np.cumsum(present)
    n = int(cum[-1])
    le = cum[1::2] / n  # A_j / n
    lt = cum[0:-1:2] / n  # B_j / n
    d = max(
        float(np.max(np.abs(le - rb.ref_le_frac))),
        float(np.max(np.abs(lt - rb.ref_lt_frac))),
    )
    return d


def counted_buckets(detectors: list[Any]) -> RankBuckets | None:
    """The rank buckets every window test of one column can be evaluated from, if any.

    A column is counted when each of its detectors either offers
    ``evaluate_counts`` over rank buckets equal to the others' or does not read
    the window at all (stream detectors, ``reads_window = False``); otherwise
    the column keeps the sorted path.
    """
    shared: RankBuckets | None = None
    for d in detectors:
        if not getattr(d, "reads_window", True):
            continue
        rb = getattr(d, "rank_buckets", None)
        if rb is None or not hasattr(d, "evaluate_counts"):
            return None
        if shared is None:
            shared = rb
        elif not shared.same_as(rb):
            return None
    return shared


class RankWindow:
    """The rank buckets of a sliding window's numeric values, in the window's ring layout.

    Each value is mapped once, after it entered the window: :meth:`sync` maps
    the rows appended since the previous call (their ring positions follow from
    the window's head and total), so an evaluation maps one step of rows, not
    the window. A window restored or replaced under it (its total or head do not
    follow on) is mapped again in full. Nothing here is saved in a checkpoint:
    it is derived from the window and the reference.
    """

    def __init__(self, columns: list[RankBuckets | None]) -> None:
        self.columns = columns
        self._counted = [j for j, rb in enumerate(columns) if rb is not None]
        self._ring: np.ndarray | None = None  # (counted columns, capacity) int32
        self._head = 0
        self._size = 0
        self._total = -1
        self._last: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def complete(self) -> bool:
        """True when every column is counted: no evaluation needs a sorted window."""
        return len(self._counted) == len(self.columns)

    def sync(self, values: np.ndarray, head: int, capacity: int, total: int) -> None:
        """Catch up with a window of ``capacity`` rows whose filled numeric ring is ``values``
        (columns, rows), next row written at ``head``, ``total`` rows ever appended."""
        size = values.shape[1]
        new = total - self._total
        follows = (
            self._ring is not None
            and self._ring.shape[1] == capacity
            and 0 <= new < capacity
            and (self._head + new) % capacity == head
            and min(capacity, self._size + new) == size
        )
        if not follows:
            self._ring = np.empty((len(self._counted), capacity), dtype=np.int32)
            pos = np.arange(size)
        else:
            pos = (self._head + np.arange(new)) % capacity
        assert self._ring is not None
        if pos.size:
            for row, j in enumerate(self._counted):
                rb = self.columns[j]
                assert rb is not None
                self._ring[row, pos] = rb.buckets(values[j, pos])
        self._head, self._size, self._total = head, size, total

    def counts(self, mask: np.ndarray | None = None) -> list[np.ndarray | None]:
        """Bucket counts per column (None where not counted), of the rows in ``mask``.

        :meth:`order_statistics` reads the rows counted last.
        """
        out: list[np.ndarray | None] = [None] * len(self.columns)
        self._last: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if self._ring is None:
            return out
        for row, j in enumerate(self._counted):
            rb = self.columns[j]
            assert rb is not None
            b = self._ring[row, : self._size]
            if mask is not None:
                b = b[mask]
            out[j] = c = np.bincount(b, minlength=rb.n_buckets + 1)
            self._last[j] = (b, c)
        return out

    def order_statistics(self, j: int, values: np.ndarray, ranks: list[int]) -> list[float] | None:
        """Column ``j``'s values at ``ranks`` among its present values, from the rows
        counted last (``values``: those rows, missing ones included), or None if the
        column is not counted."""
        last = self._last.get(j)
        rb = self.columns[j]
        if last is None or rb is None:
            return None
        return rb.order_statistics(last[1], last[0], values, ranks)
