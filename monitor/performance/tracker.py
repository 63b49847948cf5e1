"""Per-model performance: join labels, keep a labelled window, compute, estimate, alert.

One :class:`PerformanceTracker` per model. The pipeline hands it whole batches of
decoded columns (never single events):

* :meth:`PerformanceTracker.add_predictions` normalises the prediction values for
  the task, stores them in the :class:`~monitor.performance.label_join.LabelJoiner`
  and (binary) in the CBPE score window;
* :meth:`PerformanceTracker.add_labels` normalises labels, joins them, appends the
  joined pairs to the labelled window and feeds their per-event errors to ADWIN;
* :meth:`PerformanceTracker.snapshot` computes metrics on demand (no side effect);
* :meth:`PerformanceTracker.signals` grades them against the configured thresholds
  and consumes the error-drift latch (call it once per evaluation).

Realised metrics cover the last ``window_size`` *labelled* predictions (in join
order); estimated (``estimated_*``) metrics the last ``window_size`` *predictions*,
labelled or not, so degradation shows before the labels exist. ADWIN over the
per-event error (0/1 for classification, absolute error for regression) catches a
sudden drop without waiting for the window to fill with bad predictions. Only an
*increase* of the error latches ``error_drift``: a model getting better must not
page.

An error-drift *incident* (the ``error_drift`` signal) is about the model being
worse than it was, not about the moment it changed. Its baseline is the first full
labelled window (``window_size`` labels: the period the model is known by). After
ADWIN finds a rise, the signal opens once the errors *after* the change are worse
than the baseline (one-sided two-sample z >= :data:`WORSE_Z`, 3), and stays active
while the recent errors (those since the last change ADWIN found, or the whole
labelled window once it holds only those) stay that much worse; it clears when they
are not, with at least ``min_window_labels`` of them. So a model that stays worse
for hours is one open incident, not one that resolves three evaluations after the
page; and a rise the errors after it do not confirm (ADWIN's rare false change) does
not page. Before the baseline exists, a rise is reported for one evaluation, as
before.

:meth:`PerformanceTracker.export_state` hands what it observed (buffers, join
stores, the error detector's internals) to a checkpoint, so a model's tracker
moves across restarts and instances; its settings come from the config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.detectors.base import Detector
from monitor.detectors.streaming import StreamDetector
from monitor.errors import ConfigError
from monitor.performance.cbpe import estimate_binary, only_classes
from monitor.performance.config import PerformanceConfig, default_alert_when
from monitor.performance.label_join import JoinResult, LabelJoiner
from monitor.performance.normalize import (
    ClassIndex,
    Normalized,
    binary_class,
    canonical_class,
    label_problem,
    normalize_labels,
    normalize_predictions,
)
from monitor.performance.realised import binary_metrics, multiclass_metrics, regression_metrics
from monitor.signals import Signal, SignalSeverity
from monitor.state_format import (
    PerformanceState,
    RingState,
    StateFormatError,
    pack_array,
    unpack_array,
)

#: One-sided z (recent mean error against the baseline's) from which the model is worse.
#: Under no change z is about standard normal: 3 is exceeded 1.3 times in a thousand looks,
#: and a look happens only after ADWIN found a rise (none per million stationary labels at
#: the default ``error_drift_delta``; see BENCHMARKS.md). A real rise of MAE 2.05 -> 3.6
#: (error sd ~1.5) reaches it after about 10 errors.
WORSE_Z = 3.0


class _Ring:
    """Fixed-capacity column buffers; rows are not kept in time order (metrics need none)."""

    def __init__(self, capacity: int, columns: dict[str, tuple[np.dtype[Any], int]]) -> None:
        self.capacity = capacity
        self.cols: dict[str, np.ndarray] = {
            name: np.zeros((capacity, width) if width else capacity, dtype=dtype)
            for name, (dtype, width) in columns.items()
        }
        self.head = 0
        self.size = 0

    def widen(self, name: str, width: int) -> None:
        """Give a 2-D column more columns (zero-filled): multiclass learned a class."""
        arr = self.cols[name]
        if arr.shape[1] < width:
            self.cols[name] = np.pad(arr, ((0, 0), (0, width - arr.shape[1])))

    def append(self, **values: np.ndarray) -> None:
        n = len(next(iter(values.values())))
        if n == 0:
            return
        if n >= self.capacity:
            idx = np.arange(self.capacity)
            values = {k: v[-self.capacity :] for k, v in values.items()}
            self.head = 0
        else:
            idx = (self.head + np.arange(n)) % self.capacity
            self.head = (self.head + n) % self.capacity
        for name, arr in values.items():
            col = self.cols[name]
            if col.ndim == 2 and arr.shape[1] < col.shape[1]:
                arr = np.pad(arr, ((0, 0), (0, col.shape[1] - arr.shape[1])))
            col[idx] = arr
        self.size = min(self.capacity, self.size + n)

    def view(self, name: str) -> np.ndarray:
        return self.cols[name][: self.size]

    def export_state(self) -> RingState:
        return RingState(
            capacity=self.capacity,
            head=self.head,
            size=self.size,
            cols={k: pack_array(v[: self.size]) for k, v in self.cols.items()},
        )

    def restore_state(self, state: RingState) -> None:
        """Adopt saved rows; with another capacity, in arrival order, newest kept."""
        if set(state.cols) != set(self.cols) or not 0 <= state.head < max(state.capacity, 1):
            raise StateFormatError("corrupt", "performance window of another shape")
        size = state.size
        cols = {k: unpack_array(a) for k, a in state.cols.items()}
        for name, arr in cols.items():
            if len(arr) != size or arr.ndim != self.cols[name].ndim:
                raise StateFormatError("corrupt", f"performance window column {name!r}")
            if arr.ndim == 2:
                self.widen(name, arr.shape[1])
        if state.capacity == self.capacity:
            for name, arr in cols.items():
                col = self.cols[name]
                if arr.ndim == 2:
                    col[:size, : arr.shape[1]] = arr
                else:
                    col[:size] = arr
            self.head, self.size = state.head, size
            return
        order = np.roll(np.arange(size), -state.head) if size == state.capacity else None
        keep = min(size, self.capacity)
        for name, arr in cols.items():
            if order is not None:
                arr = arr[order]
            col = self.cols[name]
            if arr.ndim == 2:
                col[:keep, : arr.shape[1]] = arr[size - keep :]
            else:
                col[:keep] = arr[size - keep :]
        self.size = keep
        self.head = keep % self.capacity


@dataclass(slots=True)
class BatchResult:
    """What one batch did: how many values were accepted, rejected (by reason), joined.

    ``join`` is the joiner's result (pairs and outcome counts); ``rejected`` counts
    values that did not fit the task, by the reasons of
    :mod:`monitor.performance.normalize`. :meth:`counts` flattens all of it into
    bounded keys for ``_total`` counters.
    """

    accepted: int
    rejected: dict[str, int]
    join: JoinResult
    matched: int = 0

    def counts(self) -> dict[str, int]:
        out = {
            "matched": self.join.matched,
            "duplicate": self.join.duplicate,
            "expired": self.join.expired,
            "early": self.join.early,
            "unknown": self.join.unknown,
        }
        out.update(self.join.evictions.as_dict())
        for reason, n in self.rejected.items():
            out[f"invalid:{reason}"] = n
        return out


@dataclass(slots=True)
class PerformanceEvaluation:
    """One evaluation: the metric snapshot and the signals graded from it."""

    metrics: dict[str, float]
    signals: list[Signal] = field(default_factory=list)
    error_drift: bool = False


class PerformanceTracker:
    """Labelled-window metrics, CBPE estimates and error-stream drift for one model.

    ``classes`` (multiclass) fixes the first class indices (and their export
    order); further classes are learned up to ``config.max_classes``.
    ``error_detector`` replaces the default
    :class:`~monitor.detectors.streaming.ADWINDetector` (``config.error_drift``);
    it is fitted on an empty reference, so it starts from the first errors.

    >>> t = PerformanceTracker(PerformanceConfig(task="regression", error_drift=False))
    >>> _ = t.add_predictions(["a", "b"], [1.0, 3.0], None, now=0.0)
    >>> t.add_labels(["a", "b"], [2.0, 3.0], None, now=1.0).matched
    2
    >>> t.snapshot()["mae"]
    0.5
    """

    def __init__(
        self,
        config: PerformanceConfig,
        *,
        classes: Sequence[str] | None = None,
        error_detector: Detector | None = None,
    ) -> None:
        if config.task is None:
            raise ConfigError(["performance.task: tracking is off (task is null)"])
        self.config = config
        self.task: str = config.task
        self.positive_class = (
            binary_class(config.positive_class)
            if self.task == "binary"
            else canonical_class(config.positive_class)
        )
        self.classes: ClassIndex | None = None
        if self.task == "multiclass":
            self.classes = ClassIndex(config.max_classes, classes)
        self.joiner = LabelJoiner(
            ttl_seconds=config.join_ttl_seconds,
            max_pending=config.join_max_pending,
            early_ttl_seconds=config.early_label_ttl_seconds,
            early_max=config.early_label_max,
            max_tombstones=config.join_max_tombstones,
        )
        w = config.window_size
        f8, i8 = np.dtype(np.float64), np.dtype(np.int64)
        if self.task == "binary":
            cols = {"pred": (f8, 0), "label": (i8, 0)}
        elif self.task == "regression":
            cols = {"pred": (f8, 0), "label": (f8, 0)}
        else:
            n_cls = max(len(self.classes or ()), 1)
            cols = {"pred": (i8, 0), "label": (i8, 0), "proba": (f8, n_cls)}
            cols["has_proba"] = (np.dtype(bool), 0)
        self._window = _Ring(w, cols)
        self._scores: _Ring | None = None
        if self.task == "binary" and config.estimate:
            self._scores = _Ring(w, {"score": (f8, 0)})
        self._detector: Detector | None = error_detector
        if self._detector is None and config.error_drift:
            from monitor.detectors.streaming import ADWINDetector

            self._detector = ADWINDetector(delta=config.error_drift_delta)
        if self._detector is not None:
            self._detector.fit(np.empty(0, dtype=np.float64))
        self._error_drift = False
        self._error_shift = 0.0
        # The error-drift incident (see the module docstring): the baseline (mean, variance,
        # count of the first full labelled window's errors), whether a rise awaits
        # confirmation or the model is worse, and the errors since ADWIN's last change.
        self._baseline: tuple[float, float, int] | None = None
        self._rise_pending = False
        self._degraded = False
        self._recent = (0.0, 0.0, 0)  # sum, sum of squares, count
        self.rejected_predictions: dict[str, int] = {}
        self.rejected_labels: dict[str, int] = {}
        # Label staleness (see label_age): event times of the first and newest predictions
        # and of the newest joined label; None until seen.
        self._first_prediction_time: float | None = None
        self._newest_prediction_time: float | None = None
        self._newest_label_time: float | None = None
        # Binary predictions sent as a class (true, "0") since the start: none enters the
        # score window, so a model sending only those has no estimate to give (see snapshot).
        self._class_predictions = 0

    # -- inputs ----------------------------------------------------------------------------

    def _normalize(self, raw: Any, *, labels: bool) -> Normalized:
        fn = normalize_labels if labels else normalize_predictions
        return fn(raw, self.task, positive_class=self.positive_class, classes=self.classes)

    def add_predictions(
        self,
        event_ids: Sequence[str],
        predictions: Sequence[Any] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None,
        now: float,
    ) -> BatchResult:
        """Take one batch of predictions (decoded values, any shape the contract allows).

        ``timestamps`` are event times in epoch seconds (NaN or ``None`` if unknown);
        ``now`` is the processing time the join TTLs run on.
        """
        norm = self._normalize(predictions, labels=False)
        _merge(self.rejected_predictions, norm.rejected)
        ids = [e for e, ok in zip(event_ids, norm.valid.tolist(), strict=True) if ok]
        ts = _valid_timestamps(timestamps, norm.valid)
        if ts is not None and (span := _finite_span(ts)) is not None:
            newest = span[1]
            if self._first_prediction_time is None:
                # The newest of the first batch, not its oldest: one straggler from a year
                # ago must not claim a year without labels.
                self._first_prediction_time = newest
            if self._newest_prediction_time is None or newest > self._newest_prediction_time:
                self._newest_prediction_time = newest
        payloads = self._payloads(norm)
        join = self.joiner.add_predictions(ids, payloads, ts, now)
        if self._scores is not None:
            # A class prediction (true, "0") is no probability: CBPE on its 1.0/0.0 would
            # estimate a perfect model, whatever the model does.
            kept = join.accepted if norm.hard is None else join.accepted & ~norm.hard
            self._scores.append(score=norm.values[kept])
            if norm.hard is not None:
                self._class_predictions += int((join.accepted & norm.hard).sum())
        self._append_pairs(join)
        return BatchResult(int(join.accepted.sum()), norm.rejected, join, join.matched)

    def add_labels(
        self,
        event_ids: Sequence[str],
        labels: Sequence[Any] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None,
        now: float,
    ) -> BatchResult:
        """Take one batch of labels: join, window, error stream. See :class:`BatchResult`."""
        norm = self._normalize(labels, labels=True)
        _merge(self.rejected_labels, norm.rejected)
        ids = [e for e, ok in zip(event_ids, norm.valid.tolist(), strict=True) if ok]
        ts = _valid_timestamps(timestamps, norm.valid)
        join = self.joiner.add_labels(ids, norm.values.tolist(), ts, now)
        self._append_pairs(join)
        return BatchResult(int(join.accepted.sum()), norm.rejected, join, join.matched)

    def label_problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be a label of this model (see
        :func:`~monitor.performance.normalize.label_problem`), or None: what the decoder
        asks, so that such a label is dead-lettered."""
        return label_problem(value, self.task, positive_class=self.positive_class)

    def expire(self, now: float) -> dict[str, int]:
        """Evict join state past its TTL; for idle periods (every add_* also does it)."""
        return self.joiner.expire(now).as_dict()

    def _payloads(self, norm: Normalized) -> list[Any]:
        if self.task != "multiclass":
            return norm.values.tolist()
        if norm.proba is None:
            return [(idx, None) for idx in norm.values.tolist()]
        rows = norm.proba.tolist()
        return [
            (idx, None if math.isnan(row[0]) else row)
            for idx, row in zip(norm.values.tolist(), rows, strict=True)
        ]

    def _append_pairs(self, join: JoinResult) -> None:
        if join.matched == 0:
            return
        # A label is no older than the prediction it labels: one stamped before it (a
        # case's opening date, a default date) would age the labels by years while they join.
        # A label without a time stays without one (it leaves the age unchanged).
        lts = join.label_timestamps
        span = _finite_span(np.where(np.isnan(lts), lts, np.fmax(lts, join.prediction_timestamps)))
        newest = self._newest_label_time
        if span is not None and (newest is None or span[1] > newest):
            self._newest_label_time = span[1]
        if self.task == "multiclass":
            pred = np.fromiter((p[0] for p in join.predictions), np.int64, join.matched)
            label = np.asarray(join.labels, dtype=np.int64)
            k = len(self.classes or ())
            self._window.widen("proba", k)
            proba = np.zeros((join.matched, k))
            has = np.zeros(join.matched, dtype=bool)
            for r, (_, row) in enumerate(join.predictions):
                if row is not None:
                    proba[r, : len(row)] = row
                    has[r] = True
            self._window.append(pred=pred, label=label, proba=proba, has_proba=has)
            errors = (pred != label).astype(np.float64)
        else:
            pred = np.asarray(join.predictions, dtype=np.float64)
            if self.task == "binary":
                label = np.asarray(join.labels, dtype=np.int64)
                hard = pred >= self.config.decision_threshold
                errors = (hard != (label == 1)).astype(np.float64)
            else:
                label = np.asarray(join.labels, dtype=np.float64)
                errors = np.abs(pred - label)
            self._window.append(pred=pred, label=label)
        self._update_error_stream(errors)

    def _update_error_stream(self, errors: np.ndarray) -> None:
        if self._baseline is None and self._window.size >= self.config.window_size:
            base = self._window_errors()
            self._baseline = (float(base.mean()), float(base.var()), int(base.size))
        if self._detector is None:
            return
        self._detector.update(errors)
        result = self._detector.evaluate(errors)
        after = 0  # where this batch's errors after the detected change start
        if result.drifted:
            # Only a rise in the error is degradation. A detector that reports no
            # direction is taken at its word (conservative: page rather than miss).
            shift = float(result.details.get("shift", math.inf))
            rise = shift > 0
            if rise:
                self._error_drift = True
                self._error_shift = shift if math.isfinite(shift) else self._error_shift
            if rise or self._degraded:
                # What the model does now is what comes after the change: start over.
                index = result.details.get("last_change_index", -1.0)
                seen = result.details.get("values_seen", math.nan)
                if index >= 0 and math.isfinite(seen):
                    after = min(max(int(index - (seen - errors.size)) + 1, 0), errors.size)
                self._recent = (0.0, 0.0, 0)
                self._rise_pending = rise and not self._degraded
        if self._rise_pending or self._degraded:
            tail = errors[after:]
            total, squares, n = self._recent
            self._recent = (
                total + float(tail.sum()),
                squares + float(np.dot(tail, tail)),
                n + int(tail.size),
            )

    def _window_errors(self) -> np.ndarray:
        """The per-event errors of the labelled window (unordered), as fed to ADWIN."""
        win = self._window
        pred, label = win.view("pred"), win.view("label")
        if self.task == "regression":
            return np.abs(pred - label)
        if self.task == "binary":
            return ((pred >= self.config.decision_threshold) != (label == 1)).astype(np.float64)
        return (pred != label).astype(np.float64)

    def _worse_than_baseline(self) -> tuple[bool | None, float]:
        """(worse, z) of the recent errors against the baseline; worse is None while
        too few errors say neither (fewer than ``min_window_labels``, and z below
        :data:`WORSE_Z`).

        Recent: the errors since ADWIN's last change, or the whole labelled window
        once it holds nothing older.
        """
        assert self._baseline is not None
        b_mean, b_var, b_n = self._baseline
        total, squares, n = self._recent
        if n >= self._window.size:
            errs = self._window_errors()
            n, mean, var = int(errs.size), float(errs.mean()), float(errs.var())
        elif n:
            mean = total / n
            var = max(squares / n - mean * mean, 0.0)
        else:
            return None, math.nan
        se = math.sqrt(b_var / b_n + var / n)
        diff = mean - b_mean
        z = diff / se if se > 0 else (math.inf if diff > 0 else 0.0)
        if z >= WORSE_Z:
            return True, z
        return (False if n >= self.config.min_window_labels else None), z

    # -- outputs ---------------------------------------------------------------------------

    @property
    def error_drift(self) -> bool:
        """Whether the error stream rose abruptly since the last :meth:`evaluate`."""
        return self._error_drift

    def label_age(self) -> float | None:
        """Seconds of event time since the newest joined label: the newest prediction's
        event time minus the newest joined label's (0 if the label is newer); before any
        label joined, minus the newest of the first predictions seen (tracking starts
        then). None before any prediction with a time.

        Event time on both sides, deliberately: a catch-up after downtime reads old
        predictions and old labels alike, so the age stays what it was live and does not
        page; a stream with no predictions (a quiet night) does not age its labels; a
        restart does not either (the times are in the checkpoint). The monitor's own clock
        would page in all three. What ages is labels stopping while predictions go on.
        """
        newest = self._newest_prediction_time
        if newest is None:
            return None
        since = self._newest_label_time
        if since is None:
            since = self._first_prediction_time
        return max(newest - since, 0.0) if since is not None else None

    @property
    def window_labels(self) -> int:
        """Labelled predictions currently in the metric window."""
        return self._window.size

    def label_values(self) -> np.ndarray:
        """The labels in the metric window (unordered): 0/1 for binary, class indices for
        multiclass, values for regression. What label drift is computed on."""
        return self._window.view("label").copy()

    def counts(self) -> dict[str, int]:
        """Cumulative counts: join outcomes, evictions, invalid values by reason."""
        out = dict(self.joiner.counts)
        for reason, n in self.rejected_predictions.items():
            out[f"invalid_prediction:{reason}"] = n
        for reason, n in self.rejected_labels.items():
            out[f"invalid_label:{reason}"] = n
        return out

    def snapshot(self) -> dict[str, float]:
        """Every metric the window supports now; reads only (the latch is left alone).

        Always present: ``window_labels``, ``join_pending``, ``join_early``,
        ``error_drift`` (0/1). Metric keys appear once the window has labels (they
        may be NaN, e.g. ROC AUC with one class); ``estimated_*`` once there are
        scores (binary with ``estimate``), unless every score of the window is exactly
        0 or 1, or every prediction so far was a class (``true``, ``"0"``): then
        ``estimate_refused`` is 1 and no estimate is given (see
        :func:`~monitor.performance.cbpe.only_classes`).
        """
        win = self._window
        out: dict[str, float] = {}
        if win.size:
            pred, label = win.view("pred"), win.view("label")
            if self.task == "binary":
                out.update(binary_metrics(label, pred, self.config.decision_threshold))
            elif self.task == "regression":
                out.update(
                    regression_metrics(
                        label, pred, mape_min_abs_label=self.config.mape_min_abs_label
                    )
                )
            else:
                has = win.view("has_proba")
                proba = None
                if has.any():
                    proba = win.view("proba").copy()
                    proba[~has] = np.nan
                out.update(
                    multiclass_metrics(
                        label,
                        pred,
                        (self.classes.names if self.classes else []),
                        proba=proba,
                        max_exported_classes=self.config.max_exported_classes,
                    )
                )
        if self._scores is not None and self._scores.size:
            scores = self._scores.view("score")
            if only_classes(scores):
                out["estimate_refused"] = 1.0
            else:
                out.update(estimate_binary(scores, self.config.decision_threshold))
                out["estimate_refused"] = 0.0
            out["window_predictions"] = float(self._scores.size)
        elif self._scores is not None and self._class_predictions:
            out["estimate_refused"] = 1.0  # only classes (true, "0") came: no score at all
        sizes = self.joiner.sizes()
        out["window_labels"] = float(win.size)
        out["join_pending"] = float(sizes["pending"])
        out["join_early"] = float(sizes["early"])
        out["error_drift"] = 1.0 if self._error_drift else 0.0
        age = self.label_age()
        if age is not None:
            out["label_age_seconds"] = age
        if self._newest_label_time is not None:
            out["label_last_timestamp_seconds"] = self._newest_label_time
        return out

    def evaluate(
        self, model: str, metrics: dict[str, float] | None = None
    ) -> PerformanceEvaluation:
        """Snapshot (unless given), grade thresholds, then clear the error-drift latch.

        A metric signal is only emitted when its window holds at least
        ``min_window_labels`` values and the metric is a number: a threshold on a
        handful of labels would page on noise, and "no data" must not resolve an
        alert as if the model had recovered. Binary precision, recall and F1 of 0/0
        (no positive prediction, label, or either) are exported as 0.0 but not graded
        (:func:`_undefined`). Comparisons are strict: a value equal
        to a bound does not cross it.
        """
        snap = self.snapshot() if metrics is None else metrics
        out: list[Signal] = []
        enough_labels = snap.get("window_labels", 0.0) >= self.config.min_window_labels
        enough_scores = snap.get("estimated_n", 0.0) >= self.config.min_window_labels
        for name, bound in self.config.thresholds.items():
            enough = enough_scores if name.startswith("estimated_") else enough_labels
            value = snap.get(name)
            if not enough or value is None or math.isnan(value) or _undefined(name, snap):
                continue
            direction = bound.alert_when or default_alert_when(name)
            severity, crossed = _grade(value, bound.warning, bound.critical, direction == "below")
            out.append(
                Signal(
                    model=model,
                    kind="performance",
                    subject=name,
                    severity=severity,
                    value=value,
                    threshold=crossed,
                    details={"alert_when": direction, "window": snap.get("window_labels")},
                )
            )
        stale = self._labels_stale_signal(model, snap)
        if stale is not None:
            out.append(stale)
        drift = self._error_drift
        if self._detector is not None:
            active, details = self._error_incident(drift)
            out.append(
                Signal(
                    model=model,
                    kind="performance",
                    subject="error_drift",
                    severity=self.config.error_drift_severity if active else "ok",
                    value=1.0 if active else 0.0,
                    threshold=1.0,
                    detector=getattr(self._detector, "name", "adwin"),
                    details=details,
                )
            )
        self._error_drift = False
        self._error_shift = 0.0
        return PerformanceEvaluation(metrics=snap, signals=out, error_drift=drift)

    def _labels_stale_signal(self, model: str, snap: dict[str, float]) -> Signal | None:
        """The ``labels_stale`` signal (warning while the label age is over
        ``labels_stale_after_seconds``, else ok), or None when it is off or the age is not
        known yet: no data must not resolve an open incident."""
        bound = self.config.labels_stale_after_seconds
        age = snap.get("label_age_seconds")
        if bound is None or age is None or math.isnan(age):
            return None
        stale = age > bound
        return Signal(
            model=model,
            kind="performance",
            subject="labels_stale",
            severity="warning" if stale else "ok",
            value=age,
            threshold=bound,
            details={
                "alert_when": "above",
                "label_last_timestamp_seconds": snap.get("label_last_timestamp_seconds"),
            },
        )

    def _error_incident(self, rose: bool) -> tuple[bool, dict[str, float | str | None]]:
        """Whether the error-drift signal is active at this evaluation, with its evidence.

        ``rose``: ADWIN found a rise since the previous evaluation. See the module
        docstring for the rule.
        """
        details: dict[str, float | str | None] = {"error_shift": self._error_shift if rose else 0.0}
        if self._baseline is None:  # nothing to compare with yet: the rise alone, once
            self._rise_pending = self._degraded = False
            return rose, details
        worse, z = self._worse_than_baseline()
        if self._rise_pending and worse is not None:
            self._rise_pending = False
            self._degraded = worse
        elif self._degraded and worse is False:
            self._degraded = False
        if not (self._rise_pending or self._degraded):
            self._recent = (0.0, 0.0, 0)
        details["baseline_error"] = self._baseline[0]
        details["worse_z"] = z
        return self._degraded, details

    def signals(self, model: str, metrics: dict[str, float] | None = None) -> list[Signal]:
        """The signals of :meth:`evaluate` (which clears the error-drift latch)."""
        return self.evaluate(model, metrics).signals

    # -- saved state -----------------------------------------------------------------------

    def export_state(self) -> PerformanceState:
        det = self._detector
        return PerformanceState(
            task=str(self.task),
            classes=list(self.classes.names) if self.classes is not None else None,
            window=self._window.export_state(),
            scores=self._scores.export_state() if self._scores is not None else None,
            detector=det.export_state(None) if isinstance(det, StreamDetector) else None,
            error_drift=self._error_drift,
            error_shift=self._error_shift,
            rejected_predictions=dict(self.rejected_predictions),
            rejected_labels=dict(self.rejected_labels),
            joiner=self.joiner.export_state(),
            baseline=self._baseline,
            rise_pending=self._rise_pending,
            degraded=self._degraded,
            recent=self._recent,
            first_prediction_time=self._first_prediction_time,
            newest_prediction_time=self._newest_prediction_time,
            newest_label_time=self._newest_label_time,
        )

    def restore_state(self, state: PerformanceState) -> list[str]:
        """Adopt a saved state (same task); returns what could not be adopted, and why.

        The caller checks the task first (another task: nothing of it applies).
        Window sizes and join caps are the configured ones (see the ring and the
        joiner); an error detector saved with other settings starts over.
        """
        notes: list[str] = []
        if self.classes is not None and state.classes is not None:
            for name in state.classes:
                self.classes.index_of(name)
            if self.classes.names[: len(state.classes)] != state.classes:
                raise StateFormatError("corrupt", "class index differs from the saved one")
        self._window.restore_state(state.window)
        if self._scores is not None and state.scores is not None:
            self._scores.restore_state(state.scores)
        det = self._detector
        if isinstance(det, StreamDetector) and state.detector is not None:
            why = det.restore_state(state.detector, None)
            if why is not None:
                notes.append(f"error-drift detector restarted ({why})")
        self._error_drift, self._error_shift = state.error_drift, state.error_shift
        self.rejected_predictions = dict(state.rejected_predictions)
        self.rejected_labels = dict(state.rejected_labels)
        self.joiner.restore_state(state.joiner)
        self._baseline = tuple(state.baseline) if state.baseline is not None else None  # type: ignore[assignment]
        self._rise_pending, self._degraded = state.rise_pending, state.degraded
        self._recent = tuple(state.recent)  # type: ignore[assignment]
        self._first_prediction_time = state.first_prediction_time
        self._newest_prediction_time = state.newest_prediction_time
        self._newest_label_time = state.newest_label_time
        return notes


