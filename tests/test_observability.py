"""The shipped dashboards and Prometheus rules, checked against a real Prometheus.

``test_dashboards_and_rules_against_prometheus`` runs the monitor in-process on the local
Kafka broker with a stream in which ``income`` and ``credit_score`` drift, starts the
Prometheus server binary (Debian package ``prometheus``; ``scripts/install_prometheus.sh``)
scraping it every second with ``config/prometheus/rules.yml`` loaded, and then asks
Prometheus's HTTP API:

* every PromQL expression of every panel of every dashboard in ``grafana/dashboards``
  (template variables resolved through Prometheus as Grafana would; ``$__rate_interval``
  replaced by a window that fits the test) parses and returns a non-empty result;
* every template variable query (``label_values(...)``) returns values;
* every recording rule returns data; every alert rule evaluates without error and the
  part of it before its threshold comparison returns data;
* ``FeatureDrift`` is firing for the drifted features, and not for a stable one.

The rules are loaded with every ``for:`` shortened to 1s (the rest of the file unchanged) so
that the drift alert can fire within the test's time budget.

A missing ``prometheus``/``promtool`` binary fails these tests (CI installs it); it never
skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import yaml
from aiohttp import web

from devtools.local_kafka import create_topics
from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, Simulator, publish, write_reference

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROM_CONFIG = ROOT / "config" / "prometheus" / "prometheus.yml"
RULES = ROOT / "config" / "prometheus" / "rules.yml"
MODEL = "credit-risk"  # binary; sorts first, so $model on the performance dashboard is it
MULTICLASS = "iris-species"
REGRESSION = "house-price"
DRIFTED = ("income", "credit_score")
STABLE = "tenure_months"  # never drifted by the stream; FeatureDrift must not fire for it
RATE_INTERVAL = "15s"  # what $__rate_interval stands for: >= 4 scrapes at 1 s


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` not found on PATH: run `bash scripts/install_prometheus.sh` "
            "(installs the Debian package `prometheus`, which provides prometheus and promtool)"
        )
    return path


# --------------------------------------------------------------------------- promtool


def test_promtool_check_config() -> None:
    res = subprocess.run(
        [binary("promtool"), "check", "config", str(PROM_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_check_rules() -> None:
    res = subprocess.run(
        [binary("promtool"), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


# --------------------------------------------------------------------------- expressions


def dashboard_files() -> list[Path]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}"
    return files


def iter_panels(panels: list[dict[str, Any]]) -> Any:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every Prometheus target."""
    out = []
    for p in iter_panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((p.get("title", "?"), t["expr"]))
    return out


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"undefined variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(repl, expr)


_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*bool)?")


def split_threshold(expr: str) -> tuple[str, str | None]:
    """Split ``signal <op> threshold`` at the last top-level comparison operator.

    Returns (signal, threshold) or (expr, None) if the expression has no top-level comparison.
    Brackets, braces, parentheses and quoted strings are skipped.
    """
    depth, quote, last = 0, "", None
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            m = _COMPARISON.match(expr, i)
            if m and not (m.group(1) in "<>" and expr[i + 1 : i + 2] == "="):
                last = m
                i = m.end()
                continue
        i += 1
    if last is None:
        return expr.strip(), None
    return expr[: last.start()].strip(), expr[last.end() :].strip()


def test_split_threshold() -> None:
    assert split_threshold('max by (m) (x{a="b>c"}) >= 1') == ('max by (m) (x{a="b>c"})', "1")
    assert split_threshold("time() - y > 120") == ("time() - y", "120")
    assert split_threshold("(a > 1) / b") == ("(a > 1) / b", None)
    assert split_threshold("a == bool 0") == ("a", "0")


