"""A model's events in columns: wire values -> numeric and categorical matrices.

:class:`Columns` is built for one reference's schema (the monitor builds a new one
whenever it sets a reference). It turns one :class:`~monitor.events.ModelEvents`
batch into a ``float64`` matrix of the numeric columns (NaN = missing or invalid)
and an ``int32`` matrix of category codes (-1 = missing), once per batch, with
numpy and C-level passes, never a Python loop per event where one per column does.
Values that are not what the column holds are counted in the model's
data-quality counters (``invalid_values``, ``category_overflow``), which the
monitor owns because they outlive a reference switch; new categories are
appended to the column's vocabulary in arrival order.

A categorical value longer than ``limits.max_category_chars`` is invalid
(``too_long``) and missing, as a value of the wrong type is: it would otherwise sit in
the vocabulary, every checkpoint and every page for good. Only :meth:`Columns.code_of`
(values the vocabulary does not know) checks it: such a value is never in the
vocabulary, so known categories keep their fast path.
"""

from __future__ import annotations

import math
import operator
from itertools import chain
from typing import Any

import numpy as np

from monitor.config import LimitsConfig
from monitor.errors import MonitorError
from monitor.events import FeatureColumns, ModelEvents
from monitor.reference import (
    PREDICTION,
    ColumnType,
    ReferenceProfile,
    category_of,
    prediction_value,
)
from monitor.state_format import ModelState, StateFormatError, unpack_array
from monitor.window import MISSING_CODE

OTHER = "__other__"
#: Why a value was recorded as missing: the bounded ``reason`` label of
#: ``monitor_feature_invalid_values_total`` (docs/METRICS.md lists them).
INVALID_VALUE_REASONS = ("wrong_type", "non_finite_number", "too_long")


