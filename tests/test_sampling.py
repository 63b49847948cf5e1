"""Deterministic sampling (``sample: {rate}``, monitor/sampling.py) and how a model uses it."""

from __future__ import annotations

from hashlib import blake2b

import numpy as np
import orjson
import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.events import NATIVE_AVAILABLE, Decoder, LabelEvents, ModelEvents, RawMessage
from monitor.model_monitor import ModelMonitor
from monitor.sampling import Sampler
from monitor.simulate import Simulator
from tests.sim_events import model_events
from tests.test_model_monitor import WINDOW, _checkpoint, _monitor, _run


def test_the_decision_is_the_documented_hash_of_the_id() -> None:
    s = Sampler(0.1)
    ids = [f"evt-{i}" for i in range(20_000)]
    kept = s.kept(ids)
    assert kept is not None
    expected = [
        i
        for i, e in enumerate(ids)
        if int.from_bytes(blake2b(e.encode(), digest_size=8).digest(), "big") < 0.1 * 2**64
    ]
    assert kept == expected
    assert 1_800 < len(kept) < 2_200  # the hash spreads counters evenly
    assert Sampler(0.1).kept(ids) == kept  # another instance, a restart: the same events
    assert Sampler(1.0).kept(ids) is None


def test_hostile_ids_are_sampled_without_error() -> None:
    s = Sampler(0.5)
    for eid in ("\ud800", "\udfff\ud800x", "<script>", "x" * 100_000, ""):
        assert s.keeps(eid) in (True, False)


@pytest.mark.parametrize("rate", [0, -0.1, 1.5])
def test_a_rate_outside_zero_to_one_is_a_config_error(rate: float) -> None:
    with pytest.raises(ConfigError, match="rate"):
        parse_config({"models": [{"name": "m", "sample": {"rate": rate}}]})


def test_windows_use_the_sample_and_event_counts_stay_exact() -> None:
    events = model_events(Simulator(seed=3), 12_000)
    rate = 0.25
    kept = Sampler(rate).kept(events.event_ids)
    assert kept is not None
    mm = _monitor(sample={"rate": rate})
    evs = _run(mm, events, [5_000, 7_000])
    assert mm.events_total == 12_000  # every event counts...
    assert mm.window.total == len(kept)  # ...the window holds the sample
    assert len(evs) == (len(kept) - WINDOW["size"]) // WINDOW["step"] + 1
    # An evaluation's events_total is its place in the whole stream.
    assert evs[0].context.events_total == kept[WINDOW["size"] - 1] + 1
    # The same events, batched otherwise and across a checkpoint: the same evaluations.
    other = _monitor(sample={"rate": rate})
    got = _run(other, _head(events, 3_001), [1, 3_000])
    other = _checkpoint(other)
    got += _run(other, _tail(events, 3_001), [2_000, 6_999])
    assert [e.context.events_total for e in got] == [e.context.events_total for e in evs]
    assert [(n, [r.statistic for r in rs]) for e in got for n, rs in e.results.items()] == [
        (n, [r.statistic for r in rs]) for e in evs for n, rs in e.results.items()
    ]


def test_labels_join_to_exactly_the_sampled_predictions() -> None:
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "credit-risk",
                    "window": WINDOW,
                    "performance": {"task": "binary", "window_size": 1000},
                    "sample": {"rate": 0.3},
                }
            ]
        }
    )
    from tests.test_model_monitor import _profile

    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits, _profile(Simulator(seed=1)))  # type: ignore[arg-type]
    events, labels = ModelEvents("credit-risk"), LabelEvents("credit-risk")
    for e, label in Simulator(seed=8).events(2_000):
        events.event_ids.append(e["event_id"])
        events.timestamps.append(0.0)
        events.versions.append(None)
        events.features.append(e["features"])
        events.predictions.append(e["prediction"])
        labels.event_ids.append(e["event_id"])
        labels.labels.append(label)
        labels.timestamps.append(0.0)
    mm.ingest(events, 0.0)
    counts = mm.ingest_labels(labels, 0.0)
    kept = Sampler(0.3).kept(events.event_ids)
    assert kept is not None
    assert counts["matched"] == len(kept)
    assert counts["not_sampled"] == 2_000 - len(kept)
    assert counts["unknown"] == 0  # no label waits for a prediction the sample dropped


