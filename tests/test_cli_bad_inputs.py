"""Every subcommand given a file it cannot use (missing, unreadable, a directory, invalid
YAML or data, binary garbage) exits non-zero with one line naming it, never a traceback.

Each case runs the real command in a subprocess, as an operator or a CI job would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.cli import EXIT_FAILURE, EXIT_USAGE

#: How to make each kind of unusable file at a path (returning the path to pass).
Maker = Callable[[Path], Path]


def _missing(p: Path) -> Path:
    return p


def _directory(p: Path) -> Path:
    p.mkdir()
    return p


def _garbage(p: Path) -> Path:
    p.write_bytes(bytes(range(256)) * 4)  # NUL, C0 controls, invalid UTF-8
    return p


def _invalid_yaml(p: Path) -> Path:
    p.write_text("models: [\n  - {name: m\n")
    return p


def _invalid_json_lines(p: Path) -> Path:
    p.write_text('{"x": 1, "y": [\n')
    return p


def _unreadable(p: Path) -> Path:
    """A socket: opening it fails with ENXIO even for root (who reads any 0o000 file)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(p))
    _SOCKETS.append(sock)
    return p


def _no_permission(p: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads a file without read permission")
    p.write_text("models: []\n")
    p.chmod(0)
    return p


_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _SOCKETS:
        _SOCKETS.pop().close()


BAD_CONFIG: dict[str, Maker] = {
    "missing": _missing,
    "unreadable": _unreadable,
    "no-permission": _no_permission,
    "directory": _directory,
    "invalid-yaml": _invalid_yaml,
    "garbage": _garbage,
}
BAD_DATA: dict[str, Maker] = {
    "missing": _missing,
    "unreadable": _unreadable,
    "directory": _directory,
    "invalid-json": _invalid_json_lines,
    "garbage": _garbage,
}


def _monitor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_clean_line(run: subprocess.CompletedProcess[str], names: Path) -> None:
    assert run.returncode in (EXIT_USAGE, EXIT_FAILURE), (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(names) in lines[0], run.stderr


@pytest.fixture
def good(tmp_path: Path) -> dict[str, Path]:
    """A usable config (one model declaring its feature) and data file."""
    data = tmp_path / "good.jsonl"
    data.write_text("".join(f'{{"x": {i}}}\n' for i in range(50)))
    config = tmp_path / "good.yaml"
    config.write_text("models:\n  - name: m\n    features: {x: numeric}\n")
    return {"data": data, "config": config, "out": tmp_path / "out.json"}


CONFIG_COMMANDS: dict[str, Callable[[Path, dict[str, Path]], list[str]]] = {
    "check-config": lambda c, g: ["check-config", str(c)],
    "run": lambda c, g: ["run", str(c)],
    "validate": lambda c, g: ["validate", str(g["data"]), "--config", str(c), "--model", "m"],
    "report": lambda c, g: [
        "report",
        "--reference",
        str(g["data"]),
        "--current",
        str(g["data"]),
        "--config",
        str(c),
        "--model",
        "m",
    ],
    "reference build": lambda c, g: [
        "reference",
        "build",
        "--model",
        "m",
        "--input",
        str(g["data"]),
        "--output",
        str(g["out"]),
        "--config",
        str(c),
    ],
}


@pytest.mark.parametrize("kind", list(BAD_CONFIG))
@pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
def test_an_unusable_config_file_is_one_line(
    tmp_path: Path, good: dict[str, Path], command: str, kind: str
) -> None:
    config = BAD_CONFIG[kind](tmp_path / "bad.yaml")
    run = _monitor(*CONFIG_COMMANDS[command](config, good))
    _assert_one_clean_line(run, config)


DATA_COMMANDS: dict[str, Callable[[Path, dict[str, Path]], list[str]]] = {
    "validate": lambda d, g: ["validate", str(d), "--config", str(g["config"]), "--model", "m"],
    "report --reference": lambda d, g: [
        "report",
        "--reference",
        str(d),
        "--current",
        str(g["data"]),
    ],
    "report --current": lambda d, g: ["report", "--reference", str(g["data"]), "--current", str(d)],
    "reference build": lambda d, g: [
        "reference",
        "build",
        "--model",
        "m",
        "--input",
        str(d),
        "--output",
        str(g["out"]),
    ],
}


@pytest.mark.parametrize("kind", list(BAD_DATA))
@pytest.mark.parametrize("command", list(DATA_COMMANDS))
def test_an_unusable_data_file_is_one_line(
    tmp_path: Path, good: dict[str, Path], command: str, kind: str
) -> None:
    data = BAD_DATA[kind](tmp_path / "bad.jsonl")
    run = _monitor(*DATA_COMMANDS[command](data, good))
    _assert_one_clean_line(run, data)


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_simulate_writing_a_reference_where_it_cannot_is_one_line(
    tmp_path: Path, where: str
) -> None:
    """``simulate --write-reference`` onto a directory, or below a file, died on an
    IsADirectoryError / FileExistsError traceback."""
    (tmp_path / "afile").write_text("x")
    target = tmp_path if where == "a directory" else tmp_path / "afile" / "ref.jsonl"
    run = _monitor("simulate", "--write-reference", str(target), "--events", "3")
    assert run.returncode == EXIT_FAILURE, run.stderr
    _assert_one_clean_line(run, target)
