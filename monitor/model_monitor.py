"""One model's monitoring state, and what happens to it per batch. Pure: no I/O.

A :class:`ModelMonitor` owns, for one model: the column schema, category
vocabularies, the sliding window, the reference, the fitted detectors, the drift
tracker (correction and persistence), data-quality counters, and the
performance tracker. :meth:`ModelMonitor.ingest` takes the model's events of
one batch, turns each field into a column once, appends them to the window, and
evaluates at every window step. Evaluation points are exact (a batch is split at
step boundaries), so the same events produce the same evaluations whatever the
batching, which is what lets a restored checkpoint reproduce an uninterrupted run.

What a checkpoint keeps of it is what it observed (:meth:`ModelMonitor.export_state`,
in the format of :mod:`monitor.state_format`); :meth:`ModelMonitor.restore` builds a
monitor from the *configured* settings and reference and adopts that state, so a
model's state can follow its partition to another instance, and a changed config
takes effect at restart (what happens per kind of change: docs/GUARANTEES.md).
"""

from __future__ import annotations

import hashlib
import math
import operator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import msgspec
import numpy as np

from monitor.config import LimitsConfig, ResolvedModel, WindowConfig
from monitor.detectors.base import Detector, DetectorResult, evaluate_window
from monitor.detectors.factory import STREAM_DETECTORS
from monitor.detectors.fitting import fit_column_detectors
from monitor.detectors.ranks import RankWindow, counted_buckets
from monitor.detectors.streaming import StreamDetector
from monitor.drift import DriftTracker, FeatureVerdict, headline
from monitor.errors import MonitorError
from monitor.events import FeatureColumns, LabelEvents, ModelEvents
from monitor.performance.tracker import PerformanceTracker
from monitor.reference import (
    FeatureProfile,
    ReferenceProfile,
    build_profile,
    category_of,
    check_schema,
    prediction_value,
    profile_numeric,
)
from monitor.sampling import Sampler
from monitor.signals import PREDICTION, EvaluationContext, Signal
from monitor.state_format import (
    Array,
    FeatureProfileState,
    ModelState,
    ProfileState,
    SettingsSeen,
    StateFormatError,
    pack_array,
    unpack_array,
)
from monitor.summary import (
    CategoricalSummary,
    NumericSummary,
    summarize_categorical,
    summarize_numeric,
    summarize_numeric_unsorted,
)
from monitor.window import MISSING_CODE, SlidingWindow

OTHER = "__other__"
LABEL = "__label__"  # label drift is reported as this column
MIN_VALUES_FOR_TESTS = 20  # fewer present values than this: no drift verdict for the column


@dataclass
class Evaluation:
    """Everything one evaluation of one model produced; the metrics and alert layers read it."""

    context: EvaluationContext
    numeric: dict[str, NumericSummary]
    categorical: dict[str, CategoricalSummary]
    categories: dict[str, list[str]]
    results: dict[str, list[DetectorResult]]
    verdicts: dict[str, FeatureVerdict]
    signals: list[Signal]
    performance: dict[str, float] = field(default_factory=dict)

    @property
    def drifting(self) -> list[str]:
        return sorted(f for f, v in self.verdicts.items() if v.drifting)


