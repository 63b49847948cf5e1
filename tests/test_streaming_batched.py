"""ADWIN fed for all columns at once (``ADWINDetector.update_columns``, through
``StreamFeed.flush``) against the same detectors fed column by column, as flush did before.

Every input river sees, and so every detection, latch and saved state, must be the same
bit for bit: the states are compared whole (river's engine bytes included) and so are
the results of every evaluation (issue 19).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detectors.base import Detector
from monitor.detectors.psi import PSIDetector
from monitor.detectors.streaming import ADWINDetector
from monitor.evaluation import StreamFeed

EMPTY = np.empty(0)


def _pair(k: int, block: int, seed: int) -> tuple[list[ADWINDetector], list[ADWINDetector]]:
    rng = np.random.default_rng(seed)
    refs = [rng.normal(size=300) for _ in range(k)]
    out: tuple[list[ADWINDetector], list[ADWINDetector]] = ([], [])
    for side in out:
        for ref in refs:
            d = ADWINDetector(delta=0.002, clock=1, min_window_length=1, block=block, seed=3)
            d.fit(ref)
            side.append(d)
    return out


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(2, 4),
    block=st.sampled_from([1, 2, 7, 64]),
    seed=st.integers(0, 10_000),
    steps=st.lists(
        st.tuples(st.integers(0, 150), st.booleans(), st.floats(-4, 4)), min_size=1, max_size=8
    ),
)
def test_batched_feed_is_the_per_column_feed(
    k: int, block: int, seed: int, steps: list[tuple[int, bool, float]]
) -> None:
    per_column, together = _pair(k, block, seed)
    names = [f"f{j}" for j in range(k)]
    # As the service builds them: window tests first (their update does nothing), then ADWIN.
    detectors: dict[str, list[Detector]] = {}
    for name, d in zip(names, together, strict=True):
        psi = PSIDetector()
        psi.fit(np.random.default_rng(seed).normal(size=200))
        detectors[name] = [psi, d]
    rng = np.random.default_rng(seed + 1)
    feed = StreamFeed()
    for rows, with_nan, shift in steps:
        num = rng.normal(size=(rows, k)) + shift  # shifts between steps make ADWIN cut
        if with_nan and rows:
            num[rng.integers(0, rows), rng.integers(0, k)] = np.nan
        # Before: flush fed each column, its NaNs left out, to its detectors.
        for j, d in enumerate(per_column):
            col = num[:, j]
            col = col[~np.isnan(col)]
            if col.size:
                d.update(col)
        feed.add(num)
        feed.flush(names, detectors)
        for a, b in zip(per_column, together, strict=True):
            assert a.export_state(None) == b.export_state(None)
            assert a.evaluate(EMPTY) == b.evaluate(EMPTY)


def test_batched_feed_applies_and_refuses_as_documented() -> None:
    per_column, together = _pair(3, 64, 7)
    rng = np.random.default_rng(1)
    num = rng.normal(size=(1000, 3))
    assert ADWINDetector.update_columns(together, num)
    for j, d in enumerate(per_column):
        d.update(num[:, j])
    for a, b in zip(per_column, together, strict=True):
        assert a.export_state(None) == b.export_state(None)
    # A non-finite value: nothing fed (the per-column path raises its usual error).
    bad = num.copy()
    bad[5, 1] = np.inf
    before = [d.export_state(None) for d in together]
    assert not ADWINDetector.update_columns(together, bad)
    assert [d.export_state(None) for d in together] == before
    # The same detector twice: column by column.
    assert not ADWINDetector.update_columns([together[1], together[1]], num[:, :2])
    # Different numbers of carried-over values: column by column.
    together[0].update(num[:3, 0])
    assert not ADWINDetector.update_columns(together, num)
