"""Retraining triggers once per incident; ``min_interval_seconds`` rate-limits across incidents.

The pure decision is stepped exactly as :meth:`AlertService.submit` steps it (the alert
policy first, then the retrain decision on the stepped state); the end-to-end test goes
through the service to a real local HTTP receiver.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from alert_receivers import RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig, AlertRule, RetrainPolicy
from monitor.alerting.engine import AlertService
from monitor.alerting.policy import ModelAlertState, decide
from monitor.alerting.retrain_policy import decide_retrain
from monitor.clock import SystemClock
from monitor.signals import EvaluationContext, Signal

HOUR = 3600.0
DAY = 24 * HOUR
STEP = 600.0  # an evaluation every ten minutes
T0 = 1_700_000_000.0


def ctx(t: float) -> EvaluationContext:
    return EvaluationContext("churn", "7", t, t - 600, t - 1, 1000, 5000)


def drift(severity: str, *subjects: str) -> list[Signal]:
    value = 0.4 if severity != "ok" else 0.01
    return [Signal("churn", "drift", s, severity, value, 0.2, "psi") for s in subjects]  # type: ignore[arg-type]


DRIFTING = drift("critical", "a", "b")
QUIET = drift("ok", "a", "b")


@dataclass
class Model:
    """One model's alert state, stepped by evaluations as the engine steps it."""

    policy: RetrainPolicy
    rules: list[AlertRule] = field(default_factory=lambda: [AlertRule(resolve_after=3)])
    group_by: list[str] = field(default_factory=lambda: ["model"])
    state: ModelAlertState | None = None
    triggers: list[tuple[float, float | None]] = field(default_factory=list)  # (at, incident)
    suppressed: int = 0

    def step(self, t: float, signals: list[Signal]) -> None:
        stepped = decide(
            self.state, signals, ctx(t), t, rules=self.rules, group_by=self.group_by
        ).state
        verdict = decide_retrain(
            self.policy, stepped.last_retrain_at, signals, ctx(t), t, alert_state=stepped
        )
        if verdict.trigger:
            self.triggers.append((t, verdict.incident_started_at))
            stepped = replace(stepped, last_retrain_at=t)
        self.suppressed += verdict.suppressed
        self.state = stepped

    def run(self, start: float, duration: float, signals: list[Signal]) -> float:
        """Evaluate every STEP from ``start`` for ``duration``; returns the next time."""
        t = start
        while t < start + duration:
            self.step(t, signals)
            t += STEP
        return t


def policy(**kw: float) -> RetrainPolicy:
    return RetrainPolicy(receiver="train", min_critical_drifted_features=2, **kw)


def test_one_incident_lasting_three_days_triggers_once_with_the_default_interval():
    m = Model(policy())
    assert m.policy.min_interval_seconds == DAY
    m.run(T0, 3 * DAY, DRIFTING)
    assert m.triggers == [(T0, T0)]
    assert m.suppressed == 0  # the same incident is not "suppressed", it was triggered for


def test_interval_zero_triggers_once_per_incident_not_per_evaluation():
    m = Model(policy(min_interval_seconds=0))
    t = m.run(T0, 2 * HOUR, DRIFTING)  # incident 1: twelve evaluations
    t = m.run(t, 3 * STEP, QUIET)  # resolve_after 3: it resolves
    second = t
    m.run(t, 2 * HOUR, DRIFTING)  # incident 2
    assert m.triggers == [(T0, T0), (second, second)]


def test_a_second_incident_within_the_interval_is_suppressed_and_counted():
    m = Model(policy())
    t = m.run(T0, HOUR, DRIFTING)
    t = m.run(t, 3 * STEP, QUIET)  # resolved
    t = m.run(t + HOUR, 30 * 60, DRIFTING)  # an hour later, three evaluations of incident 2
    m.run(t, 3 * STEP, QUIET)  # resolved before the interval passed: never triggered
    assert m.triggers == [(T0, T0)]
    assert m.suppressed == 3


