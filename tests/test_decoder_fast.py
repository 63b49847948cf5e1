"""The decoder's fast path changes speed, never results.

``Decoder.decode`` accepts well-formed prediction events on a fast path and sends
everything else to the full validator (``Decoder._decode_one``), the single source of
rejection reasons. Rewriting the fast path (orjson + inline checks, then msgspec
typed decoding) must not change a single output: which events are accepted, every
field value and its Python type (``1`` vs ``1.0`` vs ``True``, ``-0.0``, ``inf``),
timestamps to the last bit, group and rejection order, and every rejection's
reason, field, message and model.

:func:`reference_decode` is the oracle: a verbatim copy of ``Decoder.decode`` as
it was before the msgspec fast path (orjson.loads + exact type checks +
``datetime.fromisoformat``), kept here frozen on purpose. Only ``self`` became a
plain parameter. It shares ``_decode_one`` with the live decoder, which the
rewrite left unchanged, so any difference found here is a fast-path difference.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.events import DecodedBatch, Decoder, ModelEvents, RawMessage

# --------------------------------------------------------------------------- the oracle


def reference_decode(self: Decoder, messages: list[RawMessage]) -> DecodedBatch:
    """``Decoder.decode`` before the msgspec fast path, copied verbatim (see module doc)."""
    out = DecodedBatch()
    preds = out.predictions
    labels_topic = self.labels_topic
    max_bytes = self.max_message_bytes
    max_id = self.max_event_id_chars
    accepted = self._accepted
    loads = orjson.loads
    isfinite = math.isfinite
    fromiso = datetime.fromisoformat
    group: ModelEvents | None = None
    group_tp: tuple[str, int] | None = None
    for msg in messages:
        value = msg.value
        if labels_topic is None or msg.topic != labels_topic:
            # Fast acceptance of a well-formed prediction event (see the docstring).
            try:
                obj = loads(value) if value is not None and len(value) <= max_bytes else None
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                get = obj.get
                event_id = get("event_id")
                model = get("model")
                version = get("model_version")
                features = get("features")
                prediction = get("prediction")
                stamp = get("timestamp")
                ts: float | None = None
                if (
                    type(event_id) is str
                    and 0 < len(event_id) <= max_id
                    and type(model) is str
                    and 0 < len(model) <= 200
                    and (version is None or type(version) is str)
                    and type(features) is dict
                    and (
                        (type(prediction) is float and isfinite(prediction))
                        or type(prediction) is int
                        or type(prediction) is str
                        or type(prediction) is bool
                    )
                    and accepted.get(model, "?") is None
                ):
                    if type(stamp) is str:
                        try:
                            dt = fromiso(stamp)
                        except ValueError:
                            dt = None
                        if dt is not None and dt.tzinfo is not None:
                            ts = dt.timestamp()
                    elif stamp is None:
                        ts = msg.timestamp
                if ts is not None:
                    if group is None or group.model != model:
                        group = preds.get(model)  # type: ignore[arg-type]
                        if group is None:
                            group = preds[model] = ModelEvents(model)  # type: ignore[arg-type]
                        group_tp = None
                    group.event_ids.append(event_id)  # type: ignore[arg-type]
                    group.timestamps.append(ts)
                    group.versions.append(version)
                    group.features.append(features)  # type: ignore[arg-type]
                    group.predictions.append(prediction)
                    tp = (msg.topic, msg.partition)
                    if tp != group_tp:
                        group.partitions.add(tp)
                        group_tp = tp
                    continue
        self._decode_one(msg, out)
    return out


# --------------------------------------------------------------------------- comparing


def canon(value: Any) -> Any:
    """A comparable form that keeps what ``==`` forgets: types (1, 1.0, True), float
    bits (-0.0, inf), dict key order."""
    if isinstance(value, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [canon(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def snapshot(out: DecodedBatch, messages: list[RawMessage]) -> dict[str, Any]:
    """Everything a consumer of the batch can observe, field by field."""
    index = {id(m): i for i, m in enumerate(messages)}
    return {
        "predictions": [
            (
                name,
                g.model,
                canon(g.event_ids),
                canon(g.timestamps),
                canon(g.versions),
                canon(g.features),
                canon(g.predictions),
                sorted(g.partitions),
            )
            for name, g in out.predictions.items()
        ],
        "labels": [
            (name, g.model, canon(g.event_ids), canon(g.labels), canon(g.timestamps))
            for name, g in out.labels.items()
        ],
        "rejected": [
            (index[id(r.message)], r.reason, r.field, r.error, r.model) for r in out.rejected
        ],
    }


def outcome(decode: Any, messages: list[RawMessage]) -> Any:
    """The snapshot, or the exception if decoding raised (then both must raise alike)."""
    try:
        return snapshot(decode(messages), messages)
    except Exception as exc:  # an oracle comparison: a crash is an outcome to compare
        return ("raised", type(exc).__name__, str(exc))


def accept_model(model: str) -> str | None:
    """Deterministic policy exercising every verdict: accepted, unknown (cached) and a
    model-cap rejection (never cached)."""
    if model.startswith("unknown"):
        return "unknown_model"
    if model.startswith("capped"):
        return "too_many_models"
    return None


def assert_same_as_reference(messages: list[RawMessage], **settings_: Any) -> DecodedBatch:
    """Decode twice with each decoder (cold, then warm verdict cache) and compare."""
    new = Decoder(accept_model=accept_model, **settings_)
    ref = Decoder(accept_model=accept_model, **settings_)
    for _ in range(2):
        got, want = (
            outcome(new.decode, messages),
            outcome(lambda ms: reference_decode(ref, ms), messages),
        )
        assert got == want
    return new.decode(messages)


# --------------------------------------------------------------------------- JSON building


@dataclass(frozen=True)
class Raw:
    """JSON text written verbatim: big integers, NaN, bad escapes, bad UTF-8, ..."""

    text: bytes


@dataclass(frozen=True)
class Obj:
    """A JSON object as (key, value) pairs, so keys may repeat."""

    pairs: tuple[tuple[str | Raw, Any], ...]


def dump(node: Any, ascii_only: bool = True) -> bytes:
    """Serialise a tree of JSON values, :class:`Raw` text and :class:`Obj` pairs."""
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Obj):
        items = (dump(k, ascii_only) + b":" + dump(v, ascii_only) for k, v in node.pairs)
        return b"{" + b",".join(items) + b"}"
    if isinstance(node, dict):
        return dump(Obj(tuple(node.items())), ascii_only)
    if isinstance(node, list):
        return b"[" + b",".join(dump(v, ascii_only) for v in node) + b"]"
    if isinstance(node, str):
        # surrogatepass: a lone surrogate written raw is invalid UTF-8 (CESU-8), on purpose.
        return json.dumps(node, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if node is None or isinstance(node, bool):
        return json.dumps(node).encode()
    if isinstance(node, int):
        return str(node).encode()
    if isinstance(node, float):
        return repr(node).encode()
    raise TypeError(node)


# --------------------------------------------------------------------------- strategies

number_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
).map(lambda s: Raw(s.encode()))

odd_literals = st.sampled_from(
    [
        Raw(b"NaN"),
        Raw(b"-Infinity"),
        Raw(b"Infinity"),
        Raw(b"1e400"),
        Raw(b"-1e400"),
        Raw(b"1e-400"),
        Raw(b"4.9e-324"),
        Raw(b"2.4703282292062327e-324"),
        Raw(b"1.7976931348623158e308"),
        Raw(b"1.7976931348623159e308"),
        Raw(b"-0"),
        Raw(b"-0.0"),
        Raw(b"1E5"),
        Raw(b"01"),
        Raw(b"1."),
        Raw(b".5"),
        Raw(b"+1"),
        Raw(b"9223372036854775807"),
        Raw(b"9223372036854775808"),
        Raw(b"18446744073709551615"),
        Raw(b"18446744073709551616"),
        Raw(b"-9223372036854775808"),
        Raw(b"-9223372036854775809"),
        Raw(b"1" + b"0" * 400),
        Raw(b'"\\ud800"'),
        Raw(b'"\\udc00x"'),
        Raw(b'"\\ud83d\\ude00"'),
        Raw(b'"\\u0000"'),
        Raw(b'"\xff"'),
        Raw(b'"\xc3\xa9"'),
        Raw(b'"\xed\xa0\x80"'),
        Raw(b'"\x01"'),
        Raw(b'"\\q"'),
        Raw(b"tru"),
        Raw(b"[1,]"),
        Raw(b'{"a":1,}'),
        Raw(b"[" * 40 + b"]" * 40),
        Raw(b"[" * 1100 + b"]" * 1100),
    ]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | number_literals
)

json_values = st.recursive(
    scalars | odd_literals,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=8,
)

_digits = st.integers


@st.composite
def rfc3339ish(draw: st.DrawFn) -> str:
    """Timestamps near RFC 3339, valid or not: odd fields, separators, fractions, offsets."""
    year = draw(st.sampled_from([1, 1969, 1970, 2026, 9999]) | _digits(0, 10_000))
    month, day = draw(_digits(0, 13)), draw(_digits(0, 32))
    hour, minute, second = draw(_digits(0, 25)), draw(_digits(0, 60)), draw(_digits(0, 61))
    sep = draw(st.sampled_from(["T", "T", "t", " ", "_"]))
    frac = draw(
        st.sampled_from(["", "", ".", ".0", ".010", ".123456", ".1234567", ",5", ".000000001"])
    )
    offset = draw(
        st.sampled_from(
            [
                "Z",
                "Z",
                "z",
                "",
                "+00:00",
                "-00:00",
                "+05:30",
                "-08:00",
                "+23:59",
                "+24:00",
                "+0530",
                "+05",
                "+05:30:15",
                "+05:30:15.5",
                "UTC",
            ]
        )
    )
    return (
        f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{frac}{offset}"
    )


timestamps = (
    rfc3339ish()
    | st.sampled_from(
        [
            "2026-11-26T12:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-11-26T12:00:00",
            "2026-11-26",
            "2026-11-26T12:00Z",
            "20261126T120000Z",
            "2026-W48-4T12:00:00Z",
            "2026-11-26T12:00:00.5+01:00",
            "\u0662\u0660\u0662\u0666-11-26T12:00:00Z",
            " 2026-11-26T12:00:00Z",
            "2026-11-26T12:00:00Z\n",
            "2026-11-26T12:00:00\ud800Z",
            "",
            "yesterday",
        ]
    )
    | st.integers(-10, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1.0, max_value=2e11)
    | st.sampled_from([0, 0.0, -0.0, 100_000_000_000, 100_000_000_001, True, False, [], {}])
    | odd_literals
    | st.none()
)

ids = (
    st.text(min_size=1, max_size=12)
    | st.sampled_from(["", "e", "x" * 8, "x" * 9, "x" * 256, "x" * 257, "é", "\ud800"])
    | st.none()
    | st.integers()
    | st.just(["e"])
)

models = st.sampled_from(
    ["m", "m", "m", "n", "é", "unknown-a", "capped-b", "", "x" * 200, "x" * 201]
) | (st.none() | st.integers() | st.booleans())

versions = st.sampled_from(["2026-11-01", "2026-11-01", "", "é"]) | st.none() | st.integers()

features = (
    st.dictionaries(st.text(max_size=5), scalars | odd_literals, max_size=6)
    | st.dictionaries(st.text(max_size=3), json_values, max_size=3)
    | st.lists(st.booleans(), max_size=2)
    | st.none()
    | st.integers()
    | st.text(max_size=3)
)

predictions = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=5)
    | st.booleans()
    | st.none()
    | number_literals
    | odd_literals
    | st.dictionaries(
        st.text(max_size=3), st.floats() | st.integers() | st.booleans() | st.text(), max_size=3
    )
    | st.lists(st.floats(allow_nan=False), max_size=2)
)

labels = st.integers() | st.floats(allow_nan=False) | st.booleans() | st.text(max_size=3)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": ids,
    "model": models,
    "model_version": versions,
    "timestamp": timestamps,
    "features": features,
    "prediction": predictions,
    "label": labels,
}

keys = st.sampled_from(list(FIELD_VALUES)) | st.sampled_from(
    [Raw(b'"mod\\u0065l"'), Raw(b'"\\u0065vent_id"'), "extra", "Model", ""]
)


@st.composite
def event_values(draw: st.DrawFn) -> bytes | None:
    """One message value: mostly an event object, sometimes damaged or not an object."""
    pairs: list[tuple[str | Raw, Any]] = []
    for name, strategy in FIELD_VALUES.items():
        if draw(st.integers(0, 5)) > 0:  # present five times in six
            pairs.append((name, draw(strategy)))
    extras = draw(st.lists(st.tuples(keys, json_values | scalars), max_size=2))
    pairs = draw(st.permutations([*pairs, *extras]))
    value = dump(Obj(tuple(pairs)), ascii_only=draw(st.booleans()))
    damage = draw(
        st.sampled_from(
            ["none"] * 10
            + ["truncate", "garbage", "bom", "bad_byte", "whitespace", "not_object", "null"]
        )
    )
    if damage == "truncate":
        value = value[: draw(st.integers(0, max(len(value) - 1, 0)))]
    elif damage == "garbage":
        value += draw(st.sampled_from([b"x", b",", b"}", b"\x00", b" 1"]))
    elif damage == "bom":
        value = b"\xef\xbb\xbf" + value
    elif damage == "bad_byte" and value:
        at = draw(st.integers(0, len(value) - 1))
        value = value[:at] + draw(st.sampled_from([b"\xff", b"\x80", b"\xc3"])) + value[at + 1 :]
    elif damage == "whitespace":
        value = b" \n\t" + value + b"\r\n"
    elif damage == "not_object":
        value = dump(draw(json_values))
    elif damage == "null":
        return None
    return value


@st.composite
def batches(draw: st.DrawFn) -> list[RawMessage]:
    values = draw(st.lists(event_values(), min_size=1, max_size=12))
    return [
        RawMessage(
            value,
            draw(st.sampled_from([1_700_000_000.0, 0.0, 1_700_000_000.25])),
            draw(st.sampled_from(["predictions", "predictions", "labels", "other"])),
            draw(st.integers(0, 2)),
            offset,
        )
        for offset, value in enumerate(values)
    ]


decoder_settings = st.fixed_dictionaries(
    {
        "max_message_bytes": st.sampled_from([1_000_000, 1_000_000, 120]),
        "max_event_id_chars": st.sampled_from([256, 256, 8]),
        "labels_topic": st.sampled_from(["labels", None]),
    }
)


# --------------------------------------------------------------------------- tests


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches(), decoder_settings)
def test_mixed_batches_decode_exactly_as_the_reference(
    messages: list[RawMessage], config: dict[str, Any]
) -> None:
    assert_same_as_reference(messages, **config)


@settings(max_examples=200, deadline=None)
@given(st.lists(number_literals, min_size=1, max_size=8), number_literals)
def test_number_literals_parse_to_the_same_values(values: list[Raw], prediction: Raw) -> None:
    feats = Obj(tuple((f"f{i}", v) for i, v in enumerate(values)))
    value = dump(
        Obj((("event_id", "e"), ("model", "m"), ("features", feats), ("prediction", prediction)))
    )
    assert_same_as_reference(
        [RawMessage(value, 0.0, "predictions")] * 2, max_message_bytes=1_000_000
    )


@settings(max_examples=500, deadline=None)
@given(timestamps)
def test_timestamps_convert_to_the_same_epoch_seconds(stamp: Any) -> None:
    value = dump(
        Obj(
            (
                ("event_id", "e"),
                ("model", "m"),
                ("features", {}),
                ("prediction", 1),
                ("timestamp", stamp),
            )
        )
    )
    assert_same_as_reference(
        [RawMessage(value, 5.0, "predictions")] * 2, max_message_bytes=1_000_000
    )


def _event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "model": "m",
        "timestamp": "2026-11-26T12:00:00Z",
        "features": {"x": 1.5},
        "prediction": 0.5,
    }
    return {**base, **fields}


def raw(features: bytes = b"{}", prediction: bytes = b"1", extra: bytes = b"") -> bytes:
    """A prediction event written by hand, for what a JSON encoder would not write."""
    head = b'{"event_id":"e","model":"m","features":'
    return head + features + b',"prediction":' + prediction + extra + b"}"


DEEP, DEEPER = b"[" * 990 + b"]" * 990, b"[" * 1100 + b"]" * 1100

EDGE_CASES: dict[str, bytes] = {
    # Integers beyond int64 (msgspec keeps them as int, orjson/stdlib give float).
    "int64 max": raw(b'{"x":9223372036854775807}'),
    "2**63": raw(b'{"x":9223372036854775808}'),
    "2**64": raw(b'{"x":18446744073709551616}'),
    "-2**63-1": raw(b'{"x":-9223372036854775809}'),
    "400 digits": raw(b'{"x":1' + b"0" * 400 + b"}"),
    "big prediction": raw(prediction=b"18446744073709551616"),
    "big timestamp": raw(extra=b',"timestamp":18446744073709551616'),
    "1e400 feature": raw(b'{"x":1e400}'),
    "1e400 prediction": raw(prediction=b"1e400"),
    "NaN feature": raw(b'{"x":NaN}'),
    # msgspec skips unknown fields without checking their UTF-8.
    "bad utf8 in unknown field": raw(extra=b',"x":"\xff"'),
    "cesu-8 in unknown field": raw(extra=b',"x":"\xed\xa0\x80"'),
    "bad utf8 in a key": raw(b'{"\xff":1}'),
    "non-ascii ok": raw('{"c":"Zürich"}'.encode(), '"ü"'.encode(), ',"event_id":"é"'.encode()),
    "lone surrogate": raw(b'{"c":"\\ud800"}'),
    "lone surrogate unknown": raw(extra=b',"x":"\\udc00"'),
    "duplicate fields": raw(b'{"x":1,"x":"a"}', extra=b',"event_id":"b","model":"n"'),
    "escaped duplicate": raw(extra=b',"\\u0065vent_id":"b"'),
    "bool vs int": raw(b'{"b":true,"i":1,"f":1.0}', prediction=b"true"),
    "empty event_id": raw(extra=b',"event_id":""'),
    "empty model": raw(extra=b',"model":""'),
    "features list": raw(b"[1]"),
    "nested feature": raw(b'{"x":[1,{"y":2}]}'),
    "nested big int": raw(b'{"x":[18446744073709551616]}'),
    "class scores": raw(prediction=b'{"a":0.1,"b":0.9}'),
    "bad class scores": raw(prediction=b'{"a":true}'),
    "leap second": orjson.dumps(_event(timestamp="2026-12-31T23:59:60Z")),
    "naive": orjson.dumps(_event(timestamp="2026-11-26T12:00:00")),
    "offset": orjson.dumps(_event(timestamp="2026-11-26T12:00:00.123456-08:00")),
    "7 fraction digits": orjson.dumps(_event(timestamp="2026-11-26T12:00:00.1234567Z")),
    "epoch int": orjson.dumps(_event(timestamp=1_764_158_400)),
    "epoch float": orjson.dumps(_event(timestamp=1_764_158_400.5)),
    "epoch -0.0": orjson.dumps(_event(timestamp=-0.0)),
    "epoch limit": orjson.dumps(_event(timestamp=100_000_000_000)),
    "epoch ms": orjson.dumps(_event(timestamp=1_764_158_400_000)),
    "epoch negative": orjson.dumps(_event(timestamp=-1)),
    "epoch bool": orjson.dumps(_event(timestamp=True)),
    "timestamp null": orjson.dumps(_event(timestamp=None)),
    "version null": orjson.dumps(_event(model_version=None)),
    "version int": orjson.dumps(_event(model_version=3)),
    "deep": raw(b'{"x":' + DEEP + b"}"),
    "deeper": raw(b'{"x":' + DEEPER + b"}"),
    "deep unknown": raw(extra=b',"x":' + DEEPER),
    "bom": b"\xef\xbb\xbf" + orjson.dumps(_event()),
    "trailing data": orjson.dumps(_event()) + b" x",
    "not an object": b"[1,2]",
    "empty": b"",
}


@pytest.mark.parametrize("payload", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_edge_cases_decode_exactly_as_the_reference(payload: bytes) -> None:
    good = orjson.dumps(_event())
    messages = [
        RawMessage(v, 1_700_000_000.0, "predictions", p, i)
        for i, (v, p) in enumerate([(good, 0), (payload, 1), (good, 0), (payload, 0)])
    ]
    assert_same_as_reference(messages, max_message_bytes=1_000_000, labels_topic="labels")


def test_integers_beyond_int64_stay_floats_as_before() -> None:
    """msgspec would keep 2**64 as an int; the contract has always given a float."""
    out = assert_same_as_reference(
        [RawMessage(EDGE_CASES["2**64"], 0.0, "predictions")] * 2, max_message_bytes=10_000
    )
    assert [type(f["x"]) for f in out.predictions["m"].features] == [float, float]
    assert out.predictions["m"].features[0]["x"] == 2.0**64


def test_bad_utf8_in_an_ignored_field_is_still_rejected() -> None:
    """msgspec skips unknown fields without checking their UTF-8; the contract rejects."""
    out = assert_same_as_reference(
        [RawMessage(EDGE_CASES["bad utf8 in unknown field"], 0.0, "predictions")] * 2,
        max_message_bytes=10_000,
    )
    assert [r.reason for r in out.rejected] == ["invalid_utf8", "invalid_utf8"]


def test_well_formed_events_take_the_fast_path() -> None:
    """The benchmark's events (and non-ASCII, epoch-seconds and null-timestamp variants)
    never reach the full validator once their model is known: the speed-up is real."""
    from bench import throughput

    values = throughput.generate(throughput.SINGLE, 200, 1)
    values += [
        EDGE_CASES["non-ascii ok"],
        EDGE_CASES["epoch int"],
        EDGE_CASES["epoch float"],
        EDGE_CASES["timestamp null"],
        EDGE_CASES["bool vs int"],
    ]
    messages = throughput.raw_messages(values)
    decoder = Decoder(max_message_bytes=1_000_000)
    decoder.decode(messages)  # the first event of a model decides (and caches) its verdict
    slow_calls: list[RawMessage] = []
    full_path = decoder._decode_one

    def counting(msg: RawMessage, out: DecodedBatch) -> None:
        slow_calls.append(msg)
        full_path(msg, out)

    decoder._decode_one = counting  # type: ignore[method-assign]
    out = decoder.decode(messages)
    assert slow_calls == []
    assert sum(len(g) for g in out.predictions.values()) == len(messages)
    assert snapshot(out, messages) == snapshot(
        reference_decode(Decoder(max_message_bytes=1_000_000), messages), messages
    )


def test_interleaved_models_partitions_and_full_path_events_keep_arrival_order() -> None:
    """Events of 50 models round-robin over three partitions, with full-path events
    (class scores, a cold model) between them: the bound per-model appends must keep
    one arrival order per model and every (topic, partition) seen."""
    from bench import throughput

    values = throughput.generate(throughput.SCALE, 600, 2)
    for i in range(0, len(values), 7):
        values[i] = raw(
            prediction=b'{"a":0.25,"b":0.75}', extra=f',"model":"m{i % 3:02d}"'.encode()
        )
    messages = [
        RawMessage(v, 1_700_000_000.0 + i, "predictions", (i // 50) % 3, i)
        for i, v in enumerate(values)
    ]
    out = assert_same_as_reference(messages, max_message_bytes=1_000_000)
    assert len(out.predictions) == 50
    assert all(len(g.partitions) == 3 for g in out.predictions.values())


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_values_that_are_not_bytes_decode_as_before(wrap: Any) -> None:
    """Kafka hands over ``bytes``; anything else still decodes, on the full path."""
    good = orjson.dumps(_event())
    messages = [RawMessage(wrap(v), 0.0, "predictions") for v in (good, good, b"[1]")]
    assert_same_as_reference(messages, max_message_bytes=1_000_000)
