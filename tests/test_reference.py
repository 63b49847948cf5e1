"""Reference profiles: building from files, saving, loading, bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.errors import ReferenceError_
from monitor.reference import PREDICTION, ReferenceProfile, build_profile, load_reference


def test_profile_from_event_jsonl_and_flat_csv_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    xs = rng.normal(size=500)
    cs = rng.choice(["a", "b", "c"], size=500, p=[0.5, 0.3, 0.2])
    jl = tmp_path / "ref.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(
                {
                    "event_id": str(i),
                    "model": "m",
                    "features": {"x": float(x), "c": str(c)},
                    "prediction": 0.5,
                }
            )
            for i, (x, c) in enumerate(zip(xs, cs, strict=True))
        )
    )
    csv = tmp_path / "ref.csv"
    csv.write_text(
        "x,c,prediction\n" + "\n".join(f"{float(x)!r},{c},0.5" for x, c in zip(xs, cs, strict=True))
    )
    a = load_reference(jl, model="m")
    b = load_reference(csv, model="m")
    assert a.schema() == b.schema() == {"x": "numeric", "c": "categorical"}
    np.testing.assert_array_equal(a.features["x"].sample, np.sort(xs))
    np.testing.assert_array_equal(a.features["x"].sample, b.features["x"].sample)
    assert a.features["c"].categories == ["a", "b", "c"]
    assert a.features["c"].counts.tolist() == [int((cs == c).sum()) for c in "abc"]
    assert a.fingerprint == b.fingerprint
    assert a.features[PREDICTION].kind == "numeric"


def test_profile_round_trips_and_sample_is_bounded(tmp_path: Path) -> None:
    rows = [({"x": float(i), "c": "k" if i % 3 else None}, "yes") for i in range(50_000)]
    prof = build_profile("m", rows, max_sample=1000)
    assert prof.features["x"].sample.size == 1000
    assert prof.features["x"].sample[0] == 0.0 and prof.features["x"].sample[-1] == 49_999.0
    assert prof.features["c"].missing_rate == pytest.approx(1 / 3, abs=1e-4)
    assert prof.features[PREDICTION].kind == "categorical"
    path = tmp_path / "m.profile.json"
    prof.save(path)
    back = load_reference(path, model="m")
    assert back.fingerprint == prof.fingerprint
    np.testing.assert_array_equal(back.features["x"].sample, prof.features["x"].sample)
    assert back.features["c"].categories == prof.features["c"].categories


def test_foreign_or_newer_profiles_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.profile.json"
    p.write_text(json.dumps({"format": "monitor-reference-profile", "format_version": 99}))
    with pytest.raises(ReferenceError_, match="format_version"):
        ReferenceProfile.from_json(p.read_text())
    with pytest.raises(ReferenceError_, match="not a reference profile"):
        ReferenceProfile.from_json("{}")
    with pytest.raises(ReferenceError_, match="not found"):
        load_reference(tmp_path / "missing.jsonl", model="m")