class ModelMonitor:
    """The monitoring state of one model."""

    def __init__(
        self,
        settings: ResolvedModel,
        limits: LimitsConfig,
        reference: ReferenceProfile | None = None,
        version_references: dict[str, ReferenceProfile] | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.name = settings.name
        self.model_version: str | None = None
        self.events_total = 0
        self.evaluations = 0
        self.invalid_values: dict[tuple[str, str], int] = {}
        self.unknown_feature_events = 0
        self.category_overflow: dict[str, int] = {}
        self.last: Evaluation | None = None
        self._since_eval = 0
        # Numeric rows not yet given to the stream detectors (see _update_stream_detectors).
        self._stream_pending: list[np.ndarray] = []
        self._next_eval_time: float | None = None
        # The model's event clock: the newest event time seen, from events that carry one
        # (None until one does). See _event_times.
        self._event_clock: float | None = None
        self._learn_rows: list[tuple[dict[str, Any], Any]] = []
        self._sampler = Sampler(settings.sample.rate)
        self._weights: np.ndarray | None = None  # per kept event of a sampled batch: _advance
        self._weights_at = 0
        self._learn_target = settings.reference.learn_first or settings.window.size
        self.reference: ReferenceProfile | None = None
        # model_version -> profile; the monitor switches when a listed version appears.
        self.version_references = dict(version_references or {})
        self.reference_version: str | None = None
        self.reference_switches = 0
        self._since_reference_refresh = 0
        self._label_detectors: list[Detector] | None = None
        self._label_reference: np.ndarray | None = None  # the first full window of labels
        # The profile set by _set_reference (configured, per-version or learned); in
        # previous_window mode ``reference`` moves on to window profiles, this does not.
        self._base_reference: ReferenceProfile | None = None
        self._learned = False  # the base reference was learned from this model's events
        self._columnised_for: list[str] | None = None
        self.performance: PerformanceTracker | None = None
        if settings.performance.task is not None:
            self.performance = PerformanceTracker(settings.performance)
        if reference is not None:
            self._set_reference(reference)

    # ----------------------------------------------------------------- reference

    @property
    def ready(self) -> bool:
        """True once the reference is known and detectors are fitted."""
        return self.reference is not None

    def learn_progress(self) -> tuple[int, int]:
        """(events collected, events needed) while learning the reference from the stream."""
        return len(self._learn_rows), self._learn_target

    def _set_reference(self, profile: ReferenceProfile) -> None:
        schema = check_schema(
            profile,
            self.settings.features,
            model=self.name,
            max_features=self.limits.max_features_per_model,
        )
        pred = profile.features.get(PREDICTION)
        if pred is not None and self.settings.prediction != "none":
            schema[PREDICTION] = pred.kind
        self.reference = profile
        self._base_reference = profile
        self._learned = False
        self.numeric_columns = [n for n, k in schema.items() if k == "numeric"]
        self.categorical_columns = [n for n, k in schema.items() if k == "categorical"]
        self._known_features = frozenset(n for n in schema if n != PREDICTION)
        self.categories: dict[str, list[str]] = {}
        self._vocab: dict[str, dict[str, int]] = {}
        self._reference_sizes: list[int] = []
        for name in self.categorical_columns:
            cats = list(profile.features[name].categories)
            self.categories[name] = cats
            self._vocab[name] = {c: i for i, c in enumerate(cats)}
            self._reference_sizes.append(len(cats))
        w = self.settings.window
        self.window = SlidingWindow(
            len(self.numeric_columns), len(self.categorical_columns), w.size
        )
        self._fit_detectors(profile)
        self.tracker = DriftTracker(self.settings.drift)
        self._stream_pending = []  # values for the old detectors go with them
        self._since_eval = 0
        self._since_reference_refresh = 0
        self._next_eval_time = None

    def _fit_detectors(self, profile: ReferenceProfile) -> None:
        """(Re)fit every column's detectors on ``profile``; window and vocabularies stay."""
        w = self.settings.window
        self.reference = profile
        self.detectors: dict[str, list[Detector]] = {}
        n_features = len(self.numeric_columns) + len(self.categorical_columns)
        for name in self.numeric_columns + self.categorical_columns:
            prof = profile.features[name]
            self.detectors[name] = fit_column_detectors(
                prof.kind,
                prof.sample if prof.kind == "numeric" else prof.counts,  # type: ignore[arg-type]
                self.settings.drift,
                window_size=w.size,
                step=w.step,
                n_features=n_features,
                feature=name,
                seed=_stable_seed(self.name, name),
            )
        # Rank buckets of the window's values against this reference (derived, not saved).
        self._ranks = RankWindow([counted_buckets(self.detectors[n]) for n in self.numeric_columns])

    def _switch_reference(self, version: str) -> None:
        """A new model version with its own profile: start over against that profile.

        The window restarts too: the previous version's events say nothing about
        the new one. Open drift incidents clear through the usual hysteresis as the
        new version's evaluations come in clean.
        """
        self.reference_version = version
        self.reference_switches += 1
        self._set_reference(self.version_references[version])

    def _version_switch_at(self, versions: list[str | None]) -> int | None:
        """Index of the first event whose version has a profile other than the one in use."""
        current = self.reference_version
        if versions[0] == current and versions[-1] == current and len(set(versions)) == 1:
            return None
        refs = self.version_references
        for i, v in enumerate(versions):
            if v != current and v is not None and v in refs:
                return i
        return None

    def _window_profile(self) -> ReferenceProfile:
        """The current window as a reference profile (``reference.mode: previous_window``)."""
        assert self.reference is not None
        _, sorted_cols = summarize_numeric(self.window.numeric())
        counts = summarize_categorical(
            self.window.categorical(),
            [len(self.categories[c]) for c in self.categorical_columns],
            self._reference_sizes,
        )
        n = self.window.size
        features: dict[str, FeatureProfile] = {}
        for name, values in zip(self.numeric_columns, sorted_cols, strict=True):
            if values.size:
                features[name] = profile_numeric(
                    name, values, n, self.settings.reference.max_sample
                )
            else:  # nothing to compare against: keep the previous reference of the column
                features[name] = self.reference.features[name]
        for name, summary in zip(self.categorical_columns, counts, strict=True):
            features[name] = FeatureProfile(
                name=name,
                kind="categorical",
                count=summary.count,
                missing_rate=summary.missing_rate,
                categories=list(self.categories[name]),
                # +1 smoothing keeps categories the window lacked comparable.
                counts=summary.counts + 1,
            )
        return ReferenceProfile(
            model=self.name,
            features=features,
            rows=n,
            fingerprint=f"window-{self.window.total}",
            model_version=self.model_version,
            source=f"window ending at event {self.events_total}",
        )

    # ----------------------------------------------------------------- columns

    def columnar_schema(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The feature names the native decoder may put in columns for this model, or None.

        (numeric features, categorical features), in column order, the prediction
        left out (it comes with the event). ``None`` while the schema may still
        change within a batch: before the reference is known (events are
        collected as rows to build it), and with per-version references (a batch
        may switch to another profile midway).
        """
        if self.reference is None or self.version_references:
            return None
        if self._columnised_for is not self.numeric_columns:
            self._columnisation()
        return self._columnar_names

    def _columnisation(self) -> None:
        """Derive what the numeric fast path needs from the current column list.

        Done lazily: the column list object changes only when a reference is set.
        """
        cols = self.numeric_columns
        feats = [c for c in cols if c != PREDICTION]
        # The prediction, when numeric, is the last numeric column (schema order).
        pred = PREDICTION in cols
        self._fast_ok = not pred or cols[-1] == PREDICTION
        self._numeric_features = feats
        self._numeric_prediction = pred
        self._numeric_getter = operator.itemgetter(*feats) if feats else None
        cats = tuple(c for c in self.categorical_columns if c != PREDICTION)
        self._columnar_names = (tuple(feats), cats)
        self._columnised_for = cols

    def _numeric_matrix(self, events: ModelEvents) -> tuple[np.ndarray, bool]:
        """The batch's numeric columns as one float matrix (NaN = missing or invalid),
        and whether every event carried every numeric feature's key.

        Fast path: when every event carries every numeric feature, one C-level
        ``itemgetter`` per event feeds one ``np.fromiter`` for the whole matrix.
        Anything else (a missing key, a string, a score map) falls back to the
        per-column conversion, which counts invalid values exactly as before.
        """
        n = len(events.features)
        k = len(self.numeric_columns)
        if self._columnised_for is not self.numeric_columns:
            self._columnisation()
        mat = self._numeric_fast(events, n, k) if self._fast_ok else None
        if mat is None:
            return self._numeric_by_column(events, n, k), False
        bad = np.isinf(mat)
        if bad.any():
            for j in np.nonzero(bad.any(axis=0))[0]:
                self._count_invalid(
                    self.numeric_columns[j], "non_finite_number", int(bad[:, j].sum())
                )
            mat[bad] = np.nan
        return mat, True

    def _numeric_fast(self, events: ModelEvents, n: int, k: int) -> np.ndarray | None:
        names = self._numeric_features
        if not names and not self._numeric_prediction:
            return np.empty((n, k), dtype=np.float64)
        try:
            if names:
                # One C-level pass: the getter's tuples chained straight into the buffer.
                # Conversion is np.array's (None -> NaN, "1.5" -> 1.5, junk -> ValueError).
                rows = map(self._numeric_getter, events.features)
                flat = rows if len(names) == 1 else chain.from_iterable(rows)
                mat = np.fromiter(flat, dtype=np.float64, count=n * len(names))
                mat = mat.reshape(n, len(names))
            if self._numeric_prediction:
                pred = np.array(events.predictions, dtype=np.float64)
                if pred.shape != (n,):
                    return None
                mat = pred.reshape(n, 1) if not names else np.column_stack((mat, pred))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if mat.shape != (n, k):
            return None
        return mat

    def _numeric_by_column(self, events: ModelEvents, n: int, k: int) -> np.ndarray:
        feats = events.features
        out = np.empty((n, k), dtype=np.float64)
        for j, name in enumerate(self.numeric_columns):
            if name == PREDICTION:
                raw = [prediction_value(p) for p in events.predictions]
            else:
                raw = [f.get(name) for f in feats]
            out[:, j] = self._numeric_column(name, raw)
        return out

    def _numeric_column(self, name: str, raw: list[Any]) -> np.ndarray:
        """One column's values as floats (NaN = missing or invalid), invalid ones counted."""
        try:
            col = np.array(raw, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            col = np.array([self._as_number(v, name) for v in raw], dtype=np.float64)
        bad = np.isinf(col)
        if bad.any():
            self._count_invalid(name, "non_finite_number", int(bad.sum()))
            col[bad] = np.nan
        return col

    def _columnar_matrices(
        self, events: ModelEvents, columns: FeatureColumns
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_numeric_matrix` and :meth:`_categorical_matrix` for events the native
        decoder already put in columns (for this model's schema: see
        :meth:`columnar_schema`). Its numeric values are finite numbers or NaN and its
        categorical values strings or None, so only the prediction, which comes as
        decoded, goes through the per-column conversion."""
        schema = self.columnar_schema()
        if schema != (columns.numeric_names, columns.categorical_names):
            raise MonitorError(
                f"model {self.name!r}: columns decoded for schema "
                f"{(columns.numeric_names, columns.categorical_names)}, expected {schema}"
            )
        n = len(events)
        feats = columns.numeric
        if not self._numeric_prediction:
            num = feats
        else:
            pred = self._numeric_column(PREDICTION, events.predictions)
            num = np.insert(feats, self.numeric_columns.index(PREDICTION), pred, axis=1)
        cat = np.empty((n, len(self.categorical_columns)), dtype=np.int32)
        text = iter(columns.categorical)
        for j, name in enumerate(self.categorical_columns):
            if name == PREDICTION:
                raw: list[Any] = [prediction_value(p) for p in events.predictions]
            else:
                raw = next(text)
            cat[:, j] = self._codes(name, raw)
        return num, cat

    def _as_number(self, value: Any, name: str) -> float:
        if value is None:
            return math.nan
        if isinstance(value, int | float):
            try:
                return float(value)
            except OverflowError:  # an int beyond the float range: counted as non-finite
                return math.inf
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        self._count_invalid(name, "wrong_type", 1)
        return math.nan

    def _categorical_matrix(self, events: ModelEvents) -> tuple[np.ndarray, bool]:
        """The batch's category codes, one column per categorical feature (-1 = missing),
        and whether every event carried every categorical feature's key.

        Known string categories are looked up for the whole column with one
        ``map(vocab.get, ...)``; only the values it cannot code (missing, new,
        non-string) go one by one, in order, through :meth:`_code_of`, so
        new categories get the same codes in the same order as before.
        """
        feats = events.features
        n = len(feats)
        out = np.empty((n, len(self.categorical_columns)), dtype=np.int32)
        complete = True
        for j, name in enumerate(self.categorical_columns):
            if name == PREDICTION:
                raw = [prediction_value(p) for p in events.predictions]
            else:
                try:
                    raw = list(map(operator.itemgetter(name), feats))
                except KeyError:
                    raw = [f.get(name) for f in feats]
                    complete = False
            out[:, j] = self._codes(name, raw)
        return out, complete

    def _codes(self, name: str, raw: list[Any]) -> list[int]:
        """Category codes of one column's values (see :meth:`_categorical_matrix`)."""
        vocab = self._vocab[name]
        try:
            # A str never equals a non-str key, so a non-str value maps to None here.
            codes: list[int | None] = list(map(vocab.get, raw))
        except TypeError:  # an unhashable value (a JSON list or object)
            codes = [vocab.get(v) if type(v) is str else None for v in raw]
        if None in codes:
            for i, code in enumerate(codes):
                if code is None:
                    v = raw[i]
                    if v is None:
                        codes[i] = MISSING_CODE
                    else:
                        got = vocab.get(v) if type(v) is str else None
                        codes[i] = got if got is not None else self._code_of(name, v)
        return codes  # type: ignore[return-value]

    def _code_of(self, name: str, value: Any) -> int:
        cat = category_of(value)
        if cat is None:
            self._count_invalid(name, "wrong_type", 1)
            return MISSING_CODE
        vocab = self._vocab[name]
        code = vocab.get(cat)
        if code is not None:
            return code
        cats = self.categories[name]
        if len(cats) >= self.limits.max_categories_per_feature:
            self.category_overflow[name] = self.category_overflow.get(name, 0) + 1
            cat = OTHER
            code = vocab.get(OTHER)
            if code is not None:
                return code
        code = len(cats)
        cats.append(cat)
        vocab[cat] = code
        return code

    def _count_invalid(self, feature: str, reason: str, n: int) -> None:
        key = (feature, reason)
        self.invalid_values[key] = self.invalid_values.get(key, 0) + n

    # ----------------------------------------------------------------- ingest

    def ingest(self, events: ModelEvents, now: float | None = None) -> list[Evaluation]:
        """Add one batch of this model's events; return the evaluations it completed.

        ``now`` (processing time) only ages the label-join store; it defaults to
        the newest event time so the core stays deterministic.
        """
        n = len(events)
        if n == 0:
            return []
        if self.version_references:
            cut = self._version_switch_at(events.versions)
            if cut is not None:
                # Split exactly at the first event of the new version, whatever the batching.
                out = self.ingest(_slice(events, 0, cut), now) if cut else []
                self._switch_reference(events.versions[cut])  # type: ignore[arg-type]
                return out + self.ingest(_slice(events, cut, n), now)
        if events.versions[-1] is not None:
            self.model_version = events.versions[-1]
        kept = self._sampler.kept(events.event_ids)  # sample: {rate} (monitor/sampling.py)
        if kept is not None:
            # The sample of a sample is itself: the inner call keeps every event. Each kept
            # event also counts the events left out just before it (see _advance).
            self._weights, self._weights_at = np.diff(kept, prepend=-1), 0
            try:
                out = self.ingest(self._sample(events, kept), now)
            finally:
                self._weights = None
            self.events_total += n - 1 - kept[-1] if kept else n
            return out
        ts = self._event_times(events)
        if self.performance is not None:
            # Every prediction can be labelled, including those that build the reference.
            self.performance.add_predictions(
                events.event_ids,
                events.predictions,
                events.timestamps,
                now if now is not None else float(ts.max()),
            )
        start = 0
        if self.reference is None:
            start = self._learn(events)
            if start >= n:
                return []
            events = _slice(events, start, n)
            n = len(events)
        if events.columns is not None:
            num, cat = self._columnar_matrices(events, events.columns)
            self.unknown_feature_events += events.columns.unknown
        else:
            num, num_complete = self._numeric_matrix(events)
            cat, cat_complete = self._categorical_matrix(events)
            known = self._known_features
            feats = events.features
            # Every known key present and exactly as many keys as known: nothing unknown, and
            # counting key totals is one C-level pass instead of a set test per event.
            if not (num_complete and cat_complete and sum(map(len, feats)) == n * len(known)):
                self.unknown_feature_events += sum(1 for f in feats if not f.keys() <= known)
        ts = ts[start:]
        if self.settings.window.type == "count":
            return self._ingest_count(num, cat, ts)
        return self._ingest_time(num, cat, ts)

    def _sample(self, events: ModelEvents, kept: list[int]) -> ModelEvents:
        """The sampled events of a batch; the events left out still count in the
        unknown-feature count and, through :meth:`_advance`, in ``events_total``."""
        cols = events.columns
        if cols is not None:
            self.unknown_feature_events += cols.unknown  # of the whole batch
            cols = FeatureColumns(
                cols.numeric_names,
                cols.numeric[kept],
                cols.categorical_names,
                [[c[i] for i in kept] for c in cols.categorical],
                0,
            )
        else:
            known = self._known_features
            keep = set(kept)
            self.unknown_feature_events += sum(
                1 for i, f in enumerate(events.features) if i not in keep and not f.keys() <= known
            )
        feats = events.features
        rows = set(events.record_time_rows)
        return ModelEvents(
            model=events.model,
            event_ids=[events.event_ids[i] for i in kept],
            timestamps=[events.timestamps[i] for i in kept],
            versions=[events.versions[i] for i in kept],
            features=[feats[i] for i in kept] if feats else [],
            predictions=[events.predictions[i] for i in kept],
            partitions=events.partitions,
            columns=cols,
            record_time_rows=[j for j, i in enumerate(kept) if i in rows] if rows else [],
        )

    def _advance(self, rows: int) -> None:
        """Count ``rows`` more events of the batch in ``events_total``; with sampling, each
        also brings the events the sample left out just before it, so that an evaluation's
        ``events_total`` is its position in the whole stream, however it was batched."""
        if self._weights is None:
            self.events_total += rows
            return
        at = self._weights_at
        self.events_total += int(self._weights[at : at + rows].sum())
        self._weights_at = at + rows

    def _event_times(self, events: ModelEvents) -> np.ndarray:
        """The batch's event times for the window, advancing the model's event clock.

        The window's newest time is every evaluation's ``evaluated_at`` and
        ``window_end``, so the alert policy's ``now``. An event without a timestamp
        has its Kafka record time (``events.record_time_rows``), which is wall-clock
        time: mixed with events in their own time (a replay, a backfill, a
        producer's clock), it moved the window's end to the wall clock for as long
        as it stayed in the window, where a repeat interval "elapsed" and an
        incident started in the wrong epoch. So such an event takes the model's
        event clock instead, the newest time of an event that *carries* one, as of
        its position in the stream (so the result does not depend on batching), and
        never moves that clock. Before the model's first event time, such an event
        takes the first event time of its batch; in a batch without any, while the
        model has never seen one, the record time stands in: there is no other clock.
        """
        ts = np.asarray(events.timestamps, dtype=np.float64)
        rows = events.record_time_rows
        if not rows:
            newest = float(ts.max())
            if self._event_clock is None or newest > self._event_clock:
                self._event_clock = newest
            return ts
        own = np.ones(ts.size, dtype=bool)
        own[rows] = False
        if not own.any() and self._event_clock is None:
            return ts
        clock = np.where(own, ts, -math.inf)
        if self._event_clock is not None:
            clock[0] = max(clock[0], self._event_clock)
        elif own.any():  # before the model's first event time, the batch's is the nearest
            clock[0] = max(clock[0], ts[int(np.argmax(own))])
        clock = np.maximum.accumulate(clock)
        ts = np.where(own | (clock == -math.inf), ts, clock)
        if clock[-1] > -math.inf:
            self._event_clock = float(clock[-1])
        return ts

    def _ingest_count(self, num: np.ndarray, cat: np.ndarray, ts: np.ndarray) -> list[Evaluation]:
        step = self.settings.window.step
        out: list[Evaluation] = []
        pos, n = 0, len(ts)
        while pos < n:
            take = min(n - pos, step - self._since_eval)
            # Stream detectors see exactly the values before each evaluation point.
            self._update_stream_detectors(num[pos : pos + take])
            self.window.append(num[pos : pos + take], cat[pos : pos + take], ts[pos : pos + take])
            self._advance(take)
            self._since_eval += take
            self._since_reference_refresh += take
            pos += take
            if self._since_eval >= step:
                self._since_eval = 0
                if self.window.size >= self.window.capacity:
                    out.append(self.evaluate())
                    if (
                        self.settings.reference.mode == "previous_window"
                        and self._since_reference_refresh >= self.window.capacity
                    ):
                        # The window just evaluated becomes the reference of the next ones.
                        self._fit_detectors(self._window_profile())
                        self._since_reference_refresh = 0
        return out

    def _ingest_time(self, num: np.ndarray, cat: np.ndarray, ts: np.ndarray) -> list[Evaluation]:
        w = self.settings.window
        assert w.step_seconds is not None
        out: list[Evaluation] = []
        pos, n = 0, len(ts)
        if self._next_eval_time is None:
            self._next_eval_time = float(ts[0]) + w.step_seconds
        while pos < n:
            # Events up to the next boundary (event time); producers are roughly ordered.
            crossed = np.nonzero(ts[pos:] >= self._next_eval_time)[0]
            end = pos + int(crossed[0]) if crossed.size else n
            self._update_stream_detectors(num[pos:end])
            self.window.append(num[pos:end], cat[pos:end], ts[pos:end])
            self._advance(end - pos)
            pos = end
            if crossed.size:
                out.append(self.evaluate(since=self._next_eval_time - (w.seconds or 0.0)))
                # Skip boundaries with no events (a gap in the stream) in one step.
                gap = max(0.0, float(ts[pos]) - self._next_eval_time) if pos < n else 0.0
                self._next_eval_time += w.step_seconds * (1 + math.floor(gap / w.step_seconds))
        return out

    def _update_stream_detectors(self, num: np.ndarray) -> None:
        """Queue rows for the stream detectors; :meth:`_flush_stream` feeds them.

        Stream detectors are only read by :meth:`evaluate`, so their input can
        wait for it: one ``update`` per column and evaluation step, however the
        step's events were batched (with many models, a batch holds a few dozen
        events of each, and a call per column per batch costs more than the
        values). The values and their order are the same, so are the detections.
        """
        self._stream_pending.append(num)

    def _flush_stream(self) -> None:
        pending = self._stream_pending
        if not pending:
            return
        num = pending[0] if len(pending) == 1 else np.concatenate(pending)
        self._stream_pending = []
        complete = not np.isnan(num).any()
        for j, name in enumerate(self.numeric_columns):
            dets = self.detectors.get(name)
            if not dets:
                continue
            col = num[:, j]
            if not complete:
                col = col[~np.isnan(col)]
            if col.size:
                for d in dets:
                    d.update(col)

    def _learn(self, events: ModelEvents) -> int:
        """Collect reference rows; build the reference when complete. Returns events consumed."""
        need = self._learn_target - len(self._learn_rows)
        take = min(need, len(events))
        self._learn_rows.extend(zip(events.features[:take], events.predictions[:take], strict=True))
        self._advance(take)
        if len(self._learn_rows) >= self._learn_target:
            rows, self._learn_rows = self._learn_rows, []
            profile = build_profile(
                self.name,
                rows,
                schema=self.settings.features,
                prediction=self.settings.prediction,
                max_sample=self.settings.reference.max_sample,
                max_categories=self.limits.max_categories_per_feature,
                model_version=self.model_version,
                source=f"first {len(rows)} events",
            )
            if len(profile.features) > self.limits.max_features_per_model + 1:
                keep = list(profile.features.items())[: self.limits.max_features_per_model]
                if PREDICTION in profile.features:
                    keep.append((PREDICTION, profile.features[PREDICTION]))
                profile.features = dict(keep)
            self._set_reference(profile)
            self._learned = True
        return take

    # ----------------------------------------------------------------- evaluate

    def evaluate(self, since: float | None = None) -> Evaluation:
        """Summaries, detector results, verdicts and signals for the current window."""
        self._flush_stream()
        num = self.window.numeric()
        cat = self.window.categorical()
        ts = self.window.timestamps()
        mask = None if since is None else ts >= since
        if mask is not None:
            num, cat, ts = num[mask], cat[mask], ts[mask]
        w = self.window
        self._ranks.sync(w.numeric().T, w.head, w.capacity, w.total)
        counts = self._ranks.counts(mask)
        sorted_cols: list[np.ndarray | None]
        if self._ranks.complete:  # every window test reads rank counts: nothing sorts
            num_summaries = summarize_numeric_unsorted(
                num, order_statistics=self._ranks.order_statistics
            )
            sorted_cols = [None] * len(counts)
        else:
            num_summaries, sorted_cols = summarize_numeric(num)  # type: ignore[assignment]
        cat_summaries = summarize_categorical(
            cat, [len(self.categories[c]) for c in self.categorical_columns], self._reference_sizes
        )
        results: dict[str, list[DetectorResult]] = {}
        for name, summary, values, c in zip(
            self.numeric_columns, num_summaries, sorted_cols, counts, strict=True
        ):
            if summary.count >= MIN_VALUES_FOR_TESTS:
                results[name] = [evaluate_window(d, values, c) for d in self.detectors[name]]
        for name, summary in zip(self.categorical_columns, cat_summaries, strict=True):
            if summary.count >= MIN_VALUES_FOR_TESTS:
                results[name] = [d.evaluate(summary.counts) for d in self.detectors[name]]
        label_results = self._label_drift()
        if label_results:
            results[LABEL] = label_results
        verdicts = self.tracker.observe(results)
        self.evaluations += 1
        # Event times: an event without a timestamp has the clock's time (see _event_times).
        start, end = (float(ts.min()), float(ts.max())) if len(ts) else (0.0, 0.0)
        ctx = EvaluationContext(
            model=self.name,
            model_version=self.model_version,
            evaluated_at=end,
            window_start=start,
            window_end=end,
            window_events=len(ts),
            events_total=self.events_total,
            evaluation_seq=self.evaluations,
        )
        numeric = dict(zip(self.numeric_columns, num_summaries, strict=True))
        categorical = dict(zip(self.categorical_columns, cat_summaries, strict=True))
        perf = self.performance.snapshot() if self.performance is not None else {}
        signals = self._signals(verdicts, numeric, categorical)
        if self.performance is not None:
            signals.extend(self.performance.signals(self.name, perf))
        evaluation = Evaluation(
            context=ctx,
            numeric=numeric,
            categorical=categorical,
            categories={c: list(self.categories[c]) for c in self.categorical_columns},
            results=results,
            verdicts=verdicts,
            signals=signals,
            performance=perf,
        )
        self.last = evaluation
        return evaluation

    def _signals(
        self,
        verdicts: dict[str, FeatureVerdict],
        numeric: dict[str, NumericSummary],
        categorical: dict[str, CategoricalSummary],
    ) -> list[Signal]:
        out: list[Signal] = []
        for name, v in verdicts.items():
            head = headline(v.results)
            details: dict[str, float | str | None] = {r.detector: r.statistic for r in v.results}
            if head is not None and head.p_value is not None:
                details["p_value"] = head.p_value
            out.append(
                Signal(
                    model=self.name,
                    kind="drift",
                    subject=name,
                    severity=v.severity if v.drifting else "ok",
                    value=head.statistic if head else math.nan,
                    threshold=head.threshold if head else math.nan,
                    detector=head.detector if head else None,
                    details=details,
                )
            )
        q = self.settings.quality
        if q.max_missing_rate is not None:
            summaries: dict[str, NumericSummary | CategoricalSummary] = {**numeric, **categorical}
            for name, s in summaries.items():
                rate = s.missing_rate
                out.append(
                    Signal(
                        model=self.name,
                        kind="data_quality",
                        subject=f"missing_rate:{name}",
                        severity="warning" if rate > q.max_missing_rate else "ok",
                        value=rate,
                        threshold=q.max_missing_rate,
                    )
                )
        if q.max_unseen_category_rate is not None:
            for name, s in categorical.items():
                out.append(
                    Signal(
                        model=self.name,
                        kind="data_quality",
                        subject=f"unseen_rate:{name}",
                        severity="warning" if s.unseen_rate > q.max_unseen_category_rate else "ok",
                        value=s.unseen_rate,
                        threshold=q.max_unseen_category_rate,
                    )
                )
        return out

    # ----------------------------------------------------------------- labels

    def _label_drift(self) -> list[DetectorResult] | None:
        """Label drift: the labelled window against the first full window of labels.

        Labels arrive late and are not in reference files, so the first
        ``performance.window_size`` joined labels become the label reference;
        from then on every evaluation compares the labels of the metric window
        with it, with the window tests for the label's type (class counts for
        classifiers, values for regression).
        """
        perf = self.performance
        if perf is None:
            return None
        labels = perf.label_values()
        numeric = perf.task == "regression"
        if self._label_detectors is None:
            if labels.size < perf.config.window_size:
                return None
            reference = np.sort(labels) if numeric else np.bincount(labels.astype(np.int64))
            self._fit_label_detectors(reference)
            return None
        if labels.size < perf.config.min_window_labels:
            return None
        window = np.sort(labels) if numeric else np.bincount(labels.astype(np.int64))
        return [d.evaluate(window) for d in self._label_detectors]

    def _fit_label_detectors(self, reference: np.ndarray) -> None:
        """Fit the label-drift tests on the label reference (kept: a checkpoint saves it)."""
        perf = self.performance
        assert perf is not None
        detectors = fit_column_detectors(
            "categorical" if perf.task != "regression" else "numeric",
            reference,
            self.settings.drift,
            window_size=perf.config.window_size,
            step=self.settings.window.step,
            n_features=1,
            feature=LABEL,
            seed=_stable_seed(self.name, LABEL),
        )
        # Stream detectors would need every label through update(); the window
        # tests are what label drift is about.
        self._label_detectors = [d for d in detectors if d.name not in STREAM_DETECTORS]
        self._label_reference = reference

    def ingest_labels(self, labels: LabelEvents, now: float) -> dict[str, int]:
        """Join labels to predictions (when performance tracking is on); counts by outcome."""
        if self.performance is None:
            return {"ignored": len(labels)}
        kept = self._sampler.kept(labels.event_ids)
        not_sampled = 0
        if kept is not None:  # the labels of the predictions the sample left out go
            not_sampled = len(labels) - len(kept)
            labels = LabelEvents(
                model=labels.model,
                event_ids=[labels.event_ids[i] for i in kept],
                labels=[labels.labels[i] for i in kept],
                timestamps=[labels.timestamps[i] for i in kept],
            )
        res = self.performance.add_labels(labels.event_ids, labels.labels, labels.timestamps, now)
        out = res.counts()
        if not_sampled:
            out["not_sampled"] = not_sampled
        return out

    # ----------------------------------------------------------------- saved state

    def export_state(self, alerts: str | None = None) -> ModelState:
        """What this model observed, for a checkpoint (``alerts``: the alert engine's
        JSON document of this model). Settings and configured references are left out."""
        self._flush_pending_for_export()
        base = self._base_reference
        st = ModelState(
            model=self.name,
            settings_seen=_settings_seen(self.settings),
            reference_fingerprint=None if base is None or self._learned else base.fingerprint,
            reference_version=self.reference_version,
            reference_switches=self.reference_switches,
            learned=_pack_profile(base) if base is not None and self._learned else None,
            model_version=self.model_version,
            events_total=self.events_total,
            evaluations=self.evaluations,
            invalid_values=[(f, r, n) for (f, r), n in self.invalid_values.items()],
            unknown_feature_events=self.unknown_feature_events,
            category_overflow=dict(self.category_overflow),
            since_eval=self._since_eval,
            since_reference_refresh=self._since_reference_refresh,
            next_eval_time=self._next_eval_time,
            event_clock=self._event_clock,
            learn_rows=[(f, p) for f, p in self._learn_rows],
            label_reference=None
            if self._label_reference is None
            else pack_array(self._label_reference),
            performance=self.performance.export_state() if self.performance else None,
            alerts=alerts,
            last=None
            if self.last is None
            else msgspec.to_builtins(self.last, builtin_types=(bytes,), enc_hook=_enc_hook),
        )
        if self.reference is None:
            return st
        if self.reference is not base:
            st.comparison = _pack_profile(self.reference)
        st.numeric_columns = list(self.numeric_columns)
        st.categorical_columns = list(self.categorical_columns)
        st.categories = {c: list(v) for c, v in self.categories.items()}
        st.window = self.window.export_state()
        if self._stream_pending:
            st.stream_pending = pack_array(np.concatenate(self._stream_pending))
        fingerprint = self.reference.fingerprint
        for name, dets in self.detectors.items():
            streams = [d.export_state(fingerprint) for d in dets if isinstance(d, StreamDetector)]
            if streams:
                st.stream_detectors[name] = streams
        st.drift_runs = self.tracker.export_runs()
        return st

    def _flush_pending_for_export(self) -> None:
        """Merge the queued stream rows into one array (same values, same order)."""
        if len(self._stream_pending) > 1:
            self._stream_pending = [np.concatenate(self._stream_pending)]

    @classmethod
    def restore(
        cls,
        settings: ResolvedModel,
        limits: LimitsConfig,
        state: ModelState,
        reference: ReferenceProfile | None = None,
        version_references: dict[str, ReferenceProfile] | None = None,
    ) -> tuple[ModelMonitor, list[str]]:
        """A monitor built from the configured settings and reference, with ``state`` adopted.

        Returns the monitor and one note per kind of change found between what the
        state was computed with and the configuration (for the caller to log).
        The rules, per kind of change, are in docs/GUARANTEES.md ("State across
        restarts"). Raises :class:`~monitor.state_format.StateFormatError` when
        the state is inconsistent in itself.
        """
        mm = cls(settings, limits, None, version_references)
        notes = _settings_notes(state.settings_seen, settings)
        # 1. The base reference: the configured one wins; else the learned one.
        base: ReferenceProfile | None = None
        saved_fp = state.reference_fingerprint
        if state.learned is not None:
            saved_fp = state.learned.fingerprint
        # One note for everything about the reference: (a) why, (b) what it does to the state.
        why = ""
        if state.reference_version is not None:
            base = mm.version_references.get(state.reference_version)
            if base is None:
                why = (
                    f"model_version {state.reference_version!r} no longer has a reference in "
                    "the config; back to the model's main reference; "
                )
            else:
                mm.reference_version = state.reference_version
        if base is None and reference is not None:
            base = reference
        learned = False
        if base is None and state.learned is not None:
            base = _unpack_profile(state.learned)
            learned = True
        if base is None and saved_fp is not None:
            notes.append(
                f"reference: {why}none is configured any more; learning one again from the "
                f"next {mm._learn_target} events (window and drift state dropped)"
            )
        ref_changed = base is not None and saved_fp is not None and base.fingerprint != saved_fp
        if ref_changed:
            assert base is not None
            notes.append(
                f"reference: {why}fingerprint {saved_fp} -> {base.fingerprint}: drift "
                "persistence and stream-detector state computed against the old one dropped; "
                "the window is kept and evaluated against the new one at its next evaluation"
            )
        elif why:
            notes.append("reference: " + why.rstrip("; "))
        if base is not None and saved_fp is None and state.learn_rows:
            notes.append(
                f"reference: configured now; the {len(state.learn_rows)} events collected to "
                "learn one are not used"
            )
        mm.model_version = state.model_version
        mm.events_total = state.events_total
        mm.evaluations = state.evaluations
        mm.reference_switches = state.reference_switches
        mm.unknown_feature_events = state.unknown_feature_events
        if state.last is not None:
            try:
                mm.last = msgspec.convert(state.last, Evaluation, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                raise StateFormatError("corrupt", f"last evaluation: {exc}") from exc
        if base is None:
            mm._learn_rows = [(f, p) for f, p in state.learn_rows if isinstance(f, dict)]
            mm._learn_rows = mm._learn_rows[: mm._learn_target]
        else:
            mm._set_reference(base)
            mm._learned = learned
            if state.window is not None and saved_fp is not None:
                mm._adopt_columns(state, notes)
                mm._adopt_detectors(state, ref_changed, notes)
        mm.invalid_values = {(f, r): int(n) for f, r, n in state.invalid_values}
        mm.category_overflow = {k: int(v) for k, v in state.category_overflow.items()}
        w = settings.window
        mm._since_eval = max(0, min(state.since_eval, w.step - 1))
        mm._since_reference_refresh = max(0, state.since_reference_refresh)
        mm._next_eval_time = state.next_eval_time if w.type == "time" else None
        mm._event_clock = state.event_clock
        if mm.performance is not None and state.performance is not None:
            if state.performance.task != mm.performance.task:
                notes.append(
                    f"performance: task {state.performance.task} -> {mm.performance.task}: "
                    "performance state dropped"
                )
            else:
                notes.extend(
                    f"performance: {n}" for n in mm.performance.restore_state(state.performance)
                )
                if state.label_reference is not None:
                    mm._fit_label_detectors(unpack_array(state.label_reference))
        elif mm.performance is None and state.performance is not None:
            notes.append("performance: tracking turned off; its state dropped")
        return mm, notes

    def _adopt_columns(self, state: ModelState, notes: list[str]) -> None:
        """The saved window (and queued stream rows), mapped onto the configured columns.

        Columns are matched by name; a new column is missing in the saved rows, a
        removed one is dropped. Category codes are remapped to this monitor's
        vocabulary (the reference's categories, then those seen, in saved order).
        """
        assert state.window is not None
        saved_num, saved_cat = state.numeric_columns, state.categorical_columns
        num = unpack_array(state.window.numeric)
        cat = unpack_array(state.window.categorical)
        size = state.window.size
        if num.shape != (len(saved_num), size) or cat.shape != (size, len(saved_cat)):
            raise StateFormatError("corrupt", "window columns do not match their names")
        if (saved_num, saved_cat) != (self.numeric_columns, self.categorical_columns):
            notes.append(
                f"columns: {sorted(set(saved_num) | set(saved_cat))} -> "
                f"{sorted(set(self.numeric_columns) | set(self.categorical_columns))}: "
                "saved rows kept for the columns in both, missing for new ones"
            )
        num_idx = {n: i for i, n in enumerate(saved_num)}
        new_num = np.full((len(self.numeric_columns), size), np.nan)
        for j, name in enumerate(self.numeric_columns):
            if name in num_idx:
                new_num[j] = num[num_idx[name]]
        cat_idx = {n: i for i, n in enumerate(saved_cat)}
        new_cat = np.full((size, len(self.categorical_columns)), MISSING_CODE, dtype=np.int32)
        for j, name in enumerate(self.categorical_columns):
            if name not in cat_idx:
                continue
            saved_cats = state.categories.get(name, [])
            # Code -1 (missing) maps to itself through the last entry of the table.
            table = np.array([self._code_of(name, c) for c in saved_cats] + [MISSING_CODE])
            codes = cat[:, cat_idx[name]].astype(np.int64)
            if codes.size and (codes.min() < -1 or codes.max() >= len(saved_cats)):
                raise StateFormatError("corrupt", f"category code out of range in {name!r}")
            new_cat[:, j] = table[codes]
        self.window.restore_state(state.window, new_num, new_cat)
        if state.stream_pending is not None:
            pending = unpack_array(state.stream_pending)
            if pending.ndim != 2 or pending.shape[1] != len(saved_num):
                raise StateFormatError("corrupt", "queued stream rows of the wrong shape")
            rows = np.full((len(pending), len(self.numeric_columns)), np.nan)
            for j, name in enumerate(self.numeric_columns):
                if name in num_idx:
                    rows[:, j] = pending[:, num_idx[name]]
            self._stream_pending = [rows]

    def _adopt_detectors(self, state: ModelState, ref_changed: bool, notes: list[str]) -> None:
        """Comparison profile, stream-detector internals and drift runs, where still valid."""
        if ref_changed:
            return
        if state.comparison is not None:
            if self.settings.reference.mode == "previous_window":
                self._fit_detectors(_unpack_profile(state.comparison))
            else:
                notes.append("reference: mode is no longer previous_window; fixed reference")
        assert self.reference is not None
        why: set[str] = set()
        for name, dets in self.detectors.items():
            saved = list(state.stream_detectors.get(name, []))
            for d in dets:
                if not isinstance(d, StreamDetector):
                    continue
                match = next((s for s in saved if s.name == d.name), None)
                if match is None:
                    why.add(f"no saved {d.name} state")
                    continue
                saved.remove(match)
                reason = d.restore_state(match, self.reference.fingerprint)
                if reason is not None:
                    why.add(reason)
        if why:
            notes.append(
                "stream detectors: restarted from the reference (" + "; ".join(sorted(why)) + ")"
            )
        self.tracker.restore_runs(state.drift_runs)

    def reference_profile(self, name: str) -> FeatureProfile | None:
        return self.reference.features.get(name) if self.reference else None


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return pack_array(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(f"cannot store a {type(obj).__name__}")


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is np.ndarray:
        return unpack_array(msgspec.convert(obj, Array))
    raise NotImplementedError(f"cannot read a {kind!r}")


def _settings_seen(settings: ResolvedModel) -> SettingsSeen:
    return SettingsSeen(
        window=settings.window.model_dump_json(),
        drift=settings.drift.model_dump_json(),
        performance=settings.performance.model_dump_json(),
    )


def _settings_notes(seen: SettingsSeen, settings: ResolvedModel) -> list[str]:
    """One note per kind of setting that differs from what the state was computed with."""
    now = _settings_seen(settings)
    notes = []
    if seen.window != now.window:
        try:
            old = WindowConfig.model_validate_json(seen.window)
            what = (
                f"size {old.size} -> {settings.window.size}"
                if old.size != settings.window.size
                else "type/step changed"
            )
        except ValueError:
            what = "changed"
        notes.append(
            f"window: {what}: a larger window keeps every saved event, a smaller one the "
            "newest; the new step applies from the next event"
        )
    if seen.drift != now.drift:
        notes.append(
            "drift: detector settings changed: detectors fitted again from the reference, "
            "effective at the next evaluation"
        )
    if seen.performance != now.performance:
        notes.append("performance: settings changed: effective at once (windows resized)")
    return notes


def _pack_profile(p: ReferenceProfile) -> ProfileState:
    return ProfileState(
        model=p.model,
        features=[
            FeatureProfileState(
                name=f.name,
                kind=f.kind,
                count=f.count,
                missing_rate=f.missing_rate,
                sample=None if f.sample is None else pack_array(f.sample),
                mean=f.mean,
                std=f.std,
                min=f.min,
                max=f.max,
                quantiles=list(f.quantiles.items()),
                categories=list(f.categories),
                counts=None if f.counts is None else pack_array(f.counts),
            )
            for f in p.features.values()
        ],
        rows=p.rows,
        fingerprint=p.fingerprint,
        model_version=p.model_version,
        created_at=p.created_at,
        source=p.source,
    )


def _unpack_profile(p: ProfileState) -> ReferenceProfile:
    features = {}
    for f in p.features:
        if f.kind not in ("numeric", "categorical"):
            raise StateFormatError("corrupt", f"profile column {f.name!r} of kind {f.kind!r}")
        if (f.sample if f.kind == "numeric" else f.counts) is None:
            raise StateFormatError("corrupt", f"profile column {f.name!r} without its values")
        features[f.name] = FeatureProfile(
            name=f.name,
            kind=f.kind,  # type: ignore[arg-type]
            count=f.count,
            missing_rate=f.missing_rate,
            sample=None if f.sample is None else unpack_array(f.sample).astype(np.float64),
            mean=f.mean,
            std=f.std,
            min=f.min,
            max=f.max,
            quantiles=dict(f.quantiles),
            categories=list(f.categories),
            counts=None if f.counts is None else unpack_array(f.counts).astype(np.int64),
        )
    return ReferenceProfile(
        model=p.model,
        features=features,
        rows=p.rows,
        fingerprint=p.fingerprint,
        model_version=p.model_version,
        created_at=p.created_at,
        source=p.source,
    )


def _stable_seed(*parts: str) -> int:
    """A seed that depends only on names (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:4], "little")


def _slice(events: ModelEvents, start: int, end: int) -> ModelEvents:
    if events.columns is not None:  # never: columns only come for a settled schema
        raise MonitorError(f"model {events.model!r}: columnar events cannot be split")
    rows = events.record_time_rows
    return ModelEvents(
        model=events.model,
        event_ids=events.event_ids[start:end],
        timestamps=events.timestamps[start:end],
        versions=events.versions[start:end],
        features=events.features[start:end],
        predictions=events.predictions[start:end],
        partitions=events.partitions,
        record_time_rows=[r - start for r in rows if start <= r < end] if rows else [],
    )
