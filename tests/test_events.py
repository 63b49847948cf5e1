"""The event contract: what is accepted, what is rejected and why, and that nothing crashes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.events import REASONS, Decoder, RawMessage


def msg(obj: object, topic: str = "predictions", offset: int = 0) -> RawMessage:
    value = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return RawMessage(value, 1_700_000_000.0, topic, 0, offset)


GOOD = {
    "event_id": "e1",
    "model": "m",
    "timestamp": "2026-11-26T12:00:00Z",
    "features": {"x": 1.5, "c": "a", "age": None},
    "prediction": 0.3,
}


def decoder(**kw: object) -> Decoder:
    return Decoder(max_message_bytes=10_000, labels_topic="labels", **kw)  # type: ignore[arg-type]


def test_valid_prediction_is_grouped_by_model_with_parsed_timestamp() -> None:
    out = decoder().decode(
        [msg(GOOD), msg({**GOOD, "event_id": "e2", "model": "n", "timestamp": 5})]
    )
    assert not out.rejected
    assert out.predictions["m"].event_ids == ["e1"]
    assert out.predictions["m"].timestamps == [1_795_694_400.0]
    assert out.predictions["n"].timestamps == [5.0]


def test_missing_timestamp_falls_back_to_record_time() -> None:
    ev = {k: v for k, v in GOOD.items() if k != "timestamp"}
    out = decoder().decode([msg(ev)])
    assert out.predictions["m"].timestamps == [1_700_000_000.0]


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b"{not json", "malformed_json", None),
        (b"\xff\xfe", "invalid_utf8", None),
        (b'{"event_id": "e", "x": NaN}', "non_finite_number", None),
        (b"[1, 2]", "not_an_object", None),
        (b"x" * 20_000, "too_large", None),
        ({**GOOD, "event_id": None}, "missing_field", "event_id"),
        ({**GOOD, "event_id": 7}, "wrong_type", "event_id"),
        ({k: v for k, v in GOOD.items() if k != "model"}, "missing_field", "model"),
        ({**GOOD, "features": [1, 2]}, "wrong_type", "features"),
        ({k: v for k, v in GOOD.items() if k != "features"}, "missing_field", "features"),
        ({**GOOD, "prediction": [0.1]}, "wrong_type", "prediction"),
        ({**GOOD, "prediction": {}}, "wrong_type", "prediction"),
        ({**GOOD, "prediction": {"a": "x"}}, "wrong_type", "prediction.a"),
        ({k: v for k, v in GOOD.items() if k != "prediction"}, "missing_field", "prediction"),
        ({**GOOD, "timestamp": "yesterday"}, "invalid_timestamp", "timestamp"),
        ({**GOOD, "timestamp": "2026-11-26T12:00:00"}, "invalid_timestamp", "timestamp"),
        ({**GOOD, "timestamp": 100_000_000_000_000}, "invalid_timestamp", "timestamp"),
        ({**GOOD, "timestamp": 1_764_158_400_000_000}, "invalid_timestamp", "timestamp"),
        ({**GOOD, "timestamp": -1_764_158_400_000}, "invalid_timestamp", "timestamp"),
        ({**GOOD, "model_version": 3}, "wrong_type", "model_version"),
    ],
)
def test_contract_violations_are_rejected_with_reason_and_field(
    payload: object, reason: str, field: str | None
) -> None:
    out = decoder().decode([msg(GOOD, offset=0), msg(payload, offset=1), msg(GOOD, offset=2)])
    assert len(out.rejected) == 1
    r = out.rejected[0]
    assert (r.reason, r.field) == (reason, field)
    assert r.reason in REASONS
    assert r.message.offset == 1
    assert len(out.predictions["m"]) == 2  # the good ones around it are kept


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        (1_764_158_400_123, 1_764_158_400.123),  # Java's currentTimeMillis(), JS's Date.now()
        (1_764_158_400_123.5, 1_764_158_400.1235),
        (100_000_000_000, 100_000_000.0),  # 1e11: the first milliseconds (March 1973)
        (99_999_999_999_999, 99_999_999_999.999),  # the last milliseconds (the year 5138)
        (99_999_999_999, 99_999_999_999.0),  # the last seconds
        (1_764_158_400, 1_764_158_400.0),
    ],
)
def test_epoch_milliseconds_are_told_from_seconds_by_magnitude(
    stamp: float, seconds: float
) -> None:
    """Both Python paths agree: the msgspec fast path, and the full validator (which a
    feature value that is a list sends the event to)."""
    fast = decoder().decode([msg({**GOOD, "timestamp": stamp})])
    full = decoder().decode([msg({**GOOD, "timestamp": stamp, "features": {"l": [1]}})])
    for out in (fast, full):
        assert not out.rejected
        assert out.predictions["m"].timestamps == [seconds]


def test_huge_number_is_kept_for_value_level_handling() -> None:
    out = decoder().decode(
        [msg(b'{"event_id":"e","model":"m","features":{"x":1e400},"prediction":1}')]
    )
    assert not out.rejected
    assert out.predictions["m"].features[0]["x"] == float("inf")


def test_labels_are_validated_on_the_label_topic() -> None:
    out = decoder().decode(
        [
            msg({"event_id": "e1", "model": "m", "label": 1}, topic="labels"),
            msg({"event_id": "e2", "model": "m", "label": [1]}, topic="labels"),
            msg({"event_id": "e3", "model": "m"}, topic="labels"),
        ]
    )
    assert out.labels["m"].labels == [1]
    assert [(r.reason, r.field) for r in out.rejected] == [
        ("wrong_type", "label"),
        ("missing_field", "label"),
    ]


def test_unknown_models_are_rejected_by_policy() -> None:
    d = decoder(accept_model=lambda m: None if m == "m" else "unknown_model")
    out = d.decode([msg(GOOD), msg({**GOOD, "model": "other"})])
    assert [r.reason for r in out.rejected] == ["unknown_model"]
    assert out.rejected[0].model == "other"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    out = decoder().decode([RawMessage(data, 0.0, "predictions"), msg(GOOD)])
    assert len(out.predictions["m"]) >= 1
    assert all(r.reason in REASONS for r in out.rejected)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["event_id", "model", "features", "prediction", "timestamp", "model_version"]
        ),
        json_values,
    )
)
def test_arbitrary_objects_are_accepted_or_rejected_never_raised(obj: dict) -> None:
    out = decoder().decode([msg(obj)])
    assert len(out.rejected) + sum(len(g) for g in out.predictions.values()) == 1


def test_deep_nesting_is_rejected_not_crashing() -> None:
    deep = (
        b'{"event_id":"e","model":"m","features":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b',"prediction":1}'
    )
    out = Decoder(max_message_bytes=10_000_000).decode([RawMessage(deep, 0.0, "predictions")])
    assert len(out.rejected) == 1
    assert out.rejected[0].reason in ("malformed_json", "wrong_type")


def test_batches_decoded_one_by_one_merge_into_the_whole_batch() -> None:
    """DecodedBatch.merge (the service's one-message-at-a-time path) gives what one decode of
    all the messages gives: events in order, record-time rows re-based, labels and rejects."""
    no_ts = {k: v for k, v in GOOD.items() if k != "timestamp"}
    msgs = [
        msg(GOOD, offset=0),
        msg({**no_ts, "event_id": "e2"}, offset=1),
        msg(b"{not json", offset=2),
        msg({**GOOD, "event_id": "e3", "model": "n"}, offset=3),
        msg({"event_id": "e1", "model": "m", "label": 1}, topic="labels", offset=4),
        msg({**no_ts, "event_id": "e4", "model_version": "v2"}, offset=5),
    ]
    d = decoder()
    whole = d.decode_python(msgs)
    merged = d.decode_python([])
    for m in msgs:
        merged.merge(d.decode_python([m]))
    assert merged.predictions.keys() == whole.predictions.keys()
    for model, ev in whole.predictions.items():
        assert merged.predictions[model] == ev
    assert merged.predictions["m"].record_time_rows == [1, 2]
    assert {k: (v.event_ids, v.labels) for k, v in merged.labels.items()} == {
        k: (v.event_ids, v.labels) for k, v in whole.labels.items()
    }
    assert [(r.message.offset, r.reason) for r in merged.rejected] == [
        (r.message.offset, r.reason) for r in whole.rejected
    ]
