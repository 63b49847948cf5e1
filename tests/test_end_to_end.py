"""The whole path through a real Kafka broker: events in, drift on /metrics, one alert out.

Each test gets fresh topics and a fresh consumer group on the session broker, a
real local HTTP receiver, and the service in-process (its HTTP server on a free
port), so what is asserted is what a user would see.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from alert_receivers import RecordingReceiver

from monitor.config import parse_config
from monitor.events import NATIVE_AVAILABLE
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish, write_reference

pytestmark = pytest.mark.kafka

DRIFTED = {"income", "credit_score"}


@dataclass
class Stack:
    service: MonitorService
    receiver: RecordingReceiver
    topics: dict[str, str]
    bootstrap: str
    http: httpx.AsyncClient

    async def metrics(self) -> str:
        return (await self.http.get(f"{self.service.http.url}/metrics")).text

    async def wait_processed(self, model: str, events: int, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            mm = self.service.models.get(model)
            if mm is not None and mm.events_total >= events:
                return
            await asyncio.sleep(0.1)
        got = self.service.models[model].events_total if model in self.service.models else 0
        raise AssertionError(f"{model}: {got} of {events} events processed within {within}s")


def drift_severities(metrics: str) -> dict[str, float]:
    out = {}
    for m in re.finditer(r"^monitor_feature_drift_severity\{([^}]*)\} (\S+)$", metrics, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[labels["feature"]] = float(m.group(2))
    return out


def metric_value(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", metrics, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture
async def stack_factory(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Stack] = []
    reference = write_reference(tmp_path / "reference.jsonl", 5000)

    async def make(**overrides: Any) -> Stack:
        suffix = uuid.uuid4().hex[:10]
        topics = {
            "predictions": f"predictions-{suffix}",
            "labels": f"labels-{suffix}",
            "dlq": f"dead-letter-{suffix}",
        }
        receiver = await RecordingReceiver().start()
        raw = {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"monitor-{suffix}",
                "predictions_topic": topics["predictions"],
                "labels_topic": topics["labels"],
                "dead_letter_topic": topics["dlq"],
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / f"state-{suffix}.sqlite")},
            "defaults": {"window": {"size": 1000, "step": 250}},
            "models": [{"name": "credit-risk", "reference": {"path": str(reference)}}],
            "alerting": {
                "receivers": {"hook": {"type": "webhook", "url": receiver.url}},
                "outbox_path": str(tmp_path / f"outbox-{suffix}.sqlite"),
            },
            **overrides,
        }
        service = MonitorService(parse_config(raw))
        await service.start()
        task = asyncio.create_task(service.run())
        stack = Stack(service, receiver, topics, kafka_bootstrap, httpx.AsyncClient())
        stack.task = task  # type: ignore[attr-defined]
        started.append(stack)
        return stack

    yield make
    for s in started:
        s.service.request_stop()
        await s.task  # type: ignore[attr-defined]
        await s.service.stop(grace_seconds=2)
        await s.receiver.stop()
        await s.http.aclose()


async def test_drift_in_two_features_shows_on_metrics_and_pages_once(stack_factory: Any) -> None:
    stack = await stack_factory()
    info = await publish(
        stack.bootstrap,
        topic=stack.topics["predictions"],
        events=4000,
        drift=DriftSpec(kind="mean", features=tuple(DRIFTED), size=1.0, start=2000),
        seed=11,
    )
    assert info["sent"] == 4000
    await stack.wait_processed("credit-risk", 4000)
    requests = await stack.receiver.wait_for_requests(1, within=15)
    await asyncio.sleep(1.0)  # anything else that was coming has arrived by now
    metrics = await stack.metrics()

    severities = drift_severities(metrics)
    drifting_features = {f for f, v in severities.items() if v > 0 and f != "__prediction__"}
    assert drifting_features == DRIFTED
    assert len(severities) == 13  # 12 features + the prediction, every one evaluated

    firing = [r.json for r in stack.receiver.requests if r.json["status"] == "firing"]
    assert len(firing) == 1, [r.json["summary"] for r in requests]
    alert = firing[0]
    assert alert["model"] == "credit-risk"
    named = {s["subject"] for s in alert["signals"] if s["kind"] == "drift"}
    assert named >= DRIFTED and named <= DRIFTED | {"__prediction__"}
    for s in alert["signals"]:
        assert s["statistic"] is not None and s["threshold"] is not None and s["detector"]
    assert alert["window"]["events"] == 1000
    assert metric_value(metrics, "monitor_events_processed_total", model="credit-risk") == 4000
    assert metric_value(metrics, "monitor_events_invalid_total") == 0
    native = metric_value(metrics, "monitor_events_decoded_total", decoder="native")
    python = metric_value(metrics, "monitor_events_decoded_total", decoder="python")
    assert native + python == 4000
    if NATIVE_AVAILABLE:  # once the model's reference is known, its events go native
        assert native > 0


async def test_stationary_stream_produces_no_alert(stack_factory: Any) -> None:
    stack = await stack_factory()
    await publish(stack.bootstrap, topic=stack.topics["predictions"], events=5000, seed=12)
    await stack.wait_processed("credit-risk", 5000)
    await asyncio.sleep(1.5)  # give a (wrong) alert time to be delivered
    metrics = await stack.metrics()
    assert stack.receiver.requests == []
    severities = drift_severities(metrics)
    assert len(severities) == 13
    assert all(v == 0 for v in severities.values()), severities
    assert metric_value(metrics, "monitor_evaluations_total", model="credit-risk") == 17


async def test_poison_messages_between_good_ones(stack_factory: Any) -> None:
    stack = await stack_factory()
    good = [
        {
            "event_id": f"e{i}",
            "model": "credit-risk",
            "features": {"income": 50_000.0 + i, "region": "north"},
            "prediction": 0.5,
        }
        for i in range(300)
    ]
    poison = [
        b"{not json",
        b"\xff\xfe\x00",
        orjson.dumps({"event_id": "p1", "model": "credit-risk", "features": [1]}),
        orjson.dumps({"event_id": "p2", "model": "nobody", "features": {}, "prediction": 1}),
        orjson.dumps({"model": "credit-risk", "features": {}, "prediction": 1}),
        b"[]",
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        for i, event in enumerate(good):
            await producer.send(
                stack.topics["predictions"], orjson.dumps(event), key=b"credit-risk"
            )
            if i % 50 == 25:
                await producer.send(
                    stack.topics["predictions"], poison[i // 50], key=b"credit-risk"
                )
        await producer.flush()
    finally:
        await producer.stop()
    await stack.wait_processed("credit-risk", 300)
    await asyncio.sleep(0.5)
    metrics = await stack.metrics()
    assert metric_value(metrics, "monitor_events_processed_total", model="credit-risk") == 300
    reasons = {
        r: metric_value(metrics, "monitor_events_invalid_total", reason=r)
        for r in (
            "malformed_json",
            "invalid_utf8",
            "wrong_type",
            "unknown_model",
            "missing_field",
            "not_an_object",
        )
    }
    assert reasons == dict.fromkeys(reasons, 1.0)
    assert metric_value(metrics, "monitor_dead_letter_messages_total") == 6
    # The consumer moved past every message: its position is the end of the topic.
    assert stack.service.status()["positions"] == {f"{stack.topics['predictions']}/0": 306}

    consumer = AIOKafkaConsumer(
        stack.topics["dlq"], bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        dead: list[Any] = []
        deadline = time.monotonic() + 15
        while len(dead) < 6 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                dead.extend(records)
    finally:
        await consumer.stop()
    assert [r.value for r in dead] == poison
    headers = [dict(r.headers) for r in dead]
    assert [h["monitor.reason"].decode() for h in headers] == [
        "malformed_json",
        "invalid_utf8",
        "wrong_type",
        "unknown_model",
        "missing_field",
        "not_an_object",
    ]
    assert headers[2]["monitor.field"] == b"features"


async def test_delayed_labels_give_realised_and_estimated_performance(stack_factory: Any) -> None:
    stack = await stack_factory(
        models=[
            {
                "name": "credit-risk",
                "reference": {"learn_first": 1000},
                "performance": {"task": "binary", "window_size": 2000},
            }
        ]
    )
    # Labels are drawn as Bernoulli(score): the scores are calibrated, so the estimate
    # made from scores alone should agree with the accuracy realised from labels.
    await publish(
        stack.bootstrap,
        topic=stack.topics["predictions"],
        labels_topic=stack.topics["labels"],
        events=3000,
        seed=21,
    )
    await stack.wait_processed("credit-risk", 3000)

    def joined(metrics: str) -> float:
        # A label polled before its prediction is held ("early") and joined when it comes.
        return sum(
            metric_value(metrics, "monitor_labels_total", model="credit-risk", outcome=o)
            for o in ("matched", "early")
        )

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        metrics = await stack.metrics()
        if joined(metrics) >= 3000:
            break
        await asyncio.sleep(0.2)
    assert joined(metrics) == 3000
    assert metric_value(metrics, "monitor_labels_total", outcome="unknown") == 0
    # Metrics are exported as of the last window evaluation; labels published alongside
    # the predictions are all joined by then except possibly the last step's.
    accuracy = metric_value(metrics, "monitor_model_performance", metric="accuracy")
    estimated = metric_value(metrics, "monitor_model_performance", metric="estimated_accuracy")
    assert 0.6 < accuracy < 0.95
    assert abs(accuracy - estimated) < 0.05
