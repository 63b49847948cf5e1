"""Drift explained by broken data: one evaluation's data-quality breach named as the cause.

A sentinel ``-1`` in an age column, a new country code or euros switched to cents breach a
validation rule (:mod:`monitor.validation`) *and* move the feature's distribution, so the
drift detectors on that feature fire in the same evaluation. Listed side by side, the page
reads as if the population had drifted when the data broke. The rule, applied per
evaluation before the drift tracker's persistence (:class:`monitor.drift.DriftTracker`):

1. **Only where both fire (cheap).** A feature is re-tested only when, in this evaluation,
   it breaches a value rule (``below_min``, ``above_max``, ``not_integer``, ``unseen``,
   ``constant``) *and* one of its detectors drifted after the p-value correction. ``missing``
   explains nothing: missing values are never in a drift test, so the test without them is
   the same test.
2. **Re-test without the violating values.** The feature's window detectors (PSI, KS,
   chi-square, ...) run again on the window's values that violate none of its breached
   rules, and the p-values are corrected again with the same family (the other features'
   results unchanged).
3. **Drift that remains is real** and stays a drift signal (the breach is a second signal
   beside it). **Drift that disappears is explained**: the drift tracker counts the
   evaluation as clean for that feature (so it is not *drifting*: not in ``drifting``, not
   in ``monitor_drifting_features``, not counted by the retrain policy), its drift signal
   says ``explained_by: <rule>``, and the breach's message ends with the consequence:
   ``age: 3% of values ... below 1.81 (...) (this also moves its distribution: ks 0.03)``.
   When fewer than :data:`~monitor.evaluation.MIN_VALUES_FOR_TESTS` values are left (a unit
   switch of every value, a constant column) there is nothing left that could drift: the
   breach explains it.

Segments (:mod:`monitor.segments`) follow the whole: a feature whose drift a breach explains
is tested in every segment without the same violating values
(:func:`without_explained`), so a sentinel in every region pages once, as the breach, not
once per segment; a segment's drift that remains without them is real and stays.

What it cannot tell apart: a stream detector (ADWIN) saw the violating values and cannot be
replayed without them, so it has no say in the re-test; a real shift that only ADWIN has
seen yet, at the same time as a breach on the same feature, is reported when the window
tests see it (an evaluation or two later). A feature with no window detector is not
re-tested (its drift stays). Features with a breach but no drift, or drift but no breach,
are untouched.

It reads the validator's public results only: its ``data_quality`` signals (subject
``<rule>:<feature>``, ``details["violations"]``) and its rules. The violating values are
found from the rules' description (:class:`monitor.validation.Rule`: ``bound`` is the value
compared for a range; the declared domain, else the reference's categories, for
``unseen``), and cross-checked against the signal's count of violations: if the two
disagree the feature is not explained (its drift stays), so a change in how validation
counts can never hide drift. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from monitor.columns import Columns
from monitor.detectors.base import Detector, DetectorResult, evaluate_sorted
from monitor.detectors.streaming import StreamDetector
from monitor.drift import headline
from monitor.evaluation import MIN_VALUES_FOR_TESTS
from monitor.signals import Signal
from monitor.validation import RULES, Rule
from monitor.window import MISSING_CODE

#: Rules whose violating values are in the drift tests (see the module docstring, 1.).
VALUE_RULES = frozenset({"below_min", "above_max", "not_integer", "unseen", "constant"})

Correct = Callable[[Mapping[str, Sequence[DetectorResult]]], dict[str, tuple[DetectorResult, ...]]]


@dataclass(frozen=True, slots=True)
class Explanation:
    """A feature's drift in one evaluation, explained by one of its breached rules."""

    feature: str
    rule: str  # the breached rule named as the cause
    detector: str | None  # the headline drift result before the re-test
    statistic: float | None
    values_left: int  # values the re-test ran on (0: none left to test)
    excluded: tuple[str, ...] = ()  # the breached rules whose values the re-test left out

    def consequence(self) -> str:
        """What the breach's message gains: ``this also moves its distribution: ks 0.03``."""
        what = self.detector or "drift"
        if self.detector and self.statistic is not None:
            what = f"{self.detector} {self.statistic:.3g}"
        return f"this also moves its distribution: {what}"


