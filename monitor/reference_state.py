"""A model's reference over time: learning it from the stream, per-version and window profiles.

Where the profile the detectors compare against comes from, besides the
configured file: :class:`ReferenceLearner` collects a model's first events and
builds a profile from them; :func:`version_switch_at` finds where a batch moves
to a model version with its own profile; :func:`window_profile` turns the
window into the next reference (``reference.mode: previous_window``);
:func:`fit_detectors` fits every column's detectors on a profile. A learned or
window profile is saved in a checkpoint with :func:`pack_profile` (a configured
one is not: the config wins). The monitor decides when; these do the work. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

import numpy as np

from monitor.columns import Columns
from monitor.config import LimitsConfig, ResolvedModel
from monitor.detectors.base import Detector
from monitor.detectors.fitting import fit_column_detectors
from monitor.events import ModelEvents
from monitor.reference import (
    PREDICTION,
    FeatureProfile,
    ReferenceProfile,
    SegmentReference,
    build_profile,
    profile_numeric,
    segment_references,
)
from monitor.signals import MAX_FEATURE_NAME_CHARS
from monitor.state_format import (
    FeatureProfileState,
    ProfileState,
    SegmentProfileState,
    SegmentReferenceState,
    StateFormatError,
    pack_array,
    unpack_array,
)
from monitor.summary import summarize_categorical, summarize_numeric
from monitor.window import SlidingWindow

#: The values a feature can hold (a bool is an int). Anything else from the wire (a JSON
#: list or object) is a wrong-type value wherever it goes.
_SCALARS = (str, int, float)


def _kept_row(features: dict[str, Any]) -> dict[str, Any]:
    """``features`` as the learner keeps it: a list or object value (an embedding, a
    document) replaced by an empty list, and a key longer than a feature name can be left
    out.

    The schema inference and the profile read that exactly as they read the whole row (a
    non-number, no category; a name that is no feature's), so the reference built is the
    same; but the learner holds its rows until it has ``learn_first`` of them, and every
    checkpoint saves them: 4,900 events carrying a 768-float embedding made a 31 MB state,
    saved at each checkpoint, and about 120 MB in memory. A row without such a value or key
    (nearly all) is kept as it is.
    """
    for k, v in features.items():
        if (v is not None and not isinstance(v, _SCALARS)) or len(k) > MAX_FEATURE_NAME_CHARS:
            return {
                k: v if v is None or isinstance(v, _SCALARS) else []
                for k, v in features.items()
                if len(k) <= MAX_FEATURE_NAME_CHARS
            }
    return features


class ReferenceLearner:
    """The first events of a model without a configured reference, collected as rows until
    there are enough (``reference.learn_first``, else a window) to build its profile.

    A string value longer than ``limits.max_category_chars`` is kept as None (missing):
    the profile would leave it out anyway, and the rows are in every checkpoint until
    then. The profile's ``too_long`` counts those values with the ones it left out."""

    def __init__(self, settings: ResolvedModel, limits: LimitsConfig) -> None:
        self.settings = settings
        self.limits = limits
        self.rows: list[tuple[dict[str, Any], Any]] = []
        self.too_long: dict[str, int] = {}
        self.target = settings.reference.learn_first or settings.window.size

    def restore(self, rows: list[tuple[Any, Any]]) -> None:
        """Adopt saved rows (those with a features object, at most as many as needed)."""
        self.rows = []
        self.too_long = {}
        self._extend((f, p) for f, p in rows if isinstance(f, dict))
        del self.rows[self.target :]

    def _extend(self, rows: Iterable[tuple[dict[str, Any], Any]]) -> None:
        """Append rows: their list and object values replaced (:func:`_kept_row`), their
        string values over the length bound made None (counted)."""
        limit = self.limits.max_category_chars
        out = self.rows
        for f, p in rows:
            f = _kept_row(f)
            if (type(p) is str and len(p) > limit) or any(
                type(v) is str and len(v) > limit for v in f.values()
            ):
                f, p = self._bounded(f, p, limit)
            out.append((f, p))

    def _bounded(self, f: dict[str, Any], p: Any, limit: int) -> tuple[dict[str, Any], Any]:
        counts = self.too_long
        cut = dict(f)
        for k, v in f.items():
            if type(v) is str and len(v) > limit:
                cut[k] = None
                counts[k] = counts.get(k, 0) + 1
        if type(p) is str and len(p) > limit:
            p = None
            counts[PREDICTION] = counts.get(PREDICTION, 0) + 1
        return cut, p

    def progress(self) -> tuple[int, int]:
        """(events collected, events needed)."""
        return len(self.rows), self.target

    def take(
        self, events: ModelEvents, model_version: str | None
    ) -> tuple[int, ReferenceProfile | None]:
        """Collect the batch's first events still needed: (how many taken, the profile
        built if they completed it, else None)."""
        need = self.target - len(self.rows)
        take = min(need, len(events))
        self._extend(zip(events.features[:take], events.predictions[:take], strict=True))
        if len(self.rows) < self.target:
            return take, None
        rows, self.rows = self.rows, []
        cut, self.too_long = self.too_long, {}
        profile = build_profile(
            self.settings.name,
            rows,
            schema=self.settings.features,
            prediction=self.settings.prediction,
            max_sample=self.settings.reference.max_sample,
            max_categories=self.limits.max_categories_per_feature,
            max_category_chars=self.limits.max_category_chars,
            model_version=model_version,
            source=f"first {len(rows)} events",
        )
        if self.settings.segments.by:
            pred = profile.features.get(PREDICTION)
            pred_kind: Literal["numeric", "categorical", "none"] = (
                pred.kind if pred is not None else "none"
            )
            profile.segments = segment_references(
                rows,
                self.settings.segments,
                lambda members, source: build_profile(
                    self.settings.name,
                    members,
                    schema=profile.schema(),
                    prediction=pred_kind,
                    max_sample=self.settings.reference.max_sample,
                    max_categories=self.limits.max_categories_per_feature,
                    max_category_chars=self.limits.max_category_chars,
                    model_version=model_version,
                    source=f"first {len(rows)} events, {source}",
                ),
                max_category_chars=self.limits.max_category_chars,
            )
        for name, n in cut.items():
            if name in profile.features:  # not an unknown feature's
                profile.too_long[name] = profile.too_long.get(name, 0) + n
        if len(profile.features) > self.limits.max_features_per_model + 1:
            keep = list(profile.features.items())[: self.limits.max_features_per_model]
            if PREDICTION in profile.features:
                keep.append((PREDICTION, profile.features[PREDICTION]))
            profile.features = dict(keep)
        return take, profile


#: Consecutive events of a listed version used before (not the one in use) that switch the
#: reference back to it. Why not its first event, as for a new version: while two listed
#: versions both send events (a canary, a rolling deploy, an A/B test) the reference flipped
#: at every change of version and restarted the window each time, so the model never
#: evaluated (0 evaluations in 20,000 events with 1% of them from the other version), blind
#: for the whole rollout. Mixed traffic now stays with the version it switched to; a
#: rollback, which sends the old version all the traffic, switches back after this many of
#: its events (a 10% canary makes such a run once in 1e100 events, a 50/50 split 1 in 1e30).
RETURN_AFTER_EVENTS = 100

VersionRun = tuple[str | None, int]


def version_switch_at(
    versions: list[str | None],
    current: str | None,
    refs: Mapping[str, ReferenceProfile],
    used: Collection[str] = (),
    run: VersionRun = (None, 0),
) -> tuple[int | None, VersionRun]:
    """Where the batch switches to another version's profile, and the run after the batch.

    ``current`` is the version whose profile is in use (None: the main reference), ``refs``
    the per-version profiles, ``used`` the versions switched to before, ``run`` the
    versions' run carried in from earlier batches: (version, consecutive events). A switch
    is at the first event of a listed version not used before, or at the event that
    completes :data:`RETURN_AFTER_EVENTS` consecutive events of one used before; an event
    without a version neither extends nor breaks a run. Returns (index or None, the run
    after the last event examined: empty at a switch), the same whatever the batching.
    """
    if versions[0] == current and versions[-1] == current and len(set(versions)) == 1:
        return None, (None, 0)
    run_version, run_length = run
    for i, v in enumerate(versions):
        if v is None:
            continue
        if v == current or v not in refs:
            run_version, run_length = None, 0
            continue
        if v not in used:
            return i, (None, 0)
        run_length = run_length + 1 if v == run_version else 1
        run_version = v
        if run_length >= RETURN_AFTER_EVENTS:
            return i, (None, 0)
    return None, (run_version, run_length)


def window_profile(
    model: str,
    window: SlidingWindow,
    columns: Columns,
    reference: ReferenceProfile,
    max_sample: int,
    model_version: str | None,
    events_total: int,
) -> ReferenceProfile:
    """The current window as a reference profile (``reference.mode: previous_window``)."""
    _, sorted_cols = summarize_numeric(window.numeric())
    counts = summarize_categorical(
        window.categorical(),
        columns.category_sizes(),
        columns.reference_sizes,
    )
    n = window.size
    features: dict[str, FeatureProfile] = {}
    for name, values in zip(columns.numeric_columns, sorted_cols, strict=True):
        if values.size:
            features[name] = profile_numeric(name, values, n, max_sample)
        else:  # nothing to compare against: keep the previous reference of the column
            features[name] = reference.features[name]
    for name, summary in zip(columns.categorical_columns, counts, strict=True):
        features[name] = FeatureProfile(
            name=name,
            kind="categorical",
            count=summary.count,
            missing_rate=summary.missing_rate,
            categories=list(columns.categories[name]),
            # +1 smoothing keeps categories the window lacked comparable.
            counts=summary.counts + 1,
        )
    return ReferenceProfile(
        model=model,
        features=features,
        rows=n,
        fingerprint=f"window-{window.total}",
        model_version=model_version,
        source=f"window ending at event {events_total}",
    )


def fit_detectors(
    model: str, profile: ReferenceProfile, columns: Columns, settings: ResolvedModel
) -> dict[str, list[Detector]]:
    """Every column's detectors, fitted on ``profile`` (seeded by model and column name)."""
    w = settings.window
    detectors: dict[str, list[Detector]] = {}
    n_features = len(columns.numeric_columns) + len(columns.categorical_columns)
    for name in columns.numeric_columns + columns.categorical_columns:
        prof = profile.features[name]
        detectors[name] = fit_column_detectors(
            prof.kind,
            prof.sample if prof.kind == "numeric" else prof.counts,  # type: ignore[arg-type]
            settings.drift,
            window_size=w.size,
            step=w.step,
            n_features=n_features,
            feature=name,
            seed=stable_seed(model, name),
        )
    return detectors


def pack_profile(p: ReferenceProfile) -> ProfileState:
    return ProfileState(
        model=p.model,
        features=[
            FeatureProfileState(
                name=f.name,
                kind=f.kind,
                count=f.count,
                missing_rate=f.missing_rate,
                sample=None if f.sample is None else pack_array(f.sample),
                mean=f.mean,
                std=f.std,
                min=f.min,
                max=f.max,
                quantiles=list(f.quantiles.items()),
                categories=list(f.categories),
                counts=None if f.counts is None else pack_array(f.counts),
            )
            for f in p.features.values()
        ],
        rows=p.rows,
        fingerprint=p.fingerprint,
        model_version=p.model_version,
        created_at=p.created_at,
        source=p.source,
        joint=None if p.joint is None else pack_array(p.joint),
        joint_columns=list(p.joint_columns),
        segments=[
            SegmentReferenceState(
                columns=list(ref.columns),
                values=[list(v) for v in ref.values],
                profiles=[
                    SegmentProfileState(
                        value=None if v is None else list(v), profile=pack_profile(prof)
                    )
                    for v, prof in ref.profiles.items()
                ],
            )
            for ref in p.segments.values()
        ],
    )


def unpack_profile(p: ProfileState) -> ReferenceProfile:
    features = {}
    for f in p.features:
        if f.kind not in ("numeric", "categorical"):
            raise StateFormatError("corrupt", f"profile column {f.name!r} of kind {f.kind!r}")
        if (f.sample if f.kind == "numeric" else f.counts) is None:
            raise StateFormatError("corrupt", f"profile column {f.name!r} without its values")
        features[f.name] = FeatureProfile(
            name=f.name,
            kind=f.kind,  # type: ignore[arg-type]
            count=f.count,
            missing_rate=f.missing_rate,
            sample=None if f.sample is None else unpack_array(f.sample).astype(np.float64),
            mean=f.mean,
            std=f.std,
            min=f.min,
            max=f.max,
            quantiles=dict(f.quantiles),
            categories=list(f.categories),
            counts=None if f.counts is None else unpack_array(f.counts).astype(np.int64),
        )
    return ReferenceProfile(
        model=p.model,
        features=features,
        rows=p.rows,
        fingerprint=p.fingerprint,
        model_version=p.model_version,
        created_at=p.created_at,
        source=p.source,
        joint=_joint(p),
        joint_columns=list(p.joint_columns) if _joint(p) is not None else [],
        segments={
            tuple(r.columns): SegmentReference(
                columns=tuple(r.columns),
                values=[tuple(v) for v in r.values],
                profiles={
                    None if sp.value is None else tuple(sp.value): unpack_profile(sp.profile)
                    for sp in r.profiles
                },
            )
            for r in p.segments
        },
    )


def _joint(p: ProfileState) -> np.ndarray | None:
    """The saved joint rows, if present and of the right shape (else none: learned again)."""
    if p.joint is None:
        return None
    joint = unpack_array(p.joint).astype(np.float64)
    if joint.ndim != 2 or joint.shape[1] != len(p.joint_columns):
        return None
    return joint


def stable_seed(*parts: str) -> int:
    """A seed that depends only on names (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:4], "little")