def test_a_held_back_incident_triggers_once_the_interval_has_passed():
    m = Model(policy())
    t = m.run(T0, HOUR, DRIFTING)
    t = m.run(t, 3 * STEP, QUIET)
    second = t
    m.run(t, 2 * DAY, DRIFTING)  # incident 2 outlives the interval
    assert [incident for _, incident in m.triggers] == [T0, second]
    assert m.triggers[1][0] == T0 + DAY  # the first evaluation the rate limit allows
    assert m.suppressed == (T0 + DAY - second) // STEP


def test_restore_mid_incident_does_not_trigger_again():
    m = Model(policy(min_interval_seconds=0))
    t = m.run(T0, HOUR, DRIFTING)
    assert len(m.triggers) == 1
    assert m.state is not None
    # A checkpoint of today's format (no new field: "triggered for" is derived), restored.
    document = json.loads(json.dumps(m.state.to_json()))
    assert set(document) == {"version", "model", "groups", "last_retrain_at"}
    restored = Model(m.policy, state=ModelAlertState.from_json(document))
    restored.run(t, 2 * DAY, DRIFTING)
    assert restored.triggers == []


def test_the_trigger_waits_for_the_alert_incident_to_open():
    # ``for: 3``: the alert fires at the third drifting evaluation, and so does retraining.
    m = Model(policy(), rules=[AlertRule(**{"for": 3})])
    m.run(T0, 5 * STEP, DRIFTING)
    assert m.triggers == [(T0 + 2 * STEP, T0 + 2 * STEP)]


def make_service(rx: RecordingReceiver, path: Path, registry: CollectorRegistry) -> AlertService:
    config = AlertingConfig.model_validate(
        {
            "receivers": {"train": {"type": "retrain", "url": rx.url, "body_template": "airflow"}},
            "retrain_policy": {"receiver": "train", "min_critical_drifted_features": 2},
            "delivery": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.05},
        }
    )
    return AlertService(
        config,
        registry=registry,
        clock=SystemClock(),
        outbox_path=str(path),
        rng=random.Random(1),
        poll_interval_seconds=0.05,
    )


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_one_webhook_call_per_incident_through_a_real_receiver(tmp_path):
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx:
        svc = make_service(rx, tmp_path / "o.db", registry)
        await svc.start()
        try:
            # One incident evaluated for three days (default interval 24 h): one call.
            sent = [svc.submit(ctx(T0 + i * 6 * HOUR), DRIFTING) for i in range(13)]
            assert [len(s) for s in sent] == [1] + [0] * 12
            # A replay of the incident from a state before the trigger (a restart from an
            # older checkpoint) decides it again: the same key, dropped by the outbox.
            svc.release(["churn"])
            again = [svc.submit(ctx(T0 + i * 6 * HOUR), DRIFTING) for i in range(13)]
            assert [[n.idempotency_key for n in s] for s in again] == [
                [n.idempotency_key for n in s] for s in sent
            ]
            await wait_until(lambda: svc.outbox.counts() == {"delivered": 1})
            await asyncio.sleep(0.2)  # a second call would have arrived by now
            assert len(rx.requests) == 1
            (req,) = rx.requests
            assert req.json["dag_run_id"] == sent[0][0].idempotency_key
            assert f"-{round(T0 * 1000)}-" in req.json["dag_run_id"]  # names the incident
        finally:
            await svc.stop()


def test_incidents_are_the_alert_groups_ones():
    # group_by [model, kind]: drift and performance are separate incidents. A performance
    # incident open when the drift trigger went out was covered by it; one opening later is a
    # new incident (held back by the interval, triggered for once it has passed).
    perf = Signal("churn", "performance", "accuracy", "critical", 0.6, 0.8, "threshold")
    perf_ok = replace(perf, severity="ok", value=0.9)
    m = Model(policy(min_interval_seconds=HOUR), group_by=["model", "kind"])
    m.step(T0, [*DRIFTING, perf])  # both incidents open: one trigger covers both
    t = T0 + STEP
    for _ in range(3):  # the performance incident resolves; the drift one goes on
        m.step(t, [*DRIFTING, perf_ok])
        t += STEP
    second = t
    m.step(t, [*DRIFTING, perf])  # a new performance incident, within the interval
    assert m.triggers == [(T0, T0)] and m.suppressed == 1
    m.run(t + STEP, HOUR, [*DRIFTING, perf])
    assert m.triggers == [(T0, T0), (T0 + HOUR, second)]
