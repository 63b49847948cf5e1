"""Table-driven tests of the pure alert policy (no I/O, no clock: ``now`` is an argument)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.config import AlertingConfig, AlertRule, RetrainPolicy
from monitor.alerting.policy import ModelAlertState, decide, fingerprint
from monitor.alerting.retrain_policy import decide_retrain
from monitor.alerting.routing import route
from monitor.alerting.silences import Silence, is_silenced
from monitor.errors import StateError
from monitor.signals import EvaluationContext, Signal

STEP = 60.0  # seconds between evaluations


def ctx(t: float, seq: int = 0, model: str = "churn") -> EvaluationContext:
    return EvaluationContext(model, "7", t, t - 600, t - 1, 1000, 5000, seq)


def sig(severity: str, subject: str = "income", kind: str = "drift", model: str = "churn"):
    return Signal(model, kind, subject, severity, 0.3 if severity != "ok" else 0.01, 0.2, "psi")  # type: ignore[arg-type]


def run(severities: list[str], rule: AlertRule | None = None, step: float = STEP):
    """Feed one signal's severities, one evaluation each; return the action kinds per evaluation."""
    rules = [rule or AlertRule()]
    state = None
    out = []
    for i, sev in enumerate(severities):
        d = decide(state, [sig(sev)], ctx(i * step, i), i * step, rules=rules)
        state = d.state
        out.append([a.kind for a in d.actions])
    return out


W, C, O = "warning", "critical", "ok"  # noqa: E741 - table readability


@pytest.mark.parametrize(
    ("name", "rule", "severities", "expected"),
    [
        ("quiet", AlertRule(), [O, O], [[], []]),
        ("fires once", AlertRule(), [W], [["fire"]]),
        ("no re-notify while firing", AlertRule(), [W, W, W], [["fire"], [], []]),
        ("for=2 needs consecutive", AlertRule(**{"for": 2}), [W, O, W, W], [[], [], [], ["fire"]]),
        (
            "resolve_after=3",
            AlertRule(resolve_after=3),
            [W, O, O, O],
            [["fire"], [], [], ["resolve"]],
        ),
        (
            "ok streak reset",
            AlertRule(resolve_after=2),
            [W, O, W, O, O],
            [["fire"], [], [], [], ["resolve"]],
        ),
        ("escalation updates", AlertRule(), [W, C], [["fire"], ["update"]]),
        ("de-escalation is quiet", AlertRule(), [C, W], [["fire"], []]),
        ("min_severity critical", AlertRule(min_severity="critical"), [W, C], [[], ["fire"]]),
        (
            "resolve then new incident",
            AlertRule(resolve_after=1),
            [W, O, W],
            [["fire"], ["resolve"], ["fire"]],
        ),
        ("flapping: one page", AlertRule(resolve_after=3), [W, O] * 10, [["fire"]] + [[]] * 19),
        (
            "repeat interval",
            AlertRule(repeat_interval_seconds=2 * 3600),
            [W, W, W, W],
            None,  # checked below with a 1 h step
        ),
    ],
)
def test_policy_table(name, rule, severities, expected):
    if expected is None:
        assert run(severities, rule, step=3600.0) == [["fire"], [], ["repeat"], []]
    else:
        assert run(severities, rule) == expected, name


def test_flapping_storm_is_bounded_by_hysteresis_and_repeat():
    # A detector alternating warning/ok every minute for a day: one fire, then a repeat every
    # 4 h at most; never a resolve (it never stays ok for resolve_after evaluations).
    kinds = [k for step in run([W, O] * 720) for k in step]
    assert kinds.count("fire") == 1
    assert kinds.count("resolve") == 0
    assert kinds.count("repeat") <= 6
    assert kinds.count("update") == 0


def test_grouping_one_notification_lists_every_active_signal():
    signals = [sig(W, "income"), sig(C, "age"), sig(W, "tenure"), sig(O, "region")]
    d = decide(None, signals, ctx(0.0), 0.0, rules=[AlertRule()])
    assert [a.kind for a in d.actions] == ["fire"]
    (fire,) = d.actions
    assert [s.subject for s in fire.signals] == ["age", "income", "tenure"]  # critical first
    assert fire.severity == "critical"
    assert fire.labels == {"model": "churn"}


