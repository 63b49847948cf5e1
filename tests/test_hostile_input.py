"""Hostile producers: no message may take the service down, flood memory or Prometheus.

* property-based (hypothesis) and a short fuzz run on the decoder + model core:
  arbitrary bytes, deep nesting, huge/NaN/inf numbers, wrong types, invalid UTF-8,
  duplicate keys, thousands of features: never an exception, every rejection has
  a bounded reason, memory stays bounded by the caps;
* through the running service and the real broker: poison messages between good
  ones are counted by reason and land on the dead-letter topic with reason
  headers while every good one is applied; and the caps (models, features,
  categories, exported label values, message size) hold on ``/metrics`` against
  a producer sending 10,000 distinct model names, feature names and categories.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fault_helpers import eventually
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import LimitsConfig, ModelConfig, ModelDefaults, parse_config, resolve_model
from monitor.errors import ConfigError
from monitor.events import REASONS, Decoder, RawMessage
from monitor.model_monitor import ModelMonitor
from monitor.service import DECODER_ERROR, MonitorService

BOUNDED_REASONS = {*REASONS, DECODER_ERROR}
INVALID = r'monitor_events_invalid_total\{reason="(\w+)",topic="[^"]+"\} (\S+)'
LIMITS = LimitsConfig(max_features_per_model=8, max_categories_per_feature=5)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def _event(features: dict[str, Any], prediction: Any = 0.5, i: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "model": "m",
        "timestamp": 1_700_000_000 + i,
        "features": features,
        "prediction": prediction,
    }


def _monitor() -> ModelMonitor:
    defaults = ModelDefaults.model_validate(
        {"window": {"size": 40, "step": 20}, "reference": {"learn_first": 30}}
    )
    return ModelMonitor(resolve_model(ModelConfig(name="m"), defaults), LIMITS)


def _encode(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return repr(obj).encode()


def _feed(decoder: Decoder, mm: ModelMonitor, values: list[bytes | None]) -> None:
    batch = decoder.decode(
        [RawMessage(v, 1_700_000_000.0, "p", 0, i) for i, v in enumerate(values)]
    )
    for r in batch.rejected:
        assert r.reason in BOUNDED_REASONS
    for events in batch.predictions.values():
        mm.ingest(events, 1_700_000_000.0)
    if mm.ready:
        for name, cats in mm.categories.items():
            assert len(cats) <= LIMITS.max_categories_per_feature + 1, name
        assert len(mm.numeric_columns) + len(mm.categorical_columns) <= 8 + 1


_warm = [orjson.dumps(_event({"x": float(i % 7), "c": "abc"[i % 3]}, i=i)) for i in range(40)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300) | st.none(), max_size=20))
def test_arbitrary_bytes_are_rejected_by_reason_never_raised(values: list[bytes | None]) -> None:
    _feed(Decoder(max_message_bytes=10_000), _monitor(), [*_warm, *values])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.dictionaries(st.sampled_from(["x", "c", "y", "z"]), json_values), json_values),
        max_size=30,
    )
)
def test_wrong_types_nan_inf_and_nesting_in_features_never_raise(
    events: list[tuple[dict[str, Any], Any]],
) -> None:
    values = [_encode(_event(f, p, i)) for i, (f, p) in enumerate(events)]
    _feed(Decoder(max_message_bytes=100_000), _monitor(), [*_warm, *values])


def test_a_short_fuzz_of_mutated_valid_events_never_raises() -> None:
    rng = random.Random(1234)
    decoder, mm = Decoder(max_message_bytes=50_000), _monitor()
    seeds = [
        *_warm,
        b'{"event_id":"d","model":"m","event_id":"e","features":{"x":1,"x":"a"},"prediction":1}',
        b"[" * 5000 + b"]" * 5000,
        b'{"event_id":"n","model":"m","features":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
        orjson.dumps(_event({f"f{i}": i for i in range(5000)})),
        b'{"event_id":"u","model":"m","features":{"x":"\xff\xfe"},"prediction":1}',
        b'{"event_id":"i","model":"m","features":{"x":NaN,"y":Infinity},"prediction":1e999}',
        b"x" * 60_000,
    ]
    for _ in range(3000):
        msg = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 4)):
            if msg:
                msg[rng.randrange(len(msg))] = rng.randrange(256)
        _feed(decoder, mm, [bytes(msg)])
    assert mm.events_total > 0


def test_integers_beyond_float_range_are_counted_not_raised() -> None:
    huge = b"1" + b"0" * 400
    _feed(
        Decoder(max_message_bytes=10_000),
        _monitor(),
        [
            *_warm,
            b'{"event_id":"h","model":"m","features":{"x":' + huge + b'},"prediction":1}',
            b'{"event_id":"p","model":"m","features":{},"prediction":' + huge + b"}",
        ],
    )


def test_features_named_like_the_monitors_own_columns_are_not_features() -> None:
    """A feature ``__prediction__`` vanished behind the prediction column, one named
    ``__label__`` was shown as the label column and ``__multivariate__`` shared the
    multivariate verdict's subject. In events they are unknown features; declared, an error.
    """
    own = {"__prediction__": "zzz", "__label__": 5.0, "__multivariate__": 1.0}
    events = [
        orjson.dumps(_event({"x": float(i % 7), **own}, prediction=(i % 10) / 10, i=i))
        for i in range(100)
    ]
    mm = _monitor()
    _feed(Decoder(max_message_bytes=10_000), mm, events)
    assert mm.ready
    assert mm.columnar_schema() == (("x",), ())
    assert set(mm.numeric_columns) == {"x", "__prediction__"}  # the prediction's scores
    assert mm.categorical_columns == []
    assert mm.unknown_feature_events == 100 - 30  # every event after the learned reference
    assert mm.last is not None and set(mm.last.results) == {"x", "__prediction__"}
    for name in own:
        with pytest.raises(ConfigError, match=f"models\\[0\\].features: .*{name}.* reserved"):
            parse_config({"models": [{"name": "m", "features": {"x": "numeric", name: "numeric"}}]})


# --------------------------------------------------------------------------- the service


def _service_config(bootstrap: str, tmp: Path, **overrides: Any) -> tuple[dict[str, Any], str]:
    suffix = uuid.uuid4().hex[:10]
    raw = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"g-{suffix}",
            "predictions_topic": f"p-{suffix}",
            "labels_topic": f"l-{suffix}",
            "dead_letter_topic": f"dlq-{suffix}",
            "poll_timeout_ms": 100,
            "metadata_max_age_ms": 1000,
            "max_message_bytes": 20_000,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp / f"state-{suffix}.sqlite")},
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "alerting": {"outbox_path": str(tmp / f"outbox-{suffix}.sqlite")},
        **overrides,
    }
    return raw, suffix


async def _run_service(raw: dict[str, Any]) -> tuple[MonitorService, asyncio.Task[None]]:
    service = MonitorService(parse_config(raw))
    await service.start()
    return service, asyncio.create_task(service.run())


async def _stop(service: MonitorService, task: asyncio.Task[None]) -> None:
    service.request_stop()
    await task
    await service.stop(grace_seconds=1)


async def _send(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=key) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _series(metrics: str) -> list[str]:
    return [line for line in metrics.splitlines() if line and not line.startswith("#")]


@pytest.mark.kafka
async def test_poison_between_good_messages_is_dead_lettered_with_reasons(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    raw, suffix = _service_config(
        kafka_bootstrap, tmp_path, unknown_models="reject", models=[{"name": "m"}]
    )
    poison = [
        b"\xff\xfe not utf-8",
        b"{not json",
        b"[1, 2]",
        b'{"model": "m", "features": {}, "prediction": 1}',
        orjson.dumps({**_event({}), "event_id": "x", "model": "nobody"}),
        b'{"event_id":"n","model":"m","features":{},"prediction":NaN}',
        b"{" + b'"a":' * 10 + b"x" * 30_000 + b"}",
    ]
    want_reasons = {
        "invalid_utf8",
        "malformed_json",
        "not_an_object",
        "missing_field",
        "unknown_model",
        "non_finite_number",
        "too_large",
    }
    good = [orjson.dumps(_event({"x": float(i % 13), "c": "ab"[i % 2]}, i=i)) for i in range(700)]
    stream: list[bytes] = []
    for i, g in enumerate(good):
        stream.append(g)
        if i % 100 == 50:
            stream.extend(poison)
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", stream)
        await eventually(
            lambda: "m" in service.models and service.models["m"].events_total >= 700, 30
        )
        assert service.models["m"].events_total == 700
        metrics = (await httpx.AsyncClient().get(f"{service.http.url}/metrics")).text
    finally:
        await _stop(service, task)
    n_poison = 7 * len(poison)
    reasons = dict(
        re.findall(r'monitor_events_invalid_total\{reason="(\w+)",topic="[^"]+"\} (\S+)', metrics)
    )
    assert set(reasons) == want_reasons, reasons
    assert sum(float(v) for v in reasons.values()) == n_poison

    consumer = AIOKafkaConsumer(
        f"dlq-{suffix}", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < n_poison:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(records)
    finally:
        await consumer.stop()
    assert len(got) == n_poison
    headers = [dict(r.headers) for r in got]
    assert {h["monitor.reason"].decode() for h in headers} == want_reasons
    assert all(h["monitor.source"].decode().startswith(f"p-{suffix}/") for h in headers)


@pytest.mark.kafka
@pytest.mark.slow
async def test_caps_hold_on_metrics_against_10000_distinct_names(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    raw, suffix = _service_config(
        kafka_bootstrap,
        tmp_path,
        unknown_models="track",
        limits={
            "max_models": 3,
            "max_features_per_model": 6,
            "max_categories_per_feature": 10,
            "max_exported_categories": 4,
        },
        models=[
            {
                "name": "multi",
                "performance": {"task": "multiclass", "max_exported_classes": 3},
            }
        ],
    )
    n = 10_000
    base = [
        {"a": float(i % 5), "b": float(i % 3), "c": "xyz"[i % 3], "d": 1.0, "e": 2.0}
        for i in range(200)
    ]
    # one model learns a normal reference, then sees 10k new feature names and categories
    events = [_event(f, "k0", i) | {"model": "wide"} for i, f in enumerate(base)]
    events += [
        _event({**base[i % 200], f"new_{i}": 1.0, "c": f"cat-{i}"}, "k0", 200 + i)
        | {"model": "wide"}
        for i in range(n)
    ]
    # 10k model names: only max_models - 1 more get in (one slot is the listed "multi")
    events += [_event(base[0], 0.5, i) | {"model": f"model-{i}"} for i in range(n)]
    multi = [_event(base[i % 200], f"class-{i}", i) | {"model": "multi"} for i in range(300)]
    labels = [{"event_id": f"e{i}", "model": "multi", "label": f"class-{i}"} for i in range(300)]
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", [orjson.dumps(e) for e in events + multi])
        await _send(kafka_bootstrap, f"l-{suffix}", [orjson.dumps(e) for e in labels])
        await _send(kafka_bootstrap, f"p-{suffix}", [b'{"x":"' + b"y" * 30_000 + b'"}'])
        total = len(events) + len(multi) + len(labels) + 1

        def consumed() -> bool:
            return sum(service._positions.values()) >= total

        await eventually(consumed, within=60)
        metrics = (await httpx.AsyncClient().get(f"{service.http.url}/metrics")).text
    finally:
        await _stop(service, task)
    assert len(service.models) <= 3
    assert "wide" in service.models
    wide = service.models["wide"]
    assert len(wide.categories["c"]) <= 10 + 1
    assert wide.category_overflow["c"] > 0
    series = _series(metrics)
    assert len(series) < 1500, len(series)
    models_on_metrics = set(re.findall(r'model="([^"]+)"', metrics))
    assert len(models_on_metrics) <= 3, models_on_metrics
    assert not any("new_" in s for s in series)
    shares = [s for s in series if s.startswith("monitor_feature_category_share{")]
    assert len({s for s in shares if 'feature="c"' in s and 'model="wide"' in s}) <= 4 + 1
    classes = set(re.findall(r"class-\d+", metrics))
    assert len(classes) <= 3 + 4, classes  # exported classes, plus categories of the prediction
    invalid = dict(
        re.findall(r'monitor_events_invalid_total\{reason="(\w+)",topic="[^"]+"\} (\S+)', metrics)
    )
    assert float(invalid["too_many_models"]) >= n - 2
    assert float(invalid["too_large"]) == 1


@pytest.mark.kafka
async def test_labels_of_models_never_predicted_take_no_model_slot(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A labels topic shared with models this monitor does not watch: under
    ``unknown_models: track`` (defaults without a performance task) each such label made a
    model ("learning" forever on /api/status) and took a slot of ``max_models``, so the
    next new model's predictions were rejected as too_many_models. They are an unknown
    model's labels; a listed model's labels before its first prediction are still held."""
    raw, suffix = _service_config(
        kafka_bootstrap,
        tmp_path,
        unknown_models="track",
        limits={"max_models": 3},
        models=[{"name": "listed", "performance": {"task": "binary"}}],
    )
    labels = [{"event_id": f"x{i}", "model": f"other-team-{i}", "label": 1} for i in range(20)]
    labels += [{"event_id": "e0", "model": "listed", "label": 1}]
    new_model = [_event({"a": 1.0}, 0.5, i) | {"model": "new-model"} for i in range(5)]
    listed = [_event({"a": 1.0}, 0.9, 0) | {"model": "listed"}]
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"l-{suffix}", [orjson.dumps(e) for e in labels])
        await eventually(lambda: sum(service._positions.values()) >= len(labels), within=30)
        await _send(kafka_bootstrap, f"p-{suffix}", [orjson.dumps(e) for e in new_model + listed])
        total = len(labels) + len(new_model) + len(listed)
        await eventually(lambda: sum(service._positions.values()) >= total, within=30)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{service.http.url}/metrics")).text
            status = (await client.get(f"{service.http.url}/api/status")).json()
    finally:
        await _stop(service, task)
    assert set(status["models"]) == {"listed", "new-model"}
    assert status["models"]["new-model"]["events"] == 5
    label_invalid = rf'monitor_events_invalid_total\{{reason="(\w+)",topic="l-{suffix}"\}} (\S+)'
    assert dict(re.findall(label_invalid, metrics)) == {"unknown_model": "20.0"}
    assert float(dict(re.findall(INVALID, metrics)).get("too_many_models", 0)) == 0
    assert not re.search(r'model="other-team-', metrics)
    assert 'monitor_labels_total{model="listed",outcome="early"} 1.0' in metrics


