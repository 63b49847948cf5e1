"""The KS statistic's three implementations give one answer (issue 19).

D comes from the compiled kernel of ``native/`` (``monitor_native.ks_statistic_sorted``)
when it is installed, from numpy otherwise (``ks_statistic_sorted_numpy``). Both are held
here, bit for bit, to ``scipy.stats.ks_2samp`` and to the merge walk the service compiled
with numba before (ported line for line to Python below, so the old answers stay
checkable without numba), on random sizes and heavy ties; p-values, the one-call batch of
an evaluation's columns, NaN and unsorted input, and a whole pipeline without the compiled
module are checked too.

The kernel's tests skip when the module (or a build with the kernel) is missing, unless
MONITOR_REQUIRE_NATIVE=1; the numpy fallback's always run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from monitor.detectors import ks
from monitor.detectors.base import evaluate_sorted_all
from monitor.detectors.ks import KSDetector, ks_statistic_sorted_numpy, ks_statistics_sorted
from monitor.detectors.psi import PSIDetector
from monitor.errors import DetectorError
from tests.sim_events import model_events

ROOT = Path(__file__).resolve().parent.parent

try:
    import monitor_native
except ImportError:  # pragma: no cover - depends on the install
    monitor_native = None  # type: ignore[assignment]
KERNEL = getattr(monitor_native, "ks_statistic_sorted", None)
FULL = getattr(monitor_native, "ks_statistic_sorted_full", None)
needs_kernel = pytest.mark.skipif(KERNEL is None, reason="monitor_native without the KS kernel")


def test_the_kernel_is_installed_where_it_is_required() -> None:
    """scripts/test.sh builds native/ and sets MONITOR_REQUIRE_NATIVE=1: there a build
    without the kernel fails the run instead of skipping its tests."""
    if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
        assert KERNEL is not None, "monitor_native lacks ks_statistic_sorted (pip install ./native)"
        assert FULL is not None, "monitor_native lacks ks_statistic_sorted_full (an older build)"
    assert (KERNEL is not None) == ks.NATIVE_KS


def merge_walk(ref: np.ndarray, win: np.ndarray) -> float:
    """The numba kernel this replaces (``_ks_walk`` before issue 19), line for line in
    Python: its answers are the ones D must keep, bit for bit."""
    n1, n2 = ref.size, win.size
    i = j = 0
    lo = hi = 0.0
    a, b = float(ref[0]), float(win[0])
    for _ in range(n1 + n2):
        take_ref = a <= b
        v = min(a, b)
        i += take_ref
        j += 1 - take_ref
        a = float(ref[i]) if i < n1 else np.inf
        b = float(win[j]) if j < n2 else np.inf
        d = i / n1 - j / n2
        if v < min(a, b):
            lo = min(lo, d)
            hi = max(hi, d)
    ref_above = min(hi, 1.0)
    win_above = -lo
    return ref_above if ref_above > win_above else win_above


def bits(x: float) -> bytes:
    return np.float64(x).tobytes()


def all_equal(ref: np.ndarray, win: np.ndarray) -> float:
    """D from every implementation, asserted equal bit for bit (-0.0 included)."""
    expected = merge_walk(ref, win)
    assert bits(ks_statistic_sorted_numpy(ref, win)) == bits(expected)
    if KERNEL is not None:
        assert bits(KERNEL(ref, win)) == bits(expected)
    if FULL is not None:
        assert bits(FULL(ref, win)) == bits(expected)
    assert expected == stats.ks_2samp(ref, win, method="asymp").statistic
    return expected


# Heavy ties: a few distinct values (small integers, scaled), or rounded normals.
tied = st.lists(st.integers(-6, 6), min_size=1, max_size=300).map(
    lambda v: np.sort(np.array(v, dtype=np.float64) * 0.5)
)
rounded = st.tuples(
    st.integers(1, 400), st.integers(0, 3), st.floats(-1, 1), st.integers(0, 2**32 - 1)
).map(
    lambda a: np.sort(
        np.round(np.random.default_rng(a[3]).normal(a[2], 1.0, a[0]), a[1]).astype(np.float64)
    )
)
samples = st.one_of(tied, rounded)


@settings(max_examples=300, deadline=None)
@given(samples, samples)
def test_every_implementation_gives_the_same_d(ref: np.ndarray, win: np.ndarray) -> None:
    all_equal(ref, win)
    all_equal(win, ref)


def test_large_samples_with_and_without_ties() -> None:
    """The service's sizes (10,000 reference, 5,000 window), where the kernel's lanes and
    its division shortcut matter; seeded, a few of each kind."""
    rng = np.random.default_rng(19)
    for k in range(12):
        decimals = (None, 0, 1, 2)[k % 4]
        ref = rng.normal(size=int(rng.integers(9_000, 10_001)))
        win = rng.normal(0.05 * (k % 3), 1.0, size=int(rng.integers(4_000, 5_001)))
        if decimals is not None:
            ref, win = np.round(ref, decimals), np.round(win, decimals)
        all_equal(np.sort(ref), np.sort(win))


@needs_kernel
def test_the_search_equals_ranking_every_value_at_the_service_sizes() -> None:
    """The kernel takes the readings of a few hundred of a window's values (a branch and
    bound over stretches of the window: native/src/ks.rs); ``ks_statistic_sorted_full``
    ranks every value, as the kernel did before. Both and numpy give the same bits at the
    service's sizes, drifted or not, continuous or rounded (ties), one pair at a time and
    through the batch call."""
    assert FULL is not None, "monitor_native lacks ks_statistic_sorted_full (an older build)"
    rng = np.random.default_rng(1919)
    refs, wins = [], []
    for k in range(60):
        decimals = (None, None, 0, 1, 2, 3)[k % 6]
        shift = (0.0, 0.0, 0.0, 0.02, 0.1, 1.0, -4.0)[k % 7]
        ref = rng.normal(size=int(rng.integers(5_000, 10_001)))
        win = rng.normal(shift, (1.0, 1.2, 0.7)[k % 3], size=int(rng.integers(1_000, 5_001)))
        if decimals is not None:
            ref, win = np.round(ref, decimals), np.round(win, decimals)
        ref, win = np.sort(ref), np.sort(win)
        expected = bits(FULL(ref, win))
        assert bits(KERNEL(ref, win)) == expected
        assert bits(KERNEL(win, ref)) == bits(FULL(win, ref))
        assert bits(ks_statistic_sorted_numpy(ref, win)) == expected
        refs.append(ref)
        wins.append(win)
    batch = monitor_native.ks_statistics_sorted(refs, wins)
    assert [bits(d) for d in batch] == [bits(FULL(r, w)) for r, w in zip(refs, wins, strict=True)]
    # Where the bounds cannot prune (every reading near the extreme), the same bits too.
    lattice = np.arange(10_000.0)
    for ref, win in [(lattice, 2 * np.arange(5_000.0) + 0.5), (lattice, lattice)]:
        assert bits(KERNEL(ref, win)) == bits(FULL(ref, win)) == bits(merge_walk(ref, win))


@needs_kernel
def test_threads_are_opt_in_and_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """MONITOR_NATIVE_THREADS splits a large call's pairs across threads (capped by the
    cores and the pairs; unset, 1 or invalid: none; a small call: none): same D, bit for bit,
    and the first error in pair order."""
    rng = np.random.default_rng(20)
    refs = [np.sort(rng.normal(size=10_000)) for _ in range(12)]
    wins = [np.sort(rng.normal(0.01 * k, 1.0, size=5_000)) for k in range(12)]
    monkeypatch.delenv("MONITOR_NATIVE_THREADS", raising=False)
    assert monitor_native.ks_threads(12, 60_000) == 1
    one = [bits(d) for d in monitor_native.ks_statistics_sorted(refs, wins)]
    cores = os.cpu_count() or 1
    for value, expected in [("1", {1}), ("junk", {1}), ("0", {1}), ("2", {min(2, cores)})]:
        monkeypatch.setenv("MONITOR_NATIVE_THREADS", value)
        assert monitor_native.ks_threads(12, 60_000) in expected | {1}
        assert monitor_native.ks_threads(12, 1_000) == 1  # too small to be worth a thread
        assert [bits(d) for d in monitor_native.ks_statistics_sorted(refs, wins)] == one
    monkeypatch.setenv("MONITOR_NATIVE_THREADS", "4")
    bad = [*wins[:9], wins[9][::-1].copy(), *wins[10:]]
    with pytest.raises(ValueError, match="pair 9: window is not sorted"):
        monitor_native.ks_statistics_sorted(refs, bad)


def test_extremes_and_degenerate_samples() -> None:
    big = np.finfo(np.float64).max
    a = np.arange(5.0)
    for ref, win in [
        (a, a + 10.0),
        (a, a),
        (np.array([1.0]), np.array([1.0, 1.0, 1.0])),
        (np.array([-big, 0.0, big]), np.array([big, big])),
        (np.array([0.0, 1.0, big]), np.array([1.0, big, big, big])),
        (np.array([-big]), np.array([big])),
    ]:
        all_equal(ref, win)
        all_equal(win, ref)
    assert bits(merge_walk(a, a)) == bits(-0.0)  # as the numba walk answered: kept


@pytest.mark.parametrize("method", ["kolmogorov", "asymp", "auto"])
def test_p_values_of_every_path_agree(method: str) -> None:
    """evaluate, evaluate_sorted and the batch give equal results; D and p as ks_2samp."""
    rng = np.random.default_rng(3)
    for _ in range(15):
        ref = np.round(rng.normal(size=int(rng.integers(50, 800))), int(rng.integers(0, 3)))
        det = KSDetector(method=method)  # type: ignore[arg-type]
        det.fit(ref)
        wins = [
            np.sort(np.round(rng.normal(rng.normal(0, 0.3), 1, int(rng.integers(20, 600))), 2))
            for _ in range(3)
        ]
        single = [det.evaluate_sorted(w) for w in wins]
        assert single == [det.evaluate(rng.permutation(w)) for w in wins]
        assert KSDetector.evaluate_sorted_batch([(det, w) for w in wins]) == single
        if method != "kolmogorov":
            for w, r in zip(wins, single, strict=True):
                theirs = stats.ks_2samp(ref, w, method=method)
                assert r.statistic == pytest.approx(theirs.statistic, abs=1e-12)
                assert r.p_value == pytest.approx(theirs.pvalue, abs=1e-12)
        else:
            for w, r in zip(wins, single, strict=True):
                assert r.statistic == stats.ks_2samp(ref, w, method="asymp").statistic


def test_the_batch_is_one_kernel_call_for_all_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """An evaluation's KS columns go to the kernel together (the numpy path: per column);
    the other detectors' results are unchanged and in their order."""
    calls: list[int] = []
    real = ks.ks_statistics_sorted

    def counting(refs: list[np.ndarray], wins: list[np.ndarray]) -> list[float]:
        calls.append(len(refs))
        return real(refs, wins)

    monkeypatch.setattr(ks, "ks_statistics_sorted", counting)
    rng = np.random.default_rng(8)
    jobs = []
    for _ in range(6):
        ref = rng.normal(size=500)
        for det in (PSIDetector(), KSDetector(), KSDetector(method="asymp")):
            det.fit(ref)
            jobs.append((det, np.sort(rng.normal(0.2, 1, 300))))
    results = evaluate_sorted_all(jobs)
    assert calls == [12]
    assert results == [d.evaluate(w) for d, w in jobs]


