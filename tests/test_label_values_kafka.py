"""Labels a model's task cannot grade, through a real broker: rejected, counted, dead-lettered.

The service in-process on fresh topics of the session broker, as tests/test_end_to_end.py
runs it; what is asserted is what a user sees on /metrics, /api/status and the
dead-letter topic.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitor.config import parse_config
from monitor.service import MonitorService

pytestmark = pytest.mark.kafka


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def test_binary_labels_as_strings_graded_and_other_classes_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Labels "true"/"false" grade a perfect model at accuracy 1 (on main: 0.5, every
    positive a negative); labels 2 and "yes" are rejected as ``label_not_for_task`` and
    dead-lettered with the task's reason (on main: graded as negatives, no dead letter)."""
    suffix = uuid.uuid4().hex[:10]
    preds_topic, labels_topic, dlq = (f"{t}-{suffix}" for t in ("preds", "labels", "dlq"))
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"monitor-{suffix}",
                "predictions_topic": preds_topic,
                "labels_topic": labels_topic,
                "dead_letter_topic": dlq,
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "models": [
                {
                    "name": "m",
                    "reference": {"learn_first": 100},
                    "window": {"size": 100, "step": 50},
                    "performance": {"task": "binary", "window_size": 100, "min_window_labels": 10},
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
        for i in range(40):
            pred = {"event_id": f"e{i}", "model": "m", "features": {"x": float(i)}}
            await producer.send(
                preds_topic, orjson.dumps({**pred, "prediction": 0.9 if i % 2 else 0.1}), key=b"m"
            )
        await producer.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if getattr(service.models.get("m"), "events_total", 0) >= 40:
                break
            await asyncio.sleep(0.1)
        bad = [
            orjson.dumps({"event_id": "e0", "model": "m", "label": 2}),
            orjson.dumps({"event_id": "e2", "model": "m", "label": "yes"}),
        ]
        for i in range(4, 40):
            label = "true" if i % 2 else "false"
            await producer.send(
                labels_topic,
                orjson.dumps({"event_id": f"e{i}", "model": "m", "label": label}),
                key=b"m",
            )
        for value in bad:
            await producer.send(labels_topic, value, key=b"m")
        await producer.flush()
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = (await http.get(f"{service.http.url}/metrics")).text
                matched = _metric(text, "monitor_labels_total", model="m", outcome="matched")
                invalid = _metric(text, "monitor_events_invalid_total", reason="label_not_for_task")
                if matched >= 36 and invalid >= 2:
                    break
                await asyncio.sleep(0.2)
            status = (await http.get(f"{service.http.url}/api/status")).json()
        assert (matched, invalid) == (36, 2)
        assert (
            _metric(text, "monitor_labels_total", model="m", outcome="invalid:not_a_binary_class")
            == 0
        )
        perf = status["models"]["m"]["performance"]
        assert perf["window_labels"] == 36 and perf["accuracy"] == 1.0
        consumer = AIOKafkaConsumer(
            dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            dead: list[Any] = []
            deadline = time.monotonic() + 15
            while len(dead) < 2 and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    dead.extend(records)
        finally:
            await consumer.stop()
        assert [r.value for r in dead] == bad
        headers = [dict(r.headers) for r in dead]
        assert {h["monitor.reason"] for h in headers} == {b"label_not_for_task"}
        assert all(b"not_a_binary_class" in h["monitor.error"] for h in headers)
    finally:
        await producer.stop()
        service.request_stop()
        await task
        await service.stop(grace_seconds=2)
