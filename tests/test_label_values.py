"""Label and prediction values as producers really send them, graded per task.

A label is one JSON value, and producers disagree on how to spell a class: ``true``,
``1``, ``"true"``, ``"1.0"``. What a user expects is that the model's performance is the
same whichever spelling was used, and that a value the model cannot read is counted by
reason, never silently graded as something else.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.events import NATIVE_AVAILABLE, Decoder, LabelEvents, ModelEvents, RawMessage
from monitor.model_monitor import ModelMonitor
from monitor.performance.config import PerformanceConfig
from monitor.performance.normalize import normalize_labels, normalize_predictions
from monitor.performance.tracker import PerformanceTracker
from monitor.service_metrics import ModelStateCollector
from monitor.status import model_status


def _binary(**kw: object) -> PerformanceTracker:
    return PerformanceTracker(
        PerformanceConfig(
            task="binary", window_size=10, min_window_labels=1, error_drift=False, **kw
        )
    )


@pytest.mark.parametrize(
    ("positive", "negative"),
    [(True, False), ("true", "false"), ("True", "False"), ("TRUE", "FALSE"), ("1.0", "0.0")],
)
def test_binary_labels_spelled_as_strings_grade_like_numbers(
    positive: object, negative: object
) -> None:
    """Every prediction right: accuracy 1 whichever spelling the labels use (on main, the
    strings "true" and "1.0" were a class other than 1, so every positive was a negative:
    accuracy 0.5, recall 0, no counter)."""
    t = _binary()
    ids = [f"e{i}" for i in range(4)]
    t.add_predictions(ids, [0.9, 0.8, 0.1, 0.2], None, now=0.0)
    res = t.add_labels(ids, [positive, positive, negative, negative], None, now=1.0)
    assert res.matched == 4 and res.rejected == {}
    snap = t.snapshot()
    assert snap["accuracy"] == 1.0 and snap["recall"] == 1.0


def test_binary_predictions_spelled_as_strings_are_hard_predictions() -> None:
    out = normalize_predictions(["true", "False", " 1 ", "0.0", True], "binary")
    assert out.values.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0] and out.rejected == {}


def test_positive_class_configured_as_a_string_spelling() -> None:
    t = _binary(positive_class="true")
    t.add_predictions(["a", "b"], [0.9, 0.1], None, now=0.0)
    t.add_labels(["a", "b"], [1, "false"], None, now=1.0)
    assert t.snapshot()["accuracy"] == 1.0


def test_values_no_binary_class_are_rejected_by_reason_not_graded_negative() -> None:
    """A 0/1 model given 2, "yes" or "cat": counted (``invalid:not_a_binary_class`` on
    ``monitor_labels_total``), out of the window; on main each was a negative label."""
    t = _binary()
    ids = [f"e{i}" for i in range(4)]
    t.add_predictions(ids, [0.9] * 4, None, now=0.0)
    res = t.add_labels(ids, [2, "yes", "cat", 1], None, now=1.0)
    assert res.counts()["invalid:not_a_binary_class"] == 3
    assert res.matched == 1 and t.snapshot()["accuracy"] == 1.0
    preds = normalize_predictions(["yes", 2.0, "2"], "binary")
    assert preds.rejected == {"not_a_binary_class": 2, "score_out_of_range": 1}


def test_named_positive_class_keeps_every_other_class_negative() -> None:
    out = normalize_labels(["fraud", "legit", "other"], "binary", positive_class="fraud")
    assert out.values.tolist() == [1, 0, 0] and out.rejected == {}


def test_positive_class_zero() -> None:
    out = normalize_labels(["false", 0, "true", 1, "0"], "binary", positive_class="0")
    assert out.values.tolist() == [1, 1, 0, 0, 1] and out.rejected == {}


def test_predictions_the_task_cannot_grade_are_counted_on_metrics() -> None:
    """A binary model's predictions 1.5 (not a score), ``{"a": 0.3}`` (no positive-class
    score) and ``"yes"`` (no class of a 0/1 model) are left out of every performance metric;
    on main nothing on /metrics or /api/status said so."""
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "window": {"size": 100, "step": 100},
                    "reference": {"learn_first": 10},
                    "performance": {"task": "binary", "window_size": 10, "min_window_labels": 1},
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model("m"), cfg.limits)  # type: ignore[arg-type]
    events = ModelEvents("m")
    for i, pred in enumerate([0.9, 1.5, {"a": 0.3}, "yes", 0.2]):
        events.event_ids.append(f"e{i}")
        events.timestamps.append(float(i))
        events.versions.append(None)
        events.features.append({"x": float(i)})
        events.predictions.append(pred)
    mm.ingest(events)
    registry = CollectorRegistry()
    registry.register(ModelStateCollector(lambda: [mm], 20, "full"))
    got = {
        s.labels["reason"]: s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
        if s.name == "monitor_performance_invalid_predictions_total"
    }
    assert got == {
        "score_out_of_range": 1.0,
        "missing_positive_class_score": 1.0,
        "not_a_binary_class": 1.0,
    }
    # ... and on /api/status, beside the metrics they are left out of.
    rejected = model_status("m", mm, {}, {})["performance_rejected"]
    assert rejected["predictions"] == dict.fromkeys(got, 1)


def test_huge_regression_values_are_rejected_not_fed_to_the_error_detector() -> None:
    """Labels 1e308 against predictions -1e308 (valid JSON, finite): their error is
    infinite, and on main ADWIN refused it with an exception out of ``add_labels``: the
    service marks its state unsafe (a batch half-applied) and needs a restart, whose replay
    meets the same label."""
    t = PerformanceTracker(
        PerformanceConfig(task="regression", window_size=10, min_window_labels=1)
    )
    t.add_predictions(["a", "b", "c"], [-1e308, 2.0, 3.0], None, now=0.0)
    res = t.add_labels(["a", "b", "c"], [1e308, 2.5, 1e101], None, now=1.0)
    assert res.counts()["invalid:value_too_large"] == 2 and res.matched == 1
    assert t.snapshot()["mae"] == 0.5
    assert t.rejected_predictions == {"value_too_large": 1}
    # The vectorised path (numeric arrays) reads the same.
    arr = normalize_labels(np.array([1e308, -1e101, 1e100, np.inf]), "regression")
    assert arr.valid.tolist() == [False, False, True, False]
    assert arr.rejected == {"value_too_large": 2, "non_finite": 1}


@pytest.mark.parametrize("native", [False, True])
def test_both_decoders_hand_string_spellings_to_the_tracker_alike(native: bool) -> None:
    """Predictions and labels as JSON bytes, decoded by the compiled decoder (a settled
    schema) or the Python one, then graded: the same accuracy from every spelling."""
    if native and not NATIVE_AVAILABLE:
        pytest.skip("compiled decoder not installed")
    spellings = [(True, "true"), ("true", "1.0"), ("1", True), (False, "false"), ("0.0", 0)]
    preds = [
        orjson.dumps({"event_id": f"e{i}", "model": "m", "features": {"x": 1.0}, "prediction": p})
        for i, (p, _) in enumerate(spellings)
    ]
    labels = [
        orjson.dumps({"event_id": f"e{i}", "model": "m", "label": y})
        for i, (_, y) in enumerate(spellings)
    ]
    decoder = Decoder(max_message_bytes=10_000, labels_topic="labels", native=native)
    decoder.decode([RawMessage(preds[0], 1.7e9, "predictions")])  # the model is admitted
    batch = decoder.decode(
        [RawMessage(v, 1.7e9, "predictions", 0, i) for i, v in enumerate(preds)]
        + [RawMessage(v, 1.7e9, "labels", 0, i) for i, v in enumerate(labels)],
        {"m": (("x",), ())},
    )
    assert batch.native_events == (len(preds) if native else 0) and not batch.rejected
    t = _binary()
    p, lab = batch.predictions["m"], batch.labels["m"]
    t.add_predictions(p.event_ids, p.predictions, None, now=0.0)
    res = t.add_labels(lab.event_ids, lab.labels, None, now=1.0)
    assert res.matched == len(spellings) and t.snapshot()["accuracy"] == 1.0


def test_each_window_is_graded_with_the_labels_of_its_own_predictions() -> None:
    """Labels held early (they came first), then one batch of predictions across an accuracy
    drop from 0.95 to 0.70 at event 3000. On main the whole batch joined before its first
    window was evaluated, so every window of the batch, also those ending long before the
    drop, was graded with the labels after it, and the page named a window that ended 1750
    events before the drop (and hung on how the broker batched the records)."""
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "reference": {"learn_first": 500},
                    "window": {"size": 500, "step": 250},
                    "performance": {
                        "task": "binary",
                        "window_size": 500,
                        "min_window_labels": 100,
                        "error_drift": False,
                        "thresholds": {"accuracy": {"warning": 0.85, "critical": 0.8}},
                    },
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model("m"), cfg.limits)  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    n, drop = 5000, 3000
    y = rng.integers(0, 2, n)
    right = rng.uniform(size=n) < np.where(np.arange(n) < drop, 0.95, 0.70)
    pred = np.where(right, y, 1 - y)
    labels = LabelEvents("m", [f"e{i}" for i in range(n)], y.tolist())
    labels.timestamps = [float(i) for i in range(n)]
    mm.ingest_labels(labels, now=0.0)
    events = ModelEvents("m")
    for i in range(n):
        events.event_ids.append(f"e{i}")
        events.timestamps.append(float(i))
        events.versions.append(None)
        events.features.append({"x": float(rng.normal())})
        events.predictions.append(0.8 if pred[i] else 0.2)
    evaluations = mm.ingest(events, now=1.0)
    graded = [
        (ev.context.window_end, s.severity)
        for ev in evaluations
        for s in ev.signals
        if s.kind == "performance" and s.subject == "accuracy"
    ]
    assert graded, "no accuracy signal"
    before = [sev for end, sev in graded if end < drop]
    after = [sev for end, sev in graded if end >= drop + 500]
    assert before and set(before) == {"ok"}
    assert after and set(after) == {"critical"}


def test_multiclass_labels_spelled_as_float_strings_are_the_integer_classes() -> None:
    """A multiclass model predicting 0..2 whose labels came through a CSV as "1.0": the
    class 1, not a class "1.0" of its own (on main: every such label a new class, every
    prediction graded wrong, accuracy 0)."""
    t = PerformanceTracker(
        PerformanceConfig(task="multiclass", window_size=10, min_window_labels=1, error_drift=False)
    )
    t.add_predictions(["a", "b", "c", "d"], [0, 1, "2", 2.0], None, now=0.0)
    res = t.add_labels(["a", "b", "c", "d"], ["0.0", "1.0", 2, "2.00"], None, now=1.0)
    assert res.matched == 4 and res.rejected == {}
    assert t.classes is not None and t.classes.names == ["0", "1", "2"]
    assert t.snapshot()["accuracy"] == 1.0


def test_class_predictions_give_no_confidence_based_estimate() -> None:
    """A binary model that sends its decision (true/false, "1"/"0"), not a score: on main
    CBPE read those as probabilities 1.0/0.0 and estimated accuracy 1.0 for any model, so
    a threshold on estimated_accuracy could never fire. Scores alongside are still used."""
    t = _binary()
    t.add_predictions(["a", "b", "c", "d"], [True, "false", "1", False], None, now=0.0)
    assert "estimated_accuracy" not in t.snapshot()
    t.add_predictions(["e", "f"], [0.6, 0.4], None, now=0.0)
    snap = t.snapshot()
    assert snap["estimated_n"] == 2 and snap["estimated_accuracy"] == pytest.approx(0.6)


def test_minus_one_plus_one_labels_stay_graded() -> None:
    """The -1/+1 convention: -1 was a negative on main and stays one (not rejected)."""
    out = normalize_labels([-1, "-1", 1, "+1", -1.0], "binary")
    assert out.values.tolist() == [0, 0, 1, 1, 0] and out.rejected == {}
    assert normalize_labels([-1], "binary", positive_class="0").rejected == {
        "not_a_binary_class": 1
    }


@pytest.mark.parametrize("native", [False, True])
def test_regression_labels_as_numeric_strings_grade_like_numbers(native: bool) -> None:
    """Numeric strings are numbers in numeric features (README); a regression label
    ``"3.5"`` was rejected whole (``label_not_for_task``) by both decoder paths. Now read
    as the number, whichever decoder; a string that is no number is still refused."""
    if native and not NATIVE_AVAILABLE:
        pytest.skip("compiled decoder not installed")
    t = PerformanceTracker(
        PerformanceConfig(task="regression", window_size=10, min_window_labels=1)
    )
    decoder = Decoder(
        max_message_bytes=10_000,
        labels_topic="labels",
        native=native,
        check_label=lambda model, value: t.label_problem(value),
    )
    preds = [
        orjson.dumps(
            {"event_id": f"e{i}", "model": "m", "features": {"x": float(i)}, "prediction": 3.0}
        )
        for i in range(14)
    ]
    spellings: list[object] = [3.5, "3.5", " 2.5 ", "1e0", "3", "x", "nan", "1e400"]
    labels = [
        orjson.dumps({"event_id": f"e{i}", "model": "m", "label": y})
        for i, y in enumerate(spellings)
    ]
    decoder.decode([RawMessage(preds[0], 1.7e9, "predictions")])  # the model is admitted
    batch = decoder.decode(
        [RawMessage(v, 1.7e9, "predictions", 0, i) for i, v in enumerate(preds)]
        + [RawMessage(v, 1.7e9, "labels", 0, i) for i, v in enumerate(labels)],
        {"m": (("x",), ())},
    )
    assert [(r.reason, r.field) for r in batch.rejected] == [("label_not_for_task", "label")] * 3
    assert "not_a_number" in batch.rejected[0].error
    assert batch.native_events == (len(preds) if native else 0)
    p, lab = batch.predictions["m"], batch.labels["m"]
    t.add_predictions(p.event_ids, p.predictions, None, now=0.0)
    res = t.add_labels(lab.event_ids, lab.labels, None, now=1.0)
    assert res.matched == 5 and not t.rejected_labels
    snap = t.snapshot()
    assert snap["mae"] == pytest.approx((0.5 + 0.5 + 0.5 + 2.0 + 0.0) / 5)
    # Without the decoder's check (a direct caller), each bad spelling counted by reason.
    out = normalize_labels(["4", "x", "nan", "1e400", "-1e309", "1e301"], "regression")
    assert out.values.tolist() == [4.0]
    assert out.rejected == {"not_a_number": 1, "non_finite": 3, "value_too_large": 1}
