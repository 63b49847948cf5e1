"""The evaluation's verdict layer against frozen copies of what it replaced (issue 19).

The drift tracker (correction, persistence, headline), the drift signals, the
validation's signals, ADWIN's results and the multivariate signal were made cheaper
(slot constructors, a headline found once, the last evaluation's validation signals
handed again, fewer copies); every object they give must be what the frozen copies
give, field by field and float by float (bits, NaN included), over sequences of
evaluations with drifting and quiet columns, p-values at 0, 1, NaN and tied,
every correction, explained columns, missing values and repeated windows.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import ValidationConfig
from monitor.detectors.base import DetectorResult, grade_p_value
from monitor.detectors.config import DriftConfig
from monitor.detectors.streaming import ADWINDetector, StreamDetector
from monitor.drift import (
    P_VALUE_FAMILY,
    DriftTracker,
    FeatureVerdict,
    benjamini_hochberg,
    bonferroni,
    headline,
    signals,
)
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.signals import MULTIVARIATE, SEVERITY_RANK, Signal, slot_constructor
from monitor.validation import Validator, signal_of

# ----------------------------------------------------------------------------- comparing


def same(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` alike: same types, fields, dict orders, and floats bit for bit."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), (where, a, b)
    elif is_dataclass(a):
        for f in fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


# ------------------------------------------------------------------ frozen copies (drift)


def frozen_strength(result: DetectorResult) -> float:
    if result.p_value is not None:
        return float("inf") if result.p_value <= 0 else result.threshold / result.p_value
    return result.statistic / result.threshold if result.threshold > 0 else result.statistic


def frozen_headline(results: Sequence[DetectorResult]) -> DetectorResult | None:
    best: DetectorResult | None = None
    best_key: tuple[int, bool, float] | None = None
    for r in results:
        key = (SEVERITY_RANK[r.severity], r.drifted, frozen_strength(r))
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


@dataclass
class _State:
    drifting: bool = False
    drifted_run: int = 0
    clean_run: int = 0


class FrozenTracker:
    """DriftTracker.correct and observe as they were (frozen copies)."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self._states: dict[str, _State] = {}

    def correct(
        self, results: Mapping[str, Sequence[DetectorResult]]
    ) -> dict[str, tuple[DetectorResult, ...]]:
        out = {feature: tuple(rs) for feature, rs in results.items()}
        if self.config.correction == "none":
            return out
        adjust = bonferroni if self.config.correction == "bonferroni" else benjamini_hochberg
        families: dict[str, list[tuple[str, int]]] = {}
        for feature, rs in out.items():
            for i, r in enumerate(rs):
                if r.p_value is not None:
                    family = P_VALUE_FAMILY.get(r.detector, r.detector)
                    families.setdefault(family, []).append((feature, i))
        corrected = {feature: list(rs) for feature, rs in out.items()}
        for members in families.values():
            raw = np.array([out[f][i].p_value for f, i in members], dtype=np.float64)
            for (feature, i), p_adj in zip(members, adjust(raw).tolist(), strict=True):
                r = out[feature][i]
                severity = grade_p_value(p_adj, r.threshold)
                details = {**r.details, "raw_p_value": float(r.p_value or 0.0)}
                corrected[feature][i] = DetectorResult(
                    r.detector, r.statistic, p_adj, r.threshold, severity != "ok", severity, details
                )
        return {feature: tuple(rs) for feature, rs in corrected.items()}

    def observe(
        self,
        results: Mapping[str, Sequence[DetectorResult]],
        explained: Mapping[str, str] | None = None,
    ) -> dict[str, FeatureVerdict]:
        explained = explained or {}
        verdicts: dict[str, FeatureVerdict] = {}
        for feature, rs in self.correct(results).items():
            state = self._states.setdefault(feature, _State())
            cause = explained.get(feature)
            raw = cause is None and any(r.drifted for r in rs)
            if raw:
                state.drifted_run += 1
                state.clean_run = 0
                if state.drifted_run >= self.config.persistence:
                    state.drifting = True
            else:
                state.clean_run += 1
                state.drifted_run = 0
                if state.clean_run >= self.config.clear_after:
                    state.drifting = False
            severity = "ok"
            if state.drifting:
                worst = max((SEVERITY_RANK[r.severity] for r in rs), default=0)
                severity = "critical" if worst >= SEVERITY_RANK["critical"] else "warning"
            top = frozen_headline(rs)
            verdicts[feature] = FeatureVerdict(
                feature,
                state.drifting,
                severity,  # type: ignore[arg-type]
                raw,
                state.drifted_run if raw else state.clean_run,
                rs,
                top.detector if top else None,
                top.statistic if top else None,
                top.threshold if top else None,
                cause,
            )
        return verdicts


