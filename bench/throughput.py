"""Throughput and memory of the monitor (issue 7): can it keep up with the busiest model?

Run (full, writes bench/results/throughput.json and the throughput section of BENCHMARKS.md)::

    .venv/bin/python -m bench.throughput

``--quick`` runs every part on far fewer events (seconds, not minutes); ``--skip-kafka``
leaves out the broker parts; ``--no-write`` prints only.

Workload: one model with 20 numeric and 2 categorical features plus its numeric
prediction (23 monitored columns; events ~450 bytes of JSON, RFC 3339 timestamps),
window 5,000 evaluated every 1,000 events, a 10,000-row reference (10,000 values per
feature), the default detectors (numeric: PSI, KS, ADWIN; categorical: PSI,
chi-square), alerting on with one webhook receiver served by a local aiohttp
server. Scale variant: 50 models of 20 features (18 numeric + 2 categorical)
each, events interleaved. Feature ``f00`` drifts by 0.5 sd in the second half of
the generated stream, so alerts fire and resolve and notifications are delivered.

Parts (all side by side in one run, because the machine is shared and noisy):

1. In-process pipeline: pre-encoded messages fed in batches of 5,000 (the
   consumer's ``max_batch_records``) to :meth:`MonitorService.process` (with the
   compiled decoder of ``native/`` when it is installed, and once more with the
   Python decoder alone, side by side), with the
   Kafka source replaced by a stub whose commit does nothing. Included: per-topic
   counters, decode + validation, per-model columnisation, windows, stream
   detectors, evaluations (summaries, window detectors, drift tracker, signals),
   Prometheus metric updates, alert submit into the SQLite outbox, offsets
   bookkeeping; the webhook dispatcher runs on the same event loop (we yield to
   it between batches as the real ``getmany()`` does). Not included: Kafka I/O,
   checkpoints (no state store). Rate = events / wall seconds; CPU seconds of
   the process are shown next to it (one core: the pipeline is single-threaded).
2. End to end: N messages preloaded into a real local broker
   (:class:`devtools.local_kafka.LocalKafka`); time from ``MonitorService.start()``
   to every event processed, with the real consumer, commits and checkpoints. In a
   fresh interpreter (:func:`kafka_in_subprocess`), alternated with the bare consumer
   of part 3 after an untimed warm-up pass (:func:`kafka_parts`).
3. The limit: a bare aiokafka consumer (same fetch settings) that only fetches
   and ``orjson.loads`` the same messages; and a bare in-process decode loop, run
   right before and right after part 1 (the ratio divides by their mean), and
   alternated with the service in rounds over the same messages
   (:func:`paired_in_process`, by wall and by CPU time).
4. Peer: Evidently's ``DataDriftPreset`` on the same reference and window,
   run in a separate virtualenv (``--evidently-python``) if it exists.
5. Memory: peak RSS and RSS after 1M and 5M in-process events (single model).
6. Scale: the 50-model service alone, and alternated in rounds with the 1-model
   service, both warm (:func:`paired_scale`): the ratio of the two rates.

Also: the time to evaluate every detector of one full 23-column window
(``ModelMonitor.evaluate``), and its split by detector.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "throughput.json"
BENCHMARKS = ROOT / "BENCHMARKS.md"
START, END = "<!-- throughput:start -->", "<!-- throughput:end -->"
BATCH = 5_000
CATEGORIES = (("north", "south", "east", "west"), ("web", "mobile", "branch", "partner"))
T0 = 1_790_000_000.0  # event time of the first generated event
COLUMN_SCALE_SEED = 2026


# ----------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """Shape of the stream: how many models, and each model's features."""

    models: int = 1
    numeric: int = 20
    categorical: int = 2

    @property
    def names(self) -> list[str]:
        return [f"m{i:02d}" for i in range(self.models)]


SINGLE = Workload(1, 20, 2)
SCALE = Workload(50, 18, 2)


def generate(w: Workload, n: int, seed: int, drift_from: int | None = None) -> list[bytes]:
    """``n`` encoded prediction events, models interleaved round-robin.

    Columns are drawn with numpy; only building and encoding each event is per event.
    """
    rng = np.random.default_rng(seed)
    # Each column's scale is part of the stream's distribution, not of the draw: the same
    # for every seed, so that a reference drawn with another seed matches the stream.
    scale = np.random.default_rng(COLUMN_SCALE_SEED).uniform(0.5, 2.0, w.numeric)
    num = np.round(rng.normal(50.0, 10.0, (n, w.numeric)) * scale, 4)
    if drift_from is not None and drift_from < n:
        num[drift_from:, 0] += 5.0 * np.abs(num[:, 0].std() / 10.0)
    cats = [
        np.asarray(CATEGORIES[j % 2], dtype=object)[rng.choice(4, n, p=(0.4, 0.3, 0.2, 0.1))]
        for j in range(w.categorical)
    ]
    score = np.round(1.0 / (1.0 + np.exp(-(num[:, 0] - 50.0) / 10.0)), 6).tolist()
    ids = rng.integers(0, 2**63, n)
    fnames = [f"f{j:02d}" for j in range(w.numeric)]
    cnames = [f"c{j}" for j in range(w.categorical)]
    models = w.names
    out: list[bytes] = []
    rows = num.tolist()
    crow = list(zip(*[c.tolist() for c in cats], strict=True)) if cats else [()] * n
    for i in range(n):
        feats = dict(zip(fnames, rows[i], strict=True))
        feats.update(zip(cnames, crow[i], strict=True))
        ts = datetime.fromtimestamp(T0 + i / 1000.0, UTC).isoformat(timespec="milliseconds")
        out.append(
            orjson.dumps(
                {
                    "event_id": f"{int(ids[i]):032x}",
                    "model": models[i % len(models)],
                    "model_version": "2026-11-01",
                    "timestamp": ts.replace("+00:00", "Z"),
                    "features": feats,
                    "prediction": score[i],
                }
            )
        )
    return out