def test_new_feature_joining_updates_and_so_does_a_member_clearing():
    rules = [AlertRule(resolve_after=1)]
    d1 = decide(None, [sig(W, "a"), sig(O, "b")], ctx(0), 0, rules=rules)
    d2 = decide(d1.state, [sig(W, "a"), sig(W, "b")], ctx(60), 60, rules=rules)
    d3 = decide(d2.state, [sig(W, "a"), sig(O, "b")], ctx(120), 120, rules=rules)
    d4 = decide(d3.state, [sig(W, "a"), sig(W, "b")], ctx(180), 180, rules=rules)
    d5 = decide(d4.state, [sig(W, "a"), sig(W, "b")], ctx(240), 240, rules=rules)
    assert [[a.kind for a in d.actions] for d in (d1, d2, d3, d4, d5)] == [
        ["fire"],
        ["update"],
        ["update"],  # b cleared while a fires: the receivers hear it
        ["update"],  # b is back: they hear that too
        [],
    ]
    assert [s.subject for s in d3.actions[0].signals] == ["a"]
    assert [s.subject for s in d3.actions[0].cleared] == ["b"]
    assert [s.subject for s in d4.actions[0].signals] == ["a", "b"]
    assert [s.subject for s in d2.actions[0].signals] == ["a", "b"]


def test_keys_are_deterministic_and_distinct_per_incident_and_action():
    rules = [AlertRule(resolve_after=1)]
    a = decide(None, [sig(W)], ctx(100.0), 100.0, rules=rules).actions[0]
    b = decide(None, [sig(W)], ctx(100.0), 100.0, rules=rules).actions[0]
    assert a.idempotency_key == b.idempotency_key  # a replayed evaluation: same key
    kinds = run([W, O, W], AlertRule(resolve_after=1))
    assert kinds == [["fire"], ["resolve"], ["fire"]]
    s0 = decide(None, [sig(W)], ctx(0), 0, rules=rules)
    s1 = decide(s0.state, [sig(O)], ctx(60), 60, rules=rules)
    s2 = decide(s1.state, [sig(W)], ctx(120), 120, rules=rules)
    fire1, resolve1, fire2 = s0.actions[0], s1.actions[0], s2.actions[0]
    assert fire1.fingerprint == resolve1.fingerprint == fire2.fingerprint
    assert len({fire1.idempotency_key, resolve1.idempotency_key, fire2.idempotency_key}) == 3
    assert resolve1.incident_started_at == fire1.incident_started_at == 0
    assert resolve1.ended_at == 60
    assert fire1.fingerprint == fingerprint({"model": "churn"})


def test_resolve_routes_with_incident_severity_and_lists_notified_signals():
    rules = [AlertRule(resolve_after=1)]
    d1 = decide(None, [sig(C, "a"), sig(W, "b")], ctx(0), 0, rules=rules)
    d2 = decide(d1.state, [sig(O, "a"), sig(O, "b")], ctx(60), 60, rules=rules)
    (resolve,) = d2.actions
    assert resolve.kind == "resolve"
    assert resolve.severity == "critical"
    assert sorted(s.subject for s in resolve.signals) == ["a", "b"]
    assert all(s.severity == "ok" for s in resolve.signals)


def test_escalated_incident_resolves_by_every_severity_it_was_routed_by():
    """Warning fire (to chat), critical update (to the pager): the resolve routes by both, so
    chat does not keep a firing warning forever. Before, it routed by ``critical`` only."""
    rules = [AlertRule(resolve_after=1)]
    d1 = decide(None, [sig(W)], ctx(0), 0, rules=rules)
    d2 = decide(d1.state, [sig(C)], ctx(60), 60, rules=rules)
    d3 = decide(d2.state, [sig(O)], ctx(120), 120, rules=rules)
    assert [a.route_severities for a in d1.actions + d2.actions] == [("warning",), ("critical",)]
    (resolve,) = d3.actions
    assert resolve.severity == "critical"
    assert resolve.route_severities == ("warning", "critical")
    # The next incident starts afresh: a critical one resolves to the pager alone.
    d4 = decide(d3.state, [sig(C)], ctx(180), 180, rules=rules)
    d5 = decide(d4.state, [sig(O)], ctx(240), 240, rules=rules)
    assert [a.route_severities for a in d4.actions + d5.actions] == [("critical",)] * 2