# --------------------------------------------------------------------------- Prometheus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus server in a temp dir, scraping one target every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shipped = yaml.safe_load(PROM_CONFIG.read_text())
        jobs = [j for j in shipped["scrape_configs"] if j["job_name"] == "monitor"]
        assert jobs, "config/prometheus/prometheus.yml has no job_name: monitor"
        job = dict(jobs[0])
        job["static_configs"] = [{"targets": [target]}]
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        rules = RULES.read_text()
        fast_rules = re.sub(r"(?m)^(\s+for:\s*)\S+", r"\g<1>1s", rules)
        assert fast_rules != rules or "for:" not in rules
        (workdir / "rules.yml").write_text(fast_rules)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yml")],
            "scrape_configs": [job],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def log_tail(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]


async def api(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    r = await client.get(path, params=params)
    body = r.json()
    assert r.status_code == 200 and body.get("status") == "success", (path, params, body)
    return body["data"]


async def query(client: httpx.AsyncClient, expr: str) -> list[Any]:
    data = await api(client, "/api/v1/query", query=expr)
    return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]


async def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}; last: {last!r}")


_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$")


async def resolve_variables(client: httpx.AsyncClient, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's value as Grafana would substitute it: All -> allValue, else the first."""
    values = {"__rate_interval": RATE_INTERVAL, "__interval": "1s", "__range": "1m"}
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] == "datasource":  # picks the Prometheus; appears in no expression
            assert var["query"] == "prometheus", var
            continue
        q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(substitute(q, values))
        assert m, f"{dashboard['uid']}: variable {var['name']}: unsupported query {q!r}"
        series = await api(client, "/api/v1/series", **{"match[]": m.group(1)})
        found = sorted({s[m.group(2)] for s in series if m.group(2) in s})
        assert found, f"{dashboard['uid']}: variable {var['name']} ({q}) has no values"
        if var.get("includeAll") and var.get("allValue"):
            values[var["name"]] = var["allValue"]
        else:
            values[var["name"]] = found[0]
    return values


# --------------------------------------------------------------------------- the stream


class Receiver:
    """Accepts every notification (so delivery metrics have data)."""

    def __init__(self) -> None:
        self.count = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        return web.Response(status=204)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def odd_messages() -> list[bytes]:
    """Messages that exercise the invalid-event and schema-problem metrics."""
    sim = Simulator(model=MODEL, seed=3)
    out = [b"not json", b"[1, 2]", orjson.dumps({"model": MODEL, "features": {}})]
    for i, (event, _) in enumerate(sim.events(8)):
        event["features"]["income"] = "n/a"  # mistyped value: counted, recorded as missing
        event["features"]["extra_feature"] = 1.0  # absent from the schema
        event["features"]["region"] = f"new-region-{i}"  # overflows max_categories_per_feature
        out.append(orjson.dumps(event))
    return out


def monitor_config(tmp: Path, bootstrap: str, tag: str, receiver_url: str) -> Any:
    rate_thresholds = {"warning": 0.99, "alert_when": "above"}
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"obs-{tag}",
                "predictions_topic": f"predictions-{tag}",
                "labels_topic": f"labels-{tag}",
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
            },
            "http": {"host": "127.0.0.1", "port": 0},
            "state": {"path": str(tmp / "state.sqlite"), "checkpoint_interval_seconds": 2},
            "limits": {"max_categories_per_feature": 6},
            "defaults": {"window": {"type": "count", "size": 1000, "step": 250}},
            "models": [
                {
                    "name": MODEL,
                    "reference": {"path": str(tmp / "reference.jsonl")},
                    "performance": {
                        "task": "binary",
                        "window_size": 1000,
                        "labels_stale_after_seconds": 86400,  # the label age panel's bound
                        "thresholds": {
                            "accuracy": {"warning": 0.7, "critical": 0.6},
                            "f1": {"warning": 0.2},
                            "precision": {"warning": 0.2},
                            "recall": {"warning": 0.1},
                            "roc_auc": {"warning": 0.6},
                            "log_loss": {"warning": 0.6},
                            "brier": {"warning": 0.3},
                            "positive_rate_predicted": rate_thresholds,
                        },
                    },
                },
                *task_models(),
            ],
            "alerting": {
                "outbox_path": str(tmp / "outbox.sqlite"),
                "receivers": {"test-hook": {"type": "webhook", "url": receiver_url}},
            },
        }
    )