def reference_rows(w: Workload, rows: int, seed: int) -> list[tuple[dict[str, Any], Any]]:
    """Reference rows drawn from the undrifted stream distribution."""
    msgs = generate(Workload(1, w.numeric, w.categorical), rows, seed)
    return [(e["features"], e["prediction"]) for e in map(orjson.loads, msgs)]


def raw_messages(values: list[bytes], topic: str = "predictions") -> Any:
    """The pool of pre-encoded messages, in columns as a poll hands them over
    (:class:`monitor.events.MessageBatch`); batches are slices of it."""
    from monitor.events import MessageBatch

    n = len(values)
    stamps = [T0 + i / 1000.0 for i in range(n)]
    return MessageBatch(list(values), stamps, list(range(n)), [None] * n, [(topic, 0, 0, n)])


def batches(messages: Any, total: int, size: int = BATCH, start: int = 0) -> Iterator[Any]:
    """``total`` messages in batches of ``size``, cycling over ``messages`` from ``start``."""
    done, n = 0, len(messages)
    pos = start % n
    while done < total:
        take = min(size, total - done, n - pos)
        yield messages[pos : pos + take]
        done += take
        pos = (pos + take) % n


# ----------------------------------------------------------------------------- service


def bench_config(
    w: Workload,
    tmp: Path,
    webhook_url: str | None,
    bootstrap: str = "",
    drift: dict[str, Any] | None = None,
) -> Any:
    from monitor.config import parse_config

    raw: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap or "127.0.0.1:9",
            "group_id": f"bench-{os.getpid()}-{time.monotonic_ns()}",
            "labels_topic": None,
            "dead_letter_topic": None,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp / "state.sqlite"), "checkpoint_interval_seconds": 30},
        "models": [
            {
                "name": m,
                "window": {"size": 5000, "step": 1000},
                "reference": {"learn_first": 10_000, "max_sample": 10_000},
                **({"drift": drift} if drift else {}),
            }
            for m in w.names
        ],
        "alerting": {"outbox_path": str(tmp / "outbox.sqlite")},
    }
    if webhook_url:
        raw["alerting"]["receivers"] = {"bench": {"type": "webhook", "url": webhook_url}}
    return parse_config(raw)


def references(w: Workload, seed: int = 99) -> dict[str, Any]:
    from monitor.reference import build_profile

    rows = reference_rows(w, 10_000, seed)
    return {m: build_profile(m, rows, max_sample=10_000) for m in w.names}


class _NoKafka:
    """Stands in for the Kafka source in the in-process part: commits go nowhere."""

    async def commit(self, offsets: dict[Any, int]) -> None:
        return None

    def lag(self, positions: dict[Any, int]) -> dict[Any, int]:
        return {}


