"""Segments: drift per declared slice of the traffic, beside the whole (monitor/segments.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.config import check_config, parse_config
from monitor.errors import ConfigError
from monitor.evaluation import Evaluation
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.segments import MAX_VALUE_CHARS, OTHER, segment_label, segment_value_text

WINDOW = {"size": 5000, "step": 1000}
REGIONS = ["north", "south", "east", "west"]
SHARES = [0.1, 0.3, 0.3, 0.3]


def _events(
    seed: int, n: int, *, shift_north: float = 0.0, regions: list[str] | None = None, start=0
) -> ModelEvents:
    """Events of a model whose regions differ by nature (north is richer): a segment
    compared with the whole reference would always look drifted."""
    rng = np.random.default_rng(seed)
    names = regions or REGIONS
    # Indices, not a numpy array of the strings: a hostile value may be huge.
    idx = rng.choice(len(names), size=n, p=None if regions else SHARES)
    region = [names[i] for i in idx]
    north = np.array([r == "north" for r in region])
    a = rng.normal(size=n) + np.where(north, 2.0, 0.0)
    b = rng.normal(size=n) + np.where(north, shift_north, 0.0)
    c = rng.normal(size=n)
    out = ModelEvents("m")
    for i in range(n):
        out.event_ids.append(f"e{start + i}")
        out.timestamps.append(float(start + i))
        out.versions.append(None)
        out.features.append(
            {"a": float(a[i]), "b": float(b[i]), "c": float(c[i]), "region": region[i]}
        )
        out.predictions.append(0.5)
    return out


def _monitor(**model: object) -> ModelMonitor:
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "window": WINDOW,
                    "reference": {"learn_first": 10_000},
                    "segments": ["region"],
                    **model,
                }
            ]
        }
    )
    return ModelMonitor(cfg.model("m"), cfg.limits)  # type: ignore[arg-type]


def _firing(evaluations: list[Evaluation]) -> list[tuple[int, str, str | None]]:
    return [
        (i, s.subject, s.segment)
        for i, e in enumerate(evaluations)
        for s in e.signals
        if s.severity != "ok"
    ]


def test_stationary_heterogeneous_segments_raise_nothing() -> None:
    mm = _monitor()
    mm.ingest(_events(1, 10_000))
    evals = mm.ingest(_events(2, 15_000, start=10_000))
    assert len(evals) == 11
    assert _firing(evals) == []
    last = evals[-1]
    labels = [s.segment for s in last.segments]
    assert sorted(labels[:4]) == sorted(f"region={r}" for r in REGIONS)
    assert labels[-1] == f"region={OTHER}"
    assert labels[3] == "region=north"  # the least traffic of the top values comes last
    north = last.segments[3]
    assert north.tested and north.reference == "segment" and 400 < north.rows < 600
    # The slice's own column is constant within a value: not tested there.
    assert set(north.verdicts) == {"a", "b", "c", "__prediction__"}
    other = last.segments[-1]
    assert other.rows == 0 and not other.tested


def test_a_shift_in_a_tenth_of_the_traffic_is_named_with_its_segment() -> None:
    mm = _monitor()
    mm.ingest(_events(1, 10_000))
    assert _firing(mm.ingest(_events(2, 5000, start=10_000))) == []
    evals = mm.ingest(_events(3, 2000, shift_north=1.5, start=15_000))
    assert len(evals) == 2  # the two evaluations after the onset
    fired = _firing(evals)
    assert (1, "b", "region=north") in fired or (0, "b", "region=north") in fired
    assert all(seg == "region=north" for _, _, seg in fired if seg is not None)


def test_segment_p_values_are_bonferroni_corrected_over_segments_and_columns() -> None:
    mm = _monitor()
    mm.ingest(_events(1, 10_000))
    (ev,) = mm.ingest(_events(2, 5000, start=10_000))
    tested = [s for s in ev.segments if s.tested]
    results = [r for s in tested for v in s.verdicts.values() for r in v.results]
    m = len(results)
    # a, b, c and the prediction with KS (region is the slice: never tested in it)
    assert m == len(tested) * 4
    for r in results:
        assert r.detector == "ks"
        assert r.p_value == pytest.approx(min(1.0, r.details["raw_p_value"] * m))


def test_top_k_bounds_the_segments_and_pools_the_rest() -> None:
    regions = [f"r{i}" for i in range(40)]
    mm = _monitor(segments={"by": ["region"], "top_k": 3, "min_window_rows": 20})
    mm.ingest(_events(1, 10_000, regions=regions))
    (ev,) = mm.ingest(_events(2, 5000, regions=regions, start=10_000))
    assert len(ev.segments) == 4
    assert ev.segments[-1].segment == f"region={OTHER}"
    assert ev.segments[-1].rows == 5000 - sum(s.rows for s in ev.segments[:3])


def test_hostile_segment_values_are_escaped_and_bounded() -> None:
    # Long, alike in their first MAX_VALUE_CHARS, and within limits.max_category_chars (a
    # longer value is no category at all: missing, tests/test_long_categories.py).
    hostile = ["<script>alert(1)</script>", "\ud800x", "a\nb", "x" * 1_000, "x" * 400]
    mm = _monitor(segments={"by": ["region"], "top_k": 5, "min_window_rows": 20})
    mm.ingest(_events(1, 10_000, regions=hostile))
    (ev,) = mm.ingest(_events(2, 5000, regions=hostile, start=10_000))
    labels = [seg.segment for seg in ev.segments]
    assert len(set(labels)) == len(labels) == 6  # the two long values stay apart
    for seg in ev.segments:
        assert len(seg.segment) <= len("region=") + MAX_VALUE_CHARS + 3 + 2
        assert seg.segment.isprintable()
        seg.segment.encode("utf-8")  # no lone surrogate left
        assert "\n" not in seg.segment
    assert segment_value_text("\ud800") == "\\ud800"
    assert segment_label(("region",), ("=,\\",)) == "region=\\x3d\\x2c\\x5c"


def test_combinations_and_model_version_slices() -> None:
    mm = _monitor(segments={"by": [["region", "model_version"]], "min_window_rows": 20})
    ev0 = _events(1, 10_000)
    mm.ingest(ev0)
    ev = _events(2, 5000, start=10_000)
    ev.versions[:] = ["v1" if i % 2 else "v2" for i in range(5000)]
    (out,) = mm.ingest(ev)
    labels = {s.segment for s in out.segments}
    assert len(labels) == 6 and "region=south,model_version=v1" in labels
    assert "region=__other__,model_version=__other__" in labels  # north's two, pooled
    assert all(s.reference == "overall" for s in out.segments)  # rows carry no version


def test_config_shorthand_bounds_and_errors() -> None:
    cfg = parse_config({"defaults": {"segments": ["region", ["region", "tier"]]}})
    assert cfg.defaults.segments.specs() == [("region",), ("region", "tier")]
    assert cfg.defaults.segments.top_k == 5
    with pytest.raises(ConfigError) as err:
        parse_config({"models": [{"name": "m", "segments": {"by": ["x"], "topk": 3}}]})
    assert "models[0].segments.topk" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"models": [{"name": "m", "segments": [["a", "a"]]}]})
    assert "models[0].segments.by" in str(err.value) and "repeated" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"models": [{"name": "m", "segments": ["__prediction__"]}]})
    assert "prediction" in str(err.value)
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "features": {"income": "numeric", "region": "categorical"},
                    "segments": ["income", "region", "tier", "model_version"],
                }
            ]
        }
    )
    problems = check_config(cfg, references=False)
    assert any("segments.by[0]" in p and "numeric" in p for p in problems)
    assert any("segments.by[2]" in p and "not a declared feature" in p for p in problems)
    assert not any("by[1]" in p or "by[3]" in p for p in problems)


def test_a_checkpoint_carries_the_segments_and_restores_them_exactly() -> None:
    from monitor.state_format import decode, encode

    seg = {"by": ["region", ["region", "model_version"]], "min_window_rows": 20}
    a = _monitor(segments=seg)
    a.ingest(_events(1, 10_000))
    first = _events(2, 5500, start=10_000)
    first.versions[:] = ["v1" if i % 3 else "v\ud800" for i in range(5500)]
    a.ingest(first)
    # The learned reference (with its segments), the runs and the version codes survive.
    b, notes = ModelMonitor.restore(a.settings, a.limits, decode(encode(a.export_state())))
    assert notes == []
    assert b.reference is not None and set(b.reference.segments) == {("region",)}
    later = _events(3, 3000, shift_north=1.5, start=15_500)
    later.versions[:] = ["v1"] * 3000
    ea, eb = a.ingest(later), b.ingest(later)
    assert len(ea) == 3
    assert [e.signals for e in ea] == [e.signals for e in eb]
    assert [[(s.segment, s.rows) for s in e.segments] for e in ea] == [
        [(s.segment, s.rows) for s in e.segments] for e in eb
    ]
    assert any(s.segment == "region=north" and s.severity != "ok" for s in ea[-1].signals)


def _notification(*signals: object) -> object:
    from monitor.alerting.notification import Notification

    return Notification(
        idempotency_key="k",
        fingerprint="f",
        action="fire",
        status="firing",
        model="m",
        model_version=None,
        group={"model": "m"},
        severity="critical",
        started_at=0.0,
        evaluated_at=0.0,
        window_start=0.0,
        window_end=0.0,
        window_events=1,
        signals=tuple(signals),  # type: ignore[arg-type]
    )


def test_a_notification_names_the_segment_in_text_and_every_payload() -> None:
    import json

    from monitor.alerting.alertmanager import alert_labels
    from monitor.alerting.notification import Notification, SignalEvidence
    from monitor.alerting.pagerduty import pagerduty_event
    from monitor.alerting.slack import slack_message

    hostile = segment_label(("region",), ("<!channel> `x` &\ud800",))
    seg = SignalEvidence("drift", "income", "critical", 0.4, 1e-5, "ks", 1e-9, segment=hostile)
    n = _notification(seg)
    assert n.summary() == f"[FIRING:critical] m: 1 signal (income drifted in {hostile})"  # type: ignore[attr-defined]
    payload = n.to_payload()  # type: ignore[attr-defined]
    assert payload["signals"][0]["segment"] == hostile
    json.dumps(payload).encode("utf-8")  # valid UTF-8 all through
    body = slack_message(n)  # type: ignore[arg-type]
    # Every field Slack parses as mrkdwn is escaped (the header is plain_text: shown as is).
    parsed = [body["text"]] + [
        b["text"]["text"] for b in body["blocks"] if b.get("text", {}).get("type") == "mrkdwn"
    ]
    assert all("<!channel>" not in t for t in parsed)
    assert "&lt;!channel&gt;" in parsed[0] and "&lt;!channel&gt;" in parsed[1]
    pd = pagerduty_event(n, "rk")  # type: ignore[arg-type]
    assert pd["payload"]["custom_details"]["signals"][0]["segment"] == hostile
    assert "drifted in region=" in pd["payload"]["summary"]
    assert alert_labels(n)["segment"] == hostile  # type: ignore[arg-type]
    assert Notification.decode(n.encode()) == n  # type: ignore[attr-defined]
    # A row of an earlier build (no segment) still loads, as the whole traffic.
    old = json.loads(n.encode())  # type: ignore[attr-defined]
    del old["signals"][0]["segment"]
    assert Notification.decode(json.dumps(old)).signals[0].segment is None
    whole = SignalEvidence("drift", "income", "critical", 0.4, 1e-5, "ks", 1e-9)
    assert "segment" not in alert_labels(_notification(seg, whole))  # type: ignore[arg-type]


def test_a_segment_signal_is_its_own_alert_track() -> None:
    from monitor.alerting.config import AlertingConfig
    from monitor.alerting.policy import decide
    from monitor.signals import EvaluationContext, Signal

    rules = AlertingConfig.model_validate({"rules": [{}]}).rules
    ctx = EvaluationContext("m", None, 1.0, 0.0, 1.0, 10, 10, 1)
    whole = Signal("m", "drift", "income", "ok", 0.1, 0.2, "psi")
    north = Signal("m", "drift", "income", "critical", 0.4, 1e-5, "ks", segment="region=north")
    decision = decide(None, [whole, north], ctx, 1.0, rules=rules)
    (action,) = decision.actions
    assert action.kind == "fire"
    assert [(s.subject, s.segment) for s in action.signals] == [("income", "region=north")]


def test_the_first_format_fixture_restores_into_a_model_with_segments() -> None:
    """A checkpoint of before segments (no segment fields) restores; the segments start
    anew, the window's rows have no model version, and the next evaluation has them."""
    from pathlib import Path

    from monitor.state_format import decode
    from tests import state_fixture as fx

    blob = (Path(__file__).parent / "fixtures" / "model-state-v1.bin").read_bytes()
    raw = {"models": [{**fx.RAW_CONFIG["models"][0]}]}
    raw["models"][0]["segments"] = {
        "by": ["region", ["region", "model_version"]],
        "min_window_rows": 20,
    }
    cfg = parse_config(raw)
    mm, _ = ModelMonitor.restore(cfg.model(fx.MODEL), cfg.limits, decode(blob), fx.reference())  # type: ignore[arg-type]
    assert (mm.events_total, mm.window.size) == (1_700, 300)
    assert mm.version_window is not None and mm.version_window.size == 300
    events, _ = fx.stream(1_800)
    (ev,) = mm.ingest(events.slice(1_700, 1_800))
    by_slice = {}
    for s in ev.segments:
        by_slice.setdefault(s.slice, 0)
        by_slice[s.slice] += s.rows
    assert by_slice == {"region": 300, "region,model_version": 300}


