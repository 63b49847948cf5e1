"""docs/METRICS.md lists exactly the metric families the service exports, with their types.

The exported side is a real service (Kafka state backend, so its changelog producer's and
alerts topic consumer's families are there too, and a webhook receiver) started against the
broker: every family on its registry, plus the per-model families of the scrape-time
collector (``describe()``: they appear only once a model has been evaluated). A metric added
without a line in the table, or a line left behind by a rename, fails here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.service_metrics import ModelStateCollector

ROOT = Path(__file__).resolve().parent.parent
# A table row of "All metrics": | `name` | type | labels | unit | meaning |
ROW = re.compile(r"^\| `((?:monitor|process|python)_[a-z_*]+)`(?:, `[^`]+`)* \| ([a-z]*) \|")


def documented() -> dict[str, str]:
    """name (or ``prefix_*`` pattern) -> type, from docs/METRICS.md's tables."""
    text = (ROOT / "docs" / "METRICS.md").read_text()
    section = text.split("## All metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        for name in re.findall(r"`((?:monitor|process|python)_[a-z_*]+)`", line.split("|")[1]):
            m = ROW.match(line)
            rows[name] = m.group(2) if m else ""
    return rows


def _full_name(name: str, kind: str) -> str:
    # The parser and the families drop a counter's _total; the table spells it out.
    return f"{name}_total" if kind == "counter" and not name.endswith("_total") else name


@pytest.mark.kafka
async def test_metrics_md_lists_every_exported_family_and_nothing_else(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("mdocs", partitions=1)
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
        },
        "http": {"port": 0},
        "state": {"backend": "kafka", "instance_id": "docs", "path": str(tmp_path / "s.db")},
        "models": [{"name": "m", "reference": {"learn_first": 100}}],
        "alerting": {
            "outbox_path": str(tmp_path / "outbox.sqlite"),
            "receivers": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}},
        },
    }
    service = MonitorService(parse_config(raw))
    await service.start()
    try:
        text = generate_latest(service.registry).decode()
    finally:
        await service.stop(grace_seconds=0)
    exported = {_full_name(f.name, f.type): f.type for f in text_string_to_metric_families(text)}
    for family in ModelStateCollector(lambda: [], 20, "full").describe():
        exported[_full_name(family.name, family.type)] = family.type

    docs = documented()
    patterns = [n[:-1] for n in docs if n.endswith("*")]
    ours = {n: t for n, t in exported.items() if not n.startswith(tuple(patterns))}
    assert sorted(set(ours) - set(docs)) == [], "exported but not in docs/METRICS.md"
    named = {n: t for n, t in docs.items() if not n.endswith("*")}
    assert sorted(set(named) - set(ours)) == [], "in docs/METRICS.md but not exported"
    wrong = {n: (t, ours[n]) for n, t in named.items() if t and t != ours[n]}
    assert wrong == {}, "(documented type, exported type)"
    for pattern in patterns:  # process_*, python_*: the standard collectors are there
        assert any(n.startswith(pattern) for n in exported), pattern


@pytest.mark.kafka
async def test_every_listed_model_has_its_event_counter_from_the_start(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """config/prometheus/rules.yml's NoEvents (``rate(monitor_events_processed_total[10m])
    == 0``) needs the series: absent (a restart while the model's producer is down, so no
    event ever comes), the rule never fires. Listed models start at 0."""
    topic = topic_factory("noevents", partitions=1)
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp_path / "state.sqlite")},
        "models": [{"name": "quiet", "reference": {"learn_first": 100}}],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }
    service = MonitorService(parse_config(raw))
    await service.start()
    try:
        value = service.registry.get_sample_value(
            "monitor_events_processed_total", {"model": "quiet"}
        )
    finally:
        await service.stop(grace_seconds=0)
    assert value == 0.0
