"""Configuration: every problem reported with its path; secrets only from the environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import check_config, load_config, parse_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_and_demo_configs_are_valid() -> None:
    cfg = load_config(ROOT / "config" / "monitor.yaml", env={})
    assert cfg.model("credit-risk") is not None
    assert check_config(cfg) == []
    demo = load_config(
        ROOT / "config" / "demo.yaml",
        env={
            "KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "WEBHOOK_URL": "http://127.0.0.1:2/",
            "WEBHOOK_SECRET": "s",
        },
    )
    assert demo.kafka.bootstrap_servers == "127.0.0.1:1"
    assert demo.alerting.receivers["demo-webhook"].signing_secret.get_secret_value() == "s"  # type: ignore[union-attr]


def test_every_problem_is_reported_with_its_path() -> None:
    raw = {
        "kafka": {"max_batch_records": 0, "security_protocol": "SASL_SSL"},
        "models": [
            {"name": "a", "window": {"size": 0}},
            {"name": "b", "window": {"size": 10, "step": 20}},
            {"name": "c", "features": {"x": "text"}},
        ],
        "bogus": 1,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    problems = err.value.problems
    joined = "\n".join(problems)
    assert "kafka.max_batch_records: Input should be greater than 0" in joined
    assert "models[0].window.size: Input should be greater than 0" in joined
    assert "models[1].window: Value error, step must be <= size" in joined
    assert "models[2].features.x: Input should be 'numeric' or 'categorical'" in joined
    assert "bogus: Extra inputs are not permitted" in joined
    assert len(problems) >= 5


def test_environment_substitution_and_missing_variables() -> None:
    raw = {
        "kafka": {
            "bootstrap_servers": "${BROKERS}",
            "sasl_password": "${NOPE}",
            "client_id": "${ID:-x}",
        }
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={"BROKERS": "h:1"})
    assert err.value.problems == [
        "kafka.sasl_password: environment variable NOPE is not set",
        # (a SASL setting under PLAINTEXT was silently ignored: now refused as well)
        "kafka: Value error, sasl_password: only used with security_protocol SASL_PLAINTEXT "
        "or SASL_SSL (security_protocol is PLAINTEXT)",
    ]
    cfg = parse_config(
        {
            **raw,
            "kafka": {
                **raw["kafka"],
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
            },
        },
        env={"BROKERS": "h:1", "NOPE": "hunter2"},
    )
    assert cfg.kafka.client_id == "x"
    assert (
        cfg.kafka.sasl_password is not None
        and cfg.kafka.sasl_password.get_secret_value() == "hunter2"
    )
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - name: m\n    window: {size: -1}\n    reference: {path: nowhere.csv}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "models[0].window.size" in run.stderr
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  - name: m\n    reference: {path: nowhere.csv}\n")
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "models[0].reference.path: file not found" in run.stderr
    good.write_text("models:\n  - name: m\n")
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_every_relative_path_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "ref.jsonl").write_text('{"x": 1.0}\n{"x": 2.0}\n')
    (folder / "tls").mkdir()
    _certificate(folder / "tls", None)[0].rename(folder / "tls" / "ca.pem")
    cfg_file = folder / "monitor.yaml"
    cfg_file.write_text(
        "state: {path: var/state.sqlite}\n"
        "kafka: {security_protocol: SSL, ssl_cafile: tls/ca.pem}\n"
        "alerting: {outbox_path: var/outbox.sqlite}\n"
        "defaults:\n  reference: {path: ref.jsonl, versions: {v2: ref.jsonl}}\n"
        "models:\n  - name: m\n  - name: n\n    reference: {path: /abs/ref.jsonl}\n"
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "etc" / "monitor.yaml")
    etc = folder.resolve()
    assert cfg.state.path == str(etc / "var/state.sqlite")
    assert cfg.alerting.outbox_path == str(etc / "var/outbox.sqlite")
    assert cfg.kafka.ssl_cafile == str(etc / "tls/ca.pem")
    assert cfg.defaults.reference.path == str(etc / "ref.jsonl")
    assert cfg.defaults.reference.versions == {"v2": str(etc / "ref.jsonl")}
    assert cfg.models[1].reference is not None and cfg.models[1].reference.path == "/abs/ref.jsonl"
    # check-config and run read the same file: model m inherits the default reference.
    assert [p for p in check_config(cfg) if "models[1]" not in p] == []
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(cfg_file)],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert run.returncode == 2
    assert "models[1].reference.path: file not found: /abs/ref.jsonl" in run.stderr
    assert "models[0]" not in run.stderr and "defaults." not in run.stderr


def test_check_config_loads_every_reference_and_checks_the_declared_features(
    tmp_path: Path,
) -> None:
    from monitor.reference import build_profile

    build_profile("m", [({"plan": "gold", "x": 1.0}, None)] * 30).save(tmp_path / "p.json")
    (tmp_path / "data.csv").write_text("x,plan\n1,gold\n2,silver\n")
    raw = {
        "models": [
            {"name": "a", "features": {"plan": "numeric"}, "reference": {"path": "p.json"}},
            {"name": "b", "features": {"age": "numeric"}, "reference": {"path": "p.json"}},
            {"name": "c", "features": {"x": "numeric"}, "reference": {"path": "p.json"}},
            {
                "name": "d",
                "features": {"plan": "numeric"},
                "reference": {"path": "data.csv", "versions": {"v2": "p.json"}},
            },
            {"name": "e"},
        ],
        "defaults": {"reference": {"path": "missing.jsonl"}},
    }
    problems = check_config(parse_config(raw, base_dir=tmp_path))
    assert len(problems) == 4, problems
    assert problems[0].startswith(
        "models[0].reference.path: model 'a': feature 'plan' is numeric in the config "
        "but categorical in the reference"
    )
    assert problems[1].startswith("models[1].reference.path: model 'b': reference has no feature")
    assert problems[2].startswith("models[3].reference.path: model 'd': feature 'plan' is numeric")
    assert problems[3] == (
        f"defaults.reference.path: file not found: {tmp_path.resolve() / 'missing.jsonl'} "
        "(model 'e')"
    )


def test_log_level_and_format_in_any_case() -> None:
    cfg = parse_config({"log_level": "debug", "log_format": "JSON"})
    assert cfg.log_level == "DEBUG" and cfg.log_format == "json"
    assert parse_config({"log_level": "Warning"}).log_level == "WARNING"
    with pytest.raises(ConfigError, match="log_level"):
        parse_config({"log_level": "verbose"})


@pytest.mark.parametrize("token", ["s\u00e9cret", "two words", "tab\there"])
def test_an_admin_token_that_could_never_match_is_a_config_error(token: str) -> None:
    # The silences API takes only visible-ASCII bearer tokens: any other token would make
    # every request a 403, so the config refuses it (without echoing it).
    with pytest.raises(ConfigError) as err:
        parse_config({"http": {"admin_token": token}})
    assert any(p.startswith("http.admin_token") for p in err.value.problems)
    assert token not in str(err.value)


def test_an_empty_admin_token_means_none() -> None:
    assert parse_config({"http": {"admin_token": ""}}).http.admin_token is None


def test_documented_defaults_equal_the_models_defaults() -> None:
    """The defaults config/monitor.yaml and the README write out (the segments,
    multivariate and validation sections of ``defaults:``, the kafka-only state options
    commented out with their default) are the pydantic models' defaults, so a reader
    copying them changes nothing and a changed default cannot leave the docs behind."""
    import re

    import yaml

    from monitor.config import ModelDefaults, MultivariateConfig, SegmentsConfig, StateConfig

    text = (ROOT / "config" / "monitor.yaml").read_text(encoding="utf-8")
    shown = yaml.safe_load(text)["defaults"]
    code = ModelDefaults()
    assert SegmentsConfig.model_validate(shown["segments"]) == code.segments
    assert set(shown["segments"]) == set(SegmentsConfig.model_fields)  # every one shown
    assert MultivariateConfig.model_validate(shown["multivariate"]) == code.multivariate
    assert set(shown["multivariate"]) == set(MultivariateConfig.model_fields)
    for key in ("infer", "tolerance", "alpha", "range_margin", "constraints"):
        assert shown["validation"][key] == getattr(code.validation, key), key
    assert shown["window"] == code.window.model_dump(include={"type", "size", "step"})
    assert shown["reference"]["learn_first"] == code.reference.learn_first
    commented = dict(
        re.findall(r"^  # (max_record_bytes|transaction_timeout_seconds): +(\S+)", text, re.M)
    )
    assert len(commented) == 2
    for key, value in commented.items():
        assert float(value) == getattr(StateConfig(), key), key
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    form = re.search(
        r"segments: \{by: \[\.\.\.\], top_k: (\d+), min_window_rows: (\d+), "
        r"min_reference_rows: (\d+)\}",
        readme,
    )
    assert form is not None
    assert tuple(map(int, form.groups())) == (
        code.segments.top_k,
        code.segments.min_window_rows,
        code.segments.min_reference_rows,
    )
    alpha = re.search(r"`multivariate\.alpha` (\S+),", readme)
    assert alpha is not None and float(alpha.group(1)) == code.multivariate.alpha
    assert f"explaining {code.multivariate.variance:.0%} of the variance" in readme


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("state: {transaction_timeout_seconds: yes}", "state.transaction_timeout_seconds"),
        ("defaults: {segments: {by: [region], top_k: on}}", "defaults.segments.top_k"),
        ("models: [{name: m, sample: {rate: yes}}]", "models[0].sample.rate"),
        ("defaults: {quality: {max_missing_rate: no}}", "defaults.quality.max_missing_rate"),
        (
            "alerting: {rules: [{repeat_interval_seconds: yes}]}",
            "alerting.rules[0].repeat_interval_seconds",
        ),
        ("alerting: {delivery: {max_attempts: on}}", "alerting.delivery.max_attempts"),
        ("defaults: {drift: {psi: {warning: yes}}}", "defaults.drift.psi.warning"),
        ("defaults: {drift: {persistence: on}}", "defaults.drift.persistence"),
        ("defaults: {performance: {window_size: yes}}", "defaults.performance.window_size"),
        (
            "defaults: {performance: {thresholds: {accuracy: {warning: no}}}}",
            "defaults.performance.thresholds.accuracy.warning",
        ),
        (
            "alerting: {receivers: {h: {type: webhook, url: 'http://h', timeout_seconds: yes}}}",
            "alerting.receivers.h.webhook.timeout_seconds",
        ),
    ],
)
def test_a_yaml_boolean_is_not_taken_as_a_number(text: str, where: str) -> None:
    """YAML reads yes/no/on/off as booleans, which pydantic would take as 1 and 0 (a 1 s
    transaction timeout, one segment value, every event): refused at the option's path."""
    import yaml

    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_load(text))
    assert [p.split(":")[0] for p in info.value.problems] == [where]
    assert "boolean" in info.value.problems[0]


