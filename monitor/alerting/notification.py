"""The notification: what one alert (or retrain trigger) says, on the wire and in the outbox.

A :class:`Notification` is immutable and self-contained: a receiver renders
it without looking anything up, and the outbox stores it as a versioned
record (:meth:`Notification.to_record`) so a restarted service re-sends the
exact same thing with the same idempotency key.

Wire payload (:meth:`Notification.to_payload`, used by the generic webhook)::

    {"version": 1, "idempotency_key": "...", "fingerprint": "3f2a...", "action": "fire",
     "status": "firing", "model": "churn", "model_version": "7", "group": {"model": "churn"},
     "severity": "critical", "started_at": "2024-05-01T12:00:00Z",
     "evaluated_at": "2024-05-01T12:00:00Z", "ended_at": null,
     "window": {"start": "...", "end": "...", "events": 5000},
     "signals": [{"kind": "drift", "subject": "income", "severity": "critical",
                  "statistic": 0.31, "threshold": 0.2, "detector": "psi", "p_value": null,
                  "details": {}, "compared": "statistic", "alpha": null,
                  "text": "psi 0.31 > threshold 0.2"}],
     "cleared_signals": [],
     "summary": "[FIRING:critical] churn v7: 1 signal (drift income)",
     "links": {"dashboard": "https://...", "runbook": "https://..."}, "reason": null}

Each signal says what was compared with what (:meth:`SignalEvidence.comparison`):
for a hypothesis test (KS, chi-square, ...) the p-value against its
significance level ``alpha`` (``"compared": "p_value"``; ``threshold`` then
*is* alpha, and ``statistic`` is the test statistic, shown for context); for
a detector without a p-value (PSI, a performance metric, a data-quality rate)
the statistic against its threshold (``"compared": "statistic"``). ``text``
is the same comparison for humans, e.g. ``p=1.2e-05 < alpha 0.01 (ks
statistic 0.275)``. ``segment`` names the slice of the traffic a signal is about
(``"region=north"``, see :mod:`monitor.segments`), absent for the whole; the summary
then says ``income drifted in region=north``. ``cleared_signals`` lists, on an
``update``, the signals of the incident that resolved while others keep firing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from monitor.errors import StateError

#: ``summary``: the incidents a receiver's page cap folded (:mod:`monitor.alerting.page_cap`).
NotificationAction = Literal["fire", "update", "repeat", "resolve", "retrain", "summary"]
NotificationStatus = Literal["firing", "resolved"]

#: Version of the stored record and of the wire payload. Bump on an incompatible change.
FORMAT_VERSION = 1


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string with a ``Z`` suffix (millisecond precision)."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _finite(x: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats become ``None`` rather than invalid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass(frozen=True, slots=True)
class SignalEvidence:
    """One signal as reported in a notification: the statistic and what it was compared to."""

    kind: str
    subject: str
    severity: str
    statistic: float
    threshold: float
    detector: str | None = None
    p_value: float | None = None
    details: dict[str, float | str | None] = field(default_factory=dict)
    #: The segment (``region=north``: escaped and bounded at the source,
    #: :mod:`monitor.segments`), or None for the model's whole traffic.
    segment: str | None = None

    def name(self) -> str:
        """What the signal is about, for humans: ``drift income``, and for a segment's
        drift ``income drifted in region=north``.

        >>> s = SignalEvidence("drift", "s2", "warning", 0.3, 1e-5, segment="region=north")
        >>> s.name()
        's2 drifted in region=north'
        """
        if self.segment is None:
            return f"{self.kind} {self.subject}"
        if self.kind == "drift":
            return f"{self.subject} drifted in {self.segment}"
        return f"{self.kind} {self.subject} in {self.segment}"

    @property
    def compared(self) -> Literal["p_value", "statistic"]:
        """What the verdict compared to ``threshold``: the p-value (tests) or the statistic."""
        return "p_value" if self.p_value is not None else "statistic"

    def comparison(self) -> str:
        """Like with like, for humans: the p-value against alpha, else the statistic against
        its threshold; the relation is computed from the numbers, so it is always true.

        >>> SignalEvidence("drift", "x", "critical", 0.275, 1e-05, "ks", 1e-07).comparison()
        'p=1e-07 < alpha 1e-05 (ks statistic 0.275)'
        >>> SignalEvidence("drift", "x", "warning", 0.31, 0.2, "psi").comparison()
        'psi 0.31 > threshold 0.2'
        """
        if self.p_value is not None:
            name = f"{self.detector} statistic" if self.detector else "statistic"
            return (
                f"p={fmt(self.p_value)} {_relation(self.p_value, self.threshold)} alpha "
                f"{fmt(self.threshold)} ({name} {fmt(self.statistic)})"
            )
        name = self.detector or "value"
        return (
            f"{name} {fmt(self.statistic)} {_relation(self.statistic, self.threshold)} "
            f"threshold {fmt(self.threshold)}"
        )

    def record(self) -> SignalRecord:
        """The stored form; non-finite numbers become ``None`` (JSON has no NaN)."""
        return SignalRecord(
            kind=self.kind,
            subject=self.subject,
            severity=self.severity,
            statistic=_finite(self.statistic),
            threshold=_finite(self.threshold),
            detector=self.detector,
            p_value=_finite(self.p_value),
            details={k: _finite(v) for k, v in self.details.items()},
            segment=msgspec.UNSET if self.segment is None else self.segment,
        )

    def to_record(self) -> dict[str, Any]:
        """The stored form as plain JSON types (also the first part of the wire form)."""
        return msgspec.to_builtins(self.record(), enc_hook=_enc_hook)

    def to_payload(self) -> dict[str, Any]:
        """The wire form: the record plus what was compared, alpha, and the text."""
        return {
            **self.to_record(),
            "compared": self.compared,
            "alpha": _finite(self.threshold) if self.p_value is not None else None,
            "text": self.comparison(),
        }

    @classmethod
    def from_stored(cls, r: SignalRecord) -> SignalEvidence:
        """Inverse of :meth:`record` (a stored ``None`` statistic is NaN again)."""
        return cls(
            kind=r.kind,
            subject=r.subject,
            severity=r.severity,
            statistic=math.nan if r.statistic is None else r.statistic,
            threshold=math.nan if r.threshold is None else r.threshold,
            detector=r.detector,
            p_value=r.p_value,
            details=dict(r.details),
            segment=r.segment if isinstance(r.segment, str) else None,
        )

    @classmethod
    def from_record(cls, s: dict[str, Any]) -> SignalEvidence:
        """Inverse of :meth:`to_record` (also reads the wire form: extra keys are ignored)."""
        try:
            return cls.from_stored(msgspec.convert(s, SignalRecord))
        except msgspec.ValidationError as exc:
            raise StateError(f"unreadable signal record: {exc}") from exc


def fmt(x: float | None) -> str:
    """A number for humans: 4 significant digits, ``n/a`` when missing or NaN."""
    return "n/a" if x is None or x != x else f"{x:.4g}"


def _relation(a: float, b: float) -> str:
    if a != a or b != b:
        return "vs"
    return "<" if a < b else ">" if a > b else "="


def printable(text: str, limit: int = 80) -> str:
    """A string from the wire made safe for one log line: escaped, bounded.

    >>> printable("a\\nb\\u202e")
    'a\\\\nb\\\\u202e'
    """
    shown = text.encode("ascii", "backslashreplace").decode()
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return shown if len(shown) <= limit else shown[:limit] + "..."


#: Characters of a model version a notification carries (the version comes from events,
#: bounded only by the message size: one of 600 KB made a PagerDuty event over its 512 KB
#: limit, a permanent 400, the page lost).
MAX_VERSION_CHARS = 200


def bounded_version(version: str | None) -> str | None:
    """``version`` as a notification carries it: at most :data:`MAX_VERSION_CHARS`
    characters, a longer one cut with ``…``.

    >>> bounded_version("7"), len(bounded_version("x" * 10_000) or "")
    ('7', 200)
    """
    if version is None or len(version) <= MAX_VERSION_CHARS:
        return version
    return version[: MAX_VERSION_CHARS - 1] + "…"


def version_label(version: str | None) -> str:
    """``v7`` for ``7``, and ``v1`` (not ``vv1``) for a version already spelled ``v1``.

    >>> version_label("7"), version_label("v1"), version_label("V2.1"), version_label("prod")
    ('v7', 'v1', 'V2.1', 'prod')
    """
    if not version:
        return ""
    if version[0] in "vV" or not version[0].isdigit():
        return version
    return f"v{version}"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one or more receivers, about one alert group of one model.

    ``fingerprint`` identifies the alert group across incidents (PagerDuty's
    ``dedup_key``); ``idempotency_key`` identifies this very message (the
    ``webhook-id``, ``Idempotency-Key``, Airflow ``dag_run_id``) and is derived
    from fingerprint, incident start, sequence number and action, so that a
    replayed evaluation produces the same key.
    """

    idempotency_key: str
    fingerprint: str
    action: NotificationAction
    status: NotificationStatus
    model: str
    model_version: str | None
    group: dict[str, str]
    severity: str
    started_at: float
    evaluated_at: float
    window_start: float
    window_end: float
    window_events: int
    signals: tuple[SignalEvidence, ...]
    links: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    ended_at: float | None = None
    cleared: tuple[SignalEvidence, ...] = ()

    def summary(self) -> str:
        """One line for humans: status, severity, model and the signals involved."""
        label = "RESOLVED" if self.status == "resolved" else f"FIRING:{self.severity}"
        if self.action == "retrain":
            label = "RETRAIN"
        if self.action == "summary":
            # One per folded incident (model and signal kinds), ``window_events`` of them.
            count = self.window_events
            shown = ", ".join(f"{s.subject} ({s.kind})" for s in self.signals[:5])
            rest = count - len(self.signals[:5])
            more = f" and {rest} more" if rest > 0 else ""
            return (
                f"[{label}] {count} more incident{'s' * (count != 1)} past the page cap: "
                f"{shown}{more}"
            )
        shown = ", ".join(s.name() for s in self.signals[:5])
        more = f" and {len(self.signals) - 5} more" if len(self.signals) > 5 else ""
        version = f" {version_label(self.model_version)}" if self.model_version else ""
        n = len(self.signals)
        cleared = ""
        if self.cleared:
            names = ", ".join(s.name() for s in self.cleared[:5])
            extra = f" and {len(self.cleared) - 5} more" if len(self.cleared) > 5 else ""
            cleared = f"; cleared: {names}{extra}"
        return (
            f"[{label}] {self.model}{version}: {n} signal{'s' * (n != 1)} ({shown}{more}){cleared}"
        )

    def to_payload(self) -> dict[str, Any]:
        """The JSON body of the generic webhook (and ``data`` of the CloudEvent)."""
        return {
            "version": FORMAT_VERSION,
            "idempotency_key": self.idempotency_key,
            "fingerprint": self.fingerprint,
            "action": self.action,
            "status": self.status,
            "model": self.model,
            "model_version": self.model_version,
            "group": dict(self.group),
            "severity": self.severity,
            "started_at": iso(self.started_at),
            "evaluated_at": iso(self.evaluated_at),
            "ended_at": iso(self.ended_at),
            "window": {
                "start": iso(self.window_start),
                "end": iso(self.window_end),
                "events": self.window_events,
            },
            "signals": [s.to_payload() for s in self.signals],
            "cleared_signals": [s.to_payload() for s in self.cleared],
            "summary": self.summary(),
            "links": dict(self.links),
            "reason": self.reason,
        }

    def record(self) -> NotificationRecord:
        """Lossless, versioned form for the outbox (epoch floats, not ISO strings)."""
        return NotificationRecord(
            format=FORMAT_VERSION,
            idempotency_key=self.idempotency_key,
            fingerprint=self.fingerprint,
            action=self.action,
            status=self.status,
            model=self.model,
            model_version=self.model_version,
            group=dict(self.group),
            severity=self.severity,
            started_at=self.started_at,
            evaluated_at=self.evaluated_at,
            window_start=self.window_start,
            window_end=self.window_end,
            window_events=self.window_events,
            signals=[s.record() for s in self.signals],
            links=dict(self.links),
            reason=self.reason,
            ended_at=self.ended_at,
            cleared=[s.record() for s in self.cleared],
        )

    def encode(self) -> bytes:
        """The outbox row's JSON (msgspec; NaN/Infinity never reach it: see ``record``)."""
        return _ENCODER.encode(self.record())

    @classmethod
    def decode(cls, data: bytes | str) -> Notification:
        """Inverse of :meth:`encode`; also reads rows written by earlier builds of format 1.

        A row that is not JSON, misses a field, has a mistyped one or another
        format version is a :class:`StateError` naming the problem.
        """
        try:
            record = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StateError(f"unreadable outbox record: {exc}") from exc
        except UnicodeError as exc:  # a str with a lone surrogate (an alerts-topic record)
            raise StateError(f"unreadable outbox record: not UTF-8 ({exc.reason})") from exc
        return cls.from_stored(record)

    @classmethod
    def from_stored(cls, r: NotificationRecord) -> Notification:
        """The notification of a decoded record (checks the format version)."""
        if r.format != FORMAT_VERSION:
            raise StateError(f"outbox record format {r.format!r} != {FORMAT_VERSION}")
        return cls(
            idempotency_key=r.idempotency_key,
            fingerprint=r.fingerprint,
            action=r.action,
            status=r.status,
            model=r.model,
            model_version=r.model_version,
            group=dict(r.group),
            severity=r.severity,
            started_at=r.started_at,
            evaluated_at=r.evaluated_at,
            window_start=r.window_start,
            window_end=r.window_end,
            window_events=r.window_events,
            signals=tuple(SignalEvidence.from_stored(s) for s in r.signals),
            links=dict(r.links),
            reason=r.reason,
            ended_at=r.ended_at,
            cleared=tuple(SignalEvidence.from_stored(s) for s in r.cleared),
        )

    def to_record(self) -> dict[str, Any]:
        """:meth:`record` as plain JSON types."""
        return msgspec.to_builtins(self.record(), enc_hook=_enc_hook)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Notification:
        """Inverse of :meth:`to_record`; an invalid record is a :class:`StateError`."""
        try:
            stored = msgspec.convert(record, NotificationRecord)
        except msgspec.ValidationError as exc:
            raise StateError(f"unreadable outbox record: {exc}") from exc
        return cls.from_stored(stored)


