"""Structure of docker-compose.yml and the Dockerfile (no Docker engine needed).

``docker compose up`` cannot run here; these tests check what would otherwise fail only
there: missing build contexts or mounted files, colliding host ports, a monitor config that
does not validate with the environment compose gives it, command lines naming subcommands or
flags the CLI does not have, the start order of the reference job.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from monitor.cli import build_parser
from monitor.config import load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
MONITOR_SERVICES = ("reference", "monitor", "simulator")  # built from our Dockerfile


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def test_expected_services() -> None:
    assert set(services()) >= {
        "kafka",
        "reference",
        "monitor",
        "simulator",
        "prometheus",
        "grafana",
        "alertmanager",
    }
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = env_of(services()["kafka"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "zookeeper" not in services()


def test_images_and_build_contexts_exist() -> None:
    for name, svc in services().items():
        assert "image" in svc or "build" in svc, name
        build = svc.get("build")
        if build is not None:
            ctx = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert ctx.is_dir(), f"{name}: build context {ctx} missing"
            dockerfile = ctx / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        if "image" in svc and build is None:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", svc["image"]), f"{name}: pin a tag"
    for name in MONITOR_SERVICES:
        assert "build" in services()[name], f"{name} must run our image"


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / "Dockerfile").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    health = [ln for ln in lines if ln.upper().startswith("HEALTHCHECK")]
    assert health and "/healthz" in (ROOT / "Dockerfile").read_text()
    assert "9108" in (ROOT / "Dockerfile").read_text()
    # Everything the Dockerfile copies is in the build context and not ignored.
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for ln in lines:
        # COPY --from=<stage> copies out of an earlier build stage, not the context.
        if ln.upper().startswith("COPY ") and "--from=" not in ln:
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} missing"
                assert src not in ignored and src.split("/")[0] not in ignored, src


def test_mounted_host_paths_exist() -> None:
    named = set(compose().get("volumes") or {})
    for name, svc in services().items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if source in named:
                continue
            assert source.startswith("./"), f"{name}: {source} is neither named nor relative"
            assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"


def test_published_host_ports_do_not_collide() -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, svc in services().items():
        for p in svc.get("ports", []):
            parts = str(p).split(":")
            host_ip, host_port = (parts[0], parts[1]) if len(parts) == 3 else ("0.0.0.0", parts[0])
            key = (host_ip, host_port)
            assert key not in seen, f"{name} and {seen[key]} both publish {host_ip}:{host_port}"
            seen[key] = name
    assert {p for _, p in seen} >= {"3000", "9090", "9093", "9108"}


def test_start_order() -> None:
    s = services()
    assert s["monitor"]["depends_on"]["reference"]["condition"] == (
        "service_completed_successfully"
    )
    assert s["monitor"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "kafka" in s["simulator"]["depends_on"]
    # The reference job and the monitor share the volume the reference is written to.
    ref_vol = [v for v in s["reference"]["volumes"] if v.endswith(":/data")]
    assert ref_vol and ref_vol[0] in s["monitor"]["volumes"]


def test_monitor_healthcheck_port_matches_config(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "compose.yaml").read_text())
    assert cfg["http"]["host"] == "0.0.0.0"
    # The port comes from MONITOR_HTTP_PORT, which the healthchecks read too.
    assert cfg["http"]["port"] == "${MONITOR_HTTP_PORT:-9108}"
    env = env_of(services()["monitor"])
    assert env["MONITOR_HTTP_PORT"] == "9108"
    env["MONITOR_DATA_DIR"] = str(tmp_path)
    (tmp_path / "reference.jsonl").write_text("")
    assert load_config(ROOT / "config" / "compose.yaml", env=env).http.port == 9108
    assert (
        load_config(
            ROOT / "config" / "compose.yaml", env={**env, "MONITOR_HTTP_PORT": "9200"}
        ).http.port
        == 9200
    )
    assert "127.0.0.1:9108:9108" in services()["monitor"]["ports"]
    prom = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "monitor")
    assert job["static_configs"][0]["targets"] == ["monitor:9108"]


def _flags(parser: Any) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _subparser(argv: list[str]) -> Any:
    parser = build_parser()
    node = parser
    for word in argv:
        subs = [a for a in node._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or word not in subs[0].choices:
            break
        node = subs[0].choices[word]
    return node


@pytest.mark.parametrize("name", MONITOR_SERVICES)
def test_command_lines_use_real_cli(name: str) -> None:
    argv = command(services()[name])
    # The CLI itself must accept the whole command line (argparse exits 2 otherwise)...
    args = build_parser().parse_args(argv)
    assert args.func is not None
    # ...and `monitor <cmd> --help` lists every flag used.
    sub = argv[0]
    res = subprocess.run(
        [sys.executable, "-m", "monitor.cli", sub, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    for word in argv[1:]:
        if word.startswith("--"):
            assert word in res.stdout, f"{name}: `monitor {sub} --help` has no {word}"
            assert word in _flags(_subparser([sub]))


def test_monitor_config_passes_check_config(tmp_path: Path) -> None:
    """`monitor check-config` with the monitor service's environment.

    The reference the config names lives in the shared volume (/data); here the reference
    service's own command line writes it, with /data mapped to a temp dir, and
    MONITOR_DATA_DIR is pointed there.
    """
    s = services()
    ref_cmd = [a.replace("/data", str(tmp_path)) for a in command(s["reference"])]
    res = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *ref_cmd],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "reference.jsonl").is_file()

    env = env_of(s["monitor"])
    assert env["MONITOR_DATA_DIR"] == "/data"
    env["MONITOR_DATA_DIR"] = str(tmp_path)
    mounted = next(
        v for v in s["monitor"]["volumes"] if v.endswith(":/etc/monitor/compose.yaml:ro")
    )
    config_file = ROOT / mounted.split(":")[0]
    assert command(s["monitor"]) == ["run", "--config", "/etc/monitor/compose.yaml"]
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**base, **env},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout

    # Without the compose environment's data dir the reference is missing: the check is real.
    env["MONITOR_DATA_DIR"] = str(tmp_path / "nowhere")
    res = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**base, **env},
    )
    assert res.returncode == 2 and "reference.path" in res.stderr


def test_simulator_drifts_the_dashboard_features() -> None:
    argv = command(services()["simulator"])
    args = build_parser().parse_args(argv)
    assert args.bootstrap == "kafka:9092"
    assert args.drift != "none" and args.labels_topic == "labels"
    assert args.drift_start / max(args.rate, 1) <= 60, "drift should start within a minute"
    cfg = yaml.safe_load((ROOT / "config" / "compose.yaml").read_text())
    assert args.topic == cfg["kafka"]["predictions_topic"]
    assert args.labels_topic == cfg["kafka"]["labels_topic"]
    assert args.model in {m["name"] for m in cfg["models"]}


# --------------------------------------------------------------------------- Compose v2

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """``${VAR:?message}`` with VAR unset: compose refuses to start with this message."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """The Compose Specification's interpolation (12-interpolation.md), for one string."""

    def repl(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-"):
            return arg if unset else str(value)
        if op in ("?", ":?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op in ("+", ":+"):
            return "" if unset else arg
        return value or ""

    return _INTERPOLATION.sub(repl, text)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node


COMPOSE_ENV = {"GRAFANA_ADMIN_PASSWORD": "s3cret-for-the-test"}


def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates_against_the_compose_specification() -> None:
    """What `docker compose config` checks, offline: interpolation, then the schema.

    The Compose v2 plugin is not installed where the suite runs; the schema is the Compose
    Specification's own (tests/schemas/README.md says where it comes from).
    """
    doc = interpolated(compose(), COMPOSE_ENV)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in compose_validator().iter_errors(doc)]
    assert not errors, errors
    # the check is real: a misspelt key and a mistyped value are refused
    broken = json.loads(json.dumps(doc))
    broken["services"]["monitor"]["healthchek"] = broken["services"]["monitor"].pop("healthcheck")
    broken["services"]["kafka"]["ports"] = 9092
    assert len(list(compose_validator().iter_errors(broken))) >= 2


def test_grafana_needs_an_admin_password_from_the_environment() -> None:
    env = env_of(services()["grafana"])
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        interpolated(compose(), {})
    with pytest.raises(MissingVariable):
        interpolated(compose(), {"GRAFANA_ADMIN_PASSWORD": ""})
    doc = interpolated(compose(), COMPOSE_ENV)
    grafana_env = doc["services"]["grafana"]["environment"]
    assert grafana_env["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret-for-the-test"
    # no default hides behind it (":-admin"), and Grafana's own default is not left in place
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert "GRAFANA_ADMIN_PASSWORD" in (ROOT / "README.md").read_text()


def test_every_service_has_a_healthcheck() -> None:
    for name, svc in services().items():
        check = svc.get("healthcheck")
        if svc.get("restart") == "no":  # a one-shot job: it exits when done
            continue
        assert check and not check.get("disable") and check.get("test"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def _serve_healthz() -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_monitor_healthchecks_follow_the_configured_port() -> None:
    """Both healthchecks (compose and Dockerfile) ask the port MONITOR_HTTP_PORT names."""
    server, port = _serve_healthz()
    try:
        doc = interpolated(compose(), COMPOSE_ENV)  # $$ -> $: what the container's shell gets
        shell = doc["services"]["monitor"]["healthcheck"]["test"]
        assert shell[0] == "CMD-SHELL" and "9108" not in shell[1]
        docker = re.search(
            r"HEALTHCHECK .*?CMD (\[.*?\])\n", (ROOT / "Dockerfile").read_text(), re.S
        )
        assert docker is not None
        exec_form = json.loads(docker.group(1).replace("\\\n", ""))
        for argv in (["sh", "-c", shell[1]], exec_form):
            argv = [sys.executable if a == "python" else a for a in argv]
            if argv[0] == "sh":
                argv[2] = argv[2].replace("python ", f"{sys.executable} ", 1)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            ok = subprocess.run(argv, env={**env, "MONITOR_HTTP_PORT": str(port)}, timeout=30)
            assert ok.returncode == 0, argv
            wrong = subprocess.run(
                argv, env={**env, "MONITOR_HTTP_PORT": "1"}, timeout=30, capture_output=True
            )
            assert wrong.returncode != 0, argv
    finally:
        server.shutdown()


def test_stateful_services_keep_their_data_on_named_volumes() -> None:
    named = set(compose()["volumes"])
    s = services()

    def volume_at(service: str, path: str) -> str:
        for mount in s[service].get("volumes", []):
            source, target = mount.split(":")[:2]
            if target == path:
                assert source in named, f"{service}: {path} is not on a named volume"
                return source
        raise AssertionError(f"{service}: nothing mounted at {path}")

    kafka_env = env_of(s["kafka"])
    volume_at("kafka", kafka_env["KAFKA_LOG_DIRS"])
    assert kafka_env["CLUSTER_ID"]  # formatted once, the same id at every start
    am_storage = next(a for a in command(s["alertmanager"]) if a.startswith("--storage.path="))
    volume_at("alertmanager", am_storage.split("=", 1)[1])
    volume_at("monitor", "/data")
    volume_at("prometheus", "/prometheus")
    volume_at("grafana", "/var/lib/grafana")


def test_images_and_build_inputs_are_pinned() -> None:
    exact = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+(-[\w.-]+)?$")
    for name, svc in services().items():
        if "build" not in svc:
            assert exact.match(svc["image"]), f"{name}: {svc['image']} is not an exact version"
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"(?m)^FROM\s+(\S+)", dockerfile)
    assert bases and all(exact.match(b) for b in bases), bases
    assert re.search(r"maturin==\d+\.\d+\.\d+", dockerfile)
    assert "pip install --constraint constraints.txt ." in dockerfile
    assert "COPY pyproject.toml README.md constraints.txt ./" in dockerfile


def test_constraints_pin_the_runtime_closure_within_pyproject() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (dep, pins[name])
    # and every pin is in the closure (scripts/update_constraints.py computes it)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from update_constraints import closure
    finally:
        sys.path.pop(0)
    assert set(pins) == set(closure(project["dependencies"])), "regenerate constraints.txt"


def test_two_monitor_instances_share_the_group_on_the_kafka_backend(tmp_path: Path) -> None:
    """monitor and monitor-2: one config, one group, state in Kafka, nothing shared on disk
    but the reference; each with its own instance id, outbox, port, and scrape target."""
    s = services()
    assert {"monitor", "monitor-2"} <= set(s)
    (tmp_path / "reference.jsonl").write_text("")
    configs = []
    for name in ("monitor", "monitor-2"):
        svc = s[name]
        assert command(svc) == ["run", "--config", "/etc/monitor/compose.yaml"]
        assert "./config/compose.yaml:/etc/monitor/compose.yaml:ro" in svc["volumes"]
        env = {**env_of(svc), "MONITOR_DATA_DIR": str(tmp_path)}
        cfg = load_config(ROOT / "config" / "compose.yaml", env=env)
        assert f"127.0.0.1:{cfg.http.port}:{cfg.http.port}" in svc["ports"]
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert "MONITOR_HTTP_PORT" in " ".join(svc["healthcheck"]["test"])
        configs.append(cfg)
    one, two = configs
    assert one.state.backend == two.state.backend == "kafka"
    assert one.kafka.group_id == two.kafka.group_id
    assert one.state.instance_id != two.state.instance_id  # distinct transactional ids
    assert one.alerting.outbox_path != two.alerting.outbox_path
    assert one.http.port != two.http.port
    prom = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "monitor")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"monitor:{one.http.port}", f"monitor-2:{two.http.port}"]
