"""Each detector against an independent computation (scipy or by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitor.detectors.chi_square import ChiSquareDetector
from monitor.detectors.config import DriftConfig
from monitor.detectors.factory import build_detectors
from monitor.detectors.jensen_shannon import JensenShannonDetector
from monitor.detectors.ks import KSDetector
from monitor.detectors.psi import PSIDetector
from monitor.detectors.streaming import ADWINDetector, PageHinkleyDetector
from monitor.detectors.wasserstein import WassersteinDetector
from monitor.errors import DetectorError

# ----------------------------------------------------------------------------- KS


def _ks_case(n1: int, n2: int, shift: float, decimals: int | None, seed: int):
    rng = np.random.default_rng(seed)
    ref, win = rng.normal(size=n1), rng.normal(loc=shift, size=n2)
    if decimals is not None:  # ties within and across samples
        ref, win = np.round(ref, decimals), np.round(win, decimals)
    return ref, win


@pytest.mark.parametrize(
    ("n1", "n2", "shift", "decimals"),
    [
        (1, 1, 0.0, None),
        (1, 4, 0.5, None),
        (3, 2, 0.0, None),
        (7, 7, 1.0, None),
        (100, 80, 0.0, None),
        (100, 80, 0.4, None),
        (100, 80, 0.2, 1),  # ties
        (250, 250, 0.1, 1),  # equal sizes: _compute_prob_outside_square
        (10_000, 5_000, 0.0, None),  # exact regime, largest sizes
        (10_000, 5_000, 0.05, 2),
        (12_000, 3_000, 0.05, None),  # asymptotic regime (max > 10_000)
        (20_000, 20_000, 0.0, 1),
    ],
)
@pytest.mark.parametrize("method", ["auto", "asymp"])
def test_ks_equals_scipy(n1: int, n2: int, shift: float, decimals: int | None, method: str) -> None:
    ref, win = _ks_case(n1, n2, shift, decimals, seed=n1 * 7 + n2)
    detector = KSDetector(method=method)  # type: ignore[arg-type]
    detector.fit(ref)
    ours = detector.evaluate(win)
    theirs = stats.ks_2samp(ref, win, method=method)
    assert abs(ours.statistic - theirs.statistic) <= 1e-9
    if math.isnan(theirs.pvalue):  # scipy's asymp with n1 = n2 = 1 (kstwo with n = 0)
        assert math.isnan(ours.p_value) and not ours.drifted
        return
    assert abs(ours.p_value - theirs.pvalue) <= 1e-9
    assert math.isclose(ours.p_value, theirs.pvalue, rel_tol=1e-9, abs_tol=1e-300)


def test_ks_discrete_data_and_reused_reference() -> None:
    rng = np.random.default_rng(11)
    ref = rng.poisson(3.0, size=2_000).astype(float)
    detector = KSDetector(method="auto")
    detector.fit(ref)
    for lam in (3.0, 3.0, 3.2, 4.0):  # several windows against one fit, cache exercised
        win = rng.poisson(lam, size=700).astype(float)
        theirs = stats.ks_2samp(ref, win)
        ours = detector.evaluate(win)
        assert abs(ours.statistic - theirs.statistic) <= 1e-9
        assert abs(ours.p_value - theirs.pvalue) <= 1e-9


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=60, deadline=None)
@given(
    ref=st.lists(st.integers(-5, 5), min_size=1, max_size=60),
    win=st.lists(st.integers(-5, 5), min_size=1, max_size=60),
    scale=st.sampled_from([1.0, 0.1, 1e3]),
)
def test_ks_equals_scipy_hypothesis(ref: list[int], win: list[int], scale: float) -> None:
    ref_a, win_a = np.array(ref, float) * scale, np.array(win, float) * scale
    detector = KSDetector(method="auto")
    detector.fit(ref_a)
    ours = detector.evaluate(win_a)
    theirs = stats.ks_2samp(ref_a, win_a)
    assert abs(ours.statistic - theirs.statistic) <= 1e-9
    assert abs(ours.p_value - theirs.pvalue) <= 1e-9


def test_ks_kolmogorov_p_value_error_at_service_sizes() -> None:
    """The default p-value vs scipy's exact one, 10,000-value reference and 5,000-value window.

    Measured over windows with shifts from none to 0.12 sigma (p from ~1 down to
    ~1e-12): the limiting distribution is never below the exact p-value (it is
    conservative) and at most 3.5 % above it; every decision at the default alpha
    and at 0.05 agrees. The statistic is scipy's.
    """
    rng = np.random.default_rng(2024)
    ref = rng.normal(size=10_000)
    fast, exact = KSDetector(), KSDetector(method="auto")
    fast.fit(ref)
    exact.fit(ref)
    ratios, tested = [], 0
    for shift in np.linspace(0.0, 0.12, 25):
        win = rng.normal(loc=shift, size=5_000)
        a, b = fast.evaluate(win), exact.evaluate(win)
        assert b.details["exact"] == 1.0 and a.details["exact"] == 0.0
        assert abs(a.statistic - stats.ks_2samp(ref, win).statistic) <= 1e-9
        if b.p_value > 1e-12:
            ratios.append(a.p_value / b.p_value)
            tested += 1
        for alpha in (1e-5, 0.05):
            assert (a.p_value < alpha) == (b.p_value < alpha) or abs(b.p_value / alpha - 1) < 0.04
    assert tested >= 15
    assert min(ratios) >= 1.0 and max(ratios) <= 1.035


def test_ks_method_is_validated() -> None:
    with pytest.raises(DetectorError, match="method must be one of"):
        KSDetector(method="exact")  # type: ignore[arg-type]


@pytest.mark.parametrize(("p", "severity"), [(0.2, "ok"), (0.03, "warning"), (0.001, "critical")])
def test_ks_severity_rule(p: float, severity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = KSDetector(alpha=0.05)
    detector.fit(np.arange(10.0))
    monkeypatch.setattr(detector, "_p_value", lambda n1, n2, d: (d, p, True))
    result = detector.evaluate(np.arange(10.0))
    assert (result.severity, result.drifted) == (severity, severity != "ok")


# ----------------------------------------------------------------------------- PSI


def test_psi_numeric_matches_hand_computation() -> None:
    ref = np.arange(1.0, 11.0)  # 1..10; 2 bins, edge at the median (inverted_cdf: 5)
    # The thresholds alone: eight values are far below PSI's noise floor (tested below).
    detector = PSIDetector(bins=2, epsilon=1e-4, noise_alpha=None)
    detector.fit(ref)
    win = np.array([1.0, 2.0, 8.0, 9.0, 10.0, 11.0, 12.0, 20.0])  # 2 in (-inf, 5], 6 above
    r_props, w_props = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected = float(np.sum((w_props - r_props) * np.log(w_props / r_props)))
    result = detector.evaluate(win)
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.severity == "critical"  # 0.275


def test_psi_categorical_unseen_bucket_and_epsilon() -> None:
    detector = PSIDetector(kind="categorical", epsilon=1e-3, noise_alpha=None)
    detector.fit(np.array([50, 50]))
    window = np.array([40, 40, 10, 10])  # codes 2 and 3 unseen: pooled into one bucket of 20
    ref = np.array([0.5, 0.5, 1e-3])
    ref = ref / ref.sum()
    win = np.array([0.4, 0.4, 0.2])
    expected = float(np.sum((win - ref) * np.log(win / ref)))
    assert detector.evaluate(window).statistic == pytest.approx(expected, rel=1e-12)
    # a shorter window vector means absent categories
    assert detector.evaluate(np.array([10])).severity == "critical"


def test_psi_ties_give_fewer_bins_and_open_outer_bins() -> None:
    detector = PSIDetector(bins=10)
    detector.fit(np.repeat([1.0, 2.0, 3.0], 100))
    result = detector.evaluate(np.array([-100.0, 1.0, 2.0, 3.0, 100.0]))
    assert result.details["bins"] == 3.0  # edges at 1 and 2 only
    assert np.isfinite(result.statistic)


@pytest.mark.parametrize("detector_cls", [PSIDetector, JensenShannonDetector])
def test_binned_detectors_see_a_move_away_from_a_constant_reference(detector_cls: type) -> None:
    """A reference column of one value (a flag never set, a default filled in) had no inner
    edge, so one bin held everything: PSI and Jensen-Shannon were 0 whatever the window
    held (a stream at 10 against a reference of 3: "no drift")."""
    detector = detector_cls()
    detector.fit(np.full(500, 3.0))
    rng = np.random.default_rng(0)
    assert detector.evaluate(np.full(200, 3.0)).severity == "ok"
    for window in (rng.normal(3.0, 1.0, 200), np.full(200, 10.0), np.full(200, -1.0)):
        result = detector.evaluate(window)
        assert result.severity == "critical", result
        assert np.isfinite(result.statistic)


# ----------------------------------------------------------------------------- chi-square


@pytest.mark.parametrize(
    ("reference", "window"),
    [
        ([500, 300, 200], [250, 150, 100]),
        ([500, 300, 200], [100, 150, 200]),
        ([500, 300, 200], [100, 150, 200, 30, 20]),  # two unseen codes, pooled
        ([10, 0, 5], [3, 0, 9]),  # an all-zero column is dropped
        ([7, 3], [1, 9]),  # one degree of freedom: compare without Yates' correction
    ],
)
def test_chi_square_equals_chi2_contingency(reference: list[int], window: list[int]) -> None:
    k = len(reference)
    pooled = window[:k] + [0] * (k - len(window)) + [sum(window[k:])]
    table = np.array([[*reference, 0], pooled])
    table = table[:, table.sum(axis=0) > 0]
    expected = stats.chi2_contingency(table, correction=False)
    detector = ChiSquareDetector()
    detector.fit(np.array(reference))
    result = detector.evaluate(np.array(window))
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert result.details["dof"] == expected.dof


def test_chi_square_identical_proportions_is_zero() -> None:
    detector = ChiSquareDetector()
    detector.fit(np.array([40, 60]))
    result = detector.evaluate(np.array([20, 30]))
    assert result.statistic == pytest.approx(0.0, abs=1e-12) and result.p_value == pytest.approx(1)


# ----------------------------------------------------------------------------- JS, Wasserstein


def test_jensen_shannon_equals_scipy() -> None:
    rng = np.random.default_rng(5)
    ref, win = rng.normal(size=3_000), rng.normal(0.3, 1.2, size=1_000)
    detector = JensenShannonDetector(bins=8)
    detector.fit(ref)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 9)[1:-1], method="inverted_cdf"))
    p = np.bincount(np.searchsorted(edges, ref), minlength=edges.size + 1) / ref.size
    q = np.bincount(np.searchsorted(edges, win), minlength=edges.size + 1) / win.size
    assert detector.evaluate(win).statistic == pytest.approx(jensenshannon(p, q, base=2), 1e-12)


def test_jensen_shannon_categorical_unseen() -> None:
    detector = JensenShannonDetector(kind="categorical")
    detector.fit(np.array([30, 70]))
    result = detector.evaluate(np.array([30, 50, 20]))
    expected = jensenshannon([0.3, 0.7, 0.0], [0.3, 0.5, 0.2], base=2)
    assert result.statistic == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("n1", "n2", "decimals"),
    [(1, 1, None), (50, 7, None), (10_000, 5_000, None), (3_000, 2_000, 1)],
)
def test_wasserstein_equals_scipy_over_std(n1: int, n2: int, decimals: int | None) -> None:
    rng = np.random.default_rng(n1 + n2)
    ref, win = rng.gamma(2.0, size=n1), rng.gamma(2.3, size=n2)
    if decimals is not None:
        ref, win = np.round(ref, decimals), np.round(win, decimals)
    detector = WassersteinDetector()
    detector.fit(ref)
    scale = np.std(ref) if np.std(ref) > 0 else 1.0
    expected = stats.wasserstein_distance(ref, win) / scale
    assert abs(detector.evaluate(win).statistic - expected) <= 1e-9


# ----------------------------------------------------------------------------- stream detectors


def test_adwin_latches_until_evaluate_and_counts_index() -> None:
    rng = np.random.default_rng(0)
    detector = ADWINDetector()
    detector.fit(rng.normal(size=1_000))
    detector.update(rng.normal(size=500))
    detector.update(rng.normal(loc=3.0, size=500))  # change at stream index 500
    detector.update(rng.normal(loc=3.0, size=500))  # no further change: the latch must hold
    result = detector.evaluate(np.empty(0))
    assert result.drifted and result.statistic >= 1
    assert 500 <= result.details["last_change_index"] < 600
    assert result.details["shift"] > 0
    assert result.details["values_seen"] == 1_500
    cleared = detector.evaluate(np.empty(0))
    assert not cleared.drifted and cleared.details["last_change_index"] == -1


def test_adwin_warm_up_on_a_sorted_reference_raises_no_change() -> None:
    # Profiles keep a *sorted* reference sample. Fed in that order, river's ADWIN cuts
    # its window during warm-up (width 16, mean 3.26 with this seed) and then fires on
    # the first stationary live values; the seeded shuffle in fit() prevents that.
    rng = np.random.default_rng(3)
    reference, live = np.sort(rng.normal(size=10_000)), rng.normal(size=5_000)
    for seed in range(3):
        detector = ADWINDetector(delta=1e-5, seed=seed)
        detector.fit(reference)
        detector.update(live)
        assert not detector.evaluate(np.empty(0)).drifted
    a, b = ADWINDetector(seed=1), ADWINDetector(seed=1)
    a.fit(reference)
    b.fit(reference)
    assert a.evaluate(np.empty(0)) == b.evaluate(np.empty(0))


def test_page_hinkley_detects_mean_increase() -> None:
    rng = np.random.default_rng(1)
    detector = PageHinkleyDetector(threshold=20.0)  # cumulative deviation, in column units
    detector.fit(rng.normal(scale=0.1, size=500))
    detector.update(rng.normal(scale=0.1, size=5_000))
    assert not detector.evaluate(np.empty(0)).drifted
    detector.update(rng.normal(loc=1.0, scale=0.1, size=200))
    assert detector.evaluate(np.empty(0)).drifted


#: ADWIN as the service builds it (monitor/detectors/config.py).
SERVICE_ADWIN = {
    "delta": 1e-5,
    "away_only": True,
    "block": 64,
    "clock": 1,
    "min_window_length": 1,
    "grace_period": 10,
}


@pytest.mark.parametrize("huge", [1e308, -1e200, 1e155])
def test_one_huge_finite_value_does_not_blind_the_stream_detectors(huge: float) -> None:
    """river's ADWIN keeps running variances: one finite value beyond about 1e154 (a
    sentinel such as 1e308) made them inf, then NaN, and ADWIN never cut its window again (a
    later shift of 1 sd went unseen, for good: the state is checkpointed). Such a value is
    fed to the stream detectors as +-1e100, an outlier like any other; both ways of feeding
    ADWIN (one column, or columns together) agree."""

    def stream(outlier: float) -> np.ndarray:
        rng = np.random.default_rng(4)
        values = rng.normal(size=6_000)
        values[1_000] = outlier
        values[4_000:] += 1.0
        return values

    rng = np.random.default_rng(5)
    reference = rng.normal(size=10_000)
    for make in (
        lambda: ADWINDetector(**SERVICE_ADWIN),
        lambda: PageHinkleyDetector(threshold=50.0),
    ):
        seen = []
        for outlier in (huge, math.copysign(1e100, huge)):
            detector = make()
            detector.fit(reference)
            detector.update(stream(outlier)[:3_000])
            early = detector.evaluate(np.empty(0))
            detector.update(stream(outlier)[3_000:])
            late = detector.evaluate(np.empty(0))
            assert late.drifted, (detector.name, outlier)
            assert late.details["last_change_index"] >= 4_000  # the shift, not the outlier
            seen.append((early, late))
        assert seen[0] == seen[1]
    together = [ADWINDetector(**SERVICE_ADWIN) for _ in range(2)]
    for d in together:
        d.fit(reference)
    columns = np.column_stack([stream(huge), stream(huge)])
    fed = []
    for i in range(0, 6_000, 1_000):
        batch = columns[i : i + 1_000]
        fed.append(ADWINDetector.update_columns(together, batch))
        if not fed[-1]:  # as the caller does: column by column
            for j, d in enumerate(together):
                d.update(batch[:, j])
    alone = ADWINDetector(**SERVICE_ADWIN)
    alone.fit(reference)
    for i in range(0, 6_000, 1_000):
        alone.update(stream(huge)[i : i + 1_000])
    assert fed.count(False) == 1  # the batch holding the huge value, fed column by column
    assert together[0].evaluate(np.empty(0)) == alone.evaluate(np.empty(0))


# ----------------------------------------------------------------------------- factory and config


def test_build_detectors_respects_streaming_features_and_thresholds() -> None:
    cfg = DriftConfig(streaming_features=["age"], numeric=["psi", "ks", "adwin", "page_hinkley"])
    assert [d.name for d in build_detectors("numeric", cfg, 1000, feature="age")] == [
        "psi",
        "ks",
        "adwin",
        "page_hinkley",
    ]
    assert [d.name for d in build_detectors("numeric", cfg, 1000, feature="income")] == [
        "psi",
        "ks",
    ]
    none = DriftConfig(streaming_features=None)
    assert [d.name for d in build_detectors("numeric", none, 1000, feature="x")] == ["psi", "ks"]
    psi, ks, _ = build_detectors(
        "numeric", DriftConfig(), 1000, thresholds={"psi": 0.3, "ks": 0.01}
    )
    assert (psi.warning, psi.critical, ks.alpha) == (0.3, 0.3, 0.01)
    # small references get fewer bins, and every call returns fresh instances
    assert build_detectors("numeric", DriftConfig(), 20)[0].bins == 4
    a, b = (
        build_detectors("numeric", DriftConfig(), 1000),
        build_detectors("numeric", DriftConfig(), 1000),
    )
    assert all(x is not y for x, y in zip(a, b, strict=True))
    with pytest.raises(DetectorError, match="kind"):
        build_detectors("text", DriftConfig(), 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"psi": {"bins": 1}}, "psi.bins"),
        ({"psi": {"warning": 0.5}}, "critical must be >= warning"),
        # Refused by the config, not only by the detector when the model is built (which
        # check-config never does: it said OK and the model failed at run time).
        ({"jensen_shannon": {"threshold": 0.5, "critical": 0.2}}, "critical must be >= thr"),
        ({"wasserstein": {"threshold": 0.5, "critical": 0.2}}, "critical must be >= thr"),
        ({"ks": {"alpha": 1.5}}, "ks.alpha"),
        ({"persistence": 0}, "persistence"),
        ({"correction": "holm"}, "correction"),
        ({"numeric": ["psi", "chi_square"]}, "numeric"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_drift_config_rejects_bad_values_clearly(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DriftConfig.model_validate(data)


def test_drift_config_round_trips() -> None:
    cfg = DriftConfig(correction="bonferroni", streaming_features=["a"])
    assert DriftConfig.model_validate(cfg.model_dump()) == cfg


# ----------------------------------------------------------------------------- calibration


def test_calibration_is_deterministic_and_matches_psi_asymptotics() -> None:
    from monitor.detectors.calibration import calibrate_thresholds

    ref = np.random.default_rng(0).normal(size=10_000)
    cfg = DriftConfig(numeric=["psi", "ks", "adwin"])
    a = calibrate_thresholds(ref, "numeric", 5_000, 1_000, cfg, seed=3, n_features=20)
    b = calibrate_thresholds(ref, "numeric", 5_000, 1_000, cfg, seed=3, n_features=20)
    assert a == b and set(a) == {"psi", "ks"}  # adwin is not calibrated
    q = 1_000 / 1_000_000 / 2  # budget per evaluation split over 2 window detectors
    assert a["ks"] == pytest.approx(q)  # corrected across features by BH already
    # PSI ~ (1/n + 1/w) chi2(bins - 1) under the null
    analytic = (1 / 10_000 + 1 / 5_000) * stats.chi2.isf(q / 20, 9)
    assert a["psi"] == pytest.approx(analytic, rel=0.15)


@pytest.mark.parametrize("name", ["psi", "wasserstein", "jensen_shannon"])
def test_calibrated_distance_thresholds_give_the_target_false_alarm_rate(name: str) -> None:
    from monitor.detectors.calibration import calibrate_thresholds

    # budget step / ERT = 0.05 per evaluation, one detector, windows far apart: q = 0.05
    cfg = DriftConfig(numeric=[name], expected_run_time_events=20_000, persistence=1)
    rng = np.random.default_rng(9)
    ref = rng.normal(size=2_000)
    thresholds = calibrate_thresholds(ref, "numeric", 500, 1_000, cfg, seed=4)
    (detector,) = build_detectors("numeric", cfg, ref.size, thresholds=thresholds)
    alarms = 0
    for _ in range(300):  # fresh reference and window from the true distribution each time
        detector.fit(rng.normal(size=2_000))
        alarms += detector.evaluate(rng.normal(size=500)).drifted
    assert 0.01 <= alarms / 300 <= 0.12


def test_scipy_private_routine_is_within_the_tested_versions() -> None:
    """Fails loudly when scipy is upgraded past what ``scipy_private`` was tested with.

    The KS exact p-value for unequal sizes calls a private scipy routine; outside
    ``SCIPY_TESTED`` it is switched off (asymptotic fallback), which this test turns
    into a failure rather than a silent change of p-values. pyproject.toml bounds
    scipy to the same range.
    """
    import re
    from pathlib import Path

    from monitor.detectors import scipy_private

    assert scipy_private.outer_prob_inside is not None, scipy.__version__
    (low, high) = scipy_private.SCIPY_TESTED
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    bound = re.search(r'"scipy>=(\d+)\.(\d+),<(\d+)\.(\d+)"', pyproject)
    assert bound is not None
    assert tuple(map(int, bound.groups())) == (*low, *high)


def test_scipy_private_routine_is_off_outside_the_tested_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from monitor.detectors import scipy_private

    installed = scipy.__version__
    monkeypatch.setattr(scipy, "__version__", "1.99.0")
    assert scipy_private._load() is None
    monkeypatch.setattr(scipy, "__version__", installed)
    assert scipy_private._load() is not None
