"""MAPE near zero: never infinity, a unit-aware cut-off, and sMAPE beside it.

On main a label of 1e-300 (valid JSON, within the ±1e100 bound) against a prediction of
1e100 made one MAPE term overflow: MAPE was +Inf, exported as a value, and a ``mape``
threshold paged on it. Zero labels were already left out (``mape_excluded``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.performance.config import PerformanceConfig
from monitor.performance.realised import regression_metrics
from monitor.performance.tracker import PerformanceTracker


def test_a_term_that_overflows_is_left_out_not_infinite() -> None:
    out = regression_metrics(np.array([1e-300, 2.0, 4.0]), np.array([1e100, 3.0, 5.0]))
    assert math.isfinite(out["mape"])
    assert out["mape"] == pytest.approx((0.5 + 0.25) / 2)
    assert out["mape_excluded"] == 1.0


def test_a_mean_of_huge_finite_terms_does_not_overflow() -> None:
    y = np.array([1e-208, 1e-208])  # each term ~1e308: finite, their sum is not
    out = regression_metrics(y, np.array([1e100, 1e100]))
    assert math.isfinite(out["mape"]) and out["mape_excluded"] == 0.0


def test_labels_at_most_the_cut_off_are_left_out_and_counted() -> None:
    y, p = np.array([0.001, -0.01, 10.0, -20.0]), np.array([0.5, 0.5, 11.0, -22.0])
    default = regression_metrics(y, p)
    assert default["mape"] > 100  # 0.001 -> 0.5 is 49900 %
    cut = regression_metrics(y, p, mape_min_abs_label=0.01)
    assert cut["mape"] == pytest.approx(0.1) and cut["mape_excluded"] == 2.0


def test_smape_is_bounded_and_defined_where_mape_is_not() -> None:
    y = np.array([0.0, 0.0, 1e-12, 2.0])
    p = np.array([0.0, 5.0, 3.0, 2.0])
    out = regression_metrics(y, p)
    # terms: 0 (both zero), 2, ~2, 0
    assert out["smape"] == pytest.approx(1.0)
    assert math.isfinite(out["smape"]) and 0.0 <= out["smape"] <= 2.0
    rng = np.random.default_rng(0)
    y, p = rng.normal(0, 1e-6, 500), rng.normal(0, 1e3, 500)
    out = regression_metrics(y, p)
    assert 0.0 <= out["smape"] <= 2.0


def test_tracker_snapshot_and_signals_carry_no_infinity() -> None:
    t = PerformanceTracker(
        PerformanceConfig(
            task="regression",
            window_size=10,
            min_window_labels=2,
            error_drift=False,
            thresholds={"mape": {"warning": 1.0}, "smape": {"warning": 0.5}},
        )
    )
    t.add_predictions(["a", "b", "c"], [1e100, 3.0, 5.0], None, now=0.0)
    t.add_labels(["a", "b", "c"], [1e-300, 2.0, 4.0], None, now=0.0)
    snap = t.snapshot()
    assert all(not math.isinf(v) for v in snap.values()), snap
    signals = {s.subject: s for s in t.signals("m", snap)}
    assert signals["mape"].severity == "ok" and signals["mape"].value == pytest.approx(0.375)
    # the 1e-300 label is a sMAPE term of 2: (2 + 0.4 + 0.22) / 3
    assert signals["smape"].severity == "warning"
    assert signals["smape"].value == pytest.approx((2 + 2 / 5 + 2 / 9) / 3)


def test_cut_off_in_config_applies_and_is_refused_for_other_tasks() -> None:
    t = PerformanceTracker(
        PerformanceConfig(
            task="regression", window_size=10, min_window_labels=1, mape_min_abs_label=0.5
        )
    )
    t.add_predictions(["a", "b"], [1.0, 11.0], None, now=0.0)
    t.add_labels(["a", "b"], [0.1, 10.0], None, now=0.0)
    snap = t.snapshot()
    assert snap["mape"] == pytest.approx(0.1) and snap["mape_excluded"] == 1.0
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "models": [
            {
                "name": "m",
                "reference": {"learn_first": 100},
                "performance": {"task": "binary", "mape_min_abs_label": 0.01},
            }
        ],
    }
    with pytest.raises(ConfigError, match="mape_min_abs_label: applies to regression"):
        parse_config(raw)
    raw["models"][0]["performance"] = {"task": "regression", "mape_min_abs_label": -1}  # type: ignore[index]
    with pytest.raises(ConfigError, match="mape_min_abs_label"):
        parse_config(raw)
