"""Shared pytest fixtures.

Keep this file sectioned by concern; add new fixtures under a heading of their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from own_brokers import DASH_CLUSTER_ID, SASL_USERS, SCRATCH_PROPERTIES

from devtools.local_kafka import LocalKafka, create_topics

# --------------------------------------------------------------------------- Kafka
#
# One broker per test session: starting a JVM costs seconds, a topic costs milliseconds, so
# tests isolate themselves with fresh topic (and group) names rather than fresh brokers.
# ``scripts/test.sh`` starts the broker once and passes it in through
# MONITOR_TEST_KAFKA_BOOTSTRAP; a bare ``pytest`` starts its own.

KAFKA_BOOTSTRAP_ENV = "MONITOR_TEST_KAFKA_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a running broker that tests may use (never restart or kill it)."""
    external = os.environ.get(KAFKA_BOOTSTRAP_ENV)
    if external:
        yield external
        return
    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture(scope="session")
def sasl_kafka() -> Iterator[LocalKafka]:
    """A broker of the tests' own with a SASL/PLAIN listener (users ``own_brokers.SASL_USERS``)
    and a cluster id that begins with '-'. Tests may restart it, never stop it.

    One per session, not per module: tests/test_local_kafka.py and tests/test_security.py
    share it (a JVM start fewer). In the suite's order test_local_kafka.py meets it first,
    fresh, as its coordinator check wants.
    """
    with LocalKafka(sasl_plain_users=SASL_USERS, cluster_id=DASH_CLUSTER_ID) as kafka:
        yield kafka


@pytest.fixture(scope="session")
def scratch_kafka() -> Iterator[LocalKafka]:
    """A broker of the tests' own for what the shared one must not see: deleted topics,
    transactions the broker aborts within a second (``own_brokers.SCRATCH_PROPERTIES``),
    outages. Tests may restart it (``restart(down_for=...)``), never stop or kill it.

    One per session: tests/test_kafka_txn.py, tests/test_changelog_deleted.py,
    tests/test_broker_outage_log.py and the outage test of tests/test_faults.py share it
    (each had a broker of its own: a JVM start each), with fresh topic and group names.
    """
    with LocalKafka(extra_properties=SCRATCH_PROPERTIES) as kafka:
        yield kafka


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest) -> TopicFactory:
    """Make fresh topic names: ``topic_factory("events")`` -> ``"events-3f2a..."``.

    With ``partitions=N`` the topic is also created on ``kafka_bootstrap`` (otherwise the
    broker auto-creates it with one partition on first use).
    """

    def make(prefix: str = "test", *, partitions: int | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if partitions is not None:
            create_topics(request.getfixturevalue("kafka_bootstrap"), [name], partitions)
        return name

    return make


@pytest.fixture
def unique_topic(topic_factory: TopicFactory) -> str:
    """One fresh topic name (not created: auto-creation makes it on first use)."""
    return topic_factory()
