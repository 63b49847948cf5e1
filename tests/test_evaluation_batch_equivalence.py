"""The evaluation's batched and vectorised forms give, bit for bit, what the per-column
forms gave (issue 19).

Each test runs the current code and a frozen copy of the code it replaced (kept here, as it
stood on ``main`` before) on random windows (ties, constant columns, tiny windows, NaN and
missing values where the input may have them) and asserts equal results: floats compared
by their bits (``struct.pack``), not to a tolerance.
"""

from __future__ import annotations

import math
import struct
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerting.config import AlertRule
from monitor.alerting.policy import ModelAlertState, Pacing, _decide_groups, decide
from monitor.config import ValidationConfig
from monitor.detectors.base import DetectorResult
from monitor.drift import _strength, headline
from monitor.reference import build_profile
from monitor.signals import SEVERITY_RANK, EvaluationContext, Signal
from monitor.summary import (
    QUANTILES,
    CategoricalSummary,
    NumericSummary,
    summarize_categorical,
    summarize_numeric,
)
from monitor.validation import Validator


def _bits(x: Any) -> Any:
    """``x`` with every float replaced by its 8 bytes, so that == compares bits (and NaN
    equals NaN, and 0.0 differs from -0.0)."""
    if isinstance(x, float):
        return struct.pack("<d", x)
    if isinstance(x, dict):
        return {k: _bits(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_bits(v) for v in x)
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, {f: _bits(getattr(x, f)) for f in x.__dataclass_fields__})
    return x


# ----------------------------------------------------------------------------- summaries


