"""The SQLite outbox and silence store: durability, dedup, ordering, bookkeeping."""

from __future__ import annotations

import json

import pytest

from monitor.alerting.database import open_database
from monitor.alerting.notification import Notification, SignalEvidence
from monitor.alerting.outbox import Outbox
from monitor.alerting.silence_store import SilenceStore
from monitor.errors import StateError


def note(key: str, fp: str = "fp1", action: str = "fire") -> Notification:
    return Notification(
        idempotency_key=key,
        fingerprint=fp,
        action=action,  # type: ignore[arg-type]
        status="resolved" if action == "resolve" else "firing",
        model="churn",
        model_version=None,
        group={"model": "churn"},
        severity="warning",
        started_at=1.0,
        evaluated_at=2.0,
        window_start=0.0,
        window_end=1.5,
        window_events=10,
        signals=(SignalEvidence("drift", "x", "warning", float("nan"), 0.2),),
    )


@pytest.fixture
def outbox(tmp_path):
    box = Outbox.open(tmp_path / "o.db")
    yield box
    box.close()


def test_enqueue_is_durable_and_round_trips(tmp_path):
    box = Outbox.open(tmp_path / "o.db")
    assert box.enqueue("hook", note("k1"), now=10.0, deadline_at=100.0)
    box.close()  # a new process opening the same file
    again = Outbox.open(tmp_path / "o.db")
    (row,) = again.due(10.0, 10)
    assert row.receiver == "hook" and row.notification.idempotency_key == "k1"
    assert row.notification.signals[0].threshold == 0.2
    assert row.notification.signals[0].statistic != row.notification.signals[0].statistic  # NaN
    again.close()


def test_reenqueue_is_ignored_even_after_delivery(outbox):
    assert outbox.enqueue("hook", note("k1"), now=1.0, deadline_at=9.0)
    assert not outbox.enqueue("hook", note("k1"), now=2.0, deadline_at=9.0)
    assert outbox.enqueue("slack", note("k1"), now=2.0, deadline_at=9.0)  # other receiver
    (row, _) = outbox.due(5.0, 10)
    outbox.mark_delivered(row.id, 5.0)
    assert not outbox.enqueue("hook", note("k1"), now=6.0, deadline_at=9.0)
    assert outbox.counts() == {"delivered": 1, "pending": 1}


def test_due_respects_time_and_fingerprint_order(outbox):
    outbox.enqueue("hook", note("fire", "A"), now=1.0, deadline_at=99.0)
    outbox.enqueue("hook", note("resolve", "A", "resolve"), now=2.0, deadline_at=99.0)
    outbox.enqueue("hook", note("other", "B"), now=3.0, deadline_at=99.0)
    fire, other = outbox.due(3.0, 10)
    assert (fire.notification.idempotency_key, other.notification.idempotency_key) == (
        "fire",
        "other",
    )
    outbox.mark_failed(fire.id, next_attempt_at=50.0, error="HTTP 500")
    # The resolve waits behind its fire even though the fire is not due.
    assert [r.notification.idempotency_key for r in outbox.due(10.0, 10)] == ["other"]
    assert outbox.next_due_at(exclude=[other.id]) == 50.0
    assert outbox.due(10.0, 10, exclude=[other.id]) == []
    outbox.mark_delivered(other.id, 11.0)
    (again,) = outbox.due(50.0, 10)
    assert (again.notification.idempotency_key, again.attempts) == ("fire", 1)
    outbox.mark_delivered(again.id, 50.0)
    assert [r.notification.idempotency_key for r in outbox.due(50.0, 10)] == ["resolve"]


