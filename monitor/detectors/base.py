"""The one detector protocol every drift detector implements.

A detector compares what the monitor sees now with a reference. There are two
flavours behind one interface:

* window tests (PSI, KS, chi-square, Jensen-Shannon, Wasserstein) look at the
  whole current window when :meth:`Detector.evaluate` is called and ignore
  :meth:`Detector.update`;
* stream detectors (ADWIN, Page-Hinkley) consume every new value in order through
  :meth:`Detector.update` and report, at the next :meth:`Detector.evaluate`,
  whether a change was detected since the previous evaluation (the flag is
  latched: river's own flag lasts a single update, which a cadence would miss).

Data shapes are fixed so detectors never parse anything:

* numeric columns: 1-D ``float64`` arrays of finite values (missing values are
  removed by the caller);
* categorical columns: 1-D ``int64`` *count vectors* indexed by category code.
  The window's vector may be longer than the reference's: codes at or beyond
  ``len(reference)`` are categories the reference never saw.

The pipeline sorts every numeric window column once per evaluation (the
summaries need the order statistics anyway). A window test that can use that
order offers the optional method ``evaluate_sorted(window)``: the same result
as ``evaluate`` for a window that is already sorted ascending and finite, with
no checks and no sort. :func:`evaluate_sorted` calls it when a detector has it,
``evaluate`` otherwise, so the protocol itself stays three methods. A class can
also offer the classmethod ``evaluate_sorted_batch(jobs)``: ``evaluate_sorted``
of many (detector, window) jobs in one call (KS, numeric PSI: one call of the
compiled kernel for all columns); :func:`evaluate_sorted_all` uses it.

Detectors are pure (no I/O, no clock, no global state) and deterministic given
their constructor arguments (seeds included): a checkpoint never stores a window
detector, it is fitted again from the reference at restore; stream detectors
export what they observed (``monitor.detectors.streaming``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from monitor.errors import DetectorError
from monitor.signals import Severity

try:  # the compiled helper (native/, Rust): optional, the dataclass builds the same objects
    from monitor_native import new_frozen as _new_frozen
except ImportError:  # pragma: no cover - depends on the install (an older build lacks it)
    _new_frozen = None

ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class DetectorResult:
    """The outcome of one evaluation of one detector on one column.

    ``statistic`` is the detector's own measure (PSI value, KS D, ...).
    ``p_value`` is set by hypothesis tests (KS, chi-square) and ``None`` for
    distances. ``threshold`` is what decided ``drifted``: a statistic threshold
    for distances, the significance level for tests. ``severity`` grades the
    result ("warning" below "critical"); ``drifted`` is ``severity != "ok"``.
    """

    detector: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    severity: Severity
    details: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        """One line a person reads: the verdict, the statistic, the p-value, the threshold.

        >>> print(DetectorResult("ks", 0.1034, 1.2e-08, 0.05, True, "critical"))
        ks: drift (critical), statistic 0.1034, p=1.2e-08, threshold 0.05
        >>> print(DetectorResult("psi", 0.0021, None, 0.1, False, "ok"))
        psi: no drift, statistic 0.0021, threshold 0.1
        """
        verdict = f"drift ({self.severity})" if self.drifted else "no drift"
        p = "" if self.p_value is None else f", p={self.p_value:.2g}"
        return (
            f"{self.detector}: {verdict}, statistic {self.statistic:.4g}{p}, "
            f"threshold {self.threshold:g}"
        )


#: DetectorResult's fields, in order: what a row of :func:`results_from_rows` holds.
RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DetectorResult))


def results_from_rows(rows: list[tuple[Any, ...]]) -> list[DetectorResult]:
    """``[DetectorResult(*row) for row in rows]``, each row in field order.

    A batch of an evaluation's columns (KS, PSI) ends with a result per column, and the
    frozen dataclass's ``__init__`` costs more than a result's arithmetic: with the
    compiled module installed (``monitor_native.new_frozen``) the objects are built there,
    each field set as that ``__init__`` sets it (``object.__setattr__``); equal objects.
    """
    if _new_frozen is None:
        return [DetectorResult(*row) for row in rows]
    return _new_frozen(DetectorResult, RESULT_FIELDS, rows)


@runtime_checkable
class Detector(Protocol):
    """What every drift detector provides. See the module docstring for data shapes."""

    name: ClassVar[str]
    supports: ClassVar[frozenset[str]]  # subset of {"numeric", "categorical"}

    def fit(self, reference: np.ndarray) -> None:
        """Take the reference once; precompute everything evaluations reuse."""

    def update(self, values: np.ndarray) -> None:
        """Consume new values in arrival order (stream detectors); window tests ignore it."""

    def evaluate(self, window: np.ndarray) -> DetectorResult:
        """Compare the current window with the reference."""


def params_repr(obj: object) -> str:
    """``Name(param=value, ...)`` from the constructor's parameters, read back from ``obj``.

    Detectors store their constructor arguments unchanged under the same names
    (river's convention), so the repr says exactly how one was built.
    """
    names = [n for n in inspect.signature(type(obj).__init__).parameters if n != "self"]
    args = ", ".join(f"{n}={getattr(obj, n)!r}" for n in names if hasattr(obj, n))
    return f"{type(obj).__name__}({args})"


class DetectorBase:
    """What our detector classes share: a repr that shows their parameters.

    >>> from monitor.detectors.ks import KSDetector
    >>> KSDetector(alpha=0.01)
    KSDetector(alpha=0.01, method='kolmogorov')
    """

    def __repr__(self) -> str:
        return params_repr(self)


def evaluate_sorted(detector: Detector, window: np.ndarray) -> DetectorResult:
    """Evaluate ``detector`` on a window the caller guarantees sorted ascending and finite.

    Uses the detector's ``evaluate_sorted`` fast path when it has one (see the
    module docstring); otherwise its ordinary ``evaluate``.
    """
    fast = getattr(detector, "evaluate_sorted", None)
    return fast(window) if fast is not None else detector.evaluate(window)


def evaluate_sorted_all(jobs: Sequence[tuple[Detector, np.ndarray]]) -> list[DetectorResult]:
    """``[evaluate_sorted(d, w) for d, w in jobs]``, the same results in the same order; the
    jobs of a detector class with ``evaluate_sorted_batch`` go to it in one call."""
    out: list[DetectorResult | None] = [None] * len(jobs)
    batches: dict[type, list[int]] = {}  # class with a batch -> the numbers of its jobs
    # How a class's jobs are evaluated, asked once per class (a failed hasattr costs an
    # exception): a few classes, many jobs. Without a batch or an ``evaluate_sorted``,
    # ``evaluate`` straight away (what evaluate_sorted would call).
    how: dict[type, str] = {}
    for k, (detector, window) in enumerate(jobs):
        cls = type(detector)
        way = how.get(cls)
        if way is None:
            if hasattr(cls, "evaluate_sorted_batch"):
                way, batches[cls] = "batch", []
            else:
                way = "sorted" if hasattr(cls, "evaluate_sorted") else "plain"
            how[cls] = way
        if way == "batch":
            batches[cls].append(k)
        elif way == "sorted":
            out[k] = evaluate_sorted(detector, window)
        else:
            out[k] = detector.evaluate(window)
    for cls, ks in batches.items():
        results = cls.evaluate_sorted_batch([jobs[k] for k in ks])  # type: ignore[attr-defined]
        for k, result in zip(ks, results, strict=True):
            out[k] = result
    return out  # type: ignore[return-value]  # every slot is filled above


def grade(strength: float, warning: float, critical: float) -> Severity:
    """Grade a distance-like statistic (bigger is worse) against two thresholds.

    Shared by every distance detector so "warning below critical" means the same
    thing everywhere. NaN grades as "ok": an undefined distance must not page.

    >>> grade(0.12, 0.1, 0.25), grade(0.3, 0.1, 0.25), grade(0.05, 0.1, 0.25)
    ('warning', 'critical', 'ok')
    """
    if strength >= critical:
        return "critical"
    if strength >= warning:
        return "warning"
    return "ok"


def grade_p_value(p_value: float, alpha: float) -> Severity:
    """Grade a hypothesis test: "warning" if ``p < alpha``, "critical" if ``p < alpha / 10``.

    One decade below the significance level is where a test result stops being
    borderline; :class:`monitor.drift.DriftTracker` re-grades corrected p-values
    with this same function, so the rule lives in one place.

    >>> grade_p_value(0.03, 0.05), grade_p_value(0.001, 0.05), grade_p_value(0.2, 0.05)
    ('warning', 'critical', 'ok')
    """
    if p_value < alpha / 10.0:
        return "critical"
    if p_value < alpha:
        return "warning"
    return "ok"


def as_numeric(values: np.ndarray, what: str = "values") -> np.ndarray:
    """Return ``values`` as a 1-D float64 array of finite values, or raise DetectorError.

    Detectors check their inputs once at the boundary so that a malformed window
    fails loudly with our error instead of producing a NaN statistic.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DetectorError(f"{what} must be a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DetectorError(f"{what} must be finite; remove missing values before the detector")
    return arr


def as_counts(values: np.ndarray, what: str = "counts") -> np.ndarray:
    """Return ``values`` as a 1-D int64 count vector (non-negative), or raise DetectorError."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DetectorError(f"{what} must be a 1-D count vector, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DetectorError(f"{what} must hold whole counts")
    elif arr.dtype.kind not in "iub":
        raise DetectorError(f"{what} must be an integer count vector, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise DetectorError(f"{what} must be non-negative")
    return arr


def check_kind(kind: str, supported: frozenset[str], detector: str) -> None:
    """Raise DetectorError unless ``kind`` is a column kind ``detector`` supports."""
    if kind not in supported:
        raise DetectorError(f"{detector}: kind must be one of {sorted(supported)}, got {kind!r}")


def not_fitted(detector: str) -> DetectorError:
    """The error for evaluating before :meth:`Detector.fit`: a lifecycle mistake by the caller."""
    return DetectorError(f"{detector}: call fit(reference) before evaluate()")
