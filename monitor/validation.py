"""Data validation: per-feature constraints, checked on every event, judged per window.

Production data breaks in ways distribution tests miss or name wrongly: a sentinel
``-1`` in an age column, a new country code, euros switched to cents, a field an
upstream change leaves null. Those are data-validation failures (after TensorFlow
Data Validation's anomalies, Great Expectations' and Deequ's constraints), and a
page should say so: ``age: 3% of values below the reference minimum 18``.

Rules (bounded names, the ``rule`` label of ``monitor_constraint_violations_total``):

============== ========== =====================================================
rule           columns    a value violates it when
============== ========== =====================================================
below_min      numeric    it is below ``min``
above_max      numeric    it is above ``max``
not_integer    numeric    it is not a whole number (``integer: true``)
unseen         categorical its category is outside the domain
missing        both       it is missing (absent, null, or of the wrong type)
constant       numeric    (window rule) every value of a full window is the same
============== ========== =====================================================

**Checked per batch, judged per window.** :meth:`Validator.observe` counts a batch's
violations with a few numpy comparisons over its column matrices (no per-event
Python); :meth:`Validator.evaluate` computes each rule's violation rate over the
window (all rules of a kind for all columns at once: the window's missing values and
each column's extremes, a range counted only where an extreme passes its bound) and
turns it into a ``data_quality`` signal naming the rule, the rate, the bound and the
most frequent offending values (escaped: they come from the wire).

**Declared and inferred constraints.** Constraints come from the config
(``validation.constraints``); with ``validation.infer`` (the default) whatever a
feature does not declare is inferred from the reference profile: the range from the
reference min/max widened by ``range_margin`` (25%) of the reference range, the
domain from the reference categories (not when the profile pooled categories into
``__other__``), whole numbers when every reference value is one, "not constant" when
a constant window would be implausible, and the missing rate. ``monitor reference
build --schema-out`` writes what is inferred for review.

**When a rule fires: the default tolerance, with numbers.** A declared rule fires
when more than ``tolerance`` (0.1%) of the window's values violate it: five values in
a 5,000-event window pass (the rare outlier), a sentinel at 1% of events (50) does not.
An inferred rule cannot be that strict: the reference is a sample and the stream
will exceed its extremes. For exchangeable data, the chance that a new value is above
the maximum of ``n`` reference values is exactly ``1/(n+1)`` whatever the
distribution, so with a 10,000-row reference a window of 5,000 values expects 0.5
values above the maximum (and as many below) even with no margin; the margin only
lowers that. So an inferred rule's expected violation rate is taken as
``p0 = (k + 1)/(n + 1)``, ``k`` the reference's own violations (0 for the range; its
missing values; its categories seen once, the Good-Turing estimate of the unseen
share), and the rule fires when the window's count is above the binomial
``1 - alpha`` quantile at ``p0`` (and the rate above ``tolerance``). With
``alpha = 1e-8``, ``p0 = 1e-4`` and 5,000 values the bound is 8 values: the rule fires
at 9 (0.18%). A million stationary events evaluated every 1,000 events, with 10
features and 5 rules, are 50,000 tests: 5e-4 expected false alarms. A sentinel at 3%
of events puts 30 violations in the window one step (1,000 events) after its onset:
caught at the first evaluation that sees it.

Why a 25% margin and not less: the range rule is for values that cannot be right
(a sentinel, a unit switch), and a shift of the distribution is drift, which the
drift detectors name. A bounded feature (a credit score clipped at 850) shifted by
one standard deviation puts 2% of its values 55 points above the reference maximum,
past a 10% margin but not past 25%; a sentinel ``-1`` in an age column of 18..90
(bound 0) or euros switched to cents (100x) are far past either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.stats import binom

from monitor.config import FeatureConstraint, ValidationConfig
from monitor.reference import ReferenceProfile, category_of, prediction_value, shown
from monitor.signals import MAX_CATEGORY_CHARS, PREDICTION, Signal
from monitor.summary import CategoricalSummary, NumericSummary

#: Every rule name (the bounded ``rule`` label).
RULES: tuple[str, ...] = ("below_min", "above_max", "not_integer", "unseen", "missing", "constant")
MAX_SHOWN_VALUES = 5  # offending values named in a signal
MIN_CONSTANT_VALUES = 20  # fewer present values than this: the window says nothing about constancy
#: An evaluation's summaries of its window's columns (numeric, categorical), in column order.
Summaries = tuple[Sequence[NumericSummary], Sequence[CategoricalSummary]]

# The rows of Validator._tallies' table of counts.
_BELOW, _ABOVE, _NOT_INTEGER, _UNSEEN, _MISSING, _CONSTANT, _PRESENT, _N_ROWS = range(8)
_ROWS = 8
OTHER = "__other__"


@lru_cache(maxsize=4096)
def binomial_bound(n: int, p0: float, alpha: float) -> int:
    """The largest count of ``Binomial(n, p0)`` that is not improbable at level ``alpha``:
    counts above it have probability at most ``alpha``.

    >>> binomial_bound(5000, 1e-4, 1e-8)
    8
    >>> binomial_bound(5000, 0.0, 1e-8)
    0
    """
    if n <= 0 or p0 <= 0:
        return 0
    return int(binom.isf(alpha, n, min(p0, 1.0)))


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of one feature: what a violation is, and how many are expected."""

    feature: str
    rule: str
    inferred: bool  # inferred from the reference (else declared in the config)
    p0: float = 0.0  # violation rate the reference implies (inferred rules)
    rate: float | None = None  # a declared maximum rate (max_missing_rate, max_unseen_rate)
    bound: float = math.nan  # the value compared (min, max) for the message
    note: str = ""  # where the bound comes from, for the message

    def threshold(self, n: int, config: ValidationConfig) -> float:
        """The violation rate above which this rule is breached in a window of ``n`` values."""
        if self.rate is not None:
            return self.rate
        if not self.inferred or n <= 0:
            return config.tolerance
        return max(config.tolerance, binomial_bound(n, self.p0, config.alpha) / n)


