"""bench.checkpoint runs (two models) and its figures hold together."""

from __future__ import annotations

from bench import checkpoint


async def test_checkpoint_bench_on_two_models() -> None:
    r = await checkpoint.run(2, None)
    assert r["models"] == 2 and r["window"] == checkpoint.WINDOW
    assert 0 < r["stall_ms"] < 1000 and r["wall_s"] > 0
    # 18 float64 columns of a full window, at least.
    assert r["bytes_per_model"] > 18 * checkpoint.WINDOW * 8
    # 18 features and the prediction, a full window of float64 each.
    assert r["parts"]["window numeric (float64)"] == 19 * checkpoint.WINDOW * 8
    assert 0 < r["kafka_bytes_per_model"] < r["bytes_per_model"]
    assert "Checkpoint cost" in checkpoint.report(r)
