"""``monitor report`` beside Evidently's drift report: same two files, same columns, one run.

Run (writes bench/results/report.json and the report section of BENCHMARKS.md)::

    .venv/bin/python -m bench.report_speed --evidently-python /tmp/evenv/bin/python
    .venv/bin/python -m bench.report_speed --quick --no-write

The workload: two CSV files with the same columns, ``--numeric`` numeric and
``--categorical`` categorical features plus a numeric prediction; the reference
has ``--reference-rows`` rows, the current file ``--current-rows`` with two
features drifted. Both tools read the same two files and write one HTML file.

Figures, each the median of ``--repeat`` runs, alternated (ours, Evidently, ours,
...) because this machine's speed swings:

* **command**: wall time of one report from a fresh interpreter (start, imports,
  reading the CSVs, the comparison, writing the HTML): what a CI step pays.
  Ours is ``monitor report``; Evidently's is a script in its own virtualenv that
  reads the CSVs with pandas, runs ``Report([DataDriftPreset()])`` with the
  column types declared, and calls ``save_html``.
* **first report**: the work after the imports (read, compare, write), timed inside
  each process (ours computes KS with the compiled kernel of ``native/``, nothing
  to compile at run time).
* **next report**: the same report again in the same process: what a notebook or a
  batch job pays per further report.
* **imports**: the libraries each imports before any work.
* **HTML size** of the file each wrote.

Evidently lives in its own virtualenv (``python3 -m venv /tmp/evenv &&
/tmp/evenv/bin/pip install evidently 'pandas<3'``), never the project's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "bench" / "results" / "report.json"
START, END = "<!-- report-speed:start -->", "<!-- report-speed:end -->"

_OURS = r"""
import sys, time, json
t0 = time.perf_counter()
import jinja2
import monitor.model_monitor, monitor.report, monitor.ui.views
from monitor.drift_check import DriftCheck
t1 = time.perf_counter()
result = DriftCheck(model="bench").run(sys.argv[1], sys.argv[2])
result.to_html(sys.argv[3])
t2 = time.perf_counter()
again = DriftCheck(model="bench").run(sys.argv[1], sys.argv[2])
again.to_html(sys.argv[3])
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "work_seconds": t2 - t1,
                  "repeat_seconds": t3 - t2, "drifting": sorted(result.drifting)}))
"""

_EVIDENTLY = r"""
import sys, time, json, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import pandas as pd
import evidently
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
ref, cur = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
cats = [c for c in ref.columns if c.startswith("c")]
nums = [c for c in ref.columns if c not in cats]
dd = DataDefinition(numerical_columns=nums, categorical_columns=cats)
snap = Report([DataDriftPreset()]).run(
    reference_data=Dataset.from_pandas(ref, data_definition=dd),
    current_data=Dataset.from_pandas(cur, data_definition=dd),
)
snap.save_html(sys.argv[3])
t2 = time.perf_counter()
snap = Report([DataDriftPreset()]).run(
    reference_data=Dataset.from_pandas(pd.read_csv(sys.argv[1]), data_definition=dd),
    current_data=Dataset.from_pandas(pd.read_csv(sys.argv[2]), data_definition=dd),
)
snap.save_html(sys.argv[3])
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "work_seconds": t2 - t1,
                  "repeat_seconds": t3 - t2, "version": evidently.__version__}))
"""


def write_files(
    folder: Path, n_ref: int, n_cur: int, n_num: int, n_cat: int, seed: int = 5
) -> tuple[Path, Path]:
    """Reference and current CSV files; f00 (mean) and c0 (a new category) drift."""
    rng = np.random.default_rng(seed)
    header = [f"f{j:02d}" for j in range(n_num)] + [f"c{j}" for j in range(n_cat)] + ["prediction"]
    paths = []
    for name, n, drift in (("reference", n_ref, False), ("current", n_cur, True)):
        num = rng.normal(0.0, 1.0, (n, n_num))
        if drift:
            num[:, 0] += 0.5
        cats = rng.choice(["a", "b", "c", "d"], (n, n_cat), p=[0.4, 0.3, 0.2, 0.1])
        if drift:
            cats[rng.uniform(size=n) < 0.1, 0] = "e"
        pred = rng.uniform(size=n)
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i in range(n):
                w.writerow([*(f"{v:.6g}" for v in num[i]), *cats[i], f"{pred[i]:.6g}"])
        paths.append(path)
    return paths[0], paths[1]


def run_one(python: str, script: str, ref: Path, cur: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", script, str(ref), str(cur), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(out.parent),
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    # The process also ran the report a second time (the "next report" figure): not part
    # of what one command costs.
    res["command_seconds"] = wall - res["repeat_seconds"]
    res["html_bytes"] = out.stat().st_size
    return res


def csv_read_seconds(ref: Path, cur: Path) -> float:
    """How long the service's own reader takes over both files (part of our report work)."""
    from monitor.reference import iter_rows

    t0 = time.perf_counter()
    for path in (ref, cur):
        for _ in iter_rows(path):
            pass
    return time.perf_counter() - t0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {
        k: statistics.median(r[k] for r in runs)
        for k in (
            "command_seconds",
            "work_seconds",
            "repeat_seconds",
            "import_seconds",
            "html_bytes",
        )
    }
    out["runs"] = len(runs)
    for k in ("version", "drifting"):
        if k in runs[0]:
            out[k] = runs[0][k]
    return out


