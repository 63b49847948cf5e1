"""The decode path alone, per event: from aiokafka's records to decoded columns (issue 19).

Run: ``.venv/bin/python -m bench.decode_path [--repeat N]``. Builds one poll's worth of
aiokafka ``ConsumerRecord`` objects (5,000 events of the throughput workload, one partition)
and times, best of ``--repeat``: turning them into what the source hands the decoder (a
:class:`~monitor.events.MessageBatch`, as ``KafkaSource.poll`` does, and for comparison one
:class:`~monitor.events.RawMessage` per record, as it did before), ``Decoder.decode`` of it
with the model's schema settled (the compiled decoder when installed), and a bare
``orjson.loads`` loop over the same values. A diagnostic for development; it writes nothing.

``--against-serde ROUNDS`` compares the compiled decoder's two implementations side by side
in this one process (issue 19): the scanner (``decode_predictions``) and the serde_json
decoder it replaced (``decode_predictions_serde``), alternating, ROUNDS rounds of best-of-
``--repeat`` CPU times each, for the bare call and for records -> decoded columns; it prints
medians and ranges. ``--against-build DIR --rounds ROUNDS`` compares this checkout's
``monitor_native`` with another build of it installed in DIR (``pip install --target DIR
<old>/native``): ROUNDS pairs of runs of this module in subprocesses, alternating, the same
Python code and packages, only the compiled module differs; CPU times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from itertools import repeat
from operator import attrgetter, truediv
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

import monitor.events
from bench import throughput as t
from monitor.events import NATIVE_AVAILABLE, Decoder, MessageBatch, RawMessage

_FIELDS = tuple(attrgetter(a) for a in ("value", "timestamp", "offset", "key"))


def records(n: int) -> list[ConsumerRecord[bytes, bytes]]:
    values = t.generate(t.SINGLE, n, 1)
    return [
        ConsumerRecord(
            "predictions", 0, i, 1_790_000_000_000 + i, 0, b"m00", v, None, 3, len(v), ()
        )
        for i, v in enumerate(values)
    ]


def as_batch(recs: list[Any]) -> MessageBatch:
    """What ``KafkaSource.poll`` does with one partition's records."""
    value, stamp, offset, key = _FIELDS
    batch = MessageBatch()
    batch.add_run(
        "predictions",
        0,
        map(value, recs),
        map(truediv, map(stamp, recs), repeat(1000.0)),
        map(offset, recs),
        map(key, recs),
    )
    return batch


def as_messages(recs: list[Any]) -> list[RawMessage]:
    """What the source did before issue 19: one object per record."""
    return [
        RawMessage(r.value, r.timestamp / 1000.0, r.topic, r.partition, r.offset, r.key)
        for r in recs
    ]


def best_us(
    fn: Callable[[], Any], n: int, repeat_: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    times = []
    for _ in range(repeat_):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times) / n * 1e6


def against_serde(recs: list[Any], schemas: Any, repeat_: int, rounds: int) -> dict[str, Any]:
    """Scanner vs serde_json decoder, alternating, by CPU time: {measure: [us per round]}."""
    import monitor_native

    n = len(recs)
    values = [rec.value for rec in recs]
    decoder = Decoder(max_message_bytes=1_000_000)
    decoder.decode(as_messages(recs[:1]))
    serde = types.SimpleNamespace(decode_predictions=monitor_native.decode_predictions_serde)
    impls = {"scanner": monitor_native, "serde_json": serde}
    out: dict[str, list[float]] = {}
    clock = time.process_time
    for _ in range(rounds):
        for name, impl in impls.items():
            monitor.events._native = impl  # type: ignore[attr-defined]
            try:
                bare = best_us(
                    lambda call=impl.decode_predictions: call(values, schemas, 256),  # type: ignore[misc]
                    n,
                    repeat_,
                    clock,
                )
                path = best_us(lambda: decoder.decode(as_batch(recs), schemas), n, repeat_, clock)
            finally:
                monitor.events._native = monitor_native  # type: ignore[attr-defined]
            out.setdefault(f"decode_predictions ({name})", []).append(bare)
            out.setdefault(f"records -> decoded, columns ({name})", []).append(path)
    print(f"{n:,} events, {rounds} rounds alternating, best of {repeat_} CPU times each; us/event")
    for name, xs in out.items():
        print(f"  {name:42s} median {statistics.median(xs):6.3f} ({min(xs):.3f} to {max(xs):.3f})")
    return out


def against_build(build: str, rounds: int, passed: list[str]) -> dict[str, list[float]]:
    """This module's figures with the other build first on the path, then with this
    checkout's, alternating, ``rounds`` times: {measure (build): [us per round]}."""
    out: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, prefix in (("other", [build]), ("this", [])):
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([*prefix, *sys.path[:1], env.get("PYTHONPATH", "")])
            cmd = [sys.executable, "-m", "bench.decode_path", "--cpu-json", *passed]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            for measure, us in json.loads(done.stdout.splitlines()[-1]).items():
                out.setdefault(f"{measure} ({name})", []).append(us)
    print(f"{rounds} rounds alternating, other build: {build}; CPU us/event, median (range)")
    for name, xs in sorted(out.items()):
        print(f"  {name:44s} {statistics.median(xs):6.3f} ({min(xs):.3f} to {max(xs):.3f})")
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--against-serde", type=int, default=0, metavar="ROUNDS")
    parser.add_argument("--against-build", metavar="DIR")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n, r = args.events, args.repeat
    if args.against_build:
        passed = ["--events", str(n), "--repeat", str(r)]
        compared = against_build(args.against_build, args.rounds, passed)
        return {k: statistics.median(v) for k, v in compared.items()}
    recs = records(n)
    schemas = {"m00": (tuple(f"f{j:02d}" for j in range(20)), ("c0", "c1"))}
    if args.against_serde:
        compared = against_serde(recs, schemas, r, args.against_serde)
        return {k: statistics.median(v) for k, v in compared.items()}
    if args.cpu_json:  # one side of --against-build
        import monitor_native

        values = [rec.value for rec in recs]
        decoder = Decoder(max_message_bytes=1_000_000)
        decoder.decode(as_messages(recs[:1]))
        clock = time.process_time
        call = monitor_native.decode_predictions
        figures = {
            "decode_predictions": best_us(lambda: call(values, schemas, 256), n, r, clock),
            "records -> decoded, columns": best_us(
                lambda: decoder.decode(as_batch(recs), schemas), n, r, clock
            ),
        }
        print(json.dumps(figures))
        return figures
    values = [rec.value for rec in recs]
    decoder = Decoder(max_message_bytes=1_000_000)
    decoder.decode(as_messages(recs[:1]))  # the model's verdict, as after the first batch
    batch, messages = as_batch(recs), as_messages(recs)
    loads = orjson.loads
    out = {
        "records -> MessageBatch": best_us(lambda: as_batch(recs), n, r),
        "records -> RawMessage list": best_us(lambda: as_messages(recs), n, r),
        "decode(MessageBatch)": best_us(lambda: decoder.decode(batch, schemas), n, r),
        "decode(RawMessage list)": best_us(lambda: decoder.decode(messages, schemas), n, r),
        "records -> decoded, columns": best_us(
            lambda: decoder.decode(as_batch(recs), schemas), n, r
        ),
        "bare orjson.loads loop": best_us(lambda: [loads(v) for v in values], n, r),
    }
    print(f"compiled decoder: {NATIVE_AVAILABLE}; {n:,} events, best of {r}, us per event")
    for name, us in out.items():
        print(f"  {name:32s} {us:6.3f}")
    return out


if __name__ == "__main__":
    main()