def frozen_drift_signals(model: str, verdicts: Mapping[str, FeatureVerdict]) -> list[Signal]:
    """The drift part of :func:`monitor.drift.signals` as it was (no quality bounds)."""
    out: list[Signal] = []
    for name, v in verdicts.items():
        head = frozen_headline(v.results)
        details: dict[str, float | str | None] = {r.detector: r.statistic for r in v.results}
        if head is not None and head.p_value is not None:
            details["p_value"] = head.p_value
        if v.explained_by is not None:
            details["explained_by"] = v.explained_by
        out.append(
            Signal(
                model,
                "drift",
                name,
                v.severity if v.drifting else "ok",
                head.statistic if head else math.nan,
                head.threshold if head else math.nan,
                head.detector if head else None,
                details,
            )
        )
    return out


# ---------------------------------------------------------------------- generated results

P_VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, 1e-7, 1e-6, 5e-6, 1e-5, 0.5, math.nan]),
    st.floats(0, 1),
)
STATISTICS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.25, math.nan, math.inf, -0.5]), st.floats(-1, 3)
)


@st.composite
def result(draw: st.DrawFn) -> DetectorResult:
    detector = draw(st.sampled_from(["ks", "chi_square", "pca", "psi", "adwin", "wasserstein"]))
    details = draw(st.dictionaries(st.sampled_from(["a", "raw_p_value", "z"]), STATISTICS))
    if detector in ("ks", "chi_square", "pca"):
        p = draw(P_VALUES)
        alpha = draw(st.sampled_from([1e-5, 0.05]))
        sev = grade_p_value(p, alpha)
        return DetectorResult(detector, draw(STATISTICS), p, alpha, sev != "ok", sev, details)
    stat = draw(STATISTICS)
    threshold = draw(st.sampled_from([0.1, 1.0, 0.0, -1.0]))
    sev = draw(st.sampled_from(["ok", "warning", "critical"]))
    drifted = draw(st.one_of(st.just(sev != "ok"), st.booleans()))  # restored oddities too
    return DetectorResult(detector, stat, None, threshold, drifted, sev, details)


FEATURES = ["a", "b", "c", "__prediction__", MULTIVARIATE]


@st.composite
def evaluation(draw: st.DrawFn) -> dict[str, list[DetectorResult]]:
    names = draw(st.lists(st.sampled_from(FEATURES), unique=True, max_size=5))
    out = {n: draw(st.lists(result(), max_size=4)) for n in names}
    if draw(st.booleans()) and out:  # tied p-values across the family
        p = draw(P_VALUES)
        for rs in out.values():
            for i, r in enumerate(rs):
                if r.p_value is not None:
                    rs[i] = replace(r, p_value=p)
    return out


# -------------------------------------------------------------------------------- tests


@settings(max_examples=300, deadline=None)
@given(st.lists(result(), max_size=6))
def test_headline_matches_the_frozen_copy(results: list[DetectorResult]) -> None:
    got, want = headline(results), frozen_headline(results)
    assert got is want


@settings(max_examples=150, deadline=None)
@given(
    correction=st.sampled_from(["none", "bonferroni", "bh"]),
    persistence=st.integers(1, 3),
    clear_after=st.integers(1, 3),
    steps=st.lists(
        st.tuples(evaluation(), st.dictionaries(st.sampled_from(FEATURES), st.just("missing"))),
        min_size=1,
        max_size=6,
    ),
)
def test_tracker_and_signals_match_the_frozen_copies(
    correction: str,
    persistence: int,
    clear_after: int,
    steps: list[tuple[dict[str, list[DetectorResult]], dict[str, str]]],
) -> None:
    config = DriftConfig(correction=correction, persistence=persistence, clear_after=clear_after)
    new, old = DriftTracker(config), FrozenTracker(config)
    for results, explained in steps:
        same(new.correct(results), old.correct(results))
        got = new.observe(results, explained or None)
        want = old.observe(results, explained or None)
        same(got, want)
        assert {f: (s.drifting, s.drifted_run, s.clean_run) for f, s in new._states.items()} == {
            f: (s.drifting, s.drifted_run, s.clean_run) for f, s in old._states.items()
        }
        quality = SimpleNamespace(max_missing_rate=None, max_unseen_category_rate=None)
        want_signals = frozen_drift_signals("m", want)
        same(signals("m", got, {}, {}, quality, new.heads), want_signals)
        same(signals("m", got, {}, {}, quality), want_signals)
        # Heads of other results (a restored or rebuilt verdict): found again, not reused.
        rebuilt = {f: replace(v, results=tuple(v.results)[::-1]) for f, v in got.items()}
        same(signals("m", rebuilt, {}, {}, quality, new.heads), frozen_drift_signals("m", rebuilt))