def test_state_of_an_earlier_build_resolves_by_its_notified_severity():
    rules = [AlertRule(resolve_after=1)]
    d1 = decide(None, [sig(W)], ctx(0), 0, rules=rules)
    d2 = decide(d1.state, [sig(C)], ctx(60), 60, rules=rules)
    doc = json.loads(json.dumps(d2.state.to_json()))
    for group in doc["groups"]:
        del group["routed_severities"]  # as stored before the field existed
    d3 = decide(ModelAlertState.from_json(doc), [sig(O)], ctx(120), 120, rules=rules)
    assert [(a.kind, a.route_severities) for a in d3.actions] == [("resolve", ("critical",))]


def test_silences_are_judged_at_the_wall_clock_not_the_event_time():
    """Events two minutes old (event time 880) evaluated at wall time 1000, just after a
    silence was created (starts 990): muted. Judged at event time, it paged."""
    rules = [AlertRule(resolve_after=1)]
    silence = Silence("s1", starts_at=990, ends_at=2000, model="churn")
    d = decide(None, [sig(C)], ctx(880), 880, rules=rules, silences=[silence], silenced_at=1000)
    assert [a.kind for a in d.actions] == ["mute"]
    # and once it has ended on the wall clock, it mutes nothing, whatever the event time
    d = decide(None, [sig(C)], ctx(1500), 1500, rules=rules, silences=[silence], silenced_at=2000)
    assert [a.kind for a in d.actions] == ["fire"]
    policy = RetrainPolicy(receiver="r", min_critical_drifted_features=1)
    assert not decide_retrain(policy, None, [sig(C)], ctx(880), 880, [silence], 1000).trigger
    assert decide_retrain(policy, None, [sig(C)], ctx(880), 880, [silence]).trigger


def test_silence_mutes_then_fires_when_it_ends_and_no_stray_resolve():
    rules = [AlertRule(resolve_after=1)]
    silence = Silence("s1", starts_at=0, ends_at=100, model="churn", subject="inc*")
    d1 = decide(None, [sig(W)], ctx(0), 0, rules=rules, silences=[silence])
    d2 = decide(d1.state, [sig(W)], ctx(60), 60, rules=rules, silences=[silence])
    d3 = decide(d2.state, [sig(W)], ctx(120), 120, rules=rules, silences=[silence])
    assert [[a.kind for a in d.actions] for d in (d1, d2, d3)] == [["mute"], [], ["fire"]]
    # silenced for its whole life: no fire, hence no resolve either
    e1 = decide(None, [sig(W)], ctx(0), 0, rules=rules, silences=[silence])
    e2 = decide(e1.state, [sig(O)], ctx(60), 60, rules=rules, silences=[silence])
    assert [a.kind for a in e2.actions] == []
    assert e2.state.groups == {}


@pytest.mark.parametrize(
    ("silence", "signal", "now", "expected"),
    [
        (Silence("x", 0, 10), sig(W), 5, True),
        (Silence("x", 0, 10), sig(W), 10, False),  # end exclusive
        (Silence("x", 5, 10), sig(W), 4, False),
        (Silence("x", 0, 10, model="fraud-*"), sig(W), 5, False),
        (Silence("x", 0, 10, kind="performance"), sig(W), 5, False),
        (Silence("x", 0, 10, kind="drift", subject="inc*"), sig(W), 5, True),
    ],
)
def test_silence_matching(silence, signal, now, expected):
    assert is_silenced([silence], signal, now) is expected


def test_absent_signal_counts_as_ok():
    rules = [AlertRule(resolve_after=2)]
    d1 = decide(None, [sig(W, "gone")], ctx(0), 0, rules=rules)
    d2 = decide(d1.state, [], ctx(60), 60, rules=rules)
    d3 = decide(d2.state, [], ctx(120), 120, rules=rules)
    assert [[a.kind for a in d.actions] for d in (d1, d2, d3)] == [["fire"], [], ["resolve"]]
    assert d3.state.groups == {}


def test_group_by_kind_splits_notifications():
    signals = [sig(W, "income"), sig(C, "accuracy", kind="performance")]
    d = decide(None, signals, ctx(0), 0, rules=[AlertRule()], group_by=["model", "kind"])
    assert sorted(a.labels["kind"] for a in d.actions) == ["drift", "performance"]
    assert len({a.fingerprint for a in d.actions}) == 2


def test_unruled_signals_never_alert():
    d = decide(None, [sig(C)], ctx(0), 0, rules=[AlertRule(kinds=["performance"])])
    assert d.actions == []