class WebhookReceiver:
    """A local aiohttp server answering 200 to every alert, counting them."""

    def __init__(self) -> None:
        self.received = 0
        self.url = ""

    async def __aenter__(self) -> WebhookReceiver:
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            await request.read()
            self.received += 1
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def offline_service(
    w: Workload, tmp: Path, refs: dict[str, Any], url: str | None, drift: dict[str, Any] | None
) -> Any:
    """A MonitorService wired as in production, minus Kafka and the state store."""
    from monitor.service import MonitorService

    svc = MonitorService(bench_config(w, tmp, url, drift=drift))
    svc.references.update(refs)
    svc.source = _NoKafka()  # type: ignore[assignment]
    await svc.alerts.start()
    return svc


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def run_in_process(
    w: Workload,
    messages: list[Any],
    total: int,
    refs: dict[str, Any],
    checkpoints: tuple[int, ...] = (),
    drift: dict[str, Any] | None = None,
    profiler: Any = None,
    native: bool = True,
) -> dict[str, Any]:
    """Feed ``total`` events through ``MonitorService.process``; rate and RSS at checkpoints.

    ``native=False`` turns the compiled decoder off (the Python decoder does all the work).
    """
    with tempfile.TemporaryDirectory() as tmpdir:
        async with WebhookReceiver() as rx:
            svc = await offline_service(w, Path(tmpdir), refs, rx.url, drift)
            svc.decoder.native = native and svc.decoder.native
            # Warm-up: the first window fills (no evaluations yet), first-use costs paid.
            warm = 6_000 * w.models
            for b in batches(messages, warm):
                await svc.process(b)
            gc.collect()
            rss: dict[int, int] = {}
            pending = sorted(checkpoints)
            done = 0
            if profiler is not None:
                profiler.enable()
            cpu0, t0 = time.process_time(), time.perf_counter()
            for b in batches(messages, total, start=warm):
                await svc.process(b)
                await asyncio.sleep(0)  # the dispatcher gets the loop, as during getmany()
                done += len(b)
                while pending and done >= pending[0]:
                    rss[pending.pop(0)] = rss_bytes()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            if profiler is not None:
                profiler.disable()
            await asyncio.sleep(0.2)  # let queued deliveries go out (not timed)
            models = svc.models
            evaluations = sum(m.evaluations for m in models.values())
            await svc.alerts.stop(grace_seconds=2.0)
            result = {
                "native_decoder": svc.decoder.native,
                "events": total,
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "events_per_second": total / wall,
                "events_per_cpu_second": total / cpu,
                "evaluations": evaluations,
                "webhook_requests": rx.received,
                "rss_at": {str(k): v for k, v in rss.items()},
                "columns": sum(
                    len(m.numeric_columns) + len(m.categorical_columns) for m in models.values()
                ),
            }
            result["_service"] = svc
            return result


async def _timed_round(svc: Any, messages: Any, total: int, start: int) -> tuple[float, float]:
    """(events per wall second, events per CPU second) of ``total`` events through ``svc``."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    for b in batches(messages, total, start=start):
        await svc.process(b)
        await asyncio.sleep(0)  # the dispatcher gets the loop, as during getmany()
    return total / (time.perf_counter() - t0), total / (time.process_time() - cpu0)


def _round_ratios(ours: list[float], base: list[float]) -> list[float]:
    """Round ``i``'s ratio: ``ours[i]`` over the mean of the baselines before and after it."""
    return [o / ((b0 + b1) / 2) for o, b0, b1 in zip(ours, base[:-1], base[1:], strict=True)]


async def paired_in_process(
    w: Workload, messages: list[Any], refs: dict[str, Any], rounds: int, per_round: int
) -> dict[str, Any]:
    """Our rate against the bare decode loop, alternating: bare, ours, bare, ours, ...

    The machine's speed can swing by 2x within minutes (BENCHMARKS.md): a ratio of
    two measurements taken minutes apart can be off by as much. Here each round
    times ``per_round`` events of the bare loop, then the same ``per_round`` events
    through one warm service, then the bare loop again; the round's ratio is ours over
    the mean of the two bare rates around it. Reported: the median round, by wall
    time and by CPU time of the process (the latter leaves out the time other
    processes took the core from us, which on a shared machine is most of the noise).
    """
    ours_rates: list[float] = []
    ours_cpu: list[float] = []
    bare_rates: list[float] = []
    bare_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        async with WebhookReceiver() as rx:
            svc = await offline_service(w, Path(tmpdir), refs, rx.url, None)
            for b in batches(messages, 6_000 * w.models):  # warm-up: window full, code hot
                await svc.process(b)
            start = 6_000 * w.models
            for _ in range(rounds):
                bare = bare_decode(messages, per_round, start=start)  # the same messages
                bare_rates.append(bare["events_per_second"])
                bare_cpu.append(bare["events_per_cpu_second"])
                wall, cpu = await _timed_round(svc, messages, per_round, start)
                ours_rates.append(wall)
                ours_cpu.append(cpu)
                start += per_round
            bare = bare_decode(messages, per_round, start=start - per_round)
            bare_rates.append(bare["events_per_second"])
            bare_cpu.append(bare["events_per_cpu_second"])
            processed = sum(m.events_total for m in svc.models.values())
            await svc.alerts.stop(grace_seconds=0)
    ratios = _round_ratios(ours_rates, bare_rates)
    ratios_cpu = _round_ratios(ours_cpu, bare_cpu)
    return {
        "rounds": rounds,
        "events_per_round": per_round,
        "events_processed": processed,  # warm-up included: what the service applied
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "ratio_cpu_median": statistics.median(ratios_cpu),
        "ratios_cpu": ratios_cpu,
        "events_per_second": ours_rates,
        "events_per_cpu_second": ours_cpu,
        "bare_events_per_second": bare_rates,
        "bare_events_per_cpu_second": bare_cpu,
    }


