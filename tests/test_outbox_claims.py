"""Instances sharing one outbox file: each row is claimed before it is sent, with a lease.

Two dispatchers on one SQLite file (``state.backend: sqlite``, same host) used
to pick the same due rows and both POST them: every alert reached the receiver
twice. Now exactly one instance sends a row while its claim holds; a claim left
by an instance that died mid-request runs out and another instance sends the
row. Real local HTTP receiver, real SQLite file, injected clock for the lease.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import httpx
import pytest
from alert_receivers import Hold, RecordingReceiver, Reply
from prometheus_client import CollectorRegistry

from monitor.alerting.alert_metrics import AlertMetrics
from monitor.alerting.config import AlertingConfig
from monitor.alerting.database import SCHEMA_VERSION
from monitor.alerting.dispatcher import Dispatcher
from monitor.alerting.engine import AlertService
from monitor.alerting.notification import FORMAT_VERSION
from monitor.alerting.outbox import Outbox
from monitor.alerting.receivers import build_receiver
from monitor.clock import Clock, ManualClock, SystemClock
from tests.test_outbox import note


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def rx() -> AsyncIterator[RecordingReceiver]:
    async with RecordingReceiver() as receiver:
        yield receiver


def dispatcher(
    outbox: Outbox,
    url: str,
    client: httpx.AsyncClient,
    clock: Clock,
    database: Executor | None = None,
) -> Dispatcher:
    config = AlertingConfig.model_validate(
        {"receivers": {"hook": {"type": "webhook", "url": url}}, "delivery": {}}
    )
    receivers = {"hook": build_receiver("hook", config.receivers["hook"], client, clock)}
    return Dispatcher(
        outbox,
        receivers,
        delivery=config.delivery,
        metrics=AlertMetrics(CollectorRegistry(), receivers),
        clock=clock,
        poll_interval=0.05,
        database=database,
    )


async def test_two_dispatchers_sharing_one_file_deliver_each_notification_once(rx, tmp_path):
    path = tmp_path / "outbox.sqlite"
    first, second = Outbox.open(path), Outbox.open(path)
    keys = [f"key-{i}" for i in range(24)]
    now = SystemClock().time()
    first.commit_evaluation(
        [("hook", note(k, fp=f"fp-{i}")) for i, k in enumerate(keys)],
        now=now,
        deadline_at=now + 600,
    )
    async with httpx.AsyncClient() as client:
        a = dispatcher(first, rx.url, client, SystemClock())
        b = dispatcher(second, rx.url, client, SystemClock())
        await asyncio.gather(a.start(), b.start())
        try:
            await wait_until(lambda: first.counts() == {"delivered": len(keys)})
            await asyncio.sleep(0.3)  # room for a duplicate to arrive
        finally:
            await asyncio.gather(a.stop(), b.stop())
    sent = Counter(r.headers["webhook-id"] for r in rx.requests)
    assert sent == Counter(keys), {k: n for k, n in sent.items() if n != 1}
    assert {r["claimed_by"] for r in first.rows()} == {None}  # released with the outcome
    first.close()
    second.close()


async def test_a_crashed_instances_claim_runs_out_and_another_instance_sends_the_row(rx, tmp_path):
    path = tmp_path / "outbox.sqlite"
    clock = ManualClock(1_000.0)
    crashed = Outbox.open(path)
    crashed.enqueue("hook", note("k-crash", fp="fp"), now=clock.time(), deadline_at=9_999.0)
    (claimed,) = crashed.due(clock.time(), 10, lease_seconds=30.0)
    crashed.close()  # died mid-request: the claim stays in the file
    survivor = Outbox.open(path)
    assert survivor.due(clock.time(), 10) == []  # someone else's, still leased
    assert survivor.next_due_at() == 1_030.0  # due when the claim runs out, not before
    async with httpx.AsyncClient() as client:
        d = dispatcher(survivor, rx.url, client, clock)
        await d.start()
        try:
            await asyncio.sleep(0.3)
            assert rx.requests == []  # the lease holds: not sent a second time
            clock.advance(30.0)
            d.wake()
            await wait_until(lambda: survivor.counts() == {"delivered": 1})
        finally:
            await d.stop()
    assert [r.headers["webhook-id"] for r in rx.requests] == ["k-crash"]
    assert survivor.rows()[0]["id"] == claimed.id
    survivor.close()


def test_a_claim_blocks_other_instances_and_keeps_the_order_per_fingerprint(tmp_path):
    path = tmp_path / "outbox.sqlite"
    a, b = Outbox.open(path), Outbox.open(path)
    a.enqueue("hook", note("fire", fp="fp"), now=1.0, deadline_at=99.0)
    a.enqueue("hook", note("resolve", fp="fp", action="resolve"), now=1.0, deadline_at=99.0)
    a.enqueue("hook", note("other", fp="fp2"), now=1.0, deadline_at=99.0)
    got_a = a.due(2.0, 10, lease_seconds=10.0)
    assert [r.notification.idempotency_key for r in got_a] == ["fire", "other"]
    assert b.due(2.0, 10, lease_seconds=10.0) == []  # claimed by a; resolve waits for fire
    assert b.renew({got_a[0].id}, now=5.0, lease_seconds=10.0) == 0  # not b's to renew
    assert a.renew({got_a[0].id}, now=5.0, lease_seconds=10.0) == 1  # held until 15
    (other,) = b.due(13.0, 10, lease_seconds=10.0)  # a's claim on it ran out at 12
    assert other.notification.idempotency_key == "other"  # the renewed one holds
    a.mark_failed(got_a[0].id, next_attempt_at=14.0, error="HTTP 503")  # releases the claim
    (fire,) = b.due(14.0, 10, exclude={other.id}, lease_seconds=10.0)
    assert fire.notification.idempotency_key == "fire"
    a.close()
    b.close()


def test_withdraw_removes_rows_left_claimed_by_a_previous_run(tmp_path):
    path = tmp_path / "outbox.sqlite"
    old = Outbox.open(path)
    old.enqueue("hook", note("k1", fp="fp1"), now=1.0, deadline_at=99.0)
    old.enqueue("hook", note("k2", fp="fp2"), now=1.0, deadline_at=99.0)
    old.enqueue("hook", note("k3", fp="fp3"), now=1.0, deadline_at=99.0)
    old.due(2.0, 10, lease_seconds=60.0)
    old.close()
    new = Outbox.open(path)
    assert new.withdraw([("hook", "k1")]) == 1
    assert new.withdraw_all_pending() == 2
    assert new.counts() == {}
    new.close()


#: The schema of version 1 (before claims), as main created it.
_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, fingerprint TEXT NOT NULL, format INTEGER NOT NULL,
    payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, enqueued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL, deadline_at REAL NOT NULL, finished_at REAL,
    last_error TEXT, UNIQUE (receiver, idempotency_key)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_order ON outbox (receiver, fingerprint, state, id);
CREATE TABLE alert_state (model TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE silences (id TEXT PRIMARY KEY, record TEXT NOT NULL, ends_at REAL NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""


def test_an_outbox_file_of_schema_1_is_migrated_in_place_and_its_rows_delivered(tmp_path):
    path = tmp_path / "outbox.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_V1)
    conn.execute(
        "INSERT INTO outbox (receiver, idempotency_key, fingerprint, format, payload, "
        "enqueued_at, next_attempt_at, deadline_at) VALUES (?, ?, ?, ?, ?, 1, 1, 99)",
        ("hook", "old-key", "fp", FORMAT_VERSION, note("old-key", fp="fp").encode().decode()),
    )
    conn.commit()
    conn.close()
    box = Outbox.open(path)
    version = box.connection.execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version.fetchone()[0] == str(SCHEMA_VERSION)
    (row,) = box.due(2.0, 10, lease_seconds=10.0)
    assert row.notification.idempotency_key == "old-key"
    assert box.rows()[0]["claimed_by"] == box.instance
    box.close()
    again = Outbox.open(path)  # a migrated file opens as it is
    assert again.counts() == {"pending": 1}
    again.close()


async def test_a_live_instance_keeps_its_claim_through_a_long_request_and_releases_it_at_stop(
    rx, tmp_path
):
    path = tmp_path / "outbox.sqlite"
    clock = ManualClock(1_000.0)
    sender, other = Outbox.open(path), Outbox.open(path)
    sender.enqueue("hook", note("k-slow", fp="fp"), now=clock.time(), deadline_at=9_999.0)
    rx.script(Hold(asyncio.Event()))  # the request hangs until the test ends
    async with httpx.AsyncClient() as client:
        d = dispatcher(sender, rx.url, client, clock)
        await d.start()
        try:
            await rx.wait_for_requests(1)
            for _ in range(4):  # 40 s in steps of 10: the 30 s lease is renewed each third
                clock.advance(10.0)
                d.wake()
                await wait_until(lambda: sender.rows()[0]["claimed_until"] == clock.time() + 30.0)
                assert other.due(clock.time(), 10, lease_seconds=30.0) == []
        finally:
            await d.stop(grace_seconds=0)  # cancels the request: the claim is released
    assert sender.rows()[0]["claimed_by"] is None
    (row,) = other.due(clock.time(), 10, lease_seconds=30.0)  # the next run sends it at once
    assert row.notification.idempotency_key == "k-slow"
    sender.close()
    other.close()


async def test_two_alert_services_sharing_one_outbox_file_deliver_each_notification_once(
    rx, tmp_path
):
    """The same through two whole :class:`AlertService`\\ s, as two ``monitor run``
    processes on one host open them, with the service's own wiring (default lease)."""
    path = tmp_path / "outbox.sqlite"
    keys = [f"svc-{i}" for i in range(16)]
    seed = Outbox.open(path)  # a previous run's undelivered backlog, there at start
    now = SystemClock().time()
    seed.commit_evaluation(
        [("hook", note(k, fp=f"fp-{i}")) for i, k in enumerate(keys)],
        now=now,
        deadline_at=now + 600,
    )
    seed.close()
    config = AlertingConfig.model_validate(
        {"receivers": {"hook": {"type": "webhook", "url": rx.url}}}
    )
    services = [
        AlertService(
            config,
            registry=CollectorRegistry(),
            clock=SystemClock(),
            outbox_path=str(path),
            rng=random.Random(i),
            poll_interval_seconds=0.05,
        )
        for i in range(2)
    ]
    await asyncio.gather(*(s.start() for s in services))
    try:
        await wait_until(lambda: services[0].outbox.counts() == {"delivered": len(keys)})
        await asyncio.sleep(0.3)  # room for a duplicate to arrive
    finally:
        await asyncio.gather(*(s.stop() for s in services))
    assert Counter(r.headers["webhook-id"] for r in rx.requests) == Counter(keys)


