"""Receivers against real HTTP servers on 127.0.0.1: bodies, headers, signatures, error mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from alert_receivers import RecordingReceiver, Reply
from pydantic import SecretStr

from monitor.alerting.config import (
    PagerDutyReceiverConfig,
    RetrainReceiverConfig,
    SlackReceiverConfig,
    WebhookReceiverConfig,
)
from monitor.alerting.http import parse_retry_after
from monitor.alerting.notification import Notification, SignalEvidence
from monitor.alerting.pagerduty import PagerDutyReceiver
from monitor.alerting.receivers import build_receiver
from monitor.alerting.retrain import RetrainReceiver
from monitor.alerting.slack import SlackReceiver
from monitor.alerting.webhook import WebhookReceiver
from monitor.clock import ManualClock, SystemClock
from monitor.errors import PermanentDeliveryError, RetryableDeliveryError


def notification(status: str = "firing", action: str = "fire", n_signals: int = 2) -> Notification:
    return Notification(
        idempotency_key="3f2a9c0d1e2b4a5f-1714564800000-0-" + action,
        fingerprint="3f2a9c0d1e2b4a5f",
        action=action,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        model="churn",
        model_version="7",
        group={"model": "churn"},
        severity="critical",
        started_at=1714564800.0,
        evaluated_at=1714564860.0,
        window_start=1714564000.0,
        window_end=1714564859.0,
        window_events=5000,
        signals=tuple(
            SignalEvidence("drift", f"f{i}", "critical", 0.31, 0.2, "ks", 0.001, {"n": 5000})
            for i in range(n_signals)
        ),
        links={"dashboard": "https://grafana.example/d/x?var-model=churn"},
        reason="2 features drifted critically" if action == "retrain" else None,
    )


@pytest.fixture
async def rx() -> AsyncIterator[RecordingReceiver]:
    async with RecordingReceiver() as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Independent implementation from https://www.standardwebhooks.com/ (not our signer)."""
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret.split("_", 1)[1])
    else:
        key = secret.encode("utf-8")
    to_sign = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"."
    mac = hmac.new(key, to_sign + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac)
    for candidate in headers["webhook-signature"].split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


@pytest.mark.parametrize(
    "secret", ["whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode(), "plain"]
)
async def test_standard_webhooks_signature_verifies_independently(rx, client, secret):
    cfg = WebhookReceiverConfig(url=rx.url, signing_secret=secret, headers={"X-Team": "ml"})
    await WebhookReceiver("hook", cfg, client, SystemClock()).send(notification())
    (req,) = rx.requests
    assert req.headers["webhook-id"] == notification().idempotency_key
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 5
    assert req.headers["x-team"] == "ml"
    assert req.headers["content-type"] == "application/json"
    assert verify_standard_webhook(secret, req.headers, req.body)
    assert not verify_standard_webhook(secret, req.headers, req.body + b" ")  # tamper-evident
    assert not verify_standard_webhook("other", req.headers, req.body)
    body = req.json
    assert body["status"] == "firing" and body["fingerprint"] == "3f2a9c0d1e2b4a5f"
    assert body["signals"][0] == {
        "kind": "drift",
        "subject": "f0",
        "severity": "critical",
        "statistic": 0.31,
        "threshold": 0.2,
        "detector": "ks",
        "p_value": 0.001,
        "details": {"n": 5000},
        "compared": "p_value",
        "alpha": 0.2,
        "text": "p=0.001 < alpha 0.2 (ks statistic 0.31)",
    }
    assert body["window"] == {
        "start": "2024-05-01T11:46:40.000Z",
        "end": "2024-05-01T12:00:59.000Z",
        "events": 5000,
    }


async def test_cloudevents_structured_mode(rx, client):
    cfg = WebhookReceiverConfig(url=rx.url, cloudevents=True)
    await WebhookReceiver("hook", cfg, client, SystemClock()).send(notification())
    (req,) = rx.requests
    assert req.headers["content-type"] == "application/cloudevents+json"
    assert "webhook-signature" not in req.headers
    event = req.json
    assert event["specversion"] == "1.0"
    assert event["id"] == notification().idempotency_key
    assert event["source"].endswith("/churn") and event["type"].endswith(".fire")
    assert event["data"]["model"] == "churn"


async def test_cloudevents_source_is_a_uri_reference_whatever_the_model_name(rx, client):
    """``source`` is a URI-reference (CloudEvents 1.0): a model named from the wire put in
    as it came (a space, a newline, a stray ``%``) made the event invalid, which a receiver
    that validates CloudEvents may refuse for good (a 4xx: the page lost)."""
    import re
    from dataclasses import replace
    from urllib.parse import unquote

    name = "credit risk\n<v2> 50%zz/é"
    cfg = WebhookReceiverConfig(url=rx.url, cloudevents=True)
    n = replace(notification(), model=name)
    await WebhookReceiver("hook", cfg, client, SystemClock()).send(n)
    event = rx.requests[0].json
    source = event["source"]
    assert re.fullmatch(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})+", source), source
    assert source.startswith("/kafka-model-monitor/models/") and source.count("/") == 3
    assert unquote(source.rsplit("/", 1)[1]) == name
    assert event["subject"] == event["data"]["model"] == name
    plain = await WebhookReceiver("hook", cfg, client, SystemClock()).send(notification())
    assert plain is None and rx.requests[1].json["source"] == "/kafka-model-monitor/models/churn"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (202, None),
        (204, None),
        (400, PermanentDeliveryError),
        (401, PermanentDeliveryError),
        (404, PermanentDeliveryError),
        (410, PermanentDeliveryError),
        (422, PermanentDeliveryError),
        (429, RetryableDeliveryError),
        (500, RetryableDeliveryError),
        (502, RetryableDeliveryError),
        (503, RetryableDeliveryError),
    ],
)
async def test_status_mapping(rx, client, status, expected):
    rx.script(Reply(status, body={"status": status}))
    receiver = PagerDutyReceiver(
        "pd", PagerDutyReceiverConfig(routing_key="k", url=rx.url), client, SystemClock()
    )
    if expected is None:
        await receiver.send(notification())
    else:
        with pytest.raises(expected) as info:
            await receiver.send(notification())
        assert info.value.status == status


