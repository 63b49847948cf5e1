"""What the UI pages, the JSON API and the file report show: plain dicts built from a model's state.

Pure (no I/O): every view is a function of a :class:`~monitor.model_monitor.ModelMonitor`
(its last :class:`~monitor.model_monitor.Evaluation`, reference and window) and
a :class:`~monitor.ui.history.DriftHistory`. The service's API handlers and
the ``monitor report`` command call the same functions, so the report and the
pages cannot disagree.

Every float is finite or ``None`` (JSON has no NaN). Names (models, features,
categories) are passed through as data, never as markup: the pages escape them
(jinja2 autoescape, ``textContent`` in the scripts).

Numeric distributions are binned on the PSI bins (reference quantiles, as
:func:`monitor.detectors.binning.quantile_edges` makes them), the outer bins
closed at the smaller and larger of the two samples' extremes so they can be
drawn. The two empirical CDFs are given at up to ``CDF_POINTS`` quantiles
each, and the KS point is where they are furthest apart (computed on the full
reference sample and window).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.detectors.binning import quantile_edges
from monitor.drift import headline
from monitor.signals import MULTIVARIATE, SEVERITY_RANK
from monitor.summary import CategoricalSummary, NumericSummary
from monitor.ui.history import strength_of
from monitor.window import MISSING_CODE

if TYPE_CHECKING:
    from monitor.drift import FeatureVerdict
    from monitor.model_monitor import ModelMonitor
    from monitor.ui.history import DriftHistory

CDF_POINTS = 200
MAX_CATEGORIES_SHOWN = 40
#: The longest category value shown (characters); a longer one is cut and ends with
#: :data:`CUT_MARK`. A value from the wire may be as long as a message (10 MB): carried
#: whole, it went into every ``/api/feature`` answer, the feature page (twice: the table and
#: the data block) and the report. Only what is shown is cut: windows, references and
#: metrics keep the value (the metrics cut labels at 100, monitor/service_metrics.py).
MAX_CATEGORY_CHARS = 200
CUT_MARK = "\u2026"


def shown_category(value: str) -> str:
    """``value`` as shown: at most :data:`MAX_CATEGORY_CHARS` characters, then the mark.

    >>> shown_category("x" * 300)[-3:], len(shown_category("x" * 300))
    ('xx\u2026', 201)
    """
    if len(value) <= MAX_CATEGORY_CHARS:
        return value
    return value[:MAX_CATEGORY_CHARS] + CUT_MARK


def num(v: Any) -> float | None:
    """A finite float or None (JSON has no NaN or infinity)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _summary(s: NumericSummary | CategoricalSummary | None) -> dict[str, Any]:
    if s is None:
        return {}
    if isinstance(s, NumericSummary):
        return {
            "count": s.count,
            "missing_rate": num(s.missing_rate),
            "mean": num(s.mean),
            "std": num(s.std),
            "min": num(s.min),
            "max": num(s.max),
            "p50": num(s.quantiles.get(0.5)),
            "p90": num(s.quantiles.get(0.9)),
            "p99": num(s.quantiles.get(0.99)),
        }
    return {
        "count": s.count,
        "missing_rate": num(s.missing_rate),
        "unseen_rate": num(s.unseen_rate),
        "distinct": int(np.count_nonzero(s.counts)),
    }


def _history(history: DriftHistory | None, model: str, column: str) -> list[dict[str, Any]]:
    if history is None:
        return []
    return [
        {
            "seq": p.seq,
            "at": p.at,
            "detector": p.detector,
            "score": p.score,
            "strength": p.strength,
            "severity": p.severity,
            "drifting": p.drifting,
        }
        for p in history.points(model, column)
    ]


