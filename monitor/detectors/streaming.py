"""Stream detectors (ADWIN, Page-Hinkley): the one adapter around river.

river's detectors consume one value at a time and raise ``drift_detected`` for
a single update; the monitor evaluates on a cadence (every N events), which
would miss that flag. :class:`StreamDetector` therefore *latches*: every
detection inside :meth:`~StreamDetector.update` is counted, with the stream
index of the last one, and :meth:`~StreamDetector.evaluate` reports and clears
the latch. river's API has changed across versions (``update`` vs
``add_element``, ``drift_detected`` vs ``change_detected``), so every river
import of the service lives in this module.

Result semantics (both detectors):

* ``statistic`` = number of changes detected since the previous evaluation;
* ``threshold`` = 1 (one change is drift); ``p_value`` = None;
* ``severity`` = "warning" for one change, "critical" for two or more in the
  same period (the stream moved more than once: a large or still-moving shift);
* ``details``: ``last_change_index`` (0-based position, counted over every value
  given to :meth:`update` since :meth:`fit`; -1 if none), ``values_seen``, and
  for ADWIN ``estimation`` (current window mean) and ``shift`` (ADWIN's mean
  after minus before the last change).

``fit(reference)`` resets the river detector and *warms it up on the
reference*, then clears the latch: the first live values are then compared with
the reference distribution, as the window tests are, instead of with whatever
arrives first. The ``window`` argument of ``evaluate`` is ignored: stream
detectors see data only through ``update``.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> d = ADWINDetector()
>>> d.fit(rng.normal(size=2_000))
>>> d.update(rng.normal(size=1_000))
>>> d.evaluate(np.empty(0)).drifted
False
>>> d.update(rng.normal(loc=2.0, size=1_000))
>>> r = d.evaluate(np.empty(0))
>>> r.drifted, int(r.details["last_change_index"]) < 1_100
(True, True)
"""

from __future__ import annotations

from itertools import compress, count
from typing import Any, ClassVar

import numpy as np
from river import drift as river_drift

from monitor.detectors.base import DetectorResult, as_numeric, not_fitted
from monitor.errors import DetectorError


class StreamDetector:
    """Latching adapter shared by the river detectors; subclasses build the river object."""

    name: ClassVar[str] = "stream"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self) -> None:
        self._river: Any = None
        self._changes = 0
        self._last_change = -1
        self._shift = 0.0
        self._seen = 0
        self._since_cut_sum = 0.0
        self._since_cut_n = 0

    def _build(self) -> Any:
        raise NotImplementedError

    def fit(self, reference: np.ndarray) -> None:
        """Reset, warm up on the reference in a seeded random order, and clear the latch.

        References arrive *sorted* (profiles keep order statistics): fed in that
        order, a change detector sees a steadily rising mean, cuts its window
        during warm-up and is left holding only the largest reference values, so
        the first live values look like a change. A seeded shuffle restores the
        exchangeable order a stationary stream has.
        """
        ref = as_numeric(reference, "reference")
        ref = np.random.default_rng(self._seed()).permutation(ref)
        self._river = self._build()
        for value in ref.tolist():
            self._river.update(value)
        self._changes, self._last_change, self._shift, self._seen = 0, -1, 0.0, 0
        self._since_cut_sum = float(ref.sum())
        self._since_cut_n = int(ref.size)

    def _seed(self) -> int:
        return 0

    def update(self, values: np.ndarray) -> None:
        """Feed values to river in order; latch every detection.

        This loop runs once per value and per numeric feature, so it does no
        more Python per value than river needs: anything else (the shift of a
        change) is computed with numpy, and only when a change is detected.
        """
        if self._river is None:
            raise not_fitted(self.name)
        arr = as_numeric(values, "values")
        det = self._river
        update = det.update
        base = self._seen
        segment = 0  # start of the values not yet added to the since-cut sums
        for i, value in enumerate(arr.tolist()):
            update(value)
            if det.drift_detected:
                segment = self._latch(arr, segment, i, base)
        self._close_batch(arr, segment, base)

    def _latch(self, arr: np.ndarray, segment: int, i: int, base: int) -> int:
        """Record a change at value ``i`` of ``arr``; returns where the next segment starts."""
        self._since_cut_sum += float(arr[segment : i + 1].sum())
        self._since_cut_n += i + 1 - segment
        self._changes += 1
        self._last_change = base + i
        self._on_change()
        return i + 1

    def _close_batch(self, arr: np.ndarray, segment: int, base: int) -> None:
        self._since_cut_sum += float(arr[segment:].sum())
        self._since_cut_n += int(arr.size) - segment
        self._seen = base + int(arr.size)

    def _on_change(self) -> None:
        """Run right after river reports a change; the since-cut sums include its value."""
        self._since_cut_sum, self._since_cut_n = 0.0, 0

    def _estimation(self) -> float:
        return 0.0

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """Report the changes latched since the previous evaluation, then clear them."""
        if self._river is None:
            raise not_fitted(self.name)
        changes = self._changes
        severity = "critical" if changes >= 2 else "warning" if changes == 1 else "ok"
        result = DetectorResult(
            detector=self.name,
            statistic=float(changes),
            p_value=None,
            threshold=1.0,
            drifted=changes > 0,
            severity=severity,
            details=self._details(),
        )
        self._changes, self._last_change, self._shift = 0, -1, 0.0
        return result

    def _details(self) -> dict[str, float]:
        return {"last_change_index": float(self._last_change), "values_seen": float(self._seen)}


