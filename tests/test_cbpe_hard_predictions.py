"""0/1 predictions sent as numbers are classes, not probabilities: CBPE refuses them.

On main a binary model publishing ``"prediction": 1`` / ``0`` had them read as the scores
1.0 and 0.0, and CBPE estimated a perfect model (estimated accuracy 1.0 whatever the model
did), so an ``estimated_*`` threshold could never fire. Now a window of only exact 0/1
scores gives no estimate, ``estimate_refused`` 1 (``monitor_performance_estimate_refused``)
and one WARNING naming the model.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.config import parse_config
from monitor.performance.config import PerformanceConfig
from monitor.performance.tracker import PerformanceTracker
from monitor.service import MonitorService


def _tracker() -> PerformanceTracker:
    return PerformanceTracker(
        PerformanceConfig(
            task="binary",
            window_size=50,
            min_window_labels=10,
            thresholds={"estimated_accuracy": {"warning": 0.9}},
        )
    )


def test_integer_class_predictions_get_no_estimate_and_no_signal() -> None:
    t = _tracker()
    preds = np.array([1, 0] * 25, dtype=np.int64)  # what a columnar decoder hands over
    t.add_predictions([f"e{i}" for i in range(50)], preds, None, now=0.0)
    snap = t.snapshot()
    assert not [k for k in snap if k.startswith("estimated_")]  # main: estimated accuracy 1.0
    assert snap["estimate_refused"] == 1.0
    assert snap["window_predictions"] == 50.0
    assert [s for s in t.signals("m") if s.subject.startswith("estimated_")] == []


def test_class_strings_and_bools_only_are_refused_too() -> None:
    """They never enter the score window (main left it empty, and said nothing)."""
    t = _tracker()
    t.add_predictions(["a", "b", "c"], [True, "0", "false"], None, now=0.0)
    snap = t.snapshot()
    assert snap["estimate_refused"] == 1.0
    assert not [k for k in snap if k.startswith("estimated_")]


def test_one_probability_in_the_window_lets_the_estimate_run() -> None:
    """A probabilistic model may emit exact 0 and 1 (a random forest whose trees agree):
    only a window of nothing else is refused."""
    t = _tracker()
    t.add_predictions([f"e{i}" for i in range(49)], [1.0, 0.0] * 24 + [1.0], None, now=0.0)
    assert t.snapshot()["estimate_refused"] == 1.0
    t.add_predictions(["last"], [0.7], None, now=0.0)
    snap = t.snapshot()
    assert snap["estimate_refused"] == 0.0
    assert snap["estimated_n"] == 50.0 and snap["estimated_accuracy"] < 1.0


def test_probabilities_are_estimated_as_before() -> None:
    t = _tracker()
    rng = np.random.default_rng(3)
    t.add_predictions([f"e{i}" for i in range(50)], rng.uniform(size=50), None, now=0.0)
    snap = t.snapshot()
    assert snap["estimate_refused"] == 0.0 and "estimated_accuracy" in snap


def _metric(text: str, name: str, **labels: str) -> list[float]:
    out = []
    for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            out.append(float(m.group(2)))
    return out


@pytest.mark.kafka
async def test_class_predictions_through_the_broker_refused_and_said_once(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"preds-{suffix}"
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"monitor-{suffix}",
                "predictions_topic": topic,
                "labels_topic": f"labels-{suffix}",
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "models": [
                {
                    "name": "m",
                    "reference": {"learn_first": 20},
                    "window": {"size": 20, "step": 10},
                    "performance": {"task": "binary", "window_size": 20, "min_window_labels": 10},
                }
            ],
        }
    )
    service = MonitorService(config)
    await service.start()
    task = asyncio.create_task(service.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        with caplog.at_level(logging.WARNING):
            for i in range(100):
                event = {"event_id": f"e{i}", "model": "m", "features": {"x": float(i % 10)}}
                await producer.send(topic, orjson.dumps({**event, "prediction": i % 2}), key=b"m")
            await producer.flush()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                mm = service.models.get("m")
                if mm is not None and mm.events_total >= 100 and mm.evaluations >= 5:
                    break
                await asyncio.sleep(0.1)
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{service.http.url}/metrics")).text
                status = (await http.get(f"{service.http.url}/api/status")).json()
        assert _metric(text, "monitor_performance_estimate_refused", model="m") == [1.0]
        assert _metric(text, "monitor_model_performance", model="m") == []  # no estimated_*
        assert status["models"]["m"]["performance"]["estimate_refused"] == 1.0
        said = [r for r in caplog.records if "no performance estimate" in r.getMessage()]
        assert len(said) == 1 and "'m'" in said[0].getMessage()
    finally:
        await producer.stop()
        service.request_stop()
        await task
        await service.stop(grace_seconds=2)
