"""The rank-bucket design of issue 19, measured against today's sort-and-merge KS.

Issue 19 proposed evaluating KS from reference rank buckets instead of sorting each window:
map every entering value once to its bucket among the reference's ``k`` sorted unique values
(``2k + 1`` buckets: each value and each open interval between neighbours), keep per-bucket
counts of the window (add the entering step, subtract the leaving one), and read the exact
statistic from one pass over the prefix sums. This script times both, side by side, on
``bench.throughput``'s shape (21 numeric columns, window 5,000, step 1,000, reference 10,000),
in alternating rounds (the machine is shared), and checks that both give the same statistic.

Parts of one step (all 21 columns), as timed:

* today: ``np.sort`` of each window (the sort the summaries also read) and the compiled KS
  kernel over all columns in one call (``ks_statistics_sorted``);
* rank buckets: ``np.searchsorted`` of the entering values against the unique reference values
  (numpy's C loop: what a compiled version would do too), the bucket-count update for the
  entering and leaving steps, and the statistic from the counts (numpy prefix sums: an upper
  bound of a compiled single pass). ``searchsorted`` is reported alone as well: it is the part
  no kernel can avoid, so if it alone costs about the sort it replaces, the design cannot win.

Two reference shapes: continuous values (``k`` = 10,000, the throughput workload) and heavy
ties (values rounded to 0.5: ``k`` about 20), where buckets are few.

    .venv/bin/python -m bench.rank_buckets [--rounds 7] [--steps 30]

Prints a table; writes nothing (the figures go to BENCHMARKS.md by hand, with the command).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from monitor.detectors.ks import ks_statistics_sorted

COLUMNS, REFERENCE, WINDOW, STEP = 21, 10_000, 5_000, 1_000


class RankBuckets:
    """One column's window as counts over the reference's rank buckets."""

    def __init__(self, reference: np.ndarray) -> None:
        self.unique, ref_counts = np.unique(reference, return_counts=True)
        self.k = self.unique.size
        self.m = reference.size
        self.ref_le = np.cumsum(ref_counts) / self.m  # R_j / m: reference share <= u_j
        self.ref_lt = np.concatenate(([0.0], self.ref_le[:-1]))  # R_{j-1} / m: share < u_j
        self.counts = np.zeros(2 * self.k + 1, dtype=np.int64)

    def buckets(self, values: np.ndarray) -> np.ndarray:
        """Bucket ``2j + 1`` for a value equal to ``u_j``, ``2j`` for one strictly between
        ``u_{j-1}`` and ``u_j`` (``2k`` above the largest). The step's values are sorted
        first (the ring needs only their multiset): numpy's binary search then starts each
        key from the last one's place, about three times faster than on unsorted keys."""
        values = np.sort(values)
        idx = np.searchsorted(self.unique, values, side="left")
        hit = self.unique[np.minimum(idx, self.k - 1)] == values
        return 2 * idx + hit

    def update(self, entering: np.ndarray, leaving: np.ndarray | None) -> None:
        self.counts += np.bincount(entering, minlength=self.counts.size)
        if leaving is not None:
            self.counts -= np.bincount(leaving, minlength=self.counts.size)

    def statistic(self) -> float:
        """``max_j max(|A_j/n - R_j/m|, |B_j/n - R_{j-1}/m|)``, A and B prefix sums."""
        cum = np.cumsum(self.counts)
        n = cum[-1]
        at_or_below = cum[1::2] / n  # A_j / n: window share <= u_j
        below = cum[0:-1:2] / n  # B_j / n: window share < u_j
        return float(
            max(np.abs(at_or_below - self.ref_le).max(), np.abs(below - self.ref_lt).max())
        )


def _stream(rng: np.random.Generator, ties: bool, steps: int) -> tuple[list, np.ndarray]:
    refs = [rng.normal(size=REFERENCE) for _ in range(COLUMNS)]
    data = rng.normal(0.05, 1.0, size=(COLUMNS, WINDOW + steps * STEP))
    if ties:
        refs = [np.round(r * 2) / 2 for r in refs]
        data = np.round(data * 2) / 2
    return refs, data


def _today(refs: list[np.ndarray], data: np.ndarray, steps: int) -> tuple[float, list[float]]:
    sorted_refs = [np.sort(r) for r in refs]
    t0 = time.process_time()
    last: list[float] = []
    for s in range(steps):
        end = WINDOW + (s + 1) * STEP  # the window after the step, as _ranks holds it
        windows = [np.sort(data[c, end - WINDOW : end]) for c in range(COLUMNS)]
        last = ks_statistics_sorted(sorted_refs, windows)
    return (time.process_time() - t0) / steps, last


def _ranks(
    refs: list[np.ndarray], data: np.ndarray, steps: int, search_only: bool
) -> tuple[float, list[float]]:
    cols = [RankBuckets(r) for r in refs]
    rings = []
    for c, rb in enumerate(cols):  # the first window, untimed
        first = [rb.buckets(data[c, i : i + STEP]) for i in range(0, WINDOW, STEP)]
        for b in first:
            rb.update(b, None)
        rings.append(first)
    t0 = time.process_time()
    last: list[float] = []
    for s in range(steps):
        start = WINDOW + s * STEP
        last = []
        for c, rb in enumerate(cols):
            entering = rb.buckets(data[c, start : start + STEP])
            if search_only:
                continue
            rb.update(entering, rings[c].pop(0))
            rings[c].append(entering)
            last.append(rb.statistic())
    return (time.process_time() - t0) / steps, last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    print(
        f"{COLUMNS} columns, reference {REFERENCE:,}, window {WINDOW:,}, step {STEP:,}; "
        f"CPU ms per step (all columns), median (range) of {args.rounds} alternating rounds"
    )
    print(
        "| reference | today: sort + KS kernel | rank buckets: whole step | "
        "of which sort and searchsorted of the step | max abs difference of D |"
    )
    print("|---|---:|---:|---:|---:|")
    for ties in (False, True):
        refs, data = _stream(np.random.default_rng(19), ties, args.steps)
        runs: dict[str, list[float]] = {"today": [], "ranks": [], "search": []}
        diff = 0.0
        for _ in range(args.rounds):
            results = {}
            for name in runs:
                if name == "today":
                    seconds, d = _today(refs, data, args.steps)
                else:
                    seconds, d = _ranks(refs, data, args.steps, search_only=name == "search")
                runs[name].append(seconds * 1e3)
                results[name] = d
            diff = max(
                diff,
                max(abs(a - b) for a, b in zip(results["today"], results["ranks"], strict=True)),
            )
        k = int(np.mean([np.unique(r).size for r in refs]))
        cells = [
            f"{np.median(v):.2f} ({min(v):.2f} to {max(v):.2f})"
            for v in (runs["today"], runs["ranks"], runs["search"])
        ]
        shape = "heavy ties" if ties else "continuous"
        print(f"| {shape}, k about {k:,} | {' | '.join(cells)} | {diff:.1e} |")


if __name__ == "__main__":
    main()