def test_a_planted_difference_is_caught() -> None:
    """The comparison can fail: a headline that breaks ties the other way (last of the
    largest keys) differs on tied results, and a p-value one ulp off differs in its bits."""
    a = DetectorResult("psi", 0.3, None, 0.1, True, "critical")
    b = DetectorResult("wasserstein", 0.3, None, 0.1, True, "critical")

    def last_of_largest(results: list[DetectorResult]) -> DetectorResult | None:
        return max(reversed(results), key=lambda r: (SEVERITY_RANK[r.severity], r.drifted))

    assert last_of_largest([a, b]) is not frozen_headline([a, b])
    with pytest.raises(AssertionError):
        same(last_of_largest([a, b]), frozen_headline([a, b]))
    c = DetectorResult("ks", 0.1, 0.01, 0.05, True, "warning")
    with pytest.raises(AssertionError):
        same(c, replace(c, p_value=math.nextafter(0.01, 1.0)))


def test_slot_constructor_builds_what_the_init_builds() -> None:
    for cls, args in (
        (DetectorResult, ("ks", 0.1, 0.2, 0.05, False, "ok", {"x": 1.0})),
        (Signal, ("m", "drift", "f", "ok", 0.1, 0.2, "ks", {"p": 0.3}, None)),
        (FeatureVerdict, ("f", True, "warning", True, 2, (), "ks", 0.1, 0.05, None)),
    ):
        built = slot_constructor(cls)(*args)
        same(built, cls(*args))
        with pytest.raises(TypeError):
            slot_constructor(cls)(*args[:-1])  # every field, no defaults

    @dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            raise ValueError

    @dataclass(frozen=True)
    class NoSlots:
        x: int

    for cls in (Checked, NoSlots):
        with pytest.raises(TypeError):
            slot_constructor(cls)


def test_the_multivariate_signal_is_the_one_replace_built() -> None:
    tracker = DriftTracker(DriftConfig())
    res = DetectorResult("pca", 0.3, 1e-9, 1e-5, True, "critical", {"residual:1": 0.5})
    verdicts = tracker.observe({MULTIVARIATE: [res]})
    quality = SimpleNamespace(max_missing_rate=None, max_unseen_category_rate=None)
    (sig,) = signals("m", verdicts, {}, {}, quality, tracker.heads)
    seen: list[DetectorResult] = []

    def top_features(head: DetectorResult) -> str:
        seen.append(head)
        return "x (+0.5)"

    fake = SimpleNamespace(tracker=tracker, multivariate=SimpleNamespace(top_features=top_features))
    got = ModelMonitor._multivariate_signal(fake, sig, verdicts[MULTIVARIATE])  # type: ignore[arg-type]
    want = replace(sig, kind="multivariate", details={**sig.details, "features": "x (+0.5)"})
    same(got, want)
    # With other results than the tracker's (a rebuilt verdict), the headline is found again.
    other = replace(verdicts[MULTIVARIATE], results=(replace(res, p_value=0.5),))
    ModelMonitor._multivariate_signal(fake, sig, other)  # type: ignore[arg-type]
    assert seen[0] is tracker.heads[MULTIVARIATE][1] and seen[1] is other.results[0]


# ---------------------------------------------------------------------- validation


class FrozenValidator(Validator):
    """Validator.evaluate as it was (frozen copy)."""

    def evaluate(  # type: ignore[override]
        self, model: str, num: np.ndarray, cat: np.ndarray, summaries: Any = None
    ) -> list[Signal]:
        if not self.rules:
            return []
        violations, values = self._tallies(num, cat, summaries)
        quiet = self._quiet
        out: list[Signal] = []
        for key, rule, k, n in zip(
            self.rules, self.rules.values(), violations, values, strict=True
        ):
            seen = quiet.get(key)
            if seen is not None and seen[1] == k and seen[2] == n and seen[0] == model:
                out.append(seen[3])
                continue
            b = self._breach(rule, k, n, num, cat, False)
            sig = signal_of(model, b)
            if b.breached:
                quiet.pop(key, None)
            else:
                quiet[key] = (model, k, n, sig)
            out.append(sig)
        return out