#: Binary metrics 0/0 when these snapshot rates are all 0: precision without a positive
#: prediction, recall without a positive label, F1 with neither.
_DENOMINATOR_RATES: dict[str, tuple[str, ...]] = {
    "precision": ("positive_rate_predicted",),
    "recall": ("positive_rate_label",),
    "f1": ("positive_rate_predicted", "positive_rate_label"),
}


def _undefined(name: str, snap: dict[str, float]) -> bool:
    """Whether binary ``name`` is 0/0 in this window: exported as 0.0 (scikit-learn's
    ``zero_division``), never graded. A window of a rare-event model without a positive,
    every case right, paged "recall 0.0" otherwise."""
    rates = _DENOMINATOR_RATES.get(name)
    return rates is not None and all(snap.get(r) == 0.0 for r in rates)


def _grade(
    value: float, warning: float | None, critical: float | None, below: bool
) -> tuple[SignalSeverity, float]:
    def crossed(bound: float | None) -> bool:
        return bound is not None and (value < bound if below else value > bound)

    if crossed(critical):
        return "critical", float(critical)  # type: ignore[arg-type]
    if crossed(warning):
        return "warning", float(warning)  # type: ignore[arg-type]
    return "ok", float(warning if warning is not None else critical)  # type: ignore[arg-type]


def _merge(total: dict[str, int], batch: dict[str, int]) -> None:
    for key, n in batch.items():
        total[key] = total.get(key, 0) + n


def _finite_span(ts: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values of ``ts`` (event times), or None if it has none."""
    finite = ts[np.isfinite(ts)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def _valid_timestamps(
    timestamps: Sequence[float] | np.ndarray | None, valid: np.ndarray
) -> np.ndarray | None:
    if timestamps is None:
        return None
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if ts.shape[0] != valid.shape[0]:
        raise ValueError(f"{ts.shape[0]} timestamps for {valid.shape[0]} events")
    return ts[valid]


__all__ = ["BatchResult", "PerformanceEvaluation", "PerformanceTracker"]
