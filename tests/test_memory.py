"""Memory per (model, feature): what a model's state holds, held more compactly with the
same results (issue 19; the figures are in BENCHMARKS.md, "Memory per (model, feature)")."""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.config import parse_config
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.multivariate import MULTIVARIATE
from monitor.reference import ReferenceProfile, build_profile
from monitor.reference_state import pack_profile, unpack_profile
from monitor.state_format import decode, encode


def _rows(seed: int, n: int) -> list[tuple[dict[str, Any], Any]]:
    """Rounded normals (as the benchmark's), integers, a constant, NaN, inf and -0.0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, n))
    out = []
    for i in range(n):
        feats: dict[str, Any] = {
            "a": round(float(x[0, i] * 10 + 50), 4),
            "b": float(x[1, i] * 3 - 0.6 * x[0, i]),
            "n": int(x[2, i] * 5),
            "k": 1.5,
            "c": "u" if x[3, i] > 0 else "v",
        }
        if i % 97 == 0:
            feats["a"] = float("nan")
        if i % 211 == 0:
            feats["b"] = float("inf") if i % 2 else float("-inf")
        if i % 53 == 0:
            feats["n"] = -0.0  # the sample may hold it as 0.0: that column stays float64
        out.append((feats, float(x[0, i] > 0)))
    return out


def _plain(profile: ReferenceProfile) -> ReferenceProfile:
    """The same profile holding its joint rows as float64, as before they were coded."""
    plain = unpack_profile(pack_profile(profile))
    plain.joint = plain.joint  # an assignment keeps what it is given
    assert isinstance(plain.__dict__["_joint_store"], np.ndarray)
    return plain


def _array_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the numpy arrays that own their memory, reachable from ``obj``."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | type(None)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None else 0
    if isinstance(obj, dict):
        return sum(_array_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_array_bytes(v, seen) for v in obj)
    parts = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    parts += [getattr(obj, n) for n in getattr(type(obj), "__slots__", ()) if hasattr(obj, n)]
    return sum(_array_bytes(v, seen) for v in parts)


def test_joint_rows_are_held_in_a_quarter_of_their_float64_bytes() -> None:
    rows = _rows(1, 3000)
    profile = build_profile("m", rows, max_sample=10_000)
    joint = profile.joint
    assert joint is not None and joint.dtype == np.float64
    samples = sum(f.sample.nbytes for f in profile.features.values() if f.sample is not None)
    # Every column but "n" (its -0.0) codes in 2 bytes a value; "n" stays 8.
    n_rows, n_cols = joint.shape
    assert _array_bytes(profile) <= samples + n_rows * (2 * (n_cols - 1) + 8) + 4096


def test_coded_joint_rows_read_back_bit_for_bit() -> None:
    from monitor.reference import JointCodes

    rows = _rows(2, 3000)
    profile = build_profile("m", rows, max_sample=10_000)
    coded = profile.__dict__["_joint_store"]
    assert isinstance(coded, JointCodes)
    assert [s is None for _, s in coded.columns] == [False, False, True, False]  # a, b, n, k
    take = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), 5000)).astype(int))
    expected = np.array(
        [[rows[i][0][c] for c in profile.joint_columns] for i in take], dtype=np.float64
    )
    assert profile.joint.tobytes() == expected.tobytes()  # type: ignore[union-attr]
    # A sample that does not hold every value (max_sample below the rows): "a" (4 decimals)
    # is held as int32 decimals, "b" (full precision) and "n" (-0.0) as float64, the
    # constant "k" still by its sample index.
    small = build_profile("m", rows, max_sample=100)
    assert small.joint.tobytes() == expected.tobytes()  # type: ignore[union-attr]
    held = small.__dict__["_joint_store"].columns
    assert [(codes.dtype.name, key if isinstance(key, float) else None) for codes, key in held][
        :3
    ] == [("int32", 1e4), ("float64", None), ("float64", None)]
    assert held[3][0].dtype == np.uint16


def test_coded_joint_rows_change_neither_the_checkpoint_nor_the_file() -> None:
    from monitor.reference import JointCodes

    profile = build_profile("m", _rows(3, 3000), max_sample=10_000)
    plain = _plain(profile)
    assert encode(pack_profile_state(profile)) == encode(pack_profile_state(plain))
    assert profile.to_json() == plain.to_json()
    back = unpack_profile(decode(encode(pack_profile_state(profile))).learned)  # type: ignore[arg-type]
    assert isinstance(back.__dict__["_joint_store"], JointCodes)
    assert back.joint.tobytes() == plain.joint.tobytes()  # type: ignore[union-attr]
    again = ReferenceProfile.from_json(profile.to_json())
    assert again.joint.tobytes() == plain.joint.tobytes()  # type: ignore[union-attr]


def pack_profile_state(profile: ReferenceProfile) -> Any:
    """A checkpoint holding ``profile`` as a learned reference (tests/checkpoint.py's way)."""
    from tests.checkpoint import through_format

    return through_format(learned=pack_profile(profile))


def _events(rows: list[tuple[dict[str, Any], Any]], start: int) -> ModelEvents:
    out = ModelEvents("m")
    for i, (feats, pred) in enumerate(rows):
        out.event_ids.append(f"e{start + i}")
        out.timestamps.append(float(start + i))
        out.versions.append(None)
        out.features.append(feats)
        out.predictions.append(pred)
    return out


def test_a_model_on_coded_joint_rows_evaluates_as_on_float64_rows() -> None:
    profile = build_profile("m", _rows(4, 3000), max_sample=10_000)
    cfg = parse_config({"models": [{"name": "m", "window": {"size": 1000, "step": 250}}]})
    settings = cfg.model("m")
    assert settings is not None
    stream = _rows(5, 2000)
    # The second half drifts in "b" given "a" (the correlation flips): PCA's to see.
    for feats, _ in stream[1000:]:
        if isinstance(feats["b"], float) and np.isfinite(feats["b"]):
            feats["b"] = -feats["b"]
    runs = []
    for p in (profile, _plain(profile)):
        mm = ModelMonitor(settings, cfg.limits, p)
        evs = mm.ingest(_events(stream, 0))
        runs.append(
            [
                (
                    {k: [(r.statistic, r.p_value) for r in v] for k, v in e.results.items()},
                    [(s.kind, s.subject, s.severity) for s in e.signals],
                )
                for e in evs
            ]
        )
    assert len(runs[0]) == 5 and any(MULTIVARIATE in r for r, _ in runs[0])
    assert runs[0] == runs[1]


def test_any_joint_column_reads_back_bit_for_bit() -> None:
    """Columns of every kind the coding must tell apart: decimals, integers, huge and tiny
    values, values next to the int32 limit, specials, -0.0; coded or not, the same bytes."""
    from monitor.reference import FeatureProfile, JointCodes

    rng = np.random.default_rng(7)
    n = 2000
    kinds = [
        np.round(rng.normal(50, 10, n), 4),
        np.round(rng.normal(0, 1, n), 7),  # more decimals than the coding takes
        rng.integers(-1000, 1000, n).astype(np.float64),
        rng.normal(0, 1e300, n),
        rng.normal(0, 1e-300, n),
        np.round(rng.uniform(-214748.3647, 214748.3647, n), 4),  # |k| next to 2**31
        np.where(rng.random(n) < 0.1, -0.0, np.round(rng.normal(size=n), 2)),
        np.where(rng.random(n) < 0.2, np.nan, np.round(rng.normal(size=n), 3)),
        rng.choice([np.inf, -np.inf, 1.25, 2.5], n),
    ]
    names = [f"x{i}" for i in range(len(kinds))]
    joint = np.column_stack(kinds)
    for max_sample in (n, 100):
        features = {}
        for name, col in zip(names, kinds, strict=True):
            finite = np.sort(col[np.isfinite(col)])
            take = np.linspace(0, len(finite) - 1, min(len(finite), max_sample)).astype(int)
            features[name] = FeatureProfile(name, "numeric", n, 0.0, sample=finite[take])
        coded = JointCodes.of(joint, names, features)
        assert coded is not None
        assert coded.decode().tobytes() == joint.tobytes()
        assert coded.nbytes < joint.nbytes