def _violating(
    rule: Rule,
    numeric: np.ndarray | None,
    codes: np.ndarray | None,
    allowed: np.ndarray | None,
) -> np.ndarray:
    """Per present value of the column: does it violate ``rule``."""
    if numeric is not None:
        with np.errstate(invalid="ignore"):
            if rule.rule == "below_min":
                return numeric < rule.bound
            if rule.rule == "above_max":
                return numeric > rule.bound
            if rule.rule == "not_integer":
                return numeric != np.round(numeric)
        return np.ones(numeric.size, dtype=bool)  # constant: every value is the one value
    assert codes is not None and allowed is not None
    return ~allowed[codes]


def _allowed(columns: Columns, feature: str, domain: Sequence[str] | None) -> np.ndarray:
    """Per category code: inside the rule's domain (declared, else the reference's)."""
    cats = columns.categories[feature]
    if domain is not None:
        dom = frozenset(domain)
        return np.fromiter((c in dom for c in cats), dtype=bool, count=len(cats))
    j = columns.categorical_columns.index(feature)
    return np.arange(len(cats)) < columns.reference_sizes[j]


@dataclass(frozen=True, slots=True)
class _Breach:
    """A breached rule of one feature, as its ``data_quality`` signal reports it."""

    feature: str
    rule: str
    violations: int


def _breaches(quality: Sequence[Signal]) -> list[_Breach]:
    """The breached value rules among the validator's signals (of the whole traffic)."""
    out = []
    for s in quality:
        if s.kind != "data_quality" or s.severity == "ok" or s.segment is not None:
            continue
        rule, _, feature = s.subject.partition(":")
        violations = s.details.get("violations")
        if rule in VALUE_RULES and feature and isinstance(violations, int | float):
            out.append(_Breach(feature, rule, int(violations)))
    return out


def _cause(breached: Sequence[_Breach]) -> str:
    """The rule named: most violations, then the order of :data:`~monitor.validation.RULES`."""
    order = {r: i for i, r in enumerate(RULES)}
    return min(breached, key=lambda b: (-b.violations, order.get(b.rule, len(order)))).rule


def explain_drift(
    results: Mapping[str, Sequence[DetectorResult]],
    quality: Sequence[Signal],
    rules: Mapping[tuple[str, str], Rule],
    domains: Mapping[str, Sequence[str] | None],
    num: np.ndarray,
    cat: np.ndarray,
    columns: Columns,
    detectors: Mapping[str, Sequence[Detector]],
    correct: Correct,
) -> dict[str, Explanation]:
    """The features whose drift in this evaluation a breach explains (module docstring).

    ``results``: the raw detector results per column (before correction); ``quality``:
    the validator's signals on the same window (``num``, ``cat``); ``rules`` and
    ``domains`` (declared domain per feature, None when inferred): how the validator
    judges; ``correct``: the drift tracker's p-value correction.
    """
    by_feature: dict[str, list[_Breach]] = {}
    for b in _breaches(quality):
        if b.feature in results:
            by_feature.setdefault(b.feature, []).append(b)
    if not by_feature:
        return {}
    corrected = correct(results)
    numeric_index = {f: j for j, f in enumerate(columns.numeric_columns)}
    cat_index = {f: j for j, f in enumerate(columns.categorical_columns)}
    retested: dict[str, list[DetectorResult]] = {}
    left: dict[str, int] = {}
    for feature, breached in by_feature.items():
        if not any(r.drifted for r in corrected.get(feature, ())):
            continue
        window = [d for d in detectors.get(feature, ()) if not isinstance(d, StreamDetector)]
        rule_of = {b.rule: rules[(feature, b.rule)] for b in breached if (feature, b.rule) in rules}
        if not window or len(rule_of) != len(breached):
            continue  # nothing can be re-run, or a rule unknown here: the drift stays
        if feature in numeric_index:
            col = num[:, numeric_index[feature]]
            present = col[~np.isnan(col)]
            bad = np.zeros(present.size, dtype=bool)
            for b in breached:
                mask = _violating(rule_of[b.rule], present, None, None)
                if b.rule == "unseen" or (b.rule != "constant" and int(mask.sum()) != b.violations):
                    break  # not what the validator counted: do not explain
                bad |= mask
            else:
                clean = np.sort(present[~bad])
                left[feature] = int(clean.size)
                if clean.size >= MIN_VALUES_FOR_TESTS:
                    retested[feature] = [evaluate_sorted(d, clean) for d in window]
            continue
        # A categorical column's one value rule is ``unseen``.
        if feature not in cat_index or [b.rule for b in breached] != ["unseen"]:
            continue
        (b,) = breached
        codes = cat[:, cat_index[feature]]
        codes = codes[codes >= 0]
        mask = _violating(
            rule_of[b.rule], None, codes, _allowed(columns, feature, domains.get(feature))
        )
        if int(mask.sum()) != b.violations:
            continue
        clean_codes = codes[~mask]
        left[feature] = int(clean_codes.size)
        if clean_codes.size >= MIN_VALUES_FOR_TESTS:
            counts = np.bincount(clean_codes, minlength=len(columns.categories[feature]))
            retested[feature] = [d.evaluate(counts.astype(np.int64)) for d in window]
    if not left:
        return {}
    again = correct({**results, **retested}) if retested else {}
    out: dict[str, Explanation] = {}
    for feature, n in left.items():
        if feature in retested and any(r.drifted for r in again[feature]):
            continue  # real drift: it stays
        head = headline(corrected[feature])
        out[feature] = Explanation(
            feature=feature,
            rule=_cause(by_feature[feature]),
            detector=head.detector if head else None,
            statistic=float(head.statistic) if head else None,
            values_left=n,
            excluded=tuple(b.rule for b in by_feature[feature]),
        )
    return out