async def paired_scale(
    one: tuple[Workload, Any, dict[str, Any]],
    many: tuple[Workload, Any, dict[str, Any]],
    rounds: int,
    per_round: int,
) -> dict[str, Any]:
    """Many models interleaved against one model, alternating: one, many, one, many, ..., one.

    Each of ``one`` and ``many`` is (workload, messages, references); both services are
    warm and alive for the whole run. A round's ratio is the many-model rate over the
    mean of the one-model rates just before and after it (as :func:`paired_in_process`).
    """
    out: dict[str, Any] = {"rounds": rounds, "events_per_round": per_round}
    with tempfile.TemporaryDirectory() as tmpdir:
        async with WebhookReceiver() as rx:
            svcs = []
            for i, (w, messages, refs) in enumerate((one, many)):
                (Path(tmpdir) / str(i)).mkdir()
                svc = await offline_service(w, Path(tmpdir) / str(i), refs, rx.url, None)
                for b in batches(messages, 6_000 * w.models):
                    await svc.process(b)
                svcs.append((svc, messages, 6_000 * w.models))
            rates: dict[str, list[float]] = {"one": [], "one_cpu": [], "many": [], "many_cpu": []}
            starts = [s for _, _, s in svcs]

            async def run(k: int, name: str) -> None:
                svc, messages, _ = svcs[k]
                wall, cpu = await _timed_round(svc, messages, per_round, starts[k])
                starts[k] += per_round
                rates[name].append(wall)
                rates[name + "_cpu"].append(cpu)

            await run(0, "one")
            for _ in range(rounds):
                await run(1, "many")
                await run(0, "one")
            out["events_processed"] = [  # warm-up included: what each service applied
                sum(m.events_total for m in svc.models.values()) for svc, _, _ in svcs
            ]
            for svc, _, _ in svcs:
                await svc.alerts.stop(grace_seconds=0)
    ratios = _round_ratios(rates["many"], rates["one"])
    ratios_cpu = _round_ratios(rates["many_cpu"], rates["one_cpu"])
    out.update(
        models=many[0].models,
        ratio_median=statistics.median(ratios),
        ratios=ratios,
        ratio_cpu_median=statistics.median(ratios_cpu),
        ratios_cpu=ratios_cpu,
        events_per_second=rates["many"],
        one_model_events_per_second=rates["one"],
        events_per_cpu_second=rates["many_cpu"],
        one_model_events_per_cpu_second=rates["one_cpu"],
    )
    return out


def bare_decode(messages: list[Any], total: int, start: int = 0) -> dict[str, Any]:
    """The floor of any consumer: ``orjson.loads`` of every message value, nothing else."""
    loads = orjson.loads
    cpu0, t0 = time.process_time(), time.perf_counter()
    for b in batches(messages, total, start=start):
        for v in b.values:
            loads(v)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "events": total,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "events_per_second": total / wall,
        "events_per_cpu_second": total / cpu,
    }


