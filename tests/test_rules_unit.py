"""`promtool test rules` on config/prometheus/rules.yml: the alerts fire on the series the
monitor exports, and stay quiet when nothing is wrong.

``promtool check rules`` (tests/test_observability.py) only parses the file; these series
scenarios pin what each rule does in time (its ``for``), including the case that needs the
monitor's help: ``NoEvents`` fires for a model whose counter stays at 0 (the monitor creates
it at start for every listed model), never for an absent series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES = Path(__file__).resolve().parent.parent / "config" / "prometheus" / "rules.yml"
JOB = 'job="monitor", instance="m:9108"'


def _annotations(name: str, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them (these use only ``$labels``)."""
    (rule,) = (
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == name
    )
    out = {}
    for key, text in rule["annotations"].items():
        for label, value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", value)
        assert "{{" not in text, text
        out[key] = text
    return out


def _firing(name: str, at: str, labels: dict[str, str] | None) -> dict[str, object]:
    expected = (
        []
        if labels is None
        else [
            {
                "exp_labels": {**labels, "severity": "warning"},
                "exp_annotations": _annotations(name, labels),
            }
        ]
    )
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def test_alert_rules_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not on PATH: run `bash scripts/install_prometheus.sh`")
    suite = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # a model at 0 from the start: its producer is down
                    {
                        "series": f'monitor_events_processed_total{{{JOB}, model="quiet"}}',
                        "values": "0x40",
                    },
                    # a model that keeps receiving events
                    {
                        "series": f'monitor_events_processed_total{{{JOB}, model="busy"}}',
                        "values": "0+60x40",
                    },
                    # checkpoints fail from minute 10 on
                    {
                        "series": f'monitor_checkpoints_total{{{JOB}, outcome="error"}}',
                        "values": "0x10 1+1x30",
                    },
                    {
                        "series": f'monitor_checkpoints_total{{{JOB}, outcome="ok"}}',
                        "values": "0+1x40",
                    },
                ],
                "alert_rule_test": [
                    # the rate is 0 from the second sample on, then 10m of "for"
                    _firing("NoEvents", "9m", None),
                    _firing("NoEvents", "25m", {"job": "monitor", "model": "quiet"}),
                    _firing("CheckpointFailing", "9m", None),
                    _firing("CheckpointFailing", "20m", {"job": "monitor"}),
                ],
            },
            {
                # No series at all (a restart before the first event, on a build that
                # created it only then): the rule cannot fire. The monitor avoids this.
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'monitor_checkpoints_total{{{JOB}, outcome="error"}}',
                        "values": "0x40",
                    },
                ],
                "alert_rule_test": [
                    _firing("NoEvents", "30m", None),
                    _firing("CheckpointFailing", "30m", None),
                ],
            },
        ],
    }
    path = tmp_path / "rules_test.yml"
    path.write_text(json.dumps(suite))  # JSON is YAML
    res = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
