"""The throughput harness runs on a tiny input and writes only its own BENCHMARKS.md section.

No timing assertions here: speed is measured by ``python -m bench.throughput`` and
recorded in BENCHMARKS.md, never checked by the test suite.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest

# bench/ is not an installed package (and pytest ignores it): import it from the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import throughput as bench


def test_generated_events_match_the_workload() -> None:
    values = bench.generate(bench.Workload(2, 20, 2), 10, seed=1)
    events = [orjson.loads(v) for v in values]
    assert [e["model"] for e in events[:4]] == ["m00", "m01", "m00", "m01"]
    assert len(events[0]["features"]) == 22
    assert 350 < sum(map(len, values)) / len(values) < 550


def test_in_process_pipeline_evaluates_and_alerts_on_a_tiny_stream() -> None:
    workload = bench.Workload(1, 3, 1)
    msgs = bench.raw_messages(bench.generate(workload, 9_000, seed=1, drift_from=4_000))
    refs = bench.references(workload)
    result = asyncio.run(bench.run_in_process(workload, msgs, 3_000, refs, checkpoints=(1_000,)))
    svc = result.pop("_service")
    assert result["events"] == 3_000
    assert result["evaluations"] == 5  # at 5,000 .. 9,000 events: the window (5,000) is full
    assert svc.models["m00"].events_total == 9_000
    assert set(result["rss_at"]) == {"1000"}
    timing = bench.evaluation_timing(svc.models["m00"], repeat=1)
    assert timing["columns"] == 5  # 3 numeric + prediction + 1 categorical
    assert bench.bare_decode(msgs, 100)["events"] == 100


def test_paired_ratio_alternates_bare_and_ours() -> None:
    workload = bench.Workload(1, 3, 1)
    msgs = bench.raw_messages(bench.generate(workload, 9_000, seed=1))
    out = asyncio.run(
        bench.paired_in_process(workload, msgs, bench.references(workload), 2, 1_000)
    )
    assert len(out["ratios"]) == 2 and len(out["bare_events_per_second"]) == 3
    assert out["ratio_median"] == pytest.approx(sum(out["ratios"]) / 2)
    assert all(0 < r < 10 for r in out["ratios"])


def test_results_replace_only_our_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# B\n\n<!-- other:start -->\nkeep\n<!-- other:end -->\n")
    monkeypatch.setattr(bench, "BENCHMARKS", path)
    bench.write_benchmarks("first")
    bench.write_benchmarks("second")
    text = path.read_text()
    assert "keep" in text and "second" in text and "first" not in text
    assert text.count(bench.START) == 1


def test_stage_split_runs_and_restores_the_wrapped_functions() -> None:
    from bench import stages
    from monitor.events import Decoder

    before = Decoder.decode
    out = stages.main(["--events", "2000"])
    assert Decoder.decode is before  # the timers are removed again
    assert set(out) == {label for _, _, label in stages.STAGES}
    assert all(us > 0 for us in out.values())
    assert out["apply (models, metrics, alerts)"] >= out["ingest (one model's batch)"]