def test_segment_signals_do_not_count_as_more_drifted_features_for_retraining() -> None:
    from monitor.alerting.config import RetrainPolicy
    from monitor.alerting.retrain_policy import decide_retrain
    from monitor.signals import EvaluationContext, Signal

    ctx = EvaluationContext("m", None, 100.0, 0.0, 90.0, 10, 10)
    policy = RetrainPolicy(receiver="r", min_critical_drifted_features=2)
    income = Signal("m", "drift", "income", "critical", 0.5, 0.2)
    in_regions = [
        Signal("m", "drift", "income", "critical", 0.5, 1e-5, "ks", segment=f"region={r}")
        for r in ("north", "south", "east")
    ]
    assert not decide_retrain(policy, None, [income, *in_regions], ctx, 100.0).trigger
    age = Signal("m", "drift", "age", "critical", 0.5, 0.2)
    assert decide_retrain(policy, None, [income, age, *in_regions], ctx, 100.0).trigger


def test_time_windows_select_the_segments_of_the_evaluated_span() -> None:
    window = {"type": "time", "seconds": 2000, "step_seconds": 1000, "size": 20_000}
    mm = _monitor(window=window, segments={"by": [["region", "model_version"]], "top_k": 8})
    mm.ingest(_events(1, 10_000))
    ev = _events(2, 6000, start=10_000)
    ev.versions[:] = ["v1" if i < 3000 else "v2" for i in range(6000)]
    evals = mm.ingest(ev)
    assert evals
    last = evals[-1]
    # The span evaluated holds only v2's events: every v1 segment is empty.
    assert last.context.window_events == sum(s.rows for s in last.segments)
    assert all(s.rows == 0 for s in last.segments if s.segment.endswith("model_version=v1"))
    assert any(s.rows > 0 for s in last.segments if s.segment.endswith("model_version=v2"))


