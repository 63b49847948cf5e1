"""The local broker does what the rest of the test suite relies on.

* a consumer group sees every produced message once and commits the expected offsets;
* a broker restarted on the same port is found again by clients that were already connected;
* the SASL/PLAIN listener lets the right password in and keeps a wrong one out;
* it starts whatever random cluster id it draws (ids may begin with '-');
* it never reports another broker's port as its own, and refuses a port in use in one line;
* a single node runs transactions: commit, abort, and a read_committed consumer; the group
  and transaction coordinators are loaded before start() returns.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import setuptools
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from own_brokers import DASH_CLUSTER_ID, SASL_USERS

from devtools import local_kafka
from devtools.local_kafka import LocalKafka, LocalKafkaError, cluster_id
from monitor.cli import build_parser
from monitor.errors import ServiceStateError

pytestmark = pytest.mark.kafka

TopicFactory = Callable[..., str]  # the conftest fixture; tests/ is not a package

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def own_kafka(sasl_kafka: LocalKafka) -> LocalKafka:
    """A broker of the tests' own, because these tests restart it (never the shared one):
    the session's ``sasl_kafka`` (conftest.py), whose cluster id begins with '-'."""
    return sasl_kafka


def test_unstarted_broker_has_no_address() -> None:
    kafka = LocalKafka()
    with pytest.raises(ServiceStateError):
        _ = kafka.bootstrap_servers
    kafka.stop()  # stopping a broker that never ran is harmless
    kafka.stop()


async def test_round_trip_in_a_consumer_group(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = topic_factory("roundtrip", partitions=3)
    keys = [f"model-{i % 7}".encode() for i in range(100)]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = await asyncio.gather(
            *[await producer.send(topic, key=k, value=str(i).encode()) for i, k in enumerate(keys)]
        )
    finally:
        await producer.stop()
    end_offsets: dict[int, int] = {}
    for md in sent:
        end_offsets[md.partition] = max(end_offsets.get(md.partition, 0), md.offset + 1)
    assert sum(end_offsets.values()) == 100

    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: list[tuple[int, bytes, int]] = []
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}  # created, not auto-created
        async with asyncio.timeout(20):
            while len(received) < 100:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    received += [(tp.partition, r.key, int(r.value)) for r in records]
        await consumer.commit()
        committed = {p: await consumer.committed(TopicPartition(topic, p)) for p in end_offsets}
    finally:
        await consumer.stop()

    assert sorted(v for _, _, v in received) == list(range(100))  # each message exactly once
    assert committed == end_offsets
    # a key always lands on one partition, and within it the order of sending is kept
    partitions_of_key: dict[bytes, set[int]] = {}
    for partition, key, _ in received:
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    for partition in end_offsets:
        values = [v for p, _, v in received if p == partition]
        assert values == sorted(values)


async def test_clients_reconnect_after_a_restart_on_the_same_port(own_kafka: LocalKafka) -> None:
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    address = own_kafka.bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=address, acks="all")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=address,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"before")
        assert await _next_values(consumer, 1) == [b"before"]

        # Blocking on purpose: the clients' event loop stalls as it would on a long outage.
        own_kafka.restart()
        assert own_kafka.bootstrap_servers == address

        async with asyncio.timeout(30):
            await producer.send_and_wait(topic, b"after")
        assert await _next_values(consumer, 1) == [b"after"]
    finally:
        await consumer.stop()
        await producer.stop()


async def test_sasl_plain_accepts_the_right_password(own_kafka: LocalKafka) -> None:
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    options = {
        "bootstrap_servers": own_kafka.sasl_bootstrap_servers,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "monitor",
        "sasl_plain_password": SASL_USERS["monitor"],
    }
    producer = AIOKafkaProducer(**options)
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"authenticated")
    finally:
        await producer.stop()
    await consumer.start()
    try:
        assert await _next_values(consumer, 1) == [b"authenticated"]
    finally:
        await consumer.stop()


async def test_sasl_plain_refuses_a_wrong_password(
    own_kafka: LocalKafka, caplog: pytest.LogCaptureFixture
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=own_kafka.sasl_bootstrap_servers,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="monitor",
        sasl_plain_password="wrong",
    )
    caplog.set_level(logging.ERROR, logger="aiokafka")
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()
    # aiokafka reports only "unable to bootstrap"; the reason is in its log
    assert "Authentication failed" in caplog.text
    # the listener refused the password, not the broker: plaintext still serves
    assert cluster_id(own_kafka.bootstrap_servers, timeout=5.0) == own_kafka.cluster_id