def test_foreign_model_signal_is_a_programming_error():
    with pytest.raises(ValueError):
        decide(None, [sig(W, model="other")], ctx(0), 0, rules=[AlertRule()])


def test_state_json_round_trip_continues_identically():
    rules = [AlertRule(resolve_after=2)]
    d1 = decide(None, [sig(C, "a"), sig(W, "b")], ctx(0), 0, rules=rules)
    original = d1.state
    restored = ModelAlertState.from_json(json.loads(json.dumps(original.to_json())))
    assert restored == original
    nxt = [sig(O, "a"), sig(O, "b")]
    for t in (60, 120):
        a = decide(original, nxt, ctx(t), t, rules=rules)
        b = decide(restored, nxt, ctx(t), t, rules=rules)
        assert a.actions == b.actions
        original, restored = a.state, b.state
    assert [x.kind for x in a.actions] == ["resolve"]


def test_state_of_another_version_is_refused():
    doc = ModelAlertState("churn").to_json()
    doc["version"] = 999
    with pytest.raises(StateError):
        ModelAlertState.from_json(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([O, W, C]), min_size=1, max_size=60),
    st.integers(1, 3),
    st.integers(1, 4),
)
def test_property_incidents_alternate_and_are_bounded(severities, for_, resolve_after):
    rule = AlertRule(**{"for": for_, "resolve_after": resolve_after})
    kinds = [k for step in run(severities, rule) for k in step]
    opens_closes = [k for k in kinds if k in ("fire", "resolve")]
    # fire and resolve strictly alternate, starting with fire
    assert opens_closes == ["fire", "resolve"] * (len(opens_closes) // 2) + (
        ["fire"] if len(opens_closes) % 2 else []
    )
    # each resolve needs resolve_after consecutive oks, so incidents are bounded by ok runs
    runs, current = 0, 0
    for s in severities:
        current = current + 1 if s == O else 0
        runs += current == resolve_after
    assert opens_closes.count("resolve") <= runs
    # at most one update per incident (only an escalation warning -> critical)
    assert kinds.count("update") <= opens_closes.count("fire")


def test_retrain_policy_table():
    policy = RetrainPolicy(receiver="r", min_critical_drifted_features=2, min_interval_seconds=3600)
    two = [sig(C, "a"), sig(C, "b"), sig(W, "c")]
    one = [sig(C, "a"), sig(W, "b")]
    perf = [sig(C, "accuracy", kind="performance")]
    c = ctx(10_000)
    assert decide_retrain(policy, None, two, c, 10_000).trigger
    assert not decide_retrain(policy, None, one, c, 10_000).trigger
    assert decide_retrain(policy, None, perf, c, 10_000).trigger
    off = policy.model_copy(update={"on_performance_drop": False})
    assert not decide_retrain(off, None, perf, c, 10_000).trigger
    within = decide_retrain(policy, 10_000 - 100, two, c, 10_000)
    assert (within.trigger, within.suppressed) == (False, True)
    after = decide_retrain(policy, 10_000 - 3600, two, c, 10_000)
    assert after.trigger
    assert [s.subject for s in after.evidence] == ["a", "b"]
    muted = decide_retrain(policy, None, two, c, 10_000, [Silence("s", 0, 1e12, subject="a")])
    assert not muted.trigger


def test_routing_table():
    cfg = AlertingConfig.model_validate(
        {
            "receivers": {
                "pd": {"type": "pagerduty", "routing_key": "k"},
                "chat": {"type": "slack", "webhook_url": "https://x"},
                "hook": {"type": "webhook", "url": "http://y"},
                "train": {"type": "retrain", "url": "http://z"},
            },
            "routes": [
                {"match": {"severity": "critical"}, "receivers": ["pd"], "continue": True},
                {"match": {"model": "fraud-*"}, "receivers": ["chat"]},
            ],
        }
    )
    assert route(cfg, "fraud-eu", "critical") == ["pd", "chat"]
    assert route(cfg, "fraud-eu", "warning") == ["chat"]
    assert route(cfg, "churn", "critical") == ["pd"]
    assert route(cfg, "churn", "warning") == ["pd", "chat", "hook"]  # no match: all but retrain