def test_a_segment_matcher_mutes_or_alerts_on_one_slice_only() -> None:
    """``segment`` on a silence, a config silence and a rule: one noisy slice is muted (or
    held to another bar) while the same feature elsewhere still alerts."""
    from datetime import UTC, datetime

    from monitor.alerting.config import AlertingConfig
    from monitor.alerting.policy import decide
    from monitor.alerting.rules import rule_for
    from monitor.alerting.silences import Silence, from_config, is_silenced
    from monitor.signals import EvaluationContext, Signal

    def sig(segment: str | None) -> Signal:
        return Signal("m", "drift", "income", "critical", 0.4, 1e-5, "ks", segment=segment)

    whole, north, south = sig(None), sig("region=north"), sig("region=south")
    north_only = Silence("s", 0.0, 100.0, subject="income", segment="region=north")
    assert [is_silenced([north_only], s, 5.0) for s in (whole, north, south)] == [
        False,
        True,
        False,
    ]
    any_region = Silence("s", 0.0, 100.0, segment="region=*")
    assert [is_silenced([any_region], s, 5.0) for s in (whole, north, south)] == [
        False,
        True,
        True,
    ]
    whole_only = Silence("s", 0.0, 100.0, segment="")
    assert [is_silenced([whole_only], s, 5.0) for s in (whole, north, south)] == [
        True,
        False,
        False,
    ]
    assert is_silenced([Silence("s", 0.0, 100.0)], north, 5.0)  # the default: every signal
    # The silences page lists the segment matcher, as text.
    from monitor.silences_api import silence_json
    from monitor.ui.render import environment, fmt

    shown = Silence("s", 0.0, 100.0, segment="region=<b>x</b>")
    ui = {"charts": False, "silence_management": True, "history_size": 0}
    page = (
        environment()
        .get_template("silences.html")
        .render(
            title="t", data={"silences": [silence_json(shown)]}, ui=ui, fmt=fmt, standalone=False
        )
    )
    assert "<td>region=&lt;b&gt;x&lt;/b&gt;</td>" in page and 'name="segment"' in page

    cfg = AlertingConfig.model_validate(
        {
            "rules": [
                {"name": "noisy", "segment": "region=north", "min_severity": "critical"},
                {"name": "rest"},
            ],
            "silences": [
                {
                    "matchers": {"segment": "region=north"},
                    "starts_at": datetime(2024, 1, 1, tzinfo=UTC),
                    "ends_at": datetime(2024, 1, 2, tzinfo=UTC),
                }
            ],
        }
    )
    assert [getattr(rule_for(cfg.rules, s), "name", None) for s in (whole, north, south)] == [
        "rest",
        "noisy",
        "rest",
    ]
    (static,) = from_config(cfg.silences)
    assert static.segment == "region=north"
    # Through the policy: north muted, the feature in the whole traffic and in south fires.
    ctx = EvaluationContext("m", None, 1.0, 0.0, 1.0, 10, 10, 1)
    decision = decide(None, [whole, north, south], ctx, 1.0, rules=cfg.rules, silences=[north_only])
    fired = [a for a in decision.actions if a.kind == "fire"]
    assert [(s.subject, s.segment) for a in fired for s in a.signals] == [
        ("income", None),
        ("income", "region=south"),
    ]


