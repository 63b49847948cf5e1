"""What an on-call engineer reads: like compared with like, the version once, working links.

Notifications go through :class:`AlertService` to real local HTTP receivers
(Slack, PagerDuty, webhook), and the assertions read what they received.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from alert_receivers import RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.clock import SystemClock
from monitor.signals import EvaluationContext, Signal

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = (
    "https://grafana.example/d/m?var-model={model}&from={window_start_ms}&to={window_end_ms}"
)


async def _deliver_one(tmp_path: Path, version: str, window: float) -> dict[str, dict]:
    """One fire with a KS and a PSI signal to all three receiver types; the bodies received."""
    async with (
        RecordingReceiver() as slack,
        RecordingReceiver() as pd,
        RecordingReceiver() as hook,
    ):
        config = AlertingConfig.model_validate(
            {
                "receivers": {
                    "chat": {"type": "slack", "webhook_url": slack.url},
                    "pager": {"type": "pagerduty", "routing_key": "rk", "url": pd.url},
                    "hook": {"type": "webhook", "url": hook.url},
                },
                "rules": [
                    {"subject": "monthly_*", "runbook_url": "https://wiki.example/rb/{model}"},
                    {},
                ],
                "runbook_urls": {"churn*": "https://wiki.example/churn"},
                "dashboard_url_template": DASHBOARD,
                "delivery": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.05},
            }
        )
        svc = AlertService(
            config,
            registry=CollectorRegistry(),
            clock=SystemClock(),
            outbox_path=str(tmp_path / "o.db"),
            rng=random.Random(1),
            poll_interval_seconds=0.05,
        )
        await svc.start()
        try:
            now = time.time()
            ctx = EvaluationContext("churn-3c", version, now, now - window, now, 40, 40, 1)
            signals = [
                Signal(
                    "churn-3c",
                    "drift",
                    "monthly_spend",
                    "critical",
                    0.275,
                    1e-05,
                    "ks",
                    {"ks": 0.275, "p_value": 3.2e-09},
                ),
                Signal("churn-3c", "drift", "tenure", "warning", 0.31, 0.2, "psi", {"psi": 0.31}),
            ]
            svc.submit(ctx, signals)
            for rx in (slack, pd, hook):
                await rx.wait_for_requests(1)
        finally:
            await svc.stop()
        return {
            "slack": slack.requests[0].json,
            "pd": pd.requests[0].json,
            "hook": hook.requests[0].json,
        }


async def test_p_value_against_alpha_and_statistic_against_threshold_everywhere(tmp_path):
    got = await _deliver_one(tmp_path, "v1", 600.0)
    slack_text = json.dumps(got["slack"], ensure_ascii=False)
    # Escaped as Slack requires (it shows &lt; as "<"): raw, "< alpha ... 0.31 >" is a link.
    assert "p=3.2e-09 &lt; alpha 1e-05 (ks statistic 0.275)" in slack_text
    assert "psi 0.31 &gt; threshold 0.2" in slack_text
    assert "<" not in slack_text and ">" not in slack_text
    assert "0.275 vs threshold 1e-05" not in slack_text  # the old, meaningless comparison
    details = got["pd"]["payload"]["custom_details"]["signals"]
    ks = next(s for s in details if s["subject"] == "monthly_spend")
    psi = next(s for s in details if s["subject"] == "tenure")
    assert (ks["compared"], ks["alpha"], ks["p_value"]) == ("p_value", 1e-05, 3.2e-09)
    assert ks["text"] == "p=3.2e-09 < alpha 1e-05 (ks statistic 0.275)"
    assert (psi["compared"], psi["alpha"], psi["threshold"]) == ("statistic", None, 0.2)
    assert got["hook"]["signals"] == details


async def test_version_is_not_prefixed_twice(tmp_path):
    got = await _deliver_one(tmp_path, "v1", 600.0)
    for text in (got["slack"]["text"], got["pd"]["payload"]["summary"], got["hook"]["summary"]):
        assert "churn-3c v1:" in text and "vv1" not in text
    (tmp_path / "b").mkdir()
    got = await _deliver_one(tmp_path / "b", "7", 600.0)
    assert "churn-3c v7:" in got["hook"]["summary"]


async def test_a_sub_second_window_still_links_a_usable_time_range(tmp_path):
    got = await _deliver_one(tmp_path, "v1", 0.0)
    url = got["hook"]["links"]["dashboard"]
    query = parse_qs(urlsplit(url).query)
    start, end = int(query["from"][0]), int(query["to"][0])
    assert end - start >= 600_000, url
    now_ms = time.time() * 1000
    assert start < now_ms - 200_000 and end > now_ms - 60_000  # the window is inside the range


async def test_runbook_link_in_every_notification(tmp_path):
    got = await _deliver_one(tmp_path, "v1", 600.0)
    # The most severe signal's rule (monthly_*) names the runbook, with {model} filled in.
    runbook = "https://wiki.example/rb/churn-3c"
    assert got["hook"]["links"]["runbook"] == runbook
    assert {"href": runbook, "text": "runbook"} in got["pd"]["links"]
    buttons = [
        e
        for b in got["slack"]["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button"
    ]
    assert any(b["url"] == runbook for b in buttons)


def test_runbook_falls_back_to_the_model_glob():
    from monitor.alerting.engine import links_for

    config = AlertingConfig.model_validate(
        {"runbook_urls": {"fraud-*": "https://wiki/fraud", "*": "https://wiki/any/{model}"}}
    )
    ctx = EvaluationContext("fraud-eu", None, 100.0, 0.0, 100.0, 1, 1, 1)
    sig = Signal("fraud-eu", "drift", "x", "warning", 0.3, 0.2, "psi")
    assert links_for(config, ctx, "fp", [sig]) == {"runbook": "https://wiki/fraud"}
    ctx = EvaluationContext("churn", None, 100.0, 0.0, 100.0, 1, 1, 1)
    assert links_for(config, ctx, "fp", [sig]) == {"runbook": "https://wiki/any/churn"}


def test_prometheus_rules_carry_a_runbook_url_that_exists():
    import yaml

    rules = yaml.safe_load((ROOT / "config" / "prometheus" / "rules.yml").read_text())
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for rule in alerts:
        url = rule["annotations"].get("runbook_url", "")
        assert url.startswith("https://"), rule["alert"]
        anchor = url.rpartition("#")[2]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert f"\n## {rule['alert']}\n" in runbook, rule["alert"]


def test_grafana_detector_table_compares_like_with_like():
    drift = json.loads((ROOT / "grafana" / "dashboards" / "drift.json").read_text())
    (table,) = [p for p in drift["panels"] if p.get("title") == "Current detector results"]
    exprs = {t["refId"]: t["expr"] for t in table["targets"]}
    names = next(t for t in table["transformations"] if t["id"] == "organize")["options"][
        "renameByName"
    ]
    columns = {names[f"Value #{ref}"]: expr for ref, expr in exprs.items()}
    p_value = next(e for c, e in columns.items() if c.startswith("p-value"))
    alpha = next(e for c, e in columns.items() if c.startswith("alpha"))
    threshold = next(e for c, e in columns.items() if c.startswith("threshold"))
    assert "monitor_drift_p_value" in p_value
    # Alphas (on p-values) and thresholds (on statistics) are separate metrics, so each
    # column holds one kind of bound and never the other.
    assert "monitor_drift_alpha" in alpha and "monitor_drift_threshold" not in alpha
    assert "monitor_drift_threshold" in threshold and "monitor_drift_alpha" not in threshold


def test_old_outbox_rows_without_the_new_fields_still_load():
    from monitor.alerting.notification import Notification

    record = {
        "format": 1, "idempotency_key": "k", "fingerprint": "f", "action": "fire",
        "status": "firing", "model": "m", "model_version": "1", "group": {"model": "m"},
        "severity": "warning", "started_at": 1.0, "evaluated_at": 2.0, "window_start": 0.0,
        "window_end": 2.0, "window_events": 5,
        "signals": [{"kind": "drift", "subject": "x", "severity": "warning", "statistic": 0.3,
                     "threshold": 0.2, "detector": "psi", "p_value": None, "details": {}}],
        "links": {}, "reason": None, "ended_at": None,
    }  # fmt: skip
    n = Notification.from_record(record)
    assert n.cleared == () and n.signals[0].comparison() == "psi 0.3 > threshold 0.2"


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation other than
    '-' and '_' dropped, spaces to '-'."""
    import re

    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_runbook_base_url_links_each_signal_kind_to_its_runbook_section():
    import pytest
    from pydantic import ValidationError

    from monitor.alerting.engine import RUNBOOK_ANCHORS, links_for

    base = "https://git.example/acme/kafka-model-monitor/blob/main/docs/RUNBOOK.md"
    config = AlertingConfig.model_validate({"runbook_base_url": base})
    ctx = EvaluationContext("churn", None, 100.0, 0.0, 100.0, 1, 1, 1)

    def runbook(kind: str, severity: str, cfg: AlertingConfig = config) -> str | None:
        sig = Signal("churn", kind, "x", severity, 0.3, 0.2, "psi")  # type: ignore[arg-type]
        return links_for(cfg, ctx, "fp", [sig]).get("runbook")

    assert runbook("drift", "warning") == base + "#featuredrift"
    assert runbook("drift", "critical") == base + "#featuredriftcritical"
    assert runbook("data_quality", "critical") == base + "#data-quality-signals-data_quality"
    assert runbook("multivariate", "warning") == base + "#multivariate-drift-multivariate"
    assert runbook("performance", "warning") == base + "#modelalertsfiring"
    # Every anchor is a section of docs/RUNBOOK.md, and every signal kind has one.
    anchors = _github_anchors((ROOT / "docs" / "RUNBOOK.md").read_text())
    assert set(RUNBOOK_ANCHORS.values()) <= anchors, set(RUNBOOK_ANCHORS.values()) - anchors
    from typing import get_args

    from monitor.signals import SignalKind

    assert set(get_args(SignalKind)) <= set(RUNBOOK_ANCHORS)
    # A rule's or a model glob's runbook wins; without a base there is none (the default).
    glob = AlertingConfig.model_validate(
        {"runbook_base_url": base, "runbook_urls": {"churn": "https://wiki/churn"}}
    )
    assert runbook("drift", "warning", glob) == "https://wiki/churn"
    assert AlertingConfig().runbook_base_url is None
    assert runbook("drift", "critical", AlertingConfig()) is None
    for bad in ("runbooks/RUNBOOK.md", base + "#featuredrift", base + "?m={model}"):
        with pytest.raises(ValidationError, match="runbook_base_url"):
            AlertingConfig.model_validate({"runbook_base_url": bad})


def test_a_runbook_base_url_without_a_host_is_refused_at_its_path():
    """``https://`` or a URL with a space would be accepted and then link nowhere in
    every notification; the error names ``alerting.runbook_base_url`` itself."""
    import pytest

    from monitor.config import parse_config
    from monitor.errors import ConfigError

    for bad in ("https://", "https://wiki example/RUNBOOK.md", "https:///RUNBOOK.md"):
        with pytest.raises(ConfigError) as info:
            parse_config({"alerting": {"runbook_base_url": bad}})
        assert info.value.problems[0].startswith("alerting.runbook_base_url: "), info.value


def test_the_example_config_documents_the_runbook_base_url():
    """config/monitor.yaml shows ``alerting.runbook_base_url`` (commented out: no default),
    with an example the config accepts."""
    import yaml

    text = (ROOT / "config" / "monitor.yaml").read_text()
    (line,) = [x for x in text.splitlines() if x.strip().startswith("# runbook_base_url:")]
    example = yaml.safe_load(line.strip().lstrip("# "))
    config = AlertingConfig.model_validate(example)
    assert config.runbook_base_url is not None
    assert config.runbook_base_url.endswith("/docs/RUNBOOK.md")
