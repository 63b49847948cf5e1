"""One model's pipeline core: exact evaluation points, drift on the right features,
state that checkpoints and continues identically."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.config import parse_config
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import ReferenceProfile, build_profile
from monitor.simulate import DriftSpec, Simulator
from monitor.state_format import decode, encode
from tests.sim_events import model_events

WINDOW = {"size": 1000, "step": 250}


def _monitor(**model: object) -> ModelMonitor:
    cfg = parse_config({"models": [{"name": "credit-risk", "window": WINDOW, **model}]})
    sim = Simulator(seed=1)
    ref = build_profile(
        "credit-risk", [(e["features"], e["prediction"]) for e, _ in sim.events(4000)]
    )
    return ModelMonitor(cfg.model("credit-risk"), cfg.limits, ref)  # type: ignore[arg-type]


def _checkpoint(mm: ModelMonitor) -> ModelMonitor:
    """Save ``mm`` as the service does and restore it with the same settings and reference."""
    restored, notes = ModelMonitor.restore(
        mm.settings, mm.limits, decode(encode(mm.export_state())), mm._base_reference
    )
    assert notes == []
    return restored


def _run(mm: ModelMonitor, events: ModelEvents, sizes: list[int]) -> list:
    out, pos = [], 0
    for n in sizes:
        chunk = ModelEvents(events.model)
        for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
            getattr(chunk, name).extend(getattr(events, name)[pos : pos + n])
        out.extend(mm.ingest(chunk))
        pos += n
    assert pos == len(events)
    return out


def _fingerprint(evs: list) -> list:
    return [
        (
            e.context.events_total,
            tuple(sorted((f, round(s.mean, 9), round(s.std, 9)) for f, s in e.numeric.items())),
            tuple(
                sorted((f, tuple(round(r.statistic, 9) for r in rs)) for f, rs in e.results.items())
            ),
            tuple(e.drifting),
        )
        for e in evs
    ]


def test_evaluations_do_not_depend_on_batching() -> None:
    events = model_events(Simulator(seed=5, drift=DriftSpec("mean", ("income",), 1.0, 2500)), 4000)
    a = _fingerprint(_run(_monitor(), events, [4000]))
    b = _fingerprint(_run(_monitor(), events, [1, 999, 7, 1243, 250, 1500]))
    assert len(a) == 13  # evaluations at 1000, 1250, ..., 4000
    assert a == b


def test_drift_is_reported_for_exactly_the_drifted_features() -> None:
    mm = _monitor()
    stationary = _run(mm, model_events(Simulator(seed=9), 3000), [500] * 6)
    assert all(not e.drifting for e in stationary)
    assert all(s.severity == "ok" for e in stationary for s in e.signals)
    drifted = _run(
        mm,
        model_events(
            Simulator(seed=9, drift=DriftSpec("mean", ("income", "credit_score"), 1.0, 0)), 2000
        ),
        [500] * 4,
    )
    last = drifted[-1]
    # credit_score and income move the score too, so the prediction drifts with them.
    assert set(last.drifting) == {"income", "credit_score", "__prediction__"}
    firing = {s.subject for s in last.signals if s.severity != "ok"}
    assert firing == {"income", "credit_score", "__prediction__"}


def test_category_drift_and_missing_values_are_seen() -> None:
    mm = _monitor(quality={"max_missing_rate": 0.2})
    evs = _run(
        mm,
        model_events(Simulator(seed=2, drift=DriftSpec("category", ("region",), 2.0, 0)), 2000),
        [500] * 4,
    )
    assert "region" in evs[-1].drifting
    evs = _run(
        mm,
        model_events(Simulator(seed=3, drift=DriftSpec("missing", ("utilization",), 0.5, 0)), 1000),
        [1000],
    )
    q = {s.subject: s for s in evs[-1].signals if s.kind == "data_quality"}
    assert q["missing_rate:utilization"].severity == "warning"
    assert q["missing_rate:income"].severity == "ok"
    assert evs[-1].numeric["age"].missing_rate == pytest.approx(0.02, abs=0.015)


def test_state_checkpoints_and_continues_identically() -> None:
    events = model_events(Simulator(seed=4, drift=DriftSpec("mean", ("age",), 1.0, 2000)), 3000)
    whole = _monitor()
    expect = _fingerprint(_run(whole, events, [3000]))
    first = _monitor()
    head = ModelEvents(events.model)
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(head, name).extend(getattr(events, name)[:1700])
    got = first.ingest(head)
    restored = _checkpoint(first)
    tail = ModelEvents(events.model)
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(tail, name).extend(getattr(events, name)[1700:])
    got += restored.ingest(tail)
    assert _fingerprint(got) == expect


def test_reference_learned_from_first_events_then_evaluates() -> None:
    cfg = parse_config(
        {"models": [{"name": "credit-risk", "window": WINDOW, "reference": {"learn_first": 2000}}]}
    )
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits)  # type: ignore[arg-type]
    evs = _run(mm, model_events(Simulator(seed=8), 3500), [700] * 5)
    assert mm.ready and mm.reference is not None and mm.reference.rows == 2000
    assert mm.reference.schema()["region"] == "categorical"
    assert [e.context.events_total for e in evs] == [3000, 3250, 3500]


def test_mistyped_and_non_finite_values_count_as_missing_not_as_lostmodel_events() -> None:
    mm = _monitor()
    ev = model_events(Simulator(seed=6), 1000)
    ev.features[0]["income"] = "lots"
    ev.features[1]["income"] = float("inf")
    ev.features[2]["region"] = {"nested": 1}
    ev.features[3]["brand_new_feature"] = 1
    (e,) = mm.ingest(ev)
    assert mm.invalid_values == {
        ("income", "wrong_type"): 1,
        ("income", "non_finite_number"): 1,
        ("region", "wrong_type"): 1,
    }
    assert mm.unknown_feature_events == 1
    assert e.context.window_events == 1000
    assert e.numeric["income"].count == 998


def test_time_window_evaluates_on_event_time_and_keeps_only_recentmodel_events() -> None:
    window = {"type": "time", "seconds": 100, "step_seconds": 50, "size": 5000}
    cfg = parse_config({"models": [{"name": "credit-risk", "window": window}]})
    sim = Simulator(seed=1)
    rows = [(e["features"], e["prediction"]) for e, _ in sim.events(2000)]
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits, build_profile("credit-risk", rows))  # type: ignore[arg-type]
    events = model_events(Simulator(seed=2), 1000)
    events.timestamps = [float(i) for i in range(1000)]  # one event per second
    evs = _run(mm, events, [137, 400, 463])
    # Boundaries every 50 s of event time from the first event: 50, 100, ..., 950.
    assert len(evs) == 19
    last = evs[-1].context
    assert last.window_start == 850.0 and last.window_end == 949.0
    assert last.window_events == 100
    # A gap in the stream skips the empty boundaries instead of evaluating each of them,
    # once the events after it span a step (before, they could be one event stamped ahead:
    # held at the event clock, see Cadence.event_times).
    gap = model_events(Simulator(seed=3), 60)
    gap.timestamps = [5000.0 + i for i in range(60)]
    (ev,) = mm.ingest(gap)
    assert ev.context.window_end == 999.0 and ev.context.window_events == 100 + 50
    assert mm.cadence.next_eval_time == 5100.0


def _profile(sim: Simulator, n: int = 4000) -> ReferenceProfile:
    return build_profile(sim.model, [(e["features"], e["prediction"]) for e, _ in sim.events(n)])


def _versioned(events: ModelEvents, version: str) -> ModelEvents:
    events.versions = [version] * len(events)
    return events


def test_a_new_model_version_switches_to_its_own_reference() -> None:
    cfg = parse_config({"models": [{"name": "credit-risk", "window": WINDOW}]})
    settings = cfg.model("credit-risk")
    v1 = _profile(Simulator(seed=1))
    # Version 2 was trained on data where income is one sigma higher.
    v2 = _profile(Simulator(seed=2, drift=DriftSpec("mean", ("income",), 1.0, 0)))
    v2_events = _versioned(
        model_events(Simulator(seed=3, drift=DriftSpec("mean", ("income",), 1.0, 0)), 2000), "v2"
    )
    v1_events = _versioned(model_events(Simulator(seed=4), 1500), "v1")

    fixed = ModelMonitor(settings, cfg.limits, v1)  # type: ignore[arg-type]
    _run(fixed, v1_events, [1500])
    assert "income" in _run(fixed, v2_events, [2000])[-1].drifting  # against v1: drift

    switching = ModelMonitor(settings, cfg.limits, v1, {"v2": v2})  # type: ignore[arg-type]
    mixed = ModelEvents("credit-risk")
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(mixed, name).extend(getattr(v1_events, name) + getattr(v2_events, name))
    evs = _run(switching, mixed, [700, 1100, 1700])  # the switch falls inside a batch
    assert switching.reference_switches == 1 and switching.reference_version == "v2"
    assert switching.reference is v2
    after = [e for e in evs if e.context.events_total > 1500]
    # The window restarted at the first v2 event: its first evaluation is after 1000 v2 events.
    assert [e.context.events_total for e in after] == [2500, 2750, 3000, 3250, 3500]
    assert all(not e.drifting for e in after)


def test_two_listed_versions_sending_at_once_do_not_stop_the_evaluations() -> None:
    """A canary (or a rolling deploy, an A/B test) of v2 beside v1, both listed in
    ``reference.versions``: the reference flipped at every change of version and restarted
    the window each time, so the model never evaluated (0 evaluations here), blind for the
    whole rollout. A new version still switches at its first event; a return to a version
    used before takes 100 consecutive events of it (a rollback), the same whatever the
    batching and across a checkpoint."""
    cfg = parse_config({"models": [{"name": "credit-risk", "window": WINDOW}]})
    settings = cfg.model("credit-risk")
    v1, v2 = _profile(Simulator(seed=1)), _profile(Simulator(seed=2))
    rng = np.random.default_rng(6)
    canary = model_events(Simulator(seed=3), 8000)
    canary.versions = ["v2" if rng.random() < 0.1 else "v1" for _ in range(8000)]
    rollback = _versioned(model_events(Simulator(seed=4), 2000), "v1")
    stream = ModelEvents("credit-risk")
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(stream, name).extend(getattr(canary, name) + getattr(rollback, name))
    stream.timestamps = [float(i) for i in range(len(stream.event_ids))]

    def run(sizes: list[int], restore_after: int | None = None) -> tuple[ModelMonitor, list]:
        mm = ModelMonitor(settings, cfg.limits, v1, {"v1": v1, "v2": v2})  # type: ignore[arg-type]
        evs, pos = [], 0
        for n in sizes:
            evs += _run(mm, stream.slice(pos, pos + n), [n])
            pos += n
            if pos == restore_after:
                state = decode(encode(mm.export_state()))
                mm, _ = ModelMonitor.restore(
                    settings,  # type: ignore[arg-type]
                    cfg.limits,
                    state,
                    v1,
                    {"v1": v1, "v2": v2},
                )
        return mm, evs

    mm, evs = run([1000] * 10)
    in_canary = [e for e in evs if e.context.events_total <= 8000]
    assert len(in_canary) >= 25  # a window of 1000 by steps of 250 over 8000 events: 29
    # The rollback: v1 alone again for 100 events, then its reference, the window restarted.
    assert mm.reference_version == "v1"
    switches = mm.reference_switches
    # At the end of the canary v2 is in use and the last 9 events were v1: the 91st v1 event
    # of the rollback (event 8091) switches back, and the window starts again there.
    after = [e.context.events_total for e in evs if e.context.events_total > 8000]
    assert after == [8010, 9090, 9340, 9590, 9840]
    other, other_evs = run([333, 1777, 5, 4000, 1885, 2000], restore_after=8000)
    assert (other.reference_version, other.reference_switches) == ("v1", switches)
    assert [e.context.events_total for e in other_evs] == [e.context.events_total for e in evs]


def test_previous_window_reference_tracks_change_between_windows() -> None:
    def monitor(mode: str) -> ModelMonitor:
        cfg = parse_config(
            {"models": [{"name": "credit-risk", "window": WINDOW, "reference": {"mode": mode}}]}
        )
        return ModelMonitor(cfg.model("credit-risk"), cfg.limits, _profile(Simulator(seed=1)))  # type: ignore[arg-type]

    shifted = model_events(Simulator(seed=5, drift=DriftSpec("mean", ("income",), 1.0, 2000)), 6000)
    fixed = _run(monitor("fixed"), shifted, [6000])
    rolling = _run(monitor("previous_window"), shifted, [6000])
    assert "income" in fixed[-1].drifting  # still different from the original reference
    assert any("income" in e.drifting for e in rolling)  # the change itself is seen...
    assert "income" not in rolling[-1].drifting  # ...and clears once windows agree again


def test_label_drift_against_the_first_window_of_labels() -> None:
    from monitor.events import LabelEvents

    cfg = parse_config(
        {
            "models": [
                {
                    "name": "credit-risk",
                    "window": WINDOW,
                    "performance": {"task": "binary", "window_size": 1000},
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits, _profile(Simulator(seed=1)))  # type: ignore[arg-type]
    rng = np.random.default_rng(0)

    def step(seed: int, positive_rate: float | None) -> list:
        sim = Simulator(seed=seed)
        events, labels = ModelEvents("credit-risk"), LabelEvents("credit-risk")
        for e, label in sim.events(1000):
            events.event_ids.append(e["event_id"])
            events.timestamps.append(0.0)
            events.versions.append(None)
            events.features.append(e["features"])
            events.predictions.append(e["prediction"])
            labels.event_ids.append(e["event_id"])
            labels.labels.append(
                label if positive_rate is None else int(rng.random() < positive_rate)
            )
            labels.timestamps.append(0.0)
        mm.ingest_labels(labels, 0.0)  # labels first: held as early, joined with the predictions
        return mm.ingest(events, 0.0)

    quiet = [e for s in range(10, 14) for e in step(s, None)]
    assert all("__label__" not in e.drifting for e in quiet)
    assert "__label__" in quiet[-1].results  # label drift is evaluated once a reference exists
    shifted = [e for s in range(20, 22) for e in step(s, 0.8)]
    assert "__label__" in shifted[-1].drifting


def test_restore_notes_name_changed_multivariate_and_validation_settings() -> None:
    """Settings changed across a restart apply (the monitor is built from the config) and
    the restore notes say so, as they do for the window, drift and sample settings."""
    mm = _monitor()
    mm.ingest(model_events(Simulator(seed=2), 1500))
    state = decode(encode(mm.export_state()))
    for change, note in (
        ({"multivariate": {"variance": 0.8}}, "multivariate: settings changed"),
        ({"validation": {"tolerance": 0.01}}, "validation: settings changed"),
    ):
        cfg = parse_config({"models": [{"name": "credit-risk", "window": WINDOW, **change}]})
        settings = cfg.model("credit-risk")
        assert settings is not None
        restored, notes = ModelMonitor.restore(settings, cfg.limits, state, mm._base_reference)
        assert [n for n in notes if n.startswith(note)], notes
        assert restored.settings == settings