class SignalRecord(msgspec.Struct, frozen=True):
    """Stored form of a :class:`SignalEvidence` (format 1): ``None`` where a number was NaN."""

    kind: str
    subject: str
    severity: str
    statistic: float | None
    threshold: float | None
    detector: str | None = None
    p_value: float | None = None
    details: dict[str, Any] = {}
    # Only a segment's signal has one (so the whole traffic's records and payloads are
    # byte for byte what earlier builds wrote); absent: the whole traffic.
    segment: str | msgspec.UnsetType = msgspec.UNSET


class NotificationRecord(msgspec.Struct, frozen=True):
    """Stored form of a :class:`Notification`: one outbox row's ``payload``.

    Format 1, the same JSON object earlier builds wrote by hand; fields added
    since have defaults (``cleared``), so their rows still load, and unknown
    keys are ignored, so a row of a newer build of the same format loads too.
    """

    format: int
    idempotency_key: str
    fingerprint: str
    action: NotificationAction
    status: NotificationStatus
    model: str
    model_version: str | None
    group: dict[str, str]
    severity: str
    started_at: float
    evaluated_at: float
    window_start: float
    window_end: float
    window_events: int
    signals: list[SignalRecord]
    links: dict[str, str] = {}
    reason: str | None = None
    ended_at: float | None = None
    cleared: list[SignalRecord] = []


def _enc_hook(obj: Any) -> Any:
    """numpy scalars in ``details`` (detector statistics) as the Python numbers they hold."""
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    raise NotImplementedError(f"not JSON serialisable: {type(obj).__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_DECODER = msgspec.json.Decoder(NotificationRecord)


__all__ = [
    "FORMAT_VERSION",
    "Notification",
    "NotificationAction",
    "NotificationRecord",
    "NotificationStatus",
    "SignalEvidence",
    "SignalRecord",
    "bounded_version",
    "fmt",
    "iso",
    "printable",
    "version_label",
]
