"""A categorical value longer than ``limits.max_category_chars`` is invalid (``too_long``).

A producer sending 100 KB strings in a categorical feature put each new one in the
column's vocabulary (up to ``max_categories_per_feature`` of them), hence in every
checkpoint, every category-frequency computation, ``/api`` and the pages. Such a value is
now counted (``monitor_feature_invalid_values_total{reason="too_long"}``) and missing, as
a value of the wrong type is, on the compiled decoder's path and on Python's alike, and a
reference (built from rows, a data file or a saved profile) never holds one either.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.columns import INVALID_VALUE_REASONS
from monitor.config import LimitsConfig, ValidationConfig, parse_config
from monitor.errors import ConfigError, ReferenceError_
from monitor.events import NATIVE_AVAILABLE, Decoder, RawMessage
from monitor.model_monitor import ModelMonitor
from monitor.reference import (
    PREDICTION,
    build_profile,
    load_model_references,
    load_reference,
    segment_references,
)
from monitor.state_format import ModelState, encode
from monitor.validation import validate_rows
from monitor.window import MISSING_CODE

PATHS = [
    pytest.param(True, id="native", marks=pytest.mark.skipif(not NATIVE_AVAILABLE, reason="")),
    pytest.param(False, id="python"),
]
CITIES = ["paris", "lyon", "nice", "lille"]
LABELS = ["yes", "no"]


def _huge(n: int, seed: int = 0) -> str:
    """``n`` random letters: incompressible, so a checkpoint's size shows it."""
    return "".join(random.Random(seed).choices(string.ascii_letters, k=n))


def _rows(n: int) -> list[tuple[dict[str, Any], Any]]:
    rng = random.Random(1)
    return [
        ({"city": rng.choice(CITIES), "x": rng.gauss(0, 1)}, rng.choice(LABELS)) for _ in range(n)
    ]


def _monitor(**limits: Any) -> ModelMonitor:
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "features": {"city": "categorical", "x": "numeric"},
                    "prediction": "categorical",
                    "window": {"size": 100, "step": 100},
                }
            ],
            "limits": limits,
        }
    )
    profile = build_profile(
        "m",
        _rows(500),
        schema={"city": "categorical", "x": "numeric"},
        prediction="categorical",
        max_category_chars=cfg.limits.max_category_chars,
    )
    return ModelMonitor(cfg.model("m"), cfg.limits, profile)  # type: ignore[arg-type]


def _event(i: int, city: Any, x: float, prediction: Any) -> RawMessage:
    doc = {
        "event_id": f"e{i}",
        "model": "m",
        "timestamp": 1_790_000_000.0 + i,
        "features": {"city": city, "x": x},
        "prediction": prediction,
    }
    return RawMessage(orjson.dumps(doc), 1_790_000_000.0 + i, "predictions", 0, i)


def _feed(mm: ModelMonitor, messages: list[RawMessage], native: bool) -> None:
    decoder = Decoder(max_message_bytes=1_000_000, native=native)
    decoder.decode([_event(-1, "paris", 0.0, "yes")])  # the model's verdict, as a first batch
    batch = decoder.decode(messages, {mm.name: mm.columnar_schema()})  # type: ignore[dict-item]
    events = batch.predictions[mm.name]
    # The path under test is the one taken: columns from the compiled decoder, or dicts.
    assert (events.columns is not None) == native
    mm.ingest(events)


def _stream(city: Any, prediction: Any) -> list[RawMessage]:
    """Ten ordinary events with one odd one (``city``, ``prediction``, x=42.5) as the 6th."""
    out = [_event(i, CITIES[i % 4], float(i), LABELS[i % 2]) for i in range(10)]
    out[5] = _event(5, city, 42.5, prediction)
    return out


@pytest.mark.parametrize("native", PATHS)
def test_a_100kb_category_is_counted_too_long_and_kept_out_of_vocabulary_and_state(
    native: bool,
) -> None:
    huge = _huge(100_000)
    mm = _monitor()
    _feed(mm, _stream(huge, "yes"), native)
    assert mm.invalid_values == {("city", "too_long"): 1}
    assert mm.categories["city"] == CITIES  # nothing new
    assert max(len(c) for cats in mm.categories.values() for c in cats) <= 1000
    # The event's other values are used: its x, its prediction; its city is missing.
    num, cat = mm.window.numeric(), mm.window.categorical()
    assert num[5, mm.numeric_columns.index("x")] == 42.5
    assert cat[5, mm.categorical_columns.index("city")] == MISSING_CODE
    assert mm.categories[PREDICTION][cat[5, mm.categorical_columns.index(PREDICTION)]] == "yes"
    assert (cat[:, mm.categorical_columns.index("city")] != MISSING_CODE).sum() == 9

    # The checkpoint costs what a missing value costs, not the 100 KB.
    baseline = _monitor()
    _feed(baseline, _stream(None, "yes"), native)
    size = len(encode(mm.export_state(), compress=False))
    assert size - len(encode(baseline.export_state(), compress=False)) < 100  # the counter
    assert size < 20_000


