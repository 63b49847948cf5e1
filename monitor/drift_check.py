"""The Python API: run the service's drift detectors on two datasets, in a notebook or a job.

:class:`DriftCheck` compares a *current* dataset with a *reference* one with
exactly the service's engine: the reference is profiled by
:func:`monitor.reference.build_profile` (or read by
:func:`monitor.reference.load_reference` from a file or a saved profile), and
the current rows go through one :class:`~monitor.model_monitor.ModelMonitor`
as one window, so detectors, defaults, bins, thresholds and the p-value
correction are the service's. One difference, on purpose: a single comparison
has no "consecutive evaluations", so ``drift.persistence`` is 1 (a feature
drifts when some detector flags it after correction). And the report shows no
data-quality breach, so a drift that a breach explains stays drift here (the service
folds it into the breach, :mod:`monitor.explain`): a new category still fails the gate.

Accepted data, on either side: a path (CSV, JSONL, Parquet; the reference may
also be a profile JSON), a :class:`~monitor.reference.ReferenceProfile` (reference
only), a pandas or polars DataFrame (duck-typed: neither is imported here), a
numpy 2-D or structured array, or an iterable of dicts (flat rows, or events
with ``features`` and ``prediction``). A column named ``prediction`` is the
prediction; ``event_id``, ``timestamp``, ``model``, ``model_version`` and
``label`` are not features.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = [{"income": float(v), "plan": "a" if v > 0 else "b"} for v in rng.normal(0, 1, 2000)]
>>> cur = [{"income": float(v), "plan": "a" if v > 0 else "b"} for v in rng.normal(1, 1, 500)]
>>> result = DriftCheck(model="credit-risk").run(ref, cur)
>>> result.drifting
['income', 'plan']
>>> result.to_dict()["columns"][0]["name"], result.worst_severity
('income', 'critical')
>>> DriftCheck().run(ref, ref[:500]).drifting
[]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from monitor.errors import ConfigError, MonitorError, ReferenceError_

if TYPE_CHECKING:
    from monitor.config import LimitsConfig, ResolvedModel
    from monitor.model_monitor import Evaluation, ModelMonitor
    from monitor.reference import ReferenceProfile

Row = tuple[dict[str, Any], Any]
FailOn = Literal["drift", "warning"]


def to_rows(data: Any, *, model: str | None = None) -> list[Row]:
    """``(features, prediction)`` rows from any accepted input (see the module docstring).

    >>> to_rows([{"x": 1.0, "prediction": 0.3, "label": 1}])
    [({'x': 1.0}, 0.3)]
    >>> to_rows([{"features": {"x": 2}, "prediction": "yes", "model": "m"}])
    [({'x': 2}, 'yes')]
    """
    from monitor.reference import META_COLUMNS, iter_rows

    if isinstance(data, str | Path):
        return list(iter_rows(data, "auto", model))
    records: Iterable[Any]
    if hasattr(data, "to_dicts") and hasattr(data, "columns"):  # polars
        records = data.to_dicts()
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas
        records = data.to_dict(orient="records")
    elif hasattr(data, "dtype") and hasattr(data, "ndim"):  # numpy
        names = data.dtype.names
        if names:
            records = [dict(zip(names, row, strict=True)) for row in data.tolist()]
        elif data.ndim == 2:
            cols = [f"f{i}" for i in range(data.shape[1])]
            records = [dict(zip(cols, row, strict=True)) for row in data.tolist()]
        else:
            raise MonitorError("a numpy array must be 2-D (rows x columns) or structured")
    elif isinstance(data, Iterable) and not isinstance(data, Mapping | bytes):
        records = data
    else:
        raise MonitorError(f"cannot read rows from {type(data).__name__}")
    rows: list[Row] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise MonitorError(f"row {i}: expected a mapping, got {type(rec).__name__}")
        if isinstance(rec.get("features"), Mapping):
            if model is not None and rec.get("model") not in (None, model):
                continue
            rows.append((dict(rec["features"]), rec.get("prediction")))
        else:
            feats = {str(k): v for k, v in rec.items() if k not in META_COLUMNS}
            rows.append((feats, rec.get("prediction")))
    return rows


class DriftResult:
    """The outcome of :meth:`DriftCheck.run`: verdicts, numbers and the views of the report."""

    def __init__(self, monitor: ModelMonitor, evaluation: Evaluation, seconds: float) -> None:
        self.monitor = monitor
        self.evaluation = evaluation
        self.seconds = seconds

    @property
    def drifting(self) -> list[str]:
        """Columns that drifted, most severe first (then by name)."""
        return [c["name"] for c in self._columns() if c["drifting"]]

    @property
    def warnings(self) -> list[str]:
        """Columns some detector flagged at warning level or above."""
        return [c["name"] for c in self._columns() if c["raw_drifted"]]

    @property
    def worst_severity(self) -> str:
        """``ok``, ``warning`` or ``critical``: the worst verdict of any column."""
        sev = {v.severity for v in self.evaluation.verdicts.values() if v.drifting}
        return "critical" if "critical" in sev else "warning" if sev else "ok"

    def failed(self, fail_on: FailOn) -> bool:
        """For CI gates: ``drift``: some column drifts critically; ``warning``: any column
        drifts (warning or critical)."""
        if fail_on == "warning":
            return bool(self.drifting)
        return self.worst_severity == "critical"

    def _columns(self) -> list[dict[str, Any]]:
        from monitor.ui.views import column_rows

        return column_rows(self.monitor)

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-safe data: the model view plus each column's distributions."""
        from monitor.ui.views import feature_view, model_view

        view = model_view(self.monitor)
        view["features"] = [feature_view(self.monitor, c["name"]) for c in view["columns"]]
        view["seconds"] = self.seconds
        view["worst_severity"] = self.worst_severity
        return view

    def to_html(self, path: str | Path | None = None, *, title: str | None = None) -> str:
        """One self-contained HTML report (no network needed to open it); written to
        ``path`` when given. Returns the HTML."""
        from monitor.report import render_html

        html = render_html(self.to_dict(), title=title)
        if path is not None:
            # Encoded before the file is opened: a failure leaves no truncated file behind.
            Path(path).write_bytes(html.encode("utf-8"))
        return html


