"""Where one evaluation's time goes, stage by stage, optionally against another checkout.

Run: ``.venv/bin/python -m bench.evaluation [--repeat N] [--against DIR] [--rounds R]
[--slide ROWS]``.

Builds the single-model workload of :mod:`bench.throughput` (23 columns, window 5,000,
step 1,000, reference 10,000), fills the window through ``MonitorService.process``, then
calls ``ModelMonitor.evaluate`` ``--repeat`` times with the stage functions wrapped by
timers (as :mod:`bench.stages` does) and prints the median wall and CPU time of one
evaluation, unwrapped, and the mean CPU time per evaluation of every stage (wrapped). CPU
time of the thread, because the machine is shared: wall time there counts other processes'
turns. Nested stages are included in
their parents. The stream detectors' feed (ADWIN's updates) is not in it: repeated
evaluations of one window have nothing new to feed (``bench.stages`` shows it per event).
With ``--slide ROWS`` (say the step, 1,000) the window slides by that many rows before
each evaluation, untimed: what an evaluation keeps from the previous one (the PCA errors
of unchanged rows, the validation's unchanged quiet signals) is then kept only as a
stream would let it; without it, every evaluation is of the very same window.

``--memory`` prints instead what one model's state holds (its numpy arrays by owner)
and the RSS growth per (model, feature) of the 50-model workload. That growth divides
everything the run adds by the 1,050 columns, including what one process pays once
(modules imported on first use, the allocator's arenas) and excluding the references
(built before the first reading); so it also prints the marginal cost: the RSS growth,
references included, of 50 models less that of 1 model, each in a fresh interpreter,
divided by the columns the 49 models add.

``--against DIR`` runs the same measurement on the code of another checkout (say ``main``
exported with ``git archive main | tar -x -C DIR``), each side in its own interpreter,
alternating ``--rounds`` times (the machine is shared and noisy: side by side in one run),
and prints both columns. ``--against-python PY`` runs that side with another interpreter
(say the virtualenv where that checkout's ``native/`` is installed), so that each side
uses its own compiled kernels; by default both use this one. A diagnostic for
development; it writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: (module, attribute owner, attribute, label); the owner is a dotted path inside the module.
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("monitor.evaluation", "", "summarize_numeric", "numeric summaries (incl. the sort)"),
    ("monitor.evaluation", "", "summarize_categorical", "categorical summaries"),
    ("monitor.detectors.ks", "KSDetector", "evaluate_sorted", "KS (22 columns)"),
    # Since the compiled kernel, an evaluation's KS columns go in one call (a classmethod).
    ("monitor.detectors.ks", "KSDetector", "evaluate_sorted_batch", "KS (22 columns)"),
    ("monitor.detectors.psi", "PSIDetector", "evaluate_sorted", "PSI numeric (22 columns)"),
    # Since the compiled kernel, an evaluation's numeric PSI columns go in one call.
    ("monitor.detectors.psi", "PSIDetector", "evaluate_sorted_batch", "PSI numeric (22 columns)"),
    ("monitor.detectors.psi", "PSIDetector", "evaluate", "PSI categorical (2 columns)"),
    ("monitor.detectors.chi_square", "ChiSquareDetector", "evaluate", "chi-square (2 columns)"),
    ("monitor.detectors.streaming", "StreamDetector", "evaluate", "ADWIN evaluate (22)"),
    ("monitor.multivariate", "MultivariateMonitor", "evaluate", "multivariate (PCA)"),
    ("monitor.drift", "DriftTracker", "observe", "drift tracker (correction, verdicts)"),
    ("monitor.model_monitor", "", "drift_signals", "signals"),
    ("monitor.validation", "Validator", "evaluate", "validation checks"),
)


def _timed(
    fn: Callable[..., Any], key: str, spent: Counter[str], running: set[str]
) -> Callable[..., Any]:
    """``fn`` timed into ``spent[key]``; a call inside another of the same stage (a batch
    falling back to its single-job method) is counted once, by the outer one."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if key in running:
            return fn(*args, **kwargs)
        running.add(key)
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += time.thread_time() - t0
            running.discard(key)

    return wrapper


