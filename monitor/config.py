"""The service's configuration: one YAML file, validated by pydantic.

Secrets never live in the file: any string may reference the environment as
``${NAME}`` or ``${NAME:-default}``, or a file as ``${file:/run/secrets/name}`` (how
Kubernetes and Docker hand secrets over), substituted before validation. A missing
variable without a default, or a secret file that cannot be used, is a configuration
error naming the path (and the file, never its content).

:func:`load_config` returns a :class:`MonitorConfig` or raises
:class:`~monitor.errors.ConfigError` listing *every* problem as
``path: message`` (``models[0].window.size: Input should be greater than 0``),
which is what ``monitor check-config`` prints.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.alerting.config import AlertingConfig, clear_text_credentials, is_header_name
from monitor.detectors.config import DriftConfig
from monitor.errors import ConfigError, ReferenceError_
from monitor.http_hosts import ANY as ANY_HOST
from monitor.http_hosts import normalize_allowed
from monitor.performance.config import (
    PerformanceConfig,
    unused_settings_message,
    unused_without_task,
)
from monitor.signals import (
    MAX_CATEGORY_CHARS,
    MAX_FEATURE_NAME_CHARS,
    PREDICTION,
    RESERVED_COLUMNS,
    SEGMENT_EVENT_FIELDS,
)
from monitor.strict_model import (
    StrictModel,
    name_key,
    near_duplicate_problems,
    refuse_unprintable,
    unprintable_problem,
)
from monitor.tls import client_ssl_context

_log = logging.getLogger(__name__)

ColumnType = Literal["numeric", "categorical"]

#: ``${file:PATH}`` (group 1), else ``${NAME}`` / ``${NAME:-default}`` (groups 2, 3). A
#: variable named ``file`` keeps its default form: ``${file:-x}`` is not a path.
_REF = re.compile(r"\$\{(?:file:(?!-)([^}]+)|([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?)\}")

#: The largest secret file read (bytes): a secret is one value (a token, a URL, a
#: password); a bigger file is a wrong path (a log, a key store), not to be held in memory.
MAX_SECRET_FILE_BYTES = 64 * 1024


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The largest window (events): ten million rows of float64 per numeric column.
MAX_WINDOW_EVENTS = 10_000_000
#: The most events a reference is learned from: they are held as rows (and checkpointed)
#: until the reference is built, which keeps a bounded sample of them anyway.
MAX_LEARN_EVENTS = 1_000_000


#: Kafka's rule for topic names (its ``Topic.validate``): these characters, at most 249.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic_problem(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic, or None. Such a topic passed the check,
    then the monitor ran without consuming, logging "'a b' is not a valid topic name"
    every few seconds while /healthz said it was fine."""
    if name in (".", "..") or not _TOPIC_NAME.fullmatch(name):
        return (
            f"{name[:60]!r} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -, "
            "not '.' or '..')"
        )
    return None


def _bootstrap_problem(entry: str) -> str | None:
    """Why one ``bootstrap_servers`` entry (``host``, ``host:port``, ``[v6]:port``) cannot
    be connected to, or None (a missing port is Kafka's 9092, as aiokafka takes it)."""
    if not entry:
        return "an empty entry"
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if not bracket or not host or (rest and port is None):
            return "not a [IPv6]:port address"
    elif entry.count(":") > 1:  # a bare IPv6 address: aiokafka takes it without a port
        return None
    else:
        host, colon, port_text = entry.partition(":")
        port = port_text if colon else None
        if not host:
            return "no host"
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return "the port must be a number from 1 to 65535"
    if any(c.isspace() for c in entry):
        return "a space inside"
    return None