async def test_the_claim_lease_is_the_configured_one(rx, tmp_path):
    """``alerting.delivery.claim_lease_seconds`` sets the lease of the service's claims (a
    crashed instance's row is sent again after it; 30 s by default), renewed each third."""
    path = tmp_path / "outbox.sqlite"
    clock = ManualClock(1_000.0)
    other = Outbox.open(path)
    other.enqueue("hook", note("k-lease", fp="fp"), now=clock.time(), deadline_at=9_999.0)
    rx.script(Hold(asyncio.Event()))  # the request hangs until the test ends
    config = AlertingConfig.model_validate(
        {
            "receivers": {"hook": {"type": "webhook", "url": rx.url}},
            "delivery": {"claim_lease_seconds": 6.0},
        }
    )
    service = AlertService(
        config,
        registry=CollectorRegistry(),
        clock=clock,
        outbox_path=str(path),
        poll_interval_seconds=0.05,
    )
    await service.start()
    try:
        await rx.wait_for_requests(1)
        assert other.rows()[0]["claimed_until"] == clock.time() + 6.0
        clock.advance(2.0)  # a third of the lease: renewed
        await wait_until(lambda: other.rows()[0]["claimed_until"] == clock.time() + 6.0)
    finally:
        await service.stop(grace_seconds=0)
    other.close()
    assert AlertingConfig().delivery.claim_lease_seconds == 30.0