def _owner(module: str, owner: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in filter(None, owner.split(".")):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _slider(mm: Any, step: int) -> Callable[[], None]:
    """Slides ``mm``'s window by ``step`` rows before an evaluation: the rows written are
    copies of rows at another place of the window (same distribution, new at their place),
    so that what an evaluation can keep from the previous one is what a stream would let
    it keep; the detectors' own state is not fed."""
    w = mm.window
    turn = [0]

    def slide() -> None:
        turn[0] += 1
        at = (turn[0] * 2 * step + step // 3) % (w.capacity - step)
        rows = slice(at, at + step)
        w.append(
            w.numeric()[rows].copy(), w.categorical()[rows].copy(), w.timestamps()[rows].copy()
        )

    return slide


def measure(repeat: int, slide: int = 0) -> dict[str, Any]:
    """One side: median ms of an unwrapped evaluation, then ms per evaluation by stage;
    with ``slide``, the window slides by that many rows before each evaluation (untimed),
    else every evaluation is of the same window."""
    from bench import throughput as t
    from monitor.detectors import ks

    ks.warm_up()
    msgs = t.raw_messages(t.generate(t.SINGLE, 40_000, 1, drift_from=20_000))
    run = asyncio.run(t.run_in_process(t.SINGLE, msgs, 20_000, t.references(t.SINGLE)))
    mm = run["_service"].models["m00"]
    before = _slider(mm, slide) if slide else lambda: None
    for _ in range(5):
        before()
        mm.evaluate()
    times, cpu = [], []
    for _ in range(repeat):
        before()
        t0, c0 = time.perf_counter(), time.thread_time()
        mm.evaluate()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    spent: Counter[str] = Counter()
    running: set[str] = set()
    wrapped = []
    for module, owner, name, label in STAGES:
        obj = _owner(module, owner)
        if obj is None or name not in vars(obj):
            continue
        wrapped.append((obj, name, inspect.getattr_static(obj, name)))  # a classmethod stays one
        setattr(obj, name, _timed(getattr(obj, name), label, spent, running))
    try:
        total = 0.0
        for _ in range(repeat):
            before()
            t0 = time.perf_counter()
            mm.evaluate()
            total += time.perf_counter() - t0
    finally:
        for obj, name, fn in wrapped:
            setattr(obj, name, fn)
    return {
        "evaluate_median_ms": statistics.median(times) * 1e3,
        "evaluate_min_ms": min(times) * 1e3,
        "evaluate_cpu_median_ms": statistics.median(cpu) * 1e3,
        "wrapped_total_ms": total / repeat * 1e3,
        "stages_ms": {label: spent[label] / repeat * 1e3 for *_, label in STAGES},
    }


def _arrays(obj: Any, path: str, seen: set[int], out: dict[str, int], depth: int = 0) -> None:
    """Bytes of the numpy arrays reachable from ``obj`` (owning arrays only), by owner path;
    a feature's name is folded into ``*`` so that the features of a model add up."""
    import numpy as np

    if id(obj) in seen or depth > 8 or isinstance(obj, str | bytes | int | float | bool):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        out[path] = out.get(path, 0) + (obj.nbytes if obj.base is None else 0)
        return
    if isinstance(obj, dict):
        items = [
            (k if not (isinstance(k, str) and k[:1] in "fc" and len(k) <= 3) else "*", v)
            for k, v in obj.items()
        ]
    elif isinstance(obj, list | tuple | set | frozenset):
        items = [("[]", v) for v in obj]
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).items())
    elif hasattr(obj, "__slots__"):
        items = [(n, getattr(obj, n, None)) for n in obj.__slots__]
    else:
        return
    for key, value in items:
        _arrays(value, f"{path}{key}" if key == "[]" else f"{path}.{key}", seen, out, depth + 1)


def memory() -> dict[str, Any]:
    """What one model's state holds (numpy arrays by owner; single-model workload), and
    the RSS growth per (model, feature) of the 50-model workload after 300,000 events."""
    import gc

    from bench import throughput as t
    from monitor.detectors import ks

    ks.warm_up()
    # The RSS part first, in a fresh interpreter's heap (a heap already grown and freed by
    # another run would hide part of the growth).
    msgs = t.raw_messages(t.generate(t.SCALE, 60_000, 2, drift_from=30_000))
    refs = t.references(t.SCALE)
    gc.collect()
    before = t.rss_bytes()
    scale = asyncio.run(t.run_in_process(t.SCALE, msgs, 300_000, refs))
    gc.collect()
    per = (t.rss_bytes() - before) / scale["columns"]
    del scale, msgs, refs
    msgs = t.raw_messages(t.generate(t.SINGLE, 20_000, 1, drift_from=10_000))
    run = asyncio.run(t.run_in_process(t.SINGLE, msgs, 10_000, t.references(t.SINGLE)))
    held: dict[str, int] = {}
    _arrays(run["_service"].models["m00"], "model", set(), held)
    columns = run["columns"]
    one, many = (_fresh("_rss_growth", models) for models in (1, t.SCALE.models))
    marginal = (many["growth"] - one["growth"]) / (many["columns"] - one["columns"])
    return {
        "columns": columns,
        "held_bytes": held,
        "rss_per_model_feature_bytes": per,
        "rss_growth_1_model_bytes": one["growth"],
        "rss_growth_50_models_bytes": many["growth"],
        "rss_marginal_per_model_feature_bytes": marginal,
    }