@pytest.mark.parametrize("native", PATHS)
def test_a_too_long_categorical_prediction_is_counted_and_missing(native: bool) -> None:
    mm = _monitor()
    _feed(mm, _stream("paris", _huge(5_000)), native)
    assert mm.invalid_values == {(PREDICTION, "too_long"): 1}
    assert sorted(mm.categories[PREDICTION]) == ["no", "yes"]
    cat = mm.window.categorical()
    assert cat[5, mm.categorical_columns.index(PREDICTION)] == MISSING_CODE
    assert mm.categories["city"][cat[5, mm.categorical_columns.index("city")]] == "paris"


@pytest.mark.parametrize("native", PATHS)
def test_exactly_max_category_chars_is_a_category_one_more_is_too_long(native: bool) -> None:
    mm = _monitor(max_category_chars=8)
    messages = [
        _event(0, "abcdefgh", 1.0, "yes"),  # 8: accepted, a new category
        _event(1, "abcdefghi", 2.0, "yes"),  # 9: too long
        _event(2, "abcdefgh", 3.0, "yes"),  # known now: the fast path
        _event(3, "abcdefghi", 4.0, "yes"),
    ]
    _feed(mm, messages, native)
    assert mm.invalid_values == {("city", "too_long"): 2}
    assert mm.categories["city"] == [*CITIES, "abcdefgh"]
    city = mm.window.categorical()[:, mm.categorical_columns.index("city")]
    assert city.tolist() == [4, MISSING_CODE, 4, MISSING_CODE]


def test_too_long_is_a_bounded_invalid_value_reason_documented_with_the_others() -> None:
    assert INVALID_VALUE_REASONS == ("wrong_type", "non_finite_number", "too_long")
    root = Path(__file__).resolve().parents[1]
    metrics = (root / "docs" / "METRICS.md").read_text()
    readme = (root / "README.md").read_text()
    for reason in INVALID_VALUE_REASONS:
        assert f"`{reason}`" in metrics.split("| `reason` (invalid values) |")[1].split("\n")[0]
    assert "`too_long`" in readme and "max_category_chars" in readme


def test_the_limit_defaults_to_1000_and_must_be_positive() -> None:
    assert LimitsConfig().max_category_chars == 1000
    with pytest.raises(ConfigError, match="max_category_chars"):
        parse_config({"models": [], "limits": {"max_category_chars": 0}})


# ----------------------------------------------------------------- references


def test_a_reference_built_from_rows_holds_no_too_long_value_and_says_so() -> None:
    rows = _rows(200)
    rows[3] = ({"city": _huge(2_000), "x": 0.5}, _huge(3_000, seed=1))
    rows[7] = ({"city": "x" * 1000, "x": 0.5}, "yes")  # exactly the limit: a category
    profile = build_profile(
        "m", rows, prediction="categorical", max_category_chars=1000, max_categories=50
    )
    city = profile.features["city"]
    assert max(len(c) for c in city.categories) == 1000
    assert city.count == 199 and city.missing_rate == pytest.approx(1 / 200)
    assert max(len(c) for c in profile.features[PREDICTION].categories) == 3
    assert profile.features[PREDICTION].count == 199
    assert profile.too_long == {"city": 1, PREDICTION: 1}
    assert "2 values longer than limits.max_category_chars (1000)" in profile.too_long_note()
    # No bound asked: the old behaviour (a library caller's own choice).
    assert build_profile("m", rows[:10], max_category_chars=None).too_long == {}


def test_segment_values_of_the_reference_are_bounded_alike() -> None:
    class Segments:
        top_k = 5
        min_reference_rows = 1

        def specs(self) -> list[tuple[str, ...]]:
            return [("city",)]

    rows = _rows(50)
    rows += [({"city": _huge(1_500), "x": 0.0}, "yes")] * 20  # the most frequent value
    refs = segment_references(
        rows,
        Segments(),
        lambda members, source: build_profile("m", members, max_category_chars=1000),
        max_category_chars=1000,
    )
    values = refs[("city",)].values
    assert (None,) in values  # missing, as in the stream
    assert all(v is None or len(v) <= 1000 for value in values for v in value)