def task_models() -> list[dict[str, Any]]:
    """A multiclass and a regression model, for the performance dashboard's other rows."""
    learn = {"learn_first": 500}
    window = {"type": "count", "size": 500, "step": 250}
    return [
        {
            "name": MULTICLASS,
            "reference": learn,
            "window": window,
            "performance": {
                "task": "multiclass",
                "window_size": 500,
                "thresholds": {"macro_f1": {"warning": 0.1}},
            },
        },
        {
            "name": REGRESSION,
            "reference": learn,
            "window": window,
            "performance": {
                "task": "regression",
                "window_size": 500,
                "thresholds": {"mae": {"warning": 1000.0}, "rmse": {"warning": 1000.0}},
            },
        },
    ]


def task_messages(n: int) -> list[tuple[str, bytes, bytes]]:
    """(model, prediction event, label event) for the multiclass and regression models."""
    rng = np.random.default_rng(11)
    out = []
    for model, seed in ((MULTICLASS, 5), (REGRESSION, 6)):
        for event, _ in Simulator(model=model, seed=seed).events(n):
            score = float(event["prediction"])
            if model == MULTICLASS:
                classes = ("low", "mid", "high")
                pred = classes[min(2, int(score * 3))]
                label: Any = pred if rng.random() < 0.8 else classes[int(rng.integers(0, 3))]
            else:
                pred = round(100.0 * score + 1.0, 4)
                label = round(pred + float(rng.normal(0.0, 5.0)), 4)
            event["prediction"] = pred
            lab = {"event_id": event["event_id"], "model": model, "label": label}
            out.append((model, orjson.dumps(event), orjson.dumps(lab)))
    return out


# --------------------------------------------------------------------------- the test


