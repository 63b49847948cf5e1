"""From per-evaluation detector results to per-feature drift verdicts.

One evaluation of a model runs every detector on every feature (and on the
prediction, keyed ``"__prediction__"``). Two things stand between those raw
results and an alert:

1. **Multiple testing.** With twenty features and a 5 % test, one feature
   "drifts" in most evaluations by chance. P-values are therefore corrected
   across the features of one evaluation, separately for each test detector
   (KS, chi-square): Bonferroni (family-wise error) or Benjamini-Hochberg
   (false-discovery rate). The multivariate PCA test is a KS test on reconstruction
   errors and is corrected with the KS family (:data:`P_VALUE_FAMILY`). Distance
   detectors (PSI, JS, Wasserstein) and stream detectors carry no p-value and are
   left as they are.
2. **Persistence and hysteresis.** A feature becomes *drifting* after
   ``persistence`` consecutive evaluations in which some detector (after
   correction) drifted, and clears only after ``clear_after`` consecutive clean
   evaluations, so a statistic hovering at its threshold does not flap.
   The defaults (``persistence: 1``, ``clear_after: 5``) put the false-alarm
   control in the detectors' strict thresholds and keep hysteresis long, so
   a drift is reported at the first evaluation that sees it and stays one
   incident while stream and window detectors take turns flagging it (see
   :mod:`monitor.detectors.config`). A stream detector's result is drift only
   for a change *away* from the reference: ADWIN reports the return to the
   reference as no drift (:mod:`monitor.detectors.streaming`, "Direction"), so
   the end of a drift lets the incident clear instead of opening a new one.

:class:`DriftTracker` is pure: the pipeline calls :meth:`DriftTracker.observe`
once per evaluation, and a checkpoint saves its runs (:meth:`DriftTracker.export_runs`).

>>> from monitor.detectors.base import DetectorResult
>>> from monitor.detectors.config import DriftConfig
>>> def psi(value: float) -> DetectorResult:
...     sev = "critical" if value >= 0.25 else "warning" if value >= 0.1 else "ok"
...     return DetectorResult("psi", value, None, 0.1, sev != "ok", sev)
>>> tracker = DriftTracker(DriftConfig(persistence=2, clear_after=2))
>>> [tracker.observe({"age": [psi(v)]})["age"].drifting for v in (0.3, 0.3, 0.0, 0.0)]
[False, True, True, False]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from monitor.detectors.base import DetectorResult, grade_p_value
from monitor.detectors.config import DriftConfig
from monitor.signals import SEVERITY_RANK, Severity, Signal, slot_constructor
from monitor.state_format import FeatureRun
from monitor.summary import CategoricalSummary, NumericSummary


class QualityBounds(Protocol):
    """The data-quality thresholds :func:`signals` grades against (``QualityConfig``;
    None disables). A protocol, so the verdict layer does not import the config."""

    @property
    def max_missing_rate(self) -> float | None: ...

    @property
    def max_unseen_category_rate(self) -> float | None: ...


#: Tests corrected in another detector's family: the multivariate PCA test is a KS test
#: (on reconstruction errors), so with it an evaluation's KS family has one more member.
P_VALUE_FAMILY = {"pca": "ks"}


@dataclass(frozen=True, slots=True)
class FeatureVerdict:
    """The state of one feature after one evaluation.

    ``raw_drifted``: some detector drifted in *this* evaluation (after
    correction). ``drifting``: the persisted state (persistence/hysteresis).
    ``consecutive``: length of the current run of evaluations with the same
    ``raw_drifted`` value (drifted run if ``raw_drifted``, clean run otherwise).
    ``severity``: "ok" when not drifting; while drifting the highest severity
    among this evaluation's results, at least "warning" (the incident is open
    until it clears). ``results`` are the (corrected) detector results;
    ``detector``/``statistic``/``threshold`` name the headline result to display:
    the most severe, then the furthest past its threshold (None without results).
    ``explained_by``: the data-quality rule that explains this evaluation's drift of the
    feature (:mod:`monitor.explain`): the evaluation then counts as clean for it.
    """

    feature: str
    drifting: bool
    severity: Severity
    raw_drifted: bool
    consecutive: int
    results: tuple[DetectorResult, ...]
    detector: str | None
    statistic: float | None
    threshold: float | None
    explained_by: str | None = None


@dataclass(slots=True)
class _FeatureState:
    drifting: bool = False
    drifted_run: int = 0
    clean_run: int = 0


def bonferroni(p_values: np.ndarray) -> np.ndarray:
    """Bonferroni-adjusted p-values: ``min(1, m p)``.

    >>> bonferroni(np.array([0.01, 0.04, 0.5])).tolist()
    [0.03, 0.12, 1.0]
    """
    return np.minimum(p_values * p_values.size, 1.0)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up; what ``statsmodels`` calls ``fdr_bh``).

    Comparing the adjusted value with alpha is the BH procedure at FDR alpha.

    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5])).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    """
    m = p_values.size
    if m == 0:
        return p_values.copy()
    order = np.argsort(p_values, kind="stable")
    ranked = p_values[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(ranked, 1.0)
    return adjusted


def _strength(result: DetectorResult) -> float:
    """How far past its threshold a result is (>1 = past it), comparable across detectors."""
    if result.p_value is not None:
        return float("inf") if result.p_value <= 0 else result.threshold / result.p_value
    return result.statistic / result.threshold if result.threshold > 0 else result.statistic


def headline(results: Sequence[DetectorResult]) -> DetectorResult | None:
    """The result to display: most severe, then drifted, then furthest past its threshold."""
    # max(results, key=...) unrolled (per feature and evaluation: the verdict, its signal,
    # the metrics): the first of the largest keys, compared as max compares them (key >
    # best), with _strength inlined (a call per result was a fifth of the cost).
    best: DetectorResult | None = None
    best_key: tuple[int, bool, float] | None = None
    rank = SEVERITY_RANK
    for r in results:
        p = r.p_value
        if p is not None:
            strength = math.inf if p <= 0 else r.threshold / p
        else:
            t = r.threshold
            strength = r.statistic / t if t > 0 else r.statistic
        key = (rank[r.severity], r.drifted, strength)
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


#: Positional constructors by the slots (:func:`~monitor.signals.slot_constructor`): an
#: evaluation builds a corrected result, a verdict and a signal per column.
_result = slot_constructor(DetectorResult)
_verdict = slot_constructor(FeatureVerdict)
_signal = slot_constructor(Signal)


class DriftTracker:
    """Correction, persistence and hysteresis over successive evaluations; see the module."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self._states: dict[str, _FeatureState] = {}
        #: The last :meth:`observe`'s headline of each verdict, with the results it is the
        #: headline of (see :func:`signals`' ``heads``).
        self.heads: dict[str, tuple[tuple[DetectorResult, ...], DetectorResult | None]] = {}

    def correct(
        self, results: Mapping[str, Sequence[DetectorResult]]
    ) -> dict[str, tuple[DetectorResult, ...]]:
        """Apply the configured p-value correction across features, per test detector.

        Corrected results keep the raw p-value in ``details["raw_p_value"]`` and
        are re-graded with :func:`~monitor.detectors.base.grade_p_value`.
        """
        if self.config.correction == "none":
            return {feature: tuple(rs) for feature, rs in results.items()}
        adjust = bonferroni if self.config.correction == "bonferroni" else benjamini_hochberg
        # Per family, its members in order: (feature, index, result).
        families: dict[str, list[tuple[str, int, DetectorResult]]] = {}
        family_of = P_VALUE_FAMILY
        out: dict[str, tuple[DetectorResult, ...]] = {}
        for feature, rs in results.items():
            rs = out[feature] = tuple(rs)
            for i, r in enumerate(rs):
                if r.p_value is not None:
                    family = family_of.get(r.detector, r.detector)
                    members = families.get(family)
                    if members is None:
                        members = families[family] = []
                    members.append((feature, i, r))
        # Only the features with a corrected result are copied and rebuilt.
        corrected: dict[str, list[DetectorResult]] = {}
        build = _result
        for members in families.values():
            raw = np.array([r.p_value for _, _, r in members], dtype=np.float64)
            # As Python floats at once (the values float() gives one by one).
            for (feature, i, r), p_adj in zip(members, adjust(raw).tolist(), strict=True):
                severity = grade_p_value(p_adj, r.threshold)
                details = {**r.details, "raw_p_value": float(r.p_value or 0.0)}
                rs_new = corrected.get(feature)
                if rs_new is None:
                    rs_new = corrected[feature] = list(out[feature])
                rs_new[i] = build(
                    r.detector, r.statistic, p_adj, r.threshold, severity != "ok", severity, details
                )
        for feature, rs_new in corrected.items():
            out[feature] = tuple(rs_new)
        return out

    def observe(
        self,
        results: Mapping[str, Sequence[DetectorResult]],
        explained: Mapping[str, str] | None = None,
    ) -> dict[str, FeatureVerdict]:
        """Take one evaluation's results for every feature; return each feature's verdict.

        Features absent from ``results`` keep their state untouched. ``explained``
        (feature -> data-quality rule, :mod:`monitor.explain`): features whose drift in this
        evaluation is the breach of that rule; the evaluation is clean for them.
        """
        explained = explained or {}
        verdicts: dict[str, FeatureVerdict] = {}
        heads: dict[str, tuple[tuple[DetectorResult, ...], DetectorResult | None]] = {}
        states = self._states
        persistence, clear_after = self.config.persistence, self.config.clear_after
        rank = SEVERITY_RANK
        critical = rank["critical"]
        build = _verdict
        for feature, rs in self.correct(results).items():
            state = states.get(feature)
            if state is None:
                state = states[feature] = _FeatureState()
            cause = explained.get(feature) if explained else None
            raw = False
            if cause is None:
                for r in rs:  # any(r.drifted for r in rs), without a generator
                    if r.drifted:
                        raw = True
                        break
            if raw:
                state.drifted_run += 1
                state.clean_run = 0
                if state.drifted_run >= persistence:
                    state.drifting = True
            else:
                state.clean_run += 1
                state.drifted_run = 0
                if state.clean_run >= clear_after:
                    state.drifting = False
            severity: Severity = "ok"
            if state.drifting:
                worst = 0  # max((rank[r.severity] for r in rs), default=0), ranks being >= 0
                for r in rs:
                    r_rank = rank[r.severity]
                    if r_rank > worst:
                        worst = r_rank
                severity = "critical" if worst >= critical else "warning"
            top = headline(rs)
            heads[feature] = (rs, top)
            # Every field, in order (feature, drifting, severity, raw_drifted, consecutive,
            # results, detector, statistic, threshold, explained_by).
            verdicts[feature] = build(
                feature,
                state.drifting,
                severity,
                raw,
                state.drifted_run if raw else state.clean_run,
                rs,
                top.detector if top else None,
                top.statistic if top else None,
                top.threshold if top else None,
                cause,
            )
        self.heads = heads
        return verdicts

    def is_drifting(self, feature: str) -> bool:
        """The persisted state of ``feature`` (False if never observed)."""
        state = self._states.get(feature)
        return state.drifting if state else False

    def export_runs(self) -> list[FeatureRun]:
        """The persistence/hysteresis runs of every feature (what a checkpoint keeps)."""
        return [
            FeatureRun(f, s.drifting, s.drifted_run, s.clean_run) for f, s in self._states.items()
        ]

    def restore_runs(self, runs: Sequence[FeatureRun]) -> None:
        self._states = {
            r.feature: _FeatureState(r.drifting, max(0, r.drifted_run), max(0, r.clean_run))
            for r in runs
        }

    def forget(self, feature: str) -> None:
        """Drop a feature's state (the feature left the schema)."""
        self._states.pop(feature, None)


def signals(
    model: str,
    verdicts: Mapping[str, FeatureVerdict],
    numeric: Mapping[str, NumericSummary],
    categorical: Mapping[str, CategoricalSummary],
    quality: QualityBounds,
    heads: Mapping[str, tuple[tuple[DetectorResult, ...], DetectorResult | None]] | None = None,
) -> list[Signal]:
    """One evaluation's drift verdicts and data-quality rates, as signals for the alert policy.

    A drift signal per judged column (its headline result, ``ok`` unless drifting; with
    ``details["explained_by"]`` naming the rule when a data-quality breach explains this
    evaluation's drift, :mod:`monitor.explain`); a data-quality signal per column and
    configured rate (missing values, unseen categories), graded against its threshold.

    ``heads``: the headlines :meth:`DriftTracker.observe` found for these verdicts
    (``DriftTracker.heads``); one is used only with the very results tuple it was found
    in (the same object), else the headline is found again.
    """
    out: list[Signal] = []
    build = _signal
    for name, v in verdicts.items():
        known = heads.get(name) if heads else None
        head = known[1] if known is not None and known[0] is v.results else headline(v.results)
        details: dict[str, float | str | None] = {}
        for r in v.results:  # {r.detector: r.statistic ...} without the comprehension's call
            details[r.detector] = r.statistic
        if head is not None and head.p_value is not None:
            details["p_value"] = head.p_value
        if v.explained_by is not None:
            details["explained_by"] = v.explained_by
        # Every field in order (model, kind, subject, severity, value, threshold, detector,
        # details, segment); below, in field order: binding keywords costs a fifth of the
        # construction.
        out.append(
            build(
                model,
                "drift",
                name,
                v.severity if v.drifting else "ok",
                head.statistic if head else math.nan,
                head.threshold if head else math.nan,
                head.detector if head else None,
                details,
                None,
            )
        )
    q = quality
    if q.max_missing_rate is not None:
        summaries: dict[str, NumericSummary | CategoricalSummary] = {**numeric, **categorical}
        bound = q.max_missing_rate
        for name, s in summaries.items():
            rate = s.missing_rate
            out.append(
                Signal(
                    model,
                    "data_quality",
                    f"missing_rate:{name}",
                    "warning" if rate > bound else "ok",
                    rate,
                    bound,
                )
            )
    if q.max_unseen_category_rate is not None:
        for name, s in categorical.items():
            out.append(
                Signal(
                    model=model,
                    kind="data_quality",
                    subject=f"unseen_rate:{name}",
                    severity="warning" if s.unseen_rate > q.max_unseen_category_rate else "ok",
                    value=s.unseen_rate,
                    threshold=q.max_unseen_category_rate,
                )
            )
    return out
