"""Detection quality of the service's drift detection at default settings, vs river ADWIN alone.

Run: ``.venv/bin/python -m bench.detection_quality [--quick] [--repeats N] [--no-write]``
(``--segments``: only the segments table, written to its own ``detection-segments`` section;
see ``run_segments``).
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

Sampling (``--sampling`` table, written to its own ``detection-sampling`` section): the
injected streams through a model with ``sample: {rate}`` at rates 1, 0.1 and 0.01, the
streams 1/rate times longer so that the window sees as many sampled events before and
after the change; delays in events of the whole stream (see ``run_sampled``).

ADWIN alone: one river ``ADWIN()`` (default ``delta=0.002``) per feature, fed the
reference events then the stream, value by value (for the categorical feature: the
indicator of category 0). Its delay is reported at its own resolution (the value at
which it fires) and rounded up to the next evaluation point, which is the earliest a
service evaluating every 1000 events could report it. Evidently is not installed in
this environment, so it is not compared.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift as river_drift
from river.datasets import synth

from bench import command_line, machine_info, write_section
from monitor.config import parse_config
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.multivariate import MULTIVARIATE
from monitor.reference import build_profile
from monitor.sampling import Sampler

N_NUMERIC = 19
NUMERIC = [f"f{j:02d}" for j in range(N_NUMERIC)]
CATEGORICAL = "segment"
SCHEMA: dict[str, str] = {**dict.fromkeys(NUMERIC, "numeric"), CATEGORICAL: "categorical"}
CATEGORY_P = np.array([0.2, 0.3, 0.25, 0.15, 0.1])
CATEGORY_NAMES = np.array(["a", "b", "c", "d", "e", "new"])  # "new": never in a reference
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
    ours_other: int = 0  # data-quality or multivariate incidents after the change


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


def build_monitor(ref_x: np.ndarray, ref_cats: np.ndarray, **model: object) -> ModelMonitor:
    """The service's core with every setting at its default (window, drift config)."""
    cfg = parse_config(
        {"models": [{"name": MODEL, "features": SCHEMA, "prediction": "none", **model}]}, env={}
    )
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
) -> tuple[int | None, int, int, int]:
    """(delay, false alarms, re-opened incidents, data-quality or multivariate incidents
    after the change) of the real pipeline core on one stream.

    A data-quality or multivariate incident counts as a false alarm before the change
    (always, on a stationary stream); after it, it is counted apart (a real change may
    well show there too). ``rate``: the model's ``sample: {rate}``; ``batches``: the
    events, when not ``stream``'s rows one by one (see ``run_sampled``)."""
    mm = build_monitor(ref_x, ref_cats, sample={"rate": rate})
    change = stream.change
    onset = stream.onset if stream.onset is not None else change
    drifting: dict[str, bool] = {}
    delay: int | None = None
    false_alarms = reopened = other = 0
    opened: set[str] = set()  # changed features with an incident since the change
    quality: dict[str, bool] = {}
    for ev in batches if batches is not None else _batches(stream.x, stream.cats, 0):
        for evaluation in mm.ingest(ev):
            at = evaluation.context.events_total
            before = change is None or onset is None or at <= onset
            for s in evaluation.signals:
                if s.kind != "data_quality":
                    continue
                firing = s.severity != "ok"
                if firing and not quality.get(s.subject, False):
                    false_alarms += before
                    other += not before
                quality[s.subject] = firing
            for name, verdict in evaluation.verdicts.items():
                started = verdict.drifting and not drifting.get(name, False)
                drifting[name] = verdict.drifting
                if not started:
                    continue
                if name == MULTIVARIATE:
                    false_alarms += before
                    other += not before
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
    return delay, false_alarms, reopened, other


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
    ours_delay, ours_false, reopened, other = run_ours(stream, ref_x, ref_c)
    adwin_delay, adwin_false = run_adwin(stream, ref_x, ref_c)
    seconds = time.perf_counter() - t0
    return RunResult(ours_delay, ours_false, adwin_delay, adwin_false, n, seconds, reopened, other)


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
        "| ours: re-opened | ours: data-quality / multivariate incidents after the change |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"| {sum(r.ours_reopened for r in runs)} | {sum(r.ours_other for r in runs)} |"
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
    t0 = time.perf_counter()
    base_n, base_change = (12_000, 6_000) if quick else (30_000, 10_000)
    if scenario == "stationary":
        base_n, base_change = (20_000, 0) if quick else (200_000, 0)
    total, change = int(base_n / rate), int(base_change / rate)
    kept = Sampler(rate).kept([str(i) for i in range(total)]) or list(range(total))
    change_kept = int(np.searchsorted(kept, change)) if change else None
    ref_x, ref_c = reference(seed + 10_000, "injected")
    inner = injected_stream(scenario, len(kept), change_kept, seed)
    stream = Stream(inner.x, inner.cats, change or None, inner.targets)
    delay, false_alarms, reopened, other = run_ours(
        stream, ref_x, ref_c, rate, _sampled_batches(stream, kept, total)
    )
    seconds = time.perf_counter() - t0
    return RunResult(delay, false_alarms, None, 0, total, seconds, reopened, other)


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


