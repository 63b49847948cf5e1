"""Label staleness through a real broker, to a real webhook receiver.

Labels stop while predictions go on: ``monitor_label_age_seconds`` rises on /metrics, the
``labels_stale`` signal pages once, and resolves once labels flow again. The whole stream
is two hours old when it is read (a backlog): only its event times count, so the labelled
start pages nobody although every label is two hours old by the clock.
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
from aiokafka import AIOKafkaProducer
from alert_receivers import RecordingReceiver

from monitor.config import parse_config
from monitor.service import MonitorService

pytestmark = pytest.mark.kafka

STALE_AFTER = 600.0
RUNBOOK = "https://git.example/acme/kafka-model-monitor/blob/main/docs/RUNBOOK.md"


def _metric(text: str, name: str, **labels: str) -> float | None:
    for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


def _stale_posts(receiver: RecordingReceiver) -> list[dict[str, Any]]:
    out = []
    for r in receiver.requests:
        body = r.json
        if any(s["subject"] == "labels_stale" for s in body.get("signals", [])):
            out.append(body)
    return out


async def test_labels_stopping_pages_once_and_resolves_when_they_flow_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    preds_topic, labels_topic = f"preds-{suffix}", f"labels-{suffix}"
    receiver = await RecordingReceiver().start()
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"monitor-{suffix}",
                "predictions_topic": preds_topic,
                "labels_topic": labels_topic,
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
                    "performance": {
                        "task": "binary",
                        "window_size": 20,
                        "min_window_labels": 10,
                        "labels_stale_after_seconds": STALE_AFTER,
                    },
                }
            ],
            "alerting": {
                "runbook_base_url": RUNBOOK,
                "receivers": {"hook": {"type": "webhook", "url": receiver.url}},
                "outbox_path": str(tmp_path / "outbox.sqlite"),
            },
        }
    )
    service = MonitorService(config)
    await service.start()
    task = asyncio.create_task(service.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    http = httpx.AsyncClient()
    t0 = time.time() - 2 * 3600.0  # a backlog: everything happened two hours ago
    sent = 0

    async def predictions(times: list[float]) -> list[str]:
        nonlocal sent
        ids = []
        for at in times:
            ids.append(f"e{sent}")
            event = {
                "event_id": f"e{sent}",
                "model": "m",
                "timestamp": at,
                "features": {"x": float(sent % 10)},
                "prediction": 0.9 if sent % 2 else 0.1,
            }
            await producer.send(preds_topic, orjson.dumps(event), key=b"m")
            sent += 1
        await producer.flush()
        return ids

    async def labels(ids: list[str], at: float) -> None:
        for event_id in ids:
            label = {"event_id": event_id, "model": "m", "label": int(event_id[1:]) % 2}
            await producer.send(labels_topic, orjson.dumps({**label, "timestamp": at}), key=b"m")
        await producer.flush()

    async def until(check: Any, what: str, within: float = 30.0) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if got := await check():
                return got
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    async def processed(n: int) -> None:
        async def check() -> bool:
            mm = service.models.get("m")
            return mm is not None and mm.events_total >= n

        await until(check, f"{n} events")

    async def matched(n: int) -> None:
        async def check() -> bool:
            mm = service.models.get("m")
            return (
                mm is not None
                and mm.performance is not None
                and (mm.performance.joiner.counts["matched"] >= n)
            )

        await until(check, f"{n} labels joined")

    try:
        # Labelled traffic, read two hours late: labels are seconds behind in event time.
        ids = await predictions([t0 + 10.0 * i for i in range(40)])
        await processed(40)
        await labels(ids, t0 + 400.0)
        await matched(40)
        ids = await predictions([t0 + 400.0 + 10.0 * i for i in range(20)])
        await processed(60)
        text = (await http.get(f"{service.http.url}/metrics")).text
        assert _metric(text, "monitor_label_age_seconds", model="m") == 190.0
        assert _metric(text, "monitor_label_last_timestamp_seconds", model="m") == t0 + 400.0
        bound = _metric(
            text, "monitor_performance_threshold", model="m", metric="label_age_seconds"
        )
        assert bound == STALE_AFTER
        assert _stale_posts(receiver) == []

        # The labelling pipeline breaks: predictions go on for half an hour, no label.
        ids += await predictions([t0 + 600.0 + 30.0 * i for i in range(60)])
        await processed(120)

        async def fired() -> list[dict[str, Any]]:
            return [p for p in _stale_posts(receiver) if p["status"] == "firing"]

        await until(fired, "the labels_stale page")
        text = (await http.get(f"{service.http.url}/metrics")).text
        age = _metric(text, "monitor_label_age_seconds", model="m")
        assert age is not None and age > STALE_AFTER

        # Labels flow again.
        await labels(ids, t0 + 600.0 + 30.0 * 60)
        await matched(120)
        more = await predictions([t0 + 2400.0 + 10.0 * i for i in range(40)])
        await processed(160)
        await labels(more, t0 + 2800.0)

        async def resolved() -> list[dict[str, Any]]:
            return [p for p in _stale_posts(receiver) if p["status"] == "resolved"]

        await until(resolved, "the labels_stale resolve")
        await asyncio.sleep(0.5)  # anything else that was coming has arrived by now
        posts = _stale_posts(receiver)
        assert [p["status"] for p in posts] == ["firing", "resolved"], posts
        [sig] = [s for s in posts[0]["signals"] if s["subject"] == "labels_stale"]
        assert sig["kind"] == "performance" and sig["threshold"] == STALE_AFTER
        assert posts[0]["links"]["runbook"] == RUNBOOK + "#labelsstale"
    finally:
        await producer.stop()
        await http.aclose()
        service.request_stop()
        await task
        await service.stop(grace_seconds=2)
        await receiver.stop()