def _old_summarize_full(ordered: np.ndarray) -> list[NumericSummary]:
    """``summary._summarize_full`` as it was on main (mean summed twice)."""
    n, n_cols = ordered.shape
    means = ordered.mean(axis=0).tolist()
    stds = ordered.std(axis=0).tolist()
    qvals = []
    for q in QUANTILES:
        pos = q * (n - 1)
        lo = int(np.floor(pos))
        hi, frac = min(lo + 1, n - 1), pos - lo
        qvals.append((ordered[lo] + (ordered[hi] - ordered[lo]) * frac).tolist())
    return [
        NumericSummary(
            n,
            0.0,
            means[j],
            stds[j],
            float(ordered[0, j]),
            float(ordered[-1, j]),
            {q: qv[j] for q, qv in zip(QUANTILES, qvals, strict=True)},
        )
        for j in range(n_cols)
    ]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 400),
    cols=st.integers(1, 8),
    kind=st.sampled_from(["normal", "ties", "constant", "huge", "nan", "one_missing", "huge_nan"]),
)
def test_numeric_summaries_are_bit_identical_to_main(
    seed: int, rows: int, cols: int, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    data = {
        "normal": rng.normal(size=(rows, cols)),
        "ties": rng.integers(0, 3, size=(rows, cols)).astype(float),
        "constant": np.full((rows, cols), 0.1),
        "huge": rng.lognormal(20, 5, size=(rows, cols)),
        "nan": np.where(rng.random((rows, cols)) < 0.2, np.nan, rng.normal(size=(rows, cols))),
        "one_missing": rng.normal(3, 2, size=(rows, cols)),
        "huge_nan": np.where(
            rng.random((rows, cols)) < 0.5, np.nan, rng.lognormal(20, 5, size=(rows, cols))
        ),
    }[kind]
    if kind == "one_missing":  # the per-column path for every column, one value missing
        data[rng.integers(rows), rng.integers(cols)] = np.nan
    # As the window hands it out: column-major storage, (rows, columns) view.
    window = np.ascontiguousarray(data.T).T
    got, columns = summarize_numeric(window)
    ordered = np.sort(window, axis=0)
    if not np.isnan(ordered).any():
        assert _bits(got) == _bits(_old_summarize_full(ordered))
    for j, col in enumerate(columns):
        present = ordered[:, j][~np.isnan(ordered[:, j])]
        assert _bits(col) == _bits(present)
        if present.size:
            assert _bits((got[j].mean, got[j].std)) == _bits(
                (float(present.mean()), float(present.std()))
            )


# ----------------------------------------------------------------------------- headline


def _old_headline(results: list[DetectorResult]) -> DetectorResult | None:
    """``drift.headline`` as it was on main."""
    if not results:
        return None
    return max(results, key=lambda r: (SEVERITY_RANK[r.severity], r.drifted, _strength(r)))


_stat = st.one_of(
    st.sampled_from([0.0, 0.1, 0.25, math.nan, math.inf]), st.floats(0, 2, allow_nan=False)
)
_result = st.builds(
    DetectorResult,
    detector=st.sampled_from(["ks", "psi", "adwin", "chi_square"]),
    statistic=_stat,
    p_value=st.one_of(st.none(), st.sampled_from([0.0, 0.01, 0.05, math.nan]), _stat),
    threshold=st.sampled_from([0.0, 0.05, 0.1, 0.25]),
    drifted=st.booleans(),
    severity=st.sampled_from(["ok", "warning", "critical"]),
)


@settings(max_examples=300, deadline=None)
@given(results=st.lists(_result, max_size=5))
def test_headline_picks_the_same_result_as_main(results: list[DetectorResult]) -> None:
    """The same object (``is``): ties and NaN strengths keep the first, as max did."""
    assert headline(results) is _old_headline(results)


# ----------------------------------------------------------------------------- validation


def _old_counts(v: Validator, num: np.ndarray, cat: np.ndarray) -> dict[tuple[str, str], int]:
    """``Validator._counts`` as it was on main: every column compared and counted."""
    out: dict[tuple[str, str], int] = {}
    if num.shape[1]:
        with np.errstate(invalid="ignore"):
            below = (num < v._lo).sum(axis=0)
            above = (num > v._hi).sum(axis=0)
        missing = np.isnan(num).sum(axis=0)
        if v._integer.any():
            sub = num[:, v._integer]
            frac = (sub != np.round(sub)) & ~np.isnan(sub)
            for j, n in zip(np.nonzero(v._integer)[0], frac.sum(axis=0), strict=True):
                if n:
                    out[(v.numeric_columns[j], "not_integer")] = int(n)
        for rule, counts in (("below_min", below), ("above_max", above), ("missing", missing)):
            for j in np.nonzero(counts)[0]:
                key = (v.numeric_columns[j], rule)
                if key in v.rules:
                    out[key] = int(counts[j])
    if cat.shape[1]:
        missing = (cat < 0).sum(axis=0)
        for j in np.nonzero(missing)[0]:
            key = (v.categorical_columns[j], "missing")
            if key in v.rules:
                out[key] = int(missing[j])
        for j in v._domains:
            codes = cat[:, j]
            allowed = v._allowed_codes(j)
            present = codes >= 0
            n = int(present.sum()) - int(allowed[codes[present]].sum())
            if n:
                out[(v.categorical_columns[j], "unseen")] = n
    return out


@cache
def _validator() -> Validator:
    rng = np.random.default_rng(0)
    rows = [
        (
            {
                "amount": float(rng.lognormal(3, 1)),
                "age": int(rng.integers(18, 91)),
                "score": float(rng.normal()),
                "flat": float(rng.integers(0, 3)),
                "region": ["north", "south", "east", "west"][int(rng.integers(0, 4))],
            },
            float(rng.random()),
        )
        for _ in range(1000)
    ]
    profile = build_profile("m", rows)
    cats = {"region": [*profile.features["region"].categories, "new-4", "new-5"]}
    numeric = ["amount", "age", "score", "flat", "__prediction__"]
    return Validator(ValidationConfig(), profile, numeric, ["region"], cats)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(0, 300),
    missing=st.sampled_from([0.0, 0.01, 0.3, 1.0]),
    odd=st.sampled_from([0.0, 0.02, 0.5]),
    layout=st.sampled_from(["C", "F"]),
)
def test_validation_batch_counts_are_main_s_in_main_s_order(
    seed: int, rows: int, missing: float, odd: float, layout: str
) -> None:
    """The same violations per (feature, rule), in the same order (the order new keys enter
    the checkpointed counters), on batches with NaN, sentinels, +-inf, huge values, new
    categories, empty batches."""
    v = _validator()
    rng = np.random.default_rng(seed)
    num = np.column_stack(
        [
            rng.lognormal(3, 1, rows),
            rng.integers(18, 91, rows).astype(float),
            rng.normal(size=rows),
            rng.integers(0, 3, rows).astype(float),
            rng.random(rows),
        ]
    )
    bad = rng.random(num.shape) < odd
    num[bad] = rng.choice([-1.0, 0.5, 1e308, -1e308, np.inf, -np.inf, 33.3], size=int(bad.sum()))
    num[rng.random(num.shape) < missing] = np.nan
    cat = rng.integers(0, 4, (rows, 1)).astype(np.int32)
    new = rng.random(cat.shape) < odd
    cat[new] = rng.integers(2, 6, int(new.sum()))
    cat[rng.random(cat.shape) < missing] = -1
    num = np.asfortranarray(num) if layout == "F" else np.ascontiguousarray(num)
    assert list(v._counts(num, cat).items()) == list(_old_counts(v, num, cat).items())


