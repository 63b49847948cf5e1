"""Detection quality of the service's drift detection at default settings, vs river ADWIN alone.

Run: ``.venv/bin/python -m bench.detection_quality [--quick] [--repeats N] [--no-write]``.
Prints a markdown table and writes it, with the command and the machine, into the
``detection-quality`` section of BENCHMARKS.md.

What is measured is what the service does: every stream goes through the real
pipeline core, a :class:`monitor.model_monitor.ModelMonitor` built by
``monitor.config.parse_config`` with *default* window (5000 events, step 1000) and
*default* ``DriftConfig``, a reference profile from ``monitor.reference.build_profile``
on 10,000 events, fed :class:`monitor.events.ModelEvents` batches of 1000 events.
A model has 20 features: 19 numeric and one categorical (5 categories).

Streams, each with one known change point (after the first evaluations):

* ``stationary``: no change, 1,000,000 events (false alarms per million events);
* ``mean +k sigma``: a mean shift of k = 0.25, 0.5, 1 standard deviations in one
  numeric feature of twenty (injected, so the size is controlled);
* ``mean +0.25 sigma, 2,000 then back``: the same shift for 2,000 events only, then the
  feature is back at the reference to the end (50,000 events): one incident, which must
  resolve and not re-open when the stream returns (``re-opened`` column);
* ``category share x2``: category 0's share doubles (0.2 to 0.4, others scaled down);
* ``RBF abrupt`` / ``RBF gradual``: from one river ``RandomRBF`` generator to another
  (other centroids: every numeric feature's distribution moves); gradual is river's
  ``ConceptDriftStream`` with ``width`` 5000 (delay counted from the centre of the
  transition, where river positions it, so it can be negative; an incident counts as
  false only before the transition's onset, centre - width, where 1.8 % of values
  already come from the new generator); abrupt switches generators at the change point
  (``ConceptDriftStream`` with ``width=1`` overflows ``math.exp`` in river 0.26).

river's ``FriedmanDrift`` is not used: its drifts change how the target depends on
the features, never the features' distribution, so input monitoring cannot see them
(that is what performance tracking on delayed labels is for).

Metrics per stream type (over repeats with different seeds):

* delay: events from the change point to the first evaluation at which the changed
  feature (any numeric feature for RBF) is *drifting* in the DriftTracker;
* missed: runs where that never happened before the stream ended;
* false alarms: incidents (a feature turning *drifting*) on an unchanged feature, or on
  any feature before the change point;
* re-opened: incidents on a changed feature after its first one (a drift that ends must
  be one incident).

Performance incidents (``--performance`` table, also printed by a full run): a model
with one feature and performance tracking on (``task`` regression or binary, defaults
otherwise), its predictions and their labels fed through the same core, labels one
batch after their predictions, every evaluation's signals through the alert policy
(:func:`monitor.alerting.policy.decide`, default rules, grouped by kind); only the
performance group is counted. Streams: stationary (1,000,000 labelled events: pages
per million), and worse from event 60,000 to 105,000 (regression: target moved by
3.4, MAE 2.05 -> 3.6; binary: accuracy 0.9 -> 0.75) then recovered, 130,000 events:
when the incident opened, whether it stayed open through the bad period, when it
closed after the recovery, and any other incident.

ADWIN alone: one river ``ADWIN()`` (default ``delta=0.002``) per feature, fed the
reference events then the stream, value by value (for the categorical feature: the
indicator of category 0). Its delay is reported at its own resolution (the value at
which it fires) and rounded up to the next evaluation point, which is the earliest a
service evaluating every 1000 events could report it. Evidently is not installed in
this environment, so it is not compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from river import drift as river_drift
from river.datasets import synth

from bench import command_line, machine_info, write_section
from monitor.config import parse_config
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile

N_NUMERIC = 19
NUMERIC = [f"f{j:02d}" for j in range(N_NUMERIC)]
CATEGORICAL = "segment"
SCHEMA: dict[str, str] = {**dict.fromkeys(NUMERIC, "numeric"), CATEGORICAL: "categorical"}
CATEGORY_P = np.array([0.2, 0.3, 0.25, 0.15, 0.1])
CATEGORY_NAMES = np.array(["a", "b", "c", "d", "e"])
N_REF = 10_000
BATCH = 1_000
MODEL = "bench-model"


@dataclass
class Stream:
    """Numeric matrix, category codes, change point (None = stationary), changed features."""

    x: np.ndarray
    cats: np.ndarray
    change: int | None
    targets: frozenset[str]
    onset: int | None = None  # gradual: where the transition starts (default: the change)


@dataclass
class RunResult:
    ours_delay: int | None
    ours_false: int
    adwin_delay: int | None
    adwin_false: int
    events: int
    seconds: float
    ours_reopened: int = 0


@dataclass
class Row:
    scenario: str
    runs: list[RunResult] = field(default_factory=list)


def _categories(n: int, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(CATEGORY_P.size, size=n, p=p)


def injected_stream(scenario: str, n: int, change: int | None, seed: int) -> Stream:
    """Gaussian features (various means and scales) with a controlled change at ``change``."""
    rng = np.random.default_rng(seed)
    loc = np.linspace(-2.0, 2.0, N_NUMERIC)
    scale = np.linspace(0.5, 3.0, N_NUMERIC)
    x = rng.normal(loc, scale, size=(n, N_NUMERIC))
    at = n if change is None else change
    p_after = CATEGORY_P.copy()
    targets: frozenset[str] = frozenset()
    if scenario.startswith("mean"):
        k = float(scenario.split("+")[1].split()[0])
        until = at + 2_000 if scenario.endswith("then back") else n
        x[at:until, 0] += k * scale[0]
        targets = frozenset({NUMERIC[0]})
    elif scenario == "category share x2":
        p_after[0] *= 2
        p_after[1:] *= (1 - p_after[0]) / p_after[1:].sum()
        targets = frozenset({CATEGORICAL})
    cats = np.concatenate(
        [_categories(at, CATEGORY_P, rng), _categories(n - at, p_after, rng)]
    ).astype(np.int64)
    return Stream(x, cats, change, targets)


def rbf_stream(n: int, change: int, width: int, seed: int) -> Stream:
    """river ConceptDriftStream between two RandomRBF generators (different centroids)."""
    before = synth.RandomRBF(seed_model=seed, seed_sample=seed + 1, n_features=N_NUMERIC)
    after = synth.RandomRBF(seed_model=seed + 1000, seed_sample=seed + 2, n_features=N_NUMERIC)
    if width > 1:
        gradual = synth.ConceptDriftStream(
            stream=before, drift_stream=after, position=change, width=width, seed=seed
        )
        samples = [xi for xi, _ in gradual.take(n)]
    else:
        # river's ConceptDriftStream overflows math.exp for width 1 far from the change
        # point (river 0.26), so the abrupt switch is done here: same two generators.
        samples = [xi for xi, _ in before.take(change)] + [xi for xi, _ in after.take(n - change)]
    x = np.array([[xi[j] for j in range(N_NUMERIC)] for xi in samples])
    cats = _categories(n, CATEGORY_P, np.random.default_rng(seed)).astype(np.int64)
    return Stream(x, cats, change, frozenset(NUMERIC))


def _rows(x: np.ndarray, cats: np.ndarray) -> list[dict[str, object]]:
    names = CATEGORY_NAMES[cats].tolist()
    out = []
    for values, cat in zip(x.tolist(), names, strict=True):
        row: dict[str, object] = dict(zip(NUMERIC, values, strict=True))
        row[CATEGORICAL] = cat
        out.append(row)
    return out


def _batches(x: np.ndarray, cats: np.ndarray, start: int) -> Iterator[ModelEvents]:
    for lo in range(0, len(x), BATCH):
        hi = min(lo + BATCH, len(x))
        rows = _rows(x[lo:hi], cats[lo:hi])
        ev = ModelEvents(MODEL)
        ev.event_ids.extend(str(start + i) for i in range(lo, hi))
        ev.timestamps.extend(float(start + i) for i in range(lo, hi))
        ev.versions.extend([None] * (hi - lo))
        ev.features.extend(rows)
        ev.predictions.extend([None] * (hi - lo))
        yield ev


def build_monitor(ref_x: np.ndarray, ref_cats: np.ndarray, rate: float = 1.0) -> ModelMonitor:
    """The service's core with every setting at its default (window, drift config), and
    ``sample: {rate}``."""
    model = {"name": MODEL, "features": SCHEMA, "prediction": "none", "sample": {"rate": rate}}
    cfg = parse_config({"models": [model]}, env={})
    settings = cfg.model(MODEL)
    assert settings is not None
    profile = build_profile(
        MODEL, [(r, None) for r in _rows(ref_x, ref_cats)], schema=SCHEMA, prediction="none"
    )  # type: ignore[arg-type]
    return ModelMonitor(settings, cfg.limits, profile)


def run_ours(
    stream: Stream,
    ref_x: np.ndarray,
    ref_cats: np.ndarray,
    rate: float = 1.0,
    batches: Iterator[ModelEvents] | None = None,
) -> tuple[int | None, int, int]:
    """(delay, false alarms, re-opened incidents) of the real pipeline core on one stream."""
    mm = build_monitor(ref_x, ref_cats, rate)
    change = stream.change
    onset = stream.onset if stream.onset is not None else change
    drifting: dict[str, bool] = {}
    delay: int | None = None
    false_alarms = reopened = 0
    opened: set[str] = set()  # changed features with an incident since the change
    for ev in batches if batches is not None else _batches(stream.x, stream.cats, 0):
        for evaluation in mm.ingest(ev):
            at = evaluation.context.events_total
            for name, verdict in evaluation.verdicts.items():
                started = verdict.drifting and not drifting.get(name, False)
                drifting[name] = verdict.drifting
                if not started:
                    continue
                if change is not None and onset is not None and at > onset:
                    if name in stream.targets:
                        if name in opened:
                            reopened += 1
                        opened.add(name)
                        if delay is None:
                            delay = at - change
                    else:
                        false_alarms += 1
                else:
                    false_alarms += 1
    return delay, false_alarms, reopened


def run_adwin(stream: Stream, ref_x: np.ndarray, ref_cats: np.ndarray) -> tuple[int | None, int]:
    """(delay in values, false alarms) of river's ADWIN alone, one per feature, default delta."""
    change = stream.change
    onset = stream.onset if stream.onset is not None else change
    delay: int | None = None
    false_alarms = 0
    columns = [(NUMERIC[j], ref_x[:, j], stream.x[:, j]) for j in range(N_NUMERIC)]
    columns.append((CATEGORICAL, (ref_cats == 0) * 1.0, (stream.cats == 0) * 1.0))
    for name, ref, live in columns:
        detector = river_drift.ADWIN()
        for value in ref.tolist():
            detector.update(value)
        for i, value in enumerate(live.tolist()):
            detector.update(value)
            if not detector.drift_detected:
                continue
            if change is not None and onset is not None and i >= onset:
                if name in stream.targets:
                    d = i - change + 1
                    delay = d if delay is None else min(delay, d)
                else:
                    false_alarms += 1
            else:
                false_alarms += 1
    return delay, false_alarms


