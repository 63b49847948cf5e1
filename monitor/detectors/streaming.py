"""Stream detectors (ADWIN, Page-Hinkley): the one adapter around river.

river's detectors consume one value at a time and raise ``drift_detected`` for
a single update; the monitor evaluates on a cadence (every N events), which
would miss that flag. :class:`StreamDetector` therefore *latches*: every
detection inside :meth:`~StreamDetector.update` is counted, with the stream
index of the last one, and :meth:`~StreamDetector.evaluate` reports and clears
the latch. river's API has changed across versions (``update`` vs
``add_element``, ``drift_detected`` vs ``change_detected``), so every river
import of the service lives in this module and in
:mod:`monitor.detectors.river_private`, the one place that uses river's private
names (for ADWIN's speed), behind a version check. ``river.drift`` itself is
imported only where a river detector is built (``_build``): that package loads
``river.drift.datasets`` and through it scikit-learn and pandas (about 1.5 s
and 150 MB at every start), which a command or a model that runs no stream
detector has no use for. ``tests/test_startup.py`` checks it.

Result semantics (both detectors):

* ``statistic`` = number of changes detected since the previous evaluation
  (with ``away_only``: those that moved the stream away from the reference);
* ``threshold`` = 1 (one change is drift); ``p_value`` = None;
* ``severity`` = "warning" for one change, "critical" for two or more in the
  same period (the stream moved more than once: a large or still-moving shift);
* ``details``: ``last_change_index`` (0-based position, counted over every value
  given to :meth:`update` since :meth:`fit`; -1 if none), ``values_seen``, and
  for ADWIN ``estimation`` (current window mean) and, value by value only
  (``block = 1``), ``shift`` (ADWIN's mean after minus before the last change;
  see :class:`ADWINDetector` on ``block``, which sums values before river sees
  them, and why ``shift`` is then left out).

Direction (``away_only``, on for ADWIN in the service's config)
----------------------------------------------------------------

A change detector also finds the *end* of a drift: the return to the reference
is a change of the mean like any other. It is not drift, and it must not open
an incident. With ``away_only`` a change counts as drift only when the values
from it on sit away from the reference's mean: ``|z| >= AWAY_Z`` (4), with
``z = (mean_after - mean_ref) / (sd_ref * sqrt(1/n_after + 1/n_ref))`` over the
values from the change's own input on. Until that holds the change stays latched
(``details["pending_changes"]``, reported at a later evaluation if it comes);
if it still does not hold after ``DECIDE_VALUES`` (5,000) values, the change was
a return to the reference and is dropped (``details["returned_changes"]``). Why
this rule, in numbers (ADWIN at the service's defaults, 10,000-value reference,
window 5000, step 1000):

* the window tests cannot tell an onset from a return: when ADWIN finds a 0.25
  sd shift, 400-600 values in, the shifted values are a tenth of the window and
  KS gives p ~ 0.7, PSI ~ 0.005, the same as at a return (p 0.64-0.96, PSI
  0.002 where ADWIN re-paged). "Only with the window tests" would give up the
  step of lead ADWIN has over KS on small shifts;
* ADWIN's own cut cannot tell them either once it reads block sums: the window
  it keeps still holds mostly old data (see ``block`` below), and over 1,700
  changes (+-0.15 to 1 sd, 40 seeds) "kept mean further from the reference than
  dropped mean" called 28 % of onsets a return and 92 % of returns a move away;
* the values after the change can: river restarts its window on a change, so
  after a return they are fresh draws of the reference distribution, ``z`` is
  standard normal, and ``|z| >= 4`` has probability 6e-5 per look (at most six
  looks before ``DECIDE_VALUES``: under 4e-4 per return, where ADWIN itself only
  flags a return in some runs). After an onset of ``k`` sd, ``z ~ k sqrt(n)``:
  16 values for 1 sd, 64 for 0.5 sd, 256 for 0.25 sd, so the change is reported
  at the evaluation that follows it unless it was found in that step's last few
  blocks (then one step later).

Without a reference (the performance tracker's error stream), or with
``away_only`` off, every change counts, as it always did.

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
from operator import add
from typing import Any, ClassVar

import numpy as np
import river

from monitor.detectors import river_private
from monitor.detectors.base import DetectorBase, DetectorResult, as_numeric, not_fitted
from monitor.errors import DetectorError
from monitor.signals import slot_constructor
from monitor.state_format import StreamDetectorState, pack_array, unpack_array

# Names the saved engine state of this river build; another build's is never read.
ENGINE = f"river-{river.__version__}"

#: A change counts as drift when the mean of the values after it is at least this many
#: standard errors from the reference's mean (see "Direction" in the module docstring).
AWAY_Z = 4.0
#: A change whose values sit within :data:`AWAY_Z` of the reference's mean after this many
#: values is a return to the reference; before, its verdict waits for more values.
DECIDE_VALUES = 5_000
#: The largest magnitude a stream detector takes in: a value beyond it is fed as +-this.
#: river's ADWIN keeps running variances (sums of squares), and one finite value beyond
#: about 1e154 (a sentinel such as 1e308, or a unit bug) made them inf, then NaN: ADWIN
#: never cut its window again, so never saw a later drift, and the checkpoint kept it so.
#: At 1e100 a square summed over ten million values is 1e207, far from overflow, and the
#: value is still an outlier far beyond any measurement (ADWIN cuts at it, as at any
#: outlier, and goes on); the window tests and data validation see the value as it came.
MAX_MAGNITUDE = 1e100
# The ufuncs' reductions themselves: ndarray.max() and min() add two Python layers each.
_MAX, _MIN = np.maximum.reduce, np.minimum.reduce


def load_river() -> None:
    """Import river's detectors now, not in the first ``_build`` (see the module docstring).

    ``monitor run`` calls it at start, off the event loop: the first model is built when
    its first event arrives, on the loop, which about 1.5 s of imports there would stall.
    """
    river_private.fast()


class StreamDetector(DetectorBase):
    """Latching adapter shared by the river detectors; subclasses build the river object."""

    name: ClassVar[str] = "stream"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})
    #: Count a change only when the values after it sit away from the reference's mean
    #: (:meth:`direction`); ADWIN makes it a constructor argument.
    away_only: bool = False

    def __init__(self) -> None:
        self._river: Any = None
        self._changes = 0
        self._last_change = -1
        self._shift = 0.0
        self._seen = 0
        self._since_cut_sum = 0.0
        self._since_cut_n = 0
        # The reference's mean, standard deviation and size (NaN, NaN, 0: no reference, no
        # direction check), and the values since the last latched change (see evaluate).
        self._ref_mean = math.nan
        self._ref_std = math.nan
        self._ref_n = 0
        self._post_sum = 0.0
        self._post_n = 0
        self._post_start = -1  # input index of a change in the current update, else -1

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
        ref = _bounded(as_numeric(reference, "reference"))
        ref = np.random.default_rng(self._seed()).permutation(ref)
        inputs = self._reference_inputs(ref)
        self._river = self._build()
        for value in inputs.tolist():
            self._river.update(value)
        self._changes, self._last_change, self._shift, self._seen = 0, -1, 0.0, 0
        self._since_cut_sum = float(inputs.sum())
        self._since_cut_n = int(inputs.size)
        self._ref_n = int(ref.size)
        self._ref_mean = float(ref.mean()) if ref.size else math.nan
        self._ref_std = float(ref.std(ddof=1)) if ref.size > 1 else math.nan
        self._post_sum, self._post_n, self._post_start = 0.0, 0, -1

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

    def _values_per_input(self) -> int:
        return 1

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
        self._post_start = i
        self._on_change()
        return i + 1

    def _close_batch(self, inputs: np.ndarray, segment: int, n_values: int) -> None:
        self._since_cut_sum = self._accumulate(self._since_cut_sum, inputs, segment, inputs.size)
        self._since_cut_n += int(inputs.size) - segment
        self._seen += n_values
        # The values from the last change on (its own input included), while a change
        # awaits its verdict: what evaluate() compares with the reference.
        if self._post_start >= 0:
            start, self._post_start = self._post_start, -1
            self._post_sum = self._accumulate(0.0, inputs, start, inputs.size)
            self._post_n = (int(inputs.size) - start) * self._values_per_input()
        elif self._changes:
            self._post_sum = self._accumulate(self._post_sum, inputs, 0, inputs.size)
            self._post_n += int(inputs.size) * self._values_per_input()

    def _accumulate(self, total: float, inputs: np.ndarray, lo: int, hi: int) -> float:
        """``total`` plus ``inputs[lo:hi]``, as one numpy (pairwise) sum per call."""
        return total + float(inputs[lo:hi].sum())

    def _on_change(self) -> None:
        """Run right after river reports a change; the since-cut sums include its value."""
        self._since_cut_sum, self._since_cut_n = 0.0, 0

    def _estimation(self) -> float:
        return 0.0

    def direction(self) -> tuple[str, float]:
        """Where the values since the last latched change sit: ("away" | "returned" |
        "pending" | "unchecked", z).

        ``z`` is the two-sample z statistic of their mean against the reference's
        mean, with the reference's standard deviation: "away" when ``|z| >=``
        :data:`AWAY_Z`; "returned" when ``|z|`` is below it after
        :data:`DECIDE_VALUES` values; "pending" before that; "unchecked" without
        a reference of at least two values (every change counts, as it always did).
        """
        if not self.away_only or self._ref_n < 2 or not math.isfinite(self._ref_std):
            return "unchecked", math.nan
        n = self._post_n
        if n == 0:
            return "pending", 0.0
        diff = self._post_sum / n - self._ref_mean
        se = self._ref_std * math.sqrt(1.0 / n + 1.0 / self._ref_n)
        z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        if abs(z) >= AWAY_Z:
            return "away", z
        return ("returned" if n >= DECIDE_VALUES else "pending"), z

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """Report the changes latched since the previous evaluation that moved the stream
        away from the reference, then clear them (see :func:`StreamDetector.direction`).

        A change whose direction is not known yet stays latched for the next
        evaluation; a change after which the values sit at the reference's mean is a
        return to it, not drift: it is counted in ``details["returned_changes"]``
        and cleared.
        """
        if self._river is None:
            raise not_fitted(self.name)
        changes = self._changes
        verdict, z = self.direction() if changes else ("none", math.nan)
        counted = changes if verdict in ("away", "unchecked") else 0
        severity = "critical" if counted >= 2 else "warning" if counted == 1 else "ok"
        details = self._details()
        if verdict in ("returned", "pending"):  # changes held back, and why
            details[f"{verdict}_changes"] = float(changes)
            details["post_change_z"] = z
        # Every field, in order, set by the slots (a result per column and evaluation).
        result = _result(self.name, float(counted), None, 1.0, counted > 0, severity, details)
        if verdict != "pending":
            self._changes, self._last_change, self._shift = 0, -1, 0.0
            self._post_sum, self._post_n = 0.0, 0
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
            post_sum=self._post_sum,
            post_n=self._post_n,
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
        self._post_sum, self._post_n = state.post_sum, state.post_n
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
    up (see :meth:`fit`). ``away_only`` counts only changes that move the stream
    away from the reference's mean (module docstring, "Direction").

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
        away_only: bool = False,
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
        if not isinstance(away_only, bool):
            raise DetectorError(f"adwin: away_only must be true or false, got {away_only!r}")
        super().__init__()
        self.delta = delta
        self.clock = clock
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.seed = seed
        self.block = block
        self.away_only = away_only
        self._pending = np.empty(0)  # values of the block not yet complete

    def _seed(self) -> int:
        return self.seed

    def _values_per_input(self) -> int:
        return self.block

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

        :func:`monitor.detectors.river_private.changes` feeds river's ADWIN with river's
        own semantics (a change resets the window on the next *input*; a call that
        only fills the open block feeds nothing, so splitting a stream across calls
        never changes ``estimation``), through river's compiled helper directly on
        the river releases it was checked against: the per-input cost is paid per
        input and per monitored feature.
        """
        if self._river is None:
            raise not_fitted(self.name)
        arr = _finite_values(values)
        inputs, first_end, stride = self._inputs(arr)
        self._feed(inputs, first_end, stride, int(arr.size))

    def _feed(self, inputs: np.ndarray, first_end: int, stride: int, n_values: int) -> None:
        """The river inputs of ``n_values`` new values (see :meth:`_inputs`) through river."""
        segment = 0
        for i in river_private.changes(self._river, inputs.tolist()):
            segment = self._latch(inputs, segment, i, first_end + i * stride)
        self._close_batch(inputs, segment, n_values)

    @staticmethod
    def update_columns(detectors: list[ADWINDetector], columns: np.ndarray) -> bool:
        """``detectors[j].update(columns[:, j])`` for every ``j``, with the block sums of all
        columns taken in one numpy reduction; False, and nothing fed, where that does not
        apply (then the caller feeds column by column).

        Why: each update's numpy calls (the finiteness sum, the carried-over block, the
        block sums) cost more per call than per value, and they ran once per column per
        evaluation (issue 19). It applies when every detector is a fitted ADWIN with the
        same ``block`` > 1 and the same number of carried-over values (the usual case:
        columns without missing values are fed together from the start) and every column
        is finite. Each block is summed as a row of ``block`` contiguous values, as
        :func:`_block_sums` sums it, so every input, and so every detection, is the same
        (``tests/test_streaming_batched.py`` holds it to per-column updates).
        """
        if (
            not detectors
            or columns.ndim != 2
            or columns.shape[1] != len(detectors)
            or len(set(map(id, detectors))) != len(detectors)
        ):
            return False
        shapes = {d.batch_shape() if type(d) is ADWINDetector else None for d in detectors}
        if len(shapes) != 1 or None in shapes:
            return False
        ((b, p),) = shapes
        if b == 1 or columns.dtype != np.float64:
            return False
        # Every value finite and within MAX_MAGNITUDE (see _finite_values); NaN fails both.
        if columns.size and not (
            _MAX(columns, axis=None) <= MAX_MAGNITUDE and _MIN(columns, axis=None) >= -MAX_MAGNITUDE
        ):
            return False
        n, k = columns.shape
        full = np.empty((k, p + n), dtype=np.float64)  # row j: column j's carried block, then it
        for j, d in enumerate(detectors):
            full[j, :p] = d.carried_block
        full[:, p:] = columns.T
        whole = full.shape[1] - full.shape[1] % b
        sums = np.add.reduce(full[:, :whole].reshape(k, -1, b), axis=2)
        for j, d in enumerate(detectors):
            d.feed_block_sums(sums[j], full[j, whole:].copy(), n)
        return True

    def batch_shape(self) -> tuple[int, int] | None:
        """``(block, carried-over values)`` when :meth:`update_columns` can feed this
        detector (a fitted ADWIN whose open block is float64), else None: the detectors of
        one call must all have the same shape."""
        if self._river is None or self._pending.dtype != np.float64:
            return None
        return self.block, int(self._pending.size)

    @property
    def carried_block(self) -> np.ndarray:
        """The values of the open block, carried over to the next update."""
        return self._pending

    def feed_block_sums(self, sums: np.ndarray, rest: np.ndarray, n_values: int) -> None:
        """Feed the block sums :meth:`update_columns` took of ``n_values`` new values (the
        carried-over block first), and keep ``rest`` as the new open block."""
        carried = self._pending.size
        self._pending = rest
        self._feed(sums, self._seen - carried + self.block - 1, self.block, n_values)

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
        try:
            data, _ = river_private.engine_state(self._river)
        except river_private.EngineStateUnavailable as exc:
            raise DetectorError(f"adwin: {exc}; cannot save it") from exc
        return data

    def _load_engine(self, fresh: Any, state: StreamDetectorState) -> None:
        river_private.load_engine_state(fresh, state.engine_state, state.drift_detected)

    def _pending_values(self) -> Any:
        return pack_array(self._pending)

    def _set_pending(self, values: np.ndarray) -> None:
        if values.size >= self.block:
            raise DetectorError("adwin: saved open block is longer than a block")
        self._pending = values

    def _build(self) -> Any:
        from river import drift as river_drift  # not at import (module docstring)

        return river_drift.ADWIN(
            delta=self.delta,
            clock=self.clock,
            min_window_length=self.min_window_length,
            grace_period=self.grace_period,
        )

    def _estimation(self) -> float:
        return float(self._river.estimation) / self.block

    def _details(self) -> dict[str, float]:
        # StreamDetector._details and the estimation in one literal (the same keys in the
        # same order): a result per column and evaluation.
        details = {
            "last_change_index": float(self._last_change),
            "values_seen": float(self._seen),
            "estimation": float(self._river.estimation) / self.block,
        }
        if self.block == 1:  # see the class docstring: unreliable when blocks are summed
            details["shift"] = self._shift
        return details


