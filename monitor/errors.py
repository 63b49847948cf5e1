"""One exception tree for the whole service.

Callers catch ours, never a dependency's: adapters translate aiokafka, httpx,
sqlite3 and pydantic errors at the boundary (``raise ... from exc``).

    MonitorError
    ├── ConfigError              the configuration file is invalid (every problem listed)
    ├── ReferenceError_          a reference profile or file cannot be loaded or built
    │   └── ReferenceMismatch      the reference does not fit the features the config declares
    ├── EventError               one event breaks the event contract
    │   ├── MalformedEvent         not JSON, not an object, invalid UTF-8, too large
    │   └── InvalidEvent           a field is missing, mistyped or non-finite
    ├── DetectorError            a detector was given bad parameters or data
    ├── StateError               the state store is unreadable, foreign or of another version
    ├── DeliveryError            a notification could not be delivered
    │   ├── RetryableDeliveryError   network error, timeout, 429, 5xx: try again later
    │   └── PermanentDeliveryError   any other 4xx: retrying cannot help
    ├── SilenceError             a silence request cannot be honoured (the HTTP edge maps it)
    │   ├── InvalidSilence         bad matchers or time box                        -> 400
    │   ├── UnknownSilence         no silence has this id                          -> 404
    │   └── ReadOnlySilence        declared in the configuration file              -> 409
    ├── SourceError              the event source (Kafka) failed
    │   └── UndecodableBatchError    a record batch's compression codec cannot be decoded
    └── ServiceStateError        a component was used outside its lifecycle
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid.

    ``problems`` holds one ``"path: message"`` line per problem, so that
    ``monitor check-config`` can report all of them at once.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class ReferenceError_(MonitorError):
    """A reference profile or reference data file cannot be used."""


class ReferenceMismatch(ReferenceError_):
    """The reference lacks a declared feature, or has it with another type."""


class EventError(MonitorError):
    """One event breaks the event contract.

    ``reason`` is a short, bounded token used as a metric label
    (``malformed_json``, ``missing_field``, ...); ``field`` names the offending
    field when there is one. Neither ever carries data from the wire beyond the
    field name, which is bounded by the contract.
    """

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class MalformedEvent(EventError):
    """The message is not a JSON object at all (bad UTF-8, bad JSON, too large)."""


class InvalidEvent(EventError):
    """The message is a JSON object but a field is missing, mistyped or out of range."""


class DetectorError(MonitorError, ValueError):
    """A detector was constructed with bad parameters or fed unusable data."""


class StateError(MonitorError):
    """The state store cannot be read: corrupt, foreign, or written by another format version."""


class DeliveryError(MonitorError):
    """A notification could not be delivered to a receiver."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        reason: str = "error",
    ):
        self.status = status
        self.retry_after = retry_after
        #: Bounded token for metrics and logs: timeout, connect, transport, invalid_url,
        #: http_429, http_4xx, http_5xx, receiver_error, error.
        self.reason = reason
        super().__init__(message)


class RetryableDeliveryError(DeliveryError):
    """Network error, timeout, HTTP 429 or 5xx: the same request may succeed later."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """HTTP 4xx other than 429: the receiver rejected the request; retrying cannot help."""

    retryable = False


class SilenceError(MonitorError):
    """A silence cannot be created or expired as asked; the message is safe to show the caller."""


class InvalidSilence(SilenceError, ValueError):
    """The matchers or the time box are invalid (ends before it starts, not finite, ...)."""


class UnknownSilence(SilenceError, KeyError):
    """No silence has the given id (a ``KeyError`` too, as a lookup miss)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "no such silence"


class ReadOnlySilence(SilenceError, ValueError):
    """Silences declared in the configuration file cannot be changed at runtime."""


class SourceError(MonitorError):
    """The event source (Kafka) failed in a way the service cannot recover from by itself."""


class UndecodableBatchError(SourceError):
    """A fetched record batch is compressed with a codec this install cannot decode.

    ``codec`` (``gzip``, ``snappy``, ``lz4``, ``zstd`` or ``unknown``) is bounded,
    for a metric label and ``/healthz``; the message names the fix.
    """

    def __init__(self, codec: str, message: str) -> None:
        self.codec = codec
        super().__init__(message)


class GroupRefusedError(SourceError):
    """The broker refused this instance a place in its consumer group, or the group's
    topics, for good: a setting it rejects (``session_timeout_ms`` outside its bounds), an
    ACL, another member with another assignment protocol. Retrying cannot help; the
    message names the setting or permission to fix."""


class ServiceStateError(MonitorError, RuntimeError):
    """A component was used outside its lifecycle, e.g. after ``stop()``."""


__all__ = [
    "ConfigError",
    "DeliveryError",
    "DetectorError",
    "EventError",
    "InvalidEvent",
    "InvalidSilence",
    "MalformedEvent",
    "MonitorError",
    "PermanentDeliveryError",
    "ReadOnlySilence",
    "ReferenceError_",
    "ReferenceMismatch",
    "RetryableDeliveryError",
    "ServiceStateError",
    "SilenceError",
    "SourceError",
    "StateError",
    "UndecodableBatchError",
    "UnknownSilence",
]
