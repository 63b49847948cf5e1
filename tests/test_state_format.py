"""The checkpoint format: what it restores, what it refuses, and config changes at restore."""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec
import numpy as np
import pytest

from monitor.config import parse_config
from monitor.detectors.ks import KSDetector
from monitor.detectors.streaming import ADWINDetector, PageHinkleyDetector
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.simulate import Simulator
from monitor.state_format import StateFormatError, decode, encode
from tests import state_fixture as fx

FIXTURE = Path(__file__).parent / "fixtures" / "model-state-v1.bin"
FIXTURE_V2 = Path(__file__).parent / "fixtures" / "model-state-v2.bin"


def _fingerprint(evs: list) -> list:  # type: ignore[type-arg]
    return [
        (
            e.context.events_total,
            {f: (s.mean, s.std, s.count) for f, s in e.numeric.items()},
            {f: [(r.detector, r.statistic, r.p_value) for r in rs] for f, rs in e.results.items()},
            e.drifting,
            sorted(e.performance.items()),
        )
        for e in evs
    ]


def _restore(raw: dict, blob: bytes, reference=None):  # type: ignore[no-untyped-def]
    cfg = parse_config(raw)
    ref = fx.reference() if reference is None else reference
    return ModelMonitor.restore(cfg.model(fx.MODEL), cfg.limits, decode(blob), ref)  # type: ignore[arg-type]


def test_the_checkpoint_of_the_first_format_release_restores() -> None:
    """The committed fixture restores with the values it was written with. Detector
    settings or defaults may change in later releases (then a note says what restarted);
    what was observed must come back."""
    mm, notes = _restore(fx.RAW_CONFIG, FIXTURE.read_bytes())
    kinds = {n.split(":")[0] for n in notes}
    assert kinds <= {"drift", "performance", "stream detectors"}, notes
    assert (mm.events_total, mm.evaluations) == (1_700, 15)
    assert (mm.window.size, mm.window.total, mm.window.capacity) == (300, 1_700, 300)
    assert float(np.nansum(mm.window.numeric())) == 24288089.929661002
    assert mm.categories["region"] == ["north", "south", "east", "west"]
    assert mm.tracker.is_drifting("age") and not mm.tracker.is_drifting("income")
    assert mm.last is not None and mm.last.drifting == ["age"]
    assert mm.last.context.events_total == 1_700
    assert mm.performance is not None
    assert mm.performance.joiner.sizes() == {
        "pending": 1_100,
        "early": 0,
        "labelled": 600,
        "evicted": 0,
    }
    assert mm.performance.window_labels == 200
    adwin = next(d for d in mm.detectors["age"] if isinstance(d, ADWINDetector))
    if "stream detectors" not in kinds:  # adopted: the values fed up to the checkpoint
        assert adwin.export_state(None).seen == 1_664


def test_the_checkpoint_of_format_version_2_restores_the_same_observations() -> None:
    """Version 2 (compressed) was written from the same model as the version 1 fixture:
    both restore to the same observed state."""
    blob = FIXTURE_V2.read_bytes()
    assert struct.unpack_from("<H", blob, 8)[0] == 2 and blob[10] & 0x02  # compressed
    old, _ = _restore(fx.RAW_CONFIG, FIXTURE.read_bytes())
    mm, notes = _restore(fx.RAW_CONFIG, blob)
    assert {n.split(":")[0] for n in notes} <= {"drift", "performance", "stream detectors"}
    assert (mm.events_total, mm.evaluations) == (old.events_total, old.evaluations) == (1_700, 15)
    np.testing.assert_array_equal(mm.window.numeric(), old.window.numeric())
    np.testing.assert_array_equal(mm.window.timestamps(), old.window.timestamps())
    assert mm.categories == old.categories
    assert mm.last is not None and old.last is not None
    assert mm.last.drifting == old.last.drifting == ["age"]
    assert mm.performance is not None and old.performance is not None
    assert mm.performance.joiner.export_state() == old.performance.joiner.export_state()
    # Data-validation counters are in the state since version 2; version 1 had none.
    assert mm.constraint_violations == {
        ("employment_years", "above_max"): 1,
        ("age", "missing"): 36,
    }
    assert mm.validator.violations is mm.constraint_violations
    assert old.constraint_violations == {}