def test_a_key_given_twice_is_an_error_not_the_first_silently_dropped(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys: a second ``segments:`` in a model, or a
    second ``alerting:`` at the end of a long file, would silently void the first."""
    cfg = tmp_path / "m.yaml"
    for text, key, lines in (
        (
            "models:\n  - name: m\n    segments: [region]\n    segments: [tier]\n",
            "segments",
            "3 and 4",
        ),
        ("alerting: {rules: []}\nlog_level: info\nalerting: {}\n", "alerting", "1 and 3"),
    ):
        cfg.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(cfg)
        assert f"key '{key}' given twice (lines {lines})" in info.value.problems[0]
    # A merge key still lets a mapping override what it merges.
    cfg.write_text(
        "defaults:\n  segments: &s {by: [region], top_k: 3}\n"
        "models:\n  - name: m\n    segments: {<<: *s, top_k: 4}\n"
    )
    assert load_config(cfg).models[0].segments.top_k == 4  # type: ignore[union-attr]


def test_kafka_only_state_settings_under_the_sqlite_backend_are_refused() -> None:
    """``instance_id`` or ``changelog_topic`` written while ``backend`` is still sqlite would
    do nothing, and the operator would believe the state is in Kafka: refused, named."""
    with pytest.raises(ConfigError) as info:
        parse_config({"state": {"instance_id": "a", "changelog_topic": "t"}})
    (problem,) = info.value.problems
    assert problem.startswith("state: ")
    assert "changelog_topic, instance_id: only used with backend: kafka" in problem
    kafka = parse_config({"state": {"backend": "kafka", "instance_id": "a"}})
    assert kafka.state.instance_id == "a"
    assert parse_config({"state": {"path": "x.sqlite"}}).state.backend == "sqlite"


@pytest.mark.parametrize(
    ("kafka", "state", "why"),
    [
        ({"dead_letter_topic": "predictions"}, {}, "dead_letter_topic is the predictions_topic"),
        ({"dead_letter_topic": "labels"}, {}, "dead_letter_topic is the labels_topic"),
        ({"labels_topic": "predictions"}, {}, "labels_topic is the predictions_topic"),
        ({"predictions_topic": ""}, {}, "kafka.predictions_topic: String should have at least"),
        ({"labels_topic": ""}, {}, "kafka.labels_topic: String should have at least"),
        ({"dead_letter_topic": ""}, {}, "kafka.dead_letter_topic: String should have at least"),
        ({}, {"backend": "kafka", "changelog_topic": "labels"}, "state.changelog_topic is kafka"),
        (
            {"dead_letter_topic": "predictions-monitor-state-alerts"},
            {"backend": "kafka"},
            "state.alerts_topic is kafka.dead_letter_topic",
        ),
        ({}, {"backend": "kafka", "alerts_topic": "s", "changelog_topic": "s"}, "alerts_topic"),
    ],
)
def test_a_topic_with_two_roles_is_refused(
    kafka: dict[str, str], state: dict[str, str], why: str
) -> None:
    """A dead-letter topic that is also an input fed itself without end (one invalid
    message became 80 copies in 8 seconds); labels read from the predictions topic made
    every prediction an invalid label; a changelog on an input mixes state and events."""
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": kafka, "state": state})
    assert why in str(info.value)
    parse_config({"kafka": {"dead_letter_topic": "dead", "labels_topic": None}})


def test_a_window_or_learning_too_large_to_hold_is_refused() -> None:
    """A window of 10**12 events passed check-config; then every start died of a
    MemoryError at the model's first events (and replayed into it again at the next)."""
    for defaults, why in (
        ({"window": {"size": 10**12, "step": 100}}, "defaults.window.size"),
        ({"window": {"type": "time", "seconds": 60, "step_seconds": 10, "size": 10**9}}, "size"),
        ({"reference": {"learn_first": 10**9}}, "defaults.reference.learn_first"),
    ):
        with pytest.raises(ConfigError, match="less than or equal to"):
            parse_config({"defaults": defaults})
        with pytest.raises(ConfigError, match=why.replace(".", r"\.")):
            parse_config({"defaults": defaults})
    parse_config(
        {
            "defaults": {
                "window": {"size": 10_000_000, "step": 1000},
                "reference": {"learn_first": 10**6},
            }
        }
    )


def test_check_config_checks_constraints_against_the_reference_when_none_are_declared(
    tmp_path: Path,
) -> None:
    """Without declared features a constraint on a feature the reference file lacks was
    never checked (``required: true`` included) and check-config said OK; a bound of 0 on a
    categorical feature was not reported either (0 is falsy)."""
    from monitor.reference import build_profile

    rows = [({"plan": "gold", "x": 1.0}, None), ({"plan": "silver", "x": 2.0}, None)] * 15
    build_profile("m", rows).save(tmp_path / "p.json")
    constraints = {
        "agee": {"required": True},  # a typo of a feature the reference does not have
        "plan": {"min": 0},
        "x": {"max": 10, "type": "categorical"},
    }
    raw = {
        "models": [
            {
                "name": "a",
                "reference": {"path": "p.json"},
                "validation": {"constraints": constraints},
            }
        ]
    }
    problems = check_config(parse_config(raw, base_dir=tmp_path))
    at = "models[0].validation.constraints"
    assert problems == [
        f"{at}.agee: not a feature in reference.path of model 'a'; the constraint would never "
        "be checked",
        f"{at}.plan: min apply to numeric features only",
        f"{at}.x.type: categorical, but the feature is numeric in reference.path",
    ]
    declared = {
        "name": "b",
        "features": {"plan": "categorical"},
        "validation": {"constraints": {"plan": {"max": 0}}},
    }
    assert check_config(parse_config({"models": [declared]}), references=False) == [
        f"{at}.plan: max apply to numeric features only"
    ]
    ok = {"x": {"max": 10}, "plan": {"domain": ["gold", "silver"]}}
    raw["models"][0]["validation"]["constraints"] = ok
    assert check_config(parse_config(raw, base_dir=tmp_path)) == []


def test_a_yaml_billion_laughs_or_alias_cycle_is_refused_at_once(tmp_path: Path) -> None:
    """Nine lines of nested aliases load at once and hold 10**8 values: check-config
    walked them for minutes; an alias inside its own anchor ended in a RecursionError."""
    import time

    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"\(file\): more than 1,000,000 values"):
        load_config(bomb)
    assert time.perf_counter() - started < 5
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="an alias inside its own anchor"):
        load_config(cycle)
    # Anchors, aliases and merge keys as people use them still load.
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        "defaults:\n  window: &w {type: count, size: 500, step: 100}\n"
        "models:\n  - {name: a, window: *w}\n  - name: b\n    window: {<<: *w, step: 50}\n"
    )
    assert load_config(ok).models[1].window.step == 50  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "where", "why"),
    [
        (
            {"alerting": {"delivery": {"initial_backoff_seconds": 600, "max_backoff_seconds": 60}}},
            "alerting.delivery: ",
            "initial_backoff_seconds (600) must be <= max_backoff_seconds (60)",
        ),
        (
            {"defaults": {"window": {"type": "time", "seconds": 60, "step_seconds": 300}}},
            "defaults.window: ",
            "step_seconds must be <= seconds",
        ),
        (
            {"defaults": {"performance": {"window_size": 50, "min_window_labels": 100}}},
            "defaults.performance: ",
            "min_window_labels (100) must be <= window_size (50)",
        ),
        (
            {
                "models": [
                    {"name": "m", "window": {"size": 100, "step": 10}, "segments": ["region"]}
                ]
            },
            "(root): ",
            "model 'm': segments.min_window_rows (200) must be <= window.size (100)",
        ),
        (
            {"defaults": {"window": {"size": 100, "step": 10}, "segments": ["region"]}},
            "(root): ",
            "defaults: segments.min_window_rows (200) must be <= window.size (100)",
        ),
    ],
)
def test_a_lower_bound_above_its_upper_bound_is_refused_at_its_path(
    raw: dict[str, object], where: str, why: str
) -> None:
    """A minimum above its maximum was accepted and then silently meant something else: an
    initial backoff clamped to the largest, a time step skipping events, a performance or
    segment minimum the window can never reach (no signal, ever)."""
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    (problem,) = info.value.problems
    assert problem.startswith(where), problem
    assert why in problem


