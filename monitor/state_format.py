"""The checkpoint format: what one model's saved state holds, and how it is encoded.

A checkpoint holds only what was *observed*: window contents, the internals of
the stream detectors, the drift tracker's persistence runs, counters, the
label-join store and labelled windows, the alert state, the reference learned
from events (``reference.learn_first``) or the previous window
(``reference.mode: previous_window``), and the fingerprint of the configured
reference the state was computed against. It never holds settings or a
configured reference: those come from the configuration at restore, detectors
are fitted again from the reference, and the window is evaluated against it at
its next evaluation point (see ``ModelMonitor.restore`` and docs/GUARANTEES.md).

Encoding of one model's blob::

    b"KMMSTATE"            8 bytes, the magic
    version                uint16, little-endian (FORMAT_VERSION)
    flags                  uint8: bit 0 = strings escaped (below),
                                  bit 1 = body compressed (version 2 on)
    digest                 16 bytes, BLAKE2b of the stored body: a damaged blob is refused
                           whole, before anything is decompressed
    body                   MessagePack (msgspec) of :class:`ModelState`; when flag bit 1 is
                           set: uint64 little-endian raw size, then that MessagePack
                           compressed with zlib (RFC 1950)

Version 2 compresses (zlib level 1): the window's float64 columns of rounded values
hold patterned low mantissa bits and shrink to about half, losslessly (figures in
BENCHMARKS.md, ``bench/checkpoint.py``). The declared raw size bounds decompression: a
body that inflates beyond it (or beyond :data:`MAX_RAW_BYTES`) is refused, not expanded.
Version 1 (never compressed) is still read.

Strings from the wire may hold lone surrogates (JSON allows ``"\ud800"``), which
MessagePack's UTF-8 strings cannot carry; they must still restore exactly (a
category must match the same value after a restart). When a state holds one,
every string (and map key) that contains a surrogate *or starts with*
:data:`ESCAPE` is stored as ``ESCAPE`` followed by the hex of its UTF-8 bytes
with surrogates passed through, and flag bit 0 is set; decoding reverses it.
States without such strings (nearly all) are encoded directly.

Numpy arrays inside the body are :class:`Array` values: ``dtype`` (one of
:data:`DTYPES`, all little-endian or byte-sized), ``shape``, and ``data``, the
raw C-order bytes. Decoding is msgspec's typed decoder: structure, types and
array sizes are checked, nothing is ever executed (no pickle anywhere), and
anything unexpected raises :class:`StateFormatError` with a bounded ``reason``
(:data:`REASONS`) for the caller to log and count: that model then starts fresh.

Compatibility rules: a new *optional* field (with a default) keeps
``FORMAT_VERSION``; removing or changing the meaning of a field bumps it, and a
release reads the versions it lists in :data:`READABLE_VERSIONS`.
A version *above* :data:`FORMAT_VERSION` is a newer release's (a rollback): decoding
raises :class:`NewerStateError`, and the service keeps that state rather than start the
model fresh over it (``state.on_newer_state``).
``tests/fixtures/`` holds a checkpoint of every version written by a release
(``model-state-v<N>.bin``), which the next ones must keep restoring.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from typing import Any

import msgspec
import numpy as np

from monitor.errors import StateError

MAGIC = b"KMMSTATE"
FORMAT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
_HEADER = struct.Struct("<8sHB16s")
_RAW_SIZE = struct.Struct("<Q")
ESCAPE = "\x00kmm-escaped\x00"
_ESCAPED = 0x01
_COMPRESSED = 0x02
# Flags each version may carry: anything else is a blob this release does not understand.
_KNOWN_FLAGS = {1: _ESCAPED, 2: _ESCAPED | _COMPRESSED}
# zlib level 1: about 10 ms per MB, off the event loop; higher levels gain a few percent.
COMPRESSION_LEVEL = 1
# The largest state a compressed body may declare (a window of 100 columns x 1M rows is
# 0.8 GB): a forged size cannot make decompression allocate without bound.
MAX_RAW_BYTES = 1 << 30

# Bounded reasons why a stored model state was not restored (metric label values).
REASONS = ("legacy_pickle", "unknown_version", "newer_version", "corrupt", "incompatible")

DTYPES = frozenset({"<f8", "<i8", "<i4", "|b1"})


class StateFormatError(StateError):
    """A stored model state cannot be decoded; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NewerStateError(StateFormatError):
    """A stored state written by a newer release (a format version above this one's).

    Not damage: a rollback. Starting the model fresh would overwrite that newer state at
    the next checkpoint, and the newer release, rolled forward again, would find only the
    older one's fresh start; so the service keeps it untouched unless the operator opts in
    (``state.on_newer_state``, see ``MonitorService._model``). ``found`` and ``supported``
    are the versions, for the error that names them.
    """

    def __init__(self, what: str, found: int, supported: int) -> None:
        super().__init__(
            "newer_version",
            f"{what} version {found} was written by a newer release (this release writes "
            f"version {supported} and reads up to it)",
        )
        self.what = what
        self.found = found
        self.supported = supported


