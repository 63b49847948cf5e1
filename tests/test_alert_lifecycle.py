"""The alert lifecycle on two clocks: incidents on event time, people's pacing on the wall clock.

Incidents open and close on the data's event time (a replay decides them again with the
same keys); the retraining rate limit runs on the monitor's wall clock, and reminders and
batched updates need their interval passed on it as well as on event time. The wall clock
is an injected :class:`~monitor.clock.ManualClock` that the tests move (no sleeps).
Deliveries go through :class:`~monitor.alerting.engine.AlertService` to real local HTTP
receivers (``tests/alert_receivers.py``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from alert_receivers import RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.clock import ManualClock
from monitor.signals import EvaluationContext, Signal

HOUR = 3600.0
DAY = 24 * HOUR
STEP = 600.0  # event time between evaluations: ten minutes
T0 = 1_700_000_000.0  # event time of the backlog's first evaluation
WALL0 = 1_800_000_000.0  # the monitor's clock when it starts catching up
FAST = {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.05, "deadline_seconds": 30}


def config(receivers: dict[str, Any], **extra: Any) -> AlertingConfig:
    return AlertingConfig.model_validate(
        {"receivers": receivers, "delivery": {**FAST, **extra.pop("delivery", {})}, **extra}
    )


def service(cfg: AlertingConfig, path: Path, clock: ManualClock, **kw: Any) -> AlertService:
    return AlertService(
        cfg,
        registry=kw.pop("registry", None) or CollectorRegistry(),
        clock=clock,
        outbox_path=str(path),
        rng=random.Random(1),
        poll_interval_seconds=0.02,
        **kw,
    )


def evaluation(
    t: float, model: str = "churn", **severities: str
) -> tuple[EvaluationContext, list[Signal]]:
    ctx = EvaluationContext(model, "7", t, t - STEP, t - 1, 1000, 9000)
    signals = [
        Signal(model, "drift", f, s, 0.4 if s != "ok" else 0.01, 0.2, "psi")  # type: ignore[arg-type]
        for f, s in severities.items()
    ]
    return ctx, signals


async def settle(svc: AlertService, clock: ManualClock, within: float = 5.0) -> None:
    """Until the outbox holds nothing pending (delivered or given up).

    The service's manual ``clock`` moves on by a second per check: a retry scheduled (backed
    off) just after the test last moved it becomes due, as it would while a real test waits.
    """

    def done() -> bool:
        clock.advance(1.0)
        return "pending" not in svc.outbox.counts()

    await wait_until(done, within)


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def actions(rx: RecordingReceiver) -> list[str]:
    return [r.json["action"] for r in rx.requests]


@pytest.fixture
async def rx() -> AsyncIterator[RecordingReceiver]:
    async with RecordingReceiver() as receiver:
        yield receiver


# ------------------------------------------------------------- 1. backlog catch-up


async def test_a_day_of_backlog_caught_up_in_minutes_sends_no_reminder(rx, tmp_path):
    clock = ManualClock(WALL0)
    svc = service(config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db", clock)
    await svc.start()
    try:
        # 24 h of event time, one evaluation every ten minutes, caught up at one a second.
        t = T0
        while t <= T0 + DAY:
            svc.submit(*evaluation(t, income="critical"))
            t += STEP
            clock.advance(1.0)
        await settle(svc, clock)
        assert actions(rx) == ["fire"]  # main: a fire and six reminders within 145 s
        # Live again: the reminder comes four hours of the wall clock after the page.
        clock.set(WALL0 + 4 * HOUR - 1)
        assert svc.submit(*evaluation(t, income="critical")) == []
        clock.set(WALL0 + 4 * HOUR)
        assert [n.action for n in svc.submit(*evaluation(t + STEP, income="critical"))] == [
            "repeat"
        ]
        # The backlog's incident still closes on the data's time, and the resolve goes out.
        for i in range(3):
            svc.submit(*evaluation(t + (2 + i) * STEP, income="ok"))
        await settle(svc, clock)
        assert actions(rx) == ["fire", "repeat", "resolve"]
    finally:
        await svc.stop()


async def test_the_reminder_clock_survives_a_restart(rx, tmp_path):
    clock = ManualClock(WALL0)
    cfg = config({"hook": {"type": "webhook", "url": rx.url}})
    svc = service(cfg, tmp_path / "o.db", clock)
    await svc.start()
    svc.submit(*evaluation(T0, income="critical"))
    await settle(svc, clock)
    await svc.stop()
    # Restarted an hour later (wall), with six hours of events waiting: no reminder yet.
    clock.advance(HOUR)
    again = service(cfg, tmp_path / "o.db", clock)
    await again.start()
    try:
        for i in range(1, 37):
            assert again.submit(*evaluation(T0 + i * STEP, income="critical")) == []
        clock.set(WALL0 + 4 * HOUR)
        sent = again.submit(*evaluation(T0 + 37 * STEP, income="critical"))
        assert [n.action for n in sent] == ["repeat"]
        await settle(again, clock)
        assert actions(rx) == ["fire", "repeat"]
    finally:
        await again.stop()


async def test_two_days_of_backlog_retrain_once_until_the_wall_clock_interval_passed(rx, tmp_path):
    clock = ManualClock(WALL0)
    registry = CollectorRegistry()
    cfg = config(
        {"train": {"type": "retrain", "url": rx.url}},
        retrain_policy={"receiver": "train", "min_critical_drifted_features": 2},
    )
    svc = service(cfg, tmp_path / "o.db", clock, registry=registry)
    await svc.start()
    try:
        t = T0
        for _ in range(6):  # incident 1: an hour
            svc.submit(*evaluation(t, a="critical", b="critical"))
            t, _ = t + STEP, clock.advance(1.0)
        for _ in range(3):  # resolve_after 3: it ends
            svc.submit(*evaluation(t, a="ok", b="ok"))
            t, _ = t + STEP, clock.advance(1.0)
        while t < T0 + 2 * DAY:  # incident 2: the rest of two days of event time
            svc.submit(*evaluation(t, a="critical", b="critical"))
            t, _ = t + STEP, clock.advance(1.0)
        await settle(svc, clock)
        assert len(rx.requests) == 1  # main: a second trigger 24 h of event time later
        suppressed = registry.get_sample_value(
            "monitor_notifications_total", {"receiver": "train", "outcome": "suppressed"}
        )
        assert suppressed and suppressed > 0
        # A day of the wall clock after the first trigger, the held-back incident triggers.
        clock.set(WALL0 + DAY)
        sent = svc.submit(*evaluation(t, a="critical", b="critical"))
        assert [n.action for n in sent] == ["retrain"]
        await settle(svc, clock)
        assert len(rx.requests) == 2
        assert rx.requests[0].json["idempotency_key"] != rx.requests[1].json["idempotency_key"]
    finally:
        await svc.stop()


# ------------------------------------------------- 3. event time behind the last trigger


async def test_an_incident_with_older_events_than_the_last_trigger_still_triggers(rx, tmp_path):
    clock = ManualClock(WALL0)
    cfg = config(
        {"train": {"type": "retrain", "url": rx.url}},
        retrain_policy={
            "receiver": "train",
            "min_critical_drifted_features": 2,
            "min_interval_seconds": HOUR,
        },
    )
    svc = service(cfg, tmp_path / "o.db", clock)
    await svc.start()
    try:
        first = svc.submit(*evaluation(T0, a="critical", b="critical"))
        assert [n.action for n in first] == ["retrain"]
        for i in range(1, 4):  # resolve_after 3: incident 1 ends
            svc.submit(*evaluation(T0 + i * STEP, a="ok", b="ok"))
        # Event time moves back a day (a producer's clock, a replayed topic): a new incident
        # whose start is before the last trigger's event time. Not covered by that trigger.
        clock.advance(2 * HOUR)
        t = T0 - DAY
        sent = svc.submit(*evaluation(t, a="critical", b="critical"))
        assert [n.action for n in sent] == ["retrain"]  # main: never triggered
        assert sent[0].started_at == t and sent[0].idempotency_key != first[0].idempotency_key
        # ... and once only, also after a restart (the covered incidents are in the state).
        await svc.stop()
        svc = service(cfg, tmp_path / "o.db", clock)
        await svc.start()
        clock.advance(2 * HOUR)
        assert svc.submit(*evaluation(t + STEP, a="critical", b="critical")) == []
        await settle(svc, clock)
        assert len(rx.requests) == 2
    finally:
        await svc.stop()


# ------------------------------------------------------------- 2. update storms


def test_pacing_batches_updates_and_never_holds_a_resolve_or_an_escalation():
    """The pure policy: features joining one a minute, group_interval 5 min."""
    from monitor.alerting.config import AlertRule
    from monitor.alerting.policy import Pacing, decide

    pacing = Pacing(group_interval=300.0)
    rules = [AlertRule(resolve_after=1)]
    state = None
    sent: list[tuple[float, str, list[str]]] = []

    def step(t: float, **severities: str) -> None:
        nonlocal state
        ctx, signals = evaluation(T0 + t, **severities)
        d = decide(state, signals, ctx, T0 + t, rules=rules, wall=WALL0 + t, pacing=pacing)
        state = d.state
        sent.extend((t, a.kind, [s.subject for s in a.signals]) for a in d.actions)

    names = [f"f{i}" for i in range(10)]
    for i in range(10):  # one more feature drifts each minute
        step(60.0 * i, **{n: ("warning" if j <= i else "ok") for j, n in enumerate(names)})
    assert [(t, k) for t, k, _ in sent] == [(0.0, "fire"), (300.0, "update")]
    for t in (600.0, 660.0):  # nothing new: the held changes go out at the next interval
        step(t, **dict.fromkeys(names, "warning"))
    assert sent[-1] == (600.0, "update", names)
    step(700.0, **{**dict.fromkeys(names, "warning"), "f0": "critical"})  # escalation: at once
    assert sent[-1][:2] == (700.0, "update")
    step(710.0, **dict.fromkeys(names, "ok"))  # resolve: at once
    assert sent[-1][:2] == (710.0, "resolve") and len(sent) == 5


async def test_features_joining_one_at_a_time_page_once_per_group_interval(rx, tmp_path):
    clock = ManualClock(WALL0)
    svc = service(config({"hook": {"type": "webhook", "url": rx.url}}), tmp_path / "o.db", clock)
    await svc.start()
    try:
        names = [f"f{i}" for i in range(8)]
        for i in range(8):  # live: one more feature every 30 s of both clocks
            svc.submit(
                *evaluation(
                    T0 + 30 * i, **{n: ("warning" if j <= i else "ok") for j, n in enumerate(names)}
                )
            )
            clock.advance(30)
        await settle(svc, clock)
        assert actions(rx) == ["fire"]  # main: a fire and seven updates in four minutes
        clock.set(WALL0 + 300)  # the default group_interval: 5 min after the fire
        svc.submit(*evaluation(T0 + 300, **dict.fromkeys(names, "warning")))
        await settle(svc, clock)
        assert actions(rx) == ["fire", "update"]
        assert sorted(s["subject"] for s in rx.requests[1].json["signals"]) == names
        svc.submit(*evaluation(T0 + 330, **dict.fromkeys(names, "ok")))
        svc.submit(*evaluation(T0 + 360, **dict.fromkeys(names, "ok")))
        svc.submit(*evaluation(T0 + 390, **dict.fromkeys(names, "ok")))
        await settle(svc, clock)
        assert actions(rx) == ["fire", "update", "resolve"]  # the resolve is never held
    finally:
        await svc.stop()


async def test_group_wait_holds_the_first_page_to_gather_what_fires_with_it(rx, tmp_path):
    clock = ManualClock(WALL0)
    cfg = config({"hook": {"type": "webhook", "url": rx.url}}, group_wait_seconds=30)
    svc = service(cfg, tmp_path / "o.db", clock)
    await svc.start()
    try:
        assert svc.submit(*evaluation(T0, a="warning", b="ok")) == []
        clock.advance(10)
        assert svc.submit(*evaluation(T0 + 10, a="warning", b="critical")) == []
        clock.advance(20)
        (fire,) = svc.submit(*evaluation(T0 + 30, a="warning", b="critical"))
        assert fire.action == "fire" and fire.started_at == T0  # the incident's own start
        assert [s.subject for s in fire.signals] == ["b", "a"] and fire.severity == "critical"
        await settle(svc, clock)
        assert actions(rx) == ["fire"]
    finally:
        await svc.stop()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("group_interval_seconds", -1),
        ("group_interval_seconds", True),
        ("group_wait_seconds", 7200),
        ("group_wait_seconds", "soon"),
    ],
)
def test_pacing_settings_are_validated(key, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        AlertingConfig.model_validate({key: value})


# ---------------------------------------------------- 4. receiver down, then back


async def test_a_receiver_down_for_an_hour_gets_one_page_and_the_latest_not_a_burst(rx, tmp_path):
    clock = ManualClock(WALL0)
    registry = CollectorRegistry()
    cfg = config(
        {"hook": {"type": "webhook", "url": rx.url}},
        rules=[{"resolve_after": 1}],
        delivery={"deadline_seconds": DAY},
    )
    svc = service(cfg, tmp_path / "o.db", clock, registry=registry)
    await svc.start()
    try:
        await rx.go_down()
        names = [f"f{i}" for i in range(7)]
        t = T0
        for i in range(7):  # an hour: every ten minutes the incident changes (one more feature)
            svc.submit(
                *evaluation(t, **{n: ("warning" if j <= i else "ok") for j, n in enumerate(names)})
            )
            t += STEP
            clock.advance(STEP)
            await asyncio.sleep(0.05)  # the dispatcher tries (connection refused) and backs off
        assert actions(rx) == []
        assert svc.outbox.counts() == {"pending": 7}  # a fire and six updates waiting
        await rx.come_up()
        clock.advance(1)
        await settle(svc, clock)
        # The fire (the page) and the latest state; the five stale updates in between are
        # superseded by the latest, not sent (main: all seven, one after the other).
        assert actions(rx) == ["fire", "update"]
        assert sorted(s["subject"] for s in rx.requests[-1].json["signals"]) == names
        assert svc.outbox.counts() == {"delivered": 2, "superseded": 5}
        superseded = registry.get_sample_value(
            "monitor_notifications_total", {"receiver": "hook", "outcome": "superseded"}
        )
        assert superseded == 5
        # Down again: two more changes, then the incident resolves meanwhile. The last update
        # before it and the stale resolve are still delivered, in order.
        await rx.go_down()
        for i in (5, 4):
            clock.advance(STEP)
            svc.submit(
                *evaluation(t, **{n: ("warning" if j <= i else "ok") for j, n in enumerate(names)})
            )
            t += STEP
        svc.submit(*evaluation(t, **dict.fromkeys(names, "ok")))
        clock.advance(HOUR)
        await asyncio.sleep(0.05)
        await rx.come_up()
        clock.advance(1)
        await settle(svc, clock)
        assert actions(rx) == ["fire", "update", "update", "resolve"]
        assert [s["subject"] for s in rx.requests[2].json["signals"]] == names[:5]
        assert svc.outbox.counts() == {"delivered": 4, "superseded": 6}
    finally:
        await svc.stop()


# ------------------------------------------------------- 4. recovery, then restart


@pytest.mark.parametrize("persist_state", [False, True])
async def test_a_resolved_incident_is_not_paged_again_after_a_restart(rx, tmp_path, persist_state):
    """A fire, a checkpoint, the resolve, a crash; the next run, five hours later on the wall
    clock, replays from the checkpoint (``persist_state=False``, as the monitor service runs
    it) or restores the outbox's state. The receiver still has a fire and one resolve: no
    reminder of the resolved incident (its reminder would be due on the wall clock alone)."""
    clock = ManualClock(WALL0)
    cfg = config({"hook": {"type": "webhook", "url": rx.url}})
    svc = service(cfg, tmp_path / "o.db", clock, persist_state=persist_state)
    await svc.start()
    svc.submit(*evaluation(T0, income="critical"))
    checkpoint = svc.get_state(["churn"])
    evaluations = [evaluation(T0 + i * STEP, income="critical") for i in range(1, 4)]
    evaluations += [evaluation(T0 + i * STEP, income="ok") for i in range(4, 7)]
    for ev in evaluations:
        clock.advance(60)
        svc.submit(*ev)
    await settle(svc, clock)
    assert actions(rx) == ["fire", "resolve"]
    await svc.stop()
    clock.advance(5 * HOUR)
    again = service(cfg, tmp_path / "o.db", clock, persist_state=persist_state)
    if not persist_state:
        again.set_state(checkpoint)
    await again.start()
    try:
        for ev in evaluations if not persist_state else []:
            again.submit(*ev)  # the replay from the checkpoint
        for i in range(7, 10):  # and the live evaluations after it
            again.submit(*evaluation(T0 + i * STEP, income="ok"))
        await settle(again, clock)
        await asyncio.sleep(0.1)
        assert actions(rx) == ["fire", "resolve"]
    finally:
        await again.stop()


# ------------------------------------------- 4. silence expiring, another instance


async def test_a_silence_expiring_mid_incident_pages_once_and_the_resolve_follows(rx, tmp_path):
    clock = ManualClock(WALL0)
    cfg = config({"hook": {"type": "webhook", "url": rx.url}}, rules=[{"resolve_after": 1}])
    svc = service(cfg, tmp_path / "o.db", clock)
    await svc.start()
    try:
        svc.add_silence(ends_at=WALL0 + HOUR, subject="b", comment="known, OPS-1")
        t = T0
        assert [n.action for n in svc.submit(*evaluation(t, a="warning", b="ok"))] == ["fire"]
        for _ in range(5):  # b drifts under its silence: the page is not updated for it
            t, _ = t + STEP, clock.advance(STEP)
            assert svc.submit(*evaluation(t, a="warning", b="critical")) == []
        clock.set(WALL0 + HOUR)  # the silence ends while b still drifts: one update, at once
        t += STEP
        (update,) = svc.submit(*evaluation(t, a="warning", b="critical"))
        assert update.action == "update" and update.severity == "critical"
        assert [s.subject for s in update.signals] == ["b", "a"]
        for _ in range(3):  # nothing new: nothing more
            t, _ = t + STEP, clock.advance(STEP)
            assert svc.submit(*evaluation(t, a="warning", b="critical")) == []
        t += STEP
        (resolve,) = svc.submit(*evaluation(t, a="ok", b="ok"))
        assert resolve.action == "resolve" and {s.subject for s in resolve.signals} == {"a", "b"}
        await settle(svc, clock)
        assert actions(rx) == ["fire", "update", "resolve"]
    finally:
        await svc.stop()


async def test_an_incident_open_across_a_move_to_another_instance_is_not_paged_again(rx, tmp_path):
    """Instance a pages and checkpoints the alert state (as the changelog carries it: JSON);
    instance b, with its own outbox, restores it five hours later and catches up."""
    clock = ManualClock(WALL0)
    cfg = config({"hook": {"type": "webhook", "url": rx.url}})
    a = service(cfg, tmp_path / "a.db", clock, persist_state=False)
    await a.start()
    (fire,) = a.submit(*evaluation(T0, income="critical"))
    document = json.loads(json.dumps(a.get_state(["churn"])))
    await settle(a, clock)
    await a.stop()
    clock.advance(5 * HOUR)
    b = service(cfg, tmp_path / "b.db", clock, persist_state=False)
    b.set_state(document)
    await b.start()
    try:
        t = T0 + STEP
        sent = []
        while t < T0 + 5 * HOUR:  # five hours of backlog: one reminder, at four hours of data
            sent += [(t, n.action) for n in b.submit(*evaluation(t, income="critical"))]
            t += STEP
        assert sent == [(T0 + 4 * HOUR, "repeat")]
        for _ in range(3):
            sent += [(t, n.action) for n in b.submit(*evaluation(t, income="ok"))]
            t += STEP
        assert sent[-1] == (t - STEP, "resolve")
        await settle(b, clock)
        assert actions(rx) == ["fire", "repeat", "resolve"]
        assert {r.json["started_at"] for r in rx.requests} == {rx.requests[0].json["started_at"]}
        assert rx.requests[-1].json["fingerprint"] == fire.fingerprint
    finally:
        await b.stop()


# ------------------------------------------------------------- 4. flapping


def _flap(rule: dict[str, Any], pattern: list[str], cycles: int) -> list[str]:
    """The pure policy over ``cycles`` repetitions of ``pattern``, one evaluation a minute
    on both clocks, then ten quiet minutes; returns the action kinds."""
    from monitor.alerting.config import AlertRule
    from monitor.alerting.policy import decide

    rules, state, kinds = [AlertRule.model_validate(rule)], None, []
    severities = pattern * cycles + ["ok"] * 10
    for i, severity in enumerate(severities):
        ctx, signals = evaluation(T0 + 60 * i, income=severity)
        d = decide(state, signals, ctx, T0 + 60 * i, rules=rules, wall=WALL0 + 60 * i)
        state = d.state
        kinds += [a.kind for a in d.actions]
    return kinds


def test_flapping_every_evaluation_pages_once_by_hysteresis():
    assert _flap({}, ["warning", "ok"], 30) == ["fire", "resolve"]


def test_slow_flapping_is_held_open_by_keep_firing_for():
    # On for one evaluation, off for three (resolve_after): a fire and a resolve every four
    # minutes at the defaults, thirty pages in an hour.
    slow = ["warning", "ok", "ok", "ok"]
    assert _flap({}, slow, 15) == ["fire", "resolve"] * 15
    # A minimum duration before resolving: one incident while it flaps, resolved once quiet.
    assert _flap({"keep_firing_for_seconds": 600}, slow, 15) == ["fire", "resolve"]


async def test_keep_firing_for_end_to_end_through_a_real_receiver(rx, tmp_path):
    clock = ManualClock(WALL0)
    cfg = config(
        {"hook": {"type": "webhook", "url": rx.url}}, rules=[{"keep_firing_for_seconds": 600}]
    )
    svc = service(cfg, tmp_path / "o.db", clock)
    await svc.start()
    try:
        sent = []
        for i, severity in enumerate(["warning", "ok", "ok", "ok"] * 10 + ["ok"] * 10):
            sent += svc.submit(*evaluation(T0 + 60 * i, income=severity))
            clock.advance(60)
        await settle(svc, clock)
        assert actions(rx) == ["fire", "resolve"]
        # The last active evaluation is the 37th (i = 36): resolved 600 s of event time later.
        assert sent[-1].ended_at == T0 + 60 * (36 + 10)
    finally:
        await svc.stop()


def test_event_time_moving_back_mid_incident_does_not_hold_updates_or_reminders():
    """The data's clock jumps back a day mid-incident (a producer's clock): how long ago the
    last page was is then the wall clock's to say (event time held both for a day)."""
    from monitor.alerting.config import AlertRule
    from monitor.alerting.policy import Pacing, decide

    def run(steps: list[tuple[float, float, dict[str, str]]]) -> list[tuple[int, str]]:
        state, sent = None, []
        for i, (t, wall, severities) in enumerate(steps):
            ctx, signals = evaluation(t, **severities)
            pacing = Pacing(0, 300)
            d = decide(state, signals, ctx, t, rules=[AlertRule()], wall=wall, pacing=pacing)
            state = d.state
            sent += [(i, a.kind) for a in d.actions]
        return sent

    both = {"a": "warning", "b": "warning"}
    assert run(
        [
            (T0, WALL0, {"a": "warning"}),
            (T0 - DAY, WALL0 + 60, both),  # b joins: held, 60 s of wall since the page
            (T0 - DAY + 60, WALL0 + 300, both),  # the interval has passed on the wall clock
        ]
    ) == [(0, "fire"), (2, "update")]
    assert run([(T0, WALL0, {"a": "warning"}), (T0 - DAY, WALL0 + 4 * HOUR, {"a": "warning"})]) == [
        (0, "fire"),
        (1, "repeat"),
    ]


