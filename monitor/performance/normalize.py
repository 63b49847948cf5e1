"""Turn decoded prediction and label values into what each task computes on.

The event contract lets a prediction be a number, a class string or an object of
class scores, and a label a number, a string or a bool. Which of those make sense
depends on the model's task, so the check happens here, once per batch, and
returns *counts by reason* for the values that do not fit: one bad event must not
abort a batch, and the reasons are bounded tokens fit for a metric label
(``prediction_not_a_number``, ...), mirroring :class:`monitor.errors.InvalidEvent`.

What each task gets:

==========  ============================================  ==============================
task        prediction                                    label
==========  ============================================  ==============================
binary      score in [0, 1] (float64)                     1 if positive class else 0
multiclass  class index (+ probability row if an object)  class index
regression  float64 value                                 float64 value
==========  ============================================  ==============================

Binary: a number is the score of the positive class; a bool or a class string is
a hard prediction (score 1.0 if it is the positive class, else 0.0); an object
gives the score of the positive class key. Bools and class strings (of predictions and
labels alike) are read by :func:`binary_class`: ``"true"``/``"false"`` (any case) and
``"1.0"``/``"0.0"`` are the classes 1 and 0, as the JSON ``true``/``false`` and ``1``/``0``
are. With a 0/1 positive class (the default ``1``, or ``0``), a class value that is neither
0 nor 1 (``2``, ``"yes"``, ``"cat"``) is rejected (``not_a_binary_class``), never counted as
a negative; -1 is the negative of the positive class 1 (the -1/+1 convention). With a named
positive class (``"fraud"``) every other class is the negative.

Multiclass: an object's arg-max is the predicted class and its scores, renormalised to
sum to one, the probability row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.errors import InvalidEvent

# Bounded rejection reasons (metric label values).
MISSING = "missing"
NOT_A_NUMBER = "not_a_number"
NON_FINITE = "non_finite"
SCORE_OUT_OF_RANGE = "score_out_of_range"
NON_INTEGER_CLASS = "non_integer_class"
UNEXPECTED_TYPE = "unexpected_type"
MISSING_POSITIVE_SCORE = "missing_positive_class_score"
INVALID_PROBABILITIES = "invalid_probabilities"
TOO_MANY_CLASSES = "too_many_classes"
CLASS_TOO_LONG = "class_too_long"
NOT_A_BINARY_CLASS = "not_a_binary_class"
VALUE_TOO_LARGE = "value_too_large"

#: The largest magnitude of a regression prediction or label. Their difference is the error
#: ADWIN and the metrics square and sum: from 1e308 (valid JSON) the difference alone is
#: infinite, which the error detector refuses (the batch failed half-applied and the service
#: stopped, again at each replay), and from about 1e150 the sums of squares overflow. At
#: 1e100 a window of a million errors squares and sums far below the float range, and no
#: measured quantity comes near it.
MAX_REGRESSION_MAGNITUDE = 1e100

#: The longest class name a multiclass model stores. A class name comes from the wire and
#: becomes a metric label (``monitor_model_class_performance{class}``), keys of
#: ``/api/status`` and the model page, and part of every checkpoint; bounded like a model's
#: name, so one event cannot put a megabyte into each of them.
MAX_CLASS_CHARS = 200

REASONS: tuple[str, ...] = (
    MISSING,
    NOT_A_NUMBER,
    NON_FINITE,
    SCORE_OUT_OF_RANGE,
    NON_INTEGER_CLASS,
    UNEXPECTED_TYPE,
    MISSING_POSITIVE_SCORE,
    INVALID_PROBABILITIES,
    TOO_MANY_CLASSES,
    CLASS_TOO_LONG,
    NOT_A_BINARY_CLASS,
    VALUE_TOO_LARGE,
)


#: A string spelling an integral float the way ``str(float)`` and CSV writers do: ``"2.0"``.
#: No leading zeros (``"01.0"`` stays a name), so the integer part is ``str(int)``'s.
_INTEGRAL_FLOAT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)\.0+")


def canonical_class(value: Any) -> str:
    """The string a class value is compared by.

    JSON gives no single spelling of a class: ``1``, ``1.0``, ``true``, ``"1"`` and
    ``"1.0"`` all appear in the wild for the class 1. Bools map to ``"1"``/``"0"``,
    integral numbers to their decimal form, and so does a string that spells an integral
    float (``"2.0"``: what a CSV or ``str(float)`` makes of the class 2, which was
    otherwise a class of its own, every such label graded wrong); other strings stay as
    they are (case and spaces kept: ``"Cat"`` and ``"cat"`` are different classes).

    >>> [canonical_class(v) for v in (True, 1, 1.0, "1", "1.0", "-3.00", 0, False, "cat")]
    ['1', '1', '1', '1', '1', '-3', '0', '0', 'cat']
    >>> [canonical_class(v) for v in ("-0.0", "1.5", "01", "1.", " 1.0", "1e3")]
    ['0', '1.5', '01', '1.', ' 1.0', '1e3']

    Raises :class:`InvalidEvent` for values that cannot be a class; a blank string (empty
    or only spaces) is a missing value (``missing``), as the configuration refuses a blank
    ``positive_class``: learned as a class it was ``class=""`` on /metrics, which
    Prometheus reads as no class label at all.
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        _not_blank(value)
        if len(value) <= MAX_CLASS_CHARS and _INTEGRAL_FLOAT.fullmatch(value):
            return str(int(value[: value.index(".")]))
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(NON_FINITE, "class value is not finite")
        if not value.is_integer():
            raise InvalidEvent(NON_INTEGER_CLASS, "numeric class value is not an integer")
        return str(int(value))
    if value is None:
        raise InvalidEvent(MISSING, "class value is missing")
    raise InvalidEvent(UNEXPECTED_TYPE, f"a class cannot be a {type(value).__name__}")


