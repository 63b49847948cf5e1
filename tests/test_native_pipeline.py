"""The compiled decoder in the pipeline: a model fed through it ends up exactly as one fed
through the Python path (windows, counters, categories, evaluations), whatever the input.

``tests/test_native.py`` holds ``monitor_native.decode_predictions`` to its contract; this
file holds the pipeline around it (``Decoder._decode_native``, ``ModelMonitor``'s columnar
ingest) to the Python path, on realistic events and on every kind of odd one.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import orjson
import pytest

from monitor.config import parse_config
from monitor.events import NATIVE_AVAILABLE, Decoder, RawMessage
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.simulate import DriftSpec, Simulator
from monitor.state_format import decode, encode

needs_native = pytest.mark.skipif(not NATIVE_AVAILABLE, reason="monitor_native not installed")


def test_the_compiled_decoder_is_installed_where_it_is_required() -> None:
    """scripts/test.sh builds it and sets MONITOR_REQUIRE_NATIVE=1: there, a missing
    module fails the run instead of skipping the tests below."""
    if os.environ.get("MONITOR_REQUIRE_NATIVE") == "1":
        assert NATIVE_AVAILABLE, "monitor_native is not installed (pip install ./native)"


def _monitor(**model: Any) -> ModelMonitor:
    cfg = parse_config(
        {"models": [{"name": "credit-risk", "window": {"size": 600, "step": 150}, **model}]}
    )
    sim = Simulator(seed=1)
    ref = build_profile(
        "credit-risk", [(e["features"], e["prediction"]) for e, _ in sim.events(3000)]
    )
    return ModelMonitor(cfg.model("credit-risk"), cfg.limits, ref)  # type: ignore[arg-type]


ODDITIES = (
    "null",  # a numeric feature null
    "absent",  # a numeric feature left out
    "cat_null",
    "cat_absent",
    "unknown",  # an extra feature
    "int",  # a whole number without a fraction
    "new_category",
    "neg_zero",
    "no_timestamp",
    "epoch_timestamp",
    "epoch_millis",
    "int_prediction",
)
REFUSED = (  # the compiled decoder hands these to the Python path
    "numeric_as_string",
    "numeric_as_junk",
    "category_as_number",
    "bool_feature",
    "score_map",
    "naive_timestamp",
    "damaged",
)


def _oddity(event: dict[str, Any], kind: str, rng: random.Random) -> bytes:
    f = event["features"]
    if kind == "null":
        f["income"] = None
    elif kind == "absent":
        del f["age"]
    elif kind == "cat_null":
        f["region"] = None
    elif kind == "cat_absent":
        del f["channel"]
    elif kind == "unknown":
        f["shoe_size"] = rng.choice([42, "xl", None, [1, 2]])
    elif kind == "int":
        f["num_accounts"] = rng.randint(-5, 2**53 + 11)
    elif kind == "new_category":
        f["region"] = f"region-{rng.randint(0, 3)}"
    elif kind == "neg_zero":
        return orjson.dumps(event).replace(b'"late_payments":0.0', b'"late_payments":-0')
    elif kind == "no_timestamp":
        del event["timestamp"]
    elif kind == "epoch_timestamp":
        event["timestamp"] = 1_790_000_000 + rng.random()
    elif kind == "epoch_millis":
        event["timestamp"] = rng.choice([1_790_000_000_123, 1_790_000_000_000 + rng.random()])
    elif kind == "int_prediction":
        event["prediction"] = rng.randint(0, 1)
    elif kind == "numeric_as_string":
        f["income"] = "51234.5"
    elif kind == "numeric_as_junk":
        f["income"] = "n/a"
    elif kind == "category_as_number":
        f["region"] = 7
    elif kind == "bool_feature":
        f["debt_ratio"] = True
    elif kind == "score_map":
        event["prediction"] = {"yes": 0.25, "no": 0.75}
    elif kind == "naive_timestamp":
        event["timestamp"] = "2026-11-26T12:00:00"
    elif kind == "damaged":
        return orjson.dumps(event)[:-3]
    return orjson.dumps(event)


def _stream(
    seed: int, n: int, odd_share: float, kinds: tuple[str, ...] = ODDITIES + REFUSED
) -> list[RawMessage]:
    rng = random.Random(seed)
    sim = Simulator(seed=seed, drift=DriftSpec("mean", ("income",), 1.0, n // 2))
    out = []
    for i, (event, _) in enumerate(sim.events(n)):
        if rng.random() < odd_share:
            value = _oddity(event, rng.choice(kinds), rng)
        else:
            value = orjson.dumps(event)
        out.append(RawMessage(value, 1_790_000_000.0 + i / 100, "predictions", i % 3, i))
    return out


def _state(mm: ModelMonitor, evaluations: list[Any]) -> dict[str, Any]:
    return {
        "numeric": mm.window.numeric().tobytes(),  # bit for bit, NaN and -0.0 included
        "categorical": mm.window.categorical().tobytes(),
        "timestamps": mm.window.timestamps().tobytes(),
        "categories": mm.categories,
        "invalid": mm.invalid_values,
        "unknown": mm.unknown_feature_events,
        "overflow": mm.category_overflow,
        "events": mm.events_total,
        "version": mm.model_version,
        "evaluations": [
            (
                e.context,
                sorted(
                    (f, r.detector, r.statistic, r.p_value)
                    for f, rs in e.results.items()
                    for r in rs
                ),
                sorted(e.drifting),
            )
            for e in evaluations
        ],
    }


def _feed(messages: list[RawMessage], sizes: list[int], native: bool) -> tuple[dict, int]:
    state, columnar, _ = _feed_counting(messages, sizes, native)
    return state, columnar


def _feed_counting(
    messages: list[RawMessage], sizes: list[int], native: bool
) -> tuple[dict, int, tuple[int, int]]:
    """The model's state, the batches decoded into columns, and (native, python) events."""
    mm = _monitor()
    decoder = Decoder(max_message_bytes=1_000_000, native=native)
    # The model's verdict, as the service's first batch gives.
    decoder.decode(_stream(seed=0, n=1, odd_share=0.0))
    evaluations: list[Any] = []
    columnar = pos = n_native = n_python = 0
    for size in sizes:
        schema = mm.columnar_schema()
        batch = decoder.decode(messages[pos : pos + size], {mm.name: schema} if schema else None)
        pos += size
        n_native += batch.native_events
        n_python += batch.python_events
        for events in batch.predictions.values():
            columnar += events.columns is not None
            evaluations.extend(mm.ingest(events))
    return _state(mm, evaluations), columnar, (n_native, n_python)


