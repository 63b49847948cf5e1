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
(:func:`category_of`): categories are strings; ``true``/``false`` for booleans. A
category longer than ``limits.max_category_chars`` (``max_category_chars`` here) is
missing, as in the pipeline (``too_long``), so a reference never holds one: in a
column, a segment value, or a saved profile loaded back (those are dropped, and
:attr:`ReferenceProfile.too_long` says how many values were, for the load to report).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from monitor.errors import ReferenceError_, ReferenceMismatch
from monitor.signals import (
    MAX_CATEGORY_CHARS,
    MAX_FEATURE_NAME_CHARS,
    PREDICTION,
    RESERVED_COLUMNS,
    SEGMENT_EVENT_FIELDS,
)
from monitor.summary import QUANTILES, finite_moments

FORMAT_VERSION = 1
MAX_JOINT_ROWS = 5_000  # rows of the numeric features kept together (``ReferenceProfile.joint``)
ColumnType = Literal["numeric", "categorical"]

#: Cells that mean "no value" in training data, compared case-insensitively after
#: stripping blanks. In CSV (where a cell has no other way to be missing) they are
#: missing in every column; in JSONL/Parquet they do not make a numeric column
#: categorical (they count as missing there) but stay categories in a categorical one.
MISSING_TOKENS = frozenset({"", "na", "n/a", "null", "nan", "none"})
#: Columns of a flat file (CSV, flat JSONL, Parquet) that are not features.
META_COLUMNS = frozenset({"prediction", "event_id", "timestamp", "model", "model_version", "label"})
_PROFILE_MARKER = re.compile(r'^\s*\{\s*"format"\s*:\s*"monitor-reference-profile"')


def is_missing_token(value: Any) -> bool:
    """Whether a string is one of :data:`MISSING_TOKENS` (any case, surrounding blanks)."""
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def shown(value: Any, limit: int = 40, *, quote: bool = True) -> str:
    """A value from a user's file as it may be printed: escaped (ASCII, no control
    characters, lone surrogates as escapes) and at most about ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:limit]
    out = ascii(cut) if quote else cut.encode("unicode_escape").decode("ascii")
    return out + (f"... ({len(text)} chars)" if len(text) > limit else "")


def category_of(value: Any) -> str | None:
    """The category string of a raw value, or None if it cannot be a category (dict, list)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value.text if type(value) is CsvNumber else repr(value)
    return None


def bounded_categories(values: Iterable[Any], max_chars: int | None) -> tuple[list[str], int]:
    """The category strings of ``values`` (None and what cannot be a category left out),
    and how many were longer than ``max_chars`` (left out too: missing, as the pipeline
    counts them ``too_long``). ``max_chars`` None: no bound.

    >>> bounded_categories(["ab", None, "abcd", 7, [1]], 3)
    (['ab', '7'], 1)
    """
    cats = [c for c in (category_of(v) for v in values if v is not None) if c is not None]
    if max_chars is None:
        return cats, 0
    kept = [c for c in cats if len(c) <= max_chars]
    return kept, len(cats) - len(kept)


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


OTHER = "__other__"
MISSING_SEGMENT = "__missing__"
MAX_VALUE_CHARS = 64
Value = tuple[str | None, ...]


class SegmentSettings(Protocol):
    """What :func:`segment_references` reads of ``monitor.config.SegmentsConfig``."""

    @property
    def top_k(self) -> int: ...
    @property
    def min_reference_rows(self) -> int: ...
    def specs(self) -> list[tuple[str, ...]]: ...


def segment_value_text(value: str | None) -> str:
    """One value from the wire as a label may show it: printable, escaped, bounded."""
    if value is None:
        return MISSING_SEGMENT
    cut = value[: MAX_VALUE_CHARS * 2]
    out = []
    for c in cut:
        o = ord(c)
        if c in "\\,=" or not c.isprintable() or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(c)
    text = "".join(out)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def slice_name(columns: Sequence[str]) -> str:
    """A slice's name: its columns joined by ``,`` (``region,tier``), each bounded."""
    return ",".join(segment_value_text(c) for c in columns)


def segment_label(columns: Sequence[str], values: Value | None) -> str:
    """``region=north,tier=gold``; ``values`` None is the pooled rest (``region=__other__``)."""
    if values is None:
        return ",".join(f"{segment_value_text(c)}={OTHER}" for c in columns)
    return ",".join(
        f"{segment_value_text(c)}={segment_value_text(v)}"
        for c, v in zip(columns, values, strict=True)
    )


