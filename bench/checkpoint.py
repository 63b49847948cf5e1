"""What a checkpoint costs: the event loop's longest stall, and the bytes per model.

Run: ``.venv/bin/python -m bench.checkpoint [--models 100] [--kafka HOST:PORT] [--no-write]``.

Fills ``--models`` models of 20 features each (18 numeric, 2 categorical; the
workload of :mod:`bench.throughput`) with a full default window (5000 events) through
``MonitorService.process`` (Kafka stubbed out, references given), then takes one
checkpoint of all of them as the service does (``_checkpoint`` under the lock) while
a ticker task measures how long the event loop goes without a turn. Figures:

* the longest event-loop stall during the checkpoint (the target: under 100 ms), and
  the checkpoint's wall time (SQLite; and the Kafka backend's transaction with
  ``--kafka``, which needs a broker with transactions);
* the state per model as the checkpoint stored it (read back from the SQLite store:
  ``monitor.state_format``, compressed since format version 2; the Kafka backend stores
  about the same bytes: its own zlib pass gains nothing on them), its size before
  compression and what dominates that, and the ratio to the previous release's pickled
  state (4.3 MB for a 21-column model at the default window, the figure of the issue;
  pickles are no longer written or read).

Prints the figures and writes the ``checkpoint`` section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import command_line, write_section
from bench import throughput as t
from monitor import state_format

OLD_PICKLE_BYTES = 4.3e6  # the previous release's pickled state, 21 columns, window 5000
WINDOW = 5000


async def _stall_during(action: Any) -> tuple[float, float]:
    """(longest gap between loop turns, wall time) while ``action()`` is awaited."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    await action()
    wall = time.perf_counter() - t0
    done.set()
    await task
    return max(gaps), wall


def _breakdown(blob_state: state_format.ModelState) -> dict[str, int]:
    w = blob_state.window
    out = {"window numeric (float64)": 0, "window categorical": 0, "window timestamps": 0}
    if w is not None:
        out["window numeric (float64)"] = len(w.numeric.data)
        out["window categorical"] = len(w.categorical.data)
        out["window timestamps"] = len(w.timestamps.data)
    return out


async def run(models: int, kafka: str | None) -> dict[str, Any]:
    from monitor.store import SQLiteStateStore

    w = t.Workload(models, 18, 2)
    refs = t.references(w)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        svc = await t.offline_service(w, tmp, refs, None, None)
        svc.store = SQLiteStateStore(tmp / "state.sqlite")
        msgs = t.raw_messages(t.generate(w, models * WINDOW, seed=1))
        for batch in t.batches(msgs, len(msgs)):
            await svc.process(batch)
        assert all(mm.window.size == WINDOW for mm in svc.models.values())

        async def checkpoint() -> None:
            async with svc._lock:
                svc._dirty.update(svc.models)
                await svc._checkpoint()

        stall, wall = await _stall_during(checkpoint)
        stored = {}
        raw = {}
        parts: dict[str, list[int]] = {}
        for name in svc.models:
            blob = svc.store.load_model(name)
            assert blob is not None
            stored[name] = len(blob)
            state = state_format.decode(blob)
            raw[name] = len(state_format.encode(state, compress=False))
            for k, v in _breakdown(state).items():
                parts.setdefault(k, []).append(v)
        out: dict[str, Any] = {
            "models": models,
            "features": 20,
            "window": WINDOW,
            "stall_ms": stall * 1000,
            "wall_s": wall,
            "bytes_per_model": statistics.median(stored.values()),
            "raw_bytes_per_model": statistics.median(raw.values()),
            "parts": {k: statistics.median(v) for k, v in parts.items()},
            # The times depend on what else runs: a shared machine's load is said with them.
            "load_average": os.getloadavg()[0],
            "cpus": os.cpu_count(),
        }
        if kafka:
            from monitor.config import KafkaConfig, StateConfig
            from monitor.kafka_store import KafkaStateStore

            topic = f"bench-checkpoint-{time.monotonic_ns()}"
            from devtools.local_kafka import create_topics

            create_topics(kafka, [topic], 1)
            kc = KafkaConfig(bootstrap_servers=kafka, group_id=topic, predictions_topic=topic)
            store = await asyncio.to_thread(
                KafkaStateStore, kc, StateConfig(backend="kafka", instance_id="bench")
            )
            svc.store.close()
            svc.store = store
            # The stubbed source's partition stands for the real topic's (offsets are
            # committed to the group, which needs a partition that exists).
            svc._model_partition = dict.fromkeys(svc.models, (topic, 0))
            svc._positions = {(topic, 0): sum(svc._positions.values())}
            try:
                stall_k, wall_k = await _stall_during(checkpoint)
            finally:
                await asyncio.to_thread(store.close)
            out["kafka_stall_ms"] = stall_k * 1000
            out["kafka_wall_s"] = wall_k
        else:
            svc.store.close()
        await svc.alerts.stop(grace_seconds=0)
    return out


def report(r: dict[str, Any]) -> str:
    per = r["bytes_per_model"]
    raw = r["raw_bytes_per_model"]
    lines = [
        "### Checkpoint cost (state format, issue: state in Kafka)",
        "",
        f"Command: `{command_line()}`  ",
        f"{r['models']} models x {r['features']} features (18 numeric, 2 categorical), "
        f"full window of {r['window']} events each, all models changed. "
        f"Machine: {r['cpus']} CPUs, load average {r['load_average']:.1f} at the end of the run.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| longest event-loop stall during a checkpoint (SQLite) | {r['stall_ms']:.1f} ms |",
        f"| checkpoint wall time (SQLite) | {r['wall_s']:.2f} s |",
    ]
    if "kafka_stall_ms" in r:
        lines += [
            f"| longest event-loop stall (Kafka backend) | {r['kafka_stall_ms']:.1f} ms |",
            f"| checkpoint wall time (Kafka transaction) | {r['kafka_wall_s']:.2f} s |",
        ]
    lines += [
        f"| stored state per model, SQLite and Kafka (median) | {per / 1e6:.3f} MB |",
        f"| previous release's pickle (issue figure) | {OLD_PICKLE_BYTES / 1e6:.1f} MB |",
        f"| ratio | {OLD_PICKLE_BYTES / per:.1f}x smaller |",
        f"| the same state before compression (median) | {raw / 1e6:.3f} MB |",
        "",
        "What dominates the state before compression (median bytes per model):",
        "",
    ]
    for k, v in r["parts"].items():
        lines.append(f"- {k}: {v / 1e6:.3f} MB ({100 * v / raw:.0f}%)")
    lines += [
        "",
        "The window's float64 columns dominate. float32 would halve them but is not exact "
        "for these values (rounded to 4 decimals: float32 does not round-trip them), and the "
        "windows must restore bit for bit. They compress well losslessly (the rounding leaves "
        "the low mantissa bits patterned: zlib level 1 takes a column to about 55%), so the "
        "state format compresses each state with zlib level 1 (format version 2, flag bit 1 "
        "in its header; both backends store the compressed blob, the Kafka backend's own zlib "
        "pass gains nothing more), off the event loop: the "
        "compression runs in the checkpoint's write thread and adds to its wall time, not to "
        "the loop's stall.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--kafka", default=None, help="a broker: also time the Kafka backend")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    r = asyncio.run(run(args.models, args.kafka))
    text = report(r)
    print(text)
    if not args.no_write:
        write_section("checkpoint", text)
    return r


if __name__ == "__main__":
    main()