class KafkaConfig(_Strict):
    """Where events come from and how the consumer behaves."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    group_id: str = Field(
        "model-monitor", min_length=1, description="Consumer group; instances share it."
    )
    client_id: str = "model-monitor"
    predictions_topic: str = Field("predictions", min_length=1)
    labels_topic: str | None = Field(
        "labels", min_length=1, description="Label events; null disables."
    )
    dead_letter_topic: str | None = Field(
        None,
        min_length=1,
        description="Invalid messages are copied here (with the reason in headers).",
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_batch_records: int = Field(5000, gt=0, description="Upper bound of one getmany() batch.")
    poll_timeout_ms: int = Field(
        500,
        gt=0,
        description="How long one poll waits for events on an idle topic (also the longest "
        "a SIGTERM waits for it); at most half of stall_seconds.",
    )
    commit_interval_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="With the SQLite state store, how often the consumer group's offsets are "
        "committed to Kafka for lag monitoring (the stored offsets are what a restart resumes "
        "from); 0 commits after every batch. Always also at revocation and shutdown.",
    )
    max_message_bytes: int = Field(
        1_048_576, gt=0, description="Larger messages are rejected as invalid (reason too_large)."
    )
    metadata_max_age_ms: int = Field(
        5_000,
        gt=0,
        description="How soon topics created after start are discovered (metadata refresh).",
    )
    session_timeout_ms: int = Field(10_000, gt=0)
    heartbeat_interval_ms: int = Field(3_000, gt=0)
    max_poll_interval_ms: int = Field(300_000, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = Field(
        None, description="The passphrase of an encrypted ssl_keyfile (a secret: give ${ENV})."
    )
    stall_seconds: float = Field(
        30.0,
        gt=0,
        description="/healthz fails when the consume loop has not completed a poll for this long.",
    )

    @field_validator("predictions_topic", "labels_topic", "dead_letter_topic")
    @classmethod
    def _kafka_topic(cls, value: str | None) -> str | None:
        if value is not None and (why := topic_problem(value)):
            raise ValueError(why)
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        """Checked here, where the option is named: an empty value (a variable set to '') or
        ``kafka:notaport`` passed check-config, then ``run`` died on a ValueError traceback
        from inside aiokafka (a port of 99999 on an OverflowError)."""
        for entry in value.split(","):
            if why := _bootstrap_problem(entry.strip()):
                raise ValueError(f"{entry.strip()!r}: {why} (host:port, comma-separated)")
        return value

    @model_validator(mode="after")
    def _topics_distinct(self) -> KafkaConfig:
        """Each topic has one role. A dead-letter topic that is also an input fed itself: the
        copy of an invalid message was consumed, invalid again, and copied again, forever
        (one bad message made 80 copies in 8 s); labels read from the predictions topic made
        every prediction an invalid label."""
        if self.labels_topic == self.predictions_topic:
            raise ValueError(
                f"labels_topic is the predictions_topic ({self.predictions_topic!r}): each "
                "needs its own topic (labels_topic: null disables labels)"
            )
        inputs = {self.predictions_topic: "predictions_topic", self.labels_topic: "labels_topic"}
        if self.dead_letter_topic is not None and self.dead_letter_topic in inputs:
            raise ValueError(
                f"dead_letter_topic is the {inputs[self.dead_letter_topic]} "
                f"({self.dead_letter_topic!r}): invalid messages copied there would be consumed "
                "again, invalid again, and copied again without end; give it a topic of its own"
            )
        return self

    @model_validator(mode="after")
    def _poll_shorter_than_a_stall(self) -> KafkaConfig:
        """On an idle topic one poll waits its whole ``poll_timeout_ms``, and ``/healthz``
        fails once no poll completed for ``stall_seconds``: with a poll as long as a stall,
        every quiet spell failed the liveness probe (the orchestrator restarted a healthy
        monitor), and a SIGTERM waited the poll out. Half the stall leaves the evaluation
        after a poll its time."""
        if self.poll_timeout_ms > self.stall_seconds * 1000 / 2:
            raise ValueError(
                f"poll_timeout_ms ({self.poll_timeout_ms}) must be at most half of "
                f"stall_seconds ({self.stall_seconds:g} s): on an idle topic a poll waits "
                "that long, and /healthz fails after stall_seconds without one"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_the_session(self) -> KafkaConfig:
        """Kafka's rule (the Java client refuses it at construction; aiokafka does not): a
        member heartbeating less often than its session lasts is evicted between two
        heartbeats, and its partitions move, again and again."""
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be lower than "
                f"session_timeout_ms ({self.session_timeout_ms}); a third of it is usual"
            )
        return self

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            raise ValueError("sasl_mechanism is required when security_protocol is SASL_*")
        if self.sasl_mechanism and not (self.sasl_username and self.sasl_password):
            raise ValueError("sasl_username and sasl_password are required with sasl_mechanism")
        return self

    @model_validator(mode="after")
    def _security_settings_apply(self) -> KafkaConfig:
        """TLS and SASL settings the security_protocol does not use were silently ignored:
        ``ssl_cafile`` under PLAINTEXT connected in clear, a ``sasl_mechanism`` under
        PLAINTEXT or SSL connected without authenticating, an ``ssl_keyfile`` without
        ``ssl_certfile`` was never loaded. Refused, naming the settings."""
        given = self.model_fields_set
        tls = [
            k for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password") if k in given
        ]
        if tls and self.security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"{', '.join(tls)}: only used with security_protocol SSL or SASL_SSL "
                f"(security_protocol is {self.security_protocol})"
            )
        sasl = [k for k in ("sasl_mechanism", "sasl_username", "sasl_password") if k in given]
        if sasl and not self.security_protocol.startswith("SASL"):
            raise ValueError(
                f"{', '.join(sasl)}: only used with security_protocol SASL_PLAINTEXT or "
                f"SASL_SSL (security_protocol is {self.security_protocol})"
            )
        if self.ssl_certfile is None and (self.ssl_keyfile or self.ssl_password):
            raise ValueError(
                "ssl_keyfile and ssl_password are the client certificate's key: set ssl_certfile"
            )
        return self


#: The shortest ``http.admin_token`` accepted. The token guards every state-changing endpoint
#: (silences: whoever holds it can mute any alert), and the port may be reachable from a whole
#: network: 16 random characters of base64url are 96 bits, beyond any online guessing, while
#: ``admin``, ``changeme`` or a short PIN fall to the first dictionary tried.
MIN_ADMIN_TOKEN_CHARS = 16

#: The most open HTTP connections by default: a scraper or two, a few browsers (six
#: connections each) and probes use a few dozen; a flood of idle connections stops here,
#: far below the usual 1024 file descriptors of a process.
DEFAULT_MAX_CONNECTIONS = 256

#: How to make a good token, repeated wherever a token is refused.
TOKEN_HOWTO = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class HttpConfig(_Strict):
    """The metrics/health/admin HTTP server."""

    host: str = Field("127.0.0.1", description="Bind address; loopback unless you mean otherwise.")
    port: int = Field(9108, ge=0, le=65535, description="0 picks a free port (tests).")
    admin_token: SecretStr | None = Field(
        None,
        description=f"Bearer token for state-changing endpoints, at least {MIN_ADMIN_TOKEN_CHARS} "
        "characters; unset or empty disables them.",
    )
    ui_history: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Evaluations per column the web UI keeps (saved with each model's state).",
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host header names answered (port ignored, case-insensitive, IPv6 as [::1]); "
        "'*' alone for any. Unset: loopback names only when host is a loopback address, any "
        "otherwise. Others get 421 (a DNS-rebinding guard); /healthz and /readyz also answer "
        "an IP address as Host (probes).",
    )
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS,
        ge=1,
        le=100_000,
        description="Open HTTP connections at most; one more gets a 503 and is closed.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_are_names(cls, hosts: list[str] | None) -> list[str] | None:
        # Checked and normalised here so that a typo ("host:9108", "a b") is an error at
        # start, not a 421 for every request afterwards.
        if hosts is None:
            return None
        if not hosts:
            raise ValueError(
                "an empty list would refuse every request: leave it unset for the default, "
                "or list the names (or '*' for any)"
            )
        names = [normalize_allowed(h) for h in hosts]
        if ANY_HOST in names and len(names) > 1:
            raise ValueError("'*' (any host) goes alone: the other names would mean nothing")
        return names

    @field_validator("admin_token")
    @classmethod
    def _token_is_visible_ascii(cls, token: SecretStr | None) -> SecretStr | None:
        # The silences API accepts only visible-ASCII credentials (RFC 6750's token68), so any
        # other token could never match: every request would get 403. Say so at start instead.
        # An empty token (``${MONITOR_ADMIN_TOKEN:-}`` unset) means none: the API stays read-only.
        value = token.get_secret_value() if token is not None else None
        if not value:
            return None
        if not all("!" <= c <= "~" for c in value):
            raise ValueError("must be visible ASCII (no spaces, no other characters)")
        if len(value) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"is too short to guard the admin API: at least {MIN_ADMIN_TOKEN_CHARS} "
                f"characters (the value is a secret: not shown); generate one with {TOKEN_HOWTO}"
            )
        return token


class MetricsConfig(_Strict):
    """What ``/metrics`` exports per feature (series budgets in docs/METRICS.md)."""

    export: Literal["full", "verdict"] = Field(
        "full",
        description="full: every window and reference statistic per feature; verdict: only "
        "the drift severity, statistic and p-value per feature (for large fleets).",
    )


class StateConfig(_Strict):
    """Where model state is checkpointed so it survives restarts and follows partitions."""

    backend: Literal["sqlite", "kafka"] = Field(
        "sqlite",
        description="sqlite: one file on this host (a single instance, or instances sharing "
        "the file). kafka: a compacted changelog topic, checkpoints and offsets in one Kafka "
        "transaction; instances on several machines (see docs/GUARANTEES.md).",
    )
    path: str = Field(
        "var/monitor-state.sqlite",
        description="sqlite backend: the state file (the kafka backend does not use it).",
    )
    checkpoint_interval_seconds: float = Field(30.0, gt=0)
    on_newer_state: Literal["refuse", "start_fresh"] = Field(
        "refuse",
        description="A model whose stored state was written by a newer release (a newer "
        "state format: after a rollback). refuse: the model is disabled (its events skipped, "
        "/readyz not ready, monitor_model_disabled{reason=state_newer}) and its stored state "
        "is left untouched for the newer release. start_fresh: the model starts with an empty "
        "state, which overwrites the newer one at the next checkpoint.",
    )
    unlisted_models: Literal["keep", "delete"] = Field(
        "keep",
        description="The stored state of a model no longer in `models` (under unknown_models: "
        "reject). keep: left in the state store, not restored (an INFO line at each "
        "assignment); restored as it was if the model is listed again, or by the release that "
        "lists it after a rollback. delete: removed when its partition is assigned, unless "
        "a newer release wrote it (this release cannot read it: always kept).",
    )
    changelog_topic: str | None = Field(
        None,
        description="kafka backend: the changelog topic (default <predictions_topic>-monitor-"
        "state); created compacted with the predictions topic's partition count if missing.",
    )
    instance_id: str | None = Field(
        None,
        description="kafka backend: this instance's stable name (default the host name); its "
        "transactional.id is <group_id>-state-<instance_id>, so a restart of the same instance "
        "fences its previous incarnation. Must differ between live instances.",
    )
    max_record_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="kafka backend: a state larger than this is split into records of at most "
        "this size (keep it under the broker's message.max.bytes).",
    )
    alerts_topic: str | None = Field(
        None,
        description="kafka backend: the topic notifications are produced to, in the checkpoint's "
        "transaction (default <changelog_topic>-alerts); consumed for delivery by every instance "
        "in the group <group_id>-alerts. Created (delete policy) if missing, also while running; "
        "refused if compacted (compaction would drop undelivered notifications).",
    )
    transaction_timeout_seconds: float = Field(
        10.0,
        ge=1,
        le=900,
        description="kafka backend: the checkpoint producer's transaction.timeout.ms. A "
        "transaction left open by a killed instance is aborted by the broker after this long, "
        "and until then it holds up restoring its partitions elsewhere (read_committed). A "
        "checkpoint's transaction lasts only its write, not the interval. At most the broker's "
        "transaction.max.timeout.ms (default 15 min), checked at start.",
    )

    @field_validator("changelog_topic", "alerts_topic")
    @classmethod
    def _kafka_topic(cls, value: str | None) -> str | None:
        if value is not None and (why := topic_problem(value)):
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _kafka_settings_need_the_kafka_backend(self) -> StateConfig:
        """A kafka-only setting written under ``backend: sqlite`` would do nothing: an
        operator who sets ``instance_id`` or ``changelog_topic`` believes the state is in
        Kafka. Refused, naming the settings. (``path`` is the sqlite backend's file; the
        kafka backend does not read it, but its default stands for either.)"""
        kafka_only = (
            "changelog_topic",
            "instance_id",
            "max_record_bytes",
            "alerts_topic",
            "transaction_timeout_seconds",
        )
        given = [k for k in kafka_only if k in self.model_fields_set]
        if self.backend == "sqlite" and given:
            raise ValueError(
                f"{', '.join(given)}: only used with backend: kafka (backend is sqlite); "
                "set backend: kafka or remove them"
            )
        return self


class LimitsConfig(_Strict):
    """Caps that keep a misbehaving producer from exhausting memory or time series."""

    max_models: int = Field(100, gt=0)
    max_features_per_model: int = Field(500, gt=0)
    max_categories_per_feature: int = Field(
        200, gt=1, description="Further categories are pooled into __other__."
    )
    max_exported_categories: int = Field(
        20, gt=0, description="Top categories exported per feature to Prometheus."
    )
    # Why 1000 characters: a categorical value is a label, a code, a URL or a user agent;
    # URLs and user agents run to a few hundred characters (browsers' are about 150-250),
    # and one of 1000 is one that is no category. The bound is what keeps memory bounded:
    # a column's vocabulary holds at most max_categories_per_feature values, so at most
    # 200 x 1000 characters (about 200 KB) per feature, in memory and in each checkpoint,
    # where a producer sending ~1 MB strings (Kafka's default message size) put 200 MB.
    max_category_chars: int = Field(
        MAX_CATEGORY_CHARS,
        gt=0,
        description=(
            "A categorical value (feature or prediction) longer than this many characters is "
            "invalid: counted as too_long in monitor_feature_invalid_values_total and missing, "
            "as a value of the wrong type; a reference never holds one either. Bounds each "
            "column's vocabulary to max_categories_per_feature x this."
        ),
    )
    max_event_id_chars: int = Field(256, gt=0)
    max_timestamp_ahead_seconds: float = Field(
        3600.0,
        gt=0,
        description=(
            "An event or label whose own timestamp is more than this ahead of the monitor's "
            "clock is rejected (timestamp_in_future). One far-future time stopped a time-window "
            "model for good; an hour tolerates producer clock skew and refuses gross errors."
        ),
    )


class WindowConfig(_Strict):
    """A sliding window: the last ``size`` events, evaluated every ``step`` events;
    or (``type: time``) the events of the last ``seconds``, evaluated every ``step_seconds``
    of event time, holding at most ``size`` events."""

    type: Literal["count", "time"] = "count"
    # Bounded: the window is allocated whole (size x columns float64s) when the model's
    # reference is known; a size of 10**12 passed the check, then every start died on a
    # MemoryError at the model's first events and replayed into it again.
    size: int = Field(5000, gt=0, le=MAX_WINDOW_EVENTS)
    step: int = Field(1000, gt=0)
    seconds: float | None = Field(None, gt=0)
    step_seconds: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> WindowConfig:
        # ``{seconds: 3600, step_seconds: 300}`` without ``type: time`` was a count window of
        # ``size`` events, the seconds silently ignored.
        # By value, not by presence: a saved window's settings (model_dump_json, read back
        # at restore to say what changed) carry both as null.
        timed = [k for k in ("seconds", "step_seconds") if getattr(self, k) is not None]
        if self.type == "count" and timed:
            raise ValueError(
                f"{', '.join(timed)}: only used with type: time (type is count); add type: time"
            )
        if self.type == "count" and self.step > self.size:
            raise ValueError("step must be <= size")
        if self.type == "time" and (self.seconds is None or self.step_seconds is None):
            raise ValueError("a time window needs seconds and step_seconds")
        # As step <= size: a step longer than the window skipped events between evaluations.
        if self.type == "time" and self.step_seconds > self.seconds:  # type: ignore[operator]
            raise ValueError("step_seconds must be <= seconds")
        return self


class SampleConfig(_Strict):
    """Deterministic sampling of a model's events (monitor/sampling.py), for models
    hotter than one core: windows, detectors and performance use the sample; the
    event counters count every event."""

    rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of events kept, chosen by a hash of event_id (1: every event).",
    )


class ReferenceConfig(_Strict):
    """Where a model's reference comes from: a file, or the first N events seen."""

    path: str | None = Field(
        None, description="JSONL, CSV, Parquet or a profile built by `monitor reference build`."
    )
    format: Literal["auto", "jsonl", "csv", "parquet", "profile"] = Field(
        "auto",
        description="auto: a profile by its content, the rest by extension (.jsonl/.ndjson/"
        ".json, .csv, .parquet); name it for a file whose extension says nothing.",
    )
    learn_first: int | None = Field(
        None,
        gt=0,
        le=MAX_LEARN_EVENTS,
        description="Without a path: learn the reference from the first N events (kept as "
        "rows until then, and in checkpoints: bounded).",
    )
    max_sample: int = Field(10_000, gt=0, description="Numeric values kept per feature for KS.")
    mode: Literal["fixed", "previous_window"] = Field(
        "fixed",
        description="fixed: compare with this reference; previous_window: after every full "
        "window the window just evaluated becomes the reference (change between consecutive "
        "windows; count windows only).",
    )
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="model_version -> reference file or profile: when events of a listed "
        "version arrive, the model switches to its reference (and restarts its window).",
    )

    @field_validator("versions")
    @classmethod
    def _printable_versions(cls, versions: dict[str, str]) -> dict[str, str]:
        """A model_version is shown on /api/status, the UI and segment labels
        (``segments: [model_version]``)."""
        refuse_unprintable("model_version", versions)
        return versions

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceConfig:
        if self.path and self.learn_first:
            raise ValueError("give either path or learn_first, not both")
        return self


