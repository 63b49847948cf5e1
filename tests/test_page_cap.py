"""Storm control: a receiver's page cap folds the new incidents past it into one summary.

N models drifting at once paged N times (one incident per model). With ``page_cap`` a
receiver is paged for at most ``max_incidents`` new incidents per window; the rest are
recorded in the outbox, folded, and sent as one summary; the paged incidents' updates and
resolves go out as before, the folded ones' are folded too. Pure decisions with ``now``;
the outbox with explicit times; end to end through a real local HTTP receiver.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from alert_receivers import RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.alerting.notification import Notification, SignalEvidence
from monitor.alerting.outbox import FOLDED, SUMMARISED, Outbox
from monitor.alerting.page_cap import (
    MAX_LISTED,
    PageCap,
    admits,
    summary_due_at,
    summary_fingerprint,
    summary_notification,
)
from monitor.alerting.slack import slack_message
from monitor.clock import SystemClock
from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.signals import EvaluationContext, Signal


def note(model: str, action: str = "fire", start: float = 1000.0, seq: int = 0) -> Notification:
    fp = f"fp{abs(hash(model)) % 10**12:012d}"
    return Notification(
        idempotency_key=f"{fp}-{round(start * 1000)}-{seq}-{action}",
        fingerprint=fp,
        action=action,  # type: ignore[arg-type]
        status="resolved" if action == "resolve" else "firing",
        model=model,
        model_version=None,
        group={"model": model},
        severity="critical",
        started_at=start,
        evaluated_at=start,
        window_start=start - 60,
        window_end=start,
        window_events=100,
        signals=(SignalEvidence("drift", "income", "critical", 0.4, 0.2, "psi"),),
    )


# -- the pure core ---------------------------------------------------------------------------


def test_admits_counts_only_the_window() -> None:
    cap = PageCap(max_incidents=3, window_seconds=100)
    assert admits(cap, [], now=0.0)
    assert admits(cap, [10.0, 20.0], now=50.0)
    assert not admits(cap, [10.0, 20.0, 30.0], now=50.0)
    assert admits(cap, [10.0, 20.0, 30.0], now=110.0)  # the first left the window


def test_summary_waits_for_the_storm_then_the_group_interval() -> None:
    cap = PageCap(max_incidents=1, summary_wait_seconds=30)
    assert summary_due_at(cap, 1000.0, None, 300.0) == 1030.0
    assert summary_due_at(cap, 1000.0, 950.0, 300.0) == 1250.0
    assert summary_due_at(cap, 1000.0, 100.0, 300.0) == 1030.0


def test_a_summary_is_bounded_and_its_names_are_escaped_for_slack() -> None:
    hostile = ["<!channel>", "a\x00b\u202e", "x" * 5000, *(f"m{i}" for i in range(40))]
    folded = [(i + 1, 100.0 + i, note(m)) for i, m in enumerate(hostile)]
    cap = PageCap(max_incidents=2)
    s = summary_notification("pager", cap, folded, now=500.0)
    assert s.action == "summary" and s.status == "firing"
    assert s.idempotency_key == f"{summary_fingerprint('pager')}-1-0-summary"
    assert summary_notification("pager", cap, folded, now=900.0).idempotency_key == (
        s.idempotency_key
    )  # the same incidents, the same key
    assert len(s.signals) == MAX_LISTED and s.window_events == len(hostile)
    assert s.reason is not None and "and 23 more" in s.reason and len(s.reason) < 4000
    assert all(len(x.subject) <= 83 and x.subject.isprintable() for x in s.signals)
    assert s.summary().startswith("[FIRING:critical] 43 more incidents past the page cap:")
    body = slack_message(s)
    mrkdwn = [body["text"]]  # what Slack parses for mentions (a header is plain text)
    for block in body["blocks"]:
        parts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        mrkdwn.extend(p["text"] for p in parts if p and p.get("type") == "mrkdwn")
    text = "\n".join(mrkdwn)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text  # cannot ping
    assert "… and 33 more" in text  # 10 shown in Slack, 43 in all
    assert Notification.decode(s.encode()) == s  # stored and read back as it was


# -- the outbox (explicit times, no sleeps) --------------------------------------------------


def test_the_cap_folds_new_incidents_and_their_later_notifications(tmp_path: Path) -> None:
    caps = {"pager": PageCap(max_incidents=2, window_seconds=3600, summary_wait_seconds=30)}
    path = tmp_path / "o.db"
    outbox = Outbox.open(path, page_caps=caps)
    t = 10_000.0
    models = [f"m{i}" for i in range(5)]
    for m in models:  # five models drift at once; chat has no cap
        outbox.commit_evaluation([("pager", note(m)), ("chat", note(m))], now=t, deadline_at=t + 99)
    assert outbox.counts() == {"pending": 7, FOLDED: 3}
    assert sorted(outbox.take_folded()) == [("pager", "page_cap")] * 3
    # Paged incidents keep their updates and resolve; folded ones' are folded too.
    for m in models:
        outbox.commit_evaluation(
            [("pager", note(m, "resolve", seq=1))], now=t + 5, deadline_at=t + 99
        )
    rows = {r["idempotency_key"]: r["state"] for r in outbox.rows("pager")}
    resolves = [rows[note(m, "resolve", seq=1).idempotency_key] for m in models]
    assert resolves == ["pending", "pending", SUMMARISED, SUMMARISED, SUMMARISED]
    assert sorted(outbox.take_folded()) == [("pager", "folded_incident")] * 3
    # The summary waits summary_wait_seconds for the rest of the storm, then goes out once.
    assert outbox.summarise("pager", now=t + 10, interval=300, deadline_at=t + 99) == t + 30
    assert outbox.summarise("pager", now=t + 30, interval=300, deadline_at=t + 99) is None
    summaries = [r for r in outbox.rows("pager") if r["idempotency_key"].endswith("-summary")]
    assert len(summaries) == 1 and summaries[0]["state"] == "pending"
    assert outbox.counts()[SUMMARISED] == 6 and FOLDED not in outbox.counts()
    (row,) = [r for r in outbox.due(t + 30, 100, receiver="pager") if r.id == summaries[0]["id"]]
    assert [s.subject for s in row.notification.signals] == ["m2", "m3", "m4"]
    assert outbox.summarise("pager", now=t + 31, interval=300, deadline_at=t + 99) is None
    outbox.close()

    # A restart keeps the cap: the outbox is its state. Two paged within the hour: folded.
    outbox = Outbox.open(path, page_caps=caps)
    outbox.commit_evaluation([("pager", note("late", start=2000.0))], now=t + 60, deadline_at=0)
    assert outbox.take_folded() == [("pager", "page_cap")]
    # ...and the next summary comes a group_interval after the first, not 30 s after it.
    assert outbox.summarise("pager", now=t + 100, interval=300, deadline_at=0) == t + 330
    # An hour on, the window has room again.
    outbox.commit_evaluation([("pager", note("later", start=3000.0))], now=t + 3700, deadline_at=0)
    assert outbox.take_folded() == []
    # A replayed enqueue is dropped as before, folded or not.
    assert outbox.commit_evaluation([("pager", note("m4"))], now=t + 3800, deadline_at=0) == [False]
    outbox.close()


def test_an_escalation_to_a_capped_pager_is_a_new_incident_for_it(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "o.db", page_caps={"pager": PageCap(max_incidents=1)})
    outbox.commit_evaluation([("pager", note("a"))], now=100.0, deadline_at=999.0)
    # b's warning fire went to chat only; its critical update is the pager's first of it.
    outbox.commit_evaluation([("chat", note("b"))], now=100.0, deadline_at=999.0)
    outbox.commit_evaluation([("pager", note("b", "update", seq=1))], now=110.0, deadline_at=999.0)
    assert outbox.take_folded() == [("pager", "page_cap")]
    outbox.close()


def test_retraining_triggers_are_never_capped(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "o.db", page_caps={"hook": PageCap(max_incidents=1)})
    items = [("hook", note(f"m{i}", "retrain")) for i in range(3)]
    outbox.commit_evaluation(items, now=100.0, deadline_at=999.0)
    assert outbox.counts() == {"pending": 3}
    outbox.close()


# -- configuration ---------------------------------------------------------------------------


def _config(page_cap: Any, receiver_type: str = "pagerduty", **alerting: Any) -> Any:
    receiver: dict[str, Any] = {"type": receiver_type, "page_cap": page_cap}
    if receiver_type == "pagerduty":
        receiver["routing_key"] = "k"
    else:
        receiver["url"] = "http://127.0.0.1:9093"
    return parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:9092", "predictions_topic": "p"},
            "alerting": {"receivers": {"pager": receiver}, **alerting},
        }
    )


@pytest.mark.parametrize(
    ("page_cap", "extra", "receiver_type", "says"),
    [
        ({"max_incidents": 0}, {}, "pagerduty", "max_incidents: Input should be greater"),
        ({"max_incidents": True}, {}, "pagerduty", "not the boolean"),
        ({}, {}, "pagerduty", "max_incidents: Field required"),
        ({"max_incidents": 3, "window_seconds": 5}, {}, "pagerduty", "window_seconds"),
        ({"max_incidents": 3, "summary_wait_seconds": -1}, {}, "pagerduty", "summary_wait"),
        ({"max_incidents": 3, "per_hour": 1}, {}, "pagerduty", "per_hour"),
        (
            {"max_incidents": 3, "window_seconds": 86400},
            {"delivery": {"retention_seconds": 3600}},
            "pagerduty",
            "must be <= delivery.retention_seconds",
        ),
        ({"max_incidents": 3}, {}, "alertmanager", "Alertmanager groups and paces"),
    ],
)
def test_nonsense_page_caps_are_refused_with_the_field_and_why(
    page_cap: Any, extra: dict[str, Any], receiver_type: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _config(page_cap, receiver_type, **extra)
    assert says in str(err.value), str(err.value)


def test_no_cap_by_default() -> None:
    config = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:9092", "predictions_topic": "p"},
            "alerting": {"receivers": {"pager": {"type": "pagerduty", "routing_key": "k"}}},
        }
    )
    assert config.alerting.page_caps() == {}
    (cap,) = _config({"max_incidents": 4}).alerting.page_caps().values()
    assert (cap.max_incidents, cap.window_seconds, cap.summary_wait_seconds) == (4, 3600, 30)


# -- end to end: a real HTTP receiver ----------------------------------------------------------


def _evaluation(model: str, severity: str, seq: int) -> tuple[EvaluationContext, list[Signal]]:
    now = time.time()
    ctx = EvaluationContext(model, "1", now, now - 600, now - 1, 1000, 9000, seq)
    value = 0.4 if severity != "ok" else 0.01
    return ctx, [Signal(model, "drift", "income", severity, value, 0.2, "psi", {})]  # type: ignore[arg-type]


async def test_a_storm_of_drifting_models_pages_the_cap_and_one_summary(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx:
        config = AlertingConfig.model_validate(
            {
                "receivers": {
                    "hook": {
                        "type": "webhook",
                        "url": rx.url,
                        "page_cap": {"max_incidents": 3, "summary_wait_seconds": 0.5},
                    }
                },
                "rules": [{"kinds": ["drift"], "resolve_after": 1}],
                "delivery": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.05},
            }
        )
        service = AlertService(
            config,
            registry=registry,
            clock=SystemClock(),
            outbox_path=str(tmp_path / "o.db"),
            rng=random.Random(1),
            poll_interval_seconds=0.05,
        )
        await service.start()
        try:
            models = [f"model-{i}" for i in range(10)]
            for m in models:  # ten models drift at once, each its own incident
                await service.submit_async(*_evaluation(m, "critical", 1))
            await rx.wait_for_requests(4, within=10)
            await asyncio.sleep(1.0)  # no further page would come within this
            actions = [r.json["action"] for r in rx.requests]
            assert sorted(actions) == ["fire", "fire", "fire", "summary"], actions
            summary = next(r.json for r in rx.requests if r.json["action"] == "summary")
            fired = {r.json["model"] for r in rx.requests if r.json["action"] == "fire"}
            listed = {s["subject"] for s in summary["signals"]}
            assert fired | listed == set(models) and not fired & listed
            assert summary["summary"].startswith("[FIRING:critical] 7 more incidents")

            for m in models:  # all resolve: the paged three are closed, the rest folded
                await service.submit_async(*_evaluation(m, "ok", 2))
            await rx.wait_for_requests(7, within=10)
            await asyncio.sleep(0.5)
            resolved = {r.json["model"] for r in rx.requests if r.json["action"] == "resolve"}
            assert resolved == fired and len(rx.requests) == 7
            # Nothing lost: every incident's fire and resolve is in the outbox.
            assert service.outbox.counts() == {"delivered": 7, SUMMARISED: 14}

            def suppressed(reason: str) -> float | None:
                return registry.get_sample_value(
                    "monitor_alert_notifications_suppressed_total",
                    {"receiver": "hook", "reason": reason},
                )

            assert suppressed("page_cap") == 7 and suppressed("folded_incident") == 7
        finally:
            await service.stop(grace_seconds=1)