def test_equal_bounds_are_accepted() -> None:
    parse_config(
        {
            "alerting": {"delivery": {"initial_backoff_seconds": 5, "max_backoff_seconds": 5}},
            "defaults": {
                "window": {"type": "time", "seconds": 60, "step_seconds": 60, "size": 200},
                "performance": {"window_size": 100, "min_window_labels": 100},
                "segments": {"by": ["region"], "min_window_rows": 200},
            },
        }
    )


def test_check_config_and_run_exit_2_on_backoff_out_of_order(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "alerting:\n  delivery: {initial_backoff_seconds: 600, max_backoff_seconds: 60}\n"
        "models:\n  - name: m\n"
    )
    for command in ("check-config", "run"):
        args = [sys.executable, "-m", "monitor.cli", command]
        args += [str(bad)] if command == "check-config" else ["--config", str(bad)]
        run = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (command, run.stderr)
        assert "alerting.delivery: " in run.stderr
        assert "initial_backoff_seconds (600) must be <= max_backoff_seconds (60)" in run.stderr


@pytest.mark.parametrize("task", ["multiclass", "regression", None])
@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"positive_class": "cat"}, "positive_class"),
        ({"decision_threshold": 0.7}, "decision_threshold"),
        ({"positive_class": 1, "decision_threshold": 0.5}, "positive_class, decision_threshold"),
    ],
)
def test_binary_only_performance_settings_are_refused_for_other_tasks(
    task: str | None, given: dict[str, object], named: str
) -> None:
    """``positive_class: cat`` on a multiclass model was silently ignored: the operator
    believed precision and recall were of that class. Refused, at its path, saying why."""
    with pytest.raises(ConfigError) as info:
        parse_config({"models": [{"name": "m", "performance": {"task": task, **given}}]})
    (problem,) = info.value.problems
    assert problem.startswith("models[0].performance: "), problem
    assert f"{named}: applies to binary tasks only (task is {task})" in problem
    # Binary takes them; other tasks are fine with the defaults left alone.
    parse_config({"models": [{"name": "m", "performance": {"task": "binary", **given}}]})
    parse_config({"models": [{"name": "m", "performance": {"task": task}}]})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("defaults: {windw: {size: 10}}", "defaults.windw: {}; did you mean 'window'?"),
        ("kafak: {}", "kafak: {}; did you mean 'kafka'?"),
        (
            "models: [{name: m, referenc: {learn_first: 10}}]",
            "models[0].referenc: {}; did you mean 'reference'?",
        ),
        (
            "defaults: {drift: {psi: {warnign: 0.1}}}",
            "defaults.drift.psi.warnign: {}; did you mean 'warning'?",
        ),
        ("alerting: {rules: [{fro: 2}]}", "alerting.rules[0].fro: {}; did you mean 'for'?"),
        (
            "alerting: {receivers: {h: {type: webhook, url: 'http://h', singing_secret: x}}}",
            "alerting.receivers.h.webhook.singing_secret: {}; did you mean 'signing_secret'?",
        ),
        (
            "alerting: {receivers: {p: {type: pagerduty, routing_key: k, zzz: 1}}}",
            "alerting.receivers.p.pagerduty.zzz: {}; the keys here are: allow_insecure_http, "
            "page_cap, routing_key, timeout_seconds, type, url",
        ),
    ],
)
def test_an_unknown_key_is_refused_with_a_suggestion(
    tmp_path: Path, text: str, problem: str
) -> None:
    """A typo is refused at its path, and the message names the key meant (or the keys
    accepted there): the operator fixing it at night should not need the source."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert info.value.problems == [problem.format("Extra inputs are not permitted")]


def test_yaml_is_read_with_the_yaml_1_2_core_schema(tmp_path: Path) -> None:
    """YAML 1.1 (PyYAML's default) reads NO/on/off as booleans, 010 as eight and 1:30 as
    ninety: a model, feature or category named NO (Norway) was refused at a wrong path
    ("models[0].features[0].[key]"), ``learn_first: 010`` learned from 8 events. Only
    true/false are booleans now; an on/off option still takes yes/no/on/off."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "defaults:\n"
        "  multivariate: {enabled: no}\n"
        "  validation: {infer: off, enabled: on}\n"
        "models:\n"
        "  - name: NO\n"
        "    features: {NO: categorical, on: numeric, country: categorical}\n"
        "    reference: {learn_first: 010, versions: {2026-12-01: v.json}}\n"
        "    validation: {constraints: {country: {domain: [NO, SE, DK], required: yes}}}\n"
        "alerting:\n"
        "  silences: [{matchers: {model: NO}, starts_at: 2024-05-01T00:00:00Z,\n"
        "              ends_at: 2024-05-08T00:00:00Z}]\n"
        "  delivery: {max_attempts: 0x10}\n"
    )
    config = load_config(cfg, env={})
    (model,) = config.models
    assert model.name == "NO"
    assert model.features == {"NO": "categorical", "on": "numeric", "country": "categorical"}
    assert model.reference is not None and model.reference.learn_first == 10
    assert list(model.reference.versions) == ["2026-12-01"]
    assert model.validation is not None
    country = model.validation.constraints["country"]
    assert country.domain == ["NO", "SE", "DK"] and country.required is True
    assert config.defaults.multivariate.enabled is False
    assert config.defaults.validation.infer is False and config.defaults.validation.enabled
    silence = config.alerting.silences[0]
    assert silence.matchers.model == "NO" and silence.ends_at.day == 8
    assert config.alerting.delivery.max_attempts == 16


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("limits: {max_timestamp_ahead_seconds: 1:30}", "limits.max_timestamp_ahead_seconds"),
        ("state: {checkpoint_interval_seconds: 5m}", "state.checkpoint_interval_seconds"),
        ("alerting: {delivery: {max_attempts: yes}}", "alerting.delivery.max_attempts"),
        ("alerting: {delivery: {max_attempts: true}}", "alerting.delivery.max_attempts"),
    ],
)
def test_a_number_option_refuses_what_is_not_a_number(
    tmp_path: Path, text: str, where: str
) -> None:
    """``1:30`` was YAML 1.1's sexagesimal 90 (seconds? minutes?); ``5m`` and yes/true are
    no numbers either: each refused at its path, never taken as some number."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert [p.split(":")[0] for p in info.value.problems] == [where]


@pytest.mark.parametrize(
    ("starts_at", "ends_at"),
    [
        ("2024-05-01T00:00:00Z", "2024-05-08"),
        ("2024-05-01T00:00:00Z", "2024-05-08T00:00:00"),
        ("2024-05-01T00:00:00", "2024-05-08T00:00:00"),
    ],
)
def test_a_silence_time_needs_a_timezone(tmp_path: Path, starts_at: str, ends_at: str) -> None:
    """One time with a timezone and one without made comparing them raise TypeError (a
    traceback from check-config and run); two without were read in the host's local zone.
    Both refused at the option's path."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"alerting: {{silences: [{{starts_at: '{starts_at}', ends_at: '{ends_at}'}}]}}")
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    problems = info.value.problems
    assert problems and all(
        p.startswith("alerting.silences[0].") and "timezone" in p for p in problems
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "defaults: {performance: {thresholds: {accuracy: {warning: .nan}}}}",
            "defaults.performance.thresholds.accuracy.warning",
        ),
        (
            "defaults: {validation: {constraints: {age: {min: .NaN, max: 120}}}}",
            "defaults.validation.constraints.age.min",
        ),
        (
            "defaults: {performance: {thresholds: {accuracy: {critical: '${ACC_CRITICAL}'}}}}",
            "defaults.performance.thresholds.accuracy.critical",
        ),
    ],
)
def test_nan_is_not_a_number_option(tmp_path: Path, text: str, where: str) -> None:
    """NaN (``.nan``, or ``nan`` from a variable) passed every option without a bound, and
    a threshold or constraint of NaN never compares true: an alert that can never fire."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={"ACC_CRITICAL": "nan"})
    assert [p.split(":")[0] for p in info.value.problems] == [where]
    assert "NaN" in info.value.problems[0]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("state: {checkpoint_interval_seconds: .inf}", "state.checkpoint_interval_seconds"),
        ("kafka: {stall_seconds: '${STALL}'}", "kafka.stall_seconds"),
        ("shutdown_grace_seconds: -.inf", "shutdown_grace_seconds"),
        (
            "defaults: {validation: {constraints: {age: {min: 0, max: .inf}}}}",
            "defaults.validation.constraints.age.max",
        ),
        (
            "models: [{name: m, features: {x: numeric}, window: {type: time, seconds: 1e999}}]",
            "models[0].window.seconds",
        ),
    ],
)
def test_infinity_is_not_a_number_option(tmp_path: Path, text: str, where: str) -> None:
    """Infinity passed every lower bound: a checkpoint interval that never elapsed (no
    periodic checkpoint), a stall check that never failed, a shutdown waiting forever, a
    constraint bounding nothing, all with "OK" from check-config."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={"STALL": "1e999"})
    assert [p.split(":")[0] for p in info.value.problems] == [where]
    assert "not infinity" in info.value.problems[0]