async def test_the_silences_api_takes_a_segment_matcher_and_keeps_it(tmp_path: Path) -> None:
    """POST /api/silences with ``matchers.segment``: listed with it, persisted across a
    restart, and it mutes that slice's signal only; a record of an earlier build (no
    segment) still loads, matching every signal."""
    import json
    import random
    import sqlite3
    import time

    import httpx
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from monitor.alerting.config import AlertingConfig
    from monitor.alerting.engine import AlertService
    from monitor.clock import SystemClock
    from monitor.signals import EvaluationContext, Signal
    from monitor.silences_api import register_routes
    from tests.alert_receivers import RecordingReceiver

    rx = await RecordingReceiver().start()
    hook = {"hook": {"type": "webhook", "url": rx.url}}

    def service() -> AlertService:
        return AlertService(
            AlertingConfig.model_validate({"rules": [{}], "receivers": hook}),
            registry=CollectorRegistry(),
            clock=SystemClock(),
            outbox_path=str(tmp_path / "o.db"),
            rng=random.Random(1),
            poll_interval_seconds=0.05,
        )

    svc = service()
    await svc.start()
    app = web.Application()
    register_routes(app, svc, "tok")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}/api/silences"
    ok = {"Authorization": "Bearer tok"}
    try:
        async with httpx.AsyncClient() as client:
            new = {
                "matchers": {"model": "m", "subject": "income", "segment": "region=north"},
                "duration_seconds": 3600,
            }
            created = await client.post(base, json=new, headers=ok)
            assert created.status_code == 201 and created.json()["segment"] == "region=north"
            listed = (await client.get(base)).json()["silences"]
            assert [s["segment"] for s in listed] == ["region=north"]
            too_long = {"matchers": {"segment": "x" * 201}, "duration_seconds": 60}
            r = await client.post(base, json=too_long, headers=ok)
            assert r.status_code == 400 and "matchers.segment" in r.json()["error"]
            # A glob without '=' or a wildcard matches no label: refused, not kept silently.
            r = await client.post(
                base, json={"matchers": {"segment": "north"}, "duration_seconds": 60}, headers=ok
            )
            assert r.status_code == 400 and "matches no segment" in r.json()["error"]
        now = time.time()
        ctx = EvaluationContext("m", None, now, now - 60, now, 10, 10, 1)

        def sig(segment: str | None) -> Signal:
            return Signal("m", "drift", "income", "critical", 0.4, 1e-5, "ks", segment=segment)

        sent = svc.submit(ctx, [sig("region=north")])
        assert [n.action for n in sent] == []  # muted
    except BaseException:
        await rx.stop()
        raise
    finally:
        await runner.cleanup()
        await svc.stop()
    # A restart reads it back; a record without a segment (an earlier build) loads too.
    conn = sqlite3.connect(tmp_path / "o.db")
    old = {"id": "old", "starts_at": 0.0, "ends_at": 1.0, "model": "x", "subject": "*"}
    old |= {"kind": None, "comment": "", "created_by": "", "source": "api"}
    with conn:
        conn.execute(
            "INSERT INTO silences (id, record, ends_at) VALUES (?, ?, ?)",
            ("old", json.dumps(old), 1.0),
        )
    conn.close()
    svc = service()
    await svc.start()
    try:
        by_id = {s.id: s for s in svc.list_silences(include_expired=True)}
        assert by_id["old"].segment == "*"
        assert sorted(s.segment for s in by_id.values()) == ["*", "region=north"]
        now = time.time()
        ctx = EvaluationContext("m", None, now, now - 60, now, 10, 10, 2)
        sent = svc.submit(ctx, [sig("region=north"), sig("region=south")])
        (fire,) = sent
        assert [s.segment for s in fire.signals] == ["region=south"]
    finally:
        await svc.stop()
        await rx.stop()


