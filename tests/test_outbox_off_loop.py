"""The last outbox (SQLite) calls made on the event loop, now on the database thread.

``test_outbox_nonblocking.py`` moved the evaluation's writes and the dispatcher off the
loop; three callers were left on it: the silences API's writes, the alerts-topic
consumer's look at which deliveries are still pending (every poll and every finished
delivery), and the web UI's read of the outbox's rows. Each waited, on the loop, for
another process's lock on the file: a write for SQLite's busy timeout, a read behind a
write of the same connection that was waiting so (SQLite serialises the calls on one
connection). Meanwhile no Kafka heartbeat, fetch, HTTP request or delivery ran.

Each test holds the file's write lock from a second connection (as another instance
sharing the file does), with the busy timeout cut to 0.6 s, and a ticker coroutine
measures the longest time the loop stood still: about the busy timeout before, a few
ticks' worth now. Real parts: the SQLite file, the aiohttp servers, a local HTTP receiver;
the alerts topic is the stand-in consumer of ``test_alert_log_handover.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from alert_receivers import Hold, RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting import database
from monitor.alerting.alert_log import AlertLogConsumer
from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.alerting.outbox import Outbox
from monitor.clock import SystemClock
from monitor.config import parse_config
from monitor.errors import StateError
from monitor.service_metrics import ServiceMetrics
from monitor.silences_api import register_routes
from monitor.ui.history import DriftHistory
from monitor.ui.web import UiRoutes
from tests.test_alert_log_handover import TOPIC, TP0, FakeConsumer, _record

TOKEN = "s3cret-token"
#: SQLite's busy timeout in these tests: the stall the old code showed, per blocked call.
BUSY_MS = 600
#: The longest the loop may stand still: a few ticks on a loaded two-core machine, well
#: under the busy timeout.
MAX_GAP = 0.3


class Ticker:
    """A coroutine ticking every 20 ms; ``longest_gap`` says how long the loop stood still,
    counting the time since the last tick at :meth:`stop` (a stall at the end is one too)."""

    def __init__(self) -> None:
        self.longest_gap = 0.0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.02)
            self._gap(loop.time())

    def _gap(self, now: float) -> None:
        self.longest_gap = max(self.longest_gap, now - self._last)
        self._last = now

    def start(self) -> None:
        self._last = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._gap(asyncio.get_running_loop().time())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture(autouse=True)
def _short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", BUSY_MS)


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds the file's write lock until the block ends (or it is
    rolled back earlier)."""
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield holder
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


async def busy_database(alerts: AlertService) -> asyncio.Task[list[bool]]:
    """An outbox write on the alert service's database thread (an alerts-topic hand-off,
    here of nothing: its transaction all the same), waiting out the lock held on the file
    for the busy timeout; until it gives up, every other call on the connection waits
    behind it. Only that thread may use the connection: a call from any other thread
    waits for the connection's mutex, and SQLite's calls that take it while Python holds
    the GIL (binding a parameter) stall every thread of the process."""
    task = asyncio.create_task(alerts.hand_off_async([]))
    await asyncio.sleep(0.05)  # inside SQLite's busy wait (bounded: 0.6 s in all)
    return task


async def gave_up(write: asyncio.Task[list[bool]]) -> None:
    """The busy write's end: it gives up once the busy timeout runs out."""
    with contextlib.suppress(StateError):
        await asyncio.wait_for(write, 5)