class Array(msgspec.Struct, array_like=True):
    """A numpy array: dtype string, shape, raw little-endian C-order bytes."""

    dtype: str
    shape: list[int]
    data: bytes


def pack_array(values: np.ndarray) -> Array:
    arr = np.ascontiguousarray(values)
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    arr = arr.astype(dt, copy=False)
    if dt.str not in DTYPES:
        raise StateError(f"cannot store an array of dtype {dt.str}")
    return Array(dt.str, list(arr.shape), arr.tobytes())


def unpack_array(a: Array) -> np.ndarray:
    if a.dtype not in DTYPES:
        raise StateFormatError("corrupt", f"array dtype {a.dtype!r} is not allowed")
    if any(d < 0 for d in a.shape):
        raise StateFormatError("corrupt", f"array shape {a.shape} is negative")
    dt = np.dtype(a.dtype)
    n = math.prod(a.shape)  # Python ints: a forged shape cannot overflow
    if n * dt.itemsize != len(a.data):
        raise StateFormatError(
            "corrupt", f"array of shape {a.shape} needs {n * dt.itemsize} bytes, has {len(a.data)}"
        )
    return np.frombuffer(a.data, dtype=dt).reshape(a.shape).copy()


class StreamDetectorState(msgspec.Struct, kw_only=True):
    """A stream detector's internals (``monitor.detectors.streaming``).

    ``params`` are the detector's settings *when saved*: compared with the
    configured ones at restore, never used as settings. ``engine`` names the
    river build the ``engine_state`` bytes came from (river's own encoding of its
    compiled ADWIN, read back only by the same river version).
    """

    name: str
    params: dict[str, float | int | str]
    reference_fingerprint: str | None
    engine: str
    engine_state: bytes = b""
    engine_values: dict[str, float] = {}
    changes: int = 0
    last_change: int = -1
    shift: float = 0.0
    seen: int = 0
    since_cut_sum: float = 0.0
    since_cut_n: int = 0
    pending: Array | None = None
    drift_detected: bool = False
    # The values since the last latched change (sum, count), while its direction is
    # judged (``StreamDetector.direction``).
    post_sum: float = 0.0
    post_n: int = 0


class WindowState(msgspec.Struct, kw_only=True):
    """A sliding window's ring buffers (filled part only), as laid out in memory."""

    capacity: int
    head: int
    size: int
    total: int
    numeric: Array  # (numeric columns, size), column-major as the window keeps it
    categorical: Array  # (size, categorical columns)
    timestamps: Array  # (size,)


class FeatureRun(msgspec.Struct, array_like=True):
    feature: str
    drifting: bool
    drifted_run: int
    clean_run: int


class FeatureProfileState(msgspec.Struct, kw_only=True):
    name: str
    kind: str
    count: int
    missing_rate: float
    sample: Array | None = None
    mean: float = float("nan")
    std: float = float("nan")
    min: float = float("nan")
    max: float = float("nan")
    quantiles: list[tuple[float, float]] = []
    categories: list[str] = []
    counts: Array | None = None


class SegmentProfileState(msgspec.Struct, kw_only=True):
    """The reference of one segment value (``value`` None: the pooled rest)."""

    value: list[str | None] | None
    profile: ProfileState


