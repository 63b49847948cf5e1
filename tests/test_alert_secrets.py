"""No secret ever leaves the configuration: not in logs, metrics, pages, the outbox or Kafka.

The monitor runs end to end (real broker, real local HTTP receivers) with a
receiver of every type, while deliveries succeed, fail with 4xx (the receiver
even echoes the secret back in its error body), fail with 5xx, time out and
cannot connect. Afterwards every log record (all loggers, DEBUG), ``/metrics``,
``/api/status``, ``/api/silences``, ``/healthz``, every file the monitor wrote
(outbox and state, WAL included) and the dead-letter topic (values and
headers) is searched for every configured secret.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from alert_receivers import Hang, RecordingReceiver, Reply
from fault_helpers import eventually

from monitor.alerting.config import AlertingConfig
from monitor.alerting.receiver import redact, secret_forms
from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish


def _secret(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:12]}"


SLACK_OK = _secret("slackOkPath")
SLACK_GONE = _secret("slackGonePath")
HOOK_TOKEN = _secret("hookQueryToken")
HOOK_SIGNING = "whsec_" + base64.b64encode(_secret("signingKey").encode()).decode()
HOOK_HEADER = _secret("hookApiKey")
DOWN_TOKEN = _secret("downQueryToken")
PD_KEY = _secret("pdRoutingKey")
PD_URL_TOKEN = _secret("pdQueryToken")
RT_URL_TOKEN = _secret("retrainQueryToken")
RT_SECRET = _secret("retrainBearer")
RT_HEADER = _secret("retrainHeader")
ADMIN = _secret("adminToken")
AM_PASSWORD = _secret("alertmanagerPassword")  # basic auth in its URL (behind a proxy)
AM_HEADER = _secret("alertmanagerHeader")
SECRETS = [
    SLACK_OK,
    SLACK_GONE,
    HOOK_TOKEN,
    HOOK_SIGNING,
    HOOK_SIGNING.removeprefix("whsec_"),
    HOOK_HEADER,
    DOWN_TOKEN,
    PD_KEY,
    PD_URL_TOKEN,
    RT_URL_TOKEN,
    RT_SECRET,
    RT_HEADER,
    ADMIN,
    AM_PASSWORD,
    AM_HEADER,
]


def _base(rx: RecordingReceiver) -> str:
    return rx.url.rsplit("/", 1)[0]


def _receivers(ok: RecordingReceiver, gone: RecordingReceiver, err: RecordingReceiver,
               slow: RecordingReceiver) -> dict[str, Any]:  # fmt: skip
    return {
        "chat": {"type": "slack", "webhook_url": f"{_base(ok)}/services/T000/B000/{SLACK_OK}"},
        "chat-gone": {
            "type": "slack",
            "webhook_url": f"{_base(gone)}/services/T000/B000/{SLACK_GONE}",
        },
        "hook": {
            "type": "webhook",
            "url": f"{_base(err)}/hook?token={HOOK_TOKEN}",
            "signing_secret": HOOK_SIGNING,
            "headers": {"X-Api-Key": HOOK_HEADER},
        },
        "hook-down": {"type": "webhook", "url": f"http://127.0.0.1:9/hook?token={DOWN_TOKEN}"},
        "pager": {
            "type": "pagerduty",
            "routing_key": PD_KEY,
            "url": f"{_base(slow)}/v2/enqueue?token={PD_URL_TOKEN}",
            "timeout_seconds": 0.2,
        },
        "retrain": {
            "type": "retrain",
            "url": f"{_base(err)}/dags/retrain/dagRuns?token={RT_URL_TOKEN}",
            "secret": RT_SECRET,
            "headers": {"X-Extra": RT_HEADER},
        },
        "am": {
            "type": "alertmanager",
            "url": _base(gone).replace("http://", f"http://monitor:{AM_PASSWORD}@"),
            "headers": {"X-Scope-Token": AM_HEADER},
        },
    }


def _files(folder: Path) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in folder.iterdir() if p.is_file()]


def _assert_clean(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, str) else text.decode("utf-8", "replace")
    for secret in SECRETS:
        assert secret not in data, f"{secret} found in {where}"


def test_config_repr_and_validation_errors_hide_receiver_secrets() -> None:
    receivers = {
        "chat": {"type": "slack", "webhook_url": f"https://h/services/T/B/{SLACK_OK}"},
        "hook": {
            "type": "webhook",
            "url": f"https://h/?token={HOOK_TOKEN}",
            "signing_secret": HOOK_SIGNING,
            "headers": {"X-Api-Key": HOOK_HEADER},
        },
        "pager": {"type": "pagerduty", "routing_key": PD_KEY},
        "retrain": {"type": "retrain", "url": f"https://h/?t={RT_URL_TOKEN}", "secret": RT_SECRET},
        "am": {
            "type": "alertmanager",
            "url": f"https://monitor:{AM_PASSWORD}@am:9093",
            "headers": {"X-Scope-Token": AM_HEADER},
        },
    }
    config = AlertingConfig.model_validate({"receivers": receivers})
    _assert_clean("repr(config)", repr(config) + str(config) + repr(config.receivers))
    assert config.receivers["pager"].routing_key.get_secret_value() == PD_KEY  # type: ignore[union-attr]
    bad = [
        {**receivers, "chat": {**receivers["chat"], "timeout_seconds": "soon"}},
        {**receivers, "chat": {**receivers["chat"], "webhok_url": f"http://h/{SLACK_GONE}"}},
        {**receivers, "pager": {"type": "pagerduty", "routing_key": PD_KEY, "extra": PD_URL_TOKEN}},
        {**receivers, "hook": {**receivers["hook"], "headers": {"X": 5}, "type": "webhook"}},
        {"chat": {"type": "nope", "webhook_url": SLACK_OK}},
    ]
    for receivers_bad in bad:
        raw = {"kafka": {"predictions_topic": "p"}, "alerting": {"receivers": receivers_bad}}
        with pytest.raises(ConfigError) as info:
            parse_config(raw)
        _assert_clean("ConfigError", str(info.value) + repr(info.value.problems))


@pytest.mark.parametrize(
    ("receiver", "where"),
    [
        ({"type": "slack", "webhook_url": ""}, "webhook_url"),
        (
            {"type": "slack", "webhook_url": f"hooks.slack.com/services/T/B/{SLACK_OK}"},
            "webhook_url",
        ),
        ({"type": "webhook", "url": f"ftp://h/?token={HOOK_TOKEN}"}, "url"),
        ({"type": "webhook", "url": f"http://h:99999/?token={HOOK_TOKEN}"}, "url"),
        ({"type": "webhook", "url": f"http://h/?token= {HOOK_TOKEN}"}, "url"),
        ({"type": "pagerduty", "routing_key": PD_KEY, "url": f"/v2/{PD_URL_TOKEN}"}, "url"),
        ({"type": "retrain", "url": f"airflow.example/?t={RT_URL_TOKEN}"}, "url"),
        ({"type": "alertmanager", "url": "127.0.0.1:9093"}, "url"),
        (
            {"type": "webhook", "url": "http://h/", "headers": {"X-Key": f"\u201c{HOOK_HEADER}"}},
            "headers",
        ),
        (
            {"type": "retrain", "url": "http://h/", "headers": {"X-K": f"a\r\nX: {RT_SECRET}"}},
            "headers",
        ),
        ({"type": "webhook", "url": "http://h/", "headers": {"X Key": "v"}}, "headers"),
        (
            {"type": "alertmanager", "url": "http://h/", "headers": {"A": "Bearer \u00e9"}},
            "headers",
        ),
    ],
)
def test_a_receiver_that_cannot_be_delivered_to_is_a_config_error(
    receiver: dict[str, Any], where: str
) -> None:
    """An empty receiver URL (a variable set to ''), one without its scheme, or a header
    value httpx cannot send (non-ASCII, a line break) passed check-config; then every page
    to that receiver was dead-lettered or retried until its deadline. Refused at the
    option's path, without repeating the secret."""
    with pytest.raises(ConfigError) as info:
        parse_config({"alerting": {"receivers": {"r": receiver}}})
    text = str(info.value) + repr(info.value.problems)
    _assert_clean("ConfigError", text)
    assert f"alerting.receivers.r.{receiver['type']}.{where}" in text
    # The same receiver with a sendable URL and headers loads.
    fixed = {**receiver, "headers": {"X-Key": "v"}} if "headers" in receiver else receiver
    key = "webhook_url" if receiver["type"] == "slack" else "url"
    parse_config({"alerting": {"receivers": {"r": {**fixed, key: "https://h.example/x?y=1"}}}})