def test_constraint_violation_counters_continue_across_a_restore_and_a_reference_switch() -> None:
    """``monitor_constraint_violations_total`` never restarts from zero: not after a
    restore, not when the model switches to another reference (a new Validator)."""
    before = fx.checkpointed()
    assert before.constraint_violations == {
        ("employment_years", "above_max"): 1,
        ("age", "missing"): 36,
    }
    mm, _ = _restore(fx.RAW_CONFIG, encode(before.export_state()))
    assert mm.validator.violations == before.validator.violations
    events, _ = fx.stream(2_000)
    rest = fx.events_slice(events, fx.EVENTS, 2_000)
    for i in range(50):
        rest.features[i]["age"] = None
    before.ingest(rest, now=2_000.0)
    mm.ingest(rest, now=2_000.0)
    assert mm.constraint_violations == before.constraint_violations
    assert mm.constraint_violations[("age", "missing")] >= 36 + 50
    # A state naming a rule this release does not know: not a label value.
    state = before.export_state()
    state.constraint_violations.append(("age", "<script>", 3))
    forged, _ = _restore(fx.RAW_CONFIG, encode(state))
    assert forged.constraint_violations == before.constraint_violations
    # A model_version with its own reference: the counts go on.
    cfg = parse_config(fx.RAW_CONFIG)
    sim = Simulator(model=fx.MODEL, seed=11)
    v2 = build_profile(fx.MODEL, [(e["features"], e["prediction"]) for e, _ in sim.events(800)])
    switched, _ = ModelMonitor.restore(  # type: ignore[arg-type]
        cfg.model(fx.MODEL), cfg.limits, decode(encode(state)), fx.reference(), {"v2": v2}
    )
    counted = dict(switched.constraint_violations)
    more = fx.events_slice(events, 0, 10)
    more.versions[:] = ["v2"] * 10
    more.features[0]["age"] = None
    switched.ingest(more, now=2_001.0)
    assert switched.reference is v2
    assert switched.constraint_violations[("age", "missing")] == counted[("age", "missing")] + 1


def test_a_checkpoint_is_compressed_and_restores_bit_for_bit() -> None:
    """Format version 2 compresses the state (issue 15: at least 5x smaller than the
    pickle); the window's floats come back exactly."""
    state = fx.checkpointed().export_state()
    blob, raw = encode(state), encode(state, compress=False)
    assert blob[10] & 0x02 and not raw[10] & 0x02
    assert len(blob) * 1.5 < len(raw)
    # Bit for bit: what decodes from the compressed blob encodes to the raw one.
    assert encode(decode(blob), compress=False) == encode(decode(raw), compress=False) == raw
    from monitor.state_format import compress_blob

    assert compress_blob(raw) == blob and compress_blob(blob) == blob


def test_a_compressed_body_that_lies_about_its_size_is_refused() -> None:
    """The declared size bounds decompression: a bomb is refused, not expanded."""
    import hashlib
    import zlib

    def blob_of(body: bytes, flags: int = 0x02, version: int = 2) -> bytes:
        digest = hashlib.blake2b(body, digest_size=16).digest()
        return b"KMMSTATE" + struct.pack("<HB", version, flags) + digest + body

    state = msgspec.msgpack.encode(fx.checkpointed().export_state())
    packed = zlib.compress(state, 1)
    assert decode(blob_of(struct.pack("<Q", len(state)) + packed)).model == fx.MODEL
    bomb = zlib.compress(b"\0" * 10_000_000, 9)
    cases = {
        blob_of(struct.pack("<Q", 10) + bomb): "corrupt",  # inflates beyond its size
        blob_of(struct.pack("<Q", 1 << 40) + bomb): "corrupt",  # declares too much
        blob_of(struct.pack("<Q", len(state) + 1) + packed): "corrupt",  # shorter
        blob_of(struct.pack("<Q", len(state)) + packed[:-9]): "corrupt",  # truncated
        blob_of(struct.pack("<Q", len(state)) + b"not zlib"): "corrupt",
        blob_of(b"\1"): "corrupt",
        blob_of(struct.pack("<Q", len(state)) + packed, flags=0x02, version=1): "corrupt",
        blob_of(state, flags=0x80): "corrupt",
        blob_of(struct.pack("<Q", len(state)) + packed, version=3): "newer_version",
    }
    for data, reason in cases.items():
        with pytest.raises(StateFormatError) as err:
            decode(data)
        assert err.value.reason == reason, err.value