class SegmentReferenceState(msgspec.Struct, kw_only=True):
    """A learned reference's slice (``monitor.reference.SegmentReference``)."""

    columns: list[str]
    values: list[list[str | None]]
    profiles: list[SegmentProfileState] = []


class ProfileState(msgspec.Struct, kw_only=True):
    """A reference built from observed events (learned, or the previous window)."""

    model: str
    features: list[FeatureProfileState]
    rows: int
    fingerprint: str
    model_version: str | None = None
    created_at: float = 0.0
    source: str = ""
    # The numeric features' joint rows (multivariate drift); absent in older states.
    joint: Array | None = None
    joint_columns: list[str] = []
    # Per declared slice, its values' references (monitor/segments.py); absent before.
    segments: list[SegmentReferenceState] = []


class JoinEntry(msgspec.Struct, array_like=True):
    event_id: str
    arrival: float
    timestamp: float
    payload: Any


class JoinerState(msgspec.Struct, kw_only=True):
    pending: list[JoinEntry]
    early: list[JoinEntry]
    labelled: list[str]
    evicted: list[str]
    counts: dict[str, int]


class RingState(msgspec.Struct, kw_only=True):
    capacity: int
    head: int
    size: int
    cols: dict[str, Array]  # filled rows only


class PerformanceState(msgspec.Struct, kw_only=True):
    task: str
    classes: list[str] | None
    window: RingState
    scores: RingState | None
    detector: StreamDetectorState | None
    error_drift: bool
    error_shift: float
    rejected_predictions: dict[str, int]
    rejected_labels: dict[str, int]
    joiner: JoinerState
    # The error-drift incident (``PerformanceTracker``): baseline (mean, variance, count)
    # of the first full labelled window, a rise awaiting confirmation, the model worse
    # than its baseline, and the errors since the last change (sum, sum of squares, count).
    baseline: tuple[float, float, int] | None = None
    rise_pending: bool = False
    degraded: bool = False
    recent: tuple[float, float, int] = (0.0, 0.0, 0)
    # Label staleness (``PerformanceTracker.label_age``): event times of the first and newest
    # predictions and of the newest joined label; None in states written before them.
    first_prediction_time: float | None = None
    newest_prediction_time: float | None = None
    newest_label_time: float | None = None


class HeldRunState(msgspec.Struct, array_like=True):
    """A time window's run of events held off its event clock (``monitor.cadence.HeldRun``):
    a jump not yet confirmed; saved so that a replay after a restart confirms it at the
    same event as the first pass."""

    ahead: bool
    events: int
    lo: float
    hi: float


class SettingsSeen(msgspec.Struct, kw_only=True):
    """The settings the state was computed with: only to log what changed at restore."""

    window: str
    drift: str
    performance: str
    # ``sample.rate`` (monitor/sampling.py); None in states written before it was recorded.
    sample_rate: float | None = None
    # ``segments``, ``multivariate`` and ``validation`` as JSON; None in states written
    # before they were recorded.
    segments: str | None = None
    multivariate: str | None = None
    validation: str | None = None