def _certificate(folder: Path, passphrase: str | None) -> tuple[Path, Path]:
    """A self-signed certificate and its key (encrypted with ``passphrase`` if given)."""
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=monitor",
         *(["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"])],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return cert, key


def _check(
    cfg: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *argv, str(cfg)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_tls_files_that_cannot_be_loaded_are_one_line_from_check_config_and_run(
    tmp_path: Path,
) -> None:
    """check-config said OK to an ssl_cafile that does not exist, or is not a CA; run then
    died on a FileNotFoundError / SSLError traceback from inside ssl. Now both name the
    option, exit 2, before connecting."""
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cfg = tmp_path / "m.yaml"
    for cafile, why in [
        ("missing.pem", "kafka.ssl_cafile: cannot read"),
        (str(tmp_path), "kafka.ssl_cafile: cannot read"),
        ("junk.pem", "kafka.ssl_cafile: "),
    ]:
        cfg.write_text(
            "kafka: {bootstrap_servers: '127.0.0.1:1', security_protocol: SSL, "
            f"ssl_cafile: '{cafile}'}}\nhttp: {{port: 0}}\nunknown_models: track\n"
        )
        for command in ("check-config", "run"):
            run = _check(cfg, command)
            assert run.returncode == 2, (command, cafile, run.stderr)
            assert why in run.stderr and "Traceback" not in run.stderr, run.stderr
            assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_an_encrypted_client_key_opens_with_ssl_password_from_the_environment(
    tmp_path: Path,
) -> None:
    """An encrypted client key could not be used at all (no option for its passphrase:
    OpenSSL prompted on the terminal, or failed); now ``ssl_password`` opens it, and a
    wrong or missing one is one line that never shows it."""
    cert, key = _certificate(tmp_path, "PASS-PHRASE-42")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        f"kafka: {{security_protocol: SSL, ssl_certfile: '{cert}', ssl_keyfile: '{key}', "
        "ssl_password: '${KEY_PASSPHRASE:-}'}\n"
    )
    ok = _check(cfg, "check-config", env={"KEY_PASSPHRASE": "PASS-PHRASE-42"})
    assert ok.returncode == 0, ok.stderr
    for passphrase in ("WRONG-PHRASE-77", ""):
        bad = _check(cfg, "check-config", env={"KEY_PASSPHRASE": passphrase})
        assert bad.returncode == 2, bad.stderr
        assert "kafka.ssl_certfile, ssl_keyfile: the certificate and key cannot be loaded" in (
            bad.stderr
        )
        assert "PHRASE" not in bad.stdout + bad.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    cert, key = _certificate(plain, None)  # a key in clear needs no password
    cfg.write_text(
        f"kafka: {{security_protocol: SSL, ssl_certfile: '{cert}', ssl_keyfile: '{key}'}}"
    )
    assert _check(cfg, "check-config").returncode == 0


