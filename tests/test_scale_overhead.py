"""Per-model work of a batch with many models interleaved, against what it replaced (issue 19).

With 50 models in one stream each model's part of a 5,000-event batch is ~100 events, and
the work paid once per model per batch (the validation's count, columns, metrics) weighs
as much as the events. That work was made cheaper; what it gives must not change:

* the validation's per-batch count (``Validator._counts``) equals a frozen copy of the
  full count it replaced, over clean batches and batches with one planted violation of
  every kind (below, above, NaN, not whole, missing category, unseen category of a
  declared and of an inferred domain);
* a one-run batch's partitions equal the split by runs;
* a whole service fed an interleaved stream of six models gives, per model, the
  evaluations, window, violation counts and metric samples that the code before gave
  (a digest recorded with it: ``tests/fixtures/scale_interleaved.json``).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from monitor.config import ValidationConfig
from monitor.events import MessageBatch
from monitor.reference import build_profile
from monitor.validation import Validator
from tests import scale_stream

RECORDED = Path(__file__).parent / "fixtures" / "scale_interleaved.json"

# ------------------------------------------------------------ frozen copy (validation)


def frozen_counts(self: Validator, num: np.ndarray, cat: np.ndarray) -> dict[tuple[str, str], int]:
    """``Validator._counts`` as it was before the clean-batch test (one full pass)."""
    out: dict[tuple[str, str], int] = {}
    rules = self.rules
    if num.shape[1] and len(num):
        by_column = np.ascontiguousarray(num.T)
        k = num.shape[1]
        below = np.zeros(k, dtype=np.int64)
        above = np.zeros(k, dtype=np.int64)
        missing = np.zeros(k, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            lowest = np.minimum.reduce(by_column, axis=1)
            highest = np.maximum.reduce(by_column, axis=1)
            gaps = np.isnan(lowest)
            cols = np.flatnonzero((lowest < self._lo) | gaps)
            if cols.size:
                below[cols] = (by_column[cols] < self._lo[cols, None]).sum(axis=1)
            cols = np.flatnonzero((highest > self._hi) | gaps)
            if cols.size:
                above[cols] = (by_column[cols] > self._hi[cols, None]).sum(axis=1)
        cols = np.flatnonzero(gaps)
        if cols.size:
            missing[cols] = np.isnan(by_column[cols]).sum(axis=1)
        if self._integer.any():
            sub = by_column[self._integer]
            frac = (sub != np.round(sub)) & ~np.isnan(sub)
            for j, n in zip(np.nonzero(self._integer)[0], frac.sum(axis=1), strict=True):
                if n:
                    out[(self.numeric_columns[j], "not_integer")] = int(n)
        for rule, counts in (("below_min", below), ("above_max", above), ("missing", missing)):
            for j in np.nonzero(counts)[0]:
                key = (self.numeric_columns[j], rule)
                if key in rules:
                    out[key] = int(counts[j])
    if cat.shape[1]:
        missing = (cat < 0).sum(axis=0)
        for j in np.nonzero(missing)[0]:
            key = (self.categorical_columns[j], "missing")
            if key in rules:
                out[key] = int(missing[j])
        for j in self._domains:
            codes = cat[:, j]
            allowed = self._allowed_codes(j)
            present = codes >= 0
            n = int(present.sum()) - int(allowed[codes[present]].sum())
            if n:
                out[(self.categorical_columns[j], "unseen")] = n
    return out


def _validator(infer: bool) -> Validator:
    """Columns x (min/max/integer declared), y (inferred range), z (no rule when not
    inferred); categories c (declared domain), d (inferred domain of the reference)."""
    rng = np.random.default_rng(5)
    rows = [
        (
            {
                "x": float(i % 10),
                "y": float(rng.normal(50, 10)),
                "z": float(rng.normal()),
                "c": ("a", "b")[i % 2],
                "d": ("p", "q", "r")[i % 3],
            },
            None,
        )
        for i in range(600)
    ]
    cfg = ValidationConfig(
        infer=infer,
        constraints={"x": {"min": 0, "max": 10, "integer": True}, "c": {"domain": ["a", "b"]}},
    )
    ref = build_profile("m", rows)
    cats = {"c": ["a", "b"], "d": ["p", "q", "r"]}
    return Validator(cfg, ref, ["x", "y", "z"], ["c", "d"], cats)


def _batches(v: Validator, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Clean batches, and batches with one planted violation of each kind."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 3, 100, 250):
        num = np.column_stack(
            [rng.integers(0, 11, n).astype(float), rng.normal(50, 5, n), rng.normal(0, 1, n)]
        )
        cat = np.column_stack([rng.integers(0, 2, n), rng.integers(0, 3, n)]).astype(np.int32)
        out.append((num, cat))
        i = int(rng.integers(0, n))
        planted = [(0, -1.0), (0, 11.0), (0, 2.5), (0, np.nan), (1, 1e9), (1, -1e9)]
        planted += [(1, np.nan), (2, np.nan), (2, 1e9), (0, np.inf), (1, -np.inf)]
        for col, value in planted:
            bad = num.copy()
            bad[i, col] = value
            out.append((bad, cat))
        for col, code in ((0, -1), (1, -1), (0, 2), (1, 3), (1, 4)):
            bad_cat = cat.copy()
            bad_cat[i, col] = code
            out.append((num, bad_cat))
    out.append((np.empty((0, 3)), np.empty((0, 2), dtype=np.int32)))
    return out


@pytest.mark.parametrize("infer", [True, False])
def test_validation_counts_equal_the_full_count(infer: bool) -> None:
    v = _validator(infer)
    # Codes past the reference's categories: a new category seen in the stream.
    v.categories["c"].append("new")
    v.categories["d"].extend(["s", "t"])
    kinds = set()
    for seed in range(4):
        for num, cat in _batches(v, seed):
            got, want = v._counts(num, cat), frozen_counts(v, num, cat)
            assert got == want and list(got) == list(want), (num, cat)
            kinds.update(rule for _, rule in want)
    # Every kind of violation was planted and counted (else the comparison proves little).
    assert (
        kinds == {"below_min", "above_max", "not_integer", "missing", "unseen"}
        if infer
        else (kinds >= {"below_min", "above_max", "not_integer", "unseen"})
    )


def test_validation_observe_accumulates_as_before() -> None:
    v, old = _validator(True), _validator(True)
    for w in (v, old):
        w.categories["c"].append("new")
        w.categories["d"].extend(["s", "t"])
    for num, cat in _batches(v, 9):
        v.observe(num, cat)
        if old.rules and len(num):
            for key, n in frozen_counts(old, num, cat).items():
                old.violations[key] = old.violations.get(key, 0) + n
    assert v.violations == old.violations and list(v.violations) == list(old.violations)
    assert sum(v.violations.values()) > 0


# ------------------------------------------------------------ frozen copy (partitions)


def frozen_partitions_of(batch: MessageBatch, rows: list[int]) -> set[tuple[str, int]]:
    """``MessageBatch.partitions_of`` as it was: a split by runs for every call."""
    return {(topic, partition) for topic, partition, _, _ in batch._split(rows)}


def test_partitions_of_equals_the_split_for_one_run_and_several() -> None:
    rng = np.random.default_rng(3)
    for runs in ([("p", 0, 40)], [("p", 3, 0), ("p", 3, 25)], [("p", 0, 10), ("p", 1, 30)],
                 [("p", 0, 5), ("l", 0, 5), ("p", 2, 30)]):  # fmt: skip
        batch = MessageBatch([], [], [], [], [])
        for topic, part, size in runs:
            batch.add_run(topic, part, [b"{}"] * size, [0.0] * size, range(size), [None] * size)
        n = len(batch)
        for k in (0, 1, 2, n // 2, n):
            for _ in range(5):
                rows = sorted(rng.choice(n, size=k, replace=False).tolist()) if n else []
                assert batch.partitions_of(rows) == frozen_partitions_of(batch, rows)


# ------------------------------------------------------------ the whole service


def _pinned_digest() -> dict[str, object]:
    """``scale_stream.digest()`` in a child process whose OpenBLAS kernel is pinned
    (``scale_stream.PINNED_BLAS``): it is chosen when numpy loads, so not in this one."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if platform.machine() not in ("x86_64", "AMD64") or " avx2" not in flags:
        pytest.skip("the recorded digest needs OpenBLAS's Haswell kernel (x86-64 with AVX2)")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "tests" / "scale_stream.py")],
        env={**os.environ, **scale_stream.PINNED_BLAS, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return json.loads(done.stdout)


def test_an_interleaved_stream_gives_what_the_code_before_gave() -> None:
    """Six models over three partitions in batches of 700 (~115 events per model and
    batch), with drift, validation breaches, events without a timestamp and refused
    ones: per model, every evaluation (summaries, detector results, verdicts, signals,
    bit for bit), the window, the violation counts and every metric sample are those the
    code before issue 19's per-model work gave (recorded with it, see
    ``tests/scale_stream.py``)."""
    recorded = json.loads(RECORDED.read_text())
    got = _pinned_digest()
    for model in scale_stream.MODELS:
        assert got[model] == recorded[model], model
    assert got == recorded


async def _lag_after_revoke_and_return() -> tuple[float | None, float | None]:
    """A model's event lag series after its partition is revoked, and after its events
    come back (a new assignment)."""
    from monitor.clock import ManualClock
    from monitor.service import MonitorService

    with tempfile.TemporaryDirectory() as tmp:
        config = scale_stream.service_config(Path(tmp))
        clock = ManualClock(scale_stream.T0 + 3600)
        svc = MonitorService(config, clock=clock)
        svc.source = scale_stream._NoKafka()  # type: ignore[assignment]
        await svc.alerts.start()
        stream = scale_stream._events(120, 7)
        batch = MessageBatch([], [], [], [], [])
        batch.add_run(
            "predictions", 0, [v for _, v in stream], [0.0] * 120, range(120), [None] * 120
        )
        await svc.process(batch)
        await svc._on_revoked({("predictions", 0)})
        gone = svc.registry.get_sample_value("monitor_event_lag_seconds", {"model": "m0"})
        clock.advance(10.0)
        svc._revoked_since_poll.clear()  # a later poll, after the partition came back
        batch = MessageBatch([], [], [], [], [])
        batch.add_run(
            "predictions", 0, [v for _, v in stream], [0.0] * 120, range(120, 240), [None] * 120
        )
        await svc.process(batch)
        back = svc.registry.get_sample_value("monitor_event_lag_seconds", {"model": "m0"})
        await svc.alerts.stop(grace_seconds=0)
        return gone, back


def test_a_models_lag_series_comes_back_after_its_partition_was_revoked() -> None:
    gone, back = asyncio.run(_lag_after_revoke_and_return())
    assert gone is None
    # The newest event of m0 in the stream is at T0 + 1.14 s; the clock reads T0 + 3610.
    assert back == pytest.approx(3610.0 - 1.14)
