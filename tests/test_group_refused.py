"""A consumer group the broker refuses for good ends the process with the reason.

Seen before: with ``session_timeout_ms`` below the broker's
``group.min.session.timeout.ms`` the join failed once with aiokafka's "fatal error",
the service logged one "poll failed ...; retrying" WARNING, and then sat without
partitions for ever while ``/healthz`` answered 200: nothing consumed, nothing paged.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest
from fault_helpers import MonitorProcess, write_config

from devtools.local_kafka import create_topics

pytestmark = pytest.mark.kafka


async def test_a_session_timeout_the_broker_refuses_ends_the_run_naming_the_setting(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"refused-{suffix}"
    create_topics(kafka_bootstrap, [topic], 1)
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{suffix}",
            "predictions_topic": topic,
            "labels_topic": None,
            # The broker's default minimum is 6000 ms (the test broker keeps it).
            "session_timeout_ms": 1000,
            "heartbeat_interval_ms": 300,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp_path / "state.sqlite")},
        "models": [{"name": "m", "reference": {"learn_first": 100}}],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }
    p = MonitorProcess(write_config(tmp_path / "c.yaml", raw), tmp_path / "m.log").start()
    try:
        assert p.proc is not None
        try:
            code = await asyncio.to_thread(p.proc.wait, 45)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running without partitions:\n{p.tail()}") from None
    finally:
        p.ensure_dead()
    out = p.output()
    assert code == 1, p.tail()
    assert "InvalidSessionTimeoutError" in out and "kafka.session_timeout_ms (1000)" in out, out
    assert "shutdown: state store closed" in out  # an ordered stop, not a traceback
    assert "Traceback" not in out
