"""Structure of the Grafana provisioning and dashboards (no Grafana server needed).

What Grafana would otherwise only reveal in a browser: a datasource uid that does not
resolve, a variable used but never defined, duplicate panel ids, panels without a unit or
a description. That the queries return data is tests/test_observability.py's job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"}
REQUIRED_UIDS = {
    "monitor-overview",
    "monitor-drift",
    "monitor-performance",
    "monitor-service-health",
}


def provisioned_datasources() -> list[dict[str, Any]]:
    out = []
    for f in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml")):
        doc = yaml.safe_load(f.read_text())
        assert doc.get("apiVersion") == 1, f
        out.extend(doc["datasources"])
    return out


def iter_panels(panels: list[dict[str, Any]]) -> Any:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_datasource_provisioning() -> None:
    sources = provisioned_datasources()
    assert [s["uid"] for s in sources] == ["prometheus"]
    (ds,) = sources
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"  # the compose service name and port


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    files = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
    assert files
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    for f in files:
        for provider in yaml.safe_load(f.read_text())["providers"]:
            path = provider["options"]["path"]
            assert any(
                str(m).endswith(f":{path}:ro") or str(m).endswith(f":{path}") for m in mounts
            ), f"{f.name}: {path} is not mounted in the grafana service"


def test_all_dashboards_present() -> None:
    uids = {load(p)["uid"] for p in DASHBOARD_FILES}
    assert uids >= REQUIRED_UIDS
    assert len(uids) == len(DASHBOARD_FILES), "dashboard uids must be unique"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = load(path)
    uids = {s["uid"] for s in provisioned_datasources()}
    assert dash.get("title") and dash.get("uid")
    assert len(dash["uid"]) <= 40  # Grafana's limit
    panels = list(iter_panels(dash["panels"]))
    assert panels

    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"

    assert "prometheus" in uids  # the provisioned one the ${datasource} variable finds

    def check_ds(ds: Any, where: str) -> None:
        # Through the template variable, never a hard-coded uid: an existing Grafana that
        # imports the dashboard has its own uid for its Prometheus.
        if isinstance(ds, dict) and ds.get("type") != "grafana":
            assert ds == {"type": "prometheus", "uid": "${datasource}"}, f"{where}: {ds}"
        elif isinstance(ds, str):
            pytest.fail(f"{where}: datasource by name {ds!r}; use {{type, uid}}")

    variables = dash.get("templating", {}).get("list", [])
    defined = {v["name"] for v in variables}
    assert variables[0]["name"] == "datasource", "the datasource variable comes first"
    assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
    assert {"job", "instance"} <= defined, "no job/instance variable"
    for v in variables[1:]:
        check_ds(v.get("datasource"), f"variable {v['name']}")
    used: set[str] = set()
    var_ref = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")

    for p in panels:
        where = f"panel {p['id']} {p.get('title')!r}"
        if p["type"] == "row":
            used.update(a or b or c for a, b, c in var_ref.findall(p.get("title", "")))
            continue
        assert p.get("title"), where
        assert len(p.get("description", "")) >= 40, f"{where}: say what it means and what to do"
        check_ds(p.get("datasource"), where)
        targets = p.get("targets", [])
        assert targets, f"{where}: no queries"
        for t in targets:
            check_ds(t.get("datasource"), where)
            assert t.get("expr"), f"{where}: empty expression"
            for selector in re.findall(r"\bmonitor_\w+\{[^}]*\}", t["expr"]):
                assert 'job=~"$job"' in selector, f"{where}: {selector} ignores $job"
            used.update(a or b or c for a, b, c in var_ref.findall(t["expr"]))
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refIds"
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        if p["type"] in ("timeseries", "stat", "table", "state-timeline", "gauge"):
            assert defaults.get("unit"), f"{where}: no unit"
        if p["type"] == "timeseries":
            assert "[5m]" not in json.dumps(targets), f"{where}: use [$__rate_interval]"
        gp = p["gridPos"]
        assert gp["x"] >= 0 and gp["x"] + gp["w"] <= 24, f"{where}: outside the grid"

    for v in variables:
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        used.update(a or b or c for a, b, c in var_ref.findall(q))
    undefined = used - defined - BUILTIN_VARS
    assert not undefined, f"variables used but not defined: {sorted(undefined)}"


def _thresholds(dash: dict[str, Any], title: str) -> list[float]:
    for p in iter_panels(dash["panels"]):
        if p.get("title") == title:
            steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            return [s["value"] for s in steps if s["value"] is not None]
    raise AssertionError(f"no panel {title!r}")


def test_drift_thresholds_match_the_default_alert_levels() -> None:
    from monitor.detectors.config import DriftConfig

    cfg = DriftConfig()
    drift = load(GRAFANA / "dashboards" / "drift.json")
    assert _thresholds(drift, "PSI per feature") == [cfg.psi.warning, cfg.psi.critical]
    assert _thresholds(drift, "KS p-value per feature") == [cfg.ks.alpha / 10, cfg.ks.alpha]
    panel = next(p for p in iter_panels(drift["panels"]) if p["type"] == "state-timeline")
    assert "monitor_feature_drift_severity" in panel["targets"][0]["expr"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    from monitor.service_metrics import SEVERITY_LEVEL

    assert {int(k): v["text"] for k, v in mapping["options"].items()} == {
        v: k for k, v in SEVERITY_LEVEL.items()
    }


def test_performance_dashboard_covers_every_task() -> None:
    """Binary, multiclass and regression each have their panels (the live test checks data)."""
    perf = load(GRAFANA / "dashboards" / "performance.json")
    exprs = " ".join(t["expr"] for p in iter_panels(perf["panels"]) for t in p.get("targets", []))
    for needle in (
        "estimated_accuracy",  # binary: realised beside estimated
        "macro_f1",
        "macro_precision",
        "macro_recall",
        'monitor_model_class_performance{job=~"$job", instance=~"$instance", '
        'model="$multiclass_model", metric="f1"}',
        "mae|rmse",
        'metric="mape"',
        'metric="mean_error"',
        'monitor_performance_error_drift{job=~"$job", instance=~"$instance", '
        'model="$regression_model"}',
    ):
        assert needle in exprs, needle
