"""What the reference learner holds while it collects a model's first events.

Until it has ``reference.learn_first`` events, the learner keeps them as rows, in memory and
in every checkpoint. Events often carry more than scalar features (an embedding, a nested
document): those values can never be a feature's, so the learner keeps a stand-in, and the
reference it builds must be the very one the whole rows give.
"""

from __future__ import annotations

import numpy as np

from monitor.config import parse_config
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.simulate import Simulator
from monitor.state_format import decode, encode
from tests.sim_events import model_events
from tests.test_model_monitor import _run

CONFIG = {
    "models": [
        {
            "name": "credit-risk",
            "window": {"size": 1000, "step": 250},
            "reference": {"learn_first": 3000},
        }
    ]
}


def _with_payloads(n: int, seed: int) -> tuple:
    ev = model_events(Simulator(seed=seed), n)
    rng = np.random.default_rng(seed)
    for i, f in enumerate(ev.features):
        f["embedding"] = rng.random(256).tolist()
        f["doc"] = {"title": "t", "body": ["x"] * 50}
        if i % 7 == 0:
            f["mixed"] = "a"  # a column that is sometimes a category, sometimes a list
        elif i % 7 == 1:
            f["mixed"] = [1, 2]
    return ev


def test_list_and_object_values_are_not_held_and_the_reference_is_the_same() -> None:
    cfg = parse_config(CONFIG)
    ev = _with_payloads(3000, 4)
    whole = [(dict(f), p) for f, p in zip(ev.features, ev.predictions, strict=True)]
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits)  # type: ignore[arg-type]
    _run(mm, _slice(ev, 0, 2800), [700] * 4)  # 2,800 of 3,000: still learning
    held = mm.learner.rows
    assert len(held) == 2800
    assert all(f["embedding"] == [] and f["doc"] == [] for f, _ in held)
    # The events themselves are not changed: the rest of the pipeline sees them whole.
    assert len(ev.features[0]["embedding"]) == 256
    blob = encode(mm.export_state())
    assert len(blob) < 400_000, len(blob)  # the whole rows: about 6 MB

    # A checkpoint restored goes on learning; the reference it completes is the one the
    # whole rows give (same schema, same fingerprint).
    restored, _ = ModelMonitor.restore(mm.settings, mm.limits, decode(blob))
    _run(restored, _slice(ev, 2800, 3000), [200])
    assert restored.reference is not None
    expected = build_profile("credit-risk", whole, max_sample=10_000)
    assert restored.reference.schema() == expected.schema()
    schema = restored.reference.schema()
    assert "embedding" not in schema and "doc" not in schema  # no feature's values
    assert schema["mixed"] == "categorical"  # its strings decide it
    assert restored.reference.fingerprint == expected.fingerprint


def test_a_saved_state_holding_whole_payloads_is_compacted_at_restore() -> None:
    cfg = parse_config(CONFIG)
    ev = _with_payloads(1000, 5)
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits)  # type: ignore[arg-type]
    _run(mm, ev, [1000])
    state = mm.export_state()
    # As a release before this one saved it: the rows whole.
    state.learn_rows = [(f, p) for f, p in zip(ev.features, ev.predictions, strict=True)]
    restored, _ = ModelMonitor.restore(mm.settings, mm.limits, decode(encode(state)))
    assert len(restored.learner.rows) == 1000
    assert all(f["embedding"] == [] for f, _ in restored.learner.rows)


def _slice(events, start: int, stop: int):
    from monitor.events import ModelEvents

    out = ModelEvents(events.model)
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(out, name).extend(getattr(events, name)[start:stop])
    return out


def test_a_column_of_lists_is_left_out_not_a_reference_without_values() -> None:
    """A model learning from events that carry an embedding was disabled when its
    reference completed ("feature 'embedding': no values in the reference"): the column
    had been typed categorical without a category. It is left out, and says why."""
    from monitor.reference import infer_columns

    rows = [
        ({"x": float(i), "emb": [0.1, 0.2], "y": [1] if i % 2 else "a"}, 0.5) for i in range(50)
    ]
    profile = build_profile("m", rows)
    assert set(profile.schema()) == {"x", "y"}
    assert profile.features["y"].kind == "categorical"
    assert profile.features["y"].count == 25  # the lists are neither values nor missing
    schema, reports = infer_columns(rows)
    text = {r.name: r.describe() for r in reports}
    assert "emb" not in schema
    assert text["emb"] == "emb: left out (0 rows, 50 list or object values, which no feature holds)"
    assert "25 list or object values" in text["y"], text["y"]


def test_keys_no_feature_can_have_are_not_held() -> None:
    """A key longer than a feature name (a producer writing a document into a key) is no
    column: the learner does not hold it for its thousands of rows either."""
    cfg = parse_config(CONFIG)
    ev = model_events(Simulator(seed=6), 500)
    whole = []
    for i, f in enumerate(ev.features):
        f["k" * 50_000 + str(i % 3)] = 1.0
        whole.append((dict(f), ev.predictions[i]))
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits)  # type: ignore[arg-type]
    _run(mm, ev, [500])
    assert all(max(map(len, f)) <= 200 for f, _ in mm.learner.rows)
    assert len(encode(mm.export_state())) < 200_000
    expected = build_profile("credit-risk", whole)
    restored, _ = ModelMonitor.restore(mm.settings, mm.limits, decode(encode(mm.export_state())))
    _run(restored, _slice(model_events(Simulator(seed=7), 3000), 0, 2500), [2500])
    assert restored.reference is not None
    assert set(restored.reference.schema()) == set(expected.schema())