@pytest.mark.parametrize(
    ("kafka", "problem"),
    [
        (
            "{ssl_cafile: ca.pem}",
            "kafka: Value error, ssl_cafile: only used with security_protocol SSL or SASL_SSL "
            "(security_protocol is PLAINTEXT)",
        ),
        (
            "{security_protocol: SSL, sasl_mechanism: PLAIN, sasl_username: u, sasl_password: p}",
            "kafka: Value error, sasl_mechanism, sasl_username, sasl_password: only used with "
            "security_protocol SASL_PLAINTEXT or SASL_SSL (security_protocol is SSL)",
        ),
        (
            "{security_protocol: SSL, ssl_keyfile: k.pem}",
            "kafka: Value error, ssl_keyfile and ssl_password are the client certificate's "
            "key: set ssl_certfile",
        ),
    ],
)
def test_security_settings_the_protocol_does_not_use_are_refused(
    tmp_path: Path, kafka: str, problem: str
) -> None:
    """They were silently ignored: TLS files under PLAINTEXT connected in clear, a SASL
    mechanism under SSL connected without authenticating, a key without its certificate
    was never loaded."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"kafka: {kafka}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert info.value.problems == [problem]


def test_a_key_with_no_value_is_the_key_left_out(tmp_path: Path) -> None:
    """``alerting:`` with everything under it commented out is YAML's null: it was refused
    ("Input should be a valid dictionary or instance of AlertingConfig") although the
    alerting module says an empty section is valid. A key with no value now means the
    defaults, as if left out; an option that takes null keeps it."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "kafka:\n"
        "  labels_topic:\n"  # takes null: labels disabled, not the default 'labels'
        "http:\n"
        "  # admin_token: ${MONITOR_ADMIN_TOKEN}\n"
        "defaults:\n"
        "  segments:\n"
        "models:\n"
        "  - name: m\n"
        "    window:\n"  # takes null: the defaults' window
        "alerting:\n"
        "  receivers:\n"
        "    w: {type: webhook, url: 'http://127.0.0.1:9/x', headers: }\n"
        "  rules:\n"
        "  delivery:\n"
    )
    config = load_config(cfg, env={})
    assert config.kafka.labels_topic is None
    assert config.http == parse_config({}).http
    assert config.defaults.segments.by == []
    assert config.model("m") is not None and config.model("m").window.size == 5000  # type: ignore[union-attr]
    assert config.alerting.rules == parse_config({}).alerting.rules
    assert config.alerting.delivery == parse_config({}).alerting.delivery
    assert config.alerting.receivers["w"].headers == {}  # type: ignore[union-attr]
    for text in ("alerting:\n", "models:\n", "kafka:\n  # bootstrap_servers: x\n"):
        cfg.write_text(text)
        assert load_config(cfg, env={}) == parse_config({}, base_dir=tmp_path)
    cfg.write_text("models:\n  - name:\n")  # a required option stays required
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert [p.split(":")[0] for p in info.value.problems] == ["models[0].name"]


