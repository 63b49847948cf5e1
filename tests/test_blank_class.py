"""A blank class ("" or only spaces) is a missing value, not a class.

On main, a binary model with a named positive class (``positive_class: fraud``) graded
an empty label as a negative, silently; a multiclass model learned "" as a class, which
went to /metrics as ``class=""`` (to Prometheus, no class label at all) and into its macro
averages. The configuration already refused a blank ``positive_class`` for this reason.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitor.config import parse_config
from monitor.performance.config import PerformanceConfig
from monitor.performance.normalize import MISSING, label_problem
from monitor.performance.tracker import PerformanceTracker
from monitor.service import MonitorService


@pytest.mark.parametrize("blank", ["", " ", "\t "])
def test_blank_labels_are_missing_in_every_task(blank: str) -> None:
    assert label_problem(blank, "binary", positive_class="fraud") == MISSING
    assert label_problem(blank, "binary") == MISSING
    assert label_problem(blank, "multiclass") == MISSING
    assert label_problem(blank, "regression") is not None  # was already: not a number


def test_blank_predictions_and_labels_are_not_graded() -> None:
    t = PerformanceTracker(
        PerformanceConfig(
            task="binary", positive_class="fraud", window_size=10, min_window_labels=1
        )
    )
    t.add_predictions(["a", "b"], ["fraud", ""], None, now=0.0)
    t.add_labels(["a"], [""], None, now=0.0)
    assert t.window_labels == 0
    assert t.rejected_predictions == {MISSING: 1} and t.rejected_labels == {MISSING: 1}

    m = PerformanceTracker(
        PerformanceConfig(task="multiclass", window_size=10, min_window_labels=1)
    )
    m.add_predictions(["a", "b"], ["cat", {"": 0.6, "dog": 0.4}], None, now=0.0)
    m.add_labels(["a"], [""], None, now=0.0)
    assert m.classes is not None and "" not in m.classes.names
    assert m.window_labels == 0
    assert m.rejected_labels == {MISSING: 1}


@pytest.mark.kafka
async def test_a_blank_label_through_the_broker_is_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    preds, labels, dlq = (f"{t}-{suffix}" for t in ("preds", "labels", "dlq"))
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"monitor-{suffix}",
                "predictions_topic": preds,
                "labels_topic": labels,
                "dead_letter_topic": dlq,
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "models": [
                {
                    "name": "m",
                    "reference": {"learn_first": 10},
                    "window": {"size": 10, "step": 5},
                    "performance": {
                        "task": "multiclass",
                        "window_size": 10,
                        "min_window_labels": 1,
                    },
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
        for i in range(10):
            event = {"event_id": f"e{i}", "model": "m", "features": {"x": float(i)}}
            await producer.send(preds, orjson.dumps({**event, "prediction": "cat"}), key=b"m")
        await producer.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if getattr(service.models.get("m"), "events_total", 0) >= 10:
                break
            await asyncio.sleep(0.1)
        blank = orjson.dumps({"event_id": "e0", "model": "m", "label": ""})
        await producer.send(labels, blank, key=b"m")
        await producer.send(
            labels, orjson.dumps({"event_id": "e1", "model": "m", "label": "cat"}), key=b"m"
        )
        await producer.flush()
        consumer = AIOKafkaConsumer(
            dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            dead: list[Any] = []
            deadline = time.monotonic() + 20
            while not dead and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    dead.extend(records)
        finally:
            await consumer.stop()
        assert [r.value for r in dead] == [blank]
        headers = dict(dead[0].headers)
        assert headers["monitor.reason"] == b"label_not_for_task"
        assert b"missing" in headers["monitor.error"]
        perf = service.models["m"].performance
        assert perf is not None and perf.classes is not None
        assert perf.classes.names == ["cat"]
    finally:
        await producer.stop()
        service.request_stop()
        await task
        await service.stop(grace_seconds=2)