def without_explained(
    explanations: Mapping[str, Explanation],
    rules: Mapping[tuple[str, str], Rule],
    domains: Mapping[str, Sequence[str] | None],
    num: np.ndarray,
    cat: np.ndarray,
    columns: Columns,
) -> tuple[np.ndarray, np.ndarray]:
    """The window's columns with the values an explained breach left out of the re-test set
    missing (NaN, :data:`~monitor.window.MISSING_CODE`), for the segments' tests.

    A segment is a subset of the same window: a sentinel in 10% of the rows moves every
    region's distribution as it moves the whole's, so without this each segment would page
    the drift the breach already explains (one page per segment). Tested without those
    values, a segment's drift that remains is real. Copies only when something is explained;
    the inputs are never written.
    """
    if not explanations:
        return num, cat
    numeric_index = {f: j for j, f in enumerate(columns.numeric_columns)}
    cat_index = {f: j for j, f in enumerate(columns.categorical_columns)}
    num_out, cat_out = num, cat
    for feature, e in explanations.items():
        known = [rules[(feature, r)] for r in e.excluded if (feature, r) in rules]
        if feature in numeric_index:
            j = numeric_index[feature]
            col = num[:, j]
            bad = np.zeros(col.size, dtype=bool)
            for rule in known:
                bad |= _violating(rule, col, None, None)
            bad &= ~np.isnan(col)
            if bad.any():
                if num_out is num:
                    num_out = num.copy()
                num_out[bad, j] = np.nan
        elif feature in cat_index and "unseen" in e.excluded:
            j = cat_index[feature]
            codes = cat[:, j]
            allowed = _allowed(columns, feature, domains.get(feature))
            present = codes >= 0
            bad = np.zeros(codes.size, dtype=bool)
            bad[present] = ~allowed[codes[present]]
            if bad.any():
                if cat_out is cat:
                    cat_out = cat.copy()
                cat_out[bad, j] = MISSING_CODE
    return num_out, cat_out


def fold(signal: Signal, explanations: Mapping[str, Explanation]) -> Signal:
    """A breach's ``data_quality`` signal with the drift it explains folded into its message
    (``details["explains"]``: the drift detector); other signals unchanged."""
    if signal.kind != "data_quality" or signal.severity == "ok" or signal.segment is not None:
        return signal
    rule, _, feature = signal.subject.partition(":")
    e = explanations.get(feature)
    if e is None or e.rule != rule:
        return signal
    details = dict(signal.details)
    message = details.get("message")
    if isinstance(message, str):
        details["message"] = f"{message} ({e.consequence()})"
    details["explains"] = f"drift {e.detector}" if e.detector else "drift"
    return replace(signal, details=details)


__all__ = ["VALUE_RULES", "Explanation", "explain_drift", "fold", "without_explained"]
