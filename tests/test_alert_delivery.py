"""End-to-end delivery through AlertService against real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from alert_receivers import Hang, RecordingReceiver, Reply
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.alerting.outbox import Outbox
from monitor.clock import Clock, ManualClock, SystemClock
from monitor.errors import ServiceStateError
from monitor.signals import EvaluationContext, Signal
from monitor.silences_api import register_routes

FAST = {
    "initial_backoff_seconds": 0.02,
    "max_backoff_seconds": 0.05,
    "deadline_seconds": 30,
}


def make_config(receivers: dict[str, Any], **extra: Any) -> AlertingConfig:
    return AlertingConfig.model_validate(
        {"receivers": receivers, "delivery": {**FAST, **extra.pop("delivery", {})}, **extra}
    )


def make_service(
    config: AlertingConfig,
    path: Path,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
) -> AlertService:
    return AlertService(
        config,
        registry=registry or CollectorRegistry(),
        clock=clock or SystemClock(),
        outbox_path=str(path),
        rng=random.Random(1),
        poll_interval_seconds=0.05,
    )


class Feed:
    """Produces evaluations of one model at increasing (real) times."""

    def __init__(self, model: str = "churn") -> None:
        self.model = model
        self.seq = 0

    def __call__(self, **severities: str) -> tuple[EvaluationContext, list[Signal]]:
        self.seq += 1
        now = time.time()
        ctx = EvaluationContext(self.model, "7", now, now - 600, now - 1, 1000, 9000, self.seq)
        signals = [
            Signal(self.model, "drift", f, s, 0.4 if s != "ok" else 0.01, 0.2, "psi", {})  # type: ignore[arg-type]
            for f, s in severities.items()
        ]
        return ctx, signals


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
async def rx() -> AsyncIterator[RecordingReceiver]:
    async with RecordingReceiver() as receiver:
        yield receiver


async def test_500_then_200_is_delivered_once_after_one_retry(rx, tmp_path):
    registry = CollectorRegistry()
    svc = make_service(
        make_config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db", registry
    )
    rx.script(Reply(500))
    await svc.start()
    try:
        feed = Feed()
        sent = svc.submit(*feed(income="warning"))
        assert [n.action for n in sent] == ["fire"]
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        assert len(rx.requests) == 2
        assert rx.requests[0].headers["webhook-id"] == rx.requests[1].headers["webhook-id"]
        assert rx.requests[1].headers["webhook-id"] == sent[0].idempotency_key
        assert (
            metric(registry, "monitor_notifications_total", receiver="hook", outcome="retried") == 1
        )
        assert (
            metric(registry, "monitor_notifications_total", receiver="hook", outcome="delivered")
            == 1
        )
        assert metric(registry, "monitor_notification_delivery_seconds_count", receiver="hook") == 1
    finally:
        await svc.stop()


async def test_429_retry_after_is_honoured(rx, tmp_path):
    svc = make_service(
        make_config({"chat": {"type": "slack", "webhook_url": rx.url}}), tmp_path / "o.db"
    )
    rx.script(Reply(429, headers={"Retry-After": "1"}, body={"error": "rate_limited"}))
    await svc.start()
    try:
        svc.submit(*Feed()(income="critical"))
        await rx.wait_for_requests(2, within=5)
        gap = rx.requests[1].at - rx.requests[0].at
        assert gap >= 0.95, f"retried after {gap:.3f}s despite Retry-After: 1"
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        body = rx.requests[1].json
        assert "text" in body and body["blocks"][0]["type"] == "header"
    finally:
        await svc.stop()


async def test_hanging_receiver_times_out_and_is_retried(rx, tmp_path):
    cfg = make_config({"hook": {"type": "webhook", "url": rx.url, "timeout_seconds": 0.2}})
    svc = make_service(cfg, tmp_path / "o.db")
    rx.script(Hang(2.0))
    await svc.start()
    try:
        svc.submit(*Feed()(income="warning"))
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        assert len(rx.requests) == 2  # the hung one, then the successful retry
        assert len({r.headers["webhook-id"] for r in rx.requests}) == 1
        row = svc.outbox.rows()[0]
        assert row["attempts"] == 2 and "timed out" in row["last_error"]
    finally:
        await svc.stop()


async def test_receiver_down_then_up(rx, tmp_path):
    registry = CollectorRegistry()
    svc = make_service(
        make_config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db", registry
    )
    await rx.go_down()
    await svc.start()
    try:
        svc.submit(*Feed()(income="warning"))

        def retried() -> float:
            return metric(
                registry, "monitor_notifications_total", receiver="hook", outcome="retried"
            )

        await wait_until(lambda: retried() >= 3)
        assert svc.outbox.counts() == {"pending": 1}
        assert metric(registry, "monitor_outbox_depth", receiver="hook") == 1
        await rx.come_up()
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        assert len(rx.requests) == 1
        await wait_until(lambda: metric(registry, "monitor_outbox_depth", receiver="hook") == 0)
    finally:
        await svc.stop()


async def test_killed_mid_retry_then_restarted_delivers_exactly_once(rx, tmp_path):
    path = tmp_path / "o.db"
    cfg = make_config({"hook": {"type": "webhook", "url": rx.url}})
    rx.default = Reply(503)
    feed = Feed()
    evaluation = feed(income="critical")
    first = make_service(cfg, path)
    await first.start()
    sent = first.submit(*evaluation)
    await rx.wait_for_requests(2)
    await first.stop(grace_seconds=0)  # "killed": nothing flushed
    del first
    check = Outbox.open(path)
    assert check.counts() == {"pending": 1}
    check.close()

    before = len(rx.requests)
    rx.default = Reply(200)
    second = make_service(cfg, path)
    await second.start()
    try:
        replay = second.submit(*evaluation)  # the pipeline replays the uncommitted evaluation
        assert replay == []  # state was committed with the enqueue: nothing new to send
        await wait_until(lambda: second.outbox.counts() == {"delivered": 1})
        await asyncio.sleep(0.2)  # give a (buggy) duplicate time to show up
        after = rx.requests[before:]
        assert len(after) == 1
        assert after[0].headers["webhook-id"] == sent[0].idempotency_key
        assert {r.headers["webhook-id"] for r in rx.requests} == {sent[0].idempotency_key}
    finally:
        await second.stop()


async def test_one_incident_pages_once_and_resolves_with_same_dedup_key(rx, tmp_path):
    cfg = make_config(
        {"oncall": {"type": "pagerduty", "routing_key": "R0UT1NG", "url": rx.url}},
        rules=[{"resolve_after": 2}],
    )
    svc = make_service(cfg, tmp_path / "o.db")
    await svc.start()
    try:
        feed = Feed()
        for sev in ["critical", "critical", "ok", "critical", "critical", "ok", "ok", "ok"]:
            svc.submit(*feed(income=sev, age=sev))
        await wait_until(lambda: svc.outbox.counts().get("delivered") == 2)
        await asyncio.sleep(0.1)
        events = [r.json for r in rx.requests]
        assert [e["event_action"] for e in events] == ["trigger", "resolve"]
        assert events[0]["dedup_key"] == events[1]["dedup_key"]
        assert events[0]["routing_key"] == "R0UT1NG"
        assert events[0]["payload"]["severity"] == "critical"
        details = events[0]["payload"]["custom_details"]
        assert sorted(s["subject"] for s in details["signals"]) == ["age", "income"]
    finally:
        await svc.stop()


async def test_resolve_never_overtakes_a_fire_being_retried(rx, tmp_path):
    cfg = make_config(
        {"oncall": {"type": "pagerduty", "routing_key": "k", "url": rx.url}},
        rules=[{"resolve_after": 1}],
    )
    svc = make_service(cfg, tmp_path / "o.db")
    rx.script(Reply(500), Reply(500), Reply(500))
    await svc.start()
    try:
        feed = Feed()
        svc.submit(*feed(income="critical"))
        await rx.wait_for_requests(1)
        svc.submit(*feed(income="ok"))
        await wait_until(lambda: svc.outbox.counts().get("delivered") == 2)
        actions = [r.json["event_action"] for r in rx.requests]
        assert actions == ["trigger"] * 4 + ["resolve"]
    finally:
        await svc.stop()


async def test_escalated_incident_resolves_in_every_receiver_it_paged(rx, tmp_path):
    """Warnings to chat, criticals to the pager only: a warning fire, then a critical update,
    then recovery. Chat got the fire, so it gets the resolve too (it kept a firing warning
    forever: the resolve was routed by the incident's last severity only)."""
    async with RecordingReceiver() as pager:
        cfg = make_config(
            {
                "chat": {"type": "webhook", "url": rx.url},
                "pd": {"type": "pagerduty", "routing_key": "k", "url": pager.url},
            },
            rules=[{"resolve_after": 1}],
            routes=[
                {"match": {"severity": "critical"}, "receivers": ["pd"]},
                {"receivers": ["chat"]},
            ],
        )
        svc = make_service(cfg, tmp_path / "o.db")
        await svc.start()
        try:
            feed = Feed()
            for sev in ["warning", "critical", "ok"]:
                svc.submit(*feed(income=sev))
            await wait_until(lambda: svc.outbox.counts() == {"delivered": 4})
            await asyncio.sleep(0.1)
            assert [(r.json["action"], r.json["status"]) for r in rx.requests] == [
                ("fire", "firing"),
                ("resolve", "resolved"),
            ]
            assert rx.requests[0].json["group"] == rx.requests[1].json["group"]
            assert [r.json["event_action"] for r in pager.requests] == ["trigger", "resolve"]
        finally:
            await svc.stop()


async def test_flapping_signal_does_not_storm(rx, tmp_path):
    svc = make_service(make_config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db")
    await svc.start()
    try:
        feed = Feed()
        for i in range(40):
            svc.submit(*feed(income="warning" if i % 2 == 0 else "ok"))
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        await asyncio.sleep(0.2)
        assert len(rx.requests) == 1
    finally:
        await svc.stop()


async def test_4xx_is_not_retried_and_is_counted(rx, tmp_path):
    registry = CollectorRegistry()
    svc = make_service(
        make_config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db", registry
    )
    rx.script(Reply(400, body={"error": "bad"}))
    await svc.start()
    try:
        svc.submit(*Feed()(income="warning"))
        await wait_until(lambda: svc.outbox.counts() == {"dead": 1})
        await asyncio.sleep(0.2)
        assert len(rx.requests) == 1
        assert (
            metric(registry, "monitor_notifications_total", receiver="hook", outcome="failed") == 1
        )
        assert (
            metric(registry, "monitor_notifications_total", receiver="hook", outcome="retried") == 0
        )
        assert "HTTP 400" in svc.outbox.rows()[0]["last_error"]
    finally:
        await svc.stop()


async def test_deadline_dead_letters(rx, tmp_path):
    registry = CollectorRegistry()
    cfg = make_config({"hook": {"type": "webhook", "url": rx.url}}, delivery={"max_attempts": 3})
    svc = make_service(cfg, tmp_path / "o.db", registry)
    rx.default = Reply(502)
    await svc.start()
    try:
        svc.submit(*Feed()(income="warning"))
        await wait_until(lambda: svc.outbox.counts() == {"dead": 1})
        assert len(rx.requests) == 3
        assert metric(registry, "monitor_notifications_total", receiver="hook", outcome="dead") == 1
    finally:
        await svc.stop()


async def test_silence_suppresses_and_expiry_releases(rx, tmp_path):
    registry = CollectorRegistry()
    svc = make_service(
        make_config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db", registry
    )
    await svc.start()
    try:
        silence = svc.add_silence(ends_at=svc.now() + 3600, model="churn", comment="deploy")
        feed = Feed()
        assert svc.submit(*feed(income="warning")) == []
        assert svc.submit(*feed(income="warning")) == []
        assert (
            metric(registry, "monitor_notifications_total", receiver="hook", outcome="silenced")
            == 1
        )
        svc.expire_silence(silence.id)
        assert [n.action for n in svc.submit(*feed(income="warning"))] == ["fire"]
        await rx.wait_for_requests(1)
        assert rx.requests[0].json["status"] == "firing"
    finally:
        await svc.stop()


async def test_a_silence_created_now_mutes_evaluations_of_older_events(rx, tmp_path):
    """The on-call silences a model; the next evaluations are of events two minutes old
    (event lag). They are muted: silences run on the wall clock they are set on. Judged at
    the evaluations' event time, the silence had not started yet and the model paged."""
    cfg = make_config(
        {
            "hook": {"type": "webhook", "url": rx.url},
            "rt": {"type": "retrain", "url": rx.url},
        },
        retrain_policy={"receiver": "rt", "min_critical_drifted_features": 1},
    )
    registry = CollectorRegistry()
    svc = make_service(cfg, tmp_path / "o.db", registry)
    await svc.start()
    try:
        wall = time.time()
        svc.add_silence(ends_at=wall + 3600, model="churn", comment="known")
        for i in range(3):
            t = wall - 120 + i
            ctx = EvaluationContext("churn", "7", t, t - 600, t, 1000, 9000, i)
            signal = Signal("churn", "drift", "income", "critical", 0.4, 0.2, "psi", {})
            assert svc.submit(ctx, [signal]) == []
        await asyncio.sleep(0.2)
        assert rx.requests == [] and svc.outbox.counts() == {}
        assert (
            metric(registry, "monitor_notifications_total", receiver="hook", outcome="silenced")
            == 1
        )
    finally:
        await svc.stop()


async def test_three_drifted_features_make_one_notification(rx, tmp_path):
    svc = make_service(make_config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db")
    await svc.start()
    try:
        sent = svc.submit(*Feed()(income="warning", age="critical", tenure="warning", region="ok"))
        assert len(sent) == 1
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        body = rx.requests[0].json
        assert sorted(s["subject"] for s in body["signals"]) == ["age", "income", "tenure"]
        assert body["severity"] == "critical" and body["model_version"] == "7"
        assert body["window"]["events"] == 1000
        assert {s["detector"] for s in body["signals"]} == {"psi"}
    finally:
        await svc.stop()


async def test_retrain_trigger_respects_min_interval_and_carries_key(rx, tmp_path):
    registry = CollectorRegistry()
    cfg = make_config(
        {"train": {"type": "retrain", "url": rx.url, "body_template": "airflow", "secret": "t0k"}},
        retrain_policy={
            "receiver": "train",
            "min_critical_drifted_features": 2,
            "min_interval_seconds": 3600,
        },
    )
    clock = ManualClock(time.time())  # the interval runs on the monitor's wall clock
    svc = make_service(cfg, tmp_path / "o.db", registry, clock)
    await svc.start()
    try:
        feed = Feed()
        first = svc.submit(*feed(a="critical", b="critical", c="warning"))
        assert [n.action for n in first] == ["retrain"]
        # The same incident goes on: it was triggered for, so nothing, and nothing suppressed.
        assert svc.submit(*feed(a="critical", b="critical", c="critical")) == []
        for _ in range(3):  # resolve_after 3: the incident ends
            svc.submit(*feed(a="ok", b="ok", c="ok"))
        # A new incident within the interval: held back and counted.
        second = svc.submit(*feed(a="critical", b="critical", c="critical"))
        assert second == []
        assert (
            metric(registry, "monitor_notifications_total", receiver="train", outcome="suppressed")
            == 1
        )
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        (req,) = rx.requests
        assert req.headers["idempotency-key"] == first[0].idempotency_key
        assert req.headers["authorization"] == "Bearer t0k"
        body = req.json
        assert body["dag_run_id"] == first[0].idempotency_key
        assert body["conf"]["model"] == "churn" and body["conf"]["model_version"] == "7"
        assert sorted(e["subject"] for e in body["conf"]["evidence"]) == ["a", "b"]
        assert body["conf"]["data_range"]["events"] == 1000
        # After the interval, the held-back incident (still open) triggers, with its own key.
        clock.advance(3601)
        third = svc.submit(*feed(a="critical", b="critical"))
        assert [n.action for n in third] == ["retrain"]
        assert third[0].idempotency_key != first[0].idempotency_key
    finally:
        await svc.stop()


async def test_state_follows_a_model_to_another_instance(rx, tmp_path):
    cfg = make_config({"hook": {"type": "webhook", "url": rx.url}}, rules=[{"resolve_after": 1}])
    a = make_service(cfg, tmp_path / "a.db")
    b = make_service(cfg, tmp_path / "b.db")
    await a.start()
    feed = Feed()
    fired = a.submit(*feed(income="critical"))
    exported = a.get_state(["churn"])
    await a.stop()
    b.set_state(exported)  # before start: applied at start
    await b.start()
    try:
        assert b.submit(*feed(income="critical")) == []  # already notified: no second page
        resolved = b.submit(*feed(income="ok"))
        assert [n.action for n in resolved] == ["resolve"]
        assert resolved[0].fingerprint == fired[0].fingerprint
        assert resolved[0].started_at == fired[0].started_at
    finally:
        await b.stop()


@pytest.mark.parametrize("persist", [True, False])
async def test_steady_incident_writes_state_only_when_the_service_persists_it(
    rx, tmp_path, persist
):
    # The monitor service keeps alert state in its own checkpoints (persist_state=False):
    # then an incident that fires for hours costs no write, and no fsync, per evaluation.
    cfg = make_config({"hook": {"type": "webhook", "url": rx.url}}, rules=[{"resolve_after": 1}])
    svc = AlertService(
        cfg,
        registry=CollectorRegistry(),
        clock=SystemClock(),
        outbox_path=str(tmp_path / "o.db"),
        poll_interval_seconds=0.05,
        persist_state=persist,
    )
    await svc.start()
    try:
        feed = Feed()
        assert [n.action for n in svc.submit(*feed(income="critical"))] == ["fire"]
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        conn = svc.outbox.connection
        before = conn.total_changes
        for _ in range(5):
            ctx, signals = feed(income="critical")
            # The value moves at every evaluation, as a drift statistic does.
            signals = [replace(sig, value=0.4 + ctx.evaluation_seq / 100) for sig in signals]
            assert svc.submit(ctx, signals) == []
        writes = conn.total_changes - before
        assert writes == (5 if persist else 0)
        assert bool(svc.outbox.load_states()) is persist
        # The hand-over API works either way.
        assert svc.get_state(["churn"])["models"]["churn"]["groups"][0]["notified"] is True
        assert [n.action for n in svc.submit(*feed(income="ok"))] == ["resolve"]
    finally:
        await svc.stop()


async def test_firing_gauge_and_lifecycle_errors(tmp_path):
    registry = CollectorRegistry()
    svc = make_service(make_config({}), tmp_path / "o.db", registry)
    with pytest.raises(ServiceStateError):
        svc.submit(*Feed()(income="warning"))
    await svc.start()
    svc.submit(*Feed()(income="warning", age="critical"))
    assert metric(registry, "monitor_alerts_firing", model="churn", severity="warning") == 1
    assert metric(registry, "monitor_alerts_firing", model="churn", severity="critical") == 1
    await svc.stop()
    await svc.stop()  # idempotent
    with pytest.raises(ServiceStateError):
        svc.submit(*Feed()(income="warning"))


async def test_silence_http_api(tmp_path):
    svc = make_service(make_config({}), tmp_path / "o.db")
    await svc.start()
    apps = []

    async def serve(token: str | None) -> str:
        app = web.Application()
        register_routes(app, svc, token)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        apps.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    try:
        base = await serve("s3cret")
        disabled = await serve(None)
        new = {"matchers": {"model": "churn"}, "duration_seconds": 600, "comment": "deploy"}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{base}/api/silences", json=new)).status_code == 401
            bad = {"Authorization": "Bearer nope"}
            assert (
                await client.post(f"{base}/api/silences", json=new, headers=bad)
            ).status_code == 403
            ok = {"Authorization": "Bearer s3cret"}
            assert (
                await client.post(f"{disabled}/api/silences", json=new, headers=ok)
            ).status_code == 403
            assert (
                await client.post(f"{base}/api/silences", json={"comment": "x"}, headers=ok)
            ).status_code == 400
            created = await client.post(f"{base}/api/silences", json=new, headers=ok)
            assert created.status_code == 201
            sid = created.json()["id"]
            listed = (await client.get(f"{base}/api/silences")).json()["silences"]
            assert [s["id"] for s in listed] == [sid]
            assert (await client.delete(f"{base}/api/silences/{sid}")).status_code == 401
            assert (
                await client.delete(f"{base}/api/silences/{sid}", headers=ok)
            ).status_code == 200
            assert (await client.get(f"{base}/api/silences")).json()["silences"] == []
            assert (await client.delete(f"{base}/api/silences/nope", headers=ok)).status_code == 404
    finally:
        for runner in apps:
            await runner.cleanup()
        await svc.stop()


async def test_a_spooling_service_leaves_a_previous_runs_pending_rows_to_the_alerts_topic(
    rx: RecordingReceiver, tmp_path: Path
) -> None:
    """Kafka backend, restarted after a kill -9 with its directory: the rows its outbox still
    holds were handed off from alerts-topic records that are uncommitted, and whose partition
    may belong to another instance now, which delivers them. Sending them from here too would
    page twice; the records come back here only if the partition does."""
    cfg = make_config({"hook": {"type": "webhook", "url": rx.url}})
    box = Outbox.open(tmp_path / "o.db")
    first = Feed()
    svc = make_service(cfg, tmp_path / "spare.db")  # only to build a real notification
    await svc.start()
    try:
        (n,) = svc.submit(*first(income="critical"))
    finally:
        await svc.stop()
    rx.requests.clear()
    assert box.enqueue("hook", n, now=time.time(), deadline_at=time.time() + 60)
    box.close()
    spooling = AlertService(
        cfg,
        registry=CollectorRegistry(),
        clock=SystemClock(),
        outbox_path=str(tmp_path / "o.db"),
        poll_interval_seconds=0.05,
        spool=True,
    )
    await spooling.start()
    try:
        await asyncio.sleep(0.5)
        assert rx.requests == []
        assert spooling.outbox.counts() == {}
        # Handed off again (this instance owns the partition): delivered once.
        assert spooling.hand_off([("hook", n)]) == [True]
        await rx.wait_for_requests(1)
        assert [r.headers["webhook-id"] for r in rx.requests] == [n.idempotency_key]
    finally:
        await spooling.stop()


async def test_a_huge_model_version_from_the_wire_is_cut_in_every_notification(rx, tmp_path):
    """The model version comes from events, bounded only by the message size (1 MiB): one of
    600 KB went whole into PagerDuty's group and custom_details, an event over its 512 KB
    limit (a permanent 400, the page lost). A notification carries at most 200 characters."""
    from dataclasses import replace

    svc = make_service(
        make_config({"oncall": {"type": "pagerduty", "routing_key": "k", "url": rx.url}}),
        tmp_path / "o.db",
    )
    await svc.start()
    try:
        ctx, signals = Feed()(income="critical")
        version = "7-" + "x" * 600_000
        (sent,) = svc.submit(replace(ctx, model_version=version), signals)
        assert sent.model_version == version[:199] + "…"
        await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
        (req,) = rx.requests
        assert len(req.body) < 20_000
        assert req.json["payload"]["group"] == sent.model_version
    finally:
        await svc.stop()