def column_rows(mm: ModelMonitor, history: DriftHistory | None = None) -> list[dict[str, Any]]:
    """One row per monitored column, drifting first, then those whose drift a breach
    explains (then by severity, strength, name)."""
    ev = mm.last
    if not mm.ready:
        return []
    kinds = {n: "numeric" for n in mm.numeric_columns}
    kinds.update({n: "categorical" for n in mm.categorical_columns})
    if ev is not None and "__label__" in ev.results:
        kinds["__label__"] = "label"
    rows = []
    for name, kind in kinds.items():
        summary = None
        if ev is not None:
            summary = ev.numeric.get(name) or ev.categorical.get(name)
        verdict = ev.verdicts.get(name) if ev is not None else None
        results = list(verdict.results) if verdict else list(ev.results.get(name, [])) if ev else []
        top = headline(results)
        strength = None
        if top is not None:
            strength = strength_of(top.statistic, top.p_value, top.threshold)
        rows.append(
            {
                "name": name,
                "kind": kind,
                "drifting": bool(verdict and verdict.drifting),
                "severity": verdict.severity if verdict else "ok",
                "raw_drifted": bool(verdict and verdict.raw_drifted),
                # The data-quality rule whose breach explains this evaluation's drift of the
                # column (monitor/explain.py): the page says "explained by <rule>".
                "explained_by": verdict.explained_by if verdict else None,
                "headline": top.detector if top else None,
                "statistic": num(top.statistic) if top else None,
                "strength": strength,
                "summary": _summary(summary),
                "detectors": [
                    {
                        "detector": r.detector,
                        "statistic": num(r.statistic),
                        "p_value": num(r.p_value),
                        "raw_p_value": num(r.details.get("raw_p_value")),
                        "threshold": num(r.threshold),
                        "drifted": r.drifted,
                        "severity": r.severity,
                    }
                    for r in results
                ],
                "history": _history(history, mm.name, name),
            }
        )
    rows.sort(
        key=lambda r: (
            not r["drifting"],
            r["explained_by"] is None,
            -SEVERITY_RANK.get(r["severity"], 0),
            -(r["strength"] or 0.0),
            r["name"],
        )
    )
    return rows


def _window_mask(mm: ModelMonitor) -> np.ndarray | None:
    """Rows of the window the last evaluation looked at, for time windows.

    A time window keeps events beyond the evaluated span (the next step's, and
    up to ``size`` in all); the evaluation took those between its window start
    and end (event time), and so does the view. A count window is shown as it
    is now: it differs from the evaluated one by the events since the last
    evaluation (``window.since_evaluation``, fewer than one step).
    """
    if mm.settings.window.type == "count" or mm.last is None:
        return None
    ts = mm.window.timestamps()
    c = mm.last.context
    return (ts >= c.window_start) & (ts <= c.window_end)


def _ecdf(sorted_values: np.ndarray, points: int = CDF_POINTS) -> dict[str, list[float]]:
    """Up to ``points`` (x, F(x)) pairs of the empirical CDF of a sorted sample."""
    n = sorted_values.size
    if n == 0:
        return {"x": [], "y": []}
    idx = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(np.int64))
    x = sorted_values[idx]
    y = np.searchsorted(sorted_values, x, side="right") / n
    return {"x": [float(v) for v in x], "y": [float(v) for v in y]}


def ks_point(reference: np.ndarray, window: np.ndarray) -> dict[str, float] | None:
    """Where the two empirical CDFs are furthest apart: x, both CDFs there, and D.

    >>> ks_point(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    {'x': 3.0, 'reference_cdf': 1.0, 'current_cdf': 0.0, 'd': 1.0}
    """
    if reference.size == 0 or window.size == 0:
        return None
    grid = np.concatenate([reference, window])
    f_ref = np.searchsorted(reference, grid, side="right") / reference.size
    f_win = np.searchsorted(window, grid, side="right") / window.size
    gap = np.abs(f_ref - f_win)
    i = int(np.argmax(gap))
    return {
        "x": float(grid[i]),
        "reference_cdf": float(f_ref[i]),
        "current_cdf": float(f_win[i]),
        "d": float(gap[i]),
    }


