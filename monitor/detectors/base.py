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

Detectors are pure (no I/O, no clock, no global state), deterministic given
their constructor arguments (seeds included), and picklable: the state store
serialises them with the rest of a model's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

ColumnKind = Literal["numeric", "categorical"]
Severity = Literal["ok", "warning", "critical"]

SEVERITY_RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


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
