"""Lone UTF-16 surrogates: valid JSON (``"\\ud800x"``), but not encodable as UTF-8.

Such a string must never get past the decoder: as a category it made ``/metrics`` answer
500 for good (the value was checkpointed), as a model name with ``unknown_models: track``
it crashed the checkpoint at every restart. The whole event is rejected as
``invalid_unicode`` with the field named, on the Python path and on the compiled one
(which hands such messages to the Python path), for prediction and label events, keys
included; valid surrogate pairs are accepted and decode alike on both paths.

The fuzz builds JSON strings from ``\\uXXXX`` escapes (plain, valid pairs, lone high,
lone low, reversed pairs, a high one before a non-surrogate escape) and raw characters,
puts one in every field and key in turn, and holds both decoder paths to each other.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.events import NATIVE_AVAILABLE, REASONS, DecodedBatch, Decoder, RawMessage

needs_native = pytest.mark.skipif(not NATIVE_AVAILABLE, reason="monitor_native not installed")

SCHEMAS = {"m": (("x",), ("region",))}


def _esc(code: int) -> str:
    return f"\\u{code:04x}" if code % 2 else f"\\u{code:04X}"


# One piece of a JSON string's text: (the JSON text, whether it leaves a lone surrogate).
segments = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
        min_size=1,
        max_size=3,
    ).map(lambda s: (s, False)),
    st.integers(0x20, 0xD7FF).map(lambda c: (_esc(c), False)),
    st.integers(0xE000, 0xFFFF).map(lambda c: (_esc(c), False)),
    st.tuples(st.integers(0xD800, 0xDBFF), st.integers(0xDC00, 0xDFFF)).map(
        lambda p: (_esc(p[0]) + _esc(p[1]), False)  # a valid pair
    ),
    st.integers(0xD800, 0xDBFF).map(lambda c: (_esc(c), True)),  # lone high
    st.integers(0xDC00, 0xDFFF).map(lambda c: (_esc(c), True)),  # lone low
    st.tuples(st.integers(0xDC00, 0xDFFF), st.integers(0xD800, 0xDBFF)).map(
        lambda p: (_esc(p[0]) + _esc(p[1]), True)  # reversed pair
    ),
    st.tuples(st.integers(0xD800, 0xDBFF), st.integers(0x41, 0x7A)).map(
        lambda p: (_esc(p[0]) + _esc(p[1]), True)  # high, then not a low surrogate
    ),
)


@st.composite
def json_strings(draw: Any) -> tuple[str, bool]:
    """A JSON string literal and whether it decodes to a string with a lone surrogate.
    Adjacent segments may join into a pair (a lone high then a lone low): that is valid,
    and the expectation is computed from what the stdlib decodes, to be exact."""
    parts = draw(st.lists(segments, min_size=1, max_size=4))
    literal = '"' + "".join(p for p, _ in parts) + '"'
    text = __import__("json").loads(literal)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    return literal, lone


# Where the fuzzed string goes: a template with {s} for the string literal.
PREDICTION_PLACES = {
    "event_id": '{{"event_id":{s},"model":"m","features":{{"x":1.5,"region":"a"}},"prediction":1}}',
    "model": '{{"event_id":"e","model":{s},"features":{{"x":1.5}},"prediction":1}}',
    "model_version": (
        '{{"event_id":"e","model":"m","model_version":{s},"features":{{}},"prediction":1}}'
    ),
    "features.region": '{{"event_id":"e","model":"m","features":{{"region":{s}}},"prediction":1}}',
    "features.<key>": '{{"event_id":"e","model":"m","features":{{{s}:"a"}},"prediction":1}}',
    "prediction": '{{"event_id":"e","model":"m","features":{{"x":2}},"prediction":{s}}}',
    "prediction.<class>": '{{"event_id":"e","model":"m","features":{{}},"prediction":{{{s}:0.5}}}}',
    "<key>": '{{"event_id":"e","model":"m","features":{{}},"prediction":1,{s}:1}}',
    "extra": '{{"event_id":"e","model":"m","features":{{}},"prediction":1,"extra":[{{"y":{s}}}]}}',
    "timestamp": '{{"event_id":"e","model":"m","features":{{}},"prediction":1,"timestamp":{s}}}',
}
LABEL_PLACES = {
    "event_id": '{{"event_id":{s},"model":"m","label":1}}',
    "model": '{{"event_id":"e","model":{s},"label":1}}',
    "label": '{{"event_id":"e","model":"m","label":{s}}}',
    "<key>": '{{"event_id":"e","model":"m","label":1,{s}:null}}',
}


def _strings(value: Any) -> list[str]:
    """Every string (keys included) inside a decoded value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _encodable(text: str | None) -> bool:
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _view(out: DecodedBatch) -> dict[str, Any]:
    """What a consumer sees, with the compiled decoder's columns read back as rows."""
    preds = {}
    for model, g in out.predictions.items():
        if g.columns is not None:
            c = g.columns
            feats = [
                {
                    **{n: float(c.numeric[i, j]) for j, n in enumerate(c.numeric_names)},
                    **{n: c.categorical[j][i] for j, n in enumerate(c.categorical_names)},
                }
                for i in range(len(g))
            ]
        else:
            feats = [
                {
                    "x": math.nan if f.get("x") is None else float(f["x"]),
                    "region": f.get("region"),
                }
                for f in g.features
            ]
        preds[model] = (
            g.event_ids,
            g.versions,
            g.timestamps,
            [repr(p) for p in g.predictions],
            [{k: repr(v) for k, v in f.items()} for f in feats],
        )
    labels = {m: (g.event_ids, g.labels, g.timestamps) for m, g in out.labels.items()}
    rejected = [(r.message.offset, r.reason, r.field, r.error, r.model) for r in out.rejected]
    return {"predictions": preds, "labels": labels, "rejected": rejected}