def numeric_distribution(reference: np.ndarray, window: np.ndarray, bins: int) -> dict[str, Any]:
    """Histograms on the PSI bins (shares), both ECDFs and the KS point; inputs sorted, finite."""
    edges = quantile_edges(reference, bins) if reference.size else np.empty(0)
    ref_counts = np.bincount(
        np.searchsorted(edges, reference, side="left"), minlength=edges.size + 1
    )
    win_counts = np.bincount(np.searchsorted(edges, window, side="left"), minlength=edges.size + 1)
    lo = min(reference[0] if reference.size else math.inf, window[0] if window.size else math.inf)
    hi = max(
        reference[-1] if reference.size else -math.inf, window[-1] if window.size else -math.inf
    )
    full_edges = [float(lo), *(float(e) for e in edges), float(hi)] if math.isfinite(lo) else []
    return {
        "kind": "numeric",
        "bins": {
            "edges": full_edges,
            "reference_counts": ref_counts.tolist(),
            "current_counts": win_counts.tolist(),
            "reference_share": (ref_counts / max(1, reference.size)).tolist(),
            "current_share": (win_counts / max(1, window.size)).tolist(),
        },
        "reference_cdf": _ecdf(reference),
        "current_cdf": _ecdf(window),
        "ks": ks_point(reference, window),
        "reference_n": int(reference.size),
        "current_n": int(window.size),
    }


def categorical_distribution(
    categories: list[str], n_reference: int, ref_counts: np.ndarray, win_counts: np.ndarray
) -> dict[str, Any]:
    """Shares of both per category; ``new`` marks categories the reference never had."""
    n = len(categories)
    ref = np.zeros(n, dtype=np.int64)
    ref[: min(n, ref_counts.size)] = ref_counts[:n]
    win = np.zeros(n, dtype=np.int64)
    win[: min(n, win_counts.size)] = win_counts[:n]
    ref_total, win_total = max(1, int(ref.sum())), max(1, int(win.sum()))
    rows = [
        {
            "category": c,
            "new": i >= n_reference,
            "reference_count": int(ref[i]),
            "current_count": int(win[i]),
            "reference_share": float(ref[i] / ref_total),
            "current_share": float(win[i] / win_total),
        }
        for i, c in enumerate(categories)
    ]
    rows.sort(key=lambda r: -max(r["reference_share"], r["current_share"]))
    shown = rows[:MAX_CATEGORIES_SHOWN]
    # A new category is the news: never cut it off the chart.
    shown += [r for r in rows[MAX_CATEGORIES_SHOWN:] if r["new"] and r["current_count"]][:10]
    for r in shown:
        value = r["category"]
        r["category"] = shown_category(value)
        r["category_chars"] = len(value)  # the whole value's length, cut or not
    return {
        "kind": "categorical",
        "categories": shown,
        "categories_total": n,
        "reference_n": int(ref.sum()),
        "current_n": int(win.sum()),
    }


def feature_view(
    mm: ModelMonitor, feature: str, history: DriftHistory | None = None
) -> dict[str, Any] | None:
    """The feature page: reference against the current window, detector rows, history.

    None when the model has no such column (or no reference yet).

    Computed per request, not cached per evaluation: a count window is drawn as it is now
    (``since_evaluation`` events newer than the evaluation), so a cache keyed by the
    evaluation's sequence would show another window; and the evaluation's sorted columns
    are not kept (as many floats again as the window). Sorting the window is the smaller
    part of the cost (a 1,000,000-row window: about 16 ms of 140 ms, the rest the ECDFs and
    the KS point); at the default 5,000 rows the whole view is about 2 ms.
    """
    if not mm.ready or mm.reference is None:
        return None
    row = next((r for r in column_rows(mm, history) if r["name"] == feature), None)
    if row is None:
        return None
    profile = mm.reference.features.get(feature)
    mask = _window_mask(mm)
    dist: dict[str, Any] | None = None
    if feature in mm.numeric_columns and profile is not None and profile.sample is not None:
        j = mm.numeric_columns.index(feature)
        col = mm.window.numeric()[:, j]
        if mask is not None:
            col = col[mask]
        col = np.sort(col[~np.isnan(col)])
        ref = np.sort(profile.sample[np.isfinite(profile.sample)])
        dist = numeric_distribution(ref, col, mm.settings.drift.psi.bins)
    elif feature in mm.categorical_columns:
        j = mm.categorical_columns.index(feature)
        codes = mm.window.categorical()[:, j]
        if mask is not None:
            codes = codes[mask]
        codes = codes[codes != MISSING_CODE]
        cats = mm.categories[feature]
        win_counts = np.bincount(codes, minlength=len(cats)) if codes.size else np.zeros(len(cats))
        ref_counts = (
            profile.counts
            if profile is not None and profile.counts is not None
            else np.zeros(0, dtype=np.int64)
        )
        n_ref = len(profile.categories) if profile is not None else 0
        dist = categorical_distribution(cats, n_ref, ref_counts, win_counts.astype(np.int64))
    ref_summary = None
    if profile is not None:
        ref_summary = {
            "count": profile.count,
            "missing_rate": num(profile.missing_rate),
            "mean": num(profile.mean),
            "std": num(profile.std),
            "min": num(profile.min),
            "max": num(profile.max),
        }
    return {
        "model": mm.name,
        "feature": feature,
        "column": row,
        "distribution": dist,
        "reference_summary": ref_summary,
        "window": _window(mm),
        "history_size": history.size if history is not None else 0,
    }