async def test_connection_refused_is_retryable(client):
    async with RecordingReceiver() as down:
        url = down.url
    receiver = SlackReceiver("s", SlackReceiverConfig(webhook_url=url), client, SystemClock())
    with pytest.raises(RetryableDeliveryError):
        await receiver.send(notification())


async def test_retry_after_http_date(rx, client):
    clock = ManualClock(1714564800.0)  # 2024-05-01T12:00:00Z
    rx.script(Reply(503, headers={"Retry-After": "Wed, 01 May 2024 12:00:30 GMT"}))
    receiver = SlackReceiver("s", SlackReceiverConfig(webhook_url=rx.url), client, clock)
    with pytest.raises(RetryableDeliveryError) as info:
        await receiver.send(notification())
    assert info.value.retry_after == pytest.approx(30.0)


class _ToLocal(httpx.AsyncBaseTransport):
    """Sends every request to a local server, keeping its path: a receiver whose URL is the
    default (a real vendor's endpoint) is exercised against a real local HTTP server."""

    def __init__(self, base: str) -> None:
        self._base = httpx.URL(base)
        self._inner = httpx.AsyncHTTPTransport()
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        request.url = request.url.copy_with(
            scheme=self._base.scheme, host=self._base.host, port=self._base.port
        )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_pagerduty_default_url_delivers(rx):
    """PagerDuty's ``url`` is optional: its default (the Events API) was a plain str where a
    SecretStr was expected, so every page to a receiver without ``url`` failed with
    AttributeError ('str' object has no attribute 'get_secret_value'), retried until its
    deadline. Only tests that set ``url`` ran, so none saw it."""
    cfg = PagerDutyReceiverConfig.model_validate({"type": "pagerduty", "routing_key": "R"})
    transport = _ToLocal(rx.url)
    async with httpx.AsyncClient(transport=transport) as local:
        await PagerDutyReceiver("pd", cfg, local, SystemClock()).send(notification())
    assert transport.hosts == ["events.pagerduty.com"]
    (request,) = rx.requests
    assert request.path == "/v2/enqueue" and request.json["routing_key"] == "R"


@pytest.mark.parametrize(
    "cfg",
    [
        WebhookReceiverConfig(url="http://h/x"),
        SlackReceiverConfig(webhook_url="https://h/x"),
        PagerDutyReceiverConfig(routing_key="R"),
        RetrainReceiverConfig(url="http://h/x"),
    ],
    ids=lambda c: c.type,
)
def test_secret_fields_are_secret_with_their_defaults(cfg):
    """Every field declared SecretStr holds one (or None) when left at its default too."""
    for name, field in type(cfg).model_fields.items():
        if "SecretStr" in str(field.annotation) and "dict" not in str(field.annotation):
            value = getattr(cfg, name)
            assert value is None or isinstance(value, SecretStr), name


@pytest.mark.parametrize(
    ("header", "expected"), [("120", 120.0), ("0", 0.0), ("-5", 0.0), ("", None), ("x", None)]
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=0.0) == expected


async def test_pagerduty_trigger_and_resolve_bodies(rx, client):
    cfg = PagerDutyReceiverConfig(routing_key="R", url=rx.url)
    receiver = PagerDutyReceiver("pd", cfg, client, SystemClock())
    await receiver.send(notification())
    await receiver.send(notification(status="resolved", action="resolve"))
    trigger, resolve = (r.json for r in rx.requests)
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "3f2a9c0d1e2b4a5f"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"].endswith("churn")
    assert len(trigger["payload"]["custom_details"]["signals"]) == 2
    assert trigger["links"][0]["href"].startswith("https://grafana")
    assert resolve == {
        "routing_key": "R",
        "event_action": "resolve",
        "dedup_key": "3f2a9c0d1e2b4a5f",
    }