async def test_a_receiver_down_for_five_hours_gets_the_page_not_a_stale_reminder(rx, tmp_path):
    clock = ManualClock(WALL0)
    registry = CollectorRegistry()
    cfg = config({"hook": {"type": "webhook", "url": rx.url}}, delivery={"deadline_seconds": DAY})
    svc = service(cfg, tmp_path / "o.db", clock, registry=registry)
    await svc.start()
    try:
        await rx.go_down()
        sent = []
        for i in range(31):  # five hours live, one evaluation every ten minutes
            sent += [n.action for n in svc.submit(*evaluation(T0 + i * STEP, income="critical"))]
            clock.advance(STEP)
            await asyncio.sleep(0.01)
        assert sent == ["fire", "repeat"]  # the reminder at four hours, decided while down
        await rx.come_up()
        clock.advance(1)
        await settle(svc, clock)
        assert actions(rx) == ["fire"]  # main: the page, and at once a reminder of it
        assert svc.outbox.counts() == {"delivered": 1, "superseded": 1}
        # Later reminders come as usual: four hours after the page was delivered... and
        # decided by the policy four hours after it was decided (both clocks).
        for i in range(31, 31 + 25):
            svc.submit(*evaluation(T0 + i * STEP, income="critical"))
            clock.advance(STEP)
        await settle(svc, clock)
        assert actions(rx) == ["fire", "repeat"]
    finally:
        await svc.stop()


