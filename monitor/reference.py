"""Reference profiles: what "normal" looks like for a model, compact and reusable.

A profile is built once from training or validation data (``monitor reference
build``), from a JSONL/CSV file named in the config, or from the first N events a
model sends. Per numeric feature it keeps a bounded *sorted* sample (evenly
spaced order statistics, so KS and quantile bins need no re-sorting and a
100-million-row reference still fits), summary statistics and quantiles; per
categorical feature, the category counts. The prediction is profiled as the
column ``__prediction__``. A fingerprint (SHA-256 of the content) identifies the
data a profile came from.

Values are normalised the same way here and in the pipeline
(:func:`category_of`): categories are strings; ``true``/``false`` for booleans.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from monitor.errors import ReferenceError_
from monitor.summary import QUANTILES

PREDICTION = "__prediction__"
FORMAT_VERSION = 1
ColumnType = Literal["numeric", "categorical"]


def category_of(value: Any) -> str | None:
    """The category string of a raw value, or None if it cannot be a category (dict, list)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return None


def prediction_value(value: Any) -> Any:
    """The scalar monitored for a prediction: the score, the class, or a score map's top class."""
    if isinstance(value, dict):
        return max(value.items(), key=lambda kv: kv[1])[0] if value else None
    return value


@dataclass
class FeatureProfile:
    """The reference of one column."""

    name: str
    kind: ColumnType
    count: int  # present values
    missing_rate: float
    sample: np.ndarray | None = None  # numeric: sorted, bounded
    mean: float = math.nan
    std: float = math.nan
    min: float = math.nan
    max: float = math.nan
    quantiles: dict[float, float] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)  # categorical: code order
    counts: np.ndarray | None = None  # categorical: counts per category

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "missing_rate": self.missing_rate,
        }
        if self.kind == "numeric":
            assert self.sample is not None
            d.update(
                mean=self.mean,
                std=self.std,
                min=self.min,
                max=self.max,
                quantiles={str(q): v for q, v in self.quantiles.items()},
                sample=self.sample.tolist(),
            )
        else:
            assert self.counts is not None
            d.update(categories=self.categories, counts=self.counts.tolist())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureProfile:
        if d["kind"] == "numeric":
            return cls(
                name=d["name"],
                kind="numeric",
                count=int(d["count"]),
                missing_rate=float(d["missing_rate"]),
                sample=np.asarray(d["sample"], dtype=np.float64),
                mean=float(d["mean"]),
                std=float(d["std"]),
                min=float(d["min"]),
                max=float(d["max"]),
                quantiles={float(q): float(v) for q, v in d["quantiles"].items()},
            )
        return cls(
            name=d["name"],
            kind="categorical",
            count=int(d["count"]),
            missing_rate=float(d["missing_rate"]),
            categories=[str(c) for c in d["categories"]],
            counts=np.asarray(d["counts"], dtype=np.int64),
        )