def _decoders() -> tuple[Decoder, Decoder]:
    python = Decoder(max_message_bytes=100_000, labels_topic="labels", native=False)
    native = Decoder(max_message_bytes=100_000, labels_topic="labels")
    prime = orjson.dumps({"event_id": "p", "model": "m", "features": {}, "prediction": 1})
    for d in (python, native):  # model "m" accepted, as after the service's first batch
        d.decode([RawMessage(prime, 1.0, "predictions")])
    return python, native


def _check(values: list[tuple[bytes, str]], lone: list[bool], places: list[str]) -> None:
    messages = [RawMessage(v, 1_790_000_000.0, t, 0, i) for i, (v, t) in enumerate(values)]
    python, native = _decoders()
    want = python.decode(messages)
    got = native.decode(messages, SCHEMAS) if NATIVE_AVAILABLE else want
    assert _view(got) == _view(want)
    rejected = {r.message.offset: r for r in want.rejected}
    for i, (is_lone, place) in enumerate(zip(lone, places, strict=True)):
        r = rejected.get(i)
        if is_lone:
            assert r is not None and r.reason == "invalid_unicode", (place, values[i])
            expect = place.replace("<key>", "").replace("<class>", "").rstrip(".")
            assert r.field is not None and r.field.startswith(expect.replace("extra", "extra[0].y"))
        else:
            assert r is None or r.reason != "invalid_unicode"
    for r in want.rejected + got.rejected:
        assert r.reason in REASONS
        assert _encodable(r.error) and _encodable(r.field)  # logs and dead-letter headers
        assert len(r.error) < 400
    for out in (want, got):
        for g in out.predictions.values():
            everything = [g.model, g.event_ids, g.versions, g.features, g.predictions]
            if g.columns is not None:
                everything.append(g.columns.categorical)
            assert all(_encodable(s) for s in _strings(everything))
        for lab in out.labels.values():
            assert all(_encodable(s) for s in _strings([lab.model, lab.event_ids, lab.labels]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted(PREDICTION_PLACES)), json_strings()), max_size=6))
def test_prediction_strings_with_escapes_decode_alike_and_lone_surrogates_are_rejected(
    cases: list[tuple[str, tuple[str, bool]]],
) -> None:
    good = orjson.dumps(
        {"event_id": "g", "model": "m", "features": {"x": 0.5, "region": "b"}, "prediction": 1}
    )
    values, lone, places = [(good, "predictions")], [False], ["-"]
    for place, (literal, is_lone) in cases:
        values.append((PREDICTION_PLACES[place].format(s=literal).encode(), "predictions"))
        lone.append(is_lone)
        places.append(place)
        values.append((good, "predictions"))
        lone.append(False)
        places.append("-")
    _check(values, lone, places)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(LABEL_PLACES)), json_strings()), max_size=4))