async def test_stop_while_an_outcome_waits_for_the_database_thread_still_stores_it(rx, tmp_path):
    """The outcome of an attempt is stored on the database thread. ``stop()`` cancelled a
    delivery whose outcome was queued there behind another write (one waiting out a foreign
    lock on the file): the queued job was withdrawn, never ran, and the row stayed claimed
    by the stopped instance for the whole lease (30 s by default), so the next run sent it
    that much later (test_alert_delivery's restart test failed so under load). Now the
    store, once handed over, runs to its end."""
    outbox = Outbox.open(tmp_path / "outbox.sqlite")
    now = SystemClock().time()
    outbox.enqueue("hook", note("k-1", fp="fp"), now=now, deadline_at=now + 600)
    database = ThreadPoolExecutor(1)
    released = asyncio.Event()
    rx.script(Hold(released, then=Reply(503)))
    gate = threading.Event()
    try:
        async with httpx.AsyncClient() as client:
            d = dispatcher(outbox, rx.url, client, SystemClock(), database=database)
            await d.start()
            await rx.wait_for_requests(1)
            database.submit(gate.wait, 10)  # the database thread busy with another write
            released.set()  # the 503 comes back: its outcome queues behind that write
            await asyncio.sleep(0.3)
            await d.stop(grace_seconds=0)
    finally:
        gate.set()
        database.shutdown(wait=True)
    (row,) = outbox.rows()
    assert row["claimed_by"] is None, row  # not left claimed for the lease
    assert row["attempts"] == 1 and row["state"] == "pending", row
    outbox.close()


