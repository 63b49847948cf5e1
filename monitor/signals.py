"""What the monitoring pipeline tells the alert engine after each evaluation.

A core module shared by the detectors, the drift layer, performance tracking and
the alert policy: the severity scale, its order, the prediction's subject name and
the two value types the pipeline hands to alerting. It imports nothing but the
standard library, so every core module can depend on it.

The pipeline (one model, one evaluation step) produces a list of
:class:`Signal` values plus one :class:`EvaluationContext`. The alert engine
turns them into notifications; it never looks at windows or detectors itself.
Every signal the pipeline knows about is reported at every evaluation, active
or not (``severity="ok"``), so the engine can resolve alerts whose condition
cleared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

T = TypeVar("T")

SignalKind = Literal["drift", "performance", "data_quality", "multivariate"]
#: The one severity scale of the monitor: a detector's grade, a drift verdict, a
#: signal, a notification.
Severity = Literal["ok", "warning", "critical"]
SignalSeverity = Severity

#: ``ok < warning < critical``: the order every comparison of severities uses (the
#: drift layer's worst result, the alert policy's escalation, the severity gauge).
SEVERITY_RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}

#: The subject name of the model's prediction, beside the feature names (in a
#: reference profile, a drift verdict and a signal). Features cannot use it.
PREDICTION = "__prediction__"
#: The subject of the multivariate verdict, beside the feature names: about the numeric
#: features together, so never counted among the drifting features.
MULTIVARIATE = "__multivariate__"
#: The column label drift is reported as (the labelled window against the first one).
LABEL = "__label__"
#: The monitor's own column and subject names. A feature so named would be merged with or
#: mistaken for them (a feature ``__prediction__`` vanished behind the prediction, one
#: named ``__label__`` was shown as the label column), so none is ever a feature: declared,
#: it is a configuration error; in events and reference files it is an unknown feature.
RESERVED_COLUMNS = frozenset({PREDICTION, LABEL, MULTIVARIATE})
#: The longest feature name: a feature name is a label of every per-feature metric, a key
#: of /api/status and the pages, and part of each checkpoint, so one learned from the wire
#: is bounded like a model's name (a longer one is an unknown feature).
MAX_FEATURE_NAME_CHARS = 200
#: The default of ``limits.max_category_chars`` (the reasons are argued there, in
#: :class:`monitor.config.LimitsConfig`); here so the reference builders, which do not
#: import the configuration, default to the same bound.
MAX_CATEGORY_CHARS = 1000
#: Event fields (not features) a segment may slice by (``segments: [model_version]``).
SEGMENT_EVENT_FIELDS = frozenset({"model_version"})


def severity_rank(severity: str) -> int:
    """Rank of a severity; unknown strings rank as ok so they can never page."""
    return SEVERITY_RANK.get(severity, 0)


@dataclass(frozen=True, slots=True)
class Signal:
    """One observed condition of one model at one evaluation.

    ``subject`` is bounded and stable: a feature name (``"income"``), the
    prediction (``"__prediction__"``), a metric (``"accuracy"``) or a quality
    rate (``"missing_rate:income"``). ``severity`` is already the verdict
    after the drift layer's correction and persistence: ``"ok"`` means the
    condition is not present now.
    """

    model: str
    kind: SignalKind
    subject: str
    severity: SignalSeverity
    value: float
    threshold: float
    detector: str | None = None
    details: dict[str, float | str | None] = field(default_factory=dict)
    #: The segment the signal is about (``region=north``, :mod:`monitor.segments`: escaped
    #: and bounded), or None for the model's whole traffic.
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """Where and when an evaluation happened: the evidence a notification carries."""

    model: str
    model_version: str | None
    evaluated_at: float  # event time of the evaluation (newest event): replays give the same keys
    window_start: float  # event time of the oldest event in the window, epoch seconds
    window_end: float  # event time of the newest event in the window
    window_events: int  # events in the window
    events_total: int  # events seen for this model since the monitor started tracking it
    evaluation_seq: int = 0  # monotonically increasing per model; part of idempotency keys


def slot_constructor(cls: type[T]) -> Callable[..., T]:
    """A constructor of the frozen, slotted dataclass ``cls`` taking every field
    positionally, in field order, and nothing else: for the few objects an evaluation
    builds by the dozen (a result per detector and column, a verdict and a signal per
    column).

    Why: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (a call with a name to look up); the slots' own descriptors
    set them directly, for half the cost. The object is the same (same class, same
    fields, ``==`` to the ``__init__``'s), but ``__post_init__`` and defaults are not run:
    ``cls`` must have neither a ``__post_init__`` nor a field left out (checked here).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if getattr(cls, "__slots__", None) is None or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: not a slotted dataclass without __post_init__")
    setters = [getattr(cls, name).__set__ for name in names]
    new = object.__new__
    args = ", ".join(f"a{i}" for i in range(len(names)))
    body = "; ".join(f"s{i}(o, a{i})" for i in range(len(names)))
    scope: dict[str, Any] = {"new": new, "cls": cls} | {
        f"s{i}": setter for i, setter in enumerate(setters)
    }
    # One flat function (generated, as dataclasses generates __init__): a loop over the
    # setters would cost what it saves.
    exec(f"def build({args}):\n    o = new(cls); {body}\n    return o", scope)
    build: Callable[..., T] = scope["build"]
    build.__doc__ = f"{cls.__name__}({', '.join(names)}), every field given, by its slots."
    return build
