"""Data validation: the rules, their thresholds, the pipeline's signals, `monitor validate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitor.cli import main
from monitor.config import ValidationConfig, parse_config
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.simulate import Simulator
from monitor.validation import Validator, binomial_bound, infer_constraints

WINDOW = {"size": 1000, "step": 250}


def _events(sim: Simulator, n: int, *, every: int = 0, **override: object) -> ModelEvents:
    """``n`` simulated events; with ``every``, each ``every``-th event gets ``override``."""
    out = ModelEvents(sim.model)
    for i, (e, _) in enumerate(sim.events(n)):
        feats = e["features"]
        if every and i % every == 0:
            feats = {**feats, **override}
            feats = {k: v for k, v in feats.items() if v is not _DROP}
        out.event_ids.append(e["event_id"])
        out.timestamps.append(float(len(out.event_ids)))
        out.versions.append(e["model_version"])
        out.features.append(feats)
        out.predictions.append(e["prediction"])
    return out


_DROP = object()


def _monitor(**model: object) -> ModelMonitor:
    cfg = parse_config({"models": [{"name": "credit-risk", "window": WINDOW, **model}]})
    sim = Simulator(seed=1)
    ref = build_profile(
        "credit-risk", [(e["features"], e["prediction"]) for e, _ in sim.events(4000)]
    )
    return ModelMonitor(cfg.model("credit-risk"), cfg.limits, ref)  # type: ignore[arg-type]


def _firing(evaluations: list) -> list[dict[str, object]]:
    return [
        {"subject": s.subject, "message": s.details.get("message"), "eval": i}
        for i, e in enumerate(evaluations)
        for s in e.signals
        if s.kind == "data_quality" and s.severity != "ok"
    ]


def test_default_tolerance_numbers_in_the_docstring() -> None:
    assert binomial_bound(5000, 1e-4, 1e-8) == 8
    assert binomial_bound(5000, 0.0, 1e-8) == 0
    # The bound grows with the expected rate: a reference with 20% missing values.
    assert 0.2 * 5000 < binomial_bound(5000, 0.2, 1e-8) < 0.25 * 5000


def test_stationary_stream_raises_no_validation_signal() -> None:
    mm = _monitor()
    evs = mm.ingest(_events(Simulator(seed=9), 30_000))
    assert len(evs) == 117
    assert _firing(evs) == []
    # ... although the rules were checked: every numeric feature has a range rule.
    subjects = {s.subject for s in evs[-1].signals if s.kind == "data_quality"}
    assert {"below_min:age", "above_max:income", "unseen:region", "missing:age"} <= subjects


def test_sentinel_value_is_named_at_the_first_evaluation_after_onset() -> None:
    mm = _monitor()
    clean = mm.ingest(_events(Simulator(seed=9), 2000))
    assert _firing(clean) == []
    bad = mm.ingest(_events(Simulator(seed=10), 250, every=33, age=-1))  # 3% of events
    fired = _firing(bad)
    assert [f["subject"] for f in fired] == ["below_min:age"]
    msg = str(fired[0]["message"])
    assert msg.startswith("age: ") and "(the reference minimum 18 less a 25% margin)" in msg
    assert "most frequent: -1 (8)" in msg
    assert mm.validator.violations[("age", "below_min")] == 8


def test_unit_switch_new_category_and_missing_step_are_named() -> None:
    mm = _monitor()
    mm.ingest(_events(Simulator(seed=9), 2000))
    cents = mm.ingest(_events(Simulator(seed=11), 250, every=20, loan_amount=1e9))
    assert [f["subject"] for f in _firing(cents)] == ["above_max:loan_amount"]
    mm = _monitor()
    mm.ingest(_events(Simulator(seed=9), 2000))
    new = mm.ingest(_events(Simulator(seed=12), 250, every=25, region="<b>mars\ud800</b>"))
    fired = _firing(new)
    assert [f["subject"] for f in fired] == ["unseen:region"]
    msg = str(fired[0]["message"])
    assert "outside the reference categories" in msg and "\\ud800" in msg
    assert "\ud800" not in msg  # a lone surrogate never reaches a page
    mm = _monitor()
    mm.ingest(_events(Simulator(seed=9), 2000))
    gone = mm.ingest(_events(Simulator(seed=13), 250, every=20, income=_DROP))
    assert [f["subject"] for f in _firing(gone)] == ["missing:income"]


def test_declared_constraints_win_and_say_so() -> None:
    validation = {
        "constraints": {
            "num_accounts": {"max": 8, "integer": True},
            "channel": {"domain": ["web", "mobile", "branch"]},
        }
    }
    mm = _monitor(validation=validation)
    evs = mm.ingest(_events(Simulator(seed=9), 3000))
    fired = {str(f["subject"]): str(f["message"]) for f in _firing(evs)}
    # Poisson(4) exceeds 8 in 2% of events; "partner" is 5% of the channel values.
    assert set(fired) == {"above_max:num_accounts", "unseen:channel"}
    assert "above the declared maximum 8" in fired["above_max:num_accounts"]
    assert "partner" in fired["unseen:channel"]
    assert "not_integer:num_accounts" not in fired
    off = _monitor(validation={"enabled": False})
    assert _firing(off.ingest(_events(Simulator(seed=9), 3000, every=10, age=-1))) == []


def test_observe_counts_a_batch_with_numpy_per_rule() -> None:
    cfg = ValidationConfig(constraints={"x": {"min": 0, "max": 10, "integer": True}})
    ref = build_profile("m", [({"x": float(i % 10), "c": "a"}, None) for i in range(200)])
    v = Validator(cfg, ref, ["x"], ["c"], {"c": ["a"]})
    num = np.array([[-1.0], [11.0], [2.5], [np.nan], [3.0]])
    v.categories["c"].append("b")
    cat = np.array([[0], [1], [-1], [0], [1]], dtype=np.int32)
    v.observe(num, cat)
    assert v.violations == {
        ("x", "below_min"): 1,
        ("x", "above_max"): 1,
        ("x", "not_integer"): 1,
        ("x", "missing"): 1,
        ("c", "missing"): 1,
        ("c", "unseen"): 2,
    }


def test_constant_window_is_a_breach_only_when_implausible() -> None:
    ref = build_profile(
        "m", [({"x": float(i), "flag": float(i % 500 == 0)}, None) for i in range(2000)]
    )
    v = Validator(ValidationConfig(), ref, ["x", "flag"], [], {})
    const = np.column_stack([np.full(1000, 5.0), np.zeros(1000)])
    out = {(b.feature, b.rule): b for b in v.check(const, np.empty((1000, 0), np.int32))}
    assert out[("x", "constant")].breached
    # flag is 0 in 99.8% of the reference: a window of zeros is expected, no breach.
    assert not out[("flag", "constant")].breached


def test_inferred_constraints_round_trip_through_the_config() -> None:
    ref = build_profile(
        "m", [({"age": float(20 + i % 50), "c": "ab"[i % 2]}, None) for i in range(500)]
    )
    inferred = infer_constraints(ref, ValidationConfig())
    assert inferred["age"].integer and inferred["age"].min == pytest.approx(20 - 0.25 * 49)
    assert inferred["c"].domain == ["a", "b"]
    doc = {"constraints": {k: c.model_dump(exclude_none=True) for k, c in inferred.items()}}
    cfg = parse_config({"models": [{"name": "m", "validation": yaml.safe_load(yaml.dump(doc))}]})
    assert cfg.model("m").validation.constraints == inferred  # type: ignore[union-attr]


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    cols = list(rows[0])
    path.write_text(
        ",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows)
    )
    return path


def test_cli_validate_and_schema_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    ref_rows = [
        {"age": int(a), "country": c}
        for a, c in zip(
            rng.integers(18, 90, 3000), rng.choice(["DE", "FR", "IT"], 3000), strict=True
        )
    ]
    _write_csv(tmp_path / "train.csv", ref_rows)
    schema = tmp_path / "schema.yaml"
    build = ["reference", "build", "--model", "m", "--input", str(tmp_path / "train.csv")]
    build += ["--output", str(tmp_path / "ref.json"), "--schema-out", str(schema)]
    assert main(build) == 0
    proposed = yaml.safe_load(schema.read_text())["validation"]["constraints"]
    assert sorted(proposed["country"]["domain"]) == ["DE", "FR", "IT"]
    assert proposed["age"]["integer"] is True
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump({"models": [{"name": "m", "reference": {"path": "ref.json"}}]})
    )
    good = _write_csv(tmp_path / "good.csv", ref_rows[:1000])
    capsys.readouterr()
    assert main(["validate", "--config", str(config), "--model", "m", str(good)]) == 0
    assert "0 breached" in capsys.readouterr().out
    bad_rows = [dict(r) for r in ref_rows[:1000]]
    for r in bad_rows[::25]:
        r["age"] = -1
    for r in bad_rows[1::50]:
        r["country"] = "XX"
    bad = _write_csv(tmp_path / "bad.csv", bad_rows)
    assert main(["validate", "--config", str(config), "--model", "m", str(bad)]) == 3
    text = capsys.readouterr().out
    assert "BREACH below_min: age: 4% of values (40 of 1000) below 0.25 (the reference " in text
    assert "BREACH unseen: country:" in text and "XX (20)" in text
    args = ["validate", "--config", str(config), "--model", "m", str(bad), "--json"]
    assert main(args) == 3
    doc = json.loads(capsys.readouterr().out)
    breached = {(r["feature"], r["rule"]) for r in doc["rules"] if r["breached"]}
    assert breached == {("age", "below_min"), ("country", "unseen")}


def test_check_config_names_constraints_that_cannot_apply() -> None:
    from monitor.config import check_config

    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "features": {"age": "numeric", "country": "categorical"},
                    "validation": {
                        "constraints": {
                            "agee": {"min": 0},
                            "age": {"type": "categorical", "domain": ["x"]},
                            "country": {"max": 3},
                        }
                    },
                }
            ]
        }
    )
    assert check_config(cfg, references=False) == [
        "models[0].validation.constraints.agee: not a declared feature of model 'm'",
        "models[0].validation.constraints.age.type: categorical, but the feature is declared "
        "numeric",
        "models[0].validation.constraints.age: domain and max_unseen_rate apply to categorical "
        "features only",
        "models[0].validation.constraints.country: max apply to numeric features only",
    ]


def test_a_constraint_on_a_feature_a_learned_reference_lacks_is_named_in_the_status() -> None:
    """check-config checks constraints against a reference file; a learned reference is known
    only at run time, and a constraint on a feature it lacks was silently never checked."""
    from monitor.status import models_status

    constraints = {"age": {"min": 18}, "agee": {"min": 0}, "x<b>": {"required": True}}
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "credit-risk",
                    "window": WINDOW,
                    "reference": {"learn_first": 500},
                    "validation": {"constraints": constraints},
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model("credit-risk"), cfg.limits)  # type: ignore[arg-type]
    assert mm.unchecked_constraints == []
    mm.ingest(_events(Simulator(seed=3), 600), 0.0)
    assert mm.ready
    assert mm.unchecked_constraints == ["agee", "x<b>"]
    status = models_status(cfg, {"credit-risk": mm}, {}, {})["credit-risk"]
    assert status["reference"]["unchecked_constraints"] == ["agee", "x<b>"]