@pytest.mark.parametrize("bad", [-7, -(2**31), 2**31 - 1])
def test_a_checkpoint_with_a_model_version_code_out_of_range_is_refused_as_corrupt(
    bad: int,
) -> None:
    """A damaged or forged checkpoint whose version codes are outside the saved vocabulary
    (-7 decoded as a version that is not there: IndexError at every evaluation) is refused
    as corrupt at restore, as a category code out of range is, not adopted."""
    from monitor.state_format import StateFormatError, decode, encode, pack_array, unpack_array

    a = _monitor(segments={"by": ["model_version"], "min_window_rows": 20})
    a.ingest(_events(1, 10_000))
    first = _events(2, 5500, start=10_000)
    first.versions[:] = [f"v{i % 3}" for i in range(5500)]
    a.ingest(first)
    state = decode(encode(a.export_state()))
    codes = unpack_array(state.version_codes)  # type: ignore[arg-type]
    b, _ = ModelMonitor.restore(a.settings, a.limits, decode(encode(state)))
    assert b.ingest(_events(3, 1000, start=15_500))  # the state as written restores
    codes[: codes.size // 2] = bad
    state.version_codes = pack_array(codes.astype(np.int32))
    with pytest.raises(StateFormatError) as err:
        ModelMonitor.restore(a.settings, a.limits, decode(encode(state)))
    assert err.value.reason == "corrupt" and "model_version code" in str(err.value)


def test_a_lower_top_k_applies_to_a_restored_learned_reference() -> None:
    """The learned reference (checkpointed) holds the top values of the top_k it was learned
    with: restored under a lower top_k, the slice kept its old count (6 labels for top_k 2,
    past the documented bound). Now its first top_k values are tracked, and the rest, which
    the reference's pooled rest does not match any more, is compared with the whole."""
    from monitor.state_format import decode, encode

    regions = [f"r{i}" for i in range(8)]
    a = _monitor(segments={"by": ["region"], "top_k": 5, "min_window_rows": 20})
    a.ingest(_events(1, 10_000, regions=regions))
    (before,) = a.ingest(_events(2, 5000, regions=regions, start=10_000))
    assert len(before.segments) == 6
    lower = _monitor(segments={"by": ["region"], "top_k": 2, "min_window_rows": 20})
    b, _ = ModelMonitor.restore(lower.settings, lower.limits, decode(encode(a.export_state())))
    evals = b.ingest(_events(3, 5000, regions=regions, start=15_000))
    last = evals[-1]
    assert [s.segment for s in last.segments] == [s.segment for s in before.segments[:2]] + [
        f"region={OTHER}"
    ]
    assert [s.reference for s in last.segments] == ["segment", "segment", "overall"]
    assert _firing(evals) == []


def test_segments_with_a_previous_window_reference_are_refused_with_the_reason() -> None:
    """Segments are compared with the fixed reference: with ``previous_window`` the whole
    traffic ignored a slow drift (as chosen) while every segment paged it, evaluation after
    evaluation. The combination is a configuration error naming the model."""
    previous = {"mode": "previous_window", "learn_first": 100}
    with pytest.raises(ConfigError) as err:
        parse_config({"models": [{"name": "m", "segments": ["region"], "reference": previous}]})
    assert "model 'm': segments need reference.mode fixed" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"defaults": {"segments": ["region"], "reference": previous}})
    assert "defaults: segments need reference.mode fixed" in str(err.value)
    # A model may opt out of the defaults' segments to use previous_window.
    cfg = parse_config(
        {
            "defaults": {"segments": ["region"]},
            "models": [{"name": "m", "segments": [], "reference": previous}],
        }
    )
    assert cfg.model("m").segments.specs() == []  # type: ignore[union-attr]


