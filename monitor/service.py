"""The service: wires the Kafka source, the models, the alert engine, metrics and state.

Life cycle (``start`` -> ``run`` -> ``stop``), in this order:

start: open the state store, load references (a model whose reference cannot be
loaded, or does not fit its declared features, is disabled: one error line, a
reason on ``/readyz``, ``/api/status`` and ``monitor_model_disabled``; its events
are counted as skipped and its offsets advance; the other models run on; ``monitor
check-config`` finds the same problems beforehand), start the alert service
(delivers what the outbox still holds from a previous run), the HTTP server, the dead-letter
producer, then the consumer.

run: poll a batch; decode; publish rejected messages to the dead-letter topic
(before anything is applied, so a batch is either applied whole or not at all);
apply it model by model; submit each evaluation's signals to the alert engine
(durably, into its outbox); then commit the offsets (at most every
``kafka.commit_interval_seconds``: they are for lag tools, see the rules below). A checkpoint
(every model's observed state + the offsets it covers, in one transaction) is
written on a cadence, on partition revocation and at shutdown: encoded in the
loop under the lock (one model at a time, the loop getting a turn between models),
written by a thread while the lock is still held, so the
loop keeps serving (heartbeats, HTTP) and nothing changes the state meanwhile.
On assignment, the stored models of the assigned partitions are restored at
once, settings and references taken from the config (``ModelMonitor.restore``).

Exactness after a crash rests on three rules, each kept here:

* the state store's offsets win over Kafka's committed ones (``_restore_assigned``
  seeks to them, the assigned partitions paused until then); Kafka's commits exist
  for lag monitoring and run ahead;
* the first time a partition without a stored offset is consumed, its starting
  offset is stored *before* anything of it is applied: a crash before the first
  checkpoint then replays from there rather than from Kafka's (later) commit;
* a checkpoint always covers *every* model in memory with *all* positions, so no
  stored offset ever covers events that a stored state lacks: a model changed
  since its last save is written, one unchanged is not (its stored state is
  still its state, see ``checkpoint``). A batch that fails half-applied marks
  the state unsafe, and then nothing more is checkpointed.

With ``state.backend: kafka`` (:mod:`monitor.kafka_store`) the rules become:

* the group's committed offsets *are* the stored offsets: a checkpoint writes the
  changed models' states to the changelog topic and commits all positions with
  ``send_offsets_to_transaction``, in one Kafka transaction; nothing else commits
  (no per-batch commit, none at revocation or shutdown outside a checkpoint), and
  the lag gauge is computed from the positions, not from commits;
* on assignment the store reads the assigned partitions' changelog
  (``read_committed``) and committed offsets before anything of them is loaded
  (``_restore_assigned``), and the consumer is sought to those offsets; if that read
  fails, the state is marked unsafe and the instance stops rather than consume
  with empty models (which would overwrite the stored states);
* the second and third rules above hold unchanged (the first offsets are
  committed in a transaction of their own; a checkpoint covers every model).

* notifications are not written to the outbox at submit: the engine spools them, and
  the checkpoint produces them to the alerts topic in its transaction (an evaluation
  that notifies forces a checkpoint right after its batch, ``_maybe_checkpoint``);
  every instance delivers its partitions of that topic through its outbox
  (:mod:`monitor.alerting.alert_log`), so alerts survive the loss of a host.

Alert state rolls back with the model state it belongs to, so replayed
evaluations take the same decisions and yield the same idempotency keys, which
the outbox's unique (receiver, key) turns into no second page.

stop (idempotent): finish the batch in hand, checkpoint, commit, leave the group,
stop the dead-letter producer, flush the alert outbox within the grace period,
stop the HTTP server, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from typing import Any

import httpx
import msgspec
from prometheus_client import CollectorRegistry

from monitor import column_sort, state_format, status
from monitor.alerting.alert_log import AlertLogConsumer, encode_record, handover_seconds
from monitor.alerting.engine import AlertService
from monitor.alerting.policy import STATE_VERSION as ALERT_STATE_VERSION
from monitor.alerting.policy import ModelAlertState, forget_future
from monitor.clock import Clock, SystemClock
from monitor.config import MonitorConfig, ResolvedModel, resolve_model
from monitor.detectors import ks, streaming
from monitor.errors import (
    ConfigError,
    GroupRefusedError,
    MonitorError,
    ReferenceError_,
    ReferenceMismatch,
    ServiceStateError,
    SourceError,
    StateError,
    UndecodableBatchError,
)
from monitor.events import (
    NATIVE_AVAILABLE,
    DecodedBatch,
    Decoder,
    FutureBound,
    MessageBatch,
    RawMessage,
    Rejected,
    printable,
    utc_text,
)
from monitor.http_server import HttpServer
from monitor.kafka_source import TP, DeadLetterPublisher, KafkaSource
from monitor.kafka_store import KafkaStateStore
from monitor.model_monitor import Evaluation, ModelMonitor
from monitor.ratelimit import RateLimitedLogger
from monitor.reference import ReferenceProfile, load_model_references
from monitor.service_metrics import ModelStateCollector, ServiceMetrics, register_process_metrics
from monitor.state_format import NewerStateError, StateFormatError
from monitor.store import SavedModel, SQLiteStateStore, StateStore
from monitor.ui.history import DriftHistory
from monitor.version import __version__

log = logging.getLogger("monitor.service")

# A retriable dead-letter failure (broker briefly unavailable) is retried this many times,
# backing off from 1 s (1 + 2 + 4 s between attempts, each attempt bounded at 10 s by the
# dead-letter producer); then the messages are counted as dropped and consumption goes on.
DEAD_LETTER_ATTEMPTS = 4
DEAD_LETTER_RETRY_SECONDS = 1.0
# Rejection reason for a message the decoder itself failed on (a bug, counted, dead-lettered).
DECODER_ERROR = "decoder_error"
#: A model spread over several partitions is warned of once, then at most this often.
PARTITION_WARN_SECONDS = 3600.0
#: The longest wait between two attempts at an alert outbox write that failed.
OUTBOX_RETRY_MAX_SECONDS = 30.0
#: Why a stored state not restored is kept aside (:meth:`MonitorService._not_restored`); not
#: ``legacy_pickle``: a previous release's pickle is never read, nor kept.
KEPT_UNRESTORED_REASONS = frozenset({"incompatible", "corrupt", "unknown_version", "newer_version"})
#: Why a model is disabled (metric label values, bounded).
DISABLED_REASONS = (
    "reference_unreadable",
    "reference_mismatch",
    "reference_invalid",
    "state_newer",
)


# A checkpoint taken in the loop: blobs of the changed models, all positions, and the
# alert documents those blobs hold.
_Snapshot = tuple[dict[str, SavedModel], dict[TP, int], dict[str, str]]


def offset_ranges(messages: MessageBatch | list[RawMessage]) -> dict[TP, tuple[int, int]]:
    """(lowest, highest) offset per partition in a batch.

    A poll hands each partition's records as one run, so this is a C-level pass
    per run (``min``/``max``), not Python per message; runs of one partition that
    are not adjacent are merged.

    >>> at = [("p", 0, 5), ("p", 0, 6), ("p", 1, 3), ("p", 0, 2)]
    >>> offset_ranges([RawMessage(b"", 0.0, t, p, o) for t, p, o in at])
    {('p', 0): (2, 6), ('p', 1): (3, 3)}
    """
    return MessageBatch.of(messages).offset_ranges()


class MonitorService:
    """One monitor instance in a consumer group."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.clock = clock or SystemClock()
        self.metrics = ServiceMetrics(self.registry)
        # Every listed model's event counter exists from the start, at 0: the NoEvents rule
        # (rate(...) == 0) cannot fire on a series that is absent, so a model whose producer
        # died before a restart of the monitor would never be reported.
        for listed in config.models:
            self.metrics.events_processed.labels(listed.name)
        register_process_metrics(
            self.registry,
            version=__version__,
            native=NATIVE_AVAILABLE and os.environ.get("MONITOR_NATIVE_DECODER", "1") != "0",
        )
        self.registry.register(
            ModelStateCollector(
                lambda: self.models.values(),
                config.limits.max_exported_categories,
                config.metrics.export,
            )
        )
        self._store_arg = store
        self.store: StateStore | None = None
        # Alert state is saved with each model's checkpoint and rolled back to it when the
        # model is loaded (``_model``), so the outbox need not store it at every evaluation.
        self.alerts = AlertService(
            config.alerting,
            registry=self.registry,
            clock=self.clock,
            transport=transport,
            persist_state=False,
            # Kafka backend: notifications go to the alerts topic in the checkpoint's transaction.
            spool=config.state.backend == "kafka",
        )
        self.alert_log: AlertLogConsumer | None = None
        self.models: dict[str, ModelMonitor] = {}
        self._admitted: set[str] = set()  # unlisted models accepted under unknown_models: track
        # Stored states of unlisted models kept, not restored (``_unlisted``), by partition:
        # listed on /api/status, so a parked state is not only an INFO line.
        self._kept_unlisted: dict[str, TP] = {}
        # Kept unlisted models whose open incidents were just resolved: their states without
        # those incidents, written by the next checkpoint (_retire_alerts).
        self._retired: dict[str, SavedModel] = {}
        self.references: dict[str, ReferenceProfile] = {}
        self.version_references: dict[str, dict[str, ReferenceProfile]] = {}
        # model -> (reason, error): its events are counted and skipped, the others run on.
        self.disabled: dict[str, tuple[str, str]] = {}
        self._model_partition: dict[str, TP] = {}
        # Models whose events arrived from a partition other than the one they are bound to
        # (producers not keying by model): model -> what /api/status shows (see
        # ``_check_partition``), and when each was last warned of.
        self._partition_conflicts: dict[str, dict[str, Any]] = {}
        self._partition_warned_at: dict[str, float] = {}
        self._positions: dict[TP, int] = {}  # next offset to consume, per partition, as processed
        # Models changed since their last save, and the alert document each was saved with:
        # a checkpoint writes only those (see ``checkpoint``).
        self._dirty: set[str] = set()
        # Per model, its series of the per-batch metrics (events processed, event lag;
        # evaluations once it has one): ``labels()`` per model per batch was a look-up of a
        # few microseconds each, which 50 interleaved models pay 50 times a batch (issue 19).
        # A series removed from its metric is dropped here too (``_on_revoked``).
        self._model_series: dict[str, tuple[Any, Any]] = {}
        self._evaluation_series: dict[str, Any] = {}
        # Models warned of declared constraints their reference lacks (once per model).
        self._unchecked_warned: set[str] = set()
        self._frozen_warned: set[str] = set()  # models warned of a frozen event time (once)
        self._behind_warned: set[str] = set()  # models warned of events behind their boundary
        self._estimate_warned: set[str] = set()  # models warned of 0/1 predictions (CBPE)
        self._saved_alerts: dict[str, str] = {}
        # Stored states that could not be restored (model -> (reason, blob)): kept aside by
        # the next checkpoint, in the transaction that overwrites them (a store that can,
        # ``keeps_unrestored``); see ``_not_restored``.
        self._unrestored: dict[str, tuple[str, bytes]] = {}
        self.metrics.state_unrestored_kept.set_function(
            lambda: float(getattr(self.store, "unrestored_kept", 0))
        )
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        # The same request, for what start() runs off the loop (the Kafka state store waits
        # there for the predictions topic): a SIGTERM must end that wait too.
        self._stop_requested = threading.Event()
        # Assigned partitions whose states and offsets are not restored yet: paused by the
        # assignment listener, restored by the consume loop (see ``_on_assigned``). Every
        # rebalance callback bumps ``_rebalance_seq``, so a restore that a rebalance
        # overtook is dropped and done again for the new assignment.
        self._to_restore: set[TP] = set()
        self._rebalance_seq = 0
        # Partitions revoked since the consume loop's last poll began: their messages in the
        # batch in hand are no longer ours (see ``_drop_revoked``).
        self._revoked_since_poll: set[TP] = set()
        self._restoring_since: float | None = None  # the consume loop is in a restore
        self._state = "new"
        # Set when a batch failed half-applied: memory no longer matches any offset, so it
        # must never be checkpointed; the next start replays from the last good checkpoint.
        self._unsafe_state: str | None = None
        self._last_checkpoint = 0.0
        # A periodic checkpoint that failed (state file locked, disk full, broker away): the
        # time of the first failure in a row, their count, and the last error's text.
        self._checkpoint_failing: tuple[float, int, str] | None = None
        self._log_checkpoint = RateLimitedLogger(log, per_seconds=60.0, clock=self.clock)
        # An alert outbox write that failed (file locked, disk full): as for checkpoints, the
        # time of the first failure in a row, their count, and the last error's text.
        self._outbox_failing: tuple[float, int, str] | None = None
        self._log_outbox = RateLimitedLogger(log, per_seconds=60.0, clock=self.clock)
        self.last_poll_at = 0.0
        self._committed_at: float | None = None  # clock.monotonic() of the last batch commit
        self.broker_ok_at = 0.0
        self.evaluations_seen = 0
        # The UI's drift-score history: bounded, saved with each model's state.
        self.history = DriftHistory(config.http.ui_history)
        self._log_invalid = RateLimitedLogger(log, per_seconds=10.0, clock=self.clock)
        self._log_decoder = RateLimitedLogger(log, per_seconds=60.0, clock=self.clock)
        self._log_native = RateLimitedLogger(log, per_seconds=60.0, clock=self.clock)
        self._log_decode_one = RateLimitedLogger(log, per_seconds=10.0, clock=self.clock)
        self._log_dead_letter = RateLimitedLogger(log, per_seconds=10.0, clock=self.clock)
        self._log_poll = RateLimitedLogger(log, per_seconds=60.0, clock=self.clock)
        self._last_poll_error = ""
        # (codec, error, when) of the last poll that met a batch this install cannot decode.
        self._undecodable: tuple[str, str, float] | None = None
        self.decoder = Decoder(
            max_message_bytes=config.kafka.max_message_bytes,
            max_event_id_chars=config.limits.max_event_id_chars,
            labels_topic=config.kafka.labels_topic,
            accept_model=self._accept_model,
            accept_label_model=self._accept_label_model,
            # The compiled decoder is used when installed; MONITOR_NATIVE_DECODER=0 turns it off.
            native=os.environ.get("MONITOR_NATIVE_DECODER", "1") != "0",
            # Event times are held to the service's clock (the injected one), never to the
            # Kafka record time, which producers set.
            future=FutureBound(self.clock, config.limits.max_timestamp_ahead_seconds),
            check_label=self._label_problem,
        )
        self.source = KafkaSource(
            config.kafka, on_revoked=self._on_revoked, on_assigned=self._on_assigned
        )
        self.dead_letters = DeadLetterPublisher(config.kafka)
        self._tasks: list[asyncio.Task[Any]] = []
        token = config.http.admin_token.get_secret_value() if config.http.admin_token else None
        self.http = HttpServer(
            self,
            config.http.host,
            config.http.port,
            token,
            allowed_hosts=config.http.allowed_hosts,
            max_connections=config.http.max_connections,
        )

    # ----------------------------------------------------------------- models

    def _accept_model(self, model: str) -> str | None:
        if self.config.model(model) is not None:
            return None
        if self.config.unknown_models == "reject":
            return "unknown_model"
        if model in self._admitted:
            return None
        if not model.isprintable():
            # A name from the wire with a control, format (bidi override, zero-width) or
            # separator character: it would become a model whose name reads as another on
            # dashboards and in pages ("bidi<U+202E>evil" shows as "bidilive"); a model
            # name is an identifier, never text like that. Listed models are checked by
            # the config (ModelConfig.name).
            return "invalid_model_name"
        # The cap counts every model, the listed ones included (as the config validation does).
        if len(self._admitted) + len(self.config.models) >= self.config.limits.max_models:
            return "too_many_models"
        self._admitted.add(model)  # counted now: one batch may bring many new models
        return None

    def _accept_label_model(self, model: str) -> str | None:
        """The model verdict for a label event.

        Under ``unknown_models: track`` a label of a model no prediction has admitted made
        the model (a "learning" model on /api/status, a checkpoint) and took a slot of
        ``limits.max_models``; when the defaults track no performance its labels were only
        counted as ignored, so a labels topic shared with other teams' models filled the
        cap and the next new model's predictions were rejected as ``too_many_models``.
        Such a label is an unknown model's. With a performance task in the defaults, a
        label may come before its model's first prediction and is admitted (held as early).
        """
        if self.config.model(model) is not None or model in self._admitted:
            return None
        if model in self.models:  # restored from the store
            return None
        if self.config.unknown_models == "reject" or self.config.defaults.performance.task is None:
            return "unknown_model"
        return self._accept_model(model)

    def _label_problem(self, model: str, label: Any) -> str | None:
        """Why ``label`` cannot be graded by ``model``'s task (the decoder rejects and
        dead-letters it), or None; a model not made yet checks its labels when they join."""
        mm = self.models.get(model)
        if mm is None or mm.performance is None:
            return None
        return mm.performance.label_problem(label)

    def _settings(self, model: str) -> ResolvedModel:
        resolved = self.config.model(model)
        if resolved is not None:
            return resolved
        from monitor.config import ModelConfig

        return resolve_model(ModelConfig(name=model), self.config.defaults)

    def _new_model(self, model: str) -> ModelMonitor:
        settings = self._settings(model)
        return ModelMonitor(
            settings,
            self.config.limits,
            self.references.get(model),
            self.version_references.get(model),
        )

    def _model(self, model: str) -> ModelMonitor:
        """The model's monitor: in memory, restored from the store, or new.

        Raises :class:`NewerStateError` when its stored state was written by a newer
        release and ``state.on_newer_state`` is ``refuse``: the caller disables the model
        (:meth:`_disable`), so its stored state is never overwritten (see
        :meth:`_newer_state`).
        """
        mm = self.models.get(model)
        if mm is not None:
            return mm
        blob: bytes | None = None
        try:
            blob = self.store.load_model(model) if self.store else None
            restored = self._restore(model, blob) if blob is not None else None
        except NewerStateError as exc:  # from the store (a manifest) or the blob's header
            self._newer_state(model, exc, blob)  # raises, unless the operator opted in
            restored = None
        except StateFormatError as exc:  # a changelog record that cannot be used
            self._not_restored(model, exc.reason, str(exc))
            restored = None
        alert_doc: dict[str, Any] | None = None
        if restored is not None:
            mm, alert_doc, changed = restored
            if changed:  # saved again with the config applied: the notes are not repeated
                self._dirty.add(model)
        else:
            mm = self._new_model(model)
            self._dirty.add(model)  # not stored, or stored unreadably
        # The outbox holds the alert state as of the last *submit*, which may be ahead of the
        # model state we resume from; roll it back (to empty for a fresh model) so the replay
        # decides exactly as the first pass did and re-derives the same idempotency keys.
        if alert_doc is None or model not in alert_doc.get("models", {}):
            alert_doc = _empty_alert_state(model)
        try:
            self.alerts.set_state(alert_doc)
            if restored is not None:
                self._saved_alerts[model] = self._alert_text(model)
        except (MonitorError, KeyError, TypeError, ValueError) as exc:
            # The model runs on, but an incident it had notified may be notified again:
            # counted, so it can be alerted on, not only read in the log.
            self.metrics.state_not_restored.labels("alert_state").inc()
            log.warning("alert state of model %s not restored (%s); starting empty", model, exc)
            self.alerts.set_state(_empty_alert_state(model))
        self.models[model] = mm
        return mm

    def _check_behind(self, model: str, mm: ModelMonitor) -> None:
        """One WARNING when a time-window model's events fall more than a window behind
        the step boundary it waits for (:meth:`~monitor.cadence.Cadence.behind`), and again
        only after it caught up."""
        boundary = mm.cadence.behind()
        if boundary is None:
            self._behind_warned.discard(model)
            return
        if model in self._behind_warned or mm.cadence.newest_seen is None:
            return
        self._behind_warned.add(model)
        log.warning(
            "model %s: its newest events (%s) are more than a window before the time "
            "window's next step boundary (%s): event time moved there and came back (most "
            "likely in record times, which events without a timestamp of their own take and "
            "which are not held to the model's event clock); the events are counted, and "
            "the model evaluates again when event time reaches the boundary. If a "
            "producer's clock runs ahead, fix it, or lower limits.max_timestamp_ahead_seconds",
            printable(repr(model), 200),
            utc_text(mm.cadence.newest_seen),
            utc_text(boundary),
        )

    def _alert_text(self, model: str) -> str:
        """The alert engine's document of ``model`` as saved with its state."""
        alerts = self.alerts.get_state([model])
        if model not in alerts["models"]:
            alerts = _empty_alert_state(model)
        return json.dumps(alerts, default=_json_default, sort_keys=True)

    def _restore(
        self, model: str, blob: bytes
    ) -> tuple[ModelMonitor, dict[str, Any] | None, bool] | None:
        """A stored state decoded and fitted to the configured model (with its alert document
        and whether the config changed anything), or None (start fresh).

        Settings and references come from the config (see ``ModelMonitor.restore``);
        each kind of change found is logged once. A state that cannot be used is
        logged with its reason and counted; the model then starts fresh from the
        stored offsets (it never sees the events that state had counted).
        """
        try:
            state = state_format.decode(blob)  # NewerStateError goes to the caller
            if state.model != model:
                raise StateFormatError("corrupt", f"the blob holds model {state.model!r}")
            mm, notes = ModelMonitor.restore(
                self._settings(model),
                self.config.limits,
                state,
                self.references.get(model),
                self.version_references.get(model),
            )
            alert_doc = json.loads(state.alerts) if state.alerts is not None else None
            future_alerts = self._forget_future_alerts(model, alert_doc)
        except NewerStateError:
            raise
        except StateFormatError as exc:
            self._not_restored(model, exc.reason, str(exc), blob)
            return None
        except Exception as exc:  # a state that does not fit the configured model
            self._not_restored(model, "incompatible", f"{type(exc).__name__}: {exc}", blob)
            return None
        for note in notes:
            log.info("model %s: config change applied to the restored state: %s", model, note)
        stuck = mm.forget_future_times(
            self.clock.time(), self.config.limits.max_timestamp_ahead_seconds
        )
        if future_alerts:
            what = (
                f"{future_alerts} alert time(s) (a firing signal's start, an incident's start "
                "or last notification, the last retraining) beyond "
                f"limits.max_timestamp_ahead_seconds after the monitor's clock set to now"
            )
            stuck = f"{stuck}; {what}" if stuck is not None else what
        if stuck is not None:
            log.warning("model %s: restored state brought back from the future: %s", model, stuck)
        try:
            self.history.restore_model(model, state.history)
        except StateError as exc:  # the UI's history only: the model itself is restored
            log.warning("drift history of model %s not restored (%s); it starts empty", model, exc)
        tp = self._model_partition.get(model)
        where = f"{tp[0]}/{tp[1]} at offset {self._positions.get(tp)}" if tp else "no partition"
        log.info(
            "restored state of model %s (%d events, %d evaluations; offsets %s)",
            model,
            mm.events_total,
            mm.evaluations,
            where,
        )
        return mm, alert_doc, bool(notes) or stuck is not None

    def _forget_future_alerts(self, model: str, alert_doc: dict[str, Any] | None) -> int:
        """Set the times of ``model``'s saved alert state that lie beyond the future bound to
        now, in ``alert_doc`` (see :func:`monitor.alerting.policy.forget_future`); how many.
        A document that does not parse is left to ``set_state`` to refuse."""
        models = alert_doc.get("models") if isinstance(alert_doc, dict) else None
        if not isinstance(models, dict) or model not in models:
            return 0
        try:
            saved = ModelAlertState.from_json(models[model])
        except StateError:
            return 0
        now = self.clock.time()
        latest = now + self.config.limits.max_timestamp_ahead_seconds
        fixed, n = forget_future(saved, latest, now)
        if n:
            models[model] = fixed.to_json()
        return n

    def _newer_state(self, model: str, exc: NewerStateError, blob: bytes | None) -> None:
        """A stored state of a newer release (after a rollback): refuse it, or start fresh.

        Starting fresh (what any unreadable state did) wrote the fresh state over the newer
        one at the next checkpoint: rolled forward again, the newer release found nothing
        of what it had stored. So by default (``state.on_newer_state: refuse``) the error
        goes up and the caller disables the model: its events are skipped (their offsets
        advance), ``/readyz`` is not ready and ``monitor_model_disabled{reason=
        "state_newer"}`` is 1, and the stored record stays as it is. With ``start_fresh``
        (the operator accepts losing it) it is counted and the model starts fresh.
        """
        if self.config.state.on_newer_state == "refuse":
            raise NewerStateError(
                f"stored state of model {model!r}: {exc.what}",
                exc.found,
                exc.supported,
            ) from None
        self._not_restored(model, exc.reason, f"{exc} (state.on_newer_state: start_fresh)", blob)

    def _not_restored(
        self, model: str, reason: str, detail: str, blob: bytes | None = None
    ) -> None:
        """Count and log a stored state the model starts fresh instead of.

        Its fresh state's next checkpoint overwrites that stored one: after a release
        with a restore bug, or a rollback to one that cannot fit a newer state of the same
        format version, it was gone for good. So a store that can (the SQLite one) keeps
        the blob aside, as it is, in that checkpoint's transaction (``unrestored``; see
        docs/RUNBOOK.md, "A stored state was not restored").
        """
        self.metrics.state_not_restored.labels(reason).inc()
        kept = ""
        if (
            blob is not None
            and reason in KEPT_UNRESTORED_REASONS
            and getattr(self.store, "keeps_unrestored", False)
        ):
            self._unrestored[model] = (reason, blob)
            kept = (
                "; the stored state is kept aside (the unrestored table) by the next checkpoint, "
                "unless one of this model is kept there already"
            )
        log.warning(
            "stored state of model %s not restored (%s: %s); the model starts fresh%s",
            model,
            reason,
            detail,
            kept,
        )

    def load_references(self) -> None:
        """Load every configured reference (and per-version reference) before consuming.

        Loading and checking is :func:`~monitor.reference.load_model_references`, as in
        ``monitor check-config``. A model whose references fail is disabled, not the service.
        """
        for m in self.config.models:
            settings = resolve_model(m, self.config.defaults)
            try:
                refs = load_model_references(
                    settings,
                    max_features=self.config.limits.max_features_per_model,
                    max_categories=self.config.limits.max_categories_per_feature,
                    max_category_chars=self.config.limits.max_category_chars,
                )
            except ReferenceError_ as exc:
                self._disable(m.name, exc, at_start=True)
                continue
            ref = settings.reference
            loaded = [(ref.path, refs.profile)] + [
                (ref.versions[v], p) for v, p in refs.versions.items()
            ]
            for path, profile in loaded:
                if profile is not None:
                    log.info(
                        "reference for %s from %s: %d rows, %d columns, fingerprint %s",
                        settings.name,
                        path,
                        profile.rows,
                        len(profile.features),
                        profile.fingerprint,
                    )
                    note = profile.too_long_note(self.config.limits.max_category_chars)
                    if note is not None:
                        log.warning("reference for %s from %s: %s", settings.name, path, note)
            if refs.profile is not None:
                self.references[m.name] = refs.profile
            if refs.versions:
                self.version_references[m.name] = refs.versions

    def _disable(
        self, model: str, exc: ReferenceError_ | NewerStateError, *, at_start: bool
    ) -> None:
        """Take one model out of service: its reference is unusable, or its stored state is
        a newer release's (:meth:`_newer_state`), and retrying cannot help.

        Its monitor leaves memory (it is never checkpointed again, so a stored state is
        left as it is); its later events are counted in ``monitor_events_skipped_total``
        and their offsets advance.
        """
        text = str(exc)
        if isinstance(exc, NewerStateError):
            reason = "state_newer"
            text += (
                "; it is left untouched in the state store. Roll forward to a release that "
                "reads it, or set state.on_newer_state: start_fresh to discard it"
            )
        elif isinstance(exc, ReferenceMismatch):
            reason = "reference_mismatch"
        elif at_start:
            reason = "reference_unreadable"
        else:
            reason = "reference_invalid"
        self.disabled[model] = (reason, text)
        self.models.pop(model, None)
        self.history.forget(model)
        self._model_partition.pop(model, None)
        self._partition_conflicts.pop(model, None)
        self._dirty.discard(model)
        self.metrics.model_disabled.labels(model, reason).set(1)
        log.error("model %s disabled (%s): %s", model, reason, text)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._state != "new":
            raise ServiceStateError(f"cannot start a service that is {self._state}")
        self._state = "starting"
        try:
            # Off the loop: the Kafka store may wait minutes for the predictions topic, and
            # the signal handlers (request_stop) run only while the loop does.
            self.store = self._store_arg or await asyncio.to_thread(
                _open_state_store, self.config, self.registry, self._stop_requested
            )
        except OSError as exc:  # one line naming the setting, not a traceback
            raise ConfigError([f"state.path {self.config.state.path}: {_why(exc)}"]) from exc
        for _ in range(getattr(self.store, "discarded_legacy", 0)):
            self.metrics.state_not_restored.labels("legacy_pickle").inc()
        # Unlisted models admitted by an earlier run stay admitted, so that the model cap
        # decides the same way on a replay as it did the first time.
        self._admitted = {m for m in self.store.models() if self.config.model(m) is None}
        self.load_references()
        ks.warm_up()  # a broken KS kernel fails here, not in the first evaluation
        log.info(
            "KS kernel: %s",
            "compiled (monitor_native)" if ks.NATIVE_KS else "numpy (monitor_native not installed)",
        )
        # Timed here, once (a few ms), rather than inside the first evaluation.
        log.info("window column sort: %s", column_sort.describe())
        if self.decoder.native:
            log.info("event decoder: compiled (monitor_native)")
        else:
            log.info(
                "event decoder: Python only (%s)",
                "MONITOR_NATIVE_DECODER=0" if NATIVE_AVAILABLE else "monitor_native not installed",
            )
        try:
            await self.alerts.start()
        except OSError as exc:
            path = self.config.alerting.outbox_path
            raise ConfigError([f"alerting.outbox_path {path}: {_why(exc)}"]) from exc
        if isinstance(self.store, KafkaStateStore):
            self.alert_log = AlertLogConsumer(
                self.config.kafka,
                self.store.alerts_topic,
                self.alerts,
                self.registry,
                clock=self.clock,
                revoke_grace_seconds=handover_seconds(self.config.alerting),
            )
            await self.alert_log.start()
        await self.http.start()
        await self.dead_letters.start()
        await self.source.start()
        # river.drift (scikit-learn, pandas: ~1.5 s) loads here, off the loop: not at import
        # (the CLI's other commands skip it), not before what can refuse the start (a port in
        # use ends the process without it), not at a first event, on the loop.
        await asyncio.to_thread(streaming.load_river)
        now = self.clock.time()
        self.last_poll_at = self.broker_ok_at = self._last_checkpoint = now
        self._state = "running"

    async def run(self) -> None:
        """Consume until :meth:`request_stop`; then return (call :meth:`stop` after)."""
        if self._state != "running":
            raise ServiceStateError("start() the service before run()")
        watchdog = asyncio.create_task(self._watchdog(), name="monitor-watchdog")
        self._tasks.append(watchdog)
        try:
            while not self._stopping.is_set():
                if self._to_restore:
                    await self._restore_assigned()
                    continue
                self._revoked_since_poll.clear()
                try:
                    messages = await self.source.poll()
                except GroupRefusedError as exc:
                    # Not retried: nothing would change until the setting or ACL does. The
                    # process ends (exit 1) with the reason, rather than sit without
                    # partitions while /healthz says 200.
                    log.error("%s; stopping", exc)
                    raise
                except SourceError as exc:
                    self._poll_failed(exc)
                    await self._sleep(1.0)
                    continue
                self.last_poll_at = self.clock.time()
                self.metrics.last_progress.set(self.last_poll_at)
                if messages:
                    await self.process(messages)
                else:
                    await self._maybe_checkpoint()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    def _commit_due(self) -> bool:
        """Whether this batch's offsets go to Kafka now (the SQLite backend).

        The stored offsets, saved with the states, are what a restart resumes from; Kafka's
        committed ones serve lag monitoring by other tools. Committed after every batch,
        each commit's round trip to the broker (a few ms for about 2,000 events) cost end
        to end throughput a quarter (BENCHMARKS.md, 2026-12-02 13:40); at most once per
        ``kafka.commit_interval_seconds`` (and at revocation and shutdown) keeps the lag
        that tools read as fresh as that.
        """
        interval = self.config.kafka.commit_interval_seconds
        last = self._committed_at
        return interval <= 0 or last is None or self.clock.monotonic() - last >= interval

    @property
    def _store_commits(self) -> bool:
        """Whether the state store commits the group's offsets (the Kafka backend)."""
        return bool(getattr(self.store, "commits_offsets", False))

    def _poll_failed(self, exc: SourceError) -> None:
        """Count a failed poll; log a new error at once, a repeated one at a bounded rate.

        A batch compressed with a codec this install cannot decode is an ERROR (said
        once per distinct error, with the codec and the fix) and turns ``/healthz``
        503 (:meth:`health`): its partition cannot advance until the install is fixed.
        """
        self.metrics.loop_errors.labels("poll").inc()
        text = str(exc)
        repeated = text == self._last_poll_error
        self._last_poll_error = text
        if isinstance(exc, UndecodableBatchError):
            self.metrics.undecodable_batches.labels(exc.codec).inc()
            self._undecodable = (exc.codec, text, self.clock.time())
            if not repeated:
                log.error("%s", text)
            return
        if not repeated:
            self._log_poll = RateLimitedLogger(log, per_seconds=60.0, clock=self.clock)
        self._log_poll.warning("%s; retrying (counted in monitor_loop_errors_total)", text)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def request_stop(self) -> None:
        self._stopping.set()
        self._stop_requested.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` (a signal) asked for a stop."""
        return self._stop_requested.is_set()

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Ordered shutdown; idempotent.

        ``grace_seconds`` bounds the alert outbox flush; by default it is the
        configuration's ``shutdown_grace_seconds``.
        """
        if self._state in ("stopping", "stopped"):
            return
        if grace_seconds is None:
            grace_seconds = self.config.shutdown_grace_seconds
        was_running = self._state == "running"
        self._state = "stopping"
        self._stopping.set()
        log.info("shutdown: finishing the batch in hand")
        async with self._lock:
            if was_running and self._unsafe_state is None:
                try:
                    await self._checkpoint()
                    log.info(
                        "shutdown: checkpointed %d model(s) at %s",
                        len(self.models),
                        _positions_text(self._positions),
                    )
                    if not self._store_commits:
                        await self.source.commit(self._positions)
                        self.metrics.commits.labels("ok").inc()
                    log.info("shutdown: committed the offsets to Kafka")
                except MonitorError as exc:
                    log.error("final checkpoint/commit failed: %s", exc)
            elif was_running:
                log.error(
                    "not checkpointing at shutdown (%s): the next start replays from the last "
                    "good checkpoint",
                    self._unsafe_state,
                )
        await self.source.stop()
        log.info("shutdown: left the consumer group")
        await self.dead_letters.stop()
        if self.dead_letters.topic:
            log.info("shutdown: stopped the dead-letter producer")
        if self.alert_log is not None:
            await self.alert_log.stop(grace_seconds)
            log.info("shutdown: stopped delivering from the alerts topic")
        await self.alerts.stop(grace_seconds=grace_seconds)
        log.info("shutdown: alert outbox flushed (for at most %.0f s)", grace_seconds)
        await self.http.stop()
        log.info("shutdown: HTTP server stopped")
        if self.store is not None:
            self.store.close()
        self._state = "stopped"
        log.info("shutdown: state store closed; stopped")

    # ----------------------------------------------------------------- batches

    async def process(self, messages: MessageBatch | list[RawMessage]) -> list[Evaluation]:
        """Apply one polled batch, then commit its offsets (at-least-once).

        Order matters for exactness: rejected messages reach the dead-letter
        topic *before* the models change, so a batch is applied whole or (when
        the service stops while the dead-letter topic is unreachable) not at
        all; and the models and ``_positions`` advance together, with nothing
        that can fail between them.
        """
        async with self._lock:
            if self._unsafe_state is not None:
                raise ServiceStateError(f"state is unsafe ({self._unsafe_state}); restart")
            t0 = time.perf_counter()
            messages = self._drop_revoked(MessageBatch.of(messages))
            if not messages:
                return []
            ranges = messages.offset_ranges()
            batch = self._decode(messages)
            if batch.rejected and not await self._dead_letter(batch.rejected, ranges):
                return []  # stopping before the batch could be applied: it will be replayed
            await self._record_first_offsets(ranges)
            try:
                evaluations = self._apply(batch)
                submitted = await self._submit_alerts(evaluations)
            except Exception as exc:
                self._unsafe_state = f"batch failed half-applied: {type(exc).__name__}"
                self.metrics.loop_errors.labels("apply").inc()
                raise
            if not submitted:
                # Stopping while the outbox refused the batch's notifications: the models
                # hold events whose alerts are not durable, so this state is never saved;
                # the batch is not acknowledged and the next start replays it.
                self._unsafe_state = "alert outbox unwritable: the batch's alerts not submitted"
                return []
            for tp, (_, last) in ranges.items():
                # What was consumed, also after the client reset an out-of-range position.
                self._positions[tp] = last + 1
            self.metrics.batch_seconds.observe(time.perf_counter() - t0)
            self.metrics.batch_size.observe(len(messages))
            try:
                if not self._store_commits and self._commit_due():  # else only checkpoints
                    await self.source.commit(self._positions)
                    self._committed_at = self.clock.monotonic()
                    self.metrics.commits.labels("ok").inc()
            except SourceError as exc:
                # Not fatal: the next commit covers these offsets; a crash before it replays them.
                self.metrics.commits.labels("error").inc()
                log.warning("%s", exc)
            self._update_lag()
            await self._maybe_checkpoint(locked=True)
            return evaluations

    def _drop_revoked(self, messages: MessageBatch) -> MessageBatch:
        """The batch less the messages of partitions revoked since its poll began.

        The poll returns, and a rebalance can revoke partitions before the batch gets the
        lock (the revocation's checkpoint holds it). Applied anyway, those messages went
        into models this instance no longer owns: it made the model again in memory, moved
        its partition's position back, and its next checkpoint wrote that stale state and
        offset over the new owner's, which then counted events twice on the next move
        (tests/test_kafka_scale.py caught it). Their new owner reads them from its restored
        offset; a partition revoked and assigned back is paused until restored and sought.
        """
        stale = {(t, p) for t, p, _, _ in messages.runs} & self._revoked_since_poll
        if not stale:
            return messages
        kept = messages.without(stale)
        dropped = len(messages) - len(kept)
        self.metrics.rebalance_discarded.inc(dropped)
        log.info(
            "%d message(s) of revoked partition(s) %s discarded: their new owner reads them",
            dropped,
            ", ".join(f"{t}/{p}" for t, p in sorted(stale)),
        )
        return kept

    async def _dead_letter(
        self, rejected: list[Rejected], ranges: dict[TP, tuple[int, int]]
    ) -> bool:
        """Publish rejected messages; False only when stopping before they were handled.

        A dead-letter failure never blocks consumption (a message that fits the
        source topic may not fit the dead-letter topic, and a restart would not
        change that): what the topic refuses gets a marker copy or is counted as
        dropped (:class:`DeadLetterPublisher`). Only a retriable error (the broker
        briefly unavailable) is retried, ``DEAD_LETTER_ATTEMPTS`` times with
        exponential backoff; then those messages are counted as dropped too. While
        stopping, a batch not yet dead-lettered is not applied (it is replayed).
        """
        pending = rejected
        delay = DEAD_LETTER_RETRY_SECONDS
        for attempt in range(1, DEAD_LETTER_ATTEMPTS + 1):
            result = await self.dead_letters.publish(pending, final=attempt == DEAD_LETTER_ATTEMPTS)
            for r in result.written:
                self.metrics.dead_lettered.labels(r.reason).inc()
            for f in result.failed:
                self.metrics.dead_letter_failures.labels(f.reason, f.fallback).inc()
                m = f.rejected.message
                self._log_dead_letter.warning(
                    "dead-letter copy of %s/%d/%d not written (%s: %s); %s",
                    m.topic,
                    m.partition,
                    m.offset,
                    f.reason,
                    f.error,
                    "wrote a marker copy without key and value"
                    if f.fallback == "marker"
                    else "nothing written, counted in monitor_dead_letter_failures_total",
                )
            if not result.retry:
                return True
            pending = [r for r, _ in result.retry]
            self.metrics.loop_errors.labels("dead_letter").inc()
            self._log_dead_letter.warning(
                "dead-letter topic unavailable for %d message(s) (%s); attempt %d of %d, "
                "retrying in %.0f s",
                len(pending),
                result.retry[0][1],
                attempt,
                DEAD_LETTER_ATTEMPTS,
                delay,
            )
            self._update_lag(ranges)
            if self._stopping.is_set():
                return False
            await self._sleep(delay)
            if self._stopping.is_set():
                return False
            delay *= 2
        return True

    def _update_lag(self, ranges: dict[TP, tuple[int, int]] | None = None) -> None:
        """Set the lag gauge from the processed positions (or, for a partition not yet
        processed, the first offset of the batch in hand), so it shows the real lag
        also while a batch is held up."""
        positions = dict(self._positions)
        for tp, (lo, _) in (ranges or {}).items():
            positions.setdefault(tp, lo)
        for tp, lag in self.source.lag(positions).items():
            self.metrics.consumer_lag.labels(tp[0], str(tp[1])).set(lag)

    async def _record_first_offsets(self, ranges: dict[TP, tuple[int, int]]) -> None:
        """Store where consumption of a partition without a stored offset starts.

        Without this, a crash before the first checkpoint would restart from
        Kafka's committed offset (which runs ahead for lag monitoring) with an
        empty state: every event in between would be missed.
        """
        first = {tp: lo for tp, (lo, _) in ranges.items() if tp not in self._positions}
        if not first or self.store is None:
            return
        try:
            await asyncio.to_thread(self.store.save, {}, first)  # a transaction with Kafka
        except Exception as exc:
            raise MonitorError(f"cannot record starting offsets: {exc}") from exc
        self._positions.update(first)

    def _decode(self, messages: MessageBatch) -> DecodedBatch:
        """Decode a batch and count (and rate-limit log) what the contract rejects."""
        for topic, n in messages.topic_counts().items():
            self.metrics.messages_consumed.labels(topic).inc(n)
        # Models whose schema is settled get their features decoded straight into columns.
        schemas = {
            name: schema
            for name, mm in self.models.items()
            if (schema := mm.columnar_schema()) is not None
        }
        try:
            batch = self.decoder.decode(messages, schemas)
        except Exception as exc:
            # A decoder bug must not let one message take the service down (it would again
            # after every restart): find the message(s) it chokes on, reject only those.
            self.metrics.loop_errors.labels("decode_batch").inc()
            log.debug("decoder failed on a batch", exc_info=True)
            self._log_decoder.warning(
                "decoder failed on a batch of %d messages (%s); decoding it message by message",
                len(messages),
                printable(f"{type(exc).__name__}: {exc}", 300),
            )
            batch = self._decode_one_by_one(messages)
        if batch.native_error is not None:  # that batch took the Python path
            self.metrics.loop_errors.labels("native_decoder").inc()
            self._log_native.warning(
                "compiled decoder failed on a batch of %d messages (%s); Python decoded it",
                len(messages),
                batch.native_error,
            )
        if batch.native_events:
            self.metrics.events_decoded.labels("native").inc(batch.native_events)
        if batch.python_events:
            self.metrics.events_decoded.labels("python").inc(batch.python_events)
        for r in batch.rejected:
            self.metrics.events_invalid.labels(r.message.topic, r.reason).inc()
            self._log_invalid.warning(
                "invalid event at %s/%d/%d: %s (%s)",
                r.message.topic,
                r.message.partition,
                r.message.offset,
                r.error,
                r.reason,
            )
        return batch

    def _decode_one_by_one(self, messages: MessageBatch) -> DecodedBatch:
        out = DecodedBatch()
        for m in messages:
            try:
                one = self.decoder.decode_python([m])
            except Exception as exc:
                self.metrics.loop_errors.labels("decode").inc()
                log.debug("decoder failed on a message", exc_info=True)
                self._log_decode_one.warning(
                    "decoder failed on %s/%d/%d (%s); rejected as %s",
                    printable(m.topic),
                    m.partition,
                    m.offset,
                    printable(f"{type(exc).__name__}: {exc}", 300),
                    DECODER_ERROR,
                )
                out.rejected.append(
                    Rejected(m, DECODER_ERROR, None, f"decoder error: {type(exc).__name__}")
                )
                continue
            out.merge(one)
        out.python_events = sum(map(len, out.predictions.values()))
        return out

    def _warn_unchecked_constraints(self, model: str, names: list[str]) -> None:
        """A reference learned from events can lack a feature a constraint names (check-config
        checks file references only): that constraint is never checked, so say it, once per
        model. Names are quoted and bounded (a tracked model's name comes from the wire)."""
        self._unchecked_warned.add(model)
        shown = ", ".join(printable(repr(n), 100) for n in names[:10])
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        log.warning(
            "model %s: validation.constraints %s%s: not a feature of its reference; never "
            "checked (GET /api/model: reference.unchecked_constraints)",
            printable(repr(model), 200),
            shown,
            more,
        )

    def _check_estimate(self, model: str, performance: dict[str, float]) -> None:
        """Say once (until it recovers) that a model's CBPE estimate is refused: its window
        holds only 0/1 predictions, classes rather than probabilities, and estimated_* would
        claim a perfect model (monitor/performance/cbpe.py, ``only_classes``)."""
        if performance.get("estimate_refused") != 1.0:
            self._estimate_warned.discard(model)
            return
        if model in self._estimate_warned:
            return
        self._estimate_warned.add(model)
        log.warning(
            "model %s: no performance estimate (estimated_*): its predictions are classes (every "
            "one of the window exactly 0 or 1, or true/false and class strings), not "
            "probabilities, and CBPE on them would estimate a perfect model; send the positive "
            "class's probability, or set performance.estimate: false "
            "(monitor_performance_estimate_refused)",
            printable(repr(model), 200),
        )

    def _check_partition(self, model: str, parts: set[TP]) -> None:
        """Bind ``model`` to the partition its events come from, and flag events of it that
        come from another one (once per batch: the batch is already split by model).

        Producers key events by model so one model lives on one partition, hence on one
        instance and one changelog partition. A key that disagrees with the payload's
        ``model`` (or no key) spreads a model over several partitions: here the events are
        still applied to this instance's one state of the model, but with several
        instances each owner holds its own partial state of it, the windows are split and
        their checkpoints overwrite each other. The binding stays while the bound partition
        still delivers (stable checkpoint partition); a model whose events all come from a
        new partition moves there (partitions added to the topic re-hash the keys: one
        conflict, not one per batch). Counted per batch, WARNING once per model and then at
        most hourly, shown in the model's status.
        """
        if not parts:
            return
        prev = self._model_partition.get(model)
        bound = prev if prev is not None and prev in parts else min(parts)
        self._model_partition[model] = bound
        conflict = len(parts) > 1 or (prev is not None and prev != bound)
        if not conflict:
            return
        self._partition_conflict(model, bound, [tp for tp in parts if tp != bound])

    def _check_label_partitions(self, model: str, parts: set[TP]) -> None:
        """Flag labels of ``model`` that come from a labels partition whose number is not
        that of the model's predictions partition (once per batch).

        The group's assignor hands the same partition number of both topics to one member,
        so a label reaches the instance that holds its model only when both topics are
        keyed by model and have the same partition count. A label on another number goes,
        with several instances, to an instance that does not hold the model: it starts a
        state of the model there that never sees its predictions (every label ``unknown``),
        and with the Kafka backend that state's checkpoint overwrites the owner's. Judged
        against the model's bound predictions partition; labels of a model whose
        predictions this instance has not seen yet are not judged.
        """
        bound = self._model_partition.get(model)
        if bound is None or not parts:
            return
        others = [tp for tp in parts if tp[1] != bound[1]]
        if others:
            self._partition_conflict(model, bound, others)

    def _partition_conflict(self, model: str, bound: TP, other: list[TP]) -> None:
        """Count, show and (once per model, then hourly) log events of ``model`` from
        ``other`` partitions than the one it is bound to."""
        others = sorted(f"{t}/{p}" for t, p in other)
        seen = self._partition_conflicts.setdefault(model, {"batches": 0, "other_partitions": []})
        seen["batches"] += 1
        seen["bound_partition"] = f"{bound[0]}/{bound[1]}"
        seen["other_partitions"] = sorted(set(seen["other_partitions"]) | set(others))[:10]
        self.metrics.partition_conflicts.labels(model).inc()
        now = self.clock.monotonic()
        last = self._partition_warned_at.get(model)
        if last is not None and now - last < PARTITION_WARN_SECONDS:
            return
        self._partition_warned_at[model] = now
        log.warning(
            "model %s: events arrived from partition %s although the model is bound to %s "
            "(%d batches so far): its events are spread over several partitions; with several "
            "instances its state is split between them and their checkpoints overwrite each "
            "other. Producers must key every event by its model (message key = the payload's "
            '"model"), labels as predictions, and the labels topic needs the predictions '
            'topic\'s partition count; see docs/RUNBOOK.md, "A model on several partitions"',
            printable(repr(model), 200),
            printable(", ".join(others), 300),
            seen["bound_partition"],
            seen["batches"],
        )

    def _apply(self, batch: DecodedBatch) -> list[Evaluation]:
        """The synchronous part of a batch: update models, submit alerts."""
        evaluations: list[Evaluation] = []
        now = self.clock.time()
        for model, events in batch.predictions.items():
            if model in self.disabled:
                self.metrics.events_skipped.labels(model, self.disabled[model][0]).inc(len(events))
                continue
            self._dirty.add(model)
            t0 = time.perf_counter()
            try:
                mm = self._model(model)
                evs = mm.ingest(events, now)
            except (ReferenceError_, NewerStateError) as exc:
                # Found only now (a learned reference, a file changed since the start, a
                # newer release's stored state): this model stops, the batch and every
                # other model go on.
                self._disable(model, exc, at_start=False)
                self.metrics.events_skipped.labels(model, self.disabled[model][0]).inc(len(events))
                continue
            for outcome, n in mm.take_label_outcomes().items():
                self.metrics.labels.labels(model, outcome).inc(n)
            if mm.unchecked_constraints and model not in self._unchecked_warned:
                self._warn_unchecked_constraints(model, mm.unchecked_constraints)
            self._check_partition(model, events.partitions)
            if (frozen := mm.cadence.frozen_time()) is None:
                self._frozen_warned.discard(model)
            elif model not in self._frozen_warned:
                self._frozen_warned.add(model)
                log.warning(
                    "model %s: its last %d events all carry the timestamp %s: a time window "
                    "evaluates when event time crosses a step boundary, so this model does not "
                    "evaluate; check the producer's timestamp (or omit it: record times apply)",
                    printable(repr(model), 200),
                    mm.cadence.same_time_events,
                    utc_text(frozen),
                )
            self._check_behind(model, mm)
            if evs:
                self._check_estimate(model, evs[-1].performance)
            series = self._model_series.get(model)
            if series is None:
                series = self._model_series[model] = (
                    self.metrics.events_processed.labels(model),
                    self.metrics.event_lag.labels(model),
                )
            series[0].inc(len(events))
            series[1].set(max(0.0, now - max(events.timestamps)))
            if evs:
                self.metrics.evaluation_seconds.observe((time.perf_counter() - t0) / len(evs))
                evaluated = self._evaluation_series.get(model)
                if evaluated is None:
                    evaluated = self._evaluation_series[model] = self.metrics.evaluations.labels(
                        model
                    )
                evaluated.inc(len(evs))
            evaluations.extend(evs)
        for model, labels in batch.labels.items():
            if model in self.disabled:
                n_labels = len(labels.event_ids)
                self.metrics.events_skipped.labels(model, self.disabled[model][0]).inc(n_labels)
                continue
            try:
                mm = self._model(model)
            except NewerStateError as exc:
                self._disable(model, exc, at_start=False)
                n_labels = len(labels.event_ids)
                self.metrics.events_skipped.labels(model, "state_newer").inc(n_labels)
                continue
            self._dirty.add(model)
            self._check_label_partitions(model, labels.partitions)
            for outcome, n in mm.ingest_labels(labels, now).items():
                if n:
                    self.metrics.labels.labels(model, outcome).inc(n)
        self.evaluations_seen += len(evaluations)
        return evaluations

    async def _submit_alerts(self, evaluations: list[Evaluation]) -> bool:
        """Submit each evaluation's signals to the alert engine, retrying a failed outbox write.

        The outbox write (SQLite, on the alert service's database thread, so that a held lock
        on the file waits there, not on the loop: :meth:`AlertService.submit_async`) fails
        when another process holds the file's lock past the busy timeout (a backup, an
        operator's ``sqlite3``, a second monitor),
        when the disk is full, on an I/O error. That used to leave the batch half-applied,
        mark the state unsafe and end the service: a crash loop under a supervisor. Now the
        failed evaluation and those after it are tried again with backoff (1 s doubling to
        30 s), the loop serving HTTP and heartbeats in between; nothing of the batch is
        acknowledged meanwhile (its positions and offsets advance only after this returns
        True). The engine advances its state only once the write committed, so a retry
        decides the same notifications with the same idempotency keys. Counted
        (``monitor_loop_errors_total{stage="alert_outbox"}``), logged (ERROR when a streak
        starts, then a WARNING at most once a minute), shown on ``/healthz``. False when a
        stop came first: the batch is then to be replayed, not checkpointed.
        """
        delay = 1.0
        i = 0
        while i < len(evaluations):
            ev = evaluations[i]
            try:
                await self.alerts.submit_async(ev.context, ev.signals)
            except StateError as exc:
                self._outbox_failed(exc, delay)
                if self._stopping.is_set():
                    return False
                await self._sleep(delay)
                if self._stopping.is_set():
                    return False
                delay = min(delay * 2, OUTBOX_RETRY_MAX_SECONDS)
                continue
            self.history.record(ev)
            i += 1
        failing = self._outbox_failing
        if failing is not None:
            log.info(
                "alert outbox written again after %d failed attempt(s) over %.0f s",
                failing[1],
                self.clock.time() - failing[0],
            )
            self._outbox_failing = None
        return True

    def _outbox_failed(self, exc: StateError, delay: float) -> None:
        """Count and log a failed outbox write; shown on ``/healthz`` until one succeeds."""
        now = self.clock.time()
        self.metrics.loop_errors.labels("alert_outbox").inc()
        text = printable(str(exc), 500)
        failing = self._outbox_failing
        self._outbox_failing = (
            failing[0] if failing else now,
            (failing[1] if failing else 0) + 1,
            text,
        )
        what = (
            "%s; the batch is held (not acknowledged: nothing is lost) and the alert outbox "
            "write is tried again in %g s (see docs/RUNBOOK.md, AlertOutboxFailing)"
        )
        if failing is None or failing[2] != text:
            log.error(what, text, delay)
        else:
            self._log_outbox.warning(what, text, delay)

    # ----------------------------------------------------------------- state

    def checkpoint(self) -> None:
        """Save every model in memory, and its alert state, with all the offsets it covers.

        Always all models: offsets are per partition, and a partition carries
        many models, so saving some models with all offsets would let a stored
        offset cover events that a stored state lacks (missed after a crash).
        Models not in memory were not touched since they were saved; nor were
        models in memory that no event, label or alert decision changed since
        their last save (restored ones included: restoring the same blob under
        the same config gives the same model), so their stored state is already
        theirs as of these offsets, and their write is skipped.
        """
        snapshot = self._checkpoint_snapshot()
        if snapshot is not None:
            spool = self.alerts.spooled()
            unrestored = dict(self._unrestored)
            self._checkpoint_write(*snapshot, [encode_record(a) for a in spool], unrestored)
            self._checkpoint_done(*snapshot, unrestored)
            self.alerts.drop_spooled(len(spool))

    async def _checkpoint(self) -> None:
        """:meth:`checkpoint`, with the write (the slow part) off the event loop.

        The caller holds ``_lock``: the states and offsets are taken in the loop,
        and nothing changes them until the write is done, so the same rules hold.
        """
        if self.store is None:
            return
        if self._unsafe_state is not None:
            raise MonitorError(f"refusing to checkpoint: {self._unsafe_state}")
        if getattr(self.store, "rewrite_all_pending", False):
            # The changelog was deleted or lost its compaction: every state, changed or not.
            self._dirty.update(self.models)
        blobs: dict[str, SavedModel] = dict(self._retired)
        alert_texts: dict[str, str] = {}
        for n, mm in list(self.models.items()):
            self._snapshot_model(n, mm, blobs, alert_texts)
            # One model's encoding at a time: the loop gets a turn between models (100 models
            # of 20 features would otherwise stall it for about a third of a second).
            await asyncio.sleep(0)
        snapshot = (blobs, dict(self._positions), alert_texts)
        # The notifications these states decided, produced in the same transaction (Kafka
        # backend); dropped from the spool only once it committed.
        spool = self.alerts.spooled()
        records = [encode_record(a) for a in spool]
        unrestored = dict(self._unrestored)
        await asyncio.to_thread(self._checkpoint_write, *snapshot, records, unrestored)
        self._checkpoint_done(*snapshot, unrestored)
        self.alerts.drop_spooled(len(spool))

    def _checkpoint_snapshot(self) -> _Snapshot | None:
        """The blobs of the models changed since their last save, and all positions."""
        if self.store is None:
            return None
        if self._unsafe_state is not None:
            raise MonitorError(f"refusing to checkpoint: {self._unsafe_state}")
        if getattr(self.store, "rewrite_all_pending", False):
            # The changelog was deleted or lost its compaction: every state, changed or not.
            self._dirty.update(self.models)
        blobs: dict[str, SavedModel] = dict(self._retired)
        alert_texts: dict[str, str] = {}
        for n, mm in self.models.items():
            self._snapshot_model(n, mm, blobs, alert_texts)
        return blobs, dict(self._positions), alert_texts

    def _snapshot_model(
        self,
        n: str,
        mm: ModelMonitor,
        blobs: dict[str, SavedModel],
        alert_texts: dict[str, str],
    ) -> None:
        """Add model ``n``'s blob (and alert document) if it changed since its last save."""
        try:
            text = self._alert_text(n)
            if n not in self._dirty and self._saved_alerts.get(n) == text:
                return
            alert_texts[n] = text
            state = mm.export_state(text)
            state.history = self.history.export_model(n)
            # Compressed in ``_checkpoint_write``, off the event loop.
            blobs[n] = (state_format.encode(state, compress=False), self._model_partition.get(n))
        except Exception as exc:
            self.metrics.checkpoints.labels("error").inc()
            raise MonitorError(f"checkpoint failed: {exc}") from exc

    def _checkpoint_write(
        self,
        blobs: dict[str, SavedModel],
        positions: dict[TP, int],
        alert_texts: dict[str, str],
        alerts: list[tuple[bytes, bytes]] | None = None,
        unrestored: dict[str, tuple[str, bytes]] | None = None,
    ) -> None:
        """Write one checkpoint; ``unrestored``: stored states not restored, kept aside in
        the same transaction (only ever collected for a store that ``keeps_unrestored``)."""
        assert self.store is not None
        try:
            blobs = {n: (state_format.compress_blob(b), tp) for n, (b, tp) in blobs.items()}
            if alerts:
                if not isinstance(self.store, KafkaStateStore):
                    raise StateError("spooled notifications need the kafka state backend")
                self.store.save(blobs, positions, alerts)
            elif unrestored and isinstance(self.store, SQLiteStateStore):
                self.store.save(blobs, positions, unrestored=unrestored)
            else:
                self.store.save(blobs, positions)
            self.metrics.checkpoints.labels("ok").inc()
        except Exception as exc:
            self.metrics.checkpoints.labels("error").inc()
            raise MonitorError(f"checkpoint failed: {exc}") from exc

    def _checkpoint_done(
        self,
        blobs: dict[str, SavedModel],
        positions: dict[TP, int],
        alert_texts: dict[str, str],
        unrestored: dict[str, tuple[str, bytes]] | None = None,
    ) -> None:
        for model, kept in (unrestored or {}).items():
            if self._unrestored.get(model) is kept:  # not replaced by a later failure
                del self._unrestored[model]
        self._dirty.difference_update(blobs)
        for model, saved in blobs.items():
            if self._retired.get(model) is saved:  # not replaced meanwhile
                del self._retired[model]
        self._saved_alerts.update(alert_texts)
        self._last_checkpoint = self.clock.time()
        log.debug(
            "checkpoint: %d model(s) written (%d bytes), %d unchanged",
            len(blobs),
            sum(len(b) for b, _ in blobs.values()),
            len(self.models) - len(blobs),
        )

    async def _maybe_checkpoint(self, locked: bool = False) -> None:
        """Checkpoint when the interval has passed (or notifications are spooled).

        A failed periodic checkpoint is not the end of the service: it is counted
        (``monitor_checkpoints_total{outcome="error"}``, which ``CheckpointFailing`` watches),
        logged (ERROR when a streak starts or its error changes, then a WARNING at most once
        a minute) and tried again one interval later, and consumption goes on: a crash
        meanwhile replays from the last good checkpoint, as designed. Ending the service
        instead turned a state file locked for a few seconds by another process (a backup,
        an operator's ``sqlite3``), a full disk or a broker away into a crash loop.
        """
        now = self.clock.time()
        interval = self.config.state.checkpoint_interval_seconds
        # Spooled notifications (Kafka backend) wait for a checkpoint: take one at once.
        if now - self._last_checkpoint < interval and not self.alerts.has_spooled():
            return
        failing = self._checkpoint_failing
        if failing is not None and now - self._last_checkpoint < interval:
            return  # spooled, but the last attempt failed: retried at the interval
        try:
            if locked:
                await self._checkpoint()
            else:
                async with self._lock:
                    await self._checkpoint()
        except MonitorError as exc:
            if self._unsafe_state is not None:
                raise  # memory matches no offset: never to be checkpointed (see process())
            self._checkpoint_failed(exc, now)
            return
        if failing is not None:
            log.info(
                "checkpoint written again after %d failed attempt(s) over %.0f s",
                failing[1],
                now - failing[0],
            )
            self._checkpoint_failing = None

    def _checkpoint_failed(self, exc: MonitorError, now: float) -> None:
        """Count a failed periodic checkpoint; the next attempt is one interval later."""
        self._last_checkpoint = now  # counted where it failed (monitor_checkpoints_total)
        text = printable(str(exc), 500)  # shown on /healthz too
        failing = self._checkpoint_failing
        self._checkpoint_failing = (
            failing[0] if failing else now,
            (failing[1] if failing else 0) + 1,
            text,
        )
        what = (
            "%s; consumption goes on, the checkpoint is tried again in %g s (a restart "
            "meanwhile replays from the last good checkpoint; see docs/RUNBOOK.md, "
            "CheckpointFailing)"
        )
        interval = self.config.state.checkpoint_interval_seconds
        if failing is None or failing[2] != text:
            log.error(what, text, interval)
        else:
            self._log_checkpoint.warning(what, text, interval)

    async def _on_revoked(self, revoked: set[TP]) -> None:
        self.metrics.rebalances.labels("revoked").inc()
        self._rebalance_seq += 1
        self._revoked_since_poll |= revoked
        self._to_restore -= revoked
        async with self._lock:
            leaving = [m for m, tp in self._model_partition.items() if tp in revoked]
            try:
                await self._checkpoint()
                if not self._store_commits:
                    await self.source.commit(
                        {tp: o for tp, o in self._positions.items() if tp in revoked}
                    )
            except MonitorError as exc:
                log.error("checkpoint/commit on revoke failed: %s", exc)
            for m in leaving:
                # Its gauges are the new owner's to show (the collector's go with the model).
                with contextlib.suppress(KeyError):
                    self.metrics.event_lag.remove(m)
                self._model_series.pop(m, None)  # its lag series is gone: made anew if it returns
                self.models.pop(m, None)
                self.history.forget(m)
                self._model_partition.pop(m, None)
                self._partition_conflicts.pop(m, None)
                self._dirty.discard(m)
                self._saved_alerts.pop(m, None)
            self.alerts.release(leaving)
            for tp in revoked:
                self._positions.pop(tp, None)
            for m in [m for m, tp in self._kept_unlisted.items() if tp in revoked]:
                del self._kept_unlisted[m]
                self._retired.pop(m, None)  # its new owner resolves (and rewrites) it again
            if self.store is not None:
                self.store.release(revoked)

    async def _on_assigned(self, assigned: set[TP]) -> None:
        """Pause the assigned partitions; the consume loop restores them (``_restore_assigned``).

        The restore is not done here: aiokafka sends no heartbeat while a rebalance
        listener runs, so a restore longer than ``session_timeout_ms`` (a killed
        instance's open transaction on the changelog holds one up to 25 s; a hundred
        models take seconds to fit) got the member expelled from the group, which
        rebalanced and ran the restore again: a loop that consumed nothing, with
        ``/healthz`` and ``/readyz`` green. Paused, nothing of these partitions is
        fetched until their states and offsets are read and sought to.
        """
        self.metrics.rebalances.labels("assigned").inc()
        self.metrics.assigned_partitions.set(len(assigned))
        self._rebalance_seq += 1
        if self.store is None:
            return
        if self._stopping.is_set():
            # A join that completes while the service stops (SIGTERM right after start,
            # a restore that failed): nothing of these partitions will be consumed, so
            # none is restored or sought, and none may be fetched from the group's
            # committed offset meanwhile. The consumer may be closing already (aiokafka
            # runs this callback from its own task): then there is nothing to pause.
            with contextlib.suppress(ServiceStateError):
                self.source.pause(assigned)
            log.info("stopping: partitions assigned during the stop left alone")
            return
        # Nothing of these partitions is fetched until their states and offsets are read
        # and sought to (a batch applied meanwhile would be applied again after the seek).
        self.source.pause(assigned)
        self._to_restore |= assigned

    async def _restore_assigned(self) -> None:
        """Restore the partitions the last assignment paused: read their states and
        offsets, seek to the offsets if the broker still holds them, load the models,
        resume. The state we restore covers exactly the events before the stored offset.
        A stored offset outside the partition's log (see :func:`offset_reset`) means the
        broker lost or deleted data: said in one WARNING with the numbers, counted in
        ``monitor_offset_resets_total{reason}``, and consumption starts at the log start.
        """
        self._restoring_since = self.clock.time()
        try:
            await self._restore_partitions(set(self._to_restore), self._rebalance_seq)
        finally:
            self._restoring_since = None
            # The restore is the loop's progress: /healthz counts from its end.
            self.last_poll_at = self.clock.time()

    async def _restore_partitions(self, assigned: set[TP], seq: int) -> None:
        assert self.store is not None
        try:  # a remote backend reads the partitions' states and offsets now
            await asyncio.to_thread(self.store.prepare, assigned)
        except MonitorError as exc:
            # Consuming with fresh models would overwrite the stored states: stop instead.
            self._unsafe_state = f"state of the assigned partitions not restored: {exc}"
            log.error("%s; stopping (restart to retry)", self._unsafe_state)
            self._stopping.set()
            return
        async with self._lock:  # no revocation's checkpoint in between
            if seq != self._rebalance_seq or self._stopping.is_set():
                # A rebalance overtook this read: what it assigns is restored next; what
                # it revoked must not stay marked as read by this instance.
                self.store.release(assigned - self._to_restore)
                return
            # Unlisted models admitted by the previous owner stay admitted (as at start).
            self._admitted |= {
                m for m in self.store.models(assigned) if self.config.model(m) is None
            }
            stored = self.store.load_offsets()
            mine = {tp: stored[tp] for tp in assigned if tp in stored}
            if mine:
                await self._check_stored_offsets(mine)
            await self._load_assigned(assigned)
            self._to_restore -= assigned
            self.source.resume(assigned)

    async def _check_stored_offsets(self, mine: dict[TP, int]) -> None:
        """Seek to the stored offsets; move any the broker no longer holds to its log start."""
        # Seek before anything awaits (so no record from another position is fetched), and
        # fetch nothing of these partitions until their offsets are checked.
        for tp, offset in mine.items():
            self.source.seek(tp, offset)
            self._positions[tp] = offset
        self.source.pause(set(mine))
        try:
            try:
                bounds = await self.source.offset_bounds(set(mine))
            except SourceError as exc:
                log.warning("%s; resuming at the stored offsets unchecked", exc)
                bounds = {}
            assigned_now = self.source.assignment()
            for tp, (start, end) in sorted(bounds.items()):
                target, reason = offset_reset(mine[tp], start, end)
                if reason is None or tp not in assigned_now:
                    continue
                self._offset_reset(tp, mine[tp], start, end, reason)
                self.source.seek(tp, target)
                self._positions[tp] = target
        finally:
            self.source.resume(set(mine))

    def _offset_reset(self, tp: TP, stored: int, start: int, end: int, reason: str) -> None:
        self.metrics.offset_resets.labels(reason).inc()
        if reason == "beyond_end":
            why = (
                "the partition was recreated or the broker lost its data (e.g. a broker "
                "without a persistent volume); consuming the new log from its start"
            )
        else:
            self.metrics.offset_reset_skipped.inc(start - stored)
            why = (
                f"retention deleted {start - stored} messages before they were consumed; "
                "they are lost to the monitor, consuming from the log start"
            )
        log.warning(
            "stored offset %d of %s/%d is outside the partition's log [%d, %d] (%s): %s, offset %d",
            stored,
            tp[0],
            tp[1],
            start,
            end,
            reason,
            why,
            start,
        )

    async def _load_assigned(self, assigned: set[TP]) -> None:
        """Restore every stored model of the assigned partitions now, not at its next event,
        so that /api/status and /metrics show it right after a (re)start or rebalance.

        A restore fits the model's detectors again (about 0.1 s for 20 features at the
        defaults), so the loop gets a turn between models (heartbeats, HTTP)."""
        if self.store is None:
            return
        for tp in sorted(assigned):
            for model in self.store.models([tp]):
                if model in self.models:
                    continue
                if self.config.model(model) is None and (
                    self.config.unknown_models == "reject" or model not in self._admitted
                ):
                    retired = await self._retire_alerts(model)
                    if self._unlisted(model):
                        self._kept_unlisted[model] = tp
                        if retired is not None:  # kept: without the incidents just closed
                            self._retired[model] = (retired, tp)
                        self.store.park(model)  # not held in memory until it is needed
                    continue
                if model in self.disabled:
                    continue
                self._model_partition[model] = tp
                try:
                    self._model(model)
                except (ReferenceError_, NewerStateError) as exc:
                    self._disable(model, exc, at_start=False)
                await asyncio.sleep(0)

    async def _retire_alerts(self, model: str) -> bytes | None:
        """Resolve at their receivers the incidents a stored model the config no longer
        lists left open (:meth:`AlertService.retire_async`), before its state is kept aside
        or deleted (:meth:`_unlisted`); the state to keep in its place (uncompressed, for
        the next checkpoint), or None when nothing was resolved.

        Only an evaluation of a model resolves its incidents, and an unlisted model's
        events are refused: an incident open when the model left the config stayed open at
        PagerDuty, Slack and the webhooks for good, with nobody's data to close it. The
        state kept says the incidents are closed, so that the model, listed again, opens a
        new one if it still drifts (restored as it was, it would take its drift for the
        incident just resolved, and page nobody). Until that state is written, each
        assignment decides the same resolves again, which the outbox drops as repeats. A
        state this release cannot read is left alone (said where it is kept or refused).
        """
        assert self.store is not None
        blob = self.store.peek_model(model)  # not taken: it is kept, or deleted, after
        try:
            state = state_format.decode(blob) if blob is not None else None
        except (NewerStateError, StateFormatError):
            return None
        if state is None or state.alerts is None:
            return None
        reason = (
            f"the model {printable(model, 200)} is no longer in the config: its incident is "
            "closed by the monitor, not by its data"
        )
        try:
            sent, after = await self.alerts.retire_async(model, json.loads(state.alerts), reason)
        except (ValueError, StateError) as exc:  # JSONDecodeError is a ValueError
            log.warning(
                "model %s is no longer in the config; its saved alert state is unreadable, so "
                "an incident it left open is not resolved: %s",
                printable(model, 200),
                exc,
            )
            return None
        if not sent:
            return None
        log.info(
            "model %s is no longer in the config: %d incident(s) it left open resolved at "
            "their receivers",
            printable(model, 200),
            len(sent),
        )
        text = json.dumps(after, default=_json_default, sort_keys=True)
        return state_format.encode(msgspec.structs.replace(state, alerts=text), compress=False)

    def _unlisted(self, model: str) -> bool:
        """A stored model the config no longer lists (``unknown_models: reject``): its state
        is kept, not restored (``state.unlisted_models: keep``, the default), or deleted;
        whether it is kept.

        Deleting it was the only behaviour, and it lost data an operator needs: a rollback
        to the previous release *and its config* (which does not list a model the newer
        one added) deleted that model's state, readable or written by the newer release,
        and a model dropped from the config by mistake lost its state at the next
        assignment. Kept, it costs its stored bytes, and a model listed again resumes from
        it (without the events of the time it was unlisted: those were rejected). Even
        ``delete`` never removes a state a newer release wrote: the store refuses
        (:class:`NewerStateError`), as this release cannot read it.
        """
        assert self.store is not None
        why = f"the model is not in the config (unknown_models: {self.config.unknown_models})"
        if self.config.state.unlisted_models == "keep":
            log.info(
                "stored state of model %s kept, not restored: %s; it is restored if the model "
                "is listed again (state.unlisted_models: delete removes it)",
                model,
                why,
            )
            return True
        try:
            self.store.delete_model(model)
        except NewerStateError as exc:
            log.warning(
                "stored state of model %s kept although state.unlisted_models is delete: %s; "
                "this release cannot read it, and a newer release rolled forward needs it",
                model,
                exc,
            )
            return True
        log.info("stored state of model %s deleted (state.unlisted_models: delete): %s", model, why)
        return False

    # ----------------------------------------------------------------- health

    async def _watchdog(self) -> None:
        """Probe the broker; say in one WARNING when it has not answered for
        ``kafka.stall_seconds`` (``/healthz`` is 503 from then on) and in one INFO when it
        answers again. aiokafka's own lines meanwhile are one per kind per minute
        (:class:`~monitor.kafka_source.RepeatedLogThrottle`): without this line an operator
        found only those, and nothing of the monitor's, in the log of an outage."""
        interval = max(1.0, min(5.0, self.config.kafka.stall_seconds / 3))
        down_since: float | None = None  # the broker's last answer, once said to be down
        while not self._stopping.is_set():
            now = self.clock.time()
            if await self.source.probe(interval):
                self.broker_ok_at = self.clock.time()
                if down_since is not None:
                    log.info(
                        "Kafka answers again after %.0f s without an answer; consuming "
                        "resumes where it stopped",
                        self.broker_ok_at - down_since,
                    )
                    down_since = None
            elif down_since is None and now - self.broker_ok_at >= self.config.kafka.stall_seconds:
                down_since = self.broker_ok_at
                log.warning(
                    "Kafka (%s) has not answered for %.0f s: /healthz is 503 until it does; "
                    "the monitor reconnects by itself and loses no event (aiokafka's "
                    "connection errors meanwhile are logged once a minute per kind)",
                    printable(self.config.kafka.bootstrap_servers, 200),
                    now - down_since,
                )
            await self._sleep(interval)

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = self.clock.time()
        stall = self.config.kafka.stall_seconds
        # A restore in progress is the consume loop at work (its reads are bounded by the
        # store's own timeouts), not a stall: a liveness probe must not restart it.
        # The same for a batch held while its alerts wait for the outbox (retried with
        # backoff; a restart would meet the same lock): said below, not failed on.
        held = self._restoring_since is not None or self._outbox_failing is not None
        poll_age = 0.0 if held else now - self.last_poll_at
        broker_age = now - self.broker_ok_at
        ok = self._state == "running" and poll_age < stall and broker_age < stall
        detail: dict[str, Any] = {
            "state": self._state,
            "seconds_since_poll": round(poll_age, 3),
            "seconds_since_broker_ok": round(broker_age, 3),
            "stall_seconds": stall,
        }
        if self._restoring_since is not None:
            detail["restoring_seconds"] = round(now - self._restoring_since, 3)
        # Said, not failed on: consumption goes on and a restart would not help (it would
        # replay more); CheckpointFailing pages for it.
        if self._checkpoint_failing is not None:
            since, attempts, error = self._checkpoint_failing
            detail["checkpoint_failing"] = {
                "seconds": round(now - since, 3),
                "attempts": attempts,
                "error": error,
            }
        if self._outbox_failing is not None:
            since, attempts, error = self._outbox_failing
            detail["alert_outbox_failing"] = {
                "seconds": round(now - since, 3),
                "attempts": attempts,
                "error": error,
            }
        # A batch that cannot be decoded blocks its partition although polls succeed.
        if self._undecodable is not None and now - self._undecodable[2] < stall:
            ok = False
            detail["undecodable_batch"] = {
                "codec": self._undecodable[0],
                "error": self._undecodable[1],
            }
        return ok, detail

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: running, partitions assigned, and no configured model disabled (see
        :func:`monitor.status.readiness`)."""
        assigned = sorted(f"{t}/{p}" for t, p in self.source.assignment())
        ok, detail = status.readiness(
            self._state, assigned, self.config, self.disabled, self.references
        )
        if self._to_restore:  # assigned, but their models are not restored yet
            detail["restoring"] = sorted(f"{t}/{p}" for t, p in self._to_restore)
            ok = False
        return ok, detail

    def status(self) -> dict[str, Any]:
        """Every configured model (from the start) and every model in memory, with its state
        (see :func:`monitor.status.models_status`), and the positions consumed."""
        return {
            "models": status.models_status(
                self.config,
                self.models,
                self.disabled,
                self.references,
                self._partition_conflicts,
            ),
            "positions": {f"{t}/{p}": o for (t, p), o in sorted(self._positions.items())},
            # Stored states of models the config does not list, kept and not restored
            # (``state.unlisted_models``), of this instance's partitions.
            "stored_unlisted": sorted(self._kept_unlisted),
            # Stored states that could not be restored, kept aside by the state store
            # (docs/RUNBOOK.md, "A stored state was not restored"); None: not kept.
            "unrestored_kept": getattr(self.store, "unrestored_kept", None),
        }


def _why(exc: OSError) -> str:
    """``no such file or directory``: the reason of an OS error, without its traceback."""
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{text.lower()} ({exc.filename})" if exc.filename else text.lower()


def offset_reset(stored: int, log_start: int, log_end: int) -> tuple[int, str | None]:
    """Where to resume a partition whose stored offset is ``stored``, and why if not there.

    * beyond the log end: the log was recreated or truncated (a broker that lost its
      data); the stored offset names records that no longer exist, and new ones would
      be skipped up to it: start at the beginning of the new log (``beyond_end``);
    * before the log start: retention deleted records never consumed; they are gone,
      resume at the log start (``before_start``; the gap is counted).

    >>> offset_reset(50, 0, 100), offset_reset(150, 0, 20), offset_reset(10, 40, 90)
    ((50, None), (0, 'beyond_end'), (40, 'before_start'))
    """
    if stored > log_end:
        return log_start, "beyond_end"
    if stored < log_start:
        return log_start, "before_start"
    return stored, None


def _positions_text(positions: dict[TP, int]) -> str:
    """``topic/partition=offset, ...`` for a log line (at most 10 partitions named).

    >>> _positions_text({("p", 1): 7, ("p", 0): 5})
    'p/0=5, p/1=7'
    """
    items = [f"{t}/{p}={o}" for (t, p), o in sorted(positions.items())]
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return (", ".join(items[:10]) + more) or "no partitions"


def _json_default(obj: object) -> object:
    if isinstance(obj, frozenset | set):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _open_state_store(
    config: MonitorConfig, registry: CollectorRegistry, stop: threading.Event | None = None
) -> StateStore:
    """The backend ``state.backend`` names: SQLite (one instance) or a Kafka changelog
    (whose start gives up waiting for the predictions topic once ``stop`` is set)."""
    if config.state.backend == "kafka":
        return KafkaStateStore(config.kafka, config.state, registry, stop=stop)
    return SQLiteStateStore(config.state.path)


def _empty_alert_state(model: str) -> dict[str, Any]:
    """An alert state document holding ``model`` with nothing firing (as if never evaluated)."""
    return {"version": ALERT_STATE_VERSION, "models": {model: ModelAlertState(model).to_json()}}
