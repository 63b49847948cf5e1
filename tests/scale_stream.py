"""An interleaved many-model stream through a whole service, and a digest of what it gives.

Used by ``tests/test_scale_overhead.py``; also run as a script against another tree to
record the digest that test compares with (the code before issue 19's per-model work,
9dec902)::

    OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 PYTHONPATH=/tmp/scale-old \
        python tests/scale_stream.py > tests/fixtures/scale_interleaved.json

The digest tells floats apart by their bits, and the PCA's products go through OpenBLAS,
whose kernel is picked for the CPU it runs on: the same code gave other last bits with the
Haswell kernel than with the one detected on the machine that first recorded it. So the
digest is recorded, and compared, with the kernel pinned (:data:`PINNED_BLAS`); Haswell's
(AVX2) runs on every x86-64 machine of the last decade.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

MODELS = [f"m{i}" for i in range(6)]
NUMERIC = [f"x{j}" for j in range(5)]
T0 = 1_790_000_000.0

#: The environment the digest is recorded and compared in (see the module docstring).
PINNED_BLAS = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"}


def _events(n: int, seed: int) -> list[tuple[int, bytes]]:
    """(partition, encoded event): models round-robin over three partitions, a drift in
    ``x0`` of the later half, and rare oddities: values out of the reference's range, a
    missing value or category, an unseen category, a whole-number column that is not, and events
    without a timestamp (their record time stands in)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = i % len(MODELS)
        feats: dict[str, Any] = {
            f: round(float(rng.normal(10 * (j + 1), 2)), 4) for j, f in enumerate(NUMERIC)
        }
        feats["k"] = int(rng.integers(0, 5))
        feats["c"] = ("a", "b", "c")[int(rng.integers(0, 3))]
        if i > n // 2 and m % 2 == 0:
            feats["x0"] += 4.0
        r = rng.random()
        if r < 0.002:
            feats["x1"] = 1e6
        elif r < 0.004:
            feats["x2"] = None
        elif r < 0.006:
            feats["c"] = "zzz"
        elif r < 0.008:
            feats["k"] = 2.5
        elif r < 0.010:
            feats["c"] = None
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "model": MODELS[m],
            "features": feats,
            "prediction": round(float(rng.random()), 6),
        }
        if rng.random() > 0.003:
            event["timestamp"] = T0 + i * 0.01
        if i in (4001, 6007):  # ten days ahead: refused, and its model decoded by Python
            event["timestamp"] = T0 + 864_000
        out.append((m % 3, orjson.dumps(event)))
    return out


def _canon(obj: Any) -> Any:
    """A JSON form of ``obj`` that tells floats apart by their bits."""
    if isinstance(obj, float):
        return "nan" if math.isnan(obj) else obj.hex()
    if isinstance(obj, np.ndarray):
        return [str(obj.dtype), list(obj.shape), hashlib.sha256(obj.tobytes()).hexdigest()]
    if isinstance(obj, np.generic):
        return _canon(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [
            type(obj).__name__,
            *(_canon(getattr(obj, f.name)) for f in dataclasses.fields(obj)),
        ]
    if isinstance(obj, dict):
        return [[_canon(k), _canon(v)] for k, v in obj.items()]
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return [_canon(x) for x in items]
    return obj


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(_canon(obj)).encode()).hexdigest()[:16]


class _NoKafka:
    """The Kafka source's place: commits go nowhere, no lag."""

    async def commit(self, offsets: dict[Any, int]) -> None:
        return None

    def lag(self, positions: dict[Any, int]) -> dict[Any, int]:
        return {}


def service_config(tmp: Path) -> Any:
    """The service's settings: six models, window 300 evaluated every 100 events."""
    from monitor.config import parse_config

    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": "127.0.0.1:9",
                "group_id": "scale-test",
                "labels_topic": None,
                "dead_letter_topic": None,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp / "state.sqlite")},
            # PSI's noise floor (later than the recording) off: at a window of 300 it raises
            # the thresholds, and this stream pins the per-model work, not the grading.
            "models": [
                {
                    "name": m,
                    "window": {"size": 300, "step": 100},
                    "drift": {"psi": {"noise_alpha": None}},
                }
                for m in MODELS
            ],
            "alerting": {"outbox_path": str(tmp / "outbox.sqlite")},
        }
    )


async def _run() -> dict[str, Any]:
    from monitor.clock import ManualClock
    from monitor.events import MessageBatch
    from monitor.reference import build_profile
    from monitor.service import MonitorService

    rng = np.random.default_rng(1)
    rows = [
        (
            {
                **{f: round(float(rng.normal(10 * (j + 1), 2)), 4) for j, f in enumerate(NUMERIC)},
                "k": int(rng.integers(0, 5)),
                "c": ("a", "b", "c")[int(rng.integers(0, 3))],
            },
            round(float(rng.random()), 6),
        )
        for _ in range(1000)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = service_config(Path(tmp))
        svc = MonitorService(config, clock=ManualClock(T0 + 3600))
        svc.references.update({m: build_profile(m, rows) for m in MODELS})
        svc.source = _NoKafka()  # type: ignore[assignment]
        await svc.alerts.start()
        stream = _events(9000, 7)
        evaluations: dict[str, list[str]] = {m: [] for m in MODELS}
        offsets = [0, 0, 0]
        for start in range(0, len(stream), 700):
            batch = MessageBatch([], [], [], [], [])
            part = stream[start : start + 700]
            for p in (0, 1, 2):
                values = [v for q, v in part if q == p]
                stamps = [T0 + start * 0.01 + k for k in range(len(values))]
                batch.add_run(
                    "predictions",
                    p,
                    values,
                    stamps,
                    range(offsets[p], offsets[p] + len(values)),
                    [None] * len(values),
                )
                offsets[p] += len(values)
            for ev in await svc.process(batch):
                evaluations[ev.context.model].append(_hash(ev))
        out: dict[str, Any] = {}
        for m, mm in sorted(svc.models.items()):  # every model of the stream
            w = mm.window
            out[m] = {
                "events_total": mm.events_total,
                "evaluations": evaluations[m],
                "window": _hash([w.numeric(), w.categorical(), w.timestamps()]),
                "violations": sorted(
                    [f"{f}:{r}", n] for (f, r), n in mm.validator.violations.items()
                ),
            }
        samples: dict[str, list[Any]] = {m: [] for m in MODELS}
        for family in svc.registry.collect():
            for s in family.samples:
                if s.labels.get("model") in MODELS:
                    labels = sorted(s.labels.items())
                    samples[s.labels["model"]].append([s.name, labels, _canon(float(s.value))])
        for m in MODELS:
            out[m]["metric_samples"] = len(samples[m])
            out[m]["metrics"] = _hash(sorted(samples[m]))
        out["refused"] = _hash(
            sorted(
                [s.name, sorted(s.labels.items()), float(s.value)]
                for family in svc.registry.collect()
                for s in family.samples
                if s.name == "monitor_events_invalid_total"
            )
        )
        await svc.alerts.stop(grace_seconds=0)
        return out


def digest() -> dict[str, Any]:
    """What the service gives for the stream, per model (evaluations, window, violations)
    and per model's metric samples."""
    return asyncio.run(_run())


if __name__ == "__main__":
    json.dump(digest(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