def test_a_cluster_id_that_begins_with_a_dash_formats_and_serves(own_kafka: LocalKafka) -> None:
    assert own_kafka.cluster_id == DASH_CLUSTER_ID
    assert cluster_id(own_kafka.bootstrap_servers) == DASH_CLUSTER_ID


def test_generated_cluster_ids_are_valid_and_never_begin_with_a_dash() -> None:
    ids = [local_kafka._new_cluster_id() for _ in range(2000)]  # ~31 would begin with '-'
    assert all(local_kafka._is_cluster_id(i) and not i.startswith("-") for i in ids)
    assert not local_kafka._is_cluster_id("-t")
    with pytest.raises(ValueError, match="cluster id"):
        LocalKafka(cluster_id="not a uuid")


def test_run_refuses_a_port_that_another_broker_holds(kafka_bootstrap: str) -> None:
    """The launcher used to format, start a JVM, print BOOTSTRAP= for the *other* broker, and
    die seconds later with "Address already in use"."""
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "devtools.local_kafka", "run", "--port", str(port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "BOOTSTRAP=" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1" in lines[0] and "already in use" in lines[0]
    assert elapsed < 30  # no JVM was started: interpreter start-up only, even on a busy machine


@pytest.mark.slow
def test_readiness_does_not_take_another_broker_for_its_own(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the port is taken between the check and the JVM's bind (the check is blinded here),
    the other broker answers on it; start() must still fail, not report it as ours."""
    monkeypatch.setattr(local_kafka, "_port_in_use", lambda port: False, raising=False)
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    kafka = LocalKafka(port=port, startup_timeout=90.0)
    try:
        with pytest.raises(LocalKafkaError, match="already in use"):
            kafka.start()
        assert not kafka.running
    finally:
        kafka.stop()


async def test_a_ready_broker_has_its_coordinators_loaded(own_kafka: LocalKafka) -> None:
    """start() returns once the group and transaction coordinators exist, so a first consumer
    group or transaction neither waits nor makes aiokafka log GroupCoordinatorNotAvailable.
    (Runs before the transaction test: nothing else in this module uses transactions.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=own_kafka.bootstrap_servers)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert {"__consumer_offsets", "__transaction_state"} <= topics


async def test_a_single_node_commits_and_aborts_transactions(own_kafka: LocalKafka) -> None:
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    own_kafka.create_topics([topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=own_kafka.bootstrap_servers,
        transactional_id=f"txn-{uuid.uuid4().hex[:8]}",
    )
    async with asyncio.timeout(60):
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed-1")
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed-2")
        finally:
            await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=own_kafka.bootstrap_servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        # read_uncommitted would deliver b"aborted" second
        assert await _next_values(consumer, 2) == [b"committed-1", b"committed-2"]
    finally:
        await consumer.stop()


def test_dev_tooling_stays_out_of_the_runtime_package() -> None:
    """The launcher and the demo live in devtools/, which the wheel does not ship; the installed
    package never imports it and its CLI has no demo (that needs the checkout's config)."""
    packages = setuptools.find_packages(str(ROOT), include=["monitor*"])  # as pyproject.toml
    assert "monitor" in packages and not any(p.startswith("devtools") for p in packages)
    for path in (ROOT / "monitor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                assert not any(n.split(".")[0] == "devtools" for n in names), path
    assert not (ROOT / "monitor" / "local_kafka.py").exists()
    assert not (ROOT / "monitor" / "demo.py").exists()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo"])


def test_the_compose_broker_is_set_up_like_the_local_one() -> None:
    """docker-compose.yml runs the Kafka version the tests run, with the single-node settings
    without which transactions and consumer groups wait for replicas that never come."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{local_kafka.KAFKA_VERSION}"
    env = {name: str(value) for name, value in kafka["environment"].items()}
    for key, value in local_kafka.SINGLE_NODE_PROPERTIES.items():
        assert env.get("KAFKA_" + key.upper().replace(".", "_")) == value, key


async def _next_values(consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    async with asyncio.timeout(30):
        while len(values) < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [r.value for r in records]
    return values