def test_wall_clock_times_and_retrain_covers_saved_in_the_future_are_brought_back() -> None:
    """A state saved by a host whose clock ran ahead: its wall-clock times (last
    notification, incident opened, last retraining) would hold reminders and the retraining
    rate limit for as long, and the incident starts a trigger covered move with the starts
    they name, or the incident would look uncovered and retrain a second time."""
    from monitor.alerting.policy import GroupState, ModelAlertState, forget_future
    from monitor.alerting.retrain_policy import record_retrain

    ahead = 32_503_680_000.0
    group = GroupState(
        labels={"model": "m"},
        fingerprint="fp",
        incident_started_at=ahead,
        notified=True,
        last_notified_at=ahead,
        last_notified_wall=ahead,
        opened_wall=ahead,
    )
    saved = record_retrain(ModelAlertState("m", groups={"fp": group}), ahead, ahead)
    fixed, n = forget_future(saved, latest=2_000.0, now=1_000.0)
    g = fixed.groups["fp"]
    assert (g.last_notified_wall, g.opened_wall, fixed.last_retrain_wall) == (1_000.0,) * 3
    assert fixed.retrain_covers == {"fp": g.incident_started_at} == {"fp": 1_000.0}
    assert n == 7
    # Times within the bound stay as they are.
    assert forget_future(fixed, latest=2_000.0, now=1_500.0) == (fixed, 0)
