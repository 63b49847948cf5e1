"""Segments: drift tracked per declared slice of a model's traffic, beside the whole.

A drift confined to one region, app version or customer tier is diluted in the
whole population: a one-sigma shift in a tenth of the traffic moves the pooled
distribution by a tenth. ``segments: [region, [region, tier]]`` declares slices;
per slice, its top-K values (by reference traffic) are each tested on their own,
and the rest pool into ``__other__``.

**A segment's window is its events within the model's window.** No ring buffer per
value: the window already holds the categorical columns, so a segment is one
vectorised mask over the window's rows at evaluation time (``model_version``, an
event field rather than a feature, gets one ``int32`` column of its own, appended
with each batch). Memory is one mask per evaluation, and a segment's window covers
the same events, so a segment's evaluation is as fresh as the model's. A segment with
fewer than ``min_window_rows`` rows in the window is not tested (too few values for a
test at the corrected alpha); with the default 5000-event window and 200 rows, a value
needs 4% of the traffic.

**Reference per segment.** A segment is compared with the reference rows of the same
value (:class:`~monitor.reference.SegmentReference`, built by :func:`segment_references`
from the reference's rows: a learned reference or a data file). Without such rows (a
saved profile, ``model_version`` slices) or with fewer than ``min_reference_rows`` of
them, the segment is compared with the whole reference, and its results say
``reference: overall``: a segment whose distribution differs from the whole by nature
(a richer region) then shows as drifting, so give those models a reference with rows.
Without reference rows the top-K values are ranked again at each evaluation by the
window's traffic (so a new ``model_version`` is tracked once it takes traffic), and the
persistence state of a segment that left the top-K is dropped: labels then change with
the traffic, still at most ``top_k + 1`` per slice at a time. A learned reference is
checkpointed with the values of the ``top_k`` it was learned with: restored under a lower
``top_k``, its first ``top_k`` values are tracked and the rest is compared with the whole
reference; a higher ``top_k`` takes effect when the reference is learned again.

**Multiple testing.** Segments multiply the tests of an evaluation by up to
``len(by) * (top_k + 1)``. Only the hypothesis tests run per segment (KS on numeric
columns, chi-square on categorical ones, at the configured alpha; distance and stream
detectors have no p-value to correct, and their fixed thresholds are not calibrated for
a segment's few hundred rows), and their p-values are Bonferroni-corrected across every
segment x column test of one evaluation, per test family. So the chance that any
segment test of one evaluation flags on reference-like data is at most alpha (1e-5 by
default), whatever the number of segments: at most about 0.01 false segment alarms per
million events at the default step, as for the whole-window tests; BENCHMARKS.md has
the measurement. Persistence and hysteresis are the model's (``drift.persistence``,
``drift.clear_after``), per segment and column.

**Hostile values.** Segment values come from the wire. A label (``region=north``) holds
each value escaped (non-printable characters, lone surrogates, backslash, ``,`` and
``=`` as escapes) and cut to :data:`MAX_VALUE_CHARS`, so it is one bounded line of
printable text wherever it goes (metrics labels, logs, notifications; HTML escapes it
again). Label values are bounded by ``top_k + 1`` per slice.

>>> segment_label(("region",), ("north",))
'region=north'
>>> segment_label(("region", "tier"), ("a=b,c", None))
'region=a\\\\x3db\\\\x2cc,tier=__missing__'
>>> len(segment_value_text("x" * 10_000)) <= MAX_VALUE_CHARS + 3
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.columns import Columns
from monitor.config import SegmentsConfig, WindowConfig
from monitor.detectors.base import Detector, DetectorResult
from monitor.detectors.config import DriftConfig
from monitor.detectors.fitting import fit_column_detectors
from monitor.drift import DriftTracker, FeatureVerdict, headline
from monitor.errors import ReferenceMismatch
from monitor.evaluation import SegmentEvaluation, window_results
from monitor.reference import (
    MAX_VALUE_CHARS,
    OTHER,
    FeatureProfile,
    ReferenceProfile,
    SegmentReference,
    Value,
    segment_label,
    segment_references,
    segment_value_text,
    slice_name,
)
from monitor.signals import SEGMENT_EVENT_FIELDS, Signal
from monitor.summary import (
    CategoricalSummary,
    NumericSummary,
    summarize_categorical,
    summarize_numeric,
)
from monitor.window import MISSING_CODE

#: The tests run per segment: those with a p-value (see the module docstring).
SEGMENT_NUMERIC = "ks"
SEGMENT_CATEGORICAL = "chi_square"
_RADIX = 1 << 20  # per column of a combination: a category code + 1 (0 = missing)
_SEP = "\x1f"  # between a segment label and a column in the tracker's keys (never in a label)


@dataclass
class _Slice:
    columns: tuple[str, ...]
    name: str
    values: list[Value] | None  # by reference traffic; None: ranked at each evaluation
    # value (None = the rest) -> its detectors per column, and whether own reference
    detectors: dict[Value | None, tuple[dict[str, list[Detector]], bool]]
    by_window: bool = False  # no reference rows: values ranked by each window's traffic
    # value (None = the rest) -> the reference restricted to it, where it has enough rows
    own: dict[Value | None, ReferenceProfile] = field(default_factory=dict)


class SegmentMonitor:
    """Per-slice, per-value drift over a model's window; see the module docstring."""

    def __init__(
        self,
        config: SegmentsConfig,
        drift: DriftConfig,
        window: WindowConfig,
        model: str,
        columns: Columns,
        profile: ReferenceProfile,
        max_categories: int,
        seed: Callable[[str, str], int],
    ) -> None:
        self.config = config
        self.model = model
        self.columns = columns
        self._profile = profile
        self._window = window
        self._seed = seed
        self._max_versions = max_categories
        self.drift = drift.model_copy(
            update={
                "numeric": [SEGMENT_NUMERIC],
                "categorical": [SEGMENT_CATEGORICAL],
                "threshold": "fixed",
                "correction": "bonferroni",
            }
        )
        self.tracker = DriftTracker(self.drift)
        #: model_version -> code, for slices on it (bounded; the rest is __other__).
        self.versions: list[str] = []
        self._version_vocab: dict[str, int] = {}
        cat_cols = set(columns.categorical_columns)
        self.slices: list[_Slice] = []
        for cols in config.specs():
            for c in cols:
                if c not in cat_cols and c not in SEGMENT_EVENT_FIELDS:
                    kind = "numeric" if c in columns.numeric_columns else "not a feature"
                    raise ReferenceMismatch(
                        f"model {model!r}: segments: {c!r} is {kind}; a segment column is "
                        "a categorical feature or model_version"
                    )
            ref = profile.segments.get(cols)
            if ref is None:
                self.slices.append(_Slice(cols, slice_name(cols), None, {}, True))
                continue
            values, own = _current(ref, config)
            self.slices.append(_Slice(cols, slice_name(cols), values, {}, False, own))
        self.uses_versions = any(c in SEGMENT_EVENT_FIELDS for s in self.slices for c in s.columns)
        self._overall: dict[str, list[Detector]] | None = None

    @property
    def active(self) -> bool:
        return bool(self.slices)

    # ------------------------------------------------------------------ codes

    def version_codes(self, versions: Sequence[str | None]) -> np.ndarray:
        """The batch's model versions as codes (-1 = none), for the window's extra column."""
        vocab = self._version_vocab
        out = np.empty(len(versions), dtype=np.int32)
        for i, v in enumerate(versions):
            if v is None:
                out[i] = MISSING_CODE
                continue
            code = vocab.get(v)
            if code is None:
                if len(self.versions) >= self._max_versions:
                    v = OTHER
                    code = vocab.get(v)
                if code is None:
                    code = len(self.versions)
                    self.versions.append(v)
                    vocab[v] = code
            out[i] = code
        return out

    def restore_versions(self, versions: list[str]) -> None:
        self.versions = list(versions[: self._max_versions + 1])
        self._version_vocab = {v: i for i, v in enumerate(self.versions)}

    def _column_codes(self, col: str, cat: np.ndarray, versions: np.ndarray) -> np.ndarray:
        if col in SEGMENT_EVENT_FIELDS and col not in self.columns.vocab:
            return versions
        return cat[:, self.columns.categorical_columns.index(col)]

    def _categories(self, col: str) -> list[str]:
        if col in SEGMENT_EVENT_FIELDS and col not in self.columns.vocab:
            return self.versions
        return self.columns.categories[col]

    def _code_of(self, cols: tuple[str, ...], value: Value) -> int | None:
        """The combined code of a value tuple now, or None if some part was never seen."""
        code = 0
        for i, (c, v) in enumerate(zip(cols, value, strict=True)):
            if v is None:
                part = 0
            else:
                vocab = (
                    self._version_vocab
                    if c in SEGMENT_EVENT_FIELDS and c not in self.columns.vocab
                    else self.columns.vocab[c]
                )
                k = vocab.get(v)
                if k is None:
                    return None
                part = min(k, _RADIX - 2) + 1
            code += part * _RADIX**i
        return code

    def _codes(self, s: _Slice, cat: np.ndarray, versions: np.ndarray) -> np.ndarray:
        code = np.zeros(len(cat), dtype=np.int64)
        for i, c in enumerate(s.columns):
            part = np.minimum(self._column_codes(c, cat, versions).astype(np.int64), _RADIX - 2)
            code += (part + 1) * _RADIX**i
        return code

    def _decode(self, s: _Slice, code: int) -> Value:
        out: list[str | None] = []
        for c in s.columns:
            part = code % _RADIX - 1
            code //= _RADIX
            out.append(None if part < 0 else self._categories(c)[part])
        return tuple(out)

    # ------------------------------------------------------------------ detectors

    def _fit(self, profile: ReferenceProfile, skip: tuple[str, ...]) -> dict[str, list[Detector]]:
        """The segment panel (KS, chi-square) of every column but the slice's own."""
        cols = self.columns
        out: dict[str, list[Detector]] = {}
        n_features = len(cols.numeric_columns) + len(cols.categorical_columns)
        for name in cols.numeric_columns + cols.categorical_columns:
            prof = profile.features.get(name)
            if name in skip or prof is None:
                out[name] = []
                continue
            data = (
                prof.sample
                if prof.kind == "numeric"
                else _aligned_counts(prof, cols, name, self._profile.features[name])
            )
            if data is None or (prof.kind == "numeric" and data.size == 0) or data.sum() == 0:
                out[name] = []
                continue
            out[name] = fit_column_detectors(
                prof.kind,
                data,
                self.drift,
                window_size=self._window.size,
                step=self._window.step,
                n_features=n_features,
                feature=name,
                seed=self._seed(self.model, name),
            )
        return out

    def _detectors(self, s: _Slice, value: Value | None) -> tuple[dict[str, list[Detector]], bool]:
        got = s.detectors.get(value)
        if got is not None:
            return got
        own = s.own.get(value)
        if own is not None:
            got = (self._fit(own, s.columns), True)
        else:
            if self._overall is None:
                self._overall = self._fit(self._profile, ())
            # The slice's own columns are constant within a value: never tested.
            got = ({k: ([] if k in s.columns else v) for k, v in self._overall.items()}, False)
        s.detectors[value] = got
        return got

    # ------------------------------------------------------------------ evaluate

    def evaluate(
        self,
        num: np.ndarray,
        cat: np.ndarray,
        versions: np.ndarray | None,
        tested: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[list[SegmentEvaluation], list[Signal]]:
        """Every slice's segments over the window's rows; their results and signals.

        ``tested``: the same rows' columns as the drift tests see them, when they differ
        from ``num``, ``cat``: without the values a data-quality breach explains
        (:func:`monitor.explain.without_explained`). Slices are cut and summarised from
        the window's own values."""
        if not self.slices:
            return [], []
        test_num, test_cat = tested if tested is not None else (num, cat)
        cleaned = test_num is not num or test_cat is not cat
        if versions is None or len(versions) != len(cat):
            versions = np.full(len(cat), MISSING_CODE, dtype=np.int32)
        parts: list[tuple[_Slice, Value | None, np.ndarray]] = []
        for s in self.slices:
            codes = self._codes(s, cat, versions)
            if s.by_window:  # no reference rows: this window's top values
                uniq, counts = np.unique(codes, return_counts=True)
                order = np.lexsort((uniq, -counts))[: self.config.top_k]
                s.values = [self._decode(s, int(uniq[i])) for i in order]
            rest = np.ones(len(codes), dtype=bool)
            for value in s.values or []:
                code = self._code_of(s.columns, value)
                mask = codes == code if code is not None else np.zeros(len(codes), dtype=bool)
                rest &= ~mask
                parts.append((s, value, mask))
            parts.append((s, None, rest))
        results: dict[str, list[DetectorResult]] = {}
        out: list[SegmentEvaluation] = []
        used: set[str] = set()
        for s, value, mask in parts:
            rows = int(mask.sum())
            dets, own = self._detectors(s, value)
            label = segment_label(s.columns, value)
            if label in used:  # two values alike in their first MAX_VALUE_CHARS: keep apart
                label = next(f"{label}#{k}" for k in range(2, 1000) if f"{label}#{k}" not in used)
            used.add(label)
            seg = SegmentEvaluation(
                segment=label,
                slice=s.name,
                rows=rows,
                tested=rows >= self.config.min_window_rows,
                reference="segment" if own else "overall",
            )
            out.append(seg)
            if not seg.tested:
                continue
            numeric, categorical, res = window_results(
                test_num[mask], test_cat[mask], self.columns, dets
            )
            if cleaned:  # the segment's summaries show its values as they came
                numeric, categorical = _summaries(num[mask], cat[mask], self.columns)
            seg.numeric, seg.categorical = numeric, categorical
            for name, rs in res.items():
                if rs:
                    results[f"{seg.segment}{_SEP}{name}"] = rs
        for run in self.tracker.export_runs():  # segments that left the top values
            if run.feature.partition(_SEP)[0] not in used:
                self.tracker.forget(run.feature)
        signals: list[Signal] = []
        by_label = {seg.segment: seg for seg in out}
        for key, verdict in self.tracker.observe(results).items():
            label, _, name = key.partition(_SEP)
            by_label[label].verdicts[name] = verdict
            signals.append(_signal(self.model, label, name, verdict))
        return out, signals


def _summaries(
    num: np.ndarray, cat: np.ndarray, columns: Columns
) -> tuple[dict[str, NumericSummary], dict[str, CategoricalSummary]]:
    nums, _ = summarize_numeric(num)
    cats = summarize_categorical(cat, columns.category_sizes(), columns.reference_sizes)
    return (
        dict(zip(columns.numeric_columns, nums, strict=True)),
        dict(zip(columns.categorical_columns, cats, strict=True)),
    )


def _current(
    ref: SegmentReference, config: SegmentsConfig
) -> tuple[list[Value], dict[Value | None, ReferenceProfile]]:
    """A slice's values and own references under the settings in force now.

    A learned reference comes back from a checkpoint with the segments it was built
    with; after a restart with a lower ``top_k`` or a higher ``min_reference_rows`` the
    configuration still holds: the top values are cut to ``top_k`` (the reference's
    ranking kept), the pooled rest's own reference is dropped when the rest now pools
    more values than it was built from, and a reference with fewer rows than
    ``min_reference_rows`` is not used (the whole reference is). A data file is
    re-read with the current settings, so this changes nothing there.
    """
    values = list(ref.values[: config.top_k])
    cut = len(ref.values) > len(values)
    own = {
        value: prof
        for value, prof in ref.profiles.items()
        if prof.rows >= config.min_reference_rows
        and (value in values if value is not None else not cut)
    }
    return values, own


def _aligned_counts(
    prof: FeatureProfile, columns: Columns, name: str, overall: FeatureProfile
) -> np.ndarray | None:
    """A segment's category counts in the order of the whole reference's categories (the
    model's first codes), so a chi-square test compares like with like."""
    if prof.counts is None:
        return None
    index = columns.vocab[name]
    out = np.zeros(len(overall.categories), dtype=np.int64)
    for cat, n in zip(prof.categories, prof.counts, strict=True):
        k = index.get(cat)
        if k is not None and k < len(out):
            out[k] += int(n)
    return out


def _signal(model: str, segment: str, name: str, v: FeatureVerdict) -> Signal:
    head = headline(v.results)
    details: dict[str, float | str | None] = {r.detector: r.statistic for r in v.results}
    if head is not None and head.p_value is not None:
        details["p_value"] = head.p_value
    return Signal(
        model=model,
        kind="drift",
        subject=name,
        severity=v.severity if v.drifting else "ok",
        value=head.statistic if head else math.nan,
        threshold=head.threshold if head else math.nan,
        detector=head.detector if head else None,
        details=details,
        segment=segment,
    )


__all__ = [
    "MAX_VALUE_CHARS",
    "OTHER",
    "SegmentMonitor",
    "segment_label",
    "segment_references",
    "segment_value_text",
    "slice_name",
]
