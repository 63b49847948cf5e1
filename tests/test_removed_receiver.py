"""Rows pending for a receiver taken out of the config do not wait for ever.

The dispatcher delivers to the configured receivers only, so a notification still pending
for a receiver the operator removed (it was down, then replaced) stayed pending for good:
never sent, never purged, and ``monitor_outbox_oldest_undelivered_age_seconds`` grew
without end, so ``OutboxBacklog`` paged after fifteen minutes and never resolved. Such
rows are now marked dead at start, counted and said once per receiver; and a removed
receiver that holds an incident's page without its resolve is named, so that someone
closes it there. Real SQLite outbox,
real local HTTP receivers, an injected clock.
"""

from __future__ import annotations

import logging

import pytest
from alert_receivers import RecordingReceiver, Reply
from prometheus_client import CollectorRegistry
from test_alert_lifecycle import T0, WALL0, config, evaluation, service, wait_until

from monitor.clock import ManualClock


async def test_rows_pending_for_a_removed_receiver_are_marked_dead_at_start(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    clock = ManualClock(WALL0)
    async with RecordingReceiver() as chat, RecordingReceiver(Reply(503)) as pager:
        both = {
            "chat": {"type": "webhook", "url": chat.url},
            "pager": {"type": "webhook", "url": pager.url},
        }
        first = service(config(both), path, clock)
        await first.start()
        try:
            first.submit(*evaluation(T0, income="critical"))
            await chat.wait_for_requests(1)
            await pager.wait_for_requests(1)  # refused (503): retried later, still pending
            await wait_until(lambda: first.outbox.depth() == {"pager": 1})
        finally:
            await first.stop()

        clock.advance(3600.0)  # "pager" is taken out of the config
        registry = CollectorRegistry()
        second = service(config({"chat": both["chat"]}), path, clock, registry=registry)
        with caplog.at_level(logging.WARNING, logger="monitor"):
            await second.start()
        try:
            outbox = second.outbox
            await wait_until(lambda: outbox.depth() == {})
            assert outbox.oldest_undelivered_age(clock.time()) is None
            assert outbox.counts() == {"delivered": 1, "dead": 1}
            dead = {"receiver": "pager", "outcome": "dead"}
            assert registry.get_sample_value("monitor_notifications_total", dead) == 1
        finally:
            await second.stop()
    said = [r.getMessage() for r in caplog.records if "no longer in the config" in r.message]
    assert len(said) == 1 and "pager" in said[0] and "1 alert notification" in said[0], said
    assert pager.url not in said[0]  # a receiver is named, never its URL

    # "chat" taken out in turn: it holds the incident's page, whose resolve can no longer
    # reach it. The monitor says so, once per start, rather than leave it to be found there.
    caplog.clear()
    third = service(config({"pager": both["pager"]}), path, clock)
    with caplog.at_level(logging.WARNING, logger="monitor"):
        await third.start()
    await third.stop()
    said = [r.getMessage() for r in caplog.records if "no longer in the config" in r.message]
    assert said == [
        "receiver chat, which is no longer in the config, was paged for 1 incident(s) it never "
        "got the resolve of: the monitor cannot reach it any more, so close them there"
    ]