def test_a_reference_file_with_too_long_values_loads_without_them_and_reports_it(
    tmp_path: Path,
) -> None:
    rows = _rows(100)
    rows[0] = ({"city": _huge(1_200), "x": 1.0}, "no")
    data = tmp_path / "ref.jsonl"
    data.write_text("".join(json.dumps({**f, "prediction": p}) + "\n" for f, p in rows))
    profile = load_reference(data, model="m", max_category_chars=1000)
    assert all(len(c) <= 1000 for c in profile.features["city"].categories)
    assert profile.too_long == {"city": 1}

    # A saved profile that holds one (written by an older release, or by hand).
    unbounded = build_profile("m", rows, max_category_chars=None)
    assert len(unbounded.features["city"].categories) == 5
    saved = tmp_path / "ref.profile.json"
    unbounded.save(saved)
    loaded = load_reference(saved, model="m", max_category_chars=1000)
    city = loaded.features["city"]
    assert sorted(city.categories) == sorted(CITIES)
    assert city.count == 99 and city.counts.sum() == 99
    assert city.missing_rate == pytest.approx(0.01)
    assert loaded.too_long == {"city": 1}

    # Through the settings, as the service, check-config and validate load it.
    class Ref:
        path, format, max_sample, versions = str(saved), "auto", 10_000, {}

    class Settings:
        name, features, prediction, reference = "m", None, "auto", Ref()

    refs = load_model_references(
        Settings(), max_features=10, max_categories=200, max_category_chars=1000
    )
    assert refs.profile is not None and refs.profile.too_long == {"city": 1}


def test_the_service_logs_a_reference_with_too_long_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor.service import MonitorService

    rows = _rows(50)
    rows[0] = ({"city": _huge(1_200), "x": 1.0}, "no")
    data = tmp_path / "ref.jsonl"
    data.write_text("".join(json.dumps({**f, "prediction": p}) + "\n" for f, p in rows))
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "state": {"path": "state.sqlite"},
        "alerting": {"outbox_path": "outbox.sqlite"},
        "models": [{"name": "m", "reference": {"path": str(data)}}],
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    with caplog.at_level("WARNING", logger="monitor"):
        service.load_references()
    assert "m" in service.references
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "1 value longer than limits.max_category_chars (1000)" in text and "city" in text


# ----------------------------------------------------------------- validation


def test_validate_treats_a_too_long_value_as_missing_not_as_an_unseen_category() -> None:
    profile = build_profile("m", _rows(1000), max_category_chars=1000)
    rows = _rows(100)
    for i in range(0, 100, 10):
        rows[i] = ({"city": _huge(1_001, seed=i), "x": 0.0}, "yes")
    schema = {"city": "categorical", "x": "numeric"}
    breaches = validate_rows(ValidationConfig(), profile, rows, schema, max_category_chars=1000)
    by_rule = {(b.rule, b.feature): b for b in breaches}
    assert by_rule[("missing", "city")].breached
    assert not by_rule[("unseen", "city")].breached
    assert all(len(b.message) < 2_000 for b in breaches)


# ----------------------------------------------------------------- saved state


def test_a_saved_vocabulary_with_a_too_long_category_is_restored_without_it() -> None:
    """A checkpoint of an older release may hold one: it is dropped on restore (its rows
    missing), with a note, and not counted as a new invalid value."""
    mm = _monitor(max_category_chars=100_000)
    huge = _huge(2_000)
    _feed(mm, _stream(huge, "yes"), native=False)
    assert huge in mm.categories["city"]
    state: ModelState = mm.export_state()

    fresh = _monitor()
    notes: list[str] = []
    _, cat, _ = fresh.columns.adopt(state, notes)
    assert huge not in fresh.categories["city"]
    assert cat[5, fresh.categorical_columns.index("city")] == MISSING_CODE
    assert fresh.invalid_values == {}
    assert any("max_category_chars" in n for n in notes)


def test_reference_build_says_what_it_left_out_with_the_configs_bound(tmp_path: Path) -> None:
    import subprocess
    import sys

    lines = ["plan,spend,prediction"] + [f"{'ab'[i % 2]},{i},0.5" for i in range(100)]
    lines[5] = f"{'p' * 60},5,0.5"  # over the config's bound of 50, under the default 1000
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "monitor.yaml").write_text(
        "models:\n  - name: m\n    features: {plan: categorical, spend: numeric}\n"
        "limits: {max_category_chars: 50}\n"
    )
    argv = ["reference", "build", "--model", "m", "--input", "train.csv", "--output", "m.json"]
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *argv, "--config", "monitor.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "1 value longer than limits.max_category_chars (50) counted as missing: plan (1)" in (
        run.stdout
    )
    saved = json.loads((tmp_path / "m.json").read_text())
    (plan,) = [f for f in saved["features"] if f["name"] == "plan"]
    assert sorted(plan["categories"]) == ["a", "b"] and plan["count"] == 99