def test_withdraw_takes_back_pending_rows_but_not_those_being_sent(outbox):
    """A handed-over partition's deliveries: pending ones are withdrawn (the next owner
    sends them), one being sent stays, a delivered one stays (dedup of a re-read record)."""
    for k in ("k1", "k2", "k3", "k4"):
        assert outbox.enqueue("hook", note(k, fp=k), now=1.0, deadline_at=99.0)
    rows = {r.notification.idempotency_key: r for r in outbox.due(1.0, 10)}
    outbox.mark_delivered(rows["k3"].id, 2.0)
    keys = [("hook", k) for k in ("k1", "k2", "k3", "k4")]
    assert outbox.withdraw(keys, exclude={rows["k2"].id}) == 2
    assert outbox.pending(keys) == {("hook", "k2")}
    assert not outbox.enqueue("hook", note("k3", fp="k3"), now=3.0, deadline_at=99.0)
    assert outbox.enqueue("hook", note("k1", fp="k1"), now=3.0, deadline_at=99.0)  # back here


def test_depth_age_dead_and_purge(outbox):
    outbox.enqueue("hook", note("k1", "A"), now=10.0, deadline_at=99.0)
    outbox.enqueue("hook", note("k2", "B"), now=20.0, deadline_at=99.0)
    outbox.enqueue("pd", note("k3", "C"), now=30.0, deadline_at=99.0)
    assert outbox.depth() == {"hook": 2, "pd": 1}
    assert outbox.oldest_undelivered_age(40.0) == 30.0
    rows = outbox.due(40.0, 10, receiver="hook")
    assert len(rows) == 2
    outbox.mark_dead(rows[0].id, 41.0, "HTTP 400")
    outbox.mark_delivered(rows[1].id, 42.0)
    assert outbox.depth() == {"pd": 1}
    assert outbox.oldest_undelivered_age(40.0) == 10.0
    assert outbox.purge(before=41.5) == 1  # only the dead row finished before 41.5
    assert outbox.counts() == {"delivered": 1, "pending": 1}
    assert outbox.oldest_undelivered_age(40.0) == 10.0 and outbox.purge(before=100) == 1


def test_unreadable_row_is_dead_lettered_not_blocking(outbox):
    outbox.enqueue("hook", note("old"), now=1.0, deadline_at=99.0)
    outbox.enqueue("hook", note("new", "B"), now=2.0, deadline_at=99.0)
    outbox.connection.execute("UPDATE outbox SET format = 0 WHERE idempotency_key = 'old'")
    assert [r.notification.idempotency_key for r in outbox.due(5.0, 10)] == ["new"]
    assert outbox.counts() == {"dead": 1, "pending": 1}


def test_state_and_rows_commit_atomically(outbox):
    outbox.commit_evaluation(
        [("hook", note("k1"))], now=1.0, deadline_at=9.0, states={"churn": '{"v": 1}'}
    )
    assert outbox.load_states() == {"churn": '{"v": 1}'}
    outbox.connection.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON alert_state BEGIN SELECT RAISE(ABORT, 'disk'); END"
    )
    with pytest.raises(StateError):
        outbox.commit_evaluation(
            [("hook", note("k2"))], now=2.0, deadline_at=9.0, states={"fraud": "{}"}
        )
    assert outbox.counts() == {"pending": 1}  # k2 rolled back with the failed state write
    assert outbox.load_states() == {"churn": '{"v": 1}'}


def test_stored_rows_carry_format_version(outbox):
    outbox.enqueue("hook", note("k1"), now=1.0, deadline_at=9.0)
    row = outbox.connection.execute("SELECT format, payload FROM outbox").fetchone()
    assert row["format"] == 1 and json.loads(row["payload"])["format"] == 1


