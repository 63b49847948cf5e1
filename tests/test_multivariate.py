"""Multivariate drift: a correlation flip with unchanged marginals, seen by PCA only."""

from __future__ import annotations

import copy

import numpy as np

from monitor.config import parse_config
from monitor.detectors.base import DetectorResult
from monitor.detectors.config import DriftConfig
from monitor.detectors.pca import PCADetector
from monitor.drift import DriftTracker
from monitor.events import ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.multivariate import MULTIVARIATE
from monitor.reference import ReferenceProfile, build_profile
from monitor.simulate import Simulator

WINDOW = {"size": 2000, "step": 500}


def _rows(seed: int, n: int, rho: float) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    x, e, z = rng.normal(size=(3, n))
    y = rho * x + np.sqrt(1 - rho**2) * e
    return [
        {"a": float(a), "b": float(b), "c": float(c)}
        for a, b, c in zip(x * 10 + 50, y * 3 - 1, z, strict=True)
    ]


def _events(rows: list[dict[str, float]]) -> ModelEvents:
    out = ModelEvents("m")
    for i, r in enumerate(rows):
        out.event_ids.append(f"e{i}")
        out.timestamps.append(float(i))
        out.versions.append(None)
        out.features.append(r)
        out.predictions.append(0.5)
    return out


def _monitor(profile: ReferenceProfile, **model: object) -> ModelMonitor:
    cfg = parse_config({"models": [{"name": "m", "window": WINDOW, **model}]})
    return ModelMonitor(cfg.model("m"), cfg.limits, profile)  # type: ignore[arg-type]


def _firing(evaluations: list) -> list[tuple[int, str, str]]:
    return [
        (i, s.kind, s.subject)
        for i, e in enumerate(evaluations)
        for s in e.signals
        if s.severity != "ok"
    ]


def test_correlation_flip_with_unchanged_marginals_is_seen_only_by_pca() -> None:
    profile = build_profile("m", [(r, 0.5) for r in _rows(1, 5000, 0.8)])
    assert profile.joint is not None and profile.joint_columns == ["a", "b", "c"]
    mm = _monitor(profile)
    stationary = mm.ingest(_events(_rows(2, 6000, 0.8)))
    assert _firing(stationary) == []
    flipped = mm.ingest(_events(_rows(3, 1000, -0.8)))
    fired = _firing(flipped)
    # Within two evaluations of the onset, and only the multivariate signal.
    assert fired and fired[0][0] <= 1
    assert {(kind, subject) for _, kind, subject in fired} == {("multivariate", MULTIVARIATE)}
    signal = next(s for s in flipped[-1].signals if s.kind == "multivariate")
    named = str(signal.details["features"]).split(", ")
    assert {n.split(" ")[0] for n in named[:2]} == {"a", "b"}
    assert signal.detector == "pca"
    assert flipped[-1].verdicts[MULTIVARIATE].drifting


def test_stationary_stream_with_missing_values_raises_no_multivariate_signal() -> None:
    sim = Simulator(seed=1)
    profile = build_profile("m", [(e["features"], e["prediction"]) for e, _ in sim.events(4000)])
    mm = _monitor(profile)
    out = ModelEvents("m")
    for e, _ in Simulator(seed=5).events(20_000):
        out.event_ids.append(e["event_id"])
        out.timestamps.append(float(len(out.event_ids)))
        out.versions.append(None)
        out.features.append(e["features"])
        out.predictions.append(e["prediction"])
    evs = mm.ingest(out)
    assert len(evs) == 37
    assert all(MULTIVARIATE in e.results for e in evs)
    assert [f for f in _firing(evs) if f[1] == "multivariate"] == []


def test_profile_without_joint_rows_learns_them_from_the_first_window() -> None:
    profile = build_profile("m", [(r, 0.5) for r in _rows(1, 5000, 0.8)])
    old = ReferenceProfile.from_json(profile.to_json())
    assert old.joint is not None  # the joint rows survive the file...
    old.joint, old.joint_columns = None, []  # ... and a profile from before them has none
    mm = _monitor(old)
    evs = mm.ingest(_events(_rows(2, 3000, 0.8)))
    assert MULTIVARIATE not in evs[0].results and MULTIVARIATE in evs[1].results
    flipped = mm.ingest(_events(_rows(3, 1000, -0.8)))
    assert ("multivariate", MULTIVARIATE) in {(k, s) for _, k, s in _firing(flipped)}
    off = _monitor(profile, multivariate={"enabled": False})
    assert all(MULTIVARIATE not in e.results for e in off.ingest(_events(_rows(3, 3000, -0.8))))


