"""Reference profiles: building from files, saving, loading, bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.errors import ReferenceError_
from monitor.reference import (
    PREDICTION,
    ReferenceProfile,
    build_profile,
    infer_columns,
    iter_rows,
    load_reference,
)


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


def test_a_profile_is_recognised_by_its_content_not_its_name(tmp_path: Path) -> None:
    prof = build_profile("m", [({"x": float(i)}, None) for i in range(100)])
    for name in ("churn-ref.json", "reference", "ref.jsonl"):
        prof.save(tmp_path / name)
        back = load_reference(tmp_path / name, model="m")
        assert back.fingerprint == prof.fingerprint
    # A JSONL file of flat rows is still data.
    (tmp_path / "rows.json").write_text('{"x": 1.0}\n{"x": 2.0}\n')
    assert load_reference(tmp_path / "rows.json", model="m").rows == 2


def test_missing_value_tokens_do_not_turn_a_numeric_column_categorical(tmp_path: Path) -> None:
    rows = ["spend,tier"] + [f"{i}.5,{'ab'[i % 2]}" for i in range(3000)]
    rows += ["n/a,a", "NA,b", "null,a", "None,b", "NaN,a", ",b", " N/A ,a"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    prof = load_reference(tmp_path / "train.csv", model="m")
    assert prof.schema() == {"spend": "numeric", "tier": "categorical"}
    assert prof.features["spend"].count == 3000
    schema, reports = infer_columns(list(iter_rows(tmp_path / "train.csv")))
    assert schema == {"spend": "numeric", "tier": "categorical"}
    assert reports[0].describe() == (
        "spend: numeric, 3000 values, 7 missing (every present value is a number)"
    )


def test_the_report_says_why_a_column_is_categorical_with_values_escaped(tmp_path: Path) -> None:
    hostile = "\x1b[31m<b>\udc80" + "z" * 100
    rows = [({"spend": float(i), "evil\n": 1.0}, None) for i in range(3000)]
    rows.append(({"spend": "abc", "evil\n": hostile}, None))
    rows.append(({"spend": "n/a"}, None))
    schema, reports = infer_columns(rows)
    assert schema == {"spend": "categorical", "evil\n": "categorical"}
    assert reports[0].describe() == (
        "spend: categorical, 3001 values, 1 missing (1 non-numeric value 'abc' at row 3001)"
    )
    shown = reports[1].describe()
    assert shown.isascii() and shown.isprintable() and len(shown) < 200
    assert shown.startswith("evil\\n: categorical") and "\\x1b[31m<b>\\udc80" in shown
    # Declared types win, and say what happened to the values that do not fit.
    schema, reports = infer_columns(rows, {"spend": "numeric"})
    assert schema == {"spend": "numeric"}
    assert reports[0].describe() == (
        "spend: numeric, 3001 values, 1 missing "
        "(declared; 1 non-numeric value 'abc' at row 3001 counted as missing)"
    )


def test_ragged_or_unreadable_files_name_file_and_line(tmp_path: Path) -> None:
    ragged = tmp_path / "train.csv"
    ragged.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(ReferenceError_, match=r"train\.csv:3: expected 3 fields, got 2$"):
        load_reference(ragged, model="m")
    bad_utf8 = tmp_path / "bad.jsonl"
    bad_utf8.write_bytes(b'{"x": 1}\n{"x": "\xff"}\n')
    with pytest.raises(ReferenceError_, match=r"bad\.jsonl:2: not valid UTF-8"):
        load_reference(bad_utf8, model="m")


def test_a_huge_category_value_costs_its_own_size_not_the_columns() -> None:
    """One 200,000-character value among 20,000 rows (a reference learned from the wire):
    counting it as a fixed-width string array would cost 16 GB; counted as Python strings it
    costs its own size, and the codes keep their order (most frequent first, ties by name)."""
    import tracemalloc

    from monitor.reference import profile_categorical

    huge = "x" * 200_000
    values = ["b", "a", "c", "a", "b", "\x00z"] * 3333 + [huge, "a"]
    tracemalloc.start()
    try:
        prof = profile_categorical("country", values, n_rows=len(values), max_categories=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000
    assert prof.categories == ["a", "b", "\x00z", "c", huge]
    assert prof.counts.tolist() == [6667, 6666, 3333, 3333, 1]


def test_a_csv_with_pandas_index_column_profiles_no_unnamed_feature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``DataFrame.to_csv()`` writes its index as a first column without a name. It became a
    numeric feature named ``""`` (the row number): no event carries it, so ``monitor validate``
    and every window of the service found it 100% missing (a ``missing`` breach, paging), and
    the multivariate detector fitted on it. A feature's name has 1 to 200 characters, as the
    config requires of a declared one; the report says why the column was left out."""
    from monitor.cli import main

    rng = np.random.default_rng(5)
    train = tmp_path / "train.csv"
    lines = [f"{i},{x:.5f},{'ab'[i % 2]}" for i, x in enumerate(rng.normal(size=2000))]
    train.write_text(",income,region\n" + "\n".join(lines) + "\n")
    profile = load_reference(train, model="m")
    assert sorted(profile.features) == ["income", "region"]
    current = tmp_path / "today.jsonl"
    current.write_text(
        "".join(
            json.dumps({"income": float(x), "region": "ab"[i % 2]}) + "\n"
            for i, x in enumerate(rng.normal(size=1000))
        )
    )
    config = tmp_path / "monitor.yaml"
    config.write_text(json.dumps({"models": [{"name": "m", "reference": {"path": str(train)}}]}))
    capsys.readouterr()
    assert main(["validate", "--config", str(config), "--model", "m", str(current)]) == 0
    assert "0 breached" in capsys.readouterr().out
    out = tmp_path / "ref.json"
    assert (
        main(["reference", "build", "--model", "m", "--input", str(train), "--output", str(out)])
        == 0
    )
    assert "  (no name): left out (a column without a name, as pandas writes its index: " in (
        capsys.readouterr().out
    )
    # The same rule for names the events bring to a reference learned from them.
    rows = [({"": float(i), "x": float(i % 7)}, 0.5) for i in range(100)]
    assert sorted(build_profile("m", rows).features) == [PREDICTION, "x"]