def _window(mm: ModelMonitor) -> dict[str, Any] | None:
    ev = mm.last
    if ev is None:
        return None
    c = ev.context
    span = c.window_end - c.window_start
    return {
        "events": c.window_events,
        "start": num(c.window_start),
        "end": num(c.window_end),
        "evaluation_seq": c.evaluation_seq,
        # Event time: how fast the model's events arrive, as the window saw them.
        "events_per_second": num(c.window_events / span) if span > 0 else None,
        # Count windows: events that arrived after the last evaluation (the feature page
        # draws the window as it is now).
        "since_evaluation": (
            int(getattr(mm, "_since_eval", 0)) if mm.settings.window.type == "count" else 0
        ),
    }


def multivariate_view(mm: ModelMonitor) -> dict[str, Any] | None:
    """The multivariate verdict (PCA reconstruction error, :mod:`monitor.multivariate`).

    None when the model has none configured (turned off, or fewer than two numeric
    features). ``verdict``: ``drifting`` / ``ok`` from the drift tracker (persistence and
    correction as for a feature), or ``pending`` before the first result (the joint
    reference is being learned, or the window is too small). ``statistic`` is the KS
    distance between the window's and the reference's reconstruction errors, judged by
    its ``p_value`` against ``threshold``; ``contributors``: the features whose residual
    grew most (only when the test drifted).
    """
    if not mm.ready or not mm.multivariate.active:
        return None
    ev = mm.last
    verdict = ev.verdicts.get(MULTIVARIATE) if ev is not None else None
    top = headline(list(verdict.results)) if verdict is not None else None
    out: dict[str, Any] = {
        "features": list(mm.multivariate.features),
        "verdict": "pending",
        "drifting": False,
        "severity": "ok",
        "raw_drifted": False,
        "detector": None,
        "statistic": None,
        "p_value": None,
        "threshold": None,
        "mean_error": None,
        "components": None,
        "contributors": [],
    }
    if verdict is None or top is None:
        return out
    out.update(
        verdict="drifting" if verdict.drifting else "ok",
        drifting=verdict.drifting,
        severity=verdict.severity,
        raw_drifted=verdict.raw_drifted,
        detector=top.detector,
        statistic=num(top.statistic),
        p_value=num(top.p_value),
        threshold=num(top.threshold),
        mean_error=num(top.details.get("mean_error")),
        components=int(top.details["components"]) if "components" in top.details else None,
        contributors=[
            {"feature": f, "excess": num(v)} for f, v in mm.multivariate.contributions(top)
        ],
    )
    return out