def _validators() -> tuple[Validator, Validator]:
    rows = [
        ({"x": float(i % 50), "n": float(i % 7), "c": "abc"[i % 3]}, float(i % 2))
        for i in range(600)
    ]
    ref = build_profile("m", rows)
    cfg = ValidationConfig(constraints={"x": {"min": 0, "max": 60}})
    cols = (["x", "n", "__prediction__"], ["c"], {"c": ["a", "b", "c", "d"]})
    return Validator(cfg, ref, *cols), FrozenValidator(cfg, ref, *cols)  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 1000),
    steps=st.lists(
        st.tuples(
            st.integers(0, 4),  # which window of a small pool (repeats: the same tallies)
            st.sampled_from(["m", "other"]),  # the model name
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_validation_matches_the_frozen_copy(seed: int, steps: list[tuple[int, str]]) -> None:
    rng = np.random.default_rng(seed)
    pool = []
    for kind in range(5):
        num = np.column_stack(
            [rng.integers(0, 50, 300).astype(float), rng.integers(0, 7, 300), rng.random(300)]
        )
        cat = rng.integers(0, 3, (300, 1)).astype(np.int32)
        if kind in (1, 4):  # breaches: out of range, not whole, unseen, missing
            # (4: the tallies of 1, other offending values: its breaches read differently)
            num[:40, 0] = -5.0 if kind == 1 else -6.0
            num[:60, 1] = 2.5
            cat[:50, 0] = 3
            num[100:200, 2] = np.nan
        elif kind == 2:  # a few missing values and one out of range: tallies move
            num[rng.integers(0, 300, 3), 0] = np.nan
            num[5, 0] = 70.0
        elif kind == 3:
            num[:, 1] = 4.0  # constant
        pool.append((num, cat))
    new, old = _validators()
    for which, model in steps:
        num, cat = pool[which]
        got, want = new.evaluate(model, num, cat), old.evaluate(model, num, cat)
        same(got, want)
        assert new._quiet.keys() == old._quiet.keys()
        for key in new._quiet:
            same(new._quiet[key][:3], old._quiet[key][:3])
            same(new._quiet[key][3], old._quiet[key][3])
    # A repeated window hands its unbreached signals again, as the per-rule cache did.
    num, cat = pool[1]
    first, second = new.evaluate("m", num, cat), new.evaluate("m", num, cat)
    for a, b in zip(first, second, strict=True):
        assert (a is b) == (a.severity == "ok")


# ---------------------------------------------------------------------------- ADWIN


class FrozenADWIN(ADWINDetector):
    """ADWINDetector.evaluate and _details as they were (frozen copies)."""

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        assert self._river is not None
        changes = self._changes
        verdict, z = self.direction() if changes else ("none", math.nan)
        counted = changes if verdict in ("away", "unchecked") else 0
        severity = "critical" if counted >= 2 else "warning" if counted == 1 else "ok"
        details = self._details()
        if verdict in ("returned", "pending"):
            details[f"{verdict}_changes"] = float(changes)
            details["post_change_z"] = z
        result = DetectorResult(
            self.name,
            float(counted),
            None,
            1.0,
            counted > 0,
            severity,  # type: ignore[arg-type]
            details,
        )
        if verdict != "pending":
            self._changes, self._last_change, self._shift = 0, -1, 0.0
            self._post_sum, self._post_n = 0.0, 0
        return result

    def _details(self) -> dict[str, float]:
        details = StreamDetector._details(self)
        details["estimation"] = self._estimation()
        if self.block == 1:
            details["shift"] = self._shift
        return details


@settings(max_examples=40, deadline=None)
@given(
    block=st.sampled_from([1, 4, 64]),
    away_only=st.booleans(),
    seed=st.integers(0, 1000),
    steps=st.lists(st.tuples(st.integers(0, 400), st.floats(-3, 3)), min_size=1, max_size=6),
)
def test_adwin_results_match_the_frozen_copy(
    block: int, away_only: bool, seed: int, steps: list[tuple[int, float]]
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=500)
    new = ADWINDetector(delta=0.002, block=block, away_only=away_only, min_window_length=1)
    old = FrozenADWIN(delta=0.002, block=block, away_only=away_only, min_window_length=1)
    new.fit(ref)
    old.fit(ref)
    for n, shift in steps:
        values = rng.normal(size=n) + shift
        new.update(values)
        old.update(values)
        same(new.evaluate(values), old.evaluate(values))