@needs_native
@pytest.mark.parametrize("odd_share", [0.0, 0.002, 0.05])
def test_a_model_fed_natively_ends_up_as_one_fed_by_python(odd_share: float) -> None:
    messages = _stream(seed=3, n=3_000, odd_share=odd_share)
    sizes = [500, 1, 999, 700, 800]
    native, columnar = _feed(messages, sizes, native=True)
    python, none = _feed(messages, sizes, native=False)
    assert none == 0
    assert native == python
    if odd_share == 0.0:
        assert columnar == len(sizes)  # every batch went through the compiled decoder
        assert len(native["evaluations"]) == 17  # at 600, 750, ..., 3000 events
    else:
        assert len(native["evaluations"]) >= 15  # damaged events are rejected


@needs_native
def test_odd_but_valid_events_are_decoded_natively_and_counted_alike() -> None:
    messages = _stream(seed=11, n=1_200, odd_share=0.3, kinds=ODDITIES)
    native, columnar = _feed(messages, [100] * 12, native=True)
    python, _ = _feed(messages, [100] * 12, native=False)
    assert native == python
    assert columnar == 12  # nulls, absent and unknown keys, new categories, ints: all native
    assert native["unknown"] > 0
    assert len(native["categories"]["region"]) > 4


@needs_native
def test_batches_with_refused_events_decode_alike_on_either_path() -> None:
    messages = _stream(seed=12, n=1_200, odd_share=0.3)
    native, columnar = _feed(messages, [10] * 120, native=True)
    python, _ = _feed(messages, [10] * 120, native=False)
    assert native == python
    assert native["invalid"]  # strings in numeric features, counted on the Python path
    assert 0 < columnar < 120


@needs_native
def test_events_without_a_timestamp_take_the_record_time() -> None:
    event = next(iter(Simulator(seed=2).events(1)))[0]
    del event["timestamp"]
    messages = [
        RawMessage(orjson.dumps({**event, "event_id": f"e{i}"}), 1_790_000_000.5 + i, "p", 0, i)
        for i in range(4)
    ]
    mm = _monitor()
    decoder = Decoder(max_message_bytes=10_000)
    decoder.decode(messages)
    group = decoder.decode(messages, {mm.name: mm.columnar_schema()}).predictions[mm.name]  # type: ignore[dict-item]
    assert group.columns is not None
    assert group.timestamps == [1_790_000_000.5 + i for i in range(4)]