def test_a_restart_applies_new_segment_settings_to_a_learned_reference() -> None:
    """A learned reference comes back from the checkpoint with the segments it was built
    with; a lower top_k or a higher min_reference_rows in the new config still holds, and
    the restore notes say the segment settings changed."""
    from monitor.state_format import decode, encode

    a = _monitor(segments={"by": ["region"], "min_window_rows": 20})
    a.ingest(_events(1, 10_000))
    state = a.export_state()
    later = _events(3, 5000, start=10_000)

    def restored(**seg: object) -> tuple[ModelMonitor, list[str]]:
        cfg = parse_config(
            {
                "models": [
                    {
                        "name": "m",
                        "window": WINDOW,
                        "reference": {"learn_first": 10_000},
                        "segments": {"by": ["region"], "min_window_rows": 20, **seg},
                    }
                ]
            }
        )
        return ModelMonitor.restore(cfg.model("m"), cfg.limits, decode(encode(state)))  # type: ignore[arg-type]

    same, notes = restored()
    assert notes == []
    assert len(same.ingest(later)[-1].segments) == len(REGIONS) + 1

    b, notes = restored(top_k=2)
    assert any(n.startswith("segments: settings changed") for n in notes), notes
    segs = b.ingest(later)[-1].segments
    assert [s.segment for s in segs][-1] == "region=__other__"
    assert len(segs) == 3  # two values and the rest, not the four the reference ranked
    # The rest now pools values its saved reference did not: compared with the whole.
    assert segs[-1].reference == "overall"
    assert all(s.reference == "segment" for s in segs[:2])

    c, notes = restored(min_reference_rows=5000)
    assert any(n.startswith("segments: settings changed") for n in notes), notes
    assert {s.reference for s in c.ingest(later)[-1].segments} == {"overall"}