@dataclass(frozen=True, slots=True)
class Breach:
    """One rule's outcome on one window (``breached`` or not), for signals and reports."""

    feature: str
    rule: str
    violations: int
    values: int  # the denominator: present values, or events for ``missing``
    rate: float
    threshold: float
    breached: bool
    message: str
    top_values: list[tuple[str, int]] = field(default_factory=list)
    inferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "rule": self.rule,
            "violations": self.violations,
            "values": self.values,
            "rate": self.rate,
            "threshold": self.threshold,
            "breached": self.breached,
            "inferred": self.inferred,
            "message": self.message,
            "top_values": [{"value": v, "count": c} for v, c in self.top_values],
        }


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _pct(rate: float) -> str:
    return f"{rate * 100:.3g}%"


def _mode_share(sample: np.ndarray) -> float:
    """Share of the most frequent value in a sorted sample."""
    if sample.size == 0:
        return 1.0
    _, counts = np.unique(sample, return_counts=True)
    return float(counts.max() / sample.size)


def infer_constraints(
    profile: ReferenceProfile, config: ValidationConfig
) -> dict[str, FeatureConstraint]:
    """The constraints :class:`Validator` infers from ``profile`` (what ``--schema-out``
    writes), declared fields of ``config.constraints`` left as declared."""
    out: dict[str, FeatureConstraint] = {}
    for name, f in profile.features.items():
        declared = config.constraints.get(name, FeatureConstraint())
        guess: dict[str, Any] = {"type": f.kind}
        if f.kind == "numeric" and f.sample is not None:
            span = f.max - f.min
            margin = config.range_margin * (span if span > 0 else max(abs(f.max), 1.0))
            guess["min"] = f.min - margin
            guess["max"] = f.max + margin
            sample = f.sample
            if sample.size and bool(np.all(sample == np.round(sample))):
                guess["integer"] = True
            if f.std > 0:
                guess["not_constant"] = True
        elif f.kind == "categorical" and OTHER not in f.categories:
            guess["domain"] = list(f.categories)
        guess["max_missing_rate"] = None
        guess["required"] = f.missing_rate == 0
        merged = {**guess, **declared.model_dump(exclude_none=True)}
        out[name] = FeatureConstraint(**merged)
    return out


