"""A model whose reference does not fit its config is disabled, not the service; and
``/api/status`` answers for every configured model from the start.

Real broker, the service in-process with its real HTTP server, asserted through
``/api/status``, ``/readyz`` and ``/metrics`` as an operator would see them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.config import parse_config
from monitor.reference import build_profile
from monitor.service import MonitorService

pytestmark = pytest.mark.kafka


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def _event(model: str, i: int, rng: np.random.Generator, plan: Any) -> tuple[bytes, bytes]:
    score = float(rng.uniform())
    doc = {
        "event_id": f"{model}-{i}",
        "model": model,
        "timestamp": 1_700_000_000 + i,
        "features": {"x": float(rng.normal()), "plan": plan},
        "prediction": score,
    }
    return model.encode(), orjson.dumps(doc)


async def _status(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    return (await client.get(f"{url}/api/status")).json()


async def test_a_mismatched_model_is_disabled_and_the_others_keep_working(
    kafka_bootstrap: str,
    topic_factory: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(5)
    predictions = topic_factory("predictions", partitions=1)
    labels = topic_factory("labels", partitions=1)
    # The good model's reference: x numeric, plan categorical (a data file).
    good_ref = tmp_path / "good.jsonl"
    good_ref.write_text(
        "\n".join(
            orjson.dumps(
                {"features": {"x": float(rng.normal()), "plan": str(rng.choice(["a", "b"]))}}
            ).decode()
            for _ in range(500)
        )
    )
    # The bad model's reference: a profile (saved under a name that does not say so)
    # where plan is categorical, while the config declares it numeric.
    bad_rows = [({"x": float(rng.normal()), "plan": "a"}, 0.5) for _ in range(200)]
    build_profile("bad", bad_rows).save(tmp_path / "bad-ref.json")
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"status-{uuid.uuid4().hex[:8]}",
            "predictions_topic": predictions,
            "labels_topic": labels,
            "poll_timeout_ms": 100,
        },
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "defaults": {"window": {"size": 200, "step": 100}},
        "models": [
            {
                "name": "good",
                "reference": {"path": "good.jsonl"},
                "performance": {"task": "binary"},
            },
            {
                "name": "bad",
                "features": {"x": "numeric", "plan": "numeric"},
                "reference": {"path": "bad-ref.json"},
            },
            # Found only at run time: the learned reference has no number for plan.
            {
                "name": "learner",
                "features": {"x": "numeric", "plan": "numeric"},
                "reference": {"learn_first": 300},
            },
            {"name": "slow", "reference": {"learn_first": 1000}},
            {"name": "idle"},
        ],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    caplog.set_level(logging.INFO, logger="monitor")
    await service.start()
    task = asyncio.create_task(service.run())
    client = httpx.AsyncClient(timeout=5.0)
    url = service.http.url
    try:
        # From the start: every configured model, with what is known.
        status = await _status(client, url)
        assert sorted(status["models"]) == ["bad", "good", "idle", "learner", "slow"]
        assert status["models"]["good"]["state"] == "waiting"
        assert status["models"]["good"]["reference"]["rows"] == 500
        assert status["models"]["idle"]["state"] == "waiting"
        bad = status["models"]["bad"]
        assert bad["state"] == "disabled" and bad["disabled_reason"] == "reference_mismatch"
        assert "feature 'plan' is numeric in the config but categorical" in bad["not_ready_reason"]
        ready = await client.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["models_disabled"]["bad"]["reason"] == "reference_mismatch"

        async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
            sent = 0
            for i in range(1000):
                await producer.send(predictions, *reversed(_event("good", i, rng, "a")))
                sent += 1
            for i in range(300):
                await producer.send(predictions, *reversed(_event("bad", i, rng, 1.0)))
                sent += 1
            for i in range(400):
                await producer.send(predictions, *reversed(_event("learner", i, rng, "gold")))
                sent += 1
            for i in range(600):
                await producer.send(predictions, *reversed(_event("slow", i, rng, "a")))
                sent += 1
            for i in range(300):
                label = {"event_id": f"good-{i}", "model": "good", "label": i % 2}
                await producer.send(labels, orjson.dumps(label), key=b"good")
            for i in range(50):
                label = {"event_id": f"bad-{i}", "model": "bad", "label": 1}
                await producer.send(labels, orjson.dumps(label), key=b"bad")
            await producer.flush()

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = await _status(client, url)
            if status["positions"].get(f"{predictions}/0") == sent and (
                status["positions"].get(f"{labels}/0") == 350
            ):
                break
            await asyncio.sleep(0.2)
        # Every offset advanced, the disabled models' included, and the service runs on.
        assert status["positions"] == {f"{predictions}/0": sent, f"{labels}/0": 350}
        assert not task.done()

        models = status["models"]
        good = models["good"]
        assert good["state"] == "ready" and good["ready"] and good["not_ready_reason"] is None
        assert good["events"] == 1000 and good["evaluations"] > 0
        assert good["performance"]["window_labels"] == 300
        assert "accuracy" in good["performance"]
        learner = models["learner"]
        assert learner["state"] == "disabled"
        assert learner["disabled_reason"] == "reference_mismatch"
        assert "plan" in learner["not_ready_reason"]
        slow = models["slow"]
        assert slow["state"] == "learning" and slow["progress"] == "600 of 1000"
        assert "600 so far" in slow["not_ready_reason"]
        assert models["idle"]["state"] == "waiting"
        assert models["idle"]["not_ready_reason"] == "no event of this model yet"

        metrics = (await client.get(f"{url}/metrics")).text
        assert _metric(metrics, "monitor_model_disabled", model="bad") == 1
        assert _metric(metrics, "monitor_model_disabled", model="learner") == 1
        assert _metric(metrics, "monitor_model_disabled", model="good") == 0
        # 300 predictions and 50 labels of the model disabled at start, all counted.
        assert (
            _metric(
                metrics, "monitor_events_skipped_total", model="bad", reason="reference_mismatch"
            )
            == 350
        )
        skipped_learner = _metric(metrics, "monitor_events_skipped_total", model="learner")
        assert 100 <= skipped_learner <= 400
        assert _metric(metrics, "monitor_events_processed_total", model="good") == 1000

        # One log line per disabled model.
        lines = [r.getMessage() for r in caplog.records if "disabled" in r.getMessage()]
        assert len([m for m in lines if m.startswith("model bad disabled")]) == 1
        assert len([m for m in lines if m.startswith("model learner disabled")]) == 1
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=0)
        await client.aclose()
    # State and outbox went where the config file's folder says (relative paths).
    assert (tmp_path / "state.sqlite").exists() and (tmp_path / "outbox.sqlite").exists()