class QualityConfig(_Strict):
    """Data-quality thresholds turned into alert signals (None disables)."""

    max_missing_rate: float | None = Field(None, ge=0, le=1)
    max_unseen_category_rate: float | None = Field(None, ge=0, le=1)


class FeatureConstraint(_Strict):
    """What one feature's values must satisfy (see :mod:`monitor.validation`).

    Every field is optional; what is left unset is inferred from the reference when
    ``validation.infer`` is on. A declared rule tolerates ``validation.tolerance`` of
    violating values per window (the rare outlier); ``max_missing_rate`` and
    ``max_unseen_rate`` are rates themselves.
    """

    type: ColumnType | None = Field(None, description="Checked against the model's schema.")
    required: bool | None = Field(None, description="true: the value must be present.")
    min: float | None = None
    max: float | None = None
    domain: list[str] | None = Field(None, description="Allowed categories.")
    integer: bool | None = Field(None, description="Numeric values must be whole numbers.")
    not_constant: bool | None = Field(
        None, description="A full window of one repeated value is a breach."
    )
    max_missing_rate: float | None = Field(None, ge=0, le=1)
    max_unseen_rate: float | None = Field(
        None, ge=0, le=1, description="Share of values outside the domain that is tolerated."
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeatureConstraint:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must be <= max")
        return self


class ValidationConfig(_Strict):
    """Data validation: per-feature constraints checked on every event (see
    :mod:`monitor.validation` for the rules and why the defaults are what they are)."""

    enabled: bool = True
    infer: bool = Field(
        True,
        description="Infer the constraints the config does not declare from the reference "
        "(range with a margin, categories, missing rate, whole numbers, not constant).",
    )
    tolerance: float = Field(
        0.001, ge=0, le=1, description="Violation rate per window a rule tolerates."
    )
    alpha: float = Field(
        1e-8,
        gt=0,
        lt=1,
        description="Inferred rules: chance per evaluation that a rule fires on data like the "
        "reference.",
    )
    range_margin: float = Field(
        0.25, ge=0, description="Inferred range: reference min/max widened by this share of it."
    )
    constraints: dict[str, FeatureConstraint] = Field(default_factory=dict)

    @field_validator("constraints")
    @classmethod
    def _printable_features(
        cls, constraints: dict[str, FeatureConstraint]
    ) -> dict[str, FeatureConstraint]:
        """A constraint's feature is named in breach signals, pages and the UI."""
        refuse_unprintable("feature name", constraints)
        return constraints


MAX_SEGMENT_SPECS = 10
# Segments are compared with the fixed reference (or its rows per segment), never with the
# previous window: with previous_window the whole traffic ignores a slow drift that every
# segment would page, evaluation after evaluation.
_SEGMENTS_NEED_FIXED = (
    "{}: segments need reference.mode fixed (a segment is compared with the reference, "
    "not with the previous window)"
)
MAX_SEGMENT_COLUMNS = 3


class SegmentsConfig(_Strict):
    """Declared slices of a model's traffic, each tracked beside the whole
    (:mod:`monitor.segments`: top-K values, ``__other__``, the correction).

    ``segments: [region, [region, tier]]`` is short for ``segments: {by: [...]}``.
    """

    by: list[str | list[str]] = Field(
        default_factory=list,
        description="Categorical features (or model_version) to slice by; a list is a "
        "combination (region=north,tier=gold).",
        max_length=MAX_SEGMENT_SPECS,
    )
    top_k: int = Field(
        5,
        ge=1,
        le=50,
        description="Values tracked per slice, by reference traffic; the rest pool into __other__.",
    )
    min_window_rows: int = Field(
        200, ge=20, description="A segment's rows in the window below which it is not tested."
    )
    min_reference_rows: int = Field(
        200,
        ge=20,
        description="Reference rows a segment needs for its own reference; fewer: the "
        "whole reference.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"by": value} if isinstance(value, list) else value

    @field_validator("by")
    @classmethod
    def _well_formed(cls, by: list[str | list[str]]) -> list[str | list[str]]:
        seen: set[tuple[str, ...]] = set()
        for i, entry in enumerate(by):
            cols = (entry,) if isinstance(entry, str) else tuple(entry)
            if not cols or len(cols) > MAX_SEGMENT_COLUMNS:
                raise ValueError(f"[{i}]: a combination has 1 to {MAX_SEGMENT_COLUMNS} columns")
            if any(not c for c in cols) or len(set(cols)) != len(cols):
                raise ValueError(f"[{i}]: empty or repeated column name")
            for c in cols:  # a column's name is part of every segment label shown
                if why := unprintable_problem("column name", c):
                    raise ValueError(f"[{i}]: {why}")
            if PREDICTION in cols:
                raise ValueError(f"[{i}]: the prediction cannot be a segment")
            key = tuple(sorted(cols))
            if key in seen:
                raise ValueError(f"[{i}]: declared twice")
            seen.add(key)
        return by

    def specs(self) -> list[tuple[str, ...]]:
        """Each declared slice as a tuple of column names."""
        return [(e,) if isinstance(e, str) else tuple(e) for e in self.by]


class MultivariateConfig(_Strict):
    """Multivariate drift of the numeric features together: PCA reconstruction error
    (:mod:`monitor.detectors.pca`), reported as signal kind ``multivariate``."""

    enabled: bool = True
    variance: float = Field(
        0.9, gt=0, lt=1, description="Share of the reference variance the components keep."
    )
    alpha: float = Field(
        1e-5, gt=0, lt=1, description="KS on the reconstruction errors (as the per-feature KS)."
    )


class ModelDefaults(_Strict):
    """Settings every model inherits unless it overrides them."""

    window: WindowConfig = WindowConfig()
    drift: DriftConfig = DriftConfig()
    performance: PerformanceConfig = PerformanceConfig()
    quality: QualityConfig = QualityConfig()
    validation: ValidationConfig = ValidationConfig()
    multivariate: MultivariateConfig = MultivariateConfig()
    segments: SegmentsConfig = SegmentsConfig()
    reference: ReferenceConfig = ReferenceConfig(learn_first=5000)
    sample: SampleConfig = SampleConfig()


class ModelConfig(_Strict):
    """One monitored model. Unset sections fall back to ``defaults``."""

    name: str = Field(min_length=1, max_length=200)
    features: dict[str, ColumnType] | None = Field(
        None, description="Feature name -> type; omitted: inferred from the reference."
    )
    prediction: Literal["auto", "numeric", "categorical", "none"] = "auto"
    reference: ReferenceConfig | None = None
    window: WindowConfig | None = None
    drift: DriftConfig | None = None
    performance: PerformanceConfig | None = None
    quality: QualityConfig | None = None
    validation: ValidationConfig | None = None
    multivariate: MultivariateConfig | None = None
    segments: SegmentsConfig | None = None
    sample: SampleConfig | None = None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str) -> str:
        """A model name is an identifier on dashboards, metrics and pages: a control,
        format (bidi override, zero-width) or separator character would make it read as
        another name there (the same rule as names from the wire under ``track``)."""
        refuse_unprintable("model name", [v])
        return v

    @field_validator("features")
    @classmethod
    def _no_reserved_names(
        cls, features: dict[str, ColumnType] | None
    ) -> dict[str, ColumnType] | None:
        for name in features or {}:
            if not name or len(name) > MAX_FEATURE_NAME_CHARS:
                raise ValueError(
                    f"{name[:40]!r}: a feature name has 1 to {MAX_FEATURE_NAME_CHARS} characters"
                )
            if why := unprintable_problem("feature name", name):
                raise ValueError(why)
            if name in RESERVED_COLUMNS:
                raise ValueError(
                    f"{name!r} is the monitor's own column ({', '.join(sorted(RESERVED_COLUMNS))}"
                    " are reserved); rename the feature"
                )
        # Matched exactly against events, yet shown alike on every page: one of the two
        # would read as the other's metrics.
        if problems := near_duplicate_problems(
            "feature names", ((f"key {i}", n) for i, n in enumerate(features or {}))
        ):
            raise ValueError("; ".join(problems))
        return features

    @field_validator("performance")
    @classmethod
    def _performance_settings_need_a_task(
        cls, performance: PerformanceConfig | None
    ) -> PerformanceConfig | None:
        """Settings written for this model with no ``task`` were silently unused (tracking
        off, no metrics, no word): refused, naming them. The defaults' section is only
        warned about (:func:`parse_config`): no model has written it for itself."""
        if performance is not None and (keys := unused_without_task(performance)):
            raise ValueError(unused_settings_message(keys))
        return performance


class MonitorConfig(_Strict):
    """The whole configuration file."""

    kafka: KafkaConfig = KafkaConfig()
    http: HttpConfig = HttpConfig()
    metrics: MetricsConfig = MetricsConfig()
    state: StateConfig = StateConfig()
    limits: LimitsConfig = LimitsConfig()
    defaults: ModelDefaults = ModelDefaults()
    models: list[ModelConfig] = Field(default_factory=list)
    unknown_models: Literal["reject", "track"] = Field(
        "reject",
        description="reject: events of unlisted models are invalid (unknown_model); "
        "track: monitor them with defaults and a learned reference, up to limits.max_models.",
    )
    alerting: AlertingConfig = AlertingConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Any case (debug, INFO, ...); `monitor --log-level` overrides it."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="json: one JSON object per log line (time, level, logger, message); "
        "`monitor --log-format` overrides it.",
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="On SIGTERM: how long to keep flushing the alert outbox."
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """``log_level: debug`` is as clear as ``DEBUG``; refusing it helps no one."""
        if not isinstance(value, str):
            return value
        return (
            value.upper()
            if value.lower() in {"debug", "info", "warning", "error"}
            else (value.lower())
        )

    @model_validator(mode="after")
    def _previous_window_needs_count_windows(self) -> MonitorConfig:
        for m in self.models:
            r = resolve_model(m, self.defaults)
            if r.reference.mode == "previous_window" and r.window.type != "count":
                raise ValueError(
                    f"model {m.name!r}: reference.mode previous_window needs a count window"
                )
            if r.reference.mode == "previous_window" and r.segments.specs():
                raise ValueError(_SEGMENTS_NEED_FIXED.format(f"model {m.name!r}"))
        d = self.defaults
        if d.reference.mode == "previous_window" and d.segments.specs():
            raise ValueError(_SEGMENTS_NEED_FIXED.format("defaults"))
        return self

    @model_validator(mode="after")
    def _segments_fit_the_window(self) -> MonitorConfig:
        """A segment needs ``min_window_rows`` events in the window to be tested; above the
        window's ``size`` (the most events it holds) no segment was ever tested, silently."""
        for where, r in [("defaults", self.defaults)] + [
            (f"model {m.name!r}", resolve_model(m, self.defaults)) for m in self.models
        ]:
            if r.segments.specs() and r.segments.min_window_rows > r.window.size:
                raise ValueError(
                    f"{where}: segments.min_window_rows ({r.segments.min_window_rows}) must be "
                    f"<= window.size ({r.window.size}), or no segment is ever tested"
                )
        return self

    @model_validator(mode="after")
    def _stale_labels_need_labels(self) -> MonitorConfig:
        """``performance.labels_stale_after_seconds`` with labels off (``kafka.labels_topic:
        null``) would fire for every model once predictions span the bound, and never resolve:
        no label can come."""
        if self.kafka.labels_topic is not None:
            return self
        for where, r in [("defaults", self.defaults)] + [
            (f"model {m.name!r}", resolve_model(m, self.defaults)) for m in self.models
        ]:
            if r.performance.task is not None and r.performance.labels_stale_after_seconds:
                raise ValueError(
                    f"{where}: performance.labels_stale_after_seconds is set but labels are off "
                    "(kafka.labels_topic: null), so it would always fire; remove it, or set "
                    "kafka.labels_topic"
                )
        return self

    @model_validator(mode="after")
    def _state_topics_are_not_inputs(self) -> MonitorConfig:
        """The kafka backend's changelog and alerts topics hold the monitor's own records: one
        that is an input or the dead-letter topic would mix them with events (each state
        record an invalid event, each invalid event a corrupt state record)."""
        if self.state.backend != "kafka":
            return self
        k = self.kafka
        others = {
            k.predictions_topic: "kafka.predictions_topic",
            k.labels_topic: "kafka.labels_topic",
            k.dead_letter_topic: "kafka.dead_letter_topic",
        }
        # The defaults as monitor.kafka_store names them (default_changelog_topic).
        changelog = self.state.changelog_topic or f"{k.predictions_topic}-monitor-state"
        for option, topic in (
            ("state.changelog_topic", changelog),
            ("state.alerts_topic", self.state.alerts_topic or f"{changelog}-alerts"),
        ):
            if topic in others:
                raise ValueError(f"{option} is {others[topic]} ({topic!r}); give it its own topic")
            if why := topic_problem(topic):  # a default derived from a long predictions_topic
                raise ValueError(f"{option}: {why}; set it")
        if self.state.alerts_topic is not None and self.state.alerts_topic == changelog:
            raise ValueError("state.alerts_topic is the changelog topic; give it its own topic")
        return self

    @model_validator(mode="after")
    def _unique_models(self) -> MonitorConfig:
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dup)}")
        # Events name their model exactly, so these are two models; on a dashboard, a page
        # or /api/status they read as one (two rows "café", one never fed).
        if near := near_duplicate_problems(
            "model names", ((f"models[{i}]", n) for i, n in enumerate(names))
        ):
            raise ValueError("; ".join(near))
        if len(names) > self.limits.max_models:
            raise ValueError(
                f"{len(names)} models exceed limits.max_models={self.limits.max_models}"
            )
        return self

    def model(self, name: str) -> ResolvedModel | None:
        """The settings of a listed model merged with the defaults, or None if unlisted."""
        for m in self.models:
            if m.name == name:
                return resolve_model(m, self.defaults)
        return None