class Columns:
    """The column schema of one reference, its category vocabularies, and the conversion."""

    def __init__(
        self,
        name: str,
        schema: dict[str, ColumnType],
        profile: ReferenceProfile,
        limits: LimitsConfig,
        invalid_values: dict[tuple[str, str], int],
        category_overflow: dict[str, int],
    ) -> None:
        """``schema``: column -> kind, in column order (the reference's features, then the
        prediction); the counters are the model's, updated in place."""
        self.name = name
        self.limits = limits
        self.invalid_values = invalid_values
        self.category_overflow = category_overflow
        self.numeric_columns = [n for n, k in schema.items() if k == "numeric"]
        self.categorical_columns = [n for n, k in schema.items() if k == "categorical"]
        self.known_features = frozenset(n for n in schema if n != PREDICTION)
        self.categories: dict[str, list[str]] = {}
        self.vocab: dict[str, dict[str, int]] = {}
        self.reference_sizes: list[int] = []
        #: Present values of each column in the reference (schema order): a column with too
        #: few gets no drift verdict (monitor.evaluation.window_results).
        self.reference_counts: dict[str, int] = {
            n: profile.features[n].count for n in schema if n in profile.features
        }
        for col in self.categorical_columns:
            cats = list(profile.features[col].categories)
            self.categories[col] = cats
            self.vocab[col] = {c: i for i, c in enumerate(cats)}
            self.reference_sizes.append(len(cats))
        # What the numeric fast path needs. The prediction, when numeric, is the last
        # numeric column (schema order).
        cols = self.numeric_columns
        feats = [c for c in cols if c != PREDICTION]
        pred = PREDICTION in cols
        self._fast_ok = not pred or cols[-1] == PREDICTION
        self._numeric_features = feats
        self._numeric_prediction = pred
        self._numeric_getter = operator.itemgetter(*feats) if feats else None
        cats_t = tuple(c for c in self.categorical_columns if c != PREDICTION)
        #: (numeric features, categorical features) the native decoder may put in
        #: columns, in column order, the prediction left out (it comes with the event).
        self.columnar_names = (tuple(feats), cats_t)

    def category_sizes(self) -> list[int]:
        """The number of categories known now, per categorical column."""
        return [len(self.categories[c]) for c in self.categorical_columns]

    def matrices(self, events: ModelEvents) -> tuple[np.ndarray, np.ndarray, int]:
        """The batch's numeric and categorical matrices, and how many of its events carry a
        feature outside the schema."""
        if events.columns is not None:
            num, cat = self.columnar_matrices(events, events.columns)
            return num, cat, events.columns.unknown
        num, num_complete = self.numeric_matrix(events)
        cat, cat_complete = self.categorical_matrix(events)
        known = self.known_features
        feats = events.features
        n = len(feats)
        # Every known key present and exactly as many keys as known: nothing unknown, and
        # counting key totals is one C-level pass instead of a set test per event.
        if num_complete and cat_complete and sum(map(len, feats)) == n * len(known):
            return num, cat, 0
        return num, cat, sum(1 for f in feats if not f.keys() <= known)

    def numeric_matrix(self, events: ModelEvents) -> tuple[np.ndarray, bool]:
        """The batch's numeric columns as one float matrix (NaN = missing or invalid),
        and whether every event carried every numeric feature's key.

        Fast path: when every event carries every numeric feature, one C-level
        ``itemgetter`` per event feeds one ``np.fromiter`` for the whole matrix.
        Anything else (a missing key, a string, a score map) falls back to the
        per-column conversion, which counts invalid values exactly as before.
        """
        n = len(events.features)
        k = len(self.numeric_columns)
        mat = self._numeric_fast(events, n, k) if self._fast_ok else None
        if mat is None:
            return self._numeric_by_column(events, n, k), False
        bad = np.isinf(mat)
        if bad.any():
            for j in np.nonzero(bad.any(axis=0))[0]:
                self._count_invalid(
                    self.numeric_columns[j], "non_finite_number", int(bad[:, j].sum())
                )
            mat[bad] = np.nan
        return mat, True

    def _numeric_fast(self, events: ModelEvents, n: int, k: int) -> np.ndarray | None:
        names = self._numeric_features
        if not names and not self._numeric_prediction:
            return np.empty((n, k), dtype=np.float64)
        try:
            if names:
                # One C-level pass: the getter's tuples chained straight into the buffer.
                # Conversion is np.array's (None -> NaN, "1.5" -> 1.5, junk -> ValueError).
                rows = map(self._numeric_getter, events.features)
                flat = rows if len(names) == 1 else chain.from_iterable(rows)
                mat = np.fromiter(flat, dtype=np.float64, count=n * len(names))
                mat = mat.reshape(n, len(names))
            if self._numeric_prediction:
                pred = np.array(events.predictions, dtype=np.float64)
                if pred.shape != (n,):
                    return None
                mat = pred.reshape(n, 1) if not names else np.column_stack((mat, pred))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if mat.shape != (n, k):
            return None
        return mat

    def _numeric_by_column(self, events: ModelEvents, n: int, k: int) -> np.ndarray:
        feats = events.features
        out = np.empty((n, k), dtype=np.float64)
        for j, name in enumerate(self.numeric_columns):
            if name == PREDICTION:
                raw = [prediction_value(p) for p in events.predictions]
            else:
                raw = [f.get(name) for f in feats]
            out[:, j] = self._numeric_column(name, raw)
        return out

    def _numeric_column(self, name: str, raw: list[Any]) -> np.ndarray:
        """One column's values as floats (NaN = missing or invalid), invalid ones counted."""
        try:
            col = np.array(raw, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            col = np.array([self._as_number(v, name) for v in raw], dtype=np.float64)
        bad = np.isinf(col)
        if bad.any():
            self._count_invalid(name, "non_finite_number", int(bad.sum()))
            col[bad] = np.nan
        return col

    def columnar_matrices(
        self, events: ModelEvents, columns: FeatureColumns
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`numeric_matrix` and :meth:`categorical_matrix` for events the native
        decoder already put in columns (for this model's schema: see
        :attr:`columnar_names`). Its numeric values are finite numbers or NaN and its
        categorical values strings or None, so only the prediction, which comes as
        decoded, goes through the per-column conversion."""
        schema = self.columnar_names
        if schema != (columns.numeric_names, columns.categorical_names):
            raise MonitorError(
                f"model {self.name!r}: columns decoded for schema "
                f"{(columns.numeric_names, columns.categorical_names)}, expected {schema}"
            )
        n = len(events)
        feats = columns.numeric
        if not self._numeric_prediction:
            num = feats
        else:
            pred = self._numeric_column(PREDICTION, events.predictions)
            num = _insert_column(feats, self.numeric_columns.index(PREDICTION), pred)
        cat = np.empty((n, len(self.categorical_columns)), dtype=np.int32)
        text = iter(columns.categorical)
        for j, name in enumerate(self.categorical_columns):
            if name == PREDICTION:
                raw: list[Any] = [prediction_value(p) for p in events.predictions]
            else:
                raw = next(text)
            cat[:, j] = self._codes(name, raw)
        return num, cat

    def _as_number(self, value: Any, name: str) -> float:
        if value is None:
            return math.nan
        if isinstance(value, int | float):
            try:
                return float(value)
            except OverflowError:  # an int beyond the float range: counted as non-finite
                return math.inf
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        self._count_invalid(name, "wrong_type", 1)
        return math.nan

    def categorical_matrix(self, events: ModelEvents) -> tuple[np.ndarray, bool]:
        """The batch's category codes, one column per categorical feature (-1 = missing),
        and whether every event carried every categorical feature's key.

        Known string categories are looked up for the whole column with one
        ``map(vocab.get, ...)``; only the values it cannot code (missing, new,
        non-string) go one by one, in order, through :meth:`code_of`, so
        new categories get the same codes in the same order as before.
        """
        feats = events.features
        n = len(feats)
        out = np.empty((n, len(self.categorical_columns)), dtype=np.int32)
        complete = True
        for j, name in enumerate(self.categorical_columns):
            if name == PREDICTION:
                raw = [prediction_value(p) for p in events.predictions]
            else:
                try:
                    raw = list(map(operator.itemgetter(name), feats))
                except KeyError:
                    raw = [f.get(name) for f in feats]
                    complete = False
            out[:, j] = self._codes(name, raw)
        return out, complete

    def _codes(self, name: str, raw: list[Any]) -> np.ndarray | list[int]:
        """Category codes of one column's values (see :meth:`categorical_matrix`)."""
        vocab = self.vocab[name]
        try:
            # The usual column: every value a known category, coded straight into an array
            # (no list of codes to build, scan for None and convert). A value without a code
            # (None from ``get``: missing, new, not a string) or an unhashable one raises
            # TypeError, and the column takes the path below from its start.
            return np.fromiter(map(vocab.get, raw), np.int32, len(raw))
        except TypeError:
            pass
        try:
            # A str never equals a non-str key, so a non-str value maps to None here.
            codes: list[int | None] = list(map(vocab.get, raw))
        except TypeError:  # an unhashable value (a JSON list or object)
            codes = [vocab.get(v) if type(v) is str else None for v in raw]
        if None in codes:
            for i, code in enumerate(codes):
                if code is None:
                    v = raw[i]
                    if v is None:
                        codes[i] = MISSING_CODE
                    else:
                        got = vocab.get(v) if type(v) is str else None
                        codes[i] = got if got is not None else self.code_of(name, v)
        return codes  # type: ignore[return-value]

    def code_of(self, name: str, value: Any) -> int:
        """The code of a value the column's fast path could not code: a known category
        (spelled otherwise: a number, a boolean), a new one (appended, or pooled into
        ``__other__`` past the cap), or missing when it cannot be one (counted)."""
        cat = category_of(value)
        if cat is None:
            self._count_invalid(name, "wrong_type", 1)
            return MISSING_CODE
        vocab = self.vocab[name]
        code = vocab.get(cat)
        if code is not None:
            return code
        if len(cat) > self.limits.max_category_chars:
            self._count_invalid(name, "too_long", 1)
            return MISSING_CODE
        cats = self.categories[name]
        if len(cats) >= self.limits.max_categories_per_feature:
            self.category_overflow[name] = self.category_overflow.get(name, 0) + 1
            cat = OTHER
            code = vocab.get(OTHER)
            if code is not None:
                return code
        code = len(cats)
        cats.append(cat)
        vocab[cat] = code
        return code

    def _count_invalid(self, feature: str, reason: str, n: int) -> None:
        key = (feature, reason)
        self.invalid_values[key] = self.invalid_values.get(key, 0) + n

    def adopt(
        self, state: ModelState, notes: list[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """A saved window (and queued stream rows), mapped onto these columns: (numeric
        matrix (columns, rows), category codes (rows, columns), queued rows or None).

        Columns are matched by name; a new column is missing in the saved rows, a
        removed one is dropped. Category codes are remapped to this vocabulary (the
        reference's categories, then those seen, in saved order). A note is added
        to ``notes`` when the columns changed.
        """
        assert state.window is not None
        saved_num, saved_cat = state.numeric_columns, state.categorical_columns
        num = unpack_array(state.window.numeric)
        cat = unpack_array(state.window.categorical)
        size = state.window.size
        if num.shape != (len(saved_num), size) or cat.shape != (size, len(saved_cat)):
            raise StateFormatError("corrupt", "window columns do not match their names")
        if (saved_num, saved_cat) != (self.numeric_columns, self.categorical_columns):
            # A column of both whose type changed is matched by name *and* type: its saved
            # values (floats, or codes of another vocabulary) mean nothing in the new type,
            # so they are missing in the saved rows. Said, not folded into "kept".
            retyped = sorted(
                (set(saved_num) & set(self.categorical_columns))
                | (set(saved_cat) & set(self.numeric_columns))
            )
            also = (
                f"; type changed (numeric <-> categorical): {retyped}: their saved values "
                "dropped (missing in the saved rows until those leave the window)"
                if retyped
                else ""
            )
            notes.append(
                f"columns: {sorted(set(saved_num) | set(saved_cat))} -> "
                f"{sorted(set(self.numeric_columns) | set(self.categorical_columns))}: "
                f"saved rows kept for the columns in both, missing for new ones{also}"
            )
        num_idx = {n: i for i, n in enumerate(saved_num)}
        new_num = np.full((len(self.numeric_columns), size), np.nan)
        for j, name in enumerate(self.numeric_columns):
            if name in num_idx:
                new_num[j] = num[num_idx[name]]
        cat_idx = {n: i for i, n in enumerate(saved_cat)}
        new_cat = np.full((size, len(self.categorical_columns)), MISSING_CODE, dtype=np.int32)
        for j, name in enumerate(self.categorical_columns):
            if name not in cat_idx:
                continue
            saved_cats = state.categories.get(name, [])
            # A saved category over the length bound (a checkpoint of a release without it,
            # or a bound lowered since) is not adopted: its rows are missing, as its values
            # would be now, and not counted again as invalid (they were not seen again).
            limit = self.limits.max_category_chars
            long = {c for c in saved_cats if len(c) > limit and c not in self.vocab[name]}
            if long:
                notes.append(
                    f"{name}: {len(long)} saved categories longer than "
                    f"limits.max_category_chars ({limit}) dropped (their rows missing)"
                )
            # Code -1 (missing) maps to itself through the last entry of the table.
            codes = [MISSING_CODE if c in long else self.code_of(name, c) for c in saved_cats]
            table = np.array([*codes, MISSING_CODE])
            codes = cat[:, cat_idx[name]].astype(np.int64)
            if codes.size and (codes.min() < -1 or codes.max() >= len(saved_cats)):
                raise StateFormatError("corrupt", f"category code out of range in {name!r}")
            new_cat[:, j] = table[codes]
        if state.stream_pending is None:
            return new_num, new_cat, None
        pending = unpack_array(state.stream_pending)
        if pending.ndim != 2 or pending.shape[1] != len(saved_num):
            raise StateFormatError("corrupt", "queued stream rows of the wrong shape")
        rows = np.full((len(pending), len(self.numeric_columns)), np.nan)
        for j, name in enumerate(self.numeric_columns):
            if name in num_idx:
                rows[:, j] = pending[:, num_idx[name]]
        return new_num, new_cat, rows


def _insert_column(matrix: np.ndarray, j: int, column: np.ndarray) -> np.ndarray:
    """``np.insert(matrix, j, column, axis=1)`` for a 2-D ``matrix``: the same array (values,
    dtype, memory order), built by three slice copies into one allocation.

    Why not ``np.insert``: it is general (any axis, index lists, broadcasting) and its
    set-up cost per call was most of the prediction column's cost per batch (issue 19).
    """
    n, k = matrix.shape
    out = np.empty((n, k + 1), dtype=matrix.dtype, order="F" if matrix.flags.fnc else "C")
    out[:, :j] = matrix[:, :j]
    out[:, j] = column
    out[:, j + 1 :] = matrix[:, j:]
    return out
