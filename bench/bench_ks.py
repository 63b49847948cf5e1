"""Our KS evaluation vs ``scipy.stats.ks_2samp``: 10,000-value reference, 5,000-value window.

Run: ``.venv/bin/python -m bench.bench_ks [--repeat N] [--no-write] [--baseline-python PY
--baseline-root DIR]``. Prints a markdown table of median wall-clock per call over N
repetitions (each on a fresh window, so no p-value cache hit unless stated) and writes it
into the ``ks-speed`` section of BENCHMARKS.md.

Rows, for each p-value method side by side:

* scipy ``ks_2samp(reference, window, method=...)``: sorts both samples every call;
* ours, ``KSDetector(method=...).evaluate_sorted``: the reference sorted once at fit
  (outside the timing, as in production); the window passed sorted, as the pipeline
  passes it (the summaries sort every column anyway); the p-value cache is cleared
  before each call (cold);
* ours, default ``method="kolmogorov"`` (Kolmogorov's limiting distribution): what the
  service runs;
* ours, statistic only: the D computation without any p-value, by the compiled kernel
  (``monitor_native``) and by the numpy fallback, side by side;
* ours, ``evaluate`` on the same window unsorted: input checks and a sort, then the same.

Then one whole evaluation (``ModelMonitor.evaluate``) of the 23-column window of
:mod:`bench.throughput`'s workload (window 5,000, reference 10,000), median of 30, each
configuration in its own process, rounds alternating: with the compiled kernel (all KS
columns in one call), with the numpy fallback, and, given ``--baseline-python`` and
``--baseline-root``, an older checkout run by another interpreter (for issue 19: ``main``
before it, whose KS walk was compiled by numba, with an interpreter that has numba).

Before timing, every method's answers are checked against ``ks_2samp`` with the same
method (to 1e-9), and the default's p-value against the exact one (relative error).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

from bench import command_line, machine_info, write_section
from monitor.detectors import ks
from monitor.detectors.ks import KSDetector, ks_statistic_sorted, ks_statistic_sorted_numpy

ROOT = Path(__file__).resolve().parent.parent

#: One configuration's evaluation timing, run in a fresh process (argv[1]: "numpy" turns
#: the compiled KS kernel off). Prints the median seconds of ``ModelMonitor.evaluate``.
_EVALUATION = """
import asyncio, statistics, sys, time
from bench import throughput as t
from monitor.detectors import ks
if sys.argv[1] == "numpy":
    ks._native_statistic = ks._native_statistics = None
msgs = t.raw_messages(t.generate(t.SINGLE, 12_000, 1, drift_from=6_000))
run = asyncio.run(t.run_in_process(t.SINGLE, msgs, 12_000, t.references(t.SINGLE)))
mm = run["_service"].models["m00"]
for _ in range(3):
    mm.evaluate()  # warm (an older checkout compiles its numba walk here)
times = []
for _ in range(30):
    t0 = time.perf_counter()
    mm.evaluate()
    times.append(time.perf_counter() - t0)
# The KS part alone: every numeric column's KS as the evaluation runs it (all at once
# where evaluate_sorted_all exists, column by column before it).
from monitor.detectors import base
from monitor.summary import summarize_numeric
_, cols = summarize_numeric(mm.window.numeric())
jobs = [(d, c) for n, c in zip(mm.numeric_columns, cols) for d in mm.detectors[n] if d.name == "ks"]
run_all = getattr(base, "evaluate_sorted_all", None) or (
    lambda js: [base.evaluate_sorted(d, c) for d, c in js]
)
ks_times = []
for _ in range(30):
    t0 = time.perf_counter()
    run_all(jobs)
    ks_times.append(time.perf_counter() - t0)
