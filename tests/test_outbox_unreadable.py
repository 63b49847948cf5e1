"""A row of the alert outbox this build cannot read is said, not only marked dead.

After a rollback the outbox may hold rows a newer release wrote (a page cap's ``summary`` in
a release before page caps; a later release's new kind of notification in this one). Such
a row is marked ``dead`` so that it blocks nothing; that was all: no log line, no metric,
and the pages it held were lost without a trace. Now each is counted in
``monitor_notifications_total{outcome="dead"}`` and said in one WARNING per receiver and
turn; the readable rows are delivered as before. Real local HTTP receiver, real SQLite file.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import httpx
import pytest
from alert_receivers import RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting.alert_metrics import AlertMetrics
from monitor.alerting.config import AlertingConfig
from monitor.alerting.dispatcher import Dispatcher
from monitor.alerting.outbox import Outbox
from monitor.alerting.receivers import build_receiver
from monitor.clock import SystemClock
from tests.test_outbox import note
from tests.test_outbox_claims import wait_until


async def test_a_row_of_a_newer_release_is_counted_and_logged_and_the_rest_delivered(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox.open(tmp_path / "outbox.sqlite")
    now = SystemClock().time()
    outbox.enqueue("hook", note("k-future", fp="fp-a"), now=now, deadline_at=now + 600)
    outbox.enqueue("hook", note("k-now", fp="fp-b"), now=now, deadline_at=now + 600)
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    (stored,) = db.execute("SELECT payload FROM outbox WHERE idempotency_key = 'k-future'")
    payload = json.loads(stored[0])
    payload["action"] = "digest"  # a kind of notification of a release after this one
    with db:
        db.execute(
            "UPDATE outbox SET payload = ? WHERE idempotency_key = 'k-future'",
            (json.dumps(payload),),
        )
    db.close()
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx, httpx.AsyncClient() as client:
        config = AlertingConfig.model_validate(
            {"receivers": {"hook": {"type": "webhook", "url": rx.url}}, "delivery": {}}
        )
        hook = build_receiver("hook", config.receivers["hook"], client, SystemClock())
        receivers = {"hook": hook}
        d = Dispatcher(
            outbox,
            receivers,
            delivery=config.delivery,
            metrics=AlertMetrics(registry, receivers),
            clock=SystemClock(),
            poll_interval=0.05,
        )
        with caplog.at_level(logging.WARNING, logger="monitor.alerting.dispatcher"):
            await d.start()
            try:
                await wait_until(lambda: outbox.counts() == {"delivered": 1, "dead": 1})
            finally:
                await d.stop()
    assert [r.headers["webhook-id"] for r in rx.requests] == ["k-now"]
    dead = registry.get_sample_value(
        "monitor_notifications_total", {"receiver": "hook", "outcome": "dead"}
    )
    assert dead == 1
    (line,) = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert "1 alert outbox row(s) for hook" in line and "'digest'" in line
    outbox.close()