class _RecordingExecutor(ThreadPoolExecutor):
    """The database thread, listing each job handed to it (to see a store queued)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs: list[tuple[Callable[..., object], Future[object]]] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        future = super().submit(fn, *args, **kwargs)
        self.jobs.append((fn, future))
        return future


async def test_stop_while_a_refused_outcome_waits_for_the_database_thread_still_stores_it(
    rx, tmp_path
):
    """An outcome the outbox refused (its disk full) is stored again each turn of the
    dispatcher. That retry was not shielded from ``stop()``: cancelled while queued on the
    database thread behind another write, the job was withdrawn before it ran, and the
    delivered row stayed pending, claimed by the stopped instance, to be sent again once
    the lease ran out. Now the retry, once handed over, runs to its end, as the first
    store does."""
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox.open(path)
    now = SystemClock().time()
    outbox.enqueue("hook", note("k-1", fp="fp"), now=now, deadline_at=now + 600)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute(
        "CREATE TRIGGER full BEFORE UPDATE ON outbox WHEN NEW.state = 'delivered' "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    database = _RecordingExecutor()

    def stores() -> list[Future[object]]:
        return [f for fn, f in database.jobs if getattr(fn, "func", None) == outbox.mark_delivered]

    started, gate = threading.Event(), threading.Event()
    try:
        async with httpx.AsyncClient() as client:
            d = dispatcher(outbox, rx.url, client, SystemClock(), database=database)
            await d.start()
            await rx.wait_for_requests(1)  # delivered (200)
            await wait_until(lambda: bool(stores()) and stores()[0].done())  # store refused
            assert stores()[0].exception() is not None
            database.submit(lambda: (started.set(), gate.wait(10)))  # another write, held
            await asyncio.to_thread(started.wait, 10)
            other.execute("DROP TRIGGER full")  # the outbox takes writes again
            n = len(stores())
            d.wake()
            await wait_until(lambda: len(stores()) > n)  # the retry queued behind the write
            await d.stop(grace_seconds=0)
    finally:
        gate.set()
        database.shutdown(wait=True)
        other.close()
    (row,) = outbox.rows()
    assert row["state"] == "delivered" and row["claimed_by"] is None, row
    assert len(rx.requests) == 1
    outbox.close()