# ----------------------------------------------------------------------------- alert policy

_signal = st.builds(
    Signal,
    model=st.sampled_from(["churn", "churn", "churn", "other"]),
    kind=st.sampled_from(["drift", "data_quality", "multivariate"]),
    subject=st.sampled_from(["age", "income", "missing_rate:age", "__multivariate__"]),
    severity=st.sampled_from(["ok", "ok", "ok", "ok", "warning", "critical", "unknown"]),
    value=st.floats(0, 1),
    threshold=st.sampled_from([0.05, 0.2]),
    detector=st.sampled_from([None, "psi", "ks"]),
    segment=st.sampled_from([None, None, "region=north"]),
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.lists(_signal, max_size=8), min_size=1, max_size=6),
    group_by=st.sampled_from([("model",), ("model", "kind")]),
    rule=st.sampled_from(
        [AlertRule(), AlertRule(min_severity="critical"), AlertRule(**{"for": 2})]
    ),
)
def test_alert_decisions_are_main_s_when_nothing_is_open(
    steps: list[list[Signal]], group_by: tuple[str, ...], rule: AlertRule
) -> None:
    """decide (with its quiet fast path) against the full path (main's decide, unchanged)
    over a few evaluations in a row: the same state and actions at every step, and the
    same error for another model's signal."""
    state: ModelAlertState | None = None
    for seq, signals in enumerate(steps, 1):
        context = EvaluationContext("churn", "7", 60.0 * seq, 0.0, 60.0 * seq, 100, 100, seq)
        now = context.evaluated_at
        full_state = state if state is not None else ModelAlertState(model="churn")
        try:
            # wall = now and the default pacing: what decide() uses when not given them.
            want = _decide_groups(
                full_state, signals, context, now, [rule], (), group_by, now, Pacing()
            )
        except ValueError as exc:
            with pytest.raises(ValueError) as raised:
                decide(state, signals, context, now, rules=[rule], group_by=group_by)
            assert str(raised.value) == str(exc)
            return
        got = decide(state, signals, context, now, rules=[rule], group_by=group_by)
        assert got == want
        state = got.state


def _old_summarize_categorical(
    codes: np.ndarray, vocab_sizes: list[int], reference_sizes: list[int]
) -> list[CategoricalSummary]:
    """``summary.summarize_categorical`` as it was on main (present codes filtered first)."""
    n_rows = codes.shape[0]
    out = []
    for j in range(codes.shape[1]):
        col = codes[:, j]
        col = col[col >= 0]
        counts = np.bincount(col, minlength=vocab_sizes[j]).astype(np.int64)
        n = int(col.size)
        unseen = int(counts[reference_sizes[j] :].sum())
        out.append(
            CategoricalSummary(
                count=n,
                missing_rate=(1.0 - n / n_rows) if n_rows else float("nan"),
                counts=counts,
                unseen_rate=(unseen / n) if n else 0.0,
            )
        )
    return out


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(0, 300),
    columns=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1, max_size=4),
    missing=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_categorical_summaries_are_main_s(
    seed: int, rows: int, columns: list[tuple[int, int]], missing: float
) -> None:
    """Counts (dtype, length, values), missing and unseen rates: codes -1, codes the
    reference never saw, a vocabulary longer than the codes used, empty windows."""
    rng = np.random.default_rng(seed)
    vocab = [v for v, _ in columns]
    reference = [min(r, v) for v, r in columns]
    codes = np.column_stack([rng.integers(0, v, rows) for v in vocab]).astype(np.int32)
    codes = codes.reshape(rows, len(columns))
    codes[rng.random(codes.shape) < missing] = -1
    got = summarize_categorical(codes, vocab, reference)
    assert _bits(got) == _bits(_old_summarize_categorical(codes, vocab, reference))