def test_rows_kept_to_learn_a_reference_hold_no_too_long_value() -> None:
    """A model learning its reference keeps its first events as rows, in every checkpoint
    until the reference is built: a too-long value is missing there already."""
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "reference": {"learn_first": 40},
                    "window": {"size": 20, "step": 20},
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model("m"), cfg.limits)  # type: ignore[arg-type]
    huge = _huge(100_000)
    messages = [_event(i, CITIES[i % 4], float(i), LABELS[i % 2]) for i in range(30)]
    messages[3] = _event(3, huge, 3.0, _huge(50_000, seed=1))
    _feed(mm, messages, native=False)
    assert mm.learner.rows[3] == ({"city": None, "x": 3.0}, None)
    assert len(encode(mm.export_state(), compress=False)) < 20_000
    _feed(mm, [_event(i, CITIES[i % 4], float(i), LABELS[i % 2]) for i in range(30, 40)], False)
    assert mm.reference is not None
    assert mm.reference.too_long == {"city": 1, PREDICTION: 1}
    assert all(len(c) <= 1000 for f in mm.reference.features.values() for c in f.categories)


def test_a_learned_reference_saved_with_a_too_long_category_is_restored_without_it() -> None:
    """A checkpoint of an older release may hold a learned reference with such a category:
    restored, the reference (and so the vocabulary) leaves it out, with a note."""

    def config(limit: int) -> Any:
        return parse_config(
            {
                "models": [
                    {
                        "name": "m",
                        "reference": {"learn_first": 40},
                        "window": {"size": 20, "step": 20},
                    }
                ],
                "limits": {"max_category_chars": limit},
            }
        )

    old = config(100_000)  # the bound as an older release had it: none
    mm = ModelMonitor(old.model("m"), old.limits)  # type: ignore[arg-type]
    huge = _huge(5_000)
    messages = [_event(i, CITIES[i % 4], float(i), LABELS[i % 2]) for i in range(45)]
    messages[3] = _event(3, huge, 3.0, "yes")
    _feed(mm, messages, native=False)
    assert mm.reference is not None and huge in mm.reference.features["city"].categories
    state = mm.export_state()

    new = config(1000)
    restored, notes = ModelMonitor.restore(new.model("m"), new.limits, state)  # type: ignore[arg-type]
    assert restored.reference is not None
    city = restored.reference.features["city"]
    assert huge not in city.categories and city.count == 39
    assert huge not in restored.categories["city"]
    assert any("max_category_chars" in n for n in notes)
    assert len(encode(restored.export_state(), compress=False)) < 20_000


def test_dropping_long_categories_leaves_out_segment_values_and_refuses_an_empty_column() -> None:
    class Segments:
        top_k = 5
        min_reference_rows = 1

        def specs(self) -> list[tuple[str, ...]]:
            return [("city",)]

    huge = _huge(1_500)
    rows = [*_rows(50), *[({"city": huge, "x": 0.0}, "yes")] * 20]
    profile = build_profile("m", rows, max_category_chars=None)
    profile.segments = segment_references(
        rows,
        Segments(),
        lambda members, source: build_profile("m", members, max_category_chars=None),
        max_category_chars=None,
    )
    assert (huge,) in profile.segments[("city",)].values
    profile.drop_long_categories(1000)
    ref = profile.segments[("city",)]
    assert (huge,) not in ref.values and (huge,) not in ref.profiles
    assert all(huge not in p.features["city"].categories for p in ref.profiles.values())
    assert profile.too_long == {"city": 20}

    only_long = build_profile("m", [({"c": huge}, None)] * 3, max_category_chars=None)
    with pytest.raises(ReferenceError_, match="every category longer than"):
        only_long.drop_long_categories(1000)
    assert only_long.features["c"].categories == [huge]  # unchanged


def test_a_free_text_column_of_long_values_is_left_out_not_a_reference_error(
    tmp_path: Path,
) -> None:
    """A reference file with a free-text column whose every value is longer than the
    bound: the column became categorical without a category, the reference failed to
    load ("no values in the reference"), and the model was disabled at start."""
    from monitor.reference import infer_columns, load_reference

    path = tmp_path / "ref.csv"
    lines = ["x,note,mixed,prediction"]
    lines += [f"{i},{'z' * 1500}{i},{'y' * 1500 if i % 2 else 'a'},0.5" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    profile = load_reference(path, model="m")
    assert profile.schema() == {"x": "numeric", "mixed": "categorical"}
    assert profile.features["mixed"].categories == ["a"]
    assert profile.too_long == {"mixed": 30}
    rows = [({"note": "z" * 1500}, 0.5)] * 3
    (report,) = infer_columns(rows)[1]
    assert report.describe() == "note: left out (3 rows, 3 longer than limits.max_category_chars)"
