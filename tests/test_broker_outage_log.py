"""What the log says during a broker outage: the monitor's own two lines, and aiokafka's
connection errors once per kind per minute instead of on every retry.

Before, a 40-second outage wrote about 7,000 ERROR lines from aiokafka ("Unable connect
to node", "Unable to update metadata", "Failed fetch messages") and not one line of the
monitor's own: the operator had to infer from /healthz that the broker was the problem.
Own broker (devtools/local_kafka.py), stopped for a few seconds and started again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from fault_helpers import eventually

from devtools.local_kafka import LocalKafka
from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.kafka_source import RepeatedLogThrottle
from monitor.service import MonitorService
from monitor.simulate import publish

DOWN = "has not answered for"
BACK = "Kafka answers again after"


def test_the_throttle_lets_a_repeated_line_through_once_a_minute_with_the_count() -> None:
    clock = ManualClock(0.0)
    throttle = RepeatedLogThrottle(per_seconds=60.0, monotonic=clock.monotonic)
    logger = logging.getLogger("aiokafka.test-throttle")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep()
    logger.addHandler(keep)
    logger.addFilter(throttle)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        for node in range(500):
            logger.error("Unable connect to node with id %s: %s", node % 3, "refused")
            logger.info("below WARNING: never held back %s", node)
            clock.advance(0.1)
        logger.error("Unable to update metadata from %s", [1])  # another kind: passes
        clock.advance(20.0)
        logger.error("Unable connect to node with id %s: %s", 1, "refused")
    finally:
        logger.removeHandler(keep)
        logger.removeFilter(throttle)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    errors = [m for m in seen if "below WARNING" not in m]
    assert errors == [
        "Unable connect to node with id 0: refused",
        "Unable to update metadata from [1]",
        "Unable connect to node with id 1: refused (and 499 more like it in 70 s)",
    ]
    assert sum("below WARNING" in m for m in seen) == 500


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_broker_outage_is_said_once_by_the_monitor_and_aiokafka_does_not_flood(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, scratch_kafka: LocalKafka
) -> None:
    kafka = scratch_kafka  # conftest.py: a broker of the session's own, which we may restart
    topic = f"outage-log-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka.bootstrap_servers
    kafka.create_topics([topic], 1)
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"g-{topic}",
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "stall_seconds": 3.0,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "unknown_models": "track",
            "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        }
    )
    service = MonitorService(config)
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        await publish(bootstrap, topic=topic, model="m", events=50)
        await eventually(lambda: "m" in service.models, 30)
        caplog.clear()
        caplog.set_level(logging.INFO)
        await asyncio.to_thread(kafka.restart, down_for=12.0)
        await eventually(lambda: any(BACK in r.getMessage() for r in caplog.records), within=60)
        records = list(caplog.records)
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=1)
    ours = [r for r in records if r.name.startswith("monitor")]
    down = [r for r in ours if DOWN in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING, [r.getMessage() for r in ours]
    assert bootstrap in down[0].getMessage()
    assert sum(BACK in r.getMessage() for r in ours) == 1
    noisy = [r for r in records if r.name.startswith("aiokafka") and r.levelno >= logging.WARNING]
    kinds = {(r.name, str(r.msg).split(" (and ")[0]) for r in noisy}
    # One line per kind (a kind may pass again once its minute is over: not in 12 s).
    assert len(noisy) <= len(kinds) + 2, [r.getMessage() for r in noisy][:40]