class ResolvedModel(BaseModel):
    """A model's settings with every default applied: what the pipeline uses."""

    model_config = ConfigDict(frozen=True)

    name: str
    features: dict[str, ColumnType] | None
    prediction: Literal["auto", "numeric", "categorical", "none"]
    reference: ReferenceConfig
    window: WindowConfig
    drift: DriftConfig
    performance: PerformanceConfig
    quality: QualityConfig
    validation: ValidationConfig = ValidationConfig()
    multivariate: MultivariateConfig = MultivariateConfig()
    segments: SegmentsConfig = SegmentsConfig()
    sample: SampleConfig = SampleConfig()


def resolve_model(model: ModelConfig, defaults: ModelDefaults) -> ResolvedModel:
    return ResolvedModel(
        name=model.name,
        features=model.features,
        prediction=model.prediction,
        reference=model.reference or defaults.reference,
        window=model.window or defaults.window,
        drift=model.drift or defaults.drift,
        performance=model.performance or defaults.performance,
        quality=model.quality or defaults.quality,
        validation=model.validation or defaults.validation,
        multivariate=model.multivariate or defaults.multivariate,
        segments=model.segments or defaults.segments,
        sample=model.sample or defaults.sample,
    )


def _format_loc(loc: tuple[Any, ...]) -> str:
    """``models[0].window.size`` from a pydantic error location.

    A key under ``headers`` that is no header name is not shown: it is most likely a
    whole header line written as one key (``{"Authorization: Bearer <token>"}``), secret
    included.
    """
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif i and loc[i - 1] == "headers" and not is_header_name(str(part)):
            out += ".<not a header name: not shown>"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def _leaves(annotation: Any) -> list[Any]:
    """The types an annotation may hold: ``X | None``, unions and ``Annotated`` unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaves(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [leaf for arg in get_args(annotation) for leaf in _leaves(arg)]
    return [] if annotation is type(None) else [annotation]


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the configuration accepts in the mapping at ``loc`` (a pydantic error
    location), found by walking the models' annotations: a list takes an index, a dict a
    key, a tagged union (receivers) its ``type``."""
    types: list[Any] = [MonitorConfig]
    for part in loc:
        step: list[Any] = []
        for tp in (leaf for t in types for leaf in _leaves(t)):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                for name, field in tp.model_fields.items():
                    if part in (name, field.alias):
                        step.append(field.annotation)
                tag = tp.model_fields.get("type")
                if tag is not None and tag.default == part:  # a tagged union's member
                    step.append(tp)
            elif get_origin(tp) is list and isinstance(part, int):
                step.append(get_args(tp)[0])
            elif get_origin(tp) is dict and not isinstance(part, int):
                step.append(get_args(tp)[1])
        types = step
    keys = {
        key
        for tp in (leaf for t in types for leaf in _leaves(t))
        if isinstance(tp, type) and issubclass(tp, BaseModel)
        for name, field in tp.model_fields.items()
        for key in (field.alias or name,)
    }
    return sorted(keys)


