"""A reference of a handful of values is no basis for a drift verdict.

Windows with fewer than ``MIN_VALUES_FOR_TESTS`` present values got no verdict; a reference
with as few (``learn_first: 1``, a file cut short, a column almost always missing in the
reference) was tested as a real one: a one-row reference paged every column critical.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.config import parse_config
from monitor.evaluation import MIN_VALUES_FOR_TESTS
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile

WINDOW = {"size": 500, "step": 500}


def _events(n: int, seed: int) -> ModelEvents:
    rng = np.random.default_rng(seed)
    out = ModelEvents("m")
    for i in range(n):
        out.event_ids.append(f"e{seed}-{i}")
        out.timestamps.append(1_790_000_000.0 + i)
        out.versions.append(None)
        out.features.append(
            {"x": float(rng.normal()), "c": ("a", "b", "c")[int(rng.integers(0, 3))]}
        )
        out.predictions.append(float(rng.random()))
    return out


def _verdicts(reference_rows: int, seed: int = 1) -> dict[str, list[str]]:
    cfg = parse_config({"models": [{"name": "m", "window": WINDOW}]})
    ref = _events(reference_rows, 0)
    profile = build_profile("m", list(zip(ref.features, ref.predictions, strict=True)))
    mm = ModelMonitor(cfg.model("m"), cfg.limits, profile)  # type: ignore[arg-type]
    (ev,) = mm.ingest(_events(500, seed))
    return {col: [r.severity for r in results] for col, results in ev.results.items()}


@pytest.mark.parametrize("rows", [1, 5, MIN_VALUES_FOR_TESTS - 1])
def test_a_reference_of_too_few_values_gives_no_verdict(rows: int) -> None:
    assert _verdicts(rows) == {}


def test_a_reference_of_enough_values_is_tested() -> None:
    verdicts = _verdicts(MIN_VALUES_FOR_TESTS)
    assert set(verdicts) == {"x", "c", "__prediction__"}
    assert all(verdicts.values())
