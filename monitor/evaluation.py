"""Evaluation: the detectors over a model's window, and what one evaluation produced.

:func:`window_results` summarises the window's columns (each numeric column
sorted once) and runs every column's detectors on them; :class:`StreamFeed`
queues the rows the stream detectors (ADWIN, ...) have not seen yet, and feeds
them once per evaluation step. :class:`Evaluation` is the record the metrics,
alert and status layers read. The verdict over the results (correction,
persistence, signals) is :mod:`monitor.drift`'s. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.columns import Columns
from monitor.detectors.base import Detector, DetectorResult, evaluate_sorted_all
from monitor.detectors.streaming import ADWINDetector
from monitor.drift import FeatureVerdict
from monitor.signals import MULTIVARIATE, EvaluationContext, Signal
from monitor.summary import (
    CategoricalSummary,
    NumericSummary,
    summarize_categorical,
    summarize_numeric,
)

MIN_VALUES_FOR_TESTS = 20  # fewer present values than this: no drift verdict for the column


@dataclass
class SegmentEvaluation:
    """One segment at one evaluation: what the UI, metrics and alerts read."""

    segment: str  # the label: region=north
    slice: str  # region (or region,tier)
    rows: int  # its events in the window
    tested: bool  # rows >= min_window_rows
    reference: str  # "segment" (its own reference rows) or "overall"
    verdicts: dict[str, FeatureVerdict] = field(default_factory=dict)
    numeric: dict[str, NumericSummary] = field(default_factory=dict)
    categorical: dict[str, CategoricalSummary] = field(default_factory=dict)

    @property
    def drifting(self) -> list[str]:
        return sorted(f for f, v in self.verdicts.items() if v.drifting)


@dataclass
class Evaluation:
    """Everything one evaluation of one model produced; the metrics and alert layers read it."""

    context: EvaluationContext
    numeric: dict[str, NumericSummary]
    categorical: dict[str, CategoricalSummary]
    categories: dict[str, list[str]]
    results: dict[str, list[DetectorResult]]
    verdicts: dict[str, FeatureVerdict]
    signals: list[Signal]
    performance: dict[str, float] = field(default_factory=dict)
    #: Per declared segment (:mod:`monitor.segments`), in slice order, ``__other__`` last.
    segments: list[SegmentEvaluation] = field(default_factory=list)

    @property
    def drifting(self) -> list[str]:
        """The drifting columns (the multivariate verdict is not a column: see
        :attr:`multivariate_drifting`)."""
        return sorted(f for f, v in self.verdicts.items() if v.drifting and f != MULTIVARIATE)

    @property
    def explained(self) -> dict[str, str]:
        """Column -> the data-quality rule whose breach explains its drift in this evaluation
        (:mod:`monitor.explain`), for the columns not drifting: shown apart from
        :attr:`drifting` so a page reads as broken data, not as a drifted population."""
        return {
            f: v.explained_by
            for f, v in sorted(self.verdicts.items())
            if v.explained_by is not None and not v.drifting and f != MULTIVARIATE
        }

    @property
    def multivariate_drifting(self) -> bool:
        verdict = self.verdicts.get(MULTIVARIATE)
        return bool(verdict and verdict.drifting)


class StreamFeed:
    """Numeric rows queued for the stream detectors; :meth:`flush` feeds them.

    Stream detectors are only read by an evaluation, so their input can wait for
    it: one ``update`` per column and evaluation step, however the step's events
    were batched (with many models, a batch holds a few dozen events of each, and
    a call per column per batch costs more than the values). The values and their
    order are the same, so are the detections.
    """

    def __init__(self) -> None:
        self.pending: list[np.ndarray] = []

    def add(self, num: np.ndarray) -> None:
        self.pending.append(num)

    def rows(self) -> np.ndarray | None:
        """The queued rows as one array (kept so: same values, same order), or None."""
        if not self.pending:
            return None
        if len(self.pending) > 1:
            self.pending = [np.concatenate(self.pending)]
        return self.pending[0]

    def flush(self, columns: Sequence[str], detectors: Mapping[str, list[Detector]]) -> None:
        """Give the queued rows (``columns``: their names) to the columns' detectors."""
        pending = self.pending
        if not pending:
            return
        num = pending[0] if len(pending) == 1 else np.concatenate(pending)
        self.pending = []
        complete = not np.isnan(num).any()
        fed: dict[int, ADWINDetector] = {}  # column -> its ADWIN, fed with the others at once
        if complete and len(num):
            # A column's ADWIN (one per column) is fed with those of the other columns in
            # one call where it can be; its other detectors are window tests (their update
            # does nothing) or independent of it, so the order within a column is free.
            for j, name in enumerate(columns):
                adwins = [d for d in detectors.get(name) or () if isinstance(d, ADWINDetector)]
                if len(adwins) == 1:
                    fed[j] = adwins[0]
            if len(fed) < 2 or not ADWINDetector.update_columns(
                list(fed.values()), num[:, list(fed)]
            ):
                fed = {}
        for j, name in enumerate(columns):
            dets = detectors.get(name)
            if not dets:
                continue
            col = num[:, j]
            if not complete:
                col = col[~np.isnan(col)]
            if col.size:
                done = fed.get(j)
                for d in dets:
                    if d is not done:
                        d.update(col)


def window_results(
    num: np.ndarray,
    cat: np.ndarray,
    columns: Columns,
    detectors: Mapping[str, list[Detector]],
) -> tuple[
    dict[str, NumericSummary], dict[str, CategoricalSummary], dict[str, list[DetectorResult]]
]:
    """Summaries of the window's rows (``num``, ``cat``) and the detector results per column.

    A column with fewer than :data:`MIN_VALUES_FOR_TESTS` present values, in the window or
    in the reference, gets no results: a reference of a handful of rows (``learn_first: 1``,
    a file cut short) was tested as a real one, and a one-value reference paged every column
    as critical drift.
    """
    num_summaries, sorted_cols = summarize_numeric(num)
    cat_summaries = summarize_categorical(cat, columns.category_sizes(), columns.reference_sizes)
    results: dict[str, list[DetectorResult]] = {}
    jobs: list[tuple[Detector, np.ndarray]] = []
    owners: list[str] = []
    ref_counts = columns.reference_counts
    for name, summary, values in zip(
        columns.numeric_columns, num_summaries, sorted_cols, strict=True
    ):
        if (
            summary.count >= MIN_VALUES_FOR_TESTS
            and ref_counts.get(name, MIN_VALUES_FOR_TESTS) >= MIN_VALUES_FOR_TESTS
        ):
            # summarize_numeric hands the columns sorted: the detectors' fast path, all
            # columns at once (one call of the KS kernel for every column).
            results[name] = []
            for d in detectors[name]:
                jobs.append((d, values))
                owners.append(name)
    for name, result in zip(owners, evaluate_sorted_all(jobs), strict=True):
        results[name].append(result)
    for name, summary in zip(columns.categorical_columns, cat_summaries, strict=True):
        if (
            summary.count >= MIN_VALUES_FOR_TESTS
            and ref_counts.get(name, MIN_VALUES_FOR_TESTS) >= MIN_VALUES_FOR_TESTS
        ):
            results[name] = [d.evaluate(summary.counts) for d in detectors[name]]
    numeric = dict(zip(columns.numeric_columns, num_summaries, strict=True))
    categorical = dict(zip(columns.categorical_columns, cat_summaries, strict=True))
    return numeric, categorical, results