def _segment_feature(name: str, verdict: FeatureVerdict) -> dict[str, Any]:
    top = headline(list(verdict.results))
    return {
        "name": name,
        "severity": verdict.severity,
        "detector": top.detector if top else None,
        "statistic": num(top.statistic) if top else None,
        # Bonferroni-corrected over every segment x column test of the evaluation (what the
        # threshold judges); the raw one beside it.
        "p_value": num(top.p_value) if top else None,
        "raw_p_value": num(top.details.get("raw_p_value")) if top else None,
        "threshold": num(top.threshold) if top else None,
        "strength": strength_of(top.statistic, top.p_value, top.threshold) if top else None,
    }


def segments_view(mm: ModelMonitor) -> dict[str, Any] | None:
    """The declared slices (:mod:`monitor.segments`) at the last evaluation.

    None when the model declares no segments. Per slice, its values in the order the
    evaluation took them (top-K, ``__other__`` last), each with its window ``rows``,
    whether it was ``tested`` (at least ``min_window_rows``), its ``reference``
    (``segment``: its own reference rows; ``overall``: the whole reference, so a segment
    different by nature shows as drifting) and the features drifting in it, with the
    corrected p-value. Labels come from monitor/segments.py already escaped and bounded
    (printable, at most ``top_k + 1`` per slice); the pages escape them again as text.
    """
    if not mm.ready or not mm.segments.active:
        return None
    cfg = mm.segments.config
    ev = mm.last
    slices: dict[str, dict[str, Any]] = {
        s.name: {"slice": s.name, "columns": list(s.columns), "values": []}
        for s in mm.segments.slices
    }
    for seg in ev.segments if ev is not None else []:
        entry = slices.get(seg.slice)
        if entry is None:
            continue
        drifting = [
            _segment_feature(name, v) for name, v in sorted(seg.verdicts.items()) if v.drifting
        ]
        drifting.sort(key=lambda f: (-SEVERITY_RANK.get(f["severity"], 0), f["name"]))
        entry["values"].append(
            {
                "segment": seg.segment,
                "rows": seg.rows,
                "tested": seg.tested,
                "reference": seg.reference,
                "drifting": drifting,
            }
        )
    return {
        "top_k": cfg.top_k,
        "min_window_rows": cfg.min_window_rows,
        "min_reference_rows": cfg.min_reference_rows,
        "evaluated": ev is not None,
        "drifting": sorted(
            {seg.segment for seg in (ev.segments if ev is not None else []) if seg.drifting}
        ),
        "slices": list(slices.values()),
    }


def waiting_view(name: str, status: dict[str, Any]) -> dict[str, Any]:
    """:func:`model_view`'s keys for a model this instance has no state of yet (``waiting``:
    every configured model at start, and those whose partitions other instances own), so
    the page and ``/api/model`` have one shape; the page answered 500 for such a model."""
    return {
        "model": name,
        "model_version": None,
        "ready": False,
        "events": 0,
        "evaluations": 0,
        "window": None,
        "reference": status.get("reference"),
        "drifting": [],
        "explained": {},
        "multivariate": None,
        "segments": None,
        "columns": [],
        "performance": {},
        "performance_configured": False,
    }


def model_view(mm: ModelMonitor, history: DriftHistory | None = None) -> dict[str, Any]:
    """The model page's data: the window, every column row, drifting ones, performance."""
    ev = mm.last
    perf: dict[str, Any] = {}
    if mm.performance is not None:
        perf = {k: num(v) for k, v in mm.performance.snapshot().items()}
    rows = column_rows(mm, history)
    return {
        "model": mm.name,
        "model_version": mm.model_version,
        "ready": mm.ready,
        "events": mm.events_total,
        "evaluations": mm.evaluations,
        "window": _window(mm),
        "reference": (
            {
                "rows": mm.reference.rows,
                "source": mm.reference.source,
                "fingerprint": mm.reference.fingerprint,
            }
            if mm.reference is not None
            else None
        ),
        "drifting": ev.drifting if ev is not None else [],
        "explained": ev.explained if ev is not None else {},
        "multivariate": multivariate_view(mm),
        "segments": segments_view(mm),
        "columns": rows,
        "performance": perf,
        "performance_configured": mm.performance is not None,
    }
