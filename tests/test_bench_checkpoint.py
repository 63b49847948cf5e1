"""bench.checkpoint runs (two models) and its figures hold together."""

from __future__ import annotations

from bench import checkpoint


async def test_checkpoint_bench_on_two_models() -> None:
    r = await checkpoint.run(2, None)
    assert r["models"] == 2 and r["window"] == checkpoint.WINDOW
    assert 0 < r["stall_ms"] < 1000 and r["wall_s"] > 0
    # 18 float64 columns of a full window, at least, before compression.
    assert r["raw_bytes_per_model"] > 18 * checkpoint.WINDOW * 8
    # 18 features and the prediction, a full window of float64 each.
    assert r["parts"]["window numeric (float64)"] == 19 * checkpoint.WINDOW * 8
    # Issue 15's target: the stored state (SQLite) is at least 5x smaller than the pickle.
    # The size per model does not depend on the number of models.
    assert 0 < r["bytes_per_model"] * 5 <= checkpoint.OLD_PICKLE_BYTES
    assert "Checkpoint cost" in checkpoint.report(r)