def evaluation_timing(mm: Any, repeat: int) -> dict[str, Any]:
    """Median time of ``ModelMonitor.evaluate`` on a full window, and per detector kind."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        mm.evaluate()
        times.append(time.perf_counter() - t0)
    from monitor.detectors.base import evaluate_sorted
    from monitor.summary import summarize_numeric

    num = mm.window.numeric()
    _, sorted_cols = summarize_numeric(num)
    per: dict[str, list[float]] = {}
    # Columns in the inner loop, as in an evaluation: the same column evaluated again and
    # again would let the branch predictor learn its data, which the real loop never does.
    for _ in range(repeat):
        for name, col in zip(mm.numeric_columns, sorted_cols, strict=True):
            for d in mm.detectors[name]:
                t0 = time.perf_counter()
                evaluate_sorted(d, col)  # as ModelMonitor.evaluate calls it
                per.setdefault(f"numeric:{d.name}", []).append((time.perf_counter() - t0) / repeat)
    t0 = time.perf_counter()
    for _ in range(repeat):
        summarize_numeric(num)
    summary = (time.perf_counter() - t0) / repeat
    return {
        "columns": len(mm.numeric_columns) + len(mm.categorical_columns),
        "evaluate_median_seconds": statistics.median(times),
        "numeric_summaries_seconds": summary,
        "per_detector_all_columns_seconds": {k: sum(v) for k, v in per.items()},
    }


# ----------------------------------------------------------------------------- Kafka


def _consumer_kwargs(bootstrap: str) -> dict[str, Any]:
    """The fetch settings :class:`monitor.kafka_source.KafkaSource` uses (defaults config)."""
    return {
        "bootstrap_servers": bootstrap,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_bytes": 52_428_800,
        "max_partition_fetch_bytes": 1_048_576 + 1024,
    }


async def preload(bootstrap: str, topic: str, values: list[bytes], total: int) -> float:
    """Produce ``total`` messages (cycling over ``values``), keyed by model; seconds taken."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1_048_576, acks=1
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        pending = []
        n = len(values)
        for i in range(total):
            v = values[i % n]
            key = v[v.index(b'"model":"') + 9 : v.index(b'"', v.index(b'"model":"') + 9)]
            pending.append(await producer.send(topic, v, key=key, partition=0))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def bare_consumer(bootstrap: str, topic: str, total: int) -> dict[str, Any]:
    """The limit of any aiokafka consumer: fetch and ``orjson.loads``, nothing else."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, group_id=f"bare-{time.monotonic_ns()}", **_consumer_kwargs(bootstrap)
    )
    loads = orjson.loads
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await consumer.start()
    done = 0
    try:
        while done < total:
            got = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            for records in got.values():
                for r in records:
                    loads(r.value)
                done += sum(len(r) for r in got.values())
    finally:
        await consumer.stop()
    wall = time.perf_counter() - t0
    return {
        "events": done,
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - cpu0,
        "events_per_second": done / wall,
    }


async def service_end_to_end(
    w: Workload, bootstrap: str, topic: str, total: int, refs: dict[str, Any]
) -> dict[str, Any]:
    """``MonitorService`` with its real consumer, from ``start()`` to every event processed."""
    from monitor.service import MonitorService

    with tempfile.TemporaryDirectory() as tmpdir:
        async with WebhookReceiver() as rx:
            cfg = bench_config(w, Path(tmpdir), rx.url, bootstrap=bootstrap)
            cfg = cfg.model_copy(
                update={"kafka": cfg.kafka.model_copy(update={"predictions_topic": topic})}
            )
            svc = MonitorService(cfg)
            svc.references.update(refs)  # as load_references() would from files (not timed)
            svc.load_references = lambda: None  # type: ignore[method-assign]
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            await svc.start()
            task = asyncio.create_task(svc.run())
            while sum(m.events_total for m in svc.models.values()) < total:
                if task.done():
                    task.result()
                    raise RuntimeError("service stopped before processing every event")
                await asyncio.sleep(0.01)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            svc.request_stop()
            await task
            await svc.stop(grace_seconds=2.0)
    return {
        "events": total,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "events_per_second": total / wall,
        "webhook_requests": rx.received,
    }


async def kafka_parts(
    w: Workload, values: list[bytes], total: int, refs: dict[str, Any], rounds: int = 3
) -> dict[str, Any]:
    """The service end to end against a bare consumer of the same topic, alternating.

    One local broker, one topic of ``total`` messages. First an untimed bare pass (the
    broker's JIT and page cache warm: on a fresh JVM the first consumer ran up to a third
    slower than the next, which made the order of the two sides decide the ratio). Then
    bare, ours, bare, ..., ours, bare: a round's ratio is our rate over the mean of the two
    bare rates around it, as :func:`paired_in_process` does, because this machine's speed
    swings within minutes.
    """
    from devtools.local_kafka import LocalKafka

    with LocalKafka() as kafka:
        topic = f"bench-{time.monotonic_ns()}"
        kafka.create_topics([topic], partitions=1)
        produce = await preload(kafka.bootstrap_servers, topic, values, total)
        warm = await bare_consumer(kafka.bootstrap_servers, topic, total)
        bares = [await bare_consumer(kafka.bootstrap_servers, topic, total)]
        ours: list[dict[str, Any]] = []
        for _ in range(rounds):
            ours.append(await service_end_to_end(w, kafka.bootstrap_servers, topic, total, refs))
            bares.append(await bare_consumer(kafka.bootstrap_servers, topic, total))
    ratios = _round_ratios(
        [o["events_per_second"] for o in ours], [b["events_per_second"] for b in bares]
    )
    return {
        "produce_seconds": produce,
        "warm_up": warm,
        "rounds": rounds,
        "bare_runs": bares,
        "service_runs": ours,
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
    }


# ----------------------------------------------------------------------------- Evidently

_EVIDENTLY = r"""
import sys, time, warnings, json
import numpy as np, pandas as pd
warnings.filterwarnings("ignore")
d = np.load(sys.argv[1], allow_pickle=False)
def frame(p):
    df = pd.DataFrame(d[p + "_num"], columns=[f"f{j:02d}" for j in range(d[p + "_num"].shape[1])])
    for j in range(d[p + "_cat"].shape[1]):
        df[f"c{j}"] = d[p + "_cat"][:, j]
    df["prediction"] = d[p + "_pred"]
    return df
ref, cur = frame("ref"), frame("cur")
import evidently
try:
    from evidently import Report, Dataset, DataDefinition
    from evidently.presets import DataDriftPreset
    cats = [c for c in ref.columns if c.startswith("c")]
    nums = [c for c in ref.columns if c not in cats]
    dd = DataDefinition(numerical_columns=nums, categorical_columns=cats)
    r_ds = Dataset.from_pandas(ref, data_definition=dd)
    def run():
        c_ds = Dataset.from_pandas(cur, data_definition=dd)
        return Report([DataDriftPreset()]).run(reference_data=r_ds, current_data=c_ds)
except ImportError:
    from evidently.report import Report
    from evidently.metric_preset import DataDriftPreset
    def run():
        rep = Report(metrics=[DataDriftPreset()])
        rep.run(reference_data=ref, current_data=cur)
        return rep