_result = slot_constructor(DetectorResult)


def _finite_values(values: np.ndarray) -> np.ndarray:
    """:func:`as_numeric` for the hot path, values beyond :data:`MAX_MAGNITUDE` fed as it.

    The maximum and the minimum decide in the usual case (NaN propagates through both and
    fails the comparison, as infinities do); anything else goes through the full check,
    which raises the usual error, and the bound.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and (
        not arr.size or (_MAX(arr) <= MAX_MAGNITUDE and _MIN(arr) >= -MAX_MAGNITUDE)
    ):
        return arr
    return _bounded(as_numeric(arr, "values"))


def _bounded(arr: np.ndarray) -> np.ndarray:
    """Finite ``arr`` with every value beyond :data:`MAX_MAGNITUDE` brought to it."""
    if arr.size and (arr.max() > MAX_MAGNITUDE or arr.min() < -MAX_MAGNITUDE):
        return np.clip(arr, -MAX_MAGNITUDE, MAX_MAGNITUDE)
    return arr


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

    def _engine_values(self) -> dict[str, float]:
        return river_private.page_hinkley_state(self._river)

    def _load_engine(self, fresh: Any, state: StreamDetectorState) -> None:
        river_private.load_page_hinkley_state(fresh, state.engine_values, state.drift_detected)

    def _build(self) -> Any:
        from river import drift as river_drift  # not at import (module docstring)

        return river_drift.PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.mode,
        )
