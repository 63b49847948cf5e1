"""A stop that comes while the consumer group is still joining (SIGTERM right after start, a
restart loop, a rolling deploy) is a normal stop: the assignment that completes during it
is not acted on, and nothing is logged at ERROR (real broker, both state backends)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.service import MonitorService

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
async def test_a_stop_during_the_group_join_logs_no_error(
    backend: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory("joinstop", partitions=2)
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
        },
        "http": {"port": 0},
        "state": {"backend": backend, "path": str(tmp_path / "s.db")},
        "models": [{"name": "m", "reference": {"learn_first": 100}}],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }
    service = MonitorService(parse_config(raw))
    caplog.set_level(logging.WARNING)
    await service.start()
    service.request_stop()  # SIGTERM: the group join is still under way
    await service.stop(grace_seconds=0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]
