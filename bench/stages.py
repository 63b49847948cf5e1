"""Where the in-process time goes, per event: decode, columns, stream detectors, evaluation.

Run: ``.venv/bin/python -m bench.stages [--events N]``. Feeds the single-model workload of
:mod:`bench.throughput` through ``MonitorService.process`` (as its in-process part does) with
the stage functions wrapped by timers, and prints microseconds per event for each. Nested
stages are included in their parents (``apply`` holds ``ingest``, which holds the rest). The
timers cost a little, so the stages add up to slightly more than an unwrapped run. A
diagnostic for development; it writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench import throughput as t
from monitor import columns, evaluation, events, model_monitor, service
from monitor.alerting.engine import AlertService
from monitor.detectors.ks import KSDetector
from monitor.detectors.psi import PSIDetector
from monitor.drift import DriftTracker

STAGES: tuple[tuple[Any, str, str], ...] = (
    (service.MonitorService, "_apply", "apply (models, metrics, alerts)"),
    (model_monitor.ModelMonitor, "ingest", "ingest (one model's batch)"),
    (model_monitor.ModelMonitor, "evaluate", "evaluate (incl. stream detectors)"),
    (evaluation.StreamFeed, "flush", "  stream detectors (ADWIN)"),
    (evaluation, "summarize_numeric", "  numeric summaries (incl. sort)"),
    (evaluation, "evaluate_sorted_all", "  window detectors, numeric (KS, PSI)"),
    (KSDetector, "evaluate_sorted_batch", "    KS (all columns in one call)"),
    (PSIDetector, "evaluate_sorted_batch", "    PSI (numeric columns in one call)"),
    (DriftTracker, "observe", "  drift tracker (correction, verdicts)"),
    (model_monitor, "drift_signals", "  signals"),
    (AlertService, "submit_async", "alerts (policy, outbox)"),
    (events.Decoder, "decode", "decode"),
    (columns.Columns, "numeric_matrix", "numeric columns (Python decoder)"),
    (columns.Columns, "categorical_matrix", "categorical columns (Python decoder)"),
    (columns.Columns, "columnar_matrices", "columns (compiled decoder)"),
)


def _timed(fn: Callable[..., Any], key: str, spent: Counter[str]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):  # timed to its end, not to the coroutine's creation

        async def awaited(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        return awaited

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t0

    return wrapper


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--python-decoder", action="store_true", help="compiled decoder off")
    args = parser.parse_args(argv)
    spent: Counter[str] = Counter()
    # getattr_static: a classmethod is put back as the descriptor it was, not bound.
    originals = [(cls, name, inspect.getattr_static(cls, name)) for cls, name, _ in STAGES]
    for cls, name, label in STAGES:
        setattr(cls, name, _timed(getattr(cls, name), label, spent))
    try:
        msgs = t.raw_messages(t.generate(t.SINGLE, 60_000, 1, drift_from=30_000))
        result = asyncio.run(
            t.run_in_process(
                t.SINGLE, msgs, args.events, t.references(t.SINGLE), native=not args.python_decoder
            )
        )
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)
    # The warm-up batches of run_in_process are timed by the wrappers too.
    n = args.events + 6_000
    rate = result["events_per_second"]
    decoder = "compiled" if result["native_decoder"] else "Python"
    print(
        f"in-process ({decoder} decoder): {rate:,.0f} events/s = {1e6 / rate:.2f} us/event"
        " (wall, timed part)"
    )
    out = {label: spent[label] / n * 1e6 for _, _, label in STAGES}
    for label, us in out.items():
        print(f"  {label:40s} {us:6.2f} us/event")
    return out


if __name__ == "__main__":
    main()
