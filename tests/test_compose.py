"""Structure of docker-compose.yml and the Dockerfile (no Docker engine needed).

``docker compose up`` cannot run here; these tests check what would otherwise fail only
there: missing build contexts or mounted files, colliding host ports, a monitor config that
does not validate with the environment compose gives it, command lines naming subcommands or
flags the CLI does not have, the start order of the reference job.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import build_parser

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


def test_monitor_healthcheck_port_matches_config() -> None:
    cfg = yaml.safe_load((ROOT / "config" / "compose.yaml").read_text())
    assert cfg["http"]["host"] == "0.0.0.0"
    assert cfg["http"]["port"] == 9108
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
