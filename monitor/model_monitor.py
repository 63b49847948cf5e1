"""One model's monitoring state, and what happens to it per batch. Pure: no I/O.

A :class:`ModelMonitor` holds one model's parts and runs a batch through them,
top-down: :class:`~monitor.columns.Columns` (wire values -> matrices, data-quality
counts), :class:`~monitor.cadence.Cadence` (the event clock; the batch cut at its
evaluation points), the :class:`~monitor.window.SlidingWindow`, the stream-detector
queue and :func:`~monitor.evaluation.window_results` (the detectors over the
window), the :class:`~monitor.drift.DriftTracker` and :func:`~monitor.drift.signals`
(the verdict), and the performance tracker with its label drift. Where the
reference comes from (learned, per version, the previous window) is
:mod:`monitor.reference_state`'s; when it changes is decided here. Evaluation
points are exact (a batch is split at step boundaries), so the same events produce
the same evaluations whatever the batching, which is what lets a restored
checkpoint reproduce an uninterrupted run. With ``sample: {rate}``, a batch is first
cut to its sample (:mod:`monitor.sampling`, by event id), and ``events_total`` still
counts every event: an evaluation's is its position in the whole stream.

What a checkpoint keeps of it is what it observed (:meth:`ModelMonitor.export_state`,
in the format of :mod:`monitor.state_format`); :meth:`ModelMonitor.restore` builds a
monitor from the *configured* settings and reference and adopts that state, so a
model's state can follow its partition to another instance, and a changed config
takes effect at restart (what happens per kind of change: docs/GUARANTEES.md).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import numpy as np
from pydantic import BaseModel

from monitor.cadence import Cadence, HeldRun
from monitor.columns import Columns
from monitor.config import LimitsConfig, ResolvedModel, WindowConfig
from monitor.detectors.streaming import StreamDetector
from monitor.drift import DriftTracker, FeatureVerdict, headline
from monitor.drift import signals as drift_signals
from monitor.errors import ReferenceError_
from monitor.evaluation import Evaluation, StreamFeed, window_results
from monitor.events import LabelEvents, ModelEvents, duration_text, utc_text
from monitor.explain import explain_drift, fold, without_explained
from monitor.multivariate import MULTIVARIATE, MultivariateMonitor
from monitor.performance.label_drift import LABEL, LabelDrift
from monitor.performance.tracker import PerformanceTracker
from monitor.reference import (
    FeatureProfile,
    ReferenceProfile,
    check_schema,
)
from monitor.reference_state import (
    ReferenceLearner,
    fit_detectors,
    pack_profile,
    stable_seed,
    unpack_profile,
    version_switch_at,
    window_profile,
)
from monitor.sampling import Sampler
from monitor.segments import SegmentMonitor
from monitor.signals import PREDICTION, EvaluationContext, Signal
from monitor.state_format import (
    Array,
    HeldRunState,
    ModelState,
    SettingsSeen,
    StateFormatError,
    pack_array,
    unpack_array,
)
from monitor.validation import RULES, Validator
from monitor.window import SlidingWindow


class ModelMonitor:
    """The monitoring state of one model."""

    def __init__(
        self,
        settings: ResolvedModel,
        limits: LimitsConfig,
        reference: ReferenceProfile | None = None,
        version_references: dict[str, ReferenceProfile] | None = None,
        *,
        explain: bool = True,
    ) -> None:
        """``explain``: fold a drift that a data-quality breach explains into the breach
        (:mod:`monitor.explain`); off where breaches are not shown (``DriftCheck``)."""
        self.settings = settings
        self.limits = limits
        self.explain = explain
        self.name = settings.name
        self.model_version: str | None = None
        self.events_total = 0
        self.evaluations = 0
        self.invalid_values: dict[tuple[str, str], int] = {}
        # Data-validation violations per (feature, rule), counted by every Validator this
        # model builds (one per reference) and checkpointed (``constraint_violations``).
        self.constraint_violations: dict[tuple[str, str], int] = {}
        self.unknown_feature_events = 0
        self.category_overflow: dict[str, int] = {}
        self.last: Evaluation | None = None
        self.cadence = Cadence(settings.window)
        self.stream = StreamFeed()  # numeric rows the stream detectors have not seen yet
        self.learner = ReferenceLearner(settings, limits)
        self.sampler = Sampler(settings.sample.rate)
        # Per kept event of a sampled batch, 1 + the events left out just before it; only
        # while that batch is ingested (see _advance).
        self._weights: np.ndarray | None = None
        self._weights_at = 0
        self.reference: ReferenceProfile | None = None
        # model_version -> profile; the monitor switches when a listed version appears.
        self.version_references = dict(version_references or {})
        self.reference_version: str | None = None
        self.reference_switches = 0
        # Versions switched to before, and the run of events of one of them (see
        # version_switch_at: a return to a used version waits for a run of its events).
        self.reference_versions_used: list[str] = []
        self.version_run: tuple[str | None, int] = (None, 0)
        self._since_reference_refresh = 0
        # The profile set by _set_reference (configured, per-version or learned); in
        # previous_window mode ``reference`` moves on to window profiles, this does not.
        self._base_reference: ReferenceProfile | None = None
        self._learned = False  # the base reference was learned from this model's events
        self.unchecked_constraints: list[str] = []  # see _set_reference
        self.performance: PerformanceTracker | None = None
        # Label outcomes decided while predictions joined (see take_label_outcomes).
        self._label_outcomes: dict[str, int] = {}
        self.label_drift: LabelDrift | None = None
        if settings.performance.task is not None:
            self.performance = PerformanceTracker(settings.performance)
            self.label_drift = LabelDrift(
                settings.drift, settings.window.step, stable_seed(self.name, LABEL)
            )
        if reference is not None:
            self._set_reference(reference)

    # ----------------------------------------------------------------- reference

    @property
    def ready(self) -> bool:
        """True once the reference is known and detectors are fitted."""
        return self.reference is not None

    def learn_progress(self) -> tuple[int, int]:
        """(events collected, events needed) while learning the reference from the stream."""
        return self.learner.progress()

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
        self.columns = Columns(
            self.name, schema, profile, self.limits, self.invalid_values, self.category_overflow
        )
        # The column lists and vocabularies are the Columns' own (the same objects).
        self.numeric_columns = self.columns.numeric_columns
        self.categorical_columns = self.columns.categorical_columns
        self.categories = self.columns.categories
        # Declared constraints on a feature this reference lacks: never checked. check-config
        # names them for a file reference; a learned one is known only now (the service warns,
        # the status shows them).
        have = {*self.numeric_columns, *self.categorical_columns}
        self.unchecked_constraints = (
            sorted(n for n in self.settings.validation.constraints if n not in have)
            if self.settings.validation.enabled
            else []
        )
        self.validator = Validator(
            self.settings.validation,
            profile,
            self.numeric_columns,
            self.categorical_columns,
            self.categories,
            self.constraint_violations,
        )
        self.multivariate = MultivariateMonitor(
            self.settings.multivariate,
            profile,
            self.numeric_columns,
            stable_seed(self.name, MULTIVARIATE),
        )
        w = self.settings.window
        self.window = SlidingWindow(
            len(self.numeric_columns), len(self.categorical_columns), w.size
        )
        self.segments = SegmentMonitor(
            self.settings.segments,
            self.settings.drift,
            w,
            self.name,
            self.columns,
            profile,
            self.limits.max_categories_per_feature,
            stable_seed,
        )
        # model_version codes beside the window's rows, for slices on it (monitor/segments.py).
        self.version_window = SlidingWindow(0, 1, w.size) if self.segments.uses_versions else None
        self._fit_detectors(profile)
        self.tracker = DriftTracker(self.settings.drift)
        self.stream = StreamFeed()  # values for the old detectors go with them
        self.cadence.reset()
        self._since_reference_refresh = 0

    def _fit_detectors(self, profile: ReferenceProfile) -> None:
        """(Re)fit every column's detectors on ``profile``; window and vocabularies stay."""
        self.reference = profile
        self.detectors = fit_detectors(self.name, profile, self.columns, self.settings)

    def _switch_reference(self, version: str) -> None:
        """A new model version with its own profile: start over against that profile.

        The window restarts too: the previous version's events say nothing about
        the new one. Open drift incidents clear through the usual hysteresis as the
        new version's evaluations come in clean.
        """
        self.reference_version = version
        self.reference_switches += 1
        self.version_run = (None, 0)
        if version not in self.reference_versions_used:
            self.reference_versions_used.append(version)
        self._set_reference(self.version_references[version])

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
        return self.columns.columnar_names

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
            cut, run = version_switch_at(
                events.versions,
                self.reference_version,
                self.version_references,
                self.reference_versions_used,
                self.version_run,
            )
            if cut is not None:
                # Split exactly at the switching event, whatever the batching (the first
                # part carries the run up to it; the switch empties it).
                out = self.ingest(events.slice(0, cut), now) if cut else []
                self._switch_reference(events.versions[cut])  # type: ignore[arg-type]
                return out + self.ingest(events.slice(cut, n), now)
            self.version_run = run
        if events.versions[-1] is not None:
            self.model_version = events.versions[-1]
        kept = self.sampler.kept(events.event_ids)  # sample: {rate} (monitor/sampling.py)
        if kept is None:
            return self._ingest_sample(events, now)
        self._count_left_out(events, kept)
        # Each kept event also counts the events left out just before it (see _advance).
        self._weights, self._weights_at = np.diff(np.asarray(kept, dtype=np.int64), prepend=-1), 0
        try:
            out = self._ingest_sample(events.take(kept), now) if kept else []
        finally:
            self._weights = None
        self.events_total += n - 1 - kept[-1] if kept else n  # those after the last kept one
        return out

    def _ingest_sample(self, events: ModelEvents, now: float | None) -> list[Evaluation]:
        """The batch's sampled events (all of them without ``sample``) through the model."""
        n = len(events)
        ts = self.cadence.event_times(events)
        # Every prediction can be labelled, including those that build the reference. Each
        # joins the tracker with its step of the window (see _step), not all at once: a
        # held (early) label of the batch's last event must not grade the window evaluated
        # at its first step, or a drop is paged with a window that ends before it happened
        # and the incident depends on how the broker batched the records.
        join_now = now if now is not None else float(ts.max())
        start = 0
        if self.reference is None:
            start = self._learn(events)
            self._track_predictions(events, 0, start, join_now)
            if start >= n:
                return []
            events = events.slice(start, n)
            n = len(events)
        num, cat, unknown = self.columns.matrices(events)
        self.unknown_feature_events += unknown
        self.validator.observe(num, cat)
        versions = (
            self.segments.version_codes(events.versions)
            if self.version_window is not None
            else None
        )
        return self._step(num, cat, ts[start:], versions, events, join_now, start)

    def _track_predictions(self, events: ModelEvents, lo: int, hi: int, now: float) -> None:
        """Predictions ``lo:hi`` of the batch into the performance tracker (label join)."""
        if self.performance is not None and hi > lo:
            res = self.performance.add_predictions(
                events.event_ids[lo:hi], events.predictions[lo:hi], events.timestamps[lo:hi], now
            )
            outcomes = self._label_outcomes
            for outcome, n in (
                ("early_matched", res.matched),
                *res.join.evictions.as_dict().items(),
            ):
                if n:
                    outcomes[outcome] = outcomes.get(outcome, 0) + n

    def take_label_outcomes(self) -> dict[str, int]:
        """The label outcomes the predictions since the last call decided, by outcome, and
        forget them (the caller counts them in ``monitor_labels_total``).

        Why: an early label's fate is decided by a later prediction: it joins when its
        prediction comes (``early_matched``), or predictions age it out
        (``early_expired``, ``early_evicted``); and predictions evict waiting predictions
        (``pending_expired``, ``pending_evicted``). :meth:`ingest_labels` returns what
        labels decided; this, what predictions did.
        """
        out, self._label_outcomes = self._label_outcomes, {}
        return out

    def _count_left_out(self, events: ModelEvents, kept: list[int]) -> None:
        """The events the sample leaves out still count in the unknown-feature count: all
        of a columnar batch (its count is of the whole batch, the sample's is 0), and, once
        the reference (so the schema) is known, those of a batch by row that carry a
        feature outside it."""
        if events.columns is not None:
            self.unknown_feature_events += events.columns.unknown
        elif self.reference is not None:
            known = self.columns.known_features
            keep = set(kept)
            self.unknown_feature_events += sum(
                1 for i, f in enumerate(events.features) if i not in keep and not f.keys() <= known
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

    def _step(
        self,
        num: np.ndarray,
        cat: np.ndarray,
        ts: np.ndarray,
        versions: np.ndarray | None = None,
        events: ModelEvents | None = None,
        now: float = 0.0,
        offset: int = 0,
    ) -> list[Evaluation]:
        """Append the batch to the window step by step, evaluating at each point
        (``events``: the batch's, whose predictions join the tracker step by step;
        ``offset``: where ``ts`` starts in the batch's event times)."""
        count = self.settings.window.type == "count"
        out: list[Evaluation] = []
        for start, end, point, since, until in self.cadence.steps(ts, offset):
            if events is not None:
                self._track_predictions(events, start, end, now)
            # Stream detectors see exactly the values before each evaluation point.
            self.stream.add(num[start:end])
            self.window.append(num[start:end], cat[start:end], ts[start:end])
            if self.version_window is not None and versions is not None:
                self.version_window.append(
                    num[start:end, :0], versions[start:end, None], ts[start:end]
                )
            self._advance(end - start)
            if not count:
                if point:
                    out.append(self.evaluate(since=since, until=until))
                continue
            self._since_reference_refresh += end - start
            if point and self.window.size >= self.window.capacity:
                out.append(self.evaluate())
                if (
                    self.settings.reference.mode == "previous_window"
                    and self._since_reference_refresh >= self.window.capacity
                ):
                    # The window just evaluated becomes the reference of the next ones.
                    self._fit_detectors(
                        window_profile(
                            self.name,
                            self.window,
                            self.columns,
                            self.reference,
                            self.settings.reference.max_sample,
                            self.model_version,
                            self.events_total,
                        )
                    )
                    self._since_reference_refresh = 0
        return out

    def _learn(self, events: ModelEvents) -> int:
        """Collect reference rows; build the reference when complete. Returns events consumed."""
        take, profile = self.learner.take(events, self.model_version)
        self._advance(take)
        if profile is not None:
            self._set_reference(profile)
            self._learned = True
        return take

    # ----------------------------------------------------------------- evaluate

    def _multivariate_signal(self, sig: Signal, verdict: FeatureVerdict) -> Signal:
        """The multivariate verdict as its own kind, naming the features that drive it."""
        details = dict(sig.details)
        known = self.tracker.heads.get(MULTIVARIATE)  # found by observe for these results
        rs = verdict.results
        head = known[1] if known is not None and known[0] is rs else headline(rs)
        if head is not None:
            details["features"] = self.multivariate.top_features(head)
        # replace(sig, kind=..., details=...) field by field, in order, without its
        # per-field introspection.
        return Signal(
            sig.model, "multivariate", sig.subject, sig.severity, sig.value, sig.threshold,
            sig.detector, details, sig.segment,
        )  # fmt: skip

    def evaluate(self, since: float | None = None, until: float | None = None) -> Evaluation:
        """Summaries, detector results, verdicts and signals for the current window (of a
        time window: its rows timed from ``since`` to before ``until``)."""
        self.stream.flush(self.numeric_columns, self.detectors)
        num = self.window.numeric()
        cat = self.window.categorical()
        ts = self.window.timestamps()
        versions = (
            self.version_window.categorical()[:, 0]
            if self.version_window is not None and self.version_window.size == self.window.size
            else None
        )
        if since is not None:
            mask = ts >= since
            if until is not None:
                mask &= ts < until
            num, cat, ts = num[mask], cat[mask], ts[mask]
            versions = versions[mask] if versions is not None else None
        numeric, categorical, results = window_results(num, cat, self.columns, self.detectors)
        results.update(self.multivariate.evaluate(num, self.window if since is None else None))
        label_results = (
            self.label_drift.evaluate(self.performance)
            if self.label_drift is not None and self.performance is not None
            else None
        )
        if label_results:
            results[LABEL] = label_results
        # Validation first: a feature's drift that its breach explains is not drift
        # (monitor/explain.py); re-tested only where a breach and a drift meet.
        quality = self.validator.evaluate(
            self.name, num, cat, (list(numeric.values()), list(categorical.values()))
        )
        explained = (
            explain_drift(
                results,
                quality,
                self.validator.rules,
                {f: c.domain for f, c in self.settings.validation.constraints.items()},
                num,
                cat,
                self.columns,
                self.detectors,
                self.tracker.correct,
            )
            if self.explain
            else {}
        )
        verdicts = self.tracker.observe(results, {f: e.rule for f, e in explained.items()})
        self.evaluations += 1
        # Event times: an event without a timestamp has the clock's time (see Cadence.event_times).
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
        perf = self.performance.snapshot() if self.performance is not None else {}
        signals = drift_signals(
            self.name, verdicts, numeric, categorical, self.settings.quality, self.tracker.heads
        )
        if MULTIVARIATE in verdicts:
            joint = verdicts[MULTIVARIATE]
            signals = [
                self._multivariate_signal(s, joint) if s.subject == MULTIVARIATE else s
                for s in signals
            ]
        # fold leaves every signal as it is when nothing is explained (the usual case).
        signals.extend((fold(s, explained) for s in quality) if explained else quality)
        # A segment is tested without the values a breach explains, as the whole was:
        # otherwise every segment pages the drift the breach already names.
        tested = without_explained(
            explained,
            self.validator.rules,
            {f: c.domain for f, c in self.settings.validation.constraints.items()},
            num,
            cat,
            self.columns,
        )
        segments, segment_signals = self.segments.evaluate(num, cat, versions, tested)
        signals.extend(segment_signals)
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
            segments=segments,
        )
        self.last = evaluation
        return evaluation

    # ----------------------------------------------------------------- labels

    def ingest_labels(self, labels: LabelEvents, now: float) -> dict[str, int]:
        """Join labels to predictions (when performance tracking is on); counts by outcome."""
        if self.performance is None:
            return {"ignored": len(labels)}
        kept = self.sampler.kept(labels.event_ids)
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
        base = self._base_reference
        st = ModelState(
            model=self.name,
            settings_seen=_settings_seen(self.settings),
            reference_fingerprint=None if base is None or self._learned else base.fingerprint,
            reference_version=self.reference_version,
            reference_switches=self.reference_switches,
            reference_versions_used=list(self.reference_versions_used),
            version_run=self.version_run[0],
            version_run_length=self.version_run[1],
            learned=pack_profile(base) if base is not None and self._learned else None,
            model_version=self.model_version,
            events_total=self.events_total,
            evaluations=self.evaluations,
            invalid_values=[(f, r, n) for (f, r), n in self.invalid_values.items()],
            constraint_violations=[(f, r, n) for (f, r), n in self.constraint_violations.items()],
            unknown_feature_events=self.unknown_feature_events,
            category_overflow=dict(self.category_overflow),
            since_eval=self.cadence.since_eval,
            since_reference_refresh=self._since_reference_refresh,
            next_eval_time=self.cadence.next_eval_time,
            event_clock=self.cadence.event_clock,
            held_jump=None if (h := self.cadence.held) is None else HeldRunState(*h),
            event_time_outliers={k: n for k, n in self.cadence.outliers.items() if n},
            learn_rows=[(f, p) for f, p in self.learner.rows],
            label_reference=None
            if self.label_drift is None or self.label_drift.reference is None
            else pack_array(self.label_drift.reference),
            performance=self.performance.export_state() if self.performance else None,
            alerts=alerts,
            last=None
            if self.last is None
            else msgspec.to_builtins(self.last, builtin_types=(bytes,), enc_hook=_enc_hook),
        )
        if self.reference is None:
            return st
        if self.reference is not base:
            st.comparison = pack_profile(self.reference)
        st.numeric_columns = list(self.numeric_columns)
        st.categorical_columns = list(self.categorical_columns)
        st.categories = {c: list(v) for c, v in self.categories.items()}
        st.window = self.window.export_state()
        pending = self.stream.rows()
        if pending is not None:
            st.stream_pending = pack_array(pending)
        fingerprint = self.reference.fingerprint
        for name, dets in self.detectors.items():
            streams = [d.export_state(fingerprint) for d in dets if isinstance(d, StreamDetector)]
            if streams:
                st.stream_detectors[name] = streams
        st.drift_runs = self.tracker.export_runs()
        st.segment_runs = self.segments.tracker.export_runs()
        if self.version_window is not None:
            st.segment_versions = list(self.segments.versions)
            if self.version_window.size == self.window.size:
                st.version_codes = pack_array(self.version_window.categorical()[:, 0])
        return st

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
            base = unpack_profile(state.learned)
            learned = True
            # Learned by a release without limits.max_category_chars (or a higher one): the
            # reference, hence the vocabulary and every later checkpoint, would keep them.
            with contextlib.suppress(ReferenceError_):  # a column of none but such values
                base.drop_long_categories(limits.max_category_chars)
            note = base.too_long_note(limits.max_category_chars)
            if note is not None:
                notes.append(f"learned reference: {note}")
        if base is None and saved_fp is not None:
            notes.append(
                f"reference: {why}none is configured any more; learning one again from the "
                f"next {mm.learner.target} events (window and drift state dropped)"
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
        # States saved before these were kept: the version in use is the one used before.
        used = state.reference_versions_used or (
            [state.reference_version] if state.reference_version is not None else []
        )
        mm.reference_versions_used = list(used)
        mm.version_run = (state.version_run, state.version_run_length)
        mm.unknown_feature_events = state.unknown_feature_events
        if state.last is not None:
            try:
                mm.last = msgspec.convert(state.last, Evaluation, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                raise StateFormatError("corrupt", f"last evaluation: {exc}") from exc
        if base is None:
            mm.learner.restore(state.learn_rows)
        else:
            mm._set_reference(base)
            mm._learned = learned
            if state.window is not None and saved_fp is not None:
                mm._adopt_columns(state, notes)
                mm._adopt_detectors(state, ref_changed, notes)
        # Replaced in place: the model's Columns count into these very dicts.
        mm.invalid_values.clear()
        mm.category_overflow.clear()
        mm.invalid_values.update({(f, r): int(n) for f, r, n in state.invalid_values})
        # The model's Validator counts into this dict too. Rule names are label values:
        # only the known ones come back (a counter of a rule the config dropped stays).
        mm.constraint_violations.clear()
        mm.constraint_violations.update(
            {(f, r): int(n) for f, r, n in state.constraint_violations if r in RULES}
        )
        mm.category_overflow.update({k: int(v) for k, v in state.category_overflow.items()})
        held = state.held_jump
        mm.cadence.restore(
            state.since_eval,
            state.next_eval_time,
            state.event_clock,
            None if held is None else HeldRun(held.ahead, held.events, held.lo, held.hi),
            state.event_time_outliers,
        )
        mm._since_reference_refresh = max(0, state.since_reference_refresh)
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
                    assert mm.label_drift is not None
                    mm.label_drift.fit(mm.performance, unpack_array(state.label_reference))
        elif mm.performance is None and state.performance is not None:
            notes.append("performance: tracking turned off; its state dropped")
        return mm, notes

    def forget_future_times(self, now: float, ahead_seconds: float) -> str | None:
        """Bring back a restored model stuck in the future; say what was done (None: nothing).

        A checkpoint written before event times were held to ``ahead_seconds`` past the
        monitor's clock may hold an event clock or a time-window boundary far ahead
        (one event stamped in the year 3000): no event crossed that boundary again, so
        the model never evaluated again, across restarts. Both are dropped (the next
        event restarts them, :meth:`Cadence.forget_future`), and the window's rows timed
        beyond the bound take the newest time before it (:meth:`SlidingWindow.clamp_times`).
        """
        latest = now + ahead_seconds
        clock, boundary = self.cadence.event_clock, self.cadence.next_eval_time
        if not self.cadence.forget_future(latest):
            return None
        rows = self.window.clamp_times(latest, now)
        if self.version_window is not None:
            self.version_window.clamp_times(latest, now)
        beyond = max(t for t in (clock, boundary) if t is not None)
        return (
            f"its saved event clock ({'none' if clock is None else utc_text(clock)}) or "
            f"next evaluation ({'none' if boundary is None else utc_text(boundary)}) is "
            f"{duration_text(beyond - now)} after the monitor's clock, beyond "
            f"limits.max_timestamp_ahead_seconds ({ahead_seconds:g} s; saved before event "
            f"times were bounded): both reset, the next event restarts them; {rows} window "
            "event(s) timed beyond it take the newest time before it"
        )

    def _adopt_columns(self, state: ModelState, notes: list[str]) -> None:
        """The saved window and queued stream rows, mapped onto the configured columns."""
        assert state.window is not None
        num, cat, pending = self.columns.adopt(state, notes)
        self.window.restore_state(state.window, num, cat)
        if pending is not None:
            self.stream.pending = [pending]
        if self.version_window is not None:
            # Laid out as the saved window, so it is reordered and cut as the window was;
            # rows without saved codes (an older state) have no version (-1).
            self.segments.restore_versions(state.segment_versions)
            size = state.window.size
            codes = np.full(size, -1, dtype=np.int32)
            if state.version_codes is not None:
                saved = unpack_array(state.version_codes)
                if saved.shape == (size,) and saved.dtype == np.int32:
                    # Codes index the saved vocabulary (-1: none); anything else was never
                    # written (a code below -1 would decode as a version that is not there).
                    if size and (saved.min() < -1 or saved.max() >= len(state.segment_versions)):
                        raise StateFormatError("corrupt", "model_version code out of range")
                    codes = np.where(saved < len(self.segments.versions), saved, -1)
            self.version_window.restore_state(
                state.window, np.empty((0, size)), codes.astype(np.int32)[:, None]
            )

    def _adopt_detectors(self, state: ModelState, ref_changed: bool, notes: list[str]) -> None:
        """Comparison profile, stream-detector internals and drift runs, where still valid."""
        if ref_changed:
            return
        if state.comparison is not None:
            if self.settings.reference.mode == "previous_window":
                self._fit_detectors(unpack_profile(state.comparison))
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
        self.segments.tracker.restore_runs(state.segment_runs)

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
        sample_rate=settings.sample.rate,
        segments=settings.segments.model_dump_json(),
        multivariate=settings.multivariate.model_dump_json(),
        validation=settings.validation.model_dump_json(),
    )


def _settings_changed(saved: str, current: BaseModel) -> bool:
    """Whether the settings ``current`` differ from the saved ones (its JSON). A key the
    saved JSON lacks (a setting added by a later release, at any depth: ``drift.psi``'s
    ``noise_alpha``) counts only if set away from its default: otherwise every restart
    after an upgrade logged "settings changed" for every model."""
    if saved == current.model_dump_json():
        return False
    try:
        old = msgspec.json.decode(saved)
    except msgspec.DecodeError:
        return True
    return _differs(old, msgspec.json.decode(current.model_dump_json()), current)


def _differs(old: Any, now: Any, current: Any) -> bool:
    """:func:`_settings_changed` on decoded JSON: ``now`` is ``current``'s (a model or
    not); keys ``old`` lacks count only away from their defaults."""
    if not isinstance(current, BaseModel) or not isinstance(old, dict):
        return bool(old != now)
    fields = type(current).model_fields
    for key in now.keys() - old.keys():
        field = fields.get(key)
        if field is None or getattr(current, key) != field.get_default(call_default_factory=True):
            return True
    if old.keys() - now.keys():
        return True
    return any(_differs(old[key], now[key], getattr(current, key, None)) for key in old)


def _settings_notes(seen: SettingsSeen, settings: ResolvedModel) -> list[str]:
    """One note per kind of setting that differs from what the state was computed with."""
    now = _settings_seen(settings)
    notes = []
    if seen.window != now.window:
        try:
            old = WindowConfig.model_validate_json(seen.window)
            if old.type != settings.window.type:
                # A time window's ``size`` is only its row cap (default 5000): "size 200 ->
                # 5000" read as a count window grown 25 times.
                what = f"type {old.type} -> {settings.window.type}"
            elif old.size != settings.window.size:
                what = f"size {old.size} -> {settings.window.size}"
            else:
                what = "type/step changed"
        except ValueError:
            what = "changed"
        notes.append(
            f"window: {what}: a larger window keeps every saved event, a smaller one the "
            "newest; the new step applies from the next event"
        )
    if _settings_changed(seen.drift, settings.drift):
        notes.append(
            "drift: detector settings changed: detectors fitted again from the reference, "
            "effective at the next evaluation"
        )
    if _settings_changed(seen.performance, settings.performance):
        notes.append("performance: settings changed: effective at once (windows resized)")
    if seen.sample_rate is not None and seen.sample_rate != now.sample_rate:
        # The samples are nested (one hash, a lower or higher cut): what changes is which
        # labels still find their prediction.
        labels = (
            "a pending prediction kept at the old rate whose label the new rate leaves out "
            "stays unlabelled until evicted"
            if now.sample_rate is not None and now.sample_rate < seen.sample_rate
            else "labels of predictions the old rate left out find none and wait as early "
            "labels until evicted"
        )
        notes.append(
            f"sample: rate {seen.sample_rate:g} -> {now.sample_rate:g}: effective from the "
            f"next event; the saved window was sampled at the old rate and is kept; {labels}"
        )
    if seen.segments is not None and seen.segments != now.segments:
        notes.append(
            "segments: settings changed: effective at the next evaluation; persistence of "
            "segments no longer tracked is dropped; a learned reference keeps the values it "
            "ranked (a lower top_k cuts them, a higher min_reference_rows drops own "
            "references; a higher top_k or lower min_reference_rows needs the reference "
            "learned again), a new slice ranks its values by the window's traffic"
        )
    if seen.multivariate is not None and seen.multivariate != now.multivariate:
        notes.append(
            "multivariate: settings changed: the components are fitted again from the "
            "reference, effective at the next evaluation"
        )
    if seen.validation is not None and seen.validation != now.validation:
        notes.append(
            "validation: settings changed: the constraints are built again (declared and "
            "inferred), effective at the next event; violation counters continue"
        )
    return notes