def test_config_defaults_and_validation():
    empty = AlertingConfig.model_validate({})
    assert empty.receivers == {} and len(empty.rules) == 1 and empty.group_by == ["model"]
    with pytest.raises(ValueError, match="unknown receiver"):
        AlertingConfig.model_validate({"routes": [{"receivers": ["nope"]}]})
    with pytest.raises(ValueError, match="retrain"):
        AlertingConfig.model_validate(
            {
                "receivers": {"h": {"type": "webhook", "url": "http://x"}},
                "retrain_policy": {"receiver": "h"},
            }
        )
    with pytest.raises(ValueError, match="placeholders"):
        AlertingConfig.model_validate({"dashboard_url_template": "http://g/{secret}"})
    with pytest.raises(ValueError):
        AlertingConfig.model_validate({"receivers": {"x": {"type": "email", "to": "a"}}})
    with pytest.raises(ValueError):
        AlertingConfig.model_validate({"unknown_key": 1})


def run_group(steps: list[dict[str, str]], rule: AlertRule) -> list[list[tuple[str, str, str]]]:
    """Feed several subjects; per evaluation: (action, firing subjects, cleared subjects)."""
    state, out = None, []
    for i, severities in enumerate(steps):
        signals = [sig(s, subject) for subject, s in severities.items()]
        d = decide(state, signals, ctx(i * STEP, i), i * STEP, rules=[rule])
        state = d.state
        out.append(
            [
                (
                    a.kind,
                    ",".join(s.subject for s in a.signals),
                    ",".join(s.subject for s in a.cleared),
                )
                for a in d.actions
            ]
        )
    return out


@pytest.mark.parametrize(
    ("name", "rule", "steps", "expected"),
    [
        (
            "one of two clears: update naming it",
            AlertRule(resolve_after=1),
            [{"a": W, "b": W}, {"a": W, "b": O}, {"a": W, "b": O}],
            [[("fire", "a,b", "")], [("update", "a", "b")], []],
        ),
        (
            "the clear waits for resolve_after",
            AlertRule(resolve_after=3),
            [{"a": W, "b": W}, {"a": W, "b": O}, {"a": W, "b": O}, {"a": W, "b": O}],
            [[("fire", "a,b", "")], [], [], [("update", "a", "b")]],
        ),
        (
            "critical member clears: update, severity kept for routing",
            AlertRule(resolve_after=1),
            [{"a": C, "b": W}, {"a": O, "b": W}],
            [[("fire", "a,b", "")], [("update", "b", "a")]],
        ),
        (
            "then the rest clears: resolve lists only what was still notified",
            AlertRule(resolve_after=1),
            [{"a": W, "b": W}, {"a": W, "b": O}, {"a": O, "b": O}],
            [[("fire", "a,b", "")], [("update", "a", "b")], [("resolve", "a", "")]],
        ),
        (
            "two clear at once: one update",
            AlertRule(resolve_after=1),
            [{"a": W, "b": W, "c": W}, {"a": W, "b": O, "c": O}],
            [[("fire", "a,b,c", "")], [("update", "a", "b,c")]],
        ),
        (
            "a clear and a new one together: one update",
            AlertRule(resolve_after=1),
            [{"a": W, "b": W, "c": O}, {"a": W, "b": O, "c": W}],
            [[("fire", "a,b", "")], [("update", "a,c", "b")]],
        ),
        (
            "a member never notified clearing is not news",
            AlertRule(resolve_after=1, **{"for": 2}),
            [{"a": W, "b": O}, {"a": W, "b": W}, {"a": W, "b": O}],
            [[], [("fire", "a", "")], []],
        ),
    ],
)
def test_partial_clear_table(name, rule, steps, expected):
    assert run_group(steps, rule) == expected, name


def test_partial_clear_updates_are_bounded_by_hysteresis():
    # b flaps warning/ok every evaluation for a day while a keeps firing: with the default
    # resolve_after=3 it never clears, so nothing is sent after the fire.
    steps = [{"a": W, "b": W if i % 2 else O} for i in range(1440)]
    kinds = [k for step in run_group(steps, AlertRule()) for k, _, _ in step]
    assert kinds.count("fire") == 1 and kinds.count("resolve") == 0
    assert kinds.count("update") <= 1  # b joins once; it never stays ok long enough to clear
    assert kinds.count("repeat") <= 6  # every 4 h
    # with resolve_after=2, each clear needs 2 oks and each return an active: bounded rate.
    steps = [{"a": W, "b": [W, O, O][i % 3]} for i in range(300)]
    kinds = [k for step in run_group(steps, AlertRule(resolve_after=2)) for k, _, _ in step]
    assert kinds.count("update") <= 2 * 300 // 3 + 1