def test_schema_version_mismatch_is_refused(tmp_path):
    conn = open_database(tmp_path / "o.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StateError, match="schema 99"):
        open_database(tmp_path / "o.db")


def test_wal_mode(outbox):
    assert outbox.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_silence_store_persists_and_expires(tmp_path):
    conn = open_database(tmp_path / "o.db")
    store = SilenceStore(conn)
    s = store.add(starts_at=0, ends_at=100, model="churn", comment="deploy", created_by="ann")
    conn.close()
    conn = open_database(tmp_path / "o.db")
    store = SilenceStore(conn)
    assert [x.id for x in store.active(50)] == [s.id]
    expired = store.expire(s.id, now=60)
    assert expired.ends_at == 60 and store.active(61) == []
    with pytest.raises(KeyError):
        store.expire("nope", now=1)
    with pytest.raises(ValueError):
        store.add(starts_at=5, ends_at=5)
    assert store.purge(before=70) == 1 and store.all() == []
    conn.close()


#: A payload exactly as the hand-written serialiser (before msgspec) stored it: json.dumps of
#: the record dict, with a NaN statistic stored as null and no "cleared" field.
OLD_ROW = (
    '{"format": 1, "idempotency_key": "3f2a9c0d1e2b4a5f-1714564800000-1-update", "fingerprint": '
    '"3f2a9c0d1e2b4a5f", "action": "update", "status": "firing", "model": "churn", '
    '"model_version": "7", "group": {"model": "churn"}, "severity": "critical", "started_at": '
    '1714564800.0, "evaluated_at": 1714568400.25, "window_start": 1714564200.0, "window_end": '
    '1714568399.5, "window_events": 5000, "signals": [{"kind": "drift", "subject": "income", '
    '"severity": "critical", "statistic": 0.31, "threshold": 0.01, "detector": "ks", "p_value": '
    '1e-09, "details": {"ks": 0.31, "n": 5000}}, {"kind": "data_quality", "subject": '
    '"missing_rate:age", "severity": "warning", "statistic": null, "threshold": 0.1, "detector": '
    'null, "p_value": null, "details": {}}], "links": {"dashboard": '
    '"https://grafana.example/d/x?var-model=churn"}, "reason": null, "ended_at": null}'
)


def test_rows_written_by_the_old_serialiser_still_load_and_send_the_same_payload(outbox):
    outbox.connection.execute(
        "INSERT INTO outbox (receiver, idempotency_key, fingerprint, format, payload, "
        "enqueued_at, next_attempt_at, deadline_at) VALUES ('r', 'k', 'f', 1, ?, 0, 0, 100)",
        (OLD_ROW,),
    )
    (row,) = outbox.due(1.0, 10)
    n = row.notification
    assert n.action == "update" and n.model_version == "7" and n.cleared == ()
    assert n.signals[0].details == {"ks": 0.31, "n": 5000}
    assert n.signals[0].p_value == 1e-09
    assert n.signals[1].statistic != n.signals[1].statistic  # NaN again
    assert n.links == {"dashboard": "https://grafana.example/d/x?var-model=churn"}
    # Re-encoding gives the same record plus the new field's default.
    assert json.loads(n.encode()) == {**json.loads(OLD_ROW), "cleared": []}
    assert Notification.decode(n.encode()).to_record() == n.to_record()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("not json", "unreadable"),
        ('{"format": 1}', "missing required field"),
        (OLD_ROW.replace('"window_events": 5000', '"window_events": "many"'), "window_events"),
        (OLD_ROW.replace('"action": "update"', '"action": "explode"'), "action"),
        (OLD_ROW.replace('"format": 1', '"format": 2'), "format 2"),
    ],
)
def test_invalid_rows_are_state_errors_that_name_the_field(payload, problem):
    with pytest.raises(StateError, match=problem):
        Notification.decode(payload)


def test_numpy_numbers_in_details_are_stored_as_numbers():
    import numpy as np

    n = note("np")
    sig = SignalEvidence("drift", "x", "warning", 0.3, 0.2, "psi", None, {"psi": np.float64(0.3)})
    n = Notification(**{**{f: getattr(n, f) for f in n.__dataclass_fields__}, "signals": (sig,)})
    assert Notification.decode(n.encode()).signals[0].details == {"psi": 0.3}