class DriftCheck:
    """Compare a current dataset with a reference, with the settings of one model."""

    def __init__(
        self,
        settings: ResolvedModel | None = None,
        limits: LimitsConfig | None = None,
        *,
        model: str = "model",
    ) -> None:
        from pydantic import ValidationError

        from monitor.config import LimitsConfig, ModelConfig, ModelDefaults, resolve_model

        if settings is None:
            try:
                named = ModelConfig(name=model)
            except ValidationError as exc:
                # pydantic's error (a traceback from `monitor report --model`) translated
                # here; the name itself is not repeated (it may not even be printable).
                raise ConfigError(
                    [f"model: {e['msg']}" for e in exc.errors(include_input=False)]
                ) from None
            settings = resolve_model(named, ModelDefaults())
        self.settings = settings
        self.limits = limits or LimitsConfig()

    @classmethod
    def from_config(cls, config: str | Path | Any, model: str | None = None) -> DriftCheck:
        """The settings of ``model`` in a config file (or a parsed
        :class:`~monitor.config.MonitorConfig`); with one model listed, ``model`` may be omitted."""
        from monitor.config import MonitorConfig, load_config

        cfg = config if isinstance(config, MonitorConfig) else load_config(config)
        names = [m.name for m in cfg.models]
        if model is None:
            if len(names) != 1:
                raise ConfigError([f"models: name one of {names} (model=...)"])
            model = names[0]
        settings = cfg.model(model)
        if settings is None:
            raise ConfigError([f"models: no model {model!r} (configured: {names})"])
        return cls(settings, cfg.limits)

    def reference_profile(self, reference: Any) -> ReferenceProfile:
        """A reference profile from a path, a profile, or rows (as the service builds one)."""
        from monitor.reference import ReferenceProfile, build_profile, load_reference

        s = self.settings
        if isinstance(reference, ReferenceProfile):
            return reference
        if isinstance(reference, str | Path):
            return load_reference(
                reference,
                model=s.name,
                schema=s.features,
                prediction=s.prediction,
                max_sample=s.reference.max_sample,
                max_categories=self.limits.max_categories_per_feature,
                max_category_chars=self.limits.max_category_chars,
            )
        return build_profile(
            s.name,
            to_rows(reference, model=s.name),
            schema=s.features,
            prediction=s.prediction,
            max_sample=s.reference.max_sample,
            max_categories=self.limits.max_categories_per_feature,
            max_category_chars=self.limits.max_category_chars,
            source=type(reference).__name__,
        )

    def run(self, reference: Any, current: Any) -> DriftResult:
        """Profile ``reference``, evaluate ``current`` as one window, return the result."""
        from monitor.events import ModelEvents
        from monitor.model_monitor import ModelMonitor

        t0 = time.perf_counter()
        profile = self.reference_profile(reference)
        rows = to_rows(current, model=self.settings.name)
        if not rows:
            raise ReferenceError_("the current data has no rows")
        n = len(rows)
        s = self.settings
        settings = s.model_copy(
            update={
                "window": s.window.model_copy(
                    update={
                        "type": "count",
                        "size": n,
                        "step": n,
                        "seconds": None,
                        "step_seconds": None,
                    }
                ),
                "drift": s.drift.model_copy(update={"persistence": 1}),
                "reference": s.reference.model_copy(
                    update={"mode": "fixed", "versions": {}, "learn_first": None}
                ),
            }
        )
        mm = ModelMonitor(settings, self.limits, profile, explain=False)
        events = ModelEvents(
            model=s.name,
            event_ids=[str(i) for i in range(n)],
            timestamps=[float(i) for i in range(n)],
            versions=[None] * n,
            features=[f for f, _ in rows],
            predictions=[p for _, p in rows],
        )
        evaluations = mm.ingest(events, now=float(n))
        if not evaluations:  # cannot happen: one window of exactly n events
            raise MonitorError("no evaluation")
        return DriftResult(mm, evaluations[-1], time.perf_counter() - t0)


__all__ = ["DriftCheck", "DriftResult", "to_rows"]
