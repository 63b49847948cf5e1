"""Sliding windows over a model's recent events, as column matrices.

A window keeps the last ``capacity`` events of one model in ring buffers: one
``float64`` matrix for the numeric columns (NaN = missing; stored one column
per row of memory, so that sorting a column, which every evaluation does,
walks contiguous memory), one ``int32``
matrix of category codes for the categorical columns (-1 = missing), and the
event times. A batch is written with one vectorised assignment per matrix, never
per event. Row order inside the buffers is not chronological; statistics and
window tests do not need it.

>>> import numpy as np
>>> w = SlidingWindow(n_numeric=1, n_categorical=0, capacity=3)
>>> w.append(np.array([[1.0], [2.0], [3.0], [4.0]]), np.empty((4, 0), np.int32), np.arange(4.0))
>>> sorted(w.numeric()[:, 0].tolist()), w.size, w.total
([2.0, 3.0, 4.0], 3, 4)
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from monitor.state_format import StateFormatError, WindowState, pack_array, unpack_array

MISSING_CODE = -1

#: Window generations: a new one per window and per restore, never reused in a process, so
#: that a mark of one window (or of one window before a restore) never passes for another's.
_GENERATIONS = itertools.count(1)


class WindowMark(NamedTuple):
    """Where a window stood (:meth:`SlidingWindow.mark`): its generation and rows appended."""

    generation: int
    total: int


class SlidingWindow:
    """Ring buffers of the last ``capacity`` events (numeric, categorical, time)."""

    def __init__(self, n_numeric: int, n_categorical: int, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self.capacity = capacity
        # Column-major: (columns, capacity); numeric() hands out the (rows, columns) view.
        self._num = np.full((n_numeric, capacity), np.nan, dtype=np.float64)
        self._cat = np.full((capacity, n_categorical), MISSING_CODE, dtype=np.int32)
        self._ts = np.zeros(capacity, dtype=np.float64)
        self._head = 0  # next row to write
        self.size = 0  # rows filled
        self.total = 0  # rows ever appended
        # Changes whenever the buffers change other than by append (restore): see mark().
        self.generation = next(_GENERATIONS)

    def append(self, numeric: np.ndarray, categorical: np.ndarray, timestamps: np.ndarray) -> None:
        n = len(timestamps)
        if n == 0:
            return
        if n >= self.capacity:
            # Only the newest `capacity` rows survive; write them in order starting at 0.
            self._num[:] = numeric[-self.capacity :].T
            self._cat[:] = categorical[-self.capacity :]
            self._ts[:] = timestamps[-self.capacity :]
            self._head = 0
        else:
            end = self._head + n
            if end <= self.capacity:
                self._num[:, self._head : end] = numeric.T
                self._cat[self._head : end] = categorical
                self._ts[self._head : end] = timestamps
            else:
                first = self.capacity - self._head
                self._num[:, self._head :] = numeric[:first].T
                self._num[:, : n - first] = numeric[first:].T
                self._cat[self._head :] = categorical[:first]
                self._cat[: n - first] = categorical[first:]
                self._ts[self._head :] = timestamps[:first]
                self._ts[: n - first] = timestamps[first:]
            self._head = end % self.capacity
        self.size = min(self.capacity, self.size + n)
        self.total += n

    def numeric(self) -> np.ndarray:
        """The filled numeric rows, shape (rows, columns) (a view; do not modify)."""
        return self._num.T if self.size == self.capacity else self._num[:, : self.size].T

    def mark(self) -> WindowMark:
        """The window as it stands, for :meth:`written_since` later."""
        return WindowMark(self.generation, self.total)

    def written_since(self, mark: WindowMark | None) -> np.ndarray | None:
        """Rows of :meth:`numeric` (storage slots) that may differ from what they held at
        ``mark``, or None when that is unknown: no mark, another window's or generation's
        (a restore since), or every row rewritten since.

        Why: a window test whose result is per row (the PCA errors) recomputes only these
        rows instead of keeping a copy of the window to compare with. Appends write the
        slots before ``_head`` in ring order, so the ``n`` rows appended since the mark are
        the ``n`` slots before the head, as long as ``n`` is below the capacity (an append
        of ``capacity`` rows or more rewrites the ring from slot 0). While the ring fills,
        storage slots are the rows of :meth:`numeric`, the new ones past the old size.
        """
        if mark is None or mark.generation != self.generation or mark.total > self.total:
            return None
        n = self.total - mark.total
        if n >= self.capacity:
            return None
        return (np.arange(self._head - n, self._head, dtype=np.intp)) % self.capacity

    def categorical(self) -> np.ndarray:
        return self._cat if self.size == self.capacity else self._cat[: self.size]

    def timestamps(self) -> np.ndarray:
        return self._ts if self.size == self.capacity else self._ts[: self.size]

    def clamp_times(self, latest: float, fallback: float) -> int:
        """Give the rows timed beyond ``latest`` the newest time at or before it (``fallback``
        when there is none); return how many there were.

        For a state checkpointed before event times were bounded (see
        :meth:`monitor.cadence.Cadence.forget_future`): such a row would be every
        evaluation's window end, and in a time window it would never leave the span.
        Its values stay (only the time was wrong), as the newest plausible time, the
        rule for an event without a time of its own.
        """
        ts = self.timestamps()  # a view of the ring
        over = ts > latest
        n = int(over.sum())
        if n:
            rest = ts[~over]
            ts[over] = float(rest.max()) if rest.size else fallback
            self.generation = next(_GENERATIONS)
        return n

    def export_state(self) -> WindowState:
        """The filled part of the ring buffers, as laid out (so a restore is bit-identical)."""
        return WindowState(
            capacity=self.capacity,
            head=self._head,
            size=self.size,
            total=self.total,
            numeric=pack_array(self._num[:, : self.size]),
            categorical=pack_array(self._cat[: self.size]),
            timestamps=pack_array(self._ts[: self.size]),
        )

    def restore_state(
        self, state: WindowState, numeric: np.ndarray, categorical: np.ndarray
    ) -> None:
        """Adopt a saved window whose columns were already mapped to this window's.

        ``numeric`` is (numeric columns, rows) and ``categorical`` (rows, categorical
        columns), both in the saved layout. With the same capacity the buffers are
        restored as they were (the same rows leave first, the same sums are taken).
        With another capacity the rows are put in event order, oldest first: a
        larger window keeps them all, a smaller one keeps the newest ``capacity``.
        """
        ts = unpack_array(state.timestamps)
        size = len(ts)
        if not (0 <= state.head < max(state.capacity, 1) and size == state.size):
            raise StateFormatError("corrupt", "window head or size out of range")
        if numeric.shape != (self._num.shape[0], size) or categorical.shape != (
            size,
            self._cat.shape[1],
        ):
            raise StateFormatError("corrupt", "window buffers of the wrong shape")
        self.generation = next(_GENERATIONS)  # every row may have changed: no mark holds
        self.total = state.total
        if state.capacity == self.capacity:
            self._num[:, :size] = numeric
            self._cat[:size] = categorical
            self._ts[:size] = ts
            self._head, self.size = state.head, size
            return
        # Event order: a full ring starts at its head (the oldest row); a partial one at 0.
        order = np.roll(np.arange(size), -state.head) if size == state.capacity else None
        if order is not None:
            numeric, categorical, ts = numeric[:, order], categorical[order], ts[order]
        keep = min(size, self.capacity)
        self._num[:, :keep] = numeric[:, size - keep :]
        self._cat[:keep] = categorical[size - keep :]
        self._ts[:keep] = ts[size - keep :]
        self.size = keep
        self._head = keep % self.capacity

    @property
    def nbytes(self) -> int:
        return self._num.nbytes + self._cat.nbytes + self._ts.nbytes
