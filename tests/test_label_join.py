"""LabelJoiner: every outcome, TTLs, caps, bounded memory under long streams, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.performance.config import PerformanceConfig
from monitor.performance.label_join import LabelJoiner
from monitor.performance.tracker import PerformanceTracker
from tests.checkpoint import through_format


def _joiner(**kw: float) -> LabelJoiner:
    args = {
        "ttl_seconds": 100.0,
        "max_pending": 1000,
        "early_ttl_seconds": 10.0,
        "early_max": 100,
        "max_tombstones": 1000,
    }
    args.update(kw)
    return LabelJoiner(**args)  # type: ignore[arg-type]


def test_delayed_reordered_labels_join_with_their_predictions() -> None:
    j = _joiner()
    ids = [f"e{i}" for i in range(50)]
    preds = np.arange(50) / 100.0
    j.add_predictions(ids, preds, np.arange(50.0), now=0.0)
    order = np.random.default_rng(0).permutation(50)
    r = j.add_labels([ids[i] for i in order], order * 10, 1000.0 + order, now=50.0)
    assert r.matched == 50 and r.accepted.all()
    assert r.predictions == pytest.approx((order / 100.0).tolist())
    assert r.labels == (order * 10).tolist()
    assert r.event_ids == [ids[i] for i in order]
    assert r.label_delays.tolist() == [1000.0] * 50
    assert j.sizes()["pending"] == 0


def test_duplicate_labels_in_batch_and_across_batches() -> None:
    j = _joiner()
    j.add_predictions(["a", "b"], [0.1, 0.2], None, now=0.0)
    r = j.add_labels(["a", "a"], [1, 0], None, now=1.0)
    assert (r.matched, r.duplicate) == (1, 1) and r.labels == [1]
    r = j.add_labels(["a", "b"], [1, 1], None, now=2.0)
    assert (r.matched, r.duplicate) == (1, 1) and r.event_ids == ["b"]
    assert r.accepted.tolist() == [False, True]


def test_duplicate_predictions_are_ignored() -> None:
    j = _joiner()
    r = j.add_predictions(["a", "a", "b"], [0.1, 0.9, 0.2], None, now=0.0)
    assert r.accepted.tolist() == [True, False, True]
    j.add_labels(["b"], [0], None, now=1.0)
    r = j.add_predictions(["b"], [0.3], None, now=2.0)  # redelivered after its label
    assert not r.accepted.any()
    assert j.add_labels(["a"], [1], None, now=3.0).predictions == [0.1]
    assert j.counts["predictions_duplicate"] == 2


def test_missing_labels_expire_and_later_label_counts_expired() -> None:
    j = _joiner(ttl_seconds=100.0)
    j.add_predictions(["a", "b"], [0.1, 0.2], None, now=0.0)
    j.add_predictions(["c"], [0.3], None, now=60.0)
    ev = j.expire(now=100.0)
    assert ev.pending_expired == 2 and j.sizes()["pending"] == 1
    r = j.add_labels(["a", "c", "never-predicted"], [1, 1, 1], None, now=101.0)
    assert (r.matched, r.expired, r.early) == (1, 1, 1)


def test_label_before_prediction_is_held_then_joined() -> None:
    j = _joiner(early_ttl_seconds=10.0)
    r = j.add_labels(["x", "y"], [1, 0], [5.0, 6.0], now=0.0)
    assert r.early == 2 and r.matched == 0 and r.accepted.all()
    assert j.add_labels(["x"], [1], None, now=1.0).duplicate == 1  # already held
    r = j.add_predictions(["x"], [0.7], [1.0], now=5.0)
    assert r.matched == 1 and r.predictions == [0.7] and r.labels == [1]
    assert r.label_delays.tolist() == [4.0]
    # y's prediction comes after the hold ran out: its label is gone.
    r = j.add_predictions(["y"], [0.2], None, now=11.0)
    assert r.matched == 0 and r.evictions.early_expired == 1
    assert j.counts["early_expired"] == 1
    # x is labelled now: a redelivered label is a duplicate, not early.
    assert j.add_labels(["x"], [1], None, now=12.0).duplicate == 1


def test_early_holding_disabled_counts_unknown() -> None:
    j = _joiner(early_max=0)
    r = j.add_labels(["nope"], [1], None, now=0.0)
    assert (r.unknown, r.early) == (1, 0)
    assert j.sizes()["early"] == 0


def test_pending_cap_evicts_oldest_and_remembers_them() -> None:
    j = _joiner(max_pending=3)
    r = j.add_predictions(list("abcde"), [0.1] * 5, None, now=0.0)
    assert r.evictions.pending_evicted == 2 and j.sizes()["pending"] == 3
    r = j.add_labels(list("abcde"), [1] * 5, None, now=1.0)
    assert (r.expired, r.matched) == (2, 3) and r.event_ids == ["c", "d", "e"]


def test_caps_hold_under_long_random_stream() -> None:
    """Random delays (including never), duplicates and early labels: no store exceeds its cap."""
    caps = {"max_pending": 800, "early_max": 50, "max_tombstones": 300}
    j = _joiner(ttl_seconds=40.0, early_ttl_seconds=5.0, **caps)
    rng = np.random.default_rng(42)
    due: dict[int, list[str]] = {}
    totals = {"labels": 0}
    out_counts = dict.fromkeys(("matched", "duplicate", "expired", "early", "unknown"), 0)
    for step in range(400):
        now = float(step)
        rate = 20 if step < 200 else 120  # quiet phase: TTL evicts; busy phase: the cap does
        ids = [f"{step}-{i}" for i in range(int(rng.integers(0, rate)))]
        # Some labels arrive before their predictions (early), some are for phantom events.
        early_ids = [e for e in ids if rng.uniform() < 0.05]
        for e in ids:
            if rng.uniform() < 0.3:
                continue  # never labelled
            delay = int(rng.exponential(20.0))
            due.setdefault(step + delay, []).append(e)
            if rng.uniform() < 0.1:
                due.setdefault(step + delay + int(rng.integers(0, 50)), []).append(e)
        if early_ids:
            totals["labels"] += len(early_ids)
            r = j.add_labels(early_ids, [1] * len(early_ids), None, now)
            for key in out_counts:
                out_counts[key] += getattr(r, key)
        j.add_predictions(ids, rng.uniform(size=len(ids)), None, now)
        batch = due.pop(step, []) + [f"phantom-{step}-{k}" for k in range(int(rng.integers(0, 5)))]
        totals["labels"] += len(batch)
        r = j.add_labels(batch, [0] * len(batch), None, now)
        for key in out_counts:
            out_counts[key] += getattr(r, key)
        sizes = j.sizes()
        assert sizes["pending"] <= caps["max_pending"]
        assert sizes["early"] <= caps["early_max"]
        assert sizes["labelled"] <= caps["max_tombstones"]
        assert sizes["evicted"] <= caps["max_tombstones"]
    # Every label got exactly one outcome, and the stream exercised all of them.
    assert sum(out_counts.values()) == totals["labels"]
    assert all(out_counts[k] > 0 for k in ("matched", "duplicate", "expired", "early"))
    assert j.counts["pending_evicted"] > 0 and j.counts["pending_expired"] > 0
    assert j.counts["early_expired"] > 0


def _restarted(j: LabelJoiner) -> LabelJoiner:
    """``j`` after a checkpoint and restore: the joiner is saved inside its performance
    tracker's state (``PerformanceState.joiner``), read back from the checkpoint's bytes,
    and adopted by a fresh joiner with the same settings, as the tracker's restore does."""
    carrier = PerformanceTracker(PerformanceConfig(task="binary")).export_state()
    carrier.joiner = j.export_state()
    saved = through_format(performance=carrier).performance
    assert saved is not None
    restored = _joiner()
    restored.restore_state(saved.joiner)
    return restored


