"""What ``/metrics`` exports, checked on a scrape of real model state (no Kafka needed).

* the scrape passes ``promtool check metrics`` (no ``quantile`` label outside summaries);
* one meaning per metric: distance thresholds and test alphas, performance metrics,
  per-class metrics and bookkeeping counts each in their own family;
* ``monitor_build_info`` and the standard ``process_*``/``python_*`` collectors are on our
  registry, without ``_created`` series;
* the collector describes its families, so a duplicate name fails at registration;
* ``metrics.export: verdict`` keeps only severity, statistic and p-value per feature.

The same lint runs on a live scrape in tests/test_observability.py.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.events import LabelEvents, ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import build_profile
from monitor.service_metrics import ModelStateCollector, register_process_metrics
from monitor.simulate import DriftSpec, Simulator

WINDOW = {"size": 500, "step": 250}
CLASSES = ("low", "mid", "high")
THRESHOLDS: dict[str, dict[str, Any]] = {
    "binary": {"accuracy": {"warning": 0.6}},
    "multiclass": {"macro_f1": {"warning": 0.2}, "f1:low": {"warning": 0.1, "critical": 0.05}},
    "regression": {"mae": {"warning": 50.0}},
}


def _events(sim: Simulator, n: int, task: str) -> tuple[ModelEvents, LabelEvents]:
    preds, labels = ModelEvents(sim.model), LabelEvents(sim.model)
    for i, (e, y) in enumerate(sim.events(n)):
        score = float(e["prediction"])
        if task == "multiclass":
            pred: Any = CLASSES[min(2, int(score * 3))]
            label: Any = pred if i % 5 else CLASSES[i % 3]
        elif task == "regression":
            pred, label = 100 * score + 1, 100 * score + 1 + (i % 7) - 3
        else:
            pred, label = score, y
        preds.event_ids.append(e["event_id"])
        preds.timestamps.append(float(i))
        preds.versions.append(e["model_version"])
        preds.features.append(e["features"])
        preds.predictions.append(pred)
        labels.event_ids.append(e["event_id"])
        labels.labels.append(label)
        labels.timestamps.append(float(i))
    return preds, labels


def _model(task: str) -> ModelMonitor:
    """A model of ``task`` with one evaluation that has drift and labelled performance."""
    name = f"m-{task}"
    cfg = parse_config(
        {
            "models": [
                {
                    "name": name,
                    "window": WINDOW,
                    "performance": {
                        "task": task,
                        "window_size": 500,
                        "thresholds": THRESHOLDS[task],
                    },
                }
            ]
        }
    )
    ref_preds, _ = _events(Simulator(model=name, seed=1), 2000, task)
    ref = build_profile(name, list(zip(ref_preds.features, ref_preds.predictions, strict=True)))
    mm = ModelMonitor(cfg.model(name), cfg.limits, ref)  # type: ignore[arg-type]
    drift = DriftSpec(kind="mean", features=("income",), size=1.0, start=0)
    preds, labels = _events(Simulator(model=name, seed=2, drift=drift), 1000, task)
    first = ModelEvents(name)
    second = ModelEvents(name)
    for field in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(first, field).extend(getattr(preds, field)[:500])
        getattr(second, field).extend(getattr(preds, field)[500:])
    assert mm.ingest(first)
    mm.ingest_labels(labels, now=1000.0)
    assert mm.ingest(second)
    assert mm.last is not None and mm.last.performance
    return mm


@pytest.fixture(scope="module")
def models() -> list[ModelMonitor]:
    return [_model(t) for t in ("binary", "multiclass", "regression")]


def scrape(models: list[ModelMonitor], export: str = "full") -> str:
    registry = CollectorRegistry()
    register_process_metrics(registry, version="9.9.9", native=False)
    registry.register(ModelStateCollector(lambda: models, 20, export))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def samples(text: str) -> list[Any]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def test_scrape_passes_promtool_check_metrics(models: list[ModelMonitor]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not on PATH: run `bash scripts/install_prometheus.sh`")
    text = scrape(models)
    assert "monitor_feature_quantile{" in text and "monitor_reference_quantile{" in text
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_one_meaning_per_metric(models: list[ModelMonitor]) -> None:
    got = samples(scrape(models))
    by_name: dict[str, list[Any]] = {}
    for s in got:
        by_name.setdefault(s.name, []).append(s)
    # a bound on the statistic for distances, a significance level for tests
    assert {s.labels["detector"] for s in by_name["monitor_drift_threshold"]} >= {"psi"}
    assert {s.labels["detector"] for s in by_name["monitor_drift_alpha"]} >= {"ks"}
    assert not {s.labels["detector"] for s in by_name["monitor_drift_threshold"]} & {
        "ks",
        "chi_square",
    }
    assert all(0 < s.value < 1 for s in by_name["monitor_drift_alpha"])
    # performance metrics only; classes in their own label; bookkeeping in its own metric
    perf = by_name["monitor_model_performance"]
    metrics = {(s.labels["model"], s.labels["metric"]) for s in perf}
    assert all(":" not in m for _, m in metrics), metrics
    assert {"macro_f1", "accuracy"} <= {m for mo, m in metrics if mo == "m-multiclass"}
    assert {"mae", "rmse", "mape", "mean_error"} <= {m for mo, m in metrics if mo == "m-regression"}
    assert not {m for _, m in metrics} & {"join_pending", "window_labels", "error_drift"}
    per_class = by_name["monitor_model_class_performance"]
    assert {s.labels["class"] for s in per_class} == set(CLASSES)
    assert {s.labels["metric"] for s in per_class} == {"precision", "recall", "f1"}
    kinds = {(s.labels["model"], s.labels["kind"]) for s in by_name["monitor_performance_samples"]}
    assert ("m-binary", "join_pending") in kinds and ("m-regression", "window_labels") in kinds
    assert {s.labels["model"] for s in by_name["monitor_performance_error_drift"]} == {
        "m-binary",
        "m-multiclass",
        "m-regression",
    }
    assert "q" in by_name["monitor_feature_quantile"][0].labels
    thresholds = by_name["monitor_performance_threshold"]
    assert all(":" not in s.labels["metric"] for s in thresholds)
    assert {(s.labels["model"], s.labels["metric"]) for s in thresholds} >= {
        ("m-multiclass", "macro_f1"),
        ("m-regression", "mae"),
    }
    per_class_bounds = {
        (s.labels["metric"], s.labels["class"], s.labels["severity"], s.value)
        for s in by_name["monitor_class_performance_threshold"]
    }
    assert per_class_bounds == {("f1", "low", "warning", 0.1), ("f1", "low", "critical", 0.05)}


def test_build_info_and_standard_collectors_without_created(models: list[ModelMonitor]) -> None:
    text = scrape(models)
    (info,) = [s for s in samples(text) if s.name == "monitor_build_info"]
    assert info.value == 1.0
    assert info.labels["version"] == "9.9.9" and info.labels["native_decoder"] == "false"
    assert info.labels["python"].count(".") == 2
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text
    assert "python_info{" in text and "python_gc_collections_total" in text
    assert "_created" not in text


def test_collector_describes_its_families_so_duplicates_fail_at_registration() -> None:
    registry = CollectorRegistry()
    registry.register(ModelStateCollector(lambda: []))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("monitor_drift_statistic", "again", registry=registry)


def test_verdict_export_keeps_only_the_verdict_series(models: list[ModelMonitor]) -> None:
    full = samples(scrape(models, "full"))
    verdict = samples(scrape(models, "verdict"))
    per_feature = {s.name for s in verdict if "feature" in s.labels}
    assert per_feature == {
        "monitor_feature_drift_severity",
        "monitor_drift_statistic",
        "monitor_drift_p_value",
    }
    assert {s.name for s in full if "feature" in s.labels} > per_feature | {
        "monitor_feature_quantile",
        "monitor_drift_threshold",
    }
    # the verdict series themselves are identical in both modes
    key = lambda s: (s.name, tuple(sorted(s.labels.items())))  # noqa: E731
    full_by_key = {key(s): s.value for s in full}
    for s in verdict:
        if s.name in per_feature:
            v = full_by_key[key(s)]
            assert v == s.value or (v != v and s.value != s.value)
    n_full = sum(1 for s in full if "feature" in s.labels)
    n_verdict = sum(1 for s in verdict if "feature" in s.labels)
    assert n_verdict * 3 < n_full, (n_verdict, n_full)


def test_export_mode_is_configurable() -> None:
    assert parse_config({}).metrics.export == "full"
    assert parse_config({"metrics": {"export": "verdict"}}).metrics.export == "verdict"
    with pytest.raises(Exception, match="export"):
        parse_config({"metrics": {"export": "some"}})