#: String spellings of the classes 0 and 1 a binary model reads as those classes: what
#: producers write when a bool or a number went through a string (``str(True)``, a CSV
#: column, ``"%.1f"``). Anything else stays a class name.
_BINARY_WORDS = {"true": "1", "false": "0"}
_ZERO_ONE = re.compile(r"[+-]?[01](?:\.0*)?")

#: The canonical 0/1 classes: with one of them as the positive class, a binary model's
#: classes are these two (and, with the positive class 1, -1: the negative of the -1/+1
#: convention).
ZERO_ONE = frozenset({"0", "1"})


def _not_blank(value: str) -> None:
    if not value.strip():
        raise InvalidEvent(MISSING, "class value is blank")


def binary_class(value: Any) -> str:
    """The class a binary model reads ``value`` as: :func:`canonical_class`, plus the
    string spellings of 0 and 1.

    The JSON ``true`` was already the class ``"1"``; its string ``"true"`` was the class
    ``"true"``, which is not the default positive class 1, so a producer that sent labels
    as strings had every positive counted as a negative, without a counter. Case and
    surrounding spaces are ignored for these spellings only.

    >>> [binary_class(v) for v in (True, "true", " FALSE", "1.0", "0.00", 1.0, "yes", "10")]
    ['1', '1', '0', '1', '0', '1', 'yes', '10']
    >>> [binary_class(v) for v in ("-1", " -1.0", "+1", "-0", -1)]
    ['-1', '-1', '1', '0', '-1']

    A blank string is missing (``missing``): with a named positive class (``fraud``) an
    empty label was graded a negative, silently.
    """
    if isinstance(value, str):
        _not_blank(value)
        text = value.strip()
        word = _BINARY_WORDS.get(text.lower())
        if word is not None:
            return word
        if _ZERO_ONE.fullmatch(text):
            return str(int(float(text)))
        return value
    return canonical_class(value)


def _is_positive(value: Any, positive_class: str) -> bool:
    """Whether a binary class value is the positive class; raises :class:`InvalidEvent`
    for one that is no class of a 0/1 model (see :func:`binary_class`)."""
    name = binary_class(value)
    if (
        positive_class in ZERO_ONE
        and name not in ZERO_ONE
        and not (name == "-1" and positive_class == "1")
    ):
        raise InvalidEvent(
            NOT_A_BINARY_CLASS,
            "a class of a 0/1 model must be 0 or 1 (or true/false); "
            "for classes of other names, set positive_class to the positive one",
        )
    return name == positive_class


