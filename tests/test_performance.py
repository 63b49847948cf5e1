"""Realised metrics against scikit-learn, normalisation, the tracker's window, signals, restores."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn import metrics as skm

from monitor.detectors.base import DetectorResult
from monitor.errors import ConfigError
from monitor.performance.config import PerformanceConfig
from monitor.performance.normalize import ClassIndex, normalize_labels, normalize_predictions
from monitor.performance.realised import binary_metrics, multiclass_metrics, regression_metrics
from monitor.performance.tracker import PerformanceTracker
from tests.checkpoint import through_format

TOL = 1e-9


# ----------------------------------------------------------------------------- metrics


def _sk_binary(y: np.ndarray, s: np.ndarray, t: float) -> dict[str, float]:
    pred = (s >= t).astype(int)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, s),
        "log_loss": skm.log_loss(y, y_proba=s, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, s),
        "positive_rate_predicted": pred.mean(),
        "positive_rate_label": y.mean(),
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.9])
def test_binary_metrics_match_sklearn(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    s = rng.uniform(size=n)
    if seed % 2:  # ties and exact 0/1 scores exercise rank ties and log-loss clipping
        s = np.round(s, 1)
    y = (rng.uniform(size=n) < s).astype(int)
    ours = binary_metrics(y, s, threshold)
    ref = _sk_binary(y, s, threshold)
    assert ours.keys() == ref.keys()
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=TOL), key


def test_binary_metrics_degenerate_windows() -> None:
    y = np.ones(50, dtype=int)
    s = np.linspace(0, 0.4, 50)  # nothing predicted positive, one label class only
    ours = binary_metrics(y, s, 0.5)
    assert ours["precision"] == 0.0 == skm.precision_score(y, s >= 0.5, zero_division=0)
    assert ours["recall"] == 0.0
    assert math.isnan(ours["roc_auc"])
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, y_proba=s, labels=[0, 1]), abs=TOL)
    assert binary_metrics(np.array([], int), np.array([]), 0.5) == {}


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, n = 5, 2000
    names = [f"c{i}" for i in range(k)]
    logits = rng.normal(size=(n, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in proba])
    if seed == 0:
        y[y == 4] = 3  # a class that is never a label but may be predicted
    pred = proba.argmax(axis=1)
    ours = multiclass_metrics(y, pred, names, proba=proba, max_exported_classes=10)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    for avg in ("precision", "recall", "f1"):
        fn = getattr(skm, f"{avg}_score")
        macro = fn(y, pred, average="macro", zero_division=0)
        assert ours[f"macro_{avg}"] == pytest.approx(macro, abs=TOL)
        present = np.union1d(y, pred)
        per_class = fn(y, pred, average=None, labels=present, zero_division=0)
        for cls, value in zip(present, per_class, strict=True):
            assert ours[f"{avg}:{names[cls]}"] == pytest.approx(value, abs=TOL)
    ll = skm.log_loss(y, y_proba=proba, labels=list(range(k)))
    assert ours["log_loss"] == pytest.approx(ll, abs=TOL)


def test_multiclass_export_cap_and_partial_probabilities() -> None:
    rng = np.random.default_rng(3)
    k, n = 30, 3000
    names = [f"c{i}" for i in range(k)]
    y = rng.integers(0, k, n)
    pred = np.where(rng.uniform(size=n) < 0.7, y, rng.integers(0, k, n))
    proba = np.full((n, k), np.nan)
    rows = rng.uniform(size=n) < 0.5
    raw = rng.uniform(size=(int(rows.sum()), k))
    proba[rows] = raw / raw.sum(axis=1, keepdims=True)
    ours = multiclass_metrics(y, pred, names, proba=proba, max_exported_classes=4)
    assert sum(key.startswith("f1:") for key in ours) == 4
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=TOL)
    ll = skm.log_loss(y[rows], y_proba=proba[rows], labels=list(range(k)))
    assert ours["log_loss"] == pytest.approx(ll, abs=TOL)
    assert ours["log_loss_n"] == rows.sum()


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 1500
    y = np.round(rng.normal(10, 5, n), 0)  # rounding makes some labels exactly zero
    p = y + rng.normal(0.5, 2, n)
    ours = regression_metrics(y, p)
    nz = y != 0
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=TOL)
    assert ours["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), abs=TOL)
    mape = skm.mean_absolute_percentage_error(y[nz], p[nz])
    assert ours["mape"] == pytest.approx(mape, abs=TOL)
    assert ours["mape_excluded"] == (~nz).sum()
    assert ours["mean_error"] == pytest.approx(float(np.mean(p - y)), abs=TOL)


def test_mape_all_zero_labels_is_nan() -> None:
    out = regression_metrics(np.zeros(3), np.ones(3))
    assert math.isnan(out["mape"]) and out["mape_excluded"] == 3 and out["mae"] == 1.0


# ----------------------------------------------------------------------------- normalisation


def test_binary_prediction_normalisation_reasons() -> None:
    raw = [0.2, 1, True, "1", "0", {"1": 0.7, "0": 0.3}, {"a": 1.0}, 1.5, float("nan"), None, [1]]
    out = normalize_predictions(raw, "binary", positive_class="1")
    assert out.valid.tolist() == [True] * 6 + [False] * 5
    assert out.values.tolist() == [0.2, 1.0, 1.0, 1.0, 0.0, 0.7]
    assert out.rejected == {
        "missing_positive_class_score": 1,
        "score_out_of_range": 1,
        "non_finite": 1,
        "missing": 1,
        "unexpected_type": 1,
    }


def test_numeric_array_fast_path_matches_object_path() -> None:
    arr = np.array([0.1, np.nan, 2.0, 0.9, -0.1])
    fast = normalize_predictions(arr, "binary")
    slow = normalize_predictions(arr.tolist(), "binary")
    assert fast.valid.tolist() == slow.valid.tolist() == [True, False, False, True, False]
    assert fast.values.tolist() == slow.values.tolist()
    assert fast.rejected == slow.rejected == {"non_finite": 1, "score_out_of_range": 2}


def test_regression_rejects_strings_bools_and_objects() -> None:
    out = normalize_predictions([1.5, "cat", True, {"a": 1}, float("inf")], "regression")
    assert out.values.tolist() == [1.5]
    assert out.rejected == {"not_a_number": 2, "unexpected_type": 1, "non_finite": 1}
    labels = normalize_labels(np.array([1.0, np.inf]), "regression")
    assert labels.rejected == {"non_finite": 1}


def test_multiclass_normalisation_learns_classes_up_to_cap() -> None:
    classes = ClassIndex(max_classes=3, classes=["cat"])
    out = normalize_predictions(
        ["dog", {"cat": 2.0, "bird": 6.0}, 2, 2.5, "fish", {"x": 1.0, "y": 1.0}],
        "multiclass",
        classes=classes,
    )
    assert classes.names == ["cat", "dog", "bird"]
    assert out.values.tolist() == [1, 2]
    assert out.proba is not None
    assert np.isnan(out.proba[0]).all()
    assert out.proba[1].tolist() == [0.25, 0.0, 0.75]
    assert out.rejected == {"too_many_classes": 3, "non_integer_class": 1}


def test_label_normalisation_positive_class_spellings() -> None:
    out = normalize_labels(["yes", "no", True, 1], "binary", positive_class="yes")
    assert out.values.tolist() == [1, 0, 0, 0]


# ----------------------------------------------------------------------------- tracker


def _binary_stream(seed: int, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=n)
    labels = (rng.uniform(size=n) < scores).astype(int)
    return [f"e{seed}-{i}" for i in range(n)], scores, labels


def test_tracker_window_holds_last_labelled_and_matches_sklearn() -> None:
    cfg = PerformanceConfig(task="binary", window_size=500, error_drift=False)
    t = PerformanceTracker(cfg)
    ids, scores, labels = _binary_stream(1, 2000)
    for start in range(0, 2000, 300):  # batches that wrap the ring at odd offsets
        sl = slice(start, start + 300)
        t.add_predictions(ids[sl], scores[sl].tolist(), None, now=float(start))
    # Labels come back shuffled; the window keeps the last 500 *joined*.
    order = np.random.default_rng(2).permutation(2000)
    for start in range(0, 2000, 170):
        sel = order[start : start + 170]
        res = t.add_labels([ids[i] for i in sel], labels[sel].tolist(), None, now=3000.0)
        assert res.matched == len(sel)
    last = order[-500:]
    snap = t.snapshot()
    ref = _sk_binary(labels[last], scores[last], 0.5)
    for key, value in ref.items():
        assert snap[key] == pytest.approx(value, abs=TOL), key
    assert snap["window_labels"] == 500
    assert snap["join_pending"] == 0
    assert snap["estimated_n"] == 500  # CBPE window: last 500 predictions


def test_tracker_multiclass_dict_predictions_and_log_loss() -> None:
    rng = np.random.default_rng(5)
    names = ["a", "b", "c"]
    n = 800
    logits = rng.normal(size=(n, 3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in proba])
    preds = [dict(zip(names, row.tolist(), strict=True)) for row in proba]
    t = PerformanceTracker(PerformanceConfig(task="multiclass", error_drift=False))
    ids = [str(i) for i in range(n)]
    t.add_predictions(ids, preds, None, now=0.0)
    t.add_labels(ids, [names[i] for i in y], None, now=1.0)
    snap = t.snapshot()
    assert t.classes is not None and t.classes.names == names
    pred = proba.argmax(axis=1)
    assert snap["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    assert snap["f1:b"] == pytest.approx(skm.f1_score(y, pred, average=None)[1], abs=TOL)
    ll = skm.log_loss(y, y_proba=proba, labels=[0, 1, 2])
    assert snap["log_loss"] == pytest.approx(ll, abs=TOL)


def test_tracker_multiclass_learns_class_after_stored_probabilities() -> None:
    t = PerformanceTracker(PerformanceConfig(task="multiclass", error_drift=False))
    t.add_predictions(["1", "2"], [{"a": 0.9, "b": 0.1}, "c"], None, now=0.0)
    t.add_predictions(["3"], [{"a": 0.2, "c": 0.8}], None, now=0.0)
    t.add_labels(["1", "2", "3"], ["a", "c", "c"], None, now=1.0)
    snap = t.snapshot()
    assert snap["accuracy"] == 1.0
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert snap["log_loss"] == pytest.approx(expected, abs=TOL)
    assert snap["log_loss_n"] == 2


def test_tracker_multiclass_refuses_class_names_too_long_to_store() -> None:
    """A class name is a metric label, a key of /api/status and part of the checkpoint: one
    event with a 400 KB class put 400 KB into each (three times on /metrics); it is rejected
    by reason instead, as a prediction, a label or a class-score key."""
    huge = "Z" * 400_000
    t = PerformanceTracker(PerformanceConfig(task="multiclass", error_drift=False))
    res = t.add_predictions(["1", "2", "3"], ["a", huge, {huge: 0.6, "a": 0.4}], None, now=0.0)
    assert res.accepted == 1
    assert res.rejected == {"class_too_long": 2}
    lab = t.add_labels(["1", "2"], [huge, "a"], None, now=1.0)
    assert lab.counts()["invalid:class_too_long"] == 1
    assert t.classes is not None and t.classes.names == ["a"]
    assert max(map(len, t.snapshot())) < 1000
    # The bound is the model name's: a name of 200 characters is still a class.
    ok = "c" * 200
    assert t.add_predictions(["4"], [ok], None, now=2.0).accepted == 1
    assert ok in t.classes.names


def test_tracker_rejects_by_reason_and_counts() -> None:
    t = PerformanceTracker(PerformanceConfig(task="regression", error_drift=False))
    res = t.add_predictions(["a", "b", "c"], [1.0, "x", None], [10.0, 11.0, 12.0], now=0.0)
    assert res.accepted == 1 and res.rejected == {"not_a_number": 1, "missing": 1}
    res = t.add_labels(["a", "zz"], [2.0, "oops"], None, now=1.0)
    assert res.counts()["matched"] == 1 and res.counts()["invalid:not_a_number"] == 1
    assert t.counts()["invalid_prediction:not_a_number"] == 1
    assert t.snapshot()["mean_error"] == -1.0


def test_task_none_is_refused() -> None:
    with pytest.raises(ConfigError):
        PerformanceTracker(PerformanceConfig())


# ----------------------------------------------------------------------------- signals


def _labelled_tracker(cfg: PerformanceConfig, n: int, seed: int = 0) -> PerformanceTracker:
    t = PerformanceTracker(cfg)
    ids, scores, labels = _binary_stream(seed, n)
    t.add_predictions(ids, scores, None, now=0.0)
    t.add_labels(ids, labels, None, now=1.0)
    return t


def test_signals_graded_by_thresholds() -> None:
    cfg = PerformanceConfig(
        task="binary",
        error_drift=False,
        thresholds={
            "accuracy": {"warning": 0.99, "critical": 0.9},  # realised ~0.75: critical
            "log_loss": {"warning": 0.55},  # ~0.5: ok
            "positive_rate_predicted": {"warning": 0.4, "alert_when": "above"},  # ~0.5
        },
    )
    t = _labelled_tracker(cfg, 2000)
    by_subject = {s.subject: s for s in t.signals("credit-risk")}
    assert by_subject["accuracy"].severity == "critical"
    assert by_subject["accuracy"].threshold == 0.9
    assert by_subject["log_loss"].severity == "ok"
    assert by_subject["positive_rate_predicted"].severity == "warning"
    assert all(s.kind == "performance" and s.model == "credit-risk" for s in by_subject.values())


def test_no_metric_signal_below_min_window_labels() -> None:
    cfg = PerformanceConfig(
        task="binary",
        error_drift=False,
        min_window_labels=100,
        thresholds={"accuracy": {"warning": 0.99}},
    )
    assert _labelled_tracker(cfg, 99).signals("m") == []
    assert len(_labelled_tracker(cfg, 100).signals("m")) == 1


@pytest.mark.parametrize(
    "thresholds",
    [
        {"mae": {"warning": 1.0}},  # not a binary metric
        {"positive_rate_label": {"warning": 0.1}},  # no natural direction
        {"accuracy": {"warning": 0.8, "critical": 0.9}},  # critical not beyond warning
        {"accuracy": {}},  # no bound
        {"f1:cat": {"warning": 0.5}},  # per-class on a binary model
    ],
)
def test_invalid_thresholds_rejected(thresholds: dict) -> None:
    with pytest.raises(ValidationError):
        PerformanceConfig(task="binary", thresholds=thresholds)


def test_threshold_on_estimate_needs_estimation_on() -> None:
    with pytest.raises(ValidationError):
        PerformanceConfig(
            task="binary", estimate=False, thresholds={"estimated_f1": {"warning": 1}}
        )


def test_config_defaults_and_extra_forbidden() -> None:
    cfg = PerformanceConfig()
    assert cfg.task is None and cfg.window_size == 5000 and cfg.join_ttl_seconds == 604800
    with pytest.raises(ValidationError):
        PerformanceConfig(task="binary", windw_size=10)
    PerformanceConfig(task="multiclass", thresholds={"f1:cat": {"warning": 0.5}})


# ----------------------------------------------------------------------------- error drift


class FakeStreamDetector:
    """Latches when a batch's mean error exceeds 0.5; the ADWIN stand-in for unit tests."""

    name: ClassVar[str] = "fake"
    supports: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.flag = False

    def fit(self, reference: np.ndarray) -> None:
        self.seen, self.flag = [], False

    def update(self, values: np.ndarray) -> None:
        self.seen.extend(values.tolist())
        self.flag |= bool(values.mean() > 0.5)

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        drifted, self.flag = self.flag, False
        sev = "warning" if drifted else "ok"
        return DetectorResult("fake", float(drifted), None, 1.0, drifted, sev, {"shift": 0.4})


