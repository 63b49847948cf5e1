"""The evaluation path's faster forms give what the straightforward ones gave (issue 19).

Each test runs the current code and a frozen copy of the code it replaced (kept here, as
it stood on ``main`` before) on random windows, NaN and missing values included, and
asserts the same outcome: for validation the same breaches and signals, for PCA the same
statistic, p-value and contributors (to 1e-12).
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.config import MultivariateConfig, ValidationConfig
from monitor.detectors.base import DetectorResult
from monitor.detectors.pca import PCADetector
from monitor.multivariate import MULTIVARIATE, MultivariateMonitor
from monitor.reference import ReferenceProfile, build_profile, shown
from monitor.signals import PREDICTION
from monitor.state_format import unpack_array
from monitor.validation import Breach, Rule, Validator, signal_of
from monitor.window import SlidingWindow, WindowMark

NUMERIC = ["amount", "age", "score", "flat"]
CATEGORICAL = ["region", "channel"]
REGIONS = ["north", "south", "east", "west"]


@cache
def _validator() -> Validator:
    """One validator for all examples (a profile takes a while): its reused quiet signals
    then carry over from example to example, as from evaluation to evaluation."""
    rng = np.random.default_rng(0)
    rows = [
        (
            {
                "amount": float(rng.lognormal(3, 1)),
                "age": int(rng.integers(18, 91)),
                "score": float(rng.normal()),
                "flat": float(rng.integers(0, 3)),
                "region": REGIONS[int(rng.integers(0, 4))],
                "channel": ["web", "app"][int(rng.integers(0, 2))],
            },
            float(rng.random()),
        )
        for _ in range(2000)
    ]
    profile = build_profile("m", rows)
    numeric = [*NUMERIC, "__prediction__"]
    cats = {c: list(profile.features[c].categories) for c in CATEGORICAL}
    for name in CATEGORICAL:  # codes up to 5 name a category: the live vocabulary grew
        cats[name] += [f"new-{i}" for i in range(len(cats[name]), 6)]
    return Validator(ValidationConfig(), profile, numeric, list(CATEGORICAL), cats)


def _old_check(v: Validator, num: np.ndarray, cat: np.ndarray) -> list[Breach]:
    """``Validator.check`` as it was: counts by ``_counts``, one Breach per rule."""
    counts = v._counts(num, cat)
    n_rows = len(num) if num.shape[1] else len(cat)
    num_present = (~np.isnan(num)).sum(axis=0)
    cat_present = (cat >= 0).sum(axis=0)
    num_index = {f: j for j, f in enumerate(v.numeric_columns)}
    cat_index = {f: j for j, f in enumerate(v.categorical_columns)}
    spread = None
    out: list[Breach] = []
    for key, rule in v.rules.items():
        feature, name = key
        if name == "constant":
            if spread is None:
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    spread = np.nanmax(num, axis=0) - np.nanmin(num, axis=0)
            j = num_index[feature]
            out.append(_old_constant(v, rule, j, int(num_present[j]), spread[j], num))
            continue
        if feature in num_index:
            j = num_index[feature]
            col = num[:, j]
            present = int(num_present[j])
        else:
            j = cat_index[feature]
            col = cat[:, j]
            present = int(cat_present[j])
        values = n_rows if name == "missing" else present
        k = counts.get(key, 0)
        rate = k / values if values else 0.0
        threshold = rule.threshold(values, v.config)
        breached = values > 0 and rate > threshold
        top = v._top_values(rule, j, col) if breached else []
        message = v._message(rule, k, values, rate, top) if breached else ""
        out.append(
            Breach(feature, name, k, values, rate, threshold, breached, message, top, rule.inferred)
        )
    return out


def _old_constant(
    v: Validator, rule: Rule, j: int, n: int, spread: float, num: np.ndarray
) -> Breach:
    constant = n >= 20 and bool(spread == 0)
    mode = v._constant_mode.get(j)
    plausible = mode is not None and (mode >= 1.0 or n * math.log(mode) > math.log(v.config.alpha))
    breached = constant and not plausible
    value = ""
    if breached:
        col = num[:, j]
        value = shown(f"{float(col[~np.isnan(col)][0]):.6g}", quote=False)
    msg = f"{shown(rule.feature, 80, quote=False)}: every one of {n} values is {value}"
    return Breach(
        rule.feature, "constant", n if constant else 0, n, 1.0 if constant else 0.0, 0.5,
        breached, msg, [(value, n)] if breached else [], rule.inferred,
    )  # fmt: skip


def _window(rng: np.random.Generator, rows: int, missing: float, odd: float, constant: int):
    """A window of the validator's columns: NaN/-1 at rate ``missing``, values that break
    a rule (sentinels, fractions, huge values, new categories) at rate ``odd``, and column
    ``constant`` (if in range) a single repeated value."""
    num = np.column_stack(
        [
            rng.lognormal(3, 1, rows),
            rng.integers(18, 91, rows).astype(float),
            rng.normal(size=rows),
            rng.integers(0, 3, rows).astype(float),
            rng.random(rows),
        ]
    )
    odd_mask = rng.random(num.shape) < odd
    num[odd_mask] = rng.choice([-1.0, 0.5, 1e9, -1e9, 33.3], size=int(odd_mask.sum()))
    if 0 <= constant < num.shape[1]:
        num[:, constant] = 7.0
    num[rng.random(num.shape) < missing] = np.nan
    cat = np.column_stack([rng.integers(0, 4, rows), rng.integers(0, 2, rows)]).astype(np.int32)
    new = rng.random(cat.shape) < odd
    cat[new] = rng.integers(2, 6, int(new.sum()))  # codes past the vocabulary: new categories
    cat[rng.random(cat.shape) < missing] = -1
    return np.asfortranarray(num), cat


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 400),
    missing=st.sampled_from([0.0, 0.01, 0.3, 1.0]),
    odd=st.sampled_from([0.0, 0.001, 0.05, 0.5]),
    constant=st.integers(-1, 6),
)
@example(seed=0, rows=20, missing=0.0, odd=0.0, constant=3)  # exactly the fewest for "constant"
@example(seed=0, rows=19, missing=0.0, odd=0.0, constant=3)
def test_validation_same_breaches_and_signals_as_before(
    seed: int, rows: int, missing: float, odd: float, constant: int
) -> None:
    v = _validator()
    rng = np.random.default_rng(seed)
    # Two windows through one validator: the second may reuse the first's quiet signals.
    for _ in range(2):
        num, cat = _window(rng, rows, missing, odd, constant)
        old = _old_check(v, num, cat)
        assert v.check(num, cat) == old
        assert v.evaluate("m", num, cat) == [signal_of("m", b) for b in old]


def test_validation_equivalence_covers_every_rule() -> None:
    """The random windows above exercise every rule kind, breached and not."""
    v = _validator()
    assert {r for _, r in v.rules} == {
        "below_min", "above_max", "not_integer", "unseen", "missing", "constant",
    }  # fmt: skip
    num, cat = _window(np.random.default_rng(1), 400, 0.01, 0.05, -1)
    assert any(b.breached for b in v.check(num, cat))


def _old_pca(d: PCADetector, win: np.ndarray) -> DetectorResult:
    """``PCADetector.evaluate`` as it was: every row of the window projected each time."""
    zt = d._standardised_columns(win)
    coef = d._coefficients(zt)
    errors = d._errors(zt, coef)
    ks = d._ks.evaluate(errors)
    details = {"mean_error": float(errors.mean()), "components": float(d.components)}
    if ks.drifted:
        excess = (d._residual(zt, coef) ** 2).mean(axis=1) - d._ref_residual
        details.update({f"residual:{j}": float(v) for j, v in enumerate(excess)})
    return DetectorResult(
        detector=d.name, statistic=ks.statistic, p_value=ks.p_value, threshold=d.alpha,
        drifted=ks.drifted, severity=ks.severity, details=details,
    )  # fmt: skip


@cache
def _pca() -> PCADetector:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(3000, 6))
    ref[:, 1] += ref[:, 0]
    ref[:, 4] = 2.0  # a constant column
    ref[rng.random(ref.shape) < 0.02] = np.nan
    d = PCADetector(seed=1)
    d.fit(ref)
    return d


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    capacity=st.integers(50, 600),
    steps=st.lists(st.integers(0, 700), min_size=1, max_size=6),
    missing=st.sampled_from([0.0, 0.02, 0.5]),
    flip=st.booleans(),
    shrink=st.booleans(),
)
@example(seed=0, capacity=100, steps=[200, 1, 0, 2], missing=0.0, flip=False, shrink=False)
@example(seed=0, capacity=100, steps=[200, 30, 0], missing=0.02, flip=True, shrink=False)
def test_pca_same_statistic_p_value_and_contributors_as_before(
    seed: int, capacity: int, steps: list[int], missing: float, flip: bool, shrink: bool
) -> None:
    """A ring slid by random steps (none, part, more than all of it), rows with NaN, a
    correlation flip (drift: the contributors are computed), and windows of another size
    (a time window's mask): the same results as projecting every row each time."""
    d = _pca()
    rng = np.random.default_rng(seed)
    ring = np.full((6, capacity), np.nan)
    head = 0
    for step in steps:
        x = rng.normal(size=(step, 6))
        x[:, 1] += -x[:, 0] if flip else x[:, 0]
        x[:, 4] = 2.0
        x[rng.random(x.shape) < missing] = np.nan
        for row in x[-capacity:]:
            ring[:, head] = row
            head = (head + 1) % capacity
        win = ring.T
        if shrink:
            win = win[rng.random(capacity) < 0.9]
        if not (~np.isnan(win)).any():
            continue
        new, old = d.evaluate(win), _old_pca(d, win)
        assert (new.drifted, new.severity, new.details.keys()) == (
            old.drifted, old.severity, old.details.keys(),
        )  # fmt: skip
        assert math.isclose(new.statistic, old.statistic, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(new.p_value, old.p_value, rel_tol=1e-12, abs_tol=1e-300)
        for key, value in old.details.items():
            assert math.isclose(new.details[key], value, rel_tol=1e-12, abs_tol=1e-12), key


# ------------------------------------------------ PCA errors kept per row, the window's marks

MV_FEATURES = ["a", "b", "c", "d", "e"]


@cache
def _mv_profile() -> ReferenceProfile:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 5))
    x[:, 1] += x[:, 0]
    return build_profile(
        "m", [({f: float(v) for f, v in zip(MV_FEATURES, row, strict=True)}, 0.5) for row in x]
    )