def test_a_column_name_written_twice_is_refused_naming_both(tmp_path: Path) -> None:
    """Each row becomes one dict, so the second ``amount`` of a CSV (a join's leftover)
    silently stood for both columns, in the reference and in ``monitor report``'s current
    file alike (Parquet's reader refuses such a file itself). Unnamed columns (pandas' index)
    are left out anyway, so two of them pass."""
    dup = tmp_path / "train.csv"
    dup.write_text(",,amount,region,amount\n0,0,1.5,a,9\n1,1,2.5,b,8\n")
    with pytest.raises(
        ReferenceError_,
        match=r"train\.csv:1: column 'amount' appears twice \(columns 3 and 5\); rename one$",
    ):
        load_reference(dup, model="m")
    fine = tmp_path / "fine.csv"
    fine.write_text(",,amount\n0,0,1.5\n1,1,2.5\n")
    assert sorted(load_reference(fine, model="m").features) == ["amount"]


def test_csv_codes_in_a_categorical_column_keep_their_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV cell has no type: ``1`` and ``02134`` were read as numbers, and a categorical
    column (codes beside ``gold``, or zip codes declared categorical) held the categories
    ``1.0`` and ``2134.0``, which no event spells so. Every event's value was then a category
    the reference never saw: ``monitor validate`` (and the service's first window) found an
    ``unseen`` breach, ``monitor report`` a drift."""
    from monitor.cli import main

    rng = np.random.default_rng(8)
    codes, zips = ["1", "2", "3", "gold"], ["02134", "10001", "94105"]
    train = tmp_path / "train.csv"
    train.write_text(
        "plan,zip,income\n"
        + "".join(
            f"{rng.choice(codes)},{rng.choice(zips)},{x:.4f}\n" for x in rng.normal(size=3000)
        )
    )
    profile = load_reference(
        train, model="m", schema={"plan": "categorical", "zip": "categorical", "income": "numeric"}
    )
    assert sorted(profile.features["plan"].categories) == ["1", "2", "3", "gold"]
    assert sorted(profile.features["zip"].categories) == zips
    assert profile.features["income"].kind == "numeric"
    assert sorted(load_reference(train, model="m").features["plan"].categories) == sorted(codes)
    today = tmp_path / "today.jsonl"
    today.write_text(
        "".join(
            json.dumps({"plan": str(rng.choice(codes)), "zip": str(rng.choice(zips)), "income": x})
            + "\n"
            for x in rng.normal(size=1000).tolist()
        )
    )
    config = tmp_path / "monitor.yaml"
    features = {"plan": "categorical", "zip": "categorical", "income": "numeric"}
    config.write_text(
        json.dumps(
            {"models": [{"name": "m", "features": features, "reference": {"path": str(train)}}]}
        )
    )
    capsys.readouterr()
    assert main(["validate", "--config", str(config), "--model", "m", str(today)]) == 0
    assert "0 breached" in capsys.readouterr().out
    args = ["report", "--reference", str(train), "--current", str(today), "--json", "-"]
    assert main([*args, "--fail-on", "warning"]) == 0