#: ModelAlertState.to_json of the hand-written serialiser (before msgspec), mid-incident:
#: "a" fires critical, "b" was notified and has one ok evaluation of the two it needs.
OLD_STATE = (
    '{"version": 1, "model": "churn", "last_retrain_at": null, "groups": [{"labels": {"model": '
    '"churn"}, "fingerprint": "551b4c16ab5dd227", "incident_started_at": 0, "notified": true, '
    '"notified_keys": ["drift:a", "drift:b"], "notified_severity": "critical", '
    '"last_notified_at": 0, "seq": 1, "muted_keys": [], "tracks": {"drift:a": {"firing": true, '
    '"active_streak": 2, "ok_streak": 0, "severity": "critical", "since": 0, "resolve_after": 2, '
    '"repeat_interval": 14400.0, "last": {"model": "churn", "kind": "drift", "subject": "a", '
    '"severity": "critical", "value": 0.5, "threshold": 0.2, "detector": "ks", "details": '
    '{"ks": 0.5, "p_value": 1e-09, "n": 7}}}, "drift:b": {"firing": true, "active_streak": 0, '
    '"ok_streak": 1, "severity": "warning", "since": 0, "resolve_after": 2, "repeat_interval": '
    '14400.0, "last": {"model": "churn", "kind": "drift", "subject": "b", "severity": "ok", '
    '"value": 0.01, "threshold": 0.2, "detector": "ks", "details": {"ks": 0.01, "p_value": '
    '1e-09, "n": 7}}}}}]}'
)


def test_state_written_by_the_old_serialiser_loads_and_continues():
    doc = json.loads(OLD_STATE)
    state = ModelAlertState.from_json(doc)
    assert state.to_json() == doc
    d = decide(state, [sig(C, "a"), sig(O, "b")], ctx(120), 120, rules=[AlertRule(resolve_after=2)])
    assert [(a.kind, [s.subject for s in a.cleared]) for a in d.actions] == [("update", ["b"])]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("model", 5), "model"),
        (("groups", [{"labels": {}}]), "fingerprint"),
        (("groups", "nope"), "groups"),
    ],
)
def test_malformed_state_is_a_state_error_naming_the_field(change, field):
    doc = {**json.loads(OLD_STATE), change[0]: change[1]}
    with pytest.raises(StateError, match=field):
        ModelAlertState.from_json(doc)


def test_a_bad_signal_kind_in_a_stored_track_is_refused():
    doc = json.loads(
        OLD_STATE.replace('"kind": "drift", "subject": "a"', '"kind": "x", "subject": "a"')
    )
    with pytest.raises(StateError, match="kind"):
        ModelAlertState.from_json(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([O, O, W, C]), min_size=4, max_size=4), min_size=1, max_size=40
    ),
    st.integers(1, 2),
    st.integers(1, 3),
)
def test_property_many_signals_evidence_is_the_current_signal(steps, for_, resolve_after):
    """Four features at once (most evaluations: mostly ok signals, which the policy steps
    cheaply when nothing is open for them): each action carries, for every feature it names
    or clears, the signal of *this* evaluation; fire and resolve alternate; a firing feature
    is named until it resolves, and an ok one that was notified is cleared by an update."""
    rule = AlertRule(**{"for": for_, "resolve_after": resolve_after})
    subjects = ["a", "b", "c", "d"]
    state, opens_closes, notified = None, [], set()
    for i, sevs in enumerate(steps):
        signals = [sig(s, subject) for s, subject in zip(sevs, subjects, strict=True)]
        d = decide(state, signals, ctx(i * STEP, i), i * STEP, rules=[rule])
        state = d.state
        current = {s.subject: s for s in signals}
        for action in d.actions:
            opens_closes += [action.kind] if action.kind in ("fire", "resolve") else []
            for named in (*action.signals, *action.cleared):
                assert named is current[named.subject]
            names = {s.subject for s in action.signals}
            if action.kind == "resolve":  # names every feature the incident notified
                assert names == notified
                notified = set()
            else:
                notified = (notified - {s.subject for s in action.cleared}) | names
    assert opens_closes == ["fire", "resolve"] * (len(opens_closes) // 2) + (
        ["fire"] if len(opens_closes) % 2 else []
    )