@pytest.mark.parametrize(
    ("kafka", "accepted"),
    [
        ({"poll_timeout_ms": 30_000}, False),  # the default stall_seconds is 30
        ({"poll_timeout_ms": 16_000}, False),
        ({"poll_timeout_ms": 15_000}, True),
        ({"poll_timeout_ms": 2_000, "stall_seconds": 3}, False),
        ({"poll_timeout_ms": 1_500, "stall_seconds": 3}, True),
    ],
)
def test_a_poll_as_long_as_a_stall_is_refused(kafka: dict[str, float], accepted: bool) -> None:
    """On an idle topic one poll waits its whole poll_timeout_ms; /healthz fails after
    stall_seconds without a completed poll: a poll_timeout_ms near stall_seconds failed
    the liveness probe in every quiet spell (and a SIGTERM waited the poll out)."""
    if accepted:
        assert parse_config({"kafka": kafka}).kafka.poll_timeout_ms == kafka["poll_timeout_ms"]
        return
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": kafka})
    (problem,) = info.value.problems
    assert problem.startswith("kafka: Value error, poll_timeout_ms") and "stall_seconds" in problem


def test_a_heartbeat_slower_than_the_session_is_refused() -> None:
    """Kafka requires heartbeat.interval.ms < session.timeout.ms (the Java client refuses
    it); aiokafka took it, and the member was evicted between two heartbeats."""
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 20_000}})
    (problem,) = info.value.problems
    assert problem.startswith("kafka: Value error, heartbeat_interval_ms (20000) must be lower")
    with pytest.raises(ConfigError):
        parse_config({"kafka": {"session_timeout_ms": 3_000}})  # the default heartbeat is 3 s
    assert parse_config({"kafka": {"session_timeout_ms": 6_000, "heartbeat_interval_ms": 500}})


