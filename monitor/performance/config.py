"""Performance-tracking settings of one model (the ``performance:`` section of a model).

Every field has a default, so omitting the section is valid and means "performance
tracking off" (``task: null``). A typical section::

    performance:
      task: binary               # binary | multiclass | regression | null (off)
      positive_class: 1          # label/prediction value meaning "positive" (binary only:
      decision_threshold: 0.5    # score >= threshold is positive   refused for other tasks)
      window_size: 5000          # labelled predictions per metric window
      join_ttl_seconds: 604800   # how long a prediction waits for its label (7 days)
      join_max_pending: 1000000  # hard cap on predictions waiting for a label
      early_label_ttl_seconds: 600
      early_label_max: 100000
      estimate: true             # CBPE estimates before labels arrive (binary only)
      labels_stale_after_seconds: 86400  # warn when no label joined for a day (event time)
      thresholds:                # ratios and Brier are fractions (0.85), refused beyond 0-1
        accuracy: {warning: 0.85, critical: 0.8}        # alert_when inferred: below
        log_loss: {warning: 0.5, critical: 0.7}         # alert_when inferred: above
        positive_rate_predicted: {warning: 0.3, alert_when: above}

How values are compared with ``positive_class`` and with each other is defined by
:func:`monitor.performance.normalize.binary_class` (``True``, ``1``, ``1.0``, ``"1"``,
``"true"`` and ``"1.0"`` are the same class; with a 0/1 positive class, a value that is
neither 0 nor 1 is rejected, not a negative).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from monitor.strict_model import StrictModel

Task = Literal["binary", "multiclass", "regression"]
AlertWhen = Literal["below", "above"]

# Metrics where a higher value is better: a threshold on them alerts when the value
# falls *below* it. Error metrics are the opposite. The rest have no natural
# direction and need an explicit ``alert_when``.
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "estimated_accuracy",
        "estimated_precision",
        "estimated_recall",
        "estimated_f1",
        "estimated_roc_auc",
    }
)
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "brier", "mae", "rmse", "mape", "smape"})

# Snapshot keys a threshold may name, per task. Per-class keys are ``"f1:<class>"``.
METRICS_BY_TASK: dict[str, frozenset[str]] = {
    "binary": frozenset(
        {
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "log_loss",
            "brier",
            "positive_rate_predicted",
            "positive_rate_label",
            "estimated_accuracy",
            "estimated_precision",
            "estimated_recall",
            "estimated_f1",
            "estimated_roc_auc",
        }
    ),
    "multiclass": frozenset(
        {"accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss"}
    ),
    "regression": frozenset({"mae", "rmse", "mape", "smape", "mean_error"}),
}
PER_CLASS_METRICS: frozenset[str] = frozenset({"precision", "recall", "f1"})

# Metrics that are fractions from 0 to 1 (docs/METRICS.md: ratios and Brier): a threshold
# outside that range is a percentage written for a fraction (accuracy: {warning: 85}) and
# would fire on every window (below) or never (above).
FRACTION_METRICS: frozenset[str] = HIGHER_IS_BETTER | {
    "brier",
    "positive_rate_predicted",
    "positive_rate_label",
}


class MetricThreshold(StrictModel):
    """Alert bounds of one metric.

    ``alert_when: below`` means the metric is bad when it drops under the bound
    (accuracy); ``above`` when it rises over it (rmse). It is inferred for metrics
    with an obvious direction and required otherwise, because guessing the direction
    of e.g. ``positive_rate_predicted`` would page on the wrong side.
    """

    model_config = ConfigDict(extra="forbid")

    warning: float | None = None
    critical: float | None = None
    alert_when: AlertWhen | None = None

    @model_validator(mode="after")
    def _at_least_one_bound(self) -> MetricThreshold:
        if self.warning is None and self.critical is None:
            raise ValueError("set at least one of warning, critical")
        return self


class PerformanceConfig(StrictModel):
    """Task type, label-join store bounds, metric windows, estimation and alert thresholds."""

    model_config = ConfigDict(extra="forbid")

    task: Task | None = Field(
        default=None, description="Kind of model; null turns performance tracking off."
    )
    positive_class: str | int | bool = Field(
        default=1,
        description="Binary only: the class that counts as positive. Labels and string "
        "predictions are compared after canonicalisation (True == 1 == 1.0 == '1' == 'true' "
        "== '1.0'); with 0 or 1 here, a class that is neither is rejected, not a negative.",
    )
    decision_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Binary: score >= threshold predicts positive."
    )
    window_size: int = Field(
        default=5000,
        ge=10,
        le=1_000_000,
        description="Realised metrics cover the last this-many labelled predictions; "
        "estimated (CBPE) metrics the last this-many predictions.",
    )
    min_window_labels: int = Field(
        default=100,
        ge=1,
        description="Below this many labelled predictions in the window no metric "
        "signal is emitted: a handful of labels would page on noise.",
    )
    join_ttl_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="A prediction waits this long (processing time) for its label.",
    )
    join_max_pending: int = Field(
        default=1_000_000,
        ge=1,
        description="Hard cap on predictions waiting for labels; the oldest are evicted.",
    )
    join_max_tombstones: int = Field(
        default=200_000,
        ge=0,
        description="Event ids remembered after labelling (to spot duplicate labels) and "
        "after eviction (to tell 'expired' from 'unknown'); each set is capped at this.",
    )
    early_label_ttl_seconds: float = Field(
        default=600.0,
        ge=0,
        description="Labels arriving before their prediction are held this long.",
    )
    early_label_max: int = Field(
        default=100_000, ge=0, description="Cap on held early labels; 0 disables holding."
    )
    estimate: bool = Field(
        default=True,
        description="Binary: estimate metrics from calibrated scores (CBPE) before labels.",
    )
    max_classes: int = Field(
        default=100,
        ge=2,
        le=10_000,
        description="Multiclass: classes tracked; events of further classes are rejected.",
    )
    max_exported_classes: int = Field(
        default=20,
        ge=0,
        description="Multiclass: per-class metrics are exported for at most this many "
        "classes (in class order) to keep metric label cardinality bounded.",
    )
    error_drift: bool = Field(
        default=True,
        description="Run ADWIN over the per-event error stream to catch sudden drops "
        "without waiting for the window to fill with bad predictions.",
    )
    error_drift_delta: float = Field(
        default=1e-5,
        gt=0,
        lt=1,
        description="ADWIN confidence on the error stream: 1e-5, as for features (river's 0.002 "
        "raised about one false change per million stationary values; see BENCHMARKS.md "
        "'Performance incidents' for the error stream's own figures).",
    )
    error_drift_severity: Literal["warning", "critical"] = "warning"
    mape_min_abs_label: float = Field(
        default=0.0,
        ge=0,
        description="Regression: labels whose magnitude is at most this are left out of MAPE "
        "(counted in mape_excluded). 0: zero labels only. A label near zero makes its "
        "percentage error absurd (1e-9 -> 1e9 x the error), but what is near zero depends on "
        "the label's unit, so set it in that unit (e.g. 0.01 for amounts in currency units); "
        "smape, bounded by 2, is reported beside MAPE either way.",
    )
    labels_stale_after_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Alert (warning) when the newest joined label is older than this, in "
        "event time: the newest prediction's time minus the newest joined label's. Off by "
        "default: a sound value is the usual gap between labels plus slack, from minutes to "
        "months by model, and no default fits (the age is exported either way).",
    )
    thresholds: dict[str, MetricThreshold] = Field(
        default_factory=dict,
        description="Alert bounds keyed by snapshot metric name (e.g. accuracy, f1:cat).",
    )

    @field_validator("positive_class")
    @classmethod
    def _finite_positive_class(cls, value: str | int | bool) -> str | int | bool:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _binary_settings_need_a_binary_task(self) -> PerformanceConfig:
        """``positive_class`` and ``decision_threshold`` mean something for a binary task
        only: written for a multiclass or regression model they were silently ignored, and
        the operator believed e.g. recall was of that class. Refused, naming them."""
        given = [k for k in ("positive_class", "decision_threshold") if k in self.model_fields_set]
        if given and self.task != "binary":
            raise ValueError(
                f"{', '.join(given)}: applies to binary tasks only (task is {self.task}); "
                "remove it, or set task: binary"
            )
        if "mape_min_abs_label" in self.model_fields_set and self.task != "regression":
            raise ValueError(
                f"mape_min_abs_label: applies to regression tasks only (task is {self.task}); "
                "remove it, or set task: regression"
            )
        return self

    @model_validator(mode="after")
    def _min_labels_fit_the_window(self) -> PerformanceConfig:
        """The window holds at most ``window_size`` labelled predictions: a larger
        ``min_window_labels`` silently meant no performance signal ever."""
        if self.min_window_labels > self.window_size:
            raise ValueError(
                f"min_window_labels ({self.min_window_labels}) must be <= window_size "
                f"({self.window_size}), or no metric signal is ever emitted"
            )
        return self

    @model_validator(mode="after")
    def _check_thresholds(self) -> PerformanceConfig:
        problems: list[str] = []
        known = METRICS_BY_TASK.get(self.task or "", frozenset())
        for name, bound in self.thresholds.items():
            base, _, cls_name = name.partition(":")
            if self.task is None:
                problems.append(f"thresholds.{name}: performance task is not set")
                continue
            if cls_name:
                if self.task != "multiclass" or base not in PER_CLASS_METRICS:
                    problems.append(f"thresholds.{name}: per-class metrics exist for multiclass")
                    continue
            elif name not in known:
                problems.append(
                    f"thresholds.{name}: unknown metric for task {self.task} "
                    f"(known: {', '.join(sorted(known))})"
                )
                continue
            if name.startswith("estimated_") and not self.estimate:
                problems.append(f"thresholds.{name}: estimates are off (estimate: false)")
                continue
            if base in FRACTION_METRICS and any(
                b is not None and not 0 <= b <= 1 for b in (bound.warning, bound.critical)
            ):
                problems.append(
                    f"thresholds.{name}: {base} is a fraction from 0 to 1; write 0.85 for 85%"
                )
                continue
            direction = bound.alert_when or default_alert_when(base)
            if direction is None:
                problems.append(f"thresholds.{name}: alert_when (below|above) is required")
                continue
            if bound.warning is not None and bound.critical is not None:
                worse = (
                    bound.critical <= bound.warning
                    if direction == "below"
                    else bound.critical >= bound.warning
                )
                if not worse:
                    problems.append(
                        f"thresholds.{name}: critical must be beyond warning "
                        f"(alert_when={direction})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def unused_without_task(config: PerformanceConfig) -> list[str]:
    """The keys written in a performance section that does nothing: with no ``task`` the
    tracking is off, so e.g. ``window_size`` or ``join_ttl_seconds`` are never used. The
    operator who forgot ``task`` got no metrics and no word; the config checks name them."""
    if config.task is not None:
        return []
    return sorted(config.model_fields_set - {"task"})


def unused_settings_message(keys: list[str]) -> str:
    """Why ``keys`` of a performance section without a task are unused, and what to do."""
    return (
        f"{', '.join(keys)}: set without task, so performance tracking is off and "
        f"{'it is' if len(keys) == 1 else 'they are'} unused; set task (binary, multiclass or "
        "regression), or remove them (a model's performance section replaces the defaults' "
        "whole, task included)"
    )


def default_alert_when(metric: str) -> AlertWhen | None:
    """The alerting direction implied by a metric's name, or ``None`` if it has none."""
    base = metric.partition(":")[0]
    if base in HIGHER_IS_BETTER:
        return "below"
    if base in LOWER_IS_BETTER:
        return "above"
    return None


__all__ = [
    "MetricThreshold",
    "PerformanceConfig",
    "default_alert_when",
    "unused_settings_message",
    "unused_without_task",
]