class ModelState(msgspec.Struct, kw_only=True):
    """Everything one model observed. See the module docstring for what is left out."""

    model: str
    settings_seen: SettingsSeen
    # Fingerprint of the configured reference (file) the state was computed against;
    # None when the reference was learned from events (then ``learned`` holds it).
    reference_fingerprint: str | None
    reference_version: str | None = None
    reference_switches: int = 0
    # Versions switched to before, and the run of one's events toward a switch back
    # (monitor.reference_state.version_switch_at); empty in states written before.
    reference_versions_used: list[str] = []
    version_run: str | None = None
    version_run_length: int = 0
    learned: ProfileState | None = None
    comparison: ProfileState | None = None  # previous_window mode: the window compared with
    model_version: str | None = None
    events_total: int = 0
    evaluations: int = 0
    invalid_values: list[tuple[str, str, int]] = []
    # Data-validation violations (feature, rule, count): ``monitor_constraint_violations_total``
    # continues across a restart or a move (absent in states written before).
    constraint_violations: list[tuple[str, str, int]] = []
    unknown_feature_events: int = 0
    category_overflow: dict[str, int] = {}
    since_eval: int = 0
    since_reference_refresh: int = 0
    next_eval_time: float | None = None
    # The model's event clock: the newest event time seen (events without a timestamp
    # take it and never move it).
    event_clock: float | None = None
    # Time windows (``monitor.cadence.Cadence.event_times``): the run of events held off the
    # event clock, and the events held so far by side ("ahead", "behind"); absent in states
    # written before (no run held, none counted). A release before them ignores both.
    held_jump: HeldRunState | None = None
    event_time_outliers: dict[str, int] = {}
    learn_rows: list[tuple[Any, Any]] = []
    numeric_columns: list[str] = []
    categorical_columns: list[str] = []
    categories: dict[str, list[str]] = {}
    window: WindowState | None = None
    stream_pending: Array | None = None
    stream_detectors: dict[str, list[StreamDetectorState]] = {}
    drift_runs: list[FeatureRun] = []
    label_reference: Array | None = None
    performance: PerformanceState | None = None
    alerts: str | None = None  # the alert engine's JSON document for this model
    # The last evaluation's results (what /metrics and /api/status show until the next
    # one): ``model_monitor.Evaluation`` as msgspec builtins, its arrays as :class:`Array`;
    # read back with ``msgspec.convert`` into that dataclass (typed, validated).
    last: Any = None
    # The web UI's drift-score history of this model: column -> rows of
    # ``monitor.ui.history.HistoryPoint.to_list`` (bounded by ``http.ui_history``).
    history: dict[str, list[Any]] = {}
    # Segments (monitor/segments.py); absent in older states, which then start them anew:
    # the persistence runs per segment and column, and the model_version codes beside the
    # window's rows (laid out as ``window``) with their vocabulary.
    segment_runs: list[FeatureRun] = []
    segment_versions: list[str] = []
    version_codes: Array | None = None


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ModelState)


def encode(state: ModelState, *, compress: bool = True) -> bytes:
    """The blob of one model's state: header, then (compressed) MessagePack.

    ``compress=False`` gives the same blob uncompressed (also a valid blob), for a
    caller that takes the state in the event loop and compresses it off the loop
    with :func:`compress` (``MonitorService._checkpoint``).
    """
    flags = 0
    try:
        body = _ENCODER.encode(state)
    except UnicodeEncodeError:  # a lone surrogate somewhere: see the module docstring
        body = _ENCODER.encode(_escape(msgspec.to_builtins(state, builtin_types=(bytes,))))
        flags = _ESCAPED
    blob = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, _digest(body)) + body
    return compress_blob(blob) if compress else blob


def compress_blob(blob: bytes) -> bytes:
    """``blob`` (of :func:`encode`) with its body compressed; as is if it already is.

    Only blobs of this release's :data:`FORMAT_VERSION` are compressed: an older
    version's flags have no compression bit.
    """
    _, version, flags, _ = _HEADER.unpack_from(blob)
    if flags & _COMPRESSED or version != FORMAT_VERSION:
        return blob
    raw = memoryview(blob)[_HEADER.size :]
    body = _RAW_SIZE.pack(len(raw)) + zlib.compress(raw, COMPRESSION_LEVEL)
    return _HEADER.pack(MAGIC, version, flags | _COMPRESSED, _digest(body)) + body


def _inflate(body: bytes) -> bytes:
    """The MessagePack of a compressed body, of exactly its declared size."""
    if len(body) < _RAW_SIZE.size:
        raise StateFormatError("corrupt", "compressed state without its raw size")
    (raw_size,) = _RAW_SIZE.unpack_from(body)
    if raw_size > MAX_RAW_BYTES:
        raise StateFormatError(
            "corrupt", f"compressed state declares {raw_size} bytes (limit {MAX_RAW_BYTES})"
        )
    try:
        d = zlib.decompressobj()
        out = d.decompress(body[_RAW_SIZE.size :], raw_size + 1)
    except zlib.error as exc:
        raise StateFormatError("corrupt", f"compressed state unreadable: {exc}") from exc
    if len(out) != raw_size or not d.eof or d.unused_data:
        raise StateFormatError(
            "corrupt", f"compressed state is not of its declared {raw_size} bytes"
        )
    return out