def test_checkpoint_between_prediction_and_label_behaves_identically() -> None:
    j = _joiner()
    j.add_predictions(["a", "b", "c"], [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], now=0.0)
    j.add_labels(["zz"], [1], None, now=1.0)  # held early label survives the restart too
    restored = _restarted(j)
    results = []
    for joiner in (j, restored):
        r1 = joiner.add_labels(["b", "a", "b", "q"], [1, 0, 1, 0], None, now=2.0)
        r2 = joiner.add_predictions(["zz"], [0.9], None, now=3.0)
        ev = joiner.expire(now=500.0)
        results.append((r1.event_ids, r1.predictions, r1.labels, r1.duplicate, r1.early,
                        r2.labels, ev.as_dict(), joiner.counts, joiner.sizes()))  # fmt: skip
    assert results[0] == results[1]
    assert results[0][0] == ["b", "a"] and results[0][5] == [1]


def test_two_dimensional_predictions_are_stored_as_rows() -> None:
    j = _joiner()
    batch = np.array([[0.2, 0.8], [0.6, 0.4]])
    j.add_predictions(["a", "b"], batch, None, now=0.0)
    batch[:] = 0.0  # the caller reuses its buffer: stored rows must not change
    assert j.add_labels(["b"], [0], None, now=1.0).predictions == [[0.6, 0.4]]


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        _joiner().add_predictions(["a"], [0.1, 0.2], None, now=0.0)
    with pytest.raises(ValueError):
        _joiner().add_labels(["a"], [1], [1.0, 2.0], now=0.0)
