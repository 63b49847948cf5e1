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

import numpy as np

MISSING_CODE = -1


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
        self._layout = "columns"  # see __setstate__
        self._head = 0  # next row to write
        self.size = 0  # rows filled
        self.total = 0  # rows ever appended

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

    def categorical(self) -> np.ndarray:
        return self._cat if self.size == self.capacity else self._cat[: self.size]

    def timestamps(self) -> np.ndarray:
        return self._ts if self.size == self.capacity else self._ts[: self.size]

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickled window; checkpoints written before the column-major layout
        (no ``_layout`` key) stored the numeric buffer as (capacity, columns)."""
        if "_layout" not in state:
            state["_num"] = np.ascontiguousarray(np.asarray(state["_num"]).T)
        state["_layout"] = "columns"
        self.__dict__.update(state)

    @property
    def nbytes(self) -> int:
        return self._num.nbytes + self._cat.nbytes + self._ts.nbytes