def segment_references(
    rows: Sequence[tuple[Mapping[str, Any], Any]],
    config: SegmentSettings,
    build: Callable[[list[tuple[Any, Any]], str], ReferenceProfile],
    *,
    max_category_chars: int | None = MAX_CATEGORY_CHARS,
) -> dict[tuple[str, ...], SegmentReference]:
    """Per declared slice of features: its top-K values by traffic in ``rows`` and the
    reference restricted to each (and to the rest) that has ``min_reference_rows`` rows.

    ``build(rows, source)`` builds a profile (the model's ``build_profile``). Slices on an
    event field (``model_version``) are left out: reference rows do not carry it.
    Ties in traffic go to the smaller value, so the choice is deterministic. A value
    longer than ``max_category_chars`` is missing (``__missing__``), as in the stream.
    """
    out: dict[tuple[str, ...], SegmentReference] = {}
    limit = math.inf if max_category_chars is None else max_category_chars

    def key_of(value: Any) -> str | None:
        cat = category_of(value)
        return cat if cat is not None and len(cat) <= limit else None

    for cols in config.specs():
        if any(c in SEGMENT_EVENT_FIELDS for c in cols):
            continue
        keys: list[Value] = [
            tuple(key_of(f.get(c)) if isinstance(f, Mapping) else None for c in cols)
            for f, _ in rows
        ]
        counts = Counter(keys)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], [v or "" for v in kv[0]]))
        top = [v for v, _ in ranked[: config.top_k]]
        ref = SegmentReference(columns=cols, values=top)
        chosen = set(top)
        groups: dict[Value | None, list[tuple[Any, Any]]] = {}
        for key, row in zip(keys, rows, strict=True):
            groups.setdefault(key if key in chosen else None, []).append(row)
        for value, members in groups.items():
            if len(members) < config.min_reference_rows:
                continue
            try:
                ref.profiles[value] = build(members, segment_label(cols, value))
            except ReferenceError_:  # e.g. no number of a numeric feature in this value
                continue
        out[cols] = ref
    return out


@dataclass
class SegmentReference:
    """What the reference rows say about one declared slice (:mod:`monitor.segments`).

    ``values``: the slice's top-K values by reference traffic, each a tuple with one
    category per column (None = missing), most frequent first. ``profiles``: the
    reference restricted to a value (key: its tuple, or ``None`` for the pooled rest),
    for those with enough rows; the others are compared with the whole reference.
    """

    columns: tuple[str, ...]
    values: list[tuple[str | None, ...]]
    profiles: dict[tuple[str | None, ...] | None, ReferenceProfile] = field(default_factory=dict)


class JointCodes:
    """The joint rows (:attr:`ReferenceProfile.joint`) held as small integers per column,
    where they read back bit for bit; other columns stay float64.

    - **Sample index** (``uint16``; ``uint32`` above 65,532 values): a reference of up to
      ``max_sample`` values per column (the default: 10,000 rows, 10,000 values) keeps
      every value in the column's sorted sample, so each joint value is one of them: a
      quarter of the bytes. The sample arrays are the feature profiles' own (no copy).
    - **Decimal** (``int32``): otherwise, a column whose values have at most 6 decimals
      (as values read from JSON or CSV written with few decimals do) is held as
      ``value * 10**d``: ``k / 10**d`` is correctly rounded, so it is the very double the
      decimal text parsed to. Half the bytes.

    NaN, +inf and -inf (never in a sample) get their own codes. Each column's codes are
    decoded once when coded and compared byte for byte with the rows: anything that would
    not come back the same (a ``-0.0`` held as ``0.0``, a value the sample lacks, more
    decimals) stays float64.
    """

    __slots__ = ("columns", "rows")

    def __init__(
        self, columns: list[tuple[np.ndarray, np.ndarray | float | None]], rows: int
    ) -> None:
        # Per column: (codes, the sample they index), (codes, 10**d) or (float64 values, None).
        self.columns = columns
        self.rows = rows

    @classmethod
    def of(
        cls, joint: np.ndarray, columns: Sequence[str], features: Mapping[str, FeatureProfile]
    ) -> JointCodes | None:
        """The coded form of ``joint``, or None when no column codes exactly (keep it as is)."""
        if joint.ndim != 2 or joint.dtype != np.float64 or joint.shape[1] != len(columns):
            return None
        out: list[tuple[np.ndarray, np.ndarray | float | None]] = []
        for j, name in enumerate(columns):
            col = np.ascontiguousarray(joint[:, j])
            prof = features.get(name)
            sample = prof.sample if prof is not None else None
            coded = None if sample is None else _sample_codes(col, sample)
            if coded is not None:
                out.append((coded, sample))
                continue
            decimal = _decimal_codes(col)
            out.append((col, None) if decimal is None else decimal)
        if all(key is None for _, key in out):
            return None
        return cls(out, joint.shape[0])

    def decode(self) -> np.ndarray:
        """The float64 rows, bit for bit as they were coded."""
        out = np.empty((self.rows, len(self.columns)), dtype=np.float64)
        for j, (codes, key) in enumerate(self.columns):
            out[:, j] = _decoded(codes, key)
        return out

    @property
    def nbytes(self) -> int:
        return sum(codes.nbytes for codes, _ in self.columns)


_SPECIALS = np.array([np.nan, np.inf, -np.inf])
_INT32_SPECIALS = np.iinfo(np.int32).min + np.arange(3)  # NaN, +inf, -inf as decimal codes
_MAX_DECIMALS = 6


def _decoded(codes: np.ndarray, key: np.ndarray | float | None) -> np.ndarray:
    """One column's float64 values from its codes (see :class:`JointCodes`)."""
    if key is None:
        return codes
    if isinstance(key, np.ndarray):
        return np.concatenate([key, _SPECIALS])[codes]
    out = codes / key
    for code, special in zip(_INT32_SPECIALS, _SPECIALS, strict=True):
        out[codes == code] = special
    return out