def test_a_segment_matcher_that_can_match_nothing_is_refused_at_its_path() -> None:
    """``segment: north`` (no column) or ``regoin=north`` (a column no slice starts with)
    in a rule or a config silence would match no signal: the rule or silence would be
    silently ignored, so the schema or check-config reports it at its path."""
    window = {"starts_at": "2024-05-01T00:00:00Z", "ends_at": "2024-05-08T00:00:00Z"}
    for alerting, where in (
        ({"rules": [{"segment": "north"}]}, "alerting.rules[0].segment"),
        ({"silences": [{"matchers": {"segment": "north"}, **window}]}, "alerting.silences[0]"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config({"alerting": alerting})
        assert any(p.startswith(where) and "matches no segment" in p for p in info.value.problems)
    models = [{"name": "m", "features": {"region": "categorical", "tier": "categorical"}}]
    models[0]["segments"] = ["region", ["tier", "region"]]
    ok = [{"segment": s} for s in ("*", "", "region=north", "tier=gold,region=*", "*north")]
    typo = {"segment": "regoin=north"}
    cfg = parse_config(
        {
            "models": models,
            "alerting": {
                "rules": [*ok, typo],
                "silences": [
                    {"matchers": {"segment": "tier=gold,region=*"}, **window},
                    {"matchers": {"segment": "teir=gold"}, **window},
                ],
            },
        }
    )
    problems = check_config(cfg, references=False)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"alerting.rules[{len(ok)}].segment: column 'regoin'")
    assert problems[1].startswith("alerting.silences[1].matchers.segment: column 'teir'")


def test_check_config_checks_segments_against_every_reference_a_model_may_switch_to(
    tmp_path: Path,
) -> None:
    """Without declared features the segment columns are checked against the references:
    a ``reference.versions`` file without the column would disable the model once that
    model_version's events arrive, so check-config (and so run) names it."""
    import json

    def write(name: str, with_region: bool) -> str:
        rng = np.random.default_rng(0)
        path = tmp_path / name
        with path.open("w") as f:
            for i in range(300):
                features: dict[str, object] = {"a": float(rng.normal())}
                if with_region:
                    features["region"] = REGIONS[i % 4]
                f.write(json.dumps({"model": "m", "features": features, "prediction": 0.5}))
                f.write("\n")
        return str(path)

    reference = {"path": write("main.jsonl", True), "versions": {"v2": write("v2.jsonl", False)}}
    cfg = parse_config({"models": [{"name": "m", "reference": reference, "segments": ["region"]}]})
    problems = check_config(cfg)
    assert len(problems) == 1, problems
    assert problems[0].startswith("models[0].segments.by[0]: 'region' is not a feature in ")
    assert "reference.versions.v2" in problems[0]


def test_a_models_segments_without_by_is_reported_not_silently_unused() -> None:
    """``segments: {top_k: 3}`` on a model replaces the defaults' whole section: the model
    has no slice and top_k does nothing. check-config (and so run) says so; ``[]`` (no
    segments for this model) stays valid."""
    features = {"region": "categorical"}

    def problems(segments: object) -> list[str]:
        model = {"name": "m", "features": features, "segments": segments}
        cfg = parse_config({"defaults": {"segments": ["region"]}, "models": [model]})
        return check_config(cfg, references=False)

    (only,) = problems({"top_k": 3, "min_window_rows": 50})
    assert only.startswith("models[0].segments: min_window_rows, top_k without by")
    assert "['region'] is not inherited" in only
    assert problems([]) == []
    assert problems({"by": ["region"], "top_k": 3}) == []
