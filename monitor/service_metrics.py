"""Prometheus metrics: hot-path counters, and a scrape-time collector for model state.

Two kinds, as client_python's own ``gc_collector`` does:

* :class:`ServiceMetrics`: counters and histograms updated once per *batch*
  (events consumed, invalid events by reason, batch latency, lag);
* :class:`ModelStateCollector`: at scrape time, reads each model's latest
  evaluation and cumulative counters and builds gauges (drift statistics,
  verdicts, window statistics, reference quantiles). Nothing is updated per
  event or per evaluation, and restored state is exported exactly.

Every metric goes to the registry given (never the global one). Names carry the
``monitor_`` prefix and base units; label values are bounded (model names by
``limits.max_models``, features by ``limits.max_features_per_model``, categories
by ``limits.max_exported_categories``; reasons and outcomes are fixed sets).
The full table, with units and label bounds, is docs/METRICS.md; the dashboards
(grafana/) and rules (config/prometheus/rules.yml) query these names, and
tests/test_observability.py checks them against a real Prometheus.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.detectors.base import DetectorResult
from monitor.drift import headline
from monitor.evaluation import SegmentEvaluation
from monitor.events import REASONS
from monitor.multivariate import MULTIVARIATE
from monitor.signals import SEVERITY_RANK

# Label values of the Kafka edge's counters (kept here so this module imports no adapter).
DEAD_LETTER_FAILURE_REASONS = ("too_large", "unavailable", "refused", "invalid")
DEAD_LETTER_FALLBACKS = ("marker", "dropped")
OFFSET_RESET_REASONS = ("beyond_end", "before_start")

if TYPE_CHECKING:
    from monitor.model_monitor import ModelMonitor

SEVERITY_LEVEL = SEVERITY_RANK  # the severity gauge's value is the severity's rank

#: What the model-state collector exports per feature: ``full`` (every window and reference
#: statistic) or ``verdict`` (severity, statistic and p-value only; docs/METRICS.md has the
#: series budget of each).
ExportMode = Literal["full", "verdict"]

#: Snapshot keys of the performance tracker that are bookkeeping (sample counts), not metrics:
#: exported as ``monitor_performance_samples{kind}``.
PERFORMANCE_SAMPLE_KINDS = frozenset(
    {
        "window_labels",
        "window_predictions",
        "join_pending",
        "join_early",
        "estimated_n",
        "log_loss_n",
        "mape_excluded",
    }
)


def register_process_metrics(registry: CollectorRegistry, *, version: str, native: bool) -> None:
    """``monitor_build_info`` and the standard ``process_*``/``python_*`` collectors.

    They go on ``registry`` (the module-level ``PROCESS_COLLECTOR`` etc. are on the global
    one, which we never serve). The ``_created`` series of counters and histograms are
    turned off (prometheus_client's public, process-wide switch): they would double the
    series count for a value nobody graphs, and Prometheus reads resets from the counter.
    """
    disable_created_metrics()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    info = Gauge(
        "monitor_build_info",
        "Always 1; the labels say which build runs (version, Python, compiled decoder in use).",
        ["version", "python", "native_decoder"],
        registry=registry,
    )
    info.labels(version, platform.python_version(), "true" if native else "false").set(1)


class ServiceMetrics:
    """Counters and histograms of the consume loop, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_consumed = Counter(
            "monitor_messages_consumed_total",
            "Kafka messages received, by topic.",
            ["topic"],
            registry=registry,
        )
        self.events_processed = Counter(
            "monitor_events_processed_total",
            "Valid prediction events applied to a model's window.",
            ["model"],
            registry=registry,
        )
        self.events_decoded = Counter(
            "monitor_events_decoded_total",
            "Valid prediction events by decoder: native (compiled, straight into columns) or "
            "python (not installed, turned off, a model still learning its reference, or an "
            "event the compiled decoder leaves to Python).",
            ["decoder"],
            registry=registry,
        )
        self.events_invalid = Counter(
            "monitor_events_invalid_total",
            "Messages rejected by the event contract, by topic and reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "monitor_dead_letter_messages_total",
            "Invalid messages copied to the dead-letter topic.",
            ["reason"],
            registry=registry,
        )
        self.dead_letter_failures = Counter(
            "monitor_dead_letter_failures_total",
            "Invalid messages whose full copy the dead-letter topic did not take, by reason "
            "(too_large, unavailable, refused, invalid) and what was written instead "
            "(marker: a copy without key and value; dropped: nothing).",
            ["reason", "fallback"],
            registry=registry,
        )
        self.offset_resets = Counter(
            "monitor_offset_resets_total",
            "Partitions whose stored offset the broker no longer holds, by reason "
            "(beyond_end: the log was recreated or truncated; before_start: retention "
            "deleted records not yet consumed).",
            ["reason"],
            registry=registry,
        )
        self.offset_reset_skipped = Counter(
            "monitor_offset_reset_skipped_messages_total",
            "Messages deleted by the broker before they were consumed (before_start resets).",
            registry=registry,
        )
        self.undecodable_batches = Counter(
            "monitor_undecodable_batch_errors_total",
            "Polls that failed because a record batch uses a compression codec this install "
            "cannot decode, by codec (gzip, snappy, lz4, zstd, unknown).",
            ["codec"],
            registry=registry,
        )
        self.labels = Counter(
            "monitor_labels_total",
            "Label events by join outcome (matched, unknown, expired, duplicate, early, ignored, "
            "not_sampled).",
            ["model", "outcome"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "monitor_batch_processing_seconds",
            "Time to decode and apply one polled batch (excluding the poll itself).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.batch_size = Histogram(
            "monitor_batch_messages",
            "Messages per polled batch.",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
            registry=registry,
        )
        self.event_lag = Gauge(
            "monitor_event_lag_seconds",
            "Wall-clock time minus the event time of the newest event processed, per model.",
            ["model"],
            registry=registry,
        )
        self.evaluations = Counter(
            "monitor_evaluations_total",
            "Window evaluations (detectors run) per model.",
            ["model"],
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "monitor_evaluation_seconds",
            "Time to evaluate all detectors of one model window.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "monitor_consumer_lag_messages",
            "Messages between the consumer position and the partition's high watermark.",
            ["topic", "partition"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "monitor_assigned_partitions",
            "Partitions currently assigned to this instance.",
            registry=registry,
        )
        self.rebalances = Counter(
            "monitor_rebalances_total",
            "Partition revocations and assignments seen.",
            ["kind"],
            registry=registry,
        )
        self.rebalance_discarded = Counter(
            "monitor_rebalance_discarded_messages_total",
            "Messages of a polled batch discarded because a rebalance revoked their "
            "partition before the batch was applied (their new owner reads them).",
            registry=registry,
        )
        self.commits = Counter(
            "monitor_offset_commits_total",
            "Offset commits by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "monitor_checkpoints_total",
            "State checkpoints written, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.state_not_restored = Counter(
            "monitor_state_restore_failures_total",
            "Stored model states not restored (the model started fresh), by reason; "
            "alert_state: the model was restored but its alert state started empty.",
            ["reason"],
            registry=registry,
        )
        self.state_unrestored_kept = Gauge(
            "monitor_state_unrestored_kept",
            "Stored model states that could not be restored, kept aside in the state store "
            "(SQLite backend) before their fresh model's checkpoint overwrote them.",
            registry=registry,
        )
        self.last_progress = Gauge(
            "monitor_last_poll_timestamp_seconds",
            "Wall-clock time the consume loop last completed a poll (liveness).",
            registry=registry,
        )
        self.model_disabled = Gauge(
            "monitor_model_disabled",
            "1 while a model is disabled (its events skipped), by reason: reference_unreadable, "
            "reference_mismatch (the reference does not fit the declared features), "
            "reference_invalid (a learned reference could not be built), state_newer (its "
            "stored state is a newer release's, kept untouched).",
            ["model", "reason"],
            registry=registry,
        )
        self.partition_conflicts = Counter(
            "monitor_model_partition_conflicts_total",
            "Batches in which a model's events came from a partition other than the one the "
            "model is bound to, or its labels from a labels partition of another number "
            "(producers not keying events by model).",
            ["model"],
            registry=registry,
        )
        self.events_skipped = Counter(
            "monitor_events_skipped_total",
            "Prediction and label events of a disabled model, counted and not applied, by reason "
            "(that of monitor_model_disabled).",
            ["model", "reason"],
            registry=registry,
        )
        self.loop_errors = Counter(
            "monitor_loop_errors_total",
            "Unexpected errors caught by the consume loop, by stage.",
            ["stage"],
            registry=registry,
        )
        # Outcome series exist at 0 from the start, so rate() and the alert rules on errors
        # return 0 rather than nothing before the first error.
        for outcome in ("ok", "error"):
            self.commits.labels(outcome)
            self.checkpoints.labels(outcome)
        for kind in ("revoked", "assigned"):
            self.rebalances.labels(kind)
        for stage in ("poll", "alert_outbox"):  # at 0, so that their rules see a series
            self.loop_errors.labels(stage)
        for decoder in ("native", "python"):
            self.events_decoded.labels(decoder)
        for reason in REASONS:
            self.dead_lettered.labels(reason)
        for reason in DEAD_LETTER_FAILURE_REASONS:
            for fallback in DEAD_LETTER_FALLBACKS:
                self.dead_letter_failures.labels(reason, fallback)
        for reason in OFFSET_RESET_REASONS:
            self.offset_resets.labels(reason)


class ModelStateCollector(Collector):
    """Builds per-model gauges from model state at scrape time.

    ``collect`` runs on a worker thread (``/metrics`` is rendered off the event loop)
    while the loop updates the models. It reads each model's counters through
    ``list(d.items())``, a copy CPython makes without running Python code between items,
    so under the GIL without interleaving with the loop (iterating the dict itself
    raised "dictionary changed size during iteration" when the loop added a key meanwhile);
    the evaluation (``m.last``) is read once and never changed after it is published.
    """

    def __init__(
        self,
        models: Callable[[], Iterable[ModelMonitor]],
        max_categories: int = 20,
        export: ExportMode = "full",
    ) -> None:
        self._models = models
        self._max_categories = max_categories
        self._export = export

    def describe(self) -> Iterable[Metric]:
        """The (empty) families collect() fills, without reading any model.

        The registry checks these names against every other collector's at registration,
        so a metric defined twice fails there and not at the first scrape.
        """
        return list(_Families().all())

    def collect(self) -> Iterator[Metric]:
        g = _Families()
        full = self._export == "full"
        for m in list(self._models()):
            model = m.name
            g.ready.add_metric([model], 1.0 if m.ready else 0.0)
            perf = m.settings.performance
            if perf.task is not None:
                for metric, t in perf.thresholds.items():
                    for severity in ("warning", "critical"):
                        bound = getattr(t, severity)
                        if bound is None:
                            continue
                        if ":" in metric:  # "f1:<class>": the class goes in its own label
                            name, _, cls = metric.partition(":")
                            labels = [model, name, cls, severity]
                            g.class_perf_threshold.add_metric(labels, float(bound))
                        else:
                            g.perf_threshold.add_metric([model, metric, severity], float(bound))
                if perf.labels_stale_after_seconds is not None:
                    g.perf_threshold.add_metric(
                        [model, "label_age_seconds", "warning"], perf.labels_stale_after_seconds
                    )
            g.events_total.add_metric([model], float(m.events_total))
            g.unknown_feature.add_metric([model], float(m.unknown_feature_events))
            for (feature, reason), n in m.invalid_values.copy().items():
                g.invalid_values.add_metric([model, feature, reason], float(n))
            if m.performance is not None:
                # Predictions the task cannot grade (a score outside [0, 1], a class a 0/1
                # model does not have): out of every performance metric, so counted here.
                for reason, n in m.performance.rejected_predictions.copy().items():
                    g.perf_invalid_predictions.add_metric([model, reason], float(n))
            for feature, n in m.category_overflow.copy().items():
                g.overflow.add_metric([model, feature], float(n))
            if m.settings.window.type == "time":
                for direction, n in m.cadence.outliers.copy().items():
                    g.event_time_outliers.add_metric([model, direction], float(n))
            for (feature, rule), n in (
                m.validator.violations.copy().items() if full and m.ready else ()
            ):
                g.constraint_violations.add_metric([model, feature, rule], float(n))
            ev = m.last
            if ev is None:
                continue
            g.window_events.add_metric([model], float(ev.context.window_events))
            g.window_start.add_metric([model], ev.context.window_start)
            g.window_end.add_metric([model], ev.context.window_end)
            drifting = [f for f in ev.drifting if f != MULTIVARIATE]
            g.drifting_features.add_metric([model], float(len(drifting)))
            for feature, results in ev.results.items():
                for r in results:
                    labels = [model, feature, r.detector]
                    g.statistic.add_metric(labels, _f(r.statistic))
                    if r.p_value is not None:
                        g.p_value.add_metric(labels, _f(r.p_value))
                    if not full:
                        continue
                    # A test's threshold is its significance level (compared with the
                    # p-value); a distance's is a bound on the statistic: two meanings, two
                    # metrics.
                    bound = g.alpha if r.p_value is not None else g.threshold
                    bound.add_metric(labels, _f(r.threshold))
                    g.detected.add_metric(labels, 1.0 if r.drifted else 0.0)
            for feature, v in ev.verdicts.items():
                level = SEVERITY_LEVEL[v.severity] if v.drifting else 0
                if feature == MULTIVARIATE:  # the model's features together: not a feature
                    g.multivariate_severity.add_metric([model], float(level))
                    continue
                g.drift_severity.add_metric([model, feature], float(level))
            for metric, value in ev.performance.items():
                _performance(g, model, metric, value)
            _segments(g, model, ev.segments, full)
            if not full:
                continue
            for feature, s in ev.numeric.items():
                g.values.add_metric([model, feature], float(s.count))
                g.missing.add_metric([model, feature], _f(s.missing_rate))
                g.mean.add_metric([model, feature], _f(s.mean))
                g.std.add_metric([model, feature], _f(s.std))
                g.min.add_metric([model, feature], _f(s.min))
                g.max.add_metric([model, feature], _f(s.max))
                for q, val in s.quantiles.items():
                    g.quantile.add_metric([model, feature, _q(q)], _f(val))
                ref = m.reference_profile(feature)
                if ref is not None:
                    g.ref_mean.add_metric([model, feature], _f(ref.mean))
                    for q, val in ref.quantiles.items():
                        g.ref_quantile.add_metric([model, feature, _q(q)], _f(val))
            for feature, s in ev.categorical.items():
                g.values.add_metric([model, feature], float(s.count))
                g.missing.add_metric([model, feature], _f(s.missing_rate))
                g.unseen.add_metric([model, feature], _f(s.unseen_rate))
                cats = ev.categories[feature]
                total = max(1, s.count)
                order = sorted(range(len(s.counts)), key=lambda i: -int(s.counts[i]))
                shown = order[: self._max_categories]
                rest = int(s.counts.sum()) - sum(int(s.counts[i]) for i in shown)
                shown_labels = _category_labels([cats[i] for i in shown])
                for i, label in zip(shown, shown_labels, strict=True):
                    g.share.add_metric([model, feature, label], int(s.counts[i]) / total)
                if rest:
                    g.share.add_metric([model, feature, "__rest__"], rest / total)
                ref = m.reference_profile(feature)
                if ref is not None and ref.counts is not None:
                    ref_total = max(1, int(ref.counts.sum()))
                    n_ref = min(len(ref.categories), self._max_categories)
                    for i, label in enumerate(_category_labels(ref.categories[:n_ref])):
                        g.ref_share.add_metric(
                            [model, feature, label], int(ref.counts[i]) / ref_total
                        )
        for family in g.all():
            yield _encodable_labels(family)


#: The longest category shown as a label value; the rest of a longer one is cut.
MAX_CATEGORY_LABEL_CHARS = 100


def _category_labels(categories: Iterable[str]) -> list[str]:
    """Category values from the wire as ``category`` label values: each cut to
    :data:`MAX_CATEGORY_LABEL_CHARS` (a 400 KB value was a 400 KB label, on every scrape)
    and kept apart from another alike in its first characters (``#2``, as segments do), so
    no two series of one feature share their labels."""
    out: list[str] = []
    used: set[str] = set()
    for value in categories:
        label = value
        if len(value) > MAX_CATEGORY_LABEL_CHARS:
            label = value[:MAX_CATEGORY_LABEL_CHARS] + "..."
        if label in used:
            label = next(f"{label}#{k}" for k in range(2, 10**6) if f"{label}#{k}" not in used)
        used.add(label)
        out.append(label)
    return out


def _encodable_labels(family: Metric) -> Metric:
    """``family`` with every label value encodable as UTF-8 (a lone surrogate replaced).

    The decoder rejects such strings, but a checkpoint written before it did may still
    hold one (a category, a model name); prometheus_client would raise while encoding
    the page, and ``/metrics`` would answer 500 at every scrape."""
    for i, sample in enumerate(family.samples):
        for value in sample.labels.values():
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    break
        else:
            continue
        family.samples[i] = sample._replace(  # _replace: namedtuple's public API
            labels={
                k: v.encode("utf-8", "replace").decode("utf-8") for k, v in sample.labels.items()
            }
        )
    return family


def _segments(g: _Families, model: str, segments: Iterable[SegmentEvaluation], full: bool) -> None:
    """Per segment (bounded: ``top_k + 1`` per declared slice, the labels escaped and cut in
    monitor/segments.py): its window events and drifting features; with ``full`` also each
    tested column's severity and drift score."""
    for seg in segments:
        g.segment_events.add_metric([model, seg.segment], float(seg.rows))
        g.segment_drifting.add_metric([model, seg.segment], float(len(seg.drifting)))
        if not full:
            continue
        for feature, v in seg.verdicts.items():
            labels = [model, seg.segment, feature]
            level = SEVERITY_LEVEL[v.severity] if v.drifting else 0
            g.segment_severity.add_metric(labels, float(level))
            head = headline(v.results)
            if head is not None:
                g.segment_score.add_metric(labels, _drift_score(head))


def _drift_score(r: DetectorResult) -> float:
    """log10 of how far a result is past its threshold (0 = at it), as the web UI draws it;
    a p-value of 0 (underflow) counts as 1e-300."""
    if r.p_value is not None:
        strength = r.threshold / max(r.p_value, 1e-300)
    else:
        strength = r.statistic / r.threshold if r.threshold > 0 else r.statistic
    return math.log10(strength) if strength > 0 and math.isfinite(strength) else math.nan


def _performance(g: _Families, model: str, metric: str, value: float) -> None:
    """One snapshot entry into its family: a metric, a per-class metric, or a sample count."""
    if metric in PERFORMANCE_SAMPLE_KINDS:
        g.perf_samples.add_metric([model, metric], _f(value))
    elif metric == "error_drift":
        g.error_drift.add_metric([model], _f(value))
    elif metric == "estimate_refused":
        g.estimate_refused.add_metric([model], _f(value))
    elif metric == "label_age_seconds":
        g.label_age.add_metric([model], _f(value))
    elif metric == "label_last_timestamp_seconds":
        g.label_last_timestamp.add_metric([model], _f(value))
    elif ":" in metric:  # "precision:<class>": the class goes in its own label
        name, _, cls = metric.partition(":")
        g.class_performance.add_metric([model, name, cls], _f(value))
    else:
        g.performance.add_metric([model, metric], _f(value))


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _q(q: float) -> str:
    return f"{q:g}"


class _Families:
    def __init__(self) -> None:
        mf = ["model", "feature"]
        mfd = ["model", "feature", "detector"]
        # "quantile" is reserved for summaries (promtool check metrics): the level is "q".
        mfq = ["model", "feature", "q"]
        mfc = ["model", "feature", "category"]
        G, C = GaugeMetricFamily, CounterMetricFamily
        self.ready = G(
            "monitor_model_ready",
            "1 once the model's reference is loaded or learned.",
            labels=["model"],
        )
        self.events_total = C(
            "monitor_model_events",
            "Events applied to the model (restored state included).",
            labels=["model"],
        )
        self.unknown_feature = C(
            "monitor_unknown_feature_events",
            "Events carrying features absent from the schema.",
            labels=["model"],
        )
        self.invalid_values = C(
            "monitor_feature_invalid_values",
            "Feature values recorded as missing because mistyped, non-finite or too long.",
            labels=["model", "feature", "reason"],
        )
        self.constraint_violations = C(
            "monitor_constraint_violations",
            "Values that violated a data-validation rule (monitor.validation), by rule.",
            labels=["model", "feature", "rule"],
        )
        self.overflow = C(
            "monitor_feature_category_overflow_values",
            "Values pooled into __other__ because the category cap was reached.",
            labels=mf,
        )
        self.event_time_outliers = C(
            "monitor_event_time_outliers",
            "Events of a time-window model whose own time was more than a window off its "
            "event clock, held there (monitor.cadence), by direction (ahead, behind).",
            labels=["model", "direction"],
        )
        self.window_events = G(
            "monitor_window_events",
            "Events in the window at the last evaluation.",
            labels=["model"],
        )
        self.window_start = G(
            "monitor_window_start_timestamp_seconds",
            "Event time of the oldest event in the last evaluated window.",
            labels=["model"],
        )
        self.window_end = G(
            "monitor_window_end_timestamp_seconds",
            "Event time of the newest event in the last evaluated window.",
            labels=["model"],
        )
        self.drifting_features = G(
            "monitor_drifting_features",
            "Features drifting (after correction and persistence) at the last evaluation.",
            labels=["model"],
        )
        self.statistic = G(
            "monitor_drift_statistic",
            "Detector statistic at the last evaluation (PSI, KS D, ...).",
            labels=mfd,
        )
        self.threshold = G(
            "monitor_drift_threshold",
            "Bound on the statistic of a distance detector (PSI, JS, ...): drift above it.",
            labels=mfd,
        )
        self.alpha = G(
            "monitor_drift_alpha",
            "Significance level of a hypothesis-test detector (KS, chi-square): drift when "
            "the p-value is below it.",
            labels=mfd,
        )
        self.p_value = G(
            "monitor_drift_p_value",
            "p-value of hypothesis-test detectors at the last evaluation.",
            labels=mfd,
        )
        self.detected = G(
            "monitor_drift_detected",
            "1 if the detector alone flagged drift at the last evaluation.",
            labels=mfd,
        )
        self.multivariate_severity = G(
            "monitor_multivariate_drift_severity",
            "Multivariate (PCA reconstruction) drift of the model's numeric features: "
            "0 ok, 1 warning, 2 critical.",
            labels=["model"],
        )
        self.drift_severity = G(
            "monitor_feature_drift_severity",
            "0 ok, 1 warning, 2 critical: the feature's verdict after correction and persistence.",
            labels=mf,
        )
        # Not "_count": that suffix belongs to histograms and summaries.
        self.values = G(
            "monitor_feature_values", "Present (non-missing) values in the window.", labels=mf
        )
        self.missing = G(
            "monitor_feature_missing_ratio",
            "Share of window events where the feature is missing.",
            labels=mf,
        )
        self.mean = G("monitor_feature_mean", "Mean of the feature over the window.", labels=mf)
        self.std = G(
            "monitor_feature_std", "Standard deviation (population) over the window.", labels=mf
        )
        self.min = G("monitor_feature_min", "Minimum over the window.", labels=mf)
        self.max = G("monitor_feature_max", "Maximum over the window.", labels=mf)
        self.quantile = G("monitor_feature_quantile", "Quantiles over the window.", labels=mfq)
        self.ref_mean = G(
            "monitor_reference_mean", "Mean of the feature in the reference.", labels=mf
        )
        self.ref_quantile = G(
            "monitor_reference_quantile", "Quantiles of the feature in the reference.", labels=mfq
        )
        self.unseen = G(
            "monitor_feature_unseen_category_ratio",
            "Share of window values in categories the reference never saw.",
            labels=mf,
        )
        self.share = G(
            "monitor_feature_category_share",
            "Share of each top category in the window.",
            labels=mfc,
        )
        self.perf_invalid_predictions = C(
            "monitor_performance_invalid_predictions",
            "Predictions left out of performance tracking because the model's task cannot "
            "read them, by reason (monitor.performance.normalize.REASONS).",
            labels=["model", "reason"],
        )
        self.ref_share = G(
            "monitor_reference_category_share",
            "Share of each top category in the reference.",
            labels=mfc,
        )
        self.performance = G(
            "monitor_model_performance",
            "Model performance over the labelled window (and estimates, estimated_*).",
            labels=["model", "metric"],
        )
        self.class_performance = G(
            "monitor_model_class_performance",
            "Per-class precision, recall and F1 of a multiclass model over the labelled window.",
            labels=["model", "metric", "class"],
        )
        self.perf_samples = G(
            "monitor_performance_samples",
            "Sample counts behind the performance metrics (window_labels, join_pending, ...).",
            labels=["model", "kind"],
        )
        self.error_drift = G(
            "monitor_performance_error_drift",
            "1 while ADWIN sees a shift in the model's error stream, else 0.",
            labels=["model"],
        )
        self.estimate_refused = G(
            "monitor_performance_estimate_refused",
            "1 while CBPE gives no estimate because every prediction of the window is exactly "
            "0 or 1 (classes, not probabilities), else 0; binary models with estimate on.",
            labels=["model"],
        )
        self.label_age = G(
            "monitor_label_age_seconds",
            "Event time since the newest joined label: the newest prediction's time minus the "
            "newest joined label's (before any label, minus the newest of the first batch).",
            labels=["model"],
        )
        self.label_last_timestamp = G(
            "monitor_label_last_timestamp_seconds",
            "Event time (epoch seconds) of the newest label joined to a prediction.",
            labels=["model"],
        )
        self.perf_threshold = G(
            "monitor_performance_threshold",
            "Configured alert bound of a performance metric (direction: the metric's alert_when).",
            labels=["model", "metric", "severity"],
        )
        self.class_perf_threshold = G(
            "monitor_class_performance_threshold",
            "Configured alert bound of a per-class performance metric (multiclass).",
            labels=["model", "metric", "class", "severity"],
        )

        ms = ["model", "segment"]
        self.segment_events = G(
            "monitor_segment_window_events",
            "Events of the segment (segments: in the config) in the last evaluated window.",
            labels=ms,
        )
        self.segment_drifting = G(
            "monitor_segment_drifting_features",
            "Features drifting in the segment (after correction and persistence).",
            labels=ms,
        )
        self.segment_severity = G(
            "monitor_segment_drift_severity",
            "0 ok, 1 warning, 2 critical: a feature's verdict within the segment.",
            labels=[*ms, "feature"],
        )
        self.segment_score = G(
            "monitor_segment_drift_score",
            "log10 of how far a feature's test within the segment is past its alpha (0 = at "
            "it; corrected p-value).",
            labels=[*ms, "feature"],
        )

    def all(self) -> Iterator[Metric]:
        yield from vars(self).values()