@needs_native
def test_mixed_topics_and_models_keep_each_models_events_together() -> None:
    """Labels, another model without a schema, a value that is not bytes: those take the
    Python path, and each model's events stay on one path, in arrival order."""
    sim = Simulator(seed=4)
    messages = []
    for i, (event, _) in enumerate(sim.events(40)):
        if i % 5 == 1:
            value = orjson.dumps(
                {"event_id": event["event_id"], "model": "credit-risk", "label": 1}
            )
            messages.append(RawMessage(value, 1.0, "labels", 0, i))
        elif i % 5 == 2:
            other = {**event, "model": "fraud"}
            messages.append(RawMessage(orjson.dumps(other), 1.0, "predictions", 1, i))
        else:
            messages.append(RawMessage(orjson.dumps(event), 1.0, "predictions", 0, i))
    mm = _monitor()
    schemas = {mm.name: mm.columnar_schema()}
    native = Decoder(max_message_bytes=10_000, labels_topic="labels")
    python = Decoder(max_message_bytes=10_000, labels_topic="labels", native=False)
    for d in (native, python):
        d.decode(messages)
    got, want = native.decode(messages, schemas), python.decode(messages)  # type: ignore[arg-type]
    assert got.predictions["credit-risk"].columns is not None
    assert got.predictions["fraud"].columns is None
    assert got.predictions["credit-risk"].event_ids == want.predictions["credit-risk"].event_ids
    assert got.predictions["fraud"].features == want.predictions["fraud"].features
    assert got.labels == want.labels and got.rejected == want.rejected
    # One value that is not bytes: that model's events all go the Python way.
    messages[0] = RawMessage(bytearray(messages[0].value or b""), 1.0, "predictions", 0, 0)
    assert native.decode(messages, schemas).predictions["credit-risk"].columns is None  # type: ignore[arg-type]


@needs_native
def test_a_restored_checkpoint_decodes_natively() -> None:
    mm = _monitor()
    blob = encode(mm.export_state())
    restored, _ = ModelMonitor.restore(mm.settings, mm.limits, decode(blob), mm.reference)
    assert restored.columnar_schema() == mm.columnar_schema()


def test_no_columnar_schema_before_the_reference_or_with_per_version_references() -> None:
    cfg = parse_config({"models": [{"name": "m", "window": {"size": 100, "step": 50}}]})
    learning = ModelMonitor(cfg.model("m"), cfg.limits)  # type: ignore[arg-type]
    assert learning.columnar_schema() is None
    mm = _monitor()
    numeric, categorical = mm.columnar_schema()  # type: ignore[misc]
    assert "income" in numeric and "region" in categorical
    assert "__prediction__" not in numeric + categorical
    mm.version_references = {"v2": mm.reference}  # type: ignore[dict-item]
    assert mm.columnar_schema() is None


@needs_native
def test_columns_for_another_schema_are_refused() -> None:
    mm = _monitor()
    event = next(iter(Simulator(seed=2).events(1)))[0]
    messages = [RawMessage(orjson.dumps(event), 1.0, "predictions", 0, 0)]
    decoder = Decoder(max_message_bytes=10_000)
    decoder.decode(messages)
    numeric, categorical = mm.columnar_schema()  # type: ignore[misc]
    events = decoder.decode(messages, {mm.name: (numeric[1:], categorical)}).predictions[mm.name]
    assert events.columns is not None
    with pytest.raises(Exception, match="columns decoded for schema"):
        mm.ingest(events)
    assert np.isnan(mm.window.numeric()).all() or mm.window.size == 0


@needs_native
def test_a_failure_of_the_compiled_decoder_falls_back_to_python(monkeypatch, caplog) -> None:
    """A bug in the compiled decoder (a Rust panic is a BaseException) costs speed, never
    the batch nor the service."""
    import monitor.events as events_module

    class Boom(BaseException):
        pass

    class Broken:
        @staticmethod
        def decode_predictions(*args: Any) -> Any:
            raise Boom("panicked at src/lib.rs")

    mm = _monitor()
    messages = _stream(seed=5, n=50, odd_share=0.0)
    decoder = Decoder(max_message_bytes=10_000)
    decoder.decode(messages)
    monkeypatch.setattr(events_module, "_native", Broken)
    batch = decoder.decode(messages, {mm.name: mm.columnar_schema()})  # type: ignore[dict-item]
    assert batch.predictions[mm.name].columns is None
    assert len(batch.predictions[mm.name]) == 50
    assert batch.native_error == "Boom: panicked at src/lib.rs"
    assert (batch.native_events, batch.python_events) == (0, 50)