def _rss_growth(models: int) -> dict[str, int]:
    """RSS growth of ``models`` models of the 50-model workload's shape (6,000 events
    each: the window full, evaluations done), references built after the first reading."""
    import gc

    from bench import throughput as t
    from monitor.detectors import ks

    ks.warm_up()
    w = t.Workload(models, t.SCALE.numeric, t.SCALE.categorical)
    msgs = t.raw_messages(t.generate(w, 60_000, 2, drift_from=30_000))
    gc.collect()
    before = t.rss_bytes()
    run = asyncio.run(t.run_in_process(w, msgs, 6_000 * models, t.references(w)))
    gc.collect()
    return {"growth": t.rss_bytes() - before, "columns": run["columns"]}


def _fresh(name: str, *args: Any) -> Any:
    """This file's function ``name`` called in a fresh interpreter (its own heap)."""
    code = (
        "import json, runpy; "
        f"f = runpy.run_path({str(Path(__file__).resolve())!r})[{name!r}]; "
        f"print(json.dumps(f(*{list(args)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=os.getcwd(), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _side(path: Path, repeat: int, slide: int, python: str = sys.executable) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter (``python``) that imports ``monitor`` and
    ``bench`` from ``path`` (this file's own code is run from here: the other checkout may
    not have it)."""
    env = dict(os.environ, PYTHONPATH=str(path))
    code = (
        "import json, runpy; "
        f"m = runpy.run_path({str(Path(__file__).resolve())!r})['measure']; "
        f"print(json.dumps(m({repeat}, {slide})))"
    )
    out = subprocess.run(
        [python, "-c", code], cwd=path, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument(
        "--against-python", default=sys.executable, help="the interpreter of the --against side"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="what the state holds, instead")
    parser.add_argument(
        "--slide", type=int, default=0, help="rows the window slides by before each evaluation"
    )
    args = parser.parse_args(argv)
    if args.memory:
        m = memory()
        print(f"numpy arrays held by one model ({m['columns']} columns), KiB, by owner:")
        for owner, n in sorted(m["held_bytes"].items(), key=lambda kv: -kv[1]):
            if n >= 1024:
                print(f"  {n / 1024:9.1f}  {owner}")
        total = sum(m["held_bytes"].values())
        print(f"  {total / 1024:9.1f}  total ({total / m['columns'] / 1024:.1f} per column)")
        print(
            "RSS growth per (model, feature), 50 models x 20 columns, 300,000 events: "
            f"{m['rss_per_model_feature_bytes'] / 1024:.1f} KiB"
        )
        print(
            "RSS growth, references included: 1 model "
            f"{m['rss_growth_1_model_bytes'] / 2**20:.1f} MiB, 50 models "
            f"{m['rss_growth_50_models_bytes'] / 2**20:.1f} MiB; marginal per (model, "
            f"feature): {m['rss_marginal_per_model_feature_bytes'] / 1024:.1f} KiB"
        )
        return m
    if args.against is None:
        r = measure(args.repeat, args.slide)
        print(
            f"evaluate: wall median {r['evaluate_median_ms']:.2f} ms, min "
            f"{r['evaluate_min_ms']:.2f}; CPU (this thread) median "
            f"{r['evaluate_cpu_median_ms']:.2f} ms\nby stage, CPU ms per evaluation:"
        )
        for label, ms in r["stages_ms"].items():
            print(f"  {label:42s} {ms:6.3f} ms")
        return r
    sides: dict[str, list[dict[str, Any]]] = {"this": [], "against": []}
    for _ in range(args.rounds):
        against = _side(args.against.resolve(), args.repeat, args.slide, args.against_python)
        sides["against"].append(against)
        sides["this"].append(_side(ROOT, args.repeat, args.slide))

    flat = {
        side: [
            {
                "evaluate, median": r["evaluate_median_ms"],
                "evaluate, min": r["evaluate_min_ms"],
                "evaluate, CPU median": r["evaluate_cpu_median_ms"],
            }
            | r["stages_ms"]
            for r in runs
        ]
        for side, runs in sides.items()
    }
    print(f"median over {args.rounds} alternating rounds of {args.repeat} evaluations, ms\n")
    print(f"| ms per evaluation (stages: CPU) | {args.against} | this checkout |\n|---|---|---|")
    for label in flat["this"][0]:
        a = statistics.median(r.get(label, 0.0) for r in flat["against"])
        b = statistics.median(r.get(label, 0.0) for r in flat["this"])
        print(f"| {label} | {a:.3f} | {b:.3f} |")
    return sides


if __name__ == "__main__":
    main()