class ClassIndex:
    """Class names to stable column indices, learned on first sight up to a cap.

    Indices never change once given, so probability rows stored earlier stay valid
    (a row shorter than the current number of classes is zero-padded). The cap keeps
    the per-model matrices and the exported label set bounded when a buggy producer
    sends free-form strings as classes.
    """

    def __init__(self, max_classes: int, classes: Sequence[str] | None = None) -> None:
        self.max_classes = max_classes
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        for name in classes or ():
            self.index_of(canonical_class(name))

    def __len__(self) -> int:
        return len(self.names)

    def index_of(self, name: str) -> int:
        """The index of ``name``, adding it if there is room; -1 if the cap is reached."""
        idx = self._index.get(name)
        if idx is not None:
            return idx
        if len(self.names) >= self.max_classes:
            return -1
        idx = len(self.names)
        self.names.append(name)
        self._index[name] = idx
        return idx


@dataclass(slots=True)
class Normalized:
    """One batch column after normalisation.

    ``valid`` marks the inputs that fit the task; ``values`` holds one value per
    *valid* input (same order): float scores/values, or int class indices.
    ``proba`` (multiclass predictions only) has one row per valid input over the
    classes known when the batch was read, NaN rows where the prediction had no
    scores. ``rejected`` counts the others by reason. ``hard`` (binary predictions,
    when any is one) marks the valid values that were a class (a bool or a string), not
    a score: their 1.0/0.0 is no probability to estimate performance from.
    """

    valid: np.ndarray
    values: np.ndarray
    proba: np.ndarray | None = None
    rejected: dict[str, int] = field(default_factory=dict)
    hard: np.ndarray | None = None


