"""The evaluation fast paths give the results of the plain paths they replace (issue 7).

Every speed-up of the evaluation keeps a slower, obviously-correct path beside
it; these tests hold the two equal on random inputs, ties and missing values
included: the KS statistic against scipy, ``evaluate_sorted`` against
``evaluate``, the whole-matrix summaries against the per-column loop, the
column-major window against a row-major checkpoint of an older release, and the
unknown-feature count's shortcut against the per-event set test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import stats

from monitor.detectors.base import evaluate_sorted
from monitor.detectors.chi_square import ChiSquareDetector
from monitor.detectors.jensen_shannon import JensenShannonDetector
from monitor.detectors.ks import KSDetector, ks_statistic_sorted
from monitor.detectors.psi import PSIDetector
from monitor.detectors.wasserstein import WassersteinDetector
from monitor.simulate import Simulator
from monitor.summary import _summarize_full, summarize_numeric
from monitor.window import SlidingWindow
from tests.sim_events import model_events
from tests.test_model_monitor import _checkpoint, _monitor


def _sample(rng: np.random.Generator, size: int) -> np.ndarray:
    """Normal values rounded to 0, 1 or 3 decimals: from heavy ties to almost none."""
    decimals = int(rng.choice([0, 1, 3]))
    return np.round(rng.normal(rng.normal(0.0, 0.3), 1.0, size), decimals)


def test_ks_walk_equals_scipy_bit_for_bit_on_random_samples_with_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(2_000):
        ref = np.sort(_sample(rng, int(rng.integers(1, 120))))
        win = np.sort(_sample(rng, int(rng.integers(1, 120))))
        expected = stats.ks_2samp(ref, win, method="asymp").statistic
        assert ks_statistic_sorted(ref, win) == expected


def test_ks_walk_handles_disjoint_and_identical_samples() -> None:
    a = np.arange(5.0)
    assert ks_statistic_sorted(a, a + 10.0) == 1.0
    assert ks_statistic_sorted(a + 10.0, a) == 1.0
    assert ks_statistic_sorted(a, a) == 0.0
    assert ks_statistic_sorted(np.array([1.0]), np.array([1.0, 1.0, 1.0])) == 0.0


def test_ks_walk_at_the_ends_of_the_float_range() -> None:
    # The merge treats an exhausted array as +inf: the largest finite values, tied
    # across both samples at the very end, must still be read like any other value.
    big = np.finfo(np.float64).max
    cases = [
        (np.array([-big, 0.0, big]), np.array([big, big])),
        (np.array([big, big, big]), np.array([-big, big])),
        (np.array([-big]), np.array([big])),
        (np.array([0.0, 1.0, big]), np.array([1.0, big, big, big])),
    ]
    for ref, win in cases:
        expected = stats.ks_2samp(ref, win, method="asymp").statistic
        assert ks_statistic_sorted(ref, win) == expected
        assert ks_statistic_sorted(win, ref) == stats.ks_2samp(win, ref, method="asymp").statistic


@pytest.mark.parametrize(
    "make",
    [
        lambda: PSIDetector(bins=int(np.random.default_rng(1).integers(2, 12))),
        lambda: PSIDetector(bins=50),  # beyond the pure-Python bin count: numpy path
        lambda: KSDetector(alpha=0.01),
        lambda: KSDetector(alpha=0.01, method="auto"),
        lambda: JensenShannonDetector(),
        lambda: WassersteinDetector(),
    ],
)
def test_evaluate_sorted_equals_evaluate(make) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    for _ in range(150):
        detector = make()
        detector.fit(_sample(rng, int(rng.integers(2, 400))))
        window = np.sort(_sample(rng, int(rng.integers(1, 400))))
        assert evaluate_sorted(detector, window) == detector.evaluate(window)


def test_evaluate_sorted_falls_back_to_evaluate_for_count_vectors() -> None:
    for detector in (PSIDetector(kind="categorical"), ChiSquareDetector()):
        detector.fit(np.array([40, 30, 20, 10]))
        counts = np.array([10, 20, 30, 40, 5])
        assert evaluate_sorted(detector, counts) == detector.evaluate(counts)


def test_whole_matrix_summaries_equal_the_per_column_loop() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        rows, cols = int(rng.integers(1, 300)), int(rng.integers(1, 6))
        values = np.round(rng.normal(size=(rows, cols)), int(rng.integers(0, 4)))
        fast, fast_cols = _summarize_full(np.sort(values, axis=0), (0.5, 0.9, 0.99))
        # One NaN in an extra column forces summarize_numeric down the per-column loop.
        padded = np.column_stack((values, np.full(rows, np.nan)))
        slow, slow_cols = summarize_numeric(padded)
        for f, s, fc, sc in zip(fast, slow, fast_cols, slow_cols, strict=False):
            assert (f.count, f.missing_rate) == (s.count, s.missing_rate)
            assert (f.min, f.max) == (s.min, s.max)
            assert f.quantiles == s.quantiles
            assert f.mean == pytest.approx(s.mean, rel=1e-12, abs=1e-12)
            assert f.std == pytest.approx(s.std, rel=1e-12, abs=1e-12)
            np.testing.assert_array_equal(fc, sc)


def test_summaries_match_numpy_on_a_column_major_window() -> None:
    rng = np.random.default_rng(9)
    w = SlidingWindow(n_numeric=4, n_categorical=0, capacity=1_000)
    for size in (300, 450, 700, 20):  # wraps around the ring
        w.append(rng.normal(size=(size, 4)), np.empty((size, 0), np.int32), np.zeros(size))
    values = w.numeric()
    summaries, columns = summarize_numeric(values)
    for j, s in enumerate(summaries):
        col = values[:, j]
        assert s.mean == pytest.approx(np.mean(col), rel=1e-12)
        assert s.std == pytest.approx(np.std(col), rel=1e-12)
        assert s.quantiles[0.9] == np.quantile(col, 0.9)
        np.testing.assert_array_equal(columns[j], np.sort(col))
        # Contiguous sorted columns: what the compiled KS walk reads without a copy.
        assert columns[j].flags.c_contiguous


def test_unknown_feature_shortcut_still_counts_a_swapped_key() -> None:
    """Same number of keys as the schema, but one known key replaced by an unknown one."""
    mm = _monitor()
    ev = model_events(Simulator(seed=6), 1000)
    f = ev.features[5]
    f["not_in_schema"] = f.pop("income")
    ev.features[7]["another_new_one"] = 1.0
    mm.ingest(ev)
    assert mm.unknown_feature_events == 2
    mm.ingest(model_events(Simulator(seed=7), 500))
    assert mm.unknown_feature_events == 2


def test_stream_input_waits_for_the_evaluation_and_gives_identical_results() -> None:
    """Stream detectors are fed once per step (StreamFeed.flush): every detail of
    every result, ADWIN's change positions included, is the same whatever the batching,
    and a checkpoint taken while rows are queued continues identically."""
    from monitor.events import ModelEvents
    from monitor.simulate import DriftSpec

    events = model_events(Simulator(seed=5, drift=DriftSpec("mean", ("income",), 1.0, 2500)), 4000)

    def chunks(sizes: list[int]) -> list[ModelEvents]:
        out, pos = [], 0
        for n in sizes:
            c = ModelEvents(events.model)
            for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
                getattr(c, name).extend(getattr(events, name)[pos : pos + n])
            out.append(c)
            pos += n
        return out

    def details(evs: list) -> list:  # type: ignore[type-arg]
        return [
            (
                e.context.events_total,
                {
                    f: [(r.detector, r.statistic, r.p_value, r.details) for r in rs]
                    for f, rs in e.results.items()
                },
            )
            for e in evs
        ]

    whole = _monitor()
    expect = details([e for c in chunks([4000]) for e in whole.ingest(c)])
    split = _monitor()
    got = []
    for i, c in enumerate(chunks([1, 999, 7, 1243, 250, 1500])):
        if i == 3:
            assert split.stream.pending  # rows are queued across the checkpoint
            split = _checkpoint(split)
        got += split.ingest(c)
    assert details(got) == expect
    assert any(r[0] == "adwin" and r[1] > 0 for _, res in expect for rs in res.values() for r in rs)


def test_evaluations_use_the_compiled_ks_kernel_when_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With native/ built, every evaluation takes its KS statistics from the compiled
    kernel, all columns in one call (tests/test_ks_native.py: same answers as numpy)."""
    from monitor.detectors import ks

    if not ks.NATIVE_KS:
        if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
            pytest.fail("MONITOR_REQUIRE_NATIVE=1 but monitor_native has no KS kernel")
        pytest.skip("monitor_native (with the KS kernel) not installed")
    calls: list[int] = []
    kernel = ks._native_statistics
    assert kernel is not None

    def counting(refs: list[np.ndarray], wins: list[np.ndarray]) -> list[float]:
        calls.append(len(refs))
        return kernel(refs, wins)

    monkeypatch.setattr(ks, "_native_statistics", counting)
    mm = _monitor()
    evaluations = mm.ingest(model_events(Simulator(seed=2), 1500))
    assert evaluations and len(calls) == len(evaluations)
    ks_columns = {
        sum(any(r.detector == "ks" for r in rs) for rs in ev.results.values()) for ev in evaluations
    }
    assert ks_columns == {calls[0]} and calls[0] > 1
