"""Join delayed labels to their predictions by event id, in bounded memory.

Labels arrive minutes to weeks after the prediction they grade, in any order,
sometimes twice (Kafka is at-least-once), sometimes never, and occasionally
*before* the prediction (the two topics are consumed independently). The joiner
keeps four insertion-ordered stores, each with a hard size cap, so memory stays
bounded whatever the label delay or the volume of unlabelled traffic:

``pending``    predictions waiting for a label (TTL ``ttl_seconds``, cap ``max_pending``)
``early``      labels waiting for a prediction (TTL ``early_ttl_seconds``, cap ``early_max``)
``labelled``   ids already joined, to recognise duplicate labels (cap ``max_tombstones``)
``evicted``    ids of predictions evicted unlabelled, to tell "expired" from
               "unknown" (cap ``max_tombstones``)

Every label ends in exactly one outcome, counted per call and cumulatively:

* ``matched``   its prediction was pending: the pair is returned;
* ``duplicate`` its event was already labelled, already has a held label, or the
                same id appears earlier in the batch;
* ``expired``   its prediction was evicted (TTL or cap) before the label came;
* ``early``     no prediction yet: the label is held; if the prediction arrives in
                time the pair is returned by :meth:`LabelJoiner.add_predictions`,
                otherwise the held label is evicted and counted as
                ``early_expired``/``early_evicted`` (i.e. it turned out unknown);
* ``unknown``   no prediction and early holding disabled (``early_max == 0``).

Tombstones are an approximation by design: once an id has been pushed out of the
``evicted`` set by newer evictions, a very late label for it looks like an early
label (then unknown), not "expired". With the defaults that takes more than 200k
evictions between the prediction's eviction and its label.

TTLs run on *processing time* (the ``now`` passed in), not on event timestamps:
event time may be missing or skewed, and what must be bounded is how long the
monitor holds state. Stores are ordered by insertion, so eviction pops from the
front and costs O(evicted). The per-event work is one dict lookup per store; no
numpy per event.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.state_format import JoinEntry, JoinerState

_COUNTERS: tuple[str, ...] = (
    "predictions_added",
    "predictions_duplicate",
    "matched",
    "duplicate",
    "expired",
    "early",
    "unknown",
    "pending_expired",
    "pending_evicted",
    "early_expired",
    "early_evicted",
)


@dataclass(slots=True)
class EvictionCounts:
    """What one :meth:`LabelJoiner.expire` pass (or cap enforcement) removed.

    ``pending_expired``/``pending_evicted``: predictions dropped unlabelled by TTL /
    by the size cap. ``early_expired``/``early_evicted``: held labels whose
    prediction never came, by TTL / by the size cap.
    """

    pending_expired: int = 0
    pending_evicted: int = 0
    early_expired: int = 0
    early_evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "pending_expired": self.pending_expired,
            "pending_evicted": self.pending_evicted,
            "early_expired": self.early_expired,
            "early_evicted": self.early_evicted,
        }


@dataclass(slots=True)
class JoinResult:
    """The pairs one call joined, and how every input of the call ended.

    ``predictions``/``labels`` are the payloads given to the joiner, in join order
    (one per matched pair); ``prediction_timestamps``/``label_timestamps`` are the
    event timestamps given with them (NaN if unknown). ``accepted`` marks the
    inputs of this call that were taken: new predictions (stored or matched), or
    labels matched or held. Counts describe the inputs of this call; ``evictions``
    what the call evicted to honour TTLs and caps.
    """

    event_ids: list[str]
    predictions: list[Any]
    labels: list[Any]
    prediction_timestamps: np.ndarray
    label_timestamps: np.ndarray
    accepted: np.ndarray
    matched: int = 0
    duplicate: int = 0
    expired: int = 0
    early: int = 0
    unknown: int = 0
    evictions: EvictionCounts = field(default_factory=EvictionCounts)

    @property
    def label_delays(self) -> np.ndarray:
        """Label event time minus prediction event time, seconds (NaN if either is unknown)."""
        return self.label_timestamps - self.prediction_timestamps


def _as_list(values: Sequence[Any] | np.ndarray) -> list[Any]:
    # tolist() turns rows of a 2-D array into lists, so no stored value keeps a
    # whole batch array alive through a numpy view.
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _timestamps(timestamps: Sequence[float] | np.ndarray | None, n: int) -> list[float]:
    if timestamps is None:
        return [float("nan")] * n
    out = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if out.shape[0] != n:
        raise ValueError(f"{out.shape[0]} timestamps for {n} events")
    return out.tolist()


class LabelJoiner:
    """Bounded hash join of labels to predictions for one model. See the module docstring.

    >>> j = LabelJoiner(ttl_seconds=60, max_pending=10)
    >>> _ = j.add_predictions(["a", "b"], [0.9, 0.2], None, now=0.0)
    >>> r = j.add_labels(["b", "b", "zz"], [0, 0, 1], None, now=5.0)
    >>> r.predictions, r.labels, r.matched, r.duplicate, r.early
    ([0.2], [0], 1, 1, 1)
    >>> j.expire(now=100.0).pending_expired
    1
    >>> j.add_labels(["a"], [1], None, now=101.0).expired
    1
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_pending: int,
        early_ttl_seconds: float = 600.0,
        early_max: int = 100_000,
        max_tombstones: int = 200_000,
    ) -> None:
        if ttl_seconds <= 0 or max_pending < 1:
            raise ValueError("ttl_seconds must be > 0 and max_pending >= 1")
        if early_ttl_seconds < 0 or early_max < 0 or max_tombstones < 0:
            raise ValueError("early_ttl_seconds, early_max and max_tombstones must be >= 0")
        self.ttl_seconds = float(ttl_seconds)
        self.max_pending = int(max_pending)
        self.early_ttl_seconds = float(early_ttl_seconds)
        self.early_max = int(early_max)
        self.max_tombstones = int(max_tombstones)
        # event_id -> (arrival time, event timestamp, prediction payload)
        self._pending: OrderedDict[str, tuple[float, float, Any]] = OrderedDict()
        # event_id -> (arrival time, event timestamp, label payload)
        self._early: OrderedDict[str, tuple[float, float, Any]] = OrderedDict()
        self._labelled: OrderedDict[str, None] = OrderedDict()
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self.counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    # -- sizes (bounded by construction; exposed for gauges and tests) ---------------------

    def sizes(self) -> dict[str, int]:
        """Current number of entries in each internal store."""
        return {
            "pending": len(self._pending),
            "early": len(self._early),
            "labelled": len(self._labelled),
            "evicted": len(self._evicted),
        }

    # -- eviction --------------------------------------------------------------------------

    def expire(self, now: float) -> EvictionCounts:
        """Evict predictions and held labels older than their TTL (processing time)."""
        ev = EvictionCounts()
        pending = self._pending
        horizon = now - self.ttl_seconds
        while pending:
            event_id, entry = next(iter(pending.items()))
            if entry[0] > horizon:
                break
            pending.popitem(last=False)
            self._tombstone(self._evicted, event_id)
            ev.pending_expired += 1
        early = self._early
        horizon = now - self.early_ttl_seconds
        while early:
            entry = next(iter(early.values()))
            if entry[0] > horizon:
                break
            early.popitem(last=False)
            ev.early_expired += 1
        self._count_evictions(ev)
        return ev

    def _count_evictions(self, ev: EvictionCounts) -> None:
        for key, value in ev.as_dict().items():
            self.counts[key] += value

    def _tombstone(self, store: OrderedDict[str, None], event_id: str) -> None:
        if self.max_tombstones == 0:
            return
        store[event_id] = None
        if len(store) > self.max_tombstones:
            store.popitem(last=False)

    # -- inputs ----------------------------------------------------------------------------

    def add_predictions(
        self,
        event_ids: Sequence[str],
        predictions: Sequence[Any] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None,
        now: float,
    ) -> JoinResult:
        """Store predictions until their label comes; join those whose label came early.

        A prediction whose id is already pending or already labelled is a redelivery
        and is ignored (``counts["predictions_duplicate"]``).
        """
        ids = list(event_ids)
        preds = _as_list(predictions)
        n = len(ids)
        if len(preds) != n:
            raise ValueError(f"{len(preds)} predictions for {n} event ids")
        ts = _timestamps(timestamps, n)
        ev = self.expire(now)
        out = JoinResult([], [], [], np.empty(0), np.empty(0), np.zeros(n, dtype=bool))
        out.evictions = ev
        pending, early, labelled = self._pending, self._early, self._labelled
        m_ids, m_preds, m_labels, m_pts, m_lts = [], [], [], [], []
        duplicates = 0
        for i in range(n):
            event_id = ids[i]
            if event_id in pending or event_id in labelled:
                duplicates += 1
                continue
            out.accepted[i] = True
            held = early.pop(event_id, None)
            if held is not None:
                m_ids.append(event_id)
                m_preds.append(preds[i])
                m_labels.append(held[2])
                m_pts.append(ts[i])
                m_lts.append(held[1])
                self._tombstone(labelled, event_id)
                continue
            pending[event_id] = (now, ts[i], preds[i])
            if len(pending) > self.max_pending:
                old_id, _ = pending.popitem(last=False)
                self._tombstone(self._evicted, old_id)
                ev.pending_evicted += 1
                self.counts["pending_evicted"] += 1
        out.event_ids, out.predictions, out.labels = m_ids, m_preds, m_labels
        out.prediction_timestamps = np.asarray(m_pts, dtype=np.float64)
        out.label_timestamps = np.asarray(m_lts, dtype=np.float64)
        out.matched = len(m_ids)
        self.counts["predictions_added"] += n - duplicates
        self.counts["predictions_duplicate"] += duplicates
        self.counts["matched"] += out.matched
        return out

    def add_labels(
        self,
        event_ids: Sequence[str],
        labels: Sequence[Any] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None,
        now: float,
    ) -> JoinResult:
        """Join labels to pending predictions; classify and count the rest."""
        ids = list(event_ids)
        labs = _as_list(labels)
        n = len(ids)
        if len(labs) != n:
            raise ValueError(f"{len(labs)} labels for {n} event ids")
        ts = _timestamps(timestamps, n)
        ev = self.expire(now)
        out = JoinResult([], [], [], np.empty(0), np.empty(0), np.zeros(n, dtype=bool))
        out.evictions = ev
        pending, early, labelled, evicted = (
            self._pending,
            self._early,
            self._labelled,
            self._evicted,
        )
        hold = self.early_max > 0 and self.early_ttl_seconds > 0
        m_ids, m_preds, m_labels, m_pts, m_lts = [], [], [], [], []
        for i in range(n):
            event_id = ids[i]
            entry = pending.pop(event_id, None)
            if entry is not None:
                out.accepted[i] = True
                m_ids.append(event_id)
                m_preds.append(entry[2])
                m_labels.append(labs[i])
                m_pts.append(entry[1])
                m_lts.append(ts[i])
                self._tombstone(labelled, event_id)
            elif event_id in labelled or event_id in early:
                out.duplicate += 1
            elif event_id in evicted:
                out.expired += 1
            elif hold:
                out.accepted[i] = True
                out.early += 1
                early[event_id] = (now, ts[i], labs[i])
                if len(early) > self.early_max:
                    early.popitem(last=False)
                    ev.early_evicted += 1
                    self.counts["early_evicted"] += 1
            else:
                out.unknown += 1
        out.event_ids, out.predictions, out.labels = m_ids, m_preds, m_labels
        out.prediction_timestamps = np.asarray(m_pts, dtype=np.float64)
        out.label_timestamps = np.asarray(m_lts, dtype=np.float64)
        out.matched = len(m_ids)
        for key in ("matched", "duplicate", "expired", "early", "unknown"):
            self.counts[key] += getattr(out, key)
        return out

    # -- saved state -----------------------------------------------------------------------

    def export_state(self) -> JoinerState:
        """The four stores in insertion order, and the cumulative counts."""
        return JoinerState(
            pending=[JoinEntry(k, a, t, p) for k, (a, t, p) in self._pending.items()],
            early=[JoinEntry(k, a, t, p) for k, (a, t, p) in self._early.items()],
            labelled=list(self._labelled),
            evicted=list(self._evicted),
            counts=dict(self.counts),
        )

    def restore_state(self, state: JoinerState) -> None:
        """Adopt saved stores; the configured caps apply at once (oldest entries go first).

        Predictions pushed out by a smaller ``max_pending`` are tombstoned and
        counted as evicted, exactly as if the cap had been reached while running.
        """
        self._pending = OrderedDict((e.event_id, _entry(e)) for e in state.pending)
        self._early = OrderedDict((e.event_id, _entry(e)) for e in state.early)
        self._labelled = OrderedDict.fromkeys(state.labelled[-self.max_tombstones :] or ())
        self._evicted = OrderedDict.fromkeys(state.evicted[-self.max_tombstones :] or ())
        if self.max_tombstones == 0:
            self._labelled.clear()
            self._evicted.clear()
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.counts.update({k: int(v) for k, v in state.counts.items() if k in self.counts})
        while len(self._pending) > self.max_pending:
            old_id, _ = self._pending.popitem(last=False)
            self._tombstone(self._evicted, old_id)
            self.counts["pending_evicted"] += 1
        while len(self._early) > self.early_max:
            self._early.popitem(last=False)
            self.counts["early_evicted"] += 1


def _entry(e: JoinEntry) -> tuple[float, float, Any]:
    payload = e.payload
    if isinstance(payload, list):  # multiclass (index, scores): a tuple, as when stored
        payload = tuple(payload)
    return (float(e.arrival), float(e.timestamp), payload)


__all__ = ["EvictionCounts", "JoinResult", "LabelJoiner"]