def test_a_restored_checkpoint_continues_exactly_as_the_uninterrupted_model() -> None:
    blob = encode(fx.checkpointed().export_state())
    mm, notes = _restore(fx.RAW_CONFIG, blob)
    assert notes == []
    events, labels = fx.stream(2_500)
    rest = fx.events_slice(events, fx.EVENTS, 2_500)
    late = fx.labels_slice(labels, fx.LABELLED, 1_500)
    uninterrupted = fx.checkpointed()
    expect = uninterrupted.ingest(rest, now=2_500.0)
    uninterrupted.ingest_labels(late, now=2_500.0)
    got = mm.ingest(rest, now=2_500.0)
    mm.ingest_labels(late, now=2_500.0)
    assert any(e.drifting for e in expect)
    assert _fingerprint(got) == _fingerprint(expect)
    assert mm.performance is not None and uninterrupted.performance is not None
    assert mm.performance.snapshot() == uninterrupted.performance.snapshot()
    assert mm.performance.counts() == uninterrupted.performance.counts()


def test_damaged_foreign_and_future_blobs_are_refused_with_a_reason() -> None:
    blob = FIXTURE.read_bytes()
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    cases = {
        bytes(flipped): "corrupt",
        blob[: len(blob) // 3]: "corrupt",
        b"": "corrupt",
        b"PK\x03\x04 a zip file": "corrupt",
        blob[:8] + struct.pack("<H", 99) + blob[10:]: "newer_version",  # a rollback
        blob[:8] + struct.pack("<H", 0) + blob[10:]: "unknown_version",
        b"\x80\x04\x95 a pickle": "legacy_pickle",
    }
    # Intact header and checksum, but a body of the wrong shape.
    body = msgspec.msgpack.encode({"model": 3})
    import hashlib

    digest = hashlib.blake2b(body, digest_size=16).digest()
    cases[b"KMMSTATE" + struct.pack("<H", 1) + digest + body] = "corrupt"
    for data, reason in cases.items():
        with pytest.raises(StateFormatError) as err:
            decode(data)
        assert err.value.reason == reason, data[:12]


def test_a_config_change_applies_to_the_restored_state() -> None:
    blob = FIXTURE.read_bytes()
    before, _ = _restore(fx.RAW_CONFIG, blob)
    kept = np.sort(before.window.timestamps())

    def changed(window: dict, drift: dict | None = None) -> dict:
        model = {**fx.RAW_CONFIG["models"][0], "window": window}
        if drift is not None:
            model["drift"] = drift
        return {"models": [model]}

    bigger, notes = _restore(changed({"size": 1_200, "step": 100}, {"ks": {"alpha": 0.2}}), blob)
    assert bigger.window.capacity == 1_200 and bigger.window.size == 300
    np.testing.assert_array_equal(np.sort(bigger.window.timestamps()), kept)
    ks = next(d for d in bigger.detectors["income"] if isinstance(d, KSDetector))
    assert ks.alpha == 0.2
    assert [n.split(":")[0] for n in notes] == ["window", "drift"]
    assert "size 300 -> 1200" in notes[0]

    smaller, notes = _restore(changed({"size": 100, "step": 50}), blob)
    assert smaller.window.size == 100
    np.testing.assert_array_equal(np.sort(smaller.window.timestamps()), kept[-100:])
    # Continues: the next evaluation comes at the configured step.
    events, _ = fx.stream(1_800)
    evs = smaller.ingest(fx.events_slice(events, fx.EVENTS, 1_800))
    assert [e.context.events_total for e in evs] == [1_750, 1_800]

    sim = Simulator(model=fx.MODEL, seed=99)
    other = build_profile(fx.MODEL, [(e["features"], e["prediction"]) for e, _ in sim.events(500)])
    moved, notes = _restore(fx.RAW_CONFIG, blob, reference=other)
    assert moved.reference is other and moved.window.size == 300
    assert moved.tracker.export_runs() == []  # computed against the old reference: dropped
    assert [n.split(":")[0] for n in notes] == ["reference"]


def test_page_hinkley_restores_to_identical_detections() -> None:
    rng = np.random.default_rng(3)
    ref, live = rng.normal(size=500), np.concatenate((rng.normal(size=900), rng.normal(3, 1, 900)))
    whole, first = PageHinkleyDetector(threshold=20.0), PageHinkleyDetector(threshold=20.0)
    for d in (whole, first):
        d.fit(ref)
    whole.update(live)
    first.update(live[:700])
    second = PageHinkleyDetector(threshold=20.0)
    second.fit(ref)
    assert second.restore_state(first.export_state("r"), "r") is None
    second.update(live[700:])
    assert second.evaluate(np.empty(0)) == whole.evaluate(np.empty(0))
    other = PageHinkleyDetector(threshold=30.0)
    other.fit(ref)
    assert other.restore_state(first.export_state("r"), "r") == "detector settings changed"
    assert other.restore_state(first.export_state("r"), "s") == "detector settings changed"
    same = PageHinkleyDetector(threshold=20.0)
    same.fit(ref)
    assert same.restore_state(first.export_state("r"), "s") == "reference changed"


def test_strings_with_lone_surrogates_checkpoint_and_restore_exactly() -> None:
    """JSON lets a producer send "\\ud800"; MessagePack strings cannot hold it as is."""
    from monitor.state_format import ESCAPE

    mm = fx.monitor()
    events, _ = fx.stream(400)
    hostile = ["\ud800", ESCAPE + "looks escaped", "\udc00x"]
    for i, value in enumerate(hostile):
        events.features[i]["region"] = value
        events.event_ids[i] = f"id-{value}"
    mm.ingest(events, now=400.0)
    blob = encode(mm.export_state())
    assert blob[10] & 1  # the escaped encoding was needed (bit 1: compressed)
    restored, notes = _restore(fx.RAW_CONFIG, blob)
    assert notes == []
    assert restored.categories == mm.categories
    assert [c for c in restored.categories["region"] if c in hostile] == hostile
    assert restored.performance is not None and mm.performance is not None
    assert restored.performance.joiner.export_state() == mm.performance.joiner.export_state()
    more, _ = fx.stream(500)
    tail = fx.events_slice(more, 400, 500)
    tail.features[0]["region"] = "\ud800"
    assert _fingerprint(restored.ingest(tail)) == _fingerprint(mm.ingest(tail))
    assert restored.categories == mm.categories


def test_the_model_version_reference_in_use_is_restored_from_the_config() -> None:
    cfg = parse_config(fx.RAW_CONFIG)
    settings, limits = cfg.model(fx.MODEL), cfg.limits
    sim = Simulator(model=fx.MODEL, seed=11)
    v2 = build_profile(fx.MODEL, [(e["features"], e["prediction"]) for e, _ in sim.events(800)])
    mm = ModelMonitor(settings, limits, fx.reference(), {"v2": v2})  # type: ignore[arg-type]
    events, _ = fx.stream(500)
    events.versions[:] = ["v1"] * 200 + ["v2"] * 300
    mm.ingest(events, now=500.0)
    assert mm.reference_version == "v2" and mm.window.size == 300
    state = decode(encode(mm.export_state()))
    same, notes = ModelMonitor.restore(settings, limits, state, fx.reference(), {"v2": v2})  # type: ignore[arg-type]
    assert notes == [] and same.reference is v2 and same.reference_version == "v2"
    assert same.window.size == 300 and same.reference_switches == 1
    gone, notes = ModelMonitor.restore(settings, limits, state, fx.reference())  # type: ignore[arg-type]
    assert gone.reference_version is None
    assert gone.reference is not None and gone.reference.fingerprint == fx.reference().fingerprint
    assert [n.split(":")[0] for n in notes] == ["reference"]
    assert "'v2' no longer has a reference" in notes[0]


def test_a_changed_sample_rate_is_noted_at_restore() -> None:
    """``sample.rate`` is a setting the state was computed with: a restart that changes it
    says so (as for the window or the detectors), in both directions."""
    blob = encode(fx.checkpointed().export_state())
    assert decode(blob).settings_seen.sample_rate == 1.0

    def sampled(rate: float) -> dict:
        return {"models": [{**fx.RAW_CONFIG["models"][0], "sample": {"rate": rate}}]}

    mm, notes = _restore(sampled(0.25), blob)
    assert mm.sampler.rate == 0.25
    assert [n.split(":")[0] for n in notes] == ["sample"]
    assert notes[0].startswith("sample: rate 1 -> 0.25: effective from the next event")
    assert "stays unlabelled" in notes[0]
    lowered = encode(mm.export_state())
    _, notes = _restore(fx.RAW_CONFIG, lowered)
    assert [n.split(":")[0] for n in notes] == ["sample"] and "rate 0.25 -> 1:" in notes[0]
    assert "early labels" in notes[0]
    assert _restore(sampled(0.25), lowered)[1] == []  # unchanged: no note
    # A state that did not record its rate (format 1): nothing to compare, no note.
    assert not any(n.startswith("sample") for n in _restore(sampled(0.5), FIXTURE.read_bytes())[1])


def test_a_column_whose_type_changed_is_noted_as_dropped_at_restore() -> None:
    """A feature now categorical in a new reference (numeric when saved) keeps its name, so
    the note said "saved rows kept for the columns in both" while its saved values were
    dropped (missing in every saved row). Now the note names it; a window's change of type
    is named as such, not as "size 300 -> 5000" (a time window's row cap)."""
    blob = FIXTURE_V2.read_bytes()
    sim = Simulator(model=fx.MODEL, seed=99)
    rows = [
        ({**e["features"], "age": str(round(e["features"]["age"] or 0))}, e["prediction"])
        for e, _ in sim.events(500)
    ]
    retyped = build_profile(fx.MODEL, rows)
    mm, notes = _restore(fx.RAW_CONFIG, blob, reference=retyped)
    (columns,) = [n for n in notes if n.startswith("columns:")]
    assert "type changed (numeric <-> categorical): ['age']" in columns
    j = mm.columns.categorical_columns.index("age")
    assert (mm.window.categorical()[:, j] < 0).all()  # missing in the saved rows
    window = {"type": "time", "seconds": 600, "step_seconds": 60}
    model = {**fx.RAW_CONFIG["models"][0], "window": window}
    _, notes = _restore({"models": [model]}, blob)
    assert notes[0].startswith("window: type count -> time:"), notes[0]


def test_refuse_newer_reads_the_header_only() -> None:
    """What ``state.unlisted_models: delete`` checks before removing a state: only a newer
    format version stops it; a readable, damaged or foreign blob does not."""
    from monitor.state_format import FORMAT_VERSION, NewerStateError, refuse_newer

    current = FIXTURE_V2.read_bytes()
    refuse_newer(current)
    for other in (b"", b"KMMSTATE", b"not a checkpoint at all", current[:12]):
        refuse_newer(other)
    newer = bytearray(current[:10])
    struct.pack_into("<H", newer, 8, FORMAT_VERSION + 1)
    with pytest.raises(NewerStateError, match=f"version {FORMAT_VERSION + 1}"):
        refuse_newer(bytes(newer))  # the header alone: the body is not looked at