# ----------------------------------------------------------------- validation, multivariate

#: stream -> the signal subject that must name it.
VALIDATION_STREAMS = {
    "sentinel -999 in f03, 3% of events": "below_min:f03",
    "sentinel -999 in f03, 3%, and f03 mean +1 sigma": "below_min:f03",
    "new category in segment, 3% of events": "unseen:segment",
    "missing-rate step in f07, 0 -> 5%": "missing:f07",
    "correlation flip f00/f01 (marginals unchanged)": MULTIVARIATE,
}
RHO = 0.8  # correlation of f00 and f01 in the references and before a flip


def _correlate(x: np.ndarray, rho: np.ndarray, seed: int) -> np.ndarray:
    """f01 with correlation ``rho`` (per row) to f00, its marginal unchanged."""
    loc = np.linspace(-2.0, 2.0, N_NUMERIC)
    scale = np.linspace(0.5, 3.0, N_NUMERIC)
    z0 = (x[:, 0] - loc[0]) / scale[0]
    e = np.random.default_rng(seed + 77).normal(size=len(x))
    x[:, 1] = loc[1] + scale[1] * (rho * z0 + np.sqrt(1 - rho**2) * e)
    return x


def validation_stream(scenario: str, n: int, change: int, seed: int) -> Stream:
    """The injected stationary stream (f00/f01 correlated) with one validation problem."""
    s = injected_stream("stationary", n, None, seed)
    after = np.arange(n) >= change
    hit = after & (np.random.default_rng(seed + 99).uniform(size=n) < 0.03)
    rho = np.full(n, RHO)
    if scenario.startswith("sentinel"):
        if "mean" in scenario:  # real drift of the same feature under the sentinel
            s.x[after, 3] += np.linspace(0.5, 3.0, N_NUMERIC)[3]
        s.x[hit, 3] = -999.0
    elif scenario.startswith("new category"):
        s.cats[hit] = len(CATEGORY_NAMES) - 1
    elif scenario.startswith("missing"):
        gone = after & (np.random.default_rng(seed + 98).uniform(size=n) < 0.05)
        s.x[gone, 7] = np.nan
    else:
        rho[after] = -RHO
    _correlate(s.x, rho, seed)
    return Stream(s.x, s.cats, change, frozenset({VALIDATION_STREAMS[scenario]}))


def run_validation_stream(
    stream: Stream, ref_x: np.ndarray, ref_cats: np.ndarray, real_drift: bool = False
) -> tuple[int | None, bool, set[str], int, int]:
    """(delay of the expected signal, whether it was named first, the other subjects that
    fired after the change, false alarms before it, evaluations at which the feature's drift
    was explained by the expected rule, monitor/explain.py).

    Named first: at the first evaluation after the change at which anything fires, the
    expected signal fires, and the feature's drift does not fire beside it as generic drift
    unless it is real (``real_drift``: there the drift must stay, in "other signals").
    """
    mm = build_monitor(ref_x, ref_cats)
    assert stream.change is not None
    (expected,) = stream.targets
    rule, _, feature = expected.partition(":")
    active: dict[str, bool] = {}
    delay: int | None = None
    first: bool | None = None
    others: set[str] = set()
    false_alarms = 0
    explained = 0
    for ev in _batches(stream.x, stream.cats, 0):
        for evaluation in mm.ingest(ev):
            at = evaluation.context.events_total
            firing = {s.subject for s in evaluation.signals if s.severity != "ok"}
            for subject in sorted(firing):
                if active.get(subject, False):
                    continue
                if at <= stream.change:
                    false_alarms += 1
                elif subject == expected:
                    delay = at - stream.change if delay is None else delay
                else:
                    others.add(subject)
            verdict = evaluation.verdicts.get(feature)
            if at > stream.change and verdict is not None and verdict.explained_by == rule:
                explained += 1
            if at > stream.change and first is None and firing:
                first = expected in firing and (real_drift or feature not in firing)
            active = dict.fromkeys(firing, True)
    return delay, bool(first), others, false_alarms, explained