def _sample_codes(col: np.ndarray, sample: np.ndarray) -> np.ndarray | None:
    """Each value's index in ``sample`` (sorted, finite) or its special code, if every
    value comes back bit for bit; else None."""
    n = len(sample)
    if sample.dtype != np.float64 or sample.ndim != 1 or n == 0 or n + 3 > 2**32 - 1:
        return None
    idx = np.searchsorted(sample, col).clip(0, n - 1)
    codes = np.where(np.isnan(col), n, np.where(col == np.inf, n + 1, idx))
    codes = np.where(col == -np.inf, n + 2, codes)
    codes = codes.astype(np.uint16 if n + 3 <= np.iinfo(np.uint16).max else np.uint32)
    return codes if _decoded(codes, sample).tobytes() == col.tobytes() else None


def _decimal_codes(col: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(col * 10**d as int32, 10**d)`` for the fewest decimals d that read back bit for
    bit (specials coded apart), or None."""
    finite = np.isfinite(col)
    values = col[finite]
    for d in range(_MAX_DECIMALS + 1):
        scale = 10.0**d
        k = np.round(values * scale)
        if k.size and np.abs(k).max() > np.iinfo(np.int32).max - 3:  # clear of the specials
            return None  # more decimals only make the integers larger
        codes = np.where(np.isnan(col), _INT32_SPECIALS[0], _INT32_SPECIALS[1]).astype(np.int32)
        codes[col == -np.inf] = _INT32_SPECIALS[2]
        codes[finite] = k.astype(np.int32)
        if _decoded(codes, scale).tobytes() == col.tobytes():
            return codes, scale
    return None


class _JointField:
    """:attr:`ReferenceProfile.joint`: a float64 matrix to every reader, held coded
    (:class:`JointCodes`) once the profile is built. A dataclass field whose default is
    this descriptor: ``__init__`` and assignments go through ``__set__``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_store"

    def __get__(self, obj: Any, objtype: type | None = None) -> np.ndarray | None:
        if obj is None:
            return None  # the field's default
        store = obj.__dict__.get(self._slot)
        return store.decode() if isinstance(store, JointCodes) else store

    def __set__(self, obj: Any, value: np.ndarray | JointCodes | None) -> None:
        obj.__dict__[self._slot] = value


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
    #: Rows of the numeric features together (NaN = missing), an evenly spaced subsample
    #: in file order, for multivariate drift (:mod:`monitor.multivariate`): the per-column
    #: samples above are sorted, so they lose which values came together. Optional: a
    #: profile without it learns the joint reference from the first full window.
    #: Held coded (:class:`JointCodes`) where that is exact; read, it is float64 rows.
    joint: np.ndarray | None = _JointField()  # type: ignore[assignment]
    joint_columns: list[str] = field(default_factory=list)
    #: Per declared slice, the reference of its values (built from rows, when the
    #: reference had rows: learned, or a data file; a saved profile has none).
    segments: dict[tuple[str, ...], SegmentReference] = field(default_factory=dict)
    #: Per column, the values left out as longer than ``max_category_chars`` (counted as
    #: missing) when this profile was built or loaded: for the load to report. Not saved.
    too_long: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compact_joint()

    def compact_joint(self) -> None:
        """Hold the joint rows coded against the samples (:class:`JointCodes`) if exact."""
        store = self.__dict__.get("_joint_store")
        if isinstance(store, np.ndarray):
            coded = JointCodes.of(store, self.joint_columns, self.features)
            if coded is not None:
                self.__dict__["_joint_store"] = coded

    def schema(self) -> dict[str, ColumnType]:
        return {n: f.kind for n, f in self.features.items() if n != PREDICTION}

    def too_long_note(self, max_chars: int = MAX_CATEGORY_CHARS) -> str | None:
        """What :attr:`too_long` says, for a log line or a command's output (None: nothing
        was left out). Column names are escaped and bounded: they may come from the file."""
        if not self.too_long:
            return None
        n = sum(self.too_long.values())
        cols = ", ".join(
            f"{shown(c, 40, quote=False)} ({k})" for c, k in list(self.too_long.items())[:10]
        )
        more = f" and {len(self.too_long) - 10} more columns" if len(self.too_long) > 10 else ""
        return (
            f"{n} value{'s' if n != 1 else ''} longer than limits.max_category_chars "
            f"({max_chars}) counted as missing: {cols}{more}"
        )

    def drop_long_categories(self, max_chars: int) -> None:
        """Leave out the categories longer than ``max_chars`` (a saved profile or a
        checkpoint's learned one from a release without the bound, or a file edited by
        hand): their counts become missing values, as the values would be now;
        :attr:`too_long` counts them. A segment value with such a part is left out too.

        Raises :class:`~monitor.errors.ReferenceError_` (the profile unchanged) when a
        column would be left without any value."""
        plan: list[tuple[FeatureProfile, list[int], int]] = []
        for name, f in self.features.items():
            if f.kind != "categorical" or f.counts is None:
                continue
            keep = [i for i, c in enumerate(f.categories) if len(c) <= max_chars or c == OTHER]
            if len(keep) == len(f.categories):
                continue
            dropped = int(f.counts.sum() - f.counts[keep].sum())
            if f.count - dropped <= 0:
                raise ReferenceError_(
                    f"feature {shown(name)}: no values in the reference (every category "
                    f"longer than limits.max_category_chars, {max_chars})"
                )
            plan.append((f, keep, dropped))
        for f, keep, dropped in plan:
            assert f.counts is not None
            f.categories = [f.categories[i] for i in keep]
            f.counts = f.counts[keep]
            f.count -= dropped
            if self.rows:
                f.missing_rate = min(1.0, f.missing_rate + dropped / self.rows)
            self.too_long[f.name] = self.too_long.get(f.name, 0) + dropped
        for ref in self.segments.values():

            def fits(value: Value | None) -> bool:
                return value is None or all(v is None or len(v) <= max_chars for v in value)

            ref.values = [v for v in ref.values if fits(v)]
            profiles = {}
            for value, prof in ref.profiles.items():
                if not fits(value):
                    continue
                try:
                    prof.drop_long_categories(max_chars)
                except ReferenceError_:  # compared with the whole reference instead
                    continue
                profiles[value] = prof
            ref.profiles = profiles

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
                **(
                    {"joint": {"columns": self.joint_columns, "rows": self.joint.tolist()}}
                    if self.joint is not None
                    else {}
                ),
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
        joint, joint_columns = None, []
        if isinstance(d.get("joint"), dict):
            joint_columns = [str(c) for c in d["joint"]["columns"]]
            joint = np.asarray(d["joint"]["rows"], dtype=np.float64)
            if joint.ndim != 2 or joint.shape[1] != len(joint_columns):
                joint, joint_columns = None, []
        return cls(
            joint=joint,
            joint_columns=joint_columns,
            model=d["model"],
            model_version=d.get("model_version"),
            features={f.name: f for f in feats},
            rows=int(d["rows"]),
            fingerprint=d["fingerprint"],
            created_at=float(d.get("created_at", 0.0)),
            source=d.get("source", ""),
        )

    def save(self, path: str | Path) -> None:
        """Write the profile to ``path`` whole or not at all (through ``path.tmp``).

        An ``OSError`` names ``path``, and the temporary file is removed: a path that is a
        folder left ``path.tmp`` behind, and the error blamed that file, not ``path``.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        try:
            tmp.write_text(self.to_json(), encoding="utf-8")
            tmp.replace(p)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(p)) from exc


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
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(values.mean()), float(values.std())
    if not (math.isfinite(mean) and math.isfinite(std)):  # a sum overflowed: the values are finite
        mean, std = finite_moments(values)
    return FeatureProfile(
        name=name,
        kind="numeric",
        count=n,
        missing_rate=1.0 - n / n_rows if n_rows else 0.0,
        sample=sample,
        mean=mean,
        std=std,
        min=float(values.min()),
        max=float(values.max()),
        quantiles={q: float(np.quantile(values, q)) for q in QUANTILES},
    )


def profile_categorical(
    name: str, values: list[str], n_rows: int, max_categories: int
) -> FeatureProfile:
    """Profile one categorical column; rarest categories beyond the cap pool into __other__."""
    # Counted as Python strings: a fixed-width numpy string array is as wide as the longest
    # value for every row, so one 100,000-character value in a reference learned from the
    # wire would cost gigabytes and minutes.
    ranked = sorted(Counter(map(str, values)).items(), key=lambda kv: (-kv[1], kv[0]))
    cats = [c for c, _ in ranked]  # most frequent first, ties by name: deterministic codes
    cnts = np.fromiter((n for _, n in ranked), dtype=np.int64, count=len(ranked))
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


@dataclass
class ColumnReport:
    """How one column's type was decided, for ``monitor reference build`` to print."""

    name: str
    kind: ColumnType | None  # None: no value at all, the column is left out
    present: int = 0
    missing: int = 0
    numbers: int = 0
    declared: bool = False
    others: int = 0  # present values that are not numbers
    first_other: Any = None
    first_other_row: int = 0
    not_a_feature: str | None = None  # why the name cannot be a feature (the column is left out)
    nested: int = 0  # JSON lists and objects: no feature's value, so neither present nor missing
    too_long: int = 0  # strings longer than max_category_chars: missing (as in the stream)

    def describe(self) -> str:
        """``monthly_spend: categorical, 9999 values, 1 missing (1 non-numeric value
        'abc' at row 3001)``; values from the file are escaped and bounded."""
        if self.not_a_feature is not None:
            name = shown(self.name, 80, quote=False) if self.name else "(no name)"
            return f"{name}: left out ({self.not_a_feature})"
        nested = f"{self.nested} list or object values, which no feature holds"
        long = f"{self.too_long} longer than limits.max_category_chars"
        if self.kind is None:
            what = ", ".join(
                [*([nested] if self.nested else []), *([long] if self.too_long else [])]
            )
            return (
                f"{shown(self.name, 80, quote=False)}: left out ({self.missing} rows, "
                f"{what or 'no value'})"
            )
        name = shown(self.name, 80, quote=False)
        head = f"{name}: {self.kind}, {self.present} values, {self.missing} missing"
        if self.too_long:
            head += f" ({long})"
        if self.nested:
            head += f", {nested} (wrong type)"
        other = ""
        if self.others:
            many = "s, first" if self.others > 1 else ""
            other = (
                f"{self.others} non-numeric value{many} {shown(self.first_other)} "
                f"at row {self.first_other_row}"
            )
        if self.declared:
            why = "declared"
            if self.kind == "numeric" and self.others:
                why += f"; {other} counted as missing"
        elif self.kind == "numeric":
            why = "every present value is a number"
        elif self.numbers == 0 and not self.others:
            why = "no values"
        elif self.numbers == 0:
            why = f"no numbers: {other}"
        else:
            why = other
        return f"{head} ({why})"


def infer_columns(
    rows: list[tuple[dict[str, Any], Any]],
    declared: Mapping[str, ColumnType] | None = None,
    max_chars: int | None = MAX_CATEGORY_CHARS,
) -> tuple[dict[str, ColumnType], list[ColumnReport]]:
    """The schema of ``rows`` and, per column, why.

    A column is numeric when every present value is a number (booleans are
    categories); :data:`MISSING_TOKENS` strings count as missing, so one ``n/a``
    cell does not turn a numeric column categorical. A JSON list or object (an
    embedding, a nested document) is no feature's value: it decides nothing, and a
    column of nothing else is left out, as one without values is (it had made a
    categorical column without a category, so a model learning its reference from
    events carrying an embedding was disabled). A string longer than ``max_chars`` is
    missing, as the profile and the stream count it (``too_long``): a free-text column of
    longer values had become a categorical column without a category, and the model was
    disabled at start. ``declared`` types win. A name a
    declared feature could not have (:func:`not_a_feature`) is never a column; without
    ``declared`` its report says why it was left out.
    """
    reports: dict[str, ColumnReport] = {}
    left_out: dict[str, str] = {}
    for row, (feats, _) in enumerate(rows, 1):
        for k, v in feats.items():
            r = reports.get(k)
            if r is None:
                if k in left_out:
                    continue
                why = not_a_feature(k)
                if why is not None:
                    left_out[k] = why
                    continue
                r = reports[k] = ColumnReport(k, None)
            if v is None or is_missing_token(v):
                continue
            if isinstance(v, list | dict):
                r.nested += 1
                continue
            if max_chars is not None and type(v) is str and len(v) > max_chars:
                r.too_long += 1
                continue
            r.present += 1
            if isinstance(v, int | float) and not isinstance(v, bool):
                r.numbers += 1
            else:
                r.others += 1
                if r.others == 1:
                    r.first_other, r.first_other_row = v, row
    for name in declared or {}:
        reports.setdefault(name, ColumnReport(name, None))
    schema: dict[str, ColumnType] = {}
    for name, r in reports.items():
        r.missing = len(rows) - r.present - r.nested
        if declared is not None:
            if name not in declared:
                continue
            r.kind, r.declared = declared[name], True
        elif r.present:
            r.kind = "categorical" if r.others else "numeric"
        if r.kind is not None:
            schema[name] = r.kind
    if declared is not None:
        return schema, [reports[n] for n in declared]
    skipped = [ColumnReport(n, None, not_a_feature=why) for n, why in left_out.items()]
    return schema, [*reports.values(), *skipped]


def not_a_feature(name: str) -> str | None:
    """Why ``name`` cannot be a feature's (``None`` when it can): the rules of a declared
    feature's name (:mod:`monitor.config`), applied to the names a reference or the events
    bring. An empty name is what pandas writes for its index (``DataFrame.to_csv()``): as a
    feature it was the row number, which no event carries, so every window was 100% missing
    it and paged a ``missing`` breach.

    >>> not_a_feature("income") is None, not_a_feature("")
    (True, 'a column without a name, as pandas writes its index: to_csv(index=False)')
    """
    if not name:
        return "a column without a name, as pandas writes its index: to_csv(index=False)"
    if len(name) > MAX_FEATURE_NAME_CHARS:
        return f"a feature name has at most {MAX_FEATURE_NAME_CHARS} characters"
    if name in RESERVED_COLUMNS:
        return "the monitor's own column"
    return None


def infer_schema(
    rows: list[tuple[dict[str, Any], Any]], max_chars: int | None = MAX_CATEGORY_CHARS
) -> dict[str, ColumnType]:
    """Numeric when every present value is a number (booleans are categories), else categorical;
    :data:`MISSING_TOKENS` count as missing (see :func:`infer_columns`)."""
    return infer_columns(rows, max_chars=max_chars)[0]


def build_profile(
    model: str,
    rows: list[tuple[dict[str, Any], Any]],
    *,
    schema: dict[str, ColumnType] | None = None,
    prediction: Literal["auto", "numeric", "categorical", "none"] = "auto",
    max_sample: int = 10_000,
    max_categories: int = 200,
    max_category_chars: int | None = MAX_CATEGORY_CHARS,
    model_version: str | None = None,
    source: str = "",
) -> ReferenceProfile:
    """Build a profile from ``(features, prediction)`` rows.

    A category longer than ``max_category_chars`` is missing (None: no bound), counted in
    the profile's :attr:`~ReferenceProfile.too_long`."""
    if not rows:
        raise ReferenceError_(f"model {model!r}: the reference has no rows")
    schema_in = schema
    schema = schema or infer_schema(rows, max_category_chars)
    n_rows = len(rows)
    features: dict[str, FeatureProfile] = {}
    digest = hashlib.sha256()
    joint_rows = np.unique(np.linspace(0, n_rows - 1, min(n_rows, MAX_JOINT_ROWS)).astype(int))
    joint: dict[str, np.ndarray] = {}
    too_long: dict[str, int] = {}
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
            prof = _declared(
                schema_in, name, kind, model, profile_numeric, vals, n_rows, max_sample
            )
            digest.update(name.encode() + prof.sample.tobytes())  # type: ignore[union-attr]
            joint[name] = vals[joint_rows]
        else:
            cats, long = bounded_categories(raw, max_category_chars)
            if long:
                too_long[name] = long
            try:
                prof = _declared(
                    schema_in, name, kind, model, profile_categorical, cats, n_rows, max_categories
                )
            except ReferenceError_ as exc:
                if not long:
                    raise
                raise type(exc)(
                    f"{exc} ({long} longer than max_category_chars, {max_category_chars})"
                ) from exc
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
            cats, long = bounded_categories(preds, max_category_chars)
            if long:
                too_long[PREDICTION] = long
            features[PREDICTION] = profile_categorical(PREDICTION, cats, n_rows, max_categories)
    return ReferenceProfile(
        joint=np.column_stack(list(joint.values())) if joint else None,
        joint_columns=list(joint),
        model=model,
        features=features,
        rows=n_rows,
        fingerprint=digest.hexdigest()[:32],
        model_version=model_version,
        created_at=time.time(),
        source=source,
        too_long=too_long,
    )


def _declared(
    declared: Mapping[str, ColumnType] | None,
    name: str,
    kind: ColumnType,
    model: str,
    profile: Any,
    *args: Any,
) -> FeatureProfile:
    """Profile a column; a declared column without values of its type is a mismatch."""
    try:
        return profile(name, *args)  # type: ignore[no-any-return]
    except ReferenceError_ as exc:
        if declared is None:
            raise
        raise ReferenceMismatch(
            f"model {model!r}: feature {name!r} is {kind} in the config but the reference "
            f"has no {kind} value for it"
        ) from exc


class CsvNumber(float):
    """A number read from a CSV cell, with the cell's text: a number to a numeric column, its
    text to a categorical one (:func:`category_of`).

    Why: a CSV cell has no type, so ``1`` and ``02134`` are read as numbers; a column that
    is categorical (codes beside a ``gold``, or declared so) then held the categories
    ``1.0`` and ``2134.0``, which no event spells so (``"1"``, ``1``, ``"02134"``): every
    event's value was a category the reference never saw, and the first window paged an
    ``unseen`` breach and a chi-square drift.
    """

    __slots__ = ("text",)

    def __new__(cls, text: str) -> CsvNumber:
        self = super().__new__(cls, text)
        self.text = text.strip()
        return self


def _number_or_text(text: str) -> Any:
    if is_missing_token(text):
        return None
    try:
        v = CsvNumber(text)
    except ValueError:
        return text
    return v if math.isfinite(v) else None


def detect_format(path: str | Path) -> str:
    """``profile``, ``jsonl``, ``csv`` or ``parquet``: a profile by its content, whatever
    its name (a profile saved as ``churn-ref.json`` is still a profile), the rest by
    extension."""
    p = Path(path)
    if not p.exists():
        raise ReferenceError_(f"{p}: file not found")
    if p.name.endswith(".profile.json"):
        return "profile"
    try:
        with p.open("rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise ReferenceError_(f"{p}: cannot read: {exc.strerror}") from exc
    if _PROFILE_MARKER.match(head.decode("utf-8", "replace")):
        return "profile"
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
    return fmt


def iter_rows(
    path: str | Path, fmt: str = "auto", model: str | None = None
) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yield ``(features, prediction)`` from JSONL (event-shaped or flat), CSV, or Parquet.

    Event-shaped JSONL lines of other models are skipped when ``model`` is given.
    Flat rows take every column but :data:`META_COLUMNS` (``prediction``,
    ``event_id``, ``timestamp``, ``model``, ``model_version``, ``label``) as a
    feature; ``prediction`` is the prediction. Every problem with the file is a
    :class:`~monitor.errors.ReferenceError_` naming ``file:line``.
    """
    p = Path(path)
    if fmt == "auto":
        fmt = detect_format(p)
    if not p.exists():
        raise ReferenceError_(f"{p}: file not found")
    lineno = 0
    try:
        if fmt == "jsonl":
            with p.open("rb") as fh:
                for lineno, line in enumerate(_utf8_lines(p, fh), 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:
                        raise ReferenceError_(f"{p}:{lineno}: not JSON: {exc}") from exc
                    if _SURROGATE_ESCAPE.search(line) and (where := _lone_surrogate(obj)):
                        raise ReferenceError_(
                            f"{p}:{lineno}: {where} holds a lone UTF-16 surrogate escape "
                            "(not a character; no UTF-8 file, page or log can hold it)"
                        )
                    if not isinstance(obj, dict):
                        raise ReferenceError_(f"{p}:{lineno}: expected a JSON object")
                    if isinstance(obj.get("features"), dict):
                        if model is not None and obj.get("model") not in (None, model):
                            continue
                        yield obj["features"], obj.get("prediction")
                    else:
                        flat = {k: v for k, v in obj.items() if k not in META_COLUMNS}
                        yield flat, obj.get("prediction")
        elif fmt == "csv":
            with p.open("rb") as fh:
                reader = csv.reader(_utf8_lines(p, fh))
                header = next(reader, None)
                lineno = 1
                if header is None:
                    return
                _refuse_repeated_columns(f"{p}:1", header)
                width = len(header)
                for row in reader:
                    lineno = reader.line_num
                    if len(row) != width:
                        if not row:
                            continue  # a blank line
                        raise ReferenceError_(
                            f"{p}:{lineno}: expected {width} fields, got {len(row)}"
                        )
                    vals = {k: _number_or_text(v) for k, v in zip(header, row, strict=True)}
                    pred = vals.pop("prediction", None)
                    yield {k: v for k, v in vals.items() if k not in META_COLUMNS}, pred
        elif fmt == "parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise ReferenceError_("reading Parquet needs pyarrow: pip install pyarrow") from exc
            try:
                table = pq.read_table(p)
            except Exception as exc:  # pyarrow's errors, translated here at the boundary
                raise ReferenceError_(f"{p}: not a readable Parquet file: {exc}") from exc
            for row in table.to_pylist():
                pred = row.pop("prediction", None)
                yield {k: v for k, v in row.items() if k not in META_COLUMNS}, pred
        else:
            raise ReferenceError_(f"{p}: unsupported reference format {fmt!r}")
    except csv.Error as exc:
        raise ReferenceError_(f"{p}:{lineno + 1}: not valid CSV: {exc}") from exc
    except OSError as exc:
        raise ReferenceError_(f"{p}: cannot read: {exc.strerror}") from exc


def _refuse_repeated_columns(where: str, names: Sequence[str]) -> None:
    """A column name written twice is refused: each row became one dict, so the last of the
    columns silently stood for both (a join's ``amount`` beside another ``amount``). Names
    that are no feature's (an unnamed index, :func:`not_a_feature`) are left out anyway.

    >>> _refuse_repeated_columns("t.csv:1", ["", "a", "b", "a"])
    Traceback (most recent call last):
    ...
    monitor.errors.ReferenceError_: t.csv:1: column 'a' appears twice (columns 2 and 4); rename one
    """
    first: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in first and not_a_feature(name) is None:
            raise ReferenceError_(
                f"{where}: column {shown(name)} appears twice (columns {first[name]} and {i}); "
                "rename one"
            )
        first.setdefault(name, i)


#: A ``\\uD800``-``\\uDFFF`` escape: the cheap test before :func:`_lone_surrogate` walks a row.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> str | None:
    """Where in a parsed JSON row a string (key or value) holds a lone surrogate, or None.

    JSON may escape one (``"\\ud800"``) and the stdlib parses it into a ``str`` that no
    UTF-8 encoder takes: the report then died writing its HTML (an empty file left behind)
    and the service would carry it into its checkpoint and ``/metrics``. The event decoder
    refuses such events (``invalid_unicode``); a file's row is refused alike, by line.

    >>> _lone_surrogate({"a": ["ok", "\\ud800"]}), _lone_surrogate({"a": "\\U0001f600"})
    ("field 'a'", None)
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _encodes(item):
                return f"field {shown(where)}" if where else "a value"
        elif isinstance(item, dict):
            for k, v in item.items():
                if not _encodes(k):
                    return f"a key ({shown(k)})"
                stack.append((v, k if not where else f"{where}.{k}"))
        elif isinstance(item, list):
            stack.extend((v, where) for v in item)
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8_lines(path: Path, lines: Iterable[bytes]) -> Iterator[str]:
    """Decode line by line, so that invalid UTF-8 is reported with its line number
    (a byte-order mark, as spreadsheets write, is dropped)."""
    for lineno, raw in enumerate(lines, 1):
        try:
            yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ReferenceError_(f"{path}:{lineno}: not valid UTF-8") from None


def load_reference(
    path: str | Path,
    *,
    model: str,
    fmt: str = "auto",
    schema: dict[str, ColumnType] | None = None,
    prediction: Literal["auto", "numeric", "categorical", "none"] = "auto",
    max_sample: int = 10_000,
    max_categories: int = 200,
    max_category_chars: int = MAX_CATEGORY_CHARS,
    segments: Any = None,
) -> ReferenceProfile:
    """Load a saved profile, or build one from a data file.

    ``segments`` (a :class:`monitor.config.SegmentsConfig`): from a data file, the
    reference of each declared slice's values is built too (``ReferenceProfile.segments``;
    a saved profile has no rows to build them from). Either way a category longer than
    ``max_category_chars`` is left out (missing) and counted in ``too_long``.
    """
    p = Path(path)
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt == "profile":
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReferenceError_(f"{p}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ReferenceError_(f"{p}: not valid UTF-8") from exc
        try:
            profile = ReferenceProfile.from_json(text)
            profile.drop_long_categories(max_category_chars)
            return profile
        except ReferenceError_ as exc:
            raise ReferenceError_(f"{p}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ReferenceError_(f"{p}: damaged profile ({type(exc).__name__}: {exc})") from exc
    rows = list(iter_rows(p, fmt, model))
    profile = build_profile(
        model,
        rows,
        schema=schema,
        prediction=prediction,
        max_sample=max_sample,
        max_categories=max_categories,
        max_category_chars=max_category_chars,
        source=str(p),
    )
    if segments is not None and segments.by:
        pred = profile.features.get(PREDICTION)
        profile.segments = segment_references(
            rows,
            segments,
            lambda members, source: build_profile(
                model,
                members,
                schema=profile.schema(),
                prediction=pred.kind if pred is not None else "none",
                max_sample=max_sample,
                max_categories=max_categories,
                max_category_chars=max_category_chars,
                source=f"{p}, {source}",
            ),
            max_category_chars=max_category_chars,
        )
    return profile


def check_schema(
    profile: ReferenceProfile,
    declared: Mapping[str, ColumnType] | None,
    *,
    model: str,
    max_features: int,
) -> dict[str, ColumnType]:
    """The columns a model monitors against ``profile``: the declared features (or the
    profile's own), capped at ``max_features``.

    Raises :class:`~monitor.errors.ReferenceMismatch` listing every declared feature
    the profile lacks or has with another type. ``monitor check-config``, the
    service's start and the model itself all check with this one function.
    """
    schema = dict(declared) if declared is not None else profile.schema()
    if len(schema) > max_features:
        schema = dict(list(schema.items())[:max_features])
    problems = []
    for name, kind in schema.items():
        prof = profile.features.get(name)
        if prof is None:
            problems.append(f"reference has no feature {name!r}")
        elif prof.kind != kind:
            problems.append(
                f"feature {name!r} is {kind} in the config but {prof.kind} in the reference"
            )
    if problems:
        raise ReferenceMismatch(f"model {model!r}: " + "; ".join(problems))
    return schema


@dataclass
class ModelReferences:
    """What a model's ``reference`` settings load to."""

    profile: ReferenceProfile | None = None
    versions: dict[str, ReferenceProfile] = field(default_factory=dict)


class ReferenceSource(Protocol):
    """The ``reference:`` settings of a model (:class:`monitor.config.ReferenceConfig`)."""

    @property
    def path(self) -> str | None: ...
    @property
    def format(self) -> str: ...
    @property
    def max_sample(self) -> int: ...
    @property
    def versions(self) -> Mapping[str, str]: ...


class ModelReferenceSettings(Protocol):
    """What :func:`load_model_references` reads of a model's settings
    (:class:`monitor.config.ResolvedModel`).

    A protocol rather than the config class: the configuration's ``check-config``
    calls this module, so this module does not import the configuration.
    """

    @property
    def name(self) -> str: ...
    @property
    def features(self) -> dict[str, ColumnType] | None: ...
    @property
    def prediction(self) -> Literal["auto", "numeric", "categorical", "none"]: ...
    @property
    def reference(self) -> ReferenceSource: ...


def load_model_references(
    settings: ModelReferenceSettings,
    *,
    max_features: int,
    max_categories: int,
    max_category_chars: int,
) -> ModelReferences:
    """Load and check every reference file of one model (``reference.path`` and each of
    ``reference.versions``).

    The paths are used as the configuration holds them: :func:`monitor.config.load_config`
    has already resolved them (the one path rule), so ``check-config`` and ``run`` read
    the same files. Raises :class:`~monitor.errors.ReferenceError_` whose message starts
    with the option (``reference.path: ...``, ``reference.versions.v2: ...``);
    :class:`~monitor.errors.ReferenceMismatch` when a file does not fit the declared
    features. Values longer than ``max_category_chars`` are left out of each profile
    (missing), which says so in its ``too_long`` for the caller to report.
    """
    ref = settings.reference

    def load(option: str, path: str) -> ReferenceProfile:
        if not Path(path).exists():
            raise ReferenceError_(f"{option}: file not found: {path}")
        try:
            profile = load_reference(
                path,
                model=settings.name,
                fmt=ref.format,
                schema=settings.features,
                prediction=settings.prediction,
                max_sample=ref.max_sample,
                max_categories=max_categories,
                max_category_chars=max_category_chars,
                segments=getattr(settings, "segments", None),
            )
            check_schema(profile, settings.features, model=settings.name, max_features=max_features)
        except ReferenceError_ as exc:
            raise type(exc)(f"{option}: {exc} ({path})") from exc
        return profile

    out = ModelReferences()
    if ref.path:
        out.profile = load("reference.path", ref.path)
    for version, path in ref.versions.items():
        out.versions[version] = load(f"reference.versions.{version}", path)
    return out