def test_a_link_with_credentials_is_refused_without_repeating_them() -> None:
    """A runbook or dashboard link goes in clear to every receiver and into the outbox:
    one carrying credentials (user:token@, ?token=) is refused at the option's path,
    and neither the error nor check-config's lines repeat the credential."""
    token = _secret("linkToken")
    cases = {
        "alerting.runbook_base_url": {"runbook_base_url": f"https://ops:{token}@wiki/RUNBOOK.md"},
        "alerting.dashboard_url_template": {
            "dashboard_url_template": f"https://g/d?var-model={{model}}&api-key={token}"
        },
        "alerting.rules[0].runbook_url": {"rules": [{"runbook_url": f"https://w/r?token={token}"}]},
        "runbook_urls['fraud-*']": {"runbook_urls": {"fraud-*": f"https://u:{token}@w/fraud"}},
    }
    for where, alerting in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config({"alerting": alerting})
        text = str(info.value) + repr(info.value.problems)
        assert token not in text, text
        assert where in text and ("credential" in text), text
    # Links without credentials, placeholders included, still load.
    parse_config(
        {
            "alerting": {
                "runbook_base_url": "https://github.com/o/r/blob/main/docs/RUNBOOK.md",
                "dashboard_url_template": "https://g/d?var-model={model}&from={window_start_ms}",
                "rules": [{"runbook_url": "https://wiki/rb/{model}"}],
            }
        }
    )


