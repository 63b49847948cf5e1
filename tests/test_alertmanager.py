"""The ``alertmanager`` receiver against a real Prometheus Alertmanager.

Alertmanager (Debian package ``prometheus-alertmanager``; ``scripts/install_alertmanager.sh``)
runs on 127.0.0.1 with clustering off and short group timers, routing every alert to a real
local webhook server (``tests/alert_receivers.py``). The monitor's AlertService posts to it
through its outbox. Checked through Alertmanager's API v2 and the webhook:

* a drift incident appears with labels alertname, model, severity, kind, feature and the
  annotations, and Alertmanager notifies the downstream webhook;
* a silence created in Alertmanager suppresses the notification of a matching alert;
* firing alerts are re-posted, so they outlive their first ``endsAt``;
* a restarted service keeps re-posting what its outbox says is firing;
* the resolve ends the alert in Alertmanager, which sends the resolved notification.

A missing ``prometheus-alertmanager`` binary fails these tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alert_receivers import RecordingReceiver, Reply
from fault_helpers import eventually
from prometheus_client import CollectorRegistry

from monitor.alerting.alertmanager import AlertmanagerReceiver, build_alert
from monitor.alerting.config import AlertingConfig, AlertmanagerReceiverConfig
from monitor.alerting.engine import AlertService
from monitor.alerting.notification import Notification, SignalEvidence
from monitor.alerting.outbox import Outbox
from monitor.clock import ManualClock, SystemClock
from monitor.errors import RetryableDeliveryError
from monitor.signals import EvaluationContext, Signal

REPOST = 0.5  # seconds: endsAt is 2 s ahead, so an alert that is not re-posted ends in 2 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Alertmanager not found on PATH: run `bash scripts/install_alertmanager.sh` "
        "(installs the Debian package prometheus-alertmanager)"
    )


def start_alertmanager(tmp: Path, webhook_url: str, port: int) -> subprocess.Popen[bytes]:
    """The Alertmanager process, routing everything to ``webhook_url``, logging to tmp."""
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "model"],
            "group_wait": "100ms",
            "group_interval": "500ms",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "hook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        ],
    }
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    with (tmp / "alertmanager.log").open("wb") as log:
        return subprocess.Popen(
            [
                alertmanager_binary(),
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: a single local instance
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@contextlib.asynccontextmanager
async def alertmanager(tmp: Path, webhook_url: str) -> AsyncIterator[str]:
    """A real Alertmanager routing everything to ``webhook_url``; yields its base URL."""
    port = free_port()
    proc = start_alertmanager(tmp, webhook_url, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/-/ready")).status_code == 200:
                        break
                tail = (tmp / "alertmanager.log").read_text(errors="replace")[-2000:]
                assert proc.poll() is None, f"alertmanager exited:\n{tail}"
                assert time.monotonic() < deadline, f"alertmanager not ready:\n{tail}"
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}; last: {last!r}")


def ctx(model: str, seq: int) -> EvaluationContext:
    now = time.time()
    return EvaluationContext(
        model=model,
        model_version="7",
        evaluated_at=now,
        window_start=now - 60,
        window_end=now,
        window_events=1000,
        events_total=1000 * seq,
        evaluation_seq=seq,
    )


def drift(model: str, severity: str) -> list[Signal]:
    return [
        Signal(model, "drift", "income", severity, 0.4 if severity != "ok" else 0.01, 0.25, "psi")
    ]


def service(url: str, outbox: Path) -> AlertService:
    config = AlertingConfig.model_validate(
        {
            "receivers": {
                "am": {"type": "alertmanager", "url": url, "repost_interval_seconds": REPOST}
            },
            "rules": [{"resolve_after": 1}],
            "dashboard_url_template": "http://grafana.example/d/monitor-drift?var-model={model}",
            "outbox_path": str(outbox),
            "delivery": {"initial_backoff_seconds": 0.1, "max_backoff_seconds": 0.5},
        }
    )
    return AlertService(
        config, registry=CollectorRegistry(), clock=SystemClock(), poll_interval_seconds=0.1
    )


async def am_alerts(url: str, **filters: str) -> list[dict[str, Any]]:
    params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{url}/api/v2/alerts", params=params)
    r.raise_for_status()
    return list(r.json())


def hook_alerts(rx: RecordingReceiver, model: str, status: str) -> list[dict[str, Any]]:
    return [
        a
        for req in rx.requests
        for a in req.json.get("alerts", [])
        if a["labels"].get("model") == model and a["status"] == status
    ]


@pytest.mark.slow
async def test_incidents_in_a_real_alertmanager(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with RecordingReceiver() as rx, alertmanager(tmp_path, rx.url) as am_url:
        alerts = service(am_url, outbox)
        await alerts.start()
        try:
            # -- a silence made in Alertmanager, for one of two models
            async with httpx.AsyncClient(timeout=5) as client:
                now = time.time()
                r = await client.post(
                    f"{am_url}/api/v2/silences",
                    json={
                        "matchers": [{"name": "model", "value": "quiet", "isRegex": False}],
                        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                        "createdBy": "test",
                        "comment": "maintenance",
                    },
                )
                assert r.status_code == 200, r.text

            assert alerts.submit(ctx("churn", 1), drift("churn", "critical"))
            assert alerts.submit(ctx("quiet", 1), drift("quiet", "critical"))

            async def both() -> list[dict[str, Any]]:
                found = await am_alerts(am_url, alertname="ModelDrift")
                return found if len(found) == 2 else []

            found = {a["labels"]["model"]: a for a in await wait_for(both, 10, "two alerts")}
            churn = found["churn"]
            assert churn["labels"] == {
                "alertname": "ModelDrift",
                "model": "churn",
                "severity": "critical",
                "kind": "drift",
                "feature": "income",
            }
            assert churn["annotations"]["summary"].startswith("[FIRING:critical] churn")
            assert "psi" in churn["annotations"]["description"]
            assert churn["annotations"]["dashboard"].endswith("var-model=churn")
            assert churn["generatorURL"].endswith("var-model=churn")
            assert churn["status"]["state"] == "active"
            assert found["quiet"]["status"]["state"] == "suppressed"
            assert found["quiet"]["status"]["silencedBy"]

            # Alertmanager notified the downstream webhook of churn, never of the silenced one
            await wait_for(
                lambda: _now(hook_alerts(rx, "churn", "firing")), 10, "webhook: churn firing"
            )

            # -- re-posting keeps the alert alive past its first endsAt (2 s)
            first_ends = churn["endsAt"]
            await asyncio.sleep(4 * REPOST + 1.0)
            (still,) = await am_alerts(am_url, model="churn")
            assert still["status"]["state"] == "active"
            assert still["endsAt"] > first_ends
            assert not hook_alerts(rx, "quiet", "firing"), "the silence did not hold"
        finally:
            await alerts.stop(grace_seconds=1)

        # -- a restarted service keeps re-posting what its outbox says fires
        alerts = service(am_url, outbox)
        await alerts.start()
        try:
            await asyncio.sleep(4 * REPOST + 1.0)  # longer than endsAt from before the restart
            (still,) = await am_alerts(am_url, model="churn")
            assert still["status"]["state"] == "active"

            # -- the resolve ends it in Alertmanager, which tells the webhook
            assert alerts.submit(ctx("churn", 2), drift("churn", "ok"))

            async def gone() -> bool:
                return not await am_alerts(am_url, model="churn")

            await wait_for(gone, 10, "churn resolved in Alertmanager")
            await wait_for(
                lambda: _now(hook_alerts(rx, "churn", "resolved")), 10, "webhook: churn resolved"
            )
            (quiet,) = await am_alerts(am_url, alertname="ModelDrift")  # still kept alive
            assert quiet["labels"]["model"] == "quiet"
        finally:
            await alerts.stop(grace_seconds=1)


async def _now(value: Any) -> Any:
    return value


def test_alert_body_labels_annotations_and_times() -> None:
    n = Notification(
        idempotency_key="k",
        fingerprint="fp",
        action="fire",
        status="firing",
        model="fraud\udcff",  # hostile: a lone surrogate
        model_version=None,
        group={"model": "fraud"},
        severity="warning",
        started_at=2000.0,  # ahead of "now": producer clock skew
        evaluated_at=2000.0,
        window_start=900.0,
        window_end=1000.0,
        window_events=10,
        signals=(
            SignalEvidence("performance", "accuracy", "warning", 0.7, 0.8),
            SignalEvidence("performance", "accuracy", "warning", 0.7, 0.8, detector="x"),
        ),
        links={"runbook_url": "https://runbooks.example/perf", "dashboard": "not a url"},
    )
    alert = build_alert(n, now=1000.0, repost_interval=30.0)
    assert alert["labels"] == {
        "alertname": "ModelPerformance",
        "model": "fraud?",
        "severity": "warning",
        "kind": "performance",
        "metric": "accuracy",
    }
    assert alert["annotations"]["runbook_url"] == "https://runbooks.example/perf"
    assert "generatorURL" not in alert  # only a real URL
    assert alert["startsAt"] == "1970-01-01T00:16:40.000Z"  # never after now
    assert alert["endsAt"] == "1970-01-01T00:18:40.000Z"  # now + 4 x 30 s
    mixed = dataclasses.replace(
        n,
        status="resolved",
        signals=(
            SignalEvidence("drift", "income", "warning", 0.3, 0.2, "psi"),
            SignalEvidence("data_quality", "missing_rate:age", "warning", 0.3, 0.2),
        ),
    )
    resolved = build_alert(mixed, now=1000.0, repost_interval=30.0)
    assert resolved["labels"]["alertname"] == "ModelMonitor"
    assert resolved["labels"]["kind"] == "data_quality,drift"
    assert "feature" not in resolved["labels"]  # two subjects
    assert resolved["endsAt"] == "1970-01-01T00:16:40.000Z"


def test_compose_routes_the_monitor_through_its_alertmanager() -> None:
    """The compose example: the monitor's receiver, and an Alertmanager config amtool accepts."""
    root = Path(__file__).resolve().parent.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    monitor_cfg = yaml.safe_load((root / "config" / "compose.yaml").read_text())
    (receiver,) = [
        r for r in monitor_cfg["alerting"]["receivers"].values() if r["type"] == "alertmanager"
    ]
    assert receiver["url"] == "${ALERTMANAGER_URL:-http://alertmanager:9093}"
    env = compose["services"]["monitor"]["environment"]
    assert env["ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert "127.0.0.1:9093:9093" in compose["services"]["alertmanager"]["ports"]
    config = root / "config" / "alertmanager" / "alertmanager.yml"
    amtool = shutil.which("amtool")
    assert amtool, "amtool not on PATH: run `bash scripts/install_alertmanager.sh`"
    res = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    routes = yaml.safe_load(config.read_text())["route"]["routes"]
    assert any("ModelDrift" in m for r in routes for m in r["matchers"])


def _notification(status: str, severity: str, seq: int) -> Notification:
    return Notification(
        idempotency_key=f"k{seq}",
        fingerprint="fp-churn",
        action="resolve" if status == "resolved" else ("fire" if seq == 1 else "update"),
        status=status,  # type: ignore[arg-type]
        model="churn",
        model_version=None,
        group={"model": "churn"},
        severity=severity,
        started_at=1000.0,
        evaluated_at=1000.0 + seq,
        window_start=900.0,
        window_end=1000.0 + seq,
        window_events=100,
        signals=(SignalEvidence("drift", "income", severity, 0.3, 0.2, "psi"),),
    )


async def test_label_changes_end_the_old_alert_and_reposts_stop_when_unconfirmed() -> None:
    """Against a recording HTTP server, on a manual clock (no Alertmanager timing involved)."""
    clock = ManualClock(2000.0)
    async with RecordingReceiver() as rx, httpx.AsyncClient() as client:
        config = AlertmanagerReceiverConfig(
            url=rx.url.removesuffix("/hook"),
            repost_interval_seconds=60.0,
            repost_for_seconds=3600.0,
        )
        am = AlertmanagerReceiver("am", config, client, clock)
        try:
            await am.send(_notification("firing", "warning", 1))
            clock.advance(10)
            await am.send(_notification("firing", "critical", 2))
            first, second = (r.json for r in rx.requests)
            assert rx.requests[0].path == "/api/v2/alerts"
            assert [a["labels"]["severity"] for a in first] == ["warning"]
            assert first[0]["endsAt"] == "1970-01-01T00:37:20.000Z"  # 2000 + 4 x 60 s
            # warning -> critical: a new label set, and the old one ends now
            assert [a["labels"]["severity"] for a in second] == ["critical", "warning"]
            assert second[1]["endsAt"] == "1970-01-01T00:33:30.000Z"  # 2010
            assert am.firing == ["fp-churn"]

            clock.advance(60)
            assert await am.repost() == 1
            (reposted,) = rx.requests[-1].json
            assert reposted["labels"]["severity"] == "critical"
            assert reposted["endsAt"] == "1970-01-01T00:38:30.000Z"  # 2070 + 240

            clock.advance(3600)  # no notification confirmed it for repost_for_seconds
            assert await am.repost() == 0
            assert am.firing == [] and len(rx.requests) == 3

            await am.send(_notification("firing", "critical", 3))
            await am.send(_notification("resolved", "critical", 4))
            (resolved,) = rx.requests[-1].json
            assert resolved["endsAt"] == "1970-01-01T01:34:30.000Z"  # now: 2070 + 3600 s
            assert am.firing == [] and await am.repost() == 0
        finally:
            await am.aclose()


async def test_a_resolve_after_a_restart_ends_the_alert_posted_before_under_other_labels(
    tmp_path: Path,
) -> None:
    """The last firing post (warning) was made by the previous run; the resolve arrives with
    other labels (critical: a resolve routed by every severity of an escalated incident).
    The restored receiver ends the warning alert in the same request; before, it posted only
    the critical resolve, and the warning alert kept firing in Alertmanager."""
    clock = ManualClock(2000.0)
    outbox = Outbox.open(tmp_path / "o.db")
    try:
        outbox.enqueue("am", _notification("firing", "warning", 1), now=1990.0, deadline_at=9e9)
        async with RecordingReceiver() as rx, httpx.AsyncClient() as client:
            config = AlertmanagerReceiverConfig(
                url=rx.url.removesuffix("/hook"), repost_interval_seconds=60.0
            )
            am = AlertmanagerReceiver("am", config, client, clock, outbox)
            try:
                assert am.firing == ["fp-churn"]
                await am.send(_notification("resolved", "critical", 2))
                (body,) = (r.json for r in rx.requests)
                assert [(a["labels"]["severity"], a["endsAt"]) for a in body] == [
                    ("critical", "1970-01-01T00:33:20.000Z"),
                    ("warning", "1970-01-01T00:33:20.000Z"),  # ended now (2000)
                ]
                assert am.firing == [] and await am.repost() == 0
            finally:
                await am.aclose()
    finally:
        outbox.close()


async def test_errors_and_repost_logs_hide_the_alertmanagers_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An Alertmanager behind a proxy: basic auth in the URL, a token header. Its receiver
    sends through its own path (not HttpReceiver.send), and neither its delivery errors nor
    the re-post loop's log line were redacted: a 4xx/5xx body echoing the credentials went
    to the log as it was, with the httpx error (the request, URL included) chained."""
    caplog.set_level(logging.DEBUG)
    password, token = f"amPassword{uuid.uuid4().hex}", f"amToken{uuid.uuid4().hex}"
    echo = {"error": "denied", "echo": [password, token, f"monitor:{password}"]}
    receiver = RecordingReceiver(default=Reply(500, body=echo))
    async with receiver as rx, httpx.AsyncClient() as client:
        url = rx.url.removesuffix("/hook").replace("http://", f"http://monitor:{password}@")
        config = AlertmanagerReceiverConfig(
            url=url, headers={"X-Scope-Token": token}, repost_interval_seconds=0.05
        )
        am = AlertmanagerReceiver("am", config, client, ManualClock(2000.0))
        try:
            rx.script(Reply(200))
            await am.send(_notification("firing", "warning", 1))  # accepted: now re-posted
            with pytest.raises(RetryableDeliveryError) as info:
                await am.send(_notification("firing", "critical", 2))
            assert info.value.status == 500 and "[redacted]" in str(info.value)
            assert info.value.__cause__ is None and info.value.__suppress_context__
            await eventually(lambda: "re-post failed" in caplog.text, within=10)
        finally:
            await am.aclose()
    assert rx.requests[0].headers["x-scope-token"] == token  # the secrets were sent
    # Our own log lines (httpx's request lines are dropped by the AlertService's filter,
    # which this receiver-level test does not install: test_alert_secrets covers it).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("monitor."))
    assert "alertmanager am: re-post failed: alertmanager am: HTTP 500" in ours
    for text in (str(info.value), ours):
        assert password not in text and token not in text