@cache
def _mv_reference(which: int) -> np.ndarray:
    """Two references for refits: the second with the correlation of a and b flipped."""
    rng = np.random.default_rng(10 + which)
    ref = rng.normal(size=(600, 5))
    ref[:, 1] += -ref[:, 0] if which else ref[:, 0]
    ref[rng.random(ref.shape) < 0.02] = np.nan
    return ref


@cache
def _fresh_pca(which: int) -> PCADetector:
    """A detector fitted as the monitor's is; its ``evaluate`` projects every row."""
    d = PCADetector(MultivariateConfig().variance, MultivariateConfig().alpha, seed=7)
    d.fit(_mv_profile().joint if which < 0 else _mv_reference(which))  # type: ignore[arg-type]
    return d


def _no_codes(rows: int) -> np.ndarray:
    return np.empty((rows, 0), np.int32)


_OPS = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 260)),  # capacity 50..120: all three cases
    st.tuples(st.just("checkpoint"), st.just(0)),
    st.tuples(st.just("restore"), st.integers(-40, 40)),  # into a window of capacity + k
    st.tuples(st.just("foreign"), st.integers(0, 300)),  # another stream's, further on
    st.tuples(st.just("refit"), st.integers(0, 1)),
    st.tuples(st.just("subset"), st.just(0)),  # a time window's mask: no window given
    st.tuples(st.just("switch"), st.just(0)),  # a new window (a reference switch)
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    capacity=st.integers(50, 120),
    ops=st.lists(_OPS, min_size=1, max_size=14),
    adjacent=st.booleans(),
    missing=st.sampled_from([0.0, 0.05]),
)
@example(
    seed=0, capacity=60, adjacent=True, missing=0.0,
    ops=[("append", 60), ("append", 1), ("append", 59), ("append", 60), ("append", 61),
         ("append", 0), ("append", 119), ("append", 30), ("append", 45)],
)  # fmt: skip
@example(
    seed=1, capacity=60, adjacent=False, missing=0.05,
    ops=[("append", 80), ("checkpoint", 0), ("append", 20), ("restore", 0), ("append", 10),
         ("refit", 1), ("append", 5), ("subset", 0), ("append", 7), ("restore", 25),
         ("append", 3), ("switch", 0), ("append", 70), ("append", 2), ("foreign", 5)],
)  # fmt: skip
def test_pca_rows_written_since_the_last_evaluation_give_a_full_recompute(
    seed: int,
    capacity: int,
    ops: list[tuple[str, int]],
    adjacent: bool,
    missing: float,
) -> None:
    """The multivariate monitor on a real window, which projects only the rows the window
    says were written since its last evaluation, against a fresh detector projecting every
    row: appends below, at and above the capacity (wrap-around, a ring rewritten), restores
    of an older checkpoint (same and other capacity) and of another stream's, refits,
    evaluations of a subset (no window) in between, and a new window: the same statistic,
    p-value and contributors."""
    columns = [*MV_FEATURES, PREDICTION] if adjacent else ["a", "b", PREDICTION, "c", "d", "e"]
    mv = MultivariateMonitor(MultivariateConfig(), _mv_profile(), columns, seed=7)
    assert mv.detector is not None
    fitted = -1  # the profile's joint rows
    rng = np.random.default_rng(seed)
    window = SlidingWindow(len(columns), 0, capacity)
    saved = None
    for op, arg in ops:
        if op == "append":
            x = rng.normal(size=(arg, len(columns)))
            x[:, 1] += x[:, 0] * rng.choice([1.0, -1.0])
            x[rng.random(x.shape) < missing] = np.nan
            window.append(x, _no_codes(arg), np.arange(float(arg)))
        elif op == "checkpoint":
            saved = window.export_state()
        elif op == "restore" and saved is not None:
            into = window if arg == 0 else SlidingWindow(len(columns), 0, max(10, capacity + arg))
            into.restore_state(saved, unpack_array(saved.numeric), _no_codes(saved.size))
            window = into
        elif op == "foreign":
            other = SlidingWindow(len(columns), 0, capacity)
            x = rng.normal(size=(window.total + arg, len(columns)))
            other.append(x, _no_codes(len(x)), np.arange(float(len(x))))
            state = other.export_state()
            window.restore_state(state, unpack_array(state.numeric), _no_codes(state.size))
        elif op == "refit":
            mv.detector.fit(_mv_reference(arg))
            fitted = arg
        elif op == "switch":
            window = SlidingWindow(len(columns), 0, capacity)
        num = window.numeric()
        if op == "subset" and len(num):
            num = num[rng.random(len(num)) < 0.8]
        got = mv.evaluate(num, None if op == "subset" else window)
        if len(num) < 50:
            assert got == {}
            continue
        new = got[MULTIVARIATE][0]
        old = _fresh_pca(fitted).evaluate(num[:, [columns.index(f) for f in MV_FEATURES]])
        assert (new.drifted, new.severity, new.details.keys()) == (
            old.drifted, old.severity, old.details.keys(),
        )  # fmt: skip
        assert math.isclose(new.statistic, old.statistic, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(new.p_value, old.p_value, rel_tol=1e-12, abs_tol=1e-300)
        for key, value in old.details.items():
            assert math.isclose(new.details[key], value, rel_tol=1e-12, abs_tol=1e-12), key


@settings(max_examples=80, deadline=None)
@given(
    capacity=st.integers(1, 40),
    steps=st.lists(st.integers(0, 90), min_size=1, max_size=10),
    gap=st.integers(1, 4),
)
def test_window_written_since_covers_every_row_that_changed(
    capacity: int, steps: list[int], gap: int
) -> None:
    """Every row of ``numeric()`` whose bits differ from those at a mark is among the rows
    ``written_since`` the mark names (or it says None, only when every row was rewritten),
    marks taken ``gap`` appends apart; and a restore invalidates every earlier mark."""
    w = SlidingWindow(2, 0, capacity)
    counter = 0
    history: list[tuple[WindowMark, np.ndarray]] = []
    for n in steps:
        history.append((w.mark(), w.numeric().copy()))
        rows = np.arange(counter, counter + n, dtype=np.float64)
        counter += n
        w.append(np.column_stack([rows, -rows]), _no_codes(n), rows)
        mark, before = history[max(0, len(history) - gap)]
        written = w.written_since(mark)
        appended = w.total - mark.total
        if written is None:
            assert appended >= capacity
            continue
        assert len(written) == appended
        now = w.numeric()
        differs = np.ones(len(now), bool)
        same = min(len(before), len(now))
        differs[:same] = (now[:same] != before[:same]).any(axis=1)
        assert set(np.flatnonzero(differs)) <= set(written.tolist())
        assert all(0 <= i < len(now) for i in written)
    state = w.export_state()
    mark = w.mark()
    w.restore_state(state, unpack_array(state.numeric), _no_codes(state.size))
    assert w.written_since(mark) is None
    assert len(w.written_since(w.mark())) == 0  # type: ignore[arg-type]