def test_a_parquet_reference_without_its_extension_can_name_its_format(tmp_path: Path) -> None:
    """A Parquet reference whose name does not end in .parquet was refused with "cannot
    tell the format from the extension; set reference.format", but reference.format had
    no 'parquet' (auto, jsonl, csv, profile): the advice could not be followed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [float(i) for i in range(50)]}), tmp_path / "train.data")
    cfg = tmp_path / "m.yaml"
    cfg.write_text("models:\n  - name: m\n    reference: {path: train.data}\n")
    (problem,) = check_config(load_config(cfg, env={}))
    assert "set reference.format" in problem
    cfg.write_text("models:\n  - name: m\n    reference: {path: train.data, format: parquet}\n")
    assert check_config(load_config(cfg, env={})) == []


@pytest.mark.parametrize(
    "servers", ["", "kafka:notaport", "127.0.0.1:99999", "a:1,,b:2", ":9092", "kafka:"]
)
def test_unusable_bootstrap_servers_are_refused_at_their_path(servers: str) -> None:
    """check-config said OK; ``run`` then died on a ValueError or OverflowError traceback
    from inside aiokafka (or "cannot connect to Kafka at :" for a variable set to '')."""
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": {"bootstrap_servers": "${BROKERS}"}}, env={"BROKERS": servers})
    (problem,) = info.value.problems
    assert problem.startswith("kafka.bootstrap_servers: Value error, ")


@pytest.mark.parametrize("servers", ["kafka", "kafka:9092", "a:1, b:2", "[::1]:9092", "::1"])
def test_usable_bootstrap_servers_are_accepted(servers: str) -> None:
    assert parse_config({"kafka": {"bootstrap_servers": servers}}).kafka.bootstrap_servers


@pytest.mark.parametrize(
    ("kafka", "state", "where"),
    [
        ({"predictions_topic": "a b"}, {}, "kafka.predictions_topic"),
        ({"labels_topic": "."}, {}, "kafka.labels_topic"),
        ({"dead_letter_topic": "x/y"}, {}, "kafka.dead_letter_topic"),
        ({"predictions_topic": "t" * 250}, {}, "kafka.predictions_topic"),
        ({}, {"backend": "kafka", "changelog_topic": "state:v1"}, "state.changelog_topic"),
        ({}, {"backend": "kafka", "alerts_topic": "älerts"}, "state.alerts_topic"),
        ({"predictions_topic": "p" * 240}, {"backend": "kafka"}, "(root)"),  # derived: too long
        ({"group_id": ""}, {}, "kafka.group_id"),
    ],
)
def test_names_kafka_refuses_are_refused_at_their_path(
    kafka: dict[str, str], state: dict[str, str], where: str
) -> None:
    """A topic Kafka refuses ('a b') passed check-config, then the monitor ran without ever
    consuming, logging "'a b' is not a valid topic name" every 5 s (an empty group_id:
    InvalidGroupIdError every second), /healthz 200 all along."""
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": kafka, "state": state})
    assert [p.split(": ")[0] for p in info.value.problems] == [where]


@pytest.mark.parametrize(
    ("task", "metric", "bound"),
    [
        ("binary", "accuracy", {"warning": 85, "critical": 80}),
        ("binary", "estimated_roc_auc", {"critical": 70}),
        ("binary", "positive_rate_predicted", {"warning": 30, "alert_when": "above"}),
        ("binary", "brier", {"warning": -0.1}),
        ("multiclass", "f1:churned", {"warning": 90}),
    ],
)
def test_a_percentage_for_a_fraction_metric_is_refused(
    task: str, metric: str, bound: dict[str, object]
) -> None:
    """Accuracy, F1, AUC, rates and Brier are fractions from 0 to 1: ``accuracy: {warning:
    85}`` (meant as 85%) paged on every window, ``positive_rate_predicted: {warning: 30,
    alert_when: above}`` never; both passed the check."""
    raw = {"defaults": {"performance": {"task": task, "thresholds": {metric: bound}}}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    (problem,) = info.value.problems
    assert problem.startswith("defaults.performance: Value error, thresholds.") and (
        "a fraction from 0 to 1" in problem
    )
    fine = {
        "defaults": {
            "performance": {"task": "regression", "thresholds": {"mape": {"warning": 1.5}}}
        }
    }
    assert parse_config(fine)  # MAPE may exceed 1 (150%)


def test_time_settings_of_a_count_window_are_refused() -> None:
    """``window: {seconds: 3600, step_seconds: 300}`` without ``type: time`` was a count
    window of 5000 events: the hour silently ignored."""
    with pytest.raises(ConfigError) as info:
        parse_config({"defaults": {"window": {"seconds": 3600, "step_seconds": 300}}})
    assert info.value.problems == [
        "defaults.window: Value error, seconds, step_seconds: only used with type: time "
        "(type is count); add type: time"
    ]
    timed = {"type": "time", "seconds": 3600, "step_seconds": 300}
    assert parse_config({"defaults": {"window": timed}}).defaults.window.seconds == 3600


def test_a_number_where_a_name_is_expected_says_to_quote_it(tmp_path: Path) -> None:
    """YAML reads ``name: 2024`` and a model_version ``1.10`` as numbers (1.10 as 1.1): the
    error said only "Input should be a valid string"; it now says why and what to do."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "models:\n  - name: 2024\n    reference: {learn_first: 10, versions: {1.10: v.json}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert info.value.problems == [
        "models[0].name: Input should be a valid string (YAML read a number: quote it)",
        "models[0].reference.versions.1.1.[key]: Input should be a valid string (YAML read a "
        "number: quote it)",
    ]


#: The commented-out options of config/monitor.yaml, in the groups that go together.
COMMENTED_GROUPS = [
    (("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password"), {}),
    (("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile",
      "ssl_certfile", "ssl_keyfile", "ssl_password"), {}),
    (("changelog_topic", "instance_id", "max_record_bytes", "alerts_topic",
      "transaction_timeout_seconds"), {"backend: sqlite": "backend: kafka"}),
    (("admin_token",), {}),
    (("versions", "error_drift", "error_drift_delta", "sample"), {}),
    (("mode",), {"segments: [region]": "segments: []"}),
    (("team-slack", "oncall", "alertmanager", "retrain", "- {segment", "silences",
      "runbook_urls", "runbook_base_url", "dashboard_url_template", "routes",
      "retrain_policy"), {"  #             starts_at": "                starts_at"}),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "edits"), COMMENTED_GROUPS)