def test_error_stream_fed_and_latched_until_signals() -> None:
    fake = FakeStreamDetector()
    t = PerformanceTracker(PerformanceConfig(task="binary"), error_detector=fake)
    t.add_predictions(["a", "b", "c"], [0.9, 0.1, 0.8], None, now=0.0)
    t.add_labels(["a", "b"], [1, 0], None, now=1.0)
    assert fake.seen == [0.0, 0.0] and not t.error_drift
    t.add_labels(["c"], [0], None, now=1.0)  # wrong: error 1
    assert t.error_drift and t.snapshot()["error_drift"] == 1.0
    assert t.snapshot()["error_drift"] == 1.0  # snapshot does not consume the latch
    (sig,) = t.signals("m")
    assert (sig.subject, sig.severity, sig.detector) == ("error_drift", "warning", "fake")
    assert not t.error_drift
    assert t.signals("m")[0].severity == "ok"


def test_real_adwin_catches_sudden_accuracy_drop() -> None:
    rng = np.random.default_rng(11)
    t = PerformanceTracker(PerformanceConfig(task="binary", window_size=5000))
    n = 3000
    for phase, err_rate in enumerate((0.05, 0.05, 0.5)):
        ids = [f"{phase}-{i}" for i in range(n)]
        labels = rng.integers(0, 2, n)
        wrong = rng.uniform(size=n) < err_rate
        scores = np.where(labels ^ wrong, 0.9, 0.1)
        t.add_predictions(ids, scores, None, now=0.0)
        t.add_labels(ids, labels, None, now=1.0)
        if phase == 1:
            assert not t.error_drift, "false alarm on a stable error rate"
            t.signals("m")
    assert t.error_drift
    # The window (5000 labels, 3000 bad) still shows accuracy well above the new rate.
    assert t.snapshot()["accuracy"] > 0.6