@pytest.mark.kafka
async def test_long_feature_names_and_categories_stay_short_on_metrics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Feature names and category values come from the wire: a 300 KB feature name was
    learned into the schema (a label of every per-feature metric), and a 200 KB category
    was a 200 KB ``category`` label on every scrape. A feature name over 200 characters is
    an unknown feature; a category label is cut, two alike in their start kept apart."""
    raw, suffix = _service_config(kafka_bootstrap, tmp_path, unknown_models="track")
    raw["kafka"]["max_message_bytes"] = 100_000
    long_name = "F" * 5_000
    cats = ["a", "V" * 900 + "1", "V" * 900 + "2"]  # within limits.max_category_chars
    events = [
        _event({"x": float(i % 7), long_name: 1.0, "c": cats[i % 3]}, (i % 10) / 10, i)
        for i in range(400)
    ]
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", [orjson.dumps(e) for e in events])
        await eventually(lambda: service.evaluations_seen >= 1, within=30)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{service.http.url}/metrics")).text
    finally:
        await _stop(service, task)
    assert max(map(len, metrics.splitlines())) < 400
    assert long_name not in metrics
    assert 'monitor_unknown_feature_events_total{model="m"} ' in metrics
    shares = [s for s in _series(metrics) if s.startswith("monitor_feature_category_share{")]
    labels = [re.search(r'category="([^"]*)"', s).group(1) for s in shares]  # type: ignore[union-attr]
    assert sorted(labels) == ["V" * 100 + "...", "V" * 100 + "...#2", "a"]
    refs = [s for s in _series(metrics) if s.startswith("monitor_reference_category_share{")]
    assert len(refs) == 3 and len(set(refs)) == 3


@pytest.mark.kafka
async def test_lone_surrogates_are_rejected_and_the_service_keeps_serving(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A lone-surrogate category once made /metrics answer 500 for good (checkpointed), a
    lone-surrogate model name (unknown models tracked) crashed every checkpoint."""
    raw, suffix = _service_config(kafka_bootstrap, tmp_path, unknown_models="track")
    bad_category = (
        b'{"event_id":"s1","model":"m","timestamp":1700000000,'
        b'"features":{"x":1.0,"c":"\\ud800x"},"prediction":0.5}'
    )
    bad_model = b'{"event_id":"s2","model":"\\udc00m","features":{"x":1.0},"prediction":0.5}'
    good = [orjson.dumps(_event({"x": float(i % 13), "c": "ab"[i % 2]}, i=i)) for i in range(400)]
    stream = [*good[:150], bad_category, bad_model, *good[150:]]
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", stream)
        await eventually(
            lambda: "m" in service.models and service.models["m"].events_total >= 400, 30
        )
        assert not task.done()
        assert service.models["m"].last is not None  # evaluated: categories are exported
        assert set(service.models) == {"m"}
        response = await httpx.AsyncClient().get(f"{service.http.url}/metrics")
        service.checkpoint()
        assert not task.done()
    finally:
        await _stop(service, task)
    assert response.status_code == 200
    reasons = dict(re.findall(INVALID, response.text))
    assert reasons == {"invalid_unicode": "2.0"}
    assert 'monitor_checkpoints_total{outcome="ok"}' in response.text

    consumer = AIOKafkaConsumer(
        f"dlq-{suffix}", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < 2:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(records)
    finally:
        await consumer.stop()
    headers = [{k: v.decode("utf-8") for k, v in r.headers} for r in got]
    assert [(h["monitor.reason"], h["monitor.field"]) for h in headers] == [
        ("invalid_unicode", "features.c"),
        ("invalid_unicode", "model"),
    ]
    assert [r.value for r in got] == [bad_category, bad_model]  # copied unchanged

    # A restart from that checkpoint serves /metrics too.
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", [orjson.dumps(_event({"x": 1.0}, i=400))])
        await eventually(  # restored from the checkpoint at its first event
            lambda: "m" in service.models and service.models["m"].events_total >= 401, 30
        )
        assert service.models["m"].events_total == 401
        response = await httpx.AsyncClient().get(f"{service.http.url}/metrics")
    finally:
        await _stop(service, task)
    assert response.status_code == 200


DECODED = r'monitor_events_decoded_total\{decoder="(\w+)"\} (\S+)'


@pytest.mark.kafka
async def test_one_poison_message_per_500_costs_the_compiled_decoder_only_itself(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """It once sent its whole batch to the Python decoder (100,582 of 120,037 good events
    with one poison message per 500, 2,719 in a clean run)."""
    raw, suffix = _service_config(kafka_bootstrap, tmp_path, models=[{"name": "m"}])
    raw["kafka"]["max_batch_records"] = 500
    poison = [  # each names the model, so the compiled decoder used to give the model up
        b'{"event_id":"p","model":"m","features":[],"prediction":1}',
        b'{"model":"m","features":{},"prediction":1}',
        b'{"event_id":"p","model":"m","features":{},"prediction":null}',
        b'{"event_id":"p","model":"m","features":{},"prediction":1,"timestamp":"yesterday"}',
        b'{"event_id":"p","model":"m","features":{"c":"\\ud800"},"prediction":1}',
    ]
    good = [orjson.dumps(_event({"x": float(i % 13), "c": "ab"[i % 2]}, i=i)) for i in range(5_100)]
    stream = []
    for i, g in enumerate(good[100:]):
        if i % 500 == 250:
            stream.append(poison[(i // 500) % len(poison)])
        stream.append(g)
    service, task = await _run_service(raw)
    try:
        # The first 100 events build the reference (Python by design); then the columns.
        await _send(kafka_bootstrap, f"p-{suffix}", good[:100])
        await eventually(lambda: "m" in service.models and service.models["m"].ready, 30)
        assert service.models["m"].columnar_schema() is not None
        await _send(kafka_bootstrap, f"p-{suffix}", stream)
        await eventually(lambda: service.models["m"].events_total >= 5_100, 60)
        metrics = (await httpx.AsyncClient().get(f"{service.http.url}/metrics")).text
    finally:
        await _stop(service, task)
    assert service.models["m"].events_total == 5_100
    decoded = {k: float(v) for k, v in re.findall(DECODED, metrics)}
    assert decoded == {"native": 5_000.0, "python": 100.0}
    assert sum(float(v) for _, v in re.findall(INVALID, metrics)) == 10


ERRORS = r'monitor_loop_errors_total\{stage="(\w+)"\} (\S+)'


@pytest.mark.kafka
async def test_decoder_failures_are_logged_and_counted_not_swallowed(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A failure of the compiled decoder on a batch, and of the decoder as a whole, each
    cost speed only: counted in monitor_loop_errors_total, logged at a bounded rate."""
    import monitor.events as events_module

    class Panic(BaseException):  # what a Rust panic arrives as
        pass

    class Broken:
        @staticmethod
        def decode_predictions(*args: Any) -> Any:
            raise Panic("panicked at src/lib.rs:1:1")

    raw, suffix = _service_config(kafka_bootstrap, tmp_path, models=[{"name": "m"}])
    good = [orjson.dumps(_event({"x": float(i % 13), "c": "ab"[i % 2]}, i=i)) for i in range(400)]
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", good[:100])
        await eventually(lambda: "m" in service.models and service.models["m"].ready, 30)
        if events_module.NATIVE_AVAILABLE and service.decoder.native:
            monkeypatch.setattr(events_module, "_native", Broken)
            await _send(kafka_bootstrap, f"p-{suffix}", good[100:200])
            await eventually(lambda: service.models["m"].events_total >= 200, 30)
        real_decode = service.decoder.decode

        def failing(*args: Any, **kwargs: Any) -> Any:  # a bug at batch level, once
            monkeypatch.setattr(service.decoder, "decode", real_decode)
            raise RuntimeError("bug in the decoder")

        monkeypatch.setattr(service.decoder, "decode", failing)
        await _send(kafka_bootstrap, f"p-{suffix}", good[200:400])
        await eventually(lambda: service.models["m"].events_total >= 400, 30)
        metrics = (await httpx.AsyncClient().get(f"{service.http.url}/metrics")).text
    finally:
        await _stop(service, task)
    assert service.models["m"].events_total == 400
    errors = {k: float(v) for k, v in re.findall(ERRORS, metrics)}
    assert errors.get("decode_batch") == 1
    assert "decoder failed on a batch of" in caplog.text and "bug in the decoder" in caplog.text
    if events_module.NATIVE_AVAILABLE and service.decoder.native:
        assert errors.get("native_decoder", 0) >= 1
        assert "compiled decoder failed on a batch" in caplog.text
        assert "Panic: panicked at src/lib.rs:1:1" in caplog.text


@pytest.mark.kafka
async def test_new_model_names_that_read_as_another_are_rejected(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Under ``unknown_models: track`` a model name from the wire made a model whatever its
    characters: ``"bidi\\u202eevil"`` (a right-to-left override) read as "bidilive" on
    Grafana and in pages, a zero-width space made a second "churn". Such names are rejected
    as ``invalid_model_name`` (counted, dead-lettered like every rejection), and take no
    model slot; a plain new name is still tracked."""
    raw, suffix = _service_config(kafka_bootstrap, tmp_path, unknown_models="track")
    bad_names = ["bidi\u202eevil", "churn\u200b", "line\u2028break", "tab\there", "nbsp\xa0x"]
    events = [_event({"a": 1.0}, 0.5, i) | {"model": n} for i, n in enumerate(bad_names)]
    events += [_event({"a": 1.0}, 0.5, 10 + i) | {"model": "plain-new"} for i in range(3)]
    service, task = await _run_service(raw)
    try:
        await _send(kafka_bootstrap, f"p-{suffix}", [orjson.dumps(e) for e in events])
        await eventually(lambda: sum(service._positions.values()) >= len(events), within=30)
        metrics = (await httpx.AsyncClient().get(f"{service.http.url}/metrics")).text
    finally:
        await _stop(service, task)
    assert set(service.models) == {"plain-new"}
    invalid = dict(re.findall(INVALID, metrics))
    assert float(invalid["invalid_model_name"]) == len(bad_names)
    assert "\u202e" not in metrics and "\u200b" not in metrics


def test_a_listed_model_name_with_an_unprintable_character_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.name: .*U\+202E"):
        parse_config({"models": [{"name": "bidi\u202eevil"}]})