def test_the_example_configs_commented_options_pass_when_uncommented(
    tmp_path: Path, keys: tuple[str, ...], edits: dict[str, str]
) -> None:
    """An option shown commented out in config/monitor.yaml is an example to copy: each
    group, uncommented, passes check-config's file checks. (`alerting.dashboard_url_template`
    was shown twice: uncommented, a key given twice.)"""
    text = (ROOT / "config" / "monitor.yaml").read_text()
    for old, new in edits.items():
        text = text.replace(old, new)
    pattern = "|".join(re.escape(k) for k in keys)
    text, n = re.subn(rf"(?m)^(\s*)# ((?:{pattern})[: ])", r"\1\2", text)
    assert n >= len(keys), "an example option is no longer in the file"
    (tmp_path / "monitor.yaml").write_text(text)
    env = {"KAFKA_PASSWORD": "p", "KAFKA_SSL_KEY_PASSWORD": "k", "HOSTNAME": "h"}
    env |= {k: "x" for k in ("AIRFLOW_TOKEN", "PAGERDUTY_ROUTING_KEY")}
    env["MONITOR_ADMIN_TOKEN"] = "x" * 32  # the shortest accepted is 16 characters
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.example/services/T/B/x"
    config = load_config(tmp_path / "monitor.yaml", env=env)
    problems = check_config(config, references=False)
    assert [p for p in problems if not p.startswith("kafka.ssl_")] == []


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """A Latin-1 file (a model named café saved by an old editor) was a UnicodeDecodeError
    traceback from check-config and run."""
    cfg = tmp_path / "m.yaml"
    cfg.write_bytes(b"models:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.problems == ["(file): not UTF-8 (byte 0xe9 on line 2); save it as UTF-8"]
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr


def test_performance_settings_without_a_task_are_refused_for_a_model(tmp_path: Path) -> None:
    """``task: null`` is tracking off: a model's own window_size/join_ttl_seconds with no
    task were silently unused (no metrics, no word). Refused in check-config and run; the
    same keys in ``defaults`` reach no model either and are warned about, not refused."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "defaults:\n  performance: {task: binary}\n"
        "models:\n  - name: m\n"
        "    performance: {window_size: 1000, join_ttl_seconds: 60}\n"
    )
    for command in ("check-config", "run"):
        args = [sys.executable, "-m", "monitor.cli", command]
        args += [str(bad)] if command == "check-config" else ["--config", str(bad)]
        run = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (command, run.stderr)
        assert "models[0].performance: " in run.stderr
        assert "join_ttl_seconds, window_size: set without task" in run.stderr
    # An explicit null task with settings is the same misconfiguration.
    with pytest.raises(
        ConfigError, match=r"models\[0\]\.performance: Value error, window_size: set"
    ):
        parse_config({"models": [{"name": "m", "performance": {"task": None, "window_size": 500}}]})
    # With a task, or with nothing but the task, nothing is said.
    parse_config({"models": [{"name": "m", "performance": {"task": "binary", "window_size": 500}}]})
    parse_config({"models": [{"name": "m", "performance": {"task": None}}]})


def test_performance_settings_without_a_task_in_defaults_are_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="monitor.config"):
        parse_config({"defaults": {"performance": {"window_size": 100}}, "models": [{"name": "m"}]})
    (record,) = [r for r in caplog.records if r.name == "monitor.config"]
    assert record.getMessage().startswith("defaults.performance: window_size: set without task")
    caplog.clear()
    with caplog.at_level("WARNING", logger="monitor.config"):
        parse_config(
            {
                "defaults": {"performance": {"task": "regression", "window_size": 100}},
                "models": [{"name": "m"}],
            }
        )
    assert not [r for r in caplog.records if r.name == "monitor.config"]