run()
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"version": evidently.__version__, "seconds": times[len(times) // 2]}))
"""


def evidently_peer(python: str, mm: Any, refs: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Evidently's drift preset on the monitor's current window and reference, if installed."""
    if not python or not Path(python).exists():
        return {"skipped": f"no Evidently interpreter at {python!r}"}
    num = mm.window.numeric()
    cat = mm.window.categorical()
    names = [c for c in mm.numeric_columns if c != "__prediction__"]
    ref_rows = reference_rows(SINGLE, 10_000, 99)
    ref_num = np.array([[f[c] for c in names] for f, _ in ref_rows])
    ref_cat = np.array([[f[c] for c in mm.categorical_columns] for f, _ in ref_rows])
    cur_cat = np.array(
        [
            [mm.categories[c][k] for c, k in zip(mm.categorical_columns, row, strict=True)]
            for row in cat.tolist()
        ]
    )
    with tempfile.TemporaryDirectory() as tmpdir:
        path = Path(tmpdir) / "data.npz"
        np.savez(
            path,
            ref_num=ref_num,
            ref_cat=ref_cat,
            ref_pred=np.array([p for _, p in ref_rows]),
            cur_num=num[:, : len(names)],
            cur_cat=cur_cat,
            cur_pred=num[:, -1],
        )
        script = Path(tmpdir) / "peer.py"
        script.write_text(_EVIDENTLY)
        proc = subprocess.run(
            [python, str(script), str(path), str(repeat)], capture_output=True, text=True
        )
    if proc.returncode != 0:
        return {"skipped": "Evidently run failed: " + proc.stderr.strip().splitlines()[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["window_rows"] = len(num)
    out["rows_per_second"] = len(num) / out["seconds"]
    return out


# ----------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    from monitor import column_sort

    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "openblas_env": blas or "unset",
        # numpy's or the crate's: timed at the first sort (monitor/column_sort.py)
        "column_sort": column_sort.implementation(),
    }


def table(r: dict[str, Any]) -> str:
    """The markdown table of one run (figures rounded for reading; exact ones in the JSON)."""

    def k(x: float) -> str:
        return f"{x / 1000:,.1f}k"

    ip = r["in_process"]
    bare = r["bare_decode"]
    bare_rate = bare["events_per_second"]
    bare_text = k(bare_rate)
    if "bare_decode_after" in r:
        after = r["bare_decode_after"]["events_per_second"]
        bare_text = f"{k(bare_rate)} before / {k(after)} after"
        bare_rate = (bare_rate + after) / 2
    decoder = "compiled decoder" if ip.get("native_decoder") else "Python decoder (not built)"
    lines = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| in-process, 1 model x 23 columns, {decoder}: events/s (wall; per CPU-second) | "
        f"{k(ip['events_per_second'])} ({k(ip['events_per_cpu_second'])}) | >= 150k |",
        f"| bare decode loop (orjson.loads only): events/s | {bare_text} | |",
        f"| in-process / bare decode (mean of the bare runs around ours) | "
        f"{ip['events_per_second'] / bare_rate:.1%} | >= 50% |",
    ]
    if "paired" in r:
        pr = r["paired"]
        lines.append(
            f"| in-process / bare decode, alternating ({pr['rounds']} rounds of "
            f"{pr['events_per_round']:,} events each): median (range); by CPU time | "
            f"{pr['ratio_median']:.1%} ({min(pr['ratios']):.1%} to {max(pr['ratios']):.1%});"
            f" {pr['ratio_cpu_median']:.1%} | >= 50% |"
        )
        if "events_per_cpu_second" in pr:
            lines.append(
                "| ... its rates, median events/s: ours; bare (wall; per CPU-second) | "
                f"{k(statistics.median(pr['events_per_second']))} "
                f"({k(statistics.median(pr['events_per_cpu_second']))}); "
                f"{k(statistics.median(pr['bare_events_per_second']))} "
                f"({k(statistics.median(pr['bare_events_per_cpu_second']))}) | |"
            )
    if "in_process_python_decoder" in r:
        py = r["in_process_python_decoder"]
        lines.append(
            f"| in-process, same with the Python decoder (MONITOR_NATIVE_DECODER=0) | "
            f"{k(py['events_per_second'])} ({k(py['events_per_cpu_second'])}) | (baseline) |"
        )
    if "in_process_no_adwin" in r:
        na = r["in_process_no_adwin"]
        lines.append(
            f"| in-process, same but ADWIN off (drift override streaming_features: null) | "
            f"{k(na['events_per_second'])} ({k(na['events_per_cpu_second'])}) | (diagnostic) |"
        )
    sc = r["scale"]
    lines.append(
        f"| in-process, {sc['models']} models x {sc['columns_per_model']} columns, interleaved |"
        f" {k(sc['events_per_second'])} ({k(sc['events_per_cpu_second'])}) | |"
    )
    if "scale_paired" in r:
        sp = r["scale_paired"]
        lines += [
            f"| {sp['models']} models / 1 model, alternating ({sp['rounds']} rounds of "
            f"{sp['events_per_round']:,} events each): median (range); by CPU time | "
            f"{sp['ratio_median']:.1%} ({min(sp['ratios']):.1%} to {max(sp['ratios']):.1%}); "
            f"{sp['ratio_cpu_median']:.1%} | >= 85% |",
            f"| ... its rates, median events/s: {sp['models']} models; 1 model "
            "(wall; per CPU-second) | "
            f"{k(statistics.median(sp['events_per_second']))} "
            f"({k(statistics.median(sp['events_per_cpu_second']))}); "
            f"{k(statistics.median(sp['one_model_events_per_second']))} "
            f"({k(statistics.median(sp['one_model_events_per_cpu_second']))}) | |",
        ]
    if "kafka" in r:
        kf = r["kafka"]
        svc_rates = [o["events_per_second"] for o in kf["service_runs"]]
        bare_rates = [b["events_per_second"] for b in kf["bare_runs"]]
        events = kf["service_runs"][0]["events"]
        lines += [
            f"| end to end via local broker, {events:,} msgs, {kf['rounds']} rounds alternating "
            "with a bare consumer (broker warmed by an untimed pass): MonitorService events/s, "
            f"median (range) | {k(statistics.median(svc_rates))} ({k(min(svc_rates))} to "
            f"{k(max(svc_rates))}) | |",
            f"| bare aiokafka consumer + orjson, the {len(bare_rates)} runs around ours: median "
            f"(range) | {k(statistics.median(bare_rates))} ({k(min(bare_rates))} to "
            f"{k(max(bare_rates))}) | |",
            f"| end to end / bare consumer, per round: median (range) | "
            f"{kf['ratio_median']:.1%} ({min(kf['ratios']):.1%} to {max(kf['ratios']):.1%}) "
            "| >= 70% |",
        ]
    ev = r["evaluation"]
    per = ", ".join(f"{n} {s * 1e3:.2f}" for n, s in ev["per_detector_all_columns_seconds"].items())
    lines += [
        f"| evaluate one full window ({ev['columns']} columns), median ms | "
        f"{ev['evaluate_median_seconds'] * 1e3:.2f} | < 2 ms |",
        f"| ... of which, ms over all numeric columns: {per}; numeric summaries "
        f"{ev['numeric_summaries_seconds'] * 1e3:.2f} | | |",
    ]
    mem = r["memory"]
    rss = mem["rss_after"]
    keys = sorted(rss, key=int)
    lines += [
        f"| RSS after {int(keys[0]):,} / {int(keys[-1]):,} events (MiB) | "
        f"{rss[keys[0]] / 2**20:.1f} / {rss[keys[-1]] / 2**20:.1f} "
        f"({rss[keys[-1]] / rss[keys[0]] - 1:+.2%}) | within 5% |",
        f"| peak RSS of the run (MiB) | {mem['peak_rss'] / 2**20:.1f} | |",
        "| RSS growth from service start to the first mark, / columns (1 model: mostly the "
        "run's batch buffers and what the allocator keeps of them, not state; the state per "
        "(model, feature) is `bench.evaluation --memory`) / checkpoint bytes per column |"
        f" {mem['bytes_per_column']:,.0f} / {mem['checkpoint_bytes_per_column']:,.0f} | |",
    ]
    pe = r["evidently"]
    if "skipped" in pe:
        lines.append(f"| Evidently DataDriftPreset | skipped: {pe['skipped']} | |")
    else:
        lines.append(
            f"| Evidently {pe['version']} DataDriftPreset, {pe['window_rows']:,}-row window vs"
            f" 10,000-row reference: rows/s (s per report) | {k(pe['rows_per_second'])} "
            f"({pe['seconds']:.2f} s) | (peer) |"
        )
    return "\n".join(lines)


def write_benchmarks(text: str) -> None:
    """Replace only our marked section of BENCHMARKS.md (read, modify, write once)."""
    section = f"{START}\n{text}\n{END}"
    old = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if START in old and END in old:
        new = old[: old.index(START)] + section + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS.write_text(new)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    single_total = 100_000 if quick else 5_000_000
    marks = (20_000, 100_000) if quick else (1_000_000, 5_000_000)
    pool = 40_000 if quick else 400_000
    scale = Workload(5, 18, 2) if quick else SCALE
    scale_total = 60_000 if quick else 1_000_000
    kafka_total = 50_000 if quick else args.kafka_messages

    values = generate(SINGLE, pool, 1, drift_from=pool // 2)
    msgs = raw_messages(values)
    refs = references(SINGLE)
    out: dict[str, Any] = {"machine": machine(), "quick": quick}
    print("bare decode ...", flush=True)
    out["bare_decode"] = bare_decode(msgs, min(single_total, 1_000_000))
    import monitor.service  # noqa: F401  (imports are not monitoring state)
    from monitor import state_format

    gc.collect()
    base_rss = rss_bytes()
    print(f"in-process, 1 model, {single_total:,} events ...", flush=True)
    ip = await run_in_process(SINGLE, msgs, single_total, refs, checkpoints=marks)
    svc = ip.pop("_service")
    # The bare loop again right after: the ratio's baseline is the mean of the two around
    # our run (one measurement a minute before it was as much as 30% off, see BENCHMARKS.md).
    out["bare_decode_after"] = bare_decode(msgs, min(single_total, 1_000_000))
    mm = svc.models["m00"]
    out["in_process"] = ip
    out["memory"] = {
        "rss_before_service": base_rss,
        "rss_after": ip["rss_at"],
        "peak_rss": peak_rss_bytes(),
        "bytes_per_column": (ip["rss_at"][str(marks[0])] - base_rss) / ip["columns"],
        # What a checkpoint stores of it (state format, compressed), not a pickle.
        "checkpoint_bytes_per_column": len(state_format.encode(mm.export_state())) / ip["columns"],
    }
    print("evaluation timing ...", flush=True)
    out["evaluation"] = evaluation_timing(mm, 5 if quick else 20)
    out["evidently"] = evidently_peer(args.evidently_python, mm, refs, 1 if quick else 3)
    del svc, mm
    gc.collect()
    print("in-process against bare decode, alternating ...", flush=True)
    out["paired"] = await paired_in_process(
        SINGLE, msgs, refs, rounds=3 if quick else 7, per_round=20_000 if quick else 200_000
    )
    print("in-process, Python decoder ...", flush=True)
    py = await run_in_process(SINGLE, msgs, min(single_total, 1_000_000), refs, native=False)
    py.pop("_service")
    out["in_process_python_decoder"] = py
    print("in-process, ADWIN off ...", flush=True)
    na = await run_in_process(
        SINGLE, msgs, min(single_total, 500_000), refs, drift={"streaming_features": None}
    )
    na.pop("_service")
    out["in_process_no_adwin"] = na
    print(f"in-process, {scale.models} models ...", flush=True)
    svals = generate(scale, pool, 2, drift_from=pool // 2)
    srefs = references(scale)
    smsgs = raw_messages(svals)
    sc = await run_in_process(scale, smsgs, scale_total, srefs)
    sc.pop("_service")
    sc.update(models=scale.models, columns_per_model=sc["columns"] // scale.models)
    out["scale"] = sc
    print(f"in-process, {scale.models} models against 1 model, alternating ...", flush=True)
    out["scale_paired"] = await paired_scale(
        (SINGLE, msgs, refs),
        (scale, smsgs, srefs),
        rounds=3 if quick else 7,
        per_round=20_000 if quick else 200_000,
    )
    del svals, smsgs
    if not args.skip_kafka:
        print(f"Kafka end to end, {kafka_total:,} messages (a fresh process) ...", flush=True)
        out["kafka"] = kafka_in_subprocess(kafka_total, 1 if quick else args.kafka_rounds, pool)
    return out


def kafka_in_subprocess(total: int, rounds: int, pool: int) -> dict[str, Any]:
    """:func:`kafka_parts` in a fresh interpreter, as the service runs in production.

    By the time the in-process parts are done this process holds about 3.4 GB (the
    pre-encoded messages, five services' garbage): both the service and the bare
    consumer measured here ran in that heap, which is nothing like a deployment's, and
    the ratio read 64-70% here against 70-72% in a fresh process the same hour. The
    child generates the same messages (same seeds) and references.
    """
    with tempfile.TemporaryDirectory() as tmpdir:
        out = Path(tmpdir) / "kafka.json"
        cmd = [sys.executable, "-m", "bench.throughput", "--kafka-only", str(out)]
        cmd += ["--kafka-messages", str(total), "--kafka-rounds", str(rounds)]
        cmd += ["--pool", str(pool)]
        subprocess.run(cmd, check=True, cwd=ROOT)
        return json.loads(out.read_text())


def kafka_only(path: Path, total: int, rounds: int, pool: int) -> None:
    """The child of :func:`kafka_in_subprocess`: the Kafka part alone, written to ``path``."""
    values = generate(SINGLE, pool, 1, drift_from=pool // 2)
    result = asyncio.run(kafka_parts(SINGLE, values, total, references(SINGLE), rounds=rounds))
    path.write_text(json.dumps(result, default=str))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="far fewer events (smoke run)")
    parser.add_argument("--skip-kafka", action="store_true", help="leave out the broker parts")
    parser.add_argument("--kafka-messages", type=int, default=2_000_000)
    parser.add_argument(
        "--kafka-rounds", type=int, default=3, help="service runs, each between two bare runs"
    )
    parser.add_argument("--evidently-python", default="/tmp/evenv/bin/python")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--kafka-only", type=Path, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--pool", type=int, default=400_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kafka_only is not None:
        kafka_only(args.kafka_only, args.kafka_messages, args.kafka_rounds, args.pool)
        return {}
    result = asyncio.run(run_all(args))
    command = ".venv/bin/python -m bench.throughput " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result["command"] = command.strip()
    text = table(result)
    m = result["machine"]
    header = (
        f"### Throughput and memory (issue 7)\n\nCommand: `{result['command']}`  \n"
        f"Machine: {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}, "
        f"OPENBLAS env: {m['openblas_env']}; column sort: {m['column_sort']}; "
        f"run at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
        f" What each row includes: see the docstring of `bench/throughput.py`.\n\n"
    )
    print(header + text)
    if not args.no_write:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(result, indent=2, default=str))
        write_benchmarks(header + text)
    return result


if __name__ == "__main__":
    main()
