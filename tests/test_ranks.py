"""Rank-bucket window tests (monitor/detectors/ranks.py) against scipy and the sorted paths.

KS from bucket counts must equal ``scipy.stats.ks_2samp``'s statistic bit for bit
(and so the p-value every method derives from it), PSI from bucket counts must
equal PSI from the sorted window, on data with heavy ties; the compiled kernels
(``monitor_native``) must agree with the numpy ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from monitor.detectors import ranks
from monitor.detectors.ks import KSDetector
from monitor.detectors.psi import PSIDetector
from monitor.detectors.ranks import RankBuckets, buckets_numpy, ks_from_counts

# Few distinct values (heavy ties), occasionally spread out, signed zeros included.
tied_values = st.lists(
    st.one_of(
        st.sampled_from([-1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0]),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=60,
)


def window_counts(rb: RankBuckets, window: np.ndarray) -> np.ndarray:
    return rb.counts(rb.buckets(window))


@settings(max_examples=300, deadline=None)
@given(reference=tied_values, window=tied_values)
def test_ks_from_counts_equals_scipy_bit_for_bit(reference: list[float], window: list[float]):
    ref, win = np.array(reference), np.array(window)
    rb = RankBuckets(ref)
    expected = stats.ks_2samp(ref, win, method="asymp").statistic
    assert rb.ks(window_counts(rb, win)) == expected
    assert ks_from_counts(window_counts(rb, win), rb) == expected


@pytest.mark.parametrize("method", ["kolmogorov", "asymp", "auto"])
def test_ks_detector_counts_path_equals_scipy_on_tied_data(method: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        ref = np.round(rng.normal(size=int(rng.integers(50, 400))), int(rng.integers(0, 3)))
        win = np.round(
            rng.normal(rng.uniform(-0.3, 0.3), size=int(rng.integers(20, 300))),
            int(rng.integers(0, 3)),
        )
        det = KSDetector(alpha=0.05, method=method)  # type: ignore[arg-type]
        det.fit(ref)
        assert det.rank_buckets is not None
        by_counts = det.evaluate_counts(window_counts(det.rank_buckets, win))
        assert by_counts == det.evaluate_sorted(np.sort(win)) == det.evaluate(win)
        theirs = stats.ks_2samp(ref, win, method="asymp" if method == "kolmogorov" else method)
        if method != "kolmogorov":
            assert by_counts.statistic == theirs.statistic
            assert by_counts.p_value == pytest.approx(theirs.pvalue, rel=1e-12, abs=1e-300)


@settings(max_examples=200, deadline=None)
@given(reference=tied_values, window=tied_values, bins=st.integers(2, 40))
def test_psi_from_counts_equals_psi_of_the_sorted_window(
    reference: list[float], window: list[float], bins: int
) -> None:
    ref, win = np.array(reference), np.array(window)
    det = PSIDetector(bins=bins)
    det.fit(ref)
    assert det.rank_buckets is not None
    assert det.evaluate_counts(window_counts(det.rank_buckets, win)) == det.evaluate_sorted(
        np.sort(win)
    )


@settings(max_examples=200, deadline=None)
@given(reference=tied_values, window=tied_values, native=st.booleans(), data=st.data())
def test_order_statistics_from_counts_equal_the_sorted_window(
    reference: list[float], window: list[float], native: bool, data: st.DataObject
) -> None:
    if native and not ranks._NATIVE_KERNELS:
        return
    rb = RankBuckets(np.array(reference))
    values = np.array([*window, np.nan])  # a missing value is in no rank
    ordered = np.sort(values[:-1])
    wanted = sorted(set(data.draw(st.lists(st.integers(0, ordered.size - 1), min_size=1))))
    b = rb.buckets(values)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ranks, "_NATIVE_KERNELS", native)
        got = rb.order_statistics(rb.counts(b), b, values, wanted)
        positions = sorted({int(p) for p in data.draw(st.lists(st.integers(0, rb.n_buckets - 1)))})
        prefix = rb.prefix_at(rb.counts(b), positions)
    assert got == ordered[wanted].tolist()
    assert prefix == [int(np.cumsum(rb.counts(b))[p]) for p in positions]


def test_missing_values_have_their_own_bucket_which_no_test_reads() -> None:
    rb = RankBuckets(np.array([1.0, 2.0, 2.0]))
    win = np.array([0.0, 2.0, np.nan, 5.0])
    counts = window_counts(rb, win)
    assert counts.tolist() == [1, 0, 0, 1, 1, 1]
    present = np.array([0.0, 2.0, 5.0])
    assert rb.ks(counts) == stats.ks_2samp([1.0, 2.0, 2.0], present, method="asymp").statistic


@pytest.mark.skipif(not ranks._NATIVE_KERNELS, reason="monitor_native without the kernels")
def test_native_kernels_equal_the_numpy_ones() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        ref = np.round(rng.normal(size=int(rng.integers(1, 500))), int(rng.integers(0, 3)))
        win = np.round(rng.normal(0.1, size=int(rng.integers(1, 500))), int(rng.integers(0, 3)))
        win[rng.random(win.size) < 0.05] = np.nan
        rb = RankBuckets(ref)
        assert rb.buckets(win).tolist() == buckets_numpy(rb.unique, win).tolist()
        counts = window_counts(rb, win)
        if counts[: rb.n_buckets].sum():
            assert rb.ks(counts) == ks_from_counts(counts, rb)


@pytest.mark.skipif(not ranks._NATIVE_KERNELS, reason="monitor_native without the kernels")
def test_native_bucket_search_with_its_guide_on_skewed_and_extreme_values() -> None:
    rng = np.random.default_rng(11)
    for ref in (
        rng.lognormal(0.0, 2.0, 10_000),
        np.round(rng.normal(size=10_000), 2),
        np.concatenate([rng.normal(size=5_000), [1e300, -1e300, 5e-324]]),
    ):
        rb = RankBuckets(ref)
        probes = np.concatenate(
            [
                rng.choice(ref, 2_000),  # reference values themselves
                np.nextafter(rng.choice(ref, 1_000), np.inf),
                np.nextafter(rng.choice(ref, 1_000), -np.inf),
                rng.lognormal(0.0, 3.0, 1_000) * rng.choice([-1.0, 1.0], 1_000),
                [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e308, -1e308],
            ]
        )
        assert rb.buckets(probes).tolist() == buckets_numpy(rb.unique, probes).tolist()


def _results(evaluations: list) -> list:  # type: ignore[type-arg]
    return [
        {
            f: [(r.detector, r.statistic, r.p_value, r.details) for r in rs]
            for f, rs in e.results.items()
        }
        for e in evaluations
    ]


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"window": {"type": "time", "seconds": 3000, "step_seconds": 700}},
        {"drift": {"numeric": ["psi", "ks", "wasserstein"]}},  # a column the counts cannot serve
    ],
    ids=["count", "time", "mixed"],
)
@pytest.mark.parametrize("native", [True, False], ids=["crate", "numpy"])
def test_monitor_evaluations_from_rank_counts_equal_the_sorted_path(
    model: dict, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's counts path (mapped on entry, counted per evaluation, across a
    checkpoint) gives the results of sorting every window, and summaries within rounding."""
    from monitor import model_monitor
    from monitor.simulate import DriftSpec, Simulator
    from tests.test_model_monitor import _checkpoint, _events, _monitor, _run

    if native and not ranks._NATIVE_KERNELS:
        pytest.skip("monitor_native without the kernels")
    monkeypatch.setattr(ranks, "_NATIVE_KERNELS", native)
    events = _events(Simulator(seed=4, drift=DriftSpec("mean", ("income",), 1.0, 4000)), 9000)
    sizes = [700, 1, 2299, 1000, 5000]
    fast = _monitor(**model)
    got = _run(fast, _slice(events, 0, 3000), sizes[:3])
    fast = _checkpoint(fast)
    got += _run(fast, _slice(events, 3000, 9000), sizes[3:])
    assert fast._ranks.complete == ("drift" not in model)  # the path under test was taken
    monkeypatch.setattr(model_monitor, "counted_buckets", lambda detectors: None)
    slow = _monitor(**model)
    expect = _run(slow, events, [9000])
    assert len(got) == len(expect) > 3
    assert _results(got) == _results(expect)
    for g, e in zip(got, expect, strict=True):
        for name, s in e.numeric.items():
            f = g.numeric[name]
            assert (f.count, f.min, f.max, f.quantiles) == (s.count, s.min, s.max, s.quantiles)
            assert f.mean == pytest.approx(s.mean, rel=1e-12, abs=1e-12)
            assert f.std == pytest.approx(s.std, rel=1e-12, abs=1e-12)


def _slice(events, start: int, end: int):  # type: ignore[no-untyped-def]
    from monitor.events import ModelEvents

    out = ModelEvents(events.model)
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(out, name).extend(getattr(events, name)[start:end])
    return out