@dataclass
class ReferenceProfile:
    """A model's reference: one :class:`FeatureProfile` per column."""

    model: str
    features: dict[str, FeatureProfile]
    rows: int
    fingerprint: str
    model_version: str | None = None
    created_at: float = 0.0
    source: str = ""

    def schema(self) -> dict[str, ColumnType]:
        return {n: f.kind for n, f in self.features.items() if n != PREDICTION}

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": "monitor-reference-profile",
                "format_version": FORMAT_VERSION,
                "model": self.model,
                "model_version": self.model_version,
                "rows": self.rows,
                "fingerprint": self.fingerprint,
                "created_at": self.created_at,
                "source": self.source,
                "features": [f.to_dict() for f in self.features.values()],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise ReferenceError_(f"profile is not JSON: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != "monitor-reference-profile":
            raise ReferenceError_("not a reference profile (missing format marker)")
        if d.get("format_version") != FORMAT_VERSION:
            raise ReferenceError_(
                f"profile format_version {d.get('format_version')!r} is not supported "
                f"(expected {FORMAT_VERSION}); rebuild it with `monitor reference build`"
            )
        feats = [FeatureProfile.from_dict(f) for f in d["features"]]
        return cls(
            model=d["model"],
            model_version=d.get("model_version"),
            features={f.name: f for f in feats},
            rows=int(d["rows"]),
            fingerprint=d["fingerprint"],
            created_at=float(d.get("created_at", 0.0)),
            source=d.get("source", ""),
        )

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(p)


def _bounded_sorted_sample(values: np.ndarray, max_sample: int) -> np.ndarray:
    ordered = np.sort(values)
    if ordered.size <= max_sample:
        return ordered
    idx = np.round(np.linspace(0, ordered.size - 1, max_sample)).astype(np.int64)
    return ordered[idx]


def profile_numeric(name: str, values: np.ndarray, n_rows: int, max_sample: int) -> FeatureProfile:
    """Profile one numeric column; ``values`` holds the present (finite) values."""
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n == 0:
        raise ReferenceError_(f"feature {name!r}: no numeric values in the reference")
    sample = _bounded_sorted_sample(values, max_sample)
    return FeatureProfile(
        name=name,
        kind="numeric",
        count=n,
        missing_rate=1.0 - n / n_rows if n_rows else 0.0,
        sample=sample,
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        quantiles={q: float(np.quantile(values, q)) for q in QUANTILES},
    )


def profile_categorical(
    name: str, values: list[str], n_rows: int, max_categories: int
) -> FeatureProfile:
    """Profile one categorical column; rarest categories beyond the cap pool into __other__."""
    uniq, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    order = np.lexsort((uniq, -counts))  # most frequent first, ties by name: deterministic codes
    cats = [str(c) for c in uniq[order]]
    cnts = counts[order].astype(np.int64)
    if len(cats) > max_categories:
        keep = max_categories - 1
        cats = [*cats[:keep], "__other__"]
        cnts = np.concatenate([cnts[:keep], [cnts[keep:].sum()]])
    n = len(values)
    if n == 0:
        raise ReferenceError_(f"feature {name!r}: no values in the reference")
    return FeatureProfile(
        name=name,
        kind="categorical",
        count=n,
        missing_rate=1.0 - n / n_rows if n_rows else 0.0,
        categories=cats,
        counts=cnts,
    )


def infer_schema(rows: list[tuple[dict[str, Any], Any]]) -> dict[str, ColumnType]:
    """Numeric when every present value is a number (booleans are categories), else categorical."""
    kinds: dict[str, ColumnType] = {}
    for feats, _ in rows:
        for k, v in feats.items():
            if v is None:
                continue
            is_num = isinstance(v, int | float) and not isinstance(v, bool)
            if k not in kinds:
                kinds[k] = "numeric" if is_num else "categorical"
            elif kinds[k] == "numeric" and not is_num:
                kinds[k] = "categorical"
    return kinds


def build_profile(
    model: str,
    rows: list[tuple[dict[str, Any], Any]],
    *,
    schema: dict[str, ColumnType] | None = None,
    prediction: Literal["auto", "numeric", "categorical", "none"] = "auto",
    max_sample: int = 10_000,
    max_categories: int = 200,
    model_version: str | None = None,
    source: str = "",
) -> ReferenceProfile:
    """Build a profile from ``(features, prediction)`` rows."""
    if not rows:
        raise ReferenceError_(f"model {model!r}: the reference has no rows")
    schema = schema or infer_schema(rows)
    n_rows = len(rows)
    features: dict[str, FeatureProfile] = {}
    digest = hashlib.sha256()
    for name, kind in schema.items():
        raw = [feats.get(name) for feats, _ in rows]
        if kind == "numeric":
            vals = np.array(
                [
                    v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
                    for v in raw
                ],
                dtype=np.float64,
            )
            prof = profile_numeric(name, vals, n_rows, max_sample)
            digest.update(name.encode() + prof.sample.tobytes())  # type: ignore[union-attr]
        else:
            cats = [c for c in (category_of(v) for v in raw if v is not None) if c is not None]
            prof = profile_categorical(name, cats, n_rows, max_categories)
            digest.update(
                name.encode() + json.dumps([prof.categories, prof.counts.tolist()]).encode()
            )  # type: ignore[union-attr]
        features[name] = prof
    preds = [prediction_value(p) for _, p in rows if p is not None]
    if prediction != "none" and preds:
        kind = prediction
        if kind == "auto":
            kind = (
                "numeric"
                if all(isinstance(p, int | float) and not isinstance(p, bool) for p in preds)
                else "categorical"
            )
        if kind == "numeric":
            arr = np.array([p for p in preds if isinstance(p, int | float)], dtype=np.float64)
            features[PREDICTION] = profile_numeric(PREDICTION, arr, n_rows, max_sample)
        else:
            cats = [c for c in (category_of(p) for p in preds) if c is not None]
            features[PREDICTION] = profile_categorical(PREDICTION, cats, n_rows, max_categories)
    return ReferenceProfile(
        model=model,
        features=features,
        rows=n_rows,
        fingerprint=digest.hexdigest()[:32],
        model_version=model_version,
        created_at=time.time(),
        source=source,
    )


def _number_or_text(text: str) -> Any:
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        return text
    return v if math.isfinite(v) else None


def iter_rows(
    path: str | Path, fmt: str = "auto", model: str | None = None
) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yield ``(features, prediction)`` from JSONL (event-shaped or flat), CSV, or Parquet.

    Event-shaped JSONL lines of other models are skipped when ``model`` is given.
    Flat rows take every column but ``prediction``/``event_id``/``timestamp``/``model``
    as a feature.
    """
    p = Path(path)
    if fmt == "auto":
        fmt = {
            ".jsonl": "jsonl",
            ".ndjson": "jsonl",
            ".json": "jsonl",
            ".csv": "csv",
            ".parquet": "parquet",
        }.get(p.suffix.lower(), "")
        if not fmt:
            raise ReferenceError_(
                f"{p}: cannot tell the format from the extension; set reference.format"
            )
    if not p.exists():
        raise ReferenceError_(f"{p}: file not found")
    meta = {"prediction", "event_id", "timestamp", "model", "model_version", "label"}
    if fmt == "jsonl":
        with p.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise ReferenceError_(f"{p}:{lineno}: not JSON: {exc}") from exc
                if not isinstance(obj, dict):
                    raise ReferenceError_(f"{p}:{lineno}: expected a JSON object")
                if isinstance(obj.get("features"), dict):
                    if model is not None and obj.get("model") not in (None, model):
                        continue
                    yield obj["features"], obj.get("prediction")
                else:
                    yield {k: v for k, v in obj.items() if k not in meta}, obj.get("prediction")
    elif fmt == "csv":
        with p.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                vals = {k: _number_or_text(v) for k, v in row.items() if k is not None}
                pred = vals.pop("prediction", None)
                yield {k: v for k, v in vals.items() if k not in meta}, pred
    elif fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ReferenceError_("reading Parquet needs pyarrow: pip install pyarrow") from exc
        for row in pq.read_table(p).to_pylist():
            pred = row.pop("prediction", None)
            yield {k: v for k, v in row.items() if k not in meta}, pred
    else:
        raise ReferenceError_(f"{p}: unsupported reference format {fmt!r}")


def load_reference(
    path: str | Path,
    *,
    model: str,
    fmt: str = "auto",
    schema: dict[str, ColumnType] | None = None,
    prediction: Literal["auto", "numeric", "categorical", "none"] = "auto",
    max_sample: int = 10_000,
    max_categories: int = 200,
) -> ReferenceProfile:
    """Load a saved profile, or build one from a data file."""
    p = Path(path)
    if fmt == "profile" or (fmt == "auto" and p.name.endswith(".profile.json")):
        try:
            return ReferenceProfile.from_json(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ReferenceError_(f"{p}: cannot read: {exc.strerror}") from exc
    rows = list(iter_rows(p, fmt, model))
    return build_profile(
        model,
        rows,
        schema=schema,
        prediction=prediction,
        max_sample=max_sample,
        max_categories=max_categories,
        source=str(p),
    )


def rows_from_columns(
    features: Iterable[dict[str, Any]], predictions: Iterable[Any]
) -> list[tuple[dict[str, Any], Any]]:
    return list(zip(features, predictions, strict=True))