def machine() -> dict[str, Any]:
    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "openblas_env": blas or "unset",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    ours_runs: list[dict[str, Any]] = []
    peer_runs: list[dict[str, Any]] = []
    peer_skip: str | None = None
    if not args.evidently_python or not Path(args.evidently_python).exists():
        peer_skip = f"no Evidently interpreter at {args.evidently_python!r}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ref, cur = write_files(
            folder, args.reference_rows, args.current_rows, args.numeric, args.categorical
        )
        sizes = {"reference_csv_bytes": ref.stat().st_size, "current_csv_bytes": cur.stat().st_size}
        read_seconds = csv_read_seconds(ref, cur)
        for i in range(args.repeat):
            ours_runs.append(run_one(sys.executable, _OURS, ref, cur, folder / f"ours{i}.html"))
            if peer_skip is None:
                try:
                    peer_runs.append(
                        run_one(args.evidently_python, _EVIDENTLY, ref, cur, folder / f"ev{i}.html")
                    )
                except RuntimeError as exc:
                    peer_skip = f"Evidently run failed: {exc}"
    return {
        "workload": {
            "reference_rows": args.reference_rows,
            "current_rows": args.current_rows,
            "numeric_features": args.numeric,
            "categorical_features": args.categorical,
            **sizes,
        },
        "ours": {**summarize(ours_runs), "csv_read_seconds": read_seconds},
        "evidently": summarize(peer_runs)
        if peer_runs and peer_skip is None
        else {"skipped": peer_skip},
        "machine": machine(),
        "command": "python -m bench.report_speed " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def table(r: dict[str, Any]) -> str:
    w, o, e = r["workload"], r["ours"], r["evidently"]
    lines = [
        "### Drift report from two files: `monitor report` vs Evidently",
        "",
        f"Two CSV files with the same {w['numeric_features']} numeric + "
        f"{w['categorical_features']} categorical features + a numeric prediction: reference "
        f"{w['reference_rows']:,} rows ({w['reference_csv_bytes'] / 1e6:.1f} MB), current "
        f"{w['current_rows']:,} rows ({w['current_csv_bytes'] / 1e6:.1f} MB); "
        "one HTML file out. Median of "
        f"{o['runs']} runs, ours and Evidently alternated, on one machine "
        f"({r['machine']['cores']} cores, shared). `{r['command']}`, {r['date']}.",
        "",
        "| | command (fresh process) | first report | next report | imports | HTML size |",
        "|---|---|---|---|---|---|",
        f"| `monitor report` (ours) | {o['command_seconds']:.2f} s | {o['work_seconds']:.2f} s "
        f"| {o['repeat_seconds']:.2f} s | {o['import_seconds']:.2f} s "
        f"| {o['html_bytes'] / 1e3:,.0f} kB |",
    ]
    if "skipped" in e:
        lines.append(f"| Evidently | skipped: {e['skipped']} | | | | |")
    else:
        lines.append(
            f"| Evidently {e['version']} `DataDriftPreset` | {e['command_seconds']:.2f} s | "
            f"{e['work_seconds']:.2f} s | {e['repeat_seconds']:.2f} s | "
            f"{e['import_seconds']:.2f} s | {e['html_bytes'] / 1e3:,.0f} kB |"
        )
        lines += [
            "",
            "Ratios (Evidently / ours): command "
            f"{e['command_seconds'] / o['command_seconds']:.1f}x, next report "
            f"{e['repeat_seconds'] / o['repeat_seconds']:.1f}x, HTML size "
            f"{e['html_bytes'] / o['html_bytes']:.0f}x. Ours flagged "
            f"{', '.join(o['drifting']) or 'nothing'} (drift was injected into f00 and c0). "
            f"Of our report work, {o['csv_read_seconds']:.2f} s is reading the two CSV files "
            "with the service's reader (`monitor.reference.iter_rows`: Python's csv module "
            "and a number-or-text test per cell, the price of reading references exactly as "
            "the service does); Evidently reads them with pandas' C parser. Our report "
            "inlines uPlot (51 kB) and opens offline.",
        ]
    return "\n".join(lines)


def write_benchmarks(text: str) -> None:
    """Replace only our marked section of BENCHMARKS.md (read, modify, write once)."""
    section = f"{START}\n{text}\n{END}"
    old = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if START in old and END in old:
        new = old[: old.index(START)] + section + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n## Drift report from files\n\n" + section + "\n"
    BENCHMARKS.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--evidently-python", default="/tmp/evenv/bin/python")
    p.add_argument("--reference-rows", type=int, default=100_000)
    p.add_argument("--current-rows", type=int, default=20_000)
    p.add_argument("--numeric", type=int, default=20)
    p.add_argument("--categorical", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a small workload, one run")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.quick:
        args.reference_rows, args.current_rows, args.numeric, args.categorical = 2000, 500, 3, 1
        args.repeat = 1
    result = run(args)
    text = table(result)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1))
        write_benchmarks(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