print(statistics.median(times), statistics.median(ks_times), len(jobs))
"""


def evaluation_seconds(python: str, root: Path, mode: str) -> tuple[float, float, int]:
    """Median seconds of ``ModelMonitor.evaluate`` and of its KS part (with the number of
    KS columns) for one configuration, in its own process."""
    out = subprocess.run(
        [python, "-c", _EVALUATION, mode],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    whole, ks_part, columns = out.stdout.split()[-3:]
    return float(whole), float(ks_part), int(columns)


def median_seconds(fn: Callable[[int], object], repeat: int) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reference", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=5_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--rounds", type=int, default=3, help="alternating evaluation rounds")
    parser.add_argument("--baseline-python", help="interpreter of the older checkout")
    parser.add_argument("--baseline-root", type=Path, help="older checkout to compare with")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    reference = rng.normal(size=args.reference)
    # shifts spread p-values from ~1 to ~1e-6: the exact method's cost grows with D
    windows = [
        np.sort(rng.normal(loc=0.08 * (i % 7) / 6, size=args.window)) for i in range(args.repeat)
    ]
    detectors = {m: KSDetector(method=m) for m in ("auto", "asymp", "kolmogorov")}
    for d in detectors.values():
        d.fit(reference)

    # identical answers first: a fast wrong answer is no benchmark
    worst_rel = 0.0
    for w in windows[:7]:
        for m in ("auto", "asymp"):
            ours, theirs = detectors[m].evaluate_sorted(w), stats.ks_2samp(reference, w, method=m)
            assert ours == detectors[m].evaluate(w)
            assert abs(ours.statistic - theirs.statistic) <= 1e-9
            assert abs(ours.p_value - theirs.pvalue) <= 1e-9
        exact = stats.ks_2samp(reference, w, method="exact").pvalue
        fast = detectors["kolmogorov"].evaluate(w).p_value
        worst_rel = max(worst_rel, abs(fast / exact - 1))

    def cold(method: str) -> Callable[[int], object]:
        detector = detectors[method]

        def call(i: int) -> object:
            detector._p_cache.clear()
            return detector.evaluate_sorted(windows[i])

        return call

    def scipy_call(method: str) -> Callable[[int], object]:
        return lambda i: stats.ks_2samp(reference, windows[i], method=method)

    scipy_auto = median_seconds(scipy_call("auto"), args.repeat)
    scipy_asymp = median_seconds(scipy_call("asymp"), args.repeat)
    rows = [
        ("auto (exact here)", scipy_auto, median_seconds(cold("auto"), args.repeat)),
        ("asymp", scipy_asymp, median_seconds(cold("asymp"), args.repeat)),
    ]
    ours_default = median_seconds(cold("kolmogorov"), args.repeat)
    ref_sorted = np.sort(reference)
    stat_only = median_seconds(lambda i: ks_statistic_sorted(ref_sorted, windows[i]), args.repeat)
    stat_numpy = median_seconds(
        lambda i: ks_statistic_sorted_numpy(ref_sorted, windows[i]), args.repeat
    )
    shuffled = [rng.permutation(w) for w in windows]
    default = detectors["kolmogorov"]
    unsorted = median_seconds(lambda i: default.evaluate(shuffled[i]), args.repeat)
    lines = [
        "### KS evaluation speed",
        "",
        f"Command: `{command_line()}`; {machine_info()}.",
        f"Reference n={args.reference}, window n={args.window}, median of {args.repeat} calls,"
        " each on a different window (shift 0 to 0.08 sigma), cold p-value cache.",
        "",
        "| p-value method | scipy ks_2samp ms/call | ours ms/call | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for name, theirs, ours in rows:
        lines.append(f"| {name} | {theirs * 1e3:.3f} | {ours * 1e3:.3f} | {theirs / ours:.1f}x |")
    lines += [
        f"| kolmogorov (service default) vs scipy auto | {scipy_auto * 1e3:.3f} "
        f"| {ours_default * 1e3:.3f} | {scipy_auto / ours_default:.1f}x |",
        f"| kolmogorov (service default) vs scipy asymp | {scipy_asymp * 1e3:.3f} "
        f"| {ours_default * 1e3:.3f} | {scipy_asymp / ours_default:.1f}x |",
        f"| statistic only (no p-value), {'compiled kernel' if ks.NATIVE_KS else 'numpy'} | - "
        f"| {stat_only * 1e3:.3f} | - |",
        f"| statistic only (no p-value), numpy fallback | - | {stat_numpy * 1e3:.3f} | - |",
        f"| kolmogorov, `evaluate` on the window unsorted (checks + sort) | {scipy_asymp * 1e3:.3f}"
        f" | {unsorted * 1e3:.3f} | {scipy_asymp / unsorted:.1f}x vs asymp |",
        "",
        "Ours equals ks_2samp with the same method to 1e-9 (checked before timing). The"
        " default (Kolmogorov limiting distribution) differs from the exact p-value by at"
        f" most {worst_rel * 100:.1f} % (relative) on these windows.",
    ]
    lines += ["", *evaluation_rows(args)]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("ks-speed", text)


def evaluation_rows(args: argparse.Namespace) -> list[str]:
    """The side-by-side timing of one whole evaluation (see the module docstring)."""
    configs = [("numpy", sys.executable, ROOT, "numpy fallback (kernel off)")]
    if ks.NATIVE_KS:
        configs.insert(0, ("native", sys.executable, ROOT, "compiled kernel, one call"))
    if args.baseline_python and args.baseline_root:
        configs.append(
            ("native", args.baseline_python, args.baseline_root, f"baseline {args.baseline_root}")
        )
    seconds: dict[str, list[tuple[float, float, int]]] = {label: [] for *_, label in configs}
    for _ in range(args.rounds):
        for mode, python, root, label in configs:
            seconds[label].append(evaluation_seconds(python, root, mode))
    columns = {c for values in seconds.values() for _, _, c in values}
    lines = [
        "One evaluation of the 23-column window (`ModelMonitor.evaluate`, bench.throughput's"
        f" workload), and its KS part alone ({'/'.join(map(str, sorted(columns)))} KS columns),"
        f" median of 30 per process, {args.rounds} alternating rounds:",
        "",
        "| configuration | evaluation ms, each round | median | KS part ms, each round | median |",
        "|---|---|---:|---|---:|",
    ]
    for label, values in seconds.items():
        whole = [v[0] * 1e3 for v in values]
        part = [v[1] * 1e3 for v in values]
        lines.append(
            f"| {label} | {', '.join(f'{v:.2f}' for v in whole)} | {statistics.median(whole):.2f}"
            f" | {', '.join(f'{v:.2f}' for v in part)} | {statistics.median(part):.2f} |"
        )
    print(json.dumps(seconds))
    return lines


if __name__ == "__main__":
    main()