@pytest.mark.parametrize("native", [False, pytest.param(True, marks=needs_kernel)])
def test_nan_and_unsorted_input_are_errors_not_answers(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not native:
        monkeypatch.setattr(ks, "_native_statistic", None)
        monkeypatch.setattr(ks, "_native_statistics", None)
    ref = np.arange(10.0)
    det = KSDetector()
    det.fit(ref)
    for bad in (np.array([1.0, np.nan, 3.0]), np.array([np.nan]), np.array([3.0, 1.0])):
        with pytest.raises(DetectorError, match="not sorted ascending or holds NaN"):
            ks.ks_statistic_sorted(ref, bad)
        with pytest.raises(DetectorError, match="not sorted ascending or holds NaN"):
            det.evaluate_sorted(bad)
        with pytest.raises(DetectorError, match="not sorted ascending or holds NaN"):
            ks_statistics_sorted([ref, ref], [ref, bad])
    with pytest.raises(DetectorError, match="finite"):  # evaluate checks first, as before
        det.evaluate(np.array([1.0, np.nan]))
    with pytest.raises(DetectorError):
        ks.ks_statistic_sorted(ref, np.array([]))


@needs_kernel
@settings(max_examples=150, deadline=None)
@given(
    n=st.sampled_from([1, 2, 63, 64, 65, 66, 128, 129, 200, 5_000]),
    place=st.floats(0.0, 1.0),
    bad=st.sampled_from([np.nan, -np.inf, -1.0, -0.0, None]),
    on_reference=st.booleans(),
)
def test_the_kernel_refuses_exactly_the_unsorted_and_nan_samples(
    n: int, place: float, bad: float | None, on_reference: bool
) -> None:
    """The kernel's check (in blocks of 64 pairs, vector compares) against the plain rule,
    one value planted anywhere in a sample with ties, on either side: refused (ValueError)
    exactly when some value is NaN or above its successor; else the D of the numpy path."""
    good = np.floor(np.arange(n) / 3.0) + 1.0
    sample = good.copy()
    if bad is not None:
        sample[min(int(place * n), n - 1)] = bad
    broken = bool(np.isnan(sample).any() or (np.diff(sample) < 0).any())
    ref, win = (sample, np.arange(7.0)) if on_reference else (np.arange(7.0), sample)
    if broken:
        with pytest.raises(ValueError, match="not sorted ascending or holds NaN"):
            monitor_native.ks_statistics_sorted([ref], [win])
    else:
        got = monitor_native.ks_statistics_sorted([ref], [win])
        assert got == [ks_statistic_sorted_numpy(ref, win)]


def pipeline_results() -> str:
    """Every detector result of every evaluation of a model fed a drifting stream (floats
    by repr, so equal text is equal bits)."""
    from monitor.simulate import DriftSpec, Simulator
    from tests.test_model_monitor import _monitor

    mm = _monitor(drift={"ks": {"method": "asymp"}})
    sim = Simulator(seed=4, drift=DriftSpec(kind="mean", features=("income",), start=700))
    out = []
    for ev in mm.ingest(model_events(sim, 1500)):
        out.append(sorted((k, [repr(r) for r in v]) for k, v in ev.results.items()))
    return repr(out)


_BLOCKED = """
import sys
sys.modules["monitor_native"] = None  # as if native/ were not built
from monitor.detectors import ks
from tests.test_ks_native import pipeline_results
assert not ks.NATIVE_KS
print(pipeline_results())
"""


def test_without_the_compiled_module_the_pipeline_gives_the_same_results() -> None:
    """The same model, fed the same events, in a process where monitor_native cannot be
    imported and in this one: every detector result of every evaluation is equal."""
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKED],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "detector='ks'" in out.stdout  # KS did run, on the numpy path there
    assert out.stdout.strip() == pipeline_results()


def test_a_sorted_reference_is_kept_without_a_copy_and_an_unsorted_one_is_sorted() -> None:
    """A profile's sample is sorted already: the detector keeps it (read-only) instead of a
    second copy of every numeric reference; the caller's array is never changed either way."""
    rng = np.random.default_rng(7)
    sample = np.sort(rng.normal(size=10_000))
    window = rng.normal(0.1, 1.0, size=5_000)
    kept = KSDetector()
    kept.fit(sample)
    assert np.shares_memory(kept.sorted_reference, sample)
    assert not kept.sorted_reference.flags.writeable
    assert sample.flags.writeable  # the caller's array is left as it was

    shuffled = rng.permutation(sample)
    before = shuffled.copy()
    sorted_here = KSDetector()
    sorted_here.fit(shuffled)
    assert np.array_equal(shuffled, before)
    assert np.array_equal(sorted_here.sorted_reference, sample)
    assert kept.evaluate(window).statistic == sorted_here.evaluate(window).statistic
