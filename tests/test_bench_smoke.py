"""The throughput harness on a tiny input: what it feeds and counts, not how fast.

No timing assertions here: speed is measured by ``python -m bench.throughput`` and
recorded in BENCHMARKS.md, never checked by the test suite. What is checked is what
the harness could get wrong: the workload (its reference matches the stream except
the drifting column), the counts it reports (equal to the events it generated and
fed), the arithmetic of its paired ratio, and that it writes only its own section.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
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
    """Each round's ratio is ours over the mean of the two bare rates around it, and the
    service applied exactly the events the harness fed it (warm-up, then the rounds)."""
    workload = bench.Workload(1, 3, 1)
    msgs = bench.raw_messages(bench.generate(workload, 9_000, seed=1))
    out = asyncio.run(bench.paired_in_process(workload, msgs, bench.references(workload), 2, 1_000))
    ours, bare = out["events_per_second"], out["bare_events_per_second"]
    assert len(out["ratios"]) == len(ours) == 2 and len(bare) == 3
    assert out["ratios"] == [
        o / ((b0 + b1) / 2) for o, b0, b1 in zip(ours, bare[:-1], bare[1:], strict=True)
    ]
    assert out["ratio_median"] == pytest.approx(sum(out["ratios"]) / 2)
    assert out["events_processed"] == 6_000 + 2 * 1_000


def test_paired_scale_alternates_one_model_and_many_models() -> None:
    """One model, many models, one model, ...: each round's ratio is the many-model rate
    over the mean of the one-model rates around it, and both services applied exactly
    what the harness fed them (their warm-up, then their rounds)."""
    one = bench.Workload(1, 3, 1)
    many = bench.Workload(3, 3, 1)
    one_msgs = bench.raw_messages(bench.generate(one, 9_000, seed=1))
    many_msgs = bench.raw_messages(bench.generate(many, 27_000, seed=2))
    out = asyncio.run(
        bench.paired_scale(
            (one, one_msgs, bench.references(one)),
            (many, many_msgs, bench.references(many)),
            2,
            1_000,
        )
    )
    ours, base = out["events_per_second"], out["one_model_events_per_second"]
    assert len(out["ratios"]) == len(ours) == 2 and len(base) == 3
    assert out["ratios"] == [
        o / ((b0 + b1) / 2) for o, b0, b1 in zip(ours, base[:-1], base[1:], strict=True)
    ]
    assert len(out["ratios_cpu"]) == 2 and out["models"] == 3
    assert out["events_processed"] == [6_000 + 3 * 1_000, 3 * 6_000 + 2 * 1_000]
    assert out["ratio_median"] == pytest.approx(sum(out["ratios"]) / 2)


def test_the_reference_matches_the_stream_except_the_drifting_column() -> None:
    """The benchmark's reference is drawn from the stream's distribution: only the column
    the workload drifts (f00) differs. A reference drawn otherwise (once: each seed had its
    own column scales) makes every column "drift" and the benchmark measures alarms."""
    from scipy import stats

    workload = bench.Workload(1, 4, 2)
    reference = bench.reference_rows(workload, 10_000, seed=99)
    stream = [orjson.loads(v) for v in bench.generate(workload, 10_000, seed=1, drift_from=0)]
    for name in ["f00", "f01", "f02", "f03", "c0", "c1"]:
        ref = [features[name] for features, _ in reference]
        now = [e["features"][name] for e in stream]
        if name.startswith("f"):
            p = stats.ks_2samp(ref, now).pvalue
        else:
            cats = sorted(set(ref) | set(now))
            table = [[ref.count(c) for c in cats], [now.count(c) for c in cats]]
            p = stats.chi2_contingency(table).pvalue
        assert (p < 1e-12) if name == "f00" else (p > 1e-6), (name, p)


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


@pytest.mark.parametrize("ties", [False, True])
def test_the_rank_bucket_prototype_gives_today_s_ks_statistic_bit_for_bit(ties: bool) -> None:
    """bench.rank_buckets times issue 19's design against today's path: the comparison is
    only worth reading if both compute the same D, ties included."""
    from bench import rank_buckets

    refs, data = rank_buckets._stream(np.random.default_rng(7), ties, steps=3)
    _, today = rank_buckets._today(refs, data, 3)
    _, ranks = rank_buckets._ranks(refs, data, 3, search_only=False)
    assert len(today) == rank_buckets.COLUMNS
    assert ranks == today
