"""50 models interleaved against 1 model, this tree against another one, alternating (issue 19).

Run::

    git archive main | tar -x -C /tmp/scale-old
    .venv/bin/python -m bench.scale_against --against /tmp/scale-old --rounds 7

Each tree gets a worker process (``PYTHONPATH`` = that tree) that builds the two warm
services of :func:`bench.throughput.paired_scale` (one model x 23 columns; 50 models x 21
columns, events interleaved, batches of 5,000; alerts to a local webhook receiver in the
same process) and then, on each request, times
``--events`` events through one of them. The requests alternate: per round, the 50-model
service of every tree, then the 1-model service of every tree, the tree order switching
each round, so both trees see the same machine at nearly the same time. Reported by CPU
time of the worker (and by wall time): per tree the median round of the 50-model rate
over the 1-model rate (each round's 50-model rate over the mean of the 1-model rates of
that tree before and after it, as ``paired_scale``), and the 50-model rate of this tree
over the other's, medians with ranges. A shorter ``paired_scale`` than the full
``bench.throughput`` run: a comparison between trees, not the published figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- worker


async def _worker(pool: int) -> None:
    """Build both warm services, then time what stdin asks for (``one N`` / ``many N``)."""
    from bench import throughput as t

    services: dict[str, Any] = {}
    starts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        # As in paired_scale: one local webhook receiver in the process takes both
        # services' notifications (50 drifting models notify 50 times as often).
        rx = t.WebhookReceiver()
        await rx.__aenter__()
        for name, w in (("one", t.SINGLE), ("many", t.SCALE)):
            msgs = t.raw_messages(t.generate(w, pool, 2, drift_from=pool // 2))
            (Path(tmpdir) / name).mkdir()
            svc = await t.offline_service(w, Path(tmpdir) / name, t.references(w), rx.url, None)
            for b in t.batches(msgs, 6_000 * w.models):  # window full, code hot
                await svc.process(b)
            services[name] = (svc, msgs)
            starts[name] = 6_000 * w.models
        print("ready", flush=True)
        for line in sys.stdin:
            name, n = line.split()
            svc, msgs = services[name]
            cpu0, t0 = time.process_time(), time.perf_counter()
            for b in t.batches(msgs, int(n), start=starts[name]):
                await svc.process(b)
                await asyncio.sleep(0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            starts[name] += int(n)
            print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)
        for svc, _ in services.values():
            await svc.alerts.stop(grace_seconds=0)
        await rx.__aexit__(None, None, None)


# ----------------------------------------------------------------------------- driver


class _Tree:
    def __init__(self, label: str, root: Path, pool: int) -> None:
        self.label = label
        env = dict(os.environ, PYTHONPATH=str(root))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--pool", str(pool)],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.rates: dict[str, list[float]] = {"one": [], "one_cpu": [], "many": [], "many_cpu": []}

    def ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"worker of {self.label} failed to start: {line!r}")

    def run(self, name: str, events: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{name} {events}\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        self.rates[name].append(events / r["wall"])
        self.rates[name + "_cpu"].append(events / r["cpu"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _ratios(many: list[float], one: list[float]) -> list[float]:
    return [m / ((a + b) / 2) for m, a, b in zip(many, one[:-1], one[1:], strict=True)]


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="the other tree (e.g. main exported)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="events per timed run; a multiple of 50,000 gives every model of the 50 the "
        "same number of evaluations (one per 1,000 of its events) in every run",
    )
    parser.add_argument("--pool", type=int, default=100_000, help="distinct messages per service")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_worker(args.pool))
        return {}
    trees = [_Tree("this", ROOT, args.pool)]
    if args.against is not None:
        trees.append(_Tree("against", args.against.resolve(), args.pool))
    try:
        for tr in trees:
            tr.ready()
        for tr in trees:
            tr.run("one", args.events)
        for r in range(args.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            for tr in order:
                tr.run("many", args.events)
            for tr in order:
                tr.run("one", args.events)
    finally:
        for tr in trees:
            tr.close()
    out: dict[str, Any] = {"rounds": args.rounds, "events_per_run": args.events}
    for tr in trees:
        out[tr.label] = {
            "many_over_one_cpu": _summary(_ratios(tr.rates["many_cpu"], tr.rates["one_cpu"])),
            "many_over_one_wall": _summary(_ratios(tr.rates["many"], tr.rates["one"])),
            "many_events_per_cpu_second": _summary(tr.rates["many_cpu"]),
            "one_events_per_cpu_second": _summary(tr.rates["one_cpu"]),
        }
    if len(trees) == 2:
        a, b = trees
        for kind in ("many", "one"):
            out[f"{kind}_cpu_this_over_against"] = _summary(
                [x / y for x, y in zip(a.rates[kind + "_cpu"], b.rates[kind + "_cpu"], strict=True)]
            )
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
