"""DriftTracker: correction, persistence and hysteresis, table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detectors.base import DetectorResult
from monitor.detectors.config import DriftConfig
from monitor.drift import DriftTracker, benjamini_hochberg, bonferroni, headline
from tests.checkpoint import through_format


def psi(value: float) -> DetectorResult:
    sev = "critical" if value >= 0.25 else "warning" if value >= 0.1 else "ok"
    return DetectorResult("psi", value, None, 0.1, sev != "ok", sev)


def ks(p: float, alpha: float = 0.05) -> DetectorResult:
    sev = "critical" if p < alpha / 10 else "warning" if p < alpha else "ok"
    return DetectorResult("ks", 0.1, p, alpha, sev != "ok", sev)


# Each row: persistence, clear_after, sequence of raw PSI values, expected drifting per step.
PERSISTENCE_TABLE = [
    (1, 1, [0.3, 0.0, 0.3], [True, False, True]),
    (2, 2, [0.3, 0.3, 0.0, 0.0], [False, True, True, False]),
    (2, 2, [0.3, 0.0, 0.3, 0.0], [False, False, False, False]),  # never 2 in a row
    (3, 1, [0.3, 0.3, 0.3, 0.3, 0.0], [False, False, True, True, False]),
    (
        2,
        3,
        [0.3, 0.3, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0],
        [False, True, True, True, True, True, True, False],
    ),
]


@pytest.mark.parametrize(("persistence", "clear_after", "values", "expected"), PERSISTENCE_TABLE)
def test_persistence_and_hysteresis(
    persistence: int, clear_after: int, values: list[float], expected: list[bool]
) -> None:
    tracker = DriftTracker(DriftConfig(persistence=persistence, clear_after=clear_after))
    got = [tracker.observe({"x": [psi(v)]})["x"].drifting for v in values]
    assert got == expected


# Each row: raw psi values, expected (severity, consecutive) per step with persistence=2, clear=2.
SEVERITY_TABLE = [
    (
        [0.3, 0.3, 0.12, 0.0, 0.0],
        [("ok", 1), ("critical", 2), ("warning", 3), ("warning", 1), ("ok", 2)],
    ),
    ([0.15, 0.15, 0.3], [("ok", 1), ("warning", 2), ("critical", 3)]),
]


@pytest.mark.parametrize(("values", "expected"), SEVERITY_TABLE)
def test_severity_and_consecutive(values: list[float], expected: list[tuple[str, int]]) -> None:
    tracker = DriftTracker(DriftConfig(persistence=2, clear_after=2))
    got = [
        (v.severity, v.consecutive) for v in (tracker.observe({"x": [psi(x)]})["x"] for x in values)
    ]
    assert got == expected


# Each row: correction, p-values of 4 features, expected raw_drifted per feature.
CORRECTION_TABLE = [
    ("none", [0.01, 0.04, 0.03, 0.5], [True, True, True, False]),
    ("bonferroni", [0.01, 0.04, 0.03, 0.5], [True, False, False, False]),  # 0.04*4, 0.03*4 > 0.05
    ("bh", [0.01, 0.04, 0.03, 0.5], [True, False, False, False]),  # adjusted .04 .0533 .0533 .5
    ("bh", [0.01, 0.02, 0.03, 0.04], [True, True, True, True]),  # all adjusted to 0.04
    ("bonferroni", [0.001, 0.9, 0.9, 0.9], [True, False, False, False]),
]


@pytest.mark.parametrize(("correction", "p_values", "expected"), CORRECTION_TABLE)
def test_correction_across_features(
    correction: str, p_values: list[float], expected: list[bool]
) -> None:
    tracker = DriftTracker(DriftConfig(correction=correction, persistence=1))
    verdicts = tracker.observe({f"f{i}": [ks(p)] for i, p in enumerate(p_values)})
    assert [verdicts[f"f{i}"].raw_drifted for i in range(len(p_values))] == expected
    for i, p in enumerate(p_values):
        (r,) = verdicts[f"f{i}"].results
        if correction == "none":
            assert r.p_value == p and "raw_p_value" not in r.details
        else:
            assert r.details["raw_p_value"] == p and r.p_value >= p


def test_correction_regrades_severity_and_leaves_distances_alone() -> None:
    tracker = DriftTracker(DriftConfig(correction="bonferroni", persistence=1))
    verdicts = tracker.observe(
        {"a": [ks(0.004), psi(0.3)], "b": [ks(0.9), psi(0.0)]}  # 0.004 critical raw, 0.008 after
    )
    ks_a, psi_a = verdicts["a"].results
    assert ks_a.severity == "warning" and ks_a.p_value == pytest.approx(0.008)
    assert psi_a == psi(0.3)
    assert verdicts["a"].severity == "critical"  # PSI still critical


def test_correction_families_are_per_detector() -> None:
    chi = DetectorResult("chi_square", 5.0, 0.03, 0.05, True, "warning")
    tracker = DriftTracker(DriftConfig(correction="bonferroni", persistence=1))
    # one KS p-value and one chi-square p-value: each family has m = 1, nothing changes
    verdicts = tracker.observe({"num": [ks(0.03)], "cat": [chi]})
    assert verdicts["num"].raw_drifted and verdicts["cat"].raw_drifted


def test_adjustments_match_reference_formulas() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=50) ** 3
    m = p.size
    assert np.allclose(bonferroni(p), np.minimum(p * m, 1))
    # BH by its definition: adjusted p_(i) = min_{j >= i} m p_(j) / j
    order = np.argsort(p)
    expected = np.empty(m)
    for rank, idx in enumerate(order, start=1):
        expected[idx] = min(1.0, min(m * p[order[j - 1]] / j for j in range(rank, m + 1)))
    assert np.allclose(benjamini_hochberg(p), expected)


def test_headline_is_most_severe_then_strongest() -> None:
    results = [psi(0.12), ks(0.001), psi(0.0)]
    top = headline(results)
    assert top is not None and top.detector == "ks"
    assert headline([psi(0.12), psi(0.2)]) == psi(0.2)
    assert headline([]) is None
    verdict = DriftTracker(DriftConfig()).observe({"x": results})["x"]
    assert (verdict.detector, verdict.statistic, verdict.threshold) == ("ks", 0.1, 0.05)


def test_features_are_independent_and_absent_features_keep_state() -> None:
    tracker = DriftTracker(DriftConfig(persistence=2, clear_after=1, correction="none"))
    tracker.observe({"a": [psi(0.3)], "b": [psi(0.0)]})
    v = tracker.observe({"a": [psi(0.3)]})
    assert v["a"].drifting and "b" not in v
    assert tracker.is_drifting("a") and not tracker.is_drifting("b")
    v = tracker.observe({"b": [psi(0.3)], "a": [psi(0.3)]})
    assert v["a"].drifting and not v["b"].drifting
    tracker.forget("a")
    assert not tracker.is_drifting("a")


def test_tracker_restores_its_runs_from_a_checkpoint() -> None:
    tracker = DriftTracker(DriftConfig(persistence=2))
    tracker.observe({"x": [psi(0.3)]})
    clone = DriftTracker(DriftConfig(persistence=2))
    clone.restore_runs(through_format(drift_runs=tracker.export_runs()).drift_runs)
    assert clone.observe({"x": [psi(0.3)]}) == tracker.observe({"x": [psi(0.3)]})
    assert clone.is_drifting("x")