def _unknown_key_hint(loc: tuple[Any, ...]) -> str:
    """``; did you mean 'window'?`` for a misspelt key, else the keys accepted there: a
    typo (``windw:``) is refused, and the operator should not need the source to fix it."""
    keys = _keys_at(loc[:-1])
    if not keys:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; the keys here are: {', '.join(keys)}"


def read_secret_file(path: Path) -> str:
    """The secret held in the file at ``path``, without its trailing line breaks.

    ``echo token > file`` and ``kubectl create secret --from-file`` leave a newline that
    would otherwise end up in a bearer token or a URL, so trailing ``\\n``/``\\r`` are
    stripped (nothing else is). Raises :class:`ValueError` with why the file cannot be
    used; the message never holds the content, which is a secret even when unusable.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the start, a device not end
            raise ValueError("is not a regular file")
        if info.st_size > MAX_SECRET_FILE_BYTES:
            raise ValueError(f"is larger than {MAX_SECRET_FILE_BYTES} bytes (one value expected)")
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError("does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:  # grew since stat
        raise ValueError(f"is larger than {MAX_SECRET_FILE_BYTES} bytes (one value expected)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    text = text.rstrip("\r\n")
    if not text:
        raise ValueError("is empty")
    return text


def _substitute_env(
    node: Any,
    path: str,
    env: dict[str, str],
    problems: list[str],
    base_dir: Path | None = None,
    read: list[str] | None = None,
) -> Any:
    """``node`` with every ``${...}`` reference replaced; a problem per unusable one.

    The one expansion of the configuration: the environment and secret files alike. A
    relative file path resolves against ``base_dir`` (the config file's folder), the rule
    of every path in the file. The values read from files are appended to ``read``, so
    the caller can keep them out of every message.
    """
    if isinstance(node, dict):
        return {
            k: _substitute_env(v, f"{path}.{k}" if path else str(k), env, problems, base_dir, read)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            _substitute_env(v, f"{path}[{i}]", env, problems, base_dir, read)
            for i, v in enumerate(node)
        ]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            file, name, default = m.group(1), m.group(2), m.group(3)
            if file is not None:
                target = Path(file)
                if base_dir is not None and not target.is_absolute():
                    target = base_dir / target
                try:
                    value = read_secret_file(target)
                except ValueError as why:
                    problems.append(f"{path or '(root)'}: secret file {target} {why}")
                    return ""
                if read is not None:
                    read.append(value)
                return value
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '(root)'}: environment variable {name} is not set")
            return ""

        return _REF.sub(repl, node)
    return node


def _without_secrets(problems: list[str], secrets: list[str]) -> list[str]:
    """``problems`` with every secret read from a file masked: a value read from a file is
    a secret whatever option it was given to, and a check of a non-secret option may
    quote its value (a topic name, a host)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        problems = [p.replace(secret, "**********") for p in problems]
    return problems


def parse_config(
    raw: Any, *, env: dict[str, str] | None = None, base_dir: Path | None = None
) -> MonitorConfig:
    """Validate an already-parsed YAML document.

    With ``base_dir`` (the config file's folder), every relative path in the
    configuration resolves against it (:func:`resolve_paths`), so a config means
    the same files whatever the working directory.
    """
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(root): the configuration must be a mapping"])
    from_files: list[str] = []
    data = _substitute_env(
        raw, "", dict(os.environ) if env is None else env, problems, base_dir, from_files
    )
    unset = {p.split(": ", 1)[0] for p in problems}
    try:
        config = MonitorConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            # A value from an unset variable is reported once, as unset (its "" would also
            # fail the option's own check; the loc of a receiver carries its type tag too).
            if unset & {_format_loc(loc[:i] + loc[i + 1 :]) for i in range(len(loc) + 1)}:
                continue
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message += _unknown_key_hint(loc)
            elif err["type"] == "string_type" and isinstance(err.get("input"), int | float):
                # YAML reads 2024, 1.10 or 1e3 as numbers: a model, feature or version so
                # named needs quotes (the value itself is not repeated: it may be a secret).
                kind = "a boolean" if isinstance(err["input"], bool) else "a number"
                message += f" (YAML read {kind}: quote it)"
            problems.append(f"{_format_loc(loc)}: {message}")
        raise ConfigError(_without_secrets(problems, from_files)) from None
    if problems:
        raise ConfigError(problems)
    if keys := unused_without_task(config.defaults.performance):
        # Every model either inherits this section whole (no task: tracking off) or
        # replaces it: these settings reach no model. Warned, not refused: it is no model's
        # own section, and a model that wants tracking has to write its own with a task.
        _log.warning("defaults.performance: %s", unused_settings_message(keys))
    for warning in config_warnings(config):
        _log.warning("%s", warning)
    return resolve_paths(config, base_dir) if base_dir else config


def _differing_only_in_case(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more ``names`` equal once normalised (``name_key``) and case-folded."""
    by_case: dict[str, list[str]] = {}
    for name in names:
        by_case.setdefault(name_key(name).casefold(), []).append(name)
    return [group for group in by_case.values() if len(group) > 1]


def config_warnings(config: MonitorConfig) -> list[str]:
    """What a valid configuration does that its writer may not mean; logged at every load
    (``check-config`` and ``run``), never refused.

    - No model listed under ``unknown_models: reject``: every event is refused as
      ``unknown_model`` and nothing is monitored, while the service looks healthy.
    - Model names that differ only in case (``Fraud``, ``fraud``): events match names
      exactly, so two teams may mean two models, and they read differently on a page (not
      refused, unlike names that look identical); but one is often a typo of the other.
    - Receiver names that differ only in case, likewise.
    - A receiver opted in to sending its credential over plain http.
    """
    out = []
    if not config.models and config.unknown_models == "reject":
        out.append(
            "no models are listed and unknown_models is reject: every event will be refused "
            "as unknown_model (monitor_events_invalid_total) and nothing monitored; list the "
            "models, or set unknown_models: track"
        )
    for names in _differing_only_in_case(m.name for m in config.models):
        out.append(
            f"model names {', '.join(ascii(n) for n in names)} differ only in case: events "
            "are matched exactly, so these are separate models; rename one if that is a typo"
        )
    for names in _differing_only_in_case(config.alerting.receivers):
        out.append(
            f"receiver names {', '.join(ascii(n) for n in names)} differ only in case: "
            "routes name receivers exactly, so these are separate receivers and each is "
            "sent what routes to it; rename one if that is a typo"
        )
    for name, receiver in config.alerting.receivers.items():
        if receiver.allow_insecure_http and (found := clear_text_credentials(receiver)):
            out.append(
                f"alerting.receivers.{name!a}: allow_insecure_http: "
                f"{', '.join(found)} sent in clear text over http:// to a host that is not "
                "loopback"
            )
    return out


def resolve_paths(config: MonitorConfig, base_dir: Path) -> MonitorConfig:
    """The one rule for file paths: a relative path means ``base_dir / path``.

    It covers every option that names a file, defaults included: ``state.path``,
    ``alerting.outbox_path``, the ``kafka.ssl_*`` files, and ``reference.path``
    and ``reference.versions`` under ``defaults`` and each model. Absolute paths
    are kept as they are.
    """

    def absolute(path: str) -> str:
        return path if Path(path).is_absolute() else str((base_dir / path).resolve())

    def reference(ref: ReferenceConfig) -> ReferenceConfig:
        update: dict[str, Any] = {"versions": {v: absolute(p) for v, p in ref.versions.items()}}
        if ref.path:
            update["path"] = absolute(ref.path)
        return ref.model_copy(update=update)

    kafka = config.kafka.model_copy(
        update={
            key: absolute(value)
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
            if (value := getattr(config.kafka, key))
        }
    )
    models = [
        m.model_copy(update={"reference": reference(m.reference)}) if m.reference else m
        for m in config.models
    ]
    return config.model_copy(
        update={
            "kafka": kafka,
            "state": config.state.model_copy(update={"path": absolute(config.state.path)}),
            "alerting": config.alerting.model_copy(
                update={"outbox_path": absolute(config.alerting.outbox_path)}
            ),
            "defaults": config.defaults.model_copy(
                update={"reference": reference(config.defaults.reference)}
            ),
            "models": models,
        }
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    YAML parsers keep the last of two equal keys, so a second ``segments:`` or
    ``alerting:`` would make the first silently ignored. A merge key (``<<: *anchor``)
    still lets the mapping override what it merges: only keys written twice count.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} given twice (lines {seen[key]} and {line}); the first "
                        "would be ignored",
                        key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


_BOOL_TAG, _INT_TAG, _FLOAT_TAG = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_YAML12_INT = re.compile(r"^[-+]?(?:[0-9][0-9_]*|0o[0-7][0-7_]*|0x[0-9a-fA-F][0-9a-fA-F_]*)$")


class _ConfigLoader(_UniqueKeyLoader):
    """The configuration's YAML reader: YAML 1.2's core schema for plain scalars.

    PyYAML implements YAML 1.1, where ``NO``, ``on`` and ``off`` are booleans, ``010`` is
    eight and ``1:30`` is ninety: a model, feature or category named ``NO`` (Norway) was
    refused as "not a valid string" at a wrong path, ``learn_first: 010`` learned from 8
    events and ``max_timestamp_ahead_seconds: 1:30`` meant 90 s. Here only ``true`` and
    ``false`` are booleans (an on/off option still takes ``yes``/``no``/``on``/``off``:
    pydantic reads them), integers are decimal unless written ``0o``/``0x``, and a date
    stays the text it is (``versions: {2026-12-01: ...}`` is the model_version
    ``"2026-12-01"``; a silence's ``starts_at`` parses it). Floats and nulls are as before.
    """

    yaml_implicit_resolvers = {
        first: [
            (tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _TIMESTAMP_TAG)
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_yaml_int(self, node: yaml.Node) -> int:  # type: ignore[override]
        text = str(self.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
        sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
        base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
        return sign * int(digits[2:] if base != 10 else digits, base)


_ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_ConfigLoader.add_implicit_resolver(_INT_TAG, _YAML12_INT, list("-+0123456789"))
# The float resolver (inherited) must come after the int one for the same first characters.
for _first, _resolvers in _ConfigLoader.yaml_implicit_resolvers.items():
    _resolvers.sort(key=lambda r: r[0] == _FLOAT_TAG)
_ConfigLoader.add_constructor(_INT_TAG, _ConfigLoader.construct_yaml_int)


def load_config(path: str | Path, *, env: dict[str, str] | None = None) -> MonitorConfig:
    """Read, substitute and validate a config file; raise ConfigError with every problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {p}: {exc.strerror}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # a Latin-1 'é' was a UnicodeDecodeError traceback
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"(file): not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"]
        ) from None
    try:
        raw = yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        # Not chained: the YAML error's own text (in a traceback) would quote the line.
        raise ConfigError([f"(file): not valid YAML: {yaml_problem(exc, text, p)}"]) from None
    if why := _expansion_problem(raw):
        raise ConfigError([f"(file): {why}"])
    return parse_config(raw, env=env, base_dir=p.parent)


def yaml_problem(exc: yaml.YAMLError, text: str, path: Path) -> str:
    """``path:line:column: what is wrong``, from a YAML error, without the line itself.

    PyYAML's message quotes the offending line under a caret. An inline secret on that
    line (a Slack URL pasted with a stray ``: ``, a token with an unclosed quote) went to
    the terminal, a CI log or the orchestrator's event stream. Its problem and context
    texts are fixed phrases naming at most a character, a tag, an anchor or a key (never a
    value), so they are kept, bounded; positions are 1-based, as editors count.
    """

    def clip(phrase: str) -> str:
        return phrase if len(phrase) <= 120 else phrase[:117] + "..."

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = f"{path}:{mark.line + 1}:{mark.column + 1}: {clip(exc.problem or 'syntax error')}"
        if exc.context and exc.context_mark is not None:
            start = exc.context_mark
            message += f" ({clip(exc.context)} at {start.line + 1}:{start.column + 1})"
        elif exc.context:
            message += f" ({clip(exc.context)})"
        return message
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "?")
        return f"{path}:{line}:{column}: unacceptable character #x{char:04x}: {exc.reason}"
    return f"{path}: {type(exc).__name__}"