def _service(tmp_path: Path, receivers: dict[str, Any] | None = None, **kw: Any) -> AlertService:
    config = AlertingConfig.model_validate({"receivers": receivers or {}})
    return AlertService(
        config,
        registry=CollectorRegistry(),
        clock=SystemClock(),
        outbox_path=str(tmp_path / "outbox.sqlite"),
        rng=random.Random(1),
        **kw,
    )


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_silence_writes_wait_for_a_locked_file_off_the_loop(tmp_path: Path) -> None:
    """A silence created and expired while another process holds the file's lock: the
    loop keeps turning, and the write lands once the lock is released (here by the loop
    itself after a few ticks: on the old code that could not happen, the write gave up
    after the busy timeout and the request was a 503)."""
    svc = _service(tmp_path)
    await svc.start()
    app = web.Application()
    register_routes(app, svc, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    loop = asyncio.get_running_loop()
    try:
        async with served(app) as url, aiohttp.ClientSession() as http:
            for method, path, body in (
                ("POST", "/api/silences", {"matchers": {"model": "churn"}, "duration_seconds": 60}),
                ("DELETE", None, None),
            ):
                if path is None:
                    (made,) = [s for s in svc.list_silences() if s.source == "api"]
                    path = f"/api/silences/{made.id}"
                ticker = Ticker()
                with write_locked(tmp_path / "outbox.sqlite") as holder:
                    ticker.start()
                    loop.call_later(0.2, holder.execute, "ROLLBACK")
                    async with http.request(method, url + path, json=body, headers=auth) as r:
                        status = r.status
                    await ticker.stop()
                assert ticker.longest_gap < MAX_GAP, (
                    f"{method} stalled the event loop for {ticker.longest_gap:.2f} s"
                )
                assert status in (200, 201), status
            (expired,) = [s for s in svc.list_silences(include_expired=True) if s.source == "api"]
            assert expired.ends_at <= svc.now()  # in force in memory once persisted
            assert not [s for s in svc.list_silences() if s.source == "api"]
    finally:
        await svc.stop()
    # Persisted: a restart reads the expired silence back.
    again = _service(tmp_path)
    await again.start()
    try:
        assert [s.id for s in again.list_silences(include_expired=True)] == [expired.id]
    finally:
        await again.stop()


async def test_the_alerts_consumer_looks_at_pending_deliveries_off_the_loop(
    tmp_path: Path,
) -> None:
    """A record handed off and being delivered: every poll, the consumer asks the outbox
    which of its deliveries are still pending. With the connection busy behind another
    process's lock, that read stood the loop still for the busy timeout."""
    fake = FakeConsumer({TP0: [_record(TP0, 0, "k-a")]})
    release = asyncio.Event()
    async with RecordingReceiver() as rx:
        rx.script(Hold(release))
        alerts = _service(
            tmp_path,
            {"hook": {"type": "webhook", "url": rx.url}},
            poll_interval_seconds=0.05,
            spool=True,
            persist_state=False,
        )
        await alerts.start()
        kafka = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9", "group_id": "g"}}).kafka
        consumer = AlertLogConsumer(
            kafka, TOPIC, alerts, CollectorRegistry(), clock=SystemClock(), poll_ms=10,
            consumer_factory=lambda **_: fake,
        )  # fmt: skip
        ticker = Ticker()
        try:
            await consumer.start()
            await rx.wait_for_requests(1)  # handed off, pending: the consumer looks each poll
            fake.polled.clear()
            await asyncio.wait_for(fake.polled.wait(), 5)
            with write_locked(tmp_path / "outbox.sqlite"):
                ticker.start()
                await gave_up(await busy_database(alerts))
                await ticker.stop()
            assert ticker.longest_gap < MAX_GAP, (
                f"the event loop stood still for {ticker.longest_gap:.2f} s"
            )
            release.set()  # delivered: committed past it
            for _ in range(200):
                if fake.committed.get(TP0) == 1:
                    break
                await asyncio.sleep(0.01)
            assert fake.committed == {TP0: 1}
        finally:
            release.set()
            await consumer.stop(grace_seconds=0)
            await alerts.stop(grace_seconds=0)


class _Service:
    """What the UI reads of the service (``monitor.ui.web.MonitorService``): no models,
    the real alert service."""

    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts
        self.metrics = ServiceMetrics(CollectorRegistry())
        self.models: dict[str, Any] = {}

    def status(self) -> dict[str, Any]:
        return {"models": {}}


async def test_the_ui_reads_the_outbox_off_the_loop(tmp_path: Path) -> None:
    """The overview (page and API) lists the outbox's deliveries: read on the loop, it
    waited there behind the connection's write held up by another process's lock."""
    alerts = _service(tmp_path)
    await alerts.start()
    app = web.Application()
    UiRoutes(_Service(alerts), DriftHistory(size=3, max_columns=2), False).register(app)  # type: ignore[arg-type]
    try:
        async with served(app) as url, aiohttp.ClientSession() as http:
            for path in ("/api/overview", "/"):
                ticker = Ticker()
                with write_locked(tmp_path / "outbox.sqlite"):
                    ticker.start()
                    write = await busy_database(alerts)
                    async with http.get(url + path) as r:
                        assert r.status == 200, await r.text()
                    await gave_up(write)
                    await ticker.stop()
                assert ticker.longest_gap < MAX_GAP, (
                    f"GET {path} stalled the event loop for {ticker.longest_gap:.2f} s"
                )
    finally:
        await alerts.stop()


async def test_start_withdraws_a_previous_runs_pending_rows_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the Kafka state backend (``spool``), :meth:`AlertService.start` withdraws the
    rows a previous run left pending (their owner delivers them from the alerts topic): a
    write. On the loop it waited for another process's lock on the file for the whole busy
    timeout, then gave up and the start failed; the loop could not even run the lock's
    release scheduled on it. Now the loop turns meanwhile, and the start succeeds once the
    lock is released. The other process takes the lock right after the outbox is opened
    (before, the open itself waits for it, off the loop)."""
    previous = _service(tmp_path, spool=True, persist_state=False)
    await previous.start()  # the file exists, in WAL mode, as after any earlier run
    await previous.stop(grace_seconds=0)
    path = tmp_path / "outbox.sqlite"
    holder = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    opened = threading.Event()
    real_open = Outbox.open

    def open_then_locked(cls: type[Outbox], *args: Any, **kw: Any) -> Outbox:
        outbox = real_open(*args, **kw)
        holder.execute("BEGIN IMMEDIATE")
        opened.set()
        return outbox

    monkeypatch.setattr(Outbox, "open", classmethod(open_then_locked))
    alerts = _service(tmp_path, spool=True, persist_state=False)
    loop = asyncio.get_running_loop()
    ticker = Ticker()
    try:
        ticker.start()
        starting = asyncio.create_task(alerts.start())
        assert await asyncio.to_thread(opened.wait, 5)
        loop.call_later(0.2, holder.execute, "ROLLBACK")
        await asyncio.wait_for(starting, 5)
        await ticker.stop()
        assert ticker.longest_gap < MAX_GAP, (
            f"start() stalled the event loop for {ticker.longest_gap:.2f} s"
        )
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        await alerts.stop(grace_seconds=0)


async def test_a_restored_models_alert_state_does_not_touch_the_outbox(tmp_path: Path) -> None:
    """The monitor service keeps alert state in its checkpoints (``persist_state=False``):
    adopting a restored model's alert state (``MonitorService._model`` calling
    :meth:`AlertService.set_state`) writes nothing to the outbox, so it cannot wait on the
    loop for a lock on the outbox file. A contract: it stalls the loop if that changes."""
    from monitor.service import MonitorService
    from monitor.store import SQLiteStateStore
    from tests.test_alert_state_restore import MODEL, _events, _raw

    store = SQLiteStateStore(tmp_path / "state.sqlite")
    first = MonitorService(parse_config(_raw(tmp_path), base_dir=tmp_path), store=store)
    first.store = store
    _events(first, 0, 150)
    first.checkpoint()
    service = MonitorService(parse_config(_raw(tmp_path), base_dir=tmp_path), store=store)
    service.store = store
    await service.alerts.start()
    ticker = Ticker()
    try:
        with write_locked(tmp_path / "outbox.sqlite"):
            ticker.start()
            service._model(MODEL)  # restored: its alert state adopted while the file is locked
            await asyncio.sleep(0.05)
            await ticker.stop()
        assert service.models[MODEL].events_total == 150
        assert ticker.longest_gap < MAX_GAP, (
            f"the restore stalled the event loop for {ticker.longest_gap:.2f} s"
        )
    finally:
        await service.alerts.stop(grace_seconds=0)
        store.close()
