"""Detection at a smaller reference sample (``reference.max_sample``): what the memory costs.

Run: ``.venv/bin/python -m bench.sample_size [--sizes 10000 5000 2500] [--repeats 3]``.

A numeric feature's reference sample is its largest memory holder (``max_sample`` float64
values, 78 KiB at the default 10,000; see BENCHMARKS.md, "Memory per (model, feature)").
This runs streams of :mod:`bench.detection_quality` (the real pipeline core at default
settings: window 5,000, step 1,000, reference of 10,000 events) with the reference profile
built at each ``max_sample`` instead of the default, and prints the delay, misses and false
alarms per size. The profile builder of that module is wrapped for the run (a diagnostic:
the module takes no sample size of its own); everything else is as it runs it.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

from bench import detection_quality as dq

STREAMS: tuple[tuple[str, int, int | None], ...] = (
    ("stationary", 200_000, None),
    ("mean +0.25 sigma", 30_000, 10_000),
    ("mean +0.5 sigma", 30_000, 10_000),
    ("RBF abrupt", 30_000, 10_000),
)


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 5_000, 2_500])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    original = dq.build_profile
    lines = [
        "| max_sample | stream | runs x events | median / max delay | missed | false alarms |",
        "|---|---|---|---:|---:|---:|",
    ]
    try:
        for size in args.sizes:
            dq.build_profile = functools.partial(original, max_sample=size)  # type: ignore[assignment]
            for name, n, change in STREAMS:
                t0 = time.perf_counter()
                runs = [
                    dq.run_one(name, n, change, seed=1 + s)
                    for s in range(1 if change is None else args.repeats)
                ]
                delays = [r.ours_delay for r in runs if r.ours_delay is not None]
                median = f"{statistics.median(delays):,.0f}" if delays else "-"
                worst = f"{max(delays):,}" if delays else "-"
                missed = "n/a" if change is None else str(len(runs) - len(delays))
                lines.append(
                    f"| {size:,} | {name} | {len(runs)} x {n:,} | {median} / {worst} | {missed} "
                    f"| {sum(r.ours_false for r in runs)} |"
                )
                print(lines[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        dq.build_profile = original  # type: ignore[assignment]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