@pytest.mark.slow
@pytest.mark.kafka
async def test_dashboards_and_rules_against_prometheus(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    binary("prometheus")
    tag = uuid.uuid4().hex[:10]
    write_reference(tmp_path / "reference.jsonl", 5000, model=MODEL)
    create_topics(kafka_bootstrap, [f"predictions-{tag}", f"labels-{tag}"], 1)
    receiver = Receiver()
    await receiver.start()
    service = MonitorService(monitor_config(tmp_path, kafka_bootstrap, tag, receiver.url))
    prom: Prometheus | None = None
    run: asyncio.Task[None] | None = None
    try:
        await service.start()
        run = asyncio.create_task(service.run())
        prom = Prometheus(tmp_path, f"127.0.0.1:{service.http.bound_port}")
        prom.start()
        async with httpx.AsyncClient(base_url=prom.url, timeout=10) as client:

            async def ready() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get("/-/ready")).status_code == 200
                assert prom is not None and prom.proc is not None
                assert prom.proc.poll() is None, f"prometheus exited:\n{prom.log_tail()}"
                return False

            await wait_for(ready, 20, "Prometheus /-/ready")

            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                for value in odd_messages():
                    await producer.send_and_wait(f"predictions-{tag}", value, key=MODEL.encode())
                sent = []
                for model, event, label in task_messages(1500):
                    key = model.encode()
                    sent.append(await producer.send(f"predictions-{tag}", event, key=key))
                    sent.append(await producer.send(f"labels-{tag}", label, key=key))
                await asyncio.gather(*sent)
            finally:
                await producer.stop()
            await publish(
                kafka_bootstrap,
                topic=f"predictions-{tag}",
                labels_topic=f"labels-{tag}",
                model=MODEL,
                events=6000,
                rate=1500,
                drift=DriftSpec(kind="mean", features=DRIFTED, size=1.0, start=1500),
            )

            async def drift_alerts() -> set[str]:
                data = await api(client, "/api/v1/alerts")
                return {
                    a["labels"].get("feature", "")
                    for a in data["alerts"]
                    if a["labels"].get("alertname") == "FeatureDrift"
                    and a["labels"].get("model") == MODEL
                    and a["state"] == "firing"
                }

            firing = await wait_for(
                lambda: _has_all(drift_alerts, DRIFTED), 30, "FeatureDrift firing for the drift"
            )
            assert STABLE not in firing, f"FeatureDrift fires for the stable {STABLE}: {firing}"

            # Every rule evaluated at least once, without error.
            async def rules_evaluated() -> list[dict[str, Any]]:
                groups = (await api(client, "/api/v1/rules"))["groups"]
                rules = [r for g in groups for r in g["rules"]]
                done = all(r.get("lastEvaluation", "").startswith("2") for r in rules)
                return rules if rules and done else []

            rules = await wait_for(rules_evaluated, 10, "every rule evaluated")
            shipped = yaml.safe_load(RULES.read_text())
            n_shipped = sum(len(g["rules"]) for g in shipped["groups"])
            assert len(rules) == n_shipped
            errors = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
            assert not errors, errors

            # A recorded series appears at the first evaluation after its input has data.
            records = [r["record"] for g in shipped["groups"] for r in g["rules"] if "record" in r]

            async def records_present() -> bool:
                results = [await query(client, r) for r in records]
                return all(results)

            with contextlib.suppress(AssertionError):  # reported per expression below
                await wait_for(records_present, 15, "recorded series")

            failures: list[str] = []
            checked: list[str] = []

            async def must_return_data(where: str, expr: str) -> None:
                r = await client.get("/api/v1/query", params={"query": expr})
                body = r.json()
                if body.get("status") != "success":
                    failures.append(f"{where}: {expr}\n    -> {body.get('error')}")
                elif not body["data"]["result"]:
                    failures.append(f"{where}: {expr}\n    -> empty result")
                else:
                    checked.append(expr)

            for g in shipped["groups"]:
                for rule in g["rules"]:
                    if "record" in rule:
                        await must_return_data(f"record {rule['record']}", rule["record"])
                        await must_return_data(f"record {rule['record']} expr", rule["expr"])
                    else:
                        signal, threshold = split_threshold(rule["expr"])
                        assert threshold is not None, f"alert {rule['alert']}: no threshold"
                        await must_return_data(f"alert {rule['alert']} signal", signal)

            for path in dashboard_files():
                dash = json.loads(path.read_text())
                values = await resolve_variables(client, dash)
                for title, expr in panel_queries(dash):
                    await must_return_data(f"{path.name} / {title}", substitute(expr, values))

            assert not failures, "expressions without data:\n" + "\n".join(failures)

            # The scrape as Prometheus takes it while data flows passes promtool's lint.
            async with httpx.AsyncClient(timeout=10) as plain:
                scrape = (await plain.get(f"{service.http.url}/metrics")).text
                # Content negotiation and compression (prometheus_client's aiohttp handler).
                om = await plain.get(
                    f"{service.http.url}/metrics",
                    headers={
                        "Accept": "application/openmetrics-text; version=1.0.0",
                        "Accept-Encoding": "gzip",
                    },
                )
            assert om.headers["content-type"].startswith("application/openmetrics-text")
            assert om.headers.get("content-encoding") == "gzip"
            assert om.text.rstrip().endswith("# EOF")
            assert "monitor_feature_quantile{" in scrape
            assert "monitor_model_class_performance{" in scrape
            lint = await asyncio.to_thread(
                subprocess.run,
                [binary("promtool"), "check", "metrics"],
                input=scrape,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr
            assert len(checked) >= 60, len(checked)  # guards against dashboards going missing

            (tmp_path / "checked-expressions.txt").write_text("\n".join(checked))
            assert receiver.count > 0, "no notification reached the receiver"
    finally:
        service.request_stop()
        if run is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, 20)
        await service.stop(grace_seconds=2)
        await receiver.stop()
        if prom is not None:
            prom.stop()


async def _has_all(check: Any, wanted: tuple[str, ...]) -> set[str] | None:
    found = await check()
    return found if set(wanted) <= found else None
