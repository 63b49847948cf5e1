"""A live monitor for the UI tests: the real broker, a drifting stream, hostile names.

Model ``credit-risk`` has four columns: ``income`` drifts (mean shifted by two
standard deviations), ``age`` and the feature named ``HOSTILE`` do not, and the
categorical ``plan`` gains a category the reference never had, named with markup.
Model ``learner`` stays learning its reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from monitor.config import parse_config
from monitor.service import MonitorService
from tests.alert_receivers import RecordingReceiver

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_CATEGORY = "<script>alert(3)</script>"
TOKEN = "ui-test-admin-token-7f3a"
# A receiver URL is a secret (a Slack webhook URL is a credential): no page may show it.
HOOK_SECRET = "hook-secret-path-91c2"
MODEL = "credit-risk"


def reference_rows(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [
        {
            "income": float(rng.normal(50_000, 10_000)),
            "age": float(rng.normal(40, 8)),
            HOSTILE: float(rng.normal()),
            "plan": str(rng.choice(["basic", "plus", "pro"], p=[0.6, 0.3, 0.1])),
            "prediction": float(rng.uniform()),
        }
        for _ in range(n)
    ]


def current_rows(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [
        {
            "income": float(rng.normal(70_000, 10_000)),
            "age": float(rng.normal(40, 8)),
            HOSTILE: float(rng.normal()),
            "plan": str(
                # "plus" gains share beside the new (hostile) category: plan's drift is real,
                # not only the new category's (that one is an ``unseen`` breach,
                # monitor/explain.py).
                rng.choice(["basic", "plus", "pro", HOSTILE_CATEGORY], p=[0.35, 0.4, 0.1, 0.15])
            ),
            "prediction": float(rng.uniform()),
        }
        for _ in range(n)
    ]


@dataclass
class LiveMonitor:
    service: MonitorService
    url: str
    client: httpx.AsyncClient
    receiver: RecordingReceiver

    async def get(self, path: str, **params: str) -> Any:
        r = await self.client.get(self.url + path, params=params)
        r.raise_for_status()
        return r.json()


@contextlib.asynccontextmanager
async def live_monitor(
    bootstrap: str, topic_factory: Any, tmp_path: Path, *, token: str | None = TOKEN
) -> AsyncIterator[LiveMonitor]:
    rng = np.random.default_rng(11)
    predictions = topic_factory("ui-predictions", partitions=1)
    labels = topic_factory("ui-labels", partitions=1)
    ref = tmp_path / "reference.jsonl"
    ref.write_bytes(b"\n".join(orjson.dumps(r) for r in reference_rows(rng, 2000)))
    raw: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"ui-{uuid.uuid4().hex[:8]}",
            "predictions_topic": predictions,
            "labels_topic": labels,
            "poll_timeout_ms": 100,
        },
        "http": {"port": 0, "ui_history": 50},
        "state": {"path": "state.sqlite"},
        "defaults": {"window": {"size": 400, "step": 200}},
        "models": [
            {
                "name": MODEL,
                "reference": {"path": "reference.jsonl"},
                # Labels for the first 1000 predictions: realised and estimated metrics.
                "performance": {"task": "binary", "window_size": 500, "estimate": True},
            },
            {"name": "learner", "reference": {"learn_first": 100_000}},
        ],
        "alerting": {
            "outbox_path": "outbox.sqlite",
            "receivers": {"hook": {"type": "webhook", "url": "http://placeholder/"}},
        },
    }
    receiver = await RecordingReceiver().start()
    raw["alerting"]["receivers"]["hook"]["url"] = f"{receiver.url}/{HOOK_SECRET}"
    if token is not None:
        raw["http"]["admin_token"] = token
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    await service.start()
    task = asyncio.create_task(service.run())
    client = httpx.AsyncClient(timeout=10.0)
    try:
        sent = 0
        async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
            for i, row in enumerate(reference_rows(rng, 400) + current_rows(rng, 1200)):
                pred = row.pop("prediction")
                doc = {
                    "event_id": f"e{i}",
                    "model": MODEL,
                    "timestamp": 1_700_000_000 + i,
                    "features": row,
                    "prediction": pred,
                }
                await producer.send(predictions, orjson.dumps(doc), key=MODEL.encode())
                sent += 1
            for i in range(30):
                doc = {
                    "event_id": f"l{i}",
                    "model": "learner",
                    "timestamp": 1_700_000_000 + i,
                    "features": {"x": float(i)},
                    "prediction": 0.5,
                }
                await producer.send(predictions, orjson.dumps(doc), key=b"learner")
                sent += 1
            for i in range(1000):
                doc = {"event_id": f"e{i}", "model": MODEL, "label": int(rng.uniform() < 0.5)}
                await producer.send(labels, orjson.dumps(doc), key=MODEL.encode())
            await producer.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = (await client.get(f"{service.http.url}/api/status")).json()
            positions = status["positions"]
            if positions.get(f"{predictions}/0") == sent and positions.get(f"{labels}/0") == 1000:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the monitor did not consume the stream: {status}")
        # The drift page has been delivered (the model page shows the delivery).
        await receiver.wait_for_requests(1, within=20.0)
        yield LiveMonitor(service, service.http.url, client, receiver)
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=0)
        await client.aclose()
        await receiver.stop()