def _escape(obj: Any) -> Any:
    if isinstance(obj, str):
        if obj.startswith(ESCAPE) or (not obj.isascii() and _has_surrogate(obj)):
            return ESCAPE + obj.encode("utf-8", "surrogatepass").hex()
        return obj
    if isinstance(obj, list | tuple):
        return [_escape(v) for v in obj]
    if isinstance(obj, dict):
        return {_escape(k): _escape(v) for k, v in obj.items()}
    return obj


def _unescape(obj: Any) -> Any:
    if isinstance(obj, str):
        if obj.startswith(ESCAPE):
            try:
                return bytes.fromhex(obj[len(ESCAPE) :]).decode("utf-8", "surrogatepass")
            except ValueError as exc:
                raise StateFormatError("corrupt", f"bad escaped string: {exc}") from exc
        return obj
    if isinstance(obj, list):
        return [_unescape(v) for v in obj]
    if isinstance(obj, dict):
        return {_unescape(k): _unescape(v) for k, v in obj.items()}
    return obj


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


def refuse_newer(blob: bytes) -> None:
    """Raise :class:`NewerStateError` if ``blob`` carries a format version above this one's.

    Reads the header only (the body is not checked, nor decompressed): for a caller about
    to *remove* a stored state (``state.unlisted_models: delete``), which must never remove
    one a newer release wrote and this one cannot read; anything else (readable, damaged,
    not a checkpoint at all) passes, as there is nothing a later release could get from it
    that this one would lose.
    """
    data = bytes(blob[:10])
    if len(data) == 10 and data[:8] == MAGIC:
        (version,) = struct.unpack_from("<H", data, 8)
        if version > FORMAT_VERSION:
            raise NewerStateError("state format", version, FORMAT_VERSION)


def decode(blob: bytes) -> ModelState:
    """Decode a blob from :func:`encode`; :class:`StateFormatError` for anything else.

    A pickle (a previous release's checkpoint) is recognised by its opcode
    prefix and refused without being read.
    """
    data = bytes(blob)
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise StateFormatError("legacy_pickle", "a pickle of a previous release; not read")
    if len(data) < 10 or data[:8] != MAGIC:
        raise StateFormatError("corrupt", "no state header (not a checkpoint of this service)")
    (version,) = struct.unpack_from("<H", data, 8)
    if version > FORMAT_VERSION:
        raise NewerStateError("state format", version, FORMAT_VERSION)
    if version not in READABLE_VERSIONS:
        raise StateFormatError(
            "unknown_version",
            f"state format version {version} (this release reads "
            f"{', '.join(map(str, sorted(READABLE_VERSIONS)))})",
        )
    if len(data) < _HEADER.size:
        raise StateFormatError("corrupt", "truncated state header")
    _, _, flags, digest = _HEADER.unpack_from(data)
    if flags & ~_KNOWN_FLAGS[version]:  # no writer of this version sets them
        raise StateFormatError(
            "corrupt", f"state format version {version} has no flags {flags:#04x}"
        )
    body = data[_HEADER.size :]
    if _digest(body) != digest:
        raise StateFormatError("corrupt", "checksum mismatch (damaged or truncated state)")
    if flags & _COMPRESSED:
        body = _inflate(body)
    try:
        if not flags & _ESCAPED:
            return _DECODER.decode(body)
        return msgspec.convert(_unescape(msgspec.msgpack.decode(body)), ModelState)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateFormatError("corrupt", f"undecodable state: {exc}") from exc


__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "REASONS",
    "Array",
    "FeatureProfileState",
    "FeatureRun",
    "HeldRunState",
    "JoinEntry",
    "JoinerState",
    "ModelState",
    "NewerStateError",
    "PerformanceState",
    "ProfileState",
    "RingState",
    "SegmentProfileState",
    "SegmentReferenceState",
    "SettingsSeen",
    "StateFormatError",
    "StreamDetectorState",
    "WindowState",
    "compress_blob",
    "decode",
    "encode",
    "pack_array",
    "refuse_newer",
    "unpack_array",
]