#: The most values a configuration may hold once its YAML aliases are expanded.
MAX_CONFIG_VALUES = 1_000_000


def _expansion_problem(raw: Any) -> str | None:
    """Why a loaded document is unusable as a configuration however valid its YAML, or None.

    YAML aliases share a node, so nine lines of nested aliases (a "billion laughs") load
    at once but hold 10**8 values once walked: check-config and run walked them for
    minutes. An alias inside its own anchor makes a cycle (RecursionError, a traceback).
    Counted over the shared nodes once each, so the check costs the file's size.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(raw, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if done:
            open_.discard(key)
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > MAX_CONFIG_VALUES:
                return (
                    f"more than {MAX_CONFIG_VALUES:,} values once its aliases are expanded "
                    "(nested anchors and aliases); write the configuration out"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_:
            return "an alias inside its own anchor (a cycle): a configuration is a tree"
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children)
    return None


def _constraint_problems(
    where: str,
    model: ResolvedModel,
    schema: dict[str, ColumnType] | None = None,
    source: str = "",
) -> list[str]:
    """Constraints that cannot apply: a feature the model does not declare, a type other than
    the declared one, a numeric rule on a categorical feature or the other way round. When
    no features are declared, against the reference's ``schema`` (read from the option
    ``source``): a constraint on a feature the reference lacks was silently never checked,
    ``required: true`` included."""
    declared = model.features is not None
    schema = model.features if model.features is not None else schema
    if schema is None:  # the schema comes from a reference not loaded here
        return []
    out = []
    for name, c in model.validation.constraints.items():
        at = f"{where}.validation.constraints.{name}"
        kind = schema.get(name)
        if kind is None:
            out.append(
                f"{at}: not a declared feature of model {model.name!r}"
                if declared
                else f"{at}: not a feature in {source} of model {model.name!r}; the "
                "constraint would never be checked"
            )
            continue
        if c.type is not None and c.type != kind:
            how = f"declared {kind}" if declared else f"{kind} in {source}"
            out.append(f"{at}.type: {c.type}, but the feature is {how}")
        # min/max of 0 are rules too (a falsy bound passed unreported).
        numeric_rules = [r for r in ("min", "max") if getattr(c, r) is not None]
        numeric_rules += [r for r in ("integer", "not_constant") if getattr(c, r)]
        if kind == "categorical" and numeric_rules:
            out.append(f"{at}: {', '.join(numeric_rules)} apply to numeric features only")
        if kind == "numeric" and (c.domain is not None or c.max_unseen_rate is not None):
            out.append(f"{at}: domain and max_unseen_rate apply to categorical features only")
    return out


def _segment_problems(
    where: str,
    model: ResolvedModel,
    schema: dict[str, ColumnType] | None = None,
    source: str = "",
) -> list[str]:
    """Segment columns that cannot apply: not a categorical feature of the declared
    ``features`` (or of the reference's ``schema``, read from the option ``source``, when
    none are declared), nor an event field such as model_version."""
    schema = model.features if model.features is not None else schema
    if schema is None:  # the schema comes from a reference not loaded here
        return []
    out = []
    for i, cols in enumerate(model.segments.specs()):
        for col in cols:
            kind = schema.get(col)
            if col in SEGMENT_EVENT_FIELDS or kind == "categorical":
                continue
            why = "not a declared feature" if kind is None else "a numeric feature"
            if model.features is None and source:
                why = f"{'not a' if kind is None else 'a numeric'} feature in {source}"
            out.append(
                f"{where}.segments.by[{i}]: {col!r} is {why} of model {model.name!r}; segments "
                f"are categorical features or {', '.join(sorted(SEGMENT_EVENT_FIELDS))}"
            )
    return out


def _matcher_problems(config: MonitorConfig) -> list[str]:
    """Rule and silence ``segment`` matchers naming a column no declared slice starts with:
    a label is ``column=value,...`` in the slice's declared order, so such a matcher
    (a typo, a slice since removed) would match nothing and be silently ignored."""
    slices = [config.defaults.segments] + [
        resolve_model(m, config.defaults).segments for m in config.models
    ]
    first = {spec[0] for seg in slices for spec in seg.specs()}
    matchers = [
        (f"alerting.rules[{i}].segment", r.segment) for i, r in enumerate(config.alerting.rules)
    ]
    matchers += [
        (f"alerting.silences[{i}].matchers.segment", s.matchers.segment)
        for i, s in enumerate(config.alerting.silences)
    ]
    out = []
    for where, pattern in matchers:
        column, eq, _ = pattern.partition("=")
        if not eq or any(c in column for c in "*?[") or column in first:
            continue
        declared = ", ".join(sorted(first)) if first else "none"
        out.append(
            f"{where}: column {column!r} starts no declared segment slice (slices start with: "
            f"{declared}); it would match nothing"
        )
    return out


def _segments_without_slices(where: str, model: ModelConfig, defaults: ModelDefaults) -> list[str]:
    """A model's ``segments`` that set top_k or a minimum but no ``by``: a model's section
    replaces the defaults' whole, so ``segments: {top_k: 3}`` leaves the model with no
    slice at all and its settings silently unused."""
    seg = model.segments
    if seg is None or seg.by:
        return []
    given = sorted(seg.model_fields_set - {"by"})
    if not given:
        return []
    inherited = (
        f" (the defaults' by {defaults.segments.by} is not inherited)"
        if defaults.segments.by
        else ""
    )
    return [
        f"{where}.segments: {', '.join(given)} without by: no slice to apply to; a model's "
        f"segments replace the defaults' whole section{inherited}"
    ]


def check_config(config: MonitorConfig, *, references: bool = True) -> list[str]:
    """Problems a schema cannot see: reference files that are missing, unreadable or do
    not fit the declared features, a TLS CA, certificate or key that cannot be loaded
    (:func:`monitor.tls.client_ssl_context`, as every Kafka client loads them), and the like.

    With ``references`` (the default) every reference file is loaded and checked by
    :func:`monitor.reference.load_model_references`, the very function the service's
    start uses, on the paths :func:`load_config` resolved: what passes here loads there.
    """
    problems: list[str] = _matcher_problems(config)
    if config.kafka.security_protocol in ("SSL", "SASL_SSL"):
        try:  # the context every Kafka client connects with: what loads here loads there
            client_ssl_context(config.kafka)
        except ConfigError as exc:
            problems.extend(exc.problems)
    for i, m in enumerate(config.models):
        resolved = resolve_model(m, config.defaults)
        problems.extend(_constraint_problems(f"models[{i}]", resolved))
        problems.extend(_segment_problems(f"models[{i}]", resolved))
        problems.extend(_segments_without_slices(f"models[{i}]", m, config.defaults))
        if m.features is not None and len(m.features) > config.limits.max_features_per_model:
            problems.append(
                f"models[{i}].features: {len(m.features)} features exceed "
                f"limits.max_features_per_model={config.limits.max_features_per_model}"
            )
    if references:
        from monitor.reference import load_model_references  # numpy: only when checking

        for i, m in enumerate(config.models):
            resolved = resolve_model(m, config.defaults)
            try:
                refs = load_model_references(
                    resolved,
                    max_features=config.limits.max_features_per_model,
                    max_categories=config.limits.max_categories_per_feature,
                    max_category_chars=config.limits.max_category_chars,
                )
                # Each reference the model may switch to: a model_version whose reference
                # lacks a segment column would disable the model when its events arrive.
                profiles = [("reference.path", refs.profile)]
                profiles += [(f"reference.versions.{v}", p) for v, p in refs.versions.items()]
                for source, profile in profiles:
                    if m.features is None and profile is not None:
                        problems.extend(
                            _segment_problems(f"models[{i}]", resolved, profile.schema(), source)
                        )
                        problems.extend(
                            _constraint_problems(f"models[{i}]", resolved, profile.schema(), source)
                        )
            except ReferenceError_ as exc:
                if m.reference:
                    problems.append(f"models[{i}].{exc}")
                else:  # inherited: name the option where it is written
                    problems.append(f"defaults.{exc} (model {m.name!r})")
    return problems
