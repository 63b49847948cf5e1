"""Stops that come while the service is still starting (SIGTERM right after start, in a
restart loop or a rolling deploy), real broker:

* while the consumer group is still joining: the assignment that completes during the stop
  is not acted on, and nothing is logged at ERROR (both state backends);
* while the Kafka state store waits for the predictions topic to exist: the wait ends at
  once and `monitor run` exits 0.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
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


def test_sigterm_while_the_kafka_store_waits_for_the_predictions_topic_stops_at_once(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """`monitor run` with the Kafka backend waits up to two minutes for the predictions
    topic (a producer may create it later); a SIGTERM meanwhile ends it within seconds and
    with exit status 0 (it was ignored until the wait ran out: the store's start blocked
    the event loop, so the signal handler never ran, and an orchestrator killed it)."""
    topic = topic_factory("nosuchtopic")  # never created
    config = tmp_path / "monitor.yaml"
    config.write_text(
        json.dumps(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "group_id": f"g-{uuid.uuid4().hex[:8]}",
                    "predictions_topic": topic,
                    "labels_topic": None,
                },
                "http": {"port": 0},
                "state": {"backend": "kafka", "instance_id": "one"},
                "models": [{"name": "m", "reference": {"learn_first": 100}}],
                "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
            }
        )
    )
    log = tmp_path / "monitor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while b"waiting for the predictions topic" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert rc == 0, text
    assert "stopped while starting" in text and "Traceback" not in text, text
