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
  for ADWIN ``estimation`` (current window mean) and, value by value only
  (``block = 1``), ``shift`` (ADWIN's mean after minus before the last change;
  see :class:`ADWINDetector` on ``block``, which sums values before river sees
  them, and why ``shift`` is then left out).

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

import math
from functools import reduce
from itertools import compress, count
from operator import add
from typing import Any, ClassVar

import numpy as np
import river
from river import drift as river_drift

from monitor.detectors.base import DetectorResult, as_numeric, not_fitted
from monitor.errors import DetectorError
from monitor.state_format import StreamDetectorState, pack_array, unpack_array

# Names the saved engine state of this river build; another build's is never read.
ENGINE = f"river-{river.__version__}"


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
        inputs = self._reference_inputs(ref)
        self._river = self._build()
        for value in inputs.tolist():
            self._river.update(value)
        self._changes, self._last_change, self._shift, self._seen = 0, -1, 0.0, 0
        self._since_cut_sum = float(inputs.sum())
        self._since_cut_n = int(inputs.size)

    def _seed(self) -> int:
        return 0

    def _reference_inputs(self, ref: np.ndarray) -> np.ndarray:
        """What the river detector is warmed up on: the (shuffled) reference values."""
        return ref

    def _inputs(self, arr: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(river inputs, value index of the last value of input 0, values per input).

        Every value is one input here; a subclass may summarise values first (see
        :class:`ADWINDetector` ``block``). Indices are counted in values since fit.
        """
        return arr, self._seen, 1

    def update(self, values: np.ndarray) -> None:
        """Feed values to river in order; latch every detection.

        This loop runs once per input and per numeric feature, so it does no
        more Python per input than river needs: anything else (the shift of a
        change) is computed with numpy, and only when a change is detected.
        """
        if self._river is None:
            raise not_fitted(self.name)
        arr = _finite_values(values)
        inputs, first_end, stride = self._inputs(arr)
        det = self._river
        update = det.update
        segment = 0  # start of the inputs not yet added to the since-cut sums
        for i, value in enumerate(inputs.tolist()):
            update(value)
            if det.drift_detected:
                segment = self._latch(inputs, segment, i, first_end + i * stride)
        self._close_batch(inputs, segment, int(arr.size))

    def _latch(self, inputs: np.ndarray, segment: int, i: int, index: int) -> int:
        """Record a change at input ``i`` (value ``index``); returns the next segment's start."""
        self._since_cut_sum = self._accumulate(self._since_cut_sum, inputs, segment, i + 1)
        self._since_cut_n += i + 1 - segment
        self._changes += 1
        self._last_change = index
        self._on_change()
        return i + 1

    def _close_batch(self, inputs: np.ndarray, segment: int, n_values: int) -> None:
        self._since_cut_sum = self._accumulate(self._since_cut_sum, inputs, segment, inputs.size)
        self._since_cut_n += int(inputs.size) - segment
        self._seen += n_values

    def _accumulate(self, total: float, inputs: np.ndarray, lo: int, hi: int) -> float:
        """``total`` plus ``inputs[lo:hi]``, as one numpy (pairwise) sum per call."""
        return total + float(inputs[lo:hi].sum())

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

    # -- saved state ------------------------------------------------------------------------
    #
    # A restored detector must detect exactly what the uninterrupted one would have, so
    # its saved state is river's own: river offers no public state export, but its
    # detectors support pickling, and the compiled ADWIN does it by handing its state as
    # bytes (``__getstate__``/``__setstate__``, river's encoding, no pickle involved);
    # Page-Hinkley's state is a few floats. Both are read here only, and only back into
    # the same river version (``ENGINE``); in any other case the detector stays as
    # fitted on the reference and the caller says why.

    def params(self) -> dict[str, float | int | str]:
        """The settings that shape this detector's state (compared at restore)."""
        raise NotImplementedError

    def export_state(self, reference_fingerprint: str | None) -> StreamDetectorState:
        if self._river is None:
            raise not_fitted(self.name)
        return StreamDetectorState(
            name=self.name,
            params=self.params(),
            reference_fingerprint=reference_fingerprint,
            engine=ENGINE,
            engine_state=self._engine_bytes(),
            engine_values=self._engine_values(),
            changes=self._changes,
            last_change=self._last_change,
            shift=self._shift,
            seen=self._seen,
            since_cut_sum=self._since_cut_sum,
            since_cut_n=self._since_cut_n,
            pending=self._pending_values(),
            drift_detected=bool(self._river.drift_detected),
        )

    def restore_state(
        self, state: StreamDetectorState, reference_fingerprint: str | None
    ) -> str | None:
        """Adopt a saved state; None if adopted, else why not (the detector stays as fitted).

        The detector must have been fitted (on the reference) with the configured
        settings first; a state saved with other settings, against another reference
        or by another river build does not describe this detector and is not adopted.
        """
        if state.name != self.name or state.params != self.params():
            return "detector settings changed"
        if state.reference_fingerprint != reference_fingerprint:
            return "reference changed"
        if state.engine != ENGINE:
            return f"saved by {state.engine}, this is {ENGINE}"
        fresh = self._build()
        try:
            self._load_engine(fresh, state)
        except Exception as exc:
            return f"engine state not readable ({type(exc).__name__})"
        except BaseException as exc:  # river's compiled core panics on bytes it cannot read
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            return f"engine state not readable ({type(exc).__name__})"
        self._river = fresh
        self._changes, self._last_change = state.changes, state.last_change
        self._shift, self._seen = state.shift, state.seen
        self._since_cut_sum, self._since_cut_n = state.since_cut_sum, state.since_cut_n
        if state.pending is not None:
            self._set_pending(unpack_array(state.pending).astype(np.float64).reshape(-1))
        return None

    def _engine_bytes(self) -> bytes:
        return b""

    def _engine_values(self) -> dict[str, float]:
        return {}

    def _load_engine(self, fresh: Any, state: StreamDetectorState) -> None:
        raise NotImplementedError

    def _pending_values(self) -> Any:
        return None

    def _set_pending(self, values: np.ndarray) -> None:
        pass


class ADWINDetector(StreamDetector):
    """ADWIN (Bifet and Gavalda, 2007): an adaptive window that drops its old part on a change.

    Parameters are river's ``ADWIN`` ones: ``delta`` the confidence (smaller =
    fewer false alarms, slower detection), ``clock`` how often (in ADWIN inputs)
    the cut test runs, ``min_window_length`` the smallest sub-window tested and
    ``grace_period`` the inputs seen before any test (both in inputs too).
    ``seed`` fixes the order in which the (sorted) reference warms the detector
    up (see :meth:`fit`).

    ``block`` > 1 summarises each run of ``block`` consecutive values into one
    ADWIN input, so river's per-input work (a compiled call, and the cut test
    every ``clock`` inputs), which is nearly all of ADWIN's per-value cost, is
    done ``block`` times less often; the summaries are one numpy reshape per
    update. Values that do not fill a block wait for the next :meth:`update`
    (they are part of the saved state), so results never depend on how a
    stream is split into calls; the partial last block of the shuffled
    reference is left out of the warm-up.

    The input is the block's mean *times* ``block`` (its sum), not the bare mean,
    so that ADWIN's test stays the value-by-value one. ADWIN cuts its window into
    W0 and W1 when ``|mean0 - mean1| > sqrt(2 m var d) + 2/3 d m``, with ``var``
    the variance of the whole window, ``m = 1/n0' + 1/n1'`` (sub-window lengths,
    less ``min_window_length - 1``) and ``d = ln(2 ln(width) / delta)``. Block
    means keep the Hoeffding/Bernstein variance term (they divide ``var`` and the
    lengths alike by ``block``, so ``m var`` is unchanged), but the ``2/3 d m``
    term, which bounds values in [0, 1] and ignores their variance, grows
    ``block``-fold in value units: a more conservative test, the more so the
    smaller the column's scale and the larger the shift. Measured at ``block =
    32``, ``delta = 1e-5`` and a 10,000-value reference, plain means delayed a
    0.25-sigma shift of a sigma-0.5 column from about 670 values to 5,400, and a
    1-sigma shift from 64 to 1,000 (on the detection-quality benchmark: median /
    max 2,000 / 3,000 events instead of 1,000 / 2,000). Scaling by ``block``
    multiplies both sides of the inequality by ``block`` and cancels that
    growth: on a stationary window, which is what decides false alarms, the test
    in value units is the value-by-value one, up to ``d`` (``ln ln`` of a
    shorter width) and ``min_window_length``, which counts blocks.
    ``estimation`` and ``shift`` are divided back, so they stay in value units
    (means of whole blocks are means of values), and ``values_seen`` counts
    values.

    What it costs. (1) A change can only be found at the end of a block, so
    ``last_change_index`` is the index of the last value of the block that
    triggered it, and the window is tested every ``block * clock`` values.
    (2) Once a change is in the window, ``var`` includes it: averaging divides
    the noise by ``block`` but not the shift, so relative to the noise a shift of
    ``k`` sigmas covering a fraction ``p`` of the window weighs ``block`` times
    more, and the threshold grows by ``sqrt(1 + p (1 - p) block k^2)`` instead
    of ``sqrt(1 + p (1 - p) k^2)``: little at detection (``p`` is small in a
    long window), but it makes ADWIN stop cutting early, so the window it keeps after a change
    still holds most of the old data and ``shift`` (kept minus dropped mean) is
    small, with an unreliable sign (about 1 in 10 wrong over 400 detections of
    +-0.25 and +-1 sigma shifts at ``block`` 32 and 64, none at ``block = 1``).
    So with ``block > 1`` the result has no ``shift`` detail: a number with the
    wrong sign one time in ten would mislead whoever reads it (the window's
    summaries give the direction). The performance tracker, which reads the
    sign of ``shift``, uses ``block = 1``.

    The service reports changes at evaluations, every 1000 events, so later
    detection moves a report only when the change fell just before an
    evaluation. On the detection-quality benchmark (BENCHMARKS.md;
    changes at evaluation points, 20 seeds) every delay of ``block = 1`` is kept
    up to ``block = 128``; with changes at random times (300 seeds, 0.25 and 1
    sigma shifts of columns of three scales) ``block = 64`` reports 60-110 events
    later on average (+7-13 %), 32 and 48 within noise of ``block = 1``, 128
    about +20 %. ``block = 1`` is river's ADWIN value by value, exactly as
    before blocks existed.

    >>> rng = np.random.default_rng(3)
    >>> d = ADWINDetector(delta=1e-5, clock=1, min_window_length=1, block=64)
    >>> d.fit(rng.normal(size=10_000))
    >>> d.update(rng.normal(size=5_000))
    >>> d.update(rng.normal(loc=1.0, size=1_000))
    >>> r = d.evaluate(np.empty(0))
    >>> r.drifted, 5_000 <= int(r.details["last_change_index"]) < 5_200
    (True, True)
    >>> (int(r.details["last_change_index"]) + 1) % 64, r.details["values_seen"]
    (0, 6000.0)
    """

    name: ClassVar[str] = "adwin"

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        min_window_length: int = 5,
        grace_period: int = 10,
        seed: int = 0,
        block: int = 1,
    ) -> None:
        if not 0 < delta < 1:
            raise DetectorError(f"adwin: delta must be in (0, 1), got {delta!r}")
        for label, value, low in (
            ("clock", clock, 1),
            ("min_window_length", min_window_length, 1),
            ("grace_period", grace_period, 0),
            ("seed", seed, 0),
            ("block", block, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise DetectorError(f"adwin: {label} must be an integer >= {low}, got {value!r}")
        super().__init__()
        self.delta = delta
        self.clock = clock
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.seed = seed
        self.block = block
        self._pending = np.empty(0)  # values of the block not yet complete

    def _seed(self) -> int:
        return self.seed

    def fit(self, reference: np.ndarray) -> None:
        """Warm up as :meth:`StreamDetector.fit` does (on block sums), and empty the open block."""
        super().fit(reference)
        self._pending = np.empty(0)

    def _reference_inputs(self, ref: np.ndarray) -> np.ndarray:
        return _block_sums(ref, self.block)

    def _inputs(self, arr: np.ndarray) -> tuple[np.ndarray, int, int]:
        """Block sums of the values carried over plus ``arr``; keeps the new partial block."""
        b = self.block
        if b == 1:
            return arr, self._seen, 1
        pending = self._pending
        full = np.concatenate((pending, arr)) if pending.size else arr
        whole = full.size - full.size % b
        self._pending = full[whole:].copy()
        # full[0] is value number seen - pending.size; block 0 ends b - 1 values later
        return _block_sums(full[:whole], b), self._seen - pending.size + b - 1, b

    def _accumulate(self, total: float, inputs: np.ndarray, lo: int, hi: int) -> float:
        """With blocks, add one input at a time, so the sum never depends on the batching.

        How whole blocks fall into calls depends on the batching, and a per-call
        numpy sum would round differently for each split; strictly sequential
        addition does not, and there are only ``1 / block`` inputs per value.
        ``block = 1`` keeps the numpy sum, as it always did.
        """
        if self.block == 1:
            return super()._accumulate(total, inputs, lo, hi)
        return reduce(add, inputs[lo:hi].tolist(), total)

    def update(self, values: np.ndarray) -> None:
        """Feed values (or block sums) in order, latching changes, through river's compiled core.

        river's ``ADWIN.update`` is a Python wrapper around a Rust helper whose
        ``update`` returns whether the value caused a change; calling the helper
        directly halves the per-input cost, which is paid per input and per
        monitored feature. river resets the whole window on the update *after* a
        detection; this loop does the same, on the next *input* (a call that
        only fills the open block does not reset, so splitting a stream across
        calls never changes ``estimation``). If a river release renames the
        helper, the generic path of :class:`StreamDetector` takes over.
        """
        det = self._river
        if det is None:
            raise not_fitted(self.name)
        if not hasattr(det, "_helper") or not hasattr(det, "_drift_detected"):
            super().update(values)
            return
        arr = _finite_values(values)
        inputs, first_end, stride = self._inputs(arr)
        if inputs.size and det._drift_detected:  # river's own deferred reset after a detection
            det._reset()
        values_list = inputs.tolist()
        segment, last, start = 0, inputs.size - 1, 0
        while start <= last:
            # Feed inputs until the first one that reports a change, iterating in C:
            # compress() pulls from map() one input at a time and stops at that input.
            changed = compress(count(start), map(det._helper.update, values_list[start:]))
            i = next(changed, None)
            if i is None:
                break
            segment = self._latch(inputs, segment, i, first_end + i * stride)
            if i < last:
                det._reset()
                start = i + 1
            else:
                det._drift_detected = True  # reset on the next input, as river does
                break
        self._close_batch(inputs, segment, int(arr.size))

    def _on_change(self) -> None:
        """``shift`` = mean of the window ADWIN kept minus mean of the part it dropped.

        ADWIN only ever shrinks its window at a cut, so the window just before
        the cut is every input since the previous cut (the since-cut sums).
        Inputs are block sums, so input means are ``block`` times value means.
        """
        kept_n = int(self._river.width)
        kept_sum = float(self._river.estimation) * kept_n
        dropped_n = self._since_cut_n - kept_n
        if dropped_n > 0:
            dropped_mean = (self._since_cut_sum - kept_sum) / dropped_n
            self._shift = (kept_sum / max(kept_n, 1) - dropped_mean) / self.block
        self._since_cut_sum, self._since_cut_n = kept_sum, kept_n

    def params(self) -> dict[str, float | int | str]:
        return {
            "delta": self.delta,
            "clock": self.clock,
            "min_window_length": self.min_window_length,
            "grace_period": self.grace_period,
            "seed": self.seed,
            "block": self.block,
        }

    def _engine_bytes(self) -> bytes:
        helper = getattr(self._river, "_helper", None)
        if helper is None or not hasattr(helper, "__getstate__"):
            raise DetectorError(f"adwin: {ENGINE} does not expose its state; cannot save it")
        return bytes(helper.__getstate__())

    def _load_engine(self, fresh: Any, state: StreamDetectorState) -> None:
        fresh._helper.__setstate__(state.engine_state)
        fresh._drift_detected = state.drift_detected

    def _pending_values(self) -> Any:
        return pack_array(self._pending)

    def _set_pending(self, values: np.ndarray) -> None:
        if values.size >= self.block:
            raise DetectorError("adwin: saved open block is longer than a block")
        self._pending = values

    def _build(self) -> Any:
        return river_drift.ADWIN(
            delta=self.delta,
            clock=self.clock,
            min_window_length=self.min_window_length,
            grace_period=self.grace_period,
        )

    def _estimation(self) -> float:
        return float(self._river.estimation) / self.block

    def _details(self) -> dict[str, float]:
        details = super()._details()
        details["estimation"] = self._estimation()
        if self.block == 1:  # see the class docstring: unreliable when blocks are summed
            details["shift"] = self._shift
        return details


def _finite_values(values: np.ndarray) -> np.ndarray:
    """:func:`as_numeric` for the hot path: one sum decides, in the usual case.

    A sum is finite only if every term is (NaN and infinities propagate), so a
    finite sum proves the array valid for about a third of the cost of testing
    each value; anything else goes through the full check, which raises the
    usual error (or accepts finite values so large that their sum overflowed).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and math.isfinite(np.add.reduce(arr)):
        return arr
    return as_numeric(arr, "values")


def _block_sums(values: np.ndarray, block: int) -> np.ndarray:
    """Sums of the whole runs of ``block`` consecutive values (a partial last run is dropped).

    Each row of the reshape is summed on its own, so a block's sum does not
    depend on which other blocks share the call: batching invariance rests on it.
    """
    if block == 1:
        return values
    whole = values.size - values.size % block
    return np.add.reduce(values[:whole].reshape(-1, block), axis=1)


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

    def params(self) -> dict[str, float | int | str]:
        return {
            "min_instances": self.min_instances,
            "delta": self.delta,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "mode": self.mode,
        }

    _ENGINE_FLOATS = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease")

    def _engine_values(self) -> dict[str, float]:
        det = self._river
        out = {name: float(getattr(det, name)) for name in self._ENGINE_FLOATS}
        out["mean_n"] = float(det._x_mean.n)
        out["mean"] = float(det._x_mean.get())
        return out

    def _load_engine(self, fresh: Any, state: StreamDetectorState) -> None:
        values = state.engine_values
        for name in self._ENGINE_FLOATS:
            setattr(fresh, name, float(values[name]))
        fresh._x_mean.n = float(values["mean_n"])
        fresh._x_mean._mean = float(values["mean"])
        fresh._drift_detected = state.drift_detected

    def _build(self) -> Any:
        return river_drift.PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.mode,
        )
