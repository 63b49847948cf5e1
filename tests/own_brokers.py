"""Settings of the brokers the test session starts for itself, beside the shared one.

Some tests need a broker they may restart, misconfigure or delete topics on, which the
shared broker (``kafka_bootstrap``) must never see. Each such broker costs a JVM start
(seconds on a busy machine), so tests whose needs agree share one for the whole session
(``sasl_kafka``, ``scratch_kafka`` in ``conftest.py``) and isolate themselves on it as on the
shared one: fresh topic and group names.
"""

from __future__ import annotations

# ``sasl_kafka``: a second listener with SASL/PLAIN (tests/test_security.py,
# tests/test_local_kafka.py, which also restarts it).
SASL_USERS = {"monitor": "s3cret-Pa55-7f1d2c", "other": "battery-staple"}
# One random id in 64 begins with '-'; Kafka's storage tool once read such an id as an option.
# Every session's start of ``sasl_kafka`` covers that case.
DASH_CLUSTER_ID = "-LocalKafkaDashIdTestA"

# ``scratch_kafka``: timed-out transactions are looked for every half second (instead of
# every 10 s) and transactions may last at most 20 s, so a transaction timeout shows in
# seconds (tests/test_kafka_txn.py); tests that delete topics use it too
# (tests/test_changelog_deleted.py), and those that restart a broker for an outage
# (tests/test_broker_outage_log.py, tests/test_faults.py): neither setting matters to them.
SCRATCH_PROPERTIES = {
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "500",
    "transaction.max.timeout.ms": "20000",
}