POISON = (
    b"{not json",
    b"\xff\xfe not UTF-8",
    b'{"event_id":"p","model":"credit-risk","features":{},"prediction":NaN}',
    b'{"event_id":"p","model":"credit-risk","features":{"region":"\\ud800"},"prediction":1}',
    b'{"model":"credit-risk","features":{},"prediction":1}',
    b'{"event_id":"p","model":"credit-risk","features":[],"prediction":1}',
)


@needs_native
@pytest.mark.parametrize("where", ["first", "last", "middle", "every_50", "adjacent"])
def test_poison_messages_cost_the_compiled_decoder_only_themselves(where: str) -> None:
    """A rejected message anywhere in a batch: the model's other events stay in columns,
    and the model ends up exactly as one fed by the Python path."""
    good = _stream(seed=21, n=2_000, odd_share=0.0)
    rng = random.Random(where)
    spots = {
        "first": [0],
        "last": [len(good)],
        "middle": [1_000],
        "every_50": list(range(0, len(good), 50)),
        "adjacent": [700, 700, 700],
    }[where]
    stream = list(good)
    for at in sorted(spots, reverse=True):
        stream.insert(at, RawMessage(rng.choice(POISON), 1.0, "predictions", 0, -1))
    messages = [
        RawMessage(m.value, m.timestamp, m.topic, m.partition, i) for i, m in enumerate(stream)
    ]
    sizes = [600, 1, 500, len(messages)]
    native, columnar, (n_native, n_python) = _feed_counting(messages, sizes, native=True)
    python, _, (none, all_python) = _feed_counting(messages, sizes, native=False)
    assert native == python
    assert none == 0 and all_python == 2_000
    assert (n_native, n_python) == (2_000, 0)
    assert columnar == len(sizes)


@needs_native
def test_an_odd_but_valid_event_keeps_its_models_order() -> None:
    """The Python path accepts an event the compiled decoder hands back (a string in a
    numeric feature): the model's events in that batch are decoded together, in order."""
    messages = _stream(seed=22, n=1_600, odd_share=0.0)
    for at in (650, 655, 1_200):
        event = orjson.loads(messages[at].value)  # type: ignore[arg-type]
        event["features"]["income"] = "51234.5"
        messages[at] = RawMessage(orjson.dumps(event), 1.0, "predictions", 0, at)
    sizes = [600, 400, 600]
    native, columnar, (n_native, n_python) = _feed_counting(messages, sizes, native=True)
    python, _, _ = _feed_counting(messages, sizes, native=False)
    assert native == python
    assert (n_native, n_python) == (600, 1_000)  # the first batch has no odd event
    assert columnar == 1


@pytest.mark.parametrize("native", [True, False])
def test_a_model_version_longer_than_200_characters_is_refused_on_either_path(
    native: bool,
) -> None:
    """A version is a label of windows, segments, metrics and pages: like the model's name it
    is bounded (200 characters), on both decoder paths alike, and the refusal names it."""
    if native and not NATIVE_AVAILABLE:
        pytest.skip("the compiled decoder is not installed")
    mm = _monitor()
    decoder = Decoder(max_message_bytes=2_000_000, native=native)
    decoder.decode(_stream(seed=0, n=1, odd_share=0.0))
    events = [e for e, _ in Simulator(seed=3).events(300)]
    for i, event in enumerate(events):
        event["model_version"] = {7: "v" * 201, 8: "x" * 600_000, 9: "é" * 200}.get(i, "v1")
    messages = [
        RawMessage(orjson.dumps(e), 1_790_000_000.0 + i, "predictions", 0, i)
        for i, e in enumerate(events)
    ]
    schema = mm.columnar_schema()
    batch = decoder.decode(messages, {mm.name: schema} if schema else None)
    assert [(r.message.offset, r.reason, r.field) for r in batch.rejected] == [
        (7, "wrong_type", "model_version"),
        (8, "wrong_type", "model_version"),
    ]
    assert sum(len(g.event_ids) for g in batch.predictions.values()) == 298