def test_tracker_checkpoint_round_trip_identical_behaviour() -> None:
    cfg = PerformanceConfig(task="binary", window_size=300)
    t = PerformanceTracker(cfg)
    ids, scores, labels = _binary_stream(4, 1000)
    t.add_predictions(ids, scores, None, now=0.0)
    t.add_labels(ids[:400], labels[:400], None, now=1.0)
    clone = PerformanceTracker(cfg)
    assert clone.restore_state(through_format(performance=t.export_state()).performance) == []
    assert clone.snapshot() == pytest.approx(t.snapshot(), nan_ok=True)  # the window came back
    for lo in range(400, 1000, 100):  # a window of 300: the saved rows leave it by 700
        for tracker in (t, clone):
            tracker.add_labels(ids[lo : lo + 100], labels[lo : lo + 100], None, now=2.0)
        assert clone.snapshot() == pytest.approx(t.snapshot(), nan_ok=True)
        assert clone.counts() == t.counts()
        assert clone.error_drift == t.error_drift


def test_multiclass_predictions_awaiting_labels_survive_a_checkpoint() -> None:
    # Pending multiclass payloads are (class index, probabilities or None) pairs: the
    # format stores them as arrays, and they must join and score as before the restore.
    cfg = PerformanceConfig(task="multiclass", error_drift=False)
    t = PerformanceTracker(cfg)
    t.add_predictions(["1", "2"], [{"a": 0.9, "b": 0.1}, "c"], None, now=0.0)
    t.add_predictions(["3"], [{"a": 0.2, "c": 0.8}], None, now=0.0)
    clone = PerformanceTracker(cfg)
    assert clone.restore_state(through_format(performance=t.export_state()).performance) == []
    for tracker in (t, clone):
        tracker.add_labels(["1", "2", "3"], ["a", "c", "c"], None, now=1.0)
    assert clone.classes is not None and clone.classes.names == ["a", "b", "c"]
    assert clone.snapshot() == pytest.approx(t.snapshot(), nan_ok=True)
    assert clone.snapshot()["log_loss_n"] == 2
    assert clone.counts() == t.counts()