def _head(events: ModelEvents, end: int) -> ModelEvents:
    return _part(events, 0, end)


def _tail(events: ModelEvents, start: int) -> ModelEvents:
    return _part(events, start, len(events))


def _part(events: ModelEvents, start: int, end: int) -> ModelEvents:
    out = ModelEvents(events.model)
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(out, name).extend(getattr(events, name)[start:end])
    return out


def test_detection_bench_runs_a_sampled_stream() -> None:
    """bench/detection_quality.py --sampling: the sampled stream is detected, late by ~1/rate."""
    from bench.detection_quality import run_sampled

    result = run_sampled("mean +1 sigma", 0.1, seed=1, quick=True)
    assert result.events == 120_000
    assert result.ours_delay is not None and 0 < result.ours_delay < 30_000
    assert result.ours_false == 0


def test_a_sampled_model_learns_its_reference_from_the_sample() -> None:
    """Before the reference is known there is no schema: the left-out events are not
    checked for unknown features (as the learning rows are not), and nothing fails."""
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "credit-risk",
                    "window": WINDOW,
                    "reference": {"learn_first": 500},
                    "sample": {"rate": 0.5},
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits)  # type: ignore[arg-type]
    events = model_events(Simulator(seed=8), 4_000)
    extra = range(1_800, 4_000, 7)  # after the reference is complete
    for i in extra:
        events.features[i] = {**events.features[i], "extra": 1}
    kept = Sampler(0.5).kept(events.event_ids)
    assert kept is not None and kept[499] < 1_800
    evs = _run(mm, events, [300] * 13 + [100])
    assert mm.ready and mm.reference is not None and mm.reference.rows == 500
    assert mm.events_total == 4_000
    assert mm.window.total == len(kept) - 500
    assert evs and evs[0].context.events_total == kept[500 + WINDOW["size"] - 1] + 1
    # Once the schema is known, every event with an unknown feature counts, kept or not.
    assert mm.unknown_feature_events == len(extra)


@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="monitor_native not installed")
def test_columnar_batches_are_sampled_as_batches_by_row() -> None:
    """The compiled decoder's columns: the same sample, window and counts as by rows."""
    sim = Simulator(seed=5)
    messages = []
    for i, (event, _) in enumerate(sim.events(3_000)):
        if i % 11 == 0:
            event = {**event, "features": {**event["features"], "extra": 1}}
        messages.append(RawMessage(orjson.dumps(event), 0.0, "p", 0, i))
    by_row, by_column = _monitor(sample={"rate": 0.3}), _monitor(sample={"rate": 0.3})
    decoder = Decoder(max_message_bytes=10_000)
    rows = decoder.decode(messages).predictions["credit-risk"]
    schema = {"credit-risk": by_column.columnar_schema()}
    cols = decoder.decode(messages, schema).predictions["credit-risk"]  # type: ignore[arg-type]
    assert rows.columns is None and cols.columns is not None
    a, b = by_row.ingest(rows), by_column.ingest(cols)
    kept = Sampler(0.3).kept(rows.event_ids)
    assert kept is not None
    assert by_row.window.total == by_column.window.total == len(kept)
    assert by_row.events_total == by_column.events_total == 3_000
    assert by_row.unknown_feature_events == by_column.unknown_feature_events == 273
    np.testing.assert_array_equal(by_row.window.numeric(), by_column.window.numeric())
    assert [e.context.events_total for e in a] == [e.context.events_total for e in b]