def test_label_strings_with_escapes_and_lone_surrogates(
    cases: list[tuple[str, tuple[str, bool]]],
) -> None:
    values = [(LABEL_PLACES[p].format(s=lit).encode(), "labels") for p, (lit, _) in cases]
    _check(values, [lone for _, (_, lone) in cases], [p for p, _ in cases])


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (
            rb'{"event_id":"e","model":"m","features":{"region":"\ud800x"},"prediction":1}',
            "features.region",
        ),
        (rb'{"event_id":"e","model":"\udc00\ud800","features":{},"prediction":1}', "model"),
        (rb'{"event_id":"\ud83d","model":"m","features":{},"prediction":1}', "event_id"),
        (
            rb'{"event_id":"e","model":"m","features":{"r\udfff":1},"prediction":1}',
            "features.r\\udfff",
        ),
        (
            rb'{"event_id":"e","model":"m","features":{},"prediction":{"\ud800":1}}',
            "prediction.\\ud800",
        ),
        (rb'{"event_id":"e","model":"m","features":{},"prediction":"\ud800\u0041"}', "prediction"),
    ],
)
def test_a_lone_surrogate_rejects_the_event_naming_the_field(value: bytes, field: str) -> None:
    good = orjson.dumps({"event_id": "g", "model": "m", "features": {}, "prediction": 1})
    messages = [RawMessage(v, 1.0, "predictions", 0, i) for i, v in enumerate([good, value])]
    for decoder in _decoders():
        out = decoder.decode(messages, {"m": ((), ("region",))})
        assert [(r.reason, r.field) for r in out.rejected] == [("invalid_unicode", field)]
        assert out.rejected[0].error.encode("utf-8")  # never the raw string
        assert "\\u" in out.rejected[0].error
        assert out.predictions["m"].event_ids == ["g"]


def test_a_lone_surrogate_in_a_label_is_rejected() -> None:
    value = rb'{"event_id":"e","model":"m","label":"\udbff"}'
    out = _decoders()[0].decode([RawMessage(value, 1.0, "labels")])
    assert [(r.reason, r.field) for r in out.rejected] == [("invalid_unicode", "label")]
    assert not out.labels


@needs_native
def test_the_compiled_decoder_hands_lone_surrogates_to_python_and_keeps_valid_pairs() -> None:
    import monitor_native

    pair = (
        rb'{"event_id":"\ud83d\ude00","model":"m","features":{"region":"\uD83D\uDE00"},'
        rb'"prediction":"\ud83d\ude00"}'
    )
    lone = pair.replace(rb"\ude00", rb"\u0041", 1)
    fallback, groups = monitor_native.decode_predictions([pair, lone, pair], SCHEMAS, 256)
    assert fallback == [1]
    (model, rows, ids, _, _, preds, _, cats, _) = groups[0]
    assert (model, rows) == ("m", [0, 2])
    assert ids == preds == cats[0] == ["\U0001f600"] * 2


def test_model_state_metrics_replace_what_cannot_be_encoded() -> None:
    """Defence in depth: a checkpoint written before the decoder rejected lone surrogates
    may hold one (a category, a model name); /metrics must still render."""
    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.config import LimitsConfig, ModelConfig, ModelDefaults, resolve_model
    from monitor.events import ModelEvents
    from monitor.model_monitor import ModelMonitor
    from monitor.service_metrics import ModelStateCollector

    defaults = ModelDefaults.model_validate(
        {"window": {"size": 40, "step": 20}, "reference": {"learn_first": 30}}
    )
    mm = ModelMonitor(resolve_model(ModelConfig(name="m"), defaults), LimitsConfig())
    n = 100
    events = ModelEvents(
        mm.name,
        [f"e{i}" for i in range(n)],
        [1_700_000_000.0 + i for i in range(n)],
        [None] * n,
        [{"x": float(i % 7), "c": ["a", "\ud800x"][i % 2]} for i in range(n)],
        [0.5] * n,
    )
    mm.ingest(events, 1_700_000_100.0)
    mm.name = "\udc00m"  # any label value
    assert mm.last is not None and "\ud800x" in mm.categories["c"]
    registry = CollectorRegistry()
    registry.register(ModelStateCollector(lambda: [mm]))
    page = generate_latest(registry).decode("utf-8")
    assert 'model="?m"' in page and 'category="?x"' in page


@pytest.mark.parametrize("depth", [10, 900, 990, 3_000])
def test_a_lone_surrogate_deep_inside_never_raises(depth: int) -> None:
    value = (
        b'{"event_id":"e","model":"m","features":{},"prediction":1,"x":'
        + b"[" * depth
        + b'"\\ud800"'
        + b"]" * depth
        + b"}"
    )
    for decoder in _decoders():
        out = decoder.decode([RawMessage(value, 1.0, "predictions")], SCHEMAS)
        assert [r.reason for r in out.rejected] in (["invalid_unicode"], ["malformed_json"])
        field = out.rejected[0].field
        if depth == 10:
            assert field == "x" + "[0]" * 10
        elif depth == 900:  # within the stdlib's nesting limit: found, the path bounded
            assert field is not None and field.startswith("x[0][0]") and len(field) == 200
