"""Configuration trust gaps: credentials sent in clear text, names that read as other names,
near-duplicate names, and a configuration that monitors nothing.

Each test loads a configuration through :func:`parse_config`, as ``check-config`` and
``run`` do; the secrets below must appear in no error and no log line.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError

TOKEN = "tok-7f3a9c1e5b"
PASSWORD = "pw-2d8e4b6a0c"
ROUTING = "rk-9b1c3e5f7a"
SLACK_PATH = "T000/B000/sl-4e6a8c0b2d"
BEARER = "br-1a3c5e7b9d"
SECRETS = (TOKEN, PASSWORD, ROUTING, SLACK_PATH, BEARER)


def _receivers(receivers: dict[str, Any]) -> dict[str, Any]:
    return {"alerting": {"receivers": receivers}}


def _problems(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    text = "\n".join(info.value.problems)
    for secret in SECRETS:
        assert secret not in text, f"{secret} in the error"
    return text


#: (receiver, the field whose credential would travel in clear text). The hosts are not
#: loopback: what a receiver in another container or on another machine gets.
CLEAR_TEXT = [
    (
        {"type": "webhook", "url": "http://hooks.example/x", "headers": {"X-Api-Key": TOKEN}},
        "headers",
    ),
    ({"type": "webhook", "url": f"http://hooks.example/x?token={TOKEN}"}, "url"),
    ({"type": "webhook", "url": f"http://monitor:{PASSWORD}@hooks.example/x"}, "url"),
    (
        {"type": "slack", "webhook_url": f"http://slack-proxy.internal/services/{SLACK_PATH}"},
        "webhook_url",
    ),
    (
        {"type": "pagerduty", "routing_key": ROUTING, "url": "http://pd-proxy.internal/v2/enqueue"},
        "routing_key",
    ),
    (
        {"type": "retrain", "url": "http://airflow:8080/api/v1/dags/x/dagRuns", "secret": BEARER},
        "secret",
    ),
    (
        {
            "type": "retrain",
            "url": "http://airflow:8080/x",
            "headers": {"Authorization": f"Bearer {BEARER}"},
        },
        "headers",
    ),
    ({"type": "alertmanager", "url": f"http://monitor:{PASSWORD}@alertmanager:9093"}, "url"),
    (
        {
            "type": "alertmanager",
            "url": "http://10.0.0.7:9093",
            "headers": {"Authorization": BEARER},
        },
        "headers",
    ),
    (
        {"type": "webhook", "url": "http://[2001:db8::1]:8080/x", "headers": {"X-Api-Key": TOKEN}},
        "headers",
    ),
]


@pytest.mark.parametrize(
    ("receiver", "field"), CLEAR_TEXT, ids=[f"{r['type']}-{f}" for r, f in CLEAR_TEXT]
)
def test_a_credential_over_plain_http_to_another_host_is_refused(
    receiver: dict[str, Any], field: str
) -> None:
    """Anyone on the path (a shared network, a proxy's log) read the token, the password in
    the URL, the Slack path or the routing key. Refused naming the receiver and the field,
    never the value; the opt-in loads it."""
    text = _problems(_receivers({"ops": receiver}))
    assert f"alerting.receivers.ops.{receiver['type']}" in text
    assert field in text
    assert "allow_insecure_http" in text
    config = parse_config(_receivers({"ops": {**receiver, "allow_insecure_http": True}}), env={})
    assert config.alerting.receivers["ops"].allow_insecure_http is True


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/x",
        "http://127.8.9.10/x",
        "http://localhost:9000/x",
        "http://[::1]:9000/x",
    ],
)
def test_a_credential_over_plain_http_to_loopback_loads(url: str) -> None:
    """Loopback never leaves the machine (and is how the tests' receivers listen)."""
    parse_config(
        _receivers(
            {
                "hook": {"type": "webhook", "url": url, "headers": {"X-Api-Key": TOKEN}},
                "chat": {"type": "slack", "webhook_url": url},
                "pager": {"type": "pagerduty", "routing_key": ROUTING, "url": url},
                "train": {"type": "retrain", "url": url, "secret": BEARER},
                "am": {
                    "type": "alertmanager",
                    "url": url.replace("http://", f"http://u:{PASSWORD}@"),
                },
            }
        ),
        env={},
    )


def test_plain_http_without_a_credential_loads() -> None:
    """The compose file's Alertmanager (``http://alertmanager:9093``, no credential) and a
    signed webhook: the signing secret never goes on the wire (only an HMAC of each
    request, which cannot be turned back into it or forged without it)."""
    parse_config(
        _receivers(
            {
                "am": {"type": "alertmanager", "url": "http://alertmanager:9093"},
                "hook": {
                    "type": "webhook",
                    "url": "http://receiver:8080/x",
                    "signing_secret": TOKEN,
                },
                "plain": {"type": "webhook", "url": "http://receiver:8080/x?team=ops"},
            }
        ),
        env={},
    )


def test_the_insecure_opt_in_is_warned_about_at_load(caplog: pytest.LogCaptureFixture) -> None:
    raw = _receivers(
        {
            "ops": {
                "type": "webhook",
                "url": "http://hooks.example/x",
                "headers": {"X-Api-Key": TOKEN},
                "allow_insecure_http": True,
            }
        }
    )
    with caplog.at_level(logging.WARNING, logger="monitor.config"):
        parse_config(raw, env={})
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.config"]
    assert any("'ops'" in line and "clear text" in line for line in lines), lines
    assert not any(s in line for s in SECRETS for line in lines)


# ----------------------------------------------------------------- names

HIDDEN = {
    "bidi override": "inc\u202eemo",
    "zero-width space": "inc\u200bome",
    "control": "inc\x07ome",
    "line separator": "inc\u2028ome",
}


@pytest.mark.parametrize("bad", list(HIDDEN.values()), ids=list(HIDDEN))
@pytest.mark.parametrize(
    ("where", "model"),
    [
        ("models[0].features", lambda n: {"name": "m", "features": {n: "numeric"}}),
        (
            "models[0].segments.by",
            lambda n: {"name": "m", "features": {"x": "numeric"}, "segments": [n]},
        ),
        (
            "models[0].validation.constraints",
            lambda n: {"name": "m", "validation": {"constraints": {n: {"min": 0}}}},
        ),
        (
            "models[0].reference.versions",
            lambda n: {"name": "m", "reference": {"learn_first": 10, "versions": {n: "r.jsonl"}}},
        ),
    ],
    ids=["feature", "segment", "constraint", "version"],
)
def test_a_name_shown_on_pages_must_be_printable(where: str, model: Any, bad: str) -> None:
    """As model names are: a bidi override, a zero-width or control character made a
    feature (a segment column, a version) read as another on dashboards, metrics and pages."""
    text = _problems({"models": [model(bad)]})
    assert where in text
    assert "unprintable character U+" in text


@pytest.mark.parametrize("bad", list(HIDDEN.values()), ids=list(HIDDEN))
def test_a_receiver_name_must_be_printable(bad: str) -> None:
    """A receiver's name is a label of the delivery metrics and shown in logs."""
    text = _problems(_receivers({bad: {"type": "webhook", "url": "https://h.example/x"}}))
    assert "alerting.receivers" in text
    assert "unprintable character U+" in text


NEAR = {
    "nfc-nfd": ("caf\u00e9", "cafe\u0301"),
    "trailing space": ("fraud", "fraud "),
    "leading space": ("fraud", " fraud"),
}


@pytest.mark.parametrize(("a", "b"), list(NEAR.values()), ids=list(NEAR))
def test_models_that_look_identical_are_refused_naming_both(a: str, b: str) -> None:
    text = _problems({"models": [{"name": a}, {"name": b}]})
    assert ascii(a) in text and ascii(b) in text
    assert "models[0]" in text and "models[1]" in text


@pytest.mark.parametrize(("a", "b"), list(NEAR.values()), ids=list(NEAR))
def test_features_that_look_identical_are_refused_naming_both(a: str, b: str) -> None:
    text = _problems({"models": [{"name": "m", "features": {a: "numeric", b: "numeric"}}]})
    assert "models[0].features" in text
    assert ascii(a) in text and ascii(b) in text


def test_models_differing_only_in_case_load_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``Fraud`` and ``fraud`` may be two teams' models (names are matched exactly, and
    read differently): loaded, with a warning in case one is a typo of the other."""
    with caplog.at_level(logging.WARNING, logger="monitor.config"):
        config = parse_config({"models": [{"name": "Fraud"}, {"name": "fraud"}]}, env={})
    assert [m.name for m in config.models] == ["Fraud", "fraud"]
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.config"]
    assert any("'Fraud'" in line and "'fraud'" in line for line in lines), lines


@pytest.mark.parametrize(("a", "b"), list(NEAR.values()), ids=list(NEAR))
def test_receivers_that_look_identical_are_refused_naming_both(a: str, b: str) -> None:
    """A receiver's name is a metrics label and what routes name: two that look alike
    were two receivers shown as one."""
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/hook"}
    text = _problems({"alerting": {"receivers": {a: hook, b: hook}}})
    assert "receiver names" in text
    assert ascii(a) in text and ascii(b) in text


def test_receivers_differing_only_in_case_load_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/hook"}
    raw = {"models": [{"name": "m"}], "alerting": {"receivers": {"Ops": hook, "ops": hook}}}
    with caplog.at_level(logging.WARNING, logger="monitor.config"):
        config = parse_config(raw, env={})
    assert sorted(config.alerting.receivers) == ["Ops", "ops"]
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.config"]
    assert any("receiver names 'Ops', 'ops'" in line for line in lines), lines


# ----------------------------------------------------------------- no models


def test_no_models_under_reject_warns_that_every_event_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no model listed and the default ``unknown_models: reject`` every event is
    refused as unknown_model: the service ran, healthy, and monitored nothing."""
    with caplog.at_level(logging.WARNING, logger="monitor.config"):
        config = parse_config({}, env={})
    assert config.models == [] and config.unknown_models == "reject"
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.config"]
    assert any("no models" in line and "unknown_model" in line for line in lines), lines


def test_no_models_under_track_is_meaningful_and_quiet(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="monitor.config"):
        parse_config({"unknown_models": "track"}, env={})
    assert not [r for r in caplog.records if r.name == "monitor.config"]