def reference(seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "rbf":
        s = rbf_stream(N_REF, N_REF + 1, 1, seed)
        return s.x, s.cats
    s = injected_stream("stationary", N_REF, None, seed)
    return s.x, s.cats


def run_one(scenario: str, n: int, change: int | None, seed: int) -> RunResult:
    t0 = time.perf_counter()
    if scenario.startswith("RBF"):
        width = 1 if "abrupt" in scenario else 5_000
        # one RBF stream: its first N_REF values are the reference, the rest is live
        assert change is not None
        full = rbf_stream(N_REF + n, N_REF + change, width, seed)
        ref_x, ref_c = full.x[:N_REF], full.cats[:N_REF]
        onset = change - width if width > 1 else change
        stream = Stream(full.x[N_REF:], full.cats[N_REF:], change, full.targets, onset)
    else:
        ref_x, ref_c = reference(seed + 10_000, "injected")
        stream = injected_stream(scenario, n, change, seed)
    ours_delay, ours_false, reopened = run_ours(stream, ref_x, ref_c)
    adwin_delay, adwin_false = run_adwin(stream, ref_x, ref_c)
    seconds = time.perf_counter() - t0
    return RunResult(ours_delay, ours_false, adwin_delay, adwin_false, n, seconds, reopened)


def _at_cadence(delay: int, change: int) -> int:
    """First evaluation point (a multiple of BATCH from the window size on) at or after it."""
    fired = change + delay
    return -(-fired // BATCH) * BATCH - change


def _stat(values: list[int]) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return f"{statistics.median(values):,.0f}", f"{max(values):,}"


def table(rows: list[Row], changes: dict[str, int | None]) -> str:
    lines = [
        "| stream | runs x events | ours: median / max delay | ours: missed "
        "| ours: false alarms (per M events) | ADWIN alone: median / max delay "
        "| ADWIN at cadence: median | ADWIN: missed | ADWIN: false alarms (per M events) "
        "| ours: re-opened |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        runs = row.runs
        change = changes[row.scenario]
        events = sum(r.events for r in runs)
        ours = [r.ours_delay for r in runs if r.ours_delay is not None]
        adwin = [r.adwin_delay for r in runs if r.adwin_delay is not None]
        ours_fa = sum(r.ours_false for r in runs)
        adwin_fa = sum(r.adwin_false for r in runs)
        if change is None:
            miss = adwin_miss = "n/a"
            cadence = "-"
        else:
            miss = str(len(runs) - len(ours))
            adwin_miss = str(len(runs) - len(adwin))
            cadence = (
                f"{statistics.median(_at_cadence(d, change) for d in adwin):,.0f}" if adwin else "-"
            )
        om, ox = _stat(ours)
        am, ax = _stat(adwin)
        lines.append(
            f"| {row.scenario} | {len(runs)} x {runs[0].events:,} | {om} / {ox} | {miss} "
            f"| {ours_fa} ({ours_fa / events * 1e6:.2f}) | {am} / {ax} | {cadence} "
            f"| {adwin_miss} | {adwin_fa} ({adwin_fa / events * 1e6:.2f}) "
            f"| {sum(r.ours_reopened for r in runs)} |"
        )
    return "\n".join(lines)


def scenarios(quick: bool, repeats: int) -> list[tuple[str, int, int | None, int]]:
    """(name, live events, change point, runs)."""
    if quick:
        return [
            ("stationary", 20_000, None, 1),
            ("mean +0.5 sigma", 12_000, 6_000, repeats),
            ("category share x2", 12_000, 6_000, repeats),
            ("RBF abrupt", 12_000, 6_000, 1),
        ]
    return [
        ("stationary", 1_000_000, None, 1),
        ("mean +0.25 sigma", 30_000, 10_000, repeats),
        ("mean +0.5 sigma", 30_000, 10_000, repeats),
        ("mean +1 sigma", 30_000, 10_000, repeats),
        ("mean +0.25 sigma, 2,000 then back", 50_000, 10_000, max(repeats, 10)),
        ("category share x2", 30_000, 10_000, repeats),
        ("RBF abrupt", 30_000, 10_000, repeats),
        ("RBF gradual", 40_000, 15_000, repeats),
    ]


def run(quick: bool, repeats: int) -> tuple[str, float]:
    """Run every scenario; return (markdown table, seconds)."""
    t0 = time.perf_counter()
    rows, changes = [], {}
    for name, n, change, runs in scenarios(quick, repeats):
        row = Row(name)
        for seed in range(runs):
            row.runs.append(run_one(name, n, change, seed=1 + seed))
        rows.append(row)
        changes[name] = change
        print(f"  {name}: {sum(r.seconds for r in row.runs):.1f}s", flush=True)
    return table(rows, changes), time.perf_counter() - t0


# ----------------------------------------------------------------- sampling

SAMPLE_RATES = (1.0, 0.1, 0.01)


def _sampled_batches(stream: Stream, kept: list[int], total: int) -> Iterator[ModelEvents]:
    """``total`` events with ids 0..total-1, of which the ``kept`` ones (the sample, in
    order) carry ``stream``'s rows. The others carry one shared placeholder row: the
    pipeline drops them before reading any feature (it only checks their keys for the
    unknown-feature count), so generating their values would change nothing but the time."""
    placeholder: dict[str, object] = dict.fromkeys(SCHEMA, 0.0)
    rows = iter(_rows(stream.x, stream.cats))
    kept_set = set(kept)
    for lo in range(0, total, BATCH):
        hi = min(lo + BATCH, total)
        ev = ModelEvents(MODEL)
        ev.event_ids.extend(str(i) for i in range(lo, hi))
        ev.timestamps.extend(float(i) for i in range(lo, hi))
        ev.versions.extend([None] * (hi - lo))
        ev.features.extend(next(rows) if i in kept_set else placeholder for i in range(lo, hi))
        ev.predictions.extend([None] * (hi - lo))
        yield ev


def run_sampled(scenario: str, rate: float, seed: int, quick: bool) -> RunResult:
    """One injected stream at sampling ``rate``: lengths scale with 1 / rate, so the window
    (5000 sampled events) sees as many sampled events before and after the change as at
    rate 1; delays are in events of the whole stream."""
    from monitor.sampling import Sampler

    t0 = time.perf_counter()
    base_n, base_change = (12_000, 6_000) if quick else (30_000, 10_000)
    if scenario == "stationary":
        base_n, base_change = (20_000, 0) if quick else (200_000, 0)
    total, change = int(base_n / rate), int(base_change / rate)
    kept = Sampler(rate).kept([str(i) for i in range(total)]) or list(range(total))
    n_kept = len(kept)
    change_kept = int(np.searchsorted(kept, change)) if change else None
    ref_x, ref_c = reference(seed + 10_000, "injected")
    inner = injected_stream(scenario, n_kept, change_kept, seed)
    stream = Stream(inner.x, inner.cats, change or None, inner.targets)
    delay, false_alarms, reopened = run_ours(
        stream, ref_x, ref_c, rate, _sampled_batches(stream, kept, total)
    )
    seconds = time.perf_counter() - t0
    return RunResult(delay, false_alarms, None, 0, total, seconds, reopened)


def run_sampling(quick: bool, repeats: int) -> str:
    """Delay and false alarms by sampling rate on the injected shifts (``--sampling``)."""
    lines = [
        "| stream | rate | runs x events | median / max delay (events) "
        "| delay in sampled events | missed | false alarms (per M events) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    names = ["stationary", "mean +0.5 sigma", "mean +1 sigma", "category share x2"]
    if not quick:
        names.insert(1, "mean +0.25 sigma")
    for name in names:
        for rate in SAMPLE_RATES:
            t0 = time.perf_counter()
            runs = 1 if name == "stationary" else repeats
            results = [run_sampled(name, rate, 1 + seed, quick) for seed in range(runs)]
            delays = [r.ours_delay for r in results if r.ours_delay is not None]
            med, mx = _stat(delays)
            sampled = f"{statistics.median(delays) * rate:,.0f}" if delays else "-"
            missed = "-" if name == "stationary" else str(runs - len(delays))
            events = sum(r.events for r in results)
            fa = sum(r.ours_false for r in results)
            lines.append(
                f"| {name} | {rate:g} | {runs} x {results[0].events:,} | {med} / {mx} "
                f"| {sampled} | {missed} | {fa} ({fa / events * 1e6:.2f}) |"
            )
            print(f"  sampling {name} @ {rate:g}: {time.perf_counter() - t0:.1f}s", flush=True)
    return "\n".join(lines)


# ----------------------------------------------------------------- performance incidents

PERF_WORSE = (60_000, 105_000)


def perf_stream(
    task: str, seed: int, worse: tuple[int, int], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, predictions, labels); the model is worse for events ``worse[0]..worse[1]``.

    regression: label = 2x + noise (sd 2.57: MAE 2.05), predicted 2x; while worse the
    target moves by 3.4 (MAE 3.6). binary: the score is right 90 % of the time, 75 % while
    worse.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    bad = np.zeros(n, dtype=bool)
    bad[worse[0] : worse[1]] = True
    if task == "regression":
        pred = 2.0 * x
        return x, pred, pred + rng.normal(0.0, 2.57, n) + np.where(bad, 3.4, 0.0)
    labels = rng.integers(0, 2, n)
    wrong = rng.uniform(size=n) < np.where(bad, 0.25, 0.1)
    return x, np.where((labels == 1) ^ wrong, 0.8, 0.2), labels


def run_performance_stream(
    task: str, seed: int, worse: tuple[int, int], n: int
) -> list[tuple[int, str]]:
    """The performance group's alert actions (events seen, kind) over one stream."""
    from monitor.alerting.config import AlertingConfig
    from monitor.alerting.policy import ModelAlertState, decide
    from monitor.events import LabelEvents

    cfg = parse_config(
        {"models": [{"name": MODEL, "features": {"x": "numeric"}, "performance": {"task": task}}]},
        env={},
    )
    settings = cfg.model(MODEL)
    assert settings is not None
    ref = np.random.default_rng(seed + 10_000).normal(size=N_REF)
    mm = ModelMonitor(
        settings, cfg.limits, build_profile(MODEL, [({"x": v}, 0.5) for v in ref.tolist()])
    )
    rules = AlertingConfig().rules
    x, pred, labels = perf_stream(task, seed, worse, n)
    state: ModelAlertState | None = None
    actions: list[tuple[int, str]] = []
    for lo in range(0, n, BATCH):
        hi = min(lo + BATCH, n)
        ev = ModelEvents(MODEL)
        ev.event_ids.extend(str(i) for i in range(lo, hi))
        ev.timestamps.extend(i / 10 for i in range(lo, hi))  # 10 events/s: no repeat notices
        ev.versions.extend([None] * (hi - lo))
        ev.features.extend({"x": v} for v in x[lo:hi].tolist())
        ev.predictions.extend(pred[lo:hi].tolist())
        for evaluation in mm.ingest(ev):
            ctx = evaluation.context
            signals = [sig for sig in evaluation.signals if sig.kind == "performance"]
            d = decide(state, signals, ctx, ctx.evaluated_at, rules=rules)
            state = d.state
            actions.extend((ctx.events_total, a.kind) for a in d.actions)
        mm.ingest_labels(
            LabelEvents(MODEL, ev.event_ids, labels[lo:hi].tolist(), ev.timestamps), hi / 10
        )
    return actions


def run_performance(quick: bool, repeats: int) -> str:
    """The performance-incident table (see the module docstring)."""
    lines = [
        "| task | stream | runs x labelled events | pages (per M events) "
        "| opened: median / max events after 60,000 | open to 105,000 "
        "| closed: median / max events after 105,000 | other incidents |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    stationary_n = 50_000 if quick else 1_000_000
    worse_n = 130_000
    for task in ("regression", "binary"):
        t0 = time.perf_counter()
        pages = [k for _, k in run_performance_stream(task, 1, (0, 0), stationary_n) if k == "fire"]
        lines.append(
            f"| {task} | stationary | 1 x {stationary_n:,} "
            f"| {len(pages)} ({len(pages) / stationary_n * 1e6:.2f}) | - | - | - | - |"
        )
        opened, closed, through, others = [], [], 0, 0
        runs = 1 if quick else repeats
        for seed in range(1, runs + 1):
            actions = run_performance_stream(task, seed, PERF_WORSE, worse_n)
            fires = [at for at, k in actions if k == "fire"]
            resolves = [at for at, k in actions if k == "resolve"]
            if fires:
                opened.append(fires[0] - PERF_WORSE[0])
                if resolves and resolves[0] > PERF_WORSE[1]:
                    through += 1
                    closed.append(resolves[0] - PERF_WORSE[1])
            others += max(0, len(fires) - 1)
        om, ox = _stat(opened)
        cm, cx = _stat(closed)
        lines.append(
            f"| {task} | worse 60,000-105,000 | {runs} x {worse_n:,} | - | {om} / {ox} "
            f"| {through} of {runs} | {cm} / {cx} | {others} |"
        )
        print(f"  performance {task}: {time.perf_counter() - t0:.1f}s", flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="seeds per changing stream")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--performance", action="store_true", help="only the performance-incident table"
    )
    parser.add_argument(
        "--sampling", action="store_true", help="only the table by sampling rate (sample: rate)"
    )
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    t0 = time.perf_counter()
    if args.sampling:
        sampling = run_sampling(args.quick, repeats)
        sampling_text = "\n".join(
            [
                "### Detection by sampling rate (`sample: {rate}`, real pipeline core)",
                "",
                f"Command: `{command_line()}`; {machine_info()}; "
                f"{time.perf_counter() - t0:.0f} s. Default window and `DriftConfig`; at rate r"
                " the streams are 1/r times longer (the change point too), so the window sees"
                " the same number of sampled events before the change; see `run_sampled`.",
                "",
                sampling,
            ]
        )
        print(sampling_text)
        if not args.no_write:
            write_section("detection-sampling", sampling_text)
        return
    perf = run_performance(args.quick, repeats)
    perf_text = "\n".join(
        [
            "### Performance incidents (real pipeline core and alert policy)",
            "",
            f"Command: `{command_line()}`; {machine_info()}; "
            f"{time.perf_counter() - t0:.0f} s. Default `performance` settings, window 5000"
            " labels, evaluation every 1000 events, default alert rules; see the docstring of"
            " `bench/detection_quality.py`.",
            "",
            perf,
        ]
    )
    if args.performance:
        print(perf_text)
        return
    body, seconds = run(args.quick, repeats)
    text = "\n".join(
        [
            "### Detection quality at default settings (real pipeline core)",
            "",
            f"Command: `{command_line()}`; {machine_info()}; {seconds:.0f} s.",
            "Window 5000 events, step 1000, default `DriftConfig`, reference 10,000 events,"
            f" {N_NUMERIC} numeric + 1 categorical features. Delays in events after the change"
            " point. ADWIN alone = river `ADWIN()` (delta 0.002) per feature, value by value;"
            " 'at cadence' rounds its delay up to the next evaluation (every 1000 events).",
            "",
            body,
            "",
            perf_text,
        ]
    )
    print(text)
    if not args.no_write:
        write_section("detection-quality", text)


if __name__ == "__main__":
    main()
