"""``threshold: auto``: calibrated thresholds are reproducible, ordered, and hit their budget."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from monitor.detectors.calibration import calibrate_thresholds, per_evaluation_rate
from monitor.detectors.config import DriftConfig
from monitor.detectors.factory import build_detectors

REF = np.random.default_rng(0).normal(size=3_000)


def _calibrate(ert: int, seed: int = 1) -> dict[str, float]:
    cfg = DriftConfig(numeric=["psi", "ks"], expected_run_time_events=ert, threshold="auto")
    return calibrate_thresholds(REF, "numeric", 1_000, 500, cfg, seed, n_features=5)


def test_deterministic_by_seed() -> None:
    a, b, other = _calibrate(100_000, seed=7), _calibrate(100_000, seed=7), _calibrate(100_000, 8)
    assert a == b
    assert other["psi"] != a["psi"]  # the bootstrap really depends on the seed
    assert other["ks"] == a["ks"]  # KS has a known null distribution: no bootstrap


def test_monotone_in_expected_run_time() -> None:
    runs = [_calibrate(ert) for ert in (10_000, 100_000, 1_000_000, 10_000_000)]
    ks = [r["ks"] for r in runs]
    psi = [r["psi"] for r in runs]
    assert all(x > y for x, y in pairwise(ks))  # rarer alarms: smaller alpha
    assert all(x < y for x, y in pairwise(psi))  # and a higher distance


def test_budget_split_matches_the_documented_rule() -> None:
    cfg = DriftConfig(expected_run_time_events=1_000_000, persistence=1)
    # 1000 / 1e6 per evaluation, split over 2 detectors and 20 features (no correction)
    q = per_evaluation_rate(5_000, 1_000, cfg, n_detectors=2, n_features=20)
    assert q == pytest.approx(1e-3 / 40)
    assert per_evaluation_rate(5_000, 1_000, cfg, 2, 20, corrected=True) == pytest.approx(5e-4)


@pytest.mark.parametrize("name", ["psi", "ks"])
def test_empirical_false_alarm_rate_near_the_budget(name: str) -> None:
    # budget step / ERT = 0.05 per evaluation, one detector, persistence 1: q = 0.05
    cfg = DriftConfig(numeric=[name], expected_run_time_events=20_000, persistence=1)
    rng = np.random.default_rng(11)
    ref = rng.normal(size=2_000)
    thresholds = calibrate_thresholds(ref, "numeric", 500, 1_000, cfg, seed=4)
    (detector,) = build_detectors("numeric", cfg, ref.size, thresholds=thresholds)
    trials, alarms = 400, 0
    for _ in range(trials):  # fresh reference and window from the same distribution
        detector.fit(rng.normal(size=2_000))
        alarms += detector.evaluate(rng.normal(size=500)).drifted
    # binomial(400, 0.05): sd ~0.011; allow the bootstrap's and the KS limit's bias
    assert 0.02 <= alarms / trials <= 0.09