class ADWINDetector(StreamDetector):
    """ADWIN (Bifet and Gavalda, 2007): an adaptive window that drops its old part on a change.

    Parameters are river's ``ADWIN`` ones: ``delta`` the confidence (smaller =
    fewer false alarms, slower detection), ``clock`` how often (in values) the
    cut test runs, ``min_window_length`` the smallest sub-window tested,
    ``grace_period`` values seen before any test. ``seed`` fixes the order in
    which the (sorted) reference warms the detector up (see :meth:`fit`).
    """

    name: ClassVar[str] = "adwin"

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        min_window_length: int = 5,
        grace_period: int = 10,
        seed: int = 0,
    ) -> None:
        if not 0 < delta < 1:
            raise DetectorError(f"adwin: delta must be in (0, 1), got {delta!r}")
        for label, value, low in (
            ("clock", clock, 1),
            ("min_window_length", min_window_length, 1),
            ("grace_period", grace_period, 0),
            ("seed", seed, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise DetectorError(f"adwin: {label} must be an integer >= {low}, got {value!r}")
        super().__init__()
        self.delta = delta
        self.clock = clock
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.seed = seed

    def _seed(self) -> int:
        return self.seed

    def update(self, values: np.ndarray) -> None:
        """Feed values in order, latching detections, through river's compiled core.

        river's ``ADWIN.update`` is a Python wrapper around a Rust helper whose
        ``update`` returns whether the value caused a change; calling the helper
        directly halves the per-value cost, which is paid per value and per
        monitored feature. river resets the whole window on the update *after* a
        detection; this loop does the same. If a river release renames the
        helper, the generic path of :class:`StreamDetector` takes over.
        """
        det = self._river
        if det is None:
            raise not_fitted(self.name)
        if not hasattr(det, "_helper") or not hasattr(det, "_drift_detected"):
            super().update(values)
            return
        arr = as_numeric(values, "values")
        if det._drift_detected:  # river's own deferred reset after a detection
            det._reset()
        values_list = arr.tolist()
        base, segment, last, start = self._seen, 0, arr.size - 1, 0
        while start <= last:
            # Feed values until the first one that reports a change, iterating in C:
            # compress() pulls from map() one value at a time and stops at that value.
            changed = compress(count(start), map(det._helper.update, values_list[start:]))
            i = next(changed, None)
            if i is None:
                break
            segment = self._latch(arr, segment, i, base)
            if i < last:
                det._reset()
                start = i + 1
            else:
                det._drift_detected = True  # reset on the next value, as river does
                break
        self._close_batch(arr, segment, base)

    def _on_change(self) -> None:
        """``shift`` = mean of the window ADWIN kept minus mean of the part it dropped.

        ADWIN only ever shrinks its window at a cut, so the window just before
        the cut is every value since the previous cut (the since-cut sums).
        """
        kept_n = int(self._river.width)
        kept_sum = float(self._river.estimation) * kept_n
        dropped_n = self._since_cut_n - kept_n
        if dropped_n > 0:
            self._shift = kept_sum / max(kept_n, 1) - (self._since_cut_sum - kept_sum) / dropped_n
        self._since_cut_sum, self._since_cut_n = kept_sum, kept_n

    def _build(self) -> Any:
        return river_drift.ADWIN(
            delta=self.delta,
            clock=self.clock,
            min_window_length=self.min_window_length,
            grace_period=self.grace_period,
        )

    def _estimation(self) -> float:
        return float(self._river.estimation)

    def _details(self) -> dict[str, float]:
        details = super()._details()
        details["estimation"] = self._estimation()
        details["shift"] = self._shift
        return details


class PageHinkleyDetector(StreamDetector):
    """Page-Hinkley: a cumulative-sum test for a change in the mean.

    Parameters are river's ``PageHinkley`` ones: ``min_instances`` before any
    test, ``delta`` the tolerated drift magnitude, ``threshold`` the cumulative
    deviation that signals a change (in the column's units: scale it to the
    feature), ``alpha`` the forgetting factor, ``mode`` "up", "down" or "both".
    """

    name: ClassVar[str] = "page_hinkley"

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 0.9999,
        mode: str = "both",
    ) -> None:
        if (
            not isinstance(min_instances, int)
            or isinstance(min_instances, bool)
            or min_instances < 1
        ):
            raise DetectorError(
                f"page_hinkley: min_instances must be an integer >= 1, got {min_instances!r}"
            )
        if not delta >= 0:
            raise DetectorError(f"page_hinkley: delta must be >= 0, got {delta!r}")
        if not threshold > 0:
            raise DetectorError(f"page_hinkley: threshold must be > 0, got {threshold!r}")
        if not 0 < alpha <= 1:
            raise DetectorError(f"page_hinkley: alpha must be in (0, 1], got {alpha!r}")
        if mode not in ("up", "down", "both"):
            raise DetectorError(f"page_hinkley: mode must be 'up', 'down' or 'both', got {mode!r}")
        super().__init__()
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode

    def _build(self) -> Any:
        return river_drift.PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.mode,
        )