async def test_slack_message_is_bounded_with_fallback_text(rx, client):
    receiver = SlackReceiver("s", SlackReceiverConfig(webhook_url=rx.url), client, SystemClock())
    await receiver.send(notification(n_signals=40))
    body = rx.requests[0].json
    assert body["text"].startswith(":red_circle: [FIRING:critical] churn v7: 40 signals")
    assert len(body["blocks"]) <= 50
    listing = body["blocks"][2]["text"]["text"]
    assert "and 30 more" in listing and len(listing) < 3000


@pytest.mark.parametrize("template", ["generic", "airflow", "github_dispatch"])
async def test_retrain_bodies(rx, client, template):
    cfg = RetrainReceiverConfig(url=rx.url, body_template=template, secret="tok")
    await RetrainReceiver("t", cfg, client, SystemClock()).send(notification(action="retrain"))
    (req,) = rx.requests
    key = notification(action="retrain").idempotency_key
    assert req.headers["idempotency-key"] == key
    assert req.headers["authorization"] == "Bearer tok"
    body = req.json
    conf = {
        "generic": lambda b: b,
        "airflow": lambda b: b["conf"],
        "github_dispatch": lambda b: b["client_payload"],
    }[template](body)
    assert conf["model"] == "churn" and conf["model_version"] == "7"
    assert conf["reason"] == "2 features drifted critically"
    assert conf["idempotency_key"] == key
    assert conf["data_range"]["events"] == 5000 and len(conf["evidence"]) == 2
    if template == "airflow":
        assert body["dag_run_id"] == key
    if template == "github_dispatch":
        assert body["event_type"] == "model-retrain" and len(conf) <= 10


async def test_airflow_duplicate_dag_run_counts_as_delivered(rx, client):
    rx.script(Reply(409, body={"title": "DAGRun already exists"}))
    cfg = RetrainReceiverConfig(url=rx.url, body_template="airflow")
    await RetrainReceiver("t", cfg, client, SystemClock()).send(notification(action="retrain"))
    generic = RetrainReceiverConfig(url=rx.url)
    rx.script(Reply(409))
    with pytest.raises(PermanentDeliveryError):
        await RetrainReceiver("t", generic, client, SystemClock()).send(notification())


async def test_transport_seam_and_timeout_translation():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        receiver = build_receiver(
            "h", WebhookReceiverConfig(url="http://127.0.0.1:9/x"), c, SystemClock()
        )
        with pytest.raises(RetryableDeliveryError, match="timed out"):
            await receiver.send(notification())


async def test_slack_fields_from_the_wire_are_escaped_and_bounded(rx, client):
    """The model name (a tracked unknown model) and model version come from events: a
    version ``<!channel>`` would ping the whole channel, and one of 5,000 characters made a
    section field over Slack's 2,000 (``invalid_blocks``: a permanent 400, the page lost)."""
    from dataclasses import replace

    hostile = replace(
        notification(),
        model="<!channel> m",
        model_version="<!here> `x`\n*Severity*\nok" + "y" * 50_000,
    )
    receiver = SlackReceiver("s", SlackReceiverConfig(webhook_url=rx.url), client, SystemClock())
    await receiver.send(hostile)
    body = rx.requests[0].json
    fields = [f["text"] for b in body["blocks"] for f in b.get("fields", [])]
    mrkdwn = [body["text"], *fields] + [
        b["text"]["text"] for b in body["blocks"] if b.get("text", {}).get("type") == "mrkdwn"
    ]
    assert all("<!" not in t and "`x`" not in t for t in mrkdwn)
    assert all(len(f) <= 2000 for f in fields) and len(body["text"]) <= 40_000
    model, version = fields[0], fields[1]
    assert model == "*Model*\n&lt;!channel&gt; m"
    assert (
        version.startswith("*Version*\n&lt;!here&gt; 'x' *Severity* ok")
        and "\n" not in version[10:]
    )


async def test_slack_signal_subjects_from_the_wire_are_escaped(rx, client):
    """A feature learned from the events is named by the wire: ``<!here>`` inside the code
    span of a signal's line pinged the channel (Slack parses ``<...>`` there too), a backtick
    closed the span, and a newline started a line of mrkdwn of its own."""
    from dataclasses import replace

    hostile = "f`x` <!here> <http://evil.example|click>\n*Severity*"
    drift = SignalEvidence("drift", hostile, "critical", 0.31, 0.2, "psi")
    breach = SignalEvidence(
        "data_quality",
        f"unseen:{hostile}",
        "warning",
        0.1,
        0.01,
        details={"message": f"{hostile}: 10% of values\nunseen"},
        segment="region=<!channel>",
    )
    n = replace(notification(), signals=(drift, breach), cleared=(drift,))
    receiver = SlackReceiver("s", SlackReceiverConfig(webhook_url=rx.url), client, SystemClock())
    await receiver.send(n)
    body = rx.requests[0].json
    lines = next(
        b["text"]["text"]
        for b in body["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("type") == "mrkdwn"
    )
    assert "<" not in lines  # no mention, link or other control sequence
    assert lines.count("\n") == 2  # three lines: two signals and the cleared one
    assert "`f'x' &lt;!here&gt; &lt;http://evil.example|click&gt; *Severity*`" in lines
    assert "`unseen:f'x' &lt;!here&gt;" in lines and "in `region=&lt;!channel&gt;`" in lines