def test_a_window_without_positives_does_not_page_on_recall_precision_or_f1() -> None:
    """Neither a positive label nor a positive prediction in the window (a quiet hour of a
    rare-event model, every case right): recall, precision and F1 are 0/0. Their gauges say
    0.0 (scikit-learn's ``zero_division``), but a threshold on them paged "recall 0.0" on a
    perfect window. Undefined is not graded; a positive the model misses still pages."""
    config = PerformanceConfig(
        task="binary",
        window_size=100,
        min_window_labels=10,
        thresholds={m: {"warning": 0.5} for m in ("recall", "precision", "f1", "accuracy")},
    )
    t = PerformanceTracker(config)
    ids = [f"e{i}" for i in range(50)]
    t.add_predictions(ids, [0.1] * 50, None, now=0.0)
    t.add_labels(ids, [0] * 50, None, now=0.0)
    graded = {s.subject: s.severity for s in t.evaluate("m").signals if s.subject != "error_drift"}
    assert graded == {"accuracy": "ok"}
    missed = [f"p{i}" for i in range(10)]
    t.add_predictions(missed, [0.1] * 10, None, now=0.0)
    t.add_labels(missed, [1] * 10, None, now=0.0)
    graded = {s.subject: s.severity for s in t.evaluate("m").signals if s.subject != "error_drift"}
    assert graded == {"accuracy": "ok", "recall": "warning", "f1": "warning"}