class Validator:
    """A model's constraints over its window columns; see the module docstring.

    Built from the reference profile and the model's columns when the reference is
    set; ``observe`` per batch, ``evaluate`` per evaluation. Pure: no I/O.
    """

    def __init__(
        self,
        config: ValidationConfig,
        profile: ReferenceProfile,
        numeric_columns: list[str],
        categorical_columns: list[str],
        categories: dict[str, list[str]],
        violations: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.config = config
        self.numeric_columns = list(numeric_columns)
        self.categorical_columns = list(categorical_columns)
        self.categories = categories  # the monitor's vocabularies (code -> category), live
        # Violations counted per (feature, rule): the model's counters when it passes them
        # (``ModelMonitor.constraint_violations``), so they outlive a new reference (a new
        # Validator) and are checkpointed with the model; a counter never restarts from 0.
        self.violations: dict[tuple[str, str], int] = {} if violations is None else violations
        self.rules: dict[tuple[str, str], Rule] = {}
        k = len(numeric_columns)
        self._lo = np.full(k, -np.inf)
        self._hi = np.full(k, np.inf)
        self._integer = np.zeros(k, dtype=bool)
        self._constant_mode: dict[int, float | None] = {}  # column -> reference mode share
        self._domains: dict[int, frozenset[str] | int] = {}  # allowed set, or reference size
        self._allowed: dict[int, np.ndarray] = {}  # code -> allowed, grown with the vocabulary
        # An evaluation's unbreached signals, per rule with the (violations, values) they were
        # built from: a quiet window repeats them, and rebuilding 88 frozen objects each time
        # was half the validation's cost (issue 19). Never a breach: its values can differ.
        self._quiet: dict[tuple[str, str], tuple[str, int, int, Signal]] = {}
        # The last evaluation whole: (model, violations, values, signals, the indices of its
        # breaches), for a window whose tallies are all the same again (see evaluate).
        self._last: tuple[str, list[int], list[int], list[Signal], list[int]] | None = None
        self._num_index = {f: j for j, f in enumerate(self.numeric_columns)}
        self._cat_index = {f: j for j, f in enumerate(self.categorical_columns)}
        self._cells: tuple[np.ndarray, np.ndarray] | None = None  # see _rule_cells
        self._any_integer = False  # some column has an integer rule (set below, once)
        # Per categorical column, the first code a clean batch may not hold (an inferred
        # domain's size; else past any code), and the columns of declared domains (tested
        # code by code): see _clean.
        self._code_limit = np.full(len(self.categorical_columns), np.iinfo(np.int32).max)
        self._declared_domains: list[int] = []
        self._min_code_limit = int(np.iinfo(np.int32).max)
        if not config.enabled:
            return
        for j, name in enumerate(numeric_columns):
            self._numeric_rules(j, name, profile)
        for j, name in enumerate(categorical_columns):
            self._categorical_rules(j, name, profile)
        for name in [*numeric_columns, *categorical_columns]:
            self._missing_rule(name, profile)
        self._any_integer = bool(self._integer.any())
        for j, dom in self._domains.items():
            if isinstance(dom, int):
                self._code_limit[j] = dom
            else:
                self._declared_domains.append(j)
        if len(self._code_limit):
            self._min_code_limit = int(self._code_limit.min())

    # ----------------------------------------------------------------- fitting

    def _declared(self, name: str) -> FeatureConstraint:
        return self.config.constraints.get(name, FeatureConstraint())

    def _numeric_rules(self, j: int, name: str, profile: ReferenceProfile) -> None:
        c, infer = self._declared(name), self.config.infer
        f = profile.features.get(name)
        ref = f if f is not None and f.kind == "numeric" and f.sample is not None else None
        n_ref = ref.count if ref is not None else 0
        p_out = 1.0 / (n_ref + 1)  # exceeding an extreme of n exchangeable values
        margin = self.config.range_margin
        span = 0.0
        if ref is not None:
            span = ref.max - ref.min
            span = span if span > 0 else max(abs(ref.max), 1.0)
        if c.min is not None:
            self._lo[j] = c.min
            self.rules[(name, "below_min")] = Rule(name, "below_min", False, bound=c.min)
        elif infer and ref is not None:
            self._lo[j] = ref.min - margin * span
            note = f"reference minimum {_fmt(ref.min)} less a {margin:.0%} margin"
            self.rules[(name, "below_min")] = Rule(
                name, "below_min", True, p_out, bound=self._lo[j], note=note
            )
        if c.max is not None:
            self._hi[j] = c.max
            self.rules[(name, "above_max")] = Rule(name, "above_max", False, bound=c.max)
        elif infer and ref is not None:
            self._hi[j] = ref.max + margin * span
            note = f"reference maximum {_fmt(ref.max)} plus a {margin:.0%} margin"
            self.rules[(name, "above_max")] = Rule(
                name, "above_max", True, p_out, bound=self._hi[j], note=note
            )
        if c.integer:
            self._integer[j] = True
            self.rules[(name, "not_integer")] = Rule(name, "not_integer", False)
        elif c.integer is None and infer and ref is not None and ref.sample is not None:
            s = ref.sample
            # Only when the reference has enough values for "always whole" to mean something.
            if n_ref >= 100 and bool(np.all(s == np.round(s))):
                self._integer[j] = True
                self.rules[(name, "not_integer")] = Rule(name, "not_integer", True, p_out)
        if c.not_constant:
            self._constant_mode[j] = None
            self.rules[(name, "constant")] = Rule(name, "constant", False)
        elif c.not_constant is None and infer and ref is not None and ref.std > 0:
            assert ref.sample is not None
            self._constant_mode[j] = _mode_share(ref.sample)
            self.rules[(name, "constant")] = Rule(name, "constant", True)

    def _categorical_rules(self, j: int, name: str, profile: ReferenceProfile) -> None:
        c, infer = self._declared(name), self.config.infer
        f = profile.features.get(name)
        if c.domain is not None:
            self._domains[j] = frozenset(c.domain)
            self.rules[(name, "unseen")] = Rule(
                name, "unseen", False, rate=c.max_unseen_rate, note="declared categories"
            )
        elif infer and f is not None and f.kind == "categorical" and f.counts is not None:
            if OTHER in f.categories:  # the profile pooled rare categories: the domain is open
                return
            self._domains[j] = len(f.categories)
            singletons = int((f.counts == 1).sum())
            p0 = (singletons + 1) / (int(f.counts.sum()) + 1)  # Good-Turing, plus one
            self.rules[(name, "unseen")] = Rule(
                name, "unseen", True, p0, rate=c.max_unseen_rate, note="reference categories"
            )

    def _missing_rule(self, name: str, profile: ReferenceProfile) -> None:
        c = self._declared(name)
        if c.max_missing_rate is not None:
            self.rules[(name, "missing")] = Rule(name, "missing", False, rate=c.max_missing_rate)
        elif c.required:
            self.rules[(name, "missing")] = Rule(name, "missing", False)
        elif self.config.infer:
            f = profile.features.get(name)
            if f is None:
                return
            rows = max(profile.rows, f.count)
            missing = round(f.missing_rate * rows)
            self.rules[(name, "missing")] = Rule(
                name, "missing", True, (missing + 1) / (rows + 1), bound=f.missing_rate
            )

    def _allowed_codes(self, j: int) -> np.ndarray:
        """Per category code of column ``j``: allowed or not (grows with the vocabulary)."""
        cats = self.categories[self.categorical_columns[j]]
        have = self._allowed.get(j)
        if have is not None and have.size == len(cats):
            return have
        dom = self._domains[j]
        if isinstance(dom, int):
            allowed = np.arange(len(cats)) < dom
        else:
            allowed = np.fromiter((c in dom for c in cats), dtype=bool, count=len(cats))
        self._allowed[j] = allowed
        return allowed

    # ----------------------------------------------------------------- counting

    def _counts(self, num: np.ndarray, cat: np.ndarray) -> dict[tuple[str, str], int]:
        """Violations per (feature, rule) in the rows given (constant excluded: a window rule).

        Every event goes through here once, in its model's part of a batch: with many
        models interleaved, a part is ~100 rows, and the ~30 numpy calls of the full count
        (:meth:`_count_all`) cost far more than the rows (issue 19, 50 models). So a batch
        first takes one test per kind over all its columns: nothing below a minimum or
        above a maximum and no NaN (the extremes propagate it), every integer column whole,
        no missing category and every code allowed. A batch that passes has no violation
        at all (the full count's result is empty); any other goes through the full count.
        """
        if self._clean(num, cat):
            return {}
        return self._count_all(num, cat)

    def _clean(self, num: np.ndarray, cat: np.ndarray) -> bool:
        """True when the rows given violate no rule (see :meth:`_counts`); False when they
        may (then the full count decides)."""
        if num.shape[1] and len(num):
            # NaN fails both comparisons (the extremes propagate it, and comparing it raises
            # no floating-point error): a missing value is never clean.
            # (``count_nonzero`` against the size: ``ndarray.all`` costs ten times as much
            # on a mask this small.)
            inside = np.minimum.reduce(num, axis=0) >= self._lo
            inside &= np.maximum.reduce(num, axis=0) <= self._hi
            if np.count_nonzero(inside) != inside.size:
                return False
            if self._any_integer:
                sub = num[:, self._integer]
                whole = sub == np.round(sub)
                if np.count_nonzero(whole) != whole.size:
                    return False
        if cat.shape[1] and len(cat):
            # No missing category, no code at or past its inferred domain's size (one
            # maximum over all columns first; per column only when that one is too high).
            if cat.min() < 0:
                return False
            if cat.max() >= self._min_code_limit:
                below = cat.max(axis=0) < self._code_limit
                if np.count_nonzero(below) != below.size:
                    return False
            for j in self._declared_domains:
                allowed = self._allowed_codes(j)[cat[:, j]]
                if np.count_nonzero(allowed) != allowed.size:
                    return False
        return True

    def _count_all(self, num: np.ndarray, cat: np.ndarray) -> dict[tuple[str, str], int]:
        """:meth:`_counts` by a full pass over every column and rule."""
        out: dict[tuple[str, str], int] = {}
        rules = self.rules
        if num.shape[1] and len(num):
            # Per batch (every event goes through here). A row per column, so that each
            # reduction runs along contiguous memory (a batch comes row-major: reducing its
            # columns in place steps across rows, three times slower than this copy). A
            # column's values are compared with a bound only when its extreme passes the
            # bound or it has a NaN (minimum and maximum propagate it), and its NaN counted
            # only then: otherwise its count is 0 without a pass. The counts, and their
            # order below, are those of a pass over every column.
            by_column = np.ascontiguousarray(num.T)
            k = num.shape[1]
            below = np.zeros(k, dtype=np.int64)
            above = np.zeros(k, dtype=np.int64)
            missing = np.zeros(k, dtype=np.int64)
            with np.errstate(invalid="ignore"):  # NaN propagated or compared: never an error
                lowest = np.minimum.reduce(by_column, axis=1)
                highest = np.maximum.reduce(by_column, axis=1)
                gaps = np.isnan(lowest)
                cols = np.flatnonzero((lowest < self._lo) | gaps)
                if cols.size:
                    below[cols] = (by_column[cols] < self._lo[cols, None]).sum(axis=1)
                cols = np.flatnonzero((highest > self._hi) | gaps)
                if cols.size:
                    above[cols] = (by_column[cols] > self._hi[cols, None]).sum(axis=1)
            cols = np.flatnonzero(gaps)
            if cols.size:
                missing[cols] = np.isnan(by_column[cols]).sum(axis=1)
            if self._integer.any():
                sub = by_column[self._integer]
                frac = (sub != np.round(sub)) & ~np.isnan(sub)
                for j, n in zip(np.nonzero(self._integer)[0], frac.sum(axis=1), strict=True):
                    if n:
                        out[(self.numeric_columns[j], "not_integer")] = int(n)
            for rule, counts in (("below_min", below), ("above_max", above), ("missing", missing)):
                for j in np.nonzero(counts)[0]:
                    key = (self.numeric_columns[j], rule)
                    if key in rules:
                        out[key] = int(counts[j])
        if cat.shape[1]:
            missing = (cat < 0).sum(axis=0)
            for j in np.nonzero(missing)[0]:
                key = (self.categorical_columns[j], "missing")
                if key in rules:
                    out[key] = int(missing[j])
            for j in self._domains:
                codes = cat[:, j]
                allowed = self._allowed_codes(j)
                present = codes >= 0
                n = int(present.sum()) - int(allowed[codes[present]].sum())
                if n:
                    out[(self.categorical_columns[j], "unseen")] = n
        return out

    def observe(self, num: np.ndarray, cat: np.ndarray) -> None:
        """Count one batch's violations (``num``: rows x numeric columns, NaN missing;
        ``cat``: rows x categorical columns of codes, -1 missing)."""
        if not self.rules or len(num) == 0:
            return
        for key, n in self._counts(num, cat).items():
            self.violations[key] = self.violations.get(key, 0) + n

    # ----------------------------------------------------------------- judging

    def _tallies(
        self, num: np.ndarray, cat: np.ndarray, summaries: Summaries | None = None
    ) -> tuple[list[int], list[int]]:
        """Per rule (in ``self.rules`` order): its violations and its denominator over the
        rows given; for ``constant``, the present values (as violations when every one of at
        least :data:`MIN_CONSTANT_VALUES` is the same, else 0) and the present values.

        All rules of a kind for all columns at once: one pass for the missing values and
        one each for the columns' minimum and maximum; a range rule is counted only in the
        columns whose extreme passes its bound (in a quiet window, none). With
        ``summaries`` (see :meth:`evaluate`), those passes and the categorical counts are
        read from them instead.
        """
        n_rows = len(num) if num.shape[1] else len(cat)
        k, kc = num.shape[1], cat.shape[1]
        # One table, a row per kind of count, a column per column (numeric, then categorical);
        # each rule reads its (violations, values) cells by an index fixed per validator.
        table = np.zeros((_ROWS, k + kc), dtype=np.int64)
        table[_N_ROWS] = n_rows
        if summaries is not None:
            present = np.array([s.count for s in summaries[0]], dtype=np.int64).reshape(k)
            num_missing = n_rows - present
        else:
            num_missing = np.count_nonzero(np.isnan(num), axis=0)
        table[_MISSING, :k] = num_missing
        table[_PRESENT, :k] = n_rows - num_missing
        present_k = table[_PRESENT, :k]
        if k and n_rows:
            if summaries is not None:
                # The sorted columns' ends: the same values as the NaN-skipping reductions
                # (a -0.0 for a 0.0 at most, which compares the same: they are only compared).
                lowest = np.array([s.min for s in summaries[0]], dtype=np.float64)
                highest = np.array([s.max for s in summaries[0]], dtype=np.float64)
            else:
                lowest = np.fmin.reduce(num, axis=0)  # NaN only for an all-missing column
                highest = np.fmax.reduce(num, axis=0)
            with np.errstate(invalid="ignore"):
                # ``nonzero()[0]`` of a 1-D mask: np.flatnonzero without its two wrappers.
                cols = (lowest < self._lo).nonzero()[0]
                if cols.size:
                    table[_BELOW, cols] = (num[:, cols] < self._lo[cols]).sum(axis=0)
                cols = (highest > self._hi).nonzero()[0]
                if cols.size:
                    table[_ABOVE, cols] = (num[:, cols] > self._hi[cols]).sum(axis=0)
                constant = (highest == lowest) & (present_k >= MIN_CONSTANT_VALUES)
                table[_CONSTANT, :k] = np.where(constant, present_k, 0)
            if self._any_integer:
                cols = np.flatnonzero(self._integer)
                sub = num[:, cols]
                table[_NOT_INTEGER, cols] = ((sub != np.round(sub)) & ~np.isnan(sub)).sum(axis=0)
        for j in range(kc):
            if summaries is not None:  # its counts per code, and its present values
                summary = summaries[1][j]
                codes, present_j = summary.counts, summary.count
            else:
                # One pass per column: code c counted at c + 1, missing (-1) at 0.
                counts = np.bincount(np.maximum(cat[:, j], -1) + 1, minlength=1)
                codes, present_j = counts[1:], n_rows - int(counts[0])
            table[_MISSING, k + j] = n_rows - present_j
            table[_PRESENT, k + j] = present_j
            if j in self._domains:
                allowed = self._allowed_codes(j)
                n = min(codes.size, allowed.size)  # a summary's counts may end in zeros
                table[_UNSEEN, k + j] = codes[:n][~allowed[:n]].sum()
        if self._cells is None:
            self._cells = self._rule_cells(k)
        flat = table.ravel()
        return flat[self._cells[0]].tolist(), flat[self._cells[1]].tolist()

    def _rule_cells(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per rule, where :meth:`_tallies`' table holds its violations and its values."""
        width = k + len(self.categorical_columns)
        count_row = {
            "below_min": _BELOW,
            "above_max": _ABOVE,
            "not_integer": _NOT_INTEGER,
            "unseen": _UNSEEN,
            "missing": _MISSING,
            "constant": _CONSTANT,
        }
        violations, values = [], []
        for feature, name in self.rules:
            j = self._num_index.get(feature)
            j = k + self._cat_index[feature] if j is None else j
            violations.append(count_row[name] * width + j)
            values.append((_N_ROWS if name == "missing" else _PRESENT) * width + j)
        return np.array(violations, dtype=np.intp), np.array(values, dtype=np.intp)

    def _breach(
        self, rule: Rule, k: int, values: int, num: np.ndarray, cat: np.ndarray, all_messages: bool
    ) -> Breach:
        """One rule's outcome from its tally (:meth:`_tallies`)."""
        num_index, cat_index = self._num_index, self._cat_index
        if rule.rule == "constant":
            return self._constant(rule, num_index[rule.feature], values, k > 0, num)
        if rule.feature in num_index:
            j = num_index[rule.feature]
            col = num[:, j]
        else:
            j = cat_index[rule.feature]
            col = cat[:, j]
        rate = k / values if values else 0.0
        threshold = rule.threshold(values, self.config)
        breached = values > 0 and rate > threshold
        top = self._top_values(rule, j, col) if breached else []
        # The message only where it is read: a breach (signals), or any rule (reports).
        message = self._message(rule, k, values, rate, top) if breached or all_messages else ""
        return Breach(
            rule.feature, rule.rule, k, values, rate, threshold, breached, message, top,
            rule.inferred,
        )  # fmt: skip

    def check(
        self, num: np.ndarray, cat: np.ndarray, *, all_messages: bool = False
    ) -> list[Breach]:
        """Every rule's outcome over the rows given (a window, or a whole file); the
        message of every rule with ``all_messages``, else of the breached ones."""
        if not self.rules:
            return []
        violations, values = self._tallies(num, cat)
        return [
            self._breach(rule, k, n, num, cat, all_messages)
            for rule, k, n in zip(self.rules.values(), violations, values, strict=True)
        ]

    def _constant(self, rule: Rule, j: int, n: int, constant: bool, num: np.ndarray) -> Breach:
        mode = self._constant_mode.get(j)
        # Inferred: only when a constant window is implausible for the reference (mode^n).
        plausible = mode is not None and (mode >= 1.0 or n * math.log(mode) > math.log(
            self.config.alpha
        ))  # fmt: skip
        breached = constant and not plausible
        value = ""
        if breached:
            col = num[:, j]
            value = shown(_fmt(float(col[~np.isnan(col)][0])), quote=False)
        msg = f"{shown(rule.feature, 80, quote=False)}: every one of {n} values is {value}"
        return Breach(
            rule.feature, "constant", n if constant else 0, n, 1.0 if constant else 0.0, 0.5,
            breached, msg, [(value, n)] if breached else [], rule.inferred,
        )  # fmt: skip

    def _top_values(self, rule: Rule, j: int, col: np.ndarray) -> list[tuple[str, int]]:
        """The most frequent offending values, escaped and bounded."""
        if rule.rule == "missing":
            return []
        if rule.rule == "unseen":
            allowed = self._allowed_codes(j)
            codes = col[col >= 0]
            bad = codes[~allowed[codes]]
            uniq, counts = np.unique(bad, return_counts=True)
            cats = self.categories[rule.feature]
            named = [(cats[int(u)], int(c)) for u, c in zip(uniq, counts, strict=True)]
        else:
            with np.errstate(invalid="ignore"):
                if rule.rule == "below_min":
                    bad = col[col < self._lo[j]]
                elif rule.rule == "above_max":
                    bad = col[col > self._hi[j]]
                else:
                    bad = col[(col != np.round(col)) & ~np.isnan(col)]
            uniq, counts = np.unique(bad, return_counts=True)
            named = [(_fmt(float(u)), int(c)) for u, c in zip(uniq, counts, strict=True)]
        named.sort(key=lambda vc: -vc[1])
        return [(shown(v, 40, quote=False), c) for v, c in named[:MAX_SHOWN_VALUES]]

    def _message(self, rule: Rule, k: int, n: int, rate: float, top: list[tuple[str, int]]) -> str:
        name = shown(rule.feature, 80, quote=False)
        share = f"{_pct(rate)} of values ({k} of {n})"
        if rule.rule == "below_min":
            why = f"below the declared minimum {_fmt(rule.bound)}"
            if rule.inferred:
                why = f"below {_fmt(rule.bound)} (the {rule.note})"
        elif rule.rule == "above_max":
            why = f"above the declared maximum {_fmt(rule.bound)}"
            if rule.inferred:
                why = f"above {_fmt(rule.bound)} (the {rule.note})"
        elif rule.rule == "not_integer":
            why = "not whole numbers"
        elif rule.rule == "unseen":
            why = f"outside the {rule.note}"
        else:
            share = f"{_pct(rate)} of events ({k} of {n})"
            why = "missing the value"
            if rule.inferred:
                why += f" (reference: {_pct(rule.bound)})"
        text = f"{name}: {share} {why}"
        if top:
            text += "; most frequent: " + ", ".join(f"{v} ({c})" for v, c in top)
        return text

    def evaluate(
        self, model: str, num: np.ndarray, cat: np.ndarray, summaries: Summaries | None = None
    ) -> list[Signal]:
        """One ``data_quality`` signal per rule for the window (``"ok"`` when not breached,
        so the alert engine can resolve).

        ``summaries``: the window's column summaries (:func:`~monitor.summary.summarize_numeric`
        and :func:`~monitor.summary.summarize_categorical` of these very ``num`` and ``cat``),
        which hold the present values, extremes and category counts the tallies need: an
        evaluation has them already, and reading them saves three passes over the window.

        An unbreached rule's signal is a function of its tally alone, so the one of the
        previous evaluation is handed again when the tally is the same (a frozen object);
        a breach is built anew (its offending values are read from the window).
        """
        if not self.rules:
            return []
        violations, values = self._tallies(num, cat, summaries)
        last = self._last
        if last is not None and last[0] == model and last[1] == violations and last[2] == values:
            # Every tally as at the last evaluation (two list comparisons): its unbreached
            # signals are the ones the loop below would find in ``_quiet`` (it stored them
            # there from these very tallies); only its breaches are built again.
            out = list(last[3])
            breached = last[4]
            if breached:
                keys = list(self.rules)
                for i in breached:
                    out[i] = self._signal(model, keys[i], violations[i], values[i], num, cat)
            self._last = (model, violations, values, out, breached)
            return list(out)
        self._last = None  # until this evaluation is complete
        quiet = self._quiet
        out = []
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
        breached = [i for i, sig in enumerate(out) if sig.severity != "ok"]
        self._last = (model, violations, values, out, breached)
        return list(out)

    def _signal(
        self, model: str, key: tuple[str, str], k: int, n: int, num: np.ndarray, cat: np.ndarray
    ) -> Signal:
        """One rule's signal from its tally: the unbreached one of the last evaluation when
        the tally is the same (a frozen object), else built (and kept, when unbreached)."""
        quiet = self._quiet
        seen = quiet.get(key)
        if seen is not None and seen[1] == k and seen[2] == n and seen[0] == model:
            return seen[3]
        b = self._breach(self.rules[key], k, n, num, cat, False)
        sig = signal_of(model, b)
        if b.breached:
            quiet.pop(key, None)
        else:
            quiet[key] = (model, k, n, sig)
        return sig


def signal_of(model: str, b: Breach) -> Signal:
    """A breach as a ``data_quality`` signal: subject ``<rule>:<feature>``, detector the rule."""
    details: dict[str, float | str | None] = {
        "rule": b.rule,
        "violations": float(b.violations),
        "values": float(b.values),
        "source": "inferred" if b.inferred else "declared",
    }
    if b.breached:
        details["message"] = b.message
        details["top_values"] = ", ".join(f"{v} ({c})" for v, c in b.top_values)
    return Signal(
        model=model,
        kind="data_quality",
        subject=f"{b.rule}:{b.feature}",
        severity="warning" if b.breached else "ok",
        value=b.rate,
        threshold=b.threshold,
        detector=b.rule,
        details=details,
    )


def validate_rows(
    config: ValidationConfig,
    profile: ReferenceProfile,
    rows: list[tuple[dict[str, Any], Any]],
    schema: dict[str, str],
    *,
    max_category_chars: int = MAX_CATEGORY_CHARS,
) -> list[Breach]:
    """Check ``(features, prediction)`` rows (a whole file) against the constraints the
    pipeline uses, with the same :class:`Validator`: ``monitor validate``.

    ``schema`` maps each column (the prediction as ``__prediction__``) to its kind.
    Values are columnised as the pipeline does: a numeric value that is not a number is
    missing, a categorical one is its category string (:func:`category_of`), missing
    when longer than ``max_category_chars`` (``limits.max_category_chars``: the pipeline
    counts it ``too_long``), so it breaches ``missing``, not ``unseen``.
    """
    numeric = [n for n, k in schema.items() if k == "numeric"]
    categorical = [n for n, k in schema.items() if k == "categorical"]
    categories: dict[str, list[str]] = {}
    for name in categorical:
        f = profile.features.get(name)
        categories[name] = list(f.categories) if f is not None else []
    validator = Validator(config, profile, numeric, categorical, categories)

    def raw(name: str) -> list[Any]:
        if name == PREDICTION:
            return [prediction_value(p) for _, p in rows]
        return [f.get(name) for f, _ in rows]

    num = np.full((len(rows), len(numeric)), np.nan)
    for j, name in enumerate(numeric):
        num[:, j] = [
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
            for v in raw(name)
        ]
    num[np.isinf(num)] = np.nan
    cat = np.full((len(rows), len(categorical)), -1, dtype=np.int32)
    for j, name in enumerate(categorical):
        cats = categories[name]
        vocab = {c: i for i, c in enumerate(cats)}
        for i, v in enumerate(raw(name)):
            c = category_of(v) if v is not None else None
            if c is None or len(c) > max_category_chars:
                continue
            code = vocab.get(c)
            if code is None:
                code = vocab[c] = len(cats)
                cats.append(c)
            cat[i, j] = code
    return validator.check(num, cat, all_messages=True)