def run_validation(quick: bool, repeats: int) -> str:
    """The data-validation / multivariate table, and the evaluation cost with and without."""
    n, change = (12_000, 6_000) if quick else (30_000, 10_000)
    lines = [
        "| stream | expected signal | runs x events | found within 2 evaluations "
        "| delay: median / max | named first | other signals after the change "
        "| drift explained by the rule (evaluations) | false alarms before the change |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for scenario, expected in VALIDATION_STREAMS.items():
        t0 = time.perf_counter()
        delays, named, fa, others, explained = [], 0, 0, set(), 0
        for seed in range(1, repeats + 1):
            ref = injected_stream("stationary", N_REF, None, seed + 10_000)
            ref_x = _correlate(ref.x, np.full(N_REF, RHO), seed + 10_000)
            stream = validation_stream(scenario, n, change, seed)
            delay, first, other, false_alarms, folded = run_validation_stream(
                stream, ref_x, ref.cats, real_drift="mean" in scenario
            )
            if delay is not None:
                delays.append(delay)
            named += first
            others |= other
            fa += false_alarms
            explained += folded
        within = sum(d <= 2 * BATCH for d in delays)
        dm, dx = _stat(delays)
        lines.append(
            f"| {scenario} | `{expected}` | {repeats} x {n:,} | {within} of {repeats} "
            f"| {dm} / {dx} | {named} of {repeats} | {', '.join(sorted(others)) or '-'} "
            f"| {explained if ':' in expected else '-'} | {fa} |"
        )
        print(f"  {scenario}: {time.perf_counter() - t0:.1f}s", flush=True)
    return "\n".join(lines)


def evaluation_cost(n: int) -> str:
    """Pipeline time per event on a stationary stream with the new checks on and off
    (after a warm-up of 10,000 events, the best of three runs)."""
    ref_x, ref_c = reference(10_001, "injected")
    stream = injected_stream("stationary", n, None, 1)
    batches = list(_batches(stream.x, stream.cats, 0))
    settings: dict[str, dict[str, object]] = {
        "validation and multivariate off (as before)": {
            "validation": {"enabled": False},
            "multivariate": {"enabled": False},
        },
        "validation on, multivariate off": {"multivariate": {"enabled": False}},
        "defaults (validation and multivariate on)": {},
    }
    warm = list(_batches(*reference(10_002, "injected"), 0))
    builds = {
        label: functools.partial(build_monitor, ref_x, ref_c, **model)
        for label, model in settings.items()
    }
    return _cost_table(builds, warm, batches, n)


def _cost_table(
    builds: dict[str, Callable[[], Any]], warm: list[Any], batches: list[Any], n: int
) -> str:
    """The cost table: per label, a monitor from its builder, warmed on ``warm`` (compiled
    kernels and caches warm before the clock starts), timed over ``batches`` (``n``
    events), the best of three runs because the machine is shared."""
    out = []
    for label, build in builds.items():
        timings = []
        for _ in range(3):
            mm = build()
            for ev in warm:
                mm.ingest(ev)
            t0 = time.perf_counter()
            evals = 0
            for ev in batches:
                evals += len(mm.ingest(ev))
            timings.append(time.perf_counter() - t0)
        seconds = min(timings)
        out.append(
            f"| {label} | {n:,} | {evals} | {seconds / n * 1e6:.2f} µs "
            f"| {seconds / max(evals, 1) * 1e3:.2f} ms |"
        )
    head = [
        "| settings | events | evaluations | pipeline time per event | per evaluation |",
        "|---|---:|---:|---:|---:|",
    ]
    return "\n".join(head + out)


# ----------------------------------------------------------------- segments

SEGMENT_VALUE = 4  # category "e": 10% of the traffic (CATEGORY_P)
SEGMENT_LABEL = f"{CATEGORICAL}={CATEGORY_NAMES[SEGMENT_VALUE]}"
#: Segments by nature: f00's mean in each category, in its standard deviations. A segment
#: compared with the whole reference would always look drifted; with its own reference
#: rows it must not.
SEGMENT_OFFSETS = np.array([0.0, -0.5, 0.5, 1.0, 1.5])


def segment_stream(n: int, change: int | None, k: float, seed: int) -> Stream:
    """The injected stationary stream with f00 depending on the category, and from
    ``change`` on f00 shifted by ``k`` standard deviations in category "e" only."""
    s = injected_stream("stationary", n, None, seed)
    scale = np.linspace(0.5, 3.0, N_NUMERIC)[0]
    s.x[:, 0] += SEGMENT_OFFSETS[s.cats] * scale
    if change is not None:
        hit = (np.arange(n) >= change) & (s.cats == SEGMENT_VALUE)
        s.x[hit, 0] += k * scale
    return Stream(s.x, s.cats, change, frozenset({NUMERIC[0]}))


def build_segment_monitor(ref_x: np.ndarray, ref_cats: np.ndarray, **model: object) -> ModelMonitor:
    """:func:`build_monitor` with ``segments: [segment]``; the reference's segment
    references are built from its rows, as from a data file or a learned reference."""
    from monitor.reference import segment_references

    cfg = parse_config(
        {
            "models": [
                {
                    "name": MODEL,
                    "features": SCHEMA,
                    "prediction": "none",
                    "segments": [CATEGORICAL],
                    **model,
                }
            ]
        },
        env={},
    )
    settings = cfg.model(MODEL)
    assert settings is not None
    rows = [(r, None) for r in _rows(ref_x, ref_cats)]
    profile = build_profile(MODEL, rows, schema=SCHEMA, prediction="none")  # type: ignore[arg-type]
    profile.segments = segment_references(
        rows,
        settings.segments,
        lambda members, source: build_profile(
            MODEL,
            members,
            schema=SCHEMA,
            prediction="none",
            source=source,  # type: ignore[arg-type]
        ),
    )
    return ModelMonitor(settings, cfg.limits, profile)


def run_segment_stream(
    stream: Stream, ref_x: np.ndarray, ref_cats: np.ndarray
) -> tuple[int | None, bool, int, set[str]]:
    """(delay of the first ``f00`` signal naming the segment, whether the first signal to
    fire after the change named it, false alarms (a signal turning active) before the change
    or anywhere on a stationary stream, other signals after the change)."""
    mm = build_segment_monitor(ref_x, ref_cats)
    active: set[tuple[str, str | None]] = set()
    delay: int | None = None
    first: bool | None = None
    false_alarms = 0
    others: set[str] = set()
    expected = (NUMERIC[0], SEGMENT_LABEL)
    for ev in _batches(stream.x, stream.cats, 0):
        for evaluation in mm.ingest(ev):
            at = evaluation.context.events_total
            firing = {(s.subject, s.segment) for s in evaluation.signals if s.severity != "ok"}
            new = firing - active
            active = firing
            if not new:
                continue
            if stream.change is None or at <= stream.change:
                false_alarms += len(new)
                continue
            if first is None:
                first = expected in new
            if expected in new and delay is None:
                delay = at - stream.change
            others |= {f"{s} in {g}" if g else s for s, g in new if (s, g) != expected}
    return delay, bool(first), false_alarms, others


def run_segments(quick: bool, repeats: int) -> str:
    """The segments table (``--segments``) and the evaluation cost with segments on/off."""
    n, change = (12_000, 6_000) if quick else (30_000, 10_000)
    stationary_n = 20_000 if quick else 1_000_000
    lines = [
        "| stream | runs x events | found within 2 evaluations, named `f00 in "
        f"{SEGMENT_LABEL}` | delay: median / max | named first "
        "| other signals after the change | false alarms (per M events) |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    ref_seed = 10_000
    for label, k, runs, length, at in [
        ("stationary, segments of different means", 0.0, 1, stationary_n, None),
        (f"f00 +0.5 sigma in {SEGMENT_LABEL} (10% of traffic)", 0.5, repeats, n, change),
        (f"f00 +1 sigma in {SEGMENT_LABEL} (10% of traffic)", 1.0, repeats, n, change),
        (f"f00 +2 sigma in {SEGMENT_LABEL} (10% of traffic)", 2.0, repeats, n, change),
    ]:
        t0 = time.perf_counter()
        delays, named, fa, others = [], 0, 0, set()
        for seed in range(1, runs + 1):
            ref = segment_stream(N_REF, None, 0.0, seed + ref_seed)
            stream = segment_stream(length, at, k, seed)
            delay, first, false_alarms, other = run_segment_stream(stream, ref.x, ref.cats)
            if delay is not None:
                delays.append(delay)
            named += first
            fa += false_alarms
            others |= other
        dm, dx = _stat(delays)
        events = runs * length
        within = "n/a" if at is None else f"{sum(d <= 2 * BATCH for d in delays)} of {runs}"
        lines.append(
            f"| {label} | {runs} x {length:,} | {within} | {dm} / {dx} "
            f"| {'n/a' if at is None else f'{named} of {runs}'} "
            f"| {', '.join(sorted(others)) or '-'} | {fa} ({fa / events * 1e6:.2f}) |"
        )
        print(f"  segments {label}: {time.perf_counter() - t0:.1f}s", flush=True)
    return "\n".join(lines) + "\n\n" + segment_cost(20_000 if quick else 200_000)


def segment_cost(n: int) -> str:
    """Pipeline time per event on the stationary segment stream, segments off and on
    (after a warm-up of 10,000 events, the best of three runs)."""
    ref = segment_stream(N_REF, None, 0.0, 10_001)
    stream = segment_stream(n, None, 0.0, 1)
    batches = list(_batches(stream.x, stream.cats, 0))
    warm_s = segment_stream(N_REF, None, 0.0, 10_002)
    warm = list(_batches(warm_s.x, warm_s.cats, 0))
    builds = {
        "segments off": functools.partial(build_monitor, ref.x, ref.cats),
        f"segments: [{CATEGORICAL}] (top 5)": functools.partial(
            build_segment_monitor, ref.x, ref.cats
        ),
    }
    return _cost_table(builds, warm, batches, n)


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
        "--validation",
        action="store_true",
        help="only the data-validation / multivariate table and the evaluation cost",
    )
    parser.add_argument(
        "--sampling", action="store_true", help="only the table by sampling rate (sample: rate)"
    )
    parser.add_argument(
        "--segments", action="store_true", help="only the segments table (segments: [...])"
    )
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    t0 = time.perf_counter()
    if args.segments:
        segments = run_segments(args.quick, repeats)
        segments_text = "\n".join(
            [
                "### Drift in one segment (`segments:`, real pipeline core, defaults)",
                "",
                f"Command: `{command_line()}`; {machine_info()}; "
                f"{time.perf_counter() - t0:.0f} s. The injected streams with"
                f" `segments: [{CATEGORICAL}]` (5 categories, default `top_k` 5,"
                " `min_window_rows` 200) and f00's mean depending on the category"
                f" ({', '.join(f'{v:+g}' for v in SEGMENT_OFFSETS)} sigma), in the reference"
                " and the stream; the reference's segment references are built from its"
                f" rows. From the change point on, f00 shifts in `{SEGMENT_LABEL}` only (10% of"
                " the events). Delay in events after the change (an evaluation every 1000"
                " events: 'within 2 evaluations' is <= 2000). A false alarm is any signal"
                " (whole traffic or segment) turning active before the change or on the"
                " stationary stream. Segment tests are KS / chi-square, Bonferroni over"
                " segments x columns (monitor/segments.py).",
                "",
                segments,
            ]
        )
        print(segments_text)
        if not args.no_write:
            write_section("detection-segments", segments_text)
        return
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
    t1 = time.perf_counter()
    validation = run_validation(args.quick, repeats)
    cost = evaluation_cost(20_000 if args.quick else 200_000)
    validation_text = "\n".join(
        [
            "### Data validation and multivariate drift (real pipeline core, defaults)",
            "",
            f"Command: `{command_line()}`; {machine_info()}; "
            f"{time.perf_counter() - t1:.0f} s. The injected streams above with f00 and f01"
            f" correlated {RHO} (reference and stream), one problem from the change point on;"
            " delay in events after it (evaluations every 1000 events: 'within 2 evaluations'"
            " is a delay <= 2000). Named first: the expected signal is among the first to fire"
            " after the change, and the feature's drift is not paged beside it as generic drift"
            " unless it is real (the stream with a mean shift under the sentinel, where the"
            " drift must stay: `f03` in other signals). Drift explained: evaluations after the"
            " change at which the feature's drift disappeared without the violating values and"
            " was folded into the rule's signal (monitor/explain.py). Input rows are Python"
            " dicts, as from the JSON decoder.",
            "",
            validation,
            "",
            cost,
        ]
    )
    if args.validation:
        print(validation_text)
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
            validation_text,
            "",
            perf_text,
        ]
    )
    print(text)
    if not args.no_write:
        write_section("detection-quality", text)


if __name__ == "__main__":
    main()