@pytest.mark.kafka
async def test_no_secret_in_logs_metrics_pages_outbox_or_dead_letters(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    suffix = uuid.uuid4().hex[:10]
    topic, dlq = f"sec-{suffix}", f"sec-dlq-{suffix}"
    mounted = tmp_path / "secrets"  # not searched below: the secrets' own files
    mounted.mkdir()
    (mounted / "admin").write_text(ADMIN + "\n")
    gone_body = {
        "error": "no_service",
        "echo": [f"/services/T000/B000/{SLACK_GONE}", AM_PASSWORD, AM_HEADER],
    }
    err_body = {"error": "busy", "echo": [PD_KEY, HOOK_TOKEN, RT_SECRET, RT_URL_TOKEN]}
    async with (
        RecordingReceiver() as ok,
        RecordingReceiver(default=Reply(404, body=gone_body)) as gone,
        RecordingReceiver(default=Reply(503, body=err_body)) as err,
        RecordingReceiver(default=Hang(2.0)) as slow,
    ):
        raw = {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"g-{suffix}",
                "predictions_topic": topic,
                "labels_topic": None,
                "dead_letter_topic": dlq,
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
            },
            "http": {"port": 0, "admin_token": f"${{file:{mounted / 'admin'}}}"},
            "state": {"path": str(tmp_path / "state.sqlite"), "checkpoint_interval_seconds": 1},
            "unknown_models": "track",
            "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 200}},
            "alerting": {
                "receivers": _receivers(ok, gone, err, slow),
                "retrain_policy": {"receiver": "retrain", "min_critical_drifted_features": 1},
                "outbox_path": str(tmp_path / "outbox.sqlite"),
                "delivery": {
                    "max_attempts": 3,
                    "initial_backoff_seconds": 0.05,
                    "max_backoff_seconds": 0.1,
                },
            },
        }
        # Some secrets as Kubernetes mounts them (a file each, a trailing newline), the
        # others inline: both forms are secrets everywhere.
        receivers = raw["alerting"]["receivers"]
        (mounted / "chat").write_text(receivers["chat"]["webhook_url"] + "\n")
        receivers["chat"]["webhook_url"] = f"${{file:{mounted / 'chat'}}}"
        (mounted / "pager").write_text(receivers["pager"]["routing_key"] + "\n")
        receivers["pager"]["routing_key"] = f"${{file:{mounted / 'pager'}}}"
        service = MonitorService(parse_config(raw))
        await service.start()
        task = asyncio.create_task(service.run())
        pages: list[str] = []
        try:
            drift = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=400)
            await publish(kafka_bootstrap, topic=topic, model="m", events=1200, drift=drift)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                for poison in (b"\xff not utf-8", b"{not json", b"[1]"):
                    await producer.send_and_wait(topic, poison, key=b"m")
            finally:
                await producer.stop()

            outbox = service.alerts.outbox

            def settled() -> bool:
                rows = outbox.rows()
                by_receiver = {r["receiver"] for r in rows}
                return {"chat", "chat-gone", "hook", "hook-down", "pager", "retrain", "am"} <= (
                    by_receiver
                ) and all(r["state"] != "pending" for r in rows)

            await eventually(settled, within=60)
            rows = outbox.rows()
            states = {(r["receiver"], r["state"]) for r in rows}
            assert ("chat", "delivered") in states
            for failing in ("chat-gone", "hook", "hook-down", "pager", "retrain", "am"):
                assert (failing, "dead") in states, states
            assert len(ok.requests) >= 1 and len(gone.requests) >= 1 and len(slow.requests) >= 1
            async with httpx.AsyncClient() as client:
                for path in ("/metrics", "/api/status", "/api/silences", "/healthz", "/readyz"):
                    pages.append((await client.get(service.http.url + path)).text)
                bad = {"Authorization": f"Bearer {ADMIN}x"}
                r = await client.post(f"{service.http.url}/api/silences", json={}, headers=bad)
                pages.append(r.text)
        finally:
            service.request_stop()
            await task
            await service.stop(grace_seconds=1)

    consumer = AIOKafkaConsumer(
        dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    dead_letters: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(dead_letters) < 3:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    dead_letters.extend(records)
    finally:
        await consumer.stop()

    # The receivers did get the secrets they need (so the search below is meaningful).
    assert any(SLACK_OK in r.path for r in ok.requests)
    assert any(r.json.get("routing_key") == PD_KEY for r in slow.requests)
    assert any(r.headers.get("authorization") == f"Bearer {RT_SECRET}" for r in err.requests)
    assert any(r.headers.get("x-scope-token") == AM_HEADER for r in gone.requests)
    log_text = caplog.text + "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    _assert_clean("logs", log_text)
    for i, page in enumerate(pages):
        _assert_clean(f"page {i}", page)
    for name, data in _files(tmp_path):
        _assert_clean(name, data)
    for record in dead_letters:
        _assert_clean("dead-letter value", record.value or b"")
        for key, value in record.headers:
            _assert_clean(f"dead-letter header {key}", value)

    # What the operator reads, and what is counted (by receiver and bounded reason).
    assert "alert delivery to chat-gone rejected (HTTP 404" in caplog.text
    assert "alert fire: model m" in caplog.text
    metrics = pages[0]
    assert 'monitor_notification_failures_total{reason="http_4xx",receiver="chat-gone"}' in metrics
    assert 'reason="timeout",receiver="pager"' in metrics
    assert 'reason="connect",receiver="hook-down"' in metrics
    assert 'reason="http_5xx",receiver="hook"' in metrics


def test_a_receiver_url_from_an_unset_variable_is_reported_once() -> None:
    """The unset variable is the problem; the empty URL it leaves is not a second one."""
    receivers = {"r": {"type": "slack", "webhook_url": "${PROBE_UNSET_SLACK_URL}"}}
    with pytest.raises(ConfigError) as info:
        parse_config({"alerting": {"receivers": receivers}}, env={})
    assert info.value.problems == [
        "alerting.receivers.r.webhook_url: environment variable PROBE_UNSET_SLACK_URL is not set"
    ]


def test_the_password_of_a_receiver_url_is_a_secret_of_its_own() -> None:
    """``http://user:password@host`` (basic auth through a proxy): a receiver echoing just
    the password had it logged and stored, as only the whole URL was redacted."""
    password = _secret("urlPassword")
    forms = secret_forms([f"http://monitor:{password}@am.example:9093"])
    assert redact(f'{{"detail": "bad password {password}"}}', forms) == (
        '{"detail": "bad password [redacted]"}'
    )
    assert redact(f"user monitor:{password}", forms) == "user [redacted]"
    basic = base64.b64encode(f"monitor:{password}".encode()).decode()
    assert redact(f"got Authorization: Basic {basic}", forms) == (
        "got Authorization: Basic [redacted]"
    )
