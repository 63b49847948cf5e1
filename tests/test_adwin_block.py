"""ADWIN's block mode: the same detector at a fraction of the per-value cost.

``ADWINDetector(block=b)`` feeds river one input per ``b`` values (the block's
sum), so these tests pin down what must not change: ``block=1`` is river's
ADWIN value by value with today's details, block results never depend on how a
stream is split into calls or where it is checkpointed, a block detector still
finds a shift quickly and raises nothing on a long stationary stream at the
service's defaults, and the config validates ``block``.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from river import drift as river_drift

from monitor.detectors.config import ADWINParams, DriftConfig
from monitor.detectors.factory import build_detector
from monitor.detectors.streaming import ADWINDetector, StreamDetector
from monitor.errors import DetectorError
from tests.checkpoint import through_format

EMPTY = np.empty(0)


def service_adwin(**overrides: object) -> ADWINDetector:
    """An ADWIN detector exactly as the service builds it from the default config."""
    params = {**ADWINParams().model_dump(), **overrides}
    return ADWINDetector(**params)  # type: ignore[arg-type]


def moving_stream(seed: int, n: int = 6_000) -> tuple[np.ndarray, np.ndarray]:
    """(reference, live): live jumps by 3 sigma at 40 % of its length and back at 70 %."""
    rng = np.random.default_rng(seed)
    live = rng.normal(size=n)
    live[int(0.4 * n) : int(0.7 * n)] += 3.0
    return rng.normal(size=2_000), live


def feed(detector: ADWINDetector, live: np.ndarray, cuts: list[int]) -> list[object]:
    """Update in the pieces ``cuts`` delimits; evaluate at every multiple of 1000 values."""
    results: list[object] = []
    bounds = sorted({0, live.size, *cuts, *range(1_000, live.size, 1_000)})
    for lo, hi in pairwise(bounds):
        detector.update(live[lo:hi])
        if hi % 1_000 == 0 or hi == live.size:
            results.append(detector.evaluate(EMPTY))
    return results


# ----------------------------------------------------------------------------- block = 1


def test_block_1_reproduces_the_value_by_value_details() -> None:
    # Golden values of the detector as it was before blocks existed (same stream,
    # same uneven calls): block 1 must not change a bit of them.
    rng = np.random.default_rng(11)
    reference = rng.normal(size=2_000)
    live = np.concatenate(
        [rng.normal(size=1_500), rng.normal(1.5, 1.0, 700), rng.normal(-0.5, 2.0, 1_800)]
    )
    detector = ADWINDetector(delta=0.002, clock=32, seed=5)
    assert detector.block == 1
    detector.fit(reference)
    got, pos = [], 0
    for size in (500, 1_000, 1, 999, 500, 999, 1):
        detector.update(live[pos : pos + size])
        pos += size
        r = detector.evaluate(EMPTY)
        got.append((r.statistic, r.severity, r.details))
    assert got == [
        (0.0, "ok", {"last_change_index": -1.0, "values_seen": 500.0,
                     "estimation": 0.006931240198714906, "shift": 0.0}),
        (0.0, "ok", {"last_change_index": -1.0, "values_seen": 1500.0,
                     "estimation": 0.008922744436519789, "shift": 0.0}),
        (0.0, "ok", {"last_change_index": -1.0, "values_seen": 1501.0,
                     "estimation": 0.00961193710573912, "shift": 0.0}),
        (2.0, "critical", {"last_change_index": 2223.0, "values_seen": 2500.0,
                           "estimation": -0.5749610020840129, "shift": -0.5229667967399246}),
        (0.0, "ok", {"last_change_index": -1.0, "values_seen": 3000.0,
                     "estimation": -0.5082180242336759, "shift": 0.0}),
        (0.0, "ok", {"last_change_index": -1.0, "values_seen": 3999.0,
                     "estimation": -0.417944608470497, "shift": 0.0}),
        (0.0, "ok", {"last_change_index": -1.0, "values_seen": 4000.0,
                     "estimation": -0.4185649363852146, "shift": 0.0}),
    ]  # fmt: skip


@pytest.mark.parametrize("call_size", [1, 7, 1_000])
def test_block_1_detects_where_river_private_does(call_size: int) -> None:
    # Oracle: river's own ADWIN, value by value, after the same seeded warm-up order.
    # Calls of one value put every detection on a call's last value (deferred reset).
    reference, live = moving_stream(seed=2)
    river = river_drift.ADWIN(delta=0.002, clock=32, min_window_length=5, grace_period=10)
    for value in np.random.default_rng(4).permutation(reference).tolist():
        river.update(value)
    expected = []
    for i, value in enumerate(live.tolist()):
        river.update(value)
        if river.drift_detected:
            expected.append(i)
    assert len(expected) >= 2  # the stream moves twice

    detector = ADWINDetector(delta=0.002, seed=4)
    detector.fit(reference)
    found = []
    for lo in range(0, live.size, call_size):
        detector.update(live[lo : lo + call_size])
        r = detector.evaluate(EMPTY)
        if r.drifted:
            found.append(int(r.details["last_change_index"]))
            assert r.statistic == 1 or call_size > 1
    if call_size == 1:
        assert found == expected
    else:  # one report per call: the last change of each call
        calls = {i // call_size: i for i in expected}
        assert found == sorted(calls.values())
    assert detector.evaluate(EMPTY).details["estimation"] == pytest.approx(river.estimation)


# ----------------------------------------------------------------------------- detection


def test_block_mode_finds_a_one_sigma_shift_within_a_few_blocks() -> None:
    for detector in (service_adwin(), ADWINDetector(delta=1e-5, clock=1, block=32)):
        assert detector.block > 1
        for seed in range(5):
            rng = np.random.default_rng(100 + seed)
            detector.fit(rng.normal(2.0, 0.5, size=10_000))
            detector.update(rng.normal(2.0, 0.5, size=5_003))  # 5003: blocks straddle the change
            assert not detector.evaluate(EMPTY).drifted
            detector.update(rng.normal(2.5, 0.5, size=1_000))
            r = detector.evaluate(EMPTY)
            assert r.drifted, (detector.block, seed)
            index = int(r.details["last_change_index"])
            # value by value: 69-101 values in; defaults: 53-117; block 32, 5-block minimum: 149-181
            assert 5_003 <= index < 5_003 + 320, (detector.block, seed, index)
            assert (index + 1) % detector.block == 0  # the last value of a block
            assert r.details["values_seen"] == 6_003
            # value units (the inputs are block sums): river restarted after the change
            assert r.details["estimation"] == pytest.approx(2.5, abs=0.15)
            assert "shift" not in r.details  # unreliable sign at block > 1: see ADWINDetector


def test_no_change_on_200k_stationary_values_at_the_service_defaults() -> None:
    assert ADWINParams().delta == 1e-5
    for seed, draw in enumerate(
        (
            lambda rng, n: rng.normal(0.0, 1.0, n),
            lambda rng, n: rng.normal(-2.0, 0.5, n),  # the bench's smallest scale
            lambda rng, n: rng.uniform(0.0, 1.0, n),
        )
    ):
        rng = np.random.default_rng(seed)
        detector = service_adwin(seed=seed)
        detector.fit(draw(rng, 10_000))
        for _ in range(200):
            detector.update(draw(rng, 1_000))
            assert not detector.evaluate(EMPTY).drifted
        assert detector.evaluate(EMPTY).details["values_seen"] == 200_000


# ----------------------------------------------------------------------------- batching


@settings(max_examples=60, deadline=None)
@given(
    block=st.sampled_from([2, 7, 32, 64]),
    seed=st.integers(0, 3),
    cuts=st.lists(st.integers(1, 5_999), max_size=25),
    checkpoint_at=st.integers(0, 25),
)
def test_block_results_do_not_depend_on_batching_or_checkpoints(
    block: int, seed: int, cuts: list[int], checkpoint_at: int
) -> None:
    reference, live = moving_stream(seed)
    whole = ADWINDetector(delta=1e-3, clock=1, min_window_length=1, block=block, seed=seed)
    whole.fit(reference)
    expected = feed(whole, live, [])
    assert any(r.drifted for r in expected)  # type: ignore[attr-defined]

    split = ADWINDetector(delta=1e-3, clock=1, min_window_length=1, block=block, seed=seed)
    split.fit(reference)
    bounds = sorted({0, live.size, *cuts, *range(1_000, live.size, 1_000)})
    results = []
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        if k == checkpoint_at:  # checkpoint and restore, usually with a block half full
            saved = through_format(stream_detectors={"x": [split.export_state("ref")]})
            restored = ADWINDetector(
                delta=1e-3, clock=1, min_window_length=1, block=block, seed=seed
            )
            restored.fit(reference)
            assert restored.restore_state(saved.stream_detectors["x"][0], "ref") is None
            split = restored
        split.update(live[lo:hi])
        if hi % 1_000 == 0 or hi == live.size:
            results.append(split.evaluate(EMPTY))
    assert results == expected


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, 5_999), max_size=25))
def test_block_1_batching_changes_at_most_the_rounding_of_shift(cuts: list[int]) -> None:
    # block 1 keeps its per-call numpy sums (exactly today's numbers), so shift may
    # differ in the last bits between splits; everything else is exact.
    reference, live = moving_stream(seed=1)
    a, b = ADWINDetector(delta=1e-3, seed=1), ADWINDetector(delta=1e-3, seed=1)
    a.fit(reference)
    b.fit(reference)
    for x, y in zip(feed(a, live, []), feed(b, live, cuts), strict=True):
        assert (x.statistic, x.severity) == (y.statistic, y.severity)  # type: ignore[attr-defined]
        dx, dy = dict(x.details), dict(y.details)  # type: ignore[attr-defined]
        assert dx.pop("shift") == pytest.approx(dy.pop("shift"), rel=1e-12, abs=1e-15)
        assert dx == dy


def test_generic_path_gives_the_same_results_as_the_compiled_one() -> None:
    # If a river release renames the helper, StreamDetector.update takes over.
    reference, live = moving_stream(seed=3)
    fast = ADWINDetector(delta=1e-3, clock=1, min_window_length=1, block=16)
    slow = ADWINDetector(delta=1e-3, clock=1, min_window_length=1, block=16)
    fast.fit(reference)
    slow.fit(reference)
    for lo in range(0, live.size, 700):
        fast.update(live[lo : lo + 700])
        StreamDetector.update(slow, live[lo : lo + 700])
        assert fast.evaluate(EMPTY) == slow.evaluate(EMPTY)


def test_bad_values_in_a_partial_block_raise_and_leave_the_state_alone() -> None:
    detector = ADWINDetector(block=32)
    detector.fit(np.random.default_rng(0).normal(size=1_000))
    detector.update(np.arange(10.0))
    before = detector.export_state(None)
    for bad in ([0.1, np.nan], [np.inf], np.zeros((2, 2))):
        with pytest.raises(DetectorError):
            detector.update(np.asarray(bad))
    assert detector.export_state(None) == before
    with np.errstate(over="ignore"):
        detector.update(np.array([1e308, 1e308]))  # finite, though their sum overflows
    assert detector.evaluate(EMPTY).details["values_seen"] == 12


def test_fit_discards_the_open_block_and_the_reference_tail() -> None:
    detector = ADWINDetector(block=32)
    detector.fit(np.ones(1_000))  # 31 whole blocks; the last 8 values are not fed
    assert detector._river.width == 31
    detector.update(np.ones(20))
    detector.fit(np.ones(64))
    detector.update(np.ones(12))  # would complete a block had fit kept the 20
    assert detector._river.width == 2
    assert detector.evaluate(EMPTY).details["estimation"] == 1.0


def test_block_is_validated_and_reaches_the_detector() -> None:
    for bad in (0, -1, 1.5):
        with pytest.raises(ValidationError):
            ADWINParams(block=bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            DriftConfig.model_validate({"adwin": {"block": bad}})
    for bad in (0, True, 2.0):
        with pytest.raises(DetectorError, match="block must be an integer >= 1"):
            ADWINDetector(block=bad)  # type: ignore[arg-type]
    default = build_detector("adwin", "numeric", DriftConfig(), n_reference=10_000)
    assert isinstance(default, ADWINDetector)
    assert default.block == ADWINParams().block > 1
    custom = DriftConfig.model_validate({"adwin": {"block": 8, "clock": 4}})
    built = build_detector("adwin", "numeric", custom, n_reference=10_000)
    assert isinstance(built, ADWINDetector) and (built.block, built.clock) == (8, 4)
