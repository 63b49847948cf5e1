"""A bounded, in-memory history of drift scores: the last N evaluations of every column.

The web UI draws a sparkline per column and a history chart per feature from
it. It is a small structure of its own that exchanges plain lists with the model
state's checkpoint (:meth:`DriftHistory.export_model`,
:meth:`DriftHistory.restore_model`; ``ModelState.history``), so a model's history
follows its state across restarts and rebalances, and never needs a pickle.

Memory is bounded twice: ``size`` points per column, and ``max_columns`` columns
per model (the configured feature cap already bounds columns; this guards
models learnt from the stream). Pure: no clock, no I/O.

>>> h = DriftHistory(size=2)
>>> for seq in (1, 2, 3):
...     h.record_point("m", "age", HistoryPoint(seq, 10.0 * seq, "psi", 0.1 * seq, "ok", False))
>>> [p.seq for p in h.points("m", "age")]
[2, 3]
>>> DriftHistory.from_state(h.to_state()).to_state() == h.to_state()
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.errors import StateError

if TYPE_CHECKING:
    from monitor.model_monitor import Evaluation

STATE_VERSION = 1
DEFAULT_SIZE = 100


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One column's headline result at one evaluation.

    ``score`` is the headline detector's statistic (the one the alert shows);
    ``strength`` puts detectors on one scale for the sparkline: statistic over
    threshold, or threshold over p-value for tests (> 1 means past the threshold).
    """

    seq: int
    at: float
    detector: str | None
    score: float | None
    severity: str
    drifting: bool
    strength: float | None = None

    def to_list(self) -> list[Any]:
        return [
            self.seq,
            self.at,
            self.detector,
            self.score,
            self.severity,
            self.drifting,
            self.strength,
        ]

    @classmethod
    def from_list(cls, row: list[Any]) -> HistoryPoint:
        seq, at, det, score, sev, drifting, strength = row
        return cls(
            int(seq),
            float(at),
            None if det is None else str(det),
            _opt_float(score),
            str(sev),
            bool(drifting),
            _opt_float(strength),
        )


def _opt_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def strength_of(
    statistic: float | None, p_value: float | None, threshold: float | None
) -> float | None:
    """How far past its threshold a result is (1 = at it), as :mod:`monitor.drift` ranks them."""
    if threshold is None:
        return None
    if p_value is not None:
        if p_value <= 0:
            return 1e6
        return _opt_float(threshold / p_value)
    if statistic is None:
        return None
    return _opt_float(statistic / threshold if threshold > 0 else statistic)


class DriftHistory:
    """Last ``size`` :class:`HistoryPoint` per (model, column)."""

    def __init__(self, size: int = DEFAULT_SIZE, max_columns: int = 1000) -> None:
        if size < 1:
            raise ValueError(f"history size must be >= 1, got {size}")
        self.size = size
        self.max_columns = max_columns
        self._series: dict[str, dict[str, deque[HistoryPoint]]] = {}

    def record(self, evaluation: Evaluation) -> None:
        """Append one evaluation's headline result of every column it judged."""
        ctx = evaluation.context
        for name, v in evaluation.verdicts.items():
            head = None
            if v.detector is not None:
                head = next((r for r in v.results if r.detector == v.detector), None)
            self.record_point(
                ctx.model,
                name,
                HistoryPoint(
                    seq=ctx.evaluation_seq,
                    at=ctx.evaluated_at,
                    detector=v.detector,
                    score=_opt_float(v.statistic),
                    severity=v.severity,
                    drifting=v.drifting,
                    strength=strength_of(v.statistic, head.p_value if head else None, v.threshold),
                ),
            )

    def record_point(self, model: str, column: str, point: HistoryPoint) -> None:
        cols = self._series.setdefault(model, {})
        series = cols.get(column)
        if series is None:
            if len(cols) >= self.max_columns:
                return
            series = cols[column] = deque(maxlen=self.size)
        series.append(point)

    def points(self, model: str, column: str) -> list[HistoryPoint]:
        return list(self._series.get(model, {}).get(column, ()))

    def columns(self, model: str) -> list[str]:
        return list(self._series.get(model, {}))

    def forget(self, model: str) -> None:
        """Drop a model's history (it left this instance, or was disabled)."""
        self._series.pop(model, None)

    def export_model(self, model: str) -> dict[str, list[Any]]:
        """One model's series as plain rows (column -> rows), for its checkpoint."""
        return {c: [p.to_list() for p in s] for c, s in self._series.get(model, {}).items()}

    def restore_model(self, model: str, columns: dict[str, list[Any]]) -> None:
        """Replace ``model``'s series by rows of :meth:`export_model`; the configured size
        keeps the newest. :class:`~monitor.errors.StateError` on damaged rows (nothing
        of the model's history is kept then).

        >>> h = DriftHistory(size=2)
        >>> h.restore_model("m", {"age": [[1, 1.0, "ks", 0.2, "ok", False, 0.5]] * 3})
        >>> len(h.points("m", "age"))
        2
        """
        self.forget(model)
        try:
            for column, rows in columns.items():
                for row in rows:
                    self.record_point(model, str(column), HistoryPoint.from_list(row))
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            self.forget(model)
            raise StateError(f"damaged drift history of model {model!r}: {exc}") from exc

    def to_state(self) -> dict[str, Any]:
        """Plain lists and dicts (JSON-safe), for a checkpoint."""
        return {
            "version": STATE_VERSION,
            "size": self.size,
            "models": {
                m: {c: [p.to_list() for p in s] for c, s in cols.items()}
                for m, cols in self._series.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], size: int | None = None) -> DriftHistory:
        """Rebuild from :meth:`to_state`; ``size`` (the configured one) wins over the saved one."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise StateError(f"drift history state version {state.get('version')!r}")
        out = cls(size or int(state["size"]))
        try:
            for model, cols in state["models"].items():
                for column, rows in cols.items():
                    for row in rows:
                        out.record_point(str(model), str(column), HistoryPoint.from_list(row))
        except (TypeError, ValueError, KeyError) as exc:
            raise StateError(f"damaged drift history state: {exc}") from exc
        return out