def test_pca_p_value_is_corrected_with_the_ks_family() -> None:
    def ks(p: float) -> DetectorResult:
        return DetectorResult("ks", 0.1, p, 1e-5, p < 1e-5, "warning" if p < 1e-5 else "ok")

    pca = DetectorResult("pca", 0.1, 6e-6, 1e-5, True, "warning")
    tracker = DriftTracker(DriftConfig(correction="bonferroni"))
    verdicts = tracker.observe({"x": [ks(0.5)], MULTIVARIATE: [pca]})
    # Alone in its family it would stay at 6e-6 (< alpha); with the KS test it is 1.2e-5.
    assert verdicts[MULTIVARIATE].results[0].p_value == 1.2e-5
    assert not verdicts[MULTIVARIATE].raw_drifted


def test_learned_reference_keeps_its_joint_rows_across_a_checkpoint() -> None:
    from monitor.state_format import decode, encode

    cfg = parse_config(
        {"models": [{"name": "m", "window": WINDOW, "reference": {"learn_first": 3000}}]}
    )
    settings = cfg.model("m")
    assert settings is not None
    mm = ModelMonitor(settings, cfg.limits)
    assert mm.ingest(_events(_rows(1, 5500, 0.8)))
    assert mm.multivariate.detector is not None  # fitted on the learned rows at once
    restored, notes = ModelMonitor.restore(settings, cfg.limits, decode(encode(mm.export_state())))
    assert notes == []
    assert restored.multivariate.detector is not None
    evs = restored.ingest(_events(_rows(3, 1000, -0.8)))
    assert MULTIVARIATE in evs[0].results
    assert ("multivariate", MULTIVARIATE) in {(k, s) for _, k, s in _firing(evs)}


def _full(mm: ModelMonitor) -> DetectorResult:
    """The PCA result of ``mm``'s window now, every row projected by a fresh detector."""
    d = copy.deepcopy(mm.multivariate.detector)  # its evaluate projects every row
    assert isinstance(d, PCADetector)
    cols = [mm.numeric_columns.index(f) for f in mm.multivariate.features]
    return d.evaluate(mm.window.numeric()[:, cols])


def test_pca_kept_row_errors_match_a_full_recompute_across_a_checkpoint() -> None:
    """The monitor projects only the rows appended since its last evaluation (issue 19);
    through ingest of batches of one step or several windows, a restore from a checkpoint
    and a correlation flip, every result is that of projecting every row. (Batches of
    whole steps: the last evaluation of a batch is then of the window as it is after.)"""
    from monitor.state_format import decode, encode

    profile = build_profile("m", [(r, 0.5) for r in _rows(1, 3000, 0.8)])
    mm = _monitor(profile)
    seen = 0

    def check(m: ModelMonitor, evs: list) -> None:
        nonlocal seen
        for e in evs[-1:]:  # the last evaluation of the batch: the window as it is now
            got, full = e.results[MULTIVARIATE][0], _full(m)
            assert abs(got.statistic - full.statistic) <= 1e-12
            assert abs(got.p_value - full.p_value) <= 1e-12 * max(full.p_value, 1e-300)
            assert got.details.keys() == full.details.keys()
            seen += 1

    for n, seed, rho in [(2500, 2, 0.8), (500, 3, 0.8), (2000, 4, 0.8), (1000, 5, -0.8)]:
        check(mm, mm.ingest(_events(_rows(seed, n, rho))))
    restored, notes = ModelMonitor.restore(
        mm.settings, mm.limits, decode(encode(mm.export_state())), profile
    )
    assert notes == []
    for n, seed, rho in [(500, 6, -0.8), (1500, 7, 0.8), (4500, 8, 0.8)]:
        check(restored, restored.ingest(_events(_rows(seed, n, rho))))
    assert seen == 7