def _finite_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if value is None:
            raise InvalidEvent(MISSING, "value is missing")
        if isinstance(value, str | bool):
            raise InvalidEvent(NOT_A_NUMBER, f"expected a number, got {type(value).__name__}")
        raise InvalidEvent(UNEXPECTED_TYPE, f"expected a number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidEvent(NON_FINITE, "value is not finite")
    return out


def _regression_value(value: Any) -> float:
    out = _finite_number(value)
    if abs(out) > MAX_REGRESSION_MAGNITUDE:
        raise InvalidEvent(VALUE_TOO_LARGE, f"magnitude above {MAX_REGRESSION_MAGNITUDE:g}")
    return out


def _regression_label(value: Any) -> float:
    """A regression label: a number, or a numeric string (``"3.5"``) read as a number.

    Why: the README accepts numeric strings in numeric features (``"52000"``), and
    producers that write labels through CSV or a string-typed column send ``"3.5"``; such
    labels were rejected whole (``label_not_for_task``) while the same value in a feature
    was a number. Read as features read them (Python's ``float``); a string that is no
    number stays ``not_a_number``, one beyond the range ``non_finite`` or
    ``value_too_large``, as the number would be.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidEvent(NOT_A_NUMBER, "expected a number or a numeric string") from None
    return _regression_value(value)


def _regression_labels(items: list[Any]) -> Normalized:
    """:func:`normalize_labels` of a regression task, one value at a time."""
    valid = np.zeros(len(items), dtype=bool)
    values: list[float] = []
    reasons: list[str] = []
    for i, v in enumerate(items):
        try:
            values.append(_regression_label(v))
            valid[i] = True
        except InvalidEvent as exc:
            reasons.append(exc.reason)
    return Normalized(valid, np.asarray(values, dtype=np.float64), None, _reject_counts(reasons))


def _score(value: Any) -> float:
    out = _finite_number(value)
    if not 0.0 <= out <= 1.0:
        raise InvalidEvent(SCORE_OUT_OF_RANGE, "score is outside [0, 1]")
    return out


def _numeric_fast_path(raw: Any) -> np.ndarray | None:
    """A float64 view of ``raw`` if it already is a numeric array (the vectorised case)."""
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "fiu":
        return raw.astype(np.float64, copy=False).reshape(-1)
    return None


def _reject_counts(reasons: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _vector_numbers(arr: np.ndarray, *, unit_interval: bool) -> Normalized:
    finite = np.isfinite(arr)
    valid = finite.copy()
    rejected: dict[str, int] = {}
    if (n_bad := int((~finite).sum())) > 0:
        rejected[NON_FINITE] = n_bad
    if unit_interval:
        in_range = (arr >= 0.0) & (arr <= 1.0)
        out_of_range = finite & ~in_range
        if (n_out := int(out_of_range.sum())) > 0:
            rejected[SCORE_OUT_OF_RANGE] = n_out
        valid &= in_range
    else:
        too_large = finite & (np.abs(arr) > MAX_REGRESSION_MAGNITUDE)
        if (n_large := int(too_large.sum())) > 0:
            rejected[VALUE_TOO_LARGE] = n_large
            valid &= ~too_large
    return Normalized(valid=valid, values=arr[valid].copy(), rejected=rejected)


def normalize_predictions(
    raw: Sequence[Any] | np.ndarray,
    task: str,
    *,
    positive_class: str = "1",
    classes: ClassIndex | None = None,
) -> Normalized:
    """Check and convert one batch of decoded prediction values for ``task``.

    ``positive_class`` must already be canonical (see :func:`canonical_class`);
    ``classes`` is required for multiclass and learns new classes as it goes.

    >>> out = normalize_predictions([0.9, "x", 1.5, None], "regression")
    >>> out.valid.tolist(), out.values.tolist(), sorted(out.rejected.items())
    ([True, False, True, False], [0.9, 1.5], [('missing', 1), ('not_a_number', 1)])
    """
    fast = _numeric_fast_path(raw)
    if fast is not None and task in ("binary", "regression"):
        return _vector_numbers(fast, unit_interval=task == "binary")
    items = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    n = len(items)
    valid = np.zeros(n, dtype=bool)
    reasons: list[str] = []
    if task == "regression":
        values: list[float] = []
        for i, v in enumerate(items):
            try:
                values.append(_regression_value(v))
                valid[i] = True
            except InvalidEvent as exc:
                reasons.append(exc.reason)
        return Normalized(
            valid, np.asarray(values, dtype=np.float64), None, _reject_counts(reasons)
        )
    if task == "binary":
        scores: list[float] = []
        hard: list[int] = []  # positions in ``scores`` of class predictions
        for i, v in enumerate(items):
            try:
                if isinstance(v, bool | str):
                    scores.append(1.0 if _is_positive(v, positive_class) else 0.0)
                    hard.append(len(scores) - 1)
                elif isinstance(v, dict):
                    if positive_class not in v:
                        raise InvalidEvent(MISSING_POSITIVE_SCORE, "no score for positive class")
                    scores.append(_score(v[positive_class]))
                else:
                    scores.append(_score(v))
                valid[i] = True
            except InvalidEvent as exc:
                reasons.append(exc.reason)
        hard_mask = None
        if hard:
            hard_mask = np.zeros(len(scores), dtype=bool)
            hard_mask[hard] = True
        return Normalized(
            valid, np.asarray(scores, dtype=np.float64), None, _reject_counts(reasons), hard_mask
        )
    if task == "multiclass":
        if classes is None:
            raise ValueError("multiclass normalisation needs a ClassIndex")
        indices: list[int] = []
        rows: list[list[tuple[int, float]] | None] = []
        for i, v in enumerate(items):
            try:
                if isinstance(v, dict):
                    idx, row = _class_scores(v, classes)
                else:
                    idx, row = _class_of(v, classes), None
                indices.append(idx)
                rows.append(row)
                valid[i] = True
            except InvalidEvent as exc:
                reasons.append(exc.reason)
        proba = None
        if any(r is not None for r in rows):
            proba = np.full((len(rows), len(classes)), np.nan)
            for r, row in enumerate(rows):
                if row is not None:
                    proba[r] = 0.0
                    for col, p in row:
                        proba[r, col] = p
        return Normalized(
            valid, np.asarray(indices, dtype=np.int64), proba, _reject_counts(reasons)
        )
    raise ValueError(f"unknown task {task!r}")


def _stored_class(value: Any) -> str:
    """The canonical name of a class a multiclass model will store (bounded in length)."""
    name = canonical_class(value)
    if len(name) > MAX_CLASS_CHARS:
        raise InvalidEvent(CLASS_TOO_LONG, f"class name longer than {MAX_CLASS_CHARS} characters")
    return name


def _class_of(value: Any, classes: ClassIndex) -> int:
    idx = classes.index_of(_stored_class(value))
    if idx < 0:
        raise InvalidEvent(TOO_MANY_CLASSES, "class cap reached")
    return idx


def _class_scores(
    scores: dict[Any, Any], classes: ClassIndex
) -> tuple[int, list[tuple[int, float]]]:
    if not scores:
        raise InvalidEvent(INVALID_PROBABILITIES, "empty class-score object")
    parsed: list[tuple[str, float]] = []
    for key, value in scores.items():
        try:
            p = _finite_number(value)
        except InvalidEvent as exc:
            raise InvalidEvent(INVALID_PROBABILITIES, "class score is not a finite number") from exc
        if p < 0.0:
            raise InvalidEvent(INVALID_PROBABILITIES, "class score is negative")
        parsed.append((_stored_class(key), p))
    total = math.fsum(p for _, p in parsed)
    if total <= 0.0:
        raise InvalidEvent(INVALID_PROBABILITIES, "class scores sum to zero")
    # Check the cap before registering anything, so a rejected event adds no class.
    unknown = {name for name, _ in parsed if name not in classes._index}
    if len(classes) + len(unknown) > classes.max_classes:
        raise InvalidEvent(TOO_MANY_CLASSES, "class cap reached")
    row = [(classes.index_of(name), p / total) for name, p in parsed]
    best = max(range(len(row)), key=lambda j: row[j][1])
    return row[best][0], row


def label_problem(value: Any, task: str, *, positive_class: str = "1") -> str | None:
    """Why ``value`` cannot be a label of ``task`` (a reason of :data:`REASONS`), or None.

    What :func:`normalize_labels` would reject it for, without learning anything: a new
    multiclass class past the cap is only found when the label is normalised.

    >>> [label_problem(v, "binary") for v in ("true", 2, "yes")]
    [None, 'not_a_binary_class', 'not_a_binary_class']
    """
    try:
        if task == "binary":
            _is_positive(value, positive_class)
        elif task == "regression":
            _regression_label(value)
        elif task == "multiclass":
            _stored_class(value)
        else:
            raise ValueError(f"unknown task {task!r}")
    except InvalidEvent as exc:
        return exc.reason
    return None


def normalize_labels(
    raw: Sequence[Any] | np.ndarray,
    task: str,
    *,
    positive_class: str = "1",
    classes: ClassIndex | None = None,
) -> Normalized:
    """Check and convert one batch of decoded label values for ``task``.

    Binary labels become 1 (the positive class) or 0 (the other class: see
    :func:`binary_class`); multiclass labels class indices; regression labels floats.

    >>> out = normalize_labels([1, True, "true", "1.0", 0, "false", 0.5, 2, {"a": 1}], "binary")
    >>> out.values.tolist(), sorted(out.rejected)
    ([1, 1, 1, 1, 0, 0], ['non_integer_class', 'not_a_binary_class', 'unexpected_type'])
    """
    fast = _numeric_fast_path(raw)
    if fast is not None and task == "regression":
        return _vector_numbers(fast, unit_interval=False)
    items = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    if task == "regression":
        return _regression_labels(items)
    n = len(items)
    valid = np.zeros(n, dtype=bool)
    out: list[int] = []
    reasons: list[str] = []
    for i, v in enumerate(items):
        try:
            if task == "binary":
                out.append(1 if _is_positive(v, positive_class) else 0)
            elif task == "multiclass":
                if classes is None:
                    raise ValueError("multiclass normalisation needs a ClassIndex")
                out.append(_class_of(v, classes))
            else:
                raise ValueError(f"unknown task {task!r}")
            valid[i] = True
        except InvalidEvent as exc:
            reasons.append(exc.reason)
    return Normalized(valid, np.asarray(out, dtype=np.int64), None, _reject_counts(reasons))


__all__ = [
    "MAX_CLASS_CHARS",
    "MAX_REGRESSION_MAGNITUDE",
    "REASONS",
    "ZERO_ONE",
    "ClassIndex",
    "Normalized",
    "binary_class",
    "canonical_class",
    "label_problem",
    "normalize_labels",
    "normalize_predictions",
]
