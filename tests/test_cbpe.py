"""CBPE: estimates track realised metrics when scores are calibrated, and miss when they are not.

Tolerance (documented): on 20,000 events whose labels are Bernoulli(score), every
estimate is within 0.02 of the realised metric. The sampling standard deviation of
the realised accuracy is about 0.003 there, so 0.02 is > 5 sigma: a failure means a
wrong formula, not bad luck.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from monitor.performance.cbpe import estimate_binary, expected_roc_auc
from monitor.performance.config import PerformanceConfig
from monitor.performance.realised import binary_metrics
from monitor.performance.tracker import PerformanceTracker

N = 20_000
TOLERANCE = 0.02
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _scores(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(size=N)
    if kind == "skewed":  # mostly confident negatives, as in fraud/credit models
        return rng.beta(0.6, 3.0, size=N)
    return rng.beta(2.0, 2.0, size=N)


@pytest.mark.parametrize("kind", ["uniform", "skewed", "central"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibrated_stream_estimates_within_tolerance(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = _scores(rng, kind)
    y = (rng.uniform(size=N) < s).astype(int)
    est = estimate_binary(s, 0.5)
    real = binary_metrics(y, s, 0.5)
    for m in METRICS:
        assert abs(est[f"estimated_{m}"] - real[m]) < TOLERANCE, m


def test_miscalibrated_stream_estimates_visibly_off() -> None:
    rng = np.random.default_rng(7)
    s = rng.uniform(size=N)
    # Overconfident model: true positive rate is p**3, far below the score.
    y_cubed = (rng.uniform(size=N) < s**3).astype(int)
    est = estimate_binary(s, 0.5)
    real = binary_metrics(y_cubed, s, 0.5)
    assert abs(est["estimated_precision"] - real["precision"]) > 0.05
    assert abs(est["estimated_f1"] - real["f1"]) > 0.05
    # Scores stretched away from the truth: accuracy itself is overestimated.
    y_flat = (rng.uniform(size=N) < 0.5 + 0.4 * (s - 0.5)).astype(int)
    real = binary_metrics(y_flat, s, 0.5)
    assert est["estimated_accuracy"] - real["accuracy"] > 0.05
    assert est["estimated_roc_auc"] - real["roc_auc"] > 0.05


def _pairwise_auc(p: np.ndarray) -> float:
    """The closed form of the module docstring, by brute force over all pairs."""
    num = 0.0
    for i, j in itertools.product(range(p.size), repeat=2):
        weight = 1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
        num += p[i] * (1 - p[j]) * weight
    return num / (p.sum() * (p.size - p.sum()))


@pytest.mark.parametrize("seed", range(5))
def test_expected_auc_equals_pairwise_closed_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.round(rng.uniform(size=40), 1)  # with ties
    assert expected_roc_auc(p) == pytest.approx(_pairwise_auc(p), abs=1e-12)


def test_expected_auc_degenerate() -> None:
    assert np.isnan(expected_roc_auc(np.zeros(5)))
    assert np.isnan(expected_roc_auc(np.array([])))
    assert estimate_binary(np.array([]), 0.5) == {}


def test_expected_confusion_is_exact_expectation_on_small_case() -> None:
    # Enumerate all label outcomes of 3 events: E[accuracy] must equal the estimate.
    p = np.array([0.9, 0.6, 0.2])
    expected = 0.0
    for labels in itertools.product([0, 1], repeat=3):
        y = np.array(labels)
        prob = np.prod(np.where(y == 1, p, 1 - p))
        expected += prob * binary_metrics(y, p, 0.5)["accuracy"]
    assert estimate_binary(p, 0.5)["estimated_accuracy"] == pytest.approx(expected, abs=1e-12)


def test_tracker_estimates_before_any_label_and_sees_shift() -> None:
    """Covariate shift to less certain scores shows in estimates with zero labels."""
    rng = np.random.default_rng(3)
    cfg = PerformanceConfig(
        task="binary",
        window_size=2000,
        error_drift=False,
        min_window_labels=100,
        thresholds={"estimated_accuracy": {"warning": 0.8, "critical": 0.7}},
    )
    t = PerformanceTracker(cfg)
    confident = np.where(rng.uniform(size=2000) < 0.5, 0.05, 0.95)
    t.add_predictions([f"a{i}" for i in range(2000)], confident, None, now=0.0)
    snap = t.snapshot()
    assert "accuracy" not in snap and snap["window_labels"] == 0
    assert snap["estimated_accuracy"] == pytest.approx(0.95, abs=1e-9)
    assert [s.severity for s in t.signals("m")] == ["ok"]
    unsure = rng.uniform(0.4, 0.6, size=2000)
    t.add_predictions([f"b{i}" for i in range(2000)], unsure, None, now=1.0)
    snap = t.snapshot()
    assert snap["estimated_accuracy"] < 0.6
    (sig,) = t.signals("m")
    assert (sig.subject, sig.severity) == ("estimated_accuracy", "critical")
